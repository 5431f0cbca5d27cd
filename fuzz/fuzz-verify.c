/*
 * fuzz-verify — signature header parsing for both schemes: verify_check()
 * with fuzzed header values, body and clock, under fixed secrets.
 *
 * Input layout (see corpus/verify/ for examples):
 *   byte 0   flags: 0x01 standard-webhooks (else hmac), 0x02 sha512,
 *            0x04 base64, 0x08 hmac timestamp header in use, 0x10 sign the
 *            request with verify_sign() first, 0x20 empty header fields are
 *            absent headers, 0x40 dress the signature up (see below),
 *            0x80 sign with the second secret
 *   byte 1   tolerance, an index into a small table
 *   then four lines: NOW, SIGNATURE, TIMESTAMP, WEBHOOK-ID; the rest is the body.
 * NOW is decimal unix seconds; "+N" or "-N" means N seconds from the
 * request's own timestamp (so fresh and stale requests are easy to reach).
 *
 * Without 0x10 the fuzzer cannot know the secrets, so VERIFY_OK would be a
 * forgery: that is a finding. With 0x10 the SIGNATURE line is replaced by a
 * real signature (0x40: with a "sha256=" prefix, blanks and upper-case hex
 * for hmac; after the fuzzed entries for standard-webhooks), and the result
 * must be exactly what the contract says: OK, or STALE outside the
 * tolerance, or MISSING/MALFORMED when verify_sign() refused the headers.
 */
#include <errno.h>
#include <limits.h>

#include "cashpay/verify.h"
#include "fuzz/fuzz.h"

enum {
        F_SW = 0x01,
        F_SHA512 = 0x02,
        F_BASE64 = 0x04,
        F_TIMESTAMPED = 0x08,
        F_SIGN = 0x10,
        F_ABSENT = 0x20,
        F_DRESS = 0x40,
        F_SECOND = 0x80,
};

static const unsigned tolerances[] = { 300, 0, 1, 86400, UINT_MAX };

static struct secret_set secrets;

static void secret_add(const void *bytes, size_t len)
{
        memcpy(secrets.items[secrets.n].bytes, bytes, len);
        secrets.items[secrets.n++].len = len;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        static const uint8_t raw[24] = { 0x00, 0xff, 0x10, 0x80, 0x7f, 0x20, 0x0a, 0x0d };

        /* Any bytes may be a key: text, binary with NULs, a single byte. */
        secret_add("correct horse battery staple", 28);
        secret_add(raw, sizeof(raw));
        secret_add("k", 1);
        return 0;
}

struct request {
        uint8_t flags;
        struct verify_params params;
        char *now, *signature, *timestamp, *message_id;
        uint8_t *body;
        size_t body_len;
};

static void request_read(struct request *rq, const uint8_t *data, size_t size)
{
        struct cursor in = { data, size };

        rq->flags = cursor_byte(&in);
        rq->params = (struct verify_params){
                .scheme = rq->flags & F_SW ? VERIFY_STANDARD_WEBHOOKS : VERIFY_HMAC,
                .algorithm = rq->flags & F_SHA512 ? HMAC_SHA512 : HMAC_SHA256,
                .encoding = rq->flags & F_BASE64 ? SIG_BASE64 : SIG_HEX,
                .timestamped = rq->flags & F_TIMESTAMPED,
                .tolerance = tolerances[cursor_byte(&in) % 5],
        };
        rq->now = cursor_field(&in, '\n');
        rq->signature = cursor_field(&in, '\n');
        rq->timestamp = cursor_field(&in, '\n');
        rq->message_id = cursor_field(&in, '\n');
        rq->body = cursor_rest(&in, &rq->body_len);
}

static void request_free(struct request *rq)
{
        free(rq->now);
        free(rq->signature);
        free(rq->timestamp);
        free(rq->message_id);
        free(rq->body);
}

static const char *field(const struct request *rq, const char *s)
{
        return (rq->flags & F_ABSENT) && !*s ? NULL : s;
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

/* The request's timestamp as verify.c reads it; only called once verify_sign()
 * accepted it, so it is canonical digits between blanks. */
static int64_t timestamp_value(const char *s)
{
        while (is_blank(*s))
                s++;
        return strtoll(s, NULL, 10);
}

/* Saturating decimal, optionally signed; stops at the first other byte. */
static int64_t parse_clock(const char *s)
{
        bool neg = *s == '-';
        int64_t v = 0;

        if (*s == '-' || *s == '+')
                s++;
        for (; *s >= '0' && *s <= '9'; s++)
                v = v > (INT64_MAX - 9) / 10 ? INT64_MAX : v * 10 + (*s - '0');
        return neg ? -v : v;
}

/* @ts_valid: the request's timestamp is in use and was accepted. */
static int64_t request_now(const struct request *rq, bool ts_valid)
{
        int64_t d = parse_clock(rq->now);

        const int64_t lim = INT64_C(1) << 62;

        if ((rq->now[0] == '+' || rq->now[0] == '-') && ts_valid) {
                /* a valid timestamp has at most 18 digits: no overflow within 2^62 */
                d = d > lim ? lim : d < -lim ? -lim : d;
                return timestamp_value(rq->timestamp) + d;
        }
        return d;
}

FUZZ_UNTRACED static size_t count_entries(const char *s)
{
        size_t n = 0;

        for (bool in = false; *s; s++) {
                if (!in && !is_blank(*s))
                        n++;
                in = !is_blank(*s);
        }
        return n;
}

/* A signature as a sender might format it, still valid. */
static char *dress(const struct request *rq, const char *sig)
{
        size_t len = strlen(rq->signature) + strlen(sig) + 16;
        char *out = malloc(len);

        if (!out)
                abort();
        if (rq->params.scheme == VERIFY_STANDARD_WEBHOOKS) {
                snprintf(out, len, "%s %s", rq->signature, sig);
                return out;
        }
        snprintf(out, len, " \t%s%s ", rq->params.algorithm == HMAC_SHA512 ? "SHA512=" : "sha256=",
                 sig);
        for (char *p = out; *p && rq->params.encoding == SIG_HEX; p++)
                if (*p >= 'a' && *p <= 'f')
                        *p = (char)(*p - 'a' + 'A');
        return out;
}

static int expected_for_signed(const struct request *rq, const char *sig, int64_t now)
{
        bool sw = rq->params.scheme == VERIFY_STANDARD_WEBHOOKS;

        if (strlen(sig) > VERIFY_HEADER_MAX ||
            (sw && count_entries(sig) > VERIFY_SW_MAX_ENTRIES))
                return VERIFY_MALFORMED;
        if (sw || rq->params.timestamped) {
                int64_t ts = timestamp_value(rq->timestamp);
                uint64_t d = ts > now ? (uint64_t)ts - (uint64_t)now : (uint64_t)now - (uint64_t)ts;

                if (d > rq->params.tolerance)
                        return VERIFY_STALE;
        }
        return VERIFY_OK;
}

/* Sign first, then the result must be exactly what the contract promises. */
static void run_signed(struct request *rq, struct verify_input *in)
{
        const struct secret *key = &secrets.items[rq->flags & F_SECOND ? 1 : 0];
        char sig[VERIFY_SIGNATURE_MAX];
        int r = verify_sign(&rq->params, key, in, sig, sizeof(sig));

        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL, "verify_sign: %d", r);
                in->signature = "0";
                r = verify_check(&rq->params, &secrets, in);
                FUZZ_CHECK(r == VERIFY_MISSING || r == VERIFY_MALFORMED,
                           "unsignable request gave %s", verify_result_name(r));
                return;
        }
        char *claimed = rq->flags & F_DRESS ? dress(rq, sig) : strdup(sig);
        if (!claimed)
                abort();
        in->now = request_now(rq, rq->params.scheme == VERIFY_STANDARD_WEBHOOKS ||
                                      rq->params.timestamped);
        in->signature = claimed;
        r = verify_check(&rq->params, &secrets, in);
        int want = expected_for_signed(rq, claimed, in->now);
        FUZZ_CHECK(r == want, "signed request gave %s, expected %s", verify_result_name(r),
                   verify_result_name(want));
        free(claimed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct request rq;

        request_read(&rq, data, size);
        struct verify_input in = {
                .signature = field(&rq, rq.signature),
                .timestamp = field(&rq, rq.timestamp),
                .message_id = field(&rq, rq.message_id),
                .body = rq.body,
                .body_len = rq.body_len,
                .now = request_now(&rq, false),
        };
        if (rq.flags & F_SIGN) {
                run_signed(&rq, &in);
        } else {
                int r = verify_check(&rq.params, &secrets, &in);
                FUZZ_CHECK(r > VERIFY_OK && r <= VERIFY_MISMATCH, "unsigned request gave %s (%d)",
                           verify_result_name(r), r);
        }
        request_free(&rq);
        return 0;
}
