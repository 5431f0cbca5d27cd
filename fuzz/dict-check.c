/*
 * dict-check — does the config fuzzer's dictionary name every section and
 * key of the key table? A key added to config.c without a dictionary entry
 * would be reached by the fuzzer only by luck, byte by byte; this test (in
 * the "fuzz" suite) fails instead, naming what is missing.
 *
 *   dict-check DICT_FILE
 *
 * An entry counts when the file has a line holding exactly "[SECTION]" or
 * "NAME = " in double quotes, as libFuzzer reads them.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cashpay/config.h"

#define DICT_MAX (1 << 20)

static bool has_entry(const char *dict, const char *entry)
{
        char line[256];
        size_t n = (size_t)snprintf(line, sizeof(line), "\n\"%s\"\n", entry);

        return n < sizeof(line) && strstr(dict, line) != NULL;
}

/* The file with a newline in front and one at the end, so every line is "\n...\n". */
static char *read_dict(const char *path)
{
        FILE *f = fopen(path, "r");
        char *buf = malloc(DICT_MAX + 3);
        size_t n;

        if (!f || !buf) {
                perror(path);
                exit(2);
        }
        buf[0] = '\n';
        n = fread(buf + 1, 1, DICT_MAX, f);
        fclose(f);
        buf[n + 1] = '\n';
        buf[n + 2] = '\0';
        return buf;
}

int main(int argc, char **argv)
{
        size_t n_sections, n_keys, missing = 0;
        const struct config_section *sections = config_sections(&n_sections);
        const struct config_key *keys = config_keys(&n_keys);
        char entry[128];

        if (argc != 2) {
                fprintf(stderr, "usage: %s DICT_FILE\n", argv[0]);
                return 2;
        }
        char *dict = read_dict(argv[1]);
        for (size_t i = 0; i < n_sections; i++) {
                snprintf(entry, sizeof(entry), "[%s]", sections[i].name);
                if (!has_entry(dict, entry) && ++missing)
                        printf("missing: \"%s\"\n", entry);
        }
        for (size_t i = 0; i < n_keys; i++) {
                snprintf(entry, sizeof(entry), "%s = ", keys[i].name);
                if (!has_entry(dict, entry) && ++missing)
                        printf("missing: \"%s\" ([%s])\n", entry, keys[i].section);
        }
        free(dict);
        printf("%zu sections, %zu keys, %zu missing from %s\n", n_sections, n_keys, missing,
               argv[1]);
        return missing ? 1 : 0;
}
