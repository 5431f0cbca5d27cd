/*
 * Unit tests for admin_health(), what /healthz answers and a load balancer
 * trusts, over a real database in a temporary directory, its reader pool
 * and a running writer: healthy; a write-ahead log past wal_warn_bytes; a
 * writer stuck inside a commit (held in its callback past what a busy
 * database explains); a last commit that failed (another connection holds
 * the write lock), and healthy again once the writer's probe commits.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cashpay/config.h"
#include "cashpay/store.h"
#include "cashpay/timeutil.h"
#include "src/daemon/admin.h"
#include "src/daemon/runtime.h"
#include "src/daemon/writer.h"
#include "tests/check.h"

static char tmpdir[] = "/tmp/test-admin-XXXXXX";
static char db_path[sizeof(tmpdir) + 16];

/* The writer's callback waits here while the gate is closed. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_closed, gate_holding;
static _Atomic int wakes;

static void on_batch(struct job *const *jobs, size_t n, int result, int64_t commit_us,
                     void *data)
{
        pthread_mutex_lock(&gate_lock);
        gate_holding = gate_closed;
        pthread_cond_broadcast(&gate_cond);
        while (gate_closed)
                pthread_cond_wait(&gate_cond, &gate_lock);
        gate_holding = false;
        pthread_mutex_unlock(&gate_lock);
}

static void gate_set(bool closed)
{
        pthread_mutex_lock(&gate_lock);
        gate_closed = closed;
        pthread_cond_broadcast(&gate_cond);
        pthread_mutex_unlock(&gate_lock);
}

static bool gate_wait_holding(void)
{
        for (int i = 0; i < 1000; i++) {
                pthread_mutex_lock(&gate_lock);
                bool holding = gate_holding;
                pthread_mutex_unlock(&gate_lock);
                if (holding)
                        return true;
                usleep(10 * 1000);
        }
        return false;
}

static void wake(struct job *job)
{
        atomic_fetch_add(&wakes, 1);
}

static bool wait_wakes(int n)
{
        for (int i = 0; i < 1000 && atomic_load(&wakes) < n; i++)
                usleep(10 * 1000);
        return atomic_load(&wakes) >= n;
}

static struct job *new_job(const char *id)
{
        struct job *job = job_new();
        struct delivery *d;

        if (!job)
                FAIL("out of memory");
        d = &job->delivery;
        d->has_charge = true;
        snprintf(d->charge.id, sizeof(d->charge.id), "%s", id);
        d->charge.status = CHARGE_INITIATED;
        d->charge.amount = 100;
        snprintf(d->charge.currency, sizeof(d->charge.currency), "YER");
        time_format_iso(time_now_ms(), d->received_at);
        snprintf(d->remote_addr, sizeof(d->remote_addr), "127.0.0.1");
        job->deadline_ms = INT64_MAX;
        job->wake = wake;
        return job;
}

/* Commit one delivery through the writer and wait for its answer. */
static int commit_one(struct runtime *rt, const char *id)
{
        struct job *job = new_job(id);
        int n = atomic_load(&wakes), r;

        if (writer_submit(rt->writer, job) < 0 || !wait_wakes(n + 1))
                FAIL("the writer did not answer %s", id);
        r = job->result;
        job_unref(job);
        return r;
}

/* A daemon's runtime without its listeners. */
static void runtime_up(struct runtime *rt, struct store **ret_store)
{
        struct config *cfg = NULL;
        char err[256];
        struct store_options so = {
                .path = db_path, .synchronous = DB_SYNC_NORMAL, .busy_timeout_ms = 50,
                .migrate = true,
        };
        /* stuck after 2 x busy_timeout + commit_timeout + 1 s = 1 s */
        struct writer_options wo = { .max_batch = 8, .max_queue = 100 };

        if (config_new_defaults(&cfg) < 0)
                FAIL("config_new_defaults");
        free(cfg->database.path);
        cfg->database.path = strdup(db_path);
        cfg->webhook.verify = VERIFY_NONE; /* no secret file to load */
        cfg->database.wal_warn_bytes = 64 << 20;
        if (!cfg->database.path || settings_new(cfg, &rt->settings, err, sizeof(err)) < 0)
                FAIL("settings_new: %s", err);
        pthread_rwlock_init(&rt->settings_lock, NULL);
        if (store_new(&so, ret_store, err, sizeof(err)) < 0)
                FAIL("store_new: %s", err);
        if (reader_pool_new(rt->settings->cfg, 1, &rt->readers, err, sizeof(err)) < 0)
                FAIL("reader_pool_new: %s", err);
        if (writer_start(ret_store, 1, &wo, on_batch, NULL, &rt->writer) < 0)
                FAIL("writer_start");
}

static void runtime_down(struct runtime *rt, struct store *store)
{
        writer_stop(rt->writer);
        reader_pool_free(rt->readers);
        store_free(store);
        settings_free(rt->settings);
        pthread_rwlock_destroy(&rt->settings_lock);
}

static void test_healthy_and_wal(struct runtime *rt)
{
        const char *why = NULL;

        CHECK_EQ_INT(commit_one(rt, "chg_h0"), 0);
        CHECK_EQ_INT(admin_health(rt, &why), 0);
        CHECK_STR(why, "ok");

        /* the WAL holds the commit: past a limit of 1 byte */
        rt->settings->cfg->database.wal_warn_bytes = 1;
        CHECK_EQ_INT(admin_health(rt, &why), -EFBIG);
        CHECK(why && strstr(why, "wal_warn_bytes"), "why: %s", why ? why : "(null)");
        rt->settings->cfg->database.wal_warn_bytes = 64 << 20;
        CHECK_EQ_INT(admin_health(rt, &why), 0);
}

static void test_stuck_writer(struct runtime *rt)
{
        struct job *job = new_job("chg_h1");
        const char *why = NULL;
        int n = atomic_load(&wakes);

        gate_set(true);
        CHECK_EQ_INT(writer_submit(rt->writer, job), 0);
        if (!gate_wait_holding())
                FAIL("the writer never reached its callback");
        CHECK_EQ_INT(admin_health(rt, &why), 0); /* a commit under way is fine */
        usleep(1100 * 1000);
        CHECK_EQ_INT(admin_health(rt, &why), -ETIMEDOUT);
        CHECK_STR(why, "writer is stuck in a commit");
        gate_set(false);
        CHECK(wait_wakes(n + 1));
        CHECK_EQ_INT(admin_health(rt, &why), 0);
        job_unref(job);
}

static void test_failed_commit(struct runtime *rt)
{
        const char *why = NULL;
        sqlite3 *other = NULL;

        if (sqlite3_open(db_path, &other) != SQLITE_OK ||
            sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
                FAIL("cannot take the write lock: %s", other ? sqlite3_errmsg(other) : "");
        CHECK_EQ_INT(commit_one(rt, "chg_h2"), -EBUSY);
        CHECK_EQ_INT(admin_health(rt, &why), -EBUSY);
        CHECK(why && strcmp(why, "ok") != 0, "why: %s", why ? why : "(null)");
        sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(other);

        /* the idle writer probes each idle second until a write commits */
        for (int i = 0; i < 50 && admin_health(rt, &why) != 0; i++)
                usleep(100 * 1000);
        CHECK_EQ_INT(admin_health(rt, &why), 0);
        CHECK_STR(why, "ok");
}

static void cleanup(void)
{
        static const char *const suffixes[] = { "", "-wal", "-shm" };
        char path[sizeof(db_path) + 8];

        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
                snprintf(path, sizeof(path), "%s%s", db_path, suffixes[i]);
                unlink(path);
        }
        rmdir(tmpdir);
}

int main(void)
{
        struct runtime rt = { 0 };
        struct store *store = NULL;

        if (!mkdtemp(tmpdir))
                FAIL("mkdtemp: %s", strerror(errno));
        snprintf(db_path, sizeof(db_path), "%s/admin.db", tmpdir);
        atexit(cleanup);
        runtime_up(&rt, &store);
        test_healthy_and_wal(&rt);
        test_stuck_writer(&rt);
        test_failed_commit(&rt);
        runtime_down(&rt, store);
        return check_summary();
}
