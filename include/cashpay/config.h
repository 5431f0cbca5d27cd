/*
 * config — the one place that knows cashpayd's configuration.
 *
 * The key table (name, type, default, documentation) drives the INI parser,
 * --check-config, the example file and the cashpayd.conf(5) page. Every value
 * is validated while parsing; an error names the file and the line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cashpay/cidr.h"
#include "cashpay/log.h"
#include "cashpay/util.h"

#define CONFIG_DEFAULT_PATH "/etc/cashpayd/cashpayd.conf"
/* secret_file when unset and $CREDENTIALS_DIRECTORY is not set. */
#define CONFIG_DEFAULT_SECRET_FILE "/etc/cashpayd/webhook.secret"
/* secret_file when unset: $CREDENTIALS_DIRECTORY/CONFIG_SECRET_CREDENTIAL. */
#define CONFIG_SECRET_CREDENTIAL "webhook-secret"
/* client_secret_file when unset and $CREDENTIALS_DIRECTORY is not set. */
#define CONFIG_DEFAULT_CLIENT_SECRET_FILE "/etc/cashpayd/cashpay-client.secret"
/* client_secret_file when unset: $CREDENTIALS_DIRECTORY/CONFIG_CLIENT_SECRET_CREDENTIAL. */
#define CONFIG_CLIENT_SECRET_CREDENTIAL "cashpay-client-secret"
/* tls_cert and tls_key when unset and both credentials exist. */
#define CONFIG_TLS_CERT_CREDENTIAL "tls-cert"
#define CONFIG_TLS_KEY_CREDENTIAL "tls-key"
/* [database] password_file when unset: $CREDENTIALS_DIRECTORY/CONFIG_DB_PASSWORD_CREDENTIAL,
 * when that file exists (else no password file). */
#define CONFIG_DB_PASSWORD_CREDENTIAL "db-password"
/* At most this many addresses in one listen list. */
#define CONFIG_LISTEN_MAX 16

enum verify_scheme { VERIFY_HMAC, VERIFY_STANDARD_WEBHOOKS, VERIFY_NONE };
enum hmac_algorithm { HMAC_SHA256, HMAC_SHA512 };
enum sig_encoding { SIG_HEX, SIG_BASE64 };
enum db_synchronous { DB_SYNC_OFF, DB_SYNC_NORMAL, DB_SYNC_FULL, DB_SYNC_EXTRA };
enum db_backend { DB_BACKEND_SQLITE, DB_BACKEND_POSTGRESQL };
/* [webhook] confirm as written; config_confirm_api() says what it comes to. */
enum confirm_mode { CONFIRM_AUTO, CONFIRM_API, CONFIRM_NONE };

/* One "host:port" listen address, already resolved to a socket address. */
struct listen_addr {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        char text[64]; /* as written in the config, for messages */
};

struct listen_list {
        struct listen_addr *items;
        size_t n;
};

struct config {
        char *source_path; /* file the values came from, NULL for defaults */

        struct {
                struct listen_list listen;
                char *webhook_path;
                char *return_path;
                char *status_path;
                size_t max_body;          /* bytes */
                unsigned threads;         /* 0 = one per CPU */
                unsigned max_connections;
                unsigned timeout;         /* seconds a connection may idle */
                struct cidr_list trusted_proxies;
                unsigned max_queue;       /* deliveries waiting for the writer */
                size_t max_header;        /* bytes of request line + headers */
                unsigned max_connections_per_ip; /* 0 = no limit */
                unsigned request_timeout; /* seconds for headers + body of one request */
                char *tls_cert;           /* PEM chain; NULL = plain HTTP */
                char *tls_key;            /* PEM key; set exactly when tls_cert is */
        } http;

        struct {
                struct listen_list listen; /* n == 0: disabled */
                unsigned max_connections;
                unsigned request_timeout;  /* seconds to send one whole request */
        } admin;

        struct {
                enum verify_scheme verify;
                char *secret_file;        /* resolved: $CREDENTIALS_DIRECTORY default applied */
                char *signature_header;
                enum hmac_algorithm algorithm;
                enum sig_encoding encoding;
                char *timestamp_header;   /* NULL when unset */
                unsigned tolerance;       /* seconds */
                struct cidr_list allow_from; /* n == 0: anyone */
                char *order_ref_field;    /* NULL when unset */
                unsigned keep_rejected_days;
                bool insecure_no_verify;
                size_t rejected_body_max; /* bytes of a rejected body kept */
                unsigned max_rejected_rows; /* newest rejected deliveries kept; 0 = all */
                enum confirm_mode confirm;
        } webhook;

        struct {
                char *path;
                enum db_synchronous synchronous;
                unsigned busy_timeout;    /* ms */
                unsigned commit_timeout;  /* ms a queued delivery may wait for its commit */
                unsigned max_batch;       /* deliveries per transaction */
                size_t wal_warn_bytes;    /* warn (and report unhealthy) past this WAL size */
                enum db_backend backend;
                char *url;                /* postgresql: libpq connection string; NULL when unset */
                char *password_file;      /* NULL: none (resolved: the credential when it exists) */
                unsigned writer_connections; /* the writer's lanes, each with its own store */
        } database;

        struct {
                char *success_url;        /* NULL when unset */
                char *failure_url;        /* NULL when unset */
                unsigned refresh;         /* seconds */
                char *shop_name;          /* NULL when unset */
                bool minor_units;         /* amounts are in the currency's minor unit */
        } ret;

        struct {
                enum log_level level;
        } log;

        struct {
                char *api_url;            /* NULL: no API use at all */
                char *public_url;         /* NULL when unset */
                char *token_file;         /* NULL when unset */
                char *token_url;          /* NULL when unset */
                char *client_id;          /* NULL when unset */
                char *client_secret_file; /* resolved like [webhook] secret_file */
                unsigned token_lifetime;  /* seconds */
                unsigned refresh_margin;  /* seconds */
                unsigned request_timeout; /* seconds, connect included */
                unsigned max_inflight;
                size_t max_response;      /* bytes of one API answer */
                unsigned reconcile_after; /* seconds */
                unsigned reconcile_for;   /* seconds */
        } cashpay;

        struct {
                struct listen_list listen; /* n == 0: disabled */
                char *token_file;          /* NULL: no bearer required */
                size_t max_body;           /* bytes of one POST /charges body */
        } checkout;
};

/* Types a key in the table can have; used by the parser and the docs. */
enum config_type {
        CONFIG_STRING,
        CONFIG_PATH,     /* absolute path */
        CONFIG_URLPATH,  /* starts with '/' */
        CONFIG_UINT,
        CONFIG_SIZE,
        CONFIG_BOOL,
        CONFIG_ENUM,
        CONFIG_LISTEN,   /* comma-separated host:port */
        CONFIG_CIDRS,    /* comma-separated CIDRs */
        CONFIG_URL_TEMPLATE, /* absolute http(s) URL or "/path", {charge_id} {order_ref} */
        CONFIG_HEADER,   /* HTTP header name */
        CONFIG_FIELD,    /* dotted path into the JSON payload */
        CONFIG_URL,      /* absolute http(s) URL, no query, fragment, credentials or final '/' */
};

/* One row of the key table. */
struct config_key {
        const char *section;
        const char *name;
        enum config_type type;
        const char *default_value; /* as it would be written in the file; "" = unset */
        const char *choices;       /* CONFIG_ENUM: "a|b|c", else NULL */
        const char *unit;          /* "bytes", "seconds", ... for numbers, else NULL */
        uint64_t min, max;         /* numbers: bounds; lists: item counts; text: max bytes */
        bool reloadable;           /* SIGHUP applies it without a restart */
        const char *doc;           /* one paragraph, plain text */
        size_t offset;             /* where the value lives in struct config */
        const int *enum_values;    /* CONFIG_ENUM: value of each choice; NULL = its index */
};

/* One [section] of the file, with a paragraph for the docs. */
struct config_section {
        const char *name;
        const char *doc;
};

/* config_sections() - the sections, in file order; keys follow the same order. */
const struct config_section *config_sections(size_t *ret_n);

/*
 * config_keys() - the key table, in file order.
 * @ret_n: number of rows.
 */
const struct config_key *config_keys(size_t *ret_n);

/* config_type_name() - "integer", "size", "boolean", ... for messages and docs. */
const char *config_type_name(enum config_type t);

/*
 * config_new_defaults() - a config holding every default.
 * secret_file is resolved from $CREDENTIALS_DIRECTORY at this moment.
 * Returns 0 or -ENOMEM. The caller frees with config_free().
 */
int config_new_defaults(struct config **ret);

/*
 * config_load() - parse and validate the INI file at @path.
 * @err: on failure, "PATH:LINE: what is wrong" (or "PATH: ..." for I/O).
 * Returns 0, -EINVAL for a bad file, or a negative errno for I/O errors.
 */
int config_load(const char *path, struct config **ret, char *err, size_t err_len);

/* config_free() - NULL-safe. */
void config_free(struct config *cfg);
DEFINE_FREEP(struct config, config_free)

/*
 * config_reload_compatible() - may @next replace @cur without rebinding?
 * On false, @err says which non-reloadable key changed.
 */
bool config_reload_compatible(const struct config *cur, const struct config *next,
                              char *err, size_t err_len);

/* config_confirm_api() - are webhooks confirmed by fetching the charge?
 * (confirm = api, or auto with [cashpay] api_url set) */
bool config_confirm_api(const struct config *cfg);

/* Names as written in the file ("hmac", "warning"); "invalid" for values out of range. */
const char *config_verify_scheme_name(enum verify_scheme v);
const char *config_log_level_name(enum log_level l);
