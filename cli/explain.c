/* SPDX-License-Identifier: MIT */
/*
 * explain.c — `dchatctl explain`: the journal catalog's explanation of an
 * event, without journald (the catalog is built in: cli/catalog.c).  Given
 * an event's stderr line (or KEY=VALUE pairs of it), the explanation has
 * the line's values in it, as `journalctl -x` would put them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "explain.h"

#define FIELDS_MAX 32

struct field {
        char key[32];           /* DCHAT_PEER, from peer= */
        char value[256];
};

/* The KEY=VALUE pairs of s (a stderr line: values may be "quoted"); fields with a catalog name. */
static unsigned parse_pairs(const char *s, struct field *f, unsigned max, char *event, size_t cap)
{
        unsigned n = 0;

        while (*s) {
                while (*s == ' ')
                        s++;
                const char *eq = strchr(s, '=');
                const char *sp = strchr(s, ' ');
                if (!eq || (sp && sp < eq)) {
                        /* a word without '=': the event's name, as `explain reply-deferred` gives it */
                        size_t l = sp ? (size_t) (sp - s) : strlen(s);
                        if (l && l < cap && !event[0]) {
                                memcpy(event, s, l);
                                event[l] = '\0';
                        }
                        if (!sp)
                                break;
                        s = sp;
                        continue;
                }
                char key[32], value[256];
                size_t kl = (size_t) (eq - s), vl = 0;
                snprintf(key, sizeof key, "%.*s", (int) kl, s);
                s = eq + 1;
                if (*s == '"') {
                        for (s++; *s && *s != '"'; s++) {
                                if (*s == '\\' && s[1])
                                        s++;
                                if (vl + 1 < sizeof value)
                                        value[vl++] = *s;
                        }
                        if (*s == '"')
                                s++;
                } else
                        for (; *s && *s != ' '; s++)
                                if (vl + 1 < sizeof value)
                                        value[vl++] = *s;
                value[vl] = '\0';
                if (!strcmp(key, "event")) {
                        snprintf(event, cap, "%s", value);
                        continue;
                }
                if (n == max)
                        continue;
                /* node=node1 is DCHAT_NODE=node1 */
                snprintf(f[n].key, sizeof f[n].key, "DCHAT_%s", key);
                for (char *c = f[n].key; *c; c++)
                        *c = (char) toupper((unsigned char) *c);
                snprintf(f[n].value, sizeof f[n].value, "%s", value);
                n++;
        }
        return n;
}

/* text with @FIELD@ replaced by the value given, or by <field> when there is none. */
static void fill(const char *text, const struct field *f, unsigned n)
{
        for (const char *p = text; *p;) {
                const char *at = p[0] == '@' ? strchr(p + 1, '@') : NULL;
                if (!at || at - p > 31) {
                        fputc(*p++, stdout);
                        continue;
                }
                char key[32];
                snprintf(key, sizeof key, "%.*s", (int) (at - p - 1), p + 1);
                const char *v = NULL;
                for (unsigned i = 0; i < n && !v; i++)
                        if (!strcmp(f[i].key, key))
                                v = f[i].value;
                if (v)
                        fputs(v, stdout);
                else {
                        fputc('<', stdout);
                        for (const char *c = key + (strncmp(key, "DCHAT_", 6) ? 0 : 6); *c; c++)
                                fputc(tolower((unsigned char) *c), stdout);
                        fputc('>', stdout);
                }
                p = at + 1;
        }
}

int cmd_explain(int argc, char **argv, const char *socket_path)
{
        struct field f[FIELDS_MAX];
        char event[64] = "", line[4096] = "";
        size_t off = 0;
        (void) socket_path;

        if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                printf("usage: dchatctl explain [EVENT | MESSAGE_ID | 'LINE']  (LINE: an event's line from dchatd's "
                       "stderr, or KEY=VALUE...)\n");
                return 0;
        }
        if (argc < 2) {
                printf("dchatd's events (dchatctl explain EVENT explains one):\n");
                for (unsigned i = 0; i < catalog_n; i++) {
                        printf("  %-18s ", catalog[i].event);
                        fill(catalog[i].subject, NULL, 0);
                        printf("\n");
                }
                return 0;
        }
        for (int i = 1; i < argc; i++)
                off += (size_t) snprintf(line + off, off < sizeof line ? sizeof line - off : 0, "%s%s", i > 1 ? " " : "",
                                         argv[i]);
        unsigned n = parse_pairs(line, f, FIELDS_MAX, event, sizeof event);
        for (unsigned i = 0; i < catalog_n; i++) {
                if (strcmp(catalog[i].event, event) && strcmp(catalog[i].id, event))
                        continue;
                printf("-- %s (%s)\n", catalog[i].event, catalog[i].id);
                fill(catalog[i].subject, f, n);
                printf("\n\n");
                /* the text, without the empty lines the catalog leaves between entries */
                size_t len = strlen(catalog[i].text);
                while (len && catalog[i].text[len - 1] == '\n')
                        len--;
                char *t = strndup(catalog[i].text, len);
                fill(t ? t : catalog[i].text, f, n);
                free(t);
                printf("\n");
                return 0;
        }
        fprintf(stderr, "dchatctl: explain: no event '%s' (dchatctl explain lists them)\n", event[0] ? event : line);
        return 1;
}
