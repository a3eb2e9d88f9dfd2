/* SPDX-License-Identifier: MIT */
/*
 * test-trace — the trace model of `dchatctl trace` (cli/tmodel.c) and its
 * JSON reader (cli/json.c): runs of the real Ricart–Agrawala machine
 * (daemon/ra.c, with and without Roucairol–Carvalho) recorded as a dchatd
 * records them; messages matched to their sends, deferred replies marked;
 * the three layouts; the causal-order checker passes every such run and
 * catches hand-made violations (overlapping critical sections, a deferral
 * never answered, fences that go back, an entry while another is inside;
 * a central coordinator's run, whose GRANTs have no send in any lane,
 * ordered by their vector clocks, and a double grant caught);
 * the windows; JSON Lines written and read back; journal exports; another
 * cluster and what is not JSON refused; ShiViz's clocks renumbered.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <regex.h>

#include "cm.h"
#include "ra.h"
#include "tap.h"
#include "../../cli/json.c"
#include "../../cli/tmodel.c"

/* got matches the extended regex re */
#define like(got, re, ...) ok(matches((got), (re)), __VA_ARGS__)
static bool matches(const char *s, const char *re)
{
        regex_t r;
        bool m = regcomp(&r, re, REG_EXTENDED | REG_NOSUB) == 0 && regexec(&r, s, 0, NULL, 0) == 0;
        regfree(&r);
        return m;
}

/* --- the JSON reader ---------------------------------------------------------------------- */

static int parse(const char *s)
{
        struct json_doc *doc;
        const struct json *j;
        char err[128];
        int r = json_parse(s, strlen(s), &doc, &j, err, sizeof err);
        json_free(doc);
        return r;
}

static void test_json(void)
{
        struct json_doc *doc;
        const struct json *j;
        char err[128];
        const char *s;
        uint64_t u;
        const char *text = "{\"a\":\"x\\u00e9\\ud83d\\ude00\\n\",\"n\":18446744073709551615,\"s\":\"42\","
                           "\"o\":{\"k\":[1,2.5,-3,true,false,null]},\"e\":{},\"l\":[]}";

        is_int(json_parse(text, strlen(text), &doc, &j, err, sizeof err), 0, "json: an object of every kind");
        ok(json_str(j, "a", &s) && strcmp(s, "x\xc3\xa9\xf0\x9f\x98\x80\n") == 0, "json: escapes to UTF-8, pairs joined");
        ok(json_u64(j, "n", &u) && u == UINT64_MAX, "json: 2^64-1 exactly");
        ok(json_u64(j, "s", &u) && u == 42, "json: a number written as a string (journalctl -o json)");
        const struct json *k = json_get(json_get(j, "o"), "k");
        ok(k && k->type == JSON_ARRAY && k->n == 6 && k->v[1]->num == 2.5 && !k->v[1]->integer &&
           k->v[2]->negative && k->v[3]->b && k->v[5]->type == JSON_NULL, "json: an array of numbers and words");
        ok(!json_u64(k, "x", &u) && !json_value_u64(k->v[2], &u) && !json_value_u64(k->v[1], &u),
           "json: no u64 from a negative or a fraction");
        json_free(doc);
        static const char *const bad[] = { "", "{", "{\"a\"}", "{\"a\":}", "[1,]", "{\"a\":1,}", "\"\\x\"", "\"\\ud800\"",
                                           "01", "1.", "-", "tru", "{\"a\":1} x", "\"a\nb\"", "{a:1}", "[1 2]" };
        bool all = true;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                if (parse(bad[i]) != -EINVAL) {
                        diag("accepted: %s", bad[i]);
                        all = false;
                }
        ok(all, "json: %zu malformed texts refused", sizeof bad / sizeof bad[0]);
        char deep[200];
        memset(deep, '[', 100);
        memset(deep + 100, ']', 100);
        is_int(json_parse(deep, 200, &doc, &j, err, sizeof err), -EINVAL, "json: nested 100 deep refused (%s)", err);
}

/* --- runs of the real machine, recorded as a dchatd records them -------------------------------- */

#define N 3
static const char *const names[N] = { "node1", "node2", "node3" };

struct run {
        struct ra ra[N];
        struct tmodel m;
        uint64_t no[N];
        uint64_t time;
        /* FIFO channels [from][to] of (kind, ts, clock, vc) */
        struct { uint8_t kind; uint64_t a, b; struct vclock vc; } ch[N][N][64];
        unsigned head[N][N], len[N][N];
        uint64_t seq;
        uint64_t recv_vt;
};

static void record(struct run *r, unsigned lane, uint8_t kind, int peer, uint64_t lamport, uint64_t ts,
                   const struct vclock *vc, uint64_t fence, uint64_t seq, uint64_t send_vt)
{
        struct tm_event e = { .lane = lane, .no = ++r->no[lane], .time_us = 1700000000000000 + (r->time += 10),
                              .kind = kind, .peer = peer, .lamport = lamport, .request_ts = ts, .fence = fence,
                              .seq = seq, .send_vt = send_vt };
        tm_add(&r->m, &e, vc->c);
}

static void post_stored(struct run *r, unsigned i);

/* mesh.c's mesh_run_actions, as far as the trace goes */
static void run(struct run *r, unsigned i, const struct ra_actions *o)
{
        for (unsigned k = 0; k < o->n; k++) {
                const struct ra_action *a = &o->a[k];
                struct vclock vc;
                ra_action_vclock(&r->ra[i], a, &vc);
                switch (a->kind) {
                case RA_SEND_REQUEST:
                case RA_SEND_REPLY: {
                        unsigned to = a->peer, n = (r->head[i][to] + r->len[i][to]++) % 64;
                        r->ch[i][to][n].kind = a->kind == RA_SEND_REQUEST ? 1 : 2;
                        r->ch[i][to][n].a = a->kind == RA_SEND_REQUEST ? a->ts : a->clock;
                        r->ch[i][to][n].b = a->ts;
                        r->ch[i][to][n].vc = vc;
                        record(r, i, a->kind == RA_SEND_REQUEST ? TK_REQUEST_SENT : TK_REPLY_SENT, (int) to, a->clock,
                               a->ts, &vc, 0, 0, 0);
                        break;
                }
                case RA_GOT_REQUEST:
                        record(r, i, TK_REQUEST_RECEIVED, (int) a->peer, a->clock, a->ts, &vc, 0, 0, r->recv_vt);
                        break;
                case RA_GOT_REPLY:
                        record(r, i, TK_REPLY_RECEIVED, (int) a->peer, a->clock, a->ts, &vc, 0, 0, r->recv_vt);
                        break;
                case RA_DEFER:
                        record(r, i, TK_REPLY_DEFERRED, (int) a->peer, a->clock, a->ts, &vc, 0, 0, 0);
                        break;
                case RA_ENTER:
                        record(r, i, TK_CS_ENTER, -1, a->clock, a->ts, &vc, r->ra[i].enter_ts, 0, 0);
                        post_stored(r, i);
                        break;
                case RA_EXIT:
                        record(r, i, TK_CS_EXIT, -1, a->clock, a->ts, &vc, r->ra[i].enter_ts, 0, 0);
                        break;
                case RA_WITHDRAW:
                case RA_QUEUED:
                case RA_SEND_TOKEN:
                case RA_SEND_RELEASE:
                case RA_SEND_PROBE:
                case RA_SEND_ANSWER:
                case RA_SEND_END:
                case RA_REGENERATED:
                case RA_DROPPED:
                        break;          /* the last eight: central and token, not run here */
                }
        }
}

static void post_stored(struct run *r, unsigned i)
{
        ra_local_event(&r->ra[i]);
        record(r, i, TK_POST_STORED, -1, r->ra[i].clock, 0, &r->ra[i].vc, r->ra[i].enter_ts, ++r->seq, 0);
}

static bool deliver_one(struct run *r, unsigned from, unsigned to)
{
        struct ra_actions o;

        if (!r->len[from][to])
                return false;
        unsigned h = r->head[from][to];
        r->head[from][to] = (h + 1) % 64;
        r->len[from][to]--;
        r->recv_vt = r->ch[from][to][h].vc.c[from];
        if (r->ch[from][to][h].kind == 1)
                ra_on_request(&r->ra[to], from, r->ch[from][to][h].a, &r->ch[from][to][h].vc, &o);
        else
                ra_on_reply(&r->ra[to], from, r->ch[from][to][h].a, r->ch[from][to][h].b, &r->ch[from][to][h].vc, &o);
        run(r, to, &o);
        return true;
}

/*
 * A seeded run: every node posts k times; steps pick a random request, a
 * random delivery or a random release of a holder.
 */
static void simulate(struct run *r, uint64_t seed, bool reuse, unsigned k)
{
        unsigned left[N];
        uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;

        memset(r, 0, sizeof *r);
        tm_init(&r->m);
        tm_set_lanes(&r->m, names, N, NULL, 0);
        for (unsigned i = 0; i < N; i++) {
                ra_init(&r->ra[i], N, i, names);
                ra_set_reuse(&r->ra[i], reuse);
                left[i] = k;
        }
        for (unsigned step = 0; step < 100000; step++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                unsigned p = (unsigned) (x % N), q = (unsigned) ((x >> 8) % N), what = (unsigned) ((x >> 16) % 10);
                struct ra_actions o;
                if (what < 2 && left[p] && r->ra[p].state == RA_RELEASED) {
                        left[p]--;
                        ra_request(&r->ra[p], &o);
                        run(r, p, &o);
                } else if (what < 4 && r->ra[p].state == RA_HELD) {
                        ra_release(&r->ra[p], &o);
                        run(r, p, &o);
                } else if (p != q)
                        deliver_one(r, p, q);
                bool idle = true;
                for (unsigned i = 0; i < N; i++) {
                        idle &= !left[i] && r->ra[i].state == RA_RELEASED;
                        for (unsigned j = 0; j < N; j++)
                                idle &= !r->len[i][j];
                }
                if (idle)
                        break;
        }
        tm_finish(&r->m);
}

static size_t count_kind(const struct tmodel *m, uint8_t kind)
{
        size_t n = 0;
        for (size_t i = 0; i < m->n; i++)
                n += m->ev[i].kind == kind;
        return n;
}

static void test_runs(void)
{
        static struct run r;
        char report[2048];
        unsigned ok_runs = 0, matched_all = 0, deferred_runs = 0, vector_ok = 0;

        for (uint64_t seed = 1; seed <= 200; seed++) {
                simulate(&r, seed, seed % 2, 4);
                if (tm_check(&r.m, report, sizeof report) == 0)
                        ok_runs++;
                else
                        diag("seed %" PRIu64 ": %s", seed, report);
                /* every receive matched to its send, and every send to its receive */
                bool all = true;
                for (size_t i = 0; i < r.m.n; i++) {
                        uint8_t k = r.m.ev[i].kind;
                        if (k == TK_REQUEST_SENT || k == TK_REQUEST_RECEIVED || k == TK_REPLY_SENT || k == TK_REPLY_RECEIVED)
                                all &= r.m.ev[i].match != TM_NONE && r.m.ev[r.m.ev[i].match].match == i;
                }
                matched_all += all;
                size_t deferred = 0;
                for (size_t i = 0; i < r.m.n; i++)
                        deferred += r.m.ev[i].deferred;
                deferred_runs += deferred > 0 && deferred <= count_kind(&r.m, TK_REPLY_DEFERRED);
                tm_layout(&r.m, TM_VECTOR);
                bool causal = true;
                for (size_t i = 0; i < r.m.n; i++) {
                        const struct tm_event *e = &r.m.ev[i];
                        if ((e->kind == TK_REQUEST_RECEIVED || e->kind == TK_REPLY_RECEIVED) && e->match != TM_NONE)
                                causal &= r.m.ev[e->match].x < e->x;
                        if (i > r.m.lanes[e->lane].first)
                                causal &= r.m.ev[i - 1].x < e->x;
                }
                vector_ok += causal;
                tm_free(&r.m);
        }
        is_int(ok_runs, 200, "check: 200 runs of ra.c (plain and Roucairol–Carvalho) pass the causal-order checks");
        is_int(matched_all, 200, "every message matched to its send by the sender's own component");
        ok(deferred_runs > 100, "deferred replies marked, no more than there were deferrals (%u runs with some)",
           deferred_runs);
        is_int(vector_ok, 200, "vector layout: every receive right of its send, every event right of its lane's last");
        simulate(&r, 7, false, 3);
        tm_check(&r.m, report, sizeof report);
        if (!like(report, "^ok: 9 critical section", "the report counts what it checked"))
                diag("%s", report);
        tm_free(&r.m);
}

/* The run of seed 3 (plain RA, 2 posts each), then a change made to it: does the checker say so? */
static void test_violations(void)
{
        static struct run r;
        char report[2048];

        /* two critical sections at once: the first to enter leaves only at the very end of its events
         * (after the REPLY its exit sent, which let the next one in): the next entered while it was inside */
        simulate(&r, 11, false, 2);
        size_t first = TM_NONE, n = 0;
        for (size_t i = 0; i < r.m.n; i++)
                if (r.m.ev[i].kind == TK_CS_EXIT) {
                        n++;
                        if (first == TM_NONE || r.m.ev[i].lamport < r.m.ev[first].lamport)
                                first = i;
                }
        ok(n >= 2, "violation: a run with %zu critical sections", n);
        const struct tm_lane *ln = &r.m.lanes[r.m.ev[first].lane];
        const struct tm_event *last = &r.m.ev[ln->first + ln->n - 1];
        unsigned lane = r.m.ev[first].lane;
        for (unsigned j = 0; j < N; j++)
                r.m.clocks[r.m.ev[first].vc + j] = tm_vc(&r.m, last, j);
        r.m.clocks[r.m.ev[first].vc + lane] += 1;       /* its lane's last event, then */
        r.m.ev[first].no = last->no + 1;
        tm_finish(&r.m);
        is_int(tm_check(&r.m, report, sizeof report), 1, "hand-made: an entry concurrent with another section: caught");
        if (!like(report, "^violation: (critical sections overlap in the causal order: .* did not happen before|mutual exclusion: .* has no cs-exit, yet)",
                  "... says so"))
                diag("%s", report);
        tm_free(&r.m);

        /* a deferral that its node left without answering: drop the reply that answers it */
        simulate(&r, 5, false, 2);
        size_t dropped = 0;
        for (size_t i = 0; i < r.m.n; i++)
                if (r.m.ev[i].kind == TK_REPLY_SENT && r.m.ev[i].deferred && !dropped) {
                        r.m.ev[i].request_ts += 1000;   /* it answers another request: the deferral is left owed */
                        dropped++;
                }
        ok(dropped == 1, "hand-made: a deferred reply that answers something else");
        tm_finish(&r.m);
        is_int(tm_check(&r.m, report, sizeof report), 1, "... caught");
        if (!like(report, "^violation: a deferral never answered", "... says so"))
                diag("%s", report);
        tm_free(&r.m);

        /* fences that go back in the log */
        simulate(&r, 5, false, 2);
        for (size_t i = 0; i < r.m.n; i++)
                if (r.m.ev[i].kind == TK_POST_STORED && r.m.ev[i].seq == 3)
                        r.m.ev[i].fence = 1;
        is_int(tm_check(&r.m, report, sizeof report), 1, "hand-made: seq 3 stored under fence 1: caught");
        if (!like(report, "^violation: fences do not increase with the log: seq 3", "... says so"))
                diag("%s", report);
        tm_free(&r.m);

        /* a node that never left, and another entering after it */
        simulate(&r, 5, false, 2);
        size_t exit1 = TM_NONE;
        for (size_t i = 0; i < r.m.n && exit1 == TM_NONE; i++)
                if (r.m.ev[i].kind == TK_CS_EXIT)
                        exit1 = i;
        unsigned who = r.m.ev[exit1].lane;
        r.m.ev[exit1].kind = TK_PEER_UP;        /* its exit is gone: it stays inside */
        tm_finish(&r.m);
        is_int(tm_check(&r.m, report, sizeof report), 1, "hand-made: an exit missing, others enter after: caught");
        if (!like(report, "^violation: mutual exclusion: .* has no cs-exit", "... says so"))
                diag("%s", report);
        /* ... unless the next one declared it dead first */
        struct tm_event dead = { .lane = (who + 1) % N, .no = 0, .kind = TK_PEER_DEAD, .peer = (int) who };
        uint64_t vc[N];
        memcpy(vc, &r.m.clocks[r.m.ev[r.m.lanes[dead.lane].first].vc], sizeof vc);
        vc[dead.lane] = 1;      /* its very first event */
        for (size_t i = r.m.lanes[dead.lane].first; i < r.m.lanes[dead.lane].first + r.m.lanes[dead.lane].n; i++)
                r.m.clocks[r.m.ev[i].vc + dead.lane] += 1;      /* make room for it */
        tm_add(&r.m, &dead, vc);
        tm_finish(&r.m);
        int c = tm_check(&r.m, report, sizeof report);
        if (!ok(c == 0 || !strstr(report, "has no cs-exit"), "... not when the next to enter declared it dead before"))
                diag("%s", report);
        tm_free(&r.m);
}

/*
 * dme_algorithm = "central": the coordinator is in no lane, so a GRANT's
 * receive has no send to match; its vector clock (what the coordinator
 * merged of the requests and releases) is what orders the sections.  A
 * run of cm.c recorded as mesh.c records it passes; the coordinator made
 * to grant while another holds is caught.
 */
struct crun {
        struct ra ra[N];
        struct cm_coord c;
        struct tmodel m;
        uint64_t no[N], time, seq;
        bool revoke_live;       /* the coordinator takes the first grant back from a live holder inside */
};

static void crecord(struct crun *r, unsigned lane, uint8_t kind, const struct ra_action *a, uint64_t fence, uint64_t seq)
{
        struct vclock vc;
        ra_action_vclock(&r->ra[lane], a, &vc);
        struct tm_event e = { .lane = lane, .no = ++r->no[lane], .time_us = 1700000000000000 + (r->time += 10),
                              .kind = kind, .peer = -1, .lamport = a->clock, .request_ts = a->ts, .fence = fence,
                              .seq = seq };
        tm_add(&r->m, &e, vc.c);
}

static void crun_coord(struct crun *r, const struct cm_actions *co);

static void crun_peer(struct crun *r, unsigned i, const struct ra_actions *o)
{
        struct cm_actions co;

        for (unsigned k = 0; k < o->n; k++) {
                const struct ra_action *a = &o->a[k];
                struct vclock vc;
                ra_action_vclock(&r->ra[i], a, &vc);
                switch (a->kind) {
                case RA_SEND_REQUEST:
                        crecord(r, i, TK_REQUEST_SENT, a, 0, 0);
                        cm_coord_request(&r->c, i, a->ts, a->clock, a->sn == 1, &vc, &co);
                        crun_coord(r, &co);
                        break;
                case RA_SEND_RELEASE:
                        cm_coord_release(&r->c, i, a->ts, a->clock, &vc, &co);
                        crun_coord(r, &co);
                        break;
                case RA_GOT_REPLY:
                        crecord(r, i, TK_REPLY_RECEIVED, a, 0, 0);
                        break;
                case RA_ENTER:
                        crecord(r, i, TK_CS_ENTER, a, r->ra[i].enter_ts, 0);
                        ra_local_event(&r->ra[i]);
                        {
                                struct ra_action st = { .kind = RA_ENTER, .clock = r->ra[i].clock,
                                                        .vt = r->ra[i].vc.c[i] };
                                crecord(r, i, TK_POST_STORED, &st, r->ra[i].enter_ts, ++r->seq);
                        }
                        if (r->revoke_live) {
                                r->revoke_live = false;
                                cm_coord_dead(&r->c, i, &co);   /* wrongly: it is inside, and the next is granted */
                                crun_coord(r, &co);
                        }
                        break;
                case RA_EXIT:
                        crecord(r, i, TK_CS_EXIT, a, r->ra[i].enter_ts, 0);
                        break;
                default:
                        break;
                }
        }
}

/* GRANTs go at once (the coordinator's link is FIFO and immediate here) */
static void crun_coord(struct crun *r, const struct cm_actions *co)
{
        struct cm_actions copy = *co;
        struct ra_actions o;

        for (unsigned k = 0; k < copy.n; k++)
                if (copy.a[k].kind == CM_GRANT) {
                        ra_on_grant(&r->ra[copy.a[k].peer], copy.a[k].ts, copy.a[k].clock, &r->c.vc, &o);
                        crun_peer(r, copy.a[k].peer, &o);
                }
}

static void csimulate(struct crun *r, bool revoke_live)
{
        struct ra_actions o;

        memset(r, 0, sizeof *r);
        r->revoke_live = revoke_live;
        tm_init(&r->m);
        tm_set_lanes(&r->m, names, N, NULL, 0);
        cm_coord_init(&r->c, N);
        for (unsigned i = 0; i < N; i++) {
                ra_init(&r->ra[i], N, i, names);
                ra_set_algo(&r->ra[i], DME_CENTRAL);
        }
        /* node3 has a past (links coming up): its events lie deeper in its lane than the others'
         * although its section comes first, which only the vector clocks say */
        for (unsigned k = 0; k < 8; k++) {
                ra_local_event(&r->ra[2]);
                struct ra_action up = { .kind = RA_ENTER, .clock = r->ra[2].clock, .vt = r->ra[2].vc.c[2] };
                crecord(r, 2, TK_PEER_UP, &up, 0, 0);
        }
        /* all three ask, node3 first; then each in turn leaves, and asks again, in another order */
        for (unsigned round = 0; round < 2; round++)
                for (unsigned k = 0; k < N; k++) {
                        unsigned i = round ? k : N - 1 - k;
                        ra_request(&r->ra[i], &o);
                        crun_peer(r, i, &o);
                }
        for (unsigned left = 0; left < 40; left++)
                for (unsigned i = 0; i < N; i++)
                        if (r->ra[i].state == RA_HELD) {
                                ra_release(&r->ra[i], &o);
                                crun_peer(r, i, &o);
                                if (left < 3) {
                                        ra_request(&r->ra[i], &o);
                                        crun_peer(r, i, &o);
                                }
                        }
        tm_finish(&r->m);
}

static void test_central(void)
{
        static struct crun r;
        char report[2048];

        csimulate(&r, false);
        int c = tm_check(&r.m, report, sizeof report);
        if (!is_int(c, 0, "central: the sections, ordered through the coordinator's vector clocks, pass"))
                diag("%s", report);
        like(report, "^ok: [0-9]+ critical section", "... the report counts them");
        tm_free(&r.m);
        csimulate(&r, true);
        c = tm_check(&r.m, report, sizeof report);
        is_int(c, 1, "central: a coordinator that took a grant back from a live holder and granted the next: caught");
        if (!like(report, "^violation: (critical sections overlap|mutual exclusion)", "... says so"))
                diag("%s", report);
        tm_free(&r.m);
}

static void test_layouts_and_windows(void)
{
        static struct run r;
        char err[512];

        simulate(&r, 21, false, 3);
        tm_layout(&r.m, TM_PHYSICAL);
        ok(r.m.x_min == 0 && r.m.x_max > 0, "physical: x from the earliest time (%g .. %g µs)", r.m.x_min, r.m.x_max);
        tm_layout(&r.m, TM_LAMPORT);
        bool lamport_ok = true;
        for (size_t i = 0; i < r.m.n; i++)
                lamport_ok &= r.m.ev[i].x >= (double) r.m.ev[i].lamport && r.m.ev[i].x < (double) r.m.ev[i].lamport + 1;
        ok(lamport_ok, "lamport: each event at its Lamport time (local ones side by side)");
        enum tm_order o;
        ok(tm_order_parse("vector", &o) == 0 && o == TM_VECTOR && tm_order_parse("causal", &o) < 0,
           "orders by name");
        size_t before = r.m.n;
        uint64_t seq = 5;
        is_int(tm_window_post(&r.m, seq, err, sizeof err), 0, "--post 5: a window");
        bool has_post = false, has_enter = false;
        for (size_t i = 0; i < r.m.n; i++) {
                has_post |= r.m.ev[i].kind == TK_POST_STORED && r.m.ev[i].seq == seq;
                has_enter |= r.m.ev[i].kind == TK_CS_ENTER;
        }
        ok(has_post && has_enter && r.m.n < before, "--post: its post and critical section, %zu of %zu events", r.m.n,
           before);
        is_int(tm_window_post(&r.m, 9999, err, sizeof err), -ENOENT, "--post 9999: none (%s)", err);
        tm_free(&r.m);
        simulate(&r, 21, false, 3);
        before = r.m.n;
        tm_window_time(&r.m, 1700000000000000 + 100, 1700000000000000 + 300);
        ok(r.m.n > 0 && r.m.n < before && r.m.dropped == before - r.m.n, "--since/--until: %zu of %zu events", r.m.n,
           before);
        tm_window_time(&r.m, 1, 2);
        is_int(r.m.n, 0, "a window with no event: none left");
        tm_free(&r.m);
}

/* Written as JSON Lines, read back: the same trace. */
/*
 * dme_algorithm = "token": node1 holds the token inside; node2's request,
 * then node3's, are queued there (request-queued); at its exit the token
 * goes to node3, which hands it to node2 at its own exit.  node1 never
 * sends node2 anything: fine for a queued request, a violation for a
 * Ricart–Agrawala deferral (what mesh.c logged before request-queued).
 */
static void token_trace(struct tmodel *m, uint8_t queued_kind)
{
        static const struct {
                unsigned lane;
                uint8_t kind;
                int peer;
                uint64_t lamport, ts, vc[N], send_vt;
        } ev[] = {
                { 1, TK_REQUEST_SENT, 0, 5, 5, { 0, 1, 0 }, 0 },
                { 1, TK_REQUEST_SENT, 2, 5, 5, { 0, 2, 0 }, 0 },
                { 2, TK_REQUEST_SENT, 0, 6, 6, { 0, 0, 1 }, 0 },
                { 2, TK_REQUEST_SENT, 1, 6, 6, { 0, 0, 2 }, 0 },
                { 0, TK_CS_ENTER, -1, 2, 2, { 1, 0, 0 }, 0 },
                { 0, TK_REQUEST_RECEIVED, 1, 6, 5, { 2, 1, 0 }, 1 },
                { 0, TK_REQUEST_QUEUED, 1, 7, 5, { 3, 1, 0 }, 0 },
                { 0, TK_REQUEST_RECEIVED, 2, 8, 6, { 4, 1, 1 }, 1 },
                { 0, TK_REQUEST_QUEUED, 2, 9, 6, { 5, 1, 1 }, 0 },
                { 0, TK_CS_EXIT, -1, 10, 2, { 6, 1, 1 }, 0 },
                { 0, TK_REPLY_SENT, 2, 11, 6, { 7, 1, 1 }, 0 },
                { 2, TK_REQUEST_RECEIVED, 1, 7, 5, { 0, 2, 3 }, 2 },
                { 2, TK_REPLY_RECEIVED, 0, 12, 6, { 7, 2, 4 }, 7 },
                { 2, TK_CS_ENTER, -1, 13, 6, { 7, 2, 5 }, 0 },
                { 2, TK_CS_EXIT, -1, 14, 6, { 7, 2, 6 }, 0 },
                { 2, TK_REPLY_SENT, 1, 15, 5, { 7, 2, 7 }, 0 },
                { 1, TK_REQUEST_RECEIVED, 2, 7, 6, { 0, 3, 2 }, 2 },
                { 1, TK_REPLY_RECEIVED, 2, 16, 5, { 7, 4, 7 }, 7 },
                { 1, TK_CS_ENTER, -1, 17, 5, { 7, 5, 7 }, 0 },
                { 1, TK_CS_EXIT, -1, 18, 5, { 7, 6, 7 }, 0 },
        };
        uint64_t no[N] = {0};

        tm_init(m);
        tm_set_lanes(m, names, N, NULL, 0);
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
                struct tm_event e = { .lane = ev[i].lane, .no = ++no[ev[i].lane], .time_us = 1700000000000000 + i,
                                      .kind = ev[i].kind == TK_REQUEST_QUEUED ? queued_kind : ev[i].kind,
                                      .peer = ev[i].peer, .lamport = ev[i].lamport, .request_ts = ev[i].ts,
                                      .send_vt = ev[i].send_vt };
                tm_add(m, &e, ev[i].vc);
        }
        tm_finish(m);
}

static void test_token(void)
{
        struct tmodel m;
        char report[2048], err[256], buf[256];

        token_trace(&m, TK_REQUEST_QUEUED);
        int c = tm_check(&m, report, sizeof report);
        is_int(c, 0, "token: requests queued behind a section, served by the token from another node: no violation");
        if (!like(report, "^ok: 3 critical section.*; 0 deferral.s. answered; 2 request.s. queued for the token "
                  "\\(no REPLY owed\\)", "... and the report counts them apart from deferrals"))
                diag("%s", report);
        size_t to3 = TM_NONE;
        for (size_t i = 0; i < m.n; i++)
                if (m.ev[i].lane == 0 && m.ev[i].kind == TK_REPLY_SENT)
                        to3 = i;
        ok(to3 != TM_NONE && m.ev[to3].deferred && m.ev[to3].match != TM_NONE,
           "token: the transfer to the queued request drawn as the answer it waited for");
        what(&m, &m.ev[m.lanes[0].first + 2], buf, sizeof buf);
        is_str(buf, "request (5, node2) queued for the token", "token: the text and ShiViz writers name it");

        /* the same trace, the queued requests in the JSON of a journal export, read back */
        FILE *f;
        char *out = NULL;
        size_t len = 0;
        tm_layout(&m, TM_VECTOR);
        f = open_memstream(&out, &len);
        tm_write_json(&m, f);
        fclose(f);
        struct tmodel back;
        tm_init(&back);
        int bad = 0;
        for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                bad += tm_read_json(&back, line, nl ? (size_t) (nl - line) : strlen(line), err, sizeof err) < 0;
        }
        tm_finish(&back);
        ok(!bad && back.n == m.n && strstr(out, "\"event\":\"request-queued\""),
           "token: request-queued written as its name and read back");
        is_int(tm_check(&back, report, sizeof report), 0, "... and passes the check read back");
        free(out);
        tm_free(&back);
        tm_free(&m);

        /* logged as Ricart–Agrawala's deferral (before request-queued): node1 owes node2 a REPLY it never sends */
        token_trace(&m, TK_REPLY_DEFERRED);
        is_int(tm_check(&m, report, sizeof report), 1, "token: the same requests taken for deferrals: a violation");
        if (!like(report, "^violation: a deferral never answered: node1's reply-deferred .* deferred \\(5, node2\\)",
                  "... node1 never answered node2"))
                diag("%s", report);
        tm_free(&m);
        const char *j = "{\"__REALTIME_TIMESTAMP\":\"1767600000123456\",\"SYSLOG_IDENTIFIER\":\"dchatd\","
                        "\"DCHAT_EVENT\":\"request-queued\",\"DCHAT_NODE\":\"node1\",\"DCHAT_PEER\":\"node2\","
                        "\"DCHAT_LAMPORT\":\"9\",\"DCHAT_REQUEST_TS\":\"8\",\"DCHAT_EVENT_NO\":\"42\","
                        "\"DCHAT_VCLOCK\":\"{\\\"node1\\\":4,\\\"node2\\\":2,\\\"node3\\\":0}\"}";
        tm_init(&m);
        is_int(tm_read_json(&m, j, strlen(j), err, sizeof err), 1, "journal: a request-queued event read");
        ok(m.n == 1 && m.ev[0].kind == TK_REQUEST_QUEUED && m.ev[0].peer == 1 && m.ev[0].request_ts == 8,
           "journal: as a queued request of node2");
        tm_free(&m);
}

/*
 * node1 entered and was never heard of again (it died inside); node3 declared it dead, made
 * a token and sent it to node2, which entered without declaring anything itself.  Under the
 * token that is how it goes (the regenerator's word travels with the token); under
 * Ricart-Agrawala node2 would have entered without node1's reply: a violation.
 */
static void regen_trace(struct tmodel *m, bool token, bool declared_first)
{
        struct {
                unsigned lane;
                uint8_t kind;
                int peer;
                uint64_t lamport, ts, vc[N], send_vt;
        } ev[] = {
                { 0, TK_CS_ENTER, -1, 2, 2, { 1, 0, 0 }, 0 },
                { 2, TK_PEER_DEAD, 0, 5, 0, { 0, 0, 1 }, 0 },
                { 2, TK_REPLY_SENT, 1, 6, 4, { 0, 0, 2 }, 0 },
                { 1, TK_REPLY_RECEIVED, 2, 7, 4, { 0, 1, 2 }, 2 },
                { 1, TK_CS_ENTER, -1, 8, 4, { 0, 2, 2 }, 0 },
                { 1, TK_CS_EXIT, -1, 9, 4, { 0, 3, 2 }, 0 },
        };
        uint64_t no[N] = {0};

        if (!declared_first) {          /* node3's declaration comes after it sent the token */
                ev[1] = (typeof(ev[1])) { 2, TK_REPLY_SENT, 1, 6, 4, { 0, 0, 1 }, 0 };
                ev[2] = (typeof(ev[2])) { 2, TK_PEER_DEAD, 0, 7, 0, { 0, 0, 2 }, 0 };
                ev[3].vc[2] = 1;
                ev[3].send_vt = 1;
                ev[4].vc[2] = 1;
                ev[5].vc[2] = 1;
        }
        tm_init(m);
        m->token = token;
        tm_set_lanes(m, names, N, NULL, 0);
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
                struct tm_event e = { .lane = ev[i].lane, .no = ++no[ev[i].lane], .time_us = 1700000000000000 + i,
                                      .kind = ev[i].kind, .peer = ev[i].peer, .lamport = ev[i].lamport,
                                      .request_ts = ev[i].ts, .send_vt = ev[i].send_vt };
                tm_add(m, &e, ev[i].vc);
        }
        tm_finish(m);
}

static void test_token_regenerated(void)
{
        struct tmodel m;
        char report[2048];

        regen_trace(&m, true, true);
        is_int(tm_check(&m, report, sizeof report), 0,
               "token: a holder died inside; another's declaration came with the new token: excused");
        if (!like(report, "1 entered after the one before it was declared dead", "... counted as entered on the "
                  "failure detector's word"))
                diag("%s", report);
        tm_free(&m);
        regen_trace(&m, false, true);
        is_int(tm_check(&m, report, sizeof report), 1,
               "ricart-agrawala: the same entry without the entering node's own declaration: a violation");
        tm_free(&m);
        regen_trace(&m, true, false);
        is_int(tm_check(&m, report, sizeof report), 1,
               "token: a declaration that did not happen before the entry excuses nothing");
        tm_free(&m);
}

/*
 * node3 enters knowing node1's exit by its vector clock alone: what told it (a regeneration
 * round's frames, a ring lost in a crash) is in no trace.  Sorted by the traced messages
 * only, node3's entry came first and was compared with node1's later one.
 */
static void test_untraced_causality(void)
{
        struct {
                unsigned lane;
                uint8_t kind;
                uint64_t vc[N];
        } ev[] = {
                { 0, TK_REQUEST_SENT, { 1, 0, 0 } }, { 0, TK_REQUEST_SENT, { 2, 0, 0 } },
                { 0, TK_REQUEST_SENT, { 3, 0, 0 } }, { 0, TK_REQUEST_SENT, { 4, 0, 0 } },
                { 0, TK_CS_ENTER, { 5, 0, 0 } }, { 0, TK_CS_EXIT, { 6, 0, 0 } },
                { 2, TK_CS_ENTER, { 6, 0, 1 } }, { 2, TK_CS_EXIT, { 6, 0, 2 } },
        };
        uint64_t no[N] = {0};
        struct tmodel m;
        char report[2048];

        tm_init(&m);
        tm_set_lanes(&m, names, N, NULL, 0);
        for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
                struct tm_event e = { .lane = ev[i].lane, .no = ++no[ev[i].lane], .time_us = 1700000000000000 + i,
                                      .kind = ev[i].kind, .peer = ev[i].kind == TK_REQUEST_SENT ? 1 : -1,
                                      .lamport = ev[i].vc[0] + ev[i].vc[2], .request_ts = 1 };
                tm_add(&m, &e, ev[i].vc);
        }
        tm_finish(&m);
        int c = tm_check(&m, report, sizeof report);
        is_int(c, 0, "an entry after an exit known by the vector clock alone (no traced message): in order");
        if (c)
                diag("%s", report);
        tm_free(&m);
}

static void test_json_round_trip(void)
{
        static struct run r;
        struct tmodel back;
        char *buf = NULL, err[256];
        size_t len = 0;

        simulate(&r, 31, true, 3);
        tm_set_missing(&r.m, 2, 4, "no answer within 3000 ms");
        tm_layout(&r.m, TM_VECTOR);
        FILE *f = open_memstream(&buf, &len);
        tm_write_json(&r.m, f);
        fclose(f);
        tm_init(&back);
        int bad = 0, events = 0;
        for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
                nl = strchr(line, '\n');
                int k = tm_read_json(&back, line, nl ? (size_t) (nl - line) : strlen(line), err, sizeof err);
                if (k < 0) {
                        diag("%s", err);
                        bad++;
                }
                events += k > 0;
        }
        tm_finish(&back);
        ok(!bad && back.n == r.m.n && events == (int) r.m.n, "json: %zu events written and read back", back.n);
        ok(back.lanes[2].missing && back.lanes[2].got == 4 && !strcmp(back.lanes[2].why, "no answer within 3000 ms"),
           "json: the missing node comes back with why");
        bool same = back.n == r.m.n;
        for (size_t i = 0; same && i < back.n; i++)
                same = back.ev[i].kind == r.m.ev[i].kind && back.ev[i].lane == r.m.ev[i].lane &&
                       back.ev[i].match == r.m.ev[i].match && back.ev[i].deferred == r.m.ev[i].deferred &&
                       tm_vc(&back, &back.ev[i], 1) == tm_vc(&r.m, &r.m.ev[i], 1);
        ok(same, "json: kinds, lanes, clocks, matches and deferrals the same");
        ok(strstr(buf, "\"deferred\":true") && strstr(buf, "\"match\":{\"node\":"), "json: deferrals and matches shown");
        free(buf);
        buf = NULL;

        /* ShiViz: each host's own component counts 1, 2, 3 ... in the order of its lines */
        f = open_memstream(&buf, &len);
        tm_write_shiviz(&r.m, f);
        fclose(f);
        ok(!strncmp(buf, "(?<host>\\S+) \"(?<event>[^\"]*)\" (?<clock>\\{.*\\})\n\n", 45), "shiviz: its regex first, "
           "then an empty delimiter line");
        unsigned next[N] = { 1, 1, 1 }, lines = 0;
        bool counts = true;
        for (char *line = strstr(buf, "\n\n") + 2, *nl; *line; line = nl + 1) {
                nl = strchr(line, '\n');
                char host[16], key[32];
                unsigned v;
                if (sscanf(line, "%15s", host) != 1)
                        break;
                snprintf(key, sizeof key, "\"%s\":", host);
                char *at = strstr(strchr(line, '{'), key);
                int l = tm_lane(&r.m, host);
                counts &= at && l >= 0 && sscanf(at + strlen(key), "%u", &v) == 1 && v == next[l]++;
                lines++;
        }
        ok(counts && lines == r.m.n, "shiviz: %u lines, each host's own component 1, 2, 3 ...", lines);
        free(buf);
        tm_free(&back);
        tm_free(&r.m);
}

static void test_journal_and_bad_input(void)
{
        struct tmodel m;
        char err[256];
        const char *j1 = "{\"__CURSOR\":\"s=1\",\"__REALTIME_TIMESTAMP\":\"1767600000123456\",\"SYSLOG_IDENTIFIER\":\"dchatd\","
                         "\"DCHAT_EVENT\":\"reply-deferred\",\"DCHAT_NODE\":\"node1\",\"DCHAT_PEER\":\"node2\","
                         "\"DCHAT_LAMPORT\":\"9\",\"DCHAT_REQUEST_TS\":\"8\",\"DCHAT_EVENT_NO\":\"42\","
                         "\"DCHAT_VCLOCK\":\"{\\\"node1\\\":4,\\\"node2\\\":2,\\\"node3\\\":0}\",\"MESSAGE\":\"...\"}";
        const char *other = "{\"__REALTIME_TIMESTAMP\":\"1\",\"SYSLOG_IDENTIFIER\":\"sshd\",\"MESSAGE\":\"hi\"}";
        const char *started = "{\"__REALTIME_TIMESTAMP\":\"1\",\"SYSLOG_IDENTIFIER\":\"dchatd\",\"DCHAT_EVENT\":\"started\"}";
        const char *foreign = "{\"__REALTIME_TIMESTAMP\":\"2\",\"SYSLOG_IDENTIFIER\":\"dchatd\",\"DCHAT_EVENT\":\"cs-enter\","
                              "\"DCHAT_NODE\":\"alpha\",\"DCHAT_VCLOCK\":\"{\\\"alpha\\\":1,\\\"beta\\\":0}\"}";

        tm_init(&m);
        is_int(tm_read_json(&m, j1, strlen(j1), err, sizeof err), 1, "journal: a dchatd event with DCHAT_VCLOCK read");
        ok(m.n == 1 && m.n_lanes == 3 && m.ev[0].kind == TK_REPLY_DEFERRED && m.ev[0].peer == 1 && m.ev[0].no == 42 &&
           m.ev[0].time_us == 1767600000123456 && tm_vc(&m, &m.ev[0], 0) == 4, "journal: its fields");
        is_int(tm_read_json(&m, other, strlen(other), err, sizeof err), 0, "journal: another program's entry passed over");
        is_int(tm_read_json(&m, started, strlen(started), err, sizeof err), 0, "journal: a dchatd event no ring keeps "
               "passed over");
        is_int(tm_read_json(&m, foreign, strlen(foreign), err, sizeof err), -EXDEV, "journal: another cluster's refused");
        like(err, "another cluster", "... says so");
        is_int(tm_read_json(&m, "Dec 03 10:00 host dchatd[1]: hello", 34, err, sizeof err), -EINVAL,
               "a syslog line is not JSON: %s", err);
        is_int(tm_read_json(&m, "{\"x\":1}", 7, err, sizeof err), -EINVAL, "JSON of neither kind: %s", err);
        tm_free(&m);
}

int main(void)
{
        plan_no_plan();
        test_json();
        test_runs();
        test_violations();
        test_central();
        test_token();
        test_token_regenerated();
        test_untraced_causality();
        test_layouts_and_windows();
        test_json_round_trip();
        test_journal_and_bad_input();
        return done_testing();
}
