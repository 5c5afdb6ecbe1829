//! Locations: Elastic Path's multi-location inventory (`/v2/inventories/locations`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::Slug;
use stockroom_store::{Command, Effect, StoreError, WriteRequest};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Json, Query};
use crate::wire::locations::{LocationOut, LocationPatchBody, NewLocationBody};
use crate::wire::{Data, List, PageQuery};
use crate::AppState;

/// The slug of an existing location; an unknown one is not found.
pub async fn location_slug(state: &AppState, slug: &Slug) -> Result<String, ApiError> {
    let found = state.store.location_by_slug(slug.as_str()).await?;
    found.map(|l| l.slug).ok_or(ApiError::NotFound)
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query.page();
    let found = state.store.locations(page).await?;
    let items = found.items.iter().map(LocationOut::new).collect();
    let path = "/v2/inventories/locations";
    Ok(List::new(items, found.total, page, path, "").into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Data::new(LocationOut::new(&location)).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    Idempotent(body, idempotency): Idempotent<Data<NewLocationBody>>,
) -> Result<Response, ApiError> {
    let new = body.data.attributes;
    let location = new.into_location(stockroom_store::new_id(), state.clock.now());
    let command = Command::CreateLocation(location);
    let request = WriteRequest {
        command,
        idempotency,
    };
    let Effect::Location(id) = applied(state.store.execute(request).await?.outcome)? else {
        return Err(ApiError::Internal);
    };
    let location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    Ok(Data::new(LocationOut::new(&location)).with_status(StatusCode::CREATED))
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Data<LocationPatchBody>>,
) -> Result<Response, ApiError> {
    let mut location = state.store.location(&id).await?.ok_or(ApiError::NotFound)?;
    body.data.attributes.apply(&mut location, state.clock.now());
    let updated = match state.store.update_location(&location).await {
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict(
                "The slug is taken, or the location holds stock and so keeps its slug",
            ))
        }
        other => other?.ok_or(ApiError::NotFound)?,
    };
    Ok(Data::new(LocationOut::new(&updated)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let command = Command::DeleteLocation { id };
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    Ok(StatusCode::NO_CONTENT)
}
