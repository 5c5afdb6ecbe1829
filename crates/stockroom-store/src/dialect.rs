//! The statements of the writer's batch, whose SQL differs between SQLite and PostgreSQL only
//! in how a JSON array parameter becomes rows. Everything else in the store is written once,
//! with `$N` parameters (which both dialects accept) and `CAST` (not `::`).
//!
//! A batch passes many rows in one parameter, a JSON array, and reads each field as
//! `j.value ->> 'name'`: SQLite's `json_each` and PostgreSQL's `jsonb_array_elements` both
//! name the element `value`. The rows are typed `Serialize` structs (`batch_rows.rs`), so a
//! field's name is written twice only: in its struct and here.

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
    /// The stored answers of the idempotency keys in the JSON array `$1` (`scope`, `key`).
    pub read_keys: &'static str,
    /// Locks the carts whose ids are in the JSON array `$1` (PostgreSQL: transaction-scoped
    /// advisory locks, which also cover carts that do not exist yet, taken in the order of
    /// their keys). `None` on SQLite, whose one writer holds the whole database.
    pub lock_carts: Option<&'static str>,
    /// Reads (and, on PostgreSQL, locks) every stock record of the products in the JSON array
    /// `$1` and of the items of the orders in `$2`, in product-id then location order: every
    /// writer of every instance locks rows in this one order, so two batches can never
    /// deadlock on them.
    pub lock_stocks: &'static str,
    /// Reads, without a lock, every stock record of the products in the JSON array `$1` and of
    /// the items of the carts in `$2`: the stock the order flow checks but does not change.
    pub read_stocks: &'static str,
    /// Reads the orders whose ids are in the JSON array `$1`, locking them (on PostgreSQL) in
    /// id order.
    pub lock_orders: &'static str,
    /// The items of the orders in the JSON array `$1`.
    pub order_items_of: &'static str,
    /// The carts in the JSON array `$1` with their items (a cart without items: one row whose
    /// `item_id` is NULL).
    pub cart_items_of: &'static str,
    /// The catalog records of the products in the JSON array `$1` and of the items of the
    /// carts in `$2`.
    pub catalog_of: &'static str,
    /// The locations whose slugs are in the JSON array `$1`.
    pub slugs_of: &'static str,
    /// Reads the stock rows whose ids are in the JSON array `$1` (no lock: the read pool's).
    pub stocks_by_ids: &'static str,
    /// Statements that write many rows from the JSON array of objects `$1` (`$2`: the batch's
    /// time, where a statement needs it).
    pub bulk: Bulk,
    /// Deletes the carts last changed before `$1` (their items with them), outside the writer.
    /// On PostgreSQL it skips a cart whose lock a batch holds (that batch is changing it, so it
    /// is not idle) and holds the lock of each cart it deletes until it commits, so a batch
    /// never sees half a purged cart; SQLite's one write lock does the same.
    pub purge_carts: &'static str,
}

pub(crate) struct Bulk {
    /// Cart items removed (`id`).
    pub delete_cart_items: &'static str,
    /// Carts removed (`id`), their items with them.
    pub delete_carts: &'static str,
    /// Carts created or changed (`id`, `name`, `description`, `created_at`).
    pub upsert_carts: &'static str,
    /// Cart items created or given a new quantity (`id`, `cart_id`, `product_id`,
    /// `location`, `quantity`, `created_at`). The batch holds the cart's lock, so it writes
    /// the quantity it computed.
    pub upsert_cart_items: &'static str,
    pub insert_orders: &'static str,
    pub insert_order_items: &'static str,
    /// Payment transactions; `n` numbers an order's new ones within the statement, and each
    /// is placed after the order's existing ones, counted by the statement itself (its own
    /// snapshot, taken under the order's lock).
    pub insert_payments: &'static str,
    /// Order states (`id`, `status`, `payment`, `shipping`, `paying`).
    pub update_orders: &'static str,
    /// New stock records. A record another instance created meanwhile makes this fail on the
    /// primary key (the batch is re-run and sees it).
    pub insert_stocks: &'static str,
    /// Stock records removed (`product_id`, `location`).
    pub delete_stocks: &'static str,
    /// Stock figures (`product_id`, `location`, `total`, `allocated`, `held`).
    pub update_stocks: &'static str,
    /// History entries, in array order (so sequence numbers follow the order the batch
    /// applied them in).
    pub insert_history: &'static str,
    /// Idempotency records. A key another instance stored meanwhile makes this fail on the
    /// primary key (the batch is re-run and replays that answer).
    pub insert_keys: &'static str,
}

macro_rules! stock_columns {
    () => {
        "product_id, location, total, allocated, held, created_at, updated_at"
    };
}
pub(crate) use stock_columns;

macro_rules! product_columns {
    () => {
        "id, sku, name, price_amount, currency, includes_tax, created_at, updated_at"
    };
}
pub(crate) use product_columns;

/// `$texts($n)`: the strings of JSON array `$n` as a subquery; `$rows`: the objects of JSON
/// array `$1` as rows `j` with a column `value`; `$lock`: the row-lock clause.
macro_rules! dialect {
    (kind: $kind:expr, begin: $begin:literal, lock: $lock:literal, lock_carts: $carts:expr,
     open: $open:literal, close: $close:literal,
     texts1: $t1:literal, texts2: $t2:literal, rows: $rows:literal,
     ordered_rows: $ordered:literal, order_by_row: $order_by:literal) => {
        Dialect {
            kind: $kind,
            begin_write: $begin,
            read_keys: concat!(
                "SELECT i.scope, i.key, i.fingerprint, i.outcome FROM ",
                $rows,
                " JOIN idempotency i ON i.scope = j.value ->> 'scope' \
                 AND i.key = j.value ->> 'key'"
            ),
            lock_carts: $carts,
            lock_stocks: concat!(
                "SELECT ", stock_columns!(), " FROM stock WHERE product_id ", $open,
                $t1,
                " UNION ALL SELECT product_id FROM order_items WHERE custom = 0 AND order_id ",
                $open, $t2, $close, $close, " ORDER BY product_id, location", $lock
            ),
            read_stocks: concat!(
                "SELECT ", stock_columns!(), " FROM stock WHERE product_id ", $open,
                $t1,
                " UNION ALL SELECT product_id FROM cart_items WHERE cart_id ", $open, $t2, $close,
                $close, " ORDER BY product_id, location"
            ),
            lock_orders: concat!(
                "SELECT id, status, payment, shipping, paying, total_amount, currency \
                 FROM orders WHERE id ", $open, $t1, $close, " ORDER BY id", $lock
            ),
            order_items_of: concat!(
                "SELECT order_id, product_id, location, quantity FROM order_items \
                 WHERE custom = 0 AND order_id ", $open, $t1, $close, " ORDER BY order_id, position"
            ),
            cart_items_of: concat!(
                "SELECT c.id AS cart_id, c.created_at AS cart_created, c.name AS cart_name, \
                 c.description AS cart_description, c.customer_id AS cart_customer, \
                 ci.id AS item_id, \
                 ci.product_id, ci.location, ci.quantity, ci.created_at AS item_created, \
                 ci.custom, ci.custom_name, ci.custom_sku, ci.custom_amount, ci.custom_currency, \
                 ci.custom_includes_tax \
                 FROM carts c LEFT JOIN cart_items ci ON ci.cart_id = c.id WHERE c.id ",
                $open, $t1, $close, " ORDER BY c.id, ci.created_at, ci.id"
            ),
            catalog_of: concat!(
                "SELECT ", product_columns!(), " FROM products WHERE id ", $open, $t1,
                " UNION ALL SELECT product_id FROM cart_items WHERE cart_id ", $open, $t2, $close,
                $close
            ),
            slugs_of: concat!("SELECT slug FROM locations WHERE slug ", $open, $t1, $close),
            stocks_by_ids: concat!(
                "SELECT ", stock_columns!(), " FROM stock WHERE product_id ", $open, $t1, $close,
                " ORDER BY product_id, location"
            ),
            purge_carts: "",
            bulk: Bulk {
                delete_cart_items: concat!(
                    "DELETE FROM cart_items WHERE id ", $open, "SELECT j.value ->> 'id' FROM ",
                    $rows, $close
                ),
                delete_carts: concat!(
                    "DELETE FROM carts WHERE id ", $open, "SELECT j.value ->> 'id' FROM ", $rows,
                    $close
                ),
                upsert_carts: concat!(
                    "INSERT INTO carts (id, name, description, customer_id, created_at, \
                     updated_at) SELECT j.value ->> 'id', j.value ->> 'name', \
                     j.value ->> 'description', j.value ->> 'customer_id', \
                     CAST(j.value ->> 'created_at' AS BIGINT), $2 FROM ",
                    $rows,
                    " WHERE true ON CONFLICT (id) DO UPDATE SET name = excluded.name, \
                     description = excluded.description, customer_id = excluded.customer_id, \
                     updated_at = excluded.updated_at"
                ),
                upsert_cart_items: concat!(
                    "INSERT INTO cart_items (id, cart_id, product_id, location, quantity, \
                     created_at, updated_at, custom, custom_name, custom_sku, custom_amount, \
                     custom_currency, custom_includes_tax) SELECT j.value ->> 'id', \
                     j.value ->> 'cart_id', j.value ->> 'product_id', j.value ->> 'location', \
                     CAST(j.value ->> 'quantity' AS BIGINT), \
                     CAST(j.value ->> 'created_at' AS BIGINT), $2, \
                     CAST(j.value ->> 'custom' AS BIGINT), j.value ->> 'custom_name', \
                     j.value ->> 'custom_sku', CAST(j.value ->> 'custom_amount' AS BIGINT), \
                     j.value ->> 'custom_currency', \
                     CAST(j.value ->> 'custom_includes_tax' AS BIGINT) FROM ",
                    $rows,
                    " WHERE true ON CONFLICT (id) DO UPDATE \
                     SET quantity = excluded.quantity, updated_at = excluded.updated_at"
                ),
                insert_orders: concat!(
                    "INSERT INTO orders (id, cart_id, status, payment, shipping, paying, customer, \
                     billing_address, shipping_address, total_amount, currency, created_at, \
                     updated_at, customer_id) SELECT j.value ->> 'id', j.value ->> 'cart_id', \
                     j.value ->> 'status', j.value ->> 'payment', j.value ->> 'shipping', NULL, \
                     j.value ->> 'customer', j.value ->> 'billing_address', \
                     j.value ->> 'shipping_address', CAST(j.value ->> 'total_amount' AS BIGINT), \
                     j.value ->> 'currency', $2, $2, j.value ->> 'customer_id' FROM ",
                    $rows
                ),
                insert_order_items: concat!(
                    "INSERT INTO order_items (id, order_id, position, product_id, location, name, \
                     sku, quantity, unit_amount, currency, includes_tax, custom) \
                     SELECT j.value ->> 'id', j.value ->> 'order_id', \
                     CAST(j.value ->> 'position' AS BIGINT), j.value ->> 'product_id', \
                     j.value ->> 'location', j.value ->> 'name', j.value ->> 'sku', \
                     CAST(j.value ->> 'quantity' AS BIGINT), \
                     CAST(j.value ->> 'unit_amount' AS BIGINT), j.value ->> 'currency', \
                     CAST(j.value ->> 'includes_tax' AS BIGINT), \
                     CAST(j.value ->> 'custom' AS BIGINT) FROM ",
                    $rows
                ),
                insert_payments: concat!(
                    "INSERT INTO payments (id, order_id, position, gateway, transaction_type, \
                     status, amount, currency, lines, allocation, failure, expires_at, \
                     created_at, updated_at) SELECT j.value ->> 'id', j.value ->> 'order_id', \
                     (SELECT COUNT(*) FROM payments p WHERE p.order_id = j.value ->> 'order_id') \
                     + CAST(j.value ->> 'n' AS BIGINT), j.value ->> 'gateway', \
                     j.value ->> 'transaction_type', j.value ->> 'status', \
                     CAST(j.value ->> 'amount' AS BIGINT), j.value ->> 'currency', \
                     j.value ->> 'lines', j.value ->> 'allocation', NULL, \
                     CAST(j.value ->> 'expires_at' AS BIGINT), $2, $2 FROM ",
                    $rows
                ),
                update_orders: concat!(
                    "UPDATE orders SET status = j.value ->> 'status', \
                     payment = j.value ->> 'payment', shipping = j.value ->> 'shipping', \
                     paying = j.value ->> 'paying', updated_at = $2 FROM ",
                    $rows,
                    " WHERE orders.id = j.value ->> 'id'"
                ),
                insert_stocks: concat!(
                    "INSERT INTO stock (product_id, location, total, allocated, held, created_at, \
                     updated_at) SELECT j.value ->> 'product_id', j.value ->> 'location', \
                     CAST(j.value ->> 'total' AS BIGINT), CAST(j.value ->> 'allocated' AS BIGINT), \
                     CAST(j.value ->> 'held' AS BIGINT), $2, $2 FROM ",
                    $rows
                ),
                delete_stocks: concat!(
                    "DELETE FROM stock WHERE (product_id, location) IN \
                     (SELECT j.value ->> 'product_id', j.value ->> 'location' FROM ", $rows, ")"
                ),
                update_stocks: concat!(
                    "UPDATE stock SET total = CAST(j.value ->> 'total' AS BIGINT), \
                     allocated = CAST(j.value ->> 'allocated' AS BIGINT), \
                     held = CAST(j.value ->> 'held' AS BIGINT), updated_at = $2 FROM ",
                    $rows,
                    " WHERE stock.product_id = j.value ->> 'product_id' \
                     AND stock.location = j.value ->> 'location'"
                ),
                insert_history: concat!(
                    "INSERT INTO history (id, product_id, location, action, quantity, total, \
                     allocated, order_id, reason, created_at) SELECT j.value ->> 'id', \
                     j.value ->> 'product_id', j.value ->> 'location', j.value ->> 'action', \
                     CAST(j.value ->> 'quantity' AS BIGINT), CAST(j.value ->> 'total' AS BIGINT), \
                     CAST(j.value ->> 'allocated' AS BIGINT), j.value ->> 'order_id', \
                     j.value ->> 'reason', $2 FROM ",
                    $ordered,
                    $order_by
                ),
                insert_keys: concat!(
                    "INSERT INTO idempotency (scope, key, fingerprint, outcome, created_at) \
                     SELECT j.value ->> 'scope', j.value ->> 'key', j.value ->> 'fingerprint', \
                     j.value ->> 'outcome', $2 FROM ",
                    $rows,
                    " ORDER BY 1, 2"
                ),
            },
        }
    };
}

pub(crate) const SQLITE: Dialect = Dialect {
    purge_carts: "DELETE FROM carts WHERE updated_at < $1",
    ..SQLITE_BATCH
};

pub(crate) const POSTGRES: Dialect = Dialect {
    // CASE, so that only idle carts' locks are tried (AND may evaluate in either order).
    purge_carts: "DELETE FROM carts WHERE CASE WHEN updated_at < $1 THEN \
                  pg_try_advisory_xact_lock(hashtextextended('stockroom cart ' || id, 0)) \
                  ELSE false END",
    ..POSTGRES_BATCH
};

const SQLITE_BATCH: Dialect = dialect!(
    kind: Kind::Sqlite,
    begin: "BEGIN IMMEDIATE",
    lock: "",
    lock_carts: None,
    open: "IN (",
    close: ")",
    texts1: "SELECT value FROM json_each($1)",
    texts2: "SELECT value FROM json_each($2)",
    rows: "json_each($1) AS j",
    ordered_rows: "json_each($1) AS j",
    order_by_row: " ORDER BY j.key"
);

/// `= ANY (ARRAY(…))` rather than `IN (SELECT …)`: PostgreSQL plans it as an index lookup even
/// before the table has statistics; the `IN` form could scan the whole table on every batch.
const POSTGRES_BATCH: Dialect = dialect!(
    kind: Kind::Postgres,
    begin: "BEGIN",
    lock: " FOR UPDATE",
    lock_carts: Some(
        "SELECT COUNT(*) AS n FROM (SELECT pg_advisory_xact_lock(k.h) FROM \
         (SELECT DISTINCT hashtextextended('stockroom cart ' || c.id, 0) AS h \
         FROM jsonb_array_elements_text(CAST($1 AS jsonb)) AS c(id)) AS k ORDER BY k.h) AS l"
    ),
    open: "= ANY (ARRAY(",
    close: "))",
    texts1: "SELECT jsonb_array_elements_text(CAST($1 AS jsonb))",
    texts2: "SELECT jsonb_array_elements_text(CAST($2 AS jsonb))",
    rows: "jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)",
    ordered_rows: "jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS j(value, n)",
    order_by_row: " ORDER BY j.n"
);
