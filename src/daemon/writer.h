/*
 * writer — the threads that write to the database.
 *
 * HTTP threads hand it verified, parsed deliveries and suspend their
 * connections. The writer commits everything queued in one BEGIN IMMEDIATE
 * transaction (group commit: a lone delivery is committed at once, and
 * whatever arrives while a commit runs forms the next batch), then wakes each
 * connection with its own result.
 *
 * It does so on 1..WRITER_LANES_MAX lanes, each a thread with its own queue
 * and its own store ([database] writer_connections; SQLite has one). A
 * delivery goes to the lane of its charge id, so one charge's deliveries
 * are committed in the order they came, on one connection; on PostgreSQL
 * two lanes meet the way two instances do (pg-submit.c). One connection
 * waits for each batch's round trips and COMMIT before it takes the next:
 * a second one commits meanwhile.
 *
 * When idle for a second it checkpoints the WAL (see checkpoint() in
 * writer.c) and checks that the database file is still there and writable.
 * Once an hour, whenever no delivery is waiting, it deletes the rejected
 * deliveries older than keep_rejected_days, in short transactions of its own.
 *
 * libmicrohttpd never times out a suspended connection, so every queued
 * delivery has a deadline; writer_expire() answers late ones with 503 from
 * the main loop, even while the writer thread is stuck inside a commit.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cashpay/store-api.h"
#include "cashpay/store.h"

struct writer;

/* Who is answering a job: exactly one of the writer or the deadline. */
enum job_state { JOB_QUEUED, JOB_TAKEN, JOB_ANSWERED };

/*
 * A delivery waiting for its commit. Reference-counted: the HTTP request and
 * the writer each hold one while they use it.
 */
struct job {
        struct delivery delivery;
        int64_t deadline_ms;           /* monotonic */
        int result;                    /* 0 committed; -EINVAL/-E2BIG: the database refused
                                        * this delivery (500); other -errno: 503 */
        _Atomic int state;             /* enum job_state */
        _Atomic int refs;
        void (*wake)(struct job *job); /* resumes the HTTP connection */
        void *wake_data;
        struct job *next;              /* queue link, owned by the writer */

        /* confirm = api (§8.4): the charge as the API reported it, recorded
         * with the delivery by store_record_confirmed(). fetch's charge,
         * body and error are owned by the job. */
        bool confirmed;
        struct api_fetch fetch;
        struct job *held_next;         /* writer_hold() list, owned by the writer */
        unsigned lane;                 /* the writer's lane for it (writer_submit(),
                                        * writer_hold()), owned by the writer */
};

/*
 * Other work on the writer's database connection (the reconciler's reads
 * and the fetches it records), so that every write still goes through
 * the writer and the one state machine. Run in order between batches, all
 * on the first lane; run() owns the task (frees it). Nothing in one may
 * wait on the network: a task takes the connection from webhooks while
 * it runs.
 */
struct writer_task {
        void (*run)(struct store *store, struct writer_task *task);
        struct writer_task *next;      /* owned by the writer */
};

struct writer_options {
        unsigned max_batch;
        unsigned max_queue;
        unsigned commit_timeout_ms;
        unsigned busy_timeout_ms;
        int64_t wal_limit_bytes;       /* try to truncate a WAL past this (0: never) */
        unsigned keep_rejected_days;   /* prune older rejected deliveries hourly (0: never) */
        const char *stall_file;        /* tests: stall before commits while this file exists */
};

/* Called on the writer thread after each commit attempt (metrics, logs). */
typedef void (*writer_batch_cb)(struct job *const *jobs, size_t n, int result,
                                int64_t commit_us, void *data);

/* The most lanes a writer has ([database] writer_connections' bound). */
#define WRITER_LANES_MAX 8

/*
 * writer_start() - one lane per store of @stores (1..WRITER_LANES_MAX; the
 * first also runs the tasks and the prune). Called on the lanes' threads,
 * @on_batch may run on several at once.
 */
int writer_start(struct store *const *stores, size_t n_stores, const struct writer_options *opts,
                 writer_batch_cb on_batch, void *cb_data, struct writer **ret);

/* writer_stop() - commit what is queued, join the threads. NULL-safe.
 * The stores stay open; the caller closes them. */
void writer_stop(struct writer *w);

struct job *job_new(void);
void job_ref(struct job *job);
void job_unref(struct job *job);

/*
 * writer_submit() - queue @job (takes a reference). Returns 0, -EAGAIN when
 * the queue is full, or -ESHUTDOWN. On error the job was not queued and will
 * never be woken.
 */
int writer_submit(struct writer *w, struct job *job);

/*
 * writer_hold() - @job waits for something else (the API's answer) before
 * it is queued: from now on its deadline and writer_shutdown() answer it
 * like a queued job (takes a reference). Returns 0 or -ESHUTDOWN.
 * writer_release_held() - the wait is over: queue it (@result 0) or, if
 * the deadline did not answer it already, answer it with @result < 0.
 * Either way the writer's reference from writer_hold() goes.
 */
int writer_hold(struct writer *w, struct job *job);
void writer_release_held(struct writer *w, struct job *job, int result);

/*
 * writer_post() - queue @task. Tasks are taken until writer_stop() (also
 * after writer_shutdown()), and every one taken runs before the thread
 * ends. Returns 0 or -ESHUTDOWN (then the caller still owns @task).
 */
int writer_post(struct writer *w, struct writer_task *task);

/*
 * writer_shutdown() - refuse further jobs (writer_submit() says -ESHUTDOWN) and
 * answer every job not yet answered with -ESHUTDOWN, so that no connection
 * stays suspended (libmicrohttpd aborts when stopped with one). The thread
 * goes on until writer_stop().
 */
void writer_shutdown(struct writer *w);

/* writer_expire() - answer every job past its deadline with -ETIMEDOUT. */
void writer_expire(struct writer *w, int64_t now_ms);

/* writer_queue_depth() - jobs waiting for a transaction, on all lanes
 * (max_queue bounds them together). */
unsigned writer_queue_depth(struct writer *w);

/*
 * writer_making_progress() - false when one commit (on any lane) has been
 * running for longer than a busy database can explain (a stuck writer).
 * Gates WATCHDOG=1.
 */
bool writer_making_progress(struct writer *w, int64_t now_ms);

/* writer_last_result() - result of the newest commit attempt (0 or -errno),
 * or the database file's problem (store_check_file()) seen while idle: of
 * the first lane whose is a failure. */
int writer_last_result(struct writer *w);

/* writer_set_wal_limit() - change wal_limit_bytes (on reload). */
void writer_set_wal_limit(struct writer *w, int64_t bytes);

/* writer_set_keep_rejected_days() - change keep_rejected_days (on reload). */
void writer_set_keep_rejected_days(struct writer *w, unsigned days);

/* writer_rejected_rows() - store_rejected_rows() as of the writer's last
 * commit or prune: -1 without a cap on rejected rows. */
int64_t writer_rejected_rows(struct writer *w);
