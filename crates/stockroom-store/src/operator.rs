//! Reads for operators: the dashboard's stock overview, chart series and order history, and the
//! bulk reads behind `stockroom export`. A trait of its own ([`OperatorStore`], a supertrait of
//! [`crate::Store`]) so that these queries stay in one small file; `operator_sql.rs` implements
//! it: plain SQL, one body for both databases, run on the read pool (never the writer).

use async_trait::async_trait;
use stockroom_domain::ProductId;

use crate::error::StoreError;
use crate::model::*;

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
