use opentelemetry::trace::Status;
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How an operation ended: the one classification that spans, metrics and
/// logs agree on.
///
/// | outcome | span status | log level | `error.type` |
/// |---|---|---|---|
/// | [`Success`](Outcome::Success) | Unset | INFO | — |
/// | [`BusinessError`](Outcome::BusinessError) | Unset | WARN | — |
/// | [`Failure`](Outcome::Failure) | Error, with a description | ERROR | the error class |
///
/// A business error is the caller's problem — a rejected order, a failed
/// validation — and must not page anyone or burn an availability SLO; a
/// failure is the system's (a timeout, a broken dependency).
///
/// ```
/// use looptel_core::Outcome;
///
/// let span = tracing::info_span!("Order.OrderService.PlaceOrder");
/// Outcome::Failure.record(&span, "inventory_unavailable", "inventory service timed out");
/// assert_eq!(Outcome::Failure.level(), tracing::Level::ERROR);
/// assert!(Outcome::Failure.is_error() && !Outcome::BusinessError.is_error());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The operation did what was asked.
    Success,
    /// The request was refused for a business reason (validation, a rule):
    /// not an error of the service.
    BusinessError,
    /// The service failed to do its job.
    Failure,
}

impl Outcome {
    /// The level at which the outcome is logged.
    pub fn level(self) -> Level {
        match self {
            Self::Success => Level::INFO,
            Self::BusinessError => Level::WARN,
            Self::Failure => Level::ERROR,
        }
    }

    /// Whether the outcome counts as an error (span status Error, an error in
    /// RED metrics and availability SLOs).
    pub fn is_error(self) -> bool {
        matches!(self, Self::Failure)
    }

    /// Records the outcome on `span`: for a [`Failure`](Self::Failure) the
    /// status becomes Error with `description` and `error.type` is set to
    /// `error_type` (a low-cardinality class such as `timeout`); other
    /// outcomes leave the status Unset, as the conventions ask.
    pub fn record(self, span: &tracing::Span, error_type: &'static str, description: &str) {
        if self.is_error() {
            span.set_attribute(ERROR_TYPE, error_type);
            span.set_status(Status::error(description.to_owned()));
        }
    }
}

/// An error type that says its own outcome — a business error (a rejected
/// order) or a failure (a broken dependency) — and its low-cardinality
/// class. Business operations ([`Operation`](crate::Operation)) and the
/// engine's messaging classifier read it.
///
/// ```
/// use looptel_core::Outcome;
/// use looptel_core::ErrorOutcome;
///
/// enum PlaceOrderError { OutOfStock, InventoryDown }
///
/// impl ErrorOutcome for PlaceOrderError {
///     fn outcome(&self) -> Outcome {
///         match self {
///             Self::OutOfStock => Outcome::BusinessError,
///             Self::InventoryDown => Outcome::Failure,
///         }
///     }
///     fn error_type(&self) -> &'static str {
///         match self {
///             Self::OutOfStock => "out_of_stock",
///             Self::InventoryDown => "inventory_unavailable",
///         }
///     }
/// }
/// # assert!(PlaceOrderError::InventoryDown.outcome().is_error());
/// ```
pub trait ErrorOutcome {
    /// Business error or failure (the default).
    fn outcome(&self) -> Outcome {
        Outcome::Failure
    }

    /// The low-cardinality class written as `error.type`.
    fn error_type(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    fn record(outcome: Outcome) -> opentelemetry_sdk::trace::SpanData {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("op");
            outcome.record(&span, "timeout", "upstream timed out");
        });
        let mut spans = exporter.get_finished_spans().expect("spans");
        assert_eq!(spans.len(), 1);
        spans.remove(0)
    }

    #[test]
    fn failure_sets_error_status_and_error_type() {
        let span = record(Outcome::Failure);
        assert_eq!(span.status, Status::error("upstream timed out"));
        let error_type = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == ERROR_TYPE);
        assert_eq!(
            error_type.map(|kv| kv.value.as_str().into_owned()),
            Some("timeout".into())
        );
    }

    #[test]
    fn business_error_and_success_leave_status_unset() {
        for outcome in [Outcome::BusinessError, Outcome::Success] {
            let span = record(outcome);
            assert_eq!(span.status, Status::Unset);
            assert!(
                span.attributes
                    .iter()
                    .all(|kv| kv.key.as_str() != ERROR_TYPE)
            );
        }
    }
}
