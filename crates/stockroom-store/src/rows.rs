//! Rows as the store reads them, turned into the model's records: one function per record
//! kind, shared by the reads and the writer's batch.

use serde::{Deserialize, Serialize};
use stockroom_domain::order::{OrderState, Payment, Shipping, Status};
use stockroom_domain::{Action, ProductId, Quantity, Role, Stock, Timestamp};

use crate::error::StoreError;
use crate::exec::Row;
use crate::model::*;

pub(crate) fn product_id(raw: &str) -> Result<ProductId, StoreError> {
    ProductId::parse(raw).map_err(|e| StoreError::Internal(format!("bad product id {raw:?}: {e}")))
}

pub(crate) fn quantity(n: i64) -> Result<Quantity, StoreError> {
    Quantity::new(n).map_err(|_| StoreError::Internal(format!("bad quantity {n} in the database")))
}

/// A figure as the database stores it. Figures are bounded by `STOCK_TOTAL_MAX`, far below
/// `i64::MAX`.
pub(crate) fn figure(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_of(row: &Row, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.col(col)?;
    u64::try_from(v).map_err(|_| StoreError::Internal(format!("negative {col} in the database")))
}

pub(crate) fn count(row: Option<Row>) -> Result<u64, StoreError> {
    match row {
        Some(row) => u64_of(&row, "n"),
        None => Ok(0),
    }
}

pub(crate) fn stock_record(row: &Row) -> Result<StockRecord, StoreError> {
    Ok(StockRecord {
        product_id: product_id(&row.col::<String>("product_id")?)?,
        location: row.col("location")?,
        stock: Stock::from_stored(row.col("total")?, row.col("allocated")?, row.col("held")?)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

macro_rules! history_columns {
    () => {
        "id, product_id, location, action, quantity, total, allocated, order_id, reason, created_at"
    };
}
pub(crate) use history_columns;

pub(crate) fn history_entry(row: &Row) -> Result<HistoryEntry, StoreError> {
    let action: String = row.col("action")?;
    Ok(HistoryEntry {
        id: row.col("id")?,
        product_id: product_id(&row.col::<String>("product_id")?)?,
        location: row.col("location")?,
        action: action
            .parse::<Action>()
            .map_err(|_| StoreError::Internal(format!("unknown action {action:?}")))?,
        quantity: u64_of(row, "quantity")?,
        after: Stock::from_figures(row.col("total")?, row.col("allocated")?)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        order_id: row.col("order_id")?,
        reason: row.col("reason")?,
        created_at: Timestamp(row.col("created_at")?),
    })
}

pub(crate) fn product(row: &Row) -> Result<Product, StoreError> {
    let includes_tax: i64 = row.col("includes_tax")?;
    Ok(Product {
        id: product_id(&row.col::<String>("id")?)?,
        sku: row.col("sku")?,
        name: row.col("name")?,
        price: Price {
            amount: money(row, "price_amount", "currency")?,
            includes_tax: includes_tax != 0,
        },
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

/// The rows of a parent LEFT JOINed with its items: the first row (which carries the parent's
/// columns) and each item; a parent without items has one row whose `item_id` is NULL.
pub(crate) fn with_items<T>(
    rows: &[Row],
    item: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Option<(&Row, Vec<T>)>, StoreError> {
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

pub(crate) fn order_state(row: &Row) -> Result<OrderState, StoreError> {
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

/// An amount of money from its amount and currency columns.
pub(crate) fn money(row: &Row, amount: &str, currency: &str) -> Result<Money, StoreError> {
    let code: String = row.col(currency)?;
    let bad = |e: stockroom_domain::MoneyError| {
        StoreError::Internal(format!("stored money in {amount}/{currency}: {e}"))
    };
    Money::new(row.col(amount)?, Currency::parse(&code).map_err(bad)?).map_err(bad)
}

/// An order's total: its amount and currency.
pub(crate) fn order_total(row: &Row) -> Result<Money, StoreError> {
    money(row, "total_amount", "currency")
}

pub(crate) fn order(row: &Row, items: Vec<OrderItem>) -> Result<Order, StoreError> {
    Ok(Order {
        id: row.col("id")?,
        cart_id: row.col("cart_id")?,
        customer_id: row.col("customer_id")?,
        state: order_state(row)?,
        customer: row.col("customer")?,
        billing_address: row.col("billing_address")?,
        shipping_address: row.col("shipping_address")?,
        order_number: row.col("order_number")?,
        external_ref: row.col("external_ref")?,
        total: order_total(row)?,
        paid_gross: row.col("paid_gross")?,
        refunded: row.col("refunded")?,
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
         i.unit_amount AS item_amount, i.currency AS item_currency, i.includes_tax AS item_tax, \
         i.custom AS item_custom"
    };
}
pub(crate) use order_item_columns;

pub(crate) fn order_item(r: &Row) -> Result<OrderItem, StoreError> {
    let includes_tax: i64 = r.col("item_tax")?;
    Ok(OrderItem {
        id: r.col("item_id")?,
        product_id: product_id(&r.col::<String>("item_product")?)?,
        custom: r.col::<i64>("item_custom")? != 0,
        location: r.col("item_location")?,
        name: r.col("item_name")?,
        sku: r.col("item_sku")?,
        quantity: quantity(r.col("item_quantity")?)?,
        unit_price: Price {
            amount: money(r, "item_amount", "item_currency")?,
            includes_tax: includes_tax != 0,
        },
    })
}

macro_rules! payment_columns {
    () => {
        "id, order_id, gateway, transaction_type, status, amount, currency, \
         lines, allocation, failure, expires_at, created_at, updated_at"
    };
}
pub(crate) use payment_columns;

/// A payment's lines as stored (JSON in the `lines` column).
#[derive(Serialize, Deserialize)]
struct StoredLine {
    product_id: String,
    #[serde(default)]
    location: String,
    quantity: u64,
}

pub(crate) fn encode_lines(lines: &[Line]) -> String {
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
    let stored: Vec<StoredLine> = serde_json::from_str(raw)
        .map_err(|e| StoreError::Internal(format!("stored payment lines: {e}")))?;
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

fn stored<T>(parse: fn(&str) -> Option<T>, row: &Row, col: &str) -> Result<T, StoreError> {
    let text: String = row.col(col)?;
    parse(&text).ok_or_else(|| StoreError::Internal(format!("unknown {col} {text:?}")))
}

pub(crate) fn payment(row: &Row) -> Result<PaymentTx, StoreError> {
    Ok(PaymentTx {
        id: row.col("id")?,
        order_id: row.col("order_id")?,
        gateway: row.col("gateway")?,
        transaction_type: stored(TransactionType::parse, row, "transaction_type")?,
        status: stored(PaymentStatus::parse, row, "status")?,
        amount: money(row, "amount", "currency")?,
        lines: decode_lines(&row.col::<String>("lines")?)?,
        allocation: stored(AllocationState::parse, row, "allocation")?,
        failure: row.col("failure")?,
        expires_at: Timestamp(row.col("expires_at")?),
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

macro_rules! location_columns {
    () => {
        "id, slug, name, external_ref, description, address, lat, lon, created_at, updated_at"
    };
}
pub(crate) use location_columns;

pub(crate) fn location(row: &Row) -> Result<Location, StoreError> {
    let address: String = row.col("address")?;
    let lat: Option<f64> = row.col("lat")?;
    let lon: Option<f64> = row.col("lon")?;
    Ok(Location {
        id: row.col("id")?,
        slug: row.col("slug")?,
        name: row.col("name")?,
        external_ref: row.col("external_ref")?,
        description: row.col("description")?,
        address: serde_json::from_str(&address)
            .map_err(|e| StoreError::Internal(format!("stored address: {e}")))?,
        geolocation: lat.zip(lon),
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

pub(crate) fn credential(row: &Row) -> Result<Credential, StoreError> {
    let role: String = row.col("role")?;
    Ok(Credential {
        client_id: row.col("client_id")?,
        name: row.col("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("unknown role {role:?}")))?,
        secret_hash: row.col("secret_hash")?,
        created_at: Timestamp(row.col("created_at")?),
    })
}
