/*
 * Unit tests for the return page: titles and status codes, HTML escaping,
 * self-containment, the pending refresh, redirect templates and amounts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/page.h"
#include "tests/check.h"

static char *render(const struct page_info *info)
{
        char *html = NULL;
        size_t len = 0;
        int r = page_render(info, &html, &len);

        CHECK(r == 0);
        if (r != 0)
                return NULL;
        CHECK(html && strlen(html) == len);
        return html;
}

static size_t count(const char *hay, const char *needle)
{
        size_t n = 0;

        for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static struct page_info sample(enum page_kind kind)
{
        struct page_info info = {
                .kind = kind, .shop_name = "Acme Watches", .charge_id = "chg_a1b2c3d4e5",
                .has_amount = true, .amount = 2000, .currency = "YER", .refresh = 3,
        };

        if (kind == PAGE_BAD_REQUEST) {
                info.charge_id = NULL;
                info.has_amount = false;
        }
        return info;
}

static void test_kinds(void)
{
        static const struct {
                enum page_kind kind;
                const char *title;
                unsigned status;
        } cases[] = {
                { PAGE_SUCCESS, "Payment received", 200 },
                { PAGE_FAILED, "Payment failed", 200 },
                { PAGE_PENDING, "Processing your payment", 200 },
                { PAGE_BAD_REQUEST, "We could not find that payment", 400 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct page_info info = sample(cases[i].kind);
                char *html = render(&info);
                char h1[128];

                snprintf(h1, sizeof(h1), "<h1>%s</h1>", cases[i].title);
                CHECK(page_http_status(cases[i].kind) == cases[i].status);
                CHECK(html && strncmp(html, "<!DOCTYPE html>", 15) == 0);
                CHECK(count(html, h1) == 1);
                CHECK(count(html, "<title>") == 1 && strstr(html, cases[i].title));
                CHECK(strstr(html, "<meta name=\"viewport\" content=\"width=device-width, "
                                   "initial-scale=1\">"));
                CHECK(strstr(html, "<meta charset=\"utf-8\">"));
                CHECK(count(html, "<svg") >= 1);
                CHECK(strstr(html, "Acme Watches"));
                CHECK(strstr(html, "</html>\n"));
                if (cases[i].kind == PAGE_BAD_REQUEST)
                        CHECK(!strstr(html, "chg_") && !strstr(html, "YER"));
                else
                        CHECK(strstr(html, "<code>chg_a1b2c3d4e5</code>") &&
                              strstr(html, "<span class=\"cur\">YER</span> <span class=\"num\">2,000</span>"));
                free(html);
        }
        /* An unknown kind is refused, not rendered as something else. */
        {
                struct page_info info = sample(PAGE_SUCCESS);
                char *html = NULL;

                info.kind = (enum page_kind) 7;
                CHECK(page_render(&info, &html, NULL) == -EINVAL && html == NULL);
        }
}

static void test_escaping(void)
{
        struct page_info info = sample(PAGE_SUCCESS);
        char *html;

        info.shop_name = "<script>alert(\"x\")</script> & 'Co'";
        info.charge_id = "chg_\"><img src=x onerror=alert(1)>";
        info.order_ref = "<b>ref</b>";
        info.description = "it's \"quoted\"";
        info.currency = "<i>";
        html = render(&info);
        CHECK(html && !strstr(html, "<script"));
        CHECK(html && !strstr(html, "<img"));
        CHECK(html && !strstr(html, "<b>") && !strstr(html, "<i>"));
        CHECK(html && !strstr(html, "alert(\"x\")") && !strstr(html, "'Co'"));
        CHECK(html && strstr(html, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; "
                                   "&amp; &#39;Co&#39;"));
        CHECK(html && strstr(html, "chg_&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
        CHECK(html && strstr(html, "it&#39;s &quot;quoted&quot;"));
        /* The shop name also appears in <title>, escaped there too. */
        CHECK(html && count(html, "&lt;script&gt;") == 2);
        /* The monogram is the first character, escaped as well. */
        CHECK(html && strstr(html, "<span class=\"mono\" aria-hidden=\"true\">&lt;</span>"));
        free(html);

        /* Control characters are dropped; UTF-8 text passes through. */
        info = sample(PAGE_FAILED);
        info.shop_name = "\xc3\x89picerie\x01\x1b[31m";
        html = render(&info);
        CHECK(html && strstr(html, "\xc3\x89picerie[31m") && !strstr(html, "\x1b"));
        CHECK(html && strstr(html, ">\xc3\x89</span>"));
        free(html);
}

/* True when anything could load a resource or link away: only href="" may. */
static bool has_external_reference(const char *html)
{
        static const char *const attrs[] = { "src=", "href=", "url(", "@import", "srcset=" };

        for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
                for (const char *p = html; (p = strstr(p, attrs[i])); p++)
                        if (strncmp(p, "href=\"\"", 7) != 0)
                                return true;
        return false;
}

static void test_self_contained(void)
{
        for (int k = PAGE_SUCCESS; k <= PAGE_BAD_REQUEST; k++) {
                struct page_info info = sample((enum page_kind) k);
                char *html = render(&info);

                CHECK(html && !has_external_reference(html));
                CHECK(html && !strstr(html, "http:") && !strstr(html, "https:") &&
                      !strstr(html, "//"));
                CHECK(html && !strstr(html, "<script") && !strstr(html, "<link") &&
                      !strstr(html, "<img") && !strstr(html, "<iframe"));
                /* The page repeats the policy it is served with. */
                CHECK(html && strstr(html, "content=\"default-src 'none'; "
                                           "style-src 'unsafe-inline'\""));
                free(html);
        }
        /* The detector itself finds what it is meant to find. */
        CHECK(has_external_reference("<a href=\"https://evil.example/\">"));
        CHECK(has_external_reference("<img src=\"a.png\">"));
        CHECK(!has_external_reference("<a class=\"btn\" href=\"\">"));
}

static void test_refresh(void)
{
        for (int k = PAGE_SUCCESS; k <= PAGE_BAD_REQUEST; k++) {
                struct page_info info = sample((enum page_kind) k);
                char *html = render(&info);
                bool pending = k == PAGE_PENDING;

                CHECK(html && (count(html, "http-equiv=\"refresh\"") == (pending ? 1u : 0u)));
                CHECK(html && (strstr(html, "updates itself") != NULL) == pending);
                /* The only link is the reload link, and it is relative (empty). */
                CHECK(html && count(html, "<a ") == (pending ? 1u : 0u));
                CHECK(html && count(html, "href=\"\"") == (pending ? 1u : 0u));
                free(html);
        }

        static const struct {
                unsigned in;
                const char *meta, *text;
        } cases[] = {
                { 3, "content=\"3\">", "every 3 seconds." },
                { 1, "content=\"1\">", "every 1 second." },
                { 0, "content=\"3\">", "every 3 seconds." },
                { 99999, "content=\"3600\">", "every 3600 seconds." },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct page_info info = sample(PAGE_PENDING);
                char *html;

                info.refresh = cases[i].in;
                html = render(&info);
                CHECK(html && strstr(html, "<meta http-equiv=\"refresh\" ") &&
                      strstr(html, cases[i].meta));
                CHECK(html && strstr(html, cases[i].text));
                free(html);
        }
}

static void test_optional_parts(void)
{
        struct page_info info = sample(PAGE_SUCCESS);
        char *html;

        info.shop_name = NULL;
        info.has_amount = false;
        html = render(&info);
        CHECK(html && !strstr(html, "class=\"shop\"") && !strstr(html, "class=\"amount\""));
        CHECK(html && strstr(html, "<title>Payment received</title>"));
        free(html);

        info = sample(PAGE_SUCCESS);
        info.shop_name = "";
        info.order_ref = "ORD-42";
        info.description = "A watch";
        html = render(&info);
        CHECK(html && !strstr(html, "class=\"shop\""));
        CHECK(html && strstr(html, "<dt>Order</dt><dd>ORD-42</dd>"));
        CHECK(html && strstr(html, "<p class=\"desc\">A watch</p>"));
        free(html);

        /* A negative amount is a caller bug: refused. */
        info = sample(PAGE_SUCCESS);
        info.amount = -1;
        html = NULL;
        CHECK(page_render(&info, &html, NULL) == -EINVAL && html == NULL);

        /* Minor units on the page follow the currency's exponent. */
        info = sample(PAGE_SUCCESS);
        info.amount = 1234567;
        info.currency = "KWD";
        info.minor_units = true;
        html = render(&info);
        CHECK(html && strstr(html, "<p class=\"amount\"><span class=\"cur\">KWD</span> "
                           "<span class=\"num\">1,234.567</span></p>"));
        free(html);
}

static void check_expand(const char *tmpl, const char *cid, const char *ref,
                         int want_r, const char *want, int line)
{
        char *out = NULL;
        int r = page_expand_url(tmpl, cid, ref, &out);

        check_at(__FILE__, line, r == want_r && (!want || (out && strcmp(out, want) == 0)),
                 "expand(\"%s\") = %d \"%s\", want %d \"%s\"", tmpl, r,
                 out ? out : "(null)", want_r, want ? want : "(null)");
        free(out);
}

#define EXPAND(t, c, o, r, w) check_expand(t, c, o, r, w, __LINE__)

static void test_expand_url(void)
{
        EXPAND("https://shop.example/thanks", "chg_1", "A", 0, "https://shop.example/thanks");
        EXPAND("https://s.example/ok?c={charge_id}&o={order_ref}", "chg_a-b_c", "ORD 1/2&x=y", 0,
               "https://s.example/ok?c=chg_a-b_c&o=ORD%201%2F2%26x%3Dy");
        EXPAND("https://s.example/o/{order_ref}", "chg_1", "caf\xc3\xa9~.-_", 0,
               "https://s.example/o/caf%C3%A9~.-_");
        EXPAND("https://s.example/o/{order_ref}/x", "chg_1", NULL, 0, "https://s.example/o//x");
        EXPAND("https://s.example/{charge_id}{charge_id}", "chg_1", NULL, 0,
               "https://s.example/chg_1chg_1");
        EXPAND("/x?a=%{order_ref}", "chg_1", "%+?#", 0, "/x?a=%%25%2B%3F%23");
        EXPAND("", "chg_1", "A", 0, "");
        EXPAND("https://s.example/{order}", "chg_1", "A", -EINVAL, NULL);
        EXPAND("https://s.example/{charge_id", "chg_1", "A", -EINVAL, NULL);
        EXPAND("https://s.example/{", "chg_1", "A", -EINVAL, NULL);
        EXPAND("https://s.example/}", "chg_1", "A", -EINVAL, NULL);
        EXPAND("https://s.example/{CHARGE_ID}", "chg_1", "A", -EINVAL, NULL);
        EXPAND("https://s.example/{{charge_id}}", "chg_1", "A", -EINVAL, NULL);
}

static void check_amount(int64_t amount, const char *cur, bool minor, int want_r,
                         const char *want, int line)
{
        char buf[PAGE_AMOUNT_MAX] = "untouched";
        int r = page_format_amount(amount, cur, minor, buf, sizeof(buf));

        check_at(__FILE__, line, r == want_r && (!want || strcmp(buf, want) == 0),
                 "format(%lld, %s, %d) = %d \"%s\", want %d \"%s\"", (long long) amount,
                 cur ? cur : "NULL", minor, r, buf, want_r, want ? want : "");
}

#define AMOUNT(a, c, m, r, w) check_amount(a, c, m, r, w, __LINE__)

static void test_format_amount(void)
{
        AMOUNT(0, "YER", false, 0, "YER 0");
        AMOUNT(5, "YER", false, 0, "YER 5");
        AMOUNT(2000, "YER", false, 0, "YER 2,000");
        AMOUNT(1234567, "YER", false, 0, "YER 1,234,567");
        AMOUNT(999, "YER", false, 0, "YER 999");
        AMOUNT(100000, "YER", false, 0, "YER 100,000");
        AMOUNT(INT64_C(9007199254740991), "YER", false, 0, "YER 9,007,199,254,740,991");
        AMOUNT(0, "USD", true, 0, "USD 0.00");
        AMOUNT(5, "USD", true, 0, "USD 0.05");
        AMOUNT(2000, "USD", true, 0, "USD 20.00");
        AMOUNT(1234567, "USD", true, 0, "USD 12,345.67");
        AMOUNT(2000, "YER", true, 0, "YER 20.00");
        AMOUNT(2000, "JPY", true, 0, "JPY 2,000");
        AMOUNT(1234567, "KRW", true, 0, "KRW 1,234,567");
        AMOUNT(5, "KWD", true, 0, "KWD 0.005");
        AMOUNT(1234567, "KWD", true, 0, "KWD 1,234.567");
        AMOUNT(1000, "BHD", true, 0, "BHD 1.000");
        AMOUNT(12345, "CLF", true, 0, "CLF 1.2345");
        AMOUNT(2000, "KWD", false, 0, "KWD 2,000");
        /* A code the table does not know is shown as-is, with 2 decimals. */
        AMOUNT(2000, "ZZZ", true, 0, "ZZZ 20.00");
        AMOUNT(2000, "ZZZ", false, 0, "ZZZ 2,000");
        AMOUNT(2000, NULL, false, 0, "2,000");
        AMOUNT(2000, "", true, 0, "20.00");
        /* Negative amounts cannot come from a valid charge. */
        AMOUNT(-1, "USD", true, -EINVAL, NULL);
        AMOUNT(INT64_MIN, "USD", false, -EINVAL, NULL);

        char small[8];
        CHECK(page_format_amount(2000, "YER", false, small, sizeof(small)) == -ENOBUFS);
        CHECK(page_format_amount(2000, "YER", false, small, 4) == -ENOBUFS);
        CHECK(page_format_amount(20, "YER", false, small, sizeof(small)) == 0 &&
              strcmp(small, "YER 20") == 0);
        char largest[PAGE_AMOUNT_MAX];
        CHECK(page_format_amount(INT64_MAX, "ABC", true, largest, sizeof(largest)) == 0 &&
              strcmp(largest, "ABC 92,233,720,368,547,758.07") == 0);
}

static void test_security_headers(void)
{
        static const char *const want[][2] = {
                { "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'" },
                { "Cache-Control", "no-store" },
                { "X-Content-Type-Options", "nosniff" },
                { "Referrer-Policy", "no-referrer" },
                { "X-Frame-Options", "DENY" },
        };
        size_t n = 0;
        const struct page_header *h = page_security_headers(&n);

        CHECK(n == sizeof(want) / sizeof(want[0]));
        for (size_t i = 0; i < n && i < sizeof(want) / sizeof(want[0]); i++) {
                CHECK_STR(h[i].name, want[i][0]);
                CHECK_STR(h[i].value, want[i][1]);
        }
}

int main(void)
{
        test_kinds();
        test_escaping();
        test_self_contained();
        test_refresh();
        test_optional_parts();
        test_expand_url();
        test_format_amount();
        test_security_headers();
        return check_summary();
}
