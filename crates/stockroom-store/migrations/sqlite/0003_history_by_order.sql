-- The entries an order wrote, for the dashboard's order page (without it: a scan of the history).
CREATE INDEX history_by_order ON history (order_id) WHERE order_id IS NOT NULL;
