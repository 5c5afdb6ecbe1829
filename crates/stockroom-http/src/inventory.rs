//! The inventory API, wire-contract §3 (classic) and §4 (multi-location). The same paths serve
//! both; a request with `EP-Inventories-Multi-Location: true` (any case) gets the
//! multi-location shapes. Stock that uses no locations reads the same either way.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use stockroom_domain::limits::{MULTIPLE_IDS_MAX, REASON_LEN_MAX};
use stockroom_domain::{Action, ProductId, Quantity, Timestamp};
use stockroom_store::{
    Command, Effect, HistoryEntry, HistoryQuery, Outcome, ProductStock, WriteRequest, NO_LOCATION,
};

use crate::error::ApiError;
use crate::extract::{
    check_type, data_array, data_object, idempotency_key, optional_string, page, parse_filter,
    parse_time, quantity, query_pairs, required_string, JsonBody,
};
use crate::locations::location_slug;
use crate::{wire, AppState};

/// A product id from the path; one that cannot exist is simply not found.
fn path_product(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// Whether the request asks for Elastic Path's multi-location shapes.
pub fn multi_location(headers: &HeaderMap) -> bool {
    headers
        .get("ep-inventories-multi-location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn render_stock(headers: &HeaderMap, stock: &ProductStock) -> Value {
    render_stock_as(multi_location(headers), stock)
}

fn render_stock_as(multi_location: bool, stock: &ProductStock) -> Value {
    if multi_location {
        wire::stock_mli(stock)
    } else {
        wire::stock(stock)
    }
}

fn render_transaction(headers: &HeaderMap, entry: &HistoryEntry) -> Value {
    if multi_location(headers) {
        wire::transaction_mli(entry)
    } else {
        wire::transaction(entry)
    }
}

/// The value of a `filter=eq(location,…)` (or the SDK's `eq(locations,…)`) term, if any;
/// other terms are left to the caller.
fn location_term(term: &crate::extract::FilterTerm) -> Option<&str> {
    (term.op == "eq" && (term.field == "location" || term.field == "locations"))
        .then_some(term.value.as_str())
}

fn filter_of(pairs: &[(String, String)]) -> Option<&str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "filter")
        .map(|(_, v)| v.as_str())
}

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(query.as_deref());
    let page = page(&pairs)?;
    let mut location = None;
    if let Some(filter) = filter_of(&pairs) {
        for term in parse_filter(filter)? {
            location = Some(
                location_term(&term)
                    .ok_or_else(|| {
                        ApiError::invalid("filter", "stock lists filter on eq(locations,<slug>)")
                    })?
                    .to_owned(),
            );
        }
    }
    let found = state.store.stocks(page, location.as_deref()).await?;
    let items = found
        .items
        .iter()
        .map(|s| render_stock(&headers, s))
        .collect();
    let extra = filter_of(&pairs)
        .map(|f| format!("&filter={f}"))
        .unwrap_or_default();
    Ok(Json(wire::list(
        items,
        found.total,
        page,
        "/v2/inventories",
        &extra,
    )))
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let stock = state
        .store
        .stock(&product)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(json!({ "data": render_stock(&headers, &stock) })))
}

/// Runs a write that changes a product's stock as a whole and answers with the stock after it.
async fn write_stock(
    state: &AppState,
    multi_location: bool,
    request: WriteRequest,
    product: &ProductId,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let answer = state.store.execute(request).await?;
    if let Outcome::Refused(rejection) = answer.outcome {
        return Err(rejection.into());
    }
    // A change that removed the product's last record leaves it with no stock: show that.
    let stock = state
        .store
        .stock(product)
        .await?
        .unwrap_or_else(|| ProductStock {
            product_id: product.clone(),
            total: 0,
            allocated: 0,
            created_at: state.clock.now(),
            updated_at: state.clock.now(),
            records: Vec::new(),
        });
    Ok(wire::data(status, render_stock_as(multi_location, &stock)))
}

/// `POST /v2/inventories/{id}` (classic): stock with no location.
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
    let request = WriteRequest {
        command: Command::Create {
            product: product.clone(),
            records: vec![(NO_LOCATION.to_owned(), quantity)],
        },
        idempotency,
    };
    if multi_location(&headers) {
        return write_stock(&state, true, request, &product, StatusCode::CREATED).await;
    }
    let answer = state.store.execute(request).await?;
    match answer.outcome {
        Outcome::Applied(Effect::Entry(entry)) => {
            Ok(wire::data(StatusCode::CREATED, wire::stock_after(&entry)))
        }
        Outcome::Applied(_) => Err(ApiError::Internal),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

/// `attributes.locations` of a multi-location body: slug → `{"available": n}` or `null`.
async fn location_changes(
    state: &AppState,
    attributes: &Map<String, Value>,
) -> Result<Vec<(String, Option<Quantity>)>, ApiError> {
    let mut changes = Vec::new();
    if attributes.get("available").is_some_and(|v| !v.is_null()) {
        changes.push((
            NO_LOCATION.to_owned(),
            Some(quantity(attributes, "available")?),
        ));
    }
    match attributes.get("locations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(locations)) => {
            if locations.len() > stockroom_domain::limits::LOCATIONS_PER_REQUEST_MAX {
                return Err(ApiError::invalid("locations", "too many locations at once"));
            }
            for (slug, change) in locations {
                location_slug(state, slug).await?;
                let change = match change {
                    Value::Null => None,
                    Value::Object(figures) => Some(quantity(figures, "available")?),
                    _ => {
                        return Err(ApiError::invalid(
                            "locations",
                            "each location is {\"available\": n} or null",
                        ))
                    }
                };
                changes.push((slug.clone(), change));
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "locations",
                "locations must be an object",
            ))
        }
    }
    Ok(changes)
}

fn stock_attributes(data: &Map<String, Value>) -> Result<&Map<String, Value>, ApiError> {
    check_type(data, "stock")?;
    match data.get("attributes") {
        Some(Value::Object(a)) => Ok(a),
        _ => Err(ApiError::invalid(
            "attributes",
            "data.attributes must be an object",
        )),
    }
}

/// `POST /v2/inventories` (multi-location): `{"data":{"type":"stock","id":…,"attributes":
/// {"available":n} | {"locations":{"slug":{"available":n}}}}}`.
pub async fn create_multi(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let data = data_object(&body)?;
    let product = ProductId::parse(required_string(data, "id")?)
        .map_err(|e| ApiError::invalid("id", format!("id {e}")))?;
    let changes = location_changes(&state, stock_attributes(data)?).await?;
    let records = changes
        .into_iter()
        .map(|(slug, q)| {
            q.map(|q| (slug, q)).ok_or_else(|| {
                ApiError::invalid("locations", "a new location needs an available quantity")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if records.is_empty() {
        return Err(ApiError::invalid(
            "attributes",
            "give available or locations",
        ));
    }
    let idempotency = idempotency_key(&headers, "POST /v2/inventories".into(), &body)?;
    let request = WriteRequest {
        command: Command::Create {
            product: product.clone(),
            records,
        },
        idempotency,
    };
    write_stock(&state, true, request, &product, StatusCode::CREATED).await
}

/// `PUT /v2/inventories/{id}` (multi-location): per-location `available`; `null` removes a
/// location (refused while it has allocated units).
pub async fn update_multi(
    State(state): State<AppState>,
    Path(product): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let data = data_object(&body)?;
    if let Some(id) = data.get("id").and_then(Value::as_str) {
        if id != product.as_str() {
            return Err(ApiError::invalid(
                "id",
                "data.id must be the product in the path",
            ));
        }
    }
    let changes = location_changes(&state, stock_attributes(data)?).await?;
    let request = WriteRequest::new(Command::SetLocations {
        product: product.clone(),
        changes,
    });
    write_stock(&state, true, request, &product, StatusCode::OK).await
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

/// `POST /v2/inventories/multiple`: the stock of the ids that have any, in the order asked;
/// ids with no stock are left out.
pub async fn multiple(
    State(state): State<AppState>,
    headers: HeaderMap,
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
    Ok(Json(json!({
        "data": records.iter().map(|s| render_stock(&headers, s)).collect::<Vec<_>>()
    })))
}

/// A transaction body in any of the shapes clients send: classic `data.{action,quantity}`,
/// the multi-location spec's `data.type` + `data.attributes`, or the SDK's
/// `data.attributes.type`.
fn transaction_fields(data: &Map<String, Value>) -> Result<&Map<String, Value>, ApiError> {
    match data.get("attributes") {
        Some(Value::Object(attributes)) => {
            check_type(data, "stock-transaction")?;
            check_type(attributes, "stock-transaction")?;
            Ok(attributes)
        }
        Some(_) => Err(ApiError::invalid(
            "attributes",
            "data.attributes must be an object",
        )),
        None => {
            check_type(data, "stock-transaction")?;
            Ok(data)
        }
    }
}

pub async fn post_transaction(
    State(state): State<AppState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let data = data_object(&body)?;
    let fields = transaction_fields(data)?;
    if let Some(id) = fields.get("product_id").filter(|v| !v.is_null()) {
        if id.as_str() != Some(product.as_str()) {
            return Err(ApiError::invalid(
                "product_id",
                "product_id must be the product in the path",
            ));
        }
    }
    let action = required_string(fields, "action")?;
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
    let quantity = quantity(fields, "quantity")?;
    let reason = optional_string(fields, "reason", REASON_LEN_MAX)?;
    let location = match optional_string(
        fields,
        "location",
        stockroom_domain::limits::LOCATION_SLUG_LEN_MAX,
    )? {
        Some(slug) => location_slug(&state, &slug).await?,
        None => NO_LOCATION.to_owned(),
    };
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
                location,
                action,
                quantity,
                order_id: None,
                reason,
            },
            idempotency,
        })
        .await?;
    // Elastic Path answers 200 on the classic API and 201 on the multi-location one.
    let status = if multi_location(&headers) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    match answer.outcome {
        Outcome::Applied(Effect::Entry(entry)) => {
            Ok(wire::data(status, render_transaction(&headers, &entry)))
        }
        Outcome::Applied(_) => Err(ApiError::Internal),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}

/// `filter` terms on the history: `eq(action,…)`, `eq(location,…)` and
/// `gt|ge|lt|le(created_at,<RFC 3339>)`.
fn history_query(filter: Option<&str>) -> Result<HistoryQuery, ApiError> {
    let mut query = HistoryQuery::default();
    let Some(filter) = filter else {
        return Ok(query);
    };
    for term in parse_filter(filter)? {
        if let Some(slug) = location_term(&term) {
            query.location = Some(slug.to_owned());
            continue;
        }
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
                    "filter supports eq(action,…), eq(location,…) and gt/ge/lt/le(created_at,<RFC 3339 time>)",
                ))
            }
        }
    }
    Ok(query)
}

pub async fn list_transactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let pairs = query_pairs(raw.as_deref());
    let page = page(&pairs)?;
    let filter = filter_of(&pairs);
    let query = history_query(filter)?;
    let found = state.store.history(&product, &query, page).await?;
    if found.total == 0 && state.store.stock(&product).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let extra = filter.map(|f| format!("&filter={f}")).unwrap_or_default();
    Ok(Json(wire::list(
        found
            .items
            .iter()
            .map(|e| render_transaction(&headers, e))
            .collect(),
        found.total,
        page,
        &format!("/v2/inventories/{product}/transactions"),
        &extra,
    )))
}

pub async fn get_transaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((product, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let product = path_product(&product)?;
    let entry = state
        .store
        .history_entry(&product, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(
        json!({ "data": render_transaction(&headers, &entry) }),
    ))
}
