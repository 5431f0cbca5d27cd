/*
 * checkout-flow — the creations behind the checkout listener's held
 * requests (checkout.h): one creation (charge-create.h) per order_ref at a
 * time, its store steps as writer tasks and its POST through the API
 * client, and the suspended connections waiting for them.
 *
 * A suspended connection is a hold with exactly one answerer: the
 * creation's last step, its deadline (checkout_flows_expire() from the
 * main loop) or the shutdown (checkout_flows_close()), whichever comes
 * first. The creation itself always runs to its end, so that what CashPay
 * said is recorded even when nobody waits for it any more. Requests for
 * an order_ref whose creation is under way wait for it: with the same
 * terms they get its answer (201 becomes 200: nothing new was created for
 * them), with others they are planned again after it.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "cashpay/api.h"
#include "cashpay/checkout.h"
#include "src/daemon/runtime.h"

/* The body of a 503 for want of CashPay (or of room to wait for it). */
#define CHECKOUT_UNAVAILABLE_BODY "{\"error\":\"cashpay_unavailable\"}"

struct checkout_flows;
struct checkout_hold;

/* checkout_flows_new() - creations through @api, recorded by @rt's writer.
 * Returns 0 or -ENOMEM. */
int checkout_flows_new(struct runtime *rt, struct api_client *api, struct checkout_flows **ret);

/*
 * checkout_flows_free() - wait until every creation has ended (their store
 * steps run on the writer, so before writer_stop(); after the API client
 * stopped, so none waits for CashPay), then free. NULL-safe.
 */
void checkout_flows_free(struct checkout_flows *fl);

/*
 * checkout_flows_hold() - suspend @conn (from its access handler) until
 * the creation of @cr's charge answers it, starting that creation or
 * joining the one under way for its order_ref. @ret: the request's
 * reference, for checkout_hold_answer() once resumed and
 * checkout_hold_release() at its completion. Returns 0, -EBUSY (max_inflight
 * held already), -ESHUTDOWN (stopping) or -ENOMEM; then nothing is held.
 */
int checkout_flows_hold(struct checkout_flows *fl, struct MHD_Connection *conn,
                        const struct settings *s, const struct checkout_request *cr,
                        struct checkout_hold **ret);

/* checkout_hold_answer() - the answer of a resumed hold: its status, a
 * copy of its body (NULL when there was no memory: answer 503 with
 * CHECKOUT_UNAVAILABLE_BODY) and whether the connection closes. */
void checkout_hold_answer(struct checkout_flows *fl, struct checkout_hold *h,
                          unsigned *ret_status, char **ret_body, bool *ret_close);

/* checkout_hold_release() - the request completed: its reference goes. */
void checkout_hold_release(struct checkout_flows *fl, struct checkout_hold *h);

/* checkout_flows_expire() - answer 503 the holds past their wait. */
void checkout_flows_expire(struct checkout_flows *fl, int64_t now_ms);

/* checkout_flows_close() - stopping: answer every hold 503 (closing the
 * connection) and hold no more; no creation sends to CashPay from now on. */
void checkout_flows_close(struct checkout_flows *fl);
