/*
 * cmd-charge — `charge create`: what POST /charges on the checkout listener
 * does (CONTRACT §8.3), from the command line. The request is recorded in
 * charge_requests before it is sent; a retry after CashPay could not be
 * reached sends the same Idempotency-Key; a created charge becomes an
 * INITIATED order with its order_ref, return_ref and a "checkout" event
 * before anything is printed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/api.h"
#include "cashpay/checkout.h"
#include "cashpay/store-api.h"
#include "cashpay/timeutil.h"
#include "src/ctl/ctl.h"
#include "src/ctl/output.h"

struct create_options {
        const char *order_ref;
        long long amount;
        const char *currency;
        const char *description;
};

enum { OPT_ORDER_REF = OPT_COMMAND, OPT_AMOUNT, OPT_CURRENCY, OPT_DESCRIPTION };

static int create_option(struct ctl *c, int opt, void *ctx)
{
        struct create_options *o = ctx;
        unsigned long long v;

        switch (opt) {
        case OPT_ORDER_REF:
                o->order_ref = optarg;
                return CTL_CONTINUE;
        case OPT_AMOUNT:
                if (ctl_parse_uint(optarg, 1, 9007199254740991ULL, &v) < 0)
                        return ctl_usage_error(c, "--amount needs 1 to 9007199254740991, not "
                                               "'%s'", optarg);
                o->amount = (long long) v;
                return CTL_CONTINUE;
        case OPT_CURRENCY:
                o->currency = optarg;
                return CTL_CONTINUE;
        case OPT_DESCRIPTION:
                o->description = optarg;
                return CTL_CONTINUE;
        default:
                return ctl_common_option(c, opt);
        }
}

/* The answer of the one POST, copied off the client's thread. */
struct answer {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
        struct api_result res;
        struct charge charge;
};

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

static void on_created(const struct api_result *r, void *userdata)
{
        struct answer *a = userdata;

        pthread_mutex_lock(&a->lock);
        a->res = *r;
        a->res.body = NULL;
        a->res.charge = (struct charge) { 0 };
        if (r->has_charge) {
                a->charge = r->charge;
                a->charge.description = dup_or_null(r->charge.description);
                a->charge.transaction_url = dup_or_null(r->charge.transaction_url);
                a->charge.order_ref = NULL;
                if (!a->charge.transaction_url)
                        a->res.has_charge = false; /* out of memory: not a usable answer */
        }
        a->done = true;
        pthread_cond_signal(&a->cond);
        pthread_mutex_unlock(&a->lock);
}

static int print_charge(struct ctl *c, const struct create_options *o, const char *charge_id,
                        const char *url, const char *return_ref, bool created)
{
        if (c->json)
                return ctl_printed(output_json(json_pack(
                        "{s:s, s:s, s:s, s:I, s:s, s:s?, s:s?, s:b}", "charge_id", charge_id,
                        "status", "INITIATED", "order_ref", o->order_ref,
                        "amount", (json_int_t) o->amount, "currency", o->currency,
                        "transaction_url", url, "return_ref", return_ref[0] ? return_ref : NULL,
                        "created", created), false));
        printf("%s %s\n", created ? "created" : "already there:", charge_id);
        printf("transaction_url %s\n", url ? url : "-");
        return ctl_printed(output_flush());
}

/* A verdict that needs no request. */
static int answer_from_plan(struct ctl *c, const struct create_options *o,
                            const struct charge_plan *p)
{
        switch (p->verdict) {
        case CHARGE_EXISTS:
                return print_charge(c, o, p->charge_id, p->transaction_url, p->return_ref, false);
        case CHARGE_ALREADY_PAID:
                return ctl_fail("order_ref %s is already paid (charge %s)", o->order_ref,
                                p->charge_id);
        case CHARGE_ORDER_CHANGED:
                if (!p->charge_id[0])
                        return ctl_fail("order_ref %s has a creation with other terms still "
                                        "pending; retry it with those terms", o->order_ref);
                return ctl_fail("order_ref %s has an unpaid charge %s with another amount or "
                                "currency", o->order_ref, p->charge_id);
        case CHARGE_SEND:
                break;
        }
        return CTL_CONTINUE;
}

static int build_body(struct ctl *c, const struct create_options *o, const struct charge_plan *p,
                      char **ret)
{
        const struct config *cfg = c->cfg;
        _cleanup_(freep) char *post = NULL, *redirect = NULL;

        if (asprintf(&post, "%s%s", cfg->cashpay.public_url, cfg->http.webhook_path) < 0 ||
            asprintf(&redirect, "%s%s?ref=%s", cfg->cashpay.public_url, cfg->http.return_path,
                     p->return_ref) < 0) {
                post = redirect = NULL;
                return -ENOMEM;
        }
        return checkout_charge_body(o->order_ref, o->amount, o->currency, o->description, post,
                                    redirect, cfg->webhook.order_ref_field, ret);
}

static int send_request(struct ctl *c, const char *body, const char *key, struct answer *a)
{
        _cleanup_(api_client_freep) struct api_client *api = NULL;
        struct api_options opts;
        char err[256];
        int r;

        api_options_from_config(c->cfg, &opts);
        r = api_client_new(&opts, &api, err, sizeof(err));
        if (r < 0)
                return ctl_fail("cannot use the CashPay API: %s", err);
        r = api_create_charge(api, body, key, on_created, a);
        if (r < 0)
                return ctl_fail("cannot ask CashPay: %s", strerror(-r));
        pthread_mutex_lock(&a->lock);
        while (!a->done)
                pthread_cond_wait(&a->cond, &a->lock);
        pthread_mutex_unlock(&a->lock);
        return 0;
}

/* What CashPay answered, recorded before it is reported. */
static int settle(struct ctl *c, const struct create_options *o, const struct charge_plan *p,
                  struct answer *a)
{
        char now[TIME_ISO_LEN], next[TIME_ISO_LEN];
        const struct api_result *res = &a->res;
        bool refused;
        int r;

        time_format_iso(time_now_ms(), now);
        if (res->has_charge) {
                time_format_iso(time_now_ms() + (int64_t) c->cfg->cashpay.reconcile_after * 1000,
                                next);
                r = store_charge_created(c->store, p->request_id, &a->charge, res->http_status,
                                         now, next);
                if (r == -EINVAL)
                        r = store_charge_attempt(c->store, p->request_id, false,
                                                 res->http_status, "CashPay answered with "
                                                 "another charge than asked for", now);
                if (r < 0)
                        return ctl_store_error(c, r, "cannot record the charge");
                if (a->charge.status != CHARGE_INITIATED || a->charge.amount != o->amount ||
                    strcmp(a->charge.currency, o->currency) != 0)
                        return ctl_fail("CashPay answered with another charge than asked for "
                                        "(%s); the request stays pending", a->charge.id);
                return print_charge(c, o, a->charge.id, a->charge.transaction_url, p->return_ref,
                                    true);
        }
        /* a 4xx is CashPay's no; anything else may still have created it */
        refused = res->error == 0 && res->http_status >= 400 && res->http_status < 500;
        r = store_charge_attempt(c->store, p->request_id, refused, res->http_status,
                                 res->detail, now);
        if (r < 0)
                return ctl_store_error(c, r, "cannot record the attempt");
        if (refused)
                return ctl_fail("CashPay refused the charge (%d): %s", res->http_status,
                                res->detail);
        return ctl_fail("CashPay could not be asked (%s); run the same command again: it sends "
                        "the same Idempotency-Key", res->detail);
}

static int create(struct ctl *c, const struct create_options *o)
{
        char key[CHECKOUT_KEY_MAX + 1], rref[CHECKOUT_KEY_MAX + 1];
        struct answer a = { .done = false };
        _cleanup_(freep) char *body = NULL;
        struct charge_plan p;
        struct charge_ask ask = {
                .order_ref = o->order_ref, .amount = o->amount, .description = o->description,
                .new_idempotency_key = key, .new_return_ref = rref,
        };
        int r;

        if (checkout_random_key("cpd_", 16, key, sizeof(key)) < 0 ||
            checkout_random_key("", 16, rref, sizeof(rref)) < 0)
                return ctl_fail("no randomness for the keys");
        snprintf(ask.currency, sizeof(ask.currency), "%s", o->currency);
        time_format_iso(time_now_ms(), ask.now);
        r = store_charge_plan(c->store, &ask, &p);
        if (r < 0)
                return ctl_store_error(c, r, "cannot record the request");
        r = answer_from_plan(c, o, &p);
        if (r == CTL_CONTINUE)
                r = build_body(c, o, &p, &body) < 0 ? ctl_fail("cannot build the request") : 0;
        pthread_mutex_init(&a.lock, NULL);
        pthread_cond_init(&a.cond, NULL);
        if (r == 0 && p.verdict == CHARGE_SEND)
                r = send_request(c, body, p.idempotency_key, &a);
        if (r == 0 && p.verdict == CHARGE_SEND)
                r = settle(c, o, &p, &a);
        charge_clear(&a.charge);
        pthread_cond_destroy(&a.cond);
        pthread_mutex_destroy(&a.lock);
        charge_plan_clear(&p);
        return r;
}

int ctl_cmd_charge(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "order-ref", required_argument, NULL, OPT_ORDER_REF },
                { "amount", required_argument, NULL, OPT_AMOUNT },
                { "currency", required_argument, NULL, OPT_CURRENCY },
                { "description", required_argument, NULL, OPT_DESCRIPTION },
                { NULL, 0, NULL, 0 }
        };
        struct create_options o = { 0 };
        char detail[160];
        int r;

        /* "create" comes before its options: parse what follows it */
        if (argc < 2 || argv[1][0] == '-') {
                r = ctl_parse_options(c, argc, argv, opts, create_option, &o);
                return r != CTL_CONTINUE ? r : ctl_usage_error(c, "charge needs a command: "
                                                               "create");
        }
        if (strcmp(argv[1], "create") != 0)
                return ctl_usage_error(c, "unknown charge command '%s' (known: create)", argv[1]);
        r = ctl_parse_options(c, argc - 1, argv + 1, opts, create_option, &o);
        if (r != CTL_CONTINUE || (r = ctl_positional(c, argc - 1, argv + 1, 0, NULL)) != CTL_CONTINUE)
                return r;
        if (!o.order_ref || !o.amount || !o.currency)
                return ctl_usage_error(c, "charge create needs --order-ref, --amount and "
                                       "--currency");
        if (checkout_validate(o.order_ref, o.amount, o.currency, o.description, detail,
                              sizeof(detail)) < 0)
                return ctl_usage_error(c, "%s", detail);
        if ((r = ctl_open_store(c, CTL_STORE_WRITE)) != 0)
                return r;
        if (!c->cfg->cashpay.api_url || !c->cfg->cashpay.public_url)
                return ctl_fail("[cashpay] api_url and public_url are needed to create charges");
        return create(c, &o);
}
