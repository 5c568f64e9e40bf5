#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Recording and encoding: looptel's lock-free histogram beside
//! prometheus-client's `HistogramWithExemplars` (a write lock per
//! observation), on one thread and on two at once; and encoding 10,000
//! series.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use looptel_core::TraceIds;
use looptel_red_metrics::{DURATION_BUCKETS, Format, Registry};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabels {
    trace_id: String,
    span_id: String,
}

fn ids() -> Option<TraceIds> {
    let sc = SpanContext::new(
        TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736_u128),
        SpanId::from(0x00f067aa0ba902b7_u64),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    TraceIds::from_context(&opentelemetry::Context::new().with_remote_span_context(sc))
}

/// What the peer needs per observation: the exemplar's label set.
fn peer_labels(ids: TraceIds) -> TraceLabels {
    TraceLabels {
        trace_id: ids.trace_id().to_string(),
        span_id: ids.span_id().to_string(),
    }
}

/// Runs `per_thread` observations on each of `threads` threads at once;
/// returns the wall time.
fn concurrently(threads: usize, per_thread: u64, observe: Arc<dyn Fn() + Send + Sync>) -> Duration {
    let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (barrier, observe) = (barrier.clone(), observe.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per_thread {
                    observe();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap_or_else(|_| panic!("bench thread"));
    }
    start.elapsed()
}

fn record(c: &mut Criterion) {
    let registry = Registry::new();
    let ours = registry.histogram("bench.duration", "s", "bench", &[], DURATION_BUCKETS);
    let peer = HistogramWithExemplars::<TraceLabels>::new(DURATION_BUCKETS.iter().copied());
    let ids = ids();
    let trace = ids.unwrap_or_else(|| panic!("valid ids"));

    let mut g = c.benchmark_group("observe_with_exemplar");
    g.bench_function("looptel/1-thread", |b| {
        b.iter(|| ours.with(&[], |h| h.observe(black_box(0.042), ids)));
    });
    g.bench_function("prometheus-client/1-thread", |b| {
        b.iter(|| peer.observe(black_box(0.042), Some(peer_labels(trace)), None));
    });
    {
        let threads = 2_usize;
        let h = ours.clone();
        let f: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || h.with(&[], |h| h.observe(0.042, ids)));
        g.bench_function(format!("looptel/{threads}-threads"), |b| {
            b.iter_custom(|iters| concurrently(threads, iters, f.clone()));
        });
        let p = peer.clone();
        let f: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || p.observe(0.042, Some(peer_labels(trace)), None));
        g.bench_function(format!("prometheus-client/{threads}-threads"), |b| {
            b.iter_custom(|iters| concurrently(threads, iters, f.clone()));
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let registry = Registry::new().with_max_series(10_000);
    let counter = registry.counter("bench.requests", "{request}", "bench", &["route"]);
    let routes: Vec<String> = (0..10_000).map(|i| format!("/route/{i}")).collect();
    for r in &routes {
        counter.with(&[r], |c| c.add(1, None));
    }
    assert_eq!(counter.family().series_count(), 10_000);

    let mut peer_registry = prometheus_client::registry::Registry::default();
    let family = prometheus_client::metrics::family::Family::<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >::default();
    peer_registry.register("bench_requests", "bench", family.clone());
    for r in &routes {
        family
            .get_or_create(&vec![("route".to_owned(), r.clone())])
            .inc();
    }

    let mut g = c.benchmark_group("encode_10k_series");
    g.bench_function("looptel/openmetrics", |b| {
        b.iter(|| black_box(registry.encode(Format::OpenMetrics)))
    });
    g.bench_function("looptel/prometheus", |b| {
        b.iter(|| black_box(registry.encode(Format::Prometheus)))
    });
    g.bench_function("prometheus-client/openmetrics", |b| {
        b.iter(|| {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &peer_registry)
                .unwrap_or_else(|e| panic!("{e}"));
            black_box(out)
        });
    });
    g.finish();
}

/// Classic buckets, native ones, and both, on one thread and two at once;
/// the latencies spread over 1 ms–4 s so that native observations land in
/// many buckets.
fn record_native(c: &mut Criterion) {
    use looptel_red_metrics::{Histograms, NativeHistograms};
    let latencies: Arc<Vec<f64>> = Arc::new(
        (0..64)
            .map(|i| 0.001 * 4000_f64.powf(f64::from(i) / 63.0))
            .collect(),
    );
    let ids = ids();
    let mut g = c.benchmark_group("observe_spread");
    for (name, kind) in [
        ("classic", Histograms::Classic),
        ("native", Histograms::Native(NativeHistograms::default())),
        (
            "classic+native",
            Histograms::ClassicAndNative(NativeHistograms::default()),
        ),
    ] {
        let registry = Registry::new().with_histograms(kind);
        let h = registry
            .histogram("bench.duration", "s", "bench", &[], DURATION_BUCKETS)
            .family()
            .series(&[]);
        let mut i = 0;
        g.bench_function(format!("{name}/1-thread"), |b| {
            b.iter(|| {
                i = (i + 1) % 64;
                h.observe(black_box(latencies[i]), ids);
            });
        });
        let (h2, l) = (h.clone(), latencies.clone());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let f: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 64;
            h2.observe(l[i], ids);
        });
        g.bench_function(format!("{name}/2-threads"), |b| {
            b.iter_custom(|iters| concurrently(2, iters, f.clone()));
        });
    }
    g.finish();
}

/// 1,000 histogram series: OpenMetrics text of classic buckets against
/// Prometheus' protobuf format of native ones (and of classic ones).
fn encode_histograms(c: &mut Criterion) {
    use looptel_red_metrics::{Histograms, NativeHistograms};
    let build = |kind| {
        let registry = Registry::new().with_histograms(kind);
        let h = registry.histogram("bench.duration", "s", "bench", &["route"], DURATION_BUCKETS);
        for r in 0..1_000 {
            let route = format!("/route/{r}");
            for i in 0..20 {
                h.with(&[&route], |h| {
                    h.observe(0.001 * 4000_f64.powf(f64::from(i) / 19.0), ids());
                });
            }
        }
        registry
    };
    let classic = build(Histograms::Classic);
    let native = build(Histograms::Native(NativeHistograms::default()));
    let mut g = c.benchmark_group("encode_1k_histograms");
    g.bench_function("classic/openmetrics", |b| {
        b.iter(|| black_box(classic.encode(Format::OpenMetrics)))
    });
    g.bench_function("classic/protobuf", |b| {
        b.iter(|| black_box(classic.encode_protobuf()))
    });
    g.bench_function("native/protobuf", |b| {
        b.iter(|| black_box(native.encode_protobuf()))
    });
    g.finish();
    eprintln!(
        "1,000 histogram series: classic OpenMetrics {} bytes, classic protobuf {} bytes, native protobuf {} bytes",
        classic.encode(Format::OpenMetrics).len(),
        classic.encode_protobuf().len(),
        native.encode_protobuf().len()
    );
}

criterion_group!(benches, record, encode, record_native, encode_histograms);
criterion_main!(benches);
