/*
 * charge-create — creating a charge for an order_ref (CONTRACT §8.3), the
 * one implementation behind cashpayd's checkout listener and `cashpayctl
 * charge create`.
 *
 * Three steps, each run where it belongs by the caller:
 * 1. charge_create_plan() on the thread that owns the store handle (the
 *    daemon's writer): the §8.3 decision and, when CashPay must be asked,
 *    the charge_requests row written before anything is sent;
 * 2. charge_create_send() through the API client: returns at once, @done
 *    runs on the client's thread once the answer is copied in;
 * 3. charge_create_settle() on the store's thread again: what CashPay said
 *    is recorded (the INITIATED order with its order_ref, return_ref and a
 *    "checkout" event, or the failed attempt) before it is reported.
 * The outcome (struct charge_result) maps to the §8.3 table through
 * charge_result_status() and charge_result_json().
 *
 * Nothing here blocks on the network, logs, or keeps a transaction open
 * across a step.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cashpay/api.h"
#include "cashpay/store-api.h"
#include "cashpay/util.h"

/* What the merchant's app asked for (validated with checkout_validate()). */
struct charge_order {
        const char *order_ref;
        int64_t amount;
        const char *currency;
        const char *description;  /* or NULL */
};

/* Where CashPay sends the webhook and the customer; from the config. */
struct charge_urls {
        const char *public_url;       /* [cashpay] public_url */
        const char *webhook_path;     /* [http] webhook_path */
        const char *return_path;      /* [http] return_path; "?ref=RETURN_REF" follows */
        const char *order_ref_field;  /* [webhook] order_ref_field, or NULL */
        unsigned reconcile_after;     /* seconds until the new order's first fetch */
};

enum charge_answer {
        CHARGE_ANSWER_CREATED,       /* 201: created at CashPay and recorded */
        CHARGE_ANSWER_EXISTS,        /* 200: the INITIATED charge already there */
        CHARGE_ANSWER_ALREADY_PAID,  /* 409 already_paid */
        CHARGE_ANSWER_ORDER_CHANGED, /* 409 order_changed */
        CHARGE_ANSWER_REFUSED,       /* 502 cashpay_refused: CashPay said no (4xx) */
        CHARGE_ANSWER_UNAVAILABLE,   /* 503 cashpay_unavailable: no usable answer; the
                                      * request stays pending, a retry sends its key */
        CHARGE_ANSWER_STORE_FAILED,  /* 503: the database could not record a step */
};

struct charge_result {
        enum charge_answer answer;
        /* CREATED, EXISTS, ALREADY_PAID; ORDER_CHANGED ("" while only a
         * request with other terms is pending) */
        char charge_id[CHARGE_ID_MAX + 1];
        const char *transaction_url;  /* CREATED, EXISTS; owned by the creation */
        char return_ref[CHECKOUT_KEY_MAX + 1];
        int cashpay_status;           /* CashPay's HTTP status, 0 when none */
        int api_error;                /* UNAVAILABLE: the client's negative errno, or 0 */
        int store_error;              /* STORE_FAILED: the store's negative errno */
        char detail[256];             /* why, for logs and the 502/503 body; no secret */
};

struct charge_create;

/*
 * charge_create_new() - a creation of @o's charge. Copies the strings and
 * draws the fresh Idempotency-Key and return_ref a new request row would
 * get. Returns 0, -ENOMEM or getrandom()'s negative errno.
 */
int charge_create_new(const struct charge_order *o, const struct charge_urls *u,
                      struct charge_create **ret);
void charge_create_free(struct charge_create *cc);
DEFINE_FREEP(struct charge_create, charge_create_free)

/*
 * charge_create_plan() - step 1 (store_charge_plan()). Returns true when
 * CashPay must be asked (go on with charge_create_send()), false when the
 * result is final already (EXISTS, ALREADY_PAID, ORDER_CHANGED, or
 * STORE_FAILED).
 */
bool charge_create_plan(struct charge_create *cc, struct store *s, int64_t now_ms);

/*
 * charge_create_send() - step 2: POST the charge with the request row's
 * Idempotency-Key. @done(@data) runs exactly once on the client's thread
 * after the answer was copied into @cc, when 0 is returned; it must only
 * hand @cc on (to the store's thread) and not block. Returns 0, -EINVAL or
 * -ENOMEM (then @done never runs and the result says UNAVAILABLE).
 */
int charge_create_send(struct charge_create *cc, struct api_client *api,
                       void (*done)(void *data), void *data);

/* charge_create_cancelled() - the answer of step 2 was -ECANCELED (the
 * client stopping): nothing to settle, the request stays pending, and the
 * result says UNAVAILABLE. */
bool charge_create_cancelled(const struct charge_create *cc);

/* charge_create_settle() - step 3: record CashPay's answer, then the result
 * is final. */
void charge_create_settle(struct charge_create *cc, struct store *s, int64_t now_ms);

/*
 * charge_create_unrecorded() - the transaction a step of @cc ran in was
 * not committed after all (a group of them, store_charge_group_begin(),
 * whose commit failed with @r): whatever the step decided is void, the
 * result says STORE_FAILED (503; the request row, if any, is as before).
 */
void charge_create_unrecorded(struct charge_create *cc, int r);

/* charge_create_result() - final after a step that made it so; before
 * that it says UNAVAILABLE (never a 2xx that was not recorded). */
const struct charge_result *charge_create_result(const struct charge_create *cc);

/* charge_create_order() - the order asked for (its copies). */
const struct charge_order *charge_create_order(const struct charge_create *cc);

/* charge_result_status() - the §8.3 HTTP status of @r. */
unsigned charge_result_status(const struct charge_result *r);

/*
 * charge_result_json() - the §8.3 body of @r for @o: the charge's shape
 * for 201/200, {"error",...} otherwise. @ret malloc'd. 0 or -ENOMEM.
 */
int charge_result_json(const struct charge_result *r, const struct charge_order *o, char **ret);
