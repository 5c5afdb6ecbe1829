//! The group-commit writer: the one path by which stock changes.
//!
//! Request handlers send a [`Job`] down the bounded channel of a writer *lane* and wait for its
//! answer. A lane takes every job waiting in its channel (up to a batch limit) and runs them as
//! one batch ([`crate::batch`]) in one database transaction on a connection of its own,
//! retrying a batch that lost a race, and answers every job only after the commit. A job's
//! lane follows from its command ([`crate::Command::lane_key`]): a flash sale's writes share a
//! lane and gather into large batches, writes to different products spread over the lanes.
//!
//! SQLite has one lane: it has one write lock, and the lane runs its batch on its own thread
//! through its own connection. PostgreSQL has several (`OpenOptions::write_lanes`): batches
//! overlap — one waits for its commit's flush while the next takes its locks — and the
//! database's row locks, taken by every batch in one global order, keep them correct and free
//! of deadlocks across lanes and instances.

use std::sync::Arc;
use std::time::Duration;

use stockroom_domain::Clock;
use tokio::sync::{mpsc, oneshot};

use crate::batch::{self, Reply};
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{open_sqlite, Conn, Stmt};
use crate::model::WriteRequest;

/// How often a batch is re-run after losing a race to another writer before giving up.
const BATCH_ATTEMPTS_MAX: u32 = 8;

pub struct Job {
    pub request: WriteRequest,
    pub reply: oneshot::Sender<Reply>,
}

/// Where a lane commits: its SQLite connection (and the file it is reopened from), or the
/// PostgreSQL pool its connections come from.
pub(crate) enum WriteDb {
    Lite(Box<rusqlite::Connection>, String),
    Pg(deadpool_postgres::Pool),
}

/// What every lane shares.
pub(crate) struct Lane {
    pub dialect: &'static Dialect,
    pub clock: Arc<dyn Clock>,
    pub batch_max: usize,
}

/// The lane of a key among `lanes` (a stable hash: the same key, the same lane).
pub(crate) fn lane_of(key: &str, lanes: usize) -> usize {
    // FNV-1a: small, and the same in every run and build.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(hash % lanes.max(1) as u64).unwrap_or(0)
}

/// Runs one lane until its queue closes.
pub(crate) async fn run_lane(mut db: WriteDb, lane: Arc<Lane>, mut queue: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(lane.batch_max);
    while queue.recv_many(&mut jobs, lane.batch_max).await > 0 {
        let requests: Vec<&WriteRequest> = jobs.iter().map(|j| &j.request).collect();
        let answers = commit(&mut db, &lane, &requests).await;
        for (job, answer) in jobs.drain(..).zip(answers) {
            // The requester may have gone away; its write stands all the same.
            let _ = job.reply.send(answer);
        }
    }
}

/// Commits a batch, re-running it after a lost race; if it fails for another reason, each job
/// is tried alone so that one bad job cannot fail its neighbours.
async fn commit(db: &mut WriteDb, lane: &Lane, requests: &[&WriteRequest]) -> Vec<Reply> {
    match commit_with_retries(db, lane, requests).await {
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
                    commit_with_retries(db, lane, &[*request])
                        .await
                        .map_err(contention_is_unavailable)
                        .and_then(|mut a| a.remove(0)),
                );
            }
            answers
        }
    }
}

/// A job that still loses races after every attempt is answered "try again".
fn contention_is_unavailable(e: StoreError) -> StoreError {
    match e {
        StoreError::RaceLost(cause) => {
            StoreError::Unavailable(format!("too much contention between writers ({cause})"))
        }
        other => other,
    }
}

async fn commit_with_retries(
    db: &mut WriteDb,
    lane: &Lane,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match transact(db, lane, requests).await {
            Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, "batch lost a race; re-running it");
                // Let the other writer finish before running into it again.
                tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
            }
            // Still losing after every attempt (or one job always loses): the caller tries
            // the batch's jobs one by one, so one such job cannot fail its neighbours.
            other => return other,
        }
    }
}

/// One batch in one transaction on the lane's connection; rolled back if it fails.
async fn transact(
    db: &mut WriteDb,
    lane: &Lane,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let now = lane.clock.now();
    let ends = || {
        (
            Stmt::control(lane.dialect.begin_write),
            Stmt::control("COMMIT"),
        )
    };
    match db {
        WriteDb::Pg(pool) => {
            let client = pool.get().await?;
            let result = batch::run(Conn::Pg(&client), lane.dialect, now, ends(), requests).await;
            if result.is_err() {
                // After a failed COMMIT PostgreSQL has rolled back already (then this only
                // warns); a connection whose state is unknown is never handed on.
                if let Err(e) = client.batch_execute("ROLLBACK").await {
                    tracing::warn!(error = %e, "rollback failed; dropping the connection");
                    drop(deadpool_postgres::Object::take(client));
                }
            }
            result
        }
        WriteDb::Lite(conn, path) => {
            let result = batch::run(Conn::Lite(conn), lane.dialect, now, ends(), requests).await;
            if result.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            // What matters is whether a transaction is still open, holding the write lock.
            if !conn.is_autocommit() {
                tracing::error!(
                    "the writer's SQLite connection is left in a transaction; reopening it"
                );
                match open_sqlite(path, false) {
                    Ok(fresh) => **conn = fresh,
                    Err(e) => tracing::error!(error = %e, "cannot reopen the writer's connection"),
                }
            }
            result
        }
    }
}
