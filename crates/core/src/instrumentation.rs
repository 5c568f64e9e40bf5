use std::sync::Arc;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

use crate::Propagator;

/// What an instrumentation layer needs, built once at start-up: the tracer
/// its spans come from and the propagator it extracts and injects with.
///
/// Cheap to clone. With telemetry disabled there is no tracer: layers still
/// propagate context but create no spans.
///
/// ```
/// use looptel_core::{Instrumentation, Propagator};
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let provider = SdkTracerProvider::builder().build();
/// let inst = Instrumentation::new(&provider, Propagator::default());
/// assert!(inst.tracer().is_some());
/// assert!(Instrumentation::disabled(Propagator::default()).tracer().is_none());
/// ```
#[derive(Clone, Debug)]
pub struct Instrumentation {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug)]
struct Inner {
    tracer: Option<SdkTracer>,
    propagator: Propagator,
    parent_based: bool,
}

/// The instrumentation scope name of looptel's spans.
pub const SCOPE: &str = "looptel";

impl Instrumentation {
    /// Spans from `provider`, under the [`SCOPE`] name.
    pub fn new(provider: &SdkTracerProvider, propagator: Propagator) -> Self {
        Self {
            inner: Arc::new(Inner {
                tracer: Some(provider.tracer(SCOPE)),
                propagator,
                parent_based: false,
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
            }),
        }
    }

    /// The tracer, `None` when telemetry is disabled.
    pub fn tracer(&self) -> Option<&SdkTracer> {
        self.inner.tracer.as_ref()
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
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.parent_based = parent_based;
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Whether the sampler was declared [parent-based](Self::parent_based).
    pub fn is_parent_based(&self) -> bool {
        self.inner.parent_based
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
        let propagator = &self.inner.propagator;
        if !(trust_caller && self.inner.parent_based && self.inner.tracer.is_some()) {
            return Extracted::Remote(propagator.extract_headers(headers));
        }
        let mut child = false;
        let mapped = propagator.extract_headers_mapped(headers, |caller| {
            unsampled_child(&caller)
                .inspect(|_| child = true)
                .unwrap_or(caller)
        });
        match mapped {
            Ok(cx) if child => Extracted::UnsampledChild(cx),
            Ok(cx) => Extracted::Remote(cx),
            Err(cx) => {
                // Not a W3C propagator: replace the caller's span instead.
                let child = unsampled_child(cx.span().span_context());
                match child {
                    Some(child) => Extracted::UnsampledChild(cx.with_remote_span_context(child)),
                    None => Extracted::Remote(cx),
                }
            }
        }
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

/// The non-recording span of a request, when its caller (valid) did not
/// sample.
fn unsampled_child(caller: &SpanContext) -> Option<SpanContext> {
    (caller.is_valid() && !caller.is_sampled()).then(|| {
        SpanContext::new(
            caller.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            caller.trace_flags(),
            false,
            caller.trace_state().clone(),
        )
    })
}
