//! Event delivery across process deaths and instances (issue 14), with real `stockroom serve`
//! processes and a real webhook receiver in the test:
//!
//! - SIGKILL while events are pending and the receiver is failing: after a restart every
//!   history entry arrives, each under exactly one event id (possibly more than once), in
//!   history order per product.
//! - Two instances over one PostgreSQL database: every event is delivered exactly once (the
//!   lease), in history order per product.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use stockroom_store::testing::{fresh_database, Backend};

const BIN: &str = env!("CARGO_BIN_EXE_stockroom");
const ADMIN_ID: &str = "events-admin";
const ADMIN_SECRET: &str = "events-admin-secret-of-24-chars-or-more";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(url: &str) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
        .env("STOCKROOM_CLIENT_ID", ADMIN_ID)
        .env("STOCKROOM_CLIENT_SECRET", ADMIN_SECRET)
        .env("STOCKROOM_WEBHOOK_ALLOW_PRIVATE_NETWORKS", "true")
        .env("STOCKROOM_WEBHOOK_TIMEOUT_MS", "300")
        .env("STOCKROOM_WEBHOOK_BACKOFF_MS", "20")
        .env("STOCKROOM_WEBHOOK_MAX_ATTEMPTS", "50")
        .env("STOCKROOM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stockroom serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read stdout");
        if let Some(addr) = line.strip_prefix("stockroom listening on http://") {
            break addr.to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base: format!("http://{addr}"),
    }
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    event: String,
    entry: String,
    product: String,
    ok: bool,
}

struct Hook {
    fail_first: usize,
    served: AtomicUsize,
    got: Mutex<Vec<Got>>,
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let n = hook.served.fetch_add(1, Ordering::SeqCst);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let ok = n >= hook.fail_first;
    let data = &body["payload"]["data"];
    hook.got.lock().expect("lock").push(Got {
        event: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        entry: data["id"].as_str().unwrap_or_default().to_owned(),
        product: data["attributes"]["product_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        ok,
    });
    if ok {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

async fn receiver(fail_first: usize) -> (String, Arc<Hook>) {
    let hook = Arc::new(Hook {
        fail_first,
        served: AtomicUsize::new(0),
        got: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hook)
}

async fn token(http: &reqwest::Client, base: &str) -> String {
    let r: Value = http
        .post(format!("{base}/oauth/access_token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_ID),
            ("client_secret", ADMIN_SECRET),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    r["access_token"].as_str().expect("access_token").to_owned()
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    t: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(t);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("a request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every history entry id of a product, oldest first.
async fn history(http: &reqwest::Client, base: &str, t: &str, product: &str) -> Vec<String> {
    let (_, r) = call(
        http,
        reqwest::Method::GET,
        format!("{base}/v2/inventories/{product}/transactions?page[limit]=100"),
        t,
        None,
    )
    .await;
    let mut ids: Vec<String> = r["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    ids.reverse();
    ids
}

/// Waits until none of the integration's jobs is pending.
async fn settled(http: &reqwest::Client, base: &str, t: &str, integration: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, r) = call(
            http,
            reqwest::Method::GET,
            format!("{base}/v2/integrations/{integration}/jobs"),
            t,
            None,
        )
        .await;
        let jobs = r["data"].as_array().cloned().unwrap_or_default();
        if !jobs.is_empty() && jobs.iter().all(|j| j["status"] != "pending") {
            return jobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs stay pending: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn integrate(http: &reqwest::Client, base: &str, t: &str, url: &str) -> String {
    let (status, r) = call(
        http,
        reqwest::Method::POST,
        format!("{base}/v2/integrations"),
        t,
        Some(json!({"data": {"type": "integration", "name": "ERP",
            "observes": ["stock-transaction.created"],
            "configuration": {"url": url, "secret_key": "s3cret"}}})),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    r["data"]["id"].as_str().expect("id").to_owned()
}

/// Makes `steps` stock changes per product through `bases` in turn; all must be acknowledged.
async fn changes(http: &reqwest::Client, bases: &[(&str, &str)], products: &[&str], steps: usize) {
    for (i, p) in products.iter().enumerate() {
        let (base, t) = bases[i % bases.len()];
        let (status, r) = call(
            http,
            reqwest::Method::POST,
            format!("{base}/v2/inventories/{p}"),
            t,
            Some(json!({"data": {"quantity": 1000}})),
        )
        .await;
        assert_eq!(status, 201, "{r}");
    }
    for step in 1..steps {
        for (i, p) in products.iter().enumerate() {
            let (base, t) = bases[(i + step) % bases.len()];
            let (status, r) = call(
                http,
                reqwest::Method::POST,
                format!("{base}/v2/inventories/{p}/transactions"),
                t,
                Some(json!({"data": {"type": "stock-transaction", "action": "allocate", "quantity": 1}})),
            )
            .await;
            assert_eq!(status, 200, "{r}");
        }
    }
}

/// Each entry arrived (successfully) under exactly one event id, each id names one entry, and
/// per product the first successful deliveries follow history order.
fn check(got: &[Got], entries: &BTreeMap<String, Vec<String>>) {
    let mut ids_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for g in got {
        ids_of.entry(&g.entry).or_default().insert(&g.event);
    }
    let all: usize = entries.values().map(Vec::len).sum();
    assert_eq!(ids_of.len(), all, "every entry arrived, nothing else did");
    for (entry, ids) in &ids_of {
        assert_eq!(ids.len(), 1, "{entry} arrived under {ids:?}");
    }
    for (product, history) in entries {
        let mut first_ok: Vec<&str> = Vec::new();
        for g in got.iter().filter(|g| g.ok && &g.product == product) {
            if !first_ok.contains(&g.entry.as_str()) {
                first_ok.push(&g.entry);
            }
        }
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        assert_eq!(first_ok, history, "{product}: delivered in history order");
    }
}

async fn sigkill_while_events_are_pending_loses_none(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let Some(url) = fresh_database(backend, dir.path()).await else {
        return;
    };
    // The receiver fails its first 8 requests, so the first instance dies with work to do.
    let (hook_url, hook) = receiver(8).await;
    let http = reqwest::Client::new();
    let mut first = serve(&url);
    let t = token(&http, &first.base).await;
    let id = integrate(&http, &first.base, &t, &hook_url).await;
    let products = ["a", "b", "c"];
    changes(&http, &[(&first.base, &t)], &products, 8).await;
    // Killed once deliveries are under way (failing), with jobs pending.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while hook.served.load(Ordering::SeqCst) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "no delivery began");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("wait");
    drop(first);
    let second = serve(&url);
    let t = token(&http, &second.base).await;
    let jobs = settled(&http, &second.base, &t, &id).await;
    assert_eq!(jobs.len(), products.len() * 8, "one job per entry");
    assert!(jobs.iter().all(|j| j["status"] == "delivered"), "{jobs:?}");
    let mut entries = BTreeMap::new();
    for p in products {
        entries.insert(p.to_owned(), history(&http, &second.base, &t, p).await);
    }
    let got = hook.got.lock().expect("lock").clone();
    check(&got, &entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_events_are_pending_loses_none_on_sqlite() {
    sigkill_while_events_are_pending_loses_none(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_events_are_pending_loses_none_on_postgres() {
    sigkill_while_events_are_pending_loses_none(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_over_postgres_deliver_each_event_once_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let Some(url) = fresh_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let (hook_url, hook) = receiver(0).await;
    let http = reqwest::Client::new();
    let a = serve(&url);
    let b = serve(&url);
    let ta = token(&http, &a.base).await;
    let tb = token(&http, &b.base).await;
    let id = integrate(&http, &a.base, &ta, &hook_url).await;
    let products = ["a", "b", "c", "d"];
    changes(&http, &[(&a.base, &ta), (&b.base, &tb)], &products, 10).await;
    let jobs = settled(&http, &b.base, &tb, &id).await;
    assert_eq!(jobs.len(), products.len() * 10);
    let mut entries = BTreeMap::new();
    for p in products {
        entries.insert(p.to_owned(), history(&http, &a.base, &ta, p).await);
    }
    let got = hook.got.lock().expect("lock").clone();
    assert_eq!(got.len(), products.len() * 10, "each event delivered once");
    check(&got, &entries);
}
