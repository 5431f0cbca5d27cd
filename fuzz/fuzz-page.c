/*
 * fuzz-page — the return page's handling of a request: the charge id taken
 * from the query, the HTML rendered around stored values and the shop name,
 * and the success/failure redirect template expanded with id and reference.
 *
 * Input layout (see corpus/page/): byte 0 holds flags (0x03 what the store
 * knows: nothing, INITIATED, CAPTURED, FAILED; 0x04 minor units; 0x08 the
 * amount is negated, which page_render must refuse), then lines: CHARGE_ID
 * (the query value, already percent-decoded as libmicrohttpd hands it over),
 * SHOP_NAME, AMOUNT, CURRENCY, REFRESH, ORDER_REF, DESCRIPTION, TEMPLATE.
 *
 * What is checked, besides memory safety: the id rule matches the contract;
 * no dynamic value adds markup (the page has exactly as many '<', '>', '"' and
 * '\'' as the same page rendered with harmless stand-ins); no control bytes
 * reach the page; the redirect template is accepted or refused whatever the
 * values, and substituted values arrive percent-encoded and nothing else;
 * page_format_amount() agrees with the amount on the page.
 */
#include <errno.h>

#include "cashpay/charge.h"
#include "cashpay/page.h"
#include "fuzz/fuzz.h"

enum { F_KNOWN = 0x03, F_MINOR = 0x04, F_NEGATIVE = 0x08 };

struct fields {
        uint8_t flags;
        char *id, *shop, *amount, *currency, *refresh, *order_ref, *description, *tmpl;
};

static void fields_read(struct fields *f, const uint8_t *data, size_t size)
{
        struct cursor in = { data, size };

        f->flags = cursor_byte(&in);
        f->id = cursor_field(&in, '\n');
        f->shop = cursor_field(&in, '\n');
        f->amount = cursor_field(&in, '\n');
        f->currency = cursor_field(&in, '\n');
        f->refresh = cursor_field(&in, '\n');
        f->order_ref = cursor_field(&in, '\n');
        f->description = cursor_field(&in, '\n');
        f->tmpl = cursor_field(&in, '\0');
}

static void fields_free(struct fields *f)
{
        char **all[] = { &f->id, &f->shop, &f->amount, &f->currency, &f->refresh,
                         &f->order_ref, &f->description, &f->tmpl };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
                free(*all[i]);
}

FUZZ_UNTRACED static bool unreserved(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/* The contract's rule, written out independently of charge.c. */
FUZZ_UNTRACED static bool id_rule(const char *id)
{
        size_t n = strlen(id);

        if (n < 5 || n > CHARGE_ID_MAX || strncmp(id, "chg_", 4) != 0)
                return false;
        for (size_t i = 4; i < n; i++)
                if (!unreserved((unsigned char)id[i]) || id[i] == '.' || id[i] == '~')
                        return false;
        return true;
}

static uint64_t decimal(const char *s)
{
        uint64_t v = 0;

        for (; *s >= '0' && *s <= '9'; s++)
                v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (uint64_t)(*s - '0');
        return v;
}

enum { MARKUP = 4, CONTROL = MARKUP, OTHER = CONTROL + 1 };

/*
 * Counts of '<', '>', '"' and '\'' in @html, plus control bytes (other than
 * tab and newline) at [CONTROL]. A table keeps this cheap: pages are ~10 KiB.
 */
FUZZ_UNTRACED static void count_markup(const char *html, size_t len, size_t counts[OTHER + 1])
{
        static uint8_t class[256];
        static bool ready;

        if (!ready) {
                ready = true;
                for (unsigned c = 0; c < 256; c++)
                        class[c] = (c < 0x20 && c != '\t' && c != '\n') || c == 0x7f ? CONTROL
                                                                                 : OTHER;
                class['<'] = 0;
                class['>'] = 1;
                class['"'] = 2;
                class['\''] = 3;
        }
        for (size_t i = 0; i < len; i++)
                counts[class[(unsigned char)html[i]]]++;
}

/* What render_shop() will make of @shop, with nothing in it that needs escaping. */
FUZZ_UNTRACED static const char *shop_stand_in(const char *shop)
{
        const unsigned char *s = (const unsigned char *)shop;

        if (!*s)
                return "";
        while (*s == ' ')
                s++;
        if (!*s)
                return " ";
        /* a first character that is one valid UTF-8 sequence gets a monogram */
        size_t n = *s < 0x80 ? 1 : *s >= 0xf0 && *s < 0xf5 ? 4 : *s >= 0xe0 ? 3 : *s >= 0xc2 ? 2 : 0;
        for (size_t i = 1; i < n; i++)
                if ((s[i] & 0xc0) != 0x80)
                        n = 0;
        return n > 0 ? "x" : "\xff";
}

static const char *text_stand_in(const char *s)
{
        return s ? (*s ? "x" : "") : NULL;
}

/*
 * page_format_amount() has room for any amount with a code of up to three
 * bytes, refuses negative amounts, and its number is the one on the page.
 */
static void check_amount(const struct page_info *info, const char *html)
{
        char buf[PAGE_AMOUNT_MAX];
        size_t cur = info->currency ? strlen(info->currency) : 0;
        int r = page_format_amount(info->amount, info->currency, info->minor_units, buf,
                                   sizeof(buf));

        if (info->amount < 0) {
                FUZZ_CHECK(r == -EINVAL, "negative amount formatted: %d", r);
                return;
        }
        FUZZ_CHECK(r == 0 || (r == -ENOBUFS && cur > 3), "page_format_amount: %d", r);
        if (r < 0 || !html || !info->has_amount)
                return;
        const char *num = cur > 0 ? buf + cur + 1 : buf;
        FUZZ_CHECK(strstr(html, num) != NULL, "amount \"%s\" not on the page", num);
}

static void render_checked(const struct page_info *info, bool want_ok)
{
        struct page_info plain = *info;
        size_t got[OTHER + 1] = { 0 }, want[OTHER + 1] = { 0 };
        char *html = NULL, *ref = NULL;
        size_t len = 0, ref_len = 0;
        int r = page_render(info, &html, &len);

        FUZZ_CHECK(want_ok ? r == 0 : r == -EINVAL, "page_render: %d", r);
        check_amount(info, r == 0 ? html : NULL);
        if (r < 0)
                return;
        FUZZ_CHECK(strlen(html) == len, "length %zu, strlen %zu", len, strlen(html));
        FUZZ_CHECK(strstr(html, "</html>") != NULL, "page not finished");

        plain.shop_name = shop_stand_in(info->shop_name ? info->shop_name : "");
        plain.charge_id = text_stand_in(info->charge_id);
        plain.currency = text_stand_in(info->currency);
        plain.order_ref = text_stand_in(info->order_ref);
        plain.description = text_stand_in(info->description);
        FUZZ_CHECK(page_render(&plain, &ref, &ref_len) == 0, "stand-in page");
        count_markup(html, len, got);
        count_markup(ref, ref_len, want);
        FUZZ_CHECK(got[CONTROL] == 0, "%zu control bytes on the page", got[CONTROL]);
        FUZZ_CHECK(memcmp(got, want, MARKUP * sizeof(got[0])) == 0, "markup added: < %zu/%zu > %zu/%zu "
                   "\" %zu/%zu ' %zu/%zu", got[0], want[0], got[1], want[1], got[2], want[2],
                   got[3], want[3]);
        free(html);
        free(ref);
}

FUZZ_UNTRACED static size_t pct_len(const char *s)
{
        size_t n = 0;

        for (; s && *s; s++)
                n += unreserved((unsigned char)*s) ? 1 : 3;
        return n;
}

static void expand_checked(const char *tmpl, const char *id, const char *ref)
{
        char *out = NULL, *base = NULL, *one_id = NULL, *one_ref = NULL;
        int r = page_expand_url(tmpl, id, ref, &out);
        int rb = page_expand_url(tmpl, NULL, NULL, &base);

        /* validity is a property of the template alone */
        FUZZ_CHECK(r == rb && (r == 0 || r == -EINVAL), "expand: %d vs %d", r, rb);
        if (r < 0)
                return;
        FUZZ_CHECK(page_expand_url(tmpl, "a", NULL, &one_id) == 0 &&
                   page_expand_url(tmpl, NULL, "a", &one_ref) == 0, "expand with \"a\"");
        size_t n_id = strlen(one_id) - strlen(base), n_ref = strlen(one_ref) - strlen(base);
        FUZZ_CHECK(strlen(out) == strlen(base) + n_id * pct_len(id) + n_ref * pct_len(ref),
                   "expanded length");
        if (!strpbrk(tmpl, "{}"))
                FUZZ_CHECK(strcmp(out, tmpl) == 0, "plain template changed");
        /* substitutions add only unreserved bytes and %XX */
        for (const char *p = out; *p; p++)
                FUZZ_CHECK(unreserved((unsigned char)*p) || *p == '%' || strchr(tmpl, *p),
                           "byte %#x from a value", (unsigned char)*p);
        free(out);
        free(base);
        free(one_id);
        free(one_ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct fields f;

        fields_read(&f, data, size);
        bool valid = charge_id_valid(f.id);
        FUZZ_CHECK(valid == id_rule(f.id), "charge_id_valid(\"%s\") = %d", f.id, valid);

        unsigned known = f.flags & F_KNOWN;
        uint64_t amount = decimal(f.amount) & (uint64_t)INT64_MAX;
        struct page_info info = {
                .kind = !valid ? PAGE_BAD_REQUEST : known == 2 ? PAGE_SUCCESS :
                        known == 3 ? PAGE_FAILED : PAGE_PENDING,
                .shop_name = f.shop,
                .charge_id = valid ? f.id : NULL,
                .has_amount = valid && known > 0,
                .amount = (f.flags & F_NEGATIVE) ? -(int64_t)amount - 1 : (int64_t)amount,
                .currency = f.currency,
                .minor_units = f.flags & F_MINOR,
                .refresh = (unsigned)decimal(f.refresh),
                .order_ref = valid && known > 0 ? f.order_ref : NULL,
                .description = valid && known > 0 ? f.description : NULL,
        };
        FUZZ_CHECK(page_http_status(info.kind) == (valid ? 200u : 400u), "status");
        render_checked(&info, !(info.has_amount && info.amount < 0));
        if (valid)
                expand_checked(f.tmpl, f.id, info.order_ref);
        fields_free(&f);
        return 0;
}
