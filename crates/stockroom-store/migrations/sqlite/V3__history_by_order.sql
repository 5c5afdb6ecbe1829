-- Indexes for the dashboard (crates/stockroom-store/src/operator.rs).
-- The entries an order wrote, for the order page (without it: a scan of the history). Only
-- entries of orders are in it, so stock writes by hand and imports do not maintain it.
CREATE INDEX history_by_order ON history (order_id) WHERE order_id IS NOT NULL;
