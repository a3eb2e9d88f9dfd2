/* SPDX-License-Identifier: MIT */
/*
 * test-ra.c — the Ricart–Agrawala machine (daemon/ra.c): hand-driven
 * scenarios (sequential and concurrent requests, tie breaks by name in both
 * index orders, deferral while held, Lamport clock rules, stale and
 * duplicate replies, withdrawal, link-up resends, 3/5/64 peers), then a
 * randomized simulation of 2..6 machines over FIFO channels that checks
 * mutual exclusion, liveness, fairness and the global order of entries at
 * every step, with and without faults (withdrawn requests, links cut with
 * their messages lost, spurious link-ups); the vector clocks the messages
 * carry put every entry causally after the exit before it.
 *
 * A failing simulation prints its seed and the last events; to replay one:
 *      DCHAT_RA_SEED=<seed> tests/unit/test-ra
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ra.h"
#include "tap.h"

/* --- helpers --------------------------------------------------------------------- */

static const char *kind_name(enum ra_action_kind k)
{
        switch (k) {
        case RA_GOT_REQUEST:
                return "GOT_REQUEST";
        case RA_GOT_REPLY:
                return "GOT_REPLY";
        case RA_SEND_REQUEST:
                return "SEND_REQUEST";
        case RA_SEND_REPLY:
                return "SEND_REPLY";
        case RA_DEFER:
                return "DEFER";
        case RA_ENTER:
                return "ENTER";
        case RA_EXIT:
                return "EXIT";
        case RA_WITHDRAW:
                return "WITHDRAW";
        case RA_QUEUED:
                return "QUEUED";
        case RA_SEND_TOKEN:
                return "SEND_TOKEN";
        case RA_SEND_RELEASE:
                return "SEND_RELEASE";
        case RA_SEND_PROBE:
                return "SEND_PROBE";
        case RA_SEND_ANSWER:
                return "SEND_ANSWER";
        case RA_SEND_END:
                return "SEND_END";
        case RA_REGENERATED:
                return "REGENERATED";
        case RA_DROPPED:
                return "DROPPED";
        }
        return "?";
}

/* "SEND_REQUEST(1,ts=3,c=3) ENTER(0,ts=3,c=5)" */
static const char *fmt_actions(const struct ra_actions *o)
{
        static char buf[4096];
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < o->n && off < sizeof buf - 64; i++)
                off += (size_t) snprintf(buf + off, sizeof buf - off, "%s%s(%u,ts=%" PRIu64 ",c=%" PRIu64 ")",
                                         i ? " " : "", kind_name(o->a[i].kind), o->a[i].peer, o->a[i].ts,
                                         o->a[i].clock);
        return o->n ? buf : "(none)";
}

static unsigned count(const struct ra_actions *o, enum ra_action_kind k)
{
        unsigned c = 0;

        for (unsigned i = 0; i < o->n; i++)
                c += o->a[i].kind == k;
        return c;
}

static const struct ra_action *find(const struct ra_actions *o, enum ra_action_kind k, unsigned peer)
{
        for (unsigned i = 0; i < o->n; i++)
                if (o->a[i].kind == k && o->a[i].peer == peer)
                        return &o->a[i];
        return NULL;
}

/* Exactly the given action (kind, peer, ts, clock) is in o. */
static bool has(const struct ra_actions *o, enum ra_action_kind k, unsigned peer, uint64_t ts, uint64_t clock)
{
        const struct ra_action *a = find(o, k, peer);

        return a && a->ts == ts && a->clock == clock;
}

/* o holds exactly one action, the one given. */
static bool only(const struct ra_actions *o, enum ra_action_kind k, unsigned peer, uint64_t ts, uint64_t clock)
{
        return o->n == 1 && has(o, k, peer, ts, clock);
}

/*
 * ra_release, with the note it starts with (EXIT when it held the
 * section, WITHDRAW when it only wanted it) checked and taken off, so that
 * o holds what goes out.  A missing or wrong note is counted in bad_notes.
 */
static unsigned bad_notes, releases;
static struct vclock note_vc;   /* the last note's vector clock */
static void release(struct ra *ra, struct ra_actions *o)
{
        enum ra_state was = ra->state;

        ra_release(ra, o);
        releases++;
        if (o->n)
                ra_action_vclock(ra, &o->a[0], &note_vc);
        if (was == RA_RELEASED) {
                bad_notes += o->n != 0;
                return;
        }
        if (o->n == 0 || o->a[0].kind != (was == RA_HELD ? RA_EXIT : RA_WITHDRAW) || o->a[0].peer != ra->self ||
            o->a[0].ts != ra->req_ts) {
                bad_notes++;
                return;
        }
        memmove(&o->a[0], &o->a[1], (o->n - 1) * sizeof o->a[0]);
        o->n--;
}

/* For "if (!ok(...)) show(&o);": prints what the machine did. */
static void show(const struct ra_actions *o)
{
        diag("  actions: %s", fmt_actions(o));
}

/* --- single peer ------------------------------------------------------------------- */

static void test_single(void)
{
        static const char *const names[] = { "solo" };
        struct ra ra;
        struct ra_actions o;

        ra_init(&ra, 1, 0, names);
        is_int(ra.state, RA_RELEASED, "n=1: starts released");
        is_int(ra.clock, 0, "n=1: clock starts at 0");
        is_int(ra_request(&ra, &o), 0, "n=1: ra_request succeeds");
        if (!ok(only(&o, RA_ENTER, 0, 1, 1), "n=1: the request enters at once, ts 1, no sends"))
                show(&o);
        is_int(ra.state, RA_HELD, "n=1: held");
        is_int(ra_request(&ra, &o), -1, "n=1: a second request while held is refused");
        is_int(o.n, 0, "n=1: ... with no actions");
        release(&ra, &o);
        is_int(o.n, 0, "n=1: release sends nothing");
        is_int(ra.state, RA_RELEASED, "n=1: released again");
        release(&ra, &o);
        is_int(o.n, 0, "n=1: a release while released does nothing");
        is_int(ra_request(&ra, &o), 0, "n=1: request again");
        if (!ok(only(&o, RA_ENTER, 0, 2, 2), "n=1: enters with ts 2"))
                show(&o);
        is_str(ra_state_name(RA_RELEASED), "released", "ra_state_name(RELEASED)");
        is_str(ra_state_name(RA_WANTED), "wanted", "ra_state_name(WANTED)");
        is_str(ra_state_name(RA_HELD), "held", "ra_state_name(HELD)");
        is_str(ra_state_name((enum ra_state) 7), "?", "ra_state_name(unknown)");
}

/* --- two peers ------------------------------------------------------------------------ */

static void test_two_sequential(void)
{
        static const char *const names[] = { "a", "b" };
        struct ra A, B;
        struct ra_actions o;

        ra_init(&A, 2, 0, names);
        ra_init(&B, 2, 1, names);

        is_int(ra_request(&A, &o), 0, "seq: a requests");
        if (!ok(only(&o, RA_SEND_REQUEST, 1, 1, 1), "seq: REQUEST(ts 1) to b, clock 1, no ENTER"))
                show(&o);
        is_int(A.state, RA_WANTED, "seq: a wanted");
        is_int(A.req_ts, 1, "seq: a's req_ts = its clock");

        ra_on_request(&B, 0, 1, NULL, &o);
        if (!ok(o.n == 2 && o.a[0].kind == RA_GOT_REQUEST && has(&o, RA_GOT_REQUEST, 0, 1, 2) &&
           has(&o, RA_SEND_REPLY, 0, 1, 3), "seq: b notes the request (clock 2) and replies (clock 3)"))
                show(&o);
        is_int(B.deferred, 0, "seq: b defers nothing");

        ra_on_reply(&A, 1, 3, 1, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_GOT_REPLY, 1, 1, 4) && has(&o, RA_ENTER, 0, 1, 4) && o.a[1].kind == RA_ENTER,
           "seq: a notes the reply (clock 4), then ENTER"))
                show(&o);
        is_int(A.state, RA_HELD, "seq: a held");

        release(&A, &o);
        is_int(o.n, 0, "seq: release with nothing deferred sends nothing");
        is_int(A.state, RA_RELEASED, "seq: a released");
        is_int(A.clock, 4, "seq: release without sends leaves the clock");
        is_int(A.req_ts, 1, "seq: (req_ts keeps its last value; only meaningful while wanted/held)");

        /* now b's turn, the other way round */
        is_int(ra_request(&B, &o), 0, "seq: b requests");
        if (!ok(only(&o, RA_SEND_REQUEST, 0, 4, 4), "seq: b's REQUEST carries ts 4 (its clock 3, +1)"))
                show(&o);
        ra_on_request(&A, 1, 4, NULL, &o);
        if (!ok(has(&o, RA_SEND_REPLY, 1, 4, 6) && !find(&o, RA_DEFER, 1), "seq: a (released) replies at once"))
                show(&o);
        ra_on_reply(&B, 0, 6, 4, NULL, &o);
        if (!ok(has(&o, RA_ENTER, 1, 4, 7), "seq: b enters with ts 4, clock 7"))
                show(&o);
}

/*
 * Concurrent requests with different timestamps.  older/younger are indexes
 * in names; the older one's clock starts lower.
 */
static void concurrent_case(unsigned older, unsigned younger, const char *label)
{
        static const char *const names[] = { "a", "b" };
        struct ra R[2];
        struct ra_actions o;
        struct ra *O = &R[older], *Y = &R[younger];

        ra_init(&R[0], 2, 0, names);
        ra_init(&R[1], 2, 1, names);
        Y->clock = 5;   /* the younger has seen more */

        ra_request(O, &o);
        if (!ok(only(&o, RA_SEND_REQUEST, younger, 1, 1), "%s: older sends REQUEST ts 1", label))
                show(&o);
        ra_request(Y, &o);
        if (!ok(only(&o, RA_SEND_REQUEST, older, 6, 6), "%s: younger sends REQUEST ts 6", label))
                show(&o);

        /* the younger's request reaches the older: deferred */
        ra_on_request(O, younger, 6, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_GOT_REQUEST, younger, 6, 7) && has(&o, RA_DEFER, younger, 6, 7),
           "%s: older defers the younger (DEFER ts 6, clock 7), no reply", label))
                show(&o);
        ok(O->deferred == (UINT64_C(1) << younger) && O->deferred_ts[younger] == 6,
           "%s: older owes the younger a reply for ts 6", label);

        /* the older's request reaches the younger: replied */
        ra_on_request(Y, older, 1, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_GOT_REQUEST, older, 1, 7) && has(&o, RA_SEND_REPLY, older, 1, 8),
           "%s: younger replies to the older (ts 1, clock 8)", label))
                show(&o);
        is_int(Y->deferred, 0, "%s: younger defers nothing", label);
        is_int(Y->state, RA_WANTED, "%s: younger still wanted", label);

        ra_on_reply(O, younger, 8, 1, NULL, &o);
        if (!ok(has(&o, RA_ENTER, older, 1, 9), "%s: older enters (clock 9)", label))
                show(&o);
        ok(O->state == RA_HELD && Y->state == RA_WANTED, "%s: older held, younger waiting", label);

        release(O, &o);
        if (!ok(only(&o, RA_SEND_REPLY, younger, 6, 10), "%s: release sends the deferred reply, ts 6, clock 10", label))
                show(&o);
        is_int(O->deferred, 0, "%s: nothing owed after the release", label);

        ra_on_reply(Y, older, 10, 6, NULL, &o);
        if (!ok(has(&o, RA_ENTER, younger, 6, 11), "%s: younger enters (clock 11)", label))
                show(&o);
}

/* Equal timestamps: "a" beats "b" on both sides, whatever the index order. */
static void tie_case(const char *const names[2], const char *label)
{
        unsigned ia = strcmp(names[0], "a") == 0 ? 0 : 1, ib = 1 - ia;
        struct ra R[2];
        struct ra_actions oa, ob, o;

        ra_init(&R[0], 2, 0, names);
        ra_init(&R[1], 2, 1, names);

        ra_request(&R[ia], &oa);
        ra_request(&R[ib], &ob);
        ok(only(&oa, RA_SEND_REQUEST, ib, 1, 1) && only(&ob, RA_SEND_REQUEST, ia, 1, 1),
           "%s: both request with ts 1", label);
        for (unsigned s = 0; s < 2; s++)
                ok(ra_precedes(&R[s], 1, ia, 1, ib) && !ra_precedes(&R[s], 1, ib, 1, ia),
                   "%s: on %s, (1,a) precedes (1,b) and not the reverse", label, names[s]);
        ok(!ra_precedes(&R[0], 1, ia, 1, ia), "%s: a request does not precede itself", label);
        ok(ra_precedes(&R[0], 1, ib, 2, ia) && !ra_precedes(&R[0], 2, ia, 1, ib),
           "%s: a smaller timestamp wins over the name", label);

        ra_on_request(&R[ia], ib, 1, NULL, &o);
        if (!ok(find(&o, RA_DEFER, ib) && !find(&o, RA_SEND_REPLY, ib), "%s: a defers b", label))
                show(&o);
        ra_on_request(&R[ib], ia, 1, NULL, &o);
        if (!ok(has(&o, RA_SEND_REPLY, ia, 1, 3) && !find(&o, RA_DEFER, ia), "%s: b replies to a", label))
                show(&o);

        ra_on_reply(&R[ia], ib, 3, 1, NULL, &o);
        if (!ok(find(&o, RA_ENTER, ia) != NULL, "%s: a enters", label))
                show(&o);
        ok(R[ia].state == RA_HELD && R[ib].state == RA_WANTED, "%s: only a is held", label);
        release(&R[ia], &o);
        if (!ok(only(&o, RA_SEND_REPLY, ib, 1, 5), "%s: a's release replies to b's ts 1", label))
                show(&o);
        ra_on_reply(&R[ib], ia, 5, 1, NULL, &o);
        if (!ok(find(&o, RA_ENTER, ib) != NULL, "%s: then b enters", label))
                show(&o);
}

static void test_concurrent(void)
{
        static const char *const in_order[] = { "a", "b" };
        static const char *const reversed[] = { "b", "a" };

        concurrent_case(0, 1, "concurrent, older at index 0");
        concurrent_case(1, 0, "concurrent, older at index 1");
        tie_case(in_order, "tie, names in index order");
        tie_case(reversed, "tie, names reversed");
}

/* --- deferral while held ----------------------------------------------------------- */

static void test_defer_held(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        A.clock = 10;
        ra_request(&A, &o);                     /* ts 11 */
        ra_on_reply(&A, 1, 12, 11, NULL, &o);
        ra_on_reply(&A, 2, 12, 11, NULL, &o);
        if (!ok(A.state == RA_HELD && find(&o, RA_ENTER, 0), "held: a holds with ts 11"))
                show(&o);

        /* an older request (ts 3 < 11), e.g. a delayed one: still deferred */
        ra_on_request(&A, 1, 3, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_DEFER, 1, 3, 15), "held: an older request (ts 3) is deferred while held"))
                show(&o);
        /* a younger one, and one that ties on ts with a smaller name than... no: b, c > a anyway */
        ra_on_request(&A, 2, 40, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_DEFER, 2, 40, 41), "held: a younger request (ts 40) is deferred"))
                show(&o);
        is_int(count(&o, RA_SEND_REPLY), 0, "held: no reply goes out while held");

        release(&A, &o);
        if (!ok(o.n == 2 && has(&o, RA_SEND_REPLY, 1, 3, 42) && has(&o, RA_SEND_REPLY, 2, 40, 43),
           "held: release replies to both, each with its request's ts, clock +1 per send"))
                show(&o);

        /* held by "b" (index 1, larger name): a request from "a" with the same ts is deferred too */
        struct ra B;
        ra_init(&B, 3, 1, names);
        ra_request(&B, &o);                     /* ts 1 */
        ra_on_reply(&B, 0, 2, 1, NULL, &o);
        ra_on_reply(&B, 2, 2, 1, NULL, &o);
        ok(B.state == RA_HELD, "held: b holds with ts 1");
        ra_on_request(&B, 0, 1, NULL, &o);
        if (!ok(find(&o, RA_DEFER, 0) && !find(&o, RA_SEND_REPLY, 0),
           "held: (1,a) precedes (1,b) but is deferred while b holds"))
                show(&o);
}

/* --- clocks -------------------------------------------------------------------------------- */

static void test_clocks(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        A.clock = 3;
        ra_on_request(&A, 1, 10, NULL, &o);
        if (!ok(o.n == 2 && o.a[0].kind == RA_GOT_REQUEST && has(&o, RA_GOT_REQUEST, 1, 10, 11) &&
           has(&o, RA_SEND_REPLY, 1, 10, 12),
           "clock: receive ts 10 at clock 3: note at max(3,10)+1 = 11, reply sent at 12"))
                show(&o);
        is_int(A.clock, 12, "clock: the machine's clock is the last action's");

        ra_on_request(&A, 2, 5, NULL, &o);
        if (!ok(has(&o, RA_GOT_REQUEST, 2, 5, 13) && has(&o, RA_SEND_REPLY, 2, 5, 14),
           "clock: receive ts 5 at clock 12: max(12,5)+1 = 13, reply 14"))
                show(&o);

        ra_on_request(&A, 1, 14, NULL, &o);
        if (!ok(has(&o, RA_GOT_REQUEST, 1, 14, 15), "clock: receive ts equal to the clock: 15"))
                show(&o);

        /* a reply moves the clock even when it grants nothing */
        ra_on_reply(&A, 1, 100, 7, NULL, &o);
        if (!ok(only(&o, RA_GOT_REPLY, 1, 7, 101), "clock: a reply (clock 100) while released: noted at 101, nothing else"))
                show(&o);
        ra_on_reply(&A, 2, 50, 7, NULL, &o);
        if (!ok(only(&o, RA_GOT_REPLY, 2, 7, 102), "clock: a reply with an older clock: max(101,50)+1 = 102"))
                show(&o);

        /* a request is one event: the clock goes up once, all REQUESTs carry it */
        ra_request(&A, &o);
        if (!ok(o.n == 2 && has(&o, RA_SEND_REQUEST, 1, 103, 103) && has(&o, RA_SEND_REQUEST, 2, 103, 103),
           "clock: ra_request: ts = clock = 103 on every REQUEST"))
                show(&o);

        /* DEFER carries the clock after the receive */
        ra_on_request(&A, 1, 200, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_DEFER, 1, 200, 201), "clock: DEFER at max(103,200)+1 = 201"))
                show(&o);

        /* ENTER carries the clock after the last reply */
        ra_on_reply(&A, 1, 150, 103, NULL, &o);
        if (!ok(only(&o, RA_GOT_REPLY, 1, 103, 202), "clock: first reply noted at 202, no ENTER yet"))
                show(&o);
        ra_on_reply(&A, 2, 300, 103, NULL, &o);
        if (!ok(o.n == 2 && has(&o, RA_GOT_REPLY, 2, 103, 301) && has(&o, RA_ENTER, 0, 103, 301),
           "clock: last reply (clock 300): noted and ENTER at 301"))
                show(&o);

        /* the end of the range: the clock saturates, it never wraps to 0 (peer.c and the
         * server refuse such values before they get here: the last line of defence) */
        {
                struct ra Z;
                ra_init(&Z, 3, 0, names);
                ra_on_request(&Z, 1, UINT64_MAX, NULL, &o);
                ok(Z.clock == UINT64_MAX && has(&o, RA_SEND_REPLY, 1, UINT64_MAX, UINT64_MAX),
                   "clock: a request at 2^64-1: the clock stays at 2^64-1, the reply too (no wrap to 0)");
                ra_request(&Z, &o);
                ok(Z.clock == UINT64_MAX && Z.req_ts == UINT64_MAX, "clock: a request at the end of the range: still 2^64-1");
                ra_on_reply(&Z, 1, UINT64_MAX, UINT64_MAX, NULL, &o);
                ra_on_reply(&Z, 2, UINT64_MAX - 1, UINT64_MAX, NULL, &o);
                ok(Z.state == RA_HELD && Z.clock == UINT64_MAX, "clock: replies at the end of the range: entered, 2^64-1");
                release(&Z, &o);
                ok(Z.clock == UINT64_MAX, "clock: release at the end of the range: 2^64-1");
        }

        ra_on_request(&A, 2, 10, NULL, &o);
        if (!ok(has(&o, RA_DEFER, 2, 10, 302), "clock: deferred while held at 302"))
                show(&o);

        /* release: every reply is a send, +1 each, in peer order */
        release(&A, &o);
        if (!ok(o.n == 2 && o.a[0].peer == 1 && has(&o, RA_SEND_REPLY, 1, 200, 303) && has(&o, RA_SEND_REPLY, 2, 10, 304),
           "clock: release: REPLY to b (ts 200) at 303, to c (ts 10) at 304"))
                show(&o);
        is_int(A.clock, 304, "clock: 304 after the release");

        /* the clock never goes down, whatever comes in */
        uint64_t before = A.clock;
        ra_on_request(&A, 1, 0, NULL, &o);
        ok(A.clock > before, "clock: a request with ts 0 still moves the clock forward");
}

/* --- stale and duplicate replies ------------------------------------------------------ */

static void test_stale_replies(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        ra_request(&A, &o);                     /* ts 1 */
        uint64_t want = A.awaiting;

        ra_on_reply(&A, 1, 1, 0, NULL, &o);
        if (!ok(only(&o, RA_GOT_REPLY, 1, 0, 2), "stale: a reply naming ts 0 is noted only"))
                show(&o);
        ra_on_reply(&A, 1, 1, 99, NULL, &o);
        if (!ok(o.n == 1 && o.a[0].kind == RA_GOT_REPLY, "stale: a reply naming ts 99 is noted only"))
                show(&o);
        is_int(A.awaiting, want, "stale: still awaiting b and c");

        ra_on_reply(&A, 1, 1, 1, NULL, &o);
        if (!ok(o.n == 1 && !find(&o, RA_ENTER, 0), "stale: b's right reply: no ENTER yet (c missing)"))
                show(&o);
        ra_on_reply(&A, 1, 1, 1, NULL, &o);
        if (!ok(o.n == 1 && !find(&o, RA_ENTER, 0), "stale: b's reply again grants nothing"))
                show(&o);
        is_int(A.state, RA_WANTED, "stale: still wanted after a duplicate");
        ra_on_reply(&A, 2, 1, 1, NULL, &o);
        if (!ok(find(&o, RA_ENTER, 0) != NULL, "stale: c's reply: ENTER"))
                show(&o);
        ra_on_reply(&A, 2, 1, 1, NULL, &o);
        if (!ok(o.n == 1 && o.a[0].kind == RA_GOT_REPLY, "stale: a duplicate reply while held: no second ENTER"))
                show(&o);
        is_int(A.state, RA_HELD, "stale: still held");

        release(&A, &o);
        ra_on_reply(&A, 1, 1, 1, NULL, &o);
        if (!ok(o.n == 1 && o.a[0].kind == RA_GOT_REPLY && A.state == RA_RELEASED,
           "stale: a reply while released is ignored (beyond the clock)"))
                show(&o);

        /* the old request's replies must not count for the next request */
        ra_request(&A, &o);
        uint64_t ts = A.req_ts;
        ra_on_reply(&A, 1, 1, 1, NULL, &o);
        ra_on_reply(&A, 2, 1, 1, NULL, &o);
        ok(A.state == RA_WANTED && count(&o, RA_ENTER) == 0, "stale: replies to the previous request (ts 1) "
           "grant nothing to the new one (ts %" PRIu64 ")", ts);

        /* nonsense peers */
        uint64_t c = A.clock;
        ra_on_reply(&A, 0, 1000, ts, NULL, &o);
        ok(o.n == 0 && A.clock == c, "stale: a reply from self is dropped, clock untouched");
        ra_on_reply(&A, 3, 1000, ts, NULL, &o);
        ok(o.n == 0 && A.clock == c, "stale: a reply from peer 3 (n = 3) is dropped");
        ra_on_request(&A, 0, 1000, NULL, &o);
        ok(o.n == 0 && A.clock == c, "stale: a request from self is dropped");
        ra_on_request(&A, 64, 1000, NULL, &o);
        ok(o.n == 0 && A.clock == c, "stale: a request from peer 64 is dropped");
        ra_link_up(&A, 0, true, &o);
        is_int(o.n, 0, "stale: link_up(self) does nothing");
        ra_link_up(&A, 5, true, &o);
        is_int(o.n, 0, "stale: link_up(out of range) does nothing");
}

/* --- withdrawal ---------------------------------------------------------------------------- */

static void test_withdraw(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        ra_request(&A, &o);                     /* ts 1 */
        ra_on_request(&A, 1, 5, NULL, &o);            /* b's younger request: deferred; clock 6 */
        if (!ok(find(&o, RA_DEFER, 1) != NULL, "withdraw: a defers b's ts 5"))
                show(&o);
        ra_on_reply(&A, 2, 2, 1, NULL, &o);           /* c replied; clock 7 */
        ok(A.state == RA_WANTED, "withdraw: a still wanted (b has not replied)");

        release(&A, &o);
        if (!ok(only(&o, RA_SEND_REPLY, 1, 5, 8), "withdraw: giving up sends the deferred reply to b (ts 5)"))
                show(&o);
        ok(A.state == RA_RELEASED && A.deferred == 0 && A.awaiting == 0, "withdraw: released, nothing owed or awaited");

        ra_on_reply(&A, 1, 9, 1, NULL, &o);
        if (!ok(only(&o, RA_GOT_REPLY, 1, 1, 10) && A.state == RA_RELEASED,
           "withdraw: b's late reply to the withdrawn request is ignored"))
                show(&o);

        is_int(ra_request(&A, &o), 0, "withdraw: a new request works");
        if (!ok(o.n == 2 && has(&o, RA_SEND_REQUEST, 1, 11, 11) && has(&o, RA_SEND_REQUEST, 2, 11, 11),
           "withdraw: REQUEST ts 11 to b and c (c's old reply does not count)"))
                show(&o);
        ra_on_reply(&A, 2, 3, 1, NULL, &o);
        ra_on_reply(&A, 1, 3, 1, NULL, &o);
        ok(A.state == RA_WANTED, "withdraw: replies to ts 1 grant nothing to ts 11");
        ra_on_reply(&A, 1, 12, 11, NULL, &o);
        ok(count(&o, RA_ENTER) == 0, "withdraw: b's reply to ts 11: not yet");
        ra_on_reply(&A, 2, 12, 11, NULL, &o);
        if (!ok(has(&o, RA_ENTER, 0, 11, A.clock), "withdraw: c's reply to ts 11: ENTER"))
                show(&o);

        /* a withdrawal with nothing deferred sends nothing */
        struct ra B;
        ra_init(&B, 3, 1, names);
        ra_request(&B, &o);
        release(&B, &o);
        ok(o.n == 0 && B.state == RA_RELEASED, "withdraw: giving up with nothing owed sends nothing");
}

/* --- link up ---------------------------------------------------------------------------------- */

static void test_link_up(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A, B;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        ra_link_up(&A, 1, true, &o);
        is_int(o.n, 0, "link_up: released: nothing to resend");

        ra_request(&A, &o);                     /* ts 1, clock 1 */
        ra_on_reply(&A, 1, 4, 1, NULL, &o);           /* b replied; clock 5 */
        ra_link_up(&A, 1, true, &o);
        is_int(o.n, 0, "link_up: wanted, but b already replied: nothing");
        ra_link_up(&A, 2, true, &o);
        if (!ok(only(&o, RA_SEND_REQUEST, 2, 1, 5), "link_up: wanted and awaiting c: REQUEST ts 1 again (clock as is, 5)"))
                show(&o);
        is_int(A.clock, 5, "link_up: a resend does not move the clock");
        is_int(A.req_ts, 1, "link_up: nor the request's ts");
        ra_on_reply(&A, 2, 6, 1, NULL, &o);
        ok(find(&o, RA_ENTER, 0) != NULL, "link_up: enters on c's reply");
        ra_link_up(&A, 2, true, &o);
        is_int(o.n, 0, "link_up: held: nothing to resend");

        /* the receiving side: a repeated request while it is still deferred */
        ra_init(&B, 3, 1, names);
        ra_request(&B, &o);                     /* b: ts 1 */
        ra_on_request(&B, 2, 1, NULL, &o);            /* (1,b) < (1,c): deferred */
        ok(find(&o, RA_DEFER, 2) != NULL, "link_up: b defers c's ts 1");
        ra_on_request(&B, 2, 1, NULL, &o);            /* c's link came back up: the same request again */
        if (!ok(o.n == 2 && find(&o, RA_DEFER, 2) && find(&o, RA_DEFER, 2)->ts == 1 && !find(&o, RA_SEND_REPLY, 2),
           "link_up: the repeat is deferred again, no reply"))
                show(&o);
        ok(B.deferred == UINT64_C(1) << 2 && B.deferred_ts[2] == 1, "link_up: still one reply owed, for ts 1");
        ra_on_reply(&B, 0, 1, 1, NULL, &o);
        ra_on_reply(&B, 2, 1, 1, NULL, &o);
        ok(B.state == RA_HELD, "link_up: b enters");
        ra_on_request(&B, 2, 1, NULL, &o);
        ok(find(&o, RA_DEFER, 2) && !find(&o, RA_SEND_REPLY, 2), "link_up: a repeat while held: deferred again");
        release(&B, &o);
        if (!ok(o.n == 1 && has(&o, RA_SEND_REPLY, 2, 1, B.clock), "link_up: release: exactly one reply to c, ts 1"))
                show(&o);

        /* a repeated request that was replied to is replied to again */
        ra_on_request(&B, 2, 1, NULL, &o);
        if (!ok(o.n == 2 && find(&o, RA_SEND_REPLY, 2) && find(&o, RA_SEND_REPLY, 2)->ts == 1,
           "link_up: a repeat after the reply: replied again (the requester drops the duplicate)"))
                show(&o);
        ra_on_request(&B, 0, 7, NULL, &o);
        ra_on_request(&B, 0, 7, NULL, &o);
        ok(find(&o, RA_SEND_REPLY, 0) && count(&o, RA_DEFER) == 0, "link_up: released: a repeat is replied again");
}

/* --- 3, 5 and 64 peers ---------------------------------------------------------------------- */

static void all_replies_case(unsigned n, unsigned self)
{
        static const char *const names64[64] = {
                "n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09", "n10", "n11", "n12",
                "n13", "n14", "n15", "n16", "n17", "n18", "n19", "n20", "n21", "n22", "n23", "n24", "n25",
                "n26", "n27", "n28", "n29", "n30", "n31", "n32", "n33", "n34", "n35", "n36", "n37", "n38",
                "n39", "n40", "n41", "n42", "n43", "n44", "n45", "n46", "n47", "n48", "n49", "n50", "n51",
                "n52", "n53", "n54", "n55", "n56", "n57", "n58", "n59", "n60", "n61", "n62", "n63",
        };
        struct ra R;
        struct ra_actions o;
        bool sends_ok = true, early = false;

        ra_init(&R, n, self, names64);
        ra_request(&R, &o);
        for (unsigned i = 0; i < n; i++)
                if ((i == self) != !find(&o, RA_SEND_REQUEST, i))
                        sends_ok = false;
        ok(sends_ok && o.n == n - 1 && count(&o, RA_SEND_REQUEST) == n - 1,
           "n=%u self=%u: one REQUEST to each other peer, none to self", n, self);

        /* replies in reverse index order; ENTER only on the last one */
        unsigned left = n - 1;
        for (unsigned k = n; k-- > 0;) {
                if (k == self)
                        continue;
                ra_on_reply(&R, k, 1, R.req_ts, NULL, &o);
                left--;
                if (left > 0 && count(&o, RA_ENTER))
                        early = true;
                if (left == 0)
                        if (!ok(count(&o, RA_ENTER) == 1 && R.state == RA_HELD,
                           "n=%u self=%u: ENTER on the last reply (from %u)", n, self, k))
                                show(&o);
        }
        ok(!early, "n=%u self=%u: no ENTER before the last reply", n, self);

        /* all defer-able, then released: one reply each */
        for (unsigned k = 0; k < n; k++)
                if (k != self)
                        ra_on_request(&R, k, 1000 + k, NULL, &o);
        release(&R, &o);
        bool replies_ok = o.n == n - 1;
        for (unsigned k = 0; k < n; k++)
                if (k != self && !(find(&o, RA_SEND_REPLY, k) && find(&o, RA_SEND_REPLY, k)->ts == 1000 + k))
                        replies_ok = false;
        ok(replies_ok, "n=%u self=%u: release answers every deferred peer with its ts", n, self);
}

static void test_many(void)
{
        all_replies_case(3, 0);
        all_replies_case(3, 2);
        all_replies_case(5, 0);
        all_replies_case(5, 2);
        all_replies_case(5, 4);
        all_replies_case(64, 0);
        all_replies_case(64, 63);       /* bit 63 */
        all_replies_case(64, 31);
}

/* --- Roucairol–Carvalho ----------------------------------------------------------------------------- */

static void test_reuse(void)
{
        static const char *const names[] = { "a", "b", "c" };
        struct ra A, B, C;
        struct ra_actions o;

        ra_init(&A, 3, 0, names);
        ra_init(&B, 3, 1, names);
        ra_init(&C, 3, 2, names);
        ra_set_reuse(&A, true);
        ra_set_reuse(&B, true);
        ra_set_reuse(&C, true);

        /* first entry: nothing held yet, so a asks both */
        ra_request(&A, &o);
        ok(count(&o, RA_SEND_REQUEST) == 2 && A.asked == 6, "rc: the first request asks every other peer");
        ra_on_request(&B, 0, A.req_ts, NULL, &o);
        ra_on_reply(&A, 1, o.a[1].clock, A.req_ts, NULL, &o);
        ra_on_request(&C, 0, A.req_ts, NULL, &o);
        ra_on_reply(&A, 2, o.a[1].clock, A.req_ts, NULL, &o);
        is_int(A.state, RA_HELD, "rc: a entered with both replies");
        ok(A.held == 6 && A.enter_ts == A.clock, "rc: a holds b's and c's permissions; enter_ts is the clock at entry");
        release(&A, &o);
        is_int(o.n, 0, "rc: release with nothing deferred sends nothing");
        is_int(A.held, 6, "rc: ... and keeps the permissions");

        /* again, nobody else asked: in at once, no message */
        uint64_t last_enter = A.enter_ts;
        is_int(ra_request(&A, &o), 0, "rc: a requests again");
        if (!ok(only(&o, RA_ENTER, 0, A.req_ts, A.clock), "rc: ENTER at once, no message (0 = 2(N-1) saved)"))
                show(&o);
        ok(A.asked == 0 && A.enter_ts > last_enter, "rc: nobody asked; the entry's fence is above the last one");
        /* b asks while a is inside: deferred; the permission goes back at release */
        ra_request(&B, &o);
        ok(count(&o, RA_SEND_REQUEST) == 2, "rc: b holds nothing: it asks a and c");
        uint64_t bts = B.req_ts;
        ra_on_request(&A, 1, bts, NULL, &o);
        ok(find(&o, RA_DEFER, 1) != NULL, "rc: a (held) defers b");
        ra_on_request(&C, 1, bts, NULL, &o);
        ra_on_reply(&B, 2, o.a[1].clock, bts, NULL, &o);
        release(&A, &o);
        if (!ok(count(&o, RA_SEND_REPLY) == 1 && find(&o, RA_SEND_REPLY, 1), "rc: a's release replies to b"))
                show(&o);
        is_int(A.held, 4, "rc: a gave b's permission back and keeps c's");
        ra_on_reply(&B, 0, o.a[0].clock, bts, NULL, &o);
        is_int(B.state, RA_HELD, "rc: b enters");
        ok(B.enter_ts > A.enter_ts, "rc: b's enter_ts is above a's last (the reply carried a's clock)");
        release(&B, &o);

        /* a wants again: it asks b only (c's permission is still with it) */
        ra_request(&A, &o);
        if (!ok(count(&o, RA_SEND_REQUEST) == 1 && find(&o, RA_SEND_REQUEST, 1) && A.asked == 2,
                "rc: a asks only b, whose permission it gave away"))
                show(&o);
        uint64_t ats = A.req_ts;
        /* meanwhile c asks with an older request: a gives c's permission back and asks c again */
        /* (a request older than a's: ts 1) */
        ra_on_request(&A, 2, 1, NULL, &o);
        if (!ok(find(&o, RA_SEND_REPLY, 2) && find(&o, RA_SEND_REQUEST, 2) && find(&o, RA_SEND_REQUEST, 2)->ts == ats,
                "rc: an older request on a reused permission: a replies and asks for it again"))
                show(&o);
        ok(!(A.held & 4) && (A.awaiting & 4) && (A.asked & 4), "rc: ... c's permission is no longer held, now awaited");
        /* a younger request on a held permission is deferred, and nothing is asked */
        ra_on_reply(&A, 1, 100, ats, NULL, &o);
        ra_on_reply(&A, 2, 101, ats, NULL, &o);
        is_int(A.state, RA_HELD, "rc: a enters with b's and c's replies");
        release(&A, &o);
        ra_request(&A, &o);
        is_int(A.state, RA_HELD, "rc: and again at once");
        ra_on_request(&A, 1, A.req_ts + 5, NULL, &o);
        ok(find(&o, RA_DEFER, 1) && !find(&o, RA_SEND_REQUEST, 1), "rc: a younger request is deferred, nothing asked");
        release(&A, &o);
        ok(find(&o, RA_SEND_REPLY, 1) && !(A.held & 2), "rc: released: the deferred reply goes out with the permission");

        /* the failure detector: a dead or restarted peer's permission is forgotten */
        ok(A.held & 4, "rc: a holds c's permission");
        ra_peer_down(&A, 2, &o);
        ok(!(A.held & 4), "rc: c declared dead: its permission forgotten");
        ra_peer_up(&A, 2, false, &o);
        ra_request(&A, &o);
        ok(find(&o, RA_SEND_REQUEST, 2) != NULL, "rc: c back: a asks it again before entering");
        ra_on_reply(&A, 2, 500, A.req_ts, NULL, &o);
        ra_on_reply(&A, 1, 501, A.req_ts, NULL, &o);
        is_int(A.state, RA_HELD, "rc: a enters");
        release(&A, &o);
        ok((A.held & 6) == 6, "rc: a holds both again");
        ra_peer_up(&A, 2, true, &o);
        ok(!(A.held & 4) && (A.held & 2), "rc: c restarted: its permission (and only its) forgotten");
        ra_request(&A, &o);
        ok(only(&o, RA_SEND_REQUEST, 2, A.req_ts, A.clock), "rc: the next request asks c only");

        /* reuse off again: every request asks everyone, permissions or not */
        ra_init(&A, 3, 0, names);
        ra_set_reuse(&A, false);
        ra_request(&A, &o);
        ra_on_reply(&A, 1, 10, A.req_ts, NULL, &o);
        ra_on_reply(&A, 2, 11, A.req_ts, NULL, &o);
        release(&A, &o);
        ra_request(&A, &o);
        ok(count(&o, RA_SEND_REQUEST) == 2, "plain RA: the second request asks everyone again");
}

/* --- randomized simulation ------------------------------------------------------------------------ */

#define SIM_PEERS 6
#define CHAN_CAP 512
#define SIM_K 3                 /* entries per peer */
#define SIM_MAX_STEPS 20000
#define TRACE 24

enum { M_REQUEST, M_REPLY };

struct msg {
        uint8_t kind;
        uint64_t a, b;          /* REQUEST: ts; REPLY: clock, req_ts */
        uint64_t vc[6];         /* the sender's vector clock (SIM_PEERS components) */
};

struct chan {
        struct msg m[CHAN_CAP];
        unsigned head, len;
};

struct sim {
        unsigned n;
        bool faults;
        bool reuse;             /* Roucairol–Carvalho on every machine */
        uint64_t seed, rng;
        struct ra ra[SIM_PEERS];
        const char *names[SIM_PEERS];
        struct chan ch[SIM_PEERS][SIM_PEERS];   /* [from][to] */
        unsigned entries[SIM_PEERS];
        uint64_t last_clock[SIM_PEERS];
        bool entered_any;
        bool exited_any;
        struct vclock last_exit;        /* the vector clock of the last EXIT, across peers */
        uint64_t last_ts;       /* (ts, node) of the last ENTER, across peers */
        uint64_t last_enter_ts; /* (enter_ts, node) of the last ENTER */
        unsigned last_who;
        bool seen[SIM_PEERS][SIM_PEERS];        /* [q][p]: p received q's pending request */
        unsigned overtakes[SIM_PEERS][SIM_PEERS]; /* [q][p]: p's entries since then */
        unsigned asked_now[SIM_PEERS];          /* REQUESTs sent for p's pending request */
        unsigned step;
        char trace[TRACE][160];
        unsigned ntrace;
        char why[256];
        /* statistics */
        unsigned long steps, enters, deferrals, withdrawals, cuts, dups, lost, ties;
        unsigned long msgs, free_enters;        /* REQUEST + REPLY sent; entries with none asked */
};

/* q's request is over (entered, withdrawn): nobody overtakes it any more */
static void forget_request(struct sim *s, unsigned q)
{
        for (unsigned p = 0; p < SIM_PEERS; p++) {
                s->seen[q][p] = false;
                s->overtakes[q][p] = 0;
        }
}

static uint64_t xorshift(struct sim *s)
{
        uint64_t x = s->rng;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return s->rng = x;
}

static unsigned rnd(struct sim *s, unsigned n)
{
        return (unsigned) (xorshift(s) % n);
}

__attribute__((format(printf, 2, 3)))
static void tr(struct sim *s, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->trace[s->ntrace++ % TRACE], sizeof s->trace[0], fmt, ap);
        va_end(ap);
}

__attribute__((format(printf, 2, 3)))
static bool fail(struct sim *s, const char *fmt, ...)
{
        va_list ap;

        if (s->why[0])
                return false;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
        return false;
}

static bool push(struct sim *s, unsigned from, unsigned to, struct msg m)
{
        struct chan *c = &s->ch[from][to];

        if (c->len == CHAN_CAP)
                return fail(s, "channel %u->%u overflows", from, to);
        c->m[(c->head + c->len++) % CHAN_CAP] = m;
        return true;
}

/* The order the checks use, independent of ra_precedes(): (ts, name). */
static bool before(const struct sim *s, uint64_t ts_a, unsigned a, uint64_t ts_b, unsigned b)
{
        return ts_a != ts_b ? ts_a < ts_b : strcmp(s->names[a], s->names[b]) < 0;
}

static bool held_count_ok(struct sim *s)
{
        unsigned held = 0;

        for (unsigned i = 0; i < s->n; i++)
                held += s->ra[i].state == RA_HELD;
        if (held > 1) {
                char who[64] = "";
                for (unsigned i = 0; i < s->n; i++)
                        if (s->ra[i].state == RA_HELD)
                                snprintf(who + strlen(who), sizeof who - strlen(who), " %s", s->names[i]);
                return fail(s, "mutual exclusion: %u peers held:%s", held, who);
        }
        return true;
}

/* Carry out what peer p's machine asked for, checking it on the way. */
/* A message of action a of peer p, with p's vector clock at a. */
static bool push_vc(struct sim *s, unsigned p, const struct ra_action *a, struct msg m)
{
        struct vclock v;

        ra_action_vclock(&s->ra[p], a, &v);
        for (unsigned i = 0; i < s->n; i++)
                m.vc[i] = v.c[i];
        return push(s, p, a->peer, m);
}

static bool run(struct sim *s, unsigned p, const struct ra_actions *o)
{
        struct ra *r = &s->ra[p];
        uint64_t prev = s->last_clock[p];

        tr(s, "step %u: %s -> %s", s->step, s->names[p], fmt_actions(o));
        for (unsigned i = 0; i < o->n; i++) {
                const struct ra_action *a = &o->a[i];

                if (a->clock < prev)
                        return fail(s, "%s: clock went back from %" PRIu64 " to %" PRIu64, s->names[p], prev,
                                    a->clock);
                prev = a->clock;
                switch (a->kind) {
                case RA_SEND_REQUEST:
                        if (a->peer == p || a->peer >= s->n || r->state != RA_WANTED || a->ts != r->req_ts)
                                return fail(s, "%s: bad SEND_REQUEST", s->names[p]);
                        if (!push_vc(s, p, a, (struct msg) { M_REQUEST, a->ts, 0, {0} }))
                                return false;
                        s->msgs++;
                        /* at most one REQUEST per other peer and request (link-ups aside) */
                        if (++s->asked_now[p] > s->n - 1 && !s->faults)
                                return fail(s, "%s: %u REQUESTs for request %" PRIu64 ", more than N-1",
                                            s->names[p], s->asked_now[p], r->req_ts);
                        break;
                case RA_SEND_REPLY:
                        if (a->peer == p || a->peer >= s->n)
                                return fail(s, "%s: bad SEND_REPLY", s->names[p]);
                        if (!push_vc(s, p, a, (struct msg) { M_REPLY, a->clock, a->ts, {0} }))
                                return false;
                        s->msgs++;
                        break;
                case RA_DEFER:
                        s->deferrals++;
                        break;
                case RA_GOT_REQUEST:
                case RA_GOT_REPLY:
                case RA_EXIT:
                case RA_WITHDRAW:
                        break;
                case RA_QUEUED:
                case RA_SEND_TOKEN:
                case RA_SEND_RELEASE:
                case RA_SEND_PROBE:
                case RA_SEND_ANSWER:
                case RA_SEND_END:
                case RA_REGENERATED:
                case RA_DROPPED:
                        return fail(s, "%s: %s from Ricart-Agrawala", s->names[p], kind_name(a->kind));
                case RA_ENTER:
                        if (a->peer != p || r->state != RA_HELD || a->ts != r->req_ts)
                                return fail(s, "%s: bad ENTER", s->names[p]);
                        /* fairness (plain RA): no peer still waiting with an earlier request */
                        for (unsigned q = 0; q < s->n && !s->reuse; q++)
                                if (q != p && s->ra[q].state == RA_WANTED &&
                                    before(s, s->ra[q].req_ts, q, r->req_ts, p))
                                        return fail(s, "fairness: %s enters with (%" PRIu64 ",%s) while %s waits "
                                                    "with the earlier (%" PRIu64 ",%s)", s->names[p], r->req_ts,
                                                    s->names[p], s->names[q], s->ra[q].req_ts, s->names[q]);
                        /* fairness (both): once p has received q's request, p enters at most once
                         * more before q does */
                        for (unsigned q = 0; q < s->n; q++)
                                if (q != p && s->seen[q][p] && ++s->overtakes[q][p] > 1)
                                        return fail(s, "fairness: %s enters a second time since it received "
                                                    "%s's request %" PRIu64, s->names[p], s->names[q],
                                                    s->ra[q].req_ts);
                        forget_request(s, p);
                        /* causality: the exit before this entry happened before it (whoever's it was) */
                        struct vclock ev;
                        ra_action_vclock(r, a, &ev);
                        if (s->exited_any && !vclock_before(&s->last_exit, &ev)) {
                                char x[256], y[256];
                                vclock_format(x, sizeof x, &s->last_exit, s->names, false);
                                vclock_format(y, sizeof y, &ev, s->names, false);
                                return fail(s, "causality: %s enters at [%s], not after the last exit at [%s]",
                                            s->names[p], y, x);
                        }
                        if (vclock_compare(&r->enter_vc, &ev) != VCLOCK_EQUAL)
                                return fail(s, "%s: enter_vc is not the ENTER's vector clock", s->names[p]);
                        /* order (plain RA): entries strictly increase in (ts, name) across the cluster */
                        if (s->entered_any && !s->reuse && !before(s, s->last_ts, s->last_who, r->req_ts, p))
                                return fail(s, "order: %s enters with (%" PRIu64 ",%s) after (%" PRIu64 ",%s)",
                                            s->names[p], r->req_ts, s->names[p], s->last_ts,
                                            s->names[s->last_who]);
                        /* order (both): ... and in (enter_ts, name), the fence of their posts */
                        if (r->enter_ts != a->clock)
                                return fail(s, "%s: enter_ts %" PRIu64 " is not the clock at ENTER %" PRIu64,
                                            s->names[p], r->enter_ts, a->clock);
                        if (s->entered_any && !before(s, s->last_enter_ts, s->last_who, r->enter_ts, p))
                                return fail(s, "fence order: %s enters at %" PRIu64 " after (%" PRIu64 ",%s)",
                                            s->names[p], r->enter_ts, s->last_enter_ts, s->names[s->last_who]);
                        if (s->asked_now[p] == 0 && s->n > 1)
                                s->free_enters++;
                        s->entered_any = true;
                        s->last_enter_ts = r->enter_ts;
                        s->last_ts = r->req_ts;
                        s->last_who = p;
                        s->entries[p]++;
                        s->enters++;
                        break;
                }
        }
        if (r->clock < prev)
                return fail(s, "%s: machine clock %" PRIu64 " behind its actions' %" PRIu64, s->names[p], r->clock,
                            prev);
        s->last_clock[p] = r->clock;
        return held_count_ok(s);
}

static bool deliver(struct sim *s, unsigned from, unsigned to)
{
        struct chan *c = &s->ch[from][to];
        struct msg m = c->m[c->head];
        struct ra_actions o;
        struct vclock v;

        vclock_init(&v, s->n);
        for (unsigned i = 0; i < s->n; i++)
                v.c[i] = m.vc[i];

        c->head = (c->head + 1) % CHAN_CAP;
        c->len--;
        if (m.kind == M_REQUEST) {
                if (s->ra[to].state == RA_WANTED && s->ra[to].req_ts == m.a)
                        s->ties++;
                if (s->ra[from].state == RA_WANTED && s->ra[from].req_ts == m.a)
                        s->seen[from][to] = true;
                ra_on_request(&s->ra[to], from, m.a, &v, &o);
                if (s->ra[to].clock <= m.a)
                        return fail(s, "%s: clock %" PRIu64 " not past the received ts %" PRIu64, s->names[to],
                                    s->ra[to].clock, m.a);
        } else {
                ra_on_reply(&s->ra[to], from, m.a, m.b, &v, &o);
                if (s->ra[to].clock <= m.a)
                        return fail(s, "%s: clock %" PRIu64 " not past the received clock %" PRIu64, s->names[to],
                                    s->ra[to].clock, m.a);
        }
        tr(s, "step %u: deliver %s %s->%s (%" PRIu64 ",%" PRIu64 ")", s->step,
           m.kind == M_REQUEST ? "REQUEST" : "REPLY", s->names[from], s->names[to], m.a, m.b);
        return run(s, to, &o);
}

static unsigned in_flight(const struct sim *s)
{
        unsigned t = 0;

        for (unsigned i = 0; i < s->n; i++)
                for (unsigned j = 0; j < s->n; j++)
                        t += s->ch[i][j].len;
        return t;
}

static bool deliver_random(struct sim *s)
{
        unsigned total = in_flight(s);

        if (total == 0)
                return false;
        /* pick a channel with probability proportional to its length */
        unsigned k = rnd(s, total);
        for (unsigned i = 0; i < s->n; i++)
                for (unsigned j = 0; j < s->n; j++) {
                        if (k < s->ch[i][j].len) {
                                (void) deliver(s, i, j);        /* a failure is in s->why */
                                return true;
                        }
                        k -= s->ch[i][j].len;
                }
        return false;
}

static bool held_peer(const struct sim *s, unsigned *p)
{
        for (unsigned i = 0; i < s->n; i++)
                if (s->ra[i].state == RA_HELD) {
                        *p = i;
                        return true;
                }
        return false;
}

static bool all_done(const struct sim *s)
{
        for (unsigned i = 0; i < s->n; i++)
                if (s->entries[i] < SIM_K || s->ra[i].state != RA_RELEASED)
                        return false;
        return true;
}

/* One seeded run; returns true when every check held. */
static bool simulate(struct sim *s, uint64_t seed, bool faults, bool reuse, bool verbose)
{
        static const char *const pool[] = { "alpha", "bravo", "charlie", "delta", "echo", "foxtrot" };
        memset(s->ch, 0, sizeof s->ch);
        s->seed = seed;
        s->faults = faults;
        s->reuse = reuse;
        memset(s->seen, 0, sizeof s->seen);
        memset(s->overtakes, 0, sizeof s->overtakes);
        memset(s->asked_now, 0, sizeof s->asked_now);
        unsigned long msgs0 = s->msgs, enters0 = s->enters;
        s->rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 0x632BE59BD9B4E019;
        if (!s->rng)
                s->rng = 1;
        xorshift(s);
        s->n = 2 + (unsigned) (seed % (SIM_PEERS - 1));
        /* names in a random order, so index order and name order differ */
        unsigned perm[SIM_PEERS];
        for (unsigned i = 0; i < SIM_PEERS; i++)
                perm[i] = i;
        for (unsigned i = SIM_PEERS - 1; i > 0; i--) {
                unsigned j = rnd(s, i + 1), t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
        }
        for (unsigned i = 0; i < s->n; i++) {
                s->names[i] = pool[perm[i]];
                ra_init(&s->ra[i], s->n, i, s->names);
                ra_set_reuse(&s->ra[i], reuse);
                s->entries[i] = 0;
                s->last_clock[i] = 0;
        }
        s->entered_any = false;
        s->exited_any = false;
        s->ntrace = 0;
        s->why[0] = '\0';

        /* how eager peers are to request and to leave, per run */
        unsigned p_request = 10 + rnd(s, 40), p_release = 5 + rnd(s, 30);
        unsigned cuts_left = faults ? 3 : 0;

        for (s->step = 0; s->step < SIM_MAX_STEPS; s->step++) {
                struct ra_actions o;
                unsigned r = rnd(s, 100), p = rnd(s, s->n);

                s->steps++;
                if (all_done(s))
                        break;
                if (r < p_request && s->ra[p].state == RA_RELEASED && s->entries[p] < SIM_K) {
                        s->asked_now[p] = 0;
                        forget_request(s, p);
                        if (ra_request(&s->ra[p], &o) != 0)
                                fail(s, "%s: ra_request failed while released", s->names[p]);
                        tr(s, "step %u: %s requests", s->step, s->names[p]);
                        run(s, p, &o);
                } else if (r >= 50 && r < 50 + p_release && held_peer(s, &p)) {
                        tr(s, "step %u: %s releases", s->step, s->names[p]);
                        release(&s->ra[p], &o);
                        s->last_exit = note_vc;
                        s->exited_any = true;
                        run(s, p, &o);
                } else if (faults && r == 99 && s->ra[p].state == RA_WANTED) {
                        /* a post timed out: give the request up */
                        tr(s, "step %u: %s withdraws (%" PRIu64 ")", s->step, s->names[p], s->ra[p].req_ts);
                        s->withdrawals++;
                        forget_request(s, p);
                        release(&s->ra[p], &o);
                        run(s, p, &o);
                } else if (faults && r == 98 && cuts_left > 0) {
                        /* the link p<->q breaks: what was in flight is lost; both sides reconnect */
                        unsigned q = (p + 1 + rnd(s, s->n - 1)) % s->n;
                        cuts_left--;
                        s->cuts++;
                        s->lost += s->ch[p][q].len + s->ch[q][p].len;
                        tr(s, "step %u: link %s<->%s cut, %u message(s) lost", s->step, s->names[p], s->names[q],
                           s->ch[p][q].len + s->ch[q][p].len);
                        s->ch[p][q].len = s->ch[q][p].len = 0;
                        ra_link_up(&s->ra[p], q, true, &o);
                        run(s, p, &o);
                        ra_link_up(&s->ra[q], p, true, &o);
                        run(s, q, &o);
                } else if (faults && r == 97) {
                        /* a link comes up again without loss: duplicates */
                        unsigned q = (p + 1 + rnd(s, s->n - 1)) % s->n;
                        ra_link_up(&s->ra[p], q, true, &o);
                        s->dups += o.n;
                        tr(s, "step %u: link %s->%s up again", s->step, s->names[p], s->names[q]);
                        run(s, p, &o);
                } else if (!deliver_random(s)) {
                        /* nothing in flight: someone must be able to move */
                        unsigned wanted = 0, held = 0;
                        for (unsigned i = 0; i < s->n; i++) {
                                wanted += s->ra[i].state == RA_WANTED;
                                held += s->ra[i].state == RA_HELD;
                        }
                        if (wanted > 0 && held == 0)
                                fail(s, "liveness: nothing in flight, nobody held, %u peer(s) wanted", wanted);
                }
                if (s->why[0])
                        break;
        }
        if (!s->why[0] && !all_done(s))
                fail(s, "liveness: not every peer entered %u times within %u steps", SIM_K, SIM_MAX_STEPS);
        /* messages: never more than 2(N-1) per entry (every request was granted: no withdrawals) */
        if (!s->why[0] && !faults && s->msgs - msgs0 > 2 * (s->n - 1) * (s->enters - enters0))
                fail(s, "%lu messages for %lu entries: more than 2(N-1) = %u per entry", s->msgs - msgs0,
                     s->enters - enters0, 2 * (s->n - 1));
        if (s->why[0]) {
                if (!verbose)
                        return false;
                diag("seed %" PRIu64 " (n=%u, %s, %s): step %u: %s", seed, s->n, faults ? "faults" : "no faults",
                     reuse ? "Roucairol-Carvalho" : "plain RA", s->step, s->why);
                unsigned first = s->ntrace > TRACE ? s->ntrace - TRACE : 0;
                for (unsigned i = first; i < s->ntrace; i++)
                        diag("  %s", s->trace[i % TRACE]);
                return false;
        }
        return true;
}

static double now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void test_simulation(void)
{
        static struct sim s;
        const unsigned seeds = 2000;
        const char *one = getenv("DCHAT_RA_SEED");

        if (one && *one) {
                uint64_t seed = strtoull(one, NULL, 0);
                for (int reuse = 0; reuse <= 1; reuse++) {
                        ok(simulate(&s, seed, false, reuse, true), "sim: seed %" PRIu64 " without faults%s", seed,
                           reuse ? ", Roucairol-Carvalho" : "");
                        ok(simulate(&s, seed, true, reuse, true), "sim: seed %" PRIu64 " with faults%s", seed,
                           reuse ? ", Roucairol-Carvalho" : "");
                }
                return;
        }

        for (int mode = 0; mode < 4; mode++) {
                int faults = mode & 1, reuse = mode >> 1;
                unsigned long msgs0 = s.msgs, free0 = s.free_enters;
                unsigned failed[SIM_PEERS + 1] = {0}, runs[SIM_PEERS + 1] = {0};
                unsigned long steps0 = s.steps, enters0 = s.enters, max_steps = 0;
                double t0 = now();

                for (uint64_t seed = 1; seed <= seeds; seed++) {
                        unsigned long steps = s.steps;
                        /* diagnostics for the first 2 failures of each size only */
                        bool good = simulate(&s, seed, faults, reuse, failed[2 + seed % (SIM_PEERS - 1)] < 2);
                        runs[s.n]++;
                        failed[s.n] += !good;
                        if (s.steps - steps > max_steps)
                                max_steps = s.steps - steps;
                }
                double dt = now() - t0;
                for (unsigned n = 2; n <= SIM_PEERS; n++)
                        ok(runs[n] > 0 && failed[n] == 0, "sim (%s, %s): %u peers, %u seeds: mutual exclusion, "
                           "liveness, fairness, order%s hold", faults ? "faults" : "no faults",
                           reuse ? "Roucairol-Carvalho" : "plain RA", n, runs[n],
                           faults ? "" : " and at most 2(N-1) messages per entry");
                diag("sim (%s, %s): %u seeds, %lu steps (at most %lu in one run), %lu entries (%lu without a "
                     "message), %lu messages, %.3f s", faults ? "faults" : "no faults",
                     reuse ? "Roucairol-Carvalho" : "plain RA", seeds, s.steps - steps0, max_steps,
                     s.enters - enters0, s.free_enters - free0, s.msgs - msgs0, dt);
                if (reuse && !faults)
                        ok(s.free_enters - free0 > 1000, "sim (Roucairol-Carvalho): many entries needed no message "
                           "(%lu)", s.free_enters - free0);
                if (!reuse && !faults)
                        is_int(s.free_enters - free0, 0, "sim (plain RA): every entry asked");
        }
        diag("sim: %lu deferrals, %lu equal-ts requests met, %lu withdrawals, %lu link cuts (%lu messages lost), "
             "%lu duplicate requests", s.deferrals, s.ties, s.withdrawals, s.cuts, s.lost, s.dups);
        ok(s.deferrals > 1000 && s.ties > 0 && s.withdrawals > 0 && s.cuts > 0 && s.lost > 0 && s.dups > 0,
           "sim: the runs exercised deferral, ties, withdrawal, lost messages and duplicates");
}

/* The vector clocks that ride along: every action an event, receives merge, enter_vc, bases, notes. */
static void test_vclocks(void)
{
        static const char *const names[] = { "a", "b" };
        struct ra A, B;
        struct ra_actions o;
        struct vclock v, w;
        char buf[128];

        ra_init(&A, 2, 0, names);
        ra_init(&B, 2, 1, names);
        ra_request(&A, &o);
        ra_action_vclock(&A, &o.a[0], &v);
        vclock_format(buf, sizeof buf, &v, names, false);
        is_str(buf, "a:1,b:0", "vc: A's REQUEST is its first event");
        ra_on_request(&B, 0, A.req_ts, &v, &o);
        ok(o.n == 2 && o.a[0].kind == RA_GOT_REQUEST && o.a[0].vt == 1 && o.a[1].kind == RA_SEND_REPLY &&
           o.a[1].vt == 2, "vc: B's receive and reply are its events 1 and 2");
        ra_action_vclock(&B, &o.a[1], &w);
        vclock_format(buf, sizeof buf, &w, names, false);
        is_str(buf, "a:1,b:2", "vc: B's REPLY carries what it knows of A (merged before its receive)");
        ra_on_reply(&A, 1, o.a[1].clock, A.req_ts, &w, &o);
        ok(o.n == 2 && o.a[1].kind == RA_ENTER && o.a[1].vt == 3, "vc: A enters at its event 3");
        vclock_format(buf, sizeof buf, &A.enter_vc, names, false);
        is_str(buf, "a:3,b:2", "vc: enter_vc is the ENTER's clock, B's reply merged");
        ok(vclock_before(&w, &A.enter_vc), "vc: B's reply happened before A's entry");
        is_int(ra_local_event(&A), 4, "vc: ra_local_event counts an event of the caller's (a post stored)");
        release(&A, &o);
        ok(note_vc.c[0] == 5 && note_vc.c[1] == 2, "vc: the EXIT note is an event (5) too");
        ra_release(&B, &o);
        is_int(o.n, 0, "vc: releasing what is not held or wanted: no note, no tick");
        is_int(B.vc.c[1], 2, "... B's component unchanged");
        /* a restarted life starts above anything its earlier life reached */
        ra_init(&B, 2, 1, names);
        ra_set_vclock_base(&B, 1000000000000ULL);
        ra_request(&B, &o);
        ra_action_vclock(&B, &o.a[0], &v);
        ok(v.c[1] == 1000000000001ULL && !vclock_before(&v, &w), "vc: a new life's first event (base 10^12 + 1) "
           "does not come before its earlier life's");
        ra_set_vclock_base(&B, 5);
        is_int(B.vc.c[1], 1000000000001ULL, "vc: a base never moves the clock back");
        /* a REQUEST without a clock (an older peer, or one whose peers differ) merges nothing */
        ra_init(&A, 2, 0, names);
        ra_on_request(&A, 1, 7, NULL, &o);
        ok(A.vc.c[0] == 2 && A.vc.c[1] == 0, "vc: no clock with a REQUEST: only the own events count");
}

int main(void)
{
        plan_no_plan();
        test_single();
        test_two_sequential();
        test_concurrent();
        test_defer_held();
        test_clocks();
        test_stale_replies();
        test_withdraw();
        test_link_up();
        test_many();
        test_reuse();
        test_vclocks();
        test_simulation();
        is_int(bad_notes, 0, "each of %u releases started with its note (EXIT when held, WITHDRAW when wanted), none "
               "when released", releases);
        return done_testing();
}
