//! The [`EventStore`] on SQL, for both databases, on the read side (never the writer): the
//! integrations' CRUD, the dispatcher's claim (a lease, taken by one `UPDATE … RETURNING`,
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL so that instances claiming together skip each other's
//! rows), the outcome of an attempt with its log, the logs and jobs Elastic Path shows, the
//! pruning of finished jobs, and the low-stock thresholds. The outbox itself is written by the
//! database's triggers (see `events.rs`).

use async_trait::async_trait;
use stockroom_domain::{ProductId, Timestamp};

use crate::batch_rows::rows_json;
use crate::dialect::Kind;
use crate::error::StoreError;
use crate::events::*;
use crate::exec::{args, Row, Stmt};
use crate::model::HistoryEntry;
use crate::rows::{history_columns, history_entry};
use crate::store::SqlStore;

/// A log row of [`EventStore::finish_jobs`]'s bulk insert.
#[derive(serde::Serialize)]
struct LogRow<'a> {
    id: String,
    job_seq: i64,
    integration_id: &'a str,
    attempt: i64,
    succeeded: i64,
    status_code: Option<i64>,
    body: String,
    error_detail: String,
}

/// A job's new state in [`EventStore::finish_jobs`]'s bulk update.
#[derive(serde::Serialize)]
struct StateRow {
    seq: i64,
    status: &'static str,
    next_attempt_at: i64,
    finished_at: Option<i64>,
}

const INTEGRATION_COLUMNS: &str = "id, name, description, enabled, integration_type, observes, \
     configuration, created_at, updated_at";
const JOB_COLUMNS: &str =
    "seq, integration_id, triggered_by, resource_id, stream, snapshot, created_at, status, attempts";

/// `observes` as the triggers match it: `,a,b,`.
fn observes_column(observes: &[String]) -> String {
    format!(",{},", observes.join(","))
}

fn integration(row: &Row) -> Result<Integration, StoreError> {
    let kind: String = row.col("integration_type")?;
    let observes: String = row.col("observes")?;
    Ok(Integration {
        id: row.col("id")?,
        name: row.col("name")?,
        description: row.col("description")?,
        enabled: row.col::<i64>("enabled")? == 1,
        integration_type: IntegrationType::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown integration type {kind:?}")))?,
        observes: observes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        configuration: row.col("configuration")?,
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

fn job(row: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        seq: row.col("seq")?,
        integration_id: row.col("integration_id")?,
        triggered_by: row.col("triggered_by")?,
        resource_id: row.col("resource_id")?,
        stream: row.col("stream")?,
        snapshot: row.col("snapshot")?,
        created_at: Timestamp(row.col("created_at")?),
        status: JobStatus::parse(&row.col::<String>("status")?)?,
        attempts: u32::try_from(row.col::<i64>("attempts")?).unwrap_or(u32::MAX),
    })
}

fn log(row: &Row) -> Result<IntegrationLog, StoreError> {
    let code: Option<i64> = row.col("status_code")?;
    Ok(IntegrationLog {
        id: row.col("id")?,
        job_seq: row.col("job_seq")?,
        integration_id: row.col("integration_id")?,
        attempt: u32::try_from(row.col::<i64>("attempt")?).unwrap_or(u32::MAX),
        outcome: Attempt {
            succeeded: row.col::<i64>("succeeded")? == 1,
            status_code: code.and_then(|c| u16::try_from(c).ok()),
            body: row.col("body")?,
            error_detail: row.col("error_detail")?,
        },
        created_at: Timestamp(row.col("created_at")?),
    })
}

fn limit_arg(limit: u64) -> i64 {
    i64::try_from(limit.min(1000)).unwrap_or(1000)
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[async_trait]
impl EventStore for SqlStore {
    async fn create_integration(&self, i: &Integration) -> Result<bool, StoreError> {
        let max = i64::try_from(INTEGRATIONS_MAX).unwrap_or(i64::MAX);
        // One statement: the count and the insert cannot be split by another create.
        let sql = format!(
            "INSERT INTO integrations ({INTEGRATION_COLUMNS}) \
             SELECT $1, $2, $3, CAST($4 AS BIGINT), $5, $6, $7, CAST($8 AS BIGINT), \
             CAST($9 AS BIGINT) WHERE (SELECT COUNT(*) FROM integrations) < $10"
        );
        let done = self
            .read
            .run(
                &sql,
                args![
                    i.id.as_str(),
                    i.name.as_str(),
                    i.description.as_str(),
                    i64::from(i.enabled),
                    i.integration_type.as_str(),
                    observes_column(&i.observes),
                    i.configuration.as_str(),
                    i.created_at.micros(),
                    i.updated_at.micros(),
                    max
                ],
            )
            .await?;
        Ok(done == 1)
    }

    async fn integrations(&self) -> Result<Vec<Integration>, StoreError> {
        let max = i64::try_from(INTEGRATIONS_MAX).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {INTEGRATION_COLUMNS} FROM integrations ORDER BY created_at, id LIMIT $1"
        );
        self.read
            .rows(&sql, args![max])
            .await?
            .iter()
            .map(integration)
            .collect()
    }

    async fn integration(&self, id: &str) -> Result<Option<Integration>, StoreError> {
        let sql = format!("SELECT {INTEGRATION_COLUMNS} FROM integrations WHERE id = $1");
        self.read
            .row(&sql, args![id])
            .await?
            .as_ref()
            .map(integration)
            .transpose()
    }

    async fn update_integration(&self, i: &Integration) -> Result<bool, StoreError> {
        let done = self
            .read
            .run(
                "UPDATE integrations SET name = $2, description = $3, enabled = $4, \
                 integration_type = $5, observes = $6, configuration = $7, updated_at = $8 \
                 WHERE id = $1",
                args![
                    i.id.as_str(),
                    i.name.as_str(),
                    i.description.as_str(),
                    i64::from(i.enabled),
                    i.integration_type.as_str(),
                    observes_column(&i.observes),
                    i.configuration.as_str(),
                    i.updated_at.micros()
                ],
            )
            .await?;
        Ok(done == 1)
    }

    async fn delete_integration(&self, id: &str) -> Result<bool, StoreError> {
        // Jobs (and their logs) go with it (ON DELETE CASCADE).
        let done = self
            .read
            .run("DELETE FROM integrations WHERE id = $1", args![id])
            .await?;
        Ok(done == 1)
    }

    async fn integration_jobs(
        &self,
        integration: &str,
        limit: u64,
    ) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM integration_jobs WHERE integration_id = $1 \
             ORDER BY seq DESC LIMIT $2"
        );
        self.read
            .rows(&sql, args![integration, limit_arg(limit)])
            .await?
            .iter()
            .map(job)
            .collect()
    }

    async fn integration_logs(
        &self,
        integration: Option<&str>,
        job_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<IntegrationLog>, StoreError> {
        let sql = "SELECT id, job_seq, integration_id, attempt, succeeded, status_code, body, \
             error_detail, created_at FROM integration_logs \
             WHERE ($1 = '' OR integration_id = $1) AND ($2 < 0 OR job_seq = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3";
        self.read
            .rows(
                sql,
                args![
                    integration.unwrap_or(""),
                    job_seq.unwrap_or(-1),
                    limit_arg(limit)
                ],
            )
            .await?
            .iter()
            .map(log)
            .collect()
    }

    async fn claim_runs(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        max: u64,
        per_stream: u64,
    ) -> Result<Vec<Job>, StoreError> {
        // A read first: an idle dispatcher takes no write lock (SQLite has one, the writer's).
        let due = self
            .read
            .row(
                "SELECT seq FROM integration_jobs \
                 WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1",
                args![now.micros()],
            )
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let skip_locked = match self.kind() {
            Kind::Sqlite => "",
            Kind::Postgres => " FOR UPDATE OF h SKIP LOCKED",
        };
        // `heads`: the oldest pending job of each (integration, stream), found by a loose
        // index scan of `integration_jobs_stream` (integration_id, stream, seq WHERE pending):
        // one probe per stream, each jumping past the stream before (the next stream of the same
        // integration, else the first of the next integration: two plain range probes, which
        // both databases serve from the index, unlike a row-value comparison on SQLite), so the
        // cost grows with the number of streams, never with how many jobs wait in them.
        //
        // `picked`: the heads that may go now — due, lease free, integration enabled (a
        // disabled integration's jobs wait) — oldest first, locked on PostgreSQL with SKIP
        // LOCKED: a stream is claimed through its head's row, so two instances claiming at once
        // never both take one stream. A job leased to someone else is skipped until its lease
        // runs out (its holder crashed: the job is delivered again, at least once).
        //
        // `run`: each picked head and the pending jobs after it in its stream, up to
        // `per_stream` (read through the same index, bounded by the `per_stream`-th one), then
        // the oldest `max` of them all — which keeps each stream's part a prefix of its run, so
        // a product's events leave in commit order. A run stops before the first job that may
        // not go now (still leased: its holder died between recording the head's failure and
        // giving the rest back; or waiting for a retry), so that nothing behind it overtakes it.
        let sql = format!(
            "WITH RECURSIVE heads(seq, integration_id, stream) AS ( \
               SELECT seq, integration_id, stream FROM integration_jobs \
               WHERE seq = (SELECT seq FROM integration_jobs WHERE status = 'pending' \
                 ORDER BY integration_id, stream, seq LIMIT 1) \
               UNION ALL \
               SELECT n.seq, n.integration_id, n.stream FROM heads p \
               JOIN integration_jobs n ON n.seq = COALESCE( \
                 (SELECT x.seq FROM integration_jobs x WHERE x.status = 'pending' \
                   AND x.integration_id = p.integration_id AND x.stream > p.stream \
                   ORDER BY x.integration_id, x.stream, x.seq LIMIT 1), \
                 (SELECT z.seq FROM integration_jobs z WHERE z.status = 'pending' \
                   AND z.integration_id > p.integration_id \
                   ORDER BY z.integration_id, z.stream, z.seq LIMIT 1))), \
             picked AS ( \
               SELECT h.seq, h.integration_id, h.stream FROM integration_jobs h \
               WHERE h.seq IN (SELECT seq FROM heads) \
               AND h.status = 'pending' AND h.next_attempt_at <= $3 AND h.lease_until <= $3 \
               AND EXISTS (SELECT 1 FROM integrations i \
                 WHERE i.id = h.integration_id AND i.enabled = 1) \
               ORDER BY h.seq LIMIT $4{skip_locked}), \
             run AS ( \
               SELECT j.seq FROM picked p JOIN integration_jobs j \
                 ON j.integration_id = p.integration_id AND j.stream = p.stream \
                 AND j.status = 'pending' AND j.seq >= p.seq \
                 AND j.seq <= COALESCE((SELECT y.seq FROM integration_jobs y \
                   WHERE y.integration_id = p.integration_id AND y.stream = p.stream \
                   AND y.status = 'pending' AND y.seq >= p.seq \
                   ORDER BY y.seq LIMIT 1 OFFSET $5), 9223372036854775807) \
                 AND NOT EXISTS (SELECT 1 FROM integration_jobs k \
                   WHERE k.integration_id = p.integration_id AND k.stream = p.stream \
                   AND k.status = 'pending' AND k.seq > p.seq AND k.seq < j.seq \
                   AND (k.lease_until > $3 OR k.next_attempt_at > $3)) \
               ORDER BY j.seq LIMIT $4) \
             UPDATE integration_jobs SET lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1 \
             WHERE seq IN (SELECT seq FROM run) \
             AND status = 'pending' AND lease_until <= $3 \
             RETURNING {JOB_COLUMNS}"
        );
        let per_stream = i64::try_from(per_stream.clamp(1, 1000)).unwrap_or(1);
        let mut jobs: Vec<Job> = self
            .read
            .write_rows(
                &sql,
                args![
                    owner,
                    lease_until.micros(),
                    now.micros(),
                    limit_arg(max),
                    per_stream - 1
                ],
            )
            .await?
            .iter()
            .map(job)
            .collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| j.seq);
        Ok(jobs)
    }

    async fn release_jobs(&self, jobs: &[Job], owner: &str) -> Result<u64, StoreError> {
        let mut released = 0;
        for job in jobs {
            released += self
                .read
                .run(
                    "UPDATE integration_jobs SET lease_until = 0, lease_owner = NULL, \
                     attempts = attempts - 1 \
                     WHERE seq = $1 AND lease_owner = $2 AND status = 'pending' AND attempts > 0",
                    args![job.seq, owner],
                )
                .await?;
        }
        Ok(released)
    }

    async fn finish_jobs(
        &self,
        owner: &str,
        finished: &[Finished<'_>],
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        if finished.is_empty() {
            return Ok(0);
        }
        let mut logs = Vec::with_capacity(finished.len());
        let mut states = Vec::with_capacity(finished.len());
        for f in finished {
            let (status, next, finished_at) = match f.after {
                After::Delivered => (JobStatus::Delivered, 0, Some(now.micros())),
                After::RetryAt(at) => (JobStatus::Pending, at.micros(), None),
                After::Failed => (JobStatus::Failed, 0, Some(now.micros())),
            };
            logs.push(LogRow {
                id: uuid::Uuid::now_v7().to_string(),
                job_seq: f.job.seq,
                integration_id: &f.job.integration_id,
                attempt: i64::from(f.job.attempts),
                succeeded: i64::from(f.attempt.succeeded),
                status_code: f.attempt.status_code.map(i64::from),
                body: cut(&f.attempt.body, LOG_BODY_MAX),
                error_detail: cut(&f.attempt.error_detail, LOG_BODY_MAX),
            });
            states.push(StateRow {
                seq: f.job.seq,
                status: status.as_str(),
                next_attempt_at: next,
                finished_at,
            });
        }
        let rows = match self.kind() {
            Kind::Sqlite => "json_each($1) AS j",
            Kind::Postgres => "jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
        };
        // The logs first: a finished job always has its attempts' logs (both statements commit
        // together anyway). A job pruned meanwhile gets no log.
        let log_sql = format!(
            "INSERT INTO integration_logs (id, job_seq, integration_id, attempt, succeeded, \
             status_code, body, error_detail, created_at) \
             SELECT j.value ->> 'id', CAST(j.value ->> 'job_seq' AS BIGINT), \
             j.value ->> 'integration_id', CAST(j.value ->> 'attempt' AS BIGINT), \
             CAST(j.value ->> 'succeeded' AS BIGINT), CAST(j.value ->> 'status_code' AS BIGINT), \
             j.value ->> 'body', j.value ->> 'error_detail', CAST($2 AS BIGINT) FROM {rows} \
             WHERE EXISTS (SELECT 1 FROM integration_jobs \
             WHERE seq = CAST(j.value ->> 'job_seq' AS BIGINT))"
        );
        let state_sql = format!(
            "UPDATE integration_jobs SET status = j.value ->> 'status', \
             next_attempt_at = CAST(j.value ->> 'next_attempt_at' AS BIGINT), \
             finished_at = CAST(j.value ->> 'finished_at' AS BIGINT), \
             lease_until = 0, lease_owner = NULL \
             FROM {rows} WHERE integration_jobs.seq = CAST(j.value ->> 'seq' AS BIGINT) \
             AND integration_jobs.lease_owner = $2 AND integration_jobs.status = 'pending'"
        );
        let changed = self
            .read
            .run_all(vec![
                Stmt::new(log_sql, args![rows_json(&logs)?, now.micros()]),
                Stmt::new(state_sql, args![rows_json(&states)?, owner]),
            ])
            .await?;
        Ok(changed.get(1).copied().unwrap_or(0))
    }

    async fn prune_jobs(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.read
            .run(
                "DELETE FROM integration_jobs WHERE status <> 'pending' AND finished_at < $1",
                args![before.micros()],
            )
            .await
    }

    async fn history_entry_by_id(&self, id: &str) -> Result<Option<HistoryEntry>, StoreError> {
        let sql = concat!("SELECT ", history_columns!(), " FROM history WHERE id = $1");
        self.read
            .row(sql, args![id])
            .await?
            .as_ref()
            .map(history_entry)
            .transpose()
    }

    async fn set_stock_threshold(
        &self,
        product: &ProductId,
        location: &str,
        threshold: Option<u64>,
    ) -> Result<(), StoreError> {
        match threshold {
            Some(n) => {
                let n = i64::try_from(n).map_err(|_| {
                    StoreError::Constraint(format!("threshold {n} is out of range"))
                })?;
                self.read
                    .run(
                        "INSERT INTO stock_thresholds (product_id, location, threshold) \
                         VALUES ($1, $2, $3) ON CONFLICT (product_id, location) \
                         DO UPDATE SET threshold = excluded.threshold",
                        args![product.as_str(), location, n],
                    )
                    .await?;
            }
            None => {
                self.read
                    .run(
                        "DELETE FROM stock_thresholds WHERE product_id = $1 AND location = $2",
                        args![product.as_str(), location],
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
