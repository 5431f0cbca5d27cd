/*
 * charge — turn the raw bytes of a webhook body into a validated struct charge.
 *
 * Every rule of the contract's payload table is enforced here, and nowhere
 * else, so that the daemon and cashpayctl agree on what a valid charge is.
 * jansson does the parsing (it rejects invalid UTF-8, lone surrogate escapes
 * and, without JSON_ALLOW_NUL, "\u0000"); this file adds what jansson cannot
 * be asked for at run time: a nesting limit, integer-only amounts, the id
 * alphabet and the order reference lookup.
 *
 * Detail texts go back to whoever sent the request, so they are fixed
 * sentences naming a field or a position in the body: never bytes of the
 * body itself (jansson's own error text quotes the input, so it is not used).
 *
 * JSON null for an optional field (description, transaction_url, the order
 * reference) means "absent": a sender that serialises unset fields as null
 * must not be refused for it. For required fields null is a wrong type.
 */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/charge.h"
#include "cashpay/util.h"

#define ID_PREFIX "chg_"
#define ID_PREFIX_LEN (sizeof(ID_PREFIX) - 1)
#define ID_SUFFIX_MAX (CHARGE_ID_MAX - ID_PREFIX_LEN)

static const char *const status_names[] = {
        [CHARGE_INITIATED] = "INITIATED",
        [CHARGE_CAPTURED] = "CAPTURED",
        [CHARGE_FAILED] = "FAILED",
};

/* Where to write the reason; err may be NULL. */
struct err_dest {
        char *err;
        size_t err_len;
};

static bool id_char_ok(char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '_' || c == '-';
}

bool charge_id_valid(const char *id)
{
        size_t i;

        if (!id || strncmp(id, ID_PREFIX, ID_PREFIX_LEN) != 0)
                return false;
        id += ID_PREFIX_LEN;
        for (i = 0; i <= ID_SUFFIX_MAX && id[i]; i++)
                if (!id_char_ok(id[i]))
                        return false;
        return i >= 1 && i <= ID_SUFFIX_MAX && id[i] == '\0';
}

const char *charge_status_name(enum charge_status s)
{
        if ((unsigned) s >= sizeof(status_names) / sizeof(status_names[0]))
                return NULL;
        return status_names[s];
}

int charge_status_from_name(const char *name, enum charge_status *ret)
{
        for (size_t i = 0; name && i < sizeof(status_names) / sizeof(status_names[0]); i++)
                if (strcmp(name, status_names[i]) == 0) {
                        *ret = (enum charge_status) i;
                        return 0;
                }
        return -EINVAL;
}

/*
 * Walk @len bytes counting open arrays and objects outside strings. Stops
 * early at the byte that takes the depth past @max and returns its offset;
 * returns @len when the limit was never passed. @ret_depth (optional) gets
 * the depth at the stopping point. Unbalanced closers never go below zero:
 * such input is invalid and jansson will say so.
 */
static size_t json_scan(const char *p, size_t len, unsigned max, unsigned *ret_depth)
{
        unsigned depth = 0;
        bool in_string = false, escaped = false;
        size_t i;

        for (i = 0; i < len; i++) {
                char c = p[i];

                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"') {
                        in_string = true;
                } else if (c == '[' || c == '{') {
                        if (++depth > max)
                                break;
                } else if ((c == ']' || c == '}') && depth > 0) {
                        depth--;
                }
        }
        if (ret_depth)
                *ret_depth = depth;
        return i;
}

bool charge_json_depth_ok(const void *body, size_t len, unsigned max)
{
        if (!body)
                return true;
        return json_scan(body, len, max, NULL) == len;
}

static bool is_json_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool all_space(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!is_json_space(p[i]))
                        return false;
        return true;
}

static size_t skip_space_back(const char *p, size_t i)
{
        while (i > 0 && is_json_space(p[i - 1]))
                i--;
        return i;
}

/*
 * jansson refuses numbers that do not fit an int64 or a double and reports
 * only the offset just past the number. Everything before that offset
 * parsed, so the text there is well-formed: look back for `"key" :` and, when
 * it is a top-level key, return it so the detail can name the field.
 */
static const char *overflowed_key(const char *p, size_t end)
{
        size_t i = end, key_end;
        unsigned depth;

        while (i > 0 && p[i - 1] != '\0' && strchr("0123456789+-.eE", p[i - 1]))
                i--;
        i = skip_space_back(p, i);
        if (i == 0 || p[i - 1] != ':')
                return NULL;
        i = skip_space_back(p, i - 1);
        if (i == 0 || p[i - 1] != '"')
                return NULL;
        key_end = --i;
        while (i > 0 && p[i - 1] != '"' && p[i - 1] != '\\')
                i--;
        /* an escape inside the key, or nothing before it: do not guess */
        if (i < 2 || p[i - 1] != '"' || p[i - 2] == '\\')
                return NULL;
        json_scan(p, i - 1, ~0u, &depth);
        if (depth != 1)
                return NULL;
        if (key_end - i == 6 && memcmp(p + i, "amount", 6) == 0)
                return "amount";
        if (key_end - i == 7 && memcmp(p + i, "created", 7) == 0)
                return "created";
        return NULL;
}

static int overflow_error(const char *p, size_t len, const json_error_t *e,
                          const struct err_dest *d)
{
        const char *key = NULL;

        if (e->position >= 0 && (size_t) e->position <= len)
                key = overflowed_key(p, (size_t) e->position);
        if (key && strcmp(key, "amount") == 0)
                return err_set(d->err, d->err_len, -EINVAL,
                               "amount must be an integer between 0 and %lld",
                               (long long) CHARGE_AMOUNT_MAX);
        if (key)
                return err_set(d->err, d->err_len, -EINVAL,
                               "created must be a non-negative integer");
        return err_set(d->err, d->err_len, -EINVAL,
                       "number out of range at line %d column %d", e->line, e->column);
}

/* Map a jansson failure to a detail that names a position, never input bytes. */
static int load_error(const char *p, size_t len, const json_error_t *e, const struct err_dest *d)
{
        switch (json_error_code(e)) {
        case json_error_out_of_memory:
                return -ENOMEM;
        case json_error_invalid_utf8:
                return err_set(d->err, d->err_len, -EINVAL,
                               "invalid UTF-8 at line %d column %d", e->line, e->column);
        case json_error_duplicate_key:
                return err_set(d->err, d->err_len, -EINVAL,
                               "duplicate key in JSON at line %d column %d", e->line, e->column);
        case json_error_null_character:
        case json_error_null_byte_in_key:
                return err_set(d->err, d->err_len, -EINVAL,
                               "NUL character in JSON string at line %d column %d",
                               e->line, e->column);
        case json_error_numeric_overflow:
                return overflow_error(p, len, e, d);
        case json_error_stack_overflow:
                return err_set(d->err, d->err_len, -EINVAL,
                               "JSON nested deeper than %d levels", CHARGE_MAX_DEPTH);
        default:
                return err_set(d->err, d->err_len, -EINVAL,
                               "invalid JSON at line %d column %d", e->line, e->column);
        }
}

static int load_object(const char *p, size_t len, json_t **ret, const struct err_dest *d)
{
        /* Zeroed: jansson leaves it unset when it cannot allocate before parsing. */
        json_error_t e = { 0 };
        json_t *root;

        if (!p || all_space(p, len))
                return err_set(d->err, d->err_len, -EINVAL, "empty body");
        if (!charge_json_depth_ok(p, len, CHARGE_MAX_DEPTH))
                return err_set(d->err, d->err_len, -EINVAL,
                               "JSON nested deeper than %d levels", CHARGE_MAX_DEPTH);
        /* DECODE_ANY so that a scalar body gets the same clear detail as an array. */
        root = json_loadb(p, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
        if (!root)
                return load_error(p, len, &e, d);
        if (!json_is_object(root)) {
                json_decref(root);
                return err_set(d->err, d->err_len, -EINVAL, "body must be a JSON object");
        }
        *ret = root;
        return 0;
}

int charge_json_object(const void *body, size_t len, json_t **ret, char *err, size_t err_len)
{
        const struct err_dest d = { err, err_len };

        *ret = NULL;
        return load_object(body, len, ret, &d);
}

static int parse_id(json_t *root, struct charge *c, const struct err_dest *d)
{
        json_t *v = json_object_get(root, "id");

        if (!v)
                return err_set(d->err, d->err_len, -EINVAL, "id is missing");
        if (!json_is_string(v) || !charge_id_valid(json_string_value(v)))
                return err_set(d->err, d->err_len, -EINVAL,
                               "id must be chg_ followed by 1 to %zu of A-Z a-z 0-9 _ -",
                               ID_SUFFIX_MAX);
        /* charge_id_valid() bounded the length to CHARGE_ID_MAX */
        memcpy(c->id, json_string_value(v), json_string_length(v) + 1);
        return 0;
}

static int parse_status(json_t *root, struct charge *c, const struct err_dest *d)
{
        json_t *v = json_object_get(root, "status");

        if (!v)
                return err_set(d->err, d->err_len, -EINVAL, "status is missing");
        if (!json_is_string(v) || charge_status_from_name(json_string_value(v), &c->status) < 0)
                return err_set(d->err, d->err_len, -EINVAL,
                               "status must be INITIATED, CAPTURED or FAILED");
        return 0;
}

static int parse_amount(json_t *root, struct charge *c, const struct err_dest *d)
{
        json_t *v = json_object_get(root, "amount");
        json_int_t n;

        if (!v)
                return err_set(d->err, d->err_len, -EINVAL, "amount is missing");
        /* a real (20.5, 2e3, 1.0) or a string ("2000") is never an amount */
        if (!json_is_integer(v))
                return err_set(d->err, d->err_len, -EINVAL, "amount must be an integer");
        n = json_integer_value(v);
        if (n < 0 || n > CHARGE_AMOUNT_MAX)
                return err_set(d->err, d->err_len, -EINVAL,
                               "amount must be an integer between 0 and %lld",
                               (long long) CHARGE_AMOUNT_MAX);
        c->amount = n;
        return 0;
}

static int parse_currency(json_t *root, struct charge *c, const struct err_dest *d)
{
        json_t *v = json_object_get(root, "currency");
        const char *s;

        if (!v)
                return err_set(d->err, d->err_len, -EINVAL, "currency is missing");
        if (!json_is_string(v) || json_string_length(v) != 3)
                return err_set(d->err, d->err_len, -EINVAL,
                               "currency must be three capital letters");
        s = json_string_value(v);
        for (size_t i = 0; i < 3; i++)
                if (s[i] < 'A' || s[i] > 'Z')
                        return err_set(d->err, d->err_len, -EINVAL,
                                       "currency must be three capital letters");
        memcpy(c->currency, s, 4);
        return 0;
}

static int parse_created(json_t *root, struct charge *c, const struct err_dest *d)
{
        json_t *v = json_object_get(root, "created");

        if (!v)
                return err_set(d->err, d->err_len, -EINVAL, "created is missing");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return err_set(d->err, d->err_len, -EINVAL,
                               "created must be a non-negative integer");
        c->created = json_integer_value(v);
        return 0;
}

/* An optional string of at most CHARGE_TEXT_MAX bytes; absent or null gives NULL. */
static int parse_text(json_t *root, const char *key, char **ret, const struct err_dest *d)
{
        json_t *v = json_object_get(root, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return err_set(d->err, d->err_len, -EINVAL, "%s must be a string", key);
        if (json_string_length(v) > CHARGE_TEXT_MAX)
                return err_set(d->err, d->err_len, -EINVAL,
                               "%s must be at most %d bytes", key, CHARGE_TEXT_MAX);
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

/*
 * Follow a dotted path through nested objects. Returns 0 with *ret = NULL
 * when a member along the way is absent or null, -EINVAL when something
 * other than an object is in the way. Segments longer than any sensible key
 * cannot match (the config limits the path).
 */
static int lookup_path(json_t *root, const char *path, json_t **ret)
{
        char key[CHARGE_ORDER_REF_MAX + 1];
        json_t *cur = root;

        for (const char *p = path; cur; p++) {
                size_t n = strcspn(p, ".");

                if (json_is_null(cur))
                        break;
                if (!json_is_object(cur))
                        return -EINVAL;
                if (n >= sizeof(key))
                        break;
                memcpy(key, p, n);
                key[n] = '\0';
                cur = json_object_get(cur, key);
                p += n;
                if (*p == '\0') {
                        *ret = json_is_null(cur) ? NULL : cur;
                        return 0;
                }
        }
        *ret = NULL;
        return 0;
}

static bool ref_text_ok(const char *s, size_t len)
{
        if (len < 1 || len > CHARGE_ORDER_REF_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char b = (unsigned char) s[i];

                /* C0, DEL, and C1 (U+0080..U+009F, encoded C2 80..C2 9F) */
                if (b < 0x20 || b == 0x7f)
                        return false;
                if (b == 0xc2 && i + 1 < len && (unsigned char) s[i + 1] <= 0x9f)
                        return false;
        }
        return true;
}

static int parse_order_ref(json_t *root, const char *path, struct charge *c,
                           const struct err_dest *d)
{
        char num[32];
        json_t *v = NULL;

        if (!path || !*path)
                return 0;
        if (lookup_path(root, path, &v) < 0)
                return err_set(d->err, d->err_len, -EINVAL,
                               "%s must be a string or an integer", path);
        if (!v)
                return 0;
        if (json_is_integer(v)) {
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                c->order_ref = strdup(num);
        } else if (json_is_string(v)) {
                if (!ref_text_ok(json_string_value(v), json_string_length(v)))
                        return err_set(d->err, d->err_len, -EINVAL,
                                       "%s must be 1 to %d bytes without control characters",
                                       path, CHARGE_ORDER_REF_MAX);
                c->order_ref = strdup(json_string_value(v));
        } else {
                return err_set(d->err, d->err_len, -EINVAL,
                               "%s must be a string or an integer", path);
        }
        return c->order_ref ? 0 : -ENOMEM;
}

static int parse_fields(json_t *root, const char *order_ref_field, struct charge *c,
                        const struct err_dest *d)
{
        int r;

        /* id first: a rejected delivery is still filed under its charge */
        if ((r = parse_id(root, c, d)) < 0 ||
            (r = parse_status(root, c, d)) < 0 ||
            (r = parse_amount(root, c, d)) < 0 ||
            (r = parse_currency(root, c, d)) < 0 ||
            (r = parse_created(root, c, d)) < 0 ||
            (r = parse_text(root, "description", &c->description, d)) < 0 ||
            (r = parse_text(root, "transaction_url", &c->transaction_url, d)) < 0 ||
            (r = parse_order_ref(root, order_ref_field, c, d)) < 0)
                return r;
        return 0;
}

int charge_parse(const void *body, size_t len, const char *order_ref_field,
                 struct charge *ret, char *err, size_t err_len)
{
        const struct err_dest d = { err, err_len };
        _cleanup_(json_decrefp) json_t *root = NULL;
        char id[CHARGE_ID_MAX + 1];
        int r;

        memset(ret, 0, sizeof(*ret));
        if (err && err_len > 0)
                err[0] = '\0';
        r = load_object(body, len, &root, &d);
        if (r < 0)
                return r;
        r = parse_fields(root, order_ref_field, ret, &d);
        if (r < 0) {
                /* keep only the id, so a failed parse owns nothing */
                memcpy(id, ret->id, sizeof(id));
                charge_clear(ret);
                memcpy(ret->id, id, sizeof(id));
        }
        return r;
}

static bool copy_string(char **dst, const char *src)
{
        *dst = src ? strdup(src) : NULL;
        return *dst || !src;
}

int charge_copy(struct charge *dst, const struct charge *src)
{
        bool ok;

        *dst = *src;
        dst->description = dst->transaction_url = dst->order_ref = NULL;
        ok = copy_string(&dst->description, src->description);
        ok &= copy_string(&dst->transaction_url, src->transaction_url);
        ok &= copy_string(&dst->order_ref, src->order_ref);
        return ok ? 0 : -ENOMEM;
}

void charge_clear(struct charge *c)
{
        if (!c)
                return;
        free(c->description);
        free(c->transaction_url);
        free(c->order_ref);
        memset(c, 0, sizeof(*c));
}
