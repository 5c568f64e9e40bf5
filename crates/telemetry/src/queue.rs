//! Every span and log record the batch processors could not deliver,
//! counted where an operator can read it.
//!
//! The SDK's batch processors drop what arrives while their queue is full
//! and say so only in their internal logs (built out here), with a count at
//! shutdown. So the queue's bound is kept here instead: a gate in front of
//! each processor admits an item only while fewer than `OTEL_BSP_MAX_QUEUE_SIZE`
//! (`OTEL_BLRP_MAX_QUEUE_SIZE`) items are queued or being exported, and
//! counts the rest; the exporter behind it releases a batch once its export
//! ends, and counts the batches that failed. The SDK's own queue then never
//! overflows, and each drop is counted exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, LogProcessor, SdkLogRecord};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

/// What telemetry could not deliver, counted by the built-in pipelines.
/// Cheap to clone; read it into metrics (order-service registers each as a
/// counter).
#[derive(Clone, Debug, Default)]
pub struct ExportStats(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    failed_spans: AtomicU64,
    dropped_spans: AtomicU64,
    pending_spans: AtomicUsize,
    failed_logs: AtomicU64,
    dropped_logs: AtomicU64,
    pending_logs: AtomicUsize,
    failed_metric_exports: AtomicU64,
}

fn settle(pending: &AtomicUsize, n: usize) {
    let _ = pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
        Some(p.saturating_sub(n))
    });
}

impl ExportStats {
    /// Spans in batches whose export failed (a collector that refused,
    /// timed out or was down): lost.
    pub fn failed_spans(&self) -> u64 {
        self.0.failed_spans.load(Ordering::Relaxed)
    }

    /// Sampled spans dropped because the export queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.0.dropped_spans.load(Ordering::Relaxed)
    }

    /// Sampled spans queued or being exported: after a shutdown, those it
    /// could not flush in time (lost).
    pub fn pending_spans(&self) -> u64 {
        self.0.pending_spans.load(Ordering::Relaxed) as u64
    }

    /// Log records queued or being exported: after a shutdown, those it
    /// could not flush in time (lost).
    pub fn pending_logs(&self) -> u64 {
        self.0.pending_logs.load(Ordering::Relaxed) as u64
    }

    /// Spans and log records that never reached their destination:
    /// dropped, in failed exports, or still pending.
    pub fn undelivered(&self) -> Undelivered {
        Undelivered {
            spans: self.dropped_spans() + self.failed_spans() + self.pending_spans(),
            log_records: self.dropped_logs() + self.failed_logs() + self.pending_logs(),
        }
    }

    /// Log records in batches whose export failed: lost.
    pub fn failed_logs(&self) -> u64 {
        self.0.failed_logs.load(Ordering::Relaxed)
    }

    /// Log records dropped because the export queue was full.
    pub fn dropped_logs(&self) -> u64 {
        self.0.dropped_logs.load(Ordering::Relaxed)
    }

    /// Pushes of the metrics registry that failed (the next one carries
    /// the cumulative values on).
    pub fn failed_metric_exports(&self) -> u64 {
        self.0.failed_metric_exports.load(Ordering::Relaxed)
    }

    pub(crate) fn metric_export_failed(&self) {
        self.0.failed_metric_exports.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn span_export(&self, spans: usize, result: &OTelSdkResult) {
        settle(&self.0.pending_spans, spans);
        if result.is_err() {
            self.0
                .failed_spans
                .fetch_add(spans as u64, Ordering::Relaxed);
        }
    }
}

/// What [`ExportStats::undelivered`] counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Undelivered {
    /// Spans.
    pub spans: u64,
    /// Log records (OTLP).
    pub log_records: u64,
}

/// The bound on items queued or being exported by one batch processor.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
        }
    }

    /// Takes a place, unless all are taken.
    fn admit(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back the places of `n` items whose export ended.
    pub(crate) fn release(&self, n: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_sub(n))
            });
    }
}

/// A span processor that hands `inner` (a batch processor) only the sampled
/// spans its queue has room for, and counts the others.
#[derive(Debug)]
pub(crate) struct GatedSpans<P> {
    /// Baggage members copied onto each span as it starts.
    pub(crate) promotion: Option<looptel_core::BaggagePromotion>,
    pub(crate) inner: P,
    pub(crate) queue: Queue,
    pub(crate) stats: ExportStats,
}

impl<P: SpanProcessor> SpanProcessor for GatedSpans<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        if let Some(promotion) = &self.promotion {
            crate::promotion::promote(promotion, span, cx);
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        // Unsampled spans are never queued: the batch processor skips them.
        if !span.span_context.is_sampled() {
            self.inner.on_end(span);
        } else if self.queue.admit() {
            self.stats.0.pending_spans.fetch_add(1, Ordering::Relaxed);
            self.inner.on_end(span);
        } else {
            self.stats.0.dropped_spans.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A log processor that hands `inner` (a batch processor) only the records
/// its queue has room for, and counts the others.
#[derive(Debug)]
pub(crate) struct GatedLogs<P> {
    pub(crate) inner: P,
    pub(crate) queue: Queue,
    pub(crate) stats: ExportStats,
}

impl<P: LogProcessor> LogProcessor for GatedLogs<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.queue.admit() {
            self.stats.0.pending_logs.fetch_add(1, Ordering::Relaxed);
            self.inner.emit(record, scope);
        } else {
            self.stats.0.dropped_logs.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A log exporter that releases each batch's places in the queue once its
/// export ends, and counts the records of failed exports.
#[derive(Debug)]
pub(crate) struct CountedLogs<E> {
    pub(crate) inner: E,
    pub(crate) queue: Queue,
    pub(crate) stats: ExportStats,
}

impl<E: LogExporter> LogExporter for CountedLogs<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.queue.release(records);
        settle(&self.stats.0.pending_logs, records);
        if result.is_err() {
            self.stats
                .0
                .failed_logs
                .fetch_add(records as u64, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_admits_up_to_its_capacity_and_frees_what_was_exported() {
        let q = Queue::new(2);
        assert!(q.admit() && q.admit());
        assert!(!q.admit(), "full");
        q.release(1);
        assert!(q.admit());
        q.release(10);
        assert!(
            q.admit() && q.admit() && !q.admit(),
            "released never below 0"
        );
    }
}
