/*
 * config-keys — the key table: every key of cashpayd.conf as data.
 *
 * Everything about a key lives in one row: its type, default, bounds,
 * whether SIGHUP may change it, and its documentation. The reader
 * (config-read.c), the defaults (config.c), reload checks, the example file
 * and the man page (config-doc.c) are all derived from it, so they cannot
 * disagree with each other. Adding a key is adding a row here.
 */
#include <stddef.h>
#include <string.h>

#include "cashpay/config.h"
#include "src/core/config-internal.h"

#define OFF(field) offsetof(struct config, field)


/* Values are stored through int pointers; make sure that is their size. */
_Static_assert(sizeof(enum verify_scheme) == sizeof(int), "enum size");
_Static_assert(sizeof(enum hmac_algorithm) == sizeof(int), "enum size");
_Static_assert(sizeof(enum sig_encoding) == sizeof(int), "enum size");
_Static_assert(sizeof(enum db_synchronous) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum confirm_mode) == sizeof(int), "enum size");

static const int log_level_values[] = {
        LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_NOTICE, LOG_LEVEL_WARNING, LOG_LEVEL_ERR,
};

static const struct config_section sections[] = {
        { "http", "The public listener: CashPay's webhooks, the customer's return page "
                  "and the status endpoint." },
        { "admin", "The operator's listener: /healthz and /metrics." },
        { "webhook", "How webhooks are authenticated, filtered and recorded." },
        { "database", "The SQLite database that fulfilment code reads." },
        { "return", "The page the customer's browser comes back to after paying." },
        { "log", "Logging to the journal or standard error." },
        { "cashpay", "The CashPay API: creating charges, and confirming what webhooks and "
                     "returning browsers claim by fetching the charge. Where CashPay's guide "
                     "is silent (the token endpoint, the paths of the API), the shapes are "
                     "cashpayd's own, described in cashpayd(8)." },
        { "checkout", "The listener where the merchant's application asks cashpayd for a "
                      "charge (POST /charges). It runs only while [cashpay] api_url is set." },
};

static const struct config_key keys[] = {
        /* [http] */
        { .section = "http", .name = "listen", .type = CONFIG_LISTEN,
          .default_value = "0.0.0.0:8080", .min = 1, .max = CONFIG_LISTEN_MAX,
          .offset = OFF(http.listen),
          .doc = "Addresses the public listener binds: comma-separated host:port pairs with "
                 "numeric hosts, IPv6 addresses in brackets (e.g. 0.0.0.0:8080, [::]:8080). "
                 "Names are not resolved. Not used when systemd passes the listening sockets "
                 "(socket activation)." },
        { .section = "http", .name = "webhook_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/webhook", .max = 128, .offset = OFF(http.webhook_path),
          .doc = "Path of the webhook endpoint CashPay POSTs to (the charge's post_url)." },
        { .section = "http", .name = "return_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/return", .max = 128, .offset = OFF(http.return_path),
          .doc = "Path of the page the customer's browser returns to (the charge's "
                 "redirect_url), called with ?charge_id=CHARGE_ID." },
        { .section = "http", .name = "status_path", .type = CONFIG_URLPATH,
          .default_value = "/cashpay/status", .max = 128, .offset = OFF(http.status_path),
          .doc = "Prefix of the JSON status endpoint, GET status_path/CHARGE_ID. The three "
                 "paths must differ, and neither webhook_path nor return_path may lie below "
                 "status_path." },
        { .section = "http", .name = "max_body", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "65536", .min = 1, .max = 16777216, .reloadable = true,
          .offset = OFF(http.max_body),
          .doc = "Largest webhook body accepted. A larger one is answered 413, decided from "
                 "Content-Length before reading, or as soon as a chunked body passes it." },
        { .section = "http", .name = "threads", .type = CONFIG_UINT,
          .default_value = "0", .min = 0, .max = 256, .offset = OFF(http.threads),
          .doc = "Threads serving HTTP requests; 0 starts one per CPU." },
        { .section = "http", .name = "max_connections", .type = CONFIG_UINT,
          .default_value = "1024", .min = 1, .max = 65536, .offset = OFF(http.max_connections),
          .doc = "Most connections open at once on the public listener; more are refused." },
        { .section = "http", .name = "timeout", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "10", .min = 1, .max = 3600, .offset = OFF(http.timeout),
          .doc = "How long a connection may stay idle before it is closed." },
        { .section = "http", .name = "trusted_proxies", .type = CONFIG_CIDRS,
          .default_value = "", .min = 0, .max = 1024, .reloadable = true,
          .offset = OFF(http.trusted_proxies),
          .doc = "Comma-separated CIDR ranges of reverse proxies in front of cashpayd. Only "
                 "for a request coming straight from one of them is X-Forwarded-For used: "
                 "the nearest address in it that is not itself a trusted proxy becomes the "
                 "remote address, checked against allow_from and recorded with the delivery. "
                 "Empty: X-Forwarded-For is ignored." },
        { .section = "http", .name = "max_queue", .type = CONFIG_UINT,
          .default_value = "4096", .min = 1, .max = 1048576, .offset = OFF(http.max_queue),
          .doc = "Most verified webhooks waiting for the database writer at once. When the "
                 "queue is full, further webhooks are answered 503 with Retry-After, and "
                 "CashPay sends them again later." },
        { .section = "http", .name = "max_header", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "8192", .min = 1024, .max = 1048576, .offset = OFF(http.max_header),
          .doc = "Largest request line plus headers of a request; larger requests are "
                 "refused." },
        { .section = "http", .name = "max_connections_per_ip", .type = CONFIG_UINT,
          .default_value = "64", .min = 0, .max = 65536,
          .offset = OFF(http.max_connections_per_ip),
          .doc = "Most connections one client address may hold open at once; further ones "
                 "are closed at once. Together with request_timeout this keeps slow clients "
                 "from taking every connection. Behind a reverse proxy every connection comes "
                 "from the proxy's address: raise it, or set 0 for no limit." },
        { .section = "http", .name = "request_timeout", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "30", .min = 1, .max = 3600, .offset = OFF(http.request_timeout),
          .doc = "Time a client has to send one whole request, headers and body, counted from "
                 "the connection (or the end of its previous request). A client still sending "
                 "then is disconnected, however steadily it trickles bytes: timeout alone "
                 "restarts on every byte." },
        { .section = "http", .name = "tls_cert", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .offset = OFF(http.tls_cert),
          .doc = "PEM file with the server certificate followed by its intermediates (as "
                 "certbot's fullchain.pem). When set, the public listeners speak HTTPS only "
                 "(TLS 1.2 and 1.3, GnuTLS's default ciphers). A missing, unreadable, "
                 "expired or not yet valid certificate, or one that does not match tls_key, "
                 "stops the start with the file named. SIGHUP reads both files again: new "
                 "connections get the renewed certificate, open ones keep theirs, and a "
                 "broken renewal keeps the old one (the log says why). A warning is logged "
                 "from 14 days before expiry. Default: $CREDENTIALS_DIRECTORY/"
                 CONFIG_TLS_CERT_CREDENTIAL " and " CONFIG_TLS_KEY_CREDENTIAL " when "
                 "the first exists (systemd's LoadCredential=, copied only when the service "
                 "starts: renew those with a restart), else plain HTTP." },
        { .section = "http", .name = "tls_key", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .offset = OFF(http.tls_key),
          .doc = "PEM file with the private key of tls_cert (unencrypted: PKCS#1, PKCS#8 or "
                 "SEC1). Set together with tls_cert." },

        /* [admin] */
        { .section = "admin", .name = "listen", .type = CONFIG_LISTEN,
          .default_value = "127.0.0.1:9180", .min = 0, .max = CONFIG_LISTEN_MAX,
          .offset = OFF(admin.listen),
          .doc = "Addresses of the admin listener serving /healthz and /metrics, written as "
                 "in [http] listen. Empty disables it. It has no authentication: keep it on "
                 "loopback or a private network." },
        { .section = "admin", .name = "max_connections", .type = CONFIG_UINT,
          .default_value = "64", .min = 1, .max = 4096, .offset = OFF(admin.max_connections),
          .doc = "Most connections open at once on the admin listener. Further clients wait "
                 "in the kernel's queue until one closes, which request_timeout bounds." },
        { .section = "admin", .name = "request_timeout", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "5", .min = 1, .max = 3600, .offset = OFF(admin.request_timeout),
          .doc = "Time a client of the admin listener has to send one whole request, counted "
                 "from the connection (or the end of its previous request), however steadily "
                 "it trickles bytes; also how long a connection may stay idle. With "
                 "max_connections it bounds how long clients that send nothing or half a "
                 "request can keep a monitor from /healthz." },

        /* [webhook] */
        { .section = "webhook", .name = "verify", .type = CONFIG_ENUM,
          .default_value = "hmac", .choices = "hmac|standard-webhooks|none", .reloadable = true,
          .offset = OFF(webhook.verify),
          .doc = "How webhooks are authenticated. hmac: an HMAC of the raw body in "
                 "signature_header, shaped by algorithm, encoding and timestamp_header. "
                 "standard-webhooks: the Standard Webhooks scheme (webhook-id, "
                 "webhook-timestamp and webhook-signature headers, secrets written "
                 "whsec_BASE64); signature_header, algorithm and encoding are then ignored. "
                 "none: no authentication at all, accepted only together with "
                 "insecure_no_verify = yes, or with confirm = api (the API, not the body, "
                 "is believed)." },
        { .section = "webhook", .name = "secret_file", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(webhook.secret_file),
          .doc = "File holding the shared secret, one per line. Any of them verifies, so a "
                 "secret can be rotated without downtime: add the new one, reload, switch "
                 "CashPay over, remove the old one, reload. Read at start and on every "
                 "reload. Default: $CREDENTIALS_DIRECTORY/" CONFIG_SECRET_CREDENTIAL " when "
                 "the CREDENTIALS_DIRECTORY environment variable is set (systemd's "
                 "LoadCredential=), else " CONFIG_DEFAULT_SECRET_FILE ". systemd copies "
                 "credentials only when the service starts: with LoadCredential=, rotate "
                 "with a restart (socket activation keeps the port open meanwhile)." },
        { .section = "webhook", .name = "signature_header", .type = CONFIG_HEADER,
          .default_value = "X-CashPay-Signature", .max = 64, .reloadable = true,
          .offset = OFF(webhook.signature_header),
          .doc = "Header carrying the HMAC when verify = hmac." },
        { .section = "webhook", .name = "algorithm", .type = CONFIG_ENUM,
          .default_value = "sha256", .choices = "sha256|sha512", .reloadable = true,
          .offset = OFF(webhook.algorithm),
          .doc = "Hash function of the HMAC when verify = hmac." },
        { .section = "webhook", .name = "encoding", .type = CONFIG_ENUM,
          .default_value = "hex", .choices = "hex|base64", .reloadable = true,
          .offset = OFF(webhook.encoding),
          .doc = "How the HMAC is written in signature_header when verify = hmac: hex (either "
                 "case, optionally after a prefix such as sha256=) or base64." },
        { .section = "webhook", .name = "timestamp_header", .type = CONFIG_HEADER,
          .default_value = "", .max = 64, .reloadable = true,
          .offset = OFF(webhook.timestamp_header),
          .doc = "Header carrying the time the webhook was sent, in unix seconds, when "
                 "verify = hmac (e.g. X-CashPay-Timestamp). When set, the HMAC covers the "
                 "timestamp, a full stop and the raw body, and a timestamp further than "
                 "tolerance from now is rejected. Not allowed with verify = "
                 "standard-webhooks, which has its own webhook-timestamp. Empty: no "
                 "timestamp." },
        { .section = "webhook", .name = "tolerance", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "300", .min = 1, .max = 86400, .reloadable = true,
          .offset = OFF(webhook.tolerance),
          .doc = "Largest difference between a signed timestamp (timestamp_header, or "
                 "webhook-timestamp with standard-webhooks) and the clock; it bounds how "
                 "long a captured request could be replayed." },
        { .section = "webhook", .name = "allow_from", .type = CONFIG_CIDRS,
          .default_value = "", .min = 0, .max = 1024, .reloadable = true,
          .offset = OFF(webhook.allow_from),
          .doc = "Comma-separated CIDR ranges webhooks may come from (e.g. 192.0.2.0/24, "
                 "2001:db8::/32); requests from elsewhere are answered 403. IPv4 ranges also "
                 "match IPv4-mapped IPv6 peers (::ffff:192.0.2.7). Empty: any address." },
        { .section = "webhook", .name = "order_ref_field", .type = CONFIG_FIELD,
          .default_value = "", .max = 128, .reloadable = true,
          .offset = OFF(webhook.order_ref_field),
          .doc = "Dotted path into the webhook payload holding the merchant's own order "
                 "reference (e.g. metadata.order_id), stored in orders.order_ref. Empty: "
                 "none is taken from the payload." },
        { .section = "webhook", .name = "keep_rejected_days", .type = CONFIG_UINT,
          .unit = "days", .default_value = "30", .min = 1, .max = 3650, .reloadable = true,
          .offset = OFF(webhook.keep_rejected_days),
          .doc = "How long rejected deliveries (invalid, unauthorized, forbidden) are kept: "
                 "cashpayd deletes older ones once an hour, and 'cashpayctl prune' does on "
                 "demand. Other deliveries are never pruned." },
        { .section = "webhook", .name = "insecure_no_verify", .type = CONFIG_BOOL,
          .default_value = "no", .reloadable = true, .offset = OFF(webhook.insecure_no_verify),
          .doc = "Must be yes for verify = none to be accepted, so that verification cannot "
                 "be switched off by a typo. It has no effect with other schemes." },
        { .section = "webhook", .name = "rejected_body_max", .type = CONFIG_SIZE,
          .unit = "bytes", .default_value = "4096", .min = 0, .max = 1048576,
          .reloadable = true, .offset = OFF(webhook.rejected_body_max),
          .doc = "How much of a rejected request's body (400, 401, 403) is kept in "
                 "webhook_deliveries; the rest is cut off. Accepted bodies are stored "
                 "whole." },
        { .section = "webhook", .name = "max_rejected_rows", .type = CONFIG_UINT,
          .default_value = "50000", .min = 0, .max = 100000000,
          .offset = OFF(webhook.max_rejected_rows),
          .doc = "Most rejected deliveries (invalid, unauthorized, forbidden, deferred) kept in "
                 "webhook_deliveries. They are forensic evidence, so every rejected POST is "
                 "still recorded when it arrives; the newest max_rejected_rows are kept and "
                 "older ones are deleted as new ones arrive (in chunks of 1% of this, at most "
                 "1000 rows). A flood of junk then costs at most about max_rejected_rows times "
                 "(rejected_body_max + 500) bytes of database, some 230 MB with the defaults, "
                 "however long it lasts. Accepted deliveries are never deleted. 0: no cap; "
                 "rejected deliveries then go only after keep_rejected_days." },

        { .section = "webhook", .name = "confirm", .type = CONFIG_ENUM,
          .default_value = "auto", .choices = "auto|api|none", .offset = OFF(webhook.confirm),
          .doc = "Whether a webhook is believed as it is or confirmed with the CashPay API. "
                 "api: after the signature and payload checks, the charge is fetched "
                 "(GET api_url/charges/ID) and the state machine runs on the API's charge; a "
                 "claim the API does not confirm is answered 200 with outcome unconfirmed "
                 "and changes nothing, and a webhook that could not be confirmed (API "
                 "unreachable) is answered 503 with outcome deferred. With api, verify = none "
                 "is allowed without insecure_no_verify. none: the webhook is believed. "
                 "auto: api when [cashpay] api_url is set, else none. A claim the API "
                 "does not confirm for a charge still INITIATED (or a CAPTURED claim the API "
                 "answers FAILED) is fetched again about 5 s, 30 s and 2 min after it "
                 "(shorter when reconcile_after is below 300 s), then an INITIATED one on "
                 "the reconciler's schedule; a deferred one is queued for "
                 "reconciliation. A webhook waits for its fetch within commit_timeout." },

        /* [database] */
        { .section = "database", .name = "path", .type = CONFIG_PATH,
          .default_value = "/var/lib/cashpayd/cashpay.db", .max = 180,
          .offset = OFF(database.path),
          .doc = "The SQLite database, in WAL mode. cashpayctl and the merchant's "
                 "application use the same file." },
        { .section = "database", .name = "synchronous", .type = CONFIG_ENUM,
          .default_value = "full", .choices = "off|normal|full|extra",
          .offset = OFF(database.synchronous),
          .doc = "SQLite's synchronous setting. With full, a webhook that was answered 2xx "
                 "survives a power failure. normal is faster, but the last acknowledged "
                 "webhooks may be lost when the power fails (not when the process dies); "
                 "off risks more, extra syncs the directory too." },
        { .section = "database", .name = "busy_timeout", .type = CONFIG_UINT,
          .unit = "milliseconds", .default_value = "5000", .min = 0, .max = 600000,
          .offset = OFF(database.busy_timeout),
          .doc = "How long to wait for a lock held by another process (the merchant's "
                 "application, cashpayctl) before a commit counts as failed and the waiting "
                 "webhooks are answered 503." },
        { .section = "database", .name = "commit_timeout", .type = CONFIG_UINT,
          .unit = "milliseconds", .default_value = "10000", .min = 100, .max = 600000,
          .reloadable = true, .offset = OFF(database.commit_timeout),
          .doc = "How long a verified webhook may wait for its commit. Past that it is "
                 "answered 503 with Retry-After and CashPay sends it again." },
        { .section = "database", .name = "max_batch", .type = CONFIG_UINT,
          .default_value = "256", .min = 1, .max = 65536, .offset = OFF(database.max_batch),
          .doc = "Most webhooks committed together in one transaction." },
        { .section = "database", .name = "wal_warn_bytes", .type = CONFIG_SIZE,
          .unit = "bytes", .default_value = "67108864", .min = 1048576,
          .max = UINT64_C(1) << 40, .reloadable = true, .offset = OFF(database.wal_warn_bytes),
          .doc = "Size of the write-ahead log past which a warning is logged and /healthz "
                 "reports a problem. A growing log usually means a reader keeps a "
                 "transaction open, so checkpoints cannot finish. It also sets the "
                 "checkpoint cadence (every quarter of it) and SQLite's "
                 "journal_size_limit (half of it)." },

        { .section = "database", .name = "backend", .type = CONFIG_ENUM,
          .default_value = "sqlite", .choices = "sqlite|postgresql",
          .offset = OFF(database.backend),
          .doc = "The database engine. sqlite: the file at path, on this machine. postgresql: "
                 "the server named by url, which several cashpayd instances on several hosts "
                 "may share; path, synchronous and wal_warn_bytes then do not apply "
                 "(durability is the server's synchronous_commit). With postgresql, "
                 "reconciliation is shared out among the instances, and cashpayctl runs "
                 "every command but migrate (the daemon migrates the database at "
                 "start)." },
        { .section = "database", .name = "url", .type = CONFIG_STRING,
          .default_value = "", .max = 1024, .offset = OFF(database.url),
          .doc = "With backend = postgresql: a libpq connection string, key=value "
                 "(host=db1,db2 port=5432 dbname=cashpay user=cashpayd "
                 "target_session_attrs=read-write) or a postgresql:// URI; several hosts "
                 "make a failover list. Put no password here: see password_file. Unless "
                 "the url sets them, connections get connect_timeout=5 (seconds, per "
                 "host), tcp_user_timeout=10000 (ms) and keepalives=1 keepalives_idle=5 "
                 "keepalives_interval=2 keepalives_count=3, in line with the default "
                 "commit_timeout and busy_timeout: a server host that vanishes without "
                 "a reset (power loss, a partition) is given up within about 10 s and "
                 "the next host of the list tried, instead of after the kernel's "
                 "retransmissions (about 15 minutes)." },
        { .section = "database", .name = "password_file", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .offset = OFF(database.password_file),
          .doc = "With backend = postgresql: a file whose first line is the database "
                 "password, read at every connection attempt and never logged. Default: "
                 "$CREDENTIALS_DIRECTORY/db-password when that exists (systemd's "
                 "LoadCredential=db-password:...), else none (libpq's own ~/.pgpass and "
                 "PGPASSFILE still apply)." },
        { .section = "database", .name = "writer_connections", .type = CONFIG_UINT,
          .default_value = "1", .min = 1, .max = 8,
          .offset = OFF(database.writer_connections),
          .doc = "How many connections write webhooks to the database, each with its own "
                 "thread and queue; all the webhooks of one charge go through the same one, "
                 "in the order they came. With backend = postgresql one connection waits "
                 "for each transaction's round trips and COMMIT before it starts the next; "
                 "with 2, one commits meanwhile, as a second instance would: worth it for "
                 "a lone instance under many concurrent deliveries (1,000 and more), not "
                 "for several instances on one database, whose connections would queue "
                 "for the lock that keeps the events' ids in commit order. sqlite allows "
                 "only 1 (SQLite has one writer)." },

        /* [return] */
        { .section = "return", .name = "success_url", .type = CONFIG_URL_TEMPLATE,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(ret.success_url),
          .doc = "Where to send the customer (303 See Other) once the payment is captured, "
                 "instead of showing the built-in page: an absolute http or https URL, or a "
                 "path starting with /. {charge_id} and {order_ref} are replaced by those "
                 "values, URL-encoded; no other placeholder is allowed. Empty: the built-in "
                 "page." },
        { .section = "return", .name = "failure_url", .type = CONFIG_URL_TEMPLATE,
          .default_value = "", .max = 180, .reloadable = true, .offset = OFF(ret.failure_url),
          .doc = "Like success_url, for a failed payment." },
        { .section = "return", .name = "refresh", .type = CONFIG_UINT, .unit = "seconds",
          .default_value = "3", .min = 1, .max = 3600, .reloadable = true,
          .offset = OFF(ret.refresh),
          .doc = "How often the 'Processing your payment' page reloads itself while the "
                 "webhook has not arrived." },
        { .section = "return", .name = "shop_name", .type = CONFIG_STRING,
          .default_value = "", .max = 128, .reloadable = true, .offset = OFF(ret.shop_name),
          .doc = "Name shown at the top of the return page. Empty: none." },
        { .section = "return", .name = "minor_units", .type = CONFIG_BOOL,
          .default_value = "no", .reloadable = true, .offset = OFF(ret.minor_units),
          .doc = "Whether amounts count the currency's minor unit (yes: 2000 USD is shown as "
                 "20.00). CashPay's amounts are whole currency units (2000 YER), hence no." },

        /* [log] */
        { .section = "log", .name = "level", .type = CONFIG_ENUM, .default_value = "info",
          .choices = "debug|info|notice|warning|err", .enum_values = log_level_values,
          .reloadable = true, .offset = OFF(log.level),
          .doc = "Least important messages logged: debug, info (one line per delivery), "
                 "notice, warning or err." },

        /* [cashpay] */
        { .section = "cashpay", .name = "api_url", .type = CONFIG_URL, .default_value = "",
          .max = 512, .offset = OFF(cashpay.api_url),
          .doc = "Base URL of the CashPay API, e.g. https://api.cashpay.example/v1; charges "
                 "are created at api_url/charges and fetched at api_url/charges/ID. Empty: "
                 "cashpayd never talks to CashPay (no checkout listener, no confirmation, "
                 "no reconciliation)." },
        { .section = "cashpay", .name = "public_url", .type = CONFIG_URL, .default_value = "",
          .max = 512, .offset = OFF(cashpay.public_url),
          .doc = "How CashPay and the customer's browser reach this daemon, e.g. "
                 "https://shop.example. A created charge's post_url is public_url + "
                 "[http] webhook_path and its redirect_url public_url + return_path + "
                 "?ref=RETURN_REF. Needed for creating charges." },
        { .section = "cashpay", .name = "token_file", .type = CONFIG_PATH, .default_value = "",
          .max = 180, .offset = OFF(cashpay.token_file),
          .doc = "A file holding the API's bearer token (surrounding blanks trimmed), read "
                 "again whenever it changes; one older than token_lifetime is warned about. "
                 "Exactly one of token_file and token_url is needed with api_url." },
        { .section = "cashpay", .name = "token_url", .type = CONFIG_URL, .default_value = "",
          .max = 512, .offset = OFF(cashpay.token_url),
          .doc = "An OAuth2 token endpoint (RFC 6749 client credentials grant): cashpayd "
                 "POSTs grant_type=client_credentials with client_id and the secret of "
                 "client_secret_file by HTTP Basic, and uses the access_token it answers "
                 "until refresh_margin before it expires." },
        { .section = "cashpay", .name = "client_id", .type = CONFIG_STRING, .default_value = "",
          .max = 256, .offset = OFF(cashpay.client_id),
          .doc = "The client id for token_url; required with it." },
        { .section = "cashpay", .name = "client_secret_file", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .offset = OFF(cashpay.client_secret_file),
          .doc = "File holding the client secret for token_url (surrounding blanks trimmed). "
                 "Default: $CREDENTIALS_DIRECTORY/" CONFIG_CLIENT_SECRET_CREDENTIAL " when the "
                 "CREDENTIALS_DIRECTORY environment variable is set, else "
                 CONFIG_DEFAULT_CLIENT_SECRET_FILE "." },
        { .section = "cashpay", .name = "token_lifetime", .type = CONFIG_UINT,
          .unit = "seconds", .default_value = "3300", .min = 60, .max = 86400 * 7,
          .offset = OFF(cashpay.token_lifetime),
          .doc = "How long a token lives when the token endpoint does not say (expires_in), "
                 "and the age past which a token_file is warned about. CashPay's guide: 55 "
                 "minutes." },
        { .section = "cashpay", .name = "refresh_margin", .type = CONFIG_UINT,
          .unit = "seconds", .default_value = "300", .min = 0, .max = 86400,
          .offset = OFF(cashpay.refresh_margin),
          .doc = "A token is renewed this long before it expires, by one request however "
                 "many API calls wait for it. Must be less than token_lifetime." },
        { .section = "cashpay", .name = "request_timeout", .type = CONFIG_UINT,
          .unit = "seconds", .default_value = "10", .min = 1, .max = 300,
          .offset = OFF(cashpay.request_timeout),
          .doc = "Longest one API request may take, connecting included." },
        { .section = "cashpay", .name = "max_inflight", .type = CONFIG_UINT,
          .default_value = "256", .min = 1, .max = 4096, .offset = OFF(cashpay.max_inflight),
          .doc = "Most API requests in flight at once; further ones wait their turn. Every "
                 "confirmed webhook, held checkout request and waiting return page holds one "
                 "while CashPay answers, so this bounds them to about max_inflight / CashPay's "
                 "latency a second (256 at 50 ms: 5,000; 64 at 100 ms: 640), and the checkout "
                 "listener answers 503 at once beyond max_inflight held requests. Each request "
                 "in flight is a kept-alive connection to CashPay." },
        { .section = "cashpay", .name = "max_response", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "1048576", .min = 1024, .max = 16777216,
          .offset = OFF(cashpay.max_response),
          .doc = "Largest API or token answer read; a longer one is an error, never "
                 "recorded as truth." },
        { .section = "cashpay", .name = "reconcile_after", .type = CONFIG_UINT,
          .unit = "seconds", .default_value = "300", .min = 1, .max = 86400 * 30,
          .offset = OFF(cashpay.reconcile_after),
          .doc = "An INITIATED order untouched this long is fetched from the API, then again "
                 "at doubling intervals (at most an hour apart) until it is CAPTURED or "
                 "FAILED or reconcile_for has passed. Below 300 it also shrinks the looks "
                 "after an unconfirmed webhook (about 5 s, 30 s, 2 min) in proportion, "
                 "for tests." },
        { .section = "cashpay", .name = "reconcile_for", .type = CONFIG_UINT,
          .unit = "seconds", .default_value = "259200", .min = 60, .max = 86400 * 365,
          .offset = OFF(cashpay.reconcile_for),
          .doc = "How long after an order was first seen reconciliation keeps fetching it "
                 "(default 3 days). Must be more than reconcile_after." },

        /* [checkout] */
        { .section = "checkout", .name = "listen", .type = CONFIG_LISTEN,
          .default_value = "127.0.0.1:9181", .min = 0, .max = CONFIG_LISTEN_MAX,
          .offset = OFF(checkout.listen),
          .doc = "Addresses of the checkout listener (POST /charges), written as in [http] "
                 "listen; used only when [cashpay] api_url is set. Empty disables it. Anyone "
                 "who reaches it can create charges: keep it on loopback or set token_file." },
        { .section = "checkout", .name = "token_file", .type = CONFIG_PATH,
          .default_value = "", .max = 180, .reloadable = true,
          .offset = OFF(checkout.token_file),
          .doc = "When set, a file holding the token the merchant's application must send "
                 "as Authorization: Bearer TOKEN; other requests are answered 401. One token "
                 "per line, any of them accepted (rotation); re-read on SIGHUP. Empty: no "
                 "token is asked for." },
        { .section = "checkout", .name = "max_body", .type = CONFIG_SIZE, .unit = "bytes",
          .default_value = "32768", .min = 256, .max = 1048576, .reloadable = true,
          .offset = OFF(checkout.max_body),
          .doc = "Largest POST /charges body accepted; a larger one is answered 413. The "
                 "fields need a few hundred bytes; a description may have 4096, and six "
                 "times that as JSON escapes." },
};

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

const struct config_section *config_sections(size_t *ret_n)
{
        *ret_n = sizeof(sections) / sizeof(sections[0]);
        return sections;
}

const struct config_key *config_keys(size_t *ret_n)
{
        *ret_n = N_KEYS;
        return keys;
}

const char *config_type_name(enum config_type t)
{
        switch (t) {
        case CONFIG_STRING: return "text";
        case CONFIG_PATH: return "absolute path";
        case CONFIG_URLPATH: return "URL path";
        case CONFIG_UINT: return "integer";
        case CONFIG_SIZE: return "size";
        case CONFIG_BOOL: return "boolean";
        case CONFIG_ENUM: return "choice";
        case CONFIG_LISTEN: return "address list";
        case CONFIG_CIDRS: return "CIDR list";
        case CONFIG_URL_TEMPLATE: return "URL template";
        case CONFIG_HEADER: return "header name";
        case CONFIG_FIELD: return "field path";
        case CONFIG_URL: return "URL";
        }
        return "invalid";
}

const struct config_key *config_key_find(const char *section, const char *name, size_t *ret_i)
{
        for (size_t i = 0; i < N_KEYS; i++) {
                if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
                        *ret_i = i;
                        return &keys[i];
                }
        }
        return NULL;
}

bool config_section_known(const char *name)
{
        for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
                if (strcmp(sections[i].name, name) == 0)
                        return true;
        return false;
}

const char *config_verify_scheme_name(enum verify_scheme v)
{
        switch (v) {
        case VERIFY_HMAC: return "hmac";
        case VERIFY_STANDARD_WEBHOOKS: return "standard-webhooks";
        case VERIFY_NONE: return "none";
        }
        return "invalid";
}

bool config_confirm_api(const struct config *cfg)
{
        return cfg->webhook.confirm == CONFIRM_API ||
               (cfg->webhook.confirm == CONFIRM_AUTO && cfg->cashpay.api_url);
}

const char *config_log_level_name(enum log_level l)
{
        switch (l) {
        case LOG_LEVEL_ERR: return "err";
        case LOG_LEVEL_WARNING: return "warning";
        case LOG_LEVEL_NOTICE: return "notice";
        case LOG_LEVEL_INFO: return "info";
        case LOG_LEVEL_DEBUG: return "debug";
        }
        return "invalid";
}
