//! What the service's consumers share: the stop signal and the log lines
//! that say what became of a message that was not processed.

use std::fmt::Display;
use std::time::Duration;

use looptel::messaging::{Backoff, Handled, Settlement};
use tokio::sync::watch;

/// How a client waits between two attempts at reaching its broker (or at
/// handling an event again): 100 ms doubling up to 5 s, fully jittered.
pub(crate) const RECONNECT: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Resolves when `stop` says so (or its sender is gone).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits `wait`, unless `stop` comes first: whether it did.
pub(crate) async fn stopped_within(wait: Duration, stop: &watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = stopped(stop.clone()) => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// Logs, in the message's trace, what became of `what` (`order event`,
/// `payment request`) consumed from `destination` when it was not
/// processed: `{what} dead-lettered` (ERROR, with `dead_letter`), `{what}
/// not settled` (WARN, with why); and a WARN when acknowledging failed.
/// Never the body: the error says why without quoting it.
pub(crate) fn report<T, E: Display>(
    handled: &Handled<T, E>,
    what: &str,
    destination: &str,
    dead_letter: &str,
) {
    let _in_trace = handled.context().clone().attach();
    let attempts = handled.attempts;
    match &handled.settlement {
        Settlement::Processed(_) => {}
        Settlement::DeadLettered(e) => tracing::error!(
            messaging.destination.name = destination,
            error = %e,
            attempts,
            dead_letter,
            "{what} dead-lettered"
        ),
        Settlement::Redeliver { error, reason } => tracing::warn!(
            messaging.destination.name = destination,
            error = %error,
            attempts,
            reason = %reason,
            "{what} not settled"
        ),
    }
    if let Some(e) = &handled.settle_error {
        tracing::warn!(
            messaging.destination.name = destination,
            error = %e,
            "{what} not acknowledged: the broker delivers it again"
        );
    }
}
