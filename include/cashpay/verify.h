/*
 * verify — webhook signatures over the raw body: HMAC and Standard Webhooks.
 *
 * Pure apart from libcrypto: the caller passes header values, the body bytes
 * and "now". Digests are compared with CRYPTO_memcmp. Also signs, so that
 * cashpayctl and the tests produce exactly what the daemon verifies.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/config.h"

#define VERIFY_MAX_SECRETS 16
#define VERIFY_SECRET_MAX 1024

/* Standard Webhooks header names (fixed by that specification). */
#define SW_HEADER_ID "webhook-id"
#define SW_HEADER_TIMESTAMP "webhook-timestamp"
#define SW_HEADER_SIGNATURE "webhook-signature"

struct secret {
        uint8_t bytes[VERIFY_SECRET_MAX];
        size_t len;
};

/* Secrets from a file, one per line; any of them verifies. */
struct secret_set {
        struct secret items[VERIFY_MAX_SECRETS];
        size_t n;
};

struct verify_params {
        enum verify_scheme scheme;
        enum hmac_algorithm algorithm;   /* hmac only */
        enum sig_encoding encoding;      /* hmac only */
        bool timestamped;                /* hmac: timestamp_header is set */
        unsigned tolerance;              /* seconds */
};

/* What the HTTP layer found in the request (NULL = header absent). */
struct verify_input {
        const char *signature;   /* hmac: signature_header; sw: webhook-signature */
        const char *timestamp;   /* hmac: timestamp_header; sw: webhook-timestamp */
        const char *message_id;  /* sw: webhook-id */
        const void *body;
        size_t body_len;
        int64_t now;             /* unix seconds */
};

/* Positive results are expected outcomes; negative are errnos. */
enum {
        VERIFY_OK = 0,
        VERIFY_MISSING = 1,    /* a required header is absent or empty */
        VERIFY_MALFORMED = 2,  /* header present but unparseable */
        VERIFY_STALE = 3,      /* timestamp outside tolerance */
        VERIFY_MISMATCH = 4,   /* no secret produces this signature */
};

void verify_params_from_config(const struct config *cfg, struct verify_params *ret);

/*
 * verify_secrets_load() - read @path: one secret per line, blank lines and
 * lines starting with '#' ignored, surrounding blanks trimmed. For
 * standard-webhooks each must be "whsec_" + base64 (decoded here); for hmac
 * the line's bytes are the key. At least one secret is required.
 * @err: a message that never contains secret material.
 * Returns 0, -EINVAL, -E2BIG or a negative errno from opening/reading.
 */
int verify_secrets_load(const char *path, enum verify_scheme scheme,
                        struct secret_set *ret, char *err, size_t err_len);

/* verify_secrets_wipe() - overwrite secret bytes before the memory is released. */
void verify_secrets_wipe(struct secret_set *set);

/* verify_check() - VERIFY_OK or one of the positive codes above. VERIFY_NONE
 * always passes. */
int verify_check(const struct verify_params *p, const struct secret_set *secrets,
                 const struct verify_input *in);

/*
 * verify_sign() - the header values that make verify_check() pass for @in
 * (signature, timestamp and message id are taken from @in where the scheme
 * needs them, so the caller chooses them).
 * @ret_signature: hmac: "sha256=..." is NOT added, plain digest in the
 *   configured encoding; sw: "v1,BASE64".
 * Returns 0, -EINVAL (scheme none, missing timestamp/id) or -ENOBUFS.
 */
int verify_sign(const struct verify_params *p, const struct secret *secret,
                const struct verify_input *in, char *ret_signature, size_t len);
