#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Time per request (and per consumed Kafka record) of each stack, side by side (see `scripts/bench.sh` for
//! instruction counts, which are steadier on shared machines).

use criterion::{Criterion, criterion_group, criterion_main};

fn server_layer(c: &mut Criterion) {
    // What every request's future and body carry: its size is paid in
    // copies on every request (the engine's first cut, whose call held two
    // 56-byte classifications, cost ~160 instructions of memcpy each).
    use std::mem::size_of;
    println!(
        "sizes: engine call {} bytes (a context is {}), classification {} bytes",
        size_of::<looptel_engine::Call<()>>(),
        size_of::<opentelemetry::Context>(),
        size_of::<looptel_engine::Classification>(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let _runtime = rt.enter();
    let mut group = c.benchmark_group("request");
    for scenario in looptel_benches::SCENARIOS {
        let stack = looptel_benches::stack(scenario);
        group.bench_function(*scenario, |b| {
            tracing::dispatcher::with_default(&stack.dispatch, || {
                b.iter(|| rt.block_on(looptel_benches::one(&stack.router, scenario)));
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("consumed record");
    for scenario in looptel_benches::messaging::SCENARIOS {
        let consumer = looptel_benches::messaging::consumer(scenario);
        let record = looptel_benches::messaging::record(scenario);
        group.bench_function(*scenario, |b| {
            tracing::dispatcher::with_default(&consumer.dispatch, || {
                b.iter(|| rt.block_on(looptel_benches::messaging::process(&consumer, &record)));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, server_layer);
criterion_main!(benches);
