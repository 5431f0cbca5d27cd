/*
 * Unit tests of cidr: parsing, IPv4/IPv6 matching, IPv4-mapped peers,
 * prefix edges and the inputs that must be refused.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "cashpay/cidr.h"
#include "tests/check.h"

/* A peer address from text; aborts the test on a typo in the test itself. */
static struct sockaddr_storage peer(const char *text)
{
        struct sockaddr_storage ss;

        if (cidr_parse_addr(text, &ss) < 0) {
                fprintf(stderr, "bad test address %s\n", text);
                exit(2);
        }
        return ss;
}

static bool match(const char *range, const char *addr)
{
        struct sockaddr_storage ss = peer(addr);
        struct cidr c;

        if (cidr_parse(range, &c) < 0) {
                fprintf(stderr, "bad test range %s\n", range);
                exit(2);
        }
        return cidr_match(&c, (struct sockaddr *)&ss);
}

static void test_parse_valid(void)
{
        struct cidr c;

        CHECK(cidr_parse("10.0.0.0/8", &c) == 0);
        CHECK(c.family == AF_INET && c.prefix == 8 && c.addr[0] == 10 && c.addr[1] == 0);
        CHECK(cidr_parse("192.0.2.7", &c) == 0);
        CHECK(c.family == AF_INET && c.prefix == 32 && c.addr[3] == 7);
        CHECK(cidr_parse("2001:db8::/32", &c) == 0);
        CHECK(c.family == AF_INET6 && c.prefix == 32 && c.addr[0] == 0x20 && c.addr[1] == 0x01);
        CHECK(cidr_parse("::1", &c) == 0);
        CHECK(c.family == AF_INET6 && c.prefix == 128 && c.addr[15] == 1);
        CHECK(cidr_parse("0.0.0.0/0", &c) == 0 && c.prefix == 0);
        CHECK(cidr_parse("::/0", &c) == 0 && c.prefix == 0 && c.family == AF_INET6);
        CHECK(cidr_parse("255.255.255.255/32", &c) == 0);
        CHECK(cidr_parse("::ffff:192.0.2.0/120", &c) == 0 && c.family == AF_INET6);
        CHECK(cidr_parse("2001:db8::1/128", &c) == 0 && c.prefix == 128);
}

static void test_parse_invalid(void)
{
        static const char *const bad[] = {
                "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1",
                "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8/8", "10.1.0.0/8",
                "192.0.2.1/24", "2001:db8::1/32", "::1/127", "10.0.0.0 /8",
                " 10.0.0.0/8", "10.0.0.0/8 ", "10.0.0", "127.1", "0x7f.0.0.1",
                "010.0.0.1", "256.0.0.0", "1.2.3.4.5", "fe80::1%eth0", "[::1]",
                "example.com", "10.0.0.0/1000", "::g", "1:2:3:4:5:6:7:8:9",
                "10.0.0.0/8,10.0.0.0/8",
        };
        struct cidr c;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = cidr_parse(bad[i], &c);

                if (r != -EINVAL)
                        fprintf(stderr, "accepted bad range '%s'\n", bad[i]);
                CHECK(r == -EINVAL);
        }
}

static void test_match_v4(void)
{
        CHECK(match("10.0.0.0/8", "10.255.1.2"));
        CHECK(!match("10.0.0.0/8", "11.0.0.0"));
        CHECK(!match("10.0.0.0/8", "9.255.255.255"));
        CHECK(match("192.0.2.0/25", "192.0.2.127"));
        CHECK(!match("192.0.2.0/25", "192.0.2.128"));
        CHECK(match("192.0.2.7/32", "192.0.2.7"));
        CHECK(!match("192.0.2.7/32", "192.0.2.6"));
        CHECK(match("192.0.2.7", "192.0.2.7"));
        CHECK(match("0.0.0.0/0", "203.0.113.9"));
        CHECK(match("0.0.0.0/0", "255.255.255.255"));
        CHECK(match("128.0.0.0/1", "200.0.0.1"));
        CHECK(!match("128.0.0.0/1", "127.255.255.255"));
        /* An IPv4 range never holds a native IPv6 address. */
        CHECK(!match("0.0.0.0/0", "2001:db8::1"));
        CHECK(!match("0.0.0.0/0", "::1"));
}

static void test_match_v6(void)
{
        CHECK(match("2001:db8::/32", "2001:db8:ffff::1"));
        CHECK(!match("2001:db8::/32", "2001:db9::1"));
        CHECK(match("2001:db8::/33", "2001:db8:7fff::1"));
        CHECK(!match("2001:db8::/33", "2001:db8:8000::1"));
        CHECK(match("::1/128", "::1"));
        CHECK(!match("::1/128", "::2"));
        CHECK(match("::/0", "2001:db8::1"));
        CHECK(match("fe80::/10", "febf::1"));
        CHECK(!match("fe80::/10", "fec0::1"));
        /* A native IPv6 range never holds an IPv4 address outside ::ffff:0:0/96. */
        CHECK(!match("2001:db8::/32", "192.0.2.1"));
        CHECK(!match("::1/128", "127.0.0.1"));
}

static void test_match_mapped(void)
{
        /* A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d. */
        CHECK(match("192.0.2.0/24", "::ffff:192.0.2.200"));
        CHECK(!match("192.0.2.0/24", "::ffff:192.0.3.1"));
        CHECK(match("127.0.0.1/32", "::ffff:127.0.0.1"));
        CHECK(match("0.0.0.0/0", "::ffff:8.8.8.8"));
        CHECK(match("::ffff:192.0.2.0/120", "192.0.2.5"));
        CHECK(!match("::ffff:192.0.2.0/120", "192.0.3.5"));
        CHECK(match("::ffff:0:0/96", "203.0.113.1"));
        CHECK(match("::/0", "203.0.113.1"));
        /* IPv4-compatible (::a.b.c.d) is not mapped. */
        CHECK(!match("192.0.2.0/24", "::192.0.2.1"));
}

static void test_match_other_family(void)
{
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        struct cidr c;

        CHECK(cidr_parse("0.0.0.0/0", &c) == 0);
        CHECK(!cidr_match(&c, (struct sockaddr *)&un));
        CHECK(!cidr_match(&c, NULL));
        CHECK(cidr_parse("::/0", &c) == 0);
        CHECK(!cidr_match(&c, (struct sockaddr *)&un));
}

static void test_list(void)
{
        struct cidr_list l = { 0 };
        struct sockaddr_storage a = peer("198.51.100.7"), b = peer("2001:db8::5");
        struct sockaddr_storage c = peer("203.0.113.1");
        const char *bad = NULL;
        const char *text;

        CHECK(cidr_list_parse(" 198.51.100.0/24 ,\t2001:db8::/64,10.0.0.1 ", &l, &bad) == 0);
        CHECK(l.n == 3);
        CHECK(cidr_list_match(&l, (struct sockaddr *)&a));
        CHECK(cidr_list_match(&l, (struct sockaddr *)&b));
        CHECK(!cidr_list_match(&l, (struct sockaddr *)&c));
        cidr_list_clear(&l);
        CHECK(l.n == 0 && l.items == NULL);
        cidr_list_clear(NULL);

        CHECK(cidr_list_parse("", &l, &bad) == 0 && l.n == 0);
        CHECK(!cidr_list_match(&l, (struct sockaddr *)&a));
        CHECK(cidr_list_parse("  \t ", &l, &bad) == 0 && l.n == 0);

        text = "10.0.0.0/8, 10.1.0.0/8";
        CHECK(cidr_list_parse(text, &l, &bad) == -EINVAL);
        CHECK(bad == text + 12);
        CHECK(l.n == 0 && l.items == NULL);
        text = "10.0.0.0/8,,::1";
        CHECK(cidr_list_parse(text, &l, &bad) == -EINVAL && bad == text + 11);
        text = "10.0.0.0/8,";
        CHECK(cidr_list_parse(text, &l, &bad) == -EINVAL && bad == text + 11);
        text = "nonsense";
        CHECK(cidr_list_parse(text, &l, NULL) == -EINVAL);
}

static void test_list_equal(void)
{
        struct cidr_list a = { 0 }, b = { 0 };

        CHECK(cidr_list_equal(&a, &b));
        CHECK(cidr_list_parse("10.0.0.0/8,::1", &a, NULL) == 0);
        CHECK(cidr_list_parse("10.0.0.0/8, ::1/128", &b, NULL) == 0);
        CHECK(cidr_list_equal(&a, &b));
        cidr_list_clear(&b);
        CHECK(cidr_list_parse("10.0.0.0/9,::1", &b, NULL) == 0);
        CHECK(!cidr_list_equal(&a, &b));
        cidr_list_clear(&b);
        CHECK(cidr_list_parse("::1,10.0.0.0/8", &b, NULL) == 0);
        CHECK(!cidr_list_equal(&a, &b));
        cidr_list_clear(&b);
        CHECK(!cidr_list_equal(&a, &b));
        cidr_list_clear(&a);
}

static void test_parse_addr(void)
{
        struct sockaddr_storage ss;
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

        CHECK(cidr_parse_addr("192.0.2.33", &ss) == 0);
        CHECK(ss.ss_family == AF_INET && in->sin_port == 0);
        CHECK(in->sin_addr.s_addr == htonl(0xc0000221));
        CHECK(cidr_parse_addr("2001:db8::21", &ss) == 0);
        CHECK(ss.ss_family == AF_INET6 && in6->sin6_port == 0 && in6->sin6_addr.s6_addr[15] == 0x21);
        CHECK(cidr_parse_addr("", &ss) == -EINVAL);
        CHECK(cidr_parse_addr("192.0.2.0/24", &ss) == -EINVAL);
        CHECK(cidr_parse_addr("[::1]", &ss) == -EINVAL);
        CHECK(cidr_parse_addr("192.0.2.1:80", &ss) == -EINVAL);
        CHECK(cidr_parse_addr(" 192.0.2.1", &ss) == -EINVAL);
        CHECK(cidr_parse_addr("unknown", &ss) == -EINVAL);
        CHECK(cidr_parse_addr("1111:2222:3333:4444:5555:6666:7777:8888:9999", &ss) == -EINVAL);
}

/* The client cidr_forwarded_client() finds behind @proxies, as text. */
static const char *client(const char *proxies, const char *xff, const char *peer_text,
                          size_t *ret_taken)
{
        static char text[INET6_ADDRSTRLEN];
        struct sockaddr_storage ss = peer(peer_text);
        struct cidr_list l = { 0 };
        const void *raw = ss.ss_family == AF_INET
                ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;

        if (cidr_list_parse(proxies, &l, NULL) < 0) {
                fprintf(stderr, "bad test list %s\n", proxies);
                exit(2);
        }
        *ret_taken = cidr_forwarded_client(xff, &l, &ss);
        cidr_list_clear(&l);
        CHECK(((struct sockaddr_in *)&ss)->sin_port == 0);
        return inet_ntop(ss.ss_family, raw, text, sizeof(text));
}

static void test_forwarded(void)
{
        const char *tp = "10.0.0.0/8, fd00::/8";
        size_t n;

        /* Right to left: the first untrusted hop is the client. */
        CHECK_STR(client(tp, "198.51.100.1, 203.0.113.9, 10.1.2.3", "10.0.0.1", &n),
                  "203.0.113.9");
        CHECK_EQ_INT(n, 2);
        /* Trusted all the way: the leftmost hop. */
        CHECK_STR(client(tp, " 10.9.9.9 ,\t10.1.2.3\t", "10.0.0.1", &n), "10.9.9.9");
        CHECK_EQ_INT(n, 2);
        /* A peer that is no proxy is the client, whatever the header says. */
        CHECK_STR(client(tp, "203.0.113.9", "192.0.2.7", &n), "192.0.2.7");
        CHECK_EQ_INT(n, 0);
        CHECK_STR(client("", "203.0.113.9", "10.0.0.1", &n), "10.0.0.1");
        CHECK_EQ_INT(n, 0);
        /* A dual-stack socket's view of a trusted IPv4 proxy. */
        CHECK_STR(client(tp, "2001:db8::7, fd00::2", "::ffff:10.0.0.1", &n), "2001:db8::7");
        CHECK_EQ_INT(n, 2);
        /* An unparseable hop stops at the last good address. */
        CHECK_STR(client(tp, "203.0.113.9, unknown, 10.1.2.3", "10.0.0.1", &n), "10.1.2.3");
        CHECK_EQ_INT(n, 1);
        CHECK_STR(client(tp, "203.0.113.9,,10.1.2.3", "10.0.0.1", &n), "10.1.2.3");
        CHECK_STR(client(tp, "203.0.113.9:80", "10.0.0.1", &n), "10.0.0.1");
        CHECK_EQ_INT(n, 0);
        CHECK_STR(client(tp, "[2001:db8::1]", "10.0.0.1", &n), "10.0.0.1");
        CHECK_STR(client(tp, "", "10.0.0.1", &n), "10.0.0.1");
        CHECK_STR(client(tp, "0000:0000:0000:0000:0000:ffff:203.0.113.9x", "10.0.0.1", &n),
                  "10.0.0.1");

        struct sockaddr_storage ss = peer("10.0.0.1");
        struct cidr_list l = { 0 };
        CHECK(cidr_list_parse(tp, &l, NULL) == 0);
        CHECK_EQ_INT(cidr_forwarded_client(NULL, &l, &ss), 0);
        cidr_list_clear(&l);
}

/*
 * However much the client writes in front, the hops the proxies appended
 * decide: a header far longer than any buffer must not push them out.
 */
static void test_forwarded_long_header(void)
{
        static const char *const fillers[] = { "10.1.1.1, ", "garbage-", "," };
        const char *tail = "203.0.113.9, 10.0.0.2, 10.0.0.3";
        size_t junk = 100000, n;

        for (size_t f = 0; f < sizeof(fillers) / sizeof(fillers[0]); f++) {
                size_t fl = strlen(fillers[f]), len = 0;
                char *xff = malloc(junk + fl + strlen(tail) + 3);

                while (len < junk) {
                        memcpy(xff + len, fillers[f], fl);
                        len += fl;
                }
                /* Ends in a comma, so the tail's first hop stays whole. */
                snprintf(xff + len, strlen(tail) + 3, ",%s", tail);
                CHECK_STR(client("10.0.0.0/8", xff, "10.0.0.1", &n), "203.0.113.9");
                CHECK_EQ_INT(n, 3);
                free(xff);
        }
}

int main(void)
{
        test_parse_valid();
        test_parse_invalid();
        test_match_v4();
        test_match_v6();
        test_match_mapped();
        test_match_other_family();
        test_list();
        test_list_equal();
        test_parse_addr();
        test_forwarded();
        test_forwarded_long_header();
        return check_summary();
}
