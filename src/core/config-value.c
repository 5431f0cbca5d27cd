/*
 * config-value — one configuration value of each type of the key table:
 * parsed from its text, freed, compared. Every check of a single value lives
 * here (numbers and their bounds, booleans, choices, listen addresses, CIDR
 * lists, paths, header names, URL templates); rules that tie keys together
 * stay in config.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cashpay/util.h"
#include "src/core/config-value.h"

/* ---- small text helpers ------------------------------------------------- */

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

const char *config_value_shown(const char *s, size_t len, char *buf, size_t buf_len)
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
 * gone) and stores it into @field. On -EINVAL, @err says what is wrong in
 * words that follow "[section] key = 'value': ".
 */

typedef int (*parse_fn)(const struct config_key *k, const char *value, void *field,
                        char *err, size_t err_len);

static bool check_path(const char *v, char *err, size_t err_len)
{
        if (v[0] != '/') {
                err_set(err, err_len, -EINVAL, "must be an absolute path");
                return false;
        }
        if (!text_is_clean(v)) {
                err_set(err, err_len, -EINVAL, "must be UTF-8 without control characters");
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

static bool check_urlpath(const char *v, char *err, size_t err_len)
{
        if (v[0] != '/') {
                err_set(err, err_len, -EINVAL, "must start with '/'");
                return false;
        }
        for (const char *c = v; *c; c++) {
                if (!urlpath_char(*c)) {
                        err_set(err, err_len, -EINVAL,
                                "may only hold letters, digits and - . _ ~ /");
                        return false;
                }
                if (*c == '/' && c[1] != '\0' && bad_segment(c + 1)) {
                        err_set(err, err_len, -EINVAL, "must not hold empty, '.' or '..' segments");
                        return false;
                }
        }
        if (v[1] != '\0' && v[strlen(v) - 1] == '/') {
                err_set(err, err_len, -EINVAL, "must not end with '/'");
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

static bool check_header(const char *v, char *err, size_t err_len)
{
        for (const char *c = v; *c; c++) {
                if (!tchar(*c)) {
                        err_set(err, err_len, -EINVAL, "must be an HTTP header name "
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

static bool check_field(const char *v, char *err, size_t err_len)
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
        err_set(err, err_len, -EINVAL, "must be names of letters, digits, '_' and '-' joined by "
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

static bool check_url_template(const char *v, char *err, size_t err_len)
{
        if (!url_start_ok(v)) {
                err_set(err, err_len, -EINVAL, "must be an absolute http(s) URL or a path "
                        "starting with a single '/'");
                return false;
        }
        for (const char *c = v; *c; c++) {
                size_t n;

                if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
                        err_set(err, err_len, -EINVAL, "must not hold blanks, control or non-ASCII "
                                "characters (percent-encode them)");
                        return false;
                }
                if (*c != '{' && *c != '}')
                        continue;
                n = placeholder_len(c);
                if (n == 0) {
                        err_set(err, err_len, -EINVAL,
                                "only {charge_id} and {order_ref} may appear "
                                "in braces");
                        return false;
                }
                c += n - 1;
        }
        return true;
}

/*
 * An API base URL: things are appended to it ("/charges"), and it may be
 * logged, so no query or fragment to append after, no user:password@ and
 * no final '/' that would double.
 */
static bool check_url(const char *v, char *err, size_t err_len)
{
        const char *authority;

        if (!url_start_ok(v) || v[0] == '/') {
                err_set(err, err_len, -EINVAL, "must be an absolute http or https URL");
                return false;
        }
        for (const char *c = v; *c; c++) {
                if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '{' ||
                    *c == '}' || *c == '?' || *c == '#') {
                        err_set(err, err_len, -EINVAL, "must not hold blanks, control or "
                                "non-ASCII characters, braces, a query or a fragment");
                        return false;
                }
        }
        authority = strstr(v, "://") + 3;
        if (memchr(authority, '@', strcspn(authority, "/"))) {
                err_set(err, err_len, -EINVAL, "must not hold credentials (user@)");
                return false;
        }
        if (v[strlen(v) - 1] == '/') {
                err_set(err, err_len, -EINVAL, "must not end with '/'");
                return false;
        }
        return true;
}

static bool check_string(const char *v, char *err, size_t err_len)
{
        if (!text_is_clean(v)) {
                err_set(err, err_len, -EINVAL, "must be UTF-8 without control characters");
                return false;
        }
        return true;
}

static bool check_text(enum config_type t, const char *v, char *err, size_t err_len)
{
        switch (t) {
        case CONFIG_PATH: return check_path(v, err, err_len);
        case CONFIG_URLPATH: return check_urlpath(v, err, err_len);
        case CONFIG_HEADER: return check_header(v, err, err_len);
        case CONFIG_FIELD: return check_field(v, err, err_len);
        case CONFIG_URL_TEMPLATE: return check_url_template(v, err, err_len);
        case CONFIG_URL: return check_url(v, err, err_len);
        default: return check_string(v, err, err_len);
        }
}

static int parse_text(const struct config_key *k, const char *value, void *field,
                      char *err, size_t err_len)
{
        if (value[0] == '\0')
                return store_string(field, "");
        if (strlen(value) > k->max) {
                err_set(err, err_len, -EINVAL,
                        "longer than %llu bytes", (unsigned long long)k->max);
                return -EINVAL;
        }
        if (!check_text(k->type, value, err, err_len))
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
                        char *err, size_t err_len)
{
        bool size = k->type == CONFIG_SIZE;
        uint64_t v = 0;

        if (parse_u64(value, size, &v) < 0 || v < k->min || v > k->max) {
                err_set(err, err_len, -EINVAL, "expected %s from %llu to %llu%s%s%s",
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
                      char *err, size_t err_len)
{
        uint64_t v;

        _Static_assert(sizeof(unsigned) >= 4, "bounds need 32-bit unsigned");
        if (parse_number(k, value, &v, err, err_len) < 0)
                return -EINVAL;
        *(unsigned *)field = (unsigned)v;
        return 0;
}

static int parse_size(const struct config_key *k, const char *value, void *field,
                      char *err, size_t err_len)
{
        uint64_t v;

        if (parse_number(k, value, &v, err, err_len) < 0)
                return -EINVAL;
        if (v > SIZE_MAX) {
                err_set(err, err_len, -EINVAL, "too large for this machine");
                return -EINVAL;
        }
        *(size_t *)field = (size_t)v;
        return 0;
}

static int parse_bool(const struct config_key *k, const char *value, void *field,
                      char *err, size_t err_len)
{
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
                if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
                        *(bool *)field = strcasecmp(value, yes[i]) == 0;
                        return 0;
                }
        }
        err_set(err, err_len, -EINVAL, "expected yes or no (or true/false, on/off, 1/0)");
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
                      char *err, size_t err_len)
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
                err_set(err, err_len, -EINVAL, "expected one of %s", list);
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
                           char *err, size_t err_len)
{
        char *colon;

        *ret_v6 = buf[0] == '[';
        if (*ret_v6) {
                char *close = strchr(buf, ']');

                if (!close || close[1] != ':') {
                        err_set(err, err_len, -EINVAL, "expected [IPv6 address]:port");
                        return -EINVAL;
                }
                *close = '\0';
                *ret_host = buf + 1;
                *ret_port = close + 2;
                return 0;
        }
        colon = strrchr(buf, ':');
        if (!colon) {
                err_set(err, err_len, -EINVAL, "expected host:port");
                return -EINVAL;
        }
        if (strchr(buf, ':') != colon) {
                err_set(err, err_len, -EINVAL, "IPv6 addresses need brackets, e.g. [::1]:8080");
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
        int r;

        if (!v6 && inet_pton(AF_INET, host, &in) != 1)
                return -EINVAL;
        r = getaddrinfo(host, port, &hints, &ai);
        if (r == EAI_MEMORY)
                return -ENOMEM; /* not the address's fault */
        if (r != 0 || !ai)
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
                             char *err, size_t err_len)
{
        char buf[sizeof(ret->text)], q[sizeof(ret->text) + 4], port[8];
        char *host, *port_text;
        bool v6;
        int r;

        config_value_shown(item, len, q, sizeof(q));
        if (len >= sizeof(buf)) {
                err_set(err, err_len, -EINVAL, "'%s': too long", q);
                return -EINVAL;
        }
        memcpy(buf, item, len);
        buf[len] = '\0';
        memcpy(ret->text, buf, len + 1);
        if (split_host_port(buf, &host, &port_text, &v6, err, err_len) < 0)
                return -EINVAL;
        if (parse_port(port_text, port, sizeof(port)) < 0) {
                err_set(err, err_len, -EINVAL,
                        "'%s': the port must be a number from 1 to 65535", q);
                return -EINVAL;
        }
        r = resolve(host, port, v6, ret);
        if (r == -EINVAL)
                err_set(err, err_len, -EINVAL, "'%s': not a numeric %s address (names are not "
                        "resolved)", q, v6 ? "IPv6" : "IPv4");
        return r;
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
bool config_listen_conflict(const struct listen_addr *a, const struct listen_addr *b)
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
                            char *err, size_t err_len)
{
        struct listen_addr *a = &l->items[l->n];
        int r;

        while (len > 0 && is_blank(*p))
                p++, len--;
        while (len > 0 && is_blank(p[len - 1]))
                len--;
        if (len == 0) {
                err_set(err, err_len, -EINVAL, "empty item in the list");
                return -EINVAL;
        }
        if ((r = listen_item_parse(p, len, a, err, err_len)) < 0)
                return r;
        for (size_t j = 0; j < l->n; j++) {
                if (config_listen_conflict(&l->items[j], a)) {
                        err_set(err, err_len, -EINVAL,
                                "'%s' overlaps '%s'", a->text, l->items[j].text);
                        return -EINVAL;
                }
        }
        l->n++;
        return 0;
}

static int listen_list_fill(const struct config_key *k, const char *value, struct listen_list *l,
                            char *err, size_t err_len)
{
        size_t cap = 1;
        const char *p = value;

        for (const char *c = value; *c; c++)
                cap += *c == ',';
        if (cap > k->max) {
                err_set(err, err_len, -EINVAL,
                        "more than %llu addresses", (unsigned long long)k->max);
                return -EINVAL;
        }
        l->items = calloc(cap, sizeof(*l->items));
        if (!l->items)
                return -ENOMEM;
        /* One comma-separated item per round: at most cap rounds. */
        while (l->n < cap) {
                size_t len = strcspn(p, ",");
                int r = listen_list_item(l, p, len, err, err_len);

                if (r < 0)
                        return r;
                if (p[len] == '\0')
                        break;
                p += len + 1;
        }
        return 0;
}

static int parse_listen(const struct config_key *k, const char *value, void *field,
                        char *err, size_t err_len)
{
        struct listen_list l = { 0 }, *slot = field;
        int r;

        if (value[0] != '\0') {
                r = listen_list_fill(k, value, &l, err, err_len);
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
                       char *err, size_t err_len)
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
                        err_set(err, err_len, -EINVAL, "empty item in the list");
                else
                        err_set(err, err_len, -EINVAL,
                                "'%s' is not a CIDR range (e.g. 192.0.2.0/24 "
                                "or 2001:db8::/32, with no bits set past the prefix)",
                                config_value_shown(bad, len, q, sizeof(q)));
                return r;
        }
        if (r < 0)
                return r;
        if (l.n > k->max) {
                cidr_list_clear(&l);
                err_set(err, err_len, -EINVAL, "more than %llu ranges", (unsigned long long)k->max);
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

int config_value_parse(const struct config_key *k, const char *value, void *field,
                       char *err, size_t err_len)
{
        return type_parser(k->type)(k, value, field, err, err_len);
}

void config_value_clear(enum config_type t, void *field)
{
        switch (t) {
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

bool config_value_equal(enum config_type t, const void *a, const void *b)
{
        switch (t) {
        case CONFIG_LISTEN: return listen_list_equal(a, b);
        case CONFIG_CIDRS: return cidr_list_equal(a, b);
        case CONFIG_UINT: return *(const unsigned *)a == *(const unsigned *)b;
        case CONFIG_SIZE: return *(const size_t *)a == *(const size_t *)b;
        case CONFIG_BOOL: return *(const bool *)a == *(const bool *)b;
        case CONFIG_ENUM: return *(const int *)a == *(const int *)b;
        default: return string_equal(*(char *const *)a, *(char *const *)b);
        }
}
