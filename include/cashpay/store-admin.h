/*
 * store-admin — the operator's queries over the store, used by cashpayctl:
 * listings, one order with its history, the order_events change feed, and
 * the few writes an operator makes (fulfil, review-done). Pruning rejected
 * deliveries is store_prune_rejected() in store.h: the daemon runs it too.
 *
 * Part of the store module (it shares struct store and speaks SQL); kept
 * apart from store.h because the daemon never needs it. Every function takes
 * a handle from store_new(); the read-only ones work on a read-only handle.
 * Errors are negative errnos as in store.h (-EBUSY: locked past
 * busy_timeout); positive STORE_ADMIN_* codes are expected outcomes.
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/charge.h"
#include "cashpay/state.h"
#include "cashpay/store.h"
#include "cashpay/timeutil.h"

/* Which orders store_admin_list_orders() returns. */
struct order_filter {
        bool has_status;
        enum charge_status status;
        bool unfulfilled;  /* CAPTURED and fulfilled_at IS NULL */
        bool review;       /* needs_review = 1 */
        unsigned limit;    /* 0 = no limit */
};

struct order_list {
        struct order_record *items;
        size_t n;
};

/* One order_events row, with the order's reference and amount joined in so
 * that a fulfilment script needs no second query. */
struct event_record {
        int64_t id;
        char charge_id[CHARGE_ID_MAX + 1];
        bool has_from;                /* false: first sighting (from_status NULL) */
        enum charge_status from_status;
        enum charge_status to_status;
        int64_t delivery_id;          /* 0 when NULL */
        char recorded_at[TIME_ISO_LEN];
        char source[12];              /* "webhook", "api" or "checkout" */
        int64_t fetch_id;             /* api_fetches.id of an "api" event, else 0 */
        char *order_ref;              /* owned, or NULL */
        int64_t amount;
        char currency[4];
};

struct event_list {
        struct event_record *items;
        size_t n;
};

/* One webhook_deliveries row. The body is loaded only by
 * store_admin_list_deliveries_for(); listings give its length alone. */
struct delivery_record {
        int64_t id;
        char received_at[TIME_ISO_LEN];
        char remote_addr[64];
        char *message_id;             /* owned, or NULL */
        char charge_id[CHARGE_ID_MAX + 1]; /* "" when NULL */
        char claimed_status[16];      /* "" when NULL; as received, may be invalid */
        enum outcome outcome;
        int http_status;
        char *error;                  /* owned, or NULL */
        size_t body_len;
        uint8_t *body;                /* owned, or NULL when not loaded */
};

struct delivery_list {
        struct delivery_record *items;
        size_t n;
};

/* Which deliveries store_admin_list_deliveries() returns, newest first. */
struct delivery_filter {
        bool has_outcome;
        enum outcome outcome;
        unsigned limit;    /* 0 = no limit */
};

/* Expected outcomes of the writes below. */
enum {
        STORE_ADMIN_DONE = 0,
        STORE_ADMIN_UNKNOWN = 1,       /* no order with this charge id */
        STORE_ADMIN_NOT_CAPTURED = 2,  /* fulfil: status is not CAPTURED */
        STORE_ADMIN_REVIEW = 3,        /* fulfil: needs_review is set */
        STORE_ADMIN_ALREADY = 4,       /* fulfil: fulfilled before; review-done: not under review */
};

void order_list_clear(struct order_list *l);
void event_list_clear(struct event_list *l);
void delivery_list_clear(struct delivery_list *l);

/* store_admin_list_orders() - orders matching @f, most recently updated first. */
int store_admin_list_orders(struct store *s, const struct order_filter *f, struct order_list *ret);

/* store_admin_list_deliveries() - deliveries matching @f, highest id first, without bodies. */
int store_admin_list_deliveries(struct store *s, const struct delivery_filter *f,
                                struct delivery_list *ret);

/* store_admin_list_deliveries_for() - every delivery naming @charge_id, oldest first, with bodies. */
int store_admin_list_deliveries_for(struct store *s, const char *charge_id, struct delivery_list *ret);

/*
 * store_admin_list_events() - order_events rows with id > @after_id, oldest
 * first, at most @limit (0 = no limit). @charge_id, when not NULL, restricts
 * them to one order. Each call is one read transaction, so a follower that
 * remembers the last id it printed sees every committed row exactly once.
 */
int store_admin_list_events(struct store *s, int64_t after_id, const char *charge_id,
                            unsigned limit, struct event_list *ret);

/*
 * store_admin_listen_events() - ask to be told when order_events rows are
 * committed, for store_admin_wait_events(). Call it before the first
 * store_admin_list_events() of a follower: what was committed before is
 * in that read, what comes after wakes the wait. On PostgreSQL the handle
 * LISTENs on every connection it makes from now on, before anything else.
 * Returns 0, or -EOPNOTSUPP (SQLite, which has nothing to listen on: poll).
 */
int store_admin_listen_events(struct store *s);

/*
 * store_admin_wait_events() - wait at most @timeout_ms until order_events
 * rows may have been committed since the last store_admin_list_events(),
 * then the caller reads "id > last" again. The wake-up carries no rows and
 * may come with none new; the caller reads after a timeout too, which
 * covers a notification lost with its connection. @sigmask is in place
 * meanwhile, as for ppoll(): a caller that blocks the signals that end its
 * loop, checks its flag, then waits, misses none.
 * A connection found dead is dropped, and 0 returned once the store's
 * backoff allows the next read to connect again (and LISTEN before it).
 * Returns 1 (notified), 0 (time up, or read again after a lost
 * connection), -EINTR (a signal), -EOPNOTSUPP (nothing to wait on: SQLite,
 * no store_admin_listen_events(), or a server that refused LISTEN, such as
 * a standby: poll instead).
 */
int store_admin_wait_events(struct store *s, int timeout_ms, const sigset_t *sigmask);

/*
 * store_admin_fulfil() - set fulfilled_at = @now_iso for a CAPTURED order that
 * is not under review and not yet fulfilled: one conditional UPDATE inside
 * BEGIN IMMEDIATE, so concurrent fulfils and the daemon cannot interleave.
 * When nothing was updated the same transaction looks at the row to say why.
 * @ret: the order as it is after the call (left cleared for UNKNOWN).
 * Returns STORE_ADMIN_DONE, _UNKNOWN, _NOT_CAPTURED, _REVIEW, _ALREADY or a
 * negative errno.
 */
int store_admin_fulfil(struct store *s, const char *charge_id, const char *now_iso,
                       struct order_record *ret);

/*
 * store_admin_review_done() - clear needs_review.
 * Returns STORE_ADMIN_DONE, _UNKNOWN, _ALREADY (was not under review) or a
 * negative errno.
 */
int store_admin_review_done(struct store *s, const char *charge_id);

/* store_admin_user_version() - the schema version the database is at. */
int store_admin_user_version(struct store *s, int *ret);
