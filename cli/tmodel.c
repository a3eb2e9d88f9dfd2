/* SPDX-License-Identifier: MIT */
/* tmodel.c — a cluster's trace: merge, match, window, layout, check, write (tmodel.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "tmodel.h"
#include "vclock.h"

void tm_init(struct tmodel *m)
{
        *m = (struct tmodel) {0};
}

void tm_free(struct tmodel *m)
{
        free(m->ev);
        free(m->clocks);
        *m = (struct tmodel) {0};
}

static void say(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t cap, const char *fmt, ...)
{
        va_list ap;

        if (!err || !cap)
                return;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
}

/* "node1, node2, node3" into buf. */
static void list_names(const char *const *names, unsigned n, char *buf, size_t cap)
{
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < n && off < cap; i++)
                off += (size_t) snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", names[i]);
}

int tm_set_lanes(struct tmodel *m, const char *const *names, unsigned n, char *err, size_t cap)
{
        if (n == 0 || n > DCHAT_PEERS_MAX) {
                say(err, cap, "%u peers: a cluster has 1 to %d", n, DCHAT_PEERS_MAX);
                return -EINVAL;
        }
        for (unsigned i = 0; i < n; i++)
                if (!node_name_valid(names[i])) {
                        say(err, cap, "'%s' is no node name", names[i]);
                        return -EINVAL;
                }
        if (m->n_lanes) {
                bool same = m->n_lanes == n;
                for (unsigned i = 0; same && i < n; i++)
                        same = strcmp(m->lanes[i].name, names[i]) == 0;
                if (same)
                        return 0;
                const char *have[DCHAT_PEERS_MAX];
                char a[512], b[512];
                for (unsigned i = 0; i < m->n_lanes; i++)
                        have[i] = m->lanes[i].name;
                list_names(names, n, a, sizeof a);
                list_names(have, m->n_lanes, b, sizeof b);
                say(err, cap, "its peers are %s, the rest of the trace's %s: another cluster (or another config)",
                    a, b);
                return -EXDEV;
        }
        for (unsigned i = 0; i < n; i++)
                snprintf(m->lanes[i].name, sizeof m->lanes[i].name, "%s", names[i]);
        m->n_lanes = n;
        return 0;
}

int tm_lane(const struct tmodel *m, const char *name)
{
        for (unsigned i = 0; i < m->n_lanes; i++)
                if (strcmp(m->lanes[i].name, name) == 0)
                        return (int) i;
        return -1;
}

int tm_add(struct tmodel *m, const struct tm_event *e, const uint64_t *vc)
{
        if (e->lane >= m->n_lanes)
                return -EINVAL;
        if (m->n == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 1024;
                struct tm_event *ev = realloc(m->ev, cap * sizeof *ev);
                if (!ev)
                        return -ENOMEM;
                m->ev = ev;
                m->cap = cap;
        }
        struct tm_event *x = &m->ev[m->n];
        *x = *e;
        x->vc = TM_NONE;
        x->match = TM_NONE;
        if (vc) {
                if (m->n_clocks + m->n_lanes > m->cap_clocks) {
                        size_t cap = m->cap_clocks ? m->cap_clocks * 2 : 1024 * m->n_lanes;
                        uint64_t *c = realloc(m->clocks, cap * sizeof *c);
                        if (!c)
                                return -ENOMEM;
                        m->clocks = c;
                        m->cap_clocks = cap;
                }
                memcpy(m->clocks + m->n_clocks, vc, m->n_lanes * sizeof *vc);
                x->vc = m->n_clocks;
                m->n_clocks += m->n_lanes;
        }
        m->n++;
        return 0;
}

void tm_set_missing(struct tmodel *m, unsigned lane, uint64_t got, const char *why)
{
        if (lane >= m->n_lanes)
                return;
        m->lanes[lane].missing = true;
        m->lanes[lane].got = got;
        snprintf(m->lanes[lane].why, sizeof m->lanes[lane].why, "%s", why);
}

uint64_t tm_vc(const struct tmodel *m, const struct tm_event *e, unsigned j)
{
        return e->vc == TM_NONE || j >= m->n_lanes ? 0 : m->clocks[e->vc + j];
}

bool tm_before(const struct tmodel *m, const struct tm_event *a, const struct tm_event *b)
{
        bool less = false;

        if (a->vc == TM_NONE || b->vc == TM_NONE)
                return false;
        for (unsigned j = 0; j < m->n_lanes; j++) {
                uint64_t x = m->clocks[a->vc + j], y = m->clocks[b->vc + j];
                if (x > y)
                        return false;
                less |= x < y;
        }
        return less;
}

/* --- reading JSON ---------------------------------------------------------------------------- */

/* A vector clock as a JSON object {"node1":3,...}: its names set the lanes (or must match them). */
static int read_clock(struct tmodel *m, const struct json *o, uint64_t *vc, char *err, size_t cap)
{
        const char *names[DCHAT_PEERS_MAX];

        if (!o || o->type != JSON_OBJECT || o->n == 0 || o->n > DCHAT_PEERS_MAX) {
                say(err, cap, "its vector clock is not an object of 1 to %d components", DCHAT_PEERS_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < o->n; i++) {
                names[i] = o->keys[i];
                if (!json_value_u64(o->v[i], &vc[i]) || vc[i] > DCHAT_CLOCK_MAX) {
                        say(err, cap, "its vector clock's component %s is no number from 0 to 2^62", o->keys[i]);
                        return -EINVAL;
                }
        }
        return tm_set_lanes(m, names, (unsigned) o->n, err, cap);
}

static int read_names(struct tmodel *m, const struct json *a, char *err, size_t cap)
{
        const char *names[DCHAT_PEERS_MAX];

        if (!a || a->type != JSON_ARRAY || a->n == 0 || a->n > DCHAT_PEERS_MAX) {
                say(err, cap, "\"nodes\" is not a list of 1 to %d names", DCHAT_PEERS_MAX);
                return -EINVAL;
        }
        for (size_t i = 0; i < a->n; i++) {
                if (a->v[i]->type != JSON_STRING) {
                        say(err, cap, "\"nodes\" holds something that is no name");
                        return -EINVAL;
                }
                names[i] = a->v[i]->s;
        }
        return tm_set_lanes(m, names, (unsigned) a->n, err, cap);
}

/* The fields of an event, by their names in one format or the other. */
struct fields {
        const char *event, *node, *peer, *no, *time, *lamport, *request_ts, *fence, *fence_idx, *seq, *send_vt,
                *vclock;
};
static const struct fields journal_fields = { "DCHAT_EVENT", "DCHAT_NODE", "DCHAT_PEER", "DCHAT_EVENT_NO",
        "__REALTIME_TIMESTAMP", "DCHAT_LAMPORT", "DCHAT_REQUEST_TS", "DCHAT_FENCE", "DCHAT_FENCE_IDX", "DCHAT_SEQ",
        "DCHAT_SEND_VT", "DCHAT_VCLOCK" };
static const struct fields trace_fields = { "event", "node", "peer", "no", "time_us", "lamport", "request_ts",
        "fence", "fence_idx", "seq", "send_vt", "vclock" };

static int read_event(struct tmodel *m, const struct json *o, const struct fields *f, char *err, size_t cap)
{
        const char *name, *node, *peer;
        uint64_t vc[DCHAT_PEERS_MAX], idx = 0;
        struct tm_event e = { .peer = -1 };
        const struct json *clock = json_get(o, f->vclock);
        int r;

        json_str(o, f->event, &name);
        e.kind = proto_trace_kind_by_name(name);
        if (!e.kind)
                return 0;       /* an event no ring keeps (started, server-up, ...) */
        if (f == &journal_fields && clock && clock->type == JSON_STRING) {
                /* the journal keeps it as text: {"node1":3,...} */
                struct json_doc *doc;
                const struct json *c;
                char why[128];
                if (json_parse(clock->s, clock->len, &doc, &c, why, sizeof why) < 0) {
                        say(err, cap, "its DCHAT_VCLOCK is not JSON: %s", why);
                        return -EINVAL;
                }
                r = read_clock(m, c, vc, err, cap);
                json_free(doc);
        } else if (clock)
                r = read_clock(m, clock, vc, err, cap);
        else
                return 0;       /* a ring event of a dchatd before vector clocks: not in a trace */
        if (r < 0)
                return r;
        if (!json_str(o, f->node, &node) || (r = tm_lane(m, node)) < 0) {
                say(err, cap, "its node '%s' is not one of the peers its vector clock names", node);
                return -EXDEV;
        }
        e.lane = (unsigned) r;
        if (json_str(o, f->peer, &peer) && peer[0])
                e.peer = tm_lane(m, peer);      /* the server, say: no lane */
        json_u64(o, f->no, &e.no);
        json_u64(o, f->time, &e.time_us);
        json_u64(o, f->lamport, &e.lamport);
        json_u64(o, f->request_ts, &e.request_ts);
        json_u64(o, f->fence, &e.fence);
        json_u64(o, f->fence_idx, &idx);
        json_u64(o, f->seq, &e.seq);
        json_u64(o, f->send_vt, &e.send_vt);
        e.fence_idx = idx <= UINT32_MAX ? (uint32_t) idx : 0;
        if (vc[e.lane] == 0) {
                say(err, cap, "its vector clock has 0 for its own node %s", node);
                return -EINVAL;
        }
        return tm_add(m, &e, vc) < 0 ? -ENOMEM : 1;
}

int tm_read_json(struct tmodel *m, const char *line, size_t len, char *err, size_t cap)
{
        struct json_doc *doc;
        const struct json *o, *v;
        char why[160];
        const char *s;
        int r = 0;

        if (json_parse(line, len, &doc, &o, why, sizeof why) < 0) {
                say(err, cap, "not JSON: %s", why);
                return -EINVAL;
        }
        if (o->type != JSON_OBJECT) {
                say(err, cap, "not a JSON object");
                r = -EINVAL;
        } else if (json_get(o, "__REALTIME_TIMESTAMP") || json_get(o, "__CURSOR")) {
                /* journalctl -o json: dchatd's events only */
                if (json_str(o, "SYSLOG_IDENTIFIER", &s) && strcmp(s, "dchatd") == 0)
                        r = read_event(m, o, &journal_fields, err, cap);
        } else if ((v = json_get(o, "nodes")) && json_str(o, "trace", &s)) {
                r = read_names(m, v, err, cap);
        } else if (json_str(o, "missing", &s)) {
                const char *w;
                uint64_t got = 0;
                int lane = tm_lane(m, s);
                json_u64(o, "events", &got);
                json_str(o, "why", &w);
                if (lane < 0) {
                        say(err, cap, "a missing node '%s' that is not one of the trace's", s);
                        r = -EXDEV;
                } else
                        tm_set_missing(m, (unsigned) lane, got, w);
        } else if (json_get(o, "event") && json_get(o, "node")) {
                r = read_event(m, o, &trace_fields, err, cap);
        } else {
                say(err, cap, "neither a journal entry (journalctl -o json) nor a line of dchatctl trace --format json");
                r = -EINVAL;
        }
        json_free(doc);
        return r;
}

/* --- finishing: order, copies, messages, deferrals -------------------------------------------- */

static const struct tmodel *sort_model;

/* By lane, then by the lane's own component (its events' order, across restarts), then number. */
static int cmp_lane_order(const void *a, const void *b)
{
        const struct tm_event *x = a, *y = b;
        uint64_t vx = tm_vc(sort_model, x, x->lane), vy = tm_vc(sort_model, y, y->lane);

        if (x->lane != y->lane)
                return x->lane < y->lane ? -1 : 1;
        if (vx != vy)
                return vx < vy ? -1 : 1;
        return x->no < y->no ? -1 : x->no > y->no;
}

/* The event of lane with own component own, or TM_NONE (binary search over the lane, after the sort). */
static size_t find_own(const struct tmodel *m, unsigned lane, uint64_t own)
{
        size_t lo = m->lanes[lane].first, hi = lo + m->lanes[lane].n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                uint64_t v = tm_vc(m, &m->ev[mid], lane);
                if (v == own)
                        return mid;
                if (v < own)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return TM_NONE;
}

void tm_finish(struct tmodel *m)
{
        sort_model = m;
        if (m->n)       /* (no array at all yet when nothing was added) */
                qsort(m->ev, m->n, sizeof *m->ev, cmp_lane_order);
        /* the same event twice (two exports of one journal, a ring and an export): once */
        size_t k = 0;
        for (size_t i = 0; i < m->n; i++) {
                if (k && m->ev[k - 1].lane == m->ev[i].lane && m->ev[i].vc != TM_NONE &&
                    tm_vc(m, &m->ev[k - 1], m->ev[i].lane) == tm_vc(m, &m->ev[i], m->ev[i].lane))
                        continue;
                m->ev[k++] = m->ev[i];
        }
        m->n = k;
        for (unsigned l = 0; l < m->n_lanes; l++)
                m->lanes[l].n = 0;
        for (size_t i = m->n; i-- > 0;) {
                m->lanes[m->ev[i].lane].first = i;
                m->lanes[m->ev[i].lane].n++;
        }
        for (size_t i = 0; i < m->n; i++)
                m->ev[i].match = TM_NONE, m->ev[i].deferred = false;
        /* a receive names its send: the sender's own component at the send */
        for (size_t i = 0; i < m->n; i++) {
                struct tm_event *e = &m->ev[i];
                uint8_t want = e->kind == TK_REQUEST_RECEIVED ? TK_REQUEST_SENT
                             : e->kind == TK_REPLY_RECEIVED ? TK_REPLY_SENT : 0;
                if (!want || e->peer < 0 || !e->send_vt)
                        continue;
                size_t s = find_own(m, (unsigned) e->peer, e->send_vt);
                if (s == TM_NONE || m->ev[s].kind != want || m->ev[s].peer != (int) e->lane)
                        continue;
                e->match = s;
                m->ev[s].match = i;
        }
        /* a reply that answers a deferral made before it on the same lane (or, under the token, a transfer
         * to a request queued there: drawn the same way, though no rule requires it: tm_check) */
        for (unsigned l = 0; l < m->n_lanes; l++) {
                uint64_t owed[DCHAT_PEERS_MAX] = {0};
                bool is_owed[DCHAT_PEERS_MAX] = {false};
                for (size_t i = m->lanes[l].first; i < m->lanes[l].first + m->lanes[l].n; i++) {
                        struct tm_event *e = &m->ev[i];
                        if (e->peer < 0)
                                continue;
                        if (e->kind == TK_REPLY_DEFERRED || e->kind == TK_REQUEST_QUEUED) {
                                owed[e->peer] = e->request_ts;
                                is_owed[e->peer] = true;
                        } else if (e->kind == TK_REPLY_SENT && is_owed[e->peer] && owed[e->peer] == e->request_ts) {
                                e->deferred = true;
                                is_owed[e->peer] = false;
                        } else if (e->kind == TK_PEER_DEAD || e->kind == TK_PEER_RESTARTED || e->kind == TK_PEER_LEFT)
                                is_owed[e->peer] = false;
                }
        }
}

/* --- windows ------------------------------------------------------------------------------------ */

static void keep_only(struct tmodel *m, const bool *keep)
{
        size_t k = 0;

        for (size_t i = 0; i < m->n; i++)
                if (keep[i])
                        m->ev[k++] = m->ev[i];
        m->dropped += m->n - k;
        m->n = k;
        tm_finish(m);
}

void tm_window_time(struct tmodel *m, uint64_t since, uint64_t until)
{
        bool *keep = calloc(m->n ? m->n : 1, sizeof *keep);

        if (!keep)
                return;
        for (size_t i = 0; i < m->n; i++)
                keep[i] = (!since || m->ev[i].time_us >= since) && (!until || m->ev[i].time_us <= until);
        keep_only(m, keep);
        free(keep);
}

int tm_window_post(struct tmodel *m, uint64_t seq, char *err, size_t cap)
{
        size_t post = TM_NONE;

        for (size_t i = 0; i < m->n && post == TM_NONE; i++)
                if (m->ev[i].kind == TK_POST_STORED && m->ev[i].seq == seq)
                        post = i;
        if (post == TM_NONE) {
                say(err, cap, "no post-stored of seq %" PRIu64 " in the trace: its node's events may be older than "
                    "its ring holds (trace_events), or it was posted on a node that did not answer; journal exports "
                    "reach further back (trace --from)", seq);
                return -ENOENT;
        }
        const struct tm_lane *ln = &m->lanes[m->ev[post].lane];
        size_t from = ln->first, to = ln->first + ln->n, start = post, end = post;
        /* its critical section: the cs-enter before it, the cs-exit after it */
        for (size_t i = post; i-- > from;)
                if (m->ev[i].kind == TK_CS_ENTER) {
                        start = i;
                        break;
                } else if (m->ev[i].kind == TK_CS_EXIT)
                        break;
        for (size_t i = post + 1; i < to; i++)
                if (m->ev[i].kind == TK_CS_EXIT) {
                        end = i;
                        break;
                } else if (m->ev[i].kind == TK_CS_ENTER)
                        break;
        /* ... and the request that led to it (its first REQUEST sent), if it asked */
        if (m->ev[start].kind == TK_CS_ENTER)
                for (size_t i = start; i-- > from;) {
                        if (m->ev[i].kind == TK_CS_EXIT)
                                break;
                        if (m->ev[i].kind == TK_REQUEST_SENT && m->ev[i].request_ts == m->ev[start].request_ts)
                                start = i;
                }
        /* ... and the replies its exit sent (the deferred ones) */
        while (end + 1 < to && m->ev[end].kind != TK_POST_STORED && m->ev[end + 1].kind == TK_REPLY_SENT)
                end++;
        bool *keep = calloc(m->n, sizeof *keep);
        if (!keep)
                return -ENOMEM;
        const struct tm_event a = m->ev[start], b = m->ev[end];
        /* what lies between the two in the causal order: start -> e -> end */
        for (size_t i = 0; i < m->n; i++)
                keep[i] = i == start || i == end ||
                          ((i == start || tm_before(m, &a, &m->ev[i])) && (i == end || tm_before(m, &m->ev[i], &b)));
        /* and what completes it: the other end of each message, the other end of each critical section */
        for (size_t i = 0; i < m->n; i++) {
                if (!keep[i])
                        continue;
                const struct tm_event *e = &m->ev[i];
                if (e->match != TM_NONE)
                        keep[e->match] = true;
                const struct tm_lane *l = &m->lanes[e->lane];
                if (e->kind == TK_CS_EXIT)
                        for (size_t k = i; k-- > l->first;)
                                if (m->ev[k].kind == TK_CS_ENTER || m->ev[k].kind == TK_CS_EXIT) {
                                        keep[k] |= m->ev[k].kind == TK_CS_ENTER;
                                        break;
                                }
                if (e->kind == TK_CS_ENTER)
                        for (size_t k = i + 1; k < l->first + l->n; k++)
                                if (m->ev[k].kind == TK_CS_ENTER || m->ev[k].kind == TK_CS_EXIT) {
                                        keep[k] |= m->ev[k].kind == TK_CS_EXIT;
                                        break;
                                }
        }
        keep_only(m, keep);
        free(keep);
        return 0;
}

/* --- layout --------------------------------------------------------------------------------------- */

const char *tm_order_name(enum tm_order o)
{
        return o == TM_PHYSICAL ? "physical" : o == TM_LAMPORT ? "lamport" : "vector";
}

int tm_order_parse(const char *s, enum tm_order *o)
{
        if (strcmp(s, "physical") == 0)
                *o = TM_PHYSICAL;
        else if (strcmp(s, "lamport") == 0)
                *o = TM_LAMPORT;
        else if (strcmp(s, "vector") == 0)
                *o = TM_VECTOR;
        else
                return -EINVAL;
        return 0;
}

/*
 * The last event of lane j that a's vector clock says happened before it
 * (its own component at most what a knows of j's), or TM_NONE.  A lane's
 * own component grows along it, across its restarts too (dchatd(8),
 * Vector clocks).
 */
static size_t vc_pred(const struct tmodel *m, const struct tm_event *a, unsigned j)
{
        uint64_t k = tm_vc(m, a, j);
        size_t lo = 0, hi = m->lanes[j].n;

        if (!k)
                return TM_NONE;
        while (lo < hi) {       /* the first event whose own component is above k */
                size_t mid = lo + (hi - lo) / 2;
                if (tm_vc(m, &m->ev[m->lanes[j].first + mid], j) <= k)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo ? m->lanes[j].first + lo - 1 : TM_NONE;
}

/*
 * The depth of each event in the causal order: 1 + the deepest of its
 * lane's event before it (across the node's restarts too), the send of
 * what it received (Kahn's order over those edges), and every event its
 * vector clock says came before it.  The last for every event, not only
 * for a receive whose send is in no lane (dme_algorithm "central": the
 * coordinator's GRANT): causality also runs through frames no ring records
 * (the token's regeneration rounds, a crashed node's lost ring), and
 * without it the sections sort by their depth along the traced messages
 * alone, and the check compares an exit with an entry that came before it
 * (1 token schedule in 150 of test-sim did).  Ordered by depth, the events
 * are one of the orders the run could have been seen in.
 */
static void depths(const struct tmodel *m, double *d)
{
        size_t pos[DCHAT_PEERS_MAX] = {0};
        bool progress = true;

        for (size_t i = 0; i < m->n; i++)
                d[i] = -1;
        while (progress) {
                progress = false;
                for (unsigned l = 0; l < m->n_lanes; l++) {
                        for (; pos[l] < m->lanes[l].n; pos[l]++) {
                                size_t i = m->lanes[l].first + pos[l];
                                const struct tm_event *e = &m->ev[i];
                                double x = pos[l] ? d[i - 1] + 1 : 0;
                                bool recv = e->kind == TK_REQUEST_RECEIVED || e->kind == TK_REPLY_RECEIVED;
                                if (recv && e->match != TM_NONE) {
                                        if (d[e->match] < 0)
                                                break;  /* its send is not placed yet */
                                        if (d[e->match] + 1 > x)
                                                x = d[e->match] + 1;
                                }
                                bool wait = false;
                                for (unsigned j = 0; j < m->n_lanes && !wait; j++) {
                                        size_t p = j == l ? TM_NONE : vc_pred(m, e, j);
                                        if (p == TM_NONE)
                                                continue;
                                        if (d[p] < 0)
                                                wait = true;    /* not placed yet */
                                        else if (d[p] + 1 > x)
                                                x = d[p] + 1;
                                }
                                if (wait)
                                        break;
                                d[i] = x;
                                progress = true;
                        }
                }
        }
        /* a cycle cannot happen with real clocks; place what is left in lane order */
        for (unsigned l = 0; l < m->n_lanes; l++)
                for (; pos[l] < m->lanes[l].n; pos[l]++) {
                        size_t i = m->lanes[l].first + pos[l];
                        d[i] = pos[l] ? d[i - 1] + 1 : 0;
                }
}

void tm_layout(struct tmodel *m, enum tm_order order)
{
        m->order = order;
        m->t_min = UINT64_MAX;
        for (size_t i = 0; i < m->n; i++)
                if (m->ev[i].time_us && m->ev[i].time_us < m->t_min)
                        m->t_min = m->ev[i].time_us;
        if (m->t_min == UINT64_MAX)
                m->t_min = 0;
        switch (order) {
        case TM_PHYSICAL:
                /* each node's own clock: they need not agree (the picture says so) */
                for (size_t i = 0; i < m->n; i++)
                        m->ev[i].x = m->ev[i].time_us ? (double) (m->ev[i].time_us - m->t_min) : 0;
                break;
        case TM_LAMPORT:
                /* local events share the Lamport time of the step before: side by side */
                for (unsigned l = 0; l < m->n_lanes; l++) {
                        unsigned k = 0;
                        for (size_t i = m->lanes[l].first; i < m->lanes[l].first + m->lanes[l].n; i++) {
                                bool same = i > m->lanes[l].first && m->ev[i - 1].lamport == m->ev[i].lamport;
                                k = same ? k + 1 : 0;
                                m->ev[i].x = (double) m->ev[i].lamport + (k < 4 ? k * 0.22 : 0.88);
                        }
                }
                break;
        case TM_VECTOR: {
                double *d = malloc((m->n ? m->n : 1) * sizeof *d);
                if (!d)
                        return;
                depths(m, d);
                for (size_t i = 0; i < m->n; i++)
                        m->ev[i].x = d[i];
                free(d);
                break;
        }
        }
        m->x_min = m->n ? m->ev[0].x : 0;
        m->x_max = m->x_min;
        for (size_t i = 0; i < m->n; i++) {
                if (m->ev[i].x < m->x_min)
                        m->x_min = m->ev[i].x;
                if (m->ev[i].x > m->x_max)
                        m->x_max = m->ev[i].x;
        }
}

static int cmp_x(const void *a, const void *b)
{
        const struct tm_event *x = &sort_model->ev[*(const size_t *) a], *y = &sort_model->ev[*(const size_t *) b];

        if (x->x != y->x)
                return x->x < y->x ? -1 : 1;
        if (x->lane != y->lane)
                return x->lane < y->lane ? -1 : 1;
        return *(const size_t *) a < *(const size_t *) b ? -1 : 1;
}

size_t *tm_sorted(const struct tmodel *m)
{
        size_t *idx = malloc((m->n ? m->n : 1) * sizeof *idx);

        if (!idx)
                return NULL;
        for (size_t i = 0; i < m->n; i++)
                idx[i] = i;
        sort_model = m;
        qsort(idx, m->n, sizeof *idx, cmp_x);
        return idx;
}

/* --- the checks ----------------------------------------------------------------------------------- */

static bool new_life(const struct tmodel *m, size_t i);

struct interval {
        size_t enter, exit;             /* exit TM_NONE: still inside where its lane's events end */
        bool crashed;                   /* ... exit: the first event of its node's next life */
};

static const double *sort_depth;

/*
 * Does a path of the run lead from event a to event b: its node's events
 * in order (across restarts), each send to its receive?  The vector clocks
 * say so at once, but not across a restart: a new life's clock has
 * forgotten what its earlier one knew.  Then a search, bounded by b's
 * depth (depth[]); stamp[] marks what it saw (round: this search's mark).
 */
static bool reaches(const struct tmodel *m, size_t a, size_t b, const double *depth, uint32_t *stamp, uint32_t round,
                    size_t *stack)
{
        size_t top = 0;

        if (tm_before(m, &m->ev[a], &m->ev[b]))
                return true;
        stack[top++] = a;
        stamp[a] = round;
        while (top) {
                size_t i = stack[--top], next[2], k = 0;
                const struct tm_event *e = &m->ev[i];
                if (i + 1 < m->lanes[e->lane].first + m->lanes[e->lane].n)
                        next[k++] = i + 1;
                if ((e->kind == TK_REQUEST_SENT || e->kind == TK_REPLY_SENT) && e->match != TM_NONE)
                        next[k++] = e->match;
                for (size_t j = 0; j < k; j++) {
                        size_t n = next[j];
                        if (n == b)
                                return true;
                        if (stamp[n] == round || depth[n] > depth[b])
                                continue;
                        stamp[n] = round;
                        stack[top++] = n;
                }
        }
        return false;
}

/* By the depth of their entries in the causal order (not Lamport time: a restarted node's starts again lower) */
static int cmp_interval(const void *a, const void *b)
{
        size_t i = ((const struct interval *) a)->enter, j = ((const struct interval *) b)->enter;

        if (sort_depth[i] != sort_depth[j])
                return sort_depth[i] < sort_depth[j] ? -1 : 1;
        return sort_model->ev[i].lane < sort_model->ev[j].lane ? -1 : sort_model->ev[i].lane > sort_model->ev[j].lane;
}

/* "node2's no=57 [4,2,1] cs-enter" */
static void describe(const struct tmodel *m, const struct tm_event *e, char *buf, size_t cap)
{
        size_t off = (size_t) snprintf(buf, cap, "%s's %s (no=%" PRIu64 ", lamport %" PRIu64 ", [",
                                       m->lanes[e->lane].name, proto_trace_kind_name(e->kind), e->no, e->lamport);
        for (unsigned j = 0; j < m->n_lanes && off < cap; j++)
                off += (size_t) snprintf(buf + off, cap - off, "%s%" PRIu64, j ? "," : "", tm_vc(m, e, j));
        if (off < cap)
                snprintf(buf + off, cap - off, "])");
}

/*
 * Two sections not ordered are excused when one of their nodes had
 * declared the other dead (or found it restarted) before entering or
 * while inside: it entered, or stayed, without that node's permission on
 * the failure detector's word, and the server's fence guards the log then
 * (dchatd(8), FAILURES).
 */
static bool declared_dead(const struct tmodel *m, unsigned l, unsigned d, size_t limit);
static bool declared_before(const struct tmodel *m, unsigned d, size_t i);
static bool overlap_excused(const struct tmodel *m, const struct interval *a, const struct interval *b)
{
        unsigned la = m->ev[a->enter].lane, lb = m->ev[b->enter].lane;
        if (la == lb)
                return a->exit == TM_NONE;      /* it entered again without leaving: it restarted inside */
        size_t end_a = a->exit != TM_NONE ? a->exit : m->lanes[la].first + m->lanes[la].n;
        size_t end_b = b->exit != TM_NONE ? b->exit : m->lanes[lb].first + m->lanes[lb].n;

        if (declared_dead(m, lb, la, end_b) || declared_dead(m, la, lb, end_a))
                return true;
        /* Under the token the word is the regenerator's: it declared the old holder dead (or
         * found it restarted), made a token, and the token carried that to whoever entered
         * with it.  So any node's declaration that happened before the entry excuses it.
         * (Not under Ricart-Agrawala, where each node needs every reply: there it must be its
         * own, and anything less is a broken protocol.) */
        return m->token && (declared_before(m, la, b->enter) || declared_before(m, lb, a->enter));
}

/* Did any node declare lane d dead (or restarted) in an event that happened before event i? */
static bool declared_before(const struct tmodel *m, unsigned d, size_t i)
{
        const struct tm_event *e = &m->ev[i];

        for (size_t k = 0; k < m->n; k++) {
                const struct tm_event *x = &m->ev[k];
                if ((x->kind != TK_PEER_DEAD && x->kind != TK_PEER_RESTARTED && x->kind != TK_PEER_LEFT) ||
                    x->peer != (int) d || k == i)
                        continue;
                uint64_t own = tm_vc(m, x, x->lane);
                if (own && tm_vc(m, e, x->lane) >= own)
                        return true;    /* e knows of x: x happened before e */
        }
        return false;
}

/*
 * Does event i begin another life of its node?  A node numbers its
 * records from 1 in each life (no=), while its own clock component goes
 * on (ra.h): a number that goes back is a restart.
 */
static bool new_life(const struct tmodel *m, size_t i)
{
        const struct tm_event *e = &m->ev[i];
        return i > m->lanes[e->lane].first && e->no && m->ev[i - 1].no && e->no <= m->ev[i - 1].no;
}

/* Did lane l declare lane d dead (or restarted) before event limit? */
static bool declared_dead(const struct tmodel *m, unsigned l, unsigned d, size_t limit)
{
        for (size_t i = m->lanes[l].first; i < limit; i++)
                if ((m->ev[i].kind == TK_PEER_DEAD || m->ev[i].kind == TK_PEER_RESTARTED ||
                     m->ev[i].kind == TK_PEER_LEFT) && m->ev[i].peer == (int) d)
                        return true;
        return false;
}

struct post_fence {
        uint64_t seq, fence;
        uint32_t idx;
        const char *node;
        size_t ev;
};

static int cmp_post(const void *a, const void *b)
{
        const struct post_fence *x = a, *y = b;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int tm_check(const struct tmodel *m, char *report, size_t cap)
{
        struct interval *iv = calloc(m->n + 1, sizeof *iv);
        struct post_fence *pf = calloc(m->n + 1, sizeof *pf);
        double *depth = malloc((m->n + 1) * sizeof *depth);
        uint32_t *stamp = calloc(m->n + 1, sizeof *stamp), round = 0;
        size_t *stack = malloc((2 * m->n + 1) * sizeof *stack);
        size_t n_iv = 0, open = 0, excused = 0, deferrals = 0, pending = 0, queued = 0, posts = 0;
        char violation[1024] = "", a[256], b[256];
        int bad = 0;

        if (!iv || !pf || !depth || !stamp || !stack) {
                free(iv);
                free(pf);
                free(depth);
                free(stamp);
                free(stack);
                say(report, cap, "out of memory");
                return 1;
        }
#define VIOLATION(...) do { if (!bad) snprintf(violation, sizeof violation, __VA_ARGS__); bad = 1; } while (0)

        /* 1. critical sections: each entry causally after the exit of the one before it */
        for (unsigned l = 0; l < m->n_lanes; l++) {
                size_t in = TM_NONE;
                uint64_t last_fence = 0;
                for (size_t i = m->lanes[l].first; i < m->lanes[l].first + m->lanes[l].n; i++) {
                        const struct tm_event *e = &m->ev[i];
                        if (new_life(m, i)) {
                                /* it restarted: a section it was in ended with that life, before this event */
                                if (in != TM_NONE)
                                        iv[n_iv++] = (struct interval) { in, i, true };
                                in = TM_NONE;
                                last_fence = 0;         /* a new life may enter under a fence that stored nothing */
                        }
                        if (e->kind == TK_CS_ENTER) {
                                if (in != TM_NONE)      /* entered again without an exit: it restarted inside */
                                        iv[n_iv++] = (struct interval) { in, TM_NONE, false };
                                in = i;
                                if (e->fence && e->fence <= last_fence) {
                                        describe(m, e, a, sizeof a);
                                        VIOLATION("fences do not increase on %s: %s has fence %" PRIu64 " after %" PRIu64,
                                                  m->lanes[l].name, a, e->fence, last_fence);
                                }
                                if (e->fence)
                                        last_fence = e->fence;
                        } else if (e->kind == TK_CS_EXIT && in != TM_NONE) {
                                iv[n_iv++] = (struct interval) { in, i, false };
                                in = TM_NONE;
                        }
                }
                if (in != TM_NONE)
                        iv[n_iv++] = (struct interval) { in, TM_NONE, false };
        }
        depths(m, depth);
        sort_model = m;
        sort_depth = depth;
        qsort(iv, n_iv, sizeof *iv, cmp_interval);
        for (size_t k = 0; k + 1 < n_iv; k++) {
                const struct tm_event *next = &m->ev[iv[k + 1].enter];
                if (iv[k].exit == TM_NONE) {
                        const struct tm_event *e = &m->ev[iv[k].enter];
                        open++;
                        if (overlap_excused(m, &iv[k], &iv[k + 1])) {
                                excused++;
                                continue;
                        }
                        describe(m, e, a, sizeof a);
                        describe(m, next, b, sizeof b);
                        VIOLATION("mutual exclusion: %s has no cs-exit, yet %s follows it without %s having declared "
                                  "%s dead", a, b, m->lanes[next->lane].name, m->lanes[e->lane].name);
                        continue;
                }
                const struct tm_event *x = &m->ev[iv[k].exit];
                /* one node's sections follow each other in its own order, across its restarts too
                 * (a new life's clock has forgotten what the old one knew of the others) */
                if (x->lane == next->lane && iv[k].exit < iv[k + 1].enter)
                        continue;
                if (!reaches(m, iv[k].exit, iv[k + 1].enter, depth, stamp, ++round, stack)) {
                        if (overlap_excused(m, &iv[k], &iv[k + 1])) {
                                excused++;      /* entered on a suspicion: the fence guards the log then */
                                continue;
                        }
                        describe(m, x, a, sizeof a);
                        describe(m, next, b, sizeof b);
                        VIOLATION("critical sections overlap in the causal order: %s did not happen before %s "
                                  "(their vector clocks are %s)", a, b,
                                  vclock_order_name(tm_before(m, next, x) ? VCLOCK_AFTER : VCLOCK_CONCURRENT));
                }
        }
        if (n_iv && m->ev[iv[n_iv - 1].enter].kind == TK_CS_ENTER && iv[n_iv - 1].exit == TM_NONE)
                open++;

        /*
         * 2. every deferral answered: a reply for it goes out, or its asker was declared dead.
         *
         * A request queued under the token (request-queued) is no deferral: no REPLY is owed by the
         * node that queued it, since whoever holds the token when its turn comes serves it.  Nor is
         * there a rule for it that the trace can check soundly.  Its owner need not enter under it:
         * a request is withdrawn (its posts timed out, the server unreachable, the node stopping)
         * with no event in the ring, and a token that arrives then is kept or passed on.  Nor need the
         * node that queued it send the token on at its exit: a token found to be of an older
         * generation (one made anew meanwhile) is given up there, again with no event in the ring.
         * So only counted.
         */
        for (size_t i = 0; i < m->n; i++) {
                const struct tm_event *d = &m->ev[i];
                if (d->kind == TK_REQUEST_QUEUED)
                        queued++;
                if (d->kind != TK_REPLY_DEFERRED || d->peer < 0)
                        continue;
                deferrals++;
                const struct tm_lane *ln = &m->lanes[d->lane];
                bool answered = false, exited = false, after_exit = false;
                for (size_t k = i + 1; k < ln->first + ln->n && !answered; k++) {
                        const struct tm_event *e = &m->ev[k];
                        if (new_life(m, k)) {
                                answered = true;        /* it restarted: what it owed died with it */
                                break;
                        }
                        if (exited)
                                after_exit = true;
                        /* answered, or void: its asker declared dead or restarted, or asking anew (a later
                         * request of the same peer takes the deferred one's place: the reply answers that) */
                        if (e->peer == d->peer && ((e->kind == TK_REPLY_SENT && e->request_ts == d->request_ts) ||
                                                   e->kind == TK_PEER_DEAD || e->kind == TK_PEER_RESTARTED ||
                                                   e->kind == TK_PEER_LEFT ||
                                                   (e->kind == TK_REQUEST_RECEIVED && e->request_ts != d->request_ts)))
                                answered = true;
                        else if (e->kind == TK_CS_EXIT)
                                exited = true;
                }
                if (answered)
                        continue;
                if (!after_exit) {
                        pending++;      /* the trace ends before it leaves */
                        continue;
                }
                describe(m, d, a, sizeof a);
                VIOLATION("a deferral never answered: %s deferred (%" PRIu64 ", %s), left its critical section, and "
                          "sent no REPLY for it", a, d->request_ts, m->lanes[d->peer].name);
        }

        /* 3. fences: the stored posts' strictly increase with their seqs */
        for (size_t i = 0; i < m->n; i++)
                if (m->ev[i].kind == TK_POST_STORED && m->ev[i].seq)
                        pf[posts++] = (struct post_fence) { m->ev[i].seq, m->ev[i].fence, m->ev[i].fence_idx,
                                                            m->lanes[m->ev[i].lane].name, i };
        qsort(pf, posts, sizeof *pf, cmp_post);
        for (size_t k = 1; k < posts; k++) {
                const struct post_fence *p = &pf[k - 1], *q = &pf[k];
                int c = q->fence != p->fence ? (q->fence > p->fence ? 1 : -1) : strcmp(q->node, p->node);
                if (c == 0)
                        c = q->idx > p->idx ? 1 : q->idx < p->idx ? -1 : 0;
                if (q->seq == p->seq || c <= 0)
                        VIOLATION("fences do not increase with the log: seq %" PRIu64 " has fence (%" PRIu64 ", %s, %u), "
                                  "seq %" PRIu64 " before it (%" PRIu64 ", %s, %u)", q->seq, q->fence, q->node, q->idx,
                                  p->seq, p->fence, p->node, p->idx);
        }
#undef VIOLATION
        /* the first violation, if any, then what was checked */
        size_t off = 0;
        if (bad)
                off = (size_t) snprintf(report, cap, "violation: %s\n", violation);
        if (off < cap)
                off += (size_t) snprintf(report + off, cap - off, "%s%zu critical section(s), each entered after "
                                         "the exit before it", bad ? "checked: " : "ok: ", n_iv);
        if (open && off < cap)
                off += (size_t) snprintf(report + off, cap - off, " (%zu still inside where its node's events end)",
                                         open);
        if (excused && off < cap)
                off += (size_t) snprintf(report + off, cap - off, " (%zu entered after the one before it was "
                                         "declared dead: the fence guards the log then)", excused);
        if (off < cap)
                off += (size_t) snprintf(report + off, cap - off, "; %zu deferral(s) answered", deferrals - pending);
        if (pending && off < cap)
                off += (size_t) snprintf(report + off, cap - off, " (%zu still owed where the trace ends)", pending);
        if (queued && off < cap)
                off += (size_t) snprintf(report + off, cap - off, "; %zu request(s) queued for the token (no REPLY "
                                         "owed)", queued);
        if (off < cap)
                snprintf(report + off, cap - off, "; %zu stored post(s) under increasing fences", posts);
        free(iv);
        free(pf);
        free(depth);
        free(stamp);
        free(stack);
        return bad;
}

/* --- writers -------------------------------------------------------------------------------------- */

/* What happened, in a few words, for text and ShiViz ("REQUEST (5, node1) to node2"). */
static void what(const struct tmodel *m, const struct tm_event *e, char *buf, size_t cap)
{
        const char *me = m->lanes[e->lane].name, *peer = e->peer >= 0 ? m->lanes[e->peer].name : "?";
        unsigned long long ts = e->request_ts;

        switch (e->kind) {
        case TK_REQUEST_SENT:
                snprintf(buf, cap, "REQUEST (%llu, %s) sent to %s", ts, me, peer);
                break;
        case TK_REQUEST_RECEIVED:
                snprintf(buf, cap, "REQUEST (%llu, %s) received from %s", ts, peer, peer);
                break;
        case TK_REPLY_SENT:
                snprintf(buf, cap, "REPLY for (%llu, %s) sent to %s%s", ts, peer, peer, e->deferred ? ", deferred until now" : "");
                break;
        case TK_REPLY_DEFERRED:
                snprintf(buf, cap, "REPLY for (%llu, %s) deferred", ts, peer);
                break;
        case TK_REQUEST_QUEUED:
                snprintf(buf, cap, "request (%llu, %s) queued for the token", ts, peer);
                break;
        case TK_REPLY_RECEIVED:
                snprintf(buf, cap, "REPLY for (%llu, %s) received from %s", ts, me, peer);
                break;
        case TK_CS_ENTER:
                snprintf(buf, cap, "enters the critical section (request %llu, fence %llu)", ts,
                         (unsigned long long) e->fence);
                break;
        case TK_CS_EXIT:
                snprintf(buf, cap, "leaves the critical section (request %llu)", ts);
                break;
        case TK_POST_STORED:
                snprintf(buf, cap, "post stored as seq %llu (fence %llu/%s/%u)", (unsigned long long) e->seq,
                         (unsigned long long) e->fence, me, e->fence_idx);
                break;
        case TK_POST_RETRIED:
                snprintf(buf, cap, "post refused by the fence, goes again");
                break;
        case TK_POST_FAILED:
                snprintf(buf, cap, "post failed");
                break;
        default:
                snprintf(buf, cap, "%s %s", proto_trace_kind_name(e->kind), peer);
                break;
        }
}

static void json_text(FILE *f, const char *s)
{
        fputc('"', f);
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

void tm_write_json(const struct tmodel *m, FILE *f)
{
        size_t *idx = tm_sorted(m);

        fprintf(f, "{\"trace\":\"dchat\",\"order\":\"%s\",\"events\":%zu,\"nodes\":[", tm_order_name(m->order), m->n);
        for (unsigned l = 0; l < m->n_lanes; l++)
                fprintf(f, "%s\"%s\"", l ? "," : "", m->lanes[l].name);
        fprintf(f, "]}\n");
        for (unsigned l = 0; l < m->n_lanes; l++)
                if (m->lanes[l].missing) {
                        fprintf(f, "{\"missing\":\"%s\",\"events\":%" PRIu64 ",\"why\":", m->lanes[l].name,
                                m->lanes[l].got);
                        json_text(f, m->lanes[l].why);
                        fprintf(f, "}\n");
                }
        for (size_t k = 0; idx && k < m->n; k++) {
                const struct tm_event *e = &m->ev[idx[k]];
                fprintf(f, "{\"node\":\"%s\",\"no\":%" PRIu64 ",\"time_us\":%" PRIu64 ",\"event\":\"%s\"",
                        m->lanes[e->lane].name, e->no, e->time_us, proto_trace_kind_name(e->kind));
                if (e->peer >= 0)
                        fprintf(f, ",\"peer\":\"%s\"", m->lanes[e->peer].name);
                fprintf(f, ",\"lamport\":%" PRIu64, e->lamport);
                if (e->request_ts)
                        fprintf(f, ",\"request_ts\":%" PRIu64, e->request_ts);
                if (e->fence)
                        fprintf(f, ",\"fence\":%" PRIu64 ",\"fence_idx\":%u", e->fence, e->fence_idx);
                if (e->seq)
                        fprintf(f, ",\"seq\":%" PRIu64, e->seq);
                if (e->send_vt)
                        fprintf(f, ",\"send_vt\":%" PRIu64, e->send_vt);
                if (e->vc != TM_NONE) {
                        fprintf(f, ",\"vclock\":{");
                        for (unsigned j = 0; j < m->n_lanes; j++)
                                fprintf(f, "%s\"%s\":%" PRIu64, j ? "," : "", m->lanes[j].name, tm_vc(m, e, j));
                        fprintf(f, "}");
                }
                fprintf(f, ",\"x\":%.6g", e->x);
                if (e->match != TM_NONE) {
                        const struct tm_event *o = &m->ev[e->match];
                        fprintf(f, ",\"match\":{\"node\":\"%s\",\"no\":%" PRIu64 ",\"event\":\"%s\"}",
                                m->lanes[o->lane].name, o->no, proto_trace_kind_name(o->kind));
                }
                if (e->deferred)
                        fprintf(f, ",\"deferred\":true");
                fprintf(f, "}\n");
        }
        free(idx);
}

/*
 * ShiViz's format: the regex that parses the lines first, then a line for
 * its "multiple executions" delimiter (none), then a line per event with
 * the clock renumbered so that each host's own component counts its events
 * in this trace 1, 2, 3 ... (ShiViz wants that; what the ring holds starts
 * anywhere), every other component the number of that host's events here
 * it knows of: the same causal order.
 */
void tm_write_shiviz(const struct tmodel *m, FILE *f)
{
        size_t *idx = tm_sorted(m);
        char buf[256];

        fprintf(f, "(?<host>\\S+) \"(?<event>[^\"]*)\" (?<clock>\\{.*\\})\n\n");
        for (size_t k = 0; idx && k < m->n; k++) {
                const struct tm_event *e = &m->ev[idx[k]];
                if (e->vc == TM_NONE)
                        continue;
                what(m, e, buf, sizeof buf);
                fprintf(f, "%s \"%s, lamport %" PRIu64 "\" {", m->lanes[e->lane].name, buf, e->lamport);
                bool first = true;
                for (unsigned j = 0; j < m->n_lanes; j++) {
                        /* how many of lane j's events (in this trace) e knows of */
                        const struct tm_lane *ln = &m->lanes[j];
                        uint64_t v = tm_vc(m, e, j);
                        size_t lo = ln->first, hi = ln->first + ln->n;
                        while (lo < hi) {
                                size_t mid = lo + (hi - lo) / 2;
                                if (tm_vc(m, &m->ev[mid], j) <= v)
                                        lo = mid + 1;
                                else
                                        hi = mid;
                        }
                        size_t known = lo - ln->first;
                        if (!known)
                                continue;
                        fprintf(f, "%s\"%s\":%zu", first ? "" : ", ", ln->name, known);
                        first = false;
                }
                fprintf(f, "}\n");
        }
        free(idx);
}

void tm_write_text(const struct tmodel *m, FILE *f)
{
        size_t *idx = tm_sorted(m);
        char buf[256], when[32];
        int w = 4;

        for (unsigned l = 0; l < m->n_lanes; l++)
                if ((int) strlen(m->lanes[l].name) > w)
                        w = (int) strlen(m->lanes[l].name);
        for (size_t k = 0; idx && k < m->n; k++) {
                const struct tm_event *e = &m->ev[idx[k]];
                time_t t = (time_t) (e->time_us / 1000000);
                struct tm tm;
                if (e->time_us && localtime_r(&t, &tm))
                        snprintf(when + strftime(when, sizeof when, "%H:%M:%S", &tm), 16, ".%06u",
                                 (unsigned) (e->time_us % 1000000));
                else
                        snprintf(when, sizeof when, "-");
                what(m, e, buf, sizeof buf);
                fprintf(f, "%-*s  no=%-6" PRIu64 " %s  L=%-4" PRIu64 " [", w, m->lanes[e->lane].name, e->no, when,
                        e->lamport);
                for (unsigned j = 0; j < m->n_lanes; j++)
                        fprintf(f, "%s%" PRIu64, j ? "," : "", tm_vc(m, e, j));
                fprintf(f, "]  %s\n", buf);
        }
        for (unsigned l = 0; l < m->n_lanes; l++)
                if (m->lanes[l].missing)
                        fprintf(f, "%s: %" PRIu64 " event(s) only: %s\n", m->lanes[l].name, m->lanes[l].got,
                                m->lanes[l].why);
        free(idx);
}
