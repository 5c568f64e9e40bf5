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
use opentelemetry::trace::TraceContextExt;
use reqwest_middleware::{Middleware, Next, Result};

use crate::body::Finish;
use crate::client::future::{record_error, record_status};
use crate::client::start_client_span;

/// Traces and propagates each request of a `reqwest_middleware` client.
#[derive(Clone, Debug)]
pub struct TracingMiddleware {
    instrumentation: Instrumentation,
}

impl TracingMiddleware {
    /// The middleware.
    pub fn new(instrumentation: Instrumentation) -> Self {
        Self { instrumentation }
    }
}

#[async_trait::async_trait]
impl Middleware for TracingMiddleware {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<reqwest::Response> {
        let uri: Option<http::Uri> = req.url().as_str().parse().ok();
        let method = req.method().clone();
        let span = match uri {
            Some(uri) => start_client_span(&self.instrumentation, &method, &uri, req.headers_mut()),
            None => None,
        };
        let result = next.run(req, extensions).await;
        if let Some(cx) = span {
            match &result {
                Ok(res) => record_status(&cx, res.status()),
                Err(e) => record_error(&cx, e),
            }
            debug_assert!(cx.has_active_span());
            drop(Finish::span(cx));
        }
        result
    }
}
