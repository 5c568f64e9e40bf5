//! The baggage codec on any bytes: decoding never panics and keeps the
//! limits, and what it keeps is encoded within them and reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use looptel_core::baggage::{BaggagePropagator, MAX_BYTES, MAX_MEMBERS, decode};
use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt;

fn members(cx: &Context) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = cx
        .baggage()
        .iter()
        .map(|(k, (v, _))| (k.to_string(), v.to_string()))
        .collect();
    m.sort();
    m
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let d = decode(lines.iter().copied());
    assert!(d.members.len() <= MAX_MEMBERS);
    let cx = BaggagePropagator::context_with(&Context::new(), d);
    if let Some(encoded) = BaggagePropagator::new().encode(&cx) {
        assert!(encoded.len() <= MAX_BYTES);
        let back = BaggagePropagator::context_with(&Context::new(), decode([encoded.as_bytes()]));
        assert_eq!(members(&back), members(&cx), "{encoded:?}");
    }
});
