//! Carts (wire-contract §5): add, update and remove items; read; delete.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::CartId;
use stockroom_store::{CartLine, Command, WriteRequest, NO_LOCATION};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Json};
use crate::locations::location_slug;
use crate::wire::carts::{
    CartItemUpdate, CartItems, CartOut, NewCartItem, NewCartItems, ProductRef,
};
use crate::wire::Data;
use crate::AppState;

/// A cart id from the path: 1 to 64 characters, chosen by the client.
fn path_cart(raw: &str) -> Result<CartId, ApiError> {
    CartId::parse(raw).map_err(|e| ApiError::invalid("cart", format!("a cart id {e}")))
}

/// One item of an add-to-cart body, resolved against the catalog and stock.
async fn cart_line(state: &AppState, item: NewCartItem) -> Result<CartLine, ApiError> {
    let product = item
        .product()
        .ok_or_else(|| ApiError::invalid("data.id", "an item needs a product id or sku"))?;
    let product = match product {
        ProductRef::Id(id) => match state.store.product(id.as_str()).await? {
            Some(_) => id,
            // Stock with no product record may be sold: no name, price zero.
            None if state.store.stock(&id).await?.is_some() => id,
            None => return Err(ApiError::NotFound),
        },
        ProductRef::Sku(sku) => {
            let p = state.store.product_by_sku(&sku).await?;
            p.ok_or(ApiError::NotFound)?.id
        }
    };
    let location = match &item.0.location {
        Some(slug) => location_slug(state, slug).await?,
        None => NO_LOCATION.to_owned(),
    };
    Ok(CartLine {
        product,
        location,
        quantity: item.0.quantity,
    })
}

async fn items_answer(state: &AppState, id: &CartId) -> Result<Response, ApiError> {
    let cart = state.store.cart(id.as_str()).await?;
    let now = state.clock.now();
    Ok(axum::Json(CartItems::new(id.as_str(), cart.as_ref(), now)).into_response())
}

pub async fn add_items(
    State(state): State<AppState>,
    Path(cart): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<NewCartItems>>,
) -> Result<Response, ApiError> {
    let cart = path_cart(&cart)?;
    let mut lines = Vec::with_capacity(body.data.0.len());
    for item in body.data.0 {
        lines.push(cart_line(&state, item).await?);
    }
    let command = Command::AddToCart {
        cart_id: cart.as_str().to_owned(),
        lines,
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    applied(state.store.execute(request).await?.outcome)?;
    items_answer(&state, &cart).await
}

pub async fn get(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_cart(&cart)?;
    let cart = state.store.cart(id.as_str()).await?;
    let now = state.clock.now();
    Ok(Data::new(CartOut::new(id.as_str(), cart.as_ref(), now)).into_response())
}

pub async fn get_items(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<Response, ApiError> {
    items_answer(&state, &path_cart(&cart)?).await
}

pub async fn update_item(
    State(state): State<AppState>,
    Path((cart, item)): Path<(String, String)>,
    Json(body): Json<Data<CartItemUpdate>>,
) -> Result<Response, ApiError> {
    let cart = path_cart(&cart)?;
    let command = Command::UpdateCartItem {
        cart_id: cart.as_str().to_owned(),
        item_id: item,
        quantity: body.data.quantity,
    };
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    items_answer(&state, &cart).await
}

pub async fn delete_item(
    State(state): State<AppState>,
    Path((cart, item)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let cart = path_cart(&cart)?;
    if state.store.delete_cart_item(cart.as_str(), &item).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<StatusCode, ApiError> {
    let cart = path_cart(&cart)?;
    if state.store.delete_cart(cart.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
