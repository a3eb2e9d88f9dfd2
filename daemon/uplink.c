/* SPDX-License-Identifier: MIT */
/*
 * uplink.c — the peer role's link to the server: connect, HELLO and
 * HELLO_ACK, heartbeats both ways, reconnects with backoff, and the
 * dispatch of what the server sends: answers to appends go to postq.c,
 * entries and views to fanout.c.  The other files see it only through the
 * uplink_* functions (peer.h).
 *
 * The server link is watched like a peer: we send a HEARTBEAT on it every
 * heartbeat_ms and the server sends its own; a server silent for
 * dead_after_ms (frozen, or behind a path that swallows everything) is
 * dropped like a lost link — server-down says "silent for N ms", views
 * and followers are told, and we reconnect with backoff.  Once the server
 * has been unreachable for dead_after_ms, posts waiting for it and new
 * ones fail at once with that reason instead of running into their timeout
 * (uplink_given_up).
 *
 * A server group.  The link goes to one server of the group at a time;
 * any of them says who leads (LEADER), and appends go to the leader only
 * (uplink_leads).  Another server named as the leader: the link goes over
 * to it at once, and followers stay; at the address LEADER gives if our
 * cluster.servers does not list it (a server added at runtime, before the
 * files were updated: the group's configuration is what counts).  A link
 * that fails: the next server of the list, with backoff.  Reads (views,
 * follows) go to whichever server we link to.
 *
 * `dchatctl server add`/`remove` on a peer: the MEMBER request goes to the
 * server we link to (which passes it on to the leader) and its answer back
 * to the client (uplink_member).
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"

static void server_connect(struct peer *p);

/* The server we link to (or try to): the group's leader when we know it. */
static const struct node_conf *cur_server(const struct peer *p)
{
        if (p->uplink.srv == p->conf->n_servers && p->uplink.have_extra)
                return &p->uplink.extra;
        return &p->conf->servers[p->uplink.srv < p->conf->n_servers ? p->uplink.srv : 0];
}

/* When the link to server idx (n_servers: the extra one) last failed. */
static uint64_t *failed_at(struct peer *p, unsigned idx)
{
        if (idx < p->conf->n_servers && idx < DCHAT_SERVERS_MAX)
                return &p->uplink.srv_failed[idx];
        return &p->uplink.extra_failed;
}

/*
 * A leader our file does not list, at the address its LEADER gave: the
 * extra server (n_servers).  -EINVAL if that address is none.
 */
static int use_extra(struct peer *p, const char *name, const struct dchat_msg *m)
{
        struct node_conf *x = &p->uplink.extra;
        char address[sizeof x->address];
        struct sockaddr_storage sa;
        socklen_t salen;

        if (dchat_str_copy(address, sizeof address, m->leader.address) < 0 || !address[0] ||
            sockaddr_parse(address, &sa, &salen) < 0)
                return -EINVAL;
        if (!p->uplink.have_extra || strcmp(x->name, name) || strcmp(x->address, address)) {
                *x = (struct node_conf) { .sa = sa, .salen = salen };
                strlcpy(x->name, name, sizeof x->name);
                strlcpy(x->address, address, sizeof x->address);
                p->uplink.have_extra = true;
                p->uplink.extra_failed = 0;
        }
        return 0;
}

bool uplink_ready(const struct peer *p)
{
        return p->uplink.state == LINK_UP;
}

bool uplink_leads(const struct peer *p)
{
        return p->uplink.state == LINK_UP && p->uplink.leads;
}

int uplink_send(struct peer *p, const struct dchat_msg *m)
{
        return conn_send(p->uplink.conn, m);
}

void uplink_cork(struct peer *p)
{
        conn_cork(p->uplink.conn);
}

void uplink_uncork(struct peer *p)
{
        conn_uncork(p->uplink.conn);
}

uint32_t uplink_tag(struct peer *p)
{
        return ++p->uplink.next_tag ? p->uplink.next_tag : ++p->uplink.next_tag;
}

const char *uplink_server_name(const struct peer *p)
{
        return cur_server(p)->name;
}

void uplink_status(const struct peer *p, struct dchat_status *st)
{
        strlcpy(st->server, cur_server(p)->name, sizeof st->server);
        st->server_connected = uplink_ready(p);
        /* the group's leader as the last LEADER said (a group's status asks every server too: query.c) */
        strlcpy(st->leader, p->conf->n_servers > 1 ? p->uplink.leader : "", sizeof st->leader);
        st->term = p->uplink.leader_term;
}

const char *uplink_why(const struct peer *p)
{
        return p->uplink.why;
}

/*
 * LEADER from the server we link to: who leads the group.  Appends go to
 * the leader only; if another server leads, we close this link and go
 * there at once (views and followers go on there).
 */
static int on_leader(struct peer *p, const struct dchat_msg *m)
{
        char name[DCHAT_NAME_MAX + 1];
        unsigned idx;

        if (dchat_str_copy(name, sizeof name, m->leader.leader) < 0)
                return -EBADMSG;
        p->uplink.leader_term = m->leader.term;
        strlcpy(p->uplink.leader, name, sizeof p->uplink.leader);
        if (!name[0]) {
                p->uplink.leads = false;
                if (!p->uplink.leaderless_since)
                        p->uplink.leaderless_since = now_usec();
                log_info("the server group has no leader just now (so says %s, term %llu): posts wait",
                         cur_server(p)->name, (unsigned long long) m->leader.term);
                postq_tell_waiting(p);
                presence_changed(p);
                return 0;
        }
        for (idx = 0; idx < p->conf->n_servers; idx++)
                if (!strcmp(p->conf->servers[idx].name, name))
                        break;
        if (idx == p->conf->n_servers) {
                /* added to the group at runtime: this host's file does not list it yet */
                char was[DCHAT_NAME_MAX + 1];
                strlcpy(was, cur_server(p)->name, sizeof was);
                if (p->uplink.srv == idx && strcmp(was, name)) {
                        /* we link to another such server, which names this one: go there */
                        if (use_extra(p, name, m) < 0)
                                return 0;
                        log_info("%s leads the server group (term %llu), not %s: linking to it at %s, which the "
                                 "group gave", name, (unsigned long long) m->leader.term, was,
                                 p->uplink.extra.address);
                        p->uplink.switching = true;
                        return -ECONNRESET;
                }
                if (use_extra(p, name, m) < 0) {
                        log_warning("%s says %s leads the server group, which is not a server in %s, and gives "
                                    "no address for it: staying with %s", cur_server(p)->name, name,
                                    p->conf->path, cur_server(p)->name);
                        return 0;
                }
        }
        if (idx != p->uplink.srv && *failed_at(p, idx) &&
            now_usec() - *failed_at(p, idx) < 2 * p->conf->election_timeout_usec) {
                /* a leader we just lost, named by a server that has not noticed yet: the next LEADER
                 * (the group elects another within its election timeout) says who leads now */
                log_info("%s says %s leads the server group (term %llu), but the link to it just failed: "
                         "waiting for the group to elect another", cur_server(p)->name, name,
                         (unsigned long long) m->leader.term);
                p->uplink.leads = false;
                if (!p->uplink.leaderless_since)
                        p->uplink.leaderless_since = now_usec();
                return 0;
        }
        if (idx == p->uplink.srv) {
                if (!p->uplink.leads) {
                        log_info("the server %s leads the group (term %llu): posts go there",
                                 name, (unsigned long long) m->leader.term);
                        presence_changed(p);    /* who shows who leads */
                }
                p->uplink.leads = true;
                p->uplink.leaderless_since = 0;
                p->uplink.moves = 0;
                postq_server_leads(p);  /* what waited for the leader */
                return 0;
        }
        if (idx == p->conf->n_servers)
                log_info("%s leads the server group (term %llu), not %s: linking to it at %s, which the group "
                         "gave (%s does not list it: add it to cluster.servers)", name,
                         (unsigned long long) m->leader.term, cur_server(p)->name, p->uplink.extra.address,
                         p->conf->path);
        else
                log_info("%s leads the server group (term %llu), not %s: linking to it", name,
                         (unsigned long long) m->leader.term, cur_server(p)->name);
        p->uplink.srv = idx;
        p->uplink.switching = true;
        return -ECONNRESET;     /* server_closed, then server_connect to it */
}

/* --- server add / remove, passed on ------------------------------------------------------ */

static bool member_awaits(struct peer *p, uint32_t tag)
{
        for (struct member_relay *r = p->uplink.members; r; r = r->next)
                if (r->tag == tag)
                        return true;
        return false;
}

/* MEMBER_REPLY or ERROR from the server: to the client that asked, under its tag. */
static int member_answer(struct peer *p, struct dchat_msg *m)
{
        for (struct member_relay **pr = &p->uplink.members; *pr; pr = &(*pr)->next) {
                struct member_relay *r = *pr;
                if (r->tag != m->tag)
                        continue;
                m->tag = r->client_tag;
                if (r->client)
                        (void) conn_send(r->client, m);
                *pr = r->next;
                free(r);
                return 0;
        }
        log_event(EV_PROTOCOL_ERROR, NULL, "server link: %s for no request of ours; closing", proto_type_name(m->type));
        return -EBADMSG;
}

/* The link is gone before the answers came: the clients are told, and may run the command again. */
static void members_lost(struct peer *p, const char *server)
{
        while (p->uplink.members) {
                struct member_relay *r = p->uplink.members;
                p->uplink.members = r->next;
                conn_send_error(r->client, r->client_tag, ERR_UNAVAILABLE, "lost the connection to the server %s "
                                "before it answered: the change may or may not have been made; run the command "
                                "again (it is safe to repeat)", server);
                free(r);
        }
}

int uplink_member(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        struct member_relay *r;
        struct dchat_msg m = *req;

        if (p->uplink.state != LINK_UP) {
                conn_send_error(client, req->tag, ERR_UNAVAILABLE, "not connected to a server just now (%s): try "
                                "again", p->uplink.why[0] ? p->uplink.why : "connecting");
                return 0;
        }
        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        *r = (struct member_relay) { .next = p->uplink.members, .client = client, .client_tag = req->tag,
                                     .tag = uplink_tag(p) };
        p->uplink.members = r;
        m.tag = r->tag;
        (void) conn_send(p->uplink.conn, &m);
        return 0;
}

void uplink_client_gone(struct peer *p, struct conn *client)
{
        for (struct member_relay *r = p->uplink.members; r; r = r->next)
                if (r->client == client)
                        r->client = NULL;
}

static int server_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct peer *p = conn_userdata(c);
        struct dchat_msg m;

        if (proto_decode(type, payload, len, &m, &p->scratch, NULL) < 0) {
                log_event(EV_PROTOCOL_ERROR, NULL, "server link: malformed %s frame; closing",
                          proto_type_name(type));
                return -EBADMSG;
        }
        if (fd_link_heard(&p->uplink.alive, now_usec())) {
                log_info("the server %s is heard from again", cur_server(p)->name);
                presence_changed(p);
        }
        if (type == MSG_HEARTBEAT)
                return 0;
        if (type == MSG_HELLO_ACK) {
                uint64_t last = m.hello_ack.last_post_id;
                if (m.hello_ack.last_lamport > DCHAT_CLOCK_MAX) {
                        log_event(EV_PROTOCOL_ERROR, NULL, "server link: HELLO_ACK with a last fence of %llu, above "
                                  "the bound %llu; closing", (unsigned long long) m.hello_ack.last_lamport,
                                  (unsigned long long) DCHAT_CLOCK_MAX);
                        return -EBADMSG;
                }
                if (postq_number_after(p, last) < 0)
                        return -EIO;
                ra_observe(&p->ra, m.hello_ack.last_lamport);
                p->anchored = true;
                p->uplink.state = LINK_UP;
                p->uplink.switching = false;
                /* one server leads itself; a group's member says who leads (LEADER, next) */
                p->uplink.leads = p->conf->n_servers == 1;
                p->uplink.leaderless_since = p->uplink.leads ? 0 : now_usec();        /* until LEADER names one */
                p->uplink.tried = 0;
                p->uplink.backoff = 0;
                log_event(EV_SERVER_UP, &(struct event_fields) { .peer = cur_server(p)->name,
                                                                 .lamport = p->ra.clock },
                          "connected to the server %s (%s), log at seq %llu", cur_server(p)->name,
                          cur_server(p)->address, (unsigned long long) m.hello_ack.last_seq);
                p->uplink.announced = true;
                p->uplink.changed = now_usec();
                send_presence(p, c);    /* who is here, for the server's who */
                postq_server_up(p);     /* resend what a lost link left unanswered */
                fanout_server_up(p, m.hello_ack.last_seq);
                presence_changed(p);
                return 0;
        }
        if (type == MSG_CLUSTER) {
                conf_cluster_report(p->conf, cur_server(p)->name, &m, &p->uplink.cluster_reported);
                send_cluster(p, c);
                return 0;
        }
        if (type == MSG_LEADER && p->uplink.state == LINK_UP)
                return on_leader(p, &m);
        if (type == MSG_PRESENCE && p->uplink.state == LINK_UP) {
                /* the server speaks for itself only */
                const char *name = cur_server(p)->name;
                if (m.presence.node.len != strlen(name) || memcmp(m.presence.node.p, name, m.presence.node.len) ||
                    m.presence.role != ROLE_SERVER) {
                        log_event(EV_PROTOCOL_ERROR, NULL, "server link: PRESENCE for another node; closing");
                        return -EBADMSG;
                }
                int r = presence_take(&p->uplink.presence, &m);
                if (r < 0)
                        return r;
                presence_changed(p);
                return 0;
        }
        if (p->uplink.state != LINK_UP) {
                if (type == MSG_ERROR && m.error.code == ERR_STALE) {
                        leave_as_later(p, cur_server(p)->name, m.error.detail);
                        return -ESTALE;
                }
                log_event(EV_PROTOCOL_ERROR, NULL, "server link: %s before HELLO_ACK; closing", proto_type_name(type));
                return -EBADMSG;
        }

        if (type == MSG_GRANT && p->ra.algo == DME_CENTRAL) {
                struct ra_actions acts;
                if (!clock_ok(p, m.grant.clock) || m.grant.ts > DCHAT_CLOCK_MAX) {
                        log_event(EV_PROTOCOL_ERROR, NULL, "server link: GRANT with clock %llu beyond the bounds "
                                  "(clock here %llu); closing", (unsigned long long) m.grant.clock,
                                  (unsigned long long) p->ra.clock);
                        return -ERANGE;
                }
                /* the coordinator's vector clock is the peers' merged: ours in shape, or not taken */
                const struct vclock *vc = m.grant.vc && m.grant.vc->n == p->conf->n_peers ? m.grant.vc : NULL;
                ra_on_grant(&p->ra, m.grant.ts, m.grant.clock, vc, &acts);
                mesh_run_actions(p, &acts);
                return 0;
        }
        if (type == MSG_MEMBER_REPLY || (type == MSG_ERROR && member_awaits(p, m.tag)))
                return member_answer(p, &m);
        if ((type == MSG_NOTE_REPLY || type == MSG_ERROR) && noteq_awaits(p, m.tag))
                return noteq_frame(p, type, &m);        /* a note read, an unlocked increment */
        if (type == MSG_APPENDED || type == MSG_NOTE_REPLY || (type == MSG_ERROR && postq_awaits(p, m.tag))) {
                if (type == MSG_ERROR && m.error.code == ERR_NOT_LEADER) {
                        p->uplink.leads = false;        /* appends wait for the leader, which LEADER names */
                        if (!p->uplink.leaderless_since)
                                p->uplink.leaderless_since = now_usec();
                }
                return postq_answer(p, type, &m);
        }
        if (type == MSG_ENTRY || type == MSG_ENTRY_DAMAGED || type == MSG_VIEW_END || type == MSG_ERROR)
                return fanout_frame(p, type, &m);       /* a followed entry, a follower's page, a view */
        log_event(EV_PROTOCOL_ERROR, NULL, "server link: unexpected %s frame; closing", proto_type_name(type));
        return -EBADMSG;
}

static void server_connected(struct conn *c)
{
        struct peer *p = conn_userdata(c);
        const char *me = self_name(p);

        (void) sd_event_source_set_enabled(p->uplink.timer, SD_EVENT_OFF);
        /* from now on the server must be heard from (HELLO_ACK, then heartbeats) */
        fd_link_init(&p->uplink.alive, now_usec());
        p->uplink.watch = true;
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_PEER, p->incarnation, p->conf->cluster_digest } });
}

static void server_closed(struct conn *c, int error)
{
        struct peer *p = conn_userdata(c);
        const char *name = cur_server(p)->name;
        char msg[DCHAT_ERROR_MAX];

        bool was_up = p->uplink.state == LINK_UP;

        p->uplink.conn = NULL;
        p->uplink.watch = false;
        if (p->stopping)
                return;
        /* uplink_heartbeat gave the reason if the server fell silent */
        if (!p->uplink.silent && !p->uplink.moving)
                strlcpy(p->uplink.why, conn_strerror(error), sizeof p->uplink.why);
        if (p->uplink.state == LINK_UP) {
                p->uplink.lost_at = p->uplink.silent ? p->uplink.alive.last_heard : now_usec();
                p->uplink.tried = 0;
                p->uplink.changed = now_usec();
        }
        if (!p->uplink.switching && !p->uplink.moving) {
                p->uplink.tried++;      /* this server failed us */
                p->uplink.last_failed = p->uplink.srv;
        }
        p->uplink.leaderless_since = 0;
        presence_clear(&p->uplink.presence);
        p->uplink.silent = false;
        if (p->uplink.announced)
                log_event(EV_SERVER_DOWN, &(struct event_fields) { .peer = name, .lamport = p->ra.clock },
                          "lost the server %s: %s", name, p->uplink.why);
        else
                log_debug("cannot reach the server %s: %s", cur_server(p)->address, p->uplink.why);
        p->uplink.announced = false;
        p->uplink.state = LINK_DOWN;
        snprintf(msg, sizeof msg, "lost the connection to the server %s: %s", name, p->uplink.why);
        if (p->uplink.switching || p->uplink.moving)
                snprintf(msg, sizeof msg, "the server group's leader changed: try again");
        /* going over to the leader, or on from a server that knows none: followers stay */
        fanout_server_lost(p, msg, p->uplink.switching || p->uplink.moving);
        postq_server_lost(p);
        noteq_server_lost(p, msg);
        members_lost(p, name);
        p->uplink.leads = false;
        if (was_up && !p->uplink.switching)
                postq_tell_waiting(p);  /* the posts on their way wait for it now, and say so (once) */
        presence_changed(p);
        uint64_t d;
        if (!p->uplink.switching && !p->uplink.moving)
                *failed_at(p, p->uplink.srv) = now_usec();
        p->uplink.moving = false;
        if (p->uplink.switching) {
                d = 0;          /* to the leader the server named: at once (once) */
                p->uplink.switching = false;
        } else {
                /* in a group, the next server: any of them says who leads (after a leader our file
                 * does not list, the file's first) */
                if (p->uplink.srv >= p->conf->n_servers)
                        p->uplink.srv = 0;
                else if (p->conf->n_servers > 1)
                        p->uplink.srv = (p->uplink.srv + 1) % p->conf->n_servers;
                d = backoff_next(p->conf, &p->uplink.backoff);
        }
        (void) sd_event_source_set_time_relative(p->uplink.timer, d);
        (void) sd_event_source_set_enabled(p->uplink.timer, SD_EVENT_ONESHOT);
}

/*
 * Has the server been unreachable for dead_after_ms (like a dead peer)?
 * Then why says so, for a post's error.
 */
bool uplink_given_up(struct peer *p, char *why, size_t cap)
{
        uint64_t now = now_usec();
        const char *last = p->conf->servers[p->uplink.last_failed < p->conf->n_servers ? p->uplink.last_failed : 0].name;

        if (p->uplink.state == LINK_UP || !p->uplink.lost_at || now - p->uplink.lost_at < p->conf->dead_after_usec)
                return false;
        /* In a group, not before every server was tried: a silent leader is found dead
         * dead_after_ms after it was last heard, and the next server may well be up. */
        if (p->uplink.tried < p->conf->n_servers)
                return false;
        if (p->conf->n_servers == 1)
                snprintf(why, cap, "the server %s has been unreachable for %llu ms (%s); the post was not stored",
                         cur_server(p)->name, (unsigned long long) ((now - p->uplink.lost_at) / USEC_PER_MSEC),
                         p->uplink.why[0] ? p->uplink.why : "not connected yet");
        else
                snprintf(why, cap, "no server of the group has been reachable for %llu ms (each of the %u was "
                         "tried; the last, %s: %s); the post was not stored",
                         (unsigned long long) ((now - p->uplink.lost_at) / USEC_PER_MSEC), p->conf->n_servers,
                         last, p->uplink.why[0] ? p->uplink.why : "not connected yet");
        return true;
}

void uplink_waiting(const struct peer *p, char *buf, size_t cap)
{
        const char *name = cur_server(p)->name;

        if (!uplink_ready(p))
                snprintf(buf, cap, p->conf->n_servers > 1 ? "a server of the group (%s unreachable: %s)" :
                         "the server %s (unreachable: %s)", name, p->uplink.why[0] ? p->uplink.why : "connecting");
        else if (p->uplink.leads || p->conf->n_servers == 1)
                snprintf(buf, cap, "the server %s's answer", name);
        else if (p->uplink.leader[0])
                snprintf(buf, cap, "the server group's leader (%s names %s, whose link just failed)", name,
                         p->uplink.leader);
        else
                snprintf(buf, cap, "the server group to elect a leader (%s knows none just now)", name);
}

bool uplink_wait_reason(struct peer *p, char *why, size_t cap, uint32_t *wait_ms)
{
        uint64_t now = now_usec(), wait = p->conf->post_timeout_usec;
        const char *name = cur_server(p)->name;

        if (uplink_leads(p))
                return false;
        if (p->uplink.state != LINK_UP) {
                /* the queued posts fail once it has been unreachable for dead_after_ms (postq_heartbeat;
                 * in a group, and every server was tried: then no sooner than the post's own deadline) */
                uint64_t lost = p->uplink.lost_at ? p->uplink.lost_at : now, end = lost + p->conf->dead_after_usec;
                if (p->conf->n_servers == 1 && end > now && end - now < wait)
                        wait = end - now;
                const char *how = p->uplink.why[0] ? p->uplink.why : "not connected yet";
                if (p->conf->n_servers > 1)
                        snprintf(why, cap, "no server of the group is reachable (the last tried, %s: %s)", name, how);
                else
                        snprintf(why, cap, "the server %s is unreachable (%s)", name, how);
        } else if (p->uplink.leader[0] && strcmp(p->uplink.leader, name))
                snprintf(why, cap, "the server group's leader %s is not linked yet", p->uplink.leader);
        else
                snprintf(why, cap, "the server group has no leader just now (so says %s)", name);
        *wait_ms = (uint32_t) (wait / USEC_PER_MSEC);
        return true;
}

void uplink_presence_send(struct peer *p)
{
        if (p->uplink.state == LINK_UP)
                send_presence(p, p->uplink.conn);
}

/* WHO: the server we link to (or try to), as its link says. */
static void who_linked(struct peer *p, struct who_node *w, uint64_t now)
{
        *w = (struct who_node) { .name = cur_server(p)->name, .role = ROLE_SERVER };
        if (p->uplink.state == LINK_UP) {
                w->state = p->uplink.alive.state == FD_SUSPECT ? NODE_SUSPECT : NODE_UP;
                w->users = p->uplink.presence.known ? &p->uplink.presence : NULL;
                if (w->state == NODE_SUSPECT)
                        snprintf(w->note, sizeof w->note, "silent for %llu ms",
                                 (unsigned long long) (fd_link_silent(&p->uplink.alive, now) / USEC_PER_MSEC));
                else if (p->conf->n_servers > 1 || p->uplink.have_extra)
                        snprintf(w->note, sizeof w->note, "%s", p->uplink.leads ? "the group's leader"
                                 : p->uplink.leader[0] ? "a follower" : "the group has no leader");
        } else {
                w->state = NODE_DOWN;
                strlcpy(w->note, p->uplink.why[0] ? p->uplink.why : "not linked yet", sizeof w->note);
        }
        uint64_t since = p->uplink.changed;
        w->since = since && now > since ? (uint32_t) ((now - since) / USEC_PER_SEC) : 0;
}

unsigned uplink_who(struct peer *p, struct who_node *out, unsigned cap)
{
        uint64_t now = now_usec();
        unsigned n = 0;

        for (unsigned i = 0; i < p->conf->n_servers && n < cap; i++) {
                const struct node_conf *sv = &p->conf->servers[i];
                struct who_node *w = &out[n++];

                if (sv == cur_server(p)) {
                        who_linked(p, w, now);
                        continue;
                }
                /* a peer links to one server of a group at a time */
                *w = (struct who_node) { .name = sv->name, .role = ROLE_SERVER, .state = NODE_UNKNOWN };
                snprintf(w->note, sizeof w->note, "%snot linked from here (this peer links to %s)",
                         !strcmp(p->uplink.leader, sv->name) ? "the group's leader as last heard; " : "",
                         cur_server(p)->name);
        }
        /* a leader added to the group at runtime, not in our file: the one we link to */
        if (p->uplink.srv == p->conf->n_servers && p->uplink.have_extra && n < cap)
                who_linked(p, &out[n++], now);
        return n;
}

void uplink_heartbeat(struct peer *p, uint64_t now)
{
        const char *name = cur_server(p)->name;

        if (p->uplink.conn && p->uplink.watch &&
            fd_link_tick(&p->uplink.alive, now, p->conf->suspect_after_usec, p->conf->dead_after_usec)) {
                unsigned long long silent = fd_link_silent(&p->uplink.alive, now) / USEC_PER_MSEC;
                if (p->uplink.alive.state == FD_SUSPECT) {
                        log_info("the server %s has been silent for %llu ms", name, silent);
                        presence_changed(p);
                }
                else if (p->uplink.alive.state == FD_DEAD) {
                        snprintf(p->uplink.why, sizeof p->uplink.why, "silent for %llu ms", silent);
                        p->uplink.silent = true;
                        conn_close(p->uplink.conn, -ETIMEDOUT); /* server_closed says so */
                }
        }
        if (p->uplink.state == LINK_UP)
                (void) conn_send(p->uplink.conn, &(struct dchat_msg) { .type = MSG_HEARTBEAT,
                                                                       .heartbeat = { p->incarnation, p->ra.clock } });
        /*
         * A server that has known no leader for two election timeouts (a
         * group elects one within that) may be cut off from the others while
         * we reach it — a leader that lost its majority, a server on the
         * minority side — while the other servers have a leader: try the
         * next server, keeping the followers.  Each move without finding a
         * leader doubles the wait (up to 8 times), so that a group with no
         * majority at all is not circled fast.
         */
        if (p->uplink.state == LINK_UP && p->conf->n_servers > 1 && p->uplink.leaderless_since &&
            now - p->uplink.leaderless_since >= (2 * p->conf->election_timeout_usec << (p->uplink.moves < 3 ? p->uplink.moves : 3))) {
                log_info("the server %s has known no leader of the server group for %llu ms: trying the next "
                         "server", name, (unsigned long long) ((now - p->uplink.leaderless_since) / USEC_PER_MSEC));
                snprintf(p->uplink.why, sizeof p->uplink.why, "it knows no leader");
                p->uplink.moving = true;
                p->uplink.moves++;
                conn_close(p->uplink.conn, -ENOTCONN);  /* server_closed moves on */
        }
}

static const struct conn_ops server_ops = {
        .frame = server_frame,
        .connected = server_connected,
        .closed = server_closed,
};

static int on_server_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct peer *p = userdata;
        (void) s;
        (void) usec;
        if (p->uplink.state == LINK_CONNECTING && p->uplink.conn) {
                conn_close(p->uplink.conn, -ETIMEDOUT); /* re-arms the timer */
                return 0;
        }
        server_connect(p);
        return 0;
}

static void server_connect(struct peer *p)
{
        const struct node_conf *sv = cur_server(p);
        char label[96];

        snprintf(label, sizeof label, "server %s", sv->name);
        if (!p->uplink.lost_at)
                p->uplink.lost_at = now_usec();         /* (not reached yet since the start) */
        int r = conn_connect(p->event, (const struct sockaddr *) &sv->sa, sv->salen, &server_ops, p, label,
                             sv->name, &p->uplink.conn);
        if (r < 0) {
                strlcpy(p->uplink.why, strerror(-r), sizeof p->uplink.why);
                log_warning("cannot connect to the server at %s: %s", sv->address, strerror(-r));
                (void) sd_event_source_set_time_relative(p->uplink.timer,
                                                         backoff_next(p->conf, &p->uplink.backoff));
                (void) sd_event_source_set_enabled(p->uplink.timer, SD_EVENT_ONESHOT);
                return;
        }
        p->uplink.state = LINK_CONNECTING;
        (void) sd_event_source_set_time_relative(p->uplink.timer, p->conf->connect_timeout_usec);
        (void) sd_event_source_set_enabled(p->uplink.timer, SD_EVENT_ONESHOT);
}

/* --- life cycle ------------------------------------------------------------------------------ */

int uplink_start(struct peer *p)
{
        int r = sd_event_add_time(p->event, &p->uplink.timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_server_timer, p);
        if (r < 0)
                return r;
        server_connect(p);
        return 0;
}

void uplink_stop(struct peer *p)
{
        if (p->uplink.conn)
                conn_close(p->uplink.conn, -ESHUTDOWN);
        while (p->uplink.members) {
                struct member_relay *r = p->uplink.members;
                p->uplink.members = r->next;
                free(r);
        }
        p->uplink.timer = sd_event_source_disable_unref(p->uplink.timer);
}
