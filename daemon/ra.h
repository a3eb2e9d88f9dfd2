/* SPDX-License-Identifier: MIT */
/*
 * ra.h — a peer's distributed mutual exclusion (DME) machine: Ricart–
 * Agrawala with Lamport clocks (ra.c), or, by dme_algorithm, a central
 * coordinator (cm.c) or Suzuki–Kasami's broadcast token (tk.c).  Pure:
 * events go in, actions come out, no I/O, no time.  struct ra holds what
 * the three share (the clock, the state, our request, the entry and its
 * fence, the vector clock) and each algorithm's own part; the ra_*
 * functions below serve all three, and the caller (mesh.c, postq.c)
 * carries out the actions whichever runs.
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

/* The algorithm (dchat.conf(5), dme_algorithm); every peer of a cluster runs the same. */
enum dme_algo {
        DME_RICART_AGRAWALA = 0,
        DME_CENTRAL = 1,        /* the server (a group's leader) grants the section in request order: cm.c */
        DME_TOKEN = 2,          /* Suzuki–Kasami: whoever holds the one token may enter: tk.c */
        _DME_MAX,
};
/* "ricart-agrawala", "central", "token" */
const char *dme_algo_name(enum dme_algo a);
/* The algorithm named s: 0, or -EINVAL. */
int dme_algo_parse(const char *s, enum dme_algo *a);

/* central: an action's peer when it goes to (or came from) the coordinator, the server */
#define RA_COORDINATOR RA_PEERS_MAX

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
        /* central and token */
        RA_QUEUED,              /* token: peer's request (ts) queued behind the section held here */
        RA_SEND_TOKEN,          /* token: send the token (ra->tk.out) to peer, for its request ts */
        RA_SEND_RELEASE,        /* central: RELEASE(ts) to the coordinator (a grant given back, or a request withdrawn) */
        RA_SEND_PROBE,          /* token: a regeneration round's question to peer (ra->tk.probe) */
        RA_SEND_ANSWER,         /* token: the answer to peer's question (ra->tk.ans[peer]) */
        RA_SEND_END,            /* token: the end of our round sn to peer (ra->tk.end); sn 0: news that
                                 * a token of generation ts exists (END, round 0, made) */
        RA_REGENERATED,         /* note: a lost token made anew (ts: its generation) */
        RA_DROPPED,             /* note: a token from peer dropped (ts: its generation): an old one, or a copy */
};

struct ra_action {
        enum ra_action_kind kind;
        unsigned peer;          /* SEND_*, DEFER; self for ENTER; RA_COORDINATOR: the server (central) */
        uint64_t ts;            /* request timestamp concerned */
        uint64_t clock;         /* Lamport clock after this step */
        uint64_t vt;            /* own vector-clock component after this step (the others: ra->vc) */
        uint64_t sn;            /* token: SEND_REQUEST's request number; central: SEND_REQUEST 1 = "we hold it" */
};

/*
 * One call produces at most two actions per peer (the token: a request and
 * a regeneration round's question), a few notes and an ENTER.  Within one
 * call the vector clock's other components do not change after the first
 * action (a receive merges before it), so an action's whole clock is
 * ra->vc with the own component set to its vt (ra_action_vclock).
 */
#define RA_ACTIONS_MAX (2 * RA_PEERS_MAX + 6)

struct ra_actions {
        unsigned n;
        struct ra_action a[RA_ACTIONS_MAX];
};

/*
 * The token (tk.c), as it travels.  Its generation orders tokens: one made
 * anew after a loss has a higher one, and a token of a lower generation
 * than one known to exist is dropped, so two never live on.
 */
struct tk_token {
        uint64_t gen;                   /* (counter << 6) | the peer that made it */
        uint64_t hop;                   /* transfers so far: a copy of an earlier one is dropped */
        uint64_t ln[RA_PEERS_MAX];      /* each peer's last request (its number) the token served */
        uint8_t q[RA_PEERS_MAX];        /* the peers it goes to next, in turn */
        unsigned qn;
};

/* A regeneration round's messages (TOKEN_PROBE on the wire). */
enum tk_probe_kind { TK_ASK = 0, TK_ANSWER = 1, TK_END = 2 };
struct tk_probe {
        uint8_t kind;
        uint64_t round;                 /* the asker's round */
        uint64_t gen;                   /* ASK, END: the token to make; ANSWER: the highest known or promised */
        uint64_t down;                  /* ASK: the peers the asker found dead (bit i: peer i) */
        bool holds;                     /* ANSWER: the answerer holds the token; END: the token was made */
        bool wanted;                    /* ANSWER: it waits for the section, under request sn (ts) ... */
        uint64_t sn, ts;                /* ... else sn is its last request's number */
};

struct tk {
        bool have;                      /* we hold the token (tok) */
        bool stale;                     /* ... of a generation a newer token replaced: given up at the exit */
        struct tk_token tok;
        uint64_t rn[RA_PEERS_MAX];      /* the latest request number heard of each peer (ours: our own) */
        uint64_t rts[RA_PEERS_MAX];     /* ... and that request's Lamport timestamp */
        uint64_t gen_known;             /* the highest generation of a token known to exist */
        uint64_t seen_gen, seen_hop;    /* the last token taken in: a copy of an earlier hop is dropped */
        /* the last token sent, until it is known to have arrived: sent again when the link comes back */
        bool in_transit;
        unsigned transit_to;
        struct tk_token out;            /* what RA_SEND_TOKEN sends */
        /* a token that came while a round promised a newer one: aside until that round ends */
        bool aside_held;
        unsigned aside_from;
        uint64_t aside_clock, aside_ts;
        struct tk_token aside;
        /* a peer died or restarted since we last held the token, and the round was not ours
         * (we were not the lowest alive): run one if we wait, the lowest may not know */
        bool maybe_lost;
        /* our regeneration round (we are the lowest-numbered peer we find alive, or we wait
         * and maybe_lost) */
        bool probing;
        struct tk_probe probe;          /* what RA_SEND_PROBE sends */
        uint64_t awaiting;              /* bit i: peer i's answer is awaited */
        uint64_t asked;                 /* bit i: peer i was asked (its END is due) */
        struct tk_probe got[RA_PEERS_MAX];      /* the answers */
        struct tk_probe end;            /* what RA_SEND_END sends */
        uint64_t rounds;                /* our rounds so far */
        /* the rounds of others */
        uint64_t owed;                  /* bit i: peer i's question waits: we do not yet find dead all it does */
        uint64_t promised;              /* bit i: we answered peer i's round: a token of its gen may come */
        struct tk_probe asked_by[RA_PEERS_MAX]; /* each asker's latest question */
        struct tk_probe ans[RA_PEERS_MAX];      /* what RA_SEND_ANSWER sends to each */
        uint64_t regenerated;           /* tokens made here */
};

struct ra {
        enum dme_algo algo;
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
        uint64_t free_entries;  /* entries made without a message (RC's permissions, a token held) */
        struct tk tk;           /* token: its own part */
};

/* names must outlive ra; n <= RA_PEERS_MAX, self < n.  Ricart–Agrawala until ra_set_algo. */
void ra_init(struct ra *ra, unsigned n, unsigned self, const char *const *names);
/* Another algorithm (before anything else happens; the vector clock's base is kept). */
void ra_set_algo(struct ra *ra, enum dme_algo algo);

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
 *
 * known_life: the failure detector has taken in the incarnation the peer
 * said on this connection, so a restart of the peer has already been
 * reported (ra_peer_up(restarted)).  Called once with false when our link
 * comes up and once more with true when that is so.  What belongs to one
 * life of the peer — the token's transfer, a regeneration round's answers —
 * goes again only then: sent again to a restarted peer's new life, a token
 * in transit to its old life would make two tokens.
 */
void ra_link_up(struct ra *ra, unsigned peer, bool known_life, struct ra_actions *out);

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

/* --- central (cm.c): the coordinator decides; the peers only ask and give back --- */

/* The coordinator's GRANT of request ts, with its clock and vector clock (NULL: none). */
void ra_on_grant(struct ra *ra, uint64_t ts, uint64_t clock, const struct vclock *vc, struct ra_actions *out);
/*
 * The link to the coordinator is (back) up, to the same server or to a new
 * leader: a request of ours goes (again), and a section we hold is said
 * held (SEND_REQUEST with sn 1), so that a new coordinator rebuilds its
 * queue from what the peers tell it.
 */
void ra_coordinator_up(struct ra *ra, struct ra_actions *out);

/* --- token (tk.c): Suzuki–Kasami, with a lost token made anew --- */

/* TOKEN_REQUEST from peer: request number sn, Lamport ts, the highest generation it knows. */
void ra_on_token_request(struct ra *ra, unsigned peer, uint64_t gen, uint64_t sn, uint64_t ts,
                         const struct vclock *vc, struct ra_actions *out);
/* TOKEN from peer: its clock, the request ts it answers, the token. */
void ra_on_token(struct ra *ra, unsigned peer, uint64_t clock, uint64_t ts, const struct tk_token *tok,
                 const struct vclock *vc, struct ra_actions *out);
/* TOKEN_PROBE from peer: a regeneration round's question, answer or end, and the sender's clock. */
void ra_on_probe(struct ra *ra, unsigned peer, const struct tk_probe *pr, uint64_t clock, const struct vclock *vc,
                 struct ra_actions *out);
/*
 * The TOKEN_PROBE an RA_SEND_END action sends: our last round's END (sn: its
 * round), the news that a token of generation ts exists (sn 0), or that
 * round sn of ours is over (an answer to it came late; the answerer's promise
 * is void).
 */
struct tk_probe tk_end_msg(const struct ra *ra, const struct ra_action *a);
/* Is the token here (held, or aside until a round ends)? */
bool ra_token_here(const struct ra *ra);

/* a < b in the total order of requests: (ts, node name) */
bool ra_precedes(const struct ra *ra, uint64_t ts_a, unsigned a, uint64_t ts_b, unsigned b);

const char *ra_state_name(enum ra_state s);
