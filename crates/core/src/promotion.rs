use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, Key, KeyValue};

/// The baggage keys promoted to span attributes and log fields (an
/// allow-list, such as `tenant.id`).
///
/// `looptel-telemetry` copies those members of the parent context's
/// baggage onto every span the service starts (a span processor of the
/// SDK's); the JSON log layer writes them as fields. Cheap to clone.
///
/// ```
/// use looptel_core::BaggagePromotion;
/// use opentelemetry::baggage::BaggageExt;
/// use opentelemetry::{Context, KeyValue};
///
/// let promote = BaggagePromotion::new(["tenant.id"]);
/// let cx = Context::new().with_baggage([
///     KeyValue::new("tenant.id", "acme"),
///     KeyValue::new("session", "s-1"),
/// ]);
/// let fields: Vec<_> = promote.members(&cx).collect();
/// assert_eq!(fields, [("tenant.id", "acme".to_owned())]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BaggagePromotion {
    keys: Arc<[Key]>,
    /// Set once a span processor promotes these keys as spans start (shared
    /// by every clone): a server span's members then need no other copy.
    at_start: Arc<AtomicBool>,
}

impl BaggagePromotion {
    /// Promotes these keys.
    pub fn new<I, K>(keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        Self {
            // Shared, so a key is cloned onto a span without allocating.
            keys: keys
                .into_iter()
                .map(|k| Key::from(Arc::<str>::from(k.into())))
                .collect(),
            at_start: Arc::default(),
        }
    }

    /// Says that a span processor copies these members onto every span as
    /// it starts (`looptel-telemetry` calls it when it installs one); every
    /// clone sees it.
    pub fn mark_promoted_at_start(&self) {
        self.at_start.store(true, Ordering::Relaxed);
    }

    /// Whether a span processor copies these members onto spans as they
    /// start: a span started in a context holding them has them already.
    pub fn is_promoted_at_start(&self) -> bool {
        self.at_start.load(Ordering::Relaxed)
    }

    /// The promoted keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(Key::as_str)
    }

    /// Whether nothing is promoted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The promoted members present in the baggage of `cx`.
    pub fn members<'a>(&'a self, cx: &'a Context) -> impl Iterator<Item = (&'a str, String)> + 'a {
        let baggage = cx.baggage();
        self.keys
            .iter()
            .filter_map(move |k| baggage.get(k).map(|v| (k.as_str(), v.as_str().to_owned())))
    }

    /// The promoted members of `cx` as span attributes (key and value
    /// shared, not copied).
    pub fn attributes<'a>(&'a self, cx: &'a Context) -> impl Iterator<Item = KeyValue> + 'a {
        let baggage = cx.baggage();
        self.keys
            .iter()
            .filter_map(move |k| baggage.get(k).map(|v| KeyValue::new(k.clone(), v.clone())))
    }
}
