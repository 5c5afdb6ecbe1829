//! The order flow in storage: products, carts, orders and payment transactions. The writes
//! here run inside the group-commit writer's batch ([`execute`]); the reads on the read pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use stockroom_domain::limits::{CART_LINES_MAX, QUANTITY_MAX};
use stockroom_domain::order::{OnCancel, OrderState, Payment, PaymentMethod, Shipping, Status};
use stockroom_domain::{Action, ProductId, Quantity, Timestamp};

use crate::error::StoreError;
use crate::exec::{args, Conn, DbRow, Get, Reader};
use crate::flow::CartLineSeen;
use crate::model::*;
use crate::writer::{figure, Batch};

fn internal(what: &str) -> impl Fn(String) -> StoreError + '_ {
    move |detail| StoreError::Internal(format!("{what}: {detail}"))
}

fn product_id(raw: &str) -> Result<ProductId, StoreError> {
    ProductId::parse(raw).map_err(|e| StoreError::Internal(format!("bad product id {raw:?}: {e}")))
}

fn quantity(n: i64) -> Result<Quantity, StoreError> {
    Quantity::new(n).map_err(|_| StoreError::Internal(format!("bad quantity {n} in the database")))
}

#[derive(Serialize, Deserialize)]
struct StoredLine {
    product_id: String,
    #[serde(default)]
    location: String,
    quantity: u64,
}

fn encode_lines(lines: &[Line]) -> String {
    let stored: Vec<StoredLine> = lines
        .iter()
        .map(|l| StoredLine {
            product_id: l.product.as_str().to_owned(),
            location: l.location.clone(),
            quantity: l.quantity.get(),
        })
        .collect();
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_owned())
}

fn decode_lines(raw: &str) -> Result<Vec<Line>, StoreError> {
    let stored: Vec<StoredLine> =
        serde_json::from_str(raw).map_err(|e| internal("stored payment lines")(e.to_string()))?;
    stored
        .into_iter()
        .map(|l| {
            Ok(Line {
                product: product_id(&l.product_id)?,
                location: l.location,
                quantity: quantity(i64::try_from(l.quantity).unwrap_or(-1))?,
            })
        })
        .collect()
}

/// The products held by the allocation of an order, if it holds one (for the writer to lock).
pub(crate) async fn allocated_products(
    conn: &mut Conn<'_>,
    order_id: &str,
) -> Result<Vec<ProductId>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT lines FROM payments WHERE order_id = $1 AND allocation = 'held'",
            args![order_id],
        )
        .await?;
    let mut products = Vec::new();
    for row in rows {
        let raw: String = row.col("lines")?;
        products.extend(decode_lines(&raw)?.into_iter().map(|l| l.product));
    }
    Ok(products)
}

// ---- reads ---------------------------------------------------------------------------------

macro_rules! product_columns {
    () => {
        "id, sku, name, price_amount, currency, includes_tax, created_at, updated_at"
    };
}

fn product_row(row: &impl Get) -> Result<Product, StoreError> {
    let id: String = row.col("id")?;
    let includes_tax: i64 = row.col("includes_tax")?;
    Ok(Product {
        id: product_id(&id)?,
        sku: row.col("sku")?,
        name: row.col("name")?,
        price: Money {
            amount: row.col("price_amount")?,
            currency: row.col("currency")?,
            includes_tax: includes_tax != 0,
        },
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

pub(crate) async fn product(db: &Reader, id: &str) -> Result<Option<Product>, StoreError> {
    let row = db
        .fetch_optional(
            concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = $1"
            ),
            args![id],
        )
        .await?;
    row.as_ref().map(product_row).transpose()
}

pub(crate) async fn product_by_sku(
    pool: &AnyPool,
    sku: &str,
) -> Result<Option<Product>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        product_columns!(),
        " FROM products WHERE sku = $1"
    ))
    .bind(sku.to_owned())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(product_row).transpose()
}

pub(crate) async fn products(pool: &AnyPool, page: Page) -> Result<Paged<Product>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        product_columns!(),
        " FROM products ORDER BY id LIMIT $1 OFFSET $2"
    ))
    .bind(figure(page.limit))
    .bind(figure(page.offset))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
        .fetch_one(pool)
        .await?;
    Ok(Paged {
        items: rows.iter().map(product_row).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

pub(crate) async fn update_product(
    db: &Reader,
    id: &ProductId,
    patch: &ProductPatch,
    now: Timestamp,
) -> Result<Option<Product>, StoreError> {
    let done = sqlx::query(
        "UPDATE products SET sku = COALESCE(CAST($2 AS TEXT), sku), \
         name = COALESCE(CAST($3 AS TEXT), name), \
         price_amount = COALESCE(CAST($4 AS BIGINT), price_amount), \
         currency = COALESCE(CAST($5 AS TEXT), currency), \
         includes_tax = COALESCE(CAST($6 AS BIGINT), includes_tax), updated_at = $7 \
         WHERE id = $1",
    )
    .bind(id.as_str().to_owned())
    .bind(patch.sku.clone())
    .bind(patch.name.clone())
    .bind(patch.price.as_ref().map(|p| p.amount))
    .bind(patch.price.as_ref().map(|p| p.currency.clone()))
    .bind(patch.price.as_ref().map(|p| i64::from(p.includes_tax)))
    .bind(now.micros())
    .execute(&db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    product(db, id.as_str()).await
}

pub(crate) async fn delete_product(pool: &AnyPool, id: &ProductId) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM products WHERE id = $1")
        .bind(id.as_str().to_owned())
        .execute(pool)
        .await?;
    if done.rows_affected() > 0 {
        sqlx::query("DELETE FROM cart_items WHERE product_id = $1")
            .bind(id.as_str().to_owned())
            .execute(pool)
            .await?;
    }
    Ok(done.rows_affected() > 0)
}

/// The rows of a parent LEFT JOINed with its items: the first row (which carries the parent's
/// columns) and each item; a parent without items has one row whose `item_id` is NULL.
fn with_items<T>(
    rows: &[DbRow],
    item: impl Fn(&DbRow) -> Result<T, StoreError>,
) -> Result<Option<(&DbRow, Vec<T>)>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        if row.col::<Option<String>>("item_id")?.is_some() {
            items.push(item(row)?);
        }
    }
    Ok(Some((first, items)))
}

/// A cart with its items, each with its catalog product: one statement.
pub(crate) async fn cart(db: &Reader, cart_id: &str) -> Result<Option<Cart>, StoreError> {
    let rows = db
        .fetch_all(
        "SELECT c.id AS cart_id, c.created_at AS cart_created, c.updated_at AS cart_updated, \
         ci.id AS item_id, ci.product_id AS item_product, ci.location AS item_location, \
         ci.quantity AS item_quantity, \
         ci.created_at AS item_created, ci.updated_at AS item_updated, \
         (SELECT COUNT(*) FROM stock s WHERE s.product_id = ci.product_id) AS managed, \
         p.id, p.sku, p.name, p.price_amount, p.currency, p.includes_tax, p.created_at, p.updated_at \
         FROM carts c LEFT JOIN cart_items ci ON ci.cart_id = c.id \
         LEFT JOIN products p ON p.id = ci.product_id \
         WHERE c.id = $1 ORDER BY ci.created_at, ci.id",
            args![cart_id],
        )
        .await?;
    let Some((first, items)) = with_items(&rows, |r| {
        let pid: String = r.col("item_product")?;
        let catalog: Option<String> = r.col("id")?;
        let managed: i64 = r.col("managed")?;
        Ok(CartItem {
            id: r.col("item_id")?,
            product_id: product_id(&pid)?,
            location: r.col("item_location")?,
            quantity: u64::try_from(r.col::<i64>("item_quantity")?).unwrap_or(0),
            product: catalog.map(|_| product_row(r)).transpose()?,
            managed: managed > 0,
            created_at: Timestamp(r.col("item_created")?),
            updated_at: Timestamp(r.col("item_updated")?),
        })
    })?
    else {
        return Ok(None);
    };
    Ok(Some(Cart {
        id: first.col("cart_id")?,
        items,
        created_at: Timestamp(first.col("cart_created")?),
        updated_at: Timestamp(first.col("cart_updated")?),
    }))
}

pub(crate) async fn delete_cart_item(
    pool: &AnyPool,
    cart_id: &str,
    item_id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM cart_items WHERE id = $1 AND cart_id = $2")
        .bind(item_id.to_owned())
        .bind(cart_id.to_owned())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn delete_cart(pool: &AnyPool, cart_id: &str) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM cart_items WHERE cart_id = $1")
        .bind(cart_id.to_owned())
        .execute(pool)
        .await?;
    let done = sqlx::query("DELETE FROM carts WHERE id = $1")
        .bind(cart_id.to_owned())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

macro_rules! order_columns {
    () => {
        "id, cart_id, status, payment, shipping, paying, customer, \
     billing_address, shipping_address, total_amount, currency, created_at, updated_at"
    };
}

pub(crate) fn order_state(row: &impl Get) -> Result<OrderState, StoreError> {
    let bad = |what: &str, v: &str| StoreError::Internal(format!("unknown order {what} {v:?}"));
    let status: String = row.col("status")?;
    let payment: String = row.col("payment")?;
    let shipping: String = row.col("shipping")?;
    let paying: Option<String> = row.col("paying")?;
    Ok(OrderState {
        status: Status::parse(&status).ok_or_else(|| bad("status", &status))?,
        payment: Payment::parse(&payment).ok_or_else(|| bad("payment", &payment))?,
        shipping: Shipping::parse(&shipping).ok_or_else(|| bad("shipping", &shipping))?,
        paying: paying.is_some(),
    })
}

fn order_row(row: &impl Get, items: Vec<OrderItem>) -> Result<Order, StoreError> {
    Ok(Order {
        id: row.col("id")?,
        cart_id: row.col("cart_id")?,
        state: order_state(row)?,
        customer: row.col("customer")?,
        billing_address: row.col("billing_address")?,
        shipping_address: row.col("shipping_address")?,
        total: Money {
            amount: row.col("total_amount")?,
            currency: row.col("currency")?,
            includes_tax: false,
        },
        items,
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

/// The item columns of `order_items` (aliased `i`), named apart from the order's.
macro_rules! order_item_columns {
    () => {
        "i.id AS item_id, i.product_id AS item_product, i.location AS item_location, \
         i.name AS item_name, i.sku AS item_sku, i.quantity AS item_quantity, \
         i.unit_amount AS item_amount, i.currency AS item_currency, i.includes_tax AS item_tax"
    };
}

fn order_item_row(r: &impl Get) -> Result<OrderItem, StoreError> {
    let pid: String = r.col("item_product")?;
    let includes_tax: i64 = r.col("item_tax")?;
    Ok(OrderItem {
        id: r.col("item_id")?,
        product_id: product_id(&pid)?,
        location: r.col("item_location")?,
        name: r.col("item_name")?,
        sku: r.col("item_sku")?,
        quantity: quantity(r.col("item_quantity")?)?,
        unit_price: Money {
            amount: r.col("item_amount")?,
            currency: r.col("item_currency")?,
            includes_tax: includes_tax != 0,
        },
    })
}

async fn order_items(pool: &AnyPool, order_id: &str) -> Result<Vec<OrderItem>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        order_item_columns!(),
        " FROM order_items i WHERE i.order_id = $1 ORDER BY i.position"
    ))
    .bind(order_id.to_owned())
    .fetch_all(pool)
    .await?;
    rows.iter().map(order_item_row).collect()
}

/// An order with its items: one statement.
pub(crate) async fn order(db: &Reader, id: &str) -> Result<Option<Order>, StoreError> {
    let rows = db
        .fetch_all(
            concat!(
                "SELECT o.id, o.cart_id, o.status, o.payment, o.shipping, o.paying, o.customer, \
         o.billing_address, o.shipping_address, o.total_amount, o.currency, o.created_at, \
         o.updated_at, ",
                order_item_columns!(),
                " FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE o.id = $1 \
         ORDER BY i.position"
            ),
            args![id],
        )
        .await?;
    let Some((first, items)) = with_items(&rows, order_item_row)? else {
        return Ok(None);
    };
    Ok(Some(order_row(first, items)?))
}

pub(crate) async fn orders(
    pool: &AnyPool,
    query: &OrderQuery,
    page: Page,
) -> Result<Paged<Order>, StoreError> {
    macro_rules! filter {
        () => {
            "WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR payment = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR shipping = $3)"
        };
    }
    let status = query.status.map(|s| s.as_str().to_owned());
    let payment = query.payment.map(|s| s.as_str().to_owned());
    let shipping = query.shipping.map(|s| s.as_str().to_owned());
    let rows = sqlx::query(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders ",
        filter!(),
        " ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    ))
    .bind(status.clone())
    .bind(payment.clone())
    .bind(shipping.clone())
    .bind(figure(page.limit))
    .bind(figure(page.offset))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM orders ", filter!()))
        .bind(status)
        .bind(payment)
        .bind(shipping)
        .fetch_one(pool)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        items.push(order_row(row, order_items(pool, &id).await?)?);
    }
    Ok(Paged {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}

macro_rules! payment_columns {
    () => {
        "id, order_id, gateway, transaction_type, status, amount, currency, \
     lines, allocation, failure, expires_at, created_at, updated_at"
    };
}

fn payment_row(row: &impl Get) -> Result<PaymentTx, StoreError> {
    let status: String = row.col("status")?;
    let allocation: String = row.col("allocation")?;
    let lines: String = row.col("lines")?;
    Ok(PaymentTx {
        id: row.col("id")?,
        order_id: row.col("order_id")?,
        gateway: row.col("gateway")?,
        transaction_type: row.col("transaction_type")?,
        status: match status.as_str() {
            "pending" => PaymentStatus::Pending,
            "complete" => PaymentStatus::Complete,
            "failed" => PaymentStatus::Failed,
            other => {
                return Err(StoreError::Internal(format!(
                    "unknown payment status {other:?}"
                )))
            }
        },
        amount: Money {
            amount: row.col("amount")?,
            currency: row.col("currency")?,
            includes_tax: false,
        },
        lines: decode_lines(&lines)?,
        allocation: match allocation.as_str() {
            "none" => AllocationState::None,
            "held" => AllocationState::Held,
            "shipped" => AllocationState::Shipped,
            "released" => AllocationState::Released,
            other => {
                return Err(StoreError::Internal(format!(
                    "unknown allocation {other:?}"
                )))
            }
        },
        failure: row.col("failure")?,
        expires_at: Timestamp(row.col("expires_at")?),
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

pub(crate) async fn payments(pool: &AnyPool, order_id: &str) -> Result<Vec<PaymentTx>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE order_id = $1 ORDER BY position"
    ))
    .bind(order_id.to_owned())
    .fetch_all(pool)
    .await?;
    rows.iter().map(payment_row).collect()
}

/// A payment transaction by id (`$1`) and order (`$2`).
const PAYMENT_BY_ID: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE id = $1 AND order_id = $2"
);

pub(crate) async fn payment(
    db: &Reader,
    order_id: &str,
    id: &str,
) -> Result<Option<PaymentTx>, StoreError> {
    let row = db
        .fetch_optional(PAYMENT_BY_ID, args![id, order_id])
        .await?;
    row.as_ref().map(payment_row).transpose()
}

pub(crate) async fn expired_payments(
    pool: &AnyPool,
    now: Timestamp,
    limit: u64,
) -> Result<Vec<PaymentTx>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE status = 'pending' AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2"
    ))
    .bind(now.micros())
    .bind(figure(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(payment_row).collect()
}

// ---- writes, inside the writer's batch -----------------------------------------------------

fn load_state(batch: &Batch<'_>, order_id: &str) -> Result<Option<OrderState>, StoreError> {
    Ok(batch.flow.order(order_id)?.map(|slot| slot.state))
}

fn save_state(
    batch: &mut Batch<'_>,
    order_id: &str,
    state: OrderState,
    paying: Option<&str>,
) -> Result<(), StoreError> {
    batch.flow.set_state(order_id, state, paying)
}

/// A payment transaction of an order, read inside the batch.
async fn payment_in_batch(
    batch: &mut Batch<'_>,
    order_id: &str,
    payment_id: &str,
) -> Result<Option<PaymentTx>, StoreError> {
    let row = batch
        .fetch_optional(PAYMENT_BY_ID, args![payment_id, order_id])
        .await?;
    row.as_ref().map(payment_row).transpose()
}

/// The payment of an order whose allocation is held, if any.
async fn held_payment(
    batch: &mut Batch<'_>,
    order_id: &str,
) -> Result<Option<PaymentTx>, StoreError> {
    let row = batch
        .fetch_optional(
            concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE order_id = $1 AND allocation = 'held'"
            ),
            args![order_id],
        )
        .await?;
    row.as_ref().map(payment_row).transpose()
}

/// Resolves a held allocation exactly once: `ship` or `deallocate` entries for its lines, and
/// the payment row marked so that it can never be resolved again.
async fn resolve_allocation(
    batch: &mut Batch<'_>,
    payment: &PaymentTx,
    action: Action,
) -> Result<(), StoreError> {
    let state = if action == Action::Ship {
        "shipped"
    } else {
        "released"
    };
    let done = batch.execute("UPDATE payments SET allocation = $2, updated_at = $3 WHERE id = $1 AND allocation = 'held'", args![&payment.id, state, batch.now.micros()])
    .await?;
    if done != 1 {
        return Err(StoreError::Conflict);
    }
    let lines: Vec<_> = payment
        .lines
        .iter()
        .map(|l| (l.product.clone(), l.location.clone(), action, l.quantity))
        .collect();
    match batch.apply_lines(&lines, Some(&payment.order_id), None, false)? {
        Ok(_) => Ok(()),
        Err(rejection) => Err(StoreError::Internal(format!(
            "a held allocation of order {} could not be resolved: {rejection:?}",
            payment.order_id
        ))),
    }
}

/// The stock check of add-to-cart and checkout: every managed product has `quantity` available.
/// Quantities wanted per stock record: (product, location) → units.
type Wanted = BTreeMap<(ProductId, String), u64>;

/// The stock check of add-to-cart and checkout: every stock-managed line has its quantity
/// available at its location. `Some` says why not.
fn short(batch: &Batch<'_>, wanted: &Wanted) -> Result<Option<Rejection>, StoreError> {
    for ((product, location), quantity) in wanted {
        match batch.stock(product, location)? {
            Some(stock) if stock.available() < *quantity => return Ok(Some(Rejection::OutOfStock)),
            Some(_) => {}
            // Not stock-managed: any quantity may be bought.
            None if !batch.managed(product) => {}
            None if location == NO_LOCATION => return Ok(Some(Rejection::LocationRequired)),
            None => return Ok(Some(Rejection::OutOfStock)),
        }
    }
    Ok(None)
}

pub(crate) async fn execute(
    batch: &mut Batch<'_>,
    command: &Command,
) -> Result<Outcome, StoreError> {
    use Outcome::{Applied, Refused};
    Ok(match command {
        Command::CreateProduct(p) => {
            let done = batch.execute("INSERT INTO products (id, sku, name, price_amount, currency, includes_tax, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT DO NOTHING", args![p.id.as_str(), &p.sku, &p.name, p.price.amount, &p.price.currency, i64::from(p.price.includes_tax), batch.now.micros()])
            .await?;
            if done == 0 {
                Refused(Rejection::ProductTaken)
            } else {
                // Lines of it already in carts now have a currency.
                batch.flow.forget_carts_holding(p.id.as_str());
                Applied(Effect::Product(p.id.clone()))
            }
        }
        Command::AddToCart { cart_id, lines } => add_to_cart(batch, cart_id, lines).await?,
        Command::UpdateCartItem {
            cart_id,
            item_id,
            product,
            location,
            quantity,
        } => {
            let row = batch
                .fetch_optional(
                    "SELECT product_id FROM cart_items WHERE id = $1 AND cart_id = $2",
                    args![item_id, cart_id],
                )
                .await?;
            let Some(row) = row else {
                return Ok(Refused(Rejection::NotFound));
            };
            let in_cart: String = row.col("product_id")?;
            if in_cart != product.as_str() {
                return Ok(Refused(Rejection::NotFound));
            }
            let wanted = Wanted::from([((product.clone(), location.clone()), quantity.get())]);
            if let Some(rejection) = short(batch, &wanted)? {
                return Ok(Refused(rejection));
            }
            batch
                .execute(
                    "UPDATE cart_items SET quantity = $2, updated_at = $3 WHERE id = $1",
                    args![item_id, figure(quantity.get()), batch.now.micros()],
                )
                .await?;
            batch
                .execute(
                    "UPDATE carts SET updated_at = $2 WHERE id = $1",
                    args![cart_id, batch.now.micros()],
                )
                .await?;
            batch.flow.forget_cart(cart_id);
            Applied(Effect::Cart(cart_id.clone()))
        }
        Command::Checkout(order) => checkout(batch, order).await?,
        Command::Pay {
            order_id,
            payment,
            settled,
        } => pay(batch, order_id, payment, *settled).await?,
        Command::Settle {
            order_id,
            payment_id,
            approved,
            failure,
        } => settle(batch, order_id, payment_id, *approved, failure.as_deref()).await?,
        Command::Capture {
            order_id,
            authorization_id,
            capture_id,
        } => {
            let Some(state) = load_state(batch, order_id)? else {
                return Ok(Refused(Rejection::NotFound));
            };
            let Some(authorization) = payment_in_batch(batch, order_id, authorization_id).await?
            else {
                return Ok(Refused(Rejection::NotFound));
            };
            if authorization.transaction_type != "authorize"
                || authorization.status != PaymentStatus::Complete
            {
                return Ok(Refused(Rejection::Order(
                    stockroom_domain::order::OrderError::NotAuthorized,
                )));
            }
            let next = match state.capture() {
                Ok(next) => next,
                Err(e) => return Ok(Refused(Rejection::Order(e))),
            };
            insert_payment(
                batch,
                order_id,
                &NewPayment {
                    id: capture_id.clone(),
                    gateway: authorization.gateway.clone(),
                    method: PaymentMethod::Purchase,
                    amount: authorization.amount.clone(),
                    lines: Vec::new(),
                    expires_at: batch.now,
                },
                "capture",
                "complete",
                "none",
            )?;
            save_state(batch, order_id, next, None)?;
            Applied(Effect::Payment {
                order_id: order_id.clone(),
                payment_id: capture_id.clone(),
            })
        }
        Command::Ship { order_id } => {
            let Some(state) = load_state(batch, order_id)? else {
                return Ok(Refused(Rejection::NotFound));
            };
            let next = match state.ship() {
                Ok(next) => next,
                Err(e) => return Ok(Refused(Rejection::Order(e))),
            };
            if let Some(payment) = held_payment(batch, order_id).await? {
                resolve_allocation(batch, &payment, Action::Ship).await?;
            }
            save_state(batch, order_id, next, None)?;
            Applied(Effect::Order(order_id.clone()))
        }
        Command::Cancel { order_id } => {
            let Some(state) = load_state(batch, order_id)? else {
                return Ok(Refused(Rejection::NotFound));
            };
            let (next, on_cancel) = match state.cancel() {
                Ok(next) => next,
                Err(e) => return Ok(Refused(Rejection::Order(e))),
            };
            if on_cancel == OnCancel::Release {
                if let Some(payment) = held_payment(batch, order_id).await? {
                    resolve_allocation(batch, &payment, Action::Deallocate).await?;
                }
            }
            save_state(batch, order_id, next, None)?;
            Applied(Effect::Order(order_id.clone()))
        }
        Command::Create { .. }
        | Command::Transact { .. }
        | Command::Delete { .. }
        | Command::SetLocations { .. }
        | Command::CreateLocation(_)
        | Command::DeleteLocation { .. } => {
            return Err(StoreError::Internal(
                "a stock command reached the order flow".into(),
            ))
        }
    })
}

async fn add_to_cart(
    batch: &mut Batch<'_>,
    cart_id: &str,
    lines: &[CartLine],
) -> Result<Outcome, StoreError> {
    let mut wanted = Wanted::new();
    for line in lines {
        if !crate::locations::exists(batch, &line.location).await? {
            return Ok(Outcome::Refused(Rejection::NotFound));
        }
        *wanted
            .entry((line.product.clone(), line.location.clone()))
            .or_default() += line.quantity.get();
    }
    if let Some(rejection) = short(batch, &wanted)? {
        return Ok(Outcome::Refused(rejection));
    }
    // What the cart holds already, with its products' currencies: one currency per cart.
    if batch.flow.cart(cart_id).is_none() {
        let rows = batch
            .fetch_all(
                batch.dialect().cart_items_of,
                args![serde_json::to_string(&[cart_id]).unwrap_or_default()],
            )
            .await?;
        batch.flow.carts_read([&cart_id.to_owned()], &rows)?;
    }
    let in_cart = batch.flow.cart(cart_id).unwrap_or_default();
    let mut currencies: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.currency.as_deref())
        .chain(in_cart.iter().filter_map(|l| l.currency.as_deref()))
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        return Ok(Outcome::Refused(Rejection::CurrencyMismatch));
    }
    let held = |(p, l): &(ProductId, String)| {
        in_cart
            .iter()
            .find(|seen| seen.product == p.as_str() && seen.location == *l)
            .map(|seen| seen.quantity)
    };
    let new_lines = wanted.keys().filter(|k| held(k).is_none()).count();
    if in_cart.len() + new_lines > CART_LINES_MAX {
        return Ok(Outcome::Refused(Rejection::CartLimit));
    }
    for (key, quantity) in &wanted {
        let held = u64::try_from(held(key).unwrap_or(0)).unwrap_or(0);
        if held + quantity > QUANTITY_MAX {
            return Ok(Outcome::Refused(Rejection::CartLimit));
        }
    }
    // Added to what the line holds when written, so two instances adding to one cart at once
    // both count (the read above was for the checks; on PostgreSQL it took no lock).
    for ((product, location), quantity) in wanted {
        let currency = lines
            .iter()
            .find(|l| l.product == product)
            .and_then(|l| l.currency.clone());
        batch.flow.add_to_cart(
            cart_id,
            CartLineSeen {
                product: product.as_str().to_owned(),
                location,
                quantity: figure(quantity),
                currency,
            },
        );
    }
    Ok(Outcome::Applied(Effect::Cart(cart_id.to_owned())))
}

async fn checkout(batch: &mut Batch<'_>, order: &NewOrder) -> Result<Outcome, StoreError> {
    let mut wanted = Wanted::new();
    for item in &order.items {
        *wanted
            .entry((item.product_id.clone(), item.location.clone()))
            .or_default() += item.quantity.get();
    }
    if let Some(rejection) = short(batch, &wanted)? {
        return Ok(Outcome::Refused(rejection));
    }
    let items = order
        .items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            serde_json::json!({
                "id": item.id,
                "order": order.id,
                "position": position,
                "p": item.product_id.as_str(),
                "l": item.location,
                "name": item.name,
                "sku": item.sku,
                "q": item.quantity.get(),
                "amount": item.unit_price.amount,
                "currency": item.unit_price.currency,
                "tax": i64::from(item.unit_price.includes_tax),
            })
        })
        .collect();
    let state = OrderState::checked_out();
    let row = serde_json::json!({
        "id": order.id,
        "cart": order.cart_id,
        "status": state.status.as_str(),
        "payment": state.payment.as_str(),
        "shipping": state.shipping.as_str(),
        "paying": null,
        "customer": order.customer,
        "billing": order.billing_address,
        "shipping_address": order.shipping_address,
        "amount": order.total.amount,
        "currency": order.total.currency,
    });
    batch.flow.create_order(&order.id, row, items, state);
    Ok(Outcome::Applied(Effect::Order(order.id.clone())))
}

fn insert_payment(
    batch: &mut Batch<'_>,
    order_id: &str,
    payment: &NewPayment,
    transaction_type: &str,
    status: &str,
    allocation: &str,
) -> Result<(), StoreError> {
    batch.flow.add_payment(
        order_id,
        serde_json::json!({
            "id": payment.id,
            "gateway": payment.gateway,
            "type": transaction_type,
            "status": status,
            "amount": payment.amount.amount,
            "currency": payment.amount.currency,
            "lines": encode_lines(&payment.lines),
            "allocation": allocation,
            "expires": payment.expires_at.micros(),
        }),
    )
}

async fn pay(
    batch: &mut Batch<'_>,
    order_id: &str,
    payment: &NewPayment,
    settled: bool,
) -> Result<Outcome, StoreError> {
    let Some(state) = load_state(batch, order_id)? else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    let next = match state.begin_payment() {
        Ok(next) => next,
        Err(e) => return Ok(Outcome::Refused(Rejection::Order(e))),
    };
    // All lines in one step; products without stock are not stock-managed and are skipped.
    let lines: Vec<_> = payment
        .lines
        .iter()
        .map(|l| {
            (
                l.product.clone(),
                l.location.clone(),
                Action::Allocate,
                l.quantity,
            )
        })
        .collect();
    let entries = match batch.apply_lines(&lines, Some(order_id), None, true)? {
        Ok(entries) => entries,
        Err(Rejection::LocationRequired) => {
            return Ok(Outcome::Refused(Rejection::LocationRequired))
        }
        Err(_) => return Ok(Outcome::Refused(Rejection::OutOfStock)),
    };
    let allocated: Vec<Line> = entries
        .iter()
        .filter_map(|e| {
            Some(Line {
                product: e.product_id.clone(),
                location: e.location.clone(),
                quantity: Quantity::new(i64::try_from(e.quantity).ok()?).ok()?,
            })
        })
        .collect();
    let recorded = NewPayment {
        lines: allocated,
        ..payment.clone()
    };
    let allocation = if recorded.lines.is_empty() {
        "none"
    } else {
        "held"
    };
    let status = if settled { "complete" } else { "pending" };
    insert_payment(
        batch,
        order_id,
        &recorded,
        payment.method.as_str(),
        status,
        allocation,
    )?;
    if settled {
        save_state(
            batch,
            order_id,
            next.payment_succeeded(payment.method),
            None,
        )?;
    } else {
        save_state(batch, order_id, next, Some(&payment.id))?;
    }
    Ok(Outcome::Applied(Effect::Payment {
        order_id: order_id.to_owned(),
        payment_id: payment.id.clone(),
    }))
}

async fn settle(
    batch: &mut Batch<'_>,
    order_id: &str,
    payment_id: &str,
    approved: bool,
    failure: Option<&str>,
) -> Result<Outcome, StoreError> {
    let applied = Outcome::Applied(Effect::Payment {
        order_id: order_id.to_owned(),
        payment_id: payment_id.to_owned(),
    });
    let Some(payment) = payment_in_batch(batch, order_id, payment_id).await? else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    if payment.status != PaymentStatus::Pending {
        // Already settled (say, expired while the gateway answered): the first outcome stands.
        return Ok(applied);
    }
    let Some(state) = load_state(batch, order_id)? else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    let method = PaymentMethod::parse(&payment.transaction_type).unwrap_or(PaymentMethod::Purchase);
    let (status, next) = if approved {
        ("complete", state.payment_succeeded(method))
    } else {
        if payment.allocation == AllocationState::Held {
            resolve_allocation(batch, &payment, Action::Deallocate).await?;
        }
        ("failed", state.payment_failed())
    };
    batch
        .execute(
            "UPDATE payments SET status = $2, failure = $3, updated_at = $4 WHERE id = $1",
            args![
                payment_id,
                status,
                failure.map(str::to_owned),
                batch.now.micros()
            ],
        )
        .await?;
    save_state(batch, order_id, next, None)?;
    Ok(applied)
}
