/*
 * Unit tests for deadline: connections past their due time are shut down
 * (the peer sees end-of-file), once; disarmed and removed ones are left
 * alone; re-arming moves the due time.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "src/daemon/deadline.h"
#include "tests/check.h"

/* A connected pair: [0] plays the daemon's side, [1] the client's. */
struct pair {
        int fd[2];
};

static void pair_open(struct pair *p)
{
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd) < 0) {
                perror("socketpair");
                p->fd[0] = p->fd[1] = -1;
        }
}

static void pair_close(struct pair *p)
{
        close(p->fd[0]);
        close(p->fd[1]);
}

/* True when the client side reads end-of-file: the daemon side was shut down. */
static bool client_sees_eof(const struct pair *p)
{
        char c;

        return recv(p->fd[1], &c, 1, 0) == 0;
}

static bool client_sees_nothing(const struct pair *p)
{
        char c;

        return recv(p->fd[1], &c, 1, 0) < 0 && errno == EAGAIN;
}

static void test_expire(void)
{
        struct deadline_list *list = NULL;
        struct pair due, later, disarmed, untimed;

        CHECK(deadline_list_new(&list) == 0);
        pair_open(&due);
        pair_open(&later);
        pair_open(&disarmed);
        pair_open(&untimed);
        struct deadline *d_due = deadline_add(list, due.fd[0], 1000);
        struct deadline *d_later = deadline_add(list, later.fd[0], 5000);
        struct deadline *d_disarmed = deadline_add(list, disarmed.fd[0], 1000);
        struct deadline *d_untimed = deadline_add(list, untimed.fd[0], 0);
        CHECK(d_due && d_later && d_disarmed && d_untimed);
        CHECK(deadline_count(list) == 4);

        deadline_set(d_disarmed, 0);                /* its request arrived */
        CHECK(deadline_expire(list, 999) == 0);     /* nothing due yet */
        CHECK(client_sees_nothing(&due));
        CHECK(deadline_expire(list, 1000) == 1);    /* due exactly now */
        CHECK(client_sees_eof(&due));
        CHECK(client_sees_nothing(&later));
        CHECK(client_sees_nothing(&disarmed));
        CHECK(client_sees_nothing(&untimed));
        CHECK(deadline_expire(list, 2000) == 0);    /* shut down once only */

        deadline_set(d_later, 8000);                /* re-armed: a new request */
        CHECK(deadline_expire(list, 6000) == 0);
        CHECK(deadline_expire(list, 8000) == 1);
        CHECK(client_sees_eof(&later));

        deadline_remove(d_due);
        deadline_remove(d_later);
        deadline_remove(d_disarmed);
        CHECK(deadline_count(list) == 1);
        deadline_set(d_untimed, 10);
        CHECK(deadline_expire(list, 11) == 1);
        CHECK(client_sees_eof(&untimed));
        deadline_remove(d_untimed);
        CHECK(deadline_count(list) == 0);

        deadline_remove(NULL);                      /* NULL-safe */
        deadline_set(NULL, 5);
        deadline_list_free(list);
        deadline_list_free(NULL);
        pair_close(&due);
        pair_close(&later);
        pair_close(&disarmed);
        pair_close(&untimed);
}

/* Removing from the middle, head and tail keeps the list intact. */
static void test_remove_order(void)
{
        struct deadline_list *list = NULL;
        struct pair p[5];
        struct deadline *d[5];

        CHECK(deadline_list_new(&list) == 0);
        for (int i = 0; i < 5; i++) {
                pair_open(&p[i]);
                d[i] = deadline_add(list, p[i].fd[0], 100 + i);
        }
        deadline_remove(d[2]);
        deadline_remove(d[4]); /* the head: added last */
        deadline_remove(d[0]); /* the tail */
        CHECK(deadline_count(list) == 2);
        CHECK(deadline_expire(list, 1000) == 2);
        CHECK(client_sees_eof(&p[1]));
        CHECK(client_sees_eof(&p[3]));
        CHECK(client_sees_nothing(&p[0]));
        CHECK(client_sees_nothing(&p[2]));
        /* Entries still tracked when the list goes are released with it. */
        deadline_list_free(list);
        for (int i = 0; i < 5; i++)
                pair_close(&p[i]);
}

int main(void)
{
        test_expire();
        test_remove_order();
        return check_summary();
}
