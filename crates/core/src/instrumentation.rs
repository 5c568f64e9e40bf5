use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::global::ObjectSafeSpan;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{
    Link, SpanBuilder, SpanContext, SpanId, TraceContextExt, Tracer, TracerProvider,
};
use rand::{Rng as _, SeedableRng as _};

use crate::{Propagator, SemconvOptIn};

/// A tracer behind one dynamic call per span: layers depend on the
/// OpenTelemetry API only, any tracer provider fits, and the span is put
/// into its context as the concrete type (boxed once there, as the API
/// does for every span — the API's `BoxedTracer` would box it twice).
trait StartSpan: Send + Sync {
    fn start(
        &self,
        builder: SpanBuilder,
        parent: Context,
        fill: &mut dyn FnMut(&mut dyn ObjectSafeSpan),
    ) -> Context;
}

impl<T> StartSpan for T
where
    T: Tracer + Send + Sync,
    T::Span: Send + Sync + 'static,
{
    #[inline]
    fn start(
        &self,
        builder: SpanBuilder,
        parent: Context,
        fill: &mut dyn FnMut(&mut dyn ObjectSafeSpan),
    ) -> Context {
        let mut span = self.build_with_context(builder, &parent);
        fill(&mut span);
        parent.with_span(span)
    }
}

/// The default bound on attributes taken from a request's text: long
/// enough for any honest path, query or user agent, short enough that a
/// caller cannot make every exported span carry kilobytes of its choosing.
pub const DEFAULT_REQUEST_VALUE_LIMIT: usize = 1024;

/// `value` cut to at most `limit` bytes, at a character boundary.
///
/// ```
/// assert_eq!(looptel_core::bounded("héllo", 2), "h");
/// assert_eq!(looptel_core::bounded("hello", 10), "hello");
/// ```
pub fn bounded(value: &str, limit: usize) -> &str {
    if value.len() <= limit {
        return value;
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// What an instrumentation layer needs, built once at start-up: the tracer
/// its spans come from and the propagator it extracts and injects with.
///
/// Cheap to clone. With telemetry disabled there is no tracer: layers still
/// propagate context but create no spans.
///
/// Any tracer provider fits (the SDK's, a vendor's): looptel's layers
/// depend on the OpenTelemetry API only.
///
/// ```
/// use looptel_core::{Instrumentation, Propagator};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let provider = SdkTracerProvider::builder().build();
/// let inst = Instrumentation::new(&provider, Propagator::default());
/// assert!(inst.is_tracing());
/// assert!(!Instrumentation::disabled(Propagator::default()).is_tracing());
/// ```
#[derive(Clone, Debug)]
pub struct Instrumentation {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    tracer: Option<Arc<dyn StartSpan>>,
    propagator: Propagator,
    parent_based: bool,
    semconv: SemconvOptIn,
    value_limit: usize,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumentation")
            .field("tracing", &self.tracer.is_some())
            .field("propagator", &self.propagator)
            .field("parent_based", &self.parent_based)
            .field("semconv", &self.semconv)
            .field("value_limit", &self.value_limit)
            .finish()
    }
}

/// The instrumentation scope name of looptel's spans.
pub const SCOPE: &str = "looptel";

impl Instrumentation {
    /// Spans from `provider`, under the [`SCOPE`] name.
    pub fn new<P>(provider: &P, propagator: Propagator) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        Self {
            inner: Arc::new(Inner {
                tracer: Some(Arc::new(provider.tracer(SCOPE))),
                propagator,
                parent_based: false,
                semconv: SemconvOptIn::default(),
                value_limit: DEFAULT_REQUEST_VALUE_LIMIT,
            }),
        }
    }

    /// Propagation only, no spans.
    pub fn disabled(propagator: Propagator) -> Self {
        Self {
            inner: Arc::new(Inner {
                tracer: None,
                propagator,
                parent_based: false,
                semconv: SemconvOptIn::default(),
                value_limit: DEFAULT_REQUEST_VALUE_LIMIT,
            }),
        }
    }

    /// Whether spans are made (`false` when telemetry is disabled: layers
    /// still propagate context).
    #[inline]
    pub fn is_tracing(&self) -> bool {
        self.inner.tracer.is_some()
    }

    /// Starts the span of `builder` where `start` says (its links added),
    /// calls `fill` with it before it goes into its context (to name it,
    /// set the attributes only a recording span needs), and returns that
    /// context. Without a tracer ([`disabled`](Self::disabled)), the parent
    /// context, and `fill` is not called.
    ///
    /// ```
    /// use looptel_core::{Instrumentation, Propagator, SpanStart};
    /// use opentelemetry::trace::{SpanBuilder, TraceContextExt};
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let inst = Instrumentation::new(&provider, Propagator::default());
    /// let cx = inst.start_span(
    ///     SpanStart::child_of(opentelemetry::Context::new()),
    ///     SpanBuilder::from_name("GET"),
    ///     &mut |span| {
    ///         if span.is_recording() {
    ///             span.update_name("GET /orders/{id}".into());
    ///         }
    ///     },
    /// );
    /// assert!(cx.span().span_context().is_sampled());
    /// ```
    #[inline]
    pub fn start_span(
        &self,
        start: SpanStart,
        builder: SpanBuilder,
        fill: &mut dyn FnMut(&mut dyn ObjectSafeSpan),
    ) -> Context {
        let Some(tracer) = &self.inner.tracer else {
            return start.parent;
        };
        let builder = if start.links.is_empty() {
            builder
        } else {
            builder.with_links(start.links)
        };
        tracer.start(builder, start.parent, fill)
    }

    /// The propagator.
    pub fn propagator(&self) -> &Propagator {
        &self.inner.propagator
    }

    /// Declares that the provider's sampler keeps the decision of a parent
    /// that did not sample (every `parentbased_*` sampler with its default
    /// delegates does; `looptel-telemetry` declares it for the samplers it
    /// builds). Layers then skip the sampler for such requests and give
    /// them a non-recording span straight away (see
    /// [`extract_request`](Self::extract_request)): the request is not
    /// traced either way, and propagation carries the same trace id onwards.
    ///
    /// Default `false`: the sampler decides every span. Declaring it for a
    /// sampler that may sample under an unsampled parent loses those spans.
    #[must_use]
    pub fn parent_based(self, parent_based: bool) -> Self {
        self.with_inner(|inner| inner.parent_based = parent_based)
    }

    /// Whether the sampler was declared [parent-based](Self::parent_based).
    pub fn is_parent_based(&self) -> bool {
        self.inner.parent_based
    }

    /// Which names the layers emit beside the current ones
    /// (`OTEL_SEMCONV_STABILITY_OPT_IN`; `looptel-telemetry` reads it).
    #[must_use]
    pub fn with_semconv(self, semconv: SemconvOptIn) -> Self {
        self.with_inner(|inner| inner.semconv = semconv)
    }

    /// A start-up setting changed (copied when the handle is shared).
    fn with_inner(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// See [`with_semconv`](Self::with_semconv).
    pub fn semconv(&self) -> SemconvOptIn {
        self.inner.semconv
    }

    /// The longest value, in bytes, layers give an attribute taken from a
    /// request — `url.path`, `url.query`, `user_agent.original`,
    /// `client.address` — cut at a character boundary beyond it (default
    /// [`DEFAULT_REQUEST_VALUE_LIMIT`]; `looptel-telemetry` sets it from
    /// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` /
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` when they are set).
    #[must_use]
    pub fn with_value_limit(self, limit: usize) -> Self {
        self.with_inner(|inner| inner.value_limit = limit)
    }

    /// See [`with_value_limit`](Self::with_value_limit).
    pub fn value_limit(&self) -> usize {
        self.inner.value_limit
    }

    /// The context an incoming request runs in, from its headers. When the
    /// caller did not sample, the sampler is [parent-based](Self::parent_based)
    /// and `trust_caller` holds (not a public endpoint), the sampler has
    /// nothing to decide: the context already holds the request's own
    /// non-recording span — a new span id in the caller's trace, with its
    /// flags and trace state — built without a span of the caller's first.
    ///
    /// ```
    /// use looptel_core::{Extracted, Instrumentation, Propagator};
    /// use opentelemetry::trace::TraceContextExt;
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build(); // parent-based by default
    /// let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert(
    ///     "traceparent",
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".parse().unwrap(),
    /// );
    /// let Extracted::UnsampledChild(cx) = inst.extract_request(&headers, true) else {
    ///     panic!("the caller did not sample");
    /// };
    /// let span = cx.span();
    /// assert_eq!(span.span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
    /// assert_ne!(span.span_context().span_id().to_string(), "b7ad6b7169203331");
    /// assert!(!span.is_recording());
    /// ```
    pub fn extract_request(&self, headers: &http::HeaderMap, trust_caller: bool) -> Extracted {
        self.extract_lines(
            None,
            &crate::propagation::ScannedHeaders::new(headers),
            trust_caller,
        )
    }

    /// [`extract_request`](Self::extract_request) onto `base` instead of an
    /// empty context: the caller's span context, trace state and baggage
    /// are added to what `base` holds (baggage members a service set for
    /// itself, say), in one step. `base`'s baggage members win over the
    /// caller's of the same key and count first against the W3C limits.
    ///
    /// ```
    /// use looptel_core::{Extracted, Instrumentation, Propagator};
    /// use opentelemetry::baggage::BaggageExt;
    /// use opentelemetry::{Context, KeyValue};
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let inst = Instrumentation::new(&provider, Propagator::default());
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("baggage", "tenant.id=caller,region=eu".parse().unwrap());
    /// let base = Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]);
    /// let Extracted::Remote(cx) = inst.extract_request_onto(base, &headers, true) else {
    ///     panic!("no traceparent: the sampler decides");
    /// };
    /// assert_eq!(cx.baggage().get("tenant.id").map(|v| v.as_str()), Some("acme"));
    /// assert_eq!(cx.baggage().get("region").map(|v| v.as_str()), Some("eu"));
    /// ```
    pub fn extract_request_onto(
        &self,
        base: Context,
        headers: &http::HeaderMap,
        trust_caller: bool,
    ) -> Extracted {
        self.extract_lines(
            Some(base),
            &crate::propagation::ScannedHeaders::new(headers),
            trust_caller,
        )
    }

    /// [`extract_request`](Self::extract_request) from message headers —
    /// Kafka, AMQP, NATS — with the same trust rule, the same unsampled
    /// shortcut and the same direct read of the W3C fields.
    pub fn extract_message(
        &self,
        headers: &crate::MessageHeaderExtractor<'_>,
        trust_caller: bool,
    ) -> Extracted {
        self.extract_lines(None, headers, trust_caller)
    }

    /// [`extract_message`](Self::extract_message) onto `base`, as
    /// [`extract_request_onto`](Self::extract_request_onto) does for HTTP.
    pub fn extract_message_onto(
        &self,
        base: Context,
        headers: &crate::MessageHeaderExtractor<'_>,
        trust_caller: bool,
    ) -> Extracted {
        self.extract_lines(Some(base), headers, trust_caller)
    }

    fn extract_lines<C: crate::propagation::Lines + ?Sized>(
        &self,
        base: Option<Context>,
        carrier: &C,
        trust_caller: bool,
    ) -> Extracted {
        let propagator = &self.inner.propagator;
        if !self.may_skip_sampler(trust_caller) {
            return Extracted::Remote(
                propagator
                    .extract_lines_onto(base, carrier, |sc| sc)
                    .unwrap_or_else(|cx| cx),
            );
        }
        let mut child = false;
        let mapped = propagator.extract_lines_onto(base, carrier, |caller| {
            unsampled_child(&caller)
                .inspect(|_| child = true)
                .unwrap_or(caller)
        });
        match mapped {
            Ok(cx) if child => Extracted::UnsampledChild(cx),
            Ok(cx) => Extracted::Remote(cx),
            // Not a W3C propagator: replace the caller's span instead.
            Err(cx) => Extracted::replacing_unsampled(cx),
        }
    }

    /// [`extract_request`](Self::extract_request) from any carrier: gRPC
    /// metadata, Kafka or AMQP message headers — the same trust rule and
    /// the same unsampled shortcut.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use looptel_core::{Extracted, Instrumentation, Propagator};
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    /// let headers = HashMap::from([(
    ///     "traceparent".to_owned(),
    ///     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00".to_owned(),
    /// )]);
    /// assert!(matches!(inst.extract(&headers, true), Extracted::UnsampledChild(_)));
    /// // Outside the trust boundary the caller's decision does not count.
    /// assert!(matches!(inst.extract(&headers, false), Extracted::Remote(_)));
    /// ```
    pub fn extract(&self, carrier: &dyn Extractor, trust_caller: bool) -> Extracted {
        let cx = self.inner.propagator.extract(carrier);
        if self.may_skip_sampler(trust_caller) {
            Extracted::replacing_unsampled(cx)
        } else {
            Extracted::Remote(cx)
        }
    }

    /// Whether an unsampled, trusted caller's request may skip the sampler.
    fn may_skip_sampler(&self, trust_caller: bool) -> bool {
        trust_caller && self.inner.parent_based && self.inner.tracer.is_some()
    }
}

/// The context an incoming request runs in; see
/// [`Instrumentation::extract_request`].
#[derive(Clone, Debug)]
pub enum Extracted {
    /// The caller's context (or an empty one): the request's span is the
    /// sampler's to decide.
    Remote(Context),
    /// The caller did not sample and the sampler follows it: the context
    /// holds the request's own non-recording span already.
    UnsampledChild(Context),
}

impl Extracted {
    /// The caller's context, its span replaced by the request's own
    /// non-recording one when the caller did not sample.
    fn replacing_unsampled(cx: Context) -> Self {
        match unsampled_child(cx.span().span_context()) {
            Some(child) => Self::UnsampledChild(cx.with_remote_span_context(child)),
            None => Self::Remote(cx),
        }
    }
}

/// Where a span starts: the context it is a child of, and the contexts it
/// links to. The trust decision lives here once for every transport: a
/// caller outside the trust boundary gets a new root that links to its
/// context, and none of its context (baggage) is taken in.
///
/// ```
/// use looptel_core::SpanStart;
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
///
/// let caller = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
///     TraceId::from(1), SpanId::from(2), TraceFlags::SAMPLED, true, TraceState::default(),
/// ));
/// let public = SpanStart::from_remote(caller.clone(), true);
/// assert!(!public.parent().has_active_span());
/// assert_eq!(public.links().len(), 1);
/// let trusted = SpanStart::from_remote(caller, false);
/// assert!(trusted.parent().has_active_span() && trusted.links().is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct SpanStart {
    parent: Context,
    links: Vec<Link>,
}

impl SpanStart {
    /// A child of `parent` (the current context, a trusted caller's).
    #[inline]
    pub fn child_of(parent: Context) -> Self {
        Self {
            parent,
            links: Vec::new(),
        }
    }

    /// A new root linked to `links` (the messages of a batch, say).
    #[inline]
    pub fn root_linked(links: Vec<Link>) -> Self {
        Self {
            parent: Context::new(),
            links,
        }
    }

    /// A new root linked to the caller's context (when valid), keeping the
    /// caller's baggage: a consumer's `process` span in link mode, whose
    /// producer is trusted but whose trace is its own.
    pub fn linked_to(remote: &Context) -> Self {
        let sc = remote.span().span_context().clone();
        let links = if sc.is_valid() {
            vec![Link::with_context(sc)]
        } else {
            Vec::new()
        };
        let mut start = Self::root_linked(links);
        let baggage = remote.baggage();
        if !baggage.is_empty() {
            start.parent = Context::new().with_baggage(crate::baggage::copy(baggage));
        }
        start
    }

    /// From a caller's context: its child, or — when `public` (outside the
    /// trust boundary) and the context is valid — a new root linked to it.
    #[inline]
    pub fn from_remote(remote: Context, public: bool) -> Self {
        let link = public
            .then(|| remote.span().span_context().clone())
            .filter(SpanContext::is_valid);
        if let Some(sc) = link {
            Self::root_linked(vec![Link::with_context(sc)])
        } else {
            Self::child_of(remote)
        }
    }

    /// The context the span starts in.
    pub fn parent(&self) -> &Context {
        &self.parent
    }

    /// The context the span starts in, to change before it does (a hook
    /// dropping baggage).
    #[inline]
    pub fn parent_mut(&mut self) -> &mut Context {
        &mut self.parent
    }

    /// The links the span starts with.
    pub fn links(&self) -> &[Link] {
        &self.links
    }
}

/// The non-recording span of a request, when its caller (valid) did not
/// sample.
fn unsampled_child(caller: &SpanContext) -> Option<SpanContext> {
    (caller.is_valid() && !caller.is_sampled()).then(|| {
        SpanContext::new(
            caller.trace_id(),
            new_span_id(),
            caller.trace_flags(),
            false,
            caller.trace_state().clone(),
        )
    })
}

thread_local! {
    /// Per-thread span-id generator, seeded from the OS, as the SDK's
    /// `RandomIdGenerator` is.
    static SPAN_IDS: RefCell<rand::rngs::SmallRng> = RefCell::new(rand::rngs::SmallRng::from_os_rng());
}

/// A random, valid (non-zero) span id.
fn new_span_id() -> SpanId {
    SPAN_IDS.with(|rng| {
        let mut rng = rng.borrow_mut();
        loop {
            let id: u64 = rng.random();
            if id != 0 {
                return SpanId::from(id);
            }
        }
    })
}
