/*
 * fuzz-checkout — the checkout listener's request rules:
 * checkout_parse_request() on arbitrary POST /charges bodies.
 *
 * The input is the raw body, so any JSON file is a seed. A parse that
 * succeeds must hold a request that checkout_validate() accepts again and
 * whose charge body (what cashpayd would send CashPay) carries the same
 * amount, currency, description and order_ref back; a parse that fails must
 * say why and own no memory.
 */
#include <errno.h>
#include <jansson.h>

#include "cashpay/checkout.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* a fixed hash seed, so that an input replays the same way */
        json_object_seed(0x5eed);
        return 0;
}

FUZZ_UNTRACED static bool printable_ascii(const char *s)
{
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

FUZZ_UNTRACED static bool same_text(const char *a, const char *b)
{
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* What CashPay would be sent for @r must say what @r says. */
static void check_charge_body(const struct checkout_request *r)
{
        char *body = NULL;
        json_t *root, *meta;
        int rc;

        rc = checkout_charge_body(r->order_ref, r->amount, r->currency, r->description,
                                  "https://shop.example/cashpay/webhook",
                                  "https://shop.example/cashpay/return?ref=x",
                                  "metadata.order_id", &body);
        if (rc == -ENOMEM)
                return;
        FUZZ_CHECK(rc == 0 && body, "charge body: %d", rc);
        root = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
        FUZZ_CHECK(root, "charge body is not JSON: %s", body);
        meta = json_object_get(root, "metadata");
        FUZZ_CHECK(json_integer_value(json_object_get(root, "amount")) == r->amount, "amount");
        FUZZ_CHECK(same_text(json_string_value(json_object_get(root, "currency")), r->currency),
                   "currency");
        FUZZ_CHECK(same_text(json_string_value(json_object_get(root, "description")),
                             r->description), "description");
        FUZZ_CHECK(same_text(json_string_value(json_object_get(meta, "order_id")), r->order_ref),
                   "order_ref");
        json_decref(root);
        free(body);
}

static void check_accepted(const struct checkout_request *r, const char *detail)
{
        char again[256] = "";

        FUZZ_CHECK(detail[0] == '\0', "detail on success: %s", detail);
        FUZZ_CHECK(checkout_validate(r->order_ref, r->amount, r->currency, r->description,
                                     again, sizeof(again)) == 0,
                   "accepted a request the rules refuse: %s", again);
        check_charge_body(r);
}

static void check_refused(int rc, const struct checkout_request *r, const char *detail)
{
        FUZZ_CHECK(rc == -EINVAL || rc == -ENOMEM, "result %d", rc);
        if (rc == -ENOMEM)
                return;
        FUZZ_CHECK(detail[0] != '\0', "no detail");
        FUZZ_CHECK(memchr(detail, '\0', 256) != NULL, "detail unterminated");
        /* the detail goes back to the app in a JSON string: kept printable */
        FUZZ_CHECK(printable_ascii(detail),
                   "detail \"%s\"", detail);
        FUZZ_CHECK(r->description == NULL, "failed parse owns memory");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct checkout_request r;
        char detail[256] = "";
        int rc;

        rc = checkout_parse_request(data, size, &r, detail, sizeof(detail));
        if (rc == 0)
                check_accepted(&r, detail);
        else
                check_refused(rc, &r, detail);
        checkout_request_clear(&r);
        return 0;
}
