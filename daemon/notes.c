/* SPDX-License-Identifier: MIT */
/*
 * notes.c — the shared notes' store: apply a write, find a note, and the
 * store's serial form (notes.h says what a write checks and why).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "notes.h"

#define SERIAL_MAGIC    UINT32_C(0x44434E31)    /* "DCN1" */

void notes_init(struct notes *t)
{
        *t = (struct notes) {0};
}

void notes_clear(struct notes *t)
{
        for (unsigned i = 0; i < t->n; i++)
                free(t->v[i].value);
        free(t->v);
        free(t->w);
        notes_init(t);
}

/* The first note whose key is not below key: its index (t->n: none). */
static unsigned lower_bound(const struct notes *t, const char *key, size_t n)
{
        unsigned lo = 0, hi = t->n;

        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;
                const char *k = t->v[mid].key;
                size_t kn = strlen(k);
                int c = memcmp(k, key, kn < n ? kn : n);
                if (c < 0 || (c == 0 && kn < n))
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

const struct note *notes_find(const struct notes *t, const char *key, size_t n)
{
        unsigned i = lower_bound(t, key, n);

        if (i < t->n && strlen(t->v[i].key) == n && !memcmp(t->v[i].key, key, n))
                return &t->v[i];
        return NULL;
}

static struct note_writer *writer_find(const struct notes *t, const char *node)
{
        for (unsigned i = 0; i < t->n_w; i++)
                if (!strcmp(t->w[i].node, node))
                        return &t->w[i];
        return NULL;
}

static int fence_cmp(uint64_t a, const char *an, uint32_t ai, uint64_t b, const char *bn, uint32_t bi)
{
        if (a != b)
                return a < b ? -1 : 1;
        int c = strcmp(an, bn);
        if (c)
                return c;
        return ai < bi ? -1 : ai > bi;
}

/* The write's checks against the store, before anything changes: its outcome. */
static enum note_res check(const struct notes *t, const struct note_write *w, unsigned i, bool found)
{
        if (!(w->flags & NOTE_UNLOCKED)) {
                if (w->fence > DCHAT_CLOCK_MAX || (t->fence && w->fence > t->fence + DCHAT_CLOCK_JUMP_MAX))
                        return NOTE_R_BOUNDS;
                if (fence_cmp(w->fence, w->node, w->fence_idx, t->fence, t->fence_node, t->fence_idx) <= 0)
                        return NOTE_R_FENCED;
        }
        if ((w->flags & NOTE_IF_VERSION) && w->expect != (found ? t->v[i].version : 0))
                return NOTE_R_CHANGED;
        if (w->op == NOTE_DEL && !found)
                return NOTE_R_ABSENT;
        if ((w->op == NOTE_SET && !found && t->n >= DCHAT_NOTES_MAX) || t->version >= NOTES_VERSION_MAX)
                return NOTE_R_FULL;
        return NOTE_R_OK;
}

int notes_apply(struct notes *t, const struct note_write *w, struct note_outcome *out)
{
        struct note_writer *wr;
        unsigned i;
        bool found;

        *out = (struct note_outcome) { .res = NOTE_R_INVALID };
        if ((w->op != NOTE_SET && w->op != NOTE_DEL) || (w->flags & ~(NOTE_UNLOCKED | NOTE_IF_VERSION)) ||
            !note_key_valid(w->key, w->key_len) || !w->node || !node_name_valid(w->node) ||
            (w->op == NOTE_SET && (w->len > DCHAT_VALUE_MAX || text_validate(w->value, w->len, NULL) < 0)))
                return 0;       /* not recorded: a node's valid writes are what its op ids number */

        /* a copy of the node's last write (or an older one): said again, nothing done */
        wr = writer_find(t, w->node);
        if (wr && w->op_id <= wr->op_id) {
                if (w->op_id < wr->op_id) {
                        out->res = NOTE_R_STALE;
                } else {
                        out->res = wr->res == NOTE_R_OK ? NOTE_R_DUPLICATE : (enum note_res) wr->res;
                        out->version = wr->version;
                }
                return 0;
        }
        if (!wr && t->n_w >= NOTES_WRITERS_MAX) {
                out->res = NOTE_R_FULL;
                return 0;
        }

        i = lower_bound(t, w->key, w->key_len);
        found = i < t->n && strlen(t->v[i].key) == w->key_len && !memcmp(t->v[i].key, w->key, w->key_len);
        out->res = check(t, w, i, found);
        if (out->res == NOTE_R_CHANGED)
                out->version = found ? t->v[i].version : 0;

        /* room first, so that nothing changes when there is none */
        if (!wr && t->n_w == t->cap_w) {
                unsigned cap = t->cap_w ? t->cap_w * 2 : 8;
                struct note_writer *nw = realloc(t->w, cap * sizeof *nw);
                if (!nw)
                        return -ENOMEM;
                t->w = nw;
                t->cap_w = cap;
        }
        char *value = NULL;
        if (out->res == NOTE_R_OK && w->op == NOTE_SET) {
                if (!(value = malloc(w->len + 1)))
                        return -ENOMEM;
                memcpy(value, w->value, w->len);
                value[w->len] = '\0';
                if (!found && t->n == t->cap) {
                        unsigned cap = t->cap ? t->cap * 2 : 16;
                        struct note *nv = realloc(t->v, cap * sizeof *nv);
                        if (!nv) {
                                free(value);
                                return -ENOMEM;
                        }
                        t->v = nv;
                        t->cap = cap;
                }
        }

        if (out->res == NOTE_R_OK) {
                t->version++;
                out->version = t->version;
                if (!(w->flags & NOTE_UNLOCKED)) {
                        t->fence = w->fence;
                        strlcpy(t->fence_node, w->node, sizeof t->fence_node);
                        t->fence_idx = w->fence_idx;
                }
                if (w->op == NOTE_DEL) {
                        free(t->v[i].value);
                        memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof t->v[0]);
                        t->n--;
                } else {
                        if (found) {
                                free(t->v[i].value);
                        } else {
                                memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof t->v[0]);
                                t->n++;
                                memset(&t->v[i], 0, sizeof t->v[i]);
                                memcpy(t->v[i].key, w->key, w->key_len);
                        }
                        t->v[i].value = value;
                        t->v[i].len = (uint16_t) w->len;
                        t->v[i].version = t->version;
                        strlcpy(t->v[i].node, w->node, sizeof t->v[i].node);
                        t->v[i].time = w->time;
                }
        }
        /* the node's last write and its outcome, whatever it was (so that a copy, or a
         * replay of the same writes, decides the same) */
        if (!wr) {
                wr = &t->w[t->n_w++];
                *wr = (struct note_writer) {0};
                strlcpy(wr->node, w->node, sizeof wr->node);
        }
        wr->op_id = w->op_id;
        wr->res = (uint8_t) out->res;
        wr->version = out->version;
        return 0;
}

const char *note_res_name(enum note_res r)
{
        static const char *const names[_NOTE_R_MAX] = {
                [NOTE_R_OK] = "written",
                [NOTE_R_DUPLICATE] = "written before (a copy)",
                [NOTE_R_STALE] = "refused: a late copy of an older write",
                [NOTE_R_FENCED] = "refused: fence not above the last",
                [NOTE_R_CHANGED] = "refused: changed since it was read",
                [NOTE_R_ABSENT] = "refused: no such note",
                [NOTE_R_FULL] = "refused: the notes are full",
                [NOTE_R_INVALID] = "refused: invalid",
                [NOTE_R_BOUNDS] = "refused: fence beyond the bounds",
                [NOTE_R_NOMEM] = "failed: out of memory",
        };
        return r < _NOTE_R_MAX ? names[r] : "?";
}

/* --- serial form -------------------------------------------------------------------------------- */

void notes_put(struct wbuf *b, const struct notes *t)
{
        wbuf_put_u32(b, SERIAL_MAGIC);
        wbuf_put_u64(b, t->version);
        wbuf_put_u64(b, t->fence);
        wbuf_put_str(b, t->fence_node, strlen(t->fence_node));
        wbuf_put_u32(b, t->fence_idx);
        wbuf_put_u32(b, t->n);
        for (unsigned i = 0; i < t->n; i++) {
                const struct note *n = &t->v[i];
                wbuf_put_str(b, n->key, strlen(n->key));
                wbuf_put_str(b, n->value, n->len);
                wbuf_put_u64(b, n->version);
                wbuf_put_str(b, n->node, strlen(n->node));
                wbuf_put_u64(b, (uint64_t) n->time);
        }
        wbuf_put_u32(b, t->n_w);
        for (unsigned i = 0; i < t->n_w; i++) {
                wbuf_put_str(b, t->w[i].node, strlen(t->w[i].node));
                wbuf_put_u64(b, t->w[i].op_id);
                wbuf_put_u8(b, t->w[i].res);
                wbuf_put_u64(b, t->w[i].version);
        }
}

static int get_name(struct rbuf *r, char *dst, size_t cap, bool empty_ok)
{
        struct dchat_str s = rbuf_str(r);
        if (r->bad || (!empty_ok && s.len == 0) || dchat_str_copy(dst, cap, s) < 0 || (s.len && !node_name_valid(dst)))
                return -EBADMSG;
        return 0;
}

static int get_body(struct rbuf *r, struct notes *t)
{
        if (rbuf_u32(r) != SERIAL_MAGIC)
                return -EBADMSG;
        t->version = rbuf_u64(r);
        t->fence = rbuf_u64(r);
        if (get_name(r, t->fence_node, sizeof t->fence_node, true) < 0)
                return -EBADMSG;
        t->fence_idx = rbuf_u32(r);
        uint32_t n = rbuf_u32(r);
        if (r->bad || n > DCHAT_NOTES_MAX || t->fence > DCHAT_CLOCK_MAX || t->version > NOTES_VERSION_MAX)
                return -EBADMSG;
        if (n && !(t->v = calloc(n, sizeof *t->v)))
                return -ENOMEM;
        t->cap = n;
        for (uint32_t i = 0; i < n; i++) {
                struct note *e = &t->v[i];
                struct dchat_str k = rbuf_str(r), v = rbuf_str(r);
                if (r->bad || !note_key_valid(k.p, k.len) || v.len > DCHAT_VALUE_MAX ||
                    text_validate(v.p, v.len, NULL) < 0)
                        return -EBADMSG;
                memcpy(e->key, k.p, k.len);
                /* in strictly increasing order, each key once */
                if (i && strcmp(t->v[i - 1].key, e->key) >= 0)
                        return -EBADMSG;
                if (!(e->value = malloc(v.len + 1u)))
                        return -ENOMEM;
                t->n = i + 1;
                memcpy(e->value, v.p, v.len);
                e->value[v.len] = '\0';
                e->len = v.len;
                e->version = rbuf_u64(r);
                if (get_name(r, e->node, sizeof e->node, false) < 0)
                        return -EBADMSG;
                e->time = (int64_t) rbuf_u64(r);
                if (e->version == 0 || e->version > t->version)
                        return -EBADMSG;
        }
        uint32_t nw = rbuf_u32(r);
        if (r->bad || nw > NOTES_WRITERS_MAX)
                return -EBADMSG;
        if (nw && !(t->w = calloc(nw, sizeof *t->w)))
                return -ENOMEM;
        t->cap_w = nw;
        for (uint32_t i = 0; i < nw; i++) {
                struct note_writer *w = &t->w[i];
                if (get_name(r, w->node, sizeof w->node, false) < 0)
                        return -EBADMSG;
                t->n_w = i + 1;
                w->op_id = rbuf_u64(r);
                w->res = rbuf_u8(r);
                w->version = rbuf_u64(r);
                if (r->bad || w->res >= _NOTE_R_MAX || writer_find(t, w->node) != w)
                        return -EBADMSG;
        }
        return r->bad ? -EBADMSG : 0;
}

int notes_get(struct rbuf *r, struct notes *t)
{
        notes_init(t);
        int e = get_body(r, t);
        if (e < 0)
                notes_clear(t);
        return e;
}
