//! `GET /metrics`: Prometheus text, counted without locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::server::ConnectionCounts;
use crate::AppState;

/// Responses by status code (100–599), and what happened to connections.
pub struct Metrics {
    responses: Vec<AtomicU64>,
    pub connections: Arc<ConnectionCounts>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            responses: (0..500).map(|_| AtomicU64::new(0)).collect(),
            connections: Arc::default(),
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
    render_connections(&state.metrics.connections, &mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn render_connections(c: &ConnectionCounts, out: &mut String) {
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    out.push_str(&format!(
        "# HELP stockroom_connections_open Connections open now.\n\
         # TYPE stockroom_connections_open gauge\n\
         stockroom_connections_open {}\n\
         # HELP stockroom_connections_refused_total Connections closed at accept: a cap was reached.\n\
         # TYPE stockroom_connections_refused_total counter\n\
         stockroom_connections_refused_total{{cap=\"max_connections\"}} {}\n\
         stockroom_connections_refused_total{{cap=\"max_connections_per_address\"}} {}\n\
         # HELP stockroom_connections_timed_out_total Connections closed by a timeout.\n\
         # TYPE stockroom_connections_timed_out_total counter\n\
         stockroom_connections_timed_out_total{{timeout=\"header_read\"}} {}\n\
         stockroom_connections_timed_out_total{{timeout=\"keep_alive\"}} {}\n",
        n(&c.open),
        n(&c.refused_max_connections),
        n(&c.refused_per_address),
        n(&c.closed_header_timeout),
        n(&c.closed_idle),
    ));
}
