//! Orders as an administrator manages them (issue 13 item 5): details set through `PUT
//! /v2/orders/{id}` alone or with a ship or cancel (all or nothing), `meta.display_price`
//! with `paid`, `authorized` and `balance_owing`, and the order list's filters, sort and
//! `include=items`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{Reply, TestApp};

crate::on_both_backends!(
    order_details_are_set_cleared_and_validated,
    details_with_a_ship_or_cancel_apply_together_or_not_at_all,
    display_price_shows_paid_authorized_and_balance_owing,
    the_order_list_filters_as_elastic_path_documents,
    the_order_list_sorts_and_includes_items,
    bad_order_list_queries_are_refused_with_400,
);

async fn put_order(app: &TestApp, order: &str, data: Value) -> Reply {
    app.admin(
        Method::PUT,
        &format!("/v2/orders/{order}"),
        Some(json!({ "data": data })),
    )
    .await
}

async fn get_order(app: &TestApp, order: &str) -> Value {
    let r = app
        .admin(Method::GET, &format!("/v2/orders/{order}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["data"].clone()
}

/// Checks out a cart of `product` × `quantity` for this customer, shipped to `postcode`.
async fn order_for(
    app: &TestApp,
    cart: &str,
    (product, quantity): (&str, u64),
    (name, email, postcode): (&str, &str, Value),
) -> String {
    let r = app.add_to_cart(cart, product, quantity).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let address = json!({"first_name": "A", "last_name": "B", "line_1": "1 Street",
                         "postcode": postcode, "country": "GB"});
    let r = app
        .shopper(
            Method::POST,
            &format!("/v2/carts/{cart}/checkout"),
            Some(json!({"data": {"customer": {"name": name, "email": email},
                                 "billing_address": address}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["data"]["id"].as_str().expect("order id").to_owned()
}

/// The ids of the orders a list query answers, in order.
async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let r = app
        .admin(Method::GET, &format!("/v2/orders?{query}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    let ids: Vec<String> = r.body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        r.body["meta"]["results"]["total"],
        ids.len() as u64,
        "{query}: the total counts the same orders"
    );
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn order_details_are_set_cleared_and_validated(app: TestApp) {
    app.create_product("p", "P", 100).await;
    let order = app.order_of("c", &[("p", 1)]).await;
    let before = get_order(&app, &order).await;
    assert!(before.get("external_ref").is_none(), "{before}");

    let address = json!({"first_name": "Grace", "last_name": "Hopper", "line_1": "2 Road",
                         "postcode": "10001", "country": "US"});
    let r = put_order(
        &app,
        &order,
        json!({"type": "order", "order_number": "SO-1001", "external_ref": "erp 77/x",
               "shipping_address": address}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let shown = get_order(&app, &order).await;
    assert_eq!(shown["order_number"], "SO-1001");
    assert_eq!(shown["external_ref"], "erp 77/x");
    assert_eq!(shown["shipping_address"], address);
    assert_eq!(shown["status"], "incomplete", "only the details changed");
    assert_eq!(shown["payment"], "unpaid");

    // 64 characters is the limit; 65 is refused and changes nothing.
    let r = put_order(&app, &order, json!({"external_ref": "é".repeat(64)})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = put_order(&app, &order, json!({"external_ref": "x".repeat(65)})).await;
    assert_eq!(r.error_status(), 400);
    let bad: [Value; 8] = [
        json!({"order_number": ""}),
        json!({"order_number": 5}),
        json!({"external_ref": ["a"]}),
        json!({"shipping_address": "nowhere"}),
        json!({"shipping": "shipped", "external_ref": "a"}),
        json!({"status": "cancelled", "shipping": "fulfilled", "external_ref": "a"}),
        json!({"type": "cart", "external_ref": "a"}),
        json!({}),
    ];
    for body in bad {
        let r = put_order(&app, &order, body.clone()).await;
        assert_eq!(r.error_status(), 400, "{body}: {}", r.body);
    }
    let shown = get_order(&app, &order).await;
    assert_eq!(
        shown["external_ref"],
        "é".repeat(64),
        "refusals changed nothing"
    );
    assert_eq!(shown["order_number"], "SO-1001");

    // `null` clears a field; the others stay.
    let r = put_order(&app, &order, json!({"order_number": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["data"].get("order_number").is_none(), "{}", r.body);
    assert_eq!(r.body["data"]["external_ref"], "é".repeat(64));

    let r = put_order(&app, "no-such-order", json!({"external_ref": "a"})).await;
    assert_eq!(r.error_status(), 404);
    // Shoppers may not change orders.
    let r = app
        .shopper(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"external_ref": "mine"}})),
        )
        .await;
    assert_eq!(r.error_status(), 403);
    assert_eq!(
        get_order(&app, &order).await["external_ref"],
        "é".repeat(64)
    );
}

async fn details_with_a_ship_or_cancel_apply_together_or_not_at_all(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c1", &[("p", 3)]).await;

    // Unpaid: the ship is refused, so the details are not written either.
    let r = put_order(
        &app,
        &order,
        json!({"shipping": "fulfilled", "external_ref": "ERP-1", "order_number": "N-1"}),
    )
    .await;
    assert_eq!(r.error_status(), 409);
    let shown = get_order(&app, &order).await;
    assert!(shown.get("external_ref").is_none(), "{shown}");
    assert!(shown.get("order_number").is_none(), "{shown}");
    assert_eq!(shown["shipping"], "unfulfilled");

    let r = app.pay(&order, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let history = app.history_count("p", None).await;
    let address = json!({"line_1": "3 Lane", "postcode": "75001", "country": "FR"});
    let r = put_order(
        &app,
        &order,
        json!({"shipping": "fulfilled", "external_ref": "ERP-1", "shipping_address": address}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["shipping"], "fulfilled");
    assert_eq!(r.body["data"]["external_ref"], "ERP-1");
    assert_eq!(r.body["data"]["shipping_address"], address);
    assert_eq!(app.figures("p").await, (7, 0, 7), "three units shipped");
    assert_eq!(
        app.history_count("p", None).await,
        history + 1,
        "one ship entry"
    );
    assert_eq!(
        app.order_entries("p", &order).await,
        vec![("allocate".to_owned(), 3), ("ship".to_owned(), 3)]
    );

    // Shipped: the address can no longer change, and a refusal writes nothing else either.
    let r = put_order(
        &app,
        &order,
        json!({"shipping_address": {"line_1": "elsewhere"}, "external_ref": "ERP-2"}),
    )
    .await;
    assert_eq!(r.error_status(), 409);
    let shown = get_order(&app, &order).await;
    assert_eq!(shown["shipping_address"], address);
    assert_eq!(shown["external_ref"], "ERP-1");
    // A reference may still be set on a shipped order.
    let r = put_order(&app, &order, json!({"external_ref": "ERP-2"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Cancel with a number: the allocation is released once, the number set.
    let other = app.order_of("c2", &[("p", 2)]).await;
    let r = app.pay(&other, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("p").await, (7, 2, 5));
    let r = put_order(
        &app,
        &other,
        json!({"status": "cancelled", "order_number": "N-2"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["status"], "cancelled");
    assert_eq!(r.body["data"]["order_number"], "N-2");
    assert_eq!(app.figures("p").await, (7, 0, 7), "released");
    assert_eq!(
        app.order_entries("p", &other).await,
        vec![("allocate".to_owned(), 2), ("deallocate".to_owned(), 2)]
    );
    // Cancelling again is refused: the number does not change with it.
    let r = put_order(
        &app,
        &other,
        json!({"status": "cancelled", "order_number": "N-3"}),
    )
    .await;
    assert_eq!(r.error_status(), 409);
    assert_eq!(get_order(&app, &other).await["order_number"], "N-2");
    assert_eq!(app.order_entries("p", &other).await.len(), 2);
    app.verify_ok().await;
}

/// `(paid, authorized, balance_owing)` of an order, with `with_tax` checked on the way.
async fn money_of(app: &TestApp, order: &str) -> (i64, i64, i64) {
    let shown = get_order(app, order).await;
    let price = &shown["meta"]["display_price"];
    assert_eq!(price["with_tax"]["amount"], 300, "{price}");
    assert_eq!(price["without_tax"]["amount"], 300, "{price}");
    let amount = |k: &str| {
        assert_eq!(price[k]["currency"], "USD", "{price}");
        assert!(price[k]["formatted"].is_string(), "{price}");
        price[k]["amount"].as_i64().expect("an amount")
    };
    (
        amount("paid"),
        amount("authorized"),
        amount("balance_owing"),
    )
}

async fn display_price_shows_paid_authorized_and_balance_owing(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_stock("p", 10).await;
    let order = app.order_of("c1", &[("p", 3)]).await;
    assert_eq!(money_of(&app, &order).await, (0, 0, 300), "unpaid");
    let r = app.pay(&order, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let authorization = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(money_of(&app, &order).await, (0, 300, 0), "authorized");
    let r = app
        .admin(
            Method::POST,
            &format!("/v2/orders/{order}/transactions/{authorization}/capture"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let capture = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(money_of(&app, &order).await, (300, 0, 0), "captured");
    let r = app
        .admin(
            Method::POST,
            &format!("/v2/orders/{order}/transactions/{capture}/refund"),
            Some(json!({"data": {"amount": 120}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(money_of(&app, &order).await, (180, 0, 0), "partly refunded");

    // A voided authorization leaves the whole total owing again.
    let voided = app.order_of("c2", &[("p", 3)]).await;
    let r = app.pay(&voided, "manual", "authorize").await;
    let authorization = r.body["data"]["id"].as_str().expect("id").to_owned();
    let r = app
        .admin(
            Method::POST,
            &format!("/v2/orders/{voided}/transactions/{authorization}/cancel"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(money_of(&app, &voided).await, (0, 0, 300), "voided");

    // A purchase pays at once; the list shows the same figures.
    let bought = app.order_of("c3", &[("p", 3)]).await;
    let r = app.pay(&bought, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(money_of(&app, &bought).await, (300, 0, 0), "purchased");
    let r = app.admin(Method::GET, "/v2/orders", None).await;
    let listed = r.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .find(|o| o["id"] == bought.as_str())
        .expect("listed")
        .clone();
    assert_eq!(listed["meta"]["display_price"]["paid"]["amount"], 300);
    assert_eq!(
        listed["meta"]["display_price"]["balance_owing"]["amount"],
        0
    );
}

async fn the_order_list_filters_as_elastic_path_documents(app: TestApp) {
    app.create_product("p", "P-SKU", 100).await;
    app.create_product("q", "Q-SKU", 250).await;
    app.create_stock("p", 50).await;
    // A minute apart, all on one day (the test clock starts at 2027-01-15T08:00:00Z).
    let ada = order_for(
        &app,
        "c1",
        ("p", 1),
        ("Ada Lovelace", "ada@example.com", json!("N1 1AA")),
    )
    .await;
    app.clock.advance_secs(60);
    let bob = order_for(
        &app,
        "c2",
        ("q", 2),
        ("Bob Smith", "bob@shop.test", json!(10001)),
    )
    .await;
    app.clock.advance_secs(60);
    let cy = order_for(
        &app,
        "c3",
        ("p", 3),
        ("Cy Young", "cy@shop.test", json!("N1 9ZZ")),
    )
    .await;
    let r = app.pay(&ada, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.pay(&cy, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = put_order(
        &app,
        &bob,
        json!({"external_ref": "ERP-16be", "order_number": "7"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let all = sorted(vec![ada.clone(), bob.clone(), cy.clone()]);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("filter=eq(payment,paid)", vec![ada.clone()]),
        ("filter=eq(payment,authorized)", vec![cy.clone()]),
        ("filter=eq(status,complete)", vec![ada.clone()]),
        ("filter=eq(shipping,unfulfilled)", all.clone()),
        ("filter=eq(email,bob@shop.test)", vec![bob.clone()]),
        (
            "filter=like(email,*@shop.test)",
            sorted(vec![bob.clone(), cy.clone()]),
        ),
        ("filter=like(name,ADA*)", vec![ada.clone()]),
        ("filter=eq(name,Ada)", vec![]),
        ("filter=like(external_ref,16be*)", vec![]),
        ("filter=like(external_ref,*16be)", vec![bob.clone()]),
        ("filter=eq(order_number,7)", vec![bob.clone()]),
        (
            "filter=like(billing_postcode,N1*)",
            sorted(vec![ada.clone(), cy.clone()]),
        ),
        // Bob's postcode was sent as a number: it matches as text.
        ("filter=eq(shipping_postcode,10001)", vec![bob.clone()]),
        ("filter=like(shipping_postcode,100*)", vec![bob.clone()]),
        (
            "filter=ge(with_tax,300)",
            sorted(vec![bob.clone(), cy.clone()]),
        ),
        ("filter=lt(without_tax,300)", vec![ada.clone()]),
        ("filter=eq(with_tax,500)", vec![bob.clone()]),
        ("filter=eq(currency,USD)", all.clone()),
        ("filter=eq(currency,EUR)", vec![]),
        (
            "filter=eq(product_id,p)",
            sorted(vec![ada.clone(), cy.clone()]),
        ),
        ("filter=eq(product_sku,Q-SKU)", vec![bob.clone()]),
        // Terms combine: all must hold.
        (
            "filter=like(email,*@shop.test):eq(product_id,p)",
            vec![cy.clone()],
        ),
        // `%` and `_` are plain characters in a `like` value.
        ("filter=like(email,%25)", vec![]),
        ("filter=like(email,ada_example.com)", vec![]),
    ];
    for (query, expected) in cases {
        assert_eq!(sorted(listed(&app, query).await), expected, "{query}");
    }

    // Time terms: an instant splits the orders; a date stands for its whole day.
    let at = get_order(&app, &bob).await["meta"]["timestamps"]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    let time_cases = [
        ("ge", sorted(vec![bob.clone(), cy.clone()])),
        ("gt", vec![cy.clone()]),
        ("lt", vec![ada.clone()]),
        ("le", sorted(vec![ada.clone(), bob.clone()])),
        ("eq", vec![bob.clone()]),
    ];
    for (op, expected) in time_cases {
        let query = format!("filter={op}(created_at,{at})");
        assert_eq!(sorted(listed(&app, &query).await), expected, "{query}");
    }
    let day = &at[..10];
    assert_eq!(
        sorted(listed(&app, &format!("filter=eq(created_at,{day})")).await),
        all
    );
    assert_eq!(
        sorted(listed(&app, &format!("filter=le(updated_at,{day})")).await),
        all
    );
    assert!(listed(&app, &format!("filter=gt(created_at,{day})"))
        .await
        .is_empty());
    assert!(listed(&app, &format!("filter=lt(created_at,{day})"))
        .await
        .is_empty());
    assert!(listed(&app, "filter=lt(created_at,2000-01-01T00:00:00Z)")
        .await
        .is_empty());

    // The filter is kept in the list's links.
    let r = app
        .admin(
            Method::GET,
            "/v2/orders?filter=eq(payment,paid)&page[limit]=1",
            None,
        )
        .await;
    let current = r.body["links"]["current"].as_str().expect("link");
    assert!(current.contains("filter=eq(payment,paid)"), "{current}");
}

async fn the_order_list_sorts_and_includes_items(app: TestApp) {
    app.create_product("p", "P", 100).await;
    app.create_product("q", "Q", 200).await;
    let mut made = Vec::new();
    for (i, cart) in ["c1", "c2", "c3"].into_iter().enumerate() {
        let r = app.add_to_cart(cart, "q", 1).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        made.push(order_for(&app, cart, ("p", i as u64 + 1), ("A", "a@b.c", json!("1"))).await);
        app.clock.advance_secs(60);
    }
    let oldest_first = made.clone();
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(
        listed(&app, "").await,
        newest_first,
        "newest first by default"
    );
    assert_eq!(listed(&app, "sort=-created_at").await, newest_first);
    assert_eq!(listed(&app, "sort=created_at").await, oldest_first);
    // The oldest order changes last: it sorts first by update, newest first.
    let r = put_order(&app, &oldest_first[0], json!({"external_ref": "touched"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(listed(&app, "sort=-updated_at").await[0], oldest_first[0]);
    assert_eq!(
        listed(&app, "sort=updated_at").await.last(),
        Some(&oldest_first[0])
    );

    // `include=items`: every item of the page's orders, related to its order.
    let r = app
        .admin(
            Method::GET,
            "/v2/orders?include=items&page[limit]=2&sort=created_at",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page: Vec<&str> = r.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(page, [oldest_first[0].as_str(), oldest_first[1].as_str()]);
    let items = r.body["included"]["items"]
        .as_array()
        .expect("included items");
    assert_eq!(items.len(), 4, "two lines in each of two orders");
    for item in items {
        let of = item["relationships"]["order"]["data"]["id"]
            .as_str()
            .expect("order");
        assert!(page.contains(&of), "{item}");
        assert_eq!(item["type"], "order_item");
    }
    let next = r.body["links"]["next"].as_str().expect("next");
    assert!(
        next.contains("sort=created_at") && next.contains("include=items"),
        "{next}"
    );
    // Without it, nothing is included.
    let r = app.admin(Method::GET, "/v2/orders", None).await;
    assert!(r.body.get("included").is_none(), "{}", r.body);
}

async fn bad_order_list_queries_are_refused_with_400(app: TestApp) {
    let long = "x".repeat(257);
    let bad = [
        "filter=eq(customer_ref,x)".to_owned(),
        "filter=gt(status,paid)".to_owned(),
        "filter=eq(payment,owing)".to_owned(),
        "filter=like(currency,US*)".to_owned(),
        "filter=eq(currency,dollars)".to_owned(),
        "filter=ge(with_tax,ten)".to_owned(),
        "filter=like(with_tax,1)".to_owned(),
        "filter=ge(created_at,yesterday)".to_owned(),
        "filter=ge(created_at,2024-13-01)".to_owned(),
        "filter=eq(email,a".to_owned(),
        format!("filter=eq(email,{long})"),
        "sort=total".to_owned(),
        "sort=--created_at".to_owned(),
        "page[limit]=0".to_owned(),
    ];
    for query in bad {
        let r = app
            .admin(Method::GET, &format!("/v2/orders?{query}"), None)
            .await;
        assert_eq!(r.error_status(), 400, "{query}: {}", r.body);
    }
    // 256 bytes is the limit.
    let r = app
        .admin(
            Method::GET,
            &format!("/v2/orders?filter=eq(email,{})", "x".repeat(256)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .admin(Method::GET, "/v2/orders/no-such-order", None)
        .await;
    assert_eq!(r.error_status(), 404);
}
