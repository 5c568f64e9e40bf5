//! The baggage policy: what is promoted, what never leaves, how much.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use looptel_core::baggage::{
    InjectPolicy, MAX_BYTES, MAX_MEMBERS, SharedContexts, encoded_len, is_key,
};
use looptel_core::{BaggagePromotion, pii};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};

/// The recommended byte budget of one service's outgoing baggage.
pub const DEFAULT_BUDGET_BYTES: usize = 1024;

/// Why a member was not set.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BaggageError {
    /// The key is on the deny-list: it would never be propagated.
    #[error("baggage key {0:?} is denied by the policy (personal data or a secret)")]
    Denied(String),
    /// The key is not an RFC 7230 token.
    #[error("baggage key {0:?} is not a valid token")]
    InvalidKey(String),
    /// The member would take the baggage past 64 members or 8192 bytes.
    #[error("baggage is full: {0:?} would exceed 64 members or 8192 bytes")]
    Full(String),
}

/// Counters of what the policy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BaggageStats {
    /// Members dropped on inject because their key is denied.
    pub denied: u64,
    /// Outgoing headers larger than the byte budget.
    pub over_budget: u64,
    /// Inbound baggage dropped at a trust boundary.
    pub untrusted_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    denied: AtomicU64,
    over_budget: AtomicU64,
    untrusted_dropped: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    promotion: BaggagePromotion,
    deny: Vec<String>,
    allow: Vec<String>,
    budget: usize,
    counters: Counters,
    naming_warnings: Vec<String>,
    /// The promoted keys, checked once at build: the keys an edge usually
    /// sets, so a request does not scan the deny-list for them.
    known: Vec<Known>,
    /// Contexts holding one member of a key not promoted alone, built
    /// once per key and value (a promoted key has a table of its own).
    alone: SharedContexts,
}

/// At most this many one-member contexts are kept per promoted key and for
/// the other keys together (a tenant per entry, about 400 bytes each): the
/// values come from requests, so the tables are bounded even so; a full
/// table starts over.
const MAX_ALONE: usize = 1024;

/// Values longer than this are not kept (a tenant or region id is short).
const MAX_ALONE_VALUE: usize = 128;

/// A key written before its value in the text a one-member context is
/// kept by: `0xff` is in no key (keys are ASCII tokens) and no `&str`.
const KEY_END: &[u8] = &[0xff];

/// A key whose checks were done when the policy was built.
#[derive(Debug)]
struct Known {
    key: opentelemetry::Key,
    verdict: Result<(), BaggageError>,
    /// Contexts holding this member alone, by value: the edge's tenant,
    /// found by its value only.
    alone: SharedContexts,
}

impl Inner {
    /// The key to insert `key` under, if the policy allows it, and whether
    /// it is promoted.
    fn check(&self, key: &str) -> Result<(opentelemetry::Key, bool), BaggageError> {
        if let Some(known) = self.known.iter().find(|k| k.key.as_str() == key) {
            return known.verdict.clone().map(|()| (known.key.clone(), true));
        }
        check(&self.deny, &self.allow, key)
            .map(|()| (opentelemetry::Key::from(key.to_owned()), false))
    }
}

/// A value shared by reference count: promotion copies it onto spans and
/// log lines without allocating.
fn shared(value: &str) -> opentelemetry::StringValue {
    opentelemetry::StringValue::from(Arc::<str>::from(value))
}

/// The checks of [`BaggagePolicy::set`] on a key.
fn check(deny: &[String], allow: &[String], key: &str) -> Result<(), BaggageError> {
    if !is_key(key) {
        return Err(BaggageError::InvalidKey(key.to_owned()));
    }
    if is_denied(deny, allow, key) {
        return Err(BaggageError::Denied(key.to_owned()));
    }
    Ok(())
}

fn is_denied(deny: &[String], allow: &[String], key: &str) -> bool {
    deny.iter().any(|d| pii::matches(key, d)) && !allow.contains(&pii::normalise(key))
}

/// The baggage policy, built once and typed; cheap to clone.
///
/// - **Promotion**: the allow-listed keys (`tenant.id`) copied onto spans and
///   log lines ([`promotion`](Self::promotion)).
/// - **Deny-list**: keys never propagated (personal data, secrets:
///   [`pii::PERSONAL`], [`pii::SECRETS`]); dropped on inject and counted. A key is denied when
///   its name, lowercased without `.`, `_` and `-`, ends with a listed name
///   (`user.email`, `card_number`, `x-api-key`).
/// - **Budget**: the recommended 1 KiB of outgoing baggage per service;
///   exceeding it is counted (the W3C limits still apply).
/// - **Naming**: keys named in code must look like `tenant.id` (lowercase,
///   dot-separated); others are warned about once, when the policy is built.
///
/// ```
/// use looptel_baggage::BaggagePolicy;
/// use opentelemetry::Context;
///
/// let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();
/// let cx = policy.set(&Context::new(), "tenant.id", "acme").unwrap();
/// assert_eq!(policy.get(&cx, "tenant.id").as_deref(), Some("acme"));
/// assert!(policy.set(&cx, "user.email", "a@b.c").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct BaggagePolicy {
    inner: Arc<Inner>,
}

/// Builds a [`BaggagePolicy`].
#[derive(Debug)]
#[must_use]
pub struct BaggagePolicyBuilder {
    promote: Vec<String>,
    deny: Vec<String>,
    allow: Vec<String>,
    budget: usize,
}

/// `tenant.id` style: lowercase letters and digits, words joined by `.`
/// (and `_` inside a word).
pub fn is_conventional_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('.').all(|word| {
            !word.is_empty()
                && word.as_bytes()[0].is_ascii_lowercase()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

impl BaggagePolicy {
    /// A policy with the defaults: nothing promoted, personal data and
    /// secrets denied ([`pii::PERSONAL`], [`pii::SECRETS`]),
    /// [`DEFAULT_BUDGET_BYTES`].
    pub fn builder() -> BaggagePolicyBuilder {
        BaggagePolicyBuilder {
            promote: Vec::new(),
            deny: pii::default_denied().to_vec(),
            allow: Vec::new(),
            budget: DEFAULT_BUDGET_BYTES,
        }
    }

    /// The keys promoted to span attributes and log fields, for
    /// `TelemetryBuilder::promote_baggage`.
    pub fn promotion(&self) -> BaggagePromotion {
        self.inner.promotion.clone()
    }

    /// The policy as the outgoing-baggage filter, for
    /// `TelemetryBuilder::baggage_policy` or `Propagator::with_baggage_policy`.
    pub fn inject_policy(&self) -> Arc<dyn InjectPolicy> {
        Arc::new(self.clone())
    }

    /// Whether `key` is never propagated.
    pub fn is_denied(&self, key: &str) -> bool {
        is_denied(&self.inner.deny, &self.inner.allow, key)
    }

    /// What the policy has counted so far.
    pub fn stats(&self) -> BaggageStats {
        let c = &self.inner.counters;
        BaggageStats {
            denied: c.denied.load(Ordering::Relaxed),
            over_budget: c.over_budget.load(Ordering::Relaxed),
            untrusted_dropped: c.untrusted_dropped.load(Ordering::Relaxed),
        }
    }

    /// The keys named in code that do not follow the `tenant.id` style
    /// (warned about once, when the policy was built).
    pub fn naming_warnings(&self) -> &[String] {
        &self.inner.naming_warnings
    }

    pub(crate) fn count_untrusted(&self) {
        self.inner
            .counters
            .untrusted_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The value of member `key` in `cx`.
    pub fn get(&self, cx: &Context, key: &str) -> Option<String> {
        cx.baggage().get(key).map(|v| v.as_str().to_owned())
    }

    /// The value of member `key` in the current context.
    pub fn current(&self, key: &str) -> Option<String> {
        Context::map_current(|cx| self.get(cx, key))
    }

    /// `cx` with member `key` set to `value`, if the policy allows it: not a
    /// denied key, a valid token, and within 64 members and 8192 bytes.
    pub fn set(&self, cx: &Context, key: &str, value: &str) -> Result<Context, BaggageError> {
        let (key, _) = self.inner.check(key)?;
        self.set_checked(cx, key, shared(value))
    }

    /// A context whose baggage holds member `key` alone (the first member a
    /// request gets): built once per key and value and shared.
    pub(crate) fn alone(&self, key: &str, value: &str) -> Result<Context, BaggageError> {
        if let Some(known) = self.inner.known.iter().find(|k| k.key.as_str() == key) {
            return known.alone.get_or_build(&[value.as_bytes()], || {
                known.verdict.clone()?;
                self.set_checked(&Context::new(), known.key.clone(), shared(value))
            });
        }
        let parts: [&[u8]; 3] = [key.as_bytes(), KEY_END, value.as_bytes()];
        self.inner.alone.get_or_build(&parts, || {
            let (key, _) = self.inner.check(key)?;
            self.set_checked(&Context::new(), key, shared(value))
        })
    }

    /// Whether a span processor copies the promoted members onto spans as
    /// they start (see [`BaggagePromotion::is_promoted_at_start`]).
    pub(crate) fn is_promoted_at_start(&self) -> bool {
        self.inner.promotion.is_promoted_at_start()
    }

    /// The promoted member `key` of `cx`'s baggage as a span attribute.
    pub(crate) fn promoted_attribute(&self, cx: &Context, key: &str) -> Option<KeyValue> {
        let known = self.inner.known.iter().find(|k| k.key.as_str() == key)?;
        let value = cx.baggage().get(key)?;
        Some(KeyValue::new(known.key.clone(), value.clone()))
    }

    /// [`set`](Self::set), and the member as a span attribute when it is
    /// promoted (so the edge need not look it up again).
    pub(crate) fn set_promoting(
        &self,
        cx: &Context,
        key: &str,
        value: &str,
    ) -> Result<(Context, Option<KeyValue>), BaggageError> {
        let (key, promoted) = self.inner.check(key)?;
        let value = shared(value);
        let attribute = promoted.then(|| KeyValue::new(key.clone(), value.clone()));
        Ok((self.set_checked(cx, key, value)?, attribute))
    }

    fn set_checked(
        &self,
        cx: &Context,
        key: opentelemetry::Key,
        value: opentelemetry::StringValue,
    ) -> Result<Context, BaggageError> {
        let current = cx.baggage();
        if current.is_empty() {
            // The common case at an edge: nothing to copy or count.
            if encoded_len(key.as_str(), value.as_str(), "") > MAX_BYTES {
                return Err(BaggageError::Full(key.to_string()));
            }
            let mut baggage = opentelemetry::baggage::Baggage::new();
            let _ = baggage.insert(key, value);
            return Ok(cx.with_baggage(baggage));
        }
        let mut baggage = looptel_core::baggage::copy(current);
        let existing = baggage.get(key.as_str()).is_some();
        let bytes: usize = baggage
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(k, (v, m))| encoded_len(k.as_str(), v.as_str(), m.as_str()) + 1)
            .sum::<usize>()
            + encoded_len(key.as_str(), value.as_str(), "");
        if (!existing && baggage.len() >= MAX_MEMBERS) || bytes > MAX_BYTES {
            return Err(BaggageError::Full(key.to_string()));
        }
        let _ = baggage.insert(key, value);
        Ok(cx.with_baggage(baggage))
    }
}

impl InjectPolicy for BaggagePolicy {
    fn allows(&self, key: &str) -> bool {
        if self.is_denied(key) {
            self.inner.counters.denied.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn injected(&self, bytes: usize) {
        if bytes > self.inner.budget {
            self.inner
                .counters
                .over_budget
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl BaggagePolicyBuilder {
    /// Keys promoted to span attributes and log fields (e.g. `tenant.id`).
    pub fn promote<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.promote.extend(keys.into_iter().map(Into::into));
        self
    }

    /// More names never propagated, matched as the defaults are.
    pub fn deny<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.deny
            .extend(keys.into_iter().map(|k| pii::normalise(k.as_ref())));
        self
    }

    /// Exact keys propagated even though a deny-list name matches them
    /// (e.g. `payment.token_type`).
    pub fn allow<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        self.allow
            .extend(keys.into_iter().map(|k| pii::normalise(k.as_ref())));
        self
    }

    /// The recommended outgoing budget in bytes (default
    /// [`DEFAULT_BUDGET_BYTES`]); exceeding it is counted.
    pub fn budget_bytes(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Builds the policy, warning once about keys that do not follow the
    /// `tenant.id` style.
    pub fn build(self) -> BaggagePolicy {
        let naming_warnings: Vec<String> = self
            .promote
            .iter()
            .filter(|k| !is_conventional_key(k))
            .cloned()
            .collect();
        for key in &naming_warnings {
            tracing::warn!(
                target: "looptel",
                key = %key,
                "baggage key does not follow the `tenant.id` style (lowercase, dot-separated)"
            );
        }
        let known = self
            .promote
            .iter()
            .map(|k| Known {
                key: opentelemetry::Key::from(Arc::<str>::from(k.as_str())),
                verdict: check(&self.deny, &self.allow, k),
                alone: SharedContexts::new(MAX_ALONE, MAX_ALONE_VALUE),
            })
            .collect();
        BaggagePolicy {
            inner: Arc::new(Inner {
                known,
                promotion: BaggagePromotion::new(self.promote),
                deny: self.deny,
                allow: self.allow,
                budget: self.budget,
                counters: Counters::default(),
                naming_warnings,
                alone: SharedContexts::new(MAX_ALONE, MAX_ALONE_VALUE + 64),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(cx: &Context, key: &str) -> Option<String> {
        cx.baggage().get(key).map(|v| v.as_str().to_owned())
    }

    #[test]
    fn a_member_alone_is_built_once_per_value_and_right_for_any_number_of_them() {
        let policy = BaggagePolicy::builder().promote(["tenant.id"]).build();
        let first = policy.alone("tenant.id", "acme").expect("allowed");
        let again = policy.alone("tenant.id", "acme").expect("allowed");
        assert_eq!(value(&first, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(first.baggage().len(), 1);
        // Shared: the same value, not a copy.
        let ptr = |cx: &Context| cx.baggage().get("tenant.id").map(|v| v.as_str().as_ptr());
        assert_eq!(ptr(&first), ptr(&again));

        // Past the table's bound, and with values too long to keep: still
        // the right member, built per call.
        for i in 0..MAX_ALONE + 200 {
            let v = format!("tenant-{i}");
            let cx = policy.alone("tenant.id", &v).expect("allowed");
            assert_eq!(value(&cx, "tenant.id"), Some(v));
            assert!(policy.inner.known[0].alone.len() <= MAX_ALONE);
        }
        // Full, the table started over: a tenant seen since is shared.
        let late = policy.alone("tenant.id", "late").expect("allowed");
        let again = policy.alone("tenant.id", "late").expect("allowed");
        assert_eq!(ptr(&late), ptr(&again));
        let long = "x".repeat(MAX_ALONE_VALUE + 100);
        let a = policy.alone("tenant.id", &long).expect("allowed");
        let b = policy.alone("tenant.id", &long).expect("allowed");
        assert_eq!(value(&a, "tenant.id").as_deref(), Some(long.as_str()));
        assert_ne!(ptr(&a), ptr(&b));

        // Another key with the same value is another member.
        let other = BaggagePolicy::builder().build();
        let acme = other.alone("tenant.id", "acme").expect("allowed");
        let region = other.alone("region", "acme").expect("allowed");
        assert_eq!(value(&region, "region").as_deref(), Some("acme"));
        assert_eq!(value(&region, "tenant.id"), None);
        assert_eq!(value(&acme, "region"), None);
    }

    #[test]
    fn a_refused_member_alone_is_refused_every_time() {
        let policy = BaggagePolicy::builder().build();
        for _ in 0..2 {
            assert!(matches!(
                policy.alone("user.email", "a@b.c"),
                Err(BaggageError::Denied(_))
            ));
            assert!(matches!(
                policy.alone("not a token", "v"),
                Err(BaggageError::InvalidKey(_))
            ));
        }
        assert!(policy.inner.alone.is_empty());
        // A promoted key the deny-list refuses: refused from its own table.
        let promoted = BaggagePolicy::builder().promote(["user.email"]).build();
        for _ in 0..2 {
            assert!(matches!(
                promoted.alone("user.email", "a@b.c"),
                Err(BaggageError::Denied(_))
            ));
        }
        assert!(promoted.inner.known[0].alone.is_empty());
    }
}
