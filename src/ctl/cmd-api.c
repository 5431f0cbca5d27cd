/*
 * cmd-api — talking to the CashPay API on demand: `api check` (can we get
 * a token and make an authenticated request?), `sync CHARGE_ID…` (fetch
 * these charges now and record what the API says, through the store's one
 * state machine) and `reconcile [--dry-run]` (one sweep of the stale
 * INITIATED orders, as the daemon's reconciler does).
 *
 * The requests go through the daemon's own client (api.h), so both see the
 * API the same way; this file only waits for the results. No token is ever
 * printed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/api.h"
#include "cashpay/reconcile.h"
#include "cashpay/store-api.h"
#include "cashpay/timeutil.h"
#include "src/ctl/ctl.h"
#include "src/ctl/output.h"

/* The id `api check` asks for: valid, and never one CashPay issues. */
#define CHECK_CHARGE_ID "chg_cashpayctl_api_check"
/* Orders one reconcile sweep fetches at most; the next sweep takes the rest. */
#define RECONCILE_SWEEP_MAX 1000

/* One result waited for; the client's thread fills it. */
struct slot {
        char charge_id[CHARGE_ID_MAX + 1];
        enum fetch_reason reason;
        char next_check_at[TIME_ISO_LEN];  /* for the order if still INITIATED, or "" */
        bool done;
        struct api_result res;      /* detail, status, error; charge copied below */
        struct charge charge;       /* owned copy when res.has_charge */
        uint8_t *body;              /* owned copy */
};

struct waitset {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        size_t left;
};

struct slot_ctx {
        struct waitset *w;
        struct slot *slot;
};

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

/* On the client's thread: copy what the callback may not keep, then signal. */
static void on_result(const struct api_result *r, void *userdata)
{
        struct slot_ctx *x = userdata;
        struct slot *s = x->slot;

        s->res = *r;
        s->res.body = NULL;
        s->res.charge = (struct charge) { 0 };
        if (r->body_len && (s->body = malloc(r->body_len)))
                memcpy(s->body, r->body, r->body_len);
        else
                s->res.body_len = 0;
        if (r->has_charge) {
                s->charge = r->charge;
                s->charge.description = dup_or_null(r->charge.description);
                s->charge.transaction_url = dup_or_null(r->charge.transaction_url);
                s->charge.order_ref = dup_or_null(r->charge.order_ref);
        }
        pthread_mutex_lock(&x->w->lock);
        s->done = true;
        x->w->left--;
        pthread_cond_signal(&x->w->cond);
        pthread_mutex_unlock(&x->w->lock);
}

static void slot_clear(struct slot *s)
{
        charge_clear(&s->charge);
        free(s->body);
}

static int start_client(struct ctl *c, struct api_client **ret)
{
        struct api_options o;
        char err[256];
        int r;

        if ((r = ctl_load_config(c)) != 0)
                return r;
        if (!c->cfg->cashpay.api_url)
                return ctl_fail("[cashpay] api_url is not set: cashpayd does not use the API");
        api_options_from_config(c->cfg, &o);
        r = api_client_new(&o, ret, err, sizeof(err));
        return r < 0 ? ctl_fail("cannot use the CashPay API: %s", err) : 0;
}

/* Fetch every slot's charge at once and wait for all of them. */
static int fetch_all(struct api_client *api, struct slot *slots, size_t n)
{
        struct waitset w = { .left = 0 };
        struct slot_ctx *ctx = calloc(n, sizeof(*ctx));
        int r = 0;

        if (!ctx)
                return -ENOMEM;
        pthread_mutex_init(&w.lock, NULL);
        pthread_cond_init(&w.cond, NULL);
        for (size_t i = 0; i < n && r >= 0; i++) {
                ctx[i] = (struct slot_ctx) { .w = &w, .slot = &slots[i] };
                pthread_mutex_lock(&w.lock);
                w.left++;
                pthread_mutex_unlock(&w.lock);
                r = api_fetch_charge(api, slots[i].charge_id, on_result, &ctx[i]);
                if (r < 0) {
                        pthread_mutex_lock(&w.lock);
                        w.left--;
                        pthread_mutex_unlock(&w.lock);
                }
        }
        pthread_mutex_lock(&w.lock);
        while (w.left > 0)
                pthread_cond_wait(&w.cond, &w.lock);
        pthread_mutex_unlock(&w.lock);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        free(ctx);
        return r;
}

/* ---- api check ---- */

static const char *token_source(const struct config *cfg)
{
        return cfg->cashpay.token_file ? "token_file" : "token_url";
}

static void format_expiry(int64_t at_ms, char *buf, size_t len)
{
        if (at_ms == 0)
                snprintf(buf, len, "no token");
        else if (at_ms == INT64_MAX)
                snprintf(buf, len, "as long as the token file says");
        else
                time_format_iso(at_ms, buf);
}

/* Did the request prove the token works? 404 is the expected answer. */
static bool check_passed(const struct api_result *r)
{
        return r->error == 0 && (r->http_status == 404 || r->http_status == 200);
}

static int print_check(struct ctl *c, const struct slot *s, const struct api_stats *st)
{
        char expiry[TIME_ISO_LEN + 40];
        const char *answer = s->res.detail[0] ? s->res.detail : "ok";

        format_expiry(st->token_expires_at_ms, expiry, sizeof(expiry));
        if (c->json)
                return output_json(json_pack("{s:s, s:s, s:b, s:s, s:s, s:i, s:s, s:I, s:b}",
                                             "api_url", c->cfg->cashpay.api_url,
                                             "token_source", token_source(c->cfg),
                                             "token", st->token_expires_at_ms != 0,
                                             "token_expires", expiry,
                                             "token_error", st->token_error,
                                             "http_status", s->res.http_status,
                                             "detail", answer,
                                             "duration_ms", (json_int_t) s->res.duration_ms,
                                             "ok", check_passed(&s->res)),
                                   false);
        printf("api_url        %s\n", c->cfg->cashpay.api_url);
        printf("token from     %s\n", token_source(c->cfg));
        printf("token          %s\n", st->token_expires_at_ms ? "obtained" : "none");
        if (st->token_error[0])
                printf("token error    %s\n", st->token_error);
        printf("token expires  %s\n", expiry);
        printf("request        GET /charges/%s: %s%s (%lld ms)\n", CHECK_CHARGE_ID,
               s->res.http_status ? "" : "no answer: ", s->res.http_status == 404 ?
               "404, as expected for an unknown charge" : answer,
               (long long) s->res.duration_ms);
        printf("result         %s\n", check_passed(&s->res) ? "the API works" :
               "the API cannot be used");
        return output_flush();
}

static int run_check(struct ctl *c)
{
        _cleanup_(api_client_freep) struct api_client *api = NULL;
        struct slot s = { .charge_id = CHECK_CHARGE_ID };
        struct api_stats st;
        int r;

        if ((r = start_client(c, &api)) != 0)
                return r;
        r = fetch_all(api, &s, 1);
        if (r < 0)
                return ctl_fail("cannot ask the API: %s", strerror(-r));
        api_client_stats(api, &st);
        r = print_check(c, &s, &st);
        slot_clear(&s);
        if (r < 0)
                return ctl_printed(r);
        return check_passed(&s.res) ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int ctl_cmd_api(struct ctl *c, int argc, char **argv)
{
        char **pos;
        int r = ctl_parse_options(c, argc, argv, NULL, NULL, NULL);

        if (r != CTL_CONTINUE)
                return r;
        if ((r = ctl_positional(c, argc, argv, 1, &pos)) != CTL_CONTINUE)
                return r;
        if (strcmp(pos[0], "check") != 0)
                return ctl_usage_error(c, "unknown api command '%s' (known: check)", pos[0]);
        return run_check(c);
}

/* ---- sync ---- */

/* What a result comes to in api_fetches. */
static void fetch_from_slot(const struct slot *s, struct api_fetch *f)
{
        *f = (struct api_fetch) { .reason = s->reason };
        snprintf(f->next_check_at, sizeof(f->next_check_at), "%s", s->next_check_at);
        snprintf(f->charge_id, sizeof(f->charge_id), "%s", s->charge_id);
        time_format_iso(time_now_ms() - s->res.duration_ms, f->requested_at);
        f->http_status = s->res.http_status;
        f->has_charge = s->res.has_charge;
        f->charge = s->charge;
        f->body = s->body;
        f->body_len = s->res.body_len;
        f->duration_ms = s->res.duration_ms;
        if (!f->has_charge)
                f->error = s->res.http_status == 404 ? "no such charge at CashPay"
                                                     : s->res.detail;
}

static const char *sync_result(const struct slot *s, const struct api_fetch *f)
{
        if (f->has_charge)
                return outcome_name(f->transition.outcome);
        return s->res.http_status == 404 ? "unknown to CashPay" : "not fetched";
}

static int record_one(struct ctl *c, struct slot *s, struct table *t, json_t *arr)
{
        struct api_fetch f;
        const char *status;
        int r;

        fetch_from_slot(s, &f);
        r = store_record_fetch(c->store, &f);
        if (r < 0)
                return ctl_store_error(c, r, "cannot record the fetch");
        status = f.has_charge ? charge_status_name(f.charge.status) : "-";
        if (arr)
                return json_array_append_new(arr, json_pack(
                        "{s:s, s:i, s:s, s:s, s:s?, s:I}", "charge_id", s->charge_id,
                        "http_status", s->res.http_status, "status", status,
                        "result", sync_result(s, &f),
                        "error", f.has_charge ? NULL : f.error,
                        "fetch_id", (json_int_t) f.id)) < 0 ? -ENOMEM : 0;
        return table_add_row(t, (const char *const[]) {
                s->charge_id, status, sync_result(s, &f), f.has_charge ? "" : f.error,
                NULL });
}

static int print_sync(struct ctl *c, struct slot *slots, size_t n, bool *all_ok)
{
        static const struct column cols[] = {
                { "CHARGE", ALIGN_LEFT, 0, false }, { "STATUS", ALIGN_LEFT, 0, false },
                { "RESULT", ALIGN_LEFT, 0, false }, { "ERROR", ALIGN_LEFT, 0, true },
        };
        _cleanup_(json_decrefp) json_t *arr = c->json ? json_array() : NULL;
        struct table *t = NULL;
        int r = 0;

        if (!c->json)
                t = table_new(cols, 4);
        if (c->json ? !arr : !t)
                return ctl_fail("out of memory");
        *all_ok = true;
        for (size_t i = 0; i < n && r == 0; i++) {
                r = record_one(c, &slots[i], t, arr);
                *all_ok &= slots[i].res.has_charge;
        }
        if (r == 0)
                r = c->json ? output_json(TAKE_PTR(arr), false)
                            : table_print(t, stdout, output_width());
        table_free(t);
        if (r == -ENOMEM)
                return ctl_fail("out of memory");
        return r < 0 ? ctl_printed(r) : r;
}

int ctl_cmd_sync(struct ctl *c, int argc, char **argv)
{
        _cleanup_(api_client_freep) struct api_client *api = NULL;
        struct slot *slots;
        size_t n;
        bool ok = false;
        int r = ctl_parse_options(c, argc, argv, NULL, NULL, NULL);

        if (r != CTL_CONTINUE)
                return r;
        n = (size_t) (argc - optind);
        if (n == 0)
                return ctl_usage_error(c, "sync needs at least one CHARGE_ID");
        for (int i = optind; i < argc; i++)
                if (!charge_id_valid(argv[i]))
                        return ctl_usage_error(c, "'%s' is not a charge id", argv[i]);
        if ((r = ctl_open_store(c, CTL_STORE_WRITE)) != 0 || (r = start_client(c, &api)) != 0)
                return r;
        slots = calloc(n, sizeof(*slots));
        if (!slots)
                return ctl_fail("out of memory");
        for (size_t i = 0; i < n; i++) {
                snprintf(slots[i].charge_id, sizeof(slots[i].charge_id), "%s", argv[optind + i]);
                slots[i].reason = FETCH_MANUAL;
        }
        r = fetch_all(api, slots, n);
        if (r == 0)
                r = print_sync(c, slots, n, &ok);
        else
                r = ctl_fail("cannot ask the API: %s", strerror(-r));
        for (size_t i = 0; i < n; i++)
                slot_clear(&slots[i]);
        free(slots);
        return r != 0 ? r : ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

/* ---- reconcile ---- */

static int reconcile_option(struct ctl *c, int opt, void *ctx)
{
        if (opt != OPT_COMMAND)
                return ctl_common_option(c, opt);
        *(bool *) ctx = true;
        return CTL_CONTINUE;
}

static int print_due(struct ctl *c, const struct due_order *due, size_t n, int64_t total)
{
        static const struct column cols[] = {
                { "CHARGE", ALIGN_LEFT, 0, false }, { "FIRST_SEEN", ALIGN_LEFT, 0, false },
                { "NEXT_CHECK", ALIGN_LEFT, 0, false },
        };
        _cleanup_(json_decrefp) json_t *arr = c->json ? json_array() : NULL;
        struct table *t = c->json ? NULL : table_new(cols, 3);
        int r = 0;

        if (c->json ? !arr : !t)
                return ctl_fail("out of memory");
        for (size_t i = 0; i < n && r == 0; i++) {
                const char *next = due[i].next_check_at[0] ? due[i].next_check_at : "never checked";

                if (arr)
                        r = json_array_append_new(arr, json_pack("{s:s, s:s, s:s}",
                                "charge_id", due[i].charge_id, "first_seen_at",
                                due[i].first_seen_at, "next_check_at", next)) < 0 ? -ENOMEM : 0;
                else
                        r = table_add_row(t, (const char *const[]) { due[i].charge_id,
                                          due[i].first_seen_at, next });
        }
        if (r == 0 && arr)
                r = output_json(json_pack("{s:b, s:I, s:o}", "dry_run", true, "due",
                                          (json_int_t) total, "orders", TAKE_PTR(arr)), false);
        else if (r == 0)
                r = table_print(t, stdout, output_width());
        if (r == 0 && !c->json)
                printf("%lld INITIATED orders due for a fetch (nothing fetched: --dry-run)\n",
                       (long long) total);
        table_free(t);
        return r == -ENOMEM ? ctl_fail("out of memory") : r < 0 ? ctl_printed(r) : 0;
}

static int sweep(struct ctl *c, const struct due_order *due, size_t n)
{
        _cleanup_(api_client_freep) struct api_client *api = NULL;
        struct slot *slots = calloc(n ? n : 1, sizeof(*slots));
        bool ok = true;
        int r;

        if (!slots)
                return ctl_fail("out of memory");
        r = start_client(c, &api);
        for (size_t i = 0; i < n && r == 0; i++) {
                int64_t seen, claimed;

                snprintf(slots[i].charge_id, sizeof(slots[i].charge_id), "%s", due[i].charge_id);
                slots[i].reason = FETCH_RECONCILE;
                if (time_parse_iso(due[i].first_seen_at, &seen) < 0)
                        seen = time_now_ms();
                if (!due[i].claimed_at[0] || time_parse_iso(due[i].claimed_at, &claimed) < 0)
                        claimed = -1;
                time_format_iso(reconcile_plan_ms(seen, claimed, time_now_ms(),
                                                  c->cfg->cashpay.reconcile_after),
                                slots[i].next_check_at);
        }
        if (r == 0 && fetch_all(api, slots, n) < 0)
                r = ctl_fail("out of memory");
        if (r == 0)
                r = print_sync(c, slots, n, &ok);
        for (size_t i = 0; i < n; i++)
                slot_clear(&slots[i]);
        free(slots);
        return r != 0 ? r : ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int ctl_cmd_reconcile(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "dry-run", no_argument, NULL, OPT_COMMAND },
                { NULL, 0, NULL, 0 }
        };
        char now[TIME_ISO_LEN], untouched[TIME_ISO_LEN], given_up[TIME_ISO_LEN];
        _cleanup_(freep) struct due_order *due = NULL;
        struct api_options o;
        bool dry_run = false;
        int64_t total = 0, now_ms = time_now_ms(), lease_ms;
        size_t n = 0;
        int r = ctl_parse_options(c, argc, argv, opts, reconcile_option, &dry_run);

        if (r != CTL_CONTINUE || (r = ctl_positional(c, argc, argv, 0, NULL)) != CTL_CONTINUE)
                return r;
        if ((r = ctl_open_store(c, dry_run ? CTL_STORE_READ : CTL_STORE_WRITE)) != 0)
                return r;
        if (!c->cfg->cashpay.api_url)
                return ctl_fail("[cashpay] api_url is not set: cashpayd does not use the API");
        /* There the list is a claim (shared out among instances): no dry run. */
        if (dry_run && c->cfg->database.backend == DB_BACKEND_POSTGRESQL)
                return ctl_fail("reconcile --dry-run is not available with [database] backend "
                                "= postgresql: listing the due orders claims them");
        due = calloc(RECONCILE_SWEEP_MAX, sizeof(*due));
        if (!due)
                return ctl_fail("out of memory");
        time_format_iso(now_ms, now);
        reconcile_cutoffs(now_ms, c->cfg->cashpay.reconcile_after, c->cfg->cashpay.reconcile_for,
                          untouched, given_up);
        api_options_from_config(c->cfg, &o);
        lease_ms = reconcile_lease_ms(&o, RECONCILE_SWEEP_MAX, c->cfg->database.commit_timeout);
        r = store_due_orders(c->store, now, untouched, given_up, lease_ms, due,
                             RECONCILE_SWEEP_MAX, &n);
        if (r >= 0)
                r = store_count_due(c->store, now, untouched, given_up, &total);
        if (r < 0)
                return ctl_store_error(c, r, "cannot list the orders due");
        return dry_run ? print_due(c, due, n, total) : sweep(c, due, n);
}
