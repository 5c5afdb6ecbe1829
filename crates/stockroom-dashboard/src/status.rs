//! The status page: throughput, latency, the writer's batches and queue, read from the same
//! metrics `/metrics` serves (the recorder's own text, parsed back), plus a sample every few
//! seconds so that throughput can be shown over the last minutes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::chart::{step_chart, Line};
use crate::error::PageError;
use crate::html::{render, Nav};
use crate::pages::figure;
use crate::session::Session;
use crate::Dash;

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: ten minutes.
const SAMPLES_MAX: usize = 120;

/// One sample of the text format: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus's text format (the lines this process's recorder writes).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, labels_of(rest.strip_suffix('}')?)),
                None => (head, BTreeMap::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

fn labels_of(raw: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = raw;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c })),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    out
}

/// The sum of a metric's samples whose labels include `with`.
pub fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v))
        })
        .map(|s| s.value)
        .sum()
}

/// A quantile of a histogram (summed over its label sets), from its cumulative buckets: the
/// upper bound of the bucket the quantile falls in. `None` with no observations.
pub fn quantile(samples: &[Sample], histogram: &str, q: f64) -> Option<f64> {
    let bucket = format!("{histogram}_bucket");
    let mut by_bound: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name == bucket) {
        let bound = match s.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(v) => v.parse().ok()?,
            None => continue,
        };
        by_bound.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += s.value;
    }
    let mut bounds: Vec<(f64, f64)> = by_bound.into_values().collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = bounds.last()?.1;
    if count == 0.0 {
        return None;
    }
    bounds
        .iter()
        .find(|(_, n)| *n >= q * count)
        .map(|(b, _)| *b)
}

/// Samples of the request and write counters, taken every few seconds.
#[derive(Default)]
pub struct Samples {
    taken: Mutex<VecDeque<(Instant, f64, f64)>>,
}

impl Samples {
    fn take(&self) {
        let samples = parse(&stockroom_http::metrics::handle().render());
        let requests = total(
            &samples,
            "stockroom_http_request_duration_seconds_count",
            &[],
        );
        let jobs = total(&samples, "stockroom_writer_batch_size_sum", &[]);
        if let Ok(mut taken) = self.taken.lock() {
            taken.push_back((Instant::now(), requests, jobs));
            while taken.len() > SAMPLES_MAX {
                taken.pop_front();
            }
        }
    }

    /// Requests and writes per second between consecutive samples: (seconds ago, requests/s,
    /// writes/s), oldest first.
    fn rates(&self) -> Vec<(f64, f64, f64)> {
        let Ok(taken) = self.taken.lock() else {
            return Vec::new();
        };
        let now = Instant::now();
        taken
            .iter()
            .zip(taken.iter().skip(1))
            .map(|(a, b)| {
                let secs = b.0.duration_since(a.0).as_secs_f64().max(0.001);
                (
                    -now.duration_since(b.0).as_secs_f64(),
                    (b.1 - a.1).max(0.0) / secs,
                    (b.2 - a.2).max(0.0) / secs,
                )
            })
            .collect()
    }
}

pub async fn sample_forever(samples: std::sync::Arc<Samples>) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        every.tick().await;
        samples.take();
    }
}

pub struct RouteView {
    pub route: String,
    pub requests: String,
    pub p50: String,
    pub p99: String,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    nav: Option<Nav>,
    requests: String,
    rate: String,
    writes_rate: String,
    p50: String,
    p99: String,
    errors: String,
    shed: String,
    timeouts: String,
    batches: String,
    batch_mean: String,
    batch_p99: String,
    batch_ms_p99: String,
    commit_ms_p50: String,
    commit_ms_p99: String,
    queue: String,
    replays: String,
    pool_timeouts: String,
    gateway: Vec<(String, String)>,
    routes: Vec<RouteView>,
    chart: String,
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() => format!("≤ {} ms", trim(s * 1000.0)),
        Some(_) => "> 10 s".to_owned(),
        None => "—".to_owned(),
    }
}

fn trim(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// Each route's requests and latency quantiles, busiest first.
fn routes(samples: &[Sample]) -> Vec<RouteView> {
    let name = "stockroom_http_request_duration_seconds";
    let mut per: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.name.starts_with(name)) {
        let key = format!(
            "{} {}",
            s.labels.get("method").map_or("", String::as_str),
            s.labels.get("route").map_or("", String::as_str)
        );
        per.entry(key).or_default().push(s.clone());
    }
    let mut views: Vec<(f64, RouteView)> = per
        .into_iter()
        .map(|(route, s)| {
            let count = total(&s, &format!("{name}_count"), &[]);
            let view = RouteView {
                route,
                requests: figure(count as u64),
                p50: ms(quantile(&s, name, 0.5)),
                p99: ms(quantile(&s, name, 0.99)),
            };
            (count, view)
        })
        .collect();
    views.sort_by(|a, b| b.0.total_cmp(&a.0));
    views.into_iter().take(20).map(|(_, v)| v).collect()
}

pub async fn page(session: Session, State(dash): State<Dash>) -> Result<Response, PageError> {
    let s = parse(&stockroom_http::metrics::handle().render());
    let rates = dash.samples.rates();
    let last = rates.last().copied().unwrap_or((0.0, 0.0, 0.0));
    let count = |name: &str| figure(total(&s, name, &[]) as u64);
    let errors: f64 = s
        .iter()
        .filter(|x| x.name == "stockroom_http_responses_total")
        .filter(|x| x.labels.get("code").is_some_and(|c| c.starts_with('5')))
        .map(|x| x.value)
        .sum();
    let batches = total(&s, "stockroom_writer_batch_size_count", &[]);
    let jobs = total(&s, "stockroom_writer_batch_size_sum", &[]);
    let mut gateway: Vec<(String, String)> = s
        .iter()
        .filter(|x| x.name == "stockroom_payment_gateway_duration_seconds_count")
        .map(|x| {
            (
                x.labels.get("outcome").cloned().unwrap_or_default(),
                figure(x.value as u64),
            )
        })
        .collect();
    gateway.sort();
    let chart = if rates.len() < 2 {
        "<p class=\"muted\">Throughput appears after a few samples (one every 5 s).</p>".to_owned()
    } else {
        step_chart(
            "Requests and writes per second, last minutes",
            &[
                Line {
                    label: "requests/s",
                    colour: "#1f5fbf",
                    points: rates.iter().map(|r| (r.0, r.1)).collect(),
                },
                Line {
                    label: "writes/s",
                    colour: "#1e8449",
                    points: rates.iter().map(|r| (r.0, r.2)).collect(),
                },
            ],
            (&format!("{:.0} s ago", -rates[0].0), "now"),
        )
    };
    let page = StatusPage {
        nav: session.nav("status"),
        requests: count("stockroom_http_request_duration_seconds_count"),
        rate: trim(last.1),
        writes_rate: trim(last.2),
        p50: ms(quantile(&s, "stockroom_http_request_duration_seconds", 0.5)),
        p99: ms(quantile(
            &s,
            "stockroom_http_request_duration_seconds",
            0.99,
        )),
        errors: figure(errors as u64),
        shed: count("stockroom_http_shed_total"),
        timeouts: count("stockroom_http_timeouts_total"),
        batches: figure(batches as u64),
        batch_mean: if batches > 0.0 {
            trim(jobs / batches)
        } else {
            "—".into()
        },
        batch_p99: quantile(&s, "stockroom_writer_batch_size", 0.99).map_or("—".into(), trim),
        batch_ms_p99: ms(quantile(
            &s,
            "stockroom_writer_batch_duration_seconds",
            0.99,
        )),
        commit_ms_p50: ms(quantile(&s, "stockroom_db_commit_duration_seconds", 0.5)),
        commit_ms_p99: ms(quantile(&s, "stockroom_db_commit_duration_seconds", 0.99)),
        queue: count("stockroom_writer_queue_depth"),
        replays: count("stockroom_idempotent_replays_total"),
        pool_timeouts: count("stockroom_db_pool_timeouts_total"),
        gateway,
        routes: routes(&s),
        chart,
    };
    Ok(render(&page, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE h histogram\n\
        h_bucket{route=\"/a\",le=\"0.001\"} 5\n\
        h_bucket{route=\"/a\",le=\"0.01\"} 9\n\
        h_bucket{route=\"/a\",le=\"+Inf\"} 10\n\
        h_bucket{route=\"/b\",le=\"0.001\"} 0\n\
        h_bucket{route=\"/b\",le=\"0.01\"} 0\n\
        h_bucket{route=\"/b\",le=\"+Inf\"} 10\n\
        h_count{route=\"/a\"} 10\n\
        h_count{route=\"/b\"} 10\n\
        c{code=\"5\\\"x\"} 3\n";

    #[test]
    fn the_text_format_is_read_back_with_its_labels() {
        let s = parse(TEXT);
        assert_eq!(s.len(), 9);
        assert_eq!(total(&s, "h_count", &[]), 20.0);
        assert_eq!(total(&s, "h_count", &[("route", "/a")]), 10.0);
        assert_eq!(s[8].labels.get("code").map(String::as_str), Some("5\"x"));
    }

    #[test]
    fn quantiles_come_from_the_summed_buckets() {
        let s = parse(TEXT);
        assert_eq!(quantile(&s, "h", 0.25), Some(0.001));
        assert_eq!(quantile(&s, "h", 0.45), Some(0.01));
        assert_eq!(quantile(&s, "h", 0.99), Some(f64::INFINITY));
        assert_eq!(quantile(&s, "nothing", 0.5), None);
    }
}
