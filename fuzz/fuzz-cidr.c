/*
 * fuzz-cidr — address ranges and the client behind trusted proxies:
 * cidr_parse(), cidr_list_parse(), cidr_list_equal(), cidr_match(),
 * cidr_list_match(), cidr_parse_addr() and cidr_forwarded_client().
 *
 * Input layout (see corpus/cidr/ for examples): three lines,
 *   LIST   a trusted_proxies / allow_from value
 *   XFF    an X-Forwarded-For header
 *   PEER   the address the connection came from
 * and whatever follows is ignored. Every string is passed in a buffer of
 * exactly its size, so AddressSanitizer catches a read past its end.
 *
 * Checked besides memory safety:
 * - the list parses item by item exactly as cidr_parse() parses each
 *   comma-separated piece, and a refused list names the first bad piece;
 * - a parsed range is in canonical form (no host bits, in-range prefix),
 *   reads back the same from its own text, holds its first and last address
 *   (as IPv4 and as IPv4-mapped IPv6), and not the address one bit outside;
 * - a parsed address reads back the same, has port 0, and lies in the /32
 *   or /128 of itself; cidr_parse() agrees with cidr_parse_addr();
 * - every match equals a bit-by-bit reference in one 128-bit space;
 * - the client found behind trusted proxies equals a reference walk over
 *   the split header, every hop right of it is trusted, and, when the walk
 *   stopped before the leftmost hop, 64 KiB of trusted-looking addresses
 *   written in front of the header change nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "cashpay/cidr.h"
#include "fuzz/fuzz.h"

/* Enough to reach every branch; more only costs time. */
#define ITEMS_CHECKED 16
#define HOPS_CHECKED 64
/* Junk written in front of the header: longer than any buffer could be. */
#define JUNK_BYTES 65536

/* A pair of bounds into a string: one comma-separated piece. */
struct piece {
        const char *p;
        size_t n;
};

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

static struct piece trim(struct piece s)
{
        while (s.n > 0 && is_blank(s.p[0])) {
                s.p++;
                s.n--;
        }
        while (s.n > 0 && is_blank(s.p[s.n - 1]))
                s.n--;
        return s;
}

/* A copy in a buffer of exactly its size, NUL included. */
static char *dup_piece(struct piece s)
{
        char *t = malloc(s.n + 1);

        if (!t)
                abort();
        if (s.n > 0)
                memcpy(t, s.p, s.n);
        t[s.n] = '\0';
        return t;
}

/* The pieces between commas, in order; *ret_n >= 1. */
static struct piece *split(const char *text, size_t *ret_n)
{
        size_t n = 1, i = 0;
        const char *p = text;

        for (const char *c = text; *c; c++)
                n += *c == ',';
        struct piece *v = malloc(n * sizeof(*v));
        if (!v)
                abort();
        for (;;) {
                size_t len = strcspn(p, ",");

                v[i++] = (struct piece){ p, len };
                if (p[len] == '\0')
                        break;
                p += len + 1;
        }
        FUZZ_CHECK(i == n, "split %zu of %zu", i, n);
        *ret_n = n;
        return v;
}

/* ---- a reference for matching ------------------------------------------- */

/* The 128-bit form: IPv4 as ::ffff:a.b.c.d. */
static bool to_v6(const struct sockaddr *sa, uint8_t out[16])
{
        static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };

        if (sa->sa_family == AF_INET) {
                memcpy(out, mapped, 12);
                memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
                return true;
        }
        if (sa->sa_family == AF_INET6) {
                memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
                return true;
        }
        return false;
}

static bool bit(const uint8_t *a, unsigned i)
{
        return a[i / 8] >> (7 - i % 8) & 1;
}

FUZZ_UNTRACED static bool ref_match(const struct cidr *c, const struct sockaddr *sa)
{
        struct sockaddr_in v4 = { .sin_family = AF_INET };
        uint8_t net[16], peer[16];
        unsigned prefix = c->prefix;

        if (!to_v6(sa, peer))
                return false;
        if (c->family == AF_INET) {
                memcpy(&v4.sin_addr, c->addr, 4);
                to_v6((const struct sockaddr *)&v4, net);
                prefix += 96;
        } else {
                memcpy(net, c->addr, 16);
        }
        for (unsigned i = 0; i < prefix; i++)
                if (bit(net, i) != bit(peer, i))
                        return false;
        return true;
}

FUZZ_UNTRACED static bool ref_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
        bool any = false;

        for (size_t i = 0; i < l->n; i++)
                any |= ref_match(&l->items[i], sa);
        return any;
}

/* The same address in the other form, when it has one. */
static bool other_form(const struct sockaddr_storage *ss, struct sockaddr_storage *ret)
{
        static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
        struct sockaddr_in *in = (struct sockaddr_in *)ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;

        memset(ret, 0, sizeof(*ret));
        if (ss->ss_family == AF_INET) {
                in6->sin6_family = AF_INET6;
                memcpy(in6->sin6_addr.s6_addr, mapped, 12);
                memcpy(in6->sin6_addr.s6_addr + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
                return true;
        }
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        if (memcmp(a, mapped, 12) != 0)
                return false;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, a + 12, 4);
        return true;
}

/* Both forms of the address against the list, and the reference. */
static void check_list_match(const struct cidr_list *l, const struct sockaddr_storage *ss)
{
        struct sockaddr_storage other;
        bool got = cidr_list_match(l, (const struct sockaddr *)ss);

        FUZZ_CHECK(got == ref_list_match(l, (const struct sockaddr *)ss), "list match %d", got);
        if (other_form(ss, &other))
                FUZZ_CHECK(cidr_list_match(l, (const struct sockaddr *)&other) == got,
                           "IPv4 and mapped forms disagree");
}

/* ---- one range ----------------------------------------------------------- */

static struct sockaddr_storage sockaddr_of(int family, const uint8_t *addr)
{
        struct sockaddr_storage ss = { 0 };

        if (family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *)&ss;
                in->sin_family = AF_INET;
                memcpy(&in->sin_addr, addr, 4);
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                in6->sin6_family = AF_INET6;
                memcpy(&in6->sin6_addr, addr, 16);
        }
        return ss;
}

/* "ADDR/PREFIX" for @c, parsed again. */
static void check_text_form(const struct cidr *c)
{
        char addr[INET6_ADDRSTRLEN], text[INET6_ADDRSTRLEN + 8];
        struct cidr back;

        FUZZ_CHECK(inet_ntop(c->family, c->addr, addr, sizeof(addr)), "inet_ntop");
        snprintf(text, sizeof(text), "%s/%u", addr, c->prefix);
        char *exact = dup_piece((struct piece){ text, strlen(text) });
        FUZZ_CHECK(cidr_parse(exact, &back) == 0, "own text %s refused", text);
        FUZZ_CHECK(back.family == c->family && back.prefix == c->prefix &&
                   memcmp(back.addr, c->addr, 16) == 0, "own text %s reads differently", text);
        free(exact);
}

/* The range holds @addr (in both forms): cidr_match and the reference agree. */
static void check_holds(const struct cidr *c, const uint8_t *addr, bool want, const char *what)
{
        struct sockaddr_storage ss = sockaddr_of(c->family, addr), other;

        FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)&ss) == want, "%s", what);
        FUZZ_CHECK(ref_match(c, (const struct sockaddr *)&ss) == want, "reference: %s", what);
        if (other_form(&ss, &other))
                FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)&other) == want,
                           "%s, other form", what);
}

static void check_cidr(const struct cidr *c)
{
        static const uint8_t zero[16];
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        unsigned bits = c->family == AF_INET ? 32 : 128;
        uint8_t a[16];

        FUZZ_CHECK(c->family == AF_INET || c->family == AF_INET6, "family %d", c->family);
        FUZZ_CHECK(c->prefix <= bits, "prefix %u", c->prefix);
        FUZZ_CHECK(bits == 128 || memcmp(c->addr + 4, zero, 12) == 0, "IPv4 tail not zero");
        for (unsigned i = c->prefix; i < bits; i++)
                FUZZ_CHECK(!bit(c->addr, i), "host bit %u set", i);
        check_text_form(c);

        memcpy(a, c->addr, 16);
        check_holds(c, a, true, "network address outside its range");
        for (unsigned i = c->prefix; i < bits; i++)
                a[i / 8] |= (uint8_t)(0x80u >> (i % 8));
        check_holds(c, a, true, "last address outside its range");
        if (c->prefix > 0) {
                memcpy(a, c->addr, 16);
                a[(c->prefix - 1) / 8] ^= (uint8_t)(0x80u >> ((c->prefix - 1) % 8));
                check_holds(c, a, false, "address one bit outside inside the range");
        }
        FUZZ_CHECK(!cidr_match(c, (const struct sockaddr *)&un), "AF_UNIX matched");
        FUZZ_CHECK(!cidr_match(c, NULL), "NULL matched");
}

/* ---- one address ----------------------------------------------------------- */

/* cidr_parse_addr() on an exact copy of @s. */
static int parse_addr(struct piece s, struct sockaddr_storage *ret)
{
        char *text = dup_piece(s);
        int r = cidr_parse_addr(text, ret);

        free(text);
        return r;
}

static const uint8_t *addr_bytes(const struct sockaddr_storage *ss)
{
        return ss->ss_family == AF_INET
                ? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr
                : ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
}

/* A parsed address: clean, reads back the same, inside its own /32 or /128. */
static void check_addr(const struct sockaddr_storage *ss, const struct cidr *c)
{
        unsigned bits = ss->ss_family == AF_INET ? 32 : 128;
        const uint8_t *a = addr_bytes(ss);
        struct sockaddr_storage clean = sockaddr_of(ss->ss_family, a), back;
        char addr[INET6_ADDRSTRLEN];

        FUZZ_CHECK(ss->ss_family == AF_INET || ss->ss_family == AF_INET6, "family");
        FUZZ_CHECK(memcmp(ss, &clean, sizeof(*ss)) == 0, "port, flow or scope not zero");
        FUZZ_CHECK(c->family == ss->ss_family && c->prefix == bits &&
                   memcmp(c->addr, a, bits / 8) == 0, "cidr_parse reads the address differently");
        FUZZ_CHECK(inet_ntop(ss->ss_family, a, addr, sizeof(addr)), "inet_ntop");
        FUZZ_CHECK(parse_addr((struct piece){ addr, strlen(addr) }, &back) == 0 &&
                   memcmp(&back, ss, sizeof(*ss)) == 0, "%s reads back differently", addr);
        check_cidr(c);
        FUZZ_CHECK(cidr_match(c, (const struct sockaddr *)ss), "%s outside its own /%u", addr,
                   bits);
}

/* Parses @s as a bare address, checking the answer; true and *ret on success. */
static bool check_addr_text(struct piece s, struct sockaddr_storage *ret)
{
        char *text = dup_piece(s);
        struct cidr c;
        int r = cidr_parse_addr(text, ret);
        /* Without a '/' both parsers take the same addresses. */
        int rc = strchr(text, '/') ? -EINVAL : cidr_parse(text, &c);

        free(text);
        FUZZ_CHECK(r == 0 || r == -EINVAL, "cidr_parse_addr: %d", r);
        FUZZ_CHECK((r == 0) == (rc == 0), "cidr_parse_addr %d, cidr_parse %d", r, rc);
        if (r == 0)
                check_addr(ret, &c);
        return r == 0;
}

/* ---- the list -------------------------------------------------------------- */

static bool only_blanks(const char *s)
{
        while (is_blank(*s))
                s++;
        return *s == '\0';
}

/* The list rendered from its items and parsed again equals it. */
static void check_equal(const struct cidr_list *l)
{
        size_t cap = l->n * (INET6_ADDRSTRLEN + 8) + 1, len = 0;
        char *text = malloc(cap);
        struct cidr_list back;

        if (!text)
                abort();
        text[0] = '\0';
        for (size_t i = 0; i < l->n; i++) {
                char addr[INET6_ADDRSTRLEN];

                inet_ntop(l->items[i].family, l->items[i].addr, addr, sizeof(addr));
                len += (size_t)snprintf(text + len, cap - len, "%s%s/%u", i ? ", " : "", addr,
                                        l->items[i].prefix);
        }
        FUZZ_CHECK(cidr_list_parse(text, &back, NULL) == 0, "own text refused: %s", text);
        FUZZ_CHECK(cidr_list_equal(l, &back) && cidr_list_equal(&back, l), "own text differs");
        if (back.n > 0) {
                back.n--;
                FUZZ_CHECK(!cidr_list_equal(l, &back), "shorter list still equal");
                back.n++;
                back.items[back.n - 1].prefix ^= 1; /* any change at all */
                FUZZ_CHECK(!cidr_list_equal(l, &back), "changed list still equal");
        }
        cidr_list_clear(&back);
        FUZZ_CHECK(back.n == 0 && !back.items, "cleared list not empty");
        cidr_list_clear(NULL);
        free(text);
}

/* cidr_list_parse() against cidr_parse() piece by piece. */
static void check_list(const char *text, struct cidr_list *l)
{
        const char *bad = NULL;
        int r = cidr_list_parse(text, l, &bad);

        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM, "cidr_list_parse: %d", r);
        if (r == -ENOMEM || only_blanks(text)) {
                FUZZ_CHECK(r == -ENOMEM || l->n == 0, "blank list has %zu items", l->n);
                return;
        }
        size_t n;
        struct piece *v = split(text, &n);
        size_t i = 0;
        for (; i < n; i++) {
                struct piece t = trim(v[i]);
                char *item = dup_piece(t);
                struct cidr c;
                int ri = cidr_parse(item, &c);

                free(item);
                if (ri < 0) {
                        FUZZ_CHECK(r == -EINVAL && bad == t.p, "piece %zu refused: r=%d, bad at %td",
                                   i, r, bad ? bad - text : -1);
                        break;
                }
                FUZZ_CHECK(r != 0 || memcmp(&l->items[i], &c, sizeof(c)) == 0, "piece %zu", i);
                if (i < ITEMS_CHECKED)
                        check_cidr(&c);
        }
        FUZZ_CHECK(r == 0 ? i == n && l->n == n : i < n, "r=%d: %zu items, %zu of %zu pieces",
                   r, l->n, i, n);
        FUZZ_CHECK(r == 0 || (l->n == 0 && !l->items), "refused list not empty");
        free(v);
        if (r == 0)
                check_equal(l);
}

/* ---- X-Forwarded-For ------------------------------------------------------ */

/*
 * The walk written the other way round: split first, then from the last
 * hop leftwards. *ret_stop: the index where it stopped.
 */
static size_t ref_forwarded(const char *xff, const struct cidr_list *l,
                            struct sockaddr_storage *peer, size_t *ret_stop)
{
        size_t n, taken = 0;
        struct piece *v;

        *ret_stop = 0;
        if (!ref_list_match(l, (const struct sockaddr *)peer))
                return 0;
        v = split(xff, &n);
        for (size_t i = n; i-- > 0;) {
                struct sockaddr_storage hop;

                *ret_stop = i;
                if (parse_addr(trim(v[i]), &hop) < 0)
                        break;
                *peer = hop;
                taken++;
                if (!ref_list_match(l, (const struct sockaddr *)&hop))
                        break;
        }
        free(v);
        return taken;
}

/* @xff with JUNK_BYTES of @filler ("ADDR,") written in front of it. */
static char *with_junk(const char *xff, const char *filler)
{
        size_t fl = strlen(filler), xl = strlen(xff), len = 0;
        char *s = malloc(2 * JUNK_BYTES + fl + xl + 1);

        if (!s)
                abort();
        memcpy(s, filler, fl);
        for (len = fl; len < JUNK_BYTES; len *= 2) /* doubling: a few copies */
                memcpy(s + len, s, len);
        memcpy(s + len, xff, xl + 1);
        return s;
}

static void check_forwarded(const char *xff, const struct cidr_list *l,
                            const struct sockaddr_storage *peer)
{
        struct sockaddr_storage got = *peer, want = *peer, other;
        size_t stop;
        size_t taken = cidr_forwarded_client(xff, l, &got);
        size_t want_taken = ref_forwarded(xff, l, &want, &stop);

        FUZZ_CHECK(taken == want_taken, "took %zu hops, reference %zu", taken, want_taken);
        FUZZ_CHECK(memcmp(&got, &want, sizeof(got)) == 0, "another client than the reference");
        FUZZ_CHECK(cidr_forwarded_client(NULL, l, &want) == 0, "NULL header");

        if (other_form(peer, &other)) {
                FUZZ_CHECK(cidr_forwarded_client(xff, l, &other) == taken,
                           "IPv4 and mapped peers disagree");
                FUZZ_CHECK(taken == 0 || memcmp(&other, &got, sizeof(got)) == 0,
                           "IPv4 and mapped peers find different clients");
        }
        if (stop == 0)
                return;
        /* The walk ended inside the header: nothing left of it counts. */
        char filler[INET6_ADDRSTRLEN + 2];
        inet_ntop(peer->ss_family, addr_bytes(peer), filler, INET6_ADDRSTRLEN);
        strcat(filler, ",");
        char *long_xff = with_junk(xff, filler);
        struct sockaddr_storage again = *peer;
        FUZZ_CHECK(cidr_forwarded_client(long_xff, l, &again) == taken &&
                   memcmp(&again, &got, sizeof(got)) == 0,
                   "%d bytes in front of the header changed the client", JUNK_BYTES);
        free(long_xff);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cursor in = { data, size };
        char *list = cursor_field(&in, '\n');
        char *xff = cursor_field(&in, '\n');
        char *peer_text = cursor_field(&in, '\n');
        struct cidr_list l = { 0 };
        struct sockaddr_storage peer;

        check_list(list, &l);

        size_t n;
        struct piece *hops = split(xff, &n);
        for (size_t i = 0; i < n && i < HOPS_CHECKED; i++) {
                struct sockaddr_storage hop;

                if (check_addr_text(trim(hops[i]), &hop))
                        check_list_match(&l, &hop);
        }
        free(hops);

        if (check_addr_text((struct piece){ peer_text, strlen(peer_text) }, &peer)) {
                check_list_match(&l, &peer);
                check_forwarded(xff, &l, &peer);
        }
        cidr_list_clear(&l);
        free(list);
        free(xff);
        free(peer_text);
        return 0;
}
