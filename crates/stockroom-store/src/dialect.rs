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
    /// Inserts the history entries in the JSON array `$1`, in array order (so sequence numbers
    /// follow the order the batch applied them in): one statement per batch.
    pub insert_history: &'static str,
    /// Sets the figures of the stock rows in the JSON array `$1` (`p`, `t`, `a`) and their
    /// `updated_at` to `$2`: one statement per batch.
    pub update_stocks: &'static str,
}

pub(crate) const SQLITE: Dialect = Dialect {
    kind: Kind::Sqlite,
    begin_write: "BEGIN IMMEDIATE",
    lock_stocks: "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                  FROM stock WHERE product_id IN (SELECT value FROM json_each($1)) \
                  ORDER BY product_id, location",
    stocks_by_ids: "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                    FROM stock WHERE product_id IN (SELECT value FROM json_each($1)) \
                    ORDER BY product_id, location",
    lock_orders: "SELECT id FROM orders WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
    insert_history: "INSERT INTO history (id, product_id, location, action, quantity, total, \
                     allocated, order_id, reason, created_at) \
                     SELECT json_extract(value, '$.id'), json_extract(value, '$.p'), \
                     json_extract(value, '$.l'), \
                     json_extract(value, '$.action'), json_extract(value, '$.q'), \
                     json_extract(value, '$.t'), json_extract(value, '$.a'), \
                     json_extract(value, '$.order'), json_extract(value, '$.reason'), \
                     json_extract(value, '$.at') FROM json_each($1) ORDER BY key",
    update_stocks: "UPDATE stock SET total = j.t, allocated = j.a, held = j.h, updated_at = $2 \
                    FROM (SELECT json_extract(value, '$.p') AS p, json_extract(value, '$.t') AS t, \
                    json_extract(value, '$.a') AS a, json_extract(value, '$.h') AS h, \
                    json_extract(value, '$.l') AS l \
                    FROM json_each($1)) AS j \
                    WHERE stock.product_id = j.p AND stock.location = j.l",
};

/// `= ANY (ARRAY(…))` rather than `IN (SELECT …)`: PostgreSQL plans it as an index lookup even
/// before the table has statistics; the `IN` form could scan the whole table on every batch.
pub(crate) const POSTGRES: Dialect = Dialect {
    kind: Kind::Postgres,
    begin_write: "BEGIN",
    lock_stocks: "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                  FROM stock \
                  WHERE product_id = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))) \
                  ORDER BY product_id, location FOR UPDATE",
    stocks_by_ids: "SELECT product_id, location, total, allocated, held, created_at, updated_at \
                    FROM stock \
                    WHERE product_id = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))) \
                    ORDER BY product_id, location",
    lock_orders: "SELECT id FROM orders \
                  WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))) \
                  ORDER BY id FOR UPDATE",
    insert_history: "INSERT INTO history (id, product_id, location, action, quantity, total, \
                     allocated, order_id, reason, created_at) \
                     SELECT e.v->>'id', e.v->>'p', e.v->>'l', e.v->>'action', \
                     CAST(e.v->>'q' AS BIGINT), \
                     CAST(e.v->>'t' AS BIGINT), CAST(e.v->>'a' AS BIGINT), e.v->>'order', \
                     e.v->>'reason', CAST(e.v->>'at' AS BIGINT) \
                     FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS e(v, n) \
                     ORDER BY e.n",
    update_stocks: "UPDATE stock SET total = CAST(j.v->>'t' AS BIGINT), \
                    allocated = CAST(j.v->>'a' AS BIGINT), held = CAST(j.v->>'h' AS BIGINT), \
                    updated_at = $2 \
                    FROM jsonb_array_elements(CAST($1 AS jsonb)) AS j(v) \
                    WHERE stock.product_id = j.v->>'p' AND stock.location = j.v->>'l'",
};
