/*
 * The unit tests' assertion kit. Every check is counted; a failed one prints
 * file:line and what failed, and the test goes on, so that one run shows all
 * the failures. check_summary() prints the counts and gives the exit status.
 *
 * Each test program is one translation unit, so everything here is static.
 */
#ifndef CASHPAY_TESTS_CHECK_H
#define CASHPAY_TESTS_CHECK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned check_count, check_failures;

/* Where failures are reported; NULL means stderr. A test that captures fd 2 sets its own. */
static FILE *check_stream;

static inline FILE *check_out(void)
{
        return check_stream ? check_stream : stderr;
}

/* Counts one check; unless @ok, prints "file:line: check failed: " and the message. */
__attribute__((format(printf, 4, 5)))
static inline bool check_at(const char *file, int line, bool ok, const char *fmt, ...)
{
        FILE *out = check_out();
        va_list ap;

        check_count++;
        if (ok)
                return true;
        check_failures++;
        fprintf(out, "%s:%d: check failed: ", file, line);
        va_start(ap, fmt);
        vfprintf(out, fmt, ap);
        va_end(ap);
        fputc('\n', out);
        return false;
}

static inline bool check_eq_int_at(const char *file, int line, const char *what,
                                   long long got, long long want)
{
        return check_at(file, line, got == want, "%s is %lld, want %lld", what, got, want);
}

/* Both strings must be there and equal: expect NULL with CHECK(p == NULL). */
static inline bool check_str_at(const char *file, int line, const char *what,
                                const char *got, const char *want)
{
        return check_at(file, line, got && want && strcmp(got, want) == 0,
                        "%s\n    got  \"%s\"\n    want \"%s\"", what,
                        got ? got : "(null)", want ? want : "(null)");
}

/*
 * CHECK(cond) reports the condition's text; CHECK(cond, fmt, ...) reports
 * the formatted message instead. CHECK_PICK_ selects by argument count (up
 * to a format and six values) without C2x's __VA_OPT__.
 */
#define CHECK(...) CHECK_PICK_(__VA_ARGS__, CHECK_FMT_, CHECK_FMT_, CHECK_FMT_, CHECK_FMT_, \
                               CHECK_FMT_, CHECK_FMT_, CHECK_FMT_, CHECK_COND_, -)(__VA_ARGS__)
#define CHECK_PICK_(a1, a2, a3, a4, a5, a6, a7, a8, which, ...) which
#define CHECK_COND_(cond) check_at(__FILE__, __LINE__, (cond), "%s", #cond)
#define CHECK_FMT_(cond, ...) check_at(__FILE__, __LINE__, (cond), __VA_ARGS__)

#define CHECK_EQ_INT(got, want) \
        check_eq_int_at(__FILE__, __LINE__, #got, (long long) (got), (long long) (want))
#define CHECK_STR(got, want) check_str_at(__FILE__, __LINE__, #got, (got), (want))

/* FAIL(fmt, ...) - the test cannot go on (its setup failed): say why, exit 1. */
#define FAIL(...) check_fail_at(__FILE__, __LINE__, __VA_ARGS__)

__attribute__((format(printf, 3, 4), noreturn))
static inline void check_fail_at(const char *file, int line, const char *fmt, ...)
{
        FILE *out = check_out();
        va_list ap;

        fprintf(out, "%s:%d: ", file, line);
        va_start(ap, fmt);
        vfprintf(out, fmt, ap);
        va_end(ap);
        fputc('\n', out);
        exit(EXIT_FAILURE);
}

/* Prints the counts; the exit status: 0 when every check passed, and some ran. */
static inline int check_summary(void)
{
        FILE *out = check_failures || !check_count ? check_out() : stdout;

        fprintf(out, "%u checks, %u failed\n", check_count, check_failures);
        return check_failures || !check_count ? 1 : 0;
}

#endif
