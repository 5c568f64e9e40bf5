use http::{Request, header};
use looptel_core::{Instrumentation, SpanStart};
use looptel_engine::{Derived, HttpFacts, HttpServer, ServerPreset};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, HTTP_ROUTE, NETWORK_PROTOCOL_VERSION, URL_PATH, URL_QUERY, URL_SCHEME,
    USER_AGENT_ORIGINAL,
};

use crate::attributes::{name_method, push_method, span_name};
use looptel_engine::{AttributesOn, server_attributes};

/// The HTTP naming of the engine's server layer: span `{method}
/// {http.route}`, the conventions' HTTP server attributes, classified by
/// [`HttpServer`]. [`ServerLayer`](super::ServerLayer) is the engine's
/// layer with this preset.
#[derive(Clone, Copy, Debug, Default)]
pub struct Http;

/// How many attributes a server span can get: the conventions' own, a few
/// promoted baggage members, the status code and `error.type`.
const SPAN_ATTRIBUTES: usize = 16;

/// Looked up without parsing the name on every request.
const X_FORWARDED_FOR: header::HeaderName = header::HeaderName::from_static("x-forwarded-for");

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

impl ServerPreset for Http {
    type Classifier = HttpServer;
    type Filter = ();
    type Own = ();

    fn classifier(&self) -> HttpServer {
        HttpServer
    }

    fn default_filter(&self) {}

    fn own_hook(&self, _: &Instrumentation) {}

    fn start_span<B>(
        &self,
        req: &Request<B>,
        derived: &Derived<'_>,
        start: SpanStart,
        inst: &Instrumentation,
    ) -> opentelemetry::Context {
        // Decide early, allocate late: the sampler sees the method, the
        // scheme and the route (else the path); everything else, and the
        // route in the span name, is built only for a span that records.
        // The SDK keeps this Vec for the span: room for all it can get.
        let mut attrs = Vec::with_capacity(SPAN_ATTRIBUTES);
        // Read off once, for the RED hook too.
        let facts = derived.http_facts_of(req);
        let method = push_method(&mut attrs, facts.method(), req.method());
        attrs.push(KeyValue::new(URL_SCHEME, facts.scheme()));
        let route = derived.route().map(looptel_engine::Route::as_str);
        attrs.push(match route {
            Some(route) => KeyValue::new(HTTP_ROUTE, route.to_owned()),
            None => KeyValue::new(
                URL_PATH,
                looptel_core::bounded(req.uri().path(), inst.value_limit()).to_owned(),
            ),
        });
        let builder = SpanBuilder {
            span_kind: Some(SpanKind::Server),
            attributes: Some(attrs),
            ..SpanBuilder::from_name(name_method(method))
        };
        inst.start_span(start, builder, &mut |span| {
            if span.is_recording() {
                if let Some(route) = route {
                    span.update_name(span_name(method, route).into());
                }
                recorded_only_attributes(
                    req,
                    facts,
                    route.is_some(),
                    inst.value_limit(),
                    &mut AttributesOn(span),
                );
            }
        })
    }
}

/// The attributes no sampler needs, built only for recording spans; those
/// taken from the request's text cut at `limit` bytes.
fn recorded_only_attributes<B>(
    req: &Request<B>,
    facts: HttpFacts,
    with_path: bool,
    limit: usize,
    out: &mut impl Extend<KeyValue>,
) {
    let cut = |v: &str| looptel_core::bounded(v, limit).to_owned();
    if with_path {
        out.extend([KeyValue::new(URL_PATH, cut(req.uri().path()))]);
    }
    if let Some(q) = req.uri().query() {
        // Personal or secret parameters' values never reach a span.
        out.extend([KeyValue::new(
            URL_QUERY,
            cut(&looptel_core::pii::redact_query(q)),
        )]);
    }
    if let Some(v) = facts.protocol_version() {
        out.extend([KeyValue::new(NETWORK_PROTOCOL_VERSION, v)]);
    }
    server_attributes(req.uri(), req.headers(), out);
    if let Some(addr) = client_address(req) {
        out.extend([KeyValue::new(CLIENT_ADDRESS, cut(&addr))]);
    }
    if let Some(ua) = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        out.extend([KeyValue::new(USER_AGENT_ORIGINAL, cut(ua))]);
    }
}
