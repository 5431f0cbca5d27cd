/*
 * store — opening and closing the database, and the read side.
 *
 * One SQLite connection per handle, in WAL mode so the merchant's readers
 * never block the writer and the writer never blocks them. The connection
 * is opened with SQLITE_OPEN_NOMUTEX: a handle is used by one thread at a
 * time (the writer thread, or one lookup thread), and its cached statements
 * carry bindings between calls, so SQLite's per-call mutex could not make
 * sharing a handle safe anyway — it would only cost a lock per call on the
 * hot path. The write path itself lives in store-submit.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/store/pg-store.h"
#include "src/store/store-internal.h"

/* STRICT tables came with SQLite 3.37. */
#define STORE_SQLITE_MIN 3037000

/* Bounds the -wal file left after a checkpoint; big batches may grow it. */
#define STORE_JOURNAL_SIZE_LIMIT (INT64_C(64) << 20)
/* SQLite's own checkpoint cadence, in pages, and its default page size. */
#define STORE_AUTOCHECKPOINT_MAX 1000
#define STORE_PAGE_SIZE 4096

static const char *const synchronous_names[] = {
        [DB_SYNC_OFF] = "OFF",
        [DB_SYNC_NORMAL] = "NORMAL",
        [DB_SYNC_FULL] = "FULL",
        [DB_SYNC_EXTRA] = "EXTRA",
};

static int store_alloc(const struct store_options *opts, struct store **ret)
{
        struct store *s;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->path = strdup(opts->path);
        if (!s->path || asprintf(&s->wal_path, "%s-wal", opts->path) < 0) {
                s->wal_path = NULL;
                free(s->path);
                free(s);
                return -ENOMEM;
        }
        s->read_only = opts->read_only;
        s->busy_timeout_ms = opts->busy_timeout_ms;
        s->wal_limit_bytes = opts->wal_limit_bytes;
        s->max_rejected = opts->read_only ? 0 : (int64_t) opts->max_rejected_rows;
        s->rejected_rows = -1;
        *ret = s;
        return 0;
}

/* The handle and its connection, without the checkpoint store_free() runs. */
static void store_release(struct store *s)
{
        store_finalize_all(s);
        if (s->db && sqlite3_close(s->db) != SQLITE_OK)
                sqlite3_close_v2(s->db); /* statements left open elsewhere: close when done */
        free(s->wal_path);
        free(s->path);
        free(s);
}

/*
 * SQLite creates files with mode 0644 minus the umask, which would lock the
 * merchant's group out of the database. Creating the file ourselves with
 * 0666 lets the umask decide (0660 under the daemon's 007); SQLite then
 * gives -wal and -shm the database file's own mode.
 */
static int create_file(const char *path, char *err, size_t err_len)
{
        int fd;

        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0666);
        if (fd < 0) {
                int e = errno;

                return err_set(err, err_len, -e, "cannot create %s: %s", path, strerror(e));
        }
        close(fd);
        return 0;
}

static int open_errno(sqlite3 *db, int rc)
{
        int e = sqlite3_system_errno(db);

        if ((rc & 0xff) == SQLITE_CANTOPEN && (e == ENOENT || e == EACCES || e == EPERM))
                return e == ENOENT ? -ENOENT : -EACCES;
        return store_errno_from_sqlite(rc);
}

static int open_db(struct store *s, bool create, char *err, size_t err_len)
{
        int flags = SQLITE_OPEN_NOMUTEX, rc;

        flags |= s->read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
        if (create)
                flags |= SQLITE_OPEN_CREATE;
        rc = sqlite3_open_v2(s->path, &s->db, flags, NULL);
        if (rc != SQLITE_OK)
                return err_set(err, err_len, s->db ? open_errno(s->db, rc) : -ENOMEM,
                               "cannot open database %s: %s", s->path,
                               s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        /* SQLite quietly falls back to read-only when the file is not writable */
        if (!s->read_only && sqlite3_db_readonly(s->db, "main") == 1)
                return err_set(err, err_len, -EACCES, "database %s is not writable", s->path);
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, (int) (s->busy_timeout_ms > INT32_MAX ? INT32_MAX
                                                                          : s->busy_timeout_ms));
        return 0;
}

static int pragma(struct store *s, const char *sql, char *err, size_t err_len)
{
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

        if (rc != SQLITE_OK)
                return err_set(err, err_len, store_errno_from_sqlite(rc),
                               "%s on %s failed: %s", sql, s->path,
                               sqlite3_errmsg(s->db));
        return 0;
}

/* journal_mode answers with the mode it ended up in; anything but wal is an error. */
static int wal_fail(struct store *s, int r, char *err, size_t err_len)
{
        return err_set(err, err_len, r, "cannot put %s in WAL mode: %s", s->path,
                       sqlite3_errmsg(s->db));
}

static int enable_wal(struct store *s, char *err, size_t err_len)
{
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        const char *mode;
        int r, rc;

        r = store_prepare(s, "PRAGMA journal_mode = WAL", &st);
        if (r < 0)
                return wal_fail(s, r, err, err_len);
        rc = sqlite3_step(st);
        r = rc == SQLITE_ROW ? 0 : store_errno_from_sqlite(rc);
        if (r < 0)
                return wal_fail(s, r, err, err_len);
        mode = (const char *) sqlite3_column_text(st, 0);
        if (!mode || strcmp(mode, "wal") != 0)
                return err_set(err, err_len, -EIO,
                               "cannot put %s in WAL mode (it stays in %s mode)",
                               s->path, mode ? mode : "an unknown");
        return 0;
}

/*
 * Keep the WAL well below wal_limit_bytes (where the daemon warns): SQLite
 * checkpoints after a commit once the WAL holds a quarter of it, and cuts a
 * checkpointed WAL back to half of it. A reader holding a snapshot can still
 * make it grow: that is what the warning is for.
 */
static int bound_wal(struct store *s, char *err, size_t err_len)
{
        int64_t limit = s->wal_limit_bytes, keep = STORE_JOURNAL_SIZE_LIMIT;
        int64_t pages = STORE_AUTOCHECKPOINT_MAX;
        char sql[64];

        if (limit > 0 && limit / 2 < keep)
                keep = limit / 2;
        if (limit > 0 && limit / 4 / STORE_PAGE_SIZE < pages)
                pages = limit / 4 / STORE_PAGE_SIZE > 0 ? limit / 4 / STORE_PAGE_SIZE : 1;
        snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %lld", (long long) keep);
        int r = pragma(s, sql, err, err_len);
        if (r >= 0)
                r = store_errno_from_sqlite(sqlite3_wal_autocheckpoint(s->db, (int) pages));
        return r;
}

static int configure(struct store *s, enum db_synchronous sync, char *err, size_t err_len)
{
        char sql[64];
        int r;

        if (s->read_only)
                return 0;
        if ((unsigned) sync >= sizeof(synchronous_names) / sizeof(synchronous_names[0]))
                return err_set(err, err_len, -EINVAL, "unknown synchronous setting %d", (int) sync);
        r = enable_wal(s, err, err_len);
        if (r < 0)
                return r;
        snprintf(sql, sizeof(sql), "PRAGMA synchronous = %s", synchronous_names[sync]);
        r = pragma(s, sql, err, err_len);
        if (r >= 0)
                r = pragma(s, "PRAGMA foreign_keys = ON", err, err_len);
        if (r >= 0)
                r = bound_wal(s, err, err_len);
        /* the per-delivery savepoints journal a few pages each: keep them in memory */
        if (r >= 0)
                r = pragma(s, "PRAGMA temp_store = MEMORY", err, err_len);
        return r;
}

static int remember_identity(struct store *s, char *err, size_t err_len)
{
        struct stat st;

        if (stat(s->path, &st) < 0) {
                int e = errno;

                return err_set(err, err_len, -e, "cannot stat %s: %s", s->path, strerror(e));
        }
        s->dev = st.st_dev;
        s->ino = st.st_ino;
        return 0;
}

/* With a cap, the writer keeps the number of rejected rows (store_submit()). */
static int count_rejected(struct store *s, char *err, size_t err_len)
{
        int r;

        if (s->max_rejected == 0)
                return 0;
        r = store_rejected_recount(s);
        if (r < 0)
                return err_set(err, err_len, r, "cannot count the rejected deliveries in %s: %s",
                               s->path, sqlite3_errmsg(s->db));
        return 0;
}

static int open_and_migrate(struct store *s, const struct store_options *opts,
                            char *err, size_t err_len)
{
        bool create = !opts->read_only && opts->migrate;
        int r;

        if (create) {
                r = create_file(s->path, err, err_len);
                if (r < 0)
                        return r;
        }
        r = open_db(s, create, err, err_len);
        if (r >= 0)
                r = configure(s, opts->synchronous, err, err_len);
        if (r >= 0)
                r = store_migrate(s, create, err, err_len);
        if (r >= 0)
                r = remember_identity(s, err, err_len);
        if (r >= 0)
                r = count_rejected(s, err, err_len);
        return r;
}

/*
 * SQLite counts every allocation under a global mutex only to serve
 * sqlite3_memory_used(), which nothing here reads; the writer allocates on
 * every statement. Must run before SQLite initialises; later it is refused
 * (SQLITE_MISUSE), which changes nothing.
 */
static void tune_sqlite_once(void)
{
        (void) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* A handle whose every call goes to pg-store.c. */
static int store_new_pg(const struct store_options *opts, struct store **ret, char *err,
                        size_t err_len)
{
        struct store *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->read_only = opts->read_only;
        s->rejected_rows = -1;
        r = pg_store_new(opts, &s->pg, err, err_len);
        if (r < 0) {
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int store_new(const struct store_options *opts, struct store **ret, char *err, size_t err_len)
{
        if (opts->backend == DB_BACKEND_POSTGRESQL)
                return store_new_pg(opts, ret, err, err_len);
        static pthread_once_t tuned = PTHREAD_ONCE_INIT;
        struct store *s;
        int r;

        pthread_once(&tuned, tune_sqlite_once);

        if (err_len > 0)
                err[0] = '\0';
        if (!opts || !opts->path || !opts->path[0] || !ret)
                return err_set(err, err_len, -EINVAL, "no database path given");
        if (sqlite3_libversion_number() < STORE_SQLITE_MIN)
                return err_set(err, err_len, -ENOTSUP,
                               "SQLite %s is too old: 3.37 or newer is needed",
                               sqlite3_libversion());
        r = store_alloc(opts, &s);
        if (r < 0)
                return err_set(err, err_len, r, "out of memory");
        r = open_and_migrate(s, opts, err, err_len);
        if (r < 0) {
                store_release(s);
                return r;
        }
        *ret = s;
        return 0;
}

void store_free(struct store *s)
{
        if (s && s->pg) {
                pg_store_free(s->pg);
                free(s);
                return;
        }
        if (!s)
                return;
        store_finalize_all(s);
        /* leave no WAL behind for the next start or the merchant's readers;
         * failing (a reader holds a snapshot) is harmless */
        if (s->db && !s->read_only)
                (void) sqlite3_wal_checkpoint_v2(s->db, "main", SQLITE_CHECKPOINT_TRUNCATE,
                                                 NULL, NULL);
        store_release(s);
}

int store_get_order(struct store *s, const char *charge_id, struct order_record *ret)
{
        if (s->pg)
                return pg_store_get_order(s->pg, charge_id, ret);
        sqlite3_stmt *st;
        int r, rc;

        memset(ret, 0, sizeof(*ret));
        r = store_stmt(s, STMT_ORDER_GET, &st);
        if (r < 0)
                return r;
        rc = sqlite3_bind_text(st, 1, charge_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                r = store_order_from_row(st, ret);
        else
                r = rc == SQLITE_DONE ? -ENOENT : store_errno_from_sqlite(rc);
        store_reset(st);
        if (r < 0)
                order_record_clear(ret);
        return r;
}

int store_check_file(struct store *s)
{
        if (s->pg)
                return pg_store_check_connection(s->pg); /* no file: the connection */
        struct stat st;

        /* a database deleted or replaced under a running daemon would take
         * every acknowledged webhook with it when the process ends */
        if (stat(s->path, &st) < 0)
                return -errno;
        if (st.st_dev != s->dev || st.st_ino != s->ino)
                return -ESTALE;
        /* the open descriptor could still write, but the next start could not */
        if (!s->read_only && faccessat(AT_FDCWD, s->path, W_OK, AT_EACCESS) < 0)
                return errno == ENOENT ? -ENOENT : -EROFS;
        return 0;
}

int store_probe_write(struct store *s)
{
        if (s->pg)
                return pg_store_probe_write(s->pg);
        char sql[48];
        int version, r;

        if (s->read_only)
                return -EROFS;
        r = store_check_file(s);
        if (r < 0)
                return r;
        r = store_begin_immediate(s);
        if (r < 0)
                return r;
        /* user_version rewritten with its own value: SQLite still dirties
         * page 1, so this is a real page write and sync, and no query sees
         * a difference */
        r = store_user_version(s, &version);
        if (r >= 0) {
                snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
                r = store_exec(s, sql);
        }
        if (r >= 0)
                return store_commit(s); /* rolls back itself when it fails */
        store_rollback(s);
        return r;
}

int store_health(struct store *s)
{
        if (s->pg)
                return pg_store_health(s->pg);
        sqlite3_stmt *q;
        int r, rc;

        r = store_check_file(s);
        if (r < 0)
                return r;
        r = store_stmt(s, STMT_HEALTH, &q);
        if (r < 0)
                return r;
        rc = sqlite3_step(q);
        store_reset(q);
        return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_errno_from_sqlite(rc);
}

int store_checkpoint(struct store *s, bool truncate)
{
        if (s->pg)
                return 0; /* the server checkpoints on its own */
        int rc;

        if (s->read_only)
                return -EROFS;
        /* TRUNCATE waits for readers through the busy handler; the writer
         * must not sit there while webhooks queue up, so it gives up at once
         * (having checkpointed what it could) and tries again later */
        if (truncate)
                sqlite3_busy_timeout(s->db, 0);
        rc = sqlite3_wal_checkpoint_v2(s->db, "main",
                                       truncate ? SQLITE_CHECKPOINT_TRUNCATE
                                                : SQLITE_CHECKPOINT_PASSIVE,
                                       NULL, NULL);
        if (truncate)
                sqlite3_busy_timeout(s->db, (int) (s->busy_timeout_ms > INT32_MAX ? INT32_MAX
                                                                                  : s->busy_timeout_ms));
        return store_errno_from_sqlite(rc);
}

int64_t store_wal_bytes(struct store *s)
{
        if (s->pg)
                return -1; /* the server's WAL is not ours to watch */
        struct stat st;

        if (stat(s->wal_path, &st) < 0)
                return errno == ENOENT ? 0 : -1;
        return (int64_t) st.st_size;
}

const char *store_strerror(int r)
{
        switch (r) {
        case -ECONNRESET:
                return "database connection lost";
        case -ECONNREFUSED:
                return "cannot connect to the database";
        case -ETIMEDOUT:
                return "database statement timed out";
        case -EOPNOTSUPP:
                return "not supported by this database backend";
        case 0:
                return "ok";
        case -EBUSY:
                return "database is locked";
        case -ENOSPC:
                return "disk full";
        case -EIO:
                return "database I/O error";
        case -EROFS:
                return "database is read-only";
        case -ENOMEM:
                return "out of memory";
        case -EPROTO:
                return "database schema version mismatch";
        case -ENOENT:
                return "database file not found";
        case -ESTALE:
                return "database file was replaced";
        case -EACCES:
                return "permission denied";
        case -EINVAL:
                return "refused by a database constraint";
        case -E2BIG:
                return "value too big for the database";
        default:
                return r < 0 ? strerror(-r) : "unknown error";
        }
}

void delivery_clear(struct delivery *d)
{
        if (!d)
                return;
        free(d->message_id);
        free(d->error);
        free(d->body);
        charge_clear(&d->charge);
        memset(d, 0, sizeof(*d));
}

void delivery_reset_result(struct delivery *d)
{
        d->fault = 0;
        d->id = 0;
        d->outcome = OUTCOME_APPLIED;
        d->http_status = 0;
        d->transition = (struct transition) { 0 };
        d->had_order = false;
        d->previous = CHARGE_INITIATED;
        d->event_id = 0;
}

const char *delivery_message_id(const struct delivery *d)
{
        return d->message_id && d->message_id[0] ? d->message_id : NULL;
}

void order_record_clear(struct order_record *o)
{
        if (!o)
                return;
        free(o->order_ref);
        free(o->description);
        free(o->transaction_url);
        memset(o, 0, sizeof(*o));
}
