/*
 * runtime — what the daemon's threads share while it runs: the current
 * settings (swapped whole on SIGHUP), the pool of read-only database
 * handles for lookups, the writer, and the count of requests in flight.
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "cashpay/config.h"
#include "cashpay/store.h"
#include "cashpay/util.h"
#include "cashpay/secrets.h"
#include "cashpay/verify.h"
#include "src/daemon/writer.h"

/* An immutable snapshot of everything a request needs from the config. */
struct settings {
        struct config *cfg;
        struct secret_set secrets;
        struct verify_params verify;
        struct secret_set checkout_tokens; /* [checkout] token_file; n == 0: none asked for */
};

struct reader_pool;
struct reconciler;
struct checkout_server;

struct runtime {
        pthread_rwlock_t settings_lock;
        struct settings *settings;   /* read under settings_lock */
        struct writer *writer;
        struct reader_pool *readers;
        struct reconciler *reconciler; /* [cashpay] api_url set; fixed from start to stop */
        _Atomic int in_flight;       /* requests between first call and completion */
        _Atomic bool draining;       /* shutting down: new requests get 503 and a close */
};

/*
 * settings_new() - take ownership of @cfg and load its secrets.
 * On failure @cfg is freed and @err says why (never with secret material).
 */
int settings_new(struct config *cfg, struct settings **ret, char *err, size_t err_len);
void settings_free(struct settings *s);
DEFINE_FREEP(struct settings, settings_free)

/* Read access for the duration of one handler call. */
const struct settings *runtime_settings_acquire(struct runtime *rt);
void runtime_settings_release(struct runtime *rt);

/* runtime_settings_swap() - install @next; the old snapshot is freed. */
void runtime_settings_swap(struct runtime *rt, struct settings *next);

/*
 * A small pool of read-only store handles: SQLite handles are used by one
 * thread at a time, and HTTP threads must never wait for the writer.
 */
int reader_pool_new(const struct config *cfg, unsigned size, struct reader_pool **ret,
                    char *err, size_t err_len);
void reader_pool_free(struct reader_pool *pool);
struct store *reader_pool_acquire(struct reader_pool *pool);
void reader_pool_release(struct reader_pool *pool, struct store *s);
