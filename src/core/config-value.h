/*
 * config-value — parse, free and compare one value of the key table's types.
 * Internal to the config module (src/core/config*.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cashpay/config.h"

/*
 * config_value_parse() - parse @value (comments and surrounding blanks
 * already removed) for key @k into @field, its slot in struct config,
 * replacing what was there. "" stores "unset" (NULL, an empty list); whether
 * that is allowed is the caller's decision.
 * Returns 0, -EINVAL with @err saying what is wrong ("expected ..."), or -ENOMEM.
 */
int config_value_parse(const struct config_key *k, const char *value, void *field,
                       char *err, size_t err_len);

/* config_value_clear() - free what @field of type @t owns; it is unset afterwards. */
void config_value_clear(enum config_type t, void *field);

/* config_value_equal() - do two fields of type @t hold the same value? */
bool config_value_equal(enum config_type t, const void *a, const void *b);

/* config_listen_conflict() - would binding both addresses fail (same family
 * and port, and the same address or a wildcard on either side)? */
bool config_listen_conflict(const struct listen_addr *a, const struct listen_addr *b);

/* config_value_shown() - @s (at most @len bytes) made safe to quote in a
 * message: control bytes become '?', long text is cut with "...". Returns @buf. */
const char *config_value_shown(const char *s, size_t len, char *buf, size_t buf_len);
