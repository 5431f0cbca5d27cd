/*
 * cmd-admin — looking after the deployment: migrate (create or upgrade the
 * database with the migrations compiled into the store), check-config (the
 * daemon's own parser and secret loader, so both agree on what is valid) and
 * prune (rejected deliveries past their retention).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/store-admin.h"
#include "cashpay/timeutil.h"
#include "cashpay/secrets.h"
#include "cashpay/verify.h"
#include "src/ctl/ctl.h"
#include "src/ctl/output.h"

#define MS_PER_DAY INT64_C(86400000)

static int only_common_options(struct ctl *c, int argc, char **argv)
{
        int r = ctl_parse_options(c, argc, argv, NULL, NULL, NULL);

        return r != CTL_CONTINUE ? r : ctl_positional(c, argc, argv, 0, NULL);
}

/* ---- migrate ---- */

int ctl_cmd_migrate(struct ctl *c, int argc, char **argv)
{
        int r, version = 0;

        if ((r = only_common_options(c, argc, argv)) != CTL_CONTINUE)
                return r;
        if ((r = ctl_open_store(c, CTL_STORE_MIGRATE)) != 0)
                return r;
        r = store_admin_user_version(c->store, &version);
        if (r < 0)
                return ctl_store_error(c, r, "cannot read the schema version");
        if (c->json)
                return ctl_printed(output_json(json_pack("{s:s, s:i, s:i}", "database",
                                                         c->cfg->database.path,
                                                         "schema_version", version,
                                                         "binary_schema_version",
                                                         store_schema_version()),
                                               false));
        printf("database %s is at schema version %d\n", c->cfg->database.path, version);
        return ctl_printed(output_flush());
}

/* ---- check-config ---- */

/* The secret file as the daemon would load it. A file this user may not
 * read (the service's credential) is a note, not an error. */
static int check_secrets(const struct config *cfg, char *note, size_t note_len,
                         char *err, size_t err_len)
{
        struct secret_set *set;
        int r;

        if (cfg->webhook.verify == VERIFY_NONE)
                return 0;
        if (!cfg->webhook.secret_file) {
                snprintf(note, note_len, "secret_file is unset: the daemon needs "
                         "$CREDENTIALS_DIRECTORY/webhook-secret");
                return 0;
        }
        set = calloc(1, sizeof(*set));
        if (!set)
                return -ENOMEM;
        r = secrets_load(cfg->webhook.secret_file, cfg->webhook.verify, set, err, err_len);
        secrets_wipe(set);
        free(set);
        if (r == -EACCES || r == -EPERM) {
                snprintf(note, note_len, "%s: not readable by this user, secrets not checked",
                         cfg->webhook.secret_file);
                return 0;
        }
        if (r < 0 && !err[0])
                snprintf(err, err_len, "%s: %s", cfg->webhook.secret_file, strerror(-r));
        return r;
}

static int check_json(const char *path, const char *err, const char *note)
{
        return output_json(json_pack("{s:s?, s:b, s:s?, s:s?}", "config", path, "ok", !err[0],
                                     "error", err[0] ? err : NULL, "note", note[0] ? note : NULL),
                           false);
}

static int check_report(const struct ctl *c, const char *path, const char *err, const char *note)
{
        int r;

        if (c->json && (r = ctl_printed(check_json(path, err, note))) != CTL_EXIT_OK)
                return r;
        if (err[0])
                return ctl_fail("%s", err);
        if (note[0])
                fprintf(stderr, "cashpayctl: note: %s\n", note);
        if (!c->json)
                printf("%s: configuration is valid\n", path ? path : "(defaults)");
        return CTL_EXIT_OK;
}

int ctl_cmd_check_config(struct ctl *c, int argc, char **argv)
{
        const char *path;
        char err[512] = "", note[512] = "";
        int r;

        if ((r = only_common_options(c, argc, argv)) != CTL_CONTINUE)
                return r;
        path = c->config_path ? c->config_path : c->db_path ? NULL : CONFIG_DEFAULT_PATH;
        if (path)
                r = config_load(path, &c->cfg, err, sizeof(err));
        else
                r = config_new_defaults(&c->cfg);
        if (r < 0 && !err[0])
                snprintf(err, sizeof(err), "%s: %s", path ? path : "defaults", strerror(-r));
        if (r == 0)
                r = check_secrets(c->cfg, note, sizeof(note), err, sizeof(err));
        if (r == -ENOMEM)
                return ctl_printed(r); /* says nothing about the file */
        return check_report(c, path, err, note);
}

/* ---- prune ---- */

struct prune_options {
        bool has_days;
        unsigned days;
        bool dry_run;
};

static int prune_option(struct ctl *c, int opt, void *ctx)
{
        struct prune_options *o = ctx;
        unsigned long long v;

        switch (opt) {
        case OPT_COMMAND:
                if (ctl_parse_uint(optarg, 0, 36500, &v) < 0)
                        return ctl_usage_error(c, "--days needs 0 to 36500, not '%s'", optarg);
                o->days = (unsigned) v;
                o->has_days = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 1:
                o->dry_run = true;
                return CTL_CONTINUE;
        default:
                return ctl_common_option(c, opt);
        }
}

static int prune_parse(struct ctl *c, int argc, char **argv, struct prune_options *o)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "days", required_argument, NULL, OPT_COMMAND },
                { "dry-run", no_argument, NULL, OPT_COMMAND + 1 },
                { NULL, 0, NULL, 0 }
        };
        int r = ctl_parse_options(c, argc, argv, opts, prune_option, o);

        return r != CTL_CONTINUE ? r : ctl_positional(c, argc, argv, 0, NULL);
}

static int prune_report(const struct ctl *c, const struct prune_options *o, const char *cutoff,
                        int64_t count)
{
        if (c->json)
                return ctl_printed(output_json(json_pack("{s:I, s:b, s:i, s:s}", "deleted",
                                                         (json_int_t) count, "dry_run", o->dry_run,
                                                         "days", (int) o->days, "cutoff", cutoff),
                                               false));
        printf("%s %lld rejected deliveries received before %s (%u days)\n",
               o->dry_run ? "would delete" : "deleted", (long long) count, cutoff, o->days);
        return ctl_printed(output_flush());
}

int ctl_cmd_prune(struct ctl *c, int argc, char **argv)
{
        struct prune_options o = { 0 };
        char cutoff[TIME_ISO_LEN];
        int64_t count = 0;
        int r;

        if ((r = prune_parse(c, argc, argv, &o)) != CTL_CONTINUE)
                return r;
        if ((r = ctl_open_store(c, o.dry_run ? CTL_STORE_READ : CTL_STORE_WRITE)) != 0)
                return r;
        if (!o.has_days)
                o.days = c->cfg->webhook.keep_rejected_days;
        time_format_iso(time_now_ms() - (int64_t) o.days * MS_PER_DAY, cutoff);
        r = store_prune_rejected(c->store, cutoff, 0, o.dry_run, &count);
        if (r < 0)
                return ctl_store_error(c, r, "cannot prune");
        return prune_report(c, &o, cutoff, count);
}
