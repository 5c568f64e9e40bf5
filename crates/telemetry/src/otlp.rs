//! OTLP exporters (gRPC and HTTP/protobuf) from the resolved configuration.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

use crate::TelemetryError;
use crate::config::{Endpoint, OtlpSignal, Protocol};

/// The OTLP export timeout when none is configured.
pub(crate) const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_secs(10);

fn headers(signal: &OtlpSignal) -> HashMap<String, String> {
    signal.headers.iter().cloned().collect()
}

pub(crate) fn target(signal: &OtlpSignal, path: &str) -> (Protocol, String) {
    let protocol = signal.protocol.unwrap_or(Protocol::HttpProtobuf);
    let endpoint = signal
        .endpoint
        .clone()
        .unwrap_or_else(|| Endpoint::Base(protocol.default_endpoint().to_owned()));
    (protocol, endpoint.resolve(protocol, path))
}

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
    let (protocol, url) = target(signal, "/v1/traces");
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match protocol {
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
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
    let (protocol, url) = target(signal, "/v1/metrics");
    let builder = opentelemetry_otlp::MetricExporter::builder();
    let built = match protocol {
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
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
    let (protocol, url) = target(signal, "/v1/logs");
    let builder = opentelemetry_otlp::LogExporter::builder();
    let built = match protocol {
        Protocol::Grpc => over_grpc(builder.with_tonic(), signal, &url)?.build(),
        Protocol::HttpProtobuf => over_http(builder.with_http(), signal, &url).build(),
    };
    let exporter = built.map_err(|source| TelemetryError::Exporter {
        signal: "logs",
        source,
    })?;
    Ok((exporter, format!("{url} ({})", protocol_name(protocol))))
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Grpc => "grpc",
        Protocol::HttpProtobuf => "http/protobuf",
    }
}
