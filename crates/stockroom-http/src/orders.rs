//! Checkout and orders (wire-contract §6): check a cart out, read and list orders, ship or
//! cancel one.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::{CartId, Quantity};
use stockroom_store::{Cart, Command, Effect, Money, NewOrder, OrderItem, WriteRequest};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Query};
use crate::wire::carts::{cart_currency, item_price};
use crate::wire::orders::{
    order_query, CheckoutBody, IncludeQuery, OrderAnswer, OrderItemOut, OrderOut, OrderTerm,
    OrderUpdate,
};
use crate::wire::{line_value, Data, List, ListQuery};
use crate::AppState;

/// The order a checkout makes of `cart`: its lines priced now, and their total.
///
/// Hand-over (issue 11): the store's `Checkout` command will take the cart id, customer and
/// addresses and assemble items, prices and totals itself inside the batch; this function then
/// goes away and the handler sends those three.
fn assemble_order(cart: &Cart, body: CheckoutBody) -> Result<NewOrder, ApiError> {
    if cart.items.is_empty() {
        return Err(ApiError::invalid("cart", "the cart is empty"));
    }
    // One currency per cart was checked when items were added; a price may have changed since.
    let mut currencies: Vec<&str> = cart
        .items
        .iter()
        .filter_map(|i| i.product.as_ref().map(|p| p.price.currency.as_str()))
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        return Err(stockroom_store::Rejection::CurrencyMismatch.into());
    }
    let currency = cart_currency(Some(cart));
    let items = cart
        .items
        .iter()
        .map(|i| {
            let quantity = i64::try_from(i.quantity).unwrap_or(0);
            Ok(OrderItem {
                id: stockroom_store::new_id(),
                product_id: i.product_id.clone(),
                location: i.location.clone(),
                name: i
                    .product
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                sku: i
                    .product
                    .as_ref()
                    .map(|p| p.sku.clone())
                    .unwrap_or_default(),
                quantity: Quantity::new(quantity).map_err(|_| ApiError::Internal)?,
                unit_price: item_price(i, &currency),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let amount = items.iter().try_fold(0i64, |sum, i| {
        line_value(i.unit_price.amount, i.quantity.get()).and_then(|v| sum.checked_add(v))
    });
    let amount = amount.ok_or_else(|| ApiError::invalid("cart", "the order total is too large"))?;
    let shipping = body
        .shipping_address
        .unwrap_or_else(|| body.billing_address.clone());
    Ok(NewOrder {
        id: stockroom_store::new_id(),
        cart_id: cart.id.clone(),
        customer: body.customer.0,
        billing_address: body.billing_address.0,
        shipping_address: shipping.0,
        items,
        total: Money {
            amount,
            currency,
            includes_tax: false,
        },
    })
}

pub async fn checkout(
    State(state): State<AppState>,
    Path(cart): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<CheckoutBody>>,
) -> Result<Response, ApiError> {
    let cart =
        CartId::parse(&cart).map_err(|e| ApiError::invalid("cart", format!("a cart id {e}")))?;
    let found = state.store.cart(cart.as_str()).await?;
    let order = assemble_order(&found.ok_or(ApiError::NotFound)?, body.data)?;
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

pub type OrderListQuery = ListQuery<OrderTerm>;

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<OrderListQuery>,
) -> Result<Response, ApiError> {
    let page = query.page.page();
    let found = state
        .store
        .orders(&order_query(&query.filter.terms), page)
        .await?;
    let items = found.items.iter().map(OrderOut::new).collect();
    let extra = query.filter.link_suffix();
    Ok(List::new(items, found.total, page, "/v2/orders", &extra).into_response())
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

/// `PUT /v2/orders/{id}`: `shipping: fulfilled` ships, `status: cancelled` cancels.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<OrderUpdate>>,
) -> Result<Response, ApiError> {
    let command = body.data.command(id.clone()).ok_or_else(|| {
        ApiError::invalid(
            "data",
            "send either {\"shipping\":\"fulfilled\"} or {\"status\":\"cancelled\"}",
        )
    })?;
    let request = WriteRequest {
        command,
        idempotency,
    };
    applied(state.store.execute(request).await?.outcome)?;
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Data::new(OrderOut::new(&order)).into_response())
}
