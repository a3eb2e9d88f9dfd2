/* SPDX-License-Identifier: MIT */
/*
 * follow.c — dchatctl's follow session (view -f, chat) on a non-blocking
 * connection to dchatd; see client.h.  No I/O on the terminal here: lines
 * and notices go to the caller's callbacks.
 */
#include <errno.h>
#include <fcntl.h>
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

#include "client.h"

#define VIEW_PAGE       256
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  2000
/* refused by a limit (max_clients_per_user): each try is a client-refused line in the journal */
#define BACKOFF_REFUSED_MAX_MS 10000

uint64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

void damaged_line(char *buf, size_t cap, uint64_t first, uint64_t last, struct dchat_str reason)
{
        if (first == last)
                snprintf(buf, cap, "-- seq %llu: damaged record (%.*s), quarantined by the server (see dchatd(8)) --",
                         (unsigned long long) first, (int) reason.len, reason.p);
        else
                snprintf(buf, cap, "-- seqs %llu to %llu: damaged records (%.*s), quarantined by the server "
                         "(see dchatd(8)) --", (unsigned long long) first, (unsigned long long) last, (int) reason.len,
                         reason.p);
}

void format_when(const struct dchat_entry *e, bool local, bool seconds, char *buf, size_t cap)
{
        struct tm tm;
        bool ok;

        if (local) {
                time_t t = (time_t) e->time;
                ok = (int64_t) t == e->time && localtime_r(&t, &tm);
        } else
                ok = entry_local_tm(e, &tm);
        if (!ok || strftime(buf, cap, seconds ? "%d %b %I:%M:%S%p" : "%d %b %I:%M%p", &tm) == 0)
                snprintf(buf, cap, "?");
}

/* The source tree dchatctl runs in (or from), if it is one: its top directory. */
static bool source_tree(char *top, size_t cap)
{
        char exe[PATH_MAX], probe[PATH_MAX + 32];
        ssize_t n;

        if (getcwd(top, cap)) {
                snprintf(probe, sizeof probe, "%s/daemon/dchatd.h", top);
                if (access(probe, F_OK) == 0)
                        return true;
        }
        n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
                return false;
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (!slash)
                return false;
        *slash = '\0';
        snprintf(probe, sizeof probe, "%s/daemon/dchatd.h", exe);
        if (access(probe, F_OK) != 0)
                return false;
        snprintf(top, cap, "%s", exe);
        return true;
}

void socket_error(const char *path, int err, char *buf, size_t cap)
{
        const char *how = "give dchatd's control socket with -s SOCKET or DCHAT_SOCKET=SOCKET";
        char top[PATH_MAX], sock[PATH_MAX + 32], cwd[PATH_MAX], hint[PATH_MAX * 2 + 256] = "";
        struct stat st;

        if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                snprintf(buf, cap, "cannot connect to %s: it is %s, not a socket (%s)", path,
                         S_ISDIR(st.st_mode) ? "a directory" : "a file", how);
                return;
        }
        if (err == ECONNREFUSED) {
                snprintf(buf, cap, "cannot connect to %s: nobody listens on it: dchatd is not running (this socket is "
                         "left from an earlier one); see systemctl status dchatd.socket", path);
                return;
        }
        if (err != ENOENT) {
                snprintf(buf, cap, "cannot connect to %s: %s", path, strerror(err));
                return;
        }
        if (source_tree(top, sizeof top)) {
                /* a local cluster of this tree (make run) */
                const char *rel = getcwd(cwd, sizeof cwd) && !strcmp(cwd, top) ? "" : top;
                snprintf(sock, sizeof sock, "%s%srun/node1/dchatd.sock", rel, rel[0] ? "/" : "");
                char where[PATH_MAX + 32];
                snprintf(where, sizeof where, rel[0] ? "the source tree %s" : "this source tree", top);
                if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode))
                        snprintf(hint, sizeof hint, "; a local cluster (make run) runs in %s: -s %s, or export "
                                 "DCHAT_SOCKET=%s", where, sock, sock);
                else
                        snprintf(hint, sizeof hint, "; in %s, make run starts a local cluster: then -s %s, or "
                                 "export DCHAT_SOCKET=%s", where, sock, sock);
        }
        if (!socket_origin) {
                snprintf(buf, cap, "cannot connect to %s: no such socket. Is dchatd running? See systemctl status "
                         "dchatd.socket; for a dchatd started by hand (its socket is in its RUNTIME_DIRECTORY, or "
                         "control_socket), %s%s", path, how, hint);
                return;
        }
        /* a path the user gave: say which, and whether even its directory is missing */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir)
                *slash = '\0';
        else
                snprintf(dir, sizeof dir, "%s", slash ? "/" : ".");
        bool nodir = stat(dir, &st) < 0;
        snprintf(buf, cap, "cannot connect to %s (from %s): no such socket%s%s%s. Is dchatd running, with this control "
                 "socket? (dchatd -t names the one it uses)%s", path, socket_origin, nodir ? ", and no directory " : "",
                 nodir ? dir : "", nodir ? " either" : "", hint);
}

/* --- presence ---------------------------------------------------------------------------------- */

struct wnode *wnode_find(struct wtable *t, const char *name)
{
        for (unsigned i = 0; i < t->n; i++)
                if (!strcmp(t->nodes[i].name, name))
                        return &t->nodes[i];
        return NULL;
}

struct wnode *wnode_take(struct wtable *t, const struct dchat_msg *m, struct wnode *old)
{
        char name[DCHAT_NAME_MAX + 1];
        struct rbuf r = { .p = m->presence.p, .len = m->presence.len };
        struct dchat_str u;
        uint8_t kinds;

        if (dchat_str_copy(name, sizeof name, m->presence.node) < 0)
                return NULL;
        struct wnode *w = wnode_find(t, name);
        if (!w) {
                if (t->n == NODES_MAX)
                        return NULL;
                w = &t->nodes[t->n++];
                if (old)
                        old->name[0] = '\0';
        } else if (old)
                *old = *w;
        uint8_t seen = old && old->name[0] ? old->seen : 0;
        memset(w, 0, sizeof *w);
        w->seen = seen;
        strlcpy(w->name, name, sizeof w->name);
        w->role = m->presence.role;
        w->state = m->presence.state;
        w->flags = m->presence.flags;
        w->since = m->presence.since;
        w->more = m->presence.more;
        if (dchat_str_copy(w->note, sizeof w->note, m->presence.note) < 0)
                w->note[0] = '\0';
        while (w->n < DCHAT_PRESENCE_MAX && proto_presence_next(&r, &u, &kinds) > 0)
                if (dchat_str_copy(w->users[w->n].name, sizeof w->users[0].name, u) == 0)
                        w->users[w->n++].kinds = kinds;
        return w;
}

/* --- the connection ------------------------------------------------------------------------ */

int cconn_open(struct cconn *c, const char *path, char *err, size_t errlen)
{
        struct sockaddr_un un = { .sun_family = AF_UNIX };

        c->fd = -1;
        wbuf_reset(&c->in);
        c->used = 0;
        if (strlen(path) >= sizeof un.sun_path) {
                snprintf(err, errlen, "socket path too long: %s", path);
                return -ENAMETOOLONG;
        }
        strcpy(un.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                int e = errno;
                snprintf(err, errlen, "socket: %s", strerror(e));
                return -e;
        }
        if (connect(fd, (struct sockaddr *) &un, sizeof un) < 0) {
                int e = errno;
                if (e == EACCES || e == EPERM)
                        snprintf(err, errlen, "cannot connect to %s: permission denied (only root and the members of "
                                 "its group may use it: see dchat.conf(5), control_group)", path);
                else
                        socket_error(path, e, err, errlen);
                close(fd);
                return -e;
        }
        c->fd = fd;
        return 0;
}

void cconn_close(struct cconn *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        wbuf_reset(&c->in);
        c->used = 0;
}

int cconn_send(struct cconn *c, const struct dchat_msg *m)
{
        struct wbuf b = {0};
        int r = proto_encode(&b, m);

        for (size_t off = 0; r == 0 && off < b.len;) {
                ssize_t n = send(c->fd, b.data + off, b.len - off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        r = -errno;
                else
                        off += (size_t) n;
        }
        wbuf_free(&b);
        return r;
}

int cconn_fill(struct cconn *c)
{
        wbuf_consume(&c->in, c->used);
        c->used = 0;
        if (!wbuf_reserve(&c->in, 16384))
                return -ENOMEM;
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, MSG_DONTWAIT);
        if (n < 0)
                return errno == EINTR ? -EAGAIN : -errno;
        c->in.len += (size_t) n;
        return (int) n;
}

int cconn_frame(struct cconn *c, struct dchat_msg *m)
{
        wbuf_consume(&c->in, c->used);
        c->used = 0;
        if (c->in.len < DCHAT_FRAME_HDR)
                return 0;
        uint8_t type;
        int len = proto_check_header(c->in.data, &type);
        if (len < 0)
                return -EBADMSG;
        if (c->in.len < DCHAT_FRAME_HDR + (size_t) len)
                return 0;
        if (proto_decode(type, c->in.data + DCHAT_FRAME_HDR, (size_t) len, m, &c->entry, &c->status) < 0)
                return -EBADMSG;
        c->used = DCHAT_FRAME_HDR + (size_t) len;
        return 1;
}

/* --- the session ----------------------------------------------------------------------------- */

static void notice(struct follow *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(struct follow *f, const char *fmt, ...)
{
        char msg[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (f->notice)
                f->notice(msg, f->userdata);
}

static void backoff(struct follow *f)
{
        uint64_t max = f->refused ? BACKOFF_REFUSED_MAX_MS : BACKOFF_MAX_MS;

        f->backoff_ms = f->backoff_ms ? f->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (f->backoff_ms > max)
                f->backoff_ms = max;
        f->retry_at_ms = mono_ms() + f->backoff_ms;
}

/* The connection is gone (or dchatd refused us as a whole): connect again later. */
static void lose(struct follow *f, const char *why)
{
        cconn_close(&f->c);
        /* (after a refusal, lost is set: the refusal was said, and this is said no more) */
        if (!f->lost)
                notice(f, "%s; trying again (Ctrl-C ends) ...", why);
        f->lost = true;
        f->away = false;
        f->dropped = true;
        backoff(f);
}

/*
 * dchatd refused the connection as a whole (max_clients_per_user, max_clients):
 * said once, with dchatd's reason, then tried again less and less often (up to
 * every BACKOFF_REFUSED_MAX_MS): a slot frees when the user's other sessions end.
 */
static void refused(struct follow *f, const char *why)
{
        char text[DCHAT_ERROR_MAX + 1];
        size_t n = strlen(why);
        const char *again = "; try again";

        /* the reason is written for a one-shot command; this one tries again itself */
        strlcpy(text, why, sizeof text);
        if (n >= strlen(again) && !strcmp(text + n - strlen(again), again))
                text[n - strlen(again)] = '\0';
        cconn_close(&f->c);
        if (!f->refused)
                notice(f, "dchatd refused the connection: %s; trying again every %u s at most until it lets "
                       "this in (Ctrl-C ends) ...", text, BACKOFF_REFUSED_MAX_MS / 1000);
        f->refused = true;
        f->lost = true;
        f->away = false;
        f->dropped = true;
        backoff(f);
}

/*
 * dchatd is there but cannot serve the log now (the server is away): the
 * connection stays, so that the caller's own requests (posts, who) still
 * go and are answered, and the view is asked for again later.
 */
static void away(struct follow *f, const char *why)
{
        if (!f->lost)
                notice(f, "%s; trying again (Ctrl-C ends) ...", why);
        f->lost = true;
        f->away = true;
        backoff(f);
}

/*
 * A send that found the connection closed: dchatd may have refused it and
 * said why just before (an ERROR waiting to be read, then the end).  The
 * reader sees both, so that the reason is shown, not "Broken pipe".
 */
static bool closed_by_dchatd(int r)
{
        return r == -EPIPE || r == -ECONNRESET;
}

static int ask_page(struct follow *f)
{
        bool first = !f->first_answered;       /* (asked again after a reconnect) */

        f->tag = f->tag + 1 < FOLLOW_TAG_USER ? f->tag + 1 : 1;
        if (first)
                f->view_from = f->since_seq;
        int r = cconn_send(&f->c, &(struct dchat_msg) {
                .type = MSG_VIEW, .tag = f->tag,
                .view = { f->view_from, first ? f->last_n : 0, f->view_upto, VIEW_PAGE,
                          first ? f->since_time : 0 } });
        return r;
}

static int ask_follow(struct follow *f)
{
        f->tag = f->tag + 1 < FOLLOW_TAG_USER ? f->tag + 1 : 1;
        return cconn_send(&f->c, &(struct dchat_msg) { .type = MSG_FOLLOW, .tag = f->tag,
                                                       .follow = { f->shown + 1 } });
}

/*
 * (Re)connect and ask for what comes next: the first view, or the lines
 * after the last shown — by pages first, then FOLLOW, so that dchatd's
 * answer (or its error: the server may still be away) tells whether it
 * serves us again before we say so.
 */
static void ask_again(struct follow *f)
{
        if (f->view_done || f->shown) {
                f->view_done = false;
                f->first_answered = true;
                f->view_from = f->shown + 1;
                f->view_upto = 0;
        }
        int r = ask_page(f);
        if (r < 0 && !closed_by_dchatd(r))
                lose(f, strerror(-r));
}

static void connect_again(struct follow *f)
{
        char err[2048];

        if (cconn_open(&f->c, f->socket_path, err, sizeof err) < 0) {
                lose(f, err);
                return;
        }
        if (f->connected)
                f->connected(f->userdata);      /* a new connection: the caller's own requests again */
        if (f->c.fd >= 0)
                ask_again(f);
}

/* dchatd answered after a reconnect, or serves the log again. */
static void back(struct follow *f)
{
        if (!f->lost)
                return;
        /* (a dchatd that restarts may serve the log only a moment after it takes the connection) */
        if (f->refused && !f->shown)
                notice(f, "dchatd lets this in now");
        else if (f->refused)
                notice(f, "dchatd lets this in now; following from line %llu", (unsigned long long) f->shown + 1);
        else if (f->dropped)
                notice(f, "reconnected to dchatd; following from line %llu", (unsigned long long) f->shown + 1);
        else
                notice(f, "the log is served again; following from line %llu", (unsigned long long) f->shown + 1);
        f->lost = false;
        f->away = false;
        f->dropped = false;
        f->refused = false;
        f->backoff_ms = 0;
}

int follow_start(struct follow *f)
{
        char err[2048];

        f->c.fd = -1;
        /* the first connection must work: a wrong socket is an error, not a wait */
        if (cconn_open(&f->c, f->socket_path, err, sizeof err) < 0) {
                snprintf(f->error, sizeof f->error, "%s", err);
                return -1;
        }
        int r = ask_page(f);
        if (r < 0 && !closed_by_dchatd(r)) {
                snprintf(f->error, sizeof f->error, "lost the connection to dchatd: %s", strerror(-r));
                return -1;
        }
        return 0;
}

int follow_fd(const struct follow *f)
{
        return f->c.fd;
}

int follow_timeout(const struct follow *f)
{
        /* disconnected: connect again; away: ask again (once asked, the answer says what next) */
        if (f->c.fd >= 0 && !(f->away && f->lost && f->retry_at_ms != UINT64_MAX))
                return -1;
        uint64_t now = mono_ms();
        return f->retry_at_ms > now ? (int) (f->retry_at_ms - now < INT_MAX ? f->retry_at_ms - now : INT_MAX) : 0;
}

int follow_send(struct follow *f, const struct dchat_msg *m)
{
        if (f->c.fd < 0)
                return -ENOTCONN;
        int r = cconn_send(&f->c, m);
        if (r < 0 && !closed_by_dchatd(r))
                lose(f, strerror(-r));
        return r;
}

static void show(struct follow *f, const struct dchat_entry *e)
{
        if (e->seq <= f->shown) {
                /* never twice (and never expected: dchatd sends each line once) */
                notice(f, "line %llu came again; not shown twice", (unsigned long long) e->seq);
                return;
        }
        if (f->shown && e->seq != f->shown + 1) {
                f->gaps++;
                notice(f, "lines %llu to %llu are missing", (unsigned long long) f->shown + 1,
                       (unsigned long long) e->seq - 1);
        }
        f->shown = e->seq;
        f->show(e, f->userdata);
}

/* Seqs the server's log holds damaged: a marker, counted as shown like the lines it stands for. */
static void show_damaged(struct follow *f, const struct dchat_msg *m)
{
        uint64_t first = m->damaged.first_seq, last = m->damaged.last_seq;

        if (last <= f->shown) {
                notice(f, "line %llu came again; not shown twice", (unsigned long long) last);
                return;
        }
        if (first <= f->shown)
                first = f->shown + 1;
        if (f->shown && first != f->shown + 1) {
                f->gaps++;
                notice(f, "lines %llu to %llu are missing", (unsigned long long) f->shown + 1,
                       (unsigned long long) first - 1);
        }
        f->shown = last;
        if (f->damaged)
                f->damaged(first, last, m->damaged.reason, f->userdata);
}

/* One frame of the session.  <0: fatal. */
static int on_frame(struct follow *f, const struct dchat_msg *m)
{
        if (m->tag >= FOLLOW_TAG_USER || m->tag == 0) {
                if (m->tag == 0 && m->type == MSG_ERROR) {
                        /* dchatd refused us as a whole (max_clients): a reason to wait */
                        char why[DCHAT_ERROR_MAX + 1];
                        if (dchat_str_copy(why, sizeof why, m->error.text) < 0)
                                strlcpy(why, "refused", sizeof why);
                        refused(f, why);
                        return 0;
                }
                if (f->other)
                        f->other(m, f->userdata);
                return 0;
        }
        if (m->tag != f->tag)
                return 0;               /* an answer to an older request */
        switch (m->type) {
        case MSG_ENTRY:
                back(f);
                show(f, m->append);
                return 0;
        case MSG_ENTRY_DAMAGED:
                show_damaged(f, m);
                return 0;
        case MSG_VIEW_END:
                back(f);
                if (f->view_done)
                        return 0;
                f->first_answered = true;
                if (m->view_end.done || m->view_end.next_seq <= f->view_from) {
                        f->view_done = true;
                        if (!f->shown)
                                f->shown = m->view_end.last_seq;       /* nothing shown: follow from the end */
                        return ask_follow(f) < 0 ? (lose(f, "send failed"), 0) : 0;
                }
                f->view_from = m->view_end.next_seq;
                f->view_upto = m->view_end.last_seq;
                if (ask_page(f) < 0)
                        lose(f, "send failed");
                return 0;
        case MSG_ERROR: {
                char why[DCHAT_ERROR_MAX + 1];
                if (dchat_str_copy(why, sizeof why, m->error.text) < 0)
                        strlcpy(why, "?", sizeof why);
                if (m->error.code == ERR_UNAVAILABLE || m->error.code == ERR_BUSY) {
                        away(f, why);   /* the server is away: wait for it */
                        return 0;
                }
                snprintf(f->error, sizeof f->error, "view failed: %s", why);
                return -1;
        }
        default:
                snprintf(f->error, sizeof f->error, "unexpected answer %s from dchatd", proto_type_name(m->type));
                return -1;
        }
}

int follow_tick(struct follow *f)
{
        struct dchat_msg m;
        int r;

        if (f->c.fd < 0) {
                if (mono_ms() >= f->retry_at_ms)
                        connect_again(f);
                return 0;
        }
        if (f->away && f->lost && mono_ms() >= f->retry_at_ms) {
                f->retry_at_ms = UINT64_MAX;    /* the answer says what next */
                ask_again(f);
        }
        r = cconn_fill(&f->c);
        if (r == -EAGAIN)
                return 0;
        bool eof = r <= 0;
        /* what arrived before the end still counts */
        while (f->c.fd >= 0 && (r = cconn_frame(&f->c, &m)) > 0)
                if (on_frame(f, &m) < 0)
                        return -1;
        if (r < 0 && f->c.fd >= 0) {
                snprintf(f->error, sizeof f->error, "dchatd sent a malformed frame");
                return -1;
        }
        if (eof && f->c.fd >= 0)
                lose(f, "dchatd closed the connection");
        return 0;
}

void follow_free(struct follow *f)
{
        cconn_close(&f->c);
        wbuf_free(&f->c.in);
}
