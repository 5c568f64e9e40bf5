//! `--otlp-listen`: an OTLP/HTTP receiver for the length of the check, so
//! that any service can simply be pointed at the doctor
//! (`OTEL_EXPORTER_OTLP_ENDPOINT=http://doctor:4318`). Traces are kept,
//! as OTLP JSON documents (protobuf bodies re-encoded with
//! `opentelemetry-proto`'s serde mapping, ids in hex); logs and metrics
//! are acknowledged and dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// The largest body taken.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// At most this many documents are kept.
pub const MAX_DOCUMENTS: usize = 100_000;

/// A receiver, listening.
#[derive(Debug)]
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    documents: Arc<Mutex<Vec<String>>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
}

fn protobuf(body: &[u8]) -> Result<String, String> {
    let request = ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())?;
    serde_json::to_string(&request).map_err(|e| e.to_string())
}

async fn traces(
    State(documents): State<Arc<Mutex<Vec<String>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_of = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    let encoding = header_of(header::CONTENT_ENCODING);
    if !encoding.is_empty() && encoding != "identity" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{encoding} bodies are not read: export without compression"),
        )
            .into_response();
    }
    let json = header_of(header::CONTENT_TYPE).starts_with("application/json");
    let document = if json {
        String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
    } else {
        protobuf(&body)
    };
    match document {
        Err(why) => (StatusCode::BAD_REQUEST, why).into_response(),
        Ok(d) => {
            let mut kept = documents.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() < MAX_DOCUMENTS {
                kept.push(d);
            }
            ok(json)
        }
    }
}

/// An empty `Export…ServiceResponse`: all accepted.
fn ok(json: bool) -> Response {
    if json {
        ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    }
}

async fn dropped(headers: HeaderMap) -> Response {
    ok(headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json")))
}

impl Receiver {
    /// Listens on `addr` (`127.0.0.1:4318`).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(addr: &str) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let documents = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/logs", post(dropped))
            .route("/v1/metrics", post(dropped))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(documents.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            documents,
            stop,
            task,
            started: Instant::now(),
        })
    }

    /// Waits until `listen_for` has passed since it started, stops, and
    /// returns the OTLP JSON documents received.
    pub async fn finish(self, listen_for: Duration) -> Vec<String> {
        tokio::time::sleep(listen_for.saturating_sub(self.started.elapsed())).await;
        let _ = self.stop.send(());
        let _ = self.task.await;
        std::mem::take(
            &mut *self
                .documents
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    #[tokio::test]
    async fn protobuf_and_json_bodies_are_kept_compressed_ones_refused() {
        let r = Receiver::bind("127.0.0.1:0").await.expect("bound");
        let url = format!("http://{}/v1/traces", r.addr);
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0x0a; 16],
                        span_id: vec![0x0b; 8],
                        name: "GET /orders".to_owned(),
                        kind: 2,
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let client = reqwest::Client::new();
        let res = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 200);
        assert_eq!(
            res.headers()["content-type"],
            "application/x-protobuf",
            "an empty ExportTraceServiceResponse"
        );
        let json = serde_json::to_string(&request).expect("OTLP JSON");
        let res = client
            .post(&url)
            .header("content-type", "application/json")
            .body(json)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 200);
        let res = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(vec![1, 2, 3])
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 415, "said, not misread");
        let res = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(vec![0xff, 0xff, 0xff])
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), 400);
        let logs = client
            .post(format!("http://{}/v1/logs", r.addr))
            .header("content-type", "application/x-protobuf")
            .body(Vec::new())
            .send()
            .await
            .expect("sent");
        assert_eq!(logs.status(), 200, "acknowledged, dropped");
        let documents = r.finish(Duration::ZERO).await;
        assert_eq!(documents.len(), 2);
        let mut traces = looptel_retro::sources::files::Traces::default();
        for d in &documents {
            traces.add(d, 100);
        }
        let traces = traces.into_traces();
        assert_eq!(traces.len(), 1, "the same trace twice");
        assert_eq!(traces[0].trace_id, "0a".repeat(16));
        assert_eq!(traces[0].spans.len(), 1, "the same span twice is one span");
        assert_eq!(traces[0].spans[0].kind, "SERVER");
    }
}
