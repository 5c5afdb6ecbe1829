//! The classic (single-location) inventory API, wire-contract §3.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use stockroom_domain::limits::{MULTIPLE_IDS_MAX, REASON_LEN_MAX};
use stockroom_domain::{Action, ProductId, Timestamp};
use stockroom_store::{Command, Effect, HistoryQuery, Outcome, WriteRequest};

use crate::error::ApiError;
use crate::extract::{
    check_type, data_array, data_object, idempotency_key, optional_string, page, parse_filter,
    parse_time, quantity, query_pairs, required_string, JsonBody,
};
use crate::{wire, AppState};

/// A product id from the path; one that cannot exist is simply not found.
fn path_product(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ApiError::NotFound)
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = page(&query_pairs(query.as_deref()))?;
    let found = state.store.stocks(page).await?;
    let items = found.items.iter().map(wire::stock).collect();
    Ok(Json(wire::list(
        items,
        found.total,
        page,
        "/v2/inventories",
        "",
    )))
}

pub async fn get(
    State(state): State<AppState>,
    Path(product): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let record = state
        .store
        .stock(&product)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "data": wire::stock(&record) })))
}

pub async fn create(
    State(state): State<AppState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let product = ProductId::parse(&product)
        .map_err(|e| ApiError::invalid("id", format!("product id {e}")))?;
    let data = data_object(&body)?;
    let quantity = quantity(data, "quantity")?;
    let idempotency = idempotency_key(&headers, format!("POST /v2/inventories/{product}"), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::Create { product, quantity },
            idempotency,
        })
        .await?;
    match answer.outcome {
        Outcome::Applied(Effect::Entry(entry)) => Ok((
            StatusCode::CREATED,
            Json(json!({ "data": wire::stock_after(&entry) })),
        )
            .into_response()),
        Outcome::Applied(_) => Err(ApiError::Internal),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(product): Path<String>,
) -> Result<StatusCode, ApiError> {
    let product = path_product(&product)?;
    let answer = state
        .store
        .execute(WriteRequest::new(Command::Delete { product }))
        .await?;
    match answer.outcome {
        Outcome::Applied(_) => Ok(StatusCode::NO_CONTENT),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

/// `POST /v2/inventories/multiple`: the records of the ids that have one, in the order asked;
/// ids with no stock are left out.
pub async fn multiple(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let items = data_array(&body)?;
    if items.len() > MULTIPLE_IDS_MAX {
        return Err(ApiError::invalid(
            "data",
            format!("at most {MULTIPLE_IDS_MAX} ids at once"),
        ));
    }
    let ids = items
        .iter()
        .map(|item| {
            let obj = item
                .as_object()
                .ok_or_else(|| ApiError::invalid("data", "each item must be {\"id\": …}"))?;
            let id = required_string(obj, "id")?;
            ProductId::parse(id).map_err(|e| ApiError::invalid("id", format!("id {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let records = state.store.stocks_by_ids(&ids).await?;
    Ok(Json(
        json!({ "data": records.iter().map(wire::stock).collect::<Vec<_>>() }),
    ))
}

pub async fn post_transaction(
    State(state): State<AppState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let data = data_object(&body)?;
    check_type(data, "stock-transaction")?;
    let action = required_string(data, "action")?;
    let action = action
        .parse::<Action>()
        .ok()
        .filter(|a| a.is_postable())
        .ok_or_else(|| {
            ApiError::invalid(
                "action",
                "action must be one of increment, decrement, allocate, deallocate, set",
            )
        })?;
    let quantity = quantity(data, "quantity")?;
    let reason = optional_string(data, "reason", REASON_LEN_MAX)?;
    let idempotency = idempotency_key(
        &headers,
        format!("POST /v2/inventories/{product}/transactions"),
        &body,
    )?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::Transact {
                product,
                action,
                quantity,
                order_id: None,
                reason,
            },
            idempotency,
        })
        .await?;
    match answer.outcome {
        Outcome::Applied(Effect::Entry(entry)) => {
            Ok(Json(json!({ "data": wire::transaction(&entry) })))
        }
        Outcome::Applied(_) => Err(ApiError::Internal),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

/// `filter` terms on the history: `eq(action,…)` and `gt|ge|lt|le(created_at,<RFC 3339>)`.
fn history_query(filter: Option<&str>) -> Result<HistoryQuery, ApiError> {
    let mut query = HistoryQuery::default();
    let Some(filter) = filter else {
        return Ok(query);
    };
    for term in parse_filter(filter)? {
        match (term.op.as_str(), term.field.as_str()) {
            ("eq", "action") => {
                query.action = Some(term.value.parse::<Action>().map_err(|_| {
                    ApiError::invalid("filter", format!("unknown action {:?}", term.value))
                })?);
            }
            (op @ ("gt" | "ge" | "lt" | "le"), "created_at") => {
                let t = parse_time("filter", &term.value)?;
                let bound = |offset: i64| Some(Timestamp(t.micros().saturating_add(offset)));
                match op {
                    "ge" => query.created_from = bound(0),
                    "gt" => query.created_from = bound(1),
                    "lt" => query.created_before = bound(0),
                    _ => query.created_before = bound(1),
                }
            }
            _ => {
                return Err(ApiError::invalid(
                    "filter",
                    "filter supports eq(action,…) and gt/ge/lt/le(created_at,<RFC 3339 time>)",
                ))
            }
        }
    }
    Ok(query)
}

pub async fn list_transactions(
    State(state): State<AppState>,
    Path(product): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let pairs = query_pairs(raw.as_deref());
    let page = page(&pairs)?;
    let filter = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.as_str());
    let query = history_query(filter)?;
    let found = state.store.history(&product, &query, page).await?;
    if found.total == 0 && state.store.stock(&product).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let extra = filter.map(|f| format!("&filter={f}")).unwrap_or_default();
    Ok(Json(wire::list(
        found.items.iter().map(wire::transaction).collect(),
        found.total,
        page,
        &format!("/v2/inventories/{product}/transactions"),
        &extra,
    )))
}

pub async fn get_transaction(
    State(state): State<AppState>,
    Path((product, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let entry = state
        .store
        .history_entry(&product, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "data": wire::transaction(&entry) })))
}
