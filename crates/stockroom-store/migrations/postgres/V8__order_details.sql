-- Order details an administrator sets through `PUT /v2/orders/{id}` (issue 13 item 5):
-- Elastic Path's `order_number` and `external_ref` (each at most 64 characters, checked at
-- the API and here). NULL: not set.
ALTER TABLE orders
    ADD COLUMN order_number TEXT
        CHECK (order_number IS NULL OR char_length(order_number) BETWEEN 1 AND 64),
    ADD COLUMN external_ref TEXT
        CHECK (external_ref IS NULL OR char_length(external_ref) BETWEEN 1 AND 64);
-- The order list's `updated_at` filter and sort.
CREATE INDEX orders_by_update ON orders (updated_at, id);
