//! Orders and their payment transactions: the reads, the orders a batch has locked
//! ([`Orders`]), and the order commands — checkout and pay in memory, the rest (which read and
//! change payment transactions) with statements of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stockroom_domain::order::{OnCancel, OrderError, OrderState};
use stockroom_domain::{Action, Adjustment, Quantity, Timestamp};

use crate::batch_rows::{bulk, OrderItemRow, OrderRow, OrderStateRow, PaymentRow};
use crate::carts::Carts;
use crate::catalog::Catalog;
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Conn, Reader, Row, Stmt};
use crate::model::*;
use crate::rows::{self, figure, order_item_columns, payment_columns, with_items};
use crate::stock::{LineAction, Stocks, Wanted};

/// An order as the batch has it.
#[derive(Clone, Debug)]
struct OrderSlot {
    state: OrderState,
    /// The payment attempt in flight, if any.
    paying: Option<String>,
    total: Money,
    /// Its items' units per stock record: what paying allocates.
    lines: Wanted,
}

/// The orders a batch has locked (or created), as it has left them so far, and the rows it has
/// yet to write.
pub(crate) struct Orders {
    now: i64,
    /// `None`: there is no such order.
    slots: HashMap<String, Option<OrderSlot>>,
    new_orders: Vec<OrderRow>,
    new_items: Vec<OrderItemRow>,
    new_payments: Vec<PaymentRow>,
    changed: BTreeSet<String>,
}

impl Orders {
    /// The orders named in `ids`, from the rows of `Dialect::lock_orders` and
    /// `Dialect::order_items_of`.
    pub fn read(
        ids: &BTreeSet<String>,
        orders: &[Row],
        items: &[Row],
        now: Timestamp,
    ) -> Result<Orders, StoreError> {
        let mut slots: HashMap<String, Option<OrderSlot>> =
            ids.iter().map(|id| (id.clone(), None)).collect();
        for row in orders {
            let slot = OrderSlot {
                state: rows::order_state(row)?,
                paying: row.col("paying")?,
                total: rows::order_total(row)?,
                lines: Wanted::new(),
            };
            slots.insert(row.col("id")?, Some(slot));
        }
        for row in items {
            let id: String = row.col("order_id")?;
            let Some(Some(slot)) = slots.get_mut(&id) else {
                continue;
            };
            let key = (
                rows::product_id(&row.col::<String>("product_id")?)?,
                row.col("location")?,
            );
            *slot.lines.entry(key).or_default() += u64::try_from(row.col::<i64>("quantity")?)
                .map_err(|_| StoreError::Internal("negative quantity".into()))?;
        }
        Ok(Orders {
            now: now.micros(),
            slots,
            new_orders: Vec::new(),
            new_items: Vec::new(),
            new_payments: Vec::new(),
            changed: BTreeSet::new(),
        })
    }

    fn slot(&self, id: &str) -> Result<Option<&OrderSlot>, StoreError> {
        match self.slots.get(id) {
            Some(slot) => Ok(slot.as_ref()),
            None => Err(StoreError::Internal(format!(
                "order {id} was not locked by its batch"
            ))),
        }
    }

    fn state(&self, id: &str) -> Result<Option<OrderState>, StoreError> {
        Ok(self.slot(id)?.map(|s| s.state))
    }

    fn slot_mut(&mut self, id: &str) -> Result<&mut OrderSlot, StoreError> {
        self.slots
            .get_mut(id)
            .and_then(Option::as_mut)
            .ok_or_else(|| StoreError::Internal(format!("order {id} is not in its batch")))
    }

    /// Sets an order's state (and the attempt in flight).
    fn set_state(
        &mut self,
        id: &str,
        state: OrderState,
        paying: Option<&str>,
    ) -> Result<(), StoreError> {
        let slot = self.slot_mut(id)?;
        slot.state = state;
        slot.paying = paying.map(str::to_owned);
        self.changed.insert(id.to_owned());
        Ok(())
    }

    /// Records a payment transaction of an order, after the ones it has.
    fn add_payment(&mut self, mut row: PaymentRow) -> Result<(), StoreError> {
        self.slot_mut(&row.order_id)?;
        let earlier = self
            .new_payments
            .iter()
            .filter(|p| p.order_id == row.order_id)
            .count();
        row.n = i64::try_from(earlier + 1).unwrap_or(i64::MAX);
        self.new_payments.push(row);
        Ok(())
    }

    /// The statements that write the rows kept back since the last write, parents first.
    pub fn write_back(&mut self, dialect: &Dialect) -> Result<Vec<Stmt>, StoreError> {
        let mut states = Vec::with_capacity(self.changed.len());
        for id in std::mem::take(&mut self.changed) {
            let slot = self.slot_mut(&id)?;
            states.push(OrderStateRow {
                id,
                status: slot.state.status.as_str(),
                payment: slot.state.payment.as_str(),
                shipping: slot.state.shipping.as_str(),
                paying: slot.paying.clone(),
            });
        }
        let bulk_sql = &dialect.bulk;
        let now = Some(self.now);
        Ok([
            bulk(
                bulk_sql.insert_orders,
                &std::mem::take(&mut self.new_orders),
                now,
            )?,
            bulk(
                bulk_sql.insert_order_items,
                &std::mem::take(&mut self.new_items),
                None,
            )?,
            bulk(
                bulk_sql.insert_payments,
                &std::mem::take(&mut self.new_payments),
                now,
            )?,
            bulk(bulk_sql.update_orders, &states, now)?,
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}

/// Applies checkout or pay to the batch's orders, in memory.
pub(crate) fn apply_order_command(
    orders: &mut Orders,
    stocks: &mut Stocks,
    carts: &Carts,
    catalog: &Catalog,
    command: &Command,
) -> Result<Outcome, StoreError> {
    match command {
        Command::Checkout(order) => checkout(orders, stocks, carts, catalog, order),
        Command::Pay {
            order_id,
            payment,
            settled,
        } => pay(orders, stocks, order_id, payment, *settled),
        _ => Err(StoreError::Internal(
            "not an in-memory order command".into(),
        )),
    }
}

fn checkout(
    orders: &mut Orders,
    stocks: &Stocks,
    carts: &Carts,
    catalog: &Catalog,
    order: &NewOrder,
) -> Result<Outcome, StoreError> {
    let Some(cart) = carts.get(&order.cart_id)? else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    let priced = match price(cart, catalog) {
        Ok(priced) => priced,
        Err(rejection) => return Ok(Outcome::Refused(rejection)),
    };
    if let Some(rejection) = stocks.short(&priced.lines)? {
        return Ok(Outcome::Refused(rejection));
    }
    let state = OrderState::checked_out();
    orders.new_items.extend(
        priced
            .items
            .iter()
            .enumerate()
            .map(|(position, item)| item_row(&order.id, position, item)),
    );
    orders.new_orders.push(OrderRow {
        id: order.id.clone(),
        cart_id: order.cart_id.clone(),
        status: state.status.as_str(),
        payment: state.payment.as_str(),
        shipping: state.shipping.as_str(),
        customer: order.customer.clone(),
        customer_id: order
            .customer_id
            .clone()
            .or_else(|| cart.customer_id().map(str::to_owned)),
        billing_address: order.billing_address.clone(),
        shipping_address: order.shipping_address.clone(),
        total_amount: priced.total.amount_minor(),
        currency: priced.total.currency().as_str().to_owned(),
    });
    let slot = OrderSlot {
        state,
        paying: None,
        total: priced.total,
        lines: priced.lines,
    };
    orders.slots.insert(order.id.clone(), Some(slot));
    Ok(Outcome::Applied(Effect::Order(order.id.clone())))
}

/// A cart's items priced from the catalog, their total, and their units per record.
struct Priced {
    items: Vec<OrderItem>,
    total: Money,
    lines: Wanted,
}

/// Prices a cart: each item at its product's price (zero, in the cart's currency, for stock
/// with no catalog record). A cart holds one currency (its priced items'; USD if none).
fn price(cart: &crate::carts::CartState, catalog: &Catalog) -> Result<Priced, Rejection> {
    if cart.lines.is_empty() {
        return Err(Rejection::CartEmpty);
    }
    // A custom item is priced by itself; a product by the catalog as it is now.
    let prices: Vec<Option<(Price, &str, &str)>> = cart
        .lines
        .iter()
        .map(|l| match &l.custom {
            Some(c) => Some((c.price, c.name.as_str(), c.sku.as_str())),
            None => catalog
                .get(&l.product)
                .map(|p| (p.price, p.name.as_str(), p.sku.as_str())),
        })
        .collect();
    let mut currencies: Vec<Currency> = prices
        .iter()
        .flatten()
        .map(|(price, _, _)| price.amount.currency())
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    let currency = match currencies.as_slice() {
        [] => Currency::parse("USD").map_err(|_| Rejection::CurrencyMismatch)?,
        [one] => *one,
        _ => return Err(Rejection::CurrencyMismatch),
    };
    let mut items = Vec::with_capacity(cart.lines.len());
    let mut lines = Wanted::new();
    let mut total = Money::zero(currency);
    for (line, priced) in cart.lines.iter().zip(prices) {
        let quantity = Quantity::new(figure(line.quantity)).map_err(|_| Rejection::CartLimit)?;
        let unit_price = priced.map(|(p, _, _)| p).unwrap_or(Price {
            amount: Money::zero(currency),
            includes_tax: false,
        });
        total = unit_price
            .amount
            .checked_mul(quantity)
            .and_then(|value| total.checked_add(value))
            .map_err(|_| Rejection::OrderTotalTooLarge)?;
        // Custom items are never stock-managed: they want no stock.
        if line.custom.is_none() {
            *lines
                .entry((line.product.clone(), line.location.clone()))
                .or_default() += line.quantity;
        }
        items.push(OrderItem {
            id: crate::model::new_id(),
            product_id: line.product.clone(),
            custom: line.custom.is_some(),
            location: line.location.clone(),
            name: priced.map(|(_, n, _)| n.to_owned()).unwrap_or_default(),
            sku: priced.map(|(_, _, s)| s.to_owned()).unwrap_or_default(),
            quantity,
            unit_price,
        });
    }
    Ok(Priced {
        items,
        total,
        lines,
    })
}

fn item_row(order_id: &str, position: usize, item: &OrderItem) -> OrderItemRow {
    OrderItemRow {
        id: item.id.clone(),
        order_id: order_id.to_owned(),
        position: i64::try_from(position).unwrap_or(i64::MAX),
        product_id: item.product_id.as_str().to_owned(),
        location: item.location.clone(),
        name: item.name.clone(),
        sku: item.sku.clone(),
        quantity: figure(item.quantity.get()),
        unit_amount: item.unit_price.amount.amount_minor(),
        currency: item.unit_price.amount.currency().as_str().to_owned(),
        includes_tax: i64::from(item.unit_price.includes_tax),
        custom: i64::from(item.custom),
    }
}

/// Allocates every line of an order at once (products without stock are not stock-managed
/// and are skipped) and records the attempt; settled attempts record their outcome too.
fn pay(
    orders: &mut Orders,
    stocks: &mut Stocks,
    order_id: &str,
    payment: &NewPayment,
    settled: bool,
) -> Result<Outcome, StoreError> {
    let Some(slot) = orders.slot(order_id)?.cloned() else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    let next = match slot.state.begin_payment() {
        Ok(next) => next,
        Err(e) => return Ok(Outcome::Refused(Rejection::Order(e))),
    };
    let mut lines: Vec<LineAction> = Vec::with_capacity(slot.lines.len());
    for ((product, location), units) in &slot.lines {
        let Ok(quantity) = Quantity::new(figure(*units)) else {
            return Ok(Outcome::Refused(Rejection::CartLimit));
        };
        lines.push((
            product.clone(),
            location.clone(),
            Adjustment::of(Action::Allocate, quantity),
        ));
    }
    let entries = match stocks.apply_lines(&lines, Some(order_id), None, true)? {
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
                quantity: Quantity::new(figure(e.quantity)).ok()?,
            })
        })
        .collect();
    let status = match settled {
        true => PaymentStatus::Complete,
        false => PaymentStatus::Pending,
    };
    orders.add_payment(payment_row(
        order_id,
        payment,
        &slot.total,
        (status, &allocated),
    ))?;
    match settled {
        true => orders.set_state(order_id, next.payment_succeeded(payment.method), None)?,
        false => orders.set_state(order_id, next, Some(&payment.id))?,
    }
    Ok(Outcome::Applied(Effect::Payment {
        order_id: order_id.to_owned(),
        payment_id: payment.id.clone(),
    }))
}

fn payment_row(
    order_id: &str,
    payment: &NewPayment,
    amount: &Money,
    (status, lines): (PaymentStatus, &[Line]),
) -> PaymentRow {
    PaymentRow {
        id: payment.id.clone(),
        order_id: order_id.to_owned(),
        n: 0,
        gateway: payment.gateway.clone(),
        transaction_type: payment.method.into(),
        status,
        amount: amount.amount_minor(),
        currency: amount.currency().as_str().to_owned(),
        lines: rows::encode_lines(lines),
        allocation: match lines.is_empty() {
            true => AllocationState::None,
            false => AllocationState::Held,
        },
        expires_at: payment.expires_at.micros(),
    }
}

/// Applies a command that reads or changes an order's payment transactions (settle, capture,
/// ship, cancel), with statements of its own.
pub(crate) async fn apply_payment_command(
    conn: Conn<'_>,
    orders: &mut Orders,
    stocks: &mut Stocks,
    command: &Command,
) -> Result<Outcome, StoreError> {
    let mut tx = PaymentWork {
        conn,
        orders,
        stocks,
    };
    match command {
        Command::Settle {
            order_id,
            payment_id,
            approved,
            failure,
        } => {
            tx.settle(order_id, payment_id, *approved, failure.as_deref())
                .await
        }
        Command::Capture {
            order_id,
            authorization_id,
            capture_id,
        } => tx.capture(order_id, authorization_id, capture_id).await,
        Command::Ship { order_id } => tx.ship(order_id).await,
        Command::Cancel { order_id } => tx.cancel(order_id).await,
        _ => Err(StoreError::Internal("not a payment command".into())),
    }
}

/// What the payment commands work on: the batch's connection, orders and stock.
struct PaymentWork<'a, 'c> {
    conn: Conn<'c>,
    orders: &'a mut Orders,
    stocks: &'a mut Stocks,
}

/// A payment transaction by id (`$1`) and order (`$2`).
const PAYMENT_BY_ID: &str = concat!(
    "SELECT ",
    payment_columns!(),
    " FROM payments WHERE id = $1 AND order_id = $2"
);

impl PaymentWork<'_, '_> {
    async fn payment(
        &self,
        order_id: &str,
        payment_id: &str,
    ) -> Result<Option<PaymentTx>, StoreError> {
        let row = self
            .conn
            .row(PAYMENT_BY_ID, args![payment_id, order_id])
            .await?;
        row.as_ref().map(rows::payment).transpose()
    }

    /// The payment of an order whose allocation is held, if any.
    async fn held_payment(&self, order_id: &str) -> Result<Option<PaymentTx>, StoreError> {
        let row = self
            .conn
            .row(
                concat!(
                    "SELECT ",
                    payment_columns!(),
                    " FROM payments WHERE order_id = $1 AND allocation = $2"
                ),
                args![order_id, AllocationState::Held.as_str()],
            )
            .await?;
        row.as_ref().map(rows::payment).transpose()
    }

    /// Resolves a held allocation exactly once: `ship` or `deallocate` entries for its lines,
    /// and the payment row marked so that it can never be resolved again.
    async fn resolve(&mut self, payment: &PaymentTx, action: Action) -> Result<(), StoreError> {
        let resolved = match action {
            Action::Ship => AllocationState::Shipped,
            _ => AllocationState::Released,
        };
        let done = self
            .conn
            .run(
                "UPDATE payments SET allocation = $2, updated_at = $3 \
                 WHERE id = $1 AND allocation = $4",
                args![
                    &payment.id,
                    resolved.as_str(),
                    self.orders.now,
                    AllocationState::Held.as_str()
                ],
            )
            .await?;
        if done != 1 {
            return Err(StoreError::RaceLost(format!(
                "payment {} was resolved meanwhile",
                payment.id
            )));
        }
        let lines: Vec<LineAction> = payment
            .lines
            .iter()
            .map(|l| {
                let adjustment = Adjustment::of(action, l.quantity);
                (l.product.clone(), l.location.clone(), adjustment)
            })
            .collect();
        match self
            .stocks
            .apply_lines(&lines, Some(&payment.order_id), None, false)?
        {
            Ok(_) => Ok(()),
            Err(rejection) => Err(StoreError::Internal(format!(
                "a held allocation of order {} could not be resolved: {rejection:?}",
                payment.order_id
            ))),
        }
    }

    async fn settle(
        &mut self,
        order_id: &str,
        payment_id: &str,
        approved: bool,
        failure: Option<&str>,
    ) -> Result<Outcome, StoreError> {
        let applied = Outcome::Applied(Effect::Payment {
            order_id: order_id.to_owned(),
            payment_id: payment_id.to_owned(),
        });
        let Some(payment) = self.payment(order_id, payment_id).await? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        if payment.status != PaymentStatus::Pending {
            // Already settled (say, expired while the gateway answered): the first outcome
            // stands.
            return Ok(applied);
        }
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let method = match payment.transaction_type {
            TransactionType::Authorize => stockroom_domain::order::PaymentMethod::Authorize,
            _ => stockroom_domain::order::PaymentMethod::Purchase,
        };
        let (status, next) = if approved {
            (PaymentStatus::Complete, state.payment_succeeded(method))
        } else {
            if payment.allocation == AllocationState::Held {
                self.resolve(&payment, Action::Deallocate).await?;
            }
            (PaymentStatus::Failed, state.payment_failed())
        };
        self.conn
            .run(
                "UPDATE payments SET status = $2, failure = $3, updated_at = $4 WHERE id = $1",
                args![payment_id, status.as_str(), failure, self.orders.now],
            )
            .await?;
        self.orders.set_state(order_id, next, None)?;
        Ok(applied)
    }

    async fn capture(
        &mut self,
        order_id: &str,
        authorization_id: &str,
        capture_id: &str,
    ) -> Result<Outcome, StoreError> {
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let Some(authorization) = self.payment(order_id, authorization_id).await? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        if authorization.transaction_type != TransactionType::Authorize
            || authorization.status != PaymentStatus::Complete
        {
            return Ok(Outcome::Refused(Rejection::Order(
                OrderError::NotAuthorized,
            )));
        }
        let next = match state.capture() {
            Ok(next) => next,
            Err(e) => return Ok(Outcome::Refused(Rejection::Order(e))),
        };
        self.orders.add_payment(PaymentRow {
            transaction_type: TransactionType::Capture,
            ..payment_row(
                order_id,
                &NewPayment {
                    id: capture_id.to_owned(),
                    gateway: authorization.gateway.clone(),
                    method: stockroom_domain::order::PaymentMethod::Purchase,
                    expires_at: Timestamp(self.orders.now),
                },
                &authorization.amount,
                (PaymentStatus::Complete, &[]),
            )
        })?;
        self.orders.set_state(order_id, next, None)?;
        Ok(Outcome::Applied(Effect::Payment {
            order_id: order_id.to_owned(),
            payment_id: capture_id.to_owned(),
        }))
    }

    async fn ship(&mut self, order_id: &str) -> Result<Outcome, StoreError> {
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let next = match state.ship() {
            Ok(next) => next,
            Err(e) => return Ok(Outcome::Refused(Rejection::Order(e))),
        };
        if let Some(payment) = self.held_payment(order_id).await? {
            self.resolve(&payment, Action::Ship).await?;
        }
        self.orders.set_state(order_id, next, None)?;
        Ok(Outcome::Applied(Effect::Order(order_id.to_owned())))
    }

    async fn cancel(&mut self, order_id: &str) -> Result<Outcome, StoreError> {
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let (next, on_cancel) = match state.cancel() {
            Ok(next) => next,
            Err(e) => return Ok(Outcome::Refused(Rejection::Order(e))),
        };
        if on_cancel == OnCancel::Release {
            if let Some(payment) = self.held_payment(order_id).await? {
                self.resolve(&payment, Action::Deallocate).await?;
            }
        }
        self.orders.set_state(order_id, next, None)?;
        Ok(Outcome::Applied(Effect::Order(order_id.to_owned())))
    }
}

// ---- reads ---------------------------------------------------------------------------------

macro_rules! orders_filter {
    () => {
        "WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) \
         AND (CAST($2 AS TEXT) IS NULL OR payment = $2) \
         AND (CAST($3 AS TEXT) IS NULL OR shipping = $3) \
         AND (CAST($4 AS TEXT) IS NULL OR customer_id = $4)"
    };
}

macro_rules! order_columns {
    () => {
        "id, cart_id, status, payment, shipping, paying, customer, billing_address, \
         shipping_address, total_amount, currency, created_at, updated_at, customer_id"
    };
}

/// An order with its items: one statement.
pub(crate) async fn order(db: &Reader, id: &str) -> Result<Option<Order>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT o.id, o.cart_id, o.status, o.payment, o.shipping, o.paying, o.customer, \
                 o.billing_address, o.shipping_address, o.total_amount, o.currency, \
                 o.created_at, o.updated_at, o.customer_id, ",
                order_item_columns!(),
                " FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE o.id = $1 \
                 ORDER BY i.position"
            ),
            args![id],
        )
        .await?;
    let Some((first, items)) = with_items(&rows, rows::order_item)? else {
        return Ok(None);
    };
    Ok(Some(rows::order(first, items)?))
}

pub(crate) async fn orders(
    db: &Reader,
    query: &OrderQuery,
    page: Page,
) -> Result<Paged<Order>, StoreError> {
    let filter_args = || {
        args![
            query.status.map(|s| s.as_str()),
            query.payment.map(|s| s.as_str()),
            query.shipping.map(|s| s.as_str()),
            query.customer_id.as_deref()
        ]
    };
    let mut page_args = filter_args();
    page_args.extend(args![figure(page.limit), figure(page.offset)]);
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders ",
                orders_filter!(),
                " ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"
            ),
            page_args.clone(),
        )
        .await?;
    let total = rows::count(
        db.row(
            concat!("SELECT COUNT(*) AS n FROM orders ", orders_filter!()),
            filter_args(),
        )
        .await?,
    )?;
    let ids: Vec<String> = rows.iter().map(|r| r.col("id")).collect::<Result<_, _>>()?;
    let mut items = order_items(db, page_args).await?;
    let orders = rows
        .iter()
        .zip(ids)
        .map(|(row, id)| rows::order(row, items.remove(&id).unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    Ok(Paged {
        items: orders,
        total,
    })
}

/// The items of a page of orders (the same filter, order and page as the orders'
/// statement), by order, in position order: one statement.
async fn order_items(
    db: &Reader,
    page_args: Vec<crate::exec::Arg>,
) -> Result<BTreeMap<String, Vec<OrderItem>>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT i.order_id, ",
                order_item_columns!(),
                " FROM order_items i WHERE i.order_id IN (SELECT id FROM orders ",
                orders_filter!(),
                " ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6) \
                 ORDER BY i.order_id, i.position"
            ),
            page_args,
        )
        .await?;
    let mut by_order: BTreeMap<String, Vec<OrderItem>> = BTreeMap::new();
    for row in &rows {
        by_order
            .entry(row.col("order_id")?)
            .or_default()
            .push(rows::order_item(row)?);
    }
    Ok(by_order)
}

pub(crate) async fn payments(db: &Reader, order_id: &str) -> Result<Vec<PaymentTx>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE order_id = $1 ORDER BY position"
            ),
            args![order_id],
        )
        .await?;
    rows.iter().map(rows::payment).collect()
}

pub(crate) async fn payment(
    db: &Reader,
    order_id: &str,
    id: &str,
) -> Result<Option<PaymentTx>, StoreError> {
    let row = db.row(PAYMENT_BY_ID, args![id, order_id]).await?;
    row.as_ref().map(rows::payment).transpose()
}

pub(crate) async fn expired_payments(
    db: &Reader,
    now: Timestamp,
    limit: u64,
) -> Result<Vec<PaymentTx>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE status = $1 AND expires_at <= $2 \
                 ORDER BY expires_at LIMIT $3"
            ),
            args![PaymentStatus::Pending.as_str(), now.micros(), figure(limit)],
        )
        .await?;
    rows.iter().map(rows::payment).collect()
}
