//! Grafana Tempo's HTTP API: `GET /api/traces/{id}` (OTLP JSON, ids in
//! base64, `batches` of resource spans; 404 when Tempo has not got it).
//!
//! No Tempo server can be installed on the machines this is built on: the
//! client is tested against response bodies written from Tempo's API
//! documentation, not against a running Tempo.

use crate::sources::otlp::TracesData;
use crate::sources::{Http, SourceError, SourceFuture, TraceSource};
use crate::trace::Trace;

/// The most a trace's answer may weigh.
pub const MAX_TRACE_BYTES: usize = 16 << 20;

/// Traces from Tempo.
#[derive(Clone, Debug)]
pub struct Tempo {
    base: String,
    http: Http,
}

impl Tempo {
    /// Tempo at `base` (`http://tempo:3200`).
    pub fn new(base: impl Into<String>, http: Http) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http,
        }
    }
}

/// Reads Tempo's answer for `trace_id`.
pub(crate) fn parse(
    source: &str,
    trace_id: &str,
    body: &[u8],
) -> Result<Option<Trace>, SourceError> {
    let data = TracesData::from_json(body)
        .map_err(|e| SourceError::new(source, format!("unreadable trace: {e}")))?;
    let spans = data.spans_of(trace_id);
    Ok((!spans.is_empty()).then(|| Trace::new(trace_id.to_owned(), spans)))
}

impl TraceSource for Tempo {
    fn trace<'a>(&'a self, trace_id: &'a str) -> SourceFuture<'a, Option<Trace>> {
        Box::pin(async move {
            let name = self.name();
            let url = format!("{}/api/traces/{trace_id}", self.base);
            match self.http.get(&name, &url, &[], MAX_TRACE_BYTES).await? {
                None => Ok(None),
                Some(body) => parse(&name, trace_id, &body),
            }
        })
    }

    fn name(&self) -> String {
        format!("tempo {}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of Tempo's documented answer: `batches`, base64 ids, enum
    /// names, `instrumentationLibrarySpans`.
    const BODY: &str = r#"{"batches":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"db"}}]},
      "instrumentationLibrarySpans":[{"instrumentationLibrary":{},"spans":[
        {"traceId":"AAAAAAAAAABH5Oo9tGuokA==","spanId":"cmteMBAvwNA=","parentSpanId":"OY8PIaPbma4=",
         "name":"HTTP GET - root","kind":"SPAN_KIND_SERVER",
         "startTimeUnixNano":"1627471657255809000","endTimeUnixNano":"1627471657256268000",
         "attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],
         "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;

    #[test]
    fn reads_tempos_documented_answer() {
        let t = parse("tempo", "000000000000000047e4ea3db46ba890", BODY.as_bytes())
            .expect("readable")
            .expect("found");
        let s = &t.spans[0];
        assert_eq!(s.span_id, "726b5e30102fc0d0");
        assert_eq!(s.parent_span_id.as_deref(), Some("398f0f21a3db99ae"));
        assert_eq!((s.service.as_str(), s.kind.as_str()), ("db", "SERVER"));
        assert_eq!(s.duration_ns(), 459_000);
        assert_eq!(s.error_message.as_deref(), Some("boom"));
        assert_eq!(s.attributes["http.status_code"], "500");
    }

    #[test]
    fn v2_answers_and_empty_or_bad_bodies() {
        let v2 = format!(
            r#"{{"trace":{}}}"#,
            BODY.replace("batches", "resourceSpans")
        );
        let t =
            parse("tempo", "000000000000000047e4ea3db46ba890", v2.as_bytes()).expect("readable");
        assert_eq!(t.map(|t| t.spans.len()), Some(1));
        assert_eq!(
            parse("tempo", "00000000000000000000000000000001", b"{}").expect("readable"),
            None
        );
        let err = parse("tempo", "00", b"<html>").expect_err("unreadable");
        assert!(
            err.to_string().starts_with("tempo: unreadable trace"),
            "{err}"
        );
    }
}
