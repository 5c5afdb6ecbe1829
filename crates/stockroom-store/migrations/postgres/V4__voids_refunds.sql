-- Voids and refunds (issue 13 item 6), authorizations voided when overdue (issue 12 finding 2).
-- A payment transaction may be a `refund` (money given back; moves no stock), and a voided
-- authorization is `cancelled`; an order whose payments were all given back is `refunded`.
ALTER TABLE payments DROP CONSTRAINT payments_transaction_type_check,
    ADD CONSTRAINT payments_transaction_type_check
        CHECK (transaction_type IN ('purchase', 'authorize', 'capture', 'refund'));
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('pending', 'complete', 'failed', 'cancelled'));
ALTER TABLE orders DROP CONSTRAINT orders_payment_check,
    ADD CONSTRAINT orders_payment_check
        CHECK (payment IN ('unpaid', 'authorized', 'paid', 'refunded'));
-- The sweep of authorizations never captured.
CREATE INDEX payments_held_authorizations ON payments (created_at)
    WHERE transaction_type = 'authorize' AND allocation = 'held';
