/* SPDX-License-Identifier: MIT */
/*
 * postq.c — the peer role's posts: the queue of local posts, the critical
 * section in which they go to the server, their deadlines, and their
 * answers to the clients.
 *
 * A post waits in a FIFO queue until this node holds the critical section
 * (mesh.c runs the Ricart–Agrawala machine and calls postq_enter on
 * entering).  Then up to batch_max posts go to the server in one write,
 * numbered with post ids that a resend keeps, so the server stores each
 * once.  The node leaves when every one of them is answered: stored, or
 * refused.  Posts the server's fence refused go back to the head of the
 * queue and ask again (backing off when that repeats); a post that waits
 * past post_timeout_ms fails, saying what it waited for.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "peer.h"

static void cs_maybe_request(struct peer *p);
static void req_free(struct post_req *r);
static void cs_send_appends(struct peer *p);
static void arm_deadline(struct peer *p);

/* --- post ids -------------------------------------------------------------------------------- */

/*
 * The next post id: (epoch, n).  A life that used up its 2^32 - 1 numbers,
 * or learnt that the log holds post ids of a later epoch than its own,
 * takes a new epoch from the incarnation counter.  0 if none can be had.
 */
static uint64_t post_id_take_epoch(struct peer *p, uint64_t at_least)
{
        char err[PATH_MAX + 128];
        uint64_t e;

        if (incarnation_next(p->conf->state_directory, at_least, &e, err, sizeof err) < 0) {
                log_error("no post id for a new post: %s", err);
                return 0;
        }
        log_info("post ids go on with epoch %llu (was %llu)", (unsigned long long) e,
                 (unsigned long long) p->postq.post_epoch);
        p->postq.post_epoch = e;
        p->postq.next_post_id = POST_ID(e, 1);
        return p->postq.next_post_id;
}

static uint64_t post_id_next(struct peer *p)
{
        if ((uint32_t) p->postq.next_post_id == 0 && !post_id_take_epoch(p, p->postq.post_epoch + 1))
                return 0;
        return p->postq.next_post_id++;
}

uint64_t postq_take_id(struct peer *p)
{
        return post_id_next(p);
}

static void req_free(struct post_req *r)
{
        free(r->note);
        free(r);
}

/* --- posts and the critical section ---------------------------------------------------------- */

/* The server stored r (APPENDED): said at once, so that the log tells it before the cs-exit it comes before. */
static void post_stored(struct peer *p, struct post_req *r)
{
        /* DCHAT_PEER: the other side, the server (the server's own post-stored names the peer) */
        struct event_fields f = { .peer = uplink_server_name(p), .lamport = p->ra.clock, .fence = r->e.lamport,
                                  .fence_idx = r->e.fence_idx, .seq = r->e.seq };

        p->stats.posts++;
        if (r->e.seq > p->seen_seq)
                p->seen_seq = r->e.seq;
        peer_local_event(p, EV_POST_STORED, -1, &f, "post by %s stored as seq %llu", r->e.author,
                         (unsigned long long) r->e.seq);
}

/* The client's answer: POSTED for a post stored (post_stored said so), or the error. */
static void post_answer(struct peer *p, struct post_req *r, int err_code, const char *err)
{
        struct event_fields f = { .peer = uplink_server_name(p), .lamport = p->ra.clock, .fence = r->e.lamport,
                                  .fence_idx = r->e.fence_idx, .seq = r->e.seq };

        r->done = true;
        if (r->note) {
                if (err_code) {
                        log_info("note %s by %s failed: %s", r->note->key, r->e.author, err);
                        conn_send_error(r->client, r->client_tag, (enum dchat_err) err_code, "%s", err);
                } else {
                        noteq_reply(r->client, r->client_tag, r->note, self_name(p));
                }
                return;
        }
        if (err_code) {
                peer_local_event(p, EV_POST_FAILED, -1, &f, "post by %s failed: %s", r->e.author, err);
                conn_send_error(r->client, r->client_tag, (enum dchat_err) err_code, "%s", err);
                return;
        }
        if (r->client)
                (void) conn_send(r->client, &(struct dchat_msg) {
                        .type = MSG_POSTED, .tag = r->client_tag,
                        .appended = { r->e.seq, r->e.lamport, r->e.fence_idx, 0 } });
}

/*
 * Answer the posts of this entry the server has stored.  Their answers wait
 * until the handling of the server's frames is over, so that the entry's
 * last answer lets the peer leave the critical section first: the next
 * peer's turn starts while the clients are told.
 */
static void answer_flush(struct peer *p)
{
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (p->postq.cs[i]->stored) {
                        p->postq.cs[i]->stored = false;
                        post_answer(p, p->postq.cs[i], 0, NULL);
                }
        if (p->postq.answer_src)
                (void) sd_event_source_set_enabled(p->postq.answer_src, SD_EVENT_OFF);
}

static int on_answers(sd_event_source *s, void *userdata)
{
        (void) s;
        answer_flush(userdata);
        return 0;
}

/* Take up to batch_max queued posts into the critical section. */
void postq_enter(struct peer *p)
{
        p->postq.cs_n = 0;
        p->postq.fence_idx = 0;
        p->postq.hold_ms = 0;
        while (p->postq.queue && p->postq.cs_n < p->postq.cs_cap && p->postq.cs_n < p->conf->batch_max) {
                struct post_req *r = p->postq.queue;
                /* a note's write has the critical section to itself (an increment reads, then writes) */
                if (p->postq.cs_n && (r->note || p->postq.cs[0]->note))
                        break;
                p->postq.queue = r->next;
                p->postq.queued--;
                r->next = NULL;
                r->e.lamport = p->ra.enter_ts;   /* entries come in enter_ts order (see ra.h) */
                r->e.vc = p->ra.enter_vc;        /* ... and their vector clock is the entry's */
                strlcpy(r->e.node, self_name(p), sizeof r->e.node);
                r->e.fence_idx = p->postq.fence_idx++;
                if (r->hold_ms > p->postq.hold_ms)
                        p->postq.hold_ms = r->hold_ms;
                p->postq.cs[p->postq.cs_n++] = r;
        }
        if (!p->postq.queue)
                p->postq.queue_tail = &p->postq.queue;
        cs_send_appends(p);
        arm_deadline(p);
        if (p->postq.cs_n == 0) {
                /* everything timed out while we waited: leave at once */
                struct ra_actions acts;
                ra_release(&p->ra, &acts);
                mesh_run_actions_why(p, &acts, " (nothing left to post)");
                cs_maybe_request(p);
        }
}

static void cs_send_appends(struct peer *p)
{
        if (!uplink_leads(p))
                return;
        uplink_cork(p);         /* one write for the whole entry: one batch at the server */
        for (unsigned i = 0; i < p->postq.cs_n; i++) {
                struct post_req *r = p->postq.cs[i];
                if (r->done)
                        continue;
                if (r->append_tag)
                        continue;       /* on its way on this link (the LEADER after a HELLO_ACK sends again) */
                if (r->note) {
                        if (noteq_cs_send(p, r) < 0)
                                post_answer(p, r, ERR_STORAGE, "this node cannot number its writes (see its log); "
                                            "nothing was written");
                        continue;
                }
                /* Numbered when first sent, after HELLO_ACK told us the last
                 * number the server has from us; a resend keeps its number,
                 * so the server stores it once. */
                if (!r->e.post_id && !(r->e.post_id = post_id_next(p))) {
                        post_answer(p, r, ERR_STORAGE, "this node cannot number its posts (see its log); "
                                    "the post was not stored");
                        continue;
                }
                r->sent = true;
                p->stats.appends++;
                r->append_tag = uplink_tag(p);
                (void) uplink_send(p, &(struct dchat_msg) { .type = MSG_APPEND, .tag = r->append_tag,
                                                            .append = &r->e });
        }
        uplink_uncork(p);
}

/* Leave when every post of this entry is answered. */
static void cs_maybe_exit(struct peer *p)
{
        if (p->ra.state != RA_HELD)
                return;
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (!p->postq.cs[i]->done && !p->postq.cs[i]->fenced)
                        return;
        if (p->postq.hold_ms) {
                /* post --hold: stay inside a while, so others visibly wait */
                answer_flush(p);
                log_info("holding the critical section for %u ms (post --hold)", p->postq.hold_ms);
                (void) sd_event_source_set_time_relative(p->postq.hold_timer, (uint64_t) p->postq.hold_ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(p->postq.hold_timer, SD_EVENT_ONESHOT);
                p->postq.hold_ms = 0;
                return;
        }
        if (sd_event_source_get_enabled(p->postq.hold_timer, NULL) > 0)
                return;
        struct ra_actions acts;
        char why[48];
        snprintf(why, sizeof why, " after %u post(s)", p->postq.cs_n);
        ra_release(&p->ra, &acts);
        mesh_run_actions_why(p, &acts, why);    /* the deferred replies go out first ... */
        answer_flush(p);                        /* ... then the clients hear */

        /* refused by the fence: back to the head of the queue, in order,
         * keeping their post ids (they were not stored) */
        struct post_req *again = NULL, **tail = &again;
        for (unsigned i = 0; i < p->postq.cs_n; i++) {
                struct post_req *r = p->postq.cs[i];
                if (r->fenced && !r->done) {
                        r->fenced = false;
                        r->sent = false;        /* refused, so certainly not stored */
                        r->append_tag = 0;
                        if (r->note)
                                noteq_cs_again(r);
                        *tail = r;
                        tail = &r->next;
                        p->postq.queued++;
                } else
                        req_free(r);
        }
        if (again) {
                *tail = p->postq.queue;
                if (!p->postq.queue)
                        p->postq.queue_tail = tail;
                p->postq.queue = again;
                /* The first retry goes at once (one refusal is what a peer that
                 * died inside the critical section leaves behind); refused again
                 * and again, retries back off: 1 ms, 2 ms, ... up to 1 s, so a
                 * fence that nothing can pass costs little. */
                if (++p->postq.fenced_streak > 1) {
                        unsigned k = p->postq.fenced_streak - 2 < 10 ? p->postq.fenced_streak - 2 : 10;
                        p->postq.retry_at = now_usec() + (USEC_PER_MSEC << k);
                }
        }
        p->postq.cs_n = 0;

        cs_maybe_request(p);
        arm_deadline(p);        /* posts refused by the fence are queued again */
}

static void cs_maybe_request(struct peer *p)
{
        struct ra_actions acts;

        /* Without the server there is nothing to do inside, and until its
         * HELLO_ACK our clock may be behind the log's last fence. */
        if (!p->postq.queue || p->ra.state != RA_RELEASED || !uplink_leads(p))
                return;
        if (p->postq.retry_at > now_usec()) {
                (void) sd_event_source_set_time(p->postq.retry_timer, p->postq.retry_at);
                (void) sd_event_source_set_enabled(p->postq.retry_timer, SD_EVENT_ONESHOT);
                return;
        }
        if (ra_request(&p->ra, &acts) == 0)
                mesh_run_actions(p, &acts);
}

/*
 * What a post is still waiting for, for error messages: one in the
 * critical section (queued false) waits for the server; one in the queue
 * waits for the other peers' replies, or, while this node is inside with
 * earlier posts, for this node's own critical section to end.
 */
static void waiting_for(struct peer *p, bool queued, char *buf, size_t cap)
{
        char server[256];
        size_t off = 0;
        uint64_t t;

        buf[0] = '\0';
        uplink_waiting(p, server, sizeof server);
        if (queued && p->ra.state == RA_HELD) {
                if (sd_event_source_get_enabled(p->postq.hold_timer, NULL) > 0 &&
                    sd_event_source_get_time(p->postq.hold_timer, &t) >= 0)
                        snprintf(buf, cap, "this node's own critical section, held by post --hold "
                                 "(%llu ms more)", (unsigned long long) (t > now_usec() ? (t - now_usec()) / USEC_PER_MSEC : 0));
                else
                        snprintf(buf, cap, "this node's own critical section, whose earlier posts wait for %s", server);
                return;
        }
        if (queued && p->ra.state == RA_WANTED && p->ra.algo == DME_CENTRAL) {
                snprintf(buf, cap, "the coordinator's grant (%s)", server);
                return;
        }
        if (queued && p->ra.state == RA_WANTED) {
                off = (size_t) snprintf(buf, cap, "a reply from ");
                size_t start = off;
                for (unsigned i = 0; i < p->ra.n; i++) {
                        if (!(p->ra.awaiting & (UINT64_C(1) << i)))
                                continue;
                        off += (size_t) snprintf(buf + off, off < cap ? cap - off : 0, "%s%s%s", off > start ? ", " : "",
                                                 p->names[i], mesh_reachable(p, i) ? "" : " (unreachable)");
                }
                if (off > start)
                        return;
        }
        snprintf(buf, cap, "%s", server);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct peer *p = userdata;
        char what[512], msg[DCHAT_ERROR_MAX];
        (void) s;

        waiting_for(p, false, what, sizeof what);
        snprintf(msg, sizeof msg, "timed out after %llu ms waiting for %s",
                 (unsigned long long) (p->conf->post_timeout_usec / USEC_PER_MSEC), what);

        /* posts in the critical section: their fate at the server is unknown */
        for (unsigned i = 0; i < p->postq.cs_n; i++) {
                struct post_req *r = p->postq.cs[i];
                if (!r->done && r->deadline <= usec) {
                        if (r->sent && !r->fenced && r->append_tag && uplink_ready(p) && !r->grace) {
                                /* Its append is on a live link: the server's answer (stored, or
                                 * refused) will say what became of it, and a silent server is
                                 * found dead within dead_after_ms.  Wait for that rather than
                                 * answer "may or may not have been stored". */
                                r->grace = true;
                                r->deadline = usec + p->conf->dead_after_usec;
                                continue;
                        }
                        /* sent and unanswered: unknown; refused by the fence: certainly not stored */
                        bool unknown = r->sent && !r->fenced;
                        char m2[DCHAT_ERROR_MAX];
                        snprintf(m2, sizeof m2, "%s; %s", msg, r->note ? "the note may or may not have been written"
                                                                      : "the post may or may not have been stored");
                        post_answer(p, r, unknown ? ERR_TIMEOUT : ERR_UNAVAILABLE, unknown ? m2 : msg);
                }
        }
        /* queued posts: never sent, so certainly not stored */
        waiting_for(p, true, what, sizeof what);
        snprintf(msg, sizeof msg, "timed out after %llu ms waiting for %s",
                 (unsigned long long) (p->conf->post_timeout_usec / USEC_PER_MSEC), what);
        struct post_req **pp = &p->postq.queue;
        while (*pp) {
                struct post_req *r = *pp;
                if (r->deadline > usec) {
                        pp = &r->next;
                        continue;
                }
                post_answer(p, r, ERR_TIMEOUT, msg);
                *pp = r->next;
                p->postq.queued--;
                req_free(r);
        }
        p->postq.queue_tail = &p->postq.queue;
        while (*p->postq.queue_tail)
                p->postq.queue_tail = &(*p->postq.queue_tail)->next;

        if (p->ra.state == RA_HELD) {
                cs_maybe_exit(p);
        } else if (p->ra.state == RA_WANTED && !p->postq.queue) {
                /* nobody waits for this request any more: withdraw it, which
                 * for Ricart–Agrawala is the same as entering and leaving */
                struct ra_actions acts;
                char why[DCHAT_ERROR_MAX + 2];
                snprintf(why, sizeof why, ": %s", msg);
                ra_release(&p->ra, &acts);
                mesh_run_actions_why(p, &acts, why);
        }
        arm_deadline(p);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) usec;
        cs_maybe_request(userdata);
        return 0;
}

static int on_hold_done(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) usec;
        cs_maybe_exit(userdata);
        return 0;
}

static void arm_deadline(struct peer *p)
{
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (!p->postq.cs[i]->done && p->postq.cs[i]->deadline < next)
                        next = p->postq.cs[i]->deadline;
        /* Not only the head: posts the fence refused go back to the head of the
         * queue, some with a deadline a grace later (on_deadline). */
        for (struct post_req *r = p->postq.queue; r; r = r->next)
                if (r->deadline < next)
                        next = r->deadline;
        if (next == UINT64_MAX) {
                (void) sd_event_source_set_enabled(p->postq.deadline_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(p->postq.deadline_timer, next);
        (void) sd_event_source_set_enabled(p->postq.deadline_timer, SD_EVENT_ONESHOT);
}

/* POST_WAIT to the post's client: what it waits for, and how long at most (ms; its own deadline too). */
static void post_wait(struct post_req *r, const char *why, uint32_t wait_ms)
{
        uint64_t now = now_usec(), left = r->deadline > now ? (r->deadline - now) / USEC_PER_MSEC : 0;

        if (!r->client)
                return;
        if (left < wait_ms)
                wait_ms = (uint32_t) left;
        (void) conn_send(r->client, &(struct dchat_msg) { .type = MSG_POST_WAIT, .tag = r->client_tag,
                                                          .post_wait = { wait_ms, { why, (uint16_t) strlen(why) } } });
}

static int enqueue(struct peer *p, struct post_req *r);

int peer_post(struct peer *p, struct conn *client, uint32_t tag, const char *author, int32_t utc_offset,
              uint32_t hold_ms, const char *text, size_t len)
{
        struct post_req *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->client = client;
        r->client_tag = tag;
        r->hold_ms = hold_ms;
        r->deadline = now_usec() + p->conf->post_timeout_usec;
        r->e.time = (int64_t) time(NULL);
        r->e.utc_offset = utc_offset;
        strlcpy(r->e.author, author, sizeof r->e.author);
        memcpy(r->e.text, text, len);
        r->e.text[len] = '\0';
        r->e.text_len = (uint16_t) len;
        return enqueue(p, r);
}

/* A post (or a note's write) into the queue for the critical section, or failed at once. */
static int enqueue(struct peer *p, struct post_req *r)
{
        char why[DCHAT_ERROR_MAX];
        if (uplink_given_up(p, why, sizeof why)) {
                post_answer(p, r, ERR_UNAVAILABLE, why);        /* no use waiting for its timeout */
                req_free(r);
                return 0;
        }

        *p->postq.queue_tail = r;
        p->postq.queue_tail = &r->next;
        p->postq.queued++;
        cs_maybe_request(p);
        arm_deadline(p);
        /* no silent wait: the client learns at once what the post waits for */
        uint32_t wait_ms;
        if (uplink_wait_reason(p, why, sizeof why, &wait_ms))
                post_wait(r, why, wait_ms);
        return 0;
}

void postq_tell_waiting(struct peer *p)
{
        char why[DCHAT_ERROR_MAX];
        uint32_t wait_ms;

        if (!uplink_wait_reason(p, why, sizeof why, &wait_ms))
                return;
        for (struct post_req *r = p->postq.queue; r; r = r->next)
                post_wait(r, why, wait_ms);
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (!p->postq.cs[i]->done)
                        post_wait(p->postq.cs[i], why, wait_ms);
}

unsigned peer_posts_of(struct peer *p, const char *author)
{
        unsigned n = 0;
        for (struct post_req *r = p->postq.queue; r; r = r->next)
                n += strcmp(r->e.author, author) == 0;
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                n += !p->postq.cs[i]->done && strcmp(p->postq.cs[i]->e.author, author) == 0;
        return n;
}

void postq_client_gone(struct peer *p, struct conn *client)
{
        for (struct post_req *r = p->postq.queue; r; r = r->next)
                if (r->client == client)
                        r->client = NULL;
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (p->postq.cs[i]->client == client)
                        p->postq.cs[i]->client = NULL;
}

/* --- what the server link brings ------------------------------------------------------------- */

static struct post_req *cs_find(struct peer *p, uint32_t tag)
{
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                if (!p->postq.cs[i]->done && !p->postq.cs[i]->fenced && p->postq.cs[i]->append_tag == tag)
                        return p->postq.cs[i];
        return NULL;
}

bool postq_awaits(struct peer *p, uint32_t tag)
{
        return cs_find(p, tag) != NULL;
}

int postq_answer(struct peer *p, uint8_t type, const struct dchat_msg *m)
{
        struct post_req *r = cs_find(p, m->tag);
        if (!r)
                return 0;       /* answer to a post that already timed out */
        if (r->note || type == MSG_NOTE_REPLY) {
                int e = r->note ? noteq_cs_answer(p, r, type, m) : -EBADMSG;
                if (e < 0)
                        return e;
                if (r->done)
                        p->postq.fenced_streak = 0;     /* (a refusal is counted as it goes again: cs_maybe_exit) */
                arm_deadline(p);
                cs_maybe_exit(p);
                return 0;
        }
        if (type == MSG_ERROR && m->error.code == ERR_NOT_LEADER) {
                /* Not stored by that server (or it lost the lead before the post was
                 * committed: the new leader may hold it).  It goes again, with its post id,
                 * once we link to the leader, which the server's LEADER names. */
                char text[DCHAT_ERROR_MAX];
                log_quote(text, sizeof text, m->error.text.p, m->error.text.len);  /* a server's words */
                log_info("post by %s not taken by %s: %s; it goes again to the group's leader", r->e.author,
                         uplink_server_name(p), text);
                r->append_tag = 0;
                arm_deadline(p);
                return 0;
        }
        if (type == MSG_APPENDED) {
                r->e.seq = m->appended.seq;
                r->done = r->stored = true;     /* answered by answer_flush */
                post_stored(p, r);
                p->postq.fenced_streak = 0;
                (void) sd_event_source_set_enabled(p->postq.answer_src, SD_EVENT_ONESHOT);
        } else if (m->error.code == ERR_FENCED && !clock_ok(p, m->error.detail)) {
                log_event(EV_PROTOCOL_ERROR, NULL, "server link: the fence it refused a post by is %llu, "
                          "beyond the bounds (clock here %llu); closing", (unsigned long long) m->error.detail,
                          (unsigned long long) p->ra.clock);
                return -ERANGE;
        } else if (m->error.code == ERR_FENCED) {
                /* Someone else wrote under a later fence: we were not
                 * alone in the critical section (a false suspicion), or
                 * a peer died inside it after storing under a clock we
                 * never heard of.  Not stored, so it goes again under a
                 * new request, with our clock moved past the server's
                 * last fence. */
                ra_observe(&p->ra, m->error.detail);
                r->fenced = true;
                peer_local_event(p, EV_POST_RETRIED, -1, &(struct event_fields) {
                                         .lamport = p->ra.clock, .fence = r->e.lamport, .fence_idx = r->e.fence_idx },
                          "post by %s refused by the server's fence (last stored fence at %llu); "
                          "it goes again under a new request", r->e.author,
                          (unsigned long long) m->error.detail);
        } else {
                /* from outside: to our log and to the client, so quoted */
                char text[DCHAT_ERROR_MAX];
                log_quote(text, sizeof text, m->error.text.p, m->error.text.len);
                post_answer(p, r, m->error.code ? m->error.code : ERR_INTERNAL,
                            text[0] ? text : "the server refused the post");
        }
        arm_deadline(p);
        cs_maybe_exit(p);
        return 0;
}

int postq_number_after(struct peer *p, uint64_t last)
{
        if (POST_ID_INCARNATION(last) > p->postq.post_epoch) {
                /* the log holds posts of a later life of ours: our counter went back */
                log_warning("the server holds post %llu of this node, of epoch %llu, later than this "
                            "life's %llu: the incarnation counter in %s went back",
                            (unsigned long long) last, (unsigned long long) POST_ID_INCARNATION(last),
                            (unsigned long long) p->postq.post_epoch, p->conf->state_directory);
                if (!post_id_take_epoch(p, POST_ID_INCARNATION(last) + 1))
                        return -EIO;
        } else if (last >= p->postq.next_post_id)
                p->postq.next_post_id = last + 1;       /* a number of ours: we reconnected */
        return 0;
}

/*
 * dme_algorithm = "central": a server that leads is (again, or newly) the
 * coordinator: it hears where we stand (our request, the section we hold,
 * or nothing, which also carries a release the old link lost), so that a
 * new one rebuilds its queue from the peers' word.
 */
static void coordinator_up(struct peer *p)
{
        struct ra_actions acts;

        if (p->ra.algo != DME_CENTRAL || !uplink_leads(p))
                return;
        ra_coordinator_up(&p->ra, &acts);
        mesh_run_actions(p, &acts);
}

void postq_server_up(struct peer *p)
{
        /* (the coordinator hears from us at the LEADER that follows every HELLO_ACK: postq_server_leads) */
        cs_send_appends(p);     /* resend what a lost link left unanswered */
        cs_maybe_request(p);
}

void postq_server_leads(struct peer *p)
{
        coordinator_up(p);
        cs_send_appends(p);
        cs_maybe_request(p);
        arm_deadline(p);
}

void postq_server_lost(struct peer *p)
{
        /* appends in flight stay in the critical section and are resent,
         * with the same post ids, once the link is back */
        for (unsigned i = 0; i < p->postq.cs_n; i++)
                p->postq.cs[i]->append_tag = 0;
}

/* The posts queued for the critical section fail: they were never sent. */
static void fail_queued(struct peer *p, const char *why)
{
        while (p->postq.queue) {
                struct post_req *r = p->postq.queue;
                p->postq.queue = r->next;
                p->postq.queued--;
                post_answer(p, r, ERR_UNAVAILABLE, why);
                req_free(r);
        }
        p->postq.queue_tail = &p->postq.queue;
        if (p->ra.state == RA_WANTED) {
                /* nobody waits for this request any more (as in on_deadline) */
                struct ra_actions acts;
                ra_release(&p->ra, &acts);
                mesh_run_actions_why(p, &acts, ": the server is unreachable");
        }
        arm_deadline(p);
}

void postq_heartbeat(struct peer *p)
{
        char why[DCHAT_ERROR_MAX];

        if (p->postq.queue && uplink_given_up(p, why, sizeof why))
                fail_queued(p, why);
}

/* --- life cycle ------------------------------------------------------------------------------ */

int postq_init(struct peer *p)
{
        sd_event *e = p->event;
        int r;

        p->postq.queue_tail = &p->postq.queue;
        p->postq.post_epoch = p->incarnation;
        p->postq.next_post_id = POST_ID(p->incarnation, 1);
        p->postq.cs_cap = 1024;         /* the largest batch_max a reload may set */
        p->postq.cs = calloc(p->postq.cs_cap, sizeof *p->postq.cs);
        if (!p->postq.cs)
                return -ENOMEM;
        r = sd_event_add_time(e, &p->postq.deadline_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_deadline, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->postq.deadline_timer, SD_EVENT_OFF);
        r = sd_event_add_time(e, &p->postq.hold_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_hold_done, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->postq.hold_timer, SD_EVENT_OFF);
        r = sd_event_add_time(e, &p->postq.retry_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_retry, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->postq.retry_timer, SD_EVENT_OFF);
        r = sd_event_add_defer(e, &p->postq.answer_src, on_answers, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(p->postq.answer_src, SD_EVENT_OFF);
        return 0;
}

void postq_stop(struct peer *p)
{
        answer_flush(p);        /* stored: say so */
        /* pending posts end with an error, never silently */
        for (unsigned i = 0; i < p->postq.cs_n; i++) {
                struct post_req *r = p->postq.cs[i];
                if (!r->done)
                        post_answer(p, r, ERR_UNAVAILABLE, r->sent && !r->fenced
                                    ? "dchatd is shutting down; the post may or may not have been stored"
                                    : "dchatd is shutting down; the post was not stored");
                req_free(r);
        }
        p->postq.cs_n = 0;
        while (p->postq.queue) {
                struct post_req *r = p->postq.queue;
                p->postq.queue = r->next;
                post_answer(p, r, ERR_UNAVAILABLE, "dchatd is shutting down; the post was not stored");
                req_free(r);
        }
        p->postq.deadline_timer = sd_event_source_disable_unref(p->postq.deadline_timer);
        p->postq.hold_timer = sd_event_source_disable_unref(p->postq.hold_timer);
        p->postq.retry_timer = sd_event_source_disable_unref(p->postq.retry_timer);
        p->postq.answer_src = sd_event_source_disable_unref(p->postq.answer_src);
        free(p->postq.cs);
        p->postq.cs = NULL;
}

void postq_reconf(struct peer *p)
{
        arm_deadline(p);
}

unsigned postq_pending(const struct peer *p)
{
        return p->postq.queued + p->postq.cs_n;
}

/* --- the shared notes' writes ---------------------------------------------------------------- */

int peer_note(struct peer *p, struct conn *client, uint32_t tag, const char *author, const struct dchat_msg *req)
{
        if (req->note.op == NOTE_GET || req->note.op == NOTE_LIST || (req->note.flags & NOTE_UNLOCKED))
                return noteq_call(p, client, tag, req);

        struct post_req *r = calloc(1, sizeof *r);
        struct note_op *n = calloc(1, sizeof *n);
        if (!r || !n) {
                free(r);
                free(n);
                return -ENOMEM;
        }
        r->note = n;
        r->client = client;
        r->client_tag = tag;
        r->deadline = now_usec() + p->conf->post_timeout_usec;
        r->e.time = (int64_t) time(NULL);
        strlcpy(r->e.author, author, sizeof r->e.author);
        n->op = req->note.op;
        n->reading = n->op == NOTE_INCR;
        n->delta = req->note.delta;
        n->time = r->e.time;
        memcpy(n->key, req->note.key.p, req->note.key.len);
        memcpy(n->value, req->note.value.p, req->note.value.len);
        n->len = req->note.value.len;
        return enqueue(p, r);
}
