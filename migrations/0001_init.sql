-- 0001_init - the first schema of cashpayd.
--
-- Three tables: one row per charge (orders), its append-only history
-- (order_events) and one row per received POST (webhook_deliveries).
-- Tables are STRICT so a value of the wrong type is an error, not a silent
-- conversion. CHECK constraints repeat the rules the daemon already enforces,
-- so that the merchant's own SQL cannot store what the daemon never would.
-- Value lists are spelled as OR chains, never IN (...): SQLite builds and
-- drops a temporary b-tree for every IN list a CHECK evaluates, which once
-- tripled the instructions the writer spent per webhook.
--
-- Every time is UTC ISO-8601 text with milliseconds, e.g.
-- 2026-11-25T20:31:38.123Z - in SQL: strftime('%Y-%m-%dT%H:%M:%fZ', 'now').
-- The fixed format keeps text order equal to time order.
--
-- Run by the store inside one transaction that also sets user_version = 1.

CREATE TABLE orders (
        charge_id       TEXT NOT NULL PRIMARY KEY
                        CHECK (charge_id GLOB 'chg_?*'
                               AND substr(charge_id, 5) NOT GLOB '*[^A-Za-z0-9_-]*'
                               AND length(charge_id) <= 132),
        order_ref       TEXT,
        status          TEXT NOT NULL
                        CHECK (status = 'INITIATED' OR status = 'CAPTURED' OR status = 'FAILED'),
        amount          INTEGER NOT NULL
                        CHECK (amount BETWEEN 0 AND 9007199254740991),
        currency        TEXT NOT NULL
                        CHECK (length(currency) = 3 AND currency GLOB '[A-Z][A-Z][A-Z]'),
        description     TEXT,
        transaction_url TEXT,
        charge_created  INTEGER CHECK (charge_created >= 0),
        first_seen_at   TEXT NOT NULL
                        CHECK (first_seen_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        updated_at      TEXT NOT NULL
                        CHECK (updated_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        captured_at     TEXT
                        CHECK (captured_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        failed_at       TEXT
                        CHECK (failed_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        fulfilled_at    TEXT
                        CHECK (fulfilled_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        needs_review    INTEGER NOT NULL DEFAULT 0 CHECK (needs_review = 0 OR needs_review = 1),

        -- A status is only ever reached with its time recorded.
        CHECK (status <> 'CAPTURED' OR captured_at IS NOT NULL),
        CHECK (status <> 'FAILED' OR failed_at IS NOT NULL),
        -- Only a paid order can be fulfilled. CAPTURED is final in the
        -- state machine, so a fulfilled order can never lose its status.
        CHECK (fulfilled_at IS NULL OR status = 'CAPTURED')
) STRICT;

-- One row per POST that passed the size and content-type checks, accepted
-- or not. AUTOINCREMENT: ids appear in logs (DELIVERY_ID=) and must never
-- be reused after `cashpayctl prune` removes old rejected rows.
CREATE TABLE webhook_deliveries (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at     TEXT NOT NULL
                        CHECK (received_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),
        remote_addr     TEXT NOT NULL,
        message_id      TEXT,
        charge_id       TEXT,   -- as claimed; no foreign key: rejected rows name unknown charges
        claimed_status  TEXT CHECK (claimed_status = 'INITIATED' OR claimed_status = 'CAPTURED' OR claimed_status = 'FAILED'),
        outcome         TEXT NOT NULL,  -- one of seven: see the CHECK below
        http_status     INTEGER NOT NULL CHECK (http_status BETWEEN 100 AND 599),
        error           TEXT,
        body            BLOB,

        -- The outcomes, and the answer each got: accepted ones 200, rejected
        -- ones their 4xx. So "http_status = 200" means accepted and
        -- "http_status >= 400" rejected, which the queries below rely on.
        CHECK ((outcome = 'invalid' AND http_status = 400)
               OR (outcome = 'unauthorized' AND http_status = 401)
               OR (outcome = 'forbidden' AND http_status = 403)
               OR ((outcome = 'applied' OR outcome = 'duplicate'
                    OR outcome = 'stale' OR outcome = 'conflict')
                   AND http_status = 200)),
        -- The state machine only runs on a verified charge.
        CHECK (http_status <> 200 OR (charge_id IS NOT NULL AND claimed_status IS NOT NULL))
) STRICT;

-- The history of every status change: the change feed for fulfilment code
-- (SELECT ... FROM order_events WHERE id > :cursor ORDER BY id). Ids only
-- grow: a single writer commits them in order and rows are never deleted.
CREATE TABLE order_events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_id       TEXT NOT NULL REFERENCES orders (charge_id),
        from_status     TEXT CHECK (from_status = 'INITIATED' OR from_status = 'CAPTURED' OR from_status = 'FAILED'),
        to_status       TEXT NOT NULL CHECK (to_status = 'INITIATED' OR to_status = 'CAPTURED' OR to_status = 'FAILED'),
        delivery_id     INTEGER NOT NULL REFERENCES webhook_deliveries (id),
        recorded_at     TEXT NOT NULL
                        CHECK (recorded_at GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'),

        CHECK (from_status IS NULL OR from_status <> to_status)
) STRICT;

CREATE TRIGGER order_events_no_update BEFORE UPDATE ON order_events
BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
END;

CREATE TRIGGER order_events_no_delete BEFORE DELETE ON order_events
BEGIN
        SELECT RAISE(ABORT, 'order_events is append-only');
END;

-- Deliveries are evidence: never edited. Only rejected ones may be removed
-- (`cashpayctl prune`); an accepted one may be what an order event points at.
CREATE TRIGGER webhook_deliveries_no_update BEFORE UPDATE ON webhook_deliveries
BEGIN
        SELECT RAISE(ABORT, 'webhook_deliveries rows are never updated');
END;

CREATE TRIGGER webhook_deliveries_keep_accepted BEFORE DELETE ON webhook_deliveries
WHEN OLD.http_status = 200
BEGIN
        SELECT RAISE(ABORT, 'only rejected webhook_deliveries may be deleted');
END;

-- What fulfilment code polls: paid, not yet fulfilled, not held for review.
CREATE VIEW orders_to_fulfil AS
SELECT charge_id, order_ref, status, amount, currency, description,
       transaction_url, charge_created, first_seen_at, updated_at,
       captured_at, failed_at, fulfilled_at, needs_review
FROM orders
WHERE status = 'CAPTURED' AND fulfilled_at IS NULL AND needs_review = 0;

-- Serves the view (its WHERE is the index's, so the planner can use it) and
-- "oldest paid first" ordering; it shrinks as orders get fulfilled.
CREATE INDEX orders_to_fulfil_idx ON orders (captured_at)
WHERE status = 'CAPTURED' AND fulfilled_at IS NULL AND needs_review = 0;

-- cashpayctl orders [--status S], newest first. No index leads with
-- status: with only three values it would win the planner's choice over
-- orders_to_fulfil_idx for the view while helping little.
CREATE INDEX orders_updated_idx ON orders (updated_at);
-- cashpayctl orders --review: a handful of rows.
CREATE INDEX orders_review_idx ON orders (updated_at) WHERE needs_review = 1;
-- The merchant finds its own order by its reference (several charges may
-- carry the same one: a failed payment retried).
CREATE INDEX orders_order_ref_idx ON orders (order_ref) WHERE order_ref IS NOT NULL;

CREATE INDEX order_events_charge_idx ON order_events (charge_id);

-- The webhook-id duplicate check on every accepted delivery.
CREATE INDEX webhook_deliveries_message_idx ON webhook_deliveries (message_id)
WHERE message_id IS NOT NULL;
-- cashpayctl show CHARGE_ID.
CREATE INDEX webhook_deliveries_charge_idx ON webhook_deliveries (charge_id)
WHERE charge_id IS NOT NULL;
-- cashpayctl prune: rejected rows older than keep_rejected_days.
CREATE INDEX webhook_deliveries_rejected_idx ON webhook_deliveries (received_at)
WHERE http_status >= 400;
