use thiserror::Error;

/// What can go wrong in the store, as callers need to tell it apart.
#[derive(Debug, Clone, Error)]
pub enum StoreError {
    /// The idempotency key was used before for a different request.
    #[error("the idempotency key was used before with a different request")]
    IdempotencyMismatch,
    /// A unique value (client id) is taken.
    #[error("already exists")]
    Conflict,
    /// The database cannot be reached, or no connection became free in time: try again.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a broken database. Logged; never shown to clients.
    #[error("storage error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Errors worth retrying the whole batch for: another writer won a race we can re-run.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                if matches!(e, sqlx::Error::PoolTimedOut) {
                    metrics::counter!("stockroom_db_pool_timeouts_total").increment(1);
                }
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // unique and foreign-key violations, serialization failure, deadlock
                // (PostgreSQL); the same violations in SQLite's extended codes
                Some("23505") | Some("23503") | Some("40001") | Some("40P01") | Some("2067")
                | Some("1555") | Some("787") => StoreError::Conflict,
                // SQLite's extended codes carry the primary code in their low byte: every kind
                // of SQLITE_BUSY / SQLITE_LOCKED means the lock stayed held past the timeout.
                Some(code) if sqlite_busy(code.parse().unwrap_or(0)) => {
                    StoreError::Unavailable(e.to_string())
                }
                _ => StoreError::Internal(e.to_string()),
            },
            _ => StoreError::Internal(e.to_string()),
        }
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
                2067 | 1555 | 787 => StoreError::Conflict,
                code if sqlite_busy(code) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Internal(e.to_string()),
            },
            _ => StoreError::Internal(e.to_string()),
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
