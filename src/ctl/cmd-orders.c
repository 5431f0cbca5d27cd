/*
 * cmd-orders — the commands over orders and their history: orders, show,
 * deliveries, events (the change feed, optionally followed), fulfil and
 * review-done. The queries themselves live in the store (store-admin.h);
 * this file parses options and presents the results.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cashpay/store-admin.h"
#include "cashpay/timeutil.h"
#include "src/ctl/ctl.h"
#include "src/ctl/output.h"

#define DEFAULT_LIMIT 50
#define FOLLOW_INTERVAL_MS 200    /* polling: SQLite, or a server that refused LISTEN */
#define FOLLOW_FALLBACK_MS 5000   /* with LISTEN: read anyway this often */
#define FOLLOW_MIN_GAP_MS 20      /* with LISTEN: no two reads closer than this */
#define EVENTS_BATCH 500

static bool minor_units(const struct ctl *c)
{
        return c->cfg && c->cfg->ret.minor_units;
}

/* Parses --limit's argument into @ret; exit code or CTL_CONTINUE. */
static int parse_limit(struct ctl *c, unsigned *ret)
{
        unsigned long long v;

        if (ctl_parse_uint(optarg, 0, 1000000000, &v) < 0)
                return ctl_usage_error(c, "--limit needs a number, not '%s'", optarg);
        *ret = (unsigned) v;
        return CTL_CONTINUE;
}

/* ctl_open_store() as CTL_CONTINUE or the exit code to leave with. */
static int open_store(struct ctl *c, enum ctl_store_mode mode)
{
        int r = ctl_open_store(c, mode);

        return r != 0 ? r : CTL_CONTINUE;
}

/* The start of orders, deliveries and events: their options, no arguments,
 * the store opened to read. CTL_CONTINUE or the exit code to leave with. */
static int start_listing(struct ctl *c, int argc, char **argv, const struct option *opts,
                         ctl_option_fn *option, void *ctx)
{
        int r;

        if ((r = ctl_parse_options(c, argc, argv, opts, option, ctx)) != CTL_CONTINUE ||
            (r = ctl_positional(c, argc, argv, 0, NULL)) != CTL_CONTINUE)
                return r;
        return open_store(c, CTL_STORE_READ);
}

/* The start of show, fulfil and review-done: the common options, one
 * CHARGE_ID (into @ret), the store opened in @mode. */
static int start_on_charge(struct ctl *c, int argc, char **argv, enum ctl_store_mode mode,
                           const char **ret)
{
        char **args;
        int r;

        if ((r = ctl_parse_options(c, argc, argv, NULL, NULL, NULL)) != CTL_CONTINUE ||
            (r = ctl_positional(c, argc, argv, 1, &args)) != CTL_CONTINUE)
                return r;
        if (!charge_id_valid(args[0]))
                return ctl_usage_error(c, "'%s' is not a charge id (chg_ followed by "
                                       "letters, digits, '_' or '-')", args[0]);
        *ret = args[0];
        return open_store(c, mode);
}

/*
 * JSON arrays of records: NULL when out of memory, never a shorter array.
 * Used with json_pack's "o", which fails on NULL (where "o*" would drop the
 * key and print a well-formed, wrong document).
 */
static json_t *json_records(const void *items, size_t n, size_t size,
                            json_t *(*one)(const void *item, bool with_body), bool with_body)
{
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < n; i++)
                if (json_array_append_new(arr, one((const char *) items + i * size, with_body)) < 0) {
                        json_decref(arr);
                        return NULL;
                }
        return arr;
}

static json_t *one_order(const void *item, bool with_body)
{
        return json_order(item);
}

static json_t *one_event(const void *item, bool with_body)
{
        return json_event(item);
}

static json_t *one_delivery(const void *item, bool with_body)
{
        return json_delivery(item, with_body);
}

static json_t *json_orders(const struct order_list *l)
{
        return json_records(l->items, l->n, sizeof(l->items[0]), one_order, false);
}

static json_t *json_events(const struct event_list *l)
{
        return json_records(l->items, l->n, sizeof(l->items[0]), one_event, false);
}

static json_t *json_deliveries(const struct delivery_list *l, bool with_body)
{
        return json_records(l->items, l->n, sizeof(l->items[0]), one_delivery, with_body);
}

/* ---- orders ---- */

static const char *order_note(const struct order_record *o)
{
        if (o->needs_review)
                return "review";
        if (o->fulfilled_at[0])
                return "fulfilled";
        return o->status == CHARGE_CAPTURED ? "to fulfil" : "";
}

static int print_orders(const struct ctl *c, const struct order_list *l)
{
        static const struct column cols[] = {
                { "CHARGE_ID", ALIGN_LEFT, 12, true },
                { "STATUS", ALIGN_LEFT, 0, false },
                { "AMOUNT", ALIGN_RIGHT, 0, false },
                { "ORDER_REF", ALIGN_LEFT, 6, true },
                { "UPDATED_AT (UTC)", ALIGN_LEFT, 0, false },
                { "NOTE", ALIGN_LEFT, 0, false },
        };
        struct table *t = table_new(cols, 6);
        char amount[64], updated[TIME_ISO_LEN];
        int r = t ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < l->n; i++) {
                const struct order_record *o = &l->items[i];
                output_amount(o->amount, o->currency, minor_units(c), amount, sizeof(amount));
                output_time_short(o->updated_at, updated, sizeof(updated));
                r = table_add_row(t, (const char *[]) { o->charge_id, charge_status_name(o->status),
                                  amount, o->order_ref, updated, order_note(o) });
        }
        if (r == 0)
                r = table_print(t, stdout, output_width());
        table_free(t);
        return r;
}

static int orders_option(struct ctl *c, int opt, void *ctx)
{
        struct order_filter *f = ctx;

        switch (opt) {
        case OPT_COMMAND:
                if (charge_status_from_name(optarg, &f->status) < 0)
                        return ctl_usage_error(c, "--status must be INITIATED, CAPTURED or "
                                               "FAILED, not '%s'", optarg);
                f->has_status = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 1:
                f->unfulfilled = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 2:
                f->review = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 3:
                return parse_limit(c, &f->limit);
        default:
                return ctl_common_option(c, opt);
        }
}

int ctl_cmd_orders(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "status", required_argument, NULL, OPT_COMMAND },
                { "unfulfilled", no_argument, NULL, OPT_COMMAND + 1 },
                { "review", no_argument, NULL, OPT_COMMAND + 2 },
                { "limit", required_argument, NULL, OPT_COMMAND + 3 },
                { NULL, 0, NULL, 0 }
        };
        struct order_filter f = { .limit = DEFAULT_LIMIT };
        struct order_list l;
        int r;

        if ((r = start_listing(c, argc, argv, opts, orders_option, &f)) != CTL_CONTINUE)
                return r;
        r = store_admin_list_orders(c->store, &f, &l);
        if (r < 0)
                return ctl_store_error(c, r, "cannot list orders");
        if (c->json)
                r = output_json(json_pack("{s:o}", "orders", json_orders(&l)), false);
        else
                r = print_orders(c, &l);
        order_list_clear(&l);
        return ctl_printed(r);
}

/* ---- deliveries ---- */

static int print_deliveries(const struct delivery_list *l, FILE *f)
{
        static const struct column cols[] = {
                { "ID", ALIGN_RIGHT, 0, false },
                { "RECEIVED_AT (UTC)", ALIGN_LEFT, 0, false },
                { "REMOTE", ALIGN_LEFT, 9, true },
                { "CHARGE_ID", ALIGN_LEFT, 12, true },
                { "STATUS", ALIGN_LEFT, 6, true },
                { "OUTCOME", ALIGN_LEFT, 0, false },
                { "ERROR", ALIGN_LEFT, 5, true },
        };
        struct table *t = table_new(cols, 7);
        char id[24], received[TIME_ISO_LEN];
        int r = t ? 0 : -ENOMEM;

        for (size_t i = 0; r == 0 && i < l->n; i++) {
                const struct delivery_record *d = &l->items[i];
                snprintf(id, sizeof(id), "%lld", (long long) d->id);
                output_time_short(d->received_at, received, sizeof(received));
                r = table_add_row(t, (const char *[]) { id, received, d->remote_addr, d->charge_id,
                                  d->claimed_status, outcome_name(d->outcome), d->error });
        }
        if (r == 0)
                r = table_print(t, f, output_width());
        table_free(t);
        return r;
}

static int deliveries_option(struct ctl *c, int opt, void *ctx)
{
        struct delivery_filter *f = ctx;

        switch (opt) {
        case OPT_COMMAND:
                if (outcome_from_name(optarg, &f->outcome) < 0)
                        return ctl_usage_error(c, "--outcome must be applied, duplicate, stale, "
                                               "conflict, invalid, unauthorized or forbidden, "
                                               "not '%s'", optarg);
                f->has_outcome = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 1:
                return parse_limit(c, &f->limit);
        default:
                return ctl_common_option(c, opt);
        }
}

int ctl_cmd_deliveries(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "outcome", required_argument, NULL, OPT_COMMAND },
                { "limit", required_argument, NULL, OPT_COMMAND + 1 },
                { NULL, 0, NULL, 0 }
        };
        struct delivery_filter f = { .limit = DEFAULT_LIMIT };
        struct delivery_list l;
        int r;

        if ((r = start_listing(c, argc, argv, opts, deliveries_option, &f)) != CTL_CONTINUE)
                return r;
        r = store_admin_list_deliveries(c->store, &f, &l);
        if (r < 0)
                return ctl_store_error(c, r, "cannot list deliveries");
        if (c->json)
                r = output_json(json_pack("{s:o}", "deliveries", json_deliveries(&l, false)), false);
        else
                r = print_deliveries(&l, stdout);
        delivery_list_clear(&l);
        return ctl_printed(r);
}

/* ---- events ---- */

#define EVENT_ID_WIDTH 8
#define EVENT_TIME_WIDTH 20
#define EVENT_STATUS_WIDTH 9

static const struct column event_cols[] = {
        { "ID", ALIGN_RIGHT, EVENT_ID_WIDTH, false },
        { "RECORDED_AT (UTC)", ALIGN_LEFT, EVENT_TIME_WIDTH, false },
        { "FROM", ALIGN_LEFT, EVENT_STATUS_WIDTH, false },
        { "TO", ALIGN_LEFT, EVENT_STATUS_WIDTH, false },
        { "CHARGE_ID", ALIGN_LEFT, 0, false },
};

/* Events stream out as they are read, so their columns have fixed widths:
 * the charge id gets what the terminal has left. */
static void print_event_cells(const char *const *cells)
{
        size_t used = 0, rest;

        for (size_t i = 0; i < 4; i++) {
                output_cell(stdout, cells[i], event_cols[i].min_width, event_cols[i].align);
                fputs("  ", stdout);
                used += event_cols[i].min_width + 2;
        }
        rest = output_width() > used + 12 ? output_width() - used : 12;
        output_text(stdout, cells[4], rest);
        fputc('\n', stdout);
}

static void print_event_header(void)
{
        const char *cells[5];

        for (size_t i = 0; i < 5; i++)
                cells[i] = event_cols[i].header;
        print_event_cells(cells);
}

static void print_event(const struct event_record *e)
{
        char id[24], when[TIME_ISO_LEN];

        snprintf(id, sizeof(id), "%lld", (long long) e->id);
        output_time_short(e->recorded_at, when, sizeof(when));
        print_event_cells((const char *[]) { id, when,
                          e->has_from ? charge_status_name(e->from_status) : "-",
                          charge_status_name(e->to_status), e->charge_id });
}

struct feed {
        int64_t after;
        const char *charge_id;
        bool follow;
        bool listening;     /* following woken by the store (PostgreSQL's LISTEN) */
        bool lost;          /* following through an outage, said once on stderr */
        int64_t read_at;    /* monotonic ms of the last read */
        json_t *collected;  /* --json without --follow: the one document's array */
};

static volatile sig_atomic_t feed_stop;

static void feed_signal(int sig)
{
        feed_stop = 1;
}

/* SIGINT/SIGTERM end the follow loop; no SA_RESTART, so sleeps return early. */
static void feed_install_signals(void)
{
        struct sigaction sa = { .sa_handler = feed_signal };

        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
}

/* Sleeps @ms with @sigmask in place; a signal ends it early. */
static void sleep_ms(unsigned ms, const sigset_t *sigmask)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        ppoll(NULL, 0, &ts, sigmask);
}

/* Prints one batch; returns 0 or a negative errno from writing. */
static int feed_emit(struct feed *fd, const struct event_list *l, bool json)
{
        int r = 0;

        for (size_t i = 0; r == 0 && i < l->n; i++) {
                fd->after = l->items[i].id;
                if (fd->collected)
                        r = json_array_append_new(fd->collected, json_event(&l->items[i]))
                            < 0 ? -ENOMEM : 0;
                else if (json)
                        r = output_json(json_event(&l->items[i]), true);
                else
                        print_event(&l->items[i]);
        }
        return r < 0 ? r : output_flush();
}

/* Following, a lock (SQLite) or a lost connection (PostgreSQL) is
 * transient: nothing new this time. The outage is said once, and its end. */
static bool feed_transient(struct ctl *c, struct feed *fd, int r)
{
        if (!fd->follow || (r != -EBUSY && r != -ECONNRESET))
                return false;
        if (r == -ECONNRESET && !fd->lost)
                ctl_store_error(c, r, "cannot read events (trying again)");
        fd->lost = fd->lost || r == -ECONNRESET;
        return true;
}

/* One poll: read and print what is new. Returns the number of events, or a
 * negative errno (reported, but for -EPIPE). */
static int feed_poll(struct ctl *c, struct feed *fd)
{
        struct event_list l;
        int r;

        fd->read_at = time_monotonic_ms();
        r = store_admin_list_events(c->store, fd->after, fd->charge_id, EVENTS_BATCH, &l);
        if (r < 0 && feed_transient(c, fd, r))
                return 0;
        if (r < 0) {
                ctl_store_error(c, r, "cannot read events");
                return r;
        }
        if (fd->lost) {
                fprintf(stderr, "cashpayctl: reading events again after event %lld\n",
                        (long long) fd->after);
                fd->lost = false;
        }
        r = feed_emit(fd, &l, c->json);
        if (r < 0 && r != -EPIPE)
                ctl_printed(r);
        if (r == 0)
                r = (int) l.n;
        event_list_clear(&l);
        return r;
}

/* Until there may be more to read: woken by the store, or after a pause.
 * SIGINT and SIGTERM are blocked from the check of feed_stop until the
 * wait has them unblocked again, so one arriving in between still ends it.
 * Under a steady load every commit notifies: a read at most every
 * FOLLOW_MIN_GAP_MS takes what several commits wrote at once, and keeps
 * the follower's share of the server near a poller's. */
static void feed_wait(struct ctl *c, struct feed *fd)
{
        sigset_t ending, old;
        int r = -EOPNOTSUPP;

        sigemptyset(&ending);
        sigaddset(&ending, SIGINT);
        sigaddset(&ending, SIGTERM);
        sigprocmask(SIG_BLOCK, &ending, &old);
        if (!feed_stop && fd->listening)
                r = store_admin_wait_events(c->store, FOLLOW_FALLBACK_MS, &old);
        int64_t since = time_monotonic_ms() - fd->read_at;
        if (!feed_stop && r == 1 && since < FOLLOW_MIN_GAP_MS)
                sleep_ms((unsigned) (FOLLOW_MIN_GAP_MS - since), &old);
        if (!feed_stop && r == -EOPNOTSUPP)
                sleep_ms(FOLLOW_INTERVAL_MS, &old);
        sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Runs until the feed is drained (or, following, until a signal or EPIPE). */
static int feed_run(struct ctl *c, struct feed *fd)
{
        int n;

        for (;;) {
                if (feed_stop)
                        return CTL_EXIT_OK;
                n = feed_poll(c, fd);
                if (n == -EPIPE)
                        return CTL_EXIT_OK;  /* the reader is gone: nothing left to do */
                if (n < 0)
                        return CTL_EXIT_FAIL;
                if (n == EVENTS_BATCH)
                        continue;
                if (!fd->follow)
                        return CTL_EXIT_OK;
                feed_wait(c, fd);
        }
}

static int events_option(struct ctl *c, int opt, void *ctx)
{
        struct feed *fd = ctx;
        unsigned long long v;

        switch (opt) {
        case OPT_COMMAND:
                if (ctl_parse_uint(optarg, 0, INT64_MAX, &v) < 0)
                        return ctl_usage_error(c, "--after needs an event id, not '%s'", optarg);
                fd->after = (int64_t) v;
                return CTL_CONTINUE;
        case OPT_COMMAND + 1:
                fd->follow = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 2:
                if (!charge_id_valid(optarg))
                        return ctl_usage_error(c, "'%s' is not a charge id", optarg);
                fd->charge_id = optarg;
                return CTL_CONTINUE;
        default:
                return ctl_common_option(c, opt);
        }
}

int ctl_cmd_events(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "after", required_argument, NULL, OPT_COMMAND },
                { "follow", no_argument, NULL, OPT_COMMAND + 1 },
                { "charge", required_argument, NULL, OPT_COMMAND + 2 },
                { NULL, 0, NULL, 0 }
        };
        struct feed fd = { 0 };
        int r;

        if ((r = start_listing(c, argc, argv, opts, events_option, &fd)) != CTL_CONTINUE)
                return r;
        feed_install_signals();
        /* before the first read: whatever is committed after it wakes us */
        if (fd.follow)
                fd.listening = store_admin_listen_events(c->store) == 0;
        if (c->json && !fd.follow && !(fd.collected = json_array()))
                return ctl_printed(-ENOMEM);
        if (!c->json)
                print_event_header();
        r = feed_run(c, &fd);
        if (fd.collected) {
                if (r == CTL_EXIT_OK)
                        r = ctl_printed(output_json(json_pack("{s:O}", "events", fd.collected),
                                                    false));
                json_decref(fd.collected);
        }
        return r;
}

/* ---- show ---- */

static void print_field(const char *name, const char *value)
{
        printf("  %-16s", name);
        output_text(stdout, value && value[0] ? value : "-",
                    output_width() > 30 ? output_width() - 18 : 12);
        fputc('\n', stdout);
}

static void print_order_fields(const struct ctl *c, const struct order_record *o)
{
        char amount[64], created[32];

        output_amount(o->amount, o->currency, minor_units(c), amount, sizeof(amount));
        snprintf(created, sizeof(created), "%lld", (long long) o->charge_created);
        printf("Order\n");
        print_field("charge_id", o->charge_id);
        print_field("status", charge_status_name(o->status));
        print_field("amount", amount);
        print_field("order_ref", o->order_ref);
        print_field("description", o->description);
        print_field("transaction_url", o->transaction_url);
        print_field("charge_created", created);
        print_field("first_seen_at", o->first_seen_at);
        print_field("updated_at", o->updated_at);
        print_field("captured_at", o->captured_at);
        print_field("failed_at", o->failed_at);
        print_field("fulfilled_at", o->fulfilled_at);
        print_field("needs_review", o->needs_review ? "yes" : "no");
}

static void print_show(const struct ctl *c, const struct order_record *o,
                       const struct event_list *ev, const struct delivery_list *dl)
{
        print_order_fields(c, o);
        printf("\nEvents\n");
        print_event_header();
        for (size_t i = 0; i < ev->n; i++)
                print_event(&ev->items[i]);
        printf("\nDeliveries\n");
        print_deliveries(dl, stdout);
}

static int json_show(const struct order_record *o, const struct event_list *ev,
                     const struct delivery_list *dl)
{
        return output_json(json_pack("{s:o, s:o, s:o}", "order", json_order(o),
                                     "events", json_events(ev),
                                     "deliveries", json_deliveries(dl, true)),
                           false);
}

static int show_load(struct ctl *c, const char *id, struct order_record *o,
                     struct event_list *ev, struct delivery_list *dl)
{
        int r = store_get_order(c->store, id, o);

        if (r == -ENOENT)
                return ctl_fail("unknown charge %s", id);
        if (r < 0)
                return ctl_store_error(c, r, "cannot read the order");
        r = store_admin_list_events(c->store, 0, id, 0, ev);
        if (r < 0)
                return ctl_store_error(c, r, "cannot read events");
        r = store_admin_list_deliveries_for(c->store, id, dl);
        if (r < 0)
                return ctl_store_error(c, r, "cannot read deliveries");
        return 0;
}

int ctl_cmd_show(struct ctl *c, int argc, char **argv)
{
        struct order_record o = { 0 };
        struct event_list ev = { 0 };
        struct delivery_list dl = { 0 };
        const char *id = NULL; /* set by start_on_charge() when it says go on */
        int r;

        if ((r = start_on_charge(c, argc, argv, CTL_STORE_READ, &id)) != CTL_CONTINUE)
                return r;
        r = show_load(c, id, &o, &ev, &dl);
        if (r == 0 && c->json)
                r = ctl_printed(json_show(&o, &ev, &dl));
        else if (r == 0)
                print_show(c, &o, &ev, &dl);
        order_record_clear(&o);
        event_list_clear(&ev);
        delivery_list_clear(&dl);
        return r;
}

/* ---- fulfil, review-done ---- */

static const char *const fulfil_result[] = {
        [STORE_ADMIN_DONE] = "fulfilled",
        [STORE_ADMIN_UNKNOWN] = "unknown_charge",
        [STORE_ADMIN_NOT_CAPTURED] = "not_captured",
        [STORE_ADMIN_REVIEW] = "needs_review",
        [STORE_ADMIN_ALREADY] = "already_fulfilled",
};

static int fulfil_report(const char *id, int res, const struct order_record *o)
{
        switch (res) {
        case STORE_ADMIN_DONE:
                printf("%s fulfilled at %s\n", id, o->fulfilled_at);
                return CTL_EXIT_OK;
        case STORE_ADMIN_ALREADY:
                printf("%s already fulfilled at %s\n", id, o->fulfilled_at);
                return CTL_EXIT_OK;
        case STORE_ADMIN_UNKNOWN:
                return ctl_fail("unknown charge %s", id);
        case STORE_ADMIN_NOT_CAPTURED:
                return ctl_fail("cannot fulfil %s: its status is %s; only CAPTURED orders "
                                "can be fulfilled", id, charge_status_name(o->status));
        default:
                return ctl_fail("cannot fulfil %s: the order needs review (inspect it with "
                                "'cashpayctl show %s', then run 'cashpayctl review-done %s')",
                                id, id, id);
        }
}

static int fulfil_json(const char *id, int res, const struct order_record *o)
{
        bool known = res != STORE_ADMIN_UNKNOWN;

        return output_json(json_pack("{s:s, s:s, s:s?, s:s?}", "charge_id", id,
                                     "result", fulfil_result[res],
                                     "status", known ? charge_status_name(o->status) : NULL,
                                     "fulfilled_at",
                                     known && o->fulfilled_at[0] ? o->fulfilled_at : NULL),
                           false);
}

int ctl_cmd_fulfil(struct ctl *c, int argc, char **argv)
{
        struct order_record o = { 0 };
        char now[TIME_ISO_LEN];
        const char *id = NULL; /* set by start_on_charge() when it says go on */
        int r, res;

        if ((r = start_on_charge(c, argc, argv, CTL_STORE_WRITE, &id)) != CTL_CONTINUE)
                return r;
        time_format_iso(time_now_ms(), now);
        res = store_admin_fulfil(c->store, id, now, &o);
        if (res < 0)
                return ctl_store_error(c, res, "cannot fulfil");
        /* Already done when printing fails: it is reported, and running
         * the command again does no harm. */
        r = c->json ? ctl_printed(fulfil_json(id, res, &o)) : CTL_EXIT_OK;
        if (r == CTL_EXIT_OK)
                r = c->json && (res == STORE_ADMIN_DONE || res == STORE_ADMIN_ALREADY)
                        ? CTL_EXIT_OK : fulfil_report(id, res, &o);
        order_record_clear(&o);
        return r;
}

static int review_json(const char *id, int res)
{
        return output_json(json_pack("{s:s, s:s}", "charge_id", id, "result",
                                     res == STORE_ADMIN_DONE ? "cleared" :
                                     res == STORE_ADMIN_UNKNOWN ? "unknown_charge" :
                                     "not_flagged"), false);
}

int ctl_cmd_review_done(struct ctl *c, int argc, char **argv)
{
        const char *id = NULL; /* set by start_on_charge() when it says go on */
        int r, res;

        if ((r = start_on_charge(c, argc, argv, CTL_STORE_WRITE, &id)) != CTL_CONTINUE)
                return r;
        res = store_admin_review_done(c->store, id);
        if (res < 0)
                return ctl_store_error(c, res, "cannot clear the review flag");
        if (c->json && (r = ctl_printed(review_json(id, res))) != CTL_EXIT_OK)
                return r;
        if (res == STORE_ADMIN_UNKNOWN)
                return ctl_fail("unknown charge %s", id);
        if (c->json)
                return CTL_EXIT_OK;
        if (res == STORE_ADMIN_DONE)
                printf("%s: review flag cleared\n", id);
        else
                printf("%s was not flagged for review\n", id);
        return CTL_EXIT_OK;
}
