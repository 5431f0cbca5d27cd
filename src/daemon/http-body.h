/*
 * http-body — a request body as libmicrohttpd hands it over, piece by
 * piece, kept up to a limit. Past the limit nothing more is kept: the body
 * is too large from then on and what still comes is only counted, so that
 * the listener can answer 413 and decide how much more to read away.
 * Shared by the webhook and the checkout listener.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_body {
        uint8_t *data;     /* malloc'd, @len bytes (not NUL-terminated) */
        size_t len, cap;
        bool too_large;    /* a piece would have passed the limit */
        size_t discarded;  /* bytes thrown away since */
};

/*
 * http_body_append() - keep @size bytes of @data, unless the body would
 * then be longer than @max: then it is too_large and those bytes (and all
 * that follow) are counted in discarded. The buffer never grows past
 * @max. Returns 0 or -ENOMEM.
 */
int http_body_append(struct http_body *b, const char *data, size_t size, size_t max);

/* http_body_clear() - free what was kept; the body is empty again. */
void http_body_clear(struct http_body *b);
