/*
 * api — the only client of CashPay (CONTRACT §8.1, §8.2).
 *
 * One thread runs a libcurl multi loop: many requests at once without a
 * thread each, connections kept alive and reused, at most max_inflight
 * requests on the wire, the rest queued. Fetches of one charge that overlap
 * are one request whose result every caller gets. GETs that fail for want
 * of an answer (refused, timed out, 5xx) are retried with backoff; POSTs
 * are not (the caller retries later with the same Idempotency-Key).
 * Redirects are refused, answers are capped at max_response bytes, and a
 * 2xx answer is a charge only once it passed charge_parse(), the rules a
 * webhook passes; anything else is reported, never handed on as a charge.
 *
 * The token (token.h) comes from a token file, re-read when it changes,
 * or from an OAuth2 token endpoint; a 401 renews it once and retries once.
 * While the token endpoint fails (backing off), requests fail at once with
 * -EAGAIN instead of waiting.
 *
 * Calls return at once; results arrive through a callback on the client's
 * thread, which must only hand them on (queue, signal) and never block.
 * Nothing here touches the database. Tokens and secrets are never logged
 * and never appear in a result.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/charge.h"
#include "cashpay/config.h"
#include "cashpay/util.h"

struct api_client;

/* A failing GET is sent again API_GET_RETRIES times, after
 * API_GET_RETRY_FIRST_MS, then twice as long each time (250 ms, 500 ms). */
#define API_GET_RETRIES 2u
#define API_GET_RETRY_FIRST_MS 250

struct api_options {
        const char *api_url;            /* base, no final '/' */
        const char *token_file;         /* one of token_file, */
        const char *token_url;          /* token_url (with client_id and the secret file) */
        const char *client_id;
        const char *client_secret_file;
        unsigned token_lifetime;        /* seconds */
        unsigned refresh_margin;        /* seconds */
        unsigned request_timeout;       /* seconds, connect included */
        unsigned max_inflight;
        size_t max_response;            /* bytes */
        const char *order_ref_field;    /* as for charge_parse(), or NULL */
        unsigned get_retries;           /* further attempts of a failing GET */
        /* Optional, for metrics: runs on the client's thread after every
         * attempt on the wire (retries and token requests included) and
         * must only count. @endpoint is "charges.get", "charges.create" or
         * "token"; @http_status 0 when nothing was answered. */
        void (*on_attempt)(const char *endpoint, int http_status, int64_t duration_us,
                           void *data);
        void *on_attempt_data;
};

/* api_options_from_config() - the options [cashpay] and [webhook] give
 * (borrowing @cfg's strings: they must outlive the call to api_client_new()). */
void api_options_from_config(const struct config *cfg, struct api_options *ret);

/*
 * What became of a request. @error < 0: no usable answer (-ETIMEDOUT,
 * -ECONNREFUSED, -EFBIG too big, -EPROTO a redirect or broken HTTP,
 * -EACCES 401 even with a renewed token, -EAGAIN no token to be had now,
 * -ECANCELED client stopping, -EBADMSG a 2xx that is not a valid charge,
 * -EIO anything else). @error == 0: @http_status is CashPay's answer, and
 * for a 2xx @charge holds the valid charge.
 */
struct api_result {
        int error;
        int http_status;                /* 0 when nothing was answered */
        bool has_charge;
        struct charge charge;           /* has_charge; freed after the callback */
        const uint8_t *body;            /* the raw answer, valid during the callback */
        size_t body_len;
        char detail[200];               /* a sentence for logs and rows; never a secret */
        int64_t duration_ms;            /* from asking to the result, retries included */
};

typedef void (*api_done_fn)(const struct api_result *r, void *userdata);

/*
 * api_client_new() - check @o, start the client's thread. No request is
 * made yet (the first one fetches a token). @err: why not.
 * Returns 0, -EINVAL or -ENOMEM.
 */
int api_client_new(const struct api_options *o, struct api_client **ret, char *err,
                   size_t err_len);

/* api_client_free() - stop the thread; requests still open end with
 * -ECANCELED (their callbacks run first). NULL-safe. */
void api_client_free(struct api_client *c);
DEFINE_FREEP(struct api_client, api_client_free)

/*
 * api_fetch_charge() - GET {api_url}/charges/@charge_id; @done runs once
 * with the result. A fetch of the same charge already queued or in flight
 * is joined instead of sending another. Returns 0, -EINVAL (bad id) or
 * -ENOMEM (then @done never runs).
 */
int api_fetch_charge(struct api_client *c, const char *charge_id, api_done_fn done,
                     void *userdata);

/*
 * api_create_charge() - POST {api_url}/charges with @json_body and
 * @idempotency_key, once (no retry). A 200/201 must carry a charge with a
 * transaction_url to count. Returns 0, -EINVAL or -ENOMEM.
 */
int api_create_charge(struct api_client *c, const char *json_body, const char *idempotency_key,
                      api_done_fn done, void *userdata);

/* What the client has seen, for metrics and `cashpayctl api check`. */
struct api_stats {
        uint64_t requests;          /* sent to the API, retries included */
        uint64_t connects;          /* new TCP connections, token endpoint included */
        uint64_t token_renewals_ok;
        uint64_t token_renewals_failed;
        int64_t token_expires_at_ms; /* 0: no token now; INT64_MAX: a token file's */
        char token_error[200];      /* why the last renewal failed, "" after a success */
};

void api_client_stats(struct api_client *c, struct api_stats *ret);
