//! Series keyed by label values, bounded by a cap with an overflow series.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// The label the overflow series carries, as the OpenTelemetry
/// specification names it.
pub use looptel_catalogue::metrics::OVERFLOW_LABEL;

/// The default most series per metric family.
pub const DEFAULT_MAX_SERIES: usize = 2000;

/// The longest label value a series is made for, in bytes. A longer value
/// is request text, not a name (a route, a tenant): its records go to the
/// overflow series and are counted, so the cap bounds the exposition's
/// bytes as well as its series (2,000 series of 8 KB tenants made a 16 MB
/// scrape).
pub const MAX_LABEL_VALUE_BYTES: usize = 256;

/// One series' label values, in the family's label order.
pub(crate) type LabelValues = Box<[Box<str>]>;

/// The series in the order they were created, and where each label-value
/// hash points into that list.
struct Series<M> {
    list: Vec<(LabelValues, Arc<M>)>,
    /// Positions in `list` by the hash of their values (already a hash:
    /// no second SipHash round on the way in).
    index: HashMap<u64, Vec<usize>, rustc_hash::FxBuildHasher>,
}

impl<M> Series<M> {
    fn find(&self, h: u64, values: &[&str]) -> Option<&Arc<M>> {
        self.index
            .get(&h)?
            .iter()
            .map(|&i| &self.list[i])
            .find(|(k, _)| matches(k, values))
            .map(|(_, m)| m)
    }
}

/// The series of one metric, one per combination of label values, at most
/// `max_series`; observations for further combinations, and for values
/// longer than [`MAX_LABEL_VALUE_BYTES`], go to a single overflow series
/// (`otel_metric_overflow="true"`) and are counted.
pub struct Family<M> {
    pub(crate) labels: &'static [&'static str],
    max_series: usize,
    series: RwLock<Series<M>>,
    len: AtomicU64,
    overflow: OnceLock<Arc<M>>,
    overflowed: AtomicU64,
    make: Box<dyn Fn() -> M + Send + Sync>,
}

impl<M> std::fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("labels", &self.labels)
            .field("max_series", &self.max_series)
            .field("series", &self.series_count())
            .field("overflowed", &self.overflowed())
            .finish_non_exhaustive()
    }
}

/// Label values are short and chosen by the service, not by callers, so a
/// fast non-cryptographic hash is safe here (collisions only cost a compare).
fn hash(values: &[&str]) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

fn matches(stored: &[Box<str>], values: &[&str]) -> bool {
    stored.len() == values.len() && stored.iter().zip(values).all(|(a, b)| **a == **b)
}

impl<M> Family<M> {
    pub(crate) fn new(
        labels: &'static [&'static str],
        max_series: usize,
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Self {
        Self {
            labels,
            max_series,
            series: RwLock::new(Series {
                list: Vec::new(),
                index: HashMap::default(),
            }),
            len: AtomicU64::new(0),
            overflow: OnceLock::new(),
            overflowed: AtomicU64::new(0),
            make: Box::new(make),
        }
    }

    /// Runs `f` on the series for `values` (one per label, in order),
    /// creating it if there is room, else on the overflow series.
    pub fn with<R>(&self, values: &[&str], f: impl FnOnce(&M) -> R) -> R {
        self.with_arc(values, |m| f(m))
    }

    fn with_arc<R>(&self, values: &[&str], f: impl FnOnce(&Arc<M>) -> R) -> R {
        if values.iter().any(|v| v.len() > MAX_LABEL_VALUE_BYTES) {
            return self.overflowing(f);
        }
        let h = hash(values);
        {
            let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = series.find(h, values) {
                return f(m);
            }
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = series.find(h, values) {
            return f(m);
        }
        if series.list.len() >= self.max_series {
            drop(series);
            return self.overflowing(f);
        }
        let m = Arc::new((self.make)());
        let i = series.list.len();
        series
            .list
            .push((values.iter().map(|v| Box::from(*v)).collect(), m.clone()));
        series.index.entry(h).or_default().push(i);
        self.len.fetch_add(1, Ordering::Relaxed);
        drop(series);
        f(&m)
    }

    /// Records on the overflow series, counted.
    fn overflowing<R>(&self, f: impl FnOnce(&Arc<M>) -> R) -> R {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        let m = self.overflow.get_or_init(|| Arc::new((self.make)()));
        f(m)
    }

    /// How many series exist (the overflow series not counted).
    pub fn series_count(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// How many records went to the overflow series.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Calls `f` on every series with its label values, in the order they
    /// were created (a stable exposition without sorting), then on the
    /// overflow series (no values). Recording goes
    /// on meanwhile: the read lock only keeps series from being added.
    pub(crate) fn for_each(&self, mut f: impl FnMut(Option<&[Box<str>]>, &M)) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        for (k, m) in &series.list {
            f(Some(k), m);
        }
        drop(series);
        if let Some(m) = self.overflow.get() {
            f(None, m);
        }
    }

    /// Whether `series` is the overflow series.
    pub(crate) fn is_overflow(&self, series: &Arc<M>) -> bool {
        self.overflow.get().is_some_and(|o| Arc::ptr_eq(o, series))
    }

    /// The series for `values`, for callers that record on one label set
    /// often: keep the handle, skip the lookup.
    pub fn series(&self, values: &[&str]) -> Arc<M> {
        self.with_arc(values, Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counter;

    #[test]
    fn beyond_the_cap_records_go_to_one_overflow_series_and_are_counted() {
        let f: Family<Counter> = Family::new(&["route"], 3, Counter::default);
        for route in ["/a", "/b", "/c", "/d", "/e", "/a"] {
            f.with(&[route], |c| c.add(1, None));
        }
        assert_eq!(f.series_count(), 3);
        assert_eq!(f.overflowed(), 2);
        let mut all = Vec::new();
        f.for_each(|values, c| all.push((values.map(<[Box<str>]>::to_vec), c.get().0)));
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].1, 2, "/a twice");
        assert!(all[3].0.is_none());
        assert_eq!(all[3].1, 2, "/d and /e in the overflow series");
    }

    #[test]
    fn a_value_too_long_to_be_a_name_goes_to_the_overflow_series() {
        let f: Family<Counter> = Family::new(&["tenant"], 10, Counter::default);
        let long = "t".repeat(8 * 1024);
        let edge = "e".repeat(MAX_LABEL_VALUE_BYTES);
        for tenant in [long.as_str(), edge.as_str(), "acme", long.as_str()] {
            f.with(&[tenant], |c| c.add(1, None));
        }
        assert_eq!(f.series_count(), 2, "the edge value and acme");
        assert_eq!(f.overflowed(), 2);
        let mut longest = 0;
        f.for_each(|values, _| {
            longest = longest.max(values.map_or(0, |v| v.iter().map(|s| s.len()).sum()));
        });
        assert_eq!(longest, MAX_LABEL_VALUE_BYTES);
    }
}
