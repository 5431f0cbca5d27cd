/*
 * config-doc — writes conf/cashpayd.conf and cashpayd.conf(5) from the key
 * table in config.c, so the example file and the manual cannot drift from
 * what the parser accepts. The build checks the committed copies against
 * this program's output (--check) and can rewrite them (--write).
 *
 *   config-doc conf|man                   print to stdout
 *   config-doc --check conf|man FILE      exit 1 when FILE differs
 *   config-doc --write conf|man FILE      replace FILE
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cashpay/config.h"

#define WRAP_COLUMNS 78

static const char *const conf_header[] = {
        "# cashpayd.conf: settings of cashpayd(8) and cashpayctl(1).",
        "#",
        "# Every key is shown with its default value, commented out: remove the",
        "# leading '#' to change one. The full description of each key is in",
        "# cashpayd.conf(5). Check a changed file with 'cashpayd --check-config'",
        "# and apply it with 'systemctl reload cashpayd' (keys marked 'needs a",
        "# restart' with 'systemctl restart cashpayd').",
};

/* Text of the man page around the key list, one roff line per entry. */
static const char *const man_description[] = {
        ".B cashpayd",
        "and",
        ".B cashpayctl",
        "read their settings from an INI file,",
        (".I " CONFIG_DEFAULT_PATH),
        "unless another is named with",
        ".BR \\-\\-config .",
        ".PP",
        "The file is made of sections, a name in brackets on a line of its own,",
        "each followed by lines of the form",
        ".IR key \" = \" value .",
        "Blanks around keys and values are ignored, and a value cannot continue on",
        "the next line. Lines starting with",
        ".B #",
        "or",
        ".B ;",
        "are comments; a",
        ".B ;",
        "at the start of a value or after a blank starts a comment that runs to the",
        "end of the line, so a value cannot hold a blank followed by",
        ".BR ; .",
        "After comments and blanks are removed,",
        ".IR key = value",
        "must fit in 198 bytes.",
        ".PP",
        "Every key is optional and may appear once. An empty value",
        ".RI ( key \" =\")",
        "leaves a key unset when its default is unset, makes a list empty where",
        "that is allowed, and is an error elsewhere. An unknown section or key, a",
        "repeated key and a bad value are errors that name the file and the line;",
        ".B cashpayd \\-\\-check\\-config",
        "and",
        ".B cashpayctl check\\-config",
        "report them without starting anything.",
        ".PP",
        "Booleans are written yes, no, true, false, on, off, 1 or 0. Sizes are",
        "bytes, or a number followed by K, M or G (powers of 1024). Lists are",
        "separated by commas. Addresses are numeric, never resolved through DNS:",
        "host:port for IPv4, [address]:port for IPv6.",
};

static const char *const man_trailer[] = {
        ".SH RELOADING",
        "On",
        ".B SIGHUP",
        "(as sent by",
        ".BR \"systemctl reload cashpayd\" )",
        "the daemon reads this file and the secret file again. Keys marked",
        "\"applied on reload\" take effect at once. When the new file has an error,",
        "or changes a key that needs a restart, the reload is refused, the running",
        "settings stay as they were, and the log says why.",
        ".SH ENVIRONMENT",
        ".TP",
        ".B CREDENTIALS_DIRECTORY",
        "Set by systemd for a service with",
        ".BR LoadCredential= .",
        "When it is set and",
        ".B secret_file",
        "is not,",
        (".I $CREDENTIALS_DIRECTORY/" CONFIG_SECRET_CREDENTIAL),
        "is the secret file.",
        ".SH FILES",
        ".TP",
        (".I " CONFIG_DEFAULT_PATH),
        "The default configuration file.",
        ".TP",
        (".I " CONFIG_DEFAULT_SECRET_FILE),
        "The default secret file without systemd credentials.",
        ".SH \"SEE ALSO\"",
        ".BR cashpayd (8),",
        ".BR cashpayctl (1),",
        ".BR systemd.exec (5)",
};

static void print_lines(FILE *out, const char *const *lines, size_t n)
{
        for (size_t i = 0; i < n; i++)
                fprintf(out, "%s\n", lines[i]);
}

/* Word-wrap @text into lines of at most WRAP_COLUMNS, each starting with @prefix. */
static void wrap(FILE *out, const char *prefix, const char *text)
{
        size_t col = 0;
        const char *w = text;

        while (*w) {
                size_t len = strcspn(w, " ");

                if (col > 0 && col + 1 + len > WRAP_COLUMNS) {
                        fputc('\n', out);
                        col = 0;
                }
                col += (size_t)fprintf(out, "%s%.*s", col ? " " : prefix, (int)len, w);
                w += len;
                while (*w == ' ')
                        w++;
        }
        if (col)
                fputc('\n', out);
}

/* One sentence on what values the key takes and whether a reload applies it. */
static void describe(const struct config_key *k, char *buf, size_t len)
{
        unsigned long long lo = k->min, hi = k->max;
        const char *unit = k->unit ? k->unit : "", *sp = k->unit ? " " : "";
        const char *reload = k->reloadable ? "applied on reload" : "needs a restart";
        char choices[128];
        size_t n = 0;

        switch (k->type) {
        case CONFIG_UINT:
                snprintf(buf, len, "Integer from %llu to %llu%s%s; %s.", lo, hi, sp, unit, reload);
                return;
        case CONFIG_SIZE:
                snprintf(buf, len, "Size from %llu to %llu bytes; %s.", lo, hi, reload);
                return;
        case CONFIG_BOOL:
                snprintf(buf, len, "Boolean (yes or no); %s.", reload);
                return;
        case CONFIG_ENUM:
                for (const char *c = k->choices; *c && n + 3 < sizeof(choices); c++) {
                        if (*c == '|')
                                choices[n++] = ',', choices[n++] = ' ';
                        else
                                choices[n++] = *c;
                }
                choices[n] = '\0';
                snprintf(buf, len, "One of %s; %s.", choices, reload);
                return;
        case CONFIG_LISTEN: case CONFIG_CIDRS:
                snprintf(buf, len, "%s of %s%llu %s; %s.",
                         k->type == CONFIG_LISTEN ? "List" : "CIDR list",
                         lo ? "1 to " : "up to ", hi,
                         k->type == CONFIG_LISTEN ? "addresses" : "ranges", reload);
                return;
        default:
                snprintf(buf, len, "%s of at most %llu bytes; %s.",
                         config_type_name(k->type), hi, reload);
                buf[0] = (char)(buf[0] >= 'a' && buf[0] <= 'z' ? buf[0] - 'a' + 'A' : buf[0]);
                return;
        }
}

static void print_conf(FILE *out)
{
        size_t n_keys, n_sections;
        const struct config_key *keys = config_keys(&n_keys);
        const struct config_section *sections = config_sections(&n_sections);
        char facts[256];

        print_lines(out, conf_header, sizeof(conf_header) / sizeof(conf_header[0]));
        for (size_t s = 0; s < n_sections; s++) {
                fprintf(out, "\n[%s]\n", sections[s].name);
                wrap(out, "# ", sections[s].doc);
                for (size_t i = 0; i < n_keys; i++) {
                        if (strcmp(keys[i].section, sections[s].name) != 0)
                                continue;
                        describe(&keys[i], facts, sizeof(facts));
                        fputc('\n', out);
                        wrap(out, "# ", keys[i].doc);
                        wrap(out, "# ", facts);
                        fprintf(out, "#%s =%s%s\n", keys[i].name,
                                keys[i].default_value[0] ? " " : "", keys[i].default_value);
                }
        }
}

/* Roff-escape one line of text; a leading '.' or '\'' must not become a request. */
static void roff_text(FILE *out, const char *text)
{
        if (text[0] == '.' || text[0] == '\'')
                fputs("\\&", out);
        for (const char *c = text; *c; c++) {
                if (*c == '\\')
                        fputs("\\e", out);
                else if (*c == '-')
                        fputs("\\-", out);
                else
                        fputc(*c, out);
        }
}

static void print_man_key(FILE *out, const struct config_key *k)
{
        char facts[256];

        describe(k, facts, sizeof(facts));
        fputs(".TP\n\\fB", out);
        roff_text(out, k->name);
        fputs("\\fR =", out);
        if (k->default_value[0]) {
                fputs(" \\fI", out);
                roff_text(out, k->default_value);
                fputs("\\fR", out);
        }
        fputc('\n', out);
        roff_text(out, k->doc);
        fputs("\n.IP\n", out);
        roff_text(out, facts);
        fputc('\n', out);
}

static void print_man(FILE *out)
{
        size_t n_keys, n_sections;
        const struct config_key *keys = config_keys(&n_keys);
        const struct config_section *sections = config_sections(&n_sections);

        /* No hyphenation or justification: names such as X-Forwarded-For
         * must survive being copied out of a terminal. */
        fputs(".TH CASHPAYD.CONF 5 \"\" \"cashpayd\" \"File Formats\"\n.nh\n.ad l\n"
              ".SH NAME\ncashpayd.conf \\- settings of cashpayd and cashpayctl\n"
              ".SH SYNOPSIS\n.I " CONFIG_DEFAULT_PATH "\n.SH DESCRIPTION\n", out);
        print_lines(out, man_description, sizeof(man_description) / sizeof(man_description[0]));
        fputs(".SH OPTIONS\nEach key is shown with its default value.\n", out);
        for (size_t s = 0; s < n_sections; s++) {
                fprintf(out, ".SS \"[%s]\"\n", sections[s].name);
                roff_text(out, sections[s].doc);
                fputc('\n', out);
                for (size_t i = 0; i < n_keys; i++)
                        if (strcmp(keys[i].section, sections[s].name) == 0)
                                print_man_key(out, &keys[i]);
        }
        print_lines(out, man_trailer, sizeof(man_trailer) / sizeof(man_trailer[0]));
}

/* The generated text of @kind in a malloc'ed buffer. */
static int render(const char *kind, char **ret, size_t *ret_len)
{
        FILE *out;

        if (strcmp(kind, "conf") != 0 && strcmp(kind, "man") != 0)
                return -EINVAL;
        out = open_memstream(ret, ret_len);
        if (!out)
                return -errno;
        if (strcmp(kind, "conf") == 0)
                print_conf(out);
        else
                print_man(out);
        return fclose(out) == 0 ? 0 : -EIO;
}

static int read_file(const char *path, char **ret, size_t *ret_len)
{
        FILE *in = fopen(path, "re"), *out;
        char buf[4096];
        size_t n;

        if (!in)
                return -errno;
        out = open_memstream(ret, ret_len);
        if (!out) {
                fclose(in);
                return -ENOMEM;
        }
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                fwrite(buf, 1, n, out);
        n = (size_t)ferror(in);
        fclose(in);
        if (fclose(out) != 0 || n)
                return -EIO;
        return 0;
}

/* Line number (from 1) of the first difference between @a and @b. */
static unsigned first_difference(const char *a, size_t a_len, const char *b, size_t b_len)
{
        unsigned line = 1;

        for (size_t i = 0; i < a_len && i < b_len && a[i] == b[i]; i++)
                line += a[i] == '\n';
        return line;
}

static int check(const char *kind, const char *path, const char *text, size_t len)
{
        char *file = NULL;
        size_t file_len = 0;
        int r = read_file(path, &file, &file_len);

        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                free(file);
                return 1;
        }
        r = file_len != len || memcmp(file, text, len) != 0;
        if (r)
                fprintf(stderr, "%s: differs from the key table from line %u on; "
                        "regenerate it with 'config-doc --write %s %s' (or 'ninja "
                        "update-config-docs' in the build directory)\n",
                        path, first_difference(file, file_len, text, len), kind, path);
        free(file);
        return r;
}

static int write_file(const char *path, const char *text, size_t len)
{
        char *tmp = NULL;
        FILE *out;
        int r = 0;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        out = fopen(tmp, "we");
        if (!out) {
                r = -errno;
        } else {
                if (fwrite(text, 1, len, out) != len)
                        r = -EIO;
                if (fclose(out) != 0 && r == 0)
                        r = -EIO;
                if (r == 0 && rename(tmp, path) < 0)
                        r = -errno;
                if (r < 0)
                        unlink(tmp);
        }
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
        free(tmp);
        return r < 0 ? 1 : 0;
}

static int usage(void)
{
        fputs("usage: config-doc conf|man\n"
              "       config-doc --check conf|man FILE\n"
              "       config-doc --write conf|man FILE\n", stderr);
        return 2;
}

int main(int argc, char **argv)
{
        const char *mode = argc == 4 ? argv[1] : NULL, *kind = argv[argc == 4 ? 2 : 1];
        char *text = NULL;
        size_t len = 0;
        int r;

        if (argc != 2 && argc != 4)
                return usage();
        if (mode && strcmp(mode, "--check") != 0 && strcmp(mode, "--write") != 0)
                return usage();
        if (render(kind, &text, &len) < 0) {
                free(text);
                return usage();
        }
        if (!mode)
                r = fwrite(text, 1, len, stdout) == len ? 0 : 1;
        else if (strcmp(mode, "--check") == 0)
                r = check(kind, argv[3], text, len);
        else
                r = write_file(argv[3], text, len);
        free(text);
        return r;
}
