/*
 * Signature comparison is constant-time: verify_check() takes as long to
 * refuse a signature wrong in its first byte as one wrong in its last byte.
 *
 * For each scheme (hmac hex, hmac base64, Standard Webhooks) the two kinds of
 * wrong signature are verified TRIALS times each, interleaved in random order,
 * each call timed with CLOCK_MONOTONIC. Timings above the pooled 90th
 * percentile (interrupts, migrations) are dropped, then Welch's t statistic
 * compares the means. A difference counts when it is both significant
 * (|t| >= T_LIMIT) and large enough to be a comparison leaking
 * (>= MIN_LEAK_NS): with 10^5 samples a t-test also flags sub-nanosecond
 * effects of the processor (where in the buffer the last store went), far
 * below what stopping one byte earlier in a comparison costs. Up to about
 * 1 ns of such effects were seen with CRYPTO_memcmp, hence the 2 ns floor;
 * an early-exit byte loop shows 7-30 ns and fails the test. (glibc's
 * vectorised memcmp on 32-64 bytes differs by only 0.2-1.4 ns: no timing
 * test of this kind can tell it apart, which is why the code must use
 * CRYPTO_memcmp rather than rely on a measurement.)
 *
 * A control shows the method would see a leak: the same measurement with an
 * early-exit byte comparison of the two digests added to each call must give
 * |t| over T_LIMIT. If it does not, the machine is too noisy for the test to
 * mean anything and it fails rather than pass vacuously.
 *
 * Usage: test-timing [TRIALS]   (default 100000)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cashpay/verify.h"

#define T_LIMIT 4.5
#define MIN_LEAK_NS 2.0
#define KEEP_PERCENTILE 0.90

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

/* A comparison that leaks where the first difference is: the control. */
static volatile int leak_sink;

static void leaky_compare(const volatile char *a, const volatile char *b, size_t n)
{
        size_t i = 0;

        while (i < n && a[i] == b[i])
                i++;
        leak_sink = (int) i;
}

struct sample {
        double *v;
        size_t n;
};

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

/* The value below which KEEP_PERCENTILE of both samples together lie. */
static double pooled_cut(const struct sample *a, const struct sample *b)
{
        size_t n = a->n + b->n;
        double *all = malloc(n * sizeof(*all));

        if (!all)
                abort();
        memcpy(all, a->v, a->n * sizeof(*all));
        memcpy(all + a->n, b->v, b->n * sizeof(*all));
        qsort(all, n, sizeof(*all), cmp_double);
        double cut = all[(size_t) (KEEP_PERCENTILE * (double) (n - 1))];
        free(all);
        return cut;
}

struct stats {
        double mean, var;
        size_t n;
};

static struct stats stats_below(const struct sample *s, double cut)
{
        struct stats st = { 0 };
        double sum = 0, sq = 0;

        for (size_t i = 0; i < s->n; i++) {
                if (s->v[i] > cut)
                        continue;
                sum += s->v[i];
                st.n++;
        }
        st.mean = st.n ? sum / (double) st.n : 0;
        for (size_t i = 0; i < s->n; i++)
                if (s->v[i] <= cut)
                        sq += (s->v[i] - st.mean) * (s->v[i] - st.mean);
        st.var = st.n > 1 ? sq / (double) (st.n - 1) : 0;
        return st;
}

static double welch_t(struct stats a, struct stats b)
{
        double se = sqrt(a.var / (double) a.n + b.var / (double) b.n);

        return se > 0 ? (a.mean - b.mean) / se : 0;
}

struct scheme {
        const char *name;
        struct verify_params params;
        struct secret_set secrets;
        char good[VERIFY_SIGNATURE_MAX];
        const char *timestamp, *message_id;
        size_t first, last; /* indices of the first and last digest characters */
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

/*
 * Time @trials pairs; @leak adds the early-exit comparison (the control).
 * Both kinds of wrong signature live in one buffer, changed in place before
 * each call, so that they differ in nothing but the position of the change.
 */
static bool measure(const struct scheme *s, size_t trials, bool leak)
{
        char sig[VERIFY_SIGNATURE_MAX];
        size_t len = strlen(s->good);
        const size_t pos[2] = { s->first, s->last };
        struct sample samples[2] = {
                { calloc(trials, sizeof(double)), 0 },
                { calloc(trials, sizeof(double)), 0 },
        };

        if (!samples[0].v || !samples[1].v)
                abort();
        strcpy(sig, s->good);
        struct verify_input in = input(s, sig);
        for (int k = 0; k < 2; k++) {
                sig[pos[k]] = sibling(s->good[pos[k]]);
                CHECK(verify_check(&s->params, &s->secrets, &in) == VERIFY_MISMATCH,
                      "%s: change at %zu", s->name, pos[k]);
                sig[pos[k]] = s->good[pos[k]];
        }
        for (size_t i = 0; i < trials; i++) {
                unsigned order = rng() & 1;
                for (unsigned k = 0; k < 2; k++) {
                        unsigned which = k ^ order;
                        sig[pos[which]] = sibling(s->good[pos[which]]);
                        uint64_t t0 = now_ns();
                        (void) verify_check(&s->params, &s->secrets, &in);
                        if (leak)
                                leaky_compare(s->good, sig, len);
                        uint64_t dt = now_ns() - t0;
                        sig[pos[which]] = s->good[pos[which]];
                        samples[which].v[samples[which].n++] = (double) dt;
                }
        }
        double cut = pooled_cut(&samples[0], &samples[1]);
        struct stats a = stats_below(&samples[0], cut), b = stats_below(&samples[1], cut);
        double t = welch_t(a, b);
        printf("  %-19s %-7s first-byte %7.1f ns (n=%zu)  last-byte %7.1f ns (n=%zu)  "
               "diff %+6.1f ns  t = %+7.2f\n", s->name, leak ? "control" : "", a.mean, a.n,
               b.mean, b.n, b.mean - a.mean, t);
        free(samples[0].v);
        free(samples[1].v);
        return fabs(t) >= T_LIMIT && fabs(b.mean - a.mean) >= MIN_LEAK_NS;
}

int main(int argc, char **argv)
{
        size_t trials = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
        struct scheme schemes[] = {
                { .name = "hmac-sha256 hex", .params = { .scheme = VERIFY_HMAC,
                  .algorithm = HMAC_SHA256, .encoding = SIG_HEX, .tolerance = 300 } },
                { .name = "hmac-sha512 base64", .params = { .scheme = VERIFY_HMAC,
                  .algorithm = HMAC_SHA512, .encoding = SIG_BASE64, .tolerance = 300 } },
                { .name = "standard-webhooks", .params = { .scheme = VERIFY_STANDARD_WEBHOOKS,
                  .tolerance = 300 }, .timestamp = "1700000000", .message_id = "msg_timing",
                  .first = 3 /* after "v1," */ },
        };

        printf("verify_check: first-byte vs last-byte mismatch, %zu trials each; a leak is "
               "|t| >= %.1f and a difference >= %.0f ns\n", trials, T_LIMIT, MIN_LEAK_NS);
        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
                struct scheme *s = &schemes[i];

                scheme_init(s);
                if (failures)
                        break;
                CHECK(!measure(s, trials, false), "%s: timing depends on where the signature differs",
                      s->name);
                /* The control: the same method must see an early-exit comparison. */
                CHECK(measure(s, trials, true), "%s: the control leak was not detected (too noisy)",
                      s->name);
        }
        if (failures) {
                fprintf(stderr, "%d check(s) failed\n", failures);
                return 1;
        }
        printf("timing: no significant difference\n");
        return 0;
}
