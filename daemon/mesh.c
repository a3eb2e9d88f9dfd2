/* SPDX-License-Identifier: MIT */
/*
 * mesh.c — the peer role's links to the other peers: connect, HELLO,
 * heartbeats, failure detection (fd.c) on what they say, and the DME
 * machine (ra.c: Ricart–Agrawala, or by dme_algorithm cm.c's peer side,
 * whose messages go to the server, or tk.c's token) driven by them
 * (mesh_run_actions).
 *
 * Links.  Each pair of peers has two TCP connections, one per direction:
 * a peer sends only on the connection it dialled and receives only on the
 * ones it accepted, so each direction is FIFO and needs no tie-breaking.
 * When either direction of a pair breaks, both are closed: the other side
 * then reconnects too and resends its pending request, which recovers any
 * REQUEST or REPLY lost with the old connection.
 */
#include <stdio.h>
#include <string.h>

#include "cm.h"
#include "peer.h"

static void link_connect(struct link *l);

/* --- Ricart–Agrawala actions ----------------------------------------------------------------- */

/* A regeneration round's message (struct tk_probe) to peer: its wire form. */
static void send_probe(struct link *l, const struct tk_probe *pr, uint64_t clock, const struct vclock *vc)
{
        (void) conn_send(l->out, &(struct dchat_msg) { .type = MSG_TOKEN_PROBE,
                .probe = { pr->kind, pr->round, pr->gen, pr->down, pr->holds, pr->wanted, pr->sn, pr->ts, clock, vc } });
}

/*
 * dme_algorithm = "token": the token's own steps.  What cannot go because
 * the link is down is not lost: tk.c sends it again when the link comes
 * back (ra_link_up), or regenerates the token once its holder is dead.
 */
static void run_token_action(struct peer *p, const struct ra_action *a, struct link *l, struct event_fields *f,
                             const struct vclock *vc)
{
        const struct tk *k = &p->ra.tk;
        bool up = l->state == LINK_UP;

        switch (a->kind) {
        case RA_QUEUED:
                /* not a deferral: whoever holds the token at this node's exit serves it, not this node */
                peer_event(p, EV_REQUEST_QUEUED, (int) a->peer, f, vc, "request %llu of %s queued behind the "
                           "critical section held here: the token goes on at the exit, to the oldest request "
                           "waiting", (unsigned long long) a->ts, f->peer);
                return;
        case RA_SEND_TOKEN: {
                peer_event(p, EV_REPLY_SENT, (int) a->peer, f, vc, "TOKEN for request %llu sent to %s%s",
                           (unsigned long long) a->ts, f->peer, up ? "" : " (link down: sent again when it is back)");
                if (!up)
                        return;
                p->stats.replies_sent++;
                struct dchat_msg m = { .type = MSG_TOKEN };
                m.token.clock = a->clock;
                m.token.ts = a->ts;
                m.token.gen = k->out.gen;
                m.token.hop = k->out.hop;
                m.token.n = (uint8_t) p->ra.n;
                memcpy(m.token.ln, k->out.ln, sizeof m.token.ln);
                m.token.qn = (uint8_t) k->out.qn;
                memcpy(m.token.q, k->out.q, sizeof m.token.q);
                m.token.vc = vc;
                (void) conn_send(l->out, &m);
                return;
        }
        case RA_SEND_PROBE:
                log_info("token: regeneration round %llu asks %s (generation %llu would be made)",
                         (unsigned long long) k->probe.round, f->peer, (unsigned long long) k->probe.gen);
                if (up)
                        send_probe(l, &k->probe, a->clock, vc);
                return;
        case RA_SEND_ANSWER:
                log_info("token: answer to %s's regeneration round %llu: %s", f->peer,
                         (unsigned long long) k->ans[a->peer].round,
                         k->ans[a->peer].holds ? "the token is here" : "no token here");
                if (up)
                        send_probe(l, &k->ans[a->peer], a->clock, vc);
                return;
        case RA_SEND_END:
                if (up) {
                        struct tk_probe end = tk_end_msg(&p->ra, a);
                        send_probe(l, &end, a->clock, vc);
                }
                return;
        case RA_REGENERATED:
                if (a->ts >> 6 == 1)    /* (counter << 6) | peer, tk.c: the cluster's first */
                        log_info("token: none existed yet: the first (generation %llu) made here",
                                 (unsigned long long) a->ts);
                else
                        log_warning("token: none was found (its holder is dead, or it was lost with a link): a new "
                                    "one of generation %llu made here", (unsigned long long) a->ts);
                return;
        case RA_DROPPED:
                log_info("token: one of generation %llu dropped (an older generation, or a copy of a transfer "
                         "taken already)", (unsigned long long) a->ts);
                return;
        default:
                return;
        }
}

/*
 * dme_algorithm = "central": a step with the coordinator (the server we
 * link to, while it leads).  A LOCK that cannot go now is not lost: once
 * the link to a leading server is up, ra_coordinator_up says it all again
 * (postq.c, coordinator_up).
 */
static void run_coordinator_action(struct peer *p, const struct ra_action *a)
{
        const char *srv = uplink_server_name(p);
        struct event_fields f = { .peer = srv, .lamport = a->clock, .request_ts = a->ts };
        struct vclock vc;
        uint8_t op;

        ra_action_vclock(&p->ra, a, &vc);
        switch (a->kind) {
        case RA_GOT_REPLY:
                p->stats.replies_received++;
                peer_event(p, EV_REPLY_RECEIVED, -1, &f, &vc, "GRANT for request %llu received from the "
                           "coordinator %s", (unsigned long long) a->ts, srv);
                return;
        default:
                break;
        }
        int lop = cm_lock_op(a);
        if (lop < 0)
                return;         /* nothing else goes to the coordinator */
        op = (uint8_t) lop;
        if (!uplink_leads(p)) {
                log_info("%s(%llu) for the coordinator waits: no link to a server that leads",
                         op == LOCK_RELEASE ? "RELEASE" : "REQUEST", (unsigned long long) a->ts);
                return;
        }
        if (op == LOCK_REQUEST) {
                p->stats.requests_sent++;
                peer_event(p, EV_REQUEST_SENT, -1, &f, &vc, "REQUEST(%llu) sent to the coordinator %s",
                           (unsigned long long) a->ts, srv);
        } else if (op == LOCK_HELD) {
                log_info("the critical section of request %llu is held here: said to the coordinator %s",
                         (unsigned long long) a->ts, srv);
        } else {
                p->stats.replies_sent++;        /* the section given back: what a REPLY is in Ricart–Agrawala */
                log_debug("RELEASE(%llu) sent to the coordinator %s", (unsigned long long) a->ts, srv);
        }
        (void) uplink_send(p, &(struct dchat_msg) { .type = MSG_LOCK, .lock = { op, a->ts, a->clock, &vc } });
}

void mesh_run_actions_why(struct peer *p, const struct ra_actions *acts, const char *why)
{
        for (unsigned i = 0; i < acts->n; i++) {
                const struct ra_action *a = &acts->a[i];
                if (a->peer == RA_COORDINATOR) {
                        run_coordinator_action(p, a);
                        continue;
                }
                struct link *l = &p->mesh.links[a->peer];
                struct event_fields f = { .peer = p->names[a->peer], .lamport = a->clock, .request_ts = a->ts };
                struct vclock vc;

                ra_action_vclock(&p->ra, a, &vc);
                switch (a->kind) {
                case RA_GOT_REQUEST:
                        p->stats.requests_received++;
                        f.send_vt = p->mesh.recv_vt;
                        peer_event(p, EV_REQUEST_RECEIVED, (int) a->peer, &f, &vc, "REQUEST(%llu) received from %s",
                                   (unsigned long long) a->ts, f.peer);
                        break;
                case RA_GOT_REPLY:
                        p->stats.replies_received++;
                        f.send_vt = p->mesh.recv_vt;
                        peer_event(p, EV_REPLY_RECEIVED, (int) a->peer, &f, &vc, "%s for request %llu received from %s",
                                   p->ra.algo == DME_TOKEN ? "TOKEN" : "REPLY", (unsigned long long) a->ts, f.peer);
                        break;
                case RA_SEND_REQUEST:
                        if (l->state != LINK_UP) {
                                log_info("REQUEST(%llu) for %s waits: the link is down",
                                         (unsigned long long) a->ts, f.peer);
                                break;
                        }
                        p->stats.requests_sent++;
                        peer_event(p, EV_REQUEST_SENT, (int) a->peer, &f, &vc, "REQUEST(%llu) sent to %s",
                                   (unsigned long long) a->ts, f.peer);
                        if (p->ra.algo == DME_TOKEN)
                                (void) conn_send(l->out, &(struct dchat_msg) { .type = MSG_TOKEN_REQUEST,
                                        .token_request = { p->ra.tk.gen_known, a->sn, a->ts, &vc } });
                        else
                                (void) conn_send(l->out, &(struct dchat_msg) { .type = MSG_REQUEST,
                                                                               .request = { a->ts, &vc } });
                        break;
                case RA_SEND_REPLY:
                        peer_event(p, EV_REPLY_SENT, (int) a->peer, &f, &vc, "REPLY for request %llu sent to %s%s",
                                   (unsigned long long) a->ts, f.peer,
                                   l->state == LINK_UP ? "" : " (link down: it will ask again)");
                        if (l->state == LINK_UP) {
                                p->stats.replies_sent++;
                                (void) conn_send(l->out, &(struct dchat_msg) { .type = MSG_REPLY,
                                                                               .reply = { a->clock, a->ts, &vc } });
                        }
                        break;
                case RA_DEFER: {
                        /* The order of requests is the pair (timestamp, node name): say which pairs were
                         * compared, so that a tie of timestamps shows who wins it and why. */
                        const char *me = self_name(p);
                        if (p->ra.state == RA_HELD)
                                peer_event(p, EV_REPLY_DEFERRED, (int) a->peer, &f, &vc,
                                           "REPLY to %s for request (%llu, %s) deferred: this node is in the "
                                           "critical section (its request (%llu, %s))", f.peer,
                                           (unsigned long long) a->ts, f.peer, (unsigned long long) p->ra.req_ts, me);
                        else
                                peer_event(p, EV_REPLY_DEFERRED, (int) a->peer, &f, &vc,
                                           "REPLY to %s for request (%llu, %s) deferred: this node's own request "
                                           "is older: (%llu, %s) < (%llu, %s)", f.peer, (unsigned long long) a->ts,
                                           f.peer, (unsigned long long) p->ra.req_ts, me, (unsigned long long) a->ts,
                                           f.peer);
                        break;
                }
                case RA_ENTER: {
                        unsigned asked = (unsigned) __builtin_popcountll(p->ra.asked);
                        unsigned reused = (unsigned) __builtin_popcountll(p->ra.held & ~p->ra.asked);
                        p->stats.cs_entries++;
                        if (p->ra.n > 1 && asked == 0 && p->ra.algo != DME_CENTRAL)
                                p->stats.cs_reused++;   /* every permission, or the token, in hand */
                        f.peer = NULL;
                        f.fence = p->ra.enter_ts;
                        if (reused)
                                peer_event(p, EV_CS_ENTER, -1, &f, &vc, "entered the critical section under "
                                           "request %llu (fence %llu): %u permission(s) reused, %u asked for",
                                           (unsigned long long) a->ts, (unsigned long long) p->ra.enter_ts,
                                           reused, asked);
                        else
                                peer_event(p, EV_CS_ENTER, -1, &f, &vc, "entered the critical section under "
                                           "request %llu (fence %llu)", (unsigned long long) a->ts,
                                           (unsigned long long) p->ra.enter_ts);
                        postq_enter(p);
                        break;
                }
                case RA_EXIT:
                        f.peer = NULL;
                        f.fence = p->ra.enter_ts;
                        peer_event(p, EV_CS_EXIT, -1, &f, &vc, "left the critical section of request %llu%s",
                                   (unsigned long long) a->ts, why ? why : "");
                        break;
                case RA_WITHDRAW:
                        log_info("request %llu withdrawn%s", (unsigned long long) a->ts, why ? why : "");
                        break;
                case RA_SEND_RELEASE:
                        break;          /* central: always to the coordinator (run_coordinator_action) */
                case RA_QUEUED:
                case RA_SEND_TOKEN:
                case RA_SEND_PROBE:
                case RA_SEND_ANSWER:
                case RA_SEND_END:
                case RA_REGENERATED:
                case RA_DROPPED:
                        run_token_action(p, a, l, &f, &vc);
                        break;
                }
        }
}

void mesh_run_actions(struct peer *p, const struct ra_actions *acts)
{
        mesh_run_actions_why(p, acts, NULL);
}

bool mesh_reachable(const struct peer *p, unsigned idx)
{
        return p->mesh.links[idx].state == LINK_UP;
}

bool mesh_linked(const struct peer *p, unsigned idx)
{
        return idx < p->conf->n_peers && idx != p->conf->self && p->mesh.links[idx].state == LINK_UP &&
               p->mesh.links[idx].in;
}

int mesh_send(struct peer *p, unsigned idx, const struct dchat_msg *m)
{
        if (idx >= p->conf->n_peers || idx == p->conf->self || p->mesh.links[idx].state != LINK_UP)
                return -ENOTCONN;
        return conn_send(p->mesh.links[idx].out, m);
}

/* --- failure detection ----------------------------------------------------------------------- */

static void arm_fd_timer(struct peer *p)
{
        uint64_t t = fd_next_deadline(&p->mesh.fd);
        if (t == UINT64_MAX) {
                (void) sd_event_source_set_enabled(p->mesh.fd_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->mesh.fd_timer, t);
        (void) sd_event_source_set_enabled(p->mesh.fd_timer, SD_EVENT_ONESHOT);
}

static void fd_apply(struct peer *p, const struct fd_events *ev)
{
        struct ra_actions acts;

        for (unsigned i = 0; i < ev->n; i++) {
                const struct fd_event *e = &ev->e[i];
                const char *name = p->names[e->peer];
                struct event_fields f = { .peer = name, .lamport = p->ra.clock };
                unsigned long long silent = (unsigned long long) (now_usec() - p->mesh.fd.p[e->peer].last_heard) /
                                            USEC_PER_MSEC;
                /* heard on its link to us lately, but ours to it is down (see heard_from) */
                const struct link *l = &p->mesh.links[e->peer];
                const char *how = l->state != LINK_UP && l->heard_unreachable &&
                                  now_usec() - l->heard_unreachable < p->conf->dead_after_usec
                                  ? "unreachable (it is heard, but the link to it is down)" : "silent";

                if (e->kind == FD_RESTARTED) {
                        peer_local_event(p, EV_PEER_RESTARTED, (int) e->peer, &f, "%s restarted (incarnation %llu): whatever it asked for before is void",
                                  name, (unsigned long long) e->incarnation);
                        ra_peer_up(&p->ra, e->peer, true, &acts);
                        mesh_run_actions(p, &acts);
                        continue;
                }
                switch (e->new) {
                case FD_SUSPECT:
                        peer_local_event(p, EV_PEER_SUSPECT, (int) e->peer, &f, "%s %s for %llu ms: suspect", name, how, silent);
                        snprintf(p->mesh.links[e->peer].silent, sizeof p->mesh.links[e->peer].silent,
                                 "%s for %llu ms", how, silent);
                        break;
                case FD_DEAD:
                        peer_local_event(p, EV_PEER_DEAD, (int) e->peer, &f, "%s %s for %llu ms: declared dead; no longer waited for%s",
                                  name, how, silent,
                                  p->ra.deferred & (UINT64_C(1) << e->peer) ? ", its request dropped" : "");
                        ra_peer_down(&p->ra, e->peer, &acts);
                        mesh_run_actions(p, &acts);
                        /* Drop its links too: if it was only slow or cut off,
                         * it must notice, reconnect and ask again for what we
                         * just dropped (its request), as after any lost link. */
                        if (p->mesh.links[e->peer].out)
                                conn_close(p->mesh.links[e->peer].out, -ETIMEDOUT);
                        else if (p->mesh.links[e->peer].in)
                                conn_close(p->mesh.links[e->peer].in, -ETIMEDOUT);
                        snprintf(p->mesh.links[e->peer].silent, sizeof p->mesh.links[e->peer].silent,
                                 "%s for %llu ms", how, silent);
                        break;
                case FD_ALIVE:
                        peer_local_event(p, EV_PEER_ALIVE, (int) e->peer, &f, "%s is alive again (was %s)", name, fd_state_name(e->old));
                        if (e->old == FD_DEAD) {
                                ra_peer_up(&p->ra, e->peer, false, &acts);
                                mesh_run_actions(p, &acts);
                        }
                        break;
                }
        }
        if (ev->n)
                presence_changed(p);    /* a watcher sees the peer suspect, dead, alive again */
        arm_fd_timer(p);
}

/*
 * A frame came from peer idx.  It is a sign of life that counts only while
 * our own link to it is up too: REQUESTs and REPLYs to it go on that link,
 * so a peer we hear but cannot reach (one direction blocked by a firewall,
 * its max_links_in, a wrong address in our file) blocks our requests as
 * surely as a dead one, and must be declared dead like one.
 */
/*
 * Our link to it is up, and the failure detector knows the life that said
 * HELLO on its link to us (a restart is reported first): what belongs to
 * one life of the peer may go again now (ra_link_up's known_life).
 */
static void try_known_life(struct peer *p, unsigned idx)
{
        struct link *l = &p->mesh.links[idx];
        struct ra_actions acts;

        if (!l->await_life || l->state != LINK_UP || !l->in || !l->in_inc ||
            p->mesh.fd.p[idx].incarnation != l->in_inc)
                return;
        l->await_life = false;
        ra_link_up(&p->ra, idx, true, &acts);
        mesh_run_actions(p, &acts);
}

static void heard_from(struct peer *p, unsigned idx, uint64_t incarnation)
{
        struct fd_events ev;

        if (p->mesh.links[idx].state != LINK_UP) {
                p->mesh.links[idx].heard_unreachable = now_usec();
                if (incarnation)
                        p->mesh.links[idx].heard_unreachable_inc = incarnation;
                return;
        }
        fd_heard(&p->mesh.fd, idx, incarnation, now_usec(), &ev);
        if (ev.n)
                fd_apply(p, &ev);
        else if (p->mesh.fd.p[idx].state == FD_ALIVE)
                arm_fd_timer(p);
        try_known_life(p, idx);
}

static int on_fd_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct peer *p = userdata;
        struct fd_events ev;
        (void) s;

        fd_tick(&p->mesh.fd, usec, &ev);
        fd_apply(p, &ev);
        return 0;
}

/* --- links to the other peers ---------------------------------------------------------------- */

static void link_down(struct link *l, int error)
{
        struct peer *p = l->p;

        if (!p->stopping)
                gather_peer_down(p, l->idx);
        if (l->announced)
                peer_local_event(p, EV_PEER_DOWN, (int) l->idx,
                                 &(struct event_fields) { .peer = p->names[l->idx], .lamport = p->ra.clock },
                          "link to %s down: %s", p->names[l->idx],
                          conn_strerror(error));
        /* why it went (the first direction to close says; the other only follows it) */
        if (l->announced || (error != -ECONNRESET && error != -ESHUTDOWN) || !l->why[0])
                strlcpy(l->why, conn_strerror(error), sizeof l->why);
        if (l->announced)
                l->changed = now_usec();
        l->announced = false;
        /* its users are known again once it says so on a new link */
        presence_clear(&l->presence);
        presence_changed(p);
}

/* Both directions of the link are up: it is announced, and watchers see it. */
static void link_announce(struct link *l)
{
        struct peer *p = l->p;

        l->announced = true;
        l->changed = now_usec();
        l->why[0] = '\0';
        peer_local_event(p, EV_PEER_UP, (int) l->idx,
                         &(struct event_fields) { .peer = p->names[l->idx], .lamport = p->ra.clock },
                         "link to %s up", p->names[l->idx]);
        presence_changed(p);
}

static void link_schedule(struct link *l)
{
        uint64_t d = backoff_next(l->p->conf, &l->backoff_usec);
        (void) sd_event_source_set_time_relative(l->timer, d);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

static void out_closed(struct conn *c, int error)
{
        struct link *l = conn_userdata(c);

        l->out = NULL;
        l->state = LINK_DOWN;
        link_down(l, error);
        if (l->p->stopping)
                return;
        /* what came on the other direction first is handled (its LEAVE, when it stops):
         * the two directions close in any order */
        conn_drain(l->in);                              /* (may close it: in_closed) */
        if (l->in)
                conn_close(l->in, -ECONNRESET);         /* make the other side reconnect too */
        link_schedule(l);
}

static void out_connected(struct conn *c)
{
        struct link *l = conn_userdata(c);
        struct peer *p = l->p;
        const char *me = self_name(p);
        struct ra_actions acts;

        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
        l->state = LINK_UP;
        l->backoff_usec = 0;
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_PEER, p->incarnation, p->conf->cluster_digest } });
        send_presence(p, c);            /* who is here: it keeps it while the link lasts */
        if (l->in && !l->announced)
                link_announce(l);
        /* what went on the old link may be lost: a request goes again now; what belongs to
         * one life of the peer once we know which life is at the other end (try_known_life) */
        l->await_life = true;
        ra_link_up(&p->ra, l->idx, false, &acts);
        mesh_run_actions(p, &acts);
        /* what we heard from it while we could not reach it counts now */
        if (l->in && l->heard_unreachable && now_usec() - l->heard_unreachable < p->conf->suspect_after_usec)
                heard_from(p, l->idx, l->heard_unreachable_inc);
        l->heard_unreachable_inc = 0;
        try_known_life(p, l->idx);
}

/* The other side speaks on our outgoing link only to refuse it (and say why). */
static int out_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct link *l = conn_userdata(c);
        struct peer *p = l->p;
        struct dchat_msg m;

        if (type == MSG_ERROR && proto_decode(type, payload, len, &m, NULL, NULL) == 0 &&
            m.error.code == ERR_STALE) {
                leave_as_later(p, p->names[l->idx], m.error.detail);
                return -ESTALE;
        }
        if (type == MSG_CLUSTER && proto_decode(type, payload, len, &m, NULL, NULL) == 0) {
                /* our HELLO showed another cluster definition: say what differs, and show ours */
                conf_cluster_report(p->conf, p->names[l->idx], &m, &l->cluster_reported);
                send_cluster(p, c);
                return 0;
        }
        log_event(EV_PROTOCOL_ERROR, NULL, "%s: unexpected %s frame on an outgoing link; closing", conn_label(c),
                  proto_type_name(type));
        return -EBADMSG;
}

static const struct conn_ops out_ops = {
        .frame = out_frame,
        .connected = out_connected,
        .closed = out_closed,
};

static int on_link_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct link *l = userdata;
        (void) s;
        (void) usec;
        if (l->state == LINK_CONNECTING && l->out) {
                conn_close(l->out, -ETIMEDOUT);         /* reschedules */
                return 0;
        }
        link_connect(l);
        return 0;
}

static void link_connect(struct link *l)
{
        struct peer *p = l->p;
        const struct node_conf *nc = &p->conf->peers[l->idx];
        char label[96];

        snprintf(label, sizeof label, "link to %s", nc->name);
        int r = conn_connect(p->event, (const struct sockaddr *) &nc->sa, nc->salen, &out_ops, l, label, nc->name,
                             &l->out);
        if (r < 0) {
                log_warning("cannot connect to %s at %s: %s", nc->name, nc->address, strerror(-r));
                link_schedule(l);
                return;
        }
        l->state = LINK_CONNECTING;
        (void) sd_event_source_set_time_relative(l->timer, p->conf->connect_timeout_usec);
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
}

/*
 * The vector clock of a REQUEST or REPLY from peer idx: its sender's own
 * component (which names the send event in a trace), or 0 when it is not
 * to be merged: none sent, or one whose components are not ours (another
 * peers list: the HELLO's cluster digest differed, and config-mismatch
 * says how).  The decoder checked its form and bounds.
 */
static uint64_t vclock_of(struct peer *p, int idx, const struct vclock *vc)
{
        struct link *l = &p->mesh.links[idx];

        if (!vc || vc->n == 0)
                return 0;
        if (vc->n != p->conf->n_peers || l->vc_foreign) {
                if (!l->vc_reported)
                        log_warning("%s sends vector clocks of %u component(s), this cluster has %u peers%s: they "
                                    "are not merged (see config-mismatch)", p->names[idx], vc->n, p->conf->n_peers,
                                    l->vc_foreign ? " listed in another order" : "");
                l->vc_reported = true;
                return 0;
        }
        return vc->c[idx];
}

/* A timestamp beyond the bounds: the frame is refused and the link closed (it reconnects). */
static int clock_refused(struct peer *p, struct conn *c, const char *what, uint64_t t)
{
        log_event(EV_PROTOCOL_ERROR, NULL, "%s: %s %llu is beyond the bounds (clock here %llu, at most %llu ahead, "
                  "never above %llu); closing", conn_label(c), what, (unsigned long long) t,
                  (unsigned long long) p->ra.clock, (unsigned long long) DCHAT_CLOCK_JUMP_MAX,
                  (unsigned long long) DCHAT_CLOCK_MAX);
        return -ERANGE;
}

/* A frame of another algorithm than ours: nodes that disagree on dme_algorithm cannot work together. */
static int algo_refused(struct peer *p, struct conn *c, uint8_t type)
{
        log_event(EV_PROTOCOL_ERROR, NULL, "%s: %s, but this node's dme_algorithm is \"%s\" (every node needs the "
                  "same: see config-mismatch); closing", conn_label(c), proto_type_name(type),
                  dme_algo_name(p->ra.algo));
        return -EPROTO;
}

/*
 * Peer idx is stopping (LEAVE, its last frame): nobody waits for it any
 * more, as if it had been declared dead, but at once instead of after
 * dead_after_ms of silence.  Its clock is taken in, so that the next fence
 * is above the last one it entered under (a fence refusal otherwise, as
 * after a crash inside the critical section).
 */
static int on_leave(struct peer *p, struct conn *c, unsigned idx, const struct dchat_msg *m)
{
        uint64_t known = p->mesh.fd.p[idx].incarnation;
        struct ra_actions acts;

        if (!clock_ok(p, m->leave.clock))
                return clock_refused(p, c, "LEAVE clock", m->leave.clock);
        if (m->leave.incarnation && known && m->leave.incarnation < known)
                return 0;       /* a late frame of an earlier life: the living one stays */
        bool awaited = p->ra.state == RA_WANTED && (p->ra.awaiting & (UINT64_C(1) << idx));
        bool owed = p->ra.deferred & (UINT64_C(1) << idx);
        ra_observe(&p->ra, m->leave.clock);
        fd_left(&p->mesh.fd, idx, now_usec());
        arm_fd_timer(p);
        /* what `who` says of it while it is away: dead, because it said so, not by silence */
        strlcpy(p->mesh.links[idx].silent, "left the cluster: stopped cleanly", sizeof p->mesh.links[idx].silent);
        peer_local_event(p, EV_PEER_LEFT, (int) idx,
                         &(struct event_fields) { .peer = p->names[idx], .lamport = p->ra.clock },
                         "%s is stopping and left the cluster: no longer waited for%s%s", p->names[idx],
                         awaited ? ", its REPLY no longer needed" : "", owed ? ", its request dropped" : "");
        ra_peer_down(&p->ra, idx, &acts);
        mesh_run_actions(p, &acts);
        presence_changed(p);    /* a watcher (dchatctl chat) sees it gone */
        return 0;
}

static int in_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct inbound *ib = conn_userdata(c);
        struct peer *p = ib->p;
        struct dchat_msg m;
        struct ra_actions acts;

        if (proto_decode(type, payload, len, &m, &p->scratch, NULL) < 0) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: malformed %s frame; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        if (ib->idx < 0) {
                char name[DCHAT_NAME_MAX + 1];
                int idx = -1;
                if (type == MSG_HELLO && m.hello.role == ROLE_PEER &&
                    dchat_str_copy(name, sizeof name, m.hello.node) >= 0)
                        for (unsigned i = 0; i < p->conf->n_peers; i++)
                                if (i != p->conf->self && strcmp(p->names[i], name) == 0)
                                        idx = (int) i;
                if (idx < 0) {
                        char q[LOG_QUOTE_NAME] = "";
                        if (type == MSG_HELLO)
                                log_quote(q, sizeof q, m.hello.node.p, m.hello.node.len);
                        log_event(EV_PROTOCOL_ERROR, NULL, "%s: expected HELLO from a peer of this cluster, got %s%s%s%s; "
                                  "closing", conn_label(c), proto_type_name(type), type == MSG_HELLO ? " from '" : "", q,
                                  type == MSG_HELLO ? "'" : "");
                        return -EPERM;
                }
                struct link *l = &p->mesh.links[idx];
                uint64_t known = p->mesh.fd.p[idx].incarnation;
                if (m.hello.incarnation && known && m.hello.incarnation < known) {
                        /* A connection of an earlier life of it, delivered late (held by
                         * the network, or accepted after the new one's): it must not
                         * replace the living one's.  Say so, in case it is no ghost but
                         * a life whose counter went back (leave_as_later). */
                        char text[DCHAT_ERROR_MAX];
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = p->names[idx] },
                                  "%s: HELLO of incarnation %llu from %s, which is at incarnation %llu: a "
                                  "connection of an earlier life; refused", conn_label(c),
                                  (unsigned long long) m.hello.incarnation, p->names[idx], (unsigned long long) known);
                        snprintf(text, sizeof text, "%s knows %s under incarnation %llu, later than %llu",
                                 self_name(p), p->names[idx], (unsigned long long) known,
                                 (unsigned long long) m.hello.incarnation);
                        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_ERROR,
                                .error = { ERR_STALE, { text, (uint16_t) strlen(text) }, known } });
                        ib->idx = -2;
                        conn_shutdown(c);
                        return 0;
                }
                if (l->in) {
                        /* the peer reconnected before we noticed the old link die */
                        struct conn *old = l->in;
                        l->in = NULL;
                        ((struct inbound *) conn_userdata(old))->idx = -2;
                        conn_close(old, -ECONNRESET);
                }
                ib->idx = idx;
                l->in = c;
                l->in_inc = m.hello.incarnation;
                /* what it sent on its old link may be lost: once heard_from has taken in its
                 * incarnation (a restart reported first), ra_link_up(known_life) asks again */
                if (l->state == LINK_UP)
                        l->await_life = true;
                l->vc_foreign = m.hello.digest && m.hello.digest != p->conf->cluster_digest;
                if (l->vc_foreign)
                        send_cluster(p, c);     /* it answers with its own: both say what differs */
                heard_from(p, (unsigned) idx, m.hello.incarnation);
                char label[96];
                snprintf(label, sizeof label, "link from %s", p->names[idx]);
                conn_set_label(c, label);
                if (l->state == LINK_UP && !l->announced)
                        link_announce(l);
                if (l->state == LINK_DOWN) {
                        /* it is back: don't wait for the backoff */
                        l->backoff_usec = 0;
                        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_OFF);
                        link_connect(l);
                }
                return 0;
        }
        if (ib->idx < 0)
                return -EBADMSG;
        heard_from(p, (unsigned) ib->idx, type == MSG_HEARTBEAT ? m.heartbeat.incarnation : 0);
        switch (type) {
        case MSG_HEARTBEAT:
                return 0;
        case MSG_CLUSTER:
                conf_cluster_report(p->conf, p->names[ib->idx], &m, &p->mesh.links[ib->idx].cluster_reported);
                return 0;
        case MSG_PRESENCE: {
                /* a peer speaks for itself only */
                const char *name = p->names[ib->idx];
                if (m.presence.node.len != strlen(name) || memcmp(m.presence.node.p, name, m.presence.node.len) ||
                    m.presence.role != ROLE_PEER) {
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = name },
                                  "%s: PRESENCE for another node; closing", conn_label(c));
                        return -EBADMSG;
                }
                int r = presence_take(&p->mesh.links[ib->idx].presence, &m);
                if (r < 0)
                        return r;
                presence_changed(p);
                return 0;
        }
        case MSG_REQUEST:
                if (!clock_ok(p, m.request.ts))
                        return clock_refused(p, c, "REQUEST timestamp", m.request.ts);
                p->mesh.recv_vt = vclock_of(p, ib->idx, m.request.vc);
                ra_on_request(&p->ra, (unsigned) ib->idx, m.request.ts, p->mesh.recv_vt ? m.request.vc : NULL, &acts);
                mesh_run_actions(p, &acts);
                p->mesh.recv_vt = 0;
                return 0;
        case MSG_REPLY:
                if (!clock_ok(p, m.reply.clock))
                        return clock_refused(p, c, "REPLY clock", m.reply.clock);
                p->mesh.recv_vt = vclock_of(p, ib->idx, m.reply.vc);
                ra_on_reply(&p->ra, (unsigned) ib->idx, m.reply.clock, m.reply.req_ts,
                            p->mesh.recv_vt ? m.reply.vc : NULL, &acts);
                mesh_run_actions(p, &acts);
                p->mesh.recv_vt = 0;
                return 0;
        case MSG_TOKEN_REQUEST:
                if (!clock_ok(p, m.token_request.ts))
                        return clock_refused(p, c, "TOKEN_REQUEST timestamp", m.token_request.ts);
                if (p->ra.algo != DME_TOKEN)
                        return algo_refused(p, c, type);
                p->mesh.recv_vt = vclock_of(p, ib->idx, m.token_request.vc);
                ra_on_token_request(&p->ra, (unsigned) ib->idx, m.token_request.gen, m.token_request.sn,
                                    m.token_request.ts, p->mesh.recv_vt ? m.token_request.vc : NULL, &acts);
                mesh_run_actions(p, &acts);
                p->mesh.recv_vt = 0;
                return 0;
        case MSG_TOKEN: {
                if (!clock_ok(p, m.token.clock))
                        return clock_refused(p, c, "TOKEN clock", m.token.clock);
                if (p->ra.algo != DME_TOKEN)
                        return algo_refused(p, c, type);
                if (m.token.n != p->ra.n) {
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = p->names[ib->idx] },
                                  "%s: TOKEN for %u peers, this cluster has %u (see config-mismatch); closing",
                                  conn_label(c), m.token.n, p->ra.n);
                        return -EBADMSG;
                }
                struct tk_token tok = { .gen = m.token.gen, .hop = m.token.hop, .qn = m.token.qn };
                memcpy(tok.ln, m.token.ln, sizeof tok.ln);
                memcpy(tok.q, m.token.q, sizeof tok.q);
                p->mesh.recv_vt = vclock_of(p, ib->idx, m.token.vc);
                ra_on_token(&p->ra, (unsigned) ib->idx, m.token.clock, m.token.ts, &tok,
                            p->mesh.recv_vt ? m.token.vc : NULL, &acts);
                mesh_run_actions(p, &acts);
                p->mesh.recv_vt = 0;
                return 0;
        }
        case MSG_TOKEN_PROBE: {
                if (p->ra.algo != DME_TOKEN)
                        return algo_refused(p, c, type);
                struct tk_probe pr = { .kind = m.probe.kind, .round = m.probe.round, .gen = m.probe.gen,
                                       .down = m.probe.down, .holds = m.probe.holds, .wanted = m.probe.wanted,
                                       .sn = m.probe.sn, .ts = m.probe.ts };
                uint64_t vt = vclock_of(p, ib->idx, m.probe.vc);
                ra_on_probe(&p->ra, (unsigned) ib->idx, &pr, m.probe.clock, vt ? m.probe.vc : NULL, &acts);
                mesh_run_actions(p, &acts);
                return 0;
        }
        case MSG_TRACE:
                if (m.trace.scope != TRACE_RING) {
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = p->names[ib->idx] },
                                  "%s: TRACE of the whole cluster asked on a peer link; closing", conn_label(c));
                        return -EBADMSG;
                }
                gather_answer(p, (unsigned) ib->idx, &m);
                return 0;
        case MSG_TRACE_EVENTS:
                gather_input(p, (unsigned) ib->idx, &m);
                return 0;
        case MSG_LEAVE:
                return on_leave(p, c, (unsigned) ib->idx, &m);
        default:
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = p->names[ib->idx] },
                          "%s: unexpected %s frame; closing", conn_label(c), proto_type_name(type));
                return -EBADMSG;
        }
}

static void in_closed(struct conn *c, int error)
{
        struct inbound *ib = conn_userdata(c);
        struct peer *p = ib->p;

        if (ib->idx >= 0) {
                struct link *l = &p->mesh.links[ib->idx];
                l->in = NULL;
                link_down(l, error);
                if (!p->stopping)
                        conn_drain(l->out);     /* what came on it first (as in out_closed) */
                if (l->out && !p->stopping)
                        conn_close(l->out, -ECONNRESET);        /* both directions go together */
        }
        LIST_REMOVE(p->mesh.inbound, ib);
        free(ib);
}

static const struct conn_ops in_ops = {
        .frame = in_frame,
        .closed = in_closed,
};

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct peer *p = userdata;
        char label[96];
        (void) s;
        (void) revents;

        int cfd = conn_accept(fd, label, sizeof label);
        if (cfd < 0)
                return 0;
        struct inbound *ib = calloc(1, sizeof *ib);
        if (!ib || !(ib->c = conn_new(p->event, cfd, false, &in_ops, ib, label))) {
                free(ib);
                close(cfd);
                return 0;
        }
        ib->p = p;
        ib->idx = -1;
        LIST_PREPEND(p->mesh.inbound, ib);
        return 0;
}

/* --- life cycle ------------------------------------------------------------------------------ */

int mesh_start(struct peer *p, int listen_fd)
{
        sd_event *e = p->event;
        const struct dchat_conf *c = p->conf;
        int r;

        p->mesh.listen_fd = listen_fd;
        fd_init(&p->mesh.fd, c->n_peers, c->self, c->suspect_after_usec, c->dead_after_usec, now_usec());
        r = sd_event_add_time(e, &p->mesh.fd_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_fd_timer, p);
        if (r < 0)
                return r;
        arm_fd_timer(p);
        r = sd_event_add_io(e, &p->mesh.listen_src, listen_fd, EPOLLIN, on_accept, p);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < c->n_peers; i++) {
                struct link *l = &p->mesh.links[i];
                l->p = p;
                l->idx = i;
                if (i == c->self)
                        continue;
                r = sd_event_add_time(e, &l->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_link_timer, l);
                if (r < 0)
                        return r;
                link_connect(l);
        }
        return 0;
}

void mesh_leave(struct peer *p)
{
        struct ra_actions acts;
        unsigned told = 0;

        /* what we owe goes first, on the same links: a REPLY, then the LEAVE */
        if (p->ra.state != RA_RELEASED) {
                ra_release(&p->ra, &acts);
                mesh_run_actions_why(p, &acts, " (stopping)");
        }
        for (unsigned i = 0; i < p->conf->n_peers; i++) {
                struct link *l = &p->mesh.links[i];
                if (i == p->conf->self || l->state != LINK_UP)
                        continue;
                if (conn_send(l->out, &(struct dchat_msg) { .type = MSG_LEAVE,
                                .leave = { p->incarnation, p->ra.clock } }) == 0)
                        told++;
        }
        if (told)
                log_info("told %u peer(s) that this node leaves: they stop waiting for it now", told);
}

void mesh_stop(struct peer *p)
{
        for (unsigned i = 0; i < DCHAT_PEERS_MAX; i++) {
                struct link *l = &p->mesh.links[i];
                sd_event_source_disable_unref(l->timer);
                l->timer = NULL;
                if (l->out)
                        conn_close(l->out, -ESHUTDOWN);        /* sets l->out = NULL */
        }
        while (p->mesh.inbound)
                conn_close(p->mesh.inbound->c, -ESHUTDOWN);    /* unlinks it */
        p->mesh.fd_timer = sd_event_source_disable_unref(p->mesh.fd_timer);
        p->mesh.listen_src = sd_event_source_disable_unref(p->mesh.listen_src);
}

void mesh_reconf(struct peer *p)
{
        fd_set_times(&p->mesh.fd, p->conf->suspect_after_usec, p->conf->dead_after_usec);
        arm_fd_timer(p);
}

void mesh_heartbeat(struct peer *p)
{
        for (unsigned i = 0; i < p->conf->n_peers; i++)
                if (p->mesh.links[i].state == LINK_UP)
                        (void) conn_send(p->mesh.links[i].out, &(struct dchat_msg) {
                                .type = MSG_HEARTBEAT, .heartbeat = { p->incarnation, p->ra.clock } });
}

void mesh_presence_send(struct peer *p)
{
        for (unsigned i = 0; i < p->conf->n_peers; i++)
                if (i != p->conf->self && p->mesh.links[i].state == LINK_UP)
                        send_presence(p, p->mesh.links[i].out);
}

unsigned mesh_who(struct peer *p, struct who_node *out, unsigned cap)
{
        uint64_t now = now_usec();
        unsigned n = 0;

        for (unsigned i = 0; i < p->conf->n_peers && n < cap; i++) {
                if (i == p->conf->self)
                        continue;
                const struct link *l = &p->mesh.links[i];
                const struct fd_peer *fp = &p->mesh.fd.p[i];
                struct who_node *w = &out[n++];
                bool up = l->state == LINK_UP && l->in;
                uint64_t since = l->changed;

                *w = (struct who_node) { .name = p->names[i], .role = ROLE_PEER };
                if (fp->state == FD_DEAD) {
                        w->state = NODE_DEAD;
                        since = fp->since;
                } else if (fp->state == FD_SUSPECT) {
                        w->state = NODE_SUSPECT;
                        since = fp->since;
                } else
                        w->state = up ? NODE_UP : NODE_DOWN;
                if (w->state == NODE_DEAD || w->state == NODE_SUSPECT)
                        strlcpy(w->note, l->silent, sizeof w->note);
                else if (w->state != NODE_UP)
                        strlcpy(w->note, l->why[0] ? l->why : "not linked yet", sizeof w->note);
                w->since = since && now > since ? (uint32_t) ((now - since) / USEC_PER_SEC) : 0;
                w->users = up && l->presence.known ? &l->presence : NULL;
        }
        return n;
}

void mesh_status(struct peer *p, struct dchat_status *st)
{
        st->n_peers = 0;
        for (unsigned i = 0; i < p->conf->n_peers; i++) {
                if (i == p->conf->self)
                        continue;
                struct dchat_peer_status *ps = &st->peers[st->n_peers++];
                strlcpy(ps->name, p->names[i], sizeof ps->name);
                ps->connected = p->mesh.links[i].state == LINK_UP && p->mesh.links[i].in;
                strlcpy(ps->state, fd_state_name(p->mesh.fd.p[i].state), sizeof ps->state);
                ps->since = (uint32_t) ((now_usec() - p->mesh.fd.p[i].since) / USEC_PER_SEC);
        }
}
