//! A service in the W3C Trace Context test harness's contract.
//!
//! `POST /test` takes a JSON array of `{"url": ..., "arguments": [...]}`.
//! For each element, in order, it POSTs the JSON of `arguments` to `url`
//! through looptel's [`ClientLayer`], in the context of the incoming request
//! (extracted by [`ServerLayer`]), each call with a new span id; it answers
//! 200 with a JSON body once every call has finished. Proxies from the
//! environment are ignored, and header lines up to 16 KiB are accepted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use looptel_core::Instrumentation;
use looptel_http_layer::client::{self, ClientLayer};
use looptel_http_layer::server::ServerLayer;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder, ServiceExt};

/// One call the harness asks for.
#[derive(Debug, Deserialize)]
pub struct Call {
    /// Where to POST.
    pub url: String,
    /// What to POST, as JSON.
    #[serde(default)]
    pub arguments: Value,
}

type Traced = client::Client<Client<HttpConnector, Full<Bytes>>>;

/// The shared client: hyper-util (no proxy support, so no environment
/// proxies), traced by the [`ClientLayer`].
#[derive(Clone, Debug)]
pub struct AppState {
    client: Traced,
}

/// The router: `POST /test`, traced by the [`ServerLayer`].
pub fn app(instrumentation: Instrumentation) -> Router {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ServiceBuilder::new()
        .layer(ClientLayer::new(instrumentation.clone()))
        .service(client);
    Router::new()
        .route("/test", post(test))
        .with_state(AppState { client })
        .layer(ServerLayer::new(instrumentation))
}

async fn test(
    State(state): State<AppState>,
    Json(calls): Json<Vec<Call>>,
) -> (StatusCode, Json<Value>) {
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        results.push(forward(state.client.clone(), call).await);
    }
    (StatusCode::OK, Json(json!({ "results": results })))
}

async fn forward(mut client: Traced, call: Call) -> Value {
    let request = http::Request::post(&call.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(call.arguments.to_string())));
    let request = match request {
        Ok(r) => r,
        Err(e) => return json!({ "url": call.url, "error": e.to_string() }),
    };
    let response = match client.ready().await {
        Ok(ready) => ready.call(request).await,
        Err(e) => Err(e),
    };
    match response {
        Ok(res) => {
            let status = res.status().as_u16();
            // Read the body to the end: the call (and its span) is finished.
            let _ = res.into_body().collect().await;
            json!({ "url": call.url, "status": status })
        }
        Err(e) => json!({ "url": call.url, "error": e.to_string() }),
    }
}
