/* SPDX-License-Identifier: MIT */
/*
 * chat.c — `dchatctl chat`: an interactive prompt on the chat room.
 *
 * One poll loop over the terminal and a follow session (follow.c): a key
 * goes to libedit (unbuffered: el_gets returns after each key), a finished
 * line is posted on the session's connection, and each line the server
 * stores is printed above the prompt, after which libedit draws the prompt
 * and the partly typed line again (EL_REFRESH).  Our own posts appear the
 * same way, in log order, once they are stored; until then each one waits
 * in a line of its own between the log and the prompt ("[sending] ...",
 * "[waiting: why] ..."), and one that fails is printed with its text.
 * libedit's own interface, not its readline emulation: el_line() tells
 * where the cursor is, which the emulation's rl_point does not after every
 * key (Ctrl-U, say).
 *
 * The screen from the top: the log (lines and notices, scrolling), the
 * live region (the pending posts, one row each, then the prompt and the
 * input, which may wrap).  Whatever prints above moves the cursor to the
 * top of the live region, erases it, prints, and draws the region again.
 *
 * Presence: a WHO with watch on the session's connection makes this chat
 * count as open on this node, and brings a PRESENCE each time a node or
 * its users change; /who asks once more and prints the answer.
 *
 * The text typed is UTF-8 whatever the locale says (dchat's texts are
 * UTF-8): libedit reads multibyte characters only under a UTF-8 LC_CTYPE,
 * and drops every byte above 127 in the C locale.
 */
#include <errno.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <histedit.h>

#include "client.h"
#include "number.h"

#define TAG_POST        (FOLLOW_TAG_USER + 1)   /* + n: one tag per post, cycling */
#define TAG_STATUS      (FOLLOW_TAG_USER - 1 + 0x40000000u)
#define TAG_VIEW        (FOLLOW_TAG_USER - 1 + 0x50000000u)
#define TAG_WATCH       (FOLLOW_TAG_USER - 1 + 0x60000000u)
#define TAG_WHO         (FOLLOW_TAG_USER - 1 + 0x70000000u)
#define POST_TAGS       0x3fff0000u
#define PENDING_MAX     32                      /* posts on their way at once */
#define TAB_STOP        8

/* A post on its way: shown between the log and the prompt until the log shows it. */
struct pending {
        uint32_t tag;
        enum { P_SENDING, P_WAITING, P_STORED } state;
        uint64_t seq;                           /* P_STORED: as this line */
        char why[DCHAT_ERROR_MAX + 1];          /* P_WAITING */
        char text[DCHAT_TEXT_MAX + 1];
};

static struct {
        struct follow f;
        char me[DCHAT_NAME_MAX + 1];            /* our login name: our own lines are marked */
        char node[DCHAT_NAME_MAX + 1];
        char prompt[2 * DCHAT_NAME_MAX + 8];
        EditLine *el;
        History *hist;
        bool editing;                   /* the prompt and input are on the screen */
        bool quit;
        bool color;                     /* a terminal, and no NO_COLOR */
        bool local_time;                /* times in the viewer's zone (else the poster's) */
        bool seconds;
        uint32_t next_post;
        struct pending pend[PENDING_MAX];
        unsigned n_pend;
        unsigned shown_pend;            /* pending rows on the screen now */
        /* /view N */
        uint32_t view_tag;
        uint64_t view_from, view_upto, view_n;
        /* presence: the table as watched (base: its first answer is in), and a /who being gathered */
        struct wtable who;
        bool who_base;
        struct wtable once;
        bool once_asked;
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

/* --- widths on the screen ------------------------------------------------------------------- */

static int wc_cols(wchar_t c)
{
        int w = wcwidth(c);
        return w < 0 ? 0 : w;
}

/* Columns that s (UTF-8) takes; *cut: the bytes that fit in max columns (max < 0: all). */
static int text_cols(const char *s, int max, size_t *cut)
{
        mbstate_t st;
        size_t n = strlen(s), off = 0;
        int w = 0;

        memset(&st, 0, sizeof st);
        while (off < n) {
                wchar_t c;
                size_t k = mbrtowc(&c, s + off, n - off, &st);
                int cw = 1;
                if (k == (size_t) -1 || k == (size_t) -2) {
                        memset(&st, 0, sizeof st);
                        k = 1;
                } else if (k == 0)
                        break;
                else
                        cw = wc_cols(c);
                if (max >= 0 && w + cw > max)
                        break;
                w += cw;
                off += k;
        }
        if (cut)
                *cut = off;
        return w;
}

/* Rows of the prompt and the input above the cursor's. */
static int input_rows_above_cursor(void)
{
        const LineInfoW *li = el_wline(chat.el);
        int cols = term_cols(), w = text_cols(chat.prompt, -1, NULL);

        for (const wchar_t *c = li->buffer; c < li->cursor; c++)
                w += wc_cols(*c);
        return w / cols;
}

/* --- the live region -------------------------------------------------------------------------- */

/* ANSI colours for authors: a stable one per name (not black or white: either may be the background) */
static const int palette[] = { 31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96 };

static int color_of(const char *name)
{
        uint32_t h = 2166136261u;
        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                h = (h ^ *p) * 16777619u;
        return palette[h % (sizeof palette / sizeof palette[0])];
}

static void print_pending(const struct pending *pp)
{
        char head[DCHAT_ERROR_MAX + 64];
        int cols = term_cols() - 1;     /* one row each: never into the last column */
        size_t cut;

        if (pp->state == P_WAITING)
                snprintf(head, sizeof head, "[waiting: %s] ", pp->why);
        else if (pp->state == P_STORED)
                snprintf(head, sizeof head, "[stored as line %llu] ", (unsigned long long) pp->seq);
        else
                snprintf(head, sizeof head, "[sending] ");
        if (chat.color)
                fputs("\033[2m", stdout);
        int w = text_cols(head, cols, &cut);
        fwrite(head, 1, cut, stdout);
        if (cut == strlen(head)) {
                text_cols(pp->text, cols - w, &cut);
                if (cut < strlen(pp->text)) {
                        /* cut, with room for the ellipsis */
                        text_cols(pp->text, cols - w - 1 > 0 ? cols - w - 1 : 0, &cut);
                        fwrite(pp->text, 1, cut, stdout);
                        fputs("\u2026", stdout);
                } else {
                        fwrite(pp->text, 1, cut, stdout);
                }
        }
        if (chat.color)
                fputs("\033[0m", stdout);
}

/* The cursor up rows, to the start of that row, and everything from there on erased. */
static void erase_up(int up)
{
        if (up > 0)
                printf("\033[%dA", up);
        printf("\r\033[J");
}

/* The cursor to the top of the live region, which is erased. */
static void region_clear(void)
{
        erase_up((int) chat.shown_pend + (chat.editing ? input_rows_above_cursor() : 0));
}

/* The live region again: the pending posts, then libedit's prompt and input (if it edits now). */
static void region_draw(void)
{
        for (unsigned i = 0; i < chat.n_pend; i++) {
                print_pending(&chat.pend[i]);
                printf("\n");
        }
        chat.shown_pend = chat.n_pend;
        fflush(stdout);
        if (chat.editing)
                el_set(chat.el, EL_REFRESH);
}

static void region_redraw(void)
{
        region_clear();
        region_draw();
}

/* Prints a line into the log, above the live region, without disturbing what is typed. */
static void above(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void above(const char *fmt, ...)
{
        va_list ap;

        region_clear();
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        region_draw();
}

/* --- the log --------------------------------------------------------------------------------- */

/* "17 Oct 02:57PM root@node1 (you): text": who from where, a colour per author, ours marked. */
static void entry_line(const struct dchat_entry *e, const char *indent)
{
        char when[48];
        bool mine = !strcmp(e->author, chat.me);

        format_when(e, chat.local_time, chat.seconds, when, sizeof when);
        if (chat.color)
                above("%s%s \033[%s%dm%s@%s%s\033[0m: %s", indent, when, mine ? "1;" : "", color_of(e->author),
                      e->author, e->node, mine ? " (you)" : "", e->text);
        else
                above("%s%s %s@%s%s: %s", indent, when, e->author, e->node, mine ? " (you)" : "", e->text);
}

/* Stored posts leave the live region once the log shows them. */
static void pending_shown(uint64_t seq)
{
        unsigned k = 0;

        for (unsigned i = 0; i < chat.n_pend; i++)
                if (!(chat.pend[i].state == P_STORED && chat.pend[i].seq <= seq))
                        chat.pend[k++] = chat.pend[i];
        if (k != chat.n_pend) {
                region_clear();
                chat.n_pend = k;
                region_draw();
        }
}

static void show_entry(const struct dchat_entry *e, void *userdata)
{
        (void) userdata;
        entry_line(e, "");
        pending_shown(e->seq);
}

static void show_damaged(uint64_t first, uint64_t last, struct dchat_str reason, void *userdata)
{
        char line[DCHAT_REASON_MAX + 160];
        (void) userdata;
        damaged_line(line, sizeof line, first, last, reason);
        above("%s", line);
        pending_shown(last);
}

static struct pending *pending_find(uint32_t tag)
{
        for (unsigned i = 0; i < chat.n_pend; i++)
                if (chat.pend[i].tag == tag)
                        return &chat.pend[i];
        return NULL;
}

static void pending_drop(struct pending *pp)
{
        unsigned i = (unsigned) (pp - chat.pend);

        region_clear();
        memmove(chat.pend + i, chat.pend + i + 1, (chat.n_pend - i - 1) * sizeof *chat.pend);
        chat.n_pend--;
        region_draw();
}

static void show_notice(const char *msg, void *userdata)
{
        (void) userdata;
        above("*** %s", msg);
        if (follow_fd(&chat.f) >= 0)
                return;
        /* their answers are lost with the connection to dchatd */
        for (unsigned i = 0; i < chat.n_pend;) {
                struct pending *pp = &chat.pend[i];
                if (pp->state == P_STORED) {
                        i++;            /* stored: the log shows it once the follow goes on */
                        continue;
                }
                above("*** not confirmed, dchatd went away: \"%s\": it may or may not have been stored; if it "
                      "was, it appears here once dchatd is back", pp->text);
                pending_drop(pp);
        }
}

/* --- presence -------------------------------------------------------------------------------- */

static bool wnode_has(const struct wnode *w, const char *user, uint8_t kind)
{
        for (unsigned i = 0; i < w->n; i++)
                if (!strcmp(w->users[i].name, user))
                        return w->users[i].kinds & kind;
        return false;
}

/* "lucy, bob and ann" of the users with kind on w (and how many), into buf. */
static unsigned users_of(const struct wnode *w, uint8_t kind, char *buf, size_t cap)
{
        unsigned n = 0;
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < w->n; i++) {
                if (!(w->users[i].kinds & kind))
                        continue;
                if (off < cap)
                        off += (size_t) snprintf(buf + off, cap - off, "%s%s", n ? ", " : "", w->users[i].name);
                n++;
        }
        return n;
}

/* What the chat last said of a peer: up, gone, dead (a suspect one is none of these yet). */
enum { SEEN_NONE, SEEN_UP, SEEN_GONE, SEEN_DEAD };

static uint8_t seen_of(uint8_t state, uint8_t was)
{
        switch (state) {
        case NODE_UP:
                return SEEN_UP;
        case NODE_DOWN:
                return SEEN_GONE;
        case NODE_DEAD:
                return SEEN_DEAD;
        default:
                return was;     /* suspect, unknown: nothing to say yet */
        }
}

/* What changed on a peer since the last PRESENCE, said in the chat (the first answer is the base). */
static void presence_notices(const struct wnode *old, struct wnode *w, bool quiet)
{
        char who[1024];
        uint8_t was = w->seen;

        w->seen = seen_of(w->state, was);
        /* the servers' links are the follow's to tell (it says when the log is away and back) */
        if (quiet || w->role != ROLE_PEER || !old->name[0])
                return;
        if (w->seen != was && w->seen == SEEN_GONE && was == SEEN_UP)
                above("*** %s went away (%s)", w->name, w->note[0] ? w->note : "its link is down");
        else if (w->seen != was && w->seen == SEEN_DEAD && !strncmp(w->note, "left", 4))
                above("*** %s %s", w->name, w->note);  /* it said it leaves (LEAVE: a clean stop) */
        else if (w->seen != was && w->seen == SEEN_DEAD)
                above("*** %s was declared dead (%s)", w->name, w->note[0] ? w->note : "silent");
        else if (w->seen != was && w->seen == SEEN_UP)
                above("*** %s is up", w->name);
        if (w->seen != SEEN_UP || !(w->flags & PRESENCE_USERS_KNOWN))
                return;
        if (!(old->flags & PRESENCE_USERS_KNOWN) || was != SEEN_UP) {
                /* it just said who is there: not news, unless someone is in the chat */
                if (users_of(w, PRESENCE_CHAT, who, sizeof who))
                        above("*** in the chat on %s: %s", w->name, who);
                return;
        }
        for (unsigned i = 0; i < w->n; i++)
                if ((w->users[i].kinds & PRESENCE_CHAT) && !wnode_has(old, w->users[i].name, PRESENCE_CHAT))
                        above("*** %s opened a chat on %s", w->users[i].name, w->name);
        for (unsigned i = 0; i < old->n; i++)
                if ((old->users[i].kinds & PRESENCE_CHAT) && !wnode_has(w, old->users[i].name, PRESENCE_CHAT))
                        above("*** %s left the chat on %s", old->users[i].name, w->name);
}

/* /who: one line per node, from the answer just gathered. */
static void print_who(const struct wtable *t)
{
        for (unsigned i = 0; i < t->n; i++) {
                const struct wnode *w = &t->nodes[i];
                char chats[1024], follows[1024], users[2200] = "", state[DCHAT_NOTE_MAX + 32];
                unsigned nc = users_of(w, PRESENCE_CHAT, chats, sizeof chats);
                unsigned nf = users_of(w, PRESENCE_FOLLOW, follows, sizeof follows);

                if (!(w->flags & PRESENCE_USERS_KNOWN))
                        snprintf(users, sizeof users, "%s", w->state == NODE_UP ? "; users not known yet" : "");
                else if (!nc && !nf)
                        snprintf(users, sizeof users, "; nobody in the chat");
                else
                        snprintf(users, sizeof users, "%s%s%s%s%s%s", nc ? "; in the chat: " : "", nc ? chats : "",
                                 nf ? "; following (view -f): " : "", nf ? follows : "",
                                 w->more ? "; and more" : "", "");
                snprintf(state, sizeof state, "%s%s%s%s", node_state_name(w->state), w->note[0] ? " (" : "",
                         w->note, w->note[0] ? ")" : "");
                above("*** %s (%s%s): %s%s", w->name, role_name(w->role), (w->flags & PRESENCE_SELF) ? ", here" : "",
                      state, users);
        }
}

static void on_presence(const struct dchat_msg *m)
{
        struct wnode old;

        if (m->tag == TAG_WHO) {
                if (!chat.once_asked)
                        return;
                wnode_take(&chat.once, m, NULL);
                if (m->presence.flags & PRESENCE_END) {
                        print_who(&chat.once);
                        chat.once_asked = false;
                }
                return;
        }
        if (m->tag != TAG_WATCH)
                return;
        struct wnode *w = wnode_take(&chat.who, m, &old);
        if (!w)
                return;
        presence_notices(&old, w, !chat.who_base);
        if (!chat.who_base && (m->presence.flags & PRESENCE_END)) {
                /* the room as we came in: who else is in the chat */
                char line[2048] = "";
                size_t off = 0;
                unsigned n = 0;
                chat.who_base = true;
                for (unsigned i = 0; i < chat.who.n; i++) {
                        const struct wnode *x = &chat.who.nodes[i];
                        for (unsigned k = 0; k < x->n; k++) {
                                if (!(x->users[k].kinds & PRESENCE_CHAT) ||
                                    ((x->flags & PRESENCE_SELF) && !strcmp(x->users[k].name, chat.me)))
                                        continue;
                                if (off < sizeof line)
                                        off += (size_t) snprintf(line + off, sizeof line - off, "%s%s@%s",
                                                                 n ? ", " : "", x->users[k].name, x->name);
                                n++;
                        }
                }
                if (n)
                        above("*** in the chat: %s", line);
                else
                        above("*** nobody else is in the chat just now (/who shows who is where)");
        }
}

/* Watch the room on this connection (again, after a reconnect: the base is taken afresh). */
static void watch(void *userdata)
{
        (void) userdata;
        chat.who_base = false;
        chat.who.n = 0;
        (void) follow_send(&chat.f, &(struct dchat_msg) { .type = MSG_WHO, .tag = TAG_WATCH, .who = { 1 } });
}

/* --- answers to our own requests --------------------------------------------------------------- */

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

static void on_post_answer(const struct dchat_msg *m)
{
        struct pending *pp = pending_find(m->tag);

        if (!pp)
                return;
        if (m->type == MSG_POST_WAIT) {
                if (dchat_str_copy(pp->why, sizeof pp->why, m->post_wait.reason) < 0)
                        strlcpy(pp->why, "?", sizeof pp->why);
                size_t l = strlen(pp->why);
                snprintf(pp->why + l, sizeof pp->why - l, "; for %u s at most", (m->post_wait.wait_ms + 999) / 1000);
                pp->state = P_WAITING;
                region_redraw();
        } else if (m->type == MSG_POSTED) {
                pp->state = P_STORED;
                pp->seq = m->appended.seq;
                if (chat.f.shown >= pp->seq)
                        pending_drop(pp);       /* the log showed it already */
                else
                        region_redraw();
        } else if (m->type == MSG_ERROR) {
                char why[DCHAT_ERROR_MAX + 1];
                if (dchat_str_copy(why, sizeof why, m->error.text) < 0)
                        strlcpy(why, "?", sizeof why);
                above("*** not posted: \"%s\": %s", pp->text, why);
                pending_drop(pp);
        }
}

/* Answers to our own requests on the session's connection. */
static void on_other(const struct dchat_msg *m, void *userdata)
{
        (void) userdata;
        if (m->type == MSG_PRESENCE) {
                on_presence(m);
                return;
        }
        if (m->tag == TAG_WHO || m->tag == TAG_WATCH) {
                if (m->type == MSG_ERROR)
                        above("*** /who failed: %.*s", (int) m->error.text.len, m->error.text.p);
                chat.once_asked = false;
                return;
        }
        if (m->tag == TAG_STATUS) {
                if (m->type == MSG_STATUS_REPLY)
                        show_status(m->status);
                else if (m->type == MSG_ERROR)
                        above("*** /status failed: %.*s", (int) m->error.text.len, m->error.text.p);
                return;
        }
        if (chat.view_tag && m->tag == chat.view_tag) {
                if (m->type == MSG_ENTRY) {
                        entry_line(m->append, "  ");
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
        if (m->tag >= TAG_POST && m->tag < TAG_POST + POST_TAGS)
                on_post_answer(m);
}

/* --- what is typed ------------------------------------------------------------------------------ */

static void post_line(const char *text)
{
        const char *why;
        size_t len = strlen(text);

        if (text_validate(text, len, NULL) == 0 && post_text_validate(text, len, NULL) < 0)
                return;                 /* only spaces: like an empty line, nothing to post */
        if (post_text_validate(text, len, &why) < 0) {
                above("*** not posted: %s", why);
                return;
        }
        if (chat.n_pend == PENDING_MAX) {
                above("*** not posted: %u posts are on their way already; wait for them: \"%s\"", PENDING_MAX, text);
                return;
        }
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        if (!utc_offset_valid(tm.tm_gmtoff)) {
                above("*** not posted: the time zone's UTC offset (%+ld s) is beyond what dchat can keep",
                      (long) tm.tm_gmtoff);
                return;
        }
        uint32_t tag = TAG_POST + chat.next_post++ % POST_TAGS;
        if (follow_send(&chat.f, &(struct dchat_msg) {
                    .type = MSG_POST, .tag = tag,
                    .post = { (int32_t) tm.tm_gmtoff, 0, { text, (uint16_t) len } } }) < 0) {
                above("*** not posted, dchatd is not there (it restarts?): \"%s\"", text);
                return;
        }
        struct pending *pp = &chat.pend[chat.n_pend];
        *pp = (struct pending) { .tag = tag, .state = P_SENDING };
        strlcpy(pp->text, text, sizeof pp->text);
        region_clear();
        chat.n_pend++;
        region_draw();
}

static const char *const commands[] = { "/help", "/quit", "/exit", "/status", "/view", "/who", "/time", "/seconds" };

static void help(void)
{
        above("*** type a line and Enter to post it; //text posts /text; Tab completes a command or a name");
        above("*** /who: who is in the chat, on which node; /view N: the last N lines of the log; /status: this dchatd");
        above("*** /time: times in your zone or the poster's (now: %s); /seconds: with seconds or not",
              chat.local_time ? "yours" : "the poster's");
        above("*** Ctrl-C clears the line; /quit or Ctrl-D (on an empty line) leaves");
}

static void command(const char *line)
{
        char cmd[32];
        int n = 0;

        if (sscanf(line, "/%31s%n", cmd, &n) < 1) {
                above("*** commands: /who, /view N, /status, /time, /seconds, /quit, /help");
                return;
        }
        const char *arg = line + n;
        while (*arg == ' ')
                arg++;
        if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "exit") == 0) {
                chat.quit = true;
        } else if (strcmp(cmd, "help") == 0) {
                help();
        } else if (strcmp(cmd, "status") == 0) {
                if (follow_send(&chat.f, &(struct dchat_msg) { .type = MSG_STATUS, .tag = TAG_STATUS }) < 0)
                        above("*** /status failed: not connected to dchatd");
        } else if (strcmp(cmd, "who") == 0) {
                chat.once.n = 0;
                chat.once_asked = true;
                if (follow_send(&chat.f, &(struct dchat_msg) { .type = MSG_WHO, .tag = TAG_WHO }) < 0) {
                        above("*** /who failed: not connected to dchatd");
                        chat.once_asked = false;
                }
        } else if (strcmp(cmd, "time") == 0) {
                chat.local_time = !chat.local_time;
                if (chat.local_time) {
                        time_t now = time(NULL);
                        struct tm tm;
                        char zone[16];
                        localtime_r(&now, &tm);
                        strftime(zone, sizeof zone, "%z", &tm);
                        above("*** times from now on: your local time (UTC%s)", zone);
                } else
                        above("*** times from now on: each poster's local time");
        } else if (strcmp(cmd, "seconds") == 0) {
                chat.seconds = !chat.seconds;
                above("*** times from now on %s seconds", chat.seconds ? "with" : "without");
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
                above("*** unknown command /%s; commands: /who, /view N, /status, /time, /seconds, /quit, /help",
                      cmd);
        }
}

static void on_line(const char *line)
{
        HistEvent ev;

        /* wipe the typed line: it comes back from the server as a log line */
        int cols = term_cols();
        int rows = (text_cols(chat.prompt, -1, NULL) + text_cols(line, -1, NULL)) / cols + 1;
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
        char line[4 * DCHAT_TEXT_MAX + 2];
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

/* Ctrl-C: the line typed so far is dropped, as in a shell. */
static void clear_line(void)
{
        const LineInfoW *li = el_wline(chat.el);

        if (li->lastchar == li->buffer) {
                above("*** Ctrl-C clears the line; to leave: /quit or Ctrl-D");
                return;
        }
        /* where the region starts on the screen, as the line was */
        int up = (int) chat.shown_pend + input_rows_above_cursor();
        el_cursor(chat.el, (int) (li->lastchar - li->cursor));
        el_deletestr(chat.el, (int) (li->lastchar - li->buffer));
        erase_up(up);
        region_draw();                  /* the pending lines, and the prompt, empty */
}

/*
 * Tab: completes a command (at the start of the line) or the name of
 * someone in the room; otherwise it stands for spaces up to the next tab
 * stop (a post cannot hold a tab, and a key that does nothing looks broken).
 */
static unsigned char on_tab(EditLine *e, int ch)
{
        const LineInfo *li = el_line(e);
        const char *word = li->cursor;
        (void) ch;

        while (word > li->buffer && word[-1] != ' ')
                word--;
        size_t wl = (size_t) (li->cursor - word);
        const char *match = NULL;
        unsigned matches = 0;

        if (wl && word == li->buffer && word[0] == '/') {
                for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                        if (!strncmp(commands[i], word, wl)) {
                                match = commands[i];
                                matches++;
                        }
        } else if (wl) {
                for (unsigned i = 0; i < chat.who.n; i++)
                        for (unsigned k = 0; k < chat.who.nodes[i].n; k++) {
                                const char *u = chat.who.nodes[i].users[k].name;
                                if (!strncmp(u, word, wl) && (!match || strcmp(match, u))) {
                                        match = u;
                                        matches++;
                                }
                        }
        }
        if (matches == 1) {
                char rest[DCHAT_NAME_MAX + 2];
                snprintf(rest, sizeof rest, "%s ", match + wl);
                el_insertstr(e, rest);
                return CC_REFRESH;
        }
        if (matches > 1)
                return CC_REFRESH_BEEP;
        /* spaces up to the next tab stop of the text before the cursor */
        const LineInfoW *lw = el_wline(e);
        int w = 0;
        for (const wchar_t *c = lw->buffer; c < lw->cursor; c++)
                w += wc_cols(*c);
        char spaces[TAB_STOP + 1];
        int k = TAB_STOP - w % TAB_STOP;
        memset(spaces, ' ', (size_t) k);
        spaces[k] = '\0';
        el_insertstr(e, spaces);
        return CC_REFRESH;
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
        } else if (r > 0 && m.type == MSG_ERROR) {
                snprintf(err, errlen, "%.*s", (int) m.error.text.len, m.error.text.p);
                r = -EPROTO;
        } else {
                snprintf(err, errlen, "cannot ask dchatd for its node name: %s",
                         r < 0 ? strerror(-r) : "unexpected answer");
                r = -EPROTO;
        }
        cconn_close(&c);
        wbuf_free(&c.in);
        return r;
}

/*
 * Texts are UTF-8: libedit must read UTF-8 whatever the locale says.  The
 * user's LC_CTYPE if it is UTF-8, else C.UTF-8 (glibc has it built in),
 * else the first UTF-8 locale we find.  Only LC_CTYPE: times stay in the
 * assignment's English ("Oct", "PM").
 */
static bool utf8_locale(void)
{
        static const char *const fallback[] = { "C.UTF-8", "C.utf8", "en_US.UTF-8" };

        if (setlocale(LC_CTYPE, "") && !strcmp(nl_langinfo(CODESET), "UTF-8"))
                return true;
        for (size_t i = 0; i < sizeof fallback / sizeof fallback[0]; i++)
                if (setlocale(LC_CTYPE, fallback[i]) && !strcmp(nl_langinfo(CODESET), "UTF-8"))
                        return true;
        return false;
}

void chat_usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] chat [-n N] [--local-time] [--seconds]\n"
                   "An interactive prompt on the chat room: type a line and Enter to post it; the lines of\n"
                   "everyone appear above the prompt as the server stores them, as TIME USER@NODE: TEXT\n"
                   "(yours marked \"(you)\", a colour per user on a terminal unless NO_COLOR is set).\n"
                   "  -n N            the last N lines of the log first (default 10; 0: none)\n"
                   "  --local-time    times in your time zone, not each poster's (/time switches)\n"
                   "  --seconds       times with seconds (/seconds switches)\n"
                   "  -s, --socket SOCKET  dchatd's control socket (as before the command)\n"
                   "Commands: /who, /view N, /status, /time, /seconds, /help, /quit (or Ctrl-D).\n"
                   "Ctrl-C clears the line being typed; Tab completes a command or a name.\n");
}

int cmd_chat(int argc, char **argv, const char **socket_path)
{
        static const struct option opts[] = { { "help", no_argument, NULL, 'h' },
                                              { "socket", required_argument, NULL, 's' },
                                              { "local-time", no_argument, NULL, 'L' },
                                              { "seconds", no_argument, NULL, 'S' }, {} };
        uint64_t last_n = 10;
        char err[2048];
        sigset_t old;
        int o, r = 0;

        while ((o = getopt_long(argc, argv, "+n:hs:", opts, NULL)) >= 0) {
                if (o == 'n') {
                        if (number_parse_u64(optarg, 0, UINT64_MAX, &last_n) < 0) {
                                fprintf(stderr, "dchatctl: chat -n needs a decimal number, not '%s'\n", optarg);
                                return 2;
                        }
                } else if (o == 's') {
                        *socket_path = optarg;
                        socket_origin = "-s";
                } else if (o == 'L') {
                        chat.local_time = true;
                } else if (o == 'S') {
                        chat.seconds = true;
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
                fprintf(stderr, "dchatctl: chat needs a terminal; use post (post - reads lines from stdin) and "
                                "view -f in scripts\n");
                return 1;
        }
        if (!utf8_locale())
                fprintf(stderr, "dchatctl: no UTF-8 locale here (not even C.UTF-8): only ASCII can be typed\n");
        if (node_name(*socket_path, chat.node, sizeof chat.node, err, sizeof err) < 0) {
                fprintf(stderr, "dchatctl: %s\n", err);
                return 1;
        }
        struct passwd *pw = getpwuid(getuid());
        if (pw)
                strlcpy(chat.me, pw->pw_name, sizeof chat.me);
        else
                snprintf(chat.me, sizeof chat.me, "uid%u", (unsigned) getuid());
        snprintf(chat.prompt, sizeof chat.prompt, "%s@%s> ", chat.me, chat.node);
        const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
        chat.color = !(nc && *nc) && !(term && !strcmp(term, "dumb"));

        chat.f = (struct follow) { .socket_path = *socket_path, .last_n = last_n, .show = show_entry,
                                   .damaged = show_damaged, .notice = show_notice, .other = on_other,
                                   .connected = watch };
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
        el_set(chat.el, EL_SIGNAL, 0);          /* ours: see follow_signals */
        /* the wide calls: el_set's narrow EL_ADDFN keeps copies of the strings that el_end never frees */
        el_wset(chat.el, EL_ADDFN, L"dchat-tab", L"complete a command or a name, or insert spaces", on_tab);
        el_wset(chat.el, EL_BIND, L"^I", L"dchat-tab", NULL);
        el_source(chat.el, NULL);               /* ~/.editrc */
        above("*** dchat on %s: type a line and Enter to post it; /help for commands; /quit or Ctrl-D leaves",
              chat.node);
        watch(NULL);                            /* the room: who is here, then each change */
        el_set(chat.el, EL_UNBUFFERED, 1);      /* raw terminal; draws the prompt */
        chat.editing = true;
        /* a resized terminal: libedit learns the new width (it does not catch signals here) */
        sigaction(SIGWINCH, &(struct sigaction) { .sa_handler = on_winch }, NULL);

        while (!chat.quit) {
                struct pollfd pfd[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
                                         { .fd = follow_fd(&chat.f), .events = POLLIN } };
                int t = follow_timeout(&chat.f);
                struct timespec ts = { t / 1000, (long) (t % 1000) * 1000000 };
                if (ppoll(pfd, 2, t >= 0 ? &ts : NULL, &old) < 0 && errno != EINTR) {
                        above("*** poll: %s", strerror(errno));
                        r = 1;
                        break;
                }
                int sig = follow_signal();
                if (sig == SIGINT) {
                        follow_signal_clear();
                        clear_line();   /* Ctrl-C, as in a shell: the line goes, the chat stays */
                        continue;
                }
                if (sig)
                        break;          /* SIGTERM, SIGHUP: the chat ends */
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
                if ((pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) || t == 0 || follow_fd(&chat.f) < 0 ||
                    follow_timeout(&chat.f) == 0) {
                        if (follow_tick(&chat.f) < 0) {
                                above("*** %s", chat.f.error);
                                r = 1;
                                break;
                        }
                }
        }
        signal(SIGWINCH, SIG_DFL);
        if (chat.editing) {
                region_clear();
                chat.editing = false;
                fflush(stdout);
        }
        for (unsigned i = 0; i < chat.n_pend; i++)
                if (chat.pend[i].state != P_STORED)
                        fprintf(stderr, "dchatctl: not confirmed when the chat ended (it may or may not have been "
                                        "stored): \"%s\"\n", chat.pend[i].text);
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
