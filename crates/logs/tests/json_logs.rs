//! End-to-end behaviour of the JSON layer with a real tracing-opentelemetry
//! pipeline and an in-memory span exporter.

use std::io::{self, Write};
use std::sync::mpsc;
use std::time::Duration;

use looptel_core::ServiceInfo;
use looptel_logs::{JsonLogs, LogsBuilder, LogsError, Redaction, Sampling};
use looptel_tests::SharedBuf;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::Value;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

struct Harness {
    out: SharedBuf,
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Harness {
    fn new() -> Self {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        Self {
            out: SharedBuf::default(),
            exporter,
            provider,
        }
    }

    fn builder(&self) -> LogsBuilder {
        JsonLogs::builder()
            .service(
                ServiceInfo::new("order-service")
                    .with_version("1.2.3")
                    .with_environment("test"),
            )
            .output(self.out.clone())
    }

    /// Runs `f` with a subscriber made of the OpenTelemetry layer and the
    /// JSON layer built from `builder`; returns the lines and the spans.
    fn run<R>(
        &self,
        builder: LogsBuilder,
        f: impl FnOnce() -> R,
    ) -> (R, Vec<Value>, Vec<SpanData>) {
        let (logs, guard) = builder.build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(self.provider.tracer("test")))
            .with(logs.layer());
        let r = tracing::subscriber::with_default(subscriber, f);
        drop(guard);
        let spans = self.exporter.get_finished_spans().expect("spans");
        (r, self.out.json_lines(), spans)
    }
}

fn span_named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

fn line_with<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no line {message:?} in {lines:#?}"))
}

fn assert_ids(line: &Value, span: &SpanData) {
    assert_eq!(line["trace_id"], span.span_context.trace_id().to_string());
    assert_eq!(line["span_id"], span.span_context.span_id().to_string());
}

#[test]
fn ids_equal_the_exported_spans_in_nested_spans() {
    let h = Harness::new();
    let (_, lines, spans) = h.run(h.builder(), || {
        let outer = tracing::info_span!("outer");
        let _o = outer.enter();
        tracing::info!("in outer");
        {
            let inner = tracing::info_span!("inner");
            let _i = inner.enter();
            tracing::info!("in inner");
        }
        tracing::info!("back in outer");
    });
    let (outer, inner) = (span_named(&spans, "outer"), span_named(&spans, "inner"));
    assert_eq!(outer.span_context.trace_id(), inner.span_context.trace_id());
    assert_ids(line_with(&lines, "in outer"), outer);
    assert_ids(line_with(&lines, "in inner"), inner);
    assert_ids(line_with(&lines, "back in outer"), outer);
}

#[test]
fn ids_follow_instrumented_tasks_across_threads() {
    let h = Harness::new();
    let (_, lines, spans) = h.run(h.builder(), || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        rt.block_on(async move {
            let parent = tracing::info_span!("request");
            let task = tokio::spawn(
                async {
                    tokio::task::yield_now().await;
                    tracing::info!("in task");
                }
                .instrument(tracing::info_span!(parent: &parent, "task"))
                .with_subscriber_dispatch(dispatch),
            );
            task.await.expect("task");
            drop(parent);
        });
    });
    let (request, task) = (span_named(&spans, "request"), span_named(&spans, "task"));
    assert_eq!(task.parent_span_id, request.span_context.span_id());
    assert_ids(line_with(&lines, "in task"), task);
}

/// `tracing::instrument::WithSubscriber` spelled out, so the spawned task
/// runs under the test's scoped subscriber on any worker thread.
trait WithDispatch: Sized {
    fn with_subscriber_dispatch(
        self,
        d: tracing::Dispatch,
    ) -> tracing::instrument::WithDispatch<Self>;
}
impl<F: std::future::Future> WithDispatch for F {
    fn with_subscriber_dispatch(
        self,
        d: tracing::Dispatch,
    ) -> tracing::instrument::WithDispatch<Self> {
        tracing::instrument::WithSubscriber::with_subscriber(self, d)
    }
}

#[test]
fn explicit_parent_wins_over_the_entered_span() {
    let h = Harness::new();
    let (_, lines, spans) = h.run(h.builder(), || {
        let a = tracing::info_span!("a");
        let b = tracing::info_span!("b");
        let _entered = b.enter();
        tracing::info!(parent: &a, "for a");
    });
    assert_ids(line_with(&lines, "for a"), span_named(&spans, "a"));
}

#[test]
fn required_fields_are_written() {
    let h = Harness::new();
    let (_, lines, _) = h.run(h.builder(), || {
        tracing::info!(order.id = "o-7", count = 3_u64, "outside any span");
        tracing::info_span!("s").in_scope(|| tracing::warn!("inside"));
    });
    let outside = line_with(&lines, "outside any span");
    assert_eq!(outside["level"], "INFO");
    assert_eq!(outside["service.name"], "order-service");
    assert_eq!(outside["service.version"], "1.2.3");
    assert_eq!(outside["deployment.environment"], "test");
    assert_eq!(outside["order.id"], "o-7");
    assert_eq!(outside["count"], 3);
    assert!(outside.get("trace_id").is_none() && outside.get("span_id").is_none());
    let ts = outside["timestamp"].as_str().expect("timestamp");
    let parsed = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert_eq!(parsed.offset(), time::UtcOffset::UTC);
    assert!(ts.ends_with('Z'));
    let inside = line_with(&lines, "inside");
    assert_eq!(inside["level"], "WARN");
    assert_eq!(inside["trace_id"].as_str().map(str::len), Some(32));
    assert_eq!(inside["span_id"].as_str().map(str::len), Some(16));
}

#[test]
fn redaction_covers_event_and_span_fields() {
    let h = Harness::new();
    let (_, lines, _) = h.run(h.builder().redaction(Redaction::default()), || {
        let span = tracing::info_span!(
            "checkout",
            user.email = "alice@example.com",
            tenant.id = "acme"
        );
        let _e = span.enter();
        tracing::info!(
            phone = 13812348000_u64,
            password = "correct horse battery",
            authorization = ?"Bearer abc.def.ghi",
            "charged"
        );
        span.record("user.email", "bob@example.org");
    });
    let line = line_with(&lines, "charged");
    assert_eq!(line["phone"], "138****8000");
    assert_eq!(line["password"], "****");
    assert_eq!(line["authorization"], "****");
    assert_eq!(line["user.email"], "ali****.com");
    assert_eq!(line["tenant.id"], "acme");
    let text = serde_json::to_string(&lines).expect("json");
    for secret in ["13812348000", "correct horse", "abc.def", "alice@", "bob@"] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
}

#[test]
fn sampling_keeps_first_n_then_one_in_m_and_never_drops_warnings() {
    let h = Harness::new();
    let builder = h
        .builder()
        .sampling(Sampling::new(10, 5, Duration::from_secs(3600)));
    let ((), lines, _) = h.run(builder, || {
        for i in 0..50 {
            tracing::info!(i, "hot loop");
        }
        for i in 0..30 {
            tracing::warn!(i, "warning");
            tracing::error!(i, "error");
        }
    });
    let count = |m: &str| lines.iter().filter(|l| l["message"] == m).count();
    // 10 first, then the 15th, 20th, … 50th: 10 + 8.
    assert_eq!(count("hot loop"), 18);
    assert_eq!(count("warning"), 30);
    assert_eq!(count("error"), 30);
}

#[test]
fn sampled_out_lines_are_counted() {
    let out = SharedBuf::default();
    let (logs, guard) = JsonLogs::builder()
        .output(out.clone())
        .sampling(Sampling::new(2, 0, Duration::from_secs(3600)))
        .build();
    let handle = logs.handle();
    let subscriber = tracing_subscriber::registry().with(logs.layer());
    tracing::subscriber::with_default(subscriber, || {
        for _ in 0..7 {
            tracing::info!("again");
        }
    });
    drop(guard);
    assert_eq!(handle.sampled_out(), 5);
    assert_eq!(out.json_lines().len(), 2);
}

/// A writer that blocks until released, standing in for a stuck stdout.
struct Stuck(mpsc::Receiver<()>);
impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.0.recv();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_writer_drops_and_counts_lines_instead_of_blocking() {
    let (release, rx) = mpsc::channel();
    let (logs, guard) = JsonLogs::builder()
        .output(Stuck(rx))
        .buffered_lines(8)
        .build();
    let handle = logs.handle();
    let subscriber = tracing_subscriber::registry().with(logs.layer());
    // If a line blocked, this loop would never finish: the writer waits for
    // a release that only comes after it.
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..1000 {
            tracing::info!(i, "flood");
        }
    });
    let dropped = handle.dropped();
    assert!(dropped >= 1000 - 8 - 1, "dropped {dropped}");
    drop(release);
    drop(guard);
}

#[test]
fn rust_log_filters_events_but_never_spans() {
    let h = Harness::new();
    let builder = h
        .builder()
        .filter_from_lookup(|name| {
            (name == "RUST_LOG").then(|| "warn,json_logs::chatty=debug".to_owned())
        })
        .expect("valid");
    let (_, lines, spans) = h.run(builder, || {
        // An INFO span is below the filter, yet lines inside it keep its ids.
        let span = tracing::info_span!("quiet span");
        let _e = span.enter();
        tracing::info!("dropped info");
        tracing::warn!("kept warn");
        tracing::debug!(target: "json_logs::chatty", "kept debug");
        tracing::trace!(target: "json_logs::chatty", "dropped trace");
    });
    let messages: Vec<_> = lines.iter().map(|l| l["message"].clone()).collect();
    assert_eq!(messages, ["kept warn", "kept debug"]);
    assert_ids(
        line_with(&lines, "kept warn"),
        span_named(&spans, "quiet span"),
    );
}

#[test]
fn invalid_rust_log_is_an_error_naming_the_variable_and_value() {
    let err = JsonLogs::builder()
        .filter_from_lookup(|_| Some("info,[=bad".to_owned()))
        .expect_err("invalid");
    assert!(matches!(
        err,
        LogsError::InvalidFilter {
            source_name: "RUST_LOG",
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.contains("RUST_LOG") && text.contains("info,[=bad"),
        "{text}"
    );
}

#[test]
fn lines_are_one_json_object_each_even_with_awkward_values() {
    let h = Harness::new();
    let (_, _, _) = h.run(h.builder(), || {
        tracing::info!(
            note = "line\nbreak \"quoted\" \u{1F600}",
            ratio = f64::NAN,
            "awkward\nmessage"
        );
    });
    let text = h.out.contents();
    assert_eq!(text.lines().count(), 1);
    let line: Value = serde_json::from_str(text.trim_end()).expect("one object");
    assert_eq!(line["note"], "line\nbreak \"quoted\" \u{1F600}");
    assert_eq!(line["message"], "awkward\nmessage");
    assert!(line["ratio"].is_null());
}

#[test]
fn service_fields_are_always_present() {
    let out = SharedBuf::default();
    let (logs, guard) = JsonLogs::builder()
        .output(out.clone())
        .service(ServiceInfo::new("svc"))
        .build();
    let subscriber = tracing_subscriber::registry().with(logs.layer());
    tracing::subscriber::with_default(subscriber, || tracing::info!("hello"));
    drop(guard);
    let line = &out.json_lines()[0];
    assert_eq!(line["service.name"], "svc");
    assert_eq!(line["service.version"], "unknown");
    assert_eq!(line["deployment.environment"], "unknown");
}

#[test]
fn the_queue_length_comes_from_its_variable_and_nonsense_is_refused() {
    for bad in ["0", "-1", "many", ""] {
        let err = JsonLogs::builder()
            .filter_from_lookup(|name| (name == "LOOPTEL_LOG_BUFFER_LINES").then(|| bad.to_owned()))
            .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "invalid LOOPTEL_LOG_BUFFER_LINES={bad:?}: expected a number of lines, at least 1"
            )
        );
    }
    // The variable's 64 is the queue's length: behind a stuck writer, 64
    // lines wait (and one is in the writer's hands), the rest are dropped.
    let flood = |lookup: &dyn Fn(&str) -> Option<String>| {
        let (release, rx) = mpsc::channel();
        let (logs, guard) = JsonLogs::builder()
            .output(Stuck(rx))
            .filter_from_lookup(lookup)
            .expect("valid")
            .build();
        let handle = logs.handle();
        let subscriber = tracing_subscriber::registry().with(logs.layer());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..1000 {
                tracing::info!(i, "flood");
            }
        });
        let dropped = handle.dropped();
        drop(release);
        drop(guard);
        dropped
    };
    let dropped = flood(&|name| (name == "LOOPTEL_LOG_BUFFER_LINES").then(|| "64".to_owned()));
    assert!(
        (1000 - 64 - 1..=1000 - 64).contains(&dropped),
        "dropped {dropped}"
    );
    // Unset: the default queue holds all 1,000.
    assert_eq!(flood(&|_| None), 0);
}

#[test]
fn exported_records_carry_ids_natively_redacted_and_sampled_like_lines() {
    use opentelemetry::logs::{AnyValue, LoggerProvider as _, Severity};
    use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};

    let h = Harness::new();
    let records = InMemoryLogExporter::default();
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(records.clone())
        .build();
    let builder = h
        .builder()
        .sampling(Sampling::new(1, 0, Duration::from_secs(3600)))
        .export(provider.logger("looptel"));
    let ((), lines, spans) = h.run(builder, || {
        tracing::info_span!("place_order", order.id = "o-1").in_scope(|| {
            for _ in 0..3 {
                tracing::info!(phone = "13812348000", attempt = 2, "order placed");
            }
            tracing::warn!(retry = true, "inventory slow");
        });
    });
    assert!(
        lines.is_empty(),
        "no JSON lines when records are exported: {lines:?}"
    );
    let span = span_named(&spans, "place_order");
    let emitted = records.get_emitted_logs().expect("records");
    // Sampling applies as to lines: the first INFO of the callsite, the WARN.
    assert_eq!(emitted.len(), 2, "{emitted:#?}");
    let info = &emitted[0].record;
    assert_eq!(
        info.body(),
        Some(&AnyValue::from("order placed".to_owned()))
    );
    assert_eq!(info.severity_number(), Some(Severity::Info));
    assert_eq!(info.severity_text(), Some("INFO"));
    let cx = info.trace_context().expect("trace context");
    assert_eq!(cx.trace_id, span.span_context.trace_id());
    assert_eq!(cx.span_id, span.span_context.span_id());
    assert_eq!(
        cx.trace_flags,
        Some(opentelemetry::trace::TraceFlags::SAMPLED)
    );
    let attr = |r: &opentelemetry_sdk::logs::SdkLogRecord, k: &str| {
        r.attributes_iter()
            .find(|(key, _)| key.as_str() == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        attr(info, "phone"),
        Some(AnyValue::from("138****8000".to_owned()))
    );
    assert_eq!(attr(info, "attempt"), Some(AnyValue::Int(2)));
    assert_eq!(
        attr(info, "order.id"),
        Some(AnyValue::from("o-1".to_owned()))
    );
    // The ids and the service live in their own fields, not as attributes.
    for native in [
        "trace_id",
        "span_id",
        "message",
        "level",
        "timestamp",
        "service.name",
    ] {
        assert_eq!(attr(info, native), None, "{native}");
    }
    let warn = &emitted[1].record;
    assert_eq!(warn.severity_number(), Some(Severity::Warn));
    assert_eq!(attr(warn, "retry"), Some(AnyValue::Boolean(true)));
    let _ = provider.shutdown();
}
