//! Stockroom's HTTP API: Elastic Path's v2 inventory calls over axum.
//!
//! Only this crate knows HTTP and JSON. Every route is declared once, in [`routes`], with the
//! [`Access`] it needs; the same table builds the router and drives the auth-matrix test, so a
//! new route cannot be added without saying who may call it.

pub mod auth;
pub mod clock;
pub mod error;
pub mod extract;
mod inventory;
mod locations;
pub mod metrics;
pub mod openapi;
mod orders;
pub mod payments;
pub mod wire;

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use serde_json::json;
use stockroom_domain::Clock;
use stockroom_store::Store;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

pub use auth::{Access, Caller, TokenKeys};
pub use error::ApiError;
pub use payments::{HttpGateway, PaymentSettings};

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
    /// Permits for requests in flight; when none is left, requests are shed with 503.
    inflight: Arc<tokio::sync::Semaphore>,
}

/// Bounds on the work the server takes on at once.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests handled at once; more are answered 503 with `Retry-After` at once rather than
    /// queued without bound.
    pub max_concurrent_requests: usize,
    /// How long one request may take before it is answered 503 (its outcome then unknown:
    /// retry with the same `Idempotency-Key`).
    pub request_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(30),
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
            inflight: Arc::new(tokio::sync::Semaphore::new(
                Limits::default().max_concurrent_requests,
            )),
        })
    }

    pub fn with_limits(self, limits: Limits) -> Self {
        AppState {
            inflight: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests)),
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

/// One route: method, path (axum syntax) and who may call it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

/// Builds the router and the table of its routes together.
struct Routes {
    state: AppState,
    router: Router<AppState>,
    table: Vec<RouteInfo>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::DELETE => MethodFilter::DELETE,
            _ => MethodFilter::PATCH,
        };
        let route = on(filter, handler).route_layer(from_fn_with_state(
            self.state.clone(),
            move |state, req, next| auth::authorize(access, state, req, next),
        ));
        self.router = self.router.route(path, route);
        self.table.push(RouteInfo {
            method,
            path,
            access,
        });
        self
    }
}

/// Every route of the API with its access, and the router serving them.
pub fn routes(state: AppState) -> (Router, Vec<RouteInfo>) {
    routes_with(state, Router::new())
}

/// [`routes`], with `extra` routes (the dashboard) merged in under the same layers: load
/// shedding, time limit, metrics and tracing. `extra` does its own authorization.
pub fn routes_with(state: AppState, extra: Router<AppState>) -> (Router, Vec<RouteInfo>) {
    use Access::*;
    use Method as M;
    let routes = Routes {
        state: state.clone(),
        router: Router::new(),
        table: Vec::new(),
    }
    .add(M::POST, "/oauth/access_token", Public, auth::access_token)
    .add(M::GET, "/health", Public, health)
    .add(M::GET, "/metrics", Admin, metrics::render)
    .add(M::GET, "/openapi.json", Public, openapi::serve_document)
    .add(M::GET, "/v2/inventories", Shopper, inventory::list)
    .add(M::POST, "/v2/inventories", Admin, inventory::create_multi)
    .add(
        M::GET,
        "/v2/inventories/locations",
        Shopper,
        locations::list,
    )
    .add(
        M::POST,
        "/v2/inventories/locations",
        Admin,
        locations::create,
    )
    .add(
        M::GET,
        "/v2/inventories/locations/{location}",
        Shopper,
        locations::get,
    )
    .add(
        M::PUT,
        "/v2/inventories/locations/{location}",
        Admin,
        locations::update,
    )
    .add(
        M::DELETE,
        "/v2/inventories/locations/{location}",
        Admin,
        locations::delete,
    )
    .add(
        M::POST,
        "/v2/inventories/multiple",
        Shopper,
        inventory::multiple,
    )
    .add(M::GET, "/v2/inventories/{product}", Shopper, inventory::get)
    .add(
        M::POST,
        "/v2/inventories/{product}",
        Admin,
        inventory::create,
    )
    .add(
        M::PUT,
        "/v2/inventories/{product}",
        Admin,
        inventory::update_multi,
    )
    .add(
        M::DELETE,
        "/v2/inventories/{product}",
        Admin,
        inventory::delete,
    )
    .add(
        M::GET,
        "/v2/inventories/{product}/transactions",
        Admin,
        inventory::list_transactions,
    )
    .add(
        M::POST,
        "/v2/inventories/{product}/transactions",
        Admin,
        inventory::post_transaction,
    )
    .add(
        M::GET,
        "/v2/inventories/{product}/transactions/{transaction}",
        Admin,
        inventory::get_transaction,
    )
    .add(M::POST, "/v2/products", Admin, orders::create_product)
    .add(M::GET, "/v2/products", Shopper, orders::list_products)
    .add(
        M::GET,
        "/v2/products/{product}",
        Shopper,
        orders::get_product,
    )
    .add(
        M::PUT,
        "/v2/products/{product}",
        Admin,
        orders::update_product,
    )
    .add(
        M::DELETE,
        "/v2/products/{product}",
        Admin,
        orders::delete_product,
    )
    .add(M::GET, "/v2/carts/{cart}", Shopper, orders::get_cart)
    .add(M::DELETE, "/v2/carts/{cart}", Shopper, orders::delete_cart)
    .add(
        M::GET,
        "/v2/carts/{cart}/items",
        Shopper,
        orders::get_cart_items,
    )
    .add(
        M::POST,
        "/v2/carts/{cart}/items",
        Shopper,
        orders::add_to_cart,
    )
    .add(
        M::PUT,
        "/v2/carts/{cart}/items/{item}",
        Shopper,
        orders::update_cart_item,
    )
    .add(
        M::DELETE,
        "/v2/carts/{cart}/items/{item}",
        Shopper,
        orders::delete_cart_item,
    )
    .add(
        M::POST,
        "/v2/carts/{cart}/checkout",
        Shopper,
        orders::checkout,
    )
    .add(M::GET, "/v2/orders", Admin, orders::list_orders)
    .add(M::GET, "/v2/orders/{order}", Shopper, orders::get_order)
    .add(M::PUT, "/v2/orders/{order}", Admin, orders::update_order)
    .add(
        M::GET,
        "/v2/orders/{order}/items",
        Shopper,
        orders::get_order_items,
    )
    .add(M::POST, "/v2/orders/{order}/payments", Shopper, orders::pay)
    .add(
        M::GET,
        "/v2/orders/{order}/transactions",
        Shopper,
        orders::list_payments,
    )
    .add(
        M::GET,
        "/v2/orders/{order}/transactions/{transaction}",
        Shopper,
        orders::get_payment,
    )
    .add(
        M::POST,
        "/v2/orders/{order}/transactions/{transaction}/capture",
        Admin,
        orders::capture,
    );
    let router =
        routes
            .router
            .merge(extra)
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(from_fn_with_state(state.clone(), shed_and_time_out))
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

async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            ApiError::Unavailable.into_response()
        }
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight. Meanwhile it
/// releases overdue payment attempts in the background.
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
    let sweeper = tokio::spawn(payments::housekeeping_forever(state.clone(), every));
    let upkeep = tokio::spawn(metrics::upkeep_forever());
    let (router, _) = routes_with(state, extra);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    upkeep.abort();
    served
}
