//! Tracing for [`reqwest`] through [`reqwest_middleware`].
//!
//! ```
//! use looptel_core::{Instrumentation, Propagator};
//! use looptel_http_layer::reqwest::TracingMiddleware;
//!
//! # let inst = Instrumentation::disabled(Propagator::default());
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(TracingMiddleware::new(inst))
//!     .build();
//! # let _ = client;
//! ```
//!
//! Each request gets the same CLIENT span as with
//! [`ClientLayer`](crate::client::ClientLayer); it ends when the response
//! headers arrive.

use http::Extensions;
use looptel_core::Instrumentation;
use looptel_engine::{Call, Classify, ClassifyError, Derive, HttpClient, RequestHook};
use reqwest_middleware::{Middleware, Next, Result};

use crate::client::start_client_span;

/// Traces and propagates each request of a `reqwest_middleware` client.
#[derive(Clone, Debug)]
pub struct TracingMiddleware<H = ()> {
    instrumentation: Instrumentation,
    hooks: H,
}

impl TracingMiddleware {
    /// The middleware.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self {
            instrumentation,
            hooks: (),
        }
    }
}

impl<H> TracingMiddleware<H> {
    /// Runs `hook` for every request, with the CLIENT span as its context,
    /// ending when the response head arrives or the request fails — the
    /// client's RED metrics (`looptel_red_metrics::HttpClientMetrics`).
    /// The hook sees the request's method and URL as an
    /// `http::Request<()>`.
    #[must_use]
    pub fn hook<H2>(self, hook: H2) -> TracingMiddleware<(H, H2)> {
        TracingMiddleware {
            instrumentation: self.instrumentation,
            hooks: (self.hooks, hook),
        }
    }
}

#[async_trait::async_trait]
impl<H: RequestHook<http::Request<()>>> Middleware for TracingMiddleware<H> {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let uri: Option<http::Uri> = req.url().as_str().parse().ok();
        let method = req.method().clone();
        let call = uri.map(|uri| {
            let (mut cx, owned) =
                start_client_span(&self.instrumentation, &method, &uri, req.headers_mut());
            let mut view = http::Request::new(());
            *view.method_mut() = method.clone();
            *view.uri_mut() = uri;
            let hooks = self.hooks.start(&view, &view.derive(), &mut cx);
            Call::new(cx, owned, hooks)
        });
        let result = next.run(req, extensions).await;
        if let Some(call) = call {
            call.end(match &result {
                Ok(res) => HttpClient
                    .classify_response(res.status(), res.headers())
                    .unwrap_or_else(|| HttpClient.classify_eos(None)),
                Err(e) => HttpClient.classify_error(e),
            });
        }
        result
    }
}
