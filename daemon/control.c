/* SPDX-License-Identifier: MIT */
/*
 * control.c — the local UNIX socket dchatctl talks to.  The author of a
 * post is the login name of the connecting process's uid (SO_PEERCRED),
 * never something the client says.
 */
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "dchatd.h"

struct client {
        struct control *ctl;
        struct conn *c;
        uid_t uid;
        pid_t pid;
        char author[DCHAT_NAME_MAX + 1];
        struct client *prev, *next;
};

struct control {
        sd_event *event;
        struct daemon *d;
        sd_event_source *listen_src;
        unsigned max_clients;
        unsigned n;
        struct client *clients;
        struct dchat_status status;     /* scratch for STATUS replies */
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

static int client_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct client *cl = conn_userdata(c);
        struct daemon *d = cl->ctl->d;
        struct dchat_msg m;
        const char *why;
        int r;

        if (proto_decode(type, payload, len, &m, NULL, NULL) < 0) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: malformed %s frame; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        switch (type) {
        case MSG_POST:
                if (!d->peer) {
                        conn_send_error(c, m.tag, ERR_NOT_PEER,
                                        "this dchatd is the server; post from a peer host (its dchatctl socket)");
                        return 0;
                }
                r = text_validate(m.post.text.p, m.post.text.len, &why);
                if (r < 0) {
                        conn_send_error(c, m.tag, r == -E2BIG ? ERR_TOO_LONG : ERR_INVALID, "%s", why);
                        return 0;
                }
                r = peer_post(d->peer, c, m.tag, cl->author, m.post.utc_offset, m.post.hold_ms, m.post.text.p, m.post.text.len);
                if (r < 0)
                        conn_send_error(c, m.tag, ERR_INTERNAL, "%s", strerror(-r));
                return 0;
        case MSG_VIEW:
                if (d->server)
                        return server_view_page(d->server, &m, c);
                return peer_view(d->peer, c, &m);
        case MSG_FOLLOW:
                if (d->server)
                        return server_follow(d->server, &m, c);
                return peer_follow(d->peer, c, &m);
        case MSG_STATUS:
                daemon_status(d, &cl->ctl->status);
                return conn_send(c, &(struct dchat_msg) { .type = MSG_STATUS_REPLY, .tag = m.tag,
                                                          .status = &cl->ctl->status });
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
        LIST_REMOVE(ctl->clients, cl);
        ctl->n--;
        free(cl);
}

/* A follower's output drained below the low-water mark: feed it again. */
static void client_drained(struct conn *c)
{
        struct client *cl = conn_userdata(c);

        if (cl->ctl->d->peer)
                peer_client_drained(cl->ctl->d->peer, c);
        if (cl->ctl->d->server)
                server_client_drained(cl->ctl->d->server, c);
}

static const struct conn_ops client_ops = {
        .frame = client_frame,
        .closed = client_closed,
        .drained = client_drained,
};

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct control *ctl = userdata;
        struct ucred cred;
        socklen_t l = sizeof cred;
        char label[96];
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
        if (ctl->n >= ctl->max_clients) {
                /* say why before hanging up: a blocking write of one small frame */
                static const char busy[] = "too many dchatctl clients at once (max_clients); try again";
                struct wbuf b = {0};
                if (proto_encode(&b, &(struct dchat_msg) { .type = MSG_ERROR,
                                                          .error = { ERR_BUSY, { busy, sizeof busy - 1 } } }) == 0)
                        (void) !send(cfd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                wbuf_free(&b);
                log_warning("control socket: refused a client (uid %u): %u clients already", (unsigned) cred.uid,
                            ctl->n);
                close(cfd);
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
        author_of(cred.uid, cl->author, sizeof cl->author);
        snprintf(label, sizeof label, "dchatctl pid %d (%s)", (int) cred.pid, cl->author);
        cl->c = conn_new(ctl->event, cfd, false, &client_ops, cl, label);
        if (!cl->c) {
                free(cl);
                close(cfd);
                return 0;
        }
        conn_set_linger(cl->c);
        LIST_PREPEND(ctl->clients, cl);
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
        int r = sd_event_add_io(e, &ctl->listen_src, listen_fd, EPOLLIN, on_accept, ctl);
        if (r < 0) {
                free(ctl);
                return r;
        }
        *ret = ctl;
        return 0;
}

struct control *control_free(struct control *ctl)
{
        if (!ctl)
                return NULL;
        while (ctl->clients)
                conn_close(ctl->clients->c, -ESHUTDOWN);
        sd_event_source_disable_unref(ctl->listen_src);
        free(ctl);
        return NULL;
}

void control_reconf(struct control *ctl, unsigned max_clients)
{
        ctl->max_clients = max_clients;
}

unsigned control_clients(const struct control *ctl)
{
        return ctl ? ctl->n : 0;
}
