-- Voids and refunds (issue 13 item 6), authorizations voided when overdue (issue 12 finding 2).
-- A payment transaction may be a `refund` (money given back; moves no stock), and a voided
-- authorization is `cancelled`; an order whose payments were all given back is `refunded`.
-- SQLite cannot change a CHECK constraint in place: both tables are rebuilt. `orders` is the
-- parent of `order_items` and `payments`: with foreign keys deferred, dropping it counts its
-- children as orphans and inserting its rows back counts them found again, so the commit sees
-- no violation (a row lost on the way would fail it).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE payments_v4 (
    id               TEXT PRIMARY KEY NOT NULL,
    order_id         TEXT NOT NULL REFERENCES orders (id),
    position         INTEGER NOT NULL,
    gateway          TEXT NOT NULL,
    transaction_type TEXT NOT NULL
        CHECK (transaction_type IN ('purchase', 'authorize', 'capture', 'refund')),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'complete', 'failed', 'cancelled')),
    amount           INTEGER NOT NULL CHECK (amount >= 0),
    currency         TEXT NOT NULL,
    lines            TEXT NOT NULL,
    allocation       TEXT NOT NULL CHECK (allocation IN ('none', 'held', 'shipped', 'released')),
    failure          TEXT,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO payments_v4 (id, order_id, position, gateway, transaction_type, status, amount,
    currency, lines, allocation, failure, expires_at, created_at, updated_at)
SELECT id, order_id, position, gateway, transaction_type, status, amount, currency, lines,
    allocation, failure, expires_at, created_at, updated_at FROM payments;
DROP TABLE payments;
ALTER TABLE payments_v4 RENAME TO payments;
CREATE UNIQUE INDEX payments_by_order ON payments (order_id, position);
CREATE INDEX payments_pending ON payments (expires_at) WHERE status = 'pending';
-- The sweep of authorizations never captured.
CREATE INDEX payments_held_authorizations ON payments (created_at)
    WHERE transaction_type = 'authorize' AND allocation = 'held';

CREATE TABLE orders_v3 AS SELECT * FROM orders;
DROP TABLE orders;
CREATE TABLE orders (
    id               TEXT PRIMARY KEY NOT NULL,
    cart_id          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('incomplete', 'complete', 'cancelled')),
    payment          TEXT NOT NULL CHECK (payment IN ('unpaid', 'authorized', 'paid', 'refunded')),
    shipping         TEXT NOT NULL CHECK (shipping IN ('unfulfilled', 'fulfilled')),
    paying           TEXT,
    customer         TEXT NOT NULL,
    billing_address  TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    total_amount     INTEGER NOT NULL CHECK (total_amount >= 0),
    currency         TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
INSERT INTO orders (id, cart_id, status, payment, shipping, paying, customer, billing_address,
    shipping_address, total_amount, currency, created_at, updated_at)
SELECT id, cart_id, status, payment, shipping, paying, customer, billing_address,
    shipping_address, total_amount, currency, created_at, updated_at FROM orders_v3;
DROP TABLE orders_v3;
CREATE INDEX orders_by_creation ON orders (created_at, id);
