/* SPDX-License-Identifier: MIT */
/*
 * cm.c — the central algorithm: the peer's side (in struct ra: ask the
 * coordinator, enter on its GRANT, give the section back) and the
 * coordinator's (struct cm_coord, cm.h).  Pure: no I/O, no time.
 */
#include <string.h>

#include "cm.h"
#include "proto.h"
#include "ra-impl.h"

#define BIT(i) RA_BIT(i)

/* --- the peer's side ------------------------------------------------------------------------ */

int cm_request(struct ra *ra, struct ra_actions *out)
{
        ra_tick(ra);
        ra->req_ts = ra->clock;
        ra->state = RA_WANTED;
        ra->awaiting = 0;
        ra->asked = 0;
        ra_emit(ra, out, RA_SEND_REQUEST, RA_COORDINATOR, ra->req_ts);
        return 0;
}

void ra_on_grant(struct ra *ra, uint64_t ts, uint64_t clock, const struct vclock *vc, struct ra_actions *out)
{
        out->n = 0;
        if (ra->algo != DME_CENTRAL)
                return;
        ra_clock_recv(ra, clock);
        if (vc)
                vclock_merge(&ra->vc, vc);
        ra_emit(ra, out, RA_GOT_REPLY, RA_COORDINATOR, ts);
        if (ra->state == RA_WANTED && ts == ra->req_ts) {
                ra_enter(ra, out);
                return;
        }
        /* A grant nobody waits for (a request withdrawn, its release lost with a link): the
         * coordinator takes us for the holder, so give it back, or everyone waits. */
        if (ra->state == RA_RELEASED || ts != ra->req_ts)
                ra_emit(ra, out, RA_SEND_RELEASE, RA_COORDINATOR, ts);
}

void cm_release(struct ra *ra, struct ra_actions *out)
{
        ra_emit(ra, out, ra->state == RA_HELD ? RA_EXIT : RA_WITHDRAW, ra->self, ra->req_ts);
        ra->state = RA_RELEASED;
        ra_tick(ra);
        ra_emit(ra, out, RA_SEND_RELEASE, RA_COORDINATOR, ra->req_ts);
}

void ra_coordinator_up(struct ra *ra, struct ra_actions *out)
{
        out->n = 0;
        if (ra->algo != DME_CENTRAL)
                return;
        switch (ra->state) {
        case RA_WANTED:
                ra_emit(ra, out, RA_SEND_REQUEST, RA_COORDINATOR, ra->req_ts);
                break;
        case RA_HELD:
                ra_emit(ra, out, RA_SEND_REQUEST, RA_COORDINATOR, ra->req_ts)->sn = 1;
                break;
        case RA_RELEASED:
                /* nothing wanted, nothing held: said all the same (a release of nothing), so that a
                 * new coordinator knows where we stand, and a release lost with the link arrives */
                ra_emit(ra, out, RA_SEND_RELEASE, RA_COORDINATOR, ra->req_ts);
                break;
        }
}

/* --- the coordinator ------------------------------------------------------------------------- */

static void cm_emit(struct cm_coord *c, struct cm_actions *out, enum cm_action_kind kind, unsigned peer, uint64_t ts)
{
        if (out->n < CM_ACTIONS_MAX)
                out->a[out->n++] = (struct cm_action) { kind, peer, ts, c->clock, 0 };
}

static void cm_tick(struct cm_coord *c)
{
        if (c->clock < DCHAT_CLOCK_MAX)
                c->clock++;
}

static void cm_recv(struct cm_coord *c, uint64_t clock, const struct vclock *vc)
{
        if (clock > c->clock && clock <= DCHAT_CLOCK_MAX)
                c->clock = clock;
        cm_tick(c);
        if (vc)
                vclock_merge(&c->vc, vc);
}

int cm_lock_op(const struct ra_action *a)
{
        switch (a->kind) {
        case RA_SEND_REQUEST:
                return a->sn == 1 ? LOCK_HELD : LOCK_REQUEST;   /* sn 1: held (ra_coordinator_up) */
        case RA_SEND_RELEASE:
                return LOCK_RELEASE;
        default:
                return -1;
        }
}

void cm_coord_init(struct cm_coord *c, unsigned n)
{
        *c = (struct cm_coord) { .n = n < RA_PEERS_MAX ? n : RA_PEERS_MAX, .holder = -1 };
        vclock_init(&c->vc, c->n);
}

void cm_coord_reset(struct cm_coord *c, uint64_t floor)
{
        uint64_t grants = c->grants, revocations = c->revocations;

        cm_coord_init(c, c->n);
        c->clock = floor <= DCHAT_CLOCK_MAX ? floor : DCHAT_CLOCK_MAX;
        c->settling = c->n > 0;
        c->grants = grants;
        c->revocations = revocations;
}

void cm_coord_observe(struct cm_coord *c, uint64_t ts)
{
        if (ts > c->clock && ts <= DCHAT_CLOCK_MAX)
                c->clock = ts;
}

static int q_find(const struct cm_coord *c, unsigned peer)
{
        for (unsigned i = 0; i < c->qn; i++)
                if (c->q[i].peer == peer)
                        return (int) i;
        return -1;
}

static void q_remove(struct cm_coord *c, unsigned i)
{
        memmove(&c->q[i], &c->q[i + 1], (c->qn - i - 1) * sizeof c->q[0]);
        c->qn--;
}

/* Nobody holds the section: the first in line gets it. */
static void grant_next(struct cm_coord *c, struct cm_actions *out)
{
        if (c->settling || c->holder >= 0 || c->qn == 0)
                return;
        struct cm_wait w = c->q[0];
        q_remove(c, 0);
        c->holder = (int) w.peer;
        c->holder_ts = w.ts;
        c->holder_gone = false;
        cm_tick(c);
        c->grants++;
        cm_emit(c, out, CM_GRANT, w.peer, w.ts);
        out->a[out->n - 1].revoked = c->revoked;
        c->revoked = 0;
}

static void open_grants(struct cm_coord *c, struct cm_actions *out)
{
        if (!c->settling)
                return;
        c->settling = false;
        cm_emit(c, out, CM_OPEN, 0, 0);
        grant_next(c, out);
}

static void spoke(struct cm_coord *c, unsigned peer, struct cm_actions *out)
{
        uint64_t all = c->n >= 64 ? ~UINT64_C(0) : BIT(c->n) - 1;

        c->spoke |= BIT(peer);
        if (c->settling && (c->spoke & all) == all)
                open_grants(c, out);
}

void cm_coord_open(struct cm_coord *c, struct cm_actions *out)
{
        out->n = 0;
        open_grants(c, out);
}

void cm_coord_request(struct cm_coord *c, unsigned peer, uint64_t ts, uint64_t clock, bool held,
                      const struct vclock *vc, struct cm_actions *out)
{
        out->n = 0;
        if (peer >= c->n)
                return;
        cm_recv(c, clock, vc);
        if (held) {
                if (c->holder == (int) peer && c->holder_ts == ts) {
                        c->holder_gone = false;         /* back in time */
                } else if (c->holder < 0) {
                        /* a new coordinator learns who holds the section */
                        int k = q_find(c, peer);
                        if (k >= 0)
                                q_remove(c, (unsigned) k);
                        c->holder = (int) peer;
                        c->holder_ts = ts;
                        c->holder_gone = false;
                        cm_emit(c, out, CM_HELD, peer, ts);
                } else {
                        /* another holds it (granted while this one's word was not in): the server's
                         * fence decides between their appends */
                        cm_emit(c, out, CM_CONFLICT, peer, ts);
                }
                spoke(c, peer, out);
                return;
        }
        cm_emit(c, out, CM_GOT_REQUEST, peer, ts);
        if (c->holder == (int) peer && c->holder_ts == ts) {
                /* it asks again for what it was granted: the grant was lost with a link */
                c->holder_gone = false;
                cm_tick(c);
                cm_emit(c, out, CM_GRANT, peer, ts);
                spoke(c, peer, out);
                return;
        }
        if (c->holder == (int) peer) {
                /* a new request of the holder: the old section is over (its release was lost) */
                c->holder = -1;
        }
        int k = q_find(c, peer);
        if (k >= 0 && c->q[k].ts == ts) {
                spoke(c, peer, out);
                return;                         /* a repeat keeps its place */
        }
        if (k >= 0)
                q_remove(c, (unsigned) k);      /* a newer request replaces one withdrawn */
        c->q[c->qn++] = (struct cm_wait) { peer, ts };
        if (c->holder >= 0 || c->settling || c->qn > 1)
                cm_emit(c, out, CM_QUEUED, peer, ts);
        spoke(c, peer, out);
        grant_next(c, out);
}

void cm_coord_release(struct cm_coord *c, unsigned peer, uint64_t ts, uint64_t clock, const struct vclock *vc,
                      struct cm_actions *out)
{
        out->n = 0;
        if (peer >= c->n)
                return;
        cm_recv(c, clock, vc);
        if (c->holder == (int) peer && c->holder_ts == ts) {
                c->holder = -1;
                cm_emit(c, out, CM_GOT_RELEASE, peer, ts);
        } else {
                int k = q_find(c, peer);
                if (k >= 0 && c->q[k].ts == ts) {
                        q_remove(c, (unsigned) k);
                        cm_emit(c, out, CM_GOT_RELEASE, peer, ts);
                }
        }
        spoke(c, peer, out);
        grant_next(c, out);
}

void cm_coord_gone(struct cm_coord *c, unsigned peer, struct cm_actions *out)
{
        out->n = 0;
        if (peer >= c->n)
                return;
        int k = q_find(c, peer);
        if (k >= 0)
                q_remove(c, (unsigned) k);
        if (c->holder == (int) peer)
                c->holder_gone = true;
        c->spoke &= ~BIT(peer);
}

void cm_coord_dead(struct cm_coord *c, unsigned peer, struct cm_actions *out)
{
        out->n = 0;
        if (peer >= c->n)
                return;
        int k = q_find(c, peer);
        if (k >= 0)
                q_remove(c, (unsigned) k);
        if (c->holder == (int) peer) {
                c->holder = -1;
                c->revoked |= BIT(peer);
                c->revocations++;
                cm_emit(c, out, CM_REVOKED, peer, c->holder_ts);
        }
        /* a dead peer says nothing: the settling waits for it no longer */
        spoke(c, peer, out);
        grant_next(c, out);
}
