//! Stock records and their history: the reads, the batch's locked copy of the records it
//! touches ([`Stocks`]), and the stock commands applied to it.

use std::collections::{BTreeMap, BTreeSet};

use stockroom_domain::{
    Action, Adjustment, Origin, ProductId, Refusal, Stock, StockLevel, Timestamp,
};

use crate::batch_rows::{bulk, HistoryRow, StockRow};
use crate::dialect::{stock_columns, Dialect};
use crate::error::StoreError;
use crate::exec::{args, Reader, Row, Stmt};
use crate::locations::Slugs;
use crate::model::*;
use crate::rows::{self, figure, history_columns};

/// A stock record's key: product and location slug ([`NO_LOCATION`] for none). Ordered by
/// product, then location: the order in which every writer locks rows.
pub(crate) type Key = (ProductId, String);

/// Units wanted per stock record.
pub(crate) type Wanted = BTreeMap<Key, u64>;

/// One change to a record: product, location, action and quantity.
pub(crate) type LineAction = (ProductId, String, Adjustment);

/// A stock row as the batch sees it: as read, and as the batch has left it so far.
struct Slot {
    read: Option<Stock>,
    current: Option<Stock>,
}

/// The stock records a batch has locked (or only read, to check), as it has left them so far,
/// and the history entries it has made. Lives only inside the transaction that holds the
/// records' locks.
pub(crate) struct Stocks {
    now: Timestamp,
    /// Products whose records (at every location) the batch has locked and read.
    locked: BTreeSet<ProductId>,
    /// Products whose records the batch has read without a lock: it may check them, never
    /// change them.
    checked: BTreeSet<ProductId>,
    slots: BTreeMap<Key, Slot>,
    entries: Vec<HistoryEntry>,
}

impl Stocks {
    /// The records read by `Dialect::lock_stocks` for the products in `locked`, and by
    /// `Dialect::read_stocks` for those in `checked` (a locked record read both ways is the
    /// same: the lock was taken first).
    pub fn read(
        (locked, locked_rows): (BTreeSet<ProductId>, &[Row]),
        (checked, checked_rows): (BTreeSet<ProductId>, &[Row]),
        now: Timestamp,
    ) -> Result<Stocks, StoreError> {
        let mut slots = BTreeMap::new();
        for row in checked_rows.iter().chain(locked_rows) {
            let record = rows::stock_record(row)?;
            slots.insert(
                (record.product_id, record.location),
                Slot {
                    read: Some(record.stock),
                    current: Some(record.stock),
                },
            );
        }
        Ok(Stocks {
            now,
            locked,
            checked,
            slots,
            entries: Vec::new(),
        })
    }

    /// The stock of a product at a location as the batch has it now (`None`: no record). A
    /// product the batch did not read means it read something that has changed: re-run.
    pub fn stock(&self, product: &ProductId, location: &str) -> Result<Option<Stock>, StoreError> {
        if !self.locked.contains(product) && !self.checked.contains(product) {
            return Err(StoreError::RaceLost(format!(
                "product {product} was not locked by its batch"
            )));
        }
        Ok(self
            .slots
            .get(&(product.clone(), location.to_owned()))
            .and_then(|s| s.current))
    }

    /// Whether the batch holds the lock of every record of the product.
    pub fn is_locked(&self, product: &ProductId) -> bool {
        self.locked.contains(product)
    }

    /// Whether the product has any stock record now (is stock-managed).
    pub fn managed(&self, product: &ProductId) -> bool {
        !self.records(product).is_empty()
    }

    /// Whether any record at this location exists now (including ones this batch created).
    pub fn holds_stock_at(&self, location: &str) -> bool {
        self.slots
            .iter()
            .any(|((_, l), slot)| l == location && slot.current.is_some())
    }

    /// The records of a product that exist now: (location, stock).
    pub fn records(&self, product: &ProductId) -> Vec<(String, Stock)> {
        self.slots
            .range((product.clone(), String::new())..)
            .take_while(|((p, _), _)| p == product)
            .filter_map(|((_, l), slot)| slot.current.map(|s| (l.clone(), s)))
            .collect()
    }

    /// The stock check of the order flow (add to cart, item updates, checkout): every
    /// stock-managed line has its quantity available at its location. `Some` says why not.
    pub fn short(&self, wanted: &Wanted) -> Result<Option<Rejection>, StoreError> {
        for ((product, location), quantity) in wanted {
            match self.stock(product, location)? {
                Some(stock) if stock.available() < *quantity => {
                    return Ok(Some(Rejection::OutOfStock))
                }
                Some(_) => {}
                // Not stock-managed: any quantity may be bought.
                None if !self.managed(product) => {}
                None if location == NO_LOCATION => return Ok(Some(Rejection::LocationRequired)),
                None => return Ok(Some(Rejection::OutOfStock)),
            }
        }
        Ok(None)
    }

    /// The history entries the batch has made so far.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// Why a line's record is missing: the product is not stock-managed (`None`, when
    /// `skip_unmanaged`), needs a location, or is not held where asked.
    fn missing(
        &self,
        product: &ProductId,
        location: &str,
        skip_unmanaged: bool,
    ) -> Option<Rejection> {
        if !self.managed(product) {
            return (!skip_unmanaged).then_some(Rejection::NotFound);
        }
        Some(if location == NO_LOCATION {
            Rejection::LocationRequired
        } else if skip_unmanaged {
            Rejection::Stock(Refusal::InsufficientAvailable)
        } else {
            Rejection::NotFound
        })
    }

    /// Applies several stock actions as one: all of them, or (refused) none. Lines of products
    /// with no stock at all are skipped when `skip_unmanaged` (the order flow: such products are
    /// not stock-managed), refused as not found otherwise. Returns the entries written.
    pub fn apply_lines(
        &mut self,
        lines: &[LineAction],
        order_id: Option<&str>,
        reason: Option<&str>,
        skip_unmanaged: bool,
    ) -> Result<Result<Vec<HistoryEntry>, Rejection>, StoreError> {
        let origin = match order_id {
            Some(_) => Origin::Order,
            None => Origin::Manual,
        };
        let mut next: BTreeMap<Key, Stock> = BTreeMap::new();
        let mut written = Vec::with_capacity(lines.len());
        for (product, location, adjustment) in lines {
            self.must_be_locked(product)?;
            let key = (product.clone(), location.clone());
            let current = match next.get(&key).copied() {
                Some(s) => s,
                None => match self.stock(product, location)? {
                    Some(s) => s,
                    None => match self.missing(product, location, skip_unmanaged) {
                        None => continue,
                        Some(rejection) => return Ok(Err(rejection)),
                    },
                },
            };
            let after = match current.adjust(origin, *adjustment) {
                Ok(after) => after,
                Err(refusal) => return Ok(Err(Rejection::Stock(refusal))),
            };
            next.insert(key, after);
            let (action, quantity) = (adjustment.action(), adjustment.quantity());
            let entry = self.entry((product, location), action, quantity, after);
            written.push(HistoryEntry {
                order_id: order_id.map(str::to_owned),
                reason: reason.map(str::to_owned),
                ..entry
            });
        }
        for (key, after) in next {
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.current = Some(after);
            }
        }
        self.entries.extend(written.iter().cloned());
        Ok(Ok(written))
    }

    fn entry(
        &self,
        (product, location): (&ProductId, &str),
        action: Action,
        quantity: u64,
        after: Stock,
    ) -> HistoryEntry {
        HistoryEntry {
            id: crate::model::new_id(),
            product_id: product.clone(),
            location: location.to_owned(),
            action,
            quantity,
            after,
            order_id: None,
            reason: None,
            created_at: self.now,
        }
    }

    /// A change to a product the batch has not locked would be a bug (or a lost race: re-run).
    fn must_be_locked(&self, product: &ProductId) -> Result<(), StoreError> {
        match self.locked.contains(product) {
            true => Ok(()),
            false => Err(StoreError::RaceLost(format!(
                "product {product} is changed but was not locked by its batch"
            ))),
        }
    }

    /// Creates, sets or deletes a record outside `apply_lines`.
    pub fn replace(
        &mut self,
        product: &ProductId,
        location: &str,
        action: Action,
        quantity: u64,
        after: Option<Stock>,
    ) -> HistoryEntry {
        let entry = self.entry(
            (product, location),
            action,
            quantity,
            after.unwrap_or_default(),
        );
        self.slots
            .entry((product.clone(), location.to_owned()))
            .or_insert(Slot {
                read: None,
                current: None,
            })
            .current = after;
        self.entries.push(entry.clone());
        entry
    }

    /// The statements that write what the batch did: new, removed and changed records, and
    /// the history entries.
    pub fn write_back(&self, dialect: &Dialect) -> Result<Vec<Stmt>, StoreError> {
        let (mut created, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
        for ((product, location), slot) in &self.slots {
            let row = |s: Stock| StockRow {
                product_id: product.as_str().to_owned(),
                location: location.clone(),
                total: figure(s.total()),
                allocated: figure(s.allocated()),
                held: figure(s.held()),
            };
            match (slot.read, slot.current) {
                (None, Some(s)) => created.push(row(s)),
                (Some(s), None) => removed.push(row(s)),
                (Some(read), Some(s)) if read != s => changed.push(row(s)),
                _ => {}
            }
        }
        let history: Vec<HistoryRow> = self.entries.iter().map(history_row).collect();
        let now = Some(self.now.micros());
        let bulk_sql = &dialect.bulk;
        Ok([
            bulk(bulk_sql.insert_stocks, &created, now)?,
            bulk(bulk_sql.delete_stocks, &removed, None)?,
            bulk(bulk_sql.update_stocks, &changed, now)?,
            bulk(bulk_sql.insert_history, &history, now)?,
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}

fn history_row(e: &HistoryEntry) -> HistoryRow {
    HistoryRow {
        id: e.id.clone(),
        product_id: e.product_id.as_str().to_owned(),
        location: e.location.clone(),
        action: e.action.as_str(),
        quantity: figure(e.quantity),
        total: figure(e.after.total()),
        allocated: figure(e.after.allocated()),
        order_id: e.order_id.clone(),
        reason: e.reason.clone(),
    }
}

/// Applies a stock command (create, transact, delete, set per location) to the batch's
/// records.
pub(crate) fn apply_stock_command(
    stocks: &mut Stocks,
    slugs: &Slugs,
    command: &Command,
) -> Result<Outcome, StoreError> {
    for product in command.products() {
        stocks.must_be_locked(product)?;
    }
    match command {
        Command::Create { product, records } => create(stocks, slugs, product, records),
        Command::Transact {
            product,
            location,
            adjustment,
            order_id,
            reason,
        } => {
            let line = (product.clone(), location.clone(), *adjustment);
            Ok(
                match stocks.apply_lines(&[line], order_id.as_deref(), reason.as_deref(), false)? {
                    Ok(entries) => first_entry(entries),
                    Err(rejection) => Outcome::Refused(rejection),
                },
            )
        }
        Command::Delete { product } => delete(stocks, product),
        Command::SetLocations { product, changes } => {
            set_locations(stocks, slugs, product, changes)
        }
        _ => Err(StoreError::Internal("not a stock command".into())),
    }
}

fn first_entry(entries: Vec<HistoryEntry>) -> Outcome {
    entries
        .into_iter()
        .next()
        .map(|e| Outcome::Applied(Effect::Entry(e)))
        .unwrap_or(Outcome::Refused(Rejection::NotFound))
}

fn create(
    stocks: &mut Stocks,
    slugs: &Slugs,
    product: &ProductId,
    records: &[(String, StockLevel)],
) -> Result<Outcome, StoreError> {
    if stocks.stock(product, NO_LOCATION)?.is_some() || stocks.managed(product) {
        return Ok(Outcome::Refused(Rejection::AlreadyExists));
    }
    if records.iter().any(|(location, _)| !slugs.exists(location)) {
        return Ok(Outcome::Refused(Rejection::NotFound));
    }
    let entries = records
        .iter()
        .map(|(location, quantity)| {
            stocks.replace(
                product,
                location,
                Action::Create,
                quantity.get(),
                Some(Stock::created(*quantity)),
            )
        })
        .collect();
    Ok(first_entry(entries))
}

fn delete(stocks: &mut Stocks, product: &ProductId) -> Result<Outcome, StoreError> {
    let records = stocks.records(product);
    if records.is_empty() {
        return Ok(Outcome::Refused(Rejection::NotFound));
    }
    if records.iter().any(|(_, s)| s.allocated() > 0) {
        return Ok(Outcome::Refused(Rejection::HasAllocations));
    }
    let entries = records
        .into_iter()
        .map(|(location, stock)| {
            stocks.replace(product, &location, Action::Delete, stock.total(), None)
        })
        .collect();
    Ok(first_entry(entries))
}

/// A step of [`set_locations`]: what to write at one location.
struct Step {
    location: String,
    action: Action,
    quantity: u64,
    after: Option<Stock>,
}

/// Elastic Path's per-location update of a product's stock: all changes, or none.
fn set_locations(
    stocks: &mut Stocks,
    slugs: &Slugs,
    product: &ProductId,
    changes: &[(String, Option<StockLevel>)],
) -> Result<Outcome, StoreError> {
    if !stocks.managed(product) || changes.iter().any(|(l, _)| !slugs.exists(l)) {
        return Ok(Outcome::Refused(Rejection::NotFound));
    }
    let mut steps = Vec::with_capacity(changes.len());
    for (location, change) in changes {
        match step(stocks.stock(product, location)?, location, *change) {
            Ok(Some(step)) => steps.push(step),
            Ok(None) => {}
            Err(rejection) => return Ok(Outcome::Refused(rejection)),
        }
    }
    for s in steps {
        stocks.replace(product, &s.location, s.action, s.quantity, s.after);
    }
    Ok(Outcome::Applied(Effect::Stock(product.clone())))
}

/// What setting `available` (or, with `None`, removing the record) at one location writes.
fn step(
    current: Option<Stock>,
    location: &str,
    change: Option<StockLevel>,
) -> Result<Option<Step>, Rejection> {
    let step = |action, quantity, after| {
        Ok(Some(Step {
            location: location.to_owned(),
            action,
            quantity,
            after,
        }))
    };
    match (current, change) {
        (Some(stock), Some(available)) => {
            let total = stock.allocated() + available.get();
            // Available 0 is a total of what is allocated (SPEC §1), itself possibly 0.
            let level = StockLevel::new(i64::try_from(total).unwrap_or(-1))
                .map_err(|_| Rejection::Stock(Refusal::TotalTooLarge))?;
            let after = stock
                .adjust(Origin::Manual, Adjustment::set(level))
                .map_err(Rejection::Stock)?;
            step(Action::Set, total, Some(after))
        }
        (None, Some(available)) => step(
            Action::Create,
            available.get(),
            Some(Stock::created(available)),
        ),
        (Some(stock), None) if stock.allocated() > 0 => Err(Rejection::HasAllocations),
        (Some(stock), None) => step(Action::Delete, stock.total(), None),
        (None, None) => Ok(None),
    }
}

// ---- reads ---------------------------------------------------------------------------------

pub(crate) async fn stock(
    db: &Reader,
    product: &ProductId,
) -> Result<Option<ProductStock>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                stock_columns!(),
                " FROM stock WHERE product_id = $1 ORDER BY location"
            ),
            args![product.as_str()],
        )
        .await?;
    let records = rows
        .iter()
        .map(rows::stock_record)
        .collect::<Result<_, _>>()?;
    Ok(ProductStock::group(records).pop())
}

pub(crate) async fn stocks(
    db: &Reader,
    dialect: &Dialect,
    page: Page,
    location: Option<&str>,
) -> Result<Paged<ProductStock>, StoreError> {
    let rows = db
        .rows(
            "SELECT product_id FROM stock WHERE (CAST($1 AS TEXT) IS NULL OR location = $1) \
             GROUP BY product_id ORDER BY product_id LIMIT $2 OFFSET $3",
            args![location, figure(page.limit), figure(page.offset)],
        )
        .await?;
    let total = rows::count(
        db.row(
            "SELECT COUNT(DISTINCT product_id) AS n FROM stock \
             WHERE (CAST($1 AS TEXT) IS NULL OR location = $1)",
            args![location],
        )
        .await?,
    )?;
    let ids = rows
        .iter()
        .map(|r| rows::product_id(&r.col::<String>("product_id")?))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged {
        items: stocks_by_ids(db, dialect, &ids).await?,
        total,
    })
}

pub(crate) async fn stocks_by_ids(
    db: &Reader,
    dialect: &Dialect,
    ids: &[ProductId],
) -> Result<Vec<ProductStock>, StoreError> {
    let rows = db
        .rows(
            dialect.stocks_by_ids,
            args![ids_json(ids.iter().map(ProductId::as_str))],
        )
        .await?;
    let records = rows
        .iter()
        .map(rows::stock_record)
        .collect::<Result<_, _>>()?;
    let found = ProductStock::group(records);
    Ok(ids
        .iter()
        .filter_map(|id| found.iter().find(|r| &r.product_id == id).cloned())
        .collect())
}

/// The ids as a JSON array of strings (a statement's list parameter).
pub(crate) fn ids_json<T: AsRef<str>>(ids: impl IntoIterator<Item = T>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|i| i.as_ref().to_owned()).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) async fn history(
    db: &Reader,
    product: &ProductId,
    query: &HistoryQuery,
    page: Page,
) -> Result<Paged<HistoryEntry>, StoreError> {
    macro_rules! filter {
        () => {
            "WHERE product_id = $1 \
             AND (CAST($2 AS TEXT) IS NULL OR action = $2) \
             AND (CAST($3 AS BIGINT) IS NULL OR created_at >= $3) \
             AND (CAST($4 AS BIGINT) IS NULL OR created_at < $4) \
             AND (CAST($5 AS TEXT) IS NULL OR location = $5)"
        };
    }
    let filter_args = || {
        args![
            product.as_str(),
            query.action.map(|a| a.as_str()),
            query.created_from.map(Timestamp::micros),
            query.created_before.map(Timestamp::micros),
            &query.location
        ]
    };
    let mut page_args = filter_args();
    page_args.extend(args![figure(page.limit), figure(page.offset)]);
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                history_columns!(),
                " FROM history ",
                filter!(),
                " ORDER BY seq DESC LIMIT $6 OFFSET $7"
            ),
            page_args,
        )
        .await?;
    let total = rows::count(
        db.row(
            concat!("SELECT COUNT(*) AS n FROM history ", filter!()),
            filter_args(),
        )
        .await?,
    )?;
    Ok(Paged {
        items: rows
            .iter()
            .map(rows::history_entry)
            .collect::<Result<_, _>>()?,
        total,
    })
}

pub(crate) async fn history_entry(
    db: &Reader,
    product: &ProductId,
    id: &str,
) -> Result<Option<HistoryEntry>, StoreError> {
    let row = db
        .row(
            concat!(
                "SELECT ",
                history_columns!(),
                " FROM history WHERE id = $1 AND product_id = $2"
            ),
            args![id, product.as_str()],
        )
        .await?;
    row.as_ref().map(rows::history_entry).transpose()
}
