//! The store's integration tests, on SQLite and PostgreSQL (one test binary).

mod model;
mod races;
mod support;
mod upgrade;
