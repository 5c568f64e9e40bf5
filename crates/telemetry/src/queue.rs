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
    spans: Signal,
    logs: Signal,
    failed_metric_exports: AtomicU64,
}

/// One signal's losses, and what is still on its way.
#[derive(Debug, Default)]
struct Signal {
    failed: AtomicU64,
    dropped: AtomicU64,
    pending: AtomicUsize,
}

impl ExportStats {
    /// Spans in batches whose export failed (a collector that refused,
    /// timed out or was down): lost.
    pub fn failed_spans(&self) -> u64 {
        self.0.spans.failed.load(Ordering::Relaxed)
    }

    /// Sampled spans dropped because the export queue was full.
    pub fn dropped_spans(&self) -> u64 {
        self.0.spans.dropped.load(Ordering::Relaxed)
    }

    /// Sampled spans queued or being exported: after a shutdown, those it
    /// could not flush in time (lost).
    pub fn pending_spans(&self) -> u64 {
        self.0.spans.pending.load(Ordering::Relaxed) as u64
    }

    /// Log records in batches whose export failed: lost.
    pub fn failed_logs(&self) -> u64 {
        self.0.logs.failed.load(Ordering::Relaxed)
    }

    /// Log records dropped because the export queue was full.
    pub fn dropped_logs(&self) -> u64 {
        self.0.logs.dropped.load(Ordering::Relaxed)
    }

    /// Log records queued or being exported: after a shutdown, those it
    /// could not flush in time (lost).
    pub fn pending_logs(&self) -> u64 {
        self.0.logs.pending.load(Ordering::Relaxed) as u64
    }

    /// Spans and log records that never reached their destination:
    /// dropped, in failed exports, or still pending.
    pub fn undelivered(&self) -> Undelivered {
        Undelivered {
            spans: self.dropped_spans() + self.failed_spans() + self.pending_spans(),
            log_records: self.dropped_logs() + self.failed_logs() + self.pending_logs(),
        }
    }

    /// Pushes of the metrics registry that failed (the next one carries
    /// the cumulative values on).
    pub fn failed_metric_exports(&self) -> u64 {
        self.0.failed_metric_exports.load(Ordering::Relaxed)
    }

    pub(crate) fn metric_export_failed(&self) {
        self.0.failed_metric_exports.fetch_add(1, Ordering::Relaxed);
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

/// The bound on items queued or being exported by one batch processor,
/// which counts in its signal's [`ExportStats`] what it admits (pending),
/// drops and sees fail.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
    stats: ExportStats,
    logs: bool,
}

impl Queue {
    /// A queue of spans.
    pub(crate) fn spans(capacity: usize, stats: &ExportStats) -> Self {
        Self::new(capacity, stats, false)
    }

    /// A queue of log records.
    pub(crate) fn logs(capacity: usize, stats: &ExportStats) -> Self {
        Self::new(capacity, stats, true)
    }

    fn new(capacity: usize, stats: &ExportStats, logs: bool) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
            stats: stats.clone(),
            logs,
        }
    }

    fn signal(&self) -> &Signal {
        match self.logs {
            true => &self.stats.0.logs,
            false => &self.stats.0.spans,
        }
    }

    /// Takes a place (the item is then pending), or counts the item as
    /// dropped when all are taken.
    fn admit(&self) -> bool {
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        let signal = self.signal();
        match admitted {
            true => signal.pending.fetch_add(1, Ordering::Relaxed),
            false => signal.dropped.fetch_add(1, Ordering::Relaxed) as usize,
        };
        admitted
    }

    /// Gives back the places of `n` items whose export ended with `result`,
    /// counting them as lost when it failed.
    pub(crate) fn ended(&self, n: usize, result: &OTelSdkResult) {
        let release = |count: &AtomicUsize| {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                Some(c.saturating_sub(n))
            });
        };
        release(&self.in_flight);
        let signal = self.signal();
        release(&signal.pending);
        if result.is_err() {
            signal.failed.fetch_add(n as u64, Ordering::Relaxed);
        }
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
        if !span.span_context.is_sampled() || self.queue.admit() {
            self.inner.on_end(span);
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
}

impl<P: LogProcessor> LogProcessor for GatedLogs<P> {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        if self.queue.admit() {
            self.inner.emit(record, scope);
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
}

impl<E: LogExporter> LogExporter for CountedLogs<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.queue.ended(records, &result);
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
        let stats = ExportStats::default();
        let q = Queue::spans(2, &stats);
        assert!(q.admit() && q.admit());
        assert!(!q.admit(), "full");
        assert_eq!((stats.pending_spans(), stats.dropped_spans()), (2, 1));
        q.ended(1, &Ok(()));
        assert!(q.admit());
        let timeout = opentelemetry_sdk::error::OTelSdkError::Timeout(Duration::ZERO);
        q.ended(10, &Err(timeout));
        assert!(
            q.admit() && q.admit() && !q.admit(),
            "released never below 0"
        );
        assert_eq!(stats.failed_spans(), 10);
        assert_eq!(stats.undelivered().log_records, 0, "spans only");
    }
}
