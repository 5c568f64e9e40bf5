//! One call at start-up to get traces, metrics and trace-correlated logs.
//!
//! [`Telemetry::from_env`] reads the standard `OTEL_*` variables (see
//! [`vars`]), code settings win over them, and [`TelemetryBuilder::init`]
//! installs a tracer provider (always behind a batch processor with a bounded
//! queue), an optional OTLP meter provider, the propagators, and a `tracing`
//! subscriber made of the OpenTelemetry layer and the JSON log layer of
//! [`looptel_logs`]. The returned [`TelemetryGuard`] flushes and shuts
//! everything down when dropped, bounded by a timeout.
//!
//! # Example
//!
//! ```no_run
//! use looptel_telemetry::{Telemetry, shutdown_signal};
//!
//! # async fn serve() {}
//! #[tokio::main]
//! async fn main() -> Result<(), looptel_telemetry::TelemetryError> {
//!     let _telemetry = Telemetry::from_env()
//!         .service_name("order-service")
//!         .service_version(env!("CARGO_PKG_VERSION"))
//!         .init()?;
//!     tracing::info!("serving");
//!     tokio::select! { _ = serve() => {}, _ = shutdown_signal() => {} }
//!     Ok(()) // the guard flushes spans and logs here
//! }
//! ```
//!
//! # Where traces go
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces endpoint) set, or
//!   `OTEL_TRACES_EXPORTER=otlp`: OTLP over `http/protobuf` (the default) or
//!   `grpc`, with `OTEL_EXPORTER_OTLP_*` timeouts and headers.
//! - No endpoint: the **embedded default** — spans are still created and
//!   sampled, so ids reach logs and exemplars, and each finished span is
//!   written as one JSON line on standard error. The service says so at
//!   start-up.
//! - `LOOPTEL_TRACES_FILE=/path/spans.jsonl` (or
//!   [`TelemetryBuilder::traces_file`]): finished spans appended as OTLP JSON
//!   lines, the collector's file-exporter format, instead of the standard
//!   error default (beside OTLP when that is set): what `looptel-retro`
//!   reads when no trace store runs.
//! - `OTEL_TRACES_EXPORTER=none`: spans are created and sampled, not exported.
//! - `OTEL_SDK_DISABLED=true`: no traces or metrics at all; logs still work.
//!
//! # Where logs go
//! - JSON lines on standard output by default.
//! - `OTEL_LOGS_EXPORTER=otlp`: the same events, redacted and sampled alike,
//!   as OTLP log records — the span's ids in the record's own trace context,
//!   the service as the resource — through a bounded batch processor
//!   (`OTEL_BLRP_*`), to the logs endpoint.
//!
//! # What could not be delivered
//! Spans and log records dropped at a full export queue, or lost in an
//! export that failed, are counted in [`ExportStats`]
//! ([`TelemetryGuard::exports`]): read them into metrics.
//!
//! # What it keeps
//! The span queue is looptel's own batch processor: the SDK's protocol
//! (`OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, flush,
//! shutdown) over a queue that grows with use and is bounded by the count
//! `OTEL_BSP_MAX_QUEUE_SIZE` — the SDK's processor kept all 2,048 slots,
//! 768 KB, resident from start. The JSON log lines' queue likewise (the
//! bounded channel it replaced kept 512 KB). Idle, a service keeps neither.
//!
//! Every invalid value stops start-up with a [`ConfigError`] naming the
//! variable and the value, instead of silently falling back.
//!
//! # Features
//! `otlp-http` (OTLP over HTTP/protobuf, through reqwest), `otlp-grpc`
//! (OTLP over gRPC, through tonic) — at least one — and `b3` (the B3
//! propagators); all three by default. A protocol or propagator asked for
//! by `OTEL_*` that the build lacks stops start-up with a [`ConfigError`]
//! naming the feature.
//!
//! # Runtime
//! Start telemetry inside a Tokio runtime when OTLP uses gRPC, and prefer the
//! multi-thread runtime: spans are exported from a dedicated thread that
//! relies on the runtime to drive the gRPC connection, also during shutdown.

#[cfg(not(any(feature = "otlp-http", feature = "otlp-grpc")))]
compile_error!(
    "looptel-telemetry exports over OTLP: enable `otlp-http` (the default) or `otlp-grpc` \
     (through `looptel`: its features of the same names)"
);

mod batch;
mod builder;
mod config;
mod console;
mod error;
mod file;
mod guard;
mod limit;
mod otlp;
mod promotion;
mod push;
mod queue;
mod sampler;
pub mod vars;

use std::time::Duration;

use looptel_core::{BaggagePromotion, Instrumentation, Propagator, ServiceInfo};
use looptel_logs::{JsonLogs, LogsGuard, LogsHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;

pub use builder::TelemetryBuilder;
pub use config::Temporality;
pub use config::{LogsExporter, MetricsExporter, Protocol, TracesExporter};
pub use error::{ConfigError, ShutdownError, TelemetryError};
pub use guard::{
    DROP_CHECK_INTERVAL, DROP_WARNING_INTERVAL, Drained, Shutdown, TelemetryGuard, shutdown_signal,
};
pub use queue::{ExportStats, Undelivered};
pub use sampler::{RuleSampler, SamplerConfig};

/// `deployment.environment`, as the conventions name it.
pub const DEPLOYMENT_ENVIRONMENT: &str = looptel_catalogue::logs::DEPLOYMENT_ENVIRONMENT;

/// The default bound on shutdown: flushing spans, metrics and logs.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

type Lookup = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Entry point: [`Telemetry::from_env`] or [`Telemetry::builder`].
#[derive(Debug)]
pub struct Telemetry {
    service: ServiceInfo,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
    push: Option<push::PushConfig>,
    logs: JsonLogs,
    logs_handle: LogsHandle,
    export_stats: queue::ExportStats,
    logs_guard: LogsGuard,
    span_level: LevelFilter,
    shutdown_timeout: Duration,
    notes: Vec<Note>,
    histograms: looptel_red_metrics::Histograms,
    /// Built once from the tracer provider and the propagator; the guard
    /// hands out the same.
    instrumentation: Instrumentation,
}

/// A start-up message: where telemetry goes, or a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    warning: bool,
    text: String,
}

impl Note {
    fn info(text: String) -> Self {
        Self {
            warning: false,
            text,
        }
    }

    fn warn(text: String) -> Self {
        Self {
            warning: true,
            text,
        }
    }

    /// Whether this is a warning.
    pub fn is_warning(&self) -> bool {
        self.warning
    }

    /// The message.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Telemetry {
    /// A builder that reads the process environment (see [`vars`] and
    /// `RUST_LOG`) when built.
    pub fn from_env() -> TelemetryBuilder {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// A builder that reads variables through `lookup` instead of the
    /// process environment — for tests, or configuration from elsewhere.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String> + Send + 'static,
    ) -> TelemetryBuilder {
        TelemetryBuilder {
            env: Some(Box::new(lookup)),
            ..Self::builder()
        }
    }

    /// A builder that reads no environment at all — except that the OTLP
    /// exporter itself still merges `OTEL_EXPORTER_OTLP_*HEADERS` and reads
    /// its TLS and compression variables from the process.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder {
            env: None,
            service_name: None,
            service_version: None,
            environment: None,
            attributes: Vec::new(),
            sampler: None,
            traces_exporter: None,
            endpoint: None,
            protocol: None,
            span_exporter: None,
            logs: JsonLogs::builder(),
            span_level: LevelFilter::INFO,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            promotion: BaggagePromotion::default(),
            baggage_policy: None,
            traces_file: None,
            histograms: None,
        }
    }

    /// The service identity written on logs and resources.
    pub fn service(&self) -> &ServiceInfo {
        &self.service
    }

    /// The propagator to hand to HTTP, gRPC and messaging layers.
    pub fn propagator(&self) -> &Propagator {
        self.instrumentation.propagator()
    }

    /// The start-up messages ([`init`](TelemetryBuilder::init) logs them).
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// The tracer and propagator for HTTP, gRPC and messaging layers.
    pub fn instrumentation(&self) -> Instrumentation {
        self.instrumentation.clone()
    }

    /// The tracer provider, `None` when telemetry is disabled.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer_provider.as_ref()
    }

    /// Which buckets the metrics registry's histograms keep.
    pub fn histograms(&self) -> looptel_red_metrics::Histograms {
        self.histograms
    }

    /// The meter provider, when metrics are pushed with OTLP.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// Installs everything globally: the `tracing` subscriber, the tracer
    /// and meter providers, and the propagator; then logs the start-up notes.
    pub fn init(self) -> Result<TelemetryGuard, TelemetryError> {
        if let Some(p) = &self.tracer_provider {
            opentelemetry::global::set_tracer_provider(p.clone());
        }
        if let Some(m) = &self.meter_provider {
            opentelemetry::global::set_meter_provider(m.clone());
        }
        opentelemetry::global::set_text_map_propagator(self.propagator().clone());
        let notes = self.notes.clone();
        let (subscriber, mut guard) = self.into_subscriber();
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
        // Its warnings go to the global subscriber, just installed.
        guard.watch =
            guard::DropWatch::start(guard.export_stats.clone(), guard.logs_handle.clone());
        for note in &notes {
            if note.warning {
                tracing::warn!(target: "looptel", "{}", note.text);
            } else {
                tracing::info!(target: "looptel", "{}", note.text);
            }
        }
        Ok(guard)
    }

    /// The `tracing` subscriber and the guard, without installing anything
    /// globally (for tests and for programs that compose their own).
    pub fn into_subscriber(
        self,
    ) -> (
        impl tracing::Subscriber + Send + Sync + 'static,
        TelemetryGuard,
    ) {
        let otel = self.tracer_provider.as_ref().map(|p| {
            // Only what the conventions name: no thread ids, busy/idle
            // timings or `target` attributes on every span.
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(looptel_core::SCOPE))
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_target(false)
                .with_filter(self.span_level)
        });
        let subscriber = tracing_subscriber::registry()
            .with(otel)
            .with(self.logs.layer());
        let guard = TelemetryGuard {
            service: self.service,
            instrumentation: self.instrumentation,
            tracer_provider: self.tracer_provider,
            meter_provider: self.meter_provider,
            logger_provider: self.logger_provider,
            push_config: self.push,
            push: None,
            logs: Some(self.logs_guard),
            logs_handle: self.logs_handle,
            export_stats: self.export_stats,
            timeout: self.shutdown_timeout,
            watch: None,
            histograms: self.histograms,
        };
        (subscriber, guard)
    }
}
