/*
 * pg-array — PostgreSQL array literals ('{"a",NULL,"b"}') built up one
 * element at a time, as text parameters of statements that insert many
 * rows at once with unnest(). Every element is quoted and escaped, so any
 * text is safe in one; bytes go in bytea's hex form.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pg_array {
        char *text;              /* "{...}" once pg_array_end() returned 0 */
        size_t len, cap;
        bool failed;             /* out of memory: every later call does nothing */
};

/* pg_array_add() - @value as the next element; NULL is SQL NULL. */
void pg_array_add(struct pg_array *a, const char *value);

/* pg_array_add_bytes() - @len bytes as the next element of a bytea[]. */
void pg_array_add_bytes(struct pg_array *a, const uint8_t *bytes, size_t len);

/* pg_array_end() - close the literal: 0, or -ENOMEM when a step failed. */
int pg_array_end(struct pg_array *a);

void pg_array_free(struct pg_array *a);
