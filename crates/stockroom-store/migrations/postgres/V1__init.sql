-- Stockroom's first schema (PostgreSQL). Never edit once released: add a new migration instead.
-- Times are microseconds since the Unix epoch (UTC), in both dialects.

-- Places that hold stock (Elastic Path's multi-location inventory). The row with the empty id
-- stands for "no location": classic stock that uses no locations. It is never shown.
CREATE TABLE locations (
    id           TEXT PRIMARY KEY NOT NULL,
    slug         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    external_ref TEXT,
    description  TEXT,
    address      TEXT NOT NULL,
    lat          DOUBLE PRECISION,
    lon          DOUBLE PRECISION,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
INSERT INTO locations (id, slug, name, address, created_at, updated_at)
VALUES ('', '', 'no location', '[]', 0, 0);

-- One record per product and location (its slug; '' = no location). A location's slug can
-- change only while it holds no stock, so history and records always name the same place.
CREATE TABLE stock (
    product_id TEXT NOT NULL,
    location   TEXT NOT NULL DEFAULT '' REFERENCES locations (slug),
    total      BIGINT NOT NULL,
    allocated  BIGINT NOT NULL,
    -- the part of allocated that orders hold (released or shipped only by the order flow)
    held       BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (product_id, location),
    CONSTRAINT stock_figures CHECK (held >= 0 AND held <= allocated AND allocated <= total
                                    AND total <= 1000000000000000)
);
CREATE INDEX stock_by_location ON stock (location);

CREATE TABLE history (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    product_id TEXT NOT NULL,
    location   TEXT NOT NULL DEFAULT '',
    action     TEXT NOT NULL CHECK (action IN ('create','increment','decrement','allocate','deallocate','set','ship','delete')),
    quantity   BIGINT NOT NULL CHECK (quantity >= 0 AND quantity <= 1000000000000000),
    total      BIGINT NOT NULL,
    allocated  BIGINT NOT NULL,
    order_id   TEXT,
    reason     TEXT,
    created_at BIGINT NOT NULL,
    CONSTRAINT history_figures CHECK (allocated >= 0 AND allocated <= total)
);
CREATE INDEX history_by_product ON history (product_id, seq);

-- The history is append-only: the database refuses to change or remove an entry.
CREATE FUNCTION history_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'history is append-only';
END;
$$;
CREATE TRIGGER history_no_change BEFORE UPDATE OR DELETE ON history
    FOR EACH ROW EXECUTE FUNCTION history_is_append_only();

CREATE TABLE idempotency (
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
-- Keys are forgotten after a day; this finds the old ones without a scan.
CREATE INDEX idempotency_by_age ON idempotency (created_at);

CREATE TABLE credentials (
    client_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin','shopper')),
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
