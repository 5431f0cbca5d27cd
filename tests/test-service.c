/*
 * Tests for service: socket activation as systemd does it (real listening
 * sockets at fds 3 and 4, $LISTEN_PID/$LISTEN_FDS/$LISTEN_FDNAMES for this
 * process) and the notify protocol, read back from a $NOTIFY_SOCKET datagram
 * socket the test owns.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "src/daemon/service.h"
#include "tests/check.h"

#define FIRST_FD 3 /* SD_LISTEN_FDS_START */

/* A listening TCP socket on 127.0.0.1 (any port), moved to @target. */
static void listener_at(int target, int listening)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int fd = socket(AF_INET, SOCK_STREAM, 0), high;

        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 ||
            (listening && listen(fd, 8) < 0)) {
                perror("listener");
                exit(1);
        }
        /* Park it high first: socket() may itself have returned @target. */
        high = fcntl(fd, F_DUPFD, 200);
        close(fd);
        if (high < 0 || dup2(high, target) < 0) {
                perror("dup2");
                exit(1);
        }
        close(high);
}

static void set_listen_env(int n, const char *names)
{
        char buf[32];

        snprintf(buf, sizeof(buf), "%d", (int) getpid());
        setenv("LISTEN_PID", buf, 1);
        snprintf(buf, sizeof(buf), "%d", n);
        setenv("LISTEN_FDS", buf, 1);
        if (names)
                setenv("LISTEN_FDNAMES", names, 1);
        else
                unsetenv("LISTEN_FDNAMES");
}

static int listen_fds(struct service_sockets *s, char *err, size_t len, int n, const char *names)
{
        set_listen_env(n, names);
        return service_listen_fds(s, err, len);
}

static void test_named(void)
{
        struct service_sockets s;
        char err[256];

        CHECK(listen_fds(&s, err, sizeof(err), 2, "http:admin") == 0);
        CHECK(s.n_http == 1 && s.http[0] == 3);
        CHECK(s.n_admin == 1 && s.admin[0] == 4);
        CHECK(err[0] == '\0');
        /* Consumed: the variables are gone, so a second call sees nothing. */
        CHECK(getenv("LISTEN_FDS") == NULL && getenv("LISTEN_PID") == NULL);
        CHECK(service_listen_fds(&s, err, sizeof(err)) == 0);
        CHECK(s.n_http == 0 && s.n_admin == 0);

        CHECK(listen_fds(&s, err, sizeof(err), 2, "admin:http") == 0);
        CHECK(s.n_http == 1 && s.http[0] == 4);
        CHECK(s.n_admin == 1 && s.admin[0] == 3);

        CHECK(listen_fds(&s, err, sizeof(err), 2, "admin:admin") == 0);
        CHECK(s.n_http == 0 && s.n_admin == 2);

        /* The checkout listener's own unit. */
        CHECK(listen_fds(&s, err, sizeof(err), 2, "checkout:http") == 0);
        CHECK(s.n_checkout == 1 && s.checkout[0] == 3);
        CHECK(s.n_http == 1 && s.http[0] == 4 && s.n_admin == 0);
}

static void test_unnamed(void)
{
        struct service_sockets s;
        char err[256];

        CHECK(listen_fds(&s, err, sizeof(err), 2, NULL) == 0);
        CHECK(s.n_http == 2 && s.http[0] == 3 && s.http[1] == 4 && s.n_admin == 0);

        CHECK(listen_fds(&s, err, sizeof(err), 2, "unknown:admin") == 0);
        CHECK(s.n_http == 1 && s.http[0] == 3 && s.n_admin == 1 && s.admin[0] == 4);

        /* FileDescriptorName= unset: systemd sends the socket unit's name. */
        CHECK(listen_fds(&s, err, sizeof(err), 2, "cashpayd.socket:admin") == 0);
        CHECK(s.n_http == 1 && s.http[0] == 3 && s.n_admin == 1);

        CHECK(listen_fds(&s, err, sizeof(err), 2, ":") == 0);
        CHECK(s.n_http == 2 && s.n_admin == 0);
}

static void test_not_for_us(void)
{
        struct service_sockets s = { .n_http = 9 };
        char err[256];

        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        CHECK(service_listen_fds(&s, err, sizeof(err)) == 0);
        CHECK(s.n_http == 0 && s.n_admin == 0);

        setenv("LISTEN_PID", "1", 1); /* someone else's sockets */
        setenv("LISTEN_FDS", "2", 1);
        CHECK(service_listen_fds(&s, err, sizeof(err)) == 0);
        CHECK(s.n_http == 0 && s.n_admin == 0);
}

static void test_bad(void)
{
        struct service_sockets s;
        char err[256];

        CHECK(listen_fds(&s, err, sizeof(err), 2, "http:metrics") == -EINVAL);
        CHECK(strstr(err, "\"metrics\"") != NULL);
        CHECK(strstr(err, "socket 4") != NULL);
        CHECK(s.n_http == 0 && s.n_admin == 0);

        /* A bound but not listening socket at fd 4. */
        listener_at(4, 0);
        CHECK(listen_fds(&s, err, sizeof(err), 2, "http:admin") == -EINVAL);
        CHECK(strstr(err, "not a listening stream socket") != NULL);
        CHECK(s.n_http == 0 && s.n_admin == 0);
        listener_at(4, 1);
}

static void test_too_many(void)
{
        struct service_sockets s;
        char err[256];
        int last = FIRST_FD + 16; /* 17 sockets: one more than fits */

        for (int fd = FIRST_FD + 2; fd <= last; fd++)
                CHECK(dup2(FIRST_FD, fd) == fd);
        CHECK(listen_fds(&s, err, sizeof(err), 17, NULL) == -E2BIG);
        CHECK(s.n_http == 0);
        CHECK(listen_fds(&s, err, sizeof(err), 16, NULL) == 0);
        CHECK(s.n_http == 16 && s.http[15] == FIRST_FD + 15);
        for (int fd = FIRST_FD + 2; fd <= last; fd++)
                close(fd);
}

/* A datagram socket in the abstract namespace to stand in for systemd's. */
static int notify_listener(char *name, size_t len)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = 2 };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        socklen_t alen;

        snprintf(name, len, "@cashpay-test-service-%d", (int) getpid());
        /* sun_path starts with NUL for the abstract namespace; no trailing NUL. */
        memcpy(a.sun_path + 1, name + 1, strlen(name) - 1);
        alen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(name));
        if (fd < 0 || bind(fd, (struct sockaddr *) &a, alen) < 0) {
                perror("notify socket");
                exit(1);
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setenv("NOTIFY_SOCKET", name, 1);
        return fd;
}

static const char *next_datagram(int fd)
{
        static char buf[1024];
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

        buf[n > 0 ? n : 0] = '\0';
        return buf;
}

static unsigned long long monotonic_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (unsigned long long) ts.tv_sec * 1000000ull + (unsigned long long) ts.tv_nsec / 1000;
}

static void check_reloading(const char *msg, unsigned long long before)
{
        unsigned long long usec = 0;

        CHECK(strncmp(msg, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0);
        CHECK(sscanf(msg, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec) == 1);
        CHECK(usec >= before && usec <= monotonic_usec());
        CHECK(strchr(msg + 27, '\n') == NULL);
}

static void test_notify(void)
{
        char name[108];
        int fd = notify_listener(name, sizeof(name));
        unsigned long long before = monotonic_usec();

        service_notify_ready();
        CHECK(strcmp(next_datagram(fd), "READY=1") == 0);
        service_notify_status("deliveries %d, applied %d\nREADY=1", 5, 3);
        CHECK(strcmp(next_datagram(fd), "STATUS=deliveries 5, applied 3 READY=1") == 0);
        service_notify_watchdog();
        CHECK(strcmp(next_datagram(fd), "WATCHDOG=1") == 0);
        service_notify_reloading();
        check_reloading(next_datagram(fd), before);
        service_notify_ready();
        CHECK(strcmp(next_datagram(fd), "READY=1") == 0);
        service_notify_stopping();
        CHECK(strcmp(next_datagram(fd), "STOPPING=1") == 0);
        CHECK(getenv("NOTIFY_SOCKET") != NULL); /* kept for the next message */

        /* Without $NOTIFY_SOCKET nothing is sent and nothing breaks. */
        unsetenv("NOTIFY_SOCKET");
        service_notify_ready();
        service_notify_status("x");
        CHECK(recv(fd, name, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN);
        close(fd);
}

static void test_watchdog(void)
{
        char pid[32];

        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        unsetenv("WATCHDOG_USEC");
        CHECK(service_watchdog_usec() == 0);
        setenv("WATCHDOG_USEC", "30000000", 1);
        setenv("WATCHDOG_PID", pid, 1);
        CHECK(service_watchdog_usec() == 30000000);
        CHECK(service_watchdog_usec() == 30000000); /* not consumed */
        setenv("WATCHDOG_PID", "1", 1);
        CHECK(service_watchdog_usec() == 0);
        unsetenv("WATCHDOG_PID");
        CHECK(service_watchdog_usec() == 30000000);
        unsetenv("WATCHDOG_USEC");
}

int main(void)
{
        listener_at(FIRST_FD, 1);
        listener_at(FIRST_FD + 1, 1);

        test_named();
        test_unnamed();
        test_not_for_us();
        test_bad();
        test_too_many();
        test_notify();
        test_watchdog();

        return check_summary();
}
