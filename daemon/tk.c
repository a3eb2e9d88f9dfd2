/* SPDX-License-Identifier: MIT */
/*
 * tk.c — Suzuki–Kasami's broadcast token (1985) as the DME machine of
 * dme_algorithm = "token", with a lost token made anew.  Pure: no I/O, no
 * time, no allocation.
 *
 * The algorithm.  One token exists; whoever holds it may enter, at once
 * and with no message if it holds it already.  A peer that wants the
 * section and lacks the token sends TOKEN_REQUEST(sn) to every other: sn
 * is its request's number, here its own vector-clock component at the
 * request, which grows across its restarts too (ra_set_vclock_base), so a
 * restarted peer's requests are never taken for old ones.  Each peer keeps
 * rn[j], the latest number heard from j; the token carries ln[j], the
 * number of j's last request it served, and a queue.  At its exit the
 * holder sets ln[self] = rn[self], appends every peer with rn[j] > ln[j]
 * that is not queued yet (oldest request first), and hands the token to
 * the head of the queue.  n - 1 requests and one transfer per entry under
 * contention, none when the holder enters again.
 *
 * A token lost with a link.  The last token sent is kept until it shows
 * up again or its receiver is found dead, and sent again when the link to
 * the receiver comes back; every transfer is numbered (hop), so a copy of
 * a transfer already taken in is dropped.
 *
 * A token lost with a peer (it died holding it, or with it on its way).
 * Whenever a peer is found dead or restarted, the lowest-numbered peer that
 * finds itself alive (and lacks the token) runs a regeneration round: it
 * asks every peer it finds alive (ASK, with the peers it found dead) and
 * waits for every answer.  A peer answers only once it too finds dead
 * every peer the question names (so whoever enters under the new token
 * has declared the old holder dead first: the trace checker's rule, and
 * the failure detector's word); it answers at once if it holds the token.
 * An answer says whether the answerer holds the token, what generation it
 * knows, and its request.  If nobody holds it, the asker makes a token of
 * a new generation (higher than any known: (counter << 6) | asker) from
 * the answers, takes it, and says END to everyone asked; else the round
 * ends with nothing made.  A peer that answered promises to take no token
 * of a lower generation until that round ends: one that arrives meanwhile
 * (it was on its way) is put aside, then dropped if a newer token was
 * made and taken if not.  A token of a lower generation than one known to
 * exist is dropped wherever it shows up, and its holder gives it up at its
 * exit.  A peer wrongly found dead may still hold the old token and enter
 * with it until it hears of the new generation (any TOKEN_REQUEST says the
 * sender's): the server's fence refuses whichever of the two writes second
 * under a lower fence, as it does for Ricart–Agrawala's false suspicions.
 */
#include <string.h>

#include "ra-impl.h"

#define BIT(i) RA_BIT(i)
#define GEN_SHIFT 6                     /* RA_PEERS_MAX peers */

void tk_init(struct ra *ra)
{
        ra->tk = (struct tk) {0};
}

bool ra_token_here(const struct ra *ra)
{
        return ra->algo == DME_TOKEN && (ra->tk.have || ra->tk.aside_held);
}

/* A token here that counts: held and not stale (a stale one is used to the exit, then given
 * up: it must not stop a round, nor be said to be here), or aside until a round ends. */
static bool live_token_here(const struct tk *k)
{
        return (k->have && !k->stale) || k->aside_held;
}

static uint64_t alive_others(const struct ra *ra)
{
        return ra_others(ra) & ~ra->down;
}

/* The lowest-numbered peer we find alive is us: regeneration is ours to run. */
static bool lowest_alive(const struct ra *ra)
{
        for (unsigned i = 0; i < ra->self; i++)
                if (!(ra->down & BIT(i)))
                        return false;
        return true;
}

/* The highest generation a round we answered may make. */
static uint64_t promised_gen(const struct ra *ra)
{
        uint64_t g = 0;

        for (unsigned i = 0; i < ra->n; i++)
                if ((ra->tk.promised & BIT(i)) && ra->tk.asked_by[i].gen > g)
                        g = ra->tk.asked_by[i].gen;
        return g;
}

/* Every generation we know of or promised, or propose ourselves. */
static uint64_t gen_top(const struct ra *ra)
{
        uint64_t g = ra->tk.gen_known, p = promised_gen(ra);

        if (p > g)
                g = p;
        if (ra->tk.probing && ra->tk.probe.gen > g)
                g = ra->tk.probe.gen;
        if (ra->tk.have && ra->tk.tok.gen > g)
                g = ra->tk.tok.gen;
        return g;
}

static void maybe_round(struct ra *ra, struct ra_actions *out);

/* Ours is older than one made since: given up.  That one's holder may be dead by now (it was
 * made because we were thought dead, and who made it may have died since): a round if ours
 * to run, which ends at once if it lives. */
static void drop_token(struct ra *ra, struct ra_actions *out)
{
        ra->tk.have = false;
        ra->tk.stale = false;
        ra_emit(ra, out, RA_DROPPED, ra->self, ra->tk.tok.gen);
        if (!ra->tk.probing)
                maybe_round(ra, out);
}

/* The peers waiting for the token: appended to its queue, oldest request first. */
static void queue_waiting(struct ra *ra)
{
        struct tk_token *t = &ra->tk.tok;
        uint64_t queued = 0;

        for (unsigned k = 0; k < t->qn; k++)
                queued |= BIT(t->q[k]);
        for (;;) {
                int best = -1;
                for (unsigned j = 0; j < ra->n; j++) {
                        if (j == ra->self || (queued & BIT(j)) || (ra->down & BIT(j)) || ra->tk.rn[j] <= t->ln[j])
                                continue;
                        if (best < 0 || ra_precedes(ra, ra->tk.rts[j], j, ra->tk.rts[best], (unsigned) best))
                                best = (int) j;
                }
                if (best < 0 || t->qn >= RA_PEERS_MAX)
                        break;
                t->q[t->qn++] = (uint8_t) best;
                queued |= BIT(best);
        }
}

/* We hold the token and want nothing of it: it goes to the next peer that waits, if any. */
static void pass_token(struct ra *ra, struct ra_actions *out)
{
        struct tk_token *t = &ra->tk.tok;

        if (!ra->tk.have || ra->state != RA_RELEASED)
                return;
        if (ra->tk.stale) {
                drop_token(ra, out);
                return;
        }
        t->ln[ra->self] = ra->tk.rn[ra->self];
        /* the dead are not waited for; they ask again when they are back */
        unsigned k = 0;
        for (unsigned i = 0; i < t->qn; i++)
                if (t->q[i] != ra->self && t->q[i] < ra->n && !(ra->down & BIT(t->q[i])))
                        t->q[k++] = t->q[i];
        t->qn = k;
        queue_waiting(ra);
        if (t->qn == 0)
                return;
        unsigned j = t->q[0];
        memmove(t->q, t->q + 1, --t->qn);
        t->hop++;
        ra->tk.out = *t;
        ra->tk.have = false;
        ra->tk.in_transit = true;
        ra->tk.transit_to = j;
        ra_tick(ra);
        ra_emit(ra, out, RA_SEND_TOKEN, j, ra->tk.rts[j]);
}

/* The token is ours now: enter if we want to, else pass it on. */
static void take_token(struct ra *ra, const struct tk_token *tok, struct ra_actions *out)
{
        ra->tk.tok = *tok;
        ra->tk.have = true;
        ra->tk.maybe_lost = false;
        ra->tk.stale = false;
        ra->tk.in_transit = false;
        if (tok->gen > ra->tk.gen_known)
                ra->tk.gen_known = tok->gen;
        ra->tk.seen_gen = tok->gen;
        ra->tk.seen_hop = tok->hop;
        if (ra->state == RA_WANTED)
                ra_enter(ra, out);
        else
                pass_token(ra, out);
}

static void start_round(struct ra *ra, struct ra_actions *out);

/* A token of generation g exists: older ones are void. */
static void learn_gen(struct ra *ra, uint64_t g, struct ra_actions *out)
{
        bool first = ra->tk.gen_known == 0;

        if (g <= ra->tk.gen_known)
                return;
        ra->tk.gen_known = g;
        if (ra->tk.in_transit && ra->tk.out.gen < g)
                ra->tk.in_transit = false;      /* an older token: dropped wherever it would arrive */
        if (ra->tk.have && ra->tk.tok.gen < g) {
                if (ra->state == RA_HELD)
                        ra->tk.stale = true;    /* given up at the exit */
                else
                        drop_token(ra, out);
        }
        if (ra->tk.aside_held && ra->tk.aside.gen < g) {
                ra->tk.aside_held = false;
                ra_emit(ra, out, RA_DROPPED, ra->tk.aside_from, ra->tk.aside.gen);
        }
        /* The first news of a token in this life: if we restarted, our old life may
         * have died holding it, and only we can tell: the others see a restart, but
         * when the restarted peer is the lowest alive, the round is its own to run
         * (tk_peer_up's maybe_round runs at the lowest alive, which is not them).
         * (Not for a waiter that is not the lowest: a new cluster's waiters all learn of
         * the first token so.) */
        if (first && !ra->tk.have && !ra->tk.aside_held && lowest_alive(ra))
                start_round(ra, out);
}

/* A token put aside for a round: dropped once a newer one is known, taken once no round promises one. */
static void check_aside(struct ra *ra, struct ra_actions *out)
{
        if (!ra->tk.aside_held)
                return;
        if (ra->tk.aside.gen < ra->tk.gen_known) {
                ra->tk.aside_held = false;
                ra_emit(ra, out, RA_DROPPED, ra->tk.aside_from, ra->tk.aside.gen);
                return;
        }
        if (promised_gen(ra) > ra->tk.aside.gen)
                return;
        ra->tk.aside_held = false;
        take_token(ra, &ra->tk.aside, out);
}

/* --- regeneration ------------------------------------------------------------------------------ */

static void end_round(struct ra *ra, bool made, struct ra_actions *out);

/*
 * The news that a token of generation gen_known exists, to peer (END of
 * round 0): a peer that missed a regeneration (found dead meanwhile, or cut
 * off) gives up the old token it may hold, however idle.
 */
static void tell_gen(struct ra *ra, unsigned peer, struct ra_actions *out)
{
        if (ra->tk.gen_known)
                ra_emit(ra, out, RA_SEND_END, peer, ra->tk.gen_known)->sn = 0;
}

static void start_round(struct ra *ra, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        k->probing = true;
        k->rounds++;
        k->probe = (struct tk_probe) { .kind = TK_ASK, .round = k->rounds,
                                       .gen = (((gen_top(ra) >> GEN_SHIFT) + 1) << GEN_SHIFT) | ra->self,
                                       .down = ra->down & ra_others(ra) };
        k->awaiting = k->asked = alive_others(ra);
        memset(k->got, 0, sizeof k->got);
        for (unsigned i = 0; i < ra->n; i++)
                if (k->asked & BIT(i))
                        ra_emit(ra, out, RA_SEND_PROBE, i, k->probe.gen);
        if (!k->awaiting)
                end_round(ra, true, out);
}

/*
 * Lost, maybe (a peer died or restarted): a round, if the token is not here
 * and regeneration is ours to run — we are the lowest-numbered peer we find
 * alive, or we wait for the token.  The second because the lowest alive may
 * not know: it found that peer dead long ago, or never knew its old life, and
 * sees nothing happen; a waiter that saw the death otherwise waited for good.
 * A waiter's death seen while it did not wait is remembered (maybe_lost) for
 * its next request.  Rounds at once are safe: each answer promises to take no
 * older token than the asker's until its round ends, so of two askers that
 * answered each other only the higher generation is made.
 */
/* A live peer's latest request we heard of was not served by the last token we saw. */
static bool someone_waits(const struct ra *ra)
{
        for (unsigned j = 0; j < ra->n; j++)
                if (j != ra->self && !(ra->down & BIT(j)) && ra->tk.rn[j] > ra->tk.tok.ln[j])
                        return true;
        return false;
}

static void maybe_round(struct ra *ra, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        if (live_token_here(k))
                return;
        if (lowest_alive(ra) || ra->state == RA_WANTED || someone_waits(ra)) {
                start_round(ra, out);   /* (again, if one runs: the peers it asks changed) */
                return;
        }
        k->maybe_lost = true;
}

/* Every answer is in (made: nobody holds the token), or the round is given up (made false). */
static void end_round(struct ra *ra, bool made, struct ra_actions *out)
{
        struct tk *k = &ra->tk;
        bool all_in = made, held = false;
        uint64_t top = 0;

        k->probing = false;
        k->maybe_lost = false;          /* whatever the round found, it looked */
        for (unsigned i = 0; i < ra->n; i++)
                if (k->asked & BIT(i)) {
                        held |= k->got[i].holds;
                        if (k->got[i].gen > top)
                                top = k->got[i].gen;
                }
        if (held || top >= k->probe.gen)
                made = false;           /* it holds the token, or a newer one is known or promised */
        /* ... or we hold it, or promised a newer one, or heard one was made meanwhile (by a
         * round of a peer we found dead while it found us dead: two rounds at once; made, ours
         * would be an older generation than one that exists, and taken by us, who know no
         * newer one any more: two tokens) */
        if (live_token_here(k) || promised_gen(ra) >= k->probe.gen || k->gen_known >= k->probe.gen)
                made = false;
        k->end = (struct tk_probe) { .kind = TK_END, .round = k->probe.round, .gen = k->probe.gen, .holds = made };
        for (unsigned i = 0; i < ra->n; i++)
                if (k->asked & BIT(i))
                        ra_emit(ra, out, RA_SEND_END, i, k->probe.gen)->sn = k->end.round;
        if (!made) {
                /* Nobody has it, and only a generation number stopped us: one heard of (it died
                 * with its holder since) or promised to a round whose asker died.  The lowest
                 * alive runs again above it; nobody else would (waiters run a round on a death
                 * they see, which may be long past): the token was lost for good.  Only the
                 * lowest: two waiters doing so could outbid each other for ever. */
                if (all_in && !held && !live_token_here(k) && promised_gen(ra) < k->probe.gen && lowest_alive(ra)) {
                        if (top > k->probe.gen)
                                k->probe.gen = top;     /* (gen_top counts it: start_round goes above) */
                        start_round(ra, out);
                }
                return;
        }
        struct tk_token t = { .gen = k->probe.gen };
        for (unsigned j = 0; j < ra->n; j++) {
                if (j == ra->self) {
                        t.ln[j] = ra->state == RA_WANTED ? k->rn[j] - 1 : k->rn[j];
                } else if (k->asked & BIT(j)) {
                        const struct tk_probe *a = &k->got[j];
                        if (a->sn > k->rn[j]) {
                                k->rn[j] = a->sn;
                                k->rts[j] = a->ts;
                        }
                        t.ln[j] = a->wanted && a->sn ? a->sn - 1 : a->sn;
                } else {
                        /* found dead, and not asked: its last request may still wait (it may
                         * only be suspected).  Left unserved: if it waits it is served; if not,
                         * the token reaches it once, unwanted, and goes on; if it died, it is
                         * not queued while found dead, and its restart voids the request
                         * (tk_peer_up).  Marked served, a live waiter would ask again under
                         * the same number, never be queued, and wait for good. */
                        t.ln[j] = k->rn[j] ? k->rn[j] - 1 : 0;
                }
        }
        k->regenerated++;
        k->gen_known = t.gen;
        ra_emit(ra, out, RA_REGENERATED, ra->self, t.gen);
        take_token(ra, &t, out);
}

struct tk_probe tk_end_msg(const struct ra *ra, const struct ra_action *a)
{
        if (a->sn == 0)
                return (struct tk_probe) { .kind = TK_END, .gen = a->ts, .holds = true };
        if (a->sn == ra->tk.end.round)
                return ra->tk.end;
        return (struct tk_probe) { .kind = TK_END, .round = a->sn };
}

/* Answer peer's question, if we find dead everyone it does (or hold the token). */
static void try_answer(struct ra *ra, unsigned peer, struct ra_actions *out)
{
        struct tk *k = &ra->tk;
        const struct tk_probe *q = &k->asked_by[peer];
        /* (not a stale one: said to be here, it ended the rounds while the newer one it yields
         * to was lost, and nobody made another) */
        bool here = live_token_here(k);

        if (!(k->owed & BIT(peer)))
                return;
        if (!here && (q->down & ra_others(ra) & ~ra->down & ~BIT(peer)))
                return;                 /* not yet: we still find alive a peer it found dead */
        k->owed &= ~BIT(peer);
        k->ans[peer] = (struct tk_probe) { .kind = TK_ANSWER, .round = q->round, .gen = gen_top(ra), .holds = here,
                                           .wanted = ra->state == RA_WANTED, .sn = k->rn[ra->self],
                                           .ts = ra->state == RA_WANTED ? ra->req_ts : 0 };
        if (!here)
                k->promised |= BIT(peer);
        ra_emit(ra, out, RA_SEND_ANSWER, peer, q->round);
}

static void answer_owed(struct ra *ra, struct ra_actions *out)
{
        for (unsigned i = 0; i < ra->n; i++)
                if (ra->tk.owed & BIT(i))
                        try_answer(ra, i, out);
}

void ra_on_probe(struct ra *ra, unsigned peer, const struct tk_probe *pr, uint64_t clock, const struct vclock *vc,
                 struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        out->n = 0;
        if (peer >= ra->n || peer == ra->self || ra->algo != DME_TOKEN)
                return;
        /* Lamport's receive rule, as for every other frame: a token made from the answers is
         * entered above every fence an answerer wrote under (the last holder's among them),
         * so the server does not refuse the new holder's first append */
        ra_clock_recv(ra, clock);
        if (vc)
                vclock_merge(&ra->vc, vc);
        switch (pr->kind) {
        case TK_ASK:
                if (pr->round && pr->round == k->asked_by[peer].round && pr->gen == k->asked_by[peer].gen) {
                        /* A copy (sent again at a link-up): answered already, the same answer
                         * goes again (ours may have been lost with the link); owed still, it
                         * waits as before.  Taken for a new question, it voided the promise the
                         * asker may already count on, and a token then on its way was taken
                         * while the round made another: two tokens. */
                        if (!(k->owed & BIT(peer)))
                                ra_emit(ra, out, RA_SEND_ANSWER, peer, pr->round);
                        return;
                }
                k->asked_by[peer] = *pr;
                k->promised &= ~BIT(peer);      /* its earlier round is superseded */
                k->owed |= BIT(peer);
                try_answer(ra, peer, out);
                check_aside(ra, out);
                break;
        case TK_ANSWER:
                if (!k->probing || pr->round != k->probe.round) {
                        /* A round of ours that ended, or was run again, without this peer (we
                         * found it dead): the END did not go to it, and its promise would hold
                         * for good, putting every token aside.  Say that round is over. */
                        if (pr->round && pr->round <= k->rounds && !pr->holds)
                                ra_emit(ra, out, RA_SEND_END, peer, 0)->sn = pr->round;
                        return;
                }
                if (!(k->awaiting & BIT(peer)))
                        return;
                k->got[peer] = *pr;
                k->awaiting &= ~BIT(peer);
                if (pr->holds)
                        end_round(ra, false, out);      /* it is not lost */
                else if (!k->awaiting)
                        end_round(ra, true, out);
                break;
        case TK_END:
                /* a token made (by a round, or news of one: round 0) voids the older ones */
                if (pr->holds)
                        learn_gen(ra, pr->gen, out);
                if (pr->round && pr->round >= k->asked_by[peer].round) {
                        /* that round is over, and so is every earlier one of the asker (it runs
                         * one at a time; an ASK of a later round lost on a cut link leaves us the
                         * earlier's question): what we promised for it is void, and an answer
                         * we still owe it is moot (owed and never cleared, a late answer would
                         * promise again, for a round that ended, and put every token aside) */
                        k->promised &= ~BIT(peer);
                        k->owed &= ~BIT(peer);
                }
                check_aside(ra, out);
                break;
        }
}

/* --- the algorithm ----------------------------------------------------------------------------- */

int tk_request(struct ra *ra, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        ra_tick(ra);
        ra->req_ts = ra->clock;
        ra->state = RA_WANTED;
        ra->awaiting = 0;
        ra->asked = 0;
        /* the request's number: the own vector-clock component of its first action, which only grows
         * (across restarts too) */
        k->rn[ra->self] = ra->vc.c[ra->self] + 1;
        k->rts[ra->self] = ra->req_ts;
        if (k->have && !k->stale) {
                ra->free_entries++;
                ra_enter(ra, out);
                return 0;
        }
        for (unsigned i = 0; i < ra->n; i++)
                if (alive_others(ra) & BIT(i)) {
                        ra->asked |= BIT(i);
                        ra_emit(ra, out, RA_SEND_REQUEST, i, ra->req_ts)->sn = k->rn[ra->self];
                }
        /* no token made yet (a new cluster), or none seen: regeneration is how the first is made */
        if (k->gen_known == 0 && !k->probing && !k->aside_held && !k->have && lowest_alive(ra))
                start_round(ra, out);
        else if (k->maybe_lost && !k->probing)
                maybe_round(ra, out);   /* a death we saw while not waiting may have lost it */
        return 0;
}

void ra_on_token_request(struct ra *ra, unsigned peer, uint64_t gen, uint64_t sn, uint64_t ts,
                         const struct vclock *vc, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        out->n = 0;
        if (peer >= ra->n || peer == ra->self || ra->algo != DME_TOKEN)
                return;
        ra_clock_recv(ra, ts);
        if (vc)
                vclock_merge(&ra->vc, vc);
        ra_emit(ra, out, RA_GOT_REQUEST, peer, ts);
        learn_gen(ra, gen, out);
        if (gen < k->gen_known)
                tell_gen(ra, peer, out);        /* it missed the newest token: it may hold an old one */
        if (sn > k->rn[peer]) {
                k->rn[peer] = sn;
                k->rts[peer] = ts;
        }
        if (k->have) {
                bool queued = false;
                for (unsigned i = 0; i < k->tok.qn; i++)
                        queued |= k->tok.q[i] == peer;
                if (ra->state == RA_HELD && k->rn[peer] > k->tok.ln[peer] && !queued && !k->stale)
                        ra_emit(ra, out, RA_QUEUED, peer, ts);
                else
                        pass_token(ra, out);
                return;
        }
        if (k->gen_known == 0 && !k->probing && !k->aside_held && lowest_alive(ra))
                start_round(ra, out);
        else if (k->maybe_lost && !k->probing)
                maybe_round(ra, out);   /* a death we saw may have lost it, and now someone waits */
}

void ra_on_token(struct ra *ra, unsigned peer, uint64_t clock, uint64_t ts, const struct tk_token *tok,
                 const struct vclock *vc, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        out->n = 0;
        if (peer >= ra->n || peer == ra->self || ra->algo != DME_TOKEN)
                return;
        ra_clock_recv(ra, clock);
        if (vc)
                vclock_merge(&ra->vc, vc);
        ra_emit(ra, out, RA_GOT_REPLY, peer, ts);
        if (k->in_transit && (tok->gen > k->out.gen || (tok->gen == k->out.gen && tok->hop > k->out.hop)))
                k->in_transit = false;  /* it went round: what we sent arrived */
        if (tok->gen < k->gen_known || tok->gen < k->seen_gen ||
            (tok->gen == k->seen_gen && tok->hop <= k->seen_hop) ||
            (k->have && tok->gen <= k->tok.gen) || (k->aside_held && tok->gen <= k->aside.gen)) {
                ra_emit(ra, out, RA_DROPPED, peer, tok->gen);   /* an old one, or a copy */
                return;
        }
        if (k->have)
                learn_gen(ra, tok->gen, out);   /* ours is older: given up now, or at our exit */
        if (promised_gen(ra) > tok->gen || k->have) {
                /* on its way while a round we answered may make a newer one: aside until it ends */
                k->aside = *tok;
                k->aside_held = true;
                k->aside_from = peer;
                k->aside_clock = clock;
                k->aside_ts = ts;
                return;
        }
        if (k->probing)
                end_round(ra, false, out);      /* it was not lost */
        take_token(ra, tok, out);
}

void tk_release(struct ra *ra, struct ra_actions *out)
{
        ra_emit(ra, out, ra->state == RA_HELD ? RA_EXIT : RA_WITHDRAW, ra->self, ra->req_ts);
        ra->state = RA_RELEASED;
        ra->awaiting = 0;
        pass_token(ra, out);
        check_aside(ra, out);           /* a newer token that came while we used an old one */
}

void tk_link_up(struct ra *ra, unsigned peer, bool known_life, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        /* Not before we know which life of the peer is at the other end: were it a
         * new one, whose restart we hear of only with its HELLO, the token sent to
         * the old life would be resent, taken, and regenerated too: two tokens. */
        if (!known_life)
                return;
        /* what went on the old link may be lost: ours goes again, the other side drops copies */
        if (ra->state == RA_WANTED && !k->have)
                ra_emit(ra, out, RA_SEND_REQUEST, peer, ra->req_ts)->sn = k->rn[ra->self];
        if (k->in_transit && k->transit_to == peer) {
                ra_tick(ra);
                ra_emit(ra, out, RA_SEND_TOKEN, peer, k->rts[peer]);
        }
        if (k->probing && (k->awaiting & BIT(peer)))
                ra_emit(ra, out, RA_SEND_PROBE, peer, k->probe.gen);
        if ((k->promised & BIT(peer)) && !(k->owed & BIT(peer)))
                ra_emit(ra, out, RA_SEND_ANSWER, peer, k->asked_by[peer].round);
        if (!k->probing && k->end.round && (k->asked & BIT(peer)))
                ra_emit(ra, out, RA_SEND_END, peer, k->end.gen)->sn = k->end.round;
        tell_gen(ra, peer, out);
}

void tk_peer_down(struct ra *ra, unsigned peer, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        ra->down |= BIT(peer);
        if (k->have) {
                unsigned j = 0;
                for (unsigned i = 0; i < k->tok.qn; i++)
                        if (k->tok.q[i] != peer)
                                k->tok.q[j++] = k->tok.q[i];
                k->tok.qn = j;
        }
        /* A token in transit to it stays ours to send again once the link is back and the same
         * life answers (tk_link_up): found dead is not known dead.  Dropped here, it was lost
         * for good whenever the lowest alive, whose round it is, still found the receiver
         * alive (a cut between sender and receiver only): nobody ran a round.  If the
         * receiver did die, its restart voids the transfer (tk_peer_up), and a round made
         * meanwhile voids it too (learn_gen). */
        k->owed &= ~BIT(peer);
        if (k->promised & BIT(peer)) {
                k->promised &= ~BIT(peer);      /* its round ends with it */
                check_aside(ra, out);
        }
        answer_owed(ra, out);                   /* we may now find dead all a question does */
        if (k->probing)
                start_round(ra, out);           /* again, with this peer found dead too */
        else
                maybe_round(ra, out);
        pass_token(ra, out);
}

void tk_peer_up(struct ra *ra, unsigned peer, bool restarted, struct ra_actions *out)
{
        struct tk *k = &ra->tk;

        ra->down &= ~BIT(peer);
        if (restarted) {
                /* Its old life's request is void, what it held or promised died with it.  What we
                 * heard of its requests is forgotten, not marked served: a request of the new
                 * life may have come already (on a link we heard it on before its HELLO could
                 * tell us of the restart: a one-way link), and marked served it was never queued,
                 * its copies at the link-up being no newer.  An old request that still shows up
                 * brings the token to the new life once, unwanted: it passes it on. */
                k->rn[peer] = 0;
                k->rts[peer] = 0;
                if (k->have) {
                        k->tok.ln[peer] = 0;
                        unsigned j = 0;
                        for (unsigned i = 0; i < k->tok.qn; i++)
                                if (k->tok.q[i] != peer)
                                        k->tok.q[j++] = k->tok.q[i];
                        k->tok.qn = j;
                }
                if (k->in_transit && k->transit_to == peer)
                        k->in_transit = false;
                k->asked_by[peer].round = 0;    /* its new life numbers its rounds from 1 again */
                k->owed &= ~BIT(peer);
                if (k->promised & BIT(peer)) {
                        k->promised &= ~BIT(peer);
                        check_aside(ra, out);
                }
        }
        if (ra->state == RA_WANTED && !k->have) {
                ra->asked |= BIT(peer);
                ra_emit(ra, out, RA_SEND_REQUEST, peer, ra->req_ts)->sn = k->rn[ra->self];
        }
        tell_gen(ra, peer, out);
        if (k->probing)
                start_round(ra, out);           /* it is asked too */
        else if (restarted)
                maybe_round(ra, out);           /* the token may have died with its old life */
        else if (!live_token_here(k) && lowest_alive(ra))
                /* ... or with an old life we could not see (we never heard its incarnation: we
                 * restarted meanwhile), which others saw but whose round is ours to run, being
                 * the lowest alive (not a waiter's: every peer coming up would start one) */
                start_round(ra, out);
}
