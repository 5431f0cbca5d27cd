/*
 * cidr — IPv4 and IPv6 address ranges, for allow_from and trusted_proxies.
 *
 * Pure: parses text, matches socket addresses. An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d, as seen on a dual-stack socket) matches IPv4 ranges.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct cidr {
        int family;        /* AF_INET or AF_INET6 */
        uint8_t addr[16];  /* network order; IPv4 uses the first 4 bytes */
        unsigned prefix;   /* 0..32 or 0..128 */
};

struct cidr_list {
        struct cidr *items;
        size_t n;
};

/* cidr_parse() - "10.0.0.0/8", "::1", "192.0.2.7" (host = full prefix).
 * No blanks, no leading zeros in the prefix, no IPv6 zone ("%eth0").
 * Returns 0 or -EINVAL (also when host bits are set beyond the prefix). */
int cidr_parse(const char *text, struct cidr *ret);

/* cidr_list_parse() - comma-separated, blanks around items allowed; "" (or only
 * blanks) = empty list. On success @ret is replaced (not freed first); on failure
 * it is left empty. Free with cidr_list_clear().
 * Returns 0, -EINVAL (with @ret_bad_item pointing at the start of the bad item
 * inside @text; it ends at the next ',' or the end; may be NULL) or -ENOMEM. */
int cidr_list_parse(const char *text, struct cidr_list *ret, const char **ret_bad_item);

/* cidr_list_clear() - free the items; the list is empty afterwards. NULL-safe. */
void cidr_list_clear(struct cidr_list *list);

/* cidr_list_equal() - same ranges in the same order. */
bool cidr_list_equal(const struct cidr_list *a, const struct cidr_list *b);

/* cidr_match() - is the address in @sa (AF_INET or AF_INET6) inside @c?
 * IPv4 addresses and IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are one
 * space: 192.0.2.7 is inside ::ffff:192.0.2.0/120, ::ffff:192.0.2.7 inside
 * 192.0.2.0/24, and ::/0 holds everything. Other families never match. */
bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
/* cidr_list_match() - inside any item; an empty list matches nothing. */
bool cidr_list_match(const struct cidr_list *list, const struct sockaddr *sa);

/* cidr_parse_addr() - a bare address (no prefix, no brackets, no port) as a
 * sockaddr with port 0, e.g. from X-Forwarded-For. Returns 0 or -EINVAL. */
int cidr_parse_addr(const char *text, struct sockaddr_storage *ret);

/*
 * cidr_forwarded_client() - the client behind trusted proxies. When the peer
 * in @peer is inside @proxies, X-Forwarded-For (@xff, may be NULL) is walked
 * from the right, since each trusted proxy appended the address it saw: the
 * first hop that is not itself a trusted proxy, or the leftmost hop, is the
 * client. Whatever is left of it was written by the client and proves
 * nothing, so neither its content nor its length changes the answer. A hop
 * that is not a bare address (blanks around it allowed) stops the walk at
 * the last good address. @peer is replaced by the answer (port 0 when it
 * comes from the header).
 * Returns how many hops were taken from the header (0: @peer unchanged).
 */
size_t cidr_forwarded_client(const char *xff, const struct cidr_list *proxies,
                             struct sockaddr_storage *peer);
