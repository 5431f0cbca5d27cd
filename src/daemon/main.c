/*
 * cashpayd — the CashPay webhook receiver.
 *
 * main reads like the life of the process: parse arguments, load the
 * configuration, open and migrate the database, take the listening sockets,
 * start the writer and the listeners, say READY, serve until a signal,
 * drain, close the database cleanly, exit.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "build-config.h"
#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "src/daemon/admin.h"
#include "src/daemon/checkout.h"
#include "src/daemon/http.h"
#include "src/daemon/metrics.h"
#include "src/daemon/net.h"
#include "src/daemon/reconciler.h"
#include "src/daemon/runtime.h"
#include "src/daemon/service.h"
#include "src/daemon/tls.h"

#define TICK_MS 100
#define STATUS_EVERY_MS 1000
/* How late a timer may run, so that the loop can wake for several at once;
 * sd-event's default (250 ms) is longer than a tick. */
#define TIMER_ACCURACY_USEC 1000
#define DRAIN_GRACE_MS 2000
/* Reminded daily while the certificate is within its last 14 days. */
#define TLS_WARNING_EVERY_MS (24 * 3600 * 1000LL)

struct options {
        const char *config_path;
        bool check_config;
};

/* A periodic job of the main loop; run() returns the microseconds to the next run. */
struct timer {
        struct daemon *dmn;
        const char *name;
        uint64_t (*run)(struct daemon *dmn);
};

struct daemon {
        struct runtime rt;
        struct store *stores[WRITER_LANES_MAX]; /* the writer's, one per lane */
        size_t n_stores;
        struct store *store;          /* stores[0]: migrated, checkpointed, the WAL watched */
        struct service_sockets sockets;
        bool owns_sockets;            /* bound here, not passed by systemd */
        struct http_server *http;
        struct admin_server *admin;
        struct checkout_server *checkout; /* [cashpay] api_url and a checkout socket */
        struct reconciler *reconciler; /* [cashpay] api_url set */
        const char *config_path;
        _Atomic int64_t last_commit_ms;
        sd_event *event;              /* the main loop */
        struct timer timers[5];       /* its periodic jobs */
        uint64_t watchdog_usec;       /* WATCHDOG_USEC=, 0: no watchdog */
        bool wal_warned;
};

static struct log_ratelimit rejected_log = LOG_RATELIMIT_INIT(10, 5000);
/* a full disk fails every batch: logging each would only fill it further */
static struct log_ratelimit commit_failure_log = LOG_RATELIMIT_INIT(5, 10000);

static void usage(FILE *out)
{
        fprintf(out,
                "Usage: cashpayd [--config PATH] [--check-config] [--version] [--help]\n"
                "\n"
                "Receive CashPay webhooks, verify them and record them in SQLite.\n"
                "\n"
                "  -c, --config PATH   configuration file (default %s)\n"
                "      --check-config  validate the configuration and secrets, then exit\n"
                "      --version       print the version and exit\n"
                "  -h, --help          print this help and exit\n",
                CONFIG_DEFAULT_PATH);
}

/* Returns 0 to go on, 1 to exit 0 at once, -EINVAL to exit 2. */
static int parse_args(int argc, char **argv, struct options *opts)
{
        enum { OPT_CHECK = 256, OPT_VERSION };
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, OPT_CHECK },
                { "version", no_argument, NULL, OPT_VERSION },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        int c;

        opts->config_path = CONFIG_DEFAULT_PATH;
        while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
                switch (c) {
                case 'c': opts->config_path = optarg; break;
                case OPT_CHECK: opts->check_config = true; break;
                case OPT_VERSION: printf("cashpayd %s\n", CASHPAY_VERSION); return 1;
                case 'h': usage(stdout); return 1;
                default: usage(stderr); return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "cashpayd: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        return 0;
}

/* ---------------------------------------------------------------- logging */

static void log_delivery(const struct job *job)
{
        const struct delivery *d = &job->delivery;
        struct log_fields f = {
                .charge_id = d->charge.id[0] ? d->charge.id : NULL,
                .outcome = outcome_name(d->outcome),
                .delivery_id = d->id,
                .remote_addr = d->remote_addr,
        };

        if (!d->has_charge) {
                if (log_rate_ok(&rejected_log))
                        log_fields(LOG_LEVEL_NOTICE, &f, "rejected webhook from %s: %s (%s)",
                                   d->remote_addr, outcome_name(d->outcome),
                                   d->error ? d->error : "-");
                return;
        }
        if (job->confirmed && (d->outcome == OUTCOME_UNCONFIRMED ||
                               d->outcome == OUTCOME_DEFERRED)) {
                const struct api_fetch *a = &job->fetch;
                if (a->has_charge)
                        log_fields(LOG_LEVEL_WARNING, &f, "%s %s %lld %s from %s: unconfirmed, "
                                   "the CashPay API says %s %lld %s", d->charge.id,
                                   charge_status_name(d->charge.status),
                                   (long long) d->charge.amount, d->charge.currency,
                                   d->remote_addr, charge_status_name(a->charge.status),
                                   (long long) a->charge.amount, a->charge.currency);
                else
                        log_fields(LOG_LEVEL_WARNING, &f, "%s %s %lld %s from %s: %s, %s",
                                   d->charge.id, charge_status_name(d->charge.status),
                                   (long long) d->charge.amount, d->charge.currency,
                                   d->remote_addr, outcome_name(d->outcome),
                                   a->error ? a->error : "no answer");
                return;
        }
        enum log_level level = d->transition.warn ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO;
        log_fields(level, &f, "%s %s %lld %s from %s: %s%s%s", d->charge.id,
                   charge_status_name(d->charge.status), (long long) d->charge.amount,
                   d->charge.currency, d->remote_addr, outcome_name(d->outcome),
                   d->transition.reason ? ", " : "",
                   d->transition.reason ? d->transition.reason : "");
}

/* Runs on the writer thread after every commit attempt. */
static void on_batch(struct job *const *jobs, size_t n, int result, int64_t commit_us, void *data)
{
        struct daemon *dmn = data;

        metrics_observe_commit(commit_us, n, result);
        if (result < 0) {
                if (!log_rate_ok(&commit_failure_log))
                        return;
                if (result == -ENOENT || result == -ESTALE || result == -EROFS)
                        log_err("could not commit %zu webhook(s), answering 503: %s; the "
                                "database file was deleted, replaced or made read-only while "
                                "running: restore it and restart cashpayd", n,
                                store_strerror(result));
                else
                        log_err("could not commit %zu webhook(s), answering 503: %s", n,
                                store_strerror(result));
                return;
        }
        atomic_store(&dmn->last_commit_ms, time_now_ms());
        for (size_t i = 0; i < n; i++) {
                const struct delivery *d = &jobs[i]->delivery;
                if (d->fault < 0) {
                        log_err("the database refused a delivery from %s: %s", d->remote_addr,
                                store_strerror(d->fault));
                        continue;
                }
                metrics_count_outcome(d->outcome);
                log_delivery(jobs[i]);
        }
}

/* ---------------------------------------------------------------- startup */

/* Create the database's directory (mode 0770 under umask 007) if needed. */
static int ensure_parent_dir(const char *db_path)
{
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", db_path);
        char *slash = strrchr(dir, '/');

        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        for (char *p = dir + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(dir, 0770) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(dir, 0770) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int open_database(struct daemon *dmn, const struct config *cfg)
{
        char err[512];
        struct store_options opts = {
                .backend = cfg->database.backend,
                .url = cfg->database.url,
                .password_file = cfg->database.password_file,
                .path = cfg->database.path,
                .synchronous = cfg->database.synchronous,
                .busy_timeout_ms = cfg->database.busy_timeout,
                .migrate = true,
                .wal_limit_bytes = (int64_t) cfg->database.wal_warn_bytes,
                .max_rejected_rows = cfg->webhook.max_rejected_rows,
        };
        int r = cfg->database.backend == DB_BACKEND_SQLITE ? ensure_parent_dir(cfg->database.path) : 0;

        if (r < 0)
                return log_err_errno(r, "cannot create the directory of %s", cfg->database.path);
        unsigned lanes = cfg->database.writer_connections;
        for (unsigned i = 0; i < lanes; i++) {
                opts.migrate = i == 0; /* the others find the schema the first made */
                r = store_new(&opts, &dmn->stores[i], err, sizeof(err));
                if (r < 0)
                        return log_err_return(r, "%s", err);
                dmn->n_stores = i + 1;
        }
        dmn->store = dmn->stores[0];
        /* One reader per HTTP thread, plus one for the admin listener. */
        r = reader_pool_new(cfg, http_thread_count(cfg) + 1, &dmn->rt.readers, err, sizeof(err));
        if (r < 0)
                return log_err_return(r, "%s", err);
        return 0;
}

static int bind_all(const struct listen_list *list, int *fds, size_t *n)
{
        char err[256];

        for (size_t i = 0; i < list->n && *n < 16; i++) {
                int fd = net_listen(&list->items[i], err, sizeof(err));
                if (fd < 0)
                        return log_err_return(fd, "%s", err);
                fds[(*n)++] = fd;
        }
        return 0;
}

/* Sockets from systemd when it passed any, else bound from the config. */
static int take_sockets(struct daemon *dmn, const struct config *cfg)
{
        char err[256];
        struct service_sockets *s = &dmn->sockets;
        int r = service_listen_fds(s, err, sizeof(err));

        if (r < 0)
                return log_err_return(r, "%s", err);
        if (s->n_http == 0 && (r = bind_all(&cfg->http.listen, s->http, &s->n_http)) < 0)
                return r;
        if (s->n_admin == 0 && (r = bind_all(&cfg->admin.listen, s->admin, &s->n_admin)) < 0)
                return r;
        /* The checkout listener creates charges: only with the API. systemd
         * passes every listening socket unit that names this service, so an
         * installed cashpayd-checkout.socket must not stop a receiver that
         * does not use the API from starting: it is left unserved, said. */
        if (s->n_checkout > 0 && !cfg->cashpay.api_url) {
                log_warning("a checkout socket was passed, but [cashpay] api_url is not set: "
                            "there is no API to create charges with, so it is not served "
                            "(stop and disable cashpayd-checkout.socket)");
                for (size_t i = 0; i < s->n_checkout; i++)
                        close(s->checkout[i]);
                s->n_checkout = 0;
        }
        if (cfg->cashpay.api_url && s->n_checkout == 0 &&
            (r = bind_all(&cfg->checkout.listen, s->checkout, &s->n_checkout)) < 0)
                return r;
        if (s->n_http == 0)
                return log_err_return(-EINVAL, "no listening socket: set [http] listen or use "
                                      "socket activation");
        return 0;
}

static int start_serving(struct daemon *dmn, const struct config *cfg)
{
        char err[256];
        struct writer_options wopts = {
                .max_batch = cfg->database.max_batch,
                .max_queue = cfg->http.max_queue,
                .commit_timeout_ms = cfg->database.commit_timeout,
                .busy_timeout_ms = cfg->database.busy_timeout,
                .wal_limit_bytes = (int64_t) cfg->database.wal_warn_bytes,
                .keep_rejected_days = cfg->webhook.keep_rejected_days,
                .stall_file = getenv("CASHPAYD_TEST_STALL_FILE"),
        };
        int r = writer_start(dmn->stores, dmn->n_stores, &wopts, on_batch, dmn,
                             &dmn->rt.writer);

        if (r < 0)
                return log_err_errno(r, "cannot start the writer thread");
        if (cfg->http.tls_cert) {
                r = tls_install(cfg->http.tls_cert, cfg->http.tls_key, err, sizeof(err));
                if (r < 0)
                        return log_err_return(r, "%s", err);
        }
        if (cfg->cashpay.api_url) {
                r = reconciler_start(&dmn->rt, cfg, &dmn->reconciler, err, sizeof(err));
                if (r < 0)
                        return log_err_return(r, "cannot use the CashPay API: %s", err);
                dmn->rt.reconciler = dmn->reconciler; /* the return page fetches too */
        }
        r = http_start(&dmn->rt, dmn->sockets.http, dmn->sockets.n_http, &dmn->http, err, sizeof(err));
        if (r < 0)
                return log_err_return(r, "%s", err);
        r = admin_start(&dmn->rt, dmn->sockets.admin, dmn->sockets.n_admin, &dmn->admin,
                        err, sizeof(err));
        if (r < 0)
                return log_err_return(r, "%s", err);
        if (dmn->reconciler && dmn->sockets.n_checkout > 0) {
                r = checkout_start(&dmn->rt, reconciler_api(dmn->reconciler),
                                   dmn->sockets.checkout, dmn->sockets.n_checkout,
                                   &dmn->checkout, err, sizeof(err));
                if (r < 0)
                        return log_err_return(r, "%s", err);
        }
        return 0;
}

static void announce(const struct config *cfg, const struct daemon *dmn)
{
        char checkout[64] = "";

        if (cfg->webhook.verify == VERIFY_NONE)
                log_warning("WEBHOOK SIGNATURES ARE NOT VERIFIED (verify = none): anyone who can "
                            "reach this port can mark orders as paid");
        if (dmn->checkout)
                snprintf(checkout, sizeof(checkout), ", %zu checkout listener(s)",
                         dmn->sockets.n_checkout);
        bool sqlite = cfg->database.backend == DB_BACKEND_SQLITE;
        log_notice("cashpayd %s ready: %zu public and %zu admin listener(s)%s%s, database %s "
                   "(schema %d, %zu writer connection(s)), verification %s",
                   CASHPAY_VERSION, dmn->sockets.n_http, dmn->sockets.n_admin,
                   cfg->http.tls_cert ? " (public ones HTTPS)" : "", checkout,
                   sqlite ? cfg->database.path : "on PostgreSQL", store_schema_version(),
                   dmn->n_stores, config_verify_scheme_name(cfg->webhook.verify));
}

/* ------------------------------------------------------------ running */

/*
 * A secret from LoadCredential= is systemd's copy, made when the service
 * started: systemd 252 does not copy it again for a reload, so a changed
 * source file only takes effect on restart. Say so where operators look.
 */
static const char *credential_note(const struct config *cfg)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        const char *file = cfg->webhook.secret_file;
        size_t n = dir ? strlen(dir) : 0;

        if (n == 0 || !file || strncmp(file, dir, n) != 0 || file[n] != '/')
                return "";
        return " (the secret is a systemd credential, copied when the service started: "
               "after changing its source file, restart the service)";
}

/* A renewed certificate for new connections; a broken one changes nothing. */
static void reload_tls(struct daemon *dmn)
{
        char err[512], when[TIME_ISO_LEN];
        const struct settings *s = runtime_settings_acquire(&dmn->rt);
        const struct config *cfg = s->cfg;
        int r = 0;

        if (cfg->http.tls_cert)
                r = tls_install(cfg->http.tls_cert, cfg->http.tls_key, err, sizeof(err));
        bool tls = cfg->http.tls_cert != NULL;
        runtime_settings_release(&dmn->rt);
        if (!tls)
                return;
        if (r < 0) {
                log_err("TLS certificate not reloaded, new connections still get the previous "
                        "one: %s", err);
                return;
        }
        time_format_iso(tls_not_after() * 1000, when);
        log_notice("TLS certificate reloaded for new connections (valid until %s)", when);
        tls_warn_expiry(time(NULL));
}

static void reload(struct daemon *dmn)
{
        char err[512];
        struct config *next = NULL;
        struct settings *settings;

        service_notify_reloading();
        int r = config_load(dmn->config_path, &next, err, sizeof(err));
        if (r == 0) {
                const struct settings *cur = runtime_settings_acquire(&dmn->rt);
                bool ok = config_reload_compatible(cur->cfg, next, err, sizeof(err));
                runtime_settings_release(&dmn->rt);
                if (!ok) {
                        config_free(next);
                        r = -EINVAL;
                }
        }
        if (r == 0)
                r = settings_new(next, &settings, err, sizeof(err));
        if (r < 0) {
                log_err("reload of %s failed, keeping the running configuration: %s",
                        dmn->config_path, err);
        } else {
                const char *note = credential_note(settings->cfg);
                log_set_level(settings->cfg->log.level);
                writer_set_wal_limit(dmn->rt.writer, (int64_t) settings->cfg->database.wal_warn_bytes);
                writer_set_keep_rejected_days(dmn->rt.writer, settings->cfg->webhook.keep_rejected_days);
                runtime_settings_swap(&dmn->rt, settings);
                log_notice("configuration and secrets reloaded from %s%s", dmn->config_path, note);
        }
        reload_tls(dmn);
        service_notify_ready();
}

static void report_status(struct daemon *dmn)
{
        struct metrics_totals t;
        char last[TIME_ISO_LEN] = "never";
        int64_t last_ms = atomic_load(&dmn->last_commit_ms);

        metrics_totals(&t);
        if (last_ms > 0)
                time_format_iso(last_ms, last);
        service_notify_status("deliveries %llu, applied %llu, rejected %llu, commit failures %llu, "
                              "queue %u, last commit %s",
                              (unsigned long long) t.deliveries, (unsigned long long) t.applied,
                              (unsigned long long) t.rejected,
                              (unsigned long long) t.commit_failures,
                              writer_queue_depth(dmn->rt.writer), last);
}

/* Say so once when the WAL passes wal_warn_bytes, and once when it is back. */
static void watch_wal(struct daemon *dmn)
{
        const struct settings *s = runtime_settings_acquire(&dmn->rt);
        int64_t limit = (int64_t) s->cfg->database.wal_warn_bytes;
        runtime_settings_release(&dmn->rt);
        int64_t wal = store_wal_bytes(dmn->store);

        if (wal > limit && !dmn->wal_warned)
                log_warning("the write-ahead log is %lld bytes, past wal_warn_bytes (%lld): a "
                            "reader keeping a transaction open stops checkpoints",
                            (long long) wal, (long long) limit);
        else if (wal <= limit && dmn->wal_warned)
                log_notice("the write-ahead log is back to %lld bytes", (long long) wal);
        dmn->wal_warned = wal > limit;
}

/*
 * Our threads block the signals and the event loop takes them through a
 * signalfd. A thread a preloaded library started before main() (a fault
 * injector, a profiler) has them unblocked, and the default action would
 * kill the process there: this handler only notes the signal, and the
 * deadline timer hands it to the loop.
 */
static volatile sig_atomic_t stray_signal;

static void note_stray_signal(int sig)
{
        stray_signal = sig;
}

static void catch_stray_signals(const sigset_t *signals)
{
        struct sigaction sa = { .sa_handler = note_stray_signal };

        sa.sa_mask = *signals;
        for (int sig = 1; sig < NSIG; sig++)
                if (sigismember(signals, sig) == 1)
                        sigaction(sig, &sa, NULL);
}

/* SIGHUP reloads; SIGTERM and SIGINT end the loop. */
static void handle_signal(struct daemon *dmn, int sig)
{
        if (sig == SIGHUP) {
                reload(dmn);
                return;
        }
        log_notice("received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        (void) sd_event_exit(dmn->event, 0);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *data)
{
        handle_signal(data, (int) si->ssi_signo);
        return 0;
}

/* ---- the timers: each returns the microseconds until it runs again */

/* Requests and connections past their deadlines; a stray signal. */
static uint64_t tick_deadlines(struct daemon *dmn)
{
        int64_t now = time_monotonic_ms();
        int sig = stray_signal;

        writer_expire(dmn->rt.writer, now);
        http_expire(dmn->http, now);
        admin_expire(dmn->admin, now);
        checkout_expire(dmn->checkout, now);
        if (sig) {
                stray_signal = 0;
                handle_signal(dmn, sig);
        }
        return TICK_MS * 1000;
}

/* Only a writer that commits (or waits for work) keeps us alive: one stuck
 * inside a commit must let systemd restart us. Until it moves again, look
 * each tick, so that a commit which recovers is not late for the next ping. */
static uint64_t tick_watchdog(struct daemon *dmn)
{
        if (!writer_making_progress(dmn->rt.writer, time_monotonic_ms()))
                return TICK_MS * 1000;
        service_notify_watchdog();
        return dmn->watchdog_usec / 2;
}

static uint64_t tick_status(struct daemon *dmn)
{
        report_status(dmn);
        watch_wal(dmn);
        return STATUS_EVERY_MS * 1000;
}

static uint64_t tick_tls_expiry(struct daemon *dmn)
{
        tls_warn_expiry(time(NULL));
        return TLS_WARNING_EVERY_MS * 1000;
}

/* Stale INITIATED orders, fetched from the API (reconciler.h). */
static uint64_t tick_reconcile(struct daemon *dmn)
{
        return reconciler_tick(dmn->reconciler);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *data)
{
        struct timer *t = data;
        int r = sd_event_source_set_time_relative(s, t->run(t->dmn));

        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0) {
                log_err_errno(r, "cannot re-arm the %s timer", t->name);
                return sd_event_exit(t->dmn->event, r);
        }
        return 0;
}

/* A named timer of the loop, due at once, then as often as @run says. */
static int add_timer(struct daemon *dmn, struct timer *t, const char *name,
                     uint64_t (*run)(struct daemon *))
{
        sd_event_source *s;
        int r;

        *t = (struct timer) { .dmn = dmn, .name = name, .run = run };
        r = sd_event_add_time_relative(dmn->event, &s, CLOCK_MONOTONIC, 0, TIMER_ACCURACY_USEC,
                                       on_timer, t);
        if (r < 0)
                return log_err_errno(r, "cannot add the %s timer", name);
        (void) sd_event_source_set_description(s, name);
        (void) sd_event_source_set_floating(s, 1); /* the loop owns it */
        sd_event_source_unref(s);
        return 0;
}

/* Serve until SIGTERM/SIGINT: the signals, and one timer per periodic job. */
static int run(struct daemon *dmn)
{
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
        int r = sd_event_new(&dmn->event);

        if (r < 0)
                return log_err_errno(r, "cannot create the event loop");
        for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
                r = sd_event_add_signal(dmn->event, NULL, signals[i], on_signal, dmn);
                if (r < 0)
                        return log_err_errno(r, "cannot watch signal %d", signals[i]);
        }
        dmn->watchdog_usec = service_watchdog_usec();
        if ((r = add_timer(dmn, &dmn->timers[0], "deadlines", tick_deadlines)) < 0 ||
            (r = add_timer(dmn, &dmn->timers[1], "status", tick_status)) < 0 ||
            (tls_not_after() &&
             (r = add_timer(dmn, &dmn->timers[3], "tls-expiry", tick_tls_expiry)) < 0) ||
            (dmn->watchdog_usec &&
             (r = add_timer(dmn, &dmn->timers[2], "watchdog", tick_watchdog)) < 0) ||
            (dmn->reconciler &&
             (r = add_timer(dmn, &dmn->timers[4], "reconcile", tick_reconcile)) < 0))
                return r;
        r = sd_event_loop(dmn->event);
        if (r < 0)
                return log_err_errno(r, "the event loop failed");
        return 0;
}

/* Stop accepting, let in-flight requests finish and commit. */
static void drain(struct daemon *dmn, unsigned commit_timeout_ms)
{
        int64_t give_up = time_monotonic_ms() + commit_timeout_ms + DRAIN_GRACE_MS;

        service_notify_stopping();
        /* New requests are answered 503 from here on (the listeners keep
         * accepting: http_mhd_socket() says why they are not quiesced). */
        atomic_store(&dmn->rt.draining, true);
        http_release_held(dmn->http); /* a page waiting for the API answers now */
        checkout_release_held(dmn->checkout); /* and a charge request: 503, retried */
        while (atomic_load(&dmn->rt.in_flight) > 0 && time_monotonic_ms() < give_up) {
                writer_expire(dmn->rt.writer, time_monotonic_ms());
                usleep(10 * 1000);
        }
        if (atomic_load(&dmn->rt.in_flight) > 0)
                log_warning("%d request(s) still in flight after the drain period",
                            atomic_load(&dmn->rt.in_flight));
        /* Every suspended connection resumed (503) before the listeners stop. */
        writer_shutdown(dmn->rt.writer);
        http_stop(dmn->http);
        dmn->http = NULL;
        checkout_stop(dmn->checkout);
        /* Its last results still go through the writer. */
        reconciler_stop(dmn->reconciler);
        dmn->reconciler = NULL;
        dmn->rt.reconciler = NULL;
        /* Creations the client answered are recorded by the writer first. */
        checkout_free(dmn->checkout);
        dmn->checkout = NULL;
        writer_stop(dmn->rt.writer);
        dmn->rt.writer = NULL;
}

static void teardown(struct daemon *dmn)
{
        admin_stop(dmn->admin);
        http_stop(dmn->http);
        checkout_stop(dmn->checkout);
        tls_shutdown(); /* no handshake runs any more */
        reconciler_stop(dmn->reconciler);
        checkout_free(dmn->checkout);
        writer_stop(dmn->rt.writer);
        reader_pool_free(dmn->rt.readers);
        for (size_t i = dmn->n_stores; i-- > 0;)
                store_free(dmn->stores[i]); /* the first checkpoints the WAL */
        for (size_t i = 0; i < dmn->sockets.n_http; i++)
                close(dmn->sockets.http[i]);
        for (size_t i = 0; i < dmn->sockets.n_admin; i++)
                close(dmn->sockets.admin[i]);
        for (size_t i = 0; i < dmn->sockets.n_checkout; i++)
                close(dmn->sockets.checkout[i]);
        settings_free(dmn->rt.settings);
        pthread_rwlock_destroy(&dmn->rt.settings_lock);
        dmn->event = sd_event_unref(dmn->event);
}

static int check_config(const char *path)
{
        char err[512];
        struct config *cfg;
        struct settings *settings;

        if (config_load(path, &cfg, err, sizeof(err)) < 0) {
                fprintf(stderr, "%s\n", err);
                return EXIT_FAILURE;
        }
        if (settings_new(cfg, &settings, err, sizeof(err)) < 0) {
                fprintf(stderr, "%s: %s\n", path, err);
                return EXIT_FAILURE;
        }
        if (cfg->http.tls_cert) {
                int64_t not_after;
                if (tls_check(cfg->http.tls_cert, cfg->http.tls_key, &not_after,
                              err, sizeof(err)) < 0) {
                        fprintf(stderr, "%s: %s\n", path, err);
                        settings_free(settings);
                        return EXIT_FAILURE;
                }
        }
        printf("%s: configuration is valid\n", path);
        settings_free(settings);
        return EXIT_SUCCESS;
}

static int load_settings(const char *path, struct settings **ret)
{
        char err[512];
        struct config *cfg;
        int r = config_load(path, &cfg, err, sizeof(err));

        if (r < 0) {
                fprintf(stderr, "cashpayd: %s\n", err);
                return r;
        }
        log_init("cashpayd", cfg->log.level);
        r = settings_new(cfg, ret, err, sizeof(err));
        if (r < 0)
                return log_err_return(r, "%s", err);
        return 0;
}

int main(int argc, char **argv)
{
        struct options opts = { 0 };
        struct daemon dmn = { 0 };
        sigset_t signals;
        int r = parse_args(argc, argv, &opts);

        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : 2;
        if (opts.check_config)
                return check_config(opts.config_path);

        /* The merchant's app (group cashpay) reads and updates the database. */
        umask(0007);
        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&signals);
        sigaddset(&signals, SIGTERM);
        sigaddset(&signals, SIGINT);
        sigaddset(&signals, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &signals, NULL); /* before any thread starts */
        catch_stray_signals(&signals);

        dmn.config_path = opts.config_path;
        pthread_rwlock_init(&dmn.rt.settings_lock, NULL);
        if (load_settings(opts.config_path, &dmn.rt.settings) < 0)
                return EXIT_FAILURE;
        const struct config *cfg = dmn.rt.settings->cfg;
        if (open_database(&dmn, cfg) < 0 || take_sockets(&dmn, cfg) < 0 ||
            start_serving(&dmn, cfg) < 0) {
                teardown(&dmn);
                return EXIT_FAILURE;
        }
        announce(cfg, &dmn);
        service_notify_ready();
        r = run(&dmn);
        drain(&dmn, dmn.rt.settings->cfg->database.commit_timeout);
        teardown(&dmn);
        if (r < 0)
                return EXIT_FAILURE;
        log_notice("stopped cleanly");
        return EXIT_SUCCESS;
}
