/*
 * deadline — per-connection request deadlines; see deadline.h for the why.
 *
 * A mutex-guarded doubly linked list. The expiry scan is linear, which at
 * ten scans a second over at most max_connections entries costs nothing
 * worth a timer wheel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "src/daemon/deadline.h"

struct deadline {
        struct deadline_list *list;
        struct deadline *prev, *next;
        int fd;
        int64_t due_ms;  /* 0 = disarmed */
        bool shut;       /* shut down already: once is enough */
};

struct deadline_list {
        pthread_mutex_t lock;
        struct deadline *head;
        unsigned n;
};

int deadline_list_new(struct deadline_list **ret)
{
        struct deadline_list *list = calloc(1, sizeof(*list));

        if (!list)
                return -ENOMEM;
        pthread_mutex_init(&list->lock, NULL);
        *ret = list;
        return 0;
}

void deadline_list_free(struct deadline_list *list)
{
        if (!list)
                return;
        /* Entries left over belong to connections that were never closed
         * through us (cannot happen once the listeners are stopped). */
        while (list->head)
                deadline_remove(list->head);
        pthread_mutex_destroy(&list->lock);
        free(list);
}

struct deadline *deadline_add(struct deadline_list *list, int fd, int64_t due_ms)
{
        struct deadline *d = calloc(1, sizeof(*d));

        if (!d)
                return NULL;
        d->list = list;
        d->fd = fd;
        d->due_ms = due_ms;
        pthread_mutex_lock(&list->lock);
        d->next = list->head;
        if (list->head)
                list->head->prev = d;
        list->head = d;
        list->n++;
        pthread_mutex_unlock(&list->lock);
        return d;
}

void deadline_remove(struct deadline *d)
{
        if (!d)
                return;
        struct deadline_list *list = d->list;

        pthread_mutex_lock(&list->lock);
        if (d->prev)
                d->prev->next = d->next;
        else
                list->head = d->next;
        if (d->next)
                d->next->prev = d->prev;
        list->n--;
        pthread_mutex_unlock(&list->lock);
        free(d);
}

void deadline_set(struct deadline *d, int64_t due_ms)
{
        if (!d)
                return;
        pthread_mutex_lock(&d->list->lock);
        d->due_ms = due_ms;
        pthread_mutex_unlock(&d->list->lock);
}

unsigned deadline_expire(struct deadline_list *list, int64_t now_ms)
{
        unsigned n = 0;

        pthread_mutex_lock(&list->lock);
        for (struct deadline *d = list->head; d; d = d->next) {
                if (d->shut || d->due_ms == 0 || d->due_ms > now_ms)
                        continue;
                /* Under the lock: the owner cannot have closed the
                 * descriptor, it removes the entry first. */
                shutdown(d->fd, SHUT_RDWR);
                d->shut = true;
                n++;
        }
        pthread_mutex_unlock(&list->lock);
        return n;
}

unsigned deadline_count(struct deadline_list *list)
{
        pthread_mutex_lock(&list->lock);
        unsigned n = list->n;
        pthread_mutex_unlock(&list->lock);
        return n;
}
