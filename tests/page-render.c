/*
 * page-render — write every kind of return page to a directory as .html
 * files, so a real browser can render them (tests/test_page_browser.py).
 *
 * Usage: page-render DIR
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cashpay/page.h"

struct sample {
        const char *file;
        struct page_info info;
};

static const struct sample samples[] = {
        { "success.html", {
                .kind = PAGE_SUCCESS, .shop_name = "Northwind Watches",
                .charge_id = "chg_a1b2c3d4e5", .has_amount = true, .amount = 249900,
                .currency = "USD", .minor_units = true, .order_ref = "NW-10482",
                .description = "Purchase of a watch" } },
        { "failed.html", {
                .kind = PAGE_FAILED, .shop_name = "Northwind Watches",
                .charge_id = "chg_f41l3d9x0q", .has_amount = true, .amount = 2000,
                .currency = "YER", .order_ref = "NW-10483" } },
        { "pending.html", {
                .kind = PAGE_PENDING, .shop_name = "Northwind Watches",
                .charge_id = "chg_p3nd1ng7kz", .has_amount = true, .amount = 1234567,
                .currency = "KWD", .minor_units = true, .refresh = 3 } },
        { "bad-request.html", {
                .kind = PAGE_BAD_REQUEST, .shop_name = "Northwind Watches" } },
        /* The widest values the contract allows, to catch overflow on a phone. */
        { "long-values.html", {
                .kind = PAGE_SUCCESS,
                .shop_name = "\xc3\x89picerie <Fine> & \"Sons\" International Trading Company",
                .charge_id = "chg_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-",
                .has_amount = true, .amount = INT64_C(9007199254740991), .currency = "IDR",
                .minor_units = true, .order_ref = "ORDER-2026-11-25-000000000042",
                .description = "A rather long description of everything in the basket, "
                               "which wraps over several lines on a phone" } },
};

static int write_page(const char *dir, const struct sample *s)
{
        char path[4096];
        char *html = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        r = page_render(&s->info, &html, &len);
        if (r < 0) {
                fprintf(stderr, "page-render: %s: %s\n", s->file, strerror(-r));
                return -1;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, s->file);
        f = fopen(path, "w");
        if (f) {
                r = fwrite(html, 1, len, f) == len ? 0 : -1;
                r = fclose(f) == 0 ? r : -1;
        }
        free(html);
        if (!f || r < 0) {
                fprintf(stderr, "page-render: %s: %s\n", path, strerror(errno));
                return -1;
        }
        printf("%s\n", path);
        return 0;
}

int main(int argc, char **argv)
{
        size_t i;

        if (argc != 2) {
                fprintf(stderr, "usage: page-render DIR\n");
                return 2;
        }
        if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "page-render: %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
                if (write_page(argv[1], &samples[i]) < 0)
                        return 1;
        return 0;
}
