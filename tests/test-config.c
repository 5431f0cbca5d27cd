/*
 * Unit tests of config: defaults, the shipped example file, the contract's
 * example, a file setting every key, a bad value for every key (with the
 * line it is reported on), syntax errors, listen and CIDR lists, the rules
 * that span keys, the systemd credential default and reload compatibility.
 *
 * SOURCE_ROOT (set by the build) locates conf/ and tests/config/.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cashpay/config.h"
#include "tests/check.h"

#ifndef SOURCE_ROOT
#error "SOURCE_ROOT must be defined by the build"
#endif

static char tmpdir[96]; /* $TMPDIR/test-config-XXXXXX: short, for the messages checked */

/* Write @text to a file in the temporary directory; returns its path (static). */
static const char *write_conf(const char *text, size_t len)
{
        static char path[sizeof(tmpdir) + 32];
        FILE *f;

        snprintf(path, sizeof(path), "%s/test.conf", tmpdir);
        f = fopen(path, "w");
        if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
                perror(path);
                exit(2);
        }
        return path;
}

/* Load @text; the config (or NULL) in *ret, the message in @err. */
static int load_text(const char *text, struct config **ret, char *err, size_t err_len)
{
        const char *path = write_conf(text, strlen(text));

        *ret = NULL;
        return config_load(path, ret, err, err_len);
}

/* Expect @text to fail with a message "PATH:LINE: ...FRAGMENT...". */
static bool fails_with(const char *text, unsigned line, const char *fragment)
{
        struct config *cfg = NULL;
        char err[512], prefix[128];
        int r = load_text(text, &cfg, err, sizeof(err));

        snprintf(prefix, sizeof(prefix), "%s/test.conf:%u: ", tmpdir, line);
        if (r == -EINVAL && cfg == NULL && strncmp(err, prefix, strlen(prefix)) == 0 &&
            strstr(err, fragment))
                return true;
        fprintf(stderr, "  for:\n%s  got r=%d err='%s'\n  want line %u and '%s'\n",
                text, r, err, line, fragment);
        config_free(cfg);
        return false;
}

static bool loads(const char *text, struct config **ret)
{
        char err[512];
        int r = load_text(text, ret, err, sizeof(err));

        if (r != 0)
                fprintf(stderr, "  for:\n%s  got r=%d err='%s'\n", text, r, err);
        return r == 0;
}

static unsigned port_of(const struct listen_addr *a)
{
        if (a->addr.ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *)&a->addr)->sin_port);
        return ntohs(((const struct sockaddr_in6 *)&a->addr)->sin6_port);
}

/* Is field @k the same in @a and @b? Mirrors the types of the key table. */
static bool key_same(const struct config_key *k, const struct config *a, const struct config *b)
{
        const void *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;
        const struct listen_list *la = fa, *lb = fb;
        const char *sa, *sb;

        switch (k->type) {
        case CONFIG_UINT: return *(const unsigned *)fa == *(const unsigned *)fb;
        case CONFIG_SIZE: return *(const size_t *)fa == *(const size_t *)fb;
        case CONFIG_BOOL: return *(const bool *)fa == *(const bool *)fb;
        case CONFIG_ENUM: return *(const int *)fa == *(const int *)fb;
        case CONFIG_CIDRS: return cidr_list_equal(fa, fb);
        case CONFIG_LISTEN:
                if (la->n != lb->n)
                        return false;
                for (size_t i = 0; i < la->n; i++)
                        if (strcmp(la->items[i].text, lb->items[i].text) != 0)
                                return false;
                return true;
        default:
                sa = *(char *const *)fa;
                sb = *(char *const *)fb;
                return (!sa && !sb) || (sa && sb && strcmp(sa, sb) == 0);
        }
}

/* Number of keys that differ between @a and @b (each one is reported). */
static unsigned count_differences(const struct config *a, const struct config *b)
{
        size_t n;
        const struct config_key *keys = config_keys(&n);
        unsigned d = 0;

        for (size_t i = 0; i < n; i++) {
                if (!key_same(&keys[i], a, b)) {
                        fprintf(stderr, "  [%s] %s differs\n", keys[i].section, keys[i].name);
                        d++;
                }
        }
        return d;
}

static void test_defaults(void)
{
        struct config *cfg = NULL;

        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK(config_new_defaults(&cfg) == 0);
        if (!cfg)
                return;
        CHECK(cfg->source_path == NULL);
        CHECK(cfg->http.listen.n == 1);
        CHECK_STR(cfg->http.listen.items[0].text, "0.0.0.0:8080");
        CHECK(cfg->http.listen.items[0].addr.ss_family == AF_INET);
        CHECK(port_of(&cfg->http.listen.items[0]) == 8080);
        CHECK_STR(cfg->http.webhook_path, "/cashpay/webhook");
        CHECK_STR(cfg->http.return_path, "/cashpay/return");
        CHECK_STR(cfg->http.status_path, "/cashpay/status");
        CHECK(cfg->http.max_body == 65536);
        CHECK(cfg->http.threads == 0);
        CHECK(cfg->http.max_connections == 1024);
        CHECK(cfg->http.timeout == 10);
        CHECK(cfg->http.trusted_proxies.n == 0);
        CHECK(cfg->http.max_queue == 4096);
        CHECK(cfg->http.max_header == 8192);
        CHECK(cfg->admin.listen.n == 1);
        CHECK_STR(cfg->admin.listen.items[0].text, "127.0.0.1:9180");
        CHECK(port_of(&cfg->admin.listen.items[0]) == 9180);
        CHECK(cfg->webhook.verify == VERIFY_HMAC);
        CHECK_STR(cfg->webhook.secret_file, "/etc/cashpayd/webhook.secret");
        CHECK_STR(cfg->webhook.signature_header, "X-CashPay-Signature");
        CHECK(cfg->webhook.algorithm == HMAC_SHA256);
        CHECK(cfg->webhook.encoding == SIG_HEX);
        CHECK(cfg->webhook.timestamp_header == NULL);
        CHECK(cfg->webhook.tolerance == 300);
        CHECK(cfg->webhook.allow_from.n == 0);
        CHECK(cfg->webhook.order_ref_field == NULL);
        CHECK(cfg->webhook.keep_rejected_days == 30);
        CHECK(!cfg->webhook.insecure_no_verify);
        CHECK(cfg->webhook.rejected_body_max == 4096);
        CHECK(cfg->webhook.max_rejected_rows == 50000);
        CHECK_STR(cfg->database.path, "/var/lib/cashpayd/cashpay.db");
        CHECK(cfg->database.synchronous == DB_SYNC_FULL);
        CHECK(cfg->database.busy_timeout == 5000);
        CHECK(cfg->database.commit_timeout == 10000);
        CHECK(cfg->database.max_batch == 256);
        CHECK(cfg->database.wal_warn_bytes == 67108864);
        CHECK(cfg->database.writer_connections == 1);
        CHECK(cfg->ret.success_url == NULL);
        CHECK(cfg->ret.failure_url == NULL);
        CHECK(cfg->ret.refresh == 3);
        CHECK(cfg->ret.shop_name == NULL);
        CHECK(!cfg->ret.minor_units);
        CHECK(cfg->log.level == LOG_LEVEL_INFO);
        config_free(cfg);
        config_free(NULL);
}

/* Every row of the table is complete and its default is the documented one. */
static void test_table(void)
{
        size_t n, n_sections;
        const struct config_key *keys = config_keys(&n);
        const struct config_section *sections = config_sections(&n_sections);

        CHECK(n == 64);
        CHECK(n_sections == 8);
        for (size_t i = 0; i < n; i++) {
                bool known = false;

                CHECK(keys[i].doc && strlen(keys[i].doc) > 20);
                CHECK(keys[i].default_value != NULL);
                CHECK((keys[i].type == CONFIG_ENUM) == (keys[i].choices != NULL));
                CHECK(keys[i].offset < sizeof(struct config));
                for (size_t s = 0; s < n_sections; s++)
                        known |= strcmp(sections[s].name, keys[i].section) == 0;
                CHECK(known);
                /* Keys of one section stay together, in section order. */
                if (i > 0 && strcmp(keys[i - 1].section, keys[i].section) != 0)
                        for (size_t j = 0; j < i; j++)
                                CHECK(strcmp(keys[j].section, keys[i].section) != 0);
        }
        CHECK_STR(config_type_name(CONFIG_SIZE), "size");
}

/* Read a whole file into a malloc'ed string. */
static char *slurp(const char *path)
{
        FILE *f = fopen(path, "r");
        char *buf;
        long len;

        if (!f || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
                perror(path);
                exit(2);
        }
        buf = calloc(1, (size_t)len + 1);
        if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
                perror(path);
                exit(2);
        }
        fclose(f);
        return buf;
}

/* "#key = value" lines become "key = value": the defaults, written out. */
static void uncomment_keys(char *text)
{
        for (char *line = text; *line; ) {
                char *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);

                if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' && memchr(line, '=', len))
                        line[0] = ' ';
                line += len + (end ? 1 : 0);
        }
}

static void test_example_file(void)
{
        struct config *def = NULL, *cfg = NULL;
        char err[512];
        char *text;

        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK(config_new_defaults(&def) == 0);
        CHECK(config_load(SOURCE_ROOT "/conf/cashpayd.conf", &cfg, err, sizeof(err)) == 0);
        if (cfg) {
                CHECK_STR(cfg->source_path, SOURCE_ROOT "/conf/cashpayd.conf");
                CHECK(count_differences(def, cfg) == 0);
                config_free(cfg);
                cfg = NULL;
        }

        /* With every key uncommented it still loads, to exactly the defaults. */
        text = slurp(SOURCE_ROOT "/conf/cashpayd.conf");
        uncomment_keys(text);
        CHECK(strstr(text, "\n listen = 0.0.0.0:8080\n") != NULL);
        CHECK(strstr(text, "\n level = info\n") != NULL);
        CHECK(loads(text, &cfg));
        if (cfg)
                CHECK(count_differences(def, cfg) == 0);
        config_free(cfg);
        free(text);
        config_free(def);
}

static void test_contract_example(void)
{
        struct config *def = NULL, *cfg = NULL;
        char err[512];

        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK(config_new_defaults(&def) == 0);
        CHECK(config_load(SOURCE_ROOT "/tests/config/contract-example.conf", &cfg, err,
                          sizeof(err)) == 0);
        if (!cfg) {
                fprintf(stderr, "  %s\n", err);
        } else {
                CHECK(count_differences(def, cfg) == 0);
                CHECK(cfg->http.trusted_proxies.n == 0);
                CHECK(cfg->webhook.timestamp_header == NULL);
        }
        config_free(cfg);
        config_free(def);
}

static void test_full_file(void)
{
        struct config *cfg = NULL;
        char err[512];

        CHECK(config_load(SOURCE_ROOT "/tests/config/full.conf", &cfg, err, sizeof(err)) == 0);
        if (!cfg) {
                fprintf(stderr, "  %s\n", err);
                return;
        }
        CHECK(cfg->http.listen.n == 2);
        CHECK_STR(cfg->http.listen.items[0].text, "127.0.0.1:18080");
        CHECK_STR(cfg->http.listen.items[1].text, "[::1]:18080");
        CHECK(cfg->http.listen.items[1].addr.ss_family == AF_INET6);
        CHECK(cfg->http.listen.items[1].addr_len == sizeof(struct sockaddr_in6));
        CHECK(port_of(&cfg->http.listen.items[1]) == 18080);
        CHECK_STR(cfg->http.webhook_path, "/hooks/cashpay");
        CHECK_STR(cfg->http.return_path, "/shop/return");
        CHECK_STR(cfg->http.status_path, "/api/payment-status");
        CHECK(cfg->http.max_body == 1048576);
        CHECK(cfg->http.threads == 4);
        CHECK(cfg->http.max_connections == 200);
        CHECK(cfg->http.timeout == 30);
        CHECK(cfg->http.trusted_proxies.n == 2);
        CHECK(cfg->http.max_queue == 100);
        CHECK(cfg->http.max_header == 16384);
        CHECK(cfg->http.max_connections_per_ip == 8);
        CHECK(cfg->http.request_timeout == 45);
        CHECK(cfg->admin.listen.n == 1);
        CHECK(port_of(&cfg->admin.listen.items[0]) == 19180);
        CHECK(cfg->admin.max_connections == 4);
        CHECK(cfg->admin.request_timeout == 2);
        CHECK(cfg->webhook.verify == VERIFY_STANDARD_WEBHOOKS);
        CHECK_STR(cfg->webhook.secret_file, "/run/secrets/cashpay");
        CHECK_STR(cfg->webhook.signature_header, "X-Signature");
        CHECK(cfg->webhook.algorithm == HMAC_SHA512);
        CHECK(cfg->webhook.encoding == SIG_BASE64);
        CHECK(cfg->webhook.timestamp_header == NULL);
        CHECK(cfg->webhook.tolerance == 60);
        CHECK(cfg->webhook.allow_from.n == 2);
        CHECK(cfg->webhook.allow_from.items[1].family == AF_INET6);
        CHECK_STR(cfg->webhook.order_ref_field, "metadata.order_id");
        CHECK(cfg->webhook.keep_rejected_days == 7);
        CHECK(cfg->webhook.insecure_no_verify);
        CHECK(cfg->webhook.rejected_body_max == 0);
        CHECK(cfg->webhook.max_rejected_rows == 0);
        CHECK_STR(cfg->database.path, "/srv/cashpay/orders.db");
        CHECK(cfg->database.synchronous == DB_SYNC_NORMAL);
        CHECK(cfg->database.busy_timeout == 250);
        CHECK(cfg->database.commit_timeout == 2000);
        CHECK(cfg->database.max_batch == 32);
        CHECK(cfg->database.wal_warn_bytes == 128u * 1024 * 1024);
        CHECK_STR(cfg->ret.success_url,
                  "https://shop.example/orders/{order_ref}/thanks?charge={charge_id}#done");
        CHECK_STR(cfg->ret.failure_url, "/checkout/failed;retry=1");
        CHECK(cfg->ret.refresh == 5);
        CHECK_STR(cfg->ret.shop_name, "Café Aden");
        CHECK(cfg->ret.minor_units);
        CHECK(cfg->log.level == LOG_LEVEL_DEBUG);
        config_free(cfg);
}

struct bad_value {
        const char *section, *key, *value, *fragment;
};

/* At least one bad value per key; each is written on line 3 of its file. */
static const struct bad_value bad_values[] = {
        { "http", "listen", "", "a value is required" },
        { "http", "listen", "localhost:8080", "not a numeric IPv4 address" },
        { "http", "listen", "127.0.0.1:0", "port must be a number from 1 to 65535" },
        { "http", "listen", "127.0.0.1:65536", "port must be" },
        { "http", "listen", "127.0.0.1:http", "port must be" },
        { "http", "listen", "127.0.0.1", "expected host:port" },
        { "http", "listen", "::1:8080", "IPv6 addresses need brackets" },
        { "http", "listen", "[::1]8080", "expected [IPv6 address]:port" },
        { "http", "listen", "[127.0.0.1]:80", "not a numeric IPv6 address" },
        { "http", "listen", "127.1:80", "not a numeric IPv4 address" },
        { "http", "listen", "127.0.0.1:80,", "empty item" },
        { "http", "listen", "127.0.0.1:80,127.0.0.1:80", "overlaps" },
        { "http", "listen", "0.0.0.0:80,127.0.0.1:80", "overlaps" },
        { "http", "listen", ":8080", "not a numeric IPv4 address" },
        { "http", "webhook_path", "cashpay/webhook", "must start with '/'" },
        { "http", "webhook_path", "", "a value is required" },
        { "http", "return_path", "/cashpay/return/", "must not end with '/'" },
        { "http", "return_path", "/cashpay//return", "empty, '.' or '..'" },
        { "http", "return_path", "/cashpay/../return", "empty, '.' or '..'" },
        { "http", "status_path", "/cashpay/status?x", "may only hold" },
        { "http", "status_path", "/cash pay", "may only hold" },
        { "http", "max_body", "0", "expected a size from 1 to 16777216 bytes" },
        { "http", "max_body", "16777217", "expected a size from 1" },
        { "http", "max_body", "64KB", "expected a size" },
        { "http", "max_body", "-1", "expected a size" },
        { "http", "max_body", "1G", "expected a size" },
        { "http", "max_body", "99999999999999999999999", "expected a size" },
        { "http", "threads", "257", "expected an integer from 0 to 256" },
        { "http", "threads", "four", "expected an integer" },
        { "http", "max_connections", "0", "expected an integer from 1 to 65536" },
        { "http", "timeout", "0", "expected an integer from 1 to 3600 seconds" },
        { "http", "timeout", "10s", "expected an integer" },
        { "http", "timeout", "", "a value is required" },
        { "http", "trusted_proxies", "10.0.0.1/8", "'10.0.0.1/8' is not a CIDR range" },
        { "http", "trusted_proxies", "10.0.0.0/8,,::1", "empty item" },
        { "http", "max_queue", "0", "expected an integer from 1 to 1048576" },
        { "http", "max_header", "1023", "expected a size from 1024 to 1048576 bytes" },
        { "http", "max_connections_per_ip", "65537", "expected an integer from 0 to 65536" },
        { "http", "request_timeout", "0", "expected an integer from 1 to 3600 seconds" },
        { "admin", "listen", "127.0.0.1:99999", "port must be" },
        { "admin", "listen", "0.0.0.0:8080", "overlaps [http] listen '0.0.0.0:8080'" },
        { "admin", "max_connections", "0", "expected an integer from 1 to 4096" },
        { "admin", "request_timeout", "0", "expected an integer from 1 to 3600 seconds" },
        { "webhook", "verify", "hmac-sha256", "expected one of hmac, standard-webhooks, none" },
        { "webhook", "verify", "none", "verify = none requires insecure_no_verify = yes" },
        { "webhook", "confirm", "yes", "expected one of auto, api, none" },
        { "webhook", "secret_file", "webhook.secret", "must be an absolute path" },
        { "http", "tls_cert", "fullchain.pem", "must be an absolute path" },
        { "http", "tls_key", "privkey.pem", "must be an absolute path" },
        { "webhook", "signature_header", "X CashPay", "must be an HTTP header name" },
        { "webhook", "signature_header", "X-Sig:", "must be an HTTP header name" },
        { "webhook", "signature_header", "", "a value is required" },
        { "webhook", "algorithm", "md5", "expected one of sha256, sha512" },
        { "webhook", "encoding", "base32", "expected one of hex, base64" },
        { "webhook", "timestamp_header", "X-Time(stamp)", "must be an HTTP header name" },
        { "webhook", "tolerance", "0", "expected an integer from 1 to 86400 seconds" },
        { "webhook", "allow_from", "192.0.2.0/24 2001:db8::/32", "is not a CIDR range" },
        { "webhook", "allow_from", "10.0.0.0/33", "'10.0.0.0/33' is not a CIDR range" },
        { "webhook", "order_ref_field", "metadata..order_id", "joined by dots" },
        { "webhook", "order_ref_field", ".order_id", "joined by dots" },
        { "webhook", "order_ref_field", "order_id.", "joined by dots" },
        { "webhook", "order_ref_field", "meta/order", "joined by dots" },
        { "webhook", "keep_rejected_days", "0", "expected an integer from 1 to 3650 days" },
        { "webhook", "insecure_no_verify", "maybe", "expected yes or no" },
        { "webhook", "insecure_no_verify", "", "a value is required" },
        { "webhook", "rejected_body_max", "2M", "expected a size from 0 to 1048576 bytes" },
        { "webhook", "max_rejected_rows", "100000001", "expected an integer from 0 to "
          "100000000" },
        { "database", "path", "cashpay.db", "must be an absolute path" },
        { "database", "path", "", "a value is required" },
        { "database", "synchronous", "fsync", "expected one of off, normal, full, extra" },
        { "database", "backend", "mysql", "expected one of sqlite, postgresql" },
        { "database", "url", "host=db\x01", "UTF-8 without control characters" },
        { "database", "password_file", "db-password", "must be an absolute path" },
        { "database", "busy_timeout", "600001", "expected an integer from 0 to 600000 "
          "milliseconds" },
        { "database", "commit_timeout", "99", "expected an integer from 100 to 600000" },
        { "database", "max_batch", "0", "expected an integer from 1 to 65536" },
        { "database", "writer_connections", "9", "expected an integer from 1 to 8" },
        { "database", "writer_connections", "0", "expected an integer from 1 to 8" },
        { "database", "wal_warn_bytes", "1K", "expected a size from 1048576" },
        { "return", "success_url", "https://shop.example/{id}", "only {charge_id} and "
          "{order_ref}" },
        { "return", "success_url", "https://shop.example/{charge_id", "only {charge_id}" },
        { "return", "success_url", "https://shop.example/}", "only {charge_id}" },
        { "return", "success_url", "ftp://shop.example/", "absolute http(s) URL" },
        { "return", "success_url", "//evil.example/", "absolute http(s) URL" },
        { "return", "success_url", "shop.example/ok", "absolute http(s) URL" },
        { "return", "success_url", "https:///path", "absolute http(s) URL" },
        { "return", "failure_url", "/failed?x=a b", "must not hold blanks" },
        { "return", "failure_url", "javascript:alert(1)", "absolute http(s) URL" },
        { "return", "refresh", "0", "expected an integer from 1 to 3600 seconds" },
        { "return", "shop_name", "Bad\x01Name", "UTF-8 without control characters" },
        { "return", "shop_name", "Caf\xe9", "UTF-8 without control characters" },
        { "return", "shop_name", "\xed\xa0\x80 surrogate", "UTF-8 without control" },
        { "return", "minor_units", "2", "expected yes or no" },
        { "log", "level", "error", "expected one of debug, info, notice, warning, err" },
        { "log", "level", "7", "expected one of" },
        { "cashpay", "api_url", "api.cashpay.example", "must be an absolute http or https URL" },
        { "cashpay", "api_url", "/v1", "must be an absolute http or https URL" },
        { "cashpay", "api_url", "https://api.example/v1/", "must not end with '/'" },
        { "cashpay", "api_url", "https://api.example/v1?x=1", "a query or a fragment" },
        { "cashpay", "api_url", "https://api.example/v1#top", "a query or a fragment" },
        { "cashpay", "api_url", "https://user:pw@api.example/v1", "must not hold credentials" },
        { "cashpay", "api_url", "https://api.example/{charge_id}", "braces" },
        { "cashpay", "public_url", "https://shop .example", "must not hold blanks" },
        { "cashpay", "token_file", "token", "must be an absolute path" },
        { "cashpay", "token_url", "ftp://auth.example/token", "absolute http or https URL" },
        { "cashpay", "client_id", "id\x01", "UTF-8 without control characters" },
        { "cashpay", "client_secret_file", "secret", "must be an absolute path" },
        { "cashpay", "token_lifetime", "59", "expected an integer from 60 to 604800 seconds" },
        { "cashpay", "refresh_margin", "86401", "expected an integer from 0 to 86400" },
        { "cashpay", "request_timeout", "0", "expected an integer from 1 to 300 seconds" },
        { "cashpay", "max_inflight", "0", "expected an integer from 1 to 4096" },
        { "cashpay", "max_response", "1", "expected a size from 1024 to 16777216 bytes" },
        { "cashpay", "reconcile_after", "0", "expected an integer from 1 to 2592000" },
        { "cashpay", "reconcile_for", "59", "expected an integer from 60 to 31536000" },
        { "checkout", "listen", "localhost:9181", "" },
        { "checkout", "token_file", "relative/token", "must be an absolute path" },
        { "checkout", "max_body", "255", "expected a size from 256 to 1048576 bytes" },
};

static void test_bad_values(void)
{
        size_t n;
        const struct config_key *keys = config_keys(&n);

        for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
                const struct bad_value *b = &bad_values[i];
                char text[512];

                snprintf(text, sizeof(text), "[%s]\n\n%s = %s\n", b->section, b->key, b->value);
                CHECK(fails_with(text, 3, b->fragment));
        }
        /* Coverage: no key of the table goes without a bad value. */
        for (size_t k = 0; k < n; k++) {
                bool covered = false;

                for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
                        covered |= strcmp(bad_values[i].section, keys[k].section) == 0 &&
                                   strcmp(bad_values[i].key, keys[k].name) == 0;
                if (!covered)
                        fprintf(stderr, "  no bad value for [%s] %s\n", keys[k].section,
                                keys[k].name);
                CHECK(covered);
        }
}

/* The message quotes the value and the key, so the operator sees what to fix. */
static void test_bad_value_message(void)
{
        struct config *cfg = NULL;
        char err[512], want[256];

        CHECK(load_text("[http]\nmax_body = lots\n", &cfg, err, sizeof(err)) == -EINVAL);
        snprintf(want, sizeof(want), "%s/test.conf:2: [http] max_body = 'lots': expected a "
                 "size from 1 to 16777216 bytes (suffixes K, M, G: powers of 1024)", tmpdir);
        CHECK_STR(err, want);
        CHECK(cfg == NULL);
        /* Control bytes are not echoed to the terminal. */
        CHECK(load_text("[log]\nlevel = \x1b[31m\n", &cfg, err, sizeof(err)) == -EINVAL);
        CHECK(strchr(err, '\x1b') == NULL);
        CHECK(strstr(err, "'?[31m'") != NULL);
}

static void test_structure_errors(void)
{
        CHECK(fails_with("[http]\n[payments]\nx = 1\n", 2, "unknown section [payments]"));
        CHECK(fails_with("[http]\nlisten = 127.0.0.1:80\nlisen = 127.0.0.1:81\n", 3,
                         "unknown key 'lisen' in [http]"));
        CHECK(fails_with("[admin]\nmax_body = 5\n", 2, "unknown key 'max_body' in [admin]"));
        CHECK(fails_with("[http]\nLISTEN = 127.0.0.1:80\n", 2, "unknown key 'LISTEN'"));
        CHECK(fails_with("listen = 127.0.0.1:80\n", 1, "key 'listen' before any [section]"));
        CHECK(fails_with("[http]\nthreads = 1\n\n[log]\nlevel = info\n[http]\nthreads = 2\n", 7,
                         "duplicate key 'threads' in [http] (first set on line 2)"));
        CHECK(fails_with("[http]\nthreads\n", 2, "expected 'key = value'"));
        CHECK(fails_with("[http\nthreads = 1\n", 1, "expected '[section]'"));
        CHECK(fails_with("# comment\n\n[http]\n  ; note\nthreads = 1\n= 5\n", 6,
                         "unknown key ''"));
        CHECK(fails_with("[http]\nthreads = 1\n[]\n", 3, "unknown section []"));
        CHECK(fails_with("[Http]\n", 1, "unknown section [Http]"));
}

static void test_line_handling(void)
{
        struct config *cfg = NULL;
        char text[600];

        /* Indentation, CRLF, a BOM, comments of both kinds, blank sections. */
        CHECK(fails_with("\xef\xbb\xbf# top\r\n[http]\r\n   threads = 3   \r\n"
                         "\t; note\r\n[admin]\r\n[ log ]  ; spaced\r\nlevel=notice;x\r\n", 7,
                         "level = 'notice;x': expected one of"));
        CHECK(loads("\xef\xbb\xbf# top\r\n[http]\r\n   threads = 3   \r\n"
                    "\t; note\r\n[admin]\r\n[ log ]  ; spaced\r\nlevel=notice ;x\r\n", &cfg));
        if (cfg) {
                CHECK(cfg->http.threads == 3);
                CHECK(cfg->log.level == LOG_LEVEL_NOTICE);
        }
        config_free(cfg);

        /* An indented line after a key is a key of its own, not a continuation. */
        CHECK(loads("[http]\nthreads = 2\n    timeout = 7\n", &cfg));
        if (cfg)
                CHECK(cfg->http.threads == 2 && cfg->http.timeout == 7);
        config_free(cfg);
        CHECK(fails_with("[return]\nshop_name = Shop\n   more words\n", 3, "expected 'key"));

        /* ';' after a blank, or right after '=', starts a comment; inside a value it does not. */
        CHECK(loads("[return]\nshop_name = A;B ; comment\nsuccess_url =; nothing\n"
                    "failure_url = /f;x=1#frag\n", &cfg));
        if (cfg) {
                CHECK_STR(cfg->ret.shop_name, "A;B");
                CHECK(cfg->ret.success_url == NULL);
                CHECK_STR(cfg->ret.failure_url, "/f;x=1#frag");
        }
        config_free(cfg);
        CHECK(fails_with("[log]\nlevel = info # comment\n", 2, "expected one of"));

        /* Long comments are fine; a long value is not. */
        memset(text, 0, sizeof(text));
        snprintf(text, sizeof(text), "[return]\nshop_name = Shop ; %0300d\n", 0);
        CHECK(loads(text, &cfg));
        config_free(cfg);
        snprintf(text, sizeof(text), "[return]\nsuccess_url = /%0200d\n", 0);
        CHECK(fails_with(text, 2, "line too long"));
        snprintf(text, sizeof(text), "[return]\nsuccess_url = /%0180d\n", 0);
        CHECK(fails_with(text, 2, "longer than 180 bytes"));
        snprintf(text, sizeof(text), "[return]\nsuccess_url = /%0179d\n", 0);
        CHECK(loads(text, &cfg));
        config_free(cfg);
}

static void test_raw_limits(void)
{
        struct config *cfg = NULL;
        char err[512], *big;
        const char *path;
        int r;

        path = write_conf("[http]\nthreads = 1\0\n", 21);
        CHECK(config_load(path, &cfg, err, sizeof(err)) == -EINVAL);
        CHECK(strstr(err, "test.conf:2: NUL byte") != NULL);

        big = malloc(5000);
        if (!big)
                exit(2);
        memset(big, ';', 5000);
        memcpy(big, "[http]\n", 7);
        path = write_conf(big, 5000);
        CHECK(config_load(path, &cfg, err, sizeof(err)) == -EINVAL);
        CHECK(strstr(err, "test.conf:2: line longer than 4096 bytes") != NULL);
        free(big);

        r = config_load("/nonexistent/cashpayd.conf", &cfg, err, sizeof(err));
        CHECK(r == -ENOENT);
        CHECK_STR(err, "/nonexistent/cashpayd.conf: No such file or directory");
        CHECK(config_load(tmpdir, &cfg, err, sizeof(err)) < 0);
        CHECK(cfg == NULL);
        /* A NULL message buffer is allowed. */
        CHECK(config_load("/nonexistent/cashpayd.conf", &cfg, NULL, 0) == -ENOENT);
        /* An empty file is all defaults. */
        CHECK(loads("", &cfg));
        config_free(cfg);
}

static void test_values(void)
{
        struct config *cfg = NULL;

        CHECK(loads("[http]\nmax_body = 64K\nmax_header = 1m\n[webhook]\n"
                    "insecure_no_verify = TRUE\nverify = None\nalgorithm = SHA512\n"
                    "[database]\nwal_warn_bytes = 1G\nbusy_timeout = 0\n"
                    "[return]\nminor_units = 1\n", &cfg));
        if (cfg) {
                CHECK(cfg->http.max_body == 65536);
                CHECK(cfg->http.max_header == 1048576);
                CHECK(cfg->webhook.insecure_no_verify);
                CHECK(cfg->webhook.verify == VERIFY_NONE);
                CHECK(cfg->webhook.algorithm == HMAC_SHA512);
                CHECK(cfg->database.wal_warn_bytes == 1073741824);
                CHECK(cfg->database.busy_timeout == 0);
                CHECK(cfg->ret.minor_units);
        }
        config_free(cfg);
        CHECK(loads("[return]\nminor_units = off\n[log]\nlevel = err\n", &cfg));
        if (cfg)
                CHECK(!cfg->ret.minor_units && cfg->log.level == LOG_LEVEL_ERR);
        config_free(cfg);
        CHECK(loads("[webhook]\ninsecure_no_verify = false\n[log]\nlevel = warning\n", &cfg));
        if (cfg)
                CHECK(!cfg->webhook.insecure_no_verify && cfg->log.level == LOG_LEVEL_WARNING);
        config_free(cfg);
        CHECK(loads("[http]\nmax_body = 16M\n[database]\nsynchronous = extra\n", &cfg));
        if (cfg)
                CHECK(cfg->http.max_body == 16777216 && cfg->database.synchronous == DB_SYNC_EXTRA);
        config_free(cfg);
}

static void test_listen(void)
{
        struct config *cfg = NULL;
        const struct sockaddr_in6 *in6;

        CHECK(loads("[http]\nlisten = 127.0.0.1:8081 , [::1]:8082,[::]:8083, 0.0.0.0:8084\n"
                    "[admin]\nlisten =\n", &cfg));
        if (!cfg)
                return;
        CHECK(cfg->http.listen.n == 4);
        CHECK(cfg->admin.listen.n == 0 && cfg->admin.listen.items == NULL);
        CHECK(cfg->http.listen.items[0].addr.ss_family == AF_INET);
        CHECK(cfg->http.listen.items[0].addr_len == sizeof(struct sockaddr_in));
        CHECK(((struct sockaddr_in *)&cfg->http.listen.items[0].addr)->sin_addr.s_addr ==
              htonl(INADDR_LOOPBACK));
        CHECK(port_of(&cfg->http.listen.items[0]) == 8081);
        in6 = (const struct sockaddr_in6 *)&cfg->http.listen.items[1].addr;
        CHECK(in6->sin6_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr));
        CHECK(port_of(&cfg->http.listen.items[1]) == 8082);
        CHECK_STR(cfg->http.listen.items[1].text, "[::1]:8082");
        in6 = (const struct sockaddr_in6 *)&cfg->http.listen.items[2].addr;
        CHECK(IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr));
        CHECK_STR(cfg->http.listen.items[3].text, "0.0.0.0:8084");
        config_free(cfg);

        /* The admin listener may share an address if the port differs. */
        CHECK(loads("[http]\nlisten = 127.0.0.1:8080\n[admin]\nlisten = 127.0.0.1:8081\n", &cfg));
        config_free(cfg);
        /* A list that is too long. */
        CHECK(fails_with("[http]\nlisten = [::1]:1,[::1]:2,[::1]:3,[::1]:4,[::1]:5,[::1]:6,"
                         "[::1]:7,[::1]:8,[::1]:9,[::1]:10,[::1]:11,[::1]:12,[::1]:13,"
                         "[::1]:14,[::1]:15,[::1]:16,[::1]:17\n", 2, "more than 16"));
        CHECK(loads("[http]\nlisten = 127.0.0.1:1,127.0.0.2:1,127.0.0.3:1,127.0.0.4:1,"
                    "127.0.0.5:1,127.0.0.6:1,127.0.0.7:1,127.0.0.8:1,127.0.0.9:1,"
                    "127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5,127.0.0.1:6,"
                    "127.0.0.1:7,127.0.0.1:8\n", &cfg));
        if (cfg)
                CHECK(cfg->http.listen.n == 16);
        config_free(cfg);
        /* Ports with leading zeros or signs are refused. */
        CHECK(fails_with("[http]\nlisten = 127.0.0.1:080\n", 2, "port must be"));
        CHECK(fails_with("[http]\nlisten = 127.0.0.1:+80\n", 2, "port must be"));
}

static void test_cidrs(void)
{
        struct config *cfg = NULL;

        CHECK(loads("[http]\ntrusted_proxies = 10.0.0.0/8, fd00::/8\n"
                    "[webhook]\nallow_from = 198.51.100.7 ,2001:db8::1/128\n", &cfg));
        if (cfg) {
                CHECK(cfg->http.trusted_proxies.n == 2);
                CHECK(cfg->http.trusted_proxies.items[0].prefix == 8);
                CHECK(cfg->http.trusted_proxies.items[1].family == AF_INET6);
                CHECK(cfg->webhook.allow_from.n == 2);
                CHECK(cfg->webhook.allow_from.items[0].prefix == 32);
                CHECK(cfg->webhook.allow_from.items[1].prefix == 128);
        }
        config_free(cfg);
}

static void test_rules(void)
{
        struct config *cfg = NULL;

        /* Reported on the later of the lines involved. */
        CHECK(fails_with("[webhook]\ninsecure_no_verify = no\n\nverify = none\n", 4,
                         "verify = none requires insecure_no_verify = yes"));
        CHECK(fails_with("[webhook]\nverify = none\n\ninsecure_no_verify = off\n", 4,
                         "requires insecure_no_verify"));
        CHECK(loads("[webhook]\nverify = none\ninsecure_no_verify = yes\n", &cfg));
        if (cfg)
                CHECK(cfg->webhook.verify == VERIFY_NONE);
        config_free(cfg);
        CHECK(fails_with("[webhook]\ntimestamp_header = X-CashPay-Timestamp\n"
                         "verify = standard-webhooks\n", 3,
                         "timestamp_header cannot be used with verify = standard-webhooks"));
        CHECK(loads("[webhook]\nverify = standard-webhooks\ntimestamp_header =\n", &cfg));
        config_free(cfg);
        CHECK(loads("[webhook]\ntimestamp_header = X-CashPay-Timestamp\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->webhook.timestamp_header, "X-CashPay-Timestamp");
        config_free(cfg);

        CHECK(fails_with("[http]\nreturn_path = /cashpay/webhook\n", 2,
                         "webhook_path and return_path must differ"));
        CHECK(fails_with("[http]\nstatus_path = /cashpay/return\n", 2,
                         "return_path must not be status_path or lie below it"));
        CHECK(fails_with("[http]\nstatus_path = /cashpay\n", 2,
                         "webhook_path must not be status_path or lie below it"));
        CHECK(fails_with("[http]\nstatus_path = /\n", 2, "must not be status_path"));
        CHECK(loads("[http]\nstatus_path = /cashpay/stat\nwebhook_path = /cashpay/status\n"
                    "return_path = /\n", &cfg));
        config_free(cfg);
        CHECK(fails_with("[http]\nlisten = [::]:8080\n[admin]\nlisten = [::1]:8080\n", 4,
                         "overlaps [http] listen '[::]:8080'"));
}

/* backend = postgresql: a server to talk to; the API features with it. */
static void test_rules_database(void)
{
        struct config *cfg = NULL;

        CHECK(fails_with("[database]\n\nbackend = postgresql\n", 3,
                         "backend = postgresql needs url"));
        CHECK(fails_with("[database]\nurl = host=db1\n", 2, "url is for backend = postgresql"));
        CHECK(loads("[cashpay]\napi_url = http://127.0.0.1:1/v1\ntoken_file = /run/t\n"
                    "public_url = https://shop.example\n"
                    "[database]\nbackend = postgresql\nurl = host=db1\n", &cfg));
        if (cfg) {
                CHECK(cfg->database.backend == DB_BACKEND_POSTGRESQL);
                CHECK_STR(cfg->cashpay.api_url, "http://127.0.0.1:1/v1");
        }
        config_free(cfg);
        cfg = NULL;
        CHECK(loads("[database]\nbackend = postgresql\n"
                    "url = host=db1,db2 dbname=cashpay target_session_attrs=read-write\n"
                    "password_file = /run/db-password\n", &cfg));
        if (cfg) {
                CHECK(cfg->database.backend == DB_BACKEND_POSTGRESQL);
                CHECK_STR(cfg->database.url, "host=db1,db2 dbname=cashpay "
                          "target_session_attrs=read-write");
                CHECK_STR(cfg->database.password_file, "/run/db-password");
                CHECK(cfg->database.writer_connections == 1); /* postgresql's too */
        }
        config_free(cfg);
        CHECK(loads("", &cfg));
        if (cfg)
                CHECK(cfg->database.backend == DB_BACKEND_SQLITE && !cfg->database.url);
        config_free(cfg);
}

/* Several writer connections only on PostgreSQL: SQLite has one writer. */
static void test_rules_writer_connections(void)
{
        static const struct {
                const char *text;
                unsigned lanes;
        } accepted[] = {
                { "[database]\nwriter_connections = 1\n", 1 },
                { "[database]\nbackend = postgresql\nurl = host=db1\nwriter_connections = 8\n", 8 },
                { "[database]\nbackend = postgresql\nurl = host=db1\nwriter_connections = 1\n", 1 },
        };

        CHECK(fails_with("[database]\n\nwriter_connections = 2\n", 3,
                         "[database] writer_connections = 2 needs backend = postgresql: "
                         "SQLite has one writer"));
        for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
                struct config *cfg = NULL;

                CHECK(loads(accepted[i].text, &cfg));
                if (cfg)
                        CHECK(cfg->database.writer_connections == accepted[i].lanes);
                config_free(cfg);
        }
}

#define API "[cashpay]\napi_url = http://127.0.0.1:1/v1\npublic_url = https://shop.example\n"

/* The API half: one way to a token, what confirm = api allows and needs. */
static void test_rules_cashpay(void)
{
        struct config *cfg = NULL;

        /* no API: confirm auto means none, and the API keys are not looked at */
        CHECK(loads("[cashpay]\ntoken_file = /run/t\ntoken_url = http://127.0.0.1:1/t\n", &cfg));
        if (cfg)
                CHECK(!config_confirm_api(cfg));
        config_free(cfg);
        CHECK(fails_with("[webhook]\n\nconfirm = api\n", 3,
                         "confirm = api needs [cashpay] api_url"));
        CHECK(fails_with(API, 2, "api_url needs token_file or token_url"));
        CHECK(fails_with(API "token_file = /run/t\ntoken_url = http://127.0.0.1:1/t\n", 5,
                         "token_file and token_url exclude each other"));
        CHECK(fails_with(API "token_url = http://127.0.0.1:1/t\n", 4,
                         "token_url needs client_id"));
        CHECK(fails_with(API "token_file = /run/t\ntoken_lifetime = 300\n"
                         "refresh_margin = 300\n", 6,
                         "refresh_margin must be less than token_lifetime"));
        CHECK(fails_with(API "token_file = /run/t\nreconcile_after = 600\n"
                         "reconcile_for = 600\n", 6,
                         "reconcile_after must be less than reconcile_for"));
        CHECK(fails_with("[cashpay]\napi_url = http://127.0.0.1:1/v1\ntoken_file = /run/t\n", 2,
                         "need [cashpay] public_url"));
        CHECK(loads("[cashpay]\napi_url = http://127.0.0.1:1/v1\ntoken_file = /run/t\n"
                    "[checkout]\nlisten =\n", &cfg));
        config_free(cfg);
        CHECK(fails_with(API "token_file = /run/t\n[checkout]\nlisten = 127.0.0.1:9180\n", 6,
                         "[checkout] listen '127.0.0.1:9180' overlaps [admin] listen"));
        CHECK(fails_with(API "token_file = /run/t\n[checkout]\nlisten = 0.0.0.0:8080\n", 6,
                         "[checkout] listen '0.0.0.0:8080' overlaps [http] listen"));

        /* with the API, auto confirms, and verify = none needs no insecure flag */
        CHECK(loads(API "token_url = http://127.0.0.1:1/t\nclient_id = shop\n"
                    "[webhook]\nverify = none\n", &cfg));
        if (cfg) {
                CHECK(config_confirm_api(cfg));
                CHECK_STR(cfg->cashpay.api_url, "http://127.0.0.1:1/v1");
                CHECK(cfg->cashpay.token_lifetime == 3300 && cfg->cashpay.refresh_margin == 300);
                CHECK(cfg->cashpay.max_inflight == 256 && cfg->cashpay.request_timeout == 10);
                CHECK(cfg->cashpay.reconcile_after == 300 && cfg->cashpay.reconcile_for == 259200);
                CHECK(cfg->checkout.listen.n == 1 && cfg->checkout.token_file == NULL);
        }
        config_free(cfg);
        CHECK(fails_with(API "token_file = /run/t\n[webhook]\nconfirm = none\nverify = none\n", 7,
                         "requires insecure_no_verify = yes or confirm = api"));
        CHECK(loads(API "token_file = /run/t\n[webhook]\nconfirm = none\n", &cfg));
        if (cfg)
                CHECK(!config_confirm_api(cfg));
        config_free(cfg);
}

/* Both TLS files or neither; the credentials only when tls-cert exists. */
static void test_tls(void)
{
        struct config *cfg = NULL;
        char dir[sizeof(tmpdir) + 16], file[sizeof(dir) + 16];

        CHECK(fails_with("[http]\ntls_cert = /etc/c.pem\n", 2,
                         "tls_cert and tls_key are set together or not at all"));
        CHECK(fails_with("[http]\n\ntls_key = /etc/k.pem\n", 3,
                         "tls_cert and tls_key are set together or not at all"));
        CHECK(loads("[http]\ntls_cert = /etc/c.pem\ntls_key = /etc/k.pem\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->http.tls_cert, "/etc/c.pem");
        config_free(cfg);

        snprintf(dir, sizeof(dir), "%s/creds", tmpdir);
        CHECK(mkdir(dir, 0700) == 0);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg)
                CHECK(cfg->http.tls_cert == NULL && cfg->http.tls_key == NULL);
        config_free(cfg);
        snprintf(file, sizeof(file), "%s/tls-cert", dir);
        FILE *f = fopen(file, "w");
        CHECK(f != NULL);
        if (f)
                fclose(f);
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg) {
                CHECK(cfg->http.tls_cert && strcmp(cfg->http.tls_cert, file) == 0);
                CHECK(cfg->http.tls_key && strstr(cfg->http.tls_key, "/creds/tls-key"));
        }
        config_free(cfg);
        /* Files named in the configuration win over the credentials. */
        CHECK(loads("[http]\ntls_cert = /etc/c.pem\ntls_key = /etc/k.pem\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->http.tls_key, "/etc/k.pem");
        config_free(cfg);
        /* The database password: the credential only when it exists. */
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg)
                CHECK(cfg->database.password_file == NULL);
        config_free(cfg);
        char pw[sizeof(dir) + 16];
        snprintf(pw, sizeof(pw), "%s/db-password", dir);
        f = fopen(pw, "w");
        CHECK(f != NULL);
        if (f)
                fclose(f);
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg)
                CHECK(cfg->database.password_file && strcmp(cfg->database.password_file, pw) == 0);
        config_free(cfg);
        CHECK(loads("[database]\npassword_file = /etc/cashpayd/db-password\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->database.password_file, "/etc/cashpayd/db-password");
        config_free(cfg);
        unlink(pw);
        unsetenv("CREDENTIALS_DIRECTORY");
        unlink(file);
        rmdir(dir);
}

static void test_credentials_directory(void)
{
        struct config *cfg = NULL;

        setenv("CREDENTIALS_DIRECTORY", "/run/credentials/cashpayd.service", 1);
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg)
                CHECK_STR(cfg->webhook.secret_file,
                          "/run/credentials/cashpayd.service/webhook-secret");
        if (cfg)
                CHECK_STR(cfg->cashpay.client_secret_file,
                          "/run/credentials/cashpayd.service/cashpay-client-secret");
        config_free(cfg);
        CHECK(loads("[webhook]\nsecret_file =\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->webhook.secret_file,
                          "/run/credentials/cashpayd.service/webhook-secret");
        config_free(cfg);
        /* An explicit file wins over the credential. */
        CHECK(loads("[webhook]\nsecret_file = /etc/cashpayd/other.secret\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->webhook.secret_file, "/etc/cashpayd/other.secret");
        config_free(cfg);
        /* Set but empty counts as not set. */
        setenv("CREDENTIALS_DIRECTORY", "", 1);
        CHECK(config_new_defaults(&cfg) == 0);
        if (cfg)
                CHECK_STR(cfg->webhook.secret_file, CONFIG_DEFAULT_SECRET_FILE);
        config_free(cfg);
        unsetenv("CREDENTIALS_DIRECTORY");
        CHECK(loads("[webhook]\nverify = hmac\n", &cfg));
        if (cfg)
                CHECK_STR(cfg->webhook.secret_file, "/etc/cashpayd/webhook.secret");
        config_free(cfg);
}

/* Load @text and ask whether it may replace the defaults on reload. */
static bool reloadable_from_defaults(const char *text, char *err, size_t err_len)
{
        struct config *def = NULL, *cfg = NULL;
        bool ok;

        if (config_new_defaults(&def) < 0 || !loads(text, &cfg)) {
                fprintf(stderr, "cannot load reload test input\n");
                exit(2);
        }
        err[0] = '\0';
        ok = config_reload_compatible(def, cfg, err, err_len);
        config_free(def);
        config_free(cfg);
        return ok;
}

static void test_reload(void)
{
        static const char *const compatible[] = {
                "",
                "[http]\nlisten = 0.0.0.0:8080\n",
                "[webhook]\nsecret_file = /etc/cashpayd/new.secret\nallow_from = 10.0.0.0/8\n",
                "[webhook]\nverify = standard-webhooks\ntolerance = 10\n",
                "[http]\ntrusted_proxies = ::1\nmax_body = 1K\n",
                "[return]\nsuccess_url = /ok\nrefresh = 9\nshop_name = S\nminor_units = yes\n",
                "[log]\nlevel = debug\n",
                "[database]\ncommit_timeout = 200\nwal_warn_bytes = 2M\n",
                "[webhook]\nrejected_body_max = 10\norder_ref_field = a.b\n",
        };
        static const struct { const char *text, *key; } restart[] = {
                { "[http]\nlisten = 0.0.0.0:8081\n", "[http] listen" },
                { "[http]\nlisten = 0.0.0.0:8080,[::]:8080\n", "[http] listen" },
                { "[http]\nwebhook_path = /hook\n", "[http] webhook_path" },
                { "[http]\nreturn_path = /back\n", "[http] return_path" },
                { "[http]\nstatus_path = /st\n", "[http] status_path" },
                { "[http]\nthreads = 2\n", "[http] threads" },
                { "[http]\nmax_connections = 10\n", "[http] max_connections" },
                { "[admin]\nlisten =\n", "[admin] listen" },
                { "[admin]\nmax_connections = 2\n", "[admin] max_connections" },
                { "[admin]\nrequest_timeout = 9\n", "[admin] request_timeout" },
                { "[database]\npath = /tmp/other.db\n", "[database] path" },
                { "[database]\nsynchronous = normal\n", "[database] synchronous" },
                { "[database]\nbusy_timeout = 1\n", "[database] busy_timeout" },
                { "[database]\nmax_batch = 1\n", "[database] max_batch" },
                { "[http]\ntimeout = 60\n", "[http] timeout" },
                { "[http]\nmax_queue = 60\n", "[http] max_queue" },
                { "[http]\nmax_header = 64K\n", "[http] max_header" },
        };
        char err[256];

        for (size_t i = 0; i < sizeof(compatible) / sizeof(compatible[0]); i++) {
                bool ok = reloadable_from_defaults(compatible[i], err, sizeof(err));

                if (!ok)
                        fprintf(stderr, "  refused: %s (%s)\n", compatible[i], err);
                CHECK(ok);
        }
        for (size_t i = 0; i < sizeof(restart) / sizeof(restart[0]); i++) {
                CHECK(!reloadable_from_defaults(restart[i].text, err, sizeof(err)));
                CHECK(strncmp(err, restart[i].key, strlen(restart[i].key)) == 0);
                CHECK(strstr(err, "restart") != NULL);
        }
}

static void test_names(void)
{
        CHECK_STR(config_verify_scheme_name(VERIFY_HMAC), "hmac");
        CHECK_STR(config_verify_scheme_name(VERIFY_STANDARD_WEBHOOKS), "standard-webhooks");
        CHECK_STR(config_verify_scheme_name(VERIFY_NONE), "none");
        CHECK_STR(config_verify_scheme_name((enum verify_scheme)42), "invalid");
        CHECK_STR(config_log_level_name(LOG_LEVEL_ERR), "err");
        CHECK_STR(config_log_level_name(LOG_LEVEL_WARNING), "warning");
        CHECK_STR(config_log_level_name(LOG_LEVEL_NOTICE), "notice");
        CHECK_STR(config_log_level_name(LOG_LEVEL_INFO), "info");
        CHECK_STR(config_log_level_name(LOG_LEVEL_DEBUG), "debug");
        CHECK_STR(config_log_level_name((enum log_level)0), "invalid");
}

int main(void)
{
        char path[sizeof(tmpdir) + 32];
        const char *base = getenv("TMPDIR");
        int n = snprintf(tmpdir, sizeof(tmpdir), "%s/test-config-XXXXXX",
                         base && *base ? base : "/tmp");

        if (n < 0 || (size_t) n >= sizeof(tmpdir)) {
                fprintf(stderr, "TMPDIR is too long for this test\n");
                return 2;
        }
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 2;
        }
        test_defaults();
        test_table();
        test_example_file();
        test_contract_example();
        test_full_file();
        test_bad_values();
        test_bad_value_message();
        test_structure_errors();
        test_line_handling();
        test_raw_limits();
        test_values();
        test_listen();
        test_cidrs();
        test_rules();
        test_rules_cashpay();
        test_tls();
        test_rules_database();
        test_rules_writer_connections();
        test_credentials_directory();
        test_reload();
        test_names();
        snprintf(path, sizeof(path), "%s/test.conf", tmpdir);
        unlink(path);
        rmdir(tmpdir);
        return check_summary();
}
