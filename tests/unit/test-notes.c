/* SPDX-License-Identifier: MIT */
/*
 * test-notes.c — the shared notes' store (daemon/notes.c) and one server's
 * file of it (daemon/notes-file.c): writes and versions, the fence of
 * locked writes and its bounds, NOTE_IF_VERSION, the lost update the lock
 * prevents (and the one an unlocked increment makes), each node's writes
 * once (a copy gets the first answer, a refused one too), replay of a
 * random sequence and of a snapshot and the rest, the limits and invalid
 * writes, the serial form (round trip, every truncation, bit flips, each
 * check of the decoder), and the file (round trip, damage left in place
 * and reported, no temp file behind, a failed fstat not taken for damage:
 * this file defines fstat, which notes-file.c then calls instead of
 * libc's).  The wire form of NOTE and NOTE_REPLY is tested in test-proto.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "notes.h"
#include "tap.h"

/* --- helpers --------------------------------------------------------------------- */

static struct note_write W(uint8_t op, uint8_t flags, const char *key, const char *value, const char *node,
                           uint64_t op_id, uint64_t fence, uint32_t idx)
{
        return (struct note_write) {
                .op = op, .flags = flags, .key = key, .key_len = key ? strlen(key) : 0, .value = value,
                .len = value ? strlen(value) : 0, .fence = fence, .fence_idx = idx, .node = node, .op_id = op_id,
                .time = 1700000000 + (int64_t) op_id,
        };
}

/* Applies w; its outcome (and the version it names into *version). */
static enum note_res apply(struct notes *t, const struct note_write *w, uint64_t *version)
{
        struct note_outcome out;

        if (notes_apply(t, w, &out) < 0) {
                diag("notes_apply: out of memory");
                return NOTE_R_NOMEM;
        }
        if (version)
                *version = out.version;
        return out.res;
}

static enum note_res set(struct notes *t, const char *key, const char *value, const char *node, uint64_t op_id,
                         uint64_t fence, uint64_t *version)
{
        struct note_write w = W(NOTE_SET, 0, key, value, node, op_id, fence, 0);
        return apply(t, &w, version);
}

static const char *value_of(const struct notes *t, const char *key)
{
        const struct note *n = notes_find(t, key, strlen(key));
        return n ? n->value : NULL;
}

static uint64_t version_of(const struct notes *t, const char *key)
{
        const struct note *n = notes_find(t, key, strlen(key));
        return n ? n->version : 0;
}

static const struct note_writer *writer(const struct notes *t, const char *node)
{
        for (unsigned i = 0; i < t->n_w; i++)
                if (!strcmp(t->w[i].node, node))
                        return &t->w[i];
        return NULL;
}

/* The store's serial form, into b (reset first). */
static void snap(struct wbuf *b, const struct notes *t)
{
        wbuf_reset(b);
        notes_put(b, t);
        if (b->failed)
                abort();
}

static bool same_bytes(const struct wbuf *a, const struct wbuf *b)
{
        return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

/* The store unchanged since s was taken of it (its writers too). */
static bool unchanged(const struct notes *t, const struct wbuf *s)
{
        struct wbuf b = {0};
        snap(&b, t);
        bool same = same_bytes(&b, s);
        wbuf_free(&b);
        return same;
}

/* The store's notes (not its writers) unchanged: its version, fence and every note. */
static bool notes_unchanged(const struct notes *t, const struct notes *before_copy)
{
        if (t->version != before_copy->version || t->fence != before_copy->fence ||
            strcmp(t->fence_node, before_copy->fence_node) || t->fence_idx != before_copy->fence_idx ||
            t->n != before_copy->n)
                return false;
        for (unsigned i = 0; i < t->n; i++)
                if (strcmp(t->v[i].key, before_copy->v[i].key) || strcmp(t->v[i].value, before_copy->v[i].value) ||
                    t->v[i].version != before_copy->v[i].version || strcmp(t->v[i].node, before_copy->v[i].node))
                        return false;
        return true;
}

/* A deep copy through the serial form. */
static void copy(struct notes *dst, const struct notes *src)
{
        struct wbuf b = {0};
        snap(&b, src);
        struct rbuf r = { .p = b.data, .len = b.len };
        if (notes_get(&r, dst) < 0 || r.off != r.len)
                abort();
        wbuf_free(&b);
}

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint64_t rnd(void)
{
        /* xorshift64*: the same sequence on every run */
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * UINT64_C(2685821657736338717);
}

static unsigned below(unsigned n)
{
        return (unsigned) (rnd() % n);
}

/* --- writes, versions ------------------------------------------------------------ */

static void test_basics(void)
{
        struct notes t;
        uint64_t v = 0;

        notes_init(&t);
        ok(notes_find(&t, "a", 1) == NULL && t.version == 0, "an empty store has no notes, version 0");
        is_int(set(&t, "a", "one", "n1", 1, 10, &v), NOTE_R_OK, "SET a: stored");
        is_int(v, 1, "... as version 1 (the store's first write)");
        const struct note *n = notes_find(&t, "a", 1);
        ok(n && !strcmp(n->value, "one") && n->len == 3 && n->version == 1 && !strcmp(n->node, "n1") &&
           n->time == 1700000001, "find a: its value, length, version, writer and time");
        ok(notes_find(&t, "a", 0) == NULL && notes_find(&t, "ab", 2) == NULL && notes_find(&t, "b", 1) == NULL,
           "find: no other key matches (a prefix, a longer key, another)");
        ok(notes_find(&t, "ab", 1) == n, "find: the key is n bytes of key, not NUL-terminated");

        is_int(set(&t, "a", "two", "n1", 2, 11, &v), NOTE_R_OK, "SET a again: stored");
        is_int(v, 2, "... overwriting bumps its version to 2");
        is_str(value_of(&t, "a"), "two", "... and its value");
        is_int(t.n, 1, "... still one note");
        is_int(set(&t, "b", "bee", "n2", 1, 12, &v), NOTE_R_OK, "SET b by another node");
        ok(v == 3 && t.version == 3 && version_of(&t, "a") == 2 && version_of(&t, "b") == 3,
           "versions are the store's write count (a 2, b 3, store 3)");
        is_int(set(&t, "0first", "x", "n2", 2, 13, &v), NOTE_R_OK, "SET a key that sorts first");
        ok(t.n == 3 && !strcmp(t.v[0].key, "0first") && !strcmp(t.v[1].key, "a") && !strcmp(t.v[2].key, "b"),
           "notes are kept sorted by key");

        struct note_write d = W(NOTE_DEL, 0, "a", NULL, "n1", 3, 14, 0);
        is_int(apply(&t, &d, &v), NOTE_R_OK, "DEL a: done");
        ok(v == 5 && t.version == 5, "... a write: version 5");
        ok(notes_find(&t, "a", 1) == NULL && t.n == 2, "... a is gone");
        ok(value_of(&t, "b") && value_of(&t, "0first"), "... the others stay");

        struct wbuf before = {0};
        snap(&before, &t);
        d = W(NOTE_DEL, 0, "a", NULL, "n1", 4, 15, 0);
        is_int(apply(&t, &d, &v), NOTE_R_ABSENT, "DEL of an absent note: ABSENT");
        ok(t.version == 5 && t.n == 2, "... nothing written (version still 5)");
        ok(t.fence == 14, "... and the fence did not move (a refused write's is not taken)");
        const struct note_writer *wr = writer(&t, "n1");
        ok(wr && wr->op_id == 4 && wr->res == NOTE_R_ABSENT, "... recorded as n1's last write, with its outcome");
        ok(!unchanged(&t, &before), "... (so the store's serial form changed: the writer's record)");
        is_str(note_res_name(NOTE_R_ABSENT), "refused: no such note", "note_res_name");
        is_str(note_res_name(_NOTE_R_MAX), "?", "note_res_name of an unknown outcome");
        for (int r = 0; r < _NOTE_R_MAX; r++)
                if (!note_res_name(r))
                        ok(0, "note_res_name(%d) missing", r);
        wbuf_free(&before);
        notes_clear(&t);
        ok(t.n == 0 && t.v == NULL && t.w == NULL && t.version == 0, "notes_clear empties the store");
}

/* --- the fence ----------------------------------------------------------------------- */

static void test_fence(void)
{
        struct notes t, c;
        uint64_t v;

        notes_init(&t);
        struct note_write w = W(NOTE_SET, 0, "k", "v0", "n2", 1, 100, 5);
        is_int(apply(&t, &w, &v), NOTE_R_OK, "fence: a locked write at (100, n2, 5)");
        ok(t.fence == 100 && !strcmp(t.fence_node, "n2") && t.fence_idx == 5, "fence: taken as the last");

        static const struct { uint64_t l; const char *node; uint32_t idx; const char *what; } low[] = {
                { 100, "n2", 5, "equal" },
                { 99, "n9", 99, "a lower Lamport time (higher node and index)" },
                { 100, "n1", 99, "the same time, a lower node" },
                { 100, "n2", 4, "the same time and node, a lower index" },
                { 0, "n2", 0, "zero" },
        };
        uint64_t op = 1;
        for (size_t i = 0; i < sizeof low / sizeof low[0]; i++) {
                notes_init(&c);
                copy(&c, &t);
                w = W(NOTE_SET, 0, "k", "changed", low[i].node, ++op, low[i].l, low[i].idx);
                is_int(apply(&t, &w, &v), NOTE_R_FENCED, "fence %s: FENCED", low[i].what);
                ok(notes_unchanged(&t, &c) && !strcmp(value_of(&t, "k"), "v0"), "... nothing changed");
                notes_clear(&c);
        }
        w = W(NOTE_DEL, 0, "k", NULL, "n1", ++op, 100, 5);
        is_int(apply(&t, &w, &v), NOTE_R_FENCED, "fence: a DEL with an equal fence: FENCED");
        ok(value_of(&t, "k") != NULL, "... k is still there");

        static const struct { uint64_t l; const char *node; uint32_t idx; const char *what; } high[] = {
                { 100, "n2", 6, "the same time and node, a higher index" },
                { 100, "n3", 0, "the same time, a higher node (lower index)" },
                { 101, "n1", 0, "a higher time (lower node and index)" },
        };
        for (size_t i = 0; i < sizeof high / sizeof high[0]; i++) {
                w = W(NOTE_SET, 0, "k", high[i].what, high[i].node, ++op, high[i].l, high[i].idx);
                is_int(apply(&t, &w, &v), NOTE_R_OK, "fence %s: stored", high[i].what);
                ok(t.fence == high[i].l && !strcmp(t.fence_node, high[i].node) && t.fence_idx == high[i].idx,
                   "... and is the last fence now");
        }

        /* bounds */
        notes_init(&c);
        copy(&c, &t);
        w = W(NOTE_SET, 0, "k", "far", "n1", ++op, 101 + DCHAT_CLOCK_JUMP_MAX + 1, 0);
        is_int(apply(&t, &w, &v), NOTE_R_BOUNDS, "bounds: a fence more than DCHAT_CLOCK_JUMP_MAX above: BOUNDS");
        ok(notes_unchanged(&t, &c), "... nothing changed");
        w = W(NOTE_SET, 0, "k", "far", "n1", ++op, DCHAT_CLOCK_MAX + 1, 0);
        is_int(apply(&t, &w, &v), NOTE_R_BOUNDS, "bounds: a fence above DCHAT_CLOCK_MAX: BOUNDS");
        w = W(NOTE_SET, 0, "k", "far", "n1", ++op, UINT64_MAX, 0);
        is_int(apply(&t, &w, &v), NOTE_R_BOUNDS, "bounds: a fence of 2^64-1: BOUNDS");
        ok(notes_unchanged(&t, &c), "... nothing changed");
        notes_clear(&c);
        w = W(NOTE_SET, 0, "k", "far", "n1", ++op, 101 + DCHAT_CLOCK_JUMP_MAX, 0);
        is_int(apply(&t, &w, &v), NOTE_R_OK, "bounds: exactly DCHAT_CLOCK_JUMP_MAX above: stored");
        notes_clear(&t);

        notes_init(&t);
        w = W(NOTE_SET, 0, "k", "v", "n1", 1, DCHAT_CLOCK_MAX, 0);
        is_int(apply(&t, &w, &v), NOTE_R_OK, "bounds: no fence yet: DCHAT_CLOCK_MAX itself is stored");
        w = W(NOTE_SET, 0, "k", "v", "n2", 1, DCHAT_CLOCK_MAX + 1, 0);
        is_int(apply(&t, &w, &v), NOTE_R_BOUNDS, "bounds: ... and one above it is not");
        notes_clear(&t);

        /* unlocked writes: no fence check, and they do not move it */
        notes_init(&t);
        w = W(NOTE_SET, 0, "k", "locked", "n2", 1, 500, 3);
        apply(&t, &w, &v);
        static const uint64_t any[] = { 0, 499, 500, DCHAT_CLOCK_MAX + 1, UINT64_MAX };
        for (size_t i = 0; i < sizeof any / sizeof any[0]; i++) {
                char val[32];
                snprintf(val, sizeof val, "unlocked %zu", i);
                w = W(NOTE_SET, NOTE_UNLOCKED, "k", val, "n1", 1 + i, any[i], 0);
                is_int(apply(&t, &w, &v), NOTE_R_OK, "unlocked: fence %" PRIu64 " not checked: stored", any[i]);
                ok(t.fence == 500 && !strcmp(t.fence_node, "n2") && t.fence_idx == 3 && v == 2 + i &&
                   !strcmp(value_of(&t, "k"), val), "... written (version %zu), the fence not moved", 2 + i);
        }
        w = W(NOTE_DEL, NOTE_UNLOCKED, "k", NULL, "n1", 10, 0, 0);
        is_int(apply(&t, &w, &v), NOTE_R_OK, "unlocked: a DEL with fence 0: done");
        ok(t.fence == 500 && notes_find(&t, "k", 1) == NULL, "... the fence not moved");
        w = W(NOTE_SET, 0, "k", "locked", "n2", 2, 500, 4);
        is_int(apply(&t, &w, &v), NOTE_R_OK, "the next locked write is checked against the last locked one only");
        notes_clear(&t);
}

/* --- NOTE_IF_VERSION ------------------------------------------------------------------ */

static void test_if_version(void)
{
        struct notes t;
        uint64_t v, l = 1;

        notes_init(&t);
        struct note_write w = W(NOTE_SET, NOTE_IF_VERSION, "c", "1", "n1", 1, l++, 0);
        w.expect = 0;
        is_int(apply(&t, &w, &v), NOTE_R_OK, "IF_VERSION: expect 0 for an absent note: stored");
        uint64_t v1 = v;
        w = W(NOTE_SET, NOTE_IF_VERSION, "c", "2", "n1", 2, l++, 0);
        w.expect = v1;
        is_int(apply(&t, &w, &v), NOTE_R_OK, "IF_VERSION: expect the version it has: stored");
        uint64_t v2 = v;
        ok(v2 == v1 + 1, "... as the next version");

        set(&t, "c", "9", "n2", 1, l++, &v);    /* a write in between */
        uint64_t v3 = v;
        w = W(NOTE_SET, NOTE_IF_VERSION, "c", "3", "n1", 3, l++, 0);
        w.expect = v2;
        is_int(apply(&t, &w, &v), NOTE_R_CHANGED, "IF_VERSION: a write in between: CHANGED");
        is_int(v, v3, "... out.version is the note's version now");
        ok(!strcmp(value_of(&t, "c"), "9") && t.version == v3, "... nothing written");

        w = W(NOTE_SET, NOTE_IF_VERSION, "c", "3", "n1", 4, l++, 0);
        w.expect = 0;
        is_int(apply(&t, &w, &v), NOTE_R_CHANGED, "IF_VERSION: expect 0 (absent) but it exists: CHANGED");
        is_int(v, v3, "... with its version");
        w = W(NOTE_SET, NOTE_IF_VERSION, "nope", "x", "n1", 5, l++, 0);
        w.expect = v3;
        is_int(apply(&t, &w, &v), NOTE_R_CHANGED, "IF_VERSION: expect a version of an absent note: CHANGED");
        is_int(v, 0, "... out.version 0: there is none");
        ok(notes_find(&t, "nope", 4) == NULL, "... not created");

        w = W(NOTE_DEL, NOTE_IF_VERSION, "c", NULL, "n1", 6, l++, 0);
        w.expect = v2;
        is_int(apply(&t, &w, &v), NOTE_R_CHANGED, "IF_VERSION: a DEL expecting an old version: CHANGED");
        ok(value_of(&t, "c") != NULL, "... not deleted");
        w = W(NOTE_DEL, NOTE_IF_VERSION, "c", NULL, "n1", 7, l++, 0);
        w.expect = v3;
        is_int(apply(&t, &w, &v), NOTE_R_OK, "IF_VERSION: a DEL expecting the version it has: done");
        w = W(NOTE_DEL, NOTE_IF_VERSION, "c", NULL, "n1", 8, l++, 0);
        w.expect = 0;
        is_int(apply(&t, &w, &v), NOTE_R_ABSENT, "IF_VERSION: a DEL of an absent note expecting 0: ABSENT");
        notes_clear(&t);
}

/* --- the race the lock prevents ------------------------------------------------------ */

struct reader {
        const char *node;
        uint64_t op_id;
        long value;
        uint64_t version;
};

static void rd(struct reader *r, const struct notes *t, const char *key)
{
        const struct note *n = notes_find(t, key, strlen(key));
        r->value = n ? strtol(n->value, NULL, 10) : 0;
        r->version = n ? n->version : 0;
}

static enum note_res incr_write(struct notes *t, struct reader *r, const char *key, uint8_t flags, uint64_t fence)
{
        char buf[32];
        snprintf(buf, sizeof buf, "%ld", r->value + 1);
        struct note_write w = W(NOTE_SET, flags, key, buf, r->node, ++r->op_id, fence, 0);
        w.expect = r->version;
        return apply(t, &w, NULL);
}

static void test_race(void)
{
        struct notes t;
        struct reader a = { "n1", 0, 0, 0 }, b = { "n2", 0, 0, 0 };

        /* with the version check (and the fence): the second write is refused */
        notes_init(&t);
        set(&t, "counter", "0", "n3", 1, 1, NULL);
        rd(&a, &t, "counter");
        rd(&b, &t, "counter");
        ok(a.version == b.version && a.value == 0, "race: both nodes read version %" PRIu64 ", value 0", a.version);
        is_int(incr_write(&t, &a, "counter", NOTE_IF_VERSION, 10), NOTE_R_OK, "race, checked: the first write: stored");
        is_int(incr_write(&t, &b, "counter", NOTE_IF_VERSION, 11), NOTE_R_CHANGED,
               "race, checked: the second (same version read): CHANGED");
        is_str(value_of(&t, "counter"), "1", "race, checked: 1 after one increment done, one refused");
        rd(&b, &t, "counter");
        is_int(incr_write(&t, &b, "counter", NOTE_IF_VERSION, 12), NOTE_R_OK, "race, checked: the refused one read again: stored");
        is_str(value_of(&t, "counter"), "2", "race, checked: 2: no update lost");
        notes_clear(&t);

        /* unlocked: both are stored and one increment is lost */
        notes_init(&t);
        a.op_id = b.op_id = 0;
        set(&t, "counter", "0", "n3", 1, 1, NULL);
        rd(&a, &t, "counter");
        rd(&b, &t, "counter");
        is_int(incr_write(&t, &a, "counter", NOTE_UNLOCKED, 0), NOTE_R_OK, "race, unlocked: the first write: stored");
        is_int(incr_write(&t, &b, "counter", NOTE_UNLOCKED, 0), NOTE_R_OK, "race, unlocked: the second: stored too");
        is_str(value_of(&t, "counter"), "1", "race, unlocked: 1 after two increments: one lost");
        notes_clear(&t);

        /* many: two nodes, 500 increments each, reads and writes interleaved at random */
        for (int locked = 1; locked >= 0; locked--) {
                struct reader r[2] = { { "n1", 0, 0, 0 }, { "n2", 0, 0, 0 } };
                bool has_read[2] = { false, false };
                unsigned done[2] = { 0, 0 }, refused = 0, steps = 0;
                uint64_t fence = 1;
                notes_init(&t);
                while ((done[0] < 500 || done[1] < 500) && steps++ < 100000) {
                        unsigned k = below(2);
                        if (done[k] == 500)
                                k ^= 1;
                        if (!has_read[k]) {
                                rd(&r[k], &t, "c");
                                has_read[k] = true;
                                continue;
                        }
                        enum note_res res = incr_write(&t, &r[k], "c", locked ? NOTE_IF_VERSION : NOTE_UNLOCKED,
                                                       locked ? ++fence : 0);
                        has_read[k] = false;
                        if (res == NOTE_R_OK)
                                done[k]++;
                        else
                                refused++;
                }
                const char *c = value_of(&t, "c");
                long got = c ? strtol(c, NULL, 10) : -1;
                if (locked) {
                        is_int(got, 1000, "race, checked: 2 x 500 increments interleaved give 1000 "
                               "(%u refused and read again)", refused);
                        ok(refused > 0, "race, checked: ... and some were refused (the race happened)");
                } else {
                        ok(got < 1000 && got > 0, "race, unlocked: 2 x 500 increments interleaved give %ld < 1000 "
                           "(updates lost)", got);
                }
                notes_clear(&t);
        }
}

/* --- each write once ----------------------------------------------------------------- */

static void test_once(void)
{
        struct notes t;
        struct wbuf before = {0};
        uint64_t v, v0;

        notes_init(&t);
        is_int(set(&t, "k", "first", "n1", 7, 10, &v0), NOTE_R_OK, "once: n1's op 7 stored");
        snap(&before, &t);
        is_int(set(&t, "k", "first", "n1", 7, 10, &v), NOTE_R_DUPLICATE, "once: the same write again: DUPLICATE");
        is_int(v, v0, "... with the version it was stored as");
        ok(unchanged(&t, &before), "... the store unchanged (its serial form the same bytes)");
        is_int(set(&t, "k", "other", "n1", 7, 99, &v), NOTE_R_DUPLICATE,
               "once: another write under the same op id: DUPLICATE (an op id names one write)");
        ok(unchanged(&t, &before) && !strcmp(value_of(&t, "k"), "first"), "... and not written");
        is_int(set(&t, "k", "first", "n1", 6, 11, &v), NOTE_R_STALE, "once: an op id below n1's last: STALE");
        ok(unchanged(&t, &before), "... the store unchanged");
        is_int(set(&t, "k", "first", "n1", 0, 12, &v), NOTE_R_STALE, "once: op id 0 after 7: STALE");
        is_int(set(&t, "k", "same", "n2", 7, 11, &v), NOTE_R_OK, "once: op ids are per node (n2's op 7 is another)");

        /* a refused write said again is refused again, though the store changed meanwhile */
        set(&t, "k2", "there", "n2", 8, 12, NULL);
        struct note_write w = W(NOTE_SET, NOTE_IF_VERSION, "k2", "mine", "n1", 8, 13, 0);
        w.expect = 0;
        uint64_t cv;
        is_int(apply(&t, &w, &cv), NOTE_R_CHANGED, "once: n1's op 8 expects k2 absent, it exists: CHANGED");
        struct note_write d = W(NOTE_DEL, 0, "k2", NULL, "n2", 9, 14, 0);
        is_int(apply(&t, &d, NULL), NOTE_R_OK, "once: then n2 deletes k2");
        snap(&before, &t);
        is_int(apply(&t, &w, &v), NOTE_R_CHANGED, "once: n1's op 8 again: CHANGED again (now k2 is absent)");
        is_int(v, cv, "... with the same version as the first answer");
        ok(notes_find(&t, "k2", 2) == NULL && unchanged(&t, &before), "... nothing written");

        d = W(NOTE_DEL, 0, "k3", NULL, "n1", 9, 15, 0);
        is_int(apply(&t, &d, NULL), NOTE_R_ABSENT, "once: n1's op 9 deletes an absent k3: ABSENT");
        set(&t, "k3", "now", "n2", 10, 16, NULL);
        snap(&before, &t);
        is_int(apply(&t, &d, NULL), NOTE_R_ABSENT, "once: op 9 again, k3 now exists: ABSENT again");
        ok(!strcmp(value_of(&t, "k3"), "now") && unchanged(&t, &before), "... k3 not deleted");

        w = W(NOTE_SET, 0, "k4", "x", "n1", 10, 16, 0);        /* n2 wrote (16, n2, 0) */
        is_int(apply(&t, &w, NULL), NOTE_R_FENCED, "once: n1's op 10 fenced");
        set(&t, "k4", "y", "n2", 11, 1, NULL);                  /* fenced too: the fence stays (16, n2) */
        snap(&before, &t);
        is_int(apply(&t, &w, NULL), NOTE_R_FENCED, "once: op 10 again: FENCED again");
        ok(unchanged(&t, &before), "... nothing changed");

        w = W(NOTE_SET, 0, "k5", "x", "n1", 11, DCHAT_CLOCK_MAX + 5, 0);
        is_int(apply(&t, &w, NULL), NOTE_R_BOUNDS, "once: n1's op 11 out of bounds");
        is_int(apply(&t, &w, NULL), NOTE_R_BOUNDS, "once: ... again: BOUNDS again");

        /* an older op after a newer one, even one that was stored: STALE (not its old answer) */
        is_int(set(&t, "k", "first", "n1", 7, 10, &v), NOTE_R_STALE,
               "once: op 7 (stored) after op 11: STALE, nothing done");
        wbuf_free(&before);
        notes_clear(&t);
}

/* --- replay ------------------------------------------------------------------------- */

#define SEQ_N   2000

struct seq_write {
        struct note_write w;
        char key[DCHAT_KEY_MAX + 2];
        char value[48];
};

static const char *const seq_nodes[] = { "n1", "n2", "n3" };

/* A random sequence of writes from 3 nodes, made against a store that applies it as it goes (so that
 * some versions expected are right); copies, late copies, invalid and out-of-bounds writes among them. */
static void make_seq(struct seq_write *s, size_t n, unsigned *counts)
{
        struct notes t;
        uint64_t op[3] = { 0, 0, 0 }, lamport = 1;
        static const char *const keys[] = { "a", "b", "c", "d", "e/f", "g:h", "i.j", "k-l", "m_n", "Z" };

        notes_init(&t);
        for (size_t i = 0; i < n; i++) {
                struct seq_write *x = &s[i];
                unsigned k = below(3), kind = below(100);
                if (i > 10 && kind < 6) {
                        /* a copy of an earlier write (its node's last or an older one) */
                        *x = s[i - 1 - below(i > 20 ? 20 : (unsigned) i - 1)];
                } else {
                        snprintf(x->key, sizeof x->key, "%s", keys[below(10)]);
                        snprintf(x->value, sizeof x->value, "v%zu-%s", i, seq_nodes[k]);
                        uint8_t o = below(10) < 7 ? NOTE_SET : NOTE_DEL;
                        uint8_t flags = 0;
                        unsigned f = below(10);
                        if (f < 2)
                                flags = NOTE_UNLOCKED;
                        else if (f < 6)
                                flags = NOTE_IF_VERSION;
                        /* mostly increasing fences, some behind (fenced), a few out of bounds */
                        uint64_t fence = below(10) < 8 ? (lamport += 1 + below(3)) : lamport - below(5);
                        if (kind >= 98)
                                fence = lamport + DCHAT_CLOCK_JUMP_MAX + 1;
                        x->w = W(o, flags, x->key, x->value, seq_nodes[k], ++op[k], fence, below(4));
                        if (kind >= 6 && kind < 8)
                                x->w.key_len = 0;       /* invalid */
                        if (flags & NOTE_IF_VERSION) {
                                const struct note *nt = notes_find(&t, x->key, strlen(x->key));
                                x->w.expect = below(4) ? (nt ? nt->version : 0) : below((unsigned) t.version + 1);
                        }
                        x->w.time = 1700000000 + (int64_t) i;
                }
                x->w.key = x->key;
                x->w.value = x->value;
                enum note_res r = apply(&t, &x->w, NULL);
                if (counts && r < _NOTE_R_MAX)
                        counts[r]++;
        }
        notes_clear(&t);
}

static void apply_seq(struct notes *t, const struct seq_write *s, size_t from, size_t to)
{
        for (size_t i = from; i < to; i++)
                if (apply(t, &s[i].w, NULL) == NOTE_R_NOMEM)
                        abort();
}

static void test_replay(void)
{
        static struct seq_write s[SEQ_N];
        unsigned counts[_NOTE_R_MAX] = {0};
        struct notes a, b, c;
        struct wbuf sa = {0}, sb = {0}, sc = {0};

        make_seq(s, SEQ_N, counts);
        diag("replay: %u stored, %u copies, %u stale, %u fenced, %u changed, %u absent, %u invalid, %u bounds",
             counts[NOTE_R_OK], counts[NOTE_R_DUPLICATE], counts[NOTE_R_STALE], counts[NOTE_R_FENCED],
             counts[NOTE_R_CHANGED], counts[NOTE_R_ABSENT], counts[NOTE_R_INVALID], counts[NOTE_R_BOUNDS]);
        ok(counts[NOTE_R_OK] > 100 && counts[NOTE_R_DUPLICATE] && counts[NOTE_R_STALE] && counts[NOTE_R_FENCED] &&
           counts[NOTE_R_CHANGED] && counts[NOTE_R_ABSENT] && counts[NOTE_R_INVALID] && counts[NOTE_R_BOUNDS],
           "replay: the random sequence has every outcome (%d writes from 3 nodes)", SEQ_N);

        notes_init(&a);
        apply_seq(&a, s, 0, SEQ_N);
        snap(&sa, &a);

        notes_init(&b);
        apply_seq(&b, s, 0, SEQ_N);
        snap(&sb, &b);
        ok(same_bytes(&sa, &sb), "replay: the same sequence gives the same store (%zu bytes)", sa.len);
        apply_seq(&b, s, 0, SEQ_N);
        snap(&sb, &b);
        ok(same_bytes(&sa, &sb), "replay: ... and applying it all again changes nothing");

        /* a copy of a node's last write answers as the first time */
        bool same_answer = true;
        for (size_t i = SEQ_N - 1, seen = 0; i > 0 && seen < 3; i--) {
                const struct note_writer *wr = writer(&a, s[i].w.node);
                if (!wr || wr->op_id != s[i].w.op_id)
                        continue;
                struct note_outcome out;
                notes_apply(&b, &s[i].w, &out);
                if (out.res != (wr->res == NOTE_R_OK ? NOTE_R_DUPLICATE : wr->res) || out.version != wr->version)
                        same_answer = false;
                seen++;
        }
        ok(same_answer, "replay: each node's last write again gets its first answer");

        notes_clear(&b);
        static const size_t cuts[] = { 0, 1, 777, 1234, SEQ_N - 1, SEQ_N };
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
                notes_init(&b);
                apply_seq(&b, s, 0, cuts[k]);
                copy(&c, &b);
                notes_clear(&b);
                apply_seq(&c, s, cuts[k], SEQ_N);
                snap(&sc, &c);
                ok(same_bytes(&sa, &sc), "replay: %zu writes, a snapshot (put, get), the other %zu: the same bytes",
                   cuts[k], SEQ_N - cuts[k]);
                /* a snapshot taken, then the log applied again from before it */
                notes_clear(&c);
                notes_init(&b);
                apply_seq(&b, s, 0, cuts[k]);
                copy(&c, &b);
                notes_clear(&b);
                apply_seq(&c, s, cuts[k] / 2, SEQ_N);
                snap(&sc, &c);
                ok(same_bytes(&sa, &sc), "replay: ... and from write %zu (before the snapshot) on: the same bytes",
                   cuts[k] / 2);
                notes_clear(&c);
        }
        notes_clear(&a);
        notes_clear(&b);
        wbuf_free(&sa);
        wbuf_free(&sb);
        wbuf_free(&sc);
}

/* --- limits, invalid writes ---------------------------------------------------------- */

static void test_limits(void)
{
        struct notes t;
        struct wbuf before = {0};
        char key[DCHAT_KEY_MAX + 8], node[DCHAT_NAME_MAX + 8];
        uint64_t v, op = 0;
        bool all = true;

        notes_init(&t);
        for (unsigned i = 0; i < DCHAT_NOTES_MAX; i++) {
                snprintf(key, sizeof key, "k%04u", (i * 7919u) % DCHAT_NOTES_MAX);     /* not in order */
                struct note_write w = W(NOTE_SET, NOTE_UNLOCKED, key, "v", "n1", ++op, 0, 0);
                all &= apply(&t, &w, NULL) == NOTE_R_OK;
        }
        ok(all && t.n == DCHAT_NOTES_MAX, "limits: DCHAT_NOTES_MAX (%d) notes stored", DCHAT_NOTES_MAX);
        bool sorted = true;
        for (unsigned i = 1; i < t.n; i++)
                sorted &= strcmp(t.v[i - 1].key, t.v[i].key) < 0;
        ok(sorted, "limits: ... kept in order of their keys");
        uint64_t ver = t.version;
        struct note_write w = W(NOTE_SET, NOTE_UNLOCKED, "one-more", "v", "n1", ++op, 0, 0);
        is_int(apply(&t, &w, NULL), NOTE_R_FULL, "limits: one more new key: FULL");
        ok(t.n == DCHAT_NOTES_MAX && t.version == ver && !notes_find(&t, "one-more", 8), "... nothing stored");
        is_int(set(&t, "k0500", "new", "n1", ++op, 1, &v), NOTE_R_OK, "limits: an existing key is still writable");
        struct note_write d = W(NOTE_DEL, 0, "k0001", NULL, "n1", ++op, 2, 0);
        is_int(apply(&t, &d, NULL), NOTE_R_OK, "limits: ... and deletable");
        w.op_id = ++op;
        is_int(apply(&t, &w, NULL), NOTE_R_OK, "limits: then a new key fits again");

        /* a full store survives its serial form */
        struct wbuf b = {0};
        snap(&b, &t);
        struct notes c;
        struct rbuf r = { .p = b.data, .len = b.len };
        is_int(notes_get(&r, &c), 0, "limits: a full store's serial form is read back (%zu bytes)", b.len);
        notes_clear(&c);
        wbuf_free(&b);
        notes_clear(&t);

        notes_init(&t);
        all = true;
        for (unsigned i = 0; i < NOTES_WRITERS_MAX; i++) {
                snprintf(node, sizeof node, "node%u", i);
                w = W(NOTE_SET, NOTE_UNLOCKED, "k", "v", node, 1, 0, 0);
                all &= apply(&t, &w, NULL) == NOTE_R_OK;
        }
        ok(all && t.n_w == NOTES_WRITERS_MAX, "limits: NOTES_WRITERS_MAX (%d) writers", NOTES_WRITERS_MAX);
        ver = t.version;
        w = W(NOTE_SET, NOTE_UNLOCKED, "k", "v", "one-more", 1, 0, 0);
        is_int(apply(&t, &w, NULL), NOTE_R_FULL, "limits: a write of one more node: FULL");
        ok(t.n_w == NOTES_WRITERS_MAX && t.version == ver && !writer(&t, "one-more"), "... nothing stored or recorded");
        w = W(NOTE_SET, NOTE_UNLOCKED, "k", "v", "node7", 2, 0, 0);
        is_int(apply(&t, &w, NULL), NOTE_R_OK, "limits: a known node still writes");
        notes_clear(&t);

        /* invalid writes: refused, nothing recorded */
        notes_init(&t);
        set(&t, "k", "v", "n1", 5, 10, NULL);
        snap(&before, &t);
        char value[DCHAT_VALUE_MAX + 2];
        memset(value, 'x', sizeof value - 1);
        value[sizeof value - 1] = '\0';
        memset(key, 'k', sizeof key - 1);
        key[DCHAT_KEY_MAX + 1] = '\0';
        memset(node, 'n', sizeof node - 1);
        node[DCHAT_NAME_MAX + 1] = '\0';
        struct {
                struct note_write w;
                const char *what;
        } bad[] = {
                { W(NOTE_SET, 0, "", "v", "n1", 6, 11, 0), "an empty key" },
                { W(NOTE_SET, 0, key, "v", "n1", 6, 11, 0), "a key of DCHAT_KEY_MAX + 1 bytes" },
                { W(NOTE_SET, 0, "a b", "v", "n1", 6, 11, 0), "a key with a space" },
                { W(NOTE_SET, 0, "a\n", "v", "n1", 6, 11, 0), "a key with a newline" },
                { W(NOTE_SET, 0, "a*", "v", "n1", 6, 11, 0), "a key with '*'" },
                { W(NOTE_SET, 0, "k\xc3\xa9", "v", "n1", 6, 11, 0), "a key with a non-ASCII letter" },
                { W(NOTE_SET, 0, ".k", "v", "n1", 6, 11, 0), "a key starting with '.'" },
                { W(NOTE_SET, 0, "-k", "v", "n1", 6, 11, 0), "a key starting with '-'" },
                { W(NOTE_SET, 0, "/k", "v", "n1", 6, 11, 0), "a key starting with '/'" },
                { W(NOTE_DEL, 0, "..", NULL, "n1", 6, 11, 0), "a DEL of key '..'" },
                { W(NOTE_SET, 0, "k", value, "n1", 6, 11, 0), "a value of DCHAT_VALUE_MAX + 1 bytes" },
                { W(NOTE_SET, 0, "k", "", "n1", 6, 11, 0), "an empty value" },
                { W(NOTE_SET, 0, "k", "\xff", "n1", 6, 11, 0), "a value of invalid UTF-8" },
                { W(NOTE_SET, 0, "k", "ab\xc3", "n1", 6, 11, 0), "a value with a cut UTF-8 sequence" },
                { W(NOTE_SET, 0, "k", "\xc0\xaf", "n1", 6, 11, 0), "a value with an overlong encoding" },
                { W(NOTE_SET, 0, "k", "\xed\xa0\x80", "n1", 6, 11, 0), "a value with a surrogate" },
                { W(NOTE_SET, 0, "k", "a\nb", "n1", 6, 11, 0), "a value with a newline" },
                { W(NOTE_SET, 0, "k", "a\tb", "n1", 6, 11, 0), "a value with a tab" },
                { W(NOTE_SET, 0, "k", "a\x1b[2J", "n1", 6, 11, 0), "a value with an escape" },
                { W(NOTE_SET, 0, "k", "a\x7f", "n1", 6, 11, 0), "a value with DEL" },
                { W(NOTE_SET, 0, "k", "a\xc2\x85", "n1", 6, 11, 0), "a value with a C1 control (NEL)" },
                { W(NOTE_SET, 0, "k", "a\xe2\x80\xa8", "n1", 6, 11, 0), "a value with U+2028" },
                { W(0, 0, "k", NULL, "n1", 6, 11, 0), "op 0" },
                { W(NOTE_GET, 0, "k", NULL, "n1", 6, 11, 0), "op GET (not a write)" },
                { W(NOTE_LIST, 0, "k", NULL, "n1", 6, 11, 0), "op LIST (not a write)" },
                { W(NOTE_INCR, 0, "k", NULL, "n1", 6, 11, 0), "op INCR (the peer's, not the store's)" },
                { W(_NOTE_OP_MAX, 0, "k", NULL, "n1", 6, 11, 0), "op _NOTE_OP_MAX" },
                { W(NOTE_SET, 0x04, "k", "v", "n1", 6, 11, 0), "an unknown flag" },
                { W(NOTE_SET, 0x80, "k", "v", "n1", 6, 11, 0), "flag 0x80" },
                { W(NOTE_SET, 0, "k", "v", NULL, 6, 11, 0), "no node" },
                { W(NOTE_SET, 0, "k", "v", "", 6, 11, 0), "an empty node" },
                { W(NOTE_SET, 0, "k", "v", "-n", 6, 11, 0), "a node starting with '-'" },
                { W(NOTE_SET, 0, "k", "v", "n 1", 6, 11, 0), "a node with a space" },
                { W(NOTE_SET, 0, "k", "v", node, 6, 11, 0), "a node of DCHAT_NAME_MAX + 1 bytes" },
        };
        /* a NUL inside the key or value (its length counts past it) */
        struct note_write nulk = W(NOTE_SET, 0, "k\0x", "v", "n1", 6, 11, 0), nulv = W(NOTE_SET, 0, "k", "v\0w", "n1", 6, 11, 0);
        nulk.key_len = 3;
        nulv.len = 3;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0] + 2; i++) {
                const struct note_write *x = i < sizeof bad / sizeof bad[0] ? &bad[i].w : i == sizeof bad / sizeof bad[0] ? &nulk : &nulv;
                const char *what = i < sizeof bad / sizeof bad[0] ? bad[i].what : i == sizeof bad / sizeof bad[0] ?
                                   "a key with a NUL" : "a value with a NUL";
                struct note_outcome out = { .res = NOTE_R_OK, .version = 42 };
                ok(notes_apply(&t, x, &out) == 0 && out.res == NOTE_R_INVALID && out.version == 0 &&
                   unchanged(&t, &before), "invalid: %s: INVALID, nothing stored or recorded", what);
        }
        char vmax[DCHAT_VALUE_MAX + 1];
        memset(vmax, 'x', DCHAT_VALUE_MAX);
        vmax[DCHAT_VALUE_MAX] = '\0';
        memset(key, 'K', DCHAT_KEY_MAX);
        key[DCHAT_KEY_MAX] = '\0';
        w = W(NOTE_SET, 0, key, vmax, node + 1, 6, 11, 0);     /* DCHAT_NAME_MAX bytes of node */
        is_int(apply(&t, &w, NULL), NOTE_R_OK, "limits: the longest key, value and node name: stored");
        ok(notes_find(&t, key, DCHAT_KEY_MAX) && notes_find(&t, key, DCHAT_KEY_MAX)->len == DCHAT_VALUE_MAX,
           "... and found");
        is_int(set(&t, "0k", "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", "n1", 6, 12, NULL), NOTE_R_OK,
               "limits: a value of UTF-8 (2, 3 and 4 byte characters): stored");
        is_int(set(&t, "Aa0._:/-", "v", "n1", 7, 13, NULL), NOTE_R_OK, "limits: a key of every allowed kind of character");
        /* an invalid write with a high op id was not recorded: the node's next valid one is not stale */
        w = W(NOTE_SET, 0, "", "v", "n1", 100, 14, 0);
        apply(&t, &w, NULL);
        is_int(set(&t, "k", "v2", "n1", 8, 15, NULL), NOTE_R_OK, "invalid: an invalid op 100 did not use up op ids 8..100");
        wbuf_free(&before);
        notes_clear(&t);
}

/* --- the serial form ------------------------------------------------------------------- */

static int get(const uint8_t *p, size_t n, struct notes *t)
{
        /* a copy of exactly n bytes, so that valgrind and ASan see any read past the end */
        uint8_t *q = malloc(n ? n : 1);
        if (!q)
                abort();
        memcpy(q, p, n);
        struct rbuf r = { .p = q, .len = n };
        int e = notes_get(&r, t);
        if (e == 0 && r.off != r.len) {
                notes_clear(t);
                e = -EPROTO;
        }
        free(q);
        return e;
}

static bool is_empty(const struct notes *t)
{
        return t->n == 0 && t->v == NULL && t->w == NULL && t->n_w == 0 && t->version == 0;
}

/* A small store of every part: notes, a fence, three writers. */
static void small_store(struct notes *t)
{
        notes_init(t);
        set(t, "a", "alpha", "n1", 1, 5, NULL);
        set(t, "b/c", "h\xc3\xa9", "n2", 1, 6, NULL);
        struct note_write w = W(NOTE_DEL, 0, "zz", NULL, "n3", 1, 7, 2);
        apply(t, &w, NULL);
        set(t, "z", "last", "n3", 2, 8, NULL);
}

/* small_store with one thing changed before it is put: its serial form is refused. */
static void check_refused(const char *what, void (*spoil)(struct notes *))
{
        struct notes t, c;
        struct wbuf b = {0};

        small_store(&t);
        if (spoil)
                spoil(&t);
        snap(&b, &t);
        if (!spoil)
                b.data[0] ^= 0x01;      /* the magic */
        int e = get(b.data, b.len, &c);
        ok(e == -EBADMSG && is_empty(&c), "serial: %s: refused (-EBADMSG), nothing kept", what);
        if (e == 0)
                notes_clear(&c);
        /* put the store back as it was, so that notes_clear frees what is there */
        notes_clear(&t);
        wbuf_free(&b);
}

static void spoil_order(struct notes *t)
{
        char k[DCHAT_KEY_MAX + 1];
        memcpy(k, t->v[0].key, sizeof k);
        memcpy(t->v[0].key, t->v[1].key, sizeof k);
        memcpy(t->v[1].key, k, sizeof k);
}
static void spoil_twice(struct notes *t) { memcpy(t->v[1].key, t->v[0].key, sizeof t->v[1].key); }
static void spoil_key(struct notes *t) { t->v[1].key[0] = '.'; }
static void spoil_key_empty(struct notes *t) { t->v[0].key[0] = '\0'; }
static void spoil_value(struct notes *t) { t->v[0].value[1] = '\n'; }
static void spoil_value_empty(struct notes *t) { t->v[0].len = 0; }
static void spoil_version0(struct notes *t) { t->v[1].version = 0; }
static void spoil_version_ahead(struct notes *t) { t->v[1].version = t->version + 1; }
static void spoil_node(struct notes *t) { t->v[0].node[0] = '\0'; }
static void spoil_node_chars(struct notes *t) { t->v[0].node[0] = ' '; }
static void spoil_fence_node(struct notes *t) { strcpy(t->fence_node, "a b"); }
static void spoil_fence(struct notes *t) { t->fence = DCHAT_CLOCK_MAX + 1; }
static void spoil_writer_twice(struct notes *t) { strcpy(t->w[2].node, t->w[0].node); }
static void spoil_writer_res(struct notes *t) { t->w[1].res = _NOTE_R_MAX; }
static void spoil_writer_node(struct notes *t) { t->w[1].node[0] = '\0'; }

/* notes_put of a store whose count says more than it holds would read past its arrays: write those by hand */
static void raw_count(struct wbuf *b, uint32_t n_notes, uint32_t n_writers)
{
        wbuf_put_u32(b, 0x44434E31);
        wbuf_put_u64(b, 5);
        wbuf_put_u64(b, 0);
        wbuf_put_str(b, "", 0);
        wbuf_put_u32(b, 0);
        wbuf_put_u32(b, n_notes);
        if (n_notes == 0)
                wbuf_put_u32(b, n_writers);
}

static void test_serial(void)
{
        struct notes t, c;
        struct wbuf b = {0}, b2 = {0};

        notes_init(&t);
        snap(&b, &t);
        is_int(get(b.data, b.len, &c), 0, "serial: an empty store round-trips");
        ok(is_empty(&c), "... empty");
        notes_clear(&c);

        small_store(&t);
        snap(&b, &t);
        is_int(get(b.data, b.len, &c), 0, "serial: a store round-trips (%zu bytes)", b.len);
        snap(&b2, &c);
        ok(same_bytes(&b, &b2), "... put again: the same bytes");
        const struct note *n = notes_find(&c, "b/c", 3);
        ok(c.n == 3 && c.n_w == 3 && c.version == t.version && c.fence == 8 && !strcmp(c.fence_node, "n3") &&
           n && !strcmp(n->value, "h\xc3\xa9") && n->len == 3 && n->version == 2 && !strcmp(n->node, "n2") &&
           n->time == 1700000001 && writer(&c, "n3") && writer(&c, "n3")->op_id == 2,
           "... every field read back");
        /* what was read goes on as the original would */
        uint64_t v1, v2;
        set(&t, "b/c", "next", "n2", 2, 9, &v1);
        set(&c, "b/c", "next", "n2", 2, 9, &v2);
        ok(v1 == v2 && v1 == t.version, "... and takes the next write as the original does");
        is_int(set(&c, "a", "x", "n1", 1, 10, NULL), NOTE_R_DUPLICATE, "... and knows each node's last write");
        notes_clear(&c);
        notes_clear(&t);

        small_store(&t);
        snap(&b, &t);
        size_t refused = 0;
        bool emptied = true;
        for (size_t k = 0; k < b.len; k++) {
                int e = get(b.data, k, &c);
                refused += e == -EBADMSG;
                emptied &= is_empty(&c);
                if (e == 0)
                        notes_clear(&c);
        }
        ok(refused == b.len && emptied, "serial: each of the %zu truncations (0..%zu bytes) refused, nothing kept",
           b.len, b.len - 1);
        {
                /* a byte more: notes_get reads what it needs; the file's reader refuses the rest */
                uint8_t *p = malloc(b.len + 1);
                memcpy(p, b.data, b.len);
                p[b.len] = 0;
                struct rbuf r = { .p = p, .len = b.len + 1 };
                is_int(notes_get(&r, &c), 0, "serial: a byte more: read up to it");
                is_int(r.off, b.len, "... and not past the serial form");
                notes_clear(&c);
                free(p);
        }

        /* every bit of it flipped, one at a time: refused or read, no crash, no leak */
        size_t flips = 0, taken = 0;
        bool consistent = true;
        for (size_t k = 0; k < b.len; k++) {
                for (int bit = 0; bit < 8; bit++) {
                        b.data[k] ^= (uint8_t) (1u << bit);
                        int e = get(b.data, b.len, &c);
                        b.data[k] ^= (uint8_t) (1u << bit);
                        flips++;
                        if (e == 0) {
                                /* what it reads is a store: its own serial form reads back */
                                taken++;
                                snap(&b2, &c);
                                struct notes d;
                                if (get(b2.data, b2.len, &d) != 0)
                                        consistent = false;
                                else
                                        notes_clear(&d);
                                notes_clear(&c);
                        } else if (e != -EBADMSG && e != -EPROTO) {
                                consistent = false;
                        } else if (!is_empty(&c)) {
                                consistent = false;
                        }
                }
        }
        ok(consistent, "serial: %zu single bit flips: %zu read (each a store that round-trips), the rest refused",
           flips, taken);
        notes_clear(&t);

        check_refused("wrong magic", NULL);
        check_refused("keys out of order", spoil_order);
        check_refused("a key twice", spoil_twice);
        check_refused("a key starting with '.'", spoil_key);
        check_refused("an empty key", spoil_key_empty);
        check_refused("a value with a newline", spoil_value);
        check_refused("an empty value", spoil_value_empty);
        check_refused("a note of version 0", spoil_version0);
        check_refused("a note's version above the store's", spoil_version_ahead);
        check_refused("a note with no writer", spoil_node);
        check_refused("a note's writer with a space", spoil_node_chars);
        check_refused("a fence's node with a space", spoil_fence_node);
        check_refused("a fence above DCHAT_CLOCK_MAX", spoil_fence);
        check_refused("a writer twice", spoil_writer_twice);
        check_refused("a writer's outcome unknown", spoil_writer_res);
        check_refused("a writer with no name", spoil_writer_node);

        wbuf_reset(&b);
        raw_count(&b, DCHAT_NOTES_MAX + 1, 0);
        is_int(get(b.data, b.len, &c), -EBADMSG, "serial: more than DCHAT_NOTES_MAX notes: refused before reading them");
        wbuf_reset(&b);
        raw_count(&b, UINT32_MAX, 0);
        is_int(get(b.data, b.len, &c), -EBADMSG, "serial: 2^32-1 notes: refused (no huge allocation)");
        wbuf_reset(&b);
        raw_count(&b, 0, NOTES_WRITERS_MAX + 1);
        is_int(get(b.data, b.len, &c), -EBADMSG, "serial: more than NOTES_WRITERS_MAX writers: refused");
        wbuf_reset(&b);
        raw_count(&b, 0, 0);
        is_int(get(b.data, b.len, &c), 0, "serial: (the same by hand, with none: read)");
        notes_clear(&c);
        wbuf_free(&b);
        wbuf_free(&b2);
}

/* --- the file -------------------------------------------------------------------------- */

/* The errno the next fstat fails with (0: none); the real call is the raw syscall. */
static int fail_fstat;

int fstat(int fd, struct stat *st)
{
        if (fail_fstat) {
                errno = fail_fstat;
                fail_fstat = 0;
                return -1;
        }
        return (int) syscall(SYS_fstat, fd, st);
}

static char dir[64];

static char *path_of(const char *name)
{
        static char p[2][128];
        static unsigned k;
        char *s = p[k++ % 2];
        snprintf(s, sizeof p[0], "%s/%s", dir, name);
        return s;
}

static uint8_t *slurp(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        if (!f)
                return NULL;
        uint8_t *buf = malloc(1 << 20);
        *len = fread(buf, 1, 1 << 20, f);
        fclose(f);
        return buf;
}

static void spit(const char *path, const uint8_t *p, size_t n)
{
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(p, 1, n, f) != n)
                abort();
        fclose(f);
}

static bool exists(const char *path)
{
        struct stat st;
        return lstat(path, &st) == 0;
}

/* load refuses the file as damaged: -EBADMSG, err names it and says why, the file is left as it was */
static void check_damaged(const char *what, const uint8_t *p, size_t n, const char *why)
{
        struct notes t;
        char err[512] = "";
        size_t len = 0;

        spit(path_of("notes"), p, n);
        int e = notes_load(&t, dir, err, sizeof err);
        is_int(e, -EBADMSG, "file: %s: -EBADMSG", what);
        ok(strstr(err, path_of("notes")) && strstr(err, "is damaged") && (!why || strstr(err, why)),
           "... the error names the file and says it is damaged%s%s: %s", why ? ", " : "", why ? why : "", err);
        ok(is_empty(&t), "... the store empty");
        uint8_t *after = slurp(path_of("notes"), &len);
        ok(after && len == n && !memcmp(after, p, n), "... and the file left as it was");
        free(after);
        notes_clear(&t);
}

static void test_file(void)
{
        static struct seq_write s[SEQ_N];
        struct notes t, c;
        struct wbuf sa = {0}, sb = {0};
        char err[512] = "";
        size_t len;

        snprintf(dir, sizeof dir, "/tmp/test-notes.XXXXXX");
        if (!mkdtemp(dir)) {
                ok(0, "mkdtemp: %m");
                return;
        }
        notes_init(&t);
        is_int(notes_load(&t, dir, err, sizeof err), 0, "file: no file: 0");
        ok(is_empty(&t), "... an empty store");

        rng = 42;
        make_seq(s, SEQ_N, NULL);
        apply_seq(&t, s, 0, SEQ_N);
        snap(&sa, &t);
        is_int(notes_save(&t, dir, err, sizeof err), 0, "file: save %u notes", t.n);
        ok(!exists(path_of("notes.tmp")), "... no notes.tmp left behind");
        struct stat st;
        ok(stat(path_of("notes"), &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & 0137),
           "... DIR/notes, a file of mode 0640 at most");
        is_int(notes_load(&c, dir, err, sizeof err), 0, "file: load it");
        snap(&sb, &c);
        ok(same_bytes(&sa, &sb), "... the same store (%zu bytes of serial form)", sa.len);
        notes_clear(&c);

        uint8_t *f = slurp(path_of("notes"), &len);
        uint8_t sum[16];
        crypto_generichash(sum, sizeof sum, f + 24, len - 24, NULL, 0);
        ok(len == 24 + sa.len && !memcmp(f, "DCNF", 4) && f[4] == (uint8_t) (sa.len >> 24) &&
           f[7] == (uint8_t) sa.len && !memcmp(f + 8, sum, 16) && !memcmp(f + 24, sa.data, sa.len),
           "file: 'DCNF', the body's length, its BLAKE2b-128, the body (notes_put)");

        /* replaced: another save, another store */
        struct note_write w = W(NOTE_SET, NOTE_UNLOCKED, "after", "saved again", "n1", 999999, 0, 0);
        is_int(apply(&t, &w, NULL), NOTE_R_OK, "file: one more write");
        spit(path_of("notes.tmp"), (const uint8_t *) "left by a crash", 15);
        is_int(notes_save(&t, dir, err, sizeof err), 0, "file: save over it (a notes.tmp of a crash there)");
        ok(!exists(path_of("notes.tmp")), "... no notes.tmp left behind");
        is_int(notes_load(&c, dir, err, sizeof err), 0, "... load");
        is_str(value_of(&c, "after"), "saved again", "... the new store");
        notes_clear(&c);
        notes_clear(&t);
        free(f);
        f = slurp(path_of("notes"), &len);

        /* damage */
        size_t at[] = { 24, 24 + len / 3, len - 1, 8, 23 };
        for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
                char what[64];
                snprintf(what, sizeof what, "byte %zu of %zu flipped", at[k], len);
                f[at[k]] ^= 0x10;
                check_damaged(what, f, len, "checksum");
                f[at[k]] ^= 0x10;
        }
        f[5] ^= 0x01;
        check_damaged("its length field changed", f, len, "length");
        f[5] ^= 0x01;
        check_damaged("truncated by one byte", f, len - 1, "length");
        check_damaged("truncated to its header", f, 24, "length");
        check_damaged("shorter than its header", f, 23, "header");
        check_damaged("empty", f, 0, "header");
        f[0] = 'X';
        check_damaged("wrong magic", f, len, "not a dchat notes file");
        f[0] = 'D';
        {
                /* a good checksum over a body that does not decode: a byte more */
                uint8_t *g = malloc(len + 1);
                memcpy(g, f, len);
                g[len] = 0;
                uint32_t body = (uint32_t) (len + 1 - 24);
                g[4] = (uint8_t) (body >> 24), g[5] = (uint8_t) (body >> 16), g[6] = (uint8_t) (body >> 8),
                g[7] = (uint8_t) body;
                crypto_generichash(g + 8, 16, g + 24, body, NULL, 0);
                check_damaged("a byte after the notes (checksummed)", g, len + 1, "do not decode");
                /* ... and one that is cut short */
                body = (uint32_t) (len - 1 - 24);
                g[4] = (uint8_t) (body >> 24), g[5] = (uint8_t) (body >> 16), g[6] = (uint8_t) (body >> 8),
                g[7] = (uint8_t) body;
                crypto_generichash(g + 8, 16, g + 24, body, NULL, 0);
                check_damaged("the notes cut short (checksummed)", g, len - 1, "do not decode");
                free(g);
        }
        /* an fstat that fails is not damage: the file is not to be moved aside for it */
        spit(path_of("notes"), f, len);
        fail_fstat = EIO;
        err[0] = '\0';
        is_int(notes_load(&t, dir, err, sizeof err), -EIO, "file: fstat fails (EIO): -EIO, not -EBADMSG");
        ok(strstr(err, path_of("notes")) && !strstr(err, "damaged"), "... the error names the file, not as damaged: %s",
           err);
        ok(is_empty(&t), "... the store empty");
        notes_clear(&t);
        is_int(notes_load(&t, dir, err, sizeof err), 0, "... and the next load reads it");
        notes_clear(&t);

        unlink(path_of("notes"));
        mkdir(path_of("notes"), 0700);
        is_int(notes_load(&t, dir, err, sizeof err), -EBADMSG, "file: a directory where the file should be: -EBADMSG");
        ok(strstr(err, "not a regular file") != NULL, "... %s", err);
        rmdir(path_of("notes"));
        ok(symlink("/dev/null", path_of("notes")) == 0, "file: a symlink where the file should be");
        int e = notes_load(&t, dir, err, sizeof err);
        ok(e < 0 && e != -ENOENT && strstr(err, path_of("notes")), "... not followed: %d, %s", e, err);
        unlink(path_of("notes"));
        notes_clear(&t);

        notes_init(&t);
        set(&t, "k", "v", "n1", 1, 1, NULL);
        e = notes_save(&t, path_of("no-such-dir"), err, sizeof err);
        ok(e == -ENOENT && strstr(err, "cannot open the directory") && strstr(err, "no-such-dir"),
           "file: save into a missing directory: %d, %s", e, err);
        /* a save that fails after its temp file was written (the rename: a directory in the way) */
        mkdir(path_of("notes"), 0700);
        mkdir(path_of("notes/x"), 0700);
        e = notes_save(&t, dir, err, sizeof err);
        ok(e < 0 && strstr(err, "cannot rename"), "file: a save whose rename fails: %d, %s", e, err);
        ok(!exists(path_of("notes.tmp")), "... its notes.tmp removed");
        ok(exists(path_of("notes/x")), "... and what was there left as it was");
        rmdir(path_of("notes/x"));
        rmdir(path_of("notes"));
        notes_clear(&t);

        /* the largest store: every note of the longest key and value, every writer of the longest name */
        notes_init(&t);
        bool all = true;
        char key[DCHAT_KEY_MAX + 1], value[DCHAT_VALUE_MAX + 1], node[NOTES_WRITERS_MAX][DCHAT_NAME_MAX + 1];
        memset(value, 'v', DCHAT_VALUE_MAX);
        value[DCHAT_VALUE_MAX] = '\0';
        for (unsigned i = 0; i < NOTES_WRITERS_MAX; i++) {
                memset(node[i], 'n', DCHAT_NAME_MAX);
                node[i][DCHAT_NAME_MAX] = '\0';
                snprintf(node[i], DCHAT_NAME_MAX, "%03u", i);
                node[i][3] = 'n';
        }
        for (unsigned i = 0; i < DCHAT_NOTES_MAX; i++) {
                memset(key, 'k', DCHAT_KEY_MAX);
                key[DCHAT_KEY_MAX] = '\0';
                snprintf(key, sizeof key, "%04u", i);
                key[4] = 'k';
                struct note_write x = W(NOTE_SET, NOTE_UNLOCKED, key, value, node[i % NOTES_WRITERS_MAX],
                                        1 + i / NOTES_WRITERS_MAX, 0, 0);
                all &= apply(&t, &x, NULL) == NOTE_R_OK;
        }
        ok(all && t.n == DCHAT_NOTES_MAX && t.n_w == NOTES_WRITERS_MAX, "file: the largest store made");
        snap(&sa, &t);
        is_int(notes_save(&t, dir, err, sizeof err), 0, "file: the largest store saved (%zu bytes of serial form)", sa.len);
        e = notes_load(&c, dir, err, sizeof err);
        is_int(e, 0, "file: ... and loaded%s%s", e ? ": " : "", e ? err : "");
        snap(&sb, &c);
        ok(same_bytes(&sa, &sb), "file: ... the same store");
        notes_clear(&c);
        notes_clear(&t);

        free(f);
        wbuf_free(&sa);
        wbuf_free(&sb);
        unlink(path_of("notes"));
        unlink(path_of("notes.tmp"));
        ok(rmdir(dir) == 0, "file: the temp directory removed");
}

int main(void)
{
        plan_no_plan();
        if (sodium_init() < 0)
                return 1;
        test_basics();
        test_fence();
        test_if_version();
        test_race();
        test_once();
        test_replay();
        test_limits();
        test_serial();
        test_file();
        return done_testing();
}
