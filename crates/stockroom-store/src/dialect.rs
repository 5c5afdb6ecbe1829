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
    /// Reads the state of the orders whose ids are in the JSON array `$1`, locking them (on
    /// PostgreSQL) in id order.
    pub lock_orders: &'static str,
    /// The items of the carts whose ids are in the JSON array `$1`, with their products'
    /// currencies.
    pub cart_items_of: &'static str,
    /// The order flow's rows of a batch, one statement per table.
    pub bulk: Bulk,
    /// Inserts the history entries in the JSON array `$1`, in array order (so sequence numbers
    /// follow the order the batch applied them in): one statement per batch.
    pub insert_history: &'static str,
    /// Sets the figures of the stock rows in the JSON array `$1` (`p`, `t`, `a`) and their
    /// `updated_at` to `$2`: one statement per batch.
    pub update_stocks: &'static str,
}

/// Statements that write many rows of one table from a JSON array of objects in `$1` (`$2` is
/// the batch's time where a statement needs it). Both dialects spell a field `j.value ->> 'name'`
/// and only the row source differs: `json_each` on SQLite, `jsonb_array_elements` on
/// PostgreSQL. The `WHERE true` before `ON CONFLICT` is SQLite's way to tell an upsert from a
/// join.
pub(crate) struct Bulk {
    /// Cart ids (`id`): created, or their `updated_at` set.
    pub upsert_carts: &'static str,
    /// Cart lines (`id`, `cart`, `p`, `l`, `q`): created, or `q` added to what the line holds.
    pub upsert_cart_items: &'static str,
    pub insert_orders: &'static str,
    pub insert_order_items: &'static str,
    /// Payment transactions; `n` numbers an order's new ones within the statement, and each
    /// is placed after the order's existing ones, counted by the statement itself (its own
    /// snapshot, taken under the order's lock: a count read with `FOR UPDATE` could be older
    /// than the row it locked).
    pub insert_payments: &'static str,
    /// Order states (`id`, `status`, `payment`, `shipping`, `paying`).
    pub update_orders: &'static str,
}

macro_rules! cart_items_of {
    () => {
        "SELECT ci.cart_id, ci.product_id, ci.location, ci.quantity, p.currency \
         FROM cart_items ci LEFT JOIN products p ON p.id = ci.product_id"
    };
}

macro_rules! bulk {
    ($rows:literal) => {
        Bulk {
            upsert_carts: concat!(
                "INSERT INTO carts (id, created_at, updated_at) \
                 SELECT j.value ->> 'id', $2, $2 FROM ",
                $rows,
                " WHERE true ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at"
            ),
            upsert_cart_items: concat!(
                "INSERT INTO cart_items (id, cart_id, product_id, location, quantity, created_at, \
                 updated_at) SELECT j.value ->> 'id', j.value ->> 'cart', j.value ->> 'p', \
                 j.value ->> 'l', CAST(j.value ->> 'q' AS BIGINT), $2, $2 FROM ",
                $rows,
                " WHERE true ON CONFLICT (cart_id, product_id, location) DO UPDATE \
                 SET quantity = cart_items.quantity + excluded.quantity, \
                 updated_at = excluded.updated_at"
            ),
            insert_orders: concat!(
                "INSERT INTO orders (id, cart_id, status, payment, shipping, paying, customer, \
                 billing_address, shipping_address, total_amount, currency, created_at, \
                 updated_at) SELECT j.value ->> 'id', j.value ->> 'cart', j.value ->> 'status', \
                 j.value ->> 'payment', j.value ->> 'shipping', j.value ->> 'paying', \
                 j.value ->> 'customer', j.value ->> 'billing', j.value ->> 'shipping_address', \
                 CAST(j.value ->> 'amount' AS BIGINT), j.value ->> 'currency', $2, $2 FROM ",
                $rows
            ),
            insert_order_items: concat!(
                "INSERT INTO order_items (id, order_id, position, product_id, location, name, \
                 sku, quantity, unit_amount, currency, includes_tax) \
                 SELECT j.value ->> 'id', j.value ->> 'order', \
                 CAST(j.value ->> 'position' AS BIGINT), j.value ->> 'p', j.value ->> 'l', \
                 j.value ->> 'name', j.value ->> 'sku', CAST(j.value ->> 'q' AS BIGINT), \
                 CAST(j.value ->> 'amount' AS BIGINT), j.value ->> 'currency', \
                 CAST(j.value ->> 'tax' AS BIGINT) FROM ",
                $rows
            ),
            insert_payments: concat!(
                "INSERT INTO payments (id, order_id, position, gateway, transaction_type, status, \
                 amount, currency, lines, allocation, failure, expires_at, created_at, \
                 updated_at) SELECT j.value ->> 'id', j.value ->> 'order', \
                 (SELECT COUNT(*) FROM payments p WHERE p.order_id = j.value ->> 'order') \
                 + CAST(j.value ->> 'n' AS BIGINT), j.value ->> 'gateway', \
                 j.value ->> 'type', j.value ->> 'status', CAST(j.value ->> 'amount' AS BIGINT), \
                 j.value ->> 'currency', j.value ->> 'lines', j.value ->> 'allocation', NULL, \
                 CAST(j.value ->> 'expires' AS BIGINT), $2, $2 FROM ",
                $rows
            ),
            update_orders: concat!(
                "UPDATE orders SET status = j.value ->> 'status', \
                 payment = j.value ->> 'payment', shipping = j.value ->> 'shipping', \
                 paying = j.value ->> 'paying', updated_at = $2 FROM ",
                $rows,
                " WHERE orders.id = j.value ->> 'id'"
            ),
        }
    };
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
    lock_orders: "SELECT id, status, payment, shipping, paying \
                  FROM orders WHERE id IN (SELECT value FROM json_each($1)) ORDER BY id",
    cart_items_of: concat!(
        cart_items_of!(),
        " WHERE ci.cart_id IN (SELECT value FROM json_each($1))"
    ),
    bulk: bulk!("json_each($1) AS j"),
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
    lock_orders: "SELECT id, status, payment, shipping, paying FROM orders \
         WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))) \
         ORDER BY id FOR UPDATE",
    cart_items_of: concat!(
        cart_items_of!(),
        " WHERE ci.cart_id = ANY (ARRAY(SELECT jsonb_array_elements_text(CAST($1 AS jsonb))))"
    ),
    bulk: bulk!("jsonb_array_elements(CAST($1 AS jsonb)) AS j(value)"),
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
