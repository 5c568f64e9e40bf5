//! Serving the router with the limits a production service needs, which
//! `axum::serve` does not set: a client may hold a connection only while it
//! sends a request's headers in time, and only so many connections at
//! once; the order API takes bodies up to [`MAX_BODY_BYTES`] (set in
//! [`routes`](crate::routes)).
//!
//! Without them, a few hundred clients that open a request and never finish
//! it keep their connections — and the service's memory and file
//! descriptors — for as long as they like.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use looptel::telemetry::Shutdown;
use tokio::net::TcpListener;

/// The largest request body the order API reads (an order is small).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a client may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long a client may take to send a request's headers — including
    /// an idle keep-alive connection waiting for its next request; then
    /// the connection is closed.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog until
    /// one closes.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s to send headers, 1,024 connections.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` begins, then
/// lets the open connections finish (HTTP/1 and HTTP/2 alike); bound that
/// wait with [`Shutdown::drain`].
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: Shutdown) {
    // Handlers become services once, as `axum::serve` does, instead of per
    // request: a route added without state (`/health`, `/metrics`) would
    // otherwise be converted — and the server layer applied to it — on
    // every call (~740 instructions a probe, `scripts/bench.sh`).
    let app = app.with_state(());
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let signalled = shutdown.signalled();
    tokio::pin!(signalled);
    loop {
        let permit = tokio::select! {
            () = &mut signalled => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut signalled => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            // A connection's end (a timeout, a reset) is the client's
            // business, not an error of the service.
            let _ = watcher.watch(conn).await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
