//! Stockroom's storage: one [`Store`] trait whose methods are whole atomic operations, and one
//! implementation, [`SqlStore`], that runs the same code over SQLite (the default, through
//! rusqlite) or PostgreSQL (several instances over one database, through tokio-postgres).
//!
//! Every write goes through the group-commit writer ([`writer`]): lanes that each take a batch
//! of queued write requests and run it ([`batch`]) in one database transaction — locking the
//! rows they touch in one global order, applying each request with the domain's rules in
//! memory ([`stock`], [`carts`], [`orders`], …) and writing the result back — then commit once
//! before answering any of them. Reads go straight to a pool.
//!
//! The modules form one-way layers: `store` → `writer` → `batch` → the per-entity modules
//! (`orders` → `carts` → `stock` → `locations`, `catalog`, `idempotency`) → `rows`,
//! `batch_rows`, `dialect`, `exec` → `model`, `error`. No module imports one above it.

mod api;
mod batch;
mod batch_rows;
mod carts;
mod catalog;
mod customers;
mod dialect;
mod error;
mod events;
mod events_sql;
mod exec;
mod idempotency;
mod locations;
mod migrate;
mod model;
mod open;
mod operator;
mod operator_sql;
mod orders;
pub mod retention;
mod rows;
pub mod security;
mod stock;
mod store;
pub mod testing;
mod verify;
pub mod writer;

pub use api::Store;
pub use dialect::Kind;
pub use error::{OpenError, StoreError};
pub use events::{
    After, Attempt, EventStore, Finished, Integration, IntegrationLog, IntegrationType, Job,
    JobStatus, INTEGRATIONS_MAX, LOG_BODY_MAX,
};
pub use model::*;
pub use open::redact_url;
pub use operator::{LevelFilter, LocationSummary, OperatorStore, Sequenced, StockQuery, StockRow};
pub use store::{OpenOptions, SqlStore};
pub use verify::{Problem, VerifyReport};
