/* SPDX-License-Identifier: MIT */
/*
 * test-sim.c — a deterministic discrete-event simulation of a dchat cluster
 * built on the real Ricart–Agrawala machine (daemon/ra.c) and the real
 * failure detector (daemon/fd.c), with peer.c's post and critical-section
 * logic and server.c/chatlog.c's append rules modelled step for step.
 *
 * Model (virtual time in µs, one seeded random stream per schedule):
 *   - 3..9 peers and one server.  Each ordered pair of peers, and each
 *     peer and the server in both directions, is a FIFO channel (TCP): every
 *     message gets a random delay, but never overtakes an earlier one.
 *   - Links come up after a reconnect delay; both ends then send HELLO (with
 *     their incarnation) and call ra_link_up, as peer.c's out_connected and
 *     in_frame do.  A link cut "by reset" loses what is in flight and comes
 *     back as a new connection; a link cut "by stall" keeps its data and
 *     delivers it, in order, once the path heals (TCP retransmission).
 *   - Heartbeats every heartbeat interval on every live link, fed to
 *     fd_heard; fd_tick at fd_next_deadline; FD events applied as peer.c's
 *     fd_apply does (DEAD: ra_peer_down, then the links to that peer are
 *     dropped; ALIVE from DEAD: ra_peer_up(false); RESTARTED: ra_peer_up
 *     (true)).  Heartbeats into a peer that thinks the sender ALIVE are
 *     consumed lazily, at the receiver's next FD deadline or next real
 *     message: same result, far fewer events.
 *   - Posts arrive at random peers at random times and go through peer.c's
 *     logic: FIFO queue, ra_request only with the server link up (after
 *     HELLO_ACK's ra_observe), batches of batch_max appends under the fence
 *     (enter_ts, node, idx), post ids numbered when first sent and kept on
 *     resends, ERR_FENCED -> ra_observe, requeue, new request; one deadline
 *     timer armed where peer.c arms it; a WANTED request left with nothing
 *     queued is withdrawn.  Three schedules in four run Roucairol–Carvalho
 *     (ra_set_reuse), as dchatd does by default.  A post that times out
 *     after its append went out (and was not refused) is "may or may not
 *     have been stored".
 *   - The server keeps the last fence and the last post id per node
 *     (dedup first, then the fence, as chatlog_append) and answers after a
 *     processing delay; HELLO_ACK carries the last post id and lamport.
 *   - Faults until a horizon: crashes (all state lost; restart with a new
 *     incarnation, fresh ra_init/fd_init; one in six never comes back),
 *     partitions (any split of peers and server), single peer-peer cuts
 *     (false suspicion), server-link cuts and server restarts; cuts by
 *     reset or by stall.  A crashed peer's kernel may still deliver what it
 *     had sent to the server.  One schedule in eight has timings so tight
 *     that network jitter alone causes false suspicion.
 *
 * Checks (a failure prints the seed, the parameters, every peer's state and
 * the last events):
 *   - mutual exclusion: an entry is "clean" when the entering peer's RA
 *     machine had no live peer marked down; at no time do two live peers
 *     hold the critical section under clean entries.  (Entries under false
 *     suspicion are counted: safety then rests on the fence.)
 *   - fencing: stored fences strictly increase; an append is refused only
 *     after an entry under false suspicion or a crash, or when its entry is
 *     already over (a stalled append); every request is above every fence
 *     its peer was told of (HELLO_ACK, ERR_FENCED).
 *   - exactly once: no post stored twice; a post acknowledged as stored is in
 *     the log exactly once; a post that failed without "may or may not have
 *     been stored", or died with its peer before it was sent, is not.
 *   - answers: every post is answered once, no later than its deadline.
 *   - liveness: once no cut is left (faults over, or only crashed peers),
 *     for B = 10 * dead_after + 2 * reconnect_max, no live peer's request
 *     waits longer than B; every post made after the last fault is stored
 *     (in the two schedules in three whose post timeout leaves room for the
 *     backlog); the run ends quiescent.
 *
 * Environment: DCHAT_SIM_SEED=<seed> replays one schedule and shows its
 * trace, DCHAT_SIM_RUNS=<n> sets the number of schedules (default 100000),
 * DCHAT_SIM_TRACE=<n> shows the last n events of a failure (default 30),
 * DCHAT_SIM_LIST=1 lists every failing seed.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fd.h"
#include "ra.h"
#include "tap.h"

#define NMAX            9
#define NCHAN           (NMAX * NMAX + 2 * NMAX)
#define CH_CAP          512u            /* messages per channel (power of 2) */
#define POSTS_MAX       48
#define BATCH_MAX       4
#define HEAP_CAP        8192
#define FAULTS_MAX      6
#define TRACE           4096            /* events kept; the last 30 are shown (DCHAT_SIM_TRACE=N: N) */
#define RUNS_DEFAULT    100000
#define EVENTS_MAX      200000          /* per schedule: more is a livelock (a timer firing in a loop) */

#define BIT(i)          (UINT64_C(1) << (i))
#define MS              UINT64_C(1000)
#define SERVER_IDX      NMAX            /* the server, in traces */

/* --- the model's data ---------------------------------------------------------------- */

enum mkind {
        M_HELLO,        /* peer -> peer: a = incarnation */
        M_HB,           /* peer -> peer: a = incarnation */
        M_REQUEST,      /* a = ts */
        M_REPLY,        /* a = clock, b = req_ts */
        M_SHELLO,       /* peer -> server; e = connection */
        M_APPEND,       /* a = lamport, b = post id, c = post, d = fence idx, e = connection, f = tag */
        M_HELLO_ACK,    /* a = last lamport, b = last post id of the node */
        M_APPENDED,     /* f = tag */
        M_FENCED,       /* a = last lamport (detail), f = tag */
};

struct msg {
        uint64_t ready, a, b;
        uint32_t c, d, e, f;
        uint8_t kind;
};

struct chan {
        uint32_t head, len, epoch;
        uint64_t last;                  /* ready time of the latest message: FIFO */
        uint64_t base;                  /* this channel's typical delay */
        struct msg m[CH_CAP];
};

struct link {                           /* a pair of peers, or a peer and the server */
        bool up;                        /* connected (for the server: HELLO sent) */
        uint32_t gen;                   /* connect attempts: the latest counts */
        uint32_t conn;                  /* server links: connection number */
        uint8_t reset_cuts, stall_cuts;
};

enum ekind {
        E_POLL,         /* a = channel, b = epoch */
        E_HB,           /* a = peer, b = incarnation */
        E_FD,           /* a = peer, b = incarnation, c = generation */
        E_DEADLINE,     /* a = peer, b = incarnation, c = generation */
        E_POST,         /* a = peer */
        E_CONNECT,      /* a = i * NMAX + j, c = generation */
        E_SCONNECT,     /* a = peer, c = generation */
        E_FAULT_START,  /* a = fault */
        E_FAULT_END,    /* a = fault */
        E_LIVE,         /* a = peer, b = incarnation, c = req_ts */
};

struct ev {
        uint64_t t, seq, c;
        uint32_t a, b;
        uint8_t kind;
};

enum srv_state { SRV_DOWN, SRV_CONNECTING, SRV_UP };

enum outcome {
        O_PENDING,
        O_ACKED,
        O_FAILED,               /* an error that says nothing may have been stored */
        O_UNKNOWN,              /* "may or may not have been stored" */
        O_CRASH_UNSENT,         /* died with its peer before it was ever sent */
        O_CRASH_SENT,           /* died with its peer after it was sent: unknown */
};

struct post {
        uint8_t peer;
        bool done, fenced, sent, after_heal;
        uint8_t outcome, stored;
        uint32_t inc, post_id, tag, idx;
        uint64_t made, deadline, lamport;
};

struct speer {
        bool alive, clean, refused, gone;   /* gone: crashed for good */
        uint32_t inc;
        struct ra ra;
        struct fd fd;
        enum srv_state srv;
        uint32_t next_post_id, next_tag;
        uint8_t q[POSTS_MAX];
        unsigned qn;
        uint8_t cs[BATCH_MAX];
        unsigned cs_n;
        uint32_t fence_idx;
        uint64_t fd_gen, dl_gen;
        uint64_t wanted_since, observed;
};

enum fkind { F_CRASH, F_PARTITION, F_CUT, F_SCUT, F_SRV_RESTART, F_KINDS };

struct fault {
        uint8_t kind, p, q;
        bool stall, active, permanent;  /* permanent: a crashed peer that never comes back */
        uint32_t side;                  /* partitions: bit i = peer i on side A, bit NMAX = the server */
        uint64_t start, end;
};

enum check { C_ME, C_FENCE, C_ONCE, C_ANSWER, C_LIVE, C_CLOCK, C_SIM, C_N };

static const char *const check_names[C_N] = {
        "mutual exclusion among clean entries",
        "fencing (order, refusals only after false suspicion or crash)",
        "exactly once (acknowledged = stored once, failed = not stored)",
        "every post answered once, by its deadline",
        "liveness after the faults (requests granted, posts stored)",
        "requests above every fence the peer was told of",
        "simulator limits",
};

enum tkind {
        T_POST, T_REQUEST, T_ENTER, T_EXIT, T_WITHDRAW, T_GOT_REQUEST, T_GOT_REPLY, T_HELLO, T_FD,
        T_RESTARTED, T_APPEND, T_STORED, T_DUP, T_FENCED, T_ACK, T_FAIL, T_CRASH, T_RESTART, T_FAULT,
        T_HEAL, T_LINK_UP, T_LINK_DOWN, T_SRV_UP, T_SRV_DOWN, T_REFUSED,
};

struct trace {
        uint64_t t, a, b;
        uint8_t kind, p, q;
};

struct sim {
        /* this schedule */
        uint64_t seed, rng, now, evseq;
        unsigned n;
        const char *names[NMAX];
        bool aggressive, short_timeout;
        bool reuse;                     /* Roucairol–Carvalho (three schedules in four) */
        uint64_t hb, suspect, dead, post_timeout, rmin, rmax, bound, horizon, heal, cap, last_post_at;
        unsigned batch_max;
        struct speer p[NMAX];
        struct chan ch[NCHAN];
        struct link l[NMAX][NMAX];      /* [i][j], i < j */
        struct link sl[NMAX];
        bool server_up;
        struct fault f[FAULTS_MAX];
        unsigned nf, active_cuts, crashed;
        uint64_t stable_since;
        uint32_t inc_counter;
        struct post post[POSTS_MAX];
        unsigned nposts, pending;
        /* server */
        bool has_fence;
        uint64_t last_lamport;
        unsigned last_node;
        uint32_t last_idx, last_post_id[NMAX];
        uint8_t log[POSTS_MAX];
        unsigned nlog;
        bool any_taint, any_crash, flush;
        /* heap */
        struct ev heap[HEAP_CAP];
        unsigned nheap;
        /* trace and failure */
        struct trace tr[TRACE];
        unsigned ntr;
        char why[512];
        int failed;                     /* enum check + 1, 0 if none */

        /* totals over all schedules */
        unsigned long long events, entries, tainted, overlaps, refused_entries, refusals, stored, dups, acked,
                failed_posts, unknown_posts, crash_posts, withdrawals, deferrals, crashes, partitions, cuts,
                scuts, srv_restarts, stalls, lost_msgs, false_dead, refused_at_down, grants_after_heal, late_refusals, for_good;
        uint64_t max_grant, max_grant_dead;
        unsigned long long max_events;
        unsigned long long peer_msgs, free_entries, rc_entries;        /* REQUEST + REPLY sent; RC entries */
};

static struct sim S;

/* --- random numbers ---------------------------------------------------------------------- */

static uint64_t rng_next(struct sim *s)
{
        /* xorshift64* */
        uint64_t x = s->rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s->rng = x;
        return x * UINT64_C(2685821657736338717);
}

static uint64_t rnd(struct sim *s, uint64_t n)
{
        return n ? rng_next(s) % n : 0;
}

static uint64_t rnd_range(struct sim *s, uint64_t lo, uint64_t hi)
{
        return lo + rnd(s, hi - lo + 1);
}

/* --- failure and trace ------------------------------------------------------------------ */

__attribute__((format(printf, 3, 4)))
static void fail(struct sim *s, enum check c, const char *fmt, ...)
{
        va_list ap;

        if (s->failed)
                return;
        s->failed = (int) c + 1;
        va_start(ap, fmt);
        vsnprintf(s->why, sizeof s->why, fmt, ap);
        va_end(ap);
}

/* What peer i's request waits for, and what each awaited peer makes of it. */
static const char *waits_for(struct sim *s, unsigned i)
{
        static char buf[768];
        const struct ra *ra = &s->p[i].ra;
        size_t off = 0;

        buf[0] = '\0';
        if (ra->state != RA_WANTED)
                return ra->state == RA_HELD ? " (held)" : " (released)";
        for (unsigned j = 0; j < s->n && off < sizeof buf - 100; j++) {
                const struct speer *q = &s->p[j];
                int w;
                if (!(ra->awaiting & BIT(j)))
                        continue;
                if (!q->alive)
                        w = snprintf(buf + off, sizeof buf - off, " %s (%s here; crashed)", s->names[j],
                                     fd_state_name(s->p[i].fd.p[j].state));
                else
                        w = snprintf(buf + off, sizeof buf - off, " %s (%s here; there: %s, we are %s, %s, link %s)",
                                     s->names[j], fd_state_name(s->p[i].fd.p[j].state), ra_state_name(q->ra.state),
                                     fd_state_name(q->fd.p[i].state),
                                     q->ra.deferred & BIT(i) ? "deferred" : "not deferred",
                                     (i < j ? s->l[i][j] : s->l[j][i]).up ? "up" : "down");
                if (w > 0)
                        off += (size_t) w;
        }
        return buf;
}

static void tr(struct sim *s, enum tkind kind, unsigned p, unsigned q, uint64_t a, uint64_t b)
{
        struct trace *t = &s->tr[s->ntr++ % TRACE];

        *t = (struct trace) { s->now, a, b, (uint8_t) kind, (uint8_t) p, (uint8_t) q };
}

static const char *node_name(const struct sim *s, unsigned i)
{
        return i < s->n ? s->names[i] : "server";
}

static void fmt_trace(const struct sim *s, const struct trace *t, char *buf, size_t cap)
{
        const char *P = node_name(s, t->p), *Q = node_name(s, t->q);
        static const char *const fk[] = { "crash", "partition", "cut", "server-link cut", "server restart" };
        static const char *const fst[] = { "alive", "suspect", "dead" };
        int o = snprintf(buf, cap, "%8.3f ms  ", (double) t->t / 1000.0);
        size_t off = o > 0 ? (size_t) o : 0;

        buf += off;
        cap = cap > off ? cap - off : 0;
        switch ((enum tkind) t->kind) {
        case T_POST:
                snprintf(buf, cap, "%s: post #%" PRIu64 " made (deadline +%" PRIu64 " ms)", P, t->a, t->b / MS);
                break;
        case T_REQUEST:
                snprintf(buf, cap, "%s: requests (ts %" PRIu64 ")", P, t->a);
                break;
        case T_ENTER:
                snprintf(buf, cap, "%s: ENTERS (ts %" PRIu64 ")%s", P, t->a,
                         t->b ? " under false suspicion (a live peer marked down)" : "");
                break;
        case T_EXIT:
                snprintf(buf, cap, "%s: leaves (ts %" PRIu64 ", %" PRIu64 " post(s))", P, t->a, t->b);
                break;
        case T_WITHDRAW:
                snprintf(buf, cap, "%s: withdraws request ts %" PRIu64, P, t->a);
                break;
        case T_GOT_REQUEST:
                snprintf(buf, cap, "%s: REQUEST(%" PRIu64 ") from %s (%s)", P, t->a, Q,
                         t->b == RA_HELD ? "held: defer" : t->b == RA_WANTED ? "wanted" : "released");
                break;
        case T_GOT_REPLY:
                snprintf(buf, cap, "%s: REPLY for %" PRIu64 " from %s", P, t->a, Q);
                break;
        case T_HELLO:
                snprintf(buf, cap, "%s: HELLO from %s (incarnation %" PRIu64 ")", P, Q, t->a);
                break;
        case T_FD:
                snprintf(buf, cap, "%s: FD says %s is %s (was %s)", P, Q, fst[t->b % 3], fst[t->a % 3]);
                break;
        case T_RESTARTED:
                snprintf(buf, cap, "%s: FD says %s restarted (incarnation %" PRIu64 ")", P, Q, t->a);
                break;
        case T_APPEND:
                snprintf(buf, cap, "%s: APPEND post #%" PRIu64 " fence (%" PRIu64 ",%s,%" PRIu64 ")", P,
                         t->a >> 32, t->b, P, t->a & 0xffffffff);
                break;
        case T_STORED:
                snprintf(buf, cap, "server: stores post #%" PRIu64 " of %s, fence (%" PRIu64 ",%s)", t->a, Q, t->b,
                         Q);
                break;
        case T_DUP:
                snprintf(buf, cap, "server: post #%" PRIu64 " of %s is a duplicate", t->a, Q);
                break;
        case T_REFUSED:
                snprintf(buf, cap, "server: REFUSES post #%" PRIu64 " of %s (fence %" PRIu64 " <= last %" PRIu64 ")",
                         t->a, Q, t->b >> 20, t->b & 0xfffff);
                break;
        case T_FENCED:
                snprintf(buf, cap, "%s: post #%" PRIu64 " fenced; clock past %" PRIu64, P, t->a, t->b);
                break;
        case T_ACK:
                snprintf(buf, cap, "%s: post #%" PRIu64 " acknowledged as stored", P, t->a);
                break;
        case T_FAIL:
                snprintf(buf, cap, "%s: post #%" PRIu64 " failed%s", P, t->a,
                         t->b ? " (may or may not have been stored)" : "");
                break;
        case T_CRASH:
                snprintf(buf, cap, "%s: CRASHES", P);
                break;
        case T_RESTART:
                snprintf(buf, cap, "%s: restarts (incarnation %" PRIu64 ")", P, t->a);
                break;
        case T_FAULT:
                snprintf(buf, cap, "fault %s%s: %s/%s side 0x%" PRIx64, t->a < 5 ? fk[t->a] : "?",
                         t->b >> 32 ? " (stall)" : "", P, Q, t->b & 0xffffffff);
                break;
        case T_HEAL:
                snprintf(buf, cap, "fault %s over: %s/%s", t->a < 5 ? fk[t->a] : "?", P, Q);
                break;
        case T_LINK_UP:
                snprintf(buf, cap, "link %s<->%s up", P, Q);
                break;
        case T_LINK_DOWN:
                snprintf(buf, cap, "link %s<->%s reset, %" PRIu64 " message(s) lost", P, Q, t->a);
                break;
        case T_SRV_UP:
                snprintf(buf, cap, "%s: HELLO_ACK (last lamport %" PRIu64 ", last post id %" PRIu64 ")", P, t->a,
                         t->b);
                break;
        case T_SRV_DOWN:
                snprintf(buf, cap, "%s: server link reset", P);
                break;
        }
}

static void show_trace(const struct sim *s, unsigned last)
{
        char buf[256];
        unsigned first = s->ntr > last ? s->ntr - last : 0;

        if (s->ntr > TRACE && first < s->ntr - TRACE)
                first = s->ntr - TRACE;
        for (unsigned i = first; i < s->ntr; i++) {
                fmt_trace(s, &s->tr[i % TRACE], buf, sizeof buf);
                diag("    %s", buf);
        }
}

/* --- events ------------------------------------------------------------------------------ */

static bool ev_less(const struct ev *x, const struct ev *y)
{
        return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static void push(struct sim *s, uint64_t t, enum ekind kind, uint32_t a, uint32_t b, uint64_t c)
{
        if (s->nheap >= HEAP_CAP) {
                fail(s, C_SIM, "event heap full");
                return;
        }
        if (t < s->now)
                t = s->now;
        unsigned i = s->nheap++;
        struct ev e = { t, s->evseq++, c, a, b, (uint8_t) kind };
        while (i > 0) {
                unsigned up = (i - 1) / 2;
                if (!ev_less(&e, &s->heap[up]))
                        break;
                s->heap[i] = s->heap[up];
                i = up;
        }
        s->heap[i] = e;
}

static struct ev pop(struct sim *s)
{
        struct ev top = s->heap[0], e = s->heap[--s->nheap];
        unsigned i = 0, n = s->nheap;

        for (;;) {
                unsigned c = 2 * i + 1;
                if (c >= n)
                        break;
                if (c + 1 < n && ev_less(&s->heap[c + 1], &s->heap[c]))
                        c++;
                if (!ev_less(&s->heap[c], &e))
                        break;
                s->heap[i] = s->heap[c];
                i = c;
        }
        if (n)
                s->heap[i] = e;
        return top;
}

/* --- channels ------------------------------------------------------------------------------ */

static unsigned ch_pp(unsigned i, unsigned j)
{
        return i * NMAX + j;
}

static unsigned ch_p2s(unsigned i)
{
        return NMAX * NMAX + i;
}

static unsigned ch_s2p(unsigned i)
{
        return NMAX * NMAX + NMAX + i;
}

static struct link *plink(struct sim *s, unsigned i, unsigned j)
{
        return i < j ? &s->l[i][j] : &s->l[j][i];
}

static bool chan_stalled(struct sim *s, unsigned c)
{
        if (c < NMAX * NMAX)
                return plink(s, c / NMAX, c % NMAX)->stall_cuts > 0;
        return s->sl[(c - NMAX * NMAX) % NMAX].stall_cuts > 0;
}

static uint64_t delay(struct sim *s, unsigned c)
{
        uint64_t d = s->ch[c].base + rnd(s, s->ch[c].base + 1);

        if (rnd(s, 64) == 0)
                d += rnd(s, 20 * MS);   /* a spike */
        return d;
}

static void chan_clear(struct sim *s, unsigned c)
{
        struct chan *ch = &s->ch[c];

        s->lost_msgs += ch->len;
        ch->head = ch->len = 0;
        ch->last = 0;
        ch->epoch++;
}

static void chan_send(struct sim *s, unsigned c, struct msg m, uint64_t extra, bool eager)
{
        struct chan *ch = &s->ch[c];

        if (ch->len >= CH_CAP) {
                fail(s, C_SIM, "channel %u overflows", c);
                return;
        }
        m.ready = s->now + extra + delay(s, c);
        if (m.ready < ch->last)
                m.ready = ch->last;
        ch->last = m.ready;
        ch->m[(ch->head + ch->len++) % CH_CAP] = m;
        if (eager)
                push(s, m.ready, E_POLL, c, ch->epoch, 0);
}

/* An up link between live peers: send, or drop as peer.c does when the link is down. */
static void send_peer(struct sim *s, unsigned from, unsigned to, enum mkind kind, uint64_t a, uint64_t b)
{
        if (!plink(s, from, to)->up)
                return;
        bool eager = kind != M_HB || s->p[to].fd.p[from].state != FD_ALIVE;
        chan_send(s, ch_pp(from, to), (struct msg) { .kind = (uint8_t) kind, .a = a, .b = b }, 0, eager);
}

/* Heartbeats queued behind a peer the receiver no longer thinks ALIVE matter now: poll for them. */
static void chan_kick(struct sim *s, unsigned c)
{
        struct chan *ch = &s->ch[c];

        if (ch->len)
                push(s, ch->m[ch->head].ready, E_POLL, c, ch->epoch, 0);
}

/* --- links ----------------------------------------------------------------------------------- */

static bool link_usable(struct sim *s, unsigned i, unsigned j)
{
        struct link *l = plink(s, i, j);

        return s->p[i].alive && s->p[j].alive && !l->reset_cuts && !l->stall_cuts;
}

static void link_schedule(struct sim *s, unsigned i, unsigned j)
{
        struct link *l = plink(s, i, j);

        if (l->up || !link_usable(s, i, j))
                return;
        l->gen++;
        push(s, s->now + rnd_range(s, s->rmin, s->rmax), E_CONNECT, (uint32_t) (i < j ? i * NMAX + j : j * NMAX + i),
             0, l->gen);
}

static void link_reset(struct sim *s, unsigned i, unsigned j)
{
        struct link *l = plink(s, i, j);

        if (!l->up)
                return;
        l->up = false;
        tr(s, T_LINK_DOWN, i, j, s->ch[ch_pp(i, j)].len + s->ch[ch_pp(j, i)].len, 0);
        chan_clear(s, ch_pp(i, j));
        chan_clear(s, ch_pp(j, i));
        link_schedule(s, i, j);
}

static bool slink_usable(struct sim *s, unsigned i)
{
        return s->p[i].alive && s->server_up && !s->sl[i].reset_cuts && !s->sl[i].stall_cuts;
}

static void slink_schedule(struct sim *s, unsigned i)
{
        struct link *l = &s->sl[i];

        if (l->up || !slink_usable(s, i))
                return;
        l->gen++;
        push(s, s->now + rnd_range(s, s->rmin, s->rmax), E_SCONNECT, i, 0, l->gen);
}

static void server_closed(struct sim *s, unsigned i);

/* The peer's connection to the server breaks (keep_out: a crashed peer's kernel still sends what it had). */
static void slink_reset(struct sim *s, unsigned i, bool keep_out)
{
        struct link *l = &s->sl[i];

        if (!l->up)
                return;
        l->up = false;
        l->conn++;
        if (!keep_out)
                chan_clear(s, ch_p2s(i));
        chan_clear(s, ch_s2p(i));
        if (s->p[i].alive)
                server_closed(s, i);
        slink_schedule(s, i);
}

/* A stalled path heals: TCP retransmits the backlog, in order. */
static void chan_unstall(struct sim *s, unsigned c)
{
        struct chan *ch = &s->ch[c];
        uint64_t t = s->now + rnd(s, s->suspect / 2 + 1);

        for (uint32_t k = 0; k < ch->len; k++) {
                struct msg *m = &ch->m[(ch->head + k) % CH_CAP];
                if (m->ready < t)
                        m->ready = t;
                t = m->ready;
                push(s, m->ready, E_POLL, c, ch->epoch, 0);
        }
        if (ch->len)
                ch->last = t;
}

/* --- peer.c, modelled ---------------------------------------------------------------------- */

static void cs_start(struct sim *s, unsigned i);
static void cs_maybe_request(struct sim *s, unsigned i);
static void arm_deadline(struct sim *s, unsigned i);

static uint64_t alive_mask(const struct sim *s)
{
        uint64_t m = 0;

        for (unsigned i = 0; i < s->n; i++)
                if (s->p[i].alive)
                        m |= BIT(i);
        return m;
}

static bool fence_gt(const struct sim *s, uint64_t la, unsigned na, uint32_t ia, uint64_t lb, unsigned nb, uint32_t ib)
{
        if (la != lb)
                return la > lb;
        int r = strcmp(s->names[na], s->names[nb]);
        if (r != 0)
                return r > 0;
        return ia > ib;
}

static void on_enter(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];
        uint64_t suspected = P->ra.down & alive_mask(s);

        s->entries++;
        if (s->reuse) {
                s->rc_entries++;
                s->free_entries += P->ra.asked == 0;
        }
        P->clean = !suspected;
        P->refused = false;
        if (!P->clean) {
                s->tainted++;
                s->any_taint = true;
        }
        tr(s, T_ENTER, i, i, P->ra.req_ts, !P->clean);
        for (unsigned j = 0; j < s->n; j++) {
                if (j == i || !s->p[j].alive || s->p[j].ra.state != RA_HELD)
                        continue;
                s->overlaps++;
                if (P->clean && s->p[j].clean)
                        fail(s, C_ME, "mutual exclusion: %s enters with (%" PRIu64 ",%s) while %s holds (%" PRIu64
                             ",%s); neither had a live peer marked down", s->names[i], P->ra.req_ts, s->names[i],
                             s->names[j], s->p[j].ra.req_ts, s->names[j]);
        }
        if (s->active_cuts == 0 && s->now >= s->heal) {
                uint64_t from = P->wanted_since > s->heal ? P->wanted_since : s->heal;
                s->grants_after_heal++;
                if (s->now - from > s->max_grant) {
                        s->max_grant = s->now - from;
                        s->max_grant_dead = s->dead;
                }
        }
}

/* peer.c's run_actions */
static void run_actions(struct sim *s, unsigned i, const struct ra_actions *acts)
{
        for (unsigned k = 0; k < acts->n; k++) {
                const struct ra_action *a = &acts->a[k];
                switch (a->kind) {
                case RA_GOT_REQUEST:
                case RA_GOT_REPLY:
                        break;
                case RA_SEND_REQUEST:
                        s->peer_msgs++;
                        send_peer(s, i, a->peer, M_REQUEST, a->ts, 0);
                        break;
                case RA_SEND_REPLY:
                        s->peer_msgs++;
                        send_peer(s, i, a->peer, M_REPLY, a->clock, a->ts);
                        break;
                case RA_DEFER:
                        s->deferrals++;
                        break;
                case RA_ENTER:
                        on_enter(s, i);
                        cs_start(s, i);
                        break;
                }
        }
}

static void arm_fd_timer(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];
        uint64_t t = fd_next_deadline(&P->fd);

        P->fd_gen++;
        if (t != UINT64_MAX)
                push(s, t, E_FD, i, P->inc, P->fd_gen);
}

/* peer.c's fd_apply */
static void fd_apply(struct sim *s, unsigned i, const struct fd_events *ev)
{
        struct speer *P = &s->p[i];
        struct ra_actions acts;

        for (unsigned k = 0; k < ev->n; k++) {
                const struct fd_event *e = &ev->e[k];
                if (e->kind == FD_RESTARTED) {
                        tr(s, T_RESTARTED, i, e->peer, e->incarnation, 0);
                        ra_peer_up(&P->ra, e->peer, true, &acts);
                        run_actions(s, i, &acts);
                        continue;
                }
                tr(s, T_FD, i, e->peer, e->old, e->new);
                switch (e->new) {
                case FD_SUSPECT:
                        chan_kick(s, ch_pp(e->peer, i));
                        break;
                case FD_DEAD:
                        if (s->p[e->peer].alive)
                                s->false_dead++;
                        chan_kick(s, ch_pp(e->peer, i));
                        ra_peer_down(&P->ra, e->peer, &acts);
                        run_actions(s, i, &acts);
                        /* drop its links too: if it was only slow or cut off, it reconnects and asks again */
                        link_reset(s, i, e->peer);
                        break;
                case FD_ALIVE:
                        if (e->old == FD_DEAD) {
                                ra_peer_up(&P->ra, e->peer, false, &acts);
                                run_actions(s, i, &acts);
                        }
                        break;
                }
        }
        arm_fd_timer(s, i);
}

static void heard_from(struct sim *s, unsigned i, unsigned from, uint64_t incarnation, uint64_t at)
{
        struct fd_events ev;

        fd_heard(&s->p[i].fd, from, incarnation, at, &ev);
        if (ev.n)
                fd_apply(s, i, &ev);
}

static void post_answer(struct sim *s, unsigned i, unsigned k, enum outcome o)
{
        struct post *r = &s->post[k];

        if (r->done) {
                fail(s, C_ANSWER, "post #%u of %s answered twice", k, s->names[i]);
                return;
        }
        r->done = true;
        r->outcome = (uint8_t) o;
        s->pending--;
        if (o == O_ACKED) {
                s->acked++;
                tr(s, T_ACK, i, i, k, 0);
                if (r->stored != 1)
                        fail(s, C_ONCE, "post #%u of %s acknowledged as stored, but it is in the log %u time(s)", k,
                             s->names[i], r->stored);
        } else {
                tr(s, T_FAIL, i, i, k, o == O_UNKNOWN);
                if (o == O_UNKNOWN)
                        s->unknown_posts++;
                else
                        s->failed_posts++;
                if (o == O_FAILED && r->stored)
                        fail(s, C_ONCE, "post #%u of %s failed without 'may or may not have been stored', but it "
                             "is in the log (post id %u, %s)", k, s->names[i], r->post_id,
                             r->sent ? "its append was sent" : "never sent");
        }
        if (s->now > r->deadline)
                fail(s, C_ANSWER, "post #%u of %s answered %.3f ms after its deadline", k, s->names[i],
                     (double) (s->now - r->deadline) / 1000.0);
        if (r->after_heal && o != O_ACKED)
                fail(s, C_LIVE, "post #%u of %s, made after the last fault healed, "
                       "failed; its request %" PRIu64 " waits for:%s", k, s->names[i], s->p[i].ra.req_ts,
                       waits_for(s, i));
}

static void cs_send_appends(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        if (P->srv != SRV_UP)
                return;
        for (unsigned k = 0; k < P->cs_n; k++) {
                struct post *r = &s->post[P->cs[k]];
                if (r->done)
                        continue;
                if (!r->post_id)
                        r->post_id = P->next_post_id++;
                r->tag = ++P->next_tag;
                r->sent = true;
                tr(s, T_APPEND, i, i, (uint64_t) P->cs[k] << 32 | r->idx, r->lamport);
                chan_send(s, ch_p2s(i), (struct msg) { .kind = M_APPEND, .a = r->lamport, .b = r->post_id,
                                                       .c = P->cs[k], .d = r->idx, .e = s->sl[i].conn,
                                                       .f = r->tag }, 0, true);
        }
}

static void cs_start(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        P->cs_n = 0;
        P->fence_idx = 0;
        while (P->qn && P->cs_n < s->batch_max) {
                unsigned k = P->q[0];
                memmove(P->q, P->q + 1, --P->qn);
                s->post[k].lamport = P->ra.enter_ts;     /* peer.c: the fence is the clock at entry */
                s->post[k].idx = P->fence_idx++;
                P->cs[P->cs_n++] = (uint8_t) k;
        }
        cs_send_appends(s, i);
        arm_deadline(s, i);
        if (P->cs_n == 0) {
                struct ra_actions acts;
                tr(s, T_EXIT, i, i, P->ra.req_ts, 0);
                ra_release(&P->ra, &acts);
                run_actions(s, i, &acts);
                cs_maybe_request(s, i);
        }
}

static void cs_maybe_exit(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];
        uint8_t again[BATCH_MAX];
        unsigned na = 0;

        if (P->ra.state != RA_HELD)
                return;
        for (unsigned k = 0; k < P->cs_n; k++)
                if (!s->post[P->cs[k]].done && !s->post[P->cs[k]].fenced)
                        return;
        /* refused by the fence: back to the head of the queue, in order, keeping their post ids */
        for (unsigned k = 0; k < P->cs_n; k++) {
                struct post *r = &s->post[P->cs[k]];
                if (r->fenced && !r->done) {
                        r->fenced = false;
                        r->sent = false;        /* refused, so certainly not stored */
                        r->tag = 0;
                        again[na++] = P->cs[k];
                }
        }
        if (na) {
                memmove(P->q + na, P->q, P->qn);
                memcpy(P->q, again, na);
                P->qn += na;
        }
        tr(s, T_EXIT, i, i, P->ra.req_ts, P->cs_n);
        P->cs_n = 0;
        struct ra_actions acts;
        ra_release(&P->ra, &acts);
        run_actions(s, i, &acts);
        cs_maybe_request(s, i);
        arm_deadline(s, i);     /* as peer.c does since 54687b3: requeued posts keep their deadline */
}

static void cs_maybe_request(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];
        struct ra_actions acts;

        if (!P->qn || P->ra.state != RA_RELEASED || P->srv != SRV_UP)
                return;
        if (ra_request(&P->ra, &acts) != 0)
                return;
        P->wanted_since = s->now;
        tr(s, T_REQUEST, i, i, P->ra.req_ts, 0);
        if (P->ra.req_ts <= P->observed)
                fail(s, C_CLOCK, "%s requests with ts %" PRIu64 ", not above the fence %" PRIu64
                     " it was told of", s->names[i], P->ra.req_ts, P->observed);
        push(s, s->now + s->bound, E_LIVE, i, P->inc, P->ra.req_ts);
        run_actions(s, i, &acts);
}

static void arm_deadline(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];
        uint64_t next = UINT64_MAX;

        for (unsigned k = 0; k < P->cs_n; k++) {
                const struct post *r = &s->post[P->cs[k]];
                if (!r->done && r->deadline < next)
                        next = r->deadline;
        }
        if (P->qn && s->post[P->q[0]].deadline < next)
                next = s->post[P->q[0]].deadline;       /* FIFO: the head is the oldest */
        P->dl_gen++;
        if (next != UINT64_MAX)
                push(s, next, E_DEADLINE, i, P->inc, P->dl_gen);
}

static void on_deadline(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        for (unsigned k = 0; k < P->cs_n; k++) {
                struct post *r = &s->post[P->cs[k]];
                if (!r->done && r->deadline <= s->now)
                        post_answer(s, i, P->cs[k], r->sent && !r->fenced ? O_UNKNOWN : O_FAILED);
        }
        unsigned kept = 0;
        for (unsigned k = 0; k < P->qn; k++) {
                if (s->post[P->q[k]].deadline > s->now) {
                        P->q[kept++] = P->q[k];
                        continue;
                }
                post_answer(s, i, P->q[k], O_FAILED);   /* never sent, or refused: not stored */
        }
        P->qn = kept;
        if (P->ra.state == RA_HELD) {
                cs_maybe_exit(s, i);
        } else if (P->ra.state == RA_WANTED && !P->qn) {
                struct ra_actions acts;
                s->withdrawals++;
                tr(s, T_WITHDRAW, i, i, P->ra.req_ts, 0);
                ra_release(&P->ra, &acts);
                run_actions(s, i, &acts);
        }
        arm_deadline(s, i);
}

static void new_post(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        if (!P->alive) {
                s->refused_at_down++;           /* dchatctl cannot reach the daemon: an error at once */
                return;
        }
        if (s->nposts >= POSTS_MAX)
                return;
        unsigned k = s->nposts++;
        s->post[k] = (struct post) { .peer = (uint8_t) i, .inc = P->inc, .made = s->now,
                                     .deadline = s->now + s->post_timeout, .after_heal = s->now >= s->heal && !s->short_timeout };
        s->pending++;
        tr(s, T_POST, i, i, k, s->post_timeout);
        P->q[P->qn++] = (uint8_t) k;
        cs_maybe_request(s, i);
        arm_deadline(s, i);
}

static void server_closed(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        tr(s, T_SRV_DOWN, i, i, 0, 0);
        P->srv = SRV_DOWN;
        /* appends in flight stay in the critical section and are resent once the link is back */
        for (unsigned k = 0; k < P->cs_n; k++)
                s->post[P->cs[k]].tag = 0;
}

static int cs_find(struct sim *s, unsigned i, uint32_t tag)
{
        struct speer *P = &s->p[i];

        for (unsigned k = 0; k < P->cs_n; k++) {
                const struct post *r = &s->post[P->cs[k]];
                if (!r->done && !r->fenced && r->tag == tag)
                        return P->cs[k];
        }
        return -1;
}

/* The server's answer reaches peer i (peer.c's server_frame). */
static void peer_from_server(struct sim *s, unsigned i, const struct msg *m)
{
        struct speer *P = &s->p[i];

        if (m->kind == M_HELLO_ACK) {
                if (m->b >= P->next_post_id)
                        P->next_post_id = (uint32_t) m->b + 1;
                ra_observe(&P->ra, m->a);
                if (m->a > P->observed)
                        P->observed = m->a;
                P->srv = SRV_UP;
                tr(s, T_SRV_UP, i, i, m->a, m->b);
                cs_send_appends(s, i);
                cs_maybe_request(s, i);
                return;
        }
        int k = cs_find(s, i, m->f);
        if (k < 0)
                return;         /* answer to a post that already timed out */
        if (m->kind == M_APPENDED) {
                post_answer(s, i, (unsigned) k, O_ACKED);
        } else {
                ra_observe(&P->ra, m->a);
                if (m->a > P->observed)
                        P->observed = m->a;
                s->post[k].fenced = true;
                tr(s, T_FENCED, i, i, (unsigned) k, m->a);
        }
        arm_deadline(s, i);
        cs_maybe_exit(s, i);
}

/* --- the server (server.c + chatlog.c's append rules) -------------------------------------------- */

static void server_from_peer(struct sim *s, unsigned i, const struct msg *m)
{
        bool current = s->sl[i].up && m->e == s->sl[i].conn;
        uint64_t proc = rnd_range(s, 50, 2 * MS);       /* the batch's fdatasync */

        if (m->kind == M_SHELLO) {
                if (current)
                        chan_send(s, ch_s2p(i), (struct msg) { .kind = M_HELLO_ACK, .a = s->last_lamport,
                                                               .b = s->last_post_id[i] }, 0, true);
                return;
        }
        unsigned k = m->c;
        struct post *r = &s->post[k];
        if (r->inc != s->p[i].inc || !s->p[i].alive)
                s->any_crash = true;    /* an append from a dead incarnation, flushed by its kernel */
        if (m->b <= s->last_post_id[i]) {
                s->dups++;
                tr(s, T_DUP, SERVER_IDX, i, k, 0);
                if (current)
                        chan_send(s, ch_s2p(i), (struct msg) { .kind = M_APPENDED, .f = m->f }, proc, true);
                return;
        }
        if (s->has_fence && !fence_gt(s, m->a, i, m->d, s->last_lamport, s->last_node, s->last_idx)) {
                s->refusals++;
                tr(s, T_REFUSED, SERVER_IDX, i, k, m->a << 20 | (s->last_lamport & 0xfffff));
                if (r->inc == s->p[i].inc && s->p[i].alive && s->p[i].ra.state == RA_HELD &&
                    !s->p[i].refused) {
                        s->p[i].refused = true;
                        s->refused_entries++;
                }
                if (r->inc != s->p[i].inc || !s->p[i].alive || s->p[i].ra.state != RA_HELD ||
                    s->p[i].ra.enter_ts != m->a)
                        s->late_refusals++;     /* its entry is over: a stalled append, kept out of order */
                else if (!s->any_taint && !s->any_crash)
                        fail(s, C_FENCE, "the server refused post #%u of %s (fence %" PRIu64 ",%s,%u <= last "
                             "%" PRIu64 ",%s,%u) though no entry was ever made under false suspicion and no "
                             "peer crashed", k, s->names[i], m->a, s->names[i], m->d, s->last_lamport,
                             s->names[s->last_node], s->last_idx);
                if (current)
                        chan_send(s, ch_s2p(i), (struct msg) { .kind = M_FENCED, .a = s->last_lamport, .f = m->f },
                                  proc, true);
                return;
        }
        /* stored */
        if (r->stored)
                fail(s, C_ONCE, "post #%u of %s stored twice (post id %" PRIu64 ")", k, s->names[i], m->b);
        if (r->outcome == O_FAILED || r->outcome == O_CRASH_UNSENT)
                fail(s, C_ONCE, "post #%u of %s stored after it failed without 'may or may not'", k, s->names[i]);
        if (s->has_fence && !fence_gt(s, m->a, i, m->d, s->last_lamport, s->last_node, s->last_idx))
                fail(s, C_FENCE, "stored fences do not increase");
        r->stored++;
        s->stored++;
        s->log[s->nlog++] = (uint8_t) k;
        s->has_fence = true;
        s->last_lamport = m->a;
        s->last_node = i;
        s->last_idx = m->d;
        s->last_post_id[i] = (uint32_t) m->b;
        tr(s, T_STORED, SERVER_IDX, i, k, m->a);
        if (current)
                chan_send(s, ch_s2p(i), (struct msg) { .kind = M_APPENDED, .f = m->f }, proc, true);
}

/* --- peer to peer -------------------------------------------------------------------------- */

static void peer_from_peer(struct sim *s, unsigned to, unsigned from, const struct msg *m)
{
        struct speer *P = &s->p[to];
        struct ra_actions acts;

        switch ((enum mkind) m->kind) {
        case M_HB:
                heard_from(s, to, from, m->a, m->ready);
                return;
        case M_HELLO:
                tr(s, T_HELLO, to, from, m->a, 0);
                heard_from(s, to, from, m->a, s->now);
                /* what it sent on its old link may be lost: ask again (peer.c's in_frame) */
                ra_link_up(&P->ra, from, &acts);
                run_actions(s, to, &acts);
                return;
        case M_REQUEST:
                heard_from(s, to, from, 0, s->now);
                tr(s, T_GOT_REQUEST, to, from, m->a, P->ra.state);
                ra_on_request(&P->ra, from, m->a, &acts);
                run_actions(s, to, &acts);
                return;
        case M_REPLY:
                heard_from(s, to, from, 0, s->now);
                tr(s, T_GOT_REPLY, to, from, m->b, 0);
                ra_on_reply(&P->ra, from, m->a, m->b, &acts);
                run_actions(s, to, &acts);
                return;
        default:
                fail(s, C_SIM, "unexpected message on a peer link");
                return;
        }
}

static void poll_chan(struct sim *s, unsigned c)
{
        struct chan *ch = &s->ch[c];
        uint32_t epoch = ch->epoch;

        if (chan_stalled(s, c))
                return;
        while (ch->len && ch->epoch == epoch && !s->failed) {
                struct msg m = ch->m[ch->head];
                if (m.ready > s->now)
                        break;
                ch->head = (ch->head + 1) % CH_CAP;
                ch->len--;
                if (c < NMAX * NMAX)
                        peer_from_peer(s, c % NMAX, c / NMAX, &m);
                else if (c < NMAX * NMAX + NMAX)
                        server_from_peer(s, c - NMAX * NMAX, &m);
                else
                        peer_from_server(s, c - NMAX * NMAX - NMAX, &m);
        }
        /* heartbeats for a receiver that suspects the sender: deliver them on time */
        if (c < NMAX * NMAX && ch->len && ch->epoch == epoch && ch->m[ch->head].kind == M_HB &&
            s->p[c % NMAX].fd.p[c / NMAX].state != FD_ALIVE)
                push(s, ch->m[ch->head].ready, E_POLL, c, ch->epoch, 0);
}

/* --- crashes, restarts, faults ---------------------------------------------------------------- */

static void crash(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        tr(s, T_CRASH, i, i, 0, 0);
        s->crashes++;
        s->any_crash = true;
        P->alive = false;
        for (unsigned k = 0; k < s->nposts; k++) {
                struct post *r = &s->post[k];
                if (r->peer != i || r->inc != P->inc || r->done)
                        continue;
                /* the client's connection dies with the daemon: an error, outcome unknown if sent */
                r->done = true;
                r->outcome = r->sent ? O_CRASH_SENT : O_CRASH_UNSENT;
                s->pending--;
                s->crash_posts++;
                if (!r->sent && r->stored)
                        fail(s, C_ONCE, "post #%u of %s is in the log though it was never sent", k, s->names[i]);
        }
        P->qn = P->cs_n = 0;
        for (unsigned j = 0; j < s->n; j++)
                if (j != i)
                        link_reset(s, i, j);
        slink_reset(s, i, s->flush);
}

static void restart(struct sim *s, unsigned i)
{
        struct speer *P = &s->p[i];

        P->alive = true;
        P->gone = false;
        P->inc = ++s->inc_counter;
        P->clean = P->refused = false;
        ra_init(&P->ra, s->n, i, s->names);
        ra_set_reuse(&P->ra, s->reuse);
        fd_init(&P->fd, s->n, i, s->suspect, s->dead, s->now);
        P->srv = SRV_DOWN;
        P->next_post_id = 1;
        P->next_tag = 0;
        P->qn = P->cs_n = 0;
        P->observed = 0;
        tr(s, T_RESTART, i, i, P->inc, 0);
        arm_fd_timer(s, i);
        push(s, s->now + s->hb, E_HB, i, P->inc, 0);
        for (unsigned j = 0; j < s->n; j++)
                if (j != i)
                        link_schedule(s, i, j);
        slink_schedule(s, i);
}

/* Which links fault f cuts: calls fn on each. */

/* Counts a cut (or its heal) of a link; true when a heal left it with no cut at all. */
static bool link_fault(struct link *l, bool stall, bool cut)
{
        uint8_t *n = stall ? &l->stall_cuts : &l->reset_cuts;
        if (cut) {
                (*n)++;
                return false;
        }
        (*n)--;
        return !l->stall_cuts && !l->reset_cuts;
}
static void fault_links(struct sim *s, const struct fault *f, bool cut)
{
        unsigned pp[NMAX * NMAX][2], np = 0, sp[NMAX], ns = 0;

        switch (f->kind) {
        case F_PARTITION:
                for (unsigned i = 0; i < s->n; i++) {
                        for (unsigned j = i + 1; j < s->n; j++)
                                if (!(f->side & BIT(i)) != !(f->side & BIT(j))) {
                                        pp[np][0] = i;
                                        pp[np++][1] = j;
                                }
                        if (!(f->side & BIT(i)) != !(f->side & BIT(NMAX)))
                                sp[ns++] = i;
                }
                break;
        case F_CUT:
                pp[np][0] = f->p;
                pp[np++][1] = f->q;
                break;
        case F_SCUT:
                sp[ns++] = f->p;
                break;
        default:
                return;
        }
        for (unsigned k = 0; k < np; k++) {
                unsigned i = pp[k][0], j = pp[k][1];
                struct link *l = plink(s, i, j);
                if (!link_fault(l, f->stall, cut)) {
                        if (cut && !f->stall)
                                link_reset(s, i, j);
                        continue;
                }
                if (l->up) {
                        chan_unstall(s, ch_pp(i, j));
                        chan_unstall(s, ch_pp(j, i));
                } else {
                        link_schedule(s, i, j);
                }
        }
        for (unsigned k = 0; k < ns; k++) {
                unsigned i = sp[k];
                struct link *l = &s->sl[i];
                if (!link_fault(l, f->stall, cut)) {
                        if (cut && !f->stall)
                                slink_reset(s, i, false);
                        continue;
                }
                if (l->up) {
                        chan_unstall(s, ch_p2s(i));
                        chan_unstall(s, ch_s2p(i));
                } else {
                        slink_schedule(s, i);
                }
        }
}

static void fault_start(struct sim *s, unsigned k)
{
        struct fault *f = &s->f[k];

        switch (f->kind) {
        case F_CRASH:
                if (!s->p[f->p].alive)
                        return;         /* already down: this fault does nothing */
                crash(s, f->p);
                s->crashed++;
                s->p[f->p].gone = f->permanent;
                s->for_good += f->permanent;
                break;
        case F_SRV_RESTART:
                if (!s->server_up)
                        return;
                s->srv_restarts++;
                s->server_up = false;
                s->active_cuts++;
                for (unsigned i = 0; i < s->n; i++)
                        slink_reset(s, i, false);
                break;
        default:
                s->active_cuts++;
                s->partitions += f->kind == F_PARTITION;
                s->cuts += f->kind == F_CUT;
                s->scuts += f->kind == F_SCUT;
                s->stalls += f->stall;
                tr(s, T_FAULT, f->p, f->q, f->kind, (uint64_t) f->stall << 32 | f->side);
                fault_links(s, f, true);
                break;
        }
        f->active = true;
        s->stable_since = s->now;
}

static void fault_end(struct sim *s, unsigned k)
{
        struct fault *f = &s->f[k];

        if (!f->active)
                return;
        f->active = false;
        s->stable_since = s->now;
        tr(s, T_HEAL, f->p, f->q, f->kind, 0);
        switch (f->kind) {
        case F_CRASH:
                s->crashed--;
                restart(s, f->p);
                break;
        case F_SRV_RESTART:
                s->server_up = true;
                s->active_cuts--;
                for (unsigned i = 0; i < s->n; i++)
                        slink_schedule(s, i);
                break;
        default:
                s->active_cuts--;
                fault_links(s, f, false);
                break;
        }
}

/* --- one schedule -------------------------------------------------------------------------- */

static void live_check(struct sim *s, unsigned i, uint32_t inc, uint64_t ts)
{
        struct speer *P = &s->p[i];

        if (!P->alive || P->inc != inc || P->ra.state != RA_WANTED || P->ra.req_ts != ts)
                return;
        uint64_t from = P->wanted_since > s->stable_since ? P->wanted_since : s->stable_since;
        if (s->active_cuts == 0 && s->now >= from + s->bound) {
                fail(s, C_LIVE, "liveness: %s's request ts %" PRIu64 " waits %.1f ms "
                       "(bound %.1f ms) with no cut for %.1f ms; it awaits:%s", s->names[i], ts,
                       (double) (s->now - P->wanted_since) / 1e3, (double) s->bound / 1e3,
                       (double) (s->now - s->stable_since) / 1e3, waits_for(s, i));
                return;
        }
        push(s, (s->active_cuts ? s->now : from) + s->bound, E_LIVE, i, inc, ts);
}

static bool quiescent(const struct sim *s)
{
        if (s->now < s->last_post_at || s->now < s->heal || s->pending)
                return false;
        for (unsigned i = 0; i < s->n; i++)
                if ((!s->p[i].alive && !s->p[i].gone) || (s->p[i].alive && s->p[i].ra.state != RA_RELEASED))
                        return false;
        return true;
}

static void setup(struct sim *s, uint64_t seed)
{
        static const char *const pool[NMAX] = { "ada", "bo", "cyd", "dee", "eve", "fay", "gus", "hal", "ivo" };
        unsigned perm[NMAX];

        s->seed = seed;
        s->rng = seed * UINT64_C(0x9E3779B97F4A7C15) ^ UINT64_C(0xD1B54A32D192ED03);
        if (!s->rng)
                s->rng = 1;
        (void) rng_next(s);
        s->n = 3 + (unsigned) (seed % 7);
        s->reuse = (seed / 7) % 4 != 0;        /* not from the random stream: schedules stay as they were */
        for (unsigned i = 0; i < NMAX; i++)
                perm[i] = i;
        for (unsigned i = NMAX - 1; i > 0; i--) {
                unsigned j = (unsigned) rnd(s, i + 1), t = perm[i];
                perm[i] = perm[j];
                perm[j] = t;
        }
        for (unsigned i = 0; i < s->n; i++)
                s->names[i] = pool[perm[i]];

        /* timings: usually like the defaults (1:4:12), scaled down; sometimes so tight that jitter alone
         * makes a peer look dead */
        s->aggressive = rnd(s, 8) == 0;
        if (s->aggressive) {
                s->hb = rnd_range(s, 4, 10) * MS;
                s->suspect = s->hb * rnd_range(s, 2, 3);
                s->dead = s->suspect + s->hb * rnd_range(s, 1, 3);
        } else {
                s->hb = rnd_range(s, 10, 40) * MS;
                s->suspect = s->hb * rnd_range(s, 3, 5);
                s->dead = s->suspect * rnd_range(s, 2, 3);
        }
        s->rmin = rnd_range(s, 1, 10) * MS;
        s->rmax = s->rmin + rnd(s, s->dead);
        /* Usually long enough for the backlog of posts left by the faults (capacity is not what is
         * tested: only then must every post made after the faults be stored); sometimes short, so
         * that posts time out everywhere in the protocol. */
        s->short_timeout = rnd(s, 3) == 0;
        s->post_timeout = s->dead * rnd_range(s, 2, 6) + 2 * s->rmax + (s->short_timeout ? 0 : 500 * MS);
        s->bound = 10 * s->dead + 2 * s->rmax;
        s->batch_max = (unsigned) rnd_range(s, 1, BATCH_MAX);
        s->horizon = s->dead * rnd_range(s, 3, 6);
        s->flush = rnd(s, 2);

        s->now = s->evseq = 0;
        s->nheap = 0;
        s->ntr = 0;
        s->failed = 0;
        s->why[0] = '\0';
        s->nposts = s->pending = 0;
        s->has_fence = false;
        s->last_lamport = 0;
        s->last_node = 0;
        s->last_idx = 0;
        memset(s->last_post_id, 0, sizeof s->last_post_id);
        s->nlog = 0;
        s->any_taint = s->any_crash = false;
        s->server_up = true;
        s->active_cuts = s->crashed = 0;
        s->stable_since = 0;
        s->inc_counter = 0;
        memset(s->l, 0, sizeof s->l);
        memset(s->sl, 0, sizeof s->sl);
        for (unsigned c = 0; c < NCHAN; c++) {
                struct chan *ch = &s->ch[c];
                ch->head = ch->len = 0;
                ch->last = 0;
                ch->epoch++;
                /* most links are fast; a few are slow */
                ch->base = rnd(s, 6) == 0 ? rnd_range(s, 2 * MS, 10 * MS) : rnd_range(s, 50, MS);
        }

        /* faults */
        s->nf = rnd(s, 10) == 0 ? 0 : (unsigned) rnd_range(s, 1, FAULTS_MAX);
        s->heal = 0;
        for (unsigned k = 0; k < s->nf; k++) {
                struct fault *f = &s->f[k];
                uint64_t r = rnd(s, 100), len;
                *f = (struct fault) { 0 };
                f->kind = r < 30 ? F_CRASH : r < 55 ? F_PARTITION : r < 80 ? F_CUT : r < 92 ? F_SCUT : F_SRV_RESTART;
                f->p = (uint8_t) rnd(s, s->n);
                f->q = (uint8_t) ((f->p + 1 + rnd(s, s->n - 1)) % s->n);
                f->stall = rnd(s, 3) == 0;
                if (f->kind == F_PARTITION) {
                        do
                                f->side = (uint32_t) rnd(s, BIT(s->n)) | (rnd(s, 2) ? (uint32_t) BIT(NMAX) : 0);
                        while (f->side == 0 || f->side == ((uint32_t) BIT(s->n) - 1) + (uint32_t) BIT(NMAX));
                }
                switch (rnd(s, 4)) {
                case 0:
                        len = rnd_range(s, 1, s->suspect);                      /* unnoticed */
                        break;
                case 1:
                        len = rnd_range(s, s->suspect, s->dead + s->hb);        /* around the edge */
                        break;
                default:
                        len = rnd_range(s, s->dead, 4 * s->dead);               /* declared dead */
                        break;
                }
                f->start = rnd(s, s->horizon);
                f->end = f->start + len;
                f->permanent = f->kind == F_CRASH && rnd(s, 6) == 0;
                if (f->permanent)
                        f->end = f->start;      /* the last change it makes */
                if (f->end > s->heal)
                        s->heal = f->end;
                push(s, f->start, E_FAULT_START, k, 0, 0);
                if (!f->permanent)
                        push(s, f->end, E_FAULT_END, k, 0, 0);
        }

        /* posts: during the faults, and a few after the last one healed */
        unsigned n_posts = (unsigned) rnd_range(s, 3, 24), n_after = (unsigned) rnd_range(s, 1, 4);
        s->last_post_at = 0;
        for (unsigned k = 0; k < n_posts + n_after; k++) {
                uint64_t t = k < n_posts ? rnd(s, s->horizon + s->dead) : s->heal + rnd(s, s->dead);
                if (t > s->last_post_at)
                        s->last_post_at = t;
                push(s, t, E_POST, (uint32_t) rnd(s, s->n), 0, 0);
        }
        s->cap = (s->heal > s->horizon ? s->heal : s->horizon) + s->bound + s->post_timeout + 2 * s->dead;

        /* everybody starts at 0 */
        for (unsigned i = 0; i < s->n; i++) {
                s->p[i].alive = false;
                s->p[i].inc = 0;
        }
        for (unsigned i = 0; i < s->n; i++)
                restart(s, i);
        s->ntr = 0;
}

static void dispatch(struct sim *s, const struct ev *e)
{
        struct speer *P;

        switch ((enum ekind) e->kind) {
        case E_POLL:
                if (s->ch[e->a].epoch == e->b)
                        poll_chan(s, e->a);
                return;
        case E_HB:
                P = &s->p[e->a];
                if (!P->alive || P->inc != e->b)
                        return;
                for (unsigned j = 0; j < s->n; j++)
                        if (j != e->a)
                                send_peer(s, e->a, j, M_HB, P->inc, 0);
                push(s, s->now + s->hb, E_HB, e->a, e->b, 0);
                return;
        case E_FD: {
                struct fd_events ev;
                P = &s->p[e->a];
                if (!P->alive || P->inc != e->b || P->fd_gen != e->c)
                        return;
                /* heartbeats consumed lazily: the ones due by now first */
                for (unsigned j = 0; j < s->n; j++)
                        if (j != e->a)
                                poll_chan(s, ch_pp(j, e->a));
                fd_tick(&P->fd, s->now, &ev);
                fd_apply(s, e->a, &ev);
                return;
        }
        case E_DEADLINE:
                P = &s->p[e->a];
                if (!P->alive || P->inc != e->b || P->dl_gen != e->c)
                        return;
                on_deadline(s, e->a);
                return;
        case E_POST:
                new_post(s, e->a);
                return;
        case E_CONNECT: {
                unsigned i = e->a / NMAX, j = e->a % NMAX;
                struct link *l = plink(s, i, j);
                struct ra_actions acts;
                if (l->gen != e->c || l->up || !link_usable(s, i, j))
                        return;
                l->up = true;
                tr(s, T_LINK_UP, i, j, 0, 0);
                if (rnd(s, 2)) {
                        unsigned t = i;
                        i = j;
                        j = t;
                }
                /* each side: HELLO with its incarnation, then ra_link_up (peer.c's out_connected) */
                send_peer(s, i, j, M_HELLO, s->p[i].inc, 0);
                ra_link_up(&s->p[i].ra, j, &acts);
                run_actions(s, i, &acts);
                send_peer(s, j, i, M_HELLO, s->p[j].inc, 0);
                ra_link_up(&s->p[j].ra, i, &acts);
                run_actions(s, j, &acts);
                return;
        }
        case E_SCONNECT: {
                struct link *l = &s->sl[e->a];
                if (l->gen != e->c || l->up || !slink_usable(s, e->a))
                        return;
                l->up = true;
                s->p[e->a].srv = SRV_CONNECTING;
                chan_send(s, ch_p2s(e->a), (struct msg) { .kind = M_SHELLO, .e = l->conn }, 0, true);
                return;
        }
        case E_FAULT_START:
                fault_start(s, e->a);
                return;
        case E_FAULT_END:
                fault_end(s, e->a);
                return;
        case E_LIVE:
                live_check(s, e->a, e->b, e->c);
                return;
        }
}

static const char *params(const struct sim *s)
{
        static char buf[1024];
        static const char *const fk[] = { "crash", "partition", "cut", "server-link cut", "server restart" };
        int off = snprintf(buf, sizeof buf, "n=%u%s%s hb=%" PRIu64 " suspect=%" PRIu64 " dead=%" PRIu64
                           " post_timeout=%" PRIu64 " reconnect=%" PRIu64 "..%" PRIu64 " batch_max=%u ms; "
                           "heal at %.1f ms; names", s->n, s->aggressive ? " (tight timings)" : "",
                           s->reuse ? " (Roucairol-Carvalho)" : "", s->hb / MS,
                           s->suspect / MS, s->dead / MS, s->post_timeout / MS, s->rmin / MS, s->rmax / MS,
                           s->batch_max, (double) s->heal / 1e3);
        for (unsigned i = 0; i < s->n && off > 0 && (size_t) off < sizeof buf - 32; i++)
                off += snprintf(buf + off, sizeof buf - (size_t) off, " %u:%s", i, s->names[i]);
        for (unsigned k = 0; k < s->nf && off > 0 && (size_t) off < sizeof buf - 96; k++) {
                const struct fault *f = &s->f[k];
                off += snprintf(buf + off, sizeof buf - (size_t) off, "; %s%s %s", fk[f->kind],
                                f->stall && f->kind != F_CRASH ? " (stall)" : f->permanent ? " (for good)" : "",
                                s->names[f->p]);
                if (f->kind == F_CUT)
                        off += snprintf(buf + off, sizeof buf - (size_t) off, "-%s", s->names[f->q]);
                if (f->kind == F_PARTITION)
                        off += snprintf(buf + off, sizeof buf - (size_t) off, " side 0x%x", f->side);
                off += snprintf(buf + off, sizeof buf - (size_t) off, " %.1f..%.1f ms", (double) f->start / 1e3,
                                (double) f->end / 1e3);
        }
        return buf;
}

/* Runs one schedule; returns 0 if every check held, else the failed check + 1. */
static int simulate(struct sim *s, uint64_t seed)
{
        unsigned long long events = 0;

        setup(s, seed);
        while (s->nheap && !s->failed) {
                struct ev e = pop(s);
                if (e.t > s->cap)
                        break;
                s->now = e.t;
                if (++events > EVENTS_MAX) {
                        fail(s, C_SIM, "more than %u events by %.3f ms: a livelock", EVENTS_MAX, (double) s->now / 1e3);
                        break;
                }
                dispatch(s, &e);
                if (!s->failed && s->now >= s->last_post_at && quiescent(s))
                        break;
        }
        s->events += events;
        if (events > s->max_events)
                s->max_events = events;
        if (s->failed)
                return s->failed;
        if (!quiescent(s)) {
                for (unsigned k = 0; k < s->nposts; k++)
                        if (!s->post[k].done && s->p[s->post[k].peer].alive)
                                fail(s, s->post[k].deadline < s->now ? C_ANSWER : C_LIVE,
                                     "post #%u of %s (deadline %.1f ms) never answered; at %.1f ms the cluster is "
                                     "still busy", k, s->names[s->post[k].peer],
                                     (double) s->post[k].deadline / 1e3, (double) s->now / 1e3);
                fail(s, C_LIVE, "not quiescent at %.1f ms, %.1f ms after the last fault healed",
                     (double) s->now / 1e3, (double) (s->now - s->heal) / 1e3);
                return s->failed;
        }
        /* the log, at the end */
        for (unsigned k = 0; k < s->nposts; k++) {
                const struct post *r = &s->post[k];
                if (r->stored > 1 || (r->outcome == O_ACKED && r->stored != 1) ||
                    ((r->outcome == O_FAILED || r->outcome == O_CRASH_UNSENT) && r->stored))
                        fail(s, C_ONCE, "post #%u of %s: outcome %u, in the log %u time(s)", k,
                             s->names[r->peer], r->outcome, r->stored);
        }
        return s->failed;
}

static void report_failure(struct sim *s, uint64_t seed)
{
        diag("seed %" PRIu64 ": %s", seed, s->why);
        diag("  replay: DCHAT_SIM_SEED=%" PRIu64 " tests/unit/test-sim", seed);
        diag("  %s", params(s));
        const char *n = getenv("DCHAT_SIM_TRACE");
        for (unsigned i = 0; i < s->n; i++) {
                const struct speer *P = &s->p[i];
                if (!P->alive)
                        diag("  %s: crashed", s->names[i]);
                else if (P->ra.state == RA_RELEASED)
                        diag("  %s: released, clock %" PRIu64 ", %u queued", s->names[i], P->ra.clock, P->qn);
                else
                        diag("  %s: %s ts %" PRIu64 ", clock %" PRIu64 ", %u queued, %u in the critical section; "
                             "awaits:%s", s->names[i], ra_state_name(P->ra.state), P->ra.req_ts, P->ra.clock, P->qn,
                             P->cs_n, waits_for(s, i));
        }
        diag("  last events:");
        show_trace(s, n && *n ? (unsigned) strtoul(n, NULL, 0) : 30);
}

static double wall(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int main(void)
{
        struct sim *s = &S;
        const char *one = getenv("DCHAT_SIM_SEED"), *runs_env = getenv("DCHAT_SIM_RUNS");
        unsigned long long runs = RUNS_DEFAULT, fails[C_N] = {0}, per_n[NMAX + 1] = {0}, fail_n[NMAX + 1] = {0};
        unsigned reported = 0;
        double t0 = wall();

        plan_no_plan();
        if (one && *one) {
                uint64_t seed = strtoull(one, NULL, 0);
                int r = simulate(s, seed);
                diag("%s", params(s));
                diag("%llu events, %llu entries (%llu under false suspicion), %llu refusals, %u posts, %u stored",
                     s->events, s->entries, s->tainted, s->refusals, s->nposts, s->nlog);
                if (r)
                        report_failure(s, seed);
                ok(r == 0, "sim: seed %" PRIu64 "%s%s", seed, r ? ": " : "", r ? check_names[r - 1] : "");
                return done_testing();
        }
        if (runs_env && *runs_env)
                runs = strtoull(runs_env, NULL, 0);

        for (uint64_t seed = 1; seed <= runs; seed++) {
                int r = simulate(s, seed);
                per_n[s->n]++;
                if (!r)
                        continue;
                fails[r - 1]++;
                fail_n[s->n]++;
                if (reported++ < 3)
                        report_failure(s, seed);
                else if (getenv("DCHAT_SIM_LIST"))
                        diag("seed %" PRIu64 "%s: %s", seed, s->aggressive ? " (tight)" : "", s->why);
        }
        double dt = wall() - t0;

        for (unsigned n = 3; n <= NMAX; n++)
                ok(per_n[n] > 0 && fail_n[n] == 0, "sim: %u peers: %llu schedules, %llu failed", n, per_n[n],
                   fail_n[n]);
        for (unsigned c = 0; c < C_N; c++)
                ok(fails[c] == 0, "sim: %s (%llu schedule(s) failed)", check_names[c], fails[c]);
        diag("%llu schedules in %.1f s: %llu events (at most %llu in one), %llu entries (%llu overlapping another), "
             "%llu deferrals, %llu withdrawals", runs, dt, s->events, s->max_events, s->entries, s->overlaps,
             s->deferrals, s->withdrawals);
        diag("Roucairol-Carvalho: %llu of %llu entries in its schedules made without a message; "
             "%.2f DME messages per entry over all schedules", s->free_entries, s->rc_entries,
             s->entries ? (double) s->peer_msgs / (double) s->entries : 0.0);
        ok(runs < 1000 || (s->free_entries > 0 && s->rc_entries < s->entries),
           "sim: schedules with and without Roucairol-Carvalho, some entries without a message");
        diag("faults: %llu crashes (%llu for good), %llu partitions, %llu peer-link cuts, %llu server-link cuts, "
             "%llu server restarts (%llu cuts by stall); %llu messages lost; %llu false DEAD verdicts", s->crashes,
             s->for_good, s->partitions, s->cuts, s->scuts, s->srv_restarts, s->stalls, s->lost_msgs, s->false_dead);
        diag("false suspicion: %llu entries with a live peer marked down; %llu entries caught by the fence "
             "(%llu appends refused, %llu of them stalled appends whose entry was over)", s->tainted,
             s->refused_entries, s->refusals, s->late_refusals);
        diag("posts: %llu stored (%llu duplicates recognised), %llu acknowledged, %llu failed, %llu 'may or may "
             "not', %llu died with their peer, %llu refused at a crashed peer", s->stored, s->dups, s->acked,
             s->failed_posts, s->unknown_posts, s->crash_posts, s->refused_at_down);
        diag("liveness: %llu requests granted after the last fault healed; the longest waited %.1f ms "
             "(%.2f x dead_after)", s->grants_after_heal, (double) s->max_grant / 1e3,
             s->max_grant_dead ? (double) s->max_grant / (double) s->max_grant_dead : 0.0);
        ok(runs < 1000 || (s->crashes && s->partitions && s->cuts && s->scuts && s->srv_restarts && s->stalls &&
                           s->tainted && s->refused_entries && s->dups && s->withdrawals && s->unknown_posts),
           "sim: the schedules exercised crashes, partitions, cuts, stalls, false suspicion, fencing, "
           "duplicates, withdrawals and unknown outcomes");
        return done_testing();
}
