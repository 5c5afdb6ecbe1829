//! Sign-in, the session cookie and CSRF tokens.
//!
//! A session is an administrator's access token — the API's own, signed by the key every
//! instance shares and checked without a database read — kept in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/dashboard` (and `Secure` when the request came over
//! HTTPS through a proxy that says so with `X-Forwarded-Proto: https`). It lasts as long as a
//! token (an hour); signing out clears it. Authorization is the API's: the token must carry the
//! administrator role, so a shopper's credential signs nothing in.
//!
//! Every form carries a CSRF token derived from the session (a hash of its secret token, which
//! a page of another origin can neither read nor compute); the sign-in form, before any
//! session, is tied to a random cookie of its own (double submit).

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use stockroom_domain::Role;

use crate::error::PageError;
use crate::html::Nav;
use crate::Dash;

pub const SESSION_COOKIE: &str = "stockroom_session";
pub const SIGN_IN_COOKIE: &str = "stockroom_sign_in";
const COOKIE_PATH: &str = "/dashboard";

/// A signed-in administrator.
#[derive(Clone, Debug)]
pub struct Session {
    /// The token that must come back with every form of this session.
    pub csrf: String,
}

impl Session {
    /// The navigation of a page this session sees, with `active` its current section.
    pub fn nav(&self, active: &'static str) -> Option<Nav> {
        Some(Nav {
            csrf: self.csrf.clone(),
            active,
        })
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check(&self, sent: &str) -> Result<(), PageError> {
        if same(sent.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(PageError::Forbidden(
                "This form has expired or did not come from this dashboard. Go back, reload the page and try again.",
            ))
        }
    }
}

/// Compares in time that does not depend on where the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The CSRF token of a session token.
pub fn csrf_of(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"stockroom dashboard csrf\0");
    hash.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(hash.finalize())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached the proxy in front of Stockroom over HTTPS. Trusting the header
/// can only add `Secure` to a cookie, never take it away.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// A `Set-Cookie` value; `max_age` 0 clears the cookie.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_https(headers) { "; Secure" } else { "" };
    let raw = format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    );
    HeaderValue::from_str(&raw).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn session_of(parts: &Parts, dash: &Dash) -> Option<Session> {
    let token = cookie(&parts.headers, SESSION_COOKIE)?;
    match dash.app.tokens.check(token, dash.app.clock.now()) {
        Some(Role::Admin) => Some(Session {
            csrf: csrf_of(token),
        }),
        _ => None,
    }
}

impl FromRequestParts<Dash> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Self::Rejection> {
        session_of(parts, dash).ok_or(if parts.method == axum::http::Method::GET {
            PageError::SignIn
        } else {
            PageError::Forbidden(
                "You are not signed in (or your session has ended). Sign in again.",
            )
        })
    }
}

impl OptionalFromRequestParts<Dash> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Dash,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(session_of(parts, dash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; stockroom_session=tok; stockroom_session_x=no"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&h, "b"), None);
    }

    #[test]
    fn cookies_are_secure_only_behind_https() {
        let mut h = HeaderMap::new();
        let plain = set_cookie(&h, SESSION_COOKIE, "v", 60);
        assert_eq!(
            plain.to_str().ok(),
            Some("stockroom_session=v; Path=/dashboard; Max-Age=60; HttpOnly; SameSite=Strict")
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(set_cookie(&h, SESSION_COOKIE, "v", 60)
            .to_str()
            .is_ok_and(|v| v.ends_with("; Secure")));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert!(same(csrf_of("a").as_bytes(), csrf_of("a").as_bytes()));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
