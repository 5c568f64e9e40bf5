use super::Http;

/// Traces each request of the wrapped service; see the [module docs](super).
///
/// The engine's [`ServerLayer`](looptel_engine::ServerLayer) with the
/// [`Http`] preset: `filter`, `public_endpoint`, `hook` and
/// `response_traceparent` are the same for every transport. Hooks — RED
/// metrics (`looptel_red_metrics::HttpServerMetrics`), the baggage edge
/// (`looptel_baggage::EdgeLayer`), your own — run inside the server span
/// and end with the response body:
///
/// ```
/// use axum::{Router, routing::get};
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_engine::{Classification, Derived, HookState, RequestHook};
/// use looptel_http_layer::server::ServerLayer;
///
/// /// Logs slow requests.
/// #[derive(Clone)]
/// struct Slow;
/// struct Started(std::time::Instant);
/// impl<B> RequestHook<http::Request<B>> for Slow {
///     type State = Started;
///     fn start(&self, _: &http::Request<B>, _: &Derived<'_>, _: &mut opentelemetry::Context) -> Started {
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
pub type ServerLayer<F = (), P = (), H = ()> = looptel_engine::ServerLayer<Http, F, P, H>;

/// The service built by [`ServerLayer`].
pub type Server<S, F = (), P = (), H = ()> = looptel_engine::Server<S, Http, F, P, H>;
