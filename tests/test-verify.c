/*
 * Unit tests for verify: webhook signatures.
 *
 * Every expected signature below was computed independently of this code
 * with the openssl command line (the exact command is written next to it)
 * and pasted in as a literal, so a bug shared by signing and verifying
 * cannot hide. Secret files are written to a private temporary directory.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cashpay/config.h"
#include "cashpay/secrets.h"
#include "cashpay/verify.h"
#include "tests/check.h"

/* ---- counting CRYPTO_memcmp() calls -------------------------------------- */

/*
 * This definition takes precedence over libcrypto's for the code linked into
 * this program, counts the calls made with a digest's length and forwards
 * them. It proves the comparison goes through CRYPTO_memcmp(), once per
 * secret and claimed digest, without any timing measurement.
 */
static unsigned memcmp_calls;
static size_t memcmp_watch_len;

int CRYPTO_memcmp(const void *a, const void *b, size_t len)
{
        static int (*real)(const void *, const void *, size_t);

        if (!real)
                *(void **)&real = dlsym(RTLD_NEXT, "CRYPTO_memcmp");
        if (!real) {
                fprintf(stderr, "cannot find libcrypto's CRYPTO_memcmp\n");
                exit(2);
        }
        if (len == memcmp_watch_len)
                memcmp_calls++;
        return real(a, b, len);
}

/* ---- fixtures ------------------------------------------------------------ */

#define BODY "{\"id\":\"chg_a1b2c3d4e5\",\"status\":\"CAPTURED\",\"amount\":2000," \
             "\"currency\":\"YER\",\"created\":1672531200}"
#define S1 "cashpay-test-secret-1"
#define S2 "cashpay-test-secret-2"
#define TS "1700000000"
#define TS_NUM INT64_C(1700000000)

/*
 * body='{"id":"chg_a1b2c3d4e5",...,"created":1672531200}'   (BODY above)
 * printf '%s' "$body" | openssl dgst -sha256 -hmac cashpay-test-secret-1
 */
#define V256_HEX "ef521d6f153693e4a05387e6cb0886dbea0433065529f398494262791c939cb1"
/* printf '%s' "$body" | openssl dgst -sha256 -hmac cashpay-test-secret-1 -binary | base64 -w0 */
#define V256_B64 "71IdbxU2k+SgU4fmywiG2+oEMwZVKfOYSUJieRyTnLE="
/* printf '%s' "$body" | openssl dgst -sha512 -hmac cashpay-test-secret-1 */
#define V512_HEX "5147e909c1235da39f7a7db71209c5ccda9474ee745946192c8a30ee672bea10" \
                 "25606910ec67e6363e1bef37538b3e26eb9cd113e41a068fadc813dadd071fa6"
/* printf '%s' "$body" | openssl dgst -sha512 -hmac cashpay-test-secret-1 -binary | base64 -w0 */
#define V512_B64 "UUfpCcEjXaOfen23EgnFzNqUdO50WUYZLIow7mcr6hAlYGkQ7GfmNj4b7zdTiz4m" \
                 "65zRE+QaBo+tyBPa3Qcfpg=="
/* printf '%s.%s' 1700000000 "$body" | openssl dgst -sha256 -hmac cashpay-test-secret-1 */
#define V256_TS_HEX "50f193d2dd7b71d9d45f2a79e8233619fda6f63eedbf2b9d224edd4130e71df8"
/* printf '%s.%s' 1700000000 "$body" | openssl dgst -sha512 -hmac cashpay-test-secret-1 -binary | base64 -w0 */
#define V512_TS_B64 "gRB2N/pyukKt26HqvZvg17OHrRcts02z9v2YfLU3Iagem89t8zl4R3ZuXypRNauN" \
                    "JJ61KDXLOui/w3oQed4CQw=="
/* printf '%s' "$body" | openssl dgst -sha256 -hmac cashpay-test-secret-2 */
#define V256_HEX_S2 "a91c93b9424015f03e7904ca638e4a41cd01a061779e9094c568109b2d7971aa"
/* printf '%s' "" | openssl dgst -sha256 -hmac cashpay-test-secret-1 */
#define V256_EMPTY_HEX "cdcbfdf6ef58af1464b42a410faf7f056f985aefb17c422659b2a224cecbd9dd"

/*
 * Standard Webhooks. The first vector is the one the specification's Go
 * reference library tests its signer with; recomputed here with:
 *   k=$(printf '%s' MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c256)
 *   printf '%s.%s.%s' msg_p5jXN8AQM9LWM0D4loKWxJek 1614265330 '{"test": 2432232314}' \
 *     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$k -binary | base64 -w0
 */
#define SW_REF_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SW_REF_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SW_REF_TS "1614265330"
#define SW_REF_BODY "{\"test\": 2432232314}"
#define SW_REF_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/*
 * Key bytes "cashpay-standard-webhooks-key-32" (printf ... | base64 -w0 gives
 * the whsec_ text):
 *   k=$(printf cashpay-standard-webhooks-key-32 | xxd -p -c256)
 *   printf '%s.%s.%s' msg_2KWPBgLlAfxdpx2AI54pPJ85f4W 1700000000 "$body" \
 *     | openssl dgst -sha256 -mac HMAC -macopt hexkey:$k -binary | base64 -w0
 */
#define SW_SECRET "whsec_Y2FzaHBheS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzI="
#define SW_KEY "cashpay-standard-webhooks-key-32"
#define SW_ID "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
#define SW_SIG "v1,BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI="
/* The same with key bytes "cashpay-old-standard-webhooks-k!" (a rotated-out secret). */
#define SW_OLD_SECRET "whsec_Y2FzaHBheS1vbGQtc3RhbmRhcmQtd2ViaG9va3MtayE="
#define SW_OLD_SIG "v1,xF9oT3kj8HIiNRFDl8Xa+nKmhZFsGwYVxBoA3xi1lJA="
/* Well-formed but signed by nobody. */
#define SW_BOGUS "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

static char tmpdir[256];

static void set_add(struct secret_set *set, const void *bytes, size_t len)
{
        memcpy(set->items[set->n].bytes, bytes, len);
        set->items[set->n].len = len;
        set->n++;
}

static void set_of(struct secret_set *set, const char *a, const char *b)
{
        memset(set, 0, sizeof(*set));
        set_add(set, a, strlen(a));
        if (b)
                set_add(set, b, strlen(b));
}

static const char *write_file(const char *name, const void *data, size_t len)
{
        static char path[512];

        snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
                fprintf(stderr, "cannot write %s\n", path);
                exit(2);
        }
        return path;
}

static int load_text(const char *name, const char *text, enum verify_scheme scheme,
                     struct secret_set *set, char *err, size_t err_len)
{
        const char *path = write_file(name, text, strlen(text));
        return secrets_load(path, scheme, set, err, err_len);
}

static struct verify_params hmac_params(enum hmac_algorithm alg, enum sig_encoding enc,
                                        bool timestamped)
{
        return (struct verify_params){ .scheme = VERIFY_HMAC, .algorithm = alg, .encoding = enc,
                                       .timestamped = timestamped, .tolerance = 300 };
}

/* One hmac check of BODY at "now" TS_NUM + skew. */
static int hmac_check(enum hmac_algorithm alg, enum sig_encoding enc, const struct secret_set *set,
                      const char *sig, const char *ts, int64_t skew)
{
        struct verify_params p = hmac_params(alg, enc, ts != NULL);
        struct verify_input in = { .signature = sig, .timestamp = ts, .body = BODY,
                                   .body_len = strlen(BODY), .now = TS_NUM + skew };

        return verify_check(&p, set, &in);
}

static int sw_check(const struct secret_set *set, const char *id, const char *ts,
                    const char *sig, const char *body, int64_t now)
{
        struct verify_params p = { .scheme = VERIFY_STANDARD_WEBHOOKS, .tolerance = 300 };
        struct verify_input in = { .signature = sig, .timestamp = ts, .message_id = id,
                                   .body = body, .body_len = strlen(body), .now = now };

        return verify_check(&p, set, &in);
}

/* ---- hmac ---------------------------------------------------------------- */

static void test_hmac_encodings(void)
{
        struct secret_set set;

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, V256_B64, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_HEX, &set, V512_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_BASE64, &set, V512_B64, NULL, 0), VERIFY_OK);

        /* A digest in the other encoding or of the other algorithm is malformed. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, V256_HEX, NULL, 0),
                     VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_B64, NULL, 0), VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V512_HEX, NULL, 0), VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, V512_B64, NULL, 0),
                     VERIFY_MALFORMED);
}

static void test_hmac_hex_forms(void)
{
        struct secret_set set;
        char upper[sizeof(V256_HEX)];

        set_of(&set, S1, NULL);
        for (size_t i = 0; i < sizeof(upper); i++)
                upper[i] = (char)(V256_HEX[i] >= 'a' && V256_HEX[i] <= 'f' ? V256_HEX[i] - 32
                                                                            : V256_HEX[i]);
        CHECK(strcmp(upper, V256_HEX) != 0);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, upper, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "sha256=" V256_HEX, NULL, 0),
                     VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "SHA256=" V256_HEX, NULL, 0),
                     VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_HEX, &set, "sha512=" V512_HEX, NULL, 0),
                     VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "  " V256_HEX "\t", NULL, 0),
                     VERIFY_OK);

        /* A prefix naming the other algorithm, an unknown one, or doubled. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "sha512=" V256_HEX, NULL, 0),
                     VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_HEX, &set, "sha256=" V512_HEX, NULL, 0),
                     VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "sha1=" V256_HEX, NULL, 0),
                     VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "sha256=sha256=" V256_HEX, NULL, 0),
                     VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "sha256=", NULL, 0), VERIFY_MALFORMED);
        /* hex with a separator or a space inside */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set,
                                "ef:521d6f153693e4a05387e6cb0886dbea0433065529f398494262791c939cb1",
                                NULL, 0), VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set,
                                "ef 21d6f153693e4a05387e6cb0886dbea0433065529f398494262791c939cb1",
                                NULL, 0), VERIFY_MALFORMED);
}

static void test_hmac_base64_forms(void)
{
        struct secret_set set;
        char buf[128];

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, "sha256=" V256_B64, NULL, 0),
                     VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_BASE64, &set, "sha512=" V512_B64, NULL, 0),
                     VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, "sha512=" V256_B64, NULL, 0),
                     VERIFY_MALFORMED);

        /* Without its padding. */
        snprintf(buf, sizeof(buf), "%.*s", (int)strlen(V256_B64) - 1, V256_B64);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, buf, NULL, 0), VERIFY_MALFORMED);
        /* The URL-safe alphabet ('+' becomes '-'). */
        snprintf(buf, sizeof(buf), "%s", V256_B64);
        *strchr(buf, '+') = '-';
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, buf, NULL, 0), VERIFY_MALFORMED);
        /* Padding in the middle. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set,
                                "71Idbx=2k+SgU4fmywiG2+oEMwZVKfOYSUJieRyTnLE=", NULL, 0),
                     VERIFY_MALFORMED);
        /* Too much padding. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, "====", NULL, 0), VERIFY_MALFORMED);
        /* One bit flipped in the first character ('7' -> '6'). */
        snprintf(buf, sizeof(buf), "%s", V256_B64);
        buf[0] = '6';
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_BASE64, &set, buf, NULL, 0), VERIFY_MISMATCH);
}

static void test_hmac_mismatch_and_missing(void)
{
        struct secret_set set;
        char buf[256];

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, NULL, NULL, 0), VERIFY_MISSING);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "", NULL, 0), VERIFY_MISSING);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, "   ", NULL, 0), VERIFY_MISSING);

        /* Truncated by one and by two characters: not a whole digest. */
        snprintf(buf, sizeof(buf), "%.63s", V256_HEX);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, buf, NULL, 0), VERIFY_MALFORMED);
        snprintf(buf, sizeof(buf), "%.62s", V256_HEX);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, buf, NULL, 0), VERIFY_MALFORMED);
        /* One character too many. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX "0", NULL, 0),
                     VERIFY_MALFORMED);

        /* One bit flipped in the last byte (...b1 -> ...b0). */
        snprintf(buf, sizeof(buf), "%s", V256_HEX);
        buf[63] = '0';
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, buf, NULL, 0), VERIFY_MISMATCH);

        /* Right signature, wrong secret; and the other secret's signature. */
        set_of(&set, S2, NULL);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_MISMATCH);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX_S2, NULL, 0), VERIFY_OK);

        /* An over-long header is refused before any work. */
        memset(buf, 'a', sizeof(buf));
        buf[sizeof(buf) - 1] = '\0';
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, buf, NULL, 0), VERIFY_MALFORMED);
        char *huge = malloc(VERIFY_HEADER_MAX + 2);
        memset(huge, ' ', VERIFY_HEADER_MAX + 1);
        huge[VERIFY_HEADER_MAX + 1] = '\0';
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, huge, NULL, 0), VERIFY_MALFORMED);
        free(huge);
}

static void test_hmac_body_bound(void)
{
        struct secret_set set;
        struct verify_params p = hmac_params(HMAC_SHA256, SIG_HEX, false);
        char body[] = BODY;
        struct verify_input in = { .signature = V256_HEX, .body = body,
                                   .body_len = strlen(body) };

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
        body[20] ^= 1;
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_MISMATCH);
        body[20] ^= 1;
        in.body_len--; /* one byte less of the same body */
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_MISMATCH);

        /* The empty body is a body like any other. */
        in = (struct verify_input){ .signature = V256_EMPTY_HEX, .body = NULL, .body_len = 0 };
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
        in.body = "";
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
}

static void test_hmac_several_secrets(void)
{
        struct secret_set set;

        /* The second secret matches. */
        set_of(&set, S2, S1);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX_S2, NULL, 0), VERIFY_OK);
        set_of(&set, S1, S2);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX_S2, NULL, 0), VERIFY_OK);
        set_add(&set, "third", 5);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_BASE64, &set, V512_B64, NULL, 0), VERIFY_OK);
        set_of(&set, "x", "y");
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_MISMATCH);
}

static void test_hmac_timestamped(void)
{
        struct secret_set set;

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, 0), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_BASE64, &set, V512_TS_B64, TS, 0), VERIFY_OK);
        /* Exactly at the tolerance passes; one second beyond it, either way, does not. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, 300), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, -300), VERIFY_OK);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, 301), VERIFY_STALE);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, -301), VERIFY_STALE);
        /* Far away clocks do not overflow anything. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, INT64_MAX - TS_NUM),
                     VERIFY_STALE);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, TS, INT64_MIN + 1),
                     VERIFY_STALE);
        struct verify_params p = hmac_params(HMAC_SHA256, SIG_HEX, true);
        struct verify_input in = { .signature = V256_TS_HEX, .timestamp = "999999999999999999",
                                   .body = BODY, .body_len = strlen(BODY), .now = INT64_MIN };
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_STALE); /* no signed overflow (UBSan) */

        /* The timestamp is signed: another one (still fresh) does not verify. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, "1700000001", 0),
                     VERIFY_MISMATCH);
        /* A body-only signature is not accepted where a timestamp is required. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, TS, 0), VERIFY_MISMATCH);
        /* ... and the timestamp header is ignored when none is configured. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, NULL, 0), VERIFY_MISMATCH);
}

static void test_hmac_timestamp_syntax(void)
{
        static const char *const bad[] = {
                "17000000a0", "+1700000000", "-1700000000", "01700000000", "1700000000.5",
                "1700000000 1", "0x6553f100", "1e9", "1234567890123456789", "\x01",
        };
        struct secret_set set;

        set_of(&set, S1, NULL);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, bad[i], 0),
                             VERIFY_MALFORMED);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, "", 0), VERIFY_MISSING);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, " " TS " ", 0), VERIFY_OK);
        /* "0" is a canonical number, just a very old one. */
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_TS_HEX, "0", 0), VERIFY_STALE);

        /* Order of findings: missing before malformed before stale. */
        struct verify_params p = hmac_params(HMAC_SHA256, SIG_HEX, true);
        struct verify_input in = { .signature = NULL, .timestamp = "abc", .body = BODY,
                                   .body_len = strlen(BODY), .now = TS_NUM };
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_MISSING);
        in = (struct verify_input){ .signature = "zz", .timestamp = NULL, .body = BODY,
                                    .body_len = strlen(BODY), .now = TS_NUM };
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_MISSING);
        in.timestamp = "1";
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_MALFORMED);
        in.signature = V256_HEX;
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_STALE);
}

static void test_hmac_bad_arguments(void)
{
        struct secret_set set = { 0 };
        struct verify_params p = hmac_params(HMAC_SHA256, SIG_HEX, false);
        struct verify_input in = { .signature = V256_HEX, .body = BODY, .body_len = strlen(BODY) };

        CHECK_EQ_INT(verify_check(&p, &set, &in), -EINVAL);  /* no secret */
        CHECK_EQ_INT(verify_check(&p, NULL, &in), -EINVAL);
        CHECK_EQ_INT(verify_check(NULL, &set, &in), -EINVAL);
        set_of(&set, S1, NULL);
        in.body = NULL;
        CHECK_EQ_INT(verify_check(&p, &set, &in), -EINVAL);
        in.body = BODY;
        p.algorithm = (enum hmac_algorithm)7;
        CHECK_EQ_INT(verify_check(&p, &set, &in), -EINVAL);

        /* verify = none passes anything, even without secrets. */
        p = (struct verify_params){ .scheme = VERIFY_NONE };
        in.signature = NULL;
        CHECK_EQ_INT(verify_check(&p, NULL, &in), VERIFY_OK);
}

/* ---- standard webhooks --------------------------------------------------- */

static void sw_load(struct secret_set *set, const char *text)
{
        char err[256] = "";

        CHECK_EQ_INT(load_text("sw-secrets", text, VERIFY_STANDARD_WEBHOOKS, set, err,
                               sizeof(err)), 0);
        if (err[0])
                fprintf(stderr, "unexpected: %s\n", err);
}

static void test_sw_vectors(void)
{
        struct secret_set set;
        const int64_t ref_now = INT64_C(1614265330);

        sw_load(&set, SW_REF_SECRET "\n");
        CHECK_EQ_INT(set.n, 1);
        CHECK_EQ_INT(set.items[0].len, 24);
        CHECK_EQ_INT(sw_check(&set, SW_REF_ID, SW_REF_TS, SW_REF_SIG, SW_REF_BODY, ref_now),
                     VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_REF_ID, SW_REF_TS, SW_BOGUS, SW_REF_BODY, ref_now),
                     VERIFY_MISMATCH);

        sw_load(&set, SW_SECRET "\n");
        CHECK_EQ_INT(set.items[0].len, strlen(SW_KEY));
        CHECK(memcmp(set.items[0].bytes, SW_KEY, strlen(SW_KEY)) == 0);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM), VERIFY_OK);
        /* id, timestamp and body are all signed. */
        CHECK_EQ_INT(sw_check(&set, "msg_other", TS, SW_SIG, BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, "1700000001", SW_SIG, BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY " ", TS_NUM), VERIFY_MISMATCH);
        /* The key is the decoded secret, not the whsec_ text. */
        struct secret_set text;
        set_of(&text, SW_SECRET, NULL);
        CHECK_EQ_INT(sw_check(&text, SW_ID, TS, SW_SIG, BODY, TS_NUM), VERIFY_MISMATCH);
}

static void test_sw_entries(void)
{
        struct secret_set set;

        sw_load(&set, SW_SECRET "\n");
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_BOGUS " " SW_SIG, BODY, TS_NUM), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG " " SW_BOGUS, BODY, TS_NUM), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "  " SW_BOGUS "   " SW_SIG "  ", BODY, TS_NUM),
                     VERIFY_OK);
        /* v1a (asymmetric) and unknown versions are ignored, even carrying our digest. */
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v1a,BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI=",
                              BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v2,BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI=",
                              BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "V1,BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI=",
                              BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS,
                              "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZ"
                              "dpXwVLPo3mNl8EM+m7TBAg== " SW_SIG, BODY, TS_NUM), VERIFY_OK);
        /* Entries that cannot be a v1 digest are skipped, not fatal. */
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v1 v1, v1,!!!! garbage " SW_SIG, BODY, TS_NUM),
                     VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v1,BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI",
                              BODY, TS_NUM), VERIFY_MISMATCH);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v1,", BODY, TS_NUM), VERIFY_MISMATCH);
        /* The version ends at the comma, not at any separator. */
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, "v1;BcThw5lETy95vjACiW6n/HyQ2uZP6thlQJCrV1y20EI=",
                              BODY, TS_NUM), VERIFY_MISMATCH);
}

static void test_sw_entry_bound(void)
{
        struct secret_set set;
        char header[VERIFY_HEADER_MAX];
        size_t len = 0;

        sw_load(&set, SW_SECRET "\n");
        for (int i = 0; i < VERIFY_SW_MAX_ENTRIES - 1; i++)
                len += (size_t)snprintf(header + len, sizeof(header) - len, "%s ", SW_BOGUS);
        snprintf(header + len, sizeof(header) - len, "%s", SW_SIG);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, header, BODY, TS_NUM), VERIFY_OK);

        /* One entry more than allowed makes the whole header malformed. */
        snprintf(header + len, sizeof(header) - len, "x %s", SW_SIG);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, header, BODY, TS_NUM), VERIFY_MALFORMED);
}

static void test_sw_rotation(void)
{
        struct secret_set set;

        sw_load(&set, "# new first, old until every sender has moved\n" SW_SECRET "\n"
                      SW_OLD_SECRET "\n");
        CHECK_EQ_INT(set.n, 2);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_OLD_SIG, BODY, TS_NUM), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG " " SW_OLD_SIG, BODY, TS_NUM), VERIFY_OK);
        sw_load(&set, SW_SECRET "\n");
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_OLD_SIG, BODY, TS_NUM), VERIFY_MISMATCH);
}

static void test_sw_timestamp(void)
{
        struct secret_set set;

        sw_load(&set, SW_SECRET "\n");
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM + 300), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM - 300), VERIFY_OK);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM + 301), VERIFY_STALE);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG, BODY, TS_NUM - 301), VERIFY_STALE);
        CHECK_EQ_INT(sw_check(&set, SW_ID, "17OOOOOOOO", SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        CHECK_EQ_INT(sw_check(&set, SW_ID, "01700000000", SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        CHECK_EQ_INT(sw_check(&set, SW_ID, NULL, SW_SIG, BODY, TS_NUM), VERIFY_MISSING);

        /* The configured tolerance is the one applied. */
        struct verify_params p = { .scheme = VERIFY_STANDARD_WEBHOOKS, .tolerance = 10 };
        struct verify_input in = { .signature = SW_SIG, .timestamp = TS, .message_id = SW_ID,
                                   .body = BODY, .body_len = strlen(BODY), .now = TS_NUM + 11 };
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_STALE);
        in.now = TS_NUM + 10;
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
}

static void test_sw_message_id(void)
{
        struct secret_set set;
        char long_id[VERIFY_MESSAGE_ID_MAX + 2];

        sw_load(&set, SW_SECRET "\n");
        CHECK_EQ_INT(sw_check(&set, NULL, TS, SW_SIG, BODY, TS_NUM), VERIFY_MISSING);
        CHECK_EQ_INT(sw_check(&set, "", TS, SW_SIG, BODY, TS_NUM), VERIFY_MISSING);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, NULL, BODY, TS_NUM), VERIFY_MISSING);
        CHECK_EQ_INT(sw_check(&set, "msg 1", TS, SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        CHECK_EQ_INT(sw_check(&set, "msg\x7f", TS, SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        CHECK_EQ_INT(sw_check(&set, "msg\xc3\xa9", TS, SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        CHECK_EQ_INT(sw_check(&set, "msg\x01", TS, SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);

        memset(long_id, 'a', sizeof(long_id));
        long_id[VERIFY_MESSAGE_ID_MAX + 1] = '\0';
        CHECK_EQ_INT(sw_check(&set, long_id, TS, SW_SIG, BODY, TS_NUM), VERIFY_MALFORMED);
        long_id[VERIFY_MESSAGE_ID_MAX] = '\0';
        CHECK_EQ_INT(sw_check(&set, long_id, TS, SW_SIG, BODY, TS_NUM), VERIFY_MISMATCH);
        /* Missing wins over malformed, whichever header it is. */
        CHECK_EQ_INT(sw_check(&set, "msg 1", NULL, SW_SIG, BODY, TS_NUM), VERIFY_MISSING);
}

static void test_sw_bad_secrets(void)
{
        static const char *const bad[] = {
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",        /* no prefix */
                "whsec_\n",                                  /* nothing after it */
                "whsec_not base64 at all!\n",
                "whsec_Y2FzaHBheS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzI\n", /* unpadded */
                "whsec_Y2FzaHBheS1zdGFuZGFyZC13ZWJob29rcy1rZXktMzI_\n", /* URL-safe */
                "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
        };
        struct secret_set set;
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK_EQ_INT(load_text("bad-sw", bad[i], VERIFY_STANDARD_WEBHOOKS, &set, err,
                                       sizeof(err)), -EINVAL);
                CHECK_EQ_INT(set.n, 0);
                CHECK(strstr(err, "line 1") != NULL);
                /* The message never repeats the secret. */
                CHECK(strstr(err, "MfKQ9r8G") == NULL && strstr(err, "Y2FzaHBh") == NULL &&
                      strstr(err, "not base64") == NULL);
        }
}

/* ---- signing ------------------------------------------------------------- */

static void sign_hmac_case(enum hmac_algorithm alg, enum sig_encoding enc, const char *ts,
                           const char *want)
{
        struct verify_params p = hmac_params(alg, enc, ts != NULL);
        struct verify_input in = { .timestamp = ts, .body = BODY, .body_len = strlen(BODY),
                                   .now = TS_NUM };
        struct secret_set set;
        char sig[VERIFY_SIGNATURE_MAX];

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), 0);
        CHECK_STR(sig, want);
        in.signature = sig;
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
}

static void test_sign_vectors(void)
{
        sign_hmac_case(HMAC_SHA256, SIG_HEX, NULL, V256_HEX);
        sign_hmac_case(HMAC_SHA256, SIG_BASE64, NULL, V256_B64);
        sign_hmac_case(HMAC_SHA512, SIG_HEX, NULL, V512_HEX);
        sign_hmac_case(HMAC_SHA512, SIG_BASE64, NULL, V512_B64);
        sign_hmac_case(HMAC_SHA256, SIG_HEX, TS, V256_TS_HEX);
        sign_hmac_case(HMAC_SHA512, SIG_BASE64, TS, V512_TS_B64);

        struct verify_params p = { .scheme = VERIFY_STANDARD_WEBHOOKS, .tolerance = 300 };
        struct verify_input in = { .message_id = SW_REF_ID, .timestamp = SW_REF_TS,
                                   .body = SW_REF_BODY, .body_len = strlen(SW_REF_BODY) };
        struct secret_set set;
        char sig[VERIFY_SIGNATURE_MAX];

        sw_load(&set, SW_REF_SECRET "\n");
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), 0);
        CHECK_STR(sig, SW_REF_SIG);

        sw_load(&set, SW_SECRET "\n");
        in = (struct verify_input){ .message_id = SW_ID, .timestamp = TS, .body = BODY,
                                    .body_len = strlen(BODY), .now = TS_NUM };
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), 0);
        CHECK_STR(sig, SW_SIG);
        in.signature = sig;
        CHECK_EQ_INT(verify_check(&p, &set, &in), VERIFY_OK);
}

static void test_sign_errors(void)
{
        struct verify_params p = hmac_params(HMAC_SHA256, SIG_HEX, false);
        struct verify_input in = { .body = BODY, .body_len = strlen(BODY) };
        struct secret_set set;
        char sig[VERIFY_SIGNATURE_MAX];

        set_of(&set, S1, NULL);
        /* 64 hex digits and a NUL fit in 65 bytes, not in 64. */
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 65), 0);
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 64), -ENOBUFS);
        p.encoding = SIG_BASE64;
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 45), 0);
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 44), -ENOBUFS);

        p.timestamped = true;  /* a timestamp is needed, and must be canonical */
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), -EINVAL);
        in.timestamp = "-5";
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), -EINVAL);

        p = (struct verify_params){ .scheme = VERIFY_STANDARD_WEBHOOKS };
        in.timestamp = TS;
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), -EINVAL); /* no id */
        in.message_id = SW_ID;
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), 0);
        CHECK_EQ_INT(strlen(sig), 47);
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 48), 0);
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, 47), -ENOBUFS);

        p.scheme = VERIFY_NONE;
        CHECK_EQ_INT(verify_sign(&p, &set.items[0], &in, sig, sizeof(sig)), -EINVAL);
        struct secret empty = { .len = 0 };
        p.scheme = VERIFY_HMAC;
        CHECK_EQ_INT(verify_sign(&p, &empty, &in, sig, sizeof(sig)), -EINVAL);
}

/* Sign and check many bodies (binary ones too) under every configuration. */
static void test_sign_round_trips(void)
{
        static const struct verify_params configs[] = {
                { VERIFY_HMAC, HMAC_SHA256, SIG_HEX, false, 300 },
                { VERIFY_HMAC, HMAC_SHA256, SIG_BASE64, true, 300 },
                { VERIFY_HMAC, HMAC_SHA512, SIG_HEX, true, 300 },
                { VERIFY_HMAC, HMAC_SHA512, SIG_BASE64, false, 300 },
                { VERIFY_STANDARD_WEBHOOKS, HMAC_SHA256, SIG_HEX, true, 300 },
        };
        unsigned char body[300];
        struct secret_set set;
        char sig[VERIFY_SIGNATURE_MAX];
        unsigned ok = 0, total = 0;

        for (size_t i = 0; i < sizeof(body); i++)
                body[i] = (unsigned char)(i * 7 + 3); /* includes NUL bytes */
        set_of(&set, S1, S2);
        for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
                for (size_t len = 0; len <= sizeof(body); len += 23) {
                        struct verify_input in = { .timestamp = TS, .message_id = SW_ID,
                                                   .body = body, .body_len = len,
                                                   .now = TS_NUM };
                        bool good = verify_sign(&configs[c], &set.items[1], &in, sig,
                                                sizeof(sig)) == 0;
                        in.signature = sig;
                        good = good && verify_check(&configs[c], &set, &in) == VERIFY_OK;
                        in.body_len = len + 1; /* one byte more must not verify */
                        good = good && verify_check(&configs[c], &set, &in) == VERIFY_MISMATCH;
                        ok += good;
                        total++;
                }
        }
        CHECK_EQ_INT(ok, total);
}

/* ---- the secret file ----------------------------------------------------- */

static void test_secrets_file_format(void)
{
        struct secret_set set;
        char err[256] = "";

        CHECK_EQ_INT(load_text("s1", "# rotation: new first\r\n\r\n  " S1 "  \r\n\t# old one\n"
                                     "\n" S2 "\t\r\n   \n", VERIFY_HMAC, &set, err, sizeof(err)),
                     0);
        CHECK_EQ_INT(set.n, 2);
        CHECK_EQ_INT(set.items[0].len, strlen(S1));
        CHECK(memcmp(set.items[0].bytes, S1, strlen(S1)) == 0);
        CHECK_EQ_INT(set.items[1].len, strlen(S2));
        CHECK(memcmp(set.items[1].bytes, S2, strlen(S2)) == 0);
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX_S2, NULL, 0), VERIFY_OK);

        /* No final newline; '#' inside a secret is part of it; inner blanks kept. */
        CHECK_EQ_INT(load_text("s2", "ab#cd\nlast secret", VERIFY_HMAC, &set, err, sizeof(err)), 0);
        CHECK_EQ_INT(set.n, 2);
        CHECK_EQ_INT(set.items[0].len, 5);
        CHECK(memcmp(set.items[0].bytes, "ab#cd", 5) == 0);
        CHECK_EQ_INT(set.items[1].len, 11);
        CHECK(memcmp(set.items[1].bytes, "last secret", 11) == 0);

        /* whsec_ lines with CRLF and comments. */
        CHECK_EQ_INT(load_text("s3", "# sw\r\n" SW_SECRET "\r\n" SW_OLD_SECRET "\r\n",
                               VERIFY_STANDARD_WEBHOOKS, &set, err, sizeof(err)), 0);
        CHECK_EQ_INT(set.n, 2);
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_OLD_SIG, BODY, TS_NUM), VERIFY_OK);
}

static void test_secrets_file_limits(void)
{
        struct secret_set set;
        char err[256], text[4096];
        size_t len = 0;

        for (int i = 0; i < VERIFY_MAX_SECRETS; i++)
                len += (size_t)snprintf(text + len, sizeof(text) - len, "secret-%d\n", i);
        CHECK_EQ_INT(load_text("max", text, VERIFY_HMAC, &set, err, sizeof(err)), 0);
        CHECK_EQ_INT(set.n, VERIFY_MAX_SECRETS);
        snprintf(text + len, sizeof(text) - len, "# fine\nsecret-x\n");
        CHECK_EQ_INT(load_text("over", text, VERIFY_HMAC, &set, err, sizeof(err)), -E2BIG);
        CHECK_EQ_INT(set.n, 0);
        CHECK(strstr(err, "line 18") != NULL);
        CHECK(strstr(err, "secret-") == NULL);

        /* One secret of exactly the maximum length, then one byte longer. */
        char *big = malloc(VERIFY_SECRET_MAX + 2);
        memset(big, 'k', VERIFY_SECRET_MAX + 1);
        big[VERIFY_SECRET_MAX] = '\0';
        CHECK_EQ_INT(load_text("big", big, VERIFY_HMAC, &set, err, sizeof(err)), 0);
        CHECK_EQ_INT(set.items[0].len, VERIFY_SECRET_MAX);
        big[VERIFY_SECRET_MAX] = 'k';
        big[VERIFY_SECRET_MAX + 1] = '\0';
        CHECK_EQ_INT(load_text("big", big, VERIFY_HMAC, &set, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "kkkk") == NULL);
        free(big);

        /* A file larger than any sane secret file. */
        char *huge = malloc(VERIFY_SECRET_FILE_MAX + 1);
        memset(huge, '#', VERIFY_SECRET_FILE_MAX + 1);
        const char *path = write_file("huge", huge, VERIFY_SECRET_FILE_MAX + 1);
        CHECK_EQ_INT(secrets_load(path, VERIFY_HMAC, &set, err, sizeof(err)), -EFBIG);
        free(huge);
}

static void test_secrets_file_errors(void)
{
        struct secret_set set;
        char err[512], path[512];

        set_of(&set, S1, NULL);
        CHECK_EQ_INT(load_text("empty", "", VERIFY_HMAC, &set, err, sizeof(err)), -EINVAL);
        CHECK_EQ_INT(set.n, 0);
        CHECK(strstr(err, "/empty") != NULL);
        CHECK_EQ_INT(load_text("comments", "# one\n\n  # two\r\n", VERIFY_HMAC, &set, err,
                               sizeof(err)), -EINVAL);

        snprintf(path, sizeof(path), "%s/does-not-exist", tmpdir);
        CHECK_EQ_INT(secrets_load(path, VERIFY_HMAC, &set, err, sizeof(err)), -ENOENT);
        CHECK(strstr(err, path) != NULL);
        CHECK_EQ_INT(secrets_load(tmpdir, VERIFY_HMAC, &set, err, sizeof(err)), -EISDIR);
        CHECK(strstr(err, tmpdir) != NULL);

        const char *p = write_file("nul", "abc\0def\n", 8);
        CHECK_EQ_INT(secrets_load(p, VERIFY_HMAC, &set, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "NUL") != NULL);

        CHECK_EQ_INT(load_text("none", S1 "\n", VERIFY_NONE, &set, err, sizeof(err)), -EINVAL);
        CHECK_EQ_INT(secrets_load(NULL, VERIFY_HMAC, &set, err, sizeof(err)), -EINVAL);
        /* No room for a message is fine too. */
        CHECK_EQ_INT(secrets_load(path, VERIFY_HMAC, &set, NULL, 0), -ENOENT);
}

/* The same format from memory: no NUL needed, the name stands for the path. */
static void test_secrets_parse_buffer(void)
{
        static const char text[] = "# new\n" S1 "\r\n" S2 "XYZ"; /* no NUL after S2 */
        struct secret_set set;
        char err[256];

        CHECK_EQ_INT(secrets_parse("memory", text, sizeof(text) - 4, VERIFY_HMAC, &set, err,
                                   sizeof(err)), 0);
        CHECK_EQ_INT(set.n, 2);
        CHECK_EQ_INT(set.items[1].len, strlen(S2));
        CHECK(memcmp(set.items[1].bytes, S2, strlen(S2)) == 0);

        CHECK_EQ_INT(secrets_parse("memory", "abc\0", 4, VERIFY_HMAC, &set, err,
                                   sizeof(err)), -EINVAL);
        CHECK_STR(err, "memory: line 1: contains a NUL byte");
        CHECK_EQ_INT(set.n, 0);
        CHECK_EQ_INT(secrets_parse("memory", "", 0, VERIFY_HMAC, &set, err, sizeof(err)),
                     -EINVAL);
        CHECK_STR(err, "memory: no secret in the file");
        CHECK_EQ_INT(secrets_parse("memory", NULL, 0, VERIFY_HMAC, &set, err, sizeof(err)),
                     -EINVAL);
        CHECK_EQ_INT(secrets_parse("memory", NULL, 5, VERIFY_HMAC, &set, err, sizeof(err)),
                     -EINVAL);
        CHECK_EQ_INT(secrets_parse("memory", S1, strlen(S1), VERIFY_NONE, &set, err,
                                   sizeof(err)), -EINVAL);
        CHECK_EQ_INT(set.n, 0);
        CHECK_EQ_INT(secrets_parse(NULL, S1, strlen(S1), VERIFY_HMAC, &set, err,
                                   sizeof(err)), -EINVAL);

        /* The size limit holds for memory too: a comment line up to it, then a secret. */
        char *big = malloc(VERIFY_SECRET_FILE_MAX + 1);
        memset(big, '#', VERIFY_SECRET_FILE_MAX + 1);
        big[VERIFY_SECRET_FILE_MAX - 3] = '\n';
        memcpy(big + VERIFY_SECRET_FILE_MAX - 2, "k\n#", 3);
        CHECK_EQ_INT(secrets_parse("memory", big, VERIFY_SECRET_FILE_MAX, VERIFY_HMAC,
                                   &set, err, sizeof(err)), 0);
        CHECK_EQ_INT(set.n, 1);
        CHECK_EQ_INT(secrets_parse("memory", big, VERIFY_SECRET_FILE_MAX + 1, VERIFY_HMAC,
                                   &set, err, sizeof(err)), -EFBIG);
        CHECK_EQ_INT(set.n, 0);
        CHECK_STR(err, "memory: larger than 65536 bytes");
        free(big);
}

/* "whsec_" + base64 of @n bytes, as one line. */
static char *whsec_of_length(size_t n)
{
        size_t b64 = (n + 2) / 3 * 4;
        char *line = malloc(6 + b64 + 2);

        memcpy(line, "whsec_", 6);
        for (size_t i = 0; i < b64; i++)
                line[6 + i] = 'Q';
        if (n % 3 > 0)
                line[6 + b64 - 1] = '=';
        if (n % 3 == 1)
                line[6 + b64 - 2] = '=';
        memcpy(line + 6 + b64, "\n", 2);
        return line;
}

/*
 * A whsec_ secret longer than the limit is named as such, not as bad base64,
 * however long it is (the decoder's buffer is sized for the limit, and text
 * beyond it used to be reported as "not ... base64").
 */
static void test_sw_secret_too_long(void)
{
        static const size_t lengths[] = { 1, 1024, 1025, 1026, 1027, 2000, 40000 };
        struct secret_set set;
        char err[256];

        for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
                char *line = whsec_of_length(lengths[i]);
                int r = secrets_parse("sw", line, strlen(line), VERIFY_STANDARD_WEBHOOKS,
                                      &set, err, sizeof(err));

                if (lengths[i] <= VERIFY_SECRET_MAX) {
                        CHECK_EQ_INT(r, 0);
                        CHECK_EQ_INT(set.items[0].len, lengths[i]);
                } else {
                        CHECK_EQ_INT(r, -EINVAL);
                        CHECK_STR(err, "sw: line 1: secret longer than 1024 bytes");
                }
                free(line);
        }
}

static void test_secrets_wipe(void)
{
        struct secret_set set;
        static const struct secret_set zero;

        set_of(&set, S1, S2);
        secrets_wipe(&set);
        CHECK_EQ_INT(set.n, 0);
        CHECK(memcmp(&set, &zero, sizeof(set)) == 0);
        secrets_wipe(NULL);
}

/* ---- the rest ------------------------------------------------------------ */

static void test_constant_time_compare(void)
{
        struct secret_set set;

        /* hmac: one claimed digest against each of three secrets, matching first or not at all. */
        set_of(&set, S1, S2);
        set_add(&set, "third", 5);
        memcmp_watch_len = 32;
        memcmp_calls = 0;
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(memcmp_calls, 3);
        memcmp_calls = 0;
        CHECK_EQ_INT(hmac_check(HMAC_SHA256, SIG_HEX, &set, V256_EMPTY_HEX, NULL, 0),
                     VERIFY_MISMATCH);
        CHECK_EQ_INT(memcmp_calls, 3);
        memcmp_watch_len = 64;
        memcmp_calls = 0;
        CHECK_EQ_INT(hmac_check(HMAC_SHA512, SIG_HEX, &set, V512_HEX, NULL, 0), VERIFY_OK);
        CHECK_EQ_INT(memcmp_calls, 3);

        /* standard-webhooks: two v1 entries against two secrets. */
        sw_load(&set, SW_SECRET "\n" SW_OLD_SECRET "\n");
        memcmp_watch_len = 32;
        memcmp_calls = 0;
        CHECK_EQ_INT(sw_check(&set, SW_ID, TS, SW_SIG " " SW_BOGUS, BODY, TS_NUM), VERIFY_OK);
        CHECK_EQ_INT(memcmp_calls, 4);
        memcmp_watch_len = 0;
}

static void test_params_from_config(void)
{
        struct config cfg;
        struct verify_params p;

        memset(&cfg, 0, sizeof(cfg));
        cfg.webhook.verify = VERIFY_STANDARD_WEBHOOKS;
        cfg.webhook.algorithm = HMAC_SHA512;
        cfg.webhook.encoding = SIG_BASE64;
        cfg.webhook.tolerance = 42;
        verify_params_from_config(&cfg, &p);
        CHECK_EQ_INT(p.scheme, VERIFY_STANDARD_WEBHOOKS);
        CHECK_EQ_INT(p.algorithm, HMAC_SHA512);
        CHECK_EQ_INT(p.encoding, SIG_BASE64);
        CHECK_EQ_INT(p.tolerance, 42);
        CHECK(!p.timestamped);

        char empty[] = "", name[] = "X-CashPay-Timestamp";
        cfg.webhook.timestamp_header = empty;
        verify_params_from_config(&cfg, &p);
        CHECK(!p.timestamped);
        cfg.webhook.timestamp_header = name;
        verify_params_from_config(&cfg, &p);
        CHECK(p.timestamped);
}

static void test_result_names(void)
{
        CHECK_STR(verify_result_name(VERIFY_OK), "ok");
        CHECK_STR(verify_result_name(VERIFY_MISSING), "missing");
        CHECK_STR(verify_result_name(VERIFY_MALFORMED), "malformed");
        CHECK_STR(verify_result_name(VERIFY_STALE), "stale");
        CHECK_STR(verify_result_name(VERIFY_MISMATCH), "mismatch");
        CHECK_STR(verify_result_name(-EIO), "error");
}

static void make_tmpdir(void)
{
        const char *base = getenv("TMPDIR");

        snprintf(tmpdir, sizeof(tmpdir), "%s/test-verify-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                exit(2);
        }
}

static void remove_tmpdir(void)
{
        static const char *const names[] = {
                "sw-secrets", "bad-sw", "s1", "s2", "s3", "max", "over", "big", "huge",
                "empty", "comments", "nul", "none",
        };
        char path[512];

        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
                unlink(path);
        }
        if (rmdir(tmpdir) != 0)
                perror(tmpdir);
}

int main(void)
{
        make_tmpdir();

        test_hmac_encodings();
        test_hmac_hex_forms();
        test_hmac_base64_forms();
        test_hmac_mismatch_and_missing();
        test_hmac_body_bound();
        test_hmac_several_secrets();
        test_hmac_timestamped();
        test_hmac_timestamp_syntax();
        test_hmac_bad_arguments();
        test_sw_vectors();
        test_sw_entries();
        test_sw_entry_bound();
        test_sw_rotation();
        test_sw_timestamp();
        test_sw_message_id();
        test_sw_bad_secrets();
        test_sign_vectors();
        test_sign_errors();
        test_sign_round_trips();
        test_secrets_file_format();
        test_secrets_file_limits();
        test_secrets_file_errors();
        test_secrets_parse_buffer();
        test_sw_secret_too_long();
        test_secrets_wipe();
        test_constant_time_compare();
        test_params_from_config();
        test_result_names();

        remove_tmpdir();
        return check_summary();
}
