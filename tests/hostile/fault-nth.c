/*
 * fault-nth — make the N-th call of a libfiu failure point fail.
 *
 * fiu-run and fiu-ctrl can fail a point always, at random or once, but a
 * sweep needs "the N-th call after this moment". This preload module sits
 * next to libfiu's POSIX preload library and registers a counting callback
 * for one failure point (or a wildcard: libc/mm/ followed by an asterisk):
 *
 *   FAULT_NTH_POINT  failure point name, e.g. posix/io/sync/fdatasync
 *   FAULT_NTH_N      the call that fails, counted from arming (1 = the first)
 *   FAULT_NTH_MODE   "once" (only the N-th call) or "always" (N-th and later)
 *   FAULT_NTH_ERRNO  errno the failed call reports (libfiu's failinfo)
 *   FAULT_NTH_REPORT file that receives "calls failed" on every disarm
 *   FAULT_NTH_CONTROL file read on every arm: "N once" or "N always"
 *                    replaces the two settings above (a sweep needs no restart)
 *
 * SIGUSR1 arms (the count starts at zero), SIGUSR2 disarms and writes the
 * report. The test waits for the daemon to be ready before arming, so the
 * calls of the startup are never counted. N = 0 only counts.
 *
 *   FAULT_NTH_ARMED  set: armed from the start instead, for a program that
 *                    runs and exits (cashpayctl); the report is written at exit
 *
 * FAULT_NTH_POINT=jansson counts jansson's allocations instead, through
 * json_set_alloc_funcs(), without libfiu: every other allocation is left
 * alone, and it works where libfiu cannot wrap malloc (under ASan).
 *
 * libfiu and jansson are looked up at run time (they are already loaded),
 * so building this needs neither's headers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef int external_cb_t(const char *name, int *failnum, void **failinfo, unsigned *flags);
typedef int init_fn(unsigned flags);
typedef int enable_external_fn(const char *name, int failnum, void *failinfo, unsigned flags,
                               external_cb_t *cb);
typedef void *malloc_fn(size_t size);
typedef void free_fn(void *ptr);
typedef void set_alloc_funcs_fn(malloc_fn *m, free_fn *f);

static _Atomic long calls, failed;
static _Atomic int armed;
static long nth;
static int always;
static const char *report_path, *control_path;

/* Called by libfiu for every call of the point, under its own locks. */
static int decide(const char *name, int *failnum, void **failinfo, unsigned *flags)
{
        (void) name;
        (void) failnum;
        (void) failinfo;
        (void) flags;
        if (!atomic_load(&armed))
                return 0;
        long n = atomic_fetch_add(&calls, 1) + 1;
        if (nth > 0 && (n == nth || (always && n > nth))) {
                atomic_fetch_add(&failed, 1);
                return 1;
        }
        return 0;
}

/* Raw system calls: the libc ones are wrapped by the preload library. */
static void write_report(void)
{
        char line[64];
        int n, fd;

        if (!report_path)
                return;
        n = snprintf(line, sizeof(line), "%ld %ld\n", atomic_load(&calls), atomic_load(&failed));
        fd = (int) syscall(SYS_openat, AT_FDCWD, report_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
                return;
        (void) syscall(SYS_write, fd, line, (size_t) n);
        (void) syscall(SYS_close, fd);
}

/* "N once|always" from the control file, parsed by hand: we are in a signal handler. */
static void read_control(void)
{
        char buf[64] = { 0 };
        long n = 0;
        int fd;

        if (!control_path)
                return;
        fd = (int) syscall(SYS_openat, AT_FDCWD, control_path, O_RDONLY, 0);
        if (fd < 0)
                return;
        long got = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
        (void) syscall(SYS_close, fd);
        if (got <= 0)
                return;
        char *p = buf;
        while (*p >= '0' && *p <= '9')
                n = n * 10 + (*p++ - '0');
        while (*p == ' ')
                p++;
        nth = n;
        always = strncmp(p, "always", 6) == 0;
}

static void report_at_exit(void)
{
        atomic_store(&armed, 0);
        write_report();
}

static void on_signal(int sig)
{
        if (sig == SIGUSR1) {
                read_control();
                atomic_store(&calls, 0);
                atomic_store(&failed, 0);
                atomic_store(&armed, 1);
        } else {
                atomic_store(&armed, 0);
                write_report();
        }
}

/* ISO C has no cast from dlsym()'s object pointer to a function pointer;
 * POSIX guarantees the representation is the same. */
static void *lookup(const char *name, void *fn, size_t size)
{
        void *sym = dlsym(RTLD_DEFAULT, name);

        memcpy(fn, &sym, size);
        return sym;
}

static int use_libfiu(const char *point, const char *err)
{
        init_fn *init;
        enable_external_fn *enable;

        if (!lookup("fiu_init", &init, sizeof(init)) ||
            !lookup("fiu_enable_external", &enable, sizeof(enable))) {
                fprintf(stderr, "fault-nth: libfiu is not loaded (use fiu-run -x)\n");
                return -1;
        }
        return init(0) < 0 ||
               enable(point, 1, (void *) (long) (err ? atoi(err) : 5), 0, decide) < 0 ? -1 : 0;
}

static void *jansson_malloc(size_t size)
{
        if (decide(NULL, NULL, NULL, NULL)) {
                errno = ENOMEM;
                return NULL;
        }
        return malloc(size);
}

static int use_jansson(void)
{
        set_alloc_funcs_fn *set;

        if (!lookup("json_set_alloc_funcs", &set, sizeof(set))) {
                fprintf(stderr, "fault-nth: jansson is not loaded\n");
                return -1;
        }
        set(jansson_malloc, free);
        return 0;
}

__attribute__((constructor(300))) static void fault_nth_init(void)
{
        const char *point = getenv("FAULT_NTH_POINT");
        const char *mode = getenv("FAULT_NTH_MODE");
        struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };

        if (!point)
                return;
        nth = atol(getenv("FAULT_NTH_N") ? getenv("FAULT_NTH_N") : "0");
        always = mode && strcmp(mode, "always") == 0;
        report_path = getenv("FAULT_NTH_REPORT");
        control_path = getenv("FAULT_NTH_CONTROL");
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
        sigaction(SIGUSR2, &sa, NULL);
        if (strcmp(point, "jansson") == 0 ? use_jansson() < 0
                                          : use_libfiu(point, getenv("FAULT_NTH_ERRNO")) < 0) {
                fprintf(stderr, "fault-nth: cannot enable %s\n", point);
                _exit(99);
        }
        if (getenv("FAULT_NTH_ARMED")) {
                atexit(report_at_exit);
                atomic_store(&armed, 1);
        }
}
