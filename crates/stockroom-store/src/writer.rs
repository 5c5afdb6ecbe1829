//! The group-commit writer: the one path by which stock changes.
//!
//! Request handlers send a [`Job`] down a bounded channel and wait for its answer. One task per
//! process takes every job that is waiting (up to a batch limit), and for the whole batch:
//!
//! 1. begins a write transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock up front);
//! 2. reads the idempotency records of the batch's keys, and the lines that its order commands'
//!    held allocations cover;
//! 3. reads the stock rows the batch touches in product-id order, then the orders it touches in
//!    id order, locking both on PostgreSQL (`FOR UPDATE`), so that no other writer — in this
//!    process or another — can change them until this transaction ends, and no two writers can
//!    deadlock; and the items of the carts it adds to (not locked);
//! 4. applies each job in turn: stock arithmetic (the domain's) on an in-memory copy of those
//!    rows, all or nothing per job, and the order flow's rows on the copies in [`Flow`], which
//!    keeps the rows jobs create until the next statement of the batch ([`Batch::sql`]) or the
//!    end; a refused job leaves everything as it was;
//! 5. writes the kept-back order-flow rows (one statement per table), the changed stock rows,
//!    one history entry per change and the idempotency records;
//! 6. commits — one fsync for the batch — and only then answers every job.
//!
//! The in-memory copy lives only inside the transaction that holds the rows' locks, so it can
//! never disagree with the database. If another writer wins a race the batch cannot see coming
//! (a row created or an idempotency key stored by another instance between steps 3 and 5) the
//! transaction is rolled back and the whole batch re-run; nothing was answered yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::AnyPool;
use stockroom_domain::{Action, Clock, Origin, ProductId, Stock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Arg, Conn, DbRow, Get};
use crate::flow::Flow;
use crate::locations;
use crate::model::*;
use crate::orders;
use crate::sql::{history_columns, history_entry, ids_json, stock_record};

/// How often a batch is re-run after losing a race to another writer before giving up.
const BATCH_ATTEMPTS_MAX: u32 = 8;

/// The answer to one job: its outcome, or why it has none.
type Reply = Result<Answer, StoreError>;

pub struct Job {
    pub request: WriteRequest,
    pub reply: oneshot::Sender<Reply>,
}

/// Where the writer commits: a pool (PostgreSQL), or its own SQLite connection, driven on its
/// own thread (see `exec.rs`).
pub(crate) enum WriteDb {
    Pool(AnyPool),
    /// The connection, and the URL it is reopened from if it is ever left inside a transaction.
    Lite(Box<rusqlite::Connection>, String),
}

pub(crate) async fn run(
    mut db: WriteDb,
    dialect: &'static Dialect,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        metrics::gauge!("stockroom_writer_queue_depth").set(rx.len() as f64);
        metrics::histogram!("stockroom_writer_batch_size").record(jobs.len() as f64);
        let started = std::time::Instant::now();
        let requests: Vec<&WriteRequest> = jobs.iter().map(|j| &j.request).collect();
        let answers = commit(&mut db, dialect, &*clock, &requests).await;
        metrics::histogram!("stockroom_writer_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        for (job, answer) in jobs.drain(..).zip(answers) {
            // The requester may have gone away; its write stands all the same.
            let _ = job.reply.send(answer);
        }
    }
    if let WriteDb::Pool(pool) = db {
        pool.close().await;
    }
}

/// Commits a batch, re-running it after a lost race; if it fails for another reason, each job
/// is tried alone so that one bad job cannot fail its neighbours.
async fn commit(
    db: &mut WriteDb,
    dialect: &Dialect,
    clock: &dyn Clock,
    requests: &[&WriteRequest],
) -> Vec<Reply> {
    match commit_with_retries(db, dialect, clock, requests).await {
        Ok(answers) => answers,
        Err(e) if requests.len() == 1 => vec![Err(contention_is_unavailable(e))],
        // The database is down or out of connections: trying each job alone would not help.
        Err(StoreError::Unavailable(e)) => requests
            .iter()
            .map(|_| Err(StoreError::Unavailable(e.clone())))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, size = requests.len(), "batch failed; trying its jobs one by one");
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(
                    commit_with_retries(db, dialect, clock, &[*request])
                        .await
                        .map_err(contention_is_unavailable)
                        .and_then(|mut a| a.remove(0)),
                );
            }
            answers
        }
    }
}

/// A job that still conflicts after every attempt is answered "try again".
fn contention_is_unavailable(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict => {
            StoreError::Unavailable("too much contention between writers".into())
        }
        other => other,
    }
}

async fn commit_with_retries(
    db: &mut WriteDb,
    dialect: &Dialect,
    clock: &dyn Clock,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit_once(db, dialect, clock.now(), requests).await {
            Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, "batch lost a race; re-running it");
                // Let the other writer finish before running into it again.
                tokio::time::sleep(std::time::Duration::from_millis(u64::from(attempt))).await;
            }
            // Still losing after every attempt (or one job always conflicts): the caller tries
            // the batch's jobs one by one, so one such job cannot fail its neighbours.
            other => return other,
        }
    }
}

// Boxed: the compiler cannot otherwise prove this future `Send` for every lifetime it borrows
// (rust-lang/rust#96865, met through sqlx's higher-ranked `Executor` bounds).
fn commit_once<'a>(
    db: &'a mut WriteDb,
    dialect: &'a Dialect,
    now: Timestamp,
    requests: &'a [&'a WriteRequest],
) -> BoxFuture<'a, Result<Vec<Reply>, StoreError>> {
    Box::pin(async move {
        match db {
            WriteDb::Pool(pool) => {
                let waited = std::time::Instant::now();
                let mut pooled = pool.acquire().await?;
                metrics::histogram!("stockroom_db_pool_wait_seconds", "pool" => "writer")
                    .record(waited.elapsed().as_secs_f64());
                let (result, clean) =
                    transact(&mut Conn::Any(&mut pooled), dialect, now, requests).await;
                if !clean {
                    // The connection's state is unknown: never hand it to the next batch.
                    drop(pooled.detach());
                }
                result
            }
            WriteDb::Lite(conn, url) => {
                let (result, _) = transact(&mut Conn::Lite(conn), dialect, now, requests).await;
                // SQLite may have rolled back by itself (then ROLLBACK fails, harmlessly); what
                // matters is whether a transaction is still open, holding the write lock.
                if !conn.is_autocommit() {
                    tracing::error!(
                        "the writer's SQLite connection is left in a transaction; reopening it"
                    );
                    match crate::sql::sqlite_writer(url) {
                        Ok(fresh) => **conn = fresh,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reopen the writer's connection")
                        }
                    }
                }
                result
            }
        }
    })
}

/// One batch in one transaction; the flag says whether the connection is left clean (no
/// transaction open).
async fn transact(
    conn: &mut Conn<'_>,
    dialect: &Dialect,
    now: Timestamp,
    requests: &[&WriteRequest],
) -> (Result<Vec<Reply>, StoreError>, bool) {
    if let Err(e) = conn.execute(dialect.begin_write, args![]).await {
        return (Err(e), true);
    }
    let result = match apply_and_write(conn, dialect, now, requests).await {
        Ok(answers) => {
            let started = std::time::Instant::now();
            let committed = conn.execute("COMMIT", args![]).await;
            metrics::histogram!("stockroom_db_commit_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            match committed {
                Ok(_) => return (Ok(answers), true),
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    match conn.execute("ROLLBACK", args![]).await {
        Ok(_) => (Err(result), true),
        Err(e) => {
            tracing::warn!(error = %e, "rollback failed");
            (Err(result), false)
        }
    }
}

/// A stock row as the batch sees it: as read, and as the batch has left it so far.
struct Slot {
    read: Option<StockRecord>,
    current: Option<Stock>,
}

/// A stock record's key: product and location slug ([`NO_LOCATION`] for none). Ordered by
/// product, then location: the order in which every writer locks rows.
pub(crate) type Key = (ProductId, String);

/// The batch's working state inside its transaction.
pub(crate) struct Batch<'c> {
    conn: Conn<'c>,
    dialect: &'c Dialect,
    pub now: Timestamp,
    /// Products whose records (at every location) this batch has locked and read.
    locked: BTreeSet<ProductId>,
    slots: BTreeMap<Key, Slot>,
    entries: Vec<HistoryEntry>,
    /// The order flow's rows: as read, as changed, and yet to be written.
    pub flow: Flow,
}

impl<'c> Batch<'c> {
    pub fn dialect(&self) -> &Dialect {
        self.dialect
    }

    /// The batch's connection, for a statement of its own (through `execute` and the fetches
    /// below). The rows the batch has kept back are
    /// written first, so that the statement sees every earlier job's writes.
    async fn sql(&mut self) -> Result<&mut Conn<'c>, StoreError> {
        self.flow
            .flush(&mut self.conn, self.dialect, self.now)
            .await?;
        Ok(&mut self.conn)
    }

    /// Runs a statement of the batch's own ([`Batch::sql`]); returns the rows it changed.
    pub async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        self.sql().await?.execute(sql, args).await
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        self.sql().await?.fetch_optional(sql, args).await
    }

    pub async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<DbRow>, StoreError> {
        self.sql().await?.fetch_all(sql, args).await
    }

    /// The stock of a product at a location as the batch has it now (`None`: no record). A
    /// product the batch did not lock means it read something that has since changed: re-run.
    pub fn stock(&self, product: &ProductId, location: &str) -> Result<Option<Stock>, StoreError> {
        if !self.locked.contains(product) {
            return Err(StoreError::Conflict);
        }
        Ok(self
            .slots
            .get(&(product.clone(), location.to_owned()))
            .and_then(|s| s.current))
    }

    /// Whether the product has any stock record now (is stock-managed).
    pub fn managed(&self, product: &ProductId) -> bool {
        self.slots
            .range((product.clone(), String::new())..)
            .take_while(|((p, _), _)| p == product)
            .any(|(_, slot)| slot.current.is_some())
    }

    /// Whether any record at this location exists now (including ones this batch created).
    pub fn holds_stock_at(&self, location: &str) -> bool {
        self.slots
            .iter()
            .any(|((_, l), slot)| l == location && slot.current.is_some())
    }

    /// The records of a product that exist now: (location, stock).
    pub fn records(&self, product: &ProductId) -> Vec<(String, Stock)> {
        self.slots
            .range((product.clone(), String::new())..)
            .take_while(|((p, _), _)| p == product)
            .filter_map(|((_, l), slot)| slot.current.map(|s| (l.clone(), s)))
            .collect()
    }

    /// Why a line's record is missing: the product is not stock-managed (`None`, when
    /// `skip_unmanaged`), needs a location, or is not held where asked.
    fn missing(
        &self,
        product: &ProductId,
        location: &str,
        skip_unmanaged: bool,
    ) -> Option<Rejection> {
        if !self.managed(product) {
            return (!skip_unmanaged).then_some(Rejection::NotFound);
        }
        Some(if location == NO_LOCATION {
            Rejection::LocationRequired
        } else if skip_unmanaged {
            Rejection::Stock(stockroom_domain::Refusal::InsufficientAvailable)
        } else {
            Rejection::NotFound
        })
    }

    /// Applies several stock actions as one: all of them, or (refused) none. Lines of products
    /// with no stock at all are skipped when `skip_unmanaged` (the order flow: such products are
    /// not stock-managed), refused as not found otherwise. Returns the entries written.
    pub fn apply_lines(
        &mut self,
        lines: &[(ProductId, String, Action, stockroom_domain::Quantity)],
        order_id: Option<&str>,
        reason: Option<&str>,
        skip_unmanaged: bool,
    ) -> Result<Result<Vec<HistoryEntry>, Rejection>, StoreError> {
        let mut next: BTreeMap<Key, Stock> = BTreeMap::new();
        let mut written = Vec::with_capacity(lines.len());
        for (product, location, action, quantity) in lines {
            let key = (product.clone(), location.clone());
            let current = match next.get(&key) {
                Some(s) => *s,
                None => match self.stock(product, location)? {
                    Some(s) => s,
                    None => match self.missing(product, location, skip_unmanaged) {
                        None => continue,
                        Some(rejection) => return Ok(Err(rejection)),
                    },
                },
            };
            let origin = if order_id.is_some() {
                Origin::Order
            } else {
                Origin::Manual
            };
            let after = match current.apply_as(origin, *action, *quantity) {
                Ok(after) => after,
                Err(refusal) => return Ok(Err(Rejection::Stock(refusal))),
            };
            next.insert(key, after);
            written.push(self.entry(
                product,
                location,
                *action,
                quantity.get(),
                after,
                order_id,
                reason,
            ));
        }
        for (key, after) in next {
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.current = Some(after);
            }
        }
        self.entries.extend(written.iter().cloned());
        Ok(Ok(written))
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        product: &ProductId,
        location: &str,
        action: Action,
        quantity: u64,
        after: Stock,
        order_id: Option<&str>,
        reason: Option<&str>,
    ) -> HistoryEntry {
        HistoryEntry {
            id: crate::new_id(),
            product_id: product.clone(),
            location: location.to_owned(),
            action,
            quantity,
            after,
            order_id: order_id.map(str::to_owned),
            reason: reason.map(str::to_owned),
            created_at: self.now,
        }
    }

    /// Creates, sets or deletes a record outside `apply_lines`.
    pub fn replace(
        &mut self,
        product: &ProductId,
        location: &str,
        action: Action,
        quantity: u64,
        after: Option<Stock>,
    ) -> HistoryEntry {
        let entry = self.entry(
            product,
            location,
            action,
            quantity,
            after.unwrap_or_default(),
            None,
            None,
        );
        self.slots
            .entry((product.clone(), location.to_owned()))
            .or_insert(Slot {
                read: None,
                current: None,
            })
            .current = after;
        self.entries.push(entry.clone());
        entry
    }
}

fn apply_and_write<'a>(
    conn: &'a mut Conn<'_>,
    dialect: &'a Dialect,
    now: Timestamp,
    requests: &'a [&'a WriteRequest],
) -> BoxFuture<'a, Result<Vec<Reply>, StoreError>> {
    Box::pin(apply_and_write_inner(
        conn.reborrow(),
        dialect,
        now,
        requests,
    ))
}

async fn apply_and_write_inner(
    mut conn: Conn<'_>,
    dialect: &Dialect,
    now: Timestamp,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    // 2. Stored answers for the batch's idempotency keys, and the lines of held allocations.
    let mut stored: HashMap<(String, String), (String, String)> = HashMap::new();
    for key in requests.iter().filter_map(|r| r.idempotency.as_ref()) {
        let row = conn
            .fetch_optional(
                "SELECT fingerprint, outcome FROM idempotency WHERE scope = $1 AND key = $2",
                args![&key.scope, &key.key],
            )
            .await?;
        if let Some(row) = row {
            stored.insert(
                (key.scope.clone(), key.key.clone()),
                (row.col("fingerprint")?, row.col("outcome")?),
            );
        }
    }
    let mut products: BTreeSet<ProductId> = BTreeSet::new();
    let mut order_ids: BTreeSet<String> = BTreeSet::new();
    for r in requests {
        products.extend(r.command.products().into_iter().cloned());
        if let Some(order_id) = r.command.order_id() {
            order_ids.insert(order_id.to_owned());
            // Paying names its lines itself; settling, shipping and cancelling resolve the
            // allocation the order holds, whose lines are read here to lock them.
            if !matches!(r.command, Command::Pay { .. }) {
                products.extend(orders::allocated_products(&mut conn, order_id).await?);
            }
        }
    }

    // 3. The rows the batch touches, locked in one order: stock by product id, then orders.
    let ids: Vec<&ProductId> = products.iter().collect();
    let rows = conn
        .fetch_all(dialect.lock_stocks, args![ids_json(&ids)])
        .await?;
    let mut slots: BTreeMap<Key, Slot> = BTreeMap::new();
    for row in &rows {
        let record = stock_record(row)?;
        slots.insert(
            (record.product_id.clone(), record.location.clone()),
            Slot {
                current: Some(record.stock),
                read: Some(record),
            },
        );
    }
    let mut flow = Flow::default();
    if !order_ids.is_empty() {
        let ids: Vec<&String> = order_ids.iter().collect();
        let rows = conn
            .fetch_all(
                dialect.lock_orders,
                args![serde_json::to_string(&ids).unwrap_or_default()],
            )
            .await?;
        flow.orders_read(&order_ids, &rows)?;
    }
    // The items of the carts the batch adds to (carts are not locked: lines are added to what
    // they hold at write time).
    let carts: BTreeSet<&String> = requests
        .iter()
        .filter_map(|r| match &r.command {
            Command::AddToCart { cart_id, .. } => Some(cart_id),
            _ => None,
        })
        .collect();
    if !carts.is_empty() {
        let rows = conn
            .fetch_all(
                dialect.cart_items_of,
                args![serde_json::to_string(&carts).unwrap_or_default()],
            )
            .await?;
        flow.carts_read(carts, &rows)?;
    }

    // 4. Apply each job in order.
    let mut batch = Batch {
        conn,
        dialect,
        now,
        locked: products,
        slots,
        entries: Vec::new(),
        flow,
    };
    let mut answers: Vec<Reply> = Vec::with_capacity(requests.len());
    let mut fresh_keys: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    for r in requests {
        if let Some(key) = &r.idempotency {
            let id = (key.scope.clone(), key.key.clone());
            if let Some((fingerprint, outcome)) = stored.get(&id).or_else(|| fresh_keys.get(&id)) {
                if *fingerprint != key.fingerprint {
                    answers.push(Err(StoreError::IdempotencyMismatch));
                } else {
                    let outcome = outcome.clone();
                    metrics::counter!("stockroom_idempotent_replays_total").increment(1);
                    answers.push(Ok(replay(&mut batch, &outcome).await?));
                }
                continue;
            }
        }
        let outcome = execute(&mut batch, &r.command).await?;
        if let Some(key) = &r.idempotency {
            fresh_keys.insert(
                (key.scope.clone(), key.key.clone()),
                (key.fingerprint.clone(), encode(&outcome)),
            );
        }
        answers.push(Ok(Answer {
            outcome,
            replayed: false,
        }));
    }

    // 5. Write what changed.
    batch.sql().await?;
    let Batch {
        mut conn,
        slots,
        entries,
        ..
    } = batch;
    let mut updated = Vec::new();
    for ((product, location), slot) in &slots {
        match (&slot.read, slot.current) {
            (None, None) => {}
            (None, Some(stock)) => {
                let done = conn
                    .execute(
                        "INSERT INTO stock (product_id, location, total, allocated, held, \
                         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                         ON CONFLICT (product_id, location) DO NOTHING",
                        args![
                            product.as_str(),
                            location,
                            figure(stock.total()),
                            figure(stock.allocated()),
                            figure(stock.held()),
                            now.micros()
                        ],
                    )
                    .await?;
                if done == 0 {
                    // Another instance created it after our read: re-run the batch.
                    return Err(StoreError::Conflict);
                }
            }
            (Some(_), None) => {
                conn.execute(
                    "DELETE FROM stock WHERE product_id = $1 AND location = $2",
                    args![product.as_str(), location],
                )
                .await?;
            }
            (Some(read), Some(stock)) if read.stock != stock => {
                updated.push(serde_json::json!({
                    "p": product.as_str(),
                    "l": location,
                    "t": figure(stock.total()),
                    "a": figure(stock.allocated()),
                    "h": figure(stock.held()),
                }));
            }
            (Some(_), Some(_)) => {}
        }
    }
    if !updated.is_empty() {
        conn.execute(
            dialect.update_stocks,
            args![serde_json::Value::Array(updated).to_string(), now.micros()],
        )
        .await?;
    }
    if !entries.is_empty() {
        let rows: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "id": e.id,
                    "p": e.product_id.as_str(),
                    "l": e.location,
                    "action": e.action.as_str(),
                    "q": figure(e.quantity),
                    "t": figure(e.after.total()),
                    "a": figure(e.after.allocated()),
                    "order": e.order_id,
                    "reason": e.reason,
                    "at": e.created_at.micros(),
                })
            })
            .collect();
        conn.execute(
            dialect.insert_history,
            args![serde_json::Value::Array(rows).to_string()],
        )
        .await?;
    }
    // In key order, so that two writers storing the same keys wait for each other in one order.
    for ((scope, key), (fingerprint, outcome)) in fresh_keys {
        let done = conn
            .execute(
                "INSERT INTO idempotency (scope, key, fingerprint, outcome, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
                args![scope, key, fingerprint, outcome, now.micros()],
            )
            .await?;
        if done == 0 {
            // Another instance stored this key after our read: re-run, and replay its answer.
            return Err(StoreError::Conflict);
        }
    }
    Ok(answers)
}

pub(crate) fn figure(n: u64) -> i64 {
    // Figures are bounded by STOCK_TOTAL_MAX, far below i64::MAX.
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Applies one job inside the batch. `Err` aborts the whole batch (a database failure or a
/// lost race); a refusal is an `Ok(Outcome::Refused)`.
async fn execute(batch: &mut Batch<'_>, command: &Command) -> Result<Outcome, StoreError> {
    let applied = |entries: Vec<HistoryEntry>| {
        entries
            .into_iter()
            .next()
            .map(|e| Outcome::Applied(Effect::Entry(e)))
            .unwrap_or(Outcome::Refused(Rejection::NotFound))
    };
    Ok(match command {
        Command::Create { product, records } => {
            if batch.stock(product, NO_LOCATION)?.is_some() || batch.managed(product) {
                return Ok(Outcome::Refused(Rejection::AlreadyExists));
            }
            for (location, _) in records {
                if !locations::exists(batch, location).await? {
                    return Ok(Outcome::Refused(Rejection::NotFound));
                }
            }
            let mut first = None;
            for (location, quantity) in records {
                let entry = batch.replace(
                    product,
                    location,
                    Action::Create,
                    quantity.get(),
                    Some(Stock::created(*quantity)),
                );
                first.get_or_insert(entry);
            }
            match first {
                Some(entry) => Outcome::Applied(Effect::Entry(entry)),
                None => Outcome::Refused(Rejection::NotFound),
            }
        }
        Command::Transact {
            product,
            location,
            action,
            quantity,
            order_id,
            reason,
        } => match batch.apply_lines(
            &[(product.clone(), location.clone(), *action, *quantity)],
            order_id.as_deref(),
            reason.as_deref(),
            false,
        )? {
            Ok(entries) => applied(entries),
            Err(rejection) => Outcome::Refused(rejection),
        },
        Command::Delete { product } => {
            let records = batch.records(product);
            if records.is_empty() {
                Outcome::Refused(Rejection::NotFound)
            } else if records.iter().any(|(_, s)| s.allocated() > 0) {
                Outcome::Refused(Rejection::HasAllocations)
            } else {
                let mut first = None;
                for (location, stock) in records {
                    let entry =
                        batch.replace(product, &location, Action::Delete, stock.total(), None);
                    first.get_or_insert(entry);
                }
                first
                    .map(|e| Outcome::Applied(Effect::Entry(e)))
                    .unwrap_or(Outcome::Refused(Rejection::NotFound))
            }
        }
        Command::SetLocations { product, changes } => {
            locations::set_locations(batch, product, changes).await?
        }
        Command::CreateLocation(_) | Command::DeleteLocation { .. } => {
            locations::execute(batch, command).await?
        }
        other => orders::execute(batch, other).await?,
    })
}

/// How an outcome is kept under its idempotency key: a reference to what it made, or the
/// refusal's code.
fn encode(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied(Effect::Entry(entry)) => format!("entry:{}", entry.id),
        Outcome::Applied(Effect::Product(id)) => format!("product:{id}"),
        Outcome::Applied(Effect::Cart(id)) => format!("cart:{id}"),
        Outcome::Applied(Effect::Order(id)) => format!("order:{id}"),
        Outcome::Applied(Effect::Location(id)) => format!("location:{id}"),
        Outcome::Applied(Effect::Stock(id)) => format!("stock:{id}"),
        Outcome::Applied(Effect::Payment {
            order_id,
            payment_id,
        }) => format!("payment:{order_id}/{payment_id}"),
        Outcome::Refused(rejection) => format!("refused:{}", rejection.code()),
    }
}

/// The first answer given under an idempotency key, rebuilt from what was kept.
async fn replay(batch: &mut Batch<'_>, outcome: &str) -> Result<Answer, StoreError> {
    let unreadable = || StoreError::Internal(format!("unreadable stored outcome {outcome:?}"));
    let (kind, id) = outcome.split_once(':').ok_or_else(unreadable)?;
    let effect = match kind {
        "entry" => {
            let pending = batch.entries.iter().find(|e| e.id == id).cloned();
            let entry = match pending {
                Some(entry) => entry,
                None => {
                    let row = batch
                        .fetch_optional(
                            concat!("SELECT ", history_columns!(), " FROM history WHERE id = $1"),
                            args![id],
                        )
                        .await?
                        .ok_or_else(unreadable)?;
                    history_entry(&row)?
                }
            };
            Effect::Entry(entry)
        }
        "product" => Effect::Product(ProductId::parse(id).map_err(|_| unreadable())?),
        "cart" => Effect::Cart(id.to_owned()),
        "order" => Effect::Order(id.to_owned()),
        "location" => Effect::Location(id.to_owned()),
        "stock" => Effect::Stock(ProductId::parse(id).map_err(|_| unreadable())?),
        "payment" => {
            let (order_id, payment_id) = id.split_once('/').ok_or_else(unreadable)?;
            Effect::Payment {
                order_id: order_id.to_owned(),
                payment_id: payment_id.to_owned(),
            }
        }
        "refused" => {
            return Ok(Answer {
                outcome: Outcome::Refused(Rejection::from_code(id).ok_or_else(unreadable)?),
                replayed: true,
            })
        }
        _ => return Err(unreadable()),
    };
    Ok(Answer {
        outcome: Outcome::Applied(effect),
        replayed: true,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sqlx::any::AnyPoolOptions;
    use stockroom_domain::order::{Payment, PaymentMethod, Shipping, Status};
    use stockroom_domain::{Clock, ProductId, Quantity, Timestamp};

    use super::*;
    use crate::testing::{fresh_database, Backend};
    use crate::{OpenOptions, SqlStore, Store};

    struct FixedClock;
    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            Timestamp(1_700_000_000_000_000)
        }
    }

    fn units(n: i64) -> Quantity {
        Quantity::new(n).expect("a valid quantity")
    }

    fn gbp(amount: i64) -> Money {
        Money {
            amount,
            currency: "GBP".into(),
            includes_tax: false,
        }
    }

    /// Every job of one batch sees the order-flow rows that earlier jobs of the batch kept back
    /// (carts, orders, payments), whether it reads them from the batch's copies or with a
    /// statement of its own; and what the batch commits is what the jobs did, in order.
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
        // A writer connection of its own, to run one batch by hand.
        let (mut db, dialect) = match backend {
            Backend::Sqlite => (
                WriteDb::Lite(
                    Box::new(crate::sql::sqlite_writer(&url).expect("a connection")),
                    url.clone(),
                ),
                &crate::dialect::SQLITE,
            ),
            Backend::Postgres => (
                WriteDb::Pool(
                    AnyPoolOptions::new()
                        .max_connections(1)
                        .connect(&url)
                        .await
                        .expect("a connection"),
                ),
                &crate::dialect::POSTGRES,
            ),
        };

        let hot = ProductId::parse("hot").expect("an id");
        let bare = ProductId::parse("bare").expect("an id");
        let line = |n| CartLine {
            product: hot.clone(),
            location: NO_LOCATION.into(),
            quantity: units(n),
            currency: Some("GBP".into()),
        };
        let order = NewOrder {
            id: "order-1".into(),
            cart_id: "cart-1".into(),
            customer: "{}".into(),
            billing_address: "{}".into(),
            shipping_address: "{}".into(),
            items: vec![OrderItem {
                id: "item-1".into(),
                product_id: hot.clone(),
                location: NO_LOCATION.into(),
                name: "Hot".into(),
                sku: "hot".into(),
                quantity: units(3),
                unit_price: gbp(100),
            }],
            total: gbp(300),
        };
        let payment = |id: &str| NewPayment {
            id: id.into(),
            gateway: "manual".into(),
            method: PaymentMethod::Purchase,
            amount: gbp(300),
            lines: vec![Line {
                product: hot.clone(),
                location: NO_LOCATION.into(),
                quantity: units(3),
            }],
            expires_at: Timestamp(0),
        };
        let pay = |id: &str| Command::Pay {
            order_id: "order-1".into(),
            payment: payment(id),
            settled: true,
        };
        let requests: Vec<WriteRequest> = [
            Command::Create {
                product: hot.clone(),
                records: vec![(NO_LOCATION.into(), units(10))],
            },
            // Two adds to one cart (one line, 1 + 2 units) and one to another.
            Command::AddToCart {
                cart_id: "cart-1".into(),
                lines: vec![line(1)],
            },
            Command::AddToCart {
                cart_id: "cart-1".into(),
                lines: vec![line(2)],
            },
            Command::AddToCart {
                cart_id: "cart-2".into(),
                lines: vec![line(4)],
            },
            Command::Checkout(order.clone()),
            pay("payment-1"),
            // Paid already: refused, and nothing of it is written.
            pay("payment-2"),
            // Reads the held payment with a statement of its own: sees payment-1.
            Command::Ship {
                order_id: "order-1".into(),
            },
            // A second order: authorized, then captured after a statement of its own (the
            // capture is numbered after the kept-back authorization, which is written first).
            Command::Checkout(NewOrder {
                id: "order-2".into(),
                items: vec![OrderItem {
                    id: "item-2".into(),
                    ..order.items[0].clone()
                }],
                ..order.clone()
            }),
            Command::Pay {
                order_id: "order-2".into(),
                payment: NewPayment {
                    id: "authorization".into(),
                    method: PaymentMethod::Authorize,
                    ..payment("unused")
                },
                settled: true,
            },
            Command::Capture {
                order_id: "order-2".into(),
                authorization_id: "authorization".into(),
                capture_id: "capture".into(),
            },
            // A cart holding stock with no catalog product (no currency) ...
            Command::Create {
                product: bare.clone(),
                records: vec![(NO_LOCATION.into(), units(10))],
            },
            Command::AddToCart {
                cart_id: "cart-3".into(),
                lines: vec![CartLine {
                    product: bare.clone(),
                    currency: None,
                    ..line(1)
                }],
            },
            // ... whose product then gets a catalog record in euros: a pound line is refused.
            Command::CreateProduct(Product {
                id: bare.clone(),
                sku: "bare".into(),
                name: "Bare".into(),
                price: Money {
                    currency: "EUR".into(),
                    ..gbp(100)
                },
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            }),
            Command::AddToCart {
                cart_id: "cart-3".into(),
                lines: vec![line(1)],
            },
        ]
        .into_iter()
        .map(WriteRequest::new)
        .collect();
        let batch: Vec<&WriteRequest> = requests.iter().collect();
        let answers = commit(&mut db, dialect, &*clock, &batch).await;
        let outcomes: Vec<bool> = answers
            .into_iter()
            .map(|a| matches!(a.expect("an answer").outcome, Outcome::Applied(_)))
            .collect();
        assert_eq!(
            outcomes,
            [
                true, true, true, true, true, true, false, true, // order-1
                true, true, true, // order-2
                true, true, true, false, // cart-3
            ],
            "which jobs applied"
        );

        let cart = store.cart("cart-1").await.expect("a read").expect("cart-1");
        assert_eq!(cart.items.len(), 1);
        assert_eq!(cart.items[0].quantity, 3);
        let cart = store.cart("cart-2").await.expect("a read").expect("cart-2");
        assert_eq!(cart.items[0].quantity, 4);
        let order = store
            .order("order-1")
            .await
            .expect("a read")
            .expect("order-1");
        assert_eq!(order.state.status, Status::Complete);
        assert_eq!(order.state.payment, Payment::Paid);
        assert_eq!(order.state.shipping, Shipping::Fulfilled);
        assert_eq!(order.items.len(), 1);
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
        let cart = store.cart("cart-3").await.expect("a read").expect("cart-3");
        assert_eq!(cart.items.len(), 1, "the pound line was refused");
        let stock = store.stock(&hot).await.expect("a read").expect("stock");
        // 3 shipped for order-1; 3 held by order-2's authorization.
        assert_eq!((stock.total, stock.allocated), (7, 3));
        let report = store.verify().await.expect("a read");
        assert!(report.problems.is_empty(), "{report:?}");
    }
}
