/*
 * Unit tests for http-body: pieces kept up to the limit (exactly at it
 * too), the first piece past it makes the body too large and it and all
 * that follow are only counted; the buffer never grows past the limit; a
 * limit lowered under a body already kept does not wrap around.
 */
#include <string.h>

#include "src/daemon/http-body.h"
#include "tests/check.h"

static void test_within_and_past(void)
{
        struct http_body b = { 0 };
        char piece[3000];

        memset(piece, 'x', sizeof(piece));
        CHECK_EQ_INT(http_body_append(&b, piece, 3000, 6000), 0);
        CHECK_EQ_INT(http_body_append(&b, piece, 3000, 6000), 0);
        CHECK_EQ_INT((long long) b.len, 6000);
        CHECK(!b.too_large);
        CHECK_EQ_INT((long long) b.cap, 6000); /* doubling stops at the limit */
        CHECK(memcmp(b.data, piece, 3000) == 0 && memcmp(b.data + 3000, piece, 3000) == 0);
        CHECK_EQ_INT(http_body_append(&b, piece, 0, 6000), 0);
        CHECK(!b.too_large);
        CHECK_EQ_INT(http_body_append(&b, piece, 1, 6000), 0);
        CHECK(b.too_large);
        CHECK_EQ_INT((long long) b.discarded, 1);
        CHECK_EQ_INT(http_body_append(&b, piece, 10, 1 << 20), 0); /* too large stays */
        CHECK_EQ_INT((long long) b.discarded, 11);
        CHECK_EQ_INT((long long) b.len, 6000);
        http_body_clear(&b);
        CHECK(!b.data && b.len == 0 && !b.too_large && b.discarded == 0);
}

static void test_limit_lowered(void)
{
        struct http_body b = { 0 };

        CHECK_EQ_INT(http_body_append(&b, "abcdef", 6, 100), 0);
        CHECK_EQ_INT(http_body_append(&b, "g", 1, 4), 0);
        CHECK(b.too_large);
        CHECK_EQ_INT((long long) b.len, 6);
        http_body_clear(&b);
}

int main(void)
{
        test_within_and_past();
        test_limit_lowered();
        return check_summary();
}
