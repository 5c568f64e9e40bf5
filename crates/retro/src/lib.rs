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
//! 4. finds when the burn started (the SLI's short-window ratio crossing
//!    the threshold) and compares the RED of the service's dependencies
//!    (gRPC, HTTP and messaging clients) over the stretch just before it
//!    — as much as there is, down to [`Settings::min_baseline`], else "no
//!    baseline" — with the burn, and says which moved;
//! 5. lists what changed before the burn: new versions and instances on
//!    `target_info`, restarts, changes the service recorded itself
//!    (`looptel_change_time_seconds`), and changes deploy tools announced
//!    (`POST /changes`); groups WARN and ERROR lines into patterns, during
//!    and before;
//! 6. ranks hypotheses — a dependency, a step of the service's own, a
//!    dependency down, a change, no traffic — each a sentence with its
//!    evidence and a score whose terms it lists (how: the `cause` module's
//!    rules, in the card's `why`);
//! 7. keeps an incident card ([`Incident`]) that opens with the most likely
//!    cause: JSON, Markdown and an HTML page with the SLI and the traces
//!    drawn as SVG. An alert about missing traffic gets a card saying which
//!    SLI saw no calls and since when.
//!
//! When the resolved webhook arrives, it checks the SLI over a recovery
//! window: the card says **verified** only if the burn rate is under 1
//! *with traffic flowing* (a minimum request count) — a ratio alert also
//! resolves when traffic stops, and that is no recovery.
//!
//! Each card is written to a [`Store`] — SQLite in a file, or PostgreSQL
//! for several replicas — before the webhook is acknowledged; a store that
//! is down answers 503, and Alertmanager retries. Deliveries are
//! idempotent per alert fingerprint and start time, across replicas too:
//! gathering and verification are claimed in the card's row first, so a
//! notification delivered to two replicas is worked on once, and work whose
//! replica stopped is taken up by [`Retro::sweep`]. Writes can require
//! bearer tokens ([`Tokens`]).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_retro::{Retro, Settings, Store, Token, Tokens};
//! use looptel_retro::sources::{Http, files, prometheus::Prometheus};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = looptel_slo::read_spec("slo.yaml".as_ref())?;
//! let http = Http::new(Instrumentation::disabled(Propagator::default()), Duration::from_secs(5));
//! let store = Store::open("sqlite://retro.db").await?;
//! let prometheus = Arc::new(Prometheus::new("http://127.0.0.1:9090", http));
//! let retro = Retro::builder(spec, prometheus, store)
//!     .traces(Arc::new(files::OtlpFile::new("spans.jsonl")))
//!     .logs(Arc::new(files::JsonLogFile::new("service.log")))
//!     .settings(Settings::default())
//!     .tokens(Tokens {
//!         webhook: Some(Token::new(&std::env::var("RETRO_WEBHOOK_TOKEN")?)?),
//!         ..Tokens::default()
//!     })
//!     .build();
//! // Work a previous run left unfinished, and the retention, every 30 s.
//! let _sweeper = retro.spawn_sweeper();
//! let app = retro.router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9099").await?;
//! axum::serve(listener, app).await?;
//! retro.release().await?; // unfinished work, for the next start
//! # Ok(()) }
//! ```

mod auth;
mod cause;
pub mod evidence;
pub mod incident;
mod links;
pub mod render;
mod service;
pub mod sources;
pub mod store;
pub mod trace;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use looptel_red_metrics::{Counter, Metric, Registry};
use looptel_slo::Spec;
use time::OffsetDateTime;

pub use auth::{Token, TokenError, Tokens};
pub use incident::{Incident, State};
pub use links::Grafana;
pub use service::{
    DEFAULT_LIST_LIMIT, MAX_ACTION_CHARS, MAX_CHANGE_FIELD_CHARS, MAX_LIST_LIMIT, MAX_WEBHOOK_BYTES,
};
pub use sources::{LogSource, MetricsSource, TraceSource};
pub use store::{Store, StoreError};

use evidence::Target;
use incident::{Action, Event, SloFacts, Verification, incident_id};
use store::{Updated, Work, now_ms};
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
    /// Cards first received longer ago than this are deleted (counted in
    /// `looptel_retro_incidents_deleted_total`), and announced changes
    /// made longer ago; no card is ever dropped for room.
    pub retention: Duration,
    /// How often the store is swept: old cards deleted, work whose replica
    /// stopped taken up again.
    pub sweep_interval: Duration,
    /// At most this many cards gather evidence at once (a webhook with many
    /// alerts queues the rest).
    pub max_concurrent_gathering: usize,
    /// At most this many new cards wait for their turn to gather; the
    /// rest wait in the store for a sweep.
    pub max_queued_gathering: usize,
    /// The longest baseline compared with a burn (the stretch just before
    /// it, as long as there is data).
    pub baseline: Duration,
    /// The shortest baseline: with less data than this before the burn,
    /// the card says "no baseline" and names dependencies that fail or are
    /// over the SLO's latency bound.
    pub min_baseline: Duration,
    /// Changes this long before the burn are on the card.
    pub changes_window: Duration,
    /// At most this many WARN and ERROR lines read per window for the log
    /// patterns.
    pub max_pattern_lines: usize,
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
            retention: Duration::from_secs(90 * 86_400),
            sweep_interval: Duration::from_secs(30),
            max_concurrent_gathering: 4,
            max_queued_gathering: 1024,
            baseline: Duration::from_secs(3600),
            min_baseline: Duration::from_secs(120),
            changes_window: Duration::from_secs(3600),
            max_pattern_lines: 5000,
        }
    }
}

/// The retrospection service: cheap to clone, one [`Store`] behind it.
#[derive(Clone, Debug)]
pub struct Retro {
    spec: Arc<Spec>,
    metrics: Arc<dyn MetricsSource>,
    traces: Option<Arc<dyn TraceSource>>,
    logs: Option<Arc<dyn LogSource>>,
    settings: Settings,
    store: Store,
    /// This replica's name in the claims it writes.
    owner: Arc<str>,
    gathering: Arc<tokio::sync::Semaphore>,
    queue: GatherQueue,
    http: Option<sources::Http>,
    tokens: Tokens,
    counters: Counters,
}

/// A card waiting for its evidence: its id and its alert.
type Queued = (String, Alert);

/// Cards waiting for their evidence: bounded, so a flood of alerts costs
/// a slot each (an id and an alert), not a task. A card that finds it full
/// is left unclaimed in the store, and a sweep takes it up.
#[derive(Clone, Debug)]
struct GatherQueue {
    tx: tokio::sync::mpsc::Sender<Queued>,
    /// Taken by the dispatcher when the first card is queued.
    rx: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Queued>>>>,
    /// Cards were left in the store for want of room.
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    /// Wakes the sweeper once the queue has room for them again, instead of
    /// leaving them to the next [`Settings::sweep_interval`].
    backlog: Arc<tokio::sync::Notify>,
}

impl GatherQueue {
    fn new(capacity: usize) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        Self {
            tx,
            rx: Arc::new(std::sync::Mutex::new(Some(rx))),
            overflowed: Arc::default(),
            backlog: Arc::default(),
        }
    }
}

#[derive(Clone, Debug)]
struct Counters {
    registry: Registry,
    source_errors: Arc<Metric<Counter>>,
    alerts: Arc<Metric<Counter>>,
    deleted: Arc<Metric<Counter>>,
    store_errors: Arc<Metric<Counter>>,
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
        self.retro.gathering = Arc::new(tokio::sync::Semaphore::new(
            settings.max_concurrent_gathering.max(1),
        ));
        self.retro.queue = GatherQueue::new(settings.max_queued_gathering);
        self.retro.settings = settings;
        self
    }

    /// The tokens its routes ask for (none by default: every route open,
    /// as suits a service on 127.0.0.1).
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.retro.tokens = tokens;
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
            deleted: registry.counter(
                "looptel.retro.incidents.deleted",
                "{incident}",
                "Cards deleted because they are older than the retention (Settings::retention).",
                &[],
            ),
            store_errors: registry.counter(
                "looptel.retro.store.errors",
                "{error}",
                "Reads and writes of the card store that failed, by operation; a failed webhook write answers 503.",
                &["operation"],
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

/// What one [`Retro::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Cards deleted for being older than the retention.
    pub deleted: u64,
    /// Evidence gatherings taken up (nobody held them, or their claim
    /// lapsed).
    pub gathering: usize,
    /// Recovery checks taken up.
    pub verifying: usize,
}

/// A claim outlives the work it covers by this much, so a slow store write
/// at the end does not let another replica start the same work.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);

/// At most this many cards of each kind of work are taken up per sweep.
const SWEEP_BATCH: u32 = 256;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Retro {
    /// A service reading the SLOs of `spec` from `metrics`, keeping its
    /// cards in `store`.
    pub fn builder(spec: Spec, metrics: Arc<dyn MetricsSource>, store: Store) -> Builder {
        let settings = Settings::default();
        let owner = format!(
            "{}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos()
        );
        Builder {
            retro: Self {
                spec: Arc::new(spec),
                metrics,
                traces: None,
                logs: None,
                store,
                owner: owner.into(),
                gathering: Arc::new(tokio::sync::Semaphore::new(
                    settings.max_concurrent_gathering.max(1),
                )),
                queue: GatherQueue::new(settings.max_queued_gathering),
                settings,
                http: None,
                tokens: Tokens::default(),
                counters: Counters::new(&Registry::new()),
            },
        }
    }

    /// The registry of the service's own metrics.
    pub fn registry(&self) -> &Registry {
        &self.counters.registry
    }

    /// The store the cards are in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counts and logs a store failure; the error, for `?`.
    fn store_failed(&self, operation: &'static str, e: StoreError) -> StoreError {
        self.counters.store_errors.inc(&[operation]);
        tracing::error!(operation, error = %e, "the card store failed");
        e
    }

    /// A card.
    ///
    /// # Errors
    /// The store failed (counted).
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.store
            .get(id)
            .await
            .map_err(|e| self.store_failed("read", e))
    }

    /// The newest `limit` cards, newest first, after skipping `offset`.
    ///
    /// # Errors
    /// The store failed (counted).
    pub async fn incidents(&self, limit: u32, offset: u32) -> Result<Vec<Incident>, StoreError> {
        self.store
            .list(limit, offset)
            .await
            .map_err(|e| self.store_failed("read", e))
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
            long: self.spec.scaled(pair.long),
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

    /// A new card for `alert`.
    fn new_card(&self, id: &str, alert: &Alert, now: OffsetDateTime) -> Incident {
        let mut card = Incident {
            id: id.to_owned(),
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
                    what: format!("webhook received ({})", status_word(alert.status)),
                },
            ],
            evidence: None,
            actions: Vec::new(),
            verification: None,
        };
        if let Ok(target) = self.target(alert) {
            card.slo = Some(self.facts(alert, &target));
        }
        if alert.status == Status::Resolved {
            mark_resolved(&mut card, alert, now);
        }
        card
    }

    /// Until when a gathering starting now is claimed.
    fn gather_lease(&self) -> i64 {
        now_ms() + ms(self.settings.gather_timeout + CLAIM_MARGIN)
    }

    /// When the recovery of a resolved `alert` is checked: the recovery
    /// window after it resolved, and the settling time.
    fn check_at(&self, alert: &Alert) -> OffsetDateTime {
        let Ok(target) = self.target(alert) else {
            return OffsetDateTime::now_utc();
        };
        let window = self.settings.recovery_window.unwrap_or(target.short);
        alert.ends_at.unwrap_or_else(OffsetDateTime::now_utc) + window + self.settings.settle
    }

    /// Until when a recovery check of `alert` is claimed: past its check,
    /// by the longest the check can take.
    fn verify_lease(&self, alert: &Alert) -> i64 {
        let check = (self.check_at(alert).unix_timestamp_nanos() / 1_000_000) as i64;
        check.max(now_ms()) + ms(self.settings.gather_timeout + CLAIM_MARGIN)
    }

    /// Takes a webhook: each new firing alert gets a card, written to the
    /// store before this returns, and its evidence is gathered in the
    /// background; a resolved one gets its recovery checked once the
    /// recovery window has passed. A retry — or the same notification
    /// delivered to another replica on the same database — changes
    /// nothing. Returns the cards' ids.
    ///
    /// Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// The store failed (counted): answer 503, so that Alertmanager
    /// retries. Alerts before the failing one are stored; their retry is a
    /// retry.
    pub async fn receive(&self, notification: Notification) -> Result<Vec<String>, StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut ids = Vec::with_capacity(notification.alerts.len());
        for alert in notification.alerts {
            let id = incident_id(&alert);
            let resolved = alert.status == Status::Resolved;
            let card = self.new_card(&id, &alert, now);
            // A place in the queue first: a new card is claimed for
            // gathering only if this replica can start on it.
            let slot = self.queue.tx.try_reserve().ok();
            let mut claims = Vec::with_capacity(2);
            if slot.is_some() {
                claims.push((Work::Gather, self.gather_lease()));
            }
            if resolved {
                claims.push((Work::Verify, self.verify_lease(&card.alert)));
            }
            let new = self
                .store
                .insert(&card, &self.owner, &claims)
                .await
                .map_err(|e| self.store_failed("write", e))?;
            let verify = if new {
                resolved
            } else if resolved {
                // The resolution of a card already there (or a retry of it).
                let marked = self
                    .store
                    .update(&id, |c| {
                        (c.state == State::Firing).then(|| mark_resolved(c, &alert, now))
                    })
                    .await
                    .map_err(|e| self.store_failed("write", e))?;
                match marked {
                    Updated::Done((), card) => self
                        .store
                        .claim(
                            &id,
                            Work::Verify,
                            &self.owner,
                            self.verify_lease(&card.alert),
                        )
                        .await
                        .map_err(|e| self.store_failed("write", e))?,
                    Updated::Missing | Updated::Unchanged => false,
                }
            } else {
                false
            };
            self.counters.alerts.inc(&[
                status_word(alert.status),
                if new { "true" } else { "false" },
            ]);
            if new {
                match slot {
                    Some(slot) => {
                        slot.send((id.clone(), card.alert.clone()));
                        self.run_dispatcher();
                    }
                    None => {
                        self.queue.overflowed.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            incident = %id,
                            queued = self.settings.max_queued_gathering,
                            "the gathering queue is full: a sweep gathers this card's evidence once it has room"
                        );
                    }
                }
            }
            if verify {
                // The alert as resolved: its end starts the recovery window.
                self.spawn_verify(id.clone(), card.alert.clone());
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Starts, once, the task that takes cards from the queue and gathers
    /// their evidence a few at a time
    /// ([`Settings::max_concurrent_gathering`]).
    fn run_dispatcher(&self) {
        let Some(mut rx) = self
            .queue
            .rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            while let Some((id, alert)) = rx.recv().await {
                // Half empty again: the cards left in the store come next.
                if rx.len() <= rx.max_capacity() / 2
                    && this.queue.overflowed.swap(false, Ordering::Relaxed)
                {
                    this.queue.backlog.notify_one();
                }
                // Never closed: a permit always comes.
                let Ok(permit) = Arc::clone(&this.gathering).acquire_owned().await else {
                    break;
                };
                let worker = this.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    worker.claim_and_gather(&id, &alert).await;
                });
            }
        });
    }

    /// Renews the card's claim now that its turn has come (it may have
    /// waited in the queue), and gathers — unless another replica holds
    /// the card by then.
    async fn claim_and_gather(&self, id: &str, alert: &Alert) {
        match self
            .store
            .claim(id, Work::Gather, &self.owner, self.gather_lease())
            .await
        {
            Ok(true) => Box::pin(self.gather_into(id, alert)).await,
            Ok(false) => {}
            Err(e) => {
                // Taken up again by a sweep once the store is back.
                self.store_failed("claim", e);
            }
        }
    }

    /// Checks a card's recovery in the background, once its window has
    /// passed.
    fn spawn_verify(&self, id: String, alert: Alert) {
        let this = self.clone();
        tokio::spawn(async move {
            let wait =
                (this.check_at(&alert) - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            tokio::time::sleep(wait.unsigned_abs()).await;
            match this
                .store
                .claim(&id, Work::Verify, &this.owner, this.verify_lease(&alert))
                .await
            {
                // Boxed: a check waiting for its window holds only its
                // alert, not the whole check's state.
                Ok(true) => Box::pin(this.verify_into(&id, &alert)).await,
                Ok(false) => {}
                Err(e) => {
                    this.store_failed("claim", e);
                }
            }
        });
    }

    /// One pass over the store: deletes the cards older than the
    /// retention, and takes up work nobody holds — evidence not gathered,
    /// recoveries not checked — whose replica stopped (a restart of this
    /// one included). Runs at start-up and every
    /// [`Settings::sweep_interval`] ([`Retro::spawn_sweeper`]).
    ///
    /// # Errors
    /// The store failed (counted).
    pub async fn sweep(&self) -> Result<Sweep, StoreError> {
        let cutoff = now_ms() - ms(self.settings.retention);
        let deleted = self
            .store
            .delete_received_before(cutoff)
            .await
            .map_err(|e| self.store_failed("delete", e))?;
        if deleted > 0 {
            self.counters.deleted.add(&[], deleted);
            tracing::info!(deleted, retention = %looptel_slo::format_duration(self.settings.retention), "cards past the retention deleted");
        }
        // Announced changes, by when they were made: a card reads only
        // those just before its burn.
        let changes = self
            .store
            .delete_changes_before(cutoff)
            .await
            .map_err(|e| self.store_failed("delete", e))?;
        if changes > 0 {
            tracing::info!(changes, "announced changes past the retention deleted");
        }
        let mut sweep = Sweep {
            deleted,
            ..Sweep::default()
        };
        let room = self.queue.tx.capacity().min(SWEEP_BATCH as usize);
        let due = self
            .store
            .due(Work::Gather, room as u32)
            .await
            .map_err(|e| self.store_failed("read", e))?;
        if due.len() == room {
            // Perhaps more than there was room for: sweep again as soon as
            // the queue has room.
            self.queue.overflowed.store(true, Ordering::Relaxed);
        }
        for card in due {
            let Ok(slot) = self.queue.tx.try_reserve() else {
                self.queue.overflowed.store(true, Ordering::Relaxed);
                break;
            };
            if self
                .store
                .claim(&card.id, Work::Gather, &self.owner, self.gather_lease())
                .await
                .map_err(|e| self.store_failed("claim", e))?
            {
                tracing::info!(incident = %card.id, "gathering evidence left unfinished");
                sweep.gathering += 1;
                slot.send((card.id, card.alert));
                self.run_dispatcher();
            }
        }
        for card in self
            .store
            .due(Work::Verify, SWEEP_BATCH)
            .await
            .map_err(|e| self.store_failed("read", e))?
        {
            if self
                .store
                .claim(
                    &card.id,
                    Work::Verify,
                    &self.owner,
                    self.verify_lease(&card.alert),
                )
                .await
                .map_err(|e| self.store_failed("claim", e))?
            {
                tracing::info!(incident = %card.id, "checking a recovery left unchecked");
                sweep.verifying += 1;
                self.spawn_verify(card.id, card.alert);
            }
        }
        Ok(sweep)
    }

    /// Sweeps now, every [`Settings::sweep_interval`], and as soon as the
    /// gathering queue has room for cards a flood left in the store, until
    /// the task is aborted (a failed sweep is counted and tried again next
    /// time).
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval(this.settings.sweep_interval.max(Duration::from_millis(10)));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = this.queue.backlog.notified() => {}
                }
                // Failures are counted and logged where they happen.
                let _ = this.sweep().await;
            }
        })
    }

    /// Gives back the work this replica holds, for another replica (or
    /// this one, restarted) to take up at once: call it at a clean
    /// shutdown. Returns how many claims were given back.
    ///
    /// # Errors
    /// The store failed (counted); the claims then lapse on their own.
    pub async fn release(&self) -> Result<u64, StoreError> {
        self.store
            .release_all(&self.owner)
            .await
            .map_err(|e| self.store_failed("claim", e))
    }

    async fn gather_into(&self, id: &str, alert: &Alert) {
        let target = self.target(alert);
        let evidence = match &target {
            Err(why) => incident::Evidence {
                problems: vec![sources::SourceError::new("spec", why.clone())],
                ..Default::default()
            },
            Ok(target) => {
                match tokio::time::timeout(self.settings.gather_timeout, self.gather(target, alert))
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
        let mut summary = format!(
            "{} traces, {} log lines, {} dependencies moved, {} changes, {} sources failed",
            evidence.traces.len(),
            evidence.logs.len(),
            evidence.dependencies.iter().filter(|d| d.moved).count(),
            evidence.changes.len(),
            evidence.problems.len()
        );
        if let Some(h) = evidence.hypotheses.first() {
            summary.push_str("; most likely: ");
            summary.push_str(&h.text);
        }
        tracing::info!(incident = id, %summary, "evidence gathered");
        let written = self
            .store
            .update(id, |card| {
                // Another replica's gathering (its claim lapsed while it
                // worked) got there first: one evidence per card.
                if card.evidence.is_some() {
                    return None;
                }
                card.timeline.push(Event {
                    at: OffsetDateTime::now_utc(),
                    what: format!("evidence gathered: {summary}"),
                });
                if let Some(slo) = &mut card.slo {
                    slo.budget_remaining = budget;
                }
                let mut evidence = evidence.clone();
                if let (Some(sli), Some(end)) = (&mut evidence.sli, card.alert.ends_at) {
                    sli.ends_at = Some(end.unix_timestamp() as f64);
                }
                card.evidence = Some(evidence);
                Some(())
            })
            .await;
        match written {
            Ok(Updated::Done((), card)) => self.notify(&card).await,
            Ok(Updated::Missing | Updated::Unchanged) => {}
            Err(e) => {
                // The claim lapses and a sweep gathers it again.
                self.store_failed("write", e);
            }
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
            let v = Verification {
                verified: false,
                at: OffsetDateTime::now_utc(),
                window_seconds: 0.0,
                requests: 0.0,
                min_requests: self.settings.min_requests,
                error_ratio: None,
                burn_rate: None,
                reason: "the alert names no SLO of the spec: nothing to verify against".to_owned(),
            };
            self.write_verification(id, v, None).await;
            return;
        };
        let window = self.settings.recovery_window.unwrap_or(target.short);
        // The window right after the resolution, even when the check runs
        // late (taken up after a restart).
        let at = self.check_at(alert).min(OffsetDateTime::now_utc()) - self.settings.settle;
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
        let chart = match self.store.get(id).await {
            Ok(card) => card
                .as_ref()
                .and_then(|c| c.evidence.as_ref())
                .and_then(|e| e.sli.as_ref().map(|sli| (sli.series.clone(), e.from))),
            Err(e) => {
                self.store_failed("read", e);
                None
            }
        };
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
        self.write_verification(id, v, redrawn).await;
    }

    /// Writes a recovery check on its card, once: a card another replica
    /// already verified is left as it is.
    async fn write_verification(
        &self,
        id: &str,
        v: Verification,
        redrawn: Option<Vec<(f64, f64)>>,
    ) {
        let written = self
            .store
            .update(id, |card| {
                if card.state != State::Resolved {
                    return None;
                }
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
                card.verification = Some(v.clone());
                if let (Some(points), Some(sli)) = (
                    redrawn.clone(),
                    card.evidence.as_mut().and_then(|e| e.sli.as_mut()),
                ) {
                    sli.points = points;
                }
                Some(())
            })
            .await;
        if let Err(e) = written {
            // The claim lapses and a sweep checks again.
            self.store_failed("write", e);
        }
    }

    /// Attaches an improvement item to a card; `None` if there is no such
    /// card.
    ///
    /// # Errors
    /// The store failed (counted).
    pub async fn add_action(
        &self,
        id: &str,
        text: String,
        link: Option<String>,
    ) -> Result<Option<Incident>, StoreError> {
        let written = self
            .store
            .update(id, |card| {
                let at = OffsetDateTime::now_utc();
                card.timeline.push(Event {
                    at,
                    what: format!("action added: {text}"),
                });
                card.actions.push(Action {
                    at,
                    text: text.clone(),
                    link: link.clone(),
                });
                Some(())
            })
            .await
            .map_err(|e| self.store_failed("write", e))?;
        Ok(match written {
            Updated::Done((), card) => Some(*card),
            Updated::Missing | Updated::Unchanged => None,
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
