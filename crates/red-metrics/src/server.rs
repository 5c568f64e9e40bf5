//! The HTTP server RED hook.

use std::sync::Arc;
use std::time::Instant;

use http::Request;
use looptel_catalogue::metrics::{HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_DURATION};
use looptel_core::{METHODS, TraceIds};
use looptel_engine::{
    Classification, Derived, HookLayer, HookState, HttpFacts, PROTOCOL_VERSIONS, RequestHook,
    Route, SCHEMES,
};

use crate::metrics::Gauge;
use crate::registry::Registry;
use crate::resolved::ResolvedSeries;

/// The labels of `http.server.request.duration`, as the conventions list them.
pub const DURATION_LABELS: &[&str] = HTTP_SERVER_REQUEST_DURATION.labels;

/// The labels of `http.server.active_requests`.
pub const ACTIVE_LABELS: &[&str] = HTTP_SERVER_ACTIVE_REQUESTS.labels;

/// The HTTP server instruments, registered once.
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    instruments: Arc<Instruments>,
}

#[derive(Debug)]
struct Instruments {
    duration: Duration,
    /// One active-requests gauge per (method, scheme), resolved up front so a
    /// request touches no map for it.
    active: [[Arc<Gauge>; 2]; METHODS.len()],
}

/// `http.server.request.duration`, its series found again by the small
/// numbers of a request and its route template.
type Duration = ResolvedSeries<SeriesKey>;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct SeriesKey {
    facts: HttpFacts,
    status: u16,
}

impl Duration {
    fn record(
        &self,
        rec: &Recording,
        status: Option<http::StatusCode>,
        error_type: &str,
        value: f64,
        ids: Option<TraceIds>,
    ) {
        let route = rec.route.as_ref().map_or("", Route::as_str);
        // Service errors (rare, named by type) are looked up by labels.
        let key = error_type.is_empty().then(|| SeriesKey {
            facts: rec.facts,
            status: status.map_or(0, |s| s.as_u16()),
        });
        let labels = || {
            [
                rec.facts.method(),
                rec.facts.scheme(),
                status.as_ref().map_or("", http::StatusCode::as_str),
                route,
                error_type,
                "http",
                PROTOCOL_VERSIONS[rec.facts.version_index()],
            ]
        };
        self.observe(route, key, labels, value, ids);
    }
}

impl HttpServerMetrics {
    /// Registers `http.server.request.duration` and
    /// `http.server.active_requests` in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let gauge = registry.instrument_gauge(&HTTP_SERVER_ACTIVE_REQUESTS);
        Self {
            instruments: Arc::new(Instruments {
                duration: ResolvedSeries::new(
                    registry.instrument_histogram(&HTTP_SERVER_REQUEST_DURATION),
                ),
                active: METHODS.map(|m| SCHEMES.map(|s| gauge.family().series(&[m, s]))),
            }),
        }
    }

    /// Starts recording `req`: counts it active and starts its clock. The
    /// facts and the route are the layer's (read once for the span too).
    fn begin<B>(&self, req: &Request<B>, derived: &Derived<'_>) -> Recording {
        let facts = derived.http_facts_of(req);
        self.instruments.active[facts.method_index()][usize::from(facts.https())].add(1);
        Recording {
            instruments: self.instruments.clone(),
            facts,
            route: derived.route().cloned(),
            start: Instant::now(),
        }
    }
}

/// The server layer's hook: records each request it traces, with the
/// server span as exemplar when sampled, until the response body ends —
/// the cheapest way to stack RED metrics (one future and one body wrapper
/// for span and metrics):
///
/// ```
/// use axum::{Router, routing::get};
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_http_layer::server::{ServerLayer, skip_paths};
/// use looptel_red_metrics::{HttpServerMetrics, Registry, metrics_endpoint};
///
/// # let inst = Instrumentation::disabled(Propagator::default());
/// let registry = Registry::new();
/// let app: Router = Router::new()
///     .route("/orders", get(|| async { "ok" }))
///     .route("/metrics", metrics_endpoint(registry.clone()))
///     .layer(
///         ServerLayer::new(inst)
///             .filter(skip_paths(["/health", "/metrics"]))
///             .hook(HttpServerMetrics::new(&registry)),
///     );
/// ```
impl<B> RequestHook<Request<B>> for HttpServerMetrics {
    type State = Recording;

    fn start(
        &self,
        request: &Request<B>,
        derived: &Derived<'_>,
        _: &mut opentelemetry::Context,
    ) -> Recording {
        self.begin(request, derived)
    }
}

impl HookState for Recording {
    fn end(self, end: &Classification, cx: &opentelemetry::Context) {
        // The server span, when sampled, is the exemplar.
        self.finish(end, TraceIds::from_context(cx));
    }
}

/// Records RED metrics for each request of the wrapped service, as a layer
/// of its own: [`HttpServerMetrics`] run by the engine's
/// [`HookLayer`](looptel_engine::HookLayer).
///
/// Put it inside the server layer (`ServerLayer` outermost): the duration
/// then runs with the server span, until the response body ends, and its
/// exemplar is the server span when sampled. Requests the server layer's
/// filter skipped ([`Untraced`](looptel_engine::Untraced)) are not
/// recorded. Labels come only from the route template, the normalised
/// method, the scheme, the status code and the protocol, so their number
/// is bounded.
///
/// With looptel's server layer, prefer [`HttpServerMetrics`] as its hook:
/// the same records, one future and one body wrapper fewer per request.
pub type RedLayer = HookLayer<HttpServerMetrics>;

/// A request being recorded by [`HttpServerMetrics`], until it ends; it
/// stays counted active until dropped, however the request ends.
#[derive(Debug)]
pub struct Recording {
    instruments: Arc<Instruments>,
    facts: HttpFacts,
    route: Option<Route>,
    start: Instant,
}

impl Recording {
    fn finish(self, end: &Classification, ids: Option<TraceIds>) {
        let elapsed = self.start.elapsed().as_secs_f64();
        // `error.type`: as the classifier says (the code of a 5xx, the
        // service error's type, `body_error`).
        let error_type = end.error_type().unwrap_or("");
        self.instruments
            .duration
            .record(&self, end.http_status(), error_type, elapsed, ids);
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.instruments.active[self.facts.method_index()][usize::from(self.facts.https())].add(-1);
    }
}
