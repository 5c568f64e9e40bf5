//! Values read at scrape time: the collectors a registry asks for them.

/// A value read at scrape time, with no labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Collected {
    pub(crate) name: &'static str,
    pub(crate) help: &'static str,
    pub(crate) counter: bool,
    pub(crate) value: f64,
}

impl Collected {
    /// A gauge; `name` in Prometheus form.
    pub fn gauge(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            counter: false,
            value,
        }
    }

    /// A counter; `name` in Prometheus form without `_total`.
    pub fn counter(name: &'static str, help: &'static str, value: f64) -> Self {
        Self {
            name,
            help,
            counter: true,
            value,
        }
    }
}

/// Metrics read at scrape time (process and runtime saturation).
pub trait Collector: Send + Sync + std::fmt::Debug {
    /// Pushes the current values.
    fn collect(&self, out: &mut Vec<Collected>);
}

/// Values read by closures at scrape time — counters kept elsewhere (log
/// lines dropped, baggage members denied, exports failed) shown in the
/// registry without a copy.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use looptel_red_metrics::{FnCollector, Format, Registry};
///
/// let dropped = Arc::new(AtomicU64::new(3));
/// let registry = Registry::new();
/// let d = dropped.clone();
/// registry.register_collector(Arc::new(FnCollector::new().counter(
///     "looptel_logs_dropped",
///     "Log lines dropped because the output queue was full.",
///     move || d.load(Ordering::Relaxed) as f64,
/// )));
/// assert!(registry.encode(Format::Prometheus).contains("looptel_logs_dropped_total 3"));
/// ```
#[derive(Default)]
pub struct FnCollector {
    items: Vec<(Collected, Box<dyn Fn() -> f64 + Send + Sync>)>,
}

impl std::fmt::Debug for FnCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|(c, _)| c.name))
            .finish()
    }
}

impl FnCollector {
    /// None yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter `name` (Prometheus form, without `_total`) read from `f`.
    #[must_use]
    pub fn counter(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.items
            .push((Collected::counter(name, help, 0.0), Box::new(f)));
        self
    }

    /// A gauge `name` read from `f`.
    #[must_use]
    pub fn gauge(
        mut self,
        name: &'static str,
        help: &'static str,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Self {
        self.items
            .push((Collected::gauge(name, help, 0.0), Box::new(f)));
        self
    }
}

impl Collector for FnCollector {
    fn collect(&self, out: &mut Vec<Collected>) {
        out.extend(
            self.items
                .iter()
                .map(|(c, f)| Collected { value: f(), ..*c }),
        );
    }
}
