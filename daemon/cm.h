/* SPDX-License-Identifier: MIT */
/*
 * cm.h — the central coordinator of dme_algorithm = "central", as a pure
 * state machine (cm.c): the server, or a server group's leader, grants the
 * critical section to one peer at a time, in the order the requests came
 * (FIFO).  A request costs three messages: REQUEST, GRANT, RELEASE (LOCK
 * and GRANT frames on the server link).  The peer's side is struct ra
 * (ra.h: ra_request, ra_on_grant, ra_release, ra_coordinator_up).
 *
 * The coordinator keeps nothing on disk: a new one (a server started
 * again, a new leader) begins "settling", rebuilds its queue from what
 * every peer tells it once linked (its request, or that it holds the
 * section, or nothing), and grants once each has spoken or the caller
 * says the wait is over (cm_coord_open).  Its clock starts above the
 * log's last fence (cm_coord_reset), and every grant carries it, so the
 * fences of the entries it grants grow; a holder it lost track of, or
 * took the section from, is refused by the server's fence, not trusted.
 *
 * A holder whose link closes keeps its grant while it may come back
 * (cm_coord_gone), until the caller says it is dead (cm_coord_dead: its
 * link stayed down dead_after_ms, or it restarted); then the grant is
 * taken back (revoked) and the next one granted.  Requests of a peer whose
 * link closed are dropped: it asks again when it links.
 */
#pragma once

#include "ra.h"

struct cm_wait {
        unsigned peer;
        uint64_t ts;
};

struct cm_coord {
        unsigned n;                     /* peers */
        uint64_t clock;                 /* Lamport */
        struct vclock vc;               /* every request's and release's merged: what a grant passes on */
        int holder;                     /* the peer granted the section, -1: none */
        uint64_t holder_ts;
        bool holder_gone;               /* its link closed: it may still come back */
        struct cm_wait q[RA_PEERS_MAX]; /* waiting, in arrival order; one request per peer */
        unsigned qn;
        bool settling;                  /* a new coordinator: no grant until every peer spoke, or cm_coord_open */
        uint64_t spoke;                 /* bit i: peer i said where it stands since the reset */
        uint64_t revoked;               /* peers whose grant was taken back since the last grant */
        uint64_t grants, revocations;   /* since the start (status) */
};

enum cm_action_kind {
        CM_GOT_REQUEST,         /* peer's request ts taken in (queued or granted: the next action) */
        CM_QUEUED,              /* peer's request ts waits behind the holder */
        CM_GRANT,               /* send GRANT(ts, clock, revoked) to peer */
        CM_GOT_RELEASE,         /* peer gave back (or withdrew) request ts */
        CM_HELD,                /* peer says it holds the section under ts: taken as the holder */
        CM_CONFLICT,            /* peer says it holds the section under ts, but another does: not taken */
        CM_REVOKED,             /* peer's grant taken back (dead, restarted) */
        CM_OPEN,                /* settled: grants may go */
};

struct cm_action {
        enum cm_action_kind kind;
        unsigned peer;
        uint64_t ts;            /* the request concerned */
        uint64_t clock;         /* the coordinator's clock after the step */
        uint64_t revoked;       /* CM_GRANT: peers whose grant was taken back before it (bit i: peer i) */
};

#define CM_ACTIONS_MAX (RA_PEERS_MAX + 4)
struct cm_actions {
        unsigned n;
        struct cm_action a[CM_ACTIONS_MAX];
};

/*
 * The LOCK op (proto.h: LOCK_REQUEST, LOCK_HELD, LOCK_RELEASE) a peer's
 * action sends to the coordinator, or -1: the action sends none.  mesh.c
 * sends it; test-sim models the same mapping with it.
 */
int cm_lock_op(const struct ra_action *a);

void cm_coord_init(struct cm_coord *c, unsigned n);
/* A new coordinator (started, or become leader): empty, settling, its clock above floor (the last fence). */
void cm_coord_reset(struct cm_coord *c, uint64_t floor);
/* The settling is over (every peer spoke, or the caller waited long enough): grants go. */
void cm_coord_open(struct cm_coord *c, struct cm_actions *out);
/* A fence was stored (or seen): later grants carry a clock above it. */
void cm_coord_observe(struct cm_coord *c, uint64_t ts);
/*
 * LOCK from peer: a request ts (held false), or held: it holds the
 * section under ts (said again after a new link).  clock and vc (NULL:
 * none) are its own.
 */
void cm_coord_request(struct cm_coord *c, unsigned peer, uint64_t ts, uint64_t clock, bool held,
                      const struct vclock *vc, struct cm_actions *out);
/* LOCK RELEASE from peer: the section of request ts given back, or that request withdrawn (ts 0: nothing). */
void cm_coord_release(struct cm_coord *c, unsigned peer, uint64_t ts, uint64_t clock, const struct vclock *vc,
                      struct cm_actions *out);
/* peer's link closed: its queued request is dropped; a grant it holds waits for it (cm_coord_dead). */
void cm_coord_gone(struct cm_coord *c, unsigned peer, struct cm_actions *out);
/* peer is dead or restarted: its grant, if any, is taken back and the next one granted. */
void cm_coord_dead(struct cm_coord *c, unsigned peer, struct cm_actions *out);
