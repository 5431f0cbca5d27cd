/*
 * output — how cashpayctl shows things: aligned text tables that fit the
 * terminal (80 columns when not a terminal) and JSON documents built with
 * jansson, with one fixed set of field names per record type.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "cashpay/store-admin.h"
#include "cashpay/store.h"

enum column_align { ALIGN_LEFT, ALIGN_RIGHT };

struct column {
        const char *header;
        enum column_align align;
        size_t min_width;     /* never shrunk below this (or the header) */
        bool shrinkable;      /* may be truncated with "…" to fit the width */
};

struct table;

/* table_new() - a table with @n columns; NULL on allocation failure. */
struct table *table_new(const struct column *cols, size_t n);
void table_free(struct table *t);

/* table_add_row() - copies @cells (NULL = empty), sanitised for a terminal.
 * Returns 0 or -ENOMEM. */
int table_add_row(struct table *t, const char *const *cells);

/* table_print() - header and rows, columns aligned, fitted to @width. */
int table_print(const struct table *t, FILE *f, size_t width);

/* output_width() - the terminal's width for stdout, $COLUMNS, or 80. */
size_t output_width(void);

/* output_cell() - @text sanitised, padded or truncated to exactly @width
 * display columns, appended to @f. */
void output_cell(FILE *f, const char *text, size_t width, enum column_align align);

/* output_text() - @text sanitised, cut with "…" past @max_width columns, not padded. */
void output_text(FILE *f, const char *text, size_t max_width);

/* output_json() - @doc (stolen) as one document on stdout; @lines: compact,
 * one line (for feeds), else indented. @doc NULL means building it ran out
 * of memory. Returns 0 or a negative errno: -ENOMEM (then nothing was
 * written), -EPIPE when the reader went away. */
int output_json(json_t *doc, bool lines);

/* output_flush() - fflush(stdout); 0 or a negative errno. */
int output_flush(void);

/* Human forms of the stored values. */
void output_amount(int64_t amount, const char *currency, bool minor_units, char *buf, size_t len);
/* "2026-11-25T20:31:38.123Z" -> "2026-11-25T20:31:38Z" for tables; "-" for "". */
void output_time_short(const char *iso, char *buf, size_t len);

/* output_utf8_valid() - are these @len bytes UTF-8 (as jansson accepts it)? */
bool output_utf8_valid(const void *text, size_t len);

/* JSON values (new references; NULL only on allocation failure, never a
 * silently different value). json_text(): @len bytes as a string, or JSON
 * null when they are not UTF-8 (or @s is NULL). */
json_t *json_text(const char *s, size_t len);
json_t *json_order(const struct order_record *o);
json_t *json_event(const struct event_record *e);
json_t *json_delivery(const struct delivery_record *d, bool with_body);
