/*
 * cmd-sign — sign and send: produce webhook signatures exactly as the daemon
 * checks them (through verify_sign(), never a second implementation), and
 * POST a freshly built, signed charge to a deployment with libcurl, the way
 * CashPay would, so an operator can test the whole path end to end.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "cashpay/charge.h"
#include "cashpay/timeutil.h"
#include "cashpay/secrets.h"
#include "cashpay/verify.h"
#include "src/ctl/ctl.h"
#include "src/ctl/output.h"

#define SIGN_BODY_MAX (64u << 20)
#define RESPONSE_MAX (1u << 20)
#define SIG_HEADERS_MAX 3

/* The header lines a signed request carries. */
struct sig_headers {
        size_t n;
        struct {
                char name[128];
                char value[512];
        } h[SIG_HEADERS_MAX];
};

struct sign_request {
        int64_t timestamp;      /* unix seconds */
        bool has_timestamp;     /* given with --timestamp */
        const char *message_id; /* --id, or NULL for a random one */
};

static void add_header(struct sig_headers *sh, const char *name, const char *value)
{
        if (sh->n >= SIG_HEADERS_MAX)
                return;
        snprintf(sh->h[sh->n].name, sizeof(sh->h[sh->n].name), "%s", name);
        snprintf(sh->h[sh->n].value, sizeof(sh->h[sh->n].value), "%s", value);
        sh->n++;
}

/* @prefix followed by @nbytes random bytes in hex. */
static int random_token(const char *prefix, size_t nbytes, char *buf, size_t len)
{
        uint8_t raw[32];
        size_t off;

        if (nbytes > sizeof(raw) || getrandom(raw, nbytes, 0) != (ssize_t) nbytes)
                return -EIO;
        off = (size_t) snprintf(buf, len, "%s", prefix);
        for (size_t i = 0; i < nbytes && off + 2 < len; i++, off += 2)
                snprintf(buf + off, len - off, "%02x", raw[i]);
        return 0;
}

/* The first secret of the configured file: the one new signatures use. */
static int load_signing_secret(const struct config *cfg, struct secret *ret)
{
        struct secret_set *set;
        char err[512] = "";
        int r;

        if (!cfg->webhook.secret_file)
                return ctl_fail("[webhook] secret_file is not set (and $CREDENTIALS_DIRECTORY "
                                "is not either): cannot sign");
        set = calloc(1, sizeof(*set));
        if (!set)
                return ctl_fail("out of memory");
        r = secrets_load(cfg->webhook.secret_file, cfg->webhook.verify, set, err, sizeof(err));
        if (r == 0)
                *ret = set->items[0];
        secrets_wipe(set);
        free(set);
        if (r < 0)
                return ctl_fail("%s", err[0] ? err : strerror(-r));
        return 0;
}

static int check_request(struct ctl *c, const struct verify_params *p, const struct sign_request *rq)
{
        if (p->scheme == VERIFY_HMAC && rq->message_id)
                return ctl_usage_error(c, "--id applies to standard-webhooks only");
        if (p->scheme == VERIFY_HMAC && !p->timestamped && rq->has_timestamp)
                return ctl_usage_error(c, "--timestamp needs [webhook] timestamp_header");
        return CTL_CONTINUE;
}

/* Fills @ret with the header lines for @body; CTL_CONTINUE or an exit code. */
static int sign_body(struct ctl *c, const struct sign_request *rq, const void *body, size_t len,
                     struct sig_headers *ret)
{
        const struct config *cfg = c->cfg;
        struct verify_params p;
        struct secret secret;
        char ts[24], id[64], sig[512];
        struct verify_input in = { .body = body, .body_len = len, .timestamp = ts, .message_id = id };
        int r;

        verify_params_from_config(cfg, &p);
        *ret = (struct sig_headers) { 0 };
        if ((r = check_request(c, &p, rq)) != CTL_CONTINUE)
                return r;
        if (p.scheme == VERIFY_NONE)
                return CTL_CONTINUE;
        snprintf(ts, sizeof(ts), "%lld", (long long) rq->timestamp);
        in.now = rq->timestamp;
        if (rq->message_id)
                snprintf(id, sizeof(id), "%s", rq->message_id);
        else if (random_token("msg_", 12, id, sizeof(id)) < 0)
                return ctl_fail("cannot read random bytes");
        if ((r = load_signing_secret(cfg, &secret)) != 0)
                return r;
        r = verify_sign(&p, &secret, &in, sig, sizeof(sig));
        explicit_bzero(&secret, sizeof(secret));
        if (r < 0)
                return ctl_fail_errno(r, "cannot sign");
        if (p.scheme == VERIFY_STANDARD_WEBHOOKS) {
                add_header(ret, SW_HEADER_ID, id);
                add_header(ret, SW_HEADER_TIMESTAMP, ts);
                add_header(ret, SW_HEADER_SIGNATURE, sig);
                return CTL_CONTINUE;
        }
        add_header(ret, cfg->webhook.signature_header, sig);
        if (p.timestamped)
                add_header(ret, cfg->webhook.timestamp_header, ts);
        return CTL_CONTINUE;
}

/* NULL when out of memory, never an object with a header missing. */
static json_t *headers_json(const struct sig_headers *sh)
{
        json_t *o = json_object();

        for (size_t i = 0; o && i < sh->n; i++)
                if (json_object_set_new(o, sh->h[i].name, json_string(sh->h[i].value)) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}

/* Reads all of stdin into a malloc'ed buffer. */
static int read_stdin(uint8_t **ret, size_t *ret_len)
{
        size_t len = 0, cap = 0, n;
        uint8_t *buf = NULL, *p;

        do {
                if (len == cap) {
                        cap = cap ? cap * 2 : 65536;
                        if (cap > SIGN_BODY_MAX || !(p = realloc(buf, cap))) {
                                free(buf);
                                return cap > SIGN_BODY_MAX ? -E2BIG : -ENOMEM;
                        }
                        buf = p;
                }
                n = fread(buf + len, 1, cap - len, stdin);
                len += n;
        } while (n > 0);
        if (ferror(stdin)) {
                free(buf);
                return -EIO;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int sign_option(struct ctl *c, int opt, void *ctx)
{
        struct sign_request *rq = ctx;
        unsigned long long v;

        switch (opt) {
        case OPT_COMMAND:
                if (ctl_parse_uint(optarg, 0, INT64_MAX / 1000, &v) < 0)
                        return ctl_usage_error(c, "--timestamp needs unix seconds, not '%s'", optarg);
                rq->timestamp = (int64_t) v;
                rq->has_timestamp = true;
                return CTL_CONTINUE;
        case OPT_COMMAND + 1:
                if (!optarg[0] || strlen(optarg) > 255 || strpbrk(optarg, " \t\r\n,"))
                        return ctl_usage_error(c, "--id must be 1-255 characters without "
                                               "blanks or commas");
                rq->message_id = optarg;
                return CTL_CONTINUE;
        default:
                return ctl_common_option(c, opt);
        }
}

static int print_headers(const struct ctl *c, const struct sig_headers *sh)
{
        if (c->json)
                return output_json(json_pack("{s:s, s:o}", "scheme",
                                             config_verify_scheme_name(c->cfg->webhook.verify),
                                             "headers", headers_json(sh)), false);
        for (size_t i = 0; i < sh->n; i++)
                printf("%s: %s\n", sh->h[i].name, sh->h[i].value);
        return output_flush();
}

int ctl_cmd_sign(struct ctl *c, int argc, char **argv)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "timestamp", required_argument, NULL, OPT_COMMAND },
                { "id", required_argument, NULL, OPT_COMMAND + 1 },
                { NULL, 0, NULL, 0 }
        };
        struct sign_request rq = { .timestamp = time_now_ms() / 1000 };
        struct sig_headers sh;
        uint8_t *body = NULL;
        size_t len = 0;
        int r;

        if ((r = ctl_parse_options(c, argc, argv, opts, sign_option, &rq)) != CTL_CONTINUE ||
            (r = ctl_positional(c, argc, argv, 0, NULL)) != CTL_CONTINUE ||
            (r = ctl_load_config(c)) != 0)
                return r;
        if (c->cfg->webhook.verify == VERIFY_NONE)
                return ctl_fail("[webhook] verify = none: there is nothing to sign");
        if ((r = read_stdin(&body, &len)) < 0)
                return ctl_fail_errno(r, "cannot read the body from stdin");
        r = sign_body(c, &rq, body, len, &sh);
        free(body);
        if (r != CTL_CONTINUE)
                return r;
        return ctl_printed(print_headers(c, &sh));
}

/* ---- send ---- */

struct send_options {
        const char *status;
        char charge_id[CHARGE_ID_MAX + 1];
        int64_t amount;
        const char *currency;
        const char *description;
        const char *order_ref;
        const char *url;
        const char *cacert;   /* CA certificates for https://; NULL: the system's */
        unsigned timeout;
};

struct response {
        char *data;
        size_t len;
        bool truncated;
};

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct response *resp = userdata;
        size_t n = size * nmemb, take = n;
        char *p;

        if (resp->len + take > RESPONSE_MAX) {
                take = RESPONSE_MAX - resp->len;
                resp->truncated = true;
        }
        p = realloc(resp->data, resp->len + take + 1);
        if (!p)
                return 0;
        memcpy(p + resp->len, ptr, take);
        resp->data = p;
        resp->len += take;
        resp->data[resp->len] = '\0';
        return n;
}

/* Puts "value" at the dotted @path of @root, creating objects on the way.
 * -EINVAL when the path runs into a value that is not an object. */
static int set_path(json_t *root, const char *path, const char *value)
{
        char *copy = strdup(path), *save = NULL, *key, *next;
        json_t *obj = root, *child;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        key = strtok_r(copy, ".", &save);
        while (key && r == 0) {
                next = strtok_r(NULL, ".", &save);
                if (!next) {
                        /* @value is UTF-8 (send_parse): only memory can fail */
                        r = json_object_set_new(obj, key, json_string(value)) < 0 ? -ENOMEM : 0;
                        break;
                }
                child = json_object_get(obj, key);
                if (!child) {
                        child = json_object();
                        if (json_object_set_new(obj, key, child) < 0)
                                r = -ENOMEM;
                } else if (!json_is_object(child)) {
                        r = -EINVAL;
                }
                obj = child;
                key = next;
        }
        free(copy);
        return r;
}

/* The charge object as CashPay sends it, compact, in a malloc'ed string.
 * -ENOMEM, or -EINVAL when order_ref_field runs into another value. */
static int build_charge(const struct ctl *c, const struct send_options *o, char **ret)
{
        json_t *body = json_pack("{s:s, s:s, s:I, s:s, s:I}", "id", o->charge_id,
                                 "status", o->status, "amount", (json_int_t) o->amount,
                                 "currency", o->currency,
                                 "created", (json_int_t) (time_now_ms() / 1000));
        int r = body ? 0 : -ENOMEM;

        if (r == 0 && o->description &&
            json_object_set_new(body, "description", json_string(o->description)) < 0)
                r = -ENOMEM;
        if (r == 0 && o->order_ref)
                r = set_path(body, c->cfg->webhook.order_ref_field, o->order_ref);
        if (r == 0 && !(*ret = json_dumps(body, JSON_COMPACT)))
                r = -ENOMEM;
        json_decref(body);
        return r;
}

/* http://HOST:PORT/webhook_path (https:// with [http] tls_cert) from the first
 * [http] listen address, with a wildcard address replaced by the loopback of
 * its family. */
static int default_url(const struct config *cfg, char *buf, size_t len)
{
        const struct sockaddr_storage *ss;
        const char *scheme = cfg->http.tls_cert ? "https" : "http";
        char host[INET6_ADDRSTRLEN] = "";
        unsigned port;

        if (cfg->http.listen.n == 0)
                return ctl_fail("no [http] listen address in the configuration: use --url");
        ss = &cfg->http.listen.items[0].addr;
        if (ss->ss_family == AF_INET6) {
                struct sockaddr_in6 a = *(const struct sockaddr_in6 *) ss;
                if (IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr))
                        a.sin6_addr = in6addr_loopback;
                inet_ntop(AF_INET6, &a.sin6_addr, host, sizeof(host));
                port = ntohs(a.sin6_port);
                snprintf(buf, len, "%s://[%s]:%u%s", scheme, host, port, cfg->http.webhook_path);
                return 0;
        }
        struct sockaddr_in a = *(const struct sockaddr_in *) ss;
        if (a.sin_addr.s_addr == htonl(INADDR_ANY))
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        inet_ntop(AF_INET, &a.sin_addr, host, sizeof(host));
        snprintf(buf, len, "%s://%s:%u%s", scheme, host, (unsigned) ntohs(a.sin_port),
                 cfg->http.webhook_path);
        return 0;
}

static struct curl_slist *request_headers(const struct sig_headers *sh)
{
        struct curl_slist *list = NULL, *p;
        char line[700];

        list = curl_slist_append(NULL, "Content-Type: application/json");
        /* No "Expect: 100-continue" round trip for small bodies. */
        list = list ? curl_slist_append(list, "Expect:") : NULL;
        for (size_t i = 0; list && i < sh->n; i++) {
                snprintf(line, sizeof(line), "%s: %s", sh->h[i].name, sh->h[i].value);
                p = curl_slist_append(list, line);
                if (!p) {
                        curl_slist_free_all(list);
                        return NULL;
                }
                list = p;
        }
        return list;
}

/* POSTs @body; on success fills @ret_status and @resp. An https:// server
 * must present a certificate for the URL's host that @o->cacert (or the
 * system's CA store) vouches for. */
static int post(const char *url, const char *body, const struct sig_headers *sh,
                const struct send_options *o, long *ret_status, struct response *resp)
{
        struct curl_slist *headers = request_headers(sh);
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *curl = curl_easy_init();
        CURLcode rc = CURLE_OUT_OF_MEMORY;

        if (curl && headers) {
                curl_easy_setopt(curl, CURLOPT_URL, url);
                curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
                curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long) o->timeout);
                curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
                curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
                curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);
                if (o->cacert)
                        curl_easy_setopt(curl, CURLOPT_CAINFO, o->cacert);
                curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
                curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
                curl_easy_setopt(curl, CURLOPT_WRITEDATA, resp);
                curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
                rc = curl_easy_perform(curl);
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, ret_status);
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
        if (rc != CURLE_OK)
                return ctl_fail("POST %s failed: %s", url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
        return 0;
}

/* The answer as text lines, each sanitised for the terminal. */
static void print_body_lines(char *data)
{
        char *save = NULL;

        for (char *line = data ? strtok_r(data, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save)) {
                output_text(stdout, line, SIZE_MAX);
                fputc('\n', stdout);
        }
}

/* The answer's body as JSON: parsed when it is JSON, else as a string (or
 * null when not UTF-8). NULL when out of memory: jansson leaves the error
 * code unknown when an allocation fails, and sets it for bad input. */
static json_t *response_json(const struct response *resp)
{
        json_error_t error = { 0 };
        json_t *parsed;

        if (!resp->data)
                return json_null();
        parsed = json_loads(resp->data, 0, &error);
        if (parsed)
                return parsed;
        if (json_error_code(&error) == json_error_unknown ||
            json_error_code(&error) == json_error_out_of_memory)
                return NULL;
        return json_text(resp->data, resp->len);
}

static int print_response(const struct ctl *c, const struct send_options *o, const char *url,
                          long status, struct response *resp)
{
        if (!c->json) {
                printf("POST %s (charge %s, %s)\nHTTP %ld\n", url, o->charge_id, o->status, status);
                print_body_lines(resp->data);
                return output_flush();
        }
        return output_json(json_pack("{s:s, s:s, s:s, s:I, s:o}", "url", url,
                                     "charge_id", o->charge_id, "status", o->status,
                                     "http_status", (json_int_t) status,
                                     "response", response_json(resp)), false);
}

static bool currency_valid(const char *s)
{
        return strlen(s) == 3 && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 3;
}

static int send_option(struct ctl *c, int opt, void *ctx)
{
        struct send_options *o = ctx;
        unsigned long long v;
        enum charge_status st;

        switch (opt) {
        case OPT_COMMAND:
                if (charge_status_from_name(optarg, &st) < 0)
                        return ctl_usage_error(c, "--status must be INITIATED, CAPTURED or FAILED");
                o->status = optarg;
                break;
        case OPT_COMMAND + 1:
                if (!charge_id_valid(optarg))
                        return ctl_usage_error(c, "'%s' is not a charge id", optarg);
                snprintf(o->charge_id, sizeof(o->charge_id), "%s", optarg);
                break;
        case OPT_COMMAND + 2:
                if (ctl_parse_uint(optarg, 0, CHARGE_AMOUNT_MAX, &v) < 0)
                        return ctl_usage_error(c, "--amount needs an integer from 0 to 2^53-1");
                o->amount = (int64_t) v;
                break;
        case OPT_COMMAND + 3:
                if (!currency_valid(optarg))
                        return ctl_usage_error(c, "--currency needs three capital letters");
                o->currency = optarg;
                break;
        case OPT_COMMAND + 4: o->description = optarg; break;
        case OPT_COMMAND + 5: o->order_ref = optarg; break;
        case OPT_COMMAND + 6: o->url = optarg; break;
        case OPT_COMMAND + 7:
                if (ctl_parse_uint(optarg, 1, 3600, &v) < 0)
                        return ctl_usage_error(c, "--timeout needs 1 to 3600 seconds");
                o->timeout = (unsigned) v;
                break;
        case OPT_COMMAND + 8:
                if (access(optarg, R_OK) < 0)
                        return ctl_usage_error(c, "--cacert %s: %s", optarg, strerror(errno));
                o->cacert = optarg;
                break;
        default:
                return ctl_common_option(c, opt);
        }
        return CTL_CONTINUE;
}

static int send_parse(struct ctl *c, int argc, char **argv, struct send_options *o)
{
        static const struct option opts[] = {
                CTL_COMMON_OPTIONS,
                { "status", required_argument, NULL, OPT_COMMAND },
                { "charge", required_argument, NULL, OPT_COMMAND + 1 },
                { "amount", required_argument, NULL, OPT_COMMAND + 2 },
                { "currency", required_argument, NULL, OPT_COMMAND + 3 },
                { "description", required_argument, NULL, OPT_COMMAND + 4 },
                { "order-ref", required_argument, NULL, OPT_COMMAND + 5 },
                { "url", required_argument, NULL, OPT_COMMAND + 6 },
                { "timeout", required_argument, NULL, OPT_COMMAND + 7 },
                { "cacert", required_argument, NULL, OPT_COMMAND + 8 },
                { NULL, 0, NULL, 0 }
        };
        int r;

        if ((r = ctl_parse_options(c, argc, argv, opts, send_option, o)) != CTL_CONTINUE ||
            (r = ctl_positional(c, argc, argv, 0, NULL)) != CTL_CONTINUE)
                return r;
        if (o->description && strlen(o->description) > CHARGE_TEXT_MAX)
                return ctl_usage_error(c, "--description is longer than %d bytes", CHARGE_TEXT_MAX);
        if (o->order_ref && strlen(o->order_ref) > CHARGE_ORDER_REF_MAX)
                return ctl_usage_error(c, "--order-ref is longer than %d bytes",
                                       CHARGE_ORDER_REF_MAX);
        if ((o->description && !output_utf8_valid(o->description, strlen(o->description))) ||
            (o->order_ref && !output_utf8_valid(o->order_ref, strlen(o->order_ref))))
                return ctl_usage_error(c, "--description and --order-ref must be UTF-8 text");
        if (!o->charge_id[0] && random_token("chg_", 8, o->charge_id, sizeof(o->charge_id)) < 0)
                return ctl_fail("cannot read random bytes");
        return CTL_CONTINUE;
}

/* Builds, signs and posts; fills @url. CTL_CONTINUE or an exit code. */
static int send_request(struct ctl *c, const struct send_options *o, char *url, size_t url_len,
                        long *ret_status, struct response *resp)
{
        struct sign_request rq = { .timestamp = time_now_ms() / 1000 };
        struct sig_headers sh;
        char *body = NULL;
        int r;

        if (o->order_ref && !c->cfg->webhook.order_ref_field)
                return ctl_fail("--order-ref needs [webhook] order_ref_field in the configuration");
        if (o->url)
                snprintf(url, url_len, "%s", o->url);
        else if ((r = default_url(c->cfg, url, url_len)) != 0)
                return r;
        r = build_charge(c, o, &body);
        if (r == -EINVAL)
                return ctl_fail("cannot build the charge: order_ref_field '%s' runs into "
                                "another value", c->cfg->webhook.order_ref_field);
        if (r < 0)
                return ctl_fail_errno(r, "cannot build the charge");
        r = sign_body(c, &rq, body, strlen(body), &sh);
        if (r == CTL_CONTINUE)
                r = post(url, body, &sh, o, ret_status, resp) == 0 ? CTL_CONTINUE : CTL_EXIT_FAIL;
        free(body);
        return r;
}

int ctl_cmd_send(struct ctl *c, int argc, char **argv)
{
        struct send_options o = { .status = "CAPTURED", .amount = 2000, .currency = "YER",
                                  .timeout = 10 };
        struct response resp = { 0 };
        char url[2048];
        long status = 0;
        int r;

        if ((r = send_parse(c, argc, argv, &o)) != CTL_CONTINUE || (r = ctl_load_config(c)) != 0)
                return r;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return ctl_fail("cannot initialise libcurl");
        r = send_request(c, &o, url, sizeof(url), &status, &resp);
        if (r == CTL_CONTINUE) {
                r = ctl_printed(print_response(c, &o, url, status, &resp));
                if (r == CTL_EXIT_OK && (status < 200 || status >= 300))
                        r = CTL_EXIT_FAIL;
        }
        free(resp.data);
        curl_global_cleanup();
        return r;
}
