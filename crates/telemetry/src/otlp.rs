//! OTLP exporters (gRPC and HTTP/protobuf) from the resolved configuration.

#[cfg(feature = "otlp-http")]
use std::collections::HashMap;
use std::time::Duration;

#[cfg(any(feature = "otlp-http", feature = "otlp-grpc"))]
use opentelemetry_otlp::WithExportConfig;
#[cfg(feature = "otlp-http")]
use opentelemetry_otlp::WithHttpConfig;
#[cfg(feature = "otlp-grpc")]
use opentelemetry_otlp::WithTonicConfig;

use crate::config::{Endpoint, OtlpSignal, Protocol};
use crate::{ConfigError, TelemetryError};

/// The OTLP export timeout when none is configured.
pub(crate) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(feature = "otlp-http")]
fn headers(signal: &OtlpSignal) -> HashMap<String, String> {
    signal.headers.iter().cloned().collect()
}

/// The protocol when none is set: HTTP/protobuf, the spec's default, when
/// this build has it; else gRPC.
const DEFAULT_PROTOCOL: Protocol = if cfg!(feature = "otlp-http") || !cfg!(feature = "otlp-grpc") {
    Protocol::HttpProtobuf
} else {
    Protocol::Grpc
};

/// Where `signal` goes, over which protocol.
///
/// # Errors
/// A protocol this build was made without (its feature off).
pub(crate) fn target(
    signal: &OtlpSignal,
    path: &str,
) -> Result<(Protocol, String), TelemetryError> {
    let protocol = signal.protocol.unwrap_or(DEFAULT_PROTOCOL);
    let built = match protocol {
        Protocol::HttpProtobuf => cfg!(feature = "otlp-http"),
        Protocol::Grpc => cfg!(feature = "otlp-grpc"),
    };
    if !built {
        let (name, feature) = match protocol {
            Protocol::HttpProtobuf => ("http/protobuf", "otlp-http"),
            Protocol::Grpc => ("grpc", "otlp-grpc"),
        };
        return Err(ConfigError::new(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            name,
            format!("this build has no OTLP over {name}: enable looptel's `{feature}` feature"),
        )
        .into());
    }
    let endpoint = signal
        .endpoint
        .clone()
        .unwrap_or_else(|| Endpoint::Base(protocol.default_endpoint().to_owned()));
    Ok((protocol, endpoint.resolve(protocol, path)))
}

#[cfg(feature = "otlp-grpc")]
pub(crate) fn grpc_metadata(signal: &OtlpSignal) -> tonic::metadata::MetadataMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in &signal.headers {
        // Validated when parsed.
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    tonic::metadata::MetadataMap::from_headers(map)
}

/// The endpoint, timeout and headers of `signal`, on a gRPC exporter builder.
#[cfg(feature = "otlp-grpc")]
fn over_grpc<B: WithExportConfig + WithTonicConfig>(
    builder: B,
    signal: &OtlpSignal,
    url: &str,
) -> Result<B, TelemetryError> {
    tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
    Ok(builder
        .with_endpoint(url)
        .with_timeout(signal.timeout.unwrap_or(DEFAULT_OTLP_TIMEOUT))
        .with_metadata(grpc_metadata(signal)))
}

/// The endpoint, timeout and headers of `signal`, on an HTTP exporter builder.
#[cfg(feature = "otlp-http")]
fn over_http<B: WithExportConfig + WithHttpConfig>(
    builder: B,
    signal: &OtlpSignal,
    url: &str,
) -> B {
    builder
        .with_endpoint(url)
        .with_timeout(signal.timeout.unwrap_or(DEFAULT_OTLP_TIMEOUT))
        .with_headers(headers(signal))
}

pub(crate) fn otlp_span_exporter(
    signal: &OtlpSignal,
) -> Result<(opentelemetry_otlp::SpanExporter, String), TelemetryError> {
    let (protocol, url) = target(signal, "/v1/traces")?;
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match protocol {
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        #[cfg(feature = "otlp-http")]
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
        #[allow(unreachable_patterns)] // `target` refused what this build lacks
        _ => return Err(missing(protocol)),
    };
    let exporter = built.map_err(|source| TelemetryError::Exporter {
        signal: "traces",
        source,
    })?;
    Ok((exporter, format!("{url} ({})", protocol_name(protocol))))
}

pub(crate) fn otlp_metric_exporter(
    signal: &OtlpSignal,
) -> Result<(opentelemetry_otlp::MetricExporter, String), TelemetryError> {
    let (protocol, url) = target(signal, "/v1/metrics")?;
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let built = match protocol {
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        #[cfg(feature = "otlp-http")]
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
        #[allow(unreachable_patterns)] // `target` refused what this build lacks
        _ => return Err(missing(protocol)),
    };
    let exporter = built.map_err(|source| TelemetryError::Exporter {
        signal: "metrics",
        source,
    })?;
    Ok((exporter, format!("{url} ({})", protocol_name(protocol))))
}

pub(crate) fn otlp_log_exporter(
    signal: &OtlpSignal,
) -> Result<(opentelemetry_otlp::LogExporter, String), TelemetryError> {
    let (protocol, url) = target(signal, "/v1/logs")?;
    let builder = opentelemetry_otlp::LogExporter::builder();
    let built = match protocol {
        #[cfg(feature = "otlp-grpc")]
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        #[cfg(feature = "otlp-http")]
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
        #[allow(unreachable_patterns)] // `target` refused what this build lacks
        _ => return Err(missing(protocol)),
    };
    let exporter = built.map_err(|source| TelemetryError::Exporter {
        signal: "logs",
        source,
    })?;
    Ok((exporter, format!("{url} ({})", protocol_name(protocol))))
}

/// A protocol this build lacks (never reached: [`target`] refuses it).
fn missing(p: Protocol) -> TelemetryError {
    ConfigError::new(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        protocol_name(p),
        "not in this build",
    )
    .into()
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf => "http/protobuf",
    }
}

/// What a build without a feature says when `OTEL_*` asks for it: run by
/// `scripts/test.sh` with `--no-default-features -F otlp-http`.
#[cfg(all(test, not(feature = "otlp-grpc"), not(feature = "b3")))]
mod lacking {
    use crate::{Telemetry, TelemetryError};

    fn refused(vars: &'static [(&'static str, &'static str)]) -> crate::ConfigError {
        let built = Telemetry::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .build();
        match built {
            Err(TelemetryError::Config(e)) => e,
            other => panic!("refused at start-up, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn otlp_over_grpc_names_its_feature() {
        let e = refused(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(e.variable(), "OTEL_EXPORTER_OTLP_PROTOCOL");
        assert!(e.to_string().contains("`otlp-grpc`"), "{e}");
    }

    #[test]
    fn b3_names_its_feature() {
        let e = refused(&[("OTEL_PROPAGATORS", "tracecontext,b3")]);
        assert_eq!((e.variable(), e.value()), ("OTEL_PROPAGATORS", "b3"));
        assert!(e.to_string().contains("`b3`"), "{e}");
    }

    #[test]
    fn the_default_protocol_is_the_one_built() {
        // An endpoint and no protocol: HTTP/protobuf, which this build has.
        let built = Telemetry::from_lookup(|k| {
            (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4318".to_owned())
        })
        .build();
        assert!(built.is_ok(), "{:?}", built.err());
    }
}
