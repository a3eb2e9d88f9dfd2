/* SPDX-License-Identifier: MIT */
/*
 * fsm.c — the chat log as the replicated state machine of a server group
 * (libraft's struct raft_fsm).  No event loop, no network: commands in,
 * chatlog.c calls out.
 *
 * A command is one entry of the Raft log:
 *
 *   "DCM1" (u32)  length L (u32) of what follows, up to the padding
 *   kind (u8), then the kind's body
 *   zero bytes up to a multiple of 8 (libraft 0.15 loses committed entries
 *   at a restart when an entry's length is not a multiple of 8)
 *
 *   BATCH_VC u32 n, then n entries (proto_put_entry): the posts one
 *            leader's turn of its event loop collected (group commit)
 *   BATCH    the same with entries of the first version, without their
 *            vector clocks (proto_get_entry_v1): what a group wrote before
 *            entries had one, still applied when its Raft log replays it
 *   GENESIS  the leader's chat log when the group began: u64 last_seq,
 *            then that entry's fence and post id (u64 lamport, str node,
 *            u32 idx, u64 post_id; zeros for an empty log)
 *   NOTE     a write to the shared notes (notes.h): u8 op, u8 flags,
 *            str key, str value, u64 expect, u64 fence, u32 fence_idx,
 *            str node, u64 op_id, u64 time
 *
 * Apply is chatlog_append(), which decides each post from the log alone,
 * so every replica that applies the same commands to the same start holds
 * the same entries under the same seqs; and it is idempotent: a command
 * applied again (a replica restarts from its last snapshot and replays
 * what follows) finds its posts stored and changes nothing.
 *
 * A snapshot holds no entries, only what names the state: the last seq
 * and that entry's fence and post id (plus whether the genesis was
 * applied), and the shared notes (notes_put: they live in memory only,
 * so the snapshot and the commands after it are their durable record).  The entries are in the chat log on disk; a replica that
 * restores a snapshot beyond the end of its own log fetches the missing
 * entries from another server (fsm_catchup, fsm_feed).  So a snapshot is a
 * few dozen bytes, whatever the size of the log.
 *
 * Commands that cannot be applied now — while the log catches up, or
 * after a write failed (a full disk) — wait here, in order, and are applied
 * once it can (fsm_drain); libraft counts them as applied.  (After a failed
 * write replica.c also stops its engine and starts it again after a pause:
 * this fsm goes with it, and the start applies again, from Raft's log,
 * everything after the last snapshot.)  Telling libraft
 * "not now" (RAFT_BUSY) instead does not work with libraft 0.15: it tries
 * an apply again only when its commit index moves (with nobody posting, a
 * replica would stay behind), and when such an apply fails while it
 * handles a message (a heartbeat announcing a commit) it takes the server
 * out of the group (RAFT_UNAVAILABLE) until a restart.  While commands
 * wait, no snapshot is taken (it would name a log's end that does not hold
 * them), and a snapshot restored drops them (it covers them).  A leader's
 * own batch that has to wait is answered as not taken (FSM result
 * "deferred"): its peers send it again, and its post ids make it land once.
 *
 * Durability.  A post is acknowledged once its command is committed —
 * in Raft's log, synced, on a majority — and applied on the leader.  The
 * chat log is not synced at each apply (chatlog_set_unsynced: that would
 * put a second flush on every post's path, and a third on a follower's,
 * whose reply to the leader waits for its apply): the commands are in
 * Raft's log, and libraft replays every command after the last snapshot
 * when it starts (restore, then apply).  What the replay cannot bring
 * back is what a snapshot covers, since libraft drops those commands once
 * it keeps the snapshot: so fsm_snapshot syncs the chat log first (and
 * writes a checkpoint, which marks where the unsynced writes begin).
 * After a crash the chat log is then a prefix of what was applied (the
 * open cuts a write lost after the checkpoint with all that follows it)
 * that reaches at least the snapshot's entry, and replaying what follows
 * the snapshot gives back exactly the group's log, apply being idempotent.
 * chatlog.c has the case analysis.
 */
#include <stdio.h>
#include <string.h>
#include <raft.h>

#include "dchatd.h"

#define CMD_MAGIC       UINT32_C(0x44434D31)    /* "DCM1" */
#define SNAP_MAGIC      UINT32_C(0x44435331)    /* "DCS1" */
#define CMD_HDR         9                       /* magic, length, kind */

enum { CMD_BATCH = 1, CMD_GENESIS = 2, CMD_BATCH_VC = 3, CMD_NOTE = 4 };

/* A command libraft counts as applied that waits to be (see the top). */
struct waiting {
        struct waiting *next;
        size_t len;
        uint8_t data[];
};

struct fsm {
        struct raft_fsm raft;
        struct chatlog *log;
        enum fsm_state state;
        bool genesis;                   /* the genesis command was applied */
        bool prefix_checked;            /* CATCHUP: our last entry is the group's (fsm_feed) */
        struct fsm_mark target;         /* CATCHUP: the log must reach this entry */
        char why[256];                  /* DIVERGED: what differs */
        struct fsm_result res;          /* the last applied batch, for the leader's callback */
        struct dchat_entry *entries;    /* BATCH_MAX decoded entries (res points here) */
        enum chatlog_result *results;
        struct dchat_entry scratch;
        uint64_t applied;               /* commands applied since start (statistics) */
        struct waiting *waiting, **waiting_tail;
        unsigned n_waiting;
        struct fsm_result deferred;     /* the result of a command that waits */
        int apply_error;                /* the last batch could not be written: why (retried) */
        struct raft *owner;             /* whose last applied index a snapshot is taken at */
        struct fsm_snapshots snaps;     /* taken and restored, for replica.c's snapshot events */
        struct notes notes;             /* the shared notes */
};

/* --- commands ------------------------------------------------------------------- */

static int cmd_finish(struct wbuf *b, struct raft_buffer *out)
{
        if (b->failed || b->len > UINT32_MAX)
                return -ENOMEM;
        size_t len = b->len - 8;
        b->data[4] = (uint8_t) (len >> 24);
        b->data[5] = (uint8_t) (len >> 16);
        b->data[6] = (uint8_t) (len >> 8);
        b->data[7] = (uint8_t) len;
        while (b->len % 8)
                wbuf_put_u8(b, 0);
        if (b->failed)
                return -ENOMEM;
        out->base = raft_malloc(b->len);
        if (!out->base)
                return -ENOMEM;
        memcpy(out->base, b->data, b->len);
        out->len = b->len;
        return 0;
}

int fsm_encode_batch(const struct dchat_entry *e, unsigned n, struct raft_buffer *out)
{
        struct wbuf b = {0};
        int r;

        wbuf_put_u32(&b, CMD_MAGIC);
        wbuf_put_u32(&b, 0);
        wbuf_put_u8(&b, CMD_BATCH_VC);
        wbuf_put_u32(&b, n);
        for (unsigned i = 0; i < n; i++)
                proto_put_entry(&b, &e[i]);
        r = cmd_finish(&b, out);
        wbuf_free(&b);
        return r;
}

static void mark_put(struct wbuf *b, const struct fsm_mark *m)
{
        wbuf_put_u64(b, m->seq);
        wbuf_put_u64(b, m->lamport);
        wbuf_put_str(b, m->node, strlen(m->node));
        wbuf_put_u32(b, m->fence_idx);
        wbuf_put_u64(b, m->post_id);
}

static int mark_get(struct rbuf *r, struct fsm_mark *m)
{
        *m = (struct fsm_mark) { .seq = rbuf_u64(r), .lamport = rbuf_u64(r) };
        if (dchat_str_copy(m->node, sizeof m->node, rbuf_str(r)) < 0)
                return -EBADMSG;
        m->fence_idx = rbuf_u32(r);
        m->post_id = rbuf_u64(r);
        return r->bad ? -EBADMSG : 0;
}

int fsm_encode_genesis(const struct fsm_mark *m, struct raft_buffer *out)
{
        struct wbuf b = {0};
        int r;

        wbuf_put_u32(&b, CMD_MAGIC);
        wbuf_put_u32(&b, 0);
        wbuf_put_u8(&b, CMD_GENESIS);
        mark_put(&b, m);
        r = cmd_finish(&b, out);
        wbuf_free(&b);
        return r;
}

int fsm_encode_note(const struct note_write *w, struct raft_buffer *out)
{
        struct wbuf b = {0};
        int r;

        wbuf_put_u32(&b, CMD_MAGIC);
        wbuf_put_u32(&b, 0);
        wbuf_put_u8(&b, CMD_NOTE);
        wbuf_put_u8(&b, w->op);
        wbuf_put_u8(&b, w->flags);
        wbuf_put_str(&b, w->key, w->key_len);
        wbuf_put_str(&b, w->value, w->value ? w->len : 0);
        wbuf_put_u64(&b, w->expect);
        wbuf_put_u64(&b, w->fence);
        wbuf_put_u32(&b, w->fence_idx);
        wbuf_put_str(&b, w->node, strlen(w->node));
        wbuf_put_u64(&b, w->op_id);
        wbuf_put_u64(&b, (uint64_t) w->time);
        r = cmd_finish(&b, out);
        wbuf_free(&b);
        return r;
}

/* The command's body (after magic and length, before the padding): -EBADMSG if it is none. */
static int cmd_open(const struct raft_buffer *buf, struct rbuf *r, uint8_t *kind)
{
        const uint8_t *p = buf->base;

        if (buf->len < CMD_HDR || buf->len % 8)
                return -EBADMSG;
        *r = (struct rbuf) { .p = p, .len = buf->len };
        if (rbuf_u32(r) != CMD_MAGIC)
                return -EBADMSG;
        uint32_t len = rbuf_u32(r);
        if (len < 1 || len > buf->len - 8 || buf->len - 8 - len >= 8)
                return -EBADMSG;
        for (size_t i = 8 + len; i < buf->len; i++)
                if (p[i])
                        return -EBADMSG;
        r->len = 8 + len;
        *kind = rbuf_u8(r);
        return 0;
}

/* --- the log's marks -------------------------------------------------------------- */

/* The entry at seq (its fence and post id); the empty mark for seq 0. */
static int mark_at(struct fsm *f, uint64_t seq, struct fsm_mark *m)
{
        struct chatlog_cursor cur;
        int r;

        *m = (struct fsm_mark) { .seq = seq };
        if (seq == 0)
                return 0;
        r = chatlog_seek(f->log, seq, &cur);
        if (r < 0)
                return r;
        r = chatlog_next(f->log, &cur, &f->scratch);
        if (r == CHATLOG_DAMAGED)
                return -EIO;
        if (r < 0)
                return r;
        m->lamport = f->scratch.lamport;
        strlcpy(m->node, f->scratch.node, sizeof m->node);
        m->fence_idx = f->scratch.fence_idx;
        m->post_id = f->scratch.post_id;
        return 0;
}

int fsm_mark_last(struct fsm *f, struct fsm_mark *m)
{
        return mark_at(f, chatlog_last_seq(f->log), m);
}

static bool mark_eq(const struct fsm_mark *a, const struct fsm_mark *b)
{
        return a->seq == b->seq && a->lamport == b->lamport && !strcmp(a->node, b->node) &&
               a->fence_idx == b->fence_idx && a->post_id == b->post_id;
}

static void mark_format(const struct fsm_mark *m, char *buf, size_t cap)
{
        if (m->seq == 0)
                snprintf(buf, cap, "an empty log");
        else
                snprintf(buf, cap, "seq %llu (fence %llu/%s/%u, post %s#%llu)", (unsigned long long) m->seq,
                         (unsigned long long) m->lamport, m->node, m->fence_idx, m->node,
                         (unsigned long long) m->post_id);
}

/*
 * Our log against a mark of the group's (the genesis, a snapshot): it holds
 * that entry (0), ends before it (1: catch up), or holds another (-1, why).
 */
static int mark_check(struct fsm *f, const struct fsm_mark *want, const char *what)
{
        struct fsm_mark have;
        char a[160], b[160];
        int r;

        if (chatlog_last_seq(f->log) < want->seq) {
                /* what we hold must be the start of what we fetch: fsm_feed checks each entry */
                return 1;
        }
        r = mark_at(f, want->seq, &have);
        if (r < 0) {
                snprintf(f->why, sizeof f->why, "%s ends at seq %llu, and this log's entry there cannot be read: %s",
                         what, (unsigned long long) want->seq, strerror(-r));
                return -1;
        }
        if (!mark_eq(&have, want)) {
                mark_format(want, a, sizeof a);
                mark_format(&have, b, sizeof b);
                snprintf(f->why, sizeof f->why, "%s ends at %s, this log holds %s there", what, a, b);
                return -1;
        }
        return 0;
}

static void enter(struct fsm *f, enum fsm_state s)
{
        f->state = s;
        f->prefix_checked = false;
}

/* --- libraft's callbacks ------------------------------------------------------------ */

static int apply_batch(struct fsm *f, struct rbuf *r, bool with_vc)
{
        uint32_t n = rbuf_u32(r);

        if (r->bad || n > FSM_BATCH_MAX)
                return -EBADMSG;
        for (uint32_t i = 0; i < n; i++)
                if ((with_vc ? proto_get_entry(r, &f->entries[i]) : proto_get_entry_v1(r, &f->entries[i])) < 0)
                        return -EBADMSG;
        if (r->off != r->len)
                return -EBADMSG;
        int e = chatlog_append(f->log, f->entries, n, f->results);
        if (e < 0) {
                /* Nothing of the batch was written (a full disk, an I/O error, a log found
                 * damaged): the command is committed all the same, so it must be applied,
                 * later; this replica stops here until it can (its applied index says so). */
                f->apply_error = e;
                return -EAGAIN;
        }
        f->apply_error = 0;
        f->res = (struct fsm_result) { .n = n, .entries = f->entries, .results = f->results, .error = e };
        return 0;
}

static int apply_genesis(struct fsm *f, struct rbuf *r)
{
        struct fsm_mark m;

        if (mark_get(r, &m) < 0 || r->off != r->len)
                return -EBADMSG;
        f->res = (struct fsm_result) { .genesis = true };
        if (f->genesis)
                return 0;       /* a second leader's, proposed before it learnt of the first: no-op */
        f->genesis = true;
        switch (mark_check(f, &m, "the group's log")) {
        case 0:
                return 0;
        case 1:
                f->target = m;
                enter(f, FSM_CATCHUP);
                return 0;
        default:
                enter(f, FSM_DIVERGED);
                return 0;
        }
}

static int apply_note(struct fsm *f, struct rbuf *r)
{
        struct note_write w = { .op = rbuf_u8(r), .flags = rbuf_u8(r) };
        struct dchat_str key = rbuf_str(r), value = rbuf_str(r), node;
        char name[DCHAT_NAME_MAX + 1];

        w.expect = rbuf_u64(r);
        w.fence = rbuf_u64(r);
        w.fence_idx = rbuf_u32(r);
        node = rbuf_str(r);
        w.op_id = rbuf_u64(r);
        w.time = (int64_t) rbuf_u64(r);
        if (r->bad || r->off != r->len || dchat_str_copy(name, sizeof name, node) < 0)
                return -EBADMSG;
        w.key = key.p;
        w.key_len = key.len;
        w.value = value.p;
        w.len = value.len;
        w.node = name;
        /* an invalid write is refused by notes_apply, the same on every replica */
        f->res = (struct fsm_result) { .note = true };
        if (notes_apply(&f->notes, &w, &f->res.note_out) < 0)
                return -EAGAIN;         /* out of memory: nothing changed; it waits and is tried again */
        return 0;
}

/* One command: 0, -EAGAIN (the write failed: nothing of it was written), -EBADMSG. */
static int apply_cmd(struct fsm *f, const struct raft_buffer *buf)
{
        struct rbuf r;
        uint8_t kind;
        int e;

        if (cmd_open(buf, &r, &kind) < 0)
                return -EBADMSG;
        switch (kind) {
        case CMD_BATCH:
        case CMD_BATCH_VC:
                e = apply_batch(f, &r, kind == CMD_BATCH_VC);
                break;
        case CMD_GENESIS:
                e = apply_genesis(f, &r);
                break;
        case CMD_NOTE:
                e = apply_note(f, &r);
                break;
        default:
                e = -EBADMSG;
        }
        if (e == 0)
                f->applied++;
        return e;
}

static void waiting_drop(struct fsm *f)
{
        while (f->waiting) {
                struct waiting *w = f->waiting;
                f->waiting = w->next;
                free(w);
        }
        f->waiting_tail = &f->waiting;
        f->n_waiting = 0;
}

int fsm_drain(struct fsm *f)
{
        while (f->waiting && f->state == FSM_READY) {
                struct waiting *w = f->waiting;
                if (apply_cmd(f, &(struct raft_buffer) { w->data, w->len }) == -EAGAIN)
                        return -EAGAIN;         /* it stays first in line (fsm_apply_error says why) */
                /* applied (or malformed, which it was not when it came) */
                f->waiting = w->next;
                if (!f->waiting)
                        f->waiting_tail = &f->waiting;
                f->n_waiting--;
                free(w);
        }
        return 0;
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf, void **result)
{
        struct fsm *f = rf->data;
        struct waiting *w;
        struct rbuf r;
        uint8_t kind;

        *result = NULL;
        if (f->state == FSM_DIVERGED)
                return RAFT_BUSY;       /* it applies nothing, ever (replica.c says so) */
        if (cmd_open(buf, &r, &kind) < 0)
                return RAFT_MALFORMED;
        if (f->state == FSM_READY && !f->waiting) {
                int e = apply_cmd(f, buf);
                if (e == 0) {
                        *result = &f->res;
                        return 0;
                }
                if (e != -EAGAIN)
                        return RAFT_MALFORMED;
                /* the write failed: the command waits, and what comes after it waits behind it */
        }
        w = malloc(sizeof *w + buf->len);
        if (!w)
                return RAFT_NOMEM;
        w->next = NULL;
        w->len = buf->len;
        memcpy(w->data, buf->base, buf->len);
        *f->waiting_tail = w;
        f->waiting_tail = &w->next;
        f->n_waiting++;
        *result = &f->deferred;
        return 0;
}

static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs)
{
        struct fsm *f = rf->data;
        struct fsm_mark m;
        struct wbuf b = {0};

        if (f->state != FSM_READY || f->waiting || fsm_mark_last(f, &m) < 0)
                return RAFT_BUSY;       /* tried again later */
        /* libraft drops the commands this snapshot covers once it keeps it: what they wrote
         * to the chat log must be on disk first (a failed sync stops the log's appends,
         * which the apply errors then report; no snapshot meanwhile) */
        if (chatlog_sync(f->log) < 0)
                return RAFT_IOERR;
        /* where the unsynced writes begin, for the next open (best effort: without it
         * the open cuts from the last checkpoint on, which is sound too, only more) */
        (void) chatlog_checkpoint(f->log);
        wbuf_put_u32(&b, SNAP_MAGIC);
        wbuf_put_u8(&b, f->genesis);
        mark_put(&b, &m);
        notes_put(&b, &f->notes);
        struct raft_buffer *out = raft_malloc(sizeof *out);
        if (!out || b.failed || !(out->base = raft_malloc(b.len))) {
                raft_free(out);
                wbuf_free(&b);
                return RAFT_NOMEM;
        }
        memcpy(out->base, b.data, b.len);
        out->len = b.len;
        wbuf_free(&b);
        *bufs = out;
        *n_bufs = 1;
        /* libraft takes a snapshot at its last applied index (libraft 0.15 and 0.22 alike) */
        f->snaps.taken++;
        f->snaps.taken_index = f->owner ? raft_last_applied(f->owner) : 0;
        f->snaps.taken_seq = m.seq;
        return 0;
}

static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
        struct fsm *f = rf->data;
        struct rbuf r = { .p = buf->base, .len = buf->len };
        struct fsm_mark m;
        int e = 0;

        struct notes notes;

        notes_init(&notes);
        if (rbuf_u32(&r) != SNAP_MAGIC)
                e = RAFT_MALFORMED;
        bool genesis = rbuf_u8(&r);
        if (!e && mark_get(&r, &m) < 0)
                e = RAFT_MALFORMED;
        /* the shared notes follow (a snapshot of an older dchatd has none: no notes) */
        if (!e && r.off < r.len) {
                int ne = notes_get(&r, &notes);
                e = ne == -ENOMEM ? RAFT_NOMEM : ne < 0 ? RAFT_MALFORMED : 0;
        }
        if (!e && r.off != r.len)
                e = RAFT_MALFORMED;
        if (e)
                notes_clear(&notes);
        if (!e) {
                notes_clear(&f->notes);
                f->notes = notes;
                f->genesis = genesis;
                f->snaps.restored++;
                f->snaps.restored_seq = m.seq;
                waiting_drop(f);        /* the snapshot covers them */
                switch (mark_check(f, &m, "the group's snapshot")) {
                case 0:
                        /* we hold it all (and maybe more, which replaying what follows finds stored) */
                        break;
                case 1:
                        f->target = m;
                        enter(f, FSM_CATCHUP);
                        break;
                default:
                        enter(f, FSM_DIVERGED);
                }
        }
        raft_free(buf->base);   /* the restore callback owns it */
        return e;
}

/* --- the rest ------------------------------------------------------------------------- */

int fsm_new(struct chatlog *log, struct fsm **ret)
{
        struct fsm *f = calloc(1, sizeof *f);

        if (!f)
                return -ENOMEM;
        f->entries = calloc(FSM_BATCH_MAX, sizeof *f->entries);
        f->results = calloc(FSM_BATCH_MAX, sizeof *f->results);
        if (!f->entries || !f->results) {
                fsm_free(f);
                return -ENOMEM;
        }
        f->log = log;
        f->waiting_tail = &f->waiting;
        f->deferred = (struct fsm_result) { .deferred = true };
        f->raft = (struct raft_fsm) { .version = 1, .data = f, .apply = fsm_apply, .snapshot = fsm_snapshot,
                                      .restore = fsm_restore };
        *ret = f;
        return 0;
}

struct fsm *fsm_free(struct fsm *f)
{
        if (!f)
                return NULL;
        waiting_drop(f);
        notes_clear(&f->notes);
        free(f->entries);
        free(f->results);
        free(f);
        return NULL;
}

struct raft_fsm *fsm_raft(struct fsm *f)
{
        return &f->raft;
}

enum fsm_state fsm_state(const struct fsm *f, const char **why)
{
        if (why)
                *why = f->why;
        return f->state;
}

bool fsm_genesis_done(const struct fsm *f)
{
        return f->genesis;
}

bool fsm_catchup(const struct fsm *f, uint64_t *from, struct fsm_mark *to)
{
        uint64_t last = chatlog_last_seq(f->log);

        if (f->state != FSM_CATCHUP)
                return false;
        /* the first page overlaps our last entry (fsm_feed checks it) */
        *from = last && !f->prefix_checked ? last : last + 1;
        *to = f->target;
        return true;
}

int fsm_feed(struct fsm *f, struct dchat_entry *e, unsigned n)
{
        if (f->state != FSM_CATCHUP || n > FSM_BATCH_MAX)
                return -EINVAL;
        /* The first page starts with our own last entry, as the source holds it: what we
         * hold must be the start of the group's log, or fetching the rest would hide that
         * this log went another way (a snapshot or genesis only names the log's end). */
        uint64_t last = chatlog_last_seq(f->log);
        if (n && last && e[0].seq == last) {
                struct fsm_mark have, theirs = { .seq = e[0].seq, .lamport = e[0].lamport,
                                                 .fence_idx = e[0].fence_idx, .post_id = e[0].post_id };
                strlcpy(theirs.node, e[0].node, sizeof theirs.node);
                if (mark_at(f, last, &have) < 0 || !mark_eq(&have, &theirs) ||
                    strcmp(f->scratch.text, e[0].text) || strcmp(f->scratch.author, e[0].author)) {
                        char a[160], b[160];
                        mark_format(&theirs, a, sizeof a);
                        mark_format(&have, b, sizeof b);
                        snprintf(f->why, sizeof f->why, "the group's log holds %s, this log %s%s", a, b,
                                 mark_eq(&have, &theirs) ? ", with another author or text" : "");
                        enter(f, FSM_DIVERGED);
                        return -EBADMSG;
                }
                f->prefix_checked = true;
                e++;
                n--;
        }
        if (n && last && !f->prefix_checked)
                return -EBADMSG;        /* the first page must start with our last entry */
        if (n == 0)
                return 0;       /* (the first page held only our own last entry) */
        for (unsigned i = 0; i < n; i++)
                if (e[i].seq != chatlog_last_seq(f->log) + 1 + i || e[i].seq > f->target.seq)
                        return -EBADMSG;        /* not the next entries we need */
        /* the same decisions the group made give the same seqs: check them */
        uint64_t want = chatlog_last_seq(f->log) + 1;
        for (unsigned i = 0; i < n; i++)
                e[i].seq = 0;
        int r = chatlog_append(f->log, e, n, f->results);
        if (r < 0)
                return r;
        for (unsigned i = 0; i < n; i++)
                if (f->results[i] != CHATLOG_STORED || e[i].seq != want + i) {
                        snprintf(f->why, sizeof f->why, "an entry fetched from the group as seq %llu was not "
                                 "stored under it here (%s)", (unsigned long long) (want + i),
                                 f->results[i] == CHATLOG_STORED ? "another seq" : "refused");
                        enter(f, FSM_DIVERGED);
                        return -EBADMSG;
                }
        if (chatlog_last_seq(f->log) == f->target.seq) {
                if (mark_check(f, &f->target, "the group's log") != 0) {
                        enter(f, FSM_DIVERGED);
                        return -EBADMSG;
                }
                enter(f, FSM_READY);
                (void) fsm_drain(f);    /* what came meanwhile (a failed write: fsm_apply_error) */
        }
        return (int) n;
}

uint64_t fsm_applied(const struct fsm *f)
{
        return f->applied;
}

unsigned fsm_waiting(const struct fsm *f)
{
        return f->n_waiting;
}

int fsm_apply_error(const struct fsm *f)
{
        return f->apply_error;
}

void fsm_attach(struct fsm *f, struct raft *raft)
{
        f->owner = raft;
}

struct notes *fsm_notes(struct fsm *f)
{
        return &f->notes;
}

void fsm_snapshots(const struct fsm *f, struct fsm_snapshots *s)
{
        *s = f->snaps;
}
