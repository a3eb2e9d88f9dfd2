/* SPDX-License-Identifier: MIT */
/*
 * gather.c — `dchatctl trace` on a peer: the recent protocol events of
 * every peer of the cluster, gathered over the peer links (which are
 * authenticated and encrypted: no ssh, no shared disk) and streamed to the
 * client as they come.
 *
 * The client's TRACE (scope TRACE_CLUSTER) starts a gathering.  This
 * node's own ring is read here; every other peer is asked for its ring a
 * page at a time (TRACE, scope TRACE_RING, on our link to it; it answers
 * TRACE_EVENTS on its link to us), each page forwarded to the client as
 * it comes, and the next one asked for only once the client has room for
 * it (CONN_OUT_HOLD): so a node holds at most one page per peer, whatever
 * the rings' size.  A peer whose link is down, that goes down meanwhile,
 * or that does not answer a page within connect_timeout_ms is given up on;
 * TRACE_END names each such node, how many of its events came and why the
 * rest did not.  The first page of each ring fixes where it ends
 * (upto_no), so events that happen while it is read are not chased.
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"

enum gnode_state {
        G_READY,                /* its next page is to be asked for (or made, for this node) */
        G_ASKED,                /* asked, the answer awaited */
        G_DONE,
        G_FAILED,
};

struct gnode {
        enum gnode_state state;
        uint64_t next_no, upto_no;
        uint64_t events;                /* forwarded to the client */
        uint64_t asked_at;              /* CLOCK_MONOTONIC: the page awaited since */
        char why[DCHAT_TRACE_WHY_MAX + 1];
};

struct gather {
        struct gather *prev, *next;
        struct peer *p;
        struct conn *client;
        uint32_t client_tag, tag;
        uint64_t since, until;
        sd_event_source *timer;
        struct gnode nodes[DCHAT_PEERS_MAX];
};

static struct gather *gather_free(struct gather *g)
{
        if (!g)
                return NULL;
        LIST_REMOVE(g->p->gathers, g);
        sd_event_source_disable_unref(g->timer);
        free(g);
        return NULL;
}

/* The names of the components of this node's vector clocks: its peers, in order. */
static void put_names(const struct peer *p, struct wbuf *b)
{
        for (unsigned i = 0; i < p->conf->n_peers; i++)
                wbuf_put_str(b, p->names[i], strlen(p->names[i]));
}

/*
 * A page of our own ring as a TRACE_EVENTS with tag into m (its buffers
 * names and events, which must outlive it).  upto 0: up to the newest
 * event now, which the page says.
 */
static void make_page(struct peer *p, uint32_t tag, uint64_t since, uint64_t until, uint64_t from, uint64_t upto,
                      struct wbuf *names, struct wbuf *events, struct dchat_msg *m)
{
        uint16_t n;
        uint64_t next;
        bool done;
        const char *me = self_name(p);

        if (!upto)
                upto = ring_last_no(p->ring);
        put_names(p, names);
        ring_page(p->ring, from, upto, since, until, DCHAT_TRACE_PAGE, events, &n, &next, &done);
        *m = (struct dchat_msg) { .type = MSG_TRACE_EVENTS, .tag = tag,
                .trace_events = { .node = { me, (uint16_t) strlen(me) }, .incarnation = p->incarnation,
                                  .n_names = (uint8_t) p->conf->n_peers, .names = names->data,
                                  .names_len = names->len, .first_no = ring_first_no(p->ring), .upto_no = upto,
                                  .next_no = next, .done = done, .n = n, .p = events->data,
                                  .len = events->len } };
}

void gather_answer(struct peer *p, unsigned idx, const struct dchat_msg *m)
{
        struct wbuf names = {0}, events = {0};
        struct dchat_msg page;

        make_page(p, m->tag, m->trace.since_us, m->trace.until_us, m->trace.from_no, m->trace.upto_no, &names,
                  &events, &page);
        if (names.failed || events.failed)
                log_warning("no memory for a page of the trace %s asked for", p->names[idx]);
        else
                (void) mesh_send(p, idx, &page);       /* its link down: the asker gives up on us */
        wbuf_free(&names);
        wbuf_free(&events);
}

static void node_fail(struct gnode *n, const char *fmt, ...) _printf_(2, 3);
static void node_fail(struct gnode *n, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(n->why, sizeof n->why, fmt, ap);
        va_end(ap);
        n->state = G_FAILED;
}

static void arm_timer(struct gather *g)
{
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < g->p->conf->n_peers; i++)
                if (g->nodes[i].state == G_ASKED && g->nodes[i].asked_at + g->p->conf->connect_timeout_usec < next)
                        next = g->nodes[i].asked_at + g->p->conf->connect_timeout_usec;
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(g->timer, next);
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
}

/* Every node done or given up: TRACE_END names those given up, and the gathering ends. */
static bool maybe_finish(struct gather *g)
{
        struct peer *p = g->p;
        struct wbuf b = {0};
        uint16_t failed = 0;

        for (unsigned i = 0; i < p->conf->n_peers; i++) {
                if (g->nodes[i].state == G_READY || g->nodes[i].state == G_ASKED)
                        return false;
                if (g->nodes[i].state == G_FAILED) {
                        proto_trace_missing_put(&b, p->names[i], g->nodes[i].events, g->nodes[i].why);
                        failed++;
                }
        }
        if (b.failed)
                conn_send_error(g->client, g->client_tag, ERR_INTERNAL, "no memory for the end of the trace");
        else
                (void) conn_send(g->client, &(struct dchat_msg) { .type = MSG_TRACE_END, .tag = g->client_tag,
                        .trace_end = { (uint16_t) p->conf->n_peers, failed, b.data, b.len } });
        wbuf_free(&b);
        conn_resume(g->client);         /* its next request, if it sent one */
        gather_free(g);
        return true;
}

/* A page for the client: forwarded with the client's tag; the node is done, or ready for the next one. */
static void forward(struct gather *g, unsigned i, const struct dchat_msg *m)
{
        struct gnode *n = &g->nodes[i];
        struct dchat_msg out = *m;

        out.tag = g->client_tag;
        if (conn_send(g->client, &out) < 0) {
                node_fail(n, "its events could not be passed on");
                return;
        }
        n->events += m->trace_events.n;
        n->upto_no = m->trace_events.upto_no;
        n->next_no = m->trace_events.next_no;
        n->state = m->trace_events.done || !n->upto_no ? G_DONE : G_READY;
}

/* Ask (or make) the next pages the client has room for. */
static void pump(struct gather *g)
{
        struct peer *p = g->p;

        for (unsigned i = 0; i < p->conf->n_peers; i++) {
                struct gnode *n = &g->nodes[i];
                if (n->state != G_READY)
                        continue;
                if (conn_pending(g->client) >= CONN_OUT_HOLD)
                        break;          /* gather_client_drained goes on */
                if (i == p->conf->self) {
                        struct wbuf names = {0}, events = {0};
                        struct dchat_msg page;
                        make_page(p, g->client_tag, g->since, g->until, n->next_no, n->upto_no, &names, &events,
                                  &page);
                        if (names.failed || events.failed)
                                node_fail(n, "no memory for a page of its events");
                        else
                                forward(g, i, &page);
                        wbuf_free(&names);
                        wbuf_free(&events);
                        i--;            /* its next page, if the client has room */
                        continue;
                }
                if (!mesh_linked(p, i)) {
                        node_fail(n, "not connected");
                        continue;
                }
                int r = mesh_send(p, i, &(struct dchat_msg) { .type = MSG_TRACE, .tag = g->tag,
                        .trace = { TRACE_RING, g->since, g->until, n->next_no, n->upto_no } });
                if (r < 0) {
                        node_fail(n, "cannot ask it: %s", strerror(-r));
                        continue;
                }
                n->state = G_ASKED;
                n->asked_at = now_usec();
        }
        if (!maybe_finish(g))
                arm_timer(g);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct gather *g = userdata;
        (void) s;

        for (unsigned i = 0; i < g->p->conf->n_peers; i++) {
                struct gnode *n = &g->nodes[i];
                if (n->state == G_ASKED && n->asked_at + g->p->conf->connect_timeout_usec <= usec)
                        node_fail(n, "no answer within %llu ms%s",
                                  (unsigned long long) (g->p->conf->connect_timeout_usec / USEC_PER_MSEC),
                                  n->events ? " (the rest of its events)" : "");
        }
        pump(g);
        return 0;
}

static struct gather *find_client(struct peer *p, struct conn *client)
{
        for (struct gather *g = p->gathers; g; g = g->next)
                if (g->client == client)
                        return g;
        return NULL;
}

int peer_trace(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        if (find_client(p, client))
                return CONN_LATER;      /* its second TRACE waits for the first one's end */
        struct gather *g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        int r = sd_event_add_time(p->event, &g->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer, g);
        if (r < 0) {
                free(g);
                return r;
        }
        g->p = p;
        g->client = client;
        g->client_tag = req->tag;
        if (++p->gather_tag == 0)
                p->gather_tag = 1;
        g->tag = p->gather_tag;
        g->since = req->trace.since_us;
        g->until = req->trace.until_us;
        LIST_PREPEND(p->gathers, g);
        log_info("%s: trace of %u peer(s) gathered", conn_label(client), p->conf->n_peers);
        pump(g);
        return 0;
}

void gather_input(struct peer *p, unsigned idx, const struct dchat_msg *m)
{
        for (struct gather *g = p->gathers; g; g = g->next) {
                if (g->tag != m->tag)
                        continue;
                if (g->nodes[idx].state != G_ASKED)
                        return;         /* late: it was given up on */
                forward(g, idx, m);
                pump(g);
                return;
        }
}

void gather_peer_down(struct peer *p, unsigned idx)
{
        struct gather *g, *next;

        for (g = p->gathers; g; g = next) {
                next = g->next;
                struct gnode *n = &g->nodes[idx];
                if (n->state != G_READY && n->state != G_ASKED)
                        continue;
                node_fail(n, "the link to it went down%s", n->events ? " (the rest of its events)" : "");
                pump(g);
        }
}

void gather_client_gone(struct peer *p, struct conn *client)
{
        gather_free(find_client(p, client));
}

void gather_client_drained(struct peer *p, struct conn *client)
{
        struct gather *g = find_client(p, client);
        if (g)
                pump(g);
}

void gather_stop(struct peer *p)
{
        while (p->gathers)
                gather_free(p->gathers);
}
