/*
 * runtime — shared daemon state; see runtime.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/daemon/runtime.h"

/* The checkout listener's bearer tokens ([checkout] token_file): one per
 * line, like the webhook secrets, so that a token can be rotated without
 * downtime (both lines valid until the app uses the new one). */
static int load_checkout_tokens(struct settings *s, char *err, size_t err_len)
{
        const struct config *cfg = s->cfg;

        if (!cfg->cashpay.api_url || cfg->checkout.listen.n == 0 || !cfg->checkout.token_file)
                return 0;
        return secrets_load(cfg->checkout.token_file, VERIFY_HMAC, &s->checkout_tokens, err,
                            err_len);
}

int settings_new(struct config *cfg, struct settings **ret, char *err, size_t err_len)
{
        struct settings *s = calloc(1, sizeof(*s));
        int r;

        if (!s) {
                config_free(cfg);
                return err_set(err, err_len, -ENOMEM, "out of memory");
        }
        s->cfg = cfg;
        verify_params_from_config(cfg, &s->verify);
        if (cfg->webhook.verify != VERIFY_NONE) {
                r = secrets_load(cfg->webhook.secret_file, cfg->webhook.verify,
                                     &s->secrets, err, err_len);
                if (r < 0) {
                        settings_free(s);
                        return r;
                }
        }
        r = load_checkout_tokens(s, err, err_len);
        if (r < 0) {
                settings_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void settings_free(struct settings *s)
{
        if (!s)
                return;
        secrets_wipe(&s->secrets);
        secrets_wipe(&s->checkout_tokens);
        config_free(s->cfg);
        free(s);
}

const struct settings *runtime_settings_acquire(struct runtime *rt)
{
        pthread_rwlock_rdlock(&rt->settings_lock);
        return rt->settings;
}

void runtime_settings_release(struct runtime *rt)
{
        pthread_rwlock_unlock(&rt->settings_lock);
}

void runtime_settings_swap(struct runtime *rt, struct settings *next)
{
        pthread_rwlock_wrlock(&rt->settings_lock);
        struct settings *old = rt->settings;
        rt->settings = next;
        pthread_rwlock_unlock(&rt->settings_lock);
        settings_free(old);
}

struct reader_pool {
        pthread_mutex_t lock;
        pthread_cond_t available;
        unsigned size, n_free;
        struct store **all;
        struct store **free_list;
};

int reader_pool_new(const struct config *cfg, unsigned size, struct reader_pool **ret,
                    char *err, size_t err_len)
{
        struct reader_pool *pool = calloc(1, sizeof(*pool));
        /* Lookups must not queue behind a foreign lock for long: they
         * serve a customer's browser, which simply reloads. */
        struct store_options opts = {
                .backend = cfg->database.backend,
                .url = cfg->database.url,
                .password_file = cfg->database.password_file,
                .path = cfg->database.path,
                .synchronous = cfg->database.synchronous,
                .busy_timeout_ms = cfg->database.busy_timeout < 1000 ? cfg->database.busy_timeout : 1000,
                .read_only = true,
        };

        if (!pool)
                return -ENOMEM;
        pthread_mutex_init(&pool->lock, NULL);
        pthread_cond_init(&pool->available, NULL);
        pool->all = calloc(size, sizeof(*pool->all));
        pool->free_list = calloc(size, sizeof(*pool->free_list));
        if (!pool->all || !pool->free_list) {
                reader_pool_free(pool);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < size; i++) {
                int r = store_new(&opts, &pool->all[i], err, err_len);
                if (r < 0) {
                        reader_pool_free(pool);
                        return r;
                }
                pool->size++;
                pool->free_list[pool->n_free++] = pool->all[i];
        }
        *ret = pool;
        return 0;
}

void reader_pool_free(struct reader_pool *pool)
{
        if (!pool)
                return;
        for (unsigned i = 0; i < pool->size; i++)
                store_free(pool->all[i]);
        free(pool->all);
        free(pool->free_list);
        pthread_cond_destroy(&pool->available);
        pthread_mutex_destroy(&pool->lock);
        free(pool);
}

struct store *reader_pool_acquire(struct reader_pool *pool)
{
        pthread_mutex_lock(&pool->lock);
        while (pool->n_free == 0)
                pthread_cond_wait(&pool->available, &pool->lock);
        struct store *s = pool->free_list[--pool->n_free];
        pthread_mutex_unlock(&pool->lock);
        return s;
}

void reader_pool_release(struct reader_pool *pool, struct store *s)
{
        pthread_mutex_lock(&pool->lock);
        pool->free_list[pool->n_free++] = s;
        pthread_cond_signal(&pool->available);
        pthread_mutex_unlock(&pool->lock);
}
