//! Payments (wire-contract §6): pay for an order, read its payment transactions, capture,
//! void (cancel) or refund one. The gateways themselves are in `gateways`.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::de::IgnoredAny;
use stockroom_domain::{Role, Timestamp};
use stockroom_store::{Command, Effect, NewPayment, PaymentStatus, PaymentTx, WriteRequest};

use crate::caller::Caller;
use crate::customers::party;
use crate::error::{applied, ApiError};
use crate::extract::Idempotent;
use crate::gateways::{ask_gateway, is_enabled, record_verdict};
use crate::orders::readable;
// Where the release of overdue attempts has always been reached from.
pub use crate::gateways::release_overdue;
use crate::wire::payments::{Gateway, PaymentOut, PaymentRequest, RefundRequest};
use crate::wire::Data;
use crate::AppState;

/// Whether `gateway` may be used by this caller: only enabled gateways may (`/v2/gateways`);
/// an administrator may always record a `manual` payment. The store refuses a payment through
/// a gateway that may not be used before anything is written — after its idempotency key is
/// looked up, so that a replay answers what the first request got.
async fn may_use(state: &AppState, caller: Caller, gateway: Gateway) -> Result<bool, ApiError> {
    let admin_records_manual = gateway == Gateway::Manual && caller.role == Role::Admin;
    Ok(admin_records_manual || is_enabled(state, gateway).await?)
}

fn deadline_after(state: &AppState, d: std::time::Duration) -> Timestamp {
    let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    Timestamp(state.clock.now().micros().saturating_add(micros))
}

/// `POST /v2/orders/{id}/payments`: allocate every line at once, then ask the gateway with no
/// lock held, then record its answer (releasing the allocation if it failed).
pub async fn pay(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Idempotent(body, idempotency): Idempotent<Data<PaymentRequest>>,
) -> Result<Response, ApiError> {
    let request = body.data;
    let gateway_enabled = may_use(&state, caller, request.gateway).await?;
    let order = state.store.order(&id).await?.ok_or(ApiError::NotFound)?;
    if request
        .amount
        .is_some_and(|a| a != order.total.amount_minor())
    {
        return Err(ApiError::invalid(
            "data.amount",
            "split payments are not supported: leave amount out or send the order total",
        ));
    }
    let payment = NewPayment {
        id: stockroom_store::new_id(),
        gateway: request.gateway.as_str().to_owned(),
        method: request.method,
        expires_at: deadline_after(&state, state.payments.pending_timeout),
    };
    let command = Command::Pay {
        order_id: id.clone(),
        payment,
        // The manual gateway settles at once: it cannot fail.
        settled: request.gateway == Gateway::Manual,
        gateway_enabled,
    };
    let answer = state
        .store
        .execute(WriteRequest {
            command,
            idempotency,
        })
        .await?;
    let Effect::Payment { payment_id, .. } = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    let payment = state.store.payment(&id, &payment_id).await?;
    let mut payment = payment.ok_or(ApiError::Internal)?;
    // A replay of a pending attempt asks the gateway too: its first request may still be
    // waiting, or may have died (a 503 or a crash after the attempt was written) without ever
    // asking. The gateway gets the attempt's id as its `Idempotency-Key`, and the first verdict
    // recorded stands, so asking twice moves no money twice and both answers agree.
    if payment.status == PaymentStatus::Pending {
        payment = settle_with_gateway(&state, payment).await?;
    }
    if payment.status == PaymentStatus::Failed {
        return Err(ApiError::PaymentFailed);
    }
    Ok(Data::new(PaymentOut::new(&payment)).into_response())
}

/// Asks the HTTP gateway about a pending attempt, records its verdict and reads the attempt
/// back. In its own task: a client that hangs up must not leave the attempt unsettled.
async fn settle_with_gateway(state: &AppState, payment: PaymentTx) -> Result<PaymentTx, ApiError> {
    let Some(http) = state.payments.http.clone() else {
        return Ok(payment);
    };
    let task_state = state.clone();
    let asked = payment.clone();
    let settled = tokio::spawn(async move {
        let verdict = ask_gateway(&task_state.http_client, &http, &asked).await;
        record_verdict(&task_state, &asked, verdict).await
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    settled?;
    let read = state.store.payment(&payment.order_id, &payment.id).await?;
    read.ok_or(ApiError::Internal)
}

/// An order's payment transactions: read as the order is (SPEC §3, [`readable`]): an
/// administrator's, or a customer's own order with its customer token.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    readable(&state, &party(&state, caller, &headers)?, &id).await?;
    let payments = state.store.payments(&id).await?;
    let answer: Vec<_> = payments.iter().map(PaymentOut::new).collect();
    Ok(Data::new(answer).into_response())
}

/// One payment transaction, read as its order is (as [`list`]).
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path((id, tid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    readable(&state, &party(&state, caller, &headers)?, &id).await?;
    let payment = state.store.payment(&id, &tid).await?;
    let payment = payment.ok_or(ApiError::NotFound)?;
    Ok(Data::new(PaymentOut::new(&payment)).into_response())
}

/// `POST /v2/orders/{id}/transactions/{tid}/capture`; any body is ignored (the SDK sends none).
pub async fn capture(
    State(state): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
    Idempotent(IgnoredAny, idempotency): Idempotent<IgnoredAny>,
) -> Result<Response, ApiError> {
    let command = Command::Capture {
        order_id: id.clone(),
        authorization_id: tid,
        capture_id: stockroom_store::new_id(),
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    let Effect::Payment { payment_id, .. } = applied(state.store.execute(request).await?.outcome)?
    else {
        return Err(ApiError::Internal);
    };
    let payment = state.store.payment(&id, &payment_id).await?;
    let payment = payment.ok_or(ApiError::Internal)?;
    Ok(Data::new(PaymentOut::new(&payment)).into_response())
}

/// Runs one command on a payment transaction and answers with the transaction it names.
async fn transaction_command(
    state: &AppState,
    order_id: &str,
    command: Command,
    idempotency: Option<stockroom_store::IdempotencyKey>,
) -> Result<Response, ApiError> {
    let request = WriteRequest {
        command,
        idempotency,
    };
    let Effect::Payment { payment_id, .. } = applied(state.store.execute(request).await?.outcome)?
    else {
        return Err(ApiError::Internal);
    };
    let payment = state.store.payment(order_id, &payment_id).await?;
    let payment = payment.ok_or(ApiError::Internal)?;
    Ok(Data::new(PaymentOut::new(&payment)).into_response())
}

/// `POST /v2/orders/{id}/transactions/{tid}/cancel`: voids an authorization that was not
/// captured, releasing its allocation exactly once; the order is unpaid again. Any body is
/// ignored.
pub async fn void(
    State(state): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
    Idempotent(IgnoredAny, idempotency): Idempotent<IgnoredAny>,
) -> Result<Response, ApiError> {
    let command = Command::Void {
        order_id: id.clone(),
        authorization_id: tid,
        overdue_before: None,
    };
    transaction_command(&state, &id, command, idempotency).await
}

/// `POST /v2/orders/{id}/transactions/{tid}/refund`: records money given back for a paid
/// transaction (all that is left, or `data.amount`); moves no stock.
pub async fn refund(
    State(state): State<AppState>,
    Path((id, tid)): Path<(String, String)>,
    Idempotent(body, idempotency): Idempotent<Option<Data<RefundRequest>>>,
) -> Result<Response, ApiError> {
    let amount = body.and_then(|b| b.data.amount);
    if amount.is_some_and(|a| !(1..=stockroom_domain::limits::MONEY_AMOUNT_MAX).contains(&a)) {
        return Err(ApiError::invalid(
            "data.amount",
            "amount must be a positive whole number of minor units",
        ));
    }
    let command = Command::Refund {
        order_id: id.clone(),
        transaction_id: tid,
        refund_id: stockroom_store::new_id(),
        amount,
    };
    transaction_command(&state, &id, command, idempotency).await
}
