-- Indexes for the dashboard (crates/stockroom-store/src/operator.rs).
-- The entries an order wrote, for the order page (without it: a scan of the history).
CREATE INDEX history_by_order ON history (order_id) WHERE order_id IS NOT NULL;
-- Records by what they have available, for the low- and out-of-stock filters: a product whose
-- stock is low has every record at most that low, so candidates come from a range of this index.
CREATE INDEX stock_by_available ON stock ((total - allocated), product_id);
