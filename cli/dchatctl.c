/* SPDX-License-Identifier: MIT */
/*
 * dchatctl — talk to the local dchatd over its UNIX socket.
 * Exit status: 0 success, 1 error (one line on stderr), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "key.h"
#include "number.h"
#include "proto.h"
#include "since.h"
#include "client.h"

#define VIEW_PAGE 256

static const char *socket_path;
static const char *command = "request";      /* for "post failed: ..." */
static int sock = -1;
static struct wbuf inbuf;
static struct dchat_entry entry;
static struct dchat_status status;

static void usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s socket] post [--hold SECONDS] [--] TEXT...\n"
                   "       dchatctl [-s socket] view [-n N | --since TIME | --since-seq SEQ] [-f] [--json]\n"
                   "       dchatctl [-s socket] status [--json]\n"
                   "       dchatctl [-s socket] verify [--json]\n"
                   "       dchatctl [-s socket] chat [-n N]\n"
                   "       dchatctl [-s socket] server add [--timeout SECONDS] NAME HOST:PORT   (root)\n"
                   "       dchatctl [-s socket] server remove NAME   (root)\n"
                   "       dchatctl [-s socket] trace [--since TIME] [--until TIME] [--post SEQ] [--order ORDER]\n"
                   "                          [--check] [--format FORMAT] [-o FILE] [--from FILE]...\n"
                   "       dchatctl explain [EVENT | 'LINE']\n"
                   "       dchatctl keygen [--force] [FILE]   (default " DCHAT_DEFAULT_KEY_FILE ")\n"
                   "The socket is $DCHAT_SOCKET, else %s.\n", DCHAT_DEFAULT_SOCKET);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
        va_list ap;
        fputs("dchatctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

/* connect() said EACCES: whose socket is it, and what to do */
static int fail_denied(void)
{
        struct stat st;
        struct passwd *pw = getpwuid(getuid());
        struct group *gr;
        char uname[32];

        if (stat(socket_path, &st) < 0 || !(gr = getgrgid(st.st_gid)))
                return fail("permission denied on %s: only root and the members of its group may use it "
                            "(see dchat.conf(5), control_group)", socket_path);
        if (st.st_gid == 0)
                return fail("permission denied on %s: only root may use it (its group is root: ask an admin "
                            "to create the group of control_group, see dchat.conf(5))", socket_path);
        if (pw)
                snprintf(uname, sizeof uname, "%s", pw->pw_name);
        else
                snprintf(uname, sizeof uname, "%u", (unsigned) getuid());
        return fail("permission denied on %s: you are not in group %s (ask an admin: usermod -aG %s %s, "
                    "then log in again)", socket_path, gr->gr_name, gr->gr_name, uname);
}

static int connect_daemon(void)
{
        struct sockaddr_un un = { .sun_family = AF_UNIX };

        if (strlen(socket_path) >= sizeof un.sun_path)
                return fail("socket path too long: %s", socket_path);
        strcpy(un.sun_path, socket_path);
        sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (sock < 0)
                return fail("socket: %s", strerror(errno));
        if (connect(sock, (struct sockaddr *) &un, sizeof un) < 0) {
                int e = errno;
                if (e == EACCES || e == EPERM)
                        return fail_denied();
                return fail("cannot connect to %s: %s (is dchatd running? see systemctl status dchatd.socket)",
                            socket_path, strerror(e));
        }
        return 0;
}

static int read_frame(struct dchat_msg *m, bool report);
static int print_error(const char *what, const struct dchat_msg *m);

static int send_msg(const struct dchat_msg *m)
{
        struct wbuf b = {0};
        int r = proto_encode(&b, m);
        if (r < 0) {
                wbuf_free(&b);
                return fail("cannot encode the request: %s", strerror(-r));
        }
        for (size_t off = 0; off < b.len;) {
                ssize_t n = send(sock, b.data + off, b.len - off, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        wbuf_free(&b);
                        /* dchatd may have said why before it hung up (e.g. max_clients) */
                        struct dchat_msg why;
                        if ((e == EPIPE || e == ECONNRESET) && read_frame(&why, false) == 0 && why.type == MSG_ERROR)
                                return print_error(command, &why);
                        return fail("lost the connection to dchatd: %s", strerror(e));
                }
                off += (size_t) n;
        }
        wbuf_free(&b);
        return 0;
}

/*
 * Reads one frame and decodes it into m (its strings point into inbuf until
 * the next call).  report: say what went wrong on stderr.
 */
static size_t consumed;
static int read_frame(struct dchat_msg *m, bool report)
{
        wbuf_consume(&inbuf, consumed);
        consumed = 0;
        for (;;) {
                if (inbuf.len >= DCHAT_FRAME_HDR) {
                        uint8_t type;
                        int len = proto_check_header(inbuf.data, &type);
                        if (len < 0)
                                return report ? fail("dchatd sent a malformed frame") : -1;
                        if (inbuf.len >= DCHAT_FRAME_HDR + (size_t) len) {
                                if (proto_decode(type, inbuf.data + DCHAT_FRAME_HDR, (size_t) len, m, &entry,
                                                 &status) < 0)
                                        return report ? fail("dchatd sent a malformed %s frame",
                                                             proto_type_name(type)) : -1;
                                consumed = DCHAT_FRAME_HDR + (size_t) len;
                                return 0;
                        }
                }
                if (!wbuf_reserve(&inbuf, 16384))
                        return report ? fail("out of memory") : -1;
                ssize_t n = recv(sock, inbuf.data + inbuf.len, inbuf.cap - inbuf.len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return report ? fail("dchatd closed the connection%s%s", n < 0 ? ": " : "",
                                             n < 0 ? strerror(errno) : "") : -1;
                inbuf.len += (size_t) n;
        }
}

static int recv_msg(struct dchat_msg *m)
{
        return read_frame(m, true);
}

static int print_error(const char *what, const struct dchat_msg *m)
{
        /* tag 0: dchatd refused the connection itself (control_group); else this request (post --hold) */
        if (m->error.code == ERR_DENIED && m->tag == 0)
                return fail("permission denied on %s: %.*s", socket_path, (int) m->error.text.len, m->error.text.p);
        if (m->error.code == ERR_DENIED)
                return fail("%s refused: %.*s", what, (int) m->error.text.len, m->error.text.p);
        return fail("%s failed: %.*s", what, (int) m->error.text.len, m->error.text.p);
}

/* --- JSON output ----------------------------------------------------------- */

static void json_str(const char *s, size_t n)
{
        putchar('"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

static void print_entry_json(const struct dchat_entry *e)
{
        char iso[48];
        entry_format_iso(e, iso, sizeof iso);
        printf("{\"seq\":%llu,\"lamport\":%llu,\"node\":", (unsigned long long) e->seq,
               (unsigned long long) e->lamport);
        json_str(e->node, strlen(e->node));
        printf(",\"fence_idx\":%u,\"post_id\":%llu,\"time\":\"%s\",\"unix_time\":%lld,\"utc_offset\":%d,\"author\":",
               e->fence_idx, (unsigned long long) e->post_id, iso, (long long) e->time, e->utc_offset);
        json_str(e->author, strlen(e->author));
        printf(",\"text\":");
        json_str(e->text, e->text_len);
        /* the poster's vector clock in its critical section: one component per peer, in the order of the
         * config's peers list (none for entries of a log older than vector clocks) */
        if (e->vc.n) {
                printf(",\"vclock\":[");
                for (unsigned i = 0; i < e->vc.n; i++)
                        printf("%s%llu", i ? "," : "", (unsigned long long) e->vc.c[i]);
                printf("]");
        }
        printf("}");
}

static void print_entry(const struct dchat_entry *e, bool json)
{
        if (!json) {
                char when[32];
                entry_format_time(e, when, sizeof when);
                printf("%s %s: %s\n", when, e->author, e->text);
                return;
        }
        print_entry_json(e);
        printf("\n");
}

/* Seqs first..last are damaged in the server's log: a marker line (JSON: one object with "damaged":true). */
static void print_damaged(uint64_t first, uint64_t last, struct dchat_str reason, bool json)
{
        if (!json) {
                char line[DCHAT_REASON_MAX + 160];
                damaged_line(line, sizeof line, first, last, reason);
                printf("%s\n", line);
                return;
        }
        printf("{\"seq\":%llu,\"last_seq\":%llu,\"damaged\":true,\"reason\":", (unsigned long long) first,
               (unsigned long long) last);
        json_str(reason.p, reason.len);
        printf("}\n");
}

/* --- follow mode ----------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
        (void) sig;
        interrupted = 1;
}

/*
 * Catches SIGINT, SIGTERM and SIGHUP: they end a follow loop cleanly (exit
 * 0).  They stay blocked except inside ppoll, so none is lost between a
 * check of `interrupted` and the wait.  old gets the mask to wait with.
 */
void follow_signals(sigset_t *old)
{
        static const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
        sigset_t block;
        struct sigaction sa = { .sa_handler = on_signal };

        sigemptyset(&block);
        for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
                sigaddset(&block, sigs[i]);
                sigaction(sigs[i], &sa, NULL);
        }
        sigprocmask(SIG_BLOCK, &block, old);
}

bool follow_interrupted(void)
{
        return interrupted;
}

static void view_show(const struct dchat_entry *e, void *userdata)
{
        print_entry(e, *(const bool *) userdata);
        fflush(stdout);
}

static void view_damaged(uint64_t first, uint64_t last, struct dchat_str reason, void *userdata)
{
        print_damaged(first, last, reason, *(const bool *) userdata);
        fflush(stdout);
}

static void view_notice(const char *msg, void *userdata)
{
        (void) userdata;
        fprintf(stderr, "dchatctl: %s\n", msg);
}

/* view -f: the last lines (or all), then each new one as it is stored, until a signal. */
static int view_follow(uint64_t last_n, uint64_t since_seq, int64_t since_time, bool json)
{
        struct follow f = { .socket_path = socket_path, .last_n = last_n, .since_seq = since_seq,
                            .since_time = since_time, .show = view_show, .damaged = view_damaged,
                            .notice = view_notice, .userdata = &json };
        sigset_t old;
        int r = 0;

        follow_signals(&old);
        if (follow_start(&f) < 0) {
                r = fail("%s", f.error);
                goto out;
        }
        while (!interrupted) {
                struct pollfd pfd = { .fd = follow_fd(&f), .events = POLLIN };
                int t = follow_timeout(&f);
                struct timespec ts = { t / 1000, (long) (t % 1000) * 1000000 };
                if (ppoll(&pfd, 1, t >= 0 ? &ts : NULL, &old) < 0 && errno != EINTR) {
                        r = fail("poll: %s", strerror(errno));
                        break;
                }
                if (interrupted)
                        break;
                if (follow_tick(&f) < 0) {
                        r = fail("%s", f.error);
                        break;
                }
                if (ferror(stdout)) {
                        r = fail("cannot write the view: %s", strerror(errno));
                        break;
                }
        }
out:
        follow_free(&f);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}

/* --- commands ---------------------------------------------------------------- */

static int cmd_post(int argc, char **argv)
{
        static const struct option opts[] = { { "hold", required_argument, NULL, 'H' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        char *text = NULL;
        size_t len = 0;
        uint32_t hold_ms = 0;
        FILE *f;
        int o;

        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                if (o == 'H') {
                        if (number_parse_seconds_ms(optarg, DCHAT_HOLD_MAX_MS, &hold_ms) < 0) {
                                fprintf(stderr, "dchatctl: --hold takes seconds, a decimal number from 0 to %d "
                                        "with at most 3 decimals (e.g. 2 or 1.5), not '%s'\n",
                                        DCHAT_HOLD_MAX_MS / 1000, optarg);
                                return 2;
                        }
                        continue;
                }
                if (o == 'h') {
                        usage(stdout);
                        return 0;
                }
                usage(stderr);
                return 2;
        }
        if (optind >= argc) {
                fprintf(stderr, "dchatctl: post needs the text to post\n");
                usage(stderr);
                return 2;
        }
        f = open_memstream(&text, &len);
        if (!f)
                return fail("out of memory");
        for (int i = optind; i < argc; i++)
                fprintf(f, "%s%s", i > optind ? " " : "", argv[i]);
        fclose(f);

        const char *why;
        if (text_validate(text, len, &why) < 0) {
                fail("cannot post: %s", why);
                free(text);
                return 1;
        }
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        if (!utc_offset_valid(tm.tm_gmtoff)) {
                /* only a hand-made zone file can do that: POSIX TZ stops at 24:59:59 */
                fail("cannot post: the time zone%s%s has a UTC offset of %+ld s, beyond the %d:%02d:%02d "
                     "dchat can keep", getenv("TZ") ? " TZ=" : "", getenv("TZ") ? getenv("TZ") : "",
                     (long) tm.tm_gmtoff, DCHAT_UTC_OFFSET_MAX / 3600, DCHAT_UTC_OFFSET_MAX % 3600 / 60,
                     DCHAT_UTC_OFFSET_MAX % 60);
                free(text);
                return 1;
        }

        int r = connect_daemon();
        if (r == 0)
                r = send_msg(&(struct dchat_msg) { .type = MSG_POST, .tag = 1,
                                                   .post = { (int32_t) tm.tm_gmtoff, hold_ms, { text, (uint16_t) len } } });
        free(text);
        if (r)
                return r;
        struct dchat_msg m;
        if (recv_msg(&m))
                return 1;
        if (m.type == MSG_ERROR)
                return print_error("post", &m);
        if (m.type != MSG_POSTED)
                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
        return 0;
}

static int cmd_view(int argc, char **argv)
{
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
                                              { "since", required_argument, NULL, 'S' },
                                              { "since-seq", required_argument, NULL, 'Q' },
                                              { "follow", no_argument, NULL, 'f' }, {} };
        bool json = false, follow = false;
        uint64_t last_n = 0, since_seq = 0;
        int64_t since_time = 0;
        unsigned starts = 0;
        int o;

        while ((o = getopt_long(argc, argv, "+n:fh", opts, NULL)) >= 0) {
                switch (o) {
                case 'n':
                        if (number_parse_u64(optarg, 1, UINT64_MAX, &last_n) < 0) {
                                fprintf(stderr, "dchatctl: view -n needs a positive decimal number, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        starts++;
                        break;
                case 'S':
                        if (since_parse(optarg, time(NULL), &since_time) < 0) {
                                fprintf(stderr, "dchatctl: --since needs a time such as 2026-11-21, '2026-11-21 14:30', "
                                                "14:30, 10m, 2h, 3d, yesterday or @SECONDS, not '%s'\n", optarg);
                                return 2;
                        }
                        if (since_time < 1)
                                since_time = 1;         /* 0 would mean "no --since" */
                        starts++;
                        break;
                case 'Q':
                        if (number_parse_u64(optarg, 1, UINT64_MAX, &since_seq) < 0) {
                                fprintf(stderr, "dchatctl: --since-seq needs a positive decimal sequence number, "
                                        "not '%s'\n", optarg);
                                return 2;
                        }
                        starts++;
                        break;
                case 'j':
                        json = true;
                        break;
                case 'f':
                        follow = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: view takes no arguments ('%s')\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (starts > 1) {
                fprintf(stderr, "dchatctl: view takes one of -n, --since and --since-seq\n");
                return 2;
        }
        if (follow)
                return view_follow(last_n, since_seq, since_time, json);
        if (connect_daemon())
                return 1;

        /* page by page up to the end as it was at the first page: a consistent snapshot */
        uint64_t from = since_seq, upto = 0;
        for (uint32_t tag = 1;; tag++) {
                bool first = tag == 1;
                if (send_msg(&(struct dchat_msg) { .type = MSG_VIEW, .tag = tag,
                                                   .view = { from, first ? last_n : 0, upto, VIEW_PAGE,
                                                             first ? since_time : 0 } }))
                        return 1;
                for (;;) {
                        struct dchat_msg m;
                        if (recv_msg(&m))
                                return 1;
                        if (m.type == MSG_ERROR)
                                return print_error("view", &m);
                        if (m.type == MSG_ENTRY) {
                                print_entry(m.append, json);
                                continue;
                        }
                        if (m.type == MSG_ENTRY_DAMAGED) {
                                print_damaged(m.damaged.first_seq, m.damaged.last_seq, m.damaged.reason, json);
                                continue;
                        }
                        if (m.type != MSG_VIEW_END)
                                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
                        if (m.view_end.done || m.view_end.next_seq <= from) {
                                if (fflush(stdout) != 0 || ferror(stdout))
                                        return fail("cannot write the view: %s", strerror(errno));
                                return 0;
                        }
                        from = m.view_end.next_seq;
                        upto = m.view_end.last_seq;
                        break;
                }
        }
}

/* The group's leader among the servers gathered, if it answered: its index, else -1. */
static int group_leader(const struct dchat_status *st)
{
        for (unsigned i = 0; i < st->n_servers; i++)
                if (st->leader[0] && !strcmp(st->servers[i].name, st->leader) && st->servers[i].reachable)
                        return (int) i;
        return -1;
}

/* How far a server's log is behind the leader's (lag); false when unknown. */
static bool group_lag(const struct dchat_status *st, unsigned i, uint64_t *lag)
{
        int l = group_leader(st);

        if (l < 0 || !st->servers[i].reachable)
                return false;
        uint64_t a = st->servers[l].last_seq, b = st->servers[i].last_seq;
        *lag = a > b ? a - b : 0;       /* figures of two moments: a follower may look ahead */
        return true;
}

static void group_json(const struct dchat_status *st)
{
        printf(",\"leader\":");
        if (st->leader[0])
                json_str(st->leader, strlen(st->leader));
        else
                printf("null");
        printf(",\"term\":%llu,\"servers\":[", (unsigned long long) st->term);
        for (unsigned i = 0; i < st->n_servers; i++) {
                const struct dchat_server_status *v = &st->servers[i];
                uint64_t lag;
                printf("%s{\"name\":", i ? "," : "");
                json_str(v->name, strlen(v->name));
                printf(",\"reachable\":%s", v->reachable ? "true" : "false");
                if (v->reachable) {
                        printf(",\"role\":\"%s\",\"term\":%llu,\"last_seq\":%llu,\"applied_index\":%llu,\"lag\":",
                               v->role, (unsigned long long) v->term, (unsigned long long) v->last_seq,
                               (unsigned long long) v->applied_index);
                        if (group_lag(st, i, &lag))
                                printf("%llu", (unsigned long long) lag);
                        else
                                printf("null");
                } else {
                        printf(",\"error\":");
                        json_str(v->note, strlen(v->note));
                }
                printf("}");
        }
        printf("]");
}

static void group_text(const struct dchat_status *st)
{
        int w = 0;

        if (st->leader[0])
                printf("group:     %u servers, leader %s%s, term %llu\n", st->n_servers, st->leader,
                       group_leader(st) < 0 ? " (as last heard; not reachable now)" : "", (unsigned long long) st->term);
        else
                printf("group:     %u servers, no leader known (term %llu)\n", st->n_servers,
                       (unsigned long long) st->term);
        for (unsigned i = 0; i < st->n_servers; i++)
                if ((int) strlen(st->servers[i].name) > w)
                        w = (int) strlen(st->servers[i].name);
        for (unsigned i = 0; i < st->n_servers; i++) {
                const struct dchat_server_status *v = &st->servers[i];
                uint64_t lag;
                if (!v->reachable) {
                        printf("  %-*s  unreachable (%s)\n", w, v->name, v->note[0] ? v->note : "no answer");
                        continue;
                }
                printf("  %-*s  %-9s  seq %llu  index %llu", w, v->name, v->role, (unsigned long long) v->last_seq,
                       (unsigned long long) v->applied_index);
                if (group_lag(st, i, &lag))
                        printf("  lag %llu", (unsigned long long) lag);
                printf("\n");
        }
}

static int cmd_status(int argc, char **argv)
{
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, {} };
        bool json = false;
        int o;

        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                if (o == 'j')
                        json = true;
                else if (o == 'h') {
                        usage(stdout);
                        return 0;
                } else {
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: status takes no arguments ('%s')\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (connect_daemon() || send_msg(&(struct dchat_msg) { .type = MSG_STATUS, .tag = 1 }))
                return 1;
        struct dchat_msg m;
        if (recv_msg(&m))
                return 1;
        if (m.type == MSG_ERROR)
                return print_error("status", &m);
        if (m.type != MSG_STATUS_REPLY)
                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
        const struct dchat_status *st = m.status;
        if (json) {
                printf("{\"node\":");
                json_str(st->node, strlen(st->node));
                printf(",\"role\":\"%s\",\"uptime\":%u", role_name(st->role), st->uptime);
                if (st->role == ROLE_PEER) {
                        printf(",\"lamport\":%llu,\"dme_state\":\"%s\",\"request_ts\":%llu,\"queued\":%u,\"server\":",
                               (unsigned long long) st->lamport, st->dme_state, (unsigned long long) st->request_ts,
                               st->queued);
                        json_str(st->server, strlen(st->server));
                        printf(",\"server_connected\":%s", st->server_connected ? "true" : "false");
                        printf(",\"trace\":{\"events\":%u,\"capacity\":%u,\"bytes\":%llu}", st->trace_events,
                               st->trace_capacity, (unsigned long long) st->trace_bytes);
                } else {
                        printf(",\"last_seq\":%llu", (unsigned long long) st->last_seq);
                }
                printf(",\"peers\":[");
                for (unsigned i = 0; i < st->n_peers; i++) {
                        printf("%s{\"name\":", i ? "," : "");
                        json_str(st->peers[i].name, strlen(st->peers[i].name));
                        printf(",\"connected\":%s", st->peers[i].connected ? "true" : "false");
                        if (st->peers[i].state[0])
                                printf(",\"state\":\"%s\",\"since\":%u", st->peers[i].state, st->peers[i].since);
                        printf("}");
                }
                const struct dchat_counters *k = &st->counters;
                printf("],\"counters\":{");
                if (st->role == ROLE_PEER)
                        printf("\"cs_entries\":%llu,\"cs_reused\":%llu,\"requests_sent\":%llu,"
                               "\"requests_received\":%llu,\"replies_sent\":%llu,\"replies_received\":%llu,",
                               (unsigned long long) k->cs_entries, (unsigned long long) k->cs_reused,
                               (unsigned long long) k->requests_sent, (unsigned long long) k->requests_received,
                               (unsigned long long) k->replies_sent, (unsigned long long) k->replies_received);
                printf("\"posts\":%llu,\"appends\":%llu", (unsigned long long) k->posts,
                       (unsigned long long) k->appends);
                if (st->role != ROLE_PEER)
                        printf(",\"batches\":%llu,\"fdatasyncs\":%llu", (unsigned long long) k->batches,
                               (unsigned long long) k->fdatasyncs);
                printf("}");
                if (st->n_servers)
                        group_json(st);
                printf("}\n");
                return 0;
        }
        printf("node:      %s\nrole:      %s\nuptime:    %us\n", st->node, role_name(st->role), st->uptime);
        if (st->role == ROLE_PEER) {
                printf("lamport:   %llu\ndme:       %s", (unsigned long long) st->lamport, st->dme_state);
                if (st->request_ts)
                        printf(" (request %llu)", (unsigned long long) st->request_ts);
                printf("\nqueued:    %u\nserver:    %s (%s)\n", st->queued, st->server,
                       st->server_connected ? "connected" : "not connected");
                if (st->trace_capacity)
                        printf("trace:     %u of %u events kept, %.1f KiB (trace_events)\n", st->trace_events,
                               st->trace_capacity, (double) st->trace_bytes / 1024);
                else
                        printf("trace:     none kept (trace_events = 0)\n");
        } else {
                printf("last seq:  %llu\n", (unsigned long long) st->last_seq);
        }
        for (unsigned i = 0; i < st->n_peers; i++) {
                printf("peer:      %s (%s", st->peers[i].name, st->peers[i].connected ? "connected" : "not connected");
                if (st->peers[i].state[0])
                        printf(", %s for %us", st->peers[i].state, st->peers[i].since);
                printf(")\n");
        }
        if (st->n_servers)
                group_text(st);
        const struct dchat_counters *k = &st->counters;
        if (st->role == ROLE_PEER)
                printf("posts:     %llu stored, %llu critical-section entries (%llu without messages)\n"
                       "messages:  %llu/%llu requests sent/received, %llu/%llu replies sent/received\n",
                       (unsigned long long) k->posts, (unsigned long long) k->cs_entries,
                       (unsigned long long) k->cs_reused, (unsigned long long) k->requests_sent,
                       (unsigned long long) k->requests_received, (unsigned long long) k->replies_sent,
                       (unsigned long long) k->replies_received);
        else
                printf("posts:     %llu stored in %llu batches, %llu fdatasyncs\n", (unsigned long long) k->posts,
                       (unsigned long long) k->batches, (unsigned long long) k->fdatasyncs);
        return 0;
}

/* Text from a server's log, for a terminal: control characters and bad UTF-8 as \\xNN. */
static void print_safe(const char *s, size_t n)
{
        for (size_t i = 0; i < n;) {
                size_t l = 1;
                unsigned char c = (unsigned char) s[i];
                if (c >= 0x80) {
                        /* one whole valid character, or a byte shown as \xNN */
                        l = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
                        if (l > n - i || text_validate(s + i, l, NULL) < 0)
                                l = 0;
                }
                if (l == 0 || c < 0x20 || c == 0x7f || c == '\\') {
                        printf(c == '\\' ? "\\\\" : "\\x%02x", c);
                        i++;
                        continue;
                }
                fwrite(s + i, 1, l, stdout);
                i += l;
        }
}

static void verify_version(const struct dchat_verify_server *v, uint64_t seq, int w, bool json)
{
        const struct dchat_entry *e = v->entry;

        if (json) {
                printf("{\"server\":");
                json_str(v->name.p, v->name.len);
                printf(",\"first_seq\":%llu,\"last_seq\":%llu", (unsigned long long) v->first_seq,
                       (unsigned long long) v->last_seq);
                if (v->kind == VERIFY_ENTRY) {
                        printf(",\"entry\":");
                        print_entry_json(e);
                        printf("}");
                        return;
                }
                if (v->kind == VERIFY_DAMAGED) {
                        printf(",\"damaged\":true,\"reason\":");
                        json_str(v->reason.p, v->reason.len);
                } else if (v->kind == VERIFY_ABSENT)
                        printf(",\"absent\":true");
                printf("}");
                return;
        }
        printf("  %.*s:%*s ", (int) v->name.len, v->name.p, w - (int) v->name.len, "");
        switch (v->kind) {
        case VERIFY_ENTRY:
                printf("seq %llu, fence %llu/", (unsigned long long) e->seq, (unsigned long long) e->lamport);
                print_safe(e->node, strlen(e->node));
                printf("/%u, post %llu, author ", e->fence_idx, (unsigned long long) e->post_id);
                print_safe(e->author, strlen(e->author));
                printf(": ");
                print_safe(e->text, e->text_len);
                printf("\n");
                break;
        case VERIFY_DAMAGED:
                printf("seq %llu is damaged (quarantined) in its log: %.*s\n", (unsigned long long) seq,
                       (int) v->reason.len, v->reason.p);
                break;
        default:
                printf("no entry at seq %llu\n", (unsigned long long) seq);
                break;
        }
}

/* verify [--json]: the servers' logs compared; exit 1 when they differ. */
static int cmd_verify(int argc, char **argv)
{
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, {} };
        bool json = false;
        int o;

        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                if (o == 'j')
                        json = true;
                else if (o == 'h') {
                        usage(stdout);
                        return 0;
                } else {
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: verify takes no arguments ('%s')\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (connect_daemon() || send_msg(&(struct dchat_msg) { .type = MSG_VERIFY, .tag = 1 }))
                return 1;
        struct dchat_msg m;
        if (recv_msg(&m))
                return 1;
        if (m.type == MSG_ERROR)
                return print_error("verify", &m);
        if (m.type != MSG_VERIFY_REPLY)
                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));

        const uint64_t first = m.verify_reply.first, last = m.verify_reply.last, seq = m.verify_reply.seq;
        const unsigned n = m.verify_reply.n;
        const bool differ = m.verify_reply.differ;
        uint64_t compared = differ ? seq - first : last >= first ? last - first + 1 : 0;
        struct dchat_verify_server v = { .entry = &entry };
        struct rbuf r = { .p = m.verify_reply.p, .len = m.verify_reply.len };
        int w = 0;

        if (json) {
                printf("{\"identical\":%s,\"servers\":%u,\"compared\":%llu,\"first_seq\":%llu,\"last_seq\":%llu",
                       differ ? "false" : "true", n, (unsigned long long) compared, (unsigned long long) first,
                       (unsigned long long) last);
                if (differ)
                        printf(",\"seq\":%llu", (unsigned long long) seq);
                printf(",\"versions\":[");
                for (unsigned i = 0; proto_verify_next(&r, &v) > 0; i++) {
                        printf("%s", i ? "," : "");
                        verify_version(&v, seq, 0, true);
                }
                printf("]}\n");
                return differ ? 1 : 0;
        }
        while (proto_verify_next(&r, &v) > 0)
                if (v.name.len > w)
                        w = v.name.len;
        r.off = 0;
        if (!differ) {
                printf("%llu entries compared on %u server%s: identical\n", (unsigned long long) compared, n,
                       n == 1 ? "" : "s");
                /* a log that goes further (a follower behind, or entries archived) was compared where all overlap */
                while (proto_verify_next(&r, &v) > 0) {
                        if (v.last_seq > last && last >= first)
                                printf("  %.*s holds %llu more (up to seq %llu), not compared\n", (int) v.name.len,
                                       v.name.p, (unsigned long long) (v.last_seq - last),
                                       (unsigned long long) v.last_seq);
                        else if (v.last_seq > last)
                                printf("  %.*s holds seqs %llu to %llu, not compared\n", (int) v.name.len,
                                       v.name.p, (unsigned long long) v.first_seq, (unsigned long long) v.last_seq);
                }
                return 0;
        }
        printf("the servers' logs differ at seq %llu (%llu entries before it identical on %u servers):\n",
               (unsigned long long) seq, (unsigned long long) compared, n);
        while (proto_verify_next(&r, &v) > 0)
                verify_version(&v, seq, w, false);
        return 1;
}

/*
 * server add [--timeout SECONDS] NAME ADDRESS | server remove NAME: the
 * group's leader changes its configuration (any dchatd passes it on); the
 * line for cluster.servers is printed, since every host's file should say
 * the same as the group.
 */
static int cmd_server(int argc, char **argv)
{
        static const struct option opts[] = { { "timeout", required_argument, NULL, 'T' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        uint32_t timeout_ms = 0;
        uint8_t op;
        int o;

        /* server SUBCOMMAND [OPTIONS] ARGS: the options come after the subcommand */
        if (argc < 2 || (strcmp(argv[1], "add") && strcmp(argv[1], "remove"))) {
                if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                        usage(stdout);
                        return 0;
                }
                fprintf(stderr, "dchatctl: server takes 'add [--timeout SECONDS] NAME HOST:PORT' or 'remove NAME'\n");
                usage(stderr);
                return 2;
        }
        op = !strcmp(argv[1], "add") ? MEMBER_ADD : MEMBER_REMOVE;
        argc--;
        argv++;
        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                if (o == 'T') {
                        if (number_parse_seconds_ms(optarg, 86400 * 1000, &timeout_ms) < 0 || timeout_ms == 0) {
                                fprintf(stderr, "dchatctl: --timeout takes seconds, a decimal number above 0 and up "
                                        "to 86400 (e.g. 600), not '%s'\n", optarg);
                                return 2;
                        }
                        continue;
                }
                if (o == 'h') {
                        usage(stdout);
                        return 0;
                }
                usage(stderr);
                return 2;
        }
        if (argc - optind != (op == MEMBER_ADD ? 2 : 1) || (op == MEMBER_REMOVE && timeout_ms)) {
                fprintf(stderr, "dchatctl: server takes 'add [--timeout SECONDS] NAME HOST:PORT' or 'remove NAME'\n");
                usage(stderr);
                return 2;
        }
        const char *name = argv[optind], *address = op == MEMBER_ADD ? argv[optind + 1] : "";
        if (!node_name_valid(name)) {
                fprintf(stderr, "dchatctl: '%s' is not a node name (1 to %d of A-Z a-z 0-9 . _ -, not starting "
                        "with -)\n", name, DCHAT_NAME_MAX);
                return 2;
        }
        if (op == MEMBER_ADD && (!strchr(address, ':') || strlen(address) > 255 || strpbrk(address, " \t\"'"))) {
                fprintf(stderr, "dchatctl: '%s' is not an address HOST:PORT\n", address);
                return 2;
        }
        command = op == MEMBER_ADD ? "server add" : "server remove";
        if (connect_daemon() ||
            send_msg(&(struct dchat_msg) { .type = MSG_MEMBER, .tag = 1, .member = { op,
                        { name, (uint16_t) strlen(name) }, { address, (uint16_t) strlen(address) }, timeout_ms } }))
                return 1;
        struct dchat_msg m;
        if (recv_msg(&m))
                return 1;
        if (m.type == MSG_ERROR)
                return print_error(command, &m);
        if (m.type != MSG_MEMBER_REPLY)
                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
        const struct dchat_str *t = &m.member_reply.text, *a = &m.member_reply.address;
        printf("%.*s\n", (int) t->len, t->p);
        if (op == MEMBER_ADD)
                printf("Add this entry to cluster.servers in /etc/dchat.conf on every host (and on %s itself); "
                       "each dchatd reads it at its next start:\n", name);
        else
                printf("Remove this entry from cluster.servers in /etc/dchat.conf on every host, and stop dchatd "
                       "on %s:\n", name);
        printf("    { name = \"%s\"; address = \"%.*s\"; }\n", name, (int) a->len, a->p);
        return 0;
}

static int run_chat(int argc, char **argv)
{
        return cmd_chat(argc, argv, socket_path);
}

static int run_trace(int argc, char **argv)
{
        return cmd_trace(argc, argv, socket_path);
}

static int run_explain(int argc, char **argv)
{
        return cmd_explain(argc, argv, socket_path);
}

/* keygen [--force] [FILE]: a new cluster key; no daemon involved. */
static int cmd_keygen(int argc, char **argv)
{
        static const struct option opts[] = { { "force", no_argument, NULL, 'f' }, { "help", no_argument, NULL, 'h' }, {} };
        bool force = false;
        char err[PATH_MAX + 256];
        int o;

        while ((o = getopt_long(argc, argv, "+fh", opts, NULL)) >= 0) {
                if (o == 'f')
                        force = true;
                else if (o == 'h') {
                        usage(stdout);
                        return 0;
                } else {
                        usage(stderr);
                        return 2;
                }
        }
        if (argc - optind > 1) {
                fprintf(stderr, "dchatctl: keygen takes at most one file ('%s')\n", argv[optind + 1]);
                usage(stderr);
                return 2;
        }
        const char *path = optind < argc ? argv[optind] : DCHAT_DEFAULT_KEY_FILE;
        if (key_generate(path, force, err, sizeof err) < 0)
                return fail("keygen: %s", err);
        printf("wrote a new cluster key to %s (mode 0600); copy it to every host of the cluster\n", path);
        return 0;
}

static const struct command {
        const char *name;
        int (*run)(int argc, char **argv);
} commands[] = {
        { "post", cmd_post },
        { "view", cmd_view },
        { "status", cmd_status },
        { "verify", cmd_verify },
        { "chat", run_chat },
        { "trace", run_trace },
        { "explain", run_explain },
        { "keygen", cmd_keygen },
        { "server", cmd_server },
};

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        int o;

        socket_path = getenv("DCHAT_SOCKET");
        if (!socket_path || !*socket_path)
                socket_path = DCHAT_DEFAULT_SOCKET;
        while ((o = getopt_long(argc, argv, "+s:h", opts, NULL)) >= 0) {
                switch (o) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("dchatctl %s\n", DCHAT_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
                if (strcmp(argv[optind], commands[i].name) != 0)
                        continue;
                command = commands[i].name;
                int sub_argc = argc - optind;
                char **sub_argv = argv + optind;
                optind = 1;
                int r = commands[i].run(sub_argc, sub_argv);
                if (sock >= 0)
                        close(sock);
                wbuf_free(&inbuf);
                return r;
        }
        fprintf(stderr, "dchatctl: unknown command '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
}
