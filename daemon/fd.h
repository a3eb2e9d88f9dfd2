/* SPDX-License-Identifier: MIT */
/*
 * fd.h — a heartbeat failure detector as a pure state machine: it is told
 * when a peer was heard from and what time it is, and says which peers
 * changed state.  No I/O, no clock of its own.
 *
 *   ALIVE --(silent for suspect_after)--> SUSPECT --(silent for dead_after)--> DEAD
 *     ^                                      |                                   |
 *     +------------- heard from -------------+-----------------------------------+
 *
 * Every peer announces an incarnation number (its start time) in HELLO and
 * in each heartbeat; a larger one means the peer restarted, and whatever it
 * had asked for before is void.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ra.h"

enum fd_state {
        FD_ALIVE,
        FD_SUSPECT,
        FD_DEAD,
};

struct fd_peer {
        enum fd_state state;
        uint64_t last_heard;    /* µs, the caller's monotonic clock */
        uint64_t since;         /* when it entered this state */
        uint64_t incarnation;   /* 0 until known */
};

struct fd {
        unsigned n, self;
        uint64_t suspect_after, dead_after;     /* µs of silence */
        struct fd_peer p[RA_PEERS_MAX];
};

enum fd_event_kind {
        FD_STATE,               /* peer went from old to new */
        FD_RESTARTED,           /* peer came back with a new incarnation */
};

struct fd_event {
        enum fd_event_kind kind;
        unsigned peer;
        enum fd_state old, new;
        uint64_t incarnation;
};

/* At most one event per peer from fd_tick; at most two from fd_heard. */
struct fd_events {
        unsigned n;
        struct fd_event e[RA_PEERS_MAX + 1];
};

/*
 * Every peer starts ALIVE as of now: one that never shows up is DEAD
 * after dead_after, so a cluster can start while some hosts are down.
 */
void fd_init(struct fd *fd, unsigned n, unsigned self, uint64_t suspect_after, uint64_t dead_after,
             uint64_t now);
void fd_set_times(struct fd *fd, uint64_t suspect_after, uint64_t dead_after);

/* A frame came from peer; incarnation 0 if the frame carries none. */
void fd_heard(struct fd *fd, unsigned peer, uint64_t incarnation, uint64_t now, struct fd_events *out);

/*
 * Peer said it is stopping (LEAVE): DEAD at once, without waiting for its
 * silence, and no event (the caller reports the leave).  Heard from again
 * (a later life), it comes back like any dead peer.
 */
void fd_left(struct fd *fd, unsigned peer, uint64_t now);

/* Time passed: silent peers become SUSPECT, then DEAD. */
void fd_tick(struct fd *fd, uint64_t now, struct fd_events *out);

/* The earliest time at which fd_tick may change something; UINT64_MAX if never. */
uint64_t fd_next_deadline(const struct fd *fd);

const char *fd_state_name(enum fd_state s);

/*
 * One link watched on its own, by the same rule: a peer's link to the
 * server, the server's link to a peer.  Whoever is at the other end sends
 * heartbeats; any frame counts as a sign of life.  There is no incarnation
 * here: a restarted server or peer comes back on a new link.
 */
struct fd_link {
        enum fd_state state;
        uint64_t last_heard;    /* µs, the caller's monotonic clock */
};

/* ALIVE as of now (the link just opened). */
void fd_link_init(struct fd_link *l, uint64_t now);
/* A frame came: ALIVE.  Returns whether the state changed. */
bool fd_link_heard(struct fd_link *l, uint64_t now);
/* Time passed: SUSPECT after suspect_after of silence, DEAD after dead_after.  Returns whether it changed. */
bool fd_link_tick(struct fd_link *l, uint64_t now, uint64_t suspect_after, uint64_t dead_after);
/* How long it has been silent at now (0 if the clock says otherwise). */
uint64_t fd_link_silent(const struct fd_link *l, uint64_t now);
