/*
 * Unit tests for the writer against a real SQLite database in a temporary
 * directory: what queues while a commit runs forms the next batch, cut at
 * max_batch; the queue is bounded; every job is answered exactly once,
 * whether by its commit, its deadline or the shutdown; a commit running
 * past what a busy database explains counts as a stuck writer.
 *
 * The writer calls back after each commit, on its own thread, before it
 * answers the batch; the test holds it there (a gate) to decide exactly
 * what is queued when the next batch is taken.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cashpay/store.h"
#include "cashpay/timeutil.h"
#include "src/daemon/writer.h"
#include "tests/check.h"

#define BATCHES_MAX 64

static char tmpdir[128]; /* $TMPDIR/test-writer-XXXXXX */

/* What the writer reported, and the gate that holds it after a commit. */
static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool closed;           /* the writer waits in its callback */
        bool waiting;          /* it is waiting there now */
        size_t sizes[BATCHES_MAX];
        int results[BATCHES_MAX];
        size_t n;
} batches = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void on_batch(struct job *const *jobs, size_t n, int result, int64_t commit_us,
                     void *data)
{
        pthread_mutex_lock(&batches.lock);
        if (batches.n < BATCHES_MAX) {
                batches.sizes[batches.n] = n;
                batches.results[batches.n] = result;
        }
        batches.n++;
        batches.waiting = batches.closed;
        pthread_cond_broadcast(&batches.cond);
        while (batches.closed)
                pthread_cond_wait(&batches.cond, &batches.lock);
        batches.waiting = false;
        pthread_mutex_unlock(&batches.lock);
}

static void gate_close(void)
{
        pthread_mutex_lock(&batches.lock);
        batches.closed = true;
        pthread_mutex_unlock(&batches.lock);
}

static void gate_open(void)
{
        pthread_mutex_lock(&batches.lock);
        batches.closed = false;
        pthread_cond_broadcast(&batches.cond);
        pthread_mutex_unlock(&batches.lock);
}

/* Wait (at most 10 s) until the writer is held at the gate. */
static void gate_wait_held(void)
{
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        pthread_mutex_lock(&batches.lock);
        while (!batches.waiting)
                if (pthread_cond_timedwait(&batches.cond, &batches.lock, &until) != 0)
                        break;
        bool held = batches.waiting;
        pthread_mutex_unlock(&batches.lock);
        if (!held)
                FAIL("the writer never reached its callback");
}

/* Wait (at most 10 s) until @n commits were reported. */
static void gate_wait_batches(size_t n)
{
        for (int i = 0; i < 1000; i++) {
                pthread_mutex_lock(&batches.lock);
                bool done = batches.n >= n;
                pthread_mutex_unlock(&batches.lock);
                if (done)
                        return;
                usleep(10 * 1000);
        }
        FAIL("%zu commits never came", n);
}

static void batches_reset(void)
{
        pthread_mutex_lock(&batches.lock);
        batches.n = 0;
        pthread_mutex_unlock(&batches.lock);
}

/* The wake callback: how often, and with what result. */
static _Atomic int wakes;

static void wake(struct job *job)
{
        atomic_fetch_add(&wakes, 1);
        (void) job;
}

/* Wait (at most 10 s) until @n wakes were counted in all. */
static bool wait_wakes(int n)
{
        for (int i = 0; i < 1000 && atomic_load(&wakes) < n; i++)
                usleep(10 * 1000);
        return atomic_load(&wakes) >= n;
}

static struct job *new_job(const char *id, int64_t deadline_ms)
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
        d->charge.created = 1672531200;
        time_format_iso(time_now_ms(), d->received_at);
        snprintf(d->remote_addr, sizeof(d->remote_addr), "127.0.0.1");
        d->body = (uint8_t *) strdup("{}");
        if (!d->body)
                FAIL("out of memory");
        d->body_len = 2;
        job->deadline_ms = deadline_ms;
        job->wake = wake;
        return job;
}

/* Submit @first and wait until the writer, having committed it alone, is
 * held at the gate: what is submitted next forms the following batches. */
static void submit_and_hold(struct writer *w, struct job *first)
{
        batches_reset();
        atomic_store(&wakes, 0);
        gate_close();
        CHECK_EQ_INT(writer_submit(w, first), 0);
        gate_wait_held();
}

static void unref_all(struct job **jobs, size_t n)
{
        for (size_t i = 0; i < n; i++)
                job_unref(jobs[i]);
}

static struct store *open_store(const char *name)
{
        char path[sizeof(tmpdir) + 32], err[256];
        struct store_options o = {
                .path = path, .synchronous = DB_SYNC_NORMAL, .busy_timeout_ms = 1000,
                .migrate = true,
        };
        struct store *s = NULL;

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        if (store_new(&o, &s, err, sizeof(err)) < 0)
                FAIL("store_new: %s", err);
        return s;
}

static struct writer *start_lanes(struct store **s, size_t n, unsigned max_batch,
                                  unsigned max_queue)
{
        struct writer_options o = {
                .max_batch = max_batch, .max_queue = max_queue,
                .commit_timeout_ms = 1000, .busy_timeout_ms = 1000,
        };
        struct writer *w = NULL;
        int r = writer_start(s, n, &o, on_batch, NULL, &w);

        if (r < 0)
                FAIL("writer_start: %d", r);
        return w;
}

static struct writer *start(struct store *s, unsigned max_batch, unsigned max_queue)
{
        return start_lanes(&s, 1, max_batch, max_queue);
}

static bool stored(struct store *s, const char *id)
{
        struct order_record o = { 0 };
        int r = store_get_order(s, id, &o);

        order_record_clear(&o);
        return r == 0;
}

/* Hold the writer after a first lone commit, queue more, let it go on. */
static void test_group_commit(void)
{
        struct store *s = open_store("batch.db");
        struct writer *w = start(s, 4, 100);
        struct job *jobs[11];
        char id[32];

        for (int i = 0; i < 11; i++) {
                snprintf(id, sizeof(id), "chg_batch%d", i);
                jobs[i] = new_job(id, INT64_MAX);
        }
        submit_and_hold(w, jobs[0]); /* a lone delivery is committed at once */
        for (int i = 1; i < 11; i++)
                CHECK_EQ_INT(writer_submit(w, jobs[i]), 0);
        CHECK_EQ_INT(writer_queue_depth(w), 10);
        gate_open();
        CHECK(wait_wakes(11));
        CHECK_EQ_INT(writer_last_result(w), 0);
        writer_stop(w);

        /* 1 alone, then the ten that queued meanwhile in batches of 4. */
        CHECK_EQ_INT(batches.n, 4);
        CHECK_EQ_INT(batches.sizes[0], 1);
        CHECK_EQ_INT(batches.sizes[1], 4);
        CHECK_EQ_INT(batches.sizes[2], 4);
        CHECK_EQ_INT(batches.sizes[3], 2);
        for (size_t i = 0; i < 4; i++)
                CHECK_EQ_INT(batches.results[i], 0);
        for (int i = 0; i < 11; i++) {
                CHECK_EQ_INT(jobs[i]->result, 0);
                CHECK_EQ_INT(jobs[i]->state, JOB_ANSWERED);
                CHECK(stored(s, jobs[i]->delivery.charge.id), "%s stored",
                      jobs[i]->delivery.charge.id);
                job_unref(jobs[i]);
        }
        CHECK_EQ_INT(atomic_load(&wakes), 11);
        store_free(s);
}

/* max_queue counts what waits, not what is being committed. */
static void test_queue_bound(void)
{
        struct store *s = open_store("queue.db");
        struct writer *w = start(s, 8, 2);
        struct job *first = new_job("chg_q0", INT64_MAX);
        struct job *a = new_job("chg_q1", INT64_MAX), *b = new_job("chg_q2", INT64_MAX);
        struct job *c = new_job("chg_q3", INT64_MAX);

        submit_and_hold(w, first);
        CHECK_EQ_INT(writer_submit(w, a), 0);
        CHECK_EQ_INT(writer_submit(w, b), 0);
        CHECK_EQ_INT(writer_submit(w, c), -EAGAIN);
        CHECK_EQ_INT(writer_queue_depth(w), 2);
        gate_open();
        CHECK(wait_wakes(3));
        writer_stop(w);
        CHECK(!stored(s, "chg_q3"));
        CHECK_EQ_INT(atomic_load(&c->refs), 1); /* the writer never took it */
        CHECK_EQ_INT(atomic_load(&wakes), 3);
        unref_all((struct job *[]) { first, a, b, c }, 4);
        store_free(s);
}

/*
 * Deadlines while the writer is held inside a commit: the jobs of that
 * commit and the queued ones are answered -ETIMEDOUT once, and neither the
 * commit's own answer nor a later batch answers them again; queued ones
 * past their deadline are not committed at all.
 */
static void test_deadlines(void)
{
        struct store *s = open_store("deadline.db");
        struct writer *w = start(s, 8, 100);
        int64_t now = time_monotonic_ms();
        struct job *running = new_job("chg_d0", now + 1000);
        struct job *late = new_job("chg_d1", now + 1000);
        struct job *timely = new_job("chg_d2", INT64_MAX);

        submit_and_hold(w, running);
        CHECK_EQ_INT(writer_submit(w, late), 0);
        CHECK_EQ_INT(writer_submit(w, timely), 0);

        writer_expire(w, now + 999); /* nothing is due yet */
        CHECK_EQ_INT(atomic_load(&wakes), 0);
        writer_expire(w, now + 1000);
        CHECK_EQ_INT(atomic_load(&wakes), 2);
        CHECK_EQ_INT(running->result, -ETIMEDOUT);
        CHECK_EQ_INT(late->result, -ETIMEDOUT);
        writer_expire(w, now + 5000); /* answered once only */
        CHECK_EQ_INT(atomic_load(&wakes), 2);

        gate_open();
        CHECK(wait_wakes(3));
        writer_stop(w);
        CHECK_EQ_INT(atomic_load(&wakes), 3);
        CHECK_EQ_INT(running->result, -ETIMEDOUT); /* committed, but answered 503 already */
        CHECK(stored(s, "chg_d0"));
        CHECK(!stored(s, "chg_d1"));
        CHECK_EQ_INT(timely->result, 0);
        CHECK(stored(s, "chg_d2"));
        CHECK_EQ_INT(batches.n, 2);
        CHECK_EQ_INT(batches.sizes[1], 1); /* the late one was dropped from the batch */
        unref_all((struct job *[]) { running, late, timely }, 3);
        store_free(s);
}

/* A commit that runs far past busy_timeout and commit_timeout is stuck. */
static void test_progress(void)
{
        struct store *s = open_store("progress.db");
        struct writer *w = start(s, 8, 100);
        struct job *job = new_job("chg_p0", INT64_MAX);
        /* 2 x busy_timeout + commit_timeout + 1 s, as start() sets them */
        const int64_t limit = 2 * 1000 + 1000 + 1000;
        int64_t now = time_monotonic_ms();

        CHECK(writer_making_progress(w, now + 10 * limit)); /* idle is progress */
        submit_and_hold(w, job);
        now = time_monotonic_ms();
        CHECK(writer_making_progress(w, now));
        CHECK(!writer_making_progress(w, now + limit));
        gate_open();
        CHECK(wait_wakes(1));
        writer_stop(w);
        job_unref(job);
        store_free(s);
}

/* writer_shutdown(): queued jobs answered -ESHUTDOWN, new ones refused. */
static void test_shutdown(void)
{
        struct store *s = open_store("shutdown.db");
        struct writer *w = start(s, 8, 100);
        struct job *first = new_job("chg_s0", INT64_MAX);
        struct job *queued = new_job("chg_s1", INT64_MAX);
        struct job *after = new_job("chg_s2", INT64_MAX);

        submit_and_hold(w, first);
        CHECK_EQ_INT(writer_submit(w, queued), 0);
        writer_shutdown(w);
        CHECK_EQ_INT(atomic_load(&wakes), 2);
        CHECK_EQ_INT(first->result, -ESHUTDOWN);
        CHECK_EQ_INT(queued->result, -ESHUTDOWN);
        CHECK_EQ_INT(writer_submit(w, after), -ESHUTDOWN);
        gate_open();
        writer_stop(w); /* commits what was queued; answers nobody twice */
        CHECK_EQ_INT(atomic_load(&wakes), 2);
        unref_all((struct job *[]) { first, queued, after }, 3);
        store_free(s);
}

static void cleanup(void)
{
        static const char *const names[] = { "batch", "queue", "deadline", "progress",
                                             "shutdown", "lanes" };
        static const char *const suffixes[] = { ".db", ".db-wal", ".db-shm" };
        char path[sizeof(tmpdir) + 32];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                for (size_t j = 0; j < sizeof(suffixes) / sizeof(suffixes[0]); j++) {
                        snprintf(path, sizeof(path), "%s/%s%s", tmpdir, names[i],
                                 suffixes[j]);
                        unlink(path);
                }
        rmdir(tmpdir);
}

/*
 * Two lanes (two handles of one file here; PostgreSQL connections in the
 * daemon): one charge's jobs all on one lane, the charges spread over
 * both, a job without a charge id on the first; max_queue bounds them
 * together; every job answered once and stored; the shutdown closes both.
 */
static void test_lanes(void)
{
        struct store *s[2] = { open_store("lanes.db"), open_store("lanes.db") };
        struct writer *w;
        struct job *jobs[24], *first, *late;
        char id[32];
        bool used[2] = { false, false };

        CHECK_EQ_INT(writer_start(s, 0, &(struct writer_options) { .max_batch = 1 }, on_batch,
                                  NULL, &w), -EINVAL);
        /* the bound is the writer's, not each lane's: with both lanes held
         * at the gate after a commit each, they take 6 jobs in all */
        w = start_lanes(s, 2, 4, 6);
        first = new_job("chg_lanefirst", INT64_MAX);
        submit_and_hold(w, first);
        size_t n = 0, queued[2] = { 0, 0 };
        do { /* up to the first job on the other lane, committed alone */
                snprintf(id, sizeof(id), "chg_other%zu", n);
                jobs[n] = new_job(id, INT64_MAX);
                CHECK_EQ_INT(writer_submit(w, jobs[n]), 0);
        } while (jobs[n++]->lane == first->lane && n < 6);
        CHECK(jobs[n - 1]->lane != first->lane, "a charge on the other lane");
        gate_wait_batches(2);
        queued[first->lane] = n - 1;
        int r;
        while ((r = writer_submit(w, jobs[n] = new_job("chg_more", INT64_MAX))) == 0)
                queued[jobs[n++]->lane]++;
        CHECK_EQ_INT(r, -EAGAIN);
        CHECK_EQ_INT(writer_queue_depth(w), 6);
        CHECK_EQ_INT(queued[0] + queued[1], 6);
        gate_open();
        CHECK(wait_wakes((int) n + 1));
        unref_all(jobs, n + 1);
        job_unref(first);
        writer_stop(w);

        w = start_lanes(s, 2, 4, 100);
        batches_reset();
        atomic_store(&wakes, 0);
        for (int i = 0; i < 24; i++) {
                snprintf(id, sizeof(id), "chg_lane%d", i % 8);
                jobs[i] = new_job(id, INT64_MAX);
                CHECK_EQ_INT(writer_submit(w, jobs[i]), 0);
        }
        late = new_job("", INT64_MAX);
        late->delivery.has_charge = false;
        late->delivery.rejected_as = OUTCOME_INVALID;
        late->delivery.rejected_status = 400;
        CHECK_EQ_INT(writer_submit(w, late), 0);
        CHECK_EQ_INT(late->lane, 0);
        CHECK(wait_wakes(25));
        CHECK_EQ_INT(writer_last_result(w), 0);
        CHECK_EQ_INT(writer_queue_depth(w), 0);
        for (int i = 0; i < 24; i++) {
                CHECK_EQ_INT(jobs[i]->result, 0);
                CHECK_EQ_INT(jobs[i]->lane, jobs[i % 8]->lane);
                used[jobs[i]->lane] = true;
                CHECK(stored(s[0], jobs[i]->delivery.charge.id), "%s stored",
                      jobs[i]->delivery.charge.id);
        }
        CHECK(used[0] && used[1], "8 charges on both lanes");
        writer_shutdown(w);
        for (int i = 0; i < 8; i++)
                CHECK_EQ_INT(writer_submit(w, jobs[i]), -ESHUTDOWN);
        writer_stop(w);
        unref_all(jobs, 24);
        job_unref(late);
        store_free(s[1]);
        store_free(s[0]);
}

int main(void)
{
        const char *base = getenv("TMPDIR");
        int n = snprintf(tmpdir, sizeof(tmpdir), "%s/test-writer-XXXXXX",
                         base && *base ? base : "/tmp");

        if (n < 0 || (size_t) n >= sizeof(tmpdir))
                FAIL("TMPDIR is too long for this test");
        if (!mkdtemp(tmpdir))
                FAIL("mkdtemp: %s", strerror(errno));
        atexit(cleanup);
        test_group_commit();
        test_queue_bound();
        test_deadlines();
        test_progress();
        test_shutdown();
        test_lanes();
        return check_summary();
}
