/*
 * http-body — request bodies kept up to a limit; see http-body.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "src/daemon/http-body.h"

/* Most bodies (a webhook, a charge request) fit in the first buffer. */
#define FIRST_CAP 4096

int http_body_append(struct http_body *b, const char *data, size_t size, size_t max)
{
        /* (len > max: the limit was lowered by a reload meanwhile) */
        if (b->too_large || b->len > max || size > max - b->len) {
                b->too_large = true;
                b->discarded += size;
                return 0;
        }
        if (b->len + size > b->cap) {
                size_t cap = b->cap ? b->cap : FIRST_CAP;
                uint8_t *grown;

                while (cap < b->len + size)
                        cap *= 2;
                if (cap > max)
                        cap = max;
                grown = realloc(b->data, cap);
                if (!grown)
                        return -ENOMEM;
                b->data = grown;
                b->cap = cap;
        }
        memcpy(b->data + b->len, data, size);
        b->len += size;
        return 0;
}

void http_body_clear(struct http_body *b)
{
        free(b->data);
        *b = (struct http_body) { 0 };
}
