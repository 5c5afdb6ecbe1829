//! Orders (list and page, with ship and cancel) and locations.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use stockroom_domain::order::{Payment, Shipping, Status};
use stockroom_store::{Command, OrderQuery, Page, PaymentStatus, WriteRequest, NO_LOCATION};

use super::stock::{notice, notice_of, EntryView};
use super::{figure, fresh_key, idempotency, money, query, when, Paging, PostForm};
use crate::error::PageError;
use crate::html::{render, Nav};
use crate::session::Session;
use crate::Dash;

const ORDER_PAGE_ROWS: u64 = 25;

#[derive(Deserialize, Default)]
pub struct OrderParams {
    status: Option<String>,
    payment: Option<String>,
    shipping: Option<String>,
    page: Option<String>,
}

pub struct OrderView {
    pub href: String,
    pub id: String,
    pub created: String,
    pub status: &'static str,
    pub payment: &'static str,
    pub shipping: &'static str,
    pub total: String,
    pub items: usize,
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    nav: Option<Nav>,
    status: String,
    payment: String,
    shipping: String,
    rows: Vec<OrderView>,
    matches: String,
    newer: Option<String>,
    older: Option<String>,
}

pub async fn orders(
    session: Session,
    State(dash): State<Dash>,
    params: Result<Query<OrderParams>, QueryRejection>,
) -> Result<Response, PageError> {
    let p = params.map(|Query(p)| p).unwrap_or_default();
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (status, payment, shipping) = (text(&p.status), text(&p.payment), text(&p.shipping));
    let filter = OrderQuery {
        customer_id: None,
        status: Status::parse(&status),
        payment: Payment::parse(&payment),
        shipping: Shipping::parse(&shipping),
        ..OrderQuery::default()
    };
    let paging = Paging::new(p.page.as_deref(), ORDER_PAGE_ROWS);
    let found = dash.app.store.orders(&filter, paging.page).await?;
    let link = |n: u64| {
        query(
            "/dashboard/orders",
            &[
                ("status", &status),
                ("payment", &payment),
                ("shipping", &shipping),
                ("page", &n.to_string()),
            ],
        )
    };
    let (newer, older) = paging.links(found.total, link);
    let rows = found
        .items
        .iter()
        .map(|o| OrderView {
            href: format!("/dashboard/orders/{}", o.id),
            id: o.id.clone(),
            created: when(o.created_at),
            status: o.state.status.as_str(),
            payment: o.state.payment.as_str(),
            shipping: o.state.shipping.as_str(),
            total: money(&o.total),
            items: o.items.len(),
        })
        .collect();
    Ok(render(
        &OrdersPage {
            nav: session.nav("orders"),
            rows,
            matches: figure(found.total),
            newer,
            older,
            status,
            payment,
            shipping,
        },
        StatusCode::OK,
    ))
}

pub struct ItemView {
    pub product_href: String,
    pub product: String,
    pub place: String,
    pub name: String,
    pub sku: String,
    pub quantity: String,
    pub unit: String,
}

pub struct PaymentView {
    pub id: String,
    pub kind: String,
    pub gateway: String,
    pub status: &'static str,
    pub amount: String,
    pub allocation: &'static str,
    pub failure: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    nav: Option<Nav>,
    id: String,
    created: String,
    status: &'static str,
    payment: &'static str,
    shipping: &'static str,
    total: String,
    customer: String,
    billing: String,
    shipping_address: String,
    items: Vec<ItemView>,
    payments: Vec<PaymentView>,
    entries: Vec<EntryView>,
    can_ship: bool,
    can_cancel: bool,
    notice: Option<(&'static str, &'static str)>,
    csrf: String,
    idem: String,
}

/// A JSON object kept with an order, indented for reading.
fn pretty(raw: &str) -> String {
    serde_json::from_str::<serde_json::Value>(raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| raw.to_owned())
}

#[derive(Deserialize, Default)]
pub struct NoticeParam {
    notice: Option<String>,
}

pub async fn order(
    session: Session,
    State(dash): State<Dash>,
    Path(id): Path<String>,
    params: Result<Query<NoticeParam>, QueryRejection>,
) -> Result<Response, PageError> {
    let store = &dash.app.store;
    let Some(o) = store.order(&id).await? else {
        return Err(PageError::NotFound);
    };
    let payments = store.payments(&id).await?;
    let entries = store.order_history(&id).await?;
    let items = o
        .items
        .iter()
        .map(|i| ItemView {
            product_href: format!("/dashboard/products/{}", i.product_id),
            product: i.product_id.to_string(),
            place: if i.location == NO_LOCATION {
                String::new()
            } else {
                i.location.clone()
            },
            name: i.name.clone(),
            sku: i.sku.clone(),
            quantity: figure(i.quantity.get()),
            unit: money(&i.unit_price.amount),
        })
        .collect();
    let payments = payments
        .iter()
        .map(|p| PaymentView {
            id: p.id.clone(),
            kind: p.transaction_type.as_str().to_owned(),
            gateway: p.gateway.clone(),
            status: match p.status {
                PaymentStatus::Pending => "pending",
                PaymentStatus::Complete => "complete",
                PaymentStatus::Failed => "failed",
                PaymentStatus::Cancelled => "cancelled",
            },
            amount: money(&p.amount),
            allocation: match p.allocation {
                stockroom_store::AllocationState::None => "",
                stockroom_store::AllocationState::Held => "held",
                stockroom_store::AllocationState::Shipped => "shipped",
                stockroom_store::AllocationState::Released => "released",
            },
            failure: p.failure.clone().unwrap_or_default(),
            created: when(p.created_at),
        })
        .collect();
    let s = o.state;
    let open = s.status != Status::Cancelled && s.shipping == Shipping::Unfulfilled;
    Ok(render(
        &OrderPage {
            nav: session.nav("orders"),
            id: o.id.clone(),
            created: when(o.created_at),
            status: s.status.as_str(),
            payment: s.payment.as_str(),
            shipping: s.shipping.as_str(),
            total: money(&o.total),
            customer: pretty(&o.customer),
            billing: pretty(&o.billing_address),
            shipping_address: pretty(&o.shipping_address),
            items,
            payments,
            entries: entries.iter().map(EntryView::of).collect(),
            can_ship: open && s.payment == Payment::Paid,
            can_cancel: open,
            notice: params
                .ok()
                .and_then(|Query(p)| p.notice)
                .as_deref()
                .and_then(notice),
            csrf: session.csrf.clone(),
            idem: fresh_key(),
        },
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
pub struct OrderForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
}

async fn order_write(
    session: Session,
    dash: Dash,
    id: String,
    form: OrderForm,
    what: &str,
    command: Command,
) -> Result<Response, PageError> {
    session.check(&form.csrf)?;
    let key = idempotency(format!("dashboard {what} {id}"), &form.idem, &[what])?;
    let answer = dash
        .app
        .store
        .execute(WriteRequest {
            command,
            idempotency: Some(key),
        })
        .await;
    let target = query(
        &format!("/dashboard/orders/{id}"),
        &[("notice", notice_of(answer)?)],
    );
    Ok(Redirect::to(&target).into_response())
}

/// Marks a paid order shipped: its allocation becomes `ship` entries.
pub async fn ship(
    session: Session,
    State(dash): State<Dash>,
    Path(id): Path<String>,
    PostForm(form): PostForm<OrderForm>,
) -> Result<Response, PageError> {
    let command = Command::Ship {
        order_id: id.clone(),
    };
    order_write(session, dash, id, form, "ship", command).await
}

/// Cancels an order, releasing what it holds.
pub async fn cancel(
    session: Session,
    State(dash): State<Dash>,
    Path(id): Path<String>,
    PostForm(form): PostForm<OrderForm>,
) -> Result<Response, PageError> {
    let command = Command::Cancel {
        order_id: id.clone(),
    };
    order_write(session, dash, id, form, "cancel", command).await
}

pub struct LocationView {
    pub slug: String,
    pub name: String,
    pub stock_href: String,
    pub products: String,
    pub total: String,
    pub allocated: String,
    pub available: String,
}

#[derive(Template)]
#[template(path = "locations.html")]
struct LocationsPage {
    nav: Option<Nav>,
    rows: Vec<LocationView>,
    /// Seconds since the totals were read.
    age: u64,
}

pub async fn locations(session: Session, State(dash): State<Dash>) -> Result<Response, PageError> {
    let known = dash
        .app
        .store
        .locations(Page {
            limit: 100,
            offset: 0,
        })
        .await?;
    let store = dash.app.store.clone();
    let (held, read_at) = dash
        .summaries
        .get(super::SUMMARY_MAX_AGE, async move {
            store.location_summaries().await
        })
        .await?;
    let age = read_at.elapsed().as_secs();
    let mut rows: Vec<LocationView> = Vec::new();
    let names = std::iter::once((NO_LOCATION.to_owned(), "(no location)".to_owned()))
        .chain(known.items.into_iter().map(|l| (l.slug, l.name)));
    for (slug, name) in names {
        let summary = held.iter().find(|h| h.slug == slug);
        if slug == NO_LOCATION && summary.is_none() {
            continue;
        }
        let (products, total, allocated) =
            summary.map_or((0, 0, 0), |h| (h.products, h.total, h.allocated));
        rows.push(LocationView {
            stock_href: query(
                "/dashboard/stock",
                &[("location", if slug.is_empty() { "-" } else { &slug })],
            ),
            slug,
            name,
            products: figure(products),
            total: figure(total),
            allocated: figure(allocated),
            available: figure(total - allocated),
        });
    }
    Ok(render(
        &LocationsPage {
            nav: session.nav("locations"),
            rows,
            age,
        },
        StatusCode::OK,
    ))
}
