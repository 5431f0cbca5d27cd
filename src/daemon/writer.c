/*
 * writer — group commit on one thread; see writer.h for the why.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "cashpay/util.h"
#include "src/daemon/writer.h"

/* After this long without work the writer checkpoints the WAL and looks at
 * the database file; past wal_limit it tries to truncate the WAL at most
 * this often even under load. */
#define IDLE_MS 1000

/* The age bound on rejected deliveries: how often, how many rows per
 * transaction (a delivery arriving meanwhile waits for one chunk at most),
 * and when to try again after a failure (a lock held past busy_timeout). */
#define PRUNE_EVERY_MS (INT64_C(3600) * 1000)
#define PRUNE_CHUNK 1000
#define PRUNE_RETRY_MS (INT64_C(300) * 1000)
#define MS_PER_DAY INT64_C(86400000)

struct writer {
        struct store *store;
        struct writer_options opts;
        writer_batch_cb on_batch;
        void *cb_data;

        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stopping;
        bool closed;              /* writer_shutdown(): no more jobs */

        struct job *head, *tail;  /* FIFO, guarded by lock */
        struct job *held;         /* writer_hold(), guarded by lock */
        unsigned depth;           /* jobs in the FIFO */
        struct job **batch;       /* the transaction in progress */
        struct delivery **items;  /* batch[i]->delivery, as store_submit() wants it */
        /* the confirmed ones (confirm = api), as store_record_confirmed_batch() wants them */
        struct delivery **confirmed;
        struct api_fetch **fetches;
        int *faults;
        size_t batch_n;           /* guarded by lock */
        struct writer_task *tasks, *tasks_tail; /* FIFO, guarded by lock */

        _Atomic int64_t commit_started_ms; /* 0 while idle */
        _Atomic int last_result;

        /* checkpoints, writer thread only (but wal_limit) */
        bool dirty;                  /* committed since the last checkpoint */
        int64_t next_truncate_ms;    /* monotonic */
        _Atomic int64_t wal_limit;   /* bytes of WAL worth a TRUNCATE checkpoint */

        /* the hourly prune, writer thread only (but keep_rejected_days) */
        int64_t next_prune_ms;       /* monotonic; 0: at the first chance */
        int64_t pruned;              /* rows the prune in progress deleted so far */
        _Atomic unsigned keep_rejected_days;
        _Atomic int64_t rejected_rows; /* store_rejected_rows(), for /metrics */
};

struct job *job_new(void)
{
        struct job *job = calloc(1, sizeof(*job));

        if (job)
                atomic_init(&job->refs, 1);
        return job;
}

void job_ref(struct job *job)
{
        atomic_fetch_add_explicit(&job->refs, 1, memory_order_relaxed);
}

void job_unref(struct job *job)
{
        if (!job || atomic_fetch_sub_explicit(&job->refs, 1, memory_order_acq_rel) != 1)
                return;
        delivery_clear(&job->delivery);
        if (job->confirmed) {
                charge_clear(&job->fetch.charge);
                free((void *) job->fetch.body);
                free((void *) job->fetch.error);
        }
        free(job);
}

/* Whoever moves a job to ANSWERED owns the duty to wake its connection. */
static bool job_claim(struct job *job, int from)
{
        return atomic_compare_exchange_strong(&job->state, &from, JOB_ANSWERED);
}

static void job_answer(struct job *job, int result)
{
        job->result = result;
        job->wake(job);
}

/* Take up to max_batch live jobs off the FIFO; expired ones are dropped. */
static size_t take_batch(struct writer *w)
{
        size_t n = 0;

        while (w->head && n < w->opts.max_batch) {
                struct job *job = w->head;

                w->head = job->next;
                if (!w->head)
                        w->tail = NULL;
                w->depth--;
                int queued = JOB_QUEUED;
                if (atomic_compare_exchange_strong(&job->state, &queued, JOB_TAKEN))
                        w->batch[n++] = job;
                else
                        job_unref(job); /* already answered by its deadline */
        }
        w->batch_n = n;
        return n;
}

/* Tests create the stall file to freeze the writer as if a commit hung. */
static void maybe_stall(const struct writer *w)
{
        if (!w->opts.stall_file)
                return;
        while (access(w->opts.stall_file, F_OK) == 0)
                usleep(20 * 1000);
}

static void commit_batch(struct writer *w, size_t n)
{
        int64_t started = time_monotonic_ms();

        atomic_store(&w->commit_started_ms, started);
        maybe_stall(w);
        size_t plain = 0, confirmed = 0;
        for (size_t i = 0; i < n; i++) {
                struct job *job = w->batch[i];
                if (!job->confirmed) {
                        w->items[plain++] = &job->delivery;
                } else {
                        w->confirmed[confirmed] = &job->delivery;
                        w->fetches[confirmed++] = &job->fetch;
                }
        }

        /* Commits take from well under a millisecond to seconds: microseconds. */
        int64_t t0 = time_monotonic_us();
        int r = plain > 0 ? store_submit(w->store, w->items, plain) : 0;
        /* Confirmed deliveries, each with its fetch, in a second transaction
         * of their own (one commit for all of them, as for plain ones); the
         * failure of one is its own (a 503), like a refused delivery's fault. */
        if (confirmed > 0) {
                int c = store_record_confirmed_batch(w->store, w->confirmed, w->fetches,
                                                     confirmed, w->faults);
                for (size_t i = 0, k = 0; i < n; i++)
                        if (w->batch[i]->confirmed)
                                w->batch[i]->delivery.fault = w->faults[k++];
                if (c < 0 && plain == 0 && r == 0)
                        r = c;
        }
        int64_t commit_us = time_monotonic_us() - t0;

        atomic_store(&w->last_result, r);
        atomic_store(&w->rejected_rows, store_rejected_rows(w->store));
        w->dirty |= r == 0;
        w->on_batch(w->batch, n, r, commit_us, w->cb_data);

        pthread_mutex_lock(&w->lock);
        w->batch_n = 0;
        pthread_mutex_unlock(&w->lock);
        atomic_store(&w->commit_started_ms, 0);

        for (size_t i = 0; i < n; i++) {
                /* A delivery the database refused on its own gets its own fault. */
                struct job *job = w->batch[i];
                int res = job->confirmed || r == 0 ? job->delivery.fault : r;
                if (job_claim(job, JOB_TAKEN))
                        job_answer(job, res);
                job_unref(w->batch[i]);
        }
}

/*
 * SQLite checkpoints by itself after commits, but a reader holding a
 * snapshot stops those short and the WAL grows. Once the writer is idle it
 * checkpoints what is left (PASSIVE: it never waits), and a WAL past
 * wal_limit is truncated as soon as no reader needs it (the TRUNCATE
 * attempt gives up at once while one does).
 */
static void checkpoint(struct writer *w, bool idle)
{
        int64_t now = time_monotonic_ms();
        bool over = store_wal_bytes(w->store) > atomic_load(&w->wal_limit);

        if (!(idle && w->dirty) && !(over && now >= w->next_truncate_ms))
                return;
        if (over)
                w->next_truncate_ms = now + IDLE_MS;
        w->dirty = store_checkpoint(w->store, over) < 0;
}

/*
 * /healthz reports the last commit's result. A file deleted, replaced or
 * made read-only shows there at once, not only when the next webhook
 * fails. And once a commit has failed (disk full, I/O error, a lock held
 * past busy_timeout), nothing but a later commit would clear it, while a
 * load balancer trusting /healthz may be what keeps webhooks away: so the
 * idle writer tries a one-page write each idle second until one commits.
 * Timed like a commit, so a probe that hangs shows as a stuck writer.
 */
static void recheck(struct writer *w)
{
        int last = atomic_load(&w->last_result), r;

        if (last < 0) {
                atomic_store(&w->commit_started_ms, time_monotonic_ms());
                r = store_probe_write(w->store);
                atomic_store(&w->commit_started_ms, 0);
                w->dirty |= r == 0;
                if (r == 0)
                        log_notice("the database takes writes again (%s before)",
                                   store_strerror(last));
        } else {
                r = store_check_file(w->store);
        }
        if (r < 0)
                atomic_store(&w->last_result, r);
        else
                atomic_compare_exchange_strong(&w->last_result, &last, 0);
}

static bool prune_due(const struct writer *w)
{
        return atomic_load(&w->keep_rejected_days) > 0 && time_monotonic_ms() >= w->next_prune_ms;
}

/*
 * One chunk of the age bound on rejected deliveries (keep_rejected_days);
 * a full chunk leaves the prune due, so the next one follows as long as no
 * delivery waits. The cap on their number is store_submit()'s.
 */
static void prune(struct writer *w)
{
        unsigned days = atomic_load(&w->keep_rejected_days);
        char cutoff[TIME_ISO_LEN];
        int64_t n = 0;

        time_format_iso(time_now_ms() - (int64_t) days * MS_PER_DAY, cutoff);
        int r = store_prune_rejected(w->store, cutoff, PRUNE_CHUNK, false, &n);
        if (r < 0) {
                log_warning("could not delete rejected deliveries older than %u days: %s; "
                            "trying again in %d minutes", days, store_strerror(r),
                            (int) (PRUNE_RETRY_MS / 60000));
                w->next_prune_ms = time_monotonic_ms() + PRUNE_RETRY_MS;
                return;
        }
        atomic_store(&w->rejected_rows, store_rejected_rows(w->store));
        w->dirty |= n > 0;
        w->pruned += n;
        if (n == PRUNE_CHUNK)
                return;
        if (w->pruned > 0)
                log_info("deleted %lld rejected deliveries received before %s "
                         "(keep_rejected_days = %u)", (long long) w->pruned, cutoff, days);
        w->pruned = 0;
        w->next_prune_ms = time_monotonic_ms() + PRUNE_EVERY_MS;
}

/* Wait for jobs; true when IDLE_MS passed without any. Called locked. */
static bool wait_for_work(struct writer *w)
{
        struct timespec until;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += IDLE_MS / 1000;
        while (!w->head && !w->tasks && !w->stopping)
                if (pthread_cond_timedwait(&w->wake, &w->lock, &until) == ETIMEDOUT)
                        return !w->head && !w->tasks && !w->stopping;
        return false;
}

/* Run the tasks queued now; those posted meanwhile wait for the next round,
 * so deliveries arriving in between are not kept waiting behind them. */
static void run_tasks(struct writer *w, struct writer_task *t)
{
        while (t) {
                struct writer_task *next = t->next;

                /* timed like a commit: a task that hangs is a stuck writer */
                atomic_store(&w->commit_started_ms, time_monotonic_ms());
                t->run(w->store, t);
                atomic_store(&w->commit_started_ms, 0);
                w->dirty = true;
                t = next;
        }
}

static void *writer_main(void *arg)
{
        struct writer *w = arg;

        for (;;) {
                pthread_mutex_lock(&w->lock);
                /* a due prune waits for no one: it runs when nothing is queued */
                bool idle = !prune_due(w) && wait_for_work(w);
                if (!w->head && !w->tasks && w->stopping) {
                        pthread_mutex_unlock(&w->lock);
                        break;
                }
                size_t n = take_batch(w);
                struct writer_task *tasks = w->tasks;
                w->tasks = w->tasks_tail = NULL;
                pthread_mutex_unlock(&w->lock);
                if (n > 0)
                        commit_batch(w, n);
                else if (!tasks && prune_due(w))
                        prune(w);
                run_tasks(w, tasks);
                if (idle)
                        recheck(w);
                checkpoint(w, idle);
        }
        return NULL;
}

/* The memory of a writer without a thread (never started, or joined). */
static void writer_release(struct writer *w)
{
        free(w->batch);
        free(w->items);
        free(w->confirmed);
        free(w->fetches);
        free(w->faults);
        free(w);
}
DEFINE_FREEP(struct writer, writer_release)

int writer_start(struct store *store, const struct writer_options *opts,
                 writer_batch_cb on_batch, void *cb_data, struct writer **ret)
{
        _cleanup_(writer_releasep) struct writer *w = calloc(1, sizeof(*w));

        if (!w)
                return -ENOMEM;
        w->store = store;
        w->opts = *opts;
        if (w->opts.max_batch == 0)
                w->opts.max_batch = 1;
        w->on_batch = on_batch;
        w->cb_data = cb_data;
        w->batch = calloc(w->opts.max_batch, sizeof(*w->batch));
        w->items = calloc(w->opts.max_batch, sizeof(*w->items));
        w->confirmed = calloc(w->opts.max_batch, sizeof(*w->confirmed));
        w->fetches = calloc(w->opts.max_batch, sizeof(*w->fetches));
        w->faults = calloc(w->opts.max_batch, sizeof(*w->faults));
        if (!w->batch || !w->items || !w->confirmed || !w->fetches || !w->faults)
                return -ENOMEM;
        atomic_init(&w->wal_limit, opts->wal_limit_bytes ? opts->wal_limit_bytes : INT64_MAX);
        atomic_init(&w->keep_rejected_days, opts->keep_rejected_days);
        atomic_init(&w->rejected_rows, store_rejected_rows(store));
        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* idle timeouts ignore clock steps */
        pthread_cond_init(&w->wake, &attr);
        pthread_condattr_destroy(&attr);
        int r = pthread_create(&w->thread, NULL, writer_main, w);
        if (r != 0) {
                pthread_cond_destroy(&w->wake);
                pthread_mutex_destroy(&w->lock);
                return -r;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

void writer_stop(struct writer *w)
{
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        writer_release(w);
}

/* Under the lock: @job, whose reference the queue now owns, joins the FIFO. */
static void enqueue_locked(struct writer *w, struct job *job)
{
        job->next = NULL;
        if (w->tail)
                w->tail->next = job;
        else
                w->head = job;
        w->tail = job;
        w->depth++;
        pthread_cond_signal(&w->wake);
}

int writer_submit(struct writer *w, struct job *job)
{
        int r = 0;

        pthread_mutex_lock(&w->lock);
        if (w->stopping || w->closed)
                r = -ESHUTDOWN;
        else if (w->depth >= w->opts.max_queue)
                r = -EAGAIN;
        else {
                atomic_store(&job->state, JOB_QUEUED);
                job_ref(job);
                enqueue_locked(w, job);
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

int writer_post(struct writer *w, struct writer_task *task)
{
        int r = 0;

        pthread_mutex_lock(&w->lock);
        if (w->stopping)
                r = -ESHUTDOWN;
        else {
                task->next = NULL;
                if (w->tasks_tail)
                        w->tasks_tail->next = task;
                else
                        w->tasks = task;
                w->tasks_tail = task;
                pthread_cond_signal(&w->wake);
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

/* Under the lock: answer queued and running jobs due by @now_ms with @result. */
static void answer_due(struct writer *w, int64_t now_ms, int result)
{
        for (struct job *job = w->head; job; job = job->next)
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_QUEUED))
                        job_answer(job, result);
        for (size_t i = 0; i < w->batch_n; i++) {
                struct job *job = w->batch[i];
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_TAKEN))
                        job_answer(job, result);
        }
        for (struct job *job = w->held; job; job = job->held_next)
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_QUEUED))
                        job_answer(job, result);
}

int writer_hold(struct writer *w, struct job *job)
{
        int r = 0;

        pthread_mutex_lock(&w->lock);
        if (w->stopping || w->closed)
                r = -ESHUTDOWN;
        else {
                atomic_store(&job->state, JOB_QUEUED);
                job_ref(job);
                job->held_next = w->held;
                w->held = job;
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

void writer_release_held(struct writer *w, struct job *job, int result)
{
        pthread_mutex_lock(&w->lock);
        for (struct job **p = &w->held; *p; p = &(*p)->held_next)
                if (*p == job) {
                        *p = job->held_next;
                        break;
                }
        if (result == 0 && (w->stopping || w->closed))
                result = -ESHUTDOWN;
        else if (result == 0 && w->depth >= w->opts.max_queue)
                result = -EAGAIN;
        if (result == 0 && atomic_load(&job->state) == JOB_QUEUED) {
                enqueue_locked(w, job); /* the held reference becomes the queue's */
                pthread_mutex_unlock(&w->lock);
                return;
        }
        if (job_claim(job, JOB_QUEUED))
                job_answer(job, result < 0 ? result : -ESHUTDOWN);
        pthread_mutex_unlock(&w->lock);
        job_unref(job);
}

void writer_expire(struct writer *w, int64_t now_ms)
{
        pthread_mutex_lock(&w->lock);
        answer_due(w, now_ms, -ETIMEDOUT);
        pthread_mutex_unlock(&w->lock);
}

void writer_shutdown(struct writer *w)
{
        pthread_mutex_lock(&w->lock);
        w->closed = true;
        answer_due(w, INT64_MAX, -ESHUTDOWN);
        pthread_mutex_unlock(&w->lock);
}

unsigned writer_queue_depth(struct writer *w)
{
        pthread_mutex_lock(&w->lock);
        unsigned depth = w->depth;
        pthread_mutex_unlock(&w->lock);
        return depth;
}

bool writer_making_progress(struct writer *w, int64_t now_ms)
{
        int64_t started = atomic_load(&w->commit_started_ms);
        /* A commit blocked by another process's lock gives up after
         * busy_timeout; only one running far longer than that is stuck. */
        int64_t limit = 2 * (int64_t) w->opts.busy_timeout_ms + w->opts.commit_timeout_ms + 1000;

        return started == 0 || now_ms - started < limit;
}

int writer_last_result(struct writer *w)
{
        return atomic_load(&w->last_result);
}

void writer_set_wal_limit(struct writer *w, int64_t bytes)
{
        atomic_store(&w->wal_limit, bytes > 0 ? bytes : INT64_MAX);
}

void writer_set_keep_rejected_days(struct writer *w, unsigned days)
{
        atomic_store(&w->keep_rejected_days, days);
}

int64_t writer_rejected_rows(struct writer *w)
{
        return atomic_load(&w->rejected_rows);
}
