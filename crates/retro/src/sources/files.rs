//! Files on this machine: finished spans as OTLP JSON lines (what the
//! OpenTelemetry file exporters and looptel's telemetry write with
//! `LOOPTEL_TRACES_FILE`), and looptel's JSON log lines (a service's
//! standard output, kept in a file).
//!
//! Both are read line by line off the async threads; a line being written
//! (no newline yet) or that is not what it should be is skipped.

use std::io::{BufRead as _, Read as _};
use std::path::PathBuf;

use time::OffsetDateTime;

use crate::sources::otlp::TracesData;
use crate::sources::{LogLine, LogSource, SourceError, SourceFuture, TraceSource};
use crate::trace::{Span, Trace};
use crate::webhook::parse_time;

/// The longest line read; longer ones are skipped.
pub const MAX_LINE_BYTES: usize = 4 << 20;

fn scan(
    path: &PathBuf,
    source: &str,
    mut each: impl FnMut(&str) -> bool,
) -> Result<(), SourceError> {
    let file = std::fs::File::open(path)
        .map_err(|e| SourceError::new(source, format!("cannot open: {e}")))?;
    let mut reader = std::io::BufReader::with_capacity(64 << 10, file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| SourceError::new(source, format!("cannot read: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') {
            if n > MAX_LINE_BYTES {
                // Skip the rest of an overlong line.
                let mut sink = Vec::new();
                reader
                    .read_until(b'\n', &mut sink)
                    .map_err(|e| SourceError::new(source, format!("cannot read: {e}")))?;
                continue;
            }
            // The last line, still being written.
            return Ok(());
        }
        if let Ok(line) = std::str::from_utf8(&buf)
            && !each(line.trim_end())
        {
            return Ok(());
        }
    }
}

/// Traces from a file of OTLP JSON lines.
#[derive(Clone, Debug)]
pub struct OtlpFile {
    path: PathBuf,
}

impl OtlpFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl OtlpFile {
    /// Every trace in the file, by its first appearance, with at most
    /// `max_spans` spans read in all (the rest of the file is left).
    ///
    /// # Errors
    /// The file cannot be opened or read.
    pub fn traces(&self, max_spans: usize) -> Result<Vec<Trace>, SourceError> {
        let mut traces = Traces::default();
        scan(&self.path, &self.name(), |line| traces.add(line, max_spans))?;
        Ok(traces.into_traces())
    }
}

/// Traces gathered from OTLP JSON documents (lines of a file, bodies an
/// OTLP/HTTP receiver took), by their first appearance.
#[derive(Debug, Default)]
pub struct Traces {
    order: Vec<String>,
    by: std::collections::HashMap<String, Vec<Span>>,
    spans: usize,
}

impl Traces {
    /// Reads one OTLP JSON document (`ExportTraceServiceRequest` /
    /// `TracesData`); unreadable ones are skipped. Whether there is room
    /// for more (fewer than `max_spans` spans read).
    pub fn add(&mut self, document: &str, max_spans: usize) -> bool {
        if let Ok(data) = TracesData::from_json(document.as_bytes()) {
            for (trace, span) in data.spans(None) {
                self.spans += 1;
                self.by
                    .entry(trace.clone())
                    .or_insert_with(|| {
                        self.order.push(trace);
                        Vec::new()
                    })
                    .push(span);
            }
        }
        self.spans < max_spans
    }

    /// The traces, in order of first appearance.
    pub fn into_traces(mut self) -> Vec<Trace> {
        self.order
            .into_iter()
            .filter_map(|id| self.by.remove(&id).map(|spans| Trace::new(id, spans)))
            .collect()
    }
}

impl TraceSource for OtlpFile {
    fn trace<'a>(&'a self, trace_id: &'a str) -> SourceFuture<'a, Option<Trace>> {
        let (path, name, id) = (self.path.clone(), self.name(), trace_id.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut spans: Vec<Span> = Vec::new();
                scan(&path, &name, |line| {
                    if line.contains(&id)
                        && let Ok(data) = TracesData::from_json(line.as_bytes())
                    {
                        spans.extend(data.spans_of(&id));
                    }
                    true
                })?;
                Ok((!spans.is_empty()).then(|| Trace::new(id, spans)))
            })
            .await
            .map_err(|e| SourceError::new(self.name(), e.to_string()))?
        })
    }

    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }
}

/// Log lines from a file of looptel's JSON log lines.
#[derive(Clone, Debug)]
pub struct JsonLogFile {
    path: PathBuf,
}

impl JsonLogFile {
    /// The file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl JsonLogFile {
    /// At most `limit` of the file's JSON lines whose text `worth` parsing
    /// (a cheap filter) and that `keep` keeps once parsed, oldest first,
    /// read off the runtime's threads.
    fn read<'a>(
        &'a self,
        limit: usize,
        worth: impl Fn(&str) -> bool + Send + 'static,
        keep: impl Fn(&LogLine) -> bool + Send + 'static,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        let (path, name) = (self.path.clone(), self.name());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                scan(&path, &name, |text| {
                    if worth(text)
                        && let Some(line) = LogLine::from_json(text)
                        && keep(&line)
                    {
                        out.push(line);
                    }
                    out.len() < limit
                })?;
                Ok(out)
            })
            .await
            .map_err(|e| SourceError::new(self.name(), e.to_string()))?
        })
    }
}

impl LogSource for JsonLogFile {
    fn lines<'a>(
        &'a self,
        trace_ids: &'a [String],
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        let ids = trace_ids.to_vec();
        let in_text = ids.clone();
        self.read(
            limit,
            move |text| in_text.iter().any(|id| text.contains(id.as_str())),
            move |line| {
                ids.contains(&line.trace_id)
                    && parse_time(&line.timestamp).is_none_or(|t| t >= start && t <= end)
            },
        )
    }

    fn warnings<'a>(
        &'a self,
        start: OffsetDateTime,
        end: OffsetDateTime,
        limit: usize,
    ) -> SourceFuture<'a, Vec<LogLine>> {
        self.read(
            limit,
            |_| true,
            move |line| {
                super::is_warning(&line.level)
                    && parse_time(&line.timestamp).is_some_and(|t| t >= start && t <= end)
            },
        )
    }

    fn name(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use time::macros::datetime;

    const ID: &str = "0af7651916cd43dd8448eb211c80319c";

    fn span_line(trace: &str, span: &str, parent: &str, name: &str) -> String {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"order-service"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{span}","parentSpanId":"{parent}","name":"{name}","kind":2,"startTimeUnixNano":"1796032800000000000","endTimeUnixNano":"1796032801000000000"}}]}}]}}]}}"#
        )
    }

    #[tokio::test]
    async fn finds_a_traces_spans_across_lines_and_skips_junk() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        writeln!(
            f,
            "{}",
            span_line(ID, "b7ad6b7169203331", "", "POST /orders")
        )
        .expect("write");
        writeln!(f, "not json {ID}").expect("write");
        f.write_all(&[0xff, 0xfe, b'\n']).expect("write");
        writeln!(
            f,
            "{}",
            span_line(
                "ffffffffffffffffffffffffffffffff",
                "1111111111111111",
                "",
                "other"
            )
        )
        .expect("write");
        writeln!(
            f,
            "{}",
            span_line(ID, "00f067aa0ba902b7", "b7ad6b7169203331", "child")
        )
        .expect("write");
        // A line still being written.
        write!(
            f,
            "{}",
            &span_line(ID, "2222222222222222", "", "partial")[..40]
        )
        .expect("write");
        let source = OtlpFile::new(f.path());
        let t = source.trace(ID).await.expect("readable").expect("found");
        let names: Vec<&str> = t.spans.iter().map(|s| s.name.as_str()).collect();
        // Same start: by span id.
        assert_eq!(names, ["child", "POST /orders"]);
        assert_eq!(t.spans.len(), 2);
        assert_eq!(t.root().map(|r| r.name.as_str()), Some("POST /orders"));
        assert_eq!(
            source
                .trace("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee")
                .await
                .expect("readable"),
            None
        );
        // Every trace, in order of appearance, the junk skipped.
        let all = source.traces(1000).expect("readable");
        let ids: Vec<(&str, usize)> = all
            .iter()
            .map(|t| (t.trace_id.as_str(), t.spans.len()))
            .collect();
        assert_eq!(ids, [(ID, 2), ("ffffffffffffffffffffffffffffffff", 1)]);
        assert_eq!(source.traces(1).expect("readable").len(), 1, "bounded");
        let missing = OtlpFile::new("/nonexistent/spans.jsonl").trace(ID).await;
        assert!(
            missing
                .expect_err("no file")
                .to_string()
                .contains("cannot open")
        );
    }

    #[tokio::test]
    async fn log_lines_by_trace_id_window_and_limit() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        for (ts, id, msg) in [
            ("2026-11-30T10:00:01Z", ID, "order failed"),
            (
                "2026-11-30T10:00:02Z",
                "ffffffffffffffffffffffffffffffff",
                "other trace",
            ),
            ("2026-11-30T11:00:00Z", ID, "outside the window"),
            (
                "2026-11-30T10:00:03Z",
                ID,
                "injected fault: inventory unavailable",
            ),
        ] {
            writeln!(f, r#"{{"timestamp":"{ts}","level":"ERROR","message":"{msg}","trace_id":"{id}","span_id":"b7ad6b7169203331"}}"#).expect("write");
        }
        // Its id in the message is not its trace.
        writeln!(f, r#"{{"timestamp":"2026-11-30T10:00:04Z","level":"INFO","message":"see {ID}","trace_id":"","span_id":""}}"#).expect("write");
        let source = JsonLogFile::new(f.path());
        let (start, end) = (
            datetime!(2026-11-30 09:50 UTC),
            datetime!(2026-11-30 10:10 UTC),
        );
        let lines = source
            .lines(&[ID.to_owned()], start, end, 10)
            .await
            .expect("readable");
        let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            messages,
            ["order failed", "injected fault: inventory unavailable"]
        );
        let one = source
            .lines(&[ID.to_owned()], start, end, 1)
            .await
            .expect("readable");
        assert_eq!(one.len(), 1);
        // Warnings by time, whatever their trace; INFO left out.
        let warnings = source.warnings(start, end, 10).await.expect("readable");
        let messages: Vec<&str> = warnings.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "order failed",
                "other trace",
                "injected fault: inventory unavailable"
            ]
        );
    }
}
