//! The events of carts, customers, integrations and payment gateways (migration V9), against
//! a real HTTP receiver, on SQLite and PostgreSQL: each change is one event, with the right
//! `triggered_by`, the resource as its GET shows it (no customer's password, no integration's
//! secret key), a deleted resource as `{type, id}` only, a resource's events in commit order,
//! and no job at all when nothing observes the event.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use stockroom_store::testing::Backend;

use crate::events::{fast, integrate, settled, verify_signature, Received, Receiver, SECRET};
use crate::support::{spawn_app_evented, TestApp, ADMIN_ID, ADMIN_SECRET};

crate::on_both_backends_raw!(
    cart_events_are_one_per_change_in_commit_order,
    customer_events_never_carry_the_password,
    integration_events_leave_out_the_secret_key,
    payment_gateway_events_report_the_state_written,
    nothing_is_written_when_nothing_observes_the_event,
);

const CART_EVENTS: [&str; 2] = ["cart.updated", "cart.deleted"];
const CUSTOMER_EVENTS: [&str; 3] = ["customer.created", "customer.updated", "customer.deleted"];
const INTEGRATION_EVENTS: [&str; 3] = [
    "integration.created",
    "integration.updated",
    "integration.deleted",
];

/// The next delivery, checked as every delivery is: signed, `resources` the payload's text.
async fn next(hook: &mut Receiver, integration: &str) -> Received {
    let r = hook.next().await;
    verify_signature(&r);
    assert_eq!(r.body["integration"]["id"], integration);
    let resources: Value =
        serde_json::from_str(r.body["resources"].as_str().expect("resources text")).expect("json");
    assert_eq!(resources, r.body["payload"]);
    r
}

/// The `triggered_by` of each job of the integration, oldest first, once all are settled.
async fn job_events(app: &TestApp, integration: &str) -> Vec<String> {
    let jobs = settled(app, integration).await;
    assert!(jobs.iter().all(|j| j["status"] == "delivered"), "{jobs:?}");
    // The API lists the newest first.
    jobs.iter()
        .rev()
        .map(|j| j["triggered_by"].as_str().expect("event").to_owned())
        .collect()
}

fn deleted(kind: &str, id: &str) -> Value {
    json!({"type": kind, "id": id})
}

async fn cart_events_are_one_per_change_in_commit_order(backend: Backend) {
    let Some(mut app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &CART_EVENTS, true).await;
    app.create_product("mug", "MUG-1", 1000).await;
    app.create_product("cup", "CUP-1", 500).await;

    // A new cart is `cart.updated` (Elastic Path has no `cart.created`).
    let r = app
        .shopper(
            Method::POST,
            "/v2/carts",
            Some(json!({"data": {"name": "Ada's", "description": "gifts"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let cart = r.body["data"]["id"].as_str().expect("id").to_owned();
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "cart.updated");
    assert_eq!(e.body["payload"]["data"]["type"], "cart");
    assert_eq!(e.body["payload"]["data"]["id"], cart.as_str());
    assert_eq!(e.body["payload"]["data"]["name"], "Ada's");
    assert_eq!(e.body["payload"]["included"]["items"], json!([]));

    // Two items in one request: two cart_items rows, one change, one event, with both items.
    let r = app
        .shopper(
            Method::POST,
            &format!("/v2/carts/{cart}/items"),
            Some(json!({"data": [
                {"type": "cart_item", "id": "mug", "quantity": 2},
                {"type": "cart_item", "id": "cup", "quantity": 3},
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "cart.updated");
    let items = e.body["payload"]["included"]["items"]
        .as_array()
        .expect("items");
    let mut lines: Vec<(String, u64)> = items
        .iter()
        .map(|i| {
            (
                i["product_id"].as_str().expect("product").to_owned(),
                i["quantity"].as_u64().expect("quantity"),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(lines, [("cup".to_owned(), 3), ("mug".to_owned(), 2)]);
    assert_eq!(job_events(&app, &id).await, ["cart.updated"; 2]);
    hook.nothing_more();

    // Removing a product from the catalog changes every cart holding it: one event per cart.
    assert_eq!(
        app.add_to_cart("other", "mug", 1).await.status,
        StatusCode::OK
    );
    assert_eq!(
        next(&mut hook, &id).await.body["payload"]["data"]["id"],
        "other"
    );
    let r = app.admin(Method::DELETE, "/v2/products/mug", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let mut changed = Vec::new();
    for _ in 0..2 {
        let e = next(&mut hook, &id).await;
        assert_eq!(e.body["triggered_by"], "cart.updated");
        changed.push(
            e.body["payload"]["data"]["id"]
                .as_str()
                .expect("cart")
                .to_owned(),
        );
    }
    changed.sort();
    let mut expected = vec![cart.clone(), "other".to_owned()];
    expected.sort();
    assert_eq!(changed, expected);
    assert_eq!(job_events(&app, &id).await, ["cart.updated"; 5]);
    hook.nothing_more();

    // Changes made one after the other leave in commit order; a deleted cart is type and id.
    for name in ["one", "two"] {
        let r = app
            .shopper(
                Method::PUT,
                &format!("/v2/carts/{cart}"),
                Some(json!({"data": {"name": name}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app
        .shopper(Method::DELETE, &format!("/v2/carts/{cart}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next(&mut hook, &id).await;
        seen.push(e.body["triggered_by"].as_str().expect("event").to_owned());
        if e.body["triggered_by"] == "cart.deleted" {
            assert_eq!(e.body["payload"], deleted("cart", &cart));
        }
    }
    assert_eq!(seen, ["cart.updated", "cart.updated", "cart.deleted"]);
    hook.nothing_more();

    // A cart purged when idle is deleted too.
    app.clock.advance_secs(8 * 24 * 3600);
    app.shopper = app.token("implicit", ADMIN_ID, None).await;
    app.admin = app
        .token("client_credentials", ADMIN_ID, Some(ADMIN_SECRET))
        .await;
    assert_eq!(
        stockroom_http::purge_idle_carts(&app.state)
            .await
            .expect("purge"),
        1
    );
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "cart.deleted");
    assert_eq!(e.body["payload"], deleted("cart", "other"));
    assert_eq!(job_events(&app, &id).await.len(), 9);
    hook.nothing_more();
}

async fn customer_events_never_carry_the_password(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &CUSTOMER_EVENTS, true).await;
    let password = "correct horse battery staple";
    let r = app
        .shopper(
            Method::POST,
            "/v2/customers",
            Some(json!({"data": {"type": "customer", "name": "Ada",
                                 "email": "ada@example.com", "password": password}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let customer = r.body["data"]["id"].as_str().expect("id").to_owned();
    let no_secret = |e: &Received| {
        let text = String::from_utf8_lossy(&e.raw);
        assert!(!text.contains(password), "the password in {text}");
        assert!(!text.contains("$argon2"), "a password hash in {text}");
        assert!(!text.contains("password_hash"), "{text}");
    };
    let e = next(&mut hook, &id).await;
    no_secret(&e);
    assert_eq!(e.body["triggered_by"], "customer.created");
    let data = &e.body["payload"]["data"];
    assert_eq!(data["type"], "customer");
    assert_eq!(data["id"], customer.as_str());
    assert_eq!(data["email"], "ada@example.com");
    assert_eq!(
        data["password"], true,
        "whether there is one, as GET shows it"
    );

    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/customers/{customer}"),
            Some(json!({"data": {"name": "Ada Lovelace", "password": "another long password"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = next(&mut hook, &id).await;
    no_secret(&e);
    assert!(!String::from_utf8_lossy(&e.raw).contains("another long password"));
    assert_eq!(e.body["triggered_by"], "customer.updated");
    assert_eq!(e.body["payload"]["data"]["name"], "Ada Lovelace");
    assert_eq!(job_events(&app, &id).await.len(), 2, "one event per change");

    let r = app
        .admin(Method::DELETE, &format!("/v2/customers/{customer}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "customer.deleted");
    assert_eq!(e.body["payload"], deleted("customer", &customer));

    // Created, changed and deleted at once: in commit order (the first two read after the
    // deletion, so they are type and id too).
    let r = app
        .shopper(
            Method::POST,
            "/v2/customers",
            Some(json!({"data": {"type": "customer", "name": "Bob",
                                 "email": "bob@example.com"}})),
        )
        .await;
    let bob = r.body["data"]["id"].as_str().expect("id").to_owned();
    let path = format!("/v2/customers/{bob}");
    let r = app
        .admin(
            Method::PUT,
            &path,
            Some(json!({"data": {"name": "Robert"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        app.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next(&mut hook, &id).await;
        assert_eq!(
            e.body["payload"]["data"]["id"]
                .as_str()
                .or(e.body["payload"]["id"].as_str()),
            Some(bob.as_str())
        );
        seen.push(e.body["triggered_by"].as_str().expect("event").to_owned());
    }
    assert_eq!(seen, CUSTOMER_EVENTS);
    assert_eq!(job_events(&app, &id).await.len(), 6);
    hook.nothing_more();
}

async fn integration_events_leave_out_the_secret_key(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &INTEGRATION_EVENTS, true).await;
    // Its own creation: it observed integration.created as it was made.
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "integration.created");
    assert_eq!(e.body["payload"]["data"]["id"], id.as_str());
    assert!(!String::from_utf8_lossy(&e.raw).contains(SECRET));

    let other_secret = "whsec_b3RoZXIgaW50ZWdyYXRpb24ncyBrZXk=";
    let r = app
        .admin(
            Method::POST,
            "/v2/integrations",
            Some(
                json!({"data": {"type": "integration", "name": "CRM", "enabled": true,
                "observes": ["stock.low"],
                "configuration": {"url": "http://crm.example/hook", "secret_key": other_secret}}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let other = r.body["data"]["id"].as_str().expect("id").to_owned();
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "integration.created");
    let data = &e.body["payload"]["data"];
    assert_eq!(data["type"], "integration");
    assert_eq!(data["id"], other.as_str());
    assert_eq!(data["name"], "CRM");
    assert_eq!(data["observes"], json!(["stock.low"]));
    assert_eq!(
        data["configuration"],
        json!({"url": "http://crm.example/hook"}),
        "no secret_key"
    );
    assert!(!String::from_utf8_lossy(&e.raw).contains(other_secret));

    let path = format!("/v2/integrations/{other}");
    let r = app
        .admin(Method::PUT, &path, Some(json!({"data": {"name": "CRM 2"}})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "integration.updated");
    assert_eq!(e.body["payload"]["data"]["name"], "CRM 2");
    assert!(e.body["payload"]["data"]["configuration"]
        .get("secret_key")
        .is_none());
    assert!(!String::from_utf8_lossy(&e.raw).contains(other_secret));

    assert_eq!(
        app.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    let e = next(&mut hook, &id).await;
    assert_eq!(e.body["triggered_by"], "integration.deleted");
    assert_eq!(e.body["payload"], deleted("integration", &other));
    assert_eq!(
        job_events(&app, &id).await,
        [
            "integration.created",
            "integration.created",
            "integration.updated",
            "integration.deleted"
        ]
    );
    hook.nothing_more();
}

async fn payment_gateway_events_report_the_state_written(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    let id = integrate(&app, &hook.url, &["payment-gateway.updated"], true).await;
    // Off, on, off again before anything is delivered: each event reports what its change
    // wrote, in order.
    for enabled in [false, true, false] {
        let r = app
            .admin(
                Method::PUT,
                "/v2/gateways/manual",
                Some(json!({"data": {"enabled": enabled}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    for enabled in [false, true, false] {
        let e = next(&mut hook, &id).await;
        assert_eq!(e.body["triggered_by"], "payment-gateway.updated");
        let data = &e.body["payload"]["data"];
        assert_eq!(data["type"], "gateway");
        assert_eq!(data["slug"], "manual");
        assert_eq!(data["enabled"], enabled);
        assert_eq!(data["configured"], true);
    }
    assert_eq!(job_events(&app, &id).await.len(), 3);
    hook.nothing_more();
}

async fn nothing_is_written_when_nothing_observes_the_event(backend: Backend) {
    let Some(app) = spawn_app_evented(backend, fast(true)).await else {
        return;
    };
    let mut hook = Receiver::start(Vec::new()).await;
    // One integration observing something else, one observing everything but disabled.
    let watching = integrate(&app, &hook.url, &["stock.low"], true).await;
    let all: Vec<&str> = CART_EVENTS
        .iter()
        .chain(&CUSTOMER_EVENTS)
        .chain(&INTEGRATION_EVENTS)
        .chain(&["payment-gateway.updated"])
        .copied()
        .collect();
    let disabled = integrate(&app, &hook.url, &all, false).await;
    app.create_product("mug", "MUG-1", 1000).await;
    assert_eq!(app.add_to_cart("c", "mug", 1).await.status, StatusCode::OK);
    assert_eq!(
        app.shopper(Method::DELETE, "/v2/carts/c", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let r = app
        .shopper(
            Method::POST,
            "/v2/customers",
            Some(json!({"data": {"type": "customer", "name": "Ada",
                                 "email": "ada@example.com"}})),
        )
        .await;
    let customer = r.body["data"]["id"].as_str().expect("id").to_owned();
    let path = format!("/v2/customers/{customer}");
    app.admin(Method::PUT, &path, Some(json!({"data": {"name": "A"}})))
        .await;
    assert_eq!(
        app.admin(Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app
        .admin(
            Method::PUT,
            "/v2/gateways/manual",
            Some(json!({"data": {"enabled": false}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/integrations/{watching}"),
            Some(json!({"data": {"name": "renamed"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let third = integrate(&app, &hook.url, &["stock.out"], true).await;
    assert_eq!(
        app.admin(Method::DELETE, &format!("/v2/integrations/{third}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Every job belongs to an integration (a foreign key): none of them has any.
    for integration in [&watching, &disabled] {
        let r = app
            .admin(
                Method::GET,
                &format!("/v2/integrations/{integration}/jobs"),
                None,
            )
            .await;
        assert_eq!(r.body["data"], json!([]), "{integration}");
    }
    // Enabled again, the disabled one gets the next change: the triggers were live all along.
    let r = app
        .admin(
            Method::PUT,
            &format!("/v2/integrations/{disabled}"),
            Some(json!({"data": {"enabled": true}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let e = next(&mut hook, &disabled).await;
    assert_eq!(e.body["triggered_by"], "integration.updated");
    assert_eq!(e.body["payload"]["data"]["id"], disabled.as_str());
    assert_eq!(job_events(&app, &disabled).await, ["integration.updated"]);
    assert_eq!(job_events(&app, &watching).await, Vec::<String>::new());
    hook.nothing_more();
}
