//! Webhooks over https, against a TLS receiver in the test whose certificates come from a CA
//! made here (rcgen), on SQLite and PostgreSQL: with that CA given to Stockroom an event
//! arrives, signed and shaped, to a host name and to an address literal; without it, or with a
//! certificate for another name or an expired one, every attempt fails with the reason in the
//! logs and nothing reaches the receiver; the SSRF checks hold for https as for http.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use stockroom_http::{EventSettings, WebhookRoots};
use stockroom_store::testing::Backend;
use tokio::sync::mpsc;
use tokio_rustls::rustls;

use crate::events::{fast, header, integrate, settled, verify_signature, Received, SECRET};
use crate::support::{spawn_app_evented, TestApp};

crate::on_both_backends_raw!(
    https_webhooks_arrive_when_their_ca_is_trusted,
    an_untrusted_ca_fails_every_attempt_and_delivers_nothing,
    a_certificate_for_another_name_or_expired_is_refused,
    https_targets_get_the_same_ssrf_checks,
);

/// A certificate authority of the test's own.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Stockroom test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a key");
        Ca(CertifiedIssuer::self_signed(params, key).expect("a CA"))
    }

    fn roots(&self) -> WebhookRoots {
        WebhookRoots::from_pem(self.0.pem().as_bytes()).expect("the CA's PEM is usable")
    }

    /// A server certificate for `names` (DNS names or address literals), valid now or, if
    /// `expired`, only in 2000.
    fn issue(&self, names: &[&str], expired: bool) -> Identity {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 12, 31);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.0).expect("a certificate");
        Identity {
            chain: vec![cert.der().clone(), self.0.der().clone()],
            key: key.serialize_der(),
        }
    }
}

struct Identity {
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: Vec<u8>,
}

/// An https receiver on 127.0.0.1 that answers 200 and passes on each request it reads.
struct TlsReceiver {
    port: u16,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl TlsReceiver {
    async fn start(identity: Identity) -> TlsReceiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(identity.key);
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(identity.chain, key.into())
            .expect("a server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsReceiver { port, rx }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/hook", self.port)
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
            .await
            .expect("a delivery in time")
            .expect("the receiver runs")
    }

    fn nothing_more(&mut self) {
        assert!(self.rx.try_recv().is_err(), "no further delivery");
    }
}

async fn receive(
    State(tx): State<mpsc::UnboundedSender<Received>>,
    headers: HeaderMap,
    raw: Bytes,
) -> &'static str {
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let _ = tx.send(Received {
        headers,
        raw: raw.to_vec(),
        body,
    });
    "thanks"
}

/// Fast settings, private addresses allowed (the receiver is on loopback), these roots.
fn settings(roots: WebhookRoots, max_attempts: u32) -> EventSettings {
    EventSettings {
        webhook_roots: roots,
        max_attempts,
        ..fast(true)
    }
}

/// Every attempt's `error_detail` of an integration, oldest first.
async fn error_details(app: &TestApp, id: &str) -> Vec<String> {
    let logs = app
        .admin(Method::GET, &format!("/v2/integrations/{id}/logs"), None)
        .await;
    let logs = logs.body["data"].as_array().expect("logs").clone();
    assert!(logs.iter().all(|l| l["succeeded"] == false), "{logs:?}");
    assert!(logs.iter().all(|l| l["status_code"].is_null()), "{logs:?}");
    logs.iter()
        .rev()
        .map(|l| l["error_detail"].as_str().expect("a detail").to_owned())
        .collect()
}

async fn https_webhooks_arrive_when_their_ca_is_trusted(backend: Backend) {
    let ca = Ca::new();
    let Some(app) = spawn_app_evented(backend, settings(ca.roots(), 4)).await else {
        return;
    };
    let mut by_name = TlsReceiver::start(ca.issue(&["localhost"], false)).await;
    let mut by_address = TlsReceiver::start(ca.issue(&["127.0.0.1"], false)).await;
    let named = integrate(
        &app,
        &by_name.url("localhost"),
        &["stock-transaction.created"],
        true,
    )
    .await;
    let literal = integrate(
        &app,
        &by_address.url("127.0.0.1"),
        &["stock-transaction.created"],
        true,
    )
    .await;
    app.create_stock("p", 10).await;
    for (hook, id) in [(&mut by_name, &named), (&mut by_address, &literal)] {
        let r = hook.next().await;
        assert_eq!(header(&r, "x-moltin-secret-key"), SECRET);
        assert_eq!(header(&r, "content-type"), "application/json");
        verify_signature(&r);
        assert_eq!(r.body["id"], header(&r, "webhook-id"));
        assert_eq!(r.body["triggered_by"], "stock-transaction.created");
        assert_eq!(r.body["attempt"], 1);
        assert_eq!(r.body["integration"]["id"], id.as_str());
        assert_eq!(r.body["payload"]["data"]["type"], "stock-transaction");
        assert_eq!(r.body["payload"]["data"]["attributes"]["product_id"], "p");
        assert_eq!(r.body["payload"]["data"]["attributes"]["action"], "create");
        let jobs = settled(&app, id).await;
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["status"], "delivered");
        assert_eq!(jobs[0]["attempts"], 1);
        hook.nothing_more();
    }
}

async fn an_untrusted_ca_fails_every_attempt_and_delivers_nothing(backend: Backend) {
    let ca = Ca::new();
    // Only the Mozilla roots: the test's CA is unknown.
    let Some(app) = spawn_app_evented(backend, settings(WebhookRoots::default(), 2)).await else {
        return;
    };
    let mut hook = TlsReceiver::start(ca.issue(&["localhost"], false)).await;
    let id = integrate(
        &app,
        &hook.url("localhost"),
        &["stock-transaction.created"],
        true,
    )
    .await;
    app.create_stock("p", 1).await;
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["status"], "failed");
    assert_eq!(jobs[0]["attempts"], 2, "retried like any failure");
    let details = error_details(&app, &id).await;
    assert_eq!(details.len(), 2);
    for d in &details {
        assert!(
            d.contains("TLS certificate was refused")
                && d.contains("not signed by a trusted certificate authority")
                && d.contains("--webhook-ca-file"),
            "{d}"
        );
    }
    hook.nothing_more();
}

async fn a_certificate_for_another_name_or_expired_is_refused(backend: Backend) {
    let ca = Ca::new();
    let Some(app) = spawn_app_evented(backend, settings(ca.roots(), 1)).await else {
        return;
    };
    let mut elsewhere = TlsReceiver::start(ca.issue(&["elsewhere.example"], false)).await;
    // A certificate for the name, asked for by address: verified against the address.
    let mut named_only = TlsReceiver::start(ca.issue(&["localhost"], false)).await;
    let mut expired = TlsReceiver::start(ca.issue(&["localhost"], true)).await;
    let cases = [
        (elsewhere.url("localhost"), "not valid for the URL's host"),
        (named_only.url("127.0.0.1"), "not valid for the URL's host"),
        (expired.url("localhost"), "has expired"),
    ];
    for (i, (url, why)) in cases.into_iter().enumerate() {
        let id = integrate(&app, &url, &["stock-transaction.created"], true).await;
        app.create_stock(&format!("p{i}"), 1).await;
        let jobs = settled(&app, &id).await;
        assert_eq!(jobs.len(), 1, "{url}");
        assert_eq!(jobs[0]["status"], "failed", "{url}");
        let details = error_details(&app, &id).await;
        assert_eq!(details.len(), 1, "{url}");
        assert!(
            details[0].contains("TLS certificate was refused") && details[0].contains(why),
            "{url}: {}",
            details[0]
        );
        // Off for the next case, so that only one integration observes its product.
        let r = app
            .admin(
                Method::PUT,
                &format!("/v2/integrations/{id}"),
                Some(serde_json::json!({"data": {"type": "integration", "enabled": false}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    elsewhere.nothing_more();
    named_only.nothing_more();
    expired.nothing_more();
}

async fn https_targets_get_the_same_ssrf_checks(backend: Backend) {
    let ca = Ca::new();
    let Some(app) = spawn_app_evented(
        backend,
        EventSettings {
            webhook_roots: ca.roots(),
            max_attempts: 1,
            ..fast(false)
        },
    )
    .await
    else {
        return;
    };
    let mut hook = TlsReceiver::start(ca.issue(&["localhost", "127.0.0.1"], false)).await;
    // An address literal is refused when saved, https or not; other schemes stay refused.
    for url in [
        hook.url("127.0.0.1"),
        "https://10.0.0.1/hook".to_owned(),
        "https://[::1]:9/x".to_owned(),
        "ftp://example.com/".to_owned(),
        "wss://example.com/".to_owned(),
    ] {
        let r = app
            .admin(
                Method::POST,
                "/v2/integrations",
                Some(
                    serde_json::json!({"data": {"type": "integration", "name": "x",
                    "observes": ["stock-transaction.created"],
                    "configuration": {"url": url}}}),
                ),
            )
            .await;
        assert_eq!(r.error_status(), 400, "{url}: {}", r.body);
    }
    assert_eq!(app.integration_count().await, 0);
    // A name is checked where it resolves, at delivery, before any TLS.
    let id = integrate(
        &app,
        &hook.url("localhost"),
        &["stock-transaction.created"],
        true,
    )
    .await;
    app.create_stock("p", 1).await;
    let jobs = settled(&app, &id).await;
    assert_eq!(jobs[0]["status"], "failed");
    let details = error_details(&app, &id).await;
    assert_eq!(details.len(), 1);
    assert!(
        details[0].contains("refused") && details[0].contains("private"),
        "{}",
        details[0]
    );
    hook.nothing_more();
}
