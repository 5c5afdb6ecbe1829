//! The pages: what each shows is gathered here and rendered by its template.

mod orders;
mod stock;

use std::net::{IpAddr, Ipv4Addr};

use askama::Template;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use stockroom_domain::limits::{IDEMPOTENCY_KEY_LEN_MAX, PAGE_OFFSET_MAX};
use stockroom_domain::{Role, Timestamp};
use stockroom_http::server::ClientAddr;
use stockroom_http::wire::auth::Grant;
use stockroom_http::ApiError;
use stockroom_store::IdempotencyKey;

pub use orders::{cancel, locations, order, orders, ship};
pub use stock::{adjust, product, stock};

use crate::error::PageError;
use crate::html::{render, Nav};
use crate::session::{self, Session, SESSION_COOKIE, SIGN_IN_COOKIE};
use crate::Dash;

/// How old the locations page's totals may be.
pub const SUMMARY_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

/// A value read now and then: kept with the time it was read.
pub struct Cached<T> {
    kept: std::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<T>)>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            kept: std::sync::Mutex::new(None),
        }
    }
}

impl<T> Cached<T> {
    /// The kept value if younger than `max_age`, else a fresh one from `read` (kept).
    pub async fn get<F, E>(
        &self,
        max_age: std::time::Duration,
        read: F,
    ) -> Result<(std::sync::Arc<T>, std::time::Instant), E>
    where
        F: std::future::Future<Output = Result<T, E>>,
    {
        let kept = self.kept.lock().ok().and_then(|k| k.clone());
        if let Some((at, value)) = kept.filter(|(at, _)| at.elapsed() < max_age) {
            return Ok((value, at));
        }
        let value = std::sync::Arc::new(read.await?);
        let at = std::time::Instant::now();
        if let Ok(mut k) = self.kept.lock() {
            *k = Some((at, value.clone()));
        }
        Ok((value, at))
    }
}

/// A form body; an unreadable one is a 400 page (not axum's plain text).
pub struct PostForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<Dash> for PostForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, dash: &Dash) -> Result<Self, Self::Rejection> {
        Form::<T>::from_request(req, dash)
            .await
            .map(|Form(v)| PostForm(v))
            .map_err(|e| {
                PageError::BadRequest(format!("The form could not be read: {}", e.body_text()))
            })
    }
}

/// An idempotency key from a form's hidden field, scoped to what the form does. The scope is
/// stored hashed, as the API's are: it carries ids of any length, and a key's row must fit an
/// index entry whatever they are.
pub fn idempotency(scope: String, key: &str, fields: &[&str]) -> Result<IdempotencyKey, PageError> {
    let visible = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LEN_MAX || !visible {
        return Err(PageError::BadRequest(
            "The form's idempotency key is missing or malformed; reload the page.".into(),
        ));
    }
    let mut hash = Sha256::new();
    for f in fields {
        hash.update(f.as_bytes());
        hash.update([0]);
    }
    Ok(IdempotencyKey {
        scope: format!("{:x}", Sha256::digest(scope.as_bytes())),
        key: key.to_owned(),
        fingerprint: format!("{:x}", hash.finalize()),
    })
}

/// Offset paging of a list (`?page=N`, from 0), bounded like the API's (offset ≤ 10,000).
pub struct Paging {
    pub number: u64,
    pub page: stockroom_store::Page,
}

impl Paging {
    pub fn new(raw: Option<&str>, rows: u64) -> Paging {
        let number = raw.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let offset = number.saturating_mul(rows).min(PAGE_OFFSET_MAX);
        Paging {
            number,
            page: stockroom_store::Page {
                limit: rows,
                offset,
            },
        }
    }

    /// Links to the newer and the older page, given how many there are in all; `link(n)` is
    /// page n's address.
    pub fn links(
        &self,
        total: u64,
        link: impl Fn(u64) -> String,
    ) -> (Option<String>, Option<String>) {
        let next = self.page.offset + self.page.limit;
        let older = (next < total && next <= PAGE_OFFSET_MAX).then(|| link(self.number + 1));
        let newer = (self.number > 0).then(|| link(self.number - 1));
        (newer, older)
    }
}

/// A fresh idempotency key for a form.
pub fn fresh_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `1,234,567`.
pub fn figure(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `2026-12-02 14:05:09` (UTC).
pub fn when(t: Timestamp) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.micros()) * 1000)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_default()
}

/// `12.99 USD` (two decimals: the minor unit of most currencies).
pub fn money(m: &stockroom_domain::Money) -> String {
    let amount = m.amount_minor();
    let sign = if amount < 0 { "-" } else { "" };
    let a = amount.unsigned_abs();
    format!("{sign}{}.{:02} {}", figure(a / 100), a % 100, m.currency())
}

/// A query string from its pairs, leaving out empty values.
pub fn query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    let q = s.finish();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{q}")
    }
}

// ----- sign-in and sign-out -----

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    csrf: String,
    client_id: String,
    error: Option<&'static str>,
}

/// The sign-in form, with a fresh token tied to a cookie of its own.
pub async fn sign_in_form(session: Option<Session>, headers: HeaderMap) -> Response {
    if session.is_some() {
        return Redirect::to("/dashboard/stock").into_response();
    }
    sign_in_page(&headers, String::new(), None, StatusCode::OK)
}

fn sign_in_page(
    headers: &HeaderMap,
    client_id: String,
    error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let csrf = fresh_key();
    let mut response = render(
        &SignInPage {
            nav: None,
            csrf: csrf.clone(),
            client_id,
            error,
        },
        status,
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(headers, SIGN_IN_COOKIE, &csrf, 600),
    );
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

/// Checks the credential like the token endpoint does; only an administrator's signs in.
pub async fn sign_in(
    State(dash): State<Dash>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    PostForm(form): PostForm<SignIn>,
) -> Result<Response, PageError> {
    let expected = session::cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(form.csrf.as_bytes(), expected.as_bytes()) {
        return Err(PageError::Forbidden(
            "The sign-in form has expired. Reload it and try again.",
        ));
    }
    let address = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0 .0);
    let signed_in = stockroom_http::auth::sign_in(
        &dash.app,
        address,
        &form.client_id,
        Some(form.client_secret),
        Grant::ClientCredentials,
    )
    .await;
    let refused = |why| {
        Ok(sign_in_page(
            &headers,
            form.client_id.clone(),
            Some(why),
            StatusCode::UNAUTHORIZED,
        ))
    };
    let credential = match signed_in {
        Ok((credential, Role::Admin)) => credential,
        Ok((_, Role::Shopper)) => {
            return refused("That credential is a shopper's; the dashboard is for administrators.")
        }
        Err(ApiError::BadCredentials) => return refused("Wrong client id or secret."),
        Err(ApiError::TooManyRequests { .. }) => {
            return refused("Too many failed sign-ins; wait a minute and try again.")
        }
        Err(ApiError::Unavailable) => return Err(PageError::Unavailable),
        Err(_) => return Err(PageError::Internal),
    };
    let now = dash.app.clock.now();
    let (token, expires) = dash
        .app
        .tokens
        .issue(&*dash.app.store, &credential, Role::Admin, now)
        .await
        .map_err(|_| PageError::Unavailable)?;
    let mut response = Redirect::to("/dashboard/stock").into_response();
    let cookies = response.headers_mut();
    cookies.append(
        header::SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, &token, expires - now.secs()),
    );
    cookies.append(
        header::SET_COOKIE,
        session::set_cookie(&headers, SIGN_IN_COOKIE, "", 0),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct SignOut {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    session: Session,
    headers: HeaderMap,
    PostForm(form): PostForm<SignOut>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let mut response = Redirect::to("/dashboard/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_to_their_neighbours_within_the_offset_limit() {
        let link = |n: u64| format!("p{n}");
        let first = Paging::new(None, 20);
        assert_eq!(first.links(45, link), (None, Some("p1".into())));
        let last = Paging::new(Some("2"), 20);
        assert_eq!(
            (last.page.offset, last.links(45, link)),
            (40, (Some("p1".into()), None))
        );
        let far = Paging::new(Some("999999999999"), 20);
        assert_eq!(
            far.page.offset, PAGE_OFFSET_MAX,
            "bounded like the API's offset"
        );
        assert_eq!(
            far.links(1_000_000, link).1,
            None,
            "no page beyond the bound"
        );
        assert_eq!(Paging::new(Some("x"), 20).number, 0);
    }

    #[test]
    fn figures_money_and_times_read_like_a_person_writes_them() {
        assert_eq!(figure(0), "0");
        assert_eq!(figure(999), "999");
        assert_eq!(figure(1000), "1,000");
        assert_eq!(figure(1_234_567), "1,234,567");
        let m = |amount, code| {
            let currency = stockroom_domain::Currency::parse(code).expect("a code");
            stockroom_domain::Money::new(amount, currency).expect("in range")
        };
        assert_eq!(money(&m(1299, "USD")), "12.99 USD");
        assert_eq!(money(&m(-5, "EUR")), "-0.05 EUR");
        assert_eq!(when(Timestamp::from_secs(0)), "1970-01-01 00:00:00");
        assert_eq!(query("/x", &[("a", "1 2"), ("b", "")]), "/x?a=1+2");
    }
}
