//! The inventory API, wire-contract §3 (classic) and §4 (multi-location). The same paths serve
//! both; a request with `EP-Inventories-Multi-Location: true` (any case) gets the
//! multi-location shapes. Stock that uses no locations reads the same either way.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use stockroom_domain::{ProductId, Slug};
use stockroom_store::{Command, Effect, ProductStock, WriteRequest, NO_LOCATION};

use crate::error::{applied, ApiError};
use crate::extract::{Idempotent, Json, Query};
use crate::locations::location_slug;
use crate::wire::stock::{
    history_query, AnyStock, AnyStockTransaction, HistoryTerm, MultipleIds, NewStock,
    NewStockMulti, Stock, StockTerm, StockUpdate, TransactionBody,
};
use crate::wire::{Data, List, ListQuery};
use crate::AppState;

/// A product id from the path; one that cannot exist is simply not found.
pub fn path_product(raw: &str) -> Result<ProductId, ApiError> {
    ProductId::parse(raw).map_err(|_| ApiError::NotFound)
}

/// Whether the request asks for Elastic Path's multi-location shapes.
pub fn multi_location(headers: &HeaderMap) -> bool {
    headers
        .get("ep-inventories-multi-location")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

pub type StockListQuery = ListQuery<StockTerm>;

pub async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<StockListQuery>,
) -> Result<Response, ApiError> {
    let page = query.page.page();
    let location = query.filter.terms.last().map(|t| t.0.as_str());
    let found = state.store.stocks(page, location).await?;
    let ml = multi_location(&headers);
    let items = found.items.iter().map(|s| AnyStock::new(ml, s)).collect();
    let path = "/v2/inventories";
    let list = List::new(items, found.total, page, path, &query.filter.link_suffix());
    Ok(list.into_response())
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product): Path<String>,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let stock = state.store.stock(&product).await?;
    let stock = stock.ok_or(ApiError::NotFound)?;
    Ok(Data::new(AnyStock::new(multi_location(&headers), &stock)).with_status(StatusCode::OK))
}

/// Runs a write that changes a product's stock as a whole and answers with the stock after it
/// (in the multi-location shape).
async fn write_stock(
    state: &AppState,
    request: WriteRequest,
    product: &ProductId,
    status: StatusCode,
) -> Result<Response, ApiError> {
    applied(state.store.execute(request).await?.outcome)?;
    // A change that removed the product's last record leaves it with no stock: show that.
    let now = state.clock.now();
    let stock = state.store.stock(product).await?;
    let stock = stock.unwrap_or_else(|| ProductStock {
        product_id: product.clone(),
        total: 0,
        allocated: 0,
        created_at: now,
        updated_at: now,
        records: Vec::new(),
    });
    Ok(Data::new(AnyStock::new(true, &stock)).with_status(status))
}

/// `POST /v2/inventories/{id}` (classic): stock with no location.
pub async fn create(
    State(state): State<AppState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    Idempotent(body, idempotency): Idempotent<Data<NewStock>>,
) -> Result<Response, ApiError> {
    let product = ProductId::parse(&product)
        .map_err(|e| ApiError::invalid("id", format!("product id {e}")))?;
    let records = vec![(NO_LOCATION.to_owned(), body.data.quantity)];
    let command = Command::Create {
        product: product.clone(),
        records,
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    if multi_location(&headers) {
        return write_stock(&state, request, &product, StatusCode::CREATED).await;
    }
    let Effect::Entry(entry) = applied(state.store.execute(request).await?.outcome)? else {
        return Err(ApiError::Internal);
    };
    Ok(Data::new(Stock::after(&entry)).with_status(StatusCode::CREATED))
}

/// Every location of `records` exists (404 otherwise).
async fn check_locations<T>(state: &AppState, records: &[(String, T)]) -> Result<(), ApiError> {
    for (slug, _) in records {
        if slug != NO_LOCATION {
            let slug = Slug::parse(slug).map_err(|_| ApiError::NotFound)?;
            location_slug(state, &slug).await?;
        }
    }
    Ok(())
}

/// `POST /v2/inventories` (multi-location): `{"data":{"type":"stock","id":…,"attributes":
/// {"available":n} | {"locations":{"slug":{"available":n}}}}}`.
pub async fn create_multi(
    State(state): State<AppState>,
    Idempotent(body, idempotency): Idempotent<Data<NewStockMulti>>,
) -> Result<Response, ApiError> {
    let NewStockMulti { id, attributes, .. } = body.data;
    let records = attributes.records()?;
    check_locations(&state, &records).await?;
    let command = Command::Create {
        product: id.clone(),
        records,
    };
    let request = WriteRequest {
        command,
        idempotency,
    };
    write_stock(&state, request, &id, StatusCode::CREATED).await
}

/// `PUT /v2/inventories/{id}` (multi-location): per-location `available`; `null` removes a
/// location (refused while it has allocated units).
pub async fn update_multi(
    State(state): State<AppState>,
    Path(product): Path<String>,
    Json(body): Json<Data<StockUpdate>>,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    if body.data.id.as_ref().is_some_and(|id| *id != product) {
        return Err(ApiError::invalid(
            "data.id",
            "data.id must be the product in the path",
        ));
    }
    let changes = body.data.attributes.changes();
    check_locations(&state, &changes).await?;
    let command = Command::SetLocations {
        product: product.clone(),
        changes,
    };
    write_stock(&state, WriteRequest::new(command), &product, StatusCode::OK).await
}

pub async fn delete(
    State(state): State<AppState>,
    Path(product): Path<String>,
) -> Result<StatusCode, ApiError> {
    let product = path_product(&product)?;
    let command = Command::Delete { product };
    applied(
        state
            .store
            .execute(WriteRequest::new(command))
            .await?
            .outcome,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v2/inventories/multiple`: the stock of the ids that have any, in the order asked;
/// ids with no stock are left out.
pub async fn multiple(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Data<MultipleIds>>,
) -> Result<Response, ApiError> {
    let ids: Vec<ProductId> = body.data.0.into_iter().map(|i| i.id).collect();
    let records = state.store.stocks_by_ids(&ids).await?;
    let ml = multi_location(&headers);
    let stocks: Vec<_> = records.iter().map(|s| AnyStock::new(ml, s)).collect();
    Ok(Data::new(stocks).with_status(StatusCode::OK))
}

pub async fn post_transaction(
    State(state): State<AppState>,
    Path(product): Path<String>,
    headers: HeaderMap,
    Idempotent(body, idempotency): Idempotent<Data<TransactionBody>>,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let posted = body.data.posted(&product)?;
    let location = match posted.location {
        Some(slug) => location_slug(&state, &slug).await?,
        None => NO_LOCATION.to_owned(),
    };
    let command = Command::Transact {
        product,
        location,
        adjustment: posted.adjustment,
        order_id: None,
        reason: posted.reason,
    };
    let answer = state
        .store
        .execute(WriteRequest {
            command,
            idempotency,
        })
        .await?;
    let Effect::Entry(entry) = applied(answer.outcome)? else {
        return Err(ApiError::Internal);
    };
    // Elastic Path answers 200 on the classic API and 201 on the multi-location one.
    let ml = multi_location(&headers);
    let status = if ml {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(Data::new(AnyStockTransaction::new(ml, &entry)).with_status(status))
}

pub type HistoryListQuery = ListQuery<HistoryTerm>;

pub async fn list_transactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(product): Path<String>,
    Query(query): Query<HistoryListQuery>,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let page = query.page.page();
    let history = history_query(&query.filter.terms);
    let found = state.store.history(&product, &history, page).await?;
    if found.total == 0 && state.store.stock(&product).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let ml = multi_location(&headers);
    let items = found.items.iter().map(|e| AnyStockTransaction::new(ml, e));
    let path = format!("/v2/inventories/{product}/transactions");
    let list = List::new(
        items.collect(),
        found.total,
        page,
        &path,
        &query.filter.link_suffix(),
    );
    Ok(list.into_response())
}

pub async fn get_transaction(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((product, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let product = path_product(&product)?;
    let entry = state.store.history_entry(&product, &id).await?;
    let entry = entry.ok_or(ApiError::NotFound)?;
    let answer = AnyStockTransaction::new(multi_location(&headers), &entry);
    Ok(Data::new(answer).with_status(StatusCode::OK))
}
