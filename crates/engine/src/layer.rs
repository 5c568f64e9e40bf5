//! Any hook as a layer of its own.

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Classify, Derived, Engine, GrpcServer, HttpServer, PublicEndpoint, RequestHook, ResponseFuture,
    Untraced,
};

/// Runs a [`RequestHook`] as a Tower layer of its own, for stacks whose
/// span comes from elsewhere (a tonic server, another tracing layer):
/// the hook starts in the current context, ends once at end of stream as
/// the classifier says, and skips requests marked [`Untraced`]. Inside
/// looptel's own layers, give the hook to the layer instead
/// (`ServerLayer::hook`): one future and one body wrapper fewer.
///
/// ```
/// use looptel_engine::{Classification, HookLayer};
/// use tower::ServiceBuilder;
///
/// let layer = HookLayer::new(|_: &http::Request<String>, _: &mut opentelemetry::Context| {
///     |end: &Classification, _: &opentelemetry::Context| {
///         if end.is_error() {
///             eprintln!("failed: {:?}", end.error_type());
///         }
///     }
/// });
/// let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// });
/// # let _ = svc;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct HookLayer<H, C = HttpServer, P = ()> {
    hook: H,
    engine: Engine<C>,
    public: P,
}

impl<H> HookLayer<H> {
    /// `hook` for an HTTP server ([`HttpServer`] classifier).
    pub fn new(hook: H) -> Self {
        Self::with_classifier(hook, HttpServer)
    }
}

impl<H> HookLayer<H, GrpcServer> {
    /// `hook` for a gRPC server ([`GrpcServer`] classifier: the status from
    /// the trailers).
    pub fn new_for_grpc(hook: H) -> Self {
        Self::with_classifier(hook, GrpcServer)
    }
}

impl<H, C: Classify> HookLayer<H, C> {
    /// `hook`, with requests classified by `classifier`.
    pub fn with_classifier(hook: H, classifier: C) -> Self {
        Self {
            hook,
            engine: Engine::new(classifier),
            public: (),
        }
    }
}

impl<H, C> HookLayer<H, C> {
    /// The trust boundary, for a hook that reads it
    /// ([`Derived::is_public`](crate::Derived::is_public): the baggage edge
    /// drops such callers' baggage). Inside looptel's server layer give the
    /// rule to that layer instead, once: there it decides the span's parent
    /// too.
    pub fn public_endpoint<P>(self, rule: P) -> HookLayer<H, C, P> {
        HookLayer {
            hook: self.hook,
            engine: self.engine,
            public: rule,
        }
    }
}

impl<S, H: Clone, C: Clone, P: Clone> Layer<S> for HookLayer<H, C, P> {
    type Service = Hooked<S, H, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Hooked {
            inner,
            hook: self.hook.clone(),
            engine: self.engine.clone(),
            public: self.public.clone(),
        }
    }
}

/// The service built by [`HookLayer`].
#[derive(Clone, Debug)]
pub struct Hooked<S, H, C = HttpServer, P = ()> {
    inner: S,
    hook: H,
    engine: Engine<C>,
    public: P,
}

crate::service_accessors!(Hooked<S, H, C, P>);

impl<S, H, C, P, ReqB, ResB> Service<Request<ReqB>> for Hooked<S, H, C, P>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    H: RequestHook<Request<ReqB>>,
    C: Classify + crate::ClassifyError<S::Error>,
    P: PublicEndpoint<Request<ReqB>>,
    ResB: http_body::Body,
{
    type Response = Response<crate::ResponseBody<ResB, C, H::State>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, H::State>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if req.extensions().get::<Untraced>().is_some() {
            return self.engine.untraced(&mut self.inner, req);
        }
        // The span is the layer outside's: the current context.
        let mut cx = opentelemetry::Context::current();
        let state = {
            let derived = Derived::of(&req).with_public(self.public.is_public(&req));
            self.hook.prepare(&req, &derived, &mut cx);
            self.hook.start(&req, &derived, &mut cx)
        };
        self.engine.run(&mut self.inner, req, cx, false, state)
    }
}
