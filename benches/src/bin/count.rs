//! `count <scenario> <n>`: sends `n` requests (or, for `kafka-*`, processes
//! `n` consumed records) through a scenario's stack, for callgrind
//! (`scripts/bench.sh` runs it twice per scenario and divides the
//! difference, so start-up cancels out). `observe-classic`,
//! `observe-native` and `observe-both` record `n` observations on one
//! histogram series (latencies spread over 1 ms–4 s, every tenth sampled)
//! kept as classic buckets, native ones, or both.

use looptel_benches::messaging;

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "bare".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let bytes = if let Some(kind) = scenario.strip_prefix("observe-") {
        observe(kind, n)
    } else if scenario.starts_with("kafka-") {
        let consumer = {
            let _runtime = rt.enter();
            messaging::consumer(&scenario)
        };
        tracing::dispatcher::with_default(&consumer.dispatch, || {
            rt.block_on(async {
                let mut total = 0;
                for _ in 0..n {
                    // A consumer owns each record it receives.
                    let record = messaging::record(&scenario);
                    total += messaging::process(&consumer, &record).await;
                }
                total
            })
        })
    } else {
        let stack = {
            let _runtime = rt.enter();
            looptel_benches::stack(&scenario)
        };
        tracing::dispatcher::with_default(&stack.dispatch, || {
            rt.block_on(async {
                let mut total = 0;
                for _ in 0..n {
                    total += looptel_benches::one(&stack.router, &scenario).await;
                }
                total
            })
        })
    };
    println!("{scenario} {n} {bytes}");
}

/// `n` observations on one series of a histogram keeping `kind`'s buckets.
fn observe(kind: &str, n: usize) -> usize {
    use looptel_red_metrics::{DURATION_BUCKETS, Histograms, NativeHistograms, Registry};
    use opentelemetry::trace::{SpanId, TraceId};
    let histograms = match kind {
        "native" => Histograms::Native(NativeHistograms::default()),
        "both" => Histograms::ClassicAndNative(NativeHistograms::default()),
        _ => Histograms::Classic,
    };
    let registry = Registry::new().with_histograms(histograms);
    let h = registry.histogram("bench.duration", "s", "bench", &["route"], DURATION_BUCKETS);
    let series = h.family().series(&["/orders"]);
    let latencies: Vec<f64> = (0..64)
        .map(|i| 0.001 * 4000_f64.powf(f64::from(i) / 63.0))
        .collect();
    let sampled = looptel_core::TraceIds::new(TraceId::from(7_u128), SpanId::from(9_u64), true);
    for i in 0..n {
        let ids = if i % 10 == 0 { sampled } else { None };
        series.observe(std::hint::black_box(latencies[i % latencies.len()]), ids);
    }
    registry.encode_protobuf().len()
}
