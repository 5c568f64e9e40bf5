use looptel_core::Instrumentation;
use looptel_engine::{Engine, HttpServer};
use tower_layer::Layer;

use super::Server;

/// Traces each request of the wrapped service; see the [module docs](super).
#[derive(Clone, Debug)]
#[must_use]
pub struct ServerLayer<F = (), P = (), H = ()> {
    pub(crate) instrumentation: Instrumentation,
    pub(crate) filter: F,
    pub(crate) public: P,
    pub(crate) hooks: H,
    pub(crate) engine: Engine<HttpServer>,
}

impl ServerLayer {
    /// Traces every request, trusts every caller, adds no response header.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            filter: (),
            public: (),
            hooks: (),
            engine: Engine::new(HttpServer),
        }
    }
}

impl<F, P, H> ServerLayer<F, P, H> {
    /// Requests the filter rejects get no span and are marked
    /// [`Untraced`](super::Untraced) for inner layers (default: all traced).
    pub fn filter<F2>(self, filter: F2) -> ServerLayer<F2, P, H> {
        ServerLayer {
            instrumentation: self.instrumentation,
            filter,
            public: self.public,
            hooks: self.hooks,
            engine: self.engine,
        }
    }

    /// Requests the rule calls public start a new trace linked to the
    /// caller's context (default: every caller trusted).
    pub fn public_endpoint<P2>(self, rule: P2) -> ServerLayer<F, P2, H> {
        ServerLayer {
            instrumentation: self.instrumentation,
            filter: self.filter,
            public: rule,
            hooks: self.hooks,
            engine: self.engine,
        }
    }

    /// Runs `hook` for every traced request, inside this layer: with the
    /// server span as its context, and ending with the response body — the
    /// way to add RED metrics (`looptel_red_metrics::HttpServerMetrics`)
    /// and the baggage edge (`looptel_baggage::EdgeLayer`) without a layer
    /// each, and in the right order by construction. Hooks start in the
    /// order they are added and end in reverse; a closure
    /// `Fn(&Request<B>, &mut Context) -> S` is a hook too (see
    /// [`RequestHook`](looptel_engine::RequestHook)).
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use looptel_core::{Instrumentation, Propagator};
    /// use looptel_engine::{Classification, HookState, RequestHook};
    /// use looptel_http_layer::server::ServerLayer;
    ///
    /// /// Logs slow requests.
    /// #[derive(Clone)]
    /// struct Slow;
    /// struct Started(std::time::Instant);
    /// impl<B> RequestHook<http::Request<B>> for Slow {
    ///     type State = Started;
    ///     fn start(&self, _: &http::Request<B>, _: &mut opentelemetry::Context) -> Started {
    ///         Started(std::time::Instant::now())
    ///     }
    /// }
    /// impl HookState for Started {
    ///     fn end(self, _: &Classification, _: &opentelemetry::Context) {
    ///         if self.0.elapsed().as_secs() >= 1 {
    ///             tracing::warn!("slow request"); // carries the request's trace id
    ///         }
    ///     }
    /// }
    ///
    /// # let inst = Instrumentation::disabled(Propagator::default());
    /// let app: Router = Router::new()
    ///     .route("/orders", get(|| async { "ok" }))
    ///     .layer(ServerLayer::new(inst).hook(Slow));
    /// ```
    pub fn hook<H2>(self, hook: H2) -> ServerLayer<F, P, (H, H2)> {
        ServerLayer {
            instrumentation: self.instrumentation,
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
}

impl<S, F: Clone, P: Clone, H: Clone> Layer<S> for ServerLayer<F, P, H> {
    type Service = Server<S, F, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Server {
            inner,
            layer: self.clone(),
        }
    }
}
