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

#include <sodium.h>

#include "key.h"
#include "number.h"
#include "proto.h"
#include "secure.h"
#include "since.h"
#include "client.h"

#define VIEW_PAGE 256

static const char *socket_path;
const char *socket_origin;                      /* where socket_path came from (client.h) */
static const char *command = "request";      /* for "post failed: ..." */
static int sock = -1;
static struct wbuf inbuf;
static struct dchat_entry entry;
static struct dchat_status status;

static void usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] COMMAND [ARGS...]\n"
                   "       dchatctl help [COMMAND] | --help | --version\n"
                   "commands:\n"
                   "  post [--hold SECONDS] [--] TEXT...  post TEXT as one line: done once the server stored it\n"
                   "  post [--hold SECONDS] -             each line of stdin a post (so does no TEXT, with stdin\n"
                   "                                      not a terminal)\n"
                   "  view [-n N | --since TIME | --since-seq SEQ] [-f] [--json] [--local-time]\n"
                   "                                      the log (-f: then each new line as it is stored)\n"
                   "  chat [-n N] [--local-time] [--seconds]  an interactive prompt on the chat room\n"
                   "  who [--json]                        the nodes, and who has a chat or a follow open on each\n"
                   "  status [--json]                     this dchatd: its links, counters, a server group\n"
                   "  verify [--json]                     do the servers of the group hold the same log?\n"
                   "  note set KEY VALUE... | del KEY     the shared notes: a key-value store the server keeps\n"
                   "  note get [--json] KEY | list [--json]  a note's value, or all the notes\n"
                   "  note incr [--unlocked] KEY [N]      add N (default 1) to a note, in the critical section\n"
                   "  server add [--timeout SECONDS] NAME HOST:PORT  a server joins the group (root)\n"
                   "  server remove NAME                  a server leaves the group (root)\n"
                   "  reload                              dchatd rereads its configuration (root)\n"
                   "  trace [--since TIME] [--until TIME] [--post SEQ] [--order ORDER] [--check [--algorithm ALGO]]\n"
                   "        [--format FORMAT] [-o FILE] [--from FILE]...  the cluster's protocol events, drawn\n"
                   "  explain [EVENT | 'LINE']            what an event of dchatd's journal means\n"
                   "  keygen [--force] [FILE]             a new cluster key (default %s)\n"
                   "  keygen --host [--force] [FILE]      a new host key (default %s); prints its public key\n"
                   "  pubkey [FILE]                       the public key of a host key (default %s)\n"
                   "options, before or after the command:\n"
                   "  -s, --socket SOCKET  dchatd's control socket: $DCHAT_SOCKET, else %s\n"
                   "  -h, --help           this text (COMMAND --help, or help COMMAND: the command's own)\n"
                   "  --version            dchatctl's version\n", DCHAT_DEFAULT_KEY_FILE, DCHAT_DEFAULT_HOST_KEY_FILE,
                   DCHAT_DEFAULT_HOST_KEY_FILE, DCHAT_DEFAULT_SOCKET);
}

static void post_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] post [--hold SECONDS] [--] TEXT...\n"
                   "       dchatctl [-s SOCKET] post [--hold SECONDS] -\n"
                   "Posts TEXT (its words joined by spaces) as one line of the chat log; it succeeds once the\n"
                   "server has stored the line.  With -, or with no TEXT while stdin is not a terminal, each line\n"
                   "read from stdin is a post of its own, in order (like logger(1)): empty lines are skipped, a\n"
                   "tab stands for spaces up to the next multiple of 8, and the first line that fails stops it.\n"
                   "On a terminal, a post that has to wait for the server says so at once, and why.\n"
                   "  --hold SECONDS       keep the critical section that long after storing (root only, unless\n"
                   "                       hold_max_ms allows it): to watch mutual exclusion at work\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static void view_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] view [-n N | --since TIME | --since-seq SEQ] [-f] [--json]\n"
                   "                                 [--local-time]\n"
                   "Prints the chat log, one line per post: DD Mon HH:MMAM Author: text, in the poster's local\n"
                   "time (the assignment's format).\n"
                   "  -n N                 the last N lines\n"
                   "  --since TIME         from the first line posted at or after TIME: 2026-11-21, '2026-11-21\n"
                   "                       14:30', 14:30, 10m, 2h, 3d, yesterday, @SECONDS\n"
                   "  --since-seq SEQ      from line (sequence number) SEQ\n"
                   "  -f, --follow         then each new line as it is stored, until Ctrl-C\n"
                   "  --json               one JSON object per line (seq, fence, node, post id, times, author, text)\n"
                   "  --local-time         times in your time zone, not each poster's\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static void who_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] who [--json]\n"
                   "Which nodes are up, as this dchatd sees them, and who has a chat (dchatctl chat) or a\n"
                   "follow (view -f) open on each; a user appears once per node.\n"
                   "  --json               one JSON object\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static void status_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] status [--json]\n"
                   "This dchatd's state: role, links to the peers and the server, the Ricart-Agrawala state,\n"
                   "counters; with a server group, every server's role, applied seq and lag.\n"
                   "  --json               one JSON object (keys in dchatctl(1))\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static void verify_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] verify [--json]\n"
                   "Compares the chat logs of the servers of the group by digests of blocks; exits 1 when they\n"
                   "differ, showing each server's version of the first entry where they do.\n"
                   "  --json               one JSON object\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static void keygen_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl keygen [--host] [--force] [FILE]\n"
                   "Writes a new cluster key to FILE (default %s), mode 0600; copy it to every host.\n"
                   "With --host, a new host key instead (default %s), mode 0600, for this host only; prints\n"
                   "its public key, which goes into this host's entry (key = \"...\") in every host's dchat.conf.\n"
                   "  --host               a host key\n"
                   "  --force              replace an existing file\n", DCHAT_DEFAULT_KEY_FILE, DCHAT_DEFAULT_HOST_KEY_FILE);
}

static void pubkey_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl pubkey [FILE]\n"
                   "Prints the public key of the host key in FILE (default %s), as dchat.conf(5) writes it.\n",
                   DCHAT_DEFAULT_HOST_KEY_FILE);
}

static void server_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] server add [--timeout SECONDS] NAME HOST:PORT\n"
                   "       dchatctl [-s SOCKET] server remove NAME\n"
                   "The group's leader adds a server to the group (it catches up first, then votes), or removes\n"
                   "one; any dchatd passes it on.  Root only.  Prints the entry for cluster.servers, which every\n"
                   "host's dchat.conf should then have (or lose).\n"
                   "  --timeout SECONDS    how long an add waits for the new server to catch up\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

/* -s SOCKET after the command (each command takes it): as before it */
void socket_option(const char *arg)
{
        socket_path = arg;
        socket_origin = "-s";
}

/* "dchatctl: MESSAGE" on stderr; returns rc (1: failed, 2: bad usage) */
static int vcomplain(int rc, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static int vcomplain(int rc, const char *fmt, va_list ap)
{
        fputs("dchatctl: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        return rc;
}

int fail(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int rc = vcomplain(1, fmt, ap);
        va_end(ap);
        return rc;
}

int usage_error(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        int rc = vcomplain(2, fmt, ap);
        va_end(ap);
        return rc;
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

int connect_daemon(void)
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
                char why[4096];
                if (e == EACCES || e == EPERM)
                        return fail_denied();
                socket_error(socket_path, e, why, sizeof why);
                return fail("%s", why);
        }
        return 0;
}

static int read_frame(struct dchat_msg *m, bool report);

int send_msg(const struct dchat_msg *m)
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

int recv_msg(struct dchat_msg *m)
{
        return read_frame(m, true);
}

int print_error(const char *what, const struct dchat_msg *m)
{
        /* tag 0: dchatd refused the connection itself (control_group); else this request (post --hold) */
        if (m->error.code == ERR_DENIED && m->tag == 0)
                return fail("permission denied on %s: %.*s", socket_path, (int) m->error.text.len, m->error.text.p);
        if (m->error.code == ERR_DENIED)
                return fail("%s refused: %.*s", what, (int) m->error.text.len, m->error.text.p);
        if (m->error.text.len == 0)     /* (dchatd always says why; a frame without a text still gets a line) */
                return fail("%s failed: error %u from dchatd", what, m->error.code);
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

void json_put_str(const char *s, size_t n)
{
        json_str(s, n);
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

static void print_entry(const struct dchat_entry *e, bool json, bool local)
{
        if (!json) {
                char when[48];
                format_when(e, local, false, when, sizeof when);
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
        interrupted = sig;
}

/*
 * Catches SIGINT, SIGTERM and SIGHUP: they end a follow loop cleanly (exit
 * 0; chat takes SIGINT for Ctrl-C).  They stay blocked except inside
 * ppoll, so none is lost between a check of `interrupted` and the wait.
 * old gets the mask to wait with.
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

int follow_signal(void)
{
        return interrupted;
}

void follow_signal_clear(void)
{
        interrupted = 0;
}

struct view_opts {
        bool json, local;
};

static void view_show(const struct dchat_entry *e, void *userdata)
{
        const struct view_opts *vo = userdata;
        print_entry(e, vo->json, vo->local);
        fflush(stdout);
}

static void view_damaged(uint64_t first, uint64_t last, struct dchat_str reason, void *userdata)
{
        print_damaged(first, last, reason, ((const struct view_opts *) userdata)->json);
        fflush(stdout);
}

static void view_notice(const char *msg, void *userdata)
{
        (void) userdata;
        fprintf(stderr, "dchatctl: %s\n", msg);
}

/* view -f: the last lines (or all), then each new one as it is stored, until a signal. */
static int view_follow(uint64_t last_n, uint64_t since_seq, int64_t since_time, struct view_opts *vo)
{
        struct follow f = { .socket_path = socket_path, .last_n = last_n, .since_seq = since_seq,
                            .since_time = since_time, .show = view_show, .damaged = view_damaged,
                            .notice = view_notice, .userdata = vo };
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

/* The poster's UTC offset, if dchat can carry it (else 1, and why said). */
static int post_offset(int32_t *off)
{
        time_t now = time(NULL);
        struct tm tm;

        localtime_r(&now, &tm);
        if (!utc_offset_valid(tm.tm_gmtoff)) {
                /* only a hand-made zone file can do that: POSIX TZ stops at 24:59:59 */
                return fail("cannot post: the time zone%s%s has a UTC offset of %+ld s, beyond the %d:%02d:%02d "
                            "dchat can keep", getenv("TZ") ? " TZ=" : "", getenv("TZ") ? getenv("TZ") : "",
                            (long) tm.tm_gmtoff, DCHAT_UTC_OFFSET_MAX / 3600, DCHAT_UTC_OFFSET_MAX % 3600 / 60,
                            DCHAT_UTC_OFFSET_MAX % 60);
        }
        *off = (int32_t) tm.tm_gmtoff;
        return 0;
}

/*
 * POST_WAIT: why the post waits, said once per reason (last: the reason said
 * before), to someone at a terminal: no silent wait.  Scripts keep their
 * one line on stderr, the error, which says what the post waited for.
 */
void say_waiting(const struct dchat_msg *m, const char *prefix, char *last, size_t cap)
{
        char why[DCHAT_ERROR_MAX + 1];

        if (!isatty(STDERR_FILENO))
                return;
        if (dchat_str_copy(why, sizeof why, m->post_wait.reason) < 0 || !strcmp(why, last))
                return;
        strlcpy(last, why, cap);
        fprintf(stderr, "dchatctl: %swaiting: %s; for %u s at most\n", prefix, why,
                (m->post_wait.wait_ms + 999) / 1000);
}

static int post_text(const char *text, size_t len, uint32_t hold_ms)
{
        char waiting[DCHAT_ERROR_MAX + 1] = "";
        const char *why;
        int32_t off;

        if (post_text_validate(text, len, &why) < 0)
                return fail("cannot post: %s", why);
        if (post_offset(&off))
                return 1;
        if (connect_daemon() || send_msg(&(struct dchat_msg) { .type = MSG_POST, .tag = 1,
                                                               .post = { off, hold_ms, { text, (uint16_t) len } } }))
                return 1;
        for (;;) {
                struct dchat_msg m;
                if (recv_msg(&m))
                        return 1;
                if (m.type == MSG_POST_WAIT) {
                        say_waiting(&m, "", waiting, sizeof waiting);   /* no silent wait */
                        continue;
                }
                if (m.type == MSG_ERROR)
                        return print_error("post", &m);
                if (m.type != MSG_POSTED)
                        return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
                return 0;
        }
}

/* --- post -: lines from stdin ------------------------------------------------------------------ */

#define STDIN_WINDOW    8               /* posts in flight at once (max_queued_posts_per_user is 32) */

struct inflight {
        uint32_t line;                  /* its line number; the tag of its POST */
        char head[64];                  /* its start, for messages */
};

/* A line of stdin as a post: CR LF as LF, tabs as spaces to the next multiple of 8 (a post holds no tab). */
static size_t expand_line(const char *in, size_t n, char *out, size_t cap)
{
        size_t o = 0, col = 0;

        if (n && in[n - 1] == '\r')
                n--;
        for (size_t i = 0; i < n && o < cap; i++) {
                unsigned char c = (unsigned char) in[i];
                if (c == '\t') {
                        do
                                out[o++] = ' ';
                        while (++col % 8 && o < cap);
                        continue;
                }
                out[o++] = (char) c;
                if ((c & 0xc0) != 0x80)
                        col++;          /* a character starts: a column, near enough */
        }
        return o;
}

static void head_of(const char *text, size_t len, char *buf, size_t cap)
{
        size_t n = len < cap - 4 ? len : cap - 4;
        /* not in the middle of a UTF-8 character */
        while (n < len && n && ((unsigned char) text[n] & 0xc0) == 0x80)
                n--;
        snprintf(buf, cap, "%.*s%s", (int) n, text, n < len ? "..." : "");
}

static int post_stdin(uint32_t hold_ms)
{
        struct cconn c = { .fd = -1 };
        struct wbuf lines = {0};
        struct inflight fly[STDIN_WINDOW];
        unsigned n_fly = 0;
        uint32_t lineno = 0, sent_upto = 0;
        bool eof = false, failed = false;
        char waiting[DCHAT_ERROR_MAX + 1] = "", err[4096];
        static char text[4 * DCHAT_TEXT_MAX + 64];
        int32_t off;
        int rc = 0;

        if (post_offset(&off))
                return 1;
        for (;;) {
                /* post the whole lines read, as many as the window takes */
                while (!failed && n_fly < STDIN_WINDOW) {
                        uint8_t *nl = lines.len ? memchr(lines.data, '\n', lines.len) : NULL;
                        size_t n = nl ? (size_t) (nl - lines.data) : lines.len;
                        if (!nl && !(eof && lines.len))
                                break;
                        lineno++;
                        size_t len = expand_line((const char *) lines.data, n, text, sizeof text);
                        wbuf_consume(&lines, nl ? n + 1 : n);
                        const char *why;
                        if (len == 0 || (text_validate(text, len, NULL) == 0 && post_text_validate(text, len, NULL) < 0))
                                continue;       /* empty, or only spaces: nothing to post (as logger does) */
                        if (post_text_validate(text, len, &why) < 0) {
                                fail("line %u of stdin: not posted: %s", lineno, why);
                                failed = true;
                                break;
                        }
                        if (c.fd < 0 && cconn_open(&c, socket_path, err, sizeof err) < 0) {
                                fail("%s", err);
                                failed = true;
                                break;
                        }
                        int r = cconn_send(&c, &(struct dchat_msg) { .type = MSG_POST, .tag = lineno,
                                                                     .post = { off, hold_ms, { text, (uint16_t) len } } });
                        if (r < 0) {
                                fail("line %u of stdin: not posted: lost the connection to dchatd: %s", lineno,
                                     strerror(-r));
                                failed = true;
                                break;
                        }
                        fly[n_fly].line = lineno;
                        head_of(text, len, fly[n_fly].head, sizeof fly[n_fly].head);
                        n_fly++;
                        sent_upto = lineno;
                }
                if (n_fly == 0 && (failed || (eof && !lines.len)))
                        break;
                struct pollfd pfd[2] = { { .fd = !eof && !failed && n_fly < STDIN_WINDOW ? STDIN_FILENO : -1,
                                           .events = POLLIN },
                                         { .fd = c.fd, .events = POLLIN } };
                if (poll(pfd, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        rc = fail("poll: %s", strerror(errno));
                        break;
                }
                if (pfd[0].revents) {
                        if (!wbuf_reserve(&lines, 65536)) {
                                rc = fail("out of memory");
                                break;
                        }
                        ssize_t n = read(STDIN_FILENO, lines.data + lines.len, 65536);
                        if (n < 0 && errno != EINTR && errno != EAGAIN) {
                                rc = fail("cannot read stdin: %s", strerror(errno));
                                break;
                        }
                        if (n == 0)
                                eof = true;
                        if (n > 0)
                                lines.len += (size_t) n;
                        if (lines.len > sizeof text && !memchr(lines.data, '\n', lines.len)) {
                                fail("line %u of stdin: not posted: longer than %d bytes", lineno + 1,
                                     DCHAT_TEXT_MAX);
                                failed = true;
                        }
                }
                if (c.fd < 0 || !pfd[1].revents)
                        continue;
                int r = cconn_fill(&c);
                struct dchat_msg m;
                int k;
                while ((k = cconn_frame(&c, &m)) > 0) {
                        unsigned i;
                        if (m.type == MSG_ERROR && m.tag == 0 && n_fly == 0 && m.error.code == ERR_TIMEOUT) {
                                cconn_close(&c);        /* idle while stdin was quiet: connect again when needed */
                                break;
                        }
                        for (i = 0; i < n_fly && fly[i].line != m.tag; i++)
                                ;
                        if (m.type == MSG_ERROR && (i == n_fly || m.tag == 0)) {
                                print_error("post", &m);
                                failed = true;
                                n_fly = 0;
                                break;
                        }
                        if (i == n_fly)
                                continue;
                        if (m.type == MSG_POST_WAIT) {
                                say_waiting(&m, "", waiting, sizeof waiting);
                                continue;
                        }
                        if (m.type == MSG_ERROR) {
                                fail("line %u of stdin (%s): post failed: %.*s", fly[i].line, fly[i].head,
                                     (int) m.error.text.len, m.error.text.p);
                                failed = true;
                        } else if (m.type != MSG_POSTED) {
                                fail("unexpected answer %s from dchatd", proto_type_name(m.type));
                                failed = true;
                        }
                        fly[i] = fly[--n_fly];
                }
                if (k < 0) {
                        rc = fail("dchatd sent a malformed frame");
                        break;
                }
                if ((r == 0 || (r < 0 && r != -EAGAIN)) && c.fd >= 0) {
                        if (n_fly)
                                fail("dchatd closed the connection: line%s %u%s of stdin not confirmed (they may or "
                                     "may not have been stored)", n_fly > 1 ? "s up to" : "", sent_upto, "");
                        cconn_close(&c);
                        if (n_fly)
                                failed = true;
                        n_fly = 0;
                }
        }
        if (failed && !rc) {
                rc = 1;
                if (!eof || lines.len)
                        fprintf(stderr, "dchatctl: stopped: the lines of stdin after line %u were not posted\n",
                                sent_upto > lineno ? sent_upto : lineno);
        }
        cconn_close(&c);
        wbuf_free(&c.in);
        wbuf_free(&lines);
        return rc;
}

static int cmd_post(int argc, char **argv)
{
        static const struct option opts[] = { { "hold", required_argument, NULL, 'H' },
                                              { "socket", required_argument, NULL, 's' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        char *text = NULL;
        size_t len = 0;
        uint32_t hold_ms = 0;
        FILE *f;
        int o;

        while ((o = getopt_long(argc, argv, "+hs:", opts, NULL)) >= 0) {
                if (o == 'H') {
                        if (number_parse_seconds_ms(optarg, DCHAT_HOLD_MAX_MS, &hold_ms) < 0) {
                                fprintf(stderr, "dchatctl: --hold takes seconds, a decimal number from 0 to %d "
                                        "with at most 3 decimals (e.g. 2 or 1.5), not '%s'\n",
                                        DCHAT_HOLD_MAX_MS / 1000, optarg);
                                return 2;
                        }
                        continue;
                }
                if (o == 's') {
                        socket_option(optarg);
                        continue;
                }
                if (o == 'h') {
                        post_usage(stdout);
                        return 0;
                }
                post_usage(stderr);
                return 2;
        }
        /* "-" alone (not after "--"), or nothing while stdin is a pipe or a file: lines from stdin */
        bool dash = argc - optind == 1 && !strcmp(argv[optind], "-") && strcmp(argv[optind - 1], "--");
        if (dash || (optind >= argc && !isatty(STDIN_FILENO)))
                return post_stdin(hold_ms);
        if (optind >= argc) {
                fprintf(stderr, "dchatctl: post needs the text to post (or -, to post the lines of stdin)\n");
                post_usage(stderr);
                return 2;
        }
        f = open_memstream(&text, &len);
        if (!f)
                return fail("out of memory");
        for (int i = optind; i < argc; i++)
                fprintf(f, "%s%s", i > optind ? " " : "", argv[i]);
        fclose(f);
        int r = post_text(text, len, hold_ms);
        free(text);
        return r;
}

static int cmd_view(int argc, char **argv)
{
        static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' },
                                              { "since", required_argument, NULL, 'S' },
                                              { "since-seq", required_argument, NULL, 'Q' },
                                              { "follow", no_argument, NULL, 'f' },
                                              { "local-time", no_argument, NULL, 'L' },
                                              { "socket", required_argument, NULL, 's' }, {} };
        struct view_opts vo = {0};
        bool follow = false;
        uint64_t last_n = 0, since_seq = 0;
        int64_t since_time = 0;
        unsigned starts = 0;
        int o;

        while ((o = getopt_long(argc, argv, "+n:fhs:", opts, NULL)) >= 0) {
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
                        vo.json = true;
                        break;
                case 'L':
                        vo.local = true;
                        break;
                case 's':
                        socket_option(optarg);
                        break;
                case 'f':
                        follow = true;
                        break;
                case 'h':
                        view_usage(stdout);
                        return 0;
                default:
                        view_usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: view takes no arguments ('%s')\n", argv[optind]);
                view_usage(stderr);
                return 2;
        }
        if (starts > 1) {
                fprintf(stderr, "dchatctl: view takes one of -n, --since and --since-seq\n");
                return 2;
        }
        if (follow)
                return view_follow(last_n, since_seq, since_time, &vo);
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
                                print_entry(m.append, vo.json, vo.local);
                                continue;
                        }
                        if (m.type == MSG_ENTRY_DAMAGED) {
                                print_damaged(m.damaged.first_seq, m.damaged.last_seq, m.damaged.reason, vo.json);
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
                        if (v->note[0]) {
                                /* it answered, and says why it takes no part just now */
                                printf(",\"error\":");
                                json_str(v->note, strlen(v->note));
                        }
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
                if (v->note[0])
                        printf("  (%s)", v->note);
                printf("\n");
        }
}

/*
 * The options of a command that takes no arguments: -s/--socket, -h/--help and, when
 * json is not NULL, --json.  -1 to go on, else the exit status (help asked for, or a
 * usage error, said on stderr).
 */
static int plain_options(int argc, char **argv, const char *name, void (*usage_of)(FILE *), bool *json)
{
        static const struct option with_json[] = { { "json", no_argument, NULL, 'j' },
                                                   { "help", no_argument, NULL, 'h' },
                                                   { "socket", required_argument, NULL, 's' }, {} };
        int o;

        while ((o = getopt_long(argc, argv, "+hs:", json ? with_json : with_json + 1, NULL)) >= 0) {
                if (o == 'j' && json)
                        *json = true;
                else if (o == 's')
                        socket_option(optarg);
                else if (o == 'h') {
                        usage_of(stdout);
                        return 0;
                } else {
                        usage_of(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: %s takes no arguments ('%s')\n", name, argv[optind]);
                usage_of(stderr);
                return 2;
        }
        return -1;
}

static int cmd_status(int argc, char **argv)
{
        bool json = false;
        int o;

        if ((o = plain_options(argc, argv, "status", status_usage, &json)) >= 0)
                return o;
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
                if (st->dme_algorithm[0])
                        printf(",\"dme_algorithm\":\"%s\"", st->dme_algorithm);
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
                        if (strcmp(st->dme_state, "-") != 0)    /* the coordinator of "central" */
                                printf(",\"coordinator\":{\"state\":\"%s\",\"request_ts\":%llu,\"queued\":%u}",
                                       st->dme_state, (unsigned long long) st->request_ts, st->queued);
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
                        printf(",\"batches\":%llu,\"fdatasyncs\":%llu,\"requests_received\":%llu,"
                               "\"replies_sent\":%llu", (unsigned long long) k->batches,
                               (unsigned long long) k->fdatasyncs, (unsigned long long) k->requests_received,
                               (unsigned long long) k->replies_sent);
                printf("}");
                if (st->n_servers)
                        group_json(st);
                printf("}\n");
                return 0;
        }
        printf("node:      %s\nrole:      %s\nuptime:    %us\n", st->node, role_name(st->role), st->uptime);
        if (st->dme_algorithm[0])
                printf("algorithm: %s\n", st->dme_algorithm);
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
                if (strcmp(st->dme_state, "-") != 0) {
                        printf("coordinator: %s", st->dme_state);
                        if (st->request_ts)
                                printf(" (request %llu)", (unsigned long long) st->request_ts);
                        printf(", %u waiting\n", st->queued);
                }
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
        if (st->role != ROLE_PEER && (k->requests_received || k->replies_sent))
                printf("messages:  %llu requests received, %llu grants sent (the coordinator)\n",
                       (unsigned long long) k->requests_received, (unsigned long long) k->replies_sent);
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
        bool json = false;
        int o;

        if ((o = plain_options(argc, argv, "verify", verify_usage, &json)) >= 0)
                return o;
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
                                              { "socket", required_argument, NULL, 's' },
                                              { "help", no_argument, NULL, 'h' }, {} };
        uint32_t timeout_ms = 0;
        uint8_t op;
        int o;

        /* server SUBCOMMAND [OPTIONS] ARGS: the options come after the subcommand */
        if (argc < 2 || (strcmp(argv[1], "add") && strcmp(argv[1], "remove"))) {
                if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
                        server_usage(stdout);
                        return 0;
                }
                fprintf(stderr, "dchatctl: server takes 'add [--timeout SECONDS] NAME HOST:PORT' or 'remove NAME'\n");
                server_usage(stderr);
                return 2;
        }
        op = !strcmp(argv[1], "add") ? MEMBER_ADD : MEMBER_REMOVE;
        argc--;
        argv++;
        while ((o = getopt_long(argc, argv, "+hs:", opts, NULL)) >= 0) {
                if (o == 'T') {
                        if (number_parse_seconds_ms(optarg, 86400 * 1000, &timeout_ms) < 0 || timeout_ms == 0) {
                                fprintf(stderr, "dchatctl: --timeout takes seconds, a decimal number above 0 and up "
                                        "to 86400 (e.g. 600), not '%s'\n", optarg);
                                return 2;
                        }
                        continue;
                }
                if (o == 's') {
                        socket_option(optarg);
                        continue;
                }
                if (o == 'h') {
                        server_usage(stdout);
                        return 0;
                }
                server_usage(stderr);
                return 2;
        }
        if (argc - optind != (op == MEMBER_ADD ? 2 : 1) || (op == MEMBER_REMOVE && timeout_ms)) {
                fprintf(stderr, "dchatctl: server takes 'add [--timeout SECONDS] NAME HOST:PORT' or 'remove NAME'\n");
                server_usage(stderr);
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
        return cmd_chat(argc, argv, &socket_path);
}

/* who [--json]: the nodes as this dchatd sees them, and who is on each. */
static int cmd_who(int argc, char **argv)
{
        static struct wtable t;
        bool json = false;
        int o, w = 0;

        if ((o = plain_options(argc, argv, "who", who_usage, &json)) >= 0)
                return o;
        if (connect_daemon() || send_msg(&(struct dchat_msg) { .type = MSG_WHO, .tag = 1 }))
                return 1;
        for (;;) {
                struct dchat_msg m;
                if (recv_msg(&m))
                        return 1;
                if (m.type == MSG_ERROR)
                        return print_error("who", &m);
                if (m.type != MSG_PRESENCE)
                        return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
                if (!wnode_take(&t, &m, NULL))
                        return fail("dchatd named more nodes than a cluster has");
                if (m.presence.flags & PRESENCE_END)
                        break;
        }
        if (json) {
                printf("{\"node\":");
                json_str(t.nodes[0].name, strlen(t.nodes[0].name));
                printf(",\"nodes\":[");
                for (unsigned i = 0; i < t.n; i++) {
                        const struct wnode *n = &t.nodes[i];
                        printf("%s{\"name\":", i ? "," : "");
                        json_str(n->name, strlen(n->name));
                        printf(",\"role\":\"%s\",\"state\":\"%s\",\"since\":%u,\"here\":%s,\"note\":", role_name(n->role),
                               node_state_name(n->state), n->since, (n->flags & PRESENCE_SELF) ? "true" : "false");
                        json_str(n->note, strlen(n->note));
                        printf(",\"users_known\":%s,\"users\":[", (n->flags & PRESENCE_USERS_KNOWN) ? "true" : "false");
                        for (unsigned k = 0; k < n->n; k++) {
                                printf("%s{\"name\":", k ? "," : "");
                                json_str(n->users[k].name, strlen(n->users[k].name));
                                printf(",\"chat\":%s,\"follow\":%s}", (n->users[k].kinds & PRESENCE_CHAT) ? "true" : "false",
                                       (n->users[k].kinds & PRESENCE_FOLLOW) ? "true" : "false");
                        }
                        printf("],\"more\":%u}", n->more);
                }
                printf("]}\n");
                return 0;
        }
        for (unsigned i = 0; i < t.n; i++)
                if ((int) strlen(t.nodes[i].name) > w)
                        w = (int) strlen(t.nodes[i].name);
        for (unsigned i = 0; i < t.n; i++) {
                const struct wnode *n = &t.nodes[i];
                printf("%-*s  %-6s  %s", w, n->name, role_name(n->role), node_state_name(n->state));
                if (n->since)
                        printf(" %us", n->since);
                if (n->flags & PRESENCE_SELF)
                        printf(", here");
                if (n->note[0])
                        printf(" (%s)", n->note);
                printf("\n");
                for (uint8_t kind = PRESENCE_CHAT; kind <= PRESENCE_FOLLOW; kind <<= 1) {
                        unsigned c = 0;
                        for (unsigned k = 0; k < n->n; k++) {
                                if (!(n->users[k].kinds & kind))
                                        continue;
                                printf("%s%s", c++ ? ", " : kind == PRESENCE_CHAT ? "  in the chat: "
                                                                                  : "  following (view -f): ",
                                       n->users[k].name);
                        }
                        if (c)
                                printf("\n");
                }
                if (n->more)
                        printf("  and %u more\n", n->more);
                if (!(n->flags & PRESENCE_USERS_KNOWN) && n->state == NODE_UP)
                        printf("  users: not known yet\n");
        }
        return 0;
}

static int run_trace(int argc, char **argv)
{
        return cmd_trace(argc, argv, socket_path);
}

static int run_explain(int argc, char **argv)
{
        return cmd_explain(argc, argv, socket_path);
}

/*
 * reload: dchatd rereads its configuration and says what changed, or why it
 * refused (exit 1): root, and dchatd's own user (ExecReload= of dchatd.service,
 * so that `systemctl reload` fails when the reload does).
 */
static void reload_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] reload\n"
                   "dchatd rereads its configuration file and says what changed, or why it refused (the\n"
                   "file:line, or a setting that needs a restart); exits 1 when refused.  Root and dchatd's\n"
                   "own user only: it is systemctl reload dchatd's ExecReload=.\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n");
}

static int cmd_reload(int argc, char **argv)
{
        int o;

        if ((o = plain_options(argc, argv, "reload", reload_usage, NULL)) >= 0)
                return o;
        command = "reload";
        if (connect_daemon() || send_msg(&(struct dchat_msg) { .type = MSG_RELOAD, .tag = 1 }))
                return 1;
        struct dchat_msg m;
        if (recv_msg(&m))
                return 1;
        if (m.type == MSG_ERROR && m.error.code == ERR_INVALID)
                return fail("reload refused: %.*s", (int) m.error.text.len, m.error.text.p);
        if (m.type == MSG_ERROR)
                return print_error(command, &m);
        if (m.type != MSG_RELOAD_REPLY)
                return fail("unexpected answer %s from dchatd", proto_type_name(m.type));
        printf("%.*s\n", (int) m.reload_reply.text.len, m.reload_reply.text.p);
        return 0;
}

/* keygen [--host] [--force] [FILE]: a new cluster key, or host key; no daemon involved. */
static int cmd_keygen(int argc, char **argv)
{
        static const struct option opts[] = { { "force", no_argument, NULL, 'f' }, { "host", no_argument, NULL, 'H' },
                                               { "help", no_argument, NULL, 'h' }, {} };
        bool force = false, host = false;
        char err[PATH_MAX + 256];
        int o;

        while ((o = getopt_long(argc, argv, "+fh", opts, NULL)) >= 0) {
                if (o == 'f')
                        force = true;
                else if (o == 'H')
                        host = true;
                else if (o == 'h') {
                        keygen_usage(stdout);
                        return 0;
                } else {
                        keygen_usage(stderr);
                        return 2;
                }
        }
        if (argc - optind > 1) {
                fprintf(stderr, "dchatctl: keygen takes at most one file ('%s')\n", argv[optind + 1]);
                keygen_usage(stderr);
                return 2;
        }
        if (host) {
                const char *path = optind < argc ? argv[optind] : DCHAT_DEFAULT_HOST_KEY_FILE;
                uint8_t pk[DCHAT_HOST_PK_BYTES];
                char text[SECURE_PK_TEXT];
                if (hostkey_generate(path, force, pk, err, sizeof err) < 0)
                        return fail("keygen: %s", err);
                fprintf(stderr, "wrote a new host key to %s (mode 0600); its public key (key = \"...\" in this "
                                "host's entry of dchat.conf on every host):\n", path);
                printf("%s\n", secure_pk_text(pk, text));
                return 0;
        }
        const char *path = optind < argc ? argv[optind] : DCHAT_DEFAULT_KEY_FILE;
        if (key_generate(path, force, err, sizeof err) < 0)
                return fail("keygen: %s", err);
        printf("wrote a new cluster key to %s (mode 0600); copy it to every host of the cluster\n", path);
        return 0;
}

/* pubkey [FILE]: the public half of a host key. */
static int cmd_pubkey(int argc, char **argv)
{
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        uint8_t sk[DCHAT_HOST_SK_BYTES];
        char err[PATH_MAX + 256], text[SECURE_PK_TEXT];
        int o;

        while ((o = getopt_long(argc, argv, "+h", opts, NULL)) >= 0) {
                if (o == 'h') {
                        pubkey_usage(stdout);
                        return 0;
                }
                pubkey_usage(stderr);
                return 2;
        }
        if (argc - optind > 1) {
                fprintf(stderr, "dchatctl: pubkey takes at most one file ('%s')\n", argv[optind + 1]);
                pubkey_usage(stderr);
                return 2;
        }
        const char *path = optind < argc ? argv[optind] : DCHAT_DEFAULT_HOST_KEY_FILE;
        if (hostkey_load(path, sk, err, sizeof err) < 0)
                return fail("pubkey: %s", err);
        printf("%s\n", secure_pk_text(sk + 32, text));
        sodium_memzero(sk, sizeof sk);
        return 0;
}

static const struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        void (*usage)(FILE *f);
} commands[] = {
        { "post", cmd_post, post_usage },
        { "view", cmd_view, view_usage },
        { "chat", run_chat, chat_usage },
        { "who", cmd_who, who_usage },
        { "status", cmd_status, status_usage },
        { "verify", cmd_verify, verify_usage },
        { "note", cmd_note, note_usage },
        { "keygen", cmd_keygen, keygen_usage },
        { "pubkey", cmd_pubkey, pubkey_usage },
        { "server", cmd_server, server_usage },
        { "reload", cmd_reload, reload_usage },
        { "trace", run_trace, NULL },
        { "explain", run_explain, NULL },
};

static const struct command *command_named(const char *name)
{
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (!strcmp(name, commands[i].name))
                        return &commands[i];
        return NULL;
}

/* help [COMMAND] */
static int cmd_help(int argc, char **argv)
{
        if (argc > 2) {
                fprintf(stderr, "dchatctl: help takes at most one command\n");
                return 2;
        }
        if (argc < 2 || !strcmp(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        const struct command *c = command_named(argv[1]);
        if (!c) {
                fprintf(stderr, "dchatctl: no command '%s'; the commands are post, view, chat, who, status, "
                                "verify, note, server, reload, trace, explain, keygen, pubkey\n", argv[1]);
                return 2;
        }
        if (c->usage) {
                c->usage(stdout);
                return 0;
        }
        /* a command with its usage of its own: as COMMAND --help */
        char *args[] = { argv[1], (char *) "--help", NULL };
        optind = 1;
        return c->run(2, args);
}

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
        if (socket_path && *socket_path)
                socket_origin = "DCHAT_SOCKET";
        else
                socket_path = DCHAT_DEFAULT_SOCKET;
        while ((o = getopt_long(argc, argv, "+s:h", opts, NULL)) >= 0) {
                switch (o) {
                case 's':
                        socket_option(optarg);
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
        if (!strcmp(argv[optind], "help"))
                return cmd_help(argc - optind, argv + optind);
        const struct command *c = command_named(argv[optind]);
        if (!c) {
                fprintf(stderr, "dchatctl: unknown command '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        command = c->name;
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;
        optind = 1;
        int r = c->run(sub_argc, sub_argv);
        if (sock >= 0)
                close(sock);
        wbuf_free(&inbuf);
        return r;
}
