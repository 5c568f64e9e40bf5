//! Liveness and readiness that tell the truth: each dependency a service
//! needs (a broker, a downstream service, a consumer that must run) says
//! when it goes down and comes back; `/health/ready` answers 503 with what
//! is down, and `looptel_dependency_up{dependency}` shows the same on
//! `/metrics`.
//!
//! ```
//! use looptel_red_metrics::{Health, Registry};
//!
//! let registry = Registry::new();
//! let health = Health::new(&registry);
//! let rabbitmq = health.dependency("rabbitmq"); // down until it says up
//! assert!(!health.readiness().is_ready());
//! rabbitmq.up();
//! assert!(health.readiness().is_ready());
//! rabbitmq.down("connection reset by peer");
//! let down = health.readiness();
//! assert_eq!(down.down()[0].dependency(), "rabbitmq");
//! ```

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use looptel_catalogue::metrics as m;

use crate::metric::Metric;
use crate::metrics::Gauge;
use crate::registry::Registry;

/// The dependencies a service needs, each up or down. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gauge: Arc<Metric<Gauge>>,
    dependencies: Mutex<Vec<State>>,
}

#[derive(Clone, Debug)]
struct State {
    name: &'static str,
    /// `None` while up; since when and why while down.
    down: Option<(SystemTime, String)>,
}

impl Health {
    /// Registers `looptel_dependency_up` on `registry`.
    pub fn new(registry: &Registry) -> Self {
        Self {
            inner: Arc::new(Inner {
                gauge: registry.instrument_gauge(&m::DEPENDENCY_UP),
                dependencies: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A dependency, down (`"not connected yet"`) until it says
    /// [`up`](Dependency::up). The same name twice is the same dependency.
    pub fn dependency(&self, name: &'static str) -> Dependency {
        {
            let mut deps = self.lock();
            if !deps.iter().any(|d| d.name == name) {
                deps.push(State {
                    name,
                    down: Some((SystemTime::now(), "not connected yet".to_owned())),
                });
                self.inner.gauge.with(&[name], |g| g.set(0));
            }
        }
        Dependency {
            health: self.clone(),
            name,
        }
    }

    /// Whether every dependency is up, and which are not.
    pub fn readiness(&self) -> Readiness {
        let down = self
            .lock()
            .iter()
            .filter_map(|d| {
                d.down.as_ref().map(|(since, error)| Down {
                    dependency: d.name,
                    since: *since,
                    error: error.clone(),
                })
            })
            .collect();
        Readiness { down }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<State>> {
        self.inner
            .dependencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets a dependency's state; whether it changed.
    fn set(&self, name: &'static str, down: Option<String>) -> bool {
        let mut deps = self.lock();
        let Some(state) = deps.iter_mut().find(|d| d.name == name) else {
            return false;
        };
        let changed = state.down.is_some() != down.is_some();
        match down {
            None => state.down = None,
            // Still down: keep since when, take the latest reason.
            Some(error) => match &mut state.down {
                Some((_, e)) => *e = error,
                None => state.down = Some((SystemTime::now(), error)),
            },
        }
        self.inner
            .gauge
            .with(&[name], |g| g.set(i64::from(state.down.is_none())));
        changed
    }
}

/// One dependency's handle: say [`up`](Self::up) and
/// [`down`](Self::down) as it goes. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dependency {
    health: Health,
    name: &'static str,
}

impl Dependency {
    /// Its name, the gauge's `dependency` label.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reachable (a consumer: running). Returns whether it was down.
    pub fn up(&self) -> bool {
        self.health.set(self.name, None)
    }

    /// Unreachable (a consumer: stopped), with why. Returns whether it was
    /// up. Since when is kept while it stays down.
    pub fn down(&self, error: impl Into<String>) -> bool {
        self.health.set(self.name, Some(error.into()))
    }

    /// Whether it is up now.
    pub fn is_up(&self) -> bool {
        self.health
            .lock()
            .iter()
            .any(|d| d.name == self.name && d.down.is_none())
    }
}

/// The answer of `/health/ready`.
#[derive(Clone, Debug)]
pub struct Readiness {
    down: Vec<Down>,
}

/// A dependency that is down.
#[derive(Clone, Debug)]
pub struct Down {
    dependency: &'static str,
    since: SystemTime,
    error: String,
}

impl Down {
    /// Its name.
    pub fn dependency(&self) -> &'static str {
        self.dependency
    }

    /// Down since.
    pub fn since(&self) -> SystemTime {
        self.since
    }

    /// Why, as last reported.
    pub fn error(&self) -> &str {
        &self.error
    }
}

impl Readiness {
    /// Every dependency up.
    pub fn is_ready(&self) -> bool {
        self.down.is_empty()
    }

    /// The dependencies down, in the order they were declared.
    pub fn down(&self) -> &[Down] {
        &self.down
    }

    /// The body: `{"status":"ready"}`, or
    /// `{"status":"unavailable","down":[{"dependency":…,"since":…,"error":…}]}`
    /// with `since` in RFC 3339.
    pub fn to_json(&self) -> String {
        if self.is_ready() {
            return serde_json::json!({ "status": "ready" }).to_string();
        }
        let down: Vec<serde_json::Value> = self
            .down
            .iter()
            .map(|d| {
                let since = time::OffsetDateTime::from(d.since)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                serde_json::json!({
                    "dependency": d.dependency,
                    "since": since,
                    "error": d.error,
                })
            })
            .collect();
        serde_json::json!({ "status": "unavailable", "down": down }).to_string()
    }

    /// 200 when ready, 503 otherwise; the [JSON body](Self::to_json).
    pub fn to_response(&self) -> http::Response<String> {
        let status = if self.is_ready() {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        let mut res = http::Response::new(self.to_json());
        *res.status_mut() = status;
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res.headers_mut().insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        res
    }
}

/// `GET /health/live` (and the `/health` alias): 200 while the process
/// serves, whatever its dependencies; `GET /health/ready`: the
/// [`Readiness`] of `health`. Skip these paths in the tracing layer (they
/// are probes, polled every few seconds).
///
/// ```
/// use axum::Router;
/// use looptel_red_metrics::{Health, Registry, health_routes};
///
/// let health = Health::new(&Registry::new());
/// let app: Router = Router::new().merge(health_routes(health));
/// ```
#[cfg(feature = "axum")]
pub fn health_routes<S>(health: Health) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let live = || async {
        (
            [(http::header::CONTENT_TYPE, "application/json")],
            r#"{"status":"live"}"#,
        )
    };
    axum::Router::new()
        .route("/health", axum::routing::get(live))
        .route("/health/live", axum::routing::get(live))
        .route(
            "/health/ready",
            axum::routing::get(move || {
                let health = health.clone();
                async move { health.readiness().to_response() }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;

    #[test]
    fn down_until_up_since_kept_while_down_and_the_gauge_follows() {
        let registry = Registry::new();
        let health = Health::new(&registry);
        let kafka = health.dependency("kafka");
        let amqp = health.dependency("rabbitmq");
        assert_eq!(health.readiness().down().len(), 2);
        assert!(kafka.up(), "was down");
        assert!(!kafka.up(), "already up");
        assert!(amqp.up());
        let ready = health.readiness();
        assert!(ready.is_ready());
        assert_eq!(ready.to_response().status(), 200);
        assert_eq!(ready.to_json(), r#"{"status":"ready"}"#);

        assert!(amqp.down("connection reset"));
        let first = health.readiness().down()[0].since();
        assert!(!amqp.down("connection refused"), "already down");
        let r = health.readiness();
        assert_eq!(r.down()[0].since(), first, "down since the first report");
        assert_eq!(r.down()[0].error(), "connection refused");
        let res = r.to_response();
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = serde_json::from_str(res.body()).expect("json");
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["down"][0]["dependency"], "rabbitmq");
        assert_eq!(body["down"][0]["error"], "connection refused");
        assert!(
            time::OffsetDateTime::parse(
                body["down"][0]["since"].as_str().expect("since"),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{body}"
        );

        let text = registry.encode(Format::Prometheus);
        assert!(
            text.contains(r#"looptel_dependency_up{dependency="kafka"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"looptel_dependency_up{dependency="rabbitmq"} 0"#),
            "{text}"
        );
        // Declared again: the same dependency, its state kept.
        health.dependency("kafka");
        assert_eq!(health.readiness().down().len(), 1);
    }
}
