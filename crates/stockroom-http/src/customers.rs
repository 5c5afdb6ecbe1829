//! Customers (`/v2/customers`), their tokens (`POST /v2/customers/tokens`), and who a request
//! speaks for: an administrator, or a shopper with (or without) a customer token
//! (`X-Moltin-Customer-Token`).

use std::sync::OnceLock;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use stockroom_domain::Role;
use stockroom_store::{Customer, CustomerPatch, StoreError};

use crate::caller::{Caller, CUSTOMER_TOKEN_HEADER};
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::secrets::{hash_secret, secret_matches};
use crate::wire::customers::{
    CustomerChanges, CustomerOut, CustomerToken, CustomerTokenRequest, NewCustomer, TokenTag,
};
use crate::wire::{Data, List, PageQuery};
use crate::AppState;

/// Who a request speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    Admin,
    /// A shopper, signed in as a customer (its id) or not.
    Shopper(Option<String>),
}

impl Party {
    /// Whether this party may see what belongs to `owner` (`None`: no one in particular).
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match (self, owner) {
            (Party::Admin, _) | (_, None) => true,
            (Party::Shopper(me), Some(owner)) => me.as_deref() == Some(owner),
        }
    }

    pub fn customer(&self) -> Option<&str> {
        match self {
            Party::Shopper(c) => c.as_deref(),
            Party::Admin => None,
        }
    }
}

/// The party of a request: its token's role and its customer token, if any (401 for a bad or
/// expired customer token).
pub fn party(state: &AppState, caller: Caller, headers: &HeaderMap) -> Result<Party, ApiError> {
    let customer = match headers.get(CUSTOMER_TOKEN_HEADER) {
        None => None,
        Some(v) => {
            let token = v.to_str().map_err(|_| ApiError::Unauthenticated)?.trim();
            let now = state.clock.now();
            let id = state.tokens.check_customer(token, now);
            Some(id.ok_or(ApiError::Unauthenticated)?)
        }
    };
    Ok(match caller.role {
        Role::Admin => Party::Admin,
        Role::Shopper => Party::Shopper(customer),
    })
}

/// A hash compared against when no customer has the email asked for, so that a wrong
/// password and an unknown email take the same (argon2) time.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_secret("stockroom: no such customer").unwrap_or_default())
}

/// Hashes a password off the async workers (argon2 is slow on purpose).
async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_secret(&password))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(ApiError::from)
}

fn taken(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists => ApiError::Conflict("A customer with this email exists"),
        other => other.into(),
    }
}

/// The customer at `id`, if the party may see it (an administrator, or the customer's own
/// token); another's is 403.
async fn visible(state: &AppState, party: &Party, id: &str) -> Result<Customer, ApiError> {
    if !party.may_see(Some(id)) {
        return Err(ApiError::Forbidden);
    }
    state.store.customer(id).await?.ok_or(ApiError::NotFound)
}

pub async fn create(
    State(state): State<AppState>,
    Json(body): Json<Data<NewCustomer>>,
) -> Result<Response, ApiError> {
    let new = body.data;
    let password_hash = match new.password {
        Some(p) => Some(hash(p.0).await?),
        None => None,
    };
    let now = state.clock.now();
    let customer = Customer {
        id: stockroom_store::new_id(),
        name: new.name.0,
        email: new.email.0,
        password_hash,
        created_at: now,
        updated_at: now,
    };
    state
        .store
        .create_customer(&customer)
        .await
        .map_err(taken)?;
    Ok(Data::new(CustomerOut::new(&customer)).with_status(StatusCode::CREATED))
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query.page();
    let found = state.store.customers(page).await?;
    let items = found.items.iter().map(CustomerOut::new).collect();
    Ok(List::new(items, found.total, page, "/v2/customers", "").into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let party = party(&state, caller, &headers)?;
    let customer = visible(&state, &party, &id).await?;
    Ok(Data::new(CustomerOut::new(&customer)).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Data<CustomerChanges>>,
) -> Result<Response, ApiError> {
    let party = party(&state, caller, &headers)?;
    visible(&state, &party, &id).await?;
    let changes = body.data;
    let password_hash = match changes.password {
        Some(p) => Some(hash(p.0).await?),
        None => None,
    };
    let patch = CustomerPatch {
        name: changes.name.map(|n| n.0),
        email: changes.email.map(|e| e.0),
        password_hash,
    };
    let updated = state
        .store
        .update_customer(&id, &patch, state.clock.now())
        .await
        .map_err(taken)?
        .ok_or(ApiError::NotFound)?;
    Ok(Data::new(CustomerOut::new(&updated)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let party = party(&state, caller, &headers)?;
    visible(&state, &party, &id).await?;
    match state.store.delete_customer(&id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::NotFound),
    }
}

/// `POST /v2/customers/tokens`: an email and password for a customer token. A wrong password
/// and an unknown email are the same 401 after the same argon2 check.
pub async fn token(
    State(state): State<AppState>,
    Json(body): Json<Data<CustomerTokenRequest>>,
) -> Result<Response, ApiError> {
    let ask = body.data;
    if ask
        .authentication_mechanism
        .as_ref()
        .is_some_and(|m| m.0 != "password")
    {
        return Err(ApiError::invalid(
            "data.authentication_mechanism",
            "only password is supported",
        ));
    }
    let found = state
        .store
        .customer_by_email(&ask.email.0.to_lowercase())
        .await?;
    let hash = found
        .as_ref()
        .and_then(|c| c.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = ask.password.0;
    let matches = tokio::task::spawn_blocking(move || secret_matches(&password, &hash))
        .await
        .map_err(|_| ApiError::Internal)?;
    let customer = match (found, matches) {
        (Some(c), true) if c.password_hash.is_some() => c,
        _ => return Err(ApiError::BadCredentials),
    };
    let (token, expires) = state.tokens.issue_customer(&customer.id, state.clock.now());
    Ok(Data::new(CustomerToken {
        kind: TokenTag,
        id: stockroom_store::new_id(),
        customer_id: customer.id,
        token,
        expires,
    })
    .into_response())
}
