/*
 * Unit tests for charge: every rule of the contract's payload table, with
 * the inputs a careless or hostile sender would try.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/charge.h"
#include "tests/check.h"

/* A charge body built from raw JSON texts; NULL keeps the default, OMIT drops the key. */
static const char OMIT[] = "omit";

struct fields {
        const char *id, *status, *amount, *currency, *created, *extra;
};

static void append(char **p, size_t *left, const char *key, const char *val, const char *dflt)
{
        int n;

        if (val == OMIT)
                return;
        n = snprintf(*p, *left, "\"%s\":%s,", key, val ? val : dflt);
        if (n < 0 || (size_t) n >= *left)
                abort();
        *p += n;
        *left -= (size_t) n;
}

static char *build(struct fields f)
{
        size_t size = 64 + 5 * 32 + (f.id ? strlen(f.id) : 0) + (f.extra ? strlen(f.extra) : 0) +
                      (f.amount ? strlen(f.amount) : 0) + (f.currency ? strlen(f.currency) : 0) +
                      (f.status ? strlen(f.status) : 0) + (f.created ? strlen(f.created) : 0);
        char *buf = malloc(size), *p = buf + 1;
        size_t left = size - 2;

        if (!buf)
                abort();
        buf[0] = '{';
        append(&p, &left, "id", f.id, "\"chg_a1b2c3d4e5\"");
        append(&p, &left, "status", f.status, "\"CAPTURED\"");
        append(&p, &left, "amount", f.amount, "2000");
        append(&p, &left, "currency", f.currency, "\"YER\"");
        append(&p, &left, "created", f.created, "1672531200");
        if (f.extra)
                append(&p, &left, "x", f.extra, NULL);
        p[-1] = '}';    /* replaces the last comma */
        return buf;
}

#define BODY(...) build((struct fields) { __VA_ARGS__ })

/* Parse @body (owned, freed here) and expect success. */
static void expect_ok_at(int line, char *body, size_t len, const char *ref_field, struct charge *ret)
{
        char detail[256] = "";
        int r = charge_parse(body, len, ref_field, ret, detail, sizeof(detail));

        check_at(__FILE__, line, r == 0, "parse failed (%d, \"%s\") for: %.200s", r, detail, body);
        free(body);
}

/* Parse @body (owned, freed here), expect -EINVAL with a detail containing @want. */
static void expect_invalid_at(int line, char *body, size_t len, const char *ref_field,
                              const char *want, const char *want_id)
{
        struct charge c;
        char detail[256] = "unset";
        int r = charge_parse(body, len, ref_field, &c, detail, sizeof(detail));

        check_at(__FILE__, line, r == -EINVAL, "want -EINVAL, got %d for: %.200s", r, body);
        check_at(__FILE__, line, strstr(detail, want) != NULL, "detail \"%s\" lacks \"%s\"",
                 detail, want);
        check_at(__FILE__, line, strcmp(c.id, want_id) == 0, "id \"%s\", want \"%s\"",
                 c.id, want_id);
        check_at(__FILE__, line, !c.description && !c.transaction_url && !c.order_ref,
                 "a failed parse still owns memory");
        charge_clear(&c);
        free(body);
}

#define OK_BODY(body, c) do { char *b_ = (body); \
        expect_ok_at(__LINE__, b_, strlen(b_), NULL, (c)); } while (0)
#define OK_REF(body, ref, c) do { char *b_ = (body); \
        expect_ok_at(__LINE__, b_, strlen(b_), (ref), (c)); } while (0)
#define BAD(body, want) do { char *b_ = (body); \
        expect_invalid_at(__LINE__, b_, strlen(b_), NULL, (want), "chg_a1b2c3d4e5"); } while (0)
#define BAD_NOID(body, want) do { char *b_ = (body); \
        expect_invalid_at(__LINE__, b_, strlen(b_), NULL, (want), ""); } while (0)
#define BAD_REF(body, ref, want) do { char *b_ = (body); \
        expect_invalid_at(__LINE__, b_, strlen(b_), (ref), (want), "chg_a1b2c3d4e5"); } while (0)
/* Raw bytes, possibly with NULs or invalid UTF-8: sizeof of a literal. */
#define BAD_RAW(lit, want) \
        expect_invalid_at(__LINE__, memdup(lit, sizeof(lit) - 1), sizeof(lit) - 1, NULL, (want), "")

static char *memdup(const char *p, size_t n)
{
        char *r = malloc(n + 1);

        if (!r)
                abort();
        memcpy(r, p, n);
        r[n] = '\0';
        return r;
}

static char *repeat(char ch, size_t n)
{
        char *r = malloc(n + 1);

        if (!r)
                abort();
        memset(r, ch, n);
        r[n] = '\0';
        return r;
}

/* "\"" + s + "\"", owned */
static char *quoted(const char *s)
{
        size_t n = strlen(s);
        char *r = malloc(n + 3);

        if (!r)
                abort();
        r[0] = '"';
        memcpy(r + 1, s, n);
        memcpy(r + 1 + n, "\"", 2);
        return r;
}

static void test_valid(void)
{
        struct charge c;

        OK_BODY(strdup("{ \"id\": \"chg_a1b2c3d4e5\", \"status\": \"INITIATED\", \"amount\": 2000,\n"
                       "  \"currency\": \"YER\", \"description\": \"Purchase of a watch\",\n"
                       "  \"transaction_url\": \"https://pay.cashpay.com/session/x\",\n"
                       "  \"created\": 1672531200 }\n"),
                &c);
        CHECK_STR(c.id, "chg_a1b2c3d4e5");
        CHECK(c.status == CHARGE_INITIATED);
        CHECK(c.amount == 2000);
        CHECK_STR(c.currency, "YER");
        CHECK(c.created == 1672531200);
        CHECK_STR(c.description, "Purchase of a watch");
        CHECK_STR(c.transaction_url, "https://pay.cashpay.com/session/x");
        CHECK(c.order_ref == NULL);
        charge_clear(&c);
        CHECK(c.description == NULL && c.id[0] == '\0');

        OK_BODY(BODY(.status = "\"FAILED\"", .amount = "0", .created = "0"), &c);
        CHECK(c.status == CHARGE_FAILED && c.amount == 0 && c.created == 0);
        CHECK(c.description == NULL && c.transaction_url == NULL);
        charge_clear(&c);

        /* unknown fields of every shape are ignored, reals included */
        OK_BODY(BODY(.extra = "{\"a\":[1,2.5,1e300,null,true,{\"b\":\"\\u00e9\\ud83d\\ude00\"}]}"), &c);
        CHECK(c.status == CHARGE_CAPTURED);
        charge_clear(&c);

        /* null optional fields are absent; empty strings are kept */
        OK_BODY(strdup("{\"id\":\"chg_x\",\"status\":\"CAPTURED\",\"amount\":1,\"currency\":\"USD\","
                       "\"created\":5,\"description\":null,\"transaction_url\":\"\"}"), &c);
        CHECK(c.description == NULL);
        CHECK_STR(c.transaction_url, "");
        charge_clear(&c);

        /* key order does not matter; multi-byte UTF-8 in a description is fine */
        OK_BODY(strdup("{\"created\":1,\"currency\":\"EUR\",\"amount\":7,\"status\":\"CAPTURED\","
                       "\"description\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\","
                       "\"id\":\"chg_Z-9_\"}"), &c);
        CHECK_STR(c.id, "chg_Z-9_");
        CHECK_STR(c.description, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
        charge_clear(&c);
}

static void test_amount(void)
{
        struct charge c;

        OK_BODY(BODY(.amount = "9007199254740991"), &c);
        CHECK(c.amount == CHARGE_AMOUNT_MAX);
        charge_clear(&c);
        OK_BODY(BODY(.amount = "-0"), &c);     /* the integer zero, spelled oddly */
        CHECK(c.amount == 0);
        charge_clear(&c);

        BAD(BODY(.amount = "\"2000\""), "amount must be an integer");
        BAD(BODY(.amount = "20.5"), "amount must be an integer");
        BAD(BODY(.amount = "2e3"), "amount must be an integer");
        BAD(BODY(.amount = "2000.0"), "amount must be an integer");
        BAD(BODY(.amount = "1e-400"), "amount must be an integer");
        BAD(BODY(.amount = "true"), "amount must be an integer");
        BAD(BODY(.amount = "null"), "amount must be an integer");
        BAD(BODY(.amount = "[2000]"), "amount must be an integer");
        BAD(BODY(.amount = OMIT), "amount is missing");
        BAD(BODY(.amount = "-1"), "amount must be an integer between 0 and 9007199254740991");
        BAD(BODY(.amount = "9007199254740992"),
            "amount must be an integer between 0 and 9007199254740991");
        BAD(BODY(.amount = "9223372036854775807"), "between 0 and 9007199254740991");
        BAD(BODY(.amount = "-9223372036854775808"), "between 0 and 9007199254740991");
        /* beyond what jansson can hold: it fails, and the detail still names the field */
        BAD_NOID(BODY(.amount = "9223372036854775808"), "amount must be an integer between 0 and");
        BAD_NOID(BODY(.amount = "99999999999999999999"), "amount must be an integer between 0 and");
        BAD_NOID(BODY(.amount = "-99999999999999999999"), "amount must be an integer between 0 and");
        BAD_NOID(BODY(.amount = "1e400"), "amount must be an integer between 0 and");
        BAD_NOID(BODY(.amount = "-1E+400"), "amount must be an integer between 0 and");
        BAD_NOID(strdup("{\"amount\" :\n\t 99999999999999999999 \n}"), "amount must be an integer");
        /* ... but only when it is the top-level amount */
        BAD_NOID(BODY(.extra = "{\"amount\":99999999999999999999}"),
                 "number out of range at line 1 column");
        BAD_NOID(BODY(.extra = "[1,99999999999999999999]"), "number out of range at line 1 column");
        BAD_NOID(BODY(.extra = "1e400"), "number out of range at line 1 column");
        BAD_NOID(strdup("{\"x\\\"amount\":1e400}"), "number out of range");
        BAD_NOID(strdup("{\"\\u0061mount\":1e400}"), "number out of range");
        BAD_NOID(strdup("99999999999999999999"), "number out of range at line 1 column 20");
        BAD_NOID(strdup("{\"amount\":[99999999999999999999]}"), "number out of range");
}

static void test_currency(void)
{
        struct charge c;

        OK_BODY(BODY(.currency = "\"USD\""), &c);
        CHECK_STR(c.currency, "USD");
        charge_clear(&c);

        BAD(BODY(.currency = "\"yer\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"Yer\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"YE\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"YERR\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"Y1R\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\" YE\""), "currency must be three capital letters");
        BAD(BODY(.currency = "\"\xc3\x89U\""), "currency must be three capital letters");
        /* NUL is refused by the parser before the field rule runs */
        BAD_NOID(BODY(.currency = "\"\\u0059ER\\u0000\""), "NUL character");
        BAD(BODY(.currency = "840"), "currency must be three capital letters");
        BAD(BODY(.currency = "null"), "currency must be three capital letters");
        BAD(BODY(.currency = OMIT), "currency is missing");
}

static void test_id(void)
{
        char *suffix, *id, *s;
        struct charge c;

        suffix = repeat('a', 128);
        s = malloc(140);
        snprintf(s, 140, "chg_%s", suffix);
        id = quoted(s);
        OK_BODY(BODY(.id = id), &c);
        CHECK(strlen(c.id) == 132);
        CHECK_STR(c.id, s);
        charge_clear(&c);
        CHECK(charge_id_valid(s));
        free(id);
        free(s);
        free(suffix);

        suffix = repeat('b', 129);
        s = malloc(140);
        snprintf(s, 140, "chg_%s", suffix);
        id = quoted(s);
        CHECK(!charge_id_valid(s));
        BAD_NOID(BODY(.id = id), "id must be chg_ followed by 1 to 128");
        free(id);
        free(s);
        free(suffix);

        BAD_NOID(BODY(.id = "\"a1b2c3d4e5\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_a/b\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_..\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_../../etc\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_a b\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_ab \""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"CHG_ab\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_\xc3\xa9\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_a\\nb\""), "id must be chg_");
        BAD_NOID(BODY(.id = "\"chg_a%2f\""), "id must be chg_");
        BAD_NOID(BODY(.id = "12345"), "id must be chg_");
        BAD_NOID(BODY(.id = "null"), "id must be chg_");
        BAD_NOID(BODY(.id = OMIT), "id is missing");

        CHECK(charge_id_valid("chg_a"));
        CHECK(charge_id_valid("chg_A-z_0"));
        CHECK(!charge_id_valid(NULL));
        CHECK(!charge_id_valid(""));
        CHECK(!charge_id_valid("chg"));
        CHECK(!charge_id_valid("chg_a.b"));
        CHECK(!charge_id_valid("xchg_a"));
}

static void test_status(void)
{
        enum charge_status st = CHARGE_FAILED;
        struct charge c;

        OK_BODY(BODY(.status = "\"INITIATED\""), &c);
        CHECK(c.status == CHARGE_INITIATED);
        charge_clear(&c);

        BAD(BODY(.status = "\"captured\""), "status must be INITIATED, CAPTURED or FAILED");
        BAD(BODY(.status = "\"Captured\""), "status must be INITIATED, CAPTURED or FAILED");
        BAD(BODY(.status = "\"CAPTURED \""), "status must be");
        BAD(BODY(.status = "\"REFUNDED\""), "status must be");
        BAD(BODY(.status = "\"\""), "status must be");
        BAD(BODY(.status = "1"), "status must be");
        BAD(BODY(.status = OMIT), "status is missing");

        CHECK(charge_status_from_name("CAPTURED", &st) == 0 && st == CHARGE_CAPTURED);
        CHECK(charge_status_from_name("INITIATED", &st) == 0 && st == CHARGE_INITIATED);
        CHECK(charge_status_from_name("FAILED", &st) == 0 && st == CHARGE_FAILED);
        CHECK(charge_status_from_name("failed", &st) == -EINVAL);
        CHECK(charge_status_from_name(NULL, &st) == -EINVAL);
        CHECK_STR(charge_status_name(CHARGE_CAPTURED), "CAPTURED");
        CHECK_STR(charge_status_name(CHARGE_INITIATED), "INITIATED");
        CHECK_STR(charge_status_name(CHARGE_FAILED), "FAILED");
        CHECK(charge_status_name((enum charge_status) 3) == NULL);
}

static void test_created_and_text(void)
{
        char *text, *val, extra[64];
        struct charge c;

        BAD(BODY(.created = "-1"), "created must be a non-negative integer");
        BAD(BODY(.created = "\"1672531200\""), "created must be a non-negative integer");
        BAD(BODY(.created = "1672531200.5"), "created must be a non-negative integer");
        BAD(BODY(.created = OMIT), "created is missing");
        BAD_NOID(BODY(.created = "99999999999999999999"), "created must be a non-negative integer");

        /* 4096 bytes of description pass, 4097 do not; the same for transaction_url */
        for (int i = 0; i < 2; i++) {
                const char *key = i ? "transaction_url" : "description";

                text = repeat('d', CHARGE_TEXT_MAX);
                val = malloc(CHARGE_TEXT_MAX + 64);
                snprintf(val, CHARGE_TEXT_MAX + 64, "0,\"%s\":\"%s\"", key, text);
                OK_BODY(BODY(.extra = val), &c);
                CHECK(strlen(i ? c.transaction_url : c.description) == CHARGE_TEXT_MAX);
                charge_clear(&c);
                snprintf(val, CHARGE_TEXT_MAX + 64, "0,\"%s\":\"%sd\"", key, text);
                snprintf(extra, sizeof(extra), "%s must be at most 4096 bytes", key);
                BAD(BODY(.extra = val), extra);
                snprintf(val, CHARGE_TEXT_MAX + 64, "0,\"%s\":42", key);
                snprintf(extra, sizeof(extra), "%s must be a string", key);
                BAD(BODY(.extra = val), extra);
                free(val);
                free(text);
        }
}

static void test_json_shape(void)
{
        BAD_NOID(strdup(""), "empty body");
        BAD_NOID(strdup(" \r\n\t "), "empty body");
        BAD_NOID(strdup("[]"), "body must be a JSON object");
        BAD_NOID(strdup("[{\"id\":\"chg_a\"}]"), "body must be a JSON object");
        BAD_NOID(strdup("\"chg_a\""), "body must be a JSON object");
        BAD_NOID(strdup("42"), "body must be a JSON object");
        BAD_NOID(strdup("true"), "body must be a JSON object");
        BAD_NOID(strdup("null"), "body must be a JSON object");
        BAD_NOID(strdup("{}"), "id is missing");
        BAD_NOID(strdup("{\"id\":\"chg_a\""), "invalid JSON at line 1 column");
        BAD_NOID(strdup("{\"id\":\"chg_a\"} x"), "invalid JSON at line 1 column");
        BAD_NOID(strdup("{\"id\":\"chg_a\"}{}"), "invalid JSON at line 1 column");
        BAD_NOID(strdup("{'id':'chg_a'}"), "invalid JSON at line 1 column");
        BAD_NOID(strdup("{\"amount\":NaN}"), "invalid JSON");
        BAD_NOID(strdup("{\"amount\":01}"), "invalid JSON");
        BAD_NOID(strdup("{\"a\":1,}"), "invalid JSON");
        BAD_NOID(strdup("\xef\xbb\xbf{}"), "invalid JSON");      /* a BOM is not JSON */
        BAD_NOID(BODY(.extra = "\"\x01\""), "invalid JSON");     /* raw control character */
        BAD_RAW("{\"id\":\"chg_a\"}\0", "invalid JSON at line 1 column");
        BAD_RAW("{\"id\":\"chg_\0a\"}", "invalid JSON");

        /* the body is not echoed back, whatever jansson would have quoted */
        {
                struct charge c;
                char detail[256];
                const char *evil = "{\"id\":\"chg_a\",\"x\":<script>ZZMARK}";

                CHECK(charge_parse(evil, strlen(evil), NULL, &c, detail, sizeof(detail)) == -EINVAL);
                CHECK(strstr(detail, "ZZMARK") == NULL && strstr(detail, "script") == NULL);
                CHECK(strstr(detail, "line 1 column") != NULL);
                charge_clear(&c);
        }
}

static void test_duplicates_and_text_encoding(void)
{
        BAD_NOID(strdup("{\"id\":\"chg_a\",\"id\":\"chg_b\"}"), "duplicate key in JSON");
        BAD_NOID(BODY(.extra = "{\"k\":1,\"k\":2}"), "duplicate key in JSON");
        BAD_NOID(strdup("{\"amount\":1,\"amount\":2,\"id\":\"chg_a\"}"), "duplicate key");
        /* the same key spelled with an escape is still the same key */
        BAD_NOID(strdup("{\"amount\":1,\"\\u0061mount\":2}"), "duplicate key");

        BAD_RAW("{\"description\":\"\xc0\xaf\"}", "invalid UTF-8");          /* overlong '/' */
        BAD_RAW("{\"description\":\"\xe0\x80\xaf\"}", "invalid UTF-8");      /* overlong, 3 bytes */
        BAD_RAW("{\"description\":\"\xed\xa0\x80\"}", "invalid UTF-8");      /* encoded surrogate */
        BAD_RAW("{\"description\":\"\xff\"}", "invalid UTF-8");
        BAD_RAW("{\"description\":\"\xc3\"}", "invalid UTF-8");              /* truncated */
        BAD_RAW("{\"description\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8");  /* > U+10FFFF */
        BAD_RAW("{\"\xc0\xaf\":1}", "invalid UTF-8");                         /* in a key */
        /* escapes that would decode to a lone surrogate */
        BAD_NOID(BODY(.extra = "\"\\ud800\""), "invalid JSON");
        BAD_NOID(BODY(.extra = "\"\\udc00\""), "invalid JSON");
        BAD_NOID(BODY(.extra = "\"\\ud800x\""), "invalid JSON");
        /* NUL, escaped, in a value and in a key */
        BAD_NOID(BODY(.extra = "\"a\\u0000b\""), "NUL character in JSON string");
        BAD_NOID(strdup("{\"\\u0000\":1}"), "NUL character in JSON string");
}

/* @levels nested containers around @inner: inside a charge's "x" the depth is levels + 1. */
static char *nested(unsigned levels, const char *open, const char *inner, const char *close)
{
        size_t n = (strlen(open) + strlen(close)) * levels + strlen(inner) + 1;
        char *s = malloc(n), *p = s;

        if (!s)
                abort();
        for (unsigned i = 0; i < levels; i++)
                p = stpcpy(p, open);
        p = stpcpy(p, inner);
        for (unsigned i = 0; i < levels; i++)
                p = stpcpy(p, close);
        return s;
}

static void test_depth(void)
{
        struct charge c;
        char *x;

        x = nested(CHARGE_MAX_DEPTH - 1, "[", "", "]");
        OK_BODY(BODY(.extra = x), &c);
        charge_clear(&c);
        free(x);
        x = nested(CHARGE_MAX_DEPTH - 1, "{\"k\":", "0", "}");
        OK_BODY(BODY(.extra = x), &c);
        charge_clear(&c);
        free(x);
        x = nested(CHARGE_MAX_DEPTH, "[", "", "]");
        BAD_NOID(BODY(.extra = x), "JSON nested deeper than 32 levels");
        free(x);
        x = nested(CHARGE_MAX_DEPTH, "{\"k\":", "0", "}");
        BAD_NOID(BODY(.extra = x), "JSON nested deeper than 32 levels");
        free(x);
        /* far past jansson's own limit: refused before it recurses */
        x = nested(100000, "[", "", "]");
        BAD_NOID(memdup(x, strlen(x)), "JSON nested deeper than 32 levels");
        free(x);

        CHECK(charge_json_depth_ok("", 0, 0));
        CHECK(charge_json_depth_ok(NULL, 0, 0));
        CHECK(charge_json_depth_ok("{}", 2, 1));
        CHECK(!charge_json_depth_ok("{}", 2, 0));
        CHECK(charge_json_depth_ok("[[],[],{}]", 10, 2));
        CHECK(!charge_json_depth_ok("[[[]]]", 6, 2));
        CHECK(charge_json_depth_ok("[[[]]]", 6, 3));
        /* brackets inside strings do not count, escaped quotes do not end them */
        CHECK(charge_json_depth_ok("{\"a\":\"[[[[{{{{\"}", 16, 1));
        CHECK(charge_json_depth_ok("{\"a\\\"[[[\":\"\\\\\"}", 15, 1));
        CHECK(!charge_json_depth_ok("{\"a\\\\\":[[]]}", 13, 2));
        /* the length is honoured: bytes past it are not read */
        CHECK(charge_json_depth_ok("[[[[", 1, 1));
        /* stray closers cannot buy extra depth */
        CHECK(!charge_json_depth_ok("]]]][[[", 7, 2));
}

static void test_order_ref(void)
{
        const char *md = "0,\"metadata\":{\"order_id\":\"ORD-42\",\"n\":{\"k\":17},\"neg\":-5,"
                         "\"arr\":[1],\"t\":true,\"r\":1.5,\"z\":null,\"s\":\"x\",\"e\":\"\","
                         "\"tab\":\"a\\tb\",\"c1\":\"a\\u0085b\",\"o\":{}}";
        struct charge c;
        char *ref, *val;

        OK_REF(BODY(.extra = md), "metadata.order_id", &c);
        CHECK_STR(c.order_ref, "ORD-42");
        charge_clear(&c);
        OK_REF(BODY(.extra = md), "metadata.n.k", &c);
        CHECK_STR(c.order_ref, "17");
        charge_clear(&c);
        OK_REF(BODY(.extra = md), "metadata.neg", &c);
        CHECK_STR(c.order_ref, "-5");
        charge_clear(&c);
        OK_REF(BODY(.extra = md), "amount", &c);   /* a top-level field works too */
        CHECK_STR(c.order_ref, "2000");
        charge_clear(&c);
        OK_REF(BODY(.extra = md), "id", &c);
        CHECK_STR(c.order_ref, "chg_a1b2c3d4e5");
        charge_clear(&c);

        /* absent anywhere along the path, or null: no order_ref, not an error */
        const char *absent[] = { "metadata.missing", "nothing.order_id", "metadata.n.missing.x",
                                 "metadata.z", "metadata.z.k", "metadata..order_id", "", NULL };
        for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++) {
                OK_REF(BODY(.extra = md), absent[i], &c);
                CHECK(c.order_ref == NULL, "path %s gave \"%s\"",
                      absent[i] ? absent[i] : "(null)", c.order_ref);
                charge_clear(&c);
        }

        BAD_REF(BODY(.extra = md), "metadata.arr", "metadata.arr must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.t", "metadata.t must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.r", "metadata.r must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.o", "metadata.o must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.s.k", "metadata.s.k must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.arr.k", "must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.n.k.deeper", "must be a string or an integer");
        BAD_REF(BODY(.extra = md), "metadata.e", "metadata.e must be 1 to 256 bytes without control");
        BAD_REF(BODY(.extra = md), "metadata.tab", "without control characters");
        BAD_REF(BODY(.extra = md), "metadata.c1", "without control characters");

        ref = repeat('r', CHARGE_ORDER_REF_MAX);
        val = malloc(CHARGE_ORDER_REF_MAX + 32);
        snprintf(val, CHARGE_ORDER_REF_MAX + 32, "0,\"ref\":\"%s\"", ref);
        OK_REF(BODY(.extra = val), "ref", &c);
        CHECK_STR(c.order_ref, ref);
        charge_clear(&c);
        snprintf(val, CHARGE_ORDER_REF_MAX + 32, "0,\"ref\":\"%sr\"", ref);
        BAD_REF(BODY(.extra = val), "ref", "ref must be 1 to 256 bytes");
        /* non-ASCII text is fine; U+00A0 starts with the same byte as C1 controls */
        OK_REF(BODY(.extra = "0,\"ref\":\"\xc3\xa9t\xc3\xa9 \xc2\xa0\""), "ref", &c);
        CHECK_STR(c.order_ref, "\xc3\xa9t\xc3\xa9 \xc2\xa0");
        charge_clear(&c);
        free(val);
        free(ref);
}

/* On a failure after the id, the id stays; other fields are dropped and freed. */
static void test_failure_state(void)
{
        const char *body = "{\"id\":\"chg_keep\",\"status\":\"CAPTURED\",\"amount\":1,"
                           "\"currency\":\"YER\","
                           "\"created\":1,\"description\":\"d\",\"transaction_url\":\"u\","
                           "\"m\":{\"r\":[]}}";
        struct charge c;
        char small[8], detail[64];

        CHECK(charge_parse(body, strlen(body), "m.r", &c, small, sizeof(small)) == -EINVAL);
        CHECK_STR(c.id, "chg_keep");
        CHECK(c.description == NULL && c.transaction_url == NULL && c.order_ref == NULL);
        CHECK(strlen(small) == sizeof(small) - 1);   /* truncated, terminated */
        charge_clear(&c);

        /* no detail buffer at all is allowed */
        CHECK(charge_parse("[]", 2, NULL, &c, NULL, 0) == -EINVAL);
        CHECK(c.id[0] == '\0');
        charge_clear(&c);
        CHECK(charge_parse(body, strlen(body), NULL, &c, NULL, 0) == 0);
        CHECK_STR(c.description, "d");
        charge_clear(&c);

        /* the length is honoured: bytes past it are not read */
        CHECK(charge_parse("{}garbage", 2, NULL, &c, detail, sizeof(detail)) == -EINVAL);
        CHECK_STR(detail, "id is missing");
        charge_clear(&c);
        charge_clear(NULL);
}

/* A copy owns its strings: the original can go first. */
static void test_copy(void)
{
        static const char body[] = "{\"id\":\"chg_copy1\",\"status\":\"INITIATED\",\"amount\":5,"
                                   "\"currency\":\"YER\",\"created\":1,\"description\":\"d\","
                                   "\"transaction_url\":\"https://pay.example/x\","
                                   "\"metadata\":{\"order_id\":\"42\"}}";
        struct charge c = { 0 }, copy = { 0 };
        char err[128];

        CHECK_EQ_INT(charge_parse(body, sizeof(body) - 1, "metadata.order_id", &c, err,
                                  sizeof(err)), 0);
        CHECK_EQ_INT(charge_copy(&copy, &c), 0);
        CHECK(copy.description != c.description && copy.order_ref != c.order_ref);
        charge_clear(&c);
        CHECK_STR(copy.id, "chg_copy1");
        CHECK(copy.amount == 5 && copy.status == CHARGE_INITIATED);
        CHECK_STR(copy.description, "d");
        CHECK_STR(copy.transaction_url, "https://pay.example/x");
        CHECK_STR(copy.order_ref, "42");
        charge_clear(&copy);
}

int main(void)
{
        test_valid();
        test_copy();
        test_amount();
        test_currency();
        test_id();
        test_status();
        test_created_and_text();
        test_json_shape();
        test_duplicates_and_text_encoding();
        test_depth();
        test_order_ref();
        test_failure_state();

        return check_summary();
}
