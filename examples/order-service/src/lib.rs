//! The looptel reference service: an order API whose traces, metrics and
//! logs are correlated by `trace_id`.
//!
//! [`app`] builds the router, so tests drive it without a socket; `main.rs`
//! adds telemetry, the listener and graceful shutdown. Each request gets a
//! SERVER span (`POST /orders`) continuing the caller's W3C trace context;
//! the business span `Order.OrderService.PlaceOrder` is its child, and every
//! log line inside carries their `trace_id`. Responses carry a `traceparent`
//! header pointing at the request's span.
//!
//! | route | what it does |
//! |---|---|
//! | `POST /orders` | places an order (`Order.OrderService.PlaceOrder` span), reserving each item in the inventory over gRPC and publishing `OrderPlaced` to Kafka ([`events`]) |
//! | `GET /orders/{id}` | reads an order back |
//! | `GET /health/live` (and `/health`) | liveness: 200 while the process serves, never traced |
//! | `GET /health/ready` | readiness: 503 with what is down (Kafka, RabbitMQ, NATS, the inventory, the fulfilment consumer) until every dependency is reachable and the consumer runs |
//! | `GET /metrics` | RED (HTTP and gRPC), `orders.created`, saturation |
//! | `GET`, `PUT`, `DELETE /admin/faults` | the [`faults`] switch, only with `--enable-faults` |
//!
//! The [`inventory`] (`inventory.v1.StockService/ReserveItem`) is a gRPC
//! service the same binary serves on `--grpc-addr`: the order's span, the
//! gRPC client span and the inventory's server span form one trace, and
//! `tenant.id` travels in the call's baggage.
//!
//! # Outcomes
//! A rejected order (no items, a bad quantity) is a **business error**:
//! HTTP 422, logged at WARN, span status left Unset. An order that cannot be
//! placed because a dependency failed — the example's inventory answers
//! UNAVAILABLE for the SKU `unavailable`, as if it were down; a slow one
//! exceeds the reservation deadline — is a **failure**: HTTP 503, logged at
//! ERROR, span status Error with `error.type`.

mod consumers;
pub mod events;
pub mod faults;
pub mod inventory;
pub mod notifications;
pub mod payments;
pub mod serve;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use looptel::Instruments;
use looptel::baggage::{BaggagePolicy, EdgeLayer, from_header};
use looptel::core::{ErrorOutcome, Instrumentation, Operation, OperationNameError, Outcome};
use looptel::metrics::{Counter, Health, Metric, Registry};
use opentelemetry::baggage::BaggageExt;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The most orders kept in memory; the oldest are forgotten first.
pub const MAX_ORDERS: usize = 10_000;

/// The SKU the example inventory treats as an outage.
pub const UNAVAILABLE_SKU: &str = "unavailable";

/// One line of an order.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Item {
    /// Stock keeping unit.
    pub sku: String,
    /// How many, 1 to 100.
    pub quantity: u32,
}

/// The body of `POST /orders`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NewOrder {
    /// Who orders.
    pub customer_id: String,
    /// What is ordered.
    pub items: Vec<Item>,
}

/// An order as stored and returned.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Order {
    /// `o-` and a sequence number.
    pub id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered.
    pub items: Vec<Item>,
    /// Always `placed`.
    pub status: String,
}

#[derive(Debug, Default)]
struct Store {
    next: u64,
    orders: HashMap<String, Order>,
    order: VecDeque<String>,
}

/// Shared state of the service: one reference count to clone (axum clones
/// the state for every request that extracts it).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    store: RwLock<Store>,
    place_order: Operation,
    inventory: inventory::Inventory,
    events: Option<events::Events>,
}

/// What the order path calls: the inventory (gRPC) and, when set, the
/// order events (Kafka). An [`inventory::Inventory`] alone is a service
/// that publishes nothing.
#[derive(Clone, Debug)]
pub struct Dependencies {
    /// The inventory client.
    pub inventory: inventory::Inventory,
    /// Where `OrderPlaced` goes.
    pub events: Option<events::Events>,
}

impl From<inventory::Inventory> for Dependencies {
    fn from(inventory: inventory::Inventory) -> Self {
        Self {
            inventory,
            events: None,
        }
    }
}

/// What the service records beyond traces: looptel's instruments (RED for
/// HTTP, gRPC and messaging, saturation, readiness) and a business counter,
/// served on `GET /metrics`.
#[derive(Clone, Debug)]
pub struct Metrics {
    instruments: Instruments,
    orders_created: Arc<Metric<Counter>>,
}

impl Metrics {
    /// On `instruments` (the [`looptel::Looptel`] handle's, as `main`
    /// does), with the service's business counter.
    pub fn on(instruments: Instruments) -> Self {
        let orders_created = instruments.registry().counter(
            "orders.created",
            "{order}",
            "Orders placed.",
            &["tenant.id"],
        );
        Self {
            instruments,
            orders_created,
        }
    }

    /// On instruments of its own, without telemetry (tests, benchmarks).
    pub fn new() -> Self {
        Self::on(Instruments::new(looptel::core::SemconvOptIn::default()))
    }

    /// The registry, as `GET /metrics` serves it.
    pub fn registry(&self) -> &Registry {
        self.instruments.registry()
    }

    /// looptel's instruments.
    pub fn instruments(&self) -> &Instruments {
        &self.instruments
    }

    /// The dependencies `/health/ready` answers for
    /// (`looptel_dependency_up` on `/metrics`).
    pub fn health(&self) -> &Health {
        self.instruments.health()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The header the gateway sets, after verifying it, with the caller's tenant.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// [`TENANT_HEADER`] as a header name: a lookup by it parses no name (by
/// the `&str`, every request paid about 290 instructions for it).
const TENANT: HeaderName = HeaderName::from_static(TENANT_HEADER);

/// The service's baggage policy: `tenant.id` is promoted onto every span and
/// log line; personal data never leaves in baggage.
pub fn baggage_policy() -> BaggagePolicy {
    BaggagePolicy::builder().promote(["tenant.id"]).build()
}

/// The router: `POST /orders`, `GET /orders/{id}`, `GET /health`,
/// `GET /metrics`; traced by looptel's server layer (health checks and
/// scrapes are neither traced nor measured), measured by the RED layer, with
/// `tenant.id` taken from [`TENANT_HEADER`] at the edge.
///
/// One server layer with two hooks — looptel's, as the facade builds it
/// ([`Instruments::http_server`]) — the server span starts, the RED
/// metrics start their clock with the span as exemplar, the baggage edge
/// sets `tenant.id` (promoted onto the span); both end when the response
/// body does.
///
/// The trust boundary is the gateway: only a request carrying its
/// [`TENANT_HEADER`] keeps the caller's baggage; any other has it dropped
/// (counted in the policy's stats), so `tenant.id` — a metric label and a
/// log field — always comes from the gateway.
///
/// # Errors
/// None in practice: the business operation's name is checked here, once.
pub fn app(
    instrumentation: Instrumentation,
    baggage: BaggagePolicy,
    metrics: Metrics,
    dependencies: impl Into<Dependencies>,
) -> Result<Router, OperationNameError> {
    Ok(routes(&metrics, dependencies)?
        // One layer: the RED metrics and the baggage edge run as its hooks,
        // inside its span, sharing its future and body.
        .layer(
            metrics
                .instruments
                .http_server(instrumentation)
                // The trust boundary, given once: a request that did not
                // come through the gateway (no verified tenant header)
                // starts a trace of its own, linked to the caller's, and
                // its inbound baggage is dropped (the edge counts it), so
                // no caller can name a tenant (a metric label, a log
                // field) itself.
                .public_endpoint(|req: &axum::http::Request<axum::body::Body>| {
                    !req.headers().contains_key(TENANT)
                })
                .hook(EdgeLayer::new(baggage).members(from_header(TENANT, "tenant.id"))),
        ))
}

/// The routes and their handlers, without the telemetry layer ([`app`]
/// adds it): what the benchmarks measure the layer against.
///
/// # Errors
/// None in practice: the business operation's name is checked here, once.
pub fn routes(
    metrics: &Metrics,
    dependencies: impl Into<Dependencies>,
) -> Result<Router, OperationNameError> {
    let Dependencies { inventory, events } = dependencies.into();
    let orders_created = metrics.orders_created.clone();
    let placing = Operation::new("Order.OrderService.PlaceOrder")?
        .messages("order placed", "order rejected", "order failed")
        .on_end(move |outcome| {
            if outcome == Outcome::Success {
                // Bounded by the family's series cap, like every label.
                let tenant = opentelemetry::Context::map_current(|cx| {
                    cx.baggage().get("tenant.id").map(|v| v.to_string())
                });
                orders_created.inc(&[tenant.as_deref().unwrap_or("")]);
            }
        });
    let state = AppState(Arc::new(Shared {
        store: RwLock::default(),
        place_order: placing,
        inventory,
        events,
    }));
    Ok(Router::new()
        .route(
            "/orders",
            post(place_order).layer(axum::extract::DefaultBodyLimit::max(serve::MAX_BODY_BYTES)),
        )
        .route("/orders/{id}", get(get_order))
        .with_state(state)
        .merge(metrics.instruments.routes()))
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
enum PlaceOrderError {
    #[error("{0}")]
    Invalid(String),
    #[error("inventory unavailable for {0}")]
    InventoryUnavailable(String),
    #[error("order event not published: {0}")]
    EventUnpublished(String),
}

/// Which errors are the caller's and which the service's: the span status,
/// `error.type` and the log level follow from it.
impl ErrorOutcome for PlaceOrderError {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Invalid(_) => Outcome::BusinessError,
            Self::InventoryUnavailable(_) | Self::EventUnpublished(_) => Outcome::Failure,
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_order",
            Self::InventoryUnavailable(_) => "inventory_unavailable",
            Self::EventUnpublished(_) => "event_unpublished",
        }
    }
}

impl IntoResponse for PlaceOrderError {
    fn into_response(self) -> Response {
        let status = match self.outcome() {
            Outcome::Failure => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let body = ErrorBody {
            error: self.error_type(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

async fn place_order(
    State(state): State<AppState>,
    Json(new): Json<NewOrder>,
) -> Result<(StatusCode, Json<Order>), PlaceOrderError> {
    let operation = state.0.place_order.clone();
    // The business operation, in its own span named per the service's API;
    // its status, `error.type`, log line and counter follow from the result.
    let order = operation.run(PlaceOrder { state, new }.run()).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

struct PlaceOrder {
    state: AppState,
    new: NewOrder,
}

impl PlaceOrder {
    async fn run(self) -> Result<Order, PlaceOrderError> {
        let span = tracing::Span::current();
        span.set_attribute("order.items", self.new.items.len() as i64);
        let order = self.place().await?;
        span.set_attribute("order.id", order.id.clone());
        Ok(order)
    }

    async fn place(self) -> Result<Order, PlaceOrderError> {
        if self.new.items.is_empty() {
            return Err(PlaceOrderError::Invalid(
                "an order needs at least one item".into(),
            ));
        }
        if let Some(bad) = self
            .new
            .items
            .iter()
            .find(|i| !(1..=100).contains(&i.quantity))
        {
            return Err(PlaceOrderError::Invalid(format!(
                "quantity {} of {} is not between 1 and 100",
                bad.quantity, bad.sku
            )));
        }
        // Reserve every item in the inventory, over gRPC: the client span is
        // a child of this operation's, the inventory's server span of it.
        let mut inventory = self.state.0.inventory.clone();
        for item in &self.new.items {
            let mut reserve = tonic::Request::new(inventory::v1::ReserveItemRequest {
                sku: item.sku.clone(),
                quantity: item.quantity,
            });
            reserve.set_timeout(inventory::RESERVE_TIMEOUT);
            if let Err(status) = inventory.reserve_item(reserve).await {
                return Err(match status.code() {
                    tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                        PlaceOrderError::Invalid(status.message().to_owned())
                    }
                    // Down, slow or broken: the service failed its job.
                    _ => PlaceOrderError::InventoryUnavailable(item.sku.clone()),
                });
            }
        }
        let id = {
            let mut store = self
                .state
                .0
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            store.next += 1;
            format!("o-{}", store.next)
        };
        let order = Order {
            id,
            customer_id: self.new.customer_id,
            items: self.new.items,
            status: "placed".into(),
        };
        // The order is placed once its event is out: fulfilment depends on it.
        if let Some(events) = &self.state.0.events {
            let event = events::OrderPlaced {
                order_id: order.id.clone(),
                customer_id: order.customer_id.clone(),
                items: order.items.len(),
            };
            events
                .order_placed(&event)
                .await
                .map_err(|e| PlaceOrderError::EventUnpublished(e.to_string()))?;
        }
        let mut store = self
            .state
            .0
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if store.order.len() >= MAX_ORDERS
            && let Some(oldest) = store.order.pop_front()
        {
            store.orders.remove(&oldest);
        }
        store.order.push_back(order.id.clone());
        store.orders.insert(order.id.clone(), order.clone());
        Ok(order)
    }
}

async fn get_order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let store = state.0.store.read().unwrap_or_else(PoisonError::into_inner);
    match store.orders.get(&id) {
        Some(order) => Json(order.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(ErrorBody {
                error: "not_found",
                message: format!("no order {id}"),
            }),
        )
            .into_response(),
    }
}
