-- 0002_api - what talking to the CashPay API needs recorded.
--
-- * api_fetches: one row per charge asked of the API (GET /charges/{id}),
--   whatever came back - the evidence an "api" order event points at, as a
--   webhook_deliveries row is the evidence of a "webhook" one.
-- * charge_requests: one row per charge creation asked for, written before
--   the request is sent, so that a retry reuses its Idempotency-Key and a
--   crash between sending and recording can never ask CashPay twice.
-- * orders.return_ref (the opaque reference in redirect_url) and
--   orders.next_check_at (when reconciliation fetches an INITIATED order).
-- * order_events.source (webhook / api / checkout) and fetch_id.
-- * webhook_deliveries outcomes unconfirmed (200) and deferred (503).
--
-- SQLite cannot change a CHECK or drop a NOT NULL in place, so
-- webhook_deliveries and order_events are rebuilt: new table, copy, drop,
-- rename, with their triggers and indexes made again. Columns keep their
-- names and order and new ones come last, so every query written for
-- schema 1 still works. The new order_events first references
-- webhook_deliveries_new: RENAME rewrites that reference, and the old
-- webhook_deliveries is dropped only once no table refers to it, which
-- keeps foreign keys on throughout. AUTOINCREMENT counters are carried
-- over (pruned deliveries may have left the counter above max(id)).
--
-- Run by the store inside one transaction that also sets user_version = 2.

CREATE TABLE api_fetches (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_id       TEXT NOT NULL
                        CHECK (charge_id GLOB 'chg_?*'
                               AND substr(charge_id, 5) NOT GLOB '*[^A-Za-z0-9_-]*'
                               AND length(charge_id) <= 132),
        requested_at    TEXT NOT NULL
                        CHECK (requested_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        reason          TEXT NOT NULL
                        CHECK (reason = 'webhook' OR reason = 'return' OR reason = 'reconcile'
                               OR reason = 'manual'),
        -- the webhook this fetch confirms; no foreign key, like
        -- webhook_deliveries.charge_id: a deferred delivery may be pruned
        delivery_id     INTEGER,
        http_status     INTEGER CHECK (http_status BETWEEN 100 AND 599), -- NULL: no answer
        -- what the API reported, only for an answer that passed the charge rules
        status          TEXT CHECK (status = 'INITIATED' OR status = 'CAPTURED' OR status = 'FAILED'),
        amount          INTEGER CHECK (amount BETWEEN 0 AND 9007199254740991),
        currency        TEXT CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
        body            BLOB,   -- the raw answer (truncated to 64 KiB)
        error           TEXT,   -- why the answer is not the charge: transport, status, rules
        duration_ms     INTEGER NOT NULL CHECK (duration_ms >= 0),

        -- a reported charge is all there or not at all, and only from a 200
        CHECK ((status IS NULL AND amount IS NULL AND currency IS NULL)
               OR (status IS NOT NULL AND amount IS NOT NULL AND currency IS NOT NULL
                   AND http_status = 200 AND error IS NULL))
) STRICT;

CREATE INDEX api_fetches_charge_idx ON api_fetches (charge_id);

CREATE TRIGGER api_fetches_no_update BEFORE UPDATE ON api_fetches
BEGIN
        SELECT RAISE(ABORT, 'api_fetches is append-only');
END;

CREATE TRIGGER api_fetches_no_delete BEFORE DELETE ON api_fetches
BEGIN
        SELECT RAISE(ABORT, 'api_fetches is append-only');
END;

CREATE TABLE charge_requests (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        order_ref       TEXT NOT NULL
                        CHECK (length(order_ref) BETWEEN 1 AND 128
                               AND order_ref NOT GLOB '*[^A-Za-z0-9._:-]*'),
        amount          INTEGER NOT NULL CHECK (amount BETWEEN 1 AND 9007199254740991),
        currency        TEXT NOT NULL
                        CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
        description     TEXT CHECK (length(CAST(description AS BLOB)) <= 4096),
        idempotency_key TEXT NOT NULL UNIQUE,
        return_ref      TEXT NOT NULL UNIQUE,
        state           TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state = 'pending' OR state = 'created' OR state = 'refused'),
        charge_id       TEXT
                        CHECK (charge_id GLOB 'chg_?*'
                               AND substr(charge_id, 5) NOT GLOB '*[^A-Za-z0-9_-]*'
                               AND length(charge_id) <= 132),
        http_status     INTEGER CHECK (http_status BETWEEN 100 AND 599), -- of the last attempt
        attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        requested_at    TEXT NOT NULL
                        CHECK (requested_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        updated_at      TEXT NOT NULL
                        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        error           TEXT,

        CHECK ((state = 'created') = (charge_id IS NOT NULL))
) STRICT;

-- One creation in progress per order_ref: a second POST /charges for it
-- (a double click) finds the first one's row and its Idempotency-Key.
CREATE UNIQUE INDEX charge_requests_pending_idx ON charge_requests (order_ref)
WHERE state = 'pending';
CREATE INDEX charge_requests_order_ref_idx ON charge_requests (order_ref);

-- Nullable and added last: orders seen only through webhooks have neither.
ALTER TABLE orders ADD COLUMN return_ref TEXT;
ALTER TABLE orders ADD COLUMN next_check_at TEXT
        CHECK (next_check_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z');

CREATE UNIQUE INDEX orders_return_ref_idx ON orders (return_ref) WHERE return_ref IS NOT NULL;
-- The reconciler's queue: due INITIATED orders, soonest first.
CREATE INDEX orders_next_check_idx ON orders (next_check_at)
WHERE status = 'INITIATED' AND next_check_at IS NOT NULL;

-- webhook_deliveries again, with the two outcomes of confirm = api.
CREATE TABLE webhook_deliveries_new (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at     TEXT NOT NULL
                        CHECK (received_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        remote_addr     TEXT NOT NULL,
        message_id      TEXT,
        charge_id       TEXT,
        claimed_status  TEXT CHECK (claimed_status = 'INITIATED' OR claimed_status = 'CAPTURED' OR claimed_status = 'FAILED'),
        outcome         TEXT NOT NULL,
        http_status     INTEGER NOT NULL CHECK (http_status BETWEEN 100 AND 599),
        error           TEXT,
        body            BLOB,

        -- accepted outcomes 200, rejected ones their 4xx, deferred 503:
        -- "http_status = 200" still means accepted (acknowledged).
        CHECK ((outcome = 'invalid' AND http_status = 400)
               OR (outcome = 'unauthorized' AND http_status = 401)
               OR (outcome = 'forbidden' AND http_status = 403)
               OR (outcome = 'deferred' AND http_status = 503)
               OR ((outcome = 'applied' OR outcome = 'duplicate'
                    OR outcome = 'stale' OR outcome = 'conflict' OR outcome = 'unconfirmed')
                   AND http_status = 200)),
        CHECK (http_status <> 200 OR (charge_id IS NOT NULL AND claimed_status IS NOT NULL)),
        -- a deferred delivery passed every check but the API's
        CHECK (outcome <> 'deferred' OR (charge_id IS NOT NULL AND claimed_status IS NOT NULL))
) STRICT;

INSERT INTO webhook_deliveries_new (id, received_at, remote_addr, message_id, charge_id,
                                    claimed_status, outcome, http_status, error, body)
SELECT id, received_at, remote_addr, message_id, charge_id, claimed_status, outcome,
       http_status, error, body
FROM webhook_deliveries;

CREATE TABLE order_events_new (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_id       TEXT NOT NULL REFERENCES orders (charge_id),
        from_status     TEXT CHECK (from_status = 'INITIATED' OR from_status = 'CAPTURED' OR from_status = 'FAILED'),
        to_status       TEXT NOT NULL CHECK (to_status = 'INITIATED' OR to_status = 'CAPTURED' OR to_status = 'FAILED'),
        delivery_id     INTEGER REFERENCES webhook_deliveries_new (id),
        recorded_at     TEXT NOT NULL
                        CHECK (recorded_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        source          TEXT NOT NULL DEFAULT 'webhook'
                        CHECK (source = 'webhook' OR source = 'api' OR source = 'checkout'),
        fetch_id        INTEGER REFERENCES api_fetches (id),

        CHECK (from_status IS NULL OR from_status <> to_status),
        -- every event names its evidence: the webhook's delivery, the API's
        -- answer (and the delivery that made cashpayd ask, if any), or none
        -- for the charge cashpayd created (its charge_requests row has the id)
        CHECK ((source = 'webhook' AND delivery_id IS NOT NULL AND fetch_id IS NULL)
               OR (source = 'api' AND fetch_id IS NOT NULL)
               OR (source = 'checkout' AND delivery_id IS NULL AND fetch_id IS NULL
                   AND from_status IS NULL AND to_status = 'INITIATED'))
) STRICT;

INSERT INTO order_events_new (id, charge_id, from_status, to_status, delivery_id, recorded_at,
                              source, fetch_id)
SELECT id, charge_id, from_status, to_status, delivery_id, recorded_at, 'webhook', NULL
FROM order_events;

-- Carry the counters: the copies set them to max(id) at most.
DELETE FROM sqlite_sequence WHERE name = 'webhook_deliveries_new' OR name = 'order_events_new';
INSERT INTO sqlite_sequence (name, seq)
SELECT name || '_new', seq FROM sqlite_sequence
WHERE name = 'webhook_deliveries' OR name = 'order_events';

-- The child first, so that no table refers to the old deliveries when they go.
DROP TABLE order_events;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
ALTER TABLE order_events_new RENAME TO order_events;

CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
END;

CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
END;

CREATE TRIGGER webhook_deliveries_no_update BEFORE UPDATE ON webhook_deliveries
BEGIN
        SELECT RAISE(ABORT, 'webhook_deliveries rows are never updated');
END;

CREATE TRIGGER webhook_deliveries_keep_accepted BEFORE DELETE ON webhook_deliveries
WHEN OLD.http_status = 200
BEGIN
        SELECT RAISE(ABORT, 'only rejected webhook_deliveries may be deleted');
END;

CREATE INDEX order_events_charge_idx ON order_events (charge_id);
CREATE INDEX order_events_fetch_idx ON order_events (fetch_id) WHERE fetch_id IS NOT NULL;
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id)
WHERE message_id IS NOT NULL;
CREATE INDEX webhook_deliveries_charge_idx ON webhook_deliveries (charge_id)
WHERE charge_id IS NOT NULL;
-- Rejected and deferred rows alike: neither was acknowledged nor changed
-- anything, and `cashpayctl prune` removes both after keep_rejected_days.
CREATE INDEX webhook_deliveries_rejected_idx ON webhook_deliveries (received_at)
WHERE http_status >= 400;
