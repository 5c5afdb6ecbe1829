//! Checkout and orders (wire-contract §6): check a cart out, read and list orders, ship or
//! cancel one.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use stockroom_store::{Command, Effect, NewOrder, Order, WriteRequest};

use crate::caller::Caller;
use crate::carts::OwnedCart;
use crate::customers::{party, Party};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Query};
use crate::wire::orders::{
    CheckoutBody, IncludeQuery, OrderAnswer, OrderItemOut, OrderList, OrderListQuery, OrderOut,
    OrderUpdate, ORDER_UPDATE_HELP,
};
use crate::wire::{Data, List};
use crate::AppState;

/// The order at `id`, if the party may read it (SPEC §3): an administrator reads every order;
/// a shopper only with a customer token, and only that customer's orders (another's is 404);
/// an implicit token alone reads none (403).
pub async fn readable(state: &AppState, party: &Party, id: &str) -> Result<Order, ApiError> {
    let customer = match party {
        Party::Admin => None,
        Party::Shopper(None) => return Err(ApiError::Forbidden),
        Party::Shopper(Some(c)) => Some(c.as_str()),
    };
    let order = state.store.order(id).await?.ok_or(ApiError::NotFound)?;
    match customer {
        Some(c) if order.customer_id.as_deref() != Some(c) => Err(ApiError::NotFound),
        _ => Ok(order),
    }
}

/// The customer an order is checked out for: the customer token's; else a customer named by
/// id in `customer` (the SDK's `Checkout("customer-id", …)`) that exists; else none (the store
/// then takes the cart's).
async fn checkout_customer(
    state: &AppState,
    party: &Party,
    customer: &str,
) -> Result<Option<String>, ApiError> {
    if let Some(c) = party.customer() {
        return Ok(Some(c.to_owned()));
    }
    let named = serde_json::from_str::<serde_json::Value>(customer)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_owned));
    match named {
        Some(id) if state.store.customer(&id).await?.is_some() => Ok(Some(id)),
        _ => Ok(None),
    }
}

pub async fn checkout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    OwnedCart(cart): OwnedCart,
    Idempotent(body, idempotency): Idempotent<Data<CheckoutBody>>,
) -> Result<Response, ApiError> {
    let party = party(&state, caller, &headers)?;
    let body = body.data;
    let customer_id = checkout_customer(&state, &party, &body.customer.0).await?;
    let shipping = body
        .shipping_address
        .unwrap_or_else(|| body.billing_address.clone());
    // The store reads the cart and prices its items from the catalog, in the transaction that
    // checks their stock and makes the order.
    let order = NewOrder {
        id: stockroom_store::new_id(),
        cart_id: cart.as_str().to_owned(),
        customer_id,
        customer: body.customer.0,
        billing_address: body.billing_address.0,
        shipping_address: shipping.0,
    };
    let request = WriteRequest {
        command: Command::Checkout(order),
        idempotency,
    };
    let Effect::Order(id) = applied(state.store.execute(request).await?.outcome)? else {
        return Err(ApiError::Internal);
    };
    let order = state.store.order(&id).await?.ok_or(ApiError::Internal)?;
    Ok(Data::new(OrderOut::new(&order)).with_status(StatusCode::CREATED))
}

/// `GET /v2/orders`: filtered, sorted, paged, with the items of the page's orders when asked.
/// Every order for an administrator; a customer's own with its customer token (SPEC §3); none
/// for an implicit token alone (403).
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<OrderListQuery>,
) -> Result<Response, ApiError> {
    let mut filter = query.query();
    match party(&state, caller, &headers)? {
        Party::Admin => {}
        Party::Shopper(None) => return Err(ApiError::Forbidden),
        Party::Shopper(Some(c)) => filter.customer_id = Some(c),
    }
    let page = query.list.page.page();
    let found = state.store.orders(&filter, page).await?;
    let extra = query.link_suffix();
    let include = query.include.unwrap_or_default();
    Ok(OrderList::new(&found.items, include, |items| {
        List::new(items, found.total, page, "/v2/orders", &extra)
    })
    .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<IncludeQuery>,
) -> Result<Response, ApiError> {
    let order = readable(&state, &party(&state, caller, &headers)?, &id).await?;
    let include = query.include.unwrap_or_default();
    Ok(axum::Json(OrderAnswer::new(&order, include)).into_response())
}

pub async fn get_items(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = readable(&state, &party(&state, caller, &headers)?, &id).await?;
    Ok(Data::new(OrderItemOut::all(&order)).into_response())
}

/// `PUT /v2/orders/{id}`: `shipping: fulfilled` ships, `status: cancelled` cancels, and
/// `order_number`, `external_ref` and `shipping_address` change with either or alone — all in
/// one write, applied whole or not at all.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<OrderUpdate>>,
) -> Result<Response, ApiError> {
    let command = body
        .data
        .command(id.clone())
        .ok_or_else(|| ApiError::invalid("data", ORDER_UPDATE_HELP))?;
    let request = WriteRequest {
        command,
        idempotency,
    };
    applied(state.store.execute(request).await?.outcome)?;
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Data::new(OrderOut::new(&order)).into_response())
}
