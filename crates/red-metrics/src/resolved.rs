//! A histogram's series found again without hashing every label.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use looptel_core::TraceIds;

use crate::metric::Metric;
use crate::metrics::Histogram;

/// At most this many keys are remembered (the labels are bounded by
/// construction; this bounds the memory even so). Beyond, series are looked
/// up by their labels.
const MAX_RESOLVED: usize = 4096;

/// The series of one histogram that requests have landed in, found again
/// by a key of small numbers plus the hash of one text label (a route
/// template, an RPC method) instead of by hashing and comparing every label
/// string. The text is compared on every hit: two texts with the same hash
/// never share a series (nested axum routers build a new route string per
/// request, so its address would not do).
#[derive(Debug)]
pub(crate) struct ResolvedSeries<K> {
    metric: Arc<Metric<Histogram>>,
    resolved: RwLock<HashMap<(u64, K), Resolved, rustc_hash::FxBuildHasher>>,
}

#[derive(Debug)]
struct Resolved {
    text: Box<str>,
    series: Arc<Histogram>,
}

impl<K: Copy + Hash + Eq> ResolvedSeries<K> {
    pub(crate) fn new(metric: Arc<Metric<Histogram>>) -> Self {
        Self {
            metric,
            resolved: RwLock::default(),
        }
    }

    /// Records `value` in the series of `text` and `key`; `key` `None`
    /// (rare labels, such as an error named by its type) looks the series
    /// up by `labels`, which give every label value when the series is not
    /// known yet.
    pub(crate) fn observe<'a, const N: usize>(
        &self,
        text: &'a str,
        key: Option<K>,
        labels: impl FnOnce() -> [&'a str; N],
        value: f64,
        ids: Option<TraceIds>,
    ) {
        let key = key.map(|k| {
            let mut h = rustc_hash::FxHasher::default();
            h.write(text.as_bytes());
            (h.finish(), k)
        });
        let mut room = false;
        if let Some(key) = &key {
            let resolved = self.resolved.read().unwrap_or_else(PoisonError::into_inner);
            match resolved.get(key) {
                Some(r) if *r.text == *text => {
                    r.series.observe(value, ids);
                    return;
                }
                Some(_) => {} // another text with the same hash
                None => room = resolved.len() < MAX_RESOLVED,
            }
        }
        let series = self.metric.family().series(&labels());
        series.observe(value, ids);
        // Records over the cap are counted by the family on every lookup, and
        // a full table takes no write lock.
        if let Some(key) = key.filter(|_| room && !self.metric.family().is_overflow(&series)) {
            self.resolved
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_insert_with(|| Resolved {
                    text: text.into(),
                    series,
                });
        }
    }
}
