//! Bearer tokens on the service's routes: one for Alertmanager's webhook,
//! one for people's writes (actions), and optionally one for reads.
//!
//! Alertmanager sends exactly what this checks when its receiver has
//! `http_config: { authorization: { credentials_file: … } }`:
//! `Authorization: Bearer <token>`. Tokens are compared in constant time
//! (their SHA-256 digests, so not even the length shows), never logged, and
//! a refusal is a 401 with `WWW-Authenticate`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A secret that callers must present as `Authorization: Bearer …`.
///
/// Its `Debug` shows no secret.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty (or only white space).
    #[error("a token must not be empty")]
    Empty,
    /// A character an HTTP header cannot carry.
    #[error("a token must be visible ASCII (what an Authorization header carries)")]
    NotVisibleAscii,
}

impl Token {
    /// A token; surrounding white space (a file's last newline) is dropped.
    ///
    /// # Errors
    /// [`TokenError`] for an empty token or one a header cannot carry.
    ///
    /// ```
    /// use looptel_retro::Token;
    /// let token = Token::new("s3cret\n")?;
    /// assert!(token.matches(b"Bearer s3cret"));
    /// assert!(!token.matches(b"Bearer s3cre"));
    /// # Ok::<(), looptel_retro::TokenError>(())
    /// ```
    pub fn new(secret: &str) -> Result<Self, TokenError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        Ok(Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Whether an `Authorization` header's value presents this token
    /// (`Bearer <token>`, the scheme in any case).
    pub fn matches(&self, authorization: &[u8]) -> bool {
        let Some(presented) = authorization
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| authorization[7..].trim_ascii())
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented).into();
        bool::from(digest.ct_eq(&self.digest))
    }
}

/// The tokens the service asks for; `None`: that kind of request is open.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    /// `POST /alerts` (Alertmanager's webhook).
    pub webhook: Option<Token>,
    /// Writes by people and tools: `POST /incidents/{id}/actions`.
    pub write: Option<Token>,
    /// Reads: the cards, the list and `/metrics` (`/health` stays open
    /// for probes).
    pub read: Option<Token>,
}

/// The middleware: the request passes with the token (or when there is
/// none to ask for), otherwise a 401.
pub(crate) async fn require(
    State(token): State<Option<Arc<Token>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    let presented = request.headers().get(header::AUTHORIZATION);
    if presented.is_some_and(|v| token.matches(v.as_bytes())) {
        return next.run(request).await;
    }
    let (challenge, message) = if presented.is_some() {
        (
            r#"Bearer realm="looptel-retro", error="invalid_token""#,
            "the bearer token is not the one this route takes",
        )
    } else {
        (
            r#"Bearer realm="looptel-retro""#,
            "this route takes a bearer token (Authorization: Bearer …)",
        )
    };
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        )],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_scheme_with_the_exact_token_passes() {
        let t = Token::new("abc123").expect("token");
        assert!(t.matches(b"Bearer abc123"));
        assert!(t.matches(b"bearer abc123"));
        assert!(t.matches(b"Bearer abc123 "));
        for wrong in [
            &b"Bearer abc12"[..],
            b"Bearer abc1234",
            b"Basic abc123",
            b"abc123",
            b"Bearer",
            b"",
            b"Bearer \xff\xfe",
        ] {
            assert!(!t.matches(wrong), "{wrong:?}");
        }
        assert_eq!(Token::new(" \n").err(), Some(TokenError::Empty));
        assert_eq!(Token::new("a b").err(), Some(TokenError::NotVisibleAscii));
        assert_eq!(format!("{t:?}"), "Token(…)");
    }
}
