//! The HTTP API over a real server and a real database, on SQLite and on PostgreSQL.

mod support;

mod connections;
mod events;
mod events_resources;
mod flow;
mod health;
mod locations;
mod metrics;
mod orders;
mod payments;
mod security;
mod storefront;
mod webhooks_tls;
mod wire;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{TestApp, ADMIN_ID, ADMIN_SECRET, SHOPPER_ID, SHOPPER_SECRET};

on_both_backends!(
    creating_stock_answers_201_with_the_figures,
    creating_stock_twice_is_a_conflict,
    each_transaction_moves_the_figures_and_writes_one_entry,
    refused_transactions_answer_422_and_change_nothing,
    bad_inputs_are_refused_with_4xx_and_change_nothing,
    oversize_bodies_are_refused_with_413,
    unknown_products_are_not_found,
    stock_lists_are_paged,
    multiple_returns_the_records_asked_for,
    history_is_newest_first_paged_and_filtered,
    history_can_be_filtered_by_time,
    a_single_entry_can_be_read_back,
    deleting_stock_stops_managing_it,
    deleting_stock_with_allocations_is_refused,
    zero_stock_is_created_and_set_and_verifies,
    the_auth_matrix_holds_on_every_route,
    expired_tokens_are_refused,
    the_token_endpoint_checks_credentials,
    repeating_an_idempotency_key_returns_the_first_answer,
    racing_requests_with_one_idempotency_key_apply_once,
    reusing_an_idempotency_key_for_another_request_is_refused,
    sixty_four_clients_racing_for_fifty_units_get_exactly_fifty,
    percent_encoded_queries_work_like_raw_ones,
    health_and_metrics_answer,
    nul_characters_are_refused_everywhere,
    the_openapi_document_covers_every_route,
);

async fn creating_stock_answers_201_with_the_figures(app: TestApp) {
    let r = app
        .admin(
            Method::POST,
            "/v2/inventories/prod-1",
            Some(json!({"data": {"quantity": 100}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let d = &r.body["data"];
    assert_eq!(d["id"], "prod-1");
    assert_eq!(d["type"], "stock");
    assert_eq!(
        (
            d["total"].as_u64(),
            d["available"].as_u64(),
            d["allocated"].as_u64()
        ),
        (Some(100), Some(100), Some(0))
    );
    assert_eq!(app.figures("prod-1").await, (100, 0, 100));
    assert_eq!(app.history_count("prod-1", Some("create")).await, 1);
    app.verify_ok().await;
}

async fn creating_stock_twice_is_a_conflict(app: TestApp) {
    app.create_stock("p", 5).await;
    let r = app
        .admin(
            Method::POST,
            "/v2/inventories/p",
            Some(json!({"data": {"quantity": 9}})),
        )
        .await;
    assert_eq!(r.error_status(), 409);
    assert_eq!(app.figures("p").await, (5, 0, 5));
    assert_eq!(app.history_count("p", None).await, 1);
}

async fn each_transaction_moves_the_figures_and_writes_one_entry(app: TestApp) {
    app.create_stock("p", 10).await;
    let steps = [
        ("increment", 5, (15, 0, 15)),
        ("allocate", 4, (15, 4, 11)),
        ("decrement", 3, (12, 4, 8)),
        ("deallocate", 1, (12, 3, 9)),
        ("set", 20, (20, 3, 17)),
    ];
    for (i, (action, q, expected)) in steps.into_iter().enumerate() {
        let r = app.transact("p", action, q).await;
        assert_eq!(r.status, StatusCode::OK, "{action}: {}", r.body);
        let d = &r.body["data"];
        assert_eq!(d["type"], "stock-transaction");
        assert_eq!(d["action"], action);
        assert_eq!(d["product_id"], "p");
        assert_eq!(d["quantity"], q);
        assert_eq!(
            (
                d["total"].as_u64().unwrap_or(0),
                d["allocated"].as_u64().unwrap_or(0),
                d["available"].as_u64().unwrap_or(0)
            ),
            expected
        );
        assert!(d["timestamps"]["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert_eq!(app.figures("p").await, expected);
        assert_eq!(app.history_count("p", None).await, i as u64 + 2);
    }
    let r = app
        .admin(
            Method::POST,
            "/v2/inventories/p/transactions",
            Some(json!({"data": {"type": "stock-transaction", "action": "increment", "quantity": 1, "reason": "found one"}})),
        )
        .await;
    assert_eq!(r.body["data"]["reason"], "found one");
    app.verify_ok().await;
}

async fn refused_transactions_answer_422_and_change_nothing(app: TestApp) {
    app.create_stock("p", 10).await;
    assert_eq!(
        app.transact("p", "allocate", 4).await.status,
        StatusCode::OK
    );
    for (action, q) in [
        ("allocate", 7),
        ("decrement", 7),
        ("deallocate", 5),
        ("set", 3),
    ] {
        let r = app.transact("p", action, q).await;
        assert_eq!(r.error_status(), 422, "{action} {q}");
        assert_eq!(r.body["errors"][0]["title"], "Cannot complete request");
    }
    assert_eq!(app.figures("p").await, (10, 4, 6));
    assert_eq!(app.history_count("p", None).await, 2);
    app.verify_ok().await;
}

async fn bad_inputs_are_refused_with_4xx_and_change_nothing(app: TestApp) {
    app.create_stock("p", 10).await;
    let tx = |body: &str| {
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            body.to_owned(),
        )
    };
    let q = |quantity: &str| {
        tx(&format!(
            r#"{{"data":{{"type":"stock-transaction","action":"increment","quantity":{quantity}}}}}"#
        ))
    };
    let cases: Vec<(Method, &str, String, u16)> = vec![
        (tx("{not json").0, tx("").1, "{not json".into(), 400),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            "".into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            "[]".into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":[]}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"increment"}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"quantity":1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"explode","quantity":1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"ship","quantity":1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"create","quantity":1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":7,"quantity":1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"type":"order","action":"increment","quantity":1}}"#.into(),
            400,
        ),
        (q("0").0, q("0").1, q("0").2, 400),
        (q("-1").0, q("-1").1, q("-1").2, 400),
        (q("1.5").0, q("1.5").1, q("1.5").2, 400),
        (q("\"5\"").0, q("\"5\"").1, q("\"5\"").2, 400),
        (
            q("1000000000000").0,
            q("1000000000000").1,
            q("1000000000000").2,
            400,
        ),
        (q("1000000001").0, q("1000000001").1, q("1000000001").2, 400),
        (q("null").0, q("null").1, q("null").2, 400),
        (q("true").0, q("true").1, q("true").2, 400),
        (q("1e3").0, q("1e3").1, q("1e3").2, 400),
        (
            q("99999999999999999999999").0,
            q("99999999999999999999999").1,
            q("99999999999999999999999").2,
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/unknown/transactions",
            r#"{"data":{"action":"increment","quantity":1}}"#.into(),
            404,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            format!(
                r#"{{"data":{{"action":"increment","quantity":1,"reason":"{}"}}}}"#,
                "r".repeat(513)
            ),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"increment","quantity":1,"reason":5}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/q",
            r#"{"data":{"quantity":-1}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/p/transactions",
            r#"{"data":{"action":"decrement","quantity":0}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/q",
            r#"{"data":{}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/q",
            r#"{"quantity":5}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/bad%20id",
            r#"{"data":{"quantity":5}}"#.into(),
            400,
        ),
        (
            Method::POST,
            &*Box::leak(format!("/v2/inventories/{}", "x".repeat(65)).into_boxed_str()),
            r#"{"data":{"quantity":5}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/multiple",
            r#"{"data":{"id":"p"}}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/multiple",
            r#"{"data":[{"id":5}]}"#.into(),
            400,
        ),
        (
            Method::POST,
            "/v2/inventories/multiple",
            r#"{"data":["p"]}"#.into(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories?page[limit]=0",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories?page[limit]=101",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories?page[offset]=10001",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories?page[limit]=ten",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories/p/transactions?filter=eq(action,explode)",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories/p/transactions?filter=eq(colour,red)",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories/p/transactions?filter=ge(created_at,yesterday)",
            String::new(),
            400,
        ),
        (
            Method::GET,
            "/v2/inventories/p/transactions?filter=eq(action",
            String::new(),
            400,
        ),
        (Method::PATCH, "/v2/inventories/p", String::new(), 405),
        (Method::GET, "/v2/nothing-here", String::new(), 404),
    ];
    for (method, path, body, expected) in cases {
        let body = (!body.is_empty()).then_some(body.as_str());
        let r = app
            .call_raw(method.clone(), path, Some(&app.admin), body, &[])
            .await;
        assert_eq!(
            r.error_status(),
            expected,
            "{method} {path} {body:?}: {}",
            r.body
        );
    }
    let r = app
        .call_raw(
            Method::POST,
            "/v2/inventories/p/transactions",
            Some(&app.admin),
            Some(r#"{"data":{"action":"increment","quantity":1}}"#),
            &[("idempotency-key", &"k".repeat(256))],
        )
        .await;
    assert_eq!(r.error_status(), 400, "an over-long idempotency key");
    assert_eq!(app.figures("p").await, (10, 0, 10));
    assert_eq!(app.history_count("p", None).await, 1);
    let r = app.admin(Method::GET, "/v2/inventories/q", None).await;
    assert_eq!(
        r.error_status(),
        404,
        "no stock was created by a refused create"
    );
    app.verify_ok().await;
}

async fn oversize_bodies_are_refused_with_413(app: TestApp) {
    app.create_stock("p", 10).await;
    let reason = "x".repeat(70 * 1024);
    let body = format!(r#"{{"data":{{"action":"increment","quantity":1,"reason":"{reason}"}}}}"#);
    // The server answers 413 from the Content-Length alone and closes the connection; a client
    // still sending the body when the close arrives sees a reset instead of the answer (a race
    // on a loaded machine), so it asks again until it reads the answer.
    let mut answer = None;
    for _ in 0..50 {
        let sent = app
            .try_call_raw(
                Method::POST,
                "/v2/inventories/p/transactions",
                Some(&app.admin),
                Some(&body),
                &[],
            )
            .await;
        if let Ok(r) = sent {
            answer = Some(r);
            break;
        }
    }
    assert_eq!(answer.expect("an answer").error_status(), 413);
    // Without a Content-Length header too (chunked), the limit still holds. The server answers
    // 413 as soon as the limit is passed and closes the connection, so the client may see the
    // answer or, if it is still sending, a reset: either way nothing was accepted.
    let stream = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    // A client of its own: the connection the server closes must not go back to the pool the
    // next request takes its connection from.
    let sent = reqwest::Client::new()
        .post(format!("{}/v2/inventories/p/transactions", app.base))
        .bearer_auth(&app.admin)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Ok(r) = sent {
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert_eq!(app.figures("p").await, (10, 0, 10));
}

async fn unknown_products_are_not_found(app: TestApp) {
    for (method, path) in [
        (Method::GET, "/v2/inventories/nope"),
        (Method::DELETE, "/v2/inventories/nope"),
        (Method::GET, "/v2/inventories/nope/transactions"),
        (Method::GET, "/v2/inventories/nope/transactions/nope"),
        (Method::GET, "/v2/inventories/bad%20id"),
    ] {
        let r = app.admin(method.clone(), path, None).await;
        assert_eq!(r.error_status(), 404, "{method} {path}");
        assert_eq!(r.body["errors"][0]["title"], "Not Found");
    }
}

async fn stock_lists_are_paged(app: TestApp) {
    for i in 0..7 {
        app.create_stock(&format!("p{i}"), i + 1).await;
    }
    let r = app.admin(Method::GET, "/v2/inventories", None).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(7));
    assert_eq!(r.body["meta"]["results"]["total"], 7);
    let r = app
        .admin(
            Method::GET,
            "/v2/inventories?page[limit]=3&page[offset]=3",
            None,
        )
        .await;
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["p3", "p4", "p5"]);
    assert_eq!(r.body["meta"]["page"]["current"], 2);
    assert_eq!(r.body["meta"]["page"]["total"], 3);
    assert!(r.body["links"]["next"]
        .as_str()
        .is_some_and(|l| l.contains("page[offset]=6")));
    assert!(r.body["links"]["prev"]
        .as_str()
        .is_some_and(|l| l.contains("page[offset]=0")));
    let r = app
        .call(
            Method::GET,
            "/v2/inventories?page[limit]=2",
            Some(&app.shopper),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "shoppers may read stock");
}

async fn multiple_returns_the_records_asked_for(app: TestApp) {
    app.create_stock("a", 1).await;
    app.create_stock("b", 2).await;
    let r = app
        .call(
            Method::POST,
            "/v2/inventories/multiple",
            Some(&app.shopper),
            Some(json!({"data": [{"id": "b"}, {"id": "missing"}, {"type": "stock", "id": "a"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let got: Vec<(&str, u64)> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or(""),
                s["total"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, [("b", 2), ("a", 1)]);
    let too_many: Vec<Value> = (0..101).map(|i| json!({"id": format!("x{i}")})).collect();
    let r = app
        .admin(
            Method::POST,
            "/v2/inventories/multiple",
            Some(json!({"data": too_many})),
        )
        .await;
    assert_eq!(r.error_status(), 400);
}

async fn history_is_newest_first_paged_and_filtered(app: TestApp) {
    app.create_stock("p", 10).await;
    for _ in 0..3 {
        app.transact("p", "allocate", 1).await;
        app.transact("p", "increment", 2).await;
    }
    let r = app
        .admin(Method::GET, "/v2/inventories/p/transactions", None)
        .await;
    let actions: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "increment",
            "allocate",
            "increment",
            "allocate",
            "increment",
            "allocate",
            "create"
        ]
    );
    let r = app
        .admin(
            Method::GET,
            "/v2/inventories/p/transactions?filter=eq(action,allocate)&page[limit]=2",
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["meta"]["results"]["total"], 3);
    assert!(r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|t| t["action"] == "allocate"));
    let first = r.body["data"][0]["allocated"].as_u64();
    assert_eq!(
        first,
        Some(3),
        "newest first: the last allocate left 3 allocated"
    );
    let r = app
        .admin(
            Method::GET,
            "/v2/inventories/p/transactions?page[offset]=6",
            None,
        )
        .await;
    assert_eq!(r.body["data"][0]["action"], "create");
}

async fn history_can_be_filtered_by_time(app: TestApp) {
    app.create_stock("p", 10).await; // at T
    app.clock.advance_secs(60);
    app.transact("p", "allocate", 1).await; // at T+60
    app.clock.advance_secs(60);
    app.transact("p", "allocate", 1).await; // at T+120
    let t = |secs: i64| {
        stockroom_http::wire::rfc3339(stockroom_domain::Timestamp::from_secs(1_800_000_000 + secs))
    };
    let count = |filter: String| {
        let app = &app;
        async move {
            let r = app
                .admin(
                    Method::GET,
                    &format!("/v2/inventories/p/transactions?filter={filter}"),
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{filter}: {}", r.body);
            r.body["meta"]["results"]["total"].as_u64().expect("total")
        }
    };
    assert_eq!(count(format!("ge(created_at,{})", t(60))).await, 2);
    assert_eq!(count(format!("gt(created_at,{})", t(60))).await, 1);
    assert_eq!(count(format!("lt(created_at,{})", t(60))).await, 1);
    assert_eq!(count(format!("le(created_at,{})", t(60))).await, 2);
    assert_eq!(
        count(format!("ge(created_at,{}):lt(created_at,{})", t(30), t(90))).await,
        1
    );
    assert_eq!(
        count(format!("eq(action,allocate):ge(created_at,{})", t(100))).await,
        1
    );
}

async fn a_single_entry_can_be_read_back(app: TestApp) {
    app.create_stock("p", 10).await;
    let posted = app.transact("p", "allocate", 2).await.body["data"].clone();
    let id = posted["id"].as_str().expect("id");
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/inventories/p/transactions/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"], posted);
    app.create_stock("other", 1).await;
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/inventories/other/transactions/{id}"),
            None,
        )
        .await;
    assert_eq!(
        r.error_status(),
        404,
        "an entry is found only under its own product"
    );
}

async fn deleting_stock_stops_managing_it(app: TestApp) {
    app.create_stock("p", 10).await;
    let r = app
        .call_raw(
            Method::DELETE,
            "/v2/inventories/p",
            Some(&app.admin),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    assert_eq!(
        app.admin(Method::GET, "/v2/inventories/p", None)
            .await
            .error_status(),
        404
    );
    assert_eq!(app.transact("p", "increment", 1).await.error_status(), 404);
    // It can be managed again, and the history replays through the deletion.
    app.create_stock("p", 3).await;
    assert_eq!(app.figures("p").await, (3, 0, 3));
    assert_eq!(app.history_count("p", Some("delete")).await, 1);
    app.verify_ok().await;
}

/// SPEC §1: a stock level given directly may be 0 — `create` 0 and `set` 0 write exactly one
/// entry each with quantity 0 (no phantom unit passing through), `set` 0 while units are
/// allocated is refused, and `verify` replays it all.
async fn zero_stock_is_created_and_set_and_verifies(app: TestApp) {
    app.create_stock("sold-out", 0).await;
    assert_eq!(app.figures("sold-out").await, (0, 0, 0));
    assert_eq!(app.history_count("sold-out", None).await, 1);
    let r = app
        .admin(Method::GET, "/v2/inventories/sold-out/transactions", None)
        .await;
    assert_eq!(r.body["data"][0]["action"], "create");
    assert_eq!(r.body["data"][0]["quantity"], 0);
    app.create_stock("p", 7).await;
    let r = app.transact("p", "set", 0).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["quantity"], 0);
    assert_eq!(app.figures("p").await, (0, 0, 0));
    assert_eq!(
        app.history_count("p", None).await,
        2,
        "create, set: no more"
    );
    // Setting 0 again is one more `set 0`, nothing else.
    assert_eq!(app.transact("p", "set", 0).await.status, StatusCode::OK);
    assert_eq!(app.history_count("p", Some("set")).await, 2);
    // Back up, allocate, and 0 is below what is allocated: 422, nothing changed.
    app.transact("p", "set", 5).await;
    app.transact("p", "allocate", 2).await;
    assert_eq!(app.transact("p", "set", 0).await.error_status(), 422);
    assert_eq!(app.figures("p").await, (5, 2, 3));
    assert_eq!(app.history_count("p", None).await, 5);
    // Only `set` takes 0.
    for action in ["increment", "decrement", "allocate", "deallocate"] {
        assert_eq!(
            app.transact("p", action, 0).await.error_status(),
            400,
            "{action}"
        );
    }
    assert_eq!(app.figures("p").await, (5, 2, 3));
    assert_eq!(app.history_count("p", None).await, 5);
    app.verify_ok().await;
}

async fn deleting_stock_with_allocations_is_refused(app: TestApp) {
    app.create_stock("p", 10).await;
    app.transact("p", "allocate", 1).await;
    let r = app.admin(Method::DELETE, "/v2/inventories/p", None).await;
    assert_eq!(r.error_status(), 409);
    assert_eq!(app.figures("p").await, (10, 1, 9));
}

/// Every route in the router's own table: no token, a malformed token and a forged one are
/// 401; a shopper on an administrator's route is 403; the right token gets past auth.
async fn the_auth_matrix_holds_on_every_route(app: TestApp) {
    use stockroom_http::Access;
    app.create_stock("p", 10).await;
    let tx = app.transact("p", "increment", 1).await.body["data"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let forged = {
        let mut t = app.admin.clone().into_bytes();
        let last = t.len() - 2;
        t[last] = if t[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).expect("utf8")
    };
    assert!(app.routes.len() >= 30);
    for route in &app.routes {
        let path = route
            .path
            .replace("{product}", "p")
            .replace("{transaction}", &tx);
        let m = route.method.clone();
        if route.access == Access::Public {
            continue;
        }
        for token in [None, Some("not-a-token"), Some(forged.as_str())] {
            let r = app.call_raw(m.clone(), &path, token, None, &[]).await;
            assert_eq!(r.error_status(), 401, "{m} {path} with {token:?}");
        }
        let r = app
            .call_raw(m.clone(), &path, Some(&app.shopper), None, &[])
            .await;
        match route.access {
            Access::Admin | Access::Customer => {
                assert_eq!(r.error_status(), 403, "shopper on {m} {path}")
            }
            _ => assert!(
                ![401, 403].contains(&r.status.as_u16()),
                "shopper on {m} {path}: {}",
                r.status
            ),
        }
        let r = app
            .call_raw(m.clone(), &path, Some(&app.admin), None, &[])
            .await;
        assert!(
            ![401, 403].contains(&r.status.as_u16()),
            "admin on {m} {path}: {}",
            r.status
        );
    }
    // A shopper credential gets a shopper's token even with client credentials.
    let shopper = app
        .token("client_credentials", SHOPPER_ID, Some(SHOPPER_SECRET))
        .await;
    assert_eq!(
        app.call(
            Method::POST,
            "/v2/inventories/z",
            Some(&shopper),
            Some(json!({"data": {"quantity": 1}}))
        )
        .await
        .error_status(),
        403
    );
    // Nothing refused above wrote history: the only increment is ours.
    assert_eq!(app.history_count("p", Some("increment")).await, 1);
    assert_eq!(
        app.admin(Method::GET, "/v2/inventories/z", None)
            .await
            .error_status(),
        404
    );
}

async fn expired_tokens_are_refused(app: TestApp) {
    let r = app
        .call(Method::GET, "/v2/inventories", Some(&app.admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    app.clock.advance_secs(3599);
    assert_eq!(
        app.call(Method::GET, "/v2/inventories", Some(&app.admin), None)
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance_secs(1);
    let r = app
        .call(Method::GET, "/v2/inventories", Some(&app.admin), None)
        .await;
    assert_eq!(r.error_status(), 401);
    let r = app
        .call(Method::GET, "/v2/inventories", Some(&app.shopper), None)
        .await;
    assert_eq!(r.error_status(), 401);
}

async fn the_token_endpoint_checks_credentials(app: TestApp) {
    let url = format!("{}/oauth/access_token", app.base);
    let now = 1_800_000_000;
    let r = app
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_ID),
            ("client_secret", ADMIN_SECRET),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["identifier"], "client_credentials");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["expires"], now + 3600);
    assert!(body.get("data").is_none(), "flat, no envelope");
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 40));
    let r = app
        .http
        .post(&url)
        .form(&[("grant_type", "implicit"), ("client_id", ADMIN_ID)])
        .send()
        .await
        .expect("send");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["identifier"], "implicit");
    // The docs' curl examples say JSON but send a form: both work.
    let r = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(format!(
            "grant_type=client_credentials&client_id={ADMIN_ID}&client_secret={ADMIN_SECRET}"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let r = app.http.post(&url).json(&json!({"grant_type": "client_credentials", "client_id": ADMIN_ID, "client_secret": ADMIN_SECRET})).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    for (form, status) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_ID),
                ("client_secret", "wrong"),
            ],
            401,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", ADMIN_SECRET),
            ],
            401,
        ),
        (
            vec![("grant_type", "implicit"), ("client_id", "nobody")],
            401,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_ID),
            ],
            400,
        ),
        (
            vec![("grant_type", "password"), ("client_id", ADMIN_ID)],
            400,
        ),
        (vec![("client_id", ADMIN_ID)], 400),
    ] {
        let r = app.http.post(&url).form(&form).send().await.expect("send");
        assert_eq!(r.status().as_u16(), status, "{form:?}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["status"], status);
    }
}

async fn repeating_an_idempotency_key_returns_the_first_answer(app: TestApp) {
    app.create_stock("p", 10).await;
    let body = r#"{"data":{"type":"stock-transaction","action":"allocate","quantity":3}}"#;
    let send = |key: &'static str, body: &'static str| {
        let app = &app;
        async move {
            app.call_raw(
                Method::POST,
                "/v2/inventories/p/transactions",
                Some(&app.admin),
                Some(body),
                &[("Idempotency-Key", key)],
            )
            .await
        }
    };
    let first = send("key-1", body).await;
    assert_eq!(first.status, StatusCode::OK);
    // The same request with other spacing is the same request.
    let again = send("key-1", "{\n        \"data\": {\"type\":\"stock-transaction\",\"action\":\"allocate\",\"quantity\":3}\n      }").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "the first answer, byte for byte");
    assert_eq!(app.figures("p").await, (10, 3, 7));
    // The same product spelled with percent-escapes is the same route: the key replays.
    let escaped = app
        .call_raw(
            Method::POST,
            "/v2/inventories/%70/transactions",
            Some(&app.admin),
            Some(body),
            &[("Idempotency-Key", "key-1")],
        )
        .await;
    assert_eq!(escaped.status, StatusCode::OK);
    assert_eq!(escaped.body, first.body, "replayed, not applied again");
    assert_eq!(app.figures("p").await, (10, 3, 7));
    // A refusal is an answer too: it is replayed even once stock would allow it.
    let big = r#"{"data":{"type":"stock-transaction","action":"allocate","quantity":8}}"#;
    assert_eq!(send("key-2", big).await.error_status(), 422);
    app.transact("p", "increment", 10).await;
    assert_eq!(send("key-2", big).await.error_status(), 422);
    assert_eq!(app.figures("p").await, (20, 3, 17));
    // Keys are scoped to the route: the same key on create is a different key.
    let r = app
        .call_raw(
            Method::POST,
            "/v2/inventories/q",
            Some(&app.admin),
            Some(r#"{"data":{"quantity":4}}"#),
            &[("Idempotency-Key", "key-1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r2 = app
        .call_raw(
            Method::POST,
            "/v2/inventories/q",
            Some(&app.admin),
            Some(r#"{"data":{"quantity":4}}"#),
            &[("Idempotency-Key", "key-1")],
        )
        .await;
    assert_eq!(
        r2.status,
        StatusCode::CREATED,
        "a retried create gets its first answer, not 409"
    );
    assert_eq!(r2.body, r.body);
    assert_eq!(app.history_count("p", Some("allocate")).await, 1);
    app.verify_ok().await;
}

async fn racing_requests_with_one_idempotency_key_apply_once(app: TestApp) {
    app.create_stock("p", 100).await;
    let app = Arc::new(app);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.call_raw(
                    Method::POST,
                    "/v2/inventories/p/transactions",
                    Some(&app.admin),
                    Some(r#"{"data":{"action":"allocate","quantity":1}}"#),
                    &[("Idempotency-Key", "same")],
                )
                .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, StatusCode::OK);
        ids.insert(r.body["data"]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1, "every racer got the one answer");
    assert_eq!(app.figures("p").await, (100, 1, 99));
    assert_eq!(app.history_count("p", Some("allocate")).await, 1);
}

async fn reusing_an_idempotency_key_for_another_request_is_refused(app: TestApp) {
    app.create_stock("p", 10).await;
    let send = |q: u64| {
        let app = &app;
        async move {
            app.call_raw(
                Method::POST,
                "/v2/inventories/p/transactions",
                Some(&app.admin),
                Some(&format!(
                    r#"{{"data":{{"action":"allocate","quantity":{q}}}}}"#
                )),
                &[("Idempotency-Key", "k")],
            )
            .await
        }
    };
    assert_eq!(send(1).await.status, StatusCode::OK);
    let r = send(2).await;
    assert_eq!(r.error_status(), 422);
    assert_eq!(r.body["errors"][0]["title"], "Idempotency key reused");
    assert_eq!(app.figures("p").await, (10, 1, 9));
}

async fn sixty_four_clients_racing_for_fifty_units_get_exactly_fifty(app: TestApp) {
    app.create_stock("hot", 50).await;
    let app = Arc::new(app);
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.transact("hot", "allocate", 1).await.status
            })
        })
        .collect();
    let mut won = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            StatusCode::OK => won += 1,
            StatusCode::UNPROCESSABLE_ENTITY => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((won, refused), (50, 14));
    assert_eq!(app.figures("hot").await, (50, 50, 0));
    assert_eq!(app.history_count("hot", Some("allocate")).await, 50);
    app.verify_ok().await;
}

async fn percent_encoded_queries_work_like_raw_ones(app: TestApp) {
    for i in 0..3 {
        app.create_stock(&format!("p{i}"), 1).await;
    }
    let raw = app
        .admin(
            Method::GET,
            "/v2/inventories?page[limit]=2&page[offset]=1",
            None,
        )
        .await;
    let encoded = app
        .admin(
            Method::GET,
            "/v2/inventories?page%5Blimit%5D=2&page%5Boffset%5D=1",
            None,
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body["data"], encoded.body["data"]);
    assert_eq!(raw.body["data"].as_array().map(Vec::len), Some(2));
    let r = app
        .admin(
            Method::GET,
            "/v2/inventories/p0/transactions?filter=eq%28action%2Ccreate%29",
            None,
        )
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 1);
}

async fn health_and_metrics_answer(app: TestApp) {
    // `/health` is readiness, as `/health/ready`; `/health/live` does not ask the database.
    for path in ["/health", "/health/ready", "/health/live"] {
        let r = app.call(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.body["status"], "ok", "{path}");
    }
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.admin)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("stockroom_http_responses_total{code=\"200\"}"),
        "{text}"
    );
}

async fn the_openapi_document_covers_every_route(app: TestApp) {
    // Public: no token needed.
    let r = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let doc = &r.body;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "openapi: {}",
        doc["openapi"]
    );
    let errors_ref = "#/components/schemas/Errors";
    assert!(doc["components"]["schemas"]["Errors"]["properties"]["errors"].is_object());
    assert!(!app.routes.is_empty());
    for route in &app.routes {
        let method = route.method.as_str().to_ascii_lowercase();
        // axum 0.8 and OpenAPI both write path parameters as `{name}`.
        let op = &doc["paths"][route.path][&method];
        assert!(
            op.is_object(),
            "{} {} is not in the document",
            route.method,
            route.path
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {}: a success answer",
            route.path
        );
        for (status, response) in responses {
            if status.starts_with('2') {
                continue;
            }
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"], errors_ref,
                "{method} {} {status} must carry the errors body",
                route.path
            );
        }
        let expect_auth = route.access != stockroom_http::Access::Public;
        assert_eq!(
            responses.contains_key("401"),
            expect_auth || route.path == "/oauth/access_token",
            "{method} {}",
            route.path
        );
        assert_eq!(
            responses.contains_key("403"),
            matches!(
                route.access,
                stockroom_http::Access::Admin | stockroom_http::Access::Customer
            ),
            "{method} {}",
            route.path
        );
        assert!(responses.contains_key("503"), "{method} {}", route.path);
    }
    // Nothing documented that the server does not route.
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(documented, app.routes.len());
    // The document is served the same way every time.
    let again = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(&again.body, doc);
}

/// PostgreSQL cannot store NUL in text; no field needs it. Refused as 400 everywhere, on both
/// backends alike.
async fn nul_characters_are_refused_everywhere(app: TestApp) {
    app.create_stock("p", 1).await;
    for path in [
        "/v2/orders/a%00b",
        "/v2/products/a%00b",
        "/v2/inventories/p/transactions/a%00b",
        "/v2/inventories?filter=eq(locations,a%00)",
    ] {
        let r = app.admin(Method::GET, path, None).await;
        assert_eq!(r.error_status(), 400, "{path}");
    }
    let r = app
        .admin(
            Method::POST,
            "/v2/inventories/p/transactions",
            Some(json!({"data": {"action": "increment", "quantity": 1, "reason": "a\u{0}b"}})),
        )
        .await;
    assert_eq!(r.error_status(), 400);
    let r = app
        .http
        .post(format!("{}/oauth/access_token", app.base))
        .body("grant_type=implicit&client_id=a%00")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.figures("p").await, (1, 0, 1));
}
