/*
 * fuzz.h — what the libFuzzer targets share: an assertion that turns a
 * broken invariant into a crash libFuzzer records, and a cursor that cuts
 * the input into fields.
 *
 * A target does more than feed bytes in: after each call it checks what the
 * contract promises about the result (a parsed charge obeys every rule, a
 * signature made by verify_sign() verifies, ...), so a wrong answer is a
 * finding just like a memory error.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * For the targets' own checks over results: coverage feedback there would
 * reward the fuzzer for nothing and, on a page of HTML, cost most of the time.
 */
#define FUZZ_UNTRACED __attribute__((no_sanitize("coverage"), noinline))

#define FUZZ_CHECK(cond, ...)                                                   \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__,  \
                                __LINE__, #cond);                               \
                        fprintf(stderr, __VA_ARGS__);                           \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

/* The unread rest of the input. */
struct cursor {
        const uint8_t *p;
        size_t n;
};

/* One byte (0 once the input is used up). */
static inline uint8_t cursor_byte(struct cursor *c)
{
        if (c->n == 0)
                return 0;
        c->n--;
        return *c->p++;
}

/*
 * The bytes up to the next @sep (or the end) as a NUL-terminated malloc'ed
 * string; the separator is consumed. A NUL inside ends the string early, as
 * it would for any C string the daemon receives. Aborts on allocation
 * failure: the fuzzer's own memory is not under test.
 */
static inline char *cursor_field(struct cursor *c, char sep)
{
        const uint8_t *end = memchr(c->p, sep, c->n);
        size_t len = end ? (size_t)(end - c->p) : c->n;
        char *s = malloc(len + 1);

        if (!s)
                abort();
        if (len > 0)
                memcpy(s, c->p, len);
        s[len] = '\0';
        c->p += len + (end ? 1 : 0);
        c->n -= len + (end ? 1 : 0);
        return s;
}

/*
 * A copy of the rest of the input in a buffer of exactly that size, not
 * NUL-terminated: AddressSanitizer then catches a read one byte past the end.
 */
static inline uint8_t *cursor_rest(struct cursor *c, size_t *ret_len)
{
        uint8_t *s = malloc(c->n > 0 ? c->n : 1);

        if (!s)
                abort();
        if (c->n > 0)
                memcpy(s, c->p, c->n);
        *ret_len = c->n;
        c->p += c->n;
        c->n = 0;
        return s;
}

/*
 * A file in memory for targets whose code under test opens a path (the
 * config and secret loaders): created once per process, rewritten for each
 * input, opened through /proc/self/fd.
 */
struct memfile {
        int fd;
        char path[64];
};

static inline void memfile_open(struct memfile *f, const char *name)
{
        f->fd = memfd_create(name, MFD_CLOEXEC);
        if (f->fd < 0) {
                perror("memfd_create");
                abort();
        }
        snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
}

/* The file now holds exactly @data. */
static inline void memfile_write(const struct memfile *f, const uint8_t *data, size_t size)
{
        size_t done = 0;

        FUZZ_CHECK(ftruncate(f->fd, 0) == 0, "ftruncate");
        while (done < size) {
                ssize_t n = pwrite(f->fd, data + done, size - done, (off_t)done);

                FUZZ_CHECK(n > 0, "pwrite");
                done += (size_t)n;
        }
}
