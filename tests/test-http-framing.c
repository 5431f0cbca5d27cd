/*
 * test-http-framing — the request-smuggling checks over header fields laid
 * out as libmicrohttpd leaves them in its buffer: name, NUL where the colon
 * was, the blanks, then the value.
 */
#include <stdbool.h>
#include <string.h>

#include "src/daemon/http-framing.h"
#include "tests/check.h"

/* One header line "name: value" as libmicrohttpd 0.9.75 stores it. */
struct field {
        char buf[128];
        const char *key, *value;
        size_t key_len, value_len;
};

static void field_make(struct field *f, const char *name, const char *blanks, const char *value)
{
        size_t n = strlen(name), b = strlen(blanks);

        memcpy(f->buf, name, n);
        f->buf[n] = '\0';
        memcpy(f->buf + n + 1, blanks, b);
        strcpy(f->buf + n + 1 + b, value);
        f->key = f->buf;
        f->key_len = n;
        f->value = f->buf + n + 1 + b;
        f->value_len = strlen(value);
}

/* The framing of a request made of the given "name", "value" pairs. */
static bool bad(const char *const *pairs, size_t n)
{
        struct http_framing fr = { 0 };
        struct field f;

        for (size_t i = 0; i + 1 < n; i += 2) {
                field_make(&f, pairs[i], " ", pairs[i + 1]);
                http_framing_add(&fr, f.key, f.key_len, f.value, f.value_len);
        }
        return http_framing_bad(&fr);
}

static void test_lengths_and_codings(void)
{
        const char *one_cl[] = { "Content-Length", "5", "Host", "x" };
        const char *two_cl[] = { "Content-Length", "5", "content-length", "5" };
        const char *cl_te[] = { "Content-Length", "5", "Transfer-Encoding", "chunked" };
        const char *te[] = { "Transfer-Encoding", "chunked  " };
        const char *te_case[] = { "transfer-encoding", "CHUNKED" };
        const char *two_te[] = { "Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked" };
        const char *gzip[] = { "Transfer-Encoding", "gzip, chunked" };
        const char *identity[] = { "Transfer-Encoding", "identity" };

        CHECK(!bad(one_cl, 4));
        CHECK(bad(two_cl, 4));
        CHECK(bad(cl_te, 4));
        CHECK(!bad(te, 2));
        CHECK(!bad(te_case, 2));
        CHECK(bad(two_te, 4));
        CHECK(bad(gzip, 2));
        CHECK(bad(identity, 2));
        CHECK(!bad(NULL, 0));
}

/* How the value of a field reaches http_framing_add(). */
enum value_at { VALUE_IN_PLACE, VALUE_ELSEWHERE, VALUE_NULL };

/* Whether one field "@name:@blanks@value" alone makes the framing bad. */
static bool field_bad(const char *name, const char *blanks, const char *value,
                      enum value_at at)
{
        struct http_framing fr = { 0 };
        struct field f;

        field_make(&f, name, blanks, value);
        if (at == VALUE_IN_PLACE)
                http_framing_add(&fr, f.key, f.key_len, f.value, f.value_len);
        else
                http_framing_add(&fr, f.key, f.key_len, at == VALUE_NULL ? NULL : "elsewhere",
                                 at == VALUE_NULL ? 0 : 9);
        return http_framing_bad(&fr);
}

static void test_field_lines(void)
{
        /* whitespace before the colon stays in the name: not a token */
        CHECK(field_bad("Content-Length ", " ", "5", VALUE_IN_PLACE));
        /* obs-fold: the value is not right after the name's blanks */
        CHECK(field_bad("X-A", " ", "1", VALUE_ELSEWHERE));
        /* something other than blanks between the colon and the value */
        CHECK(field_bad("X-A", " x", "1", VALUE_IN_PLACE));
        /* tabs, or no blanks at all, are fine */
        CHECK(!field_bad("X-A", "\t\t", "1", VALUE_IN_PLACE));
        CHECK(!field_bad("X-B", "", "2", VALUE_IN_PLACE));
        /* an empty name, a name with a separator, a missing value */
        CHECK(field_bad("", " ", "1", VALUE_IN_PLACE));
        CHECK(field_bad("X(A)", " ", "1", VALUE_IN_PLACE));
        CHECK(field_bad("X-A", " ", "1", VALUE_NULL));
}

static void test_content_type(void)
{
        CHECK(http_content_type_is_json("application/json"));
        CHECK(http_content_type_is_json("Application/JSON; charset=utf-8"));
        CHECK(http_content_type_is_json("application/json \t;charset=utf-8"));
        CHECK(!http_content_type_is_json("application/jsonx"));
        CHECK(!http_content_type_is_json("application/json-patch+json"));
        CHECK(!http_content_type_is_json("text/json"));
        CHECK(!http_content_type_is_json(""));
        CHECK(!http_content_type_is_json(NULL));
}

int main(void)
{
        test_lengths_and_codings();
        test_field_lines();
        test_content_type();
        return check_summary();
}
