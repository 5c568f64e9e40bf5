//! `traceparent` and `tracestate`: the byte parser never panics, and agrees
//! with the generic carrier path on every input.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use looptel_core::Propagator;
use looptel_core::tracecontext::{parse_traceparent_bytes, parse_tracestate};
use opentelemetry::trace::TraceContextExt;

fuzz_target!(|data: &[u8]| {
    let direct = parse_traceparent_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_tracestate(text);
        let carrier = HashMap::from([("traceparent".to_owned(), text.to_owned())]);
        let cx = Propagator::default().extract(&carrier);
        let sc = cx.span().span_context().clone();
        match &direct {
            Some(tp) => {
                assert!(
                    sc.is_valid(),
                    "bytes accept what the carrier refuses: {text:?}"
                );
                assert_eq!(sc.trace_id(), tp.trace_id);
                assert_eq!(sc.span_id(), tp.parent_id);
            }
            None => assert!(
                !sc.is_valid(),
                "the carrier accepts what bytes refuse: {text:?}"
            ),
        }
    }
});
