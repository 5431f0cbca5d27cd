/*
 * Unit tests of token.h: renewal timing with the clock passed in, one
 * renewal however many wait, backoff 1 s doubling to 60 s, the forced
 * renewal after a 401, and hostile token answers and token files.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/token.h"
#include "tests/check.h"

#define S 1000 /* ms per second */

static void test_renewal_timing(void)
{
        struct token_state t = { 0 };
        int64_t now = 1000000;

        CHECK(!token_usable(&t, now));
        CHECK_EQ_INT(token_next_event_ms(&t), 0); /* none: wanted at once */
        /* many callers want a token: exactly one renews */
        CHECK(token_start_renewal(&t, now));
        for (int i = 0; i < 100; i++)
                CHECK(!token_start_renewal(&t, now));
        CHECK_EQ_INT(token_next_event_ms(&t), INT64_MAX);
        CHECK_EQ_INT(token_renewed(&t, "abc.DEF-1", 3300, 9999, 300, now), 0);
        CHECK(token_usable(&t, now));
        CHECK_EQ_INT(t.generation, 1);
        CHECK_EQ_INT(t.expires_at_ms, now + 3300 * S);
        CHECK_EQ_INT(token_next_event_ms(&t), now + 3000 * S);
        /* not due before the margin, due from it, still usable until expiry */
        CHECK(!token_start_renewal(&t, now + 2999 * S));
        CHECK(token_start_renewal(&t, now + 3000 * S));
        CHECK(token_usable(&t, now + 3299 * S));
        CHECK(!token_usable(&t, now + 3300 * S));
        /* expires_in absent: the configured lifetime */
        CHECK_EQ_INT(token_renewed(&t, "second", -1, 600, 300, now), 0);
        CHECK_EQ_INT(t.expires_at_ms, now + 600 * S);
        CHECK_EQ_INT(t.renew_at_ms, now + 300 * S);
        /* a token living less than the margin: renewed at half its life */
        CHECK(token_start_renewal(&t, now + 300 * S));
        CHECK_EQ_INT(token_renewed(&t, "short", 60, 3300, 300, now), 0);
        CHECK_EQ_INT(t.renew_at_ms, now + 30 * S);
        CHECK_EQ_INT(t.generation, 3);
        CHECK_EQ_INT(token_renewed(&t, "", 60, 3300, 300, now), -EINVAL);
        token_state_clear(&t);
        CHECK(t.token == NULL && t.generation == 0);
}

static void test_backoff(void)
{
        static const int64_t waits[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60 };
        struct token_state t = { 0 };
        int64_t now = 5000;

        for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
                CHECK(token_start_renewal(&t, now));
                token_renewal_failed(&t, now);
                CHECK_EQ_INT(t.retry_at_ms, now + waits[i] * S);
                CHECK(!token_start_renewal(&t, now + waits[i] * S - 1));
                now += waits[i] * S;
        }
        /* success resets the backoff */
        CHECK(token_start_renewal(&t, now));
        CHECK_EQ_INT(token_renewed(&t, "tok", 100, 3300, 10, now), 0);
        CHECK_EQ_INT(t.failures, 0);
        CHECK(token_start_renewal(&t, now + 90 * S));
        token_renewal_failed(&t, now + 90 * S);
        CHECK_EQ_INT(t.retry_at_ms, now + 91 * S);
        /* a failed renewal keeps the old token while it lasts */
        CHECK(token_usable(&t, now + 99 * S));
        token_state_clear(&t);
}

static void test_rejected(void)
{
        struct token_state t = { 0 };
        int64_t now = 0;
        uint64_t gen;

        CHECK(token_start_renewal(&t, now));
        CHECK_EQ_INT(token_renewed(&t, "first", 3300, 3300, 300, now), 0);
        gen = t.generation;
        /* a 401: dropped and due at once, even inside an old backoff */
        t.retry_at_ms = now + 60 * S;
        CHECK(token_rejected(&t, gen));
        CHECK(!token_usable(&t, now));
        CHECK(token_start_renewal(&t, now));
        /* twenty requests rejected with the old token: one renewal */
        for (int i = 0; i < 20; i++)
                CHECK(token_rejected(&t, gen));
        CHECK(!token_start_renewal(&t, now));
        CHECK_EQ_INT(token_renewed(&t, "second", 3300, 3300, 300, now), 0);
        /* a late 401 for the old token leaves the new one alone */
        CHECK(token_rejected(&t, gen));
        CHECK(token_usable(&t, now));
        CHECK_STR(t.token, "second");
        token_state_clear(&t);
}

static void check_bad_answer(const char *body, const char *fragment)
{
        char *tok = (char *) 1, detail[128] = "";
        int64_t exp;
        int r = token_parse_response(body, strlen(body), &tok, &exp, detail, sizeof(detail));

        CHECK(r == -EINVAL && tok == NULL && strstr(detail, fragment) != NULL,
              "%s: r=%d detail '%s', want '%s'", body, r, detail, fragment);
        /* the detail never repeats what was offered as a token */
        CHECK(strstr(detail, "SECRET") == NULL);
}

static void test_parse_response(void)
{
        char *tok = NULL, detail[128];
        int64_t exp = 0;
        const char *ok = "{\"access_token\":\"aB3-._~+/==\",\"token_type\":\"bearer\","
                         "\"expires_in\":3300,\"scope\":\"charges\"}";
        char *huge;

        CHECK_EQ_INT(token_parse_response(ok, strlen(ok), &tok, &exp, detail, sizeof(detail)), 0);
        CHECK_STR(tok, "aB3-._~+/==");
        CHECK_EQ_INT(exp, 3300);
        token_wipe_free(tok);
        ok = "{\"access_token\":\"x\",\"token_type\":\"Bearer\"}";
        CHECK_EQ_INT(token_parse_response(ok, strlen(ok), &tok, &exp, detail, sizeof(detail)), 0);
        CHECK_EQ_INT(exp, -1);
        token_wipe_free(tok);

        check_bad_answer("<html>login</html>", "not a JSON object");
        check_bad_answer("[\"SECRET\"]", "not a JSON object");
        check_bad_answer("{}", "access_token is missing");
        check_bad_answer("{\"access_token\":7,\"token_type\":\"Bearer\"}", "not a string");
        check_bad_answer("{\"access_token\":\"\",\"token_type\":\"Bearer\"}", "empty");
        check_bad_answer("{\"access_token\":\"SECRET with space\",\"token_type\":\"Bearer\"}",
                         "characters");
        check_bad_answer("{\"access_token\":\"SECRET\\r\\nX-Evil: 1\",\"token_type\":\"Bearer\"}",
                         "characters");
        check_bad_answer("{\"access_token\":\"=SECRET\",\"token_type\":\"Bearer\"}", "characters");
        check_bad_answer("{\"access_token\":\"SECRET\",\"token_type\":\"mac\"}", "not Bearer");
        check_bad_answer("{\"access_token\":\"SECRET\"}", "not Bearer");
        check_bad_answer("{\"access_token\":\"SECRET\",\"token_type\":\"Bearer\","
                         "\"expires_in\":\"3300\"}", "not an integer");
        check_bad_answer("{\"access_token\":\"SECRET\",\"token_type\":\"Bearer\","
                         "\"expires_in\":0}", "out of range");
        check_bad_answer("{\"access_token\":\"SECRET\",\"token_type\":\"Bearer\","
                         "\"expires_in\":33.5}", "not an integer");
        check_bad_answer("{\"access_token\":\"SECRET\",\"access_token\":\"b\","
                         "\"token_type\":\"Bearer\"}", "not a JSON object");
        huge = malloc(TOKEN_MAX + 100);
        CHECK(huge != NULL);
        strcpy(huge, "{\"access_token\":\"");
        memset(huge + strlen(huge), 'a', TOKEN_MAX + 1);
        strcpy(huge + 17 + TOKEN_MAX + 1, "\",\"token_type\":\"Bearer\"}");
        check_bad_answer(huge, "too long");
        free(huge);
}

static void test_token_file(void)
{
        char *tok = NULL, detail[128];

        CHECK_EQ_INT(token_from_file("  tok-1.2\n", 10, &tok, detail, sizeof(detail)), 0);
        CHECK_STR(tok, "tok-1.2");
        token_wipe_free(tok);
        CHECK_EQ_INT(token_from_file("\r\n\t", 3, &tok, detail, sizeof(detail)), -EINVAL);
        CHECK(strstr(detail, "empty") != NULL);
        CHECK_EQ_INT(token_from_file("a\nb\n", 4, &tok, detail, sizeof(detail)), -EINVAL);
        CHECK_EQ_INT(token_from_file("a\0b", 3, &tok, detail, sizeof(detail)), -EINVAL);
        CHECK(tok == NULL);
}

static void test_basic_auth(void)
{
        char *h = NULL;

        /* RFC 6749 §2.3.1: each half form-urlencoded first ("a b" -> "a+b") */
        CHECK_EQ_INT(token_basic_auth("cashpay-sim", "s3cret", &h), 0);
        CHECK_STR(h, "Basic Y2FzaHBheS1zaW06czNjcmV0"); /* base64("cashpay-sim:s3cret") */
        token_wipe_free(h);
        CHECK_EQ_INT(token_basic_auth("shop:1", "a b/c", &h), 0);
        CHECK_STR(h, "Basic c2hvcCUzQTE6YStiJTJGYw=="); /* "shop%3A1:a+b%2Fc" */
        token_wipe_free(h);
}

int main(void)
{
        test_renewal_timing();
        test_backoff();
        test_rejected();
        test_parse_response();
        test_token_file();
        test_basic_auth();
        return check_summary();
}
