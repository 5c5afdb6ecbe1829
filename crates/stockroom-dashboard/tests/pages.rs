//! The dashboard over HTTP against a real server and database (the browser tests in
//! tests/browser drive the same pages through Chromium).

use std::sync::Arc;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use stockroom_domain::{Clock, ProductId, Quantity, Role, Timestamp};
use stockroom_http::clock::ManualClock;
use stockroom_http::{auth, AppState};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{Command, HistoryQuery, OpenOptions, Page, SqlStore, Store, WriteRequest};

struct App {
    base: String,
    http: reqwest::Client,
    store: Arc<SqlStore>,
    _dir: tempfile::TempDir,
}

async fn spawn(backend: Backend) -> Option<App> {
    let dir = tempfile::tempdir().expect("dir");
    let url = fresh_database(backend, dir.path()).await?;
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let store = SqlStore::open(&url, OpenOptions::default(), clock.clone())
        .await
        .expect("open");
    for (id, role) in [("admin", Role::Admin), ("shopper", Role::Shopper)] {
        let c = auth::credential(id, "secret", id, role, clock.now()).expect("credential");
        store.insert_credential(&c).await.expect("insert");
    }
    let state = AppState::new(store.clone(), clock).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let dashboard = stockroom_dashboard::router(state.clone());
    tokio::spawn(stockroom_http::serve_with(
        listener,
        state,
        dashboard,
        std::future::pending(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Some(App {
        base,
        http,
        store,
        _dir: dir,
    })
}

/// The value of a cookie a response sets.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The value of a hidden form field in a page.
fn field(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .expect("the field");
    let rest = &html[at + name.len() + 15..];
    rest[..rest.find('"').expect("a closing quote")].to_owned()
}

impl App {
    /// Signs in; the session cookie, or the refusal's status.
    async fn sign_in(&self, id: &str, secret: &str) -> Result<String, StatusCode> {
        let form = self
            .http
            .get(format!("{}/dashboard/sign-in", self.base))
            .send()
            .await
            .expect("form");
        let pre = set_cookie(&form, "stockroom_sign_in").expect("the sign-in cookie");
        let csrf = field(&form.text().await.expect("html"), "csrf");
        let r = self
            .http
            .post(format!("{}/dashboard/sign-in", self.base))
            .header(COOKIE, format!("stockroom_sign_in={pre}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("sign in");
        match set_cookie(&r, "stockroom_session") {
            Some(session) if r.status() == StatusCode::SEE_OTHER => Ok(session),
            _ => Err(r.status()),
        }
    }

    async fn page(&self, session: &str, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, format!("stockroom_session={session}"))
            .send()
            .await
            .expect("page");
        (r.status(), r.text().await.expect("html"))
    }

    /// Posts a form; the status and where it sends the browser.
    async fn post(&self, session: &str, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, format!("stockroom_session={session}"))
            .form(form)
            .send()
            .await
            .expect("post");
        let to = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (r.status(), to)
    }

    async fn figures(&self, product: &str) -> (u64, u64) {
        let stock = self
            .store
            .stock(&ProductId::parse(product).expect("id"))
            .await
            .expect("read")
            .expect("stock");
        (stock.total, stock.allocated)
    }

    async fn entries(&self, product: &str) -> u64 {
        let id = ProductId::parse(product).expect("id");
        let page = Page {
            limit: 1,
            offset: 0,
        };
        self.store
            .history(&id, &HistoryQuery::default(), page)
            .await
            .expect("history")
            .total
    }
}

#[tokio::test]
async fn adjustments_apply_once_however_often_their_form_is_sent_on_sqlite() {
    adjustments_apply_once_however_often_their_form_is_sent(Backend::Sqlite).await;
}

#[tokio::test]
async fn adjustments_apply_once_however_often_their_form_is_sent_on_postgres() {
    adjustments_apply_once_however_often_their_form_is_sent(Backend::Postgres).await;
}

async fn adjustments_apply_once_however_often_their_form_is_sent(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let create = Command::Create {
        product: ProductId::parse("p").expect("id"),
        records: vec![("".into(), Quantity::new(5).expect("q").into())],
    };
    app.store
        .execute(WriteRequest::new(create))
        .await
        .expect("create");
    let session = app.sign_in("admin", "secret").await.expect("signed in");
    let (status, html) = app.page(&session, "/dashboard/products/p").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = field(&html, "csrf");
    let idem = field(&html, "idem");
    let form = [
        ("csrf", csrf.as_str()),
        ("idem", idem.as_str()),
        ("action", "set"),
        ("quantity", "0"),
        ("location", ""),
        ("reason", "stock count"),
    ];
    let path = "/dashboard/products/p/adjust";
    let (status, to) = app.post(&session, path, &form).await;
    assert_eq!(
        (status, to.as_str()),
        (
            StatusCode::SEE_OTHER,
            "/dashboard/products/p?notice=applied"
        )
    );
    assert_eq!(app.figures("p").await, (0, 0), "set to 0");
    assert_eq!(app.entries("p").await, 2, "create, then one set to 0");
    // Sent again: the record is at 0 already, so nothing is written.
    let (_, to) = app.post(&session, path, &form).await;
    assert!(to.ends_with("notice=unchanged"), "{to}");
    assert_eq!(
        app.entries("p").await,
        2,
        "the resubmitted form applied once"
    );
    // An increment sent twice (a double click) applies once, and says so.
    let add = [
        ("csrf", csrf.as_str()),
        ("idem", "increment-key"),
        ("action", "increment"),
        ("quantity", "4"),
        ("location", ""),
        ("reason", ""),
    ];
    let (_, to) = app.post(&session, path, &add).await;
    assert!(to.ends_with("notice=applied"), "{to}");
    let (_, to) = app.post(&session, path, &add).await;
    assert!(to.ends_with("notice=replayed"), "{to}");
    assert_eq!(app.figures("p").await, (4, 0));
    assert_eq!(app.entries("p").await, 3);

    let no_token = [form[1], form[2], form[3], form[4]];
    let (status, _) = app.post(&session, path, &no_token).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _) = app.post("not-a-session", path, &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no session");
    assert_eq!(app.entries("p").await, 3);
}

#[tokio::test]
async fn only_an_administrators_credential_signs_in() {
    let Some(app) = spawn(Backend::Sqlite).await else {
        return;
    };
    assert_eq!(
        app.sign_in("shopper", "secret").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        app.sign_in("admin", "wrong").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        app.sign_in("nobody", "secret").await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let session = app.sign_in("admin", "secret").await.expect("signed in");
    for path in [
        "/dashboard/stock",
        "/dashboard/orders",
        "/dashboard/locations",
        "/dashboard/status",
    ] {
        let (status, _) = app.page(&session, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (status, _) = app.page("forged", path).await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "{path} without a session sends to sign in"
        );
    }
}
