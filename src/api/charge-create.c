/*
 * charge-create — plan, send and settle one charge creation; see
 * include/cashpay/charge-create.h.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/charge-create.h"
#include "cashpay/checkout.h"
#include "cashpay/timeutil.h"

struct charge_create {
        struct charge_order order;    /* strings below */
        char *order_ref, *currency, *description;
        char *post_url, *return_url;  /* return_url without "?ref=" */
        char *order_ref_field;
        unsigned reconcile_after;
        char new_key[CHECKOUT_KEY_MAX + 1], new_return_ref[CHECKOUT_KEY_MAX + 1];

        struct charge_plan plan;
        char *body;                   /* the POST's JSON */
        void (*done)(void *data);
        void *done_data;
        struct api_result res;        /* CashPay's answer, copied: body and charge dropped */
        struct charge charge;         /* res.has_charge; owned */
        char refusal[160];            /* CashPay's own words on a 4xx, or "" */
        struct charge_result result;
};

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

void charge_create_free(struct charge_create *cc)
{
        if (!cc)
                return;
        free(cc->order_ref);
        free(cc->currency);
        free(cc->description);
        free(cc->post_url);
        free(cc->return_url);
        free(cc->order_ref_field);
        charge_plan_clear(&cc->plan);
        free(cc->body);
        charge_clear(&cc->charge);
        free(cc);
}

int charge_create_new(const struct charge_order *o, const struct charge_urls *u,
                      struct charge_create **ret)
{
        _cleanup_(charge_create_freep) struct charge_create *cc = calloc(1, sizeof(*cc));
        int r;

        if (!cc)
                return -ENOMEM;
        cc->order_ref = strdup(o->order_ref);
        cc->currency = strdup(o->currency);
        cc->description = dup_or_null(o->description);
        cc->order_ref_field = dup_or_null(u->order_ref_field);
        if (asprintf(&cc->post_url, "%s%s", u->public_url, u->webhook_path) < 0)
                cc->post_url = NULL;
        if (asprintf(&cc->return_url, "%s%s", u->public_url, u->return_path) < 0)
                cc->return_url = NULL;
        if (!cc->order_ref || !cc->currency || (o->description && !cc->description) ||
            (u->order_ref_field && !cc->order_ref_field) || !cc->post_url || !cc->return_url)
                return -ENOMEM;
        cc->order = (struct charge_order) { .order_ref = cc->order_ref, .amount = o->amount,
                                            .currency = cc->currency,
                                            .description = cc->description };
        cc->reconcile_after = u->reconcile_after;
        /* Until a step says otherwise: never a 2xx by default. */
        cc->result.answer = CHARGE_ANSWER_UNAVAILABLE;
        snprintf(cc->result.detail, sizeof(cc->result.detail), "CashPay was not asked");
        /* Drawn now, not on the store's thread: used only for a new request row. */
        r = checkout_random_key("cpd_", 16, cc->new_key, sizeof(cc->new_key));
        if (r == 0)
                r = checkout_random_key("", 16, cc->new_return_ref, sizeof(cc->new_return_ref));
        if (r < 0)
                return r;
        *ret = TAKE_PTR(cc);
        return 0;
}

static void store_failed(struct charge_create *cc, int r, const char *what)
{
        cc->result.answer = CHARGE_ANSWER_STORE_FAILED;
        cc->result.store_error = r;
        snprintf(cc->result.detail, sizeof(cc->result.detail), "cannot %s: %s", what,
                 store_strerror(r));
}

static void unavailable(struct charge_create *cc, int error, const char *detail)
{
        cc->result.answer = CHARGE_ANSWER_UNAVAILABLE;
        cc->result.api_error = error;
        cc->result.cashpay_status = cc->res.http_status;
        snprintf(cc->result.detail, sizeof(cc->result.detail), "%s", detail);
}

static int build_body(struct charge_create *cc)
{
        _cleanup_(freep) char *redirect = NULL;
        const struct charge_order *o = &cc->order;

        if (asprintf(&redirect, "%s?ref=%s", cc->return_url, cc->plan.return_ref) < 0) {
                redirect = NULL;
                return -ENOMEM;
        }
        return checkout_charge_body(o->order_ref, o->amount, o->currency, o->description,
                                    cc->post_url, redirect, cc->order_ref_field, &cc->body);
}

/* The verdicts that need no request. */
static void answer_from_plan(struct charge_create *cc)
{
        const struct charge_plan *p = &cc->plan;
        struct charge_result *res = &cc->result;

        snprintf(res->charge_id, sizeof(res->charge_id), "%s", p->charge_id);
        snprintf(res->return_ref, sizeof(res->return_ref), "%s", p->return_ref);
        switch (p->verdict) {
        case CHARGE_EXISTS:
                res->answer = CHARGE_ANSWER_EXISTS;
                res->transaction_url = p->transaction_url;
                break;
        case CHARGE_ALREADY_PAID:
                res->answer = CHARGE_ANSWER_ALREADY_PAID;
                break;
        case CHARGE_ORDER_CHANGED:
                res->answer = CHARGE_ANSWER_ORDER_CHANGED;
                if (!p->charge_id[0])
                        snprintf(res->detail, sizeof(res->detail), "a request with other "
                                 "terms is still pending; retry it with those terms");
                break;
        case CHARGE_SEND:
                break;
        }
}

bool charge_create_plan(struct charge_create *cc, struct store *s, int64_t now_ms)
{
        const struct charge_order *o = &cc->order;
        struct charge_ask ask = {
                .order_ref = o->order_ref, .amount = o->amount, .description = o->description,
                .new_idempotency_key = cc->new_key, .new_return_ref = cc->new_return_ref,
        };
        int r;

        snprintf(ask.currency, sizeof(ask.currency), "%s", o->currency);
        time_format_iso(now_ms, ask.now);
        r = store_charge_plan(s, &ask, &cc->plan);
        if (r < 0) {
                store_failed(cc, r, "record the request");
                return false;
        }
        if (cc->plan.verdict != CHARGE_SEND) {
                answer_from_plan(cc);
                return false;
        }
        r = build_body(cc);
        if (r < 0) {
                unavailable(cc, r, "cannot build the request");
                return false;
        }
        return true;
}

/* CashPay's "detail" (or "error") of a refusal, so the merchant sees why. */
static void copy_refusal(struct charge_create *cc, const struct api_result *r)
{
        _cleanup_(json_decrefp) json_t *j = NULL;
        const char *why;

        if (r->error != 0 || r->http_status < 400 || r->http_status >= 500 || !r->body_len)
                return;
        j = json_loadb((const char *) r->body, r->body_len, 0, NULL);
        why = json_string_value(json_object_get(j, "detail"));
        if (!why)
                why = json_string_value(json_object_get(j, "error"));
        if (why)
                snprintf(cc->refusal, sizeof(cc->refusal), "%s", why);
}

/* On the client's thread: copy what outlives the callback, hand on. */
static void on_answer(const struct api_result *r, void *userdata)
{
        struct charge_create *cc = userdata;

        cc->res = *r;
        cc->res.body = NULL;
        cc->res.body_len = 0;
        cc->res.charge = (struct charge) { 0 };
        if (r->has_charge && charge_copy(&cc->charge, &r->charge) < 0) {
                /* out of memory: not a usable answer, the retry replays it */
                cc->res.has_charge = false;
                cc->res.error = -ENOMEM;
                snprintf(cc->res.detail, sizeof(cc->res.detail), "out of memory");
        }
        copy_refusal(cc, r);
        if (r->error == -ECANCELED) /* nothing to settle: the request stays pending */
                unavailable(cc, r->error, "stopping before CashPay answered");
        cc->done(cc->done_data);
}

int charge_create_send(struct charge_create *cc, struct api_client *api,
                       void (*done)(void *data), void *data)
{
        int r;

        cc->done = done;
        cc->done_data = data;
        r = api_create_charge(api, cc->body, cc->plan.idempotency_key, on_answer, cc);
        if (r < 0)
                unavailable(cc, r, "cannot ask CashPay: out of memory");
        return r;
}

bool charge_create_cancelled(const struct charge_create *cc)
{
        return cc->res.error == -ECANCELED;
}

/*
 * -ENOENT from settling: the request is no longer pending because another
 * process (the checkout listener, a second cashpayctl) sent it with the
 * same Idempotency-Key and recorded CashPay's answer first. What that
 * process recorded is the answer here too, so the order_ref is planned
 * again. Should that find nothing recorded (it cannot, short of a
 * hand-edited database) nothing is sent: the caller asks again.
 */
static void settled_elsewhere(struct charge_create *cc, struct store *s, int64_t now_ms)
{
        charge_plan_clear(&cc->plan);
        free(cc->body);
        cc->body = NULL;
        if (charge_create_plan(cc, s, now_ms))
                unavailable(cc, -EAGAIN, "the request was settled by another process "
                            "meanwhile; send it again");
}

static void settle_charge(struct charge_create *cc, struct store *s, const char *now,
                          int64_t now_ms)
{
        char next[TIME_ISO_LEN], why[256];
        struct charge_result *res = &cc->result;
        int r;

        time_format_iso(now_ms + (int64_t) cc->reconcile_after * 1000, next);
        r = store_charge_created(s, cc->plan.request_id, &cc->charge, cc->res.http_status, now,
                                 next);
        if (r == -EINVAL) {
                /* Not INITIATED with the asked terms: never an order of this
                 * request (store_charge_created() wrote nothing). */
                snprintf(why, sizeof(why), "CashPay answered with another charge than asked "
                         "for (%s); the request stays pending", cc->charge.id);
                r = store_charge_attempt(s, cc->plan.request_id, false, cc->res.http_status,
                                         why, now);
                if (r == 0) {
                        unavailable(cc, -EBADMSG, why);
                        return;
                }
        }
        if (r == -ENOENT) {
                settled_elsewhere(cc, s, now_ms);
                return;
        }
        if (r < 0) {
                store_failed(cc, r, "record the charge");
                return;
        }
        res->answer = CHARGE_ANSWER_CREATED;
        snprintf(res->charge_id, sizeof(res->charge_id), "%s", cc->charge.id);
        snprintf(res->return_ref, sizeof(res->return_ref), "%s", cc->plan.return_ref);
        res->transaction_url = cc->charge.transaction_url;
        res->cashpay_status = cc->res.http_status;
}

/* A 4xx is CashPay's no, except 429 (try later); anything else may still
 * have created the charge, so the request stays pending for its key. */
static bool refused(const struct api_result *r)
{
        return r->error == 0 && r->http_status >= 400 && r->http_status < 500 &&
               r->http_status != 429;
}

void charge_create_settle(struct charge_create *cc, struct store *s, int64_t now_ms)
{
        char now[TIME_ISO_LEN];
        bool no = refused(&cc->res);
        int r;

        time_format_iso(now_ms, now);
        if (cc->res.has_charge) {
                settle_charge(cc, s, now, now_ms);
                return;
        }
        r = store_charge_attempt(s, cc->plan.request_id, no, cc->res.http_status,
                                 cc->res.detail, now);
        if (r == -ENOENT) {
                settled_elsewhere(cc, s, now_ms);
                return;
        }
        if (r < 0) {
                store_failed(cc, r, "record the attempt");
                return;
        }
        if (!no) {
                unavailable(cc, cc->res.error, cc->res.detail);
                return;
        }
        cc->result.answer = CHARGE_ANSWER_REFUSED;
        cc->result.cashpay_status = cc->res.http_status;
        snprintf(cc->result.detail, sizeof(cc->result.detail), "%s",
                 cc->refusal[0] ? cc->refusal : cc->res.detail);
}

void charge_create_unrecorded(struct charge_create *cc, int r)
{
        cc->result = (struct charge_result) { 0 };
        store_failed(cc, r, "commit");
}

const struct charge_result *charge_create_result(const struct charge_create *cc)
{
        return &cc->result;
}

const struct charge_order *charge_create_order(const struct charge_create *cc)
{
        return &cc->order;
}

unsigned charge_result_status(const struct charge_result *r)
{
        switch (r->answer) {
        case CHARGE_ANSWER_CREATED: return 201;
        case CHARGE_ANSWER_EXISTS: return 200;
        case CHARGE_ANSWER_ALREADY_PAID:
        case CHARGE_ANSWER_ORDER_CHANGED: return 409;
        case CHARGE_ANSWER_REFUSED: return 502;
        default: return 503;
        }
}

static json_t *error_json(const struct charge_result *r)
{
        switch (r->answer) {
        case CHARGE_ANSWER_ALREADY_PAID:
                return json_pack("{s:s, s:s}", "error", "already_paid", "charge_id", r->charge_id);
        case CHARGE_ANSWER_ORDER_CHANGED:
                if (!r->charge_id[0])
                        return json_pack("{s:s, s:n, s:s}", "error", "order_changed",
                                         "charge_id", "detail", r->detail);
                return json_pack("{s:s, s:s}", "error", "order_changed", "charge_id",
                                 r->charge_id);
        case CHARGE_ANSWER_REFUSED:
                return json_pack("{s:s, s:i, s:s}", "error", "cashpay_refused", "status",
                                 r->cashpay_status, "detail", r->detail);
        case CHARGE_ANSWER_UNAVAILABLE:
                return json_pack("{s:s}", "error", "cashpay_unavailable");
        default:
                return json_pack("{s:s}", "error", "unavailable");
        }
}

int charge_result_json(const struct charge_result *r, const struct charge_order *o, char **ret)
{
        _cleanup_(json_decrefp) json_t *j = NULL;

        if (r->answer == CHARGE_ANSWER_CREATED || r->answer == CHARGE_ANSWER_EXISTS)
                j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s?, s:s?}", "charge_id", r->charge_id,
                              "status", "INITIATED", "order_ref", o->order_ref, "amount",
                              (json_int_t) o->amount, "currency", o->currency,
                              "transaction_url", r->transaction_url, "return_ref",
                              r->return_ref[0] ? r->return_ref : NULL);
        else
                j = error_json(r);
        *ret = j ? json_dumps(j, JSON_COMPACT) : NULL;
        return *ret ? 0 : -ENOMEM;
}
