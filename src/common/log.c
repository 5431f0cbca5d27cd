/*
 * log — the one way cashpayd and cashpayctl write diagnostics.
 *
 * Under systemd, stderr is a stream to the journal; writing there loses the
 * structured fields, so when $JOURNAL_STREAM proves stderr is the journal we
 * send each entry with sd_journal_sendv() instead. Anywhere else we write one
 * plain line per call to stderr with a single write(), so lines of different
 * threads never interleave.
 *
 * Webhook senders control parts of what we log (ids, header values, paths),
 * so every message and field value is escaped: a log line can neither be split
 * nor carry terminal escape sequences.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "cashpay/log.h"
#include "cashpay/timeutil.h"
#include "cashpay/util.h"

#define LOG_MSG_MAX 2048   /* a formatted message before escaping */
#define LOG_ESC_MAX 4096   /* an escaped message */
#define LOG_FIELD_MAX 256  /* an escaped field value */
#define LOG_LINE_MAX (LOG_ESC_MAX + 4 * LOG_FIELD_MAX + 128)
#define LOG_TRUNCATED "..."

static atomic_int log_level_cur = LOG_LEVEL_INFO;
static atomic_bool log_journal;
static char log_ident[64] = "cashpay";
static pthread_mutex_t log_rate_lock = PTHREAD_MUTEX_INITIALIZER;

/* Length of the valid UTF-8 sequence at @s (0 if invalid); @ret_cp its code point. */
static size_t utf8_decode(const unsigned char *s, uint32_t *ret_cp)
{
        size_t len, i;
        uint32_t cp, min;

        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                len = 2, cp = s[0] & 0x1f, min = 0x80;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3, cp = s[0] & 0x0f, min = 0x800;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4, cp = s[0] & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        for (i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0; /* also stops at the NUL terminator */
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        *ret_cp = cp;
        return len;
}

/* Characters some viewers treat as line breaks or controls: C1 and U+2028/9. */
static int utf8_is_control(uint32_t cp)
{
        return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029;
}

/* The escaped form of the unit at @s into @out (≤ 13 bytes + NUL); @ret_in bytes consumed. */
static size_t escape_unit(const unsigned char *s, char *out, size_t *ret_in)
{
        uint32_t cp;
        size_t len, i, n = 0;

        if (*s == '\n' || *s == '\r' || *s == '\t') {
                *ret_in = 1;
                out[0] = '\\';
                out[1] = *s == '\n' ? 'n' : *s == '\r' ? 'r' : 't';
                return 2;
        }
        if (*s >= 0x20 && *s < 0x7f) {
                *ret_in = 1;
                out[0] = (char) *s;
                return 1;
        }
        len = *s >= 0x80 ? utf8_decode(s, &cp) : 0;
        if (len > 0 && !utf8_is_control(cp)) {
                *ret_in = len;
                memcpy(out, s, len);
                return len;
        }
        /* A C0/C1 control, DEL or a byte that is not valid UTF-8. */
        *ret_in = len > 0 ? len : 1;
        for (i = 0; i < *ret_in; i++)
                n += (size_t) sprintf(out + n, "\\x%02x", s[i]);
        return n;
}

/*
 * log_escape() - @src made safe for one log line, NUL-terminated in @dst;
 * cut at a character boundary with "..." when it does not fit.
 */
static size_t log_escape(char *dst, size_t cap, const char *src)
{
        const unsigned char *s = (const unsigned char *) src;
        size_t n = 0, in, len;
        char unit[20];

        while (*s) {
                len = escape_unit(s, unit, &in);
                if (n + len + sizeof(LOG_TRUNCATED) > cap) {
                        memcpy(dst + n, LOG_TRUNCATED, sizeof(LOG_TRUNCATED));
                        return n + sizeof(LOG_TRUNCATED) - 1;
                }
                memcpy(dst + n, unit, len);
                n += len;
                s += in;
        }
        dst[n] = '\0';
        return n;
}

static int stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        int end = 0;

        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &end) != 2 || e[end] != '\0')
                return 0;
        if (fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_init(const char *ident, enum log_level level)
{
        snprintf(log_ident, sizeof(log_ident), "%s", ident ? ident : program_invocation_short_name);
        atomic_store(&log_journal, stderr_is_journal());
        log_set_level(level);
}

void log_set_level(enum log_level level)
{
        atomic_store_explicit(&log_level_cur, (int) level, memory_order_relaxed);
}

enum log_level log_get_level(void)
{
        return (enum log_level) atomic_load_explicit(&log_level_cur, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
        return (int) level <= atomic_load_explicit(&log_level_cur, memory_order_relaxed);
}

bool log_to_journal(void)
{
        return atomic_load(&log_journal);
}

static const char *level_name(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_WARNING: return "WARNING";
        case LOG_LEVEL_NOTICE: return "NOTICE";
        case LOG_LEVEL_INFO: return "INFO";
        case LOG_LEVEL_DEBUG: return "DEBUG";
        case LOG_LEVEL_ERR: break;
        }
        return (int) level < LOG_LEVEL_ERR ? "CRIT" : level > LOG_LEVEL_DEBUG ? "DEBUG" : "ERROR";
}

static void write_all(int fd, const char *buf, size_t len)
{
        ssize_t n;

        while (len > 0) {
                n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return; /* nowhere left to report it */
                buf += n;
                len -= (size_t) n;
        }
}

/* Appends " key=value" (value escaped) to @line when @value is set. */
static size_t append_field(char *line, size_t n, const char *key, const char *value)
{
        char esc[LOG_FIELD_MAX];

        if (!value || !*value)
                return n;
        log_escape(esc, sizeof(esc), value);
        n += (size_t) snprintf(line + n, LOG_LINE_MAX - n, "%s%s=%s",
                               line[n - 1] == '[' ? "" : " ", key, esc);
        return n;
}

/* "LEVEL: message [charge_id=… outcome=… delivery_id=… remote_addr=…]\n" */
static void write_plain(enum log_level level, const struct log_fields *f, const char *msg)
{
        char line[LOG_LINE_MAX], id[24] = "";
        size_t n, bracket;

        n = (size_t) snprintf(line, sizeof(line), "%s: %s [", level_name(level), msg);
        bracket = n;
        if (f) {
                if (f->delivery_id != 0)
                        snprintf(id, sizeof(id), "%lld", (long long) f->delivery_id);
                n = append_field(line, n, "charge_id", f->charge_id);
                n = append_field(line, n, "outcome", f->outcome);
                n = append_field(line, n, "delivery_id", id);
                n = append_field(line, n, "remote_addr", f->remote_addr);
        }
        if (n == bracket)
                n -= 2; /* no fields: drop the " [" */
        else
                line[n++] = ']';
        line[n++] = '\n';
        write_all(STDERR_FILENO, line, n);
}

/* One journal field "KEY=value" (value escaped) into @buf and @iov. */
static void add_iov(struct iovec *iov, size_t *n, char *buf, size_t cap,
                    const char *key, const char *value)
{
        size_t k;

        if (!value || !*value)
                return;
        k = (size_t) snprintf(buf, cap, "%s=", key);
        k += log_escape(buf + k, cap - k, value);
        iov[(*n)++] = (struct iovec) { .iov_base = buf, .iov_len = k };
}

/* @msg is "MESSAGE=…", already escaped. */
static int send_journal(enum log_level level, const struct log_fields *f, const char *msg)
{
        char prio[16], ident[96], id[48], cid[LOG_FIELD_MAX], out[LOG_FIELD_MAX],
             addr[LOG_FIELD_MAX], mid[LOG_FIELD_MAX];
        struct iovec iov[8];
        size_t n = 0;
        int k;

        iov[n++] = (struct iovec) { .iov_base = (void *) msg, .iov_len = strlen(msg) };
        k = snprintf(prio, sizeof(prio), "PRIORITY=%d", (int) level);
        iov[n++] = (struct iovec) { .iov_base = prio, .iov_len = (size_t) k };
        add_iov(iov, &n, ident, sizeof(ident), "SYSLOG_IDENTIFIER", log_ident);
        if (f) {
                add_iov(iov, &n, cid, sizeof(cid), "CHARGE_ID", f->charge_id);
                add_iov(iov, &n, out, sizeof(out), "OUTCOME", f->outcome);
                add_iov(iov, &n, addr, sizeof(addr), "REMOTE_ADDR", f->remote_addr);
                add_iov(iov, &n, mid, sizeof(mid), "MESSAGE_ID", f->message_id);
                if (f->delivery_id != 0) {
                        k = snprintf(id, sizeof(id), "DELIVERY_ID=%lld", (long long) f->delivery_id);
                        iov[n++] = (struct iovec) { .iov_base = id, .iov_len = (size_t) k };
                }
        }
        return sd_journal_sendv(iov, (int) n);
}

#define MESSAGE_PREFIX "MESSAGE="

__attribute__((format(printf, 3, 0)))
static void log_vfields(enum log_level level, const struct log_fields *f,
                        const char *fmt, va_list ap)
{
        char raw[LOG_MSG_MAX], msg[sizeof(MESSAGE_PREFIX) - 1 + LOG_ESC_MAX];
        char *text = msg + sizeof(MESSAGE_PREFIX) - 1;
        int saved = errno;

        if (!log_enabled(level))
                return;
        if (vsnprintf(raw, sizeof(raw), fmt, ap) >= (int) sizeof(raw))
                memcpy(raw + sizeof(raw) - sizeof(LOG_TRUNCATED), LOG_TRUNCATED, sizeof(LOG_TRUNCATED));
        memcpy(msg, MESSAGE_PREFIX, sizeof(MESSAGE_PREFIX) - 1);
        log_escape(text, LOG_ESC_MAX, raw);
        /* If the journal cannot take it (socket gone), stderr still can. */
        if (!atomic_load(&log_journal) || send_journal(level, f, msg) < 0)
                write_plain(level, f, text);
        errno = saved;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vfields(level, NULL, fmt, ap);
        va_end(ap);
}

void log_fields(enum log_level level, const struct log_fields *f, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vfields(level, f, fmt, ap);
        va_end(ap);
}

int log_errno(enum log_level level, int r, bool with_errno_text, const char *fmt, ...)
{
        char msg[LOG_MSG_MAX], buf[128];
        int saved = errno;
        va_list ap;

        if (!log_enabled(level))
                return r;
        va_start(ap, fmt);
        err_setv(msg, sizeof(msg), r, fmt, ap);
        va_end(ap);
        if (with_errno_text)
                log_msg(level, "%s: %s", msg, strerror_r(r < 0 ? -r : r, buf, sizeof(buf)));
        else
                log_msg(level, "%s", msg);
        errno = saved;
        return r;
}

/*
 * A fixed window per class: @burst lines, then silence until the window has
 * passed. The count of what was dropped is reported on the next line allowed,
 * outside the lock (logging never happens while holding it).
 */
int log_rate_ok_at(struct log_ratelimit *rl, int64_t now_ms)
{
        unsigned report = 0;
        int ok;

        pthread_mutex_lock(&log_rate_lock);
        if (!rl->started || now_ms < rl->window_start_ms ||
            now_ms - rl->window_start_ms >= (int64_t) rl->interval_ms) {
                rl->started = true;
                rl->window_start_ms = now_ms;
                rl->used = 0;
        }
        ok = rl->used < rl->burst;
        if (ok) {
                rl->used++;
                report = rl->suppressed;
                rl->suppressed = 0;
        } else if (rl->suppressed < UINT_MAX) {
                rl->suppressed++;
        }
        pthread_mutex_unlock(&log_rate_lock);
        if (report > 0)
                log_msg(LOG_LEVEL_NOTICE, "%u similar messages suppressed", report);
        return ok;
}

int log_rate_ok(struct log_ratelimit *rl)
{
        return log_rate_ok_at(rl, time_monotonic_ms());
}
