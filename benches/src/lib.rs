//! The stacks measured by the benchmarks, shared by the criterion bench
//! (time) and the `count` binary (instructions, under callgrind).
//!
//! Every stack serves the same router — `GET /orders/{id}` and `GET /health`
//! — through `oneshot`, so what differs is only the layers.

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use looptel_core::{Instrumentation, Propagator};
use looptel_http_layer::server::{ServerLayer, skip_paths};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tracing_subscriber::layer::SubscriberExt;

pub mod floor;
pub mod messaging;

/// The scenarios served by a router ([`stack`]), in the order they are
/// reported; the Kafka consumer's are [`messaging::SCENARIOS`].
pub const SCENARIOS: &[&str] = &[
    "bare",
    "noop-layer",
    "peer-sampled",
    "peer-unsampled",
    "looptel-sampled",
    "looptel-unsampled",
    "looptel-filtered",
    "red-sampled",
    "red-unsampled",
    "full-sampled",
    "full-unsampled",
    "service-bare",
    "floor-service-sampled",
    "floor-service-unsampled",
    "peer-service-sampled",
    "peer-service-unsampled",
    "service-sampled",
    "service-unsampled",
    "service-bare-health",
    "service-filtered",
    "grpc-bare",
    "grpc-peer-sampled",
    "grpc-peer-unsampled",
    "grpc-looptel-sampled",
    "grpc-looptel-unsampled",
];

/// A sampled caller.
pub const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// A caller that did not sample: parent-based sampling drops the trace.
pub const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

/// Discards spans, so export costs only the batch processor's hand-off.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
    }
}

fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(Discard).build())
        .build()
}

fn routes() -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .route("/health", get(|| async { "ok" }))
}

/// Finishes a router as `axum::serve` and order-service's `serve` do
/// (`with_state(())` turns the handlers into services once, instead of per
/// request).
fn serve_ready(router: Router) -> Router {
    router.with_state(())
}

/// The request of a scenario. The `service-*` scenarios send what a
/// gateway sends the reference service: a `Host` header too, and an order
/// id (unknown: each run starts with an empty store, so every request is
/// the same 404).
pub fn request(scenario: &str) -> Request<Body> {
    if scenario.starts_with("grpc-") {
        // A unary health check: one empty message, gRPC-framed.
        return Request::post("/grpc.health.v1.Health/Check")
            .header("host", "inventory.internal:50051")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(
                "traceparent",
                if scenario.ends_with("unsampled") {
                    UNSAMPLED
                } else {
                    SAMPLED
                },
            )
            .body(Body::from(&[0_u8, 0, 0, 0, 0][..]))
            .unwrap_or_default();
    }
    if let Some(kind) = scenario
        .strip_prefix("service-")
        .or_else(|| scenario.strip_prefix("peer-service-"))
        .or_else(|| scenario.strip_prefix("floor-service-"))
    {
        let path = if kind == "filtered" || kind == "bare-health" {
            "/health"
        } else {
            "/orders/o-1"
        };
        return Request::get(path)
            .header("host", "orders.internal:8080")
            .header(
                "traceparent",
                if kind == "unsampled" {
                    UNSAMPLED
                } else {
                    SAMPLED
                },
            )
            .header("x-tenant-id", "acme")
            .header("user-agent", "bench/1.0")
            .body(Body::empty())
            .unwrap_or_default();
    }
    let (path, tp) = match scenario {
        "bare" => ("/orders/42", SAMPLED),
        s if s.ends_with("unsampled") => ("/orders/42", UNSAMPLED),
        s if s.ends_with("filtered") => ("/health", SAMPLED),
        _ => ("/orders/42", SAMPLED),
    };
    Request::get(path)
        .header("traceparent", tp)
        .header("x-tenant-id", "acme")
        .header("user-agent", "bench/1.0")
        .body(Body::empty())
        .unwrap_or_default()
}

/// A router and the `tracing` dispatcher it runs under.
#[derive(Debug)]
pub struct Stack {
    /// The router with the scenario's layers.
    pub router: Router,
    /// The subscriber to run requests under.
    pub dispatch: tracing::Dispatch,
    _provider: Option<SdkTracerProvider>,
    _telemetry: Option<looptel_telemetry::TelemetryGuard>,
}

/// Builds the stack of a scenario.
///
/// # Panics
/// On an unknown scenario name.
pub fn stack(scenario: &str) -> Stack {
    match scenario {
        "bare" => Stack {
            router: serve_ready(routes()),
            dispatch: tracing::Dispatch::none(),
            _provider: None,
            _telemetry: None,
        },
        // What axum charges for any `Router::layer`, whatever the layer does.
        "noop-layer" => Stack {
            router: serve_ready(routes().layer(tower::layer::util::Identity::new())),
            dispatch: tracing::Dispatch::none(),
            _provider: None,
            _telemetry: None,
        },
        // The floor over the service's routes: the job done by hand.
        "floor-service-sampled" | "floor-service-unsampled" => Stack {
            router: service_routes()
                .layer(floor::FloorLayer::new(&looptel_red_metrics::Registry::new())),
            dispatch: tracing::Dispatch::none(),
            _provider: None,
            _telemetry: None,
        },
        "peer-service-alwayson" => peer_over(service_routes(), Sampler::AlwaysOn),
        "peer-service-ratio" => peer_over(service_routes(), ratio()),
        // The peer over the service's routes, as the peer's README sets it
        // up (the SDK's default sampler).
        "peer-service-sampled" | "peer-service-unsampled" => {
            peer_over(service_routes(), parent_based_always_on())
        }
        s if s.starts_with("peer") => peer_over(routes(), parent_based_always_on()),
        s if s.starts_with("looptel") => looptel(),
        s if s.starts_with("red") => red(),
        s if s.starts_with("full") => full(),
        "service-bare" | "service-bare-health" => Stack {
            router: service_routes(),
            dispatch: tracing::Dispatch::none(),
            _provider: None,
            _telemetry: None,
        },
        // The throughput scenarios: `OTEL_TRACES_SAMPLER` set as a user
        // sets it.
        "service-alwayson" => service(Some("always_on")),
        "service-ratio" => service(Some("parentbased_traceidratio")),
        s if s.starts_with("service") => service(None),
        "grpc-bare" => Stack {
            router: grpc_routes(),
            dispatch: tracing::Dispatch::none(),
            _provider: None,
            _telemetry: None,
        },
        s if s.starts_with("grpc-peer") => grpc_peer(),
        s if s.starts_with("grpc-looptel") => grpc_looptel(),
        other => panic!("unknown scenario {other}"),
    }
}

/// The reference service's routes without any layer.
fn service_routes() -> Router {
    let metrics = order_service::Metrics::new();
    let inventory = unused_inventory(Instrumentation::disabled(Propagator::default()), &metrics);
    serve_ready(order_service::routes(&metrics, inventory).unwrap_or_else(|e| panic!("{e}")))
}

/// The SDK's default sampler: parent-based, always on.
fn parent_based_always_on() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

/// Parent-based, 10 % of the traces without a parent.
fn ratio() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.1)))
}

/// What the peers run on, as their READMEs set it up: the SDK's W3C
/// propagator as the global one, and tracing-opentelemetry (parent-based,
/// always on, the SDK's default sampler).
pub(crate) fn peer_tracing() -> (SdkTracerProvider, tracing::Dispatch) {
    peer_tracing_sampled(parent_based_always_on())
}

fn peer_tracing_sampled(sampler: Sampler) -> (SdkTracerProvider, tracing::Dispatch) {
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(BatchSpanProcessor::builder(Discard).build())
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("peer"))),
    );
    (provider, dispatch)
}

/// axum-tracing-opentelemetry's `OtelAxumLayer` + `OtelInResponseLayer`
/// with axum-prometheus, over tracing-opentelemetry, as their READMEs set
/// them up, over `routes`.
fn peer_over(routes: Router, sampler: Sampler) -> Stack {
    let (provider, dispatch) = peer_tracing_sampled(sampler);
    static METRICS: OnceLock<axum_prometheus::PrometheusMetricLayer<'static>> = OnceLock::new();
    let metrics = METRICS
        .get_or_init(|| axum_prometheus::PrometheusMetricLayer::pair().0)
        .clone();
    let router = serve_ready(
        routes
            .layer(axum_tracing_opentelemetry::middleware::OtelInResponseLayer)
            .layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
            .layer(metrics),
    );
    Stack {
        router,
        dispatch,
        _provider: Some(provider),
        _telemetry: None,
    }
}

/// The subscriber of the looptel stacks: tracing-opentelemetry and the JSON
/// log layer writing to nowhere (no line is written per request anyway).
fn looptel_dispatch(
    provider: &SdkTracerProvider,
    logs: looptel_logs::LogsBuilder,
) -> tracing::Dispatch {
    let (logs, guard) = logs.output(std::io::sink()).build();
    std::mem::forget(guard);
    tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("app")))
            .with(logs.layer()),
    )
}

/// looptel: the server layer, with the JSON log layer installed for
/// correlation (no line is written per request).
fn looptel() -> Stack {
    let provider = provider();
    let dispatch = looptel_dispatch(&provider, looptel_logs::JsonLogs::builder());
    // As `Telemetry::instrumentation` declares its default sampler.
    let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    let router =
        serve_ready(routes().layer(ServerLayer::new(inst).filter(skip_paths(["/health"]))));
    Stack {
        router,
        dispatch,
        _provider: Some(provider),
        _telemetry: None,
    }
}

/// looptel's server layer with the RED metrics as its hook.
fn red() -> Stack {
    let provider = provider();
    let dispatch = looptel_dispatch(&provider, looptel_logs::JsonLogs::builder());
    // As `Telemetry::instrumentation` declares its default sampler.
    let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    let registry = looptel_red_metrics::Registry::new();
    let router = serve_ready(
        routes().layer(
            ServerLayer::new(inst)
                .filter(skip_paths(["/health"]))
                .hook(looptel_red_metrics::HttpServerMetrics::new(&registry)),
        ),
    );
    Stack {
        router,
        dispatch,
        _provider: Some(provider),
        _telemetry: None,
    }
}

/// looptel's full stack, as order-service stacks it: server span, RED
/// metrics with exemplars, the baggage edge (tenant from a header, promoted
/// onto the span) and the JSON log layer with baggage promotion.
/// One layer, the edge and the metrics as its hooks, as the docs advise.
fn full() -> Stack {
    let provider = provider();
    let policy = looptel_baggage::BaggagePolicy::builder()
        .promote(["tenant.id"])
        .build();
    let dispatch = looptel_dispatch(
        &provider,
        looptel_logs::JsonLogs::builder().promote_baggage(policy.promotion()),
    );
    // As `Telemetry::instrumentation` declares its default sampler.
    let inst = Instrumentation::new(&provider, Propagator::default()).parent_based(true);
    let registry = looptel_red_metrics::Registry::new();
    let edge = looptel_baggage::EdgeLayer::new(policy).members(looptel_baggage::from_header(
        http::HeaderName::from_static("x-tenant-id"),
        "tenant.id",
    ));
    let router = serve_ready(
        routes().layer(
            ServerLayer::new(inst)
                .filter(skip_paths(["/health"]))
                .hook(edge)
                .hook(looptel_red_metrics::HttpServerMetrics::new(&registry)),
        ),
    );
    Stack {
        router,
        dispatch,
        _provider: Some(provider),
        _telemetry: None,
    }
}

/// The reference service as its `main` builds it: `Telemetry` from an
/// empty environment (the embedded defaults: parent-based sampling, the
/// batch processor and its export thread, JSON logs on standard output),
/// baggage promotion and the inject policy, and `order_service::app` — the
/// server layer with response `traceparent`, the baggage edge and RED
/// metrics. Only the span exporter differs: spans are discarded after the
/// batch processor hands them over.
fn service(sampler: Option<&'static str>) -> Stack {
    let (dispatch, guard, baggage) = service_telemetry(sampler);
    // As `main` does: the layers take the guard's instrumentation.
    let metrics = order_service::Metrics::new();
    let inventory = unused_inventory(guard.instrumentation(), &metrics);
    let router = serve_ready(
        order_service::app(guard.instrumentation(), baggage, metrics, inventory)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    Stack {
        router,
        dispatch,
        _provider: None,
        _telemetry: Some(guard),
    }
}

/// The reference service's `Telemetry`, as its `main` builds it (with
/// `OTEL_TRACES_SAMPLER` set to `sampler`, ratio 0.1), its subscriber and
/// its baggage policy; spans discarded after the batch processor.
pub(crate) fn service_telemetry(
    sampler: Option<&'static str>,
) -> (
    tracing::Dispatch,
    looptel_telemetry::TelemetryGuard,
    looptel_baggage::BaggagePolicy,
) {
    let baggage = order_service::baggage_policy();
    let telemetry = looptel_telemetry::Telemetry::from_lookup(move |key| match key {
        "OTEL_TRACES_SAMPLER" => sampler.map(str::to_owned),
        "OTEL_TRACES_SAMPLER_ARG" => sampler.map(|_| "0.1".to_owned()),
        _ => None,
    })
    .service_name("order-service")
    .service_version("0.1.0")
    .promote_baggage(baggage.promotion())
    .baggage_policy(baggage.inject_policy())
    .span_exporter(Discard)
    .build()
    .unwrap_or_else(|e| panic!("telemetry: {e}"));
    let (subscriber, guard) = telemetry.into_subscriber();
    (tracing::Dispatch::new(subscriber), guard, baggage)
}

/// tonic's generated health service, as tonic's router serves it.
fn grpc_routes() -> Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::service::Routes::new(health)
        .prepare()
        .into_axum_router()
}

/// tonic-tracing-opentelemetry's server layer over tracing-opentelemetry,
/// as its README sets it up.
fn grpc_peer() -> Stack {
    let (provider, dispatch) = peer_tracing();
    let router = grpc_routes()
        .layer(tonic_tracing_opentelemetry::middleware::server::OtelGrpcLayer::default());
    Stack {
        router,
        dispatch,
        _provider: Some(provider),
        _telemetry: None,
    }
}

/// looptel's gRPC server layer with the call-duration hook, built through
/// `Telemetry` as the reference service builds its inventory (health
/// traced here: it is the service measured).
fn grpc_looptel() -> Stack {
    let telemetry = looptel_telemetry::Telemetry::from_lookup(|_| None)
        .service_name("inventory")
        .span_exporter(Discard)
        .build()
        .unwrap_or_else(|e| panic!("telemetry: {e}"));
    let (subscriber, guard) = telemetry.into_subscriber();
    let registry = looptel_red_metrics::Registry::new();
    let rpc = looptel_red_metrics::RpcMetrics::new(&registry);
    let router = grpc_routes().layer(
        looptel_grpc_interceptor::GrpcServerLayer::new(guard.instrumentation())
            .filter(())
            .hook(rpc.server_hook()),
    );
    Stack {
        router,
        dispatch: tracing::Dispatch::new(subscriber),
        _provider: None,
        _telemetry: Some(guard),
    }
}

/// The inventory client the service holds; `GET /orders/{id}` never calls
/// it (the channel connects on first use).
fn unused_inventory(
    instrumentation: Instrumentation,
    metrics: &order_service::Metrics,
) -> order_service::inventory::Inventory {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    order_service::inventory::client(instrumentation, metrics, addr)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends one request through the stack and reads the whole body.
pub async fn one(router: &Router, scenario: &str) -> usize {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let Ok(res) = router.clone().oneshot(request(scenario)).await;
    res.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0)
}
