//! The instruments every layer records, on one registry.

use std::sync::Arc;

use looptel_core::SemconvOptIn;
use looptel_red_metrics::{
    Changes, Health, Histograms, HttpClientMetrics, HttpServerMetrics, ProcessCollector, Registry,
    TokioCollector,
};

/// A registry with the process collector (and, inside a Tokio runtime,
/// the runtime's), the HTTP server's and client's RED instruments, the RPC ones (feature
/// `tonic`), the messaging ones (features `kafka`, `amqp`, `nats`) and the
/// dependencies' readiness. [`Looptel`](crate::Looptel) holds one; build
/// your own for tests that serve a router without starting telemetry.
/// Cheap to clone: every clone records into the same registry.
#[derive(Clone, Debug)]
pub struct Instruments {
    registry: Registry,
    http: HttpServerMetrics,
    http_client: HttpClientMetrics,
    #[cfg(feature = "tonic")]
    rpc: looptel_red_metrics::RpcMetrics,
    #[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
    messaging: looptel_red_metrics::MessagingMetrics,
    health: Health,
    changes: Changes,
}

impl Instruments {
    /// Every instrument, registered once; `semconv` adds the pre-1.39 RPC
    /// histograms with `rpc/dup` (telemetry's instrumentation has the
    /// parsed `OTEL_SEMCONV_STABILITY_OPT_IN`).
    pub fn new(semconv: SemconvOptIn) -> Self {
        Self::with_histograms(semconv, Histograms::Classic)
    }

    /// As [`new`](Self::new), the histograms keeping the buckets
    /// `histograms` says (classic, native or both).
    pub fn with_histograms(semconv: SemconvOptIn, histograms: Histograms) -> Self {
        let registry = Registry::new().with_histograms(histograms);
        registry.register_collector(Arc::new(ProcessCollector));
        if let Some(tokio) = TokioCollector::current() {
            registry.register_collector(Arc::new(tokio));
        }
        #[cfg(not(feature = "tonic"))]
        let _ = semconv;
        Self {
            http: HttpServerMetrics::new(&registry),
            http_client: HttpClientMetrics::new(&registry),
            #[cfg(feature = "tonic")]
            rpc: looptel_red_metrics::RpcMetrics::new(&registry).semconv(&registry, semconv),
            #[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
            messaging: looptel_red_metrics::MessagingMetrics::new(&registry),
            health: Health::new(&registry),
            changes: Changes::new(&registry),
            registry,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The HTTP server's RED instruments (a server layer hook).
    pub fn http(&self) -> &HttpServerMetrics {
        &self.http
    }

    /// The RPC instruments (server and client hooks).
    #[cfg(feature = "tonic")]
    pub fn rpc(&self) -> &looptel_red_metrics::RpcMetrics {
        &self.rpc
    }

    /// The messaging instruments (a messaging hook).
    #[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
    pub fn messaging_metrics(&self) -> &looptel_red_metrics::MessagingMetrics {
        &self.messaging
    }

    /// Messaging instrumentation on these instruments; see
    /// [`Looptel::messaging`](crate::Looptel::messaging).
    #[cfg(any(feature = "kafka", feature = "amqp", feature = "nats"))]
    pub fn messaging(&self, instrumentation: looptel_core::Instrumentation) -> crate::Messaging {
        looptel_kafka_propagation::MessagingTelemetry::new(instrumentation)
            .hook(self.messaging.clone())
    }

    /// The dependencies' readiness.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Changes the service makes to itself (`looptel_change_time_seconds`),
    /// for the incident card's "what changed".
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// The HTTP server layer on these instruments; see
    /// [`Looptel::http_server`](crate::Looptel::http_server).
    #[cfg(feature = "axum")]
    pub fn http_server(&self, instrumentation: looptel_core::Instrumentation) -> crate::HttpServer {
        looptel_http_layer::ServerLayer::new(instrumentation)
            .filter(looptel_engine::skip_paths(crate::UNTRACED_PATHS))
            .response_traceparent(true)
            .hook(self.http.clone())
    }

    /// The HTTP client layer on these instruments; see
    /// [`Looptel::http_client`](crate::Looptel::http_client).
    pub fn http_client(&self, instrumentation: looptel_core::Instrumentation) -> crate::HttpClient {
        looptel_http_layer::ClientLayer::new(instrumentation).hook(self.http_client.clone())
    }

    /// The reqwest middleware on these instruments.
    #[cfg(feature = "reqwest")]
    pub fn reqwest(&self, instrumentation: looptel_core::Instrumentation) -> crate::Reqwest {
        looptel_http_layer::reqwest::TracingMiddleware::new(instrumentation)
            .hook(self.http_client.clone())
    }

    /// The gRPC server layer on these instruments.
    #[cfg(feature = "tonic")]
    pub fn grpc_server(&self, instrumentation: looptel_core::Instrumentation) -> crate::GrpcServer {
        looptel_grpc_interceptor::GrpcServerLayer::new(instrumentation).hook(self.rpc.server_hook())
    }

    /// The gRPC client layer on these instruments.
    #[cfg(feature = "tonic")]
    pub fn grpc_client(&self, instrumentation: looptel_core::Instrumentation) -> crate::GrpcClient {
        looptel_grpc_interceptor::GrpcClientLayer::new(instrumentation).hook(self.rpc.client_hook())
    }

    /// `GET /metrics`, `GET /health/live` (and `/health`), `GET
    /// /health/ready`.
    #[cfg(feature = "axum")]
    pub fn routes<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        looptel_red_metrics::health_routes(self.health.clone()).route(
            "/metrics",
            looptel_red_metrics::metrics_endpoint(self.registry.clone()),
        )
    }
}
