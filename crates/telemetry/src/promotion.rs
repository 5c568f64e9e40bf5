//! Baggage promotion as the SDK's span processor.

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

impl SpanProcessor for Promote {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if self.0.is_empty() || !span.is_recording() {
            return;
        }
        let attributes = self.0.attributes(cx);
        if !attributes.is_empty() {
            span.set_attributes(attributes);
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
