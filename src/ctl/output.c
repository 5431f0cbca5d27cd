/*
 * output — text tables and JSON documents for cashpayctl.
 *
 * Values in the database came from the network (descriptions, error details,
 * remote bodies), so everything bound for a terminal is sanitised here:
 * control characters and invalid UTF-8 become '?', and columns are measured
 * in code points, never bytes, before they are padded or cut with "…".
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cashpay/page.h"
#include "src/ctl/output.h"

#define COLUMN_GAP 2
#define DEFAULT_WIDTH 80
#define ELLIPSIS "\xe2\x80\xa6" /* U+2026, one display column */

struct table {
        const struct column *cols;
        size_t ncols;
        char **cells;  /* nrows * ncols */
        size_t nrows;
};

/* Length of the valid UTF-8 sequence at @s (1..4, within @avail bytes), or 0. */
static size_t utf8_char_len(const unsigned char *s, size_t avail)
{
        size_t n, i;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4;
        else
                return 0;
        if (n > avail)
                return 0;
        for (i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
            (s[0] == 0xf4 && s[1] > 0x8f) || (s[0] == 0xed && s[1] > 0x9f))
                return 0; /* overlong, past U+10FFFF, or surrogates */
        return n;
}

/* The same, but 0 for a C1 control character too. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
        size_t n = utf8_char_len(s, avail);

        if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
                return 0; /* U+0080..U+009F: C1 controls */
        return n;
}

bool output_utf8_valid(const void *text, size_t len)
{
        const unsigned char *s = text;

        for (size_t i = 0, n; i < len; i += n)
                if (!(n = utf8_char_len(s + i, len - i)))
                        return false;
        return true;
}

/* Bytes of the character at @s once sanitised (a byte that starts no valid
 * character, or a control character, becomes one '?'); 0 at the end. */
static size_t next_char(const unsigned char *s, size_t avail, bool *replaced)
{
        size_t n;

        if (avail == 0)
                return 0;
        n = utf8_seq_len(s, avail);
        *replaced = n == 0 || (n == 1 && (s[0] < 0x20 || s[0] == 0x7f));
        return *replaced ? 1 : n;
}

/* A copy of @text that is valid UTF-8 without control characters. */
static char *sanitize(const char *text)
{
        const unsigned char *s = (const unsigned char *) (text ? text : "");
        size_t len = strlen((const char *) s), i = 0, o = 0, n;
        char *out = malloc(len + 1);
        bool replaced;

        if (!out)
                return NULL;
        for (; (n = next_char(s + i, len - i, &replaced)) > 0; i += n) {
                if (replaced)
                        out[o] = '?';
                else
                        memcpy(out + o, s + i, n);
                o += n; /* a replaced character is one byte, and so is '?' */
        }
        out[o] = '\0';
        return out;
}

/* Display columns of @text once sanitised: one per character. */
static size_t display_width(const char *text)
{
        const unsigned char *s = (const unsigned char *) text;
        size_t len = strlen(text), w = 0;
        bool replaced;

        for (size_t i = 0, n; (n = next_char(s + i, len - i, &replaced)) > 0; i += n)
                w++;
        return w;
}

/*
 * The first @cols characters of @text, sanitised on the way out. Text is
 * printed straight from the caller's string, so no cell of text output can
 * go missing for want of memory.
 */
static void put_sanitized(FILE *f, const char *text, size_t cols)
{
        const unsigned char *s = (const unsigned char *) text;
        size_t len = strlen(text), i = 0, n;
        bool replaced;

        for (size_t c = 0; c < cols && (n = next_char(s + i, len - i, &replaced)) > 0; c++) {
                if (replaced)
                        fputc('?', f);
                else
                        fwrite(s + i, 1, n, f);
                i += n;
        }
}

/* Writes @text, sanitised, in exactly @width columns. */
static void put_cell(FILE *f, const char *text, size_t width, enum column_align align)
{
        size_t w = display_width(text);

        if (w > width) {
                if (width == 0)
                        return;
                put_sanitized(f, text, width - 1);
                fputs(ELLIPSIS, f);
                return;
        }
        if (align == ALIGN_RIGHT)
                fprintf(f, "%*s", (int) (width - w), "");
        put_sanitized(f, text, w);
        if (align != ALIGN_RIGHT)
                fprintf(f, "%*s", (int) (width - w), "");
}

void output_cell(FILE *f, const char *text, size_t width, enum column_align align)
{
        put_cell(f, text ? text : "", width, align);
}

void output_text(FILE *f, const char *text, size_t max_width)
{
        const char *s = text ? text : "";
        size_t w = display_width(s);

        put_cell(f, s, w < max_width ? w : max_width, ALIGN_LEFT);
}

struct table *table_new(const struct column *cols, size_t n)
{
        struct table *t = calloc(1, sizeof(*t));

        if (!t)
                return NULL;
        t->cols = cols;
        t->ncols = n;
        return t;
}

void table_free(struct table *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->nrows * t->ncols; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
}

int table_add_row(struct table *t, const char *const *cells)
{
        char **p = reallocarray(t->cells, (t->nrows + 1) * t->ncols, sizeof(*p));
        char **row;

        if (!p)
                return -ENOMEM;
        t->cells = p;
        row = p + t->nrows * t->ncols;
        for (size_t c = 0; c < t->ncols; c++)
                row[c] = NULL;
        t->nrows++;
        for (size_t c = 0; c < t->ncols; c++) {
                row[c] = sanitize(cells[c]);
                if (!row[c])
                        return -ENOMEM;
        }
        return 0;
}

/* Natural widths: the widest cell (or header) of each column. */
static void natural_widths(const struct table *t, size_t *w)
{
        for (size_t c = 0; c < t->ncols; c++) {
                w[c] = display_width(t->cols[c].header);
                for (size_t r = 0; r < t->nrows; r++) {
                        size_t cw = display_width(t->cells[r * t->ncols + c]);
                        if (cw > w[c])
                                w[c] = cw;
                }
        }
}

static size_t floor_width(const struct column *col)
{
        size_t h = display_width(col->header);

        return col->min_width > h ? col->min_width : h;
}

/* Takes one column from the widest shrinkable column; false when none can give. */
static bool shrink_one(const struct table *t, size_t *w)
{
        size_t best = t->ncols;

        for (size_t c = 0; c < t->ncols; c++) {
                if (!t->cols[c].shrinkable || w[c] <= floor_width(&t->cols[c]))
                        continue;
                if (best == t->ncols || w[c] > w[best])
                        best = c;
        }
        if (best == t->ncols)
                return false;
        w[best]--;
        return true;
}

static void fit_widths(const struct table *t, size_t *w, size_t width)
{
        size_t total = 0;

        for (size_t c = 0; c < t->ncols; c++)
                total += w[c] + (c ? COLUMN_GAP : 0);
        while (total > width && shrink_one(t, w))
                total--;
        /* Still too wide (huge ids, a narrow terminal): the last column gives
         * up its floor, since cutting it hides the least. */
        while (total > width && w[t->ncols - 1] > 1) {
                w[t->ncols - 1]--;
                total--;
        }
}

static void print_row(const struct table *t, FILE *f, const size_t *w, const char *const *cells)
{
        size_t end = t->ncols;

        /* No trailing blanks: stop after the last cell that shows something. */
        while (end > 1 && !cells[end - 1][0])
                end--;
        for (size_t c = 0; c < end; c++) {
                bool last = c + 1 == end;
                enum column_align a = t->cols[c].align;

                if (c)
                        fprintf(f, "%*s", COLUMN_GAP, "");
                if (last && a == ALIGN_LEFT && display_width(cells[c]) <= w[c])
                        fputs(cells[c], f);
                else
                        put_cell(f, cells[c], w[c], a);
        }
        fputc('\n', f);
}

int table_print(const struct table *t, FILE *f, size_t width)
{
        const char *headers[16];
        size_t w[16];

        if (t->ncols > 16)
                return -EINVAL;
        for (size_t c = 0; c < t->ncols; c++)
                headers[c] = t->cols[c].header;
        natural_widths(t, w);
        fit_widths(t, w, width);
        print_row(t, f, w, headers);
        for (size_t r = 0; r < t->nrows; r++)
                print_row(t, f, w, (const char *const *) t->cells + r * t->ncols);
        return 0;
}

size_t output_width(void)
{
        struct winsize ws;
        const char *env;
        long v;

        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        env = getenv("COLUMNS");
        if (env) {
                v = strtol(env, NULL, 10);
                if (v >= 20 && v <= 10000)
                        return (size_t) v;
        }
        return DEFAULT_WIDTH;
}

int output_flush(void)
{
        if (fflush(stdout) != 0 || ferror(stdout))
                return errno ? -errno : -EIO;
        return 0;
}

/* A document being serialised. Once an append has failed every later one
 * fails too: jansson 2.14 ignores the result of some of its writes (object
 * keys), so only this flag tells a complete text from one with holes. */
struct json_text_buf {
        char *data;
        size_t len, cap;
        bool failed;
};

static int json_buf_append(const char *chunk, size_t size, void *ctx)
{
        struct json_text_buf *b = ctx;
        size_t need = b->len + size, cap;
        char *p;

        if (b->failed || need < size) {
                b->failed = true;
                return -1;
        }
        if (need > b->cap) {
                cap = need <= SIZE_MAX / 2 ? 2 * need : need;
                p = realloc(b->data, cap);
                if (!p) {
                        b->failed = true;
                        return -1;
                }
                b->data = p;
                b->cap = cap;
        }
        memcpy(b->data + b->len, chunk, size);
        b->len = need;
        return 0;
}

int output_json(json_t *doc, bool lines)
{
        size_t flags = JSON_ENSURE_ASCII | (lines ? JSON_COMPACT : JSON_INDENT(2));
        struct json_text_buf b = { 0 };
        int r = 0;

        if (!doc)
                return -ENOMEM;
        /* The whole document first: running out of memory half-way through
         * must not leave half of it on stdout. */
        if (json_dump_callback(doc, json_buf_append, &b, flags) < 0 || b.failed)
                r = -ENOMEM;
        json_decref(doc);
        if (r == 0 && (fwrite(b.data, 1, b.len, stdout) != b.len || fputc('\n', stdout) == EOF))
                r = errno ? -errno : -EIO;
        free(b.data);
        return r < 0 ? r : output_flush();
}

void output_amount(int64_t amount, const char *currency, bool minor_units, char *buf, size_t len)
{
        if (page_format_amount(amount, currency, minor_units, buf, len) < 0)
                snprintf(buf, len, "%s %lld", currency, (long long) amount);
}

void output_time_short(const char *iso, char *buf, size_t len)
{
        const char *dot = strchr(iso, '.');

        if (!iso[0])
                snprintf(buf, len, "-");
        else if (dot && dot[strspn(dot + 1, "0123456789") + 1] == 'Z')
                snprintf(buf, len, "%.*sZ", (int) (dot - iso), iso);
        else
                snprintf(buf, len, "%s", iso);
}

/* JSON string for @s (NULL -> null); invalid UTF-8 is replaced with '?'.
 * NULL only when out of memory, never a silently different value. */
static json_t *jstr(const char *s)
{
        json_t *v;
        char *clean;

        if (!s)
                return json_null();
        if (output_utf8_valid(s, strlen(s)))
                return json_string(s);
        clean = sanitize(s);
        v = clean ? json_string(clean) : NULL;
        free(clean);
        return v;
}

json_t *json_text(const char *s, size_t len)
{
        if (!s || !output_utf8_valid(s, len))
                return json_null();
        return json_stringn(s, len);
}

/* "" means NULL in the records' fixed-size fields. */
static json_t *jstr_empty_null(const char *s)
{
        return jstr(s && s[0] ? s : NULL);
}

/* Sets @key, remembering a failure in *@fail instead of checking each call. */
static void jset(json_t *o, const char *key, json_t *v, bool *fail)
{
        if (!v || json_object_set_new(o, key, v) < 0)
                *fail = true;
}

static json_t *jfinish(json_t *o, bool fail)
{
        if (fail) {
                json_decref(o);
                return NULL;
        }
        return o;
}

json_t *json_order(const struct order_record *o)
{
        json_t *j = json_object();
        bool fail = !j;

        if (fail)
                return NULL;
        jset(j, "charge_id", jstr(o->charge_id), &fail);
        jset(j, "order_ref", jstr(o->order_ref), &fail);
        jset(j, "status", jstr(charge_status_name(o->status)), &fail);
        jset(j, "amount", json_integer(o->amount), &fail);
        jset(j, "currency", jstr(o->currency), &fail);
        jset(j, "description", jstr(o->description), &fail);
        jset(j, "transaction_url", jstr(o->transaction_url), &fail);
        jset(j, "charge_created", json_integer(o->charge_created), &fail);
        jset(j, "first_seen_at", jstr_empty_null(o->first_seen_at), &fail);
        jset(j, "updated_at", jstr_empty_null(o->updated_at), &fail);
        jset(j, "captured_at", jstr_empty_null(o->captured_at), &fail);
        jset(j, "failed_at", jstr_empty_null(o->failed_at), &fail);
        jset(j, "fulfilled_at", jstr_empty_null(o->fulfilled_at), &fail);
        jset(j, "needs_review", json_boolean(o->needs_review), &fail);
        return jfinish(j, fail);
}

json_t *json_event(const struct event_record *e)
{
        json_t *j = json_object();
        bool fail = !j;

        if (fail)
                return NULL;
        jset(j, "id", json_integer(e->id), &fail);
        jset(j, "charge_id", jstr(e->charge_id), &fail);
        jset(j, "from_status", jstr(e->has_from ? charge_status_name(e->from_status) : NULL), &fail);
        jset(j, "to_status", jstr(charge_status_name(e->to_status)), &fail);
        jset(j, "delivery_id", e->delivery_id ? json_integer(e->delivery_id) : json_null(), &fail);
        jset(j, "recorded_at", jstr_empty_null(e->recorded_at), &fail);
        jset(j, "source", jstr(e->source), &fail);
        jset(j, "fetch_id", e->fetch_id ? json_integer(e->fetch_id) : json_null(), &fail);
        jset(j, "order_ref", jstr(e->order_ref), &fail);
        jset(j, "amount", json_integer(e->amount), &fail);
        jset(j, "currency", jstr(e->currency), &fail);
        return jfinish(j, fail);
}

/* The raw body: a string when it is UTF-8 text, else base64 under another key. */
static void jset_body(json_t *j, const struct delivery_record *d, bool *fail)
{
        char *b64;

        if (!d->body || output_utf8_valid(d->body, d->body_len)) {
                jset(j, "body", json_text((const char *) d->body, d->body_len), fail);
                return;
        }
        b64 = malloc(4 * ((d->body_len + 2) / 3) + 1);
        if (!b64) {
                *fail = true;
                return;
        }
        EVP_EncodeBlock((unsigned char *) b64, d->body, (int) d->body_len);
        jset(j, "body", json_null(), fail);
        jset(j, "body_base64", json_string(b64), fail);
        free(b64);
}

json_t *json_delivery(const struct delivery_record *d, bool with_body)
{
        json_t *j = json_object();
        bool fail = !j;

        if (fail)
                return NULL;
        jset(j, "id", json_integer(d->id), &fail);
        jset(j, "received_at", jstr_empty_null(d->received_at), &fail);
        jset(j, "remote_addr", jstr_empty_null(d->remote_addr), &fail);
        jset(j, "message_id", jstr(d->message_id), &fail);
        jset(j, "charge_id", jstr_empty_null(d->charge_id), &fail);
        jset(j, "claimed_status", jstr_empty_null(d->claimed_status), &fail);
        jset(j, "outcome", jstr(outcome_name(d->outcome)), &fail);
        jset(j, "http_status", json_integer(d->http_status), &fail);
        jset(j, "error", jstr(d->error), &fail);
        jset(j, "body_bytes", json_integer((json_int_t) d->body_len), &fail);
        if (with_body)
                jset_body(j, d, &fail);
        return jfinish(j, fail);
}
