/* SPDX-License-Identifier: MIT */
/*
 * ra.c — Ricart–Agrawala (1981) with Lamport clocks, and what every DME
 * machine of ra.h shares: the clock, the entry, the calls that dispatch to
 * the algorithm that runs (cm.c, tk.c).  Pure: no I/O, no time, no
 * allocation; every step reports what the caller must do.
 */
#include <errno.h>
#include <string.h>

#include "ra-impl.h"

#define BIT(i) RA_BIT(i)

static const char *const algo_names[_DME_MAX] = {
        [DME_RICART_AGRAWALA] = "ricart-agrawala",
        [DME_CENTRAL] = "central",
        [DME_TOKEN] = "token",
};

const char *dme_algo_name(enum dme_algo a)
{
        return (unsigned) a < _DME_MAX ? algo_names[a] : "?";
}

int dme_algo_parse(const char *s, enum dme_algo *a)
{
        for (unsigned i = 0; i < _DME_MAX; i++)
                if (!strcmp(s, algo_names[i])) {
                        *a = (enum dme_algo) i;
                        return 0;
                }
        return -EINVAL;
}

/* Every action is an event of this node: it counts in the own vector-clock component. */
struct ra_action *ra_emit(struct ra *ra, struct ra_actions *out, enum ra_action_kind kind, unsigned peer,
                          uint64_t ts)
{
        uint64_t vt = vclock_tick(&ra->vc, ra->self);

        if (out->n >= RA_ACTIONS_MAX)
                return &out->a[RA_ACTIONS_MAX - 1];     /* cannot happen (RA_ACTIONS_MAX); never write past */
        out->a[out->n] = (struct ra_action) { kind, peer, ts, ra->clock, vt, 0 };
        return &out->a[out->n++];
}

static void emit(struct ra *ra, struct ra_actions *out, enum ra_action_kind kind, unsigned peer, uint64_t ts)
{
        (void) ra_emit(ra, out, kind, peer, ts);
}

/* A local step.  The clock saturates instead of wrapping to 0 (the callers
 * bound what they take in, proto.h: this is the last line of defence). */
void ra_tick(struct ra *ra)
{
        if (ra->clock < UINT64_MAX)
                ra->clock++;
}

static void tick(struct ra *ra)
{
        ra_tick(ra);
}

/* Lamport: a receive moves the clock past the sender's. */
void ra_clock_recv(struct ra *ra, uint64_t t)
{
        if (t > ra->clock)
                ra->clock = t;
        tick(ra);
}

static void clock_recv(struct ra *ra, uint64_t t)
{
        ra_clock_recv(ra, t);
}

void ra_init(struct ra *ra, unsigned n, unsigned self, const char *const *names)
{
        *ra = (struct ra) { .algo = DME_RICART_AGRAWALA, .n = n, .self = self, .names = names,
                            .state = RA_RELEASED };
        vclock_init(&ra->vc, n);
        vclock_init(&ra->enter_vc, n);
}

void ra_set_algo(struct ra *ra, enum dme_algo algo)
{
        ra->algo = algo < _DME_MAX ? algo : DME_RICART_AGRAWALA;
        if (ra->algo == DME_TOKEN)
                tk_init(ra);
}

void ra_set_vclock_base(struct ra *ra, uint64_t base)
{
        if (ra->self < ra->vc.n && base <= DCHAT_CLOCK_MAX && base > ra->vc.c[ra->self])
                ra->vc.c[ra->self] = base;
}

uint64_t ra_local_event(struct ra *ra)
{
        return vclock_tick(&ra->vc, ra->self);
}

void ra_action_vclock(const struct ra *ra, const struct ra_action *a, struct vclock *out)
{
        *out = ra->vc;
        if (ra->self < out->n)
                out->c[ra->self] = a->vt;
}

bool ra_precedes(const struct ra *ra, uint64_t ts_a, unsigned a, uint64_t ts_b, unsigned b)
{
        if (ts_a != ts_b)
                return ts_a < ts_b;
        return strcmp(ra->names[a], ra->names[b]) < 0;
}

uint64_t ra_others(const struct ra *ra)
{
        uint64_t all = ra->n >= 64 ? ~UINT64_C(0) : BIT(ra->n) - 1;
        return all & ~BIT(ra->self);
}

static uint64_t others(const struct ra *ra)
{
        return ra_others(ra);
}

void ra_enter(struct ra *ra, struct ra_actions *out)
{
        ra->state = RA_HELD;
        ra->enter_ts = ra->clock;
        emit(ra, out, RA_ENTER, ra->self, ra->req_ts);
        ra->enter_vc = ra->vc;
}

static void maybe_enter(struct ra *ra, struct ra_actions *out)
{
        if (ra->state == RA_WANTED && ra->awaiting == 0) {
                if (ra->asked == 0)
                        ra->free_entries++;
                ra_enter(ra, out);
        }
}

void ra_set_reuse(struct ra *ra, bool on)
{
        ra->reuse = on;
}

int ra_request(struct ra *ra, struct ra_actions *out)
{
        out->n = 0;
        if (ra->state != RA_RELEASED)
                return -1;
        if (ra->algo == DME_CENTRAL)
                return cm_request(ra, out);
        if (ra->algo == DME_TOKEN)
                return tk_request(ra, out);
        tick(ra);
        ra->req_ts = ra->clock;
        ra->state = RA_WANTED;
        ra->awaiting = others(ra) & ~ra->down;
        if (ra->reuse)
                ra->awaiting &= ~ra->held;
        ra->asked = ra->awaiting;
        for (unsigned i = 0; i < ra->n; i++)
                if (ra->awaiting & BIT(i))
                        emit(ra, out, RA_SEND_REQUEST, i, ra->req_ts);
        maybe_enter(ra, out);
        return 0;
}

void ra_on_request(struct ra *ra, unsigned peer, uint64_t ts, const struct vclock *vc, struct ra_actions *out)
{
        out->n = 0;
        if (peer >= ra->n || peer == ra->self || ra->algo != DME_RICART_AGRAWALA)
                return;
        clock_recv(ra, ts);
        if (vc)
                vclock_merge(&ra->vc, vc);
        emit(ra, out, RA_GOT_REQUEST, peer, ts);

        bool defer = ra->state == RA_HELD ||
                     (ra->state == RA_WANTED && ra_precedes(ra, ra->req_ts, ra->self, ts, peer));
        if (defer) {
                /* A repeat of a request we already hold keeps its place. */
                ra->deferred |= BIT(peer);
                ra->deferred_ts[peer] = ts;
                emit(ra, out, RA_DEFER, peer, ts);
                return;
        }
        tick(ra);
        emit(ra, out, RA_SEND_REPLY, peer, ts);
        ra->held &= ~BIT(peer);
        /* Roucairol–Carvalho: we wanted on its permission, just given back
         * to an older request: ask for it again. */
        if (ra->reuse && ra->state == RA_WANTED && !(ra->awaiting & BIT(peer)) && !(ra->down & BIT(peer))) {
                ra->awaiting |= BIT(peer);
                ra->asked |= BIT(peer);
                emit(ra, out, RA_SEND_REQUEST, peer, ra->req_ts);
        }
}

void ra_on_reply(struct ra *ra, unsigned peer, uint64_t clock, uint64_t req_ts, const struct vclock *vc,
                 struct ra_actions *out)
{
        out->n = 0;
        if (peer >= ra->n || peer == ra->self || ra->algo != DME_RICART_AGRAWALA)
                return;
        clock_recv(ra, clock);
        if (vc)
                vclock_merge(&ra->vc, vc);
        emit(ra, out, RA_GOT_REPLY, peer, req_ts);
        /* A reply to a request we gave up, or a repeat, grants nothing. */
        if (ra->state != RA_WANTED || req_ts != ra->req_ts || !(ra->awaiting & BIT(peer)))
                return;
        ra->awaiting &= ~BIT(peer);
        ra->held |= BIT(peer);
        maybe_enter(ra, out);
}

void ra_release(struct ra *ra, struct ra_actions *out)
{
        out->n = 0;
        if (ra->state == RA_RELEASED)
                return;
        if (ra->algo == DME_CENTRAL) {
                cm_release(ra, out);
                return;
        }
        if (ra->algo == DME_TOKEN) {
                tk_release(ra, out);
                return;
        }
        emit(ra, out, ra->state == RA_HELD ? RA_EXIT : RA_WITHDRAW, ra->self, ra->req_ts);
        ra->state = RA_RELEASED;
        ra->awaiting = 0;
        for (unsigned i = 0; i < ra->n; i++) {
                if (!(ra->deferred & BIT(i)))
                        continue;
                tick(ra);
                emit(ra, out, RA_SEND_REPLY, i, ra->deferred_ts[i]);
        }
        ra->held &= ~ra->deferred;
        ra->deferred = 0;
}

void ra_peer_down(struct ra *ra, unsigned peer, struct ra_actions *out)
{
        out->n = 0;
        if (peer >= ra->n || peer == ra->self)
                return;
        if (ra->algo == DME_CENTRAL) {
                ra->down |= BIT(peer);          /* the coordinator decides; noted for status */
                return;
        }
        if (ra->algo == DME_TOKEN) {
                tk_peer_down(ra, peer, out);
                return;
        }
        ra->down |= BIT(peer);
        ra->deferred &= ~BIT(peer);
        ra->held &= ~BIT(peer);
        ra->awaiting &= ~BIT(peer);
        maybe_enter(ra, out);
}

void ra_peer_up(struct ra *ra, unsigned peer, bool restarted, struct ra_actions *out)
{
        out->n = 0;
        if (peer >= ra->n || peer == ra->self)
                return;
        if (!(ra->down & BIT(peer)) && !restarted)
                return;
        if (ra->algo == DME_CENTRAL) {
                ra->down &= ~BIT(peer);
                return;
        }
        if (ra->algo == DME_TOKEN) {
                tk_peer_up(ra, peer, restarted, out);
                return;
        }
        ra->down &= ~BIT(peer);
        /* a restarted peer forgot our request and its own old one is void;
         * what it granted before is forgotten on both sides */
        ra->deferred &= ~BIT(peer);
        ra->held &= ~BIT(peer);
        if (ra->state == RA_WANTED) {
                ra->awaiting |= BIT(peer);
                ra->asked |= BIT(peer);
                emit(ra, out, RA_SEND_REQUEST, peer, ra->req_ts);
        }
}

void ra_observe(struct ra *ra, uint64_t ts)
{
        if (ts >= ra->clock)
                clock_recv(ra, ts);
}

void ra_link_up(struct ra *ra, unsigned peer, bool known_life, struct ra_actions *out)
{
        out->n = 0;
        if (peer >= ra->n || peer == ra->self)
                return;
        if (ra->algo == DME_TOKEN) {
                tk_link_up(ra, peer, known_life, out);
                return;
        }
        if (ra->algo != DME_RICART_AGRAWALA)
                return;
        if (ra->state == RA_WANTED && (ra->awaiting & BIT(peer)))
                emit(ra, out, RA_SEND_REQUEST, peer, ra->req_ts);
}

const char *ra_state_name(enum ra_state s)
{
        switch (s) {
        case RA_RELEASED:
                return "released";
        case RA_WANTED:
                return "wanted";
        case RA_HELD:
                return "held";
        }
        return "?";
}
