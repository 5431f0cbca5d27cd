/*
 * Unit tests for state: every row of the contract's state machine table,
 * and the rule that an amount or currency mismatch wins over all of them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cashpay/state.h"
#include "tests/check.h"

/* The full expected transition, compared field by field. */
struct want {
        enum outcome outcome;
        bool insert_order, change_status, flag_review, warn;
};

static void expect_at(int line, const struct order_view *cur, const struct charge *rcv,
                      struct want w)
{
        struct transition t = state_decide(cur, rcv);
        const char *got = outcome_name(t.outcome), *exp = outcome_name(w.outcome);

        check_at(__FILE__, line, t.outcome == w.outcome, "outcome %s, want %s",
                 got ? got : "?", exp ? exp : "?");
        check_at(__FILE__, line, t.insert_order == w.insert_order, "insert_order %d",
                 t.insert_order);
        check_at(__FILE__, line, t.change_status == w.change_status, "change_status %d",
                 t.change_status);
        check_at(__FILE__, line, t.flag_review == w.flag_review, "flag_review %d", t.flag_review);
        check_at(__FILE__, line, t.warn == w.warn, "warn %d", t.warn);
        check_at(__FILE__, line, t.reason && t.reason[0], "no reason given");
}

#define EXPECT(cur, rcv, ...) expect_at(__LINE__, (cur), (rcv), (struct want) { __VA_ARGS__ })

static struct order_view order(enum charge_status s)
{
        return (struct order_view) { .exists = true, .status = s, .amount = 2000, .currency = "YER" };
}

static struct charge received(enum charge_status s)
{
        return (struct charge) { .id = "chg_a1", .status = s, .amount = 2000, .currency = "YER",
                                 .created = 1672531200 };
}

static const enum charge_status all[] = { CHARGE_INITIATED, CHARGE_CAPTURED, CHARGE_FAILED };

static void test_first_sighting(void)
{
        struct order_view none = { .exists = false, .status = CHARGE_CAPTURED, .amount = 1 };

        for (size_t i = 0; i < 3; i++) {
                struct charge c = received(all[i]);

                /* none → any: applied, even if stale fields linger in the view */
                EXPECT(&none, &c, .outcome = OUTCOME_APPLIED, .insert_order = true,
                       .change_status = true);
                EXPECT(NULL, &c, .outcome = OUTCOME_APPLIED, .insert_order = true,
                       .change_status = true);
        }
}

static void test_status_rows(void)
{
        struct order_view ini = order(CHARGE_INITIATED), cap = order(CHARGE_CAPTURED),
                          fai = order(CHARGE_FAILED);
        struct charge r_ini = received(CHARGE_INITIATED), r_cap = received(CHARGE_CAPTURED),
                      r_fai = received(CHARGE_FAILED);

        /* INITIATED → CAPTURED / FAILED: applied */
        EXPECT(&ini, &r_cap, .outcome = OUTCOME_APPLIED, .change_status = true);
        EXPECT(&ini, &r_fai, .outcome = OUTCOME_APPLIED, .change_status = true);
        /* FAILED → CAPTURED: applied, with a warning */
        EXPECT(&fai, &r_cap, .outcome = OUTCOME_APPLIED, .change_status = true, .warn = true);
        /* same status again: duplicate */
        EXPECT(&ini, &r_ini, .outcome = OUTCOME_DUPLICATE);
        EXPECT(&cap, &r_cap, .outcome = OUTCOME_DUPLICATE);
        EXPECT(&fai, &r_fai, .outcome = OUTCOME_DUPLICATE);
        /* CAPTURED / FAILED → INITIATED: stale */
        EXPECT(&cap, &r_ini, .outcome = OUTCOME_STALE);
        EXPECT(&fai, &r_ini, .outcome = OUTCOME_STALE);
        /* CAPTURED → FAILED: conflict, review, warning */
        EXPECT(&cap, &r_fai, .outcome = OUTCOME_CONFLICT, .flag_review = true, .warn = true);
}

/* A different amount or currency is a conflict whatever the statuses say. */
static void test_terms_conflict(void)
{
        for (size_t i = 0; i < 3; i++)
                for (size_t j = 0; j < 3; j++) {
                        struct order_view cur = order(all[i]);
                        struct charge amt = received(all[j]), cur2 = received(all[j]),
                                      both = received(all[j]);

                        amt.amount = 2001;
                        memcpy(cur2.currency, "USD", 4);
                        both.amount = 0;
                        memcpy(both.currency, "EUR", 4);
                        EXPECT(&cur, &amt, .outcome = OUTCOME_CONFLICT, .flag_review = true,
                               .warn = true);
                        EXPECT(&cur, &cur2, .outcome = OUTCOME_CONFLICT, .flag_review = true,
                               .warn = true);
                        EXPECT(&cur, &both, .outcome = OUTCOME_CONFLICT, .flag_review = true,
                               .warn = true);
                }

        /* the largest amount compares exactly */
        struct order_view big = order(CHARGE_INITIATED);
        struct charge c = received(CHARGE_CAPTURED);

        big.amount = CHARGE_AMOUNT_MAX;
        c.amount = CHARGE_AMOUNT_MAX;
        EXPECT(&big, &c, .outcome = OUTCOME_APPLIED, .change_status = true);
        c.amount = CHARGE_AMOUNT_MAX - 1;
        EXPECT(&big, &c, .outcome = OUTCOME_CONFLICT, .flag_review = true, .warn = true);
}

static void test_outcome_names(void)
{
        static const char *const names[] = {
                "applied", "duplicate", "stale", "conflict", "invalid", "unauthorized", "forbidden",
                "unconfirmed", "deferred",
        };
        enum outcome o;

        CHECK(sizeof(names) / sizeof(names[0]) == _OUTCOME_MAX);
        for (unsigned i = 0; i < _OUTCOME_MAX; i++) {
                const char *n = outcome_name((enum outcome) i);

                CHECK(n && strcmp(n, names[i]) == 0, "outcome %u is %s", i, n ? n : "NULL");
                o = _OUTCOME_MAX;
                CHECK(outcome_from_name(names[i], &o) == 0 && o == (enum outcome) i,
                      "%s does not round-trip", names[i]);
        }
        CHECK(outcome_name(_OUTCOME_MAX) == NULL);
        CHECK(outcome_name((enum outcome) -1) == NULL);
        CHECK(outcome_from_name("Applied", &o) == -EINVAL);
        CHECK(outcome_from_name("", &o) == -EINVAL);
        CHECK(outcome_from_name("applied ", &o) == -EINVAL);
        CHECK(outcome_from_name(NULL, &o) == -EINVAL);
}

int main(void)
{
        test_first_sighting();
        test_status_rows();
        test_terms_conflict();
        test_outcome_names();

        return check_summary();
}
