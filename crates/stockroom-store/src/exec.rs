//! The one way the store runs SQL, over each database's native driver: rusqlite for SQLite
//! (on the calling thread), tokio-postgres for PostgreSQL (through deadpool-postgres, with a
//! prepared-statement cache per connection).
//!
//! The SQL text is the same for both wherever the dialects agree: `$N` parameters (bound by
//! name on SQLite) and `CAST` (not `::`). Parameters are [`Arg`]s, which adapt to the type
//! PostgreSQL infers for each parameter; rows come back as [`Row`]s of [`Val`]s whatever the
//! driver, and are read by column name with [`Row::col`].
//!
//! [`Conn::pipeline`] runs several statements in as few round trips as the driver allows: on
//! PostgreSQL they are all sent before the first answer is awaited (one round trip for the
//! lot), on SQLite they simply run in turn (there is no round trip).

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::error::StoreError;

/// A statement parameter.
#[derive(Clone, Debug, PartialEq)]
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

/// `args![a, b, …]`: a statement's parameters, `$1` first.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$($crate::exec::Arg::from($arg)),*]
    };
}
pub(crate) use args;

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

type BoxError = Box<dyn StdError + Sync + Send>;

fn mismatch(arg: &Arg, ty: &Type) -> BoxError {
    format!("cannot bind {arg:?} to a parameter of type {ty}").into()
}

/// An argument takes the type PostgreSQL inferred for its parameter: an integer binds to any
/// integer type (checked), text to any text type and to JSON (the statements that take a JSON
/// array cast their parameter to `jsonb`).
impl ToSql for Arg {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (Arg::Null, _) => Ok(IsNull::Yes),
            (Arg::Int(v), &Type::INT8) => v.to_sql(ty, out),
            (Arg::Int(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out),
            (Arg::Int(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out),
            (Arg::Int(v), &Type::BOOL) => (*v != 0).to_sql(ty, out),
            (Arg::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (Arg::Text(v), &Type::JSON) => {
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            (Arg::Text(v), &Type::JSONB) => {
                out.put_u8(1); // jsonb's binary format: a version byte, then the text
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
            (Arg::Text(v), ty) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            (arg, ty) => Err(mismatch(arg, ty)),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column value, whichever driver read it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// A row: its statement's column names (shared by every row of the answer) and its values.
#[derive(Debug)]
pub(crate) struct Row {
    names: Arc<[String]>,
    vals: Vec<Val>,
}

impl Row {
    /// The column `name`, read as `T`.
    pub fn col<T: FromCol>(&self, name: &str) -> Result<T, StoreError> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| StoreError::Internal(format!("no column {name:?}")))?;
        T::from_val(&self.vals[i], name)
    }
}

/// A Rust type a column can be read as.
pub(crate) trait FromCol: Sized {
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError>;
}

fn mistyped(name: &str, val: &Val) -> StoreError {
    StoreError::Internal(format!("column {name:?} holds an unexpected {val:?}"))
}

impl FromCol for Option<i64> {
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        match val {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            other => Err(mistyped(name, other)),
        }
    }
}

impl FromCol for Option<f64> {
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
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        match val {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            other => Err(mistyped(name, other)),
        }
    }
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Internal(format!("column {name:?} is NULL")))
}

impl FromCol for i64 {
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<i64>::from_val(val, name)?, name)
    }
}

impl FromCol for f64 {
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<f64>::from_val(val, name)?, name)
    }
}

impl FromCol for String {
    fn from_val(val: &Val, name: &str) -> Result<Self, StoreError> {
        required(Option::<String>::from_val(val, name)?, name)
    }
}

/// One statement of a pipeline.
#[derive(Debug)]
pub(crate) struct Stmt {
    sql: String,
    args: Vec<Arg>,
    /// A transaction-control statement (`BEGIN`, `COMMIT`): no parameters, no rows, and on
    /// PostgreSQL sent as a simple query (nothing to prepare).
    control: bool,
}

impl Stmt {
    pub fn new(sql: impl Into<String>, args: Vec<Arg>) -> Self {
        Stmt {
            sql: sql.into(),
            args,
            control: false,
        }
    }

    pub fn control(sql: &str) -> Self {
        Stmt {
            sql: sql.to_owned(),
            args: Vec::new(),
            control: true,
        }
    }
}

/// Most statements sent in one go: `try_join_all` keeps the order it polls (and so sends) in
/// only up to this many futures.
const PIPELINE_MAX: usize = 30;

/// A connection to run statements on: a SQLite connection on this thread, or a pooled
/// PostgreSQL client.
#[derive(Clone, Copy)]
pub(crate) enum Conn<'c> {
    Lite(&'c rusqlite::Connection),
    Pg(&'c deadpool_postgres::ClientWrapper),
}

impl Conn<'_> {
    /// Runs a statement; returns the rows it changed.
    pub async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        match self {
            Conn::Lite(conn) => lite_run(conn, sql, &args),
            Conn::Pg(client) => pg_run(client, sql, &args).await,
        }
    }

    /// Runs a statement; returns its rows.
    pub async fn rows(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        match self {
            Conn::Lite(conn) => lite_rows(conn, sql, &args),
            Conn::Pg(client) => pg_query(client, sql, &args).await,
        }
    }

    /// The first row of a statement's answer, if any.
    pub async fn row(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// Runs statements in order, in as few round trips as the driver allows; returns each
    /// one's rows. The first failure fails the lot (on PostgreSQL, later statements of the same
    /// transaction then fail too: an aborted transaction runs nothing more).
    pub async fn pipeline(&self, stmts: Vec<Stmt>) -> Result<Vec<Vec<Row>>, StoreError> {
        match self {
            Conn::Lite(conn) => stmts.iter().map(|s| lite_stmt(conn, s)).collect(),
            Conn::Pg(client) => {
                let mut out = Vec::with_capacity(stmts.len());
                for chunk in stmts.chunks(PIPELINE_MAX) {
                    out.extend(pg_pipeline(client, chunk).await?);
                }
                Ok(out)
            }
        }
    }
}

fn lite_stmt(conn: &rusqlite::Connection, stmt: &Stmt) -> Result<Vec<Row>, StoreError> {
    if stmt.control {
        conn.execute_batch(&stmt.sql)?;
        return Ok(Vec::new());
    }
    lite_rows(conn, &stmt.sql, &stmt.args)
}

async fn pg_run(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    args: &[Arg],
) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.execute(&stmt, &pg_params(args)).await?)
}

async fn pg_query(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<Row>, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    pg_rows(client.query(&stmt, &pg_params(args)).await?)
}

fn pg_params(args: &[Arg]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

async fn pg_pipeline(
    client: &deadpool_postgres::ClientWrapper,
    stmts: &[Stmt],
) -> Result<Vec<Vec<Row>>, StoreError> {
    // Prepared (or found in the cache) first, so that the statements themselves go out
    // together: each `query` future sends its messages when first polled, and `try_join_all`
    // polls them all, in order, before awaiting any answer.
    let prepared = futures::future::try_join_all(stmts.iter().map(|s| async move {
        match s.control {
            true => Ok(None),
            false => client.prepare_cached(&s.sql).await.map(Some),
        }
    }))
    .await?;
    let answers = stmts.iter().zip(&prepared).map(|(s, p)| async move {
        match p {
            None => client.batch_execute(&s.sql).await.map(|()| Vec::new()),
            Some(p) => client.query(p, &pg_params(&s.args)).await,
        }
    });
    let answers = futures::future::try_join_all(answers).await?;
    answers.into_iter().map(pg_rows).collect()
}

fn pg_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    rows.iter()
        .map(|row| {
            let vals = (0..row.len())
                .map(|i| pg_val(row, i))
                .collect::<Result<_, _>>()?;
            Ok(Row {
                names: names.clone(),
                vals,
            })
        })
        .collect()
}

fn pg_val(row: &tokio_postgres::Row, i: usize) -> Result<Val, StoreError> {
    let ty = row.columns()[i].type_();
    let int = |v: Option<i64>| v.map_or(Val::Null, Val::Int);
    Ok(match *ty {
        Type::INT8 => int(row.try_get::<_, Option<i64>>(i)?),
        Type::INT4 => int(row.try_get::<_, Option<i32>>(i)?.map(i64::from)),
        Type::INT2 => int(row.try_get::<_, Option<i16>>(i)?.map(i64::from)),
        Type::BOOL => int(row.try_get::<_, Option<bool>>(i)?.map(i64::from)),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Val::Null, Val::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map_or(Val::Null, |v| Val::Real(f64::from(v))),
        _ => row
            .try_get::<_, Option<String>>(i)?
            .map_or(Val::Null, Val::Text),
    })
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
    // Every argument must have its parameter and every parameter its argument: a mismatch
    // would otherwise write NULL or drop a value without a word.
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

fn lite_run(conn: &rusqlite::Connection, sql: &str, args: &[Arg]) -> Result<u64, StoreError> {
    let mut stmt = lite_statement(conn, sql, args)?;
    Ok(u64::try_from(stmt.raw_execute()?).unwrap_or(u64::MAX))
}

fn lite_rows(conn: &rusqlite::Connection, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
    let mut stmt = lite_statement(conn, sql, args)?;
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(lite_row(row, &names)?);
    }
    Ok(out)
}

fn lite_row(row: &rusqlite::Row<'_>, names: &Arc<[String]>) -> Result<Row, StoreError> {
    use rusqlite::types::ValueRef;
    let vals = (0..names.len())
        .map(|i| {
            Ok(match row.get_ref(i)? {
                ValueRef::Null => Val::Null,
                ValueRef::Integer(v) => Val::Int(v),
                ValueRef::Real(v) => Val::Real(v),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Val::Text(String::from_utf8_lossy(t).into_owned())
                }
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Row {
        names: names.clone(),
        vals,
    })
}

/// SQLite's settings for every connection. WAL lets readers run beside the writer; FULL makes
/// every commit durable before it is acknowledged; busy_timeout waits for a lock held by
/// another process instead of failing at once.
pub(crate) const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// Opens a connection to an existing SQLite file; `read_only` ones refuse writes.
pub(crate) fn open_sqlite(path: &str, read_only: bool) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if read_only {
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
    } else {
        conn.execute_batch(SQLITE_PRAGMAS)?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Where reads (and the few writes that need no writer) run: on SQLite, on the calling thread
/// through a small pool of connections — a read in WAL mode never waits for the writer and
/// takes tens of microseconds, short enough for an async worker; on PostgreSQL, on a pool.
pub(crate) enum Reader {
    Lite(LiteReaders),
    Pg(PgReader),
}

/// PostgreSQL's reads: the pool, and the longest one call may take.
pub(crate) struct PgReader {
    pub pool: deadpool_postgres::Pool,
    /// For the connection wait and the statement together.
    pub deadline: std::time::Duration,
}

/// How long a readiness check may take: a load balancer's probe wants a quick no.
pub(crate) const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `call`'s result, or "unavailable" once `deadline` has passed without one.
pub(crate) async fn within<T>(
    deadline: std::time::Duration,
    call: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(deadline, call)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "no answer from the database within {} ms",
                deadline.as_millis()
            )))
        })
}

/// A connection whose call broke or timed out is in an unknown state (a statement may still be
/// running, its path may be stalled): it is closed rather than handed to the next caller.
pub(crate) fn drop_if_broken<T>(
    pool: &deadpool_postgres::Pool,
    client: deadpool_postgres::Object,
    began: std::time::Instant,
    result: &Result<T, StoreError>,
) {
    if matches!(result, Err(StoreError::Unavailable(_))) {
        discard(pool, client, began);
    }
}

/// Closes `client`, and with it every idle connection of the pool opened before `began` (the
/// start of the call that failed on it): they most likely reach the same host by the same
/// path — a crashed or cut-off primary — and the next calls should connect afresh, to the new
/// primary after a failover, rather than each find out on its own, one deadline at a time.
pub(crate) fn discard(
    pool: &deadpool_postgres::Pool,
    client: deadpool_postgres::Object,
    began: std::time::Instant,
) {
    drop(deadpool_postgres::Object::take(client));
    let closed = pool
        .retain(|_, metrics| metrics.created > began)
        .removed
        .len();
    metrics::counter!("stockroom_db_connections_dropped_total").increment(1 + closed as u64);
}

impl PgReader {
    /// A connection from the pool, waited for within `deadline`.
    async fn client(
        &self,
        deadline: std::time::Duration,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        within(deadline, async { Ok(self.pool.get().await?) }).await
    }

    /// Runs `sql` and returns its rows, the connection wait and the statement within `deadline`.
    async fn rows(
        &self,
        deadline: std::time::Duration,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<Row>, StoreError> {
        let began = std::time::Instant::now();
        let client = self.client(deadline).await?;
        let left = deadline.saturating_sub(began.elapsed());
        let result = within(left, pg_query(&client, sql, args)).await;
        drop_if_broken(&self.pool, client, began, &result);
        result
    }
}

pub(crate) struct LiteReaders {
    path: String,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// Most connections kept idle (more may be open for a moment under load).
    keep: usize,
    /// The connection for the writes that bypass the writer (credentials, settings, pruning).
    side: Arc<Mutex<rusqlite::Connection>>,
}

impl Reader {
    pub fn sqlite(path: String, keep: usize) -> Result<Reader, StoreError> {
        let side = Arc::new(Mutex::new(open_sqlite(&path, false)?));
        Ok(Reader::Lite(LiteReaders {
            path,
            idle: Mutex::new(Vec::new()),
            keep,
            side,
        }))
    }

    /// Runs a read; returns its rows.
    pub async fn rows(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        match self {
            Reader::Lite(lite) => lite.with(|conn| lite_rows(conn, sql, &args)),
            Reader::Pg(pg) => pg.rows(pg.deadline, sql, &args).await,
        }
    }

    /// Readiness: the database answers within [`READY_TIMEOUT`] and, on PostgreSQL, takes
    /// writes (a standby, which a URL without `target_session_attrs=read-write` may reach, is
    /// not ready).
    pub async fn ready(&self) -> Result<(), StoreError> {
        match self {
            Reader::Lite(_) => self.row("SELECT 1 AS n", Vec::new()).await.map(|_| ()),
            Reader::Pg(pg) => {
                let deadline = pg.deadline.min(READY_TIMEOUT);
                // What `target_session_attrs=read-write` asks too: a standby is read-only.
                let sql = "SELECT current_setting('transaction_read_only') AS read_only";
                let rows = pg.rows(deadline, sql, &[]).await?;
                let read_only = rows
                    .first()
                    .map(|r| r.col::<String>("read_only"))
                    .transpose()?;
                match read_only.as_deref() {
                    Some("off") => Ok(()),
                    _ => Err(StoreError::Unavailable(
                        "the database is read-only (a standby)".into(),
                    )),
                }
            }
        }
    }

    pub async fn row(&self, sql: &str, args: Vec<Arg>) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// Runs a write that needs no writer (a single statement, atomic on its own); returns
    /// the rows it changed.
    pub async fn run(&self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        match self {
            Reader::Lite(lite) => {
                let sql = sql.to_owned();
                lite.on_side(move |side| lite_run(side, &sql, &args)).await
            }
            Reader::Pg(pg) => {
                let began = std::time::Instant::now();
                let client = pg.client(pg.deadline).await?;
                let left = pg.deadline.saturating_sub(began.elapsed());
                let result = within(left, pg_run(&client, sql, &args)).await;
                drop_if_broken(&pg.pool, client, began, &result);
                result
            }
        }
    }

    /// Runs a write that needs no writer (a single statement, atomic on its own) and returns
    /// the rows it names (`RETURNING`): on SQLite on the side connection, like [`Reader::run`].
    pub async fn write_rows(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        match self {
            Reader::Lite(lite) => {
                let sql = sql.to_owned();
                lite.on_side(move |side| lite_rows(side, &sql, &args)).await
            }
            // A single statement with RETURNING is a read as far as the pool is concerned.
            Reader::Pg(pg) => pg.rows(pg.deadline, sql, &args).await,
        }
    }

    /// Runs writes that need no writer in one transaction, in order; returns the rows each
    /// changed. On SQLite that is one take of the write lock and one commit (one fsync) for
    /// them all, on the side connection.
    pub async fn run_all(&self, stmts: Vec<Stmt>) -> Result<Vec<u64>, StoreError> {
        match self {
            Reader::Lite(lite) => {
                lite.on_side(move |side| {
                    side.execute_batch("BEGIN IMMEDIATE")?;
                    let changed: Result<Vec<u64>, StoreError> = stmts
                        .iter()
                        .map(|s| lite_run(side, &s.sql, &s.args))
                        .collect();
                    match changed {
                        Ok(changed) => {
                            side.execute_batch("COMMIT")?;
                            Ok(changed)
                        }
                        Err(e) => {
                            // Nothing of it stays; the connection is clean for the next caller.
                            let _ = side.execute_batch("ROLLBACK");
                            Err(e)
                        }
                    }
                })
                .await
            }
            Reader::Pg(pg) => {
                let began = std::time::Instant::now();
                let mut client = pg.client(pg.deadline).await?;
                let left = pg.deadline.saturating_sub(began.elapsed());
                let result = within(left, async {
                    let tx = client.transaction().await?;
                    let mut changed = Vec::with_capacity(stmts.len());
                    for s in &stmts {
                        let stmt = tx.prepare_cached(&s.sql).await?;
                        changed.push(tx.execute(&stmt, &pg_params(&s.args)).await?);
                    }
                    tx.commit().await?;
                    Ok(changed)
                })
                .await;
                drop_if_broken(&pg.pool, client, began, &result);
                result
            }
        }
    }

    /// Feeds every row of a (long) read to `visitor`, one at a time, from one consistent
    /// snapshot; returns the visitor when done. On SQLite it runs on a blocking thread.
    pub async fn scan<V: Visit>(&self, sql: &'static str, mut visitor: V) -> Result<V, StoreError> {
        match self {
            Reader::Lite(lite) => {
                let path = lite.path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = open_sqlite(&path, true)?;
                    let mut stmt = lite_statement(&conn, sql, &[])?;
                    let names: Arc<[String]> =
                        stmt.column_names().into_iter().map(str::to_owned).collect();
                    let mut rows = stmt.raw_query();
                    while let Some(row) = rows.next()? {
                        visitor.visit(lite_row(row, &names)?)?;
                    }
                    Ok(visitor)
                })
                .await
                .map_err(|e| StoreError::Internal(format!("a scan stopped: {e}")))?
            }
            Reader::Pg(pg) => pg_scan(pg, sql, visitor).await,
        }
    }

    /// Writes a consistent snapshot of a SQLite database to a new file (`VACUUM INTO`, which
    /// reads inside one transaction while writers carry on).
    pub async fn backup_to(&self, path: &str) -> Result<(), StoreError> {
        let Reader::Lite(lite) = self else {
            return Err(StoreError::Internal("backup_to is for SQLite".into()));
        };
        let side = lite.side.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let side = side.lock().map_err(|_| poisoned())?;
            lite_run(&side, "VACUUM INTO $1", &[Arg::Text(path)]).map(|_| ())
        })
        .await
        .map_err(|e| StoreError::Internal(format!("the backup stopped: {e}")))?
    }
}

/// What [`Reader::scan`] feeds rows to.
pub(crate) trait Visit: Send + 'static {
    fn visit(&mut self, row: Row) -> Result<(), StoreError>;
}

fn poisoned() -> StoreError {
    StoreError::Internal("a SQLite connection's lock is poisoned".into())
}

impl LiteReaders {
    /// Runs `read` on an idle connection (or a new one), then keeps the connection for later.
    /// Runs `write` on the side connection on a blocking thread: it may wait (busy_timeout)
    /// for the write lock while the writer commits, which must not hold up an async worker.
    async fn on_side<T: Send + 'static>(
        &self,
        write: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let side = self.side.clone();
        tokio::task::spawn_blocking(move || {
            let side = side.lock().map_err(|_| poisoned())?;
            write(&side)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a write stopped: {e}")))?
    }

    fn with<T>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match taken {
            Some(conn) => conn,
            None => open_sqlite(&self.path, true)?,
        };
        let result = read(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
        result
    }
}

/// A scan reads a whole table (`verify`, `export`): it is exempt from the statement timeout,
/// so it runs on a connection of its own that is closed afterwards, not handed on with its
/// changed setting.
async fn pg_scan<V: Visit>(pg: &PgReader, sql: &str, visitor: V) -> Result<V, StoreError> {
    let client = pg.client(pg.deadline).await?;
    let client = deadpool_postgres::Object::take(client);
    within(pg.deadline, async {
        Ok(client.batch_execute("SET statement_timeout = 0").await?)
    })
    .await?;
    pg_scan_on(&client, sql, visitor).await
}

async fn pg_scan_on<V: Visit>(
    client: &deadpool_postgres::ClientWrapper,
    sql: &str,
    mut visitor: V,
) -> Result<V, StoreError> {
    use futures::TryStreamExt;
    let stmt = client.prepare_cached(sql).await?;
    let names: Arc<[String]> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
    let rows = client.query_raw(&stmt, Vec::<Arg>::new()).await?;
    futures::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let vals = (0..row.len())
            .map(|i| pg_val(&row, i))
            .collect::<Result<_, _>>()?;
        visitor.visit(Row {
            names: names.clone(),
            vals,
        })?;
    }
    Ok(visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite() -> (tempfile::TempDir, rusqlite::Connection) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("exec.db");
        let conn = rusqlite::Connection::open(&path).expect("a connection");
        conn.execute_batch("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, x REAL);")
            .expect("a table");
        (dir, conn)
    }

    /// `$N` parameters bind by their number, not by the order they first appear in.
    #[tokio::test]
    async fn sqlite_parameters_bind_by_number_whatever_their_order_in_the_text() {
        let (_dir, conn) = sqlite();
        let conn = Conn::Lite(&conn);
        conn.run(
            "INSERT INTO t (n, id, x) VALUES ($2, $1, $3)",
            args!["a", 7i64, 1.5f64],
        )
        .await
        .expect("an insert");
        let row = conn
            .row("SELECT id, n, x FROM t WHERE id = $1", args!["a"])
            .await
            .expect("a read")
            .expect("a row");
        assert_eq!(row.col::<String>("id").expect("id"), "a");
        assert_eq!(row.col::<i64>("n").expect("n"), 7);
        assert_eq!(row.col::<f64>("x").expect("x"), 1.5);
    }

    /// A statement whose arguments and parameters differ in number is refused, not run with a
    /// NULL or a dropped value.
    #[tokio::test]
    async fn a_statement_with_too_few_or_too_many_arguments_is_refused() {
        let (_dir, conn) = sqlite();
        let conn = Conn::Lite(&conn);
        for args in [args!["a"], args!["a", 1i64, 2.0f64, "extra"]] {
            let e = conn
                .run("INSERT INTO t (id, n, x) VALUES ($1, $2, $3)", args)
                .await
                .expect_err("refused");
            assert!(matches!(e, StoreError::Internal(_)), "{e:?}");
        }
        let n: i64 = conn
            .row("SELECT COUNT(*) AS n FROM t", args![])
            .await
            .expect("a read")
            .expect("a row")
            .col("n")
            .expect("n");
        assert_eq!(n, 0, "nothing was written");
    }

    /// Reading a column as the wrong type, or a NULL as a required value, is an error naming
    /// the column, never a silent default.
    #[tokio::test]
    async fn a_column_read_as_the_wrong_type_or_a_null_as_required_is_an_error() {
        let (_dir, conn) = sqlite();
        let conn = Conn::Lite(&conn);
        conn.run("INSERT INTO t (id) VALUES ($1)", args!["a"])
            .await
            .expect("an insert");
        let row = conn
            .row("SELECT id, n FROM t", args![])
            .await
            .expect("a read")
            .expect("a row");
        assert!(row.col::<i64>("id").is_err(), "text read as an integer");
        assert!(
            row.col::<i64>("n").is_err(),
            "NULL read as a required integer"
        );
        assert_eq!(row.col::<Option<i64>>("n").expect("optional"), None);
        assert!(row.col::<String>("missing").is_err(), "no such column");
    }

    /// A pipeline runs its statements in order, each seeing the ones before it, and answers
    /// each one's rows; a failing statement fails the pipeline.
    #[tokio::test]
    async fn a_sqlite_pipeline_runs_in_order_and_answers_every_statement() {
        let (_dir, conn) = sqlite();
        let conn = Conn::Lite(&conn);
        let answers = conn
            .pipeline(vec![
                Stmt::control("BEGIN"),
                Stmt::new("INSERT INTO t (id, n) VALUES ($1, $2)", args!["a", 1i64]),
                Stmt::new("SELECT n FROM t WHERE id = $1", args!["a"]),
                Stmt::control("COMMIT"),
            ])
            .await
            .expect("a pipeline");
        assert_eq!(answers.len(), 4);
        assert_eq!(answers[2].len(), 1);
        let failed = conn
            .pipeline(vec![
                Stmt::new("INSERT INTO t (id) VALUES ($1)", args!["a"]),
                Stmt::new("INSERT INTO t (id) VALUES ($1)", args!["b"]),
            ])
            .await;
        assert!(failed.is_err(), "a duplicate key fails the pipeline");
    }

    /// On PostgreSQL an argument adapts to the type inferred for its parameter (int4, int8,
    /// float8, text, jsonb, NULL), and a pipeline's statements run in order in one transaction.
    #[tokio::test]
    async fn postgres_arguments_adapt_to_their_parameters_and_pipelines_keep_order() {
        let Some(url) = crate::testing::fresh_database(
            crate::testing::Backend::Postgres,
            std::path::Path::new("."),
        )
        .await
        else {
            return;
        };
        let pool = crate::testing::pg_test_pool(&url).expect("a pool");
        let client = pool.get().await.expect("a connection");
        let conn = Conn::Pg(&client);
        conn.run(
            "CREATE TABLE t (id TEXT PRIMARY KEY, small INT, n BIGINT, x DOUBLE PRECISION)",
            args![],
        )
        .await
        .expect("a table");
        let answers = conn
            .pipeline(vec![
                Stmt::control("BEGIN"),
                Stmt::new(
                    "INSERT INTO t (id, small, n, x) VALUES ($1, $2, $3, $4)",
                    args!["a", 7i64, 1i64 << 40, None::<f64>],
                ),
                Stmt::new(
                    "INSERT INTO t (id, small, n, x) SELECT j ->> 'id', 1, 2, 2.5 \
                     FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j",
                    args![r#"[{"id":"b"}]"#],
                ),
                Stmt::new("SELECT id, small, n, x FROM t ORDER BY id", args![]),
                Stmt::control("COMMIT"),
            ])
            .await
            .expect("a pipeline");
        let rows = &answers[3];
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].col::<i64>("small").expect("int4"), 7);
        assert_eq!(rows[0].col::<i64>("n").expect("int8"), 1 << 40);
        assert_eq!(rows[0].col::<Option<f64>>("x").expect("NULL"), None);
        assert_eq!(rows[1].col::<f64>("x").expect("float8"), 2.5);
        let too_big = conn.run("UPDATE t SET small = $1", args![1i64 << 40]).await;
        assert!(
            too_big.is_err(),
            "an int8 that does not fit an int4 is refused"
        );
    }

    /// Readiness asks what `target_session_attrs=read-write` asks: a session that cannot write
    /// (a standby's; here one made read-only by its options) is not ready, and that is
    /// "unavailable", not an error; a writable session on the same server is ready.
    #[tokio::test]
    async fn a_read_only_session_is_not_ready_and_a_writable_one_is() {
        let Some(url) = crate::testing::fresh_database(
            crate::testing::Backend::Postgres,
            std::path::Path::new("."),
        )
        .await
        else {
            return;
        };
        let reader = |url: &str| {
            Reader::Pg(PgReader {
                pool: crate::testing::pg_test_pool(url).expect("a pool"),
                deadline: std::time::Duration::from_secs(5),
            })
        };
        reader(&url)
            .ready()
            .await
            .expect("a writable session is ready");
        let read_only = format!("{url}%20-c%20default_transaction_read_only%3Don");
        assert!(read_only.contains("options="), "{read_only}");
        let ready = reader(&read_only).ready().await;
        assert!(
            matches!(ready, Err(StoreError::Unavailable(_))),
            "{ready:?}"
        );
    }
}
