//! The order flow over HTTP, with stock figures asserted after every step.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stockroom_http::{HttpGateway, PaymentSettings};
use stockroom_store::testing::Backend;
use stockroom_store::Store;

use crate::support::{spawn_app_limited, spawn_app_with, TestApp};
use stockroom_http::Limits;

crate::on_both_backends!(
    the_whole_flow_moves_stock_only_at_payment_and_shipment,
    two_checkouts_for_the_last_unit_succeed_and_the_first_payer_wins,
    authorize_then_capture_keeps_the_allocation,
    cancelling_releases_a_paid_order_and_closes_an_unpaid_one,
    paying_twice_or_paying_a_cancelled_order_is_a_conflict,
    the_race_to_pay_sells_exactly_what_is_in_stock,
    retried_checkouts_payments_and_updates_apply_once,
    products_are_created_read_updated_and_deleted,
    carts_take_items_by_id_or_sku_all_or_nothing,
    carts_are_bounded,
    products_without_stock_are_not_stock_managed,
    an_overdue_payment_attempt_is_released_exactly_once,
    orders_keep_their_allocation_against_manual_releases,
);

crate::on_both_backends_raw!(
    the_http_gateway_settles_every_outcome_and_releases_failures_once,
    load_beyond_the_limit_is_shed_and_slow_requests_time_out,
);

async fn the_whole_flow_moves_stock_only_at_payment_and_shipment(app: TestApp) {
    app.create_product("mug", "MUG-1", 1299).await;
    app.create_stock("mug", 10).await;
    // Adding checks only this request's quantity; nothing is held, so a cart may hold more
    // than is in stock.
    for _ in 0..2 {
        let r = app.add_to_cart("c1", "mug", 8).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app.shopper(Method::GET, "/v2/carts/c1/items", None).await;
    assert_eq!(r.body["data"][0]["quantity"], 16);
    assert_eq!(r.body["data"][0]["name"], "Product mug");
    assert_eq!(r.body["data"][0]["sku"], "MUG-1");
    assert_eq!(r.body["data"][0]["unit_price"]["amount"], 1299);
    assert_eq!(r.body["data"][0]["value"]["amount"], 16 * 1299);
    assert_eq!(
        r.body["meta"]["display_price"]["with_tax"]["amount"],
        16 * 1299
    );
    assert_eq!(app.figures("mug").await, (10, 0, 10));
    let r = app.add_to_cart("c1", "mug", 11).await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(r.body["errors"][0]["title"], "Insufficient stock");
    let detail = r.body["errors"][0]["detail"].as_str().expect("detail");
    assert!(
        !detail.contains("mug") && !detail.contains("10") && !detail.contains("11"),
        "{detail}"
    );
    assert!(r.body["errors"][0].get("meta").is_none());
    // Checkout sums the cart: 16 > 10.
    assert_eq!(app.checkout("c1").await.error_status(), 400);
    let item = app
        .shopper(Method::GET, "/v2/carts/c1/items", None)
        .await
        .body["data"][0]["id"]
        .as_str()
        .expect("item id")
        .to_owned();
    let r = app
        .shopper(
            Method::PUT,
            &format!("/v2/carts/c1/items/{item}"),
            Some(json!({"data": {"type": "cart_item", "id": item, "quantity": 11}})),
        )
        .await;
    assert_eq!(r.error_status(), 400, "updating checks stock too");
    let r = app
        .shopper(
            Method::PUT,
            &format!("/v2/carts/c1/items/{item}"),
            Some(json!({"data": {"type": "cart_item", "id": item, "quantity": 6}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.checkout("c1").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let order = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(r.body["data"]["status"], "incomplete");
    assert_eq!(r.body["data"]["payment"], "unpaid");
    assert_eq!(r.body["data"]["shipping"], "unfulfilled");
    assert_eq!(r.body["data"]["customer"]["email"], "ada@example.com");
    assert_eq!(
        r.body["data"]["shipping_address"],
        r.body["data"]["billing_address"]
    );
    assert_eq!(
        r.body["data"]["meta"]["display_price"]["with_tax"]["amount"],
        6 * 1299
    );
    assert_eq!(
        app.figures("mug").await,
        (10, 0, 10),
        "checkout holds nothing"
    );
    // An implicit token alone reads no order (SPEC §3).
    let r = app
        .shopper(Method::GET, &format!("/v2/orders/{order}"), None)
        .await;
    assert_eq!(r.error_status(), 403);
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}?include=items"),
            None,
        )
        .await;
    assert_eq!(r.body["included"]["items"][0]["quantity"], 6);
    assert_eq!(r.body["included"]["items"][0]["product_id"], "mug");

    let r = app.pay(&order, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["type"], "transaction");
    assert_eq!(r.body["data"]["transaction_type"], "purchase");
    assert_eq!(r.body["data"]["status"], "complete");
    assert_eq!(r.body["data"]["amount"], 6 * 1299);
    assert_eq!(
        app.order_state(&order).await,
        ("complete".into(), "paid".into(), "unfulfilled".into())
    );
    assert_eq!(app.figures("mug").await, (10, 6, 4));

    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["shipping"], "fulfilled");
    assert_eq!(app.figures("mug").await, (4, 0, 4));
    assert_eq!(
        app.order_entries("mug", &order).await,
        [("allocate".into(), 6), ("ship".into(), 6)]
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "status": "cancelled"}})),
        )
        .await;
    assert_eq!(r.error_status(), 409, "a shipped order cannot be cancelled");
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
        )
        .await;
    assert_eq!(r.error_status(), 409, "nor shipped twice");
    assert_eq!(app.figures("mug").await, (4, 0, 4));
    let r = app
        .admin(
            Method::GET,
            "/v2/orders?filter=eq(shipping,fulfilled)",
            None,
        )
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 1);
    app.verify_ok().await;
}

async fn two_checkouts_for_the_last_unit_succeed_and_the_first_payer_wins(app: TestApp) {
    app.create_product("p", "P", 500).await;
    app.create_stock("p", 1).await;
    let first = app.order_of("a", &[("p", 1)]).await;
    let second = app.order_of("b", &[("p", 1)]).await;
    assert_eq!(app.figures("p").await, (1, 0, 1));
    assert_eq!(
        app.pay(&first, "manual", "purchase").await.status,
        StatusCode::OK
    );
    let r = app.pay(&second, "manual", "purchase").await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(r.body["errors"][0]["title"], "Insufficient stock");
    assert_eq!(app.figures("p").await, (1, 1, 0));
    assert_eq!(app.order_state(&second).await.1, "unpaid");
    assert!(
        app.order_entries("p", &second).await.is_empty(),
        "nothing allocated for the loser"
    );
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{second}/transactions"),
            None,
        )
        .await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(0),
        "no attempt recorded"
    );
    app.verify_ok().await;
}

async fn authorize_then_capture_keeps_the_allocation(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let r = app.pay(&order, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK);
    let tid = r.body["data"]["id"].as_str().expect("tid").to_owned();
    assert_eq!(r.body["data"]["transaction_type"], "authorize");
    assert_eq!(
        app.order_state(&order).await,
        (
            "incomplete".into(),
            "authorized".into(),
            "unfulfilled".into()
        )
    );
    assert_eq!(app.figures("p").await, (5, 2, 3));
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
        )
        .await;
    assert_eq!(r.error_status(), 409, "an authorized order is not paid yet");
    let capture = format!("/v2/orders/{order}/transactions/{tid}/capture");
    let r = app
        .call_raw(Method::POST, &capture, Some(&app.shopper), None, &[])
        .await;
    assert_eq!(r.error_status(), 403, "capture needs an administrator");
    let r = app
        .call_raw(Method::POST, &capture, Some(&app.admin), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["transaction_type"], "capture");
    assert_eq!(
        app.order_state(&order).await,
        ("complete".into(), "paid".into(), "unfulfilled".into())
    );
    assert_eq!(app.figures("p").await, (5, 2, 3));
    let r = app
        .call_raw(Method::POST, &capture, Some(&app.admin), None, &[])
        .await;
    assert_eq!(r.error_status(), 409, "captured once");
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions/{tid}"),
            None,
        )
        .await;
    assert_eq!(r.body["data"]["id"], tid.as_str());
    app.verify_ok().await;
}

async fn cancelling_releases_a_paid_order_and_closes_an_unpaid_one(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    let paid = app.order_of("a", &[("p", 3)]).await;
    let unpaid = app.order_of("b", &[("p", 1)]).await;
    app.pay(&paid, "manual", "purchase").await;
    assert_eq!(app.figures("p").await, (5, 3, 2));
    let cancel = json!({"data": {"type": "order", "status": "cancelled"}});
    let r = app
        .shopper(
            Method::PUT,
            &format!("/v2/orders/{paid}"),
            Some(cancel.clone()),
        )
        .await;
    assert_eq!(r.error_status(), 403, "shoppers cannot cancel");
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{paid}"),
            Some(cancel.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert_eq!(
        app.order_entries("p", &paid).await,
        [("allocate".into(), 3), ("deallocate".into(), 3)]
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{paid}"),
            Some(cancel.clone()),
        )
        .await;
    assert_eq!(r.error_status(), 409, "released once");
    let r = app
        .admin(Method::PUT, &format!("/v2/orders/{unpaid}"), Some(cancel))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert!(app.order_entries("p", &unpaid).await.is_empty());
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{unpaid}"),
            Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
        )
        .await;
    assert_eq!(r.error_status(), 409);
    app.verify_ok().await;
}

async fn paying_twice_or_paying_a_cancelled_order_is_a_conflict(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    let order = app.order_of("a", &[("p", 1)]).await;
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.error_status(),
        409
    );
    let other = app.order_of("b", &[("p", 1)]).await;
    app.admin(
        Method::PUT,
        &format!("/v2/orders/{other}"),
        Some(json!({"data": {"type": "order", "status": "cancelled"}})),
    )
    .await;
    assert_eq!(
        app.pay(&other, "manual", "purchase").await.error_status(),
        409
    );
    assert_eq!(app.figures("p").await, (5, 1, 4));
    for (body, status) in [
        (
            json!({"data": {"gateway": "stripe", "method": "purchase"}}),
            400,
        ),
        (
            json!({"data": {"gateway": "http", "method": "purchase"}}),
            400,
        ),
        (
            json!({"data": {"gateway": "manual", "method": "refund"}}),
            400,
        ),
        (json!({"data": {"gateway": "manual"}}), 400),
        (
            json!({"data": {"gateway": "manual", "method": "purchase", "amount": 1}}),
            400,
        ),
    ] {
        let r = app
            .shopper(
                Method::POST,
                &format!("/v2/orders/{other}/payments"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.error_status(), status, "{body}");
    }
    assert_eq!(
        app.pay("no-such-order", "manual", "purchase")
            .await
            .error_status(),
        404
    );
}

/// 100 one-unit orders and 20 orders of one unit of each of two products, all for a product
/// holding 30, paid at once: exactly 30 orders win, none is half-allocated.
async fn the_race_to_pay_sells_exactly_what_is_in_stock(app: TestApp) {
    app.create_product("hot", "HOT", 100).await;
    app.create_product("side", "SIDE", 100).await;
    app.create_stock("hot", 30).await;
    app.create_stock("side", 1000).await;
    let mut orders = Vec::new();
    for i in 0..100 {
        orders.push((
            app.order_of(&format!("single-{i}"), &[("hot", 1)]).await,
            false,
        ));
    }
    for i in 0..20 {
        orders.push((
            app.order_of(&format!("pair-{i}"), &[("hot", 1), ("side", 1)])
                .await,
            true,
        ));
    }
    let app = Arc::new(app);
    let barrier = Arc::new(tokio::sync::Barrier::new(orders.len()));
    let tasks: Vec<_> = orders
        .iter()
        .cloned()
        .map(|(order, pair)| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let r = app.pay(&order, "manual", "purchase").await;
                (order, pair, r.status.as_u16())
            })
        })
        .collect();
    let mut paid_pairs = 0;
    let mut paid = 0;
    for t in tasks {
        let (order, pair, status) = t.await.expect("task");
        assert!(status == 200 || status == 400, "payment answered {status}");
        let entries_hot = app.order_entries("hot", &order).await;
        let entries_side = app.order_entries("side", &order).await;
        if status == 200 {
            paid += 1;
            paid_pairs += usize::from(pair);
            assert_eq!(entries_hot, [("allocate".to_owned(), 1)]);
            assert_eq!(entries_side.len(), usize::from(pair));
            assert_eq!(app.order_state(&order).await.1, "paid");
        } else {
            assert!(
                entries_hot.is_empty() && entries_side.is_empty(),
                "a refused order allocated nothing"
            );
            assert_eq!(app.order_state(&order).await.1, "unpaid");
        }
    }
    assert_eq!(paid, 30);
    assert_eq!(app.figures("hot").await, (30, 30, 0));
    assert_eq!(
        app.figures("side").await,
        (1000, paid_pairs as u64, 1000 - paid_pairs as u64)
    );
    app.verify_ok().await;
}

async fn retried_checkouts_payments_and_updates_apply_once(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    app.add_to_cart("c", "p", 2).await;
    let body = r#"{"data":{"customer":{"email":"a@b.c"},"billing_address":{"line_1":"x"}}}"#;
    let key = [("Idempotency-Key", "checkout-1")];
    let a = app
        .call_raw(
            Method::POST,
            "/v2/carts/c/checkout",
            Some(&app.shopper),
            Some(body),
            &key,
        )
        .await;
    let b = app
        .call_raw(
            Method::POST,
            "/v2/carts/c/checkout",
            Some(&app.shopper),
            Some(body),
            &key,
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["data"]["id"], b.body["data"]["id"], "one order");
    let r = app.admin(Method::GET, "/v2/orders", None).await;
    assert_eq!(r.body["meta"]["results"]["total"], 1);
    let order = a.body["data"]["id"].as_str().expect("id").to_owned();
    let pay = r#"{"data":{"gateway":"manual","method":"purchase"}}"#;
    let key = [("Idempotency-Key", "pay-1")];
    let path = format!("/v2/orders/{order}/payments");
    let a = app
        .call_raw(Method::POST, &path, Some(&app.shopper), Some(pay), &key)
        .await;
    let b = app
        .call_raw(Method::POST, &path, Some(&app.shopper), Some(pay), &key)
        .await;
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a.body["data"]["id"], b.body["data"]["id"]);
    assert_eq!(app.figures("p").await, (5, 2, 3), "allocated once");
    let ship = r#"{"data":{"type":"order","shipping":"fulfilled"}}"#;
    let key = [("Idempotency-Key", "ship-1")];
    let path = format!("/v2/orders/{order}");
    let a = app
        .call_raw(Method::PUT, &path, Some(&app.admin), Some(ship), &key)
        .await;
    let b = app
        .call_raw(Method::PUT, &path, Some(&app.admin), Some(ship), &key)
        .await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::OK, StatusCode::OK),
        "a retried ship gets its first answer, not 409"
    );
    assert_eq!(app.figures("p").await, (3, 0, 3), "shipped once");
    assert_eq!(app.order_entries("p", &order).await.len(), 2);
    app.verify_ok().await;
}

async fn products_are_created_read_updated_and_deleted(app: TestApp) {
    let r = app
        .admin(Method::POST, "/v2/products", Some(json!({"data": {"type": "product", "attributes": {"name": "Mug", "sku": "MUG-1", "price": {"amount": 1299, "currency": "USD", "includes_tax": false}}}})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["data"]["id"]
        .as_str()
        .expect("generated id")
        .to_owned();
    assert_eq!(id.len(), 36, "a generated UUID");
    assert_eq!(r.body["data"]["attributes"]["price"]["amount"], 1299);
    assert!(r.body["data"]["meta"]["timestamps"]["created_at"].is_string());
    let dup_sku = json!({"data": {"type": "product", "attributes": {"name": "Other", "sku": "MUG-1", "price": {"amount": 1, "currency": "USD"}}}});
    assert_eq!(
        app.admin(Method::POST, "/v2/products", Some(dup_sku))
            .await
            .error_status(),
        409
    );
    let dup_id = json!({"data": {"type": "product", "id": id, "attributes": {"name": "Other", "sku": "X", "price": {"amount": 1, "currency": "USD"}}}});
    assert_eq!(
        app.admin(Method::POST, "/v2/products", Some(dup_id))
            .await
            .error_status(),
        409
    );
    for bad in [
        json!({"data": {"type": "product", "attributes": {"sku": "A", "price": {"amount": 1, "currency": "USD"}}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "price": {"amount": 1, "currency": "USD"}}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "sku": "A"}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "sku": "A", "price": {"amount": 1.5, "currency": "USD"}}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "sku": "A", "price": {"amount": -1, "currency": "USD"}}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "sku": "A", "price": {"amount": 1, "currency": "dollars"}}}}),
        json!({"data": {"type": "product", "attributes": {"name": "A", "sku": "A", "price": {"amount": "1", "currency": "USD"}}}}),
        json!({"data": {"type": "stock", "attributes": {"name": "A", "sku": "A", "price": {"amount": 1, "currency": "USD"}}}}),
        json!({"data": {"type": "product", "id": "bad id", "attributes": {"name": "A", "sku": "A", "price": {"amount": 1, "currency": "USD"}}}}),
    ] {
        assert_eq!(
            app.admin(Method::POST, "/v2/products", Some(bad.clone()))
                .await
                .error_status(),
            400,
            "{bad}"
        );
    }
    let r = app
        .shopper(Method::GET, &format!("/v2/products/{id}"), None)
        .await;
    assert_eq!(r.body["data"]["attributes"]["name"], "Mug");
    let r = app
        .shopper(Method::POST, "/v2/products", Some(json!({"data": {}})))
        .await;
    assert_eq!(r.error_status(), 403);
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/products/{id}"),
            Some(json!({"data": {"type": "product", "attributes": {"name": "Big mug"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["attributes"]["name"], "Big mug");
    assert_eq!(
        r.body["data"]["attributes"]["sku"], "MUG-1",
        "untouched fields stay"
    );
    app.create_product("other", "OTHER", 5).await;
    let r = app
        .admin(
            Method::PUT,
            "/v2/products/other",
            Some(json!({"data": {"type": "product", "attributes": {"sku": "MUG-1"}}})),
        )
        .await;
    assert_eq!(r.error_status(), 409);
    let r = app
        .admin(Method::GET, "/v2/products?page[limit]=1", None)
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 2);
    assert_eq!(
        app.admin(Method::DELETE, &format!("/v2/products/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.admin(Method::GET, &format!("/v2/products/{id}"), None)
            .await
            .error_status(),
        404
    );
    assert_eq!(
        app.admin(Method::DELETE, &format!("/v2/products/{id}"), None)
            .await
            .error_status(),
        404
    );
}

async fn carts_take_items_by_id_or_sku_all_or_nothing(app: TestApp) {
    app.create_product("a", "SKU-A", 100).await;
    app.create_product("b", "SKU-B", 250).await;
    app.create_stock("a", 10).await;
    app.create_stock("b", 2).await;
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts/c/items",
            Some(json!({"data": {"type": "cart_item", "sku": "SKU-B", "quantity": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"][0]["product_id"], "b");
    // An array is all or nothing: one short line, or one unknown product, adds nothing.
    let short = json!({"data": [{"type": "cart_item", "id": "a", "quantity": 1}, {"type": "cart_item", "sku": "SKU-B", "quantity": 3}]});
    assert_eq!(
        app.shopper(Method::POST, "/v2/carts/c/items", Some(short))
            .await
            .error_status(),
        400
    );
    let unknown = json!({"data": [{"type": "cart_item", "id": "a", "quantity": 1}, {"type": "cart_item", "sku": "NOPE", "quantity": 1}]});
    assert_eq!(
        app.shopper(Method::POST, "/v2/carts/c/items", Some(unknown))
            .await
            .error_status(),
        404
    );
    let r = app.shopper(Method::GET, "/v2/carts/c/items", None).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    let both = json!({"data": [{"type": "cart_item", "id": "a", "quantity": 2}, {"type": "cart_item", "sku": "SKU-B", "quantity": 1}], "options": {"add_all_or_nothing": true}});
    let r = app
        .shopper(Method::POST, "/v2/carts/c/items", Some(both))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["meta"]["display_price"]["with_tax"]["amount"],
        2 * 100 + 2 * 250
    );
    let r = app.shopper(Method::GET, "/v2/carts/c", None).await;
    assert_eq!(r.body["data"]["id"], "c");
    assert_eq!(
        r.body["data"]["meta"]["display_price"]["with_tax"]["amount"],
        700
    );
    let item = r.body["data"]["relationships"]["items"]["data"][0]["id"]
        .as_str()
        .expect("item")
        .to_owned();
    assert_eq!(
        app.shopper(Method::DELETE, &format!("/v2/carts/c/items/{item}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.shopper(Method::DELETE, &format!("/v2/carts/c/items/{item}"), None)
            .await
            .error_status(),
        404
    );
    assert_eq!(
        app.shopper(Method::DELETE, "/v2/carts/c", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = app.shopper(Method::GET, "/v2/carts/c/items", None).await;
    assert_eq!(
        r.body["data"].as_array().map(Vec::len),
        Some(0),
        "a deleted cart reads empty"
    );
    assert_eq!(app.checkout("c").await.error_status(), 404);
    assert_eq!(app.add_to_cart("c", "nope", 1).await.error_status(), 404);
    for bad in ["0", "-1", "1.5", "\"2\""] {
        let r = app
            .call_raw(
                Method::POST,
                "/v2/carts/c/items",
                Some(&app.shopper),
                Some(&format!(r#"{{"data":{{"id":"a","quantity":{bad}}}}}"#)),
                &[],
            )
            .await;
        assert_eq!(r.error_status(), 400, "{bad}");
    }
    let long = "x".repeat(65);
    assert_eq!(app.add_to_cart(&long, "a", 1).await.error_status(), 400);
    app.add_to_cart("e", "a", 1).await;
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts/e/checkout",
            Some(json!({"data": {"customer": {"email": "x"}}})),
        )
        .await;
    assert_eq!(r.error_status(), 400, "a billing address is required");
    assert_eq!(app.figures("a").await, (10, 0, 10));
}

async fn carts_are_bounded(app: TestApp) {
    for i in 0..101 {
        app.create_stock(&format!("s{i}"), 5).await;
    }
    let items: Vec<Value> = (0..100)
        .map(|i| json!({"type": "cart_item", "id": format!("s{i}"), "quantity": 1}))
        .collect();
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts/big/items",
            Some(json!({"data": items})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "100 lines are allowed");
    let r = app.add_to_cart("big", "s100", 1).await;
    assert_eq!(r.error_status(), 400, "the 101st line is not");
    let r = app.add_to_cart("big", "s0", 1).await;
    assert_eq!(r.status, StatusCode::OK, "adding to an existing line is");
    app.create_stock("plenty", 1_000_000_000).await;
    assert_eq!(
        app.add_to_cart("q", "plenty", 1_000_000_000).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.add_to_cart("q", "plenty", 1).await.error_status(),
        400,
        "a line holds at most 10^9"
    );
    app.create_product("eur", "EUR-1", 100).await;
    app.admin(Method::PUT, "/v2/products/eur", Some(json!({"data": {"type": "product", "attributes": {"price": {"amount": 100, "currency": "EUR"}}}}))).await;
    app.create_product("usd", "USD-1", 100).await;
    app.add_to_cart("mixed", "usd", 1).await;
    assert_eq!(
        app.add_to_cart("mixed", "eur", 1).await.error_status(),
        400,
        "one currency per cart"
    );
    app.create_product("usd2", "USD-2", 100).await;
    app.add_to_cart("mixed", "usd2", 1).await;
    app.admin(
        Method::PUT,
        "/v2/products/usd2",
        Some(json!({"data": {"type": "product", "attributes": {"price": {"amount": 100, "currency": "EUR"}}}})),
    )
    .await;
    assert_eq!(
        app.checkout("mixed").await.error_status(),
        400,
        "a price that changed currency since is caught at checkout"
    );
}

async fn products_without_stock_are_not_stock_managed(app: TestApp) {
    // A product with no stock record may be bought in any quantity and moves no stock.
    app.create_product("ebook", "EBOOK", 999).await;
    // Stock with no product record may be sold too: no name, price zero.
    app.create_stock("bare", 3).await;
    let order = app.order_of("c", &[("ebook", 500), ("bare", 2)]).await;
    let r = app.shopper(Method::GET, "/v2/carts/c/items", None).await;
    let items = r.body["data"].as_array().expect("items");
    assert_eq!(
        items
            .iter()
            .find(|i| i["product_id"] == "ebook")
            .map(|i| i["manage_stock"].clone()),
        Some(json!(false))
    );
    assert_eq!(
        items
            .iter()
            .find(|i| i["product_id"] == "bare")
            .map(|i| (i["name"].clone(), i["unit_price"]["amount"].clone())),
        Some((json!(""), json!(0)))
    );
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.status,
        StatusCode::OK
    );
    assert_eq!(app.figures("bare").await, (3, 2, 1));
    app.admin(
        Method::PUT,
        &format!("/v2/orders/{order}"),
        Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
    )
    .await;
    assert_eq!(app.figures("bare").await, (1, 0, 1));
    assert_eq!(
        app.admin(Method::GET, "/v2/inventories/ebook", None)
            .await
            .error_status(),
        404
    );
    app.verify_ok().await;
}

/// A payment attempt whose outcome is never recorded (here: recorded pending, as if the process
/// died while the gateway was asked) is released after the timeout, once, however many sweeps.
async fn an_overdue_payment_attempt_is_released_exactly_once(app: TestApp) {
    use stockroom_domain::order::PaymentMethod;
    use stockroom_domain::Timestamp;
    use stockroom_store::{Command, NewPayment, WriteRequest};
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 2)]).await;
    let expires = Timestamp(stockroom_domain::Clock::now(&*app.clock).micros() + 60_000_000);
    app.store
        .execute(WriteRequest::new(Command::Pay {
            order_id: order.clone(),
            payment: NewPayment {
                id: "attempt-1".into(),
                gateway: "http".into(),
                method: PaymentMethod::Purchase,
                expires_at: expires,
            },
            settled: false,
            gateway_enabled: true,
        }))
        .await
        .expect("pay");
    assert_eq!(app.figures("p").await, (5, 2, 3));
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.error_status(),
        409,
        "being paid"
    );
    assert_eq!(
        stockroom_http::payments::release_overdue(&app.state)
            .await
            .expect("sweep"),
        0,
        "not yet due"
    );
    app.clock.advance_secs(61);
    let sweeps = futures::future::join_all(
        (0..4).map(|_| stockroom_http::payments::release_overdue(&app.state)),
    )
    .await;
    let released: usize = sweeps.into_iter().map(|r| r.expect("sweep")).sum();
    assert!(released >= 1);
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert_eq!(
        app.order_entries("p", &order).await,
        [("allocate".into(), 2), ("deallocate".into(), 2)],
        "released exactly once"
    );
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions/attempt-1"),
            None,
        )
        .await;
    assert_eq!(r.body["data"]["status"], "failed");
    assert_eq!(app.order_state(&order).await.1, "unpaid");
    assert_eq!(
        app.pay(&order, "manual", "purchase").await.status,
        StatusCode::OK,
        "and may be paid again"
    );
    app.verify_ok().await;
}

/// A stand-in payment provider: approves, declines, answers 500, or never answers. Each request
/// it receives is announced on the returned channel.
pub(crate) async fn spawn_gateway(
    mode: Arc<AtomicU8>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    use axum::routing::post;
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/pay",
        post(move |body: axum::Json<Value>| {
            let mode = mode.clone();
            let _ = seen_tx.send(());
            async move {
                assert!(body["payment_id"].is_string() && body["amount"].is_i64());
                match mode.load(Ordering::SeqCst) {
                    0 => (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"decision": "approve"})),
                    ),
                    1 => (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"decision": "decline"})),
                    ),
                    2 => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({})),
                    ),
                    _ => std::future::pending().await,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/pay", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn the_http_gateway_settles_every_outcome_and_releases_failures_once(backend: Backend) {
    let mode = Arc::new(AtomicU8::new(0));
    let (url, _seen) = spawn_gateway(mode.clone()).await;
    let settings = PaymentSettings {
        http: Some(HttpGateway {
            url,
            timeout: Duration::from_millis(300),
        }),
        pending_timeout: Duration::from_secs(60),
        ..PaymentSettings::default()
    };
    let Some(app) = spawn_app_with(backend, settings).await else {
        return;
    };
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 3)]).await;
    for (m, what) in [(1, "decline"), (2, "500"), (3, "timeout")] {
        mode.store(m, Ordering::SeqCst);
        let r = app.pay(&order, "http", "purchase").await;
        assert_eq!(r.error_status(), 400, "{what}");
        assert_eq!(r.body["errors"][0]["title"], "Payment failed");
        assert_eq!(
            app.figures("p").await,
            (10, 0, 10),
            "{what} released what it allocated"
        );
        assert_eq!(app.order_state(&order).await.1, "unpaid", "{what}");
    }
    let entries = app.order_entries("p", &order).await;
    assert_eq!(
        entries.len(),
        6,
        "three allocations, each released once: {entries:?}"
    );
    assert!(entries
        .chunks(2)
        .all(|pair| pair[0] == ("allocate".into(), 3) && pair[1] == ("deallocate".into(), 3)));
    mode.store(0, Ordering::SeqCst);
    let r = app.pay(&order, "http", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["status"], "complete");
    assert_eq!(app.figures("p").await, (10, 3, 7));
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders/{order}/transactions"),
            None,
        )
        .await;
    let statuses: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "failed", "complete"]);
    assert_eq!(
        stockroom_http::payments::release_overdue(&app.state)
            .await
            .expect("sweep"),
        0
    );
    app.verify_ok().await;
}

/// One request at a time, 500 ms each at most: a payment stuck at a gateway that never answers
/// holds the only slot, so another request is shed at once with 503 and `Retry-After`; the
/// stuck one is answered 503 when its time is up, and its attempt is still settled (failed,
/// released) when the gateway times out.
async fn load_beyond_the_limit_is_shed_and_slow_requests_time_out(backend: Backend) {
    let mode = Arc::new(AtomicU8::new(3));
    let (url, mut seen) = spawn_gateway(mode.clone()).await;
    let settings = PaymentSettings {
        http: Some(HttpGateway {
            url,
            timeout: Duration::from_millis(1500),
        }),
        pending_timeout: Duration::from_secs(60),
        ..PaymentSettings::default()
    };
    let limits = Limits {
        max_concurrent_requests: 1,
        request_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let Some(app) = spawn_app_limited(backend, settings, limits).await else {
        return;
    };
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 5).await;
    let order = app.order_of("c", &[("p", 1)]).await;
    let app = Arc::new(app);
    let stuck = tokio::spawn({
        let app = app.clone();
        async move { app.pay(&order, "http", "purchase").await }
    });
    // Once the gateway has the payment, the payment holds the only slot.
    seen.recv().await.expect("the gateway was asked");
    let shed = app
        .call(Method::GET, "/v2/inventories/p", Some(&app.admin), None)
        .await;
    assert_eq!(
        shed.error_status(),
        503,
        "a request beyond the limit is shed"
    );
    assert_eq!(
        shed.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let r = stuck.await.expect("task");
    assert_eq!(r.error_status(), 503);
    assert_eq!(r.body["errors"][0]["title"], "Request timed out");
    // Both are counted (the counters are the process's: other tests may add to them).
    let text = app
        .call(Method::GET, "/metrics", Some(&app.admin), None)
        .await
        .body;
    let text = text.as_str().expect("metrics text");
    for counter in ["stockroom_http_shed_total", "stockroom_http_timeouts_total"] {
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{counter} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{counter} counted: {n}");
    }
    // The attempt goes on without its caller: the gateway's timeout fails it and releases.
    let mut released = false;
    for _ in 0..100 {
        if app.figures("p").await == (5, 0, 5) {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(released, "the stuck attempt was settled and released");
    app.verify_ok().await;
}

/// An administrator's `deallocate` can release only what was allocated by hand: the units a
/// paid order holds stay held until the order ships or is cancelled, which resolves them once.
async fn orders_keep_their_allocation_against_manual_releases(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c", &[("p", 4)]).await;
    app.pay(&order, "manual", "purchase").await;
    assert_eq!(
        app.transact("p", "allocate", 2).await.status,
        StatusCode::OK
    );
    assert_eq!(app.transact("p", "deallocate", 3).await.error_status(), 422);
    assert_eq!(
        app.transact("p", "set", 5).await.error_status(),
        422,
        "not below what is allocated"
    );
    assert_eq!(
        app.transact("p", "deallocate", 2).await.status,
        StatusCode::OK
    );
    assert_eq!(app.figures("p").await, (10, 4, 6));
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "status": "cancelled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("p").await, (10, 0, 10));
    app.verify_ok().await;
}
