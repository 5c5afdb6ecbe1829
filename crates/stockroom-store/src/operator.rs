//! Reads for operators: the dashboard's stock overview, chart series and order history, and the
//! bulk reads behind `stockroom export`. A trait of its own ([`OperatorStore`], a supertrait of
//! [`crate::Store`]) so that these queries stay in one small file: plain SQL, one body for both
//! databases, run on the read pool (never the writer).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use stockroom_domain::ProductId;

use crate::error::StoreError;
use crate::exec::{any_query, args, Arg, Get};
use crate::model::*;
use crate::sql::{history_columns, history_entry, stock_record, SqlStore};

/// Which products the stock overview shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StockQuery {
    /// Part of a product id, SKU or name (case-insensitive); empty for all.
    pub search: String,
    /// Only the records at this location (slug); the figures are then that location's.
    pub location: Option<String>,
    pub level: LevelFilter,
    /// Products after this id (keyset paging: the next page starts after the last shown).
    pub after: Option<ProductId>,
}

/// A filter on what is available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LevelFilter {
    #[default]
    All,
    /// Some, but at most this many, available.
    Low(u64),
    /// Nothing available.
    Out,
}

/// One line of the stock overview: a product's figures summed over its records (or at the
/// location asked), with what the catalog says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockRow {
    pub product_id: ProductId,
    /// Empty when the product has no catalog record.
    pub sku: String,
    pub name: String,
    pub total: u64,
    pub allocated: u64,
    /// How many records (locations) the figures sum.
    pub records: u64,
}

impl StockRow {
    pub fn available(&self) -> u64 {
        self.total - self.allocated
    }
}

/// A location with what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationSummary {
    /// The slug ([`NO_LOCATION`] for stock held at no location).
    pub slug: String,
    pub products: u64,
    pub total: u64,
    pub allocated: u64,
}

/// A history entry with its place in the history (for resuming a bulk read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequenced {
    pub seq: i64,
    pub entry: HistoryEntry,
}

#[async_trait]
pub trait OperatorStore {
    /// Products with stock, by id, filtered; `total` counts every match.
    async fn stock_overview(
        &self,
        query: &StockQuery,
        limit: u64,
    ) -> Result<Paged<StockRow>, StoreError>;
    /// A product's latest `limit` entries (at one location, or all), oldest first, preceded by
    /// the entry before them at each location (so every location's figures are known from the
    /// first point on).
    async fn history_series(
        &self,
        product: &ProductId,
        location: Option<&str>,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
    /// The entries an order wrote (allocate, ship, deallocate), oldest first.
    async fn order_history(&self, order_id: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// What each location holds (only locations holding stock).
    async fn location_summaries(&self) -> Result<Vec<LocationSummary>, StoreError>;
    /// Stock records after a (product, location) key, in key order: one page of a bulk read.
    async fn stock_records_after(
        &self,
        after: Option<&(ProductId, String)>,
        limit: u64,
    ) -> Result<Vec<StockRecord>, StoreError>;
    /// History entries after a sequence number, in the order they were applied.
    async fn history_after(&self, seq: i64, limit: u64) -> Result<Vec<Sequenced>, StoreError>;
}

impl SqlStore {
    async fn rows(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<AnyRow>, StoreError> {
        Ok(any_query(sql, args).fetch_all(&self.read.pool).await?)
    }
}

fn count(row: &impl Get, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.col(col)?;
    u64::try_from(v).map_err(|_| StoreError::Internal(format!("negative {col}")))
}

fn limit_arg(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `%text%` for LIKE, lower-cased, with LIKE's wildcards taken literally by dropping them.
fn pattern(search: &str) -> Option<String> {
    let cleaned: String = search
        .trim()
        .chars()
        .filter(|c| !matches!(c, '%' | '_' | '\\'))
        .flat_map(char::to_lowercase)
        .collect();
    (!cleaned.is_empty()).then(|| format!("%{cleaned}%"))
}

/// The overview's statements, built from fixed fragments (no text of the request is ever part
/// of the SQL): which stock rows match, which grouped products are kept, and the arguments.
#[derive(Clone)]
struct Overview {
    filter: String,
    having: String,
    args: Vec<Arg>,
}

impl Overview {
    fn new(query: &StockQuery) -> Overview {
        let mut o = Overview {
            filter: String::from("WHERE 1 = 1"),
            having: String::new(),
            args: Vec::new(),
        };
        if let Some(location) = &query.location {
            let n = o.arg(location.as_str().into());
            o.filter += &format!(" AND s.location = {n}");
        }
        if let Some(like) = pattern(&query.search) {
            let n = o.arg(like.into());
            o.filter += &format!(
                " AND (LOWER(s.product_id) LIKE {n} OR s.product_id IN \
                 (SELECT id FROM products WHERE LOWER(sku) LIKE {n} OR LOWER(name) LIKE {n}))"
            );
        }
        let (threshold, keep) = match query.level {
            LevelFilter::All => return o,
            LevelFilter::Low(t) => (t, "BETWEEN 1 AND"),
            LevelFilter::Out => (0, "<="),
        };
        // Candidates from the index of what records have available: a product this low has
        // every record (at the location asked) at most this low.
        let n = o.arg(limit_arg(threshold).into());
        let at = if query.location.is_some() {
            " AND location = $1"
        } else {
            ""
        };
        o.filter += &format!(
            " AND s.product_id IN (SELECT product_id FROM stock WHERE total - allocated <= {n}{at})"
        );
        o.having = format!(" HAVING SUM(s.total) - SUM(s.allocated) {keep} {n}");
        o
    }

    fn arg(&mut self, value: Arg) -> String {
        self.args.push(value);
        format!("${}", self.args.len())
    }
}

#[async_trait]
impl OperatorStore for SqlStore {
    async fn stock_overview(
        &self,
        query: &StockQuery,
        limit: u64,
    ) -> Result<Paged<StockRow>, StoreError> {
        let o = Overview::new(query);
        let total = self
            .rows(
                &format!(
                    "SELECT COUNT(*) AS n FROM (SELECT s.product_id FROM stock s {} \
                     GROUP BY s.product_id{}) AS c",
                    o.filter, o.having
                ),
                o.args.clone(),
            )
            .await?;
        let mut page = o;
        if let Some(id) = &query.after {
            let n = page.arg(id.as_str().into());
            page.filter += &format!(" AND s.product_id > {n}");
        }
        let n = page.arg(limit_arg(limit).into());
        // Grouped in the primary key's order, so an unfiltered page stops after `limit`
        // products; the catalog is joined to the page's rows only.
        let rows = self
            .rows(
                &format!(
                    "SELECT o.product_id, COALESCE(p.sku, '') AS sku, COALESCE(p.name, '') AS name, \
                     o.total, o.allocated, o.records FROM (SELECT s.product_id, \
                     CAST(SUM(s.total) AS BIGINT) AS total, \
                     CAST(SUM(s.allocated) AS BIGINT) AS allocated, COUNT(*) AS records \
                     FROM stock s {} GROUP BY s.product_id{} ORDER BY s.product_id LIMIT {n}) AS o \
                     LEFT JOIN products p ON p.id = o.product_id ORDER BY o.product_id",
                    page.filter, page.having
                ),
                page.args,
            )
            .await?;
        let items = rows
            .iter()
            .map(|r| {
                let id: String = r.col("product_id")?;
                Ok(StockRow {
                    product_id: ProductId::parse(&id)
                        .map_err(|e| StoreError::Internal(format!("bad product id: {e}")))?,
                    sku: r.col("sku")?,
                    name: r.col("name")?,
                    total: count(r, "total")?,
                    allocated: count(r, "allocated")?,
                    records: count(r, "records")?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Paged {
            items,
            total: total
                .first()
                .map(|r| count(r, "n"))
                .transpose()?
                .unwrap_or(0),
        })
    }

    async fn history_series(
        &self,
        product: &ProductId,
        location: Option<&str>,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        // The window's first sequence number, then the window and each location's entry before it.
        let rows = self
            .rows(
                concat!(
                    "WITH w AS (SELECT seq FROM history WHERE product_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR location = $2) ORDER BY seq DESC LIMIT $3), \
                     f AS (SELECT COALESCE(MIN(seq), 0) AS first FROM w) \
                     SELECT ",
                    history_columns!(),
                    " FROM history WHERE product_id = $1 \
                     AND (CAST($2 AS TEXT) IS NULL OR location = $2) \
                     AND (seq >= (SELECT first FROM f) OR seq IN (SELECT MAX(h.seq) FROM history h \
                     WHERE h.product_id = $1 AND (CAST($2 AS TEXT) IS NULL OR h.location = $2) \
                     AND h.seq < (SELECT first FROM f) GROUP BY h.location)) ORDER BY seq"
                ),
                args![
                    product.as_str(),
                    location.map(str::to_owned),
                    limit_arg(limit)
                ],
            )
            .await?;
        rows.iter().map(history_entry).collect()
    }

    async fn order_history(&self, order_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT ",
                    history_columns!(),
                    " FROM history WHERE order_id = $1 ORDER BY seq"
                ),
                args![order_id],
            )
            .await?;
        rows.iter().map(history_entry).collect()
    }

    async fn location_summaries(&self) -> Result<Vec<LocationSummary>, StoreError> {
        let rows = self
            .rows(
                "SELECT location, COUNT(*) AS products, CAST(SUM(total) AS BIGINT) AS total, \
                 CAST(SUM(allocated) AS BIGINT) AS allocated FROM stock \
                 GROUP BY location ORDER BY location",
                args![],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(LocationSummary {
                    slug: r.col("location")?,
                    products: count(r, "products")?,
                    total: count(r, "total")?,
                    allocated: count(r, "allocated")?,
                })
            })
            .collect()
    }

    async fn stock_records_after(
        &self,
        after: Option<&(ProductId, String)>,
        limit: u64,
    ) -> Result<Vec<StockRecord>, StoreError> {
        let (product, location) = match after {
            Some((p, l)) => (Some(p.as_str().to_owned()), l.clone()),
            None => (None, String::new()),
        };
        let rows = self
            .rows(
                "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                 FROM stock WHERE CAST($1 AS TEXT) IS NULL OR (product_id, location) > ($1, $2) \
                 ORDER BY product_id, location LIMIT $3",
                args![product, location, limit_arg(limit)],
            )
            .await?;
        rows.iter().map(stock_record).collect()
    }

    async fn history_after(&self, seq: i64, limit: u64) -> Result<Vec<Sequenced>, StoreError> {
        let rows = self
            .rows(
                concat!(
                    "SELECT seq, ",
                    history_columns!(),
                    " FROM history WHERE seq > $1 ORDER BY seq LIMIT $2"
                ),
                args![seq, limit_arg(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Sequenced {
                    seq: r.col("seq")?,
                    entry: history_entry(r)?,
                })
            })
            .collect()
    }
}
