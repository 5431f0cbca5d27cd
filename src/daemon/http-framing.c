/*
 * http-framing — is this request's framing one we can trust? See
 * http-framing.h. No state, no allocation: checks over the header fields
 * libmicrohttpd has parsed.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/daemon/http-framing.h"

/* RFC 9110 token characters, what a field name is made of. */
static bool is_token(const char *s, size_t n)
{
        static const char extra[] = "!#$%&'*+-.^_`|~";

        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                             (c >= 'A' && c <= 'Z');
                if (!alnum && (c == '\0' || !strchr(extra, c)))
                        return false;
        }
        return n > 0;
}

/*
 * libmicrohttpd 0.9.75 joins an obs-fold continuation line onto the field
 * *name* ("X-A: 1\r\n b" arrives as "X-Ab: 1"), copying the name elsewhere.
 * An unfolded line leaves name, NUL (where the colon was), blanks and value
 * side by side in the request buffer; a folded one does not.
 */
#define MAX_BLANKS_AFTER_COLON 256

static bool was_folded(const char *key, size_t key_len, const char *value)
{
        uintptr_t after = (uintptr_t) key + key_len + 1, v = (uintptr_t) value;

        if (v < after || v - after > MAX_BLANKS_AFTER_COLON)
                return true;
        for (const char *p = key + key_len + 1; p < value; p++)
                if (*p != ' ' && *p != '\t')
                        return true;
        return false;
}

static bool is_plain_chunked(const char *value, size_t len)
{
        while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
                len--;
        return len == 7 && strncasecmp(value, "chunked", 7) == 0;
}

void http_framing_add(struct http_framing *f, const char *key, size_t key_len, const char *value,
                      size_t value_len)
{

        if (!is_token(key, key_len) || !value || was_folded(key, key_len, value))
                f->bad_line = true;
        else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
                f->content_length_headers++;
        else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
                f->transfer_encoding_headers++;
                f->bad_coding |= !is_plain_chunked(value, value_len);
        }
}

bool http_framing_bad(const struct http_framing *f)
{
        return f->bad_line || f->bad_coding || f->content_length_headers > 1 ||
               f->transfer_encoding_headers > 1 ||
               (f->content_length_headers > 0 && f->transfer_encoding_headers > 0);
}

static enum MHD_Result add_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_len, const char *value, size_t value_len)
{
        http_framing_add(cls, key, key_len, value, value_len);
        return MHD_YES;
}

/*
 * Request smuggling shapes libmicrohttpd accepts by itself: two
 * Content-Length headers, Content-Length together with chunked, a transfer
 * coding other than plain chunked (which it would read as "no body"), and
 * header lines a front proxy may read differently: whitespace before the
 * colon (kept as part of the name) and obs-fold (RFC 9112 lets a server
 * refuse both; libmicrohttpd misreads the latter).
 */
bool http_framing_ambiguous(struct MHD_Connection *conn)
{
        struct http_framing f = { 0 };

        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, add_field, &f);
        return http_framing_bad(&f);
}

/* "application/json", any case, optionally followed by parameters. */
bool http_content_type_is_json(const char *value)
{
        static const char json[] = "application/json";
        size_t n = sizeof(json) - 1;

        if (!value || strncasecmp(value, json, n) != 0)
                return false;
        value += n;
        while (*value == ' ' || *value == '\t')
                value++;
        return *value == '\0' || *value == ';';
}

bool http_declared_too_large(struct MHD_Connection *conn, size_t max_body)
{
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        char *end;

        if (!cl)
                return false;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        /* A malformed length never reaches here: MHD answers 400 itself. */
        return errno == ERANGE || end == cl || n > max_body;
}
