-- Events (issue 14): Elastic Path's integrations, and a transactional outbox of their jobs
-- (SQLite). Never edit once released: add a new migration instead.
--
-- The outbox is written by triggers on the rows the writer's batch changes (history, orders,
-- payments, stock), so an event is committed by the very transaction that commits its change:
-- no acknowledged change lacks its event, and no rolled-back change has one. A trigger writes
-- one job per enabled integration that observes the event; with none, it writes nothing.

-- `observes` is stored as ',a,b,' so that a trigger matches an event with one LIKE.
CREATE TABLE integrations (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    enabled          INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    integration_type TEXT NOT NULL CHECK (integration_type IN ('webhook', 'nats')),
    observes         TEXT NOT NULL,
    configuration    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- One job: one event to deliver to one integration; its `seq` names it for good (the event id
-- that every attempt carries is derived from it). `stream` orders delivery (a product's or an
-- order's events leave in the order they were committed); `snapshot` holds the state the
-- event reports where the row it names changes later (an order's status/payment/shipping).
CREATE TABLE integration_jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id  TEXT NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
    triggered_by    TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    stream          TEXT NOT NULL,
    snapshot        TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    finished_at     INTEGER
);
CREATE INDEX integration_jobs_due ON integration_jobs (next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX integration_jobs_stream ON integration_jobs (integration_id, stream, seq) WHERE status = 'pending';
CREATE INDEX integration_jobs_by_integration ON integration_jobs (integration_id, seq);
CREATE INDEX integration_jobs_finished ON integration_jobs (finished_at) WHERE status <> 'pending';

-- One delivery attempt of a job, as Elastic Path's integration logs show it.
CREATE TABLE integration_logs (
    id             TEXT PRIMARY KEY NOT NULL,
    job_seq        INTEGER NOT NULL REFERENCES integration_jobs (seq) ON DELETE CASCADE,
    integration_id TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    succeeded      INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
    status_code    INTEGER,
    body           TEXT NOT NULL,
    error_detail   TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX integration_logs_by_integration ON integration_logs (integration_id, created_at, id);
CREATE INDEX integration_logs_by_job ON integration_logs (job_seq, created_at);

-- A low-stock threshold per product and location (issue 14's alerts, beyond Elastic Path).
CREATE TABLE stock_thresholds (
    product_id TEXT NOT NULL,
    location   TEXT NOT NULL DEFAULT '',
    threshold  INTEGER NOT NULL CHECK (threshold >= 1 AND threshold <= 1000000000),
    PRIMARY KEY (product_id, location)
);

-- stock-transaction.created: one per history entry (the entry is immutable: it is read again
-- at delivery).
CREATE TRIGGER events_history AFTER INSERT ON history
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  created_at)
    SELECT i.id, 'stock-transaction.created', NEW.id, 'product:' || NEW.product_id,
           NEW.created_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,stock-transaction.created,%';
END;

-- order.created, and the state an order was created in already (a batch that checks out and
-- pays one order writes the order once).
CREATE TRIGGER events_order_created AFTER INSERT ON orders
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, e.name, NEW.id, 'order:' || NEW.id,
           NEW.status || '/' || NEW.payment || '/' || NEW.shipping, NEW.updated_at
    FROM integrations i
    JOIN (SELECT 1 AS n, 'order.created' AS name WHERE 1
          UNION ALL SELECT 2, 'order.authorized' WHERE NEW.payment = 'authorized'
          UNION ALL SELECT 3, 'order.paid' WHERE NEW.payment = 'paid'
          UNION ALL SELECT 4, 'order.fulfilled' WHERE NEW.shipping = 'fulfilled'
          UNION ALL SELECT 5, 'order.cancelled' WHERE NEW.status = 'cancelled') e
      ON i.observes LIKE '%,' || e.name || ',%'
    WHERE i.enabled = 1
    ORDER BY e.n, i.id;
END;

-- order.updated on every change of state, and the named transitions.
CREATE TRIGGER events_order_updated AFTER UPDATE OF status, payment, shipping ON orders
WHEN OLD.status <> NEW.status OR OLD.payment <> NEW.payment OR OLD.shipping <> NEW.shipping
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, e.name, NEW.id, 'order:' || NEW.id,
           NEW.status || '/' || NEW.payment || '/' || NEW.shipping, NEW.updated_at
    FROM integrations i
    JOIN (SELECT 1 AS n, 'order.updated' AS name WHERE 1
          UNION ALL SELECT 2, 'order.authorized'
                    WHERE NEW.payment = 'authorized' AND OLD.payment <> 'authorized'
          UNION ALL SELECT 3, 'order.paid' WHERE NEW.payment = 'paid' AND OLD.payment <> 'paid'
          UNION ALL SELECT 4, 'order.fulfilled'
                    WHERE NEW.shipping = 'fulfilled' AND OLD.shipping <> 'fulfilled'
          UNION ALL SELECT 5, 'order.cancelled'
                    WHERE NEW.status = 'cancelled' AND OLD.status <> 'cancelled'
          UNION ALL SELECT 6, 'order.refunded'
                    WHERE NEW.payment = 'refunded' AND OLD.payment <> 'refunded') e
      ON i.observes LIKE '%,' || e.name || ',%'
    WHERE i.enabled = 1
    ORDER BY e.n, i.id;
END;

-- transaction.created / transaction.updated: an order's payment transactions.
CREATE TRIGGER events_payment_created AFTER INSERT ON payments
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, 'transaction.created', NEW.id, 'order:' || NEW.order_id,
           NEW.status, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,transaction.created,%';
END;

CREATE TRIGGER events_payment_updated AFTER UPDATE OF status ON payments
WHEN OLD.status <> NEW.status
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, 'transaction.updated', NEW.id, 'order:' || NEW.order_id, NEW.status, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,transaction.updated,%';
END;

-- Low-stock alerts: stock.low, stock.out and stock.replenished when what is available crosses
-- the record's threshold or zero (between two commits: a batch writes a record once).
CREATE TRIGGER events_stock_level AFTER UPDATE OF total, allocated ON stock
WHEN (OLD.total - OLD.allocated) <> (NEW.total - NEW.allocated)
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, e.name, NEW.product_id, 'product:' || NEW.product_id,
           NEW.location || '/' || (NEW.total - NEW.allocated) || '/' || t.threshold,
           NEW.updated_at
    FROM stock_thresholds t
    CROSS JOIN (SELECT 'stock.out' AS name
          WHERE NEW.total - NEW.allocated = 0 AND OLD.total - OLD.allocated > 0
          UNION ALL SELECT 'stock.low'
          WHERE NEW.total - NEW.allocated > 0
          UNION ALL SELECT 'stock.replenished') e
    JOIN integrations i ON i.enabled = 1 AND i.observes LIKE '%,' || e.name || ',%'
    WHERE t.product_id = NEW.product_id AND t.location = NEW.location
      AND ((e.name = 'stock.out')
        OR (e.name = 'stock.low' AND NEW.total - NEW.allocated <= t.threshold
            AND OLD.total - OLD.allocated > t.threshold)
        OR (e.name = 'stock.replenished' AND NEW.total - NEW.allocated > t.threshold
            AND OLD.total - OLD.allocated <= t.threshold))
    ORDER BY e.name, i.id;
END;
