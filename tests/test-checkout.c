/*
 * Unit tests of checkout.h: the §8.3 request rules, the body sent to
 * CashPay (with the order_ref at order_ref_field) and the random keys.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/checkout.h"
#include "tests/check.h"

static void check_invalid(const char *ref, long long amount, const char *cur, const char *desc,
                          const char *fragment)
{
        char detail[128] = "";
        int r = checkout_validate(ref, amount, cur, desc, detail, sizeof(detail));

        CHECK(r == -EINVAL && strstr(detail, fragment), "%s/%lld/%s: r=%d '%s', want '%s'",
              ref ? ref : "(null)", amount, cur ? cur : "(null)", r, detail, fragment);
}

static void test_validate(void)
{
        char long_ref[130], long_desc[4098];

        CHECK_EQ_INT(checkout_validate("42", 2000, "YER", "Purchase of a watch", NULL, 0), 0);
        CHECK_EQ_INT(checkout_validate("A-z_0.9:x", 9007199254740991LL, "USD", NULL, NULL, 0), 0);
        CHECK_EQ_INT(checkout_validate("ref", 1, "YER", "caf\xc3\xa9", NULL, 0), 0);
        memset(long_ref, 'r', 129);
        long_ref[129] = '\0';
        check_invalid(long_ref, 1, "YER", NULL, "order_ref");
        long_ref[128] = '\0';
        CHECK_EQ_INT(checkout_validate(long_ref, 1, "YER", NULL, NULL, 0), 0);
        check_invalid("", 1, "YER", NULL, "order_ref");
        check_invalid(NULL, 1, "YER", NULL, "order_ref");
        check_invalid("a b", 1, "YER", NULL, "order_ref");
        check_invalid("a/b", 1, "YER", NULL, "order_ref");
        check_invalid("x", 0, "YER", NULL, "amount");
        check_invalid("x", -5, "YER", NULL, "amount");
        check_invalid("x", 9007199254740992LL, "YER", NULL, "amount");
        check_invalid("x", 1, "yer", NULL, "currency");
        check_invalid("x", 1, "YERR", NULL, "currency");
        check_invalid("x", 1, NULL, NULL, "currency");
        check_invalid("x", 1, "YER", "line\nbreak", "control");
        check_invalid("x", 1, "YER", "bad \xff byte", "UTF-8");
        memset(long_desc, 'd', 4097);
        long_desc[4097] = '\0';
        check_invalid("x", 1, "YER", long_desc, "4096");
}

static void test_body(void)
{
        char *b = NULL;

        CHECK_EQ_INT(checkout_charge_body("42", 2000, "YER", "a \"watch\"", "https://s/h",
                                          "https://s/r?ref=abc", NULL, &b), 0);
        CHECK_STR(b, "{\"amount\":2000,\"currency\":\"YER\",\"post_url\":\"https://s/h\","
                     "\"redirect_url\":\"https://s/r?ref=abc\",\"description\":\"a \\\"watch\\\"\"}");
        free(b);
        CHECK_EQ_INT(checkout_charge_body("42", 5, "YER", NULL, "p", "r", "metadata.order_id", &b), 0);
        CHECK_STR(b, "{\"amount\":5,\"currency\":\"YER\",\"post_url\":\"p\",\"redirect_url\":\"r\","
                     "\"metadata\":{\"order_id\":\"42\"}}");
        free(b);
        CHECK_EQ_INT(checkout_charge_body("42", 5, "YER", NULL, "p", "r", "ref", &b), 0);
        CHECK(strstr(b, "\"ref\":\"42\"") != NULL);
        free(b);
        /* a path onto one of the fields cashpayd sends is refused, not overwritten */
        CHECK_EQ_INT(checkout_charge_body("42", 5, "YER", NULL, "p", "r", "amount", &b), -EINVAL);
        CHECK(b == NULL);
        CHECK_EQ_INT(checkout_charge_body("42", 5, "YER", NULL, "p", "r", "amount.x", &b), -EINVAL);
}

static void test_random_key(void)
{
        char a[64], b[64], tiny[8];

        CHECK_EQ_INT(checkout_random_key("cpd_", 16, a, sizeof(a)), 0);
        CHECK_EQ_INT(checkout_random_key("cpd_", 16, b, sizeof(b)), 0);
        CHECK_EQ_INT(strlen(a), 4 + 22); /* 128 bits in unpadded base64url */
        CHECK(strncmp(a, "cpd_", 4) == 0 && strcmp(a, b) != 0);
        CHECK(strspn(a + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
              == 22);
        CHECK_EQ_INT(checkout_random_key("cpd_", 16, tiny, sizeof(tiny)), -EINVAL);
        CHECK_EQ_INT(checkout_random_key("", 33, a, sizeof(a)), -EINVAL);
}

/* One body through checkout_parse_request(): 0, or the detail's fragment. */
static void check_parse(const char *body, const char *fragment)
{
        struct checkout_request r;
        char detail[200] = "";
        int ret = checkout_parse_request(body, strlen(body), &r, detail, sizeof(detail));

        if (!fragment)
                CHECK_EQ_INT(ret, 0);
        else
                CHECK(ret == -EINVAL && strstr(detail, fragment));
        checkout_request_clear(&r);
}

static void test_parse_request(void)
{
        struct checkout_request r;
        char detail[200];
        const char *ok = "{\"order_ref\":\"42\",\"amount\":2000,\"currency\":\"YER\","
                         "\"description\":\"Purchase of a watch\"}";

        CHECK_EQ_INT(checkout_parse_request(ok, strlen(ok), &r, detail, sizeof(detail)), 0);
        CHECK(strcmp(r.order_ref, "42") == 0 && r.amount == 2000);
        CHECK(strcmp(r.currency, "YER") == 0 && strcmp(r.description, "Purchase of a watch") == 0);
        checkout_request_clear(&r);
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\"}", NULL);
        check_parse("", "empty body");
        check_parse("{", "invalid JSON at line 1");
        check_parse("{\"order_ref\":\"\xff\",\"amount\":1,\"currency\":\"YER\"}", "invalid UTF-8");
        check_parse("[]", "JSON object");
        check_parse("7", "JSON object");
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"amount\":2,\"currency\":\"YER\"}",
                    "duplicate");
        check_parse("{\"amount\":1,\"currency\":\"YER\"}", "order_ref is missing");
        check_parse("{\"order_ref\":\"a\",\"amount\":1.0,\"currency\":\"YER\"}",
                    "amount must be an integer");
        check_parse("{\"order_ref\":\"a\",\"amount\":\"1\",\"currency\":\"YER\"}",
                    "amount must be an integer");
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":1}",
                    "currency must be a string");
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\",\"description\":null}",
                    "description must be a string");
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\",\"x\":1}",
                    "unknown field \"x\"");
        /* a name that could not be quoted whole in the JSON answer is
         * described, never cut in the middle of a UTF-8 character */
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\",\"xxxxxxxxxxxxxxxx"
                    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9\":1}",
                    "unknown field (a name of 65 bytes)");
        check_parse("{\"order_ref\":\"a\",\"amount\":1,\"currency\":\"YER\",\"a\\nb\":1}",
                    "unknown field (a name of 3 bytes)");
        check_parse("{\"order_ref\":\"a\",\"amount\":0,\"currency\":\"YER\"}",
                    "amount must be an integer from 1");
}

int main(void)
{
        test_validate();
        test_body();
        test_random_key();
        test_parse_request();
        return check_summary();
}
