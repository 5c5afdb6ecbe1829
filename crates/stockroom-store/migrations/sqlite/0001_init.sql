-- Stockroom's first schema (SQLite). Never edit once released: add a new migration instead.
-- Times are microseconds since the Unix epoch (UTC), in both dialects.

CREATE TABLE stock (
    product_id TEXT PRIMARY KEY NOT NULL,
    total      INTEGER NOT NULL,
    allocated  INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT stock_figures CHECK (allocated >= 0 AND allocated <= total AND total <= 1000000000000000)
);

CREATE TABLE history (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    product_id TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('create','increment','decrement','allocate','deallocate','set','ship','delete')),
    quantity   INTEGER NOT NULL CHECK (quantity >= 0 AND quantity <= 1000000000000000),
    total      INTEGER NOT NULL,
    allocated  INTEGER NOT NULL,
    order_id   TEXT,
    reason     TEXT,
    created_at INTEGER NOT NULL,
    CONSTRAINT history_figures CHECK (allocated >= 0 AND allocated <= total)
);
CREATE INDEX history_by_product ON history (product_id, seq);

-- The history is append-only: the database refuses to change or remove an entry.
CREATE TRIGGER history_no_update BEFORE UPDATE ON history
BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER history_no_delete BEFORE DELETE ON history
BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);

CREATE TABLE credentials (
    client_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin','shopper')),
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
