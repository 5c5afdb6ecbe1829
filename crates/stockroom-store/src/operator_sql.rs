//! The [`OperatorStore`] on SQL: one body for both databases, run on the read pool (never the
//! writer).

use async_trait::async_trait;
use stockroom_domain::ProductId;

use crate::error::StoreError;
use crate::exec::{args, Arg, Row};
use crate::model::*;
use crate::operator::*;
use crate::rows::{history_columns, history_entry, stock_record};
use crate::store::SqlStore;

impl SqlStore {
    async fn rows(&self, sql: &str, args: Vec<Arg>) -> Result<Vec<Row>, StoreError> {
        self.read.rows(sql, args).await
    }
}

fn count(row: &Row, col: &str) -> Result<u64, StoreError> {
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
/// of the SQL): which stock rows count, which grouped products are kept, and the arguments.
struct Overview {
    filter: String,
    having: String,
    /// Whether products are filtered beyond the location: then they come from a set of
    /// candidates, and are counted in the same pass.
    filtered: bool,
    args: Vec<Arg>,
}

impl Overview {
    /// `like` is the dialect's case-insensitive LIKE (SQLite's LIKE, PostgreSQL's ILIKE).
    fn new(query: &StockQuery, like: &str) -> Overview {
        let mut o = Overview {
            filter: String::from("WHERE 1 = 1"),
            having: String::new(),
            filtered: false,
            args: Vec::new(),
        };
        let at = query.location.as_ref().map(|location| {
            let n = o.arg(location.as_str().into());
            o.filter += &format!(" AND s.location = {n}");
            format!(" AND location = {n}")
        });
        let at = at.unwrap_or_default();
        if let Some(text) = pattern(&query.search) {
            let n = o.arg(text.into());
            // Candidates: ids that match (a scan of the primary key only), and products whose
            // SKU or name does; then only their records are read.
            o.filter += &format!(
                " AND s.product_id IN (SELECT product_id FROM stock WHERE product_id {like} {n} \
                 UNION SELECT id FROM products WHERE sku {like} {n} OR name {like} {n})"
            );
            o.filtered = true;
        }
        let (threshold, keep) = match query.level {
            LevelFilter::All => return o,
            LevelFilter::Low(t) => (t, "BETWEEN 1 AND"),
            LevelFilter::Out => (0, "<="),
        };
        let n = o.arg(limit_arg(threshold).into());
        // Candidates: a product this low has every record (at the location asked) this low.
        o.filter += &format!(
            " AND s.product_id IN (SELECT product_id FROM stock WHERE total - allocated <= {n}{at})"
        );
        o.having = format!(" HAVING SUM(s.total) - SUM(s.allocated) {keep} {n}");
        o.filtered = true;
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
        let like = match self.kind() {
            crate::dialect::Kind::Sqlite => "LIKE",
            crate::dialect::Kind::Postgres => "ILIKE",
        };
        let mut o = Overview::new(query, like);
        let count_args = o.args.clone();
        let after = match &query.after {
            Some(id) => format!(" AND s.product_id > {}", o.arg(id.as_str().into())),
            None => String::new(),
        };
        let n = o.arg(limit_arg(limit).into());
        // Grouped in the primary key's order, so a page stops after `limit` products; a
        // filtered page counts its matches in the same pass (before the page's key applies).
        // The catalog is joined to the page's rows only.
        let (matches, page_after) = if o.filtered {
            (
                "COUNT(*) OVER ()",
                after.replace("s.product_id", "g.product_id"),
            )
        } else {
            ("0", String::new())
        };
        let inner_after = if o.filtered { "" } else { after.as_str() };
        let inner_limit = if o.filtered {
            String::new()
        } else {
            format!(" ORDER BY s.product_id LIMIT {n}")
        };
        let rows = self
            .rows(
                &format!(
                    "SELECT g.product_id, COALESCE(p.sku, '') AS sku, COALESCE(p.name, '') AS name, \
                     g.total, g.allocated, g.records, g.matches FROM (SELECT s.product_id, \
                     CAST(SUM(s.total) AS BIGINT) AS total, \
                     CAST(SUM(s.allocated) AS BIGINT) AS allocated, COUNT(*) AS records, \
                     {matches} AS matches FROM stock s {}{inner_after} GROUP BY s.product_id{}{inner_limit}) \
                     AS g LEFT JOIN products p ON p.id = g.product_id WHERE 1 = 1{page_after} \
                     ORDER BY g.product_id LIMIT {n}",
                    o.filter, o.having
                ),
                o.args,
            )
            .await?;
        let total = match rows.first() {
            Some(first) if o.filtered => count(first, "matches")?,
            // Nothing matches at all (with no key, the page holds the first match if any).
            None if o.filtered && query.after.is_none() => 0,
            _ => {
                let all = Overview::new(query, like);
                let counted = self
                    .rows(
                        &format!(
                            "SELECT COUNT(*) AS n FROM (SELECT s.product_id FROM stock s {} \
                             GROUP BY s.product_id{}) AS c",
                            all.filter, all.having
                        ),
                        count_args,
                    )
                    .await?;
                counted
                    .first()
                    .map(|r| count(r, "n"))
                    .transpose()?
                    .unwrap_or(0)
            }
        };
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
        Ok(Paged { items, total })
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
                    &location.map(str::to_owned),
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
        // Two statements rather than one with `$1 IS NULL OR …`, which no index serves.
        let rows = match after {
            None => {
                self.rows(
                    "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                     FROM stock ORDER BY product_id, location LIMIT $1",
                    args![limit_arg(limit)],
                )
                .await?
            }
            Some((product, location)) => {
                self.rows(
                    "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                     FROM stock WHERE (product_id, location) > ($1, $2) \
                     ORDER BY product_id, location LIMIT $3",
                    args![product.as_str(), location, limit_arg(limit)],
                )
                .await?
            }
        };
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
