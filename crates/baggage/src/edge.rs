//! The edge layer: the trust boundary for inbound baggage, business keys
//! from the request, and promotion onto the server span.

use http::Request;
use looptel_engine::{Base, Derived, HookLayer, Hooked, RequestHook};
use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::TraceContextExt;
use tower_layer::Layer;

use crate::BaggagePolicy;

/// Sets business members from the request (a verified header, a token
/// claim put in the extensions by an auth layer). `()` sets none.
pub trait MembersFromRequest<B>: Clone + Send + Sync + 'static {
    /// Calls `set` with each `(key, value)` pair of the request.
    fn members(&self, request: &Request<B>, set: &mut dyn FnMut(&'static str, &str));
}

impl<B> MembersFromRequest<B> for () {
    fn members(&self, _: &Request<B>, _: &mut dyn FnMut(&'static str, &str)) {}
}

impl<B, F> MembersFromRequest<B> for F
where
    F: Fn(&Request<B>) -> Option<(&'static str, String)> + Clone + Send + Sync + 'static,
{
    fn members(&self, request: &Request<B>, set: &mut dyn FnMut(&'static str, &str)) {
        if let Some((key, value)) = self(request) {
            set(key, &value);
        }
    }
}

/// Sets member `key` from a request header, when present and visible ASCII.
#[derive(Clone, Debug)]
pub struct FromHeader {
    header: http::HeaderName,
    key: &'static str,
}

/// Member `key` from header `header` (e.g. `tenant.id` from `x-tenant-id`,
/// set by a gateway that verified it).
pub fn from_header(header: http::HeaderName, key: &'static str) -> FromHeader {
    FromHeader { header, key }
}

impl<B> MembersFromRequest<B> for FromHeader {
    fn members(&self, request: &Request<B>, set: &mut dyn FnMut(&'static str, &str)) {
        if let Some(v) = request
            .headers()
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            set(self.key, v);
        }
    }
}

/// A member the policy refused (a denied key, an invalid one, a full
/// baggage): said at debug level, the request goes on without it.
fn refused(e: &crate::BaggageError) {
    tracing::debug!(target: "looptel", error = %e, "edge baggage member refused");
}

/// Applies the [`BaggagePolicy`] where requests enter the service:
///
/// 1. drops inbound baggage of callers outside the trust boundary — the
///    rule given once, to the layer that runs it (`ServerLayer::public_endpoint`,
///    or [`HookLayer::public_endpoint`](looptel_engine::HookLayer::public_endpoint)
///    when the edge is a layer of its own) — and counts it;
/// 2. sets business members from the request ([`members`](Self::members)),
///    refusing denied keys — as the server layer's hook, in the context the
///    caller's is read into ([`RequestHook::base`]), the first member from a
///    context built once per value and shared (no `Baggage` built per
///    request), winning over the caller's member of the same key;
/// 3. gets the promoted members it set onto the server span before the
///    handler runs: the promotion span processor copies them as the span
///    starts in that context (`looptel-telemetry` installs it), or — with a
///    provider of your own, or as a layer of its own — the edge copies them;
///    once either way. The edge knows the processor is there when telemetry
///    was given this policy's [`promotion`](BaggagePolicy::promotion) (as
///    below); a promotion built apart from the policy leaves it copying
///    them too. Child spans get them from the span processor and log lines
///    from the log layer.
///
/// Best as the server layer's hook (`ServerLayer::hook`, see below): then
/// an untrusted caller's baggage is dropped before the server span starts,
/// so none of it is promoted onto the span. As a layer of its own — for any
/// `http::Request` service, tonic servers too — place it inside the server
/// layer (which extracts the caller's context), as the engine's
/// [`HookLayer`] with the trust rule; the server span has then started with
/// the caller's baggage, and the promotion span processor may already have
/// copied promoted members of an untrusted caller onto it.
///
/// ```
/// use axum::{Router, routing::get};
/// use looptel_baggage::{BaggagePolicy, EdgeLayer, from_header};
/// use looptel_engine::HookLayer;
/// use http::HeaderName;
///
/// let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "ok" }))
///     .layer(
///         HookLayer::new(
///             EdgeLayer::new(policy)
///                 .members(from_header(HeaderName::from_static("x-tenant-id"), "tenant.id")),
///         )
///         .public_endpoint(|req: &http::Request<axum::body::Body>| !req.headers().contains_key("x-internal")),
///     );
///     // .layer(ServerLayer::new(inst)) goes outside (added after) this one.
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct EdgeLayer<M = ()> {
    policy: BaggagePolicy,
    members: M,
}

impl EdgeLayer {
    /// Sets nothing; promotes per the policy.
    pub fn new(policy: BaggagePolicy) -> Self {
        Self {
            policy,
            members: (),
        }
    }
}

impl<M> EdgeLayer<M> {
    /// Business members from the request (default none).
    pub fn members<M2>(self, members: M2) -> EdgeLayer<M2> {
        EdgeLayer {
            policy: self.policy,
            members,
        }
    }
}

/// As a layer of its own, the edge is the engine's [`HookLayer`] running
/// it, every caller trusted; for a trust rule, wrap it yourself:
/// `HookLayer::new(edge).public_endpoint(rule)`.
impl<S, M: Clone> Layer<S> for EdgeLayer<M> {
    type Service = Hooked<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        HookLayer::new(self.clone()).layer(inner)
    }
}

impl<M> EdgeLayer<M> {
    /// Drops (and counts) the inbound baggage of a caller the layer's rule
    /// put outside the trust boundary.
    fn drop_untrusted(&self, derived: &Derived<'_>, cx: &mut Context) {
        if derived.is_public() && !cx.baggage().is_empty() {
            *cx = cx.with_baggage(Baggage::new());
            self.policy.count_untrusted();
        }
    }

    /// Sets the members from the request in `cx`, promoting them onto its
    /// span.
    fn apply<B>(&self, req: &Request<B>, cx: &mut Context)
    where
        M: MembersFromRequest<B>,
    {
        let policy = &self.policy;
        // Promoted members go onto the server span as they are set, if it
        // records (children get them from the promotion span processor as
        // they start; inbound ones the server span got that way too).
        let recording = cx.span().is_recording();
        self.members.members(
            req,
            &mut |key, value| match policy.set_promoting(cx, key, value) {
                Ok((next, promoted)) => {
                    *cx = next;
                    if let Some(attribute) = promoted.filter(|_| recording) {
                        cx.span().set_attribute(attribute);
                    }
                }
                Err(e) => refused(&e),
            },
        );
    }
}

/// The server layer's hook: the edge's work without a layer of its own —
/// the context the server layer runs the request in gets the members, and
/// its span the promoted ones.
///
/// ```
/// use axum::{Router, routing::get};
/// use http::HeaderName;
/// use looptel_baggage::{BaggagePolicy, EdgeLayer, from_header};
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_http_layer::server::ServerLayer;
///
/// # let inst = Instrumentation::disabled(Propagator::default());
/// let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "ok" }))
///     .layer(ServerLayer::new(inst).hook(
///         EdgeLayer::new(policy)
///             .members(from_header(HeaderName::from_static("x-tenant-id"), "tenant.id")),
///     ));
/// ```
impl<B, M> RequestHook<Request<B>> for EdgeLayer<M>
where
    M: MembersFromRequest<B>,
{
    type State = ();

    /// The members from the request, in the context the caller's is read
    /// into: the first one from a context built once per key and value and
    /// shared, so a request pays no `Baggage` or context entry map of its
    /// own for it.
    fn base(&self, request: &Request<B>, _: &Derived<'_>, base: &mut Base) {
        let policy = &self.policy;
        self.members.members(request, &mut |key, value| {
            let next = match base.get() {
                None => policy.alone(key, value),
                Some(cx) => policy.set(cx, key, value),
            };
            match next {
                Ok(cx) => base.set(cx),
                Err(e) => refused(&e),
            }
        });
    }

    /// An untrusted caller's baggage goes before the server span starts,
    /// so none of it is promoted onto the span.
    fn prepare(&self, _: &Request<B>, derived: &Derived<'_>, parent: &mut Context) {
        self.drop_untrusted(derived, parent);
    }

    /// The members, when `base` did not set them (a public caller, the
    /// edge as a layer of its own); otherwise the span started with them in
    /// its parent context, and only without a promotion span processor
    /// are the promoted ones copied onto it here.
    fn start(&self, request: &Request<B>, derived: &Derived<'_>, cx: &mut Context) {
        if !derived.ran_base() {
            self.apply(request, cx);
            return;
        }
        let policy = &self.policy;
        if policy.is_promoted_at_start() || !cx.span().is_recording() {
            return;
        }
        let span = cx.span();
        self.members.members(request, &mut |key, _| {
            if let Some(attribute) = policy.promoted_attribute(cx, key) {
                span.set_attribute(attribute);
            }
        });
    }
}
