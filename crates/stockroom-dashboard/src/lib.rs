//! The operators' dashboard at `/dashboard`: stock, a product's history and chart, stock
//! adjustments, orders, locations and the service's status, for administrators.
//!
//! Pages are rendered on the server from askama templates (checked when this crate compiles);
//! charts are SVG drawn here ([`chart`]); the one stylesheet is served from the binary. No
//! JavaScript, nothing from another origin: the Content-Security-Policy forbids both. Writes go
//! through the same [`stockroom_store::Store::execute`] as the API's, with an idempotency key
//! carried by each form, so a form sent twice applies once.

pub mod chart;
pub mod error;
pub mod html;
pub mod levels;
pub mod pages;
pub mod session;
pub mod status;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use stockroom_http::AppState;

/// What the dashboard's handlers share: the API's state and the status page's samples.
#[derive(Clone)]
pub struct Dash {
    pub app: AppState,
    pub samples: Arc<status::Samples>,
    /// What each location holds, read at most every [`pages::SUMMARY_MAX_AGE`]: summing every
    /// record takes tens of milliseconds with 100,000 products.
    pub summaries: Arc<pages::Cached<Vec<stockroom_store::LocationSummary>>>,
}

/// The dashboard's routes, to merge into the API's router (`stockroom_http::serve_with`), so
/// they share its load shedding, time limit, metrics and tracing. Starts the status page's
/// sampler.
pub fn router(app: AppState) -> Router<AppState> {
    let samples = Arc::new(status::Samples::default());
    tokio::spawn(status::sample_forever(samples.clone()));
    let dash = Dash {
        app,
        samples,
        summaries: Arc::default(),
    };
    Router::new()
        .route(
            "/dashboard",
            get(|| async { Redirect::to("/dashboard/stock") }),
        )
        .route(
            "/dashboard/",
            get(|| async { Redirect::to("/dashboard/stock") }),
        )
        .route("/dashboard/style.css", get(stylesheet))
        .route(
            "/dashboard/sign-in",
            get(pages::sign_in_form).post(pages::sign_in),
        )
        .route("/dashboard/sign-out", post(pages::sign_out))
        .route("/dashboard/stock", get(pages::stock))
        .route("/dashboard/products/{product}", get(pages::product))
        .route("/dashboard/products/{product}/adjust", post(pages::adjust))
        .route("/dashboard/orders", get(pages::orders))
        .route("/dashboard/orders/{order}", get(pages::order))
        .route("/dashboard/orders/{order}/ship", post(pages::ship))
        .route("/dashboard/orders/{order}/cancel", post(pages::cancel))
        .route("/dashboard/locations", get(pages::locations))
        .route("/dashboard/status", get(status::page))
        .with_state(dash)
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../assets/style.css"),
    )
        .into_response()
}

/// Headers every page carries: no scripts, no framing, nothing from another origin, no caching
/// of pages that show stock.
pub fn secure_headers(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}
