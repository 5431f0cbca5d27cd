/*
 * config — the one place that knows cashpayd's configuration.
 *
 * Everything about a key lives in one row of the table below: its type,
 * default, bounds, whether SIGHUP may change it, and its documentation. The
 * parser, the defaults, reload checks, the example file and the man page are
 * all derived from that table, so they cannot disagree with each other.
 *
 * inih splits the file into sections and key/value pairs. Lines reach it
 * through our own reader, which counts lines (inih's callback does not get
 * the line number), removes comments and indentation itself (so the
 * behaviour does not depend on how inih was built: inline comments,
 * multi-line continuations) and rejects what inih would silently accept.
 */
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "cashpay/config.h"

#define OFF(field) offsetof(struct config, field)

/* Raw lines longer than this (comments included) are refused. */
#define RAW_LINE_MAX 4096
/* A config file has no business being longer than this. */
#define LINES_MAX 100000u
/* Upper bound on the rows of the table, for the per-parse bookkeeping. */
#define KEYS_MAX 64

/* Values are stored through int pointers; make sure that is their size. */
_Static_assert(sizeof(enum verify_scheme) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hmac_algorithm) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sig_encoding) == sizeof(int), "enum size");
_Static_assert(sizeof(enum db_synchronous) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");

static const int log_level_values[] = {
        LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_NOTICE, LOG_LEVEL_WARNING, LOG_LEVEL_ERR,
};

static const struct config_section sections[] = {
        { "http", "The public listener: CashPay's webhooks, the customer's return page "
                  "and the status endpoint." },
        { "admin", "The operator's listener: /healthz and /metrics." },
        { "webhook", "How webhooks are authenticated, filtered and recorded." },
        { "database", "The SQLite database that fulfilment code reads." },
        { "return", "The page the customer's browser comes back to after paying." },
        { "log", "Logging to the journal or standard error." },
};

static const struct config_key keys[] = {
        /* [http] */
        { .section = "http", .name = "listen", .type = CONFIG_LISTEN,
          .default_value = "0.0.0.0:8080", .min = 1, .max = CONFIG_LISTEN_MAX,
          .offset = OFF(http.listen),
          .doc = "Addresses the public listener binds: comma-separated host:port pairs with "
                 "numeric hosts, IPv6 addresses in brackets (e.g. 0.0.0.0:8080, [::]:8080). "
                 "Names are not resolved. Not used when systemd passes the listening sockets "
                 "(socket activation)." },
        { .section = "http", .name = "webhook_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/webhook", .max = 128, .offset = OFF(http.webhook_path),
          .doc = "Path of the webhook endpoint CashPay POSTs to (the charge's post_url)." },
        { .section = "http", .name = "return_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/return", .max = 128, .offset = OFF(http.return_path),
          .doc = "Path of the page the customer's browser returns to (the charge's "
                 "redirect_url), called with ?charge_id=CHARGE_ID." },
        { .section = "http", .name = "status_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/status", .max = 128, .offset = OFF(http.status_path),
          .doc = "Prefix of the JSON status endpoint, GET status_path/CHARGE_ID. The three "
                 "paths must differ, and neither webhook_path nor return_path may lie below "
                 "status_path." },
        { .section = "http", .name = "max_body", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "65536", .min = 1, .max = 16777216, .reloadable = true,
          .offset = OFF(http.max_body),
          .doc = "Largest webhook body accepted. A larger one is answered 413, decided from "
                 "Content-Length before reading, or as soon as a chunked body passes it." },
        { .section = "http", .name = "threads", .type = CONFIG_UINT,
          .default_value = "0", .min = 0, .max = 256, .offset = OFF(http.threads),
          .doc = "Threads serving HTTP requests; 0 starts one per CPU." },
        { .section = "http", .name = "max_connections", .type = CONFIG_UINT,
          .default_value = "1024", .min = 1, .max = 65536, .offset = OFF(http.max_connections),
          .doc = "Most connections open at once on the public listener; more are refused." },
        { .section = "http", .name = "timeout", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "10", .min = 1, .max = 3600, .reloadable = true,
          .offset = OFF(http.timeout),
          .doc = "How long a connection may stay idle before it is closed. A reload applies "
                 "to connections opened after it." },
        { .section = "http", .name = "trusted_proxies", .type = CONFIG_CIDRS,
          .default_value = "", .min = 0, .max = 1024, .reloadable = true,
          .offset = OFF(http.trusted_proxies),
          .doc = "Comma-separated CIDR ranges of reverse proxies in front of cashpayd. Only "
                 "for a request coming straight from one of them is X-Forwarded-For used: "
                 "the nearest address in it that is not itself a trusted proxy becomes the "
                 "remote address, checked against allow_from and recorded with the delivery. "
                 "Empty: X-Forwarded-For is ignored." },
        { .section = "http", .name = "max_queue", .type = CONFIG_UINT,
          .default_value = "4096", .min = 1, .max = 1048576, .offset = OFF(http.max_queue),
          .doc = "Most verified webhooks waiting for the database writer at once. When the "
                 "queue is full, further webhooks are answered 503 with Retry-After, and "
                 "CashPay sends them again later." },
        { .section = "http", .name = "max_header", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "8192", .min = 1024, .max = 1048576, .offset = OFF(http.max_header),
          .doc = "Largest request line plus headers of a request; larger requests are "
                 "refused." },

        /* [admin] */
        { .section = "admin", .name = "listen", .type = CONFIG_LISTEN,
          .default_value = "127.0.0.1:9180", .min = 0, .max = CONFIG_LISTEN_MAX,
          .offset = OFF(admin.listen),
          .doc = "Addresses of the admin listener serving /healthz and /metrics, written as "
                 "in [http] listen. Empty disables it. It has no authentication: keep it on "
                 "loopback or a private network." },

        /* [webhook] */
        { .section = "webhook", .name = "verify", .type = CONFIG_ENUM,
          .default_value = "hmac", .choices = "hmac|standard-webhooks|none", .reloadable = true,
          .offset = OFF(webhook.verify),
          .doc = "How webhooks are authenticated. hmac: an HMAC of the raw body in "
                 "signature_header, shaped by algorithm, encoding and timestamp_header. "
                 "standard-webhooks: the Standard Webhooks scheme (webhook-id, "
                 "webhook-timestamp and webhook-signature headers, secrets written "
                 "whsec_BASE64); signature_header, algorithm and encoding are then ignored. "
                 "none: no authentication at all, accepted only together with "
                 "insecure_no_verify = yes." },
        { .section = "webhook", .name = "secret_file", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(webhook.secret_file),
          .doc = "File holding the shared secret, one per line. Any of them verifies, so a "
                 "secret can be rotated without downtime: add the new one, reload, switch "
                 "CashPay over, remove the old one, reload. Read at start and on every "
                 "reload. Default: $CREDENTIALS_DIRECTORY/" CONFIG_SECRET_CREDENTIAL " when "
                 "the CREDENTIALS_DIRECTORY environment variable is set (systemd's "
                 "LoadCredential=), else " CONFIG_DEFAULT_SECRET_FILE "." },
        { .section = "webhook", .name = "signature_header", .type = CONFIG_HEADER,
          .default_value = "X-CashPay-Signature", .max = 64, .reloadable = true,
          .offset = OFF(webhook.signature_header),
          .doc = "Header carrying the HMAC when verify = hmac." },
        { .section = "webhook", .name = "algorithm", .type = CONFIG_ENUM,
          .default_value = "sha256", .choices = "sha256|sha512", .reloadable = true,
          .offset = OFF(webhook.algorithm),
          .doc = "Hash function of the HMAC when verify = hmac." },
        { .section = "webhook", .name = "encoding", .type = CONFIG_ENUM,
          .default_value = "hex", .choices = "hex|base64", .reloadable = true,
          .offset = OFF(webhook.encoding),
          .doc = "How the HMAC is written in signature_header when verify = hmac: hex (either "
                 "case, optionally after a prefix such as sha256=) or base64." },
        { .section = "webhook", .name = "timestamp_header", .type = CONFIG_HEADER,
          .default_value = "", .max = 64, .reloadable = true,
          .offset = OFF(webhook.timestamp_header),
          .doc = "Header carrying the time the webhook was sent, in unix seconds, when "
                 "verify = hmac (e.g. X-CashPay-Timestamp). When set, the HMAC covers the "
                 "timestamp, a full stop and the raw body, and a timestamp further than "
                 "tolerance from now is rejected. Not allowed with verify = "
                 "standard-webhooks, which has its own webhook-timestamp. Empty: no "
                 "timestamp." },
        { .section = "webhook", .name = "tolerance", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "300", .min = 1, .max = 86400, .reloadable = true,
          .offset = OFF(webhook.tolerance),
          .doc = "Largest difference between a signed timestamp (timestamp_header, or "
                 "webhook-timestamp with standard-webhooks) and the clock; it bounds how "
                 "long a captured request could be replayed." },
        { .section = "webhook", .name = "allow_from", .type = CONFIG_CIDRS,
          .default_value = "", .min = 0, .max = 1024, .reloadable = true,
          .offset = OFF(webhook.allow_from),
          .doc = "Comma-separated CIDR ranges webhooks may come from (e.g. 192.0.2.0/24, "
                 "2001:db8::/32); requests from elsewhere are answered 403. IPv4 ranges also "
                 "match IPv4-mapped IPv6 peers (::ffff:192.0.2.7). Empty: any address." },
        { .section = "webhook", .name = "order_ref_field", .type = CONFIG_FIELD,
          .default_value = "", .max = 128, .reloadable = true,
          .offset = OFF(webhook.order_ref_field),
          .doc = "Dotted path into the webhook payload holding the merchant's own order "
                 "reference (e.g. metadata.order_id), stored in orders.order_ref. Empty: "
                 "none is taken from the payload." },
        { .section = "webhook", .name = "keep_rejected_days", .type = CONFIG_UINT,
          .unit = "days", .default_value = "30", .min = 1, .max = 3650, .reloadable = true,
          .offset = OFF(webhook.keep_rejected_days),
          .doc = "How long 'cashpayctl prune' keeps rejected deliveries (invalid, "
                 "unauthorized, forbidden). Other deliveries are never pruned." },
        { .section = "webhook", .name = "insecure_no_verify", .type = CONFIG_BOOL,
          .default_value = "no", .reloadable = true, .offset = OFF(webhook.insecure_no_verify),
          .doc = "Must be yes for verify = none to be accepted, so that verification cannot "
                 "be switched off by a typo. It has no effect with other schemes." },
        { .section = "webhook", .name = "rejected_body_max", .type = CONFIG_SIZE,
          .unit = "bytes", .default_value = "4096", .min = 0, .max = 1048576,
          .reloadable = true, .offset = OFF(webhook.rejected_body_max),
          .doc = "How much of a rejected request's body (400, 401, 403) is kept in "
                 "webhook_deliveries; the rest is cut off. Accepted bodies are stored "
                 "whole." },

        /* [database] */
        { .section = "database", .name = "path", .type = CONFIG_PATH,
          .default_value = "/var/lib/cashpayd/cashpay.db", .max = 180,
          .offset = OFF(database.path),
          .doc = "The SQLite database, in WAL mode. cashpayctl and the merchant's "
                 "application use the same file." },
        { .section = "database", .name = "synchronous", .type = CONFIG_ENUM,
          .default_value = "full", .choices = "off|normal|full|extra",
          .offset = OFF(database.synchronous),
          .doc = "SQLite's synchronous setting. With full, a webhook that was answered 2xx "
                 "survives a power failure. normal is faster, but the last acknowledged "
                 "webhooks may be lost when the power fails (not when the process dies); "
                 "off risks more, extra syncs the directory too." },
        { .section = "database", .name = "busy_timeout", .type = CONFIG_UINT,
          .unit = "milliseconds", .default_value = "5000", .min = 0, .max = 600000,
          .reloadable = true, .offset = OFF(database.busy_timeout),
          .doc = "How long to wait for a lock held by another process (the merchant's "
                 "application, cashpayctl) before a commit counts as failed and the waiting "
                 "webhooks are answered 503." },
        { .section = "database", .name = "commit_timeout", .type = CONFIG_UINT,
          .unit = "milliseconds", .default_value = "10000", .min = 100, .max = 600000,
          .reloadable = true, .offset = OFF(database.commit_timeout),
          .doc = "How long a verified webhook may wait for its commit. Past that it is "
                 "answered 503 with Retry-After and CashPay sends it again." },
        { .section = "database", .name = "max_batch", .type = CONFIG_UINT,
          .default_value = "256", .min = 1, .max = 65536, .offset = OFF(database.max_batch),
          .doc = "Most webhooks committed together in one transaction." },
        { .section = "database", .name = "wal_warn_bytes", .type = CONFIG_SIZE,
          .unit = "bytes", .default_value = "67108864", .min = 1048576,
          .max = UINT64_C(1) << 40, .reloadable = true, .offset = OFF(database.wal_warn_bytes),
          .doc = "Size of the write-ahead log past which a warning is logged and /healthz "
                 "reports a problem. A growing log usually means a reader keeps a "
                 "transaction open, so checkpoints cannot finish." },

        /* [return] */
        { .section = "return", .name = "success_url", .type = CONFIG_URL_TEMPLATE,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(ret.success_url),
          .doc = "Where to send the customer (303 See Other) once the payment is captured, "
                 "instead of showing the built-in page: an absolute http or https URL, or a "
                 "path starting with /. {charge_id} and {order_ref} are replaced by those "
                 "values, URL-encoded; no other placeholder is allowed. Empty: the built-in "
                 "page." },
        { .section = "return", .name = "failure_url", .type = CONFIG_URL_TEMPLATE,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(ret.failure_url),
          .doc = "Like success_url, for a failed payment." },
        { .section = "return", .name = "refresh", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "3", .min = 1, .max = 3600, .reloadable = true,
          .offset = OFF(ret.refresh),
          .doc = "How often the 'Processing your payment' page reloads itself while the "
                 "webhook has not arrived." },
        { .section = "return", .name = "shop_name", .type = CONFIG_STRING,
          .default_value = "", .max = 128, .reloadable = true, .offset = OFF(ret.shop_name),
          .doc = "Name shown at the top of the return page. Empty: none." },
        { .section = "return", .name = "minor_units", .type = CONFIG_BOOL,
          .default_value = "no", .reloadable = true, .offset = OFF(ret.minor_units),
          .doc = "Whether amounts count the currency's minor unit (yes: 2000 USD is shown as "
                 "20.00). CashPay's amounts are whole currency units (2000 YER), hence no." },

        /* [log] */
        { .section = "log", .name = "level", .type = CONFIG_ENUM, .default_value = "info",
          .choices = "debug|info|notice|warning|err", .enum_values = log_level_values,
          .reloadable = true, .offset = OFF(log.level),
          .doc = "Least important messages logged: debug, info (one line per delivery), "
                 "notice, warning or err." },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= KEYS_MAX, "raise KEYS_MAX");

const struct config_section *config_sections(size_t *ret_n)
{
        *ret_n = sizeof(sections) / sizeof(sections[0]);
        return sections;
}

const struct config_key *config_keys(size_t *ret_n)
{
        *ret_n = N_KEYS;
        return keys;
}

const char *config_type_name(enum config_type t)
{
        switch (t) {
        case CONFIG_STRING: return "text";
        case CONFIG_PATH: return "absolute path";
        case CONFIG_URLPATH: return "URL path";
        case CONFIG_UINT: return "integer";
        case CONFIG_SIZE: return "size";
        case CONFIG_BOOL: return "boolean";
        case CONFIG_ENUM: return "choice";
        case CONFIG_LISTEN: return "address list";
        case CONFIG_CIDRS: return "CIDR list";
        case CONFIG_URL_TEMPLATE: return "URL template";
        case CONFIG_HEADER: return "header name";
        case CONFIG_FIELD: return "field path";
        }
        return "invalid";
}

/* ---- small text helpers ------------------------------------------------- */

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

/* Copy @s into @buf for quoting in a message: control bytes become '?',
 * long values are cut with "...". */
static const char *shown(const char *s, size_t len, char *buf, size_t buf_len)
{
        size_t i, max = buf_len - 4;

        for (i = 0; i < len && s[i] && i < max; i++)
                buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
        if (i < len && s[i] && i == max) {
                memcpy(buf + i, "...", 3);
                i += 3;
        }
        buf[i] = '\0';
        return buf;
}

static void why_set(char *why, size_t why_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t why_len, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
}

/* Length of the valid UTF-8 sequence at @s (which is not ASCII), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s)
{
        size_t n, i;
        uint32_t cp;

        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                n = 2, cp = s[0] & 0x1f;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
                n = 3, cp = s[0] & 0x0f;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
                n = 4, cp = s[0] & 0x07;
        else
                return 0;
        for (i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

/* Valid UTF-8 without control characters. */
static bool text_is_clean(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;

        while (*p) {
                size_t n = 1;

                if (*p < 0x20 || *p == 0x7f)
                        return false;
                if (*p >= 0x80 && (n = utf8_seq_len(p)) == 0)
                        return false;
                p += n;
        }
        return true;
}

/* Replace the string in @field (a char *) by a copy of @value; "" stores NULL. */
static int store_string(void *field, const char *value)
{
        char **slot = field;
        char *copy = NULL;

        if (*value) {
                copy = strdup(value);
                if (!copy)
                        return -ENOMEM;
        }
        free(*slot);
        *slot = copy;
        return 0;
}

/* ---- value parsers ---------------------------------------------------------
 * Each takes the value as written (comments and surrounding blanks already
 * gone) and stores it into @field. On -EINVAL, @why says what is wrong in
 * words that follow "[section] key = 'value': ".
 */

typedef int (*parse_fn)(const struct config_key *k, const char *value, void *field,
                        char *why, size_t why_len);

/* An empty value means "unset" for keys whose default is unset, and "none"
 * for lists that may be empty; anything else needs a value. */
static bool empty_allowed(const struct config_key *k)
{
        if (k->type == CONFIG_LISTEN || k->type == CONFIG_CIDRS)
                return k->min == 0;
        return k->default_value[0] == '\0';
}

static bool check_path(const char *v, char *why, size_t why_len)
{
        if (v[0] != '/') {
                why_set(why, why_len, "must be an absolute path");
                return false;
        }
        if (!text_is_clean(v)) {
                why_set(why, why_len, "must be UTF-8 without control characters");
                return false;
        }
        return true;
}

static bool urlpath_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               strchr("-._~/", c) != NULL;
}

/* A path segment that is empty, "." or ".." (the text starting at @seg). */
static bool bad_segment(const char *seg)
{
        size_t len = strcspn(seg, "/");

        return len == 0 || (len == 1 && seg[0] == '.') ||
               (len == 2 && seg[0] == '.' && seg[1] == '.');
}

static bool check_urlpath(const char *v, char *why, size_t why_len)
{
        if (v[0] != '/') {
                why_set(why, why_len, "must start with '/'");
                return false;
        }
        for (const char *c = v; *c; c++) {
                if (!urlpath_char(*c)) {
                        why_set(why, why_len, "may only hold letters, digits and - . _ ~ /");
                        return false;
                }
                if (*c == '/' && c[1] != '\0' && bad_segment(c + 1)) {
                        why_set(why, why_len, "must not hold empty, '.' or '..' segments");
                        return false;
                }
        }
        if (v[1] != '\0' && v[strlen(v) - 1] == '/') {
                why_set(why, why_len, "must not end with '/'");
                return false;
        }
        return true;
}

/* RFC 9110 token characters, which header names are made of. */
static bool tchar(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool check_header(const char *v, char *why, size_t why_len)
{
        for (const char *c = v; *c; c++) {
                if (!tchar(*c)) {
                        why_set(why, why_len, "must be an HTTP header name "
                                "(letters, digits and !#$%%&'*+-.^_`|~)");
                        return false;
                }
        }
        return true;
}

static bool field_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-';
}

static bool check_field(const char *v, char *why, size_t why_len)
{
        bool segment_start = true;

        for (const char *c = v; *c; c++) {
                if (*c == '.' && !segment_start) {
                        segment_start = true;
                        continue;
                }
                if (!field_char(*c))
                        break;
                segment_start = false;
                if (c[1] == '\0')
                        return true;
        }
        why_set(why, why_len, "must be names of letters, digits, '_' and '-' joined by "
                "dots, e.g. metadata.order_id");
        return false;
}

/* Length of the {placeholder} at @s, 0 when it is not an allowed one. */
static size_t placeholder_len(const char *s)
{
        static const char *const allowed[] = { "{charge_id}", "{order_ref}" };

        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                if (strncmp(s, allowed[i], strlen(allowed[i])) == 0)
                        return strlen(allowed[i]);
        return 0;
}

/* Does the URL start with http(s)://HOST, or with a single '/'? */
static bool url_start_ok(const char *v)
{
        size_t skip;

        if (v[0] == '/')
                return v[1] != '/' && v[1] != '\\';
        if (strncasecmp(v, "https://", 8) == 0)
                skip = 8;
        else if (strncasecmp(v, "http://", 7) == 0)
                skip = 7;
        else
                return false;
        return v[skip] != '\0' && !strchr("/?#{", v[skip]);
}

static bool check_url_template(const char *v, char *why, size_t why_len)
{
        if (!url_start_ok(v)) {
                why_set(why, why_len, "must be an absolute http(s) URL or a path "
                        "starting with a single '/'");
                return false;
        }
        for (const char *c = v; *c; c++) {
                size_t n;

                if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
                        why_set(why, why_len, "must not hold blanks, control or non-ASCII "
                                "characters (percent-encode them)");
                        return false;
                }
                if (*c != '{' && *c != '}')
                        continue;
                n = placeholder_len(c);
                if (n == 0) {
                        why_set(why, why_len, "only {charge_id} and {order_ref} may appear "
                                "in braces");
                        return false;
                }
                c += n - 1;
        }
        return true;
}

static bool check_string(const char *v, char *why, size_t why_len)
{
        if (!text_is_clean(v)) {
                why_set(why, why_len, "must be UTF-8 without control characters");
                return false;
        }
        return true;
}

static bool check_text(enum config_type t, const char *v, char *why, size_t why_len)
{
        switch (t) {
        case CONFIG_PATH: return check_path(v, why, why_len);
        case CONFIG_URLPATH: return check_urlpath(v, why, why_len);
        case CONFIG_HEADER: return check_header(v, why, why_len);
        case CONFIG_FIELD: return check_field(v, why, why_len);
        case CONFIG_URL_TEMPLATE: return check_url_template(v, why, why_len);
        default: return check_string(v, why, why_len);
        }
}

static int parse_text(const struct config_key *k, const char *value, void *field,
                      char *why, size_t why_len)
{
        if (value[0] == '\0')
                return store_string(field, "");
        if (strlen(value) > k->max) {
                why_set(why, why_len, "longer than %llu bytes", (unsigned long long)k->max);
                return -EINVAL;
        }
        if (!check_text(k->type, value, why, why_len))
                return -EINVAL;
        return store_string(field, value);
}

/* Decimal digits, for sizes optionally followed by K, M or G (powers of 1024). */
static int parse_u64(const char *s, bool suffix, uint64_t *ret)
{
        uint64_t v = 0, mult = 1;
        size_t i;

        for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (i == 0)
                return -EINVAL;
        if (suffix && s[i] != '\0' && s[i + 1] == '\0') {
                static const char units[] = "KMG";
                char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 'a' + 'A') : s[i];
                const char *u = strchr(units, c);

                if (!u)
                        return -EINVAL;
                mult = UINT64_C(1) << (10 * (u - units + 1));
                i++;
        }
        if (s[i] != '\0')
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

static int parse_number(const struct config_key *k, const char *value, uint64_t *ret,
                        char *why, size_t why_len)
{
        bool size = k->type == CONFIG_SIZE;
        uint64_t v = 0;

        if (parse_u64(value, size, &v) < 0 || v < k->min || v > k->max) {
                why_set(why, why_len, "expected %s from %llu to %llu%s%s%s",
                        size ? "a size" : "an integer",
                        (unsigned long long)k->min, (unsigned long long)k->max,
                        k->unit ? " " : "", k->unit ? k->unit : "",
                        size ? " (suffixes K, M, G: powers of 1024)" : "");
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_uint(const struct config_key *k, const char *value, void *field,
                      char *why, size_t why_len)
{
        uint64_t v;

        _Static_assert(sizeof(unsigned) >= 4, "bounds need 32-bit unsigned");
        if (parse_number(k, value, &v, why, why_len) < 0)
                return -EINVAL;
        *(unsigned *)field = (unsigned)v;
        return 0;
}

static int parse_size(const struct config_key *k, const char *value, void *field,
                      char *why, size_t why_len)
{
        uint64_t v;

        if (parse_number(k, value, &v, why, why_len) < 0)
                return -EINVAL;
        if (v > SIZE_MAX) {
                why_set(why, why_len, "too large for this machine");
                return -EINVAL;
        }
        *(size_t *)field = (size_t)v;
        return 0;
}

static int parse_bool(const struct config_key *k, const char *value, void *field,
                      char *why, size_t why_len)
{
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
                        *(bool *)field = strcasecmp(value, yes[i]) == 0;
                        return 0;
                }
        }
        why_set(why, why_len, "expected yes or no (or true/false, on/off, 1/0)");
        return -EINVAL;
}

/* Index of @value among the '|'-separated @choices, or -1. */
static int choice_index(const char *choices, const char *value)
{
        size_t vlen = strlen(value);
        const char *c = choices;

        for (int i = 0; *c; i++) {
                size_t len = strcspn(c, "|");

                if (len == vlen && strncasecmp(c, value, len) == 0)
                        return i;
                c += len;
                if (*c == '|')
                        c++;
        }
        return -1;
}

static int parse_enum(const struct config_key *k, const char *value, void *field,
                      char *why, size_t why_len)
{
        int i = value[0] ? choice_index(k->choices, value) : -1;
        char list[128];
        size_t n = 0;

        if (i < 0) {
                for (const char *c = k->choices; *c && n + 3 < sizeof(list); c++) {
                        if (*c == '|')
                                list[n++] = ',', list[n++] = ' ';
                        else
                                list[n++] = *c;
                }
                list[n] = '\0';
                why_set(why, why_len, "expected one of %s", list);
                return -EINVAL;
        }
        *(int *)field = k->enum_values ? k->enum_values[i] : i;
        return 0;
}

/* ---- listen addresses ----------------------------------------------------- */

static int parse_port(const char *s, char *ret, size_t ret_len)
{
        uint64_t v;

        if (s[0] == '0' || strlen(s) > 5 || parse_u64(s, false, &v) < 0 || v < 1 || v > 65535)
                return -EINVAL;
        snprintf(ret, ret_len, "%u", (unsigned)v);
        return 0;
}

/* Split "host:port" or "[v6]:port" (in place) into host and port. */
static int split_host_port(char *buf, char **ret_host, char **ret_port, bool *ret_v6,
                           char *why, size_t why_len)
{
        char *colon;

        *ret_v6 = buf[0] == '[';
        if (*ret_v6) {
                char *close = strchr(buf, ']');

                if (!close || close[1] != ':') {
                        why_set(why, why_len, "expected [IPv6 address]:port");
                        return -EINVAL;
                }
                *close = '\0';
                *ret_host = buf + 1;
                *ret_port = close + 2;
                return 0;
        }
        colon = strrchr(buf, ':');
        if (!colon) {
                why_set(why, why_len, "expected host:port");
                return -EINVAL;
        }
        if (strchr(buf, ':') != colon) {
                why_set(why, why_len, "IPv6 addresses need brackets, e.g. [::1]:8080");
                return -EINVAL;
        }
        *colon = '\0';
        *ret_host = buf;
        *ret_port = colon + 1;
        return 0;
}

/* Resolve numerically: never a DNS query. inet_pton first for IPv4, because
 * getaddrinfo also takes inet_aton's forms ("127.1", "0x7f.0.0.1"). */
static int resolve(const char *host, const char *port, bool v6, struct listen_addr *ret)
{
        struct addrinfo hints = {
                .ai_family = v6 ? AF_INET6 : AF_INET,
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV,
        };
        struct addrinfo *ai = NULL;
        struct in_addr in;

        if (!v6 && inet_pton(AF_INET, host, &in) != 1)
                return -EINVAL;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
                return -EINVAL;
        if (ai->ai_addrlen > sizeof(ret->addr)) {
                freeaddrinfo(ai);
                return -EINVAL;
        }
        memset(&ret->addr, 0, sizeof(ret->addr));
        memcpy(&ret->addr, ai->ai_addr, ai->ai_addrlen);
        ret->addr_len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

static int listen_item_parse(const char *item, size_t len, struct listen_addr *ret,
                             char *why, size_t why_len)
{
        char buf[sizeof(ret->text)], q[sizeof(ret->text) + 4], port[8];
        char *host, *port_text;
        bool v6;

        shown(item, len, q, sizeof(q));
        if (len >= sizeof(buf)) {
                why_set(why, why_len, "'%s': too long", q);
                return -EINVAL;
        }
        memcpy(buf, item, len);
        buf[len] = '\0';
        memcpy(ret->text, buf, len + 1);
        if (split_host_port(buf, &host, &port_text, &v6, why, why_len) < 0)
                return -EINVAL;
        if (parse_port(port_text, port, sizeof(port)) < 0) {
                why_set(why, why_len, "'%s': the port must be a number from 1 to 65535", q);
                return -EINVAL;
        }
        if (resolve(host, port, v6, ret) < 0) {
                why_set(why, why_len, "'%s': not a numeric %s address (names are not "
                        "resolved)", q, v6 ? "IPv6" : "IPv4");
                return -EINVAL;
        }
        return 0;
}

static bool is_any_addr(const struct listen_addr *a)
{
        if (a->addr.ss_family == AF_INET)
                return ((const struct sockaddr_in *)&a->addr)->sin_addr.s_addr == INADDR_ANY;
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->addr)->sin6_addr);
}

static unsigned listen_port(const struct listen_addr *a)
{
        if (a->addr.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
        return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
}

/* Would binding both fail? Same family and port, and the same address or a
 * wildcard on either side. (IPv4 against IPv6 depends on IPV6_V6ONLY.) */
static bool listen_conflict(const struct listen_addr *a, const struct listen_addr *b)
{
        if (a->addr.ss_family != b->addr.ss_family || listen_port(a) != listen_port(b))
                return false;
        return is_any_addr(a) || is_any_addr(b) ||
               (a->addr_len == b->addr_len && memcmp(&a->addr, &b->addr, a->addr_len) == 0);
}

static void listen_list_clear(struct listen_list *l)
{
        free(l->items);
        l->items = NULL;
        l->n = 0;
}

/* Parse item @i of the list (the text at @p, @len bytes, blanks included). */
static int listen_list_item(struct listen_list *l, const char *p, size_t len,
                            char *why, size_t why_len)
{
        struct listen_addr *a = &l->items[l->n];

        while (len > 0 && is_blank(*p))
                p++, len--;
        while (len > 0 && is_blank(p[len - 1]))
                len--;
        if (len == 0) {
                why_set(why, why_len, "empty item in the list");
                return -EINVAL;
        }
        if (listen_item_parse(p, len, a, why, why_len) < 0)
                return -EINVAL;
        for (size_t j = 0; j < l->n; j++) {
                if (listen_conflict(&l->items[j], a)) {
                        why_set(why, why_len, "'%s' overlaps '%s'", a->text, l->items[j].text);
                        return -EINVAL;
                }
        }
        l->n++;
        return 0;
}

static int listen_list_fill(const struct config_key *k, const char *value, struct listen_list *l,
                            char *why, size_t why_len)
{
        size_t cap = 1;
        const char *p = value;

        for (const char *c = value; *c; c++)
                cap += *c == ',';
        if (cap > k->max) {
                why_set(why, why_len, "more than %llu addresses", (unsigned long long)k->max);
                return -EINVAL;
        }
        l->items = calloc(cap, sizeof(*l->items));
        if (!l->items)
                return -ENOMEM;
        /* One comma-separated item per round: at most cap rounds. */
        while (l->n < cap) {
                size_t len = strcspn(p, ",");

                if (listen_list_item(l, p, len, why, why_len) < 0)
                        return -EINVAL;
                if (p[len] == '\0')
                        break;
                p += len + 1;
        }
        return 0;
}

static int parse_listen(const struct config_key *k, const char *value, void *field,
                        char *why, size_t why_len)
{
        struct listen_list l = { 0 }, *slot = field;
        int r;

        if (value[0] != '\0') {
                r = listen_list_fill(k, value, &l, why, why_len);
                if (r < 0) {
                        listen_list_clear(&l);
                        return r;
                }
        }
        listen_list_clear(slot);
        *slot = l;
        return 0;
}

static int parse_cidrs(const struct config_key *k, const char *value, void *field,
                       char *why, size_t why_len)
{
        struct cidr_list l, *slot = field;
        const char *bad = value;
        char q[64];
        size_t len;
        int r;

        r = cidr_list_parse(value, &l, &bad);
        if (r == -EINVAL) {
                len = strcspn(bad, ",");
                while (len > 0 && is_blank(bad[len - 1]))
                        len--;
                if (len == 0)
                        why_set(why, why_len, "empty item in the list");
                else
                        why_set(why, why_len, "'%s' is not a CIDR range (e.g. 192.0.2.0/24 "
                                "or 2001:db8::/32, with no bits set past the prefix)",
                                shown(bad, len, q, sizeof(q)));
                return r;
        }
        if (r < 0)
                return r;
        if (l.n > k->max) {
                cidr_list_clear(&l);
                why_set(why, why_len, "more than %llu ranges", (unsigned long long)k->max);
                return -EINVAL;
        }
        cidr_list_clear(slot);
        *slot = l;
        return 0;
}

/* ---- per-type operations -------------------------------------------------- */

static parse_fn type_parser(enum config_type t)
{
        switch (t) {
        case CONFIG_UINT: return parse_uint;
        case CONFIG_SIZE: return parse_size;
        case CONFIG_BOOL: return parse_bool;
        case CONFIG_ENUM: return parse_enum;
        case CONFIG_LISTEN: return parse_listen;
        case CONFIG_CIDRS: return parse_cidrs;
        default: return parse_text;
        }
}

static void *field_of(const struct config_key *k, struct config *cfg)
{
        return (char *)cfg + k->offset;
}

static const void *cfield_of(const struct config_key *k, const struct config *cfg)
{
        return (const char *)cfg + k->offset;
}

/* Parse @value into @cfg. Returns 0, -EINVAL (with @why) or -ENOMEM. */
static int key_set(const struct config_key *k, struct config *cfg, const char *value,
                   char *why, size_t why_len)
{
        if (value[0] == '\0' && !empty_allowed(k)) {
                why_set(why, why_len, "a value is required");
                return -EINVAL;
        }
        return type_parser(k->type)(k, value, field_of(k, cfg), why, why_len);
}

static void key_clear(const struct config_key *k, struct config *cfg)
{
        void *field = field_of(k, cfg);

        switch (k->type) {
        case CONFIG_LISTEN:
                listen_list_clear(field);
                break;
        case CONFIG_CIDRS:
                cidr_list_clear(field);
                break;
        case CONFIG_UINT: case CONFIG_SIZE: case CONFIG_BOOL: case CONFIG_ENUM:
                break;
        default:
                free(*(char **)field);
                *(char **)field = NULL;
                break;
        }
}

static bool listen_list_equal(const struct listen_list *a, const struct listen_list *b)
{
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (a->items[i].addr_len != b->items[i].addr_len ||
                    memcmp(&a->items[i].addr, &b->items[i].addr, a->items[i].addr_len) != 0)
                        return false;
        return true;
}

static bool string_equal(const char *a, const char *b)
{
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

static bool key_equal(const struct config_key *k, const struct config *a, const struct config *b)
{
        const void *fa = cfield_of(k, a), *fb = cfield_of(k, b);

        switch (k->type) {
        case CONFIG_LISTEN: return listen_list_equal(fa, fb);
        case CONFIG_CIDRS: return cidr_list_equal(fa, fb);
        case CONFIG_UINT: return *(const unsigned *)fa == *(const unsigned *)fb;
        case CONFIG_SIZE: return *(const size_t *)fa == *(const size_t *)fb;
        case CONFIG_BOOL: return *(const bool *)fa == *(const bool *)fb;
        case CONFIG_ENUM: return *(const int *)fa == *(const int *)fb;
        default: return string_equal(*(char *const *)fa, *(char *const *)fb);
        }
}

static const struct config_key *key_find(const char *section, const char *name, size_t *ret_i)
{
        for (size_t i = 0; i < N_KEYS; i++) {
                if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
                        *ret_i = i;
                        return &keys[i];
                }
        }
        return NULL;
}

static bool section_known(const char *name)
{
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
                if (strcmp(sections[i].name, name) == 0)
                        return true;
        return false;
}

/* ---- whole-config rules ----------------------------------------------------
 * Rules that involve more than one key. @lines holds the line each key was
 * set on (0 = default); an error is reported on the later of the lines
 * involved, where the conflict became visible.
 */

struct rule_ctx {
        const struct config *cfg;
        const unsigned *lines;  /* per key, may be NULL */
        const char *path;       /* NULL for the defaults */
        char *err;
        size_t err_len;
};

static unsigned line_of(const struct rule_ctx *c, const void *field)
{
        size_t off = (size_t)((const char *)field - (const char *)c->cfg);

        for (size_t i = 0; c->lines && i < N_KEYS; i++)
                if (keys[i].offset == off)
                        return c->lines[i];
        return 0;
}

static int rule_fail(const struct rule_ctx *c, const void *f1, const void *f2,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int rule_fail(const struct rule_ctx *c, const void *f1, const void *f2,
                     const char *fmt, ...)
{
        unsigned l1 = line_of(c, f1), l2 = f2 ? line_of(c, f2) : 0;
        unsigned line = l1 > l2 ? l1 : l2;
        const char *path = c->path ? c->path : "(defaults)";
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (line)
                snprintf(c->err, c->err_len, "%s:%u: %s", path, line, msg);
        else
                snprintf(c->err, c->err_len, "%s: %s", path, msg);
        return -EINVAL;
}

static int check_verify(const struct rule_ctx *c)
{
        const struct config *cfg = c->cfg;

        if (cfg->webhook.verify == VERIFY_NONE && !cfg->webhook.insecure_no_verify)
                return rule_fail(c, &cfg->webhook.verify, &cfg->webhook.insecure_no_verify,
                                 "[webhook] verify = none requires insecure_no_verify = yes");
        if (cfg->webhook.verify == VERIFY_STANDARD_WEBHOOKS && cfg->webhook.timestamp_header)
                return rule_fail(c, &cfg->webhook.verify, &cfg->webhook.timestamp_header,
                                 "[webhook] timestamp_header cannot be used with verify = "
                                 "standard-webhooks, which signs webhook-timestamp itself");
        return 0;
}

/* Is @path equal to @prefix or below it? */
static bool path_below(const char *path, const char *prefix)
{
        size_t n = strlen(prefix);

        if (strcmp(prefix, "/") == 0)
                return true;
        return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int check_paths(const struct rule_ctx *c)
{
        char *const *p[] = { &c->cfg->http.webhook_path, &c->cfg->http.return_path };
        const char *const names[] = { "webhook_path", "return_path" };
        const char *status = c->cfg->http.status_path;

        if (strcmp(*p[0], *p[1]) == 0)
                return rule_fail(c, p[0], p[1], "[http] webhook_path and return_path "
                                 "must differ");
        for (size_t i = 0; i < 2; i++)
                if (path_below(*p[i], status))
                        return rule_fail(c, p[i], &c->cfg->http.status_path,
                                         "[http] %s must not be status_path or lie below it",
                                         names[i]);
        return 0;
}

static int check_listen(const struct rule_ctx *c)
{
        const struct listen_list *h = &c->cfg->http.listen, *a = &c->cfg->admin.listen;

        for (size_t i = 0; i < a->n; i++)
                for (size_t j = 0; j < h->n; j++)
                        if (listen_conflict(&a->items[i], &h->items[j]))
                                return rule_fail(c, a, h, "[admin] listen '%s' overlaps "
                                                 "[http] listen '%s'",
                                                 a->items[i].text, h->items[j].text);
        return 0;
}

static int check_rules(const struct rule_ctx *c)
{
        int r;

        r = check_verify(c);
        if (r == 0)
                r = check_paths(c);
        if (r == 0)
                r = check_listen(c);
        return r;
}

/* secret_file left unset: the systemd credential if there is one. */
static int resolve_secret_file(struct config *cfg)
{
        const char *dir = getenv("CREDENTIALS_DIRECTORY");

        if (cfg->webhook.secret_file)
                return 0;
        if (dir && dir[0]) {
                if (asprintf(&cfg->webhook.secret_file, "%s/%s", dir,
                             CONFIG_SECRET_CREDENTIAL) < 0) {
                        cfg->webhook.secret_file = NULL;
                        return -ENOMEM;
                }
                return 0;
        }
        cfg->webhook.secret_file = strdup(CONFIG_DEFAULT_SECRET_FILE);
        return cfg->webhook.secret_file ? 0 : -ENOMEM;
}

/* ---- defaults, free ------------------------------------------------------- */

void config_free(struct config *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < N_KEYS; i++)
                key_clear(&keys[i], cfg);
        free(cfg->source_path);
        free(cfg);
}

/* The table's defaults, before secret_file is resolved. A default that does
 * not parse is a bug in the table; the tests catch it. */
static int config_new_raw(struct config **ret)
{
        struct config *cfg = calloc(1, sizeof(*cfg));
        char why[256];
        int r;

        if (!cfg)
                return -ENOMEM;
        for (size_t i = 0; i < N_KEYS; i++) {
                r = key_set(&keys[i], cfg, keys[i].default_value, why, sizeof(why));
                if (r < 0) {
                        config_free(cfg);
                        return r;
                }
        }
        *ret = cfg;
        return 0;
}

int config_new_defaults(struct config **ret)
{
        struct config *cfg = NULL;
        char err[256];
        struct rule_ctx c = { .err = err, .err_len = sizeof(err) };
        int r;

        r = config_new_raw(&cfg);
        if (r < 0)
                return r;
        c.cfg = cfg;
        r = check_rules(&c);
        if (r == 0)
                r = resolve_secret_file(cfg);
        if (r < 0) {
                config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

/* ---- reading the file ----------------------------------------------------- */

struct parser {
        struct config *cfg;
        const char *path;
        FILE *f;
        unsigned line;           /* of the line last handed to inih */
        char section[16];        /* current section, "" before the first */
        unsigned lines[KEYS_MAX]; /* line each key was set on, 0 = not set */
        int r;                   /* first error, 0 = none so far */
        char *err;
        size_t err_len;
};

static int parse_fail(struct parser *p, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Record the first error as "PATH:LINE: message"; returns 0 for inih. */
static int parse_fail(struct parser *p, int r, const char *fmt, ...)
{
        char msg[512];
        va_list ap;

        if (p->r < 0)
                return 0;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(p->err, p->err_len, "%s:%u: %s", p->path, p->line, msg);
        p->r = r;
        return 0;
}

/* One raw line without its '\n' into @buf. Returns 1, 0 at the end, or -1
 * after recording an error. */
static int read_raw_line(struct parser *p, char *buf, size_t len)
{
        size_t n = 0;
        int c;

        if (++p->line > LINES_MAX)
                return parse_fail(p, -EINVAL, "more than %u lines", LINES_MAX), -1;
        while ((c = getc(p->f)) != EOF && c != '\n') {
                if (c == '\0')
                        return parse_fail(p, -EINVAL, "NUL byte in line"), -1;
                if (n + 1 >= len)
                        return parse_fail(p, -EINVAL, "line longer than %zu bytes",
                                          len - 1), -1;
                buf[n++] = (char)c;
        }
        buf[n] = '\0';
        if (c == EOF && ferror(p->f)) {
                snprintf(p->err, p->err_len, "%s: read error: %s", p->path, strerror(EIO));
                p->r = -EIO;
                return -1;
        }
        return c == EOF && n == 0 ? 0 : 1;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim blanks at both ends, in place. */
static char *trim(char *s)
{
        size_t n;

        while (is_space(*s))
                s++;
        n = strlen(s);
        while (n > 0 && is_space(s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Cut a ';' comment: one at the start of @s (the line, or the value right
 * after '=') or after a blank. Values may hold ';' elsewhere (e.g. in a URL).
 * '#' is a comment only at the start of a line, so URL fragments work. */
static void cut_comment(char *s)
{
        for (char *c = s; *c; c++) {
                if (*c == ';' && (c == s || is_space(c[-1]))) {
                        *c = '\0';
                        return;
                }
        }
}

static int section_line(struct parser *p, char *line, char *out, size_t out_len)
{
        size_t n;
        char *name, q[80];

        cut_comment(line);
        line = trim(line);
        n = strlen(line);
        if (n < 2 || line[n - 1] != ']')
                return parse_fail(p, -EINVAL, "expected '[section]'"), -1;
        line[n - 1] = '\0';
        name = trim(line + 1);
        if (!section_known(name))
                return parse_fail(p, -EINVAL, "unknown section [%s]",
                                  shown(name, strlen(name), q, sizeof(q))), -1;
        snprintf(p->section, sizeof(p->section), "%s", name);
        snprintf(out, out_len, "[%s]\n", name);
        return 0;
}

static int key_line(struct parser *p, char *line, char *out, size_t out_len)
{
        char *eq = strchr(line, '='), *name, *value, q[80];
        size_t i;

        if (!eq)
                return parse_fail(p, -EINVAL, "expected 'key = value' or '[section]'"), -1;
        *eq = '\0';
        name = trim(line);
        value = eq + 1;
        cut_comment(value);
        value = trim(value);
        shown(name, strlen(name), q, sizeof(q));
        if (!p->section[0])
                return parse_fail(p, -EINVAL, "key '%s' before any [section]", q), -1;
        if (!key_find(p->section, name, &i))
                return parse_fail(p, -EINVAL, "unknown key '%s' in [%s]", q, p->section), -1;
        /* inih's line buffer must hold "key=value", '\n' and '\0'. */
        if (strlen(name) + 1 + strlen(value) + 2 > out_len)
                return parse_fail(p, -EINVAL, "line too long: 'key=value' may hold at most "
                                  "%zu bytes", out_len - 2), -1;
        snprintf(out, out_len, "%s=%s\n", name, value);
        return 0;
}

/* Turn the raw line into what inih gets: "[section]", "key=value" or an
 * empty line, after all checks that need the raw text. */
static int normalize_line(struct parser *p, char *raw, char *out, size_t out_len)
{
        char *line = raw;

        if (p->line == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
                line += 3;
        line = trim(line);
        if (line[0] == '\0' || line[0] == '#' || line[0] == ';') {
                snprintf(out, out_len, "\n");
                return 0;
        }
        if (line[0] == '[')
                return section_line(p, line, out, out_len);
        return key_line(p, line, out, out_len);
}

static char *reader(char *str, int num, void *stream)
{
        struct parser *p = stream;
        char raw[RAW_LINE_MAX + 1];

        if (p->r < 0 || num < 8)
                return NULL;
        if (read_raw_line(p, raw, sizeof(raw)) <= 0)
                return NULL;
        if (normalize_line(p, raw, str, (size_t)num) < 0)
                return NULL;
        return str;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
        struct parser *p = user;
        const struct config_key *k;
        char why[256], q[80];
        size_t i;
        int r;

        k = key_find(section, name, &i);
        if (!k)
                return parse_fail(p, -EINVAL, "unknown key '%s' in [%s]", name, section);
        if (p->lines[i])
                return parse_fail(p, -EINVAL, "duplicate key '%s' in [%s] (first set on "
                                  "line %u)", name, section, p->lines[i]);
        p->lines[i] = p->line;
        r = key_set(k, p->cfg, value, why, sizeof(why));
        if (r == -ENOMEM)
                return parse_fail(p, r, "out of memory");
        if (r < 0)
                return parse_fail(p, r, "[%s] %s = '%s': %s", section, name,
                                  shown(value, strlen(value), q, sizeof(q)), why);
        return 1;
}

static int parse_file(struct parser *p)
{
        int r = ini_parse_stream(reader, p, on_pair, p);

        if (p->r < 0)
                return p->r;
        if (r == -2)
                return -ENOMEM;
        if (r != 0) {
                /* Our reader hands over only lines inih accepts; keep a
                 * message in case some inih build thinks otherwise. */
                snprintf(p->err, p->err_len, "%s:%d: cannot parse this line", p->path, r);
                return -EINVAL;
        }
        return 0;
}

static int load_into(struct config *cfg, const char *path, FILE *f, char *err, size_t err_len)
{
        struct parser p = {
                .cfg = cfg, .path = path, .f = f, .err = err, .err_len = err_len,
        };
        struct rule_ctx c = {
                .cfg = cfg, .lines = p.lines, .path = path, .err = err, .err_len = err_len,
        };
        int r;

        r = parse_file(&p);
        if (r < 0)
                return r;
        r = check_rules(&c);
        if (r < 0)
                return r;
        r = resolve_secret_file(cfg);
        if (r == 0) {
                cfg->source_path = strdup(path);
                if (!cfg->source_path)
                        r = -ENOMEM;
        }
        if (r == -ENOMEM)
                snprintf(err, err_len, "%s: out of memory", path);
        return r;
}

int config_load(const char *path, struct config **ret, char *err, size_t err_len)
{
        struct config *cfg = NULL;
        char dummy[1];
        FILE *f;
        int r;

        if (!err || err_len == 0)
                err = dummy, err_len = sizeof(dummy);
        err[0] = '\0';
        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                snprintf(err, err_len, "%s: %s", path, strerror(-r));
                return r;
        }
        r = config_new_raw(&cfg);
        if (r == 0)
                r = load_into(cfg, path, f, err, err_len);
        else
                snprintf(err, err_len, "%s: out of memory", path);
        fclose(f);
        if (r < 0) {
                config_free(cfg);
                return r;
        }
        *ret = cfg;
        return 0;
}

/* ---- reload, names -------------------------------------------------------- */

bool config_reload_compatible(const struct config *cur, const struct config *next,
                              char *err, size_t err_len)
{
        for (size_t i = 0; i < N_KEYS; i++) {
                if (keys[i].reloadable || key_equal(&keys[i], cur, next))
                        continue;
                if (err && err_len)
                        snprintf(err, err_len, "[%s] %s changed; it takes effect only "
                                 "after a restart", keys[i].section, keys[i].name);
                return false;
        }
        return true;
}

const char *config_verify_scheme_name(enum verify_scheme v)
{
        switch (v) {
        case VERIFY_HMAC: return "hmac";
        case VERIFY_STANDARD_WEBHOOKS: return "standard-webhooks";
        case VERIFY_NONE: return "none";
        }
        return "invalid";
}

const char *config_log_level_name(enum log_level l)
{
        switch (l) {
        case LOG_LEVEL_ERR: return "err";
        case LOG_LEVEL_WARNING: return "warning";
        case LOG_LEVEL_NOTICE: return "notice";
        case LOG_LEVEL_INFO: return "info";
        case LOG_LEVEL_DEBUG: return "debug";
        }
        return "invalid";
}
