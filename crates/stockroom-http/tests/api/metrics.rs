//! `/metrics`: administrators only on the API's port, and every histogram filled by traffic.

use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use stockroom_http::{HttpGateway, PaymentSettings};
use stockroom_store::testing::Backend;

use crate::flow::spawn_gateway;
use crate::support::spawn_app_with;

crate::on_both_backends_raw!(metrics_after_traffic_show_each_histogram_with_plausible_counts);

/// The sum of every sample line of `name` whose labels contain each of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics_after_traffic_show_each_histogram_with_plausible_counts(backend: Backend) {
    let (url, _seen) = spawn_gateway(Arc::new(AtomicU8::new(0))).await;
    let settings = PaymentSettings {
        http: Some(HttpGateway {
            url,
            timeout: Duration::from_secs(5),
        }),
        pending_timeout: Duration::from_secs(60),
        ..PaymentSettings::default()
    };
    let Some(app) = spawn_app_with(backend, settings).await else {
        return;
    };
    let scrape = |token: Option<String>| {
        let mut req = app.http.get(format!("{}/metrics", app.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let refused = scrape(None).await.expect("a scrape");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "no token");
    let refused = scrape(Some(app.shopper.clone())).await.expect("a scrape");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a shopper's token");

    app.create_product("metered", "METERED", 100).await;
    app.create_stock("metered", 100).await;
    for _ in 0..20 {
        let r = app
            .admin(Method::GET, "/v2/inventories/metered", None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let body = r#"{"data":{"type":"stock-transaction","action":"increment","quantity":1}}"#;
    for _ in 0..2 {
        let r = app
            .call_raw(
                Method::POST,
                "/v2/inventories/metered/transactions",
                Some(&app.admin),
                Some(body),
                &[("Idempotency-Key", "metrics-replay")],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let order = app.order_of("metered-cart", &[("metered", 2)]).await;
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let text = scrape(Some(app.admin.clone()))
        .await
        .expect("a scrape")
        .text()
        .await
        .expect("text");
    let reads = sample(
        &text,
        "stockroom_http_request_duration_seconds_count",
        &[
            r#"route="/v2/inventories/{product}""#,
            r#"method="GET""#,
            r#"status="200""#,
        ],
    );
    assert!(
        reads >= 20.0,
        "20 reads timed by their route template: {reads}"
    );
    assert!(
        !text.contains(r#"route="/v2/inventories/metered""#),
        "raw paths never become labels"
    );
    // create product, create stock, two increments (one replayed), add to cart, checkout,
    // pay, settle: at least six writer jobs, in at least one batch each of one job or more.
    let batches = sample(&text, "stockroom_writer_batch_size_count", &[]);
    let jobs = sample(&text, "stockroom_writer_batch_size_sum", &[]);
    assert!(
        batches >= 1.0 && jobs >= 6.0 && jobs >= batches,
        "{batches} batches, {jobs} jobs"
    );
    for histogram in [
        "stockroom_writer_batch_duration_seconds_count",
        "stockroom_db_commit_duration_seconds_count",
    ] {
        assert!(sample(&text, histogram, &[]) >= 1.0, "{histogram}");
    }
    assert!(
        text.contains("stockroom_writer_queue_depth"),
        "the queue's gauge"
    );
    assert!(sample(&text, "stockroom_idempotent_replays_total", &[]) >= 1.0);
    let approved = sample(
        &text,
        "stockroom_payment_gateway_duration_seconds_count",
        &[r#"outcome="approved""#],
    );
    assert!(approved >= 1.0, "the gateway's approval was timed");
    if backend == Backend::Postgres {
        assert!(
            sample(&text, "stockroom_db_pool_wait_seconds_count", &[]) >= 1.0,
            "the writer's waits for a connection"
        );
    }
    assert!(text.contains("# TYPE stockroom_http_request_duration_seconds histogram"));
}
