/* SPDX-License-Identifier: MIT */
/*
 * fuzz-notes.c — libFuzzer target: the shared notes' serial form
 * (notes_get, as a snapshot or the notes file hands it over) and writes on
 * what it decodes.
 *
 * The input's first byte says how many of its last bytes drive writes; the
 * rest is read as a store.  A store that decodes must encode to exactly the
 * bytes it was read from (notes_put ∘ notes_get is the identity on what it
 * accepts), and writes made of the driving bytes must keep it consistent:
 * keys sorted and unique, every version at most the store's, within the
 * limits, and encode/decode again to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dchatd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "fuzz-notes: check failed: %s (line %d)\n", #x, __LINE__); abort(); } } while (0)

static void check_store(const struct notes *t)
{
        struct wbuf b = {0}, b2 = {0};
        struct notes u;

        CHECK(t->n <= DCHAT_NOTES_MAX && t->n_w <= NOTES_WRITERS_MAX);
        for (unsigned i = 0; i < t->n; i++) {
                CHECK(note_key_valid(t->v[i].key, strlen(t->v[i].key)));
                CHECK(i == 0 || strcmp(t->v[i - 1].key, t->v[i].key) < 0);
                CHECK(t->v[i].version >= 1 && t->v[i].version <= t->version);
                CHECK(strlen(t->v[i].value) == t->v[i].len);
        }
        notes_put(&b, t);
        if (b.failed)
                goto out;
        struct rbuf r = { .p = b.data, .len = b.len };
        int e = notes_get(&r, &u);
        CHECK(e == 0 || e == -ENOMEM);
        if (e == 0) {
                CHECK(r.off == r.len);
                notes_put(&b2, &u);
                CHECK(b2.failed || (b2.len == b.len && !memcmp(b2.data, b.data, b.len)));
                notes_clear(&u);
        }
out:
        wbuf_free(&b);
        wbuf_free(&b2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const nodes[] = { "node1", "node2", "node3" };
        static const char *const keys[] = { "hits", "motd", "a", "z/9" };
        struct notes t;

        if (size < 1)
                return 0;
        size_t drive = data[0] % 64;
        if (drive > size - 1)
                drive = size - 1;
        const uint8_t *store = data + 1, *w = data + size - drive;
        size_t store_len = size - 1 - drive;

        struct rbuf r = { .p = store, .len = store_len };
        if (notes_get(&r, &t) < 0)
                return 0;
        /* what it read, it writes back the same */
        struct wbuf b = {0};
        notes_put(&b, &t);
        CHECK(b.failed || (b.len == r.off && !memcmp(b.data, store, r.off)));
        wbuf_free(&b);
        check_store(&t);

        /* writes: 4 bytes each (op and flags, key, node, expect and fence) */
        for (size_t i = 0; i + 4 <= drive; i += 4) {
                char value[8];
                struct note_outcome o;
                struct note_write nw = {
                        .op = w[i] & 1 ? NOTE_DEL : NOTE_SET, .flags = (uint8_t) ((w[i] >> 1) & 3),
                        .key = keys[w[i + 1] % 4], .key_len = strlen(keys[w[i + 1] % 4]),
                        .value = value, .len = (size_t) snprintf(value, sizeof value, "%u", w[i + 3]),
                        .expect = w[i + 3] % 8, .fence = t.fence + (w[i + 3] % 4), .fence_idx = w[i + 2] >> 4,
                        .node = nodes[w[i + 2] % 3], .op_id = (UINT64_C(1) << 32) + i / 4 + (w[i + 2] >> 6),
                        .time = 1795338157,
                };
                uint64_t before = t.version;
                if (notes_apply(&t, &nw, &o) < 0)
                        break;
                CHECK(o.res < _NOTE_R_MAX);
                CHECK(o.res == NOTE_R_OK ? t.version == before + 1 && o.version == t.version : t.version == before);
        }
        check_store(&t);
        notes_clear(&t);
        return 0;
}
