/*
 * store — durable state: deliveries, orders, order events.
 *
 * The only module that speaks SQL: SQLite in WAL mode, or PostgreSQL
 * (store_options.backend; src/store/pg-*.c), behind the same calls, so the
 * HTTP layer, the writer and the state machine never learn which. On
 * PostgreSQL there is no file: store_check_file() reports whether the
 * connection is up (from its socket; one found lost is replaced at once),
 * store_checkpoint() has nothing to do, store_wal_bytes()
 * is -1, and -ECONNRESET (connection lost; the store reconnects by itself
 * with backoff), -ECONNREFUSED and -ETIMEDOUT join the transient errors.
 * The API functions (store-api.h) and the admin listings, fulfil and
 * review-done (store-admin.h) exist on both; store_admin_user_version()
 * and the SQLite file's upkeep are SQLite's alone (cashpayctl refuses
 * migrate on PostgreSQL).
 *
 * A store handle is used by one thread at a time. The daemon keeps one for
 * its writer thread and separate read-only handles for lookups.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/charge.h"
#include "cashpay/config.h"
#include "cashpay/state.h"
#include "cashpay/timeutil.h"
#include "cashpay/util.h"

struct store;

struct store_options {
        enum db_backend backend;    /* DB_BACKEND_SQLITE: the file at @path;
                                     * DB_BACKEND_POSTGRESQL: the server at @url */
        const char *url;            /* postgresql: libpq connection string */
        const char *password_file;  /* postgresql: first line is the password; NULL: none */
        const char *path;
        enum db_synchronous synchronous;
        unsigned busy_timeout_ms;
        unsigned lock_timeout_ms;   /* postgresql: SET lock_timeout on every connection
                                     * (cashpayctl: its busy_timeout); 0: the server's */
        bool read_only;     /* lookups only; never migrates */
        bool migrate;       /* apply pending migrations on open (read_only = false) */
        int64_t wal_limit_bytes; /* writable: keep the WAL well below this size by
                                  * checkpointing at a quarter of it and cutting a
                                  * checkpointed WAL back to half (0: SQLite's
                                  * 1000-page cadence, 64 MiB) */
        unsigned max_rejected_rows; /* writable: keep about the newest this many rejected
                                     * deliveries, deleting older ones in store_submit()
                                     * (0: no cap, and no count is kept) */
};

/*
 * One received POST on its way to the database. The HTTP layer fills the
 * "request" half; store_submit() fills the "result" half.
 */
struct delivery {
        /* request */
        char received_at[TIME_ISO_LEN];
        char remote_addr[64];
        char *message_id;            /* owned; Standard Webhooks webhook-id, or NULL
                                      * ("" is taken as NULL) */
        bool has_charge;             /* verified and valid: run the state machine */
        struct charge charge;        /* valid when has_charge; id may be set when not */
        enum outcome rejected_as;    /* !has_charge: INVALID, UNAUTHORIZED or FORBIDDEN */
        int rejected_status;         /* !has_charge: 400, 401 or 403 */
        char *error;                 /* owned; detail for the error column, or NULL */
        uint8_t *body;               /* owned; raw bytes as received (truncated if rejected) */
        size_t body_len;

        /* result, valid after store_submit() returned 0 */
        int fault;                   /* 0 = recorded; else a negative errno and nothing
                                      * of this delivery was stored (see store_submit) */
        int64_t id;                  /* webhook_deliveries.id */
        enum outcome outcome;
        int http_status;             /* 200 for accepted, else rejected_status;
                                      * 500 when @fault < 0 */
        struct transition transition; /* has_charge only */
        bool had_order;               /* has_charge only: order existed before (false
                                       * for a repeated message id: never looked up) */
        enum charge_status previous;  /* has_charge && had_order */
        int64_t event_id;             /* order_events.id written, or 0 */
};

/* delivery_clear() - free the owned fields (and the charge); safe on zeroed. */
void delivery_clear(struct delivery *d);

/* delivery_reset_result() - the result half back to "not stored yet",
 * before each engine's (re)try of a batch. */
void delivery_reset_result(struct delivery *d);

/* delivery_message_id() - the webhook-id, or NULL: an empty header is no id
 * at all and must not match others. */
const char *delivery_message_id(const struct delivery *d);

/* An order as the return page and cashpayctl see it. */
struct order_record {
        char charge_id[CHARGE_ID_MAX + 1];
        char *order_ref;             /* owned, or NULL */
        enum charge_status status;
        int64_t amount;
        char currency[4];
        char *description;           /* owned, or NULL */
        char *transaction_url;       /* owned, or NULL */
        int64_t charge_created;
        char first_seen_at[TIME_ISO_LEN];
        char updated_at[TIME_ISO_LEN];
        char captured_at[TIME_ISO_LEN];  /* "" when NULL */
        char failed_at[TIME_ISO_LEN];    /* "" when NULL */
        char fulfilled_at[TIME_ISO_LEN]; /* "" when NULL */
        bool needs_review;
        char return_ref[72];             /* "" when NULL (orders not created by cashpayd) */
        char next_check_at[TIME_ISO_LEN]; /* "" when NULL */
};

void order_record_clear(struct order_record *o);

/*
 * store_new() - open (and, with @opts->migrate, create and migrate) the
 * database. A new database file is created with mode 0666 minus the process
 * umask (the daemon sets 007, giving 0660); SQLite gives its -wal and -shm
 * files the database file's mode. Migrations run one per transaction.
 * A read-only store never migrates, and neither does a writable one without
 * @opts->migrate: both refuse a schema that is not exactly the one this
 * binary knows; without @opts->migrate a missing file is not created.
 * @err: a sentence for the operator, e.g. "database schema version 7 is newer
 *   than this program (knows 1); refusing to open".
 * Returns 0, -EPROTO (schema newer, or older and not migrating), -ENOENT
 * (missing and not creating), -EACCES, -EBUSY, -EIO, -EINVAL (bad options),
 * -ENOTSUP (SQLite older than 3.37) or -ENOMEM.
 */
int store_new(const struct store_options *opts, struct store **ret, char *err, size_t err_len);

/* store_free() - NULL-safe; a writable store runs a TRUNCATE checkpoint first. */
void store_free(struct store *s);
DEFINE_FREEP(struct store, store_free)

/*
 * store_submit() - record @n deliveries in ONE transaction (BEGIN IMMEDIATE).
 * For each accepted delivery, the message-id duplicate check and the state
 * machine run against the state as of this transaction, in array order, so a
 * batch may hold several deliveries for the same charge.
 *
 * With @opts->max_rejected_rows set, every rejected delivery is still
 * inserted, and the same transaction deletes the oldest rejected rows (by
 * received_at, then id) beyond the newest max_rejected_rows once they are
 * more than max + slack (max/100, at most 1000, at least 1), so deletes
 * come in chunks and at most max + slack remain after each commit. The
 * count is kept in the handle: taken at store_new(), raised per rejected
 * row committed; which rows to delete is always decided afresh from the
 * database, so rows that another process deleted meanwhile are taken into
 * account. A database far over the cap (a cap just set or lowered) is
 * brought down by at most 10000 rows beyond the batch's own per commit.
 * Accepted deliveries are never deleted. A failing delete fails the batch
 * like any other SQL error.
 *
 * One bad delivery never blocks the others. When the database refuses a
 * delivery for a reason that retrying will not cure (a constraint, a value
 * too big, a nonsensical request), the batch is run again with a savepoint
 * around each delivery (savepoints cost throughput, so only then); the
 * refused delivery's savepoint is rolled back, its @fault is set (-EINVAL,
 * or -E2BIG for a value over SQLite's limits) and the rest commits. The
 * caller answers such a delivery with a 500: nothing of it was stored.
 *
 * Returns 0 when COMMIT succeeded: every delivery has @fault == 0 and its
 * results filled, or @fault < 0. Otherwise nothing is committed, every
 * result is invalid and the return is -EBUSY (locked past busy_timeout),
 * -ENOSPC, -EIO, -EROFS, -ENOMEM, or -ENOENT/-ESTALE (store_check_file())
 * — errors worth a 503 and a retry.
 */
int store_submit(struct store *s, struct delivery *const *items, size_t n);

/* store_get_order() - 0, -ENOENT, or a negative errno. */
int store_get_order(struct store *s, const char *charge_id, struct order_record *ret);

/*
 * store_health() - 0 when a trivial read succeeds and the database file is
 * still the one that was opened (not deleted or replaced under the running
 * process), else a negative errno (-ENOENT for a vanished file).
 */
int store_health(struct store *s);

/*
 * store_check_file() - 0 when the database file at the configured path is
 * still the one this handle opened and, for a writable handle, still
 * writable; -ENOENT (deleted), -ESTALE (replaced) or -EROFS (made
 * read-only). store_submit() runs it before every batch.
 */
int store_check_file(struct store *s);

/*
 * store_probe_write() - can a commit succeed now? Runs store_check_file(),
 * then a BEGIN IMMEDIATE transaction that writes one page (page 1, with
 * the values it already holds) and commits it with the configured sync.
 * 0, or a negative errno as for store_submit(). For clearing a failure
 * when no delivery comes to prove the database writable again.
 */
int store_probe_write(struct store *s);

/*
 * store_checkpoint() - PASSIVE (truncate = false) or TRUNCATE checkpoint of
 * the WAL. Neither waits: TRUNCATE returns -EBUSY at once (after
 * checkpointing what it could) while a reader or another writer needs the WAL.
 */
int store_checkpoint(struct store *s, bool truncate);

/*
 * store_prune_rejected() - delete rejected deliveries (outcome invalid,
 * unauthorized or forbidden) received before @cutoff_iso, oldest first, at
 * most @limit of them (0: all), in one BEGIN IMMEDIATE transaction of its
 * own; with @dry_run only count them (a read-only handle will do).
 * Accepted deliveries are never touched. @ret_count: rows deleted (or that
 * would be). Returns 0, -EROFS (deleting on a read-only handle) or an
 * errno as for store_submit() (-EBUSY: locked past busy_timeout).
 */
int store_prune_rejected(struct store *s, const char *cutoff_iso, unsigned limit, bool dry_run,
                         int64_t *ret_count);

/*
 * store_rejected_rows() - rejected deliveries in the database as this
 * handle counts them (see store_submit()): exact after store_new() and
 * after a commit that trimmed, otherwise an upper bound (another process
 * may have deleted some). -1 when the handle has no cap.
 */
int64_t store_rejected_rows(struct store *s);

/* store_wal_bytes() - current size of the -wal file, or -1 when unknown. */
int64_t store_wal_bytes(struct store *s);

/* store_schema_version() - the user_version this binary migrates to. */
int store_schema_version(void);

/* store_strerror() - a short text for the errnos above, for 503 logs. */
const char *store_strerror(int r);
