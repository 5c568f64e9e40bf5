//! The instruments: a histogram and a counter, each with exemplars, and the
//! up-down gauge; recorded with atomics only.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::SystemTime;

use looptel_core::TraceIds;

use crate::exemplar::{Exemplar, ExemplarSlot};
use crate::native::{Native, NativeSnapshot};

/// The bucket bounds the conventions advise for durations, in seconds.
pub use looptel_catalogue::metrics::DURATION_BUCKETS;

fn add_f64(cell: &AtomicU64, v: f64) {
    let mut old = cell.load(Ordering::Relaxed);
    loop {
        let new = (f64::from_bits(old) + v).to_bits();
        match cell.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => old = actual,
        }
    }
}

fn exemplar(ids: Option<TraceIds>, value: f64) -> Option<Exemplar> {
    ids.filter(TraceIds::is_sampled).map(|ids| Exemplar {
        trace_id: ids.trace_id(),
        span_id: ids.span_id(),
        value,
        timestamp: SystemTime::now(),
    })
}

/// A histogram with one exemplar per bucket, and native buckets when the
/// registry keeps them ([`Histograms`](crate::Histograms)).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: Box<[AtomicU64]>,
    exemplars: Box<[ExemplarSlot]>,
    sum: AtomicU64,
    count: AtomicU64,
    native: Option<Box<Native>>,
}

impl Histogram {
    #[cfg(test)]
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self::with(bounds, crate::Histograms::Classic)
    }

    /// A histogram keeping what `kind` says: `bounds` when classic (else
    /// the `+Inf` bucket alone), native buckets when native.
    pub(crate) fn with(bounds: &'static [f64], kind: crate::Histograms) -> Self {
        let bounds = if kind.classic() { bounds } else { &[] };
        Self {
            native: kind.native().map(|n| Box::new(Native::new(n))),
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            exemplars: (0..=bounds.len())
                .map(|_| ExemplarSlot::default())
                .collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records `value`; `ids` become the bucket's exemplar when sampled.
    pub fn observe(&self, value: f64, ids: Option<TraceIds>) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        add_f64(&self.sum, value);
        self.count.fetch_add(1, Ordering::Relaxed);
        let e = exemplar(ids, value);
        if let Some(e) = &e {
            self.exemplars[i].store(e);
        }
        if let Some(native) = &self.native {
            native.observe(value, e.as_ref());
        }
    }

    /// The native buckets, when kept.
    pub(crate) fn native(&self) -> Option<NativeSnapshot> {
        self.native.as_deref().map(Native::snapshot)
    }

    /// The bounds, the cumulative counts (one more, for `+Inf`) and each
    /// bucket's exemplar.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = self
            .counts
            .iter()
            .zip(self.exemplars.iter())
            .map(|(c, e)| {
                cumulative += c.load(Ordering::Relaxed);
                (cumulative, e.load())
            })
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            buckets,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct HistogramSnapshot {
    pub(crate) bounds: &'static [f64],
    pub(crate) buckets: Vec<(u64, Option<Exemplar>)>,
    pub(crate) sum: f64,
    pub(crate) count: u64,
}

/// A monotonic counter with an exemplar.
#[derive(Debug, Default)]
pub struct Counter {
    value: AtomicU64,
    exemplar: ExemplarSlot,
}

impl Counter {
    /// Adds `n`; `ids` become the exemplar when sampled.
    pub fn add(&self, n: u64, ids: Option<TraceIds>) {
        self.value.fetch_add(n, Ordering::Relaxed);
        if let Some(e) = exemplar(ids, n as f64) {
            self.exemplar.store(&e);
        }
    }

    pub(crate) fn get(&self) -> (u64, Option<Exemplar>) {
        (self.value.load(Ordering::Relaxed), self.exemplar.load())
    }
}

/// A value that goes up and down (in-flight requests).
#[derive(Debug, Default)]
pub struct Gauge {
    value: AtomicI64,
}

impl Gauge {
    /// Adds `n` (may be negative).
    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.value.store(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    fn ids(sampled: bool) -> Option<TraceIds> {
        let sc = SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(9_u64),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            false,
            TraceState::default(),
        );
        TraceIds::from_context(&opentelemetry::Context::new().with_remote_span_context(sc))
    }

    #[test]
    fn buckets_are_cumulative_with_le_semantics() {
        let h = Histogram::new(DURATION_BUCKETS);
        for v in [0.001, 0.005, 0.0051, 1.0, 11.0] {
            h.observe(v, None);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), DURATION_BUCKETS.len() + 1);
        assert_eq!(s.buckets[0].0, 2, "0.005 is in le=0.005");
        assert_eq!(s.buckets[1].0, 3);
        assert_eq!(s.buckets[9].0, 4, "1.0 is in le=1");
        assert_eq!(s.buckets[14].0, 5, "+Inf counts all");
        assert_eq!(s.count, 5);
        assert!((s.sum - 12.0111).abs() < 1e-9);
    }

    #[test]
    fn exemplars_only_from_sampled_spans() {
        let h = Histogram::new(DURATION_BUCKETS);
        h.observe(0.003, ids(false));
        assert!(h.snapshot().buckets[0].1.is_none());
        h.observe(0.004, ids(true));
        let e = h.snapshot().buckets[0].1.expect("exemplar");
        assert_eq!(e.trace_id, TraceId::from(7_u128));
        assert_eq!(e.value, 0.004);
        let c = Counter::default();
        c.add(1, ids(false));
        assert!(c.get().1.is_none());
        c.add(2, ids(true));
        assert_eq!(c.get().0, 3);
        assert_eq!(c.get().1.map(|e| e.value), Some(2.0));
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = std::sync::Arc::new(Histogram::new(DURATION_BUCKETS));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        h.observe(0.5, ids(true));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = h.snapshot();
        assert_eq!(s.count, 40_000);
        assert_eq!(s.sum, 20_000.0);
    }
}
