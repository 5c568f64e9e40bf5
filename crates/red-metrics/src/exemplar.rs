//! One exemplar slot, written without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, TraceId};

/// An exemplar: the trace that produced an observation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    /// The trace id of the sampled span.
    pub trace_id: TraceId,
    /// The span id of the sampled span.
    pub span_id: SpanId,
    /// The observed value.
    pub value: f64,
    /// When it was observed.
    pub timestamp: SystemTime,
}

/// A seqlock over plain atomics: a writer that finds another writer busy
/// skips (an exemplar is a sample; the next observation brings a new one),
/// so recording never waits and never takes a lock.
#[derive(Debug, Default)]
pub(crate) struct ExemplarSlot {
    /// Even: stable; odd: being written. 0: never written.
    seq: AtomicU64,
    trace_hi: AtomicU64,
    trace_lo: AtomicU64,
    span: AtomicU64,
    value: AtomicU64,
    nanos: AtomicU64,
}

impl ExemplarSlot {
    pub(crate) fn store(&self, e: &Exemplar) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq & 1 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        // Data written below becomes visible only after the odd sequence.
        std::sync::atomic::fence(Ordering::Release);
        let trace = u128::from_be_bytes(e.trace_id.to_bytes());
        self.trace_hi.store((trace >> 64) as u64, Ordering::Relaxed);
        self.trace_lo.store(trace as u64, Ordering::Relaxed);
        self.span
            .store(u64::from_be_bytes(e.span_id.to_bytes()), Ordering::Relaxed);
        self.value.store(e.value.to_bits(), Ordering::Relaxed);
        let nanos = e
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.nanos.store(nanos, Ordering::Relaxed);
        self.seq.store(seq + 2, Ordering::Release);
    }

    pub(crate) fn load(&self) -> Option<Exemplar> {
        for _ in 0..8 {
            let before = self.seq.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let hi = self.trace_hi.load(Ordering::Relaxed);
            let lo = self.trace_lo.load(Ordering::Relaxed);
            let span = self.span.load(Ordering::Relaxed);
            let value = f64::from_bits(self.value.load(Ordering::Relaxed));
            let nanos = self.nanos.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return Some(Exemplar {
                    trace_id: TraceId::from(u128::from(hi) << 64 | u128::from(lo)),
                    span_id: SpanId::from(span),
                    value,
                    timestamp: UNIX_EPOCH + Duration::from_nanos(nanos),
                });
            }
        }
        // Writers kept it busy: no exemplar this scrape.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads_whole_exemplars_across_threads() {
        let slot = std::sync::Arc::new(ExemplarSlot::default());
        assert!(slot.load().is_none());
        let writers: Vec<_> = (1..=4_u64)
            .map(|t| {
                let slot = slot.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000_u64 {
                        let n = t << 32 | i;
                        slot.store(&Exemplar {
                            trace_id: TraceId::from(u128::from(n) << 64 | u128::from(n)),
                            span_id: SpanId::from(n),
                            value: n as f64,
                            timestamp: UNIX_EPOCH + Duration::from_nanos(n),
                        });
                    }
                })
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            if let Some(e) = slot.load() {
                // Never a mix of two writes.
                let n = u64::from_be_bytes(e.span_id.to_bytes());
                assert_eq!(
                    e.trace_id,
                    TraceId::from(u128::from(n) << 64 | u128::from(n))
                );
                assert_eq!(e.value, n as f64);
                assert_eq!(e.timestamp, UNIX_EPOCH + Duration::from_nanos(n));
            }
        }
        for w in writers {
            w.join().expect("writer");
        }
        assert!(slot.load().is_some());
    }
}
