//! Which requests are traced, and which come from outside the trust boundary.

use http::Request;

/// Decides whether a request is traced (and measured). `()` traces every
/// request; closures `Fn(&Request<B>) -> bool` work too.
///
/// Combine with [`FilterExt`]: `skip_paths(["/health"]).and(|r: &Request<_>| ..)`.
pub trait RequestFilter<B>: Clone + Send + Sync + 'static {
    /// `true` to trace the request.
    fn traced(&self, request: &Request<B>) -> bool;
}

impl<B> RequestFilter<B> for () {
    #[inline]
    fn traced(&self, _: &Request<B>) -> bool {
        true
    }
}

impl<B, F> RequestFilter<B> for F
where
    F: Fn(&Request<B>) -> bool + Clone + Send + Sync + 'static,
{
    #[inline]
    fn traced(&self, request: &Request<B>) -> bool {
        self(request)
    }
}

/// Skips requests whose path is exactly one of these (e.g. `/health`,
/// `/metrics`).
#[derive(Clone, Debug)]
pub struct SkipPaths(std::sync::Arc<[String]>);

/// Skips requests whose path is exactly one of `paths`.
///
/// ```
/// use looptel_http_layer::server::{RequestFilter, skip_paths};
/// let f = skip_paths(["/health", "/metrics"]);
/// let req = http::Request::get("/health").body(()).unwrap();
/// assert!(!f.traced(&req));
/// ```
pub fn skip_paths<I, S>(paths: I) -> SkipPaths
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    SkipPaths(paths.into_iter().map(Into::into).collect())
}

impl<B> RequestFilter<B> for SkipPaths {
    fn traced(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        !self.0.iter().any(|p| p == path)
    }
}

/// Both filters must trace the request.
#[derive(Clone, Debug)]
pub struct And<A, B>(A, B);

/// Either filter traces the request.
#[derive(Clone, Debug)]
pub struct Or<A, B>(A, B);

/// The opposite of the filter.
#[derive(Clone, Debug)]
pub struct Not<A>(A);

impl<Body, X: RequestFilter<Body>, Y: RequestFilter<Body>> RequestFilter<Body> for And<X, Y> {
    fn traced(&self, r: &Request<Body>) -> bool {
        self.0.traced(r) && self.1.traced(r)
    }
}

impl<Body, X: RequestFilter<Body>, Y: RequestFilter<Body>> RequestFilter<Body> for Or<X, Y> {
    fn traced(&self, r: &Request<Body>) -> bool {
        self.0.traced(r) || self.1.traced(r)
    }
}

impl<Body, X: RequestFilter<Body>> RequestFilter<Body> for Not<X> {
    fn traced(&self, r: &Request<Body>) -> bool {
        !self.0.traced(r)
    }
}

/// Combinators for [`RequestFilter`]s and [`PublicEndpoint`] rules.
pub trait FilterExt: Sized {
    /// Both must say yes.
    fn and<O>(self, other: O) -> And<Self, O> {
        And(self, other)
    }

    /// Either may say yes.
    fn or<O>(self, other: O) -> Or<Self, O> {
        Or(self, other)
    }

    /// The opposite.
    fn not(self) -> Not<Self> {
        Not(self)
    }
}

impl<T> FilterExt for T {}

/// Decides, per request, whether the caller is outside the trust boundary:
/// then the server span is a new root that *links* to the remote context
/// instead of continuing it. `()` trusts every caller.
pub trait PublicEndpoint<B>: Clone + Send + Sync + 'static {
    /// `true` when the request comes from outside.
    fn is_public(&self, request: &Request<B>) -> bool;
}

impl<B> PublicEndpoint<B> for () {
    #[inline]
    fn is_public(&self, _: &Request<B>) -> bool {
        false
    }
}

impl<B, F> PublicEndpoint<B> for F
where
    F: Fn(&Request<B>) -> bool + Clone + Send + Sync + 'static,
{
    #[inline]
    fn is_public(&self, request: &Request<B>) -> bool {
        self(request)
    }
}

/// Every caller is outside the trust boundary (an edge service).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllPublic;

impl<B> PublicEndpoint<B> for AllPublic {
    fn is_public(&self, _: &Request<B>) -> bool {
        true
    }
}
