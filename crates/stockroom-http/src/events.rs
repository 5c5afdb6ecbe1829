//! Events (issue 14): the integrations API (`/v2/integrations`, administrators only) and the
//! dispatcher that delivers the outbox's jobs to webhooks and NATS JetStream.
//!
//! The outbox is filled by the database in the writer's own transactions (see
//! `stockroom_store::EventStore`). Each instance runs one dispatcher ([`dispatch_forever`]):
//! it leases due jobs in runs (the oldest pending job of each product or order and the ones
//! right behind it, delivered in order, the rest given back at the first failure, so their
//! events leave in commit order; `FOR UPDATE SKIP LOCKED` and a lease keep two instances from
//! delivering one job at once), renders each job's payload from the resource it names,
//! delivers it, and records the attempt: delivered, retried later with exponential backoff and
//! jitter, or failed for good after [`EventSettings::max_attempts`]. A crash between delivery
//! and record loses nothing: the lease runs out and the job is delivered again, with the same
//! event id (at least once).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use stockroom_domain::{Clock, Timestamp};
use stockroom_store::{
    After, Attempt, Finished, Integration, IntegrationType, Job, PaymentStatus, StoreError,
};
use tokio::runtime::Handle;

use crate::clock::SystemClock;
use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::carts::CartAnswer;
use crate::wire::customers::CustomerOut;
use crate::wire::integrations::{
    check_url, event_id, job_seq, stored_configuration, IntegrationOut, IntegrationUpdate, JobOut,
    LogOut, NewIntegration, Payload, PayloadIntegration, StockThreshold, StockThresholdOut,
    StockThresholdTag,
};
use crate::wire::orders::{Include, OrderAnswer};
use crate::wire::payments::{Gateway, GatewayOut, PaymentOut};
use crate::wire::stock::AnyStockTransaction;
use crate::wire::Data;
use crate::AppState;

/// How events are delivered.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// Whether this instance runs a dispatcher.
    pub dispatch: bool,
    /// Deliver to loopback, private and link-local addresses too (`--webhook-allow-private-networks`).
    pub allow_private_networks: bool,
    /// How long a receiver may take to answer (Elastic Path: 10 s).
    pub delivery_timeout: Duration,
    /// Attempts before a job is failed for good.
    pub max_attempts: u32,
    /// The first retry's delay; each next one doubles, up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Deliveries in flight at once per integration.
    pub concurrency_per_integration: usize,
    /// How often an idle dispatcher looks for due jobs.
    pub poll_every: Duration,
    /// Jobs leased per look.
    pub claim_max: u64,
    /// Most consecutive jobs of one stream (a product's or an order's events) leased together
    /// and delivered in order, one request each, by one task on one kept-alive connection.
    pub run_max: u64,
    /// Finished jobs (and their logs) are pruned after this long.
    pub retention: Duration,
    /// Largest payload sent; a larger resource is sent as `{type, id}` only (as Elastic Path
    /// sends a deleted one), for the receiver to fetch.
    pub payload_max: usize,
    /// The NATS server for `nats` integrations.
    pub nats_url: Option<String>,
    /// The connection to it, made on first use.
    pub nats: crate::nats::NatsLink,
    /// Certificate authorities an https webhook's certificate may chain to besides the
    /// Mozilla roots compiled in (`--webhook-ca-file`).
    pub webhook_roots: WebhookRoots,
}

/// Extra certificate authorities trusted for https webhooks: a shop's private CA, for an ERP
/// on its own network. Only made from a file whose every certificate rustls accepts as a trust
/// anchor, so a client built with them cannot fail for their sake.
#[derive(Clone, Debug, Default)]
pub struct WebhookRoots(Vec<reqwest::Certificate>);

impl WebhookRoots {
    /// The largest CA file read (a system's whole bundle is about 220 KiB).
    pub const FILE_MAX: u64 = 1024 * 1024;

    /// The certificates of a PEM file (one or more `BEGIN CERTIFICATE` blocks; anything else
    /// in it is skipped), or why it cannot be used.
    pub fn from_pem_file(path: &std::path::Path) -> Result<WebhookRoots, String> {
        use std::io::Read;
        let shown = path.display();
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
        let mut pem = Vec::new();
        file.take(Self::FILE_MAX + 1)
            .read_to_end(&mut pem)
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        if pem.len() as u64 > Self::FILE_MAX {
            return Err(format!(
                "{shown} is larger than {} KiB; it should hold PEM certificates only",
                Self::FILE_MAX / 1024
            ));
        }
        Self::from_pem(&pem).map_err(|e| format!("{shown}: {e}"))
    }

    /// The certificates of PEM text, or why it cannot be used.
    pub fn from_pem(pem: &[u8]) -> Result<WebhookRoots, String> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| "holds a certificate block that is not valid PEM".to_owned())?;
        if certs.is_empty() {
            return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
        for (i, cert) in certs.iter().enumerate() {
            // rustls parses a root when the client is built: try each here, at start.
            reqwest::Client::builder()
                .use_rustls_tls()
                .add_root_certificate(cert.clone())
                .build()
                .map_err(|e| {
                    format!(
                        "certificate {} of {} is not a usable X.509 certificate: {}",
                        i + 1,
                        certs.len(),
                        chain(&e)
                    )
                })?;
        }
        Ok(WebhookRoots(certs))
    }

    /// How many certificates were added.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            dispatch: true,
            allow_private_networks: false,
            delivery_timeout: Duration::from_secs(10),
            max_attempts: 12,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            concurrency_per_integration: 8,
            poll_every: Duration::from_millis(100),
            claim_max: 64,
            run_max: 32,
            retention: Duration::from_secs(7 * 24 * 3600),
            payload_max: 256 * 1024,
            nats_url: None,
            nats: crate::nats::NatsLink::default(),
            webhook_roots: WebhookRoots::default(),
        }
    }
}

impl EventSettings {
    /// A lease long enough for every job of one claim to be tried, one integration's runs
    /// `concurrency_per_integration` at a time, the jobs of a run one after the other, each
    /// within the delivery timeout: at most `claim_max` attempts spread over that many
    /// workers, plus the longest run (list scheduling's bound), plus one to spare. A run also
    /// stops, and gives its rest back, when the lease could end before its next attempt does.
    fn lease(&self) -> Duration {
        let per = u32::try_from(self.concurrency_per_integration.max(1)).unwrap_or(u32::MAX);
        let claim = u32::try_from(self.claim_max.max(1)).unwrap_or(u32::MAX);
        let run = u32::try_from(self.run_max.clamp(1, self.claim_max.max(1))).unwrap_or(1);
        let rounds = claim.div_ceil(per).saturating_add(run);
        self.delivery_timeout
            .saturating_mul(rounds.saturating_add(1))
    }

    /// When attempt `attempt` (1-based) failed: the time to wait before the next, with jitter
    /// (half to all of the exponential delay).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.backoff_max);
        full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

// ---- the API ---------------------------------------------------------------------------------

/// The newest logs or jobs shown.
const SHOWN_MAX: u64 = 100;

pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let all = state.store.integrations().await?;
    let items: Vec<IntegrationOut> = all.iter().map(IntegrationOut::new).collect();
    Ok(Data::new(items).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<Data<NewIntegration>>,
) -> Result<Response, ApiError> {
    let id = uuid::Uuid::now_v7().to_string();
    let integration = body.data.into_integration(id, state.clock.now())?;
    refuse_private_literal(&state, &integration)?;
    if !state.store.create_integration(&integration).await? {
        return Err(ApiError::invalid(
            "data",
            format!(
                "a store may have at most {} integrations",
                stockroom_store::INTEGRATIONS_MAX
            ),
        ));
    }
    Ok(Data::new(IntegrationOut::new(&integration)).with_status(StatusCode::CREATED))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let found = state
        .store
        .integration(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Data::new(IntegrationOut::new(&found)).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Data<IntegrationUpdate>>,
) -> Result<Response, ApiError> {
    let mut found = state
        .store
        .integration(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    body.data.apply(&mut found, state.clock.now())?;
    refuse_private_literal(&state, &found)?;
    if !state.store.update_integration(&found).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Data::new(IntegrationOut::new(&found)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_integration(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// Every integration's newest logs.
pub async fn store_logs(State(state): State<AppState>) -> Result<Response, ApiError> {
    let logs = state.store.integration_logs(None, None, SHOWN_MAX).await?;
    Ok(Data::new(logs.iter().map(LogOut::new).collect::<Vec<_>>()).into_response())
}

pub async fn logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .store
        .integration(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let logs = state
        .store
        .integration_logs(Some(&id), None, SHOWN_MAX)
        .await?;
    Ok(Data::new(logs.iter().map(LogOut::new).collect::<Vec<_>>()).into_response())
}

pub async fn jobs(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .store
        .integration(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let jobs = state.store.integration_jobs(&id, SHOWN_MAX).await?;
    Ok(Data::new(jobs.iter().map(JobOut::new).collect::<Vec<_>>()).into_response())
}

pub async fn job_logs(
    State(state): State<AppState>,
    Path((id, job)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .store
        .integration(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let seq = job_seq(&job).ok_or(ApiError::NotFound)?;
    let logs = state
        .store
        .integration_logs(Some(&id), Some(seq), SHOWN_MAX)
        .await?;
    Ok(Data::new(logs.iter().map(LogOut::new).collect::<Vec<_>>()).into_response())
}

/// Sets or removes the low-stock threshold of one of a product's records.
pub async fn set_threshold(
    State(state): State<AppState>,
    Path(product): Path<String>,
    Json(body): Json<Data<StockThreshold>>,
) -> Result<Response, ApiError> {
    let product = crate::inventory::path_product(&product)?;
    let body = body.data;
    let location = match &body.location {
        Some(slug) => crate::locations::location_slug(&state, slug).await?,
        None => stockroom_store::NO_LOCATION.to_owned(),
    };
    let threshold = body.threshold.map(|q| q.get());
    state
        .store
        .set_stock_threshold(&product, &location, threshold)
        .await?;
    Ok(Data::new(StockThresholdOut {
        kind: StockThresholdTag,
        product_id: product.as_str().to_owned(),
        location: body.location.map(|s| s.as_str().to_owned()),
        threshold,
    })
    .into_response())
}

/// A webhook URL whose host is a private, loopback or link-local address literal is refused at
/// once (a name is checked when it is resolved, at every delivery).
fn refuse_private_literal(state: &AppState, i: &Integration) -> Result<(), ApiError> {
    if state.events.allow_private_networks || i.integration_type != IntegrationType::Webhook {
        return Ok(());
    }
    let Some(url) = stored_configuration(i).url else {
        return Ok(());
    };
    let parsed = check_url(&url).map_err(|e| ApiError::invalid("data.configuration.url", e))?;
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !is_public(ip)) {
        return Err(ApiError::invalid(
            "data.configuration.url",
            "points at a loopback, private or link-local address \
             (the server's --webhook-allow-private-networks allows it)",
        ));
    }
    Ok(())
}

// ---- SSRF ------------------------------------------------------------------------------------

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local, shared (CGNAT), unspecified, multicast, broadcast, documentation,
/// benchmarking or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let [o0, o1, o2, _] = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o0 == 0
                || (o0 == 100 && (64..128).contains(&o1))
                || (o0 == 192 && o1 == 0 && o2 == 0)
                || (o0 == 198 && (18..20).contains(&o1))
                || o0 >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: an IPv4 address inside
                || s[0] == 0) // other IPv4-embedding forms
        }
    }
}

/// The addresses a webhook URL's host resolves to now, refused if any is not public (unless
/// allowed): the check is on what the delivery connects to, not on the URL's text.
async fn resolve(url: &reqwest::Url, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => {
            let lookup = tokio::net::lookup_host((name, port));
            match tokio::time::timeout(Duration::from_secs(5), lookup).await {
                Ok(Ok(found)) => found.collect(),
                Ok(Err(e)) => return Err(format!("cannot resolve {name}: {e}")),
                Err(_) => return Err(format!("resolving {name} timed out")),
            }
        }
        None => return Err("the URL names no host".into()),
    };
    if addrs.is_empty() {
        return Err("the host resolves to no address".into());
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "refused: the host resolves to {}, a loopback, private or link-local address \
                 (the server's --webhook-allow-private-networks allows it)",
                bad.ip()
            ));
        }
    }
    Ok(addrs)
}

// ---- payloads --------------------------------------------------------------------------------

/// The resource a job reports, as its event carries it (`{"data": …}` and, for orders and
/// carts, `included`), or `{type, id}` if it is gone (or deleted) or too large.
async fn resource(state: &AppState, job: &Job) -> Result<Value, StoreError> {
    let store = &state.store;
    let gone = |kind: &str| json!({"type": kind, "id": job.resource_id});
    let value = match job.triggered_by.as_str() {
        "stock-transaction.created" => match store.history_entry_by_id(&job.resource_id).await? {
            Some(entry) => to_value(&Data::new(AnyStockTransaction::new(true, &entry))),
            None => gone("stock-transaction"),
        },
        t if t.starts_with("order.") => match store.order(&job.resource_id).await? {
            Some(mut order) => {
                // The state the event saw, not the order's state now.
                let mut parts = job.snapshot.split('/');
                let (s, p, f) = (parts.next(), parts.next(), parts.next());
                use stockroom_domain::order::{Payment, Shipping, Status};
                if let Some(s) = s.and_then(Status::parse) {
                    order.state.status = s;
                }
                if let Some(p) = p.and_then(Payment::parse) {
                    order.state.payment = p;
                }
                if let Some(f) = f.and_then(Shipping::parse) {
                    order.state.shipping = f;
                }
                to_value(&OrderAnswer::new(&order, Include { items: true }))
            }
            None => gone("order"),
        },
        t if t.starts_with("transaction.") => {
            let order_id = job.stream.strip_prefix("order:").unwrap_or_default();
            match store.payment(order_id, &job.resource_id).await? {
                Some(mut payment) => {
                    if let Some(status) = PaymentStatus::parse(&job.snapshot) {
                        payment.status = status;
                    }
                    to_value(&Data::new(PaymentOut::new(&payment)))
                }
                None => gone("transaction"),
            }
        }
        // A deleted resource is only its type and id (Elastic Path's "Deleted resources
        // payload"), even if one of the same id exists again (a cart comes into being when
        // first used).
        "cart.deleted" => gone("cart"),
        "customer.deleted" => gone("customer"),
        "integration.deleted" => gone("integration"),
        // The others are read at delivery: the resource as it is now.
        "cart.updated" => match store.cart(&job.resource_id).await? {
            // As `GET /v2/carts/{id}?include=items` shows it.
            Some(cart) => to_value(&CartAnswer::new(
                &job.resource_id,
                Some(&cart),
                state.clock.now(),
                state.limits.cart_expiry,
                true,
            )),
            None => gone("cart"),
        },
        "customer.created" | "customer.updated" => match store.customer(&job.resource_id).await? {
            // Never the password's hash: `CustomerOut` shows only whether there is one.
            Some(customer) => to_value(&Data::new(CustomerOut::new(&customer))),
            None => gone("customer"),
        },
        "integration.created" | "integration.updated" => {
            match store.integration(&job.resource_id).await? {
                Some(integration) => {
                    // Another integration's secret is not its receivers' to learn.
                    let mut out = IntegrationOut::new(&integration);
                    out.configuration.secret_key = None;
                    to_value(&Data::new(out))
                }
                None => gone("integration"),
            }
        }
        "payment-gateway.updated" => match Gateway::parse(&job.resource_id) {
            // The state the change left it in: the value written (`true`/`false`).
            Some(gateway) => {
                let configured = crate::gateways::configured(state, gateway);
                let enabled = configured && job.snapshot == "true";
                to_value(&Data::new(GatewayOut::new(gateway, enabled, configured)))
            }
            None => gone("payment-gateway"),
        },
        _ => {
            // Low-stock alerts: `location/available/threshold`.
            let mut parts = job.snapshot.split('/');
            let location = parts.next().unwrap_or_default();
            let available: i64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let threshold: i64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            json!({"data": {
                "type": "stock-level",
                "id": job.resource_id,
                "product_id": job.resource_id,
                "location": if location.is_empty() { Value::Null } else { json!(location) },
                "available": available,
                "threshold": threshold,
            }})
        }
    };
    Ok(value)
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The body a job is delivered with, as Elastic Path sends it.
fn body(job: &Job, integration: &Integration, resource: &Value, event: &str) -> Vec<u8> {
    let payload = Payload {
        id: event,
        triggered_by: &job.triggered_by,
        attempt: job.attempts,
        integration: PayloadIntegration {
            id: &integration.id,
            integration_type: integration.integration_type.as_str(),
            name: &integration.name,
            description: &integration.description,
        },
        resources: resource.to_string(),
        payload: resource,
    };
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// The Standard Webhooks signature (`v1,` base64 HMAC-SHA256 of `id.timestamp.body`) with
/// the integration's secret key: the bytes after `whsec_` base64-decoded, or the key's text.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let engine = base64::engine::general_purpose::STANDARD;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| engine.decode(k).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

// ---- delivery --------------------------------------------------------------------------------

fn failed(detail: impl Into<String>) -> Attempt {
    Attempt {
        succeeded: false,
        status_code: None,
        body: String::new(),
        error_detail: detail.into(),
    }
}

/// HTTP clients kept per integration and host for the addresses they were built for, so that
/// deliveries reuse kept-alive connections; a host that resolves differently gets a new one
/// (pinned to the newly checked addresses).
#[derive(Clone, Default)]
struct Clients(Arc<std::sync::Mutex<HashMap<String, Kept>>>);

/// A client and the addresses it was built for.
type Kept = (Vec<SocketAddr>, reqwest::Client);

impl Clients {
    /// Most clients kept (one per integration and host: integrations are capped at 50).
    const MAX: usize = 256;

    fn get(
        &self,
        key: &str,
        addrs: &[SocketAddr],
        build: impl FnOnce() -> Option<reqwest::Client>,
    ) -> Option<reqwest::Client> {
        let mut kept = self.0.lock().ok()?;
        if let Some((built_for, client)) = kept.get(key) {
            if built_for == addrs {
                return Some(client.clone());
            }
        }
        let client = build()?;
        if kept.len() >= Self::MAX {
            kept.clear();
        }
        kept.insert(key.to_owned(), (addrs.to_vec(), client.clone()));
        Some(client)
    }
}

/// POSTs one event to a webhook: the resolved address checked and pinned (so the connection
/// goes where the check looked), no redirect followed, the whole exchange within the timeout.
async fn post_webhook(
    settings: &EventSettings,
    clients: &Clients,
    integration: &Integration,
    event: &str,
    body: Vec<u8>,
) -> Attempt {
    let config = stored_configuration(integration);
    let Some(raw) = config.url else {
        return failed("the integration has no url");
    };
    let url = match check_url(&raw) {
        Ok(url) => url,
        Err(e) => return failed(format!("the url {e}")),
    };
    let addrs = match resolve(&url, settings.allow_private_networks).await {
        Ok(addrs) => addrs,
        Err(e) => return failed(e),
    };
    let key = format!(
        "{} {}:{}",
        integration.id,
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let build = || {
        // https: rustls verifies the certificate against the URL's host (sent as SNI) — the
        // name, not the pinned address — or, for an address literal, against its IP SANs.
        let mut client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.delivery_timeout)
            .connect_timeout(settings.delivery_timeout)
            .no_proxy()
            .user_agent("Stockroom-Webhooks/1");
        for cert in &settings.webhook_roots.0 {
            client = client.add_root_certificate(cert.clone());
        }
        if let Some(url::Host::Domain(name)) = url.host() {
            client = client.resolve_to_addrs(name, &addrs);
        }
        client.build().ok()
    };
    let Some(client) = clients.get(&key, &addrs, build) else {
        return failed("cannot build an HTTP client");
    };
    let timestamp = SystemClock.now().micros() / 1_000_000;
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", event)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &config.secret_key {
        request = request.header("X-Moltin-Secret-Key", secret).header(
            "webhook-signature",
            signature(secret, event, timestamp, &body),
        );
    }
    let response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return failed("the receiver did not answer in time"),
        Err(e) => return failed(request_failed(&e)),
    };
    let status = response.status();
    let text = read_some(response, stockroom_store::LOG_BODY_MAX).await;
    let error_detail = if status.is_success() {
        String::new()
    } else if status.is_redirection() {
        "Received a redirect - redirects are not followed, treating webhook as a fail".into()
    } else {
        "Received a status code outside of 2xx range - treating webhook as a fail".into()
    };
    Attempt {
        succeeded: status.is_success(),
        status_code: Some(status.as_u16()),
        body: text,
        error_detail,
    }
}

/// Why a request failed, for the logs: a refused TLS certificate said plainly, anything else
/// with its causes (reqwest's own message names only the URL).
fn request_failed(e: &reqwest::Error) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(tls) = rustls_error(err) {
            return tls_failed(tls);
        }
        cause = err.source();
    }
    format!("the request failed: {}", chain(e))
}

/// The rustls error an error is or wraps: it comes up inside an io::Error (inside another),
/// and an io::Error's source() skips what it wraps.
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return rustls_error(io.get_ref()?);
    }
    None
}

/// A TLS failure in words: what is wrong with the receiver's certificate, then rustls's own.
fn tls_failed(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(why) = e else {
        return format!("the TLS handshake with the receiver failed: {e}");
    };
    let plain = match why {
        C::UnknownIssuer => {
            "it is not signed by a trusted certificate authority (a private CA needs the \
             server's --webhook-ca-file)"
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it is not valid for the URL's host"
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet",
        C::Revoked => "it is revoked",
        _ => "it is not acceptable",
    };
    format!("the receiver's TLS certificate was refused: {plain} ({e})")
}

/// An error and its causes, each once.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause = Some(e);
    while let Some(err) = cause {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = err.source();
    }
    parts.join(": ")
}

/// The first `max` bytes of an answer (the rest is not read).
async fn read_some(mut response: reqwest::Response, max: usize) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(max);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Attempts one leased job: the attempt and what becomes of the job (recorded by the caller,
/// with the rest of its run).
async fn deliver(
    server: &Handle,
    state: &AppState,
    clients: &Clients,
    job: &Job,
    integration: &Integration,
) -> (Attempt, After) {
    let settings = &state.events;
    let event = event_id(job);
    let read = {
        let (state, job) = (state.clone(), job.clone());
        on_server(server, async move { resource(&state, &job).await })
    };
    let attempt = match read.await {
        Ok(mut resource) => {
            let mut bytes = body(job, integration, &resource, &event);
            if bytes.len() > settings.payload_max {
                let kind = resource["data"]["type"].clone();
                resource = json!({"type": kind, "id": job.resource_id});
                bytes = body(job, integration, &resource, &event);
            }
            match integration.integration_type {
                IntegrationType::Webhook => {
                    post_webhook(settings, clients, integration, &event, bytes).await
                }
                IntegrationType::Nats => publish_nats(state, integration, &event, bytes).await,
            }
        }
        Err(e) => failed(format!("cannot read the resource: {e}")),
    };
    let now = SystemClock.now();
    let after = if attempt.succeeded {
        let lag = (now.micros() - job.created_at.micros()).max(0) as f64 / 1e6;
        ::metrics::histogram!("stockroom_event_delivery_lag_seconds").record(lag);
        ::metrics::counter!("stockroom_events_delivered_total").increment(1);
        After::Delivered
    } else if job.attempts >= settings.max_attempts {
        ::metrics::counter!("stockroom_events_failed_total").increment(1);
        After::Failed
    } else {
        ::metrics::counter!("stockroom_event_retries_total").increment(1);
        let wait = settings.backoff(job.attempts);
        let micros = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
        After::RetryAt(Timestamp(now.micros().saturating_add(micros)))
    };
    (attempt, after)
}

/// Delivers a run (consecutive jobs of one stream, leased together) in order, one request
/// each, and stops at the first job not delivered — or when the lease could end before the
/// next attempt does. Then records every attempt with one write (logs and job states in one
/// transaction: on SQLite, where it shares the write lock with the writer, one take of it per
/// run instead of two per event) and gives the rest back untried, so that nothing overtakes
/// the job that stopped it. A crash before the record delivers the run's events again, with
/// the same ids: at least once.
async fn deliver_run(
    server: &Handle,
    state: &AppState,
    clients: &Clients,
    owner: &str,
    run: Vec<Job>,
    integration: &Integration,
    lease_until: Timestamp,
) {
    let timeout = i64::try_from(state.events.delivery_timeout.as_micros()).unwrap_or(i64::MAX);
    let mut outcomes = Vec::with_capacity(run.len());
    for (i, job) in run.iter().enumerate() {
        let time_left = lease_until.micros() - SystemClock.now().micros();
        if i > 0 && time_left <= timeout.saturating_add(1_000_000) {
            break;
        }
        let (attempt, after) = deliver(server, state, clients, job, integration).await;
        outcomes.push((attempt, after));
        if after != After::Delivered {
            break;
        }
    }
    let tried = outcomes.len();
    let mut run = run;
    let rest = run.split_off(tried);
    let record = {
        let (store, owner) = (state.store.clone(), owner.to_owned());
        on_server(server, async move {
            let finished: Vec<Finished> = run
                .iter()
                .zip(outcomes)
                .map(|(job, (attempt, after))| Finished {
                    job,
                    attempt,
                    after,
                })
                .collect();
            store
                .finish_jobs(&owner, &finished, SystemClock.now())
                .await
        })
    };
    if let Err(e) = record.await {
        // The leases run out and the jobs are tried again: at least once.
        tracing::warn!(error = %e, jobs = tried, "cannot record delivery attempts");
        return;
    }
    if !rest.is_empty() {
        let (store, owner) = (state.store.clone(), owner.to_owned());
        let give_back = on_server(
            server,
            async move { store.release_jobs(&rest, &owner).await },
        );
        if let Err(e) = give_back.await {
            // Their lease runs out and they are claimed again.
            tracing::warn!(error = %e, "cannot give back leased events");
        }
    }
}

/// Publishes one event to NATS JetStream, with the event id as `Nats-Msg-Id` so that the
/// stream drops a second copy of it.
async fn publish_nats(
    state: &AppState,
    integration: &Integration,
    event: &str,
    body: Vec<u8>,
) -> Attempt {
    let Some(subject) = stored_configuration(integration).subject else {
        return failed("the integration has no subject");
    };
    let settings = &state.events;
    let (link, url) = (&settings.nats, settings.nats_url.as_deref());
    crate::nats::publish(link, url, settings.delivery_timeout, &subject, event, body).await
}

/// CPU priority of the delivery thread: 10 steps below the server's (its weight is about a
/// tenth of a normal thread's under Linux's scheduler). See [`start`].
const DISPATCH_NICE: i32 = 10;

/// The running dispatcher; dropping it stops delivery (an attempt under way is dropped: its
/// lease runs out and the job is delivered again, with the same id).
pub struct Dispatcher {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts delivering on a thread of its own, with a runtime of its own, at a lower CPU priority
/// ([`DISPATCH_NICE`]): delivery is background work, and in a flash sale that saturates the
/// CPU the sale goes first — the events wait in the outbox (the delivery lag grows) and go out
/// as soon as there is room. The HTTP clients and their connections live on that thread; the
/// store calls (claims, the resources' reads, records) run on the server's runtime (`server`),
/// where the database connections and their drivers' tasks belong.
pub fn start(state: AppState) -> std::io::Result<Dispatcher> {
    let server = Handle::current();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("stockroom-events".into())
        .spawn(move || {
            lower_priority();
            runtime.block_on(async move {
                tokio::select! {
                    () = dispatch_forever(server, state) => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
        })?;
    Ok(Dispatcher { _stop: stop })
}

/// Lowers the calling thread's CPU priority to [`DISPATCH_NICE`] (Linux keeps a nice value
/// per thread). Raising one's nice value needs no privilege; if it fails all the same,
/// delivery runs at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), DISPATCH_NICE)
    {
        tracing::warn!(error = %e, "cannot lower the event dispatcher's priority");
    }
}

/// Runs a store call on the server's runtime and waits for it.
async fn on_server<T, F>(server: &Handle, call: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
{
    server
        .spawn(call)
        .await
        .map_err(|e| StoreError::Internal(format!("a store call stopped: {e}")))?
}

/// Delivers due jobs until the task is dropped: lease, deliver (several integrations and
/// streams at once, at most `concurrency_per_integration` per integration), record, repeat;
/// now and then prune finished jobs. Store calls run on `server` (see [`start`]).
async fn dispatch_forever(server: Handle, state: AppState) {
    let owner = uuid::Uuid::new_v4().to_string();
    let settings = state.events.clone();
    let mut gates: HashMap<String, Arc<tokio::sync::Semaphore>> = HashMap::new();
    let clients = Clients::default();
    let mut pruned_at = Timestamp(0);
    loop {
        let now = SystemClock.now();
        if now.micros() - pruned_at.micros() > 60_000_000 {
            pruned_at = now;
            let keep = i64::try_from(settings.retention.as_micros()).unwrap_or(i64::MAX);
            let store = state.store.clone();
            let before = Timestamp(now.micros() - keep);
            if let Err(e) = on_server(&server, async move { store.prune_jobs(before).await }).await
            {
                tracing::warn!(error = %e, "cannot prune delivered events");
            }
        }
        let lease = i64::try_from(settings.lease().as_micros()).unwrap_or(i64::MAX);
        let until = Timestamp(now.micros().saturating_add(lease));
        let claim = {
            let (store, owner, s) = (state.store.clone(), owner.clone(), settings.clone());
            on_server(&server, async move {
                store
                    .claim_runs(&owner, now, until, s.claim_max, s.run_max)
                    .await
            })
        };
        let jobs = match claim.await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event outbox");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            tokio::time::sleep(settings.poll_every).await;
            continue;
        }
        let mut integrations: HashMap<String, Option<Arc<Integration>>> = HashMap::new();
        let mut running = tokio::task::JoinSet::new();
        // The claim's runs: its jobs by (integration, stream), each in seq order.
        let mut runs: Vec<Vec<Job>> = Vec::new();
        let mut run_of: HashMap<(String, String), usize> = HashMap::new();
        for job in jobs {
            let key = (job.integration_id.clone(), job.stream.clone());
            match run_of.get(&key) {
                Some(&i) => runs[i].push(job),
                None => {
                    run_of.insert(key, runs.len());
                    runs.push(vec![job]);
                }
            }
        }
        for run in runs {
            let integration_id = run[0].integration_id.clone();
            if !integrations.contains_key(&integration_id) {
                let (store, id) = (state.store.clone(), integration_id.clone());
                let found = on_server(&server, async move { store.integration(&id).await })
                    .await
                    .ok()
                    .flatten()
                    .map(Arc::new);
                integrations.insert(integration_id.clone(), found);
            }
            let Some(Some(integration)) = integrations.get(&integration_id).cloned() else {
                continue; // removed meanwhile: its jobs went with it
            };
            let gate = gates
                .entry(integration_id)
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Semaphore::new(
                        settings.concurrency_per_integration.max(1),
                    ))
                })
                .clone();
            let (state, owner, clients) = (state.clone(), owner.clone(), clients.clone());
            let server = server.clone();
            running.spawn(async move {
                let Ok(_permit) = gate.acquire_owned().await else {
                    return;
                };
                deliver_run(&server, &state, &clients, &owner, run, &integration, until).await;
            });
        }
        while running.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().expect("an address")), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(ip.parse().expect("an address")), "{ip}");
        }
    }

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The key after `whsec_` is base64; the signed text is `id.timestamp.body`.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = signature(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ca_files_are_checked_when_read() {
        let pem = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            rcgen::generate_simple_self_signed(names)
                .expect("a certificate")
                .cert
                .pem()
        };
        let dir = tempfile::tempdir().expect("a directory");
        let file = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("written");
            path
        };
        // One or more certificates, with text and other blocks around them.
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let two = format!("my CA\n{}{key}{}", pem(&["a"]), pem(&["b"]));
        let roots = WebhookRoots::from_pem_file(&file("two.pem", two.as_bytes())).expect("two");
        assert_eq!(roots.len(), 2);
        let refused = |name: &str, text: &[u8], why: &str| {
            let e = WebhookRoots::from_pem_file(&file(name, text)).expect_err(name);
            assert!(e.contains(name) && e.contains(why), "{name}: {e}");
        };
        refused("empty.pem", b"", "no PEM certificate");
        refused("key.pem", key.as_bytes(), "no PEM certificate");
        refused(
            "der.crt",
            rcgen::generate_simple_self_signed(vec!["a".into()])
                .expect("a certificate")
                .cert
                .der(),
            "no PEM certificate",
        );
        let armour = |body: &str| {
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        };
        refused(
            "base64.pem",
            armour("not base64 at all!").as_bytes(),
            "not valid PEM",
        );
        let second_bad = format!("{}{}", pem(&["a"]), armour("AAAAAAAA"));
        refused(
            "x509.pem",
            second_bad.as_bytes(),
            "certificate 2 of 2 is not a usable X.509 certificate",
        );
        let huge = vec![b'#'; WebhookRoots::FILE_MAX as usize + 1];
        refused("huge.pem", &huge, "larger than 1024 KiB");
        let e = WebhookRoots::from_pem_file(&dir.path().join("missing.pem")).expect_err("missing");
        assert!(
            e.starts_with("cannot open") && e.contains("missing.pem"),
            "{e}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let s = EventSettings {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..EventSettings::default()
        };
        for attempt in 1..30 {
            let full = Duration::from_secs(1 << (attempt - 1).min(20)).min(Duration::from_secs(60));
            let b = s.backoff(attempt);
            assert!(b >= full / 2 && b <= full, "attempt {attempt}: {b:?}");
        }
    }
}
