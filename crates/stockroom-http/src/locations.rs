//! Locations: Elastic Path's multi-location inventory (`/v2/inventories/locations`).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde_json::{json, Map, Value};
use stockroom_domain::ids::check_id;
use stockroom_domain::limits::{
    LOCATION_ADDRESS_LINES_MAX, LOCATION_NAME_LEN_MAX, LOCATION_NAME_LEN_MIN,
    LOCATION_SLUG_LEN_MAX, LOCATION_TEXT_LEN_MAX,
};
use stockroom_store::{Command, Location, Outcome, StoreError, WriteRequest};

use crate::error::ApiError;
use crate::extract::{check_type, data_object, idempotency_key, page, query_pairs, JsonBody};
use crate::{wire, AppState};

/// The slug of an existing location, checked; an unknown one is not found.
pub async fn location_slug(state: &AppState, slug: &str) -> Result<String, ApiError> {
    check_id(slug, LOCATION_SLUG_LEN_MAX)
        .map_err(|e| ApiError::invalid("location", format!("a location slug {e}")))?;
    state
        .store
        .location_by_slug(slug)
        .await?
        .map(|l| l.slug)
        .ok_or(ApiError::NotFound)
}

fn text(
    attrs: &Map<String, Value>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match attrs.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if (min..=max).contains(&s.chars().count()) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(
            field,
            format!("{field} must be a string of {min} to {max} characters"),
        )),
    }
}

/// Applies the attributes of a create or update body to `location`.
fn apply_attributes(location: &mut Location, attrs: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(name) = text(attrs, "name", LOCATION_NAME_LEN_MIN, LOCATION_NAME_LEN_MAX)? {
        location.name = name;
    }
    if let Some(slug) = text(attrs, "slug", 1, LOCATION_SLUG_LEN_MAX)? {
        check_id(&slug, LOCATION_SLUG_LEN_MAX)
            .map_err(|e| ApiError::invalid("slug", format!("slug {e}")))?;
        location.slug = slug;
    }
    if attrs.contains_key("external_ref") {
        location.external_ref = text(attrs, "external_ref", 0, LOCATION_TEXT_LEN_MAX)?;
    }
    if attrs.contains_key("description") {
        location.description = text(attrs, "description", 0, LOCATION_TEXT_LEN_MAX)?;
    }
    match attrs.get("address") {
        None => {}
        Some(Value::Null) => location.address = Vec::new(),
        Some(Value::Array(lines))
            if lines.len() <= LOCATION_ADDRESS_LINES_MAX
                && lines
                    .iter()
                    .all(|l| l.as_str().is_some_and(|s| s.len() <= LOCATION_TEXT_LEN_MAX)) =>
        {
            location.address = lines
                .iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect();
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "address",
                format!("address must be at most {LOCATION_ADDRESS_LINES_MAX} strings"),
            ))
        }
    }
    match attrs.get("geolocation") {
        None => {}
        Some(Value::Null) => location.geolocation = None,
        Some(Value::Object(g)) => {
            let lat = g
                .get("lat")
                .and_then(Value::as_f64)
                .filter(|v| (-90.0..=90.0).contains(v));
            let lon = g
                .get("lon")
                .and_then(Value::as_f64)
                .filter(|v| (-180.0..=180.0).contains(v));
            match lat.zip(lon) {
                Some(point) => location.geolocation = Some(point),
                None => {
                    return Err(ApiError::invalid(
                        "geolocation",
                        "geolocation is {\"lat\": -90…90, \"lon\": -180…180}",
                    ))
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "geolocation",
                "geolocation must be an object",
            ))
        }
    }
    Ok(())
}

fn attributes(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    let data = data_object(body)?;
    check_type(data, "inventory_location")?;
    match data.get("attributes") {
        Some(Value::Object(a)) => Ok(a),
        _ => Err(ApiError::invalid(
            "attributes",
            "data.attributes must be an object",
        )),
    }
}

pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let page = page(&query_pairs(query.as_deref()))?;
    let found = state.store.locations(page).await?;
    Ok(Json(wire::list(
        found.items.iter().map(wire::location).collect(),
        found.total,
        page,
        "/v2/inventories/locations",
        "",
    )))
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(json!({"data": wire::location(&location)})))
}

pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let attrs = attributes(&body)?;
    let now = state.clock.now();
    let mut location = Location {
        id: stockroom_store::new_id(),
        slug: String::new(),
        name: String::new(),
        external_ref: None,
        description: None,
        address: Vec::new(),
        geolocation: None,
        created_at: now,
        updated_at: now,
    };
    apply_attributes(&mut location, attrs)?;
    if location.name.is_empty() {
        return Err(ApiError::invalid("name", "name is required"));
    }
    if location.slug.is_empty() {
        return Err(ApiError::invalid("slug", "slug is required"));
    }
    let idempotency = idempotency_key(&headers, "POST /v2/inventories/locations".into(), &body)?;
    let answer = state
        .store
        .execute(WriteRequest {
            command: Command::CreateLocation(location),
            idempotency,
        })
        .await?;
    let id = match answer.outcome {
        Outcome::Applied(stockroom_store::Effect::Location(id)) => id,
        Outcome::Applied(_) => return Err(ApiError::Internal),
        Outcome::Refused(rejection) => return Err(rejection.into()),
    };
    let location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(wire::data(StatusCode::CREATED, wire::location(&location)))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let attrs = attributes(&body)?;
    let mut location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    apply_attributes(&mut location, attrs)?;
    location.updated_at = state.clock.now();
    let updated = match state.store.update_location(&location).await {
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict(
                "The slug is taken, or the location holds stock and so keeps its slug",
            ))
        }
        other => other?.ok_or(ApiError::NotFound)?,
    };
    Ok(Json(json!({"data": wire::location(&updated)})))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let answer = state
        .store
        .execute(WriteRequest::new(Command::DeleteLocation { id }))
        .await?;
    match answer.outcome {
        Outcome::Applied(_) => Ok(StatusCode::NO_CONTENT),
        Outcome::Refused(rejection) => Err(rejection.into()),
    }
}
