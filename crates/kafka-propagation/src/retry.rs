//! Retries, dead letters and whose fault a failure is: what a consumer
//! does on a bad day, the same for every transport.
//!
//! The rule is on [`Fault`]; the crate's docs show it at work.

use std::future::Future;
use std::time::Duration;

use looptel_core::{ErrorOutcome, Outcome};
use opentelemetry::Context;

/// Whose fault a processing failure is: the message's or the consumer's.
///
/// # The rule
/// A handler returns `Err` only when the message was **not processed**; a
/// message processed with a negative business result (a payment declined)
/// is `Ok`. Every `Err` is a processing failure by the semantic
/// conventions: the `process` span's status is Error with `error.type`, and
/// the message counts as failed in `messaging.client.consumed.messages`
/// and `messaging.process.duration` (so a processing SLO sees it). Whose
/// fault it was decides what happens next, read from the error's
/// [`ErrorOutcome`]:
///
/// | [`ErrorOutcome::outcome`] | [`Fault`] | next |
/// |---|---|---|
/// | [`Outcome::BusinessError`] | [`Fault::Message`]: poison (not JSON, wrong types, unknown version) | dead-lettered at once: another attempt would fail the same way |
/// | [`Outcome::Failure`] (the default) | [`Fault::Consumer`]: a dependency down, a bug, an injected fault | retried with [`Backoff`] up to [`Retry::max_attempts`], then dead-lettered |
///
/// A consumer that is stopping does not wait out a backoff: the message
/// goes back to the broker unacknowledged ([`Settlement::Redeliver`]), and
/// so does one whose dead-letter destination failed — nothing the broker
/// handed over is acknowledged without being processed or dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The message cannot be processed by anyone (poison): no retry.
    Message,
    /// The consumer could not process it now: retried.
    Consumer,
}

impl Fault {
    /// The rule: a business error is the message's fault, a failure the
    /// consumer's.
    pub fn of<E: ErrorOutcome + ?Sized>(error: &E) -> Self {
        match error.outcome() {
            Outcome::BusinessError => Self::Message,
            _ => Self::Consumer,
        }
    }
}

/// Capped exponential backoff with full jitter: the `n`th wait is uniform
/// in `[0, min(cap, base · 2ⁿ)]`, so consumers that failed together do not
/// retry together.
///
/// Hand-written (a dozen lines) rather than `backon`'s, whose jitter adds
/// `[0, delay)` to the delay instead of drawing the whole delay: replicas
/// that failed at the same instant then retry within a factor of two of
/// each other, which full jitter avoids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Waits growing from `base`, never over `cap`.
    pub const fn new(base: Duration, cap: Duration) -> Self {
        Self { base, cap }
    }

    /// The most the `n`th wait (from 0) may be: `min(cap, base · 2ⁿ)`.
    pub fn ceiling(&self, n: u32) -> Duration {
        self.base
            .checked_mul(1_u32.checked_shl(n).unwrap_or(u32::MAX))
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The `n`th wait (from 0): uniform in `[0, ceiling(n)]`.
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

impl Default for Backoff {
    /// 100 ms, capped at 30 s (the conventions' defaults).
    fn default() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(30))
    }
}

/// How a consumer retries a message that failed by its own fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    max_attempts: u32,
    backoff: Backoff,
}

impl Retry {
    /// At most `max_attempts` attempts in all (at least one), waiting
    /// `backoff` between them.
    pub fn new(max_attempts: u32, backoff: Backoff) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            backoff,
        }
    }

    /// One attempt, never retried.
    pub fn never() -> Self {
        Self::new(1, Backoff::default())
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The waits between attempts.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }
}

impl Default for Retry {
    /// 5 attempts, [`Backoff::default`].
    fn default() -> Self {
        Self::new(5, Backoff::default())
    }
}

/// What became of a message; see [`Handled`].
#[derive(Debug)]
pub enum Settlement<T, E> {
    /// Processed: acknowledged (its offset stored).
    Processed(T),
    /// Not processed — poison, or out of attempts — and sent to the
    /// dead-letter destination: acknowledged there, never silently dropped.
    DeadLettered(E),
    /// Not processed and not dead-lettered: left to the broker, which
    /// delivers it again (the consumer stopped during a backoff, or the
    /// dead-letter destination failed).
    Redeliver {
        /// The last attempt's error.
        error: E,
        /// Why it was not dead-lettered.
        reason: Redeliver,
    },
}

/// Why a failed message was left to redelivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redeliver {
    /// The consumer is stopping: the backoff was not waited out.
    Stopping,
    /// Sending it to the dead-letter destination failed (the text says how).
    DeadLetterFailed(String),
}

impl std::fmt::Display for Redeliver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stopping => f.write_str("the consumer is stopping"),
            Self::DeadLetterFailed(e) => write!(f, "dead-lettering failed: {e}"),
        }
    }
}

/// A message's handling: what became of it, after how many attempts, and
/// the context of its `process` span (attach it to log about the message
/// in its trace).
#[derive(Debug)]
pub struct Handled<T, E> {
    /// Processed, dead-lettered or left to redelivery.
    pub settlement: Settlement<T, E>,
    /// Attempts made.
    pub attempts: u32,
    /// Set when acknowledging to the broker failed: the broker delivers
    /// the message again, so handlers must be idempotent.
    pub settle_error: Option<String>,
    pub(crate) context: Context,
}

impl<T, E> Handled<T, E> {
    /// The `process` span's context.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Whether the broker may forget the message (processed or
    /// dead-lettered).
    pub fn is_settled(&self) -> bool {
        !matches!(self.settlement, Settlement::Redeliver { .. })
    }

    /// The error of the last attempt, unless processed.
    pub fn error(&self) -> Option<&E> {
        match &self.settlement {
            Settlement::Processed(_) => None,
            Settlement::DeadLettered(e) | Settlement::Redeliver { error: e, .. } => Some(e),
        }
    }
}

/// How one failed attempt ends the loop, or not.
pub(crate) enum Next<E> {
    Done(E),
    Stopped(E),
}

/// Runs `attempt` until it succeeds, fails by the message's fault, runs
/// out of attempts, or `stop` fires during a backoff; `on_retry` sees each
/// error that is retried, with the attempt's number and the wait.
pub(crate) async fn attempts<T, E, F, Fut>(
    retry: &Retry,
    stop: impl Future<Output = ()>,
    mut attempt: F,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> (Result<T, Next<E>>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: ErrorOutcome,
{
    tokio::pin!(stop);
    let mut n = 1;
    loop {
        let error = match attempt(n).await {
            Ok(v) => return (Ok(v), n),
            Err(e) => e,
        };
        if n >= retry.max_attempts || Fault::of(&error) == Fault::Message {
            return (Err(Next::Done(error)), n);
        }
        let wait = retry.backoff.delay(n - 1);
        on_retry(&error, n, wait);
        tokio::select! {
            biased;
            () = &mut stop => return (Err(Next::Stopped(error)), n),
            () = tokio::time::sleep(wait) => {}
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum E {
        Poison,
        Down,
    }
    impl ErrorOutcome for E {
        fn outcome(&self) -> Outcome {
            match self {
                Self::Poison => Outcome::BusinessError,
                Self::Down => Outcome::Failure,
            }
        }
        fn error_type(&self) -> &'static str {
            "e"
        }
    }

    #[test]
    fn full_jitter_stays_under_a_doubling_capped_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(4), Duration::from_secs(1));
        assert_eq!(b.ceiling(200), Duration::from_secs(1), "no overflow");
        let draws: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(800)));
        // Full jitter: some waits are far below half the ceiling.
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(600)));
    }

    #[tokio::test(start_paused = true)]
    async fn consumer_faults_are_retried_poison_is_not() {
        let retry = Retry::new(4, Backoff::default());
        let mut retried = Vec::new();
        let (r, n) = attempts(
            &retry,
            std::future::pending(),
            |_| async { Err::<(), _>(E::Down) },
            |_, n, _| retried.push(n),
        )
        .await;
        assert!(matches!(r, Err(Next::Done(E::Down))));
        assert_eq!((n, retried), (4, vec![1, 2, 3]));

        let (r, n) = attempts(
            &retry,
            std::future::pending(),
            |_| async { Err::<(), _>(E::Poison) },
            |_, _, _| panic!("poison is not retried"),
        )
        .await;
        assert!(matches!(r, Err(Next::Done(E::Poison))));
        assert_eq!(n, 1);

        let (r, n) = attempts(
            &retry,
            std::future::pending(),
            |n| async move { if n < 3 { Err(E::Down) } else { Ok(n) } },
            |_, _, _| {},
        )
        .await;
        assert_eq!((r.ok(), n), (Some(3), 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_backoff_leaves_the_message() {
        let retry = Retry::new(
            10,
            Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
        );
        let (r, n) = attempts(
            &retry,
            std::future::ready(()),
            |_| async { Err::<(), _>(E::Down) },
            |_, _, _| {},
        )
        .await;
        assert!(matches!(r, Err(Next::Stopped(E::Down))));
        assert_eq!(n, 1);
    }
}
