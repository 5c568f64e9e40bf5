//! Alert retrospection: from a firing alert to the traces and log lines
//! that explain it, and proof that the fix worked.
//!
//! Alertmanager posts its webhook to `POST /alerts`. For each firing alert
//! of an SLO in the spec, off the request path and with a timeout on every
//! call, the service:
//!
//! 1. rebuilds the raw series of the SLO's SLI from the same spec the rules
//!    came from ([`looptel_slo::SliSeries`]) and reads their exemplars over
//!    the alert's window (10 minutes either side of `startsAt` by default),
//!    preferring exemplars of error series and slow buckets;
//! 2. fetches those traces from a [`TraceSource`] (Tempo, Jaeger, an OTLP
//!    JSON file), reporting those the source has not got and trying the
//!    next; for each: the services, the error spans, the largest self time,
//!    the critical path ([`trace::Analysis`]);
//! 3. reads the log lines of those traces from a [`LogSource`] (Loki, a
//!    file of looptel's JSON lines);
//! 4. compares the RED of the service's dependencies (gRPC, HTTP and
//!    messaging clients) before and during the alert, and says which moved;
//! 5. keeps an incident card ([`Incident`]): JSON, Markdown and an HTML page
//!    with the SLI and the traces drawn as SVG.
//!
//! When the resolved webhook arrives, it checks the SLI over a recovery
//! window: the card says **verified** only if the burn rate is under 1
//! *with traffic flowing* (a minimum request count) — a ratio alert also
//! resolves when traffic stops, and that is no recovery.
//!
//! Deliveries are idempotent per alert fingerprint and start time
//! (Alertmanager retries on 5xx).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_retro::{Retro, Settings, sources::{Http, files, prometheus::Prometheus}};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = looptel_slo::read_spec("slo.yaml".as_ref())?;
//! let http = Http::new(Instrumentation::disabled(Propagator::default()), Duration::from_secs(5));
//! let retro = Retro::builder(spec, Arc::new(Prometheus::new("http://127.0.0.1:9090", http)))
//!     .traces(Arc::new(files::OtlpFile::new("spans.jsonl")))
//!     .logs(Arc::new(files::JsonLogFile::new("service.log")))
//!     .settings(Settings::default())
//!     .build();
//! let app = retro.router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9099").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

pub mod evidence;
pub mod incident;
mod links;
pub mod render;
mod service;
pub mod sources;
pub mod trace;
pub mod webhook;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use looptel_red_metrics::{Counter, Metric, Registry};
use looptel_slo::Spec;
use time::OffsetDateTime;

pub use incident::{Incident, State};
pub use links::Grafana;
pub use service::{MAX_ACTION_CHARS, MAX_WEBHOOK_BYTES};
pub use sources::{LogSource, MetricsSource, TraceSource};

use evidence::Target;
use incident::{Action, Event, SloFacts, Store, Verification, incident_id};
use webhook::{Alert, Notification, Status};

/// How evidence is gathered and recovery checked.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Exemplars are read this long either side of the alert's start.
    pub window: Duration,
    /// At most this many traces on a card.
    pub max_traces: usize,
    /// At most this many exemplars tried to find them.
    pub max_candidates: usize,
    /// At most this many log lines on a card.
    pub max_log_lines: usize,
    /// The whole gathering gives up after this long.
    pub gather_timeout: Duration,
    /// The recovery window; `None`: the fired pair's short window (as the
    /// spec runs it).
    pub recovery_window: Option<Duration>,
    /// Fewer calls than this in the recovery window: no traffic, not
    /// verified.
    pub min_requests: f64,
    /// Waited after the recovery window before checking, so the last
    /// scrape is in.
    pub settle: Duration,
    /// Grafana, for links.
    pub grafana: Option<Grafana>,
    /// Where a person reaches this service (for links in notifications).
    pub public_url: Option<String>,
    /// A summary of each card is posted here once its evidence is in.
    pub notify_url: Option<String>,
    /// At most this many cards are kept; the oldest go first.
    pub max_incidents: usize,
    /// At most this many cards gather evidence at once (a webhook with many
    /// alerts queues the rest).
    pub max_concurrent_gathering: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(600),
            max_traces: 3,
            max_candidates: 20,
            max_log_lines: 100,
            gather_timeout: Duration::from_secs(60),
            recovery_window: None,
            min_requests: 10.0,
            settle: Duration::from_secs(15),
            grafana: None,
            public_url: None,
            notify_url: None,
            max_incidents: 1000,
            max_concurrent_gathering: 4,
        }
    }
}

/// The retrospection service: cheap to clone, one store behind it.
#[derive(Clone, Debug)]
pub struct Retro {
    spec: Arc<Spec>,
    metrics: Arc<dyn MetricsSource>,
    traces: Option<Arc<dyn TraceSource>>,
    logs: Option<Arc<dyn LogSource>>,
    settings: Settings,
    store: Arc<Mutex<Store>>,
    gathering: Arc<tokio::sync::Semaphore>,
    http: Option<sources::Http>,
    counters: Counters,
}

#[derive(Clone, Debug)]
struct Counters {
    registry: Registry,
    source_errors: Arc<Metric<Counter>>,
    alerts: Arc<Metric<Counter>>,
    evicted: Arc<Metric<Counter>>,
}

/// Builds a [`Retro`].
#[derive(Debug)]
pub struct Builder {
    retro: Retro,
}

impl Builder {
    /// Where traces come from.
    pub fn traces(mut self, source: Arc<dyn TraceSource>) -> Self {
        self.retro.traces = Some(source);
        self
    }

    /// Where log lines come from.
    pub fn logs(mut self, source: Arc<dyn LogSource>) -> Self {
        self.retro.logs = Some(source);
        self
    }

    /// How evidence is gathered.
    pub fn settings(mut self, settings: Settings) -> Self {
        self.retro.store = Arc::new(Mutex::new(Store::new(settings.max_incidents)));
        self.retro.gathering = Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_gathering.max(1),
        ));
        self.retro.settings = settings;
        self
    }

    /// The client notifications are posted with (traced; its timeout).
    pub fn http(mut self, http: sources::Http) -> Self {
        self.retro.http = Some(http);
        self
    }

    /// Registers the service's own metrics in `registry` (its RED is the
    /// server layer's, in the same registry).
    pub fn registry(mut self, registry: &Registry) -> Self {
        self.retro.counters = Counters::new(registry);
        self
    }

    /// The service.
    pub fn build(self) -> Retro {
        self.retro
    }
}

impl Counters {
    fn new(registry: &Registry) -> Self {
        Self {
            registry: registry.clone(),
            source_errors: registry.counter(
                "looptel.retro.source.errors",
                "{error}",
                "Calls to an evidence source or the notification webhook that failed, by kind of source.",
                &["source"],
            ),
            evicted: registry.counter(
                "looptel.retro.incidents.evicted",
                "{incident}",
                "Cards dropped, oldest first, to keep at most Settings::max_incidents.",
                &[],
            ),
            alerts: registry.counter(
                "looptel.retro.alerts",
                "{alert}",
                "Alerts received, by status and whether they were new (a retry is not).",
                &["status", "new"],
            ),
        }
    }
}

impl Retro {
    /// A service reading the SLOs of `spec` from `metrics`.
    pub fn builder(spec: Spec, metrics: Arc<dyn MetricsSource>) -> Builder {
        let settings = Settings::default();
        Builder {
            retro: Self {
                spec: Arc::new(spec),
                metrics,
                traces: None,
                logs: None,
                store: Arc::new(Mutex::new(Store::new(settings.max_incidents))),
                gathering: Arc::new(tokio::sync::Semaphore::new(
                    settings.max_concurrent_gathering.max(1),
                )),
                settings,
                http: None,
                counters: Counters::new(&Registry::new()),
            },
        }
    }

    /// The registry of the service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.counters.registry
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.store.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A card.
    pub fn incident(&self, id: &str) -> Option<Incident> {
        self.with_store(|s| s.get(id).cloned())
    }

    /// Every card, newest first.
    pub fn incidents(&self) -> Vec<Incident> {
        self.with_store(|s| s.list().into_iter().cloned().collect())
    }

    fn target(&self, alert: &Alert) -> Result<Target<'_>, String> {
        let name = alert.label(looptel_catalogue::alerts::SLO);
        let slo = self
            .spec
            .slo(name)
            .ok_or_else(|| format!("the alert names no SLO of the spec (slo={name:?})"))?;
        let service = alert.label(looptel_catalogue::alerts::SERVICE);
        if !service.is_empty() && service != self.spec.service {
            return Err(format!(
                "the alert is about service {service:?}, the spec about {:?}",
                self.spec.service
            ));
        }
        let pair = looptel_slo::burn_window(alert.label(looptel_catalogue::alerts::WINDOW))
            .unwrap_or(&looptel_catalogue::alerts::BURN_WINDOWS[0]);
        Ok(Target {
            spec: &self.spec,
            slo,
            series: looptel_slo::SliSeries::of(&self.spec, slo),
            short: self.spec.scaled(pair.short),
            short_record: looptel_slo::error_ratio_record(pair.short),
            threshold: pair.burn_rate * slo.budget(),
        })
    }

    fn facts(&self, alert: &Alert, target: &Target<'_>) -> SloFacts {
        use looptel_catalogue::alerts as l;
        let pair = looptel_slo::burn_window(alert.label(l::WINDOW));
        let or = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_owned()
            } else {
                a.to_owned()
            }
        };
        SloFacts {
            name: target.slo.name.clone(),
            description: target.slo.description.clone(),
            objective_percent: (target.slo.objective * 1e6).round() / 1e4,
            windows: pair.map_or_else(String::new, |w| {
                format!(
                    "{}/{}",
                    looptel_slo::format_duration(self.spec.scaled(w.long)),
                    looptel_slo::format_duration(self.spec.scaled(w.short))
                )
            }),
            burn_rate: pair.map_or(0.0, |w| w.burn_rate),
            budget_spent_percent: pair.map_or(0.0, |w| w.budget_spent_percent),
            threshold: target.threshold,
            severity: alert.label(l::SEVERITY).to_owned(),
            runbook_url: or(alert.annotation(l::RUNBOOK_URL), &self.spec.runbook_url),
            owner: or(alert.annotation(l::OWNER), &self.spec.owner),
            response_sla: or(
                alert.annotation(l::RESPONSE_SLA),
                if alert.label(l::SEVERITY) == "ticket" {
                    &self.spec.response_sla.ticket
                } else {
                    &self.spec.response_sla.page
                },
            ),
            budget_remaining: None,
        }
    }

    /// Takes a webhook: new firing alerts get a card and their evidence is
    /// gathered in the background; resolved ones get their recovery
    /// checked. A retry changes nothing. Returns the cards' ids.
    ///
    /// Must run inside a Tokio runtime.
    pub fn receive(&self, notification: Notification) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        let mut ids = Vec::with_capacity(notification.alerts.len());
        for alert in notification.alerts {
            let id = incident_id(&alert);
            ids.push(id.clone());
            let status = alert.status;
            let (new, verify, evicted) = self.with_store(|store| match store.get_mut(&id) {
                None => {
                    let mut card = Incident {
                        id: id.clone(),
                        state: State::Firing,
                        alert: alert.clone(),
                        slo: None,
                        timeline: vec![
                            Event {
                                at: alert.starts_at,
                                what: format!("{} started firing", alert.name()),
                            },
                            Event {
                                at: now,
                                what: format!("webhook received ({})", status_word(status)),
                            },
                        ],
                        evidence: None,
                        actions: Vec::new(),
                        verification: None,
                    };
                    if let Ok(target) = self.target(&alert) {
                        card.slo = Some(self.facts(&alert, &target));
                    }
                    let resolve = status == Status::Resolved;
                    if resolve {
                        mark_resolved(&mut card, &alert, now);
                    }
                    let evicted = store.insert(card);
                    (true, resolve, evicted)
                }
                Some(card) => {
                    // A retry, or the resolved notification of a card.
                    let resolve = status == Status::Resolved && card.state == State::Firing;
                    if resolve {
                        mark_resolved(card, &alert, now);
                    }
                    (false, resolve, 0)
                }
            });
            if evicted > 0 {
                self.counters.evicted.add(&[], evicted);
            }
            self.counters
                .alerts
                .inc(&[status_word(status), if new { "true" } else { "false" }]);
            // A new card gathers its evidence; a resolution checks recovery.
            let gather = new;
            if gather || verify {
                let this = self.clone();
                let alert = alert.clone();
                tokio::spawn(async move {
                    if gather {
                        // Never closed: a permit always comes.
                        let _permit = this.gathering.acquire().await;
                        this.gather_into(&id, &alert).await;
                    }
                    if verify {
                        this.verify_into(&id, &alert).await;
                    }
                });
            }
        }
        ids
    }

    async fn gather_into(&self, id: &str, alert: &Alert) {
        let target = self.target(alert);
        let evidence = match &target {
            Err(why) => incident::Evidence {
                problems: vec![sources::SourceError::new("spec", why.clone())],
                ..Default::default()
            },
            Ok(target) => {
                match tokio::time::timeout(
                    self.settings.gather_timeout,
                    self.gather(target, alert.starts_at),
                )
                .await
                {
                    Ok(ev) => ev,
                    Err(_) => incident::Evidence {
                        problems: vec![sources::SourceError::new(
                            "retro",
                            format!(
                                "gathering timed out after {}",
                                looptel_slo::format_duration(self.settings.gather_timeout)
                            ),
                        )],
                        ..Default::default()
                    },
                }
            }
        };
        let budget = match &target {
            Ok(target) => {
                let q = looptel_slo::recorded(
                    looptel_slo::BUDGET_REMAINING_RECORD,
                    target.spec,
                    target.slo,
                );
                self.metrics
                    .query(&q, OffsetDateTime::now_utc())
                    .await
                    .ok()
                    .and_then(|s| s.first().and_then(|s| s.points.first()).map(|p| p.1))
            }
            Err(_) => None,
        };
        for p in &evidence.problems {
            let kind = p.source_name.split(' ').next().unwrap_or("unknown");
            self.counters.source_errors.inc(&[kind]);
            tracing::warn!(incident = id, source = %p.source_name, error = %p.message, "evidence source failed");
        }
        let summary = format!(
            "{} traces, {} log lines, {} dependencies moved, {} sources failed",
            evidence.traces.len(),
            evidence.logs.len(),
            evidence.dependencies.iter().filter(|d| d.moved).count(),
            evidence.problems.len()
        );
        tracing::info!(incident = id, %summary, "evidence gathered");
        let card = self.with_store(|s| {
            s.get_mut(id).map(|card| {
                card.timeline.push(Event {
                    at: OffsetDateTime::now_utc(),
                    what: format!("evidence gathered: {summary}"),
                });
                if let Some(slo) = &mut card.slo {
                    slo.budget_remaining = budget;
                }
                let mut evidence = evidence;
                if let (Some(sli), Some(end)) = (&mut evidence.sli, card.alert.ends_at) {
                    sli.ends_at = Some(end.unix_timestamp() as f64);
                }
                card.evidence = Some(evidence);
                card.clone()
            })
        });
        if let Some(card) = card {
            self.notify(&card).await;
        }
    }

    async fn notify(&self, card: &Incident) {
        let (Some(url), Some(http)) = (&self.settings.notify_url, &self.http) else {
            return;
        };
        let link = self
            .settings
            .public_url
            .as_ref()
            .map(|base| format!("{}/incidents/{}", base.trim_end_matches('/'), card.id));
        let body = serde_json::json!({
            "incident": card.id,
            "state": card.state,
            "alert": card.alert.name(),
            "summary": card.alert.annotation(looptel_catalogue::alerts::SUMMARY),
            "text": render::summary(card),
            "url": link,
        });
        if let Err(e) = http.post_json(url, &body).await {
            self.counters.source_errors.inc(&["notify"]);
            tracing::warn!(incident = %card.id, error = %e, "notification failed");
        }
    }

    async fn verify_into(&self, id: &str, alert: &Alert) {
        let Ok(target) = self.target(alert) else {
            self.with_store(|s| {
                if let Some(card) = s.get_mut(id) {
                    card.state = State::NotVerified;
                    card.verification = Some(Verification {
                        verified: false,
                        at: OffsetDateTime::now_utc(),
                        window_seconds: 0.0,
                        requests: 0.0,
                        min_requests: self.settings.min_requests,
                        error_ratio: None,
                        burn_rate: None,
                        reason: "the alert names no SLO of the spec: nothing to verify against"
                            .to_owned(),
                    });
                }
            });
            return;
        };
        let window = self.settings.recovery_window.unwrap_or(target.short);
        let resolved = alert.ends_at.unwrap_or_else(OffsetDateTime::now_utc);
        let check_at = resolved + window + self.settings.settle;
        let wait = (check_at - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
        tokio::time::sleep(wait.unsigned_abs()).await;
        let at = OffsetDateTime::now_utc() - self.settings.settle;
        let budget = target.slo.budget();
        let min = self.settings.min_requests;
        let v = match evidence::recovery(self, &target, window, at).await {
            Err(e) => {
                self.counters.source_errors.inc(&["prometheus"]);
                Verification {
                    verified: false,
                    at,
                    window_seconds: window.as_secs_f64(),
                    requests: 0.0,
                    min_requests: min,
                    error_ratio: None,
                    burn_rate: None,
                    reason: format!("could not check: {e}"),
                }
            }
            Ok((requests, ratio)) => {
                let burn = ratio.map(|r| r / budget);
                let (verified, reason) = if requests < min {
                    (
                        false,
                        format!(
                            "no traffic: {requests:.0} calls in the {} after the alert resolved, at least {min:.0} needed — a ratio alert also resolves when traffic stops",
                            looptel_slo::format_duration(window)
                        ),
                    )
                } else {
                    match burn {
                        Some(b) if b < 1.0 => (
                            true,
                            format!(
                                "recovered: burn rate {b:.2} (under 1) over {requests:.0} calls in the {} after the alert resolved",
                                looptel_slo::format_duration(window)
                            ),
                        ),
                        Some(b) => (
                            false,
                            format!(
                                "still burning: burn rate {b:.2} (1 or more) over {requests:.0} calls in the {} after the alert resolved",
                                looptel_slo::format_duration(window)
                            ),
                        ),
                        None => (false, "the error ratio could not be read".to_owned()),
                    }
                };
                Verification {
                    verified,
                    at,
                    window_seconds: window.as_secs_f64(),
                    requests,
                    min_requests: min,
                    error_ratio: ratio,
                    burn_rate: burn,
                    reason,
                }
            }
        };
        tracing::info!(incident = id, verified = v.verified, reason = %v.reason, "recovery checked");
        // The SLI again, through the recovery: the picture shows the fix.
        let chart = self.with_store(|s| {
            s.get(id)
                .and_then(|c| c.evidence.as_ref())
                .and_then(|e| e.sli.as_ref().map(|sli| (sli.series.clone(), e.from)))
        });
        let mut redrawn = None;
        if let Some((series, Some(from))) = chart {
            let to = OffsetDateTime::now_utc();
            let step = ((to - from).as_seconds_f64() / 120.0).max(1.0);
            if let Ok(s) = self
                .metrics
                .query_range(&series, from, to, Duration::from_secs_f64(step))
                .await
            {
                redrawn = s.into_iter().next().map(|s| s.points);
            }
        }
        self.with_store(|s| {
            if let Some(card) = s.get_mut(id) {
                card.state = if v.verified {
                    State::Verified
                } else {
                    State::NotVerified
                };
                card.timeline.push(Event {
                    at: OffsetDateTime::now_utc(),
                    what: format!(
                        "{}: {}",
                        if v.verified {
                            "verified"
                        } else {
                            "not verified"
                        },
                        v.reason
                    ),
                });
                card.verification = Some(v);
                if let (Some(points), Some(sli)) =
                    (redrawn, card.evidence.as_mut().and_then(|e| e.sli.as_mut()))
                {
                    sli.points = points;
                }
            }
        });
    }

    /// Attaches an improvement item to a card; `None` if there is no such
    /// card.
    pub fn add_action(&self, id: &str, text: String, link: Option<String>) -> Option<Incident> {
        self.with_store(|s| {
            s.get_mut(id).map(|card| {
                let at = OffsetDateTime::now_utc();
                card.timeline.push(Event {
                    at,
                    what: format!("action added: {text}"),
                });
                card.actions.push(Action { at, text, link });
                card.clone()
            })
        })
    }
}

fn mark_resolved(card: &mut Incident, alert: &Alert, now: OffsetDateTime) {
    card.state = State::Resolved;
    card.alert.status = Status::Resolved;
    card.alert.ends_at = alert.ends_at;
    card.timeline.push(Event {
        at: alert.ends_at.unwrap_or(now),
        what: format!("{} resolved", alert.name()),
    });
    if let (Some(ev), Some(end)) = (&mut card.evidence, alert.ends_at)
        && let Some(sli) = &mut ev.sli
    {
        sli.ends_at = Some(end.unix_timestamp() as f64);
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Firing => "firing",
        Status::Resolved => "resolved",
    }
}
