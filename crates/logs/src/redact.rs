//! PII redaction of log fields by name.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use looptel_core::pii::{matches, normalise};
use sha2::Sha256;

/// What a redacted value is replaced with.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum RedactionMode {
    /// Masking: values of 11 characters or more keep their first 3 and last
    /// 4 characters (`13812348000` → `138****8000`); shorter values and
    /// secrets (passwords, tokens, …) become `****`.
    Mask,
    /// A keyed hash: `hmac:` and the first 16 hex digits of
    /// HMAC-SHA256(key, value). Equal values hash equally, so a masked user
    /// can still be followed across lines, but the value cannot be recovered
    /// without the key.
    KeyedHash(HashKey),
}

/// The secret key of [`RedactionMode::KeyedHash`]; its `Debug` prints no bytes.
#[derive(Clone)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    /// A key from raw bytes (at least 16 are advised).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self(key.into())
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// The deny-list of field names whose values never reach a log line in plain
/// text, and how they are replaced.
///
/// A field is redacted when its name — lowercased, with `.`, `_` and `-`
/// ignored — equals or ends with a listed name: `email` covers `email`,
/// `user.email` and `customer_email`; `card_number` covers `cardNumber`.
/// Redaction applies to event fields and span fields alike.
///
/// ```
/// use looptel_logs::{Redaction, RedactionMode};
///
/// let r = Redaction::default();
/// assert_eq!(r.redact("user.phone", "13812348000").as_deref(), Some("138****8000"));
/// assert_eq!(r.redact("password", "hunter2hunter2").as_deref(), Some("****"));
/// assert_eq!(r.redact("order.id", "o-17"), None);
/// ```
#[derive(Clone, Debug)]
pub struct Redaction {
    mode: RedactionMode,
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    /// Lowercase, separators removed.
    name: String,
    secret: bool,
}

/// Masked in logs on top of [`looptel_core::pii::PERSONAL`]: the
/// conventions want user ids hashed or masked, never plain.
pub const USER_ID: &str = looptel_catalogue::logs::USER_ID;

const MASK: &str = "****";

impl Default for Redaction {
    /// The default deny-list — [`looptel_core::pii::PERSONAL`] and
    /// [`USER_ID`] masked, [`looptel_core::pii::SECRETS`] fully hidden — in
    /// [`RedactionMode::Mask`].
    fn default() -> Self {
        let mut r = Self::none();
        for f in looptel_core::pii::PERSONAL.iter().chain([&USER_ID]) {
            r = r.field(f);
        }
        for f in looptel_core::pii::SECRETS {
            r = r.secret_field(f);
        }
        r
    }
}

impl Redaction {
    /// An empty deny-list: nothing is redacted.
    pub fn none() -> Self {
        Self {
            mode: RedactionMode::Mask,
            rules: Vec::new(),
        }
    }

    /// Sets the replacement mode (default [`RedactionMode::Mask`]).
    #[must_use]
    pub fn mode(mut self, mode: RedactionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Adds a field name whose values are masked or hashed.
    #[must_use]
    pub fn field(mut self, name: &str) -> Self {
        self.rules.push(Rule {
            name: normalise(name),
            secret: false,
        });
        self
    }

    /// Adds a field name whose values are secrets: never partially shown.
    #[must_use]
    pub fn secret_field(mut self, name: &str) -> Self {
        self.rules.push(Rule {
            name: normalise(name),
            secret: true,
        });
        self
    }

    /// Whether values of the field `name` are redacted.
    pub fn is_denied(&self, name: &str) -> bool {
        self.rule(name).is_some()
    }

    /// The redacted form of `value` when `name` is on the deny-list.
    pub fn redact(&self, name: &str, value: &str) -> Option<String> {
        let rule = self.rule(name)?;
        Some(match &self.mode {
            RedactionMode::Mask if rule.secret => MASK.to_owned(),
            RedactionMode::Mask => mask(value),
            RedactionMode::KeyedHash(key) => keyed_hash(&key.0, value),
        })
    }

    fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| matches(name, &r.name))
    }
}

fn mask(value: &str) -> String {
    let count = value.chars().count();
    if count < 11 {
        return MASK.to_owned();
    }
    let head: String = value.chars().take(3).collect();
    let tail: String = value.chars().skip(count - 4).collect();
    format!("{head}{MASK}{tail}")
}

fn keyed_hash(key: &[u8], value: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return MASK.to_owned();
    };
    mac.update(value.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(5 + 16);
    out.push_str("hmac:");
    for b in &digest[..8] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_phone_convention() {
        let r = Redaction::default();
        assert_eq!(
            r.redact("phone", "13812348000").as_deref(),
            Some("138****8000")
        );
        assert_eq!(
            r.redact("card_number", "4111111111111111").as_deref(),
            Some("411****1111")
        );
        // Too short to reveal anything.
        assert_eq!(r.redact("phone", "5550100").as_deref(), Some("****"));
        // Multi-byte characters are counted as characters, not bytes.
        assert_eq!(
            r.redact("email", "ñandú@ejemplo.es").as_deref(),
            Some("ñan****o.es")
        );
    }

    #[test]
    fn secrets_are_never_partially_shown() {
        let r = Redaction::default();
        for name in [
            "password",
            "access_token",
            "Authorization",
            "api-key",
            "session.cookie",
        ] {
            assert_eq!(
                r.redact(name, "a-very-long-secret-value").as_deref(),
                Some("****"),
                "{name}"
            );
        }
    }

    #[test]
    fn matches_names_regardless_of_case_and_separators() {
        let r = Redaction::default();
        for name in [
            "email",
            "user.email",
            "customer_email",
            "cardNumber",
            "card-number",
            "user_id",
            "user.id",
        ] {
            assert!(r.is_denied(name), "{name} should be denied");
        }
        for name in [
            "order.id",
            "email_verified",
            "token_count",
            "message",
            "",
            "id",
        ] {
            assert!(!r.is_denied(name), "{name} should pass");
        }
    }

    #[test]
    fn keyed_hash_is_stable_keyed_and_opaque() {
        let a =
            Redaction::default().mode(RedactionMode::KeyedHash(HashKey::new(*b"key-one-16-bytes")));
        let b =
            Redaction::default().mode(RedactionMode::KeyedHash(HashKey::new(*b"key-two-16-bytes")));
        let h1 = a.redact("user.id", "u-42").expect("denied");
        assert_eq!(h1, a.redact("user_id", "u-42").expect("denied"));
        assert_ne!(h1, b.redact("user.id", "u-42").expect("denied"));
        assert_ne!(h1, a.redact("user.id", "u-43").expect("denied"));
        assert!(h1.starts_with("hmac:") && h1.len() == 21 && !h1.contains("u-42"));
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        assert_eq!(
            keyed_hash(b"Jefe", "what do ya want for nothing?"),
            "hmac:5bdcc146bf60754e"
        );
        assert!(!format!("{:?}", HashKey::new(*b"key-one-16-bytes")).contains("key-one"));
    }

    #[test]
    fn custom_list_replaces_nothing_else() {
        let r = Redaction::none().field("iban");
        assert!(r.is_denied("payer.iban"));
        assert!(!r.is_denied("phone"));
    }
}
