/*
 * fuzz-secrets — the secret file: secrets_parse() on arbitrary file
 * content for both schemes, and secrets_load() on the same bytes.
 *
 * Input layout (see corpus/secrets/ for examples):
 *   byte 0   flags: 0x01 standard-webhooks (else hmac), 0x02 grow the file
 *            to the size limit (byte 1 picks -2..+2 bytes around it) with a
 *            comment line in front, 0x04 also load it from a file
 *   byte 1   the size offset for 0x02
 *   the rest is the file.
 *
 * Checked besides memory safety and leaks: the result equals an independent
 * reading of the format (lines split on LF, blanks trimmed, '#' comments,
 * hmac keys as bytes, whsec_ keys decoded by a base64 decoder of this file's
 * own), secret by secret; a refused file gets exactly the code and the
 * "NAME: line N: ..." message for the first bad line, from a fixed set of
 * messages (so never secret material), and an empty, wiped set; every
 * secret has 1..VERIFY_SECRET_MAX bytes, and the first and the last of them
 * sign a request that the loaded set verifies; loading from a file gives
 * the same as parsing the bytes; with verify = none nothing is loaded.
 */
#include <errno.h>
#include <unistd.h>

#include "cashpay/secrets.h"
#include "cashpay/verify.h"
#include "fuzz/fuzz.h"

enum {
        F_SW = 0x01,
        F_AT_LIMIT = 0x02,
        F_FILE = 0x04,
};

#define NAME "secrets"
#define BLANKS " \t\r\v\f"

static struct memfile file;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        memfile_open(&file, "fuzz-secrets");
        return 0;
}

/* ---- the format, read independently ---------------------------------------- */

/* What the reference found: a set, or the first bad line and why. */
struct expect {
        int r;
        size_t line;
        const char *why;
        struct secret_set set;
};

static int b64_value(uint8_t c)
{
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = c ? memchr(alphabet, c, 64) : NULL;

        return p ? (int)(p - alphabet) : -1;
}

/* Padded standard base64 into @out (room for VERIFY_SECRET_MAX); -1 if invalid,
 * else the decoded length, which may exceed the room (nothing is written then). */
FUZZ_UNTRACED static long b64_decode(const uint8_t *s, size_t n, uint8_t *out)
{
        size_t pad = 0;

        while (pad < n && s[n - 1 - pad] == '=')
                pad++;
        if (n == 0 || n % 4 != 0 || pad > 2)
                return -1;
        for (size_t i = 0; i < n - pad; i++)
                if (b64_value(s[i]) < 0)
                        return -1;
        size_t len = n / 4 * 3 - pad;
        if (len > VERIFY_SECRET_MAX)
                return (long)len;
        uint32_t acc = 0;
        size_t bits = 0, o = 0;
        for (size_t i = 0; i < n - pad; i++) {
                acc = acc << 6 | (uint32_t)b64_value(s[i]);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t)(acc >> bits);
                }
        }
        FUZZ_CHECK(o == len, "reference decoder: %zu of %zu bytes", o, len);
        return (long)len;
}

static bool is_blank(uint8_t c)
{
        return c && strchr(BLANKS, c);
}

static const char *ref_secret(const uint8_t *p, size_t n, bool sw, struct secret *ret)
{
        static const char prefix[] = "whsec_";
        const size_t plen = sizeof(prefix) - 1;

        if (!sw) {
                if (n > VERIFY_SECRET_MAX)
                        return "secret longer than 1024 bytes";
                memcpy(ret->bytes, p, n);
                ret->len = n;
                return NULL;
        }
        if (n < plen || memcmp(p, prefix, plen) != 0)
                return "secret does not start with whsec_";
        long len = b64_decode(p + plen, n - plen, ret->bytes);
        /* Longer than base64 of VERIFY_SECRET_MAX bytes: too long, whatever it is. */
        if (len > VERIFY_SECRET_MAX || n - plen > (VERIFY_SECRET_MAX + 2) / 3 * 4)
                return "secret longer than 1024 bytes";
        if (len <= 0)
                return "secret is not whsec_ followed by padded base64";
        ret->len = (size_t)len;
        return NULL;
}

/* One line; false when it is the bad one. */
static bool ref_line(const uint8_t *p, size_t n, bool sw, struct expect *e)
{
        if (memchr(p, '\0', n)) {
                e->r = -EINVAL;
                e->why = "contains a NUL byte";
                return false;
        }
        while (n > 0 && is_blank(p[n - 1]))
                n--;
        while (n > 0 && is_blank(p[0])) {
                p++;
                n--;
        }
        if (n == 0 || p[0] == '#')
                return true;
        if (e->set.n == VERIFY_MAX_SECRETS) {
                e->r = -E2BIG;
                e->why = "more than 16 secrets";
                return false;
        }
        e->why = ref_secret(p, n, sw, &e->set.items[e->set.n]);
        if (e->why) {
                e->r = -EINVAL;
                return false;
        }
        e->set.n++;
        return true;
}

static void ref_parse(const uint8_t *buf, size_t len, bool sw, struct expect *e)
{
        memset(e, 0, sizeof(*e));
        if (len > VERIFY_SECRET_FILE_MAX) {
                e->r = -EFBIG;
                return;
        }
        for (size_t pos = 0; pos < len;) {
                const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - (buf + pos)) : len - pos;

                e->line++;
                if (!ref_line(buf + pos, n, sw, e))
                        return;
                pos += n + 1;
        }
        e->line = 0;
        if (e->set.n == 0)
                e->r = -EINVAL;
}

/* ---- checks ------------------------------------------------------------------ */

static void check_refused(const struct expect *e, int r, const struct secret_set *set,
                          const char *err)
{
        static const struct secret_set wiped;
        char want[256];

        FUZZ_CHECK(r == e->r, "result %d, reference %d (%s)", r, e->r, err);
        FUZZ_CHECK(memcmp(set, &wiped, sizeof(*set)) == 0, "refused set not wiped");
        if (e->r == -EFBIG)
                snprintf(want, sizeof(want), NAME ": larger than %d bytes", VERIFY_SECRET_FILE_MAX);
        else if (e->line == 0)
                snprintf(want, sizeof(want), NAME ": no secret in the file");
        else
                snprintf(want, sizeof(want), NAME ": line %zu: %s", e->line, e->why);
        FUZZ_CHECK(strcmp(err, want) == 0, "message \"%s\", expected \"%s\"", err, want);
}

/* A request signed with @key verifies against the whole set. */
static void check_signs(const struct secret_set *set, const struct secret *key, bool sw)
{
        const struct verify_params p = {
                .scheme = sw ? VERIFY_STANDARD_WEBHOOKS : VERIFY_HMAC,
                .algorithm = HMAC_SHA256,
                .encoding = SIG_HEX,
                .tolerance = 300,
        };
        struct verify_input in = {
                .timestamp = "1700000000",
                .message_id = "msg_1",
                .body = "{}",
                .body_len = 2,
                .now = 1700000000,
        };
        char sig[VERIFY_SIGNATURE_MAX];

        FUZZ_CHECK(verify_sign(&p, key, &in, sig, sizeof(sig)) == 0, "verify_sign");
        in.signature = sig;
        FUZZ_CHECK(verify_check(&p, set, &in) == VERIFY_OK, "own signature refused");
}

static void check_loaded(const struct expect *e, int r, const struct secret_set *set,
                         bool sw, const char *err)
{
        FUZZ_CHECK(r == 0 && e->r == 0, "result %d, reference %d (%s)", r, e->r, err);
        FUZZ_CHECK(set->n == e->set.n, "%zu secrets, reference %zu", set->n, e->set.n);
        FUZZ_CHECK(set->n >= 1 && set->n <= VERIFY_MAX_SECRETS, "%zu secrets", set->n);
        for (size_t i = 0; i < set->n; i++) {
                const struct secret *s = &set->items[i], *w = &e->set.items[i];

                FUZZ_CHECK(s->len >= 1 && s->len <= VERIFY_SECRET_MAX, "secret %zu: %zu bytes",
                           i, s->len);
                FUZZ_CHECK(s->len == w->len && memcmp(s->bytes, w->bytes, s->len) == 0,
                           "secret %zu differs from the reference", i);
        }
        check_signs(set, &set->items[0], sw);
        if (set->n > 1)
                check_signs(set, &set->items[set->n - 1], sw);
}

/* The file gives what the bytes give, message and all (but the name). */
static void check_file(const uint8_t *buf, size_t len, enum verify_scheme scheme,
                       int r, const struct secret_set *set, const char *err)
{
        struct secret_set *from_file = malloc(sizeof(*from_file));
        char ferr[512] = "";
        size_t pl = strlen(file.path);

        if (!from_file)
                abort();
        memfile_write(&file, buf, len);
        int fr = secrets_load(file.path, scheme, from_file, ferr, sizeof(ferr));
        FUZZ_CHECK(fr == r, "from a file %d, from memory %d", fr, r);
        FUZZ_CHECK(memcmp(from_file, set, sizeof(*set)) == 0, "file and memory give other sets");
        FUZZ_CHECK(r == 0 || (strncmp(ferr, file.path, pl) == 0 &&
                              strcmp(ferr + pl, err + strlen(NAME)) == 0),
                   "message \"%s\" against \"%s\"", ferr, err);
        secrets_wipe(from_file);
        free(from_file);
}

/* verify = none takes no secrets, whatever the file holds. */
static void check_no_scheme(const uint8_t *buf, size_t len, struct secret_set *set)
{
        static const struct secret_set wiped;
        char err[512] = "";

        FUZZ_CHECK(secrets_parse(NAME, buf, len, VERIFY_NONE, set, err, sizeof(err)) ==
                   -EINVAL, "verify = none loaded secrets");
        FUZZ_CHECK(memcmp(set, &wiped, sizeof(*set)) == 0, "set not wiped");
        FUZZ_CHECK(strcmp(err, NAME ": verify scheme takes no secrets") == 0, "message %s", err);
}

/* The file grown to the size limit give or take two bytes: '#'... and LF in front. */
static uint8_t *at_limit(const uint8_t *data, size_t size, uint8_t offset, size_t *ret_len)
{
        size_t len = VERIFY_SECRET_FILE_MAX + offset % 5 - 2;
        uint8_t *buf;

        if (size + 1 > len)
                len = size + 1;
        buf = malloc(len);
        if (!buf)
                abort();
        memset(buf, '#', len - size - 1);
        buf[len - size - 1] = '\n';
        if (size > 0)
                memcpy(buf + len - size, data, size);
        *ret_len = len;
        return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cursor in = { data, size };
        uint8_t flags = cursor_byte(&in), offset = cursor_byte(&in);
        enum verify_scheme scheme = flags & F_SW ? VERIFY_STANDARD_WEBHOOKS : VERIFY_HMAC;
        size_t len;
        uint8_t *buf = flags & F_AT_LIMIT ? at_limit(in.p, in.n, offset, &len)
                                          : cursor_rest(&in, &len);
        /* On the heap: ASan sees a read past the set as it would in the daemon. */
        struct secret_set *set = malloc(sizeof(*set));
        struct expect *e = malloc(sizeof(*e));
        char err[512] = "";

        if (!set || !e)
                abort();
        memset(set, 0xa5, sizeof(*set)); /* must be wiped, whatever was there */
        int r = secrets_parse(NAME, buf, len, scheme, set, err, sizeof(err));
        ref_parse(buf, len, scheme == VERIFY_STANDARD_WEBHOOKS, e);
        if (e->r < 0)
                check_refused(e, r, set, err);
        else
                check_loaded(e, r, set, scheme == VERIFY_STANDARD_WEBHOOKS, err);
        if (flags & F_FILE)
                check_file(buf, len, scheme, r, set, err);
        check_no_scheme(buf, len, set);
        secrets_wipe(set);
        free(set);
        free(e);
        free(buf);
        return 0;
}
