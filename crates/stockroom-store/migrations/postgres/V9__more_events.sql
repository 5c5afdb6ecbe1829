-- More of Elastic Path's observable events (issue 14): cart.updated, cart.deleted,
-- customer.created/updated/deleted, integration.created/updated/deleted and
-- payment-gateway.updated (PostgreSQL). Never edit once released: add a new migration instead.
--
-- Written as V6's are: by triggers, in the statement that makes the change, one job per
-- enabled integration observing the event, none when nothing observes it. Each resource is its
-- own stream (`cart:<id>`, `customer:<id>`, `integration:<id>`, `gateway:<slug>`), so its
-- events leave in commit order. A deletion has no row left to take a time from: its job is
-- stamped with the database's clock (microseconds since the epoch, as every time here).

-- One job per enabled integration observing `event`.
CREATE FUNCTION events_enqueue(p_event TEXT, p_resource TEXT, p_stream TEXT, p_snapshot TEXT,
                               p_at BIGINT)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream,
                                  snapshot, created_at)
    SELECT i.id, p_event, p_resource, p_stream, p_snapshot, p_at
    FROM integrations i
    WHERE i.enabled = 1 AND i.observes LIKE '%,' || p_event || ',%'
    ORDER BY i.id;
$$;

CREATE FUNCTION events_now() RETURNS BIGINT LANGUAGE sql AS $$
    SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT);
$$;

-- cart.updated: a batch writes each cart it changed with one upsert of its `carts` row (every
-- cart change — created, renamed, associated, an item added, changed or removed, emptied —
-- writes that row, whatever number of `cart_items` rows it writes), so a trigger on `carts`
-- alone gives one event per cart per batch. Elastic Path has no `cart.created`: a new cart is
-- `cart.updated` too. cart.deleted: DELETE /v2/carts/{id}, and the purge of an idle cart.
CREATE FUNCTION events_cart() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM events_enqueue('cart.deleted', OLD.id, 'cart:' || OLD.id, '', events_now());
    ELSE
        PERFORM events_enqueue('cart.updated', NEW.id, 'cart:' || NEW.id, '', NEW.updated_at);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_cart AFTER INSERT OR UPDATE OR DELETE ON carts FOR EACH ROW
    EXECUTE FUNCTION events_cart();

-- Removing a product from the catalog removes its lines from every cart without writing the
-- carts: one cart.updated per cart that held it (read before the lines go).
CREATE FUNCTION events_cart_product_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO integration_jobs (integration_id, triggered_by, resource_id, stream, created_at)
    SELECT i.id, 'cart.updated', c.cart_id, 'cart:' || c.cart_id, events_now()
    FROM (SELECT DISTINCT cart_id FROM cart_items WHERE product_id = OLD.id) c
    JOIN integrations i ON i.enabled = 1 AND i.observes LIKE '%,cart.updated,%'
    ORDER BY c.cart_id, i.id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_cart_product_deleted AFTER DELETE ON products FOR EACH ROW
    EXECUTE FUNCTION events_cart_product_deleted();

-- customer.created / customer.updated / customer.deleted.
CREATE FUNCTION events_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM events_enqueue('customer.deleted', OLD.id, 'customer:' || OLD.id, '',
                               events_now());
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM events_enqueue('customer.created', NEW.id, 'customer:' || NEW.id, '',
                               NEW.updated_at);
    ELSE
        PERFORM events_enqueue('customer.updated', NEW.id, 'customer:' || NEW.id, '',
                               NEW.updated_at);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_customer AFTER INSERT OR UPDATE OR DELETE ON customers FOR EACH ROW
    EXECUTE FUNCTION events_customer();

-- integration.created / integration.updated / integration.deleted, to every enabled
-- integration observing them — the one created or updated included (as it stands after the
-- change), the one deleted not (it is gone, with its jobs).
CREATE FUNCTION events_integration() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM events_enqueue('integration.deleted', OLD.id, 'integration:' || OLD.id, '',
                               events_now());
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM events_enqueue('integration.created', NEW.id, 'integration:' || NEW.id, '',
                               NEW.updated_at);
    ELSE
        PERFORM events_enqueue('integration.updated', NEW.id, 'integration:' || NEW.id, '',
                               NEW.updated_at);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_integration AFTER INSERT OR UPDATE OR DELETE ON integrations FOR EACH ROW
    EXECUTE FUNCTION events_integration();

-- payment-gateway.updated: every PUT /v2/gateways/{slug} (the setting `gateway.<slug>.enabled`
-- written, first time or again). The snapshot is the value written ('true'/'false'): the
-- event reports the gateway as that change left it.
CREATE FUNCTION events_gateway() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    slug TEXT := substr(NEW.name, 9, length(NEW.name) - 16);
BEGIN
    PERFORM events_enqueue('payment-gateway.updated', slug, 'gateway:' || slug, NEW.value,
                           events_now());
    RETURN NULL;
END;
$$;
CREATE TRIGGER events_gateway AFTER INSERT OR UPDATE ON settings FOR EACH ROW
    WHEN (NEW.name LIKE 'gateway.%.enabled')
    EXECUTE FUNCTION events_gateway();
