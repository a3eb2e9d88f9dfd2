/* SPDX-License-Identifier: MIT */
/*
 * note.c — dchatctl note: the shared notes, a small key-value store the
 * server keeps beside the chat log (daemon/notes.h).  One NOTE request, then
 * its answers: POST_WAIT while a write waits for the critical section, then
 * a NOTE_REPLY (a list: one per note, all but the last flagged NOTE_MORE) or
 * an ERROR.  Everything dchatd would refuse is refused here first, with a
 * usage error (exit 2) that says what a key, a value or N may be.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "number.h"
#include "proto.h"

#define KEY_RULE "1 to 64 of A-Z a-z 0-9 . _ - : /, starting with a letter or a digit"

static const struct note_cmd {
        const char *name;
        uint8_t op;
        int min_args, max_args;         /* KEY and the rest; -1: no limit */
        bool json, unlocked;            /* the options it takes beside -s and --help */
} note_cmds[] = {
        { "set", NOTE_SET, 2, -1, false, false },
        { "get", NOTE_GET, 1, 1, true, false },
        { "incr", NOTE_INCR, 1, 2, false, true },
        { "list", NOTE_LIST, 0, 0, true, false },
        { "del", NOTE_DEL, 1, 1, false, false },
};

void note_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] note set KEY VALUE...\n"
                   "       dchatctl [-s SOCKET] note get [--json] KEY\n"
                   "       dchatctl [-s SOCKET] note incr [--unlocked] KEY [N]\n"
                   "       dchatctl [-s SOCKET] note list [--json]\n"
                   "       dchatctl [-s SOCKET] note del KEY\n"
                   "The shared notes: a small key-value store that the server keeps (a server group replicates\n"
                   "it).  Writes run inside the critical section, like posts: incr from many nodes at once\n"
                   "loses no update.\n"
                   "  set KEY VALUE...     KEY's value becomes VALUE (its words joined by spaces, as post's text;\n"
                   "                       options go before KEY)\n"
                   "  get KEY              prints KEY's value\n"
                   "  incr KEY [N]         adds N (default 1; a whole number, may be negative) to KEY's value, a\n"
                   "                       decimal integer (a missing note counts as 0); prints the new value\n"
                   "  list                 every note, one line each: KEY = VALUE, in key order\n"
                   "  del KEY              removes KEY\n"
                   "KEY: %s; VALUE: 1 to %d bytes\n"
                   "of UTF-8, no control characters.\n"
                   "  --json               get: one JSON object (key, value, version, node, time, unix_time);\n"
                   "                       list: an array of them\n"
                   "  --unlocked           incr without the critical section: a demonstration mode, which reads\n"
                   "                       and writes unguarded and so loses updates when nodes increment at once\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n",
                   KEY_RULE, DCHAT_VALUE_MAX);
}

/* A word of the command line, for a message: control bytes as \xNN, a long one cut. */
static const char *shown(const char *s, char *buf, size_t cap)
{
        size_t o = 0;

        for (; *s && o + 8 < cap; s++) {
                unsigned char c = (unsigned char) *s;
                if (c < 0x20 || c == 0x7f)
                        o += (size_t) snprintf(buf + o, cap - o, "\\x%02x", c);
                else
                        buf[o++] = (char) c;
        }
        snprintf(buf + o, cap - o, "%s", *s ? "..." : "");
        return buf;
}

/* A note as get --json prints it (list --json: one of its array). */
static void print_json(const struct dchat_msg *m)
{
        static struct dchat_entry when;         /* entry_format_iso's input: the time, in UTC */
        char iso[48];

        when.time = m->note_reply.time;
        when.utc_offset = 0;
        entry_format_iso(&when, iso, sizeof iso);
        printf("{\"key\":");
        json_put_str(m->note_reply.key.p, m->note_reply.key.len);
        printf(",\"value\":");
        json_put_str(m->note_reply.value.p, m->note_reply.value.len);
        printf(",\"version\":%llu,\"node\":", (unsigned long long) m->note_reply.version);
        json_put_str(m->note_reply.node.p, m->note_reply.node.len);
        printf(",\"time\":\"%s\",\"unix_time\":%lld}", iso, (long long) m->note_reply.time);
}

static bool same_key(const struct dchat_msg *m, const char *key)
{
        return m->note_reply.key.len == strlen(key) && !memcmp(m->note_reply.key.p, key, m->note_reply.key.len);
}

/* The answers to the request sent: 0, or 1 (said why). */
static int note_answers(const struct note_cmd *c, const char *what, const char *key, bool json)
{
        char waiting[DCHAT_ERROR_MAX + 1] = "";
        unsigned listed = 0;

        for (;;) {
                struct dchat_msg m;
                if (recv_msg(&m))
                        return 1;
                if (m.type == MSG_POST_WAIT) {
                        say_waiting(&m, "", waiting, sizeof waiting);   /* no silent wait, as post */
                        continue;
                }
                if (m.type == MSG_ERROR && m.error.code == ERR_NOT_FOUND && m.error.text.len == 0)
                        return fail("no note named %s", key);
                if (m.type == MSG_ERROR)
                        return print_error(what, &m);
                if (m.type != MSG_NOTE_REPLY)
                        return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
                const bool found = m.note_reply.flags & NOTE_FOUND;
                if (c->op == NOTE_LIST) {
                        if (found && ++listed > DCHAT_NOTES_MAX)
                                return fail("dchatd listed more than the %d notes a store holds", DCHAT_NOTES_MAX);
                        if (found && json) {
                                printf("%s", listed > 1 ? ",\n" : "[\n");
                                print_json(&m);
                        } else if (found)
                                printf("%.*s = %.*s\n", (int) m.note_reply.key.len, m.note_reply.key.p,
                                       (int) m.note_reply.value.len, m.note_reply.value.p);
                        if (m.note_reply.flags & NOTE_MORE)
                                continue;
                        if (json)
                                printf("%s]\n", listed ? "\n" : "[");
                        break;
                }
                /* one note: the one asked about (a DEL's answer may name none) */
                if (m.note_reply.key.len && !same_key(&m, key))
                        return fail("dchatd answered %s with another note (%.*s)", what, (int) m.note_reply.key.len,
                                    m.note_reply.key.p);
                if (c->op == NOTE_DEL || c->op == NOTE_SET)
                        break;          /* done: nothing to print */
                if (!found && c->op == NOTE_GET)
                        return fail("no note named %s", key);
                if (!found)
                        return fail("dchatd's answer to %s names no value", what);
                if (c->op == NOTE_GET && json) {
                        print_json(&m);
                        printf("\n");
                } else
                        printf("%.*s\n", (int) m.note_reply.value.len, m.note_reply.value.p);
                break;
        }
        if (fflush(stdout) != 0 || ferror(stdout))
                return fail("cannot write the %s: %s", c->op == NOTE_LIST ? "notes" : "value", strerror(errno));
        return 0;
}

/*
 * note SUBCOMMAND [OPTIONS] ARGS: options anywhere among the arguments but
 * for set, whose words after KEY are the value as they are (as post's text);
 * incr's N may be negative, so "-5" is an argument, not an option.
 */
int cmd_note(int argc, char **argv)
{
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' },
                                              { "unlocked", no_argument, NULL, 'U' },
                                              { "socket", required_argument, NULL, 's' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        const struct note_cmd *c = NULL;
        char what[16], buf[128];
        char **args;
        int n = 0, o;
        bool json = false, unlocked = false;

        for (size_t i = 0; argc >= 2 && i < sizeof note_cmds / sizeof note_cmds[0]; i++)
                if (!strcmp(argv[1], note_cmds[i].name))
                        c = &note_cmds[i];
        if (!c) {
                if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                        note_usage(stdout);
                        return 0;
                }
                if (argc >= 2)
                        fprintf(stderr, "dchatctl: note has no subcommand '%s'; it takes set, get, incr, list or del\n",
                                shown(argv[1], buf, sizeof buf));
                else
                        fprintf(stderr, "dchatctl: note takes set, get, incr, list or del\n");
                note_usage(stderr);
                return 2;
        }
        snprintf(what, sizeof what, "note %s", c->name);
        argc--;
        argv++;
        argv[0] = what;         /* getopt's own messages: "note set: invalid option" */
        args = calloc((size_t) argc, sizeof *args);
        if (!args)
                return fail("out of memory");
        /* the words are looked at here, and getopt is given only options (its own "--" handling would
         * go back to where it last stopped) */
        while (optind < argc) {
                const char *a = argv[optind];
                if (!strcmp(a, "--") || (c->op == NOTE_SET && n == 0 && (a[0] != '-' || !a[1]))) {
                        /* after "--", or set's KEY and value: the rest as it is */
                        optind += !strcmp(a, "--");
                        while (optind < argc)
                                args[n++] = argv[optind++];
                        break;
                }
                if (a[0] != '-' || !a[1] || (c->op == NOTE_INCR && a[1] >= '0' && a[1] <= '9')) {
                        args[n++] = argv[optind++];     /* an argument; incr's N may be negative */
                        continue;
                }
                if ((o = getopt_long(argc, argv, "+hs:", opts, NULL)) < 0)
                        break;
                if (o == 'j' && c->json)
                        json = true;
                else if (o == 'U' && c->unlocked)
                        unlocked = true;
                else if (o == 's')
                        socket_option(optarg);
                else if (o == 'h') {
                        free(args);
                        note_usage(stdout);
                        return 0;
                } else {
                        free(args);
                        if (o == 'j')
                                return usage_error("%s takes no --json (note get and note list do)", what);
                        if (o == 'U')
                                return usage_error("%s takes no --unlocked (note incr does)", what);
                        note_usage(stderr);
                        return 2;
                }
        }

        int r = 2;
        const char *key = n ? args[0] : "";
        char *value = NULL;
        size_t len = 0;
        int64_t delta = 1;

        if (n < c->min_args || (c->max_args >= 0 && n > c->max_args)) {
                static const char *const needs[] = { [NOTE_SET] = "a key and a value (note set KEY VALUE...)",
                                                     [NOTE_GET] = "one key (note get KEY)",
                                                     [NOTE_INCR] = "a key and at most a number (note incr KEY [N])",
                                                     [NOTE_LIST] = "no arguments",
                                                     [NOTE_DEL] = "one key (note del KEY)" };
                fprintf(stderr, "dchatctl: %s takes %s%s%s%s\n", what, needs[c->op], n > c->min_args ? " ('" : "",
                        n > c->min_args ? shown(args[n - 1], buf, sizeof buf) : "", n > c->min_args ? "')" : "");
                note_usage(stderr);
                goto out;
        }
        if (c->op != NOTE_LIST && !note_key_valid(key, strlen(key))) {
                usage_error("'%s' is not a note key: %s", shown(key, buf, sizeof buf), KEY_RULE);
                goto out;
        }
        if (c->op == NOTE_SET) {
                const char *why;
                FILE *f = open_memstream(&value, &len);
                if (!f) {
                        r = fail("out of memory");
                        goto out;
                }
                for (int i = 1; i < n; i++)
                        fprintf(f, "%s%s", i > 1 ? " " : "", args[i]);
                if (fclose(f) != 0) {
                        r = fail("out of memory");
                        goto out;
                }
                if (len == 0) {
                        usage_error("cannot set %s: the value is empty (note del %s removes a note)", key, key);
                        goto out;
                }
                if (len > DCHAT_VALUE_MAX) {
                        usage_error("cannot set %s: the value is %zu bytes, more than the %d a note holds", key,
                                    len, DCHAT_VALUE_MAX);
                        goto out;
                }
                if (text_validate(value, len, &why) < 0) {
                        usage_error("cannot set %s: %s", key, why);
                        goto out;
                }
        }
        if (c->op == NOTE_INCR && n == 2 && number_parse_i64(args[1], &delta) < 0) {
                usage_error("note incr takes N, a whole decimal number from %lld to %lld (such as 5 or -5), not '%s'",
                            (long long) INT64_MIN, (long long) INT64_MAX, shown(args[1], buf, sizeof buf));
                goto out;
        }

        struct dchat_msg m = { .type = MSG_NOTE, .tag = 1,
                               .note = { .op = c->op, .flags = unlocked ? NOTE_UNLOCKED : 0,
                                         .key = { key, (uint16_t) strlen(key) },
                                         .value = { value ? value : "", (uint16_t) len },
                                         .delta = c->op == NOTE_INCR ? delta : 0 } };
        r = connect_daemon() || send_msg(&m) ? 1 : note_answers(c, what, key, json);
out:
        free(value);
        free(args);
        return r;
}
