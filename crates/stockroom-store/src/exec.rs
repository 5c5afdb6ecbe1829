//! One way for the writer to run a statement on either driver: sqlx's `Any` connection
//! (PostgreSQL), or a rusqlite connection driven on the writer's own thread (SQLite).
//!
//! Why two drivers: sqlx runs every SQLite connection on a worker thread of its own, so each
//! statement is two thread hand-offs. The writer is the one serial chain of the service and
//! runs a dozen statements per batch; on SQLite those hand-offs, not SQLite, were its cost
//! (see docs/performance.md). rusqlite runs the statement on the calling thread — the writer's.
//! The SQL is the same text for both: `$N` parameters are bound by name on SQLite.

use std::sync::Arc;

use futures::FutureExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::error::StoreError;

/// A statement parameter.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}

impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}

impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        v.as_deref().map_or(Arg::Null, Into::into)
    }
}

impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(*v),
            Arg::Real(v) => ValueRef::Real(*v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
        }))
    }
}

/// `args![a, b, …]`: a statement's parameters, `$1` first.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($crate::exec::Arg::from($arg)),*]
    };
}
pub(crate) use args;

/// A column value read through rusqlite.
#[derive(Clone, Debug)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A row read through rusqlite.
#[derive(Debug)]
pub(crate) struct LiteRow {
    names: Arc<[String]>,
    vals: Vec<Val>,
}

/// A row from either driver.
pub(crate) enum DbRow {
    Any(AnyRow),
    Lite(LiteRow),
}

/// Reading a column by name, whichever driver read the row.
pub(crate) trait Get {
    fn col<T: FromCol>(&self, name: &str) -> Result<T, StoreError>;
}

impl Get for AnyRow {
    fn col<T: FromCol>(&self, name: &str) -> Result<T, StoreError> {
        T::from_any(self, name)
    }
}

impl Get for DbRow {
    fn col<T: FromCol>(&self, name: &str) -> Result<T, StoreError> {
        match self {
            DbRow::Any(row) => T::from_any(row, name),
            DbRow::Lite(row) => {
                let i = row
                    .names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| StoreError::Internal(format!("no column {name:?}")))?;
                T::from_val(&row.vals[i], name)
            }
        }
    }
}

/// A Rust type a column can be read as.
pub(crate) trait FromCol: Sized {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError>;
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError>;
}

fn mistyped(name: &str, val: &Val) -> StoreError {
    StoreError::Internal(format!("column {name:?} holds an unexpected {val:?}"))
}

impl FromCol for Option<i64> {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        match val {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            other => Err(mistyped(name, other)),
        }
    }
}

impl FromCol for Option<f64> {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        match val {
            Val::Null => Ok(None),
            Val::Real(v) => Ok(Some(*v)),
            // SQLite stores a REAL with no fraction as an integer when it can.
            Val::Int(v) => Ok(Some(*v as f64)),
            other => Err(mistyped(name, other)),
        }
    }
}

impl FromCol for Option<String> {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        match val {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            other => Err(mistyped(name, other)),
        }
    }
}

/// A column that must not be NULL.
fn required<T>(v: Option<T>, name: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("column {name:?} is NULL")))
}

impl FromCol for i64 {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<i64>::from_val(val, name)?, name)
    }
}

impl FromCol for f64 {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<f64>::from_val(val, name)?, name)
    }
}

impl FromCol for String {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self, StoreError> {
        Ok(row.try_get(name)?)
    }
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<String>::from_val(val, name)?, name)
    }
}

/// The writer's connection.
pub(crate) enum Conn<'c> {
    Any(&'c mut AnyConnection),
    Lite(&'c mut rusqlite::Connection),
}

impl Conn<'_> {
    /// The same connection, borrowed for a shorter while.
    pub fn reborrow(&mut self) -> Conn<'_> {
        match self {
            Conn::Any(conn) => Conn::Any(conn),
            Conn::Lite(conn) => Conn::Lite(conn),
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        match self {
            Conn::Any(conn) => Ok(any_query(sql, args)
                .execute(&mut **conn)
                .await?
                .rows_affected()),
            Conn::Lite(conn) => {
                let mut stmt = lite_statement(conn, sql, &args)?;
                Ok(u64::try_from(stmt.raw_execute()?).unwrap_or(u64::MAX))
            }
        }
    }

    pub async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<DbRow>, StoreError> {
        match self {
            Conn::Any(conn) => Ok(any_query(sql, args)
                .fetch_all(&mut **conn)
                .await?
                .into_iter()
                .map(DbRow::Any)
                .collect()),
            Conn::Lite(conn) => {
                let mut stmt = lite_statement(conn, sql, &args)?;
                let names: Arc<[String]> =
                    stmt.column_names().into_iter().map(str::to_owned).collect();
                let width = names.len();
                let mut rows = stmt.raw_query();
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut vals = Vec::with_capacity(width);
                    for i in 0..width {
                        use rusqlite::types::ValueRef;
                        vals.push(match row.get_ref(i)? {
                            ValueRef::Null => Val::Null,
                            ValueRef::Integer(v) => Val::Int(v),
                            ValueRef::Real(v) => Val::Real(v),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Val::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        });
                    }
                    out.push(DbRow::Lite(LiteRow {
                        names: names.clone(),
                        vals,
                    }));
                }
                Ok(out)
            }
        }
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }
}

pub(crate) fn any_query(
    sql: &str,
    args: Vec<Arg>,
) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    let mut query = sqlx::query(sql);
    for arg in args {
        query = match arg {
            Arg::Null => query.bind(None::<String>),
            Arg::Int(v) => query.bind(v),
            Arg::Real(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
        };
    }
    query
}

/// A cached statement with `args` bound to `$1`, `$2`, … by name (SQLite numbers named
/// parameters by first appearance, not by their digits). Cached statements clear their
/// bindings when they go back to the cache.
fn lite_statement<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Arg],
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    // Every argument must have its parameter and every parameter its argument, as sqlx
    // checks: a mismatch would otherwise write NULL or drop a value without a word.
    if stmt.parameter_count() != args.len() {
        return Err(StoreError::Internal(format!(
            "{} arguments for {} parameters: {sql}",
            args.len(),
            stmt.parameter_count()
        )));
    }
    for (i, arg) in args.iter().enumerate() {
        let name = format!("${}", i + 1);
        let index = stmt
            .parameter_index(&name)?
            .ok_or_else(|| StoreError::Internal(format!("no parameter {name} in {sql}")))?;
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(stmt)
}

/// Where the hot reads (a product, a cart, an order, a payment) run: on the read pool, or — on
/// SQLite — on the calling thread through a connection of a small pool of rusqlite
/// connections, so a read is no thread hand-off at all. A SQLite read in WAL mode never waits
/// for the writer; it takes tens of microseconds, short enough to run on an async worker.
pub(crate) struct Reader {
    pub pool: sqlx::AnyPool,
    lite: Option<LiteReaders>,
}

struct LiteReaders {
    path: String,
    idle: std::sync::Mutex<Vec<rusqlite::Connection>>,
    /// Most connections kept idle (more may be open for a moment under load).
    keep: usize,
}

impl Reader {
    pub fn pool(pool: sqlx::AnyPool) -> Self {
        Reader { pool, lite: None }
    }

    /// Reads of a SQLite database at `path` run inline; `keep` connections are kept open.
    pub fn sqlite(pool: sqlx::AnyPool, path: String, keep: usize) -> Self {
        Reader {
            pool,
            lite: Some(LiteReaders {
                path,
                idle: std::sync::Mutex::new(Vec::new()),
                keep,
            }),
        }
    }

    pub async fn fetch_all(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<DbRow>, StoreError> {
        let Some(lite) = &self.lite else {
            return Ok(any_query(sql, args)
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(DbRow::Any)
                .collect());
        };
        let taken = lite.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut conn = match taken {
            Some(conn) => conn,
            None => open_reader(&lite.path)?,
        };
        // No await happens below: the statement runs here, on this thread.
        let rows = Conn::Lite(&mut conn).fetch_all(sql, args).now_or_never();
        if let Ok(mut idle) = lite.idle.lock() {
            if idle.len() < lite.keep {
                idle.push(conn);
            }
        }
        rows.unwrap_or_else(|| Err(StoreError::Internal("a SQLite read awaited".into())))
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<DbRow>, StoreError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }
}

fn open_reader(path: &str) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}
