-- Storefront parity (issue 13): carts as resources with a name, a description, an owner and an
-- expiry by inactivity; custom items beside products; customers.

-- Carts: created on their own (POST /v2/carts) or by a first item; purged once idle for the
-- configured time (updated_at is the last activity).
ALTER TABLE carts ADD COLUMN name TEXT NOT NULL DEFAULT 'Cart';
ALTER TABLE carts ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE carts ADD COLUMN customer_id TEXT;
CREATE INDEX carts_by_updated ON carts (updated_at);
CREATE INDEX carts_by_customer ON carts (customer_id, updated_at) WHERE customer_id IS NOT NULL;

-- Custom items: a name, SKU and price of their own, never stock-managed. Their product_id is
-- their own id (unique), so the (cart, product, location) key never merges two of them.
ALTER TABLE cart_items ADD COLUMN custom BIGINT NOT NULL DEFAULT 0 CHECK (custom IN (0, 1));
ALTER TABLE cart_items ADD COLUMN custom_name TEXT;
ALTER TABLE cart_items ADD COLUMN custom_sku TEXT;
ALTER TABLE cart_items ADD COLUMN custom_amount BIGINT CHECK (custom_amount >= 0);
ALTER TABLE cart_items ADD COLUMN custom_currency TEXT;
ALTER TABLE cart_items ADD COLUMN custom_includes_tax BIGINT;
ALTER TABLE order_items ADD COLUMN custom BIGINT NOT NULL DEFAULT 0 CHECK (custom IN (0, 1));

-- Customers (Elastic Path's customer resource): the password only as an argon2 hash.
CREATE TABLE customers (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
ALTER TABLE orders ADD COLUMN customer_id TEXT;
CREATE INDEX orders_by_customer ON orders (customer_id, created_at) WHERE customer_id IS NOT NULL;
