use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};

/// The trace id and span id of a span, exactly as its exporter will write them.
///
/// ```
/// use looptel_core::TraceIds;
///
/// // Outside any span there is nothing to correlate with.
/// assert!(TraceIds::current().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceIds {
    trace_id: TraceId,
    span_id: SpanId,
    sampled: bool,
}

impl TraceIds {
    /// The ids of the active OpenTelemetry context on this thread.
    ///
    /// With `tracing-opentelemetry` this is the innermost entered `tracing`
    /// span; `None` outside any span, or when telemetry is disabled.
    pub fn current() -> Option<Self> {
        opentelemetry::Context::map_current(Self::from_context)
    }

    /// The ids of the span in `cx`, if it holds a valid one.
    pub fn from_context(cx: &opentelemetry::Context) -> Option<Self> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }

    /// Ids known without a context (a span of one's own, a message's
    /// header); `None` when either is invalid (all zeros).
    ///
    /// ```
    /// use looptel_core::TraceIds;
    /// use opentelemetry::trace::{SpanId, TraceId};
    ///
    /// let ids = TraceIds::new(TraceId::from(7_u128), SpanId::from(9_u64), true).unwrap();
    /// assert!(ids.is_sampled());
    /// assert!(TraceIds::new(TraceId::INVALID, SpanId::from(9_u64), true).is_none());
    /// ```
    pub fn new(trace_id: TraceId, span_id: SpanId, sampled: bool) -> Option<Self> {
        (trace_id != TraceId::INVALID && span_id != SpanId::INVALID).then_some(Self {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Whether the span is sampled (will be exported).
    pub fn is_sampled(&self) -> bool {
        self.sampled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};

    #[test]
    fn reads_ids_of_an_attached_context() {
        let sc = SpanContext::new(
            TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128),
            SpanId::from(0xb7ad6b7169203331_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let _guard = cx.attach();
        let ids = TraceIds::current().expect("a span is attached");
        assert_eq!(
            ids.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(ids.span_id().to_string(), "b7ad6b7169203331");
        assert!(ids.is_sampled());
    }

    #[test]
    fn invalid_context_has_no_ids() {
        assert_eq!(TraceIds::from_context(&opentelemetry::Context::new()), None);
    }
}
