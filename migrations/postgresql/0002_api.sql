-- 0002_api - what talking to the CashPay API needs recorded, PostgreSQL
-- edition of migrations/0002_api.sql: the same tables api_fetches and
-- charge_requests, orders.return_ref and orders.next_check_at,
-- order_events.source and fetch_id, and the outcomes unconfirmed (200)
-- and deferred (503).
--
-- PostgreSQL changes a constraint or a NOT NULL in place, so nothing is
-- rebuilt: the two tables keep their rows, ids and sequences. New columns
-- come last, as in SQLite, so every query written for schema 1 still works.
--
-- Run by the store inside one transaction that also records version 2.

CREATE TABLE api_fetches (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        charge_id       text NOT NULL
                        CHECK (charge_id ~ '^chg_[A-Za-z0-9_-]+$' AND length(charge_id) <= 132),
        requested_at    timestamptz NOT NULL,
        reason          text NOT NULL CHECK (reason IN ('webhook', 'return', 'reconcile', 'manual')),
        -- the webhook this fetch confirms; no foreign key: a deferred
        -- delivery may be pruned
        delivery_id     bigint,
        http_status     integer CHECK (http_status BETWEEN 100 AND 599), -- NULL: no answer
        status          text CHECK (status IN ('INITIATED', 'CAPTURED', 'FAILED')),
        amount          bigint CHECK (amount BETWEEN 0 AND 9007199254740991),
        currency        text CHECK (currency ~ '^[A-Z]{3}$'),
        body            bytea,  -- the raw answer (truncated to 64 KiB)
        error           text,
        duration_ms     bigint NOT NULL CHECK (duration_ms >= 0),

        -- a reported charge is all there or not at all, and only from a 200
        CHECK ((status IS NULL AND amount IS NULL AND currency IS NULL)
               OR (status IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
                   AND http_status = 200 AND error IS NULL))
);

CREATE INDEX api_fetches_charge_idx ON api_fetches (charge_id);

CREATE TRIGGER api_fetches_no_update BEFORE UPDATE ON api_fetches
FOR EACH ROW EXECUTE FUNCTION cashpayd_refuse('api_fetches is append-only');
CREATE TRIGGER api_fetches_no_delete BEFORE DELETE ON api_fetches
FOR EACH ROW EXECUTE FUNCTION cashpayd_refuse('api_fetches is append-only');
CREATE TRIGGER api_fetches_no_truncate BEFORE TRUNCATE ON api_fetches
FOR EACH STATEMENT EXECUTE FUNCTION cashpayd_refuse('api_fetches is append-only');

CREATE TABLE charge_requests (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        order_ref       text NOT NULL CHECK (order_ref ~ '^[A-Za-z0-9._:-]{1,128}$'),
        amount          bigint NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
        currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        description     text CHECK (octet_length(description) <= 4096),
        idempotency_key text NOT NULL UNIQUE,
        return_ref      text NOT NULL UNIQUE,
        state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'created', 'refused')),
        charge_id       text
                        CHECK (charge_id ~ '^chg_[A-Za-z0-9_-]+$' AND length(charge_id) <= 132),
        http_status     integer CHECK (http_status BETWEEN 100 AND 599), -- of the last attempt
        attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        requested_at    timestamptz NOT NULL,
        updated_at      timestamptz NOT NULL,
        error           text,

        CHECK ((state = 'created') = (charge_id IS NOT NULL))
);

-- One creation in progress per order_ref, across every instance: a second
-- POST /charges for it (a double click, or the same click retried at
-- another instance) finds the first one's row and its Idempotency-Key.
CREATE UNIQUE INDEX charge_requests_pending_idx ON charge_requests (order_ref)
WHERE state = 'pending';
CREATE INDEX charge_requests_order_ref_idx ON charge_requests (order_ref);

ALTER TABLE orders ADD COLUMN return_ref text;
ALTER TABLE orders ADD COLUMN next_check_at timestamptz;

CREATE UNIQUE INDEX orders_return_ref_idx ON orders (return_ref) WHERE return_ref IS NOT NULL;
-- The reconciler's queue: due INITIATED orders, soonest first.
CREATE INDEX orders_next_check_idx ON orders (next_check_at)
WHERE status = 'INITIATED' AND next_check_at IS NOT NULL;

-- webhook_deliveries: the two outcomes of confirm = api.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_outcome_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_outcome_check
        CHECK ((outcome = 'invalid' AND http_status = 400)
               OR (outcome = 'unauthorized' AND http_status = 401)
               OR (outcome = 'forbidden' AND http_status = 403)
               OR (outcome = 'deferred' AND http_status = 503)
               OR (outcome IN ('applied', 'duplicate', 'stale', 'conflict', 'unconfirmed')
                   AND http_status = 200));
-- a deferred delivery passed every check but the API's
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_deferred_check
        CHECK (outcome <> 'deferred' OR (charge_id IS NOT NULL AND claimed_status IS NOT NULL));

-- order_events: sourced events; an api event need not name a delivery.
ALTER TABLE order_events ALTER COLUMN delivery_id DROP NOT NULL;
ALTER TABLE order_events ADD COLUMN source text NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'api', 'checkout'));
ALTER TABLE order_events ADD COLUMN fetch_id bigint REFERENCES api_fetches (id);
-- every event names its evidence: the webhook's delivery, the API's answer
-- (and the delivery that made cashpayd ask, if any), or none for the charge
-- cashpayd created (its charge_requests row has the id)
ALTER TABLE order_events ADD CONSTRAINT order_events_evidence_check
        CHECK ((source = 'webhook' AND delivery_id IS NOT NULL AND fetch_id IS NULL)
               OR (source = 'api' AND fetch_id IS NOT NULL)
               OR (source = 'checkout' AND delivery_id IS NULL AND fetch_id IS NULL
                   AND from_status IS NULL AND to_status = 'INITIATED'));

CREATE INDEX order_events_fetch_idx ON order_events (fetch_id) WHERE fetch_id IS NOT NULL;
