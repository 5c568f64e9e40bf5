use std::fmt;

/// An environment variable or code setting with a value that cannot be used.
///
/// Its message names the variable and the value:
/// `invalid OTEL_TRACES_SAMPLER_ARG="1.5": expected a ratio from 0 to 1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: &'static str,
    value: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            variable,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// The variable (or setting) at fault.
    pub fn variable(&self) -> &'static str {
        self.variable
    }

    /// The value it had.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: {}",
            self.variable, self.value, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A variable or setting has an unusable value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The log layer could not be configured.
    #[error(transparent)]
    Logs(#[from] looptel_logs::LogsError),
    /// An OTLP exporter could not be built.
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// What the exporter said.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// OTLP over gRPC needs a Tokio runtime when telemetry starts.
    #[error("OTLP over gRPC must be started inside a Tokio runtime")]
    NoRuntime,
    /// Another global `tracing` subscriber is already installed.
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet,
    /// The span export thread could not be started.
    #[error("cannot start the span export thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Some telemetry could not be flushed or shut down in time.
#[derive(Debug, thiserror::Error)]
#[error("telemetry shutdown: {0}")]
pub struct ShutdownError(String);

impl ShutdownError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}
