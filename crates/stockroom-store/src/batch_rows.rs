//! The rows a batch writes many at a time, each kind one `Serialize` struct: a JSON array of
//! them is the one parameter of its bulk statement in `dialect.rs`, which reads each field by
//! the same name.

use serde::Serialize;

use crate::error::StoreError;
use crate::exec::{args, Stmt};
use crate::model::{AllocationState, PaymentStatus, TransactionType};

/// The bulk statement `sql` over `rows` (`$1`), with the batch's time as `$2` when `now` is
/// given; `None` when there are no rows.
pub(crate) fn bulk<T: Serialize>(
    sql: &str,
    rows: &[T],
    now: Option<i64>,
) -> Result<Option<Stmt>, StoreError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let json = rows_json(rows)?;
    Ok(Some(Stmt::new(
        sql,
        match now {
            Some(now) => args![json, now],
            None => args![json],
        },
    )))
}

/// Rows as the JSON array a bulk statement reads (its `$1`).
pub(crate) fn rows_json<T: Serialize>(rows: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(rows)
        .map_err(|e| StoreError::Internal(format!("encoding the rows of a bulk write: {e}")))
}

/// A row named by its id alone (a removed cart or cart item).
#[derive(Serialize)]
pub(crate) struct IdRow {
    pub id: String,
}

#[derive(Serialize)]
pub(crate) struct CartRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub customer_id: Option<String>,
    pub created_at: i64,
}

#[derive(Serialize)]
pub(crate) struct CartItemRow {
    pub id: String,
    pub cart_id: String,
    pub product_id: String,
    pub location: String,
    pub quantity: i64,
    pub created_at: i64,
    /// 1 for a custom item, whose name, SKU and price follow.
    pub custom: i64,
    pub custom_name: Option<String>,
    pub custom_sku: Option<String>,
    pub custom_amount: Option<i64>,
    pub custom_currency: Option<String>,
    pub custom_includes_tax: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct OrderRow {
    pub id: String,
    pub cart_id: String,
    pub status: &'static str,
    pub payment: &'static str,
    pub shipping: &'static str,
    pub customer: String,
    pub customer_id: Option<String>,
    pub billing_address: String,
    pub shipping_address: String,
    pub total_amount: i64,
    pub currency: String,
}

#[derive(Serialize)]
pub(crate) struct OrderItemRow {
    pub id: String,
    pub order_id: String,
    pub position: i64,
    pub product_id: String,
    pub location: String,
    pub name: String,
    pub sku: String,
    pub quantity: i64,
    pub unit_amount: i64,
    pub currency: String,
    pub includes_tax: i64,
    pub custom: i64,
}

#[derive(Serialize)]
pub(crate) struct PaymentRow {
    pub id: String,
    pub order_id: String,
    /// The payment's place among the order's new ones in this statement, from 1.
    pub n: i64,
    pub gateway: String,
    pub transaction_type: TransactionType,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    /// The lines it allocated, as `rows::encode_lines` stores them.
    pub lines: String,
    pub allocation: AllocationState,
    pub expires_at: i64,
}

#[derive(Serialize)]
pub(crate) struct OrderStateRow {
    pub id: String,
    pub status: &'static str,
    pub payment: &'static str,
    pub shipping: &'static str,
    pub paying: Option<String>,
}

/// A stock record's key (a removed record) or its figures (a new or changed one).
#[derive(Serialize)]
pub(crate) struct StockRow {
    pub product_id: String,
    pub location: String,
    pub total: i64,
    pub allocated: i64,
    pub held: i64,
}

#[derive(Serialize)]
pub(crate) struct HistoryRow {
    pub id: String,
    pub product_id: String,
    pub location: String,
    pub action: &'static str,
    pub quantity: i64,
    pub total: i64,
    pub allocated: i64,
    pub order_id: Option<String>,
    pub reason: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct KeyRow {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub outcome: String,
}

/// A key to look up (`Dialect::read_keys`).
#[derive(Serialize)]
pub(crate) struct KeyRef<'a> {
    pub scope: &'a str,
    pub key: &'a str,
}
