use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use looptel_core::{Extracted, RequestHook};
use opentelemetry::trace::{Link, Span as _, SpanBuilder, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, HTTP_ROUTE, URL_PATH, URL_QUERY, URL_SCHEME, USER_AGENT_ORIGINAL,
};
use tower_service::Service;

use super::filter::{PublicEndpoint, RequestFilter};
use super::future::{Inner, ResponseFuture, State};
use super::{ServerLayer, Untraced};
use crate::attributes::{name_method, push_method, push_protocol, push_server, span_name};
use crate::body::ResponseBody;

/// The service built by [`ServerLayer`]; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct Server<S, F = (), P = (), H = ()> {
    pub(crate) inner: S,
    pub(crate) layer: ServerLayer<F, P, H>,
}

impl<S> Server<S> {
    /// Wraps `inner` with the layer's settings.
    pub fn layer(instrumentation: looptel_core::Instrumentation) -> ServerLayer {
        ServerLayer::new(instrumentation)
    }
}

crate::macros::service_accessors!(Server<S, F, P, H>);

/// How many attributes a server span can get: the conventions' own, a few
/// promoted baggage members, the status code and `error.type`.
const SPAN_ATTRIBUTES: usize = 16;

/// Looked up without parsing the name on every request.
const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

/// The route template of a request, when the router has matched it.
fn matched_route<B>(req: &Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    {
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str)
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = req;
        None
    }
}

fn client_address<B>(req: &Request<B>) -> Option<String> {
    if let Some(first) = req
        .headers()
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return Some(first.to_owned());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip().to_string());
    }
    None
}

impl<S, F, P, H, ReqB, ResB> Service<Request<ReqB>> for Server<S, F, P, H>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    F: RequestFilter<ReqB>,
    P: PublicEndpoint<ReqB>,
    H: RequestHook<ReqB>,
    ResB: http_body::Body,
{
    type Response = Response<ResponseBody<ResB, H::State>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, H::State>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if !self.layer.filter.traced(&req) {
            req.extensions_mut().insert(Untraced);
            return ResponseFuture::untraced(call_catching(&mut self.inner, req));
        }
        let inst = &self.layer.instrumentation;
        // Outside the trust boundary the caller's decision does not count.
        let public = self.layer.public.is_public(&req);
        let remote = match inst.extract_request(req.headers(), !public) {
            Extracted::Remote(cx) => cx,
            Extracted::UnsampledChild(mut cx) => {
                // The caller did not sample and the sampler follows it: no
                // sampler call, no attributes, no name.
                self.layer.hooks.prepare(&req, &mut cx);
                return self.run(req, cx, true);
            }
        };
        let Some(tracer) = inst.tracer() else {
            // Telemetry off: no span, but the caller's context still flows
            // to outgoing calls, and the hooks run.
            let mut cx = remote;
            self.layer.hooks.prepare(&req, &mut cx);
            return self.run(req, cx, false);
        };

        // Decide early, allocate late: the sampler sees the method, the
        // scheme and the route (else the path); everything else, and the
        // route in the span name, is built only for a span that records.
        // The SDK keeps this Vec for the span: room for all it can get.
        let mut attrs = Vec::with_capacity(SPAN_ATTRIBUTES);
        let method = push_method(&mut attrs, req.method());
        let uri = req.uri();
        attrs.push(KeyValue::new(
            URL_SCHEME,
            if uri.scheme_str() == Some("https") {
                "https"
            } else {
                "http"
            },
        ));
        let route = matched_route(&req);
        attrs.push(match route {
            Some(route) => KeyValue::new(HTTP_ROUTE, route.to_owned()),
            None => KeyValue::new(URL_PATH, uri.path().to_owned()),
        });
        let builder = SpanBuilder {
            span_kind: Some(SpanKind::Server),
            attributes: Some(attrs),
            ..SpanBuilder::from_name(name_method(method))
        };
        let remote_sc = remote.span().span_context().clone();
        let (builder, mut parent) = if remote_sc.is_valid() && public {
            // Outside the trust boundary: a new root, linked to the caller,
            // and none of the caller's context (baggage) is taken in.
            (
                builder.with_links(vec![Link::with_context(remote_sc)]),
                OtelContext::new(),
            )
        } else {
            (builder, remote)
        };
        self.layer.hooks.prepare(&req, &mut parent);
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            if let Some(route) = route {
                span.update_name(span_name(method, route));
            }
            recorded_only_attributes(&req, route.is_some(), &mut SetOn(&mut span));
        }
        self.run(req, parent.with_span(span), true)
    }
}

impl<S, F, P, H> Server<S, F, P, H> {
    /// Starts the hooks and calls the inner service in `cx`; `owned` when
    /// `cx` holds a span of this layer's.
    fn run<ReqB>(
        &mut self,
        req: Request<ReqB>,
        mut cx: OtelContext,
        owned: bool,
    ) -> ResponseFuture<S::Future, H::State>
    where
        S: Service<Request<ReqB>>,
        H: RequestHook<ReqB>,
    {
        let hooks = self.layer.hooks.start(&req, &mut cx);
        let inner = {
            let _attached = cx.clone().attach();
            call_catching(&mut self.inner, req)
        };
        ResponseFuture::traced(
            inner,
            State {
                cx,
                owned,
                response_traceparent: owned && self.layer.response_traceparent,
                hooks,
            },
        )
    }
}

/// The attributes no sampler needs, built only for recording spans.
fn recorded_only_attributes<B>(req: &Request<B>, with_path: bool, out: &mut impl Extend<KeyValue>) {
    if with_path {
        out.extend([KeyValue::new(URL_PATH, req.uri().path().to_owned())]);
    }
    if let Some(q) = req.uri().query() {
        out.extend([KeyValue::new(URL_QUERY, q.to_owned())]);
    }
    push_protocol(out, req.version());
    push_server(out, req.uri(), req.headers());
    if let Some(addr) = client_address(req) {
        out.extend([KeyValue::new(CLIENT_ADDRESS, addr)]);
    }
    if let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        out.extend([KeyValue::new(USER_AGENT_ORIGINAL, ua.to_owned())]);
    }
}

/// Sets attributes straight on a span, with no list in between.
struct SetOn<'a, S>(&'a mut S);

impl<S: opentelemetry::trace::Span> Extend<KeyValue> for SetOn<'_, S> {
    fn extend<I: IntoIterator<Item = KeyValue>>(&mut self, attributes: I) {
        for kv in attributes {
            self.0.set_attribute(kv);
        }
    }
}

/// Calls the inner service; a panic in `call` itself becomes a panicked
/// future, answered like a handler panic.
fn call_catching<S, R>(inner: &mut S, req: R) -> Inner<S::Future>
where
    S: Service<R>,
{
    match std::panic::catch_unwind(AssertUnwindSafe(|| inner.call(req))) {
        Ok(fut) => Inner::Running { fut },
        Err(panic) => Inner::Panicked {
            message: super::future::panic_message(&*panic),
        },
    }
}
