/* SPDX-License-Identifier: MIT */
/*
 * noteq.c — the peer role's shared notes (dchatctl note; notes.h has the
 * store).
 *
 * Reads (get, list) go to the server as they come and their answers back
 * to the client.  Writes (set, del, incr) wait in the post queue like
 * posts and are made inside the critical section (postq.c calls
 * noteq_cs_send and noteq_cs_answer): an increment reads the note there,
 * adds, and writes the sum with the version it read and the section's
 * fence, so no other locked write can come between, and the server
 * refuses the write if one did (then it is read and written again, under
 * a new request).  A write's op id is a post id: a resend after a lost
 * link is done once.
 *
 * `note incr --unlocked` is the demonstration of what the lock prevents:
 * the same read and write, without the critical section, fence or
 * version check, so concurrent increments overwrite each other.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "peer.h"

/* A read forwarded to the server, or an unlocked increment, until answered. */
struct note_call {
        struct note_call *prev, *next;
        struct conn *client;            /* NULL once it went away */
        uint32_t client_tag;
        uint32_t tag;                   /* of our request to the server */
        struct note_op op;              /* an unlocked increment's (op.op == NOTE_INCR) */
        bool writing;                   /* ... its write is out */
        uint64_t op_id;
};

/* --- the answer to a client ------------------------------------------------------------------ */

void noteq_reply(struct conn *client, uint32_t tag, const struct note_op *n, const char *node)
{
        bool set = n->op != NOTE_DEL;

        if (!client)
                return;
        (void) conn_send(client, &(struct dchat_msg) { .type = MSG_NOTE_REPLY, .tag = tag, .note_reply = {
                (uint8_t) ((set ? NOTE_FOUND : 0) | (n->duplicate ? NOTE_DUPLICATE : 0)),
                { n->key, (uint16_t) strlen(n->key) }, { set ? n->value : "", (uint16_t) (set ? n->len : 0) },
                n->version, { set ? node : "", (uint16_t) (set ? strlen(node) : 0) }, set ? n->time : 0 } });
}

/* An error from the server, for our log and the client: quoted (a server's words). */
static void send_quoted(struct conn *client, uint32_t tag, const struct dchat_msg *m, const char *dflt)
{
        char text[DCHAT_ERROR_MAX];

        log_quote(text, sizeof text, m->error.text.p, m->error.text.len);
        conn_send_error(client, tag, m->error.code ? (enum dchat_err) m->error.code : ERR_INTERNAL, "%s",
                        text[0] ? text : dflt);
}

/*
 * An increment's read came (found: the reply; else the note does not
 * exist): the new value into n, and the version it must still have.
 * 0, or -ERANGE / -EINVAL with why.
 */
static int incr_compute(struct note_op *n, const struct dchat_msg *m, bool found, char *why, size_t cap)
{
        long long old = 0;

        n->expect = 0;
        if (found) {
                char v[DCHAT_VALUE_MAX + 1], *end;
                memcpy(v, m->note_reply.value.p, m->note_reply.value.len);
                v[m->note_reply.value.len] = '\0';
                errno = 0;
                old = strtoll(v, &end, 10);
                if (errno || end == v || *end || !((v[0] >= '0' && v[0] <= '9') || v[0] == '-')) {
                        char q[80];
                        log_quote(q, sizeof q, v, strlen(v));
                        snprintf(why, cap, "note %s holds '%s', which is not a whole number: it cannot be "
                                 "incremented", n->key, q);
                        return -EINVAL;
                }
                n->expect = m->note_reply.version;
        }
        long long sum;
        if (__builtin_add_overflow(old, (long long) n->delta, &sum)) {
                snprintf(why, cap, "note %s holds %lld: adding %lld goes beyond a 64-bit integer", n->key, old,
                         (long long) n->delta);
                return -ERANGE;
        }
        n->len = (uint16_t) snprintf(n->value, sizeof n->value, "%lld", sum);
        return 0;
}

/* The NOTE frame that writes n (op_id, fence as given). */
static int send_write(struct peer *p, uint32_t tag, const struct note_op *n, uint8_t flags, uint64_t op_id,
                      uint64_t fence, uint32_t fence_idx)
{
        return uplink_send(p, &(struct dchat_msg) { .type = MSG_NOTE, .tag = tag, .note = {
                n->op == NOTE_DEL ? NOTE_DEL : NOTE_SET, flags, { n->key, (uint16_t) strlen(n->key) },
                { n->op == NOTE_DEL ? "" : n->value, (uint16_t) (n->op == NOTE_DEL ? 0 : n->len) }, 0, n->expect,
                fence, fence_idx, op_id, n->time } });
}

static int send_read(struct peer *p, uint32_t tag, const char *key)
{
        return uplink_send(p, &(struct dchat_msg) { .type = MSG_NOTE, .tag = tag,
                .note = { .op = NOTE_GET, .key = { key, (uint16_t) strlen(key) }, .value = { "", 0 } } });
}

/* --- inside the critical section (postq.c) ----------------------------------------------------- */

int noteq_cs_send(struct peer *p, struct post_req *r)
{
        struct note_op *n = r->note;

        if (n->reading) {
                r->append_tag = uplink_tag(p);
                (void) send_read(p, r->append_tag, n->key);
                return 0;
        }
        /* numbered at its first send; a resend keeps the number, so the server writes it once */
        if (!r->e.post_id && !(r->e.post_id = postq_take_id(p)))
                return -EIO;
        r->append_tag = uplink_tag(p);
        r->sent = true;
        p->stats.appends++;
        (void) send_write(p, r->append_tag, n, n->op == NOTE_INCR ? NOTE_IF_VERSION : 0, r->e.post_id, r->e.lamport,
                          r->e.fence_idx);
        return 0;
}

int noteq_cs_answer(struct peer *p, struct post_req *r, uint8_t type, const struct dchat_msg *m)
{
        struct note_op *n = r->note;
        char why[DCHAT_ERROR_MAX];

        if (type == MSG_ERROR && m->error.code == ERR_NOT_LEADER) {
                log_info("note %s: %s does not lead the group; it goes again to the leader", n->key,
                         uplink_server_name(p));
                r->append_tag = 0;      /* sent again once we link to the leader (postq_server_leads) */
                return 0;
        }
        if (n->reading) {
                bool found = type == MSG_NOTE_REPLY && (m->note_reply.flags & NOTE_FOUND);
                if (type == MSG_NOTE_REPLY && !found)
                        return -EBADMSG;        /* a GET answers a note or NOT_FOUND */
                if (type == MSG_ERROR && m->error.code != ERR_NOT_FOUND) {
                        r->done = true;
                        send_quoted(r->client, r->client_tag, m, "the server could not read the note");
                        return 0;
                }
                if (incr_compute(n, m, found, why, sizeof why) < 0) {
                        r->done = true;
                        conn_send_error(r->client, r->client_tag, ERR_INVALID, "%s", why);
                        return 0;
                }
                n->reading = false;
                if (noteq_cs_send(p, r) < 0) {  /* the write, in the same critical section */
                        r->done = true;
                        conn_send_error(r->client, r->client_tag, ERR_STORAGE, "this node cannot number its writes "
                                        "(see its log); nothing was written");
                }
                return 0;
        }
        if (type == MSG_NOTE_REPLY) {
                n->version = m->note_reply.version;
                n->duplicate = m->note_reply.flags & NOTE_DUPLICATE;
                r->done = true;
                p->stats.posts++;
                log_info("note %s %s as version %llu%s", n->key, n->op == NOTE_DEL ? "deleted" : "written",
                         (unsigned long long) n->version, n->duplicate ? " (before: a resent write)" : "");
                noteq_reply(r->client, r->client_tag, n, self_name(p));
                return 0;
        }
        if (m->error.code == ERR_FENCED || m->error.code == ERR_CHANGED) {
                if (m->error.code == ERR_FENCED && !clock_ok(p, m->error.detail)) {
                        log_event(EV_PROTOCOL_ERROR, NULL, "server link: the fence it refused a note's write by is "
                                  "%llu, beyond the bounds (clock here %llu); closing",
                                  (unsigned long long) m->error.detail, (unsigned long long) p->ra.clock);
                        return -ERANGE;
                }
                if (m->error.code == ERR_FENCED)
                        ra_observe(&p->ra, m->error.detail);
                /* not written: read (an increment) and written again under a new request */
                r->fenced = true;
                peer_local_event(p, EV_POST_RETRIED, -1, &(struct event_fields) {
                                         .lamport = p->ra.clock, .fence = r->e.lamport, .fence_idx = r->e.fence_idx },
                                 "write of note %s refused by the server (%s); it goes again under a new request",
                                 n->key, m->error.code == ERR_FENCED ? "its fence is not above the last locked write's"
                                 : "the note changed since it was read: an unlocked write came between, or "
                                   "mutual exclusion failed");
                return 0;
        }
        r->done = true;
        send_quoted(r->client, r->client_tag, m, "the server refused the note's write");
        return 0;
}

void noteq_cs_again(struct post_req *r)
{
        r->note->reading = r->note->op == NOTE_INCR;
        r->e.post_id = 0;       /* the server recorded the refused one: a new write, a new op id */
}

/* --- reads and unlocked increments ----------------------------------------------------------- */

static struct note_call *call_find(struct peer *p, uint32_t tag)
{
        for (struct note_call *c = p->note_calls; c; c = c->next)
                if (c->tag == tag)
                        return c;
        return NULL;
}

bool noteq_awaits(struct peer *p, uint32_t tag)
{
        return call_find(p, tag) != NULL;
}

static void call_drop(struct peer *p, struct note_call *c)
{
        LIST_REMOVE(p->note_calls, c);
        free(c);
}

int noteq_call(struct peer *p, struct conn *client, uint32_t tag, const struct dchat_msg *req)
{
        char why[DCHAT_ERROR_MAX];
        struct note_call *c;

        if (!uplink_ready(p)) {
                uplink_waiting(p, why, sizeof why);
                conn_send_error(client, tag, ERR_UNAVAILABLE, "cannot reach the server: waiting for %s; try again",
                                why);
                return 0;
        }
        if (!(c = calloc(1, sizeof *c)))
                return -ENOMEM;
        c->client = client;
        c->client_tag = tag;
        c->tag = uplink_tag(p);
        LIST_PREPEND(p->note_calls, c);
        if (req->note.op == NOTE_INCR) {
                /* --unlocked: read now, write the sum without the critical section */
                c->op.op = NOTE_INCR;
                c->op.delta = req->note.delta;
                c->op.time = (int64_t) time(NULL);
                memcpy(c->op.key, req->note.key.p, req->note.key.len);
                return send_read(p, c->tag, c->op.key);
        }
        return uplink_send(p, &(struct dchat_msg) { .type = MSG_NOTE, .tag = c->tag,
                .note = { .op = req->note.op, .key = req->note.key, .value = { "", 0 } } });
}

int noteq_frame(struct peer *p, uint8_t type, const struct dchat_msg *m)
{
        struct note_call *c = call_find(p, m->tag);
        char why[DCHAT_ERROR_MAX];

        if (!c)
                return 0;
        if (c->op.op != NOTE_INCR) {
                /* a read: passed on as it is (checked when decoded), the last frame ends it */
                if (type == MSG_ERROR) {
                        send_quoted(c->client, c->client_tag, m, "the server could not read the notes");
                } else {
                        struct dchat_msg fwd = *m;
                        fwd.tag = c->client_tag;
                        if (c->client)
                                (void) conn_send(c->client, &fwd);
                        if (m->note_reply.flags & NOTE_MORE)
                                return 0;
                }
                call_drop(p, c);
                return 0;
        }
        if (!c->writing) {
                bool found = type == MSG_NOTE_REPLY && (m->note_reply.flags & NOTE_FOUND);
                if ((type == MSG_NOTE_REPLY && !found) || (type == MSG_ERROR && m->error.code != ERR_NOT_FOUND)) {
                        if (type == MSG_ERROR)
                                send_quoted(c->client, c->client_tag, m, "the server could not read the note");
                        else
                                conn_send_error(c->client, c->client_tag, ERR_INTERNAL, "the server's answer to a "
                                                "read was no note");
                        call_drop(p, c);
                        return 0;
                }
                if (incr_compute(&c->op, m, found, why, sizeof why) < 0) {
                        conn_send_error(c->client, c->client_tag, ERR_INVALID, "%s", why);
                        call_drop(p, c);
                        return 0;
                }
                if (!(c->op_id = postq_take_id(p))) {
                        conn_send_error(c->client, c->client_tag, ERR_STORAGE, "this node cannot number its writes "
                                        "(see its log); nothing written");
                        call_drop(p, c);
                        return 0;
                }
                c->writing = true;
                /* the window the lock closes: another node may write between our read and this */
                return send_write(p, c->tag, &c->op, NOTE_UNLOCKED, c->op_id, 0, 0);
        }
        if (type == MSG_NOTE_REPLY) {
                c->op.version = m->note_reply.version;
                c->op.duplicate = m->note_reply.flags & NOTE_DUPLICATE;
                noteq_reply(c->client, c->client_tag, &c->op, self_name(p));
        } else {
                send_quoted(c->client, c->client_tag, m, "the server refused the note's write");
        }
        call_drop(p, c);
        return 0;
}

void noteq_server_lost(struct peer *p, const char *why)
{
        while (p->note_calls) {
                struct note_call *c = p->note_calls;
                conn_send_error(c->client, c->client_tag, ERR_UNAVAILABLE, "%s%s", why,
                                c->writing ? "; the note may or may not have been written" : "; try again");
                call_drop(p, c);
        }
}

void noteq_client_gone(struct peer *p, struct conn *client)
{
        for (struct note_call *c = p->note_calls; c; c = c->next)
                if (c->client == client)
                        c->client = NULL;
}

void noteq_stop(struct peer *p)
{
        noteq_server_lost(p, "dchatd is shutting down");
}
