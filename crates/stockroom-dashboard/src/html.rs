//! Rendering a page: its HTML with the dashboard's security headers, and the navigation every
//! signed-in page carries. At the bottom of the dashboard's modules: it knows neither sessions
//! nor pages.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::secure_headers;

/// What every signed-in page carries: the sign-out form's CSRF token and the current section.
pub struct Nav {
    pub csrf: String,
    pub active: &'static str,
}

/// A page's HTML with the dashboard's security headers.
pub fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response();
            secure_headers(&mut response);
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: a template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
