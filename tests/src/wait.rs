//! Waiting for an event — a span ended, a line logged, a counter moved —
//! never for a length of time: on a loaded 2-core machine a fixed sleep is
//! either too short (a flake) or too long (a slow suite).

use std::time::{Duration, Instant};

/// How long a test waits for an event before it fails, by where the event
/// happens. Generous on purpose: they bound a failing test's time, never a
/// passing one's (which returns at the event).
pub mod budget {
    use std::time::Duration;

    /// Something another task of this process does: a server ending its
    /// span, a queue draining, a counter moving.
    pub const IN_PROCESS: Duration = Duration::from_secs(20);
    /// Something a child process or a real server does: a binary starting,
    /// a scrape, a rule evaluated, a webhook delivered.
    pub const PROCESS: Duration = Duration::from_secs(90);
}

/// Polls `check` (5 ms apart at first, then up to 200 ms) until it answers
/// `Some`, and returns that.
///
/// # Panics
/// After `limit`, naming `what` was awaited.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "waited {limit:?} for {what}, in vain"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
