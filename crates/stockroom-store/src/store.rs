//! [`SqlStore`]: the [`Store`] over SQLite (rusqlite) or PostgreSQL (tokio-postgres), one body
//! of code and one test suite for both.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stockroom_domain::{Clock, ProductId, Timestamp};
use tokio::sync::{mpsc, oneshot};

use crate::api::Store;
use crate::dialect::{Dialect, Kind, POSTGRES, SQLITE};
use crate::error::{OpenError, StoreError};
use crate::exec::{args, open_sqlite, Reader};
use crate::model::*;
use crate::open::{kind_of, pg_config, pg_pool, redact_url, sqlite_file, SqliteMode};
use crate::verify::{self, VerifyReport};
use crate::writer::{self, Job, Lane, WriteDb};
use crate::{carts, catalog, customers, locations, migrate, orders, rows, stock};

/// How to open the store.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Connections for reads (SQLite: idle read connections kept; PostgreSQL: the read pool).
    pub pool_size: u32,
    /// How long a request waits for a free connection (or a new one) before it is answered 503.
    pub acquire_timeout: Duration,
    /// Writes that may wait for the writer before senders are held back.
    pub write_queue_capacity: usize,
    /// Most writes committed in one database transaction.
    pub write_batch_max: usize,
    /// Writer lanes on PostgreSQL: batches in flight at once, each on its own connection
    /// (SQLite always has one: it has one write lock). Writes are routed to lanes by what they
    /// change (`Command::lane`).
    pub write_lanes: usize,
    /// Whether a SQLite database that does not exist is created (`serve`), or is an error
    /// (`verify`, `backup`: a mistyped path must not pass as an empty database).
    pub create_if_missing: bool,
    /// PostgreSQL: the longest any one database call may take — a read, a write batch (its
    /// `COMMIT` included), a write's whole wait for the writer — before it is answered
    /// unavailable (503) and its connection dropped; also each session's `statement_timeout`
    /// and `idle_in_transaction_session_timeout`. Long scans (`verify`, `export`) and
    /// migrations are exempt.
    pub statement_timeout: Duration,
    /// PostgreSQL: how long a connection attempt waits for each host of the URL before it
    /// tries the next.
    pub connect_timeout: Duration,
}

impl OpenOptions {
    fn pg_timeouts(&self) -> crate::open::PgTimeouts {
        crate::open::PgTimeouts {
            connect: self.connect_timeout,
            statement: Some(self.statement_timeout),
        }
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            pool_size: 8,
            acquire_timeout: Duration::from_secs(5),
            write_queue_capacity: 4096,
            write_batch_max: 256,
            write_lanes: 8,
            create_if_missing: true,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

pub struct SqlStore {
    dialect: &'static Dialect,
    pub(crate) read: Reader,
    /// The database file, on SQLite.
    file: Option<std::path::PathBuf>,
    /// Each writer lane's queue.
    lanes: Vec<mpsc::Sender<Job>>,
    /// PostgreSQL: the longest a write waits for the writer (queue and batch) before it is
    /// answered unavailable, its outcome unknown.
    write_deadline: Option<Duration>,
}

fn connect_error(url: &str) -> impl Fn(StoreError) -> OpenError + '_ {
    move |e| OpenError::Connect {
        url: redact_url(url),
        reason: e.to_string(),
    }
}

fn migrate_error(url: &str) -> impl Fn(StoreError) -> OpenError + '_ {
    move |e| OpenError::Migrate {
        url: redact_url(url),
        reason: e.to_string(),
    }
}

impl SqlStore {
    /// Opens (creating, for SQLite) the database, applies migrations and starts the writer.
    pub async fn open(
        url: &str,
        options: OpenOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<SqlStore>, OpenError> {
        let kind = kind_of(url)?;
        let write_deadline = (kind == Kind::Postgres).then_some(options.statement_timeout);
        let (dialect, read, lanes, file) = match kind {
            Kind::Sqlite => open_sqlite_db(url, &options)?,
            Kind::Postgres => {
                let (dialect, read, lanes) = open_pg_db(url, &options).await?;
                (dialect, read, lanes, None)
            }
        };
        let capacity = (options.write_queue_capacity / lanes.len().max(1)).max(1);
        let (senders, queues): (Vec<_>, Vec<_>) =
            lanes.iter().map(|_| mpsc::channel(capacity)).unzip();
        let lane = Arc::new(Lane {
            dialect,
            clock,
            batch_max: options.write_batch_max.max(1),
            deadline: write_deadline,
        });
        start_writer(lanes.into_iter().zip(queues).collect(), lane).map_err(|e| {
            OpenError::Connect {
                url: redact_url(url),
                reason: format!("cannot start the writer: {e}"),
            }
        })?;
        Ok(Arc::new(SqlStore {
            dialect,
            read,
            file,
            lanes: senders,
            write_deadline,
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
        // A backup holds the token signing key: readable by its owner only. VACUUM INTO
        // accepts an empty file.
        crate::security::create_private_file(std::path::Path::new(path))
            .map_err(|e| StoreError::Internal(format!("cannot create {path}: {e}")))?;
        self.read.backup_to(path).await
    }

    /// Sends a write through the writer; `Ok(true)` if it applied, `Ok(false)` if it was
    /// refused as not found.
    async fn found(&self, command: Command) -> Result<bool, StoreError> {
        match self.execute(WriteRequest::new(command)).await?.outcome {
            Outcome::Applied(_) => Ok(true),
            Outcome::Refused(Rejection::NotFound) => Ok(false),
            Outcome::Refused(other) => Err(StoreError::Internal(format!(
                "a removal was refused: {other:?}"
            ))),
        }
    }
}

type Opened = (&'static Dialect, Reader, Vec<WriteDb>);
/// SQLite's [`Opened`], and its database file.
type OpenedFile = (
    &'static Dialect,
    Reader,
    Vec<WriteDb>,
    Option<std::path::PathBuf>,
);

/// SQLite: the writer's connection (which applies the migrations first), inline readers, and
/// the database file.
fn open_sqlite_db(url: &str, options: &OpenOptions) -> Result<OpenedFile, OpenError> {
    let (path, mode) = sqlite_file(url, options.create_if_missing)?;
    if mode == SqliteMode::Existing && !std::path::Path::new(&path).exists() {
        return Err(connect_error(url)(StoreError::Unavailable(format!(
            "no database file at {path}"
        ))));
    }
    // The database holds the token signing key: create it readable by its owner only (SQLite
    // gives its -wal and -shm files the database's mode).
    if mode == SqliteMode::Create {
        crate::security::create_private_file(std::path::Path::new(&path)).map_err(|e| {
            connect_error(url)(StoreError::Unavailable(format!(
                "cannot create {path}: {e}"
            )))
        })?;
    }
    let create = || -> Result<rusqlite::Connection, StoreError> {
        // Creates the file (a new database) if needed; every connection after it opens it.
        rusqlite::Connection::open(&path)?;
        open_sqlite(&path, false)
    };
    let mut conn = create().map_err(connect_error(url))?;
    migrate::sqlite(&mut conn).map_err(migrate_error(url))?;
    let keep = usize::try_from(options.pool_size.max(1)).unwrap_or(1);
    let read = Reader::sqlite(path.clone(), keep).map_err(connect_error(url))?;
    let file = Some(std::path::PathBuf::from(&path));
    Ok((
        &SQLITE,
        read,
        vec![WriteDb::Lite(Box::new(conn), path)],
        file,
    ))
}

/// PostgreSQL: the read pool (which applies the migrations first), and the lanes' pool.
async fn open_pg_db(url: &str, options: &OpenOptions) -> Result<Opened, OpenError> {
    let size = usize::try_from(options.pool_size.max(1)).unwrap_or(1);
    let config = pg_config(url, options.pg_timeouts())?;
    let read = pg_pool(url, config.clone(), size, options.acquire_timeout)?;
    let mut client = read.get().await.map_err(|e| connect_error(url)(e.into()))?;
    // A migration may rewrite a large table: no statement timeout for it, and the session
    // (its settings changed) is not handed on.
    client
        .batch_execute("SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0")
        .await
        .map_err(|e| connect_error(url)(e.into()))?;
    migrate::postgres(&mut client)
        .await
        .map_err(migrate_error(url))?;
    drop(deadpool_postgres::Object::take(client));
    let lanes = options.write_lanes.max(1);
    let write = pg_pool(url, config, lanes, options.acquire_timeout)?;
    let dbs = (0..lanes).map(|_| WriteDb::Pg(write.clone())).collect();
    let read = crate::exec::PgReader {
        pool: read,
        deadline: options.statement_timeout,
    };
    Ok((&POSTGRES, Reader::Pg(read), dbs))
}

/// The writer runs on a thread and runtime of its own: every statement it awaits wakes it at
/// once instead of queueing behind the HTTP work on the shared workers — its chain of
/// statements is the hot path — and SQLite's batch, which runs on the calling thread, never
/// holds up an async worker.
fn start_writer(
    lanes: Vec<(WriteDb, mpsc::Receiver<Job>)>,
    lane: Arc<Lane>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("stockroom-writer".into())
        .spawn(move || {
            let lanes = lanes
                .into_iter()
                .map(|(db, queue)| writer::run_lane(db, lane.clone(), queue));
            runtime.block_on(futures::future::join_all(lanes));
        })?;
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn execute(&self, request: WriteRequest) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the writer has stopped".into());
        let lane = writer::lane_of(request.command.lane(), self.lanes.len());
        let sent = async {
            self.lanes[lane]
                .send(Job { request, reply })
                .await
                .map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        };
        let Some(deadline) = self.write_deadline else {
            return sent.await;
        };
        // A write never waits longer than this, whatever holds the writer up (a batch ahead
        // of it waiting on a stalled connection). If its batch had not started, it never will
        // (the writer skips jobs whose requester has gone); if it had, its outcome is unknown
        // — and the retry with its Idempotency-Key finds the stored answer, or applies it once.
        tokio::time::timeout(deadline, sent)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "no answer from the writer within {} ms; the write's outcome is unknown",
                    deadline.as_millis()
                )))
            })
    }

    async fn stock(&self, product: &ProductId) -> Result<Option<ProductStock>, StoreError> {
        stock::stock(&self.read, product).await
    }

    async fn stocks(
        &self,
        page: Page,
        location: Option<&str>,
    ) -> Result<Paged<ProductStock>, StoreError> {
        stock::stocks(&self.read, self.dialect, page, location).await
    }

    async fn stocks_by_ids(&self, ids: &[ProductId]) -> Result<Vec<ProductStock>, StoreError> {
        stock::stocks_by_ids(&self.read, self.dialect, ids).await
    }

    async fn locations(&self, page: Page) -> Result<Paged<Location>, StoreError> {
        locations::locations(&self.read, page).await
    }

    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError> {
        locations::location(&self.read, id).await
    }

    async fn location_by_slug(&self, slug: &str) -> Result<Option<Location>, StoreError> {
        locations::location_by_slug(&self.read, slug).await
    }

    async fn update_location(&self, location: &Location) -> Result<Option<Location>, StoreError> {
        locations::update_location(&self.read, location).await
    }

    async fn history(
        &self,
        product: &ProductId,
        query: &HistoryQuery,
        page: Page,
    ) -> Result<Paged<HistoryEntry>, StoreError> {
        stock::history(&self.read, product, query, page).await
    }

    async fn history_entry(
        &self,
        product: &ProductId,
        id: &str,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        stock::history_entry(&self.read, product, id).await
    }

    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        verify::run(&self.read).await
    }

    async fn insert_credential(&self, c: &Credential) -> Result<(), StoreError> {
        let done = self
            .read
            .run(
                "INSERT INTO credentials (client_id, name, role, secret_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO NOTHING",
                args![
                    &c.client_id,
                    &c.name,
                    c.role.as_str(),
                    &c.secret_hash,
                    c.created_at.micros()
                ],
            )
            .await?;
        match done {
            0 => Err(StoreError::AlreadyExists),
            _ => Ok(()),
        }
    }

    async fn upsert_credential(&self, c: &Credential) -> Result<(), StoreError> {
        self.read
            .run(
                "INSERT INTO credentials (client_id, name, role, secret_hash, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (client_id) DO UPDATE \
                 SET name = excluded.name, role = excluded.role, \
                 secret_hash = excluded.secret_hash",
                args![
                    &c.client_id,
                    &c.name,
                    c.role.as_str(),
                    &c.secret_hash,
                    c.created_at.micros()
                ],
            )
            .await?;
        Ok(())
    }

    async fn credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError> {
        let row = self
            .read
            .row(
                "SELECT client_id, name, role, secret_hash, created_at FROM credentials \
                 WHERE client_id = $1",
                args![client_id],
            )
            .await?;
        row.as_ref().map(rows::credential).transpose()
    }

    async fn credential_count(&self) -> Result<u64, StoreError> {
        rows::count(
            self.read
                .row("SELECT COUNT(*) AS n FROM credentials", args![])
                .await?,
        )
    }

    async fn setting_or_insert(&self, name: &str, candidate: &str) -> Result<String, StoreError> {
        self.read
            .run(
                "INSERT INTO settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                args![name, candidate],
            )
            .await?;
        self.read
            .row("SELECT value FROM settings WHERE name = $1", args![name])
            .await?
            .ok_or_else(|| StoreError::Internal(format!("setting {name} vanished")))?
            .col("value")
    }

    async fn credentials(&self) -> Result<Vec<Credential>, StoreError> {
        crate::security::credentials(&self.read).await
    }

    async fn delete_credential(&self, client_id: &str) -> Result<bool, StoreError> {
        crate::security::delete_credential(&self.read, client_id).await
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        crate::security::setting(&self.read, name).await
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        crate::security::set_setting(&self.read, name, value).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read.ready().await
    }

    async fn product(&self, id: &str) -> Result<Option<Product>, StoreError> {
        catalog::product(&self.read, id).await
    }

    async fn product_by_sku(&self, sku: &str) -> Result<Option<Product>, StoreError> {
        catalog::product_by_sku(&self.read, sku).await
    }

    async fn products(&self, page: Page) -> Result<Paged<Product>, StoreError> {
        catalog::products(&self.read, page).await
    }

    async fn update_product(
        &self,
        id: &ProductId,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> Result<Option<Product>, StoreError> {
        catalog::update_product(&self.read, id, patch, now).await
    }

    async fn delete_product(&self, id: &ProductId) -> Result<bool, StoreError> {
        self.found(Command::DeleteProduct {
            product: id.clone(),
        })
        .await
    }

    async fn cart(&self, id: &str) -> Result<Option<Cart>, StoreError> {
        carts::cart(&self.read, id).await
    }

    async fn delete_cart_item(&self, cart_id: &str, item_id: &str) -> Result<bool, StoreError> {
        self.found(Command::DeleteCartItem {
            cart_id: cart_id.to_owned(),
            item_id: item_id.to_owned(),
        })
        .await
    }

    async fn delete_cart(&self, cart_id: &str) -> Result<bool, StoreError> {
        self.found(Command::DeleteCart {
            cart_id: cart_id.to_owned(),
        })
        .await
    }

    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        orders::order(&self.read, id).await
    }

    async fn orders(&self, query: &OrderQuery, page: Page) -> Result<Paged<Order>, StoreError> {
        orders::orders(&self.read, self.dialect.kind, query, page).await
    }

    async fn payments(&self, order_id: &str) -> Result<Vec<PaymentTx>, StoreError> {
        orders::payments(&self.read, order_id).await
    }

    async fn payment(&self, order_id: &str, id: &str) -> Result<Option<PaymentTx>, StoreError> {
        orders::payment(&self.read, order_id, id).await
    }

    async fn create_customer(&self, customer: &Customer) -> Result<(), StoreError> {
        customers::create(&self.read, customer).await
    }

    async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError> {
        customers::get(&self.read, id).await
    }

    async fn customer_by_email(&self, email: &str) -> Result<Option<Customer>, StoreError> {
        customers::by_email(&self.read, email).await
    }

    async fn customers(&self, page: Page) -> Result<Paged<Customer>, StoreError> {
        customers::list(&self.read, page).await
    }

    async fn update_customer(
        &self,
        id: &str,
        patch: &CustomerPatch,
        now: Timestamp,
    ) -> Result<Option<Customer>, StoreError> {
        customers::update(&self.read, id, patch, now).await
    }

    async fn delete_customer(&self, id: &str) -> Result<bool, StoreError> {
        customers::delete(&self.read, id).await
    }

    async fn customer_carts(
        &self,
        customer_id: &str,
        page: Page,
    ) -> Result<Paged<Cart>, StoreError> {
        carts::customer_carts(&self.read, customer_id, page).await
    }

    async fn purge_carts(&self, idle_before: Timestamp) -> Result<u64, StoreError> {
        self.read
            .run(self.dialect.purge_carts, args![idle_before.micros()])
            .await
    }

    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.read
            .run(
                "DELETE FROM idempotency WHERE created_at < $1",
                args![before.micros()],
            )
            .await
    }

    async fn expired_payments(
        &self,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<PaymentTx>, StoreError> {
        orders::expired_payments(&self.read, now, limit).await
    }

    async fn overdue_authorizations(
        &self,
        before: Timestamp,
        limit: u64,
    ) -> Result<Vec<PaymentTx>, StoreError> {
        orders::overdue_authorizations(&self.read, before, limit).await
    }

    async fn unpaid_orders_before(
        &self,
        before: Timestamp,
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        orders::unpaid_orders_before(&self.read, before, limit).await
    }
}
