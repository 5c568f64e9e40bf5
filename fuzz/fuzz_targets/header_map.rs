//! The HTTP header path: any header lines (valid header values only, as
//! hyper delivers them) extract without panicking, trusted or not.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use looptel_core::{Instrumentation, Propagator};

const NAMES: [&str; 3] = ["traceparent", "tracestate", "baggage"];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(HeaderName::from_static(NAMES[i % 3]), v);
        }
    }
    let inst = Instrumentation::disabled(Propagator::default()).parent_based(true);
    let _ = inst.extract_request(&headers, true);
    let _ = inst.extract_request(&headers, false);
    let _ = Propagator::default().extract_headers(&headers);
});
