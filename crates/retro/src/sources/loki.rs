//! Grafana Loki's query API: `GET /loki/api/v1/query_range`, oldest first,
//! matching the trace ids either in the line (`{service_name="order-service"}
//! |~ "id1|id2"`, for JSON lines shipped as text) or in a label or the
//! structured metadata Loki's OTLP ingestion keeps (`… | trace_id=~"id1|id2"`,
//! with [`Loki::trace_label`]).
//!
//! No Loki server can be installed on the machines this is built on: the
//! client is tested against response bodies written from Loki's API
//! documentation, not against a running Loki.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::sources::{Http, LogLine, LogSource, SourceError, SourceFuture};

/// The most a Loki answer may weigh.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Log lines from Loki.
#[derive(Clone, Debug)]
pub struct Loki {
    base: String,
    selector: String,
    trace_label: Option<String>,
    http: Http,
}

impl Loki {
    /// Loki at `base` (`http://loki:3100`); `selector` picks the streams
    /// (`{service_name="order-service"}`).
    pub fn new(base: impl Into<String>, selector: impl Into<String>, http: Http) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            selector: selector.into(),
            trace_label: None,
            http,
        }
    }

    /// Matches the trace ids on this label or structured metadata field
    /// (`trace_id` for log records Loki ingested over OTLP) instead of in
    /// the line. A name that is not a [label name](is_label_name) is
    /// ignored: the line filter stays.
    #[must_use]
    pub fn trace_label(mut self, label: impl Into<String>) -> Self {
        let label = label.into();
        self.trace_label = is_label_name(&label).then_some(label);
        self
    }

    /// The LogQL query for `trace_ids` (hex ids only: nothing else reaches
    /// the regex).
    pub fn query(&self, trace_ids: &[String]) -> String {
        let ids: Vec<&str> = trace_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        match &self.trace_label {
            Some(label) => format!("{} | {label}=~\"{}\"", self.selector, ids.join("|")),
            None => format!("{} |~ \"{}\"", self.selector, ids.join("|")),
        }
    }
}

impl Loki {
    /// The LogQL query for WARN and ERROR lines: by the level Loki
    /// detected for records it ingested over OTLP (with
    /// [`trace_label`](Self::trace_label)), else by the `level` field of
    /// looptel's JSON lines shipped as text.
    pub fn warnings_query(&self) -> String {
        match &self.trace_label {
            Some(_) => format!(
                "{} | detected_level=~\"(?i)warn|warning|error|fatal|critical\"",
                self.selector
            ),
            None => format!("{} |~ `\"level\":\\s*\"(WARN|ERROR)\"`", self.selector),
        }
    }
}

/// Whether `name` is a LogQL label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

#[derive(Deserialize)]
struct Answer {
    data: Data,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    #[serde(default)]
    result: Vec<Stream>,
}

#[derive(Deserialize)]
struct Stream {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

fn rfc3339_of_ns(ns: &str) -> String {
    ns.parse::<i128>()
        .ok()
        .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Which lines of an answer are kept.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Keep<'a> {
    /// Those carrying one of these trace ids.
    Traces(&'a [String]),
    /// WARN and ERROR lines.
    Warnings,
    /// Every line.
    All,
}

/// Reads Loki's answer: the lines `keep` keeps.
pub(crate) fn parse(
    source: &str,
    keep: Keep<'_>,
    body: &[u8],
    limit: usize,
) -> Result<Vec<LogLine>, SourceError> {
    let trace_ids = match keep {
        Keep::Traces(ids) => Some(ids),
        Keep::Warnings | Keep::All => None,
    };
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| SourceError::new(source, format!("unreadable answer: {e}")))?;
    if answer.data.result_type != "streams" {
        return Err(SourceError::new(
            source,
            format!("expected streams, got {}", answer.data.result_type),
        ));
    }
    let mut out: Vec<(String, LogLine)> = Vec::new();
    for stream in answer.data.result {
        for v in stream.values {
            let (Some(Value::String(ts)), Some(Value::String(text))) = (v.first(), v.get(1)) else {
                continue;
            };
            // Structured metadata, when Loki returns it apart (Loki 3).
            let meta = v
                .get(2)
                .and_then(|m| m.get("structuredMetadata"))
                .and_then(Value::as_object);
            let mut line = LogLine::from_json(text).unwrap_or_else(|| LogLine {
                message: text.clone(),
                ..LogLine::default()
            });
            let label = |k: &str| {
                meta.and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| stream.stream.get(k).cloned())
            };
            if line.trace_id.is_empty() {
                line.trace_id = label("trace_id")
                    .or_else(|| {
                        trace_ids?
                            .iter()
                            .find(|id| text.contains(id.as_str()))
                            .cloned()
                    })
                    .unwrap_or_default();
            }
            if line.span_id.is_empty() {
                line.span_id = label("span_id").unwrap_or_default();
            }
            if line.service.is_empty() {
                line.service = label("service_name").unwrap_or_default();
            }
            if line.level.is_empty() {
                line.level = label("detected_level")
                    .or_else(|| label("level"))
                    .unwrap_or_default()
                    .to_ascii_uppercase();
            }
            if line.timestamp.is_empty() {
                line.timestamp = rfc3339_of_ns(ts);
            }
            let kept = match keep {
                Keep::Traces(ids) => ids.contains(&line.trace_id),
                Keep::Warnings => crate::sources::is_warning(&line.level),
                Keep::All => true,
            };
            if kept {
                out.push((format!("{ts:0>20}"), line));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().take(limit).map(|(_, l)| l).collect())
}

impl Loki {
    /// `query_range` for `query`, oldest first: the lines of `trace_ids`,
    /// or with `None` the WARN and ERROR lines.
    async fn range(
        &self,
        query: String,
        keep: Keep<'_>,
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<LogLine>, SourceError> {
        let name = self.name();
        let url = format!("{}/loki/api/v1/query_range", self.base);
        let query = [
            ("query", query),
            ("start", start.unix_timestamp_nanos().to_string()),
            ("end", end.unix_timestamp_nanos().to_string()),
            ("limit", limit.to_string()),
            ("direction", "forward".to_owned()),
        ];
        match self.http.get(&name, &url, &query, MAX_BODY_BYTES).await? {
            None => Err(SourceError::new(name, format!("{url} answered 404"))),
            Some(body) => parse(&name, keep, &body, limit),
        }
    }
}

impl Loki {
    /// At most `limit` of the stream's lines between `start` and `end`,
    /// oldest first, whatever their level or trace.
    ///
    /// # Errors
    /// Loki is unreachable or answers what it should not.
    pub async fn recent(
        &self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<LogLine>, SourceError> {
        self.range(self.selector.clone(), Keep::All, start, end, limit)
            .await
    }
}

impl LogSource for Loki {
    fn lines<'a>(
        &'a self,
        trace_ids: &'a [String],
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        Box::pin(async move {
            if trace_ids.is_empty() {
                return Ok(Vec::new());
            }
            self.range(
                self.query(trace_ids),
                Keep::Traces(trace_ids),
                start,
                end,
                limit,
            )
            .await
        })
    }

    fn warnings<'a>(
        &'a self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        Box::pin(self.range(self.warnings_query(), Keep::Warnings, start, end, limit))
    }

    fn name(&self) -> String {
        format!("loki {}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0af7651916cd43dd8448eb211c80319c";

    #[test]
    fn reads_lokis_documented_answer() {
        // A looptel JSON line in one stream; a plain line whose trace id is
        // structured metadata (Loki 3, OTLP ingestion) in another; a line
        // of another trace the filter let through.
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"streams","result":[
              {{"stream":{{"service_name":"order-service"}},"values":[
                ["1796032801000000000","{{\"timestamp\":\"2026-11-30T10:00:01Z\",\"level\":\"ERROR\",\"message\":\"order failed\",\"trace_id\":\"{ID}\",\"span_id\":\"b7ad6b7169203331\"}}"]]}},
              {{"stream":{{"service_name":"inventory","detected_level":"warn"}},"values":[
                ["1796032800500000000","injected fault: inventory unavailable",{{"structuredMetadata":{{"trace_id":"{ID}","span_id":"1111111111111111"}}}}],
                ["1796032800600000000","other","{{}}"]]}}],
              "stats":{{}}}}}}"#
        );
        let lines =
            parse("loki", Keep::Traces(&[ID.to_owned()]), body.as_bytes(), 10).expect("readable");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "injected fault: inventory unavailable");
        assert_eq!(lines[0].service, "inventory");
        assert_eq!(lines[0].level, "WARN");
        assert_eq!(lines[0].span_id, "1111111111111111");
        assert_eq!(lines[0].timestamp, "2026-11-30T10:00:00.5Z");
        assert_eq!(lines[1].message, "order failed");
        assert_eq!(lines[1].service, "order-service");
        assert_eq!(
            parse("loki", Keep::Traces(&[ID.to_owned()]), body.as_bytes(), 1)
                .expect("ok")
                .len(),
            1
        );
    }

    #[test]
    fn warnings_by_time_whatever_their_trace() {
        let body = r#"{"status":"success","data":{"resultType":"streams","result":[
          {"stream":{"service_name":"order-service"},"values":[
            ["1796032801000000000","{\"timestamp\":\"2026-11-30T10:00:01Z\",\"level\":\"ERROR\",\"message\":\"order 7 failed\",\"trace_id\":\"\"}"],
            ["1796032801500000000","{\"timestamp\":\"2026-11-30T10:00:01.5Z\",\"level\":\"INFO\",\"message\":\"a level the filter let through\"}"]]},
          {"stream":{"service_name":"order-service","detected_level":"warn"},"values":[
            ["1796032800500000000","slow inventory"]]}],
          "stats":{}}}"#;
        let lines = parse("loki", Keep::Warnings, body.as_bytes(), 10).expect("readable");
        assert_eq!(
            parse("loki", Keep::All, body.as_bytes(), 10)
                .expect("readable")
                .len(),
            3
        );
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l.level.as_str(), l.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [("WARN", "slow inventory"), ("ERROR", "order 7 failed")]
        );
        let http = Http::new(
            looptel_core::Instrumentation::disabled(looptel_core::Propagator::default()),
            std::time::Duration::from_secs(1),
        );
        let loki = Loki::new(
            "http://loki:3100",
            r#"{service_name="order-service"}"#,
            http,
        );
        assert_eq!(
            loki.warnings_query(),
            r#"{service_name="order-service"} |~ `"level":\s*"(WARN|ERROR)"`"#
        );
        assert_eq!(
            loki.trace_label("trace_id").warnings_query(),
            r#"{service_name="order-service"} | detected_level=~"(?i)warn|warning|error|fatal|critical""#
        );
    }

    #[test]
    fn refuses_other_answers_and_keeps_the_query_safe() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse("loki", Keep::Warnings, matrix, 10).is_err());
        assert!(parse("loki", Keep::All, b"nope", 10).is_err());
        let http = Http::new(
            looptel_core::Instrumentation::disabled(looptel_core::Propagator::default()),
            std::time::Duration::from_secs(1),
        );
        let loki = Loki::new(
            "http://loki:3100/",
            r#"{service_name="order-service"}"#,
            http,
        );
        assert_eq!(
            loki.query(&[ID.to_owned(), "\") or {x=~\".*".to_owned()]),
            format!(r#"{{service_name="order-service"}} |~ "{ID}""#)
        );
        let by_label = loki.clone().trace_label("trace_id");
        assert_eq!(
            by_label.query(&[ID.to_owned(), "\"} or".to_owned(), ID.to_owned()]),
            format!(r#"{{service_name="order-service"}} | trace_id=~"{ID}|{ID}""#)
        );
        for bad in ["", "trace id", "1trace", "trace_id=~\".*\""] {
            assert_eq!(
                loki.clone().trace_label(bad).query(&[ID.to_owned()]),
                format!(r#"{{service_name="order-service"}} |~ "{ID}""#),
                "{bad:?}"
            );
        }
    }
}
