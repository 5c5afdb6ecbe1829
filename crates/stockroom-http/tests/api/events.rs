//! Integrations and webhook delivery, against a real HTTP receiver in the test, on SQLite and
//! PostgreSQL: every observed event arrives once with Elastic Path's payload and the Standard
//! Webhooks headers; failing, hanging and redirecting receivers get retries carrying the same
//! event id; disabled integrations get nothing; private targets are refused unless allowed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stockroom_http::EventSettings;
use stockroom_store::testing::Backend;
use tokio::sync::mpsc;

use crate::support::{spawn_app_evented, TestApp};

crate::on_both_backends_raw!(
    webhooks_receive_each_observed_event_once_signed_and_shaped,
    order_events_carry_the_order_as_it_was,
    failing_and_hanging_receivers_get_retries_with_the_same_event_id,
    a_failure_inside_a_run_holds_back_the_events_behind_it,
    redirects_are_not_followed,
    disabled_integrations_receive_nothing,
    private_targets_are_refused_unless_allowed,
    the_integrations_api_checks_its_input,
    nats_integrations_publish_each_event_once_under_its_event_id,
    low_stock_alerts_fire_once_per_crossing,
);

/// How the receiver answers, request by request (then 200 for good).
#[derive(Clone)]
pub(crate) enum Answer {
    Status(u16),
    /// Answers only after this long (beyond the delivery timeout).
    Hang(Duration),
    Redirect(String),
}

pub(crate) struct Received {
    pub(crate) headers: HeaderMap,
    pub(crate) raw: Vec<u8>,
    pub(crate) body: Value,
}

struct Hook {
    script: Vec<Answer>,
    served: AtomicUsize,
    tx: mpsc::UnboundedSender<Received>,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<Answer>) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let hook = Arc::new(Hook {
            script,
            served: AtomicUsize::new(0),
            tx,
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(hook);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/hook"),
            rx,
        }
    }

    /// The next delivery, within a deadline.
    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("a delivery in time")
            .expect("the receiver runs")
    }

    pub(crate) fn nothing_more(&mut self) {
        assert!(self.rx.try_recv().is_err(), "no further delivery");
    }
}

async fn receive(State(hook): State<Arc<Hook>>, headers: HeaderMap, raw: Bytes) -> Response {
    let n = hook.served.fetch_add(1, Ordering::SeqCst);
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let _ = hook.tx.send(Received {
        headers,
        raw: raw.to_vec(),
        body,
    });
    match hook.script.get(n).cloned() {
        None => (AxumStatus::OK, "thanks").into_response(),
        Some(Answer::Status(code)) => {
            (AxumStatus::from_u16(code).expect("a status"), "not today").into_response()
        }
        Some(Answer::Hang(d)) => {
            tokio::time::sleep(d).await;
            AxumStatus::OK.into_response()
        }
        Some(Answer::Redirect(to)) => {
            (AxumStatus::FOUND, [("location", to)], "elsewhere").into_response()
        }
    }
}

pub(crate) fn fast(allow_private: bool) -> EventSettings {
    EventSettings {
        allow_private_networks: allow_private,
        delivery_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        poll_every: Duration::from_millis(10),
        max_attempts: 4,
        ..EventSettings::default()
    }
}

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) async fn integrate(
    app: &TestApp,
    url: &str,
    observes: &[&str],
    enabled: bool,
) -> String {
    let r = app
        .admin(
            Method::POST,
            "/v2/integrations",
            Some(json!({"data": {
                "type": "integration",
                "name": "ERP",
                "description": "reorders",
                "enabled": enabled,
                "integration_type": "webhook",
                "observes": observes,
                "configuration": {"url": url, "secret_key": SECRET},
            }})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["data"]["id"].as_str().expect("an id").to_owned()
}

/// Waits until every job of the integration is finished (delivered or failed); its jobs.
pub(crate) async fn settled(app: &TestApp, integration: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = app
            .admin(
                Method::GET,
                &format!("/v2/integrations/{integration}/jobs"),
                None,
            )
            .await;
        let jobs = r.body["data"].as_array().expect("jobs").clone();
        if jobs.iter().all(|j| j["status"] != "pending") {
            return jobs;
        }
        assert!(tokio::time::Instant::now() < deadline, "jobs stay pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("a {name} header"))
}

/// Checks the Standard Webhooks signature as a receiver would.
pub(crate) fn verify_signature(r: &Received) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("base64");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("a key");
    let signed = format!(
        "{}.{}.",
        header(r, "webhook-id"),
        header(r, "webhook-timestamp")
    );
    mac.update(signed.as_bytes());
    mac.update(&r.raw);
    let expected = format!("v1,{}", engine.encode(mac.finalize().into_bytes()));
    assert_eq!(header(r, "webhook-signature"), expected);
}

async fn webhooks_receive_each_observed_event_once_signed_and_shaped(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &["stock-transaction.created"], true).await;
    app.create_stock("p", 10).await;
    assert_eq!(
        app.transact("p", "allocate", 3).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.transact("p", "increment", 2).await.status,
        StatusCode::OK
    );
    let mut actions = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = hook.next().await;
        assert_eq!(header(&r, "x-moltin-secret-key"), SECRET);
        assert_eq!(header(&r, "content-type"), "application/json");
        verify_signature(&r);
        let b = &r.body;
        assert_eq!(b["id"], header(&r, "webhook-id"));
        assert_eq!(b["triggered_by"], "stock-transaction.created");
        assert_eq!(b["attempt"], 1);
        assert_eq!(b["integration"]["id"], id.as_str());
        assert_eq!(b["integration"]["integration_type"], "webhook");
        assert_eq!(b["integration"]["name"], "ERP");
        let data = &b["payload"]["data"];
        assert_eq!(data["type"], "stock-transaction");
        assert_eq!(data["attributes"]["product_id"], "p");
        let resources: Value =
            serde_json::from_str(b["resources"].as_str().expect("resources text")).expect("json");
        assert_eq!(resources, b["payload"]);
        actions.push(
            data["attributes"]["action"]
                .as_str()
                .expect("action")
                .to_owned(),
        );
        ids.push(b["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(
        actions,
        ["create", "allocate", "increment"],
        "in history order"
    );
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs.len(), 3);
    assert!(jobs
        .iter()
        .all(|j| j["status"] == "delivered" && j["attempts"] == 1));
    let mut job_events: Vec<String> = jobs
        .iter()
        .map(|j| j["event_id"].as_str().expect("event id").to_owned())
        .collect();
    job_events.sort();
    ids.sort();
    assert_eq!(job_events, ids);
    hook.nothing_more();
    // The logs say so too.
    let logs = app
        .admin(Method::GET, &format!("/v2/integrations/{id}/logs"), None)
        .await;
    let logs = logs.body["data"].as_array().expect("logs");
    assert_eq!(logs.len(), 3);
    assert!(logs
        .iter()
        .all(|l| l["succeeded"] == true && l["status_code"] == 200 && l["body"] == "thanks"));
}

async fn order_events_carry_the_order_as_it_was(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &["order.created", "order.paid"], true).await;
    app.create_product("p", "SKU-P", 250).await;
    app.create_stock("p", 5).await;
    let order = app.order_of("cart-1", &[("p", 2)]).await;
    let purchase = app.pay(&order, "manual", "purchase").await;
    assert_eq!(purchase.status, StatusCode::OK);
    let purchase = purchase.body["data"]["id"]
        .as_str()
        .expect("transaction id")
        .to_owned();
    let created = hook.next().await;
    let paid = hook.next().await;
    assert_eq!(created.body["triggered_by"], "order.created");
    assert_eq!(paid.body["triggered_by"], "order.paid");
    for (r, payment) in [(&created, "unpaid"), (&paid, "paid")] {
        let data = &r.body["payload"]["data"];
        assert_eq!(data["type"], "order");
        assert_eq!(data["id"], order.as_str());
        assert_eq!(data["payment"], payment, "the state the event saw");
        let items = r.body["payload"]["included"]["items"]
            .as_array()
            .expect("items");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["product_id"], "p");
        assert_eq!(items[0]["quantity"], 2);
    }
    assert_ne!(created.body["id"], paid.body["id"]);
    assert_eq!(settled(&app, &id).await.len(), 2);
    hook.nothing_more();
    // A refund of everything paid is `order.refunded`, once the integration observes it.
    app.admin(
        Method::PUT,
        &format!("/v2/integrations/{id}"),
        Some(json!({"data": {"observes": ["order.refunded"]}})),
    )
    .await;
    let r = app
        .admin(
            Method::POST,
            &format!("/v2/orders/{order}/transactions/{purchase}/refund"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let refunded = hook.next().await;
    assert_eq!(refunded.body["triggered_by"], "order.refunded");
    assert_eq!(refunded.body["payload"]["data"]["payment"], "refunded");
    assert_eq!(settled(&app, &id).await.len(), 3);
    hook.nothing_more();
}

async fn failing_and_hanging_receivers_get_retries_with_the_same_event_id(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(vec![
        Answer::Status(500),
        Answer::Hang(Duration::from_secs(3)),
        Answer::Status(503),
    ])
    .await;
    let id = integrate(&app, &hook.url, &["stock-transaction.created"], true).await;
    app.create_stock("p", 1).await;
    let mut seen = Vec::new();
    for attempt in 1..=4 {
        let r = hook.next().await;
        assert_eq!(r.body["attempt"], attempt);
        verify_signature(&r);
        seen.push(header(&r, "webhook-id").to_owned());
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "one event id: {seen:?}");
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "delivered");
    assert_eq!(jobs[0]["attempts"], 4);
    let job = jobs[0]["id"].as_str().expect("a job id");
    let logs = app
        .admin(
            Method::GET,
            &format!("/v2/integrations/{id}/jobs/{job}/logs"),
            None,
        )
        .await;
    let logs = logs.body["data"].as_array().expect("logs");
    let outcomes: Vec<(bool, Value)> = logs
        .iter()
        .rev()
        .map(|l| (l["succeeded"] == true, l["status_code"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (false, json!(500)),
            (false, Value::Null), // timed out
            (false, json!(503)),
            (true, json!(200)),
        ]
    );
    hook.nothing_more();
}

/// A product's events leave in runs (several leased together, sent one by one): when one of
/// them fails, the ones behind it are given back untried — nothing overtakes it, and their
/// first delivery is still their attempt 1.
async fn a_failure_inside_a_run_holds_back_the_events_behind_it(backend: Backend) {
    let settings = EventSettings {
        // Slow polling, so that the four events are likely to wait together for one claim
        // (the assertions hold however they are claimed).
        poll_every: Duration::from_millis(300),
        ..fast(true)
    };
    let Some(app) = spawn_app_evented(backend, settings).await else {
        return;
    };
    let mut hook = Receiver::start(vec![Answer::Status(200), Answer::Status(500)]).await;
    let id = integrate(&app, &hook.url, &["stock-transaction.created"], true).await;
    app.create_stock("p", 10).await;
    for _ in 0..3 {
        assert_eq!(
            app.transact("p", "allocate", 1).await.status,
            StatusCode::OK
        );
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let r = hook.next().await;
        got.push((
            header(&r, "webhook-id").to_owned(),
            r.body["attempt"].as_u64().expect("an attempt"),
        ));
    }
    let (e1, e2) = (got[0].0.clone(), got[1].0.clone());
    assert_eq!(
        got[2],
        (e2.clone(), 2),
        "the failed event again, before any after it"
    );
    let ids: Vec<&str> = got.iter().map(|(e, _)| e.as_str()).collect();
    let attempts: Vec<u64> = got.iter().map(|(_, a)| *a).collect();
    assert_eq!(attempts, [1, 1, 2, 1, 1]);
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "four events, each first sent once: {ids:?}"
    );
    assert_ne!(e1, e2);
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j["status"] == "delivered"));
    hook.nothing_more();
}

async fn redirects_are_not_followed(backend: Backend) {
    let Some(app) = spawn_app_evented(
        backend,
        EventSettings {
            max_attempts: 2,
            ..fast(true)
        },
    )
    .await
    else {
        return;
    };
    let mut elsewhere = Receiver::start(Vec::new()).await;
    let redirect = Answer::Redirect(elsewhere.url.clone());
    let mut hook = Receiver::start(vec![redirect.clone(), redirect]).await;
    let id = integrate(&app, &hook.url, &["stock-transaction.created"], true).await;
    app.create_stock("p", 1).await;
    hook.next().await;
    hook.next().await;
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs[0]["status"], "failed", "after its two attempts");
    let logs = app
        .admin(Method::GET, &format!("/v2/integrations/{id}/logs"), None)
        .await;
    assert!(logs.body["data"][0]["error_detail"]
        .as_str()
        .expect("detail")
        .contains("redirect"));
    elsewhere.nothing_more();
    hook.nothing_more();
}

async fn disabled_integrations_receive_nothing(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut on = Receiver::start(Vec::new()).await;
    let mut off = Receiver::start(Vec::new()).await;
    let on_id = integrate(&app, &on.url, &["stock-transaction.created"], true).await;
    let off_id = integrate(&app, &off.url, &["stock-transaction.created"], false).await;
    // Observing something else: nothing either.
    let mut other = Receiver::start(Vec::new()).await;
    integrate(&app, &other.url, &["order.paid"], true).await;
    app.create_stock("p", 1).await;
    on.next().await;
    assert_eq!(settled(&app, &on_id).await.len(), 1);
    assert!(settled(&app, &off_id).await.is_empty());
    off.nothing_more();
    other.nothing_more();
    // Disabling it with PUT stops it too.
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/integrations/{on_id}"),
            Some(json!({"data": {"type": "integration", "enabled": false}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["enabled"], false);
    assert_eq!(r.body["data"]["configuration"]["url"], on.url.as_str());
    assert_eq!(
        app.transact("p", "increment", 1).await.status,
        StatusCode::OK
    );
    assert_eq!(settled(&app, &on_id).await.len(), 1, "no new job");
    on.nothing_more();
}

async fn private_targets_are_refused_unless_allowed(backend: Backend) {
    let Some(app) = spawn_app_evented(
        backend,
        EventSettings {
            max_attempts: 1,
            ..fast(false)
        },
    )
    .await
    else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    // An address literal is refused at once.
    for url in [
        hook.url.clone(),
        "http://10.0.0.1/hook".to_owned(),
        "http://169.254.169.254/latest".to_owned(),
        "http://[::1]:9/x".to_owned(),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/v2/integrations",
                Some(json!({"data": {"type": "integration", "name": "x",
                    "observes": ["stock-transaction.created"],
                    "configuration": {"url": url}}})),
            )
            .await;
        assert_eq!(r.error_status(), 400, "{url}: {}", r.body);
    }
    // A name is checked where it resolves, at delivery: `localhost` resolves to loopback.
    let by_name = hook.url.replace("127.0.0.1", "localhost");
    let id = integrate(&app, &by_name, &["stock-transaction.created"], true).await;
    app.create_stock("p", 1).await;
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs[0]["status"], "failed");
    let logs = app
        .admin(Method::GET, &format!("/v2/integrations/{id}/logs"), None)
        .await;
    let detail = logs.body["data"][0]["error_detail"]
        .as_str()
        .expect("detail");
    assert!(
        detail.contains("refused") && detail.contains("127.0.0.1"),
        "{detail}"
    );
    hook.nothing_more();
    assert_eq!(app.integration_count().await, 1);
}

async fn the_integrations_api_checks_its_input(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let long = format!("http://example.com/{}", "a".repeat(2100));
    let bad = [
        json!({"name": "x", "observes": ["stock.exploded"], "configuration": {"url": "http://example.com/"}}),
        json!({"name": "x", "observes": [], "configuration": {"url": "http://example.com/"}}),
        json!({"name": "x", "observes": ["order.paid"], "configuration": {}}),
        json!({"name": "x", "observes": ["order.paid"], "configuration": {"url": "ftp://example.com/"}}),
        json!({"name": "x", "observes": ["order.paid"], "configuration": {"url": long}}),
        json!({"name": "x", "observes": ["order.paid"], "configuration": {"url": "http://u:p@example.com/"}}),
        json!({"name": "", "observes": ["order.paid"], "configuration": {"url": "http://example.com/"}}),
        json!({"name": "x", "integration_type": "aws_sqs", "observes": ["order.paid"], "configuration": {"url": "http://example.com/"}}),
        json!({"name": "x", "integration_type": "nats", "observes": ["order.paid"], "configuration": {"subject": "a.*"}}),
        json!({"name": "x", "observes": ["order.paid"], "configuration": {"url": "http://example.com/", "extra": 1}}),
    ];
    for body in bad {
        let r = app
            .admin(
                Method::POST,
                "/v2/integrations",
                Some(json!({"data": body})),
            )
            .await;
        assert_eq!(r.error_status(), 400, "{body}: {}", r.body);
    }
    assert_eq!(app.integration_count().await, 0);
    // A good one, read back, changed, listed, removed.
    let r = app
        .admin(
            Method::POST,
            "/v2/integrations",
            Some(json!({"data": {"type": "integration", "name": "Fan-out",
                "integration_type": "nats", "observes": ["order.paid", "order.paid", "stock.low"],
                "configuration": {"subject": "shop.events"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!(d["type"], "integration");
    assert_eq!(d["enabled"], true);
    assert_eq!(d["observes"], json!(["order.paid", "stock.low"]));
    assert_eq!(d["configuration"], json!({"subject": "shop.events"}));
    let id = d["id"].as_str().expect("an id").to_owned();
    let got = app
        .admin(Method::GET, &format!("/v2/integrations/{id}"), None)
        .await;
    assert_eq!(&got.body["data"], d);
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/integrations/{id}"),
            Some(json!({"data": {"type": "integration", "name": "Renamed"}})),
        )
        .await;
    assert_eq!(r.body["data"]["name"], "Renamed");
    assert_eq!(
        r.body["data"]["observes"],
        json!(["order.paid", "stock.low"])
    );
    // Switching to a webhook needs a url.
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/integrations/{id}"),
            Some(json!({"data": {"type": "integration", "integration_type": "webhook"}})),
        )
        .await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(app.integration_count().await, 1);
    let r = app
        .admin(Method::DELETE, &format!("/v2/integrations/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .admin(Method::GET, &format!("/v2/integrations/{id}"), None)
        .await;
    assert_eq!(r.error_status(), 404);
    assert_eq!(app.integration_count().await, 0);
}

const NATS_URL: &str = "127.0.0.1:4222";

/// A JetStream connection to the local NATS server; `None` (said once) when it does not
/// answer, unless `STOCKROOM_TEST_REQUIRE_NATS` is set (CI), which makes that a failure.
async fn jetstream_or_skip() -> Option<async_nats::jetstream::Context> {
    let connect = async_nats::connect(NATS_URL);
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(client)) => Some(async_nats::jetstream::new(client)),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            assert!(
                std::env::var_os("STOCKROOM_TEST_REQUIRE_NATS").is_none(),
                "STOCKROOM_TEST_REQUIRE_NATS is set but NATS at {NATS_URL} does not answer: {why}"
            );
            eprintln!(
                "SKIPPED: NATS at {NATS_URL} does not answer ({why}); \
                 set STOCKROOM_TEST_REQUIRE_NATS=1 to make this a failure"
            );
            None
        }
    }
}

async fn nats_integrations_publish_each_event_once_under_its_event_id(backend: Backend) {
    let Some(js) = jetstream_or_skip().await else {
        return;
    };
    let Some(app) = spawn_app_evented(
        backend,
        EventSettings {
            nats_url: Some(NATS_URL.to_owned()),
            ..fast(false)
        },
    )
    .await
    else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("stockroom.test.{tag}.events");
    let name = format!("STOCKROOM_TEST_{tag}");
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("a stream");
    let r = app
        .admin(
            Method::POST,
            "/v2/integrations",
            Some(json!({"data": {"type": "integration", "name": "fan-out",
                "integration_type": "nats", "observes": ["stock-transaction.created"],
                "configuration": {"subject": subject}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["data"]["id"].as_str().expect("an id").to_owned();
    app.create_stock("p", 10).await;
    assert_eq!(
        app.transact("p", "allocate", 3).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.transact("p", "increment", 2).await.status,
        StatusCode::OK
    );
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["status"] == "delivered"), "{jobs:?}");
    let mut events: Vec<String> = jobs
        .iter()
        .rev()
        .map(|j| j["event_id"].as_str().expect("event id").to_owned())
        .collect();
    let mut actions = Vec::new();
    for seq in 1..=3u64 {
        let m = stream.get_raw_message(seq).await.expect("a message");
        let msg_id = m
            .headers
            .get("Nats-Msg-Id")
            .expect("a Nats-Msg-Id")
            .as_str()
            .to_owned();
        let body: Value = serde_json::from_slice(&m.payload).expect("json");
        assert_eq!(
            body["id"],
            msg_id.as_str(),
            "the event id is the message id"
        );
        assert_eq!(body["triggered_by"], "stock-transaction.created");
        assert_eq!(body["integration"]["integration_type"], "nats");
        actions.push(body["payload"]["data"]["attributes"]["action"].clone());
        assert_eq!(msg_id, events[usize::try_from(seq - 1).expect("small")]);
    }
    assert_eq!(
        actions,
        [json!("create"), json!("allocate"), json!("increment")]
    );
    // A second publish of an event (a retry after a lost acknowledgement) is dropped.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", events.remove(0).as_str());
    let ack = js
        .publish_with_headers(subject.clone(), headers, "again".into())
        .await
        .expect("a publish")
        .await
        .expect("an ack");
    assert!(ack.duplicate);
    let mut stream = js.get_stream(&name).await.expect("the stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 3);
    js.delete_stream(&name).await.expect("removed");
}

impl TestApp {
    pub(crate) async fn integration_count(&self) -> usize {
        let r = self.admin(Method::GET, "/v2/integrations", None).await;
        r.body["data"].as_array().expect("a list").len()
    }
}

async fn low_stock_alerts_fire_once_per_crossing(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(
        &app,
        &hook.url,
        &["stock.low", "stock.out", "stock.replenished"],
        true,
    )
    .await;
    app.create_stock("p", 10).await;
    let r = app
        .admin(
            Method::PUT,
            "/v2/inventories/p/threshold",
            Some(json!({"data": {"type": "stock-threshold", "threshold": 3}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["threshold"], 3);
    let steps = [
        ("allocate", 5),  // 5 available: above
        ("allocate", 2),  // 3: low
        ("allocate", 1),  // 2: still low, nothing
        ("allocate", 2),  // 0: out
        ("increment", 1), // 1: still low, nothing
        ("increment", 5), // 6: replenished
        ("allocate", 1),  // 5: above, nothing
    ];
    for (action, n) in steps {
        assert_eq!(app.transact("p", action, n).await.status, StatusCode::OK);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = hook.next().await;
        let d = &r.body["payload"]["data"];
        assert_eq!(d["type"], "stock-level");
        assert_eq!(d["product_id"], "p");
        assert_eq!(d["threshold"], 3);
        seen.push((r.body["triggered_by"].clone(), d["available"].clone()));
    }
    assert_eq!(
        seen,
        [
            (json!("stock.low"), json!(3)),
            (json!("stock.out"), json!(0)),
            (json!("stock.replenished"), json!(6)),
        ]
    );
    assert_eq!(settled(&app, &id).await.len(), 3);
    hook.nothing_more();
    // Removed: no more alerts. A location that does not exist is not found; bad bodies 400.
    let r = app
        .admin(
            Method::PUT,
            "/v2/inventories/p/threshold",
            Some(json!({"data": {"threshold": null}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        app.transact("p", "allocate", 5).await.status,
        StatusCode::OK
    );
    assert_eq!(settled(&app, &id).await.len(), 3);
    let r = app
        .admin(
            Method::PUT,
            "/v2/inventories/p/threshold",
            Some(json!({"data": {"threshold": 2, "location": "nowhere"}})),
        )
        .await;
    assert_eq!(r.error_status(), 404);
    for bad in [
        json!({}),
        json!({"threshold": 0}),
        json!({"threshold": "3"}),
        json!({"threshold": 1, "x": 1}),
    ] {
        let r = app
            .admin(
                Method::PUT,
                "/v2/inventories/p/threshold",
                Some(json!({"data": bad})),
            )
            .await;
        assert_eq!(r.error_status(), 400, "{bad}");
    }
    hook.nothing_more();
}
