//! The order flow's API (wire-contract §5–6): products, carts, checkout, orders, payments,
//! shipping and cancellation.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use stockroom_domain::ids::check_id;
use stockroom_domain::limits::{
    CART_ADD_ITEMS_MAX, CART_ID_LEN_MAX, ORDER_PARTY_BYTES_MAX, PRICE_AMOUNT_MAX,
    PRODUCT_NAME_LEN_MAX, PRODUCT_SKU_LEN_MAX,
};
use stockroom_domain::order::{Payment, PaymentMethod, Shipping, Status};
use stockroom_domain::ProductId;
use stockroom_store::{
    CartLine, Command, Currency, Effect, Money, NewOrder, NewPayment, OrderQuery, Outcome,
    PaymentStatus, Price, Product, ProductPatch, WriteRequest, NO_LOCATION,
};

use crate::error::ApiError;
use crate::extract::{
    check_type, data_object, idempotency_key, page, parse_filter, quantity, query_pairs,
    required_string, JsonBody,
};
use crate::locations::location_slug;
use crate::payments::ask_gateway;
use crate::{wire, AppState};

/// What a write's answer must be, or the error its refusal maps to.
fn applied(outcome: Outcome) -> Result<Effect, ApiError> {
    match outcome {
        Outcome::Applied(effect) => Ok(effect),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

// ---- products ------------------------------------------------------------------------------

fn text_field(
    obj: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a non-empty string of at most {max} bytes"),
        )),
    }
}

fn price_field(obj: &Map<String, Value>) -> Result<Option<Price>, ApiError> {
    let price = match obj.get("price") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(p)) => p,
        Some(_) => return Err(ApiError::invalid("price", "price must be an object")),
    };
    let amount = price
        .get("amount")
        .and_then(Value::as_i64)
        .filter(|a| (0..=PRICE_AMOUNT_MAX).contains(a))
        .ok_or_else(|| {
            ApiError::invalid(
                "price.amount",
                format!("price.amount must be a whole number of minor units from 0 to {PRICE_AMOUNT_MAX}"),
            )
        })?;
    let currency = Currency::parse(required_string(price, "currency")?).map_err(|_| {
        ApiError::invalid(
            "price.currency",
            "price.currency must be an ISO 4217 code such as USD",
        )
    })?;
    let includes_tax = match price.get("includes_tax") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "price.includes_tax",
                "includes_tax must be true or false",
            ))
        }
    };
    let amount = Money::new(amount, currency).map_err(|_| ApiError::Internal)?;
    Ok(Some(Price {
        amount,
        includes_tax,
    }))
}

fn attributes(data: &Map<String, Value>) -> Result<&Map<String, Value>, ApiError> {
    match data.get("attributes") {
        Some(Value::Object(a)) => Ok(a),
        _ => Err(ApiError::invalid(
            "attributes",
            "data.attributes must be an object",
        )),
    }
}

pub async fn create_product(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let data = data_object(&body)?;
    check_type(data, "product")?;
    let id = match data.get("id") {
        None | Some(Value::Null) => {
            ProductId::parse(&stockroom_store::new_id()).map_err(|_| ApiError::Internal)?
        }
        Some(Value::String(id)) => {
            ProductId::parse(id).map_err(|e| ApiError::invalid("id", format!("id {e}")))?
        }
        Some(_) => return Err(ApiError::invalid("id", "id must be a string")),
    };
    let attrs = attributes(data)?;
    let name = text_field(attrs, "name", PRODUCT_NAME_LEN_MAX)?
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    let sku = text_field(attrs, "sku", PRODUCT_SKU_LEN_MAX)?
        .ok_or_else(|| ApiError::invalid("sku", "sku is required"))?;
    let price =
        price_field(attrs)?.ok_or_else(|| ApiError::invalid("price", "price is required"))?;
    let now = state.clock.now();
    let idempotency = idempotency_key(&headers, "POST /v2/products".into(), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::CreateProduct(Product {
                id,
                sku,
                name,
                price,
                created_at: now,
                updated_at: now,
            }),
            idempotency,
        })
        .await?;
    let Effect::Product(id) = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    let product = state
        .store
        .product(id.as_str())
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(wire::data(StatusCode::CREATED, wire::product(&product)))
}

pub async fn list_products(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = page(&query_pairs(query.as_deref()))?;
    let found = state.store.products(page).await?;
    Ok(Json(wire::list(
        found.items.iter().map(wire::product).collect(),
        found.total,
        page,
        "/v2/products",
        "",
    )))
}

pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let product = state.store.product(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"data": wire::product(&product)})))
}

pub async fn update_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::NotFound)?;
    let data = data_object(&body)?;
    check_type(data, "product")?;
    let attrs = attributes(data)?;
    let patch = ProductPatch {
        sku: text_field(attrs, "sku", PRODUCT_SKU_LEN_MAX)?,
        name: text_field(attrs, "name", PRODUCT_NAME_LEN_MAX)?,
        price: price_field(attrs)?,
    };
    let product = match state
        .store
        .update_product(&id, &patch, state.clock.now())
        .await
    {
        Err(stockroom_store::StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict("A product with this SKU exists"))
        }
        other => other?.ok_or(ApiError::NotFound)?,
    };
    Ok(Json(json!({"data": wire::product(&product)})))
}

pub async fn delete_product(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ProductId::parse(&id).map_err(|_| ApiError::NotFound)?;
    if state.store.delete_product(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

// ---- carts ---------------------------------------------------------------------------------

/// A cart id: 1 to 64 characters, chosen by the client.
fn cart_id(raw: &str) -> Result<String, ApiError> {
    check_id(raw, CART_ID_LEN_MAX)
        .map(|()| raw.to_owned())
        .map_err(|e| ApiError::invalid("cart", format!("a cart id {e}")))
}

/// One item of an add-to-cart body, resolved against the catalog and stock.
async fn cart_line(state: &AppState, item: &Value) -> Result<CartLine, ApiError> {
    let obj = item
        .as_object()
        .ok_or_else(|| ApiError::invalid("data", "each item must be an object"))?;
    check_type(obj, "cart_item")?;
    let quantity = quantity(obj, "quantity")?;
    let not_found = || ApiError::NotFound;
    let product = match (obj.get("id"), obj.get("sku")) {
        (Some(Value::String(id)), _) => {
            let pid = ProductId::parse(id).map_err(|_| not_found())?;
            match state.store.product(id).await? {
                Some(_) => pid,
                // Stock with no product record may be sold: no name, price zero.
                None if state.store.stock(&pid).await?.is_some() => pid,
                None => return Err(not_found()),
            }
        }
        (None, Some(Value::String(sku))) => {
            let p = state
                .store
                .product_by_sku(sku)
                .await?
                .ok_or_else(not_found)?;
            p.id
        }
        _ => return Err(ApiError::invalid("id", "an item needs a product id or sku")),
    };
    let location = match obj.get("location") {
        None | Some(Value::Null) => NO_LOCATION.to_owned(),
        Some(Value::String(slug)) => location_slug(state, slug).await?,
        Some(_) => return Err(ApiError::invalid("location", "location must be a slug")),
    };
    Ok(CartLine {
        product,
        location,
        quantity,
    })
}

async fn cart_items_answer(state: &AppState, id: &str) -> Result<Json<Value>, ApiError> {
    let cart = state.store.cart(id).await?;
    Ok(Json(wire::cart_items(id, cart.as_ref(), state.clock.now())))
}

pub async fn add_to_cart(
    State(state): State<AppState>,
    Path(cart): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let cart = cart_id(&cart)?;
    let items: Vec<&Value> = match body.get("data") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= CART_ADD_ITEMS_MAX => {
            items.iter().collect()
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::invalid(
                "data",
                format!("add 1 to {CART_ADD_ITEMS_MAX} items at once"),
            ))
        }
        Some(item @ Value::Object(_)) => vec![item],
        _ => {
            return Err(ApiError::invalid(
                "data",
                "the body must be {\"data\": {…}} or {\"data\": […]}",
            ))
        }
    };
    let mut lines = Vec::with_capacity(items.len());
    for item in items {
        lines.push(cart_line(&state, item).await?);
    }
    let idempotency = idempotency_key(&headers, format!("POST /v2/carts/{cart}/items"), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::AddToCart {
                cart_id: cart.clone(),
                lines,
            },
            idempotency,
        })
        .await?;
    applied(answer.outcome)?;
    cart_items_answer(&state, &cart).await
}

pub async fn get_cart(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = cart_id(&cart)?;
    let cart = state.store.cart(&id).await?;
    Ok(Json(wire::cart(&id, cart.as_ref(), state.clock.now())))
}

pub async fn get_cart_items(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = cart_id(&cart)?;
    cart_items_answer(&state, &id).await
}

pub async fn update_cart_item(
    State(state): State<AppState>,
    Path((cart, item)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let cart = cart_id(&cart)?;
    let data = data_object(&body)?;
    check_type(data, "cart_item")?;
    let quantity = quantity(data, "quantity")?;
    let answer = state
        .store
        .execute(WriteRequest::new(Command::UpdateCartItem {
            cart_id: cart.clone(),
            item_id: item,
            quantity,
        }))
        .await?;
    applied(answer.outcome)?;
    cart_items_answer(&state, &cart).await
}

pub async fn delete_cart_item(
    State(state): State<AppState>,
    Path((cart, item)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let cart = cart_id(&cart)?;
    if state.store.delete_cart_item(&cart, &item).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

pub async fn delete_cart(
    State(state): State<AppState>,
    Path(cart): Path<String>,
) -> Result<StatusCode, ApiError> {
    let cart = cart_id(&cart)?;
    if state.store.delete_cart(&cart).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// A customer or address object, kept as given (bounded in size).
fn party(data: &Map<String, Value>, field: &'static str) -> Result<Option<String>, ApiError> {
    match data.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let raw = v.to_string();
            if raw.len() > ORDER_PARTY_BYTES_MAX {
                return Err(ApiError::invalid(
                    field,
                    format!("{field} may be at most {ORDER_PARTY_BYTES_MAX} bytes of JSON"),
                ));
            }
            Ok(Some(raw))
        }
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be an object"),
        )),
    }
}

pub async fn checkout(
    State(state): State<AppState>,
    Path(cart): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let cart = cart_id(&cart)?;
    let data = data_object(&body)?;
    let customer = match data.get("customer") {
        // The SDK turns a customer id string into {"id": …}; accept the bare string too.
        Some(Value::String(id)) => json!({"id": id}).to_string(),
        _ => party(data, "customer")?
            .ok_or_else(|| ApiError::invalid("customer", "customer is required"))?,
    };
    let billing = party(data, "billing_address")?
        .ok_or_else(|| ApiError::invalid("billing_address", "billing_address is required"))?;
    let shipping = party(data, "shipping_address")?.unwrap_or_else(|| billing.clone());
    // The store reads the cart and prices its items from the catalog, in the transaction
    // that checks their stock and makes the order.
    let idempotency = idempotency_key(&headers, format!("POST /v2/carts/{cart}/checkout"), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::Checkout(NewOrder {
                id: stockroom_store::new_id(),
                cart_id: cart,
                customer,
                billing_address: billing,
                shipping_address: shipping,
            }),
            idempotency,
        })
        .await?;
    let Effect::Order(id) = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    let order = state.store.order(&id).await?.ok_or(ApiError::Internal)?;
    Ok(wire::data(StatusCode::CREATED, wire::order(&order)))
}

// ---- orders --------------------------------------------------------------------------------

pub async fn list_orders(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let page = page(&pairs)?;
    let mut query = OrderQuery::default();
    let filter = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.clone());
    if let Some(filter) = &filter {
        for term in parse_filter(filter)? {
            let bad =
                || ApiError::invalid("filter", format!("unknown {} {:?}", term.field, term.value));
            match (term.op.as_str(), term.field.as_str()) {
                ("eq", "status") => {
                    query.status = Some(Status::parse(&term.value).ok_or_else(bad)?)
                }
                ("eq", "payment") => {
                    query.payment = Some(Payment::parse(&term.value).ok_or_else(bad)?)
                }
                ("eq", "shipping") => {
                    query.shipping = Some(Shipping::parse(&term.value).ok_or_else(bad)?)
                }
                _ => {
                    return Err(ApiError::invalid(
                        "filter",
                        "orders filter on eq(status|payment|shipping,…)",
                    ))
                }
            }
        }
    }
    let found = state.store.orders(&query, page).await?;
    let extra = filter.map(|f| format!("&filter={f}")).unwrap_or_default();
    Ok(Json(wire::list(
        found.items.iter().map(wire::order).collect(),
        found.total,
        page,
        "/v2/orders",
        &extra,
    )))
}

pub async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    let mut answer = json!({"data": wire::order(&order)});
    let include = query_pairs(raw.as_deref())
        .into_iter()
        .any(|(k, v)| k == "include" && v.split(',').any(|i| i.trim() == "items"));
    if include {
        answer["included"] = json!({
            "items": order.items.iter().map(|i| wire::order_item(&order.id, i)).collect::<Vec<_>>()
        });
    }
    Ok(Json(answer))
}

pub async fn get_order_items(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({
        "data": order.items.iter().map(|i| wire::order_item(&order.id, i)).collect::<Vec<_>>()
    })))
}

/// `PUT /v2/orders/{id}`: `shipping: fulfilled` ships, `status: cancelled` cancels.
pub async fn update_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let data = data_object(&body)?;
    check_type(data, "order")?;
    let command = match (data.get("shipping"), data.get("status")) {
        (Some(Value::String(s)), None) if s == "fulfilled" => Command::Ship {
            order_id: id.clone(),
        },
        (None, Some(Value::String(s))) if s == "cancelled" => Command::Cancel {
            order_id: id.clone(),
        },
        _ => {
            return Err(ApiError::invalid(
                "data",
                "send either {\"shipping\":\"fulfilled\"} or {\"status\":\"cancelled\"}",
            ))
        }
    };
    let idempotency = idempotency_key(&headers, format!("PUT /v2/orders/{id}"), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command,
            idempotency,
        })
        .await?;
    applied(answer.outcome)?;
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"data": wire::order(&order)})))
}

/// `POST /v2/orders/{id}/payments`: allocate every line at once, then ask the gateway with no
/// lock held, then record its answer (releasing the allocation if it failed).
pub async fn pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let data = data_object(&body)?;
    let gateway = required_string(data, "gateway")?.to_owned();
    let settled = match gateway.as_str() {
        "manual" => true,
        "http" if state.payments.http.is_some() => false,
        _ => {
            return Err(ApiError::invalid(
                "gateway",
                if state.payments.http.is_some() {
                    "gateway must be manual or http"
                } else {
                    "gateway must be manual (no HTTP gateway is configured)"
                },
            ))
        }
    };
    let method = required_string(data, "method")
        .ok()
        .and_then(PaymentMethod::parse)
        .ok_or_else(|| ApiError::invalid("method", "method must be purchase or authorize"))?;
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    if let Some(amount) = data.get("amount").filter(|a| !a.is_null()) {
        if amount.as_i64() != Some(order.total.amount_minor()) {
            return Err(ApiError::invalid(
                "amount",
                "split payments are not supported: leave amount out or send the order total",
            ));
        }
    }
    let pending = deadline_after(&state, state.payments.pending_timeout);
    let idempotency = idempotency_key(&headers, format!("POST /v2/orders/{id}/payments"), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::Pay {
                order_id: id.clone(),
                payment: NewPayment {
                    id: stockroom_store::new_id(),
                    gateway: gateway.clone(),
                    method,
                    expires_at: pending,
                },
                settled,
            },
            idempotency,
        })
        .await?;
    let replayed = answer.replayed;
    let Effect::Payment { payment_id, .. } = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    let mut payment = state
        .store
        .payment(&id, &payment_id)
        .await?
        .ok_or(ApiError::Internal)?;
    if !replayed && payment.status == PaymentStatus::Pending {
        if let Some(http) = state.payments.http.clone() {
            // In its own task: a client that hangs up must not leave the attempt unsettled.
            let task_state = state.clone();
            let asked = payment.clone();
            let settled = tokio::spawn(async move {
                let verdict = ask_gateway(&task_state.http_client, &http, &asked).await;
                crate::payments::record_verdict(&task_state, &asked, verdict).await
            })
            .await
            .map_err(|_| ApiError::Internal)?;
            settled?;
            payment = state
                .store
                .payment(&id, &payment_id)
                .await?
                .ok_or(ApiError::Internal)?;
        }
    }
    if payment.status == PaymentStatus::Failed {
        return Err(ApiError::PaymentFailed);
    }
    Ok(Json(json!({"data": wire::payment(&payment)})))
}

fn deadline_after(state: &AppState, d: std::time::Duration) -> stockroom_domain::Timestamp {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    stockroom_domain::Timestamp(state.clock.now().micros().saturating_add(micros))
}

pub async fn list_payments(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    let payments = state.store.payments(&id).await?;
    Ok(Json(
        json!({"data": payments.iter().map(wire::payment).collect::<Vec<_>>()}),
    ))
}

pub async fn get_payment(
    State(state): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let payment = state
        .store
        .payment(&id, &tid)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"data": wire::payment(&payment)})))
}

pub async fn capture(
    State(state): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let idempotency = idempotency_key(
        &headers,
        format!("POST /v2/orders/{id}/transactions/{tid}/capture"),
        &body,
    )?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::Capture {
                order_id: id.clone(),
                authorization_id: tid,
                capture_id: stockroom_store::new_id(),
            },
            idempotency,
        })
        .await?;
    let Effect::Payment { payment_id, .. } = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    let payment = state
        .store
        .payment(&id, &payment_id)
        .await?
        .ok_or(ApiError::Internal)?;
    Ok(Json(json!({"data": wire::payment(&payment)})))
}
