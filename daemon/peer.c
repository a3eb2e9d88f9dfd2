/* SPDX-License-Identifier: MIT */
/*
 * peer.c — the peer role's life cycle (peer_new, peer_free, peer_reconf,
 * peer_status) and the glue its parts share: the clock bounds, the cluster
 * definition sent on a mismatch, leaving as a later life, reconnect
 * backoff, and the heartbeat timer that drives the peer links, the server
 * link and the posts waiting for it.  The parts are mesh.c, uplink.c,
 * postq.c and fanout.c; peer.h is their map.
 */
#include <string.h>

#include "peer.h"


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
        ra_set_reuse(&p->ra, c->reuse_permissions);
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
        postq_stop(p);
        fanout_stop(p);
        mesh_stop(p);
        uplink_stop(p);
        sd_event_source_disable_unref(p->heartbeat_timer);
        wbuf_free(&p->cluster);
        free(p);
        return NULL;
}

void peer_reconf(struct peer *p, const struct dchat_conf *c)
{
        p->conf = c;
        ra_set_reuse(&p->ra, c->reuse_permissions);
        mesh_reconf(p);
        postq_reconf(p);
}

void peer_status(struct peer *p, struct dchat_status *st)
{
        st->lamport = p->ra.clock;
        st->counters = p->stats;
        strlcpy(st->dme_state, ra_state_name(p->ra.state), sizeof st->dme_state);
        st->request_ts = p->ra.state == RA_RELEASED ? 0 : p->ra.req_ts;
        st->queued = postq_pending(p);
        uplink_status(p, st);
        mesh_status(p, st);
}

void peer_client_gone(struct peer *p, struct conn *client)
{
        postq_client_gone(p, client);
        fanout_client_gone(p, client);
        uplink_client_gone(p, client);
}

int peer_member(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        return uplink_member(p, client, req);
}
