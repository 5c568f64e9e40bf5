//! Trace-correlated JSON logs for `tracing`.
//!
//! [`JsonLogs`] builds a `tracing_subscriber` layer that writes one JSON
//! object per line with the fields the conventions ask for — `timestamp`
//! (RFC 3339, UTC), `level`, `message`, `trace_id`, `span_id`,
//! `service.name`, `service.version`, `deployment.environment` — plus the
//! fields of the enclosing spans and of the event. `trace_id` and `span_id`
//! are those of the span the exporter writes, so a log line leads to its
//! trace and back.
//!
//! # Example
//!
//! ```
//! use looptel_core::{BaggagePromotion, ServiceInfo};
//! use looptel_logs::JsonLogs;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! # let out = looptel_tests::SharedBuf::default();
//! let (logs, guard) = JsonLogs::builder()
//!     .service(ServiceInfo::new("order-service").with_version("1.0.0"))
//!     .filter("info")?
//!     # .output(out.clone())
//!     .build();
//! let subscriber = tracing_subscriber::registry().with(logs.layer());
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(order.id = "o-1", phone = "13812348000", "order placed");
//! });
//! drop(guard); // flushes the non-blocking writer
//! # let line: serde_json::Value = serde_json::from_str(&out.contents()).unwrap();
//! # assert_eq!(line["message"], "order placed");
//! # assert_eq!(line["phone"], "138****8000");
//! # assert_eq!(line["service.name"], "order-service");
//! # Ok::<(), looptel_logs::LogsError>(())
//! ```
//!
//! # What it does
//! - **Correlation.** The ids come from the event's span (its explicit parent
//!   or the innermost entered span), read from `tracing-opentelemetry`; work
//!   spawned with `.instrument(span)` keeps them.
//! - **Redaction.** Field names on the [`Redaction`] deny-list (phone, email,
//!   card number, password, token, authorization, …) are masked or
//!   keyed-hashed, in event and span fields alike.
//! - **Sampling.** [`Sampling`] keeps the first N lines per callsite and
//!   interval, then one in M; WARN and ERROR are never sampled away. Dropped
//!   lines are counted ([`LogsHandle::sampled_out`]).
//! - **Non-blocking output.** Lines go through a bounded queue to a writer
//!   thread; when it is full, lines are dropped and counted
//!   ([`LogsHandle::dropped`]) instead of blocking the request. The queue
//!   grows with use — an idle service keeps none of it — and a burst is one
//!   write call. The [`LogsGuard`] flushes the queue when dropped.
//! - **OpenTelemetry log records instead.** With [`LogsBuilder::export`]
//!   the same events — redacted and sampled alike — become log records of
//!   an OpenTelemetry logger: the message as body, the level as severity,
//!   the span's ids in the record's own trace context, the other fields as
//!   attributes, the service as the provider's resource. Its provider's
//!   batch processor is the bounded, non-blocking path (`looptel-telemetry`
//!   builds one with an OTLP exporter for `OTEL_LOGS_EXPORTER=otlp`).
//! - **Filtering.** `RUST_LOG` directives ([`LogsBuilder::filter_from_env`])
//!   select which events are written; spans are never hidden from the layer,
//!   so filtering logs never breaks correlation or disables traces.
//!
//! # Layer order
//! Add the `tracing-opentelemetry` layer to the registry before this one, so
//! that spans carry their OpenTelemetry ids when events are written.

mod filter;
mod layer;
mod redact;
mod sample;
mod writer;
#[doc(hidden)]
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use looptel_core::{BaggagePromotion, ServiceInfo};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Filtered;

pub use filter::EventFilter;
pub use layer::JsonLayer;
pub use redact::{HashKey, Redaction, RedactionMode, USER_ID};
pub use sample::Sampling;

/// The environment variable read by [`LogsBuilder::filter_from_env`].
pub const RUST_LOG: &str = "RUST_LOG";

/// The default number of lines the non-blocking writer buffers.
///
/// A bound on lines, not memory set aside: the queue grows with use and
/// shrinks as lines are written (see the writer's docs), so an idle
/// service keeps none of it; 16,384 lines still hold a few megabytes of
/// them while the output stalls.
pub const DEFAULT_BUFFERED_LINES: usize = 16_384;

/// Builds the JSON log layer; see the [crate docs](crate).
#[derive(Debug)]
pub struct JsonLogs {
    layer: JsonLayer,
    filter: EnvFilter,
    handle: LogsHandle,
}

impl JsonLogs {
    /// Starts a builder with the defaults: filter `info`, default
    /// [`Redaction`], no sampling, stdout, [`DEFAULT_BUFFERED_LINES`].
    pub fn builder() -> LogsBuilder {
        LogsBuilder {
            service: None,
            filter: EnvFilter::new("info"),
            redaction: Redaction::default(),
            sampling: None,
            output: None,
            buffered_lines: DEFAULT_BUFFERED_LINES,
            promotion: BaggagePromotion::default(),
            logger: None,
        }
    }

    /// The layer, filtered by the configured directives (events only).
    pub fn layer<S>(self) -> Filtered<JsonLayer, EventFilter, S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::Layer::with_filter(self.layer, EventFilter(self.filter))
    }

    /// Counters of lines not written, for metrics.
    pub fn handle(&self) -> LogsHandle {
        self.handle.clone()
    }
}

/// Counters of log lines not written. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LogsHandle {
    sampled_out: Arc<AtomicU64>,
    dropped: Option<writer::Dropped>,
}

impl LogsHandle {
    /// Lines dropped by per-callsite sampling.
    pub fn sampled_out(&self) -> u64 {
        self.sampled_out.load(Ordering::Relaxed)
    }

    /// Lines dropped because the output queue was full (JSON lines; the
    /// logger given to [`LogsBuilder::export`] counts its own).
    pub fn dropped(&self) -> u64 {
        self.dropped.as_ref().map_or(0, writer::Dropped::get)
    }
}

/// Flushes queued log lines when dropped; keep it alive for the life of the
/// program.
///
/// The flush waits at most [`FLUSH_TIMEOUT`]: when the output is stalled (a
/// standard output nobody reads, a full pipe), the lines still queued are
/// lost rather than the process hanging at shutdown (the wait for the
/// writer runs on a helper thread, left behind if it never ends).
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogsGuard {
    worker: Option<writer::Worker>,
}

/// The longest a [`LogsGuard`] waits for queued lines to be written when
/// dropped.
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The variable that sets how many lines may wait for the writer
/// ([`LogsBuilder::buffered_lines`]).
pub const LOOPTEL_LOG_BUFFER_LINES: &str = "LOOPTEL_LOG_BUFFER_LINES";

impl Drop for LogsGuard {
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let (done, finished) = std::sync::mpsc::channel();
        let flush = std::thread::Builder::new()
            .name("looptel-logs-flush".to_owned())
            .spawn(move || {
                worker.stop();
                let _ = done.send(());
            });
        if flush.is_ok() {
            // Left behind if the output is stuck: the process may exit.
            let _ = finished.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

/// A [`JsonLogs`] configuration error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogsError {
    /// A filter directive could not be parsed.
    #[error("invalid log filter {source_name} = {value:?}: {reason}")]
    InvalidFilter {
        /// Where the directives came from (`RUST_LOG` or `code`).
        source_name: &'static str,
        /// The directives as given.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A variable with a value that cannot be used.
    #[error("invalid {variable}={value:?}: {reason}")]
    InvalidValue {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// Why not.
        reason: String,
    },
}

/// The builder returned by [`JsonLogs::builder`].
#[must_use]
pub struct LogsBuilder {
    service: Option<ServiceInfo>,
    filter: EnvFilter,
    redaction: Redaction,
    sampling: Option<Sampling>,
    output: Option<Box<dyn Write + Send + 'static>>,
    buffered_lines: usize,
    promotion: BaggagePromotion,
    logger: Option<opentelemetry_sdk::logs::SdkLogger>,
}

impl std::fmt::Debug for LogsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsBuilder")
            .field("service", &self.service)
            .field("filter", &self.filter)
            .field("redaction", &self.redaction)
            .field("sampling", &self.sampling)
            .field("buffered_lines", &self.buffered_lines)
            .field("export", &self.logger.is_some())
            .finish_non_exhaustive()
    }
}

impl LogsBuilder {
    /// The service fields written on every line (`unknown` until set).
    pub fn service(mut self, service: ServiceInfo) -> Self {
        self.service = Some(service);
        self
    }

    /// Filter directives in `RUST_LOG` syntax, e.g. `info,order_service=debug`
    /// (default `info`).
    pub fn filter(mut self, directives: &str) -> Result<Self, LogsError> {
        self.filter = parse_filter("code", directives)?;
        Ok(self)
    }

    /// Reads the filter from `RUST_LOG` and the queue's length from
    /// `LOOPTEL_LOG_BUFFER_LINES` when they are set; otherwise keeps what
    /// was set in code. An invalid value is an error naming the variable.
    pub fn filter_from_env(self) -> Result<Self, LogsError> {
        self.filter_from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`filter_from_env`](Self::filter_from_env), reading variables
    /// through `lookup`.
    pub fn filter_from_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LogsError> {
        if let Some(value) = lookup(RUST_LOG) {
            self.filter = parse_filter(RUST_LOG, &value)?;
        }
        if let Some(value) = lookup(LOOPTEL_LOG_BUFFER_LINES) {
            match value.trim().parse::<usize>() {
                Ok(lines) if lines > 0 => self.buffered_lines = lines,
                _ => {
                    return Err(LogsError::InvalidValue {
                        variable: LOOPTEL_LOG_BUFFER_LINES,
                        value,
                        reason: "expected a number of lines, at least 1".to_owned(),
                    });
                }
            }
        }
        Ok(self)
    }

    /// The deny-list of field names and how they are replaced
    /// (default [`Redaction::default`]).
    pub fn redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = redaction;
        self
    }

    /// Per-callsite sampling of lines below WARN (default: none).
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.sampling = Some(sampling);
        self
    }

    /// Baggage members written as fields on every line (such as
    /// `tenant.id`; default none).
    pub fn promote_baggage(mut self, promotion: BaggagePromotion) -> Self {
        self.promotion = promotion;
        self
    }

    /// Where lines are written (default: standard output).
    pub fn output(mut self, output: impl Write + Send + 'static) -> Self {
        self.output = Some(Box::new(output));
        self
    }

    /// How many lines may wait for the writer before new ones are dropped
    /// and counted (default [`DEFAULT_BUFFERED_LINES`]).
    pub fn buffered_lines(mut self, lines: usize) -> Self {
        self.buffered_lines = lines.max(1);
        self
    }

    /// Emits OpenTelemetry log records to `logger` instead of writing JSON
    /// lines ([`output`](Self::output) and
    /// [`buffered_lines`](Self::buffered_lines) then do not apply: the
    /// logger's provider bounds its own queue, and flushes it at its
    /// shutdown).
    pub fn export(mut self, logger: opentelemetry_sdk::logs::SdkLogger) -> Self {
        self.logger = Some(logger);
        self
    }

    /// Starts the writer thread (for JSON lines) and builds the layer.
    pub fn build(self) -> (JsonLogs, LogsGuard) {
        let (sink, worker, dropped) = match self.logger {
            Some(logger) => (layer::Sink::Otel(logger), None, None),
            None => {
                let output = self.output.unwrap_or_else(|| Box::new(std::io::stdout()));
                match writer::spawn(output, self.buffered_lines, "looptel-logs") {
                    Ok((lines, worker, dropped)) => {
                        (layer::Sink::Json(lines), Some(worker), Some(dropped))
                    }
                    // No thread to write with (the process is out of
                    // them): the lines go nowhere, said once here.
                    Err(e) => {
                        eprintln!("looptel-logs: no writer thread, lines are lost: {e}");
                        (layer::Sink::Discard, None, None)
                    }
                }
            }
        };
        let handle = LogsHandle {
            sampled_out: Arc::new(AtomicU64::new(0)),
            dropped,
        };
        let layer = JsonLayer {
            service: self.service,
            redaction: self.redaction,
            sampler: self.sampling.map(sample::Sampler::new),
            sampled_out: handle.sampled_out.clone(),
            sink,
            promotion: self.promotion,
            dispatch: std::sync::OnceLock::new(),
        };
        (
            JsonLogs {
                layer,
                filter: self.filter,
                handle,
            },
            LogsGuard { worker },
        )
    }
}

fn parse_filter(source_name: &'static str, value: &str) -> Result<EnvFilter, LogsError> {
    EnvFilter::builder()
        .parse(value)
        .map_err(|e| LogsError::InvalidFilter {
            source_name,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}
