//! What the store's tests share: clocks, stores on fresh databases, and command builders.

use std::sync::Arc;

use stockroom_domain::{Clock, ProductId, Quantity, Timestamp};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{OpenOptions, SqlStore};

pub struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_secs(1_800_000_000)
    }
}

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(FixedClock)
}

pub fn units(n: i64) -> Quantity {
    Quantity::new(n).expect("a valid quantity")
}

pub fn product(id: &str) -> ProductId {
    ProductId::parse(id).expect("a valid product id")
}

/// A fresh database's URL (and the folder a SQLite file lives in); `None` when PostgreSQL is
/// asked for but not configured.
pub async fn database(backend: Backend) -> Option<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = fresh_database(backend, dir.path()).await?;
    Some((dir, url))
}

pub async fn open(url: &str) -> Arc<SqlStore> {
    SqlStore::open(url, OpenOptions::default(), clock())
        .await
        .expect("the store opens")
}
