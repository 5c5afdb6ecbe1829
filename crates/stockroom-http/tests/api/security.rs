//! Sign-in abuse and token keys: rate limits on failed sign-ins, tokens that cannot outlive
//! their lifetime, and revocation by credential change, removal and key rotation.

use std::net::IpAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::Sha256;
use stockroom_domain::{Clock, Role};
use stockroom_http::{auth, tokens};
use stockroom_store::Store;
use tokio::time::Instant;

use stockroom_http::{Limits, PaymentSettings};
use stockroom_store::testing::Backend;

use crate::support::{spawn_app_limited, TestApp, ADMIN_ID, ADMIN_SECRET};

crate::on_both_backends!(
    a_brute_force_of_the_token_endpoint_is_refused_429_and_the_real_client_still_signs_in,
    a_burst_of_guesses_sent_at_once_is_held_to_the_allowance,
    a_token_forged_with_the_real_key_and_an_endless_expiry_is_refused,
    changing_or_removing_a_credential_revokes_its_tokens,
    rotating_the_signing_key_revokes_every_token,
    every_instance_notices_a_revocation_within_the_refresh_interval,
);

crate::on_both_backends_raw!(failures_spread_over_many_addresses_cannot_lock_the_real_client_out);

/// A client whose connections come from `from` (any of 127.0.0.0/8).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("client")
}

async fn sign_in(
    app: &TestApp,
    http: &reqwest::Client,
    id: &str,
    secret: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = http
        .post(format!("{}/oauth/access_token", app.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.expect("json"))
}

async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.call(Method::GET, "/v2/inventories", Some(token), None)
        .await
        .status
}

async fn a_brute_force_of_the_token_endpoint_is_refused_429_and_the_real_client_still_signs_in(
    app: TestApp,
) {
    let attacker = client_from("127.0.0.20");
    let mut statuses = Vec::new();
    for i in 0..30 {
        let (status, headers, body) =
            sign_in(&app, &attacker, ADMIN_ID, &format!("guess-{i}")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait: u64 = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After in seconds");
            assert!((1..=60).contains(&wait), "{wait}");
            assert_eq!(body["errors"][0]["status"], 429, "{body}");
            assert_eq!(body["errors"][0]["title"], "Too Many Requests");
        }
        statuses.push(status.as_u16());
    }
    // The default allows 10 failures a minute per address: 10 answers, then refusals.
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 20], "{statuses:?}");
    // Even the right secret is refused from the attacking address: it is not even checked.
    let (status, _, _) = sign_in(&app, &attacker, ADMIN_ID, ADMIN_SECRET).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The real client, elsewhere, signs in promptly.
    let started = Instant::now();
    let (status, _, body) = sign_in(&app, &client_from("127.0.0.21"), ADMIN_ID, ADMIN_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// Guesses sent all at once from one address: each waits for the one before it to be checked,
/// so no more than the allowance (10) is ever checked, however many arrive together.
async fn a_burst_of_guesses_sent_at_once_is_held_to_the_allowance(app: TestApp) {
    let attacker = client_from("127.0.0.23");
    let guesses = (0..30).map(|i| {
        let (app, attacker) = (&app, &attacker);
        async move {
            sign_in(app, attacker, ADMIN_ID, &format!("burst-{i}"))
                .await
                .0
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!((1..=10).contains(&checked), "{statuses:?}");
    assert_eq!(checked + refused, 30, "only 401 and 429: {statuses:?}");
    let (status, _, body) = sign_in(&app, &client_from("127.0.0.24"), ADMIN_ID, ADMIN_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// With 1 failure a minute per address, a client id takes 10 from all addresses together (one
/// more every 6 s: far longer than the last steps below take).
async fn failures_spread_over_many_addresses_cannot_lock_the_real_client_out(backend: Backend) {
    let limits = Limits {
        sign_in_failures_per_minute: 1,
        ..Limits::default()
    };
    let Some(app) = spawn_app_limited(backend, PaymentSettings::default(), limits).await else {
        return;
    };
    // Fifteen addresses fail once each: the client id's allowance (10) is spent, but an
    // address with no failure of its own is always answered.
    for a in 0..15 {
        let http = client_from(&format!("127.0.3.{}", a + 1));
        let (status, _, _) = sign_in(&app, &http, ADMIN_ID, &format!("spread-{a}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // An address that has failed is now refused for this client id at once, right secret or
    // not (it is not even checked)…
    let one_of_them = client_from("127.0.3.1");
    let (status, _, _) = sign_in(&app, &one_of_them, ADMIN_ID, ADMIN_SECRET).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "an address that failed is refused while the client id is over its allowance"
    );
    // …while the real client, from an address with no failures, still signs in.
    let (status, _, body) = sign_in(&app, &client_from("127.0.0.22"), ADMIN_ID, ADMIN_SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A token in the format of the first version (role, expiry, random bytes, HMAC with the
/// signing key) — what anyone holding the database file could make before the fix.
async fn a_token_forged_with_the_real_key_and_an_endless_expiry_is_refused(app: TestApp) {
    let stored = app
        .store
        .setting(tokens::SIGNING_KEY_SETTING)
        .await
        .expect("read")
        .expect("a signing key");
    let key = URL_SAFE_NO_PAD.decode(stored).expect("base64");
    let mut body = vec![1u8, 1];
    body.extend_from_slice(&i64::MAX.to_be_bytes());
    body.extend_from_slice(&[7u8; 16]);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes());
    let forged = URL_SAFE_NO_PAD.encode(body);
    let r = app
        .call(Method::GET, "/v2/orders", Some(&forged), None)
        .await;
    assert_eq!(r.error_status(), 401);
}

async fn changing_or_removing_a_credential_revokes_its_tokens(app: TestApp) {
    let other = auth::credential(
        "other-admin",
        "other-admin-secret",
        "other",
        Role::Admin,
        app.clock.now(),
    )
    .expect("credential");
    app.store.insert_credential(&other).await.expect("insert");
    let keep = app
        .token(
            "client_credentials",
            "other-admin",
            Some("other-admin-secret"),
        )
        .await;
    let old_admin = app.admin.clone();
    let old_shopper = app.shopper.clone();
    assert_eq!(status_with(&app, &old_admin).await, StatusCode::OK);
    // The secret changes (as `stockroom keys rotate-secret` or a new STOCKROOM_CLIENT_SECRET
    // does it).
    let changed = auth::credential(
        ADMIN_ID,
        "a brand new secret",
        ADMIN_ID,
        Role::Admin,
        app.clock.now(),
    )
    .expect("credential");
    app.store.upsert_credential(&changed).await.expect("upsert");
    app.state
        .tokens
        .refresh(&*app.store)
        .await
        .expect("refresh");
    assert_eq!(
        status_with(&app, &old_admin).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status_with(&app, &old_shopper).await,
        StatusCode::UNAUTHORIZED,
        "implicit tokens of that client id too"
    );
    assert_eq!(
        status_with(&app, &keep).await,
        StatusCode::OK,
        "others are untouched"
    );
    let fresh = app
        .token("client_credentials", ADMIN_ID, Some("a brand new secret"))
        .await;
    assert_eq!(status_with(&app, &fresh).await, StatusCode::OK);
    // Removing the credential revokes what it holds.
    assert!(app.store.delete_credential(ADMIN_ID).await.expect("delete"));
    app.state
        .tokens
        .refresh(&*app.store)
        .await
        .expect("refresh");
    assert_eq!(status_with(&app, &fresh).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, &keep).await, StatusCode::OK);
}

async fn rotating_the_signing_key_revokes_every_token(app: TestApp) {
    let before = app.admin.clone();
    app.store
        .set_setting(tokens::SIGNING_KEY_SETTING, &tokens::new_signing_key())
        .await
        .expect("rotate");
    app.state
        .tokens
        .refresh(&*app.store)
        .await
        .expect("refresh");
    assert_eq!(status_with(&app, &before).await, StatusCode::UNAUTHORIZED);
    let after = app
        .token("client_credentials", ADMIN_ID, Some(ADMIN_SECRET))
        .await;
    assert_eq!(status_with(&app, &after).await, StatusCode::OK);
}

/// The server refreshes its keys by itself every `tokens::REFRESH_EVERY`: a revocation made
/// by another instance (here, straight in the database) is in force within that time.
async fn every_instance_notices_a_revocation_within_the_refresh_interval(app: TestApp) {
    let token = app.admin.clone();
    assert!(app.store.delete_credential(ADMIN_ID).await.expect("delete"));
    let revoked = Instant::now();
    // Ask until refused; the bound is the refresh interval and a margin for a loaded machine.
    let bound = tokens::REFRESH_EVERY * 3;
    while status_with(&app, &token).await == StatusCode::OK {
        assert!(revoked.elapsed() < bound, "still accepted after {bound:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
