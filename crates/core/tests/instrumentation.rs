//! How a request's context is extracted when the sampler follows an
//! unsampled caller: with the W3C propagators and with any other.

use http::HeaderMap;
use looptel_core::{Extracted, Instrumentation, Propagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::SdkTracerProvider;

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER: &str = "b7ad6b7169203331";

fn headers(flags: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let tp = format!("00-{TRACE}-{CALLER}-{flags}");
    h.insert("traceparent", tp.parse().expect("value"));
    h.insert("tracestate", "vendor=1".parse().expect("value"));
    h
}

/// (trace id, span id, sampled, trace state) of the context's span.
fn ids(cx: &opentelemetry::Context) -> (String, String, bool, String) {
    let span = cx.span();
    let sc = span.span_context();
    (
        sc.trace_id().to_string(),
        sc.span_id().to_string(),
        sc.is_sampled(),
        sc.trace_state().header(),
    )
}

#[test]
fn an_unsampled_caller_gets_a_child_span_only_when_followed_and_trusted() {
    let provider = SdkTracerProvider::builder().build();
    let propagators = [
        Propagator::default(),
        // Not one of looptel's W3C propagators: the generic path.
        Propagator::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
    ];
    for propagator in propagators {
        let followed = Instrumentation::new(&provider, propagator.clone()).parent_based(true);
        let Extracted::UnsampledChild(cx) = followed.extract_request(&headers("00"), true) else {
            panic!("an unsampled, trusted caller under a parent-based sampler");
        };
        let (trace, span, sampled, state) = ids(&cx);
        assert_eq!(trace, TRACE);
        assert_ne!(span, CALLER, "the request's own span");
        assert!(!sampled && !cx.span().is_recording());
        assert_eq!(state, "vendor=1");

        // A sampled caller, an untrusted one, an undeclared sampler, no
        // tracer: the caller's context, for the sampler (or nobody) to decide.
        let undeclared = Instrumentation::new(&provider, propagator.clone());
        let disabled = Instrumentation::disabled(propagator.clone()).parent_based(true);
        for (inst, flags, trusted) in [
            (&followed, "01", true),
            (&followed, "00", false),
            (&undeclared, "00", true),
            (&disabled, "00", true),
        ] {
            let Extracted::Remote(cx) = inst.extract_request(&headers(flags), trusted) else {
                panic!("{flags} trusted={trusted}: the caller's context");
            };
            assert_eq!(ids(&cx).1, CALLER);
        }
    }
}
