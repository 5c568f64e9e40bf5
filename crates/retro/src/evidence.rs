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

use crate::Retro;
use crate::incident::{
    Dependency, Evidence, Link, MAX_SPANS, MissingTrace, Red, SliChart, TraceEvidence,
};
use crate::sources::{Exemplar, Series};

/// How an SLO's alert is read: the SLO, its series, the window pair.
pub(crate) struct Target<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) slo: &'a Slo,
    pub(crate) series: SliSeries,
    /// The pair's short window, as the spec runs it (scaled).
    pub(crate) short: Duration,
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
            let error = series.is_error(|l| e.series.get(l).map(String::as_str));
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

fn fmt_ms(s: Option<f64>) -> String {
    s.map_or("–".to_owned(), |s| format!("{:.0} ms", s * 1e3))
}

fn fmt_pct(r: f64) -> String {
    format!("{:.1} %", r * 100.0)
}

/// Whether a dependency moved, and how, in words.
pub(crate) fn judge(before: Option<Red>, during: Option<Red>) -> (bool, String) {
    let b = before.unwrap_or_default();
    let Some(d) = during else {
        return (false, "no calls during the alert".to_owned());
    };
    let errors_up = d.error_ratio - b.error_ratio >= 0.01;
    let slower = match (b.p99_seconds, d.p99_seconds) {
        (Some(x), Some(y)) => y >= 2.0 * x && y - x >= 0.005,
        _ => false,
    };
    let summary = format!(
        "errors {} → {}, p99 {} → {}, {:.1} → {:.1} calls/s",
        fmt_pct(b.error_ratio),
        fmt_pct(d.error_ratio),
        fmt_ms(b.p99_seconds),
        fmt_ms(d.p99_seconds),
        b.rate,
        d.rate
    );
    (errors_up || slower, summary)
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
        let w = looptel_slo::format_duration(w);
        let rate = format!("sum by ({by}) (rate({metric}_count{{{sel}}}[{w}]))");
        let errors = format!("sum by ({by}) (rate({metric}_count{{{err_sel}}}[{w}]))");
        let p99 = format!(
            "histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[{w}])))"
        );
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
    pub(crate) async fn gather(&self, target: &Target<'_>, starts_at: OffsetDateTime) -> Evidence {
        let settings = &self.settings;
        let now = OffsetDateTime::now_utc();
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

        // The dependencies, before and during.
        let w = target.short.max(Duration::from_secs(1));
        let before_at = starts_at - 2 * w;
        let during_at = (starts_at + w).min(now);
        for client in clients() {
            let before = self
                .red_at(&client, target.spec, before_at, w, &mut ev)
                .await;
            let during = self
                .red_at(&client, target.spec, during_at, w, &mut ev)
                .await;
            let mut names: Vec<&String> = before.iter().chain(&during).map(|(k, _)| k).collect();
            names.sort();
            names.dedup();
            for name in names {
                let find = |v: &[(String, Red)]| v.iter().find(|(k, _)| k == name).map(|(_, r)| *r);
                let (b, d) = (find(&before), find(&during));
                let (moved, summary) = judge(b, d);
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

/// Verification's figures: requests and error ratio over `window` at `at`.
pub(crate) async fn recovery(
    retro: &Retro,
    target: &Target<'_>,
    window: Duration,
    at: OffsetDateTime,
) -> Result<(f64, Option<f64>), crate::sources::SourceError> {
    let w = looptel_slo::format_duration(window);
    let requests = format!("sum(increase({}[{w}]))", target.series.count(&[]));
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

    #[test]
    fn a_dependency_moves_when_errors_rise_or_p99_doubles() {
        let red = |e: f64, p: f64| Red {
            rate: 10.0,
            error_ratio: e,
            p99_seconds: Some(p),
        };
        assert!(
            judge(Some(red(0.0, 0.2)), Some(red(0.0, 2.0))).0,
            "200 ms → 2 s"
        );
        assert!(judge(Some(red(0.0, 0.2)), Some(red(0.3, 0.2))).0);
        assert!(judge(None, Some(red(0.3, 0.2))).0, "new and failing");
        assert!(!judge(Some(red(0.0, 0.2)), Some(red(0.001, 0.25))).0);
        assert!(
            !judge(Some(red(0.0, 0.001)), Some(red(0.0, 0.003))).0,
            "a few ms is noise"
        );
        assert!(!judge(Some(red(0.5, 0.2)), None).0);
        let (_, words) = judge(Some(red(0.0, 0.2)), Some(red(0.3, 2.0)));
        assert_eq!(
            words,
            "errors 0.0 % → 30.0 %, p99 200 ms → 2000 ms, 10.0 → 10.0 calls/s"
        );
    }
}
