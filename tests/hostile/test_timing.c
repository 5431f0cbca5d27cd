/*
 * Signature comparison is constant-time: verify_check() takes as long to
 * refuse a signature wrong in its first byte as one wrong in its last byte.
 *
 * The machine this runs on is shared and often busy, so the design is one
 * whose answer does not depend on how busy it is:
 *
 * - Paired, interleaved sampling. One sample is a quad of four calls, ABBA
 *   or BAAB at random (A: wrong in the first digest character, B: in the
 *   last), and its value is (B1 + B2 - A1 - A2) / 2. Both kinds of call see
 *   the same moment's noise; a drift over the quad (frequency, a busy
 *   sibling core) cancels, and so does any cost of being first or second.
 *   With the order random, the value is symmetric around zero when the
 *   time does not depend on where the signature differs.
 * - A robust estimate. The 20 % trimmed mean of the quads, with its standard
 *   error from the winsorised variance: a quad hit by an interrupt or a
 *   preemption (microseconds to milliseconds) is trimmed, not averaged in.
 * - Controls measured in the same interleaving, so that they see the same
 *   noise as the real arm. Each adds a deliberately leaky early-exit
 *   comparison to every call and must be found leaking in every run:
 *     digest:  a plain byte loop (compiled like the code under test, called
 *              through a pointer so that it cannot be folded away) over a
 *              digest-sized buffer (32 or 64 bytes) that differs in its
 *              first or its last byte: what verify_check() would leak if it
 *              compared the decoded digests that way, in this very build;
 *     loud:    a volatile byte loop over the signature text, LOUD_REPEAT
 *              times: unmistakable, a check on the measurement itself.
 * - Sequential sampling until the verdict is clear. After 4096 quads, and
 *   then each time the count has doubled, verify_check() and what each
 *   control adds to it (its estimate minus verify_check()'s) get confidence
 *   intervals of +-Z_LIMIT standard errors. An interval wholly beyond
 *   LEAK_FLOOR_NS (either side) is a leak. verify_check() has no leak when
 *   its interval lies wholly within +-M, M being half the lower bound of
 *   what the digest control adds: any dependence on where the signature
 *   differs is then resolved to less than half of what an early-exit
 *   comparison of the digests costs in this build, so such a comparison
 *   cannot pass. Noise only makes the run
 *   longer; it ends when every arm is decided, or at the time bound, which
 *   fails and says "inconclusive" and what was undecided.
 *
 * LEAK_FLOOR_NS: processor effects of where in the buffer the last store
 * went reach about 1 ns with CRYPTO_memcmp; glibc's vectorised memcmp on
 * 32-64 bytes differs by only 0.2-1.4 ns. No timing test of this kind can
 * tell those apart, which is why the code must use CRYPTO_memcmp rather
 * than rely on a measurement; this test guards against a comparison that
 * leaks measurably.
 *
 * Usage: test-timing [SECONDS [-v]]   (time bound per scheme, default 30;
 * -v prints every look)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cashpay/verify.h"

#define Z_LIMIT 4.5
#define LEAK_FLOOR_NS 2.0
#define MARGIN_OF_CONTROL 0.5
#define TRIM 0.20
#define FIRST_LOOK 4096
#define LOUD_REPEAT 8
#define DEFAULT_BOUND_S 30.0
#define CONTROL_THINNING 4

static int failures;

#define CHECK(cond, ...) do { \
        if (!(cond)) { \
                fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
                fprintf(stderr, __VA_ARGS__); \
                fputc('\n', stderr); \
                failures++; \
        } \
} while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* The deliberate leaks of the controls: they stop at the first difference. */
static volatile size_t leak_sink;

static void leaky_compare(const volatile char *a, const volatile char *b, size_t n)
{
        size_t i = 0;

        while (i < n && a[i] == b[i])
                i++;
        leak_sink = i;
}

static size_t first_difference(const unsigned char *a, const unsigned char *b, size_t n)
{
        size_t i = 0;

        while (i < n && a[i] == b[i])
                i++;
        return i;
}

static size_t (*volatile digest_compare)(const unsigned char *, const unsigned char *,
                                         size_t) = first_difference;

/* ------------------------------------------------------------ statistics */

struct sample {
        double *v;
        size_t n, cap;
};

static void sample_add(struct sample *s, double x)
{
        if (s->n == s->cap) {
                s->cap = s->cap ? s->cap * 2 : FIRST_LOOK;
                s->v = realloc(s->v, s->cap * sizeof(*s->v));
                if (!s->v)
                        abort();
        }
        s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

struct estimate {
        double mean, se; /* trimmed mean and its standard error, ns */
};

/* Trimmed mean and the Tukey-McLaughlin standard error (from the
 * winsorised variance) of @s. */
static struct estimate trimmed(const struct sample *s)
{
        size_t n = s->n, g = (size_t) (TRIM * (double) n);
        double *v = malloc(n * sizeof(*v)), sum = 0, wsum = 0, wsq = 0;

        if (!v)
                abort();
        memcpy(v, s->v, n * sizeof(*v));
        qsort(v, n, sizeof(*v), cmp_double);
        for (size_t i = g; i < n - g; i++)
                sum += v[i];
        for (size_t i = 0; i < n; i++) {
                double w = i < g ? v[g] : i >= n - g ? v[n - g - 1] : v[i];
                wsum += w;
                wsq += w * w;
        }
        free(v);
        double wmean = wsum / (double) n;
        double wvar = (wsq - (double) n * wmean * wmean) / (double) (n - 1);
        double kept = (double) (n - 2 * g);
        return (struct estimate) {
                .mean = sum / kept,
                .se = sqrt(wvar > 0 ? wvar : 0) / ((1 - 2 * TRIM) * sqrt((double) n)),
        };
}

enum verdict { UNDECIDED, LEAK, NO_LEAK };

static const char *verdict_name(enum verdict v)
{
        return v == LEAK ? "leak" : v == NO_LEAK ? "no leak" : "undecided";
}

static double lower_bound(struct estimate e)
{
        return e.mean - Z_LIMIT * e.se;
}

/* No leak needs the interval within +-@margin (never, for margin 0). */
static enum verdict decide(struct estimate e, double margin)
{
        double lo = lower_bound(e), hi = e.mean + Z_LIMIT * e.se;

        if (lo > LEAK_FLOOR_NS || hi < -LEAK_FLOOR_NS)
                return LEAK;
        if (lo > -margin && hi < margin)
                return NO_LEAK;
        return UNDECIDED;
}

/* --------------------------------------------------------------- schemes */

struct scheme {
        const char *name;
        struct verify_params params;
        struct secret_set secrets;
        char good[VERIFY_SIGNATURE_MAX];
        const char *timestamp, *message_id;
        size_t first, last;   /* indices of the first and last digest characters */
        size_t digest_len;    /* bytes of the decoded digest */
};

static const char body[] =
        "{\"id\":\"chg_a1b2c3d4e5\",\"status\":\"CAPTURED\",\"amount\":2000,\"currency\":\"YER\","
        "\"description\":\"Purchase of a watch\",\"transaction_url\":"
        "\"https://pay.cashpay.example/session/abc\",\"created\":1672531200}";

static struct verify_input input(const struct scheme *s, const char *signature)
{
        return (struct verify_input) {
                .signature = signature, .timestamp = s->timestamp, .message_id = s->message_id,
                .body = body, .body_len = sizeof(body) - 1, .now = 1700000000,
        };
}

static void scheme_init(struct scheme *s)
{
        static const char key[] = "timing-test-secret-0123456789abcdef";

        s->secrets.n = 1;
        memcpy(s->secrets.items[0].bytes, key, sizeof(key) - 1);
        s->secrets.items[0].len = sizeof(key) - 1;
        struct verify_input in = input(s, NULL);
        CHECK(verify_sign(&s->params, &s->secrets.items[0], &in, s->good, sizeof(s->good)) == 0,
              "%s: sign", s->name);
        in = input(s, s->good);
        CHECK(verify_check(&s->params, &s->secrets, &in) == VERIFY_OK, "%s: good signature", s->name);
        size_t len = strlen(s->good);
        s->last = len - 1;
        while (s->last > 0 && s->good[s->last] == '=')
                s->last--; /* base64 padding is not digest */
        /* For base64, the last character also carries padding bits: one
         * before it changes the digest's last byte for sure. */
        if (s->params.encoding == SIG_BASE64 || s->params.scheme == VERIFY_STANDARD_WEBHOOKS)
                s->last--;
        s->digest_len = s->params.scheme == VERIFY_HMAC && s->params.algorithm == HMAC_SHA512
                                ? 64 : 32;
}

/* Another character of the same class (digit, lower, upper, other) as @c,
 * so that decoding the signature costs the same wherever it is changed. */
static char sibling(char c)
{
        if (c >= '0' && c <= '9')
                return c == '0' ? '1' : '0';
        if (c >= 'a' && c <= 'z')
                return c == 'a' ? 'b' : 'a';
        if (c >= 'A' && c <= 'Z')
                return c == 'A' ? 'B' : 'A';
        return c == '+' ? '/' : '+';
}

/* ----------------------------------------------------------- measurement */

enum arm { ARM_VERIFY, ARM_DIGEST, ARM_LOUD, N_ARMS };

static const char *const arm_names[N_ARMS] = { "verify_check", "control: digest", "control: loud" };

/*
 * What one call works on. Both kinds of wrong signature live in one buffer,
 * changed in place before each call, so that they differ in nothing but the
 * position of the change; the digest control's two buffers likewise differ
 * from its reference only in the first or the last byte.
 */
struct bench {
        const struct scheme *s;
        char sig[VERIFY_SIGNATURE_MAX];
        size_t len, pos[2];
        struct verify_input in;
        unsigned char digest_ref[64], digest[2][64];
        struct sample samples[N_ARMS];
};

static void bench_init(struct bench *b, const struct scheme *s)
{
        memset(b, 0, sizeof(*b));
        b->s = s;
        strcpy(b->sig, s->good);
        b->len = strlen(s->good);
        b->pos[0] = s->first;
        b->pos[1] = s->last;
        b->in = input(s, b->sig);
        for (size_t i = 0; i < sizeof(b->digest_ref); i++)
                b->digest_ref[i] = (unsigned char) (0x41 + i % 26);
        for (int k = 0; k < 2; k++) {
                memcpy(b->digest[k], b->digest_ref, sizeof(b->digest_ref));
                b->digest[k][k ? s->digest_len - 1 : 0] ^= 0x20;
                b->sig[b->pos[k]] = sibling(s->good[b->pos[k]]);
                CHECK(verify_check(&s->params, &s->secrets, &b->in) == VERIFY_MISMATCH,
                      "%s: change at %zu", s->name, b->pos[k]);
                b->sig[b->pos[k]] = s->good[b->pos[k]];
        }
}

/* One timed call: @which 0 is wrong in the first character, 1 in the last. */
static uint64_t timed_call(struct bench *b, enum arm arm, unsigned which)
{
        const struct scheme *s = b->s;

        b->sig[b->pos[which]] = sibling(s->good[b->pos[which]]);
        uint64_t t0 = now_ns();
        (void) verify_check(&s->params, &s->secrets, &b->in);
        if (arm == ARM_DIGEST)
                leak_sink = digest_compare(b->digest_ref, b->digest[which], s->digest_len);
        else if (arm == ARM_LOUD)
                for (int r = 0; r < LOUD_REPEAT; r++)
                        leaky_compare(s->good, b->sig, b->len);
        uint64_t dt = now_ns() - t0;
        b->sig[b->pos[which]] = s->good[b->pos[which]];
        return dt;
}

/* One quad, ABBA or BAAB: (B1 + B2 - A1 - A2) / 2, in ns. */
static double quad(struct bench *b, enum arm arm)
{
        unsigned flip = rng() & 1;
        double sum[2] = { 0, 0 };

        for (unsigned k = 0; k < 4; k++) {
                unsigned which = (k == 1 || k == 2) ^ flip;
                sum[which] += (double) timed_call(b, arm, which);
        }
        return (sum[1] - sum[0]) / 2;
}

/*
 * Every arm in random order, so all see the same noise. The loud control,
 * once decided "leak", goes on at one round in CONTROL_THINNING (still
 * interleaved, still counted), leaving the time to the arms that set the
 * verdict: verify_check() and the digest control, whose lower bound is the
 * margin.
 */
static void sample_round(struct bench *b, const enum verdict v[N_ARMS], unsigned round)
{
        enum arm order[N_ARMS] = { ARM_VERIFY, ARM_DIGEST, ARM_LOUD };

        for (int i = N_ARMS - 1; i > 0; i--) {
                int j = (int) (rng() % (uint64_t) (i + 1));
                enum arm t = order[i];
                order[i] = order[j];
                order[j] = t;
        }
        for (int i = 0; i < N_ARMS; i++) {
                enum arm a = order[i];
                if (a != ARM_LOUD || v[a] != LEAK || round % CONTROL_THINNING == 0)
                        sample_add(&b->samples[a], quad(b, a));
        }
}

static bool all_decided(const enum verdict v[N_ARMS])
{
        return v[ARM_VERIFY] != UNDECIDED && v[ARM_DIGEST] == LEAK && v[ARM_LOUD] == LEAK;
}

/* Sample @s until every arm is decided or @bound_s has passed; report. */
static void measure(const struct scheme *s, double bound_s, bool verbose)
{
        struct bench b;
        struct estimate e[N_ARMS];
        enum verdict v[N_ARMS] = { UNDECIDED, UNDECIDED, UNDECIDED };
        uint64_t started = now_ns();
        size_t next_look = FIRST_LOOK;
        unsigned looks = 0, round = 0;
        double margin = 0;
        bool out_of_time = false;

        bench_init(&b, s);
        while (!all_decided(v) && !out_of_time) {
                /* The last look comes at the time bound, whatever the count. */
                while (b.samples[0].n < next_look && !out_of_time) {
                        sample_round(&b, v, round++);
                        if (b.samples[0].n % 256 == 0)
                                out_of_time = (double) (now_ns() - started) / 1e9 > bound_s;
                }
                next_look *= 2;
                looks++;
                for (int a = 0; a < N_ARMS; a++)
                        e[a] = trimmed(&b.samples[a]);
                /* A control's own leak is what it adds to verify_check(). */
                for (int a = ARM_DIGEST; a < N_ARMS; a++)
                        e[a] = (struct estimate) {
                                .mean = e[a].mean - e[ARM_VERIFY].mean,
                                .se = hypot(e[a].se, e[ARM_VERIFY].se),
                        };
                margin = MARGIN_OF_CONTROL * lower_bound(e[ARM_DIGEST]);
                if (margin < 0)
                        margin = 0;
                for (int a = 0; a < N_ARMS; a++) {
                        v[a] = decide(e[a], a == ARM_VERIFY ? margin : 0);
                        if (verbose)
                                printf("    look %u %-16s n %7zu  %+8.2f ns  se %.2f  %s\n",
                                       looks, arm_names[a], b.samples[a].n, e[a].mean, e[a].se,
                                       verdict_name(v[a]));
                }
        }
        double elapsed = (double) (now_ns() - started) / 1e9;
        printf("%s: %u look(s), %.1f s, no-leak margin +-%.2f ns\n", s->name, looks, elapsed,
               margin);
        for (int a = 0; a < N_ARMS; a++) {
                printf("  %-16s %7zu quads  %s %+8.2f ns  +-%.2f  %s\n",
                       arm_names[a], b.samples[a].n, a == ARM_VERIFY ? "last-first" : "added leak",
                       e[a].mean, Z_LIMIT * e[a].se,
                       verdict_name(v[a]));
                free(b.samples[a].v);
        }
        CHECK(v[ARM_LOUD] == LEAK, "%s: the loud control was %s: the measurement is broken",
              s->name, verdict_name(v[ARM_LOUD]));
        CHECK(v[ARM_DIGEST] == LEAK, "%s: the digest-sized control leak was %s%s", s->name,
              verdict_name(v[ARM_DIGEST]),
              out_of_time ? " (inconclusive: too noisy for the time bound)" : "");
        CHECK(v[ARM_VERIFY] != LEAK, "%s: timing depends on where the signature differs",
              s->name);
        CHECK(v[ARM_VERIFY] != UNDECIDED,
              "%s: inconclusive: verify_check() not resolved to within +-%.2f ns in %.0f s",
              s->name, margin, bound_s);
}

int main(int argc, char **argv)
{
        double bound_s = argc > 1 ? strtod(argv[1], NULL) : DEFAULT_BOUND_S;
        bool verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
        struct scheme schemes[] = {
                { .name = "hmac-sha256 hex", .params = { .scheme = VERIFY_HMAC,
                  .algorithm = HMAC_SHA256, .encoding = SIG_HEX, .tolerance = 300 } },
                { .name = "hmac-sha512 base64", .params = { .scheme = VERIFY_HMAC,
                  .algorithm = HMAC_SHA512, .encoding = SIG_BASE64, .tolerance = 300 } },
                { .name = "standard-webhooks", .params = { .scheme = VERIFY_STANDARD_WEBHOOKS,
                  .tolerance = 300 }, .timestamp = "1700000000", .message_id = "msg_timing",
                  .first = 3 /* after "v1," */ },
        };

        printf("verify_check: wrong in the last vs the first digest character, paired quads; "
               "leak: %.1f-se interval beyond %.0f ns, no leak: within %.0f %% of the digest "
               "control's added leak; at most %.0f s per scheme\n", Z_LIMIT, LEAK_FLOOR_NS,
               100 * MARGIN_OF_CONTROL, bound_s);
        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
                struct scheme *s = &schemes[i];

                int before = failures;
                scheme_init(s);
                if (failures == before)
                        measure(s, bound_s, verbose);
        }
        if (failures) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return 1;
        }
        printf("timing: no dependence on where the signature differs; both controls caught\n");
        return 0;
}
