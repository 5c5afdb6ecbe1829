-- More of Elastic Path's observable events (issue 14): cart.updated, cart.deleted,
-- customer.created/updated/deleted, integration.created/updated/deleted and
-- payment-gateway.updated (SQLite). Never edit once released: add a new migration instead.
--
-- Written as V6's are: by triggers, in the statement that makes the change, one job per
-- enabled integration observing the event, none when nothing observes it. Each resource is its
-- own stream (`cart:<id>`, `customer:<id>`, `integration:<id>`, `gateway:<slug>`), so its
-- events leave in commit order. A deletion has no row left to take a time from: its job is
-- stamped with the database's clock (microseconds since the epoch, as every time here).

-- cart.updated: a batch writes each cart it changed with one upsert of its `carts` row (every
-- cart change — created, renamed, associated, an item added, changed or removed, emptied —
-- writes that row, whatever number of `cart_items` rows it writes), so a trigger on `carts`
-- alone gives one event per cart per batch. Elastic Path has no `cart.created`: a new cart is
-- `cart.updated` too.
CREATE TRIGGER events_cart_inserted AFTER INSERT ON carts
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'cart.updated', NEW.id, 'cart:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,cart.updated,%';
END;

CREATE TRIGGER events_cart_updated AFTER UPDATE ON carts
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'cart.updated', NEW.id, 'cart:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,cart.updated,%';
END;

-- Removing a product from the catalog removes its lines from every cart without writing the
-- carts: one cart.updated per cart that held it (read before the lines go).
CREATE TRIGGER events_cart_product_deleted AFTER DELETE ON products
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'cart.updated', c.cart_id, 'cart:' || c.cart_id,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM (SELECT DISTINCT cart_id FROM cart_items WHERE product_id = OLD.id) c
    JOIN integrations i ON i.enabled = 1 AND i.observes LIKE '%,cart.updated,%'
    ORDER BY c.cart_id, i.id;
END;

-- cart.deleted: DELETE /v2/carts/{id}, and the purge of an idle cart.
CREATE TRIGGER events_cart_deleted AFTER DELETE ON carts
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'cart.deleted', OLD.id, 'cart:' || OLD.id,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,cart.deleted,%';
END;

-- customer.created / customer.updated / customer.deleted.
CREATE TRIGGER events_customer_created AFTER INSERT ON customers
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'customer.created', NEW.id, 'customer:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,customer.created,%';
END;

CREATE TRIGGER events_customer_updated AFTER UPDATE ON customers
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'customer.updated', NEW.id, 'customer:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,customer.updated,%';
END;

CREATE TRIGGER events_customer_deleted AFTER DELETE ON customers
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'customer.deleted', OLD.id, 'customer:' || OLD.id,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,customer.deleted,%';
END;

-- integration.created / integration.updated / integration.deleted, to every enabled
-- integration observing them — the one created or updated included (as it stands after the
-- change), the one deleted not (it is gone, with its jobs).
CREATE TRIGGER events_integration_created AFTER INSERT ON integrations
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'integration.created', NEW.id, 'integration:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,integration.created,%'
    ORDER BY i.id;
END;

CREATE TRIGGER events_integration_updated AFTER UPDATE ON integrations
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'integration.updated', NEW.id, 'integration:' || NEW.id, NEW.updated_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,integration.updated,%'
    ORDER BY i.id;
END;

CREATE TRIGGER events_integration_deleted AFTER DELETE ON integrations
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'integration.deleted', OLD.id, 'integration:' || OLD.id,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,integration.deleted,%'
    ORDER BY i.id;
END;

-- payment-gateway.updated: every PUT /v2/gateways/{slug} (the setting `gateway.<slug>.enabled`
-- written, first time or again). The snapshot is the value written ('true'/'false'): the
-- event reports the gateway as that change left it.
CREATE TRIGGER events_gateway_inserted AFTER INSERT ON settings
WHEN NEW.name LIKE 'gateway.%.enabled'
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, 'payment-gateway.updated', substr(NEW.name, 9, length(NEW.name) - 16),
           'gateway:' || substr(NEW.name, 9, length(NEW.name) - 16), NEW.value,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,payment-gateway.updated,%';
END;

CREATE TRIGGER events_gateway_updated AFTER UPDATE ON settings
WHEN NEW.name LIKE 'gateway.%.enabled'
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, 'payment-gateway.updated', substr(NEW.name, 9, length(NEW.name) - 16),
           'gateway:' || substr(NEW.name, 9, length(NEW.name) - 16), NEW.value,
           CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,payment-gateway.updated,%';
END;
