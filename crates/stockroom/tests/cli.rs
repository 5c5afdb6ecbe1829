//! The `stockroom` binary as a user runs it: serve, verify, keys, bad configuration, and several
//! instances over one PostgreSQL database.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};
use sqlx::Connection;
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
            "checked 2 stock records, 2 products with history, 4 history entries: all agree"
        ),
        "{}",
        text(&out.stdout)
    );

    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("UPDATE stock SET allocated = allocated - 1 WHERE product_id = 'b'")
        .execute(&mut conn)
        .await
        .expect("tamper");
    // The history itself refuses to be rewritten.
    assert!(sqlx::query("UPDATE history SET quantity = 1")
        .execute(&mut conn)
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM history")
        .execute(&mut conn)
        .await
        .is_err());
    conn.close().await.expect("close");

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

/// Two `stockroom serve` processes over one PostgreSQL database, 200 clients split across them
/// allocating one unit each of a product holding 100: exactly 100 win, none sees a deadlock or
/// a 5xx, and `verify` agrees afterwards.
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
    for (p, q) in [("hot", 100), ("other", 1000)] {
        let r = http
            .post(format!("{}/v2/inventories/{p}", a.base))
            .bearer_auth(&ta)
            .json(&json!({"data": {"quantity": q}}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
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
            tokio::spawn(async move {
                barrier.wait().await;
                let hot = http
                    .post(format!("{base}/v2/inventories/hot/transactions"))
                    .bearer_auth(&t)
                    .json(&json!({"data": {"action": "allocate", "quantity": 1}}))
                    .send()
                    .await
                    .expect("allocate");
                let other = http
                    .post(format!("{base}/v2/inventories/other/transactions"))
                    .bearer_auth(&t)
                    .json(&json!({"data": {"action": "allocate", "quantity": 2}}))
                    .send()
                    .await
                    .expect("allocate other");
                (hot.status().as_u16(), other.status().as_u16())
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        let (hot, other) = t.await.expect("task");
        assert!(hot == 200 || hot == 422, "hot answered {hot}");
        assert_eq!(other, 200, "the other product had plenty");
        won += usize::from(hot == 200);
    }
    assert_eq!(won, 100);
    let r: Value = http
        .get(format!("{}/v2/inventories/hot", b.base))
        .bearer_auth(&tb)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (r["data"]["total"].as_u64(), r["data"]["allocated"].as_u64()),
        (Some(100), Some(100))
    );
    let r: Value = http
        .get(format!("{}/v2/inventories/other", a.base))
        .bearer_auth(&ta)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(r["data"]["allocated"].as_u64(), Some(400));
    drop((a, b));
    let out = run(&["verify", "--database-url", &url]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("302 history entries"),
        "{}",
        text(&out.stdout)
    );
}
