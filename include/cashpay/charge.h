/*
 * charge — the CashPay charge object: JSON bytes in, a validated struct out.
 *
 * Pure. Every rule of the payload table lives here: UTF-8, one object, no
 * duplicate keys, bounded nesting, integer-only amounts, the id alphabet.
 * Nothing is re-serialised; the caller keeps the raw bytes it verified.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHARGE_ID_MAX 132          /* "chg_" + 128 */
#define CHARGE_TEXT_MAX 4096       /* description, transaction_url */
#define CHARGE_MAX_DEPTH 32
#define CHARGE_AMOUNT_MAX INT64_C(9007199254740991) /* 2^53 - 1 */
#define CHARGE_ORDER_REF_MAX 256

enum charge_status { CHARGE_INITIATED, CHARGE_CAPTURED, CHARGE_FAILED };

struct charge {
        char id[CHARGE_ID_MAX + 1];
        enum charge_status status;
        int64_t amount;
        char currency[4];
        int64_t created;
        char *description;      /* NULL when absent */
        char *transaction_url;  /* NULL when absent */
        char *order_ref;        /* from order_ref_field, NULL when absent */
};

/*
 * charge_parse() - validate @body (@len bytes) and fill @ret.
 * @order_ref_field: dotted path ("metadata.order_id") or NULL. A string or
 *   integer found there becomes order_ref; absent is fine, another type is
 *   an error.
 * @err: on -EINVAL, a short reason safe to send back ("amount must be an
 *   integer").
 * On -EINVAL, @ret->id is still filled when the id itself was valid (so the
 * delivery row can name the charge), else it is "".
 * Returns 0, -EINVAL or -ENOMEM. Free with charge_clear() in every case.
 */
int charge_parse(const void *body, size_t len, const char *order_ref_field,
                 struct charge *ret, char *err, size_t err_len);

/*
 * charge_json_object() - @body (@len bytes) as one JSON object by the
 * payload rules' JSON checks: not empty, nested at most CHARGE_MAX_DEPTH,
 * UTF-8, no duplicate keys, no NUL in strings. For other JSON bodies the
 * daemon takes in (POST /charges), so that all of them meet one parser.
 * @err: on -EINVAL, why, naming a line and column, never the input's bytes
 * (it may be sent back). @ret: a new reference, json_decref() it.
 * Returns 0, -EINVAL or -ENOMEM.
 */
struct json_t;
int charge_json_object(const void *body, size_t len, struct json_t **ret, char *err,
                       size_t err_len);

/* charge_clear() - free what charge_parse() allocated; safe on a zeroed struct. */
void charge_clear(struct charge *c);

/*
 * charge_copy() - @src into @dst with copies of its strings, for a charge
 * that must outlive the buffer it was parsed from (an API answer handed to
 * another thread). Returns 0 or -ENOMEM; either way @dst owns what it holds
 * (free with charge_clear()).
 */
int charge_copy(struct charge *dst, const struct charge *src);

/* charge_id_valid() - "chg_" + 1..128 of [A-Za-z0-9_-]. */
bool charge_id_valid(const char *id);

const char *charge_status_name(enum charge_status s);
/* Returns 0 or -EINVAL; exact, upper-case names only. */
int charge_status_from_name(const char *name, enum charge_status *ret);

/* charge_json_depth_ok() - true when no array/object nesting exceeds @max
 * (strings are skipped correctly). Exposed for tests and fuzzing. */
bool charge_json_depth_ok(const void *body, size_t len, unsigned max);
