//! Names the server span after the route once the router has matched it.

use std::task::{Context, Poll};

use http::Request;
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_semantic_conventions::attribute::HTTP_ROUTE;
use tower_layer::Layer;
use tower_service::Service;

use crate::attributes::span_name;

/// For a [`ServerLayer`](super::ServerLayer) placed *outside* an axum
/// `Router` (around the whole app, as with a `ServiceBuilder`), where the
/// route is not known yet when the span starts: add `RouteLayer` inside the
/// router with `Router::layer`, and the current server span is renamed
/// `{method} {route}` and given `http.route` once the route has matched.
///
/// ```
/// use axum::{Router, routing::get};
/// use looptel_core::{Instrumentation, Propagator};
/// use looptel_http_layer::server::{RouteLayer, ServerLayer};
/// use tower::ServiceBuilder;
///
/// # let inst = Instrumentation::disabled(Propagator::default());
/// let router: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "order" }))
///     .layer(RouteLayer);
/// let app = ServiceBuilder::new().layer(ServerLayer::new(inst)).service(router);
/// # let _ = app;
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct RouteLayer;

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Route { inner }
    }
}

/// The service built by [`RouteLayer`].
#[derive(Clone, Debug)]
pub struct Route<S> {
    inner: S,
}

looptel_engine::service_accessors!(Route<S>);

impl<S, B> Service<Request<B>> for Route<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(route) = req.extensions().get::<axum::extract::MatchedPath>() {
            let cx = opentelemetry::Context::current();
            let span = cx.span();
            if span.is_recording() {
                let method = looptel_core::normalize_method(req.method());
                span.update_name(span_name(method, route.as_str()));
                span.set_attribute(KeyValue::new(HTTP_ROUTE, route.as_str().to_owned()));
            }
        }
        self.inner.call(req)
    }
}
