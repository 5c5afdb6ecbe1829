//! Products: Stockroom's minimal catalog (a name, SKU and price per product).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stockroom_domain::ProductId;
use stockroom_store::{Command, Effect, Product, ProductPatch, StoreError, WriteRequest};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Json, Query};
use crate::inventory::path_product;
use crate::wire::products::{NewProductBody, ProductOut, ProductPatchBody};
use crate::wire::{Data, List, PageQuery};
use crate::AppState;

pub async fn create(
    State(state): State<AppState>,
    Idempotent(mut body, idempotency): Idempotent<Data<NewProductBody>>,
) -> Result<Response, ApiError> {
    let id = match body.data.id.take() {
        Some(id) => id,
        None => ProductId::parse(&stockroom_store::new_id()).map_err(|_| ApiError::Internal)?,
    };
    let new = body.data.fields()?;
    let now = state.clock.now();
    let product = Product {
        id,
        sku: new.sku,
        name: new.name,
        price: new.price,
        created_at: now,
        updated_at: now,
    };
    let command = match new.manage_stock {
        true => Command::CreateProductWithStock(product),
        false => Command::CreateProduct(product),
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    let Effect::Product(id) = applied(state.store.execute(request).await?.outcome)? else {
        return Err(ApiError::Internal);
    };
    let product = state.store.product(id.as_str()).await?;
    let product = product.ok_or(ApiError::NotFound)?;
    let available = available(&state, std::slice::from_ref(&product)).await?;
    Ok(Data::new(ProductOut::new(&product, available[0])).with_status(StatusCode::CREATED))
}

/// Each product's available stock, if its stock is managed (one read for all of them).
async fn available(state: &AppState, products: &[Product]) -> Result<Vec<Option<u64>>, ApiError> {
    let ids: Vec<ProductId> = products.iter().map(|p| p.id.clone()).collect();
    let stocks = state.store.stocks_by_ids(&ids).await?;
    Ok(products
        .iter()
        .map(|p| {
            stocks
                .iter()
                .find(|s| s.product_id == p.id)
                .map(|s| s.available())
        })
        .collect())
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query.page();
    let found = state.store.products(page).await?;
    let levels = available(&state, &found.items).await?;
    let items = found
        .items
        .iter()
        .zip(levels)
        .map(|(p, level)| ProductOut::new(p, level))
        .collect();
    Ok(List::new(items, found.total, page, "/v2/products", "").into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let product = state.store.product(&id).await?.ok_or(ApiError::NotFound)?;
    let available = available(&state, std::slice::from_ref(&product)).await?;
    Ok(Data::new(ProductOut::new(&product, available[0])).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Data<ProductPatchBody>>,
) -> Result<Response, ApiError> {
    let id = path_product(&id)?;
    let changes = body.data.attributes;
    let patch = ProductPatch {
        sku: changes.sku.map(|s| s.0),
        name: changes.name.map(|n| n.0),
        price: changes.price.map(|p| p.price()).transpose()?,
    };
    let updated = state.store.update_product(&id, &patch, state.clock.now());
    let product = match updated.await {
        Err(StoreError::AlreadyExists) => {
            return Err(ApiError::Conflict("A product with this SKU exists"))
        }
        other => other?.ok_or(ApiError::NotFound)?,
    };
    let available = available(&state, std::slice::from_ref(&product)).await?;
    Ok(Data::new(ProductOut::new(&product, available[0])).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_product(&id)?;
    if state.store.delete_product(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}
