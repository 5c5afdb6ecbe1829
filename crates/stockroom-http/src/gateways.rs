//! Payment gateways (`/v2/gateways`: which are enabled), the release of overdue payment
//! attempts and the void of authorizations never captured.
//!
//! `manual` is built in and always approves. Which gateways shoppers may pay through is the
//! administrator's choice, kept in the database (setting `gateway.<slug>.enabled`, so every
//! instance agrees): `manual` is enabled by default only when no HTTP gateway is configured —
//! otherwise a shopper could skip the real gateway and mark an order paid — and `http` is
//! enabled by default when it is configured. An administrator may always record a `manual`
//! payment. The HTTP gateway, when configured, is asked with a
//! `POST` of the order id, payment id, amount and currency, and an `Idempotency-Key` of the
//! payment id; it must answer 2xx with `{"decision":"approve"}`. Anything else — `decline`,
//! another status, a connection error, the timeout — is a failed payment. The gateway is always
//! called with no database transaction or lock held.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use stockroom_domain::limits::IDEMPOTENCY_KEY_RETENTION_SECS;
use stockroom_domain::Timestamp;
use stockroom_store::{Command, Outcome, PaymentTx, StoreError, WriteRequest};

use crate::error::ApiError;
use crate::extract::Json;
use crate::wire::payments::{Gateway, GatewayAnswer, GatewayOut, GatewayRequest, GatewayUpdate};
use crate::wire::Data;
use crate::AppState;

/// The HTTP gateway's settings.
#[derive(Clone, Debug)]
pub struct HttpGateway {
    pub url: String,
    pub timeout: Duration,
}

/// How payments are taken.
#[derive(Clone, Debug)]
pub struct PaymentSettings {
    /// The HTTP gateway, when one is configured (gateway name `http`).
    pub http: Option<HttpGateway>,
    /// How long a payment attempt may stay pending before its allocation is released. Longer
    /// than the gateway's timeout, so an answer in time is never overtaken by the release.
    pub pending_timeout: Duration,
    /// How long an authorization may wait for its capture before it is voided and its stock
    /// released (`--authorization-timeout-secs`).
    pub authorization_timeout: Duration,
}

/// The default of [`PaymentSettings::authorization_timeout`]: 7 days, the life of a typical
/// card authorization.
pub const AUTHORIZATION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            http: None,
            pending_timeout: Duration::from_secs(120),
            authorization_timeout: AUTHORIZATION_TIMEOUT_DEFAULT,
        }
    }
}

/// The setting that holds whether `gateway` is enabled.
fn setting_name(gateway: Gateway) -> String {
    format!("gateway.{}.enabled", gateway.as_str())
}

/// Whether `gateway` can be used at all on this server.
pub(crate) fn configured(state: &AppState, gateway: Gateway) -> bool {
    match gateway {
        Gateway::Manual => true,
        Gateway::Http => state.payments.http.is_some(),
    }
}

/// Whether payments may be made through `gateway`: the administrator's choice if made, else
/// the default (see the module's documentation). An unconfigured gateway is never enabled.
pub async fn is_enabled(state: &AppState, gateway: Gateway) -> Result<bool, StoreError> {
    if !configured(state, gateway) {
        return Ok(false);
    }
    let chosen = state.store.setting(&setting_name(gateway)).await?;
    Ok(match chosen.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => match gateway {
            Gateway::Manual => state.payments.http.is_none(),
            Gateway::Http => true,
        },
    })
}

async fn gateway_out(state: &AppState, gateway: Gateway) -> Result<GatewayOut, ApiError> {
    let enabled = is_enabled(state, gateway).await?;
    Ok(GatewayOut::new(
        gateway,
        enabled,
        configured(state, gateway),
    ))
}

/// `GET /v2/gateways`.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut all = Vec::with_capacity(Gateway::ALL.len());
    for gateway in Gateway::ALL {
        all.push(gateway_out(&state, gateway).await?);
    }
    Ok(Data::new(all).into_response())
}

/// `GET /v2/gateways/{gateway}`.
pub async fn get(
    State(state): State<AppState>,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let gateway = Gateway::parse(&slug).ok_or(ApiError::NotFound)?;
    Ok(Data::new(gateway_out(&state, gateway).await?).into_response())
}

/// `PUT /v2/gateways/{gateway}`: enable or disable it, for every instance. Enabling a gateway
/// that is not configured is a conflict.
pub async fn update(
    State(state): State<AppState>,
    Path(slug): Path<String>,
    Json(body): Json<Data<GatewayUpdate>>,
) -> Result<Response, ApiError> {
    let gateway = Gateway::parse(&slug).ok_or(ApiError::NotFound)?;
    let enabled = body.data.enabled;
    if enabled && !configured(&state, gateway) {
        return Err(ApiError::Conflict(
            "This gateway is not configured (start the server with --payment-gateway-url)",
        ));
    }
    state
        .store
        .set_setting(
            &setting_name(gateway),
            if enabled { "true" } else { "false" },
        )
        .await?;
    tracing::info!(
        gateway = gateway.as_str(),
        enabled,
        "payment gateway changed"
    );
    Ok(Data::new(gateway_out(&state, gateway).await?).into_response())
}

/// What the gateway said.
pub struct Verdict {
    pub approved: bool,
    pub failure: Option<String>,
}

/// Asks the HTTP gateway about one payment.
pub async fn ask_gateway(
    client: &reqwest::Client,
    gateway: &HttpGateway,
    payment: &PaymentTx,
) -> Verdict {
    let currency = payment.amount.currency();
    let request = client
        .post(&gateway.url)
        .timeout(gateway.timeout)
        .header("Idempotency-Key", &payment.id)
        .json(&GatewayRequest {
            order_id: &payment.order_id,
            payment_id: &payment.id,
            amount: payment.amount.amount_minor(),
            currency: currency.as_str(),
            method: payment.transaction_type.as_str(),
        })
        .send();
    let started = std::time::Instant::now();
    let declined = |why: &str| Verdict {
        approved: false,
        failure: Some(why.to_owned()),
    };
    let (verdict, outcome) = match request.await {
        Err(e) if e.is_timeout() => (declined("the gateway did not answer in time"), "timeout"),
        Err(_) => (declined("the gateway could not be reached"), "unreachable"),
        Ok(r) if !r.status().is_success() => (
            declined(&format!("the gateway answered {}", r.status().as_u16())),
            "error_status",
        ),
        Ok(r) => match r.json::<GatewayAnswer>().await {
            Ok(body) if body.decision.as_deref() == Some("approve") => (
                Verdict {
                    approved: true,
                    failure: None,
                },
                "approved",
            ),
            Ok(_) => (declined("the gateway declined the payment"), "declined"),
            Err(_) => (
                declined("the gateway's answer could not be read"),
                "unreadable",
            ),
        },
    };
    metrics::histogram!("stockroom_payment_gateway_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    verdict
}

/// Records the gateway's verdict on an attempt. A verdict is money that has moved (or not), so
/// a write that fails for a passing reason (the database busy or briefly unreachable) is tried
/// again until it lands or the attempt's deadline passes; only then may the overdue sweep
/// release the attempt.
pub async fn record_verdict(
    state: &AppState,
    payment: &PaymentTx,
    verdict: Verdict,
) -> Result<(), StoreError> {
    let mut pause = Duration::from_millis(50);
    loop {
        let settled = state
            .store
            .execute(WriteRequest::new(Command::Settle {
                order_id: payment.order_id.clone(),
                payment_id: payment.id.clone(),
                approved: verdict.approved,
                failure: verdict.failure.clone(),
            }))
            .await;
        match settled {
            Err(StoreError::Unavailable(cause)) if state.clock.now() < payment.expires_at => {
                tracing::warn!(%cause, payment = %payment.id, "recording a payment verdict failed; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Releases every payment attempt whose outcome is overdue; returns how many it released.
/// Every instance may run this at once: releasing is conditional on the attempt still being
/// pending, inside the writer's transaction, so each is released exactly once.
pub async fn release_overdue(state: &AppState) -> Result<usize, StoreError> {
    const BATCH: u64 = 100;
    let mut released = 0;
    loop {
        let overdue = state
            .store
            .expired_payments(state.clock.now(), BATCH)
            .await?;
        let n = overdue.len();
        let before = released;
        for p in overdue {
            let settled = state
                .store
                .execute(WriteRequest::new(Command::Settle {
                    order_id: p.order_id,
                    payment_id: p.id.clone(),
                    approved: false,
                    failure: Some("no outcome was recorded before the attempt expired".into()),
                }))
                .await;
            match settled {
                Ok(_) => released += 1,
                // One attempt that cannot be settled now must not hold up the others.
                Err(e) => {
                    tracing::warn!(error = %e, payment = %p.id, "releasing an overdue attempt failed")
                }
            }
        }
        // Done when the list ran short, or when a whole batch failed (the next sweep retries).
        if (n as u64) < BATCH || released == before {
            return Ok(released);
        }
    }
}

/// Voids every authorization older than [`PaymentSettings::authorization_timeout`] that was
/// never captured, releasing its stock; returns how many it voided. Each void is the store's
/// one `Void` command, conditional inside the writer's transaction on the authorization still
/// being uncaptured and unvoided: a capture that wins the race makes it a refusal, and
/// several instances sweeping at once void each authorization exactly once.
pub async fn void_overdue_authorizations(state: &AppState) -> Result<usize, StoreError> {
    const BATCH: u64 = 100;
    let timeout =
        i64::try_from(state.payments.authorization_timeout.as_micros()).unwrap_or(i64::MAX);
    let before = Timestamp(state.clock.now().micros().saturating_sub(timeout));
    let mut voided = 0;
    loop {
        let overdue = state.store.overdue_authorizations(before, BATCH).await?;
        let n = overdue.len();
        let mut progressed = false;
        for p in overdue {
            let answer = state
                .store
                .execute(WriteRequest::new(Command::Void {
                    order_id: p.order_id,
                    authorization_id: p.id.clone(),
                    overdue_before: Some(before),
                }))
                .await;
            match answer.map(|a| a.outcome) {
                Ok(Outcome::Applied(_)) => {
                    ::metrics::counter!("stockroom_authorizations_voided_total").increment(1);
                    voided += 1;
                    progressed = true;
                }
                // Captured, voided or cancelled meanwhile (here or by another instance).
                Ok(Outcome::Refused(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, payment = %p.id, "voiding an overdue authorization failed")
                }
            }
        }
        if (n as u64) < BATCH || !progressed {
            return Ok(voided);
        }
    }
}

/// Runs [`release_overdue`] and [`void_overdue_authorizations`] every `every` until the
/// process stops, and forgets idempotency keys older than [`IDEMPOTENCY_KEY_RETENTION_SECS`].
pub async fn housekeeping_forever(state: AppState, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match release_overdue(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released overdue payment attempts"),
            Err(e) => tracing::warn!(error = %e, "releasing overdue payment attempts failed"),
        }
        match void_overdue_authorizations(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(voided = n, "voided authorizations never captured"),
            Err(e) => tracing::warn!(error = %e, "voiding overdue authorizations failed"),
        }
        let before =
            Timestamp::from_secs(state.clock.now().secs() - IDEMPOTENCY_KEY_RETENTION_SECS);
        if let Err(e) = state.store.prune_idempotency(before).await {
            tracing::warn!(error = %e, "forgetting old idempotency keys failed");
        }
    }
}
