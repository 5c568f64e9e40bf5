//! OTLP JSON traces, read leniently: the OpenTelemetry file exporters and
//! the JSON encoding of OTLP write ids as hex; Tempo's `/api/traces/{id}`
//! writes them as base64 (protobuf's JSON mapping of bytes) and calls the
//! resource spans `batches`; older writers say `instrumentationLibrarySpans`.
//! Numbers may be strings or numbers, enums names or numbers.
//!
//! `opentelemetry-proto`'s serde reads hex ids only, so it cannot read
//! Tempo; this reader takes both.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::trace::Span;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TracesData {
    #[serde(default, alias = "batches")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, alias = "instrumentationLibrarySpans")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Vec<RawSpan>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSpan {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
    #[serde(default)]
    parent_span_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    start_time_unix_nano: Value,
    #[serde(default)]
    end_time_unix_nano: Value,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    status: Option<RawStatus>,
}

#[derive(Deserialize)]
struct RawStatus {
    #[serde(default)]
    code: Value,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Value,
}

/// An id as lowercase hex: hex as is, base64 decoded; `None` if neither
/// gives `len` bytes.
pub(crate) fn id_hex(raw: &str, len: usize) -> Option<String> {
    if raw.len() == len * 2 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(raw.to_ascii_lowercase());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .filter(|b| b.len() == len)?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An `AnyValue` as text.
fn any_value(v: &Value) -> String {
    let Value::Object(map) = v else {
        return v.to_string();
    };
    let Some((kind, inner)) = map.iter().next() else {
        return String::new();
    };
    match (kind.as_str(), inner) {
        ("stringValue", Value::String(s)) => s.clone(),
        ("intValue" | "doubleValue" | "boolValue", Value::String(s)) => s.clone(),
        ("intValue" | "doubleValue" | "boolValue", other) => other.to_string(),
        ("arrayValue", Value::Object(a)) => {
            let items: Vec<String> = a
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().map(any_value).collect())
                .unwrap_or_default();
            format!("[{}]", items.join(", "))
        }
        (_, other) => other.to_string(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), any_value(&kv.value)))
        .collect()
}

fn kind(v: &Value) -> &'static str {
    let n = match v {
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::String(s) => match s.trim_start_matches("SPAN_KIND_") {
            "INTERNAL" => 1,
            "SERVER" => 2,
            "CLIENT" => 3,
            "PRODUCER" => 4,
            "CONSUMER" => 5,
            _ => 0,
        },
        _ => 0,
    };
    match n {
        2 => "SERVER",
        3 => "CLIENT",
        4 => "PRODUCER",
        5 => "CONSUMER",
        _ => "INTERNAL",
    }
}

fn is_error(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_u64() == Some(2),
        Value::String(s) => s == "STATUS_CODE_ERROR" || s == "2",
        _ => false,
    }
}

impl TracesData {
    /// Reads a document (a line of an OTLP JSON file, a Tempo answer: its
    /// `trace` member in Tempo's v2 API).
    pub(crate) fn from_json(body: &[u8]) -> Result<Self, serde_json::Error> {
        let v: Value = serde_json::from_slice(body)?;
        match v.get("trace") {
            Some(inner) if inner.is_object() => serde_json::from_value(inner.clone()),
            _ => serde_json::from_value(v),
        }
    }

    /// The spans of `trace_id` (hex) in this document; spans whose ids
    /// cannot be read are skipped.
    pub(crate) fn spans_of(&self, trace_id: &str) -> Vec<Span> {
        self.spans(Some(trace_id))
            .into_iter()
            .map(|(_, span)| span)
            .collect()
    }

    /// Every span of this document with its trace id (hex), or only those
    /// of `trace_id`.
    pub(crate) fn spans(&self, trace_id: Option<&str>) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for rs in &self.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let service = resource
                .get(looptel_catalogue::logs::SERVICE_NAME)
                .cloned()
                .unwrap_or_else(|| looptel_catalogue::logs::UNKNOWN.to_owned());
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let Some(trace) = id_hex(&s.trace_id, 16) else {
                        continue;
                    };
                    if trace_id.is_some_and(|want| want != trace) {
                        continue;
                    }
                    let Some(span_id) = id_hex(&s.span_id, 8) else {
                        continue;
                    };
                    let attributes = attributes(&s.attributes);
                    let (error, message) = match &s.status {
                        Some(st) if is_error(&st.code) => (
                            true,
                            Some(if st.message.is_empty() {
                                attributes
                                    .get("error.type")
                                    .cloned()
                                    .unwrap_or_else(|| "error".to_owned())
                            } else {
                                st.message.clone()
                            }),
                        ),
                        _ => (false, None),
                    };
                    let start_ns = number(&s.start_time_unix_nano).unwrap_or(0);
                    out.push((
                        trace,
                        Span {
                            span_id,
                            parent_span_id: id_hex(&s.parent_span_id, 8),
                            name: s.name.clone(),
                            service: service.clone(),
                            kind: kind(&s.kind).to_owned(),
                            start_ns,
                            end_ns: number(&s.end_time_unix_nano)
                                .unwrap_or(start_ns)
                                .max(start_ns),
                            error,
                            error_message: message,
                            attributes,
                        },
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_hex_or_base64() {
        assert_eq!(
            id_hex("0AF7651916CD43DD8448EB211C80319C", 16).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        // Tempo's documentation example: base64 of the 16 bytes.
        assert_eq!(
            id_hex("AAAAAAAAAABH5Oo9tGuokA==", 16).as_deref(),
            Some("000000000000000047e4ea3db46ba890")
        );
        assert_eq!(
            id_hex("b7ad6b7169203331", 8).as_deref(),
            Some("b7ad6b7169203331")
        );
        assert_eq!(id_hex("", 8), None);
        assert_eq!(id_hex("not an id", 8), None);
        assert_eq!(id_hex("AAAA", 16), None, "base64 of the wrong length");
    }

    #[test]
    fn reads_the_otlp_json_encoding() {
        let doc = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"order-service"}}]},
          "scopeSpans":[{"scope":{"name":"looptel"},"spans":[
            {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","parentSpanId":"",
             "name":"POST /orders","kind":2,"startTimeUnixNano":"1796032800000000000","endTimeUnixNano":"1796032802000000000",
             "attributes":[{"key":"http.response.status_code","value":{"intValue":"503"}},{"key":"error.type","value":{"stringValue":"503"}}],
             "status":{"code":2}},
            {"traceId":"ffffffffffffffffffffffffffffffff","spanId":"1111111111111111","name":"other","startTimeUnixNano":"1"}
          ]}]}]}"#;
        let data = TracesData::from_json(doc).expect("parses");
        let spans = data.spans_of("0af7651916cd43dd8448eb211c80319c");
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.service, "order-service");
        assert_eq!(s.kind, "SERVER");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.duration_ns(), 2_000_000_000);
        assert!(s.error);
        assert_eq!(s.error_message.as_deref(), Some("503"));
        assert_eq!(s.attributes["http.response.status_code"], "503");
    }
}
