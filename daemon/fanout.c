/* SPDX-License-Identifier: MIT */
/*
 * fanout.c — the peer role's readers: local clients that follow the log,
 * and local VIEW requests relayed to the server.
 *
 * Follow mode.  While local dchatctl clients follow the log (view -f,
 * chat), the peer holds ONE subscription at the server (FOLLOW from
 * live_next): the server pushes every entry as soon as it is stored.  A
 * new follower first catches up from the seq it asks for with VIEW pages,
 * and becomes live once it has reached live_next; from then on it gets the
 * pushed entries.  Seq numbers make the hand-over exact.  A live follower
 * whose socket holds FOLLOW_CLIENT_HIGH unsent bytes goes back to catching
 * up by pages when it has drained, so a slow reader never grows our memory.
 *
 * Everything goes to the server through uplink.c, which hands back the
 * frames that answer it (fanout_frame).
 */
#include <string.h>

#include "peer.h"

#define FOLLOW_PAGE             64              /* entries per catch-up page */
#define FOLLOW_CLIENT_HIGH      (256 * 1024)    /* unsent bytes that send a live follower back to pages */
#define FOLLOW_CLIENT_LOW       (64 * 1024)     /* the next page only below this (net.c's low-water mark) */

/* --- followers ------------------------------------------------------------------------------- */

static struct follower *follower_find(struct peer *p, const struct conn *client)
{
        for (struct follower *f = p->fanout.followers; f; f = f->next)
                if (f->client == client)
                        return f;
        return NULL;
}

static void follower_drop(struct peer *p, struct follower *f)
{
        LIST_REMOVE(p->fanout.followers, f);
        p->fanout.n_followers--;
        free(f);
}

/* One subscription at the server while anyone follows (and the link is up). */
static void follow_subscribe(struct peer *p)
{
        if (!uplink_ready(p) || p->fanout.follow_tag || !p->fanout.followers)
                return;
        bool any_live = false;
        for (struct follower *f = p->fanout.followers; f; f = f->next)
                any_live |= f->live;
        /* live followers need the stream to go on where it stopped; the
         * others catch up by pages anyway, so start at the end */
        if (!any_live || !p->fanout.live_next)
                p->fanout.live_next = p->fanout.server_last_seq + 1;
        p->fanout.follow_tag = uplink_tag(p);
        log_info("following the server's log from seq %llu for %u local follower(s)",
                 (unsigned long long) p->fanout.live_next, p->fanout.n_followers);
        (void) uplink_send(p, &(struct dchat_msg) { .type = MSG_FOLLOW, .tag = p->fanout.follow_tag,
                                                    .follow = { p->fanout.live_next } });
}

/* The last follower left: the server need not push to us any more. */
static void follow_unsubscribe_if_idle(struct peer *p)
{
        if (p->fanout.followers || !p->fanout.follow_tag)
                return;
        if (uplink_ready(p))
                (void) uplink_send(p, &(struct dchat_msg) { .type = MSG_FOLLOW, .tag = p->fanout.follow_tag,
                                                            .follow = { UINT64_MAX } });
        p->fanout.follow_tag = 0;
        log_info("no local followers left: stopped following the server's log at seq %llu",
                 (unsigned long long) p->fanout.live_next);
}

/* A catching-up follower: live once it reached the subscription, else its next page. */
static void follower_advance(struct peer *p, struct follower *f)
{
        if (f->live || f->view_tag || !uplink_ready(p))
                return;
        if (p->fanout.follow_tag && f->next_seq >= p->fanout.live_next) {
                f->live = true;
                return;
        }
        if (conn_pending(f->client) >= FOLLOW_CLIENT_LOW)
                return;         /* peer_client_drained goes on */
        f->view_tag = uplink_tag(p);
        f->page_from = f->next_seq;
        (void) uplink_send(p, &(struct dchat_msg) { .type = MSG_VIEW, .tag = f->view_tag,
                                                    .view = { f->next_seq, 0, 0, FOLLOW_PAGE } });
}

/* The seqs an ENTRY or an ENTRY_DAMAGED (a quarantined part of the log) stands for. */
static void msg_seqs(const struct dchat_msg *m, uint64_t *first, uint64_t *last)
{
        *first = m->type == MSG_ENTRY_DAMAGED ? m->damaged.first_seq : m->append->seq;
        *last = m->type == MSG_ENTRY_DAMAGED ? m->damaged.last_seq : m->append->seq;
}

/* Passes an ENTRY or ENTRY_DAMAGED on to a local client under its own tag. */
static void relay_entry(struct conn *client, uint32_t tag, const struct dchat_msg *m)
{
        struct dchat_msg fwd = *m;
        fwd.tag = tag;
        (void) conn_send(client, &fwd);
}

/* An entry (or a damaged part) pushed by the server: to every live follower that needs it. */
static int follow_live_entry(struct peer *p, const struct dchat_msg *m)
{
        uint64_t first, last;

        msg_seqs(m, &first, &last);
        if (first < p->fanout.live_next) {
                log_event(EV_PROTOCOL_ERROR, NULL, "server link: followed entry seq %llu again (%llu was due); closing",
                          (unsigned long long) first, (unsigned long long) p->fanout.live_next);
                return -EBADMSG;
        }
        if (first > p->fanout.live_next)       /* only when the log was archived up to there */
                log_warning("the followed log jumps from seq %llu to %llu (archived?)",
                            (unsigned long long) p->fanout.live_next, (unsigned long long) first);
        p->fanout.live_next = last + 1;
        if (last > p->fanout.server_last_seq)
                p->fanout.server_last_seq = last;
        if (last > p->seen_seq)
                p->seen_seq = last;
        for (struct follower *f = p->fanout.followers; f; f = f->next) {
                if (!f->live || first > f->next_seq) {
                        f->live = false;        /* (a gap cannot happen; if it did, pages repair it) */
                        follower_advance(p, f);
                        continue;
                }
                if (last < f->next_seq)
                        continue;
                if (conn_pending(f->client) >= FOLLOW_CLIENT_HIGH) {
                        log_info("%s fell behind by %zu unsent bytes at seq %llu: it catches up by pages when it reads again",
                                 conn_label(f->client), conn_pending(f->client), (unsigned long long) first);
                        f->live = false;
                        continue;
                }
                relay_entry(f->client, f->tag, m);
                f->next_seq = last + 1;
        }
        return 0;
}

/* An answer to a follower's catch-up page; false if it is not one. */
static bool follow_page_answer(struct peer *p, const struct dchat_msg *m)
{
        struct follower *f;
        uint64_t first, last;

        for (f = p->fanout.followers; f; f = f->next)
                if (f->view_tag && f->view_tag == m->tag)
                        break;
        if (!f)
                return false;
        switch (m->type) {
        case MSG_ENTRY:
        case MSG_ENTRY_DAMAGED:
                msg_seqs(m, &first, &last);
                if (last >= f->next_seq) {      /* (first greater: the log was archived up to there) */
                        relay_entry(f->client, f->tag, m);
                        f->next_seq = last + 1;
                }
                break;
        case MSG_VIEW_END:
                f->view_tag = 0;
                /* no progress (nothing there yet): the next pushed entry moves it */
                if (f->next_seq > f->page_from || (p->fanout.follow_tag && f->next_seq >= p->fanout.live_next))
                        follower_advance(p, f);
                break;
        default: {
                char text[DCHAT_ERROR_MAX];
                log_quote(text, sizeof text, m->error.text.p, m->error.text.len);       /* for a terminal */
                conn_send_error(f->client, f->tag, m->error.code ? m->error.code : ERR_INTERNAL, "%s",
                                text[0] ? text : "the server refused the view");
                follower_drop(p, f);
                follow_unsubscribe_if_idle(p);
                break;
        }
        }
        return true;
}

int peer_follow(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        struct follower *f = follower_find(p, client);

        if (!f) {
                f = calloc(1, sizeof *f);
                if (!f)
                        return -ENOMEM;
                f->client = client;
                LIST_PREPEND(p->fanout.followers, f);
                p->fanout.n_followers++;
        }
        /* one follow per connection: a new FOLLOW starts it again */
        f->tag = req->tag;
        f->view_tag = 0;
        f->live = false;
        f->next_seq = req->follow.from_seq ? req->follow.from_seq
                                           : p->fanout.follow_tag ? p->fanout.live_next : p->fanout.server_last_seq + 1;
        log_info("%s follows the log from seq %llu", conn_label(client), (unsigned long long) f->next_seq);
        follow_subscribe(p);
        follower_advance(p, f);
        return 0;
}

void peer_client_drained(struct peer *p, struct conn *client)
{
        struct follower *f = follower_find(p, client);
        if (f)
                follower_advance(p, f);
        gather_client_drained(p, client);
}

/* --- views ----------------------------------------------------------------------------------- */

int peer_view(struct peer *p, struct conn *client, const struct dchat_msg *req)
{
        if (!uplink_ready(p)) {
                const char *why = uplink_why(p);
                conn_send_error(client, req->tag, ERR_UNAVAILABLE, "the server %s is unreachable%s%s%s; try again later",
                                uplink_server_name(p), why[0] ? " (" : "", why, why[0] ? ")" : "");
                return 0;
        }
        /* One view of a client at the server at a time: its next VIEW waits
         * in its socket until this one has ended (fanout_frame), so a
         * client that asks for many and reads none costs one page. */
        for (struct view_relay *o = p->fanout.views; o; o = o->next)
                if (o->client == client)
                        return CONN_LATER;
        struct view_relay *v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        v->client = client;
        v->client_tag = req->tag;
        v->server_tag = uplink_tag(p);
        v->next = p->fanout.views;
        p->fanout.views = v;
        struct dchat_msg fwd = *req;
        fwd.tag = v->server_tag;
        /* a group's follower must not show less than this node saw stored (read-your-writes) */
        if (p->seen_seq > fwd.view.min_seq)
                fwd.view.min_seq = p->seen_seq;
        return uplink_send(p, &fwd);
}

/* --- what the server link brings ------------------------------------------------------------- */

int fanout_frame(struct peer *p, uint8_t type, struct dchat_msg *m)
{
        bool entry = type == MSG_ENTRY || type == MSG_ENTRY_DAMAGED;   /* (a damaged one: a marker in its place) */

        if (entry && p->fanout.follow_tag && m->tag == p->fanout.follow_tag)
                return follow_live_entry(p, m);
        if (follow_page_answer(p, m))
                return 0;
        for (struct view_relay **vp = &p->fanout.views; *vp; vp = &(*vp)->next) {
                struct view_relay *v = *vp;
                char text[DCHAT_ERROR_MAX];
                if (v->server_tag != m->tag)
                        continue;
                m->tag = v->client_tag;
                if (type == MSG_ERROR) {
                        /* dchatctl prints it on a terminal: nothing raw from outside */
                        log_quote(text, sizeof text, m->error.text.p, m->error.text.len);
                        m->error.text = (struct dchat_str) { text, (uint16_t) strlen(text) };
                }
                (void) conn_send(v->client, m);
                if (!entry) {
                        *vp = v->next;
                        conn_resume(v->client);         /* its next view, if it waits */
                        free(v);
                }
                return 0;
        }
        return 0;       /* its client went away */
}

void fanout_server_up(struct peer *p, uint64_t last_seq)
{
        p->fanout.server_last_seq = last_seq;
        if (last_seq > p->seen_seq)
                p->seen_seq = last_seq;
        if (p->fanout.live_next > p->fanout.server_last_seq + 1) {
                log_warning("the server's log ends at seq %llu, before the %llu followed so far",
                            (unsigned long long) p->fanout.server_last_seq, (unsigned long long) p->fanout.live_next);
                p->fanout.live_next = p->fanout.server_last_seq + 1;
        }
        follow_subscribe(p);
        for (struct follower *f = p->fanout.followers; f; f = f->next)
                follower_advance(p, f);
}

void fanout_server_lost(struct peer *p, const char *msg, bool keep_followers)
{
        for (struct view_relay *v = p->fanout.views, *n; v; v = n) {
                n = v->next;
                conn_send_error(v->client, v->client_tag, ERR_UNAVAILABLE, "%s", msg);
                conn_resume(v->client);
                free(v);
        }
        p->fanout.views = NULL;
        /* Followers are told (view -f and chat say so and reconnect; they
         * go on after the last line they showed once the server is back),
         * so nobody watches a room that went quiet without knowing why.
         * Going over to a group's new leader is no such gap: they stay, and
         * follow on from there. */
        while (p->fanout.followers && !keep_followers) {
                struct follower *f = p->fanout.followers;
                conn_send_error(f->client, f->tag, ERR_UNAVAILABLE, "%s", msg);
                follower_drop(p, f);
        }
        p->fanout.follow_tag = 0;
}

void fanout_client_gone(struct peer *p, struct conn *client)
{
        struct follower *f = follower_find(p, client);
        if (f) {
                follower_drop(p, f);
                follow_unsubscribe_if_idle(p);
        }
        for (struct view_relay **vp = &p->fanout.views; *vp;) {
                if ((*vp)->client == client) {
                        struct view_relay *v = *vp;
                        *vp = v->next;
                        free(v);
                } else {
                        vp = &(*vp)->next;
                }
        }
}

void fanout_stop(struct peer *p)
{
        for (struct view_relay *v = p->fanout.views, *n; v; v = n) {
                n = v->next;
                free(v);
        }
        p->fanout.views = NULL;
        while (p->fanout.followers)
                follower_drop(p, p->fanout.followers);
}
