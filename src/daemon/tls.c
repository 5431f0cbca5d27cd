/*
 * tls — the certificate the public listeners present; see tls.h.
 *
 * tls_install() runs on the main thread only (start-up and SIGHUP); the
 * handshakes on libmicrohttpd's threads only read the current pointer.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/x509.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cashpay/log.h"
#include "cashpay/util.h"
#include "src/daemon/tls.h"

/* A PEM chain with a few intermediates is a few kilobytes. */
#define PEM_MAX (1024 * 1024)
#define KEY_ID_MAX 64

struct tls_cert {
        gnutls_pcert_st *chain;
        unsigned n;
        gnutls_privkey_t key;
        int64_t not_after;
        char *cert_file;
        struct tls_cert *older; /* retired before this one */
};

static _Atomic(struct tls_cert *) current;
static struct tls_cert *retired;

static void tls_cert_free(struct tls_cert *c)
{
        for (unsigned i = 0; c->chain && i < c->n; i++)
                gnutls_pcert_deinit(&c->chain[i]);
        free(c->chain);
        if (c->key)
                gnutls_privkey_deinit(c->key);
        free(c->cert_file);
        free(c);
}
DEFINE_FREEP(struct tls_cert, tls_cert_free)

static void datum_free(gnutls_datum_t *d)
{
        if (d->data)
                explicit_bzero(d->data, d->size); /* the key file's bytes */
        free(d->data);
}

/* The whole file, with errno kept for the message (gnutls_load_file loses it). */
static int read_file(const char *path, const char *what, gnutls_datum_t *ret,
                     char *err, size_t err_len)
{
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;

        if (fd < 0 || fstat(fd, &st) < 0)
                return err_set(err, err_len, -errno, "cannot read the TLS %s %s: %s", what, path,
                               strerror(errno));
        if (!S_ISREG(st.st_mode))
                return err_set(err, err_len, -EINVAL, "the TLS %s %s is not a regular file",
                               what, path);
        if (st.st_size > PEM_MAX || st.st_size == 0)
                return err_set(err, err_len, -EINVAL, "the TLS %s %s is %s", what, path,
                               st.st_size ? "larger than 1 MiB" : "empty");
        ret->data = malloc((size_t) st.st_size);
        if (!ret->data)
                return -ENOMEM;
        ssize_t n = read(fd, ret->data, (size_t) st.st_size);
        if (n != st.st_size) {
                int r = n < 0 ? -errno : -EIO;
                datum_free(ret);
                ret->data = NULL;
                return err_set(err, err_len, r, "cannot read the TLS %s %s: %s", what, path,
                               strerror(-r));
        }
        ret->size = (unsigned) n;
        return 0;
}

static void format_time(int64_t t, char buf[32])
{
        struct tm tm;
        time_t tt = (time_t) t;

        if (!gmtime_r(&tt, &tm) || !strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
                snprintf(buf, 32, "%lld", (long long) t);
}

/* The leaf must be valid now: a server presenting an expired one is down. */
static int check_validity(gnutls_x509_crt_t leaf, const char *path, int64_t *ret_not_after,
                          char *err, size_t err_len)
{
        int64_t now = time(NULL);
        int64_t not_before = gnutls_x509_crt_get_activation_time(leaf);
        int64_t not_after = gnutls_x509_crt_get_expiration_time(leaf);
        char when[32];

        if (not_before == -1 || not_after == -1)
                return err_set(err, err_len, -EINVAL, "%s: the certificate has no readable "
                               "validity period", path);
        if (not_after <= now) {
                format_time(not_after, when);
                return err_set(err, err_len, -EINVAL, "%s: the certificate expired on %s",
                               path, when);
        }
        if (not_before > now) {
                format_time(not_before, when);
                return err_set(err, err_len, -EINVAL, "%s: the certificate is not valid "
                               "before %s", path, when);
        }
        *ret_not_after = not_after;
        return 0;
}

static int import_key(const gnutls_datum_t *pem, const char *path, gnutls_privkey_t *ret,
                      char *err, size_t err_len)
{
        gnutls_privkey_t key;
        int r = gnutls_privkey_init(&key);

        if (r < 0)
                return -ENOMEM;
        r = gnutls_privkey_import_x509_raw(key, pem, GNUTLS_X509_FMT_PEM, NULL, 0);
        if (r < 0) {
                gnutls_privkey_deinit(key);
                return err_set(err, err_len, -EINVAL, "%s: not an unencrypted PEM private "
                               "key (%s)", path, gnutls_strerror(r));
        }
        *ret = key;
        return 0;
}

/* The key's public half against the leaf's, by their SHA-256 key ids. */
static int check_key_matches(gnutls_x509_crt_t leaf, gnutls_privkey_t key, const char *cert_file,
                             const char *key_file, char *err, size_t err_len)
{
        unsigned char leaf_id[KEY_ID_MAX], key_id[KEY_ID_MAX];
        size_t leaf_len = sizeof(leaf_id), key_len = sizeof(key_id);
        gnutls_pubkey_t pub;
        int r;

        if (gnutls_pubkey_init(&pub) < 0)
                return -ENOMEM;
        r = gnutls_pubkey_import_privkey(pub, key, 0, 0);
        if (r == 0)
                r = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, key_id, &key_len);
        gnutls_pubkey_deinit(pub);
        if (r == 0)
                r = gnutls_x509_crt_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, leaf_id, &leaf_len);
        if (r < 0)
                return err_set(err, err_len, -EINVAL, "%s: cannot compare it with %s (%s)",
                               key_file, cert_file, gnutls_strerror(r));
        if (key_len != leaf_len || memcmp(key_id, leaf_id, key_len) != 0)
                return err_set(err, err_len, -EINVAL, "%s is not the private key of the "
                               "certificate in %s", key_file, cert_file);
        return 0;
}

static void crt_list_free(gnutls_x509_crt_t *crts, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
}

/* Checks the parsed chain and key and moves them into @c. */
static int fill_cert(struct tls_cert *c, const gnutls_datum_t *cert_pem,
                     const gnutls_datum_t *key_pem, const char *cert_file, const char *key_file,
                     char *err, size_t err_len)
{
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        int r = gnutls_x509_crt_list_import2(&crts, &n, cert_pem, GNUTLS_X509_FMT_PEM, 0);

        if (r < 0 || n == 0)
                return err_set(err, err_len, r == GNUTLS_E_MEMORY_ERROR ? -ENOMEM : -EINVAL,
                               "%s: no PEM certificate in it (%s)", cert_file,
                               gnutls_strerror(r < 0 ? r : GNUTLS_E_BASE64_DECODING_ERROR));
        r = check_validity(crts[0], cert_file, &c->not_after, err, err_len);
        if (r == 0)
                r = import_key(key_pem, key_file, &c->key, err, err_len);
        if (r == 0)
                r = check_key_matches(crts[0], c->key, cert_file, key_file, err, err_len);
        if (r == 0) {
                c->chain = calloc(n, sizeof(*c->chain));
                r = c->chain ? 0 : -ENOMEM;
        }
        if (r == 0 && gnutls_pcert_import_x509_list(c->chain, crts, &n, 0) < 0)
                r = err_set(err, err_len, -EINVAL, "%s: cannot use the certificate chain",
                            cert_file);
        if (r == 0)
                c->n = n;
        crt_list_free(crts, n);
        return r;
}

static int load(const char *cert_file, const char *key_file, struct tls_cert **ret,
                char *err, size_t err_len)
{
        _cleanup_(tls_cert_freep) struct tls_cert *c = calloc(1, sizeof(*c));
        gnutls_datum_t cert_pem = { 0 }, key_pem = { 0 };
        int r;

        if (!c || !(c->cert_file = strdup(cert_file)))
                return err_set(err, err_len, -ENOMEM, "out of memory");
        r = read_file(cert_file, "certificate", &cert_pem, err, err_len);
        if (r == 0)
                r = read_file(key_file, "key", &key_pem, err, err_len);
        if (r == 0)
                r = fill_cert(c, &cert_pem, &key_pem, cert_file, key_file, err, err_len);
        datum_free(&cert_pem);
        datum_free(&key_pem);
        if (r == -ENOMEM)
                return err_set(err, err_len, r, "%s: out of memory", cert_file);
        if (r == 0)
                *ret = TAKE_PTR(c);
        return r;
}

int tls_check(const char *cert_file, const char *key_file, int64_t *ret_not_after,
              char *err, size_t err_len)
{
        struct tls_cert *c;
        int r = load(cert_file, key_file, &c, err, err_len);

        if (r < 0)
                return r;
        *ret_not_after = c->not_after;
        tls_cert_free(c);
        return 0;
}

int tls_install(const char *cert_file, const char *key_file, char *err, size_t err_len)
{
        struct tls_cert *c;
        int r = load(cert_file, key_file, &c, err, err_len);

        if (r < 0)
                return r;
        struct tls_cert *old = atomic_exchange_explicit(&current, c, memory_order_acq_rel);
        if (old) { /* a handshake may still be using it: see tls.h */
                old->older = retired;
                retired = old;
        }
        return 0;
}

int64_t tls_not_after(void)
{
        struct tls_cert *c = atomic_load_explicit(&current, memory_order_acquire);

        return c ? c->not_after : 0;
}

void tls_warn_expiry(int64_t now)
{
        struct tls_cert *c = atomic_load_explicit(&current, memory_order_acquire);
        char when[32];

        if (!c || c->not_after - now > (int64_t) TLS_EXPIRY_WARNING_DAYS * 86400)
                return;
        format_time(c->not_after, when);
        if (c->not_after <= now)
                log_warning("the TLS certificate from %s EXPIRED on %s: clients refuse to "
                            "connect; renew it and reload", c->cert_file, when);
        else
                log_warning("the TLS certificate from %s expires in %lld day(s), on %s: renew "
                            "it and reload", c->cert_file,
                            (long long) ((c->not_after - now) / 86400), when);
}

int tls_certificate_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_dn,
                             int nreqs, const gnutls_pk_algorithm_t *pk_algos,
                             int pk_algos_length, gnutls_pcert_st **pcert,
                             unsigned int *pcert_length, gnutls_privkey_t *privkey)
{
        struct tls_cert *c = atomic_load_explicit(&current, memory_order_acquire);

        if (!c)
                return -1; /* the handshake fails; never reached once serving */
        *pcert = c->chain;
        *pcert_length = c->n;
        *privkey = c->key;
        return 0;
}

int tls_send_and_close(gnutls_session_t session, const void *data, size_t len)
{
        ssize_t w = gnutls_record_send(session, data, len);

        if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                return 0;
        if (w < 0 || (size_t) w != len)
                return -EIO;
        /* The sending side only: the rest of the body is still read. */
        if (gnutls_bye(session, GNUTLS_SHUT_WR) != GNUTLS_E_SUCCESS)
                return -EIO;
        return 1;
}

void tls_shutdown(void)
{
        struct tls_cert *c = atomic_exchange(&current, NULL);

        if (c)
                tls_cert_free(c);
        while (retired) {
                c = retired;
                retired = c->older;
                tls_cert_free(c);
        }
}
