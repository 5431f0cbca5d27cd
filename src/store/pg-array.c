/*
 * pg-array — array literals for unnest() parameters (see pg-array.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/store/pg-array.h"

/* Room for @more bytes after what is there (and a closing "}\0"). */
static bool reserve(struct pg_array *a, size_t more)
{
        size_t need;
        char *t;

        if (a->failed)
                return false;
        need = a->len + more + 3;
        if (need <= a->cap)
                return true;
        size_t cap = a->cap ? a->cap : 256;
        while (cap < need)
                cap *= 2;
        t = realloc(a->text, cap);
        if (!t) {
                a->failed = true;
                return false;
        }
        a->text = t;
        a->cap = cap;
        return true;
}

/* '{' before the first element, ',' before the others. */
static void separate(struct pg_array *a)
{
        char c = a->len == 0 ? '{' : ',';

        a->text[a->len++] = c;
}

void pg_array_add(struct pg_array *a, const char *value)
{
        if (!reserve(a, value ? 2 * strlen(value) + 3 : 5))
                return;
        separate(a);
        if (!value) {
                memcpy(a->text + a->len, "NULL", 4);
                a->len += 4;
                return;
        }
        a->text[a->len++] = '"';
        for (; *value; value++) {
                if (*value == '"' || *value == '\\')
                        a->text[a->len++] = '\\';
                a->text[a->len++] = *value;
        }
        a->text[a->len++] = '"';
}

void pg_array_add_bytes(struct pg_array *a, const uint8_t *bytes, size_t len)
{
        static const char hex[] = "0123456789abcdef";

        if (!reserve(a, 2 * len + 6))
                return;
        separate(a);
        /* "\\x..." in the literal is the element \x..., bytea's hex input */
        memcpy(a->text + a->len, "\"\\\\x", 4);
        a->len += 4;
        for (size_t i = 0; i < len; i++) {
                a->text[a->len++] = hex[bytes[i] >> 4];
                a->text[a->len++] = hex[bytes[i] & 15];
        }
        a->text[a->len++] = '"';
}

int pg_array_end(struct pg_array *a)
{
        if (!reserve(a, 0))
                return -ENOMEM;
        if (a->len == 0)
                a->text[a->len++] = '{';
        a->text[a->len++] = '}';
        a->text[a->len] = '\0';
        return 0;
}

void pg_array_free(struct pg_array *a)
{
        free(a->text);
        *a = (struct pg_array) { 0 };
}
