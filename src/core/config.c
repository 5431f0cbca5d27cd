/*
 * config — a struct config from the defaults or a file, freed, compared on
 * reload.
 *
 * The key table is config-keys.c, the reader config-read.c, the rules that
 * tie keys together config-rules.c, and a single value's parsing
 * config-value.c; this file puts them together through each key's offset
 * into struct config.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/config.h"
#include "cashpay/util.h"
#include "src/core/config-internal.h"
#include "src/core/config-value.h"

static size_t n_keys(void)
{
        size_t n;

        config_keys(&n);
        return n;
}

static const struct config_key *config_key_at(size_t i)
{
        size_t n;

        return &config_keys(&n)[i];
}

/* ---- values in a struct config -------------------------------------------- */

static void *field_of(const struct config_key *k, struct config *cfg)
{
        return (char *)cfg + k->offset;
}

static const void *cfield_of(const struct config_key *k, const struct config *cfg)
{
        return (const char *)cfg + k->offset;
}

/* An empty value means "unset" for keys whose default is unset, and "none"
 * for lists that may be empty; anything else needs a value. */
static bool empty_allowed(const struct config_key *k)
{
        if (k->type == CONFIG_LISTEN || k->type == CONFIG_CIDRS)
                return k->min == 0;
        return k->default_value[0] == '\0';
}

/* Parse @value into @cfg. Returns 0, -EINVAL (with @err) or -ENOMEM. */
int config_key_set(const struct config_key *k, struct config *cfg, const char *value,
                   char *err, size_t err_len)
{
        if (value[0] == '\0' && !empty_allowed(k))
                return err_set(err, err_len, -EINVAL, "a value is required");
        return config_value_parse(k, value, field_of(k, cfg), err, err_len);
}

static void key_clear(const struct config_key *k, struct config *cfg)
{
        config_value_clear(k->type, field_of(k, cfg));
}

static bool key_equal(const struct config_key *k, const struct config *a, const struct config *b)
{
        return config_value_equal(k->type, cfield_of(k, a), cfield_of(k, b));
}

/* ---- defaults, free ------------------------------------------------------- */

void config_free(struct config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < n_keys(); i++)
                key_clear(config_key_at(i), cfg);
        free(cfg->source_path);
        free(cfg);
}

/* The table's defaults, before secret_file is resolved. A default that does
 * not parse is a bug in the table; the tests catch it. */
static int config_new_raw(struct config **ret)
{
        struct config *cfg = calloc(1, sizeof(*cfg));
        char err[256];
        int r;

        if (!cfg)
                return -ENOMEM;
        for (size_t i = 0; i < n_keys(); i++) {
                r = config_key_set(config_key_at(i), cfg, config_key_at(i)->default_value, err, sizeof(err));
                if (r < 0) {
                        config_free(cfg);
                        return r;
                }
        }
        *ret = cfg;
        return 0;
}

int config_new_defaults(struct config **ret)
{
        struct config *cfg = NULL;
        char err[256];
        int r;

        r = config_new_raw(&cfg);
        if (r < 0)
                return r;
        r = config_rules_check(cfg, NULL, NULL, err, sizeof(err));
        if (r == 0)
                r = config_resolve_secret_file(cfg);
        if (r < 0) {
                config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

static int load_into(struct config *cfg, const char *path, FILE *f, char *err, size_t err_len)
{
        unsigned lines[CONFIG_KEYS_MAX] = { 0 }; /* line each key was set on */
        int r;

        r = config_read(cfg, path, f, lines, err, err_len);
        if (r < 0)
                return r;
        r = config_rules_check(cfg, lines, path, err, err_len);
        if (r < 0)
                return r;
        r = config_resolve_secret_file(cfg);
        if (r == 0) {
                cfg->source_path = strdup(path);
                if (!cfg->source_path)
                        r = -ENOMEM;
        }
        if (r == -ENOMEM)
                return err_set(err, err_len, r, "%s: out of memory", path);
        return r;
}

int config_load(const char *path, struct config **ret, char *err, size_t err_len)
{
        _cleanup_(config_freep) struct config *cfg = NULL;
        char dummy[1];
        FILE *f;
        int r;

        if (!err || err_len == 0)
                err = dummy, err_len = sizeof(dummy);
        err[0] = '\0';
        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                return err_set(err, err_len, r, "%s: %s", path, strerror(-r));
        }
        r = config_new_raw(&cfg);
        if (r == 0)
                r = load_into(cfg, path, f, err, err_len);
        else
                err_set(err, err_len, r, "%s: out of memory", path);
        fclose(f);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cfg);
        return 0;
}

/* ---- reload ------------------------------------------------------------- */

bool config_reload_compatible(const struct config *cur, const struct config *next,
                              char *err, size_t err_len)
{
        for (size_t i = 0; i < n_keys(); i++) {
                const struct config_key *k = config_key_at(i);

                if (k->reloadable || key_equal(k, cur, next))
                        continue;
                err_set(err, err_len, -EINVAL, "[%s] %s changed; it takes effect only after a "
                        "restart", k->section, k->name);
                return false;
        }
        return true;
}
