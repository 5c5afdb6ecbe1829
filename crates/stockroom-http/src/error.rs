//! The one table that maps every error to its HTTP status, title and detail.
//!
//! Errors are Elastic Path's `{"errors":[{"status":<integer>,"title":…,"detail":…}]}`; the SDK
//! only ever sees this body, so `status` always equals the HTTP code.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stockroom_domain::order::OrderError;
use stockroom_domain::Refusal;
use stockroom_store::{Effect, Outcome, Rejection, StoreError};

/// How long a client should wait before retrying a 503, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the body or query is malformed or breaks a limit. `source` names the field, as a
    /// path into the body (`data.attributes.price.amount`) or the query parameter.
    Invalid {
        detail: String,
        source: Option<Cow<'static, str>>,
    },
    /// 400: a body that is not JSON at all.
    BadJson(String),
    /// 401: no token, or a bad or expired one.
    Unauthenticated,
    /// 401 at the token endpoint: unknown client or wrong secret.
    BadCredentials,
    /// 403: a valid token without the right.
    Forbidden,
    /// 404
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 408: the request's body did not arrive within the body-read timeout.
    BodyTimedOut,
    /// 429: too many (failed) attempts from this client; come back after `retry_after_secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 409, with what conflicts.
    Conflict(&'static str),
    /// 413
    PayloadTooLarge,
    /// 422: the idempotency key was used before with a different request.
    IdempotencyMismatch,
    /// 422: stock arithmetic refused the change.
    Insufficient(Refusal),
    /// 400 `Insufficient stock`: the order flow's stock check. Names no product and no quantity,
    /// so shoppers cannot learn stock levels from it.
    OutOfStock,
    /// 400: the payment gateway did not approve the payment.
    PaymentFailed,
    /// 409: the order's state does not allow this.
    OrderConflict(OrderError),
    /// 503: try again shortly.
    Unavailable,
    /// 503: the request took longer than the server allows; its outcome is unknown.
    TimedOut,
    /// 500: a bug; the cause is logged, never sent.
    Internal,
}

impl ApiError {
    pub fn invalid(source: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            detail: detail.into(),
            source: Some(source.into()),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Invalid { detail, .. } => {
                (StatusCode::BAD_REQUEST, "Validation Error", detail.clone())
            }
            ApiError::BadJson(e) => (
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("The request body is not valid JSON: {e}"),
            ),
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "Unable to validate access token",
                "Send a valid, unexpired token as 'Authorization: Bearer <token>'".into(),
            ),
            ApiError::BadCredentials => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "The client id or secret is not valid".into(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This token may not do that".into(),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not Found",
                "The resource could not be found".into(),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                "This method is not allowed on this resource".into(),
            ),
            ApiError::Conflict(what) => (StatusCode::CONFLICT, "Conflict", (*what).into()),
            ApiError::BodyTimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "Request Timeout",
                "The request body did not arrive in time".into(),
            ),
            ApiError::TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                format!("Too many requests; try again in {retry_after_secs} s"),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Payload Too Large",
                format!(
                    "The request body may be at most {} bytes",
                    stockroom_domain::limits::BODY_BYTES_MAX
                ),
            ),
            ApiError::IdempotencyMismatch => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Idempotency key reused",
                "This Idempotency-Key was used before with a different request".into(),
            ),
            ApiError::Insufficient(refusal) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Cannot complete request",
                match refusal {
                    Refusal::InsufficientAvailable => {
                        "Your request could not be completed due to insufficient stock levels"
                    }
                    Refusal::InsufficientAllocated => {
                        "Your request could not be completed: not enough stock is allocated"
                    }
                    Refusal::BelowAllocated => {
                        "Your request could not be completed: the total cannot be set below the allocated stock"
                    }
                    Refusal::TotalTooLarge => {
                        "Your request could not be completed: the total would exceed 10^15"
                    }
                    Refusal::NotApplicable => "Your request could not be completed",
                }
                .into(),
            ),
            ApiError::OutOfStock => (
                StatusCode::BAD_REQUEST,
                "Insufficient stock",
                "There is not enough stock to complete this request".into(),
            ),
            ApiError::PaymentFailed => (
                StatusCode::BAD_REQUEST,
                "Payment failed",
                "The payment was not approved; the order is still unpaid and may be paid again"
                    .into(),
            ),
            ApiError::OrderConflict(e) => (StatusCode::CONFLICT, "Conflict", format!("{e}")),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "The service is busy or its database is unreachable; try again shortly".into(),
            ),
            ApiError::TimedOut => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Request timed out",
                "The request took too long and its outcome is unknown; retry it with the same Idempotency-Key".into(),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                "Something went wrong on our side".into(),
            ),
        }
    }
}

/// Elastic Path's error body: `{"errors":[…]}`, always one error here.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Errors)]
pub struct ErrorsBody<'a> {
    #[schema(min_items = 1)]
    errors: [ErrorItem<'a>; 1],
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
struct ErrorItem<'a> {
    /// Always the HTTP status.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    title: &'a str,
    detail: &'a str,
    /// The field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, title, detail) = self.parts();
        let source = match &self {
            ApiError::Invalid { source, .. } => source.as_deref(),
            _ => None,
        };
        let body = ErrorsBody {
            errors: [ErrorItem {
                status: status.as_u16(),
                title,
                detail: &detail,
                source,
            }],
        };
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after = match self {
            ApiError::TooManyRequests { retry_after_secs } => Some(retry_after_secs),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyMismatch => ApiError::IdempotencyMismatch,
            StoreError::AlreadyExists => ApiError::Conflict("Write conflict detected"),
            StoreError::Constraint(cause) => {
                tracing::warn!(%cause, "a write broke a database constraint");
                ApiError::Conflict("The request goes beyond a limit of the stored data")
            }
            StoreError::RaceLost(cause) => {
                tracing::warn!(%cause, "a write kept losing races");
                ApiError::Unavailable
            }
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::Unavailable
            }
            StoreError::Internal(cause) => {
                tracing::error!(%cause, "storage error");
                ApiError::Internal
            }
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::NotFound => ApiError::NotFound,
            Rejection::AlreadyExists => ApiError::Conflict("Stock for this product already exists"),
            Rejection::HasAllocations => ApiError::Conflict(
                "Stock with allocated units cannot be deleted; ship or release them first",
            ),
            Rejection::Stock(refusal) => ApiError::Insufficient(refusal),
            Rejection::OutOfStock => ApiError::OutOfStock,
            Rejection::ProductTaken => ApiError::Conflict("A product with this id or SKU exists"),
            Rejection::CartLimit => ApiError::Invalid {
                detail: format!(
                    "A cart holds at most {} lines of at most {} units each",
                    stockroom_domain::limits::CART_LINES_MAX,
                    stockroom_domain::limits::QUANTITY_MAX
                ),
                source: Some("quantity".into()),
            },
            Rejection::CurrencyMismatch => ApiError::Invalid {
                detail: "A cart holds products priced in one currency".into(),
                source: Some("currency".into()),
            },
            Rejection::Order(e) => ApiError::OrderConflict(e),
            Rejection::LocationRequired => ApiError::Invalid {
                detail: "This product's stock is held at locations: name one with `location`"
                    .into(),
                source: Some("location".into()),
            },
            Rejection::LocationInUse => ApiError::Conflict(
                "The location's slug is taken, or the location still holds stock",
            ),
            Rejection::CartEmpty => ApiError::Invalid {
                detail: "the cart is empty".into(),
                source: Some("cart".into()),
            },
            Rejection::OrderTotalTooLarge => ApiError::Invalid {
                detail: "the order total is too large".into(),
                source: Some("cart".into()),
            },
            Rejection::OrderTooLarge => ApiError::Invalid {
                detail: format!(
                    "An order holds at most {} lines and {} units in all",
                    stockroom_domain::limits::ORDER_LINES_MAX,
                    stockroom_domain::limits::ORDER_UNITS_MAX
                ),
                source: Some("cart".into()),
            },
            Rejection::GatewayDisabled => ApiError::Invalid {
                detail: "the payment's gateway is not enabled for payments".into(),
                source: Some("data.gateway".into()),
            },
        }
    }
}

/// The effect of a write that was applied, or the error its refusal maps to.
pub fn applied(outcome: Outcome) -> Result<Effect, ApiError> {
    match outcome {
        Outcome::Applied(effect) => Ok(effect),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}
