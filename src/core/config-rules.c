/*
 * config-rules — the rules that tie keys together, checked once the whole
 * file has been read: verify = none needs insecure_no_verify (or confirm =
 * api), the paths must differ, listeners must not overlap, the API needs
 * exactly one way to a token. A single value is config-value.c's
 * job. An error is reported on the later of the lines involved, where the
 * conflict became visible.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cashpay/config.h"
#include "cashpay/util.h"
#include "src/core/config-internal.h"
#include "src/core/config-value.h"

struct rule_ctx {
        const struct config *cfg;
        const unsigned *lines;  /* per key, may be NULL */
        const char *path;       /* NULL for the defaults */
        char *err;
        size_t err_len;
};

static unsigned line_of(const struct rule_ctx *c, const void *field)
{
        size_t off = (size_t)((const char *)field - (const char *)c->cfg);

        size_t n;
        const struct config_key *keys = config_keys(&n);

        for (size_t i = 0; c->lines && i < n; i++)
                if (keys[i].offset == off)
                        return c->lines[i];
        return 0;
}

static int rule_fail(const struct rule_ctx *c, const void *f1, const void *f2,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int rule_fail(const struct rule_ctx *c, const void *f1, const void *f2,
                     const char *fmt, ...)
{
        unsigned l1 = line_of(c, f1), l2 = f2 ? line_of(c, f2) : 0;
        unsigned line = l1 > l2 ? l1 : l2;
        const char *path = c->path ? c->path : "(defaults)";
        int n;
        va_list ap;

        if (!c->err || c->err_len == 0)
                return -EINVAL;
        if (line)
                n = snprintf(c->err, c->err_len, "%s:%u: ", path, line);
        else
                n = snprintf(c->err, c->err_len, "%s: ", path);
        if (n < 0 || (size_t) n >= c->err_len)
                return -EINVAL;
        va_start(ap, fmt);
        err_setv(c->err + n, c->err_len - (size_t) n, -EINVAL, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int check_verify(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;

        /* with confirm = api the API, not the body, is believed */
        if (cfg->webhook.verify == VERIFY_NONE && !cfg->webhook.insecure_no_verify &&
            !config_confirm_api(cfg))
                return rule_fail(c, &cfg->webhook.verify, &cfg->webhook.insecure_no_verify,
                                 "[webhook] verify = none requires insecure_no_verify = yes "
                                 "or confirm = api");
        if (cfg->webhook.verify == VERIFY_STANDARD_WEBHOOKS && cfg->webhook.timestamp_header)
                return rule_fail(c, &cfg->webhook.verify, &cfg->webhook.timestamp_header,
                                 "[webhook] timestamp_header cannot be used with verify = "
                                 "standard-webhooks, which signs webhook-timestamp itself");
        return 0;
}

/* Is @path equal to @prefix or below it? */
static bool path_below(const char *path, const char *prefix)
{
        size_t n = strlen(prefix);

        if (strcmp(prefix, "/") == 0)
                return true;
        return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int check_paths(const struct rule_ctx *c)
{
        char *const *p[] = { &c->cfg->http.webhook_path, &c->cfg->http.return_path };
        const char *const names[] = { "webhook_path", "return_path" };
        const char *status = c->cfg->http.status_path;

        if (strcmp(*p[0], *p[1]) == 0)
                return rule_fail(c, p[0], p[1], "[http] webhook_path and return_path "
                                 "must differ");
        for (size_t i = 0; i < 2; i++)
                if (path_below(*p[i], status))
                        return rule_fail(c, p[i], &c->cfg->http.status_path,
                                         "[http] %s must not be status_path or lie below it",
                                         names[i]);
        return 0;
}

static int check_overlap(const struct rule_ctx *c, const struct listen_list *a,
                         const char *a_name, const struct listen_list *b, const char *b_name)
{
        for (size_t i = 0; i < a->n; i++)
                for (size_t j = 0; j < b->n; j++)
                        if (config_listen_conflict(&a->items[i], &b->items[j]))
                                return rule_fail(c, a, b, "[%s] listen '%s' overlaps "
                                                 "[%s] listen '%s'", a_name, a->items[i].text,
                                                 b_name, b->items[j].text);
        return 0;
}

static int check_listen(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;
        int r;

        r = check_overlap(c, &cfg->admin.listen, "admin", &cfg->http.listen, "http");
        if (r == 0 && cfg->cashpay.api_url)
                r = check_overlap(c, &cfg->checkout.listen, "checkout", &cfg->http.listen,
                                  "http");
        if (r == 0 && cfg->cashpay.api_url)
                r = check_overlap(c, &cfg->checkout.listen, "checkout", &cfg->admin.listen,
                                  "admin");
        return r;
}

/* One way to a token, with what it needs. */
static int check_token_source(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;
        const void *api = &cfg->cashpay.api_url;

        if (cfg->cashpay.token_file && cfg->cashpay.token_url)
                return rule_fail(c, &cfg->cashpay.token_file, &cfg->cashpay.token_url,
                                 "[cashpay] token_file and token_url exclude each other");
        if (!cfg->cashpay.token_file && !cfg->cashpay.token_url)
                return rule_fail(c, api, NULL, "[cashpay] api_url needs token_file or "
                                 "token_url");
        if (cfg->cashpay.token_url && !cfg->cashpay.client_id)
                return rule_fail(c, &cfg->cashpay.token_url, &cfg->cashpay.client_id,
                                 "[cashpay] token_url needs client_id");
        return 0;
}

static int check_tls(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;

        if (!cfg->http.tls_cert != !cfg->http.tls_key)
                return rule_fail(c, &cfg->http.tls_cert, &cfg->http.tls_key,
                                 "[http] tls_cert and tls_key are set together or not at all");
        return 0;
}

static int check_cashpay(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;

        if (cfg->webhook.confirm == CONFIRM_API && !cfg->cashpay.api_url)
                return rule_fail(c, &cfg->webhook.confirm, &cfg->cashpay.api_url,
                                 "[webhook] confirm = api needs [cashpay] api_url");
        if (!cfg->cashpay.api_url)
                return 0;
        if (cfg->cashpay.refresh_margin >= cfg->cashpay.token_lifetime)
                return rule_fail(c, &cfg->cashpay.refresh_margin, &cfg->cashpay.token_lifetime,
                                 "[cashpay] refresh_margin must be less than token_lifetime");
        if (cfg->cashpay.reconcile_after >= cfg->cashpay.reconcile_for)
                return rule_fail(c, &cfg->cashpay.reconcile_after, &cfg->cashpay.reconcile_for,
                                 "[cashpay] reconcile_after must be less than reconcile_for");
        if (cfg->checkout.listen.n > 0 && !cfg->cashpay.public_url)
                return rule_fail(c, &cfg->checkout.listen, &cfg->cashpay.api_url,
                                 "[checkout] listen creates charges, which need [cashpay] "
                                 "public_url (or set listen empty)");
        return check_token_source(c);
}

/* PostgreSQL needs a server to talk to, and only it takes several writer
 * connections (SQLite has one writer at a time); the API features run on
 * both backends (on PostgreSQL the reconciler's queue is shared out among
 * the instances, see pg-api.c). */
static int check_database(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;

        if (cfg->database.backend != DB_BACKEND_POSTGRESQL) {
                if (cfg->database.url)
                        return rule_fail(c, &cfg->database.url, &cfg->database.backend,
                                         "[database] url is for backend = postgresql");
                if (cfg->database.writer_connections > 1)
                        return rule_fail(c, &cfg->database.writer_connections,
                                         &cfg->database.backend,
                                         "[database] writer_connections = %u needs backend = "
                                         "postgresql: SQLite has one writer (set 1, or leave "
                                         "it unset)", cfg->database.writer_connections);
                return 0;
        }
        if (!cfg->database.url)
                return rule_fail(c, &cfg->database.backend, NULL,
                                 "[database] backend = postgresql needs url (a libpq "
                                 "connection string)");
        return 0;
}

int config_rules_check(const struct config *cfg, const unsigned *lines, const char *path,
                       char *err, size_t err_len)
{
        const struct rule_ctx ctx = {
                .cfg = cfg, .lines = lines, .path = path, .err = err, .err_len = err_len,
        };
        const struct rule_ctx *c = &ctx;
        int r;

        r = check_verify(c);
        if (r == 0)
                r = check_tls(c);
        if (r == 0)
                r = check_paths(c);
        if (r == 0)
                r = check_listen(c);
        if (r == 0)
                r = check_cashpay(c);
        if (r == 0)
                r = check_database(c);
        return r;
}

/* A secret file left unset: the systemd credential if there is one. */
static int resolve_credential(char **file, const char *credential, const char *fallback)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");

        if (*file)
                return 0;
        if (dir && dir[0]) {
                if (asprintf(file, "%s/%s", dir, credential) < 0) {
                        *file = NULL;
                        return -ENOMEM;
                }
                return 0;
        }
        *file = strdup(fallback);
        return *file ? 0 : -ENOMEM;
}

/* TLS from the credentials tls-cert and tls-key, when the first exists. */
static int resolve_tls_credentials(struct config *cfg)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        char *cert = NULL, *key = NULL;

        if (cfg->http.tls_cert || cfg->http.tls_key || !dir || !dir[0])
                return 0;
        if (asprintf(&cert, "%s/%s", dir, CONFIG_TLS_CERT_CREDENTIAL) < 0)
                return -ENOMEM;
        if (access(cert, F_OK) < 0) {
                free(cert);
                return 0;
        }
        if (asprintf(&key, "%s/%s", dir, CONFIG_TLS_KEY_CREDENTIAL) < 0) {
                free(cert);
                return -ENOMEM;
        }
        cfg->http.tls_cert = cert;
        cfg->http.tls_key = key;
        return 0;
}

/* The database password: the systemd credential only when it is there,
 * since a server may need none (peer or certificate authentication). */
static int resolve_db_password(char **file)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");

        if (*file || !dir || !dir[0])
                return 0;
        if (asprintf(file, "%s/%s", dir, CONFIG_DB_PASSWORD_CREDENTIAL) < 0) {
                *file = NULL;
                return -ENOMEM;
        }
        if (access(*file, F_OK) < 0) {
                free(*file);
                *file = NULL;
        }
        return 0;
}

int config_resolve_secret_file(struct config *cfg)
{
        int r;

        r = resolve_db_password(&cfg->database.password_file);
        if (r < 0)
                return r;
        r = resolve_tls_credentials(cfg);
        if (r < 0)
                return r;

        r = resolve_credential(&cfg->webhook.secret_file, CONFIG_SECRET_CREDENTIAL,
                               CONFIG_DEFAULT_SECRET_FILE);
        if (r < 0)
                return r;
        return resolve_credential(&cfg->cashpay.client_secret_file,
                                  CONFIG_CLIENT_SECRET_CREDENTIAL,
                                  CONFIG_DEFAULT_CLIENT_SECRET_FILE);
}
