/*
 * ctl — what cashpayctl's command files share: the run context (options,
 * configuration, store handle), the command table entries, option parsing
 * helpers and the exit codes.
 *
 * Commands return an exit code directly: 0 ok, 1 failure, 2 usage error.
 * They print their own messages (stderr, prefixed "cashpayctl: ").
 */
#pragma once

#include <getopt.h>
#include <stdbool.h>

#include "cashpay/config.h"
#include "cashpay/store.h"

enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAIL = 1,
        CTL_EXIT_USAGE = 2,
        CTL_CONTINUE = -1,  /* ctl_common_option(): keep parsing */
};

/* Long-only option values; command-specific ones start at OPT_COMMAND. */
enum {
        OPT_CONFIG = 0x100,
        OPT_DB,
        OPT_JSON,
        OPT_VERSION,
        OPT_COMMAND = 0x200,
};

/* Accepted before the command and after it ("cashpayctl orders --json"). */
#define CTL_COMMON_OPTIONS                                      \
        { "config", required_argument, NULL, OPT_CONFIG },      \
        { "db", required_argument, NULL, OPT_DB },              \
        { "json", no_argument, NULL, OPT_JSON },                \
        { "help", no_argument, NULL, 'h' }

struct ctl;

struct ctl_command {
        const char *name;
        int (*run)(struct ctl *c, int argc, char **argv);
        const char *args;     /* synopsis after the name, e.g. "CHARGE_ID" */
        const char *summary;  /* one line */
        const char *options;  /* the command's own option lines, or NULL */
};

enum ctl_store_mode { CTL_STORE_READ, CTL_STORE_WRITE, CTL_STORE_MIGRATE };

struct ctl {
        const char *config_path;   /* --config, else $CASHPAYD_CONFIG, else NULL */
        const char *db_path;       /* --db, else NULL */
        bool json;
        const struct ctl_command *command;
        char **argv;               /* what getopt_long is parsing, for messages */
        struct config *cfg;        /* after ctl_load_config() */
        struct store *store;       /* after ctl_open_store() */
};

/*
 * ctl_common_option() - handle an option every command accepts (@opt as
 * returned by getopt_long, including '?' and ':').
 * Returns CTL_CONTINUE, or the exit code to leave with (--help: 0, bad: 2).
 */
int ctl_common_option(struct ctl *c, int opt);

/* A command's handler for each option getopt_long returns, given the
 * command's @ctx; what it does not know it passes to ctl_common_option(). */
typedef int ctl_option_fn(struct ctl *c, int opt, void *ctx);

/*
 * ctl_parse_options() - getopt_long over @argv with @opts (NULL: the common
 * options only), each option handed to @option (NULL: ctl_common_option()).
 * Returns CTL_CONTINUE, or the exit code to leave with.
 */
int ctl_parse_options(struct ctl *c, int argc, char **argv, const struct option *opts,
                      ctl_option_fn *option, void *ctx);

/* ctl_usage_error() - "cashpayctl CMD: message" + a hint; returns 2. */
int ctl_usage_error(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ctl_fail() - "cashpayctl: message"; returns 1. */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ctl_fail_errno() - the same with ": " and the text of -@r appended, as
 * log_err_errno() does for the daemon; returns 1. */
int ctl_fail_errno(int r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * ctl_printed() - the exit code once output was written, from what writing
 * it returned: 0 ok; a reader gone away (-EPIPE) is no failure either; else
 * a message ("out of memory" for -ENOMEM) and 1.
 */
int ctl_printed(int r);

/* ctl_positional() - exactly @n arguments left after the options? Else a
 * usage error (2). On success @ret (may be NULL when @n is 0) points at them. */
int ctl_positional(struct ctl *c, int argc, char **argv, int n, char ***ret);

/* ctl_parse_uint() - a decimal number in [@min, @max]; 0 or -EINVAL. */
int ctl_parse_uint(const char *s, unsigned long long min, unsigned long long max,
                   unsigned long long *ret);

/* ctl_load_config() - fill c->cfg (--db alone: defaults). 0 or exit 1. */
int ctl_load_config(struct ctl *c);

/* ctl_command_on_postgresql() - whether the command runs on backend =
 * postgresql (all that open the store but migrate). */
bool ctl_command_on_postgresql(const struct ctl *c);

/* ctl_open_store() - load the config and open the database. 0 or exit 1. */
int ctl_open_store(struct ctl *c, enum ctl_store_mode mode);

/* ctl_store_error() - explain a store errno for the operator; returns 1. */
int ctl_store_error(struct ctl *c, int r, const char *what);

/* ctl_print_help() - the --help text of @cmd on stdout. */
void ctl_print_help(const struct ctl_command *cmd);

/* The commands (cmd-orders.c, cmd-sign.c, cmd-admin.c). */
int ctl_cmd_orders(struct ctl *c, int argc, char **argv);
int ctl_cmd_show(struct ctl *c, int argc, char **argv);
int ctl_cmd_deliveries(struct ctl *c, int argc, char **argv);
int ctl_cmd_events(struct ctl *c, int argc, char **argv);
int ctl_cmd_fulfil(struct ctl *c, int argc, char **argv);
int ctl_cmd_review_done(struct ctl *c, int argc, char **argv);
int ctl_cmd_sign(struct ctl *c, int argc, char **argv);
int ctl_cmd_send(struct ctl *c, int argc, char **argv);
int ctl_cmd_migrate(struct ctl *c, int argc, char **argv);
int ctl_cmd_check_config(struct ctl *c, int argc, char **argv);
int ctl_cmd_prune(struct ctl *c, int argc, char **argv);
int ctl_cmd_api(struct ctl *c, int argc, char **argv);
int ctl_cmd_sync(struct ctl *c, int argc, char **argv);
int ctl_cmd_reconcile(struct ctl *c, int argc, char **argv);
int ctl_cmd_charge(struct ctl *c, int argc, char **argv);
