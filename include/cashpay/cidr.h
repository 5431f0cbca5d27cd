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
 * Returns 0 or -EINVAL (also when host bits are set beyond the prefix). */
int cidr_parse(const char *text, struct cidr *ret);

/* cidr_list_parse() - comma-separated, blanks around items allowed; "" = empty list.
 * Returns 0, -EINVAL (with @ret_bad_item pointing into @text, may be NULL) or -ENOMEM. */
int cidr_list_parse(const char *text, struct cidr_list *ret, const char **ret_bad_item);

void cidr_list_clear(struct cidr_list *list);

bool cidr_match(const struct cidr *c, const struct sockaddr *sa);
bool cidr_list_match(const struct cidr_list *list, const struct sockaddr *sa);

/* cidr_parse_addr() - a bare address (no prefix) as a sockaddr, e.g. from X-Forwarded-For. */
int cidr_parse_addr(const char *text, struct sockaddr_storage *ret);
