//! The `stockroom` binary as a user runs it: serve, verify, keys, bad configuration, and several
//! instances over one PostgreSQL database.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};
use stockroom_store::testing::{fresh_database, Backend};

const BIN: &str = env!("CARGO_BIN_EXE_stockroom");
const ADMIN_ID: &str = "cli-admin";
const ADMIN_SECRET: &str = "cli-admin-secret-of-24-chars-or-more";

/// A running `stockroom serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    stdout: String,
    /// Everything it has logged so far.
    logs: Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Waits (at most 10 s) until the logs contain `needle`; the logs so far.
    fn logs_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let logs = self.logs.lock().expect("logs").clone();
            if logs.contains(needle) || std::time::Instant::now() > deadline {
                return logs;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `stockroom serve` on a free port and waits until it says where it listens.
fn serve(url: &str, env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .env_remove("STOCKROOM_CLIENT_ID")
        .env_remove("STOCKROOM_CLIENT_SECRET")
        .env("STOCKROOM_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn stockroom serve");
    // Keep draining the logs so the server never blocks on a full pipe.
    let stderr = child.stderr.take().expect("stderr");
    let logs = Arc::new(std::sync::Mutex::new(String::new()));
    let kept = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut logs = kept.lock().expect("logs");
            logs.push_str(&line);
            logs.push('\n');
        }
    });
    // Everything serve prints on stdout comes before the line that says where it listens.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stdout = String::new();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read stdout");
        if let Some(addr) = line.strip_prefix("stockroom listening on http://") {
            break addr.to_owned();
        }
        stdout.push_str(&line);
        stdout.push('\n');
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{addr}"),
        stdout,
        logs,
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("STOCKROOM_DATABASE_URL")
        .output()
        .expect("run stockroom")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> String {
    let r: Value = http
        .post(format!("{base}/oauth/access_token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    r["access_token"].as_str().expect("access_token").to_owned()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/stockroom.db", dir.display())
}

#[test]
fn help_explains_every_serve_option() {
    let out = run(&["serve", "--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for option in [
        "--listen",
        "--database-url",
        "--pool-size",
        "--acquire-timeout-ms",
        "--client-id",
        "--header-read-timeout-ms",
        "--keep-alive-timeout-ms",
        "--body-read-timeout-ms",
        "--max-connections",
        "--max-connections-per-address",
        "--sign-in-failures-per-minute",
        "--webhook-ca-file",
        "STOCKROOM_WEBHOOK_CA_FILE",
        "STOCKROOM_DATABASE_URL",
        "STOCKROOM_LISTEN",
    ] {
        assert!(help.contains(option), "--help mentions {option}");
    }
}

#[tokio::test]
async fn the_first_start_prints_an_administrator_credential_once() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let first = serve(&url, &[]);
    let id = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_id:"))
        .map(|s| s.trim().to_owned())
        .expect("client id printed");
    let secret = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret:"))
        .map(|s| s.trim().to_owned())
        .expect("secret printed");
    let http = reqwest::Client::new();
    let t = token(&http, &first.base, &id, &secret).await;
    let r = http
        .post(format!("{}/v2/inventories/p", first.base))
        .bearer_auth(&t)
        .json(&json!({"data": {"quantity": 1}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    drop(first);
    let second = serve(&url, &[]);
    assert!(
        !second.stdout.contains("client_secret"),
        "printed only once: {}",
        second.stdout
    );
    assert!(
        !token(&http, &second.base, &id, &secret).await.is_empty(),
        "the credential still works"
    );
}

#[tokio::test]
async fn keys_create_adds_a_credential_that_works() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let out = run(&[
        "keys",
        "create",
        "--name",
        "pos",
        "--role",
        "shopper",
        "--database-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .expect(name)
            .to_owned()
    };
    let (id, secret) = (field("client_id:"), field("client_secret:"));
    let server = serve(
        &url,
        &[
            ("STOCKROOM_CLIENT_ID", ADMIN_ID),
            ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
        ],
    );
    assert!(
        !server.stdout.contains("client_secret"),
        "an environment credential prints nothing"
    );
    let http = reqwest::Client::new();
    let shopper = token(&http, &server.base, &id, &secret).await;
    let r = http
        .post(format!("{}/v2/inventories/p", server.base))
        .bearer_auth(&shopper)
        .json(&json!({"data": {"quantity": 1}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 403, "a shopper key cannot create stock");
    let admin = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
    let r = http
        .post(format!("{}/v2/inventories/p", server.base))
        .bearer_auth(&admin)
        .json(&json!({"data": {"quantity": 1}}))
        .send()
        .await
        .expect("create");
    assert_eq!(
        r.status(),
        201,
        "the environment's credential is an administrator"
    );
}

#[tokio::test]
async fn verify_counts_what_it_checked_and_fails_on_a_tampered_record() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    {
        let server = serve(
            &url,
            &[
                ("STOCKROOM_CLIENT_ID", ADMIN_ID),
                ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
            ],
        );
        let http = reqwest::Client::new();
        let t = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
        for p in ["a", "b"] {
            http.post(format!("{}/v2/inventories/{p}", server.base))
                .bearer_auth(&t)
                .json(&json!({"data": {"quantity": 10}}))
                .send()
                .await
                .expect("create");
            http.post(format!("{}/v2/inventories/{p}/transactions", server.base))
                .bearer_auth(&t)
                .json(&json!({"data": {"action": "allocate", "quantity": 3}}))
                .send()
                .await
                .expect("allocate");
        }
    }
    let out = run(&["verify", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(
            "checked 2 stock records, 2 records with history, 4 history entries: all agree"
        ),
        "{}",
        text(&out.stdout)
    );

    let path = url.trim_start_matches("sqlite://");
    let conn = rusqlite::Connection::open(path).expect("connect");
    conn.execute(
        "UPDATE stock SET allocated = allocated - 1 WHERE product_id = 'b'",
        [],
    )
    .expect("tamper");
    // The history itself refuses to be rewritten.
    assert!(conn.execute("UPDATE history SET quantity = 1", []).is_err());
    assert!(conn.execute("DELETE FROM history", []).is_err());
    drop(conn);

    let out = run(&["verify", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("MISMATCH b: record is total 10 allocated 2 but the history replays to total 10 allocated 3"), "{stdout}");
    assert!(stdout.contains("1 problems"), "{stdout}");
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() {
    let out = run(&[
        "verify",
        "--database-url",
        "postgres://stock:hunter2secret@127.0.0.1:1/test",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot connect to the database at postgres://stock:***@127.0.0.1:1/test"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2secret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env(
            "STOCKROOM_DATABASE_URL",
            "postgres://stock:hunter2secret@127.0.0.1:1/test",
        )
        .output()
        .expect("serve");
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("hunter2secret"));
}

#[test]
fn a_malformed_database_url_is_a_clear_error() {
    for (url, says) in [
        ("mysql://root@localhost/db", "unsupported database URL"),
        (
            "postgres://u:hunter2secret@host:notaport/db",
            "malformed database URL",
        ),
        ("sqlite::memory:", "in-memory database"),
    ] {
        let out = run(&["verify", "--database-url", url]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(
            !stderr.contains("hunter2secret") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = serve(&sqlite_url(dir.path()), &[]);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

async fn post(http: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An order of `lines` (product, quantity) through cart and checkout; its id.
async fn order_of(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    cart: &str,
    lines: &[(&str, u64)],
) -> String {
    for (product, q) in lines {
        let (status, body) = post(
            http,
            format!("{base}/v2/carts/{cart}/items"),
            token,
            json!({"data": {"type": "cart_item", "id": product, "quantity": q}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        http,
        format!("{base}/v2/carts/{cart}/checkout"),
        token,
        json!({"data": {"customer": {"email": "a@example.com"}, "billing_address": {"line_1": "1 Street"}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().expect("order id").to_owned()
}

async fn figures(http: &reqwest::Client, base: &str, token: &str, product: &str) -> (u64, u64) {
    let r: Value = http
        .get(format!("{base}/v2/inventories/{product}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    (
        r["data"]["total"].as_u64().expect("total"),
        r["data"]["allocated"].as_u64().expect("allocated"),
    )
}

/// Two `stockroom serve` processes over one PostgreSQL database; 200 clients split across
/// them each allocate one unit of a product holding 100 — half through the transactions API,
/// half by paying an order that also allocates a second product (a multi-line allocation).
/// Exactly 100 win, no order is half-allocated, no client sees a deadlock or a 5xx, and
/// `verify` agrees afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_over_one_postgres_database_never_oversell() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(url) = fresh_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let env = [
        ("STOCKROOM_CLIENT_ID", ADMIN_ID),
        ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
    ];
    let a = serve(&url, &env);
    let b = serve(&url, &env);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let ta = token(&http, &a.base, ADMIN_ID, ADMIN_SECRET).await;
    let tb = token(&http, &b.base, ADMIN_ID, ADMIN_SECRET).await;
    for (p, q) in [("hot", 100), ("side", 1000)] {
        let (status, _) = post(
            &http,
            format!("{}/v2/inventories/{p}", a.base),
            &ta,
            json!({"data": {"quantity": q}}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let mut orders = Vec::new();
    for i in 0..100 {
        orders.push(
            order_of(
                &http,
                &b.base,
                &tb,
                &format!("cart-{i}"),
                &[("hot", 1), ("side", 1)],
            )
            .await,
        );
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let (http, barrier) = (http.clone(), barrier.clone());
            let (base, t) = if i % 2 == 0 {
                (a.base.clone(), ta.clone())
            } else {
                (b.base.clone(), tb.clone())
            };
            let order = (i % 4 >= 2).then(|| orders[(i / 4) * 2 + (i % 4 - 2)].clone());
            tokio::spawn(async move {
                barrier.wait().await;
                match &order {
                    Some(order) => {
                        let (status, _) = post(
                            &http,
                            format!("{base}/v2/orders/{order}/payments"),
                            &t,
                            json!({"data": {"gateway": "manual", "method": "purchase"}}),
                        )
                        .await;
                        (status, order.clone())
                    }
                    None => {
                        let (status, _) = post(
                            &http,
                            format!("{base}/v2/inventories/hot/transactions"),
                            &t,
                            json!({"data": {"action": "allocate", "quantity": 1}}),
                        )
                        .await;
                        (if status == 422 { 400 } else { status }, String::new())
                    }
                }
            })
        })
        .collect();
    let mut won = 0;
    let mut paid_orders = 0;
    for t in tasks {
        let (status, order) = t.await.expect("task");
        assert!(status == 200 || status == 400, "answered {status}");
        won += usize::from(status == 200);
        if !order.is_empty() && status == 200 {
            paid_orders += 1;
        }
    }
    assert_eq!(won, 100);
    assert_eq!(figures(&http, &b.base, &tb, "hot").await, (100, 100));
    assert_eq!(
        figures(&http, &a.base, &ta, "side").await,
        (1000, paid_orders),
        "each paid order allocated its second line too, each refused one nothing"
    );
    drop((a, b));
    let out = run(&["verify", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("{} history entries", 2 + 100 + paid_orders)),
        "{}",
        text(&out.stdout)
    );
}

/// SIGKILL while a payment waits on a gateway that never answers; after a restart the
/// attempt's allocation is released once its timeout passes, exactly once, and `verify` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_pending_when_the_process_dies_is_released_after_restart() {
    use axum::routing::post as route_post;
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel::<()>(4);
    let gateway = axum::Router::new().route(
        "/pay",
        route_post(move || {
            let seen_tx = seen_tx.clone();
            async move {
                let _ = seen_tx.send(()).await;
                std::future::pending::<()>().await
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let gateway_url = format!("http://{}/pay", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, gateway).await });

    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let env = [
        ("STOCKROOM_CLIENT_ID", ADMIN_ID),
        ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
        ("STOCKROOM_PAYMENT_GATEWAY_URL", gateway_url.as_str()),
        ("STOCKROOM_PAYMENT_GATEWAY_TIMEOUT_MS", "5000"),
        ("STOCKROOM_PAYMENT_PENDING_TIMEOUT_MS", "6000"),
    ];
    let mut server = serve(&url, &env);
    let http = reqwest::Client::new();
    let t = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
    post(
        &http,
        format!("{}/v2/inventories/p", server.base),
        &t,
        json!({"data": {"quantity": 5}}),
    )
    .await;
    let order = order_of(&http, &server.base, &t, "c", &[("p", 2)]).await;
    let paying = tokio::spawn({
        let (http, base, t, order) = (http.clone(), server.base.clone(), t.clone(), order.clone());
        async move {
            http.post(format!("{base}/v2/orders/{order}/payments"))
                .bearer_auth(t)
                .json(&json!({"data": {"gateway": "http", "method": "purchase"}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    seen.recv().await.expect("the gateway was asked");
    assert_eq!(
        figures(&http, &server.base, &t, "p").await,
        (5, 2),
        "allocated while pending"
    );
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("wait");
    assert!(
        paying.await.expect("task").is_err(),
        "the payer never got an answer"
    );

    let server = serve(&url, &env);
    let t = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
    // Wait (bounded) for the release that the restarted instance makes once the attempt is due.
    let mut released = false;
    for _ in 0..200 {
        if figures(&http, &server.base, &t, "p").await == (5, 0) {
            released = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(released, "the allocation was released after the timeout");
    let history: Value = http
        .get(format!("{}/v2/inventories/p/transactions", server.base))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let actions: Vec<&str> = history["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|e| e["order_id"] == order.as_str())
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["deallocate", "allocate"], "released exactly once");
    let r: Value = http
        .get(format!("{}/v2/orders/{order}", server.base))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r["data"]["payment"], "unpaid");
    drop(server);
    let out = run(&["verify", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

#[tokio::test]
async fn backup_copies_a_consistent_sqlite_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let server = serve(
        &url,
        &[
            ("STOCKROOM_CLIENT_ID", ADMIN_ID),
            ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
        ],
    );
    let http = reqwest::Client::new();
    let t = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
    post(
        &http,
        format!("{}/v2/inventories/p", server.base),
        &t,
        json!({"data": {"quantity": 7}}),
    )
    .await;
    let copy = dir.path().join("copy.db");
    let out = run(&[
        "backup",
        "--to",
        copy.to_str().expect("path"),
        "--database-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    drop(server);
    let copy_url = format!("sqlite://{}", copy.display());
    let out = run(&["verify", "--database-url", &copy_url]);
    assert!(
        text(&out.stdout).contains("checked 1 stock records"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&[
        "backup",
        "--to",
        copy.to_str().expect("path"),
        "--database-url",
        &url,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an existing file is never overwritten"
    );
    let out = run(&[
        "backup",
        "--to",
        "/tmp/x.db",
        "--database-url",
        "postgres://u@127.0.0.1:1/db",
    ]);
    assert!(text(&out.stderr).contains("pg_dump"));
}

#[test]
fn verify_refuses_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("typo.db");
    let out = run(&[
        "verify",
        "--database-url",
        &format!("sqlite://{}", missing.display()),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(!missing.exists(), "verify created no database");
}

#[test]
fn a_client_secret_shorter_than_24_characters_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(sqlite_url(dir.path()))
        .env("STOCKROOM_CLIENT_ID", ADMIN_ID)
        .env("STOCKROOM_CLIENT_SECRET", "a".repeat(23))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("at least 24 characters"), "{stderr}");
    assert!(
        !stderr.contains(&"a".repeat(23)),
        "the secret is not echoed"
    );
}

#[test]
fn a_webhook_ca_file_that_cannot_be_used_stops_serve_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let no_cert = dir.path().join("no-cert.pem");
    std::fs::write(&no_cert, "not a certificate\n").expect("written");
    let bad_cert = dir.path().join("bad-cert.pem");
    std::fs::write(
        &bad_cert,
        "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("written");
    for (file, why) in [
        (dir.path().join("missing.pem"), "cannot open"),
        (no_cert, "holds no PEM certificate"),
        (bad_cert, "is not a usable X.509 certificate"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(sqlite_url(dir.path()))
            .env("STOCKROOM_CLIENT_ID", ADMIN_ID)
            .env("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET)
            .env("STOCKROOM_WEBHOOK_CA_FILE", &file)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--webhook-ca-file")
                && stderr.contains(&file.display().to_string())
                && stderr.contains(why),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !dir.path().join("stockroom.db").exists(),
            "refused before the database was opened"
        );
    }
}

/// Asks with `token` until the server refuses it; panics if it still accepts it after 10 s
/// (instances re-read their keys every 2 s).
async fn refused_soon(http: &reqwest::Client, base: &str, token: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = http
            .get(format!("{base}/v2/inventories"))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        if r.status() == 401 {
            return;
        }
        assert_eq!(r.status(), 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn works(http: &reqwest::Client, base: &str, token: &str) -> bool {
    http.get(format!("{base}/v2/inventories"))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .status()
        == 200
}

fn printed(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(str::trim)
        .expect(name)
        .to_owned()
}

/// `keys revoke`, `keys rotate-secret` and `keys rotate-signing-key`, run beside a serving
/// instance, stop the tokens they should, and only those.
#[tokio::test]
async fn keys_revoke_rotate_secret_and_rotate_signing_key_stop_old_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let env = [
        ("STOCKROOM_CLIENT_ID", ADMIN_ID),
        ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
    ];
    let server = serve(&url, &env);
    let out = run(&["keys", "create", "--name", "ops", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (ops_id, ops_secret) = (
        printed(&stdout, "client_id:"),
        printed(&stdout, "client_secret:"),
    );
    let http = reqwest::Client::new();
    let base = &server.base;
    let admin = token(&http, base, ADMIN_ID, ADMIN_SECRET).await;
    let ops = token(&http, base, &ops_id, &ops_secret).await;
    let listed = text(&run(&["keys", "list", "--database-url", &url]).stdout);
    assert!(
        listed.contains(&ops_id) && listed.contains(ADMIN_ID),
        "{listed}"
    );
    assert!(!listed.contains(&ops_secret), "never a secret");

    let out = run(&[
        "keys",
        "revoke",
        "--client-id",
        &ops_id,
        "--database-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    refused_soon(&http, base, &ops).await;
    assert!(
        works(&http, base, &admin).await,
        "other credentials keep their tokens"
    );

    let out = run(&[
        "keys",
        "rotate-secret",
        "--client-id",
        ADMIN_ID,
        "--database-url",
        &url,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_secret = printed(&text(&out.stdout), "client_secret:");
    refused_soon(&http, base, &admin).await;
    let admin = token(&http, base, ADMIN_ID, &new_secret).await;
    assert!(works(&http, base, &admin).await);

    let out = run(&["keys", "rotate-signing-key", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    refused_soon(&http, base, &admin).await;
    let admin = token(&http, base, ADMIN_ID, &new_secret).await;
    assert!(works(&http, base, &admin).await, "signing in again works");
    let out = run(&[
        "keys",
        "revoke",
        "--client-id",
        "nobody",
        "--database-url",
        &url,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown client id is an error"
    );
}

/// Every instance starts with the same STOCKROOM_CLIENT_SECRET: a restart with it keeps the
/// credential's tokens; a restart with a new one revokes them.
#[tokio::test]
async fn a_new_client_secret_at_start_revokes_the_old_tokens_and_the_same_one_keeps_them() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let http = reqwest::Client::new();
    let with = |secret: &'static str| {
        [
            ("STOCKROOM_CLIENT_ID", ADMIN_ID),
            ("STOCKROOM_CLIENT_SECRET", secret),
        ]
    };
    let first = serve(&url, &with(ADMIN_SECRET));
    let admin = token(&http, &first.base, ADMIN_ID, ADMIN_SECRET).await;
    drop(first);
    let same = serve(&url, &with(ADMIN_SECRET));
    assert!(
        works(&http, &same.base, &admin).await,
        "same secret: still valid"
    );
    drop(same);
    let changed = serve(&url, &with("a-different-secret-of-enough-length"));
    assert!(
        !works(&http, &changed.base, &admin).await,
        "new secret: revoked"
    );
    let logs = changed.logs_with("revoked");
    assert!(
        logs.contains("every token issued with the old one is revoked"),
        "{logs}"
    );
}

/// Failed sign-ins are logged at warn with the client id and address, never the secret; a
/// database file others can read is reported at start.
#[cfg(unix)]
#[tokio::test]
async fn failed_sign_ins_and_a_readable_database_are_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let env = [
        ("STOCKROOM_CLIENT_ID", ADMIN_ID),
        ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
    ];
    drop(serve(&url, &env));
    let db = dir.path().join("stockroom.db");
    let mode = std::fs::metadata(&db).expect("db").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created private");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = serve(&url, &env);
    let logs = server.logs_with("chmod 600");
    assert!(logs.contains("can be read by other users"), "{logs}");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/oauth/access_token", server.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_ID),
            ("client_secret", "the-wrong-secret-guess"),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let logs = server.logs_with("sign-in failed");
    let line = logs
        .lines()
        .find(|l| l.contains("sign-in failed"))
        .unwrap_or_else(|| panic!("a sign-in failure is logged: {logs}"));
    assert!(
        line.contains("WARN") && line.contains(ADMIN_ID) && line.contains("127.0.0.1"),
        "{line}"
    );
    assert!(!logs.contains("the-wrong-secret-guess"), "never the secret");
}

// ----- import and export -----

/// `stockroom export` of a database's stock records (JSON lines, or CSV).
fn export(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["export", "--database-url", url];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "export: {}", text(&out.stderr));
    text(&out.stdout)
}

/// `stockroom import FILE`, with its exit code and what it printed.
fn import(url: &str, file: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "import",
        file.to_str().expect("path"),
        "--database-url",
        url,
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn verify_ok(url: &str) {
    let out = run(&["verify", "--database-url", url]);
    assert!(out.status.success(), "verify: {}", text(&out.stdout));
}

/// Stock made through the API: a location, classic and multi-location records, manual and
/// order-held allocations, a record decremented to 0.
async fn seed_through_the_api(url: &str) {
    let server = serve(
        url,
        &[
            ("STOCKROOM_CLIENT_ID", ADMIN_ID),
            ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
        ],
    );
    let http = reqwest::Client::new();
    let base = &server.base;
    let t = token(&http, base, ADMIN_ID, ADMIN_SECRET).await;
    let (status, body) = post(
        &http,
        format!("{base}/v2/inventories/locations"),
        &t,
        json!({"data": {"type": "inventory_location", "attributes": {"name": "Warehouse A", "slug": "wh-a"}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (id, q) in [("mug", 40), ("pot", 5), ("gone", 3)] {
        let (status, _) = post(
            &http,
            format!("{base}/v2/inventories/{id}"),
            &t,
            json!({"data": {"quantity": q}}),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, body) = post(
        &http,
        format!("{base}/v2/inventories"),
        &t,
        json!({"data": {"type": "stock", "id": "crate", "attributes": {"locations": {"wh-a": {"available": 12}}}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for (id, action, q) in [("mug", "allocate", 6), ("gone", "decrement", 3)] {
        let (status, body) = post(
            &http,
            format!("{base}/v2/inventories/{id}/transactions"),
            &t,
            json!({"data": {"type": "stock-transaction", "action": action, "quantity": q}}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let order = order_of(&http, base, &t, "cart-1", &[("pot", 2)]).await;
    let (status, body) = post(
        &http,
        format!("{base}/v2/orders/{order}/payments"),
        &t,
        json!({"data": {"gateway": "manual", "method": "purchase"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Export → import into an empty database → export gives the same file, in both formats, on
/// both backends; the import passes `verify`, and a second import changes nothing.
#[tokio::test]
async fn exported_stock_imports_into_an_empty_database_unchanged() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().expect("dir");
        let a = dir.path().join("a");
        std::fs::create_dir_all(&a).expect("dir");
        let Some(source) = fresh_database(backend, &a).await else {
            continue;
        };
        seed_through_the_api(&source).await;
        let jsonl = export(&source, &[]);
        assert_eq!(jsonl.lines().count(), 4, "{jsonl}");
        assert!(jsonl.contains(
            r#"{"product_id":"pot","location":"","total":5,"allocated":2,"available":3}"#
        ));
        assert!(jsonl.contains(r#""product_id":"gone","location":"","total":0"#));
        for (format, exported) in [
            ("jsonl", jsonl.clone()),
            ("csv", export(&source, &["--format", "csv"])),
        ] {
            let file = dir.path().join(format!("stock.{format}"));
            std::fs::write(&file, &exported).expect("write");
            let place = dir.path().join(format);
            std::fs::create_dir_all(&place).expect("dir");
            let Some(target) = fresh_database(backend, &place).await else {
                continue;
            };
            // The location must exist where stock is imported: make it with the API's twin.
            seed_location(&target).await;
            let (code, out, err) = import(&target, &file, &[]);
            assert_eq!(code, Some(0), "{out}{err}");
            assert!(out.contains("4 records were created"), "{out}");
            assert_eq!(
                export(&target, &["--format", format]),
                exported,
                "{backend:?} {format}"
            );
            verify_ok(&target);
            let (code, out, _) = import(&target, &file, &[]);
            assert_eq!(code, Some(0));
            assert!(
                out.contains("0 records were created, 0 were changed, 4 already matched"),
                "{out}"
            );
            let history = export(&target, &["--history"]);
            assert!(
                history.contains(r#""reason":"import""#),
                "changes carry the reason: {history}"
            );
        }
    }
}

async fn seed_location(url: &str) {
    let server = serve(
        url,
        &[
            ("STOCKROOM_CLIENT_ID", ADMIN_ID),
            ("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET),
        ],
    );
    let http = reqwest::Client::new();
    let t = token(&http, &server.base, ADMIN_ID, ADMIN_SECRET).await;
    let (status, _) = post(
        &http,
        format!("{}/v2/inventories/locations", server.base),
        &t,
        json!({"data": {"type": "inventory_location", "attributes": {"name": "Warehouse A", "slug": "wh-a"}}}),
    )
    .await;
    assert_eq!(status, 201);
}

/// `n` lines of levels: every product at no location, some at 0, some with allocations.
fn levels_file(path: &Path, n: usize) {
    let mut lines = String::new();
    for i in 0..n {
        let total = i % 37;
        let allocated = if i % 5 == 0 { total / 2 } else { 0 };
        lines.push_str(&format!(
            "{{\"product_id\":\"p{i:06}\",\"total\":{total},\"allocated\":{allocated}}}\n"
        ));
    }
    std::fs::write(path, lines).expect("write");
}

#[test]
fn a_dry_run_says_what_would_change_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let file = dir.path().join("levels.jsonl");
    levels_file(&file, 50);
    let (code, out, _) = import(&url, &file, &["--batch-lines", "20"]);
    assert_eq!(code, Some(0), "{out}");
    let before = export(&url, &["--history"]);
    levels_file(&file, 60);
    let (code, out, err) = import(&url, &file, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("10 records would be created, 0 would be changed, 50 already matched"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert_eq!(
        export(&url, &["--history"]),
        before,
        "not one history entry more"
    );
}

#[test]
fn a_bad_line_is_reported_by_number_and_nothing_of_its_batch_is_applied() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let file = dir.path().join("levels.csv");
    let mut csv = String::from("product_id,location,total,allocated\n");
    for i in 1..=30 {
        if i == 15 {
            csv.push_str("p15,,-3,\n");
        } else {
            csv.push_str(&format!("p{i},,{i},\n"));
        }
    }
    csv.push_str("p31,nowhere,1,\n");
    std::fs::write(&file, csv).expect("write");
    let (code, out, err) = import(&url, &file, &["--batch-lines", "10"]);
    assert_eq!(code, Some(1), "a bad line fails the import: {out}");
    assert!(
        err.contains("line 16: total must be a whole number"),
        "CSV line numbers count the header: {err}"
    );
    assert!(
        err.contains("line 32: no location with slug \"nowhere\""),
        "{err}"
    );
    let ids: Vec<String> = export(&url, &[])
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["product_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (1..=10).chain(21..=30).map(|i| format!("p{i}")).collect();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(
        ids, sorted,
        "lines 2-11 and 22-31 applied; the batches of the bad lines not"
    );
    verify_ok(&url);
}

/// An import killed with SIGKILL half-way, then run again, leaves exactly what one clean import
/// leaves (and a history `verify` agrees with).
#[test]
fn an_import_killed_half_way_and_run_again_ends_like_one_clean_import() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("levels.jsonl");
    let lines = 6000;
    levels_file(&file, lines);
    let clean = format!("sqlite://{}/clean.db", dir.path().display());
    let (code, _, err) = import(&clean, &file, &[]);
    assert_eq!(code, Some(0), "{err}");

    let url = format!("sqlite://{}/killed.db", dir.path().display());
    let mut child = Command::new(BIN)
        .args([
            "import",
            file.to_str().expect("path"),
            "--database-url",
            &url,
            "--batch-lines",
            "200",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn import");
    let db = dir.path().join("killed.db");
    // Kill it as soon as its first changes are committed.
    let started = std::time::Instant::now();
    let stocked = || -> usize { rusqlite_count(&db) };
    while stocked() == 0 {
        assert!(
            started.elapsed().as_secs() < 60,
            "the import never committed anything"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the import ended before it could be killed"
        );
        std::thread::yield_now();
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let at_kill = stocked();
    assert!(
        at_kill < lines,
        "killed half-way: {at_kill} of {lines} records"
    );
    let (code, out, err) = import(&url, &file, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(
        export(&url, &[]),
        export(&clean, &[]),
        "the same figures as one clean import"
    );
    verify_ok(&url);
}

/// Stock records in a SQLite file (0 while the file or its tables do not exist yet).
fn rusqlite_count(db: &Path) -> usize {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT COUNT(*) FROM stock", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| usize::try_from(n).unwrap_or(0))
}

/// `--metrics-listen` serves `/metrics` without a token on its own address; the main address
/// still asks for an administrator's.
#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_token_on_its_own_address() {
    let dir = tempfile::tempdir().expect("dir");
    let url = sqlite_url(dir.path());
    let server = serve(&url, &[("STOCKROOM_METRICS_LISTEN", "127.0.0.1:0")]);
    let addr = server
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("metrics on "))
        .expect("the metrics address is printed")
        .to_owned();
    let http = reqwest::Client::new();
    let main = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("get");
    assert_eq!(
        main.status().as_u16(),
        401,
        "the main address needs a token"
    );
    let plain = http.get(&addr).send().await.expect("get");
    assert_eq!(plain.status().as_u16(), 200);
    let text = plain.text().await.expect("text");
    assert!(
        text.contains("stockroom_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"status="401""#),
        "the refused scrape was counted: {text}"
    );
}

/// `stockroom orders purge-unpaid` removes unpaid orders older than the cutoff, with their
/// items, and keeps paid and newer ones (issue 12 finding 5), on both databases.
#[tokio::test]
async fn purge_unpaid_removes_old_unpaid_orders_and_keeps_the_rest() {
    use stockroom_domain::order::PaymentMethod;
    use stockroom_domain::{Clock, ProductId, Quantity, Timestamp};
    use stockroom_http::clock::{ManualClock, SystemClock};
    use stockroom_store::{
        CartLine, Command, NewOrder, NewPayment, OpenOptions, Outcome, SqlStore, Store,
        WriteRequest,
    };
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let dir = tempfile::tempdir().expect("dir");
        let Some(url) = fresh_database(backend, dir.path()).await else {
            continue;
        };
        let three_days_ago = SystemClock.now().secs() - 3 * 24 * 3600;
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(three_days_ago)));
        let store = SqlStore::open(&url, OpenOptions::default(), clock.clone())
            .await
            .expect("open");
        let write = |command: Command| {
            let store = store.clone();
            async move {
                let answer = store
                    .execute(WriteRequest::new(command))
                    .await
                    .expect("write");
                assert!(matches!(answer.outcome, Outcome::Applied(_)), "{answer:?}");
            }
        };
        let order = |id: &str| {
            let (id, cart) = (id.to_owned(), format!("cart-{id}"));
            let write = &write;
            async move {
                write(Command::AddToCart {
                    cart_id: cart.clone(),
                    lines: vec![CartLine {
                        product: ProductId::parse("mug").expect("id"),
                        location: String::new(),
                        quantity: Quantity::new(2).expect("quantity"),
                    }],
                    custom: Vec::new(),
                })
                .await;
                write(Command::Checkout(NewOrder {
                    id,
                    cart_id: cart,
                    customer_id: None,
                    customer: "{}".into(),
                    billing_address: "{}".into(),
                    shipping_address: "{}".into(),
                }))
                .await;
            }
        };
        order("old-unpaid").await;
        order("old-paid").await;
        write(Command::Pay {
            order_id: "old-paid".into(),
            payment: NewPayment {
                id: "pay-1".into(),
                gateway: "manual".into(),
                method: PaymentMethod::Purchase,
                expires_at: Timestamp::from_secs(three_days_ago + 60),
            },
            settled: true,
            gateway_enabled: true,
        })
        .await;
        clock.advance_secs(3 * 24 * 3600 - 60);
        order("new-unpaid").await;
        let out = run(&[
            "orders",
            "purge-unpaid",
            "--older-than-days",
            "2",
            "--database-url",
            &url,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stdout).contains("removed 1 unpaid orders"),
            "{}",
            text(&out.stdout)
        );
        assert!(store.order("old-unpaid").await.expect("read").is_none());
        for kept in ["old-paid", "new-unpaid"] {
            let kept = store.order(kept).await.expect("read").expect("kept");
            assert_eq!(kept.items.len(), 1);
        }
        let out = run(&["orders", "purge-unpaid", "--older-than-days", "0"]);
        assert!(!out.status.success(), "0 days is refused");
    }
}
