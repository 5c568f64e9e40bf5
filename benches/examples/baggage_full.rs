//! Extracts a 64-member, ~8 KB baggage header N times (for callgrind).
fn main() {
    let value = (0..64)
        .map(|i| format!("key{i:02}={}", "v".repeat(118)))
        .collect::<Vec<_>>()
        .join(",");
    let mut h = http::HeaderMap::new();
    h.insert(
        "baggage",
        http::HeaderValue::from_str(&value).unwrap_or_else(|e| panic!("{e}")),
    );
    let p = looptel_core::Propagator::default();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let mut total = 0;
    for _ in 0..n {
        total += opentelemetry::baggage::BaggageExt::baggage(
            &p.extract_headers(std::hint::black_box(&h)),
        )
        .len();
    }
    println!("{total}");
}
