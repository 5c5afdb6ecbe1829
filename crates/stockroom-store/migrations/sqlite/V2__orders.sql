-- The order flow: products, carts, orders, payment transactions (SQLite).

CREATE TABLE products (
    id            TEXT PRIMARY KEY NOT NULL,
    sku           TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    price_amount  INTEGER NOT NULL CHECK (price_amount >= 0),
    currency      TEXT NOT NULL,
    includes_tax  INTEGER NOT NULL CHECK (includes_tax IN (0, 1)),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE carts (
    id         TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE cart_items (
    id         TEXT PRIMARY KEY NOT NULL,
    cart_id    TEXT NOT NULL REFERENCES carts (id) ON DELETE CASCADE,
    product_id TEXT NOT NULL,
    location   TEXT NOT NULL DEFAULT '',
    quantity   INTEGER NOT NULL CHECK (quantity >= 1 AND quantity <= 1000000000),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (cart_id, product_id, location)
);

CREATE TABLE orders (
    id               TEXT PRIMARY KEY NOT NULL,
    cart_id          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('incomplete', 'complete', 'cancelled')),
    payment          TEXT NOT NULL CHECK (payment IN ('unpaid', 'authorized', 'paid')),
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
CREATE INDEX orders_by_creation ON orders (created_at, id);

CREATE TABLE order_items (
    id           TEXT PRIMARY KEY NOT NULL,
    order_id     TEXT NOT NULL REFERENCES orders (id),
    position     INTEGER NOT NULL,
    product_id   TEXT NOT NULL,
    location     TEXT NOT NULL DEFAULT '',
    name         TEXT NOT NULL,
    sku          TEXT NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity >= 1 AND quantity <= 1000000000),
    unit_amount  INTEGER NOT NULL CHECK (unit_amount >= 0),
    currency     TEXT NOT NULL,
    includes_tax INTEGER NOT NULL CHECK (includes_tax IN (0, 1))
);
CREATE INDEX order_items_by_order ON order_items (order_id, position);

-- Payment transactions. A purchase or authorize row holds the attempt's allocation: `lines`
-- is what it allocated (JSON), and `allocation` says how that ended, exactly once.
CREATE TABLE payments (
    id               TEXT PRIMARY KEY NOT NULL,
    order_id         TEXT NOT NULL REFERENCES orders (id),
    position         INTEGER NOT NULL,
    gateway          TEXT NOT NULL,
    transaction_type TEXT NOT NULL CHECK (transaction_type IN ('purchase', 'authorize', 'capture')),
    status           TEXT NOT NULL CHECK (status IN ('pending', 'complete', 'failed')),
    amount           INTEGER NOT NULL CHECK (amount >= 0),
    currency         TEXT NOT NULL,
    lines            TEXT NOT NULL,
    allocation       TEXT NOT NULL CHECK (allocation IN ('none', 'held', 'shipped', 'released')),
    failure          TEXT,
    expires_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX payments_by_order ON payments (order_id, position);
CREATE INDEX payments_pending ON payments (expires_at) WHERE status = 'pending';
