//! The inventory: a gRPC service (`inventory.v1.StockService`) the order
//! service reserves stock in, served in the same binary with embedded
//! defaults, and the traced client the order path calls it with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use looptel::core::Instrumentation;
use looptel::grpc::GrpcClientService;
use looptel::metrics::RpcClientMetrics;
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use crate::faults::FaultSwitch;
use crate::{Metrics, UNAVAILABLE_SKU};

/// The generated API, from `proto/inventory/v1/stock.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("inventory.v1");
}

use v1::stock_service_client::StockServiceClient;
use v1::stock_service_server::{StockService, StockServiceServer};
use v1::{ReserveItemRequest, ReserveItemResponse};

/// How long the order path waits for a reservation (`grpc-timeout`).
pub const RESERVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The example inventory: everything is in stock, except that it acts as if
/// it were down for [`UNAVAILABLE_SKU`] (UNAVAILABLE), and as the
/// [`FaultSwitch`] says (failures, delay), inside its handler.
#[derive(Debug, Default)]
pub struct Stock {
    reservations: AtomicU64,
    faults: FaultSwitch,
}

impl Stock {
    /// An inventory acting on `faults`.
    pub fn new(faults: FaultSwitch) -> Self {
        Self {
            reservations: AtomicU64::new(0),
            faults,
        }
    }
}

#[tonic::async_trait]
impl StockService for Stock {
    async fn reserve_item(
        &self,
        request: Request<ReserveItemRequest>,
    ) -> Result<Response<ReserveItemResponse>, Status> {
        let item = request.into_inner();
        let (delay, fail) = self.faults.inventory_call();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if fail {
            tracing::warn!(sku = %item.sku, "injected fault: inventory unavailable");
            return Err(Status::unavailable("injected fault: inventory unavailable"));
        }
        if item.sku == UNAVAILABLE_SKU {
            return Err(Status::unavailable("inventory unavailable"));
        }
        if item.quantity == 0 {
            return Err(Status::invalid_argument("quantity must be positive"));
        }
        let n = self.reservations.fetch_add(1, Ordering::Relaxed) + 1;
        // In the caller's trace, with its tenant: the server layer put the
        // call's context (and its baggage) around this handler.
        tracing::info!(sku = %item.sku, quantity = item.quantity, "stock reserved");
        Ok(Response::new(ReserveItemResponse {
            reservation_id: format!("r-{n}"),
        }))
    }
}

/// Serves the inventory on `listener` behind the gRPC server layer and its
/// call-duration hook, acting on `faults`, until `shutdown` resolves.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    instrumentation: Instrumentation,
    metrics: &Metrics,
    faults: FaultSwitch,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        .layer(
            metrics
                .instruments()
                .grpc_server(instrumentation)
                .services([StockServiceServer::<Stock>::NAME]),
        )
        .add_service(StockServiceServer::new(Stock::new(faults)))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

/// The order path's inventory client: traced, propagating, timed.
pub type Inventory = StockServiceClient<GrpcClientService<Channel, ((), RpcClientMetrics)>>;

/// A client of the inventory at `addr`, connecting on first use.
///
/// # Errors
/// None in practice: a socket address always makes a URI.
pub fn client(
    instrumentation: Instrumentation,
    metrics: &Metrics,
    addr: SocketAddr,
) -> Result<Inventory, http::uri::InvalidUri> {
    let uri: http::Uri = format!("http://{addr}").parse()?;
    let channel = Channel::builder(uri).connect_lazy();
    let traced = tower::ServiceBuilder::new()
        .layer(metrics.instruments().grpc_client(instrumentation))
        .service(channel);
    Ok(StockServiceClient::new(traced))
}

/// The name of the inventory on `/health/ready` and its gauge.
pub const DEPENDENCY: &str = "inventory";

/// Says every `every` whether the inventory at `addr` accepts connections,
/// as `dependency` (each change a log line), until `stop`.
pub async fn probe(
    addr: SocketAddr,
    dependency: looptel::metrics::Dependency,
    every: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let reached =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await;
        match reached {
            Ok(Ok(_)) => {
                if dependency.up() {
                    tracing::info!(dependency = DEPENDENCY, "inventory reachable");
                }
            }
            Ok(Err(e)) => {
                if dependency.down(e.to_string()) {
                    tracing::warn!(dependency = DEPENDENCY, error = %e, "inventory unreachable");
                }
            }
            Err(_) => {
                if dependency.down("connect timed out") {
                    tracing::warn!(
                        dependency = DEPENDENCY,
                        "inventory unreachable: connect timed out"
                    );
                }
            }
        }
        if crate::consumers::stopped_within(every, &stop).await {
            return;
        }
    }
}
