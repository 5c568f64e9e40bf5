//! Gathering the evidence of a firing alert: the SLI's raw series →
//! exemplars → traces → log lines; the dependencies' RED before and
//! during; the SLI around the alert. Every source call has the client's
//! timeout; a source that fails is named on the card and the rest goes on.

use std::collections::HashSet;
use std::time::Duration;

use looptel_catalogue::metrics::{
    HTTP_CLIENT_REQUEST_DURATION, Instrument, MESSAGING_CLIENT_OPERATION_DURATION,
    RPC_CLIENT_CALL_DURATION,
};
use looptel_catalogue::prometheus::label_name;
use looptel_slo::{SliSeries, Slo, Spec};
use opentelemetry_semantic_conventions::attribute as a;
use time::OffsetDateTime;

use crate::incident::{
    Change, Dependency, Evidence, Hypothesis, HypothesisKind, Link, MAX_SPANS, MissingTrace,
    NoTraffic, Red, SliChart, TraceEvidence, Window, Windows,
};
use crate::sources::{Exemplar, Series, SourceError};
use crate::webhook::Alert;
use crate::{Retro, cause};

/// How an SLO's alert is read: the SLO, its series, the window pair.
pub(crate) struct Target<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) slo: &'a Slo,
    pub(crate) series: SliSeries,
    /// The pair's short window, as the spec runs it (scaled).
    pub(crate) short: Duration,
    /// Its long window, likewise.
    pub(crate) long: Duration,
    /// The pair's short window's recorded ratio (`slo:error_ratio:rate5m`).
    pub(crate) short_record: String,
    pub(crate) threshold: f64,
}

fn seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Exemplars best first: from error series, then slowest, then nearest
/// the alert's start; one per trace.
pub(crate) fn rank(
    mut exemplars: Vec<Exemplar>,
    series: &SliSeries,
    at: f64,
) -> Vec<(Exemplar, bool)> {
    let mut ranked: Vec<(Exemplar, bool)> = exemplars
        .drain(..)
        .map(|e| {
            let error = series.is_error(|l| e.series.get(l).map(String::as_str), e.value);
            (e, error)
        })
        .collect();
    ranked.sort_by(|(x, xe), (y, ye)| {
        ye.cmp(xe).then(y.value.total_cmp(&x.value)).then(
            (x.timestamp - at)
                .abs()
                .total_cmp(&(y.timestamp - at).abs()),
        )
    });
    let mut seen = HashSet::new();
    ranked.retain(|(e, _)| seen.insert(e.trace_id.clone()));
    ranked
}

struct Client {
    kind: &'static str,
    instrument: Instrument,
    by: Vec<String>,
}

fn clients() -> Vec<Client> {
    let l = |k: &str| label_name(k);
    vec![
        Client {
            kind: "gRPC",
            instrument: RPC_CLIENT_CALL_DURATION,
            by: vec![l(a::RPC_METHOD), l(a::SERVER_ADDRESS)],
        },
        Client {
            kind: "HTTP",
            instrument: HTTP_CLIENT_REQUEST_DURATION,
            by: vec![l(a::HTTP_REQUEST_METHOD)],
        },
        Client {
            kind: "messaging",
            instrument: MESSAGING_CLIENT_OPERATION_DURATION,
            by: vec![
                l(a::MESSAGING_OPERATION_NAME),
                l(a::MESSAGING_DESTINATION_NAME),
            ],
        },
    ]
}

impl Retro {
    /// The dependencies' RED at `at` over `w`, by their labels.
    async fn red_at(
        &self,
        client: &Client,
        spec: &Spec,
        at: OffsetDateTime,
        w: Duration,
        evidence: &mut Evidence,
    ) -> Vec<(String, Red)> {
        let metric = client.instrument.prometheus_name();
        let by = client.by.join(",");
        let sel = spec.matchers().join(",");
        let err_sel = {
            let mut m = spec.matchers();
            m.push(format!("{}!=\"\"", SliSeries::error_label()));
            m.join(",")
        };
        let w = looptel_slo::format_duration(w.max(Duration::from_secs(1)));
        // On native histograms the series is the histogram itself: its
        // count by `histogram_count`, its p99 without `le`.
        let (rate, errors, p99) = if spec.histograms == looptel_slo::HistogramKind::Native {
            (
                format!("histogram_count(sum by ({by}) (rate({metric}{{{sel}}}[{w}])))"),
                format!("histogram_count(sum by ({by}) (rate({metric}{{{err_sel}}}[{w}])))"),
                format!("histogram_quantile(0.99, sum by ({by}) (rate({metric}{{{sel}}}[{w}])))"),
            )
        } else {
            (
                format!("sum by ({by}) (rate({metric}_count{{{sel}}}[{w}]))"),
                format!("sum by ({by}) (rate({metric}_count{{{err_sel}}}[{w}]))"),
                format!(
                    "histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{w}])))"
                ),
            )
        };
        let key = |s: &Series| {
            client
                .by
                .iter()
                .filter_map(|l| s.labels.get(l).filter(|v| !v.is_empty()).cloned())
                .collect::<Vec<_>>()
                .join(" @ ")
        };
        let value = |s: &Series| s.points.first().map(|p| p.1);
        let mut out: Vec<(String, Red)> = Vec::new();
        match self.metrics.query(&rate, at).await {
            Ok(series) => {
                for s in &series {
                    if let Some(r) = value(s).filter(|r| *r > 0.0) {
                        out.push((
                            key(s),
                            Red {
                                rate: r,
                                ..Red::default()
                            },
                        ));
                    }
                }
            }
            Err(e) => {
                evidence.problems.push(e);
                return out;
            }
        }
        if let Ok(series) = self.metrics.query(&errors, at).await {
            for s in &series {
                if let (Some(v), Some(entry)) =
                    (value(s), out.iter_mut().find(|(k, _)| *k == key(s)))
                {
                    entry.1.error_ratio = (v / entry.1.rate).clamp(0.0, 1.0);
                }
            }
        }
        if let Ok(series) = self.metrics.query(&p99, at).await {
            for s in &series {
                if let (Some(v), Some(entry)) =
                    (value(s), out.iter_mut().find(|(k, _)| *k == key(s)))
                {
                    entry.1.p99_seconds = Some(v);
                }
            }
        }
        out
    }

    /// Everything a card needs about a firing alert.
    pub(crate) async fn gather(&self, target: &Target<'_>, alert: &Alert) -> Evidence {
        let starts_at = alert.starts_at;
        let settings = &self.settings;
        let now = OffsetDateTime::now_utc();
        if alert.name() == looptel_slo::NO_TRAFFIC_ALERT {
            return self.gather_no_traffic(target, starts_at, now).await;
        }
        let from = starts_at - settings.window;
        let to = (starts_at + settings.window).min(now);
        let mut ev = Evidence {
            from: Some(from),
            to: Some(to),
            selector: target.series.buckets(),
            ..Evidence::default()
        };

        // Exemplars → traces.
        let mut tried: Vec<String> = Vec::new();
        match self.metrics.exemplars(&ev.selector, from, to).await {
            Err(e) => ev.problems.push(e),
            Ok(exemplars) => {
                ev.exemplars_seen = exemplars.len();
                let ranked = rank(exemplars, &target.series, seconds(starts_at));
                for (exemplar, error) in ranked.into_iter().take(settings.max_candidates) {
                    if ev.traces.len() >= settings.max_traces {
                        break;
                    }
                    let id = exemplar.trace_id.clone();
                    tried.push(id.clone());
                    let Some(source) = &self.traces else {
                        ev.missing.push(MissingTrace {
                            trace_id: id,
                            reason: "no trace source configured".to_owned(),
                        });
                        continue;
                    };
                    match source.trace(&id).await {
                        Ok(Some(mut trace)) => {
                            let analysis = trace.analyse();
                            trace.spans.truncate(MAX_SPANS);
                            ev.traces.push(TraceEvidence {
                                link: settings.grafana.as_ref().map(|g| g.trace(&id, from, to)),
                                trace_id: id,
                                exemplar,
                                from_error_series: error,
                                analysis,
                                spans: trace.spans,
                            });
                        }
                        Ok(None) => ev.missing.push(MissingTrace {
                            trace_id: id,
                            reason: format!(
                                "not found in {} (not kept by sampling, expired, or not yet flushed)",
                                source.name()
                            ),
                        }),
                        Err(e) => {
                            // A source that is down stays down for this card.
                            ev.missing.push(MissingTrace {
                                trace_id: id,
                                reason: e.to_string(),
                            });
                            ev.problems.push(e);
                            break;
                        }
                    }
                }
            }
        }

        // Log lines of every trace tried: a trace sampling dropped may
        // still have its log lines.
        if let Some(logs) = &self.logs
            && !tried.is_empty()
        {
            match logs.lines(&tried, from, to, settings.max_log_lines).await {
                Ok(lines) => ev.logs = lines,
                Err(e) => ev.problems.push(e),
            }
        }

        // When the burn started, and what to compare it with.
        let windows = self.windows(target, starts_at, now, &mut ev).await;

        // The dependencies, before and during.
        for client in clients() {
            let before = match windows.before {
                Some(b) => {
                    self.red_at(&client, target.spec, b.to, b.length(), &mut ev)
                        .await
                }
                None => Vec::new(),
            };
            let d = windows.during;
            let during = self
                .red_at(&client, target.spec, d.to, d.length(), &mut ev)
                .await;
            let mut names: Vec<&String> = before.iter().chain(&during).map(|(k, _)| k).collect();
            names.sort();
            names.dedup();
            for name in names {
                let find = |v: &[(String, Red)]| v.iter().find(|(k, _)| k == name).map(|(_, r)| *r);
                let (b, d) = (find(&before), find(&during));
                // Without a baseline window, no dependency has one.
                let b = if windows.before.is_some() {
                    Some(b.unwrap_or_default())
                } else {
                    None
                };
                let (moved, summary) = cause::judge(b, d, target.series.latency_under);
                ev.dependencies.push(Dependency {
                    kind: client.kind.to_owned(),
                    name: name.clone(),
                    before: b,
                    during: d,
                    moved,
                    summary,
                });
            }
        }
        ev.dependencies.sort_by_key(|d| !d.moved);

        // What changed, which dependencies were down, which log patterns
        // rose; then the hypotheses.
        ev.changes = self
            .changes(target, windows.burn_started, starts_at, &mut ev.problems)
            .await;
        let down = self.down(target, windows.during, &mut ev.problems).await;
        self.patterns(&windows, &mut ev).await;
        ev.hypotheses = cause::hypotheses(&cause::Facts {
            latency_bound: target.series.latency_under,
            windows: Some(&windows),
            dependencies: &ev.dependencies,
            traces: &ev.traces,
            logs: &ev.logs,
            patterns: &ev.log_patterns,
            changes: &ev.changes,
            down: &down,
            changes_window: settings.changes_window,
        });
        ev.windows = Some(windows);

        // The SLI around the alert.
        let record = looptel_slo::recorded(&target.short_record, target.spec, target.slo);
        let step = ((to - from).as_seconds_f64() / 120.0).max(1.0);
        match self
            .metrics
            .query_range(&record, from, to, Duration::from_secs_f64(step))
            .await
        {
            Ok(series) => {
                ev.sli = Some(SliChart {
                    series: record.clone(),
                    points: series
                        .into_iter()
                        .next()
                        .map(|s| s.points)
                        .unwrap_or_default(),
                    threshold: target.threshold,
                    starts_at: seconds(starts_at),
                    ends_at: None,
                });
            }
            Err(e) => ev.problems.push(e),
        }
        ev.links.push(Link {
            title: format!("{} in Prometheus", target.short_record),
            url: self.metrics.graph_url(&record),
        });
        if let Some(g) = &settings.grafana {
            ev.links.push(Link {
                title: "the SLI's series in Grafana Explore".to_owned(),
                url: g.metrics(&target.series.count(&[]), from, to),
            });
            if !tried.is_empty() {
                ev.links.push(Link {
                    title: "these traces' log lines in Grafana Explore".to_owned(),
                    url: g.logs(&tried, &target.spec.service, from, to),
                });
            }
        }
        ev.problems.dedup();
        ev
    }
}

/// A range query's step over `from`–`to`: about a thousand points, never
/// under a second.
fn step_for(from: OffsetDateTime, to: OffsetDateTime) -> Duration {
    Duration::from_secs_f64(((to - from).as_seconds_f64() / 1000.0).max(1.0))
}

/// An answer, or nothing with the failure noted.
fn or_noted<T: Default>(r: Result<T, SourceError>, problems: &mut Vec<SourceError>) -> T {
    r.unwrap_or_else(|e| {
        problems.push(e);
        T::default()
    })
}

impl Retro {
    /// When the burn started (the SLI's short-window ratio over the
    /// threshold), where the SLI's data starts, and the windows compared.
    async fn windows(
        &self,
        target: &Target<'_>,
        starts_at: OffsetDateTime,
        now: OffsetDateTime,
        ev: &mut Evidence,
    ) -> Windows {
        let s = &self.settings;
        let from = starts_at - target.long - s.baseline - target.short;
        let step = step_for(from, starts_at);
        let record = looptel_slo::recorded(&target.short_record, target.spec, target.slo);
        let ratio = or_noted(
            self.metrics
                .query_range(&record, from, starts_at, step)
                .await,
            &mut ev.problems,
        );
        let points = ratio
            .into_iter()
            .next()
            .map(|s| s.points)
            .unwrap_or_default();
        let burn = cause::burn_start(&points, target.threshold, seconds(starts_at))
            .map_or(starts_at, cause::at);
        // The SLI's own data: the recorded ratio exists as soon as the
        // rules run, the service's series only once it serves.
        let count = format!("count({})", target.series.count(&[]));
        let earliest = or_noted(
            self.metrics
                .query_range(&count, from, starts_at, step)
                .await,
            &mut ev.problems,
        )
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.0))
        .min_by(f64::total_cmp)
        .map(cause::at);
        let end = (starts_at + target.short).min(now).max(burn);
        cause::windows(
            burn,
            earliest,
            target.short,
            s.baseline,
            s.min_baseline,
            end,
        )
    }

    /// What changed in the look-back before the burn: on the service's
    /// metrics and announced to retro.
    async fn changes(
        &self,
        target: &Target<'_>,
        burn: OffsetDateTime,
        to: OffsetDateTime,
        problems: &mut Vec<SourceError>,
    ) -> Vec<Change> {
        use looptel_catalogue::metrics::{CHANGE_KIND, CHANGE_TIME, CHANGE_WHAT};
        let from = burn - self.settings.changes_window;
        let to = to.max(burn);
        let step = step_for(from, to);
        let sel = target.spec.matchers().join(",");
        let info = format!("target_info{{{sel}}}");
        let starts = format!("process_start_time_seconds{{{sel}}}");
        let own = format!(
            "max by ({}, {}) (max_over_time({}{{{sel}}}[{}]))",
            label_name(CHANGE_KIND),
            label_name(CHANGE_WHAT),
            CHANGE_TIME.prometheus_name(),
            looptel_slo::format_duration(step * 1000)
        );
        let info = or_noted(
            self.metrics.query_range(&info, from, to, step).await,
            problems,
        );
        let starts = or_noted(
            self.metrics.query_range(&starts, from, to, step).await,
            problems,
        );
        let own = or_noted(self.metrics.query(&own, to).await, problems);
        let mut out = cause::metric_changes(&info, &starts, &own, from, to, step);
        match self.store.changes(&self.spec.service, from, to, 100).await {
            Ok(announced) => out.extend(announced),
            Err(e) => problems.push(SourceError::new("store", e.to_string())),
        }
        out.sort_by_key(|c| c.at);
        out
    }

    /// The dependencies `looptel_dependency_up` says were down during the
    /// burn, with since when (Unix seconds).
    async fn down(
        &self,
        target: &Target<'_>,
        during: Window,
        problems: &mut Vec<SourceError>,
    ) -> Vec<(String, f64)> {
        let sel = target.spec.matchers().join(",");
        let expr = format!(
            "{}{{{sel}}}",
            looptel_catalogue::metrics::DEPENDENCY_UP.prometheus_name()
        );
        let series = or_noted(
            self.metrics
                .query_range(
                    &expr,
                    during.from,
                    during.to,
                    step_for(during.from, during.to),
                )
                .await,
            problems,
        );
        let label = label_name(looptel_catalogue::metrics::DEPENDENCY);
        let mut out: Vec<(String, f64)> = Vec::new();
        for s in series {
            let Some(first_down) = s.points.iter().find(|p| p.1 == 0.0).map(|p| p.0) else {
                continue;
            };
            let name = s.labels.get(&label).cloned().unwrap_or_default();
            if !name.is_empty() && !out.iter().any(|(n, _)| *n == name) {
                out.push((name, first_down));
            }
        }
        out
    }

    /// WARN and ERROR lines as patterns, during the burn and before it.
    async fn patterns(&self, w: &Windows, ev: &mut Evidence) {
        let Some(logs) = &self.logs else {
            return;
        };
        let max = self.settings.max_pattern_lines;
        let during = match logs.warnings(w.during.from, w.during.to, max).await {
            Ok(lines) => lines,
            Err(e) => {
                ev.problems.push(e);
                return;
            }
        };
        let before = match w.before {
            Some(b) => or_noted(logs.warnings(b.from, b.to, max).await, &mut ev.problems),
            None => Vec::new(),
        };
        let scale = w.before.map_or(0.0, |b| {
            w.during.length().as_secs_f64() / b.length().as_secs_f64().max(1.0)
        });
        ev.log_patterns = cause::patterns(&during, &before, scale, 20);
    }

    /// A card for an alert about missing traffic: which SLI saw no calls,
    /// since when; what was down and what changed.
    async fn gather_no_traffic(
        &self,
        target: &Target<'_>,
        starts_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Evidence {
        let mut ev = Evidence {
            from: Some(starts_at - self.settings.window),
            to: Some(now),
            selector: target.series.buckets(),
            ..Evidence::default()
        };
        let look = self.settings.changes_window.max(target.long);
        let from = starts_at - look;
        let expr = target.series.call_rate(
            &[],
            &looptel_slo::format_duration(target.short.max(Duration::from_secs(1))),
        );
        let series = or_noted(
            self.metrics
                .query_range(&expr, from, now, step_for(from, now))
                .await,
            &mut ev.problems,
        );
        let last_seen = series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.1 > 0.0)
            .map(|p| p.0)
            .max_by(f64::total_cmp)
            .map(cause::at);
        let quiet_since = last_seen.unwrap_or(from);
        let during = Window {
            from: quiet_since,
            to: now,
        };
        ev.changes = self
            .changes(target, quiet_since, starts_at, &mut ev.problems)
            .await;
        let down = self.down(target, during, &mut ev.problems).await;
        let windows = Windows {
            burn_started: quiet_since,
            before: None,
            during,
            min_baseline_seconds: self.settings.min_baseline.as_secs_f64(),
            note: "no traffic: nothing to compare".to_owned(),
        };
        ev.hypotheses = cause::hypotheses(&cause::Facts {
            latency_bound: None,
            windows: Some(&windows),
            dependencies: &[],
            traces: &[],
            logs: &[],
            patterns: &[],
            changes: &ev.changes,
            down: &down,
            changes_window: self.settings.changes_window,
        });
        let rfc = |t: OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        let text = match last_seen {
            Some(t) => format!(
                "{} saw no calls since {} ({} before the alert)",
                target.slo.name,
                rfc(t),
                cause::ago((starts_at - t).as_seconds_f64())
            ),
            None => format!(
                "{} saw no calls in the last {}",
                target.slo.name,
                cause::ago(look.as_secs_f64())
            ),
        };
        ev.hypotheses.push(Hypothesis {
            kind: HypothesisKind::Traffic,
            text,
            score: 0.5,
            why: vec![
                "0.50 the alert itself: the SLI counted no calls (a cause upstream, or a consumer that stopped)".to_owned(),
            ],
        });
        ev.hypotheses.sort_by(|a, b| b.score.total_cmp(&a.score));
        ev.no_traffic = Some(NoTraffic {
            sli: target.series.count(&[]),
            last_seen,
            looked_back_seconds: look.as_secs_f64(),
        });
        ev.windows = Some(windows);
        ev
    }
}

/// Verification's figures: requests and error ratio over `window` at `at`.
pub(crate) async fn recovery(
    retro: &Retro,
    target: &Target<'_>,
    window: Duration,
    at: OffsetDateTime,
) -> Result<(f64, Option<f64>), crate::sources::SourceError> {
    let w = looptel_slo::format_duration(window);
    let requests = target.series.calls(&[], &w);
    let total = retro
        .metrics
        .query(&requests, at)
        .await?
        .first()
        .and_then(|s| s.points.first())
        .map_or(0.0, |p| p.1);
    let ratio = looptel_slo::error_ratio_expr(target.spec, target.slo, window);
    let ratio = retro
        .metrics
        .query(&ratio, at)
        .await?
        .first()
        .and_then(|s| s.points.first())
        .map(|p| p.1);
    Ok((total, ratio))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn exemplar(id: &str, le: &str, error: &str, value: f64, ts: f64) -> Exemplar {
        let mut series = BTreeMap::from([("le".to_owned(), le.to_owned())]);
        if !error.is_empty() {
            series.insert("error_type".to_owned(), error.to_owned());
        }
        Exemplar {
            series,
            trace_id: id.to_owned(),
            span_id: None,
            value,
            timestamp: ts,
        }
    }

    #[test]
    fn errors_first_then_slowest_then_nearest_one_per_trace() {
        let availability = SliSeries {
            metric: "m".to_owned(),
            matchers: vec![],
            latency_under: None,
            native: false,
        };
        let ranked = rank(
            vec![
                exemplar("ok-slow", "5", "", 4.0, 100.0),
                exemplar("err-far", "0.1", "503", 0.05, 10.0),
                exemplar("err-near", "0.1", "503", 0.05, 99.0),
                exemplar("err-near", "0.25", "503", 0.2, 99.0),
            ],
            &availability,
            100.0,
        );
        let ids: Vec<&str> = ranked.iter().map(|(e, _)| e.trace_id.as_str()).collect();
        assert_eq!(ids, ["err-near", "err-far", "ok-slow"]);
        assert!(ranked[0].1 && !ranked[2].1);

        // For a latency SLI the slow buckets are the errors.
        let latency = SliSeries {
            latency_under: Some(0.5),
            ..availability
        };
        let ranked = rank(
            vec![
                exemplar("fast", "0.5", "", 0.4, 100.0),
                exemplar("slow", "+Inf", "", 12.0, 100.0),
                exemplar("slowish", "1", "", 0.7, 100.0),
            ],
            &latency,
            100.0,
        );
        let flags: Vec<(&str, bool)> = ranked
            .iter()
            .map(|(e, x)| (e.trace_id.as_str(), *x))
            .collect();
        assert_eq!(flags, [("slow", true), ("slowish", true), ("fast", false)]);
    }
}
