//! `OTEL_SEMCONV_STABILITY_OPT_IN`: which generation of names the RPC
//! instrumentation emits while dashboards migrate.

/// The environment variable that opts into older names beside the current
/// ones (a comma-separated list; looptel reads `rpc/dup`).
pub const OTEL_SEMCONV_STABILITY_OPT_IN: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";

/// What `OTEL_SEMCONV_STABILITY_OPT_IN` asks for. The default emits the
/// current names only (semantic conventions 1.42); `rpc/dup` also emits the
/// pre-1.39 RPC names — `rpc.system`, `rpc.service`, `rpc.grpc.status_code`
/// on spans and the `rpc.server.duration` / `rpc.client.duration`
/// histograms in milliseconds — as the conventions' RPC migration guide
/// describes. Where both generations use one key with different values
/// (`rpc.method`: the full method now, the bare method before), the current
/// value is kept.
///
/// ```
/// use looptel_core::SemconvOptIn;
/// assert!(SemconvOptIn::parse("http, rpc/dup").rpc_dup());
/// assert!(!SemconvOptIn::parse("rpc").rpc_dup());
/// assert!(!SemconvOptIn::default().rpc_dup());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SemconvOptIn {
    rpc_dup: bool,
}

impl SemconvOptIn {
    /// Reads a value of the variable: a comma-separated list whose entries
    /// are trimmed; entries for other categories (`http`, `database`) and
    /// unknown ones are ignored, as the conventions ask.
    pub fn parse(value: &str) -> Self {
        Self {
            rpc_dup: value.split(',').any(|v| v.trim() == "rpc/dup"),
        }
    }

    /// Reads [`OTEL_SEMCONV_STABILITY_OPT_IN`] (unset or not Unicode: the
    /// default).
    pub fn from_env() -> Self {
        std::env::var(OTEL_SEMCONV_STABILITY_OPT_IN)
            .map(|v| Self::parse(&v))
            .unwrap_or_default()
    }

    /// Also the pre-1.39 RPC names (`rpc/dup`).
    #[must_use]
    pub fn with_rpc_dup(mut self, on: bool) -> Self {
        self.rpc_dup = on;
        self
    }

    /// Whether the pre-1.39 RPC names are emitted too.
    pub fn rpc_dup(self) -> bool {
        self.rpc_dup
    }
}
