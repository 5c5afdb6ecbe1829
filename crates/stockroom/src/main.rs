//! `stockroom`: the inventory service (serve), its history check (verify) and its credentials
//! (keys).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stockroom_domain::{Clock, Role};
use stockroom_http::clock::SystemClock;
use stockroom_http::{auth, AppState, HttpGateway, Limits, PaymentSettings};
use stockroom_store::{OpenOptions, SqlStore, Store, StoreError};
use tokio::net::TcpListener;

mod bench;

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
    Serve(ServeArgs),
    /// Replay every history entry and check every stock record against it. Exits 1 if any
    /// record disagrees.
    Verify(DbArgs),
    /// Manage API credentials.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Load-test a server over HTTP (its own, or --url) and check the figures afterwards.
    Bench(bench::BenchArgs),
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
}

#[derive(Args)]
struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "STOCKROOM_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    #[command(flatten)]
    db: DbArgs,

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

    /// Log format: text for people, json for log collectors. The level comes from
    /// STOCKROOM_LOG (e.g. info, debug, stockroom_store=debug).
    #[arg(long, env = "STOCKROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    let options = OpenOptions {
        pool_size: db.pool_size,
        acquire_timeout: Duration::from_millis(db.acquire_timeout_ms),
        create_if_missing,
        ..OpenOptions::default()
    };
    // OpenError's messages never carry the URL's password.
    Ok(SqlStore::open(&db.database_url, options, clock).await?)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logs(args.log_format);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open(&args.db, clock.clone()).await?;
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
    };
    let state = AppState::new(store.clone(), clock)
        .await
        .context("loading the token signing key")?
        .with_payments(payments)
        .with_limits(Limits {
            max_concurrent_requests: args.max_concurrent_requests.max(1),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
        });
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let shutdown = shutdown_signal()?;
    println!("stockroom listening on http://{addr}");
    tracing::info!(
        %addr,
        database = %stockroom_store::redact_url(&args.db.database_url),
        "stockroom is serving"
    );
    stockroom_http::serve(listener, state, shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// The credential from the environment, or on first start a new administrator credential,
/// printed once on standard output (never logged).
async fn ensure_credential(
    store: &dyn Store,
    args: &ServeArgs,
    clock: &dyn Clock,
) -> anyhow::Result<()> {
    if let (Some(id), Some(secret)) = (&args.client_id, &args.client_secret) {
        let credential =
            auth::credential(id, secret, "from environment", Role::Admin, clock.now())?;
        store.upsert_credential(&credential).await?;
        tracing::info!(client_id = %id, "administrator credential from the environment");
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
            Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
            Command::Verify(db) => verify(db).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Backup { to, db } => backup(to, db).await.map(|()| ExitCode::SUCCESS),
            Command::Keys {
                command: KeysCommand::Create { name, role, db },
            } => keys_create(name, role, db)
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
