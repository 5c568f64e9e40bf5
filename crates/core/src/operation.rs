//! Business operations the seed's way — a span named `Domain.Service.Action`
//! whose status, `error.type` and log line follow from the result — without
//! the boilerplate.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use tracing::Instrument as _;

use crate::{ErrorOutcome, Outcome};

/// A business operation named `Domain.Service.Action`
/// (`Order.OrderService.PlaceOrder`), the name checked once when it is
/// built. Each run gets its own span (a child of the current one, named
/// after the operation) and, from its result:
///
/// | result | span status | `error.type` | one log line |
/// |---|---|---|---|
/// | `Ok` | Unset | — | INFO, the success message |
/// | `Err`, a business error | Unset | — | WARN, the rejection message, `error.type` and `reason` |
/// | `Err`, a failure | Error, the error's text | the error's class | ERROR, the failure message, `error.type` and `error` |
///
/// The error type says which it is through [`ErrorOutcome`]. An optional
/// hook ([`on_end`](Self::on_end)) sees every outcome — a business counter.
///
/// ```
/// use looptel_core::{ErrorOutcome, Operation, Outcome};
///
/// #[derive(Debug)]
/// enum PlaceOrderError { Empty, InventoryDown }
/// impl std::fmt::Display for PlaceOrderError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str(match self { Self::Empty => "no items", Self::InventoryDown => "inventory down" })
///     }
/// }
/// impl ErrorOutcome for PlaceOrderError {
///     fn outcome(&self) -> Outcome {
///         match self { Self::Empty => Outcome::BusinessError, Self::InventoryDown => Outcome::Failure }
///     }
///     fn error_type(&self) -> &'static str {
///         match self { Self::Empty => "invalid_order", Self::InventoryDown => "inventory_unavailable" }
///     }
/// }
///
/// let place_order = Operation::new("Order.OrderService.PlaceOrder")
///     .unwrap()
///     .messages("order placed", "order rejected", "order failed");
/// # tokio_test_block_on(async {
/// let placed: Result<u32, PlaceOrderError> = place_order.run(async { Ok(7) }).await;
/// assert_eq!(placed.unwrap(), 7);
/// # });
/// assert!(Operation::new("placeOrder").is_err());
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     let waker = std::task::Waker::noop();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     let mut f = std::pin::pin!(f);
/// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } }
/// # }
/// ```
///
/// Cheap to clone (one reference count): keep it in the application state.
#[derive(Clone)]
pub struct Operation {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    name: &'static str,
    messages: Messages,
    on_end: Option<Arc<dyn Fn(Outcome) + Send + Sync>>,
}

#[derive(Clone, Copy, Debug)]
struct Messages {
    success: &'static str,
    rejected: &'static str,
    failed: &'static str,
}

/// A name that is not `Domain.Service.Action`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationNameError {
    name: String,
}

impl fmt::Display for OperationNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operation name {:?} is not Domain.Service.Action: three dot-separated \
             names, each an ASCII capital letter then letters and digits",
            self.name
        )
    }
}

impl std::error::Error for OperationNameError {}

/// `Domain.Service.Action`: three segments, each `[A-Z][A-Za-z0-9]*`.
fn is_operation_name(name: &str) -> bool {
    let mut segments = 0;
    for segment in name.split('.') {
        segments += 1;
        let mut bytes = segment.bytes();
        let starts_upper = bytes.next().is_some_and(|b| b.is_ascii_uppercase());
        if !starts_upper || !bytes.all(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
    }
    segments == 3
}

impl Operation {
    /// The operation `name`, if it is `Domain.Service.Action`. Log
    /// messages default to `operation succeeded`, `operation rejected` and
    /// `operation failed`, the line's `operation` field naming it (see
    /// [`messages`](Self::messages)).
    pub fn new(name: &'static str) -> Result<Self, OperationNameError> {
        if !is_operation_name(name) {
            return Err(OperationNameError {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name,
                messages: Messages {
                    success: "operation succeeded",
                    rejected: "operation rejected",
                    failed: "operation failed",
                },
                on_end: None,
            }),
        })
    }

    /// The messages of the log line written for a success, a business
    /// error and a failure.
    #[must_use]
    pub fn messages(
        mut self,
        success: &'static str,
        rejected: &'static str,
        failed: &'static str,
    ) -> Self {
        Arc::make_mut(&mut self.inner).messages = Messages {
            success,
            rejected,
            failed,
        };
        self
    }

    /// Runs `hook` with each run's outcome, inside its span (so a counter
    /// takes the span as its exemplar).
    #[must_use]
    pub fn on_end(mut self, hook: impl Fn(Outcome) + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.inner).on_end = Some(Arc::new(hook));
        self
    }

    /// The name.
    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    /// A new span of this operation, a child of the current one; exported
    /// under the operation's name.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "operation",
            otel.name = self.inner.name,
            operation = self.inner.name
        )
    }

    /// Runs `work` in a new span of this operation and ends it as the
    /// result says.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: ErrorOutcome + fmt::Display,
    {
        let span = self.span();
        let result = work.instrument(span.clone()).await;
        self.end(&span, &result);
        result
    }

    /// Records `result` on `span` (one of this operation's): status,
    /// `error.type`, the log line, the [`on_end`](Self::on_end) hook.
    pub fn end<T, E>(&self, span: &tracing::Span, result: &Result<T, E>)
    where
        E: ErrorOutcome + fmt::Display,
    {
        let _entered = span.enter();
        let m = self.inner.messages;
        let outcome = match result {
            Ok(_) => {
                tracing::info!(operation = self.inner.name, "{}", m.success);
                Outcome::Success
            }
            Err(e) => {
                let outcome = e.outcome();
                let error_type = e.error_type();
                outcome.record(span, error_type, &e.to_string());
                if outcome.is_error() {
                    tracing::error!(operation = self.inner.name, error.type = error_type, error = %e, "{}", m.failed);
                } else {
                    tracing::warn!(operation = self.inner.name, error.type = error_type, reason = %e, "{}", m.rejected);
                }
                outcome
            }
        };
        if let Some(hook) = &self.inner.on_end {
            hook(outcome);
        }
    }
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("name", &self.inner.name)
            .field("messages", &self.inner.messages)
            .field("on_end", &self.inner.on_end.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_domain_service_action() {
        for good in [
            "Order.OrderService.PlaceOrder",
            "A.B.C",
            "Billing.V2Api.Refund1",
        ] {
            assert!(Operation::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "PlaceOrder",
            "Order.PlaceOrder",
            "Order.OrderService.PlaceOrder.Extra",
            "order.OrderService.PlaceOrder",
            "Order..PlaceOrder",
            "Order.Order Service.PlaceOrder",
            "Order.OrderService.Place-Order",
            "Ördér.OrderService.PlaceOrder",
        ] {
            let e = Operation::new(bad).expect_err(bad);
            assert!(e.to_string().contains("Domain.Service.Action"));
        }
    }
}
