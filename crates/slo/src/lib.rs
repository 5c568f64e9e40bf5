//! SLO specs to Prometheus rules whose behaviour is proven by promtool.
//!
//! A team writes its SLOs in YAML over the metrics looptel emits — HTTP
//! routes, gRPC methods, message processing; availability (the
//! classifier's failures are the errors) or latency (calls slower than a
//! bucket bound) — and gets:
//!
//! - a Prometheus rule file per SLO ([`rule_file`]): the error ratio over every
//!   window as a ratio of rates (never an average of ratios, so a quiet
//!   interval cannot poison a 30-day figure), zero rather than NaN when
//!   there is no traffic; the objective and the remaining 30-day budget;
//!   the four multi-window multi-burn-rate alerts of the conventions
//!   (page 1h/5m × 14.4, page 6h/30m × 6, ticket 1d/2h × 3, ticket 3d/6h
//!   × 1), one rule per window pair, each with `severity`, `slo`,
//!   `service`, `window` and the annotations `summary`, `description`,
//!   `runbook_url`, `owner`, `response_sla`; optionally an alert on
//!   missing traffic;
//! - a `promtool test rules` file per SLO ([`test_file`]) proving that a fast burn
//!   pages within minutes and the page clears within about ten minutes of
//!   the fix, that a slow burn raises only the tickets, that traffic inside
//!   the budget and no traffic never alert, and that a latency SLO fires on
//!   slow calls at its bound under either rendering of `le` (`1` and
//!   Prometheus 3's `1.0`).
//!
//! Specs that cannot work are refused with the field named: a latency
//! threshold that is no bucket bound (on classic buckets), an objective of 100 % (no budget) or
//! one so low that no burn rate can page (below 93.06 %: 14.4 × the budget
//! would exceed every call failing).
//!
//! # Native histograms
//!
//! With `histograms: native` (the service keeps native histograms:
//! `LOOPTEL_METRICS_HISTOGRAMS=native`, and Prometheus stores them), the
//! rules read the histogram itself: calls are `histogram_count` of the
//! summed rates, and a latency SLO's errors are the calls above its bound,
//! `1 − histogram_fraction(0, bound, …)` of them — so the bound can be any
//! duration, not only a bucket edge. Their proof is not a promtool test:
//! the promtool Debian ships (2.42) cannot write a native histogram's
//! series in a test file (the `{{schema:… buckets:[…]}}` notation came
//! later), so no test file is generated for such a spec. Instead the
//! order-service's test suite loads the generated rules into the real
//! Prometheus, with native histograms on, scraping the real service: a
//! 350 ms latency SLO stays quiet while calls take 250 ms, pages once they
//! take 450 ms, and resolves after the fix.
//!
//! Windows can be scaled down for demos and tests (`windows: { scale:
//! 1h=1m }`: the 1h/5m pair becomes 1m/5s); the files say so at the top.
//!
//! # Example
//!
//! ```
//! let spec = looptel_slo::Spec::from_yaml(r#"
//! service: checkout
//! owner: team-payments
//! runbook_url: https://runbooks.example.com/checkout
//! response_sla: { page: 15m, ticket: 1 business day }
//! slos:
//!   - name: checkout-latency
//!     objective: 99
//!     sli:
//!       http: { routes: ["/checkout"], methods: ["POST"] }
//!       latency_under: 500ms
//! "#)?;
//! let rules = looptel_slo::rule_file(&spec, &spec.slos[0])?;
//! assert!(rules.contains("alert: ErrorBudgetBurn1h"));
//! assert!(rules.contains(r#"le=~"0\\.5""#)); // 500 ms: a bucket bound
//! # Ok::<(), looptel_slo::Error>(())
//! ```

mod behaviour;
mod duration;
mod error;
mod rules;
mod spec;

pub use behaviour::test_file;
pub use error::{Error, Invalid};
pub use rules::{
    BUDGET_REMAINING_RECORD, BUDGET_WINDOW, FOR, NO_TRAFFIC_ALERT, OBJECTIVE_RECORD, SliSeries,
    burn_alert, burn_window, error_ratio_expr, error_ratio_record, le_renderings, recorded,
    rule_file, windows,
};
pub use spec::{HistogramKind, ResponseSla, Sli, Slo, Source, Spec};

/// Reads a duration as Prometheus writes it: `5m`, `1h30m`, `500ms`, `30d`
/// (largest unit first); `None` for anything else or zero.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(looptel_slo::parse_duration("1h30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(looptel_slo::parse_duration("30m1h"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    duration::parse(text)
}

/// Writes a duration as Prometheus does (`1h`, `5m`, `1m30s`, `500ms`).
pub fn format_duration(d: std::time::Duration) -> String {
    duration::format(d)
}

/// The rule file of an SLO in the output directory: `{slo}.rules.yaml`.
pub fn rules_file_name(slo: &Slo) -> String {
    format!("{}.rules.yaml", slo.name)
}

/// The promtool test file of an SLO in the output directory:
/// `{slo}.test.yaml`.
pub fn tests_file_name(slo: &Slo) -> String {
    format!("{}.test.yaml", slo.name)
}

/// Reads the spec at `path`.
///
/// # Errors
/// [`Error::Io`] if it cannot be read; see [`Spec::from_yaml`].
pub fn read_spec(path: &std::path::Path) -> Result<Spec, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    Spec::from_yaml(&text)
}

/// The files `looptel-slo generate` writes, as (name, contents): per SLO,
/// its rule file ([`rules_file_name`]) and, with `tests`, its promtool test
/// file ([`tests_file_name`]; not for a spec on native histograms, whose
/// series promtool's test files cannot write). Prometheus loads them all with
/// `rule_files: ["slo/*.rules.yaml"]`.
///
/// # Errors
/// [`Error::Write`] if the YAML cannot be written.
pub fn generate(spec: &Spec, tests: bool) -> Result<Vec<(String, String)>, Error> {
    let mut files = Vec::new();
    for slo in &spec.slos {
        let rules = rules_file_name(slo);
        // promtool's rule tests (Prometheus 2.42's) cannot write a native
        // histogram's series: a native spec's rules are proved against a
        // real Prometheus scraping the service instead.
        if tests && spec.histograms == HistogramKind::Classic {
            files.push((tests_file_name(slo), test_file(spec, slo, &rules)?));
        }
        files.push((rules, rule_file(spec, slo)?));
    }
    files.sort();
    Ok(files)
}
