//! Carts (wire-contract §5): create, rename, read (with `include=items`), empty and delete;
//! add, update (one or many) and remove items. Idle carts are purged (`purge_forever`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::{CartId, Money, Price, Timestamp};
use stockroom_store::{
    new_id, CartLine, Command, CustomItem, StoreError, WriteRequest, NO_LOCATION,
};

use crate::caller::{Caller, CUSTOMER_TOKEN_HEADER};
use crate::customers::{party, Party};
use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Json, Query};
use crate::locations::location_slug;
use crate::wire::carts::{
    cart_currency, CartAnswer, CartFields, CartIncludeQuery, CartItemQuantities, CartItemUpdate,
    CartItems, CartOut, CustomItemIn, NewCartItem, NewCartItems, ProductRef,
};
use crate::wire::customers::CustomerRefs;
use crate::wire::{Data, List, PageQuery, Relation};
use crate::AppState;
use axum::http::HeaderMap;
use axum::Extension;

/// A cart id from the path: 1 to 64 characters, chosen by the client.
fn path_cart(raw: &str) -> Result<CartId, ApiError> {
    CartId::parse(raw).map_err(|e| ApiError::invalid("cart", format!("a cart id {e}")))
}

/// A cart from the path that the caller may use: any cart for an administrator; a cart of no
/// customer, or (with that customer's `X-Moltin-Customer-Token`) of the caller's own customer,
/// for a shopper — another customer's cart is 403.
pub struct OwnedCart(pub CartId);

impl FromRequestParts<AppState> for OwnedCart {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::invalid("path", "the request path could not be read"))?;
        let id = path_cart(params.get("cart").ok_or(ApiError::Internal)?)?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .copied()
            .ok_or(ApiError::Unauthenticated)?;
        let party = party(state, caller, &parts.headers)?;
        if let Some(cart) = state.store.cart(id.as_str()).await? {
            if !party.may_see(cart.customer_id.as_deref()) {
                return Err(ApiError::Forbidden);
            }
        }
        Ok(OwnedCart(id))
    }
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

/// A custom item, priced in the cart's currency unless its own is given (a cart holds one
/// currency: the batch refuses another).
async fn custom_item(
    state: &AppState,
    cart: &CartId,
    item: CustomItemIn,
    at: &str,
) -> Result<CustomItem, ApiError> {
    let currency = match item.currency {
        Some(c) => c,
        None => cart_currency(state.store.cart(cart.as_str()).await?.as_ref()),
    };
    let amount = Money::new(item.amount, currency)
        .map_err(|e| ApiError::invalid(format!("{at}.price.amount"), format!("price {e}")))?;
    Ok(CustomItem {
        name: item.name,
        sku: item.sku,
        price: Price {
            amount,
            includes_tax: item.includes_tax,
        },
        quantity: item.quantity,
    })
}

async fn items_answer(state: &AppState, id: &CartId) -> Result<Response, ApiError> {
    let cart = state.store.cart(id.as_str()).await?;
    let now = state.clock.now();
    let expiry = state.limits.cart_expiry;
    Ok(axum::Json(CartItems::new(id.as_str(), cart.as_ref(), now, expiry)).into_response())
}

/// The cart as `GET /v2/carts/{id}` shows it, with its items under `included` if asked.
async fn cart_answer(state: &AppState, id: &str, items: bool) -> Result<Response, ApiError> {
    let cart = state.store.cart(id).await?;
    let now = state.clock.now();
    let expiry = state.limits.cart_expiry;
    Ok(axum::Json(CartAnswer::new(id, cart.as_ref(), now, expiry, items)).into_response())
}

/// `POST /v2/carts`: a new, empty cart with a generated id (with a customer token, the
/// customer's cart).
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Idempotent(body, idempotency): Idempotent<Data<CartFields>>,
) -> Result<Response, ApiError> {
    let party = party(&state, caller, &headers)?;
    let fields = body.data;
    let command = Command::CreateCart {
        cart_id: new_id(),
        name: fields
            .name
            .map_or_else(|| stockroom_store::DEFAULT_CART_NAME.to_owned(), |n| n.0),
        description: fields.description.map(|d| d.0).unwrap_or_default(),
        customer_id: party.customer().map(str::to_owned),
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    // A replayed key answers with the cart it made.
    let stockroom_store::Effect::Cart(id) = applied(state.store.execute(request).await?.outcome)?
    else {
        return Err(ApiError::Internal);
    };
    cart_answer(&state, &id, false).await
}

/// `POST /v2/carts/{id}/relationships/customers`: associates the cart with a customer — the
/// caller's own (its customer token's), or any for an administrator.
pub async fn associate_customer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    OwnedCart(cart): OwnedCart,
    Json(body): Json<Data<CustomerRefs>>,
) -> Result<Response, ApiError> {
    let party = party(&state, caller, &headers)?;
    let customer_id = body
        .data
        .0
        .into_iter()
        .next()
        .ok_or(ApiError::Internal)?
        .id
        .0;
    if party != Party::Admin && party.customer() != Some(customer_id.as_str()) {
        return Err(ApiError::Forbidden);
    }
    state
        .store
        .customer(&customer_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let command = Command::SetCartCustomer {
        cart_id: cart.as_str().to_owned(),
        customer_id: customer_id.clone(),
    };
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    let related = vec![Relation {
        kind: "customer",
        id: &customer_id,
    }];
    Ok(Data::new(related).into_response())
}

/// `GET /v2/carts`: the carts of the customer whose token is sent, most recently changed
/// first (400 without a customer token).
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    // Checks the customer token (401 if bad); an administrator's is read too.
    party(&state, caller, &headers)?;
    let customer = headers
        .get(CUSTOMER_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| state.tokens.check_customer(t.trim(), state.clock.now()));
    let Some(customer) = customer else {
        return Err(ApiError::invalid(
            "x-moltin-customer-token",
            "send a customer token to list a customer's carts",
        ));
    };
    let page = query.page();
    let found = state.store.customer_carts(&customer, page).await?;
    let (now, expiry) = (state.clock.now(), state.limits.cart_expiry);
    let items: Vec<CartOut> = found
        .items
        .iter()
        .map(|c| CartOut::new(&c.id, Some(c), now, expiry))
        .collect();
    Ok(List::new(items, found.total, page, "/v2/carts", "").into_response())
}

/// `PUT /v2/carts/{id}`: a new name or description (404 for no cart).
pub async fn update(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
    Json(body): Json<Data<CartFields>>,
) -> Result<Response, ApiError> {
    let command = Command::UpdateCart {
        cart_id: cart.as_str().to_owned(),
        name: body.data.name.map(|n| n.0),
        description: body.data.description.map(|d| d.0),
    };
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    cart_answer(&state, cart.as_str(), false).await
}

/// Applies one write to a cart's items and answers with the items as they are now.
async fn change_items(
    state: &AppState,
    cart: &CartId,
    command: Command,
) -> Result<Response, ApiError> {
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    items_answer(state, cart).await
}

/// `DELETE /v2/carts/{id}/items`: removes every item, keeping the cart (404 for no cart).
pub async fn empty(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
) -> Result<Response, ApiError> {
    let command = Command::EmptyCart {
        cart_id: cart.as_str().to_owned(),
    };
    change_items(&state, &cart, command).await
}

/// `PUT /v2/carts/{id}/items`: several items' quantities at once (0 removes one), all or
/// nothing; each item's stock is checked as for one.
pub async fn update_items(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
    Json(body): Json<Data<CartItemQuantities>>,
) -> Result<Response, ApiError> {
    let mut seen = HashSet::new();
    let mut items = Vec::with_capacity(body.data.0.len());
    for (i, item) in body.data.0.into_iter().enumerate() {
        if !seen.insert(item.id.0.clone()) {
            return Err(ApiError::invalid(
                format!("data[{i}].id"),
                "an item may be named once per request",
            ));
        }
        items.push((item.id.0, item.quantity));
    }
    let command = Command::UpdateCartItems {
        cart_id: cart.as_str().to_owned(),
        items,
    };
    change_items(&state, &cart, command).await
}

/// Purges carts unchanged for longer than [`crate::Limits::cart_expiry`]; returns how many.
pub async fn purge_idle(state: &AppState) -> Result<u64, StoreError> {
    let expiry = i64::try_from(state.limits.cart_expiry.as_micros()).unwrap_or(i64::MAX);
    let idle_before = Timestamp(state.clock.now().micros().saturating_sub(expiry));
    state.store.purge_carts(idle_before).await
}

/// Runs [`purge_idle`] every `every`, on every instance (each purge is safe beside the others).
pub async fn purge_forever(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match purge_idle(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged idle carts"),
            Err(e) => tracing::warn!(error = %e, "purging idle carts failed"),
        }
    }
}

pub async fn add_items(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
    Idempotent(body, idempotency): Idempotent<Data<NewCartItems>>,
) -> Result<Response, ApiError> {
    let single = body.data.0.len() == 1;
    let mut lines = Vec::with_capacity(body.data.0.len());
    let mut custom = Vec::new();
    for (i, item) in body.data.0.into_iter().enumerate() {
        let at = if single {
            "data".to_owned()
        } else {
            format!("data[{i}]")
        };
        match item.custom(&at)? {
            Some(c) => custom.push(custom_item(&state, &cart, c, &at).await?),
            None => lines.push(cart_line(&state, item).await?),
        }
    }
    let command = Command::AddToCart {
        cart_id: cart.as_str().to_owned(),
        lines,
        custom,
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
    OwnedCart(cart): OwnedCart,
    Query(query): Query<CartIncludeQuery>,
) -> Result<Response, ApiError> {
    let id = cart;
    let items = query.include.is_some_and(|i| i.items);
    cart_answer(&state, id.as_str(), items).await
}

pub async fn get_items(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
) -> Result<Response, ApiError> {
    items_answer(&state, &cart).await
}

pub async fn update_item(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
    Path((_, item)): Path<(String, String)>,
    Json(body): Json<Data<CartItemUpdate>>,
) -> Result<Response, ApiError> {
    let command = Command::UpdateCartItem {
        cart_id: cart.as_str().to_owned(),
        item_id: item,
        quantity: body.data.quantity,
    };
    change_items(&state, &cart, command).await
}

pub async fn delete_item(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
    Path((_, item)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_cart_item(cart.as_str(), &item).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedCart(cart): OwnedCart,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_cart(cart.as_str()).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
