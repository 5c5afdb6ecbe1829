//! The storefront's calls (issue 13): carts as resources — created, named, read with their
//! items, emptied, updated in bulk, purged when idle.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{Reply, TestApp, ADMIN_ID};

crate::on_both_backends!(
    a_cart_is_created_named_and_read_with_its_items,
    emptying_a_cart_keeps_it_and_unknown_carts_are_not_found,
    bulk_item_updates_are_all_or_nothing,
    idle_carts_are_purged_after_the_expiry,
    custom_items_are_sold_beside_products_and_never_stock_managed,
    legacy_flat_products_are_created_and_show_their_stock,
    customers_sign_in_and_see_only_their_own_carts_and_orders,
    architecture_lists_every_route_with_who_may_call_it,
);

impl TestApp {
    /// A call with a shopper's token and a customer token.
    async fn as_customer(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let raw = body.map(|b| b.to_string());
        let header = ("X-Moltin-Customer-Token", token);
        self.call_raw(method, path, Some(&self.shopper), raw.as_deref(), &[header])
            .await
    }

    /// A new customer's id and customer token.
    async fn customer(&self, name: &str, email: &str, password: &str) -> (String, String) {
        let body = json!({"data": {"type": "customer", "name": name, "email": email,
                                   "password": password}});
        let r = self
            .shopper(Method::POST, "/v2/customers", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        assert_eq!(r.body["data"]["password"], true);
        assert!(r.body["data"].get("password_hash").is_none());
        let id = r.body["data"]["id"].as_str().expect("id").to_owned();
        let body = json!({"data": {"type": "token", "email": email, "password": password,
                                   "authentication_mechanism": "password"}});
        let r = self
            .shopper(Method::POST, "/v2/customers/tokens", Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["data"]["customer_id"], id.as_str());
        (
            id,
            r.body["data"]["token"].as_str().expect("token").to_owned(),
        )
    }

    /// (product id, quantity) of each item of a cart, and the items' ids by product.
    async fn cart_lines(&self, cart: &str) -> (Vec<(String, u64)>, Vec<(String, String)>) {
        let r = self
            .shopper(Method::GET, &format!("/v2/carts/{cart}/items"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let items = r.body["data"].as_array().cloned().unwrap_or_default();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut lines: Vec<(String, u64)> = items
            .iter()
            .map(|i| (text(&i["product_id"]), i["quantity"].as_u64().unwrap_or(0)))
            .collect();
        lines.sort();
        let ids = items
            .iter()
            .map(|i| (text(&i["product_id"]), text(&i["id"])))
            .collect();
        (lines, ids)
    }
}

fn lines(l: &[(&str, u64)]) -> Vec<(String, u64)> {
    l.iter().map(|(p, q)| ((*p).to_owned(), *q)).collect()
}

async fn a_cart_is_created_named_and_read_with_its_items(app: TestApp) {
    app.create_product("mug", "MUG-1", 1299).await;
    app.create_stock("mug", 10).await;
    let body = json!({"data": {"name": "Bob's cart", "description": "For holidays",
                               "discount_settings": {"custom_discounts_enabled": true}}});
    let r = app.shopper(Method::POST, "/v2/carts", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let d = &r.body["data"];
    let id = d["id"].as_str().expect("an id").to_owned();
    assert_eq!(id.len(), 36, "a generated UUID");
    assert_eq!(
        (&d["type"], &d["name"], &d["description"]),
        (&json!("cart"), &json!("Bob's cart"), &json!("For holidays"))
    );
    let meta = &d["meta"];
    for price in [
        "with_tax",
        "without_tax",
        "tax",
        "discount",
        "without_discount",
        "shipping",
    ] {
        assert_eq!(meta["display_price"][price]["amount"], 0, "{price}");
    }
    assert_eq!(meta["timestamps"]["created_at"], "2027-01-15T08:00:00Z");
    assert_eq!(meta["timestamps"]["expires_at"], "2027-01-22T08:00:00Z");
    assert!(r.body.get("included").is_none());
    // Items, then the cart with include=items (Elastic Path's `included.items`).
    app.clock.advance_secs(60);
    assert_eq!(app.add_to_cart(&id, "mug", 2).await.status, StatusCode::OK);
    let r = app
        .shopper(Method::GET, &format!("/v2/carts/{id}?include=items"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["included"]["items"]
        .as_array()
        .expect("included.items");
    assert_eq!(items.len(), 1);
    assert_eq!(
        (&items[0]["product_id"], &items[0]["quantity"]),
        (&json!("mug"), &json!(2))
    );
    assert_eq!(
        r.body["data"]["relationships"]["items"]["data"][0]["id"],
        items[0]["id"]
    );
    let meta = &r.body["data"]["meta"];
    assert_eq!(meta["display_price"]["with_tax"]["amount"], 2598);
    assert_eq!(meta["display_price"]["without_discount"]["amount"], 2598);
    assert_eq!(meta["timestamps"]["updated_at"], "2027-01-15T08:01:00Z");
    assert_eq!(
        meta["timestamps"]["expires_at"], "2027-01-22T08:01:00Z",
        "activity moves it"
    );
    // Rename: the description is kept.
    let path = format!("/v2/carts/{id}");
    let r = app
        .shopper(
            Method::PUT,
            &path,
            Some(json!({"data": {"name": "Renamed"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (&r.body["data"]["name"], &r.body["data"]["description"]),
        (&json!("Renamed"), &json!("For holidays"))
    );
    // Bad names are 400 and change nothing; an unknown cart is 404.
    for bad in [
        json!(""),
        json!("x".repeat(256)),
        json!(7),
        json!("a\u{0}b"),
    ] {
        let r = app
            .shopper(Method::PUT, &path, Some(json!({"data": {"name": bad}})))
            .await;
        assert_eq!(r.error_status(), 400, "{bad}");
    }
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts",
            Some(json!({"data": {"name": ""}})),
        )
        .await;
    assert_eq!(r.error_status(), 400);
    let r = app
        .shopper(
            Method::PUT,
            "/v2/carts/no-such-cart",
            Some(json!({"data": {"name": "x"}})),
        )
        .await;
    assert_eq!(r.error_status(), 404);
    let r = app.shopper(Method::GET, &path, None).await;
    assert_eq!(r.body["data"]["name"], "Renamed");
    // A cart made by its first item is named as Elastic Path names it.
    app.add_to_cart("by-item", "mug", 1).await;
    let r = app.shopper(Method::GET, "/v2/carts/by-item", None).await;
    assert_eq!(
        (&r.body["data"]["name"], &r.body["data"]["description"]),
        (&json!("Cart"), &json!(""))
    );
}

async fn emptying_a_cart_keeps_it_and_unknown_carts_are_not_found(app: TestApp) {
    app.create_product("mug", "MUG-1", 1299).await;
    app.create_product("pan", "PAN-1", 500).await;
    app.create_stock("mug", 10).await;
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts",
            Some(json!({"data": {"name": "Mine"}})),
        )
        .await;
    let id = r.body["data"]["id"].as_str().expect("id").to_owned();
    app.add_to_cart(&id, "mug", 2).await;
    app.add_to_cart(&id, "pan", 1).await;
    let r = app
        .shopper(Method::DELETE, &format!("/v2/carts/{id}/items"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(r.body["meta"]["display_price"]["with_tax"]["amount"], 0);
    let r = app
        .shopper(Method::GET, &format!("/v2/carts/{id}"), None)
        .await;
    assert_eq!(r.body["data"]["name"], "Mine", "the cart is kept");
    assert_eq!(
        app.checkout(&id).await.error_status(),
        400,
        "nothing to check out"
    );
    assert_eq!(app.add_to_cart(&id, "mug", 1).await.status, StatusCode::OK);
    assert_eq!(app.cart_lines(&id).await.0, lines(&[("mug", 1)]));
    let r = app
        .shopper(Method::DELETE, "/v2/carts/no-such-cart/items", None)
        .await;
    assert_eq!(r.error_status(), 404);
    assert_eq!(
        app.figures("mug").await,
        (10, 0, 10),
        "carts reserve nothing"
    );
}

async fn bulk_item_updates_are_all_or_nothing(app: TestApp) {
    app.create_product("mug", "MUG-1", 1000).await;
    app.create_product("pan", "PAN-1", 500).await;
    app.create_product("lamp", "LAMP-1", 100).await;
    app.create_stock("mug", 5).await;
    app.create_stock("pan", 2).await;
    for p in ["mug", "pan", "lamp"] {
        assert_eq!(app.add_to_cart("c", p, 1).await.status, StatusCode::OK);
    }
    let (before, ids) = app.cart_lines("c").await;
    let id = |p: &str| {
        ids.iter()
            .find(|(q, _)| q == p)
            .map(|(_, i)| i.clone())
            .expect("id")
    };
    let (mug, pan, lamp) = (id("mug"), id("pan"), id("lamp"));
    let put = |body: Value| app.shopper(Method::PUT, "/v2/carts/c/items", Some(body));
    // One item over its stock: 400 Insufficient stock, nothing changed.
    let r = put(
        json!({"data": [{"type": "cart_item", "id": mug, "quantity": 5},
                                {"type": "cart_item", "id": pan, "quantity": 3}],
                       "options": {"update_all_or_nothing": true}}),
    )
    .await;
    assert_eq!(r.error_status(), 400);
    assert_eq!(r.body["errors"][0]["title"], "Insufficient stock");
    assert_eq!(app.cart_lines("c").await.0, before);
    // An unknown item: 404, nothing changed.
    let r = put(json!({"data": [{"id": mug, "quantity": 2}, {"id": "nope", "quantity": 1}]})).await;
    assert_eq!(r.error_status(), 404);
    // Malformed: 400, nothing changed.
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"id": mug, "quantity": 1}))
        .collect();
    for bad in [
        json!({"data": []}),
        json!({"data": {"id": mug, "quantity": 1}}),
        json!({"data": [{"id": mug, "quantity": -1}]}),
        json!({"data": [{"id": mug, "quantity": 1.5}]}),
        json!({"data": [{"id": mug}]}),
        json!({"data": [{"id": mug, "quantity": 1}, {"id": mug, "quantity": 2}]}),
        json!({"data": many}),
    ] {
        assert_eq!(put(bad.clone()).await.error_status(), 400, "{bad}");
    }
    assert_eq!(app.cart_lines("c").await.0, before);
    // All at once: 5 mugs (all there are), no pan (0 removes), 7 lamps (not stock-managed).
    let r = put(
        json!({"data": [{"id": mug, "quantity": 5}, {"id": pan, "quantity": 0},
                                {"id": lamp, "quantity": 7}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(r.body["meta"]["display_price"]["with_tax"]["amount"], 5700);
    assert_eq!(
        app.cart_lines("c").await.0,
        lines(&[("lamp", 7), ("mug", 5)])
    );
    let r = app
        .shopper(
            Method::PUT,
            "/v2/carts/no-such-cart/items",
            Some(json!({"data": [{"id": mug, "quantity": 1}]})),
        )
        .await;
    assert_eq!(r.error_status(), 404);
    assert_eq!(app.figures("mug").await, (5, 0, 5));
    app.verify_ok().await;
}

async fn idle_carts_are_purged_after_the_expiry(mut app: TestApp) {
    app.create_product("mug", "MUG-1", 1000).await;
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts",
            Some(json!({"data": {"name": "Idle"}})),
        )
        .await;
    let idle = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.add_to_cart(&idle, "mug", 1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.add_to_cart("busy", "mug", 1).await.status,
        StatusCode::OK
    );
    app.clock.advance_secs(6 * 24 * 3600);
    app.shopper = app.token("implicit", ADMIN_ID, None).await;
    assert_eq!(
        app.add_to_cart("busy", "mug", 1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        stockroom_http::purge_idle_carts(&app.state)
            .await
            .expect("purge"),
        0
    );
    app.clock.advance_secs(2 * 24 * 3600);
    app.shopper = app.token("implicit", ADMIN_ID, None).await;
    assert_eq!(
        stockroom_http::purge_idle_carts(&app.state)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(app.cart_lines(&idle).await.0, lines(&[]));
    let r = app
        .shopper(
            Method::PUT,
            &format!("/v2/carts/{idle}"),
            Some(json!({"data": {"name": "x"}})),
        )
        .await;
    assert_eq!(r.error_status(), 404, "gone");
    assert_eq!(app.cart_lines("busy").await.0, lines(&[("mug", 2)]));
}

async fn custom_items_are_sold_beside_products_and_never_stock_managed(app: TestApp) {
    app.create_product("mug", "MUG-1", 1299).await;
    app.create_stock("mug", 3).await;
    assert_eq!(app.add_to_cart("c", "mug", 2).await.status, StatusCode::OK);
    let add = |item: Value| {
        app.shopper(
            Method::POST,
            "/v2/carts/c/items",
            Some(json!({"data": item})),
        )
    };
    // Refused, nothing changed: no name, no price, a negative or fractional price, another
    // currency than the cart's, no quantity.
    for bad in [
        json!({"type": "custom_item", "sku": "W", "quantity": 1, "price": {"amount": 1}}),
        json!({"type": "custom_item", "name": "Wrap", "quantity": 1}),
        json!({"type": "custom_item", "name": "Wrap", "quantity": 1, "price": {"amount": -1}}),
        json!({"type": "custom_item", "name": "Wrap", "quantity": 1, "price": {"amount": 1.5}}),
        json!({"type": "custom_item", "name": "Wrap", "quantity": 1,
               "price": {"amount": 1, "currency": "EUR"}}),
        json!({"type": "custom_item", "name": "Wrap", "price": {"amount": 1}}),
        json!({"type": "custom_item", "name": " ", "quantity": 1, "price": {"amount": 1}}),
    ] {
        assert_eq!(add(bad.clone()).await.error_status(), 400, "{bad}");
    }
    assert_eq!(app.cart_lines("c").await.0, lines(&[("mug", 2)]));
    // Elastic Path's AddCustomItem: more than the stock of anything, never checked.
    let r = add(
        json!({"type": "custom_item", "name": "Gift wrap", "sku": "WRAP",
                       "description": "ribbon", "quantity": 2,
                       "price": {"amount": 250, "includes_tax": true}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["data"].as_array().expect("items");
    let wrap = items
        .iter()
        .find(|i| i["type"] == "custom_item")
        .expect("the custom item");
    assert_eq!(
        (
            &wrap["name"],
            &wrap["sku"],
            &wrap["quantity"],
            &wrap["manage_stock"]
        ),
        (
            &json!("Gift wrap"),
            &json!("WRAP"),
            &json!(2),
            &json!(false)
        )
    );
    assert_eq!(
        (
            &wrap["unit_price"]["amount"],
            &wrap["unit_price"]["currency"],
            &wrap["unit_price"]["includes_tax"]
        ),
        (&json!(250), &json!("USD"), &json!(true))
    );
    assert_eq!(
        r.body["meta"]["display_price"]["with_tax"]["amount"],
        2 * 1299 + 500
    );
    // A second one with the same SKU is a line of its own; bulk updates take no stock check.
    let wrap_id = wrap["id"].as_str().expect("id").to_owned();
    let r = app
        .shopper(
            Method::PUT,
            "/v2/carts/c/items",
            Some(json!({"data": [{"id": wrap_id, "quantity": 5}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Checkout carries it with its price into the order and its total.
    let r = app.checkout("c").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let order = r.body["data"]["id"].as_str().expect("order").to_owned();
    assert_eq!(
        r.body["data"]["meta"]["display_price"]["with_tax"]["amount"],
        2 * 1299 + 5 * 250
    );
    let r = app
        .admin(Method::GET, &format!("/v2/orders/{order}/items"), None)
        .await;
    let items = r.body["data"].as_array().expect("order items");
    assert_eq!(items.len(), 2);
    let wrap = items
        .iter()
        .find(|i| i["sku"] == "WRAP")
        .expect("the custom item");
    assert_eq!(
        (&wrap["name"], &wrap["quantity"]),
        (&json!("Gift wrap"), &json!(5))
    );
    // Paying allocates the mugs only; shipping ships them only.
    let r = app.pay(&order, "manual", "purchase").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("mug").await, (3, 2, 1));
    assert_eq!(
        app.order_entries("mug", &order).await,
        vec![("allocate".to_owned(), 2)]
    );
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/orders/{order}"),
            Some(json!({"data": {"type": "order", "shipping": "fulfilled"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.figures("mug").await, (1, 0, 1));
    app.verify_ok().await;
}

/// `@moltin/sdk`'s `Products.Create` sends Elastic Path's legacy flat product; `manage_stock`
/// starts its stock at 0, and products show `meta.stock` as the legacy API did.
async fn legacy_flat_products_are_created_and_show_their_stock(app: TestApp) {
    let legacy = |id: &str, sku: &str| {
        json!({"data": {"type": "product", "id": id, "name": "Legacy mug", "slug": "legacy-mug",
               "sku": sku, "manage_stock": true, "description": "A mug",
               "price": [{"amount": 1500, "currency": "USD", "includes_tax": true}],
               "status": "live", "commodity_type": "physical"}})
    };
    let count = || async {
        app.admin(Method::GET, "/v2/products", None).await.body["meta"]["results"]["total"].clone()
    };
    // Refused, nothing created: two prices, no SKU, unknown status or commodity type, a
    // manage_stock that is not a boolean, and stock that exists already.
    let mut bad = Vec::new();
    for (field, value) in [
        (
            "price",
            json!([{"amount": 1, "currency": "USD"}, {"amount": 1, "currency": "EUR"}]),
        ),
        ("price", json!([])),
        ("sku", Value::Null),
        ("status", json!("sold")),
        ("commodity_type", json!("service")),
        ("manage_stock", json!("yes")),
    ] {
        let mut body = legacy("bad", "BAD-1");
        body["data"][field] = value;
        bad.push(body);
    }
    for body in bad {
        let r = app
            .admin(Method::POST, "/v2/products", Some(body.clone()))
            .await;
        assert_eq!(r.error_status(), 400, "{body}");
    }
    app.create_stock("pre", 3).await;
    let r = app
        .admin(Method::POST, "/v2/products", Some(legacy("pre", "PRE-1")))
        .await;
    assert_eq!(r.error_status(), 409, "its stock exists already");
    assert_eq!(count().await, 0);
    assert_eq!(app.figures("pre").await, (3, 0, 3));
    // Created, with its stock at 0.
    let r = app
        .admin(Method::POST, "/v2/products", Some(legacy("leg", "LEG-1")))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let d = &r.body["data"];
    assert_eq!(
        (
            &d["name"],
            &d["sku"],
            &d["manage_stock"],
            &d["price"][0]["amount"]
        ),
        (
            &json!("Legacy mug"),
            &json!("LEG-1"),
            &json!(true),
            &json!(1500)
        )
    );
    assert_eq!(d["attributes"]["price"]["includes_tax"], true);
    assert_eq!(
        d["meta"]["stock"],
        json!({"level": 0, "availability": "out-stock"})
    );
    assert_eq!(app.figures("leg").await, (0, 0, 0));
    assert_eq!(app.history_count("leg", Some("create")).await, 1);
    app.transact("leg", "increment", 5).await;
    let r = app.shopper(Method::GET, "/v2/products/leg", None).await;
    assert_eq!(
        r.body["data"]["meta"]["stock"],
        json!({"level": 5, "availability": "in-stock"})
    );
    // Today's shape keeps working: not stock-managed until stock is created.
    app.create_product("mug", "MUG-1", 1299).await;
    let r = app.shopper(Method::GET, "/v2/products/mug", None).await;
    assert_eq!(r.body["data"]["manage_stock"], false);
    assert!(r.body["data"]["meta"].get("stock").is_none());
    let r = app.shopper(Method::GET, "/v2/products", None).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(2));
    app.verify_ok().await;
}

/// Customers (SPEC §3): unique emails, a token for the right password only (401 otherwise,
/// unknown email alike), their own carts and orders and no one else's; an implicit token
/// alone reads no order; an administrator reads all.
async fn customers_sign_in_and_see_only_their_own_carts_and_orders(app: TestApp) {
    app.create_product("mug", "MUG-1", 1000).await;
    app.create_stock("mug", 10).await;
    let (ada, ada_token) = app
        .customer("Ada", "Ada@Example.com", "correct horse")
        .await;
    let (bob, bob_token) = app
        .customer("Bob", "bob@example.com", "battery staple")
        .await;
    // The email is unique whatever its case; bad bodies are 400; nothing is made.
    let dup = json!({"data": {"type": "customer", "name": "Eve", "email": "ADA@example.com", "password": "x"}});
    assert_eq!(
        app.shopper(Method::POST, "/v2/customers", Some(dup))
            .await
            .error_status(),
        409
    );
    for bad in [
        json!({"data": {"name": "Eve", "email": "not-an-email"}}),
        json!({"data": {"name": "", "email": "eve@example.com"}}),
        json!({"data": {"email": "eve@example.com"}}),
        json!({"data": {"name": "Eve", "email": "eve@example.com", "password": 7}}),
    ] {
        let r = app
            .shopper(Method::POST, "/v2/customers", Some(bad.clone()))
            .await;
        assert_eq!(r.error_status(), 400, "{bad}");
    }
    let r = app.admin(Method::GET, "/v2/customers", None).await;
    assert_eq!(r.body["meta"]["results"]["total"], 2);
    // Wrong password and unknown email: the same 401.
    for (email, password) in [
        ("ada@example.com", "wrong"),
        ("nobody@example.com", "correct horse"),
    ] {
        let body = json!({"data": {"type": "token", "email": email, "password": password}});
        let r = app
            .shopper(Method::POST, "/v2/customers/tokens", Some(body))
            .await;
        assert_eq!(r.error_status(), 401, "{email}");
    }
    // A bad customer token is 401; another customer's record is 403.
    let r = app
        .as_customer("forged", Method::GET, &format!("/v2/customers/{ada}"), None)
        .await;
    assert_eq!(r.error_status(), 401);
    let r = app
        .as_customer(
            &bob_token,
            Method::GET,
            &format!("/v2/customers/{ada}"),
            None,
        )
        .await;
    assert_eq!(r.error_status(), 403);
    let r = app
        .as_customer(
            &ada_token,
            Method::GET,
            &format!("/v2/customers/{ada}"),
            None,
        )
        .await;
    assert_eq!(r.body["data"]["email"], "ada@example.com");
    let r = app
        .as_customer(
            &ada_token,
            Method::PUT,
            &format!("/v2/customers/{ada}"),
            Some(json!({"data": {"email": "bob@example.com"}})),
        )
        .await;
    assert_eq!(r.error_status(), 409, "Bob's email");
    // Ada's carts: one made with her token, one associated afterwards; Bob sees none of them.
    let r = app
        .as_customer(
            &ada_token,
            Method::POST,
            "/v2/carts",
            Some(json!({"data": {"name": "Ada's"}})),
        )
        .await;
    let mine = r.body["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.add_to_cart("later", "mug", 1).await.status,
        StatusCode::OK
    );
    let link = json!({"data": [{"type": "customer", "id": ada}]});
    let r = app
        .as_customer(
            &bob_token,
            Method::POST,
            "/v2/carts/later/relationships/customers",
            Some(link.clone()),
        )
        .await;
    assert_eq!(r.error_status(), 403, "Bob cannot give a cart to Ada");
    let r = app
        .as_customer(
            &ada_token,
            Method::POST,
            "/v2/carts/later/relationships/customers",
            Some(link),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"][0]["id"], ada.as_str());
    let r = app
        .as_customer(&ada_token, Method::GET, "/v2/carts", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut ids: Vec<&str> = r.body["data"]
        .as_array()
        .expect("carts")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut want = vec![mine.as_str(), "later"];
    want.sort_unstable();
    assert_eq!(ids, want);
    let r = app
        .as_customer(&bob_token, Method::GET, "/v2/carts", None)
        .await;
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(
        app.shopper(Method::GET, "/v2/carts", None)
            .await
            .error_status(),
        403
    );
    // Ada's cart is hers: Bob, or an implicit token alone, cannot use it.
    let r = app
        .as_customer(&bob_token, Method::GET, "/v2/carts/later/items", None)
        .await;
    assert_eq!(r.error_status(), 403);
    assert_eq!(app.add_to_cart("later", "mug", 1).await.error_status(), 403);
    let r = app
        .as_customer(
            &ada_token,
            Method::POST,
            "/v2/carts/later/items",
            Some(json!({"data": {"type": "cart_item", "id": "mug", "quantity": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Checkout carries the customer (from the cart) into the order.
    let body = json!({"data": {"customer": {"name": "Ada", "email": "ada@example.com"},
                               "billing_address": {"first_name": "Ada", "line_1": "1 Street"}}});
    let r = app
        .as_customer(
            &ada_token,
            Method::POST,
            "/v2/carts/later/checkout",
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["data"]["relationships"]["customer"]["data"]["id"],
        ada.as_str()
    );
    let order = r.body["data"]["id"].as_str().expect("order").to_owned();
    // A guest's order (no customer).
    let guest = app.order_of("guest", &[("mug", 1)]).await;
    // Reads: Ada her own; Bob and an implicit token alone none; an administrator all.
    let path = format!("/v2/orders/{order}");
    assert_eq!(
        app.as_customer(&ada_token, Method::GET, &path, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.as_customer(&bob_token, Method::GET, &path, None)
            .await
            .error_status(),
        404
    );
    assert_eq!(
        app.shopper(Method::GET, &path, None).await.error_status(),
        403
    );
    let items = format!("{path}/items");
    assert_eq!(
        app.as_customer(&bob_token, Method::GET, &items, None)
            .await
            .error_status(),
        404
    );
    // An order's payment transactions are read as the order is (SPEC §3): the shopper who
    // pays is answered its transaction, but reading them back needs the customer's token.
    let r = app.pay(&order, "manual", "authorize").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tid = r.body["data"]["id"]
        .as_str()
        .expect("transaction")
        .to_owned();
    for path in [
        format!("{path}/transactions"),
        format!("{path}/transactions/{tid}"),
    ] {
        assert_eq!(
            app.shopper(Method::GET, &path, None).await.error_status(),
            403,
            "{path}: implicit token alone"
        );
        assert_eq!(
            app.as_customer(&bob_token, Method::GET, &path, None)
                .await
                .error_status(),
            404,
            "{path}: another customer"
        );
        let r = app.as_customer(&ada_token, Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(
            app.admin(Method::GET, &path, None).await.status,
            StatusCode::OK
        );
    }
    let guest_path = format!("/v2/orders/{guest}");
    assert_eq!(
        app.as_customer(&ada_token, Method::GET, &guest_path, None)
            .await
            .error_status(),
        404
    );
    let r = app
        .as_customer(&ada_token, Method::GET, "/v2/orders", None)
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 1);
    assert_eq!(r.body["data"][0]["id"], order.as_str());
    let r = app
        .as_customer(&bob_token, Method::GET, "/v2/orders", None)
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 0);
    // The list's filters narrow a customer's own orders, never widen them.
    let r = app
        .as_customer(
            &ada_token,
            Method::GET,
            "/v2/orders?filter=eq(status,incomplete)&include=items",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["meta"]["results"]["total"], 1);
    assert_eq!(r.body["data"][0]["id"], order.as_str());
    assert_eq!(
        r.body["included"]["items"].as_array().map(Vec::len),
        Some(1)
    );
    let r = app
        .admin(Method::GET, "/v2/orders?filter=eq(status,incomplete)", None)
        .await;
    assert_eq!(r.body["meta"]["results"]["total"], 2);
    assert_eq!(
        app.shopper(Method::GET, "/v2/orders", None)
            .await
            .error_status(),
        403
    );
    let r = app.admin(Method::GET, "/v2/orders", None).await;
    assert_eq!(r.body["meta"]["results"]["total"], 2);
    // Checkout with a customer id names that customer too (the SDK's Checkout("id", …)).
    app.add_to_cart("by-id", "mug", 1).await;
    let body = json!({"data": {"customer": {"id": bob}, "billing_address": {"line_1": "2 Road"}}});
    let r = app
        .shopper(Method::POST, "/v2/carts/by-id/checkout", Some(body))
        .await;
    assert_eq!(
        r.body["data"]["relationships"]["customer"]["data"]["id"],
        bob.as_str()
    );
    // Deleting: only oneself (or an administrator).
    let r = app
        .as_customer(
            &bob_token,
            Method::DELETE,
            &format!("/v2/customers/{ada}"),
            None,
        )
        .await;
    assert_eq!(r.error_status(), 403);
    let r = app
        .as_customer(
            &ada_token,
            Method::DELETE,
            &format!("/v2/customers/{ada}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.admin(Method::GET, &format!("/v2/customers/{ada}"), None)
            .await
            .error_status(),
        404
    );
}

/// ARCHITECTURE.md's route list is the router's table: every route, with who may call it.
async fn architecture_lists_every_route_with_who_may_call_it(app: TestApp) {
    use stockroom_http::Access;
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../ARCHITECTURE.md"
    ))
    .expect("ARCHITECTURE.md");
    for route in &app.routes {
        let who = match route.access {
            Access::Public => "anyone",
            Access::Shopper => "shopper (any token)",
            Access::Customer => "customer token or administrator",
            Access::Admin => "administrator",
        };
        let row = format!("| {} | `{}` | {who} |", route.method, route.path);
        assert!(doc.contains(&row), "ARCHITECTURE.md lacks {row}");
    }
}
