/*
 * token — when to renew the bearer token and what a token answer holds.
 * See include/cashpay/token.h; the I/O is the API client's.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>

#include "cashpay/token.h"
#include "cashpay/util.h"

void token_wipe_free(char *s)
{
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

void token_state_clear(struct token_state *t)
{
        token_wipe_free(t->token);
        *t = (struct token_state) { 0 };
}

bool token_usable(const struct token_state *t, int64_t now_ms)
{
        return t->token && now_ms < t->expires_at_ms;
}

bool token_start_renewal(struct token_state *t, int64_t now_ms)
{
        if (t->renewing || now_ms < t->retry_at_ms)
                return false;
        if (t->token && now_ms < t->renew_at_ms)
                return false;
        t->renewing = true;
        return true;
}

int token_renewed(struct token_state *t, const char *token, int64_t expires_in_s,
                  unsigned lifetime_s, unsigned margin_s, int64_t now_ms)
{
        int64_t life = expires_in_s < 0 ? (int64_t) lifetime_s : expires_in_s;
        char *copy;

        if (!token || !token[0])
                return -EINVAL;
        copy = strdup(token);
        if (!copy)
                return -ENOMEM;
        token_wipe_free(t->token);
        t->token = copy;
        t->generation++;
        t->expires_at_ms = now_ms + life * 1000;
        /* a token shorter-lived than the margin is renewed at half its life */
        t->renew_at_ms = life > (int64_t) margin_s ? t->expires_at_ms - (int64_t) margin_s * 1000
                                                   : now_ms + life * 500;
        t->renewing = false;
        t->failures = 0;
        t->retry_at_ms = 0;
        return 0;
}

void token_renewal_failed(struct token_state *t, int64_t now_ms)
{
        int64_t wait = TOKEN_BACKOFF_FIRST_MS;

        for (unsigned i = 0; i < t->failures && wait < TOKEN_BACKOFF_MAX_MS; i++)
                wait *= 2;
        if (wait > TOKEN_BACKOFF_MAX_MS)
                wait = TOKEN_BACKOFF_MAX_MS;
        t->failures++;
        t->renewing = false;
        t->retry_at_ms = now_ms + wait;
}

bool token_rejected(struct token_state *t, uint64_t generation)
{
        if (generation != t->generation || !t->token)
                return true; /* a newer token is there, or one is coming */
        token_wipe_free(t->token);
        t->token = NULL;
        t->renew_at_ms = 0;
        t->retry_at_ms = 0; /* forced: the backoff is for a failing endpoint */
        return true;
}

int64_t token_next_event_ms(const struct token_state *t)
{
        int64_t next;

        if (t->renewing)
                return INT64_MAX;
        next = t->token ? t->renew_at_ms : 0;
        return next > t->retry_at_ms ? next : t->retry_at_ms;
}

/* RFC 6750 §2.1 b64token: ALPHA DIGIT "-" "." "_" "~" "+" "/", then "="s. */
static bool b64token_valid(const char *s, size_t n)
{
        size_t i = 0;

        if (n == 0 || n > TOKEN_MAX)
                return false;
        for (; i < n && s[i] != '='; i++) {
                char c = s[i];

                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                      (c >= '0' && c <= '9') || (c && strchr("-._~+/", c))))
                        return false;
        }
        if (i == 0)
                return false;
        for (; i < n; i++)
                if (s[i] != '=')
                        return false;
        return true;
}

static int parse_expires_in(json_t *root, int64_t *ret, char *err, size_t err_len)
{
        json_t *v = json_object_get(root, "expires_in");

        *ret = -1;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v))
                return err_set(err, err_len, -EINVAL, "expires_in is not an integer");
        if (json_integer_value(v) < 1 || json_integer_value(v) > TOKEN_EXPIRES_IN_MAX)
                return err_set(err, err_len, -EINVAL, "expires_in is out of range");
        *ret = json_integer_value(v);
        return 0;
}

int token_parse_response(const void *body, size_t len, char **ret_token, int64_t *ret_expires_in,
                         char *err, size_t err_len)
{
        _cleanup_(json_decrefp) json_t *root = NULL;
        json_t *tok, *type;
        int r;

        *ret_token = NULL;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!root || !json_is_object(root))
                return err_set(err, err_len, -EINVAL, "answer is not a JSON object");
        tok = json_object_get(root, "access_token");
        if (!json_is_string(tok))
                return err_set(err, err_len, -EINVAL, "access_token is missing or not a string");
        if (!b64token_valid(json_string_value(tok), json_string_length(tok)))
                return err_set(err, err_len, -EINVAL, "access_token is empty, too long or holds "
                               "characters a bearer token cannot");
        type = json_object_get(root, "token_type");
        if (!json_is_string(type) || strcasecmp(json_string_value(type), "Bearer") != 0)
                return err_set(err, err_len, -EINVAL, "token_type is not Bearer");
        r = parse_expires_in(root, ret_expires_in, err, err_len);
        if (r < 0)
                return r;
        *ret_token = strdup(json_string_value(tok));
        return *ret_token ? 0 : -ENOMEM;
}

static bool blank(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int token_from_file(const void *content, size_t len, char **ret_token, char *err,
                    size_t err_len)
{
        const char *s = content, *end = s + len;

        *ret_token = NULL;
        while (s < end && blank(*s))
                s++;
        while (end > s && blank(end[-1]))
                end--;
        if (s == end)
                return err_set(err, err_len, -EINVAL, "the token file is empty");
        if (!b64token_valid(s, (size_t) (end - s)))
                return err_set(err, err_len, -EINVAL, "the token file holds more than one line of "
                               "bearer token characters, or is too long");
        *ret_token = strndup(s, (size_t) (end - s));
        return *ret_token ? 0 : -ENOMEM;
}

/* application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks for both halves. */
static char *form_encode(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (c && strchr("-._*", c))) {
                        *o++ = (char) c;
                } else if (c == ' ') {
                        *o++ = '+';
                } else {
                        *o++ = '%';
                        *o++ = hex[c >> 4];
                        *o++ = hex[c & 15];
                }
        }
        *o = '\0';
        return out;
}

int token_basic_auth(const char *client_id, const char *secret, char **ret)
{
        _cleanup_(token_wipe_freep) char *id = form_encode(client_id);
        _cleanup_(token_wipe_freep) char *pw = form_encode(secret);
        _cleanup_(token_wipe_freep) char *pair = NULL;
        size_t n;
        char *out;

        *ret = NULL;
        if (!id || !pw || asprintf(&pair, "%s:%s", id, pw) < 0) {
                pair = NULL;
                return -ENOMEM;
        }
        n = strlen(pair);
        out = malloc(6 + 4 * ((n + 2) / 3) + 1);
        if (!out)
                return -ENOMEM;
        memcpy(out, "Basic ", 6);
        EVP_EncodeBlock((unsigned char *) out + 6, (const unsigned char *) pair, (int) n);
        *ret = out;
        return 0;
}
