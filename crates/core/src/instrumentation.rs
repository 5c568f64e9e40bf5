use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

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

#[derive(Debug)]
struct Inner {
    tracer: Option<SdkTracer>,
    propagator: Propagator,
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
            }),
        }
    }

    /// Propagation only, no spans.
    pub fn disabled(propagator: Propagator) -> Self {
        Self {
            inner: Arc::new(Inner {
                tracer: None,
                propagator,
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
}
