/*
 * fuzz-charge — payload parsing and validation: charge_parse() and
 * charge_json_depth_ok() on arbitrary webhook bodies.
 *
 * The input is the raw body, so any JSON file is a seed. It is parsed without
 * an order reference and then with each path of a small table; since the
 * reference is looked up after every other rule, all parses must agree on
 * everything else. An input that starts with '#' carries its own reference
 * path on that first line instead (no JSON body starts with '#'), so odd
 * paths are fuzzed too. A body refused before the reference is looked up is
 * parsed with one path only, since every path must fail the same way.
 *
 * Each successful parse is checked against the contract's payload table, and
 * each failure for a sane result code and detail.
 */
#include <errno.h>
#include <jansson.h>

#include "cashpay/charge.h"
#include "fuzz/fuzz.h"

static const char *const ref_paths[] = {
        "metadata.order_id", "order_ref", "id", "a.b.c.d.e.f", ".", "x..y",
};
#define N_PATHS (sizeof(ref_paths) / sizeof(ref_paths[0]))

struct parsed {
        int r;
        struct charge c;
        char detail[256];
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* A fixed hash seed: jansson would read /dev/urandom, and an input
         * must replay the same way. */
        json_object_seed(0x5eed);
        return 0;
}

FUZZ_UNTRACED static bool upper3(const char *s)
{
        for (size_t i = 0; i < 3; i++)
                if (s[i] < 'A' || s[i] > 'Z')
                        return false;
        return s[3] == '\0';
}

FUZZ_UNTRACED static bool text_ok(const char *s)
{
        return !s || strlen(s) <= CHARGE_TEXT_MAX;
}

FUZZ_UNTRACED static bool printable_ascii(const char *s)
{
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

static void check_valid(const struct parsed *p, const char *path)
{
        const struct charge *c = &p->c;

        FUZZ_CHECK(charge_id_valid(c->id), "id \"%s\"", c->id);
        FUZZ_CHECK(charge_status_name(c->status) != NULL, "status %d", (int)c->status);
        FUZZ_CHECK(c->amount >= 0 && c->amount <= CHARGE_AMOUNT_MAX, "amount %lld",
                   (long long)c->amount);
        FUZZ_CHECK(upper3(c->currency), "currency");
        FUZZ_CHECK(c->created >= 0, "created %lld", (long long)c->created);
        FUZZ_CHECK(text_ok(c->description) && text_ok(c->transaction_url), "text length");
        FUZZ_CHECK(p->detail[0] == '\0', "detail on success: %s", p->detail);
        if (!path || !*path)
                FUZZ_CHECK(c->order_ref == NULL, "order_ref without a path");
        if (c->order_ref)
                FUZZ_CHECK(*c->order_ref && strlen(c->order_ref) <= CHARGE_ORDER_REF_MAX,
                           "order_ref length %zu", strlen(c->order_ref));
}

static void check_invalid(const struct parsed *p, bool fixed_path)
{
        const struct charge *c = &p->c;

        FUZZ_CHECK(p->r == -EINVAL || p->r == -ENOMEM, "result %d", p->r);
        if (p->r == -ENOMEM)
                return;
        FUZZ_CHECK(p->detail[0] != '\0', "no detail");
        /* the detail goes back to the sender: fixed sentences only */
        if (fixed_path)
                FUZZ_CHECK(printable_ascii(p->detail), "detail \"%s\"", p->detail);
        FUZZ_CHECK(c->id[0] == '\0' || charge_id_valid(c->id), "id \"%s\"", c->id);
        FUZZ_CHECK(!c->description && !c->transaction_url && !c->order_ref,
                   "failed parse owns memory");
}

FUZZ_UNTRACED static bool same_text(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* @with parsed the same body as @base but with an order reference path. */
static void check_agree(const struct parsed *base, const struct parsed *with)
{
        if (base->r < 0) {
                FUZZ_CHECK(with->r == base->r, "%d vs %d", with->r, base->r);
                FUZZ_CHECK(strcmp(with->detail, base->detail) == 0, "\"%s\" vs \"%s\"",
                           with->detail, base->detail);
                FUZZ_CHECK(strcmp(with->c.id, base->c.id) == 0, "id differs");
                return;
        }
        if (with->r < 0)
                return; /* the reference itself was refused */
        const struct charge *a = &base->c, *b = &with->c;
        FUZZ_CHECK(strcmp(a->id, b->id) == 0 && a->status == b->status &&
                   a->amount == b->amount && strcmp(a->currency, b->currency) == 0 &&
                   a->created == b->created && same_text(a->description, b->description) &&
                   same_text(a->transaction_url, b->transaction_url),
                   "parses disagree");
}

static void parse(struct parsed *p, const void *body, size_t len, const char *path)
{
        p->r = charge_parse(body, len, path, &p->c, p->detail, sizeof(p->detail));
        FUZZ_CHECK(memchr(p->detail, '\0', sizeof(p->detail)) != NULL, "detail unterminated");
}

static void check_depth(const void *body, size_t len)
{
        bool d31 = charge_json_depth_ok(body, len, CHARGE_MAX_DEPTH - 1);
        bool d32 = charge_json_depth_ok(body, len, CHARGE_MAX_DEPTH);
        bool d33 = charge_json_depth_ok(body, len, CHARGE_MAX_DEPTH + 1);

        FUZZ_CHECK((!d31 || d32) && (!d32 || d33), "depth limit not monotonic");
        FUZZ_CHECK(charge_json_depth_ok(body, len, ~0u), "unbounded depth refused");
}

static void run_one(const void *body, size_t len, const struct parsed *base,
                    const char *path, bool fixed_path)
{
        struct parsed with = { 0 };

        parse(&with, body, len, path);
        if (with.r == 0) {
                check_valid(&with, path);
                FUZZ_CHECK(charge_json_depth_ok(body, len, CHARGE_MAX_DEPTH), "too deep");
        } else {
                check_invalid(&with, fixed_path);
        }
        check_agree(base, &with);
        charge_clear(&with.c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct cursor in = { data, size };
        char *own_path = NULL;
        struct parsed base = { 0 };
        uint8_t *body;
        size_t len;

        if (size > 0 && data[0] == '#') {
                cursor_byte(&in);
                own_path = cursor_field(&in, '\n');
        }
        body = cursor_rest(&in, &len);

        check_depth(body, len);
        parse(&base, body, len, NULL);
        if (base.r == 0)
                check_valid(&base, NULL);
        else
                check_invalid(&base, true);
        if (own_path)
                run_one(body, len, &base, own_path, false);
        else if (base.r < 0)
                /* the same early failure whatever the path: one path (chosen
                 * by the input) keeps that checked at a sixth of the cost */
                run_one(body, len, &base, ref_paths[len % N_PATHS], true);
        else
                for (size_t i = 0; i < N_PATHS; i++)
                        run_one(body, len, &base, ref_paths[i], true);

        charge_clear(&base.c);
        free(body);
        free(own_path);
        return 0;
}
