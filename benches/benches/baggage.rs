#![allow(missing_docs)] // criterion's macros generate undocumented items
//! W3C Baggage extract and inject: looptel's propagator beside the
//! OpenTelemetry SDK's, for a typical header and one at the limits.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use looptel_core::baggage::BaggagePropagator;
use looptel_core::{HeaderExtractor, HeaderInjector, Propagator};
use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;

fn header(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "baggage",
        HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
    );
    h
}

fn baggage(c: &mut Criterion) {
    let typical = header("tenant.id=acme,campaign=spring%202026,ab.test=b;ttl=60");
    // 64 members, 8,000+ bytes: the most that is always propagated.
    let full_value = (0..64)
        .map(|i| format!("key{i:02}={}", "v".repeat(118)))
        .collect::<Vec<_>>()
        .join(",");
    assert!(full_value.len() <= 8192);
    let full = header(&full_value);

    let ours = Propagator::default();
    let plain = BaggagePropagator::new();
    let sdk = opentelemetry_sdk::propagation::BaggagePropagator::new();

    let mut g = c.benchmark_group("baggage");
    for (name, h) in [("typical", &typical), ("full", &full)] {
        g.bench_function(format!("extract/looptel/{name}"), |b| {
            b.iter(|| black_box(ours.extract_headers(black_box(h))));
        });
        g.bench_function(format!("extract/sdk/{name}"), |b| {
            b.iter(|| {
                black_box(sdk.extract_with_context(&Context::new(), &HeaderExtractor(black_box(h))))
            });
        });
        let cx = ours.extract_headers(h);
        g.bench_function(format!("inject/looptel/{name}"), |b| {
            b.iter(|| {
                let mut out = HeaderMap::new();
                plain.inject_context(black_box(&cx), &mut HeaderInjector(&mut out));
                black_box(out)
            });
        });
        g.bench_function(format!("inject/sdk/{name}"), |b| {
            b.iter(|| {
                let mut out = HeaderMap::new();
                sdk.inject_context(black_box(&cx), &mut HeaderInjector(&mut out));
                black_box(out)
            });
        });
    }
    // A hostile header: 10,000 members, 118 KB.
    let flood_value = (0..10_000)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let flood = header(&flood_value);
    g.bench_function("extract/looptel/flood-118KB", |b| {
        b.iter(|| black_box(ours.extract_headers(black_box(&flood))));
    });
    g.finish();
}

criterion_group!(benches, baggage);
criterion_main!(benches);
