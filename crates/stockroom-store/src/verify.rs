//! `verify`: replay every history entry from the start and compare with every stock record.

use stockroom_domain::{replay_step, Action, Origin, Stock};

use crate::error::StoreError;
use crate::exec::{Reader, Row, Visit};

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

/// The replay under way: the report so far and the record being replayed.
#[derive(Default)]
struct Verifier {
    report: VerifyReport,
    current: Option<Replay>,
}

pub(crate) async fn run(db: &Reader) -> Result<VerifyReport, StoreError> {
    Ok(db.scan(REPLAY, Verifier::default()).await?.finish())
}

impl Visit for Verifier {
    fn visit(&mut self, row: Row) -> Result<(), StoreError> {
        let row = &row;
        let product_id: String = row.col("product_id")?;
        let location: String = row.col("location")?;
        // One replay per record: a product's stock at one location (or at none).
        let product = if location.is_empty() {
            product_id
        } else {
            format!("{product_id}@{location}")
        };
        if self.current.as_ref().map(|c| &c.product) != Some(&product) {
            if let Some(done) = self.current.take() {
                finish(done, &mut self.report);
            }
            self.report.records_replayed += 1;
            self.current = Some(Replay {
                product: product.clone(),
                state: None,
                broken: false,
                has_record: false,
            });
        }
        let Some(replay) = self.current.as_mut() else {
            return Ok(());
        };
        let kind: i64 = row.col("kind")?;
        if kind == 1 {
            check_record(replay, row, product, &mut self.report)
        } else {
            self.report.entries_checked += 1;
            replay_entry(replay, row, product, &mut self.report)
        }
    }
}

impl Verifier {
    fn finish(mut self) -> VerifyReport {
        if let Some(done) = self.current.take() {
            finish(done, &mut self.report);
        }
        self.report
    }
}

/// Compares a stock record with what its history replayed to.
fn check_record(
    replay: &mut Replay,
    row: &Row,
    product: String,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    report.records_checked += 1;
    replay.has_record = true;
    let record = Stock::from_stored(row.col("total")?, row.col("allocated")?, row.col("held")?);
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
    Ok(())
}

/// Replays one history entry, checking the figures it records.
fn replay_entry(
    replay: &mut Replay,
    row: &Row,
    product: String,
    report: &mut VerifyReport,
) -> Result<(), StoreError> {
    if replay.broken {
        return Ok(());
    }
    match step(replay.state, row)? {
        Ok(after) => replay.state = after,
        Err(detail) => {
            replay.broken = true;
            report.problems.push(Problem {
                product_id: product,
                detail,
            });
        }
    }
    Ok(())
}

/// The record after the entry in `row`, or what is wrong with the entry.
fn step(state: Option<Stock>, row: &Row) -> Result<Result<Option<Stock>, String>, StoreError> {
    let id: String = row.col::<Option<String>>("id")?.unwrap_or_default();
    let quantity: i64 = row.col("quantity")?;
    let action: Option<String> = row.col("action")?;
    let Some(action) = action.and_then(|a| a.parse::<Action>().ok()) else {
        return Ok(Err(format!("entry {id} has an unknown action")));
    };
    let origin = match row.col::<Option<String>>("order_id")? {
        Some(_) => Origin::Order,
        None => Origin::Manual,
    };
    let after = match replay_step(state, action, quantity, origin) {
        Ok(after) => after,
        Err(e) => return Ok(Err(format!("entry {id}: {e}"))),
    };
    // An entry records total and allocated (a delete entry zero for both).
    let recorded = Stock::from_figures(row.col("total")?, row.col("allocated")?).ok();
    let replayed = after.unwrap_or_default();
    let agrees = recorded
        .is_some_and(|r| (r.total(), r.allocated()) == (replayed.total(), replayed.allocated()));
    Ok(match agrees {
        true => Ok(after),
        false => Err(format!(
            "entry {id} ({action} {quantity}) records {} but replays to {}",
            describe(recorded),
            describe(after)
        )),
    })
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
