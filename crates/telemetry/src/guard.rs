//! The guard that flushes telemetry at shutdown, and the shutdown signal.

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
    pub(crate) logs: Option<LogsGuard>,
    pub(crate) logs_handle: LogsHandle,
    pub(crate) timeout: Duration,
}

impl TelemetryGuard {
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
        join(errors)
    }

    /// Exports what is pending and shuts down, within the timeout.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), ShutdownError> {
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
        if let Some(logs) = self.logs.take() {
            for e in &errors {
                tracing::warn!(target: "looptel", "shutdown: {e}");
            }
            drop(logs);
        }
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
