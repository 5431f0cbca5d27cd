/*
 * page — the customer-facing return page.
 *
 * After paying, CashPay sends the customer's browser back to the merchant.
 * This module turns what the store knows about the charge into one
 * self-contained HTML document: no scripts, no external resources, so the
 * strict Content-Security-Policy of page_security_headers() holds and the
 * page works without any other request. It also formats amounts with their
 * ISO 4217 exponent and expands the success/failure redirect templates.
 *
 * Pure: no I/O, no clock, no logging. All dynamic text reaches the markup
 * through sb_put_escaped(), the only place that escapes HTML.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/page.h"

/* ---- a growing string with a sticky error, so rendering reads linearly ---- */

struct sbuf {
        char *data;
        size_t len;
        size_t cap;
        int err;
};

static void sb_reserve(struct sbuf *b, size_t extra)
{
        size_t need, cap;
        char *p;

        if (b->err)
                return;
        /* Pages are a few KiB; this bound also keeps the doubling finite. */
        if (extra >= SIZE_MAX / 4 - b->len) {
                b->err = -ENOMEM;
                return;
        }
        need = b->len + extra + 1;
        if (need <= b->cap)
                return;
        for (cap = b->cap ? b->cap : 4096; cap < need; cap *= 2)
                ;
        p = realloc(b->data, cap);
        if (!p) {
                b->err = -ENOMEM;
                return;
        }
        b->data = p;
        b->data[b->len] = '\0';
        b->cap = cap;
}

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
        sb_reserve(b, n);
        if (b->err)
                return;
        memcpy(b->data + b->len, s, n);
        b->len += n;
        b->data[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
        sb_putn(b, s, strlen(s));
}

static void sb_putc(struct sbuf *b, char c)
{
        sb_putn(b, &c, 1);
}

/*
 * The one HTML escaper. Safe in text and in quoted attribute values. C0
 * controls and DEL have no business on a page and are dropped; tab and
 * newline are kept.
 */
static void sb_put_escaped(struct sbuf *b, const char *s)
{
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;

                switch (c) {
                case '&': sb_puts(b, "&amp;"); break;
                case '<': sb_puts(b, "&lt;"); break;
                case '>': sb_puts(b, "&gt;"); break;
                case '"': sb_puts(b, "&quot;"); break;
                case '\'': sb_puts(b, "&#39;"); break;
                default:
                        if ((c >= 0x20 && c != 0x7f) || c == '\t' || c == '\n')
                                sb_putc(b, (char) c);
                        break;
                }
        }
}

/* ---- amounts ---- */

struct currency_exp {
        char code[4];
        unsigned exp;
};

/* ISO 4217 currencies whose minor unit is not 1/100; every other code has 2. */
static const struct currency_exp currency_exps[] = {
        { "BIF", 0 }, { "CLP", 0 }, { "DJF", 0 }, { "GNF", 0 }, { "ISK", 0 },
        { "JPY", 0 }, { "KMF", 0 }, { "KRW", 0 }, { "PYG", 0 }, { "RWF", 0 },
        { "UGX", 0 }, { "UYI", 0 }, { "VND", 0 }, { "VUV", 0 }, { "XAF", 0 },
        { "XOF", 0 }, { "XPF", 0 },
        { "BHD", 3 }, { "IQD", 3 }, { "JOD", 3 }, { "KWD", 3 }, { "LYD", 3 },
        { "OMR", 3 }, { "TND", 3 },
        { "CLF", 4 }, { "UYW", 4 },
};

static unsigned currency_exponent(const char *code)
{
        size_t i;

        for (i = 0; code && i < sizeof(currency_exps) / sizeof(currency_exps[0]); i++)
                if (strcmp(code, currency_exps[i].code) == 0)
                        return currency_exps[i].exp;
        return 2;
}

/* Digits of @v with "," every three, into @out (at least 32 bytes). */
static void group_thousands(uint64_t v, char *out)
{
        char digits[24];
        int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
        int i, o = 0;

        for (i = 0; i < n; i++) {
                if (i > 0 && (n - i) % 3 == 0)
                        out[o++] = ',';
                out[o++] = digits[i];
        }
        out[o] = '\0';
}

/* @amount (>= 0) as "1,234.567" for exponent 3. Returns 0 or -ENOBUFS. */
static int format_number(int64_t amount, unsigned exp, char *buf, size_t len)
{
        uint64_t scale = 1, v = (uint64_t) amount;
        char whole[32];
        int n;

        for (unsigned i = 0; i < exp; i++)
                scale *= 10;
        group_thousands(v / scale, whole);
        if (exp == 0)
                n = snprintf(buf, len, "%s", whole);
        else
                n = snprintf(buf, len, "%s.%0*" PRIu64, whole, (int) exp, v % scale);
        return n < 0 || (size_t) n >= len ? -ENOBUFS : 0;
}

int page_format_amount(int64_t amount, const char *currency, bool minor_units,
                       char *buf, size_t len)
{
        unsigned exp = minor_units ? currency_exponent(currency) : 0;
        size_t prefix = 0;

        if (amount < 0)
                return -EINVAL;
        if (currency && *currency) {
                int n = snprintf(buf, len, "%s ", currency);

                if (n < 0 || (size_t) n >= len)
                        return -ENOBUFS;
                prefix = (size_t) n;
        }
        return format_number(amount, exp, buf + prefix, len - prefix);
}

/* ---- redirect templates ---- */

static bool is_unreserved(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

static void sb_put_pct(struct sbuf *b, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";

        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (is_unreserved(c)) {
                        sb_putc(b, (char) c);
                        continue;
                }
                sb_putc(b, '%');
                sb_putc(b, hex[c >> 4]);
                sb_putc(b, hex[c & 0xf]);
        }
}

/* Expand the placeholder at @p ("{..."); returns its length or -EINVAL. */
static int expand_one(struct sbuf *b, const char *p, const char *charge_id,
                      const char *order_ref)
{
        static const char cid[] = "{charge_id}", oref[] = "{order_ref}";

        if (strncmp(p, cid, sizeof(cid) - 1) == 0) {
                sb_put_pct(b, charge_id);
                return (int) sizeof(cid) - 1;
        }
        if (strncmp(p, oref, sizeof(oref) - 1) == 0) {
                sb_put_pct(b, order_ref);
                return (int) sizeof(oref) - 1;
        }
        return -EINVAL;
}

int page_expand_url(const char *tmpl, const char *charge_id, const char *order_ref, char **ret)
{
        struct sbuf b = { 0 };
        const char *p = tmpl;

        if (!tmpl)
                return -EINVAL;
        sb_reserve(&b, strlen(tmpl) + 64);
        while (*p && !b.err) {
                size_t plain = strcspn(p, "{}");
                int n;

                sb_putn(&b, p, plain);
                p += plain;
                if (!*p)
                        break;
                n = *p == '{' ? expand_one(&b, p, charge_id, order_ref) : -EINVAL;
                if (n < 0)
                        b.err = n;
                else
                        p += n;
        }
        if (b.err) {
                free(b.data);
                return b.err;
        }
        *ret = b.data;
        return 0;
}

/* ---- the page ---- */

static const struct page_header security_headers[] = {
        { "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'" },
        { "Cache-Control", "no-store" },
        { "X-Content-Type-Options", "nosniff" },
        { "Referrer-Policy", "no-referrer" },
        { "X-Frame-Options", "DENY" },
};

const struct page_header *page_security_headers(size_t *ret_n)
{
        *ret_n = sizeof(security_headers) / sizeof(security_headers[0]);
        return security_headers;
}

unsigned page_http_status(enum page_kind kind)
{
        return kind == PAGE_BAD_REQUEST ? 400 : 200;
}

/* What differs between the four kinds; none of it is dynamic. */
struct page_text {
        const char *cls;
        const char *title;
        const char *message;
        const char *icon;
};

#define SVG_OPEN "<svg viewBox=\"0 0 24 24\" aria-hidden=\"true\" focusable=\"false\">" \
        "<circle cx=\"12\" cy=\"12\" r=\"12\" fill=\"currentColor\"/>" \
        "<g fill=\"none\" stroke=\"#fff\" stroke-width=\"2.2\" " \
        "stroke-linecap=\"round\" stroke-linejoin=\"round\">"
#define SVG_CLOSE "</g></svg>"

static const struct page_text page_texts[] = {
        [PAGE_SUCCESS] = {
                "success", "Payment received",
                "Thank you! Your payment was successful. You can safely close this page.",
                SVG_OPEN "<path d=\"M7 12.4l3.3 3.3L17.2 8.8\"/>" SVG_CLOSE,
        },
        [PAGE_FAILED] = {
                "failed", "Payment failed",
                "Your payment could not be completed. Please go back to the shop and "
                "try again, or choose another payment method.",
                SVG_OPEN "<path d=\"M8.6 8.6l6.8 6.8M15.4 8.6l-6.8 6.8\"/>" SVG_CLOSE,
        },
        [PAGE_PENDING] = {
                "pending", "Processing your payment",
                "We are waiting for the payment provider to confirm your payment. "
                "There is no need to pay again.",
                SVG_OPEN "<circle cx=\"12\" cy=\"12\" r=\"6.6\" stroke-width=\"1.8\"/>"
                "<path d=\"M12 12V8.6\" stroke-width=\"1.8\"/>"
                "<path class=\"hand\" d=\"M12 12h3.6\" stroke-width=\"1.8\"/>" SVG_CLOSE,
        },
        [PAGE_BAD_REQUEST] = {
                "bad", "We could not find that payment",
                "The link you followed is incomplete or invalid. If you have just paid, "
                "your payment is not affected: please return to the shop's website.",
                SVG_OPEN "<path d=\"M12 6.8v6.4\"/>"
                "<circle cx=\"12\" cy=\"16.9\" r=\"1.25\" fill=\"#fff\" stroke=\"none\"/>" SVG_CLOSE,
        },
};

/* Split in parts only because C limits the length of one string literal. */
static const char *const page_css[] = {
        ":root{color-scheme:light dark;--bg:#f3f4f7;--card:#fff;--text:#0f172a;"
        "--muted:#64748b;--line:#e6e8ee;--soft:#f7f8fa}",
        ".success{--accent:#16a34a;--halo:#dcfce7}",
        ".failed{--accent:#dc2626;--halo:#fee2e2}",
        ".pending{--accent:#d97706;--halo:#fef3c7}",
        ".bad{--accent:#ea580c;--halo:#ffedd5}",
        "*{box-sizing:border-box}",
        "html{-webkit-text-size-adjust:100%;text-size-adjust:100%}",
        "body{margin:0;min-height:100vh;display:flex;flex-direction:column;"
        "align-items:center;justify-content:center;padding:32px 16px;"
        "background:var(--bg);color:var(--text);"
        "font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\","
        "\"Noto Sans\",\"Liberation Sans\",Arial,sans-serif}",
        ".card{position:relative;width:100%;max-width:440px;background:var(--card);"
        "border-radius:18px;overflow:hidden;"
        "box-shadow:0 1px 2px rgba(15,23,42,.06),0 16px 40px rgba(15,23,42,.10)}",
        ".card::before{content:\"\";display:block;height:4px;background:var(--accent)}",
        ".shop{display:flex;align-items:center;gap:10px;padding:14px 24px;"
        "border-bottom:1px solid var(--line);font-weight:600;font-size:.95rem}",
        ".shop span:last-child{min-width:0;overflow:hidden;text-overflow:ellipsis;"
        "white-space:nowrap}",
        ".mono{flex:none;width:28px;height:28px;border-radius:8px;display:flex;"
        "align-items:center;justify-content:center;background:var(--text);"
        "color:var(--card);font-size:.85rem;font-weight:700}",
        ".main{padding:36px 28px 28px;text-align:center}",
        ".icon{width:64px;height:64px;margin:0 auto 24px;border-radius:50%;"
        "color:var(--accent);box-shadow:0 0 0 9px var(--halo)}",
        ".icon svg{display:block;width:64px;height:64px}",
        "h1{margin:0 0 10px;font-size:1.5rem;line-height:1.25;font-weight:700;"
        "letter-spacing:-.015em}",
        ".amount{margin:0 0 4px;font-size:2.125rem;line-height:1.2;font-weight:700;"
        "letter-spacing:-.02em;font-variant-numeric:tabular-nums}",
        ".amount.long{font-size:1.625rem}",
        ".amount.huge{font-size:1.25rem}",
        ".amount .cur{font-size:1rem;font-weight:600;color:var(--muted);letter-spacing:0}",
        ".amount .num{white-space:nowrap}",
        ".desc{margin:0 auto;max-width:36ch;color:var(--muted);font-size:.9375rem;"
        "overflow-wrap:anywhere;display:-webkit-box;-webkit-box-orient:vertical;"
        "-webkit-line-clamp:2;line-clamp:2;overflow:hidden}",
        ".msg{margin:14px auto 0;max-width:36ch;color:var(--muted)}",
        ".auto{margin:16px auto 0;max-width:36ch;font-size:.875rem;color:var(--muted)}",
        ".dot{display:inline-block;width:8px;height:8px;margin-right:8px;"
        "vertical-align:1px;border-radius:50%;background:var(--accent);"
        "animation:pulse 1.4s ease-in-out infinite}",
        ".btn{display:inline-block;margin-top:20px;padding:10px 22px;border-radius:10px;"
        "background:var(--soft);border:1px solid var(--line);color:var(--text);"
        "font-weight:600;font-size:.9375rem;text-decoration:none}",
        ".btn:hover{border-color:var(--muted)}",
        ".btn:focus-visible{outline:3px solid var(--accent);outline-offset:2px}",
        "dl{margin:28px 0 0;padding:2px 16px;background:var(--soft);border-radius:12px;"
        "text-align:left;font-size:.875rem}",
        "dl div{display:flex;flex-wrap:wrap;justify-content:space-between;"
        "align-items:baseline;column-gap:16px;padding:10px 0}",
        "dl div+div{border-top:1px solid var(--line)}",
        "dt{color:var(--muted)}",
        "dd{margin:0 0 0 auto;min-width:0;max-width:100%;text-align:left;"
        "overflow-wrap:anywhere}",
        "code{font:.8125rem/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,"
        "\"Liberation Mono\",monospace;word-break:break-all}",
        "footer{margin-top:20px;display:flex;align-items:center;gap:6px;"
        "font-size:.8125rem;color:var(--muted)}",
        "footer svg{width:13px;height:13px}",
        ".hand{transform-origin:12px 12px;animation:spin 3s linear infinite}",
        "@keyframes spin{to{transform:rotate(360deg)}}",
        "@keyframes pulse{0%,100%{opacity:.25}50%{opacity:1}}",
        "@media (prefers-reduced-motion:reduce){.hand,.dot{animation:none}}",
        "@media (max-width:400px){body{padding:20px 12px}",
        ".main{padding:30px 20px 22px}h1{font-size:1.375rem}",
        ".amount{font-size:1.875rem}.amount.long{font-size:1.375rem}",
        ".amount.huge{font-size:1.125rem}}",
        /* Dark mode last, so that it overrides the rules above. */
        "@media (prefers-color-scheme:dark){"
        ":root{--bg:#0b1020;--card:#161c2c;--text:#f1f5f9;--muted:#94a3b8;"
        "--line:#273147;--soft:#1c2436}",
        ".success{--accent:#22c55e;--halo:rgba(34,197,94,.16)}",
        ".failed{--accent:#ef4444;--halo:rgba(239,68,68,.16)}",
        ".pending{--accent:#f59e0b;--halo:rgba(245,158,11,.16)}",
        ".bad{--accent:#f97316;--halo:rgba(249,115,22,.16)}",
        ".card{box-shadow:0 0 0 1px var(--line),0 16px 40px rgba(0,0,0,.35)}}",
};

static const char lock_svg[] =
        "<svg viewBox=\"0 0 16 16\" aria-hidden=\"true\" focusable=\"false\">"
        "<path fill=\"currentColor\" d=\"M8 1a3.5 3.5 0 0 0-3.5 3.5V6H4a1.5 1.5 0 0 0-1.5 "
        "1.5v6A1.5 1.5 0 0 0 4 15h8a1.5 1.5 0 0 0 1.5-1.5v-6A1.5 1.5 0 0 0 12 6h-.5V4.5A3.5 "
        "3.5 0 0 0 8 1zm2 5H6V4.5a2 2 0 1 1 4 0z\"/></svg>";

static bool has_text(const char *s)
{
        return s && *s;
}

static void render_head(struct sbuf *b, const struct page_info *info,
                        const struct page_text *t, unsigned refresh)
{
        sb_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                /* Repeats the header so the policy also holds for a saved copy. */
                "<meta http-equiv=\"Content-Security-Policy\" "
                "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
                "<meta name=\"referrer\" content=\"no-referrer\">\n"
                "<meta name=\"robots\" content=\"noindex, nofollow\">\n");
        if (info->kind == PAGE_PENDING) {
                char v[16];

                snprintf(v, sizeof(v), "%u", refresh);
                sb_puts(b, "<meta http-equiv=\"refresh\" content=\"");
                sb_put_escaped(b, v);
                sb_puts(b, "\">\n");
        }
        sb_puts(b, "<title>");
        sb_put_escaped(b, t->title);
        if (has_text(info->shop_name)) {
                sb_puts(b, " \xc2\xb7 "); /* U+00B7 middle dot */
                sb_put_escaped(b, info->shop_name);
        }
        sb_puts(b, "</title>\n<style>");
        for (size_t i = 0; i < sizeof(page_css) / sizeof(page_css[0]); i++)
                sb_puts(b, page_css[i]);
        sb_puts(b, "</style>\n</head>\n");
}

/* Length of the UTF-8 sequence starting at @s, or 0 when it is not one. */
static size_t utf8_char_len(const unsigned char *s)
{
        size_t n = *s < 0x80 ? 1 : *s >= 0xf0 && *s < 0xf5 ? 4 : *s >= 0xe0 ? 3 :
                   *s >= 0xc2 ? 2 : 0;

        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
        return n;
}

/* The shop's name, behind a monogram of its first character. */
static void render_shop(struct sbuf *b, const char *name)
{
        char first[5] = { 0 };
        size_t n;

        while (*name == ' ')
                name++;
        if (!*name)
                return;
        n = utf8_char_len((const unsigned char *) name);
        sb_puts(b, "<header class=\"shop\">");
        if (n > 0) {
                memcpy(first, name, n);
                if (n == 1 && first[0] >= 'a' && first[0] <= 'z')
                        first[0] = (char) (first[0] - 'a' + 'A');
                sb_puts(b, "<span class=\"mono\" aria-hidden=\"true\">");
                sb_put_escaped(b, first);
                sb_puts(b, "</span>");
        }
        sb_puts(b, "<span>");
        sb_put_escaped(b, name);
        sb_puts(b, "</span></header>\n");
}

/* Long numbers get a smaller size class so they stay on one line on a phone. */
static const char *amount_class(size_t digits)
{
        return digits > 16 ? "amount huge" : digits > 11 ? "amount long" : "amount";
}

static int render_amount(struct sbuf *b, const struct page_info *info)
{
        unsigned exp = info->minor_units ? currency_exponent(info->currency) : 0;
        char num[PAGE_AMOUNT_MAX];

        if (!info->has_amount)
                return 0;
        if (info->amount < 0)
                return -EINVAL;
        if (format_number(info->amount, exp, num, sizeof(num)) < 0)
                return -EINVAL; /* cannot happen: 2^63 fits with room to spare */
        sb_puts(b, "<p class=\"");
        sb_puts(b, amount_class(strlen(num)));
        sb_puts(b, "\">");
        /* The same text as page_format_amount(), with a quieter currency code. */
        if (has_text(info->currency)) {
                sb_puts(b, "<span class=\"cur\">");
                sb_put_escaped(b, info->currency);
                sb_puts(b, "</span> ");
        }
        sb_puts(b, "<span class=\"num\">");
        sb_put_escaped(b, num);
        sb_puts(b, "</span></p>\n");
        return 0;
}

static void render_row(struct sbuf *b, const char *label, const char *value, bool code)
{
        if (!has_text(value))
                return;
        sb_puts(b, "<div><dt>");
        sb_put_escaped(b, label);
        sb_puts(b, code ? "</dt><dd><code>" : "</dt><dd>");
        sb_put_escaped(b, value);
        sb_puts(b, code ? "</code></dd></div>\n" : "</dd></div>\n");
}

static void render_details(struct sbuf *b, const struct page_info *info)
{
        if (!has_text(info->order_ref) && !has_text(info->charge_id))
                return;
        sb_puts(b, "<dl>\n");
        render_row(b, "Order", info->order_ref, false);
        /* The charge id is what support asks for: small, monospace, copyable. */
        render_row(b, "Payment reference", info->charge_id, true);
        sb_puts(b, "</dl>\n");
}

/* The pending page says it reloads itself, and offers a plain link as well. */
static void render_pending_note(struct sbuf *b, unsigned refresh)
{
        char v[48];

        snprintf(v, sizeof(v), "%u second%s", refresh, refresh == 1 ? "" : "s");
        sb_puts(b, "<p class=\"auto\"><span class=\"dot\" aria-hidden=\"true\"></span>"
                "This page updates itself every ");
        sb_put_escaped(b, v);
        sb_puts(b, ".</p>\n"
                /* An empty reference is the current URL, query string included. */
                "<a class=\"btn\" href=\"\">Check again now</a>\n");
}

/* Icon, title, amount and description: what the customer reads first. */
static int render_summary(struct sbuf *b, const struct page_info *info,
                          const struct page_text *t)
{
        int r;

        sb_puts(b, "<div class=\"icon\">");
        sb_puts(b, t->icon);
        sb_puts(b, "</div>\n<h1>");
        sb_put_escaped(b, t->title);
        sb_puts(b, "</h1>\n");
        r = render_amount(b, info);
        if (r < 0)
                return r;
        if (has_text(info->description)) {
                sb_puts(b, "<p class=\"desc\">");
                sb_put_escaped(b, info->description);
                sb_puts(b, "</p>\n");
        }
        return 0;
}

static int render_body(struct sbuf *b, const struct page_info *info,
                       const struct page_text *t, unsigned refresh)
{
        int r;

        sb_puts(b, "<body class=\"");
        sb_puts(b, t->cls);
        sb_puts(b, "\">\n<main class=\"card\">\n");
        if (has_text(info->shop_name))
                render_shop(b, info->shop_name);
        sb_puts(b, "<section class=\"main\">\n");
        r = render_summary(b, info, t);
        if (r < 0)
                return r;
        sb_puts(b, "<p class=\"msg\">");
        sb_put_escaped(b, t->message);
        sb_puts(b, "</p>\n");
        if (info->kind == PAGE_PENDING)
                render_pending_note(b, refresh);
        render_details(b, info);
        sb_puts(b, "</section>\n</main>\n<footer>");
        sb_puts(b, lock_svg);
        sb_puts(b, "<span>Secure payment by CashPay</span></footer>\n</body>\n</html>\n");
        return 0;
}

static unsigned effective_refresh(unsigned refresh)
{
        if (refresh == 0)
                return PAGE_REFRESH_DEFAULT;
        return refresh > PAGE_REFRESH_MAX ? PAGE_REFRESH_MAX : refresh;
}

int page_render(const struct page_info *info, char **ret, size_t *ret_len)
{
        struct sbuf b = { 0 };
        unsigned refresh = effective_refresh(info->refresh);
        const struct page_text *t;
        int r;

        if ((unsigned) info->kind > PAGE_BAD_REQUEST)
                return -EINVAL;
        t = &page_texts[info->kind];
        render_head(&b, info, t, refresh);
        r = render_body(&b, info, t, refresh);
        if (r < 0 || b.err < 0) {
                free(b.data);
                return r < 0 ? r : b.err;
        }
        *ret = b.data;
        if (ret_len)
                *ret_len = b.len;
        return 0;
}
