//! The guard that flushes telemetry at shutdown, and the shutdown signal.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use looptel_core::{Instrumentation, Propagator, ServiceInfo};
use looptel_logs::{LogsGuard, LogsHandle};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::ShutdownError;

/// Flushes and shuts down telemetry when dropped, bounded by the shutdown
/// timeout. Keep it alive until the program ends.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    pub(crate) service: ServiceInfo,
    pub(crate) instrumentation: Instrumentation,
    pub(crate) tracer_provider: Option<SdkTracerProvider>,
    pub(crate) meter_provider: Option<SdkMeterProvider>,
    pub(crate) logger_provider: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
    pub(crate) push_config: Option<crate::push::PushConfig>,
    pub(crate) push: Option<crate::push::MetricsPush>,
    pub(crate) logs: Option<LogsGuard>,
    pub(crate) logs_handle: LogsHandle,
    pub(crate) export_stats: crate::ExportStats,
    pub(crate) timeout: Duration,
    pub(crate) watch: Option<DropWatch>,
    pub(crate) histograms: looptel_red_metrics::Histograms,
}

/// How often the drop counters are looked at (the first drops are warned
/// about within this time).
pub const DROP_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two "dropping data" warnings.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// A thread that warns, at most every [`DROP_WARNING_INTERVAL`], when
/// telemetry starts (or goes on) dropping data: spans and log records at a
/// full queue or in failed exports, JSON log lines at a full queue.
#[derive(Debug)]
pub(crate) struct DropWatch {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl DropWatch {
    pub(crate) fn start(stats: crate::ExportStats, logs: LogsHandle) -> Option<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let count = move || {
            (
                stats.dropped_spans() + stats.failed_spans(),
                stats.dropped_logs() + stats.failed_logs(),
                logs.dropped(),
            )
        };
        let thread = std::thread::Builder::new()
            .name("looptel-drops".to_owned())
            .spawn(move || {
                let mut reported = count();
                let mut last: Option<std::time::Instant> = None;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(DROP_CHECK_INTERVAL)
                {
                    let now = count();
                    let quiet = last.is_none_or(|t| t.elapsed() >= DROP_WARNING_INTERVAL);
                    if now != reported && quiet {
                        tracing::warn!(
                            target: "looptel",
                            spans = now.0 - reported.0,
                            log_records = now.1 - reported.1,
                            log_lines = now.2 - reported.2,
                            "telemetry: dropping data (counts since the last warning; a collector down or too slow?)"
                        );
                        reported = now;
                        last = Some(std::time::Instant::now());
                    }
                }
            })
            .ok()?;
        Some(Self { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

impl TelemetryGuard {
    /// Which buckets the metrics registry's histograms keep
    /// ([`TelemetryBuilder::histograms`](crate::TelemetryBuilder::histograms)
    /// or `LOOPTEL_METRICS_HISTOGRAMS`): build the registry with it
    /// ([`Registry::with_histograms`](looptel_red_metrics::Registry::with_histograms)).
    pub fn histograms(&self) -> looptel_red_metrics::Histograms {
        self.histograms
    }

    /// The service identity.
    pub fn service(&self) -> &ServiceInfo {
        &self.service
    }

    /// The propagator to hand to HTTP, gRPC and messaging layers.
    pub fn propagator(&self) -> &Propagator {
        self.instrumentation.propagator()
    }

    /// The tracer and propagator for HTTP, gRPC and messaging layers.
    /// The same as [`Telemetry::instrumentation`](crate::Telemetry::instrumentation)
    /// gave before `init`: one value, built once.
    pub fn instrumentation(&self) -> Instrumentation {
        self.instrumentation.clone()
    }

    /// Counters of log lines not written.
    pub fn logs(&self) -> &LogsHandle {
        &self.logs_handle
    }

    /// Spans and log records dropped or whose export failed, counted by the
    /// built-in pipelines.
    pub fn exports(&self) -> &crate::ExportStats {
        &self.export_stats
    }

    /// Pushes `registry` — looptel's RED metrics, histograms with their
    /// exemplars — over OTLP at `OTEL_METRIC_EXPORT_INTERVAL`, with the
    /// service resource, when metrics export is OTLP (`OTEL_METRICS_EXPORTER=otlp`,
    /// or an OTLP endpoint for traces with no metrics exporter set); a
    /// last push at shutdown. Serving it on `/metrics` as well is fine: the
    /// two read the same values. Returns whether it will be pushed.
    ///
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta` sends
    /// counters and histograms as changes since the last push. Failed
    /// pushes are counted ([`ExportStats::failed_metric_exports`](crate::ExportStats::failed_metric_exports)).
    pub fn push_metrics(&mut self, registry: looptel_red_metrics::Registry) -> bool {
        let Some(config) = self.push_config.clone() else {
            return false;
        };
        if let Some(previous) = self.push.take() {
            previous.stop(self.timeout);
        }
        let (url, interval) = (config.url.clone(), config.interval);
        self.push = crate::push::MetricsPush::start(config, registry, self.export_stats.clone());
        if self.push.is_some() {
            tracing::info!(
                target: "looptel",
                "metrics: looptel's registry pushed as OTLP to {url} every {interval:?}"
            );
        }
        self.push.is_some()
    }

    /// Exports everything finished so far, without shutting down.
    pub fn force_flush(&self) -> Result<(), ShutdownError> {
        let mut errors = Vec::new();
        if let Some(p) = &self.tracer_provider
            && let Err(e) = p.force_flush()
        {
            errors.push(format!("traces: {e}"));
        }
        if let Some(m) = &self.meter_provider
            && let Err(e) = m.force_flush()
        {
            errors.push(format!("metrics: {e}"));
        }
        if let Some(l) = &self.logger_provider
            && let Err(e) = l.force_flush()
        {
            errors.push(format!("logs: {e}"));
        }
        join(errors)
    }

    /// Exports what is pending and shuts down, within the timeout.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), ShutdownError> {
        if let Some(watch) = self.watch.take() {
            watch.stop();
        }
        if let Some(push) = self.push.take() {
            push.stop(self.timeout);
        }
        let mut errors = Vec::new();
        if let Some(p) = self.tracer_provider.take()
            && let Err(e) = p.shutdown_with_timeout(self.timeout)
        {
            errors.push(format!("traces: {e}"));
        }
        if let Some(m) = self.meter_provider.take()
            && let Err(e) = m.shutdown_with_timeout(self.timeout)
        {
            errors.push(format!("metrics: {e}"));
        }
        // Last, so that shutdown problems above are still logged.
        for e in &errors {
            tracing::warn!(target: "looptel", "shutdown: {e}");
        }
        let lost = self.export_stats.undelivered();
        if lost.spans > 0 {
            tracing::warn!(
                target: "looptel",
                lost = lost.spans,
                dropped_at_full_queue = self.export_stats.dropped_spans(),
                in_failed_exports = self.export_stats.failed_spans(),
                unflushed_at_shutdown = self.export_stats.pending_spans(),
                "telemetry: spans not delivered"
            );
        }
        if lost.log_records > 0 {
            tracing::warn!(
                target: "looptel",
                lost = lost.log_records,
                dropped_at_full_queue = self.export_stats.dropped_logs(),
                in_failed_exports = self.export_stats.failed_logs(),
                unflushed_at_shutdown = self.export_stats.pending_logs(),
                "telemetry: log records not delivered"
            );
        }
        if let Some(l) = self.logger_provider.take()
            && let Err(e) = l.shutdown_with_timeout(self.timeout)
        {
            errors.push(format!("logs: {e}"));
        }
        drop(self.logs.take());
        join(errors)
    }
}

fn join(errors: Vec<String>) -> Result<(), ShutdownError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ShutdownError::new(errors.join("; ")))
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT), for `with_graceful_shutdown`.
///
/// When it resolves, stop accepting work and let the [`TelemetryGuard`] drop:
/// spans ended before then are exported, not lost.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(target: "looptel", "received Ctrl-C, shutting down"),
        () = term => tracing::info!(target: "looptel", "received SIGTERM, shutting down"),
    }
}

/// The process's shutdown, shared by a server's graceful shutdown and the
/// deadline its drain must meet: a client that never finishes its request
/// cannot keep the process up, and the telemetry flush after the drain
/// always runs — before an orchestrator's SIGKILL, not after.
///
/// ```no_run
/// use std::time::Duration;
/// use looptel_telemetry::{Drained, Shutdown};
///
/// # async fn run(listener: tokio::net::TcpListener, app: axum::Router) -> std::io::Result<()> {
/// let shutdown = Shutdown::on_signal(); // SIGTERM or Ctrl-C
/// let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.signalled());
/// match shutdown.drain(server, Duration::from_secs(10)).await {
///     Drained::Finished(served) => served?,
///     Drained::TimedOut => {} // the connections still open were cut
/// }
/// // …then flush telemetry.
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: tokio::sync::watch::Receiver<bool>,
}

/// How a drain ended.
#[derive(Debug)]
#[must_use]
pub enum Drained<T> {
    /// The server finished on its own: its output.
    Finished(T),
    /// The deadline passed first; the server (and its connections) were
    /// dropped.
    TimedOut,
}

impl Shutdown {
    /// Shutdown begins on SIGTERM or Ctrl-C ([`shutdown_signal`]). Call it
    /// inside a Tokio runtime, once, early: the signal is listened for from
    /// then on.
    pub fn on_signal() -> Self {
        Self::on(shutdown_signal())
    }

    /// Shutdown begins when `signal` resolves (a test's trigger, say).
    pub fn on(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Self { rx }
    }

    /// Resolves once shutdown has begun: for `with_graceful_shutdown`.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            if rx.wait_for(|begun| *begun).await.is_err() {
                // The signal's task is gone (the runtime is stopping).
                std::future::pending::<()>().await;
            }
        }
    }

    /// Runs `server` until it finishes, or until `deadline` has passed
    /// since shutdown began; then it is dropped, cutting the connections
    /// still open, and a warning says so.
    pub async fn drain<F: IntoFuture>(&self, server: F, deadline: Duration) -> Drained<F::Output> {
        let expired = async {
            self.signalled().await;
            tokio::time::sleep(deadline).await;
        };
        let drained = tokio::select! {
            out = server.into_future() => Drained::Finished(out),
            () = expired => Drained::TimedOut,
        };
        if matches!(drained, Drained::TimedOut) {
            let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(
                target: "looptel",
                drain_deadline_ms = ms,
                "drain deadline passed: connections still open were cut"
            );
        }
        drained
    }
}

#[cfg(test)]
mod drain_tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_never_finishes_is_cut_at_the_deadline() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = Shutdown::on(async {
            let _ = rx.await;
        });
        let stuck = std::future::pending::<u8>();
        let drain = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.drain(stuck, Duration::from_millis(50)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!drain.is_finished(), "no deadline before the signal");
        let _ = tx.send(());
        assert!(matches!(drain.await.expect("joined"), Drained::TimedOut));
        // A server that finishes in time is not cut.
        let done = shutdown.drain(async { 7 }, Duration::from_secs(60)).await;
        assert!(matches!(done, Drained::Finished(7)));
    }
}
