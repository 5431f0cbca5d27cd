/*
 * util — the few idioms every module of cashpayd and cashpayctl shares.
 *
 * Cleanup: a local that owns a resource is declared
 *         _cleanup_(config_freep) struct config *cfg = NULL;
 * and released when it goes out of scope, so a function returns early on
 * each error instead of unwinding a chain of frees. TAKE_PTR() hands the
 * value on (to a ret_* output) and leaves NULL behind, so nothing is freed
 * twice. Each module's header defines the *_freep for its own type with
 * DEFINE_FREEP(); the generic ones (free, close) are here, SQLite's
 * statement in src/store/store-internal.h (the only code that speaks SQL),
 * and jansson ships json_decrefp() for json_t itself.
 *
 * Error messages: a function that can fail for a reason worth telling takes
 * (char *err, size_t err_len) and fills it with err_set(), which returns the
 * negative errno it was given, so a failure is one line:
 *         return err_set(err, err_len, -EINVAL, "%s: not a number", key);
 * @err may be NULL (the caller only wants the code).
 */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

/* DEFINE_FREEP(type, func) - defines func##p(type **p): func(*p) unless NULL. */
#define DEFINE_FREEP(type, func)                        \
        static inline void func##p(type **p)            \
        {                                               \
                if (*p)                                 \
                        func(*p);                       \
        }

/* TAKE_PTR(p) - the value of p, leaving NULL in p: ownership moves on. */
#define TAKE_PTR(p)                                     \
        __extension__({                                 \
                __typeof__(p) *take_ptr_ = &(p);        \
                __typeof__(p) take_val_ = *take_ptr_;   \
                *take_ptr_ = NULL;                      \
                take_val_;                              \
        })

/* TAKE_FD(fd) - the same for a file descriptor, leaving -1. */
#define TAKE_FD(fd)                                     \
        __extension__({                                 \
                int take_fd_ = (fd);                    \
                (fd) = -1;                              \
                take_fd_;                               \
        })

/* freep() - for _cleanup_(freep) on any pointer from malloc(). */
static inline void freep(void *p)
{
        free(*(void **) p);
}

/* closep() - for _cleanup_(closep) int fd = -1; */
static inline void closep(int *fd)
{
        if (*fd >= 0)
                close(*fd);
}

/* err_setv() - err_set() with a va_list. */
__attribute__((format(printf, 4, 0)))
static inline int err_setv(char *err, size_t err_len, int r, const char *fmt, va_list ap)
{
        if (err && err_len > 0)
                vsnprintf(err, err_len, fmt, ap);
        return r;
}

/* err_set() - write the message into @err (when not NULL) and return @r. */
__attribute__((format(printf, 4, 5)))
static inline int err_set(char *err, size_t err_len, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        err_setv(err, err_len, r, fmt, ap);
        va_end(ap);
        return r;
}
