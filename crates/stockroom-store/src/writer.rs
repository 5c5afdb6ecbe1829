//! The group-commit writer: the one path by which stock changes.
//!
//! Request handlers send a [`Job`] down a bounded channel and wait for its answer. One task per
//! process takes every job that is waiting (up to a batch limit), and for the whole batch:
//!
//! 1. begins a write transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock up front);
//! 2. reads the idempotency records of the batch's keys;
//! 3. reads the stock rows the batch touches in product-id order, locking them on PostgreSQL
//!    (`FOR UPDATE`), so that no other writer — in this process or another — can change them
//!    until this transaction ends;
//! 4. applies each job in turn with the domain's arithmetic to an in-memory copy of those rows;
//!    a refused job leaves the copy as it was;
//! 5. writes the changed rows, one history entry per applied job and the idempotency records;
//! 6. commits — one fsync for the batch — and only then answers every job.
//!
//! The in-memory copy lives only inside the transaction that holds the rows' locks, so it can
//! never disagree with the database. If another writer wins a race the batch cannot see coming
//! (a row created or an idempotency key stored by another instance between steps 3 and 5) the
//! transaction is rolled back and the whole batch re-run; nothing was answered yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Row};
use stockroom_domain::{Action, Clock, ProductId, Stock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::model::*;
use crate::sql::{history_entry, ids_json, stock_record, HISTORY_COLUMNS};

/// How often a batch is re-run after losing a race to another writer before giving up.
const BATCH_ATTEMPTS_MAX: u32 = 8;

/// The answer to one job: its outcome, or why it has none.
type Reply = Result<Answer, StoreError>;

pub struct Job {
    pub request: WriteRequest,
    pub reply: oneshot::Sender<Reply>,
}

pub(crate) async fn run(
    pool: AnyPool,
    dialect: &'static Dialect,
    clock: Arc<dyn Clock>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let requests: Vec<&WriteRequest> = jobs.iter().map(|j| &j.request).collect();
        let answers = commit(&pool, dialect, &*clock, &requests).await;
        for (job, answer) in jobs.drain(..).zip(answers) {
            // The requester may have gone away; its write stands all the same.
            let _ = job.reply.send(answer);
        }
    }
    pool.close().await;
}

/// Commits a batch, re-running it after a lost race; if it fails for another reason, each job
/// is tried alone so that one bad job cannot fail its neighbours.
async fn commit(
    pool: &AnyPool,
    dialect: &Dialect,
    clock: &dyn Clock,
    requests: &[&WriteRequest],
) -> Vec<Reply> {
    match commit_with_retries(pool, dialect, clock, requests).await {
        Ok(answers) => answers,
        Err(e) if requests.len() == 1 => vec![Err(e)],
        Err(StoreError::Unavailable(e)) => requests
            .iter()
            .map(|_| Err(StoreError::Unavailable(e.clone())))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, size = requests.len(), "batch failed; trying its jobs one by one");
            let mut answers = Vec::with_capacity(requests.len());
            for request in requests {
                answers.push(
                    commit_with_retries(pool, dialect, clock, &[*request])
                        .await
                        .and_then(|mut a| a.remove(0)),
                );
            }
            answers
        }
    }
}

async fn commit_with_retries(
    pool: &AnyPool,
    dialect: &Dialect,
    clock: &dyn Clock,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match commit_once(pool, dialect, clock.now(), requests).await {
            Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, "batch lost a race; re-running it");
            }
            Err(StoreError::Conflict) => {
                return Err(StoreError::Unavailable(
                    "too much contention between writers".into(),
                ))
            }
            other => return other,
        }
    }
}

// Boxed: the compiler cannot otherwise prove this future `Send` for every lifetime it borrows
// (rust-lang/rust#96865, met through sqlx's higher-ranked `Executor` bounds).
fn commit_once<'a>(
    pool: &'a AnyPool,
    dialect: &'a Dialect,
    now: Timestamp,
    requests: &'a [&'a WriteRequest],
) -> BoxFuture<'a, Result<Vec<Reply>, StoreError>> {
    Box::pin(commit_once_inner(pool, dialect, now, requests))
}

async fn commit_once_inner(
    pool: &AnyPool,
    dialect: &Dialect,
    now: Timestamp,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query(dialect.begin_write).execute(&mut *conn).await?;
    match apply_and_write(&mut conn, dialect, now, requests).await {
        Ok(answers) => match sqlx::query("COMMIT").execute(&mut *conn).await {
            Ok(_) => Ok(answers),
            Err(e) => {
                rollback(conn).await;
                Err(e.into())
            }
        },
        Err(e) => {
            rollback(conn).await;
            Err(e)
        }
    }
}

async fn rollback(mut conn: PoolConnection<Any>) {
    if let Err(e) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
        // The connection's state is unknown: never hand it to the next batch.
        tracing::warn!(error = %e, "rollback failed; closing the connection");
        drop(conn.detach());
    }
}

/// A stock row as the batch sees it: as read, and as the batch has left it so far.
struct Slot {
    read: Option<StockRecord>,
    current: Option<Stock>,
}

/// What one applied job writes.
struct Change {
    entry: HistoryEntry,
}

fn apply_and_write<'a>(
    conn: &'a mut AnyConnection,
    dialect: &'a Dialect,
    now: Timestamp,
    requests: &'a [&'a WriteRequest],
) -> BoxFuture<'a, Result<Vec<Reply>, StoreError>> {
    Box::pin(apply_and_write_inner(conn, dialect, now, requests))
}

async fn apply_and_write_inner(
    conn: &mut AnyConnection,
    dialect: &Dialect,
    now: Timestamp,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    // 2. Stored answers for the batch's idempotency keys.
    let mut stored: HashMap<(&str, &str), (String, String)> = HashMap::new();
    for key in requests.iter().filter_map(|r| r.idempotency.as_ref()) {
        let row = sqlx::query(
            "SELECT fingerprint, outcome FROM idempotency WHERE scope = $1 AND key = $2",
        )
        .bind(key.scope.clone())
        .bind(key.key.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = row {
            stored.insert(
                (&key.scope, &key.key),
                (row.try_get("fingerprint")?, row.try_get("outcome")?),
            );
        }
    }

    // 3. The rows the batch touches, locked in product-id order.
    let mut slots: BTreeMap<ProductId, Slot> = BTreeMap::new();
    for r in requests {
        slots.entry(r.command.product().clone()).or_insert(Slot {
            read: None,
            current: None,
        });
    }
    let ids: Vec<&ProductId> = slots.keys().collect();
    let rows = sqlx::query(dialect.lock_stocks)
        .bind(ids_json(&ids))
        .fetch_all(&mut *conn)
        .await?;
    for row in &rows {
        let record = stock_record(row)?;
        if let Some(slot) = slots.get_mut(&record.product_id) {
            slot.current = Some(record.stock);
            slot.read = Some(record);
        }
    }

    // 4. Apply each job in order to the in-memory rows.
    let mut answers: Vec<Reply> = Vec::with_capacity(requests.len());
    let mut changes: Vec<Change> = Vec::new();
    let mut fresh_keys: BTreeMap<(&str, &str), (&str, String)> = BTreeMap::new();
    for r in requests {
        if let Some(key) = &r.idempotency {
            let id = (key.scope.as_str(), key.key.as_str());
            let earlier = stored
                .get(&id)
                .map(|(f, o)| (f.as_str(), o.clone()))
                .or_else(|| fresh_keys.get(&id).map(|(f, o)| (*f, o.clone())));
            if let Some((fingerprint, outcome)) = earlier {
                if fingerprint != key.fingerprint {
                    answers.push(Err(StoreError::IdempotencyMismatch));
                } else {
                    answers.push(Ok(replay(conn, &outcome, &changes).await?));
                }
                continue;
            }
        }
        let outcome = match apply(&mut slots, r, now) {
            Ok(entry) => {
                changes.push(Change {
                    entry: entry.clone(),
                });
                Outcome::Applied(entry)
            }
            Err(rejection) => Outcome::Refused(rejection),
        };
        if let Some(key) = &r.idempotency {
            fresh_keys.insert(
                (key.scope.as_str(), key.key.as_str()),
                (key.fingerprint.as_str(), encode(&outcome)),
            );
        }
        answers.push(Ok(Answer {
            outcome,
            replayed: false,
        }));
    }

    // 5. Write what changed.
    for (product, slot) in &slots {
        match (&slot.read, slot.current) {
            (None, None) => {}
            (None, Some(stock)) => {
                let done = sqlx::query(
                    "INSERT INTO stock (product_id, total, allocated, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $4) ON CONFLICT (product_id) DO NOTHING",
                )
                .bind(product.as_str().to_owned())
                .bind(figure(stock.total()))
                .bind(figure(stock.allocated()))
                .bind(now.micros())
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    // Another instance created it after our read: re-run the batch.
                    return Err(StoreError::Conflict);
                }
            }
            (Some(_), None) => {
                sqlx::query("DELETE FROM stock WHERE product_id = $1")
                    .bind(product.as_str().to_owned())
                    .execute(&mut *conn)
                    .await?;
            }
            (Some(read), Some(stock)) if read.stock != stock => {
                sqlx::query(
                    "UPDATE stock SET total = $2, allocated = $3, updated_at = $4 \
                     WHERE product_id = $1",
                )
                .bind(product.as_str().to_owned())
                .bind(figure(stock.total()))
                .bind(figure(stock.allocated()))
                .bind(now.micros())
                .execute(&mut *conn)
                .await?;
            }
            (Some(_), Some(_)) => {}
        }
    }
    for Change { entry } in &changes {
        sqlx::query(
            "INSERT INTO history (id, product_id, action, quantity, total, allocated, \
             order_id, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(entry.id.clone())
        .bind(entry.product_id.as_str().to_owned())
        .bind(entry.action.as_str())
        .bind(figure(entry.quantity))
        .bind(figure(entry.after.total()))
        .bind(figure(entry.after.allocated()))
        .bind(entry.order_id.clone())
        .bind(entry.reason.clone())
        .bind(entry.created_at.micros())
        .execute(&mut *conn)
        .await?;
    }
    // In key order, so that two writers storing the same keys wait for each other in one order.
    for ((scope, key), (fingerprint, outcome)) in &fresh_keys {
        let done = sqlx::query(
            "INSERT INTO idempotency (scope, key, fingerprint, outcome, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(scope.to_string())
        .bind(key.to_string())
        .bind(fingerprint.to_string())
        .bind(outcome.clone())
        .bind(now.micros())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            // Another instance stored this key after our read: re-run, and replay its answer.
            return Err(StoreError::Conflict);
        }
    }
    Ok(answers)
}

fn figure(n: u64) -> i64 {
    // Figures are bounded by STOCK_TOTAL_MAX, far below i64::MAX.
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Applies one job to the batch's rows, returning its history entry or why it was refused.
fn apply(
    slots: &mut BTreeMap<ProductId, Slot>,
    request: &WriteRequest,
    now: Timestamp,
) -> Result<HistoryEntry, Rejection> {
    let product = request.command.product();
    let slot = slots.get_mut(product).ok_or(Rejection::NotFound)?;
    let (action, quantity, after, order_id, reason) = match &request.command {
        Command::Create { quantity, .. } => {
            if slot.current.is_some() {
                return Err(Rejection::AlreadyExists);
            }
            let stock = Stock::created(*quantity);
            (Action::Create, quantity.get(), Some(stock), None, None)
        }
        Command::Transact {
            action,
            quantity,
            order_id,
            reason,
            ..
        } => {
            let stock = slot.current.ok_or(Rejection::NotFound)?;
            let after = stock.apply(*action, *quantity).map_err(Rejection::Stock)?;
            (
                *action,
                quantity.get(),
                Some(after),
                order_id.clone(),
                reason.clone(),
            )
        }
        Command::Delete { .. } => {
            let stock = slot.current.ok_or(Rejection::NotFound)?;
            if stock.allocated() > 0 {
                return Err(Rejection::HasAllocations);
            }
            (Action::Delete, stock.total(), None, None, None)
        }
    };
    slot.current = after;
    Ok(HistoryEntry {
        id: uuid::Uuid::new_v4().to_string(),
        product_id: product.clone(),
        action,
        quantity,
        after: after.unwrap_or_default(),
        order_id,
        reason,
        created_at: now,
    })
}

/// How an outcome is kept under its idempotency key: a reference to the history entry, or the
/// refusal's code.
fn encode(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied(entry) => format!("applied:{}", entry.id),
        Outcome::Refused(rejection) => format!("refused:{}", rejection.code()),
    }
}

/// The first answer given under an idempotency key, rebuilt from what was kept.
fn replay<'a>(
    conn: &'a mut AnyConnection,
    outcome: &'a str,
    pending: &'a [Change],
) -> BoxFuture<'a, Result<Answer, StoreError>> {
    Box::pin(replay_inner(conn, outcome, pending))
}

async fn replay_inner(
    conn: &mut AnyConnection,
    outcome: &str,
    pending: &[Change],
) -> Result<Answer, StoreError> {
    let outcome = if let Some(id) = outcome.strip_prefix("applied:") {
        let entry = match pending.iter().find(|c| c.entry.id == id) {
            Some(change) => change.entry.clone(),
            None => {
                let row = sqlx::query(&format!(
                    "SELECT {HISTORY_COLUMNS} FROM history WHERE id = $1"
                ))
                .bind(id.to_owned())
                .fetch_one(&mut *conn)
                .await?;
                history_entry(&row)?
            }
        };
        Outcome::Applied(entry)
    } else if let Some(rejection) = outcome
        .strip_prefix("refused:")
        .and_then(Rejection::from_code)
    {
        Outcome::Refused(rejection)
    } else {
        return Err(StoreError::Internal(format!(
            "unreadable stored outcome {outcome:?}"
        )));
    };
    Ok(Answer {
        outcome,
        replayed: true,
    })
}
