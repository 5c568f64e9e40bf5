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
    /// them a non-recording span straight away: the request is not traced
    /// either way, and propagation carries the same trace id onwards.
    ///
    /// Default `false`: the sampler decides every span. Declaring it for a
    /// sampler that may sample under an unsampled parent loses those spans.
    ///
    /// ```
    /// use looptel_core::{Instrumentation, Propagator};
    /// use opentelemetry::Context;
    /// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    ///
    /// let provider = SdkTracerProvider::builder().build(); // parent-based by default
    /// let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    /// let caller = SpanContext::new(
    ///     TraceId::from(7), SpanId::from(9), TraceFlags::NOT_SAMPLED, true, TraceState::NONE,
    /// );
    /// let cx = inst
    ///     .unsampled_child(&Context::new().with_remote_span_context(caller))
    ///     .expect("the caller did not sample");
    /// assert_eq!(cx.span().span_context().trace_id(), TraceId::from(7));
    /// assert!(!cx.span().is_recording());
    /// ```
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

    /// The context of a request whose caller did not sample, when the
    /// sampler is [parent-based](Self::parent_based): `parent` with a
    /// non-recording span of the caller's trace (a new span id, the
    /// caller's flags and trace state), made without consulting the
    /// sampler. `None` when the sampler must decide.
    pub fn unsampled_child(&self, parent: &Context) -> Option<Context> {
        if !self.inner.parent_based || self.inner.tracer.is_none() {
            return None;
        }
        let span = parent.span();
        let caller = span.span_context();
        if !caller.is_valid() || caller.is_sampled() {
            return None;
        }
        let sc = SpanContext::new(
            caller.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            caller.trace_flags(),
            false,
            caller.trace_state().clone(),
        );
        Some(parent.with_remote_span_context(sc))
    }
}
