/*
 * writer — group commit on one thread per lane; see writer.h for the why.
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

/*
 * One writer connection: its FIFO, its thread, its own store (PostgreSQL:
 * its own server connection). A writer has 1..WRITER_LANES_MAX of them;
 * each job goes to the lane of its charge (lane_pick()), so all deliveries
 * of one charge are committed in order on one connection, and two lanes
 * meet only where two instances meet today: at the orders' row locks, the
 * events' advisory lock and a new order's insert (pg-submit.c).
 */
struct lane {
        struct writer *w;
        unsigned index;           /* lane 0 also runs the tasks and the prune */
        struct store *store;
        bool started;             /* the thread runs (joined by writer_stop()) */

        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stopping;
        bool closed;              /* writer_shutdown(): no more jobs */

        struct job *head, *tail;  /* FIFO, guarded by lock */
        struct job *held;         /* writer_hold(), guarded by lock */
        struct job **batch;       /* the transaction in progress */
        struct delivery **items;  /* batch[i]->delivery, as store_submit() wants it */
        /* the confirmed ones (confirm = api), as store_record_confirmed_batch() wants them */
        struct delivery **confirmed;
        struct api_fetch **fetches;
        int *faults;
        size_t batch_n;           /* guarded by lock */
        struct writer_task *tasks, *tasks_tail; /* FIFO, guarded by lock; lane 0 only */

        _Atomic int64_t commit_started_ms; /* 0 while idle */
        _Atomic int last_result;

        /* checkpoints, lane thread only */
        bool dirty;                  /* committed since the last checkpoint */
        int64_t next_truncate_ms;    /* monotonic */

        /* the hourly prune, lane 0's thread only */
        int64_t next_prune_ms;       /* monotonic; 0: at the first chance */
        int64_t pruned;              /* rows the prune in progress deleted so far */
        _Atomic int64_t rejected_rows; /* store_rejected_rows(), for /metrics */
};

struct writer {
        struct writer_options opts;
        writer_batch_cb on_batch;
        void *cb_data;
        _Atomic unsigned depth;      /* jobs in all the FIFOs, bounded by max_queue */
        _Atomic int64_t wal_limit;   /* bytes of WAL worth a TRUNCATE checkpoint */
        _Atomic unsigned keep_rejected_days;
        size_t n_lanes;
        struct lane lanes[];
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

/* FNV-1a: stable across runs and cheap; charge ids are short. */
static uint32_t fnv1a(const char *s)
{
        uint32_t h = 2166136261u;

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * 16777619u;
        return h;
}

/*
 * The lane for @job: by its charge id, so that one charge's deliveries stay
 * in FIFO order on one connection and two lanes never insert the same new
 * order; one without a charge id (a delivery rejected before its charge
 * could be read) on lane 0.
 */
static struct lane *lane_pick(struct writer *w, const struct job *job)
{
        const char *id = job->delivery.charge.id;

        if (w->n_lanes == 1 || !id[0])
                return &w->lanes[0];
        return &w->lanes[fnv1a(id) % w->n_lanes];
}

/* One more job queued unless all the lanes hold max_queue together. */
static bool depth_reserve(struct writer *w)
{
        if (atomic_fetch_add(&w->depth, 1) < w->opts.max_queue)
                return true;
        atomic_fetch_sub(&w->depth, 1);
        return false;
}

/* Take up to max_batch live jobs off the FIFO; expired ones are dropped. */
static size_t take_batch(struct lane *l)
{
        size_t n = 0;

        while (l->head && n < l->w->opts.max_batch) {
                struct job *job = l->head;

                l->head = job->next;
                if (!l->head)
                        l->tail = NULL;
                atomic_fetch_sub(&l->w->depth, 1);
                int queued = JOB_QUEUED;
                if (atomic_compare_exchange_strong(&job->state, &queued, JOB_TAKEN))
                        l->batch[n++] = job;
                else
                        job_unref(job); /* already answered by its deadline */
        }
        l->batch_n = n;
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

static void commit_batch(struct lane *l, size_t n)
{
        struct writer *w = l->w;
        int64_t started = time_monotonic_ms();

        atomic_store(&l->commit_started_ms, started);
        maybe_stall(w);
        size_t plain = 0, confirmed = 0;
        for (size_t i = 0; i < n; i++) {
                struct job *job = l->batch[i];
                if (!job->confirmed) {
                        l->items[plain++] = &job->delivery;
                } else {
                        l->confirmed[confirmed] = &job->delivery;
                        l->fetches[confirmed++] = &job->fetch;
                }
        }

        /* Commits take from well under a millisecond to seconds: microseconds. */
        int64_t t0 = time_monotonic_us();
        int r = plain > 0 ? store_submit(l->store, l->items, plain) : 0;
        /* Confirmed deliveries, each with its fetch, in a second transaction
         * of their own (one commit for all of them, as for plain ones); the
         * failure of one is its own (a 503), like a refused delivery's fault. */
        if (confirmed > 0) {
                int c = store_record_confirmed_batch(l->store, l->confirmed, l->fetches,
                                                     confirmed, l->faults);
                for (size_t i = 0, k = 0; i < n; i++)
                        if (l->batch[i]->confirmed)
                                l->batch[i]->delivery.fault = l->faults[k++];
                if (c < 0 && plain == 0 && r == 0)
                        r = c;
        }
        int64_t commit_us = time_monotonic_us() - t0;

        atomic_store(&l->last_result, r);
        atomic_store(&l->rejected_rows, store_rejected_rows(l->store));
        l->dirty |= r == 0;
        w->on_batch(l->batch, n, r, commit_us, w->cb_data);

        pthread_mutex_lock(&l->lock);
        l->batch_n = 0;
        pthread_mutex_unlock(&l->lock);
        atomic_store(&l->commit_started_ms, 0);

        for (size_t i = 0; i < n; i++) {
                /* A delivery the database refused on its own gets its own fault. */
                struct job *job = l->batch[i];
                int res = job->confirmed || r == 0 ? job->delivery.fault : r;
                if (job_claim(job, JOB_TAKEN))
                        job_answer(job, res);
                job_unref(l->batch[i]);
        }
}

/*
 * SQLite checkpoints by itself after commits, but a reader holding a
 * snapshot stops those short and the WAL grows. Once the writer is idle it
 * checkpoints what is left (PASSIVE: it never waits), and a WAL past
 * wal_limit is truncated as soon as no reader needs it (the TRUNCATE
 * attempt gives up at once while one does). SQLite has one lane; on
 * PostgreSQL a checkpoint is the server's and this does nothing.
 */
static void checkpoint(struct lane *l, bool idle)
{
        int64_t now = time_monotonic_ms();
        bool over = store_wal_bytes(l->store) > atomic_load(&l->w->wal_limit);

        if (!(idle && l->dirty) && !(over && now >= l->next_truncate_ms))
                return;
        if (over)
                l->next_truncate_ms = now + IDLE_MS;
        l->dirty = store_checkpoint(l->store, over) < 0;
}

/*
 * /healthz reports the last commit's result. A file deleted, replaced or
 * made read-only shows there at once, not only when the next webhook
 * fails. And once a commit has failed (disk full, I/O error, a lock held
 * past busy_timeout), nothing but a later commit would clear it, while a
 * load balancer trusting /healthz may be what keeps webhooks away: so the
 * idle writer tries a one-page write each idle second until one commits.
 * Timed like a commit, so a probe that hangs shows as a stuck writer.
 * Each lane probes its own connection (and so reconnects with its own
 * backoff).
 */
static void recheck(struct lane *l)
{
        int last = atomic_load(&l->last_result), r;

        if (last < 0) {
                atomic_store(&l->commit_started_ms, time_monotonic_ms());
                r = store_probe_write(l->store);
                atomic_store(&l->commit_started_ms, 0);
                l->dirty |= r == 0;
                if (r == 0)
                        log_notice("the database takes writes again (%s before)",
                                   store_strerror(last));
        } else {
                r = store_check_file(l->store);
        }
        if (r < 0)
                atomic_store(&l->last_result, r);
        else
                atomic_compare_exchange_strong(&l->last_result, &last, 0);
}

/* Lane 0 prunes for the whole writer: one prune at a time is enough. */
static bool prune_due(const struct lane *l)
{
        return l->index == 0 && atomic_load(&l->w->keep_rejected_days) > 0 &&
               time_monotonic_ms() >= l->next_prune_ms;
}

/*
 * One chunk of the age bound on rejected deliveries (keep_rejected_days);
 * a full chunk leaves the prune due, so the next one follows as long as no
 * delivery waits. The cap on their number is store_submit()'s.
 */
static void prune(struct lane *l)
{
        unsigned days = atomic_load(&l->w->keep_rejected_days);
        char cutoff[TIME_ISO_LEN];
        int64_t n = 0;

        time_format_iso(time_now_ms() - (int64_t) days * MS_PER_DAY, cutoff);
        int r = store_prune_rejected(l->store, cutoff, PRUNE_CHUNK, false, &n);
        if (r < 0) {
                log_warning("could not delete rejected deliveries older than %u days: %s; "
                            "trying again in %d minutes", days, store_strerror(r),
                            (int) (PRUNE_RETRY_MS / 60000));
                l->next_prune_ms = time_monotonic_ms() + PRUNE_RETRY_MS;
                return;
        }
        atomic_store(&l->rejected_rows, store_rejected_rows(l->store));
        l->dirty |= n > 0;
        l->pruned += n;
        if (n == PRUNE_CHUNK)
                return;
        if (l->pruned > 0)
                log_info("deleted %lld rejected deliveries received before %s "
                         "(keep_rejected_days = %u)", (long long) l->pruned, cutoff, days);
        l->pruned = 0;
        l->next_prune_ms = time_monotonic_ms() + PRUNE_EVERY_MS;
}

/* Wait for jobs; true when IDLE_MS passed without any. Called locked. */
static bool wait_for_work(struct lane *l)
{
        struct timespec until;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += IDLE_MS / 1000;
        while (!l->head && !l->tasks && !l->stopping)
                if (pthread_cond_timedwait(&l->wake, &l->lock, &until) == ETIMEDOUT)
                        return !l->head && !l->tasks && !l->stopping;
        return false;
}

/* Run the tasks queued now; those posted meanwhile wait for the next round,
 * so deliveries arriving in between are not kept waiting behind them. */
static void run_tasks(struct lane *l, struct writer_task *t)
{
        while (t) {
                struct writer_task *next = t->next;

                /* timed like a commit: a task that hangs is a stuck writer */
                atomic_store(&l->commit_started_ms, time_monotonic_ms());
                t->run(l->store, t);
                atomic_store(&l->commit_started_ms, 0);
                l->dirty = true;
                t = next;
        }
}

static void *lane_main(void *arg)
{
        struct lane *l = arg;

        for (;;) {
                pthread_mutex_lock(&l->lock);
                /* a due prune waits for no one: it runs when nothing is queued */
                bool idle = !prune_due(l) && wait_for_work(l);
                if (!l->head && !l->tasks && l->stopping) {
                        pthread_mutex_unlock(&l->lock);
                        break;
                }
                size_t n = take_batch(l);
                struct writer_task *tasks = l->tasks;
                l->tasks = l->tasks_tail = NULL;
                pthread_mutex_unlock(&l->lock);
                if (n > 0)
                        commit_batch(l, n);
                else if (!tasks && prune_due(l))
                        prune(l);
                run_tasks(l, tasks);
                if (idle)
                        recheck(l);
                checkpoint(l, idle);
        }
        return NULL;
}

static int lane_init(struct writer *w, unsigned index, struct store *store)
{
        struct lane *l = &w->lanes[index];
        size_t max = w->opts.max_batch;

        l->w = w;
        l->index = index;
        l->store = store;
        l->batch = calloc(max, sizeof(*l->batch));
        l->items = calloc(max, sizeof(*l->items));
        l->confirmed = calloc(max, sizeof(*l->confirmed));
        l->fetches = calloc(max, sizeof(*l->fetches));
        l->faults = calloc(max, sizeof(*l->faults));
        if (!l->batch || !l->items || !l->confirmed || !l->fetches || !l->faults)
                return -ENOMEM;
        atomic_init(&l->rejected_rows, store_rejected_rows(store));
        pthread_mutex_init(&l->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* idle timeouts ignore clock steps */
        pthread_cond_init(&l->wake, &attr);
        pthread_condattr_destroy(&attr);
        int r = pthread_create(&l->thread, NULL, lane_main, l);
        if (r != 0) {
                pthread_cond_destroy(&l->wake);
                pthread_mutex_destroy(&l->lock);
                return -r;
        }
        l->started = true;
        return 0;
}

/* Commit what is queued, join the thread, free the lane's memory. */
static void lane_stop(struct lane *l)
{
        if (l->started) {
                pthread_mutex_lock(&l->lock);
                l->stopping = true;
                pthread_cond_signal(&l->wake);
                pthread_mutex_unlock(&l->lock);
                pthread_join(l->thread, NULL);
                pthread_cond_destroy(&l->wake);
                pthread_mutex_destroy(&l->lock);
        }
        free(l->batch);
        free(l->items);
        free(l->confirmed);
        free(l->fetches);
        free(l->faults);
}

int writer_start(struct store *const *stores, size_t n_stores, const struct writer_options *opts,
                 writer_batch_cb on_batch, void *cb_data, struct writer **ret)
{
        if (n_stores < 1 || n_stores > WRITER_LANES_MAX)
                return -EINVAL;
        struct writer *w = calloc(1, sizeof(*w) + n_stores * sizeof(w->lanes[0]));
        int r = 0;

        if (!w)
                return -ENOMEM;
        w->opts = *opts;
        if (w->opts.max_batch == 0)
                w->opts.max_batch = 1;
        w->on_batch = on_batch;
        w->cb_data = cb_data;
        atomic_init(&w->wal_limit, opts->wal_limit_bytes ? opts->wal_limit_bytes : INT64_MAX);
        atomic_init(&w->keep_rejected_days, opts->keep_rejected_days);
        w->n_lanes = n_stores;
        for (size_t i = 0; i < n_stores && r == 0; i++)
                r = lane_init(w, (unsigned) i, stores[i]);
        if (r < 0) {
                writer_stop(w);
                return r;
        }
        *ret = w;
        return 0;
}

void writer_stop(struct writer *w)
{
        if (!w)
                return;
        for (size_t i = 0; i < w->n_lanes; i++)
                lane_stop(&w->lanes[i]);
        free(w);
}

/* Under the lock: @job, whose reference the queue now owns (and its place
 * counted in w->depth), joins the FIFO. */
static void enqueue_locked(struct lane *l, struct job *job)
{
        job->next = NULL;
        if (l->tail)
                l->tail->next = job;
        else
                l->head = job;
        l->tail = job;
        pthread_cond_signal(&l->wake);
}

int writer_submit(struct writer *w, struct job *job)
{
        struct lane *l = lane_pick(w, job);
        int r = 0;

        pthread_mutex_lock(&l->lock);
        if (l->stopping || l->closed)
                r = -ESHUTDOWN;
        else if (!depth_reserve(w))
                r = -EAGAIN;
        else {
                atomic_store(&job->state, JOB_QUEUED);
                job_ref(job);
                job->lane = l->index;
                enqueue_locked(l, job);
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

/*
 * Every task runs on lane 0, in the order posted. A task is a batch of
 * several charges in one transaction (the reconciler's records and sweeps,
 * the checkout's creations), so no one lane is its charge's; what keeps a
 * charge's effects in order is what keeps them in order across instances:
 * a task and a delivery of the same charge on another lane take the
 * order's row lock in turn, and each decides on the row as the other
 * committed it.
 */
int writer_post(struct writer *w, struct writer_task *task)
{
        struct lane *l = &w->lanes[0];
        int r = 0;

        pthread_mutex_lock(&l->lock);
        if (l->stopping)
                r = -ESHUTDOWN;
        else {
                task->next = NULL;
                if (l->tasks_tail)
                        l->tasks_tail->next = task;
                else
                        l->tasks = task;
                l->tasks_tail = task;
                pthread_cond_signal(&l->wake);
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

/* Under the lock: answer queued and running jobs due by @now_ms with @result. */
static void answer_due(struct lane *l, int64_t now_ms, int result)
{
        for (struct job *job = l->head; job; job = job->next)
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_QUEUED))
                        job_answer(job, result);
        for (size_t i = 0; i < l->batch_n; i++) {
                struct job *job = l->batch[i];
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_TAKEN))
                        job_answer(job, result);
        }
        for (struct job *job = l->held; job; job = job->held_next)
                if (job->deadline_ms <= now_ms && job_claim(job, JOB_QUEUED))
                        job_answer(job, result);
}

int writer_hold(struct writer *w, struct job *job)
{
        struct lane *l = lane_pick(w, job);
        int r = 0;

        pthread_mutex_lock(&l->lock);
        if (l->stopping || l->closed)
                r = -ESHUTDOWN;
        else {
                atomic_store(&job->state, JOB_QUEUED);
                job_ref(job);
                job->lane = l->index;
                job->held_next = l->held;
                l->held = job;
        }
        pthread_mutex_unlock(&l->lock);
        return r;
}

void writer_release_held(struct writer *w, struct job *job, int result)
{
        struct lane *l = &w->lanes[job->lane]; /* writer_hold()'s */

        pthread_mutex_lock(&l->lock);
        for (struct job **p = &l->held; *p; p = &(*p)->held_next)
                if (*p == job) {
                        *p = job->held_next;
                        break;
                }
        if (result == 0 && (l->stopping || l->closed))
                result = -ESHUTDOWN;
        /* (one answered by its deadline while held is only let go, below) */
        if (result == 0 && atomic_load(&job->state) == JOB_QUEUED) {
                if (depth_reserve(w)) {
                        enqueue_locked(l, job); /* the held reference becomes the queue's */
                        pthread_mutex_unlock(&l->lock);
                        return;
                }
                result = -EAGAIN;
        }
        if (job_claim(job, JOB_QUEUED))
                job_answer(job, result < 0 ? result : -ESHUTDOWN);
        pthread_mutex_unlock(&l->lock);
        job_unref(job);
}

void writer_expire(struct writer *w, int64_t now_ms)
{
        for (size_t i = 0; i < w->n_lanes; i++) {
                struct lane *l = &w->lanes[i];

                pthread_mutex_lock(&l->lock);
                answer_due(l, now_ms, -ETIMEDOUT);
                pthread_mutex_unlock(&l->lock);
        }
}

void writer_shutdown(struct writer *w)
{
        for (size_t i = 0; i < w->n_lanes; i++) {
                struct lane *l = &w->lanes[i];

                pthread_mutex_lock(&l->lock);
                l->closed = true;
                answer_due(l, INT64_MAX, -ESHUTDOWN);
                pthread_mutex_unlock(&l->lock);
        }
}

unsigned writer_queue_depth(struct writer *w)
{
        return atomic_load(&w->depth);
}

bool writer_making_progress(struct writer *w, int64_t now_ms)
{
        /* A commit blocked by another process's lock gives up after
         * busy_timeout; only one running far longer than that is stuck. */
        int64_t limit = 2 * (int64_t) w->opts.busy_timeout_ms + w->opts.commit_timeout_ms + 1000;

        for (size_t i = 0; i < w->n_lanes; i++) {
                int64_t started = atomic_load(&w->lanes[i].commit_started_ms);
                if (started != 0 && now_ms - started >= limit)
                        return false;
        }
        return true;
}

/* The first lane's failure: one connection that cannot write is a problem. */
int writer_last_result(struct writer *w)
{
        for (size_t i = 0; i < w->n_lanes; i++) {
                int r = atomic_load(&w->lanes[i].last_result);
                if (r < 0)
                        return r;
        }
        return 0;
}

void writer_set_wal_limit(struct writer *w, int64_t bytes)
{
        atomic_store(&w->wal_limit, bytes > 0 ? bytes : INT64_MAX);
}

void writer_set_keep_rejected_days(struct writer *w, unsigned days)
{
        atomic_store(&w->keep_rejected_days, days);
}

/*
 * Each lane's store counts the rejected rows it saw at connect plus those
 * it added or deleted since (as one instance among several does): the
 * largest of these is the closest.
 */
int64_t writer_rejected_rows(struct writer *w)
{
        int64_t most = atomic_load(&w->lanes[0].rejected_rows);

        for (size_t i = 1; i < w->n_lanes; i++) {
                int64_t n = atomic_load(&w->lanes[i].rejected_rows);
                if (n > most)
                        most = n;
        }
        return most;
}
