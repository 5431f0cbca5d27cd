/*
 * tls — the certificate the public listeners present, on GnuTLS through
 * libmicrohttpd.
 *
 * libmicrohttpd asks tls_certificate_callback() for the certificate at
 * every handshake (MHD_OPTION_HTTPS_CERT_CALLBACK), so installing a new one
 * changes what new connections get without touching open ones. That
 * callback carries no context pointer, so this module holds one
 * process-wide certificate. A replaced certificate is kept until
 * tls_shutdown(): GnuTLS does not copy what the callback returns and gives
 * no sign of when a session stops using it. That is a few kilobytes per
 * successful reload.
 *
 * Errors are negative errno, with a message naming the file in @err.
 */
#pragma once

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* TLS 1.2 and 1.3 only, otherwise GnuTLS's NORMAL choices. */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* Days before expiry from which the certificate is warned about. */
#define TLS_EXPIRY_WARNING_DAYS 14

/*
 * tls_check() - read @cert_file (a PEM chain, leaf first) and @key_file (its
 * unencrypted PEM key) and check them as tls_install() would, installing
 * nothing. Sets *@ret_not_after to the leaf's expiry (Unix time).
 * -ENOENT, -EACCES and the like: a file cannot be read; -EINVAL: not PEM,
 * not a key for this certificate, expired or not yet valid; -ENOMEM.
 */
int tls_check(const char *cert_file, const char *key_file, int64_t *ret_not_after,
              char *err, size_t err_len);

/*
 * tls_install() - tls_check(), then make this the certificate of every new
 * handshake. On failure the certificate in use (if any) stays.
 */
int tls_install(const char *cert_file, const char *key_file, char *err, size_t err_len);

/* tls_not_after() - the installed certificate's expiry; 0 when none. */
int64_t tls_not_after(void);

/*
 * tls_warn_expiry() - log a warning when the installed certificate expires
 * within TLS_EXPIRY_WARNING_DAYS of @now (Unix time), or has expired.
 */
void tls_warn_expiry(int64_t now);

/* The gnutls_certificate_retrieve_function2 handed to libmicrohttpd. */
int tls_certificate_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
                             int nreqs, const gnutls_pk_algorithm_t *pk_algos,
                             int pk_algos_length, gnutls_pcert_st **pcert,
                             unsigned int *pcert_length, gnutls_privkey_t *privkey);

/*
 * tls_send_and_close() - write @len bytes on a TLS @session (from
 * MHD_CONNECTION_INFO_GNUTLS_SESSION) past libmicrohttpd's own sending, as
 * one record, then send close_notify: for an answer that must go out while
 * libmicrohttpd still reads the request. Only from the connection's own
 * thread, with nothing else queued on it. Returns 1 when sent, 0 when
 * nothing could be written now, -EIO when the connection is unusable.
 */
int tls_send_and_close(gnutls_session_t session, const void *data, size_t len);

/* tls_shutdown() - free every certificate; no handshake may run any more. */
void tls_shutdown(void);
