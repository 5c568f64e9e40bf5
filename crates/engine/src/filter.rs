//! Which requests are traced, and which come from outside the trust
//! boundary: the rules every transport's layer takes.

use http::Request;

/// A request extension set on requests a layer's filter skips (health
/// checks), so inner layers — a [`HookLayer`](crate::HookLayer) — skip them
/// too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Untraced;

/// Decides whether a request is traced (and measured). `()` traces every
/// request; closures `Fn(&R) -> bool` work too.
///
/// Combine with [`FilterExt`]: `skip_paths(["/health"]).and(|r: &Request<_>| ..)`.
pub trait RequestFilter<R>: Clone + Send + Sync + 'static {
    /// `true` to trace the request.
    fn traced(&self, request: &R) -> bool;
}

impl<R> RequestFilter<R> for () {
    #[inline]
    fn traced(&self, _: &R) -> bool {
        true
    }
}

impl<R, F> RequestFilter<R> for F
where
    F: Fn(&R) -> bool + Clone + Send + Sync + 'static,
{
    #[inline]
    fn traced(&self, request: &R) -> bool {
        self(request)
    }
}

/// Skips requests whose path is exactly one of these (e.g. `/health`,
/// `/metrics`, `/grpc.health.v1.Health/Check`).
#[derive(Clone, Debug)]
pub struct SkipPaths(std::sync::Arc<[String]>);

/// Skips requests whose path is exactly one of `paths`.
///
/// ```
/// use looptel_engine::{RequestFilter, skip_paths};
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

impl<B> RequestFilter<Request<B>> for SkipPaths {
    fn traced(&self, request: &Request<B>) -> bool {
        let path = request.uri().path();
        !self.0.iter().any(|p| p == path)
    }
}

/// Both rules must say yes.
#[derive(Clone, Debug)]
pub struct And<A, B>(A, B);

/// Either rule may say yes.
#[derive(Clone, Debug)]
pub struct Or<A, B>(A, B);

/// The opposite of the rule.
#[derive(Clone, Debug)]
pub struct Not<A>(A);

impl<R, X: RequestFilter<R>, Y: RequestFilter<R>> RequestFilter<R> for And<X, Y> {
    fn traced(&self, r: &R) -> bool {
        self.0.traced(r) && self.1.traced(r)
    }
}

impl<R, X: RequestFilter<R>, Y: RequestFilter<R>> RequestFilter<R> for Or<X, Y> {
    fn traced(&self, r: &R) -> bool {
        self.0.traced(r) || self.1.traced(r)
    }
}

impl<R, X: RequestFilter<R>> RequestFilter<R> for Not<X> {
    fn traced(&self, r: &R) -> bool {
        !self.0.traced(r)
    }
}

impl<R, X: PublicEndpoint<R>, Y: PublicEndpoint<R>> PublicEndpoint<R> for And<X, Y> {
    fn is_public(&self, r: &R) -> bool {
        self.0.is_public(r) && self.1.is_public(r)
    }
}

impl<R, X: PublicEndpoint<R>, Y: PublicEndpoint<R>> PublicEndpoint<R> for Or<X, Y> {
    fn is_public(&self, r: &R) -> bool {
        self.0.is_public(r) || self.1.is_public(r)
    }
}

impl<R, X: PublicEndpoint<R>> PublicEndpoint<R> for Not<X> {
    fn is_public(&self, r: &R) -> bool {
        !self.0.is_public(r)
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

/// The trust boundary, decided per request: a caller outside it (a public
/// endpoint) has its context taken in by nothing — the span is a new root
/// that *links* to the remote context instead of continuing it, and none of
/// its baggage is kept. `()` trusts every caller; closures `Fn(&R) -> bool`
/// work too.
pub trait PublicEndpoint<R>: Clone + Send + Sync + 'static {
    /// `true` when the request comes from outside the trust boundary.
    fn is_public(&self, request: &R) -> bool;
}

impl<R> PublicEndpoint<R> for () {
    #[inline]
    fn is_public(&self, _: &R) -> bool {
        false
    }
}

impl<R, F> PublicEndpoint<R> for F
where
    F: Fn(&R) -> bool + Clone + Send + Sync + 'static,
{
    #[inline]
    fn is_public(&self, request: &R) -> bool {
        self(request)
    }
}

/// Every caller is outside the trust boundary (an edge service).
#[derive(Clone, Copy, Debug, Default)]
pub struct AllPublic;

impl<R> PublicEndpoint<R> for AllPublic {
    fn is_public(&self, _: &R) -> bool {
        true
    }
}
