//! Start-up configuration from `OTEL_*` variables, through the public builder.

use std::collections::HashMap;

use looptel_core::TraceIds;
use looptel_logs::JsonLogs;
use looptel_telemetry::{RuleSampler, Telemetry, TelemetryBuilder, TelemetryError};
use looptel_tests::CapturedSpans;
use looptel_tests::SharedBuf;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::Resource;

fn keeping_exporter() -> CapturedSpans {
    CapturedSpans::default()
}

fn env(pairs: &[(&str, &str)]) -> TelemetryBuilder {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    Telemetry::from_lookup(move |k| map.get(k).cloned())
        .logs(JsonLogs::builder().output(SharedBuf::default()))
}

fn config_error(pairs: &[(&str, &str)]) -> looptel_telemetry::ConfigError {
    match env(pairs).build() {
        Err(TelemetryError::Config(e)) => e,
        other => panic!("expected a config error for {pairs:?}, got {other:?}"),
    }
}

#[test]
fn every_invalid_value_fails_start_up_naming_variable_and_value() {
    let cases: &[(&str, &str)] = &[
        ("OTEL_SDK_DISABLED", "yes"),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "lots"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team"),
        ("OTEL_RESOURCE_ATTRIBUTES", "=x"),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=%zz"),
        ("OTEL_TRACES_EXPORTER", "jaeger"),
        ("OTEL_METRICS_EXPORTER", "statsd"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "not a url"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "udp"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpcs"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "-1"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1.5"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "bad header=x"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "k=line%0Abreak"),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "1e3"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "many"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "60s"),
        ("OTEL_METRIC_EXPORT_TIMEOUT", "forever"),
        ("OTEL_TRACES_SAMPLER", "sometimes"),
        ("OTEL_PROPAGATORS", "xray"),
        ("OTEL_PROPAGATORS", "none,tracecontext"),
        ("RUST_LOG", "info,[=bad"),
    ];
    for (var, value) in cases {
        match env(&[(var, value)]).build() {
            Err(TelemetryError::Config(e)) => {
                assert_eq!(e.variable(), *var);
                assert_eq!(e.value(), *value);
                let text = e.to_string();
                assert!(text.contains(var) && text.contains(value), "{text}");
            }
            Err(TelemetryError::Logs(e)) => {
                let text = e.to_string();
                assert!(text.contains(var) && text.contains(value), "{text}");
            }
            other => panic!("{var}={value:?} should fail start-up, got {other:?}"),
        }
    }
}

#[test]
fn sampler_argument_must_be_a_ratio() {
    for arg in ["1.5", "-0.1", "half", "NaN"] {
        let e = config_error(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", arg),
        ]);
        assert_eq!(e.variable(), "OTEL_TRACES_SAMPLER_ARG");
    }
}

#[test]
fn batch_size_may_not_exceed_queue_size() {
    let e = config_error(&[
        ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
    ]);
    assert_eq!(e.variable(), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
}

#[test]
fn empty_values_count_as_unset() {
    let t = env(&[
        ("OTEL_TRACES_SAMPLER", ""),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
    ])
    .service_name("svc")
    .build()
    .expect("valid");
    assert!(
        t.notes()
            .iter()
            .any(|n| n.text().contains("standard error"))
    );
}

fn attr(resource: &Resource, key: &'static str) -> Option<String> {
    resource
        .get(&opentelemetry::Key::from_static_str(key))
        .map(|v| v.to_string())
}

#[test]
fn resource_comes_from_env_and_code_wins() {
    let probe = CapturedSpans::default();
    let t = env(&[
        ("OTEL_SERVICE_NAME", "from-env"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=0.9,deployment.environment=staging,team=payments,owner=a%2Cb%20c",
        ),
    ])
    .service_name("from-code")
    .resource_attribute("region", "eu-1")
    .span_exporter(probe.clone())
    .build()
    .expect("valid");
    // The batch processor hands the resource to its exporter on its own
    // thread; a flush is queued behind it.
    t.tracer_provider()
        .expect("enabled")
        .force_flush()
        .expect("flush");
    assert_eq!(t.service().name(), "from-code");
    assert_eq!(t.service().version(), Some("0.9"));
    assert_eq!(t.service().environment(), Some("staging"));
    let resource = probe.resource().expect("resource set");
    assert_eq!(
        attr(&resource, "service.name").as_deref(),
        Some("from-code")
    );
    assert_eq!(attr(&resource, "service.version").as_deref(), Some("0.9"));
    assert_eq!(
        attr(&resource, "deployment.environment").as_deref(),
        Some("staging")
    );
    assert_eq!(attr(&resource, "team").as_deref(), Some("payments"));
    assert_eq!(attr(&resource, "owner").as_deref(), Some("a,b c"));
    assert_eq!(attr(&resource, "region").as_deref(), Some("eu-1"));
    assert_eq!(
        attr(&resource, "telemetry.sdk.name").as_deref(),
        Some("opentelemetry")
    );

    let t = env(&[("OTEL_SERVICE_NAME", "from-env")])
        .service_version("2.0.0")
        .deployment_environment("prod")
        .build()
        .expect("valid");
    assert_eq!(t.service().name(), "from-env");
    assert_eq!(t.service().version(), Some("2.0.0"));
    assert_eq!(t.service().environment(), Some("prod"));
}

#[test]
fn a_missing_service_name_is_a_start_up_warning() {
    let t = env(&[]).build().expect("valid");
    assert!(t.service().name().starts_with("unknown_service:"));
    let warning = t
        .notes()
        .iter()
        .find(|n| n.is_warning())
        .expect("a warning");
    assert!(
        warning.text().contains("OTEL_SERVICE_NAME"),
        "{}",
        warning.text()
    );
    let t = env(&[("OTEL_SERVICE_NAME", "svc")]).build().expect("valid");
    assert!(t.notes().iter().all(|n| !n.is_warning()));
}

fn traces_note(pairs: &[(&str, &str)]) -> String {
    let t = env(pairs).service_name("svc").build().expect("valid");
    t.notes()
        .iter()
        .find(|n| n.text().starts_with("traces:"))
        .map(|n| n.text().to_owned())
        .expect("a traces note")
}

#[tokio::test]
async fn endpoints_resolve_per_signal_and_protocol() {
    // The base endpoint gets the signal path over HTTP…
    assert_eq!(
        traces_note(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]),
        "traces: OTLP to http://collector:4318/v1/traces (http/protobuf)"
    );
    // …but not over gRPC.
    assert_eq!(
        traces_note(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]),
        "traces: OTLP to http://collector:4317 (grpc)"
    );
    // The signal's own endpoint and protocol win, used as is.
    assert_eq!(
        traces_note(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces.example/custom"
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]),
        "traces: OTLP to https://traces.example/custom (http/protobuf)"
    );
    // OTEL_TRACES_EXPORTER=otlp with no endpoint uses the default one.
    assert_eq!(
        traces_note(&[("OTEL_TRACES_EXPORTER", "otlp")]),
        "traces: OTLP to http://localhost:4318/v1/traces (http/protobuf)"
    );
    // No endpoint: the embedded default says where traces go.
    assert!(traces_note(&[]).contains("JSON lines to standard error"));
    assert!(traces_note(&[("OTEL_TRACES_EXPORTER", "none")]).contains("not exported"));
}

#[test]
fn grpc_outside_a_runtime_is_a_clear_error() {
    let r = env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
    ])
    .service_name("svc")
    .build();
    assert!(matches!(r, Err(TelemetryError::NoRuntime)), "{r:?}");
}

/// Runs `f` inside one span under the built telemetry; returns the span's ids.
fn ids_in_span(builder: TelemetryBuilder) -> Option<TraceIds> {
    let t = builder.service_name("svc").build().expect("valid");
    let (subscriber, guard) = t.into_subscriber();
    let ids = tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("work").in_scope(TraceIds::current)
    });
    drop(guard);
    ids
}

#[test]
fn samplers_come_from_env_and_unsampled_spans_keep_ids() {
    let mem = keeping_exporter();
    let ids = ids_in_span(env(&[("OTEL_TRACES_SAMPLER", "always_off")]).span_exporter(mem.clone()))
        .expect("ids even when not sampled");
    assert!(!ids.is_sampled());
    assert!(mem.spans().is_empty());

    let mem = keeping_exporter();
    let ids = ids_in_span(
        env(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ])
        .span_exporter(mem.clone()),
    )
    .expect("ids");
    assert!(ids.is_sampled());
    let spans = mem.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span_context.trace_id(), ids.trace_id());
}

#[test]
fn the_embedded_default_still_samples_so_ids_reach_logs() {
    let ids = ids_in_span(env(&[])).expect("ids");
    assert!(ids.is_sampled());
}

#[test]
fn disabled_sdk_means_no_spans_but_logs_still_work() {
    let out = SharedBuf::default();
    let t = env(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
    ])
    .logs(JsonLogs::builder().output(out.clone()))
    .service_name("svc")
    .build()
    .expect("valid");
    assert!(t.tracer_provider().is_none());
    assert!(t.notes().iter().any(|n| n.text().contains("disabled")));
    let (subscriber, guard) = t.into_subscriber();
    let ids = tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("work").in_scope(|| {
            tracing::info!("still logging");
            TraceIds::current()
        })
    });
    drop(guard);
    assert_eq!(ids, None);
    let lines = out.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "still logging");
    assert!(lines[0].get("trace_id").is_none());
}

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn propagated(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let t = env(pairs).service_name("svc").build().expect("valid");
    let incoming = HashMap::from([
        ("traceparent".to_owned(), TP.to_owned()),
        ("baggage".to_owned(), "tenant.id=acme".to_owned()),
    ]);
    let cx = t.propagator().extract(&incoming);
    let mut out = HashMap::new();
    t.propagator().inject(&cx, &mut out);
    out
}

#[test]
fn propagators_come_from_env() {
    let both = propagated(&[]);
    assert_eq!(both.get("traceparent").map(String::as_str), Some(TP));
    assert_eq!(
        both.get("baggage").map(String::as_str),
        Some("tenant.id=acme")
    );
    let tc = propagated(&[("OTEL_PROPAGATORS", "tracecontext")]);
    assert!(tc.contains_key("traceparent") && !tc.contains_key("baggage"));
    let bg = propagated(&[("OTEL_PROPAGATORS", "baggage")]);
    assert!(!bg.contains_key("traceparent") && bg.contains_key("baggage"));
    assert!(propagated(&[("OTEL_PROPAGATORS", "none")]).is_empty());
}

#[test]
fn the_rpc_opt_in_comes_from_env_and_reaches_the_layers() {
    let read = |pairs: &[(&str, &str)]| {
        env(pairs)
            .service_name("svc")
            .build()
            .expect("valid")
            .instrumentation()
            .semconv()
            .rpc_dup()
    };
    assert!(!read(&[]));
    assert!(!read(&[("OTEL_SEMCONV_STABILITY_OPT_IN", "rpc")]));
    assert!(read(&[(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        "http/dup, rpc/dup"
    )]));
    // Disabled telemetry still names its metrics as asked.
    assert!(read(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_SEMCONV_STABILITY_OPT_IN", "rpc/dup")
    ]));
}

#[test]
fn code_settings_win_over_env() {
    let t = env(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
    ])
    .otlp_endpoint("http://code:4318")
    .service_name("svc")
    .build()
    .expect("valid");
    let note = t
        .notes()
        .iter()
        .find(|n| n.text().starts_with("traces:"))
        .expect("note");
    assert_eq!(
        note.text(),
        "traces: OTLP to http://code:4318/v1/traces (http/protobuf)"
    );

    let mem = keeping_exporter();
    let ids = ids_in_span(
        env(&[("OTEL_TRACES_SAMPLER", "always_off")])
            .sampler(looptel_telemetry::SamplerConfig::AlwaysOn)
            .span_exporter(mem.clone()),
    )
    .expect("ids");
    assert_eq!(mem.spans().len(), 1);
    assert!(ids.is_sampled());
}

#[test]
fn layers_skip_the_sampler_for_unsampled_parents_only_when_it_follows_them() {
    let parent_based = |builder: TelemetryBuilder| {
        builder
            .service_name("svc")
            .span_exporter(keeping_exporter())
            .build()
            .expect("valid")
            .instrumentation()
            .is_parent_based()
    };
    assert!(parent_based(env(&[])), "parentbased_always_on by default");
    for (name, follows) in [
        ("parentbased_traceidratio", true),
        ("parentbased_always_off", true),
        ("always_off", true),
        ("always_on", false),
        ("traceidratio", false),
    ] {
        assert_eq!(
            parent_based(env(&[("OTEL_TRACES_SAMPLER", name)])),
            follows,
            "{name}"
        );
    }
    assert!(!parent_based(
        env(&[]).sampler(looptel_telemetry::SamplerConfig::AlwaysOn)
    ));
    assert!(parent_based(
        env(&[("OTEL_TRACES_SAMPLER", "always_on")]).rule_sampler(RuleSampler::new())
    ));
    assert!(!parent_based(
        env(&[]).rule_sampler(RuleSampler::new().parent_based(false))
    ));
}

#[test]
fn the_guard_hands_out_the_same_instrumentation_as_telemetry() {
    // order-service builds its layers from the guard: the unsampled fast
    // path must hold there too.
    for (sampler, follows) in [("parentbased_always_on", true), ("always_on", false)] {
        let t = env(&[("OTEL_TRACES_SAMPLER", sampler)])
            .service_name("svc")
            .span_exporter(keeping_exporter())
            .build()
            .expect("valid");
        assert_eq!(t.instrumentation().is_parent_based(), follows, "{sampler}");
        let (_subscriber, guard) = t.into_subscriber();
        let inst = guard.instrumentation();
        assert_eq!(inst.is_parent_based(), follows, "{sampler}: guard");
        assert!(inst.is_tracing());
    }
}

#[test]
fn remote_parent_is_continued() {
    let mem = keeping_exporter();
    let t = env(&[])
        .service_name("svc")
        .span_exporter(mem.clone())
        .build()
        .expect("valid");
    let propagator = t.propagator().clone();
    let (subscriber, guard) = t.into_subscriber();
    let incoming = HashMap::from([("traceparent".to_owned(), TP.to_owned())]);
    tracing::subscriber::with_default(subscriber, || {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let span = tracing::info_span!("server");
        span.set_parent(propagator.extract(&incoming))
            .expect("parent");
        let _e = span.enter();
        assert!(opentelemetry::Context::current().has_active_span());
    });
    drop(guard);
    let spans = mem.spans();
    assert_eq!(
        spans[0].span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[test]
fn traces_file_takes_the_console_defaults_place_and_holds_otlp_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spans.jsonl");
    let file = path.to_str().expect("utf-8 path");
    let notes: Vec<String> = {
        let t = env(&[("LOOPTEL_TRACES_FILE", file)])
            .service_name("svc")
            .build()
            .expect("valid");
        t.notes().iter().map(|n| n.text().to_owned()).collect()
    };
    let traces: Vec<&String> = notes.iter().filter(|n| n.starts_with("traces:")).collect();
    assert_eq!(
        traces,
        [&format!("traces: appended as OTLP JSON lines to {file}")],
        "no console output beside the file"
    );

    let ids = ids_in_span(env(&[("LOOPTEL_TRACES_FILE", file)])).expect("sampled");
    let text = std::fs::read_to_string(&path).expect("written at shutdown");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("one JSON line");
    let rs = &line["resourceSpans"][0];
    let span = &rs["scopeSpans"][0]["spans"][0];
    assert_eq!(span["name"], "work");
    assert_eq!(span["traceId"], ids.trace_id().to_string());
    assert_eq!(span["spanId"], ids.span_id().to_string());
    let service = rs["resource"]["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|kv| kv["key"] == "service.name")
        .map(|kv| kv["value"]["stringValue"].clone());
    assert_eq!(service, Some("svc".into()));

    let err = config_error(&[("LOOPTEL_TRACES_FILE", "/nonexistent/dir/spans.jsonl")]);
    assert_eq!(err.variable(), "LOOPTEL_TRACES_FILE");
    assert!(
        err.to_string().contains("cannot open for appending"),
        "{err}"
    );
}

#[test]
fn the_span_attribute_length_limit_wins_and_reaches_the_layers() {
    let limit = |pairs: &[(&str, &str)]| {
        env(pairs)
            .service_name("svc")
            .build()
            .expect("valid")
            .instrumentation()
            .value_limit()
    };
    assert_eq!(limit(&[]), looptel_core::DEFAULT_REQUEST_VALUE_LIMIT);
    assert_eq!(limit(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "300")]), 300);
    assert_eq!(
        limit(&[
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "300"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "40"),
        ]),
        40
    );
}

#[test]
fn exported_attributes_are_cut_at_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spans.jsonl");
    let file = path.to_str().expect("utf-8 path");
    let t = env(&[
        ("LOOPTEL_TRACES_FILE", file),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4"),
    ])
    .service_name("svc")
    .build()
    .expect("valid");
    let (subscriber, guard) = t.into_subscriber();
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("work", note = "abcdefgh").in_scope(|| {});
    });
    drop(guard);
    let text = std::fs::read_to_string(&path).expect("written");
    assert!(text.contains(r#""stringValue":"abcd""#), "{text}");
    assert!(!text.contains("abcdefgh"));
}
