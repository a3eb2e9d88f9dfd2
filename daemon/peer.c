/* SPDX-License-Identifier: MIT */
/*
 * peer.c — the peer role's life cycle (peer_new, peer_free, peer_reconf,
 * peer_status) and the glue its parts share: the clock bounds, the cluster
 * definition sent on a mismatch, leaving as a later life, reconnect
 * backoff, and the heartbeat timer that drives the peer links, the server
 * link and the posts waiting for it.  The parts are mesh.c, uplink.c,
 * postq.c and fanout.c; peer.h is their map.
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"

/*
 * A life's own vector-clock component starts above anything an earlier
 * life reached, so clocks keep growing across restarts and a trace that
 * spans one stays causal: what a life may count up to is reserved in the
 * state directory (vclock_reserve) a million events at a time, before it
 * gets there.  A fresh node counts from 1; its second life from the end of
 * its first one's reservation (1000005: event 5 of a life after a first
 * that counted less than a million).
 */
#define VCLOCK_RESERVE  UINT64_C(1000000)

/* Our own component nears the end of what is reserved: reserve more (a small synced write, rarely). */
static void vclock_reserve_more(struct peer *p)
{
        char err[PATH_MAX + 128];
        uint64_t own = p->ra.vc.c[p->conf->self];

        if (own + VCLOCK_RESERVE / 2 < p->vc_reserved)
                return;
        uint64_t end = p->vc_reserved + VCLOCK_RESERVE;
        if (vclock_reserve(p->conf->state_directory, NULL, end, err, sizeof err) < 0)
                log_warning("%s: a later life may count its vector clocks from below this one's", err);
        p->vc_reserved = end;           /* a failure is said once a million events, not at each */
}


/*
 * Is t, a clock or a fence another node sent, within the bounds (proto.h)?
 * Until a HELLO_ACK anchored our clock at the log's last fence, only the
 * ceiling applies: a peer that just started knows nothing to compare with.
 */
bool clock_ok(const struct peer *p, uint64_t t)
{
        if (t > DCHAT_CLOCK_MAX)
                return false;
        return !p->anchored || t <= p->ra.clock + DCHAT_CLOCK_JUMP_MAX;
}

/*
 * who knows this node under a later incarnation than ours: our counter went
 * back (its file lost while the clock was behind).  Move the counter past
 * it and end this life with a failure, so that the next start (systemd
 * restarts dchatd) is a later life than any the others know.
 */
void leave_as_later(struct peer *p, const char *who, uint64_t known)
{
        char err[PATH_MAX + 128] = "";
        uint64_t inc = 0;

        if (p->leaving)
                return;
        if (known <= p->incarnation || known >= DCHAT_INCARNATION_MAX - (UINT64_C(1) << 24)) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s says it knows this node under incarnation %llu, which is "
                          "not later than ours (%llu) or out of range; ignored", who, (unsigned long long) known,
                          (unsigned long long) p->incarnation);
                return;
        }
        p->leaving = true;
        if (incarnation_next(p->conf->state_directory, known + 1, &inc, err, sizeof err) < 0)
                log_error("%s", err);
        log_error("%s knows this node under incarnation %llu, a later life than this one (%llu): the "
                  "incarnation counter in %s went back (was the state directory lost while the clock was "
                  "behind?). %s; exiting, to be started again as a later life",
                  who, (unsigned long long) known, (unsigned long long) p->incarnation,
                  p->conf->state_directory, inc ? "The counter is moved past it" : "The counter could not be moved");
        (void) sd_event_exit(p->event, 1);
}

/* Our members, to a node whose HELLO (or answer to ours) showed another cluster definition. */
void send_cluster(struct peer *p, struct conn *c)
{
        struct dchat_msg m;

        conf_cluster_msg(p->conf, &p->cluster, &m);
        (void) conn_send(c, &m);
}

/* The next reconnect delay: reconnect_min_ms, then twice the last, up to reconnect_max_ms. */
uint64_t backoff_next(const struct dchat_conf *conf, uint64_t *b)
{
        *b = *b ? *b * 2 : conf->reconnect_min_usec;
        if (*b > conf->reconnect_max_usec)
                *b = conf->reconnect_max_usec;
        return *b;
}

static const uint8_t trace_kind[_EV_MAX] = {
        [EV_REQUEST_SENT] = TK_REQUEST_SENT,
        [EV_REQUEST_RECEIVED] = TK_REQUEST_RECEIVED,
        [EV_REPLY_SENT] = TK_REPLY_SENT,
        [EV_REPLY_DEFERRED] = TK_REPLY_DEFERRED,
        [EV_REPLY_RECEIVED] = TK_REPLY_RECEIVED,
        [EV_CS_ENTER] = TK_CS_ENTER,
        [EV_CS_EXIT] = TK_CS_EXIT,
        [EV_POST_STORED] = TK_POST_STORED,
        [EV_POST_FAILED] = TK_POST_FAILED,
        [EV_POST_RETRIED] = TK_POST_RETRIED,
        [EV_PEER_UP] = TK_PEER_UP,
        [EV_PEER_DOWN] = TK_PEER_DOWN,
        [EV_PEER_SUSPECT] = TK_PEER_SUSPECT,
        [EV_PEER_DEAD] = TK_PEER_DEAD,
        [EV_PEER_ALIVE] = TK_PEER_ALIVE,
        [EV_PEER_RESTARTED] = TK_PEER_RESTARTED,
        [EV_PEER_LEFT] = TK_PEER_LEFT,
        [EV_REQUEST_QUEUED] = TK_REQUEST_QUEUED,
};

_printf_(6, 0)
static uint64_t peer_eventv(struct peer *p, enum log_event ev, int peer_idx, struct event_fields *f,
                            const struct vclock *vc, const char *fmt, va_list ap)
{
        char msg[1024];

        vsnprintf(msg, sizeof msg, fmt, ap);
        f->vc = vc;
        vclock_reserve_more(p);
        uint64_t no = log_event(ev, f, "%s", msg);
        if (no && ev < _EV_MAX && trace_kind[ev])
                ring_add(p->ring, &(struct dchat_trace_event) {
                        .no = no, .time_us = log_last_time_us(), .kind = trace_kind[ev],
                        .peer = peer_idx >= 0 && (unsigned) peer_idx < p->conf->n_peers ? (uint8_t) peer_idx
                                                                                          : DCHAT_TRACE_NONE,
                        .lamport = f->lamport, .request_ts = f->request_ts, .fence = f->fence,
                        .fence_idx = f->fence_idx, .seq = f->seq, .send_vt = f->send_vt,
                        .vc = vc ? *vc : (struct vclock) {0} });
        return no;
}

uint64_t peer_event(struct peer *p, enum log_event ev, int peer_idx, struct event_fields *f, const struct vclock *vc,
                    const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        uint64_t no = peer_eventv(p, ev, peer_idx, f, vc, fmt, ap);
        va_end(ap);
        return no;
}

uint64_t peer_local_event(struct peer *p, enum log_event ev, int peer_idx, struct event_fields *f,
                          const char *fmt, ...)
{
        va_list ap;

        ra_local_event(&p->ra);
        va_start(ap, fmt);
        uint64_t no = peer_eventv(p, ev, peer_idx, f, &p->ra.vc, fmt, ap);
        va_end(ap);
        return no;
}

void presence_changed(struct peer *p)
{
        if (p->presence_hook && !p->stopping)
                p->presence_hook(p->presence_data);
}

void send_presence(struct peer *p, struct conn *c)
{
        struct who_node me = { .name = self_name(p), .role = ROLE_PEER, .state = NODE_UP };
        struct dchat_msg m;

        presence_msg(&p->local, &me, 0, &p->presence_buf, &m);
        (void) conn_send(c, &m);
}

void peer_presence_local(struct peer *p, const struct presence *mine)
{
        if (presence_copy(&p->local, mine) < 0)
                return;         /* out of memory: the others keep the last one */
        mesh_presence_send(p);
        uplink_presence_send(p);
}

unsigned peer_who(struct peer *p, struct who_node *out, unsigned cap)
{
        unsigned n = mesh_who(p, out, cap);
        return n + uplink_who(p, out + n, cap - n);
}

void peer_set_presence_hook(struct peer *p, void (*fn)(void *userdata), void *userdata)
{
        p->presence_hook = fn;
        p->presence_data = userdata;
}

/* Each heartbeat_ms: our HEARTBEAT to the peers and to the server, their silence checked. */
static int on_heartbeat_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct peer *p = userdata;

        mesh_heartbeat(p);
        uplink_heartbeat(p, usec);
        postq_heartbeat(p);
        (void) sd_event_source_set_time(s, usec + p->conf->heartbeat_usec);
        return 0;
}

/* --- life cycle ------------------------------------------------------------------------------ */

int peer_new(sd_event *e, const struct dchat_conf *c, int listen_fd, struct peer **ret)
{
        struct peer *p = calloc(1, sizeof *p);
        int r;

        if (!p)
                return -ENOMEM;
        p->event = e;
        p->conf = c;
        char err[PATH_MAX + 128];
        r = incarnation_next(c->state_directory, 0, &p->incarnation, err, sizeof err);
        if (r < 0) {
                log_error("%s", err);
                goto fail;
        }
        for (unsigned i = 0; i < c->n_peers; i++)
                p->names[i] = c->peers[i].name;
        ra_init(&p->ra, c->n_peers, c->self, p->names);
        ra_set_algo(&p->ra, c->dme_algorithm);
        ra_set_reuse(&p->ra, c->reuse_permissions);
        uint64_t base = 0;
        if (vclock_reserve(c->state_directory, &base, VCLOCK_RESERVE, err, sizeof err) < 0)
                log_warning("%s: this life counts its vector clocks from 0", err);      /* a trace's order only */
        ra_set_vclock_base(&p->ra, base);
        p->vc_reserved = base + VCLOCK_RESERVE;
        log_set_vclock_names(p->names, c->n_peers);
        r = ring_new(c->trace_events, c->n_peers, &p->ring);
        if (r < 0)
                goto fail;
        r = postq_init(p);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(e, &p->heartbeat_timer, CLOCK_MONOTONIC, c->heartbeat_usec, 1000,
                                       on_heartbeat_timer, p);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(p->heartbeat_timer, SD_EVENT_ON);

        r = mesh_start(p, listen_fd);
        if (r < 0)
                goto fail;
        r = uplink_start(p);
        if (r < 0)
                goto fail;
        *ret = p;
        return 0;
fail:
        peer_free(p);
        return r;
}

struct peer *peer_free(struct peer *p)
{
        if (!p)
                return NULL;
        p->stopping = true;
        gather_stop(p);
        postq_stop(p);
        noteq_stop(p);
        mesh_leave(p);
        fanout_stop(p);
        mesh_stop(p);
        uplink_stop(p);
        sd_event_source_disable_unref(p->heartbeat_timer);
        wbuf_free(&p->cluster);
        ring_free(p->ring);
        log_set_vclock_names(NULL, 0);
        wbuf_free(&p->presence_buf);
        presence_clear(&p->local);
        for (unsigned i = 0; i < DCHAT_PEERS_MAX; i++)
                presence_clear(&p->mesh.links[i].presence);
        presence_clear(&p->uplink.presence);
        free(p);
        return NULL;
}

void peer_reconf(struct peer *p, const struct dchat_conf *c)
{
        p->conf = c;
        ra_set_reuse(&p->ra, c->reuse_permissions);
        if (ring_resize(p->ring, c->trace_events) < 0)
                log_warning("trace_events = %u: no memory for so many; the ring keeps %u", c->trace_events,
                            ring_capacity(p->ring));
        mesh_reconf(p);
        postq_reconf(p);
}

void peer_status(struct peer *p, struct dchat_status *st)
{
        st->lamport = p->ra.clock;
        st->counters = p->stats;
        strlcpy(st->dme_state, ra_state_name(p->ra.state), sizeof st->dme_state);
        strlcpy(st->dme_algorithm, dme_algo_name(p->ra.algo), sizeof st->dme_algorithm);
        st->request_ts = p->ra.state == RA_RELEASED ? 0 : p->ra.req_ts;
        st->queued = postq_pending(p);
        st->trace_events = ring_count(p->ring);
        st->trace_capacity = ring_capacity(p->ring);
        st->trace_bytes = ring_bytes(p->ring);
        uplink_status(p, st);
        mesh_status(p, st);
}

void peer_client_gone(struct peer *p, struct conn *client)
{
        postq_client_gone(p, client);
        noteq_client_gone(p, client);
        fanout_client_gone(p, client);
        uplink_client_gone(p, client);
        gather_client_gone(p, client);
}

int peer_member(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        return uplink_member(p, client, req);
}
