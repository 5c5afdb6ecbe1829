//! `GET /metrics`: Prometheus text, counted without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// Responses by status code (100–599).
pub struct Metrics {
    responses: Vec<AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: (0..500).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

pub async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let code = usize::from(response.status().as_u16());
    if let Some(counter) = code
        .checked_sub(100)
        .and_then(|i| state.metrics.responses.get(i))
    {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    response
}

pub async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::from(
        "# HELP stockroom_http_responses_total HTTP responses by status code.\n\
         # TYPE stockroom_http_responses_total counter\n",
    );
    for (i, counter) in state.metrics.responses.iter().enumerate() {
        let n = counter.load(Ordering::Relaxed);
        if n > 0 {
            out.push_str(&format!(
                "stockroom_http_responses_total{{code=\"{}\"}} {n}\n",
                i + 100
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
