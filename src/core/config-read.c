/*
 * config-read — cashpayd.conf's lines into a struct config.
 *
 * inih splits the file into sections and key/value pairs. Lines reach it
 * through our own reader, which counts lines (inih's callback does not get
 * the line number), removes comments and indentation itself (so the
 * behaviour does not depend on how inih was built: inline comments,
 * multi-line continuations) and rejects what inih would silently accept.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "cashpay/config.h"
#include "cashpay/util.h"
#include "src/core/config-internal.h"
#include "src/core/config-value.h"

/* Raw lines longer than this (comments included) are refused. */
#define RAW_LINE_MAX 4096
/* A config file has no business being longer than this. */
#define LINES_MAX 100000u

struct parser {
        struct config *cfg;
        const char *path;
        FILE *f;
        unsigned line;           /* of the line last handed to inih */
        char section[16];        /* current section, "" before the first */
        unsigned *lines;         /* line each key was set on, 0 = not set */
        int r;                   /* first error, 0 = none so far */
        char *err;
        size_t err_len;
};

static int parse_fail(struct parser *p, int r, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Record the first error as "PATH:LINE: message"; returns 0 for inih. */
static int parse_fail(struct parser *p, int r, const char *fmt, ...)
{
        int n;
        va_list ap;

        if (p->r < 0)
                return 0;
        p->r = r;
        if (!p->err || p->err_len == 0)
                return 0;
        n = snprintf(p->err, p->err_len, "%s:%u: ", p->path, p->line);
        if (n < 0 || (size_t) n >= p->err_len)
                return 0;
        va_start(ap, fmt);
        err_setv(p->err + n, p->err_len - (size_t) n, r, fmt, ap);
        va_end(ap);
        return 0;
}

/* One raw line without its '\n' into @buf. Returns 1, 0 at the end, or -1
 * after recording an error. */
static int read_raw_line(struct parser *p, char *buf, size_t len)
{
        size_t n = 0;
        int c;

        if (++p->line > LINES_MAX)
                return parse_fail(p, -EINVAL, "more than %u lines", LINES_MAX), -1;
        while ((c = getc(p->f)) != EOF && c != '\n') {
                if (c == '\0')
                        return parse_fail(p, -EINVAL, "NUL byte in line"), -1;
                if (n + 1 >= len)
                        return parse_fail(p, -EINVAL, "line longer than %zu bytes",
                                          len - 1), -1;
                buf[n++] = (char)c;
        }
        buf[n] = '\0';
        if (c == EOF && ferror(p->f)) {
                p->r = err_set(p->err, p->err_len, -EIO, "%s: read error: %s", p->path,
                               strerror(EIO));
                return -1;
        }
        return c == EOF && n == 0 ? 0 : 1;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Trim blanks at both ends, in place. */
static char *trim(char *s)
{
        size_t n;

        while (is_space(*s))
                s++;
        n = strlen(s);
        while (n > 0 && is_space(s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* Cut a ';' comment: one at the start of @s (the line, or the value right
 * after '=') or after a blank. Values may hold ';' elsewhere (e.g. in a URL).
 * '#' is a comment only at the start of a line, so URL fragments work. */
static void cut_comment(char *s)
{
        for (char *c = s; *c; c++) {
                if (*c == ';' && (c == s || is_space(c[-1]))) {
                        *c = '\0';
                        return;
                }
        }
}

static int section_line(struct parser *p, char *line, char *out, size_t out_len)
{
        size_t n;
        char *name, q[80];

        cut_comment(line);
        line = trim(line);
        n = strlen(line);
        if (n < 2 || line[n - 1] != ']')
                return parse_fail(p, -EINVAL, "expected '[section]'"), -1;
        line[n - 1] = '\0';
        name = trim(line + 1);
        if (!config_section_known(name))
                return parse_fail(p, -EINVAL, "unknown section [%s]",
                                  config_value_shown(name, strlen(name), q, sizeof(q))), -1;
        snprintf(p->section, sizeof(p->section), "%s", name);
        snprintf(out, out_len, "[%s]\n", name);
        return 0;
}

static int key_line(struct parser *p, char *line, char *out, size_t out_len)
{
        char *eq = strchr(line, '='), *name, *value, q[80];
        size_t i, name_len, value_len;

        if (!eq)
                return parse_fail(p, -EINVAL, "expected 'key = value' or '[section]'"), -1;
        *eq = '\0';
        name = trim(line);
        value = eq + 1;
        cut_comment(value);
        value = trim(value);
        config_value_shown(name, strlen(name), q, sizeof(q));
        if (!p->section[0])
                return parse_fail(p, -EINVAL, "key '%s' before any [section]", q), -1;
        if (!config_key_find(p->section, name, &i))
                return parse_fail(p, -EINVAL, "unknown key '%s' in [%s]", q, p->section), -1;
        /* inih's line buffer must hold "key=value", '\n' and '\0'. */
        name_len = strlen(name);
        value_len = strlen(value);
        if (name_len + 1 + value_len + 2 > out_len)
                return parse_fail(p, -EINVAL, "line too long: 'key=value' may hold at most "
                                  "%zu bytes", out_len - 2), -1;
        memcpy(out, name, name_len);
        out[name_len] = '=';
        memcpy(out + name_len + 1, value, value_len);
        memcpy(out + name_len + 1 + value_len, "\n", 2);
        return 0;
}

/* Turn the raw line into what inih gets: "[section]", "key=value" or an
 * empty line, after all checks that need the raw text. */
static int normalize_line(struct parser *p, char *raw, char *out, size_t out_len)
{
        char *line = raw;

        if (p->line == 1 && strncmp(line, "\xef\xbb\xbf", 3) == 0)
                line += 3;
        line = trim(line);
        if (line[0] == '\0' || line[0] == '#' || line[0] == ';') {
                snprintf(out, out_len, "\n");
                return 0;
        }
        if (line[0] == '[')
                return section_line(p, line, out, out_len);
        return key_line(p, line, out, out_len);
}

static char *reader(char *str, int num, void *stream)
{
        struct parser *p = stream;
        char raw[RAW_LINE_MAX + 1];

        if (p->r < 0 || num < 8)
                return NULL;
        if (read_raw_line(p, raw, sizeof(raw)) <= 0)
                return NULL;
        if (normalize_line(p, raw, str, (size_t)num) < 0)
                return NULL;
        return str;
}

static int on_pair(void *user, const char *section, const char *name, const char *value)
{
        struct parser *p = user;
        const struct config_key *k;
        char err[256], q[80];
        size_t i;
        int r;

        k = config_key_find(section, name, &i);
        if (!k)
                return parse_fail(p, -EINVAL, "unknown key '%s' in [%s]", name, section);
        if (p->lines[i])
                return parse_fail(p, -EINVAL, "duplicate key '%s' in [%s] (first set on "
                                  "line %u)", name, section, p->lines[i]);
        p->lines[i] = p->line;
        r = config_key_set(k, p->cfg, value, err, sizeof(err));
        if (r == -ENOMEM)
                return parse_fail(p, r, "out of memory");
        if (r < 0)
                return parse_fail(p, r, "[%s] %s = '%s': %s", section, name,
                                  config_value_shown(value, strlen(value), q, sizeof(q)), err);
        return 1;
}

int config_read(struct config *cfg, const char *path, FILE *f, unsigned *lines,
                char *err, size_t err_len)
{
        struct parser parser = {
                .cfg = cfg, .path = path, .f = f, .lines = lines, .err = err, .err_len = err_len,
        };
        struct parser *p = &parser;
        int r = ini_parse_stream(reader, p, on_pair, p);

        if (p->r < 0)
                return p->r;
        if (r == -2)
                return -ENOMEM;
        if (r != 0) {
                /* Our reader hands over only lines inih accepts; keep a
                 * message in case some inih build thinks otherwise. */
                snprintf(p->err, p->err_len, "%s:%d: cannot parse this line", p->path, r);
                return -EINVAL;
        }
        return 0;
}
