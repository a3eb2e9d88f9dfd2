/* SPDX-License-Identifier: MIT */
/*
 * chat.c — `dchatctl chat`: an interactive prompt on the chat room.
 *
 * One poll loop over the terminal and a follow session (follow.c): a key
 * goes to libedit (unbuffered: el_gets returns after each key), a finished
 * line is posted on the session's connection, and each line the server
 * stores is printed above the prompt, after which libedit draws the prompt
 * and the partly typed line again (EL_REFRESH).  Our own posts appear the
 * same way, in log order, once they are stored.  libedit's own interface,
 * not its readline emulation: el_line() tells where the cursor is, which
 * the emulation's rl_point does not after every key (Ctrl-U, say).
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <histedit.h>

#include "client.h"
#include "number.h"

#define TAG_POST        (FOLLOW_TAG_USER + 1)   /* + n: one tag per post, cycling */
#define TAG_STATUS      (FOLLOW_TAG_USER - 1 + 0x40000000u)
#define TAG_VIEW        (FOLLOW_TAG_USER - 1 + 0x50000000u)
#define POST_TAGS       0x3fff0000u

static struct {
        struct follow f;
        char prompt[2 * DCHAT_NAME_MAX + 8];
        EditLine *el;
        History *hist;
        bool editing;                   /* the prompt and input are on the screen */
        bool quit;
        uint32_t next_post;
        unsigned posts_pending;
        /* /view N */
        uint32_t view_tag;
        uint64_t view_from, view_upto, view_n;
} chat;

static volatile sig_atomic_t resized;

static void on_winch(int sig)
{
        (void) sig;
        resized = 1;
}

static int term_cols(void)
{
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

/*
 * Prints a line above the prompt: the cursor goes to the start of the
 * prompt's first row, the prompt and what is typed are wiped, the line is
 * printed, and libedit draws prompt and input again where they were, with
 * the cursor where it was.
 */
static void above(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void above(const char *fmt, ...)
{
        va_list ap;

        if (chat.editing) {
                int cols = term_cols();
                const LineInfo *li = el_line(chat.el);
                int rows = (int) ((strlen(chat.prompt) + (size_t) (li->cursor - li->buffer)) / (size_t) cols);
                if (rows > 0)
                        printf("\033[%dA", rows);
                printf("\r\033[J");
        }
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        if (chat.editing)
                el_set(chat.el, EL_REFRESH);
}

static void show_entry(const struct dchat_entry *e, void *userdata)
{
        char when[32];
        (void) userdata;
        entry_format_time(e, when, sizeof when);
        above("%s %s: %s", when, e->author, e->text);
}

static void show_damaged(uint64_t first, uint64_t last, struct dchat_str reason, void *userdata)
{
        char line[DCHAT_REASON_MAX + 160];
        (void) userdata;
        damaged_line(line, sizeof line, first, last, reason);
        above("%s", line);
}

static void show_notice(const char *msg, void *userdata)
{
        (void) userdata;
        above("*** %s", msg);
        if (follow_fd(&chat.f) < 0 && chat.posts_pending) {
                /* their answers are lost with the connection */
                above("*** %u post(s) were not confirmed: they may or may not have been stored; "
                      "if they were, they appear here once dchatd is back", chat.posts_pending);
                chat.posts_pending = 0;
        }
}

static void show_status(const struct dchat_status *st)
{
        char peers[1024] = "";
        size_t off = 0;

        for (unsigned i = 0; i < st->n_peers && off < sizeof peers; i++)
                off += (size_t) snprintf(peers + off, sizeof peers - off, "%s%s (%s%s%s)", i ? ", " : "",
                                         st->peers[i].name, st->peers[i].connected ? "connected" : "not connected",
                                         st->peers[i].state[0] ? ", " : "", st->peers[i].state);
        if (st->role == ROLE_PEER)
                above("*** %s: peer, server %s %s, lamport %llu, dme %s, %u queued; peers: %s", st->node, st->server,
                      st->server_connected ? "connected" : "NOT connected", (unsigned long long) st->lamport,
                      st->dme_state, st->queued, off ? peers : "none");
        else
                above("*** %s: server, last seq %llu; peers: %s", st->node, (unsigned long long) st->last_seq,
                      off ? peers : "none");
}

static void ask_view_page(void)
{
        if (follow_send(&chat.f, &(struct dchat_msg) {
                    .type = MSG_VIEW, .tag = chat.view_tag,
                    .view = { chat.view_from, chat.view_from ? 0 : chat.view_n, chat.view_upto, 256, 0 } }) < 0) {
                above("*** /view failed: not connected to dchatd");
                chat.view_tag = 0;
        }
}

/* Answers to our own requests on the session's connection. */
static void on_other(const struct dchat_msg *m, void *userdata)
{
        (void) userdata;
        if (m->tag == TAG_STATUS) {
                if (m->type == MSG_STATUS_REPLY)
                        show_status(m->status);
                else if (m->type == MSG_ERROR)
                        above("*** /status failed: %.*s", (int) m->error.text.len, m->error.text.p);
                return;
        }
        if (chat.view_tag && m->tag == chat.view_tag) {
                if (m->type == MSG_ENTRY) {
                        char when[32];
                        entry_format_time(m->append, when, sizeof when);
                        above("  %s %s: %s", when, m->append->author, m->append->text);
                } else if (m->type == MSG_ENTRY_DAMAGED) {
                        char line[DCHAT_REASON_MAX + 160];
                        damaged_line(line, sizeof line, m->damaged.first_seq, m->damaged.last_seq, m->damaged.reason);
                        above("  %s", line);
                } else if (m->type == MSG_ERROR) {
                        above("*** /view failed: %.*s", (int) m->error.text.len, m->error.text.p);
                        chat.view_tag = 0;
                } else if (m->type == MSG_VIEW_END) {
                        if (m->view_end.done || m->view_end.next_seq <= chat.view_from) {
                                above("*** end of /view");
                                chat.view_tag = 0;
                        } else {
                                chat.view_from = m->view_end.next_seq;
                                chat.view_upto = m->view_end.last_seq;
                                ask_view_page();
                        }
                }
                return;
        }
        if (m->tag >= TAG_POST && m->tag < TAG_POST + POST_TAGS) {
                if (chat.posts_pending)
                        chat.posts_pending--;
                if (m->type == MSG_ERROR)
                        above("*** post failed: %.*s", (int) m->error.text.len, m->error.text.p);
                /* POSTED: the line shows up through the follow, in log order */
        }
}

static void post_line(const char *text)
{
        const char *why;
        size_t len = strlen(text);

        if (text_validate(text, len, &why) < 0) {
                above("*** cannot post: %s", why);
                return;
        }
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        if (!utc_offset_valid(tm.tm_gmtoff)) {
                above("*** cannot post: the time zone's UTC offset (%+ld s) is beyond what dchat can keep",
                      (long) tm.tm_gmtoff);
                return;
        }
        uint32_t tag = TAG_POST + chat.next_post++ % POST_TAGS;
        if (follow_send(&chat.f, &(struct dchat_msg) {
                    .type = MSG_POST, .tag = tag,
                    .post = { (int32_t) tm.tm_gmtoff, 0, { text, (uint16_t) len } } }) < 0) {
                above("*** not connected to dchatd: not posted");
                return;
        }
        chat.posts_pending++;
}

static void command(const char *line)
{
        char cmd[32];
        int n = 0;

        if (sscanf(line, "/%31s%n", cmd, &n) < 1) {
                above("*** commands: /view N, /status, /quit, /help");
                return;
        }
        const char *arg = line + n;
        while (*arg == ' ')
                arg++;
        if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "exit") == 0) {
                chat.quit = true;
        } else if (strcmp(cmd, "help") == 0) {
                above("*** type a line and Enter to post it; //text posts /text");
                above("*** /view N: the last N lines of the log; /status: the state of dchatd; /quit (or Ctrl-D): leave");
        } else if (strcmp(cmd, "status") == 0) {
                if (follow_send(&chat.f, &(struct dchat_msg) { .type = MSG_STATUS, .tag = TAG_STATUS }) < 0)
                        above("*** /status failed: not connected to dchatd");
        } else if (strcmp(cmd, "view") == 0) {
                uint64_t v = 10;
                if (*arg && number_parse_u64(arg, 1, UINT64_MAX, &v) < 0) {
                        above("*** /view needs a positive number of lines, not '%s'", arg);
                        return;
                }
                chat.view_tag = chat.view_tag == TAG_VIEW ? TAG_VIEW + 1 : TAG_VIEW;
                chat.view_from = chat.view_upto = 0;
                chat.view_n = v;
                above("*** the last %llu line(s):", (unsigned long long) v);
                ask_view_page();
        } else {
                above("*** unknown command /%s; commands: /view N, /status, /quit, /help", cmd);
        }
}

static void on_line(const char *line)
{
        HistEvent ev;

        /* wipe the typed line: it comes back from the server as a log line */
        int cols = term_cols();
        int rows = (int) ((strlen(chat.prompt) + strlen(line)) / (size_t) cols) + 1;
        printf("\033[%dA\r\033[J", rows);
        fflush(stdout);
        if (line[0])
                history(chat.hist, &ev, H_ENTER, line);
        if (line[0] == '/' && line[1] != '/')
                command(line);
        else if (line[0])
                post_line(line[0] == '/' ? line + 1 : line);
}

/*
 * A key on the terminal: libedit takes it and gives the line so far (an
 * empty one as NULL); Ctrl-D on an empty line comes as "\4"; a finished
 * line ends with a newline.
 */
static void on_key(void)
{
        int n = 0;
        const char *s = el_gets(chat.el, &n);

        if (s && n == 1 && s[0] == 4) {
                chat.quit = true;
                return;
        }
        if (!s || n <= 0 || (s[n - 1] != '\n' && s[n - 1] != '\r'))
                return;                 /* still typing */
        char line[DCHAT_TEXT_MAX + 2];
        snprintf(line, sizeof line, "%.*s", n - 1, s);
        /* leaving unbuffered mode ends this line; entering it again starts an empty one */
        chat.editing = false;
        el_set(chat.el, EL_UNBUFFERED, 0);
        on_line(line);
        if (chat.quit)
                return;
        el_set(chat.el, EL_UNBUFFERED, 1);      /* draws the prompt */
        chat.editing = true;
}

static char *prompt_of(EditLine *e)
{
        (void) e;
        return chat.prompt;
}

/* The node name from STATUS, on a connection of its own, before anything else. */
static int node_name(const char *socket_path, char *node, size_t cap, char *err, size_t errlen)
{
        struct cconn c = { .fd = -1 };
        struct dchat_msg m;
        int r = cconn_open(&c, socket_path, err, errlen);

        if (r < 0)
                return r;
        r = cconn_send(&c, &(struct dchat_msg) { .type = MSG_STATUS, .tag = 1 });
        while (r >= 0) {
                r = cconn_frame(&c, &m);
                if (r > 0)
                        break;
                if (r < 0)
                        break;
                struct pollfd pfd = { .fd = c.fd, .events = POLLIN };
                if (poll(&pfd, 1, 10000) == 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                r = cconn_fill(&c);
                if (r == 0)
                        r = -ECONNRESET;
                if (r == -EAGAIN)
                        r = 0;
        }
        if (r > 0 && m.type == MSG_STATUS_REPLY) {
                strlcpy(node, m.status->node, cap);
                r = 0;
        } else {
                snprintf(err, errlen, "cannot ask dchatd for its node name: %s",
                         r < 0 ? strerror(-r) : "unexpected answer");
                r = -EPROTO;
        }
        cconn_close(&c);
        wbuf_free(&c.in);
        return r;
}

static void chat_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s socket] chat [-n N]\n"
                   "An interactive prompt: type a line to post it; others' lines appear above.\n"
                   "Commands: /view N, /status, /help, /quit (or Ctrl-D).  -n: lines shown first (10).\n");
}

int cmd_chat(int argc, char **argv, const char *socket_path)
{
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' }, {} };
        uint64_t last_n = 10;
        char node[DCHAT_NAME_MAX + 1], err[512];
        sigset_t old;
        int o, r = 0;

        while ((o = getopt_long(argc, argv, "+n:h", opts, NULL)) >= 0) {
                if (o == 'n') {
                        if (number_parse_u64(optarg, 0, UINT64_MAX, &last_n) < 0) {
                                fprintf(stderr, "dchatctl: chat -n needs a decimal number, not '%s'\n", optarg);
                                return 2;
                        }
                } else if (o == 'h') {
                        chat_usage(stdout);
                        return 0;
                } else {
                        chat_usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: chat takes no arguments ('%s')\n", argv[optind]);
                chat_usage(stderr);
                return 2;
        }
        if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
                fprintf(stderr, "dchatctl: chat needs a terminal; use post and view -f in scripts\n");
                return 1;
        }
        if (node_name(socket_path, node, sizeof node, err, sizeof err) < 0) {
                fprintf(stderr, "dchatctl: %s\n", err);
                return 1;
        }
        struct passwd *pw = getpwuid(getuid());
        snprintf(chat.prompt, sizeof chat.prompt, "%s@%s> ", pw ? pw->pw_name : "?", node);

        chat.f = (struct follow) { .socket_path = socket_path, .last_n = last_n, .show = show_entry,
                                   .damaged = show_damaged,
                                   .notice = show_notice, .other = on_other };
        /* with -n 0, no history: an empty view up to the end */
        if (last_n == 0)
                chat.f.since_seq = UINT64_MAX / 2;
        follow_signals(&old);
        if (follow_start(&chat.f) < 0) {
                fprintf(stderr, "dchatctl: %s\n", chat.f.error);
                r = 1;
                goto out;
        }
        HistEvent ev;
        chat.hist = history_init();
        chat.el = el_init("dchatctl", stdin, stdout, stderr);
        if (!chat.hist || !chat.el) {
                fprintf(stderr, "dchatctl: cannot set up line editing\n");
                r = 1;
                goto out;
        }
        history(chat.hist, &ev, H_SETSIZE, 1000);
        el_set(chat.el, EL_EDITOR, "emacs");
        el_set(chat.el, EL_HIST, history, chat.hist);
        el_set(chat.el, EL_PROMPT, prompt_of);
        el_set(chat.el, EL_SIGNAL, 0);          /* ours: SIGINT ends the chat, see follow_signals */
        el_source(chat.el, NULL);               /* ~/.editrc */
        el_set(chat.el, EL_UNBUFFERED, 1);      /* raw terminal; draws the prompt */
        chat.editing = true;
        /* a resized terminal: libedit learns the new width (it does not catch signals here) */
        sigaction(SIGWINCH, &(struct sigaction) { .sa_handler = on_winch }, NULL);

        while (!chat.quit && !follow_interrupted()) {
                struct pollfd pfd[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
                                         { .fd = follow_fd(&chat.f), .events = POLLIN } };
                int t = follow_timeout(&chat.f);
                struct timespec ts = { t / 1000, (long) (t % 1000) * 1000000 };
                if (ppoll(pfd, 2, t >= 0 ? &ts : NULL, &old) < 0 && errno != EINTR) {
                        above("*** poll: %s", strerror(errno));
                        r = 1;
                        break;
                }
                if (follow_interrupted())
                        break;
                if (resized) {
                        resized = 0;
                        el_resize(chat.el);
                }
                /* the terminal hung up (its window closed, tmux or ssh gone): end,
                 * rather than spin on a descriptor that polls readable forever */
                if (pfd[0].revents & (POLLHUP | POLLERR | POLLNVAL))
                        break;
                if (pfd[0].revents & POLLIN)
                        on_key();
                if (chat.quit)
                        break;
                if ((pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) || t == 0 || follow_fd(&chat.f) < 0) {
                        if (follow_tick(&chat.f) < 0) {
                                above("*** %s", chat.f.error);
                                r = 1;
                                break;
                        }
                }
        }
        signal(SIGWINCH, SIG_DFL);
        if (chat.editing) {
                chat.editing = false;
                printf("\r\033[J");
                fflush(stdout);
        }
        if (chat.posts_pending)
                fprintf(stderr, "dchatctl: %u post(s) not yet confirmed when the chat ended; they may or may not "
                                "have been stored\n", chat.posts_pending);
out:
        if (chat.el) {
                el_set(chat.el, EL_UNBUFFERED, 0);      /* the terminal as it was */
                el_end(chat.el);
        }
        if (chat.hist)
                history_end(chat.hist);
        follow_free(&chat.f);
        sigprocmask(SIG_SETMASK, &old, NULL);
        return r;
}
