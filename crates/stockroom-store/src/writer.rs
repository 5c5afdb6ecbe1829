//! The group-commit writer: the one path by which stock changes.
//!
//! Request handlers send a [`Job`] down the bounded channel of a writer *lane* and wait for its
//! answer. A lane takes every job waiting in its channel (up to a batch limit) and runs them as
//! one batch ([`crate::batch`]) in one database transaction on a connection of its own,
//! retrying a batch that lost a race, and answers every job only after the commit. A job's
//! lane follows from its command ([`crate::Command::lane`]): a flash sale's writes share a lane
//! and gather into large batches, writes to different products spread over the lanes.
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

use crate::batch::{self, Joiners, NoJoiners, Reply};
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{discard, open_sqlite, within, Conn, Stmt};
use crate::model::{LaneKey, WriteRequest};

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
    /// PostgreSQL: the longest a batch may take on its connection, `COMMIT` included; past it
    /// the connection is dropped and the batch's requests answered unavailable (503), their
    /// outcome unknown.
    pub deadline: Option<Duration>,
}

/// The lane of a command's key among `lanes`: payments on the first, carts on the second,
/// products by a stable hash (the same product, the same lane).
pub(crate) fn lane_of(key: LaneKey<'_>, lanes: usize) -> usize {
    let lanes = lanes.max(1);
    match key {
        LaneKey::Orders => 0,
        LaneKey::Carts => 1 % lanes,
        LaneKey::Product(id) => {
            // FNV-1a: small, and the same in every run and build.
            let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            usize::try_from(hash % lanes as u64).unwrap_or(0)
        }
    }
}

/// Runs one lane until its queue closes.
pub(crate) async fn run_lane(mut db: WriteDb, lane: Arc<Lane>, mut queue: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(lane.batch_max);
    let mut carried: Vec<Job> = Vec::new();
    loop {
        let n = carried.len().min(lane.batch_max);
        jobs.extend(carried.drain(..n));
        if jobs.is_empty() && queue.recv_many(&mut jobs, lane.batch_max).await == 0 {
            break;
        }
        // A requester that has gone (it stopped waiting: its deadline passed, its client
        // left) was not answered: its write is not started now that no one would hear of it.
        jobs.retain(|job| !job.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        metrics::gauge!("stockroom_writer_queue_depth").set(queue.len() as f64);
        let started = std::time::Instant::now();
        let mut waiting = Waiting {
            queue: &mut queue,
            joined: Vec::new(),
            carried: &mut carried,
            room: lane.batch_max.saturating_sub(jobs.len()),
        };
        let answers = commit(&mut db, &lane, &jobs, &mut waiting).await;
        let joined = waiting.joined;
        metrics::histogram!("stockroom_writer_batch_size")
            .record((jobs.len() + joined.len()) as f64);
        metrics::histogram!("stockroom_writer_batch_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        for (job, answer) in jobs.drain(..).chain(joined).zip(answers) {
            // The requester may have gone away; its write stands all the same.
            let _ = job.reply.send(answer);
        }
    }
}

/// The jobs waiting in a lane's queue while its batch takes its locks.
struct Waiting<'q> {
    queue: &'q mut mpsc::Receiver<Job>,
    /// Jobs that joined the batch, answered after its own.
    joined: Vec<Job>,
    /// Jobs the batch did not cover: they open the lane's next batch.
    carried: &'q mut Vec<Job>,
    /// Most jobs that may still join.
    room: usize,
}

impl Joiners for Waiting<'_> {
    fn take(&mut self, covers: &dyn Fn(&WriteRequest) -> bool) -> Vec<WriteRequest> {
        let mut taken = Vec::new();
        while self.joined.len() < self.room {
            let Ok(job) = self.queue.try_recv() else {
                break;
            };
            if job.reply.is_closed() {
                continue; // its requester has gone: not started (see `run_lane`)
            }
            if covers(&job.request) {
                taken.push(job.request.clone());
                self.joined.push(job);
            } else {
                self.carried.push(job);
            }
        }
        taken
    }
}

fn requests_of<'j>(jobs: &'j [Job], joined: &'j [Job]) -> Vec<&'j WriteRequest> {
    jobs.iter().chain(joined).map(|j| &j.request).collect()
}

/// Commits a batch (the lane's jobs, and those that join it), re-running it after a lost race;
/// if it fails for another reason, each job is tried alone so that one bad job cannot fail its
/// neighbours. The answers are the jobs', then the joiners'.
async fn commit(
    db: &mut WriteDb,
    lane: &Lane,
    jobs: &[Job],
    waiting: &mut Waiting<'_>,
) -> Vec<Reply> {
    let result = commit_with_retries(db, lane, jobs, waiting).await;
    let requests = requests_of(jobs, &waiting.joined);
    match result {
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
                    retried(db, lane, &[request])
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

/// The first attempt takes in late joiners; a re-run runs the same jobs again.
async fn commit_with_retries(
    db: &mut WriteDb,
    lane: &Lane,
    jobs: &[Job],
    waiting: &mut Waiting<'_>,
) -> Result<Vec<Reply>, StoreError> {
    match transact(db, lane, &requests_of(jobs, &[]), waiting).await {
        Err(e) if e.is_retryable() => {
            tracing::debug!(error = %e, "batch lost a race; re-running it");
            backoff(1).await;
            retried(db, lane, &requests_of(jobs, &waiting.joined)).await
        }
        other => other,
    }
}

/// Runs the requests as a batch, re-running it after each lost race up to
/// [`BATCH_ATTEMPTS_MAX`] times in all.
async fn retried(
    db: &mut WriteDb,
    lane: &Lane,
    requests: &[&WriteRequest],
) -> Result<Vec<Reply>, StoreError> {
    let mut attempt = 1;
    loop {
        attempt += 1;
        match transact(db, lane, requests, &mut NoJoiners).await {
            Err(e) if e.is_retryable() && attempt < BATCH_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, "batch lost a race; re-running it");
                backoff(attempt).await;
            }
            // Still losing after every attempt (or one job always loses): the caller tries
            // the batch's jobs one by one, so one such job cannot fail its neighbours.
            other => return other,
        }
    }
}

/// Lets the other writer finish before running into it again.
async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(u64::from(attempt))).await;
}

/// One batch in one transaction on the lane's connection; rolled back if it fails.
async fn transact(
    db: &mut WriteDb,
    lane: &Lane,
    requests: &[&WriteRequest],
    joiners: &mut dyn Joiners,
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
            let began = std::time::Instant::now();
            let client = pool.get().await?;
            metrics::histogram!("stockroom_db_pool_wait_seconds", "pool" => "writer")
                .record(began.elapsed().as_secs_f64());
            let run = batch::run(
                Conn::Pg(&client),
                lane.dialect,
                now,
                ends(),
                requests,
                joiners,
            );
            let result = match lane.deadline {
                Some(deadline) => within(deadline, run).await,
                None => run.await,
            };
            match &result {
                Ok(_) => {}
                // The connection broke, or the batch got no answer in time (a stalled path, a
                // lock or a synchronous standby that never came): its state is unknown — the
                // COMMIT may have happened — so it is closed, never rolled back and reused.
                // The server ends the session's transaction itself (`idle_in_transaction_
                // session_timeout`, `statement_timeout`) if the close does not reach it.
                Err(StoreError::Unavailable(cause)) => {
                    tracing::warn!(%cause, "write batch failed on its connection; dropping it");
                    discard(pool, client, began);
                }
                // The server answered with an error: the transaction is aborted (after a failed
                // COMMIT it is rolled back already, and this only warns).
                Err(_) => {
                    let rollback = async { Ok(client.batch_execute("ROLLBACK").await?) };
                    let rolled_back = match lane.deadline {
                        Some(deadline) => within(deadline, rollback).await,
                        None => rollback.await,
                    };
                    if let Err(e) = rolled_back {
                        tracing::warn!(error = %e, "rollback failed; dropping the connection");
                        drop(deadpool_postgres::Object::take(client));
                    }
                }
            }
            result
        }
        WriteDb::Lite(conn, path) => {
            let result = batch::run(
                Conn::Lite(conn),
                lane.dialect,
                now,
                ends(),
                requests,
                joiners,
            )
            .await;
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
