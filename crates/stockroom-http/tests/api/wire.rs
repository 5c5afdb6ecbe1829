//! The typed wire layer: what malformed bodies are told, duplicate keys, and idempotency keys
//! scoped by their caller.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestApp;

crate::on_both_backends!(
    a_key_given_twice_in_a_body_is_refused_and_changes_nothing,
    every_body_fields_type_error_names_the_field,
    another_shoppers_idempotency_key_does_not_touch_this_ones_request,
);

async fn a_key_given_twice_in_a_body_is_refused_and_changes_nothing(app: TestApp) {
    app.create_stock("dup", 10).await;
    // The last key used to win: this incremented.
    let body = r#"{"data":{"type":"stock-transaction","action":"decrement","action":"increment","quantity":1}}"#;
    let r = app
        .call_raw(
            Method::POST,
            "/v2/inventories/dup/transactions",
            Some(&app.admin),
            Some(body),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "data.action", "{}", r.body);
    let envelope = r#"{"data":{"quantity":1},"data":{"quantity":2}}"#;
    let r = app
        .call_raw(
            Method::POST,
            "/v2/inventories/dup2",
            Some(&app.admin),
            Some(envelope),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // A free-form object (a customer) is refused with a repeated key too.
    app.admin(
        Method::POST,
        "/v2/carts/dup-cart/items",
        Some(json!({"data":{"type":"cart_item","id":"dup","quantity":1}})),
    )
    .await;
    let checkout = r#"{"data":{"customer":{"email":"a@b.c","email":"x@y.z"},"billing_address":{"line_1":"1"}}}"#;
    let r = app
        .call_raw(
            Method::POST,
            "/v2/carts/dup-cart/checkout",
            Some(&app.admin),
            Some(checkout),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "data.customer", "{}", r.body);
    assert_eq!(app.figures("dup").await, (10, 0, 10));
    assert_eq!(
        app.history_count("dup", None).await,
        1,
        "only the create entry"
    );
    let r = app.admin(Method::GET, "/v2/inventories/dup2", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// For each body field of each route, a value of the wrong type is a 400 whose `source` is the
/// field's path in the body.
async fn every_body_fields_type_error_names_the_field(app: TestApp) {
    app.create_stock("wt", 10).await;
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (
            Method::POST,
            "/v2/inventories/wt2",
            json!({"data":{"quantity":"5"}}),
            "data.quantity",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"action":5,"quantity":1}}),
            "data.action",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"action":"increment","quantity":1.5}}),
            "data.quantity",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"action":"increment","quantity":1,"reason":7}}),
            "data.reason",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"action":"increment","quantity":1,"location":[]}}),
            "data.location",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"action":"increment","quantity":1,"type":"stock"}}),
            "data.type",
        ),
        (
            Method::POST,
            "/v2/inventories/wt/transactions",
            json!({"data":{"type":"stock-transaction","attributes":{"action":"increment","quantity":"1"}}}),
            "data.attributes.quantity",
        ),
        (
            Method::POST,
            "/v2/inventories",
            json!({"data":{"type":"stock","id":5,"attributes":{"available":1}}}),
            "data.id",
        ),
        (
            Method::POST,
            "/v2/inventories",
            json!({"data":{"type":"stock","id":"wt3","attributes":{"available":"1"}}}),
            "data.attributes.available",
        ),
        (
            Method::POST,
            "/v2/inventories",
            json!({"data":{"type":"stock","id":"wt3","attributes":{"locations":{"wh":{"available":true}}}}}),
            "data.attributes.locations.wh.available",
        ),
        (
            Method::PUT,
            "/v2/inventories/wt",
            json!({"data":{"type":"stock","attributes":{"locations":[]}}}),
            "data.attributes.locations",
        ),
        (
            Method::POST,
            "/v2/inventories/multiple",
            json!({"data":[{"id":5}]}),
            "data[0].id",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","id":5,"attributes":{"name":"N","sku":"S","price":{"amount":1,"currency":"USD"}}}}),
            "data.id",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","attributes":{"name":5,"sku":"S","price":{"amount":1,"currency":"USD"}}}}),
            "data.attributes.name",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","attributes":{"name":"N","sku":[],"price":{"amount":1,"currency":"USD"}}}}),
            "data.attributes.sku",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","attributes":{"name":"N","sku":"S","price":{"amount":"1","currency":"USD"}}}}),
            "data.attributes.price.amount",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","attributes":{"name":"N","sku":"S","price":{"amount":1,"currency":1}}}}),
            "data.attributes.price.currency",
        ),
        (
            Method::POST,
            "/v2/products",
            json!({"data":{"type":"product","attributes":{"name":"N","sku":"S","price":{"amount":1,"currency":"USD","includes_tax":"no"}}}}),
            "data.attributes.price.includes_tax",
        ),
        (
            Method::PUT,
            "/v2/products/wt",
            json!({"data":{"type":"product","attributes":{"price":{"amount":-1,"currency":"USD"}}}}),
            "data.attributes.price.amount",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":5,"slug":"s"}}}),
            "data.attributes.name",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":"Name","slug":5}}}),
            "data.attributes.slug",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":"Name","slug":"s","address":"1 Road"}}}),
            "data.attributes.address",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":"Name","slug":"s","address":[1]}}}),
            "data.attributes.address[0]",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":"Name","slug":"s","geolocation":{"lat":"1","lon":2}}}}),
            "data.attributes.geolocation.lat",
        ),
        (
            Method::POST,
            "/v2/inventories/locations",
            json!({"data":{"type":"inventory_location","attributes":{"name":"Name","slug":"s","external_ref":5}}}),
            "data.attributes.external_ref",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/items",
            json!({"data":{"type":"cart_item","id":"wt","quantity":"1"}}),
            "data.quantity",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/items",
            json!({"data":[{"type":"cart_item","id":"wt","quantity":1},{"type":"cart_item","sku":5,"quantity":1}]}),
            "data[1].sku",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/items",
            json!({"data":{"type":"cart_item","id":"wt","quantity":1,"location":5}}),
            "data.location",
        ),
        (
            Method::PUT,
            "/v2/carts/wt-cart/items/x",
            json!({"data":{"type":"cart_item","quantity":"2"}}),
            "data.quantity",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/checkout",
            json!({"data":{"customer":5,"billing_address":{}}}),
            "data.customer",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/checkout",
            json!({"data":{"customer":{"id":"c"},"billing_address":"x"}}),
            "data.billing_address",
        ),
        (
            Method::POST,
            "/v2/carts/wt-cart/checkout",
            json!({"data":{"customer":{"id":"c"},"billing_address":{},"shipping_address":5}}),
            "data.shipping_address",
        ),
        (
            Method::PUT,
            "/v2/orders/o",
            json!({"data":{"type":"order","shipping":"shipped"}}),
            "data.shipping",
        ),
        (
            Method::PUT,
            "/v2/orders/o",
            json!({"data":{"type":"order","status":5}}),
            "data.status",
        ),
        (
            Method::POST,
            "/v2/orders/o/payments",
            json!({"data":{"gateway":5,"method":"purchase"}}),
            "data.gateway",
        ),
        (
            Method::POST,
            "/v2/orders/o/payments",
            json!({"data":{"gateway":"manual","method":"steal"}}),
            "data.method",
        ),
        (
            Method::POST,
            "/v2/orders/o/payments",
            json!({"data":{"gateway":"manual","method":"purchase","amount":"1"}}),
            "data.amount",
        ),
        // serde's derived structs read an array of their fields in order; here an object is
        // an object.
        (
            Method::PUT,
            "/v2/products/wt",
            json!({"data":{"type":"product","attributes":[null,null,null]}}),
            "data.attributes",
        ),
        (
            Method::PUT,
            "/v2/inventories/wt",
            json!({"data":{"attributes":[null,null]}}),
            "data.attributes",
        ),
        (
            Method::POST,
            "/v2/inventories/wt2",
            json!({"data":[5]}),
            "data",
        ),
    ];
    for (method, path, body, source) in cases {
        let r = app.admin(method.clone(), path, Some(body.clone())).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body}: {}",
            r.body
        );
        assert_eq!(
            r.body["errors"][0]["source"], source,
            "{method} {path} {body}: {}",
            r.body
        );
        let detail = r.body["errors"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(source),
            "{method} {path}: the detail names {source}: {detail}"
        );
    }
    let r = app
        .call_raw(
            Method::POST,
            "/oauth/access_token",
            None,
            Some("grant_type=password&client_id=x"),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["errors"][0]["source"], "grant_type", "{}", r.body);
    assert_eq!(app.figures("wt").await, (10, 0, 10), "nothing changed");
}

/// Issue 12, finding 8: keys were scoped by method and path only, so an attacker who sent a
/// victim's key first made the victim's checkout fail with 422 (or replayed the attacker's
/// answer to it). Keys are now the caller's own.
async fn another_shoppers_idempotency_key_does_not_touch_this_ones_request(app: TestApp) {
    app.create_stock("idem", 10).await;
    let victim = app.token("implicit", crate::support::ADMIN_ID, None).await;
    let attacker = app.token("implicit", crate::support::ADMIN_ID, None).await;
    assert_ne!(victim, attacker);
    let item = json!({"data":{"type":"cart_item","id":"idem","quantity":1}}).to_string();
    let add = |token: String| {
        let item = item.clone();
        let app = &app;
        async move {
            app.call_raw(
                Method::POST,
                "/v2/carts/victim-cart/items",
                Some(&token),
                Some(&item),
                &[],
            )
            .await
        }
    };
    assert_eq!(add(victim.clone()).await.status, StatusCode::OK);
    let checkout = |token: String, email: &'static str| {
        let app = &app;
        async move {
            let body =
                json!({"data":{"customer":{"email":email},"billing_address":{"line_1":"1"}}})
                    .to_string();
            app.call_raw(
                Method::POST,
                "/v2/carts/victim-cart/checkout",
                Some(&token),
                Some(&body),
                &[("Idempotency-Key", "checkout-1")],
            )
            .await
        }
    };
    let first = checkout(attacker.clone(), "attacker@example.com").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let theirs = checkout(victim.clone(), "victim@example.com").await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    assert_eq!(
        theirs.body["data"]["customer"]["email"],
        "victim@example.com"
    );
    assert_ne!(theirs.body["data"]["id"], first.body["data"]["id"]);
    // The victim's own retry still replays the victim's answer.
    let again = checkout(victim.clone(), "victim@example.com").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["data"]["id"], theirs.body["data"]["id"]);
}
