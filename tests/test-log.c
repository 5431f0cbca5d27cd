/*
 * Tests for log: one call is one plain line whatever the message holds,
 * level filtering, journal detection from $JOURNAL_STREAM, and the rate
 * limiter's counts (also under concurrent callers).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cashpay/log.h"
#include "tests/check.h"

static int pipe_rd = -1;

/* Everything written to stderr since the last call. */
static const char *captured(void)
{
        static char buf[65536];
        size_t n = 0;
        ssize_t r;

        while (n < sizeof(buf) - 1 && (r = read(pipe_rd, buf + n, sizeof(buf) - 1 - n)) > 0)
                n += (size_t) r;
        buf[n] = '\0';
        return buf;
}

static size_t count_char(const char *s, char c)
{
        size_t n = 0;

        for (; *s; s++)
                n += *s == c;
        return n;
}

static void redirect_stderr(void)
{
        int p[2];

        /* Failures go to the real stderr: fd 2 becomes the pipe under test. */
        check_stream = fdopen(dup(STDERR_FILENO), "w");
        setvbuf(check_stream, NULL, _IONBF, 0);
        if (pipe(p) < 0 || dup2(p[1], STDERR_FILENO) < 0) {
                perror("pipe");
                exit(1);
        }
        close(p[1]);
        pipe_rd = p[0];
        fcntl(pipe_rd, F_SETFL, O_NONBLOCK);
        fcntl(STDERR_FILENO, F_SETPIPE_SZ, 1 << 20);
}

static void test_single_line(void)
{
        log_warning("a\nb\rc\x1b[31md\te\xff f\xc2\x85g\xe2\x80\xa8h \xc3\xa9 \x7f!");
        CHECK_STR(captured(), "WARNING: a\\nb\\rc\\x1b[31md\\te\\xff f\\xc2\\x85g"
                              "\\xe2\\x80\\xa8h \xc3\xa9 \\x7f!\n");

        /* Overlong and surrogate encodings are not UTF-8 either. */
        log_info("\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80");
        CHECK_STR(captured(), "INFO: \\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80\n");

        log_err("%s", "");
        CHECK_STR(captured(), "ERROR: \n");
}

static void test_long_message(void)
{
        static char big[20000];
        const char *out;

        memset(big, '\n', sizeof(big) - 1);
        log_notice("%s", big);
        out = captured();
        CHECK(count_char(out, '\n') == 1);
        CHECK(out[strlen(out) - 1] == '\n');
        CHECK(strlen(out) < 8192);
        CHECK(strstr(out, "...\n") != NULL);
        CHECK(strncmp(out, "NOTICE: \\n\\n", 12) == 0);
}

static void test_fields(void)
{
        struct log_fields f = {
                .charge_id = "chg_1\nINFO: forged",
                .outcome = "applied",
                .delivery_id = 42,
                .remote_addr = "127.0.0.1",
                .message_id = "0123456789abcdef0123456789abcdef",
        };

        log_fields(LOG_LEVEL_INFO, &f, "delivery %d", 7);
        CHECK_STR(captured(), "INFO: delivery 7 [charge_id=chg_1\\nINFO: forged outcome=applied "
                              "delivery_id=42 remote_addr=127.0.0.1]\n");

        log_fields(LOG_LEVEL_INFO, &(struct log_fields) { .outcome = "stale" }, "x");
        CHECK_STR(captured(), "INFO: x [outcome=stale]\n");

        log_fields(LOG_LEVEL_INFO, &(struct log_fields) { 0 }, "none");
        CHECK_STR(captured(), "INFO: none\n");

        log_fields(LOG_LEVEL_INFO, NULL, "null");
        CHECK_STR(captured(), "INFO: null\n");
}

static void test_levels(void)
{
        log_set_level(LOG_LEVEL_WARNING);
        CHECK(log_get_level() == LOG_LEVEL_WARNING);
        CHECK(!log_enabled(LOG_LEVEL_INFO));
        CHECK(log_enabled(LOG_LEVEL_WARNING));
        CHECK(log_enabled(LOG_LEVEL_ERR));

        log_debug("no");
        log_info("no");
        log_notice("no");
        log_warning("yes %d", 1);
        log_err("yes %d", 2);
        CHECK_STR(captured(), "WARNING: yes 1\nERROR: yes 2\n");

        log_set_level(LOG_LEVEL_DEBUG);
        log_debug("dbg");
        CHECK_STR(captured(), "DEBUG: dbg\n");
        log_set_level(LOG_LEVEL_INFO);
}

static void test_errno_kept(void)
{
        errno = ENOENT;
        log_info("open: %s", strerror(errno));
        CHECK(errno == ENOENT);
        CHECK_STR(captured(), "INFO: open: No such file or directory\n");
        errno = EBUSY;
        log_debug("filtered");
        CHECK(errno == EBUSY);
}

static void test_journal_detection(void)
{
        struct stat st;
        char v[64];

        CHECK(fstat(STDERR_FILENO, &st) == 0);
        snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino);
        setenv("JOURNAL_STREAM", v, 1);
        log_init("test-log", LOG_LEVEL_INFO);
        CHECK(log_to_journal());

        snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long) st.st_dev,
                 (unsigned long long) st.st_ino + 1);
        setenv("JOURNAL_STREAM", v, 1);
        log_init("test-log", LOG_LEVEL_INFO);
        CHECK(!log_to_journal());

        setenv("JOURNAL_STREAM", "garbage", 1);
        log_init("test-log", LOG_LEVEL_INFO);
        CHECK(!log_to_journal());

        unsetenv("JOURNAL_STREAM");
        log_init("test-log", LOG_LEVEL_INFO);
        CHECK(!log_to_journal());
}

static void test_rate_limit(void)
{
        struct log_ratelimit rl = LOG_RATELIMIT_INIT(3, 1000);
        int ok = 0;

        for (int i = 0; i < 8; i++)
                ok += log_rate_ok_at(&rl, 5000 + i);
        CHECK(ok == 3);
        CHECK(rl.suppressed == 5);
        CHECK(log_rate_ok_at(&rl, 5999) == 0); /* same window */
        CHECK_STR(captured(), "");

        CHECK(log_rate_ok_at(&rl, 6000) == 1); /* new window: report first */
        CHECK_STR(captured(), "NOTICE: 6 similar messages suppressed\n");
        CHECK(rl.suppressed == 0);
        CHECK(log_rate_ok_at(&rl, 6001) == 1);
        CHECK(log_rate_ok_at(&rl, 6002) == 1);
        CHECK(log_rate_ok_at(&rl, 6003) == 0);

        /* A window with nothing suppressed reports nothing. */
        rl = (struct log_ratelimit) LOG_RATELIMIT_INIT(2, 100);
        CHECK(log_rate_ok_at(&rl, 1) == 1);
        CHECK(log_rate_ok_at(&rl, 200) == 1);
        CHECK_STR(captured(), "");

        /* The real clock: a burst of 1 per hour lets exactly one through. */
        rl = (struct log_ratelimit) LOG_RATELIMIT_INIT(1, 3600 * 1000);
        CHECK(log_rate_ok(&rl) == 1);
        CHECK(log_rate_ok(&rl) == 0);
}

#define THREADS 8
#define CALLS 5000

static struct log_ratelimit shared_rl = LOG_RATELIMIT_INIT(100, 1000);

static void *hammer(void *arg)
{
        long ok = 0;

        for (int i = 0; i < CALLS; i++) {
                ok += log_rate_ok_at(&shared_rl, 10000);
                if (i % 1000 == 0) /* concurrent level changes, as SIGHUP does */
                        log_set_level(i % 2000 ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
        }
        return (void *) ok;
}

static void test_rate_limit_threads(void)
{
        pthread_t t[THREADS];
        long total = 0;
        void *ret;

        for (int i = 0; i < THREADS; i++)
                CHECK(pthread_create(&t[i], NULL, hammer, NULL) == 0);
        for (int i = 0; i < THREADS; i++) {
                pthread_join(t[i], &ret);
                total += (long) ret;
        }
        CHECK(total == 100);
        CHECK(shared_rl.suppressed == THREADS * CALLS - 100);
        log_set_level(LOG_LEVEL_INFO);
        CHECK(log_rate_ok_at(&shared_rl, 11000) == 1);
        CHECK_STR(captured(), "NOTICE: 39900 similar messages suppressed\n");
}

int main(void)
{
        redirect_stderr();
        unsetenv("JOURNAL_STREAM");
        log_init("test-log", LOG_LEVEL_INFO);
        CHECK(!log_to_journal());

        test_single_line();
        test_long_message();
        test_fields();
        test_levels();
        test_errno_kept();
        test_rate_limit();
        test_rate_limit_threads();
        test_journal_detection();

        return check_summary();
}
