//! Migrations, through refinery for both databases: embedded in the binary, applied on open,
//! never edited once released (refinery refuses to start on a database whose applied
//! migrations differ from the embedded ones).
//!
//! Databases made by releases before refinery recorded their migrations in sqlx's
//! `_sqlx_migrations` table. Their schema is the same: on first open such a database's
//! applied versions are recorded in refinery's table (with refinery's checksums of the very
//! same files), and migration goes on from there.

use refinery::Migration;
use time::format_description::well_known::Rfc3339;

use crate::error::StoreError;

mod sqlite {
    refinery::embed_migrations!("migrations/sqlite");
}

mod postgres {
    refinery::embed_migrations!("migrations/postgres");
}

/// refinery's table, created as refinery creates it.
const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS refinery_schema_history( \
     version int4 PRIMARY KEY, name VARCHAR(255), applied_on VARCHAR(255), \
     checksum VARCHAR(255))";

/// The key of the advisory lock that makes instances starting together migrate one at a time.
const MIGRATION_LOCK: i64 = 0x5354_4f43_4b52_4f4d; // "STOCKROM"

fn migrate_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("migrating: {e}"))
}

/// The rows that record, in refinery's table, the migrations that sqlx applied.
fn adoption(migrations: &[Migration], applied: &[i64]) -> Result<Vec<String>, StoreError> {
    let now = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .map_err(migrate_error)?;
    let mut inserts = Vec::new();
    for version in applied {
        let Some(m) = migrations
            .iter()
            .find(|m| i64::from(m.version()) == *version)
        else {
            return Err(migrate_error(format!(
                "the database has migration {version}, which this release does not know"
            )));
        };
        inserts.push(format!(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ({}, '{}', '{now}', '{}')",
            m.version(),
            m.name(),
            m.checksum()
        ));
    }
    Ok(inserts)
}

/// Applies SQLite's migrations to the connection's database.
pub(crate) fn sqlite(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
    let runner = sqlite::migrations::runner();
    let has = |conn: &rusqlite::Connection, table: &str| -> Result<bool, StoreError> {
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    };
    if has(conn, "_sqlx_migrations")? && !has(conn, "refinery_schema_history")? {
        let applied: Vec<i64> = conn
            .prepare("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let tx = conn.transaction()?;
        tx.execute_batch(HISTORY_TABLE)?;
        for insert in adoption(runner.get_migrations(), &applied)? {
            tx.execute_batch(&insert)?;
        }
        tx.commit()?;
    }
    runner.run(conn).map_err(migrate_error)?;
    Ok(())
}

/// Applies PostgreSQL's migrations, one instance at a time.
pub(crate) async fn postgres(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = postgres_locked(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    result
}

async fn postgres_locked(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let runner = postgres::migrations::runner();
    let has = |table: &'static str| {
        let client = &*client;
        async move {
            let row = client
                .query_one(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_name = $1",
                    &[&table],
                )
                .await?;
            Ok::<bool, StoreError>(row.get::<_, i64>(0) > 0)
        }
    };
    if has("_sqlx_migrations").await? && !has("refinery_schema_history").await? {
        let applied: Vec<i64> = client
            .query(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let tx = client.transaction().await?;
        tx.batch_execute(HISTORY_TABLE).await?;
        for insert in adoption(runner.get_migrations(), &applied)? {
            tx.batch_execute(&insert).await?;
        }
        tx.commit().await?;
    }
    runner.run_async(client).await.map_err(migrate_error)?;
    Ok(())
}
