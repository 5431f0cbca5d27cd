/*
 * secrets — the merchant's webhook secret file, read and parsed.
 *
 * Kept apart from verify.c, which is pure: this is the one module of the core
 * besides config.c that opens a file. The file is read whole (bounded by
 * VERIFY_SECRET_FILE_MAX) into memory that is wiped before it is freed, and
 * no message ever quotes a secret: errors name the file and the line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cashpay/secrets.h"
#include "cashpay/util.h"

#define SW_SECRET_PREFIX "whsec_"
#define SECRET_BLANKS " \t\r\v\f"
/* Base64 characters of the longest secret, padding included. */
#define SW_SECRET_TEXT_MAX ((VERIFY_SECRET_MAX + 2) / 3 * 4)

/* Bytes of the file; not NUL-terminated. */
struct span {
        const char *p;
        size_t n;
};

static int fail_errno(char *err, size_t err_len, const char *path, int e)
{
        char buf[128];

        return err_set(err, err_len, -e, "%s: %s", path, strerror_r(e, buf, sizeof(buf)));
}

static int read_all(int fd, char *buf, size_t max, size_t *ret_len)
{
        size_t len = 0;

        while (len < max) {
                ssize_t n = read(fd, buf + len, max - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        *ret_len = len;
        return 0;
}

/* The whole file, bounded; the caller wipes and frees *ret even on failure. */
static int read_file(const char *path, char **ret, size_t *ret_len, char *err, size_t err_len)
{
        *ret = NULL;
        *ret_len = 0;

        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return fail_errno(err, err_len, path, errno);
        /* One byte more than allowed tells an oversized file from a full one. */
        *ret = malloc(VERIFY_SECRET_FILE_MAX + 1);
        int r = *ret ? read_all(fd, *ret, VERIFY_SECRET_FILE_MAX + 1, ret_len) : -ENOMEM;
        close(fd);

        if (r < 0)
                return fail_errno(err, err_len, path, -r);
        return 0; /* the parser refuses an oversized file */
}

static struct span trim_secret_line(struct span s)
{
        while (s.n > 0 && strchr(SECRET_BLANKS, s.p[s.n - 1]))
                s.n--;
        while (s.n > 0 && strchr(SECRET_BLANKS, *s.p)) {
                s.p++;
                s.n--;
        }
        return s;
}

/* Messages name the line, never its content. */
static int secret_from_whsec(const char *path, size_t line, struct span s, struct secret *ret,
                             char *err, size_t err_len)
{
        size_t plen = strlen(SW_SECRET_PREFIX);
        if (s.n < plen || memcmp(s.p, SW_SECRET_PREFIX, plen) != 0)
                return err_set(err, err_len, -EINVAL, "%s: line %zu: secret does not start with "
                               SW_SECRET_PREFIX, path, line);
        /* Named for what it is before the decoder, whose buffer it would not fit. */
        if (s.n - plen > SW_SECRET_TEXT_MAX)
                return err_set(err, err_len, -EINVAL, "%s: line %zu: secret longer than %d bytes",
                               path, line, VERIFY_SECRET_MAX);

        uint8_t buf[VERIFY_SECRET_MAX + 3];
        size_t n = 0;
        bool ok = verify_base64_decode(s.p + plen, s.n - plen, buf, sizeof(buf), &n);
        if (ok && n > 0 && n <= VERIFY_SECRET_MAX) {
                memcpy(ret->bytes, buf, n);
                ret->len = n;
        }
        OPENSSL_cleanse(buf, sizeof(buf));
        if (!ok || n == 0)
                return err_set(err, err_len, -EINVAL, "%s: line %zu: secret is not "
                               SW_SECRET_PREFIX " followed by padded base64", path, line);
        if (n > VERIFY_SECRET_MAX)
                return err_set(err, err_len, -EINVAL, "%s: line %zu: secret longer than %d bytes",
                               path, line, VERIFY_SECRET_MAX);
        return 0;
}

static int decode_secret(const char *path, size_t line, struct span s,
                         enum verify_scheme scheme, struct secret *ret,
                         char *err, size_t err_len)
{
        if (scheme == VERIFY_STANDARD_WEBHOOKS)
                return secret_from_whsec(path, line, s, ret, err, err_len);
        if (s.n > VERIFY_SECRET_MAX)
                return err_set(err, err_len, -EINVAL, "%s: line %zu: secret longer than %d bytes",
                               path, line, VERIFY_SECRET_MAX);
        memcpy(ret->bytes, s.p, s.n); /* hmac: the line's bytes are the key */
        ret->len = s.n;
        return 0;
}

static int parse_line(const char *path, size_t line, struct span s, enum verify_scheme scheme,
                      struct secret_set *ret, char *err, size_t err_len)
{
        if (memchr(s.p, '\0', s.n))
                return err_set(err, err_len, -EINVAL, "%s: line %zu: contains a NUL byte", path,
                               line);

        s = trim_secret_line(s);
        if (s.n == 0 || s.p[0] == '#')
                return 0;
        if (ret->n == VERIFY_MAX_SECRETS)
                return err_set(err, err_len, -E2BIG, "%s: line %zu: more than %d secrets",
                               path, line, VERIFY_MAX_SECRETS);

        int r = decode_secret(path, line, s, scheme, &ret->items[ret->n], err, err_len);
        if (r == 0)
                ret->n++;
        return r;
}

static int parse_secrets(const char *path, const char *buf, size_t len,
                         enum verify_scheme scheme, struct secret_set *ret,
                         char *err, size_t err_len)
{
        size_t pos = 0, line = 0;

        if (len > VERIFY_SECRET_FILE_MAX)
                return err_set(err, err_len, -EFBIG, "%s: larger than %d bytes", path,
                               VERIFY_SECRET_FILE_MAX);

        while (pos < len) {
                const char *start = buf + pos;
                const char *nl = memchr(start, '\n', len - pos);
                size_t n = nl ? (size_t)(nl - start) : len - pos;

                pos += n + (nl ? 1 : 0);
                int r = parse_line(path, ++line, (struct span){ start, n }, scheme, ret,
                                   err, err_len);
                if (r < 0)
                        return r;
        }
        if (ret->n == 0)
                return err_set(err, err_len, -EINVAL, "%s: no secret in the file", path);
        return 0;
}

/* What loading from a file and from a buffer both check first. */
static int secrets_begin(const char *name, enum verify_scheme scheme, struct secret_set *ret,
                         char *err, size_t err_len)
{
        if (!ret)
                return -EINVAL;
        secrets_wipe(ret);
        if (!name || !*name)
                return err_set(err, err_len, -EINVAL, "no secret file configured");
        if (scheme != VERIFY_HMAC && scheme != VERIFY_STANDARD_WEBHOOKS)
                return err_set(err, err_len, -EINVAL, "%s: verify scheme takes no secrets", name);
        return 0;
}

int secrets_parse(const char *name, const void *buf, size_t len,
                  enum verify_scheme scheme, struct secret_set *ret,
                  char *err, size_t err_len)
{
        int r = secrets_begin(name, scheme, ret, err, err_len);

        if (r == 0 && !buf && len > 0)
                r = err_set(err, err_len, -EINVAL, "%s: no buffer", name);
        if (r == 0)
                r = parse_secrets(name, buf, len, scheme, ret, err, err_len);
        if (r < 0 && ret)
                secrets_wipe(ret);
        return r;
}

int secrets_load(const char *path, enum verify_scheme scheme,
                 struct secret_set *ret, char *err, size_t err_len)
{
        char *buf = NULL;
        size_t len = 0;

        int r = secrets_begin(path, scheme, ret, err, err_len);
        if (r < 0)
                return r;
        r = read_file(path, &buf, &len, err, err_len);
        if (r == 0)
                r = secrets_parse(path, buf, len, scheme, ret, err, err_len);
        if (buf) {
                OPENSSL_cleanse(buf, len);
                free(buf);
        }
        if (r < 0)
                secrets_wipe(ret);
        return r;
}

void secrets_wipe(struct secret_set *set)
{
        if (set)
                OPENSSL_cleanse(set, sizeof(*set)); /* also sets n = 0 */
}
