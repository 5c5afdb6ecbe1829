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
const ADMIN_SECRET: &str = "cli-admin-secret";

/// A running `stockroom serve`, killed when dropped.
struct Server {
    child: Child,
    base: String,
    stdout: String,
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
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
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
