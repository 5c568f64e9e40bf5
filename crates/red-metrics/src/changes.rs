//! Changes a service makes to itself — a fault switch set, a configuration
//! reloaded, a feature flag flipped — as `looptel_change_time_seconds`, so
//! that what changed just before a burn is on the incident card.
//!
//! ```
//! use looptel_red_metrics::{Changes, Format, Registry};
//!
//! let registry = Registry::new();
//! let changes = Changes::new(&registry);
//! changes.record("feature_flag", "checkout-v2 on");
//! let text = registry.encode(Format::Prometheus);
//! assert!(text.contains(
//!     "looptel_change_time_seconds{change_kind=\"feature_flag\",change_what=\"checkout-v2 on\"}"
//! ));
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use looptel_catalogue::metrics as m;

use crate::metric::Metric;
use crate::metrics::Gauge;
use crate::registry::Registry;

/// Records changes as `looptel_change_time_seconds{change_kind,
/// change_what}`: the time of the last change of each kind and
/// description, Unix seconds. One series per description: keep them few
/// and human (`inventory_error_rate=0.5`), never per request; the series
/// cap of the registry bounds them. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Changes {
    gauge: Arc<Metric<Gauge>>,
}

impl Changes {
    /// Registers `looptel_change_time_seconds` on `registry`.
    pub fn new(registry: &Registry) -> Self {
        Self {
            gauge: registry.instrument_gauge(&m::CHANGE_TIME),
        }
    }

    /// A change of `kind` just made, described by `what`.
    pub fn record(&self, kind: &str, what: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.gauge.with(&[kind, what], |g| g.set(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;

    #[test]
    fn each_change_is_its_time_under_its_kind_and_description() {
        let registry = Registry::new();
        let changes = Changes::new(&registry);
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        changes.record("fault_switch", "inventory_error_rate=0.5");
        changes.record("fault_switch", "none");
        let text = registry.encode(Format::Prometheus);
        let times: Vec<u64> = text
            .lines()
            .filter(|l| l.starts_with("looptel_change_time_seconds{"))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("a time")
            })
            .collect();
        assert_eq!(times.len(), 2, "{text}");
        assert!(times.iter().all(|t| *t >= before && *t <= before + 5));
        assert!(text.contains("change_what=\"inventory_error_rate=0.5\""));
    }
}
