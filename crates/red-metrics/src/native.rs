//! Native (sparse, exponential-bucket) histograms, as Prometheus defines
//! them: bucket `k` of schema `s` holds the values in
//! `(2^((k-1)·2^-s), 2^(k·2^-s)]`, values no further from zero than the
//! zero threshold go to the zero bucket, and a histogram that would hold
//! more populated buckets than its limit halves its resolution (schema − 1,
//! two buckets merged into one) as Prometheus' own clients do.
//!
//! Recording takes a shared lock (an uncontended atomic) and increments
//! atomics in a dense window of buckets; only a bucket outside the window
//! and a halving take the lock exclusively, and both are rare once the
//! latencies have been seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::exemplar::{Exemplar, ExemplarSlot};

/// The finest schema Prometheus accepts (each power of two in 256 buckets).
pub(crate) const MAX_SCHEMA: i8 = 8;
/// The coarsest schema Prometheus accepts (each bucket 65,536 times as
/// wide as the one before it).
pub(crate) const MIN_SCHEMA: i8 = -4;

/// How many exemplars a native histogram keeps (Prometheus' clients keep
/// ten by default; one slot per eighth of the buckets spreads them over
/// the latencies).
const EXEMPLAR_SLOTS: usize = 8;

/// How a native histogram is kept: its resolution, its zero bucket and its
/// most buckets.
///
/// ```
/// use looptel_red_metrics::NativeHistograms;
///
/// let native = NativeHistograms::default().bucket_factor(1.05).max_buckets(100);
/// assert_eq!(native.schema(), 4); // each bucket 2^(1/16) ≈ 1.044 times the last
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NativeHistograms {
    schema: i8,
    zero_threshold: f64,
    max_buckets: u32,
}

impl Default for NativeHistograms {
    /// Factor 1.1 (schema 3: eight buckets per power of two, a relative
    /// error of at most 4.4 %), zero threshold 2⁻¹²⁸, at most 160 buckets
    /// (OpenTelemetry's default size) — Prometheus' client defaults where
    /// it has them.
    fn default() -> Self {
        Self {
            schema: 3,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            max_buckets: 160,
        }
    }
}

/// 2⁻¹²⁸, the zero threshold Prometheus' Go client uses by default.
pub(crate) const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

impl NativeHistograms {
    /// The finest resolution whose buckets grow by at most `factor` each
    /// (the largest schema `s` in −4..=8 with `2^(2^-s) ≤ factor`), as
    /// Prometheus' clients choose it from their bucket factor. A factor of
    /// 1 or less (or NaN) keeps the current schema.
    #[must_use]
    pub fn bucket_factor(mut self, factor: f64) -> Self {
        if factor > 1.0 {
            let floor = factor.log2().log2().floor();
            self.schema = if floor <= -8.0 {
                MAX_SCHEMA
            } else if floor >= 4.0 {
                MIN_SCHEMA
            } else {
                -(floor as i8)
            };
        }
        self
    }

    /// Values no further from zero than `threshold` are counted in the
    /// zero bucket (a negative or NaN threshold is taken as 0).
    #[must_use]
    pub fn zero_threshold(mut self, threshold: f64) -> Self {
        self.zero_threshold = if threshold > 0.0 { threshold } else { 0.0 };
        self
    }

    /// At most this many populated buckets (at least 1): one more halves
    /// the resolution. 0 is taken as 1.
    #[must_use]
    pub fn max_buckets(mut self, max: u32) -> Self {
        self.max_buckets = max.max(1);
        self
    }

    /// The schema a histogram starts with.
    pub fn schema(&self) -> i8 {
        self.schema
    }

    /// The zero bucket's width.
    pub fn zero_width(&self) -> f64 {
        self.zero_threshold
    }

    /// The most populated buckets.
    pub fn bucket_limit(&self) -> u32 {
        self.max_buckets
    }
}

/// Which buckets a registry's histograms keep.
///
/// ```
/// use looptel_red_metrics::{Histograms, NativeHistograms};
///
/// assert_eq!("classic+native".parse(), Ok(Histograms::ClassicAndNative(NativeHistograms::default())));
/// assert!("sparse".parse::<Histograms>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Histograms {
    /// Fixed buckets (`le`), one series per bucket: what every scraper
    /// reads.
    #[default]
    Classic,
    /// Native buckets only, one series per label set: served to scrapers
    /// that ask for Prometheus' protobuf format, pushed as OTLP
    /// exponential histograms; a text scrape gets `_count`, `_sum` and
    /// the `+Inf` bucket.
    Native(NativeHistograms),
    /// Both, Prometheus' migration mode: the classic buckets in every
    /// format, the native ones beside them in protobuf.
    ClassicAndNative(NativeHistograms),
}

impl Histograms {
    /// The native settings, when native buckets are kept.
    pub fn native(&self) -> Option<NativeHistograms> {
        match self {
            Self::Classic => None,
            Self::Native(n) | Self::ClassicAndNative(n) => Some(*n),
        }
    }

    /// Whether the classic buckets are kept.
    pub fn classic(&self) -> bool {
        !matches!(self, Self::Native(_))
    }
}

/// A value of `LOOPTEL_METRICS_HISTOGRAMS` that is none of `classic`,
/// `native`, `classic+native`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownHistograms(pub String);

impl std::fmt::Display for UnknownHistograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown histograms {:?}: expected classic, native or classic+native",
            self.0
        )
    }
}

impl std::error::Error for UnknownHistograms {}

impl std::str::FromStr for Histograms {
    type Err = UnknownHistograms;

    /// `classic`, `native` or `classic+native` (any case; native ones with
    /// the default settings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classic" => Ok(Self::Classic),
            "native" => Ok(Self::Native(NativeHistograms::default())),
            "classic+native" | "native+classic" => {
                Ok(Self::ClassicAndNative(NativeHistograms::default()))
            }
            _ => Err(UnknownHistograms(s.to_owned())),
        }
    }
}

/// The boundaries of the fraction `f` in `[0.5, 1)` of `v = f·2^e`, for
/// schemas 1..=8: `2^(j·2^-s − 1)` for `j` in `0..2^s`.
fn bounds(schema: i8) -> &'static [f64] {
    static TABLES: [OnceLock<Box<[f64]>>; 8] = [const { OnceLock::new() }; 8];
    let s = schema.clamp(1, MAX_SCHEMA);
    TABLES[(s - 1) as usize].get_or_init(|| {
        let n = 1_u32 << s;
        (0..n)
            .map(|j| (f64::from(j) / f64::from(n) - 1.0).exp2())
            .collect()
    })
}

/// `v`'s fraction in `[0.5, 1)` and exponent (`v = f·2^e`); `v` finite
/// and above 0.
fn frexp(v: f64) -> (f64, i32) {
    let bits = v.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale into the normal range first.
        let (f, e) = frexp(v * f64::from_bits(0x4350_0000_0000_0000)); // 2^54
        return (f, e - 54);
    }
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp - 1022)
}

/// The bucket `|v|` falls in at `schema` (`v` finite, `|v|` above 0).
pub(crate) fn key(v: f64, schema: i8) -> i32 {
    let (frac, exp) = frexp(v.abs());
    if schema > 0 {
        let bounds = bounds(schema);
        let j = bounds.partition_point(|b| *b < frac) as i32;
        j + (exp - 1) * bounds.len() as i32
    } else {
        let key = if frac == 0.5 { exp - 1 } else { exp };
        let shift = -schema;
        (key + (1 << shift) - 1) >> shift
    }
}

/// The upper bound of bucket `k` at `schema`.
#[cfg(test)]
fn upper_bound(k: i32, schema: i8) -> f64 {
    (f64::from(k) * (-f64::from(schema)).exp2()).exp2()
}

/// A run of buckets in the dense window: the first bucket's key and the
/// counts, one per bucket.
#[derive(Debug, Default)]
struct Window {
    first: i32,
    counts: Box<[AtomicU64]>,
}

impl Window {
    fn slot(&self, k: i32) -> Option<&AtomicU64> {
        let i = usize::try_from(i64::from(k) - i64::from(self.first)).ok()?;
        self.counts.get(i)
    }

    /// A window covering the current one and `k`, with a few spare
    /// buckets on the side it grew to.
    fn grown(&self, k: i32) -> Self {
        const SPARE: i32 = 4;
        let (first, end) = if self.counts.is_empty() {
            (k - SPARE, k + SPARE + 1)
        } else {
            let end = self.first + self.counts.len() as i32;
            (
                if k < self.first {
                    k - SPARE
                } else {
                    self.first
                },
                if k >= end { k + SPARE + 1 } else { end },
            )
        };
        let counts: Box<[AtomicU64]> = (first..end).map(|_| AtomicU64::new(0)).collect();
        for (i, c) in self.counts.iter().enumerate() {
            counts[(self.first - first) as usize + i]
                .store(c.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Self { first, counts }
    }

    /// How many buckets the window would span with `k` in it.
    fn span_with(&self, k: i32) -> usize {
        if self.counts.is_empty() {
            return 1;
        }
        let end = i64::from(self.first) + self.counts.len() as i64;
        let (lo, hi) = (
            i64::from(self.first).min(i64::from(k)),
            end.max(i64::from(k) + 1),
        );
        usize::try_from(hi - lo).unwrap_or(usize::MAX)
    }

    /// The same counts at half the resolution: buckets `2j−1` and `2j`
    /// become bucket `j`.
    fn halved(&self) -> Self {
        if self.counts.is_empty() {
            return Self::default();
        }
        let half = |k: i32| (k + 1) >> 1;
        let first = half(self.first);
        let last = half(self.first + self.counts.len() as i32 - 1);
        let counts: Box<[AtomicU64]> = (first..=last).map(|_| AtomicU64::new(0)).collect();
        for (i, c) in self.counts.iter().enumerate() {
            let k = self.first + i as i32;
            counts[(half(k) - first) as usize]
                .fetch_add(c.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Self { first, counts }
    }

    fn populated(&self) -> usize {
        self.counts
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// The populated runs as (key, counts) with gaps of one or two empty
    /// buckets kept inside a run (cheaper to send than a new span, as
    /// Prometheus' clients do).
    fn spans(&self) -> Vec<(i32, Vec<u64>)> {
        let mut spans: Vec<(i32, Vec<u64>)> = Vec::new();
        let mut gap = 0;
        for (i, c) in self.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            let k = self.first + i as i32;
            if n == 0 {
                gap += 1;
                continue;
            }
            match spans.last_mut() {
                Some((start, counts)) if gap <= 2 && *start + counts.len() as i32 + gap == k => {
                    counts.extend(std::iter::repeat_n(0, gap as usize));
                    counts.push(n);
                }
                _ => spans.push((k, vec![n])),
            }
            gap = 0;
        }
        spans
    }
}

#[derive(Debug)]
struct Buckets {
    schema: i8,
    positive: Window,
    negative: Window,
}

/// A native histogram's buckets (its sum and count are the histogram's).
#[derive(Debug)]
pub(crate) struct Native {
    config: NativeHistograms,
    buckets: RwLock<Buckets>,
    /// How many buckets hold at least one observation.
    populated: AtomicU64,
    /// Above this many populated buckets, the resolution halves: the
    /// limit, or what the coarsest schema could not bring under it (so
    /// that only a further bucket tries again, not every observation).
    reduce_above: AtomicU64,
    zero: AtomicU64,
    exemplars: [ExemplarSlot; EXEMPLAR_SLOTS],
}

/// A native histogram's counts at one instant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NativeSnapshot {
    pub(crate) schema: i8,
    pub(crate) zero_threshold: f64,
    pub(crate) zero_count: u64,
    /// Populated runs, lowest key first: (first key, counts).
    pub(crate) positive: Vec<(i32, Vec<u64>)>,
    pub(crate) negative: Vec<(i32, Vec<u64>)>,
    pub(crate) exemplars: Vec<Exemplar>,
}

impl NativeSnapshot {
    /// The observations in the buckets (NaN is in none).
    pub(crate) fn count(&self) -> u64 {
        let runs = |r: &[(i32, Vec<u64>)]| r.iter().flat_map(|(_, c)| c).sum::<u64>();
        self.zero_count + runs(&self.positive) + runs(&self.negative)
    }
}

impl Native {
    pub(crate) fn new(config: NativeHistograms) -> Self {
        Self {
            config,
            buckets: RwLock::new(Buckets {
                schema: config.schema,
                positive: Window::default(),
                negative: Window::default(),
            }),
            populated: AtomicU64::new(0),
            reduce_above: AtomicU64::new(u64::from(config.max_buckets)),
            zero: AtomicU64::new(0),
            exemplars: Default::default(),
        }
    }

    /// Counts `v` (NaN is not counted in any bucket); `exemplar` is kept
    /// in the slot of its bucket.
    pub(crate) fn observe(&self, v: f64, exemplar: Option<&Exemplar>) {
        if v.is_nan() {
            return;
        }
        if v.abs() <= self.config.zero_threshold {
            self.zero.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = exemplar {
                self.exemplars[0].store(e);
            }
            return;
        }
        let v = v.clamp(-f64::MAX, f64::MAX);
        let k = {
            let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
            let k = key(v, buckets.schema);
            let window = if v > 0.0 {
                &buckets.positive
            } else {
                &buckets.negative
            };
            match window.slot(k) {
                Some(slot) => {
                    self.count(slot);
                    Some(k)
                }
                None => None,
            }
        };
        let k = match k {
            Some(k) => k,
            None => self.insert(v),
        };
        if self.populated.load(Ordering::Relaxed) > self.reduce_above.load(Ordering::Relaxed) {
            self.reduce();
        }
        if let Some(e) = exemplar {
            self.exemplars[k.rem_euclid(EXEMPLAR_SLOTS as i32) as usize].store(e);
        }
    }

    /// One more observation in `slot`; a bucket's first makes it populated.
    fn count(&self, slot: &AtomicU64) {
        if slot.fetch_add(1, Ordering::Relaxed) == 0 {
            self.populated.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `v` in a bucket outside the window: the window grows.
    fn insert(&self, v: f64) -> i32 {
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        // A value far from the others halves the resolution before the
        // window grows to it: no window wider than the limit is allocated,
        // even for a value near `f64::MAX` at schema 8.
        let mut k = key(v, buckets.schema);
        loop {
            let (window, other) = if v > 0.0 {
                (&buckets.positive, &buckets.negative)
            } else {
                (&buckets.negative, &buckets.positive)
            };
            let wide = window.span_with(k) + other.counts.len() > self.span_limit();
            if !wide || buckets.schema <= MIN_SCHEMA {
                break;
            }
            buckets.schema -= 1;
            buckets.positive = buckets.positive.halved();
            buckets.negative = buckets.negative.halved();
            k = key(v, buckets.schema);
        }
        let window = if v > 0.0 {
            &mut buckets.positive
        } else {
            &mut buckets.negative
        };
        if window.slot(k).is_none() {
            *window = window.grown(k);
        }
        if let Some(slot) = window.slot(k) {
            self.count(slot);
        }
        self.reduce_locked(&mut buckets);
        k
    }

    fn reduce(&self) {
        let mut buckets = self.buckets.write().unwrap_or_else(PoisonError::into_inner);
        self.reduce_locked(&mut buckets);
    }

    /// Halves the resolution until the populated buckets fit the limit and
    /// the windows span at most four times as many buckets (far-apart
    /// values cannot make the window large). At the coarsest schema the
    /// limit is exceeded rather than a count lost (Prometheus' coarsest
    /// buckets cover the whole range of a float in 131).
    /// The widest the windows may be together: four times the bucket
    /// limit (at least 64).
    fn span_limit(&self) -> usize {
        4 * (self.config.max_buckets as usize).max(16)
    }

    fn reduce_locked(&self, buckets: &mut Buckets) {
        let limit = u64::from(self.config.max_buckets);
        let span_limit = self.span_limit();
        loop {
            let populated = (buckets.positive.populated() + buckets.negative.populated()) as u64;
            self.populated.store(populated, Ordering::Relaxed);
            let wide = buckets.positive.counts.len() + buckets.negative.counts.len() > span_limit;
            if populated <= limit && !wide {
                return;
            }
            if buckets.schema <= MIN_SCHEMA {
                self.reduce_above
                    .store(populated.max(limit), Ordering::Relaxed);
                return;
            }
            buckets.schema -= 1;
            buckets.positive = buckets.positive.halved();
            buckets.negative = buckets.negative.halved();
        }
    }

    pub(crate) fn snapshot(&self) -> NativeSnapshot {
        let buckets = self.buckets.read().unwrap_or_else(PoisonError::into_inner);
        NativeSnapshot {
            schema: buckets.schema,
            zero_threshold: self.config.zero_threshold,
            zero_count: self.zero.load(Ordering::Relaxed),
            positive: buckets.positive.spans(),
            negative: buckets.negative.spans(),
            exemplars: self
                .exemplars
                .iter()
                .filter_map(ExemplarSlot::load)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_follows_the_bucket_factor_as_prometheus_clients_pick_it() {
        let schema = |f| NativeHistograms::default().bucket_factor(f).schema();
        assert_eq!(schema(1.1), 3);
        assert_eq!(schema(2.0), 0);
        assert_eq!(schema(1.0001), 8);
        assert_eq!(schema(1_000_000.0), -4);
        assert_eq!(schema(1.5), 1, "2^(1/2) = 1.414 ≤ 1.5 < 2");
        assert_eq!(schema(0.5), 3, "no factor below 1: unchanged");
    }

    #[test]
    fn keys_put_each_value_in_the_bucket_whose_upper_bound_holds_it() {
        for schema in MIN_SCHEMA..=MAX_SCHEMA {
            for v in [
                1e-9, 0.001, 0.0049, 0.1, 0.35, 0.5, 1.0, 1.5, 2.0, 3.0, 7.9, 1e6,
            ] {
                let k = key(v, schema);
                let upper = upper_bound(k, schema);
                let lower = upper_bound(k - 1, schema);
                let eps = upper * 1e-12;
                assert!(
                    v <= upper + eps && v > lower - eps,
                    "schema {schema}: {v} in ({lower}, {upper}] (key {k})"
                );
            }
        }
        // Powers of two are upper bounds: 1 is bucket 0, 2 is 2^s.
        assert_eq!(key(1.0, 3), 0);
        assert_eq!(key(2.0, 3), 8);
        assert_eq!(key(2.0, 0), 1);
        assert_eq!(key(4.0, -1), 1);
        assert_eq!(key(4.1, -1), 2);
        assert_eq!(key(0.25, 0), -2);
        assert_eq!(key(f64::MIN_POSITIVE / 4.0, 0), -1023 - 1);
    }

    #[test]
    fn zero_bucket_negatives_and_nan() {
        let n = Native::new(NativeHistograms::default().zero_threshold(0.001));
        for v in [0.0, 0.0005, -0.001, -0.5, 0.5, f64::NAN] {
            n.observe(v, None);
        }
        let s = n.snapshot();
        assert_eq!(s.zero_count, 3);
        assert_eq!(s.zero_threshold, 0.001);
        assert_eq!(s.positive, vec![(key(0.5, 3), vec![1])]);
        assert_eq!(s.negative, vec![(key(0.5, 3), vec![1])]);
        assert_eq!(s.count(), 5, "NaN is in no bucket");
    }

    #[test]
    fn runs_keep_small_gaps_and_split_on_large_ones() {
        let n = Native::new(NativeHistograms::default().bucket_factor(2.0));
        for v in [1.0, 4.0, 16.0, 1024.0] {
            // keys 0, 2, 4, 10
            n.observe(v, None);
        }
        let s = n.snapshot();
        assert_eq!(s.positive, vec![(0, vec![1, 0, 1, 0, 1]), (10, vec![1])]);
    }

    #[test]
    fn beyond_the_bucket_limit_the_resolution_halves_and_no_count_is_lost() {
        let n = Native::new(NativeHistograms::default().max_buckets(10));
        let values: Vec<f64> = (1..=200).map(|i| f64::from(i) * 0.01).collect();
        for v in &values {
            n.observe(*v, None);
        }
        let s = n.snapshot();
        assert!(s.schema < 3, "schema {}", s.schema);
        let populated: usize = s
            .positive
            .iter()
            .map(|(_, c)| c.iter().filter(|n| **n > 0).count())
            .sum();
        assert!(populated <= 10, "{populated} buckets");
        assert_eq!(s.count(), 200);
        // Every value still lies in the bucket it is counted in.
        let mut k = 0;
        for (first, counts) in &s.positive {
            for (i, c) in counts.iter().enumerate() {
                let key = first + i as i32;
                let inside = values
                    .iter()
                    .filter(|v| {
                        **v > upper_bound(key - 1, s.schema) && **v <= upper_bound(key, s.schema)
                    })
                    .count() as u64;
                assert_eq!(*c, inside, "bucket {key}");
                k += 1;
            }
        }
        assert!(k > 0);
    }

    #[test]
    fn at_the_coarsest_schema_the_limit_gives_way_once_not_per_observation() {
        let n = Native::new(NativeHistograms::default().max_buckets(1));
        for v in [1.0, 1e6, 1.0, 1e6] {
            n.observe(v, None);
        }
        let s = n.snapshot();
        assert_eq!(s.schema, MIN_SCHEMA);
        assert_eq!(s.count(), 4);
        assert_eq!(n.populated.load(Ordering::Relaxed), 2);
        assert_eq!(
            n.reduce_above.load(Ordering::Relaxed),
            2,
            "two buckets tolerated: no halving attempt per observation"
        );
    }

    #[test]
    fn a_far_value_leaves_the_window_within_its_limit_and_every_value_counted() {
        let n = Native::new(NativeHistograms::default().bucket_factor(1.0001));
        n.observe(0.01, None);
        n.observe(f64::MAX, None);
        n.observe(f64::MIN_POSITIVE, None);
        let buckets = n.buckets.read().expect("lock");
        assert!(
            buckets.positive.counts.len() <= n.span_limit(),
            "{} buckets wide at schema {}",
            buckets.positive.counts.len(),
            buckets.schema
        );
        drop(buckets);
        assert_eq!(n.snapshot().count(), 3);
    }

    #[test]
    fn concurrent_observations_growing_the_window_are_all_counted() {
        let n = std::sync::Arc::new(Native::new(NativeHistograms::default().max_buckets(20)));
        let threads: Vec<_> = (0..4_u32)
            .map(|t| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000_u32 {
                        n.observe(f64::from(i % 997 + t) * 1e-4 + 1e-6, None);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = n.snapshot();
        assert_eq!(s.count(), 80_000);
        assert!(
            s.positive
                .iter()
                .map(|(_, c)| c.iter().filter(|n| **n > 0).count())
                .sum::<usize>()
                <= 20
        );
    }
}
