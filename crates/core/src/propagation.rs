use std::fmt;
use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::SpanContext;

/// A text-map propagator handle, built once at start-up and cloned into every
/// layer that extracts or injects context.
///
/// Layers hold this handle instead of calling
/// `opentelemetry::global::get_text_map_propagator` per request: no global
/// lock, no lookup, and tests can give each service its own propagator.
///
/// ```
/// use std::collections::HashMap;
/// use looptel_core::Propagator;
/// use opentelemetry_sdk::propagation::TraceContextPropagator;
///
/// let propagator = Propagator::new(TraceContextPropagator::new());
/// let mut headers = HashMap::new();
/// headers.insert(
///     "traceparent".to_owned(),
///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
/// );
/// let cx = propagator.extract(&headers);
/// let mut out = HashMap::new();
/// propagator.inject(&cx, &mut out);
/// assert_eq!(out["traceparent"], headers["traceparent"]);
/// ```
#[derive(Clone)]
pub struct Propagator {
    inner: Arc<dyn TextMapPropagator + Send + Sync>,
    /// Set when the propagator is the W3C pair (or part of it), possibly
    /// with [extra](Self::with_propagator) ones.
    w3c: Option<W3c>,
    /// Propagators beside the W3C pair (B3, Jaeger): extracted from and
    /// injected into as well.
    extras: Vec<Arc<dyn TextMapPropagator + Send + Sync>>,
    /// The contexts of `baggage` header lines seen before (W3C only).
    baggage_contexts: Arc<crate::baggage::SharedContexts>,
}

/// At most this many `baggage` header lines have their context kept (the
/// lines come from callers: the table is bounded even so).
const SHARED_BAGGAGE_LINES: usize = 1024;

/// Lines longer than this are decoded per call (a tenant and a region or
/// two are far shorter).
const SHARED_BAGGAGE_LINE_LEN: usize = 256;

fn baggage_contexts() -> Arc<crate::baggage::SharedContexts> {
    Arc::new(crate::baggage::SharedContexts::new(
        SHARED_BAGGAGE_LINES,
        SHARED_BAGGAGE_LINE_LEN,
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct W3c {
    trace_context: bool,
    baggage: bool,
}

/// An extra propagator, shared, as the composite takes it.
struct Shared(Arc<dyn TextMapPropagator + Send + Sync>);

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Shared")
    }
}

impl TextMapPropagator for Shared {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.0.inject_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.0.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.0.fields()
    }
}

fn w3c_composite(
    trace_context: bool,
    baggage: Option<crate::baggage::BaggagePropagator>,
    extras: &[Arc<dyn TextMapPropagator + Send + Sync>],
) -> Arc<dyn TextMapPropagator + Send + Sync> {
    let mut list: Vec<Box<dyn TextMapPropagator + Send + Sync>> = Vec::new();
    // The extras first: a W3C context, when the caller sent one, wins.
    for e in extras {
        list.push(Box::new(Shared(e.clone())));
    }
    if trace_context {
        list.push(Box::new(crate::tracecontext::TraceContextPropagator::new()));
    }
    if let Some(b) = baggage {
        list.push(Box::new(b));
    }
    Arc::new(opentelemetry::propagation::TextMapCompositePropagator::new(
        list,
    ))
}

impl Propagator {
    /// Wraps a propagator.
    pub fn new(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new(propagator),
            w3c: None,
            extras: Vec::new(),
            baggage_contexts: baggage_contexts(),
        }
    }

    /// The W3C propagators, each on or off: strict Trace Context
    /// ([`TraceContextPropagator`](crate::tracecontext::TraceContextPropagator))
    /// and Baggage ([`BaggagePropagator`](crate::baggage::BaggagePropagator)).
    /// Both off is [`none`](Self::none).
    pub fn w3c(trace_context: bool, baggage: bool) -> Self {
        Self {
            inner: w3c_composite(
                trace_context,
                baggage.then(crate::baggage::BaggagePropagator::new),
                &[],
            ),
            w3c: Some(W3c {
                trace_context,
                baggage,
            }),
            extras: Vec::new(),
            baggage_contexts: baggage_contexts(),
        }
    }

    /// Also extracts with and injects with `propagator` (B3 for a service
    /// mesh, Jaeger): a context is taken from whichever carries one — W3C
    /// first — and every configured one is written. With extras, headers go
    /// through the generic carrier rather than the W3C fast path.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use looptel_core::Propagator;
    /// use opentelemetry::propagation::TextMapPropagator;
    /// use opentelemetry_sdk::propagation::TraceContextPropagator;
    ///
    /// // Any text-map propagator; here the SDK's W3C one stands in for B3.
    /// let p = Propagator::w3c(false, true).with_propagator(TraceContextPropagator::new());
    /// let headers = HashMap::from([(
    ///     "traceparent".to_owned(),
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    /// )]);
    /// use opentelemetry::trace::TraceContextExt;
    /// assert!(p.extract(&headers).span().span_context().is_valid());
    /// ```
    #[must_use]
    pub fn with_propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.extras.push(Arc::new(propagator));
        let w = self.w3c.unwrap_or(W3c {
            trace_context: false,
            baggage: false,
        });
        self.inner = w3c_composite(
            w.trace_context,
            w.baggage.then(crate::baggage::BaggagePropagator::new),
            &self.extras,
        );
        self.w3c = Some(w);
        self
    }

    /// The W3C configuration when the fast path applies: W3C only, no
    /// extras.
    fn fast(&self) -> Option<W3c> {
        self.w3c.filter(|_| self.extras.is_empty())
    }

    /// The same propagators, with outgoing baggage filtered by `policy`
    /// (a deny-list, a budget). Only for [`w3c`](Self::w3c) propagators
    /// (extras included); others are returned unchanged.
    #[must_use]
    pub fn with_baggage_policy(self, policy: Arc<dyn crate::baggage::InjectPolicy>) -> Self {
        match self.w3c {
            Some(w) => Self {
                inner: w3c_composite(
                    w.trace_context,
                    w.baggage
                        .then(|| crate::baggage::BaggagePropagator::with_policy(policy)),
                    &self.extras,
                ),
                w3c: self.w3c,
                extras: self.extras,
                baggage_contexts: self.baggage_contexts,
            },
            None => self,
        }
    }

    /// A propagator that neither extracts nor injects anything
    /// (`OTEL_PROPAGATORS=none`).
    pub fn none() -> Self {
        Self::w3c(false, false)
    }

    /// Extracts a fresh context from HTTP headers (the current context is
    /// not inherited). For the W3C propagators this reads the header lines
    /// directly, with the same rules and no intermediate allocations;
    /// others go through [`HeaderExtractor`](crate::HeaderExtractor).
    pub fn extract_headers(&self, headers: &http::HeaderMap) -> Context {
        self.extract_lines_mapped(headers, |sc| sc)
            .unwrap_or_else(|cx| cx)
    }

    /// Extracts a fresh context from message headers (Kafka, AMQP, NATS),
    /// as [`extract_headers`](Self::extract_headers) does from HTTP headers:
    /// the W3C propagators read the header bytes directly.
    ///
    /// ```
    /// use looptel_core::{MessageHeaderExtractor, Propagator};
    /// use opentelemetry::trace::TraceContextExt;
    ///
    /// let headers = MessageHeaderExtractor::new([(
    ///     "traceparent",
    ///     Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]),
    /// )]);
    /// let cx = Propagator::default().extract_message(&headers);
    /// assert_eq!(
    ///     cx.span().span_context().trace_id().to_string(),
    ///     "0af7651916cd43dd8448eb211c80319c"
    /// );
    /// ```
    pub fn extract_message(&self, headers: &crate::MessageHeaderExtractor<'_>) -> Context {
        self.extract_lines_mapped(headers, |sc| sc)
            .unwrap_or_else(|cx| cx)
    }

    /// Extracts from any header lines, the caller's span context (if valid)
    /// passed through `map` on its way into the context; `Err` with the
    /// unmapped context when the propagator is not a W3C one.
    pub(crate) fn extract_lines_mapped<C: Lines + ?Sized>(
        &self,
        carrier: &C,
        map: impl FnOnce(SpanContext) -> SpanContext,
    ) -> Result<Context, Context> {
        self.extract_lines_onto(None, carrier, map)
    }

    /// [`extract_lines_mapped`](Self::extract_lines_mapped) onto `base`
    /// instead of an empty context: the caller's span context and baggage
    /// are added to what `base` holds, `base`'s baggage members winning
    /// over the caller's of the same key.
    pub(crate) fn extract_lines_onto<C: Lines + ?Sized>(
        &self,
        base: Option<Context>,
        carrier: &C,
        map: impl FnOnce(SpanContext) -> SpanContext,
    ) -> Result<Context, Context> {
        let Some(w3c) = self.fast() else {
            let base = base.unwrap_or_default();
            let cx = carrier.with_extractor(&mut |e| self.inner.extract_with_context(&base, e));
            return Err(crate::baggage::keep_members(&base, cx));
        };
        // With no base, the call starts from the caller's baggage: a line
        // seen before gives its context ready-made, shared.
        let mut baggage_read = false;
        let base = match base {
            Some(base) => base,
            None if w3c.baggage => match self.shared_baggage(carrier) {
                Some(cx) => {
                    baggage_read = true;
                    cx
                }
                None => Context::new(),
            },
            None => Context::new(),
        };
        let mut cx = if w3c.trace_context {
            TRACE_CONTEXT.extract_lines_mapped(
                &base,
                carrier.lines(Field::TraceParent),
                || carrier.lines(Field::TraceState),
                map,
            )
        } else {
            base
        };
        if w3c.baggage && !baggage_read && carrier.lines(Field::Baggage).next().is_some() {
            // Reading bytes, a member with a non-ASCII byte is skipped alone;
            // the rest of its line is kept.
            let decoded = crate::baggage::decode(carrier.lines(Field::Baggage));
            cx = crate::baggage::BaggagePropagator::context_under(&cx, decoded);
        }
        Ok(cx)
    }

    /// The context of the caller's one `baggage` line, kept from an
    /// earlier call with the same line or built now; `None` without exactly
    /// one line (several are read and joined the usual way).
    fn shared_baggage<C: Lines + ?Sized>(&self, carrier: &C) -> Option<Context> {
        let mut lines = carrier.lines(Field::Baggage);
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return None;
        };
        let built = self.baggage_contexts.get_or_build(&[line], || {
            let decoded = crate::baggage::decode([line]);
            Ok::<_, std::convert::Infallible>(crate::baggage::BaggagePropagator::context_with(
                &Context::new(),
                decoded,
            ))
        });
        match built {
            Ok(cx) => Some(cx),
            Err(never) => match never {},
        }
    }

    /// Extracts a context from `carrier`; a malformed or missing header gives
    /// an empty context, never an error.
    pub fn extract(&self, carrier: &dyn Extractor) -> Context {
        self.inner.extract(carrier)
    }

    /// Extracts into a copy of `cx`.
    pub fn extract_with_context(&self, cx: &Context, carrier: &dyn Extractor) -> Context {
        self.inner.extract_with_context(cx, carrier)
    }

    /// Injects `cx` into `carrier`.
    pub fn inject(&self, cx: &Context, carrier: &mut dyn Injector) {
        self.inner.inject_context(cx, carrier);
    }

    /// The header names this propagator reads and writes.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.inner.fields()
    }

    /// The wrapped propagator, for APIs that take a `TextMapPropagator`.
    pub fn as_text_map_propagator(&self) -> &(dyn TextMapPropagator + Send + Sync) {
        &*self.inner
    }
}

impl Default for Propagator {
    /// The W3C pair: strict Trace Context
    /// ([`TraceContextPropagator`](crate::tracecontext::TraceContextPropagator))
    /// and Baggage.
    fn default() -> Self {
        Self::w3c(true, true)
    }
}

// Names built once: looking a header up by `&str` parses the name each time.
/// A propagation field the W3C propagators read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Field {
    TraceParent,
    TraceState,
    Baggage,
}

/// Header lines by field, in order: HTTP headers or message headers.
pub(crate) trait Lines {
    /// Every line of `field`, as bytes.
    fn lines(&self, field: Field) -> impl Iterator<Item = &[u8]>;

    /// Runs `f` with the carrier as a generic extractor (for propagators
    /// that are not W3C's).
    fn with_extractor(&self, f: &mut dyn FnMut(&dyn Extractor) -> Context) -> Context;
}

impl Lines for http::HeaderMap {
    fn lines(&self, field: Field) -> impl Iterator<Item = &[u8]> {
        let name = match field {
            Field::TraceParent => &TRACEPARENT_HEADER,
            Field::TraceState => &TRACESTATE_HEADER,
            Field::Baggage => &BAGGAGE_HEADER,
        };
        self.get_all(name).iter().map(http::HeaderValue::as_bytes)
    }

    fn with_extractor(&self, f: &mut dyn FnMut(&dyn Extractor) -> Context) -> Context {
        f(&crate::HeaderExtractor(self))
    }
}

/// An HTTP request's W3C fields, found in one pass over its headers: three
/// map lookups (each hashing the name) cost more than comparing the names
/// of a request's handful of headers once. A field on several lines is
/// read from the map again, in order (rare: `tracestate` or `baggage`
/// split by a proxy).
pub(crate) struct ScannedHeaders<'a> {
    map: &'a http::HeaderMap,
    /// Per field: its first line, and whether there are more.
    found: [(Option<&'a [u8]>, bool); 3],
}

impl<'a> ScannedHeaders<'a> {
    pub(crate) fn new(map: &'a http::HeaderMap) -> Self {
        let mut found = [(None, false); 3];
        for (name, value) in map {
            // By length first: most names are none of the three, and a
            // length is one compare (`scripts/bench.sh`, service-unsampled:
            // the scan 271 -> 196 instructions with a request's handful
            // of headers).
            let field = match name.as_str().len() {
                11 if *name == TRACEPARENT_HEADER => 0,
                10 if *name == TRACESTATE_HEADER => 1,
                7 if *name == BAGGAGE_HEADER => 2,
                _ => continue,
            };
            let slot: &mut (Option<&[u8]>, bool) = &mut found[field];
            if slot.0.is_some() {
                slot.1 = true;
            } else {
                slot.0 = Some(value.as_bytes());
            }
        }
        Self { map, found }
    }
}

/// The lines of one field: the one found, or all of them from the map.
enum FieldLines<'a> {
    One(Option<&'a [u8]>),
    All(http::header::ValueIter<'a, http::HeaderValue>),
}

impl<'a> Iterator for FieldLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            Self::One(line) => line.take(),
            Self::All(values) => values.next().map(http::HeaderValue::as_bytes),
        }
    }
}

impl Lines for ScannedHeaders<'_> {
    fn lines(&self, field: Field) -> impl Iterator<Item = &[u8]> {
        let (i, name) = match field {
            Field::TraceParent => (0, &TRACEPARENT_HEADER),
            Field::TraceState => (1, &TRACESTATE_HEADER),
            Field::Baggage => (2, &BAGGAGE_HEADER),
        };
        match self.found[i] {
            (first, false) => FieldLines::One(first),
            (_, true) => FieldLines::All(self.map.get_all(name).iter()),
        }
    }

    fn with_extractor(&self, f: &mut dyn FnMut(&dyn Extractor) -> Context) -> Context {
        f(&crate::HeaderExtractor(self.map))
    }
}

impl Lines for crate::MessageHeaderExtractor<'_> {
    fn lines(&self, field: Field) -> impl Iterator<Item = &[u8]> {
        let name = match field {
            Field::TraceParent => crate::tracecontext::TRACEPARENT,
            Field::TraceState => crate::tracecontext::TRACESTATE,
            Field::Baggage => crate::baggage::BAGGAGE,
        };
        self.raw(name)
    }

    fn with_extractor(&self, f: &mut dyn FnMut(&dyn Extractor) -> Context) -> Context {
        f(self)
    }
}

static TRACEPARENT_HEADER: http::HeaderName = crate::tracecontext::TRACEPARENT_HEADER;
static TRACESTATE_HEADER: http::HeaderName =
    http::HeaderName::from_static(crate::tracecontext::TRACESTATE);
static BAGGAGE_HEADER: http::HeaderName = http::HeaderName::from_static("baggage");
const TRACE_CONTEXT: crate::tracecontext::TraceContextPropagator =
    crate::tracecontext::TraceContextPropagator::new();

impl TextMapPropagator for Propagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        self.inner.inject_context(cx, injector);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        self.inner.extract_with_context(cx, extractor)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        self.inner.fields()
    }
}

impl fmt::Debug for Propagator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Propagator").field(&self.inner).finish()
    }
}

#[cfg(test)]
mod scanned_tests {
    use super::*;

    fn lines<'a>(h: &'a ScannedHeaders<'a>, field: Field) -> Vec<&'a [u8]> {
        h.lines(field).collect()
    }

    #[test]
    fn one_pass_reads_each_field_as_the_map_does_repeated_lines_in_order() {
        let mut map = http::HeaderMap::new();
        map.insert("host", "orders".parse().expect("value"));
        map.append("tracestate", "a=1".parse().expect("value"));
        map.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .expect("value"),
        );
        map.append("x-other", "x".parse().expect("value"));
        map.append("tracestate", "b=2".parse().expect("value"));
        let scanned = ScannedHeaders::new(&map);
        for field in [Field::TraceParent, Field::TraceState, Field::Baggage] {
            let from_map: Vec<&[u8]> = map.lines(field).collect();
            assert_eq!(lines(&scanned, field), from_map);
        }
        assert_eq!(
            lines(&scanned, Field::TraceState),
            [&b"a=1"[..], &b"b=2"[..]]
        );
        assert!(lines(&scanned, Field::Baggage).is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;
    use std::collections::HashMap;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Extraction onto a base: the base's baggage members win over the
    /// caller's of the same key, whichever propagator reads the caller's
    /// (the direct W3C read, OpenTelemetry's own propagators, extras).
    #[test]
    fn a_bases_members_win_over_the_callers_on_every_path() {
        use opentelemetry::KeyValue;
        use opentelemetry::baggage::BaggageExt;
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", TP.parse().expect("header"));
        headers.insert(
            "baggage",
            "tenant.id=caller,session=s1".parse().expect("header"),
        );
        let base = || Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]);
        let composite = opentelemetry::propagation::TextMapCompositePropagator::new(vec![
            Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
            Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
        ]);
        let propagators = [
            ("w3c", Propagator::default()),
            ("opentelemetry's", Propagator::new(composite)),
        ];
        for (name, p) in propagators {
            let cx = p
                .extract_lines_onto(Some(base()), &ScannedHeaders::new(&headers), |sc| sc)
                .unwrap_or_else(|cx| cx);
            let member = |k: &str| cx.baggage().get(k).map(|v| v.as_str().to_owned());
            assert_eq!(member("tenant.id").as_deref(), Some("acme"), "{name}");
            assert_eq!(member("session").as_deref(), Some("s1"), "{name}");
            assert_eq!(
                cx.span().span_context().trace_id().to_string(),
                "0af7651916cd43dd8448eb211c80319c",
                "{name}"
            );
            // A caller at the member limit: the base's member counts first.
            let full: Vec<String> = (0..64).map(|i| format!("m{i}=v")).collect();
            let mut at_limit = http::HeaderMap::new();
            at_limit.insert("baggage", full.join(",").parse().expect("header"));
            let cx = p
                .extract_lines_onto(Some(base()), &ScannedHeaders::new(&at_limit), |sc| sc)
                .unwrap_or_else(|cx| cx);
            assert_eq!(
                cx.baggage().get("tenant.id").map(|v| v.as_str()),
                Some("acme"),
                "{name}"
            );
            assert_eq!(cx.baggage().len(), 64, "{name}");
            // Without a base, the caller's members as they came.
            let cx = p
                .extract_lines_onto(None, &ScannedHeaders::new(&headers), |sc| sc)
                .unwrap_or_else(|cx| cx);
            assert_eq!(
                cx.baggage().get("tenant.id").map(|v| v.as_str()),
                Some("caller"),
                "{name}"
            );
        }
    }

    /// A caller's `baggage` line seen before gives its context ready-made:
    /// the same members (shared, not copied), whatever the trace context;
    /// other lines, several lines and a base are read as ever.
    #[test]
    fn a_baggage_line_seen_before_is_read_once_and_shared() {
        use opentelemetry::KeyValue;
        use opentelemetry::baggage::BaggageExt;
        let p = Propagator::default();
        let headers = |line: &str, traceparent: Option<&str>| {
            let mut h = http::HeaderMap::new();
            h.append("baggage", line.parse().expect("header"));
            if let Some(tp) = traceparent {
                h.insert("traceparent", tp.parse().expect("header"));
            }
            h
        };
        let extract = |h: &http::HeaderMap, base: Option<Context>| {
            p.extract_lines_onto(base, &ScannedHeaders::new(h), |sc| sc)
                .unwrap_or_else(|cx| cx)
        };
        let ptr = |cx: &Context| cx.baggage().get("tenant.id").map(|v| v.as_str().as_ptr());
        let line = "tenant.id=acme,q=a%20b;ttl=60";
        let first = extract(&headers(line, Some(TP)), None);
        let second = extract(&headers(line, None), None);
        for cx in [&first, &second] {
            assert_eq!(
                cx.baggage().get("tenant.id").map(|v| v.as_str()),
                Some("acme")
            );
            assert_eq!(cx.baggage().get("q").map(|v| v.as_str()), Some("a b"));
            assert_eq!(
                cx.baggage().get_with_metadata("q").map(|(_, m)| m.as_str()),
                Some("ttl=60")
            );
        }
        assert_eq!(ptr(&first), ptr(&second), "shared");
        assert!(first.span().span_context().is_valid());
        assert!(!second.span().span_context().is_valid());
        assert_eq!(p.baggage_contexts.len(), 1);

        let other = extract(&headers("tenant.id=globex", None), None);
        assert_eq!(
            other.baggage().get("tenant.id").map(|v| v.as_str()),
            Some("globex")
        );
        // Two lines: both read, nothing kept for them.
        let mut two = headers("tenant.id=acme", None);
        two.append("baggage", "region=eu".parse().expect("header"));
        let cx = extract(&two, None);
        assert_eq!(cx.baggage().len(), 2);
        assert_eq!(p.baggage_contexts.len(), 2);
        // A base: its members first, the line read onto it.
        let base = Context::new().with_baggage([KeyValue::new("tenant.id", "own")]);
        let cx = extract(&headers(line, None), Some(base));
        assert_eq!(
            cx.baggage().get("tenant.id").map(|v| v.as_str()),
            Some("own")
        );
        assert_eq!(cx.baggage().get("q").map(|v| v.as_str()), Some("a b"));

        // Bounded: lines past the table's size and length still read right,
        // and once it is full it starts over: a line seen after a flood of
        // others is kept and shared all the same.
        for i in 0..2 * SHARED_BAGGAGE_LINES {
            let cx = extract(&headers(&format!("tenant.id=t{i}"), None), None);
            let tenant = cx.baggage().get("tenant.id").map(|v| v.as_str().to_owned());
            assert_eq!(tenant, Some(format!("t{i}")));
            assert!(p.baggage_contexts.len() <= SHARED_BAGGAGE_LINES);
        }
        let late = extract(&headers("tenant.id=late", None), None);
        let again = extract(&headers("tenant.id=late", None), None);
        assert_eq!(ptr(&late), ptr(&again));
        let long = format!("tenant.id={}", "x".repeat(SHARED_BAGGAGE_LINE_LEN));
        let a = extract(&headers(&long, None), None);
        let b = extract(&headers(&long, None), None);
        assert_eq!(
            a.baggage().get("tenant.id").map(|v| v.as_str().len()),
            Some(SHARED_BAGGAGE_LINE_LEN)
        );
        assert_ne!(ptr(&a), ptr(&b));
    }

    #[test]
    fn none_extracts_nothing_and_injects_nothing() {
        let headers = HashMap::from([("traceparent".to_owned(), TP.to_owned())]);
        let p = Propagator::none();
        let cx = p.extract(&headers);
        assert!(!cx.span().span_context().is_valid());
        let remote = Propagator::default().extract(&headers);
        let mut out = HashMap::new();
        p.inject(&remote, &mut out);
        assert!(out.is_empty());
        assert_eq!(p.fields().count(), 0);
    }

    #[test]
    fn default_carries_trace_context_and_baggage() {
        let headers = HashMap::from([
            ("traceparent".to_owned(), TP.to_owned()),
            ("baggage".to_owned(), "tenant.id=acme".to_owned()),
        ]);
        let p = Propagator::default();
        let cx = p.extract(&headers);
        assert!(cx.span().span_context().is_remote());
        let mut out = HashMap::new();
        p.inject(&cx, &mut out);
        assert_eq!(out["traceparent"], TP);
        assert_eq!(out["baggage"], "tenant.id=acme");
        let fields: Vec<_> = p.fields().collect();
        assert!(fields.contains(&"traceparent") && fields.contains(&"baggage"));
    }

    #[test]
    fn default_trace_context_is_the_strict_one() {
        // The SDK's propagator accepts a one-digit flags field; ours does not.
        let headers = HashMap::from([(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1".to_owned(),
        )]);
        let cx = Propagator::default().extract(&headers);
        assert!(!cx.span().span_context().is_valid());
    }

    #[test]
    fn malformed_header_gives_empty_context() {
        let headers = HashMap::from([("traceparent".to_owned(), "00-zz-yy-01".to_owned())]);
        let cx = Propagator::default().extract(&headers);
        assert!(!cx.span().span_context().is_valid());
    }
}
