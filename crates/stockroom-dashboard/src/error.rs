//! Why a page cannot be shown ([`PageError`]); each answers with an HTML page of its own.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use stockroom_store::StoreError;

use crate::html::{render, Nav};

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: go to the sign-in form.
    SignIn,
    NotFound,
    Forbidden(&'static str),
    BadRequest(String),
    Unavailable,
    Internal,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignIn => return Redirect::to("/dashboard/sign-in").into_response(),
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here.".to_owned(),
            ),
            PageError::Forbidden(why) => (StatusCode::FORBIDDEN, "Refused", why.to_owned()),
            PageError::BadRequest(why) => (StatusCode::BAD_REQUEST, "Cannot do that", why),
            PageError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "The database is busy or unreachable. Try again in a moment.".to_owned(),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The error has been logged.".to_owned(),
            ),
        };
        render(
            &ErrorPage {
                nav: None,
                title,
                message,
            },
            status,
        )
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => PageError::Unavailable,
            other => {
                tracing::error!(error = %other, "dashboard: storage error");
                PageError::Internal
            }
        }
    }
}
