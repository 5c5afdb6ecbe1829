//! Who sends a request: its client address ([`ClientAddr`]), the role of its valid token
//! ([`Caller`]), and the headers that carry its credentials ([`bearer`],
//! [`CUSTOMER_TOKEN_HEADER`]).
//!
//! These small types are read by the access middleware, the extractors, the rate limits and the
//! handlers alike, so they live here, below all of them, and depend on nothing else of this
//! crate.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};
use stockroom_domain::Role;

/// The client's address, put in every request's extensions: the peer's, or — when the peer is
/// one of `Limits::trusted_proxies` — the last address in `X-Forwarded-For` that is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The caller of a request with a valid token, put in the request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
}

/// Elastic Path's header for a customer token.
pub const CUSTOMER_TOKEN_HEADER: &str = "x-moltin-customer-token";

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}
