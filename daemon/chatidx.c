/* SPDX-License-Identifier: MIT */
/*
 * chatidx.c — the chat log's checkpoint, DIR/chat.log.idx: the sparse index
 * and the rest of the log's in-memory state as they were after the first
 * `end` bytes of chat.log, so that opening the log scans only the tail
 * after them.  Big-endian, like the log:
 *
 *   "DCX2"  flags (u32)  base_seq end mtime_ns last_seq last_off (u64)
 *   last_crc (u32)  last_lamport (u64)  last_node (str)  last_fence_idx (u32)
 *   max_time (i64)
 *   n_damage (u32)  n_damage × { first_seq, last_seq, off, end (u64), kind (u8) }
 *   n_index (u32)  n_index × { offset (u64), max_before (i64) }
 *   n_nodes (u32)  n_nodes × { name (str), post_id (u64), seq (u64) }
 *   CRC-32C of all the above (u32)
 *
 * A checkpoint of another format (the older "DCX1", without the damaged
 * parts) is refused as such, never read as this one: the log is then read
 * in full, which finds the same state.
 *
 * This file only encodes, decodes and stores it; chatlog.c checks a loaded
 * checkpoint against the log itself before it uses it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "chatidx.h"

#define CHATIDX_FILE    "chat.log.idx"
#define CHATIDX_MAGIC   UINT32_C(0x44435832)    /* "DCX2" */
#define CHATIDX_MAGIC_V1 UINT32_C(0x44435831)   /* "DCX1": before damaged parts were kept */
#define CHATIDX_MAX     (UINT64_C(1) << 30)     /* 1 GiB: 64 M index slots, 16 G records */

int chatidx_encode(struct wbuf *b, const struct chatidx *x)
{
        size_t start = b->len;

        wbuf_put_u32(b, CHATIDX_MAGIC);
        wbuf_put_u32(b, x->flags);
        wbuf_put_u64(b, x->base_seq);
        wbuf_put_u64(b, x->end);
        wbuf_put_u64(b, (uint64_t) x->mtime_ns);
        wbuf_put_u64(b, x->last_seq);
        wbuf_put_u64(b, x->last_off);
        wbuf_put_u32(b, x->last_crc);
        wbuf_put_u64(b, x->last_lamport);
        wbuf_put_str(b, x->last_node, strlen(x->last_node));
        wbuf_put_u32(b, x->last_fence_idx);
        wbuf_put_u64(b, (uint64_t) x->max_time);
        wbuf_put_u32(b, (uint32_t) x->n_damage);
        for (size_t i = 0; i < x->n_damage; i++) {
                wbuf_put_u64(b, x->damage[i].first_seq);
                wbuf_put_u64(b, x->damage[i].last_seq);
                wbuf_put_u64(b, x->damage[i].off);
                wbuf_put_u64(b, x->damage[i].end);
                wbuf_put_u8(b, x->damage[i].kind);
        }
        wbuf_put_u32(b, (uint32_t) x->n_index);
        for (size_t i = 0; i < x->n_index; i++) {
                wbuf_put_u64(b, x->index[i].off);
                wbuf_put_u64(b, (uint64_t) x->index[i].max_before);
        }
        wbuf_put_u32(b, (uint32_t) x->n_nodes);
        for (size_t i = 0; i < x->n_nodes; i++) {
                wbuf_put_str(b, x->nodes[i].name, strlen(x->nodes[i].name));
                wbuf_put_u64(b, x->nodes[i].post_id);
                wbuf_put_u64(b, x->nodes[i].seq);
        }
        if (b->failed)
                return -ENOMEM;
        wbuf_put_u32(b, crc32c(0, b->data + start, b->len - start));
        return b->failed ? -ENOMEM : 0;
}

void chatidx_free(struct chatidx *x)
{
        free(x->index);
        free(x->nodes);
        x->index = NULL;
        x->nodes = NULL;
        x->n_index = x->n_nodes = 0;
}

static int bad(const char **why, const char *what)
{
        *why = what;
        return -EBADMSG;
}

static bool damage_starts_at(const struct chatidx *x, uint64_t off)
{
        for (size_t i = 0; i < x->n_damage; i++)
                if (x->damage[i].off == off)
                        return true;
        return false;
}

int chatidx_decode(const uint8_t *p, size_t len, struct chatidx *x, const char **why)
{
        struct rbuf r = { .p = p, .len = len - 4 };
        const char *dummy;
        uint32_t n, magic;

        if (!why)
                why = &dummy;
        *x = (struct chatidx) {0};
        if (len < 8)
                return bad(why, "too short");
        magic = rbuf_u32(&r);
        if (magic == CHATIDX_MAGIC_V1)
                return bad(why, "written by an older dchatd (format DCX1)");
        if (magic != CHATIDX_MAGIC)
                return bad(why, "not a checkpoint (bad magic)");
        if (crc32c(0, p, len - 4) != ((uint32_t) p[len - 4] << 24 | (uint32_t) p[len - 3] << 16 |
                                      (uint32_t) p[len - 2] << 8 | p[len - 1]))
                return bad(why, "checksum mismatch");
        x->flags = rbuf_u32(&r);
        if (x->flags & ~(CHATIDX_RESCAN | CHATIDX_UNSYNCED))
                return bad(why, "unknown flags");
        x->base_seq = rbuf_u64(&r);
        x->end = rbuf_u64(&r);
        x->mtime_ns = (int64_t) rbuf_u64(&r);
        x->last_seq = rbuf_u64(&r);
        x->last_off = rbuf_u64(&r);
        x->last_crc = rbuf_u32(&r);
        x->last_lamport = rbuf_u64(&r);
        if (dchat_str_copy(x->last_node, sizeof x->last_node, rbuf_str(&r)) < 0 ||
            (x->last_node[0] && !node_name_valid(x->last_node)))
                return bad(why, "bad last node name");
        x->last_fence_idx = rbuf_u32(&r);
        x->max_time = (int64_t) rbuf_u64(&r);
        n = rbuf_u32(&r);
        if (r.bad || n > CHATLOG_DAMAGE_MAX || x->last_seq < x->base_seq)
                return bad(why, "truncated or inconsistent header");
        x->n_damage = n;
        for (size_t i = 0; i < n; i++) {
                struct chatlog_damage *d = &x->damage[i], *prev = i ? &x->damage[i - 1] : NULL;
                d->first_seq = rbuf_u64(&r);
                d->last_seq = rbuf_u64(&r);
                d->off = rbuf_u64(&r);
                d->end = rbuf_u64(&r);
                d->kind = rbuf_u8(&r);
                /* in order, apart, inside what is covered; a part may stand for no seq at all */
                if (r.bad || d->kind < DAMAGE_HEADER || d->kind > DAMAGE_TAIL || d->off >= d->end ||
                    d->end > x->end || d->first_seq <= x->base_seq || d->first_seq > d->last_seq + 1 ||
                    d->last_seq > x->last_seq || (prev && (d->off < prev->end || d->first_seq <= prev->last_seq)))
                        return bad(why, "bad list of damaged parts");
        }
        n = rbuf_u32(&r);
        if (r.bad || n > (r.len - r.off) / 16)
                return bad(why, "truncated or inconsistent header");
        if (n != (x->last_seq - x->base_seq + CHATLOG_INDEX_EVERY - 1) / CHATLOG_INDEX_EVERY)
                return bad(why, "index size does not match the records covered");
        if (n && !(x->index = calloc(n, sizeof *x->index)))
                return -ENOMEM;
        x->n_index = n;
        for (size_t i = 0; i < n; i++) {
                x->index[i].off = rbuf_u64(&r);
                x->index[i].max_before = (int64_t) rbuf_u64(&r);
                /* slots of seqs in one damaged part all point at its start */
                if (i > 0 && (x->index[i].off < x->index[i - 1].off ||
                              (x->index[i].off == x->index[i - 1].off && !damage_starts_at(x, x->index[i].off)) ||
                              x->index[i].max_before < x->index[i - 1].max_before)) {
                        chatidx_free(x);
                        return bad(why, "index not increasing");
                }
        }
        if (n && (x->index[n - 1].off > x->last_off || x->last_off >= x->end)) {
                chatidx_free(x);
                return bad(why, "index beyond the covered end");
        }
        n = rbuf_u32(&r);
        if (r.bad || n > (r.len - r.off) / 18) {
                chatidx_free(x);
                return bad(why, "truncated node table");
        }
        if (n && !(x->nodes = calloc(n, sizeof *x->nodes))) {
                chatidx_free(x);
                return -ENOMEM;
        }
        x->n_nodes = n;
        for (size_t i = 0; i < n; i++) {
                struct chatlog_node *nd = &x->nodes[i];
                if (dchat_str_copy(nd->name, sizeof nd->name, rbuf_str(&r)) < 0 || !node_name_valid(nd->name)) {
                        chatidx_free(x);
                        return bad(why, "bad node name");
                }
                nd->post_id = rbuf_u64(&r);
                nd->seq = rbuf_u64(&r);
                if (nd->seq > x->last_seq) {
                        chatidx_free(x);
                        return bad(why, "node table beyond the last seq");
                }
        }
        if (r.bad || r.off != r.len) {
                chatidx_free(x);
                return bad(why, "truncated or trailing bytes");
        }
        return 0;
}

int chatidx_load(int dirfd, struct chatidx *x, const char **why)
{
        int fd = openat(dirfd, CHATIDX_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        uint8_t *buf = NULL;
        size_t done = 0;
        int r;

        *x = (struct chatidx) {0};
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                r = -errno;
                *why = "cannot stat it";
                goto out;
        }
        if (!S_ISREG(st.st_mode) || (uint64_t) st.st_size > CHATIDX_MAX) {
                r = -EBADMSG;
                *why = "not a regular file, or too large";
                goto out;
        }
        buf = malloc((size_t) st.st_size + 1);
        if (!buf) {
                r = -ENOMEM;
                goto out;
        }
        while (done < (size_t) st.st_size) {
                ssize_t k = read(fd, buf + done, (size_t) st.st_size - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -EBADMSG;
                        *why = k < 0 ? "read error" : "the file shrank while read";
                        goto out;
                }
                done += (size_t) k;
        }
        r = chatidx_decode(buf, done, x, why);
out:
        free(buf);
        close(fd);
        return r;
}

int chatidx_save(int dirfd, const struct chatidx *x)
{
        struct wbuf b = {0};
        int r;

        r = chatidx_encode(&b, x);
        if (r < 0) {
                wbuf_free(&b);
                return r;
        }
        /* until the directory is synced a crash may bring back the previous checkpoint
         * (harmless, it is checked against the log), but the caller must not count on
         * this one: an error then too */
        r = durable_replace(dirfd, CHATIDX_FILE, b.data, b.len, NULL);
        wbuf_free(&b);
        return r;
}
