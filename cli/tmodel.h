/* SPDX-License-Identifier: MIT */
/*
 * tmodel.h — the trace of a cluster's run, as `dchatctl trace` sees it:
 * the protocol events of every peer (from their rings, from journal
 * exports, or from a trace written before), merged into one model; each
 * message matched to its send (by the sender's own vector-clock component,
 * which every receive records: no guessing), deferred replies marked,
 * critical sections paired, a window cut out of it, laid out in one of
 * three orders, checked for causal order, and written as text, JSON Lines
 * or ShiViz's input.  Pure: no I/O but the FILE the writers are given.
 *
 * Lanes are the peers of the cluster in the order of its config (the
 * components of the vector clocks): one per node, whether or not it has
 * events in the trace.  A lane's events are ordered by its own component,
 * which grows across the node's restarts too (ra.h).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "proto.h"

#define TM_NONE ((size_t) -1)

struct tm_event {
        unsigned lane;
        uint64_t no;            /* the node's record number (no=), 0 if unknown */
        uint64_t time_us;       /* the node's wall clock */
        uint8_t kind;           /* enum dchat_trace_kind */
        int peer;               /* the other node's lane, -1: none */
        uint64_t lamport, request_ts, fence, seq, send_vt;
        uint32_t fence_idx;
        size_t vc;              /* offset of its n_lanes components in the model's clocks, TM_NONE: none */
        size_t match;           /* a send: the receive of its message; a receive: its send; TM_NONE */
        bool deferred;          /* a reply-sent that answers a request deferred before */
        double x;               /* where tm_layout put it on its lane */
};

struct tm_lane {
        char name[DCHAT_NAME_MAX + 1];
        uint64_t incarnation;   /* of the node's ring (0: unknown, from a journal) */
        size_t first, n;        /* its events, after tm_finish: ev[first .. first + n) */
        bool missing;           /* not all of its events could be gathered */
        uint64_t got;           /* ... how many came */
        char why[160];          /* ... and why the rest did not */
};

enum tm_order { TM_PHYSICAL, TM_LAMPORT, TM_VECTOR };

struct tmodel {
        unsigned n_lanes;
        struct tm_lane lanes[DCHAT_PEERS_MAX];
        struct tm_event *ev;
        size_t n, cap;
        uint64_t *clocks;       /* n_lanes components per event that has a clock */
        size_t n_clocks, cap_clocks;
        enum tm_order order;
        double x_min, x_max;    /* after tm_layout */
        uint64_t t_min;         /* the earliest time (physical layout's origin) */
        size_t dropped;         /* events left out by a window */
        bool token;             /* dme_algorithm = "token": tm_check's excuse for overlaps (tm_check) */
};

void tm_init(struct tmodel *m);
void tm_free(struct tmodel *m);

/*
 * The lanes: the cluster's peers, in order.  The first call sets them; a
 * later one must name the same peers in the same order, else -EXDEV (a
 * trace of another cluster, or of another config) and err says how.
 */
int tm_set_lanes(struct tmodel *m, const char *const *names, unsigned n, char *err, size_t cap);
int tm_lane(const struct tmodel *m, const char *name);          /* its index, -1: none */
/* Adds e (lane, peer set) with its clock (n_lanes components, NULL: none). */
int tm_add(struct tmodel *m, const struct tm_event *e, const uint64_t *vc);
/* Lane's node gave only got events (it could not be asked, or stopped answering), and why. */
void tm_set_missing(struct tmodel *m, unsigned lane, uint64_t got, const char *why);

/*
 * Reads one line of JSON: an event of `journalctl -o json` (a dchatd event
 * with DCHAT_VCLOCK; anything else is passed over: returns 0) or a line of
 * `dchatctl trace --format json` (events, and the lines that name the
 * nodes and those missing).  1 if it added an event; -EINVAL (not JSON, or
 * JSON of neither kind), -EXDEV (another cluster) with err.
 */
int tm_read_json(struct tmodel *m, const char *line, size_t len, char *err, size_t cap);

/* Orders each lane by its own component, drops copies of one event, matches messages, marks deferred replies. */
void tm_finish(struct tmodel *m);

/* Keeps the events timed since .. until (µs, each node's own clock; 0: no bound). */
void tm_window_time(struct tmodel *m, uint64_t since, uint64_t until);
/*
 * Keeps what bears on the post stored as seq: from the request that led
 * to its critical section to that section's exit (and the replies it then
 * sent), every event causally between the two, and what completes them:
 * each message's other end, each critical section's other end.  -ENOENT
 * if the trace has no post-stored of seq.
 */
int tm_window_post(struct tmodel *m, uint64_t seq, char *err, size_t cap);

/* Places each event on its lane: x by the wall clock, by Lamport time, or by its depth in the causal order. */
void tm_layout(struct tmodel *m, enum tm_order order);

/*
 * The checks of `trace --check`: critical sections in causal order (each
 * exit happened before the next entry, whoever's), every deferral
 * answered, fences increasing.  Returns 0 (report: a summary) or 1 (report:
 * the first violation, then the summary).
 */
int tm_check(const struct tmodel *m, char *report, size_t cap);

/* The event's clock component j (0 if it has none). */
uint64_t tm_vc(const struct tmodel *m, const struct tm_event *e, unsigned j);
/* a -> b (both with clocks) */
bool tm_before(const struct tmodel *m, const struct tm_event *a, const struct tm_event *b);
const char *tm_order_name(enum tm_order o);
int tm_order_parse(const char *s, enum tm_order *o);

/* Writers: JSON Lines (a first line naming the nodes), ShiViz (its regex first), text (a line per event). */
void tm_write_json(const struct tmodel *m, FILE *f);
void tm_write_shiviz(const struct tmodel *m, FILE *f);
void tm_write_text(const struct tmodel *m, FILE *f);
/* The events in layout order (x, then lane): an index array of m->n (free it). */
size_t *tm_sorted(const struct tmodel *m);
