/* SPDX-License-Identifier: MIT */
/*
 * transport.c — libraft's connections between the servers of a group
 * (struct raft_uv_transport), carried on dchat's own cluster links, so that
 * replication traffic is encrypted and authenticated like every other
 * link (secure.c), never in the clear.
 *
 * libraft's libuv code reads and writes a byte stream per connection.  Each
 * stream it gets from here is one end of a UNIX socketpair; this file
 * relays between the other end and a cluster link (net.c) to the other
 * server, in RAFT frames (proto.h):
 *
 *   connect(id, "NAME@HOST:PORT")  a link to NAME, HELLO as a server; once
 *                                  it is up, the socketpair goes to libraft
 *   accept                         server.c hands over an inbound link of
 *                                  a server whose first frame after HELLO
 *                                  is RAFT (transport_accept)
 *
 * Who is at the other end is what the link's handshake proved: libraft's
 * own handshake (id and address in the clear) is not used.  Which group it
 * belongs to is what it says next: the connecting side sends GROUP with its
 * group id before any Raft byte, the other side takes no Raft byte unless
 * the id is its own (server.c) and answers GROUP_REPLY with its id, which
 * the connecting side checks in turn (a server of another group, or a data
 * directory copied from another cluster, is cut off both ways).  Flow control:
 * no more is read from the socketpair while the link holds CONN_OUT_HOLD
 * unsent bytes, and no more from the link while bytes for the socketpair
 * wait; the other side then waits in its socket buffers.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "dchatd.h"

#define RELAY_CHUNK     (60 * 1024)             /* one RAFT frame's bytes, under DCHAT_FRAME_MAX */
#define RELAY_HOLD      (1024 * 1024)           /* bytes for the socketpair before the link waits */

struct transport;

struct relay {
        struct relay *prev, *next;
        struct transport *tr;
        struct conn *c;                 /* the cluster link */
        int fd;                         /* our end of the socketpair, -1 until connected */
        sd_event_source *io;
        struct wbuf to_fd;              /* from the link, not yet written to fd */
        bool held;                      /* the link's frame waits (CONN_LATER) for to_fd to drain */
        char peer[DCHAT_NAME_MAX + 1];
        raft_id id;
        struct raft_uv_connect *req;    /* outbound, until libraft has its stream */
        raft_uv_connect_cb cb;
};

struct transport {
        struct raft_uv_transport t;     /* what libraft sees; t.impl points back here */
        sd_event *event;
        struct uvloop *uv;
        uv_loop_t *loop;
        const struct dchat_conf *conf;
        raft_uv_accept_cb accept_cb;
        struct relay *relays;
        uint32_t digest;
        bool closing;
        uint8_t group_id[DCHAT_GROUP_ID_BYTES], boot_id[DCHAT_GROUP_ID_BYTES];
        int (*check)(void *userdata, const char *name, uint8_t state, const uint8_t *id);
        void *check_data;
};

raft_id transport_id_of(const char *name)
{
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (const char *p = name; *p; p++)
                h = (h ^ (uint8_t) *p) * UINT64_C(0x100000001b3);
        h &= INT64_MAX;                 /* libraft's ids are positive */
        return h ? h : 1;
}

void transport_address(const char *name, const char *address, char *buf, size_t cap)
{
        snprintf(buf, cap, "%s@%s", name, address);
}

/* "NAME@HOST:PORT" -> NAME, HOST:PORT */
static int address_split(const char *a, char name[DCHAT_NAME_MAX + 1], const char **hostport)
{
        const char *at = strchr(a, '@');
        if (!at || at == a || (size_t) (at - a) > DCHAT_NAME_MAX)
                return -EINVAL;
        memcpy(name, a, (size_t) (at - a));
        name[at - a] = '\0';
        *hostport = at + 1;
        return 0;
}

/* --- relays ---------------------------------------------------------------------------- */

static void relay_free(struct relay *r, int status)
{
        struct transport *tr = r->tr;

        if (r->req) {
                raft_uv_connect_cb cb = r->cb;
                struct raft_uv_connect *req = r->req;
                r->req = NULL;
                cb(req, NULL, status ? status : RAFT_NOCONNECTION);
                uvloop_kick(tr->uv);
        }
        LIST_REMOVE(tr->relays, r);
        r->io = sd_event_source_disable_unref(r->io);
        if (r->fd >= 0)
                close(r->fd);
        wbuf_free(&r->to_fd);
        free(r);
}

static void relay_update(struct relay *r)
{
        uint32_t ev = 0;

        if (!r->io)
                return;
        if (conn_pending(r->c) < CONN_OUT_HOLD)
                ev |= EPOLLIN;
        if (r->to_fd.len)
                ev |= EPOLLOUT;
        (void) sd_event_source_set_io_events(r->io, ev);
}

/* Bytes for libraft: as many as its socket takes now. */
static int relay_flush(struct relay *r)
{
        while (r->to_fd.len) {
                ssize_t n = send(r->fd, r->to_fd.data, r->to_fd.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                wbuf_consume(&r->to_fd, (size_t) n);
        }
        if (r->held && r->to_fd.len < RELAY_HOLD) {
                r->held = false;
                conn_resume(r->c);
        }
        return 0;
}

static int on_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct relay *r = userdata;
        uint8_t buf[RELAY_CHUNK];
        (void) s;

        if (revents & EPOLLOUT) {
                if (relay_flush(r) < 0)
                        goto gone;
        }
        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* a few chunks a wakeup; then the link's buffer says whether to go on */
                for (int i = 0; i < 8 && conn_pending(r->c) < CONN_OUT_HOLD; i++) {
                        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                                break;
                        if (n <= 0)
                                goto gone;      /* libraft closed its end */
                        if (conn_send(r->c, &(struct dchat_msg) { .type = MSG_RAFT,
                                                                  .raft = { buf, (size_t) n } }) < 0)
                                goto gone;
                }
        }
        relay_update(r);
        return 0;
gone:
        conn_close(r->c, -ECONNRESET);          /* its closed op frees r */
        return 0;
}

static void pipe_free(uv_handle_t *h)
{
        raft_free(h);
}

/* The link is up (either way): the socketpair, one end to libraft as a uv stream. */
static int relay_open(struct relay *r, uv_stream_t **stream)
{
        struct transport *tr = r->tr;
        int sv[2];
        uv_pipe_t *pipe;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                return -errno;
        pipe = raft_malloc(sizeof *pipe);
        if (!pipe) {
                close(sv[0]);
                close(sv[1]);
                return -ENOMEM;
        }
        int e = uv_pipe_init(tr->loop, pipe, 0);
        if (e != 0) {
                close(sv[0]);
                close(sv[1]);
                raft_free(pipe);
                return e < 0 ? e : -EIO;
        }
        /* from here on the handle is libuv's: it is freed by closing it */
        e = uv_pipe_open(pipe, sv[1]);
        if (e != 0)
                close(sv[1]);           /* not the handle's */
        else if (sd_event_add_io(tr->event, &r->io, sv[0], EPOLLIN, on_fd, r) < 0)
                e = -ENOMEM;            /* sv[1] is the handle's: closed with it */
        if (e != 0) {
                close(sv[0]);
                uv_close((uv_handle_t *) pipe, pipe_free);
                return e < 0 ? e : -EIO;
        }
        r->fd = sv[0];
        *stream = (uv_stream_t *) pipe;
        return 0;
}

static int relay_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct relay *r = conn_userdata(c);
        struct dchat_msg m;

        if (type == MSG_GROUP_REPLY && proto_decode(type, payload, len, &m, NULL, NULL) == 0) {
                /* the other end's group (outbound links): another group's server gets no Raft byte */
                if (r->tr->check && r->tr->check(r->tr->check_data, r->peer, m.group_reply.state,
                                                 m.group_reply.group_id) < 0)
                        return -EXDEV;
                return 0;
        }
        /* Until our first RAFT frame reaches it, the other server takes this link for a
         * server's link like any other (server.c) and sends it HEARTBEATs; libraft may
         * well have nothing to send for a while (a connection it made again after a
         * failure, to a server it has no message for). */
        if (type == MSG_HEARTBEAT)
                return 0;
        if (type != MSG_RAFT || proto_decode(type, payload, len, &m, NULL, NULL) < 0 || r->fd < 0) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = r->peer },
                          "%s: unexpected %s frame on a replication link; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        if (r->to_fd.len >= RELAY_HOLD) {
                r->held = true;
                return CONN_LATER;      /* relay_flush resumes it */
        }
        wbuf_put(&r->to_fd, m.raft.p, m.raft.len);
        if (r->to_fd.failed)
                return -ENOMEM;
        if (relay_flush(r) < 0)
                return -EPIPE;
        relay_update(r);
        return 0;
}

static void relay_closed(struct conn *c, int error)
{
        struct relay *r = conn_userdata(c);
        (void) error;
        relay_free(r, RAFT_NOCONNECTION);
}

static void relay_drained(struct conn *c)
{
        relay_update(conn_userdata(c));
}

/* Outbound: the handshake proved the server is there; say HELLO, then hand libraft its stream. */
static void relay_connected(struct conn *c)
{
        struct relay *r = conn_userdata(c);
        struct transport *tr = r->tr;
        uv_stream_t *stream;
        const char *me = tr->conf->node;

        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_SERVER, 0, tr->conf->cluster_digest } });
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_GROUP, .tag = 1,
                                                  .group = { tr->group_id, tr->boot_id } });
        int e = relay_open(r, &stream);
        if (e < 0) {
                conn_close(c, e);
                return;
        }
        raft_uv_connect_cb cb = r->cb;
        struct raft_uv_connect *req = r->req;
        r->req = NULL;
        cb(req, stream, 0);
        /* libraft queued what it had to send (a vote request, say) on the stream: libuv writes it
         * only when its loop runs, which is not before its next timer unless kicked (meanwhile the
         * link would sit idle after HELLO) */
        uvloop_kick(tr->uv);
}

static const struct conn_ops relay_ops = {
        .frame = relay_frame,
        .connected = relay_connected,
        .closed = relay_closed,
        .drained = relay_drained,
};

/* --- libraft's transport interface --------------------------------------------------------- */

static struct transport *impl(struct raft_uv_transport *t)
{
        return t->impl;
}

static int t_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
        (void) t;
        (void) id;
        (void) address;
        return 0;
}

static int t_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
        impl(t)->accept_cb = cb;
        return 0;
}

static int t_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id, const char *address,
                     raft_uv_connect_cb cb)
{
        struct transport *tr = impl(t);
        struct sockaddr_storage sa;
        socklen_t salen;
        const char *hostport;
        char label[128];
        struct relay *r;

        if (tr->closing)
                return RAFT_CANCELED;
        r = calloc(1, sizeof *r);
        if (!r)
                return RAFT_NOMEM;
        r->tr = tr;
        r->fd = -1;
        r->id = id;
        if (address_split(address, r->peer, &hostport) < 0 || sockaddr_parse(hostport, &sa, &salen) < 0) {
                snprintf(t->errmsg, sizeof t->errmsg, "bad server address '%s'", address);
                free(r);
                return RAFT_NOCONNECTION;
        }
        snprintf(label, sizeof label, "replication link to %s", r->peer);
        if (conn_connect(tr->event, (const struct sockaddr *) &sa, salen, &relay_ops, r, label, r->peer, &r->c) < 0) {
                free(r);
                return RAFT_NOCONNECTION;
        }
        r->req = req;
        r->cb = cb;
        LIST_PREPEND(tr->relays, r);
        return 0;
}

static void t_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
        struct transport *tr = impl(t);

        tr->closing = true;
        while (tr->relays) {
                struct relay *r = tr->relays;
                if (r->c)
                        conn_close(r->c, -ESHUTDOWN);   /* frees r */
                else
                        relay_free(r, RAFT_CANCELED);
        }
        if (cb)
                cb(t);
}

int transport_new(sd_event *e, struct uvloop *uv, const struct dchat_conf *conf, struct transport **ret)
{
        struct transport *tr = calloc(1, sizeof *tr);

        if (!tr)
                return -ENOMEM;
        tr->event = e;
        tr->uv = uv;
        tr->loop = uvloop_loop(uv);
        tr->conf = conf;
        tr->t = (struct raft_uv_transport) { .impl = tr, .init = t_init, .listen = t_listen, .connect = t_connect,
                                             .close = t_close };
        *ret = tr;
        return 0;
}

struct raft_uv_transport *transport_raft(struct transport *tr)
{
        return &tr->t;
}

void transport_set_group(struct transport *tr, const uint8_t *group_id, const uint8_t *boot_id,
                         int (*check)(void *userdata, const char *name, uint8_t state, const uint8_t *id),
                         void *userdata)
{
        memcpy(tr->group_id, group_id, sizeof tr->group_id);
        memcpy(tr->boot_id, boot_id, sizeof tr->boot_id);
        tr->check = check;
        tr->check_data = userdata;
}

void transport_reconf(struct transport *tr, const struct dchat_conf *conf)
{
        tr->conf = conf;
}

struct transport *transport_free(struct transport *tr)
{
        if (!tr)
                return NULL;
        if (!tr->closing)
                t_close(&tr->t, NULL);
        free(tr);
        return NULL;
}

int transport_accept(struct transport *tr, struct conn *c, const char *name, const char *address,
                     const uint8_t *payload, size_t len)
{
        struct relay *r;
        uv_stream_t *stream;
        char addr[DCHAT_NAME_MAX + 160];

        if (!tr->accept_cb || tr->closing)
                return -ENOTCONN;
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->tr = tr;
        r->c = c;
        r->fd = -1;
        strlcpy(r->peer, name, sizeof r->peer);
        r->id = transport_id_of(name);
        int e = relay_open(r, &stream);
        if (e < 0) {
                free(r);
                return e;
        }
        LIST_PREPEND(tr->relays, r);
        conn_set_ops(c, &relay_ops, r);
        transport_address(name, address, addr, sizeof addr);
        tr->accept_cb(&tr->t, r->id, addr, stream);
        uvloop_kick(tr->uv);            /* libuv starts reading the stream when its loop runs */
        /* the first RAFT frame came with the handover */
        return relay_frame(c, MSG_RAFT, payload, len) < 0 ? -EBADMSG : 0;
}
