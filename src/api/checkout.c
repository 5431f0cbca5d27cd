/*
 * checkout — the rules of a charge request and the body sent to CashPay.
 * See include/cashpay/checkout.h. Everything but checkout_random_key() is
 * pure.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cashpay/charge.h"
#include "cashpay/checkout.h"
#include "cashpay/util.h"

bool checkout_order_ref_valid(const char *ref)
{
        size_t n = ref ? strlen(ref) : 0;

        if (n == 0 || n > CHECKOUT_REF_MAX)
                return false;
        for (const char *c = ref; *c; c++)
                if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
                      (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == ':' ||
                      *c == '-'))
                        return false;
        return true;
}

static bool currency_valid(const char *c)
{
        return c && strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' &&
               c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z';
}

/* UTF-8 (jansson checks it) without control characters. */
static bool text_valid(const char *s)
{
        _cleanup_(json_decrefp) json_t *j = NULL;

        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        return false;
        j = json_string(s);
        return j != NULL;
}

static int invalid(char *detail, size_t detail_len, const char *why)
{
        return err_set(detail, detail_len, -EINVAL, "%s", why);
}

int checkout_validate(const char *order_ref, int64_t amount, const char *currency,
                      const char *description, char *detail, size_t detail_len)
{
        if (!checkout_order_ref_valid(order_ref))
                return invalid(detail, detail_len, "order_ref must be 1 to 128 of "
                               "A-Z a-z 0-9 . _ : -");
        if (amount < 1 || amount > CHARGE_AMOUNT_MAX)
                return invalid(detail, detail_len, "amount must be an integer from 1 to "
                               "9007199254740991");
        if (!currency_valid(currency))
                return invalid(detail, detail_len, "currency must be three capital letters");
        if (description && strlen(description) > CHECKOUT_DESCRIPTION_MAX)
                return invalid(detail, detail_len, "description must be at most 4096 bytes");
        if (description && !text_valid(description))
                return invalid(detail, detail_len, "description must be UTF-8 without "
                               "control characters");
        return 0;
}

static const char *const request_fields[] = { "order_ref", "amount", "currency",
                                               "description" };

/*
 * The detail goes back to the app inside a JSON string: a name is quoted
 * only when it is short printable ASCII, since cutting a longer UTF-8 one
 * could leave half a character that no JSON string may hold.
 */
static int unknown_field_named(const char *key, char *detail, size_t detail_len)
{
        size_t n = strlen(key);
        bool plain = n <= 64;

        for (const char *c = key; plain && *c; c++)
                plain = *c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\';
        if (plain)
                return err_set(detail, detail_len, -EINVAL, "unknown field \"%s\"", key);
        return err_set(detail, detail_len, -EINVAL, "unknown field (a name of %zu bytes)", n);
}

static int unknown_field(json_t *root, char *detail, size_t detail_len)
{
        const char *key;
        json_t *v;

        json_object_foreach(root, key, v) {
                bool known = false;
                for (size_t i = 0; i < sizeof(request_fields) / sizeof(request_fields[0]); i++)
                        known |= strcmp(key, request_fields[i]) == 0;
                if (!known)
                        return unknown_field_named(key, detail, detail_len);
        }
        return 0;
}

/* The types of the fields, each named when wrong or missing. */
static int request_types(json_t *root, char *detail, size_t detail_len)
{
        json_t *ref = json_object_get(root, "order_ref"), *amount = json_object_get(root, "amount"),
               *cur = json_object_get(root, "currency"),
               *desc = json_object_get(root, "description");

        if (!ref || !json_is_string(ref))
                return invalid(detail, detail_len, ref ? "order_ref must be a string"
                                                       : "order_ref is missing");
        if (!amount || !json_is_integer(amount))
                return invalid(detail, detail_len, amount ? "amount must be an integer"
                                                          : "amount is missing");
        if (!cur || !json_is_string(cur))
                return invalid(detail, detail_len, cur ? "currency must be a string"
                                                       : "currency is missing");
        if (desc && !json_is_string(desc))
                return invalid(detail, detail_len, "description must be a string");
        return unknown_field(root, detail, detail_len);
}

void checkout_request_clear(struct checkout_request *r)
{
        free(r->description);
        r->description = NULL;
}

int checkout_parse_request(const void *body, size_t len, struct checkout_request *ret,
                           char *detail, size_t detail_len)
{
        _cleanup_(json_decrefp) json_t *root = NULL;
        const char *ref, *cur, *desc;
        int r;

        *ret = (struct checkout_request) { 0 };
        r = charge_json_object(body, len, &root, detail, detail_len);
        if (r < 0)
                return r;
        r = request_types(root, detail, detail_len);
        if (r < 0)
                return r;
        ref = json_string_value(json_object_get(root, "order_ref"));
        cur = json_string_value(json_object_get(root, "currency"));
        desc = json_string_value(json_object_get(root, "description"));
        ret->amount = json_integer_value(json_object_get(root, "amount"));
        r = checkout_validate(ref, ret->amount, cur, desc, detail, detail_len);
        if (r < 0)
                return r;
        snprintf(ret->order_ref, sizeof(ret->order_ref), "%s", ref);
        snprintf(ret->currency, sizeof(ret->currency), "%s", cur);
        if (desc && !(ret->description = strdup(desc)))
                return -ENOMEM;
        return 0;
}

/* Puts @value at the dotted @path of @root, making the objects on the way. */
static int set_path(json_t *root, const char *path, json_t *value)
{
        _cleanup_(freep) char *copy = strdup(path);
        char *seg, *dot;
        json_t *at = root;

        if (!copy) {
                json_decref(value);
                return -ENOMEM;
        }
        for (seg = copy; (dot = strchr(seg, '.')); seg = dot + 1) {
                json_t *next;

                *dot = '\0';
                next = json_object_get(at, seg);
                if (!next) {
                        next = json_object();
                        if (!next || json_object_set_new(at, seg, next) < 0) {
                                json_decref(value);
                                return -ENOMEM;
                        }
                } else if (!json_is_object(next)) {
                        json_decref(value);
                        return -EINVAL;
                }
                at = next;
        }
        if (json_object_get(at, seg)) {
                json_decref(value);
                return -EINVAL; /* would overwrite amount, currency, ... */
        }
        return json_object_set_new(at, seg, value) < 0 ? -ENOMEM : 0;
}

int checkout_charge_body(const char *order_ref, int64_t amount, const char *currency,
                         const char *description, const char *post_url,
                         const char *redirect_url, const char *order_ref_field, char **ret)
{
        _cleanup_(json_decrefp) json_t *root = NULL;
        int r;

        *ret = NULL;
        root = json_pack("{s:I, s:s, s:s, s:s}", "amount", (json_int_t) amount, "currency",
                         currency, "post_url", post_url, "redirect_url", redirect_url);
        if (!root)
                return -ENOMEM;
        if (description && json_object_set_new(root, "description", json_string(description)) < 0)
                return -ENOMEM;
        if (order_ref_field) {
                r = set_path(root, order_ref_field, json_string(order_ref));
                if (r < 0)
                        return r;
        }
        *ret = json_dumps(root, JSON_COMPACT);
        return *ret ? 0 : -ENOMEM;
}

int checkout_random_key(const char *prefix, size_t nbytes, char *buf, size_t len)
{
        static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        unsigned char raw[32];
        size_t plen = strlen(prefix), out = (nbytes * 8 + 5) / 6, bits = 0, o = plen;
        unsigned acc = 0;
        ssize_t got;

        if (nbytes == 0 || nbytes > sizeof(raw) || plen + out + 1 > len)
                return -EINVAL;
        got = getrandom(raw, nbytes, 0);
        if (got < 0)
                return -errno;
        if ((size_t) got != nbytes)
                return -EIO;
        memcpy(buf, prefix, plen);
        for (size_t i = 0; i < nbytes; i++) {
                acc = (acc << 8) | raw[i];
                bits += 8;
                while (bits >= 6) {
                        bits -= 6;
                        buf[o++] = alphabet[(acc >> bits) & 63];
                }
        }
        if (bits > 0)
                buf[o++] = alphabet[(acc << (6 - bits)) & 63];
        buf[o] = '\0';
        explicit_bzero(raw, sizeof(raw));
        return 0;
}
