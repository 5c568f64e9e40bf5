//! `promtool test rules` files that prove what a spec's alerts do: a fast
//! burn pages within minutes and the page clears soon after the fix, a
//! slow burn raises only the tickets, traffic inside the budget and no
//! traffic never alert, a latency SLO fires on slow traffic at its bound
//! (either rendering of `le`).

use std::collections::BTreeMap;
use std::time::Duration;

use looptel_catalogue::alerts::{BURN_WINDOWS, Severity};
use serde::Serialize;

use crate::duration;
use crate::rules::{self, BUDGET_REMAINING_RECORD, number};
use crate::spec::{Slo, Spec};

/// Calls per (unscaled) minute in every scenario.
const TRAFFIC: f64 = 1000.0;

#[derive(Serialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: String,
    tests: Vec<Test>,
}

#[derive(Serialize)]
struct Test {
    name: String,
    interval: String,
    input_series: Vec<Input>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    alert_rule_test: Vec<AlertTest>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Serialize)]
struct Input {
    series: String,
    values: String,
}

#[derive(Serialize)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Serialize)]
struct ExpAlert {
    exp_labels: BTreeMap<&'static str, String>,
    exp_annotations: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    exp_samples: Vec<ExpSample>,
}

#[derive(Serialize)]
struct ExpSample {
    labels: String,
    value: f64,
}

/// A piecewise counter, per (unscaled) minute: `(minutes, increase per
/// minute)` segments, as promtool's expanding notation.
fn counter(segments: &[(u32, f64)]) -> String {
    let mut value = 0.0;
    let mut parts = vec!["0".to_owned()];
    for &(minutes, per_minute) in segments {
        if minutes == 0 {
            continue;
        }
        let start = value + per_minute;
        parts.push(format!(
            "{}+{}x{}",
            number(start),
            number(per_minute),
            minutes - 1
        ));
        value += per_minute * f64::from(minutes);
    }
    parts.join(" ")
}

struct Ctx<'a> {
    spec: &'a Spec,
    slo: &'a Slo,
}

impl Ctx<'_> {
    /// A time `minutes` (unscaled) into a scenario.
    fn at(&self, minutes: u32) -> String {
        duration::format(
            self.spec
                .scaled(Duration::from_secs(u64::from(minutes) * 60)),
        )
    }

    /// The labels of one concrete series the SLI counts.
    fn labels(&self, extra: &[(&str, String)]) -> String {
        let mut l: Vec<(String, String)> = self
            .spec
            .selector
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // The first value each label counts; any value will do for an
        // empty list (only methods may be one).
        let (_, labels) = rules::source_labels(&self.slo.sli.source);
        l.extend(labels.into_iter().map(|(label, values)| {
            let value = values.first().cloned().unwrap_or_else(|| "GET".into());
            (label, value)
        }));
        l.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let body: Vec<String> = l
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", body.join(","))
    }

    /// Calls (`_count`) and failures (`_count` with `error_type`) per
    /// minute, segment by segment.
    fn availability(&self, calls: &[(u32, f64)], errors: &[(u32, f64)]) -> Vec<Input> {
        let (metric, _) = rules::series(self.spec, self.slo);
        let ok: Vec<(u32, f64)> = calls
            .iter()
            .zip(errors)
            .map(|(c, e)| (c.0, c.1 - e.1))
            .collect();
        vec![
            Input {
                series: format!("{metric}_count{}", self.labels(&[])),
                values: counter(&ok),
            },
            Input {
                series: format!(
                    "{metric}_count{}",
                    self.labels(&[("error_type", "500".into())])
                ),
                values: counter(errors),
            },
        ]
    }

    /// Calls, of which `fast` per minute land in the bound's bucket,
    /// written with `le` as `rendering`.
    fn latency(
        &self,
        bound: f64,
        rendering: &str,
        calls: &[(u32, f64)],
        fast: &[(u32, f64)],
    ) -> Vec<Input> {
        let (metric, _) = rules::series(self.spec, self.slo);
        // A lower bucket too, so the rule must pick the bound's.
        let lower = looptel_catalogue::metrics::DURATION_BUCKETS
            .iter()
            .copied()
            .rfind(|b| *b < bound);
        let mut inputs = vec![
            Input {
                series: format!("{metric}_count{}", self.labels(&[])),
                values: counter(calls),
            },
            Input {
                series: format!(
                    "{metric}_bucket{}",
                    self.labels(&[("le", rendering.to_owned())])
                ),
                values: counter(fast),
            },
            Input {
                series: format!("{metric}_bucket{}", self.labels(&[("le", "+Inf".into())])),
                values: counter(calls),
            },
        ];
        if let Some(lower) = lower {
            inputs.push(Input {
                series: format!(
                    "{metric}_bucket{}",
                    self.labels(&[("le", format!("{lower}"))])
                ),
                values: counter(&[(calls.iter().map(|c| c.0).sum(), 0.0)]),
            });
        }
        inputs
    }

    fn firing(&self, index: usize) -> ExpAlert {
        let w = &BURN_WINDOWS[index];
        ExpAlert {
            exp_labels: rules::burn_labels(self.spec, self.slo, w),
            exp_annotations: rules::burn_annotations(self.spec, self.slo, w),
        }
    }

    /// The alert of window pair `index` at `minutes`: firing or not.
    fn expect(&self, minutes: u32, index: usize, firing: bool) -> AlertTest {
        AlertTest {
            eval_time: self.at(minutes),
            alertname: rules::burn_alert(&BURN_WINDOWS[index]),
            exp_alerts: if firing {
                vec![self.firing(index)]
            } else {
                Vec::new()
            },
        }
    }

    /// No window pair fires at `minutes`.
    fn quiet(&self, minutes: u32) -> Vec<AlertTest> {
        (0..BURN_WINDOWS.len())
            .map(|i| self.expect(minutes, i, false))
            .collect()
    }

    fn recorded(&self, name: &str) -> String {
        rules::recorded(name, self.spec, self.slo)
    }

    fn test(
        &self,
        what: &str,
        inputs: Vec<Input>,
        alerts: Vec<AlertTest>,
        exprs: Vec<ExprTest>,
    ) -> Test {
        Test {
            name: format!("{}: {what}", self.slo.name),
            interval: self.at(1),
            input_series: inputs,
            alert_rule_test: alerts,
            promql_expr_test: exprs,
        }
    }

    /// Minutes of a full outage until the fastest pair's long window holds
    /// more failures than it tolerates, plus its `for` and a scrape or two:
    /// when the page must be firing.
    fn page_after(&self) -> u32 {
        let w = &BURN_WINDOWS[0];
        let long_minutes = w.long.as_secs_f64() / 60.0;
        let breach = (long_minutes * w.burn_rate * self.slo.budget()).ceil();
        let for_minutes = (rules::FOR[0].as_secs() / 60) as f64;
        // Bounded: objectives that could never page are refused.
        (breach + for_minutes + 2.0).min(f64::from(u16::MAX)) as u32
    }

    fn tests(&self) -> Vec<Test> {
        let page = |i: usize| BURN_WINDOWS[i].severity == Severity::Page;
        let mut tests = Vec::new();
        let budget = self.slo.budget();
        let run = 360; // minutes of traffic in each scenario
        // A full outage an hour in, long enough to page (10 minutes at
        // 99.9 %), then fixed.
        let fire = self.page_after();
        let outage = fire.max(8) + 2;
        let fixed = 60 + outage;

        if let Some(bound) = self.slo.sli.latency_under {
            // An hour of fast calls, then every call slower than the bound
            // for as long as an outage, then fast again.
            for rendering in rules::le_renderings(bound) {
                let calls = [(run, TRAFFIC)];
                let fast = [(60, TRAFFIC), (outage, 0.0), (run - fixed, TRAFFIC)];
                let mut alerts = vec![
                    self.expect(55, 0, false),
                    self.expect(60 + fire, 0, true),
                    self.expect(fixed + 10, 0, false),
                ];
                alerts.extend((0..BURN_WINDOWS.len()).map(|i| self.expect(50, i, false)));
                tests.push(self.test(
                    &format!(
                        "calls slower than the bound page within minutes (le=\"{rendering}\")"
                    ),
                    self.latency(bound, &rendering, &calls, &fast),
                    alerts,
                    Vec::new(),
                ));
            }
            // Every call under the bound: never an alert.
            let mut alerts = self.quiet(60);
            alerts.extend(self.quiet(run));
            tests.push(self.test(
                "calls under the bound never alert",
                self.latency(
                    bound,
                    &format!("{bound}"),
                    &[(run, TRAFFIC)],
                    &[(run, TRAFFIC)],
                ),
                alerts,
                Vec::new(),
            ));
        } else {
            let calls = [(60, TRAFFIC), (outage, TRAFFIC), (run - fixed, TRAFFIC)];
            let errors = [(60, 0.0), (outage, TRAFFIC), (run - fixed, 0.0)];
            tests.push(self.test(
                &format!(
                    "a {outage}-minute outage pages within {fire} minutes and the page clears within 10 minutes of the fix"
                ),
                self.availability(&calls, &errors),
                vec![
                    self.expect(55, 0, false),
                    self.expect(60 + fire, 0, true),
                    self.expect(fixed - 1, 0, true),
                    self.expect(fixed + 10, 0, false),
                    // The 6h/30m pair clears once the outage has left its
                    // short window.
                    self.expect(fixed + 40, 1, false),
                ],
                Vec::new(),
            ));
            // A slow burn at 4× the budget: tickets, no page.
            let slow = 4.0 * budget * TRAFFIC;
            let calls = [(run, TRAFFIC)];
            let errors = [(run, slow)];
            let mut alerts = Vec::new();
            for minutes in [90, run] {
                for i in 0..BURN_WINDOWS.len() {
                    alerts.push(self.expect(minutes, i, !page(i)));
                }
            }
            tests.push(self.test(
                "a slow burn (4x) raises the tickets and never pages",
                self.availability(&calls, &errors),
                alerts,
                Vec::new(),
            ));
            // Half the budget: nothing, and budget left.
            let errors = [(run, 0.5 * budget * TRAFFIC)];
            let mut alerts = self.quiet(60);
            alerts.extend(self.quiet(run));
            tests.push(self.test(
                "traffic inside the budget never alerts",
                self.availability(&calls, &errors),
                alerts,
                vec![ExprTest {
                    expr: format!("{} > bool 0", self.recorded(BUDGET_REMAINING_RECORD)),
                    eval_time: self.at(run),
                    exp_samples: vec![ExpSample {
                        // `bool` drops the name, not the labels.
                        labels: self.recorded(""),
                        value: 1.0,
                    }],
                }],
            ));
        }

        // No traffic at all: no alert, and figures of 0 errors and a whole
        // budget, never NaN.
        let mut alerts = self.quiet(60);
        alerts.extend(self.quiet(run));
        if let Some(after) = self.spec.no_traffic_alert {
            let minutes = u32::try_from(after.as_secs() / 60)
                .unwrap_or(u32::MAX)
                .saturating_add(5);
            alerts.push(AlertTest {
                eval_time: self.at(minutes),
                alertname: rules::NO_TRAFFIC_ALERT.to_owned(),
                exp_alerts: vec![ExpAlert {
                    exp_labels: rules::no_traffic_labels(self.spec, self.slo),
                    exp_annotations: rules::no_traffic_annotations(
                        self.spec,
                        self.slo,
                        self.spec.scaled(after),
                    ),
                }],
            });
        }
        let sample = |name: &str, value: f64| ExprTest {
            expr: self.recorded(name),
            eval_time: self.at(60),
            exp_samples: vec![ExpSample {
                labels: self.recorded(name),
                value,
            }],
        };
        tests.push(self.test(
            "no traffic never alerts and leaves the budget whole",
            Vec::new(),
            alerts,
            vec![
                sample(&rules::error_ratio_record(BURN_WINDOWS[0].short), 0.0),
                sample(BUDGET_REMAINING_RECORD, 1.0),
            ],
        ));
        tests
    }
}

/// The `promtool test rules` file for the rules of `slo` at `rule_file`
/// (a path relative to the test file).
///
/// # Errors
/// [`Error::Write`](crate::Error::Write) if the YAML cannot be written.
pub fn test_file(spec: &Spec, slo: &Slo, rule_file: &str) -> Result<String, crate::Error> {
    let tests = Ctx { spec, slo }.tests();
    let file = TestFile {
        rule_files: vec![rule_file.to_owned()],
        evaluation_interval: duration::format(
            spec.scaled(Duration::from_secs(60))
                .max(Duration::from_millis(1)),
        ),
        tests,
    };
    let body = yaml_serde::to_string(&file).map_err(|e| crate::Error::Write(e.to_string()))?;
    Ok(format!(
        "{}{body}",
        rules::header(spec, "promtool behaviour tests")
    ))
}
