//! `OTEL_PROPAGATORS` with B3 (single and multi header) beside W3C: a
//! service behind a mesh (Istio, Envoy, Linkerd) or called by Zipkin-era
//! services keeps their traces; every configured format is written.

use std::collections::HashMap;

use looptel_core::Extracted;
use looptel_telemetry::Telemetry;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};

fn inst(propagators: &str) -> looptel_core::Instrumentation {
    let vars: HashMap<String, String> = [
        ("OTEL_PROPAGATORS".to_owned(), propagators.to_owned()),
        ("OTEL_TRACES_EXPORTER".to_owned(), "none".to_owned()),
    ]
    .into();
    Telemetry::from_lookup(move |k| vars.get(k).cloned())
        .service_name("svc")
        .build()
        .expect("valid")
        .instrumentation()
}

fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

fn caller(h: &http::HeaderMap, propagators: &str) -> SpanContext {
    let cx = match inst(propagators).extract_request(h, true) {
        Extracted::Remote(cx) | Extracted::UnsampledChild(cx) => cx,
    };
    cx.span().span_context().clone()
}

const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const SPAN: &str = "e457b5a2e4d86bd1";

#[test]
fn b3_single_and_multi_headers_are_read_beside_w3c() {
    let single = headers(&[("b3", &format!("{TRACE}-{SPAN}-1"))]);
    let sc = caller(&single, "tracecontext,baggage,b3");
    assert_eq!(sc.trace_id().to_string(), TRACE);
    assert_eq!(sc.span_id().to_string(), SPAN);
    assert!(sc.is_sampled());

    let multi = headers(&[
        ("X-B3-TraceId", TRACE),
        ("X-B3-SpanId", SPAN),
        ("X-B3-Sampled", "1"),
    ]);
    let sc = caller(&multi, "tracecontext,b3multi");
    assert_eq!(sc.trace_id().to_string(), TRACE);

    // Not configured: not read.
    assert!(!caller(&single, "tracecontext,baggage").is_valid());
}

#[test]
fn w3c_wins_when_both_are_sent_and_garbage_is_no_context() {
    let both = headers(&[
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("b3", &format!("{TRACE}-{SPAN}-1")),
    ]);
    let sc = caller(&both, "tracecontext,baggage,b3");
    assert_eq!(
        sc.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );

    for bad in [
        "",
        "x",
        "-",
        "zz-yy-1",
        &format!("{TRACE}-{SPAN}-9-{SPAN}-x"),
        &"f".repeat(5000),
    ] {
        let h = headers(&[("b3", bad)]);
        assert!(!caller(&h, "tracecontext,b3").is_valid(), "{bad:?}");
    }
}

#[test]
fn every_configured_format_is_written() {
    let sc = SpanContext::new(
        TraceId::from_hex(TRACE).expect("hex"),
        SpanId::from_hex(SPAN).expect("hex"),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(sc);
    let mut out: HashMap<String, String> = HashMap::new();
    inst("tracecontext,baggage,b3,b3multi")
        .propagator()
        .inject(&cx, &mut out);
    assert_eq!(out["traceparent"], format!("00-{TRACE}-{SPAN}-01"));
    assert_eq!(out["b3"], format!("{TRACE}-{SPAN}-1"));
    assert_eq!(out["x-b3-traceid"], TRACE);
    assert_eq!(out["x-b3-spanid"], SPAN);
}

#[test]
fn an_unknown_propagator_is_refused_naming_the_supported_ones() {
    let vars: HashMap<String, String> =
        [("OTEL_PROPAGATORS".to_owned(), "jaeger".to_owned())].into();
    let err = Telemetry::from_lookup(move |k| vars.get(k).cloned())
        .build()
        .expect_err("refused")
        .to_string();
    assert!(err.contains("`b3`, `b3multi`"), "{err}");
}
