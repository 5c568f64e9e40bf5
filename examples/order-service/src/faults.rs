//! The fault switch: failures and latency injected inside the dependency
//! hop they name, so that spans, logs and metrics show them where a real
//! fault would be. Off unless the service starts with `--enable-faults`
//! (env `ENABLE_FAULTS=1`); then `PUT /admin/faults` sets them, `GET` reads
//! them and `DELETE` clears them.
//!
//! ```text
//! curl -X PUT localhost:8080/admin/faults -H 'content-type: application/json' \
//!      -d '{"inventory_error_rate": 0.5, "inventory_delay_ms": 300, "consumer_error_rate": 0.1}'
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// The path of the switch.
pub const FAULTS_PATH: &str = "/admin/faults";

/// The longest delay the switch accepts.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The faults in force; all zero by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// The share of inventory calls (0–1) that fail as a system error
    /// (UNAVAILABLE from the inventory's handler).
    pub inventory_error_rate: f64,
    /// Milliseconds the inventory's handler waits before it answers (past
    /// the order path's 2-second deadline, the call fails DEADLINE_EXCEEDED).
    pub inventory_delay_ms: u64,
    /// The share of order events (0–1) the fulfilment consumer fails to
    /// process, as a system error.
    pub consumer_error_rate: f64,
}

impl Faults {
    /// The field that is out of range, and why.
    fn invalid(&self) -> Option<(&'static str, String)> {
        for (field, rate) in [
            ("inventory_error_rate", self.inventory_error_rate),
            ("consumer_error_rate", self.consumer_error_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Some((field, format!("{rate} is not a share between 0 and 1")));
            }
        }
        if self.inventory_delay_ms > MAX_DELAY_MS {
            return Some((
                "inventory_delay_ms",
                format!("{} is more than {MAX_DELAY_MS} ms", self.inventory_delay_ms),
            ));
        }
        None
    }
}

/// `inventory_error_rate=0.5 inventory_delay_ms=300`: the faults in force,
/// `none` when there are none.
impl std::fmt::Display for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.inventory_error_rate > 0.0 {
            parts.push(format!(
                "inventory_error_rate={}",
                self.inventory_error_rate
            ));
        }
        if self.inventory_delay_ms > 0 {
            parts.push(format!("inventory_delay_ms={}", self.inventory_delay_ms));
        }
        if self.consumer_error_rate > 0.0 {
            parts.push(format!("consumer_error_rate={}", self.consumer_error_rate));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// The switch, shared by the admin routes that set it and the inventory
/// that acts on it. Cheap to clone; a switch no route can reach is off.
#[derive(Clone, Debug, Default)]
pub struct FaultSwitch(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    faults: RwLock<Faults>,
    /// Where each change is recorded, for the incident card.
    changes: Option<looptel::metrics::Changes>,
    /// Inventory calls seen, so that a rate fails exactly that share of
    /// them, spread evenly.
    inventory_calls: AtomicU64,
    /// Order events seen by the fulfilment consumer, likewise.
    consumer_calls: AtomicU64,
}

/// Whether call `n` of a rate `r` fails: when `⌊(n+1)·r⌋ > ⌊n·r⌋`, exactly
/// that share, evenly spread, no randomness to flake a test.
fn fails(calls: &AtomicU64, r: f64) -> bool {
    if r <= 0.0 {
        return false;
    }
    let n = calls.fetch_add(1, Ordering::Relaxed);
    // Counts far below 2^52 are exact in an f64.
    let (before, after) = (n as f64, (n + 1) as f64);
    (after * r).floor() > (before * r).floor()
}

impl FaultSwitch {
    /// A switch with no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// A switch with no faults whose every change is recorded in
    /// `changes` (`looptel_change_time_seconds{change_kind="fault_switch"}`),
    /// so a card lists it among what changed before a burn.
    pub fn recording(changes: looptel::metrics::Changes) -> Self {
        Self(Arc::new(Inner {
            changes: Some(changes),
            ..Inner::default()
        }))
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        *self.0.faults.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts `faults` in force (what `PUT /admin/faults` does), and records
    /// the change.
    pub fn set(&self, faults: Faults) {
        *self
            .0
            .faults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = faults;
        if let Some(changes) = &self.0.changes {
            changes.record("fault_switch", &faults.to_string());
        }
    }

    /// What the inventory does to this call: the delay to wait, and whether
    /// it fails (exactly the rate's share, evenly spread).
    pub fn inventory_call(&self) -> (Duration, bool) {
        let f = self.faults();
        let delay = Duration::from_millis(f.inventory_delay_ms);
        (
            delay,
            fails(&self.0.inventory_calls, f.inventory_error_rate),
        )
    }

    /// Whether the fulfilment consumer fails this event (the same even
    /// spread as [`inventory_call`](Self::inventory_call)).
    pub fn consumer_call(&self) -> bool {
        fails(&self.0.consumer_calls, self.faults().consumer_error_rate)
    }
}

/// `GET`, `PUT` and `DELETE` on [`FAULTS_PATH`]. Merged into the router
/// only with `--enable-faults`: otherwise the path does not exist.
pub fn routes(switch: FaultSwitch) -> Router {
    Router::new()
        .route(FAULTS_PATH, get(read).put(set).delete(clear))
        .with_state(switch)
}

async fn read(State(switch): State<FaultSwitch>) -> Json<Faults> {
    Json(switch.faults())
}

async fn set(
    State(switch): State<FaultSwitch>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    let faults = match body {
        Ok(Json(f)) => f,
        Err(rejection) => {
            let error = serde_json::json!({ "error": rejection.body_text() });
            return (rejection.status(), Json(error)).into_response();
        }
    };
    if let Some((field, message)) = faults.invalid() {
        let error = serde_json::json!({ "error": message, "field": field });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
    }
    switch.set(faults);
    tracing::warn!(
        faults.inventory_error_rate = faults.inventory_error_rate,
        faults.inventory_delay_ms = faults.inventory_delay_ms,
        faults.consumer_error_rate = faults.consumer_error_rate,
        "faults set"
    );
    Json(faults).into_response()
}

async fn clear(State(switch): State<FaultSwitch>) -> StatusCode {
    switch.set(Faults::default());
    tracing::warn!("faults cleared");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_fails_exactly_its_share_evenly() {
        let switch = FaultSwitch::new();
        assert_eq!(switch.inventory_call(), (Duration::ZERO, false));
        switch.set(Faults {
            inventory_error_rate: 0.25,
            inventory_delay_ms: 7,
            consumer_error_rate: 0.5,
        });
        let failed: Vec<bool> = (0..8).map(|_| switch.inventory_call().1).collect();
        assert_eq!(failed.iter().filter(|f| **f).count(), 2);
        assert_eq!(
            failed,
            [false, false, false, true, false, false, false, true]
        );
        assert_eq!(switch.inventory_call().0, Duration::from_millis(7));
        let consumer: Vec<bool> = (0..4).map(|_| switch.consumer_call()).collect();
        assert_eq!(consumer, [false, true, false, true]);
        switch.set(Faults {
            inventory_error_rate: 1.0,
            ..Faults::default()
        });
        assert!((0..5).all(|_| switch.inventory_call().1));
        assert!(!switch.consumer_call());
    }

    #[test]
    fn every_change_is_recorded_for_the_card() {
        let registry = looptel::metrics::Registry::new();
        let switch = FaultSwitch::recording(looptel::metrics::Changes::new(&registry));
        switch.set(Faults {
            inventory_error_rate: 0.5,
            inventory_delay_ms: 300,
            ..Faults::default()
        });
        switch.set(Faults::default());
        let text = registry.encode(looptel::metrics::Format::Prometheus);
        for what in ["inventory_error_rate=0.5 inventory_delay_ms=300", "none"] {
            assert!(
                text.contains(&format!(
                    "looptel_change_time_seconds{{change_kind=\"fault_switch\",change_what=\"{what}\"}}"
                )),
                "{text}"
            );
        }
    }
}
