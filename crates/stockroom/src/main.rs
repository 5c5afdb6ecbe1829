//! `stockroom`: the inventory service (serve), its history check (verify) and its credentials
//! (keys).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stockroom_domain::limits::CLIENT_SECRET_LEN_MIN;
use stockroom_domain::{Clock, Role};
use stockroom_http::clock::SystemClock;
use stockroom_http::{
    auth, AppState, EventSettings, HttpGateway, Limits, PaymentSettings, WebhookRoots,
};
use stockroom_store::{OpenOptions, SqlStore, Store, StoreError};
use tokio::net::TcpListener;

mod bench;
mod transfer;

#[derive(Parser)]
#[command(
    name = "stockroom",
    version,
    about = "Inventory service for online shops, speaking Elastic Path's HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Replay every history entry and check every stock record against it. Exits 1 if any
    /// record disagrees.
    Verify(DbArgs),
    /// Remove old unpaid orders (see docs/operations.md, "Retention").
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
    },
    /// Manage API credentials.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Load-test a server over HTTP (its own, or --url) and check the figures afterwards.
    Bench(bench::BenchArgs),
    /// Write every stock record (with its location), or the whole history, as JSON lines or
    /// CSV.
    Export {
        #[command(flatten)]
        args: transfer::ExportArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Set stock levels per product and location from a JSON-lines or CSV file (as `export`
    /// writes them), through the same write path as the API; safe while servers run, and
    /// importing the same file again changes nothing. Exits 1 if a line was bad or refused.
    Import {
        #[command(flatten)]
        args: transfer::ImportArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Copy a consistent snapshot of a SQLite database to a new file, while the service runs
    /// (for PostgreSQL use pg_dump).
    Backup {
        /// The file to write; it must not exist yet.
        #[arg(long)]
        to: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Database URL: sqlite://PATH (created on first run) or postgres://USER@HOST:PORT/DB.
    #[arg(
        long,
        env = "STOCKROOM_DATABASE_URL",
        default_value = "sqlite://stockroom.db"
    )]
    database_url: String,

    /// Connections for reads (the writer keeps its own: one on SQLite, one per lane, four, on
    /// PostgreSQL).
    #[arg(long, env = "STOCKROOM_POOL_SIZE", default_value_t = 8)]
    pool_size: u32,

    /// Milliseconds a request waits for a free database connection before it is answered 503.
    #[arg(long, env = "STOCKROOM_ACQUIRE_TIMEOUT_MS", default_value_t = 5000)]
    acquire_timeout_ms: u64,

    /// PostgreSQL: milliseconds any one database call may take (a read, a write batch with its
    /// COMMIT, a write's wait for the writer) before it is answered 503 and its connection
    /// dropped; also each session's statement_timeout and idle_in_transaction_session_timeout.
    #[arg(long, env = "STOCKROOM_STATEMENT_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    statement_timeout_ms: u64,

    /// PostgreSQL: milliseconds a connection attempt waits for each host of the URL before it
    /// tries the next (a connect_timeout in the URL wins).
    #[arg(long, env = "STOCKROOM_CONNECT_TIMEOUT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    connect_timeout_ms: u64,
}

impl DbArgs {
    /// The options these flags set; the rest are the defaults.
    fn open_options(&self, create_if_missing: bool) -> OpenOptions {
        OpenOptions {
            pool_size: self.pool_size,
            acquire_timeout: Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            create_if_missing,
            ..OpenOptions::default()
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "STOCKROOM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    #[command(flatten)]
    db: DbArgs,

    /// Also serve GET /metrics (Prometheus text) on this address, without a token: for a
    /// scraper on a private network. On the main address /metrics needs an administrator's
    /// bearer token.
    #[arg(long, env = "STOCKROOM_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,

    /// Client id of an administrator credential to create (or update) at start; needs
    /// STOCKROOM_CLIENT_SECRET. Without it, the first start creates one and prints it once.
    #[arg(long, env = "STOCKROOM_CLIENT_ID", requires = "client_secret")]
    client_id: Option<String>,

    /// Secret of the credential named by --client-id (read it from the environment rather
    /// than the command line, where other users can see it).
    #[arg(
        long,
        env = "STOCKROOM_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    client_secret: Option<String>,

    /// URL of an HTTP payment gateway, enabling the `http` gateway: Stockroom POSTs
    /// {order_id, payment_id, amount, currency, method} with an Idempotency-Key and expects
    /// 2xx {"decision":"approve"}; anything else is a failed payment.
    #[arg(long, env = "STOCKROOM_PAYMENT_GATEWAY_URL")]
    payment_gateway_url: Option<String>,

    /// Milliseconds to wait for the HTTP payment gateway before the payment counts as failed.
    #[arg(
        long,
        env = "STOCKROOM_PAYMENT_GATEWAY_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    payment_gateway_timeout_ms: u64,

    /// Milliseconds after which a payment attempt whose outcome was never recorded (the process
    /// died while the gateway was asked) is failed and its allocation released. Must exceed the
    /// gateway timeout.
    #[arg(
        long,
        env = "STOCKROOM_PAYMENT_PENDING_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    payment_pending_timeout_ms: u64,

    /// Seconds an authorization may wait for its capture; then it is voided and its stock
    /// released (once, recorded in the history). Default: 7 days.
    #[arg(
        long,
        env = "STOCKROOM_AUTHORIZATION_TIMEOUT_SECS",
        default_value_t = 604_800
    )]
    authorization_timeout_secs: u64,

    /// Checkouts and payments one shopper token may make per minute (all at once or spread);
    /// beyond it they are answered 429 with Retry-After. 0: no limit.
    #[arg(
        long,
        env = "STOCKROOM_ORDER_WRITES_PER_TOKEN_PER_MINUTE",
        default_value_t = 60
    )]
    order_writes_per_token_per_minute: u32,

    /// Checkouts and payments shoppers may make per minute from one client address (an IPv6
    /// /64 counts as one; see --trusted-proxies). 0: no limit.
    #[arg(
        long,
        env = "STOCKROOM_ORDER_WRITES_PER_ADDRESS_PER_MINUTE",
        default_value_t = 600
    )]
    order_writes_per_address_per_minute: u32,

    /// Requests handled at once; beyond it requests are answered 503 with Retry-After at once
    /// rather than queued.
    #[arg(
        long,
        env = "STOCKROOM_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    max_concurrent_requests: usize,

    /// Milliseconds one request may take before it is answered 503 (its outcome then unknown:
    /// retry with the same Idempotency-Key). Must exceed the payment gateway timeout.
    #[arg(long, env = "STOCKROOM_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    request_timeout_ms: u64,

    /// Milliseconds a request's head may take to arrive, from its first byte (from the
    /// connection's start, for its first request); a slower connection is closed.
    #[arg(
        long,
        env = "STOCKROOM_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,

    /// Milliseconds a kept-alive connection may wait for its next request before it is closed.
    /// Set it above the idle timeout of a load balancer in front.
    #[arg(
        long,
        env = "STOCKROOM_KEEP_ALIVE_TIMEOUT_MS",
        default_value_t = 75_000
    )]
    keep_alive_timeout_ms: u64,

    /// Milliseconds a request's body may take to arrive; a slower one is answered 408. Bodies
    /// are read before the request counts against --max-concurrent-requests.
    #[arg(long, env = "STOCKROOM_BODY_READ_TIMEOUT_MS", default_value_t = 10_000)]
    body_read_timeout_ms: u64,

    /// Connections open at once; more are closed as soon as they are accepted. Lowered to fit
    /// the process's open-file limit.
    #[arg(long, env = "STOCKROOM_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,

    /// Connections open at once from one client address (an IPv6 /64 counts as one).
    #[arg(
        long,
        env = "STOCKROOM_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    max_connections_per_address: usize,

    /// Addresses of reverse proxies whose X-Forwarded-For names the client (comma-separated).
    /// Rate limits per address then apply to the client, not the proxy.
    #[arg(long, env = "STOCKROOM_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,

    /// Failed sign-ins (wrong secret, unknown client id) allowed per client address per
    /// minute, all at once or spread; beyond it the token endpoint answers 429. A client id
    /// takes ten times as many from all addresses together.
    #[arg(
        long,
        env = "STOCKROOM_SIGN_IN_FAILURES_PER_MINUTE",
        default_value_t = 10
    )]
    sign_in_failures_per_minute: u32,

    /// Deliver webhooks to loopback, private and link-local addresses too (a shop whose ERP
    /// sits on its own network; tests). Off, such targets are refused — checked on the
    /// address a URL resolves to at each delivery, not only on its text.
    #[arg(long, env = "STOCKROOM_WEBHOOK_ALLOW_PRIVATE_NETWORKS")]
    webhook_allow_private_networks: bool,

    /// How long a webhook receiver (or NATS) may take to acknowledge an event.
    #[arg(long, env = "STOCKROOM_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    webhook_timeout_ms: u64,

    /// Delivery attempts before an event is failed for good (kept in the logs).
    #[arg(long, env = "STOCKROOM_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12)]
    webhook_max_attempts: u32,

    /// The first retry's delay; each next one doubles (with jitter), up to an hour.
    #[arg(long, env = "STOCKROOM_WEBHOOK_BACKOFF_MS", default_value_t = 1000)]
    webhook_backoff_ms: u64,

    /// A PEM file of certificate authorities (one or more) that https webhook receivers'
    /// certificates may also chain to, besides the Mozilla roots built in: a shop's private CA
    /// for an ERP on its own network. A file that cannot be used stops `serve` at start.
    #[arg(long, env = "STOCKROOM_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<std::path::PathBuf>,

    /// Delivered and failed events are pruned after this many hours.
    #[arg(long, env = "STOCKROOM_EVENT_RETENTION_HOURS", default_value_t = 168)]
    event_retention_hours: u64,

    /// The NATS server that `nats` integrations publish to (JetStream), e.g.
    /// nats://127.0.0.1:4222.
    #[arg(long, env = "STOCKROOM_NATS_URL")]
    nats_url: Option<String>,

    /// Do not deliver events from this instance (another instance does).
    #[arg(long, env = "STOCKROOM_NO_EVENT_DISPATCH")]
    no_event_dispatch: bool,

    /// Seconds a cart may go unchanged before it is purged with its items (Elastic Path:
    /// seven days). Each instance purges idle carts every few seconds.
    #[arg(long, env = "STOCKROOM_CART_EXPIRY_SECS", default_value_t = stockroom_domain::limits::CART_EXPIRY_DEFAULT_SECS)]
    cart_expiry_secs: u64,

    /// Log format: text for people, json for log collectors. The level comes from
    /// STOCKROOM_LOG (e.g. info, debug, stockroom_store=debug).
    #[arg(long, env = "STOCKROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn event_settings(args: &ServeArgs) -> anyhow::Result<EventSettings> {
    let webhook_roots = match &args.webhook_ca_file {
        Some(path) => {
            let roots = WebhookRoots::from_pem_file(path)
                .map_err(|e| anyhow::anyhow!("--webhook-ca-file: {e}"))?;
            tracing::info!(
                file = %path.display(),
                certificates = roots.len(),
                "https webhooks also trust these certificate authorities"
            );
            roots
        }
        None => WebhookRoots::default(),
    };
    Ok(EventSettings {
        dispatch: !args.no_event_dispatch,
        allow_private_networks: args.webhook_allow_private_networks,
        delivery_timeout: Duration::from_millis(args.webhook_timeout_ms.max(1)),
        max_attempts: args.webhook_max_attempts.max(1),
        backoff_base: Duration::from_millis(args.webhook_backoff_ms),
        retention: Duration::from_secs(args.event_retention_hours.saturating_mul(3600)),
        nats_url: args.nats_url.clone(),
        webhook_roots,
        ..EventSettings::default()
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// Remove orders never paid (no payment was ever tried for them) that were checked out more
    /// than N days ago, with their items. They hold no stock; paid orders are always kept.
    PurgeUnpaid {
        /// Age in days (at least 1) beyond which unpaid orders are removed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        older_than_days: u32,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a credential and print its client id and secret (shown only this once).
    Create {
        /// A name to recognise the credential by.
        #[arg(long)]
        name: String,
        /// admin: may do everything; shopper: gets shopper tokens only.
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the credentials (client id, role, name; never secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Give a credential a new secret, printed once; every token it was given stops working
    /// (on every instance within 2 s).
    RotateSecret {
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Remove a credential; every token it was given stops working (on every instance within
    /// 2 s).
    Revoke {
        #[arg(long)]
        client_id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Replace the token signing key: every token issued so far stops working (on every
    /// instance within 2 s); clients sign in again.
    RotateSigningKey {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Shopper,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Shopper => Role::Shopper,
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOCKROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open(db: &DbArgs, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<SqlStore>> {
    open_with(db, clock, true).await
}

/// Opens an existing database only: for commands that read one (`verify`, `backup`).
async fn open_existing(db: &DbArgs) -> anyhow::Result<Arc<SqlStore>> {
    open_with(db, Arc::new(SystemClock), false).await
}

async fn open_with(
    db: &DbArgs,
    clock: Arc<dyn Clock>,
    create_if_missing: bool,
) -> anyhow::Result<Arc<SqlStore>> {
    let options = db.open_options(create_if_missing);
    // OpenError's messages never carry the URL's password.
    Ok(SqlStore::open(&db.database_url, options, clock).await?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logs(args.log_format);
    if let Some(secret) = &args.client_secret {
        if secret.chars().count() < CLIENT_SECRET_LEN_MIN {
            anyhow::bail!(
                "STOCKROOM_CLIENT_SECRET (--client-secret) must be at least \
                 {CLIENT_SECRET_LEN_MIN} characters; make one with e.g. `openssl rand -base64 32`"
            );
        }
    }
    let events = event_settings(&args)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open(&args.db, clock.clone()).await?;
    warn_if_others_can_read(&store);
    ensure_credential(&*store, &args, &*clock).await?;
    if args.request_timeout_ms <= args.payment_gateway_timeout_ms {
        anyhow::bail!(
            "--request-timeout-ms ({}) must exceed --payment-gateway-timeout-ms ({})",
            args.request_timeout_ms,
            args.payment_gateway_timeout_ms
        );
    }
    if args.payment_pending_timeout_ms <= args.payment_gateway_timeout_ms {
        anyhow::bail!(
            "--payment-pending-timeout-ms ({}) must exceed --payment-gateway-timeout-ms ({}), \
             or a slow approval could arrive after its allocation was released",
            args.payment_pending_timeout_ms,
            args.payment_gateway_timeout_ms
        );
    }
    let payments = PaymentSettings {
        http: args.payment_gateway_url.clone().map(|url| HttpGateway {
            url,
            timeout: Duration::from_millis(args.payment_gateway_timeout_ms),
        }),
        pending_timeout: Duration::from_millis(args.payment_pending_timeout_ms),
        authorization_timeout: Duration::from_secs(args.authorization_timeout_secs.max(1)),
    };
    let state = AppState::new(store.clone(), clock)
        .await
        .context("loading the token signing key")?
        .with_payments(payments)
        .with_limits(limits(&args))
        .with_events(events);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    if let Some(metrics_addr) = args.metrics_listen {
        let metrics = TcpListener::bind(metrics_addr)
            .await
            .with_context(|| format!("cannot listen on {metrics_addr} for metrics"))?;
        let bound = metrics
            .local_addr()
            .context("reading the metrics address")?;
        println!("metrics on http://{bound}/metrics");
        tracing::info!(addr = %bound, "serving /metrics without a token");
        tokio::spawn(async move {
            if let Err(e) = stockroom_http::metrics::serve_plain(metrics).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let shutdown = shutdown_signal()?;
    println!("stockroom listening on http://{addr}");
    tracing::info!(
        %addr,
        database = %stockroom_store::redact_url(&args.db.database_url),
        "stockroom is serving"
    );
    let dashboard = stockroom_dashboard::router(state.clone());
    stockroom_http::serve_with(listener, state, dashboard, shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

fn limits(args: &ServeArgs) -> Limits {
    let ms = Duration::from_millis;
    Limits {
        max_concurrent_requests: args.max_concurrent_requests.max(1),
        request_timeout: ms(args.request_timeout_ms),
        header_read_timeout: ms(args.header_read_timeout_ms.max(1)),
        keep_alive_timeout: ms(args.keep_alive_timeout_ms.max(1)),
        body_read_timeout: ms(args.body_read_timeout_ms.max(1)),
        max_connections: connections_within_file_limit(args.max_connections.max(1), &args.db),
        max_connections_per_address: args.max_connections_per_address.max(1),
        trusted_proxies: args.trusted_proxies.clone(),
        sign_in_failures_per_minute: args.sign_in_failures_per_minute.max(1),
        cart_expiry: Duration::from_secs(args.cart_expiry_secs.max(1)),
        order_writes_per_token_per_minute: args.order_writes_per_token_per_minute,
        order_writes_per_address_per_minute: args.order_writes_per_address_per_minute,
    }
}

/// Descriptors kept for everything but client connections: database files and connections,
/// the listener, logs.
const FILES_RESERVED: u64 = 64;

/// `wanted` connections, if the open-file limit allows them (raising the soft limit toward the
/// hard one if needed); else as many as it allows, with a warning. A cap above the limit would
/// let stalled connections take every descriptor, and accepting would fail for everyone.
fn connections_within_file_limit(wanted: usize, db: &DbArgs) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let reserved = FILES_RESERVED + 2 * u64::from(db.pool_size);
    let needed = wanted as u64 + reserved;
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < needed) {
        let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
        let attempt = rustix::process::Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, attempt).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    let Some(soft) = limit.current else {
        return wanted;
    };
    let fits = usize::try_from(soft.saturating_sub(reserved).max(1)).unwrap_or(wanted);
    if fits < wanted {
        tracing::warn!(
            max_connections = fits,
            asked = wanted,
            open_file_limit = soft,
            "lowered --max-connections to fit the open-file limit (raise it with ulimit -n)"
        );
    }
    fits.min(wanted)
}

/// The database holds the token signing key: anyone who can read it can mint tokens.
fn warn_if_others_can_read(store: &SqlStore) {
    let Some(file) = store.database_file() else {
        return;
    };
    for (path, mode) in stockroom_store::security::files_open_to_others(file) {
        tracing::warn!(
            file = %path.display(),
            mode = %format!("{mode:o}"),
            "the database file can be read by other users, and it holds the token signing key; \
             make it private: chmod 600"
        );
    }
}

/// The credential from the environment, or on first start a new administrator credential,
/// printed once on standard output (never logged).
async fn ensure_credential(
    store: &dyn Store,
    args: &ServeArgs,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    if let (Some(id), Some(secret)) = (&args.client_id, &args.client_secret) {
        let stored = store.credential(id).await?;
        if stored
            .as_ref()
            .is_some_and(|c| c.role == Role::Admin && auth::secret_matches(secret, &c.secret_hash))
        {
            // Unchanged: its tokens stay valid (every instance starts with the same secret).
            return Ok(());
        }
        let credential =
            auth::credential(id, secret, "from environment", Role::Admin, clock.now())?;
        store.upsert_credential(&credential).await?;
        if stored.is_some() {
            tracing::warn!(
                client_id = %id,
                "the administrator credential from the environment has a new secret: \
                 every token issued with the old one is revoked"
            );
        } else {
            tracing::info!(client_id = %id, "administrator credential from the environment");
        }
        return Ok(());
    }
    if store.credential_count().await? > 0 {
        return Ok(());
    }
    let (credential, secret) =
        auth::new_credential("first administrator", Role::Admin, clock.now())?;
    store.insert_credential(&credential).await?;
    println!(
        "Created an administrator credential. It is shown only this once; keep the secret safe.\n\
         client_id:     {}\nclient_secret: {secret}",
        credential.client_id
    );
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives right after start-up is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: finishing requests in flight");
    })
}

async fn purge_unpaid(older_than_days: u32, db: DbArgs) -> anyhow::Result<()> {
    let clock = SystemClock;
    let store = open_existing(&db).await?;
    let before = stockroom_domain::Timestamp::from_secs(
        clock.now().secs() - i64::from(older_than_days) * 24 * 3600,
    );
    let removed = stockroom_store::retention::purge_unpaid_orders(&*store, before)
        .await
        .context("removing unpaid orders")?;
    println!("removed {removed} unpaid orders older than {older_than_days} days");
    Ok(())
}

async fn verify(db: DbArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&db).await?;
    let report = store.verify().await?;
    for p in &report.problems {
        println!("MISMATCH {}: {}", p.product_id, p.detail);
    }
    println!(
        "checked {} stock records, {} records with history, {} history entries: {}",
        report.records_checked,
        report.records_replayed,
        report.entries_checked,
        if report.is_ok() {
            "all agree".to_owned()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn export(args: transfer::ExportArgs, db: DbArgs) -> anyhow::Result<()> {
    transfer::check_export(&args)?;
    let store = open_existing(&db).await?;
    match transfer::export(store, args).await {
        // The reader went away (`stockroom export | head`): not an error of ours.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn import(args: transfer::ImportArgs, db: DbArgs) -> anyhow::Result<ExitCode> {
    let options = args.open_options(db.open_options(true));
    let store = SqlStore::open(&db.database_url, options, Arc::new(SystemClock)).await?;
    let clean = transfer::import(store, args).await?;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn backup(to: std::path::PathBuf, db: DbArgs) -> anyhow::Result<()> {
    if !db.database_url.starts_with("sqlite:") {
        anyhow::bail!(
            "backup copies SQLite databases; for PostgreSQL use pg_dump (see docs/operations.md)"
        );
    }
    if to.exists() {
        anyhow::bail!("{} exists already; give a new file", to.display());
    }
    let store = open_existing(&db).await?;
    let path = to
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", to.display()))?;
    store.backup_to(path).await?;
    println!("backed up to {}", to.display());
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, role, db } => keys_create(name, role, db).await,
        KeysCommand::List { db } => {
            let store = open_existing(&db).await?;
            for c in store.credentials().await? {
                println!("{}\t{}\t{}", c.client_id, c.role.as_str(), c.name);
            }
            Ok(())
        }
        KeysCommand::RotateSecret { client_id, db } => {
            let store = open_existing(&db).await?;
            let Some(old) = store.credential(&client_id).await? else {
                anyhow::bail!("no credential has client id {client_id:?}");
            };
            let secret = auth::random_string(32);
            let new = auth::credential(&client_id, &secret, &old.name, old.role, old.created_at)?;
            store.upsert_credential(&new).await?;
            println!("client_id:     {client_id}\nclient_secret: {secret}");
            eprintln!("the old secret and every token issued with it no longer work");
            Ok(())
        }
        KeysCommand::Revoke { client_id, db } => {
            let store = open_existing(&db).await?;
            if !store.delete_credential(&client_id).await? {
                anyhow::bail!("no credential has client id {client_id:?}");
            }
            println!("removed {client_id}; its tokens no longer work");
            Ok(())
        }
        KeysCommand::RotateSigningKey { db } => {
            let store = open_existing(&db).await?;
            store
                .set_setting(
                    stockroom_http::tokens::SIGNING_KEY_SETTING,
                    &stockroom_http::tokens::new_signing_key(),
                )
                .await?;
            println!("rotated the token signing key; every token issued before no longer works");
            Ok(())
        }
    }
}

async fn keys_create(name: String, role: RoleArg, db: DbArgs) -> anyhow::Result<()> {
    let clock = SystemClock;
    let store = open(&db, Arc::new(SystemClock)).await?;
    let (credential, secret) = auth::new_credential(&name, role.into(), clock.now())?;
    match store.insert_credential(&credential).await {
        Err(StoreError::AlreadyExists) => {
            anyhow::bail!("a credential with that client id exists; try again")
        }
        other => other?,
    }
    println!(
        "client_id:     {}\nclient_secret: {secret}\nrole:          {}",
        credential.client_id,
        Role::from(role).as_str()
    );
    Ok(())
}

/// mimalloc instead of the system allocator: under load the server's async workers spent about
/// a tenth of their time in glibc's malloc/free (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Verify(db) => verify(db).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Export { args, db } => export(args, db).await.map(|()| ExitCode::SUCCESS),
            Command::Import { args, db } => import(args, db).await,
            Command::Backup { to, db } => backup(to, db).await.map(|()| ExitCode::SUCCESS),
            Command::Keys { command } => keys(command).await.map(|()| ExitCode::SUCCESS),
            Command::Orders {
                command:
                    OrdersCommand::PurgeUnpaid {
                        older_than_days,
                        db,
                    },
            } => purge_unpaid(older_than_days, db)
                .await
                .map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
