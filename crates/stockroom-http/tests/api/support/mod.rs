//! `spawn_app`: the real server on port 0 over a fresh database, driven over HTTP.

#![allow(dead_code)]

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stockroom_domain::{Clock, Role, Timestamp};
use stockroom_http::clock::ManualClock;
use stockroom_http::{auth, AppState, EventSettings, Limits, PaymentSettings, RouteInfo};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{OpenOptions, SqlStore, Store};

pub const ADMIN_ID: &str = "test-admin";
pub const ADMIN_SECRET: &str = "test-admin-secret";
pub const SHOPPER_ID: &str = "test-shopper";
pub const SHOPPER_SECRET: &str = "test-shopper-secret";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub shopper: String,
    pub clock: Arc<ManualClock>,
    pub store: Arc<SqlStore>,
    pub url: String,
    pub routes: Vec<RouteInfo>,
    pub state: AppState,
    _dir: tempfile::TempDir,
}

/// The server on a fresh database, with an administrator and a shopper credential and a token
/// for each; `None` when `backend` is PostgreSQL and no server is configured.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, PaymentSettings::default()).await
}

/// [`spawn_app`] with payment settings of the test's own.
pub async fn spawn_app_with(backend: Backend, payments: PaymentSettings) -> Option<TestApp> {
    spawn_app_limited(backend, payments, Limits::default()).await
}

/// [`spawn_app_with`] and limits of the test's own.
pub async fn spawn_app_limited(
    backend: Backend,
    payments: PaymentSettings,
    limits: Limits,
) -> Option<TestApp> {
    spawn_app_full(backend, payments, limits, EventSettings::default()).await
}

/// [`spawn_app`] with event delivery settings of the test's own.
pub async fn spawn_app_evented(backend: Backend, events: EventSettings) -> Option<TestApp> {
    spawn_app_full(
        backend,
        PaymentSettings::default(),
        Limits::default(),
        events,
    )
    .await
}

async fn spawn_app_full(
    backend: Backend,
    payments: PaymentSettings,
    limits: Limits,
    events: EventSettings,
) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = fresh_database(backend, dir.path()).await?;
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let store = SqlStore::open(&url, OpenOptions::default(), clock.clone())
        .await
        .expect("open store");
    for (id, secret, role) in [
        (ADMIN_ID, ADMIN_SECRET, Role::Admin),
        (SHOPPER_ID, SHOPPER_SECRET, Role::Shopper),
    ] {
        let c = auth::credential(id, secret, id, role, clock.now()).expect("credential");
        store
            .insert_credential(&c)
            .await
            .expect("insert credential");
    }
    let state = AppState::new(store.clone(), clock.clone())
        .await
        .expect("state")
        .with_payments(payments)
        .with_limits(limits)
        .with_events(events);
    let (_, routes) = stockroom_http::routes(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(stockroom_http::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .build()
        .expect("client");
    let mut app = TestApp {
        base,
        http,
        admin: String::new(),
        shopper: String::new(),
        clock,
        store,
        url,
        routes,
        state,
        _dir: dir,
    };
    app.admin = app
        .token("client_credentials", ADMIN_ID, Some(ADMIN_SECRET))
        .await;
    app.shopper = app.token("implicit", ADMIN_ID, None).await;
    Some(app)
}

/// A response: status and JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `errors[0].status`, asserting the error shape on the way.
    pub fn error_status(&self) -> u16 {
        let errors = self.body["errors"].as_array().expect("an errors array");
        assert_eq!(errors.len(), 1, "one error: {}", self.body);
        let status = errors[0]["status"].as_u64().expect("integer status");
        assert_eq!(
            status,
            u64::from(self.status.as_u16()),
            "body status matches HTTP"
        );
        assert!(errors[0]["title"].is_string(), "a title");
        status as u16
    }
}

impl TestApp {
    pub async fn token(&self, grant: &str, id: &str, secret: Option<&str>) -> String {
        let mut form = vec![("grant_type", grant), ("client_id", id)];
        if let Some(secret) = secret {
            form.push(("client_secret", secret));
        }
        let r = self
            .http
            .post(format!("{}/oauth/access_token", self.base))
            .form(&form)
            .send()
            .await
            .expect("token request");
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.expect("token json");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// Sends a request the way the SDK does: JSON content type on every call, even GET.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let raw = body.map(|b| b.to_string());
        self.call_raw(method, path, token, raw.as_deref(), &[])
            .await
    }

    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.try_call_raw(method, path, token, body, headers)
            .await
            .expect("request")
    }

    /// `call_raw`, with a transport failure (say, a reset connection) as an error.
    pub async fn try_call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let r = req.send().await?;
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await?;
        let is_text = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
        let body = if text.is_empty() {
            Value::Null
        } else if is_text {
            Value::String(text)
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text:?}"))
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.admin), body).await
    }

    pub async fn create_stock(&self, product: &str, quantity: u64) {
        let r = self
            .admin(
                Method::POST,
                &format!("/v2/inventories/{product}"),
                Some(json!({"data": {"quantity": quantity}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub async fn transact(&self, product: &str, action: &str, quantity: u64) -> Reply {
        self.admin(
            Method::POST,
            &format!("/v2/inventories/{product}/transactions"),
            Some(json!({"data": {"type": "stock-transaction", "action": action, "quantity": quantity}})),
        )
        .await
    }

    /// (total, allocated, available) of a product, checking that they add up.
    pub async fn figures(&self, product: &str) -> (u64, u64, u64) {
        let r = self
            .admin(Method::GET, &format!("/v2/inventories/{product}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let d = &r.body["data"];
        let f = |k: &str| d[k].as_u64().expect("figure");
        assert_eq!(f("total"), f("available") + f("allocated"));
        (f("total"), f("allocated"), f("available"))
    }

    /// Number of history entries of a product, optionally of one action.
    pub async fn history_count(&self, product: &str, action: Option<&str>) -> u64 {
        let filter = action
            .map(|a| format!("?filter=eq(action,{a})"))
            .unwrap_or_default();
        let r = self
            .admin(
                Method::GET,
                &format!("/v2/inventories/{product}/transactions{filter}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["meta"]["results"]["total"].as_u64().expect("total")
    }

    pub async fn verify_ok(&self) {
        let report = self.store.verify().await.expect("verify");
        assert!(
            report.is_ok(),
            "verify found problems: {:?}",
            report.problems
        );
    }
}

impl TestApp {
    pub async fn shopper(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.shopper), body).await
    }

    pub async fn create_product(&self, id: &str, sku: &str, amount: i64) {
        let r = self
            .admin(
                Method::POST,
                "/v2/products",
                Some(json!({"data": {"type": "product", "id": id, "attributes": {
                    "name": format!("Product {id}"), "sku": sku,
                    "price": {"amount": amount, "currency": "USD", "includes_tax": false}}}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub async fn add_to_cart(&self, cart: &str, product: &str, quantity: u64) -> Reply {
        self.shopper(
            Method::POST,
            &format!("/v2/carts/{cart}/items"),
            Some(json!({"data": {"type": "cart_item", "id": product, "quantity": quantity}})),
        )
        .await
    }

    /// Checks a cart out and returns the order id.
    pub async fn checkout(&self, cart: &str) -> Reply {
        self.shopper(
            Method::POST,
            &format!("/v2/carts/{cart}/checkout"),
            Some(json!({"data": {
                "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
                "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "line_1": "1 Street",
                                    "city": "London", "postcode": "N1 1AA", "country": "GB"}}})),
        )
        .await
    }

    /// A cart of `lines` checked out; the order id.
    pub async fn order_of(&self, cart: &str, lines: &[(&str, u64)]) -> String {
        for (product, q) in lines {
            let r = self.add_to_cart(cart, product, *q).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let r = self.checkout(cart).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["data"]["id"].as_str().expect("order id").to_owned()
    }

    pub async fn pay(&self, order: &str, gateway: &str, method: &str) -> Reply {
        self.shopper(
            Method::POST,
            &format!("/v2/orders/{order}/payments"),
            Some(json!({"data": {"gateway": gateway, "method": method}})),
        )
        .await
    }

    /// (status, payment, shipping) of an order.
    pub async fn order_state(&self, order: &str) -> (String, String, String) {
        let r = self
            .admin(Method::GET, &format!("/v2/orders/{order}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let d = &r.body["data"];
        let s = |k: &str| d[k].as_str().expect("state").to_owned();
        (s("status"), s("payment"), s("shipping"))
    }

    /// The history entries of a product written for an order: (action, quantity).
    pub async fn order_entries(&self, product: &str, order: &str) -> Vec<(String, u64)> {
        let r = self
            .admin(
                Method::GET,
                &format!("/v2/inventories/{product}/transactions?page[limit]=100"),
                None,
            )
            .await;
        let mut entries: Vec<(String, u64)> = r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|t| t["order_id"] == order)
            .map(|t| {
                (
                    t["action"].as_str().unwrap_or("").to_owned(),
                    t["quantity"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        entries.reverse();
        entries
    }
}

/// Runs each named scenario as a test on SQLite and on PostgreSQL, passing the backend (for
/// scenarios that start their own app).
#[macro_export]
macro_rules! on_both_backends_raw {
    ($($name:ident),* $(,)?) => {
        mod sqlite_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(stockroom_store::testing::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres_raw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(stockroom_store::testing::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Runs each named scenario as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::support::spawn_app(stockroom_store::testing::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::support::spawn_app(stockroom_store::testing::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}
