//! Events (issue 14): Elastic Path's integrations and the transactional outbox of their jobs.
//!
//! **The outbox is written by the database, not by this module.** Triggers (migration V6) on
//! the rows the writer's batch writes — `history` (`stock-transaction.created`), `orders`
//! (`order.*`), `payments` (`transaction.*`) and `stock` (the low-stock alerts) — insert one
//! row into `integration_jobs` per enabled integration that observes the event, inside the
//! statement that makes the change, so inside the batch's transaction: a committed change has
//! its jobs, a rolled-back one has none, and the writer's code does not change at all. With no
//! integration observing an event, a trigger writes nothing.
//!
//! This module holds the types and the [`EventStore`] trait; `events_sql.rs` implements it with
//! plain SQL for both databases on the read side (never the writer).

use async_trait::async_trait;
use stockroom_domain::{ProductId, Timestamp};

use crate::error::StoreError;
use crate::model::HistoryEntry;

/// Most integrations a store may have.
pub const INTEGRATIONS_MAX: u64 = 50;

/// How an integration delivers its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrationType {
    /// An HTTP POST to `configuration.url` (Elastic Path's `webhook`).
    Webhook,
    /// A NATS JetStream publish to `configuration.subject` (beyond Elastic Path).
    Nats,
}

impl IntegrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::Webhook => "webhook",
            IntegrationType::Nats => "nats",
        }
    }

    pub fn parse(raw: &str) -> Option<IntegrationType> {
        match raw {
            "webhook" => Some(IntegrationType::Webhook),
            "nats" => Some(IntegrationType::Nats),
            _ => None,
        }
    }
}

/// An integration: which events it observes and where it delivers them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: bool,
    pub integration_type: IntegrationType,
    /// Observable event names (checked by the HTTP layer against the ones Stockroom emits).
    pub observes: Vec<String>,
    /// The configuration object, as JSON text (its shape depends on `integration_type`).
    pub configuration: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Where a job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Delivered,
    /// Every attempt failed: kept (until pruned) for the logs.
    Failed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Delivered => "delivered",
            JobStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(raw: &str) -> Result<JobStatus, StoreError> {
        match raw {
            "pending" => Ok(JobStatus::Pending),
            "delivered" => Ok(JobStatus::Delivered),
            "failed" => Ok(JobStatus::Failed),
            other => Err(StoreError::Internal(format!(
                "unknown job status {other:?}"
            ))),
        }
    }
}

/// One event for one integration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The outbox row's number: the job's identity for good (the event id derives from it).
    pub seq: i64,
    pub integration_id: String,
    /// The observable event, e.g. `stock-transaction.created`.
    pub triggered_by: String,
    /// The history entry, order, payment transaction or product the event is about.
    pub resource_id: String,
    /// What orders its delivery: `product:<id>` or `order:<id>`.
    pub stream: String,
    /// What the event saw of a row that changes later (`status/payment/shipping` of an order,
    /// a transaction's status, `location/available/threshold` of a low-stock alert).
    pub snapshot: String,
    pub created_at: Timestamp,
    pub status: JobStatus,
    /// Attempts started (a claim counts one).
    pub attempts: u32,
}

/// One delivery attempt, as the logs show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub succeeded: bool,
    pub status_code: Option<u16>,
    /// The receiver's answer (cut short).
    pub body: String,
    pub error_detail: String,
}

/// A logged attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationLog {
    pub id: String,
    pub job_seq: i64,
    pub integration_id: String,
    pub attempt: u32,
    pub outcome: Attempt,
    pub created_at: Timestamp,
}

/// What becomes of a job after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Delivered,
    /// Try again once this time has come.
    RetryAt(Timestamp),
    /// No more attempts.
    Failed,
}

/// An attempted job, what the attempt gave and what becomes of the job.
#[derive(Clone, Debug)]
pub struct Finished<'a> {
    pub job: &'a Job,
    pub attempt: Attempt,
    pub after: After,
}

/// Longest receiver answer kept in a log.
pub const LOG_BODY_MAX: usize = 1024;

#[async_trait]
pub trait EventStore: Send + Sync {
    /// Creates an integration, unless the store has [`INTEGRATIONS_MAX`] already (`false`).
    async fn create_integration(&self, integration: &Integration) -> Result<bool, StoreError>;
    async fn integrations(&self) -> Result<Vec<Integration>, StoreError>;
    async fn integration(&self, id: &str) -> Result<Option<Integration>, StoreError>;
    /// Replaces an integration's fields (not its id or creation time); `false` if it is gone.
    async fn update_integration(&self, integration: &Integration) -> Result<bool, StoreError>;
    /// Removes an integration with its jobs and logs; `false` if there was none.
    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError>;
    /// An integration's jobs, newest first.
    async fn integration_jobs(&self, integration: &str, limit: u64)
        -> Result<Vec<Job>, StoreError>;
    /// Logged attempts, newest first: of every integration, of one, or of one of its jobs.
    async fn integration_logs(
        &self,
        integration: Option<&str>,
        job_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<IntegrationLog>, StoreError>;
    /// Leases up to `max` due jobs to `owner` until `lease_until`, counting an attempt for
    /// each: only the oldest pending job of each (integration, stream), so that a product's or
    /// an order's events leave in commit order, and none leased to someone else.
    async fn claim_jobs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max: u64,
    ) -> Result<Vec<Job>, StoreError> {
        self.claim_runs(owner, now, lease_until, max, 1).await
    }
    /// Like [`EventStore::claim_jobs`], but leases each free stream's head together with up to
    /// `per_stream - 1` of the pending jobs that follow it in its stream (a run: consecutive,
    /// in seq order, all under the one lease), at most `max` jobs in all. The holder delivers a
    /// run in order and, when it stops early, gives the rest back with
    /// [`EventStore::release_jobs`].
    async fn claim_runs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max: u64,
        per_stream: u64,
    ) -> Result<Vec<Job>, StoreError>;
    /// Gives back jobs `owner` leased and did not attempt: the lease is cleared and the
    /// attempt the claim counted is undone. Returns how many were given back.
    async fn release_jobs(&self, jobs: &[Job], owner: &str) -> Result<u64, StoreError>;
    /// Records an attempt of a job `owner` leased and what becomes of the job. `false` if the
    /// lease was lost meanwhile (the attempt is logged all the same).
    async fn finish_job(
        &self,
        job: &Job,
        owner: &str,
        attempt: &Attempt,
        after: After,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = Finished {
            job,
            attempt: attempt.clone(),
            after,
        };
        Ok(self.finish_jobs(owner, &[done], now).await? == 1)
    }
    /// Records the attempts of jobs `owner` leased (a run, delivered in order) and what becomes
    /// of each, in one transaction: their logs with one statement, their states with another.
    /// Returns how many jobs were still leased to `owner` (the others' attempts are logged all
    /// the same).
    async fn finish_jobs(
        &self,
        owner: &str,
        finished: &[Finished<'_>],
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Removes jobs finished (delivered or failed) before `before`, with their logs.
    async fn prune_jobs(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// A history entry by its id (what `stock-transaction.created` reports).
    async fn history_entry_by_id(&self, id: &str) -> Result<Option<HistoryEntry>, StoreError>;
    /// Sets (or, with `None`, removes) a record's low-stock threshold.
    async fn set_stock_threshold(
        &self,
        product: &ProductId,
        location: &str,
        threshold: Option<u64>,
    ) -> Result<(), StoreError>;
}
