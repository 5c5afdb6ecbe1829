//! Fresh databases for tests: a SQLite file in a folder the test owns, or a new schema on the
//! PostgreSQL server named by `STOCKROOM_TEST_POSTGRES_URL`, so that runs never see each
//! other's data.

use std::io::Write;
use std::sync::Once;

/// The variable that names the PostgreSQL server tests may use.
pub const POSTGRES_URL_VAR: &str = "STOCKROOM_TEST_POSTGRES_URL";
/// When set (as `.ci/run` sets it), a missing PostgreSQL server fails the tests instead of
/// skipping them.
pub const REQUIRE_POSTGRES_VAR: &str = "STOCKROOM_TEST_REQUIRE_POSTGRES";
/// Prefix of every schema tests create (`.ci/run` drops leftovers by it).
pub const SCHEMA_PREFIX: &str = "stockroom_test_";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A URL for a fresh, empty database on `backend`; `None` (after saying so once, past the test
/// harness's output capture) when PostgreSQL is asked for but not configured.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}/stockroom.db", dir.display())),
        Backend::Postgres => {
            let Ok(server) = std::env::var(POSTGRES_URL_VAR) else {
                if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
                    panic!("{REQUIRE_POSTGRES_VAR} is set but {POSTGRES_URL_VAR} is not");
                }
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests skipped: {POSTGRES_URL_VAR} is not set \
                         (e.g. postgres://postgres@127.0.0.1:5432/test; .ci/run sets it)"
                    );
                });
                return None;
            };
            match fresh_schema(&server).await {
                Ok(url) => Some(url),
                Err(e) => panic!("{POSTGRES_URL_VAR} is set but unusable: {e}"),
            }
        }
    }
}

/// Creates a new schema on `server` and returns a URL whose connections use it.
pub async fn fresh_schema(server: &str) -> Result<String, tokio_postgres::Error> {
    let schema = format!("{SCHEMA_PREFIX}{}", uuid::Uuid::new_v4().simple());
    // The schema name is made here from a UUID, never from input.
    run_on(server, &format!("CREATE SCHEMA {schema}")).await?;
    let sep = if server.contains('?') { '&' } else { '?' };
    Ok(format!("{server}{sep}options=-c%20search_path%3D{schema}"))
}

/// Runs `sql` (one or more statements, no parameters) on its own connection to `url`.
pub async fn run_on(url: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let result = client.batch_execute(sql).await;
    drop(client);
    let _ = connection.await;
    result
}
