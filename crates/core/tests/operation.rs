//! A business operation: its span, status, `error.type` and hook follow
//! from the result, once per run.

use std::sync::{Arc, Mutex};

use looptel_core::{ErrorOutcome, Operation, Outcome};
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug)]
enum Refusal {
    Rejected,
    Broken,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rejected => "not allowed",
            Self::Broken => "backend down",
        })
    }
}

impl ErrorOutcome for Refusal {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Rejected => Outcome::BusinessError,
            Self::Broken => Outcome::Failure,
        }
    }
    fn error_type(&self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Broken => "backend_unavailable",
        }
    }
}

#[tokio::test]
async fn each_run_gets_a_span_and_one_outcome() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let op = Operation::new("Billing.InvoiceService.Issue")
        .expect("valid name")
        .on_end(move |o| log.lock().expect("log").push(o));
    let shared = op.clone(); // clones share the hook

    assert_eq!(op.run(async { Ok::<_, Refusal>(1) }).await.ok(), Some(1));
    assert!(
        shared
            .run(async { Err::<(), _>(Refusal::Rejected) })
            .await
            .is_err()
    );
    assert!(
        op.run(async { Err::<(), _>(Refusal::Broken) })
            .await
            .is_err()
    );

    assert_eq!(
        *seen.lock().expect("log"),
        [Outcome::Success, Outcome::BusinessError, Outcome::Failure]
    );
    let spans = exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.len(), 3);
    assert!(
        spans
            .iter()
            .all(|s| s.name == "Billing.InvoiceService.Issue")
    );
    let error_type = |i: usize| {
        spans[i]
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "error.type")
            .map(|kv| kv.value.as_str().into_owned())
    };
    assert_eq!(
        (spans[0].status.clone(), error_type(0)),
        (Status::Unset, None)
    );
    assert_eq!(
        (spans[1].status.clone(), error_type(1)),
        (Status::Unset, None)
    );
    assert_eq!(spans[2].status, Status::error("backend down"));
    assert_eq!(error_type(2).as_deref(), Some("backend_unavailable"));
}
