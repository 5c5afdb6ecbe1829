//! Payment gateways and the release of overdue payment attempts.
//!
//! `manual` is built in and always approves. The HTTP gateway, when configured, is asked with a
//! `POST` of the order id, payment id, amount and currency, and an `Idempotency-Key` of the
//! payment id; it must answer 2xx with `{"decision":"approve"}`. Anything else — `decline`,
//! another status, a connection error, the timeout — is a failed payment. The gateway is always
//! called with no database transaction or lock held.

use std::time::Duration;

use stockroom_domain::limits::IDEMPOTENCY_KEY_RETENTION_SECS;
use stockroom_domain::Timestamp;
use stockroom_store::{Command, PaymentTx, StoreError, WriteRequest};

use crate::wire::payments::{GatewayAnswer, GatewayRequest};
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
}

impl Default for PaymentSettings {
    fn default() -> Self {
        PaymentSettings {
            http: None,
            pending_timeout: Duration::from_secs(120),
        }
    }
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

/// Runs [`release_overdue`] every `every` until the process stops, and forgets idempotency
/// keys older than [`IDEMPOTENCY_KEY_RETENTION_SECS`].
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
        let before =
            Timestamp::from_secs(state.clock.now().secs() - IDEMPOTENCY_KEY_RETENTION_SECS);
        if let Err(e) = state.store.prune_idempotency(before).await {
            tracing::warn!(error = %e, "forgetting old idempotency keys failed");
        }
    }
}
