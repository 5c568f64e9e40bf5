//! Closed-loop observability for Tower services — axum, hyper, tonic — and
//! Kafka, RabbitMQ and NATS: one dependency and one handle.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lt = looptel::init()?; // OTEL_* from the environment
//!     let app: Router = Router::new()
//!         .route("/hello", get(|| async { "hello" }))
//!         .layer(lt.http_server()) // spans, RED metrics with exemplars, traceparent
//!         .merge(lt.routes()); // /metrics, /health/live, /health/ready
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     axum::serve(listener, app).await?;
//!     lt.shutdown()?; // every span and log line out
//!     Ok(())
//! }
//! ```
//!
//! [`init`] (or [`builder`]) starts telemetry from the standard `OTEL_*`
//! variables — traces through a bounded batch processor (OTLP, or JSON
//! lines on standard error with nothing configured), JSON logs on standard
//! output whose `trace_id` is the exported spans', the propagators — and
//! returns the [`Looptel`] handle. The handle owns the instrumentation, the
//! metrics registry (with the process and runtime collectors, and
//! telemetry's own drop counters already on it: every dropped span, log
//! line or baggage member is counted where `/metrics` shows it), the
//! readiness of the service's dependencies, and the shutdown guard; it
//! hands out each transport's layer, built on those:
//!
//! | feature | from the handle |
//! |---|---|
//! | `axum` (default) | [`Looptel::http_server`], [`Looptel::routes`] |
//! | (always) | [`Looptel::http_client`]: any Tower HTTP client |
//! | `tonic` | [`Looptel::grpc_server`], [`Looptel::grpc_client`] |
//! | `kafka`, `amqp`, `nats` | [`Looptel::messaging`]: spans and metrics for rdkafka, lapin, async-nats |
//! | `reqwest` | [`Looptel::reqwest`]: outgoing requests through reqwest-middleware |
//! | `prometheus-client` | [`metrics::Registry::attach`]: a prometheus-client registry on the same `/metrics` |
//! | `retro-client` | `retro::Announcer`: deploys announced to looptel-retro, for the incident card's "what changed" |
//!
//! The crates it is made of stay usable one by one, and are here as
//! modules: [`core`], [`engine`], [`telemetry`], [`logs`], [`metrics`],
//! [`baggage`], [`http`], `grpc` (feature `tonic`) and `messaging`
//! (features `kafka`, `amqp`, `nats`).

pub use looptel_baggage as baggage;
pub use looptel_catalogue as catalogue;
pub use looptel_core as core;
pub use looptel_engine as engine;
#[cfg(feature = "tonic")]
pub use looptel_grpc_interceptor as grpc;
pub use looptel_http_layer as http;
#[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
pub use looptel_kafka_propagation as messaging;
pub use looptel_logs as logs;
pub use looptel_red_metrics as metrics;
pub use looptel_telemetry as telemetry;

pub use looptel_core::{ErrorOutcome, Instrumentation, Operation, Outcome};
pub use looptel_telemetry::{Drained, Shutdown, ShutdownError, TelemetryError};

mod drops;
mod instruments;
#[cfg(feature = "retro-client")]
pub mod retro;

pub use instruments::Instruments;

use looptel_baggage::BaggagePolicy;
use looptel_red_metrics::{Health, Registry};
use looptel_telemetry::{Telemetry, TelemetryBuilder, TelemetryGuard};

/// The server layer [`Looptel::http_server`] gives: spans (probes and
/// scrapes skipped), the response `traceparent`, and the RED metrics as
/// its hook. Add hooks of your own with `.hook(…)`.
pub type HttpServer = looptel_http_layer::ServerLayer<
    looptel_engine::SkipPaths,
    (),
    ((), looptel_red_metrics::HttpServerMetrics),
>;

/// The gRPC server layer [`Looptel::grpc_server`] gives, with the
/// `rpc.server.call.duration` hook.
#[cfg(feature = "tonic")]
pub type GrpcServer = looptel_grpc_interceptor::GrpcServerLayer<
    looptel_grpc_interceptor::SkipServices,
    (),
    ((), looptel_red_metrics::RpcServerMetrics),
>;

/// The gRPC client layer [`Looptel::grpc_client`] gives, with the
/// `rpc.client.call.duration` hook.
#[cfg(feature = "tonic")]
pub type GrpcClient =
    looptel_grpc_interceptor::GrpcClientLayer<((), looptel_red_metrics::RpcClientMetrics)>;

/// The HTTP client layer [`Looptel::http_client`] gives (any Tower client
/// of `http::Request`s), with the `http.client.request.duration` hook.
pub type HttpClient = looptel_http_layer::ClientLayer<((), looptel_red_metrics::HttpClientMetrics)>;

/// The reqwest middleware [`Looptel::reqwest`] gives, with the
/// `http.client.request.duration` hook.
#[cfg(feature = "reqwest")]
pub type Reqwest =
    looptel_http_layer::reqwest::TracingMiddleware<((), looptel_red_metrics::HttpClientMetrics)>;

/// The messaging instrumentation [`Looptel::messaging`] gives, with the
/// messaging metrics as its hook. Add hooks of your own with `.hook(…)`.
#[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
pub type Messaging =
    looptel_kafka_propagation::MessagingTelemetry<((), looptel_red_metrics::MessagingMetrics)>;

/// The paths the server layer leaves untraced and unmeasured: probes and
/// scrapes, polled every few seconds.
pub const UNTRACED_PATHS: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];

/// Starts everything from the environment (`OTEL_SERVICE_NAME`, the
/// exporters, the sampler…); see [`builder`] to set things in code.
///
/// # Errors
/// A variable with a value telemetry cannot use (named in the error), or
/// a tracing subscriber already installed.
pub fn init() -> Result<Looptel, TelemetryError> {
    builder().init()
}

/// Settings in code, over the environment's.
pub fn builder() -> Builder {
    Builder {
        telemetry: Telemetry::from_env(),
        baggage: None,
    }
}

/// What [`builder`] returns: code settings win over `OTEL_*`.
#[derive(Debug)]
#[must_use]
pub struct Builder {
    telemetry: TelemetryBuilder,
    baggage: Option<BaggagePolicy>,
}

impl Builder {
    /// `service.name` (else `OTEL_SERVICE_NAME`).
    pub fn service_name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.telemetry = self.telemetry.service_name(name);
        self
    }

    /// `service.version`.
    pub fn service_version(mut self, version: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.telemetry = self.telemetry.service_version(version);
        self
    }

    /// The baggage policy: which members are promoted onto spans and log
    /// lines, which never leave, the budget; its drops are counted on
    /// `/metrics`. Without one, nothing is promoted and personal data is
    /// still never sent.
    pub fn baggage(mut self, policy: BaggagePolicy) -> Self {
        self.baggage = Some(policy);
        self
    }

    /// Which buckets the duration histograms keep (else
    /// `LOOPTEL_METRICS_HISTOGRAMS`, else classic): native histograms are
    /// one series per label set at any resolution, served to Prometheus in
    /// its protobuf format and pushed as OTLP exponential histograms.
    ///
    /// ```no_run
    /// use looptel::metrics::{Histograms, NativeHistograms};
    ///
    /// let lt = looptel::builder()
    ///     .histograms(Histograms::ClassicAndNative(NativeHistograms::default()))
    ///     .init()?;
    /// # Ok::<(), looptel::TelemetryError>(())
    /// ```
    pub fn histograms(mut self, histograms: looptel_red_metrics::Histograms) -> Self {
        self.telemetry = self.telemetry.histograms(histograms);
        self
    }

    /// Anything else telemetry takes (a sampler, an exporter, a logs
    /// setting…), on its own builder.
    pub fn telemetry(
        mut self,
        configure: impl FnOnce(TelemetryBuilder) -> TelemetryBuilder,
    ) -> Self {
        self.telemetry = configure(self.telemetry);
        self
    }

    /// Starts telemetry and builds the handle (inside a Tokio runtime, the
    /// runtime's saturation is measured too).
    ///
    /// # Errors
    /// As [`init`].
    pub fn init(self) -> Result<Looptel, TelemetryError> {
        let baggage = self
            .baggage
            .unwrap_or_else(|| BaggagePolicy::builder().build());
        let mut guard = self
            .telemetry
            .promote_baggage(baggage.promotion())
            .baggage_policy(baggage.inject_policy())
            .init()?;
        let instrumentation = guard.instrumentation();
        let instruments =
            Instruments::with_histograms(instrumentation.semconv(), guard.histograms());
        drops::register(
            instruments.registry(),
            guard.logs().clone(),
            &baggage,
            guard.exports().clone(),
        );
        let service = guard.service();
        instruments.registry().target_info([
            ("service.name", service.name()),
            ("service.version", service.version().unwrap_or_default()),
            (
                "service.instance.id",
                service.instance_id().unwrap_or_default(),
            ),
            (
                "deployment.environment.name",
                service.environment().unwrap_or_default(),
            ),
        ]);
        // With OTLP metrics configured, the same instruments are pushed too.
        guard.push_metrics(instruments.registry().clone());
        Ok(Looptel {
            guard,
            instrumentation,
            instruments,
            baggage,
        })
    }
}

/// The one handle: instrumentation, metrics, readiness and the shutdown
/// guard, and each transport's layer built on them. Dropping it flushes
/// and shuts telemetry down (bounded); [`shutdown`](Self::shutdown) says
/// what could not be delivered.
#[derive(Debug)]
pub struct Looptel {
    guard: TelemetryGuard,
    instrumentation: Instrumentation,
    instruments: Instruments,
    baggage: BaggagePolicy,
}

impl Looptel {
    /// The tracer and propagator every layer uses.
    pub fn instrumentation(&self) -> Instrumentation {
        self.instrumentation.clone()
    }

    /// The registry `/metrics` serves: register business metrics on it.
    pub fn registry(&self) -> &Registry {
        self.instruments.registry()
    }

    /// Every instrument the layers record, on [`registry`](Self::registry).
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The service's dependencies, for `/health/ready`: declare each with
    /// [`Health::dependency`] and say when it goes down and comes back.
    pub fn health(&self) -> &Health {
        self.instruments.health()
    }

    /// The baggage policy in force.
    pub fn baggage(&self) -> &BaggagePolicy {
        &self.baggage
    }

    /// Telemetry's guard: the service identity, export statistics.
    pub fn telemetry(&self) -> &TelemetryGuard {
        &self.guard
    }

    /// The HTTP server layer: a SERVER span per request continuing the
    /// caller's trace (probes and scrapes skipped), a `traceparent` on the
    /// response, the RED metrics with the span as exemplar. Put it on the
    /// router with `Router::layer` (after routing: spans are named by the
    /// route template).
    #[cfg(feature = "axum")]
    pub fn http_server(&self) -> HttpServer {
        self.instruments.http_server(self.instrumentation())
    }

    /// `GET /metrics` (OpenMetrics with exemplars, or Prometheus text, by
    /// negotiation), `GET /health/live` (and `/health`) and
    /// `GET /health/ready` (503 with what is down).
    #[cfg(feature = "axum")]
    pub fn routes<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        self.instruments.routes()
    }

    /// The gRPC server layer: spans until the end of the stream, the status
    /// from the trailers, `rpc.server.call.duration`.
    #[cfg(feature = "tonic")]
    pub fn grpc_server(&self) -> GrpcServer {
        self.instruments.grpc_server(self.instrumentation())
    }

    /// The gRPC client layer: CLIENT spans, the context injected,
    /// `rpc.client.call.duration`.
    #[cfg(feature = "tonic")]
    pub fn grpc_client(&self) -> GrpcClient {
        self.instruments.grpc_client(self.instrumentation())
    }

    /// The HTTP client layer for a Tower client of `http::Request`s
    /// (hyper-util's): CLIENT spans, the context injected,
    /// `http.client.request.duration` with the span as exemplar.
    pub fn http_client(&self) -> HttpClient {
        self.instruments.http_client(self.instrumentation())
    }

    /// The same for reqwest, as a `reqwest_middleware` middleware:
    /// `ClientBuilder::new(reqwest::Client::new()).with(lt.reqwest())`.
    #[cfg(feature = "reqwest")]
    pub fn reqwest(&self) -> Reqwest {
        self.instruments.reqwest(self.instrumentation())
    }

    /// Producer and consumer instrumentation for Kafka, RabbitMQ and NATS,
    /// recording the messaging metrics; consumers link to producers until
    /// [`mode`](messaging::MessagingTelemetry::mode) says otherwise.
    #[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
    pub fn messaging(&self) -> Messaging {
        self.instruments.messaging(self.instrumentation())
    }

    /// Flushes and shuts telemetry down, bounded by its timeout.
    ///
    /// # Errors
    /// What could not be delivered (logged too); the work was done all the
    /// same.
    pub fn shutdown(self) -> Result<(), ShutdownError> {
        self.guard.shutdown()
    }
}
