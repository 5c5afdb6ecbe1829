//! Tokens and credentials.
//!
//! A token is `base64url(version ‖ role ‖ expires ‖ 16 random bytes ‖ HMAC-SHA256)`, signed
//! with a key kept in the database (so every instance accepts every other's tokens) and checked
//! without touching the database. Client secrets are stored only as argon2id hashes; hashes are
//! compared in constant time by the argon2 crate, MACs by `hmac`'s `verify_slice`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{json, Value};
use sha2::Sha256;
use stockroom_domain::limits::{CREDENTIAL_NAME_LEN_MAX, TOKEN_LIFETIME_SECS};
use stockroom_domain::{Role, Timestamp};
use stockroom_store::{Credential, Store, StoreError};

use crate::error::ApiError;
use crate::extract::RawBody;
use crate::AppState;

type HmacSha256 = Hmac<Sha256>;

const TOKEN_VERSION: u8 = 1;
const TOKEN_RANDOM_BYTES: usize = 16;
const TOKEN_BODY_BYTES: usize = 1 + 1 + 8 + TOKEN_RANDOM_BYTES;
const TOKEN_MAC_BYTES: usize = 32;
/// The setting under which the token signing key is kept.
const SIGNING_KEY_SETTING: &str = "token_signing_key";

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token (the token endpoint, health, metrics).
    Public,
    /// Any valid token: shopper or administrator.
    Shopper,
    /// An administrator's token only.
    Admin,
}

/// The caller of a request with a valid token, put in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
}

/// The key that signs and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    key: Vec<u8>,
}

impl TokenKeys {
    /// The signing key shared by every instance over this database, made on first start.
    pub async fn load(store: &dyn Store) -> Result<TokenKeys, StoreError> {
        let mut candidate = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut candidate);
        let stored = store
            .setting_or_insert(SIGNING_KEY_SETTING, &URL_SAFE_NO_PAD.encode(candidate))
            .await?;
        let key = URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| StoreError::Internal("unreadable token signing key".into()))?;
        Ok(TokenKeys { key })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// A new token for `role`, valid for an hour from `now`; returns it and its expiry.
    pub fn issue(&self, role: Role, now: Timestamp) -> (String, i64) {
        let expires = now.secs() + TOKEN_LIFETIME_SECS;
        let mut body = [0u8; TOKEN_BODY_BYTES];
        body[0] = TOKEN_VERSION;
        body[1] = match role {
            Role::Admin => 1,
            Role::Shopper => 2,
        };
        body[2..10].copy_from_slice(&expires.to_be_bytes());
        rand::rngs::OsRng.fill_bytes(&mut body[10..]);
        let mut mac = self.mac();
        mac.update(&body);
        let mut token = body.to_vec();
        token.extend_from_slice(&mac.finalize().into_bytes());
        (URL_SAFE_NO_PAD.encode(token), expires)
    }

    /// The role of a valid, unexpired token.
    pub fn check(&self, token: &str, now: Timestamp) -> Option<Role> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != TOKEN_BODY_BYTES + TOKEN_MAC_BYTES {
            return None;
        }
        let (body, tag) = raw.split_at(TOKEN_BODY_BYTES);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        if body[0] != TOKEN_VERSION {
            return None;
        }
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&body[2..10]);
        if now.secs() >= i64::from_be_bytes(expires) {
            return None;
        }
        match body[1] {
            1 => Some(Role::Admin),
            2 => Some(Role::Shopper),
            _ => None,
        }
    }
}

/// Hashes a secret with argon2id and a fresh salt.
pub fn hash_secret(secret: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Internal(format!("hashing a secret: {e}")))
}

fn secret_matches(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random string of `bytes` bytes of entropy, URL-safe.
pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
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
fn secret_checks() -> &'static std::sync::Arc<tokio::sync::Semaphore> {
    static CHECKS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
        std::sync::OnceLock::new();
    CHECKS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::sync::Arc::new(tokio::sync::Semaphore::new(2 * cores))
    })
}

/// Most bytes of a token request body.
const TOKEN_REQUEST_BYTES_MAX: usize = 4096;

/// `POST /oauth/access_token`: a form body (or JSON), whatever the content type says.
pub async fn access_token(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if body.len() > TOKEN_REQUEST_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge);
    }
    let fields: Vec<(String, String)> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect(),
        _ => form_urlencoded::parse(&body).into_owned().collect(),
    };
    if fields
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(crate::extract::nul_refused());
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let grant = field("grant_type")
        .ok_or_else(|| ApiError::invalid("grant_type", "grant_type is required"))?;
    let client_id = field("client_id")
        .ok_or_else(|| ApiError::invalid("client_id", "client_id is required"))?;
    let role = match grant.as_str() {
        "client_credentials" => {
            let secret = field("client_secret")
                .ok_or_else(|| ApiError::invalid("client_secret", "client_secret is required"))?;
            client_credentials(&state, &client_id, secret).await?
        }
        "implicit" => match state.store.credential(&client_id).await? {
            Some(_) => Role::Shopper,
            None => return Err(ApiError::BadCredentials),
        },
        _ => {
            return Err(ApiError::invalid(
                "grant_type",
                "grant_type must be client_credentials or implicit",
            ))
        }
    };
    let now = state.clock.now();
    let (token, expires) = state.tokens.issue(role, now);
    Ok(Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires - now.secs(),
        "expires": expires,
        "identifier": grant,
    }))
    .into_response())
}

/// The role of a client id and secret: `BadCredentials` unless they match (an unknown id takes
/// as long to refuse as a wrong secret). Shared by the token endpoint and the dashboard's
/// sign-in.
pub async fn client_credentials(
    state: &AppState,
    client_id: &str,
    secret: String,
) -> Result<Role, ApiError> {
    let found = state.store.credential(client_id).await?;
    let hash = found
        .as_ref()
        .map(|c| c.secret_hash.clone())
        .unwrap_or_else(|| decoy_hash().to_owned());
    // Each check costs ~19 MiB and a core for a few milliseconds: only a few run at once,
    // others wait a little, then are told to come back, so token requests cannot
    // exhaust memory.
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        secret_checks().clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(_permit)) = permit else {
        return Err(ApiError::Unavailable);
    };
    let matches = tokio::task::spawn_blocking(move || secret_matches(&secret, &hash))
        .await
        .map_err(|_| ApiError::Internal)?;
    match found {
        Some(c) if matches => Ok(c.role),
        _ => Err(ApiError::BadCredentials),
    }
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
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(role) = token.and_then(|t| state.tokens.check(t, state.clock.now())) else {
        return ApiError::Unauthenticated.into_response();
    };
    if access == Access::Admin && role != Role::Admin {
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Caller { role });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_their_role_signature_and_expiry() {
        let keys = TokenKeys { key: vec![7; 32] };
        let now = Timestamp::from_secs(1_000_000);
        let (token, expires) = keys.issue(Role::Shopper, now);
        assert_eq!(expires, 1_000_000 + TOKEN_LIFETIME_SECS);
        assert_eq!(keys.check(&token, now), Some(Role::Shopper));
        assert_eq!(
            keys.check(&token, Timestamp::from_secs(expires - 1)),
            Some(Role::Shopper)
        );
        assert_eq!(keys.check(&token, Timestamp::from_secs(expires)), None);
        let other = TokenKeys { key: vec![8; 32] };
        assert_eq!(
            other.check(&token, now),
            None,
            "another key's token is refused"
        );
        let mut tampered = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        tampered[1] = 1; // shopper -> admin
        assert_eq!(keys.check(&URL_SAFE_NO_PAD.encode(tampered), now), None);
        assert_eq!(keys.check("garbage", now), None);
        let (a, _) = keys.issue(Role::Admin, now);
        let (b, _) = keys.issue(Role::Admin, now);
        assert_ne!(a, b, "two tokens are never the same");
    }

    #[test]
    fn secrets_are_hashed_and_verified() {
        let hash = hash_secret("s3cret").expect("hash");
        assert!(!hash.contains("s3cret"));
        assert!(secret_matches("s3cret", &hash));
        assert!(!secret_matches("s3cret!", &hash));
        assert!(!secret_matches("s3cret", "not a hash"));
    }
}
