//! `verify`: replay every history entry from the start and compare with every stock record.

use futures::TryStreamExt;
use sqlx::{AnyPool, Row};
use stockroom_domain::{replay_step, Action, Origin, Stock};

use crate::error::StoreError;

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Stock records compared with their replayed history.
    pub records_checked: u64,
    /// Records with history (a product at a location, or at none; deleted ones included).
    pub records_replayed: u64,
    /// History entries replayed.
    pub entries_checked: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The product, with `@location` for stock held at a location.
    pub product_id: String,
    pub detail: String,
}

/// Per product, in one statement (so one consistent snapshot even while the service runs):
/// its history entries in the order they were applied, then its stock record if it has one.
/// An entry with an order id came from the order flow (so its units are, or were, held).
const REPLAY: &str =
    "SELECT product_id, location, 0 AS kind, seq, action, quantity, total, allocated, 0 AS held, \
     id, order_id FROM history \
     UNION ALL \
     SELECT product_id, location, 1 AS kind, 0 AS seq, NULL AS action, 0 AS quantity, total, \
     allocated, held, NULL AS id, NULL AS order_id FROM stock \
     ORDER BY product_id, location, kind, seq";

struct Replay {
    product: String,
    state: Option<Stock>,
    broken: bool,
    has_record: bool,
}

pub(crate) async fn run(pool: &AnyPool) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut conn = pool.acquire().await?;
    let mut rows = sqlx::query(REPLAY).fetch(&mut *conn);
    let mut current: Option<Replay> = None;
    while let Some(row) = rows.try_next().await? {
        let product_id: String = row.try_get("product_id")?;
        let location: String = row.try_get("location")?;
        // One replay per record: a product's stock at one location (or at none).
        let product = if location.is_empty() {
            product_id
        } else {
            format!("{product_id}@{location}")
        };
        if current.as_ref().map(|c| &c.product) != Some(&product) {
            if let Some(done) = current.take() {
                finish(done, &mut report);
            }
            report.records_replayed += 1;
            current = Some(Replay {
                product: product.clone(),
                state: None,
                broken: false,
                has_record: false,
            });
        }
        let Some(replay) = current.as_mut() else {
            continue;
        };
        let kind: i64 = row.try_get("kind")?;
        let total: i64 = row.try_get("total")?;
        let allocated: i64 = row.try_get("allocated")?;
        if kind == 1 {
            report.records_checked += 1;
            replay.has_record = true;
            let record = Stock::from_stored(total, allocated, row.try_get("held")?);
            match (record, replay.state) {
                (Ok(record), Some(state)) if record == state => {}
                _ if replay.broken => {}
                (record, state) => report.problems.push(Problem {
                    product_id: product,
                    detail: format!(
                        "record is {} but the history replays to {}",
                        describe(record.ok()),
                        describe(state)
                    ),
                }),
            }
            continue;
        }
        report.entries_checked += 1;
        if replay.broken {
            continue;
        }
        let action: Option<String> = row.try_get("action")?;
        let id: Option<String> = row.try_get("id")?;
        let quantity: i64 = row.try_get("quantity")?;
        let id = id.unwrap_or_default();
        let Some(action) = action.and_then(|a| a.parse::<Action>().ok()) else {
            replay.broken = true;
            report.problems.push(Problem {
                product_id: product,
                detail: format!("entry {id} has an unknown action"),
            });
            continue;
        };
        let order_id: Option<String> = row.try_get("order_id")?;
        let origin = if order_id.is_some() {
            Origin::Order
        } else {
            Origin::Manual
        };
        match replay_step(replay.state, action, quantity, origin) {
            Ok(after) => {
                // An entry records total and allocated (a delete entry zero for both).
                let recorded = Stock::from_figures(total, allocated).ok();
                let replayed = after.unwrap_or_default();
                let agrees = recorded.is_some_and(|r| {
                    (r.total(), r.allocated()) == (replayed.total(), replayed.allocated())
                });
                if !agrees {
                    replay.broken = true;
                    report.problems.push(Problem {
                        product_id: product,
                        detail: format!(
                            "entry {id} ({action} {quantity}) records {} but replays to {}",
                            describe(recorded),
                            describe(after)
                        ),
                    });
                }
                replay.state = after;
            }
            Err(e) => {
                replay.broken = true;
                report.problems.push(Problem {
                    product_id: product,
                    detail: format!("entry {id}: {e}"),
                });
            }
        }
    }
    if let Some(done) = current.take() {
        finish(done, &mut report);
    }
    Ok(report)
}

/// A product whose history leaves a record standing must have that record.
fn finish(replay: Replay, report: &mut VerifyReport) {
    if !replay.broken && !replay.has_record {
        if let Some(state) = replay.state {
            report.problems.push(Problem {
                product_id: replay.product,
                detail: format!(
                    "the history replays to {} but there is no stock record",
                    describe(Some(state))
                ),
            });
        }
    }
}

fn describe(stock: Option<Stock>) -> String {
    match stock {
        Some(s) if s.held() > 0 => format!(
            "total {} allocated {} (held by orders {})",
            s.total(),
            s.allocated(),
            s.held()
        ),
        Some(s) => format!("total {} allocated {}", s.total(), s.allocated()),
        None => "no record".to_owned(),
    }
}
