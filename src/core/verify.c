/*
 * verify — is this webhook really from CashPay?
 *
 * Checks the signature a sender put in the request headers against the raw
 * body bytes, with the merchant's secret(s): either a plain HMAC of the body
 * (optionally bound to a timestamp), or the Standard Webhooks scheme. Every
 * header value is attacker-controlled, so each is bounded and parsed strictly
 * before any work is done on it; digests are compared in constant time and
 * every secret is always tried, so timing says nothing about the secrets.
 *
 * The same code signs, so cashpayctl and the tests produce byte for byte what
 * the daemon accepts. Pure: no clock (now is passed in), no files (secrets.c
 * reads the secret file), no logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/params.h>

#include "cashpay/verify.h"
#include "cashpay/util.h"

#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "verify.c needs OpenSSL 3 (EVP_MAC)"
#endif

#define DIGEST_MAX 64
#define SW_DIGEST_LEN 32

struct algorithm {
        const char *name;   /* libcrypto digest name */
        const char *prefix; /* optional in an hmac signature header */
        size_t len;         /* digest bytes */
};

static const struct algorithm algorithms[] = {
        [HMAC_SHA256] = { "SHA256", "sha256=", 32 },
        [HMAC_SHA512] = { "SHA512", "sha512=", 64 },
};

#define N_ALGORITHMS (sizeof(algorithms) / sizeof(algorithms[0]))

/* Bytes inside a header value or the body; not NUL-terminated. */
struct span {
        const char *p;
        size_t n;
};

/* The signed content as consecutive pieces, so the body is never copied. */
struct message {
        struct span parts[5];
        size_t n;
        bool timed;        /* a timestamp is part of it and must be fresh */
        int64_t timestamp;
};

static const struct span dot = { ".", 1 };

const char *verify_result_name(int result)
{
        switch (result) {
        case VERIFY_OK:
                return "ok";
        case VERIFY_MISSING:
                return "missing";
        case VERIFY_MALFORMED:
                return "malformed";
        case VERIFY_STALE:
                return "stale";
        case VERIFY_MISMATCH:
                return "mismatch";
        default:
                return "error";
        }
}

void verify_params_from_config(const struct config *cfg, struct verify_params *ret)
{
        const char *ts = cfg->webhook.timestamp_header;

        *ret = (struct verify_params){
                .scheme = cfg->webhook.verify,
                .algorithm = cfg->webhook.algorithm,
                .encoding = cfg->webhook.encoding,
                .timestamped = ts && *ts,
                .tolerance = cfg->webhook.tolerance,
        };
}

/* ---- parsing of header values ------------------------------------------ */

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

/*
 * A header value without surrounding blanks. Returns VERIFY_MISSING (absent
 * or blank), VERIFY_MALFORMED (longer than anyone legitimate sends) or OK.
 */
static int header_span(const char *value, struct span *ret)
{
        if (!value)
                return VERIFY_MISSING;

        size_t n = strnlen(value, VERIFY_HEADER_MAX + 1);
        if (n > VERIFY_HEADER_MAX)
                return VERIFY_MALFORMED;
        while (n > 0 && is_blank(value[n - 1]))
                n--;
        while (n > 0 && is_blank(*value)) {
                value++;
                n--;
        }
        *ret = (struct span){ value, n };
        return n == 0 ? VERIFY_MISSING : VERIFY_OK;
}

/* An absent header is reported before a malformed one, whichever came first. */
static int first_problem(int a, int b)
{
        if (a == VERIFY_MISSING || b == VERIFY_MISSING)
                return VERIFY_MISSING;
        return a != VERIFY_OK ? a : b;
}

/*
 * Canonical decimal unix seconds. Leading zeros are refused because the
 * Standard Webhooks reference implementations sign the number they parsed,
 * not the text: only the canonical text signs the same bytes everywhere.
 */
static bool parse_timestamp(struct span s, int64_t *ret)
{
        int64_t v = 0;

        if (s.n == 0 || s.n > VERIFY_TIMESTAMP_DIGITS || (s.p[0] == '0' && s.n > 1))
                return false;
        for (size_t i = 0; i < s.n; i++) {
                if (s.p[i] < '0' || s.p[i] > '9')
                        return false;
                v = v * 10 + (s.p[i] - '0'); /* 18 digits cannot overflow */
        }
        *ret = v;
        return true;
}

static bool timestamp_fresh(int64_t ts, int64_t now, unsigned tolerance)
{
        /* Unsigned difference of the larger minus the smaller never overflows. */
        uint64_t d = ts > now ? (uint64_t)ts - (uint64_t)now : (uint64_t)now - (uint64_t)ts;

        return d <= tolerance;
}

static bool message_id_valid(struct span s)
{
        if (s.n == 0 || s.n > VERIFY_MESSAGE_ID_MAX)
                return false;
        for (size_t i = 0; i < s.n; i++)
                if (s.p[i] < 0x21 || s.p[i] > 0x7e)
                        return false;
        return true;
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Exactly @want bytes of hex, either case. */
static bool hex_decode(struct span s, uint8_t *out, size_t want)
{
        if (s.n != 2 * want)
                return false;
        for (size_t i = 0; i < want; i++) {
                int hi = hex_value(s.p[2 * i]), lo = hex_value(s.p[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return true;
}

static bool is_base64_char(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* The checks come first because EVP_DecodeBlock() skips surrounding blanks
 * and does not report padding. */
bool verify_base64_decode(const char *text, size_t len, uint8_t *out, size_t out_max,
                          size_t *ret_len)
{
        struct span s = { text, len };
        size_t pad = 0;

        if (s.n == 0 || s.n % 4 != 0 || s.n / 4 * 3 > out_max || s.n > INT32_MAX)
                return false;
        if (s.p[s.n - 1] == '=')
                pad = s.p[s.n - 2] == '=' ? 2 : 1;
        for (size_t i = 0; i < s.n - pad; i++)
                if (!is_base64_char(s.p[i]))
                        return false;

        int r = EVP_DecodeBlock(out, (const unsigned char *)s.p, (int)s.n);
        if (r < 0 || (size_t)r != s.n / 4 * 3)
                return false;
        *ret_len = (size_t)r - pad;
        return true;
}

/* Exactly one digest of @want bytes in base64. */
static bool base64_decode_digest(struct span s, uint8_t *out, size_t want)
{
        uint8_t buf[DIGEST_MAX + 3];
        size_t n;

        if (!verify_base64_decode(s.p, s.n, buf, sizeof(buf), &n) || n != want)
                return false;
        memcpy(out, buf, want);
        return true;
}

static bool span_has_prefix(struct span s, const char *prefix)
{
        size_t n = strlen(prefix);

        return s.n >= n && strncasecmp(s.p, prefix, n) == 0;
}

/* The hmac signature header: [sha256=|sha512=] then the digest, hex or base64. */
static int hmac_parse_signature(const struct verify_params *p, struct span s, uint8_t *ret)
{
        const struct algorithm *a = &algorithms[p->algorithm];

        for (size_t i = 0; i < N_ALGORITHMS; i++) {
                if (!span_has_prefix(s, algorithms[i].prefix))
                        continue;
                if (i != (size_t)p->algorithm)
                        return VERIFY_MALFORMED;
                s.p += strlen(a->prefix);
                s.n -= strlen(a->prefix);
                break;
        }

        bool ok = p->encoding == SIG_HEX ? hex_decode(s, ret, a->len)
                                         : base64_decode_digest(s, ret, a->len);
        return ok ? VERIFY_OK : VERIFY_MALFORMED;
}

/*
 * webhook-signature: space-separated "version,value" entries. Only v1
 * entries that decode to a SHA-256 digest can match; everything else is
 * skipped, as the specification asks for forward compatibility.
 */
static int sw_parse_signatures(struct span s, uint8_t (*ret)[DIGEST_MAX], size_t *ret_n)
{
        const char *p = s.p, *end = s.p + s.n;
        size_t entries = 0, n = 0;

        while (p < end) {
                while (p < end && is_blank(*p))
                        p++;
                if (p == end)
                        break;

                struct span e = { p, 0 };
                while (p < end && !is_blank(*p))
                        p++;
                e.n = (size_t)(p - e.p);
                if (++entries > VERIFY_SW_MAX_ENTRIES)
                        return VERIFY_MALFORMED;
                if (e.n < 3 || memcmp(e.p, "v1,", 3) != 0)
                        continue;
                e.p += 3;
                e.n -= 3;
                if (base64_decode_digest(e, ret[n], SW_DIGEST_LEN))
                        n++;
        }
        *ret_n = n;
        return VERIFY_OK;
}

/* ---- the signed content and the MAC ------------------------------------- */

static void message_add(struct message *m, struct span s)
{
        m->parts[m->n++] = s;
}

/*
 * Collects what @p's scheme signs from @in, checking the headers that are
 * part of it. Returns VERIFY_OK, VERIFY_MISSING or VERIFY_MALFORMED.
 */
static int message_build(const struct verify_params *p, const struct verify_input *in,
                         struct message *m)
{
        bool sw = p->scheme == VERIFY_STANDARD_WEBHOOKS;
        struct span id = { 0 }, ts = { 0 };

        *m = (struct message){ .timed = sw || p->timestamped };
        int r = first_problem(sw ? header_span(in->message_id, &id) : VERIFY_OK,
                              m->timed ? header_span(in->timestamp, &ts) : VERIFY_OK);
        if (r != VERIFY_OK)
                return r;
        if (sw && !message_id_valid(id))
                return VERIFY_MALFORMED;
        if (m->timed && !parse_timestamp(ts, &m->timestamp))
                return VERIFY_MALFORMED;

        if (sw) {
                message_add(m, id);
                message_add(m, dot);
        }
        if (m->timed) {
                message_add(m, ts);
                message_add(m, dot);
        }
        message_add(m, (struct span){ in->body, in->body_len });
        return VERIFY_OK;
}

static EVP_MAC_CTX *mac_new(void)
{
        EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

        EVP_MAC_free(mac); /* the context holds its own reference */
        return ctx;
}

/* HMAC over the pieces of @m; @ctx is re-keyed, so one serves every secret. */
static int mac_compute(EVP_MAC_CTX *ctx, const char *digest, const struct secret *key,
                       const struct message *m, uint8_t *out, size_t out_len)
{
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
                OSSL_PARAM_construct_end(),
        };
        size_t len = 0;

        if (!EVP_MAC_init(ctx, key->bytes, key->len, params))
                return -EIO;
        for (size_t i = 0; i < m->n; i++)
                if (m->parts[i].n > 0 &&
                    !EVP_MAC_update(ctx, (const unsigned char *)m->parts[i].p, m->parts[i].n))
                        return -EIO;
        if (!EVP_MAC_final(ctx, out, &len, out_len) || len != out_len)
                return -EIO;
        return 0;
}

/*
 * Every secret's digest against every claimed digest, without an early exit:
 * the work done is the same whichever secret (if any) matches.
 */
static int match_any(const char *digest, size_t len, const struct secret_set *set,
                     const struct message *m, const uint8_t (*claimed)[DIGEST_MAX],
                     size_t n_claimed)
{
        EVP_MAC_CTX *ctx = mac_new();
        unsigned matched = 0;
        int r = 0;

        if (!ctx)
                return -EIO;
        for (size_t i = 0; i < set->n && r == 0; i++) {
                uint8_t mine[DIGEST_MAX];

                r = mac_compute(ctx, digest, &set->items[i], m, mine, len);
                for (size_t j = 0; r == 0 && j < n_claimed; j++)
                        matched |= (unsigned)(CRYPTO_memcmp(mine, claimed[j], len) == 0);
                OPENSSL_cleanse(mine, sizeof(mine));
        }
        EVP_MAC_CTX_free(ctx);
        if (r < 0)
                return r;
        return matched ? VERIFY_OK : VERIFY_MISMATCH;
}

/* ---- verification -------------------------------------------------------- */

static int check_hmac(const struct verify_params *p, const struct secret_set *set,
                      const struct verify_input *in)
{
        const struct algorithm *a = &algorithms[p->algorithm];
        uint8_t claimed[1][DIGEST_MAX];
        struct message m;
        struct span sig;

        int r = first_problem(header_span(in->signature, &sig), message_build(p, in, &m));
        if (r == VERIFY_OK)
                r = hmac_parse_signature(p, sig, claimed[0]);
        if (r != VERIFY_OK)
                return r;
        if (m.timed && !timestamp_fresh(m.timestamp, in->now, p->tolerance))
                return VERIFY_STALE;
        return match_any(a->name, a->len, set, &m, (const uint8_t(*)[DIGEST_MAX])claimed, 1);
}

static int check_standard_webhooks(const struct verify_params *p, const struct secret_set *set,
                                   const struct verify_input *in)
{
        uint8_t claimed[VERIFY_SW_MAX_ENTRIES][DIGEST_MAX];
        size_t n_claimed = 0;
        struct message m;
        struct span sig;

        int r = first_problem(header_span(in->signature, &sig), message_build(p, in, &m));
        if (r == VERIFY_OK)
                r = sw_parse_signatures(sig, claimed, &n_claimed);
        if (r != VERIFY_OK)
                return r;
        if (!timestamp_fresh(m.timestamp, in->now, p->tolerance))
                return VERIFY_STALE;
        return match_any(algorithms[HMAC_SHA256].name, SW_DIGEST_LEN, set, &m,
                         (const uint8_t(*)[DIGEST_MAX])claimed, n_claimed);
}

static bool params_valid(const struct verify_params *p)
{
        return (size_t)p->algorithm < N_ALGORITHMS &&
               (p->encoding == SIG_HEX || p->encoding == SIG_BASE64);
}

int verify_check(const struct verify_params *p, const struct secret_set *secrets,
                 const struct verify_input *in)
{
        if (!p || !in)
                return -EINVAL;
        if (p->scheme == VERIFY_NONE)
                return VERIFY_OK;
        if (!secrets || secrets->n == 0 || secrets->n > VERIFY_MAX_SECRETS ||
            !params_valid(p) || (!in->body && in->body_len > 0))
                return -EINVAL;

        switch (p->scheme) {
        case VERIFY_HMAC:
                return check_hmac(p, secrets, in);
        case VERIFY_STANDARD_WEBHOOKS:
                return check_standard_webhooks(p, secrets, in);
        default:
                return -EINVAL;
        }
}

/* ---- signing ------------------------------------------------------------- */

static int encode_hex(const uint8_t *d, size_t n, char *out, size_t out_len)
{
        static const char digits[] = "0123456789abcdef";

        if (out_len < 2 * n + 1)
                return -ENOBUFS;
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[d[i] >> 4];
                out[2 * i + 1] = digits[d[i] & 0xf];
        }
        out[2 * n] = '\0';
        return 0;
}

static int encode_base64(const uint8_t *d, size_t n, char *out, size_t out_len)
{
        if (out_len < (n + 2) / 3 * 4 + 1)
                return -ENOBUFS;
        EVP_EncodeBlock((unsigned char *)out, d, (int)n); /* NUL-terminates */
        return 0;
}

static int sign_digest(const char *digest, const struct secret *secret,
                       const struct message *m, uint8_t *out, size_t len)
{
        EVP_MAC_CTX *ctx = mac_new();

        if (!ctx)
                return -EIO;
        int r = mac_compute(ctx, digest, secret, m, out, len);
        EVP_MAC_CTX_free(ctx);
        return r;
}

static int sign_encoded(const struct verify_params *p, const struct secret *secret,
                        const struct message *m, char *out, size_t out_len)
{
        bool sw = p->scheme == VERIFY_STANDARD_WEBHOOKS;
        const struct algorithm *a = &algorithms[sw ? HMAC_SHA256 : p->algorithm];
        uint8_t d[DIGEST_MAX];

        int r = sign_digest(a->name, secret, m, d, a->len);
        if (r == 0 && (sw || p->encoding == SIG_BASE64))
                r = encode_base64(d, a->len, out, out_len);
        else if (r == 0)
                r = encode_hex(d, a->len, out, out_len);
        OPENSSL_cleanse(d, sizeof(d));
        return r;
}

int verify_sign(const struct verify_params *p, const struct secret *secret,
                const struct verify_input *in, char *ret_signature, size_t len)
{
        struct message m;

        if (!p || !secret || !in || !ret_signature || secret->len == 0 ||
            secret->len > VERIFY_SECRET_MAX || !params_valid(p) ||
            (!in->body && in->body_len > 0))
                return -EINVAL;
        if (p->scheme != VERIFY_HMAC && p->scheme != VERIFY_STANDARD_WEBHOOKS)
                return -EINVAL;
        if (message_build(p, in, &m) != VERIFY_OK)
                return -EINVAL;

        if (p->scheme == VERIFY_HMAC)
                return sign_encoded(p, secret, &m, ret_signature, len);

        if (len < 4)
                return -ENOBUFS;
        memcpy(ret_signature, "v1,", 3);
        return sign_encoded(p, secret, &m, ret_signature + 3, len - 3);
}
