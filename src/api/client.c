/*
 * client — the CashPay API client: one thread, one libcurl multi handle.
 *
 * Callers hand requests over under a mutex (the only thing they ever wait
 * for) and wake the loop; everything else — queues, coalescing, tokens,
 * retries, curl handles — belongs to the client's thread alone, so none of
 * it needs locking. See include/cashpay/api.h for what callers get.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <curl/curl.h>

#include "build-config.h"
#include "cashpay/api.h"
#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "cashpay/token.h"

#define FILE_RECHECK_MS 1000    /* how often an unchanged token file is looked at */
#define TOKEN_FILE_MAX 8192
#define POLL_MAX_MS 1000

enum req_kind { REQ_FETCH, REQ_CREATE };

struct waiter {
        api_done_fn done;
        void *userdata;
        struct waiter *next;
};

struct req {
        enum req_kind kind;
        char charge_id[CHARGE_ID_MAX + 1];
        char *body;                 /* POST body */
        char *idempotency_key;
        struct waiter *waiters;
        unsigned attempts;          /* sent so far */
        bool retried_401;
        uint64_t token_generation;  /* of the token the last attempt carried */
        int64_t not_before_ms;      /* monotonic; backoff of a retry */
        int64_t asked_ms;
        CURL *easy;
        struct curl_slist *headers; /* holds the token: wiped when freed */
        uint8_t *buf;
        size_t len, cap, max;
        bool too_big;
        struct req *next;
};

struct api_client {
        struct api_options o;       /* strings owned (copies) */
        char *basic_auth;           /* token_url: "Basic …", wiped when freed */
        size_t max_response;

        pthread_t thread;
        pthread_mutex_t lock;       /* incoming, stop, stats */
        struct req *incoming;
        bool stop;
        struct api_stats stats;

        /* the client's thread only */
        CURLM *multi;
        struct req *queued;         /* waiting for a token, a slot or its backoff */
        struct req *active;         /* on the wire */
        unsigned n_active;
        struct token_state tok;
        struct req token_req;       /* the renewal in flight (easy != NULL) */
        struct stat token_file_st;  /* identity of the token file last read */
        int64_t token_file_checked_ms;
        char token_detail[200];     /* why there is no token */
};

/* ---- buffers and requests --------------------------------------------- */

static size_t on_data(char *data, size_t size, size_t n, void *userdata)
{
        struct req *r = userdata;
        size_t len = size * n;
        uint8_t *grown;

        if (len > r->max - r->len) {
                r->too_big = true;
                return 0; /* curl stops the transfer: CURLE_WRITE_ERROR */
        }
        if (r->len + len > r->cap) {
                size_t cap = r->cap ? r->cap * 2 : 4096;

                while (cap < r->len + len)
                        cap *= 2;
                grown = realloc(r->buf, cap);
                if (!grown)
                        return 0;
                r->buf = grown;
                r->cap = cap;
        }
        memcpy(r->buf + r->len, data, len);
        r->len += len;
        return len;
}

static void wipe_headers(struct curl_slist *h)
{
        for (struct curl_slist *l = h; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(h);
}

/* Drops the curl side of a request (after an attempt). */
static void req_detach(struct api_client *c, struct req *r)
{
        if (r->easy) {
                curl_multi_remove_handle(c->multi, r->easy);
                curl_easy_cleanup(r->easy);
                r->easy = NULL;
        }
        wipe_headers(r->headers);
        r->headers = NULL;
        free(r->buf);
        r->buf = NULL;
        r->len = r->cap = 0;
        r->too_big = false;
}

static void req_free(struct api_client *c, struct req *r)
{
        struct waiter *w, *next;

        if (!r)
                return;
        req_detach(c, r);
        for (w = r->waiters; w; w = next) {
                next = w->next;
                free(w);
        }
        free(r->body);
        free(r->idempotency_key);
        free(r);
}

/* Every waiter gets @res; then the request is gone. */
static void req_finish(struct api_client *c, struct req *r, struct api_result *res)
{
        res->duration_ms = time_monotonic_ms() - r->asked_ms;
        for (struct waiter *w = r->waiters; w; w = w->next)
                w->done(res, w->userdata);
        charge_clear(&res->charge);
        req_free(c, r);
}

static void req_fail(struct api_client *c, struct req *r, int error, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static void req_fail(struct api_client *c, struct req *r, int error, const char *fmt, ...)
{
        struct api_result res = { .error = error };
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(res.detail, sizeof(res.detail), fmt, ap);
        va_end(ap);
        req_finish(c, r, &res);
}

static void list_append(struct req **head, struct req *r)
{
        r->next = NULL;
        while (*head)
                head = &(*head)->next;
        *head = r;
}

static void list_remove(struct req **head, struct req *r)
{
        for (; *head; head = &(*head)->next) {
                if (*head == r) {
                        *head = r->next;
                        r->next = NULL;
                        return;
                }
        }
}

/* ---- submitting ------------------------------------------------------- */

static int submit(struct api_client *c, struct req *r, api_done_fn done, void *userdata)
{
        r->waiters = calloc(1, sizeof(*r->waiters));
        if (!r->waiters) {
                req_free(c, r);
                return -ENOMEM;
        }
        r->waiters->done = done;
        r->waiters->userdata = userdata;
        r->asked_ms = time_monotonic_ms();
        r->max = c->max_response;
        pthread_mutex_lock(&c->lock);
        list_append(&c->incoming, r);
        pthread_mutex_unlock(&c->lock);
        curl_multi_wakeup(c->multi);
        return 0;
}

int api_fetch_charge(struct api_client *c, const char *charge_id, api_done_fn done,
                     void *userdata)
{
        struct req *r;

        if (!charge_id_valid(charge_id) || !done)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->kind = REQ_FETCH;
        snprintf(r->charge_id, sizeof(r->charge_id), "%s", charge_id);
        return submit(c, r, done, userdata);
}

/* An Idempotency-Key goes into a header: visible ASCII only. */
static bool header_value_ok(const char *s)
{
        if (!s || !*s || strlen(s) > 255)
                return false;
        for (; *s; s++)
                if ((unsigned char) *s <= 0x20 || (unsigned char) *s >= 0x7f)
                        return false;
        return true;
}

int api_create_charge(struct api_client *c, const char *json_body, const char *idempotency_key,
                      api_done_fn done, void *userdata)
{
        struct req *r;

        if (!json_body || !header_value_ok(idempotency_key) || !done)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->kind = REQ_CREATE;
        r->body = strdup(json_body);
        r->idempotency_key = strdup(idempotency_key);
        if (!r->body || !r->idempotency_key) {
                req_free(c, r);
                return -ENOMEM;
        }
        return submit(c, r, done, userdata);
}

void api_client_stats(struct api_client *c, struct api_stats *ret)
{
        pthread_mutex_lock(&c->lock);
        *ret = c->stats;
        pthread_mutex_unlock(&c->lock);
}

/* Joins a new fetch to one of the same charge already asked for. */
static bool coalesce(struct api_client *c, struct req *r)
{
        struct req *lists[] = { c->active, c->queued };

        if (r->kind != REQ_FETCH)
                return false;
        for (size_t i = 0; i < 2; i++) {
                for (struct req *o = lists[i]; o; o = o->next) {
                        if (o->kind != REQ_FETCH || strcmp(o->charge_id, r->charge_id) != 0)
                                continue;
                        r->waiters->next = o->waiters;
                        o->waiters = r->waiters;
                        r->waiters = NULL;
                        req_free(c, r);
                        return true;
                }
        }
        return false;
}

static void take_incoming(struct api_client *c)
{
        struct req *r, *next;

        pthread_mutex_lock(&c->lock);
        r = c->incoming;
        c->incoming = NULL;
        pthread_mutex_unlock(&c->lock);
        for (; r; r = next) {
                next = r->next;
                if (!coalesce(c, r))
                        list_append(&c->queued, r);
        }
}

/* ---- tokens ----------------------------------------------------------- */

static void set_token_error(struct api_client *c, bool failed, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_token_error(struct api_client *c, bool failed, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->token_detail, sizeof(c->token_detail), fmt, ap);
        va_end(ap);
        pthread_mutex_lock(&c->lock);
        snprintf(c->stats.token_error, sizeof(c->stats.token_error), "%s", c->token_detail);
        if (failed)
                c->stats.token_renewals_failed++;
        pthread_mutex_unlock(&c->lock);
}

static void token_taken(struct api_client *c, int64_t expires_at_ms)
{
        c->token_detail[0] = '\0';
        pthread_mutex_lock(&c->lock);
        c->stats.token_error[0] = '\0';
        c->stats.token_renewals_ok++;
        c->stats.token_expires_at_ms = expires_at_ms;
        pthread_mutex_unlock(&c->lock);
}

static int read_small_file(const char *path, char *buf, size_t cap, size_t *ret_len)
{
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t n;
        size_t len = 0;

        if (fd < 0)
                return -errno;
        while ((n = read(fd, buf + len, cap - len)) > 0)
                if ((len += (size_t) n) == cap)
                        return -EFBIG;
        if (n < 0)
                return -errno;
        *ret_len = len;
        return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
               a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* token_file: read it when it changed (or when the token was rejected). */
static void token_file_refresh(struct api_client *c, int64_t now)
{
        char buf[TOKEN_FILE_MAX], detail[160];
        _cleanup_(token_wipe_freep) char *tok = NULL;
        struct stat st;
        size_t len = 0;
        int r;

        if (c->tok.token && now - c->token_file_checked_ms < FILE_RECHECK_MS)
                return;
        c->token_file_checked_ms = now;
        if (stat(c->o.token_file, &st) < 0) {
                set_token_error(c, true, "token file %s: %s", c->o.token_file, strerror(errno));
                return;
        }
        if (c->tok.token && same_file(&st, &c->token_file_st))
                return;
        r = read_small_file(c->o.token_file, buf, sizeof(buf), &len);
        if (r >= 0)
                r = token_from_file(buf, len, &tok, detail, sizeof(detail));
        else
                snprintf(detail, sizeof(detail), "%s", strerror(-r));
        explicit_bzero(buf, sizeof(buf));
        if (r < 0) {
                set_token_error(c, true, "token file %s: %s", c->o.token_file, detail);
                return;
        }
        c->token_file_st = st;
        if (time(NULL) - st.st_mtim.tv_sec > (time_t) c->o.token_lifetime)
                log_warning("token file %s is older than token_lifetime (%us): is whatever "
                            "renews it still running?", c->o.token_file, c->o.token_lifetime);
        /* the file is the authority on its token: no expiry of our own */
        if (token_renewed(&c->tok, tok, TOKEN_EXPIRES_IN_MAX, 0, 0, now) >= 0)
                token_taken(c, INT64_MAX);
}

static int setup_common(struct api_client *c, struct req *r, const char *url)
{
        CURL *e = curl_easy_init();
        long ms = (long) c->o.request_timeout * 1000;

        if (!e)
                return -ENOMEM;
        r->easy = e;
        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
                return -EINVAL;
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an error */
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) r->max);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_PRIVATE, r);
        curl_easy_setopt(e, CURLOPT_USERAGENT, "cashpayd/" CASHPAY_VERSION);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        return 0;
}

/* One header line "@name: @value" (@value NULL: @name is the whole line). */
static int add_header(struct req *r, const char *name, const char *value)
{
        _cleanup_(token_wipe_freep) char *line = NULL;
        struct curl_slist *l;

        if (asprintf(&line, "%s%s%s", name, value ? ": " : "", value ? value : "") < 0) {
                line = NULL;
                return -ENOMEM;
        }
        l = curl_slist_append(r->headers, line);
        if (!l)
                return -ENOMEM;
        r->headers = l;
        return 0;
}

static void start_token_request(struct api_client *c)
{
        static const char form[] = "grant_type=client_credentials";
        struct req *r = &c->token_req;
        int e;

        *r = (struct req) { .max = c->max_response, .asked_ms = time_monotonic_ms() };
        e = add_header(r, "Content-Type", "application/x-www-form-urlencoded");
        if (e >= 0)
                e = add_header(r, "Accept", "application/json");
        if (e >= 0)
                e = add_header(r, "Authorization", c->basic_auth);
        if (e >= 0)
                e = setup_common(c, r, c->o.token_url);
        if (e >= 0) {
                curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(form));
                curl_easy_setopt(r->easy, CURLOPT_COPYPOSTFIELDS, form);
                if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
                        e = -ENOMEM;
        }
        if (e < 0) {
                req_detach(c, r);
                token_renewal_failed(&c->tok, time_monotonic_ms());
                set_token_error(c, true, "token request could not be made: %s", strerror(-e));
        }
}

/* One attempt for the on_attempt hook: its answer and time on the wire. */
static void report_attempt(struct api_client *c, CURL *e, const char *endpoint)
{
        curl_off_t us = 0;
        long status = 0;

        if (!c->o.on_attempt)
                return;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &us);
        c->o.on_attempt(endpoint, (int) status, (int64_t) us, c->o.on_attempt_data);
}

static void count_connects(struct api_client *c, CURL *e, bool request)
{
        long n = 0;

        curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &n);
        pthread_mutex_lock(&c->lock);
        c->stats.connects += (uint64_t) (n > 0 ? n : 0);
        c->stats.requests += request;
        pthread_mutex_unlock(&c->lock);
}

static const char *transport_detail(CURLcode rc, const struct req *r)
{
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED)
                return "answer larger than max_response";
        return curl_easy_strerror(rc);
}

static void token_request_done(struct api_client *c, CURLcode rc)
{
        struct req *r = &c->token_req;
        _cleanup_(token_wipe_freep) char *tok = NULL;
        int64_t expires_in = -1, now = time_monotonic_ms();
        char detail[160];
        long status = 0;

        count_connects(c, r->easy, false);
        report_attempt(c, r->easy, "token");
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK)
                snprintf(detail, sizeof(detail), "%s", transport_detail(rc, r));
        else if (status != 200)
                snprintf(detail, sizeof(detail), "answered %ld", status);
        else if (token_parse_response(r->buf, r->len, &tok, &expires_in, detail,
                                      sizeof(detail)) >= 0 &&
                 token_renewed(&c->tok, tok, expires_in, c->o.token_lifetime,
                               c->o.refresh_margin, now) >= 0) {
                req_detach(c, r);
                token_taken(c, time_now_ms() + (c->tok.expires_at_ms - now));
                return;
        }
        req_detach(c, r);
        token_renewal_failed(&c->tok, now);
        set_token_error(c, true, "token endpoint: %s", detail);
        log_warning("CashPay token endpoint: %s; next attempt in %lld ms", detail,
                    (long long) (c->tok.retry_at_ms - now));
}

/* ---- API requests ------------------------------------------------------ */

static int start_request(struct api_client *c, struct req *r)
{
        char url[1024];
        int e;

        if (r->kind == REQ_FETCH)
                snprintf(url, sizeof(url), "%s/charges/%s", c->o.api_url, r->charge_id);
        else
                snprintf(url, sizeof(url), "%s/charges", c->o.api_url);
        _cleanup_(token_wipe_freep) char *bearer = NULL;

        r->token_generation = c->tok.generation;
        if (asprintf(&bearer, "Bearer %s", c->tok.token) < 0) {
                bearer = NULL;
                return -ENOMEM;
        }
        e = add_header(r, "Authorization", bearer);
        if (e >= 0)
                e = add_header(r, "Accept", "application/json");
        if (e >= 0 && r->kind == REQ_CREATE)
                e = add_header(r, "Content-Type", "application/json");
        if (e >= 0 && r->kind == REQ_CREATE)
                e = add_header(r, "Idempotency-Key", r->idempotency_key);
        if (e >= 0)
                e = setup_common(c, r, url);
        if (e >= 0 && r->kind == REQ_CREATE) {
                curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(r->body));
                curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
        }
        if (e >= 0 && curl_multi_add_handle(c->multi, r->easy) != CURLM_OK)
                e = -ENOMEM;
        if (e < 0) {
                req_detach(c, r);
                return e;
        }
        r->attempts++;
        return 0;
}

/* Retry a GET later, if it has attempts left. */
static bool retry_later(struct api_client *c, struct req *r)
{
        int64_t wait = API_GET_RETRY_FIRST_MS;

        if (r->kind != REQ_FETCH || r->attempts > c->o.get_retries)
                return false;
        for (unsigned i = 1; i < r->attempts; i++)
                wait *= 2;
        req_detach(c, r);
        r->not_before_ms = time_monotonic_ms() + wait;
        list_append(&c->queued, r);
        return true;
}

static bool json_content(CURL *e)
{
        char *type = NULL;

        curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &type);
        return type && strncasecmp(type, "application/json", 16) == 0 &&
               (type[16] == '\0' || type[16] == ';' || type[16] == ' ');
}

/* A 2xx: a charge by the webhook's rules, of the id asked for, or nothing. */
static void take_charge(struct api_client *c, struct req *r, struct api_result *res)
{
        char detail[160];

        if (!json_content(r->easy)) {
                res->error = -EBADMSG;
                snprintf(res->detail, sizeof(res->detail), "answer is not application/json");
                return;
        }
        if (charge_parse(r->buf, r->len, c->o.order_ref_field, &res->charge, detail,
                         sizeof(detail)) < 0) {
                res->error = -EBADMSG;
                snprintf(res->detail, sizeof(res->detail), "answer is not a valid charge: %s",
                         detail);
        } else if (r->kind == REQ_FETCH && strcmp(res->charge.id, r->charge_id) != 0) {
                res->error = -EBADMSG;
                snprintf(res->detail, sizeof(res->detail), "answer is another charge");
        } else if (r->kind == REQ_CREATE && !res->charge.transaction_url) {
                res->error = -EBADMSG;
                snprintf(res->detail, sizeof(res->detail), "created charge has no "
                         "transaction_url");
        } else {
                res->has_charge = true;
                return;
        }
        charge_clear(&res->charge);
}

/* A 401: renew once and try again with the new token, then give up. */
static bool retry_after_401(struct api_client *c, struct req *r)
{
        if (r->retried_401)
                return false;
        r->retried_401 = true;
        token_rejected(&c->tok, r->token_generation);
        req_detach(c, r);
        r->not_before_ms = 0;
        if (r->kind == REQ_CREATE)
                r->attempts--; /* not sent as far as a charge goes: refused unread */
        list_append(&c->queued, r);
        return true;
}

static int error_of(CURLcode rc, const struct req *r)
{
        if (r->too_big || rc == CURLE_FILESIZE_EXCEEDED)
                return -EFBIG;
        switch (rc) {
        case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
        case CURLE_WEIRD_SERVER_REPLY: return -EPROTO;
        case CURLE_OUT_OF_MEMORY: return -ENOMEM;
        default: return -EIO;
        }
}

static void request_done(struct api_client *c, struct req *r, CURLcode rc)
{
        struct api_result res = { 0 };
        long status = 0;

        count_connects(c, r->easy, true);
        report_attempt(c, r->easy, r->kind == REQ_FETCH ? "charges.get" : "charges.create");
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK) {
                if (!r->too_big && retry_later(c, r))
                        return;
                res.error = error_of(rc, r);
                snprintf(res.detail, sizeof(res.detail), "%s", transport_detail(rc, r));
                req_finish(c, r, &res);
                return;
        }
        res.http_status = (int) status;
        res.body = r->buf;
        res.body_len = r->len;
        if (status == 401 && retry_after_401(c, r))
                return;
        if ((status >= 500 || status == 429) && retry_later(c, r))
                return;
        if (status >= 300 && status < 400) {
                res.error = -EPROTO;
                snprintf(res.detail, sizeof(res.detail), "answered %ld: redirects are refused",
                         status);
        } else if (status == 401) {
                res.error = -EACCES;
                snprintf(res.detail, sizeof(res.detail), "answered 401 even with a renewed "
                         "token");
        } else if (status >= 200 && status < 300) {
                take_charge(c, r, &res);
        } else {
                snprintf(res.detail, sizeof(res.detail), "answered %ld", status);
        }
        req_finish(c, r, &res);
}

static void collect(struct api_client *c)
{
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(c->multi, &left))) {
                struct req *r = NULL;

                if (m->msg != CURLMSG_DONE)
                        continue;
                if (m->easy_handle == c->token_req.easy) {
                        token_request_done(c, m->data.result);
                        continue;
                }
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &r);
                list_remove(&c->active, r);
                c->n_active--;
                request_done(c, r, m->data.result);
        }
}

/* ---- the loop ----------------------------------------------------------- */

static void ensure_token(struct api_client *c, int64_t now)
{
        if (c->o.token_file) {
                token_file_refresh(c, now);
                return;
        }
        if (token_start_renewal(&c->tok, now))
                start_token_request(c);
}

/* No token now and none coming soon: fail at once rather than wait. */
static bool token_hopeless(const struct api_client *c, int64_t now)
{
        if (c->o.token_file)
                return !c->tok.token;
        return !c->tok.renewing && c->tok.retry_at_ms > now;
}

static void schedule(struct api_client *c, int64_t now)
{
        struct req *r = c->queued, *next;

        if (c->queued)
                ensure_token(c, now);
        for (; r; r = next) {
                next = r->next;
                if (r->not_before_ms > now)
                        continue;
                if (!token_usable(&c->tok, now)) {
                        if (!token_hopeless(c, now))
                                continue;
                        list_remove(&c->queued, r);
                        req_fail(c, r, -EAGAIN, "no API token: %s", c->token_detail);
                        continue;
                }
                if (c->n_active >= c->o.max_inflight)
                        break;
                list_remove(&c->queued, r);
                if (start_request(c, r) < 0) {
                        req_fail(c, r, -ENOMEM, "request could not be made");
                        continue;
                }
                list_append(&c->active, r);
                c->n_active++;
        }
}

/*
 * How long the loop may sleep. Called after schedule(): a queued request
 * that is due now waits for a slot (max_inflight) or for a token, and
 * either comes with an event that ends the poll by itself (an answer on
 * a socket, the token's timers), so only a retry's later start time
 * counts here. Counting the due ones too made the loop spin without
 * sleeping whenever requests queued for a slot.
 */
static int poll_timeout(const struct api_client *c, int64_t now)
{
        int64_t next = now + POLL_MAX_MS, t;

        for (const struct req *r = c->queued; r; r = r->next)
                if (r->not_before_ms > now && r->not_before_ms < next)
                        next = r->not_before_ms;
        t = token_next_event_ms(&c->tok);
        if (c->queued && t < next)
                next = t;
        return next <= now ? 0 : (int) (next - now);
}

static void cancel_all(struct api_client *c)
{
        struct req *lists[] = { c->active, c->queued, NULL }, *r, *next;

        pthread_mutex_lock(&c->lock);
        lists[2] = c->incoming;
        c->incoming = NULL;
        pthread_mutex_unlock(&c->lock);
        c->active = c->queued = NULL;
        for (size_t i = 0; i < 3; i++) {
                for (r = lists[i]; r; r = next) {
                        next = r->next;
                        req_fail(c, r, -ECANCELED, "the client is stopping");
                }
        }
        req_detach(c, &c->token_req);
}

static void *run(void *userdata)
{
        struct api_client *c = userdata;
        int running;

        for (;;) {
                int64_t now;
                bool stop;

                pthread_mutex_lock(&c->lock);
                stop = c->stop;
                pthread_mutex_unlock(&c->lock);
                if (stop)
                        break;
                take_incoming(c);
                now = time_monotonic_ms();
                schedule(c, now);
                curl_multi_perform(c->multi, &running);
                collect(c);
                schedule(c, time_monotonic_ms());
                curl_multi_poll(c->multi, NULL, 0, poll_timeout(c, time_monotonic_ms()), NULL);
        }
        cancel_all(c);
        return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

void api_options_from_config(const struct config *cfg, struct api_options *ret)
{
        *ret = (struct api_options) {
                .api_url = cfg->cashpay.api_url,
                .token_file = cfg->cashpay.token_file,
                .token_url = cfg->cashpay.token_url,
                .client_id = cfg->cashpay.client_id,
                .client_secret_file = cfg->cashpay.client_secret_file,
                .token_lifetime = cfg->cashpay.token_lifetime,
                .refresh_margin = cfg->cashpay.refresh_margin,
                .request_timeout = cfg->cashpay.request_timeout,
                .max_inflight = cfg->cashpay.max_inflight,
                .max_response = cfg->cashpay.max_response,
                .order_ref_field = cfg->webhook.order_ref_field,
                .get_retries = API_GET_RETRIES,
        };
}

static int dup_opt(const char *in, char **out)
{
        *out = NULL;
        if (!in || !*in)
                return 0;
        *out = strdup(in);
        return *out ? 0 : -ENOMEM;
}

/* token_url: the Basic header from client_id and the secret file's first line. */
static int load_client_secret(struct api_client *c, char *err, size_t err_len)
{
        char buf[TOKEN_FILE_MAX];
        size_t len = 0, n;
        int r;

        r = read_small_file(c->o.client_secret_file, buf, sizeof(buf) - 1, &len);
        if (r < 0)
                return err_set(err, err_len, -EINVAL, "client secret file %s: %s",
                               c->o.client_secret_file, strerror(-r));
        buf[len] = '\0';
        n = strcspn(buf, "\r\n");
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                buf[--n] = '\0';
        r = n == 0 ? -EINVAL : token_basic_auth(c->o.client_id, buf, &c->basic_auth);
        explicit_bzero(buf, sizeof(buf));
        if (r < 0)
                return err_set(err, err_len, r, "client secret file %s: %s",
                               c->o.client_secret_file, r == -EINVAL ? "empty" : strerror(-r));
        return 0;
}

static int copy_options(struct api_client *c, const struct api_options *o)
{
        int r;

        c->o = *o;
        c->o.api_url = c->o.token_file = c->o.token_url = c->o.client_id = NULL;
        c->o.client_secret_file = c->o.order_ref_field = NULL;
        if ((r = dup_opt(o->api_url, (char **) &c->o.api_url)) < 0 ||
            (r = dup_opt(o->token_file, (char **) &c->o.token_file)) < 0 ||
            (r = dup_opt(o->token_url, (char **) &c->o.token_url)) < 0 ||
            (r = dup_opt(o->client_id, (char **) &c->o.client_id)) < 0 ||
            (r = dup_opt(o->client_secret_file, (char **) &c->o.client_secret_file)) < 0 ||
            (r = dup_opt(o->order_ref_field, (char **) &c->o.order_ref_field)) < 0)
                return r;
        c->max_response = o->max_response ? o->max_response : 1048576;
        if (c->o.max_inflight == 0)
                c->o.max_inflight = 1;
        if (c->o.request_timeout == 0)
                c->o.request_timeout = 10;
        return 0;
}

static void free_options(struct api_client *c)
{
        free((char *) c->o.api_url);
        free((char *) c->o.token_file);
        free((char *) c->o.token_url);
        free((char *) c->o.client_id);
        free((char *) c->o.client_secret_file);
        free((char *) c->o.order_ref_field);
        token_wipe_free(c->basic_auth);
}

static int check_options(const struct api_options *o, char *err, size_t err_len)
{
        if (!o->api_url || !*o->api_url)
                return err_set(err, err_len, -EINVAL, "no api_url");
        if (!o->token_file == !o->token_url)
                return err_set(err, err_len, -EINVAL, "exactly one of token_file and token_url "
                               "is needed");
        if (o->token_url && (!o->client_id || !o->client_secret_file))
                return err_set(err, err_len, -EINVAL, "token_url needs client_id and "
                               "client_secret_file");
        return 0;
}

int api_client_new(const struct api_options *o, struct api_client **ret, char *err,
                   size_t err_len)
{
        struct api_client *c;
        int r;

        *ret = NULL;
        r = check_options(o, err, err_len);
        if (r < 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return err_set(err, err_len, -ENOMEM, "libcurl could not start");
        c = calloc(1, sizeof(*c));
        if (!c)
                return err_set(err, err_len, -ENOMEM, "out of memory");
        pthread_mutex_init(&c->lock, NULL);
        r = copy_options(c, o);
        if (r >= 0 && c->o.token_url)
                r = load_client_secret(c, err, err_len);
        else if (r < 0)
                err_set(err, err_len, r, "out of memory");
        if (r >= 0) {
                c->multi = curl_multi_init();
                if (!c->multi)
                        r = err_set(err, err_len, -ENOMEM, "libcurl could not start");
        }
        if (r >= 0) {
                /* Connections to CashPay stay open for the next request. The
                 * cache is sized too: by default libcurl keeps 4 per easy
                 * handle added at the time, and ours come and go with their
                 * requests, so a lull shrank the cache and the next burst
                 * connected anew (40 connects per 1,000 requests at 3,000/s,
                 * see bench/README.md). */
                curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                                  (long) c->o.max_inflight + 1);
                curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, (long) c->o.max_inflight + 1);
                r = -pthread_create(&c->thread, NULL, run, c);
                if (r < 0)
                        err_set(err, err_len, r, "cannot start the API thread");
        }
        if (r < 0) {
                if (c->multi)
                        curl_multi_cleanup(c->multi);
                free_options(c);
                pthread_mutex_destroy(&c->lock);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void api_client_free(struct api_client *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_mutex_unlock(&c->lock);
        curl_multi_wakeup(c->multi);
        pthread_join(c->thread, NULL);
        curl_multi_cleanup(c->multi);
        token_state_clear(&c->tok);
        free_options(c);
        pthread_mutex_destroy(&c->lock);
        free(c);
}
