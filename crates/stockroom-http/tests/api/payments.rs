//! Gateways an administrator enables, voids, refunds, the void of authorizations never
//! captured, order-write rate limits and order caps, and the retention of unpaid orders
//! (issues 12 and 13).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use stockroom_domain::Timestamp;
use stockroom_http::{AppState, HttpGateway, Limits, PaymentSettings};
use stockroom_store::testing::Backend;
use stockroom_store::{OpenOptions, SqlStore, Store};

use crate::flow::spawn_gateway;
use crate::support::{spawn_app_limited, spawn_app_with, Reply, TestApp};

crate::on_both_backends!(
    a_fresh_install_takes_manual_payments_and_lists_its_gateways,
    a_disabled_gateway_is_refused_and_changes_nothing,
    a_payment_replayed_after_its_gateway_was_disabled_answers_as_first,
    voiding_an_authorization_releases_its_allocation_exactly_once,
    a_void_racing_a_capture_ends_as_exactly_one_of_them,
    refunds_give_back_at_most_what_was_paid_and_move_no_stock,
    orders_are_capped_in_units,
    unpaid_orders_older_than_the_cutoff_are_purged_and_no_other,
    the_new_payment_routes_refuse_hostile_input_and_shoppers,
);

crate::on_both_backends_raw!(
    a_shopper_cannot_pay_with_manual_after_the_real_gateway_declined,
    the_http_gateway_can_be_disabled_and_is_then_never_asked,
    authorizations_never_captured_are_voided_once_after_the_timeout,
    the_overdue_sweep_racing_captures_on_two_instances_voids_each_at_most_once,
    checkouts_and_payments_are_rate_limited_per_token_and_per_address,
    a_payment_retried_while_pending_answers_the_attempts_outcome,
    partial_refunds_racing_on_two_instances_never_exceed_the_paid_amount,
);

/// A server whose `http` gateway is the stand-in provider (answering as `mode` says).
async fn app_with_gateway(backend: Backend) -> Option<(TestApp, Arc<AtomicU8>, GatewaySeen)> {
    let mode = Arc::new(AtomicU8::new(0));
    let (url, seen) = spawn_gateway(mode.clone()).await;
    let settings = PaymentSettings {
        http: Some(HttpGateway {
            url,
            timeout: Duration::from_millis(300),
        }),
        pending_timeout: Duration::from_secs(60),
        ..PaymentSettings::default()
    };
    let app = spawn_app_with(backend, settings).await?;
    Some((app, mode, seen))
}

type GatewaySeen = tokio::sync::mpsc::UnboundedReceiver<()>;

async fn set_gateway(app: &TestApp, slug: &str, enabled: bool) -> Reply {
    app.admin(
        Method::PUT,
        &format!("/v2/gateways/{slug}"),
        Some(json!({"data": {"enabled": enabled}})),
    )
    .await
}

async fn admin_pay(app: &TestApp, order: &str, gateway: &str, method: &str) -> Reply {
    app.admin(
        Method::POST,
        &format!("/v2/orders/{order}/payments"),
        Some(json!({"data": {"gateway": gateway, "method": method}})),
    )
    .await
}

async fn transaction_call(app: &TestApp, order: &str, tid: &str, what: &str) -> Reply {
    app.admin(
        Method::POST,
        &format!("/v2/orders/{order}/transactions/{tid}/{what}"),
        None,
    )
    .await
}

async fn refund(app: &TestApp, order: &str, tid: &str, amount: Option<i64>) -> Reply {
    let body = amount.map(|a| json!({"data": {"amount": a}}));
    app.admin(
        Method::POST,
        &format!("/v2/orders/{order}/transactions/{tid}/refund"),
        body,
    )
    .await
}

fn checkout_body() -> serde_json::Value {
    json!({"data": {
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "billing_address": {"first_name": "Ada", "last_name": "Lovelace", "line_1": "1 Street",
                            "city": "London", "postcode": "N1 1AA", "country": "GB"}}})
}

fn id_of(r: &Reply) -> String {
    r.body["data"]["id"].as_str().expect("an id").to_owned()
}

/// The exact attack of issue 12 finding 1: the real gateway declines, then the shopper pays
/// the same order with `manual`. Refused, nothing changed; an administrator may still record a
/// manual payment, and once the administrator enables `manual`, shoppers may use it.
async fn a_shopper_cannot_pay_with_manual_after_the_real_gateway_declined(backend: Backend) {
    let Some((app, mode, _seen)) = app_with_gateway(backend).await else {
        return;
    };
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 3)]).await;
    mode.store(1, Ordering::SeqCst);
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(r.body["errors"][0]["title"], "Payment failed");
    let entries_before = app.order_entries("p", &order).await;
    let r = app.pay(&order, "manual", "purchase").await;
    assert_eq!(r.error_status(), 400, "manual is off: {}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "data.gateway");
    assert_eq!(app.order_state(&order).await.1, "unpaid");
    assert_eq!(app.figures("p").await, (10, 0, 10), "nothing allocated");
    assert_eq!(app.order_entries("p", &order).await, entries_before);
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    // The same with authorize.
    let r = app.pay(&order, "manual", "authorize").await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(app.figures("p").await, (10, 0, 10));
    // An administrator may record a manual payment.
    let r = admin_pay(&app, &order, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.order_state(&order).await.1, "paid");
    assert_eq!(app.figures("p").await, (10, 3, 7));
    // Once the administrator turns manual on, shoppers may use it.
    let r = set_gateway(&app, "manual", true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["enabled"], true);
    let second = app.order_of("c2", &[("p", 1)]).await;
    let r = app.pay(&second, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.verify_ok().await;
}

async fn a_fresh_install_takes_manual_payments_and_lists_its_gateways(app: TestApp) {
    let r = app.admin(Method::GET, "/v2/gateways", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let gateways: Vec<(String, bool)> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|g| {
            assert_eq!(g["type"], "gateway");
            (
                g["slug"].as_str().unwrap_or("").to_owned(),
                g["enabled"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        gateways,
        [("manual".to_owned(), true), ("http".to_owned(), false)]
    );
    let r = app.admin(Method::GET, "/v2/gateways/manual", None).await;
    assert_eq!(r.body["data"]["enabled"], true);
    assert_eq!(
        app.admin(Method::GET, "/v2/gateways/stripe", None)
            .await
            .error_status(),
        404
    );
    // The HTTP gateway is not configured: it cannot be enabled.
    let r = set_gateway(&app, "http", true).await;
    assert_eq!(r.error_status(), 409);
    let r = app
        .admin(
            Method::PUT,
            "/v2/gateways/manual",
            Some(json!({"data": {"enabled": "yes"}})),
        )
        .await;
    assert_eq!(r.error_status(), 400);
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let r = app.pay(&order, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("p").await, (5, 2, 3));
}

/// A retry of a payment (same `Idempotency-Key`) answers what the first request got, even once
/// its gateway has been disabled meanwhile; a new key through the disabled gateway is refused
/// and changes nothing.
async fn a_payment_replayed_after_its_gateway_was_disabled_answers_as_first(app: TestApp) {
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let path = format!("/v2/orders/{order}/payments");
    let body = json!({"data": {"gateway": "manual", "method": "purchase"}}).to_string();
    let pay = |key: &'static str| {
        let (app, path, body) = (&app, path.clone(), body.clone());
        async move {
            app.call_raw(
                Method::POST,
                &path,
                Some(&app.shopper),
                Some(&body),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = pay("pay-once").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let r = set_gateway(&app, "manual", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let again = pay("pay-once").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["data"]["id"], first.body["data"]["id"]);
    let other = app.order_of("d", &[("p", 1)]).await;
    let r = app
        .call_raw(
            Method::POST,
            &format!("/v2/orders/{other}/payments"),
            Some(&app.shopper),
            Some(&body),
            &[("Idempotency-Key", "another")],
        )
        .await;
    assert_eq!(r.error_status(), 400, "{}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "data.gateway", "{}", r.body);
    // Paid once: two units allocated, the second order's none.
    assert_eq!(app.figures("p").await, (5, 2, 3));
    app.verify_ok().await;
}

async fn a_disabled_gateway_is_refused_and_changes_nothing(app: TestApp) {
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let r = set_gateway(&app, "manual", false).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["enabled"], false);
    // Kept in the database, for every instance.
    assert_eq!(
        app.store
            .setting("gateway.manual.enabled")
            .await
            .expect("setting")
            .as_deref(),
        Some("false")
    );
    for method in ["purchase", "authorize"] {
        let r = app.pay(&order, "manual", method).await;
        assert_eq!(r.error_status(), 400, "{method}");
    }
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.error_status(), 400, "http is not configured");
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert_eq!(app.history_count("p", None).await, 1);
    assert_eq!(
        app.order_state(&order).await,
        ("incomplete".into(), "unpaid".into(), "unfulfilled".into())
    );
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    assert_eq!(r.body["data"], json!([]));
    // An administrator may always record a manual payment.
    let r = admin_pay(&app, &order, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("p").await, (5, 2, 3));
    app.verify_ok().await;
}

async fn the_http_gateway_can_be_disabled_and_is_then_never_asked(backend: Backend) {
    let Some((app, _mode, mut seen)) = app_with_gateway(backend).await else {
        return;
    };
    let r = app.admin(Method::GET, "/v2/gateways", None).await;
    let enabled: Vec<bool> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|g| g["enabled"].as_bool().unwrap_or(true))
        .collect();
    assert_eq!(enabled, [false, true], "manual off, http on by default");
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    assert_eq!(
        set_gateway(&app, "http", false).await.status,
        StatusCode::OK
    );
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.error_status(), 400);
    let r = admin_pay(&app, &order, "http", "purchase").await;
    assert_eq!(r.error_status(), 400, "not for administrators either");
    assert!(seen.try_recv().is_err(), "the gateway was never asked");
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert_eq!(set_gateway(&app, "http", true).await.status, StatusCode::OK);
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(seen.try_recv().is_ok());
    app.verify_ok().await;
}

async fn voiding_an_authorization_releases_its_allocation_exactly_once(app: TestApp) {
    app.create_product("p", "P", 250).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 4)]).await;
    let r = app.pay(&order, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let authorization = id_of(&r);
    assert_eq!(app.figures("p").await, (10, 4, 6));
    // Shoppers may not void.
    let r = app
        .shopper(
            Method::POST,
            &format!("/v2/orders/{order}/transactions/{authorization}/cancel"),
            None,
        )
        .await;
    assert_eq!(r.error_status(), 403);
    let r = transaction_call(&app, &order, &authorization, "cancel").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["id"], authorization.as_str());
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(r.body["data"]["transaction_type"], "authorize");
    assert_eq!(app.figures("p").await, (10, 0, 10));
    assert_eq!(
        app.order_state(&order).await,
        ("incomplete".into(), "unpaid".into(), "unfulfilled".into())
    );
    assert_eq!(
        app.order_entries("p", &order).await,
        [("allocate".into(), 4), ("deallocate".into(), 4)]
    );
    // A second void, a capture of the voided authorization: refused, nothing changes.
    let r = transaction_call(&app, &order, &authorization, "cancel").await;
    assert_eq!(r.error_status(), 409);
    let r = transaction_call(&app, &order, &authorization, "capture").await;
    assert_eq!(r.error_status(), 409);
    let r = transaction_call(&app, &order, "no-such-transaction", "cancel").await;
    assert_eq!(r.error_status(), 404);
    assert_eq!(app.figures("p").await, (10, 0, 10));
    assert_eq!(app.order_entries("p", &order).await.len(), 2);
    app.verify_ok().await;
    // The order may be paid again; a captured authorization cannot be voided, nor a purchase.
    let r = app.pay(&order, "manual", "authorize").await;
    let second = id_of(&r);
    let r = transaction_call(&app, &order, &second, "capture").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let capture = id_of(&r);
    assert_eq!(
        transaction_call(&app, &order, &second, "cancel")
            .await
            .error_status(),
        409
    );
    assert_eq!(
        transaction_call(&app, &order, &capture, "cancel")
            .await
            .error_status(),
        409
    );
    assert_eq!(app.figures("p").await, (10, 4, 6));
    assert_eq!(app.order_state(&order).await.1, "paid");
    app.verify_ok().await;
}

async fn a_void_racing_a_capture_ends_as_exactly_one_of_them(app: TestApp) {
    const ORDERS: usize = 12;
    app.create_stock("p", 1000).await;
    let mut authorized = Vec::new();
    for i in 0..ORDERS {
        let order = app.order_of(&format!("c{i}"), &[("p", 2)]).await;
        let r = app.pay(&order, "manual", "authorize").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        authorized.push((order, id_of(&r)));
    }
    let app = Arc::new(app);
    let mut races = Vec::new();
    for (order, authorization) in &authorized {
        let calls = ["cancel", "capture"].map(|what| {
            let app = app.clone();
            let (order, authorization) = (order.clone(), authorization.clone());
            tokio::spawn(async move {
                transaction_call(&app, &order, &authorization, what)
                    .await
                    .status
            })
        });
        races.push(calls);
    }
    let mut voided = 0;
    for ((order, _), [void, capture]) in authorized.iter().zip(races) {
        let void = void.await.expect("void task");
        let capture = capture.await.expect("capture task");
        let won = [void, capture]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count();
        assert_eq!(won, 1, "exactly one wins: void {void}, capture {capture}");
        let lost = if void == StatusCode::OK {
            capture
        } else {
            void
        };
        assert_eq!(lost, StatusCode::CONFLICT);
        let entries = app.order_entries("p", order).await;
        let payment = app.order_state(order).await.1;
        if void == StatusCode::OK {
            voided += 1;
            assert_eq!(payment, "unpaid");
            assert_eq!(entries, [("allocate".into(), 2), ("deallocate".into(), 2)]);
        } else {
            assert_eq!(payment, "paid");
            assert_eq!(entries, [("allocate".into(), 2)]);
        }
    }
    let captured = (ORDERS - voided) as u64;
    assert_eq!(
        app.figures("p").await,
        (1000, 2 * captured, 1000 - 2 * captured)
    );
    assert_eq!(
        app.history_count("p", Some("deallocate")).await,
        voided as u64
    );
    app.verify_ok().await;
}

async fn refunds_give_back_at_most_what_was_paid_and_move_no_stock(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 3)]).await;
    let r = app.pay(&order, "manual", "authorize").await;
    let authorization = id_of(&r);
    // Nothing was paid yet: an authorization is not refundable.
    assert_eq!(
        refund(&app, &order, &authorization, Some(100))
            .await
            .error_status(),
        409
    );
    let r = transaction_call(&app, &order, &authorization, "capture").await;
    let capture = id_of(&r);
    let history = app.history_count("p", None).await;
    for bad in [0, -5] {
        assert_eq!(
            refund(&app, &order, &capture, Some(bad))
                .await
                .error_status(),
            400
        );
    }
    let r = refund(&app, &order, &capture, Some(120)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["transaction_type"], "refund");
    assert_eq!(r.body["data"]["amount"], 120);
    assert_eq!(r.body["data"]["status"], "complete");
    assert_eq!(app.order_state(&order).await.1, "paid", "partly refunded");
    // 180 is left: more is refused, and changes nothing.
    let r = refund(&app, &order, &capture, Some(181)).await;
    assert_eq!(r.error_status(), 409);
    assert_eq!(app.order_state(&order).await.1, "paid");
    // The rest (no amount: all that is left).
    let r = refund(&app, &order, &capture, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["amount"], 180);
    assert_eq!(
        app.order_state(&order).await,
        ("complete".into(), "refunded".into(), "unfulfilled".into())
    );
    assert_eq!(
        refund(&app, &order, &capture, Some(1)).await.error_status(),
        409
    );
    assert_eq!(
        refund(&app, &order, &capture, None).await.error_status(),
        409
    );
    // No stock moved; cancelling the order releases it.
    assert_eq!(app.figures("p").await, (10, 3, 7));
    assert_eq!(app.history_count("p", None).await, history);
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    let kinds: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["transaction_type"].as_str())
        .collect();
    assert_eq!(kinds, ["authorize", "capture", "refund", "refund"]);
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "status": "cancelled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("p").await, (10, 0, 10));
    // A purchase is refundable too, and a refund after cancellation keeps the order cancelled.
    let order = app.order_of("c2", &[("p", 1)]).await;
    let purchase = id_of(&app.pay(&order, "manual", "purchase").await);
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "status": "cancelled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        refund(&app, &order, &purchase, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.order_state(&order).await,
        ("cancelled".into(), "refunded".into(), "unfulfilled".into())
    );
    assert_eq!(app.figures("p").await, (10, 0, 10));
    app.verify_ok().await;
}

/// Authorizations older than the timeout and never captured are voided by the sweep (the
/// server's background task runs the same function): stock released once, recorded.
async fn authorizations_never_captured_are_voided_once_after_the_timeout(backend: Backend) {
    let settings = PaymentSettings {
        authorization_timeout: Duration::from_secs(600),
        ..PaymentSettings::default()
    };
    let Some(app) = spawn_app_with(backend, settings).await else {
        return;
    };
    app.create_stock("p", 10).await;
    let kept = app.order_of("c1", &[("p", 2)]).await;
    let kept_auth = id_of(&app.pay(&kept, "manual", "authorize").await);
    let overdue = app.order_of("c2", &[("p", 3)]).await;
    app.pay(&overdue, "manual", "authorize").await;
    let paid = app.order_of("c3", &[("p", 1)]).await;
    app.pay(&paid, "manual", "purchase").await;
    assert_eq!(app.figures("p").await, (10, 6, 4));
    app.clock.advance_secs(599);
    let swept = stockroom_http::gateways::void_overdue_authorizations(&app.state)
        .await
        .expect("sweep");
    assert_eq!(swept, 0, "not overdue yet");
    assert_eq!(app.figures("p").await, (10, 6, 4));
    let r = transaction_call(&app, &kept, &kept_auth, "capture").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.clock.advance_secs(2);
    // The background sweep may get there first; either way it happens once.
    stockroom_http::gateways::void_overdue_authorizations(&app.state)
        .await
        .expect("sweep");
    assert_eq!(
        stockroom_http::gateways::void_overdue_authorizations(&app.state)
            .await
            .expect("sweep"),
        0
    );
    assert_eq!(app.figures("p").await, (10, 3, 7));
    assert_eq!(app.order_state(&overdue).await.1, "unpaid");
    assert_eq!(app.order_state(&kept).await.1, "paid");
    assert_eq!(app.order_state(&paid).await.1, "paid");
    assert_eq!(
        app.order_entries("p", &overdue).await,
        [("allocate".into(), 3), ("deallocate".into(), 3)]
    );
    assert_eq!(
        app.order_entries("p", &kept).await,
        [("allocate".into(), 2)]
    );
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{overdue}/transactions"),
            None,
        )
        .await;
    assert_eq!(r.body["data"][0]["status"], "cancelled");
    app.verify_ok().await;
}

/// Overdue authorizations, captures of every one of them, and the sweeps of two instances
/// (two stores over one database), all at once: each authorization ends captured or voided,
/// never both, and its stock is released at most once.
async fn the_overdue_sweep_racing_captures_on_two_instances_voids_each_at_most_once(
    backend: Backend,
) {
    const ORDERS: usize = 10;
    let settings = PaymentSettings {
        authorization_timeout: Duration::from_secs(600),
        ..PaymentSettings::default()
    };
    let Some(app) = spawn_app_with(backend, settings.clone()).await else {
        return;
    };
    app.create_stock("p", 100).await;
    let mut authorized = Vec::new();
    for i in 0..ORDERS {
        let order = app.order_of(&format!("c{i}"), &[("p", 1)]).await;
        let r = app.pay(&order, "manual", "authorize").await;
        authorized.push((order, id_of(&r)));
    }
    let other = SqlStore::open(&app.url, OpenOptions::default(), app.clock.clone())
        .await
        .expect("a second instance");
    let other = AppState::new(other, app.clock.clone())
        .await
        .expect("state")
        .with_payments(settings);
    app.clock.advance_secs(601);
    let app = Arc::new(app);
    let mut captures = Vec::new();
    for (order, authorization) in &authorized {
        let app = app.clone();
        let (order, authorization) = (order.clone(), authorization.clone());
        captures.push(tokio::spawn(async move {
            transaction_call(&app, &order, &authorization, "capture")
                .await
                .status
        }));
    }
    let sweeps = [app.state.clone(), other].map(|state| {
        tokio::spawn(async move {
            stockroom_http::gateways::void_overdue_authorizations(&state)
                .await
                .expect("sweep")
        })
    });
    let mut captured = 0;
    for c in captures {
        let status = c.await.expect("capture");
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
        captured += usize::from(status == StatusCode::OK);
    }
    for s in sweeps {
        s.await.expect("sweep task");
    }
    // Whatever the background sweep or these did, every overdue one is settled now.
    stockroom_http::gateways::void_overdue_authorizations(&app.state)
        .await
        .expect("sweep");
    let mut voided = 0;
    for (order, _) in &authorized {
        let entries = app.order_entries("p", order).await;
        match app.order_state(order).await.1.as_str() {
            "paid" => assert_eq!(entries, [("allocate".into(), 1)]),
            "unpaid" => {
                voided += 1;
                assert_eq!(entries, [("allocate".into(), 1), ("deallocate".into(), 1)]);
            }
            other => panic!("order {order} ended {other}"),
        }
    }
    assert_eq!(captured + voided, ORDERS, "each ends as exactly one");
    let captured = captured as u64;
    assert_eq!(app.figures("p").await, (100, captured, 100 - captured));
    app.verify_ok().await;
}

async fn checkouts_and_payments_are_rate_limited_per_token_and_per_address(backend: Backend) {
    let limits = Limits {
        order_writes_per_token_per_minute: 3,
        order_writes_per_address_per_minute: 5,
        ..Limits::default()
    };
    let Some(app) = spawn_app_limited(backend, PaymentSettings::default(), limits).await else {
        return;
    };
    app.create_stock("p", 100).await;
    for cart in ["a", "b", "c", "d"] {
        assert_eq!(app.add_to_cart(cart, "p", 1).await.status, StatusCode::OK);
    }
    // One token: three order writes, then 429 with Retry-After, and nothing made.
    let a = app.checkout("a").await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let order = id_of(&a);
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.status,
        StatusCode::OK
    );
    assert_eq!(app.checkout("b").await.status, StatusCode::CREATED);
    let r = app.checkout("c").await;
    assert_eq!(r.error_status(), 429);
    let retry: u64 = r.headers["retry-after"]
        .to_str()
        .expect("header")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let orders = app.admin(Method::GET, "/v2/orders", None).await;
    assert_eq!(orders.body["meta"]["results"]["total"], 2);
    // Another token from the same address: two more, then the address has spent its five.
    app.clock.advance_secs(1);
    let other = app.token("implicit", crate::support::ADMIN_ID, None).await;
    assert_ne!(other, app.shopper);
    let checkout = |cart: &'static str| {
        let path = format!("/v2/carts/{cart}/checkout");
        let (app, other) = (&app, &other);
        async move {
            app.call(Method::POST, &path, Some(other), Some(checkout_body()))
                .await
        }
    };
    assert_eq!(checkout("c").await.status, StatusCode::CREATED);
    assert_eq!(checkout("d").await.status, StatusCode::CREATED);
    let r = app.add_to_cart("e", "p", 1).await;
    assert_eq!(r.status, StatusCode::OK, "carts are not limited");
    assert_eq!(checkout("e").await.error_status(), 429);
    // Administrators are not limited.
    assert_eq!(app.add_to_cart("f", "p", 1).await.status, StatusCode::OK);
    let r = app
        .admin(Method::POST, "/v2/carts/f/checkout", Some(checkout_body()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let orders = app.admin(Method::GET, "/v2/orders", None).await;
    assert_eq!(orders.body["meta"]["results"]["total"], 5);
}

async fn orders_are_capped_in_units(app: TestApp) {
    let max = stockroom_domain::limits::ORDER_UNITS_MAX;
    app.create_stock("p", 100_000).await;
    app.create_stock("q", 100_000).await;
    assert_eq!(
        app.add_to_cart("big", "p", max).await.status,
        StatusCode::OK
    );
    assert_eq!(app.add_to_cart("big", "q", 1).await.status, StatusCode::OK);
    let r = app.checkout("big").await;
    assert_eq!(r.error_status(), 400, "{}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "cart");
    let orders = app.admin(Method::GET, "/v2/orders", None).await;
    assert_eq!(orders.body["meta"]["results"]["total"], 0);
    assert_eq!(app.add_to_cart("ok", "p", max).await.status, StatusCode::OK);
    assert_eq!(app.checkout("ok").await.status, StatusCode::CREATED);
}

/// Orders never paid and older than the cutoff are removed; orders paid, being paid or with
/// a failed attempt (whose history names them), and newer ones, are kept.
async fn unpaid_orders_older_than_the_cutoff_are_purged_and_no_other(app: TestApp) {
    app.create_stock("p", 10).await;
    let old_unpaid = app.order_of("c1", &[("p", 1)]).await;
    let old_cancelled = app.order_of("c2", &[("p", 1)]).await;
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{old_cancelled}"),
            Some(json!({"data": {"type": "order", "status": "cancelled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let old_paid = app.order_of("c3", &[("p", 2)]).await;
    app.pay(&old_paid, "manual", "purchase").await;
    let old_voided = app.order_of("c4", &[("p", 1)]).await;
    let authorization = id_of(&app.pay(&old_voided, "manual", "authorize").await);
    transaction_call(&app, &old_voided, &authorization, "cancel").await;
    app.clock.advance_secs(1000);
    let cutoff = app.clock_now();
    let new_unpaid = app.order_of("c5", &[("p", 1)]).await;
    let removed = stockroom_store::retention::purge_unpaid_orders(&*app.store, cutoff)
        .await
        .expect("purge");
    assert_eq!(removed, 2);
    for gone in [&old_unpaid, &old_cancelled] {
        let r = app
            .admin(Method::GET, &format!("/v2/orders/{gone}"), None)
            .await;
        assert_eq!(r.error_status(), 404);
    }
    for kept in [&old_paid, &old_voided, &new_unpaid] {
        let r = app
            .admin(Method::GET, &format!("/v2/orders/{kept}/items"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{kept} kept");
        assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    }
    assert_eq!(app.figures("p").await, (10, 2, 8), "no stock moved");
    assert_eq!(
        stockroom_store::retention::purge_unpaid_orders(&*app.store, cutoff)
            .await
            .expect("again"),
        0
    );
    app.verify_ok().await;
}

impl TestApp {
    fn clock_now(&self) -> Timestamp {
        stockroom_domain::Clock::now(&*self.clock)
    }
}

/// Review probe (coverage, no finding): every new payment route answers hostile bodies and ids
/// with a clear 4xx (never a 500), shoppers are refused (403) on the administrator's routes
/// (gateways, capture, void, refund), and nothing changes.
async fn the_new_payment_routes_refuse_hostile_input_and_shoppers(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let purchase = id_of(&app.pay(&order, "manual", "purchase").await);
    let order2 = app.order_of("c2", &[("p", 1)]).await;
    let authorization = id_of(&app.pay(&order2, "manual", "authorize").await);
    let figures = app.figures("p").await;
    let long = "x".repeat(5000);
    let bodies = [
        "{",
        "null",
        "[]",
        "\"x\"",
        "{\"data\":null}",
        "{\"data\":[]}",
        "{\"data\":{\"amount\":\"5\"}}",
        "{\"data\":{\"amount\":1.5}}",
        "{\"data\":{\"amount\":-1}}",
        "{\"data\":{\"amount\":0}}",
        "{\"data\":{\"amount\":1e30}}",
        "{\"data\":{\"amount\":99999999999999999999}}",
        "{\"data\":{\"amount\":9223372036854775807}}",
        "{\"data\":{\"enabled\":null}}",
        "{\"data\":{\"enabled\":1}}",
        "{\"data\":{}}",
    ];
    let mut targets = vec![
        (
            Method::POST,
            format!("/v2/orders/{order}/transactions/{purchase}/refund"),
        ),
        (
            Method::POST,
            format!("/v2/orders/{order2}/transactions/{authorization}/cancel"),
        ),
        (Method::PUT, "/v2/gateways/manual".to_owned()),
    ];
    for (method, path) in &targets {
        for body in bodies {
            // Left out, the refund's amount is "all that is left": not hostile.
            let whole_refund = [
                "null",
                "{\"data\":{}}",
                "{\"data\":{\"enabled\":null}}",
                "{\"data\":{\"enabled\":1}}",
            ];
            if path.ends_with("/refund") && whole_refund.contains(&body) {
                continue;
            }
            let r = app
                .call_raw(method.clone(), path, Some(&app.admin), Some(body), &[])
                .await;
            let s = r.status.as_u16();
            // A body the void ignores may succeed; everything else is a 4xx.
            let ok_void = path.ends_with("/cancel") && s == 200;
            assert!(
                ok_void || (400..500).contains(&s),
                "{method} {path} {body}: {s} {}",
                r.body
            );
            if ok_void {
                break;
            }
        }
    }
    targets.push((Method::GET, "/v2/gateways".to_owned()));
    targets.push((Method::GET, "/v2/gateways/manual".to_owned()));
    targets.push((
        Method::POST,
        format!("/v2/orders/{order}/transactions/{purchase}/capture"),
    ));
    for (method, path) in &targets {
        let r = app
            .call_raw(
                method.clone(),
                path,
                Some(&app.shopper),
                Some("{\"data\":{\"enabled\":false}}"),
                &[],
            )
            .await;
        assert_eq!(r.error_status(), 403, "shopper {method} {path}");
    }
    for path in [
        format!("/v2/orders/{order}/transactions/{long}/refund"),
        format!("/v2/orders/{long}/transactions/{purchase}/refund"),
        format!("/v2/orders/{order}/transactions/{long}/cancel"),
        format!("/v2/gateways/{long}"),
        "/v2/gateways/%00".to_owned(),
        format!("/v2/orders/{order}/transactions/%FF/refund"),
    ] {
        let r = app
            .call_raw(Method::POST, &path, Some(&app.admin), None, &[])
            .await;
        let s = r.status.as_u16();
        assert!((400..500).contains(&s), "{path}: {s} {}", r.body);
    }
    assert_eq!(
        app.order_state(&order).await.1,
        "paid",
        "nothing was refunded"
    );
    // The void went through once (its body is ignored): order 2's unit was released.
    assert_eq!(figures, (10, 3, 7));
    assert_eq!(app.figures("p").await, (10, 2, 8));
    assert_eq!(app.order_state(&order2).await.1, "unpaid");
    assert_eq!(
        app.store
            .setting("gateway.manual.enabled")
            .await
            .expect("setting"),
        None
    );
    app.verify_ok().await;
}

/// Review finding: a payment retried with its `Idempotency-Key` while its attempt is still
/// pending (the first request waiting on the gateway, or lost with a 503 or a crash after the
/// attempt was written) was answered 200 `pending` at once and the gateway was never asked for
/// it: the retry's answer differed from the first's (here: 200 against "Payment failed"), and
/// an attempt whose first request died stayed pending until the sweep released it. A retry of
/// a pending attempt now asks the gateway too (with the attempt's id as the gateway's
/// `Idempotency-Key`) and answers its recorded outcome, the same as the first request's.
async fn a_payment_retried_while_pending_answers_the_attempts_outcome(backend: Backend) {
    let Some((app, mode, mut seen)) = app_with_gateway(backend).await else {
        return;
    };
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 3)]).await;
    // The gateway does not answer: the attempt fails at the gateway's timeout.
    mode.store(3, Ordering::SeqCst);
    let path = format!("/v2/orders/{order}/payments");
    let body = json!({"data": {"gateway": "http", "method": "purchase"}}).to_string();
    let app = Arc::new(app);
    let first = {
        let (app, path, body) = (app.clone(), path.clone(), body.clone());
        tokio::spawn(async move {
            app.call_raw(
                Method::POST,
                &path,
                Some(&app.shopper),
                Some(&body),
                &[("Idempotency-Key", "pay-1")],
            )
            .await
        })
    };
    // The first request's attempt is written and its gateway call is in flight.
    seen.recv().await.expect("the gateway was asked");
    let retry = app
        .call_raw(
            Method::POST,
            &path,
            Some(&app.shopper),
            Some(&body),
            &[("Idempotency-Key", "pay-1")],
        )
        .await;
    let first = first.await.expect("first request");
    assert_eq!(first.error_status(), 400, "{}", first.body);
    assert_eq!(first.body["errors"][0]["title"], "Payment failed");
    assert_eq!(
        (retry.status, &retry.body),
        (first.status, &first.body),
        "the retry answers what the first request answered"
    );
    // One attempt, released once.
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.body
    );
    assert_eq!(r.body["data"][0]["status"], "failed");
    assert_eq!(app.figures("p").await, (10, 0, 10));
    assert_eq!(
        app.order_entries("p", &order).await,
        [("allocate".into(), 3), ("deallocate".into(), 3)]
    );
    assert_eq!(app.order_state(&order).await.1, "unpaid");
    app.verify_ok().await;
}

/// Review probe (coverage, no finding): partial refunds racing on two instances of one
/// database never give back more than was paid: of eight refunds of 30 against 100 paid,
/// exactly three are applied, whichever instance each ran on.
async fn partial_refunds_racing_on_two_instances_never_exceed_the_paid_amount(backend: Backend) {
    const RACERS: usize = 8;
    let Some(app) = spawn_app_with(backend, PaymentSettings::default()).await else {
        return;
    };
    app.create_product("p", "P", 50).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let purchase = id_of(&app.pay(&order, "manual", "purchase").await);
    let other = SqlStore::open(&app.url, OpenOptions::default(), app.clock.clone())
        .await
        .expect("a second instance");
    let app = Arc::new(app);
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let (app, other) = (app.clone(), other.clone());
        let (order, purchase) = (order.clone(), purchase.clone());
        racers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let r = refund(&app, &order, &purchase, Some(30)).await;
                assert!(
                    r.status == StatusCode::OK || r.status == StatusCode::CONFLICT,
                    "{}",
                    r.body
                );
                r.status == StatusCode::OK
            } else {
                let answer = other
                    .execute(stockroom_store::WriteRequest::new(
                        stockroom_store::Command::Refund {
                            order_id: order,
                            transaction_id: purchase,
                            refund_id: stockroom_store::new_id(),
                            amount: Some(30),
                        },
                    ))
                    .await
                    .expect("refund");
                matches!(answer.outcome, stockroom_store::Outcome::Applied(_))
            }
        }));
    }
    let mut applied = 0;
    for r in racers {
        applied += usize::from(r.await.expect("racer"));
    }
    assert_eq!(applied, 3, "three refunds of 30 fit in 100");
    let payments = app.store.payments(&order).await.expect("payments");
    let refunded: i64 = payments
        .iter()
        .filter(|p| p.transaction_type.as_str() == "refund")
        .map(|p| p.amount.amount_minor())
        .sum();
    assert_eq!(refunded, 90);
    assert_eq!(app.order_state(&order).await.1, "paid");
    assert_eq!(app.figures("p").await, (10, 2, 8), "refunds move no stock");
    app.verify_ok().await;
}
