//! The batch span processor: spans queued for a thread that exports them in
//! batches, on a schedule or as soon as a batch is full.
//!
//! The SDK's `BatchSpanProcessor` does the same over a bounded channel whose
//! slots are allocated and touched at start: `OTEL_BSP_MAX_QUEUE_SIZE`
//! (2,048) spans, 768 KB resident in an idle service (`scripts/bench.sh`,
//! idle memory). Here the queue is std's unbounded channel — blocks of 31
//! spans allocated as spans arrive and freed as they are exported — and its
//! bound is the gate in front ([`crate::queue`]), which admits a span only
//! while fewer than that many are queued or being exported, and counts the
//! others. The rest is the SDK's protocol: the worker wakes on the schedule
//! (`OTEL_BSP_SCHEDULE_DELAY`), when a batch is full
//! (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`; one message, not one a span), for a
//! flush and at shutdown; each export takes at most what was queued when it
//! began, so a steady stream cannot keep a flush waiting.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// How batches are made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// The longest a span waits before its batch is exported.
    pub(crate) scheduled_delay: Duration,
    /// The most spans a batch holds.
    pub(crate) max_export_batch_size: usize,
}

/// How long [`SpanProcessor::force_flush`] waits for the worker.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

enum Control {
    /// A batch is full.
    Export,
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
    Resource(Resource),
}

/// Exports finished spans in batches from a thread of its own.
#[derive(Debug)]
pub(crate) struct BatchSpans {
    spans: Sender<SpanData>,
    control: SyncSender<Control>,
    /// Spans sent and not yet taken by the worker.
    queued: Arc<AtomicUsize>,
    /// An `Export` message is on its way.
    export_sent: Arc<AtomicBool>,
    max_export_batch_size: usize,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Export => "Export",
            Self::Flush(_) => "Flush",
            Self::Shutdown(_) => "Shutdown",
            Self::Resource(_) => "Resource",
        })
    }
}

impl BatchSpans {
    /// Starts the worker thread exporting through `exporter`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn new<E>(exporter: E, settings: Settings) -> std::io::Result<Self>
    where
        E: SpanExporter + Send + 'static,
    {
        let (spans, spans_rx) = std::sync::mpsc::channel();
        // Export, flush, shutdown: a handful at most are ever waiting.
        let (control, control_rx) = std::sync::mpsc::sync_channel(16);
        let queued = Arc::new(AtomicUsize::new(0));
        let export_sent = Arc::new(AtomicBool::new(false));
        let max_export_batch_size = settings.max_export_batch_size.max(1);
        let worker = Worker {
            exporter,
            spans: spans_rx,
            queued: queued.clone(),
            export_sent: export_sent.clone(),
            settings: Settings {
                max_export_batch_size,
                ..settings
            },
            batch: Vec::new(),
            last_export: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("looptel-spans".to_owned())
            .spawn(move || worker.run(&control_rx))?;
        Ok(Self {
            spans,
            control,
            queued,
            export_sent,
            max_export_batch_size,
            worker: Mutex::new(Some(thread)),
        })
    }

    /// Sends `message` and waits up to `timeout` for its answer.
    fn ask(
        &self,
        message: impl FnOnce(SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.control
            .send(message(reply))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        answer.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => OTelSdkError::Timeout(timeout),
            RecvTimeoutError::Disconnected => OTelSdkError::AlreadyShutdown,
        })?
    }
}

impl SpanProcessor for BatchSpans {
    fn on_start(&self, _: &mut Span, _: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        // Counted before it is sent, so that an export that starts now
        // takes it (or a later one does).
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if self.spans.send(span).is_err() {
            // Ended after the shutdown: it stays pending in the gate's
            // count, which says so (`ExportStats::pending_spans`: lost).
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if before + 1 >= self.max_export_batch_size
            && !self.export_sent.load(Ordering::Relaxed)
            && !self.export_sent.swap(true, Ordering::Relaxed)
            && self.control.try_send(Control::Export).is_err()
        {
            self.export_sent.store(false, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.ask(Control::Shutdown, timeout);
        if result.is_ok()
            && let Ok(mut worker) = self.worker.lock()
            && let Some(thread) = worker.take()
        {
            let _ = thread.join();
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = self.control.send(Control::Resource(resource.clone()));
    }
}

/// The worker thread's state.
struct Worker<E> {
    exporter: E,
    spans: Receiver<SpanData>,
    queued: Arc<AtomicUsize>,
    export_sent: Arc<AtomicBool>,
    settings: Settings,
    /// The batch being gathered.
    batch: Vec<SpanData>,
    last_export: Instant,
}

impl<E: SpanExporter> Worker<E> {
    fn run(mut self, control: &Receiver<Control>) {
        // The exporter's own work (an HTTP client's spans) is not traced.
        let _suppressed = Context::enter_telemetry_suppressed_scope();
        loop {
            let wait = self
                .settings
                .scheduled_delay
                .checked_sub(self.last_export.elapsed())
                .unwrap_or(Duration::ZERO);
            match control.recv_timeout(wait) {
                Ok(Control::Export) => {
                    self.export_sent.store(false, Ordering::Relaxed);
                    let _ = self.export_queued();
                }
                Ok(Control::Flush(reply)) => {
                    let _ = reply.send(self.export_queued());
                }
                Ok(Control::Shutdown(reply)) => {
                    let result = self.export_queued();
                    let _ = self.exporter.shutdown();
                    let _ = reply.send(result);
                    return;
                }
                Ok(Control::Resource(resource)) => self.exporter.set_resource(&resource),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export_queued();
                    // Even with nothing to export: the next wait is a
                    // whole delay.
                    self.last_export = Instant::now();
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Exports, in batches, the spans queued when it began.
    fn export_queued(&mut self) -> OTelSdkResult {
        let mut left = self.queued.load(Ordering::Acquire);
        let mut result = Ok(());
        while left > 0 {
            let limit = self.settings.max_export_batch_size.min(left);
            while self.batch.len() < limit {
                match self.spans.try_recv() {
                    Ok(span) => self.batch.push(span),
                    Err(_) => break,
                }
            }
            let n = self.batch.len();
            if n == 0 {
                break;
            }
            self.queued.fetch_sub(n, Ordering::AcqRel);
            left -= n;
            // The exporter owns the batch it is given (and frees it): one
            // batch's room at a time, not a copy beside a kept buffer.
            let batch = std::mem::take(&mut self.batch);
            self.last_export = Instant::now();
            if let Err(e) = futures_executor::block_on(self.exporter.export(batch)) {
                result = Err(e);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// Counts the spans it is given, and what it was told.
    #[derive(Clone, Debug, Default)]
    struct Counting(Arc<(AtomicUsize, AtomicBool)>);

    impl SpanExporter for Counting {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.0.fetch_add(batch.len(), Ordering::SeqCst);
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            self.0.1.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    impl Counting {
        fn exported(&self) -> usize {
            self.0.0.load(Ordering::SeqCst)
        }
        fn eventually(&self, n: usize) -> usize {
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.exported() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.exported()
        }
    }

    fn provider(settings: Settings) -> (SdkTracerProvider, Counting) {
        let exporter = Counting::default();
        let processor = BatchSpans::new(exporter.clone(), settings).expect("thread");
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        (provider, exporter)
    }

    #[test]
    fn a_flush_exports_what_was_queued_and_a_full_batch_goes_at_once() {
        let (provider, exporter) = provider(Settings {
            scheduled_delay: Duration::from_secs(3600),
            max_export_batch_size: 4,
        });
        let tracer = provider.tracer("t");
        for _ in 0..3 {
            tracer.in_span("s", |_| {});
        }
        // Under a batch, an hour from the schedule: nothing yet.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(exporter.exported(), 0);
        provider.force_flush().expect("flushed");
        assert_eq!(exporter.exported(), 3);
        // A full batch is exported without waiting for the schedule.
        for _ in 0..4 {
            tracer.in_span("s", |_| {});
        }
        assert_eq!(exporter.eventually(7), 7);
        provider.shutdown().expect("shut down");
        assert!(
            exporter.0.1.load(Ordering::SeqCst),
            "the exporter shut down"
        );
    }

    #[test]
    fn the_schedule_exports_a_partial_batch_and_shutdown_the_rest() {
        let (provider, exporter) = provider(Settings {
            scheduled_delay: Duration::from_millis(50),
            max_export_batch_size: 512,
        });
        let tracer = provider.tracer("t");
        tracer.in_span("s", |_| {});
        assert_eq!(exporter.eventually(1), 1, "exported on the schedule");
        tracer.in_span("s", |_| {});
        provider.shutdown().expect("shut down");
        assert_eq!(exporter.exported(), 2, "the rest at shutdown");
        assert!(provider.shutdown().is_err(), "only once");
    }

    #[test]
    fn many_threads_lose_nothing() {
        let (provider, exporter) = provider(Settings {
            scheduled_delay: Duration::from_millis(20),
            max_export_batch_size: 7,
        });
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let tracer = provider.tracer("t");
                    for _ in 0..500 {
                        tracer.in_span("s", |_| {});
                    }
                });
            }
        });
        provider.shutdown().expect("shut down");
        assert_eq!(exporter.exported(), 2000);
    }
}
