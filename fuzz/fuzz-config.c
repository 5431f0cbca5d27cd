/*
 * fuzz-config — the configuration parser: config_load() on arbitrary files.
 *
 * The input is the file. It is written to a memfd that config_load() opens
 * through /proc/self/fd, so each run costs no disk I/O and leaves nothing
 * behind.
 *
 * Checked besides memory safety: the result is 0, -EINVAL or -ENOMEM (no
 * other errno can come from a readable file); a refused file gets a message
 * "PATH:LINE: ..." naming a line, as the contract promises; an accepted
 * configuration obeys the rules the daemon relies on without re-checking
 * (URL paths, a signature scheme that can work, redirect templates that
 * expand), may replace itself on reload, and its allow_from list answers
 * address lookups.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <unistd.h>

#include "cashpay/config.h"
#include "cashpay/page.h"
#include "cashpay/verify.h"
#include "fuzz/fuzz.h"

static struct memfile file;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        memfile_open(&file, "fuzz-config");
        return 0;
}

/* "PATH:LINE: " with LINE a positive decimal number. */
FUZZ_UNTRACED static bool names_line(const char *err)
{
        size_t n = strlen(file.path);
        const char *p = err + n + 1;

        if (strncmp(err, file.path, n) != 0 || err[n] != ':' || *p < '1' || *p > '9')
                return false;
        while (*p >= '0' && *p <= '9')
                p++;
        return p[0] == ':' && p[1] == ' ';
}

static void check_template(const char *tmpl)
{
        char *url = NULL;

        if (!tmpl)
                return;
        FUZZ_CHECK(page_expand_url(tmpl, "chg_x", "ref", &url) == 0, "template \"%s\"", tmpl);
        free(url);
}

static void check_allow_from(const struct config *cfg)
{
        struct sockaddr_in v4 = { .sin_family = AF_INET };
        struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };
        struct sockaddr_in6 mapped = { .sin6_family = AF_INET6 };

        v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        v6.sin6_addr = in6addr_loopback;
        FUZZ_CHECK(inet_pton(AF_INET6, "::ffff:10.1.2.3", &mapped.sin6_addr) == 1, "inet_pton");
        (void)cidr_list_match(&cfg->webhook.allow_from, (const struct sockaddr *)&v4);
        (void)cidr_list_match(&cfg->webhook.allow_from, (const struct sockaddr *)&v6);
        (void)cidr_list_match(&cfg->http.trusted_proxies, (const struct sockaddr *)&mapped);
}

static void check_accepted(const struct config *cfg)
{
        char err[512];
        struct verify_params vp;

        FUZZ_CHECK(cfg->http.webhook_path && cfg->http.webhook_path[0] == '/', "webhook_path");
        FUZZ_CHECK(cfg->http.return_path && cfg->http.return_path[0] == '/', "return_path");
        FUZZ_CHECK(strcmp(cfg->http.webhook_path, cfg->http.return_path) != 0, "same paths");
        FUZZ_CHECK(cfg->http.listen.n <= CONFIG_LISTEN_MAX && cfg->admin.listen.n <= CONFIG_LISTEN_MAX,
                   "listen count");
        FUZZ_CHECK(cfg->webhook.verify != VERIFY_NONE || cfg->webhook.insecure_no_verify,
                   "verify = none without insecure_no_verify");
        FUZZ_CHECK(cfg->webhook.secret_file && cfg->webhook.secret_file[0] == '/', "secret_file");
        FUZZ_CHECK(!cfg->webhook.order_ref_field || cfg->webhook.order_ref_field[0],
                   "empty order_ref_field");
        FUZZ_CHECK(cfg->source_path && strcmp(cfg->source_path, file.path) == 0, "source_path");
        check_template(cfg->ret.success_url);
        check_template(cfg->ret.failure_url);
        verify_params_from_config(cfg, &vp);
        FUZZ_CHECK(vp.scheme == cfg->webhook.verify, "verify params");
        FUZZ_CHECK(config_reload_compatible(cfg, cfg, err, sizeof(err)), "reload onto itself: %s",
                   err);
        check_allow_from(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config *cfg = NULL;
        char err[512];

        memfile_write(&file, data, size);
        int r = config_load(file.path, &cfg, err, sizeof(err));

        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM, "config_load: %d (%s)", r, err);
        if (r == -EINVAL)
                FUZZ_CHECK(names_line(err), "message does not name a line: \"%s\"", err);
        if (r == 0)
                check_accepted(cfg);
        config_free(cfg);
        return 0;
}
