//! `OTEL_*` environment variables, parsed once into typed values.

use std::time::Duration;

use crate::error::ConfigError;
use crate::sampler::SamplerConfig;

use crate::vars::*;

/// The OTLP wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (default port 4317).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (default port 4318).
    HttpProtobuf,
}

impl Protocol {
    fn parse(var: &'static str, value: &str) -> Result<Self, ConfigError> {
        match value.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            _ => Err(ConfigError::new(
                var,
                value,
                "expected `grpc` or `http/protobuf` (`http/json` is not supported)",
            )),
        }
    }

    pub(crate) fn default_endpoint(self) -> &'static str {
        match self {
            Self::Grpc => "http://localhost:4317",
            Self::HttpProtobuf => "http://localhost:4318",
        }
    }
}

/// Where spans go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TracesExporter {
    /// OTLP to a collector.
    Otlp,
    /// JSON lines on standard error (the embedded default when no endpoint is set).
    Console,
    /// Spans are still created and sampled — ids reach logs and exemplars —
    /// but not exported.
    None,
}

/// Where log records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogsExporter {
    /// OTLP to a collector, through a bounded batch processor.
    Otlp,
    /// JSON lines on standard output (the default).
    Console,
    /// Not written anywhere.
    None,
}

/// Where metrics go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsExporter {
    /// Pushed with OTLP.
    Otlp,
    /// Not pushed (scraped from `/metrics`, or off).
    None,
}

/// An OTLP endpoint as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or code: over HTTP the signal's path
    /// (`/v1/traces`) is appended.
    Base(String),
    /// A signal's own endpoint, used as is.
    Signal(String),
}

impl Endpoint {
    /// The URL to export `signal_path` (`/v1/traces`) to over `protocol`.
    pub(crate) fn resolve(&self, protocol: Protocol, signal_path: &str) -> String {
        match (self, protocol) {
            (Self::Base(base), Protocol::HttpProtobuf) => {
                format!("{}{signal_path}", base.trim_end_matches('/'))
            }
            (Self::Base(url) | Self::Signal(url), _) => url.clone(),
        }
    }
}

/// One signal's OTLP settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OtlpSignal {
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) headers: Vec<(String, String)>,
}

/// Everything read from the environment, before code settings are applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct EnvConfig {
    pub(crate) disabled: bool,
    pub(crate) service_name: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) traces_exporter: Option<TracesExporter>,
    pub(crate) metrics_exporter: Option<MetricsExporter>,
    pub(crate) logs_exporter: Option<LogsExporter>,
    pub(crate) traces: OtlpSignal,
    pub(crate) metrics: OtlpSignal,
    pub(crate) logs: OtlpSignal,
    pub(crate) blrp_schedule_delay: Option<Duration>,
    pub(crate) blrp_export_timeout: Option<Duration>,
    pub(crate) blrp_max_queue_size: Option<usize>,
    pub(crate) blrp_max_export_batch_size: Option<usize>,
    pub(crate) bsp_schedule_delay: Option<Duration>,
    pub(crate) bsp_export_timeout: Option<Duration>,
    pub(crate) bsp_max_queue_size: Option<usize>,
    pub(crate) bsp_max_export_batch_size: Option<usize>,
    pub(crate) metric_export_interval: Option<Duration>,
    pub(crate) temporality: Temporality,
    /// `LOOPTEL_METRICS_HISTOGRAMS`.
    pub(crate) histograms: Option<looptel_red_metrics::Histograms>,
    /// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`: whether
    /// exponential.
    pub(crate) exponential: Option<bool>,
    pub(crate) metric_export_timeout: Option<Duration>,
    pub(crate) sampler: Option<SamplerConfig>,
    pub(crate) propagators: Option<Vec<PropagatorName>>,
    pub(crate) semconv: looptel_core::SemconvOptIn,
    pub(crate) traces_file: Option<std::path::PathBuf>,
    /// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
    pub(crate) value_limit: Option<usize>,
}

/// A propagator named in `OTEL_PROPAGATORS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PropagatorName {
    TraceContext,
    Baggage,
    /// Zipkin's single `b3` header.
    B3,
    /// Zipkin's `X-B3-*` headers.
    B3Multi,
}

impl EnvConfig {
    /// Parses every variable `lookup` yields. Empty values count as unset,
    /// as the specification asks.
    pub(crate) fn parse(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut c = Self {
            disabled: match get(OTEL_SDK_DISABLED) {
                None => false,
                Some(v) => parse_bool(OTEL_SDK_DISABLED, &v)?,
            },
            ..Self::default()
        };
        c.traces_file = get(LOOPTEL_TRACES_FILE).map(|v| v.trim().into());
        c.service_name = get(OTEL_SERVICE_NAME).map(|v| v.trim().to_owned());
        if let Some(v) = get(OTEL_RESOURCE_ATTRIBUTES) {
            c.resource_attributes = parse_key_values(OTEL_RESOURCE_ATTRIBUTES, &v)?;
        }
        c.traces_exporter = read(&get, OTEL_TRACES_EXPORTER, |var, v| {
            choose(var, v, TRACES_EXPORTERS)
        })?;
        c.logs_exporter = read(&get, OTEL_LOGS_EXPORTER, |var, v| {
            choose(var, v, LOGS_EXPORTERS)
        })?;
        c.metrics_exporter = read(&get, OTEL_METRICS_EXPORTER, |var, v| {
            choose(var, v, METRICS_EXPORTERS)
        })?;

        let base_endpoint = get(OTEL_EXPORTER_OTLP_ENDPOINT)
            .map(|v| parse_endpoint(OTEL_EXPORTER_OTLP_ENDPOINT, &v))
            .transpose()?;
        let base_protocol = get(OTEL_EXPORTER_OTLP_PROTOCOL)
            .map(|v| Protocol::parse(OTEL_EXPORTER_OTLP_PROTOCOL, &v))
            .transpose()?;
        let base_timeout = get(OTEL_EXPORTER_OTLP_TIMEOUT)
            .map(|v| parse_millis(OTEL_EXPORTER_OTLP_TIMEOUT, &v))
            .transpose()?;
        let base_headers = get(OTEL_EXPORTER_OTLP_HEADERS)
            .map(|v| parse_headers(OTEL_EXPORTER_OTLP_HEADERS, &v))
            .transpose()?
            .unwrap_or_default();
        let signal = |endpoint_var: &'static str,
                      protocol_var: &'static str,
                      timeout_var: &'static str,
                      headers_var: &'static str|
         -> Result<OtlpSignal, ConfigError> {
            let protocol = get(protocol_var)
                .map(|v| Protocol::parse(protocol_var, &v))
                .transpose()?
                .or(base_protocol);
            let endpoint = match get(endpoint_var) {
                Some(v) => Some(Endpoint::Signal(parse_endpoint(endpoint_var, &v)?)),
                None => base_endpoint.clone().map(Endpoint::Base),
            };
            let mut headers = base_headers.clone();
            if let Some(v) = get(headers_var) {
                for (k, v) in parse_headers(headers_var, &v)? {
                    headers.retain(|(old, _)| *old != k);
                    headers.push((k, v));
                }
            }
            Ok(OtlpSignal {
                endpoint,
                protocol,
                timeout: get(timeout_var)
                    .map(|v| parse_millis(timeout_var, &v))
                    .transpose()?
                    .or(base_timeout),
                headers,
            })
        };
        c.traces = signal(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
            OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        )?;
        c.metrics = signal(
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
            OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
            OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
            OTEL_EXPORTER_OTLP_METRICS_HEADERS,
        )?;
        c.logs = signal(
            OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
            OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
            OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
            OTEL_EXPORTER_OTLP_LOGS_HEADERS,
        )?;
        // The batch processors' and the metric reader's settings.
        for (field, var) in [
            (&mut c.blrp_schedule_delay, OTEL_BLRP_SCHEDULE_DELAY),
            (&mut c.blrp_export_timeout, OTEL_BLRP_EXPORT_TIMEOUT),
            (&mut c.bsp_schedule_delay, OTEL_BSP_SCHEDULE_DELAY),
            (&mut c.bsp_export_timeout, OTEL_BSP_EXPORT_TIMEOUT),
            (&mut c.metric_export_interval, OTEL_METRIC_EXPORT_INTERVAL),
            (&mut c.metric_export_timeout, OTEL_METRIC_EXPORT_TIMEOUT),
        ] {
            *field = read(&get, var, parse_millis)?;
        }
        for (field, var) in [
            (&mut c.blrp_max_queue_size, OTEL_BLRP_MAX_QUEUE_SIZE),
            (
                &mut c.blrp_max_export_batch_size,
                OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
            ),
            (&mut c.bsp_max_queue_size, OTEL_BSP_MAX_QUEUE_SIZE),
            (
                &mut c.bsp_max_export_batch_size,
                OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
            ),
        ] {
            *field = read(&get, var, parse_positive)?;
        }
        if let (Some(batch), Some(queue)) = (c.bsp_max_export_batch_size, c.bsp_max_queue_size)
            && batch > queue
        {
            {
                return Err(ConfigError::new(
                    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
                    &batch.to_string(),
                    format!("must not exceed {OTEL_BSP_MAX_QUEUE_SIZE} ({queue})"),
                ));
            }
        }
        c.temporality = read(
            &get,
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
            |var, v| choose(var, v, TEMPORALITIES),
        )?
        .unwrap_or(Temporality::Cumulative);
        c.histograms = read(&get, LOOPTEL_METRICS_HISTOGRAMS, |var, v| {
            v.parse()
                .map_err(|_| ConfigError::new(var, v, "expected classic, native or classic+native"))
        })?;
        c.exponential = read(
            &get,
            OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
            |var, v| choose(var, v, AGGREGATIONS),
        )?;
        c.sampler = SamplerConfig::from_env(
            get(OTEL_TRACES_SAMPLER).as_deref(),
            get(OTEL_TRACES_SAMPLER_ARG).as_deref(),
        )?;
        c.propagators = get(OTEL_PROPAGATORS)
            .map(|v| parse_propagators(&v))
            .transpose()?;
        c.semconv = get(OTEL_SEMCONV_STABILITY_OPT_IN)
            .map(|v| looptel_core::SemconvOptIn::parse(&v))
            .unwrap_or_default();
        c.value_limit = match get(OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT) {
            Some(v) => Some(parse_positive(OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT, &v)?),
            None => get(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT)
                .map(|v| parse_positive(OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, &v))
                .transpose()?,
        };
        Ok(c)
    }
}

/// `OTEL_TRACES_EXPORTER`'s values.
const TRACES_EXPORTERS: &[(&str, TracesExporter)] = &[
    ("otlp", TracesExporter::Otlp),
    ("console", TracesExporter::Console),
    ("none", TracesExporter::None),
];

/// `OTEL_LOGS_EXPORTER`'s values.
const LOGS_EXPORTERS: &[(&str, LogsExporter)] = &[
    ("otlp", LogsExporter::Otlp),
    ("console", LogsExporter::Console),
    ("none", LogsExporter::None),
];

/// `OTEL_METRICS_EXPORTER`'s values: Prometheus scrapes `/metrics`, so
/// nothing is pushed for it.
const METRICS_EXPORTERS: &[(&str, MetricsExporter)] = &[
    ("otlp", MetricsExporter::Otlp),
    ("prometheus", MetricsExporter::None),
    ("none", MetricsExporter::None),
];

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`'s values.
const TEMPORALITIES: &[(&str, Temporality)] = &[
    ("cumulative", Temporality::Cumulative),
    ("delta", Temporality::Delta),
    ("lowmemory", Temporality::LowMemory),
];

/// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`'s values:
/// whether exponential.
const AGGREGATIONS: &[(&str, bool)] = &[
    ("explicit_bucket_histogram", false),
    ("base2_exponential_bucket_histogram", true),
];

/// Which buckets the registry keeps and whether the push sends them as
/// exponential histograms: the code setting or `LOOPTEL_METRICS_HISTOGRAMS`,
/// and the aggregation variable; a pair that asks the push for buckets the
/// registry does not keep is an error.
pub(crate) fn histograms(
    code: Option<looptel_red_metrics::Histograms>,
    env: &EnvConfig,
) -> Result<(looptel_red_metrics::Histograms, bool), ConfigError> {
    use looptel_red_metrics::{Histograms, NativeHistograms};
    let kind = code.or(env.histograms);
    let (kind, exponential) = match (kind, env.exponential) {
        (None, Some(true)) => (
            Histograms::ClassicAndNative(NativeHistograms::default()),
            true,
        ),
        (None, _) => (Histograms::Classic, false),
        (Some(kind), None) => (kind, !kind.classic()),
        (Some(kind), Some(exponential)) => (kind, exponential),
    };
    let problem = match (exponential, kind.classic(), kind.native().is_some()) {
        (true, _, false) => Some(
            "the registry keeps no native buckets (histograms: classic, from LOOPTEL_METRICS_HISTOGRAMS or code)",
        ),
        (false, false, _) => Some(
            "the registry keeps no classic buckets (histograms: native, from LOOPTEL_METRICS_HISTOGRAMS or code)",
        ),
        _ => None,
    };
    match problem {
        Some(reason) => Err(ConfigError::new(
            OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
            if exponential {
                "base2_exponential_bucket_histogram"
            } else {
                "explicit_bucket_histogram"
            },
            reason,
        )),
        None => Ok((kind, exponential)),
    }
}

/// `var` read through `parse`; `None` when unset or empty.
fn read<T>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    parse: impl Fn(&'static str, &str) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    get(var).map(|v| parse(var, &v)).transpose()
}

/// The option `value` names (trimmed; enum values are case-insensitive, as
/// the specification's environment variables say), or an error listing them.
fn choose<T: Copy>(
    var: &'static str,
    value: &str,
    options: &[(&str, T)],
) -> Result<T, ConfigError> {
    let wanted = value.trim();
    options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("`{n}`")).collect();
            let expected = match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("expected {} or {last}", rest.join(", "))
                }
                _ => format!("expected {}", names.join("")),
            };
            ConfigError::new(var, value, expected)
        })
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::new(var, value, "expected `true` or `false`")),
    }
}

fn parse_millis(var: &'static str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| ConfigError::new(var, value, "expected a whole number of milliseconds"))
}

fn parse_positive(var: &'static str, value: &str) -> Result<usize, ConfigError> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::new(
            var,
            value,
            "expected a whole number above 0",
        )),
    }
}

fn parse_endpoint(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    match value.parse::<http::Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(value.to_owned())
        }
        _ => Err(ConfigError::new(
            var,
            value,
            "expected an http:// or https:// URL with a host",
        )),
    }
}

/// `key=value` pairs separated by `,`, values percent-decoded (the W3C
/// Baggage format that `OTEL_RESOURCE_ATTRIBUTES` and the header variables use).
fn parse_key_values(var: &'static str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some((k, v)) = member.split_once('=') else {
            return Err(ConfigError::new(
                var,
                value,
                format!("member {member:?} is not key=value"),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::new(
                var,
                value,
                format!("member {member:?} has an empty key"),
            ));
        }
        let Some(v) = percent_decode(v.trim()) else {
            return Err(ConfigError::new(
                var,
                value,
                format!("member {member:?} has an invalid percent-encoding"),
            ));
        };
        out.retain(|(old, _)| old != k);
        out.push((k.to_owned(), v));
    }
    Ok(out)
}

fn parse_headers(var: &'static str, value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let pairs = parse_key_values(var, value)?;
    for (k, v) in &pairs {
        if http::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::HeaderValue::from_str(v).is_err()
        {
            return Err(ConfigError::new(
                var,
                value,
                format!("header {k:?} is not a valid HTTP header"),
            ));
        }
    }
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn parse_propagators(value: &str) -> Result<Vec<PropagatorName>, ConfigError> {
    let mut out = Vec::new();
    let names: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for name in &names {
        let p = match *name {
            "tracecontext" => PropagatorName::TraceContext,
            "baggage" => PropagatorName::Baggage,
            "b3" => PropagatorName::B3,
            "b3multi" => PropagatorName::B3Multi,
            "none" if names.len() == 1 => continue,
            "none" => {
                return Err(ConfigError::new(
                    OTEL_PROPAGATORS,
                    value,
                    "`none` cannot be combined with other propagators",
                ));
            }
            other => {
                return Err(ConfigError::new(
                    OTEL_PROPAGATORS,
                    value,
                    format!(
                        "unsupported propagator {other:?}; expected `tracecontext`, `baggage`, `b3`, `b3multi` or `none`"
                    ),
                ));
            }
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Temporality {
    /// Counts since the start (the default).
    #[default]
    Cumulative,
    /// Counters and histograms as the change since the last export;
    /// up-down counters stay cumulative.
    Delta,
    /// As `Delta`, except that the values collectors read at each export
    /// (process CPU seconds, drop counts: asynchronous counters) stay
    /// cumulative, as the OpenTelemetry specification's `lowmemory` says.
    LowMemory,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(vars: &'static [(&'static str, &'static str)]) -> Result<EnvConfig, ConfigError> {
        EnvConfig::parse(&|k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn enum_values_are_case_insensitive_and_a_wrong_one_lists_the_choices() {
        let c = parse_with(&[
            (OTEL_TRACES_EXPORTER, " OTLP "),
            (OTEL_METRICS_EXPORTER, "Prometheus"),
            (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "Delta"),
        ])
        .expect("valid");
        assert_eq!(c.traces_exporter, Some(TracesExporter::Otlp));
        assert_eq!(c.metrics_exporter, Some(MetricsExporter::None));
        assert_eq!(c.temporality, Temporality::Delta);

        let e = parse_with(&[(OTEL_LOGS_EXPORTER, "syslog")]).expect_err("refused");
        assert_eq!(
            e.to_string(),
            r#"invalid OTEL_LOGS_EXPORTER="syslog": expected `otlp`, `console` or `none`"#
        );
        let e = parse_with(&[(OTEL_BSP_SCHEDULE_DELAY, "soon")]).expect_err("refused");
        assert_eq!(e.variable(), OTEL_BSP_SCHEDULE_DELAY);
        let c = parse_with(&[
            (OTEL_BLRP_MAX_QUEUE_SIZE, "64"),
            (OTEL_METRIC_EXPORT_TIMEOUT, "250"),
        ])
        .expect("valid");
        assert_eq!(c.blrp_max_queue_size, Some(64));
        assert_eq!(c.metric_export_timeout, Some(Duration::from_millis(250)));
    }

    #[test]
    fn histogram_kind_and_push_aggregation_resolve_together() {
        use looptel_red_metrics::{Histograms, NativeHistograms};
        let resolve =
            |vars: &'static [(&'static str, &'static str)]| histograms(None, &parse_with(vars)?);
        let native = NativeHistograms::default();
        assert_eq!(resolve(&[]), Ok((Histograms::Classic, false)));
        assert_eq!(
            resolve(&[(LOOPTEL_METRICS_HISTOGRAMS, "native")]),
            Ok((Histograms::Native(native), true))
        );
        assert_eq!(
            resolve(&[(LOOPTEL_METRICS_HISTOGRAMS, "Classic+Native")]),
            Ok((Histograms::ClassicAndNative(native), false))
        );
        assert_eq!(
            resolve(&[(
                OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                "base2_exponential_bucket_histogram"
            )]),
            Ok((Histograms::ClassicAndNative(native), true)),
            "exponential pushes keep the scrape's classic buckets"
        );
        for bad in [
            &[(LOOPTEL_METRICS_HISTOGRAMS, "sparse")][..],
            &[
                (LOOPTEL_METRICS_HISTOGRAMS, "native"),
                (
                    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                    "explicit_bucket_histogram",
                ),
            ],
            &[
                (LOOPTEL_METRICS_HISTOGRAMS, "classic"),
                (
                    OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                    "base2_exponential_bucket_histogram",
                ),
            ],
            &[(
                OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                "sparse",
            )],
        ] {
            let e = resolve(bad).expect_err("refused");
            assert!(!e.to_string().is_empty(), "{bad:?}");
        }
    }
}
