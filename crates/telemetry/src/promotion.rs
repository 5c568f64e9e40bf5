//! Baggage promotion onto spans as they start: inside the first built-in
//! batch processor, or as a span processor of its own when there is none.

use std::time::Duration;

use looptel_core::BaggagePromotion;
use opentelemetry::Context;
use opentelemetry::trace::Span as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

/// Copies the promoted members of the parent context's baggage onto every
/// span as it starts, before any exporter sees it.
#[derive(Debug)]
pub(crate) struct Promote(pub(crate) BaggagePromotion);

/// Sets the promoted members of `cx`'s baggage on `span`.
pub(crate) fn promote(promotion: &BaggagePromotion, span: &mut Span, cx: &Context) {
    if promotion.is_empty() || !span.is_recording() {
        return;
    }
    // One by one: no vector to build and free for a member or two.
    for attribute in promotion.attributes(cx) {
        span.set_attribute(attribute);
    }
}

impl SpanProcessor for Promote {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        promote(&self.0, span, cx);
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
