-- 0001_init - the first schema of cashpayd, PostgreSQL edition.
--
-- The same tables, columns (names and order), view and indexes as
-- migrations/0001_init.sql for SQLite, in PostgreSQL's own types: times are
-- timestamptz, counts and amounts bigint, flags boolean, raw bodies bytea.
-- The CHECK constraints say what the SQLite ones say, so the merchant's SQL
-- can store nothing here that the daemon never would.
--
-- Ids come from identity columns: a sequence never hands a number out
-- twice, so an id pruned away is never reused (SQLite's AUTOINCREMENT).
-- Several cashpayd instances may write at once; the store makes sure that
-- order_events ids still become visible in increasing order (see the
-- README), so "id > :cursor" remains a complete change feed.
--
-- Run by the store inside one transaction that also records version 1 in
-- cashpayd_schema_migrations.

CREATE TABLE orders (
        charge_id       text NOT NULL PRIMARY KEY
                        CHECK (charge_id ~ '^chg_[A-Za-z0-9_-]+$' AND length(charge_id) <= 132),
        order_ref       text,
        status          text NOT NULL CHECK (status IN ('INITIATED', 'CAPTURED', 'FAILED')),
        amount          bigint NOT NULL CHECK (amount BETWEEN 0 AND 9007199254740991),
        currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        description     text,
        transaction_url text,
        charge_created  bigint CHECK (charge_created >= 0),
        first_seen_at   timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        captured_at     timestamptz,
        failed_at       timestamptz,
        fulfilled_at    timestamptz,
        needs_review    boolean NOT NULL DEFAULT false,

        -- A status is only ever reached with its time recorded.
        CHECK (status <> 'CAPTURED' OR captured_at IS NOT NULL),
        CHECK (status <> 'FAILED' OR failed_at IS NOT NULL),
        -- Only a paid order can be fulfilled; CAPTURED is final.
        CHECK (fulfilled_at IS NULL OR status = 'CAPTURED')
);

-- One row per POST that passed the size and content-type checks.
CREATE TABLE webhook_deliveries (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        received_at     timestamptz NOT NULL,
        remote_addr     text NOT NULL,
        message_id      text,
        charge_id       text,   -- as claimed; no foreign key: rejected rows name unknown charges
        claimed_status  text CHECK (claimed_status IN ('INITIATED', 'CAPTURED', 'FAILED')),
        outcome         text NOT NULL,
        http_status     integer NOT NULL CHECK (http_status BETWEEN 100 AND 599),
        error           text,
        body            bytea,

        -- Accepted outcomes 200, rejected ones their 4xx: "http_status = 200"
        -- means accepted and "http_status >= 400" rejected.
        CONSTRAINT webhook_deliveries_outcome_check
        CHECK ((outcome = 'invalid' AND http_status = 400)
               OR (outcome = 'unauthorized' AND http_status = 401)
               OR (outcome = 'forbidden' AND http_status = 403)
               OR (outcome IN ('applied', 'duplicate', 'stale', 'conflict')
                   AND http_status = 200)),
        -- The state machine only runs on a verified charge.
        CONSTRAINT webhook_deliveries_accepted_check
        CHECK (http_status <> 200 OR (charge_id IS NOT NULL AND claimed_status IS NOT NULL))
);

-- The history of every status change: the change feed for fulfilment code
-- (SELECT ... FROM order_events WHERE id > :cursor ORDER BY id).
CREATE TABLE order_events (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        charge_id       text NOT NULL REFERENCES orders (charge_id),
        from_status     text CHECK (from_status IN ('INITIATED', 'CAPTURED', 'FAILED')),
        to_status       text NOT NULL CHECK (to_status IN ('INITIATED', 'CAPTURED', 'FAILED')),
        delivery_id     bigint NOT NULL REFERENCES webhook_deliveries (id),
        recorded_at     timestamptz NOT NULL,

        CHECK (from_status IS NULL OR from_status <> to_status)
);

-- Triggers raise the same messages as SQLite's. Statement-level TRUNCATE
-- triggers too: TRUNCATE fires no row triggers.
CREATE FUNCTION cashpayd_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
        RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE FUNCTION cashpayd_keep_accepted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
        IF OLD.http_status = 200 THEN
                RAISE EXCEPTION 'only rejected webhook_deliveries may be deleted'
                        USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN OLD;
END;
$$;

CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
FOR EACH ROW EXECUTE FUNCTION cashpayd_refuse('order_events is append-only');
CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
FOR EACH ROW EXECUTE FUNCTION cashpayd_refuse('order_events is append-only');
CREATE TRIGGER order_events_no_truncate BEFORE TRUNCATE ON order_events
FOR EACH STATEMENT EXECUTE FUNCTION cashpayd_refuse('order_events is append-only');

-- Deliveries are evidence: never edited; only rejected ones may be removed.
CREATE TRIGGER webhook_deliveries_no_update BEFORE UPDATE ON webhook_deliveries
FOR EACH ROW EXECUTE FUNCTION cashpayd_refuse('webhook_deliveries rows are never updated');
CREATE TRIGGER webhook_deliveries_keep_accepted BEFORE DELETE ON webhook_deliveries
FOR EACH ROW EXECUTE FUNCTION cashpayd_keep_accepted();
CREATE TRIGGER webhook_deliveries_no_truncate BEFORE TRUNCATE ON webhook_deliveries
FOR EACH STATEMENT EXECUTE FUNCTION cashpayd_refuse('only rejected webhook_deliveries may be deleted');

-- What fulfilment code polls: paid, not yet fulfilled, not held for review.
CREATE VIEW orders_to_fulfil AS
SELECT charge_id, order_ref, status, amount, currency, description,
       transaction_url, charge_created, first_seen_at, updated_at,
       captured_at, failed_at, fulfilled_at, needs_review
FROM orders
WHERE status = 'CAPTURED' AND fulfilled_at IS NULL AND NOT needs_review;

CREATE INDEX orders_to_fulfil_idx ON orders (captured_at)
WHERE status = 'CAPTURED' AND fulfilled_at IS NULL AND NOT needs_review;
CREATE INDEX orders_updated_idx ON orders (updated_at);
CREATE INDEX orders_review_idx ON orders (updated_at) WHERE needs_review;
CREATE INDEX orders_order_ref_idx ON orders (order_ref) WHERE order_ref IS NOT NULL;

CREATE INDEX order_events_charge_idx ON order_events (charge_id);

-- The webhook-id duplicate check on every accepted delivery.
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id)
WHERE message_id IS NOT NULL;
CREATE INDEX webhook_deliveries_charge_idx ON webhook_deliveries (charge_id)
WHERE charge_id IS NOT NULL;
CREATE INDEX webhook_deliveries_rejected_idx ON webhook_deliveries (received_at)
WHERE http_status >= 400;
