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
#include "cashpay/charge-create.h"
#include "cashpay/checkout.h"
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

/* Step 2 of the creation waits here: the client's thread signals. */
struct wait {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool done;
};

static void on_sent(void *data)
{
        struct wait *w = data;

        pthread_mutex_lock(&w->lock);
        w->done = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

static int print_charge(struct ctl *c, const struct charge_order *o,
                        const struct charge_result *res)
{
        bool created = res->answer == CHARGE_ANSWER_CREATED;

        if (c->json)
                return ctl_printed(output_json(json_pack(
                        "{s:s, s:s, s:s, s:I, s:s, s:s?, s:s?, s:b}", "charge_id", res->charge_id,
                        "status", "INITIATED", "order_ref", o->order_ref,
                        "amount", (json_int_t) o->amount, "currency", o->currency,
                        "transaction_url", res->transaction_url,
                        "return_ref", res->return_ref[0] ? res->return_ref : NULL,
                        "created", created), false));
        printf("%s %s\n", created ? "created" : "already there:", res->charge_id);
        printf("transaction_url %s\n", res->transaction_url ? res->transaction_url : "-");
        return ctl_printed(output_flush());
}

/* The result, as the operator reads it. */
static int report(struct ctl *c, const struct charge_order *o, const struct charge_result *res)
{
        switch (res->answer) {
        case CHARGE_ANSWER_CREATED:
        case CHARGE_ANSWER_EXISTS:
                return print_charge(c, o, res);
        case CHARGE_ANSWER_ALREADY_PAID:
                return ctl_fail("order_ref %s is already paid (charge %s)", o->order_ref,
                                res->charge_id);
        case CHARGE_ANSWER_ORDER_CHANGED:
                if (!res->charge_id[0])
                        return ctl_fail("order_ref %s has a creation with other terms still "
                                        "pending; retry it with those terms", o->order_ref);
                return ctl_fail("order_ref %s has an unpaid charge %s with another amount or "
                                "currency", o->order_ref, res->charge_id);
        case CHARGE_ANSWER_REFUSED:
                return ctl_fail("CashPay refused the charge (%d): %s", res->cashpay_status,
                                res->detail);
        case CHARGE_ANSWER_UNAVAILABLE:
                return ctl_fail("CashPay could not be asked (%s); run the same command again: "
                                "it sends the same Idempotency-Key", res->detail);
        case CHARGE_ANSWER_STORE_FAILED:
                return ctl_store_error(c, res->store_error, "cannot record the charge");
        }
        return ctl_fail("unexpected result");
}

static int send_and_wait(struct ctl *c, struct charge_create *cc)
{
        _cleanup_(api_client_freep) struct api_client *api = NULL;
        struct wait w = { .done = false };
        struct api_options opts;
        char err[256];
        int r;

        api_options_from_config(c->cfg, &opts);
        r = api_client_new(&opts, &api, err, sizeof(err));
        if (r < 0)
                return ctl_fail("cannot use the CashPay API: %s", err);
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.cond, NULL);
        r = charge_create_send(cc, api, on_sent, &w);
        pthread_mutex_lock(&w.lock);
        while (r == 0 && !w.done)
                pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        return r;
}

/* Plan, send, settle (charge-create.h), each step here in turn. */
static int create(struct ctl *c, const struct create_options *o)
{
        const struct config *cfg = c->cfg;
        const struct charge_order order = {
                .order_ref = o->order_ref, .amount = o->amount, .currency = o->currency,
                .description = o->description,
        };
        const struct charge_urls urls = {
                .public_url = cfg->cashpay.public_url, .webhook_path = cfg->http.webhook_path,
                .return_path = cfg->http.return_path,
                .order_ref_field = cfg->webhook.order_ref_field,
                .reconcile_after = cfg->cashpay.reconcile_after,
        };
        _cleanup_(charge_create_freep) struct charge_create *cc = NULL;
        int r = charge_create_new(&order, &urls, &cc);

        if (r < 0)
                return ctl_fail("cannot prepare the request: %s", strerror(-r));
        if (charge_create_plan(cc, c->store, time_now_ms())) {
                r = send_and_wait(c, cc);
                if (r > 0)
                        return r; /* reported already */
                if (r == 0) /* else the result says why nothing was sent */
                        charge_create_settle(cc, c->store, time_now_ms());
        }
        return report(c, charge_create_order(cc), charge_create_result(cc));
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
