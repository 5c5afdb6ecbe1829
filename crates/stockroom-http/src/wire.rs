//! Elastic Path's JSON shapes for what Stockroom returns. Only this module knows them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stockroom_domain::Timestamp;
use stockroom_store::{
    Cart, CartItem, Currency, HistoryEntry, Location, Money, Order, OrderItem, Page, PaymentStatus,
    PaymentTx, Price, Product, ProductStock, NO_LOCATION,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Elastic Path's envelope, `{"data": …}`, answered with `status`.
pub fn data(status: StatusCode, data: Value) -> Response {
    (status, Json(json!({ "data": data }))).into_response()
}

/// RFC 3339, UTC, e.g. `2026-11-27T09:17:43.123456Z`.
pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.micros()) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// A product's stock in the classic shape: the sums over its records.
pub fn stock(p: &ProductStock) -> Value {
    json!({
        "id": p.product_id.as_str(),
        "type": "stock",
        "total": p.total,
        "available": p.available(),
        "allocated": p.allocated,
        "meta": {
            "timestamps": {
                "created_at": rfc3339(p.created_at),
                "updated_at": rfc3339(p.updated_at),
            }
        }
    })
}

fn figures(total: u64, allocated: u64) -> Value {
    json!({"total": total, "allocated": allocated, "available": total - allocated})
}

/// A stable id for a product's stock (`meta.stock_id`): a UUID made from the product id.
pub fn stock_id(p: &ProductStock) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("stockroom:stock:{}", p.product_id).as_bytes(),
    )
    .to_string()
}

/// A product's stock in the multi-location shape: the sums, and each location's figures.
pub fn stock_mli(p: &ProductStock) -> Value {
    let locations: serde_json::Map<String, Value> = p
        .records
        .iter()
        .filter(|r| r.location != NO_LOCATION)
        .map(|r| {
            (
                r.location.clone(),
                figures(r.stock.total(), r.stock.allocated()),
            )
        })
        .collect();
    let mut attributes = figures(p.total, p.allocated);
    attributes["locations"] = Value::Object(locations);
    json!({
        "id": p.product_id.as_str(),
        "type": "stock",
        "attributes": attributes,
        "meta": {
            "stock_id": stock_id(p),
            "timestamps": {
                "created_at": rfc3339(p.created_at),
                "updated_at": rfc3339(p.updated_at),
            }
        }
    })
}

/// A history entry's fields, common to both transaction shapes.
fn transaction_fields(entry: &HistoryEntry) -> Value {
    let mut fields = json!({
        "type": "stock-transaction",
        "action": entry.action.as_str(),
        "product_id": entry.product_id.as_str(),
        "quantity": entry.quantity,
        "total": entry.after.total(),
        "allocated": entry.after.allocated(),
        "available": entry.after.available(),
    });
    if entry.location != NO_LOCATION {
        fields["location"] = json!(entry.location);
    }
    if let Some(order_id) = &entry.order_id {
        fields["order_id"] = json!(order_id);
    }
    if let Some(reason) = &entry.reason {
        fields["reason"] = json!(reason);
    }
    fields
}

/// A transaction in the multi-location shape.
pub fn transaction_mli(entry: &HistoryEntry) -> Value {
    json!({
        "id": entry.id,
        "type": "stock-transaction",
        "attributes": transaction_fields(entry),
        "meta": {"timestamps": {"created_at": rfc3339(entry.created_at)}},
    })
}

pub fn location(l: &Location) -> Value {
    let mut attributes = json!({
        "name": l.name,
        "slug": l.slug,
        "address": l.address,
    });
    if let Some(r) = &l.external_ref {
        attributes["external_ref"] = json!(r);
    }
    if let Some(d) = &l.description {
        attributes["description"] = json!(d);
    }
    if let Some((lat, lon)) = l.geolocation {
        attributes["geolocation"] = json!({"lat": lat, "lon": lon});
    }
    json!({
        "id": l.id,
        "type": "inventory_location",
        "attributes": attributes,
        "meta": {"timestamps": {"created_at": rfc3339(l.created_at), "updated_at": rfc3339(l.updated_at)}},
    })
}

/// A stock record as it stood right after a history entry (answers to create).
pub fn stock_after(entry: &HistoryEntry) -> Value {
    json!({
        "id": entry.product_id.as_str(),
        "type": "stock",
        "total": entry.after.total(),
        "available": entry.after.available(),
        "allocated": entry.after.allocated(),
        "meta": {
            "timestamps": {
                "created_at": rfc3339(entry.created_at),
                "updated_at": rfc3339(entry.created_at),
            }
        }
    })
}

/// A transaction in the classic shape.
pub fn transaction(entry: &HistoryEntry) -> Value {
    let mut v = transaction_fields(entry);
    v["id"] = json!(entry.id);
    v["timestamps"] = json!({ "created_at": rfc3339(entry.created_at) });
    v
}

/// A page of a list with Elastic Path's `links` and `meta`. `path` is the list's path and
/// `extra` any query (filter) to keep in the links.
pub fn list(items: Vec<Value>, total: u64, page: Page, path: &str, extra: &str) -> Value {
    let link = |offset: u64| {
        format!(
            "{path}?page[offset]={offset}&page[limit]={}{extra}",
            page.limit
        )
    };
    let pages = total.div_ceil(page.limit).max(1);
    let last_offset = (pages - 1) * page.limit;
    let mut links = json!({
        "current": link(page.offset),
        "first": link(0),
        "last": link(last_offset),
    });
    if page.offset + page.limit < total {
        links["next"] = json!(link(page.offset + page.limit));
    }
    if page.offset > 0 {
        links["prev"] = json!(link(page.offset.saturating_sub(page.limit)));
    }
    json!({
        "data": items,
        "links": links,
        "meta": {
            "page": {
                "limit": page.limit,
                "offset": page.offset,
                "current": page.offset / page.limit + 1,
                "total": pages,
            },
            "results": { "total": total },
        }
    })
}

/// A price as Elastic Path shows it, with a `formatted` string (two decimals and the code).
pub fn display_price(amount: i64, currency: &str) -> Value {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    json!({
        "amount": amount,
        "currency": currency,
        "formatted": format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100),
    })
}

pub fn money(p: &Price) -> Value {
    json!({"amount": p.amount.amount_minor(), "currency": p.amount.currency().as_str(), "includes_tax": p.includes_tax})
}

pub fn product(p: &Product) -> Value {
    json!({
        "type": "product",
        "id": p.id.as_str(),
        "attributes": {
            "name": p.name,
            "sku": p.sku,
            "price": money(&p.price),
        },
        "meta": {
            "display_price": { "without_tax": display_price(p.price.amount.amount_minor(), p.price.amount.currency().as_str()) },
            "timestamps": {"created_at": rfc3339(p.created_at), "updated_at": rfc3339(p.updated_at)},
        }
    })
}

/// A cart item's price: from the catalog, or zero in `currency` when the product has no record.
pub fn item_price(item: &CartItem, currency: &str) -> Price {
    item.product.as_ref().map(|p| p.price).unwrap_or(Price {
        amount: Money::zero(
            Currency::parse(currency).unwrap_or(Currency::parse("USD").expect("USD is a code")),
        ),
        includes_tax: false,
    })
}

/// The currency of a cart: that of its priced items (one per cart), else USD.
pub fn cart_currency(cart: Option<&Cart>) -> String {
    cart.and_then(|c| c.items.iter().find_map(|i| i.product.as_ref()))
        .map(|p| p.price.amount.currency().as_str().to_owned())
        .unwrap_or_else(|| "USD".to_owned())
}

/// The sum of `amount × quantity` over lines; `None` if it would not fit.
pub fn total<'a>(lines: impl IntoIterator<Item = (i64, u64)> + 'a) -> Option<i64> {
    lines.into_iter().try_fold(0i64, |sum, (amount, quantity)| {
        amount
            .checked_mul(i64::try_from(quantity).ok()?)
            .and_then(|line| sum.checked_add(line))
    })
}

pub fn cart_item(cart_id: &str, item: &CartItem, currency: &str) -> Value {
    let price = item_price(item, currency);
    let value = total([(price.amount.amount_minor(), item.quantity)]).unwrap_or(i64::MAX);
    let unit = price.amount.amount_minor();
    let currency = price.amount.currency();
    let currency = currency.as_str();
    json!({
        "id": item.id,
        "type": "cart_item",
        "product_id": item.product_id.as_str(),
        "name": item.product.as_ref().map(|p| p.name.as_str()).unwrap_or(""),
        "sku": item.product.as_ref().map(|p| p.sku.as_str()).unwrap_or(""),
        "quantity": item.quantity,
        "location": (item.location != NO_LOCATION).then_some(item.location.as_str()),
        "manage_stock": item.managed,
        "unit_price": money(&price),
        "value": {"amount": value, "currency": currency, "includes_tax": price.includes_tax},
        "links": {
            "self": format!("/v2/carts/{cart_id}/items/{}", item.id),
            "product": format!("/v2/products/{}", item.product_id),
        },
        "meta": {
            "display_price": {
                "with_tax": {
                    "unit": display_price(unit, currency),
                    "value": display_price(value, currency),
                },
                "without_tax": {
                    "unit": display_price(unit, currency),
                    "value": display_price(value, currency),
                },
            },
            "timestamps": {"created_at": rfc3339(item.created_at), "updated_at": rfc3339(item.updated_at)},
        }
    })
}

fn cart_total(cart: Option<&Cart>) -> (i64, String) {
    let currency = cart_currency(cart);
    let amount = cart
        .map(|c| {
            total(
                c.items
                    .iter()
                    .map(|i| (item_price(i, &currency).amount.amount_minor(), i.quantity)),
            )
        })
        .unwrap_or(Some(0))
        .unwrap_or(i64::MAX);
    (amount, currency)
}

fn cart_meta(cart: Option<&Cart>, now: Timestamp) -> Value {
    let (amount, currency) = cart_total(cart);
    let (created, updated) = cart
        .map(|c| (c.created_at, c.updated_at))
        .unwrap_or((now, now));
    json!({
        "display_price": {
            "with_tax": display_price(amount, &currency),
            "without_tax": display_price(amount, &currency),
            "tax": display_price(0, &currency),
        },
        "timestamps": {"created_at": rfc3339(created), "updated_at": rfc3339(updated)},
    })
}

/// `GET /v2/carts/{id}`: a cart that does not exist yet is shown empty.
pub fn cart(id: &str, cart: Option<&Cart>, now: Timestamp) -> Value {
    json!({
        "data": {
            "id": id,
            "type": "cart",
            "name": "Cart",
            "links": {"self": format!("/v2/carts/{id}")},
            "relationships": {
                "items": {"data": cart.map(|c| c.items.iter().map(|i| json!({"type": "cart_item", "id": i.id})).collect::<Vec<_>>()).unwrap_or_default()}
            },
            "meta": cart_meta(cart, now),
        }
    })
}

/// The items of a cart, as add, update and `GET …/items` answer.
pub fn cart_items(id: &str, cart: Option<&Cart>, now: Timestamp) -> Value {
    let currency = cart_currency(cart);
    let items: Vec<Value> = cart
        .map(|c| {
            c.items
                .iter()
                .map(|i| cart_item(id, i, &currency))
                .collect()
        })
        .unwrap_or_default();
    json!({ "data": items, "meta": cart_meta(cart, now) })
}

pub fn order_item(order_id: &str, item: &OrderItem) -> Value {
    let unit = item.unit_price.amount.amount_minor();
    let value = total([(unit, item.quantity.get())]).unwrap_or(i64::MAX);
    let currency = item.unit_price.amount.currency();
    let currency = currency.as_str();
    json!({
        "type": "order_item",
        "id": item.id,
        "product_id": item.product_id.as_str(),
        "name": item.name,
        "sku": item.sku,
        "location": (item.location != NO_LOCATION).then_some(item.location.as_str()),
        "quantity": item.quantity.get(),
        "unit_price": money(&item.unit_price),
        "value": {"amount": value, "currency": currency, "includes_tax": item.unit_price.includes_tax},
        "relationships": {"order": {"data": {"type": "order", "id": order_id}}},
        "meta": {
            "display_price": {
                "with_tax": {"unit": display_price(unit, currency), "value": display_price(value, currency)},
                "without_tax": {"unit": display_price(unit, currency), "value": display_price(value, currency)},
            }
        }
    })
}

fn stored_json(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or(Value::Null)
}

pub fn order(o: &Order) -> Value {
    let currency = o.total.currency();
    let currency = currency.as_str();
    json!({
        "type": "order",
        "id": o.id,
        "status": o.state.status.as_str(),
        "payment": o.state.payment.as_str(),
        "shipping": o.state.shipping.as_str(),
        "customer": stored_json(&o.customer),
        "billing_address": stored_json(&o.billing_address),
        "shipping_address": stored_json(&o.shipping_address),
        "links": {},
        "meta": {
            "display_price": {
                "with_tax": display_price(o.total.amount_minor(), currency),
                "without_tax": display_price(o.total.amount_minor(), currency),
                "tax": display_price(0, currency),
            },
            "timestamps": {"created_at": rfc3339(o.created_at), "updated_at": rfc3339(o.updated_at)},
        },
        "relationships": {
            "items": {"data": o.items.iter().map(|i| json!({"type": "item", "id": i.id})).collect::<Vec<_>>()},
        }
    })
}

pub fn payment(p: &PaymentTx) -> Value {
    let status = match p.status {
        PaymentStatus::Pending => "pending",
        PaymentStatus::Complete => "complete",
        PaymentStatus::Failed => "failed",
    };
    let mut v = json!({
        "id": p.id,
        "type": "transaction",
        "reference": p.gateway,
        "gateway": p.gateway,
        "amount": p.amount.amount_minor(),
        "currency": p.amount.currency().as_str(),
        "transaction_type": p.transaction_type,
        "transaction-type": p.transaction_type,
        "status": status,
        "relationships": {"order": {"data": {"type": "order", "id": p.order_id}}},
        "meta": {
            "display_price": display_price(p.amount.amount_minor(), p.amount.currency().as_str()),
            "timestamps": {"created_at": rfc3339(p.created_at), "updated_at": rfc3339(p.updated_at)},
        }
    });
    if let Some(failure) = &p.failure {
        v["failure"] = json!(failure);
    }
    v
}
