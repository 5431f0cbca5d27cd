/*
 * ctl — cashpayctl's shared plumbing: option helpers, messages with the
 * right exit code, and loading the configuration and the store the same way
 * for every command.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/util.h"
#include "src/ctl/ctl.h"

static void vmessage(const char *prefix, const char *fmt, va_list ap)
        __attribute__((format(printf, 2, 0)));

static void vmessage(const char *prefix, const char *fmt, va_list ap)
{
        fflush(stdout);
        fprintf(stderr, "%s: ", prefix);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
}

int ctl_fail(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vmessage("cashpayctl", fmt, ap);
        va_end(ap);
        return CTL_EXIT_FAIL;
}

int ctl_fail_errno(int r, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        va_start(ap, fmt);
        err_setv(msg, sizeof(msg), r, fmt, ap);
        va_end(ap);
        return ctl_fail("%s: %s", msg, strerror(r < 0 ? -r : r));
}

int ctl_printed(int r)
{
        if (r == -ENOMEM)
                return ctl_fail("out of memory");
        if (r < 0 && r != -EPIPE)
                return ctl_fail_errno(r, "cannot print");
        return CTL_EXIT_OK;
}

int ctl_usage_error(struct ctl *c, const char *fmt, ...)
{
        const char *name = c->command ? c->command->name : NULL;
        char prefix[64];
        va_list ap;

        snprintf(prefix, sizeof(prefix), "cashpayctl%s%s", name ? " " : "", name ? name : "");
        va_start(ap, fmt);
        vmessage(prefix, fmt, ap);
        va_end(ap);
        fprintf(stderr, "Try '%s --help'.\n", prefix);
        return CTL_EXIT_USAGE;
}

int ctl_common_option(struct ctl *c, int opt)
{
        switch (opt) {
        case OPT_CONFIG:
                c->config_path = optarg;
                return CTL_CONTINUE;
        case OPT_DB:
                c->db_path = optarg;
                return CTL_CONTINUE;
        case OPT_JSON:
                c->json = true;
                return CTL_CONTINUE;
        case 'h':
                ctl_print_help(c->command);
                return CTL_EXIT_OK;
        case ':':
                return ctl_usage_error(c, "option '%s' needs a value", c->argv[optind - 1]);
        default:
                return ctl_usage_error(c, "unrecognized option '%s'", c->argv[optind - 1]);
        }
}

int ctl_parse_options(struct ctl *c, int argc, char **argv, const struct option *opts,
                      ctl_option_fn *option, void *ctx)
{
        static const struct option common[] = { CTL_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
        int opt, r;

        /* "+": stop at the first argument; ":": a missing value is ':', not '?'. */
        while ((opt = getopt_long(argc, argv, "+:h", opts ? opts : common, NULL)) != -1) {
                r = option ? option(c, opt, ctx) : ctl_common_option(c, opt);
                if (r != CTL_CONTINUE)
                        return r;
        }
        return CTL_CONTINUE;
}

int ctl_positional(struct ctl *c, int argc, char **argv, int n, char ***ret)
{
        int have = argc - optind;

        if (have < n)
                return ctl_usage_error(c, "missing argument: cashpayctl %s %s",
                                       c->command->name, c->command->args);
        if (have > n)
                return ctl_usage_error(c, "unexpected argument '%s'", argv[optind + n]);
        if (ret)
                *ret = argv + optind;
        return CTL_CONTINUE;
}

int ctl_parse_uint(const char *s, unsigned long long min, unsigned long long max,
                   unsigned long long *ret)
{
        unsigned long long v;
        char *end;

        if (!s || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int load_file(struct ctl *c, const char *path)
{
        char err[512] = "";
        int r;

        r = config_load(path, &c->cfg, err, sizeof(err));
        if (r < 0)
                return ctl_fail("%s", err[0] ? err : strerror(-r));
        return 0;
}

int ctl_load_config(struct ctl *c)
{
        int r;

        if (c->cfg)
                return 0;
        if (c->config_path)
                r = load_file(c, c->config_path);
        else if (c->db_path)
                r = config_new_defaults(&c->cfg) < 0 ? ctl_fail("out of memory") : 0;
        else
                r = load_file(c, CONFIG_DEFAULT_PATH);
        if (r != 0)
                return r;
        if (c->db_path) {
                char *p = strdup(c->db_path);
                if (!p)
                        return ctl_fail("out of memory");
                free(c->cfg->database.path);
                c->cfg->database.path = p;
        }
        return 0;
}

int ctl_store_error(struct ctl *c, int r, const char *what)
{
        const char *path = c->cfg ? c->cfg->database.path : "database";

        /* The connection string may hold a password: the server's own
         * words were printed where the connection failed. */
        if (c->cfg && c->cfg->database.backend == DB_BACKEND_POSTGRESQL && r == -ETIMEDOUT)
                return ctl_fail("%s: PostgreSQL database: a lock held by another "
                                "transaction (waited %u ms), or the server's "
                                "statement_timeout; try again", what,
                                c->cfg->database.busy_timeout);
        if (c->cfg && c->cfg->database.backend == DB_BACKEND_POSTGRESQL)
                return ctl_fail("%s: PostgreSQL database: %s", what,
                                r == -ENOENT ? "not found" : store_strerror(r));
        switch (r) {
        case -EBUSY:
                return ctl_fail("%s: database %s is locked by another process "
                                "(waited %u ms); try again", what, path,
                                c->cfg ? c->cfg->database.busy_timeout : 0);
        case -EACCES:
                return ctl_fail("%s: permission denied for database %s", what, path);
        case -ENOENT:
                return ctl_fail("%s: database %s does not exist "
                                "(create it with 'cashpayctl migrate')", what, path);
        case -EROFS:
                return ctl_fail("%s: database %s is read-only", what, path);
        default:
                return ctl_fail("%s: database %s: %s", what, path, store_strerror(r));
        }
}

bool ctl_command_on_postgresql(const struct ctl *c)
{
        static const char *const on_pg[] = { "orders", "show", "deliveries", "events",
                                             "fulfil", "review-done", "prune", "charge",
                                             "sync", "reconcile" };

        for (size_t i = 0; c->command && i < sizeof(on_pg) / sizeof(on_pg[0]); i++)
                if (strcmp(c->command->name, on_pg[i]) == 0)
                        return true;
        return false;
}

int ctl_open_store(struct ctl *c, enum ctl_store_mode mode)
{
        struct store_options opts;
        char err[512] = "";
        int r;

        r = ctl_load_config(c);
        if (r != 0)
                return r;
        bool pg = c->cfg->database.backend == DB_BACKEND_POSTGRESQL;
        /* Listings, fulfilment, prune and the API commands go through calls
         * both engines serve; migrate is SQLite's (the daemon migrates a
         * PostgreSQL database itself, under an advisory lock). */
        if (pg && !ctl_command_on_postgresql(c))
                return ctl_fail("cashpayctl %s does not support [database] backend = "
                                "postgresql: cashpayd migrates such a database itself "
                                "at start", c->command->name);
        if (pg && c->db_path)
                return ctl_fail("--db names an SQLite file; this configuration has "
                                "[database] backend = postgresql");
        opts = (struct store_options) {
                .backend = c->cfg->database.backend,
                .url = c->cfg->database.url,
                .password_file = c->cfg->database.password_file,
                .path = c->cfg->database.path,
                .synchronous = c->cfg->database.synchronous,
                .busy_timeout_ms = c->cfg->database.busy_timeout,
                .lock_timeout_ms = c->cfg->database.busy_timeout,
                .read_only = mode == CTL_STORE_READ,
                .migrate = mode == CTL_STORE_MIGRATE,
        };
        r = store_new(&opts, &c->store, err, sizeof(err));
        /* The store's sentence is the better one, except for a lock, where the
         * operator needs to hear it is transient. */
        if (r < 0 && err[0] && r != -EBUSY)
                return ctl_fail("%s", err);
        if (r < 0)
                return ctl_store_error(c, r, "cannot open");
        return 0;
}
