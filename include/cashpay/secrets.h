/*
 * secrets — the secret file behind [webhook] secret_file: one secret per
 * line, parsed into the struct secret_set that verify_check() tries.
 * Used by the daemon (on start and reload) and by cashpayctl (sign, send,
 * check-config).
 */
#pragma once

#include <stddef.h>

#include "cashpay/verify.h"

/*
 * secrets_load() - read @path: one secret per line, blank lines and
 * lines starting with '#' ignored, surrounding blanks trimmed. For
 * standard-webhooks each must be "whsec_" + base64 (decoded here); for hmac
 * the line's bytes are the key. At least one secret is required.
 * Trimmed are spaces, tabs, CR (so CRLF files work), VT and FF; '#' starts a
 * comment only at the beginning of a line, since it may be part of a secret.
 * @err: "PATH: line N: what is wrong" or "PATH: strerror"; never contains
 *   secret material.
 * Returns 0, -EINVAL (no secret, bad whsec_ line, secret over
 * VERIFY_SECRET_MAX bytes, NUL byte),
 * -E2BIG (more than VERIFY_MAX_SECRETS), -EFBIG (file over
 * VERIFY_SECRET_FILE_MAX) or a negative errno from opening/reading. On
 * failure @ret is wiped and empty.
 */
int secrets_load(const char *path, enum verify_scheme scheme,
                 struct secret_set *ret, char *err, size_t err_len);

/*
 * secrets_parse() - the same for file content already in memory
 * (@len bytes at @buf, not NUL-terminated); @name stands for the path in
 * messages. secrets_load() reads the file and calls this.
 * Returns 0, -EINVAL, -E2BIG or -EFBIG as above.
 */
int secrets_parse(const char *name, const void *buf, size_t len,
                  enum verify_scheme scheme, struct secret_set *ret,
                  char *err, size_t err_len);

/* secrets_wipe() - overwrite secret bytes before the memory is released. */
void secrets_wipe(struct secret_set *set);
