//! Orders and their payment transactions: the reads, the orders a batch has locked
//! ([`Orders`]), and the order commands — checkout and pay in memory, the rest (which read and
//! change payment transactions) with statements of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use stockroom_domain::order::{OnCancel, OrderError, OrderState};
use stockroom_domain::{limits, Action, Adjustment, Quantity, Timestamp};

use crate::batch_rows::{bulk, OrderItemRow, OrderRow, OrderStateRow, PaymentRow};
use crate::carts::Carts;
use crate::catalog::Catalog;
use crate::dialect::Dialect;
use crate::dialect::Kind;
use crate::error::StoreError;
use crate::exec::{args, Arg, Conn, Reader, Row, Stmt};
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

    /// An order removed by its batch: "no such order" from now on, and nothing to write.
    fn forget(&mut self, id: &str) {
        self.slots.insert(id.to_owned(), None);
        self.changed.remove(id);
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
            gateway_enabled: false,
            ..
        } => Ok(Outcome::Refused(Rejection::GatewayDisabled)),
        Command::Pay {
            order_id,
            payment,
            settled,
            gateway_enabled: true,
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
    let units = cart
        .lines
        .iter()
        .try_fold(0u64, |sum, l| sum.checked_add(l.quantity));
    if cart.lines.len() > limits::ORDER_LINES_MAX
        || units.is_none_or(|u| u > limits::ORDER_UNITS_MAX)
    {
        return Err(Rejection::OrderTooLarge);
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
        Command::UpdateOrder {
            order_id,
            details,
            then,
        } => tx.update_order(order_id, details, *then).await,
        Command::Void {
            order_id,
            authorization_id,
            overdue_before,
        } => tx.void(order_id, authorization_id, *overdue_before).await,
        Command::PurgeUnpaid {
            order_id,
            created_before,
        } => tx.purge_unpaid(order_id, *created_before).await,
        Command::Refund {
            order_id,
            transaction_id,
            refund_id,
            amount,
        } => {
            tx.refund(order_id, transaction_id, refund_id, *amount)
                .await
        }
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

impl PaymentWork<'_, '_> {
    /// Changes an order's details and (with `then`) ships or cancels it: a refused ship or
    /// cancel refuses the whole update, before anything is written. As Elastic Path, the
    /// shipping address of a shipped order cannot change.
    async fn update_order(
        &mut self,
        order_id: &str,
        details: &OrderDetails,
        then: Option<OrderChange>,
    ) -> Result<Outcome, StoreError> {
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        if details.shipping_address.is_some()
            && state.shipping == stockroom_domain::order::Shipping::Fulfilled
        {
            return Ok(Outcome::Refused(Rejection::Order(OrderError::Shipped)));
        }
        if let Some(change) = then {
            let outcome = match change {
                OrderChange::Ship => self.ship(order_id).await?,
                OrderChange::Cancel => self.cancel(order_id).await?,
            };
            if !matches!(outcome, Outcome::Applied(_)) {
                return Ok(outcome);
            }
        }
        let mut sets = Vec::new();
        let mut values = args![order_id, self.orders.now];
        let mut set = |column: &str, value: Arg| {
            values.push(value);
            sets.push(format!("{column} = ${}", values.len()));
        };
        if let Some(number) = &details.order_number {
            set("order_number", number.into());
        }
        if let Some(reference) = &details.external_ref {
            set("external_ref", reference.into());
        }
        if let Some(address) = &details.shipping_address {
            set("shipping_address", address.into());
        }
        if !sets.is_empty() {
            let sql = format!(
                "UPDATE orders SET {}, updated_at = $2 WHERE id = $1",
                sets.join(", ")
            );
            self.conn.run(&sql, values).await?;
        }
        Ok(Outcome::Applied(Effect::Order(order_id.to_owned())))
    }
}

impl PaymentWork<'_, '_> {
    /// Voids an authorization that was not captured: its allocation released exactly once (the
    /// conditional update in [`PaymentWork::resolve`]), the authorization `cancelled`, the
    /// order unpaid again. A second void, a void after a capture or a cancellation, and (with
    /// `overdue_before`) a void of an authorization made since, are refused and change nothing.
    async fn void(
        &mut self,
        order_id: &str,
        authorization_id: &str,
        overdue_before: Option<Timestamp>,
    ) -> Result<Outcome, StoreError> {
        let refused = |e| Ok(Outcome::Refused(Rejection::Order(e)));
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let Some(authorization) = self.payment(order_id, authorization_id).await? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        if authorization.transaction_type != TransactionType::Authorize
            || authorization.status != PaymentStatus::Complete
            || overdue_before.is_some_and(|before| authorization.created_at >= before)
        {
            return refused(OrderError::NotAuthorized);
        }
        let next = match state.void() {
            Ok(next) => next,
            Err(e) => return refused(e),
        };
        if authorization.allocation == AllocationState::Held {
            self.resolve(&authorization, Action::Deallocate).await?;
        }
        let done = self
            .conn
            .run(
                "UPDATE payments SET status = $2, updated_at = $3 WHERE id = $1 AND status = $4",
                args![
                    authorization_id,
                    PaymentStatus::Cancelled.as_str(),
                    self.orders.now,
                    PaymentStatus::Complete.as_str()
                ],
            )
            .await?;
        if done != 1 {
            return Err(StoreError::RaceLost(format!(
                "authorization {authorization_id} changed meanwhile"
            )));
        }
        self.orders.set_state(order_id, next, None)?;
        Ok(Outcome::Applied(Effect::Payment {
            order_id: order_id.to_owned(),
            payment_id: authorization_id.to_owned(),
        }))
    }

    /// Removes an order that never held stock: unpaid, no payment transaction and no history
    /// entry naming it, made before `created_before`. Its slot becomes "no such order" for the rest of the batch.
    async fn purge_unpaid(
        &mut self,
        order_id: &str,
        created_before: Timestamp,
    ) -> Result<Outcome, StoreError> {
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        if state.payment != stockroom_domain::order::Payment::Unpaid || state.paying {
            return Ok(Outcome::Refused(Rejection::Order(OrderError::AlreadyPaid)));
        }
        let kept = self
            .conn
            .row(
                "SELECT COUNT(*) AS n FROM orders o WHERE o.id = $1 AND (o.created_at >= $2 \
                 OR EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id) \
                 OR EXISTS (SELECT 1 FROM history h WHERE h.order_id = o.id))",
                args![order_id, created_before.micros()],
            )
            .await?;
        if rows::count(kept)? > 0 {
            return Ok(Outcome::Refused(Rejection::Order(OrderError::AlreadyPaid)));
        }
        self.conn
            .run(
                "DELETE FROM order_items WHERE order_id = $1",
                args![order_id],
            )
            .await?;
        let gone = self
            .conn
            .run("DELETE FROM orders WHERE id = $1", args![order_id])
            .await?;
        if gone != 1 {
            return Err(StoreError::RaceLost(format!(
                "order {order_id} changed meanwhile"
            )));
        }
        self.orders.forget(order_id);
        Ok(Outcome::Applied(Effect::Order(order_id.to_owned())))
    }

    /// Records money given back for a paid transaction (a purchase or a capture) as a new
    /// `refund` transaction: `amount`, or all that is left. Never more than was paid in total;
    /// moves no stock.
    async fn refund(
        &mut self,
        order_id: &str,
        transaction_id: &str,
        refund_id: &str,
        amount: Option<i64>,
    ) -> Result<Outcome, StoreError> {
        let refused = || {
            Ok(Outcome::Refused(Rejection::Order(
                OrderError::NotRefundable,
            )))
        };
        let Some(state) = self.orders.state(order_id)? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let Some(paid) = self.payment(order_id, transaction_id).await? else {
            return Ok(Outcome::Refused(Rejection::NotFound));
        };
        let is_paid = matches!(
            paid.transaction_type,
            TransactionType::Purchase | TransactionType::Capture
        );
        if !is_paid || paid.status != PaymentStatus::Complete {
            return refused();
        }
        let refunded = self
            .conn
            .row(
                "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS n FROM payments \
                 WHERE order_id = $1 AND transaction_type = $2 AND status = $3",
                args![
                    order_id,
                    TransactionType::Refund.as_str(),
                    PaymentStatus::Complete.as_str()
                ],
            )
            .await?;
        let refunded: i64 = match refunded {
            Some(row) => row.col("n")?,
            None => 0,
        };
        let paid_amount = paid.amount.amount_minor();
        let amount = amount.unwrap_or(paid_amount.saturating_sub(refunded));
        let next = match state.refund(amount, paid_amount, refunded) {
            Ok(next) => next,
            Err(_) => return refused(),
        };
        let Ok(money) = Money::new(amount, paid.amount.currency()) else {
            return refused();
        };
        self.orders.add_payment(PaymentRow {
            transaction_type: TransactionType::Refund,
            ..payment_row(
                order_id,
                &NewPayment {
                    id: refund_id.to_owned(),
                    gateway: paid.gateway.clone(),
                    method: stockroom_domain::order::PaymentMethod::Purchase,
                    expires_at: Timestamp(self.orders.now),
                },
                &money,
                (PaymentStatus::Complete, &[]),
            )
        })?;
        self.orders.set_state(order_id, next, None)?;
        Ok(Outcome::Applied(Effect::Payment {
            order_id: order_id.to_owned(),
            payment_id: refund_id.to_owned(),
        }))
    }
}

// ---- reads ---------------------------------------------------------------------------------

/// An order's columns (the table aliased `o`), with what its payments took and gave back.
macro_rules! order_columns {
    () => {
        "o.id, o.cart_id, o.status, o.payment, o.shipping, o.paying, o.customer, \
         o.billing_address, o.shipping_address, o.order_number, o.external_ref, o.customer_id, \
         o.total_amount, o.currency, o.created_at, o.updated_at, \
         CAST(COALESCE((SELECT SUM(p.amount) FROM payments p WHERE p.order_id = o.id \
         AND p.status = 'complete' AND p.transaction_type IN ('purchase', 'capture')), 0) \
         AS BIGINT) AS paid_gross, \
         CAST(COALESCE((SELECT SUM(p.amount) FROM payments p WHERE p.order_id = o.id \
         AND p.status = 'complete' AND p.transaction_type = 'refund'), 0) AS BIGINT) \
         AS refunded"
    };
}

/// An order with its items: one statement.
pub(crate) async fn order(db: &Reader, id: &str) -> Result<Option<Order>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                order_columns!(),
                ", ",
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

/// The `WHERE` clause of an order query and its arguments (`$1` first).
struct OrderWhere {
    sql: String,
    args: Vec<Arg>,
}

impl OrderWhere {
    fn new(kind: Kind, query: &OrderQuery) -> OrderWhere {
        let mut w = OrderWhere {
            sql: String::new(),
            args: Vec::new(),
        };
        if let Some(c) = &query.customer_id {
            w.and(|p| format!("o.customer_id = {p}"), c.into());
        }
        if let Some(s) = query.status {
            w.and(|p| format!("o.status = {p}"), s.as_str().into());
        }
        if let Some(s) = query.payment {
            w.and(|p| format!("o.payment = {p}"), s.as_str().into());
        }
        if let Some(s) = query.shipping {
            w.and(|p| format!("o.shipping = {p}"), s.as_str().into());
        }
        for term in &query.terms {
            match term {
                OrderFilter::Text {
                    field,
                    matching: TextMatch::Eq,
                    value,
                } => w.and(
                    |p| format!("{} = {p}", text_column(kind, *field)),
                    value.into(),
                ),
                OrderFilter::Text {
                    field,
                    matching: TextMatch::Like,
                    value,
                } => w.and(
                    |p| {
                        format!(
                            "lower({}) LIKE lower({p}) ESCAPE '\\'",
                            text_column(kind, *field)
                        )
                    },
                    like_pattern(value).into(),
                ),
                OrderFilter::Total(c, amount) => w.and(
                    |p| format!("o.total_amount {} {p}", c.sql()),
                    (*amount).into(),
                ),
                OrderFilter::Time(t, c, at) => {
                    let column = match t {
                        OrderTime::CreatedAt => "o.created_at",
                        OrderTime::UpdatedAt => "o.updated_at",
                    };
                    w.and(|p| format!("{column} {} {p}", c.sql()), at.micros().into())
                }
                OrderFilter::ProductId(id) => w.and(
                    |p| {
                        format!(
                            "EXISTS (SELECT 1 FROM order_items f \
                             WHERE f.order_id = o.id AND f.product_id = {p})"
                        )
                    },
                    id.into(),
                ),
                OrderFilter::ProductSku(sku) => w.and(
                    |p| {
                        format!(
                            "EXISTS (SELECT 1 FROM order_items f \
                             WHERE f.order_id = o.id AND f.sku = {p})"
                        )
                    },
                    sku.into(),
                ),
            }
        }
        w
    }

    /// Adds a condition on one argument, given its placeholder.
    fn and(&mut self, condition: impl FnOnce(&str) -> String, arg: Arg) {
        self.args.push(arg);
        let placeholder = format!("${}", self.args.len());
        self.sql.push_str(if self.sql.is_empty() {
            "WHERE "
        } else {
            " AND "
        });
        self.sql.push_str(&condition(&placeholder));
    }
}

/// The expression of a text field of an order (`o`): a column, or a field of the customer or
/// an address, kept as JSON text.
fn text_column(kind: Kind, field: OrderText) -> String {
    let json = |column: &str, key: &str| match kind {
        // As text on both (a postcode may be sent as a number): `->>` gives text already.
        Kind::Sqlite => format!("CAST(json_extract(o.{column}, '$.{key}') AS TEXT)"),
        Kind::Postgres => format!("(o.{column}::jsonb ->> '{key}')"),
    };
    match field {
        OrderText::Name => json("customer", "name"),
        OrderText::Email => json("customer", "email"),
        OrderText::ShippingPostcode => json("shipping_address", "postcode"),
        OrderText::BillingPostcode => json("billing_address", "postcode"),
        OrderText::ExternalRef => "o.external_ref".to_owned(),
        OrderText::OrderNumber => "o.order_number".to_owned(),
        OrderText::Currency => "o.currency".to_owned(),
    }
}

/// Elastic Path's `like` value (`*` for any text) as a SQL `LIKE` pattern escaped with `\`.
fn like_pattern(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => pattern.push('%'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
    }
    pattern
}

/// `ORDER BY` of the order list; the id breaks ties so that pages never overlap.
fn order_by(sort: OrderSort) -> &'static str {
    match (sort.by, sort.ascending) {
        (OrderTime::CreatedAt, false) => "ORDER BY o.created_at DESC, o.id DESC",
        (OrderTime::CreatedAt, true) => "ORDER BY o.created_at, o.id",
        (OrderTime::UpdatedAt, false) => "ORDER BY o.updated_at DESC, o.id DESC",
        (OrderTime::UpdatedAt, true) => "ORDER BY o.updated_at, o.id",
    }
}

pub(crate) async fn orders(
    db: &Reader,
    kind: Kind,
    query: &OrderQuery,
    page: Page,
) -> Result<Paged<Order>, StoreError> {
    let filter = OrderWhere::new(kind, query);
    let mut page_args = filter.args.clone();
    page_args.extend(args![figure(page.limit), figure(page.offset)]);
    let n = filter.args.len();
    // The page: the filter, the order, `LIMIT` and `OFFSET`.
    let paged = format!(
        "FROM orders o {} {} LIMIT ${} OFFSET ${}",
        filter.sql,
        order_by(query.sort),
        n + 1,
        n + 2
    );
    let rows = db
        .rows(
            &format!(concat!("SELECT ", order_columns!(), " {}"), paged),
            page_args.clone(),
        )
        .await?;
    let total = rows::count(
        db.row(
            &format!("SELECT COUNT(*) AS n FROM orders o {}", filter.sql),
            filter.args,
        )
        .await?,
    )?;
    let ids: Vec<String> = rows.iter().map(|r| r.col("id")).collect::<Result<_, _>>()?;
    let mut items = order_items(db, &paged, page_args).await?;
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

/// The items of a page of orders (`paged`: the orders' `FROM`, filter, order and page), by
/// order, in position order: one statement.
async fn order_items(
    db: &Reader,
    paged: &str,
    page_args: Vec<Arg>,
) -> Result<BTreeMap<String, Vec<OrderItem>>, StoreError> {
    let rows = db
        .rows(
            &format!(
                concat!(
                    "SELECT i.order_id, ",
                    order_item_columns!(),
                    " FROM order_items i WHERE i.order_id IN (SELECT o.id {}) \
                     ORDER BY i.order_id, i.position"
                ),
                paged
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

/// Authorizations made before `before` and never captured nor voided (their order still
/// `authorized`, their allocation held), oldest first.
pub(crate) async fn overdue_authorizations(
    db: &Reader,
    before: Timestamp,
    limit: u64,
) -> Result<Vec<PaymentTx>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                payment_columns!(),
                " FROM payments WHERE transaction_type = $1 AND status = $2 AND allocation = $3 \
                 AND created_at < $4 AND order_id IN \
                 (SELECT id FROM orders WHERE payment = $5 AND status <> $6) \
                 ORDER BY created_at LIMIT $7"
            ),
            args![
                TransactionType::Authorize.as_str(),
                PaymentStatus::Complete.as_str(),
                AllocationState::Held.as_str(),
                before.micros(),
                stockroom_domain::order::Payment::Authorized.as_str(),
                stockroom_domain::order::Status::Cancelled.as_str(),
                figure(limit)
            ],
        )
        .await?;
    rows.iter().map(rows::payment).collect()
}

/// Orders never paid (payment `unpaid`, no payment transaction) made before `before`, oldest
/// first: what [`Command::PurgeUnpaid`] may remove.
pub(crate) async fn unpaid_orders_before(
    db: &Reader,
    before: Timestamp,
    limit: u64,
) -> Result<Vec<String>, StoreError> {
    let rows = db
        .rows(
            "SELECT o.id FROM orders o WHERE o.payment = $1 AND o.paying IS NULL \
             AND o.created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id) \
             AND NOT EXISTS (SELECT 1 FROM history h WHERE h.order_id = o.id) \
             ORDER BY o.created_at, o.id LIMIT $3",
            args![
                stockroom_domain::order::Payment::Unpaid.as_str(),
                before.micros(),
                figure(limit)
            ],
        )
        .await?;
    rows.iter().map(|r| r.col("id")).collect()
}
