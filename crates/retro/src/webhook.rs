//! The Alertmanager webhook, version 4 (CONVENTIONS: Alertmanager webhook),
//! read strictly where it matters (the version, the alerts' times and
//! fingerprints) and leniently elsewhere (fields Alertmanager adds later
//! are ignored).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The webhook version this service reads.
pub const VERSION: &str = "4";

/// Why a webhook body was refused (each a 400 with this text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// Not JSON, or not the webhook's shape; the message names the field
    /// and position.
    #[error("not an Alertmanager webhook: {0}")]
    Json(String),
    /// Another version of the webhook.
    #[error("unsupported webhook version {0:?}: this service reads version \"4\"")]
    Version(String),
    /// An alert whose time cannot be read.
    #[error("alerts[{index}].{field}: {value:?} is not an RFC 3339 time")]
    Time {
        /// The alert's position.
        index: usize,
        /// `startsAt` or `endsAt`.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// An alert without a fingerprint (it could not be told apart from a
    /// retry).
    #[error("alerts[{0}].fingerprint is empty")]
    Fingerprint(usize),
}

/// Whether an alert (or the group) is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

/// A webhook's body.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The receiver that sent it.
    pub receiver: String,
    /// The group's status.
    pub status: Status,
    /// Alertmanager's own URL.
    pub external_url: String,
    /// The group's labels.
    pub group_labels: BTreeMap<String, String>,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Firing or resolved.
    pub status: Status,
    /// Its labels (`alertname`, `severity`, `slo`, `service`, `window`, …).
    pub labels: BTreeMap<String, String>,
    /// Its annotations (`summary`, `description`, `runbook_url`, `owner`,
    /// `response_sla`, …).
    pub annotations: BTreeMap<String, String>,
    /// When it started firing.
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    /// When it resolved; `None` while firing (Alertmanager sends the zero
    /// time, year 1).
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
    /// The Prometheus graph of its expression.
    pub generator_url: String,
    /// Alertmanager's fingerprint of its labels.
    pub fingerprint: String,
}

impl Alert {
    /// A label, or `""`.
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }

    /// An annotation, or `""`.
    pub fn annotation(&self, name: &str) -> &str {
        self.annotations.get(name).map_or("", String::as_str)
    }

    /// `alertname`.
    pub fn name(&self) -> &str {
        self.label("alertname")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    version: String,
    #[serde(default)]
    receiver: String,
    status: Status,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    alerts: Vec<RawAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAlert {
    status: Status,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    #[serde(default)]
    fingerprint: String,
}

/// Parses an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

impl Notification {
    /// Reads a webhook body.
    ///
    /// # Errors
    /// A [`WebhookError`] saying what is wrong, for a 400.
    ///
    /// ```
    /// use looptel_retro::webhook::{Notification, WebhookError};
    /// let n = Notification::from_json(br#"{"version":"4","status":"firing","alerts":[
    ///   {"status":"firing","labels":{"alertname":"ErrorBudgetBurn1h"},
    ///    "startsAt":"2026-11-30T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
    ///    "fingerprint":"c0ffee"}]}"#).unwrap();
    /// assert_eq!(n.alerts[0].name(), "ErrorBudgetBurn1h");
    /// assert_eq!(n.alerts[0].ends_at, None);
    ///
    /// let err = Notification::from_json(br#"{"version":"3","status":"firing","alerts":[]}"#);
    /// assert!(matches!(err, Err(WebhookError::Version(v)) if v == "3"));
    /// ```
    pub fn from_json(body: &[u8]) -> Result<Self, WebhookError> {
        // The version first, so that another version's shape is named as such.
        #[derive(Deserialize)]
        struct Version {
            version: Option<serde_json::Value>,
        }
        let v: Version =
            serde_json::from_slice(body).map_err(|e| WebhookError::Json(e.to_string()))?;
        match v.version {
            Some(serde_json::Value::String(s)) if s == VERSION => {}
            Some(serde_json::Value::String(s)) => return Err(WebhookError::Version(s)),
            Some(other) => return Err(WebhookError::Version(other.to_string())),
            None => return Err(WebhookError::Json("missing field `version`".to_owned())),
        }
        let raw: Raw =
            serde_json::from_slice(body).map_err(|e| WebhookError::Json(e.to_string()))?;
        debug_assert_eq!(raw.version, VERSION);
        let mut alerts = Vec::with_capacity(raw.alerts.len());
        for (index, a) in raw.alerts.into_iter().enumerate() {
            let starts_at = parse_time(&a.starts_at).ok_or_else(|| WebhookError::Time {
                index,
                field: "startsAt",
                value: a.starts_at.clone(),
            })?;
            let ends_at = if a.ends_at.is_empty() {
                None
            } else {
                let t = parse_time(&a.ends_at).ok_or_else(|| WebhookError::Time {
                    index,
                    field: "endsAt",
                    value: a.ends_at.clone(),
                })?;
                // The zero time (year 1) means "not yet".
                (t.year() > 1).then_some(t)
            };
            if a.fingerprint.trim().is_empty() {
                return Err(WebhookError::Fingerprint(index));
            }
            alerts.push(Alert {
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at,
                ends_at,
                generator_url: a.generator_url,
                fingerprint: a.fingerprint,
            });
        }
        Ok(Self {
            receiver: raw.receiver,
            status: raw.status,
            external_url: raw.external_url,
            group_labels: raw.group_labels,
            alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(alert: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{}}","truncatedAlerts":0,"status":"firing","receiver":"retro",
            "groupLabels":{{"alertname":"ErrorBudgetBurn1h"}},"commonLabels":{{}},"commonAnnotations":{{}},
            "externalURL":"http://am:9093","alerts":[{alert}]}}"#
        )
    }

    const ALERT: &str = r#"{"status":"resolved","labels":{"alertname":"ErrorBudgetBurn1h","slo":"order-api-availability","severity":"page"},
        "annotations":{"summary":"s"},"startsAt":"2026-11-30T10:00:00.123Z","endsAt":"2026-11-30T10:20:00Z",
        "generatorURL":"http://prom/graph","fingerprint":"abc"}"#;

    #[test]
    fn reads_every_field_of_version_4() {
        let n = Notification::from_json(body(ALERT).as_bytes()).expect("valid");
        assert_eq!(n.receiver, "retro");
        assert_eq!(n.external_url, "http://am:9093");
        let a = &n.alerts[0];
        assert_eq!(a.status, Status::Resolved);
        assert_eq!(a.label("slo"), "order-api-availability");
        assert_eq!(a.annotation("summary"), "s");
        assert_eq!(a.starts_at.unix_timestamp(), 1_796_032_800);
        assert_eq!(a.starts_at.millisecond(), 123);
        assert_eq!(
            a.ends_at.map(OffsetDateTime::unix_timestamp),
            Some(1_796_034_000)
        );
        assert_eq!(a.fingerprint, "abc");
    }

    #[test]
    fn refuses_what_it_cannot_use_with_the_reason() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "not an Alertmanager webhook: EOF"),
            (b"[1,2]", "not an Alertmanager webhook"),
            (br#"{"status":"firing","alerts":[]}"#, "missing field `version`"),
            (br#"{"version":4,"status":"firing","alerts":[]}"#, "version \"4\""),
            (br#"{"version":"4","status":"burning","alerts":[]}"#, "unknown variant `burning`"),
            (
                br#"{"version":"4","status":"firing","alerts":[{"status":"firing","startsAt":"yesterday","fingerprint":"a"}]}"#,
                "alerts[0].startsAt: \"yesterday\" is not an RFC 3339 time",
            ),
            (
                br#"{"version":"4","status":"firing","alerts":[{"status":"firing","startsAt":"2026-11-30T10:00:00Z"}]}"#,
                "alerts[0].fingerprint is empty",
            ),
        ];
        for (input, expected) in cases {
            let err = Notification::from_json(input)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }

    #[test]
    fn non_utf8_and_deep_nesting_are_refused_not_panics() {
        assert!(Notification::from_json(&[0xff, 0xfe, b'{']).is_err());
        let deep = "[".repeat(100_000);
        assert!(Notification::from_json(deep.as_bytes()).is_err());
    }
}
