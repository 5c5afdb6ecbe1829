//! Credentials, the token endpoint and the middleware that checks tokens (the tokens
//! themselves are in `tokens.rs`).
//!
//! Client secrets are stored only as argon2id hashes (`secrets.rs`). Failed sign-ins are
//! rate-limited per client address and per client id ([`SignInLimits`]) and logged at warn,
//! without the secret.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use governor::Quota;
use stockroom_domain::limits::CREDENTIAL_NAME_LEN_MAX;
use stockroom_domain::{Role, Timestamp};
use stockroom_store::{Credential, StoreError};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::caller::{bearer, Caller, ClientAddr, CUSTOMER_TOKEN_HEADER};
use crate::error::ApiError;
use crate::extract::RawBody;
use crate::ratelimit::{address_key, KeyedLimiter, Limited};
use crate::wire::auth::{Bearer, Grant, Token, TokenForm, TokenRequest};
use crate::AppState;

// The secret helpers, still reachable by this module's name, as the binary uses them.
pub use crate::secrets::{hash_secret, random_string, secret_matches};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token (the token endpoint, health, metrics).
    Public,
    /// Any valid token: shopper or administrator.
    Shopper,
    /// An administrator's token, or a shopper's with a customer token
    /// (`X-Moltin-Customer-Token`): what belongs to a customer (SPEC §3). A shopper without
    /// one is 403; the handler decides which customer's things the token may see.
    Customer,
    /// An administrator's token only.
    Admin,
}

/// Most addresses and client ids whose failures are remembered at once, each.
const SIGN_IN_KEYS_MAX: usize = 65_536;

/// Limits on failed sign-ins. A client address may fail `per_minute` times (at once, or
/// spread over a minute) before its sign-ins are answered 429 without a secret check. A client
/// id may fail ten times as often, from all addresses together; beyond that, addresses that
/// have failed recently are answered 429 for it too, while an address with no recent failure
/// still gets its answer — so an attacker cannot lock the real client out from elsewhere.
///
/// Sign-ins from one address are checked one at a time ([`SignInLimits::turn`]), so a burst of
/// guesses sent at once cannot all pass the allowance before the first failure is counted.
pub struct SignInLimits {
    by_address: KeyedLimiter<IpAddr>,
    by_client: KeyedLimiter<String>,
    /// One lock per address with a sign-in being checked or waiting; an entry goes when its
    /// last user does, so this holds at most one entry per request in flight.
    checking: Arc<StdMutex<HashMap<IpAddr, Arc<AsyncMutex<()>>>>>,
}

/// How long a sign-in waits for the one before it from the same address; then it is told to
/// come back (429).
const SIGN_IN_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// An address's turn to have its sign-in checked: the address's lock, held until dropped.
struct Turn {
    address: IpAddr,
    checking: Arc<StdMutex<HashMap<IpAddr, Arc<AsyncMutex<()>>>>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Only the map holds the lock now: no one is waiting for this address.
        if checking
            .get(&self.address)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            checking.remove(&self.address);
        }
    }
}

impl SignInLimits {
    pub fn new(per_minute: u32) -> SignInLimits {
        let per_address = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let per_client = per_address.saturating_mul(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
        SignInLimits {
            by_address: KeyedLimiter::new(Quota::per_minute(per_address), SIGN_IN_KEYS_MAX),
            by_client: KeyedLimiter::new(Quota::per_minute(per_client), SIGN_IN_KEYS_MAX),
            checking: Arc::default(),
        }
    }

    /// Waits for `address`'s turn: sign-ins from one address are checked one at a time. `None`
    /// when the one before takes longer than [`SIGN_IN_QUEUE_WAIT`].
    async fn turn(&self, address: IpAddr) -> Option<Turn> {
        let lock = {
            let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
            checking.entry(address).or_default().clone()
        };
        let mut turn = Turn {
            address,
            checking: self.checking.clone(),
            guard: None,
        };
        turn.guard = Some(
            tokio::time::timeout(SIGN_IN_QUEUE_WAIT, lock.lock_owned())
                .await
                .ok()?,
        );
        Some(turn)
    }

    /// Whether a sign-in from `address` for `client` (a known client id) may be tried now.
    fn admit(&self, address: IpAddr, client: Option<&str>) -> Result<(), Limited> {
        self.by_address.peek(&address)?;
        if let Some(client) = client.map(str::to_owned) {
            if let Err(limited) = self.by_client.peek(&client) {
                if !self.by_address.is_fresh(&address) {
                    return Err(limited);
                }
            }
        }
        Ok(())
    }

    fn failed(&self, address: IpAddr, client: Option<&str>) {
        let _ = self.by_address.check(&address);
        if let Some(client) = client {
            let _ = self.by_client.check(&client.to_owned());
        }
    }
}

/// A new credential with a generated client id and secret. The secret is returned once and
/// only its hash is kept.
pub fn new_credential(
    name: &str,
    role: Role,
    now: Timestamp,
) -> Result<(Credential, String), StoreError> {
    let client_id = random_string(15);
    let secret = random_string(32);
    Ok((credential(&client_id, &secret, name, role, now)?, secret))
}

/// A credential with a given client id and secret (hashed here).
pub fn credential(
    client_id: &str,
    secret: &str,
    name: &str,
    role: Role,
    now: Timestamp,
) -> Result<Credential, StoreError> {
    if name.is_empty() || name.len() > CREDENTIAL_NAME_LEN_MAX {
        return Err(StoreError::Internal(format!(
            "a credential's name must be 1 to {CREDENTIAL_NAME_LEN_MAX} bytes"
        )));
    }
    Ok(Credential {
        client_id: client_id.to_owned(),
        name: name.to_owned(),
        role,
        secret_hash: hash_secret(secret)?,
        created_at: now,
    })
}

/// A hash to verify against when the client id is unknown, so that an unknown id takes as long
/// to refuse as a wrong secret and client ids cannot be discovered by timing.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_secret("decoy secret that matches nothing").unwrap_or_default())
}

/// Secret checks allowed at once: twice the cores.
fn secret_checks() -> &'static Arc<tokio::sync::Semaphore> {
    static CHECKS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    CHECKS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(2 * cores))
    })
}

/// Most bytes of a token request body.
const TOKEN_REQUEST_BYTES_MAX: usize = 4096;

/// `POST /oauth/access_token`: a form body (or JSON), whatever the content type says. Failed
/// sign-ins are counted per client address and per client id; over the allowance the answer is
/// 429 before any secret is checked.
pub async fn access_token(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if body.len() > TOKEN_REQUEST_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge);
    }
    let request = token_request(&body)?;
    let (client_id, secret, grant) = match request {
        TokenRequest::ClientCredentials { client_id, secret } => {
            (client_id, Some(secret), Grant::ClientCredentials)
        }
        TokenRequest::Implicit { client_id } => (client_id, None, Grant::Implicit),
    };
    let address = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0 .0);
    let (credential, role) = sign_in(&state, address, &client_id, secret, grant).await?;
    let now = state.clock.now();
    let (token, expires) = state
        .tokens
        .issue(&*state.store, &credential, role, now)
        .await?;
    Ok(Json(Token {
        access_token: token,
        token_type: Bearer,
        expires_in: expires - now.secs(),
        expires,
        identifier: grant,
    })
    .into_response())
}

/// Checks a sign-in — a client id with its secret, or (the implicit grant) a client id alone —
/// under the limits on failed sign-ins per client address and per client id: over them it is a
/// 429 before any secret is checked. A failure is counted and logged (never the secret). The
/// token endpoint and the dashboard's sign-in form both come through here.
pub async fn sign_in(
    state: &AppState,
    client: IpAddr,
    client_id: &str,
    secret: Option<String>,
    grant: Grant,
) -> Result<(Credential, Role), ApiError> {
    let address = address_key(client);
    let found = state.store.credential(client_id).await?;
    let known = found.as_ref().map(|c| c.client_id.clone());
    let known = known.as_deref();
    let refused = |limited: Limited| {
        tracing::debug!(%address, "sign-in refused: too many failures");
        ApiError::TooManyRequests {
            retry_after_secs: limited.retry_after_secs(),
        }
    };
    // Refused at once when the allowance is spent; otherwise wait for this address's turn and
    // ask again, since the sign-ins before it may have spent it.
    state.sign_ins.admit(address, known).map_err(refused)?;
    let _turn = state
        .sign_ins
        .turn(address)
        .await
        .ok_or(ApiError::TooManyRequests {
            retry_after_secs: SIGN_IN_QUEUE_WAIT.as_secs(),
        })?;
    state.sign_ins.admit(address, known).map_err(refused)?;
    let signed_in = match secret {
        Some(secret) => check_secret(found, secret).await?,
        // The implicit grant: a shopper token for any known client id.
        None => found.map(|c| (c, Role::Shopper)),
    };
    signed_in.ok_or_else(|| {
        state.sign_ins.failed(address, known);
        tracing::warn!(
            client_id = %client_id.chars().take(64).collect::<String>(),
            %address,
            grant = ?grant,
            reason = if known.is_some() { "wrong secret" } else { "unknown client id" },
            "sign-in failed"
        );
        ApiError::BadCredentials
    })
}

/// The token request: a JSON object when the body is one, else a form.
fn token_request(body: &[u8]) -> Result<TokenRequest, ApiError> {
    let form: TokenForm = if body.trim_ascii_start().starts_with(b"{") {
        crate::extract::parse_json(body)?
    } else {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::invalid("body", "the form is not UTF-8"))?;
        crate::extract::parse_query(text)?
    };
    form.request()
}

/// The credential and its role if `secret` is its secret. An unknown client id is checked
/// against a decoy hash, so that it takes as long to refuse as a wrong secret.
async fn check_secret(
    found: Option<Credential>,
    secret: String,
) -> Result<Option<(Credential, Role)>, ApiError> {
    let hash = found
        .as_ref()
        .map(|c| c.secret_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    // Each check costs ~19 MiB and a core for a few milliseconds: only a few run at once,
    // others wait a little, then are told to come back, so token requests cannot exhaust
    // memory.
    let permit = tokio::time::timeout(
        Duration::from_secs(2),
        secret_checks().clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(_permit)) = permit else {
        return Err(ApiError::Unavailable);
    };
    let matches = tokio::task::spawn_blocking(move || secret_matches(&secret, &hash))
        .await
        .map_err(|_| ApiError::Internal)?;
    Ok(found.filter(|_| matches).map(|c| {
        let role = c.role;
        (c, role)
    }))
}

/// The middleware that enforces a route's [`Access`].
pub async fn authorize(
    access: Access,
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    if access == Access::Public {
        return next.run(req).await;
    }
    let token = bearer(req.headers());
    let Some(role) = token.and_then(|t| state.tokens.check(t, state.clock.now())) else {
        return ApiError::Unauthenticated.into_response();
    };
    if access == Access::Admin && role != Role::Admin {
        return ApiError::Forbidden.into_response();
    }
    if access == Access::Customer && role != Role::Admin {
        let customer = req
            .headers()
            .get(CUSTOMER_TOKEN_HEADER)
            .map(|v| v.to_str().ok().map(str::trim));
        match customer {
            None => return ApiError::Forbidden.into_response(),
            Some(t) => {
                if t.and_then(|t| state.tokens.check_customer(t, state.clock.now()))
                    .is_none()
                {
                    return ApiError::Unauthenticated.into_response();
                }
            }
        }
    }
    req.extensions_mut().insert(Caller { role });
    next.run(req).await
}
