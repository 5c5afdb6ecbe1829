//! [`SqlStore`]: the [`Store`] over SQLite or PostgreSQL through sqlx's `Any` driver, so that
//! one body of code (and one test suite) serves both.

use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Executor, Row};
use stockroom_domain::{Action, Clock, ProductId, Role, Stock, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::dialect::{Dialect, Kind, POSTGRES, SQLITE};
use crate::error::{OpenError, StoreError};
use crate::exec::{Get, Reader};
use crate::locations;
use crate::model::*;
use crate::orders;
use crate::verify::{self, VerifyReport};
use crate::writer::{self, Job};
use crate::Store;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How to open the store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Connections in the read pool (the writer has its own connection).
    pub pool_size: u32,
    /// How long a request waits for a free connection before it is answered 503.
    pub acquire_timeout: Duration,
    /// Writes that may wait for the writer before senders are held back.
    pub write_queue_capacity: usize,
    /// Most writes committed in one database transaction.
    pub write_batch_max: usize,
    /// Whether a SQLite database that does not exist is created (`serve`), or is an error
    /// (`verify`, `backup`: a mistyped path must not pass as an empty database).
    pub create_if_missing: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
            write_queue_capacity: 4096,
            write_batch_max: 256,
            create_if_missing: true,
        }
    }
}

pub struct SqlStore {
    dialect: &'static Dialect,
    pub(crate) read: Reader,
    writer: mpsc::Sender<Job>,
    /// The database file, on SQLite.
    file: Option<std::path::PathBuf>,
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn kind_of(url: &str) -> Result<Kind, OpenError> {
    if url.starts_with("sqlite:") {
        Ok(Kind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Kind::Postgres)
    } else {
        Err(OpenError::BadScheme(redact_url(url)))
    }
}

/// The SQLite writer's own connection (see `exec.rs`), with the same settings as the pool's.
/// The file of a SQLite URL.
fn sqlite_path(url: &str) -> Result<String, sqlx::Error> {
    Ok(sqlx::sqlite::SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_string_lossy()
        .into_owned())
}

pub(crate) fn sqlite_writer(url: &str) -> Result<rusqlite::Connection, Box<dyn std::error::Error>> {
    let path = sqlite_path(url)?;
    // The file exists: the read pool created it and the migrations ran on it.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(SQLITE_PRAGMAS)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// WAL lets readers run beside the writer; FULL makes every commit durable before it is
/// acknowledged; busy_timeout waits for a lock held by another process instead of failing at
/// once.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                              PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;";

/// A SQLite URL that creates the file on first run (when `create`) unless the URL says otherwise.
fn sqlite_url(url: &str, create: bool) -> Result<String, OpenError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(OpenError::BadUrl {
            url: url.to_owned(),
            reason: "an in-memory database would lose everything; give a file path".into(),
        });
    }
    if url.contains("mode=") {
        return Ok(url.to_owned());
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let mode = if create { "rwc" } else { "rw" };
    Ok(format!("{url}{sep}mode={mode}"))
}

impl SqlStore {
    /// Opens (creating, for SQLite) the database, applies migrations and starts the writer.
    pub async fn open(
        url: &str,
        options: OpenOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<SqlStore>, OpenError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let kind = kind_of(url)?;
        let redacted = redact_url(url);
        let (dialect, url) = match kind {
            Kind::Sqlite => (&SQLITE, sqlite_url(url, options.create_if_missing)?),
            Kind::Postgres => (&POSTGRES, url.to_owned()),
        };
        let file = match kind {
            Kind::Sqlite => sqlite_path(&url).ok().map(std::path::PathBuf::from),
            Kind::Postgres => None,
        };
        // The database holds the token signing key: create it readable by its owner only.
        if let (Some(path), true) = (&file, options.create_if_missing) {
            crate::security::create_private_file(path).map_err(|e| OpenError::Connect {
                url: redacted.clone(),
                reason: format!("cannot create {}: {e}", path.display()),
            })?;
        }
        sqlx::any::AnyConnectOptions::from_str(&url).map_err(|e| OpenError::BadUrl {
            url: redacted.clone(),
            reason: e.to_string(),
        })?;
        let connect_err = |e: sqlx::Error| OpenError::Connect {
            url: redacted.clone(),
            reason: e.to_string(),
        };
        let pool = |size: u32| {
            AnyPoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        if kind == Kind::Sqlite {
                            conn.execute(SQLITE_PRAGMAS).await?;
                        }
                        Ok(())
                    })
                })
        };
        let read = pool(options.pool_size.max(1))
            .connect(&url)
            .await
            .map_err(connect_err)?;
        let migrator = match kind {
            Kind::Sqlite => &SQLITE_MIGRATIONS,
            Kind::Postgres => &POSTGRES_MIGRATIONS,
        };
        // sqlx takes an advisory lock on PostgreSQL while migrating, so instances that start
        // together apply each migration once.
        migrator.run(&read).await.map_err(|e| OpenError::Migrate {
            url: redacted.clone(),
            reason: e.to_string(),
        })?;
        let write = match kind {
            Kind::Sqlite => {
                let conn = sqlite_writer(&url).map_err(|e| OpenError::Connect {
                    url: redacted.clone(),
                    reason: e.to_string(),
                })?;
                writer::WriteDb::Lite(Box::new(conn), url.clone())
            }
            Kind::Postgres => {
                writer::WriteDb::Pool(pool(1).connect(&url).await.map_err(connect_err)?)
            }
        };

        let (tx, rx) = mpsc::channel(options.write_queue_capacity.max(1));
        // The writer runs on a thread and runtime of its own: every statement it awaits wakes
        // it at once, instead of queueing behind the HTTP work on the shared workers — its chain
        // of statements is the hot path.
        let batch_max = options.write_batch_max.max(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OpenError::Connect {
                url: redacted.clone(),
                reason: format!("cannot start the writer: {e}"),
            })?;
        std::thread::Builder::new()
            .name("stockroom-writer".into())
            .spawn(move || runtime.block_on(writer::run(write, dialect, clock, rx, batch_max)))
            .map_err(|e| OpenError::Connect {
                url: redacted.clone(),
                reason: format!("cannot start the writer: {e}"),
            })?;
        let read = match kind {
            Kind::Sqlite => Reader::sqlite(
                read,
                sqlite_path(&url).map_err(|e| OpenError::Connect {
                    url: redacted.clone(),
                    reason: e.to_string(),
                })?,
                usize::try_from(options.pool_size.max(1)).unwrap_or(1),
            ),
            Kind::Postgres => Reader::pool(read),
        };
        Ok(Arc::new(SqlStore {
            dialect,
            read,
            writer: tx,
            file,
        }))
    }

    pub fn kind(&self) -> Kind {
        self.dialect.kind
    }

    /// The database file, on SQLite.
    pub fn database_file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Writes a consistent snapshot of a SQLite database to a new file (`VACUUM INTO`, which
    /// reads inside one transaction while writers carry on).
    pub async fn backup_to(&self, path: &str) -> Result<(), StoreError> {
        if self.dialect.kind != Kind::Sqlite {
            return Err(StoreError::Internal("backup_to is for SQLite".into()));
        }
        // A backup holds the token signing key: readable by its owner only. VACUUM INTO
        // accepts an empty file.
        crate::security::create_private_file(std::path::Path::new(path))
            .map_err(|e| StoreError::Internal(format!("cannot create {path}: {e}")))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_owned())
            .execute(&self.read.pool)
            .await?;
        Ok(())
    }
}

pub(crate) fn ids_json(ids: &[&ProductId]) -> String {
    serde_json::to_string(&ids.iter().map(|p| p.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

fn u64_of(row: &impl Get, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.col(col)?;
    u64::try_from(v).map_err(|_| StoreError::Internal(format!("negative {col} in the database")))
}

pub(crate) fn stock_record(row: &impl Get) -> Result<StockRecord, StoreError> {
    let id: String = row.col("product_id")?;
    Ok(StockRecord {
        product_id: ProductId::parse(&id)
            .map_err(|e| StoreError::Internal(format!("bad product id {id:?}: {e}")))?,
        location: row.col("location")?,
        stock: Stock::from_stored(row.col("total")?, row.col("allocated")?, row.col("held")?)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        created_at: Timestamp(row.col("created_at")?),
        updated_at: Timestamp(row.col("updated_at")?),
    })
}

macro_rules! history_columns {
    () => {
        "id, product_id, location, action, quantity, total, allocated, order_id, reason, created_at"
    };
}
pub(crate) use history_columns;

pub(crate) fn history_entry(row: &impl Get) -> Result<HistoryEntry, StoreError> {
    let id: String = row.col("product_id")?;
    let action: String = row.col("action")?;
    Ok(HistoryEntry {
        id: row.col("id")?,
        product_id: ProductId::parse(&id)
            .map_err(|e| StoreError::Internal(format!("bad product id {id:?}: {e}")))?,
        location: row.col("location")?,
        action: action
            .parse::<Action>()
            .map_err(|_| StoreError::Internal(format!("unknown action {action:?}")))?,
        quantity: u64_of(row, "quantity")?,
        after: Stock::from_figures(row.col("total")?, row.col("allocated")?)
            .map_err(|e| StoreError::Internal(e.to_string()))?,
        order_id: row.col("order_id")?,
        reason: row.col("reason")?,
        created_at: Timestamp(row.col("created_at")?),
    })
}

pub(crate) fn credential(row: &AnyRow) -> Result<Credential, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(Credential {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("unknown role {role:?}")))?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqlStore {
    async fn execute(&self, request: WriteRequest) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    async fn stock(&self, product: &ProductId) -> Result<Option<ProductStock>, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id, location, total, allocated, held, created_at, updated_at \
             FROM stock WHERE product_id = $1 ORDER BY location",
        )
        .bind(product.as_str())
        .fetch_all(&self.read.pool)
        .await?;
        let records = rows.iter().map(stock_record).collect::<Result<_, _>>()?;
        Ok(ProductStock::group(records).pop())
    }

    async fn stocks(
        &self,
        page: Page,
        location: Option<&str>,
    ) -> Result<Paged<ProductStock>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT product_id FROM stock WHERE (CAST($1 AS TEXT) IS NULL OR location = $1) \
             GROUP BY product_id ORDER BY product_id LIMIT $2 OFFSET $3",
        )
        .bind(location.map(str::to_owned))
        .bind(to_i64(page.limit))
        .bind(to_i64(page.offset))
        .fetch_all(&self.read.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT product_id) FROM stock \
             WHERE (CAST($1 AS TEXT) IS NULL OR location = $1)",
        )
        .bind(location.map(str::to_owned))
        .fetch_one(&self.read.pool)
        .await?;
        let ids = ids
            .iter()
            .map(|id| ProductId::parse(id).map_err(|e| StoreError::Internal(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Paged {
            items: self.stocks_by_ids(&ids).await?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn stocks_by_ids(&self, ids: &[ProductId]) -> Result<Vec<ProductStock>, StoreError> {
        let refs: Vec<&ProductId> = ids.iter().collect();
        let rows = sqlx::query(self.dialect.stocks_by_ids)
            .bind(ids_json(&refs))
            .fetch_all(&self.read.pool)
            .await?;
        let records = rows.iter().map(stock_record).collect::<Result<_, _>>()?;
        let found = ProductStock::group(records);
        Ok(ids
            .iter()
            .filter_map(|id| found.iter().find(|r| &r.product_id == id).cloned())
            .collect())
    }

    async fn history(
        &self,
        product: &ProductId,
        query: &HistoryQuery,
        page: Page,
    ) -> Result<Paged<HistoryEntry>, StoreError> {
        macro_rules! filter {
            () => {
                "WHERE product_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR action = $2) \
             AND (CAST($3 AS BIGINT) IS NULL OR created_at >= $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR created_at < $4) \
             AND (CAST($5 AS TEXT) IS NULL OR location = $5)"
            };
        }
        let location = query.location.clone();
        let action = query.action.map(|a| a.as_str().to_owned());
        let from = query.created_from.map(Timestamp::micros);
        let before = query.created_before.map(Timestamp::micros);
        let rows = sqlx::query(concat!(
            "SELECT ",
            history_columns!(),
            " FROM history ",
            filter!(),
            " ORDER BY seq DESC LIMIT $6 OFFSET $7"
        ))
        .bind(product.as_str())
        .bind(action.clone())
        .bind(from)
        .bind(before)
        .bind(location.clone())
        .bind(to_i64(page.limit))
        .bind(to_i64(page.offset))
        .fetch_all(&self.read.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT COUNT(*) FROM history ", filter!()))
            .bind(product.as_str())
            .bind(action)
            .bind(from)
            .bind(before)
            .bind(location)
            .fetch_one(&self.read.pool)
            .await?;
        Ok(Paged {
            items: rows.iter().map(history_entry).collect::<Result<_, _>>()?,
            total: u64::try_from(total).unwrap_or(0),
        })
    }

    async fn history_entry(
        &self,
        product: &ProductId,
        id: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            history_columns!(),
            " FROM history WHERE id = $1 AND product_id = $2"
        ))
        .bind(id)
        .bind(product.as_str())
        .fetch_optional(&self.read.pool)
        .await?;
        row.as_ref().map(history_entry).transpose()
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        verify::run(&self.read.pool).await
    }

    async fn insert_credential(&self, c: &Credential) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO credentials (client_id, name, role, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(c.role.as_str())
        .bind(&c.secret_hash)
        .bind(c.created_at.micros())
        .execute(&self.read.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn upsert_credential(&self, c: &Credential) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (client_id, name, role, secret_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE \
             SET name = excluded.name, role = excluded.role, secret_hash = excluded.secret_hash",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(c.role.as_str())
        .bind(&c.secret_hash)
        .bind(c.created_at.micros())
        .execute(&self.read.pool)
        .await?;
        Ok(())
    }

    async fn credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError> {
        let row = sqlx::query(
            "SELECT client_id, name, role, secret_hash, created_at FROM credentials \
             WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.read.pool)
        .await?;
        row.as_ref().map(credential).transpose()
    }

    async fn credential_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM credentials")
            .fetch_one(&self.read.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn setting_or_insert(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(candidate)
        .execute(&self.read.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.read.pool)
                .await?,
        )
    }

    async fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        crate::security::credentials(&self.read.pool).await
    }

    async fn delete_credential(&self, client_id: &str) -> Result<bool, StoreError> {
        crate::security::delete_credential(&self.read.pool, client_id).await
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        crate::security::setting(&self.read.pool, name).await
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        crate::security::set_setting(&self.read.pool, name, value).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read.pool).await?;
        Ok(())
    }

    async fn product(&self, id: &str) -> Result<Option<Product>, StoreError> {
        orders::product(&self.read, id).await
    }

    async fn product_by_sku(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        orders::product_by_sku(&self.read.pool, sku).await
    }

    async fn products(&self, page: Page) -> Result<Paged<Product>, StoreError> {
        orders::products(&self.read.pool, page).await
    }

    async fn update_product(
        &self,
        id: &ProductId,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> Result<Option<Product>, StoreError> {
        orders::update_product(&self.read, id, patch, now).await
    }

    async fn delete_product(&self, id: &ProductId) -> Result<bool, StoreError> {
        orders::delete_product(&self.read.pool, id).await
    }

    async fn cart(&self, id: &str) -> Result<Option<Cart>, StoreError> {
        orders::cart(&self.read, id).await
    }

    async fn delete_cart_item(&self, cart_id: &str, item_id: &str) -> Result<bool, StoreError> {
        orders::delete_cart_item(&self.read.pool, cart_id, item_id).await
    }

    async fn delete_cart(&self, cart_id: &str) -> Result<bool, StoreError> {
        orders::delete_cart(&self.read.pool, cart_id).await
    }

    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        orders::order(&self.read, id).await
    }

    async fn orders(&self, query: &OrderQuery, page: Page) -> Result<Paged<Order>, StoreError> {
        orders::orders(&self.read.pool, query, page).await
    }

    async fn payments(&self, order_id: &str) -> Result<Vec<PaymentTx>, StoreError> {
        orders::payments(&self.read.pool, order_id).await
    }

    async fn payment(&self, order_id: &str, id: &str) -> Result<Option<PaymentTx>, StoreError> {
        orders::payment(&self.read, order_id, id).await
    }

    async fn locations(&self, page: Page) -> Result<Paged<Location>, StoreError> {
        locations::locations(&self.read.pool, page).await
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        locations::location(&self.read.pool, id).await
    }

    async fn location_by_slug(&self, slug: &str) -> Result<Option<Location>, StoreError> {
        locations::location_by_slug(&self.read.pool, slug).await
    }

    async fn update_location(&self, location: &Location) -> Result<Option<Location>, StoreError> {
        locations::update_location(&self.read.pool, location).await
    }

    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
            .bind(before.micros())
            .execute(&self.read.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn expired_payments(
        &self,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<PaymentTx>, StoreError> {
        orders::expired_payments(&self.read.pool, now, limit).await
    }
}
