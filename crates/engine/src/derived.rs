//! What a layer already knows of a request when its hooks run.

use std::cell::Cell;

use http::{Extensions, Method, Request, Uri, Version};

use crate::{HttpFacts, Route, RpcServices};

/// What a layer derived from a request, handed to its hooks so that
/// nothing is derived twice: the trust decision its
/// [`PublicEndpoint`](crate::PublicEndpoint) rule made, and — for HTTP and
/// gRPC requests — the [`HttpFacts`], the matched route and the services
/// the server has. The facts and the route are worked out on first use and
/// kept: the span and the RED hook read the same values, and a request
/// nobody asks them of pays nothing.
///
/// ```
/// use looptel_engine::Derived;
///
/// let request = http::Request::post("https://shop.example/orders").body(()).unwrap();
/// let derived = Derived::of(&request).with_public(true);
/// assert!(derived.is_public());
/// assert_eq!(derived.http_facts().map(|f| f.method()), Some("POST"));
/// assert!(derived.route().is_none()); // no router matched it
/// assert!(Derived::none().http_facts().is_none()); // a message: no HTTP head
/// ```
#[derive(Debug, Default)]
pub struct Derived<'r> {
    public: bool,
    head: Option<Head<'r>>,
    services: Option<&'r RpcServices>,
    // Worked out on first use. `Cell`s of `Copy` values, not `OnceCell`s:
    // `OnceCell`'s first fill is an out-of-line call, ~45 instructions
    // a cell per request (`scripts/bench.sh`, service-unsampled).
    facts: Cell<Option<HttpFacts>>,
    route: Cell<Option<Option<&'r Route>>>,
    /// Set by [`begin`](crate::begin) once the hooks' `base` ran.
    based: Cell<bool>,
}

/// The parts of an HTTP request the facts and the route come from.
#[derive(Debug)]
struct Head<'r> {
    method: &'r Method,
    uri: &'r Uri,
    version: Version,
    extensions: &'r Extensions,
}

impl<'r> Derived<'r> {
    /// Nothing derived: a request that is not HTTP (a message), from a
    /// trusted caller.
    pub fn none() -> Self {
        Self::default()
    }

    /// What `request`'s head tells, from a trusted caller.
    #[inline]
    pub fn of<B>(request: &'r Request<B>) -> Self {
        Self {
            head: Some(Head {
                method: request.method(),
                uri: request.uri(),
                version: request.version(),
                extensions: request.extensions(),
            }),
            ..Self::default()
        }
    }

    /// Whether the caller is outside the trust boundary.
    #[must_use]
    #[inline]
    pub fn with_public(mut self, public: bool) -> Self {
        self.public = public;
        self
    }

    /// The services the server has (gRPC).
    #[must_use]
    #[inline]
    pub fn with_services(mut self, services: &'r RpcServices) -> Self {
        self.services = Some(services);
        self
    }

    /// Whether the layer's [`PublicEndpoint`](crate::PublicEndpoint) rule
    /// put the caller outside the trust boundary: its context was not taken
    /// as the span's parent, and its baggage must not be kept.
    #[inline]
    pub fn is_public(&self) -> bool {
        self.public
    }

    /// Whether the hooks' [`base`](crate::RequestHook::base) ran for this
    /// call (a caller inside the trust boundary, through a layer that
    /// starts the span): what they set there is in the context already,
    /// and the span started in it. `false` in `prepare` and `start`
    /// otherwise — a public caller's call, a [`HookLayer`](crate::HookLayer)
    /// inside another layer's span: set members in `start` then.
    #[inline]
    pub fn ran_base(&self) -> bool {
        self.based.get()
    }

    /// Marks that the hooks' `base` ran.
    #[inline]
    pub(crate) fn set_ran_base(&self) {
        self.based.set(true);
    }

    /// The method, scheme and version of an HTTP (or gRPC) request.
    #[inline]
    pub fn http_facts(&self) -> Option<HttpFacts> {
        let head = self.head.as_ref()?;
        if let Some(facts) = self.facts.get() {
            return Some(facts);
        }
        let facts = HttpFacts::from_parts(head.method, head.uri, head.version);
        self.facts.set(Some(facts));
        Some(facts)
    }

    /// The facts of `request`: the layer's, or derived now when the hook
    /// was given none (a caller passing [`Derived::none`] for an HTTP
    /// request).
    #[inline]
    pub fn http_facts_of<B>(&self, request: &Request<B>) -> HttpFacts {
        self.http_facts().unwrap_or_else(|| HttpFacts::of(request))
    }

    /// The route template the router matched (see
    /// [`matched_route`](crate::matched_route)).
    #[inline]
    pub fn route(&self) -> Option<&'r Route> {
        let head = self.head.as_ref()?;
        if let Some(route) = self.route.get() {
            return route;
        }
        let route = crate::facts::route_in(head.extensions);
        self.route.set(Some(route));
        route
    }

    /// The services a gRPC server has, when its layer was told them.
    #[inline]
    pub fn rpc_services(&self) -> Option<&'r RpcServices> {
        self.services
    }
}

/// Requests whose [`Derived`] a layer can work out from the request alone
/// (for layers that run hooks without a preset of their own).
pub trait Derive {
    /// What the request tells, its caller trusted.
    fn derive(&self) -> Derived<'_>;
}

impl<B> Derive for Request<B> {
    #[inline]
    fn derive(&self) -> Derived<'_> {
        Derived::of(self)
    }
}
