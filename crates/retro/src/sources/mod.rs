//! Where evidence comes from, behind traits so that users point the
//! service at what they run: metrics and exemplars ([`MetricsSource`],
//! Prometheus), traces ([`TraceSource`]: Tempo, Jaeger, an OTLP JSON file)
//! and logs ([`LogSource`]: Loki, a file of looptel's JSON log lines).
//!
//! Every outbound call has a timeout; a source that fails returns a
//! [`SourceError`] naming itself, which the card shows.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub mod files;
pub mod jaeger;
pub mod loki;
pub(crate) mod otlp;
pub mod prometheus;
pub mod tempo;

use crate::trace::Trace;

/// What a source's call returns.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SourceError>> + Send + 'a>>;

/// A source that failed: which, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct SourceError {
    /// The source (`prometheus http://127.0.0.1:9090`, `tempo …`, `file …`).
    pub source_name: String,
    /// What went wrong.
    pub message: String,
}

impl SourceError {
    /// An error of `source`.
    pub fn new(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            source_name: source.into(),
            message: message.into(),
        }
    }
}

/// One exemplar: a trace id and the observation it came with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exemplar {
    /// The series' labels (`le`, `error_type`, `http_route`, …).
    pub series: BTreeMap<String, String>,
    /// The exemplar's trace id.
    pub trace_id: String,
    /// Its span id, if it has one.
    pub span_id: Option<String>,
    /// The observed value (seconds, for a duration).
    pub value: f64,
    /// When, Unix seconds.
    pub timestamp: f64,
}

/// One series of an instant or range query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// (Unix seconds, value) points; one for an instant query. NaN and
    /// infinities are dropped.
    pub points: Vec<(f64, f64)>,
}

/// Metrics and exemplars (Prometheus' HTTP API).
pub trait MetricsSource: Send + Sync + std::fmt::Debug {
    /// The exemplars of the series `selector` selects between `start` and
    /// `end`.
    fn exemplars<'a>(
        &'a self,
        selector: &'a str,
        start: OffsetDateTime,
        end: OffsetDateTime,
    ) -> SourceFuture<'a, Vec<Exemplar>>;

    /// An instant query at `at`.
    fn query<'a>(&'a self, expr: &'a str, at: OffsetDateTime) -> SourceFuture<'a, Vec<Series>>;

    /// A range query.
    fn query_range<'a>(
        &'a self,
        expr: &'a str,
        start: OffsetDateTime,
        end: OffsetDateTime,
        step: Duration,
    ) -> SourceFuture<'a, Vec<Series>>;

    /// A link to a graph of `expr` around `at`, for a person.
    fn graph_url(&self, expr: &str) -> String;

    /// Its name on a card.
    fn name(&self) -> String;
}

/// Traces by id.
pub trait TraceSource: Send + Sync + std::fmt::Debug {
    /// The trace, or `None` if the source does not have it (not kept by
    /// tail sampling, expired, not yet flushed).
    fn trace<'a>(&'a self, trace_id: &'a str) -> SourceFuture<'a, Option<Trace>>;

    /// Its name on a card.
    fn name(&self) -> String;
}

/// Log lines by trace id.
pub trait LogSource: Send + Sync + std::fmt::Debug {
    /// At most `limit` lines carrying one of `trace_ids`, between `start`
    /// and `end`, oldest first.
    fn lines<'a>(
        &'a self,
        trace_ids: &'a [String],
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>>;

    /// At most `limit` WARN and ERROR lines between `start` and `end`,
    /// whatever their trace, oldest first: the patterns a card compares
    /// during a burn and before it. A source that cannot list lines by
    /// time says so (the default), and the card goes on without patterns.
    fn warnings<'a>(
        &'a self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        let _ = (start, end, limit);
        let name = self.name();
        Box::pin(async move { Err(SourceError::new(name, "cannot list log lines by time")) })
    }

    /// Its name on a card.
    fn name(&self) -> String;
}

/// Whether a line's level is WARN or worse.
pub(crate) fn is_warning(level: &str) -> bool {
    ["WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"]
        .iter()
        .any(|l| level.eq_ignore_ascii_case(l))
}

/// A log line, as looptel's JSON logs write it (other lines keep their
/// text as the message).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// RFC 3339.
    pub timestamp: String,
    /// `INFO`, `WARN`, `ERROR`, …
    pub level: String,
    /// The message.
    pub message: String,
    /// `service.name`.
    pub service: String,
    /// The trace it belongs to.
    pub trace_id: String,
    /// The span it was written in.
    pub span_id: String,
    /// Every other field, rendered as text.
    pub fields: BTreeMap<String, String>,
}

impl LogLine {
    /// Reads a looptel JSON log line; `None` for anything else.
    pub fn from_json(line: &str) -> Option<Self> {
        use looptel_catalogue::logs as f;
        let serde_json::Value::Object(map) = serde_json::from_str(line).ok()? else {
            return None;
        };
        let mut out = Self::default();
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            match k.as_str() {
                f::TIMESTAMP => out.timestamp = text,
                f::LEVEL => out.level = text,
                f::MESSAGE => out.message = text,
                f::SERVICE_NAME => out.service = text,
                f::TRACE_ID => out.trace_id = text,
                f::SPAN_ID => out.span_id = text,
                _ => {
                    out.fields.insert(k, text);
                }
            }
        }
        Some(out)
    }
}

/// The HTTP client every source uses: traced by looptel (a CLIENT span per
/// call, the context propagated), with a timeout per request.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest_middleware::ClientWithMiddleware,
    timeout: Duration,
}

impl Http {
    /// A client whose calls are traced by `instrumentation` and time out
    /// after `timeout`.
    pub fn new(instrumentation: looptel_core::Instrumentation, timeout: Duration) -> Self {
        Self::traced_by(
            looptel_http_layer::reqwest::TracingMiddleware::new(instrumentation),
            timeout,
        )
    }

    /// As [`new`](Self::new), also timing every call in
    /// `http_client_request_duration_seconds` on `registry`: how the
    /// sources answer, on retro's own `/metrics`.
    pub fn with_metrics(
        instrumentation: looptel_core::Instrumentation,
        timeout: Duration,
        registry: &looptel_red_metrics::Registry,
    ) -> Self {
        Self::traced_by(
            looptel_http_layer::reqwest::TracingMiddleware::new(instrumentation)
                .hook(looptel_red_metrics::HttpClientMetrics::new(registry)),
            timeout,
        )
    }

    fn traced_by(tracing: impl reqwest_middleware::Middleware, timeout: Duration) -> Self {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(tracing)
            .build();
        Self { client, timeout }
    }

    /// GETs `url` with `query` and reads at most `limit` bytes of the body:
    /// `Ok(None)` for a 404.
    pub(crate) async fn get(
        &self,
        source: &str,
        url: &str,
        query: &[(&str, String)],
        limit: usize,
    ) -> Result<Option<Vec<u8>>, SourceError> {
        let err = |m: String| SourceError::new(source, m);
        let mut res = self
            .client
            .get(url)
            .query(query)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| err(error_chain(&e)))?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| err(error_chain(&e)))? {
            if body.len() + chunk.len() > limit {
                return Err(err(format!("response larger than {limit} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text: String = text.chars().take(300).collect();
            return Err(err(format!("{url} answered {status}: {text}")));
        }
        Ok(Some(body))
    }
}

impl Http {
    /// POSTs `body` as JSON to `url`; an answer other than 2xx is an error.
    pub(crate) async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), SourceError> {
        let err = |m: String| SourceError::new("notify", m);
        let res = self
            .client
            .post(url)
            .json(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| err(error_chain(&e)))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(err(format!("{url} answered {}", res.status())))
        }
    }
}

/// An error and its causes, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// Unix seconds with milliseconds, as Prometheus and Loki take them.
pub(crate) fn unix(t: OffsetDateTime) -> String {
    format!("{:.3}", t.unix_timestamp_nanos() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_looptel_log_lines_and_refuses_others() {
        let line = r#"{"timestamp":"2026-11-30T10:00:00.1Z","level":"ERROR","message":"order failed","service.name":"order-service","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"b7ad6b7169203331","tenant.id":"acme","attempt":2}"#;
        let l = LogLine::from_json(line).expect("a looptel line");
        assert_eq!(l.level, "ERROR");
        assert_eq!(l.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(l.fields["tenant.id"], "acme");
        assert_eq!(l.fields["attempt"], "2");
        assert_eq!(LogLine::from_json("plain text"), None);
        assert_eq!(LogLine::from_json("[1]"), None);
    }
}
