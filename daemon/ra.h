/* SPDX-License-Identifier: MIT */
/*
 * ra.h — Ricart–Agrawala distributed mutual exclusion with Lamport clocks,
 * as a pure state machine: events go in, actions come out, no I/O, no time.
 *
 * Peers are numbered 0..n-1 (the order of the config's peers list); ties
 * between equal timestamps are broken by node name, so every peer orders
 * any two requests the same way.
 *
 * Roucairol–Carvalho (ra_set_reuse): a REPLY from peer j is a permission
 * that stays with us until we send j a REPLY in turn.  A request then asks
 * only the peers whose permission we do not hold; holding them all, we enter
 * with no message at all.  When a request that precedes ours arrives while
 * we want the section on a permission we hold, we reply (giving it back)
 * and ask for it again.  Permissions of a peer declared dead or restarted
 * are forgotten.  Because a peer may now enter while an earlier request of
 * another is still on its way, entries no longer come in request order;
 * they come in the order of enter_ts, the clock at entry, which is
 * therefore the fence of the posts written in the entry.  Fairness: once a
 * peer has received a request, it enters at most once more before the
 * requester does.
 *
 * Vector clocks (vclock.h) ride along: every action is an event of this
 * node and counts in its own component (a receive merges the sender's
 * clock first), and ra_local_event counts the caller's own events (a post
 * stored).  They decide nothing; they let a trace show the causal order.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "vclock.h"

#define RA_PEERS_MAX 64

enum ra_state {
        RA_RELEASED,
        RA_WANTED,
        RA_HELD,
};

enum ra_action_kind {
        RA_GOT_REQUEST,         /* note: REQUEST(ts) from peer taken in */
        RA_GOT_REPLY,           /* note: REPLY for request ts from peer taken in */
        RA_SEND_REQUEST,        /* send REQUEST(ts) to peer */
        RA_SEND_REPLY,          /* send REPLY(clock, ts answered) to peer */
        RA_DEFER,               /* peer's request (ts) deferred: reply owed */
        RA_ENTER,               /* all replies in: enter the critical section */
        RA_EXIT,                /* note: left the critical section of request ts (ra_release) */
        RA_WITHDRAW,            /* note: request ts given up before it was granted (ra_release) */
};

struct ra_action {
        enum ra_action_kind kind;
        unsigned peer;          /* SEND_*, DEFER; self for ENTER */
        uint64_t ts;            /* request timestamp concerned */
        uint64_t clock;         /* Lamport clock after this step */
        uint64_t vt;            /* own vector-clock component after this step (the others: ra->vc) */
};

/*
 * One call produces at most one action per peer, a note and an ENTER.
 * Within one call the vector clock's other components do not change after
 * the first action (a receive merges before it), so an action's whole
 * clock is ra->vc with the own component set to its vt (ra_action_vclock).
 */
#define RA_ACTIONS_MAX (RA_PEERS_MAX + 2)

struct ra_actions {
        unsigned n;
        struct ra_action a[RA_ACTIONS_MAX];
};

struct ra {
        unsigned n;             /* peers, self included */
        unsigned self;
        const char *const *names;       /* n node names, for tie breaks */
        uint64_t clock;
        enum ra_state state;
        uint64_t req_ts;        /* our request, while WANTED or HELD */
        uint64_t awaiting;      /* bit i: reply from peer i still needed */
        uint64_t deferred;      /* bit i: we owe peer i a reply */
        uint64_t down;          /* bit i: peer i is dead; nobody waits for it */
        uint64_t deferred_ts[RA_PEERS_MAX];     /* ... for its request ts */
        bool reuse;             /* Roucairol–Carvalho: keep permissions */
        uint64_t held;          /* bit i: we hold peer i's permission (its REPLY, not given back) */
        uint64_t asked;         /* bit i: REQUEST(req_ts) was sent to peer i */
        uint64_t enter_ts;      /* clock at the last ENTER: the fence of its posts */
        struct vclock vc;       /* the vector clock, after the last step */
        struct vclock enter_vc; /* ... at the last ENTER: the clock of its posts */
};

/* names must outlive ra; n <= RA_PEERS_MAX, self < n. */
void ra_init(struct ra *ra, unsigned n, unsigned self, const char *const *names);

/*
 * Where this node's own vector-clock component starts (0 after ra_init):
 * above anything an earlier life of it reached, so its clocks keep growing
 * across restarts (peer.c keeps a reservation of it in the state directory).
 */
void ra_set_vclock_base(struct ra *ra, uint64_t base);

/* An event of the caller's own (a post stored): the own component + 1, returned. */
uint64_t ra_local_event(struct ra *ra);

/* The whole vector clock of action a of the last call (see RA_ACTIONS_MAX). */
void ra_action_vclock(const struct ra *ra, const struct ra_action *a, struct vclock *out);

/* Roucairol–Carvalho's reuse of permissions on or off (off after ra_init). */
void ra_set_reuse(struct ra *ra, bool on);

/*
 * We want the critical section: REQUEST to all others whose permission we
 * need (or ENTER at once if none).
 */
int ra_request(struct ra *ra, struct ra_actions *out);

/* A REQUEST(ts) from peer, with its vector clock (NULL: none). */
void ra_on_request(struct ra *ra, unsigned peer, uint64_t ts, const struct vclock *vc, struct ra_actions *out);

/* A REPLY from peer, carrying its clock, the request ts it answers and its vector clock (NULL: none). */
void ra_on_reply(struct ra *ra, unsigned peer, uint64_t clock, uint64_t req_ts, const struct vclock *vc,
                 struct ra_actions *out);

/*
 * Leave the critical section (EXIT), or give up a request not yet granted
 * (WITHDRAW: a timed-out post): either way the deferred replies go out.
 */
void ra_release(struct ra *ra, struct ra_actions *out);

/*
 * The link to peer came (back) up.  Messages in flight may have been lost
 * with the old link, so a pending request is sent again; the receiver
 * treats a repeated request idempotently and a reply names the request it
 * answers, so duplicates are harmless.
 */
void ra_link_up(struct ra *ra, unsigned peer, struct ra_actions *out);

/*
 * Move the clock past ts, as for a receive, without any other step: how a
 * (re)started peer learns the last timestamp in the log, so that its next
 * request is fenced above everything stored.
 */
void ra_observe(struct ra *ra, uint64_t ts);

/*
 * The failure detector declared peer dead: no reply is awaited from it any
 * more (which may let us enter), the request it left with us is dropped and
 * its permission, if we held it, forgotten.
 */
void ra_peer_down(struct ra *ra, unsigned peer, struct ra_actions *out);

/*
 * Peer is alive again (back from the dead, or restarted: restarted says its
 * old request is void, and it forgot what it granted).  It takes part from
 * now on: a request of ours still pending is sent to it and waits for its
 * reply too; a permission of it we held is forgotten.
 */
void ra_peer_up(struct ra *ra, unsigned peer, bool restarted, struct ra_actions *out);

/* a < b in the total order of requests: (ts, node name) */
bool ra_precedes(const struct ra *ra, uint64_t ts_a, unsigned a, uint64_t ts_b, unsigned b);

const char *ra_state_name(enum ra_state s);
