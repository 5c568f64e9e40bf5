//! The server layer every transport is a preset of: its builder, its
//! type-state, its `Layer` and its `call`, once.

use std::task::{Context, Poll};

use http::{Request, Response};
use looptel_core::{Instrumentation, SpanStart};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    Classify, ClassifyError, Derived, Engine, PublicEndpoint, RequestFilter, RequestHook,
    ResponseBody, ResponseFuture, RpcServices,
};

/// What makes a server layer HTTP or gRPC: how its span is named and
/// attributed, how its calls are classified, what it skips by default, and
/// the hook of its own that runs first and ends last (gRPC names the
/// method once the call has ended). `looptel-http-layer` and
/// `looptel-grpc-interceptor` each define one; [`ServerLayer`] does the
/// rest, the same way for both.
pub trait ServerPreset: Clone + Send + Sync + 'static {
    /// Its classifier.
    type Classifier: Classify + std::fmt::Debug;
    /// The filter a new layer has (`()`: every request traced).
    type Filter: Clone;
    /// Its own hook, started before the user's (`()`: none).
    type Own: Clone + std::fmt::Debug;

    /// The classifier.
    fn classifier(&self) -> Self::Classifier;

    /// The filter a new layer starts with.
    fn default_filter(&self) -> Self::Filter;

    /// Its own hook for a layer on `instrumentation`.
    fn own_hook(&self, instrumentation: &Instrumentation) -> Self::Own;

    /// What the preset reads off `request`, for its span and the hooks
    /// alike (default: [`Derived::of`]).
    #[inline]
    fn derive<'r, B>(&'r self, request: &'r Request<B>) -> Derived<'r> {
        Derived::of(request)
    }

    /// Starts the span of `request` where `start` says (with
    /// [`Instrumentation::start_span`]) and returns its context: the
    /// transport's naming, from what `derived` holds. Decide early,
    /// allocate late: a span that does not record should cost no
    /// attributes.
    fn start_span<B>(
        &self,
        request: &Request<B>,
        derived: &Derived<'_>,
        start: SpanStart,
        instrumentation: &Instrumentation,
    ) -> opentelemetry::Context;
}

/// A preset that names calls by the services the server has (gRPC):
/// [`ServerLayer::services`].
pub trait ServiceNames {
    /// Sets the services the server has.
    fn set_services(&mut self, services: RpcServices);
}

/// Traces each request of the wrapped service as its preset `T` names it:
/// `looptel_http_layer::ServerLayer` and
/// `looptel_grpc_interceptor::GrpcServerLayer` are this layer with their
/// preset. Requests the filter `F` rejects get no span; callers the rule
/// `P` calls public start a new trace linked to theirs; hooks `H` run
/// inside the span and end with the response body.
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerLayer<T: ServerPreset, F = (), P = (), H = ()> {
    instrumentation: Instrumentation,
    preset: T,
    filter: F,
    public: P,
    hooks: H,
    engine: Engine<T::Classifier>,
}

impl<T: ServerPreset + Default> ServerLayer<T, T::Filter> {
    /// Traces every request the preset does not skip by default, trusts
    /// every caller, adds no response header.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self::with_preset(instrumentation, T::default())
    }
}

impl<T: ServerPreset> ServerLayer<T, T::Filter> {
    /// The layer with `preset`.
    pub fn with_preset(instrumentation: Instrumentation, preset: T) -> Self {
        Self {
            instrumentation,
            filter: preset.default_filter(),
            engine: Engine::new(preset.classifier()),
            preset,
            public: (),
            hooks: (),
        }
    }
}

impl<T: ServerPreset, F, P, H> ServerLayer<T, F, P, H> {
    /// Requests the filter rejects get no span and are marked
    /// [`Untraced`](crate::Untraced) for inner layers.
    pub fn filter<F2>(self, filter: F2) -> ServerLayer<T, F2, P, H> {
        ServerLayer {
            instrumentation: self.instrumentation,
            preset: self.preset,
            filter,
            public: self.public,
            hooks: self.hooks,
            engine: self.engine,
        }
    }

    /// The trust boundary: requests the rule calls public start a new
    /// trace linked to the caller's context, and their baggage is dropped
    /// (the hooks see it in `prepare`, with [`Derived::is_public`]: the
    /// baggage edge counts it). Default: every caller trusted.
    pub fn public_endpoint<P2>(self, rule: P2) -> ServerLayer<T, F, P2, H> {
        ServerLayer {
            instrumentation: self.instrumentation,
            preset: self.preset,
            filter: self.filter,
            public: rule,
            hooks: self.hooks,
            engine: self.engine,
        }
    }

    /// Runs `hook` for every traced request, inside this layer: with the
    /// server span as its context, and ending with the response body — the
    /// way to add RED metrics and the baggage edge without a layer each,
    /// and in the right order by construction. Hooks start in the order
    /// they are added and end in reverse; a closure
    /// `Fn(&Request<B>, &mut Context) -> S` is a hook too (see
    /// [`RequestHook`]).
    pub fn hook<H2>(self, hook: H2) -> ServerLayer<T, F, P, (H, H2)> {
        ServerLayer {
            instrumentation: self.instrumentation,
            preset: self.preset,
            filter: self.filter,
            public: self.public,
            hooks: (self.hooks, hook),
            engine: self.engine,
        }
    }

    /// Writes the server span's `traceparent` into the response headers, so a
    /// user can go from a response to its trace (default `false`).
    pub fn response_traceparent(mut self, enabled: bool) -> Self {
        self.engine = self.engine.response_traceparent(enabled);
        self
    }

    /// The services the server has (tonic's `NamedService::NAME`): calls
    /// to others are `_OTHER`. Without it, a call the router answers
    /// UNIMPLEMENTED is `_OTHER`.
    pub fn services<I, S>(mut self, names: I) -> Self
    where
        T: ServiceNames,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.preset.set_services(RpcServices::new(names));
        self
    }
}

impl<S, T: ServerPreset, F: Clone, P: Clone, H: Clone> Layer<S> for ServerLayer<T, F, P, H> {
    type Service = Server<S, T, F, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Server {
            inner,
            hooks: (
                self.preset.own_hook(&self.instrumentation),
                self.hooks.clone(),
            ),
            instrumentation: self.instrumentation.clone(),
            preset: self.preset.clone(),
            filter: self.filter.clone(),
            public: self.public.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<C: Classify> Engine<C> {
    /// Every server layer's call: requests `filter` skips are marked
    /// [`Untraced`](crate::Untraced) and called untraced; the others go
    /// through [`begin`](crate::begin) — with the trust rule `public` and
    /// the preset's [`Derived`] facts — and run in the context it returns.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn serve<S, B, T, F, P, H>(
        &self,
        inner: &mut S,
        mut request: http::Request<B>,
        instrumentation: &Instrumentation,
        preset: &T,
        filter: &F,
        public: &P,
        hooks: &H,
    ) -> ResponseFuture<S::Future, C, H::State>
    where
        S: Service<http::Request<B>>,
        T: ServerPreset,
        F: RequestFilter<http::Request<B>>,
        P: PublicEndpoint<http::Request<B>>,
        H: RequestHook<http::Request<B>>,
    {
        if !filter.traced(&request) {
            request.extensions_mut().insert(crate::Untraced);
            return self.untraced(inner, request);
        }
        let (cx, owned, state) = {
            // Outside the trust boundary the caller's decision does not count.
            let derived = preset
                .derive(&request)
                .with_public(public.is_public(&request));
            crate::begin(
                instrumentation,
                &request,
                &derived,
                crate::Relation::Child,
                |trust, base| match base {
                    Some(base) => {
                        instrumentation.extract_request_onto(base, request.headers(), trust)
                    }
                    None => instrumentation.extract_request(request.headers(), trust),
                },
                hooks,
                |start| preset.start_span(&request, &derived, start, instrumentation),
            )
        };
        self.run(inner, request, cx, owned, state)
    }
}

/// The service built by [`ServerLayer`].
#[derive(Clone, Debug)]
pub struct Server<S, T: ServerPreset, F = (), P = (), H = ()> {
    inner: S,
    instrumentation: Instrumentation,
    preset: T,
    filter: F,
    public: P,
    /// The preset's own hook first, then the user's.
    hooks: (T::Own, H),
    engine: Engine<T::Classifier>,
}

impl<S, T: ServerPreset, F, P, H> Server<S, T, F, P, H> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The state a [`Server`]'s hooks keep for a request: the preset's, then
/// the user's.
pub type ServerHooksState<T, H, B> = (
    <<T as ServerPreset>::Own as RequestHook<Request<B>>>::State,
    <H as RequestHook<Request<B>>>::State,
);

impl<S, T, F, P, H, ReqB, ResB> Service<Request<ReqB>> for Server<S, T, F, P, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    T: ServerPreset,
    T::Own: RequestHook<Request<ReqB>>,
    T::Classifier: ClassifyError<S::Error>,
    F: RequestFilter<Request<ReqB>>,
    P: PublicEndpoint<Request<ReqB>>,
    H: RequestHook<Request<ReqB>>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB, T::Classifier, ServerHooksState<T, H, ReqB>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, T::Classifier, ServerHooksState<T, H, ReqB>>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        self.engine.serve(
            &mut self.inner,
            req,
            &self.instrumentation,
            &self.preset,
            &self.filter,
            &self.public,
            &self.hooks,
        )
    }
}
