//! Stockroom's HTTP API: Elastic Path's v2 inventory calls over axum.
//!
//! Only this crate knows HTTP and JSON. Every route is declared once, in [`routes`], with the
//! [`Access`] it needs; the same table builds the router and drives the auth-matrix test, so a
//! new route cannot be added without saying who may call it.

pub mod auth;
pub mod caller;
mod carts;
pub mod clock;
mod customers;
pub mod error;
pub mod events;
pub mod extract;
pub mod gateways;
mod inventory;
mod locations;
pub mod metrics;
mod nats;
pub mod openapi;
mod orders;
pub mod payments;
mod products;
pub mod ratelimit;
pub mod secrets;
pub mod server;
pub mod tokens;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use stockroom_domain::Clock;
use stockroom_store::Store;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use auth::{Access, SignInLimits};
pub use caller::Caller;
pub use carts::purge_idle as purge_idle_carts;
pub use error::ApiError;
pub use events::{EventSettings, WebhookRoots};
pub use gateways::{HttpGateway, PaymentSettings};
pub use tokens::TokenKeys;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<TokenKeys>,
    pub clock: Arc<dyn Clock>,
    pub payments: Arc<PaymentSettings>,
    /// For the HTTP payment gateway.
    pub http_client: reqwest::Client,
    pub limits: Arc<Limits>,
    /// Failed sign-ins, per client address and per client id.
    pub sign_ins: Arc<SignInLimits>,
    /// Shoppers' checkouts and payments, per token and per client address.
    pub order_writes: Arc<ratelimit::OrderWriteLimits>,
    /// Permits for requests in flight; when none is left, requests are shed with 503.
    inflight: Arc<tokio::sync::Semaphore>,
    /// How events are delivered (integrations, webhooks, NATS).
    pub events: Arc<EventSettings>,
}

/// Bounds on the work the server takes on at once, and on how long a client may hold it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests handled at once; more are answered 503 with `Retry-After` at once rather than
    /// queued without bound.
    pub max_concurrent_requests: usize,
    /// How long one request may take before it is answered 503 (its outcome then unknown:
    /// retry with the same `Idempotency-Key`).
    pub request_timeout: Duration,
    /// How long a request's head may take to arrive, from its first byte (from the accept, for
    /// a connection's first request); a slower connection is closed.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub keep_alive_timeout: Duration,
    /// How long a request's body may take to arrive (it is read before the request takes a
    /// slot); a slower one is answered 408.
    pub body_read_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 /64 counts as one).
    pub max_connections_per_address: usize,
    /// Peers whose `X-Forwarded-For` names the client (reverse proxies in front of Stockroom).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Failed sign-ins allowed per client address per minute (all at once, or spread); a
    /// client id takes ten times as many from all addresses together.
    pub sign_in_failures_per_minute: u32,
    /// How long a cart may go unchanged before it is purged (Elastic Path: seven days).
    pub cart_expiry: Duration,
    /// Checkouts and payments one shopper token may make per minute (at once or spread);
    /// `0`: no limit. Administrators are not limited.
    pub order_writes_per_token_per_minute: u32,
    /// Checkouts and payments by shoppers from one client address per minute; `0`: no limit.
    pub order_writes_per_address_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_address: 256,
            trusted_proxies: Vec::new(),
            sign_in_failures_per_minute: 10,
            cart_expiry: Duration::from_secs(stockroom_domain::limits::CART_EXPIRY_DEFAULT_SECS),
            // Off here (tests and embedders); `stockroom serve` turns them on by default.
            order_writes_per_token_per_minute: 0,
            order_writes_per_address_per_minute: 0,
        }
    }
}

impl AppState {
    /// Loads the token signing key from the store (making it on first start).
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<AppState, stockroom_store::StoreError> {
        let tokens = Arc::new(TokenKeys::load(&*store).await?);
        metrics::handle();
        Ok(AppState {
            store,
            tokens,
            clock,
            payments: Arc::new(PaymentSettings::default()),
            http_client: reqwest::Client::new(),
            limits: Arc::new(Limits::default()),
            sign_ins: Arc::new(SignInLimits::new(
                Limits::default().sign_in_failures_per_minute,
            )),
            order_writes: Arc::new(ratelimit::OrderWriteLimits::new(0, 0)),
            inflight: Arc::new(tokio::sync::Semaphore::new(
                Limits::default().max_concurrent_requests,
            )),
            events: Arc::new(EventSettings::default()),
        })
    }

    pub fn with_events(self, events: EventSettings) -> Self {
        AppState {
            events: Arc::new(events),
            ..self
        }
    }

    pub fn with_limits(self, limits: Limits) -> Self {
        AppState {
            inflight: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
            sign_ins: Arc::new(SignInLimits::new(limits.sign_in_failures_per_minute)),
            order_writes: Arc::new(ratelimit::OrderWriteLimits::new(
                limits.order_writes_per_token_per_minute,
                limits.order_writes_per_address_per_minute,
            )),
            limits: Arc::new(limits),
            ..self
        }
    }

    pub fn with_payments(self, payments: PaymentSettings) -> Self {
        AppState {
            payments: Arc::new(payments),
            ..self
        }
    }
}

/// One route: method, path (axum syntax), who may call it, and its documentation.
#[derive(Clone, Debug)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub doc: openapi::Doc,
}

/// The methods the API routes. A closed set, so a route's method filter is always its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Builds the router and the table of its routes together.
struct Routes {
    state: AppState,
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn add<H, T>(
        mut self,
        verb: Verb,
        path: &'static str,
        access: Access,
        handler: H,
        doc: openapi::Doc,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = on(verb.filter(), handler).route_layer(from_fn_with_state(
            self.state.clone(),
            move |state, req, next| auth::authorize(access, state, req, next),
        ));
        self.router = self.router.route(path, route);
        self.table.push(RouteInfo {
            method: verb.method(),
            path,
            access,
            doc,
        });
        self
    }
}

/// Every route of the API: method, path, who may call it, its handler, and what its
/// documentation cannot read off the handler's types (a summary, the wire types of its body,
/// query and answers, its own error statuses). The router and the OpenAPI document are both
/// built from this table.
pub fn routes(state: AppState) -> (Router, Vec<RouteInfo>) {
    routes_with(state, Router::new())
}

/// [`routes`], with `extra` routes (the dashboard) merged in under the same layers: load
/// shedding, time limit, metrics and tracing. `extra` does its own authorization.
pub fn routes_with(state: AppState, extra: Router<AppState>) -> (Router, Vec<RouteInfo>) {
    use openapi::doc;
    use wire::carts::{
        CartAnswer, CartFields, CartIncludeQuery, CartItemQuantities, CartItemUpdate, CartItems,
        CartOut, NewCartItems,
    };
    use wire::customers::{
        CustomerChanges, CustomerOut, CustomerRefs, CustomerToken, CustomerTokenRequest,
        NewCustomer,
    };
    use wire::integrations::{
        IntegrationOut, IntegrationUpdate, JobOut, LogOut, NewIntegration, StockThreshold,
        StockThresholdOut,
    };
    use wire::locations::{LocationOut, LocationPatchBody, NewLocationBody};
    use wire::orders::{
        CheckoutBody, IncludeQuery, OrderAnswer, OrderItemOut, OrderList, OrderListQuery, OrderOut,
        OrderUpdate,
    };
    use wire::payments::{GatewayOut, GatewayUpdate, PaymentOut, PaymentRequest, RefundRequest};
    use wire::products::{NewProductBody, ProductOut, ProductPatchBody};
    use wire::stock::{
        AnyStock, AnyStockTransaction, HistoryTerm, MultipleIds, NewStock, NewStockMulti,
        StockMultiLocation, StockTerm, StockUpdate, TransactionBody,
    };
    use wire::{Data, List, ListQuery, PageQuery};
    use Access::*;
    use Verb::*;
    let routes = Routes {
        state: state.clone(),
        router: Router::new(),
        table: Vec::new(),
    }
    .add(
        Post,
        "/oauth/access_token",
        Public,
        auth::access_token,
        doc("Get an access token (client credentials or implicit grant)")
            .form::<wire::auth::TokenForm>()
            .ok::<wire::auth::Token>()
            .errors(&[401, 429]),
    )
    .add(
        Get,
        "/health",
        Public,
        ready,
        doc("Readiness (as `/health/ready`): a writable database answers within a second")
            .ok::<wire::Health>(),
    )
    .add(
        Get,
        "/health/ready",
        Public,
        ready,
        doc(
            "Readiness: a writable database (PostgreSQL: the primary) answers within a second; \
             503 while it does not, e.g. during a failover",
        )
        .ok::<wire::Health>(),
    )
    .add(
        Get,
        "/health/live",
        Public,
        live,
        doc("Liveness: the process serves requests (the database is not consulted)")
            .ok::<wire::Health>(),
    )
    .add(
        Get,
        "/metrics",
        Admin,
        metrics::render,
        doc("Prometheus metrics").text(),
    )
    .add(
        Get,
        "/openapi.json",
        Public,
        openapi::serve_document,
        doc("This OpenAPI document").ok::<openapi::Document>(),
    )
    // ---- stock -------------------------------------------------------------------------------
    .add(
        Get,
        "/v2/inventories",
        Shopper,
        inventory::list,
        doc("List products' stock")
            .query::<ListQuery<StockTerm>>()
            .ok::<List<AnyStock>>()
            .multi_location(),
    )
    .add(
        Post,
        "/v2/inventories",
        Admin,
        inventory::create_multi,
        doc("Create a product's stock at no location or at locations (multi-location API)")
            .body::<Data<NewStockMulti>>()
            .created::<Data<StockMultiLocation>>()
            .idempotent()
            .errors(&[404, 409]),
    )
    .add(
        Post,
        "/v2/inventories/multiple",
        Shopper,
        inventory::multiple,
        doc("Read the stock of several products (ids with no stock are left out)")
            .body::<Data<MultipleIds>>()
            .ok::<Data<Vec<AnyStock>>>()
            .multi_location(),
    )
    .add(
        Get,
        "/v2/inventories/{product}",
        Shopper,
        inventory::get,
        doc("Read a product's stock")
            .ok::<Data<AnyStock>>()
            .multi_location(),
    )
    .add(
        Post,
        "/v2/inventories/{product}",
        Admin,
        inventory::create,
        doc("Create a product's stock (at no location)")
            .body::<Data<NewStock>>()
            .created::<Data<AnyStock>>()
            .idempotent()
            .multi_location()
            .errors(&[409]),
    )
    .add(
        Put,
        "/v2/inventories/{product}",
        Admin,
        inventory::update_multi,
        doc(
            "Set a product's available stock per location; null removes a location \
             (multi-location API)",
        )
        .body::<Data<StockUpdate>>()
        .ok::<Data<StockMultiLocation>>()
        .errors(&[409, 422]),
    )
    .add(
        Delete,
        "/v2/inventories/{product}",
        Admin,
        inventory::delete,
        doc("Delete a product's stock (refused while units are allocated)")
            .no_content()
            .errors(&[409]),
    )
    .add(
        Get,
        "/v2/inventories/{product}/transactions",
        Admin,
        inventory::list_transactions,
        doc("List a product's stock transactions, newest first")
            .query::<ListQuery<HistoryTerm>>()
            .ok::<List<AnyStockTransaction>>()
            .multi_location(),
    )
    .add(
        Post,
        "/v2/inventories/{product}/transactions",
        Admin,
        inventory::post_transaction,
        doc("Change a product's stock (200 on the classic API, 201 on the multi-location one)")
            .body::<Data<TransactionBody>>()
            .ok::<Data<AnyStockTransaction>>()
            .also::<Data<AnyStockTransaction>>(201)
            .idempotent()
            .multi_location()
            .errors(&[422]),
    )
    .add(
        Get,
        "/v2/inventories/{product}/transactions/{transaction}",
        Admin,
        inventory::get_transaction,
        doc("Read one stock transaction")
            .ok::<Data<AnyStockTransaction>>()
            .multi_location(),
    )
    // ---- locations ---------------------------------------------------------------------------
    .add(
        Get,
        "/v2/inventories/locations",
        Shopper,
        locations::list,
        doc("List inventory locations")
            .query::<PageQuery>()
            .ok::<List<LocationOut>>(),
    )
    .add(
        Post,
        "/v2/inventories/locations",
        Admin,
        locations::create,
        // 404: a repeated Idempotency-Key whose location was deleted since.
        doc("Create an inventory location")
            .body::<Data<NewLocationBody>>()
            .created::<Data<LocationOut>>()
            .idempotent()
            .errors(&[404, 409]),
    )
    .add(
        Get,
        "/v2/inventories/locations/{location}",
        Shopper,
        locations::get,
        doc("Read an inventory location").ok::<Data<LocationOut>>(),
    )
    .add(
        Put,
        "/v2/inventories/locations/{location}",
        Admin,
        locations::update,
        doc("Update an inventory location (its slug is kept while it holds stock)")
            .body::<Data<LocationPatchBody>>()
            .ok::<Data<LocationOut>>()
            .errors(&[409]),
    )
    .add(
        Delete,
        "/v2/inventories/locations/{location}",
        Admin,
        locations::delete,
        doc("Delete an inventory location (refused while it holds stock)")
            .no_content()
            .errors(&[409]),
    )
    // ---- products ----------------------------------------------------------------------------
    .add(
        Post,
        "/v2/products",
        Admin,
        products::create,
        // 404: a repeated Idempotency-Key whose product was deleted since.
        doc("Create a product")
            .body::<Data<NewProductBody>>()
            .created::<Data<ProductOut>>()
            .idempotent()
            .errors(&[404, 409]),
    )
    .add(
        Get,
        "/v2/products",
        Shopper,
        products::list,
        doc("List products")
            .query::<PageQuery>()
            .ok::<List<ProductOut>>(),
    )
    .add(
        Get,
        "/v2/products/{product}",
        Shopper,
        products::get,
        doc("Read a product").ok::<Data<ProductOut>>(),
    )
    .add(
        Put,
        "/v2/products/{product}",
        Admin,
        products::update,
        doc("Update a product")
            .body::<Data<ProductPatchBody>>()
            .ok::<Data<ProductOut>>()
            .errors(&[409]),
    )
    .add(
        Delete,
        "/v2/products/{product}",
        Admin,
        products::delete,
        doc("Delete a product (and its lines in carts)").no_content(),
    )
    // ---- customers ---------------------------------------------------------------------------
    .add(
        Post,
        "/v2/customers",
        Shopper,
        customers::create,
        doc("Create a customer (unique email; the password is kept as an argon2 hash)")
            .body::<Data<NewCustomer>>()
            .created::<Data<CustomerOut>>()
            .errors(&[409]),
    )
    .add(
        Get,
        "/v2/customers",
        Admin,
        customers::list,
        doc("List customers")
            .query::<PageQuery>()
            .ok::<List<CustomerOut>>(),
    )
    .add(
        Post,
        "/v2/customers/tokens",
        Shopper,
        customers::token,
        doc("Get a customer token (X-Moltin-Customer-Token) for an email and password")
            .body::<Data<CustomerTokenRequest>>()
            .ok::<Data<CustomerToken>>()
            .errors(&[401]),
    )
    .add(
        Get,
        "/v2/customers/{customer}",
        Customer,
        customers::get,
        doc("Read a customer (an administrator, or the customer with its customer token)")
            .ok::<Data<CustomerOut>>(),
    )
    .add(
        Put,
        "/v2/customers/{customer}",
        Customer,
        customers::update,
        doc("Update a customer (an administrator, or the customer with its customer token)")
            .body::<Data<CustomerChanges>>()
            .ok::<Data<CustomerOut>>()
            .errors(&[409]),
    )
    .add(
        Delete,
        "/v2/customers/{customer}",
        Customer,
        customers::delete,
        doc("Delete a customer (an administrator, or the customer with its customer token)")
            .no_content(),
    )
    // ---- carts -------------------------------------------------------------------------------
    .add(
        Get,
        "/v2/carts",
        Customer,
        carts::list,
        doc("List the carts of the customer whose X-Moltin-Customer-Token is sent")
            .query::<PageQuery>()
            .ok::<List<CartOut>>(),
    )
    .add(
        Post,
        "/v2/carts/{cart}/relationships/customers",
        Customer,
        carts::associate_customer,
        doc("Associate a cart with a customer (its own customer token, or an administrator)")
            .body::<Data<CustomerRefs>>()
            .ok::<Data<Vec<wire::Relation>>>(),
    )
    .add(
        Post,
        "/v2/carts",
        Shopper,
        carts::create,
        doc("Create an empty cart with a name and a description; its id is generated")
            .body::<Data<CartFields>>()
            .ok::<CartAnswer>()
            .idempotent(),
    )
    .add(
        Get,
        "/v2/carts/{cart}",
        Shopper,
        carts::get,
        doc("Read a cart (a new cart reads as empty); `include=items` adds its items")
            .query::<CartIncludeQuery>()
            .ok::<CartAnswer>(),
    )
    .add(
        Put,
        "/v2/carts/{cart}",
        Shopper,
        carts::update,
        doc("Change a cart's name or description")
            .body::<Data<CartFields>>()
            .ok::<CartAnswer>(),
    )
    .add(
        Delete,
        "/v2/carts/{cart}",
        Shopper,
        carts::delete,
        doc("Delete a cart").no_content(),
    )
    .add(
        Get,
        "/v2/carts/{cart}/items",
        Shopper,
        carts::get_items,
        doc("Read a cart's items").ok::<CartItems>(),
    )
    .add(
        Delete,
        "/v2/carts/{cart}/items",
        Shopper,
        carts::empty,
        doc("Remove every item from a cart, keeping the cart").ok::<CartItems>(),
    )
    .add(
        Put,
        "/v2/carts/{cart}/items",
        Shopper,
        carts::update_items,
        doc(
            "Change the quantities of several cart items at once (0 removes one), all or \
             nothing; each item's stock is checked as for one",
        )
        .body::<Data<CartItemQuantities>>()
        .ok::<CartItems>(),
    )
    .add(
        Post,
        "/v2/carts/{cart}/items",
        Shopper,
        carts::add_items,
        doc("Add one item or several to a cart, all or nothing")
            .body::<Data<NewCartItems>>()
            .ok::<CartItems>()
            .idempotent(),
    )
    .add(
        Put,
        "/v2/carts/{cart}/items/{item}",
        Shopper,
        carts::update_item,
        doc("Change the quantity of a cart item")
            .body::<Data<CartItemUpdate>>()
            .ok::<CartItems>(),
    )
    .add(
        Delete,
        "/v2/carts/{cart}/items/{item}",
        Shopper,
        carts::delete_item,
        doc("Remove an item from a cart").no_content(),
    )
    .add(
        Post,
        "/v2/carts/{cart}/checkout",
        Shopper,
        orders::checkout,
        doc("Check a cart out into an order")
            .body::<Data<CheckoutBody>>()
            .created::<Data<OrderOut>>()
            .idempotent()
            .errors(&[429]),
    )
    // ---- orders and payments -----------------------------------------------------------------
    .add(
        Get,
        "/v2/orders",
        Customer,
        orders::list,
        doc(
            "List orders (newest first unless sorted), filtered as Elastic Path filters them \
             (less customer and account terms), with `include=items` the page's items: all for \
             an administrator, a customer's own with its X-Moltin-Customer-Token, none for an \
             implicit token alone (403)",
        )
        .query::<OrderListQuery>()
        .ok::<OrderList>(),
    )
    .add(
        Get,
        "/v2/orders/{order}",
        Customer,
        orders::get,
        doc("Read an order (an administrator; a customer its own, with its customer token)")
            .query::<IncludeQuery>()
            .ok::<OrderAnswer>(),
    )
    .add(
        Put,
        "/v2/orders/{order}",
        Admin,
        orders::update,
        doc(
            "Set an order's `order_number`, `external_ref` or `shipping_address`, ship it \
             (`shipping: fulfilled`) or cancel it (`status: cancelled`): any of these at once, \
             each applied or none",
        )
        .body::<Data<OrderUpdate>>()
        .ok::<Data<OrderOut>>()
        .idempotent()
        .errors(&[409]),
    )
    .add(
        Get,
        "/v2/orders/{order}/items",
        Customer,
        orders::get_items,
        doc("Read an order's items (as for the order)").ok::<Data<Vec<OrderItemOut>>>(),
    )
    .add(
        Post,
        "/v2/orders/{order}/payments",
        Shopper,
        payments::pay,
        doc(
            "Pay for an order (purchase or authorize) through an enabled gateway; allocates \
             every line or none",
        )
        .body::<Data<PaymentRequest>>()
        .ok::<Data<PaymentOut>>()
        .idempotent()
        .errors(&[409, 429]),
    )
    .add(
        Get,
        "/v2/orders/{order}/transactions",
        Customer,
        payments::list,
        doc("List an order's payment transactions (read as the order is)")
            .ok::<Data<Vec<PaymentOut>>>(),
    )
    .add(
        Get,
        "/v2/orders/{order}/transactions/{transaction}",
        Customer,
        payments::get,
        doc("Read one payment transaction (read as its order is)").ok::<Data<PaymentOut>>(),
    )
    .add(
        Post,
        "/v2/orders/{order}/transactions/{transaction}/capture",
        Admin,
        payments::capture,
        doc("Capture an authorized payment (any body is ignored)")
            .ok::<Data<PaymentOut>>()
            .idempotent()
            .errors(&[409]),
    )
    .add(
        Post,
        "/v2/orders/{order}/transactions/{transaction}/cancel",
        Admin,
        payments::void,
        doc(
            "Void an authorization that was not captured: its allocation is released once and \
             the order is unpaid again (any body is ignored)",
        )
        .ok::<Data<PaymentOut>>()
        .idempotent()
        .errors(&[409]),
    )
    .add(
        Post,
        "/v2/orders/{order}/transactions/{transaction}/refund",
        Admin,
        payments::refund,
        doc(
            "Record money given back for a paid transaction (all that is left, or `amount`); \
             never more than was paid, and no stock moves",
        )
        .body::<Data<RefundRequest>>()
        .ok::<Data<PaymentOut>>()
        .idempotent()
        .errors(&[409]),
    )
    // ---- gateways ----------------------------------------------------------------------------
    .add(
        Get,
        "/v2/gateways",
        Admin,
        gateways::list,
        doc("List the payment gateways and whether each is enabled").ok::<Data<Vec<GatewayOut>>>(),
    )
    .add(
        Get,
        "/v2/gateways/{gateway}",
        Admin,
        gateways::get,
        doc("Read a payment gateway").ok::<Data<GatewayOut>>(),
    )
    .add(
        Put,
        "/v2/gateways/{gateway}",
        Admin,
        gateways::update,
        doc("Enable or disable a payment gateway (`manual`, or `http` when configured)")
            .body::<Data<GatewayUpdate>>()
            .ok::<Data<GatewayOut>>()
            .errors(&[409]),
    )
    // ---- integrations (events) ---------------------------------------------------------------
    .add(
        Get,
        "/v2/integrations",
        Admin,
        events::list,
        doc("List integrations: which events each observes and where it delivers them")
            .ok::<Data<Vec<IntegrationOut>>>(),
    )
    .add(
        Post,
        "/v2/integrations",
        Admin,
        events::create,
        doc("Create an integration (a webhook, or NATS JetStream) observing events")
            .body::<Data<NewIntegration>>()
            .created::<Data<IntegrationOut>>(),
    )
    .add(
        Get,
        "/v2/integrations/logs",
        Admin,
        events::store_logs,
        doc("The newest delivery attempts of every integration").ok::<Data<Vec<LogOut>>>(),
    )
    .add(
        Get,
        "/v2/integrations/{integration}",
        Admin,
        events::get,
        doc("Read an integration").ok::<Data<IntegrationOut>>(),
    )
    .add(
        Put,
        "/v2/integrations/{integration}",
        Admin,
        events::update,
        doc("Change an integration (the fields given; the others stay)")
            .body::<Data<IntegrationUpdate>>()
            .ok::<Data<IntegrationOut>>(),
    )
    .add(
        Delete,
        "/v2/integrations/{integration}",
        Admin,
        events::delete,
        doc("Remove an integration, its pending events and its logs").no_content(),
    )
    .add(
        Get,
        "/v2/integrations/{integration}/logs",
        Admin,
        events::logs,
        doc("An integration's newest delivery attempts").ok::<Data<Vec<LogOut>>>(),
    )
    .add(
        Get,
        "/v2/integrations/{integration}/jobs",
        Admin,
        events::jobs,
        doc("An integration's newest jobs (one event each) and where each stands")
            .ok::<Data<Vec<JobOut>>>(),
    )
    .add(
        Get,
        "/v2/integrations/{integration}/jobs/{job}/logs",
        Admin,
        events::job_logs,
        doc("The delivery attempts of one job").ok::<Data<Vec<LogOut>>>(),
    )
    .add(
        Put,
        "/v2/inventories/{product}/threshold",
        Admin,
        events::set_threshold,
        doc("Set (or with null remove) a stock record's low-stock threshold: stock.low, stock.out and stock.replenished fire when what is available crosses it or zero")
            .body::<Data<StockThreshold>>()
            .ok::<Data<StockThresholdOut>>(),
    );
    let router =
        routes
            .router
            .merge(extra)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            // Shoppers' checkouts and payments (`ratelimit::ORDER_WRITE_ROUTES`).
            .layer(from_fn_with_state(
                state.clone(),
                ratelimit::limit_order_writes,
            ))
            .layer(from_fn_with_state(state.clone(), shed_and_time_out))
            // Outside the shedding: a body is read before its request takes a slot.
            .layer(from_fn_with_state(state.clone(), server::read_body_first))
            .layer(from_fn(metrics::count))
            // Failed requests are answered and counted (`/metrics`); the causes worth an operator's
            // attention (storage errors) are logged where they happen. Logging every shed 503 at
            // error level would turn an overload into a logging storm.
            .layer(TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ))
            .layer(from_fn(extract::refuse_nul_in_uri))
            .layer(from_fn(json_errors_for_bad_paths))
            .with_state(state);
    (router, routes.table)
}

/// Sheds load beyond [`Limits::max_concurrent_requests`] and bounds each request's time.
async fn shed_and_time_out(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = state.inflight.clone().try_acquire_owned() else {
        ::metrics::counter!("stockroom_http_shed_total").increment(1);
        return ApiError::Unavailable.into_response();
    };
    match tokio::time::timeout(state.limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            ::metrics::counter!("stockroom_http_timeouts_total").increment(1);
            ApiError::TimedOut.into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// axum answers a path segment it cannot decode (bad UTF-8 percent-escapes) with plain text;
/// give it the `errors` shape like every other error.
async fn json_errors_for_bad_paths(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(req).await;
    // The dashboard's pages (HTML) answer their own errors.
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if response.status().is_client_error()
        && !is_json
        && response.status() != StatusCode::NO_CONTENT
    {
        return ApiError::invalid("path", "the request path could not be read").into_response();
    }
    response
}

/// Readiness: whether a load balancer should send this instance requests. It fails while the
/// database is unreachable or is not a writable primary, and passes again by itself once the
/// store reaches the (new) primary.
async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(wire::Health { status: "ok" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::Unavailable.into_response()
        }
    }
}

/// Liveness: the process answers. A database outage must not get instances restarted (a
/// restart would not bring the database back, and the store reconnects by itself).
async fn live() -> Json<wire::Health> {
    Json(wire::Health { status: "ok" })
}

/// Serves until `shutdown` completes, then finishes the requests in flight. Meanwhile it
/// releases overdue payment attempts in the background, and keeps the token keys current.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Router::new(), shutdown).await
}

/// [`serve`], with `extra` routes merged in (see [`routes_with`]).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    extra: Router<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let every = (state.payments.pending_timeout / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    );
    let sweeper = tokio::spawn(gateways::housekeeping_forever(state.clone(), every));
    let carts = tokio::spawn(carts::purge_forever(state.clone(), every));
    let keys = tokio::spawn(state.tokens.clone().refresh_forever(state.store.clone()));
    let upkeep = tokio::spawn(metrics::upkeep_forever());
    let dispatcher = state
        .events
        .dispatch
        .then(|| events::start(state.clone()))
        .transpose()?;
    let limits = state.limits.clone();
    let (router, _) = routes_with(state, extra);
    let served = server::run(listener, router, limits, shutdown).await;
    sweeper.abort();
    carts.abort();
    keys.abort();
    upkeep.abort();
    drop(dispatcher);
    served
}
