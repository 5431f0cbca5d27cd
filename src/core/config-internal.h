/*
 * config-internal — what the files of the configuration module share; not
 * used outside src/core/config*.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cashpay/config.h"

/* Upper bound on the rows of the key table, for the per-file bookkeeping. */
#define CONFIG_KEYS_MAX 96

/* config_key_find() - the row of [@section] @name, its index in @ret_i; NULL
 * when there is none. */
const struct config_key *config_key_find(const char *section, const char *name, size_t *ret_i);

/* config_section_known() - whether [@name] is a section of the table. */
bool config_section_known(const char *name);

/* config_key_set() - parse @value into @cfg's field for @k (the old value
 * freed). Returns 0, -EINVAL (with @err) or -ENOMEM. */
int config_key_set(const struct config_key *k, struct config *cfg, const char *value,
                   char *err, size_t err_len);

/*
 * config_read() - apply the pairs of the file @f (named @path in messages)
 * to @cfg; @lines[i] gets the line key i was set on (CONFIG_KEYS_MAX
 * entries, zeroed by the caller). Returns 0, -EINVAL with "PATH:LINE: what"
 * in @err, or -ENOMEM.
 */
int config_read(struct config *cfg, const char *path, FILE *f, unsigned *lines,
                char *err, size_t err_len);

/*
 * config_rules_check() - the rules between keys. @lines (may be NULL) and
 * @path (NULL for the defaults) place the error. Returns 0 or -EINVAL.
 */
int config_rules_check(const struct config *cfg, const unsigned *lines, const char *path,
                       char *err, size_t err_len);

/* config_resolve_secret_file() - an unset secret_file (and client_secret_file)
 * becomes the systemd credential, or the default path. Returns 0 or -ENOMEM. */
int config_resolve_secret_file(struct config *cfg);
