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

use stockroom_domain::{ProductId, StockLevel, Timestamp};

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

/// Requests that arrive while a batch takes its locks, offered to it once it holds them.
pub(crate) trait Joiners {
    /// The waiting requests `covers` accepts, in order (the others wait for the next batch).
    fn take(&mut self, covers: &dyn Fn(&WriteRequest) -> bool) -> Vec<WriteRequest>;
}

/// No late joiners (a re-run batch, a job tried alone).
pub(crate) struct NoJoiners;

impl Joiners for NoJoiners {
    fn take(&mut self, _: &dyn Fn(&WriteRequest) -> bool) -> Vec<WriteRequest> {
        Vec::new()
    }
}

/// Runs one batch on a connection inside the transaction that `begin` starts and `commit`
/// ends (the caller rolls back if this fails). Once it holds its locks, it takes in the
/// `joiners` whose rows it has locked and read already: a flash sale's requests that arrived
/// while it waited for the hot row's lock join it instead of waiting for the next batch. The
/// answers are those of `requests`, then those of the joiners taken.
pub(crate) async fn run(
    conn: Conn<'_>,
    dialect: &'static Dialect,
    now: Timestamp,
    (begin, commit): (Stmt, Stmt),
    requests: &[&WriteRequest],
    joiners: &mut dyn Joiners,
) -> Result<Vec<Reply>, StoreError> {
    let mut batch = Batch::lock_and_read(conn, dialect, now, begin, requests).await?;
    let late = joiners.take(&|r| batch.covers(r));
    let all: Vec<&WriteRequest> = requests.iter().copied().chain(&late).collect();
    let answers = batch.apply_all(&all).await?;
    batch.write_back(commit).await?;
    Ok(answers)
}

/// What a batch locks and reads, from its requests.
#[derive(Default)]
struct Plan {
    keys: Option<String>,
    /// Products whose stock the batch may change (locked).
    products: BTreeSet<ProductId>,
    /// Products whose stock the batch only checks (read without a lock).
    checked: BTreeSet<ProductId>,
    orders: BTreeSet<String>,
    carts: BTreeSet<String>,
    /// Carts whose items' stock is checked (read without a lock).
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
            plan.checked
                .extend(command.checked_products().into_iter().cloned());
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
    checked_stocks: Option<usize>,
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
        if !(plan.products.is_empty() && plan.orders.is_empty()) {
            let products = ids_json(plan.products.iter().map(ProductId::as_str));
            let args = args![products, orders.clone()];
            reads.stocks = push(Stmt::new(dialect.lock_stocks, args));
        }
        if !plan.orders.is_empty() {
            reads.orders = push(Stmt::new(dialect.lock_orders, args![orders.clone()]));
            reads.order_items = push(Stmt::new(dialect.order_items_of, args![orders]));
        }
        if !(plan.checked.is_empty() && plan.checked_carts.is_empty()) {
            let products = ids_json(plan.checked.iter().map(ProductId::as_str));
            let args = args![products, ids_json(&plan.checked_carts)];
            reads.checked_stocks = push(Stmt::new(dialect.read_stocks, args));
        }
        if !plan.carts.is_empty() {
            reads.carts = push(Stmt::new(dialect.cart_items_of, args![carts.clone()]));
            let products = ids_json(plan.checked.iter().map(ProductId::as_str));
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
    /// What the batch locked and read.
    plan: Plan,
}

impl<'c> Batch<'c> {
    /// Whether a request's rows are all among those the batch has locked and read (and it
    /// carries no idempotency key the batch has not read).
    fn covers(&self, request: &WriteRequest) -> bool {
        let command = &request.command;
        let plan = &self.plan;
        request.idempotency.is_none()
            && command
                .products()
                .into_iter()
                .all(|p| self.stocks.is_locked(p))
            // Stock and catalog records both read (a product the batch only locked has no
            // catalog record in the batch).
            && command
                .checked_products()
                .into_iter()
                .all(|p| plan.checked.contains(p))
            && command.order_id().is_none_or(|o| plan.orders.contains(o))
            && command.cart_id().is_none_or(|c| {
                plan.carts.contains(c)
                    && (!command.checks_cart_stock() || plan.checked_carts.contains(c))
            })
            && command.slugs().iter().all(|s| plan.slugs.contains(*s))
    }

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
        let (locked, checked) = stock_products(&plan, &order_items, &cart_items)?;
        let stocks = Stocks::read(
            (locked, &rows_at(&mut answers, reads.stocks)),
            (checked, &rows_at(&mut answers, reads.checked_stocks)),
            now,
        )?;
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
            plan,
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
                    metrics::counter!("stockroom_idempotent_replays_total").increment(1);
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
            Command::CreateProductWithStock(product) => {
                // Checked first: the product's insert below is a statement of its own.
                if self.stocks.managed(&product.id) {
                    return Ok(Outcome::Refused(Rejection::AlreadyExists));
                }
                let create = Command::CreateProduct(product.clone());
                let outcome =
                    catalog::apply_product_command(self.conn, now, &mut self.catalog, &create)
                        .await?;
                if let Outcome::Applied(_) = outcome {
                    let stock = Command::Create {
                        product: product.id.clone(),
                        records: vec![(NO_LOCATION.to_owned(), StockLevel::default())],
                    };
                    match stock::apply_stock_command(&mut self.stocks, &self.slugs, &stock)? {
                        Outcome::Applied(_) => {}
                        Outcome::Refused(r) => {
                            return Err(StoreError::Internal(format!(
                                "new stock of a new product refused: {r:?}"
                            )))
                        }
                    }
                }
                Ok(outcome)
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
            | Command::DeleteCart { .. }
            | Command::CreateCart { .. }
            | Command::UpdateCart { .. }
            | Command::EmptyCart { .. }
            | Command::SetCartCustomer { .. }
            | Command::UpdateCartItems { .. } => {
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
            | Command::Cancel { .. }
            | Command::UpdateOrder { .. }
            | Command::Void { .. }
            | Command::PurgeUnpaid { .. }
            | Command::Refund { .. } => {
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
        // One round trip on PostgreSQL (pipelined), so this is the write-back and the COMMIT's
        // flush together.
        let started = std::time::Instant::now();
        self.conn.pipeline(stmts).await?;
        metrics::histogram!("stockroom_db_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The products whose records the batch locked (those its commands change, and its orders'
/// items') and those it read to check (its adds to carts', and its checked-out carts' items').
fn stock_products(
    plan: &Plan,
    order_items: &[Row],
    cart_items: &[Row],
) -> Result<(BTreeSet<ProductId>, BTreeSet<ProductId>), StoreError> {
    let mut locked = plan.products.clone();
    for row in order_items {
        locked.insert(rows::product_id(&row.col::<String>("product_id")?)?);
    }
    let mut checked = plan.checked.clone();
    for row in cart_items {
        let cart: String = row.col("cart_id")?;
        if let (true, Some(product)) = (
            plan.checked_carts.contains(&cart),
            row.col::<Option<String>>("product_id")?,
        ) {
            checked.insert(rows::product_id(&product)?);
        }
    }
    Ok((locked, checked))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use stockroom_domain::order::{Payment, PaymentMethod, Shipping, Status};
    use stockroom_domain::{Clock, Currency, Money, Price, ProductId, Quantity, Timestamp};

    use super::*;
    use crate::api::Store;
    use crate::testing::{fresh_database, Backend};
    use crate::{OpenOptions, SqlStore};

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            Timestamp(1_700_000_000_000_000)
        }
    }

    fn units(n: i64) -> Quantity {
        Quantity::new(n).expect("a valid quantity")
    }

    fn id(raw: &str) -> ProductId {
        ProductId::parse(raw).expect("an id")
    }

    fn add(cart: &str, product: &ProductId, n: i64) -> Command {
        Command::AddToCart {
            cart_id: cart.into(),
            lines: vec![CartLine {
                product: product.clone(),
                location: NO_LOCATION.into(),
                quantity: units(n),
            }],
            custom: Vec::new(),
        }
    }

    fn checkout(order: &str, cart: &str) -> Command {
        Command::Checkout(NewOrder {
            id: order.into(),
            cart_id: cart.into(),
            customer_id: None,
            customer: "{}".into(),
            billing_address: "{}".into(),
            shipping_address: "{}".into(),
        })
    }

    fn pay(order: &str, payment: &str, method: PaymentMethod) -> Command {
        Command::Pay {
            order_id: order.into(),
            payment: NewPayment {
                id: payment.into(),
                gateway: "manual".into(),
                method,
                expires_at: Timestamp(0),
            },
            settled: true,
            gateway_enabled: true,
        }
    }

    /// The jobs of one batch, in order: they see each other's kept-back rows (carts, orders,
    /// payments), whether from memory or through statements of their own.
    fn one_batch(hot: &ProductId, bare: &ProductId) -> Vec<Command> {
        let euros = Price {
            amount: Money::new(100, Currency::parse("EUR").expect("EUR")).expect("an amount"),
            includes_tax: false,
        };
        vec![
            Command::Create {
                product: hot.clone(),
                records: vec![(NO_LOCATION.into(), units(10).into())],
            },
            // Two adds to one cart (one line, 1 + 2 units) and one to another.
            add("cart-1", hot, 1),
            add("cart-1", hot, 2),
            add("cart-2", hot, 4),
            checkout("order-1", "cart-1"),
            pay("order-1", "payment-1", PaymentMethod::Purchase),
            // Paid already: refused, and nothing of it is written.
            pay("order-1", "payment-2", PaymentMethod::Purchase),
            // Reads the held payment with a statement of its own: sees payment-1.
            Command::Ship {
                order_id: "order-1".into(),
            },
            // A second order of the same cart: authorized, then captured after a statement of
            // its own (the capture is numbered after the kept-back authorization).
            checkout("order-2", "cart-1"),
            pay("order-2", "authorization", PaymentMethod::Authorize),
            Command::Capture {
                order_id: "order-2".into(),
                authorization_id: "authorization".into(),
                capture_id: "capture".into(),
            },
            // A cart holding stock with no catalog product (priced in no currency) ...
            Command::Create {
                product: bare.clone(),
                records: vec![(NO_LOCATION.into(), units(10).into())],
            },
            add("cart-3", bare, 1),
            // ... whose product then gets a catalog record in euros: the cart checks out at
            // that price, in euros.
            Command::CreateProduct(Product {
                id: bare.clone(),
                sku: "bare".into(),
                name: "Bare".into(),
                price: euros,
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            }),
            checkout("order-3", "cart-3"),
            // A cart removed; removing it again in the same batch finds nothing.
            Command::DeleteCart {
                cart_id: "cart-2".into(),
            },
            Command::DeleteCart {
                cart_id: "cart-2".into(),
            },
        ]
    }

    #[tokio::test]
    async fn one_batch_sees_its_own_order_flow_writes_on_sqlite() {
        one_batch_sees_its_own_order_flow_writes(Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn one_batch_sees_its_own_order_flow_writes_on_postgres() {
        one_batch_sees_its_own_order_flow_writes(Backend::Postgres).await;
    }

    async fn one_batch_sees_its_own_order_flow_writes(backend: Backend) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let Some(url) = fresh_database(backend, dir.path()).await else {
            return; // PostgreSQL is not configured (said once by `fresh_database`)
        };
        let clock: Arc<dyn Clock> = Arc::new(FixedClock);
        let store = SqlStore::open(&url, OpenOptions::default(), clock.clone())
            .await
            .expect("the store opens");
        let (hot, bare) = (id("hot"), id("bare"));
        let requests: Vec<WriteRequest> = one_batch(&hot, &bare)
            .into_iter()
            .map(WriteRequest::new)
            .collect();
        let batch: Vec<&WriteRequest> = requests.iter().collect();
        let answers = run_by_hand(backend, &url, clock.now(), &batch).await;
        let applied: Vec<bool> = answers
            .into_iter()
            .map(|a| matches!(a.expect("an answer").outcome, Outcome::Applied(_)))
            .collect();
        let expected = [
            true, true, true, true, true, true, false, true, // order-1
            true, true, true, // order-2
            true, true, true, true, // order-3
            true, false, // cart-2 removed once
        ];
        assert_eq!(applied, expected, "which jobs applied");
        check_what_was_committed(&*store, &hot).await;
    }

    /// Runs one batch on a connection of its own, in one transaction.
    async fn run_by_hand(
        backend: Backend,
        url: &str,
        now: Timestamp,
        batch: &[&WriteRequest],
    ) -> Vec<Reply> {
        let ends = || (Stmt::control("BEGIN"), Stmt::control("COMMIT"));
        match backend {
            Backend::Sqlite => {
                let path = url.trim_start_matches("sqlite://");
                let conn = crate::exec::open_sqlite(path, false).expect("a connection");
                run(
                    Conn::Lite(&conn),
                    &crate::dialect::SQLITE,
                    now,
                    ends(),
                    batch,
                    &mut NoJoiners,
                )
                .await
            }
            Backend::Postgres => {
                let pool = crate::testing::pg_test_pool(url).expect("a pool");
                let client = pool.get().await.expect("a connection");
                run(
                    Conn::Pg(&client),
                    &crate::dialect::POSTGRES,
                    now,
                    ends(),
                    batch,
                    &mut NoJoiners,
                )
                .await
            }
        }
        .expect("the batch commits")
    }

    async fn check_what_was_committed(store: &dyn Store, hot: &ProductId) {
        let cart = store.cart("cart-1").await.expect("a read").expect("cart-1");
        assert_eq!(cart.items.len(), 1);
        assert_eq!(cart.items[0].quantity, 3);
        assert!(store.cart("cart-2").await.expect("a read").is_none());
        let order = store
            .order("order-1")
            .await
            .expect("a read")
            .expect("order-1");
        assert_eq!(order.state.status, Status::Complete);
        assert_eq!(order.state.payment, Payment::Paid);
        assert_eq!(order.state.shipping, Shipping::Fulfilled);
        assert_eq!(order.items.len(), 1);
        assert_eq!(order.items[0].quantity.get(), 3);
        let payments = store.payments("order-1").await.expect("a read");
        let ids: Vec<&str> = payments.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["payment-1"]);
        assert_eq!(payments[0].allocation, AllocationState::Shipped);
        let payments = store.payments("order-2").await.expect("a read");
        let ids: Vec<&str> = payments.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["authorization", "capture"], "in position order");
        let order = store
            .order("order-2")
            .await
            .expect("a read")
            .expect("order-2");
        assert_eq!(order.state.payment, Payment::Paid);
        let order = store
            .order("order-3")
            .await
            .expect("a read")
            .expect("order-3");
        assert_eq!(order.total.currency().as_str(), "EUR");
        assert_eq!(order.total.amount_minor(), 100);
        assert_eq!(order.items[0].name, "Bare");
        let stock = store.stock(hot).await.expect("a read").expect("stock");
        // 3 shipped for order-1; 3 held by order-2's authorization.
        assert_eq!((stock.total, stock.allocated), (7, 3));
        let report = store.verify().await.expect("a read");
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
