/*
 * store-rejected — the bounds on rejected deliveries.
 *
 * A rejected delivery (invalid, unauthorized, forbidden) is evidence worth
 * keeping, but anyone who can reach the port can make one, a few KiB each.
 * Two bounds keep them from growing the database without end: a number
 * (max_rejected_rows: store_submit() deletes the oldest beyond it inside
 * the transaction that adds new ones) and an age (keep_rejected_days:
 * store_prune_rejected(), run hourly by the daemon and by cashpayctl prune).
 *
 * Every query here walks webhook_deliveries_rejected_idx, the partial index
 * on received_at, so each costs in proportion to the rows it visits (about
 * max_rejected_rows plus those it deletes), never to the size of the table.
 * Their WHERE clauses repeat the index's word for word, which is what lets
 * SQLite's planner use a partial index.
 */
#include <errno.h>
#include <string.h>

#include "src/store/pg-store.h"
#include "src/store/store-internal.h"

/* Beyond the deliveries a batch adds itself, a trim deletes at most this
 * many rows, so that a database holding far more rejected rows than the cap
 * (the cap was just set or lowered) is brought down over several batches
 * instead of one transaction long enough to trip the watchdog. */
#define TRIM_BACKLOG_MAX 10000

/* Rows the cap may be exceeded by before a trim: deletes come in chunks. */
static int64_t trim_slack(int64_t max)
{
        int64_t slack = max / 100;

        if (slack > 1000)
                slack = 1000;
        return slack > 0 ? slack : 1;
}

/* Steps @st, which must return one row, into *@ret (column 0). */
static int step_int64(sqlite3_stmt *st, int64_t *ret)
{
        int rc = sqlite3_step(st);

        if (rc == SQLITE_ROW)
                *ret = sqlite3_column_int64(st, 0);
        store_reset(st);
        if (rc == SQLITE_ROW)
                return 0;
        return rc == SQLITE_DONE ? -EIO : store_errno_from_sqlite(rc);
}

int store_rejected_recount(struct store *s)
{
        sqlite3_stmt *st;
        int64_t n = 0;
        int r;

        r = store_stmt(s, STMT_REJECTED_COUNT, &st);
        if (r >= 0)
                r = step_int64(st, &n);
        if (r >= 0)
                s->rejected_rows = n;
        return r;
}

/*
 * The newest row that must go: the (max + 1)-th newest rejected one, by
 * received_at and then id. Returns 1 with its received_at in @at and its id
 * in *@ret_id, 0 when there are no more than max rows, or a negative errno.
 */
static int trim_boundary(struct store *s, char at[TIME_ISO_LEN], int64_t *ret_id)
{
        sqlite3_stmt *st;
        int r, rc;

        r = store_stmt(s, STMT_REJECTED_BOUNDARY, &st);
        if (r < 0)
                return r;
        rc = sqlite3_bind_int64(st, 1, s->max_rejected);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                store_column_text_copy(st, 0, at, TIME_ISO_LEN);
                *ret_id = sqlite3_column_int64(st, 1);
        }
        store_reset(st);
        if (rc == SQLITE_ROW)
                return 1;
        return rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
}

/* Deletes up to @limit rejected rows at or before the boundary, oldest first. */
static int trim_delete(struct store *s, const char *at, int64_t id, int64_t limit,
                       int64_t *ret_deleted)
{
        sqlite3_stmt *st;
        int r, rc;

        r = store_stmt(s, STMT_REJECTED_TRIM, &st);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(st, 1, at, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, id);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, limit);
        if (rc != SQLITE_OK) {
                store_reset(st);
                return store_errno_from_sqlite(rc);
        }
        r = store_stmt_done(st);
        if (r >= 0)
                *ret_deleted = sqlite3_changes(s->db);
        return r;
}

/*
 * The cached count may be high: cashpayctl prune or the merchant may have
 * deleted rows since. So the rows to delete are found afresh from the index
 * (everything older than the newest max), never taken from the count.
 */
static int trim(struct store *s, int64_t added)
{
        char at[TIME_ISO_LEN];
        int64_t id = 0, deleted = 0, limit = added + TRIM_BACKLOG_MAX;
        int r;

        r = trim_boundary(s, at, &id);
        if (r == 0) /* no more than max after all: count them exactly */
                return store_rejected_recount(s);
        if (r > 0)
                r = trim_delete(s, at, id, limit, &deleted);
        if (r < 0)
                return r;
        /* all below the boundary gone: exactly max are left; else an
         * upper bound that stays over the threshold until the next trim */
        s->rejected_rows = deleted < limit ? s->max_rejected : s->rejected_rows - deleted;
        return 0;
}

int store_rejected_trim(struct store *s, int64_t added)
{
        int r;

        if (s->max_rejected <= 0 ||
            s->rejected_rows <= s->max_rejected + trim_slack(s->max_rejected))
                return 0;
        r = trim(s, added);
        /* The schema refusing this delete is no fault of the batch's
         * deliveries: it must not be retried as one (see store_submit()). */
        return r == -EINVAL || r == -E2BIG ? -EIO : r;
}

/* The cached prune statement @id with its cutoff and limit bound. */
static int prune_statement(struct store *s, enum store_stmt id, const char *cutoff_iso,
                           unsigned limit, sqlite3_stmt **ret)
{
        int r, rc;

        r = store_stmt(s, id, ret);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(*ret, 1, cutoff_iso, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(*ret, 2, limit ? (sqlite3_int64) limit : -1);
        if (rc != SQLITE_OK) {
                store_reset(*ret);
                return store_errno_from_sqlite(rc);
        }
        return 0;
}

static int prune_count(struct store *s, const char *cutoff_iso, unsigned limit, int64_t *ret)
{
        sqlite3_stmt *st;
        int r = prune_statement(s, STMT_REJECTED_PRUNE_COUNT, cutoff_iso, limit, &st);

        return r < 0 ? r : step_int64(st, ret);
}

static int prune_delete(struct store *s, const char *cutoff_iso, unsigned limit, int64_t *ret)
{
        sqlite3_stmt *st;
        int r = prune_statement(s, STMT_REJECTED_PRUNE, cutoff_iso, limit, &st);

        if (r < 0)
                return r;
        r = store_stmt_done(st);
        if (r >= 0)
                *ret = sqlite3_changes(s->db);
        return r;
}

int store_prune_rejected(struct store *s, const char *cutoff_iso, unsigned limit, bool dry_run,
                         int64_t *ret_count)
{
        if (s->pg)
                return pg_store_prune_rejected(s->pg, cutoff_iso, limit, dry_run, ret_count);
        int64_t n = 0;
        int r;

        *ret_count = 0;
        if (!dry_run && s->read_only)
                return -EROFS;
        r = dry_run ? store_begin_read(s) : store_begin_immediate(s);
        if (r < 0)
                return r;
        r = dry_run ? prune_count(s, cutoff_iso, limit, &n)
                    : prune_delete(s, cutoff_iso, limit, &n);
        if (r < 0 || dry_run) {
                store_rollback(s);
                *ret_count = r < 0 ? 0 : n;
                return r;
        }
        r = store_commit(s);
        if (r < 0)
                return r;
        *ret_count = n;
        if (s->rejected_rows >= 0)
                s->rejected_rows = s->rejected_rows > n ? s->rejected_rows - n : 0;
        return 0;
}

int64_t store_rejected_rows(struct store *s)
{
        if (s->pg)
                return pg_store_rejected_rows(s->pg);
        return s->rejected_rows;
}
