//! The store's integration tests, on SQLite and PostgreSQL (one test binary).

mod failover;
mod model;
mod races;
mod support;
mod upgrade;
