/*
 * cidr — IPv4 and IPv6 address ranges, for allow_from and trusted_proxies.
 *
 * Matching happens in one 128-bit space: an IPv4 address a.b.c.d is treated
 * as its IPv4-mapped form ::ffff:a.b.c.d and an IPv4 range /p as /(96 + p).
 * That way a peer is judged the same whether it arrived on an IPv4 socket or
 * on a dual-stack IPv6 socket, which is the whole point of the exercise.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/cidr.h"

/* Longest text form of an address we accept, plus room for "/128". */
#define CIDR_TEXT_MAX (INET6_ADDRSTRLEN + 4)

static const uint8_t v4_mapped_prefix[12] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

/* Parse a prefix length: decimal, no sign, no leading zero, at most @max. */
static int parse_prefix(const char *s, unsigned max, unsigned *ret)
{
        unsigned v = 0;
        size_t i;

        if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
                return -EINVAL;
        for (i = 0; s[i] != '\0'; i++) {
                if (s[i] < '0' || s[i] > '9' || i >= 3)
                        return -EINVAL;
                v = v * 10 + (unsigned)(s[i] - '0');
        }
        if (v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* Are all bits of @addr (of @bits bits) past @prefix zero? */
static bool host_bits_clear(const uint8_t *addr, unsigned bits, unsigned prefix)
{
        unsigned i;

        for (i = prefix; i < bits; i++)
                if (addr[i / 8] & (0x80u >> (i % 8)))
                        return false;
        return true;
}

/* Address text (no prefix) into family + bytes. */
static int parse_address(const char *text, int *ret_family, uint8_t ret_addr[16])
{
        memset(ret_addr, 0, 16);
        if (inet_pton(AF_INET, text, ret_addr) == 1) {
                *ret_family = AF_INET;
                return 0;
        }
        if (inet_pton(AF_INET6, text, ret_addr) == 1) {
                *ret_family = AF_INET6;
                return 0;
        }
        return -EINVAL;
}

int cidr_parse(const char *text, struct cidr *ret)
{
        char buf[CIDR_TEXT_MAX + 1];
        struct cidr c = { 0 };
        char *slash;
        unsigned bits;

        if (strlen(text) > CIDR_TEXT_MAX)
                return -EINVAL;
        strcpy(buf, text);
        slash = strchr(buf, '/');
        if (slash)
                *slash = '\0';
        if (parse_address(buf, &c.family, c.addr) < 0)
                return -EINVAL;
        bits = c.family == AF_INET ? 32 : 128;
        c.prefix = bits;
        if (slash && parse_prefix(slash + 1, bits, &c.prefix) < 0)
                return -EINVAL;
        if (!host_bits_clear(c.addr, bits, c.prefix))
                return -EINVAL;
        *ret = c;
        return 0;
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

/* Parse the item text[0..len) after trimming blanks; *ret_start = its start. */
static int parse_item(const char *text, size_t len, struct cidr *ret, const char **ret_start)
{
        char buf[CIDR_TEXT_MAX + 1];

        while (len > 0 && is_blank(*text)) {
                text++;
                len--;
        }
        while (len > 0 && is_blank(text[len - 1]))
                len--;
        *ret_start = text;
        if (len == 0 || len > CIDR_TEXT_MAX)
                return -EINVAL;
        memcpy(buf, text, len);
        buf[len] = '\0';
        return cidr_parse(buf, ret);
}

static bool only_blanks(const char *s)
{
        while (is_blank(*s))
                s++;
        return *s == '\0';
}

int cidr_list_parse(const char *text, struct cidr_list *ret, const char **ret_bad_item)
{
        struct cidr_list list = { 0 };
        const char *p = text;
        size_t cap = 1;

        *ret = list;
        if (only_blanks(text))
                return 0;
        for (const char *c = text; *c; c++)
                cap += *c == ',';
        list.items = calloc(cap, sizeof(*list.items));
        if (!list.items)
                return -ENOMEM;
        /* One item per comma-separated piece: at most cap iterations. */
        while (list.n < cap) {
                size_t len = strcspn(p, ",");
                const char *start;

                if (parse_item(p, len, &list.items[list.n], &start) < 0) {
                        if (ret_bad_item)
                                *ret_bad_item = start;
                        cidr_list_clear(&list);
                        return -EINVAL;
                }
                list.n++;
                if (p[len] == '\0')
                        break;
                p += len + 1;
        }
        *ret = list;
        return 0;
}

void cidr_list_clear(struct cidr_list *list)
{
        if (!list)
                return;
        free(list->items);
        list->items = NULL;
        list->n = 0;
}

static bool cidr_equal(const struct cidr *a, const struct cidr *b)
{
        return a->family == b->family && a->prefix == b->prefix &&
               memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

bool cidr_list_equal(const struct cidr_list *a, const struct cidr_list *b)
{
        if (a->n != b->n)
                return false;
        for (size_t i = 0; i < a->n; i++)
                if (!cidr_equal(&a->items[i], &b->items[i]))
                        return false;
        return true;
}

/* The 128-bit form of a socket address; false for other families. */
static bool sockaddr_to_v6(const struct sockaddr *sa, uint8_t ret[16])
{
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

                memcpy(ret, v4_mapped_prefix, 12);
                memcpy(ret + 12, &in->sin_addr, 4);
                return true;
        }
        if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

                memcpy(ret, &in6->sin6_addr, 16);
                return true;
        }
        return false;
}

/* Do the first @prefix bits of @a and @b agree? */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
        unsigned full = prefix / 8, rest = prefix % 8;
        uint8_t mask;

        if (memcmp(a, b, full) != 0)
                return false;
        if (rest == 0)
                return true;
        mask = (uint8_t)(0xffu << (8 - rest));
        return (a[full] & mask) == (b[full] & mask);
}

bool cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
        uint8_t peer[16], net[16];
        unsigned prefix = c->prefix;

        if (!sa || !sockaddr_to_v6(sa, peer))
                return false;
        if (c->family == AF_INET) {
                memcpy(net, v4_mapped_prefix, 12);
                memcpy(net + 12, c->addr, 4);
                prefix += 96;
        } else if (c->family == AF_INET6) {
                memcpy(net, c->addr, 16);
        } else {
                return false;
        }
        return prefix_equal(peer, net, prefix);
}

bool cidr_list_match(const struct cidr_list *list, const struct sockaddr *sa)
{
        for (size_t i = 0; i < list->n; i++)
                if (cidr_match(&list->items[i], sa))
                        return true;
        return false;
}

int cidr_parse_addr(const char *text, struct sockaddr_storage *ret)
{
        uint8_t addr[16];
        int family;

        if (strlen(text) > INET6_ADDRSTRLEN || parse_address(text, &family, addr) < 0)
                return -EINVAL;
        memset(ret, 0, sizeof(*ret));
        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)ret;

                in->sin_family = AF_INET;
                memcpy(&in->sin_addr, addr, 4);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;

                in6->sin6_family = AF_INET6;
                memcpy(&in6->sin6_addr, addr, 16);
        }
        return 0;
}

/* The hop [start, end) without surrounding blanks, as a bare address. */
static int parse_hop(const char *start, const char *end, struct sockaddr_storage *ret)
{
        char text[INET6_ADDRSTRLEN + 1];

        while (start < end && is_blank(*start))
                start++;
        while (end > start && is_blank(end[-1]))
                end--;
        if ((size_t)(end - start) >= sizeof(text))
                return -EINVAL;
        memcpy(text, start, (size_t)(end - start));
        text[end - start] = '\0';
        return cidr_parse_addr(text, ret);
}

/*
 * Right to left over the header itself, never a copy of it: however long
 * the part the client wrote, it cannot push the trusted hops out of view.
 * Each step moves @end left past one comma, so the loop ends.
 */
size_t cidr_forwarded_client(const char *xff, const struct cidr_list *proxies,
                             struct sockaddr_storage *peer)
{
        const char *end;
        size_t taken = 0;

        if (!xff || !cidr_list_match(proxies, (const struct sockaddr *)peer))
                return 0;
        end = xff + strlen(xff);
        for (;;) {
                const char *start = end;
                struct sockaddr_storage hop;

                while (start > xff && start[-1] != ',')
                        start--;
                if (parse_hop(start, end, &hop) < 0)
                        return taken;
                *peer = hop;
                taken++;
                if (start == xff || !cidr_list_match(proxies, (const struct sockaddr *)&hop))
                        return taken;
                end = start - 1; /* the comma */
        }
}
