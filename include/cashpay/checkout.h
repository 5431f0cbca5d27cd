/*
 * checkout — what a request for a new charge must be (CONTRACT §8.3) and
 * the body cashpayd sends CashPay for it (§8.1). Pure: strings in, strings
 * out; the checkout listener and `cashpayctl charge create` share it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHECKOUT_REF_MAX 128          /* order_ref */
#define CHECKOUT_DESCRIPTION_MAX 4096 /* bytes */

/* checkout_order_ref_valid() - 1 to 128 of [A-Za-z0-9._:-]. */
bool checkout_order_ref_valid(const char *ref);

/*
 * checkout_validate() - the request's fields by §8.3: order_ref as above,
 * amount 1 to 2^53-1, currency three capitals, description (NULL allowed)
 * UTF-8 without control characters, at most 4096 bytes.
 * @detail: on -EINVAL, which and why ("amount must be positive").
 * Returns 0 or -EINVAL.
 */
int checkout_validate(const char *order_ref, int64_t amount, const char *currency,
                      const char *description, char *detail, size_t detail_len);

/* A POST /charges body, parsed. */
struct checkout_request {
        char order_ref[CHECKOUT_REF_MAX + 1];
        int64_t amount;
        char currency[4];
        char *description;            /* or NULL; malloc'd */
};

/*
 * checkout_parse_request() - @len bytes at @body as a POST /charges body:
 * one JSON object (charge_json_object(): the webhook's JSON rules) of
 * "order_ref" (string), "amount" (JSON integer), "currency" (string),
 * optional "description" (string), and nothing else (a misspelt field is a mistake worth
 * hearing about, not something to drop); then checkout_validate().
 * @detail: on -EINVAL, which field and why ("amount must be an integer").
 * Returns 0, -EINVAL or -ENOMEM. Clear @ret with checkout_request_clear()
 * in every case.
 */
int checkout_parse_request(const void *body, size_t len, struct checkout_request *ret,
                           char *detail, size_t detail_len);
void checkout_request_clear(struct checkout_request *r);

/*
 * checkout_charge_body() - the JSON of POST {api_url}/charges:
 * {"amount","currency","description"?,"post_url","redirect_url"} and, with
 * @order_ref_field ("metadata.order_id"), the order_ref at that dotted
 * path, so that CashPay's webhook carries it back.
 * @ret: malloc'd, compact. Returns 0, -EINVAL (a path that clashes with
 * the fields above) or -ENOMEM.
 */
int checkout_charge_body(const char *order_ref, int64_t amount, const char *currency,
                         const char *description, const char *post_url,
                         const char *redirect_url, const char *order_ref_field, char **ret);

/*
 * checkout_random_key() - @nbytes (≤ 32) random bytes from the kernel as
 * unpadded base64url after @prefix, into @buf (@len bytes). For
 * Idempotency-Keys and return references (16 bytes: 128 bits).
 * Returns 0, -EINVAL (too small a buffer) or a negative errno of getrandom.
 */
int checkout_random_key(const char *prefix, size_t nbytes, char *buf, size_t len);
