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
#define VERIFY_SECRET_MAX 1024        /* bytes of one key (decoded for whsec_) */
#define VERIFY_SECRET_FILE_MAX 65536  /* bytes of the whole secret file */

/* Bounds on what a request may send; anything longer is VERIFY_MALFORMED. */
#define VERIFY_HEADER_MAX 4096        /* any signature header value */
#define VERIFY_TIMESTAMP_DIGITS 18    /* decimal digits of a timestamp */
#define VERIFY_MESSAGE_ID_MAX 256     /* bytes of a webhook-id */
#define VERIFY_SW_MAX_ENTRIES 16      /* space-separated webhook-signature entries */

/* Room for any signature verify_sign() writes, NUL included. */
#define VERIFY_SIGNATURE_MAX 160

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

/*
 * Positive results are expected outcomes; negative are errnos.
 *
 * hmac: a signature that is not exactly one digest of the configured
 * algorithm in the configured encoding (wrong length, bad characters, missing
 * padding, a "sha512=" prefix when sha256 is configured) is MALFORMED; a
 * well-formed digest that no secret produces is MISMATCH.
 * standard-webhooks: entries other than "v1,..." are ignored as the
 * specification asks, and so is a v1 entry whose value is not a base64
 * SHA-256 digest; when no v1 entry matches the result is MISMATCH. A header
 * over VERIFY_HEADER_MAX bytes or VERIFY_SW_MAX_ENTRIES entries is MALFORMED.
 * Timestamps are canonical decimal unix seconds (digits only, no leading
 * zero, at most VERIFY_TIMESTAMP_DIGITS); anything else is MALFORMED. A
 * webhook-id must be 1..VERIFY_MESSAGE_ID_MAX bytes of printable ASCII
 * without spaces, else MALFORMED.
 * Blanks around any header value are ignored.
 * Checks run in this order: MISSING, MALFORMED, STALE, MISMATCH.
 */
enum {
        VERIFY_OK = 0,
        VERIFY_MISSING = 1,    /* a required header is absent or empty */
        VERIFY_MALFORMED = 2,  /* header present but unparseable */
        VERIFY_STALE = 3,      /* timestamp outside tolerance */
        VERIFY_MISMATCH = 4,   /* no secret produces this signature */
};

/* verify_result_name() - "ok", "missing", ... for logs; "error" for errnos. */
const char *verify_result_name(int result);

void verify_params_from_config(const struct config *cfg, struct verify_params *ret);

/*
 * verify_base64_decode() - standard alphabet with padding, nothing else (no
 * blanks, no line breaks). @out_max says how many bytes @out holds; it must
 * hold @len / 4 * 3. Returns false for anything else.
 */
bool verify_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_max,
                          size_t *ret_len);

/*
 * verify_check() - VERIFY_OK or one of the positive codes above. VERIFY_NONE
 * always passes. Every secret is tried (no early exit) and digests are
 * compared with CRYPTO_memcmp().
 * Returns -EINVAL for NULL arguments or an empty secret set (the loader never
 * produces one), -EIO when libcrypto fails.
 */
int verify_check(const struct verify_params *p, const struct secret_set *secrets,
                 const struct verify_input *in);

/*
 * verify_sign() - the header values that make verify_check() pass for @in
 * (signature, timestamp and message id are taken from @in where the scheme
 * needs them, so the caller chooses them).
 * @ret_signature: hmac: "sha256=..." is NOT added, plain digest in the
 *   configured encoding (hex in lowercase); sw: "v1,BASE64".
 *   VERIFY_SIGNATURE_MAX bytes are always enough.
 * Returns 0, -EINVAL (scheme none, missing or malformed timestamp/id),
 * -ENOBUFS or -EIO (libcrypto failure).
 */
int verify_sign(const struct verify_params *p, const struct secret *secret,
                const struct verify_input *in, char *ret_signature, size_t len);
