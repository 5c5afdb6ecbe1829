//! The stock table, a product's page and the adjust-stock form.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Redirect, Response};
use serde::Deserialize;
use stockroom_domain::limits::REASON_LEN_MAX;
use stockroom_domain::{Action, Adjustment, ProductId, Quantity, StockLevel, Timestamp};
use stockroom_store::{
    Answer, HistoryEntry, HistoryQuery, LevelFilter, Outcome, Page, Rejection, StockQuery,
    WriteRequest, NO_LOCATION,
};

use super::{figure, fresh_key, idempotency, money, query, when, Paging, PostForm};
use crate::chart;
use crate::error::PageError;
use crate::html::{render, Nav};
use crate::levels::{self, Target};
use crate::session::Session;
use crate::Dash;

const STOCK_PAGE_ROWS: u64 = 50;
const HISTORY_PAGE_ROWS: u64 = 20;
/// Entries the chart draws (the latest).
const CHART_ENTRIES_MAX: u64 = 500;
const LOW_DEFAULT: u64 = 10;

/// The label of a location slug.
fn place(slug: &str) -> String {
    if slug == NO_LOCATION {
        "(no location)".to_owned()
    } else {
        slug.to_owned()
    }
}

#[derive(Deserialize, Default)]
pub struct StockParams {
    q: Option<String>,
    location: Option<String>,
    level: Option<String>,
    low: Option<String>,
    after: Option<String>,
}

pub struct StockView {
    pub href: String,
    pub id: String,
    pub sku: String,
    pub name: String,
    pub total: String,
    pub allocated: String,
    pub available: String,
    pub records: u64,
    /// `out`, `low` or `ok`.
    pub state: &'static str,
}

#[derive(Template)]
#[template(path = "stock.html")]
struct StockPage {
    nav: Option<Nav>,
    q: String,
    location: String,
    level: String,
    low: String,
    locations: Vec<String>,
    rows: Vec<StockView>,
    matches: String,
    first: Option<String>,
    next: Option<String>,
}

pub async fn stock(
    session: Session,
    State(dash): State<Dash>,
    params: Result<Query<StockParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    let low = p
        .low
        .as_deref()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(LOW_DEFAULT)
        .min(1_000_000_000);
    let level = match p.level.as_deref() {
        Some("low") => LevelFilter::Low(low),
        Some("out") => LevelFilter::Out,
        _ => LevelFilter::All,
    };
    let location = p.location.clone().filter(|l| !l.is_empty());
    let search = p.q.clone().unwrap_or_default();
    let after = p.after.as_deref().and_then(|a| ProductId::parse(a).ok());
    let stock_query = StockQuery {
        search: search.chars().take(200).collect(),
        location: location
            .clone()
            .map(|l| if l == "-" { NO_LOCATION.to_owned() } else { l }),
        level,
        after: after.clone(),
    };
    let found = dash
        .app
        .store
        .stock_overview(&stock_query, STOCK_PAGE_ROWS)
        .await?;
    let known = dash
        .app
        .store
        .locations(Page {
            limit: 100,
            offset: 0,
        })
        .await?;
    let level_name = match level {
        LevelFilter::All => "",
        LevelFilter::Low(_) => "low",
        LevelFilter::Out => "out",
    };
    let low_text = low.to_string();
    let location_text = location.unwrap_or_default();
    let link = |after: &str| {
        query(
            "/dashboard/stock",
            &[
                ("q", &search),
                ("location", &location_text),
                ("level", level_name),
                ("low", &low_text),
                ("after", after),
            ],
        )
    };
    let next = (found.items.len() as u64 == STOCK_PAGE_ROWS)
        .then(|| found.items.last().map(|r| link(r.product_id.as_str())))
        .flatten();
    let rows = found
        .items
        .iter()
        .map(|r| StockView {
            href: format!("/dashboard/products/{}", r.product_id),
            id: r.product_id.to_string(),
            sku: r.sku.clone(),
            name: r.name.clone(),
            total: figure(r.total),
            allocated: figure(r.allocated),
            available: figure(r.available()),
            records: r.records,
            state: match r.available() {
                0 => "out",
                n if n <= low => "low",
                _ => "ok",
            },
        })
        .collect();
    Ok(render(
        &StockPage {
            nav: session.nav("stock"),
            q: search.clone(),
            location: location_text.clone(),
            level: level_name.to_owned(),
            low: low_text.clone(),
            locations: known.items.into_iter().map(|l| l.slug).collect(),
            rows,
            matches: figure(found.total),
            first: after.is_some().then(|| link("")),
            next,
        },
        StatusCode::OK,
    ))
}

#[derive(Deserialize, Default)]
pub struct ProductParams {
    action: Option<String>,
    location: Option<String>,
    from: Option<String>,
    before: Option<String>,
    page: Option<String>,
    notice: Option<String>,
}

pub struct RecordView {
    pub place: String,
    pub slug: String,
    pub total: String,
    pub allocated: String,
    pub available: String,
    pub updated: String,
}

pub struct EntryView {
    pub when: String,
    pub place: String,
    pub action: &'static str,
    pub quantity: String,
    pub total: String,
    pub allocated: String,
    pub available: String,
    pub order: Option<String>,
    pub reason: String,
}

impl EntryView {
    pub fn of(e: &HistoryEntry) -> EntryView {
        EntryView {
            when: when(e.created_at),
            place: place(&e.location),
            action: e.action.as_str(),
            quantity: figure(e.quantity),
            total: figure(e.after.total()),
            allocated: figure(e.after.allocated()),
            available: figure(e.after.available()),
            order: e.order_id.clone(),
            reason: e.reason.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    nav: Option<Nav>,
    id: String,
    sku: String,
    name: String,
    price: String,
    total: String,
    allocated: String,
    available: String,
    records: Vec<RecordView>,
    chart: String,
    entries: Vec<EntryView>,
    entries_total: String,
    action: String,
    location: String,
    from: String,
    before: String,
    actions: Vec<&'static str>,
    newer: Option<String>,
    older: Option<String>,
    notice: Option<(&'static str, &'static str)>,
    csrf: String,
    idem: String,
}

/// A `YYYY-MM-DD` date as the instant its day begins (UTC).
fn day(raw: &str) -> Result<Option<Timestamp>, PageError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(raw.trim(), &format)
        .map_err(|_| PageError::BadRequest(format!("{raw:?} is not a date (YYYY-MM-DD)")))?;
    let secs = date.midnight().assume_utc().unix_timestamp();
    Ok(Some(Timestamp::from_secs(secs)))
}

pub async fn product(
    session: Session,
    State(dash): State<Dash>,
    Path(raw): Path<String>,
    params: Result<Query<ProductParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    let id = ProductId::parse(&raw).map_err(|_| PageError::NotFound)?;
    let store = &dash.app.store;
    let Some(stock) = store.stock(&id).await? else {
        return Err(PageError::NotFound);
    };
    let catalog = store.product(id.as_str()).await?;
    let action = p.action.clone().unwrap_or_default();
    let location = p.location.clone().unwrap_or_default();
    let history_query = HistoryQuery {
        action: action.parse::<Action>().ok(),
        location: (!location.is_empty()).then(|| {
            if location == "-" {
                NO_LOCATION.to_owned()
            } else {
                location.clone()
            }
        }),
        created_from: day(p.from.as_deref().unwrap_or(""))?,
        created_before: day(p.before.as_deref().unwrap_or(""))?,
    };
    let paging = Paging::new(p.page.as_deref(), HISTORY_PAGE_ROWS);
    let history = store.history(&id, &history_query, paging.page).await?;
    let series = store
        .history_series(&id, history_query.location.as_deref(), CHART_ENTRIES_MAX)
        .await?;
    let from = p.from.clone().unwrap_or_default();
    let before = p.before.clone().unwrap_or_default();
    let link = |n: u64| {
        query(
            &format!("/dashboard/products/{id}"),
            &[
                ("action", &action),
                ("location", &location),
                ("from", &from),
                ("before", &before),
                ("page", &n.to_string()),
            ],
        )
    };
    let (newer, older) = paging.links(history.total, link);
    let records = stock
        .records
        .iter()
        .map(|r| RecordView {
            place: place(&r.location),
            slug: r.location.clone(),
            total: figure(r.stock.total()),
            allocated: figure(r.stock.allocated()),
            available: figure(r.stock.available()),
            updated: when(r.updated_at),
        })
        .collect();
    Ok(render(
        &ProductPage {
            nav: session.nav("stock"),
            id: id.to_string(),
            sku: catalog.as_ref().map(|c| c.sku.clone()).unwrap_or_default(),
            name: catalog.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            price: catalog
                .as_ref()
                .map(|c| money(&c.price.amount))
                .unwrap_or_default(),
            total: figure(stock.total),
            allocated: figure(stock.allocated),
            available: figure(stock.available()),
            records,
            chart: chart::stock_chart(&series),
            entries: history.items.iter().map(EntryView::of).collect(),
            entries_total: figure(history.total),
            newer,
            older,
            action,
            location,
            from,
            before,
            actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
            notice: p.notice.as_deref().and_then(notice),
            csrf: session.csrf.clone(),
            idem: fresh_key(),
        },
        StatusCode::OK,
    ))
}

/// What a `notice` code says, and whether it is good news (`ok`) or not (`error`).
pub fn notice(code: &str) -> Option<(&'static str, &'static str)> {
    Some(match code {
        "applied" => ("ok", "Done."),
        "replayed" => ("ok", "This form was sent before; it was applied once."),
        "unchanged" => (
            "ok",
            "Nothing to change: the stock is at that level already.",
        ),
        "not_found" => ("error", "Refused: there is no such record."),
        "insufficient_available" => ("error", "Refused: not enough stock is available."),
        "insufficient_allocated" => ("error", "Refused: not enough stock is allocated."),
        "below_allocated" => (
            "error",
            "Refused: the total cannot go below what is allocated.",
        ),
        "too_large" => ("error", "Refused: the total would be too large."),
        "order_state" => ("error", "Refused: the order's state does not allow that."),
        "refused" => ("error", "Refused."),
        "key_reused" => (
            "error",
            "This form was already used for something else; reload the page.",
        ),
        _ => return None,
    })
}

/// The notice code of a write's answer.
pub fn notice_of(
    answer: Result<Answer, stockroom_store::StoreError>,
) -> Result<&'static str, PageError> {
    use stockroom_domain::Refusal;
    Ok(match answer {
        Ok(Answer {
            replayed: true,
            outcome: Outcome::Applied(_),
        }) => "replayed",
        Ok(Answer {
            outcome: Outcome::Applied(_),
            ..
        }) => "applied",
        Ok(Answer {
            outcome: Outcome::Refused(r),
            ..
        }) => match r {
            Rejection::NotFound | Rejection::LocationRequired => "not_found",
            Rejection::Stock(Refusal::InsufficientAvailable) | Rejection::OutOfStock => {
                "insufficient_available"
            }
            Rejection::Stock(Refusal::InsufficientAllocated) => "insufficient_allocated",
            Rejection::Stock(Refusal::BelowAllocated) | Rejection::HasAllocations => {
                "below_allocated"
            }
            Rejection::Stock(Refusal::TotalTooLarge) => "too_large",
            Rejection::Order(_) => "order_state",
            _ => "refused",
        },
        Err(stockroom_store::StoreError::IdempotencyMismatch) => "key_reused",
        Err(e) => return Err(e.into()),
    })
}

#[derive(Deserialize)]
pub struct AdjustForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    quantity: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    reason: String,
}

/// Increment, decrement or set one record, once however often the form is sent.
pub async fn adjust(
    session: Session,
    State(dash): State<Dash>,
    Path(raw): Path<String>,
    PostForm(form): PostForm<AdjustForm>,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let id = ProductId::parse(&raw).map_err(|_| PageError::NotFound)?;
    let amount: i64 = form
        .quantity
        .trim()
        .parse()
        .map_err(|_| PageError::BadRequest("The quantity must be a whole number.".into()))?;
    let reason = form.reason.trim();
    if reason.len() > REASON_LEN_MAX || reason.contains('\0') {
        return Err(PageError::BadRequest(format!(
            "The reason may be at most {REASON_LEN_MAX} bytes."
        )));
    }
    let key = idempotency(
        format!("dashboard adjust {id}"),
        &form.idem,
        &[&form.action, &amount.to_string(), &form.location, reason],
    )?;
    let reason = (!reason.is_empty()).then(|| reason.to_owned());
    let command = match form.action.as_str() {
        "increment" | "decrement" => {
            let q = Quantity::new(amount).map_err(|e| PageError::BadRequest(e.to_string()))?;
            let action = if form.action == "increment" {
                Action::Increment
            } else {
                Action::Decrement
            };
            stockroom_store::Command::Transact {
                product: id.clone(),
                location: form.location.clone(),
                adjustment: Adjustment::of(action, q),
                order_id: None,
                reason,
            }
        }
        "set" => {
            let level =
                StockLevel::new(amount).map_err(|e| PageError::BadRequest(e.to_string()))?;
            let current = dash.app.store.stock(&id).await?;
            let Some(record) = current.as_ref().and_then(|s| s.at(&form.location)) else {
                return Ok(back(&id, "not_found"));
            };
            if level.get() < record.stock.allocated() {
                return Ok(back(&id, "below_allocated"));
            }
            let target = Target {
                location: form.location.clone(),
                total: level,
                allocated: None,
            };
            let plan = levels::plan(&id, current.as_ref(), &[target], reason.as_deref());
            match plan.phases.into_iter().flatten().next() {
                Some(command) => command,
                None => return Ok(back(&id, "unchanged")),
            }
        }
        _ => {
            return Err(PageError::BadRequest(
                "Choose increment, decrement or set.".into(),
            ))
        }
    };
    let answer = dash
        .app
        .store
        .execute(WriteRequest {
            command,
            idempotency: Some(key),
        })
        .await;
    Ok(back(&id, notice_of(answer)?))
}

fn back(id: &ProductId, notice: &str) -> Response {
    use axum::response::IntoResponse;
    Redirect::to(&query(
        &format!("/dashboard/products/{id}"),
        &[("notice", notice)],
    ))
    .into_response()
}
