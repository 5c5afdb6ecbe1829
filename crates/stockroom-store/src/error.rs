use thiserror::Error;

/// What can go wrong in the store, as callers need to tell it apart.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The idempotency key was used before for a different request.
    #[error("the idempotency key was used before with a different request")]
    IdempotencyMismatch,
    /// A unique value (a client id, a SKU, a location's slug) is taken.
    #[error("already exists")]
    AlreadyExists,
    /// Another writer won a race (a row created, a key stored, a deadlock broken) that the
    /// batch could not see coming: re-running it settles it. The writer does; a caller sees it
    /// only as [`StoreError::Unavailable`] after every retry lost.
    #[error("lost a race with another writer: {0}")]
    RaceLost(String),
    /// The database refused a write as breaking one of its constraints (a `CHECK`): the request
    /// asked for more than the data allows. Nothing was written.
    #[error("the write breaks a constraint: {0}")]
    Constraint(String),
    /// The database cannot be reached, the connection broke, or no connection became free in
    /// time: try again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken database. Logged; never shown to clients.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Errors worth re-running the whole batch for.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, StoreError::RaceLost(_))
    }
}

/// Whether a SQLite (extended) result code is SQLITE_BUSY (5) or SQLITE_LOCKED (6), in any of
/// their variants (BUSY_RECOVERY, BUSY_SNAPSHOT, BUSY_TIMEOUT, LOCKED_SHAREDCACHE…).
fn sqlite_busy(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.extended_code {
                // unique, primary-key and foreign-key violations: another writer got there first
                2067 | 1555 | 787 => StoreError::RaceLost(e.to_string()),
                // SQLITE_CONSTRAINT_CHECK
                275 => StoreError::Constraint(e.to_string()),
                code if sqlite_busy(code) => StoreError::Unavailable(e.to_string()),
                // SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_FULL: the file, not the request
                code if matches!(code & 0xff, 10 | 13 | 14) => {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            },
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            return if connection_level(&e) {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Internal(e.to_string())
            };
        };
        let detail = format!("{}: {}", db.code().code(), db.message());
        match db.code().code() {
            // unique and foreign-key violations, serialization failure, deadlock detected
            "23505" | "23503" | "40001" | "40P01" => StoreError::RaceLost(detail),
            "23514" => StoreError::Constraint(detail),
            code if unavailable_code(code) => StoreError::Unavailable(detail),
            _ => StoreError::Internal(detail),
        }
    }
}

/// Whether a SQLSTATE says "the database cannot serve this now; try again": class 08
/// (connection exception), 53 (insufficient resources: too many connections, disk full),
/// 57P01–57P05 (the server shut down, restarted, or terminated this backend), 57014 (a
/// statement cancelled: `statement_timeout`), 25P03 and 25P04 (the session ended by
/// `idle_in_transaction_session_timeout` or `transaction_timeout`), 55P03 (a lock not
/// available in time), 25006 (a read-only standby: reached after a failover).
pub(crate) fn unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "57014" | "25P03" | "25P04" | "55P03" | "25006")
}

/// Whether a driver error (not one the server reported) is about the connection: closed,
/// broken, refused, timed out. Encoding or decoding a value is not: that is a bug.
fn connection_level(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    let text = e.to_string();
    [
        "error connecting",
        "timeout",
        "unexpected message",
        "connection",
    ]
    .iter()
    .any(|t| text.contains(t))
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => {
                // Failing to connect at all is always the connection's fault.
                match StoreError::from(e) {
                    StoreError::Internal(cause) => StoreError::Unavailable(cause),
                    other => other,
                }
            }
            other => {
                if matches!(other, deadpool_postgres::PoolError::Timeout(_)) {
                    metrics::counter!("stockroom_db_pool_timeouts_total").increment(1);
                }
                StoreError::Unavailable(other.to_string())
            }
        }
    }
}

/// Why the store could not be opened. Messages never contain a URL's password.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("unsupported database URL {0}: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadScheme(String),
    #[error("malformed database URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("cannot apply migrations to {url}: {reason}")]
    Migrate { url: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timeouts, shutdowns, lost connections and a standby's refusal are "try again" (503);
    /// a broken rule or an unknown failure is not.
    #[test]
    fn sqlstates_of_timeouts_failovers_and_lost_connections_are_unavailable() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P02", "57P03", "57014", "25P03", "25P04",
            "55P03", "25006",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        for code in [
            "23505", "23514", "40001", "40P01", "42P01", "25P02", "XX000",
        ] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
