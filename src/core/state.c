/*
 * state — what a received charge does to the order it belongs to.
 *
 * One function holds the whole table of the contract's "State machine", so
 * the store only carries out decisions and the table can be tested without
 * a database. A webhook is the source of truth for fulfilment, so the rules
 * lean towards never losing money (a late capture after a failure is
 * applied) and never fulfilling twice or wrongly (a capture is never undone,
 * and a changed amount or currency stops everything for a human to look at).
 */
#include <errno.h>
#include <string.h>

#include "cashpay/state.h"

static const char *const outcome_names[_OUTCOME_MAX] = {
        [OUTCOME_APPLIED] = "applied",
        [OUTCOME_DUPLICATE] = "duplicate",
        [OUTCOME_STALE] = "stale",
        [OUTCOME_CONFLICT] = "conflict",
        [OUTCOME_INVALID] = "invalid",
        [OUTCOME_UNAUTHORIZED] = "unauthorized",
        [OUTCOME_FORBIDDEN] = "forbidden",
        [OUTCOME_UNCONFIRMED] = "unconfirmed",
        [OUTCOME_DEFERRED] = "deferred",
};

const char *outcome_name(enum outcome o)
{
        if ((unsigned) o >= _OUTCOME_MAX)
                return NULL;
        return outcome_names[o];
}

int outcome_from_name(const char *name, enum outcome *ret)
{
        for (unsigned i = 0; name && i < _OUTCOME_MAX; i++)
                if (strcmp(name, outcome_names[i]) == 0) {
                        *ret = (enum outcome) i;
                        return 0;
                }
        return -EINVAL;
}

static struct transition applied(const char *reason)
{
        return (struct transition) {
                .outcome = OUTCOME_APPLIED,
                .change_status = true,
                .reason = reason,
        };
}

static struct transition conflict(const char *reason)
{
        return (struct transition) {
                .outcome = OUTCOME_CONFLICT,
                .flag_review = true,
                .warn = true,
                .reason = reason,
        };
}

static bool terms_differ(const struct order_view *o, const struct charge *c)
{
        return o->amount != c->amount ||
               strncmp(o->currency, c->currency, sizeof(o->currency)) != 0;
}

/* The status rules, for an order whose amount and currency match. */
static struct transition decide_status(enum charge_status from, enum charge_status to)
{
        struct transition t;

        if (from == to)
                return (struct transition) { .outcome = OUTCOME_DUPLICATE,
                                             .reason = "status already recorded" };
        if (to == CHARGE_INITIATED)
                return (struct transition) { .outcome = OUTCOME_STALE,
                                             .reason = "INITIATED after a final status" };
        if (from == CHARGE_INITIATED)
                return applied(to == CHARGE_CAPTURED ? "captured" : "failed");
        if (from == CHARGE_FAILED) {
                /* money arrived after all: record it, but say so loudly */
                t = applied("CAPTURED after FAILED");
                t.warn = true;
                return t;
        }
        /* from CAPTURED to FAILED: a capture is never undone automatically */
        return conflict("FAILED after CAPTURED");
}

struct transition state_decide(const struct order_view *current, const struct charge *received)
{
        struct transition t;

        if (!current || !current->exists) {
                t = applied("first sighting");
                t.insert_order = true;
                return t;
        }
        if (terms_differ(current, received))
                return conflict("amount or currency differs from the recorded order");
        return decide_status(current->status, received->status);
}
