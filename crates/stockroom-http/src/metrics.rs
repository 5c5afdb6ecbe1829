//! Metrics in Prometheus's text format, through the `metrics` facade: any crate records with
//! `metrics::histogram!` / `counter!` / `gauge!` (the store's writer does) and the one recorder
//! installed here renders them all. `GET /metrics` on the API's port answers administrators;
//! [`serve_plain`] serves the same text without a token on an address of the operator's choosing.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Seconds: from 100 µs (a read on SQLite) to 10 s (a request at its payment gateway's timeout).
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Jobs in one writer batch: 1 to the batch limit (256).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Every metric Stockroom records, with its help text: (kind, name, help). docs/operations.md
/// lists the same, and a test checks that each appears after traffic.
pub const METRICS: [(&str, &str, &str); 11] = [
    ("histogram", "stockroom_http_request_duration_seconds", "Time to answer an HTTP request, by method, route template and status."),
    ("counter", "stockroom_http_responses_total", "HTTP responses by status code."),
    ("counter", "stockroom_http_shed_total", "Requests answered 503 at once because --max-concurrent-requests were in flight."),
    ("counter", "stockroom_http_timeouts_total", "Requests answered 503 after --request-timeout-ms."),
    ("histogram", "stockroom_writer_batch_size", "Write jobs committed in one database transaction by the group-commit writer."),
    ("histogram", "stockroom_writer_batch_duration_seconds", "Time the writer took for one batch, from taking its jobs to answering them."),
    ("histogram", "stockroom_db_commit_duration_seconds", "Time of the COMMIT of one writer batch (the fsync)."),
    ("gauge", "stockroom_writer_queue_depth", "Write jobs waiting for the writer when it took its last batch."),
    ("counter", "stockroom_idempotent_replays_total", "Writes answered with the stored answer of an earlier request with the same Idempotency-Key."),
    ("histogram", "stockroom_db_pool_wait_seconds", "Time the writer waited for a database connection (PostgreSQL)."),
    ("histogram", "stockroom_payment_gateway_duration_seconds", "Time the HTTP payment gateway took to answer, by outcome (approved, declined, error_status, timeout, unreachable, unreadable)."),
];

/// Also recorded, but only once it happens: pool timeouts, the connections the server refused
/// or closed (`server.rs`), order writes refused by their rate limits and authorizations
/// voided when overdue (`ratelimit.rs`, `gateways.rs`).
pub const OCCASIONAL: [(&str, &str, &str); 6] = [
    ("counter", "stockroom_db_pool_timeouts_total", "Database operations that gave up waiting for a free connection (answered 503)."),
    ("gauge", "stockroom_connections_open", "Connections open now."),
    ("counter", "stockroom_connections_refused_total", "Connections closed at accept because a cap was reached, by cap (max_connections, max_connections_per_address)."),
    ("counter", "stockroom_connections_timed_out_total", "Connections closed by a timeout, by timeout (header_read, keep_alive)."),
    ("counter", "stockroom_order_writes_limited_total", "Shoppers' checkouts and payments answered 429 (per-token or per-address limit)."),
    ("counter", "stockroom_authorizations_voided_total", "Authorizations voided by this instance because they were not captured in time."),
];

/// The process's recorder, installed on first use (a process has one global recorder; tests
/// that start several servers share it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("stockroom_writer_batch_size".into()),
                    &BATCH_BUCKETS,
                )
            })
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        for (kind, name, help) in METRICS.iter().chain(OCCASIONAL.iter()) {
            match *kind {
                "histogram" => metrics::describe_histogram!(*name, *help),
                "counter" => metrics::describe_counter!(*name, *help),
                _ => metrics::describe_gauge!(*name, *help),
            }
        }
        handle
    })
}

/// Keeps the recorder's histograms compact; runs until the process ends.
pub async fn upkeep_forever() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        handle().run_upkeep();
    }
}

/// Times every request by its route *template* (`/v2/inventories/{product}`, never the raw
/// path, so the number of series stays bounded) and status.
pub async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "stockroom_http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => status.clone()
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!("stockroom_http_responses_total", "code" => status).increment(1);
    response
}

/// The text Prometheus scrapes.
pub async fn render() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Serves `GET /metrics` (no token) on its own listener, for `--metrics-listen`.
pub async fn serve_plain(listener: TcpListener) -> std::io::Result<()> {
    axum::serve(listener, Router::new().route("/metrics", get(render))).await
}
