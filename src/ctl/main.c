/*
 * cashpayctl — the operator's tool over cashpayd's configuration and
 * database: look at orders and deliveries, follow the change feed, fulfil,
 * sign and send test webhooks, migrate, check the config, prune.
 *
 * main() parses the options that come before the command, finds the command
 * in the table below and hands it the rest of the command line.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h"
#include "src/ctl/ctl.h"

static int cmd_help(struct ctl *c, int argc, char **argv);

static const struct ctl_command commands[] = {
        { "orders", ctl_cmd_orders, "[--status S] [--unfulfilled] [--review] [--limit N]",
          "List orders, most recently updated first.",
          "  --status S     only orders in status S: INITIATED, CAPTURED or FAILED\n"
          "  --unfulfilled  only CAPTURED orders that are not fulfilled yet\n"
          "  --review       only orders flagged for review\n"
          "  --limit N      at most N orders (default 50, 0 = all)\n" },
        { "show", ctl_cmd_show, "CHARGE_ID",
          "Show one order with its events and the deliveries that named it.", NULL },
        { "deliveries", ctl_cmd_deliveries, "[--outcome O] [--limit N]",
          "List received webhook deliveries, newest first.",
          "  --outcome O    only deliveries with outcome O: applied, duplicate, stale,\n"
          "                 conflict, invalid, unauthorized, forbidden, unconfirmed\n"
          "                 or deferred\n"
          "  --limit N      at most N deliveries (default 50, 0 = all)\n" },
        { "events", ctl_cmd_events, "[--after ID] [--follow]",
          "Print the order_events change feed, oldest first.",
          "  --after ID     only events with an id greater than ID (default 0)\n"
          "  --charge ID    only events of this charge\n"
          "  --follow       keep running and print new events as they are committed\n"
          "                 (with --json: one JSON object per line)\n" },
        { "fulfil", ctl_cmd_fulfil, "CHARGE_ID",
          "Mark a CAPTURED order as fulfilled (idempotent; refuses orders under review).",
          NULL },
        { "review-done", ctl_cmd_review_done, "CHARGE_ID",
          "Clear the needs_review flag of an order after checking it.", NULL },
        { "sign", ctl_cmd_sign, "[--timestamp T] [--id ID] < BODY",
          "Print the signature header lines for the body read from stdin.",
          "  --timestamp T  unix time to sign with (default: now)\n"
          "  --id ID        standard-webhooks message id (default: random msg_...)\n" },
        { "send", ctl_cmd_send, "[OPTIONS]",
          "Build a charge webhook, sign it and POST it, the way CashPay would.",
          "  --status S       INITIATED, CAPTURED (default) or FAILED\n"
          "  --charge ID      charge id (default: random chg_ + 16 hex digits)\n"
          "  --amount N       amount (default 2000)\n"
          "  --currency C     three capital letters (default YER)\n"
          "  --description D  description text\n"
          "  --order-ref R    merchant reference, placed at [webhook] order_ref_field\n"
          "  --url URL        where to POST (default: from [http] listen and webhook_path)\n"
          "  --cacert FILE    CA certificates that vouch for an https:// server\n"
          "  --timeout S      seconds to wait for the answer (default 10)\n" },
        { "migrate", ctl_cmd_migrate, "",
          "Create the database or apply pending migrations; print the schema version.", NULL },
        { "check-config", ctl_cmd_check_config, "",
          "Validate the configuration file (as cashpayd --check-config does).", NULL },
        { "prune", ctl_cmd_prune, "[--days N] [--dry-run]",
          "Delete rejected deliveries (invalid, unauthorized, forbidden) older than\n"
          "[webhook] keep_rejected_days.",
          "  --days N       keep N days instead of keep_rejected_days\n"
          "  --dry-run      only count what would be deleted\n" },
        { "charge", ctl_cmd_charge, "create --order-ref R --amount N --currency C [--description D]",
          "Create a charge at CashPay for an order, as POST /charges on the checkout\n"
          "listener does; print its charge id and transaction_url.",
          "  --order-ref R    the merchant's order: 1-128 of A-Z a-z 0-9 . _ : -\n"
          "  --amount N       a positive integer\n"
          "  --currency C     three capital letters\n"
          "  --description D  shown to the customer (at most 4096 bytes)\n" },
        { "api", ctl_cmd_api, "check",
          "Get a token and make one authenticated request to the CashPay API; say what\n"
          "works and when the token expires (the token itself is never printed).", NULL },
        { "sync", ctl_cmd_sync, "CHARGE_ID...",
          "Fetch these charges from the CashPay API now and record what it says\n"
          "(api_fetches; order changes through the state machine, event source api).",
          NULL },
        { "reconcile", ctl_cmd_reconcile, "[--dry-run]",
          "One reconciliation sweep now: fetch the INITIATED orders that are due\n"
          "([cashpay] reconcile_after, doubling, up to reconcile_for) and record the answers.",
          "  --dry-run      only list the orders that are due\n" },
        { "help", cmd_help, "[COMMAND]", "Show help for cashpayctl or one command.", NULL },
};

static const char common_help[] =
        "Common options:\n"
        "  --config PATH  configuration file (default $CASHPAYD_CONFIG, else\n"
        "                 " CONFIG_DEFAULT_PATH ")\n"
        "  --db PATH      use this database and default settings (no config file)\n"
        "  --json         print JSON for scripts (one document; events --follow: lines)\n"
        "  --help         show this help\n";

static void print_usage(FILE *f)
{
        fprintf(f, "Usage: cashpayctl [--config PATH | --db PATH] [--json] COMMAND [ARGS]\n\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (commands[i].args[0])
                        fprintf(f, "  %-13s%s\n", commands[i].name, commands[i].args);
                else
                        fprintf(f, "  %s\n", commands[i].name);
        }
        fprintf(f, "\n%s  --version      print the version\n\n"
                   "'cashpayctl COMMAND --help' describes a command.\n"
                   "Exit status: 0 ok, 1 failure, 2 usage error.\n", common_help);
}

void ctl_print_help(const struct ctl_command *cmd)
{
        if (!cmd) {
                print_usage(stdout);
                return;
        }
        printf("Usage: cashpayctl %s%s%s\n\n%s\n\n", cmd->name, cmd->args[0] ? " " : "",
               cmd->args, cmd->summary);
        if (cmd->options)
                printf("Options:\n%s\n", cmd->options);
        fputs(common_help, stdout);
}

static const struct ctl_command *find_command(const char *name)
{
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return &commands[i];
        return NULL;
}

static int cmd_help(struct ctl *c, int argc, char **argv)
{
        const struct ctl_command *cmd = NULL;
        int r;

        if ((r = ctl_parse_options(c, argc, argv, NULL, NULL, NULL)) != CTL_CONTINUE)
                return r;
        if (argc - optind > 1)
                return ctl_usage_error(c, "unexpected argument '%s'", argv[optind + 1]);
        if (argc - optind == 1) {
                cmd = find_command(argv[optind]);
                if (!cmd)
                        return ctl_usage_error(c, "unknown command '%s'", argv[optind]);
        }
        ctl_print_help(cmd);
        return CTL_EXIT_OK;
}

static int global_option(struct ctl *c, int opt, void *ctx)
{
        if (opt != OPT_VERSION)
                return ctl_common_option(c, opt);
        printf("cashpayctl %s\n", CASHPAY_VERSION);
        return CTL_EXIT_OK;
}

/* Options before the command. Returns CTL_CONTINUE or an exit code. */
static int parse_global(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "version", no_argument, NULL, OPT_VERSION },
                { NULL, 0, NULL, 0 }
        };
        int r;

        if ((r = ctl_parse_options(c, argc, argv, opts, global_option, NULL)) != CTL_CONTINUE)
                return r;
        if (optind >= argc)
                return ctl_usage_error(c, "no command given");
        return CTL_CONTINUE;
}

static void ctl_done(struct ctl *c)
{
        store_free(c->store);
        config_free(c->cfg);
}

int main(int argc, char **argv)
{
        struct ctl c = { .config_path = getenv("CASHPAYD_CONFIG") };
        int r;

        /* A closed pipe is reported by write errors (EPIPE), handled where printed. */
        signal(SIGPIPE, SIG_IGN);
        opterr = 0; /* ctl_common_option() words the complaint */
        if (c.config_path && !c.config_path[0])
                c.config_path = NULL;
        c.argv = argv;
        r = parse_global(&c, argc, argv);
        if (r != CTL_CONTINUE)
                return r;
        c.command = find_command(argv[optind]);
        c.argv = argv + optind;
        if (!c.command)
                return ctl_usage_error(&c, "unknown command '%s'", argv[optind]);
        argc -= optind;
        argv += optind;
        optind = 0; /* glibc: restart getopt for the command's own options */
        r = c.command->run(&c, argc, argv);
        ctl_done(&c);
        return r;
}
