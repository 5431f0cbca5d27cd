/*
 * page — the customer-facing return page, rendered to self-contained HTML.
 *
 * Pure: takes what the store said about the order, returns bytes. Every
 * dynamic value is HTML-escaped here; nothing else builds HTML.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum page_kind {
        PAGE_SUCCESS,     /* CAPTURED */
        PAGE_FAILED,      /* FAILED */
        PAGE_PENDING,     /* INITIATED or not yet known: refreshes itself */
        PAGE_BAD_REQUEST, /* missing or malformed charge id */
};

/* Seconds between reloads of the pending page when page_info.refresh is 0. */
#define PAGE_REFRESH_DEFAULT 3u
/* Upper bound for page_info.refresh; larger values are clamped. */
#define PAGE_REFRESH_MAX 3600u
/* Large enough for any page_format_amount() result of a 3-letter currency. */
#define PAGE_AMOUNT_MAX 48

struct page_info {
        enum page_kind kind;
        const char *shop_name;    /* NULL or "": no shop line */
        const char *charge_id;    /* NULL for PAGE_BAD_REQUEST */
        bool has_amount;          /* amount/currency known */
        int64_t amount;           /* >= 0 */
        const char *currency;
        bool minor_units;         /* amount is in the currency's minor unit */
        unsigned refresh;         /* PAGE_PENDING: seconds (0: default, clamped to MAX) */
        const char *order_ref;    /* NULL: not shown */
        const char *description;  /* NULL: not shown */
};

/*
 * page_render() - malloc'ed HTML in @ret (NUL-terminated), length in
 * @ret_len; the caller frees @ret. @ret_len may be NULL.
 * Returns 0, -EINVAL (unknown kind, negative amount) or -ENOMEM.
 */
int page_render(const struct page_info *info, char **ret, size_t *ret_len);

/* page_http_status() - 200, or 400 for PAGE_BAD_REQUEST. */
unsigned page_http_status(enum page_kind kind);

/*
 * page_expand_url() - substitute {charge_id} and {order_ref} (percent-encoded,
 * RFC 3986 unreserved set kept) in @tmpl; the result is malloc'ed in @ret.
 * A NULL charge_id or order_ref expands to "". Any other "{", and a stray
 * "}", make the template invalid, so calling this with dummy values also
 * validates a configured template.
 * Returns 0, -EINVAL (unknown {placeholder}, unbalanced brace) or -ENOMEM.
 */
int page_expand_url(const char *tmpl, const char *charge_id, const char *order_ref, char **ret);

/*
 * page_format_amount() - "YER 2,000" or, with minor units, "USD 20.00"
 * (ISO 4217 exponent; 2 for codes the table does not list). A NULL or empty
 * currency gives the number alone. Returns 0, -EINVAL (negative amount) or
 * -ENOBUFS.
 */
int page_format_amount(int64_t amount, const char *currency, bool minor_units,
                       char *buf, size_t len);

/* The security headers every page (and the status endpoint) carries. */
struct page_header {
        const char *name;
        const char *value;
};
const struct page_header *page_security_headers(size_t *ret_n);
