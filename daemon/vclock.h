/* SPDX-License-Identifier: MIT */
/*
 * vclock.h — vector clocks (Fidge, Mattern 1988), pure: no I/O, no time,
 * no allocation.
 *
 * A vector clock has one component per peer of the cluster, in the order
 * of the config's peers list (struct vclock, proto.h).  A node's own
 * component counts its events; the others are what it knows of theirs.
 * An event e happened before f (e -> f) iff V(e) <= V(f) componentwise and
 * V(e) != V(f); events that are ordered neither way are concurrent.  So a
 * trace with vector clocks shows the causal order of a run without any
 * agreement between the hosts' clocks.
 *
 * On the wire (and in the chat log) a vector clock is a u8 count n, at most
 * DCHAT_PEERS_MAX, then n unsigned LEB128 varints (7 bits a byte, low
 * first, the high bit set on every byte but the last; the shortest form
 * only), each at most DCHAT_CLOCK_MAX: a component costs a byte or two in
 * a young cluster instead of eight.  The codec is proto.c's
 * (proto_put_vclock, proto_get_vclock), shared with dchatctl.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

enum vclock_order {
        VCLOCK_EQUAL,
        VCLOCK_BEFORE,          /* a -> b */
        VCLOCK_AFTER,           /* b -> a */
        VCLOCK_CONCURRENT,
};

/* n components, all 0 (n is at most DCHAT_PEERS_MAX). */
void vclock_init(struct vclock *v, unsigned n);
/* A local event of node self: its component + 1 (saturating at DCHAT_CLOCK_MAX); returns it. */
uint64_t vclock_tick(struct vclock *v, unsigned self);
/* A receive: each component the greater of v's and w's (components beyond v->n are ignored). */
void vclock_merge(struct vclock *v, const struct vclock *w);
/* The causal order of a and b (a component one of them lacks counts as 0). */
enum vclock_order vclock_compare(const struct vclock *a, const struct vclock *b);
/* a -> b */
bool vclock_before(const struct vclock *a, const struct vclock *b);
const char *vclock_order_name(enum vclock_order o);

/*
 * For messages: "node1:3,node2:0" (names NULL: "3,0"), or with json
 * {"node1":3,"node2":0} (names NULL: [3,0]).  Cut short to fit cap; returns
 * the length it needed, like snprintf.
 */
size_t vclock_format(char *buf, size_t cap, const struct vclock *v, const char *const *names, bool json);
