//! The order flow's rows inside one writer batch: the orders and carts the batch works on, as
//! it has left them so far, and the rows it has yet to write.
//!
//! The batch reads every order it touches once (locking it on PostgreSQL) and the items of every
//! cart it adds to once, each with one statement for the whole batch; its jobs then work on these
//! copies, and the rows they create or change are written with one statement per table. So a
//! flash sale's add-to-cart, checkout and payment cost a few statements per *batch*, not several
//! per request (each statement is a round trip to the database — for SQLite, to the connection's
//! own thread and back).
//!
//! The kept-back rows are written before any other statement of the batch runs
//! ([`crate::writer::Batch::sql`]) and before it commits, so every statement sees every earlier
//! job's writes: the batch behaves exactly as if each row were written at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};
use stockroom_domain::order::OrderState;
use stockroom_domain::Timestamp;

use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Conn, DbRow, Get};

/// An order as the batch has it.
#[derive(Clone, Debug)]
pub(crate) struct OrderSlot {
    pub state: OrderState,
    /// The payment attempt in flight, if any.
    pub paying: Option<String>,
}

/// One line of a cart as the batch has it.
#[derive(Clone, Debug)]
pub(crate) struct CartLineSeen {
    pub product: String,
    pub location: String,
    pub quantity: i64,
    pub currency: Option<String>,
}

#[derive(Default)]
pub(crate) struct Flow {
    /// Every order the batch locked (`None`: there is no such order) or created.
    orders: HashMap<String, Option<OrderSlot>>,
    /// The items of the carts the batch has read.
    carts: HashMap<String, Vec<CartLineSeen>>,
    new_carts: BTreeSet<String>,
    /// Units to add per cart line: (cart, product, location) → (id if new, units). Sorted, so
    /// that two instances upserting the same lines lock them in one order.
    new_cart_items: BTreeMap<(String, String, String), (String, i64)>,
    new_orders: Vec<Value>,
    new_order_items: Vec<Value>,
    new_payments: Vec<Value>,
    changed_orders: BTreeSet<String>,
}

impl Flow {
    /// Takes in the rows of `Dialect::lock_orders` for the ids in `locked`.
    pub fn orders_read(
        &mut self,
        locked: &BTreeSet<String>,
        rows: &[DbRow],
    ) -> Result<(), StoreError> {
        for id in locked {
            self.orders.insert(id.clone(), None);
        }
        for row in rows {
            let slot = OrderSlot {
                state: crate::orders::order_state(row)?,
                paying: row.col("paying")?,
            };
            self.orders.insert(row.col("id")?, Some(slot));
        }
        Ok(())
    }

    /// An order as the batch has it (`None`: no such order).
    pub fn order(&self, id: &str) -> Result<Option<&OrderSlot>, StoreError> {
        match self.orders.get(id) {
            Some(slot) => Ok(slot.as_ref()),
            None => Err(StoreError::Internal(format!(
                "order {id} was not locked by its batch"
            ))),
        }
    }

    /// Records a new order (its items come with it) with its first state.
    pub fn create_order(&mut self, id: &str, row: Value, items: Vec<Value>, state: OrderState) {
        self.orders.insert(
            id.to_owned(),
            Some(OrderSlot {
                state,
                paying: None,
            }),
        );
        self.new_orders.push(row);
        self.new_order_items.extend(items);
    }

    /// Sets an order's state (and the attempt in flight).
    pub fn set_state(
        &mut self,
        id: &str,
        state: OrderState,
        paying: Option<&str>,
    ) -> Result<(), StoreError> {
        let slot = self.slot_mut(id)?;
        slot.state = state;
        slot.paying = paying.map(str::to_owned);
        self.changed_orders.insert(id.to_owned());
        Ok(())
    }

    /// Records a payment transaction of an order (placed after the ones it has).
    pub fn add_payment(&mut self, order_id: &str, mut row: Value) -> Result<(), StoreError> {
        self.slot_mut(order_id)?;
        let earlier = self
            .new_payments
            .iter()
            .filter(|p| p["order"] == order_id)
            .count();
        row["n"] = json!(earlier + 1);
        row["order"] = json!(order_id);
        self.new_payments.push(row);
        Ok(())
    }

    fn slot_mut(&mut self, id: &str) -> Result<&mut OrderSlot, StoreError> {
        self.orders
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| StoreError::Internal(format!("order {id} is not in its batch")))
    }

    /// Takes in the rows of `Dialect::cart_items_of` for the carts in `ids`.
    pub fn carts_read<'a>(
        &mut self,
        ids: impl IntoIterator<Item = &'a String>,
        rows: &[DbRow],
    ) -> Result<(), StoreError> {
        for id in ids {
            self.carts.insert(id.clone(), Vec::new());
        }
        for row in rows {
            let cart: String = row.col("cart_id")?;
            let line = CartLineSeen {
                product: row.col("product_id")?,
                location: row.col("location")?,
                quantity: row.col("quantity")?,
                currency: row.col("currency")?,
            };
            self.carts.entry(cart).or_default().push(line);
        }
        Ok(())
    }

    /// A cart's items as the batch has them, if it has read them.
    pub fn cart(&self, id: &str) -> Option<&[CartLineSeen]> {
        self.carts.get(id).map(Vec::as_slice)
    }

    /// Forgets what the batch read of a cart (a statement of its own changed it).
    pub fn forget_cart(&mut self, id: &str) {
        self.carts.remove(id);
    }

    /// Forgets the carts that hold a product (its catalog record, and so its currency,
    /// changed); they are read again when needed.
    pub fn forget_carts_holding(&mut self, product: &str) {
        self.carts
            .retain(|_, lines| lines.iter().all(|l| l.product != product));
    }

    /// Adds units to a cart's line, creating the cart and the line as needed. The cart must
    /// have been read.
    pub fn add_to_cart(&mut self, cart: &str, line: CartLineSeen) {
        self.new_carts.insert(cart.to_owned());
        let lines = self.carts.entry(cart.to_owned()).or_default();
        match lines
            .iter_mut()
            .find(|l| l.product == line.product && l.location == line.location)
        {
            Some(seen) => seen.quantity += line.quantity,
            None => lines.push(line.clone()),
        }
        self.new_cart_items
            .entry((cart.to_owned(), line.product, line.location))
            .or_insert_with(|| (crate::new_id(), 0))
            .1 += line.quantity;
    }

    /// Writes every kept-back row, parents before children.
    pub async fn flush(
        &mut self,
        conn: &mut Conn<'_>,
        dialect: &Dialect,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let bulk = &dialect.bulk;
        if !self.new_carts.is_empty() {
            let rows = std::mem::take(&mut self.new_carts)
                .into_iter()
                .map(|id| json!({ "id": id }))
                .collect();
            write(conn, bulk.upsert_carts, rows, Some(now)).await?;
        }
        if !self.new_cart_items.is_empty() {
            let rows = std::mem::take(&mut self.new_cart_items)
                .into_iter()
                .map(|((cart, p, l), (id, q))| json!({"id": id, "cart": cart, "p": p, "l": l, "q": q}))
                .collect();
            write(conn, bulk.upsert_cart_items, rows, Some(now)).await?;
        }
        if !self.new_orders.is_empty() {
            let rows = std::mem::take(&mut self.new_orders);
            write(conn, bulk.insert_orders, rows, Some(now)).await?;
        }
        if !self.new_order_items.is_empty() {
            let rows = std::mem::take(&mut self.new_order_items);
            write(conn, bulk.insert_order_items, rows, None).await?;
        }
        if !self.new_payments.is_empty() {
            let rows = std::mem::take(&mut self.new_payments);
            write(conn, bulk.insert_payments, rows, Some(now)).await?;
        }
        if !self.changed_orders.is_empty() {
            let mut rows = Vec::with_capacity(self.changed_orders.len());
            for id in std::mem::take(&mut self.changed_orders) {
                let slot = self.slot_mut(&id)?;
                rows.push(json!({
                    "id": id,
                    "status": slot.state.status.as_str(),
                    "payment": slot.state.payment.as_str(),
                    "shipping": slot.state.shipping.as_str(),
                    "paying": slot.paying,
                }));
            }
            write(conn, bulk.update_orders, rows, Some(now)).await?;
        }
        Ok(())
    }
}

async fn write(
    conn: &mut Conn<'_>,
    sql: &'static str,
    rows: Vec<Value>,
    now: Option<Timestamp>,
) -> Result<(), StoreError> {
    let rows = Value::Array(rows).to_string();
    let args = match now {
        Some(now) => args![rows, now.micros()],
        None => args![rows],
    };
    conn.execute(sql, args).await?;
    Ok(())
}
