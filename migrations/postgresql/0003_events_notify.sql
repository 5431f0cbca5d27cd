-- 0003_events_notify - the change feed announces itself: every statement
-- that inserts into order_events sends NOTIFY cashpayd_events, delivered to
-- the listeners when (and only if) its transaction commits. cashpayctl
-- events --follow LISTENs on that channel and reads "id > last" when woken,
-- instead of asking the database over and over.
--
-- A trigger rather than a NOTIFY from each writer: it covers every path
-- that records an event (a webhook batch, the API's fetches, charge
-- creation, whatever writes order_events later) without one of them being
-- able to forget it, and it costs no extra round trip. Once per statement,
-- not per row, with an empty payload: PostgreSQL folds identical
-- notifications of one transaction into one, so a batch sends one NOTIFY
-- however many events it holds. The payload says nothing on purpose: the
-- listener reads the rows themselves, so it can neither miss one nor see
-- one twice.
--
-- Run by the store inside one transaction that also records version 3.

CREATE FUNCTION cashpayd_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
        -- A listener that stops reading (a paused pager) holds the server's
        -- notification queue; once it is full, the COMMIT of every
        -- transaction that notified fails, and with it webhook intake.
        -- Past half full (when the server starts warning in its log) the
        -- events are written without a notification: followers still read
        -- them on their 5 s fallback.
        IF pg_notification_queue_usage() < 0.5 THEN
                PERFORM pg_notify('cashpayd_events', '');
        END IF;
        RETURN NULL;
END
$$;

CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
        FOR EACH STATEMENT EXECUTE FUNCTION cashpayd_events_notify();
