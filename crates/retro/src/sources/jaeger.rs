//! Jaeger's query API: `GET /api/traces/{id}` (`data[0].spans`, times in
//! microseconds, parents in `references`, services in `processes`; 404
//! when Jaeger has not got it).
//!
//! No Jaeger server can be installed on the machines this is built on: the
//! client is tested against response bodies written from Jaeger's API
//! documentation, not against a running Jaeger.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::sources::{Http, SourceError, SourceFuture, TraceSource};
use crate::trace::{Span, Trace};

/// Traces from Jaeger.
#[derive(Clone, Debug)]
pub struct Jaeger {
    base: String,
    http: Http,
}

impl Jaeger {
    /// Jaeger's query service at `base` (`http://jaeger:16686`).
    pub fn new(base: impl Into<String>, http: Http) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Vec<JTrace>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JTrace {
    #[serde(default)]
    spans: Vec<JSpan>,
    #[serde(default)]
    processes: HashMap<String, Process>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    #[serde(default)]
    service_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan {
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(default)]
    operation_name: String,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    start_time: u64,
    #[serde(default)]
    duration: u64,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default, rename = "processID")]
    process_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: String,
    #[serde(rename = "spanID")]
    span_id: String,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    #[serde(default)]
    value: Value,
}

/// A Jaeger id (leading zeros may be missing) as `len` bytes of hex.
fn pad(id: &str, len: usize) -> Option<String> {
    (id.len() <= len * 2 && !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{:0>width$}", id.to_ascii_lowercase(), width = len * 2))
}

/// Reads Jaeger's answer for `trace_id`.
pub(crate) fn parse(
    source: &str,
    trace_id: &str,
    body: &[u8],
) -> Result<Option<Trace>, SourceError> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| SourceError::new(source, format!("unreadable trace: {e}")))?;
    let mut spans = Vec::new();
    for t in answer.data.unwrap_or_default() {
        for s in t.spans {
            let Some(span_id) = pad(&s.span_id, 8) else {
                continue;
            };
            let tags: BTreeMap<String, String> = s
                .tags
                .into_iter()
                .map(|t| {
                    let v = match t.value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (t.key, v)
                })
                .collect();
            let error = tags.get("error").is_some_and(|v| v == "true")
                || tags.get("otel.status_code").is_some_and(|v| v == "ERROR");
            let message = tags
                .get("otel.status_description")
                .or_else(|| tags.get("error.type"))
                .cloned()
                .or_else(|| error.then(|| "error".to_owned()));
            let kind = tags
                .get("span.kind")
                .map_or("INTERNAL".to_owned(), |k| k.to_ascii_uppercase());
            spans.push(Span {
                span_id,
                parent_span_id: s
                    .references
                    .iter()
                    .find(|r| r.ref_type == "CHILD_OF")
                    .and_then(|r| pad(&r.span_id, 8)),
                name: s.operation_name,
                service: t.processes.get(&s.process_id).map_or_else(
                    || looptel_catalogue::logs::UNKNOWN.to_owned(),
                    |p| p.service_name.clone(),
                ),
                kind,
                start_ns: s.start_time.saturating_mul(1000),
                end_ns: s.start_time.saturating_add(s.duration).saturating_mul(1000),
                error,
                error_message: message.filter(|_| error),
                attributes: tags,
            });
        }
    }
    Ok((!spans.is_empty()).then(|| Trace::new(trace_id.to_owned(), spans)))
}

impl TraceSource for Jaeger {
    fn trace<'a>(&'a self, trace_id: &'a str) -> SourceFuture<'a, Option<Trace>> {
        Box::pin(async move {
            let name = self.name();
            let url = format!("{}/api/traces/{trace_id}", self.base);
            match self
                .http
                .get(&name, &url, &[], crate::sources::tempo::MAX_TRACE_BYTES)
                .await?
            {
                None => Ok(None),
                Some(body) => parse(&name, trace_id, &body),
            }
        })
    }

    fn name(&self) -> String {
        format!("jaeger {}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Jaeger's documented answer (the UI's query API).
    const BODY: &str = r#"{"data":[{"traceID":"47e4ea3db46ba890","spans":[
        {"traceID":"47e4ea3db46ba890","spanID":"47e4ea3db46ba890","flags":1,"operationName":"POST /orders",
         "references":[],"startTime":1627471657255809,"duration":2000000,
         "tags":[{"key":"span.kind","type":"string","value":"server"},{"key":"http.response.status_code","type":"int64","value":503}],
         "logs":[],"processID":"p1","warnings":null},
        {"traceID":"47e4ea3db46ba890","spanID":"0b7ad6b716920333","flags":1,"operationName":"inventory.v1.StockService/ReserveItem",
         "references":[{"refType":"CHILD_OF","traceID":"47e4ea3db46ba890","spanID":"47e4ea3db46ba890"}],
         "startTime":1627471657255900,"duration":1900000,
         "tags":[{"key":"span.kind","type":"string","value":"client"},{"key":"otel.status_code","type":"string","value":"ERROR"},
                 {"key":"otel.status_description","type":"string","value":"UNAVAILABLE"}],
         "logs":[],"processID":"p2","warnings":null}],
      "processes":{"p1":{"serviceName":"order-service","tags":[]},"p2":{"serviceName":"order-service","tags":[]}},"warnings":null}],
      "total":0,"limit":0,"offset":0,"errors":null}"#;

    #[test]
    fn reads_jaegers_documented_answer() {
        let t = parse(
            "jaeger",
            "000000000000000047e4ea3db46ba890",
            BODY.as_bytes(),
        )
        .expect("readable")
        .expect("found");
        assert_eq!(t.spans.len(), 2);
        let client = &t.spans[1];
        assert_eq!(client.parent_span_id.as_deref(), Some("47e4ea3db46ba890"));
        assert_eq!(client.kind, "CLIENT");
        assert!(client.error);
        assert_eq!(client.error_message.as_deref(), Some("UNAVAILABLE"));
        assert_eq!(t.spans[0].duration_ns(), 2_000_000_000);
        assert!(!t.spans[0].error);
        let a = t.analyse();
        assert_eq!(a.root.map(|r| r.name), Some("POST /orders".to_owned()));
    }

    #[test]
    fn not_found_and_bad_bodies() {
        let nf = br#"{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}"#;
        assert_eq!(parse("jaeger", "00", nf).expect("readable"), None);
        assert!(parse("jaeger", "00", b"\xff").is_err());
        assert_eq!(pad("abc", 8).as_deref(), Some("0000000000000abc"));
        assert_eq!(pad("xyz", 8), None);
    }
}
