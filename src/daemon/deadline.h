/*
 * deadline — a time limit on receiving each request, whatever the client's
 * pace.
 *
 * libmicrohttpd's connection timeout is an idle timeout: every byte restarts
 * it, so a client sending one byte a second holds its connection forever,
 * and it calls us only once the headers are complete, so it cannot be asked
 * to stop a slow header either. Instead each connection is registered here
 * when it opens, with the time by which its request must have arrived;
 * deadline_expire() (from the main loop) shuts down the socket of every
 * connection past it. shutdown() rather than close(): libmicrohttpd still
 * owns the descriptor, sees end-of-file and cleans the connection up itself.
 *
 * Thread-safe: connections are added, re-armed and removed from the HTTP
 * threads, expired from the main loop.
 */
#pragma once

#include <stdint.h>

struct deadline_list;
struct deadline;

int deadline_list_new(struct deadline_list **ret);

/* deadline_list_free() - after every entry was removed. NULL-safe. */
void deadline_list_free(struct deadline_list *list);

/*
 * deadline_add() - track the socket @fd, due at @due_ms (monotonic; 0 = no
 * deadline yet). Returns NULL when out of memory: the connection then goes
 * untracked. The descriptor must stay open until deadline_remove().
 */
struct deadline *deadline_add(struct deadline_list *list, int fd, int64_t due_ms);

/* deadline_remove() - stop tracking; call before the descriptor is closed. NULL-safe. */
void deadline_remove(struct deadline *d);

/* deadline_set() - a new due time (0 disarms: the request has arrived). NULL-safe. */
void deadline_set(struct deadline *d, int64_t due_ms);

/*
 * deadline_expire() - shut down the socket of every armed connection due at
 * or before @now_ms (once each). Returns how many were shut down.
 */
unsigned deadline_expire(struct deadline_list *list, int64_t now_ms);

/* deadline_count() - connections tracked (for tests and status). */
unsigned deadline_count(struct deadline_list *list);
