//! Elastic Path's JSON shapes for what Stockroom returns. Only this module knows them.

use serde_json::{json, Value};
use stockroom_domain::Timestamp;
use stockroom_store::{HistoryEntry, Page, StockRecord};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// RFC 3339, UTC, e.g. `2026-11-27T09:17:43.123456Z`.
pub fn rfc3339(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.micros()) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn stock(record: &StockRecord) -> Value {
    json!({
        "id": record.product_id.as_str(),
        "type": "stock",
        "total": record.stock.total(),
        "available": record.stock.available(),
        "allocated": record.stock.allocated(),
        "meta": {
            "timestamps": {
                "created_at": rfc3339(record.created_at),
                "updated_at": rfc3339(record.updated_at),
            }
        }
    })
}

/// A stock record as it stood right after a history entry (answers to create).
pub fn stock_after(entry: &HistoryEntry) -> Value {
    json!({
        "id": entry.product_id.as_str(),
        "type": "stock",
        "total": entry.after.total(),
        "available": entry.after.available(),
        "allocated": entry.after.allocated(),
        "meta": {
            "timestamps": {
                "created_at": rfc3339(entry.created_at),
                "updated_at": rfc3339(entry.created_at),
            }
        }
    })
}

pub fn transaction(entry: &HistoryEntry) -> Value {
    let mut v = json!({
        "id": entry.id,
        "type": "stock-transaction",
        "action": entry.action.as_str(),
        "product_id": entry.product_id.as_str(),
        "quantity": entry.quantity,
        "total": entry.after.total(),
        "allocated": entry.after.allocated(),
        "available": entry.after.available(),
        "timestamps": { "created_at": rfc3339(entry.created_at) },
    });
    if let Some(order_id) = &entry.order_id {
        v["order_id"] = json!(order_id);
    }
    if let Some(reason) = &entry.reason {
        v["reason"] = json!(reason);
    }
    v
}

/// A page of a list with Elastic Path's `links` and `meta`. `path` is the list's path and
/// `extra` any query (filter) to keep in the links.
pub fn list(items: Vec<Value>, total: u64, page: Page, path: &str, extra: &str) -> Value {
    let link = |offset: u64| {
        format!(
            "{path}?page[offset]={offset}&page[limit]={}{extra}",
            page.limit
        )
    };
    let pages = total.div_ceil(page.limit).max(1);
    let last_offset = (pages - 1) * page.limit;
    let mut links = json!({
        "current": link(page.offset),
        "first": link(0),
        "last": link(last_offset),
    });
    if page.offset + page.limit < total {
        links["next"] = json!(link(page.offset + page.limit));
    }
    if page.offset > 0 {
        links["prev"] = json!(link(page.offset.saturating_sub(page.limit)));
    }
    json!({
        "data": items,
        "links": links,
        "meta": {
            "page": {
                "limit": page.limit,
                "offset": page.offset,
                "current": page.offset / page.limit + 1,
                "total": pages,
            },
            "results": { "total": total },
        }
    })
}
