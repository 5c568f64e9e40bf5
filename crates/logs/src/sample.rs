//! Per-callsite log sampling in the manner of zap: the first `first` lines of
//! a callsite in each interval are written, then one in `thereafter`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing_core::callsite::Identifier;

const SLOTS: usize = 4096;

/// Per-callsite sampling of log lines below WARN.
///
/// In each `interval`, a callsite writes its first `first` lines, then every
/// `thereafter`-th (0: none). WARN and ERROR lines are never sampled away.
/// Counting is lock-free: a fixed table of atomic counters indexed by
/// callsite, as zap does, so a hot callsite costs two atomic operations.
///
/// ```
/// use std::time::Duration;
/// use looptel_logs::Sampling;
///
/// let s = Sampling::new(100, 10, Duration::from_secs(1));
/// assert_eq!(s.first(), 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    first: u64,
    thereafter: u64,
    interval: Duration,
}

impl Sampling {
    /// Writes the first `first` lines per callsite per `interval`, then one
    /// in `thereafter` (0 drops the rest).
    pub fn new(first: u64, thereafter: u64, interval: Duration) -> Self {
        Self {
            first,
            thereafter,
            interval,
        }
    }

    /// Lines per callsite and interval always written.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// After `first`, one line in this many is written.
    pub fn thereafter(&self) -> u64 {
        self.thereafter
    }

    /// The interval after which counting starts again.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

impl Default for Sampling {
    /// zap's production default: 100 per second, then 1 in 100.
    fn default() -> Self {
        Self::new(100, 100, Duration::from_secs(1))
    }
}

#[derive(Default)]
struct Slot {
    /// Start of the slot's current interval, in nanoseconds since `epoch`.
    window_start: AtomicU64,
    count: AtomicU64,
}

pub(crate) struct Sampler {
    config: Sampling,
    epoch: Instant,
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    pub(crate) fn new(config: Sampling) -> Self {
        Self {
            config,
            epoch: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }

    /// Whether a line from `callsite` is written now.
    pub(crate) fn keep(&self, callsite: &Identifier) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.keep_at(callsite, now)
    }

    fn slot_index(callsite: &Identifier) -> usize {
        let mut h = DefaultHasher::new();
        callsite.hash(&mut h);
        (h.finish() % SLOTS as u64) as usize
    }

    fn keep_at(&self, callsite: &Identifier, now: u64) -> bool {
        let slot = &self.slots[Self::slot_index(callsite)];
        let interval = u64::try_from(self.config.interval.as_nanos()).unwrap_or(u64::MAX);
        let start = slot.window_start.load(Ordering::Acquire);
        let n = if now.saturating_sub(start) >= interval
            && slot
                .window_start
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.count.store(1, Ordering::Release);
            1
        } else {
            slot.count.fetch_add(1, Ordering::AcqRel) + 1
        };
        if n <= self.config.first {
            return true;
        }
        self.config.thereafter != 0
            && (n - self.config.first).is_multiple_of(self.config.thereafter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_core::{Callsite, Interest, Metadata};

    struct Site(#[allow(dead_code)] u8);
    impl Callsite for Site {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!()
        }
    }
    static A: Site = Site(1);
    static B: Site = Site(2);

    fn id(site: &'static Site) -> Identifier {
        Identifier(site)
    }

    #[test]
    fn first_n_then_one_in_m_per_interval() {
        let s = Sampler::new(Sampling::new(3, 4, Duration::from_secs(1)));
        let kept: Vec<bool> = (0..12).map(|_| s.keep_at(&id(&A), 10)).collect();
        // 1..=3 kept, then the 7th and 11th (every 4th after the first 3).
        assert_eq!(
            kept,
            [
                true, true, true, false, false, false, true, false, false, false, true, false
            ]
        );
        // A new interval starts counting again.
        assert!(s.keep_at(&id(&A), 10 + 1_000_000_000));
        assert!(s.keep_at(&id(&A), 10 + 1_000_000_001));
    }

    #[test]
    fn callsites_are_counted_apart() {
        let s = Sampler::new(Sampling::new(1, 0, Duration::from_secs(60)));
        assert!(s.keep_at(&id(&A), 5));
        assert!(!s.keep_at(&id(&A), 6));
        assert_ne!(Sampler::slot_index(&id(&A)), Sampler::slot_index(&id(&B)));
        assert!(s.keep_at(&id(&B), 7));
        assert!(!s.keep_at(&id(&B), 8));
    }
}
