//! Reading requests: the one JSON extractor ([`Json`]), query strings ([`Query`]), and bodies
//! that carry an `Idempotency-Key` ([`Idempotent`]).
//!
//! Every body and query is deserialized straight into a typed request of `wire` whose fields are
//! domain types, so parsing *is* validation. A serde failure becomes the one 400 error body,
//! naming the field by its path (`data.attributes.price.amount`, `page[limit]`); a key given
//! twice is refused like any other malformed field (serde's derived structs refuse a duplicate
//! field; `wire::fields` refuses duplicates in maps and free-form objects).

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use stockroom_domain::limits::{BODY_BYTES_MAX, IDEMPOTENCY_KEY_LEN_MAX};
use stockroom_domain::Role;
use stockroom_store::IdempotencyKey;

use crate::caller::Caller;
use crate::error::ApiError;

/// The raw bytes of a body, at most [`BODY_BYTES_MAX`]; larger bodies are a 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
            return Err(ApiError::PayloadTooLarge);
        }
        let body: Body = req.into_body();
        match axum::body::to_bytes(body, BODY_BYTES_MAX).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    Err(ApiError::PayloadTooLarge)
                } else {
                    Err(ApiError::BadJson("the body could not be read".into()))
                }
            }
        }
    }
}

/// A JSON body parsed into `T`, whatever the content type says (clients send JSON as
/// `application/json`, or with no type at all). An empty body reads as `null`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON body into `T`; every failure is the 400 that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => field_error(&path, &without_position(&inner)),
            _ => ApiError::BadJson(inner.to_string()),
        }
    })?;
    de.end().map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok(value)
}

/// serde_json's message without its ` at line L column C` suffix (the path says where).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() > 0 => text[..i].to_owned(),
        _ => text,
    }
}

/// The 400 for a field at `path` (serde_path_to_error's notation; `.` is the whole body) that
/// serde refused with `message`. serde reports a missing or repeated field at its parent, so
/// those name the field itself.
fn field_error(path: &str, message: &str) -> ApiError {
    let join = |field: &str| match path {
        "." | "" => field.to_owned(),
        parent => format!("{parent}.{field}"),
    };
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('`'))
            .map(join)
    };
    if let Some(field) = quoted("missing field `") {
        return ApiError::invalid(field.clone(), format!("{field} is required"));
    }
    if let Some(field) = quoted("duplicate field `") {
        return ApiError::invalid(field.clone(), format!("{field} is given more than once"));
    }
    match path {
        "." | "" => ApiError::Invalid {
            detail: format!("the body is not what this call takes: {message}"),
            source: None,
        },
        path => ApiError::invalid(path.to_owned(), format!("{path}: {message}")),
    }
}

/// A query string parsed into `T`. Raw brackets (`page[limit]=10`, as the SDK sends them) and
/// percent-encoding both work; a parameter given twice is a 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or("")).map(Query)
    }
}

pub fn parse_query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if let Some(name) = message
            .strip_prefix("duplicate field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            return ApiError::invalid(name.to_owned(), format!("{name} is given more than once"));
        }
        field_error(&path, &message)
    })
}

pub fn nul_refused() -> ApiError {
    ApiError::Invalid {
        detail: "text may not contain NUL characters".into(),
        source: None,
    }
}

/// Refuses requests whose path or query holds an encoded NUL character (`%00`), before any
/// handler sees the decoded text.
pub async fn refuse_nul_in_uri(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let uri = req.uri();
    let encoded_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return nul_refused().into_response();
    }
    next.run(req).await
}

/// A body parsed into `T`, and the request's `Idempotency-Key` (if it sent one) scoped to the
/// request and its caller. This is the one place a key's scope is made: every route that takes a
/// key reads its body through this extractor.
pub struct Idempotent<T>(pub T, pub Option<IdempotencyKey>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Idempotent<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let route = route(&mut parts).await;
        let key = requested_key(&parts, &route)?;
        let RawBody(bytes) = RawBody::from_request(Request::from_parts(parts, body), state).await?;
        let parsed = parse_json(&bytes)?;
        Ok(Idempotent(parsed, key.map(|k| k.fingerprinted(&bytes))))
    }
}

/// A request's `Idempotency-Key` and its [`scope`], before the body is read.
struct RequestedKey {
    key: String,
    scope: String,
}

/// The route a request matched, as its template and its decoded path parameters, so that one
/// resource spelled two ways (`/v2/carts/c` and `/v2/carts/%63`) is one scope. Outside a
/// matched route (never, for the routes that take a key) it is the raw path.
async fn route(parts: &mut Parts) -> String {
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let params = RawPathParams::from_request_parts(parts, &()).await;
    match (template, params) {
        (Some(template), Ok(params)) => {
            let values: Vec<&str> = params.iter().map(|(_, value)| value).collect();
            // JSON quoting keeps the values apart whatever they contain.
            let values = serde_json::to_string(&values).unwrap_or_default();
            format!("{template} {values}")
        }
        _ => parts.uri.path().to_owned(),
    }
}

fn requested_key(parts: &Parts, route: &str) -> Result<Option<RequestedKey>, ApiError> {
    let Some(raw) = parts.headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX)
        .filter(|k| k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"
                ),
            )
        })?;
    Ok(Some(RequestedKey {
        key: key.to_owned(),
        scope: scope(&parts.method, route, &parts.headers, parts.extensions.get()),
    }))
}

impl RequestedKey {
    /// The key fingerprinted with the (parsed, so JSON) body, so that the same key with another
    /// body is told apart. The body's compact form (serde_json's maps are ordered) fingerprints
    /// equal JSON equally whatever its spacing or key order.
    fn fingerprinted(self, body: &[u8]) -> IdempotencyKey {
        let canonical = serde_json::from_slice::<serde_json::Value>(body)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let mut fingerprint = Sha256::new();
        fingerprint.update(self.scope.as_bytes());
        fingerprint.update(b"\n");
        fingerprint.update(canonical.as_bytes());
        // The scope is stored hashed: paths carry ids of any length, and a key's row must fit
        // an index entry whatever the path.
        IdempotencyKey {
            scope: hex(Sha256::digest(self.scope.as_bytes())),
            key: self.key,
            fingerprint: hex(fingerprint.finalize()),
        }
    }
}

/// What an `Idempotency-Key` is scoped to: the route the request matched, with its ids (method
/// and [`route`]), and who called it. An administrator's keys are the administrators' (they may do
/// everything anyway); a shopper's are its token's, so a key another shopper sent first cannot
/// make this one's request fail or replay another's answer. An implicit token identifies no
/// person: its identity is the token itself, so a shopper who fetches a new token starts a new
/// scope. (When tokens carry a client or customer id, scope by that instead.)
fn scope(method: &Method, route: &str, headers: &HeaderMap, caller: Option<&Caller>) -> String {
    let caller: Cow<'_, str> = match caller.map(|c| c.role) {
        Some(Role::Admin) => "admin".into(),
        Some(Role::Shopper) => {
            let token = headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            format!("shopper {}", hex(Sha256::digest(token))).into()
        }
        None => "public".into(),
    };
    format!("{method} {route}\n{caller}")
}

fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn source(e: &ApiError) -> Option<&str> {
        match e {
            ApiError::Invalid { source, .. } => source.as_deref(),
            _ => None,
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        quantity: u64,
        action: String,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        data: Inner,
    }

    #[test]
    fn a_wrong_type_names_the_field_by_its_path() {
        let e = parse_json::<Outer>(br#"{"data":{"quantity":"5","action":"set"}}"#)
            .expect_err("a string is not a number");
        assert_eq!(source(&e), Some("data.quantity"), "{e:?}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = parse_json::<Outer>(br#"{"data":{"action":"set"}}"#).expect_err("missing");
        assert_eq!(source(&e), Some("data.quantity"), "{e:?}");
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let e = parse_json::<Outer>(
            br#"{"data":{"quantity":1,"action":"decrement","action":"increment"}}"#,
        )
        .expect_err("duplicate");
        assert_eq!(source(&e), Some("data.action"), "{e:?}");
    }

    #[test]
    fn broken_json_and_trailing_bytes_are_bad_json() {
        assert!(matches!(
            parse_json::<Outer>(br#"{"data":"#),
            Err(ApiError::BadJson(_))
        ));
        assert!(matches!(
            parse_json::<Outer>(br#"{"data":{"quantity":1,"action":"set"}} x"#),
            Err(ApiError::BadJson(_))
        ));
    }

    #[test]
    fn idempotency_scopes_differ_by_caller_and_path() {
        let shopper = |token: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
            h
        };
        let s = Caller {
            role: Role::Shopper,
        };
        let a = scope(
            &Method::POST,
            "/v2/carts/c/checkout",
            &shopper("a"),
            Some(&s),
        );
        let b = scope(
            &Method::POST,
            "/v2/carts/c/checkout",
            &shopper("b"),
            Some(&s),
        );
        let other_cart = scope(
            &Method::POST,
            "/v2/carts/d/checkout",
            &shopper("a"),
            Some(&s),
        );
        assert_ne!(a, b);
        assert_ne!(a, other_cart);
        let admin = Caller { role: Role::Admin };
        assert_eq!(
            scope(&Method::POST, "/v2/products", &shopper("x"), Some(&admin)),
            scope(&Method::POST, "/v2/products", &shopper("y"), Some(&admin)),
            "administrators share their keys"
        );
    }
}
