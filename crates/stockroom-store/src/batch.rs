//! One batch of writes inside one transaction, in three steps:
//!
//! 1. **lock and read** ([`Batch::lock_and_read`]): the stored answers of the batch's
//!    idempotency keys, then its carts (locked on PostgreSQL), the stock records it touches
//!    (every record of every product its commands, orders and checked-out carts name, locked
//!    in product-id then location order), its orders (locked in id order) and their items,
//!    its carts' items, the catalog records and location slugs it needs. Locks are taken in
//!    that one global order — carts, stock, orders — by every batch of every lane of every
//!    instance, so batches can wait for each other but never deadlock on them. On PostgreSQL
//!    all of it, with the `BEGIN`, goes in one round trip.
//! 2. **apply** ([`Batch::apply_all`]): each job in turn, on the in-memory copies the
//!    per-entity modules keep ([`Stocks`], [`Carts`], [`Orders`], …): all or nothing per job.
//!    The few commands that read or change rows the batch does not hold in memory (payments,
//!    products, locations) run statements of their own; before each of them the batch writes
//!    the rows it has kept back ([`Batch::write_kept_back`]), so that its statements see every
//!    earlier job's writes.
//! 3. **write back** ([`Batch::write_back`]): every kept-back row, the changed stock records,
//!    the history entries and the new idempotency records, one statement per kind, then the
//!    commit — on PostgreSQL again in one round trip. Conditions that must hold at write time
//!    (a record or a key created by another instance meanwhile) are primary keys, so that a
//!    lost race fails a statement, and the commit after it rolls back instead.

use std::collections::BTreeSet;

use stockroom_domain::{ProductId, Timestamp};

use crate::carts::{self, CartContext, Carts};
use crate::catalog::{self, Catalog};
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Conn, Row, Stmt};
use crate::idempotency::{self, Keys, Seen};
use crate::locations::{self, Slugs};
use crate::model::*;
use crate::orders::{self, Orders};
use crate::rows;
use crate::stock::{self, ids_json, Stocks};

/// The answer to one job: its outcome, or why it has none.
pub(crate) type Reply = Result<Answer, StoreError>;

/// Runs one batch on a connection inside the transaction that `begin` starts and `commit`
/// ends (the caller rolls back if this fails).
pub(crate) async fn run(
    conn: Conn<'_>,
    dialect: &'static Dialect,
    now: Timestamp,
    (begin, commit): (Stmt, Stmt),
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut batch = Batch::lock_and_read(conn, dialect, now, begin, requests).await?;
    let answers = batch.apply_all(requests).await?;
    batch.write_back(commit).await?;
    Ok(answers)
}

/// What a batch locks and reads, from its requests.
#[derive(Default)]
struct Plan {
    keys: Option<String>,
    products: BTreeSet<ProductId>,
    orders: BTreeSet<String>,
    carts: BTreeSet<String>,
    /// Carts whose items' stock is checked (and so locked).
    checked_carts: BTreeSet<String>,
    slugs: BTreeSet<String>,
}

impl Plan {
    fn of(requests: &[&WriteRequest]) -> Plan {
        let mut plan = Plan {
            keys: idempotency::key_refs(requests),
            ..Plan::default()
        };
        for r in requests {
            let command = &r.command;
            plan.products
                .extend(command.products().into_iter().cloned());
            plan.orders.extend(command.order_id().map(str::to_owned));
            plan.slugs
                .extend(command.slugs().into_iter().map(str::to_owned));
            if let Some(cart) = command.cart_id() {
                plan.carts.insert(cart.to_owned());
                if command.checks_cart_stock() {
                    plan.checked_carts.insert(cart.to_owned());
                }
            }
        }
        plan
    }
}

/// Where each read of [`Plan`] sits in the pipeline's answers.
#[derive(Default)]
struct Reads {
    keys: Option<usize>,
    stocks: Option<usize>,
    orders: Option<usize>,
    order_items: Option<usize>,
    carts: Option<usize>,
    catalog: Option<usize>,
    slugs: Option<usize>,
}

impl Reads {
    /// The statements that take the plan's locks and make its reads, in the global lock order.
    fn plan(plan: &Plan, dialect: &Dialect, begin: Stmt) -> (Vec<Stmt>, Reads) {
        let mut stmts = vec![begin];
        let mut push = |stmt: Stmt| {
            stmts.push(stmt);
            Some(stmts.len() - 1)
        };
        let mut reads = Reads::default();
        if let Some(keys) = &plan.keys {
            reads.keys = push(Stmt::new(dialect.read_keys, args![keys.clone()]));
        }
        let carts = ids_json(&plan.carts);
        if let (Some(lock), false) = (dialect.lock_carts, plan.carts.is_empty()) {
            push(Stmt::new(lock, args![carts.clone()]));
        }
        let orders = ids_json(&plan.orders);
        if !(plan.products.is_empty() && plan.orders.is_empty() && plan.checked_carts.is_empty()) {
            let products = ids_json(plan.products.iter().map(ProductId::as_str));
            let checked = ids_json(&plan.checked_carts);
            let args = args![products, orders.clone(), checked];
            reads.stocks = push(Stmt::new(dialect.lock_stocks, args));
        }
        if !plan.orders.is_empty() {
            reads.orders = push(Stmt::new(dialect.lock_orders, args![orders.clone()]));
            reads.order_items = push(Stmt::new(dialect.order_items_of, args![orders]));
        }
        if !plan.carts.is_empty() {
            reads.carts = push(Stmt::new(dialect.cart_items_of, args![carts.clone()]));
            let products = ids_json(plan.products.iter().map(ProductId::as_str));
            reads.catalog = push(Stmt::new(dialect.catalog_of, args![products, carts]));
        }
        if !plan.slugs.is_empty() {
            reads.slugs = push(Stmt::new(dialect.slugs_of, args![ids_json(&plan.slugs)]));
        }
        (stmts, reads)
    }
}

/// The rows of the read at `at`, if the batch made it.
fn rows_at(answers: &mut [Vec<Row>], at: Option<usize>) -> Vec<Row> {
    at.and_then(|i| answers.get_mut(i).map(std::mem::take))
        .unwrap_or_default()
}

/// The batch's working state inside its transaction.
pub(crate) struct Batch<'c> {
    conn: Conn<'c>,
    dialect: &'static Dialect,
    now: Timestamp,
    keys: Keys,
    stocks: Stocks,
    slugs: Slugs,
    catalog: Catalog,
    carts: Carts,
    orders: Orders,
}

impl<'c> Batch<'c> {
    /// Step 1: begins the transaction, takes the batch's locks and reads what it needs.
    async fn lock_and_read(
        conn: Conn<'c>,
        dialect: &'static Dialect,
        now: Timestamp,
        begin: Stmt,
        requests: &[&WriteRequest],
    ) -> Result<Batch<'c>, StoreError> {
        let plan = Plan::of(requests);
        let (stmts, reads) = Reads::plan(&plan, dialect, begin);
        let mut answers = conn.pipeline(stmts).await?;
        let order_items = rows_at(&mut answers, reads.order_items);
        let cart_items = rows_at(&mut answers, reads.carts);
        let locked = locked_products(&plan, &order_items, &cart_items)?;
        let stocks = Stocks::read(locked, &rows_at(&mut answers, reads.stocks), now)?;
        let orders_read = rows_at(&mut answers, reads.orders);
        Ok(Batch {
            conn,
            dialect,
            now,
            keys: Keys::read(&rows_at(&mut answers, reads.keys))?,
            stocks,
            slugs: Slugs::read(&rows_at(&mut answers, reads.slugs))?,
            catalog: Catalog::read(&rows_at(&mut answers, reads.catalog))?,
            carts: Carts::read(plan.carts.iter().map(String::as_str), &cart_items, now)?,
            orders: Orders::read(&plan.orders, &orders_read, &order_items, now)?,
        })
    }

    /// Step 2: applies each job in turn; answers each.
    async fn apply_all(&mut self, requests: &[&WriteRequest]) -> Result<Vec<Reply>, StoreError> {
        let mut answers = Vec::with_capacity(requests.len());
        for request in requests {
            answers.push(self.apply_request(request).await?);
        }
        Ok(answers)
    }

    async fn apply_request(&mut self, request: &WriteRequest) -> Result<Reply, StoreError> {
        if let Some(key) = &request.idempotency {
            match self.keys.seen(key) {
                Seen::New => {}
                Seen::Mismatch => return Ok(Err(StoreError::IdempotencyMismatch)),
                Seen::Answered(outcome) => {
                    let entries = self.stocks.entries();
                    return Ok(Ok(idempotency::replay(self.conn, entries, &outcome).await?));
                }
            }
        }
        if request.command.runs_statements() {
            self.write_kept_back().await?;
        }
        let outcome = self.apply_command(&request.command).await?;
        if let Some(key) = &request.idempotency {
            self.keys.answered(key, &outcome);
        }
        Ok(Ok(Answer {
            outcome,
            replayed: false,
        }))
    }

    /// Hands a command to the module of its entity.
    async fn apply_command(&mut self, command: &Command) -> Result<Outcome, StoreError> {
        let now = self.now.micros();
        match command {
            Command::Create { .. }
            | Command::Transact { .. }
            | Command::Delete { .. }
            | Command::SetLocations { .. } => {
                stock::apply_stock_command(&mut self.stocks, &self.slugs, command)
            }
            Command::CreateLocation(_) | Command::DeleteLocation { .. } => {
                let stocks = &self.stocks;
                let holds = |slug: &str| stocks.holds_stock_at(slug);
                locations::apply_location_command(self.conn, now, &mut self.slugs, holds, command)
                    .await
            }
            Command::CreateProduct(_) | Command::DeleteProduct { .. } => {
                let outcome =
                    catalog::apply_product_command(self.conn, now, &mut self.catalog, command)
                        .await?;
                if let (Command::DeleteProduct { product }, Outcome::Applied(_)) =
                    (command, &outcome)
                {
                    self.carts.drop_product(product);
                }
                Ok(outcome)
            }
            Command::AddToCart { .. }
            | Command::UpdateCartItem { .. }
            | Command::DeleteCartItem { .. }
            | Command::DeleteCart { .. } => {
                let cx = CartContext {
                    stocks: &self.stocks,
                    catalog: &self.catalog,
                    slugs: &self.slugs,
                };
                carts::apply_cart_command(&mut self.carts, &cx, command)
            }
            Command::Checkout(_) | Command::Pay { .. } => orders::apply_order_command(
                &mut self.orders,
                &mut self.stocks,
                &self.carts,
                &self.catalog,
                command,
            ),
            Command::Settle { .. }
            | Command::Capture { .. }
            | Command::Ship { .. }
            | Command::Cancel { .. } => {
                orders::apply_payment_command(
                    self.conn,
                    &mut self.orders,
                    &mut self.stocks,
                    command,
                )
                .await
            }
        }
    }

    /// The statements that write the order flow's rows kept back so far (carts, orders,
    /// payments), parents before children.
    fn kept_back(&mut self) -> Result<Vec<Stmt>, StoreError> {
        let mut stmts = self.carts.write_back(self.dialect)?;
        stmts.extend(self.orders.write_back(self.dialect)?);
        Ok(stmts)
    }

    /// Writes the rows kept back so far, before a statement of the batch's own.
    async fn write_kept_back(&mut self) -> Result<(), StoreError> {
        let stmts = self.kept_back()?;
        if !stmts.is_empty() {
            self.conn.pipeline(stmts).await?;
        }
        Ok(())
    }

    /// Step 3: writes everything the batch did, then `commit`.
    async fn write_back(mut self, commit: Stmt) -> Result<(), StoreError> {
        let mut stmts = self.kept_back()?;
        stmts.extend(self.stocks.write_back(self.dialect)?);
        stmts.extend(self.keys.write_back(self.dialect, self.now.micros())?);
        stmts.push(commit);
        self.conn.pipeline(stmts).await?;
        Ok(())
    }
}

/// The products whose records the batch locked: those its commands name, its orders' items'
/// and its checked-out carts' items'.
fn locked_products(
    plan: &Plan,
    order_items: &[Row],
    cart_items: &[Row],
) -> Result<BTreeSet<ProductId>, StoreError> {
    let mut locked = plan.products.clone();
    for row in order_items {
        locked.insert(rows::product_id(&row.col::<String>("product_id")?)?);
    }
    for row in cart_items {
        let cart: String = row.col("cart_id")?;
        if let (true, Some(product)) = (
            plan.checked_carts.contains(&cart),
            row.col::<Option<String>>("product_id")?,
        ) {
            locked.insert(rows::product_id(&product)?);
        }
    }
    Ok(locked)
}
