//! Checkout and orders (wire-contract §6): check a cart out, read and list orders, ship or
//! cancel one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::CartId;
use stockroom_store::{Command, Effect, NewOrder, WriteRequest};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Query};
use crate::wire::orders::{
    CheckoutBody, IncludeQuery, OrderAnswer, OrderItemOut, OrderList, OrderListQuery, OrderOut,
    OrderUpdate, ORDER_UPDATE_HELP,
};
use crate::wire::{Data, List};
use crate::AppState;

pub async fn checkout(
    State(state): State<AppState>,
    Path(cart): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<CheckoutBody>>,
) -> Result<Response, ApiError> {
    let cart =
        CartId::parse(&cart).map_err(|e| ApiError::invalid("cart", format!("a cart id {e}")))?;
    let body = body.data;
    let shipping = body
        .shipping_address
        .unwrap_or_else(|| body.billing_address.clone());
    // The store reads the cart and prices its items from the catalog, in the transaction that
    // checks their stock and makes the order.
    let order = NewOrder {
        id: stockroom_store::new_id(),
        cart_id: cart.as_str().to_owned(),
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
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<OrderListQuery>,
) -> Result<Response, ApiError> {
    let page = query.list.page.page();
    let found = state.store.orders(&query.query(), page).await?;
    let extra = query.link_suffix();
    let include = query.include.unwrap_or_default();
    Ok(OrderList::new(&found.items, include, |items| {
        List::new(items, found.total, page, "/v2/orders", &extra)
    })
    .into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<IncludeQuery>,
) -> Result<Response, ApiError> {
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    let include = query.include.unwrap_or_default();
    Ok(axum::Json(OrderAnswer::new(&order, include)).into_response())
}

pub async fn get_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
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
