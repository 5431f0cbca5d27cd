/*
 * Unit tests of pg-array: the array literals the PostgreSQL store sends
 * as unnest() parameters - quoting, escaping, NULL, bytea, the empty array.
 */
#include <stdint.h>
#include <string.h>

#include "src/store/pg-array.h"
#include "tests/check.h"

static void test_empty(void)
{
        struct pg_array a = { 0 };

        CHECK_EQ_INT(pg_array_end(&a), 0);
        CHECK_STR(a.text, "{}");
        pg_array_free(&a);
}

static void test_text_and_null(void)
{
        struct pg_array a = { 0 };

        pg_array_add(&a, "chg_1");
        pg_array_add(&a, NULL);
        pg_array_add(&a, "");
        pg_array_add(&a, "a \"quoted\" back\\slash, {brace}");
        CHECK_EQ_INT(pg_array_end(&a), 0);
        CHECK_STR(a.text, "{\"chg_1\",NULL,\"\",\"a \\\"quoted\\\" back\\\\slash, {brace}\"}");
        pg_array_free(&a);
}

static void test_bytes(void)
{
        static const uint8_t body[] = { '{', 0x00, 0xff, '"', '\\' };
        struct pg_array a = { 0 };

        pg_array_add_bytes(&a, body, sizeof(body));
        pg_array_add_bytes(&a, (const uint8_t *) "", 0);
        CHECK_EQ_INT(pg_array_end(&a), 0);
        /* each element \x... once the literal's own escaping is undone */
        CHECK_STR(a.text, "{\"\\\\x7b00ff225c\",\"\\\\x\"}");
        pg_array_free(&a);
}

/* Past the first allocation: every element is still there, in order. */
static void test_growth(void)
{
        struct pg_array a = { 0 };
        size_t n = 0;

        for (int i = 0; i < 1000; i++)
                pg_array_add(&a, "0123456789");
        CHECK_EQ_INT(pg_array_end(&a), 0);
        for (const char *p = a.text; (p = strstr(p, "\"0123456789\"")); p++)
                n++;
        CHECK_EQ_INT(n, 1000);
        CHECK_EQ_INT(strlen(a.text), 1000 * 13 + 1);
        pg_array_free(&a);
}

int main(void)
{
        test_empty();
        test_text_and_null();
        test_bytes();
        test_growth();
        return check_summary();
}
