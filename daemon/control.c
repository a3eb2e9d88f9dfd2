/* SPDX-License-Identifier: MIT */
/*
 * control.c — the local UNIX socket dchatctl talks to.  The author of a
 * post is the login name of the connecting process's uid (SO_PEERCRED),
 * never something the client says.
 *
 * Who may connect is checked here too, not only by the socket file's mode:
 * root, dchatd's own user, and the processes that have control_group among
 * their groups (SO_PEERCRED gid, SO_PEERGROUPS).  Per user (root excepted):
 * at most max_clients_per_user connections and max_queued_posts_per_user
 * posts waiting to be stored; requests are at most CONTROL_FRAME_MAX bytes.
 * Only root (and dchatd's own user) may post --hold for longer than
 * hold_max_ms (default 0: nobody else), since a hold stalls every peer of
 * the cluster.  Whoever is refused
 * gets an ERROR saying why, and a client-refused event is logged; the
 * other clients are not disturbed.
 *
 * A client that has been idle for client_idle_timeout_ms is closed, so
 * that forgotten connections do not use up max_clients; one with a request
 * in progress or a follow is never idle.  When max_clients are connected,
 * up to STATUS_SLOTS more may still connect for one thing, `status`: they
 * are answered a STATUS and refused anything else.
 */
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "dchatd.h"

/* The largest request, a POST of DCHAT_TEXT_MAX bytes, is 4110 bytes; a
 * little more is allowed so that a text a bit too long gets its own error. */
#define CONTROL_FRAME_MAX (4 * (DCHAT_TEXT_MAX + 64))
#define STATUS_SLOTS            4               /* connections beyond max_clients, for STATUS only */
#define STATUS_SLOT_USEC        (2 * USEC_PER_SEC)      /* ... which must ask within this time */
#define GROUP_STATUS_USEC       USEC_PER_SEC            /* a status waits this long at most for a server */
#define VERIFY_MAX              2                       /* verifies running at once (they read whole logs) */

struct client {
        struct control *ctl;
        struct conn *c;
        uid_t uid;
        pid_t pid;
        char author[DCHAT_NAME_MAX + 1];
        sd_event_source *idle_timer;
        bool following;                 /* sent FOLLOW: never idle */
        bool status_only;               /* let in beyond max_clients: STATUS only */
        /* waits for the group's status being gathered, and a verify running: one of each at a time */
        bool gstat_waiting;
        uint32_t gstat_tag;
        struct vjob *vjob;
        uint32_t vjob_tag;
        bool watching;                  /* WHO with watch (a chat): told each change, never idle */
        uint32_t watch_tag;
        struct client *prev, *next;
};

#define WHO_MAX (1 + DCHAT_PEERS_MAX + DCHAT_SERVERS_MAX + 1)   /* + a leader not in our file */

struct control {
        sd_event *event;
        struct daemon *d;
        sd_event_source *listen_src;
        unsigned max_clients;
        unsigned n;                     /* clients, without ... */
        unsigned n_status_only;         /* ... those let in for STATUS only */
        struct client *clients;
        struct dchat_status status;     /* scratch for STATUS replies */
        /* a server group's status: one gathering at a time, for every client that asked meanwhile */
        struct gstat *gstat;
        struct dchat_status *gstatus;
        unsigned verifies;              /* running */
        gid_t group;                    /* control_group's gid ... */
        bool have_group;                /* ... if the group exists */
        /* presence: our users (the clients with a chat or a follow), and the WHO watchers */
        struct presence local;
        unsigned watchers;
        sd_event_source *presence_src;  /* defer: tell the watchers what changed */
        struct wbuf presence_buf;
        uint64_t sent[WHO_MAX];         /* each node as the watchers were last told (who_node_digest) */
        unsigned n_sent;
};

static void author_of(uid_t uid, char *buf, size_t cap)
{
        struct passwd pw, *res = NULL;
        char tmp[4096];

        if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res && res->pw_name[0] &&
            strlen(res->pw_name) <= DCHAT_NAME_MAX && text_validate(res->pw_name, strlen(res->pw_name), NULL) == 0)
                strlcpy(buf, res->pw_name, cap);
        else
                snprintf(buf, cap, "uid%u", (unsigned) uid);
}

void daemon_status(struct daemon *d, struct dchat_status *st)
{
        *st = (struct dchat_status) {0};
        strlcpy(st->node, d->conf.node, sizeof st->node);
        st->role = d->conf.role;
        uint64_t now;
        (void) sd_event_now(d->event, CLOCK_MONOTONIC, &now);
        st->uptime = (uint32_t) ((now - d->started_usec) / USEC_PER_SEC);
        if (d->server)
                server_status(d->server, st);
        if (d->peer)
                peer_status(d->peer, st);
}

/* --- presence ------------------------------------------------------------------------------- */

/* Every node as WHO shows it: this one first, then those the role knows of. */
static unsigned who_list(struct control *ctl, struct who_node *w)
{
        struct daemon *d = ctl->d;
        uint64_t now;
        unsigned n = 1;

        (void) sd_event_now(ctl->event, CLOCK_MONOTONIC, &now);
        w[0] = (struct who_node) { .name = d->conf.node, .role = d->conf.role, .state = NODE_UP,
                                   .since = (uint32_t) ((now - d->started_usec) / USEC_PER_SEC),
                                   .users = &ctl->local };
        if (d->peer)
                n += peer_who(d->peer, w + 1, WHO_MAX - 1);
        else if (d->server)
                n += server_who(d->server, w + 1, WHO_MAX - 1);
        return n;
}

/* Something a watcher sees may have changed: look once the event loop has done what it does now. */
static void presence_kick(void *userdata)
{
        struct control *ctl = userdata;

        if (ctl->watchers && ctl->presence_src)
                (void) sd_event_source_set_enabled(ctl->presence_src, SD_EVENT_ONESHOT);
}

/* The watchers get a PRESENCE for each node that changed since they were last told. */
static int on_presence_defer(sd_event_source *src, void *userdata)
{
        struct control *ctl = userdata;
        struct who_node w[WHO_MAX];
        struct dchat_msg m;
        unsigned n = who_list(ctl, w);
        (void) src;

        for (unsigned i = 0; i < n; i++) {
                uint64_t h = who_node_digest(&w[i]);
                if (i < ctl->n_sent && ctl->sent[i] == h)
                        continue;
                ctl->sent[i] = h;
                presence_msg(w[i].users, &w[i], i == 0 ? PRESENCE_SELF : 0, &ctl->presence_buf, &m);
                for (struct client *cl = ctl->clients; cl; cl = cl->next)
                        if (cl->watching) {
                                m.tag = cl->watch_tag;
                                (void) conn_send(cl->c, &m);
                        }
        }
        ctl->n_sent = n;
        return 0;
}

/*
 * Our users from the clients: a watcher (dchatctl chat) has a chat open, a
 * follower a follow; each user once.  A change goes to the other nodes and
 * to the watchers.
 */
static void local_refresh(struct control *ctl)
{
        struct daemon *d = ctl->d;
        struct presence n = { .known = true };

        for (struct client *cl = ctl->clients; cl; cl = cl->next) {
                uint8_t k = cl->watching ? PRESENCE_CHAT : cl->following ? PRESENCE_FOLLOW : 0;
                if (k && presence_add(&n, cl->author, k) < 0) {
                        presence_clear(&n);
                        return;         /* out of memory: the last one stands */
                }
        }
        if (presence_equal(&n, &ctl->local)) {
                presence_clear(&n);
                return;
        }
        presence_clear(&ctl->local);
        ctl->local = n;
        if (d->peer)
                peer_presence_local(d->peer, &ctl->local);
        if (d->server)
                server_presence_local(d->server, &ctl->local);
        presence_kick(ctl);
}

/* WHO: every node, the last one flagged END; with watch, every change after it too. */
static int answer_who(struct client *cl, const struct dchat_msg *req)
{
        struct control *ctl = cl->ctl;
        struct who_node w[WHO_MAX];
        struct dchat_msg m;

        if (req->who.watch && !cl->watching) {
                cl->watching = true;
                ctl->watchers++;
                local_refresh(ctl);     /* a chat is open here now */
        }
        if (req->who.watch)
                cl->watch_tag = req->tag;
        unsigned n = who_list(ctl, w);
        for (unsigned i = 0; i < n; i++) {
                presence_msg(w[i].users, &w[i], (i == 0 ? PRESENCE_SELF : 0) | (i == n - 1 ? PRESENCE_END : 0),
                             &ctl->presence_buf, &m);
                m.tag = req->tag;
                int r = conn_send(cl->c, &m);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void group_status_done(void *userdata, struct dchat_status *st)
{
        struct control *ctl = userdata;

        for (struct client *cl = ctl->clients; cl; cl = cl->next) {
                if (!cl->gstat_waiting)
                        continue;
                cl->gstat_waiting = false;
                (void) conn_send(cl->c, &(struct dchat_msg) { .type = MSG_STATUS_REPLY, .tag = cl->gstat_tag,
                                                              .status = st });
                conn_resume(cl->c);     /* its next STATUS, if it waits */
        }
        ctl->gstat = gstat_free(ctl->gstat);
        free(ctl->gstatus);
        ctl->gstatus = NULL;
}

/*
 * STATUS in a server group: this node's figures, and each server's own,
 * gathered over query links within GROUP_STATUS_USEC (connect_timeout_ms
 * if that is shorter).  The clients that ask while it is gathered get the
 * same answer: however many ask, the servers see one question at a time.
 */
static int group_status(struct client *cl, uint32_t tag)
{
        struct control *ctl = cl->ctl;
        struct daemon *d = ctl->d;
        uint64_t wait = d->conf.connect_timeout_usec < GROUP_STATUS_USEC ? d->conf.connect_timeout_usec
                                                                        : GROUP_STATUS_USEC;

        if (cl->gstat_waiting)
                return CONN_LATER;      /* its second STATUS waits for the first's answer */
        if (!ctl->gstat) {
                ctl->gstatus = malloc(sizeof *ctl->gstatus);
                if (!ctl->gstatus)
                        return -ENOMEM;
                daemon_status(d, ctl->gstatus);
                int r = gstat_start(d->event, &d->conf, ctl->gstatus, wait, group_status_done, ctl, &ctl->gstat);
                if (r < 0) {
                        free(ctl->gstatus);
                        ctl->gstatus = NULL;
                        conn_send_error(cl->c, tag, ERR_INTERNAL, "cannot ask the servers: %s", strerror(-r));
                        return 0;
                }
        }
        cl->gstat_waiting = true;
        cl->gstat_tag = tag;
        return 0;
}

static void verify_done_cb(void *userdata, const struct dchat_msg *answer)
{
        struct client *cl = userdata;
        struct dchat_msg m = *answer;

        m.tag = cl->vjob_tag;
        if (m.type == MSG_ERROR) {
                char text[DCHAT_ERROR_MAX];
                log_warning("%s: verify failed: %s", conn_label(cl->c),
                            log_quote(text, sizeof text, m.error.text.p, m.error.text.len));
        }
        else if (m.verify_reply.differ)
                log_warning("%s: verify: the servers' logs differ at seq %llu", conn_label(cl->c),
                            (unsigned long long) m.verify_reply.seq);
        else
                log_info("%s: verify: seqs %llu to %llu identical on %u servers", conn_label(cl->c),
                         (unsigned long long) m.verify_reply.first, (unsigned long long) m.verify_reply.last,
                         m.verify_reply.n);
        (void) conn_send(cl->c, &m);
        cl->vjob = vjob_free(cl->vjob);
        cl->ctl->verifies--;
        conn_resume(cl->c);
}

/* VERIFY: the servers' logs compared (query.c, verify.c). */
static int start_verify(struct client *cl, uint32_t tag)
{
        struct daemon *d = cl->ctl->d;

        if (cl->vjob)
                return CONN_LATER;
        if (cl->ctl->verifies >= VERIFY_MAX) {
                conn_send_error(cl->c, tag, ERR_BUSY, "%u verifies are running already on %s; try again when they "
                                "are done", cl->ctl->verifies, d->conf.node);
                return 0;
        }
        cl->vjob_tag = tag;
        log_info("%s: verify of the logs of %u server%s", conn_label(cl->c), d->conf.n_servers,
                 d->conf.n_servers == 1 ? "" : "s");
        int r = vjob_start(d->event, &d->conf, d->server ? server_log(d->server) : NULL, verify_done_cb, cl,
                           &cl->vjob);
        if (r < 0) {
                conn_send_error(cl->c, tag, ERR_INTERNAL, "cannot start the verify: %s", strerror(-r));
                return 0;
        }
        cl->ctl->verifies++;
        return 0;
}

/* uid (not root) holds max_clients_per_user connections already, besides self. */
static bool user_at_cap(const struct control *ctl, uid_t uid, const struct client *self)
{
        unsigned mine = 0;

        if (uid == 0)
                return false;
        for (const struct client *o = ctl->clients; o; o = o->next)
                mine += o != self && o->uid == uid;
        return mine >= ctl->d->conf.max_clients_per_user;
}

/* A client let in for STATUS alone may have a slot of its own now. */
static bool ctl_has_room(const struct client *cl)
{
        return cl->ctl->n < cl->ctl->max_clients && !user_at_cap(cl->ctl, cl->uid, cl);
}

/* dchatctl note: a read anywhere; a write on a peer (it needs the critical section). */
static int client_note(struct client *cl, const struct dchat_msg *m)
{
        struct daemon *d = cl->ctl->d;
        bool read = m->note.op == NOTE_GET || m->note.op == NOTE_LIST;
        int r;

        if (d->server) {
                if (read)
                        return server_note_read(d->server, m, cl->c);
                conn_send_error(cl->c, m->tag, ERR_NOT_PEER, "this dchatd is the server; write notes from a peer "
                                "host (its dchatctl socket): a write needs the critical section");
                return 0;
        }
        if (m->note.op == NOTE_INCR && (m->note.flags & NOTE_UNLOCKED))
                log_info("%s: note incr --unlocked by %s: a write outside the critical section (a demonstration)",
                         conn_label(cl->c), cl->author);
        if (!read && cl->uid != 0 && peer_posts_of(d->peer, cl->author) >= d->conf.max_queued_posts_per_user) {
                conn_send_error(cl->c, m->tag, ERR_BUSY, "user %s has %u posts and notes waiting to be written "
                                "(max_queued_posts_per_user); try again once they are", cl->author,
                                d->conf.max_queued_posts_per_user);
                return 0;
        }
        r = peer_note(d->peer, cl->c, m->tag, cl->author, m);
        if (r < 0)
                conn_send_error(cl->c, m->tag, ERR_INTERNAL, "%s", strerror(-r));
        return 0;
}

static int client_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct client *cl = conn_userdata(c);
        struct daemon *d = cl->ctl->d;
        struct dchat_msg m;
        const char *why;
        int r;

        /* A client that sends requests and does not read the answers gets
         * no more answers made until it reads (client_drained resumes it). */
        if (conn_pending(c) >= CONN_OUT_HOLD)
                return CONN_LATER;
        if (proto_decode(type, payload, len, &m, NULL, NULL) < 0) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: malformed %s frame; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        if (cl->status_only && type != MSG_STATUS && ctl_has_room(cl)) {
                /* let in for STATUS while max_clients were busy; slots freed since */
                cl->status_only = false;
                cl->ctl->n_status_only--;
                cl->ctl->n++;
        }
        /* an admin's reload (systemctl reload: ExecReload=) is answered even beyond max_clients */
        bool admin = cl->uid == 0 || cl->uid == geteuid();
        if (cl->status_only && type != MSG_STATUS && !(type == MSG_RELOAD && admin)) {
                log_event(EV_CLIENT_REFUSED, NULL, "%s: %s refused: max_clients reached (only STATUS is answered "
                          "beyond it)", conn_label(c), proto_type_name(type));
                /* straight out: the connection is closed right after, so it is refused as a
                 * whole (tag 0), as at accept: a follow waits for a slot (cli/follow.c) */
                fd_send_error(conn_fd(c), 0, ERR_BUSY, "too many dchatctl clients at once (max_clients = %u); "
                              "only status is answered now; try again", cl->ctl->max_clients);
                return -EBUSY;
        }
        switch (type) {
        case MSG_POST:
                if (!d->peer) {
                        conn_send_error(c, m.tag, ERR_NOT_PEER,
                                        "this dchatd is the server; post from a peer host (its dchatctl socket)");
                        return 0;
                }
                r = post_text_validate(m.post.text.p, m.post.text.len, &why);
                if (r < 0) {
                        conn_send_error(c, m.tag, r == -E2BIG ? ERR_TOO_LONG : ERR_INVALID, "%s", why);
                        return 0;
                }
                if (cl->uid != 0 && cl->uid != geteuid() && m.post.hold_ms > d->conf.hold_max_ms) {
                        /* a hold stalls every peer: root (or dchatd's own user) decides who may */
                        log_event(EV_CLIENT_REFUSED, NULL, "%s: post --hold of %u ms refused: user %s is not root "
                                  "(hold_max_ms = %u)", conn_label(c), m.post.hold_ms, cl->author,
                                  d->conf.hold_max_ms);
                        if (d->conf.hold_max_ms == 0)
                                conn_send_error(c, m.tag, ERR_DENIED, "only root may post --hold on this dchatd "
                                                "(hold_max_ms = 0 in dchat.conf); post without --hold");
                        else
                                conn_send_error(c, m.tag, ERR_DENIED, "post --hold may be at most %u.%03u s for "
                                                "users other than root (hold_max_ms = %u in dchat.conf)",
                                                d->conf.hold_max_ms / 1000, d->conf.hold_max_ms % 1000,
                                                d->conf.hold_max_ms);
                        return 0;
                }
                if (cl->uid != 0 && peer_posts_of(d->peer, cl->author) >= d->conf.max_queued_posts_per_user) {
                        log_event(EV_CLIENT_REFUSED, NULL, "%s: post refused: user %s has %u posts waiting "
                                  "(max_queued_posts_per_user)", conn_label(c), cl->author,
                                  d->conf.max_queued_posts_per_user);
                        conn_send_error(c, m.tag, ERR_BUSY, "user %s has %u posts waiting to be stored "
                                        "(max_queued_posts_per_user); try again once they are", cl->author,
                                        d->conf.max_queued_posts_per_user);
                        return 0;
                }
                r = peer_post(d->peer, c, m.tag, cl->author, m.post.utc_offset, m.post.hold_ms, m.post.text.p, m.post.text.len);
                if (r < 0)
                        conn_send_error(c, m.tag, ERR_INTERNAL, "%s", strerror(-r));
                return 0;
        case MSG_NOTE:
                return client_note(cl, &m);
        case MSG_VIEW:
                if (d->server)
                        return server_view_page(d->server, &m, c);
                return peer_view(d->peer, c, &m);
        case MSG_FOLLOW:
                cl->following = m.follow.from_seq != UINT64_MAX;        /* (UINT64_MAX: stop) */
                local_refresh(cl->ctl);
                if (d->server)
                        return server_follow(d->server, &m, c);
                return peer_follow(d->peer, c, &m);
        case MSG_MEMBER:
                if (cl->uid != 0 && cl->uid != geteuid()) {
                        /* the group's membership: an admin's decision */
                        log_event(EV_CLIENT_REFUSED, NULL, "%s: %s refused: user %s is not root", conn_label(c),
                                  m.member.op == MEMBER_ADD ? "server add" : "server remove", cl->author);
                        conn_send_error(c, m.tag, ERR_DENIED, "only root may change the server group");
                        return 0;
                }
                if (d->server)
                        return server_member(d->server, &m, c);
                return peer_member(d->peer, c, &m);
        case MSG_STATUS:
                if (d->conf.n_servers > 1)
                        return group_status(cl, m.tag);
                daemon_status(d, &cl->ctl->status);
                return conn_send(c, &(struct dchat_msg) { .type = MSG_STATUS_REPLY, .tag = m.tag,
                                                          .status = &cl->ctl->status });
        case MSG_VERIFY:
                return start_verify(cl, m.tag);
        case MSG_RELOAD: {
                char msg[DCHAT_ERROR_MAX];
                if (!admin) {
                        log_event(EV_CLIENT_REFUSED, NULL, "%s: reload refused: user %s is not root", conn_label(c),
                                  cl->author);
                        conn_send_error(c, m.tag, ERR_DENIED, "only root may reload dchatd's configuration");
                        return 0;
                }
                if (!d->reload) {
                        conn_send_error(c, m.tag, ERR_INTERNAL, "this dchatd cannot reload");
                        return 0;
                }
                if (d->reload(d, msg, sizeof msg) < 0) {
                        conn_send_error(c, m.tag, ERR_INVALID, "%s; the running configuration is kept", msg);
                        return 0;
                }
                return conn_send(c, &(struct dchat_msg) { .type = MSG_RELOAD_REPLY, .tag = m.tag,
                        .reload_reply = { { msg, (uint16_t) strlen(msg) } } });
        }
        case MSG_TRACE:
                if (!d->peer) {
                        conn_send_error(c, m.tag, ERR_NOT_PEER, "this dchatd is a server: it takes no part in "
                                        "mutual exclusion and keeps no trace; run dchatctl trace on a peer host "
                                        "(or read journal exports with trace --from)");
                        return 0;
                }
                if (m.trace.scope != TRACE_CLUSTER) {
                        conn_send_error(c, m.tag, ERR_INVALID, "a client asks for the trace of the whole cluster");
                        return 0;
                }
                r = peer_trace(d->peer, c, &m);
                if (r < 0)
                        conn_send_error(c, m.tag, ERR_INTERNAL, "cannot gather the trace: %s", strerror(-r));
                return r == CONN_LATER ? CONN_LATER : 0;
        case MSG_WHO:
                return answer_who(cl, &m);
        default:
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: unexpected %s frame; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
}

static void client_closed(struct conn *c, int error)
{
        struct client *cl = conn_userdata(c);
        struct control *ctl = cl->ctl;
        (void) error;

        if (ctl->d->peer)
                peer_client_gone(ctl->d->peer, c);
        if (ctl->d->server)
                server_client_gone(ctl->d->server, c);
        /* its verify is dropped with it (a status being gathered goes on for the others) */
        if (cl->vjob) {
                cl->vjob = vjob_free(cl->vjob);
                ctl->verifies--;
        }
        sd_event_source_disable_unref(cl->idle_timer);
        LIST_REMOVE(ctl->clients, cl);
        if (cl->status_only)
                ctl->n_status_only--;
        else
                ctl->n--;
        if (cl->watching)
                ctl->watchers--;
        bool present = cl->watching || cl->following;
        free(cl);
        if (present)
                local_refresh(ctl);     /* its chat or follow is closed */
}

/* The client's output drained below the low-water mark: feed a follower again, take the next request. */
static void client_drained(struct conn *c)
{
        struct client *cl = conn_userdata(c);

        conn_resume(c);
        if (cl->ctl->d->peer)
                peer_client_drained(cl->ctl->d->peer, c);
        if (cl->ctl->d->server)
                server_client_drained(cl->ctl->d->server, c);
}

/* How long cl may stay idle: client_idle_timeout_ms, and not more than STATUS_SLOT_USEC for a status slot. */
static uint64_t idle_limit(const struct client *cl)
{
        uint64_t idle = cl->ctl->d->conf.client_idle_usec;
        return cl->status_only && idle > STATUS_SLOT_USEC ? STATUS_SLOT_USEC : idle;
}

static void idle_arm(struct client *cl, uint64_t when)
{
        (void) sd_event_source_set_time(cl->idle_timer, when);
        (void) sd_event_source_set_enabled(cl->idle_timer, SD_EVENT_ONESHOT);
}

static int on_idle_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct client *cl = userdata;
        uint64_t limit = idle_limit(cl), last = conn_last_io(cl->c);
        (void) s;

        /* a follower, and a client waiting for an answer (a post behind
         * the critical section), are not idle however quiet */
        if (cl->following || cl->watching || conn_unanswered(cl->c) > 0) {
                idle_arm(cl, usec + limit);
                return 0;
        }
        if (last + limit > usec) {
                idle_arm(cl, last + limit);
                return 0;
        }
        log_info("%s: closed after %llu ms without a request or an answer read (client_idle_timeout_ms)",
                 conn_label(cl->c), (unsigned long long) ((usec - last) / USEC_PER_MSEC));
        fd_send_error(conn_fd(cl->c), 0, ERR_TIMEOUT, "dchatd closed this connection after %llu ms idle "
                      "(client_idle_timeout_ms)", (unsigned long long) (limit / USEC_PER_MSEC));
        conn_close(cl->c, -ETIMEDOUT);
        return 0;
}

static const struct conn_ops client_ops = {
        .frame = client_frame,
        .closed = client_closed,
        .drained = client_drained,
};

/* Has the client control_group among its groups (primary or supplementary)?  1, 0 or -errno */
static int client_in_group(int fd, const struct ucred *cred, gid_t want)
{
        _cleanup_(freep) gid_t *g = NULL;
        socklen_t l = 64 * sizeof(gid_t);

        if (cred->gid == want)
                return 1;
        /* the groups the process had when it connected; ERANGE: l says how much room */
        for (int i = 0; i < 2; i++) {
                free(g);
                g = malloc(l ? l : 1);
                if (!g)
                        return -ENOMEM;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &l) == 0) {
                        for (size_t k = 0; k < l / sizeof(gid_t); k++)
                                if (g[k] == want)
                                        return 1;
                        return 0;
                }
                if (errno != ERANGE)
                        break;
        }
        return -errno;
}

static void refuse(int fd, const struct ucred *cred, enum dchat_err code, const char *why, const char *text)
{
        char who[DCHAT_NAME_MAX + 1];
        author_of(cred->uid, who, sizeof who);
        log_event(EV_CLIENT_REFUSED, NULL, "control socket: refused dchatctl pid %d of user %s (uid %u): %s",
                  (int) cred->pid, who, (unsigned) cred->uid, why);
        fd_send_error(fd, 0, code, "%s", text);
        close(fd);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct control *ctl = userdata;
        const struct dchat_conf *conf = &ctl->d->conf;
        struct ucred cred;
        socklen_t l = sizeof cred;
        char label[96], text[DCHAT_ERROR_MAX];
        (void) s;
        (void) revents;

        int cfd = conn_accept(fd, label, sizeof label);
        if (cfd < 0)
                return 0;
        if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0) {
                log_warning("control socket: cannot read the client's credentials: %m");
                close(cfd);
                return 0;
        }
        if (cred.uid != 0 && cred.uid != geteuid()) {
                int r = ctl->have_group ? client_in_group(cfd, &cred, ctl->group) : 0;
                if (r <= 0) {
                        char who[DCHAT_NAME_MAX + 1];
                        author_of(cred.uid, who, sizeof who);
                        if (r < 0)
                                snprintf(text, sizeof text, "cannot read your groups: %s", strerror(-r));
                        else if (!ctl->have_group)
                                snprintf(text, sizeof text, "only root may use this dchatd: its group %s does not "
                                         "exist (ask an admin: groupadd --system %s, then restart dchatd)",
                                         conf->control_group, conf->control_group);
                        else
                                snprintf(text, sizeof text, "you are not in group %s (ask an admin: usermod -aG %s %s, "
                                         "then log in again)", conf->control_group, conf->control_group, who);
                        refuse(cfd, &cred, ERR_DENIED, r < 0 ? "cannot read its groups" : "not in control_group",
                               text);
                        return 0;
                }
        }
        /* at max_clients, a few more may come in for STATUS alone: `status`
         * shows what is wrong even when idle clients fill every slot */
        bool status_only = ctl->n >= ctl->max_clients;
        if (status_only && ctl->n_status_only >= STATUS_SLOTS) {
                snprintf(text, sizeof text, "too many dchatctl clients at once (max_clients = %u); try again",
                         ctl->max_clients);
                refuse(cfd, &cred, ERR_BUSY, "max_clients reached", text);
                return 0;
        }
        if (!status_only && user_at_cap(ctl, cred.uid, NULL)) {
                snprintf(text, sizeof text, "too many dchatctl connections of yours at once "
                         "(max_clients_per_user = %u); try again", conf->max_clients_per_user);
                refuse(cfd, &cred, ERR_BUSY, "max_clients_per_user reached", text);
                return 0;
        }
        struct client *cl = calloc(1, sizeof *cl);
        if (!cl) {
                close(cfd);
                return 0;
        }
        cl->ctl = ctl;
        cl->uid = cred.uid;
        cl->pid = cred.pid;
        cl->status_only = status_only;
        author_of(cred.uid, cl->author, sizeof cl->author);
        snprintf(label, sizeof label, "dchatctl pid %d (%s)", (int) cred.pid, cl->author);
        uint64_t now;
        (void) sd_event_now(ctl->event, CLOCK_MONOTONIC, &now);
        if (sd_event_add_time(ctl->event, &cl->idle_timer, CLOCK_MONOTONIC, now + idle_limit(cl), 10 * USEC_PER_MSEC,
                              on_idle_timer, cl) < 0) {
                free(cl);
                close(cfd);
                return 0;
        }
        cl->c = conn_new(ctl->event, cfd, false, &client_ops, cl, label);
        if (!cl->c) {
                sd_event_source_disable_unref(cl->idle_timer);
                free(cl);
                close(cfd);
                return 0;
        }
        conn_set_linger(cl->c);
        conn_set_max_frame(cl->c, CONTROL_FRAME_MAX);
        LIST_PREPEND(ctl->clients, cl);
        if (status_only)
                ctl->n_status_only++;
        else
                ctl->n++;
        return 0;
}

int control_new(sd_event *e, struct daemon *d, int listen_fd, struct control **ret)
{
        struct control *ctl = calloc(1, sizeof *ctl);
        if (!ctl)
                return -ENOMEM;
        ctl->event = e;
        ctl->d = d;
        ctl->max_clients = d->conf.max_clients;

        /* the group is looked up once: a group created later needs a restart */
        struct group gr, *res = NULL;
        char buf[16384];
        if (getgrnam_r(d->conf.control_group, &gr, buf, sizeof buf, &res) == 0 && res) {
                ctl->group = gr.gr_gid;
                ctl->have_group = true;
        } else
                log_warning("control socket: group %s (control_group) does not exist: only root may use dchatctl "
                            "here; create it (groupadd --system %s) and restart dchatd", d->conf.control_group,
                            d->conf.control_group);

        ctl->local.known = true;
        int r = sd_event_add_defer(e, &ctl->presence_src, on_presence_defer, ctl);
        if (r < 0) {
                free(ctl);
                return r;
        }
        (void) sd_event_source_set_enabled(ctl->presence_src, SD_EVENT_OFF);
        r = sd_event_add_io(e, &ctl->listen_src, listen_fd, EPOLLIN, on_accept, ctl);
        if (r < 0) {
                sd_event_source_disable_unref(ctl->presence_src);
                free(ctl);
                return r;
        }
        if (d->peer)
                peer_set_presence_hook(d->peer, presence_kick, ctl);
        if (d->server)
                server_set_presence_hook(d->server, presence_kick, ctl);
        *ret = ctl;
        return 0;
}

struct control *control_free(struct control *ctl)
{
        if (!ctl)
                return NULL;
        while (ctl->clients)
                conn_close(ctl->clients->c, -ESHUTDOWN);
        ctl->gstat = gstat_free(ctl->gstat);
        free(ctl->gstatus);
        sd_event_source_disable_unref(ctl->listen_src);
        sd_event_source_disable_unref(ctl->presence_src);
        presence_clear(&ctl->local);
        wbuf_free(&ctl->presence_buf);
        free(ctl);
        return NULL;
}

void control_reconf(struct control *ctl)
{
        ctl->max_clients = ctl->d->conf.max_clients;
        /* a new client_idle_timeout_ms counts for the clients already there too */
        for (struct client *cl = ctl->clients; cl; cl = cl->next)
                idle_arm(cl, conn_last_io(cl->c) + idle_limit(cl));
}

unsigned control_clients(const struct control *ctl)
{
        return ctl ? ctl->n : 0;
}
