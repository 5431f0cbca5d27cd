/*
 * token — the bookkeeping around the CashPay API's bearer token (CONTRACT
 * §8.2): when to renew, that only one renewal runs however many requests
 * wait, the backoff of a failing token endpoint, a forced renewal after a
 * 401, and reading what a token endpoint or a token file holds.
 *
 * Pure: no network, no files, no clock (every call takes @now_ms), no
 * logging. The API client (api.h) owns one struct token_state and does the
 * I/O this module asks for.
 *
 * A token is a secret: nothing here copies it anywhere but the state it
 * lives in, and token_state_clear() wipes it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cashpay/util.h"

#define TOKEN_MAX 4096                 /* bytes of a bearer token */
#define TOKEN_BACKOFF_FIRST_MS 1000    /* a failing token endpoint: 1 s, */
#define TOKEN_BACKOFF_MAX_MS 60000     /* doubling up to 60 s */
#define TOKEN_EXPIRES_IN_MAX 31536000  /* a year: anything longer is nonsense */

struct token_state {
        char *token;            /* owned; NULL while there is none */
        uint64_t generation;    /* +1 per token taken; names "the token a request used" */
        int64_t expires_at_ms;  /* when it stops working */
        int64_t renew_at_ms;    /* refresh_margin before that */
        bool renewing;          /* one renewal request is in flight */
        unsigned failures;      /* renewals failed in a row */
        int64_t retry_at_ms;    /* no renewal before this after a failure */
};

/* token_state_clear() - wipe and free the token; the state is as new. */
void token_state_clear(struct token_state *t);

/* token_usable() - is there a token that has not expired at @now_ms? */
bool token_usable(const struct token_state *t, int64_t now_ms);

/*
 * token_start_renewal() - should the caller send a renewal request now?
 * True (and the state marks one in flight) when none is in flight, the
 * token is missing or due (renew_at passed), and the backoff allows it.
 * Every other caller waits for that one's result.
 */
bool token_start_renewal(struct token_state *t, int64_t now_ms);

/*
 * token_renewed() - the renewal succeeded with @token (copied; the state
 * takes it over). @expires_in_s < 0: the endpoint did not say, use
 * @lifetime_s. Renewal becomes due @margin_s before expiry (at once when
 * the token lives less than the margin). Returns 0 or -ENOMEM / -EINVAL.
 */
int token_renewed(struct token_state *t, const char *token, int64_t expires_in_s,
                  unsigned lifetime_s, unsigned margin_s, int64_t now_ms);

/*
 * token_renewal_failed() - the renewal failed: the next one waits 1 s,
 * then 2, 4, … up to 60 s after each failure in a row. A token that has not
 * expired yet stays usable meanwhile.
 */
void token_renewal_failed(struct token_state *t, int64_t now_ms);

/*
 * token_rejected() - the API answered 401 to a request sent with token
 * @generation. When that is still the current token it is dropped and a
 * renewal becomes due at once (bypassing the backoff: one forced renewal);
 * when a newer token exists already, nothing changes. Returns true when
 * the caller should retry the request (once) with whatever token comes.
 */
bool token_rejected(struct token_state *t, uint64_t generation);

/* token_next_event_ms() - the next time the state wants attention (renewal
 * due or backoff over), or INT64_MAX. For the client's poll timeout. */
int64_t token_next_event_ms(const struct token_state *t);

/*
 * token_parse_response() - an OAuth2 token endpoint's 200 answer (RFC 6749
 * §5.1): a JSON object with access_token (a non-empty string of RFC 6750
 * b64token characters, at most TOKEN_MAX bytes), token_type "Bearer" (any
 * case) and an optional expires_in (integer, 1 to TOKEN_EXPIRES_IN_MAX).
 * @ret_token: malloc'd copy. @ret_expires_in: -1 when absent.
 * @err: on -EINVAL, what was wrong (never the token itself).
 * Returns 0, -EINVAL or -ENOMEM.
 */
int token_parse_response(const void *body, size_t len, char **ret_token, int64_t *ret_expires_in,
                         char *err, size_t err_len);

/*
 * token_from_file() - the token a token file holds: its content with
 * surrounding blanks (and a final newline) trimmed, one line of b64token
 * characters. Returns 0, -EINVAL (empty, several lines, other characters,
 * too long; @err says which) or -ENOMEM.
 */
int token_from_file(const void *content, size_t len, char **ret_token, char *err,
                    size_t err_len);

/*
 * token_basic_auth() - the Authorization header value for client
 * credentials by HTTP Basic (RFC 6749 §2.3.1: id and secret each
 * form-urlencoded, then "id:secret" base64). @ret: malloc'd "Basic …".
 * Returns 0 or -ENOMEM.
 */
int token_basic_auth(const char *client_id, const char *secret, char **ret);

/* token_wipe_free() - zero a secret string, then free it; NULL-safe. */
void token_wipe_free(char *s);
DEFINE_FREEP(char, token_wipe_free)
