/* SPDX-License-Identifier: MIT */
/*
 * test-fsm.c — the chat log as a replicated state machine (daemon/fsm.c)
 * with libraft itself:
 *
 *   - commands: every one padded to 8 bytes with its length inside, read
 *     back whole; malformed ones refused (bad magic, length, padding);
 *     batches of the first version (entries without a vector clock, what
 *     a group's Raft log holds from before) still applied, mixed with new
 *     ones, and the chat logs of two replicas byte for byte the same;
 *   - apply: two replicas that apply the same commands hold the same
 *     entries under the same seqs; applying them all again changes nothing
 *     (a replica restarted from its last snapshot replays what follows);
 *   - snapshots hold the log's end only: restored on a replica that holds
 *     it, on one that lacks entries (CATCHUP, then fsm_feed), on one that
 *     holds another log (DIVERGED); the genesis likewise;
 *   - a group's chat log is not synced at each apply, only when a snapshot
 *     is taken: a crash that loses unsynced writes after it (a hole in
 *     the tail) leaves a log that, with the snapshot restored and the
 *     commands after it replayed, is again the group's, entry for entry;
 *   - libraft's deterministic fixture (raft/fixture.h) with the real apply
 *     on three real chat logs: elections, a killed leader, a partitioned
 *     leader whose uncommitted batches are lost, revivals — every replica
 *     ends with the same log, and every batch the fixture says was applied
 *     on a leader is in it exactly once;
 *   - libraft's libuv storage: batches of every length mod 8 survive a
 *     restart (libraft 0.15 loses committed entries whose length is not a
 *     multiple of 8 at a restart: the padding is what prevents it).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <raft.h>
#include <raft/fixture.h>
#include <raft/uv.h>
#include <uv.h>

#include "dchatd.h"
#include "tap.h"

static char top[256];

__attribute__((format(printf, 1, 2), noreturn))
static void bail_out(const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        printf("Bail out! ");
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
        exit(255);
}

static void mkdirs(char *buf, size_t cap, const char *name)
{
        snprintf(buf, cap, "%s/%s", top, name);
        (void) mkdir(buf, 0700);
}

static void mk(struct dchat_entry *e, uint64_t lamport, const char *node, uint32_t idx, uint64_t post_id,
               const char *text)
{
        *e = (struct dchat_entry) {0};
        e->lamport = lamport;
        snprintf(e->node, sizeof e->node, "%s", node);
        e->fence_idx = idx;
        e->post_id = post_id;
        e->time = 1700000000 + (int64_t) post_id;
        snprintf(e->author, sizeof e->author, "lucy");
        e->text_len = (uint16_t) snprintf(e->text, sizeof e->text, "%s", text);
}

/* The whole log of a replica, as text, to compare replicas. */
static char *dump(struct chatlog *log)
{
        struct chatlog_cursor cur;
        struct dchat_entry e;
        size_t cap = 1 << 16, len = 0;
        char *out = malloc(cap);

        out[0] = '\0';
        if (chatlog_seek(log, 1, &cur) < 0)
                return out;
        while (chatlog_next(log, &cur, &e) == 0) {
                char line[DCHAT_TEXT_MAX + 200];
                int n = snprintf(line, sizeof line, "%llu %llu/%s/%u #%llu %s\n", (unsigned long long) e.seq,
                                 (unsigned long long) e.lamport, e.node, e.fence_idx,
                                 (unsigned long long) e.post_id, e.text);
                if (len + (size_t) n + 1 > cap)
                        out = realloc(out, cap *= 2);
                memcpy(out + len, line, (size_t) n + 1);
                len += (size_t) n;
        }
        return out;
}

struct replica_t {
        char dir[300];
        struct chatlog *log;
        struct fsm *fsm;
};

static void replica_open(struct replica_t *r, const char *name)
{
        mkdirs(r->dir, sizeof r->dir, name);
        if (chatlog_open(r->dir, &r->log, NULL) < 0 || fsm_new(r->log, &r->fsm) < 0)
                bail_out("cannot open the replica in %s", r->dir);
}

static void replica_close(struct replica_t *r)
{
        r->fsm = fsm_free(r->fsm);
        r->log = chatlog_close(r->log);
}

/* Apply one command (a copy: libraft owns the buffers it applies). */
static int apply(struct replica_t *r, const struct raft_buffer *b)
{
        void *result = NULL;
        return fsm_raft(r->fsm)->apply(fsm_raft(r->fsm), b, &result);
}

/* --- commands ------------------------------------------------------------------------ */

static void test_commands(void)
{
        struct dchat_entry e[8];
        struct raft_buffer b;
        struct replica_t r;
        char text[64];
        bool padded = true, whole = true;

        replica_open(&r, "commands");
        /* texts of every length mod 8: the command's length must come out a multiple of 8 every time */
        for (unsigned i = 0; i < 16; i++) {
                snprintf(text, sizeof text, "%.*s", (int) (i + 1), "abcdefghijklmnopqrstuvwxyz");
                mk(&e[0], 10 + i, "node1", 0, i + 1, text);
                if (fsm_encode_batch(e, 1, &b) < 0)
                        bail_out("fsm_encode_batch");
                padded &= b.len % 8 == 0;
                whole &= apply(&r, &b) == 0;
                raft_free(b.base);
        }
        ok(padded, "a command's length is a multiple of 8, whatever its posts' (16 lengths)");
        ok(whole, "... and every one is applied");
        is_int(chatlog_last_seq(r.log), 16, "16 posts stored");

        /* malformed commands are refused, nothing stored */
        mk(&e[0], 100, "node1", 0, 100, "x");
        fsm_encode_batch(e, 1, &b);
        uint8_t *p = b.base;
        p[0] ^= 1;
        is_int(apply(&r, &b), RAFT_MALFORMED, "a bad magic: refused");
        p[0] ^= 1;
        p[b.len - 1] = 1;       /* a padding byte (the text "x" leaves padding) */
        is_int(apply(&r, &b), RAFT_MALFORMED, "a padding byte that is not 0: refused");
        p[b.len - 1] = 0;
        p[7] = (uint8_t) (p[7] + 8);
        is_int(apply(&r, &b), RAFT_MALFORMED, "a length past the command: refused");
        p[7] = (uint8_t) (p[7] - 8);
        struct raft_buffer odd = { b.base, b.len - 1 };
        is_int(apply(&r, &odd), RAFT_MALFORMED, "a command whose length is not a multiple of 8: refused");
        is_int(chatlog_last_seq(r.log), 16, "nothing stored by them");
        is_int(apply(&r, &b), 0, "the same command intact: applied");
        is_int(chatlog_last_seq(r.log), 17, "... stored");
        raft_free(b.base);
        replica_close(&r);
}

/* A BATCH command of the first version (kind 1: entries without their vector clocks), as fsm.c wrote it then. */
static void encode_batch_v1(const struct dchat_entry *e, unsigned n, struct raft_buffer *out)
{
        struct wbuf b = {0};

        wbuf_put_u32(&b, 0x44434D31);           /* "DCM1" */
        wbuf_put_u32(&b, 0);
        wbuf_put_u8(&b, 1);                     /* BATCH */
        wbuf_put_u32(&b, n);
        for (unsigned i = 0; i < n; i++) {
                struct dchat_entry x = e[i];
                x.vc.n = 0;
                proto_put_entry(&b, &x);
                b.len--;                        /* the empty clock's count byte: the first version had none */
        }
        size_t len = b.len - 8;
        b.data[4] = (uint8_t) (len >> 24), b.data[5] = (uint8_t) (len >> 16);
        b.data[6] = (uint8_t) (len >> 8), b.data[7] = (uint8_t) len;
        while (b.len % 8)
                wbuf_put_u8(&b, 0);
        out->base = raft_malloc(b.len);
        memcpy(out->base, b.data, b.len);
        out->len = b.len;
        wbuf_free(&b);
}

static bool same_file(const char *a, const char *b)
{
        FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
        bool same = f && g;
        int x, y;

        while (same) {
                x = getc(f);
                y = getc(g);
                same = x == y;
                if (x == EOF || y == EOF)
                        break;
        }
        if (f)
                fclose(f);
        if (g)
                fclose(g);
        return same;
}

static void test_old_commands(void)
{
        struct replica_t a, c;
        struct dchat_entry e[2];
        struct raft_buffer b;
        struct chatlog_cursor cur;
        struct dchat_entry got;
        char pa[400], pc[400];

        replica_open(&a, "old-a");
        replica_open(&c, "old-c");
        mk(&e[0], 10, "node1", 0, POST_ID(3, 1), "before vector clocks");
        mk(&e[1], 10, "node1", 1, POST_ID(3, 2), "... its batch");
        encode_batch_v1(e, 2, &b);
        ok(apply(&a, &b) == 0 && apply(&c, &b) == 0, "a batch of the first version is applied");
        ok(apply(&a, &b) == 0 && chatlog_last_seq(a.log) == 2, "... again: idempotent");
        raft_free(b.base);
        mk(&e[0], 12, "node2", 0, POST_ID(4, 1), "with a vector clock");
        e[0].vc = (struct vclock) { 2, { 7, 1000000000003 } };
        fsm_encode_batch(e, 1, &b);
        ok(apply(&a, &b) == 0 && apply(&c, &b) == 0, "then a batch with vector clocks");
        raft_free(b.base);
        ok(chatlog_seek(a.log, 1, &cur) == 0 && chatlog_next(a.log, &cur, &got) == 0 && got.vc.n == 0 &&
           !strcmp(got.text, "before vector clocks"), "the old entry reads back, without a clock");
        ok(chatlog_seek(a.log, 3, &cur) == 0 && chatlog_next(a.log, &cur, &got) == 0 && got.vc.n == 2 &&
           got.vc.c[0] == 7 && got.vc.c[1] == 1000000000003, "the new one with its clock");
        snprintf(pa, sizeof pa, "%s/chat.log", a.dir);
        snprintf(pc, sizeof pc, "%s/chat.log", c.dir);
        replica_close(&a);
        replica_close(&c);
        ok(same_file(pa, pc), "the two replicas' chat logs are the same, byte for byte");
}

/* --- determinism and replay ------------------------------------------------------------------ */

static void test_replay(void)
{
        struct replica_t a, c;
        struct raft_buffer cmds[40];
        struct dchat_entry e[4];
        char text[64];
        unsigned n = 0;

        replica_open(&a, "replay-a");
        replica_open(&c, "replay-c");
        /* batches from two nodes, copies (a resend), a fenced one, a stale copy */
        for (unsigned i = 0; i < 30; i++) {
                unsigned k = 1 + i % 3;
                for (unsigned j = 0; j < k; j++) {
                        snprintf(text, sizeof text, "post %u.%u", i, j);
                        mk(&e[j], 10 + 2 * i, i % 2 ? "node2" : "node1", j, POST_ID(7, 10 * i + j + 1), text);
                }
                fsm_encode_batch(e, k, &cmds[n++]);
                if (i % 7 == 3)
                        fsm_encode_batch(e, k, &cmds[n++]);     /* the same batch again: a resend */
        }
        mk(&e[0], 5, "node1", 0, POST_ID(7, 9999), "under an old fence");
        fsm_encode_batch(e, 1, &cmds[n++]);
        for (unsigned i = 0; i < n; i++) {
                apply(&a, &cmds[i]);
                apply(&c, &cmds[i]);
        }
        char *da = dump(a.log), *dc = dump(c.log);
        ok(chatlog_last_seq(a.log) == 60 && !strcmp(da, dc),
           "two replicas applying the same commands hold the same log (%llu entries)",
           (unsigned long long) chatlog_last_seq(a.log));
        /* a restart from an old snapshot replays them all again */
        for (unsigned i = 0; i < n; i++)
                apply(&a, &cmds[i]);
        char *da2 = dump(a.log);
        ok(!strcmp(da, da2), "applying every command again changes nothing (idempotent)");
        free(da);
        free(da2);
        free(dc);
        for (unsigned i = 0; i < n; i++)
                raft_free(cmds[i].base);
        replica_close(&a);
        replica_close(&c);
}

/* --- snapshots and the genesis --------------------------------------------------------------- */

static int feed_from(struct replica_t *to, struct replica_t *from)
{
        uint64_t next;
        struct fsm_mark target;
        struct chatlog_cursor cur;
        struct dchat_entry *page = calloc(7, sizeof *page);
        int r = 0, stored = 0;

        while (r >= 0 && fsm_catchup(to->fsm, &next, &target)) {
                unsigned n = 0;
                if (chatlog_seek(from->log, next, &cur) < 0)
                        break;
                while (n < 7 && cur.seq <= target.seq && chatlog_next(from->log, &cur, &page[n]) == 0)
                        n++;
                r = fsm_feed(to->fsm, page, n);
                if (r > 0)
                        stored += r;
        }
        free(page);
        return r < 0 ? r : stored;
}

static void test_snapshots(void)
{
        struct replica_t a, empty, same, other, shorter;
        struct raft_buffer b, *snap;
        struct dchat_entry e;
        unsigned n_snap;
        char text[64];

        replica_open(&a, "snap-a");
        replica_open(&other, "snap-other");
        replica_open(&shorter, "snap-shorter");
        for (unsigned i = 1; i <= 50; i++) {
                snprintf(text, sizeof text, "a %u", i);
                mk(&e, i, "node1", 0, POST_ID(3, i), text);
                fsm_encode_batch(&e, 1, &b);
                apply(&a, &b);
                if (i <= 30)
                        apply(&shorter, &b);
                if (i <= 20) {
                        if (i == 20)
                                mk(&e, i, "node1", 0, POST_ID(3, i), "another text");
                        raft_free(b.base);
                        fsm_encode_batch(&e, 1, &b);
                        apply(&other, &b);
                }
                raft_free(b.base);
        }
        is_int(fsm_raft(a.fsm)->snapshot(fsm_raft(a.fsm), &snap, &n_snap), 0, "a snapshot of 50 entries");
        ok(n_snap == 1 && snap[0].len < 128, "... is one small buffer (%zu bytes), no entries in it", snap[0].len);

#define RESTORE(r) do { struct raft_buffer c = { raft_malloc(snap[0].len), snap[0].len }; \
                        memcpy(c.base, snap[0].base, c.len); \
                        is_int(fsm_raft((r)->fsm)->restore(fsm_raft((r)->fsm), &c), 0, "restore on " #r); } while (0)
        replica_close(&a);
        replica_open(&same, "snap-a");  /* (opened again: the same files) */
        RESTORE(&same);
        is_int(fsm_state(same.fsm, NULL), FSM_READY, "restored where the log holds it all: READY");

        replica_open(&empty, "snap-empty");
        RESTORE(&empty);
        uint64_t from;
        struct fsm_mark to;
        ok(fsm_state(empty.fsm, NULL) == FSM_CATCHUP && fsm_catchup(empty.fsm, &from, &to) && from == 1 &&
           to.seq == 50, "restored on an empty log: CATCHUP, seqs 1 to 50 wanted");
        /* commands that come meanwhile wait in the state machine: libraft 0.15 would not retry a
         * RAFT_BUSY before its commit index moves, and would drop out of the group for it */
        struct raft_buffer cmd, later;
        mk(&e, 1, "node1", 0, POST_ID(3, 1), "a 1");
        fsm_encode_batch(&e, 1, &cmd);
        mk(&e, 51, "node1", 0, POST_ID(3, 51), "a 51");
        fsm_encode_batch(&e, 1, &later);
        void *result = NULL;
        is_int(fsm_raft(empty.fsm)->apply(fsm_raft(empty.fsm), &cmd, &result), 0,
               "... while catching up, a command is taken (libraft counts it applied) ...");
        ok(result && ((struct fsm_result *) result)->deferred && fsm_waiting(empty.fsm) == 1,
           "... and waits: its result says so (a leader would refuse its posts)");
        is_int(apply(&empty, &later), 0, "... and the next one too");
        struct raft_buffer *none;
        unsigned n_none;
        is_int(fsm_raft(empty.fsm)->snapshot(fsm_raft(empty.fsm), &none, &n_none), RAFT_BUSY,
               "... no snapshot while commands wait (it would name a log that lacks them)");
        raft_free(cmd.base);
        raft_free(later.base);
        mk(&e, 7, "node1", 0, POST_ID(3, 7), "not the next one");
        e.seq = 7;
        is_int(fsm_feed(empty.fsm, &e, 1), -EBADMSG, "fed an entry that is not the next: refused");
        is_int(feed_from(&empty, &same), 50, "fed the 50 entries from a replica that holds them (50 stored)");
        is_int(fsm_state(empty.fsm, NULL), FSM_READY, "... then READY");
        ok(fsm_waiting(empty.fsm) == 0 && chatlog_last_seq(empty.log) == 51,
           "... and the two commands that waited are applied: post 1 found stored, post 51 stored as seq 51");
        mk(&e, 51, "node1", 0, POST_ID(3, 51), "a 51");
        fsm_encode_batch(&e, 1, &later);
        apply(&same, &later);
        raft_free(later.base);
        char *d1 = dump(empty.log), *d2 = dump(same.log);
        ok(!strcmp(d1, d2), "... holding the same log as a replica that applied them in turn");
        free(d1);
        free(d2);

        RESTORE(&shorter);
        is_int(feed_from(&shorter, &same), 20, "a log that holds seqs 1 to 30: 20 entries stored (the page's first, "
               "its own seq 30, checked, not counted)");
        ok(fsm_state(shorter.fsm, NULL) == FSM_READY && chatlog_last_seq(shorter.log) == 50, "... READY at seq 50");
        replica_close(&shorter);

        RESTORE(&other);
        const char *why = NULL;
        is_int(fsm_state(other.fsm, &why), FSM_CATCHUP, "a log that is shorter but wrong at its end: CATCHUP first");
        is_int(feed_from(&other, &same), -EBADMSG, "... feeding it fails ...");
        is_int(fsm_state(other.fsm, &why), FSM_DIVERGED, "... DIVERGED, as its seq 20 is another entry");
        diag("why: %s", why);

        /* the genesis: the leader's log end as the group's start */
        struct fsm_mark m;
        fsm_mark_last(same.fsm, &m);
        struct replica_t g1, g2;
        replica_open(&g1, "genesis-empty");
        fsm_encode_genesis(&m, &cmd);
        is_int(apply(&g1, &cmd), 0, "a genesis applied on an empty log");
        is_int(fsm_state(g1.fsm, NULL), FSM_CATCHUP, "... which then fetches it (CATCHUP)");
        mk(&e, 60, "node1", 0, POST_ID(3, 60), "a 60");
        fsm_encode_batch(&e, 1, &later);
        apply(&g1, &later);
        raft_free(later.base);
        ok(fsm_waiting(g1.fsm) == 1, "... a command waits meanwhile ...");
        RESTORE(&g1);
        ok(fsm_waiting(g1.fsm) == 0 && fsm_state(g1.fsm, NULL) == FSM_CATCHUP,
           "... and a snapshot restored drops it (it covers it), the fetch goes on");
        replica_close(&empty);
        replica_open(&g2, "snap-empty");        /* holds the same 50 now */
        is_int(apply(&g2, &cmd), 0, "a genesis applied on the same log");
        is_int(fsm_state(g2.fsm, NULL), FSM_READY, "... READY");
        raft_free(cmd.base);
        fsm_encode_genesis(&(struct fsm_mark) { 0 }, &cmd);
        is_int(apply(&g2, &cmd), 0, "a second genesis (a later leader's) ...");
        is_int(fsm_state(g2.fsm, NULL), FSM_READY, "... changes nothing");
        raft_free(cmd.base);
        replica_close(&g1);
        replica_close(&g2);
        replica_close(&same);
        replica_close(&other);
        raft_free(snap[0].base);
        raft_free(snap);
}

/* --- unsynced applies, synced snapshots --------------------------------------------------------------------- */

/* File offset of seq in r's log. */
static long long offset_of(struct replica_t *r, uint64_t seq)
{
        struct chatlog_cursor cur;
        return chatlog_seek(r->log, seq, &cur) < 0 ? -1 : (long long) cur.off;
}

static void test_unsynced(void)
{
        struct replica_t a, ref;
        struct raft_buffer cmds[40], *snap;
        struct dchat_entry e;
        struct chatlog_recovery rec;
        unsigned n_snap;
        char text[64];
        int bad = 0;

        replica_open(&a, "unsynced");
        replica_open(&ref, "unsynced-ref");
        is_int(chatlog_set_unsynced(a.log), 0, "a group's chat log: appends unsynced");
        for (unsigned i = 0; i < 40; i++) {
                snprintf(text, sizeof text, "u %u", i + 1);
                mk(&e, i + 1, i % 2 ? "node2" : "node1", 0, POST_ID(3, i + 1), text);
                fsm_encode_batch(&e, 1, &cmds[i]);
        }
        uint64_t syncs = chatlog_syncs(a.log);
        for (unsigned i = 0; i < 30; i++)
                bad |= apply(&a, &cmds[i]) | apply(&ref, &cmds[i]);
        ok(!bad && chatlog_syncs(a.log) == syncs, "30 commands applied: no fdatasync");
        is_int(fsm_raft(a.fsm)->snapshot(fsm_raft(a.fsm), &snap, &n_snap), 0, "a snapshot ...");
        ok(chatlog_syncs(a.log) == syncs + 1, "... syncs the chat log first (libraft drops the commands it covers)");
        for (unsigned i = 30; i < 40; i++)
                bad |= apply(&a, &cmds[i]) | apply(&ref, &cmds[i]);
        long long hole = offset_of(&a, 34), after = offset_of(&a, 36);
        replica_close(&a);

        /* a power loss: seqs 34 and 35, written unsynced after the snapshot, never reached the disk */
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/chat.log", a.dir);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        static const char zeros[1024];
        ok(fd >= 0 && hole > 0 && after > hole && after - hole <= (long long) sizeof zeros &&
           pwrite(fd, zeros, (size_t) (after - hole), hole) == after - hole, "(seqs 34 and 35 zeroed: a hole)");
        if (fd >= 0)
                close(fd);
        mkdirs(a.dir, sizeof a.dir, "unsynced");
        ok(chatlog_open(a.dir, &a.log, &rec) == 0 && fsm_new(a.log, &a.fsm) == 0, "the replica starts again");
        ok(rec.unsynced_tail && rec.damage_found == 0 && chatlog_last_seq(a.log) == 33,
           "... its chat log cut at the hole (seq 33): a prefix, nothing quarantined");
        struct raft_buffer c = { raft_malloc(snap[0].len), snap[0].len };
        memcpy(c.base, snap[0].base, c.len);
        is_int(fsm_raft(a.fsm)->restore(fsm_raft(a.fsm), &c), 0, "libraft restores the snapshot (seq 30) ...");
        is_int(fsm_state(a.fsm, NULL), FSM_READY, "... READY: the log holds it");
        for (unsigned i = 30; i < 40; i++)
                bad |= apply(&a, &cmds[i]);
        ok(!bad, "... and replays the 10 commands after it");
        char *d1 = dump(a.log), *d2 = dump(ref.log);
        ok(!strcmp(d1, d2) && chatlog_last_seq(a.log) == 40, "... the same log as a replica that never crashed");
        free(d1);
        free(d2);
        for (unsigned i = 0; i < 40; i++)
                raft_free(cmds[i].base);
        raft_free(snap[0].base);
        raft_free(snap);
        replica_close(&a);
        replica_close(&ref);
}

/* --- libraft's fixture, with the real apply ---------------------------------------------------------------- */

#define N 3
static struct replica_t R[N];
static unsigned long applied_cbs, lost_cbs;

static void applied(struct raft_apply *req, int status, void *result)
{
        const struct fsm_result *res = result;
        if (status == 0 && res && res->n && res->results[0] == CHATLOG_STORED)
                applied_cbs++;
        else
                lost_cbs++;
        free(req);
}

static bool submit(struct raft_fixture *f, unsigned leader, unsigned i)
{
        struct dchat_entry e;
        struct raft_buffer b;
        char text[64];
        struct raft_apply *req = malloc(sizeof *req);

        snprintf(text, sizeof text, "fixture %u", i);
        /* fences grow with the index: every batch passes the fence check */
        mk(&e, 1000 + i, "node1", 0, POST_ID(1, i + 1), text);
        fsm_encode_batch(&e, 1, &b);
        if (raft_apply(raft_fixture_get(f, leader), req, &b, 1, applied) != 0) {
                raft_free(b.base);
                free(req);
                return false;
        }
        return true;
}

static void test_fixture(void)
{
        struct raft_fixture f;
        struct raft_configuration conf;
        unsigned i = 0;

        /* libraft 0.15's raft_fixture_initialize leaves f->servers as it finds it and
         * raft_fixture_grow reallocates it: garbage on the stack crashed it */
        memset(&f, 0, sizeof f);
        raft_fixture_initialize(&f);
        for (unsigned k = 0; k < N; k++) {
                char name[32];
                snprintf(name, sizeof name, "fixture-%u", k);
                replica_open(&R[k], name);
                raft_fixture_grow(&f, fsm_raft(R[k].fsm));
        }
        raft_fixture_configuration(&f, N, &conf);
        raft_fixture_bootstrap(&f, &conf);
        raft_configuration_close(&conf);
        raft_fixture_start(&f);
        for (unsigned k = 0; k < N; k++)
                f.servers[k].tracer.enabled = false;
        for (unsigned k = 0; k < N; k++) {
                raft_set_pre_vote(raft_fixture_get(&f, k), true);
                raft_set_snapshot_threshold(raft_fixture_get(&f, k), 16);
                raft_set_snapshot_trailing(raft_fixture_get(&f, k), 4);
        }
        ok(raft_fixture_step_until_has_leader(&f, 10000), "fixture: a leader is elected");

        /* 40 batches through the first leader */
        unsigned l = raft_fixture_leader_index(&f);
        for (; i < 40; i++)
                (void) submit(&f, l, i);
        raft_fixture_step_until_applied(&f, N, raft_last_index(raft_fixture_get(&f, l)), 20000);
        is_int(applied_cbs, 40, "fixture: 40 batches applied on the leader");

        /* the leader is cut off from the others: what it takes now is never committed */
        for (unsigned k = 0; k < N; k++)
                if (k != l)
                        raft_fixture_disconnect(&f, l, k), raft_fixture_disconnect(&f, k, l);
        for (unsigned j = 0; j < 5; j++)
                (void) submit(&f, l, 1000 + j);
        raft_fixture_step_until_elapsed(&f, 3000);
        unsigned l2 = N;
        for (int t = 0; t < 100 && l2 == N; t++) {
                raft_fixture_step_until_elapsed(&f, 100);
                for (unsigned k = 0; k < N; k++)
                        if (k != l && raft_state(raft_fixture_get(&f, k)) == RAFT_LEADER)
                                l2 = k;
        }
        ok(l2 != N, "fixture: the majority elects another leader");
        if (l2 == N)
                return;
        for (; i < 60; i++)
                (void) submit(&f, l2, i);
        raft_fixture_step_until_applied(&f, l2, raft_last_index(raft_fixture_get(&f, l2)), 20000);
        for (unsigned k = 0; k < N; k++)
                if (k != l)
                        raft_fixture_reconnect(&f, l, k), raft_fixture_reconnect(&f, k, l);
        /* the new leader is killed, the old one comes back among the others */
        raft_fixture_kill(&f, l2);
        ok(raft_fixture_step_until_has_leader(&f, 20000), "fixture: after the second leader's death, another");
        unsigned l3 = raft_fixture_leader_index(&f);
        for (; i < 80; i++)
                (void) submit(&f, l3, i);
        raft_fixture_step_until_applied(&f, l3, raft_last_index(raft_fixture_get(&f, l3)), 20000);
        raft_fixture_revive(&f, l2);
        /* it comes back behind a snapshot: it fetches what it lacks (catchup.c's job, done here by hand) */
        unsigned caught = 0;
        raft_index want = raft_last_index(raft_fixture_get(&f, l3));
        for (int t = 0; t < 400; t++) {
                bool all = true;
                raft_fixture_step_until_elapsed(&f, 50);
                for (unsigned k = 0; k < N; k++) {
                        if (fsm_state(R[k].fsm, NULL) == FSM_CATCHUP && feed_from(&R[k], &R[l3]) >= 0)
                                caught++;
                        all &= raft_last_applied(raft_fixture_get(&f, k)) >= want;
                }
                if (all)
                        break;
        }
        diag("fixture: %u replica(s) caught up from a snapshot", caught);

        is_int(lost_cbs, 5, "fixture: the 5 batches taken by the cut-off leader were never applied (reported lost)");
        is_int(applied_cbs, 80, "fixture: 80 batches applied on their leaders");
        char *d0 = dump(R[0].log);
        bool same = true;
        for (unsigned k = 1; k < N; k++) {
                char *dk = dump(R[k].log);
                same &= !strcmp(d0, dk);
                free(dk);
        }
        ok(same, "fixture: all three replicas hold the same log");
        is_int(chatlog_last_seq(R[0].log), 80, "fixture: 80 entries, each once");
        ok(strstr(d0, "fixture 1000") == NULL, "fixture: none of the cut-off leader's batches is in it");
        free(d0);
        raft_fixture_close(&f);
        for (unsigned k = 0; k < N; k++)
                replica_close(&R[k]);
}

/* --- libraft's libuv storage: a restart keeps every committed batch ------------------------------------------ */

static struct raft uraft;
static struct raft_io uio;
static struct raft_uv_transport utr;
static uv_loop_t uloop;
static bool uclosed;

static void uclose_cb(struct raft *r)
{
        (void) r;
        uclosed = true;
}

/* One server, its own group: libraft with its libuv storage in dir and our state machine. */
static int ustart(const char *dir, struct replica_t *rep, bool bootstrap)
{
        struct raft_configuration conf;
        int r;

        uv_loop_init(&uloop);
        raft_uv_tcp_init(&utr, &uloop);
        r = raft_uv_init(&uio, &uloop, dir, &utr);
        if (r == 0)
                r = raft_init(&uraft, &uio, fsm_raft(rep->fsm), 1, "127.0.0.1:1");
        if (r == 0 && bootstrap) {
                raft_configuration_init(&conf);
                raft_configuration_add(&conf, 1, "127.0.0.1:1", RAFT_VOTER);
                r = raft_bootstrap(&uraft, &conf);
                raft_configuration_close(&conf);
        }
        raft_set_election_timeout(&uraft, 50);
        raft_set_heartbeat_timeout(&uraft, 10);
        if (r == 0)
                r = raft_start(&uraft);
        return r;
}

static void ustop(void)
{
        uclosed = false;
        raft_close(&uraft, uclose_cb);
        for (int k = 0; k < 2000 && (!uclosed || uv_loop_alive(&uloop)); k++)
                uv_run(&uloop, UV_RUN_NOWAIT), usleep(500);
        raft_uv_close(&uio);
        raft_uv_tcp_close(&utr);
        uv_run(&uloop, UV_RUN_NOWAIT);
        uv_loop_close(&uloop);
}

static unsigned long uapplied;
static void uapplied_cb(struct raft_apply *req, int status, void *result)
{
        (void) result;
        uapplied += status == 0;
        free(req);
}

static void test_uv_restart(void)
{
        char rdir[300];
        struct replica_t rep;
        struct dchat_entry e;
        char text[64];

        mkdirs(rdir, sizeof rdir, "uv-raft");
        replica_open(&rep, "uv-log");
        if (!ok(ustart(rdir, &rep, true) == 0, "libuv storage: a group of one starts")) {
                replica_close(&rep);
                return;
        }
        for (int k = 0; k < 4000 && raft_state(&uraft) != RAFT_LEADER; k++)
                uv_run(&uloop, UV_RUN_NOWAIT), usleep(500);
        ok(raft_state(&uraft) == RAFT_LEADER, "libuv storage: it leads itself");
        for (unsigned i = 0; i < 24; i++) {
                struct raft_buffer b;
                struct raft_apply *req = malloc(sizeof *req);
                snprintf(text, sizeof text, "%.*s", (int) (i % 8 + 1), "12345678");      /* lengths of every residue */
                mk(&e, 100 + i, "node1", 0, POST_ID(2, i + 1), text);
                fsm_encode_batch(&e, 1, &b);
                if (raft_apply(&uraft, req, &b, 1, uapplied_cb) != 0) {
                        raft_free(b.base);
                        free(req);
                }
        }
        for (int k = 0; k < 8000 && uapplied < 24; k++)
                uv_run(&uloop, UV_RUN_NOWAIT), usleep(250);
        is_int(uapplied, 24, "libuv storage: 24 batches of every length mod 8 committed and applied");
        raft_index last = raft_last_index(&uraft);
        ustop();
        replica_close(&rep);

        /* a restart: libraft loads its log and replays it into a fresh state machine and an empty chat log */
        char empty_log[300];
        snprintf(empty_log, sizeof empty_log, "uv-log-2");
        replica_open(&rep, empty_log);
        if (!ok(ustart(rdir, &rep, false) == 0, "libuv storage: it starts again from its files"))
                return;
        for (int k = 0; k < 8000 && chatlog_last_seq(rep.log) < 24; k++)
                uv_run(&uloop, UV_RUN_NOWAIT), usleep(250);
        ok(raft_last_index(&uraft) >= last, "libuv storage: its log is whole after the restart (index %llu >= %llu)",
           (unsigned long long) raft_last_index(&uraft), (unsigned long long) last);
        is_int(chatlog_last_seq(rep.log), 24, "libuv storage: replayed into an empty chat log, all 24 posts are there");
        ustop();
        replica_close(&rep);
}

int main(void)
{
        plan_no_plan();
        snprintf(top, sizeof top, "/tmp/test-fsm.XXXXXX");
        if (!mkdtemp(top))
                bail_out("mkdtemp");
        test_commands();
        test_old_commands();
        test_replay();
        test_snapshots();
        test_unsynced();
        test_fixture();
        test_uv_restart();
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", top);
        (void) !system(cmd);
        return done_testing();
}
