/* SPDX-License-Identifier: MIT */
/*
 * ra-impl.h — what ra.c shares with the other algorithms' files (cm.c,
 * tk.c): the steps every DME machine takes the same way.  Not for callers
 * of the machine: they use ra.h.
 */
#pragma once

#include "ra.h"

#define RA_BIT(i) (UINT64_C(1) << (i))

/* An action: an event of this node, counted in its own vector-clock component. */
struct ra_action *ra_emit(struct ra *ra, struct ra_actions *out, enum ra_action_kind kind, unsigned peer,
                          uint64_t ts);
/* A local step of the Lamport clock (saturating). */
void ra_tick(struct ra *ra);
/* A receive: the clock moves past the sender's t. */
void ra_clock_recv(struct ra *ra, uint64_t t);
/* Every peer but us (a mask). */
uint64_t ra_others(const struct ra *ra);
/* WANTED, and allowed in: HELD, the clock at entry is the fence, ENTER. */
void ra_enter(struct ra *ra, struct ra_actions *out);

/* cm.c: the central algorithm's side of the peer */
int cm_request(struct ra *ra, struct ra_actions *out);
void cm_release(struct ra *ra, struct ra_actions *out);

/* tk.c: the token */
void tk_init(struct ra *ra);
int tk_request(struct ra *ra, struct ra_actions *out);
void tk_release(struct ra *ra, struct ra_actions *out);
void tk_link_up(struct ra *ra, unsigned peer, bool known_life, struct ra_actions *out);
void tk_peer_down(struct ra *ra, unsigned peer, struct ra_actions *out);
void tk_peer_up(struct ra *ra, unsigned peer, bool restarted, struct ra_actions *out);
