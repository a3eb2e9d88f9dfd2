/* SPDX-License-Identifier: MIT */
/*
 * ra.h — Ricart–Agrawala distributed mutual exclusion with Lamport clocks,
 * as a pure state machine: events go in, actions come out, no I/O, no time.
 *
 * Peers are numbered 0..n-1 (the order of the config's peers list); ties
 * between equal timestamps are broken by node name, so every peer orders
 * any two requests the same way.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

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
};

struct ra_action {
        enum ra_action_kind kind;
        unsigned peer;          /* SEND_*, DEFER; self for ENTER */
        uint64_t ts;            /* request timestamp concerned */
        uint64_t clock;         /* Lamport clock after this step */
};

/* One call produces at most one action per peer, a note and an ENTER. */
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
};

/* names must outlive ra; n <= RA_PEERS_MAX, self < n. */
void ra_init(struct ra *ra, unsigned n, unsigned self, const char *const *names);

/* We want the critical section: REQUEST to all others (or ENTER at once if alone). */
int ra_request(struct ra *ra, struct ra_actions *out);

/* A REQUEST(ts) from peer. */
void ra_on_request(struct ra *ra, unsigned peer, uint64_t ts, struct ra_actions *out);

/* A REPLY from peer, carrying its clock and the request ts it answers. */
void ra_on_reply(struct ra *ra, unsigned peer, uint64_t clock, uint64_t req_ts,
                 struct ra_actions *out);

/*
 * Leave the critical section, or give up a request not yet granted (a
 * timed-out post): either way the deferred replies go out.
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
 * more (which may let us enter), and the request it left with us is dropped.
 */
void ra_peer_down(struct ra *ra, unsigned peer, struct ra_actions *out);

/*
 * Peer is alive again (back from the dead, or restarted: restarted says its
 * old request is void).  It takes part from now on: a request of ours still
 * pending is sent to it and waits for its reply too.
 */
void ra_peer_up(struct ra *ra, unsigned peer, bool restarted, struct ra_actions *out);

/* a < b in the total order of requests: (ts, node name) */
bool ra_precedes(const struct ra *ra, uint64_t ts_a, unsigned a, uint64_t ts_b, unsigned b);

const char *ra_state_name(enum ra_state s);
