/*
 * pg-migrate-run — pg_migrate() on a live server, for test_pg_schema.py:
 *     pg-migrate-run URL PASSWORD_FILE apply|check
 * Prints "version N" (the database's version afterwards) and exits 0, or
 * prints the error and exits 2 for -EPROTO, 1 for anything else.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "src/store/pg-internal.h"

static int read_password(const char *path, char *buf, size_t len)
{
        FILE *f = fopen(path, "re");

        if (!f)
                return -errno;
        if (!fgets(buf, (int) len, f))
                buf[0] = '\0';
        fclose(f);
        buf[strcspn(buf, "\r\n")] = '\0';
        return 0;
}

int main(int argc, char **argv)
{
        _cleanup_(PQfinishp) PGconn *c = NULL;
        char password[256], err[1024] = "";
        int version, r;

        if (argc != 4 || (strcmp(argv[3], "apply") != 0 && strcmp(argv[3], "check") != 0)) {
                fprintf(stderr, "usage: %s URL PASSWORD_FILE apply|check\n", argv[0]);
                return 1;
        }
        if (read_password(argv[2], password, sizeof(password)) < 0) {
                perror(argv[2]);
                return 1;
        }
        r = pg_connect(argv[1], password, &c, err, sizeof(err));
        if (r >= 0)
                r = pg_migrate(c, strcmp(argv[3], "apply") == 0, err, sizeof(err));
        if (r >= 0)
                r = pg_read_version(c, &version, err, sizeof(err));
        if (r < 0) {
                printf("error %d: %s\n", r, err);
                return r == -EPROTO ? 2 : 1;
        }
        printf("version %d (binary knows %d)\n", version, pg_schema_version());
        return 0;
}
