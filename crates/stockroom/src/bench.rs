//! `stockroom bench`: a load generator that drives a Stockroom server over HTTP.
//!
//! It either targets a running server (`--url`) or starts its own (`stockroom serve`, this very
//! executable) over SQLite in a temporary folder or a given database, sets up stock (untimed),
//! runs one scenario with N concurrent keep-alive clients, and then checks that the figures add
//! up: no oversell, one history entry per successful allocation, and `stockroom verify`.
//!
//! Each simulated client owns one HTTP/1.1 keep-alive connection (hyper's connection-level
//! client: no pool, no per-request URL parsing beyond the path), so the generator spends as
//! little CPU as possible and the server is what gets measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Barrier;

/// Largest quantity the API accepts.
const QUANTITY_MAX: u64 = 1_000_000_000;
/// Concurrent tasks creating stock and reading figures outside the timed run.
const SETUP_TASKS: usize = 64;
/// The product of the `hot` and `checkout` scenarios.
const HOT: &str = "hot";

const ALLOCATE_BODY: &[u8] =
    br#"{"data":{"type":"stock-transaction","action":"allocate","quantity":1}}"#;
const ADD_TO_CART_BODY: &[u8] = br#"{"data":{"type":"cart_item","id":"hot","quantity":1}}"#;
const CHECKOUT_BODY: &[u8] = br#"{"data":{"customer":{"name":"A","email":"a@example.com"},"billing_address":{"first_name":"A","line_1":"1 St","city":"X","postcode":"1","country":"GB"}}}"#;
const PAY_BODY: &[u8] = br#"{"data":{"gateway":"manual","method":"purchase"}}"#;

#[derive(Args)]
pub struct BenchArgs {
    /// hot: allocate 1 unit of one product. spread: allocate 1 unit of a random product among
    /// --products. checkout: add to cart, checkout and pay (manual purchase) for one product.
    /// mixed: 80% stock reads, 20% allocations of random products among --products.
    #[arg(long, value_enum, default_value_t = Scenario::Hot)]
    scenario: Scenario,

    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    clients: u32,

    /// Seconds to run (10 unless --requests is given).
    #[arg(long, conflicts_with = "requests")]
    duration_secs: Option<f64>,

    /// Stop after this many operations in total (for checkout: shopper iterations).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Drive a running server (http://HOST:PORT) instead of starting one; needs
    /// --client-id/--client-secret of an administrator credential.
    #[arg(long, conflicts_with_all = ["database_url", "instances"])]
    url: Option<String>,

    /// Database of the servers it starts: sqlite://PATH or postgres://USER@HOST:PORT/DB
    /// (default: SQLite in a temporary folder, deleted at the end).
    #[arg(long)]
    database_url: Option<String>,

    /// Servers to start over the one database, each on its own port, with clients spread
    /// round-robin across them (more than one needs PostgreSQL).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    instances: u32,

    /// Products of the spread and mixed scenarios.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..))]
    products: u32,

    /// Initial stock of each product (default 1000000000; for checkout 1000000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=QUANTITY_MAX))]
    stock: Option<u64>,

    /// Products whose figures and history are checked at the end (spread and mixed).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    check_products: u32,

    /// Print one JSON object with every figure instead of the report.
    #[arg(long)]
    json: bool,

    /// Client id of an administrator credential of the --url server.
    #[arg(long, env = "STOCKROOM_CLIENT_ID", requires = "client_secret")]
    client_id: Option<String>,

    /// Its secret (better given in the environment).
    #[arg(
        long,
        env = "STOCKROOM_CLIENT_SECRET",
        hide_env_values = true,
        requires = "client_id"
    )]
    client_secret: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Hot,
    Spread,
    Checkout,
    Mixed,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Hot => "hot",
            Scenario::Spread => "spread",
            Scenario::Checkout => "checkout",
            Scenario::Mixed => "mixed",
        }
    }

    /// The requests of one operation, each with the status that counts as success and the one
    /// that is an expected refusal (out of stock).
    fn steps(self) -> &'static [Step] {
        const ALLOCATE: Step = Step {
            name: "allocate",
            success: 200,
            refusal: 422,
        };
        match self {
            Scenario::Hot | Scenario::Spread => &[ALLOCATE],
            Scenario::Mixed => &[
                Step {
                    name: "read",
                    success: 200,
                    refusal: 0,
                },
                ALLOCATE,
            ],
            Scenario::Checkout => &[
                Step {
                    name: "add_to_cart",
                    success: 200,
                    refusal: 400,
                },
                Step {
                    name: "checkout",
                    success: 201,
                    refusal: 400,
                },
                Step {
                    name: "pay",
                    success: 200,
                    refusal: 400,
                },
            ],
        }
    }

    /// Whether it works on many products (`bench-0` … `bench-{N-1}`) rather than `hot`.
    fn spread(self) -> bool {
        matches!(self, Scenario::Spread | Scenario::Mixed)
    }
}

struct Step {
    name: &'static str,
    success: u16,
    refusal: u16,
}

fn product_id(i: u32) -> String {
    format!("bench-{i}")
}

// ---- HTTP ----------------------------------------------------------------------------------

/// One keep-alive HTTP/1.1 connection to one server; reconnects after a failure.
struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    auth: Option<HeaderValue>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

struct Reply {
    status: u16,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Conn {
    async fn open(addr: SocketAddr, token: Option<&str>) -> anyhow::Result<Conn> {
        let mut conn = Conn {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            auth: token
                .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                .transpose()?,
            sender: None,
        };
        conn.connect()
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(conn)
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        self.sender = None;
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request; `Err` is a transport failure (the connection is then dropped and the
    /// next call reconnects).
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Reply, String> {
        // A connection found closed before anything was sent is reopened once: the request was
        // never seen by the server, so that is safe even for a POST.
        for _ in 0..2 {
            let sender = match self.sender.as_mut() {
                Some(s) => s,
                None => {
                    if let Err(e) = self.connect().await {
                        // Do not spin on a server that is gone.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        return Err(format!("connect: {e:#}"));
                    }
                    match self.sender.as_mut() {
                        Some(s) => s,
                        None => return Err("connect: no connection".into()),
                    }
                }
            };
            if sender.ready().await.is_err() {
                self.sender = None;
                continue;
            }
            let mut request = Request::builder()
                .method(method.clone())
                .uri(path)
                .header(HOST, self.host.clone());
            if let Some(auth) = &self.auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let payload = match &body {
                Some((content_type, bytes)) => {
                    request = request.header(CONTENT_TYPE, *content_type);
                    bytes.clone()
                }
                None => Bytes::new(),
            };
            let request = request
                .body(Full::new(payload))
                .map_err(|e| format!("request: {e}"))?;
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    self.sender = None;
                    return Err(format!("send: {e}"));
                }
            };
            let status = response.status().as_u16();
            return match response.into_body().collect().await {
                Ok(b) => Ok(Reply {
                    status,
                    body: b.to_bytes(),
                }),
                Err(e) => {
                    self.sender = None;
                    Err(format!("body: {e}"))
                }
            };
        }
        Err("connection closed".into())
    }

    async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.call(Method::GET, path, None).await
    }

    async fn post_json(&mut self, path: &str, body: Bytes) -> Result<Reply, String> {
        self.call(Method::POST, path, Some(("application/json", body)))
            .await
    }
}

/// Signs in with client credentials and returns the access token.
async fn access_token(addr: SocketAddr, id: &str, secret: &str) -> anyhow::Result<String> {
    let mut conn = Conn::open(addr, None).await?;
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", id)
        .append_pair("client_secret", secret)
        .finish();
    let reply = conn
        .call(
            Method::POST,
            "/oauth/access_token",
            Some(("application/x-www-form-urlencoded", Bytes::from(form))),
        )
        .await
        .map_err(anyhow::Error::msg)
        .context("asking for an access token")?;
    if reply.status != 200 {
        bail!(
            "signing in answered {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    reply.json()["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("the token answer has no access_token")
}

// ---- servers -------------------------------------------------------------------------------

/// A `stockroom serve` process started by the bench.
struct Server {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

async fn start_server(
    db_url: &str,
    id: &str,
    secret: &str,
    clients: u32,
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("finding the stockroom executable")?;
    // Every simulated client comes from 127.0.0.1: let them all connect, and then some.
    let connections = (u64::from(clients) + 64).max(4096).to_string();
    let mut child = Command::new(exe)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db_url])
        .env("STOCKROOM_MAX_CONNECTIONS", &connections)
        .env("STOCKROOM_MAX_CONNECTIONS_PER_ADDRESS", &connections)
        // Every simulated shopper comes from one address, as fast as it can: no order limits.
        .env("STOCKROOM_ORDER_WRITES_PER_ADDRESS_PER_MINUTE", "0")
        .env("STOCKROOM_ORDER_WRITES_PER_TOKEN_PER_MINUTE", "0")
        .env("STOCKROOM_CLIENT_ID", id)
        .env("STOCKROOM_CLIENT_SECRET", secret)
        .env("STOCKROOM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting stockroom serve")?;
    let pid = child.id().context("the server exited at once")?;
    let stdout = child.stdout.take().context("no stdout of the server")?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix("stockroom listening on http://") {
                return Ok(Some(addr.trim().parse::<SocketAddr>()?));
            }
        }
        anyhow::Ok(None)
    })
    .await
    .context("the server did not start listening within 120 s")??;
    let Some(addr) = found else {
        let status = child.wait().await?;
        bail!("the server exited before listening ({status})");
    };
    // Keep its standard output drained.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server { child, pid, addr })
}

impl Server {
    /// SIGTERM, then wait (SIGKILL after 30 s). Returns whether it stopped cleanly.
    async fn stop(mut self) -> bool {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = self.child.kill().await;
                false
            }
        }
    }
}

/// Peak resident set size of a process in MB (VmHWM), Linux only.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far, Linux only.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which ends with the last ')': state is field 3, utime 14,
    // stime 15. Clock ticks are 100 per second on every Linux this runs on.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The load averages over 1, 5 and 15 minutes, Linux only: other work on the machine skews
/// the figures.
fn load_average() -> Option<Vec<f64>> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace()
        .take(3)
        .map(|x| x.parse().ok())
        .collect()
}

fn random_string(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

// ---- setup and figures ---------------------------------------------------------------------

/// Runs `work` for every index in `0..count` over `SETUP_TASKS` connections (round-robin over
/// the servers), stopping at the first error.
async fn for_each_concurrently<T, F, Fut>(
    addrs: &[SocketAddr],
    token: &str,
    count: usize,
    work: F,
) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Conn, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<(Conn, T)>> + Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let tasks = SETUP_TASKS.min(count.max(1));
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let conn = Conn::open(addrs[t % addrs.len()], Some(token)).await?;
        let next = next.clone();
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = conn;
            let mut out = Vec::new();
            loop {
                let i = usize::try_from(next.fetch_add(1, Ordering::Relaxed))?;
                if i >= count {
                    return anyhow::Ok(out);
                }
                let (c, value) = work(conn, i).await?;
                conn = c;
                out.push((i, value));
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for h in handles {
        all.extend(h.await.context("a setup task panicked")??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

/// Creates stock for `id`; stock that already exists (409) is fine.
async fn create_stock(conn: &mut Conn, id: &str, quantity: u64) -> anyhow::Result<()> {
    let body = json!({"data": {"quantity": quantity}}).to_string();
    let reply = conn
        .post_json(&format!("/v2/inventories/{id}"), Bytes::from(body))
        .await
        .map_err(anyhow::Error::msg)?;
    match reply.status {
        201 | 409 => Ok(()),
        s => bail!(
            "creating stock {id} answered {s}: {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
}

/// Creates the product `hot` for the checkout scenario; one that exists (409) is fine.
async fn create_product(conn: &mut Conn) -> anyhow::Result<()> {
    let body = json!({"data": {"type": "product", "id": HOT, "attributes": {
        "name": "Hot", "sku": "HOT", "price": {"amount": 100, "currency": "USD"}}}})
    .to_string();
    let reply = conn
        .post_json("/v2/products", Bytes::from(body))
        .await
        .map_err(anyhow::Error::msg)?;
    match reply.status {
        201 | 409 => Ok(()),
        s => bail!(
            "creating the product answered {s}: {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
}

/// A stock record's figures and its number of `allocate` history entries.
#[derive(Clone, Copy, Default)]
struct Figures {
    total: i64,
    allocated: i64,
    allocations: i64,
}

impl Figures {
    fn available(&self) -> i64 {
        self.total - self.allocated
    }
}

async fn figures(conn: &mut Conn, id: &str) -> anyhow::Result<Option<Figures>> {
    let stock = conn
        .get(&format!("/v2/inventories/{id}"))
        .await
        .map_err(anyhow::Error::msg)?;
    match stock.status {
        200 => {}
        404 => return Ok(None),
        s => bail!("reading stock {id} answered {s}"),
    }
    let stock = stock.json();
    let history = conn
        .get(&format!(
            "/v2/inventories/{id}/transactions?filter=eq(action,allocate)&page%5Blimit%5D=1"
        ))
        .await
        .map_err(anyhow::Error::msg)?;
    if history.status != 200 {
        bail!("reading the history of {id} answered {}", history.status);
    }
    let field = |v: &Value| v.as_i64().context("a figure is not a number");
    Ok(Some(Figures {
        total: field(&stock["data"]["total"])?,
        allocated: field(&stock["data"]["allocated"])?,
        allocations: field(&history.json()["meta"]["results"]["total"])?,
    }))
}

/// The product indices whose figures are checked: evenly spread over all of them.
fn sample(products: u32, count: u32) -> Vec<u32> {
    let count = count.min(products);
    let mut s: Vec<u32> = (0..count)
        .map(|k| u32::try_from(u64::from(k) * u64::from(products) / u64::from(count)).unwrap_or(0))
        .collect();
    s.dedup();
    s
}

async fn read_figures(
    addrs: &[SocketAddr],
    token: &str,
    ids: Arc<Vec<String>>,
) -> anyhow::Result<Vec<Option<Figures>>> {
    let count = ids.len();
    for_each_concurrently(addrs, token, count, move |mut conn, i| {
        let ids = ids.clone();
        async move {
            let f = figures(&mut conn, &ids[i]).await?;
            Ok((conn, f))
        }
    })
    .await
}

// ---- the timed run -------------------------------------------------------------------------

struct Shared {
    scenario: Scenario,
    products: u32,
    limit: Option<u64>,
    issued: AtomicU64,
    stop: AtomicBool,
    /// Operations finished, successful and failed (neither success nor refusal), for progress.
    done: AtomicU64,
    good: AtomicU64,
    failed: AtomicU64,
    /// Successful allocations per product (spread, mixed).
    allocated: Vec<AtomicU32>,
    /// Makes cart ids unique to this run.
    tag: String,
}

impl Shared {
    fn next(&self) -> bool {
        match self.limit {
            Some(limit) => self.issued.fetch_add(1, Ordering::Relaxed) < limit,
            None => !self.stop.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct StepStats {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    transport: u64,
    last_transport_error: Option<String>,
}

struct ClientStats {
    steps: Vec<StepStats>,
    /// Whole operations (only kept apart from the steps for checkout).
    iterations_us: Vec<u32>,
    good: u64,
}

fn micros(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_micros()).unwrap_or(u32::MAX)
}

enum Outcome {
    Success(Reply),
    Refused,
    Failed,
}

impl ClientStats {
    /// Records one request of step `step` and classifies it.
    fn record(
        &mut self,
        shared: &Shared,
        step: usize,
        started: Instant,
        result: Result<Reply, String>,
    ) -> Outcome {
        let spec = &shared.scenario.steps()[step];
        let stats = &mut self.steps[step];
        stats.latencies_us.push(micros(started));
        match result {
            Ok(reply) => {
                *stats.statuses.entry(reply.status).or_default() += 1;
                if reply.status == spec.success {
                    Outcome::Success(reply)
                } else if reply.status == spec.refusal {
                    Outcome::Refused
                } else {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    Outcome::Failed
                }
            }
            Err(e) => {
                stats.transport += 1;
                stats.last_transport_error = Some(e);
                shared.failed.fetch_add(1, Ordering::Relaxed);
                Outcome::Failed
            }
        }
    }
}

async fn client(
    shared: Arc<Shared>,
    mut conn: Conn,
    number: u32,
    start: Arc<Barrier>,
) -> ClientStats {
    let steps = shared.scenario.steps();
    let mut stats = ClientStats {
        steps: steps.iter().map(|_| StepStats::default()).collect(),
        iterations_us: Vec::new(),
        good: 0,
    };
    let mut rng = StdRng::from_entropy();
    let allocate = Bytes::from_static(ALLOCATE_BODY);
    let hot_path = format!("/v2/inventories/{HOT}/transactions");
    let mut iteration = 0u64;
    start.wait().await;
    while shared.next() {
        let began = Instant::now();
        let good = match shared.scenario {
            Scenario::Hot => {
                let r = conn.post_json(&hot_path, allocate.clone()).await;
                matches!(stats.record(&shared, 0, began, r), Outcome::Success(_))
            }
            Scenario::Spread | Scenario::Mixed => {
                let p = rng.gen_range(0..shared.products);
                let id = product_id(p);
                let read = shared.scenario == Scenario::Mixed && rng.gen_bool(0.8);
                if read {
                    let r = conn.get(&format!("/v2/inventories/{id}")).await;
                    matches!(stats.record(&shared, 0, began, r), Outcome::Success(_))
                } else {
                    let step = usize::from(shared.scenario == Scenario::Mixed);
                    let path = format!("/v2/inventories/{id}/transactions");
                    let r = conn.post_json(&path, allocate.clone()).await;
                    let won = matches!(stats.record(&shared, step, began, r), Outcome::Success(_));
                    if won {
                        shared.allocated[p as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    won
                }
            }
            Scenario::Checkout => {
                iteration += 1;
                let cart = format!("{}-{number}-{iteration}", shared.tag);
                checkout(&shared, &mut conn, &mut stats, &cart).await
            }
        };
        if shared.scenario == Scenario::Checkout {
            stats.iterations_us.push(micros(began));
        }
        if good {
            stats.good += 1;
            shared.good.fetch_add(1, Ordering::Relaxed);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    stats
}

/// One shopper: add the hot product to a new cart, check out, pay. True when paid.
async fn checkout(shared: &Shared, conn: &mut Conn, stats: &mut ClientStats, cart: &str) -> bool {
    let t = Instant::now();
    let r = conn
        .post_json(
            &format!("/v2/carts/{cart}/items"),
            Bytes::from_static(ADD_TO_CART_BODY),
        )
        .await;
    if !matches!(stats.record(shared, 0, t, r), Outcome::Success(_)) {
        return false;
    }
    let t = Instant::now();
    let r = conn
        .post_json(
            &format!("/v2/carts/{cart}/checkout"),
            Bytes::from_static(CHECKOUT_BODY),
        )
        .await;
    let Outcome::Success(order) = stats.record(shared, 1, t, r) else {
        return false;
    };
    let Some(order_id) = order.json()["data"]["id"].as_str().map(str::to_owned) else {
        return false;
    };
    let t = Instant::now();
    let r = conn
        .post_json(
            &format!("/v2/orders/{order_id}/payments"),
            Bytes::from_static(PAY_BODY),
        )
        .await;
    matches!(stats.record(shared, 2, t, r), Outcome::Success(_))
}

/// Prints progress to standard error once a second until `stop` is set.
async fn progress(shared: Arc<Shared>, started: Instant, stop: Arc<AtomicBool>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (mut last_done, mut last_good) = (0u64, 0u64);
    let unit = if shared.scenario == Scenario::Checkout {
        "paid"
    } else {
        "ok"
    };
    loop {
        ticker.tick().await;
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let done = shared.done.load(Ordering::Relaxed);
        let good = shared.good.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] {:>8} ops/s  {:>8} {unit}/s  total {done}  errors {failed}",
            started.elapsed().as_secs_f64(),
            done - last_done,
            good - last_good,
        );
        last_done = done;
        last_good = good;
    }
}

// ---- figures and report --------------------------------------------------------------------

fn latency_json(mut v: Vec<u32>) -> Value {
    if v.is_empty() {
        return json!({"count": 0});
    }
    v.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    let at = |q: f64| {
        // Nearest rank.
        let rank = (q * v.len() as f64).ceil() as usize;
        ms(v[rank.clamp(1, v.len()) - 1])
    };
    let sum: u64 = v.iter().map(|&x| u64::from(x)).sum();
    json!({
        "count": v.len(),
        "mean": round3(sum as f64 / v.len() as f64 / 1000.0),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ms(v[v.len() - 1]),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Compares a change against the successes counted, allowing for operations whose outcome is
/// unknown (transport errors and 5xx answers may or may not have been applied).
fn within(delta: i64, counted: u64, uncertain: u64) -> bool {
    let counted = i64::try_from(counted).unwrap_or(i64::MAX);
    let uncertain = i64::try_from(uncertain).unwrap_or(i64::MAX);
    delta >= counted && delta <= counted.saturating_add(uncertain)
}

fn describe(delta: i64, counted: u64, uncertain: u64) -> String {
    if uncertain == 0 {
        format!("+{delta}, expected +{counted}")
    } else {
        format!(
            "+{delta}, expected +{counted} to +{} ({uncertain} outcomes unknown)",
            counted + uncertain
        )
    }
}

async fn run_verify(db_url: &str) -> anyhow::Result<(bool, String)> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(["verify", "--database-url", db_url])
        .env("STOCKROOM_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .await
        .context("running stockroom verify")?;
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !err.trim().is_empty() {
        let _ = write!(text, "\n{}", err.trim());
    }
    Ok((out.status.success(), text))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let scenario = args.scenario;
    let stock = args.stock.unwrap_or(if scenario == Scenario::Checkout {
        1_000_000
    } else {
        QUANTITY_MAX
    });
    let duration = match (args.duration_secs, args.requests) {
        (_, Some(_)) => None,
        (Some(s), None) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
        (Some(_), None) => bail!("--duration-secs must be a positive number"),
        (None, None) => Some(Duration::from_secs(10)),
    };

    // Servers.
    let mut _tempdir = None;
    let mut servers = Vec::new();
    let mut db_url = None;
    let (addrs, client_id, client_secret, backend) = if let Some(url) = &args.url {
        let authority = url
            .strip_prefix("http://")
            .context("--url must be http://HOST:PORT")?
            .trim_end_matches('/');
        let addr = tokio::net::lookup_host(authority)
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} has no address"))?;
        let (Some(id), Some(secret)) = (args.client_id.clone(), args.client_secret.clone()) else {
            bail!("--url needs --client-id and --client-secret (or STOCKROOM_CLIENT_ID/SECRET)");
        };
        (vec![addr], id, secret, "url".to_owned())
    } else {
        let url = match &args.database_url {
            Some(u) => u.clone(),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("stockroom-bench-")
                    .tempdir()
                    .context("creating a temporary folder")?;
                let u = format!("sqlite://{}", dir.path().join("bench.db").display());
                _tempdir = Some(dir);
                u
            }
        };
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if args.instances > 1 && !postgres {
            bail!("--instances above 1 needs a PostgreSQL --database-url");
        }
        let id = format!("bench-{}", random_string(12));
        let secret = random_string(40);
        if !args.json {
            eprintln!(
                "starting {} server(s) over {}",
                args.instances,
                stockroom_store::redact_url(&url)
            );
        }
        for _ in 0..args.instances {
            servers.push(start_server(&url, &id, &secret, args.clients).await?);
        }
        db_url = Some(url);
        let addrs = servers.iter().map(|s| s.addr).collect();
        (
            addrs,
            id,
            secret,
            if postgres { "postgres" } else { "sqlite" }.to_owned(),
        )
    };
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    let target = Target {
        addrs: &addrs,
        pids: &pids,
        client_id: &client_id,
        client_secret: &client_secret,
    };
    let result = drive(&args, scenario, stock, duration, &target).await;

    // Server figures, then stop them and verify the database.
    let mut peak_rss = Vec::new();
    for s in &servers {
        peak_rss.push(peak_rss_mb(s.pid));
    }
    let mut clean_stop = true;
    for s in servers {
        clean_stop &= s.stop().await;
    }
    let mut report = result?;
    let mut checks = std::mem::take(&mut report.checks);
    let mut verify = Value::Null;
    if let Some(url) = &db_url {
        if !args.json {
            eprintln!("running stockroom verify");
        }
        let (ok, output) = run_verify(url).await?;
        checks.push(Check {
            name: "verify",
            ok,
            detail: output.lines().last().unwrap_or_default().to_owned(),
        });
        verify = json!({"ok": ok, "output": output});
        checks.push(Check {
            name: "servers stopped cleanly on SIGTERM",
            ok: clean_stop,
            detail: if clean_stop {
                "exit status 0".into()
            } else {
                "a server did not exit 0 within 30 s of SIGTERM".into()
            },
        });
    }
    let passed = checks.iter().all(|c| c.ok);
    let rss: Vec<Value> = peak_rss
        .iter()
        .map(|r| r.map_or(Value::Null, |mb| json!(round1(mb))))
        .collect();
    let max_rss = peak_rss
        .iter()
        .flatten()
        .copied()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let mut out = report.json;
    out["backend"] = json!(backend);
    out["instances"] = json!(addrs.len());
    out["server"] = json!({
        "pids": pids,
        "peak_rss_mb": rss,
        "max_peak_rss_mb": max_rss.map(round1),
        "cpu_percent": report.server_cpu_percent.map(round1),
    });
    out["verify"] = verify;
    out["checks"] = checks
        .iter()
        .map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail}))
        .collect();
    out["passed"] = json!(passed);
    if args.json {
        println!("{out}");
    } else {
        print_report(&out);
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Driven {
    json: Value,
    checks: Vec<Check>,
    server_cpu_percent: Option<f64>,
}

/// The servers driven: their addresses, process ids (when started here) and credential.
struct Target<'a> {
    addrs: &'a [SocketAddr],
    pids: &'a [u32],
    client_id: &'a str,
    client_secret: &'a str,
}

async fn drive(
    args: &BenchArgs,
    scenario: Scenario,
    stock: u64,
    duration: Option<Duration>,
    target: &Target<'_>,
) -> anyhow::Result<Driven> {
    let addrs = target.addrs;
    let token = access_token(addrs[0], target.client_id, target.client_secret).await?;

    // Setup, not timed.
    let setup_started = Instant::now();
    let ids: Vec<String> = if scenario.spread() {
        if !args.json {
            eprintln!(
                "setup: creating stock for {} products ({SETUP_TASKS} at a time)",
                args.products
            );
        }
        let count = args.products as usize;
        for_each_concurrently(addrs, &token, count, move |mut conn, i| async move {
            create_stock(&mut conn, &product_id(u32::try_from(i)?), stock).await?;
            Ok((conn, ()))
        })
        .await?;
        sample(args.products, args.check_products)
            .into_iter()
            .map(product_id)
            .collect()
    } else {
        let mut conn = Conn::open(addrs[0], Some(&token)).await?;
        if scenario == Scenario::Checkout {
            create_product(&mut conn).await?;
        }
        create_stock(&mut conn, HOT, stock).await?;
        vec![HOT.to_owned()]
    };
    let ids = Arc::new(ids);
    let before = read_figures(addrs, &token, ids.clone()).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    // The run.
    let shared = Arc::new(Shared {
        scenario,
        products: args.products,
        limit: args.requests,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        done: AtomicU64::new(0),
        good: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        allocated: if scenario.spread() {
            (0..args.products).map(|_| AtomicU32::new(0)).collect()
        } else {
            Vec::new()
        },
        tag: random_string(10),
    });
    let start = Arc::new(Barrier::new(args.clients as usize + 1));
    let mut handles = Vec::with_capacity(args.clients as usize);
    for c in 0..args.clients {
        let conn = Conn::open(addrs[c as usize % addrs.len()], Some(&token)).await?;
        handles.push(tokio::spawn(client(shared.clone(), conn, c, start.clone())));
    }
    if !args.json {
        eprintln!(
            "running {} with {} clients against {} server(s) for {}",
            scenario.name(),
            args.clients,
            addrs.len(),
            match (duration, args.requests) {
                (_, Some(n)) => format!("{n} operations"),
                (Some(d), None) => format!("{:.1} s", d.as_secs_f64()),
                (None, None) => String::new(),
            }
        );
    }
    let server_cpu = || -> Option<f64> {
        if target.pids.is_empty() {
            return None;
        }
        target
            .pids
            .iter()
            .map(|p| cpu_secs(&p.to_string()))
            .sum::<Option<f64>>()
    };
    let cpu_before = (server_cpu(), cpu_secs("self"));
    let load_before = load_average();
    start.wait().await;
    let started = Instant::now();
    let stop_progress = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn(progress(shared.clone(), started, stop_progress.clone()));
    if let Some(d) = duration {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            shared.stop.store(true, Ordering::Relaxed);
        });
    }
    let mut all = Vec::with_capacity(handles.len());
    for h in handles {
        all.push(h.await.context("a client panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = (server_cpu(), cpu_secs("self"));
    stop_progress.store(true, Ordering::Relaxed);
    ticker.abort();

    // Merge.
    let steps = scenario.steps();
    let mut merged: Vec<StepStats> = steps.iter().map(|_| StepStats::default()).collect();
    let mut iterations = Vec::new();
    let mut good = 0u64;
    for c in all {
        good += c.good;
        iterations.extend(c.iterations_us);
        for (m, s) in merged.iter_mut().zip(c.steps) {
            m.latencies_us.extend(s.latencies_us);
            for (k, v) in s.statuses {
                *m.statuses.entry(k).or_default() += v;
            }
            m.transport += s.transport;
            if s.last_transport_error.is_some() {
                m.last_transport_error = s.last_transport_error;
            }
        }
    }
    let operations = shared.done.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    // The step that changes stock, and what its outcomes were.
    let stock_step = steps.len() - 1;
    let stock_stats = &merged[stock_step];
    let status = |s: &StepStats, code: u16| s.statuses.get(&code).copied().unwrap_or(0);
    let won = status(stock_stats, steps[stock_step].success);
    let refused = status(stock_stats, steps[stock_step].refusal);
    let uncertain = stock_stats.transport
        + stock_stats
            .statuses
            .iter()
            .filter(|(k, _)| **k >= 500)
            .map(|(_, v)| v)
            .sum::<u64>();

    let op_latencies: Vec<u32> = if scenario == Scenario::Checkout {
        iterations
    } else {
        merged
            .iter()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect()
    };
    let transport_errors: u64 = merged.iter().map(|s| s.transport).sum();
    let mut steps_json = serde_json::Map::new();
    for (spec, s) in steps.iter().zip(merged) {
        let statuses: serde_json::Map<String, Value> = s
            .statuses
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        steps_json.insert(
            spec.name.to_owned(),
            json!({
                "latency_ms": latency_json(s.latencies_us),
                "status": statuses,
                "transport_errors": s.transport,
                "last_transport_error": s.last_transport_error,
            }),
        );
    }

    // Checks.
    if !args.json {
        eprintln!("checking the figures");
    }
    let after = read_figures(addrs, &token, ids.clone()).await?;
    let mut checks = Vec::new();
    if scenario.spread() {
        let sample_idx = sample(args.products, args.check_products);
        let mut oversold = Vec::new();
        let mut mismatched = Vec::new();
        let mut missing = 0usize;
        let (mut expected_sum, mut delta_alloc_sum, mut delta_hist_sum) = (0u64, 0i64, 0i64);
        for ((p, b), a) in sample_idx.iter().zip(&before).zip(&after) {
            let (Some(b), Some(a)) = (b, a) else {
                missing += 1;
                continue;
            };
            let counted = u64::from(shared.allocated[*p as usize].load(Ordering::Relaxed));
            expected_sum += counted;
            delta_alloc_sum += a.allocated - b.allocated;
            delta_hist_sum += a.allocations - b.allocations;
            if a.allocated > a.total || a.allocated < 0 {
                oversold.push(format!(
                    "{}: allocated {} of {}",
                    product_id(*p),
                    a.allocated,
                    a.total
                ));
            }
            let ok = |d: i64| {
                if uncertain == 0 {
                    d == i64::try_from(counted).unwrap_or(i64::MAX)
                } else {
                    d >= i64::try_from(counted).unwrap_or(i64::MAX)
                }
            };
            if !ok(a.allocated - b.allocated) || !ok(a.allocations - b.allocations) {
                mismatched.push(format!(
                    "{}: allocated +{}, history +{}, counted {counted}",
                    product_id(*p),
                    a.allocated - b.allocated,
                    a.allocations - b.allocations
                ));
            }
        }
        let n = sample_idx.len();
        checks.push(Check {
            name: "stock records present",
            ok: missing == 0,
            detail: format!("{} of {n} sampled products have stock", n - missing),
        });
        checks.push(Check {
            name: "no oversell",
            ok: oversold.is_empty(),
            detail: if oversold.is_empty() {
                format!("allocated <= total for all {n} sampled products")
            } else {
                oversold.truncate(5);
                oversold.join("; ")
            },
        });
        checks.push(Check {
            name: "allocated = successful allocations",
            ok: mismatched.is_empty() && within(delta_alloc_sum, expected_sum, uncertain),
            detail: if mismatched.is_empty() {
                format!(
                    "over {n} sampled products: allocated {}",
                    describe(delta_alloc_sum, expected_sum, uncertain)
                )
            } else {
                mismatched.truncate(5);
                mismatched.join("; ")
            },
        });
        checks.push(Check {
            name: "history = successful allocations",
            ok: mismatched.is_empty() && within(delta_hist_sum, expected_sum, uncertain),
            detail: format!(
                "over {n} sampled products: allocate entries {}",
                describe(delta_hist_sum, expected_sum, uncertain)
            ),
        });
    } else {
        match (
            before.first().copied().flatten(),
            after.first().copied().flatten(),
        ) {
            (Some(b), Some(a)) => {
                checks.push(Check {
                    name: "no oversell",
                    ok: a.allocated <= a.total && a.allocated >= 0,
                    detail: format!("allocated {} of {}", a.allocated, a.total),
                });
                let what = if scenario == Scenario::Checkout {
                    "paid orders"
                } else {
                    "successful allocations"
                };
                checks.push(Check {
                    name: "allocated = successes",
                    ok: within(a.allocated - b.allocated, won, uncertain),
                    detail: format!(
                        "allocated {} ({what})",
                        describe(a.allocated - b.allocated, won, uncertain)
                    ),
                });
                checks.push(Check {
                    name: "history = successes",
                    ok: within(a.allocations - b.allocations, won, uncertain),
                    detail: format!(
                        "allocate entries {}",
                        describe(a.allocations - b.allocations, won, uncertain)
                    ),
                });
                checks.push(Check {
                    name: "refused only when sold out",
                    ok: refused == 0 || a.available() < 1,
                    detail: format!("{refused} refused, {} available at the end", a.available()),
                });
            }
            _ => checks.push(Check {
                name: "stock record present",
                ok: false,
                detail: format!("{HOT} has no stock record"),
            }),
        }
    }

    let cpu = |before: Option<f64>, after: Option<f64>| Some((after? - before?) / elapsed * 100.0);
    let server_cpu_percent = cpu(cpu_before.0, cpu_after.0);
    let mut out = json!({
        "scenario": scenario.name(),
        "clients": args.clients,
        "duration_secs": round3(elapsed),
        "setup_secs": round3(setup_secs),
        "products": if scenario.spread() { args.products } else { 1 },
        "stock": stock,
        "operations": operations,
        "ok": good,
        "errors": failed,
        "transport_errors": transport_errors,
        "throughput": round1(good as f64 / elapsed),
        "operations_per_sec": round1(operations as f64 / elapsed),
        "latency_ms": latency_json(op_latencies),
        "steps": steps_json,
        "bench_cpu_percent": cpu(cpu_before.1, cpu_after.1).map(round1),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "load_average_before": load_before,
        },
    });
    if scenario == Scenario::Checkout {
        out["paid"] = json!(won);
        out["paid_per_sec"] = json!(round1(won as f64 / elapsed));
        out["sold_out_refusals"] = json!(refused);
    }
    Ok(Driven {
        json: out,
        checks,
        server_cpu_percent,
    })
}

fn print_report(out: &Value) {
    let f = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        v => v.to_string(),
    };
    let lat = |l: &Value| {
        format!(
            "p50 {}  p95 {}  p99 {}  max {}  mean {}  (ms, {} samples)",
            f(&l["p50"]),
            f(&l["p95"]),
            f(&l["p99"]),
            f(&l["max"]),
            f(&l["mean"]),
            f(&l["count"])
        )
    };
    println!(
        "stockroom bench: {} scenario, {} clients, {} server(s) ({}), {} s (setup {} s)",
        f(&out["scenario"]).trim_matches('"'),
        f(&out["clients"]),
        f(&out["instances"]),
        f(&out["backend"]).trim_matches('"'),
        f(&out["duration_secs"]),
        f(&out["setup_secs"]),
    );
    if out["scenario"] == "checkout" {
        println!(
            "  throughput   {} paid orders/s ({} paid of {} shoppers; {} iterations/s)",
            f(&out["paid_per_sec"]),
            f(&out["paid"]),
            f(&out["operations"]),
            f(&out["operations_per_sec"]),
        );
    } else {
        println!(
            "  throughput   {} ok/s ({} ok of {} requests; {} requests/s)",
            f(&out["throughput"]),
            f(&out["ok"]),
            f(&out["operations"]),
            f(&out["operations_per_sec"]),
        );
    }
    println!("  latency      {}", lat(&out["latency_ms"]));
    if let Some(steps) = out["steps"].as_object() {
        for (name, s) in steps {
            let statuses: Vec<String> = s["status"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}: {v}")).collect())
                .unwrap_or_default();
            println!("  {name:<12} {}", lat(&s["latency_ms"]));
            println!(
                "  {:<12} status {}  transport errors {}{}",
                "",
                statuses.join(", "),
                f(&s["transport_errors"]),
                s["last_transport_error"]
                    .as_str()
                    .map(|e| format!(" (last: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    println!(
        "  server       peak RSS {} MB, CPU {}%;  bench CPU {}%  ({} CPUs, load average {} before)",
        f(&out["server"]["max_peak_rss_mb"]),
        f(&out["server"]["cpu_percent"]),
        f(&out["bench_cpu_percent"]),
        f(&out["machine"]["cpus"]),
        f(&out["machine"]["load_average_before"][0]),
    );
    println!("checks");
    if let Some(checks) = out["checks"].as_array() {
        for c in checks {
            println!(
                "  {:<5} {}: {}",
                if c["ok"] == true { "ok" } else { "FAIL" },
                c["name"].as_str().unwrap_or_default(),
                c["detail"].as_str().unwrap_or_default()
            );
        }
    }
    println!(
        "{}",
        if out["passed"] == true {
            "PASSED"
        } else {
            "FAILED"
        }
    );
}
