//! The few statements whose SQL differs between SQLite and PostgreSQL. Everything else is
//! written once, with `$N` parameters (which both dialects accept) and `CAST` (not `::`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

pub(crate) struct Dialect {
    pub kind: Kind,
    /// Starts a write transaction. SQLite takes the write lock up front (`IMMEDIATE`), so a
    /// transaction never fails half-way when it tries to upgrade a read lock.
    pub begin_write: &'static str,
    /// Reads (and, on PostgreSQL, locks) the stock rows whose ids are in the JSON array `$1`,
    /// in product-id order: every writer of every instance locks rows in the same order, so
    /// two batches can never deadlock.
    pub lock_stocks: &'static str,
    /// Reads the stock rows whose ids are in the JSON array `$1`.
    pub stocks_by_ids: &'static str,
    /// Locks (on PostgreSQL) the orders whose ids are in the JSON array `$1`, in id order.
    pub lock_orders: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    kind: Kind::Sqlite,
    begin_write: "BEGIN IMMEDIATE",
    lock_stocks: "SELECT product_id, total, allocated, created_at, updated_at FROM stock \
                  WHERE product_id IN (SELECT value FROM json_each($1)) ORDER BY product_id",
    stocks_by_ids: "SELECT product_id, total, allocated, created_at, updated_at FROM stock \
                    WHERE product_id IN (SELECT value FROM json_each($1))",
    lock_orders: "SELECT id FROM orders WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
};

pub(crate) const POSTGRES: Dialect = Dialect {
    kind: Kind::Postgres,
    begin_write: "BEGIN",
    lock_stocks: "SELECT product_id, total, allocated, created_at, updated_at FROM stock \
                  WHERE product_id IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb))) \
                  ORDER BY product_id FOR UPDATE",
    stocks_by_ids: "SELECT product_id, total, allocated, created_at, updated_at FROM stock \
                    WHERE product_id IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))",
    lock_orders: "SELECT id FROM orders \
                  WHERE id IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb))) \
                  ORDER BY id FOR UPDATE",
};
