//! Liveness and readiness (issue 17): while the database does not answer, `/health/ready` (and
//! `/health`) answer 503 within about a second and `/health/live` still 200; readiness comes
//! back by itself with the database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use stockroom_domain::Timestamp;
use stockroom_http::clock::ManualClock;
use stockroom_http::AppState;
use stockroom_store::testing::{fresh_database, Backend, StallProxy};
use stockroom_store::{OpenOptions, SqlStore};

async fn status(http: &reqwest::Client, base: &str, path: &str) -> (StatusCode, Duration) {
    let started = Instant::now();
    let r = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("an answer");
    let status = r.status();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        assert!(r.headers().contains_key("retry-after"), "{path}");
    }
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_fast_while_the_database_is_unreachable_and_liveness_does_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(url) = fresh_database(Backend::Postgres, dir.path()).await else {
        return;
    };
    let proxy = StallProxy::start(&url).await.expect("a proxy");
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_800_000_000)));
    let store = SqlStore::open(&proxy.url, OpenOptions::default(), clock.clone())
        .await
        .expect("open store");
    let state = AppState::new(store, clock).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(stockroom_http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    for path in ["/health", "/health/ready", "/health/live"] {
        assert_eq!(status(&http, &base, path).await.0, StatusCode::OK, "{path}");
    }

    proxy.stall();
    for path in ["/health/ready", "/health"] {
        let (code, took) = status(&http, &base, path).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(took < Duration::from_millis(2500), "{path} took {took:?}");
    }
    let (code, took) = status(&http, &base, "/health/live").await;
    assert_eq!(code, StatusCode::OK);
    assert!(took < Duration::from_millis(500), "{took:?}");

    proxy.flow();
    let give_up = Instant::now() + Duration::from_secs(10);
    while status(&http, &base, "/health/ready").await.0 != StatusCode::OK {
        assert!(Instant::now() < give_up, "not ready again after the stall");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
