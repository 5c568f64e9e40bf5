//! Announcing changes to looptel-retro (feature `retro-client`), so that
//! an incident card's "what changed" names a deploy with its link.
//!
//! ```no_run
//! use looptel::retro::{Announcer, Change};
//!
//! # async fn run() -> Result<(), looptel::retro::AnnounceError> {
//! // LOOPTEL_RETRO_URL=https://retro.internal, LOOPTEL_RETRO_TOKEN=…
//! if let Some(retro) = Announcer::from_env() {
//!     retro
//!         .announce(&Change::deploy("order-service", "0.1.1").link("https://ci.example/run/812"))
//!         .await?;
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

/// The variable naming retro's base URL.
pub const URL_VAR: &str = "LOOPTEL_RETRO_URL";
/// The variable holding retro's write token.
pub const TOKEN_VAR: &str = "LOOPTEL_RETRO_TOKEN";

/// One change, as retro's `POST /changes` takes it: a deploy of a
/// version, or anything else a service did (`kind`, `what`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    what: Option<String>,
}

impl Change {
    /// `service` deployed at `version` (kind `deploy`, dated now by retro).
    pub fn deploy(service: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            service: Some(service.into()),
            version: Some(version.into()),
            kind: Some("deploy".to_owned()),
            ..Self::default()
        }
    }

    /// Another kind of change (`config`, `flag`, `migration`…) of
    /// `service`, said in `what`.
    pub fn other(
        service: impl Into<String>,
        kind: impl Into<String>,
        what: impl Into<String>,
    ) -> Self {
        Self {
            service: Some(service.into()),
            kind: Some(kind.into()),
            what: Some(what.into()),
            ..Self::default()
        }
    }

    /// Where to read more (the pipeline run, the pull request): an
    /// `http(s)` URL.
    #[must_use]
    pub fn link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }
}

/// Why an announcement did not land.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// Retro could not be reached (or did not answer in time).
    #[error("retro unreachable: {0}")]
    Unreachable(String),
    /// Retro refused it: the status and its reason (401: the token; 400:
    /// the change).
    #[error("retro refused the change ({status}): {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Retro's reason.
        reason: String,
    },
}

/// Sends [`Change`]s to a looptel-retro: `POST {url}/changes` with the
/// write token. Cheap to clone; each announcement is bounded by a timeout
/// (5 s by default), so a retro that is down delays nothing for long — and
/// announcing in a spawned task delays nothing at all.
#[derive(Clone, Debug)]
pub struct Announcer {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    timeout: Duration,
}

impl Announcer {
    /// Announces to the retro at `url` (its base URL), without a token,
    /// over plain HTTP: for an `https://` retro give a client of yours
    /// built with reqwest's TLS feature ([`with_client`](Self::with_client)).
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_client(reqwest::Client::new(), url)
    }

    /// Announces through `client` (its TLS, proxy and pool settings).
    pub fn with_client(client: reqwest::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into().trim_end_matches('/').to_owned(),
            token: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// From [`URL_VAR`] and [`TOKEN_VAR`]; `None` without a URL.
    pub fn from_env() -> Option<Self> {
        let url = std::env::var(URL_VAR)
            .ok()
            .filter(|u| !u.trim().is_empty())?;
        let announcer = Self::new(url);
        Some(match std::env::var(TOKEN_VAR) {
            Ok(token) if !token.trim().is_empty() => announcer.token(token.trim()),
            _ => announcer,
        })
    }

    /// The write token retro checks (`Authorization: Bearer …`).
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long an announcement may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `change`.
    ///
    /// # Errors
    /// Retro unreachable, or its refusal with the reason it gave.
    pub async fn announce(&self, change: &Change) -> Result<(), AnnounceError> {
        let body = serde_json::to_vec(change)
            .map_err(|e| AnnounceError::Unreachable(format!("encoding the change: {e}")))?;
        let mut request = self
            .client
            .post(format!("{}/changes", self.url))
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AnnounceError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let reason = response.text().await.unwrap_or_default();
        Err(AnnounceError::Refused {
            status: status.as_u16(),
            reason: looptel_core::bounded(reason.trim(), 500).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploy_is_sent_as_retro_reads_it() {
        let change = Change::deploy("order-service", "0.1.1").link("https://ci.example/812");
        assert_eq!(
            serde_json::to_string(&change).expect("json"),
            r#"{"service":"order-service","version":"0.1.1","link":"https://ci.example/812","kind":"deploy"}"#
        );
        let other = Change::other("order-service", "flag", "checkout v2 on");
        assert_eq!(
            serde_json::to_string(&other).expect("json"),
            r#"{"service":"order-service","kind":"flag","what":"checkout v2 on"}"#
        );
    }

    #[tokio::test]
    async fn an_unreachable_retro_is_said_quickly() {
        let err = Announcer::new(format!("http://{}/", looptel_tests::closed_port()))
            .timeout(Duration::from_secs(1))
            .announce(&Change::deploy("s", "1"))
            .await
            .expect_err("nothing listens");
        assert!(matches!(err, AnnounceError::Unreachable(_)), "{err}");
    }
}
