/*
 * http-framing — the request-smuggling checks of the public listener.
 *
 * libmicrohttpd accepts some framings by itself that a front proxy may read
 * differently: two Content-Length headers, Content-Length together with
 * chunked, a transfer coding other than plain chunked (which it would read
 * as "no body"), whitespace before the colon (kept as part of the name) and
 * obs-fold continuation lines (RFC 9112 lets a server refuse both;
 * libmicrohttpd misreads the latter). Every such request is refused 400,
 * on every path.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct MHD_Connection;

/* What the header fields of one request say about its framing. */
struct http_framing {
        unsigned content_length_headers;
        unsigned transfer_encoding_headers;
        bool bad_coding;  /* a Transfer-Encoding other than "chunked" alone */
        bool bad_line;    /* a header line we cannot trust libmicrohttpd's reading of */
};

/*
 * http_framing_add() - account for one header field as libmicrohttpd hands
 * it over: @key (@key_len bytes) and @value point into the request buffer,
 * where an unfolded line keeps name, NUL, blanks and value side by side.
 */
void http_framing_add(struct http_framing *f, const char *key, size_t key_len, const char *value,
                      size_t value_len);

/* http_framing_bad() - whether the fields added so far make the framing ambiguous. */
bool http_framing_bad(const struct http_framing *f);

/* http_framing_ambiguous() - the same over all header fields of @conn. */
bool http_framing_ambiguous(struct MHD_Connection *conn);

/* http_content_type_is_json() - "application/json", any case, optionally
 * followed by parameters. */
bool http_content_type_is_json(const char *value);

/* http_declared_too_large() - Content-Length says more than @max_body
 * (or more than fits in an unsigned long long). */
bool http_declared_too_large(struct MHD_Connection *conn, size_t max_body);
