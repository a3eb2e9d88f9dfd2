/* SPDX-License-Identifier: MIT */
/*
 * chatlog.c — the server's durable, append-only chat log.
 *
 * One file, DIR/chat.log, a sequence of records:
 *
 *   +-------------+-------------+-------------+-------------+------------+
 *   | magic "DCL1"| body length | crc32c body | crc32c hdr  | body ...   |
 *   +-------------+-------------+-------------+-------------+------------+
 *
 * Four big-endian u32 (16 bytes), the last one the CRC-32C of the first 12
 * header bytes, so a torn or garbled header is told apart from a good one;
 * then the body, proto_put_entry() of the entry.  Seqs run 1, 2, 3, ...
 * without gaps and the fences (lamport, node, fence_idx) strictly increase.
 * A log that goes on from an archived one (chatlog_archive) starts with a
 * start record ("DCH1") instead, and its seqs with the one after it.
 *
 * Opening the log reads it from the end of what the checkpoint
 * DIR/chat.log.idx (chatidx.c) covers, if that checks out against the log,
 * else from the start.  At the first record that does not check out, the
 * rest of the file is copied aside to chat.log.corrupt-TIME-OFFSET (and
 * synced), and only then is the file cut there.  An append is one write
 * and one fdatasync for the whole batch; the in-memory state moves on only
 * after the sync succeeded.  Nothing of the log is kept in memory but a
 * sparse index (every 256th record: its offset and the greatest entry time
 * before it, for the search by time) and the last post id of every node.
 *
 * Pure file I/O: no logging, no event loop; errors are negative errnos and
 * recovery is reported through struct chatlog_recovery.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dchatd.h"
#include "chatidx.h"

#define CHATLOG_FILE            "chat.log"
#define CHATLOG_MAGIC           UINT32_C(0x44434C31)    /* "DCL1" */
#define CHATLOG_START_MAGIC     UINT32_C(0x44434831)    /* "DCH1": the start record */
#define CHATLOG_HDR             16
#define CHATLOG_CHECKPOINT_EVERY 65536                  /* records between checkpoints */
/* base_seq, lamport, node, fence_idx, max_time, n_nodes */
#define CHATLOG_START_MIN       (8 + 8 + 2 + 4 + 8 + 4)
/* seq, lamport, node, fence_idx, post_id, time, utc_offset, author, text */
#define CHATLOG_BODY_MIN        (8 + 8 + 2 + 4 + 8 + 8 + 4 + 2 + 2)
#define CHATLOG_BUF             (2 * (CHATLOG_HDR + DCHAT_FRAME_MAX))
#define CHATLOG_PREALLOC        (UINT64_C(1) << 20)     /* blocks allocated ahead of the end */

struct chatlog {
        int fd;
        int dirfd;
        bool broken;                    /* a failed append could not be undone */
        uint64_t syncs;                 /* fdatasyncs by appends, for statistics */
        uint64_t prealloc_end;          /* blocks are allocated up to here (beyond the file's size) */
        bool no_prealloc;               /* the file system cannot */
        bool damaged;                   /* a read found a bad record: no more checkpoints */

        uint64_t base_seq;              /* seqs up to this one are archived; the start record says so */
        uint64_t data_start;            /* offset of the first entry record (after the start record) */
        uint64_t end;                   /* committed end of the file */
        uint64_t last_seq;
        uint64_t last_off;              /* offset of record last_seq ... */
        uint32_t last_crc;              /* ... and its body CRC */
        uint64_t last_lamport;
        char last_node[DCHAT_NAME_MAX + 1];
        uint32_t last_fence_idx;
        int64_t max_time;               /* greatest entry time (INT64_MIN: none) */
        uint64_t checkpoint_seq;        /* last seq the checkpoint on disk covers */

        struct chatlog_ix *index;       /* index[k]: record base_seq + k * 256 + 1 */
        size_t n_index, cap_index;

        struct chatlog_node *nodes;     /* [0, n_nodes) committed */
        size_t n_nodes, cap_nodes;

        struct wbuf out;                /* the batch being appended */
        uint8_t *buf;                   /* reads: CHATLOG_BUF bytes */
};

/* --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ------------------- */

/* slicing by 8: table[k][i] is the CRC of byte i followed by k zero bytes */
static uint32_t crc32c_table[8][256];

static void crc32c_init(void)
{
        if (crc32c_table[0][1])
                return;
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (unsigned k = 0; k < 8; k++)
                        c = c & 1 ? (c >> 1) ^ UINT32_C(0x82F63B78) : c >> 1;
                crc32c_table[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++)
                for (unsigned k = 1; k < 8; k++)
                        crc32c_table[k][i] = (crc32c_table[k - 1][i] >> 8) ^
                                             crc32c_table[0][crc32c_table[k - 1][i] & 0xff];
}

/* crc32c(0, p, n) is the CRC of p; pass a previous result to continue it. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
        const uint32_t (*t)[256] = (const uint32_t (*)[256]) crc32c_table;
        const uint8_t *b = p;

        crc32c_init();
        crc = ~crc;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        /* eight bytes a step (every view and every start reads the log through this) */
        for (; n >= 8; b += 8, n -= 8) {
                uint64_t v;
                memcpy(&v, b, 8);
                v ^= crc;
                crc = t[7][v & 0xff] ^ t[6][(v >> 8) & 0xff] ^ t[5][(v >> 16) & 0xff] ^
                      t[4][(v >> 24) & 0xff] ^ t[3][(v >> 32) & 0xff] ^ t[2][(v >> 40) & 0xff] ^
                      t[1][(v >> 48) & 0xff] ^ t[0][v >> 56];
        }
#endif
        while (n--)
                crc = t[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
        return ~crc;
}

/* --- helpers ------------------------------------------------------------------- */

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

static void header_make(uint8_t h[CHATLOG_HDR], uint32_t magic, const uint8_t *body, uint32_t len)
{
        put_be32(h, magic);
        put_be32(h + 4, len);
        put_be32(h + 8, crc32c(0, body, len));
        put_be32(h + 12, crc32c(0, h, 12));
}

enum header_state {
        HEADER_OK,
        HEADER_BAD_MAGIC,
        HEADER_BAD_CRC,
        HEADER_BAD_LENGTH,
        HEADER_START,                   /* a good header of the start record */
};

static enum header_state header_check(const uint8_t h[CHATLOG_HDR], uint32_t *len)
{
        uint32_t magic = get_be32(h);

        if (magic != CHATLOG_MAGIC && magic != CHATLOG_START_MAGIC)
                return HEADER_BAD_MAGIC;
        if (get_be32(h + 12) != crc32c(0, h, 12))
                return HEADER_BAD_CRC;
        *len = get_be32(h + 4);
        if (magic == CHATLOG_START_MAGIC)
                return *len < CHATLOG_START_MIN || *len > DCHAT_FRAME_MAX ? HEADER_BAD_LENGTH : HEADER_START;
        if (*len < CHATLOG_BODY_MIN || *len > DCHAT_FRAME_MAX)
                return HEADER_BAD_LENGTH;
        return HEADER_OK;
}

/* Decodes a body whose CRC was checked; the whole body must be one entry. */
static int body_decode(const uint8_t *body, uint32_t len, struct dchat_entry *e)
{
        struct rbuf r = { .p = body, .len = len };

        if (proto_get_entry(&r, e) < 0 || r.off != r.len)
                return -EBADMSG;
        return 0;
}

int fence_cmp(uint64_t la, const char *na, uint32_t ia, uint64_t lb, const char *nb, uint32_t ib)
{
        int r;

        if (la != lb)
                return la < lb ? -1 : 1;
        r = strcmp(na, nb);
        if (r != 0)
                return r < 0 ? -1 : 1;
        if (ia != ib)
                return ia < ib ? -1 : 1;
        return 0;
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got)
{
        uint8_t *p = buf;
        size_t done = 0;

        *got = 0;
        while (done < n) {
                ssize_t k = pread(fd, p + done, n - done, (off_t) (off + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno > 0 ? -errno : -EIO;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        *got = done;
        return 0;
}

static int pwrite_full(int fd, const void *buf, size_t n, uint64_t off)
{
        const uint8_t *p = buf;
        size_t done = 0;

        while (done < n) {
                ssize_t k = pwrite(fd, p + done, n - done, (off_t) (off + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO;
                done += (size_t) k;
        }
        return 0;
}

/* Makes room for need elements; returns the (maybe moved) array, NULL if out of memory. */
static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
        size_t c;
        void *q;

        if (need <= *cap)
                return p;
        c = *cap ? *cap : 16;
        while (c < need) {
                if (c > SIZE_MAX / 2 / size)
                        return NULL;
                c *= 2;
        }
        q = realloc(p, c * size);
        if (!q)
                return NULL;
        *cap = c;
        return q;
}

#define GROW(array, cap, need)                                                  \
        ({                                                                      \
                void *_q = grow((array), &(cap), (need), sizeof *(array));      \
                if (_q)                                                         \
                        (array) = _q;                                           \
                _q ? 0 : -ENOMEM;                                               \
        })

/* Looks among the first n node slots. */
static struct chatlog_node *node_find(struct chatlog *log, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(log->nodes[i].name, name))
                        return &log->nodes[i];
        return NULL;
}

/* --- opening and recovery ---------------------------------------------------------- */

/* A read window over the file for the scan, so it is not two syscalls a record. */
struct scan {
        int fd;
        uint8_t *buf;
        uint64_t start;                 /* file offset of buf[0] */
        size_t len;                     /* valid bytes in buf */
};

/* Makes [off, off + n) readable at *ret; -ENODATA if the file ends first. */
static int scan_get(struct scan *s, uint64_t off, size_t n, const uint8_t **ret)
{
        size_t got;
        int r;

        if (off >= s->start && off + n <= s->start + s->len) {
                *ret = s->buf + (off - s->start);
                return 0;
        }
        r = pread_full(s->fd, s->buf, CHATLOG_BUF, off, &got);
        if (r < 0)
                return r;
        s->start = off;
        s->len = got;
        if (got < n)
                return -ENODATA;
        *ret = s->buf;
        return 0;
}

/* Copies [off, size) of the log into a new file in dirfd, synced.  */
static int save_tail(struct chatlog *log, int dirfd, const char *dir, uint64_t off, uint64_t size,
                     struct chatlog_recovery *rec)
{
        char name[NAME_MAX + 1];
        int fd = -1, r;

        for (unsigned attempt = 0; attempt < 100; attempt++) {
                if (attempt == 0)
                        snprintf(name, sizeof name, CHATLOG_FILE ".corrupt-%lld-%" PRIu64,
                                 (long long) time(NULL), off);
                else
                        snprintf(name, sizeof name, CHATLOG_FILE ".corrupt-%lld-%" PRIu64 ".%u",
                                 (long long) time(NULL), off, attempt);
                fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
                if (fd >= 0 || errno != EEXIST)
                        break;
        }
        if (fd < 0)
                return -errno;

        for (uint64_t pos = off; pos < size;) {
                size_t want = size - pos < CHATLOG_BUF ? (size_t) (size - pos) : CHATLOG_BUF, got;

                r = pread_full(log->fd, log->buf, want, pos, &got);
                if (r < 0)
                        goto fail;
                if (got == 0)
                        break;
                r = pwrite_full(fd, log->buf, got, pos - off);
                if (r < 0)
                        goto fail;
                pos += got;
        }
        if (fsync(fd) < 0 || fsync(dirfd) < 0) {
                r = -errno;
                goto fail;
        }
        close(fd);
        snprintf(rec->saved_to, sizeof rec->saved_to, "%s/%s", dir, name);
        return 0;

fail:
        close(fd);
        (void) unlinkat(dirfd, name, 0);
        return r;
}

/* --- the start record ------------------------------------------------------------ */

/*
 * A log that continues an archived one (chatlog_archive) begins with a start
 * record: a header like an entry's but with the magic "DCH1", and a body
 * that carries on what the archived part leaves behind — its last seq, the
 * last fence, the greatest entry time and every node's last post id and
 * seq, so that seqs, fencing and exactly-once go on across the cut:
 *
 *   base_seq (u64) lamport (u64) node (str) fence_idx (u32) max_time (i64)
 *   n_nodes (u32), n_nodes × { name (str), post_id (u64), seq (u64) }
 */
static void start_put(struct wbuf *b, const struct chatlog *log)
{
        wbuf_put_u64(b, log->last_seq);
        wbuf_put_u64(b, log->last_lamport);
        wbuf_put_str(b, log->last_node, strlen(log->last_node));
        wbuf_put_u32(b, log->last_fence_idx);
        wbuf_put_u64(b, (uint64_t) log->max_time);
        wbuf_put_u32(b, (uint32_t) log->n_nodes);
        for (size_t i = 0; i < log->n_nodes; i++) {
                wbuf_put_str(b, log->nodes[i].name, strlen(log->nodes[i].name));
                wbuf_put_u64(b, log->nodes[i].post_id);
                wbuf_put_u64(b, log->nodes[i].seq);
        }
}

/* Takes in a start record's body (its CRC checked): the log continues from there. */
static int start_parse(struct chatlog *log, const uint8_t *body, uint32_t len)
{
        struct rbuf r = { .p = body, .len = len };
        uint32_t n;
        int k;

        log->base_seq = log->last_seq = rbuf_u64(&r);
        log->last_lamport = rbuf_u64(&r);
        if (dchat_str_copy(log->last_node, sizeof log->last_node, rbuf_str(&r)) < 0 ||
            !node_name_valid(log->last_node))
                return -EBADMSG;
        log->last_fence_idx = rbuf_u32(&r);
        log->max_time = (int64_t) rbuf_u64(&r);
        n = rbuf_u32(&r);
        if (r.bad || n > len / 18 || log->base_seq == 0)
                return -EBADMSG;
        k = GROW(log->nodes, log->cap_nodes, n);
        if (k < 0)
                return k;
        log->n_nodes = 0;
        for (uint32_t i = 0; i < n; i++) {
                struct chatlog_node *nd = &log->nodes[i];
                *nd = (struct chatlog_node) {0};
                if (dchat_str_copy(nd->name, sizeof nd->name, rbuf_str(&r)) < 0 || !node_name_valid(nd->name))
                        return -EBADMSG;
                nd->post_id = rbuf_u64(&r);
                nd->seq = rbuf_u64(&r);
                if (nd->seq > log->base_seq)
                        return -EBADMSG;
        }
        if (r.bad || r.off != r.len)
                return -EBADMSG;
        log->n_nodes = n;
        return 0;
}

/*
 * Reads the start record at offset 0 if there is one: 1 if it was taken
 * in (log->data_start set), 0 if the log has none, -EBADMSG (and
 * rec->reason) if it is there but damaged — that is never cut off: seqs
 * would start again at 1.
 */
static int start_read(struct chatlog *log, uint64_t size, struct chatlog_recovery *rec)
{
        uint8_t h[CHATLOG_HDR];
        uint32_t len;
        size_t got;
        int r;

        if (size < CHATLOG_HDR)
                return 0;
        r = pread_full(log->fd, h, sizeof h, 0, &got);
        if (r < 0)
                return r;
        if (get_be32(h) != CHATLOG_START_MAGIC)
                return 0;
        if (header_check(h, &len) != HEADER_START || CHATLOG_HDR + (uint64_t) len > size)
                goto bad;
        r = pread_full(log->fd, log->buf, len, CHATLOG_HDR, &got);
        if (r < 0)
                return r;
        if (got != len || crc32c(0, log->buf, len) != get_be32(h + 8))
                goto bad;
        r = start_parse(log, log->buf, len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                goto bad;
        log->data_start = CHATLOG_HDR + len;
        return 1;
bad:
        snprintf(rec->reason, sizeof rec->reason,
                 "the start record (written when the log was archived) is damaged; refusing to open");
        return -EBADMSG;
}

/*
 * Reads every record from offset from on, moving the in-memory state on.
 * Sets *bad_off to the offset of the first bad record (or the file size)
 * and fills rec->reason.  Fails only on read errors or allocation
 * failures: those are not corruption and must never cut anything.
 */
static int scan(struct chatlog *log, uint64_t from, uint64_t size, uint64_t *bad_off, struct chatlog_recovery *rec)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct scan s = { .fd = log->fd, .buf = log->buf };
        uint64_t off = from;
        int r;

        if (!e)
                return -ENOMEM;

        while (off < size) {
                uint64_t n = log->last_seq + 1;
                const uint8_t *p, *body;
                uint8_t h[CHATLOG_HDR];
                uint32_t len;
                struct chatlog_node *nd;

                r = scan_get(&s, off, CHATLOG_HDR, &p);
                if (r == -ENODATA) {
                        snprintf(rec->reason, sizeof rec->reason, "torn header at offset %" PRIu64, off);
                        break;
                }
                if (r < 0)
                        return r;
                memcpy(h, p, CHATLOG_HDR);      /* the window may move for the body */
                switch (header_check(h, &len)) {
                case HEADER_OK:
                        break;
                case HEADER_BAD_MAGIC:
                case HEADER_START:              /* only at offset 0, read by start_read */
                        snprintf(rec->reason, sizeof rec->reason, "bad magic at offset %" PRIu64, off);
                        goto done;
                case HEADER_BAD_CRC:
                        snprintf(rec->reason, sizeof rec->reason, "header checksum mismatch at offset %" PRIu64,
                                 off);
                        goto done;
                case HEADER_BAD_LENGTH:
                        snprintf(rec->reason, sizeof rec->reason, "bad record length %" PRIu32 " at offset %" PRIu64,
                                 get_be32(h + 4), off);
                        goto done;
                }

                r = scan_get(&s, off + CHATLOG_HDR, len, &body);
                if (r == -ENODATA) {
                        snprintf(rec->reason, sizeof rec->reason,
                                 "torn record %" PRIu64 " at offset %" PRIu64 " (body cut short)", n, off);
                        break;
                }
                if (r < 0)
                        return r;
                if (crc32c(0, body, len) != get_be32(h + 8)) {
                        snprintf(rec->reason, sizeof rec->reason,
                                 "checksum mismatch in record %" PRIu64 " at offset %" PRIu64, n, off);
                        break;
                }
                if (body_decode(body, len, e) < 0) {
                        snprintf(rec->reason, sizeof rec->reason,
                                 "undecodable record %" PRIu64 " at offset %" PRIu64, n, off);
                        break;
                }
                if (e->seq != n) {
                        snprintf(rec->reason, sizeof rec->reason,
                                 "sequence gap at offset %" PRIu64 ": seq %" PRIu64 ", expected %" PRIu64,
                                 off, e->seq, n);
                        break;
                }
                if (fence_cmp(e->lamport, e->node, e->fence_idx,
                              log->last_lamport, log->last_node, log->last_fence_idx) <= 0) {
                        snprintf(rec->reason, sizeof rec->reason,
                                 "fence not increasing in record %" PRIu64 " at offset %" PRIu64, n, off);
                        break;
                }

                /* a good record: take it in */
                if ((n - 1 - log->base_seq) % CHATLOG_INDEX_EVERY == 0) {
                        r = GROW(log->index, log->cap_index, log->n_index + 1);
                        if (r < 0)
                                return r;
                        log->index[log->n_index++] = (struct chatlog_ix) { off, log->max_time };
                }
                nd = node_find(log, log->n_nodes, e->node);
                if (!nd) {
                        r = GROW(log->nodes, log->cap_nodes, log->n_nodes + 1);
                        if (r < 0)
                                return r;
                        nd = &log->nodes[log->n_nodes++];
                        *nd = (struct chatlog_node) {0};
                        strcpy(nd->name, e->node);
                }
                if (e->post_id > nd->post_id) {
                        nd->post_id = e->post_id;
                        nd->seq = n;
                }
                log->last_seq = n;
                log->last_off = off;
                log->last_crc = get_be32(h + 8);
                log->last_lamport = e->lamport;
                strcpy(log->last_node, e->node);
                log->last_fence_idx = e->fence_idx;
                if (e->time > log->max_time)
                        log->max_time = e->time;
                rec->scanned++;
                off += CHATLOG_HDR + len;
        }
done:
        *bad_off = off;
        return 0;
}

static int64_t mtime_ns(const struct stat *st)
{
        return (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Reads the header and the first body bytes (the seq) of the record at off, which must end by end. */
static int peek_record(struct chatlog *log, uint64_t off, uint64_t end, uint64_t *seq, uint32_t *len, uint32_t *crc)
{
        uint8_t h[CHATLOG_HDR + 8];
        size_t got;
        int r;

        r = pread_full(log->fd, h, sizeof h, off, &got);
        if (r < 0)
                return r;
        if (got != sizeof h || header_check(h, len) != HEADER_OK || off + CHATLOG_HDR + *len > end)
                return -EBADMSG;
        *crc = get_be32(h + 8);
        *seq = (uint64_t) get_be32(h + CHATLOG_HDR) << 32 | get_be32(h + CHATLOG_HDR + 4);
        return 0;
}

/*
 * Checks a loaded checkpoint against the log itself: it must cover a prefix
 * of the file that starts where this log's records start, every index slot
 * must point at a good record header with the seq it stands for, and the
 * last record it covers must be there whole, with its CRC, seq and fence,
 * ending exactly where the checkpoint ends.  -EBADMSG with *why otherwise.
 */
static int checkpoint_verify(struct chatlog *log, const struct chatidx *x, const struct stat *st, const char **why)
{
        uint64_t size = (uint64_t) st->st_size;
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        uint64_t seq;
        uint32_t len, crc;
        size_t got;
        int r;

        if (!e)
                return -ENOMEM;
        if (x->end > size) {
                *why = "it covers more than the log holds";
                return -EBADMSG;
        }
        if (x->end == size && x->mtime_ns != mtime_ns(st)) {
                *why = "the log was modified after it was written (same size, another mtime)";
                return -EBADMSG;
        }
        if (x->base_seq != log->base_seq) {
                *why = "it is for another log (the first seq differs)";
                return -EBADMSG;
        }
        if (x->last_seq == x->base_seq) {
                if (x->end != log->data_start || x->n_index || x->n_nodes != log->n_nodes) {
                        *why = "it does not match the empty log";
                        return -EBADMSG;
                }
                return 0;
        }
        if (x->index[0].off != log->data_start || x->index[0].max_before != log->max_time) {
                *why = "its index does not start where the log's records do";
                return -EBADMSG;
        }
        /* about 64 slots spread over the index, the first and the last among them: a few ms even
         * from disk for millions of records; a wrong slot elsewhere is caught when read (damaged()) */
        size_t step = x->n_index / 64 + 1;
        for (size_t i = 0;; i += step) {
                size_t k = i < x->n_index - 1 ? i : x->n_index - 1;
                r = peek_record(log, x->index[k].off, x->end, &seq, &len, &crc);
                if (r < 0 && r != -EBADMSG)
                        return r;
                if (r < 0 || seq != x->base_seq + k * CHATLOG_INDEX_EVERY + 1) {
                        *why = "an index slot does not point at the record it stands for";
                        return -EBADMSG;
                }
                if (k == x->n_index - 1)
                        break;
        }
        r = peek_record(log, x->last_off, x->end, &seq, &len, &crc);
        if (r < 0 && r != -EBADMSG)
                return r;
        if (r < 0 || x->last_off + CHATLOG_HDR + len != x->end || crc != x->last_crc || seq != x->last_seq) {
                *why = "the last record it covers is not in the log";
                return -EBADMSG;
        }
        r = pread_full(log->fd, log->buf, len, x->last_off + CHATLOG_HDR, &got);
        if (r < 0)
                return r;
        if (got != len || crc32c(0, log->buf, len) != crc || body_decode(log->buf, len, e) < 0 ||
            fence_cmp(e->lamport, e->node, e->fence_idx, x->last_lamport, x->last_node, x->last_fence_idx) != 0 ||
            e->time > x->max_time) {
                *why = "the last record it covers differs from the log's";
                return -EBADMSG;
        }
        return 0;
}

/*
 * Takes the state from DIR/chat.log.idx if it checks out against the log:
 * 1 if taken, 0 if not (none, or discarded: rec->checkpoint_warning says
 * why), or a negative errno on read or allocation errors.
 */
static int checkpoint_take(struct chatlog *log, const struct stat *st, struct chatlog_recovery *rec)
{
        struct chatidx x;
        const char *why = "unknown";
        int r;

        r = chatidx_load(log->dirfd, &x, &why);
        if (r == -ENOENT)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                r = checkpoint_verify(log, &x, st, &why);
        if (r < 0) {
                chatidx_free(&x);
                if (r == -ENOMEM)
                        return r;
                snprintf(rec->checkpoint_warning, sizeof rec->checkpoint_warning, "%s",
                         r == -EBADMSG ? why : strerror(-r));
                return 0;
        }
        free(log->index);
        log->index = x.index;
        log->n_index = log->cap_index = x.n_index;
        free(log->nodes);
        log->nodes = x.nodes;
        log->n_nodes = log->cap_nodes = x.n_nodes;
        log->end = x.end;
        log->last_seq = x.last_seq;
        log->last_off = x.last_off;
        log->last_crc = x.last_crc;
        log->last_lamport = x.last_lamport;
        strcpy(log->last_node, x.last_node);
        log->last_fence_idx = x.last_fence_idx;
        log->max_time = x.max_time;
        log->checkpoint_seq = x.last_seq;
        rec->checkpoint_used = true;
        rec->checkpoint_seq = x.last_seq;
        return 1;
}

int chatlog_open(const char *dir, struct chatlog **ret, struct chatlog_recovery *rec)
{
        struct chatlog_recovery dummy;
        struct chatlog *log = NULL;
        int dirfd = -1, r;
        bool created = false;
        uint64_t bad_off = 0, from;
        struct stat st;

        if (!rec)
                rec = &dummy;
        *rec = (struct chatlog_recovery) {0};

        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return -errno;

        log = calloc(1, sizeof *log);
        if (!log) {
                r = -ENOMEM;
                goto fail;
        }
        log->fd = -1;
        log->dirfd = dirfd;
        log->max_time = INT64_MIN;
        log->buf = malloc(CHATLOG_BUF);
        if (!log->buf) {
                r = -ENOMEM;
                goto fail;
        }

        log->fd = openat(dirfd, CHATLOG_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (log->fd < 0 && errno == ENOENT) {
                log->fd = openat(dirfd, CHATLOG_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
                created = log->fd >= 0;
        }
        if (log->fd < 0) {
                r = -errno;
                goto fail;
        }
        if (flock(log->fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                goto fail;
        }
        if (created && fsync(dirfd) < 0) {
                r = -errno;
                goto fail;
        }
        if (fstat(log->fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        if (!S_ISREG(st.st_mode)) {
                r = -EBADFD;
                goto fail;
        }

        r = start_read(log, (uint64_t) st.st_size, rec);
        if (r < 0)
                goto fail;
        r = checkpoint_take(log, &st, rec);
        if (r < 0)
                goto fail;
        from = r > 0 ? log->end : log->data_start;
        r = scan(log, from, (uint64_t) st.st_size, &bad_off, rec);
        if (r < 0)
                goto fail;

        if (bad_off < (uint64_t) st.st_size) {
                /* keep the bad tail aside before destroying anything */
                r = save_tail(log, dirfd, dir, bad_off, (uint64_t) st.st_size, rec);
                if (r < 0)
                        goto fail;
                if (ftruncate(log->fd, (off_t) bad_off) < 0 || fdatasync(log->fd) < 0) {
                        r = -errno;
                        goto fail;
                }
                rec->cut_bytes = (uint64_t) st.st_size - bad_off;
        } else
                rec->reason[0] = '\0';

        log->end = bad_off;
        rec->records = log->last_seq - log->base_seq;
        rec->base_seq = log->base_seq;
        *ret = log;
        return 0;

fail:
        if (!log)
                close(dirfd);
        chatlog_close(log);
        return r;
}

struct chatlog *chatlog_close(struct chatlog *log)
{
        if (!log)
                return NULL;
        if (log->fd >= 0)
                close(log->fd);
        if (log->dirfd >= 0)
                close(log->dirfd);
        free(log->index);
        free(log->nodes);
        wbuf_free(&log->out);
        free(log->buf);
        free(log);
        return NULL;
}

int chatlog_checkpoint(struct chatlog *log)
{
        struct chatidx x = {
                .base_seq = log->base_seq,
                .end = log->end,
                .last_seq = log->last_seq,
                .last_off = log->last_off,
                .last_crc = log->last_crc,
                .last_lamport = log->last_lamport,
                .last_fence_idx = log->last_fence_idx,
                .max_time = log->max_time,
                .index = log->index,
                .n_index = log->n_index,
                .nodes = log->nodes,
                .n_nodes = log->n_nodes,
        };
        struct stat st;
        int r;

        if (log->broken)
                return -EIO;
        if (log->damaged)
                return -EBADMSG;
        if (fstat(log->fd, &st) < 0)
                return -errno;
        x.mtime_ns = mtime_ns(&st);
        strcpy(x.last_node, log->last_node);
        r = chatidx_save(log->dirfd, &x);
        if (r >= 0)
                log->checkpoint_seq = log->last_seq;
        return r;
}

bool chatlog_checkpoint_due(const struct chatlog *log)
{
        return log->last_seq - log->checkpoint_seq >= CHATLOG_CHECKPOINT_EVERY;
}

/* --- appending ------------------------------------------------------------------ */

/*
 * Allocate the log's blocks ahead of its end, a megabyte at a time, without
 * changing its size (FALLOC_FL_KEEP_SIZE: readers and recovery see nothing).
 * An append then needs no block allocation, so its fdatasync commits less
 * metadata: on ext4 here ~145 us instead of ~175 us per sync.  Best effort:
 * with a full disk, or a file system that cannot, appends go on without it.
 */
static void prealloc(struct chatlog *log, uint64_t need)
{
        if (log->no_prealloc || need <= log->prealloc_end)
                return;
        uint64_t to = (need + CHATLOG_PREALLOC - 1) / CHATLOG_PREALLOC * CHATLOG_PREALLOC;
        if (fallocate(log->fd, FALLOC_FL_KEEP_SIZE, (off_t) log->end, (off_t) (to - log->end)) == 0)
                log->prealloc_end = to;
        else if (errno == EOPNOTSUPP || errno == ENOSYS)
                log->no_prealloc = true;
}

static bool entry_valid(const struct dchat_entry *e)
{
        if (!memchr(e->node, '\0', sizeof e->node) || !node_name_valid(e->node))
                return false;
        if (!memchr(e->author, '\0', sizeof e->author) ||
            text_validate(e->author, strlen(e->author), NULL) < 0)
                return false;
        if (e->text_len > DCHAT_TEXT_MAX || text_validate(e->text, e->text_len, NULL) < 0)
                return false;
        if (e->utc_offset > DCHAT_UTC_OFFSET_MAX || e->utc_offset < -DCHAT_UTC_OFFSET_MAX)
                return false;
        if (e->post_id == 0)
                return false;
        return true;
}

static bool same_post(const struct dchat_entry *a, const struct dchat_entry *b)
{
        return a->post_id == b->post_id && a->time == b->time && a->utc_offset == b->utc_offset &&
               !strcmp(a->author, b->author) && a->text_len == b->text_len &&
               !memcmp(a->text, b->text, a->text_len);
}

/* The first entry of index slot k. */
static int slot_entry(struct chatlog *log, size_t k, struct dchat_entry *e)
{
        struct chatlog_cursor cur = { log->base_seq + (uint64_t) k * CHATLOG_INDEX_EVERY + 1, log->index[k].off };
        return chatlog_next(log, &cur, e);
}

/*
 * The stored entry with fence (lamport, node, idx) into *e: 0, -ENOENT if
 * there is none, -EXDEV if it could be in the archived part, or a read
 * error.  Fences strictly increase through the log, so a binary search
 * over the index slots' first entries finds the block of 256 to read.
 */
static int find_fence(struct chatlog *log, uint64_t lamport, const char *node, uint32_t idx, struct dchat_entry *e)
{
        struct chatlog_cursor cur;
        size_t lo = 0, hi = log->n_index;
        int r;

        if (log->n_index == 0)
                return log->base_seq ? -EXDEV : -ENOENT;
        r = slot_entry(log, 0, e);
        if (r < 0)
                return r;
        if (fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx) > 0)
                return log->base_seq ? -EXDEV : -ENOENT;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                r = slot_entry(log, mid, e);
                if (r < 0)
                        return r;
                if (fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx) <= 0)
                        lo = mid;
                else
                        hi = mid;
        }
        cur = (struct chatlog_cursor) { log->base_seq + (uint64_t) lo * CHATLOG_INDEX_EVERY + 1, log->index[lo].off };
        for (unsigned i = 0; i < CHATLOG_INDEX_EVERY && cur.seq <= log->last_seq; i++) {
                r = chatlog_next(log, &cur, e);
                if (r < 0)
                        return r;
                int c = fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx);
                if (c == 0)
                        return 0;
                if (c > 0)
                        break;
        }
        return -ENOENT;
}

/*
 * e's post id is not above the last one stored for its node: a copy of a
 * post sent again (after a lost link, or a late frame of an earlier
 * connection or life), or one that was never stored.  If it is stored, it
 * is under its own fence (a post goes again under another fence only after
 * the fence refused it), and a fence names one entry at most: look there,
 * among the entries of this batch first.  Sets e->seq for a DUPLICATE.
 */
static enum chatlog_result dedupe(struct chatlog *log, struct dchat_entry *e, const struct dchat_entry *batch,
                                  const enum chatlog_result *results, unsigned n)
{
        _cleanup_(freep) struct dchat_entry *f = NULL;
        const struct dchat_entry *found = NULL;
        int r;

        for (unsigned k = 0; k < n && !found; k++)
                if (results[k] == CHATLOG_STORED &&
                    fence_cmp(batch[k].lamport, batch[k].node, batch[k].fence_idx, e->lamport, e->node,
                              e->fence_idx) == 0)
                        found = &batch[k];
        if (!found) {
                f = malloc(sizeof *f);
                if (!f)
                        return CHATLOG_UNKNOWN;
                r = find_fence(log, e->lamport, e->node, e->fence_idx, f);
                if (r == -ENOENT)
                        return CHATLOG_STALE;
                if (r == -EXDEV) {
                        /* Before this file's first entry: archived.  The start record kept
                         * each node's last post id and seq, and a post id names one post. */
                        struct chatlog_node *nd = node_find(log, log->n_nodes, e->node);
                        if (nd && nd->post_id == e->post_id && nd->seq <= log->base_seq) {
                                e->seq = nd->seq;
                                return CHATLOG_DUPLICATE;
                        }
                        return CHATLOG_UNKNOWN;
                }
                if (r < 0)
                        return CHATLOG_UNKNOWN;         /* unreadable */
                found = f;
        }
        if (found->post_id != e->post_id)
                return CHATLOG_STALE;
        if (!same_post(found, e))
                return CHATLOG_CONFLICT;
        e->seq = found->seq;
        return CHATLOG_DUPLICATE;
}

int chatlog_append(struct chatlog *log, struct dchat_entry *entries, unsigned n,
                   enum chatlog_result *results)
{
        uint64_t seq = log->last_seq, lamport = log->last_lamport, last_rel = 0;
        const char *fnode = log->last_node;
        uint32_t fidx = log->last_fence_idx, last_crc = log->last_crc;
        int64_t max_time = log->max_time;
        size_t n_nodes = log->n_nodes, n_index = log->n_index;
        unsigned stored = 0;
        int r;

        for (unsigned i = 0; i < n; i++)
                results[i] = CHATLOG_FAILED;
        if (log->broken)
                return -EIO;

        /* room for everything the batch can add, so committing cannot fail */
        r = GROW(log->nodes, log->cap_nodes, log->n_nodes + n);
        if (r < 0)
                return r;
        r = GROW(log->index, log->cap_index, log->n_index + n / CHATLOG_INDEX_EVERY + 1);
        if (r < 0)
                return r;
        for (size_t i = 0; i < log->n_nodes; i++) {
                log->nodes[i].new_post_id = log->nodes[i].post_id;
                log->nodes[i].new_seq = log->nodes[i].seq;
        }
        wbuf_reset(&log->out);

        for (unsigned i = 0; i < n; i++) {
                struct dchat_entry *e = &entries[i];
                struct chatlog_node *nd;
                size_t start, len;

                if (!entry_valid(e)) {
                        e->seq = 0;
                        results[i] = CHATLOG_INVALID;
                        continue;
                }
                nd = node_find(log, n_nodes, e->node);
                if (nd && e->post_id <= nd->new_post_id) {
                        e->seq = 0;
                        results[i] = dedupe(log, e, entries, results, i);
                        continue;
                }
                if (e->lamport > DCHAT_CLOCK_MAX || e->lamport > lamport + DCHAT_CLOCK_JUMP_MAX) {
                        e->seq = 0;
                        results[i] = CHATLOG_BOUNDS;
                        continue;
                }
                if (fence_cmp(e->lamport, e->node, e->fence_idx, lamport, fnode, fidx) <= 0) {
                        e->seq = 0;
                        results[i] = CHATLOG_FENCED;
                        continue;
                }

                e->seq = seq + 1;
                start = log->out.len;
                wbuf_put(&log->out, (const uint8_t[CHATLOG_HDR]) {0}, CHATLOG_HDR);
                proto_put_entry(&log->out, e);
                if (log->out.failed) {
                        r = -ENOMEM;
                        goto undo;
                }
                len = log->out.len - start - CHATLOG_HDR;
                if (len > DCHAT_FRAME_MAX) {
                        /* cannot happen with valid entries; refuse rather than store what we cannot read */
                        log->out.len = start;
                        e->seq = 0;
                        results[i] = CHATLOG_INVALID;
                        continue;
                }
                header_make(log->out.data + start, CHATLOG_MAGIC, log->out.data + start + CHATLOG_HDR,
                            (uint32_t) len);

                seq++;
                if ((seq - 1 - log->base_seq) % CHATLOG_INDEX_EVERY == 0)
                        log->index[n_index++] = (struct chatlog_ix) { log->end + start, max_time };
                if (e->time > max_time)
                        max_time = e->time;
                last_rel = start;
                last_crc = get_be32(log->out.data + start + 8);
                if (!nd) {
                        nd = &log->nodes[n_nodes++];
                        *nd = (struct chatlog_node) {0};
                        strcpy(nd->name, e->node);
                }
                nd->new_post_id = e->post_id;
                nd->new_seq = seq;
                lamport = e->lamport;
                fnode = nd->name;
                fidx = e->fence_idx;
                results[i] = CHATLOG_STORED;
                stored++;
        }

        if (stored == 0)
                return 0;

        prealloc(log, log->end + log->out.len);
        r = pwrite_full(log->fd, log->out.data, log->out.len, log->end);
        if (r >= 0 && (log->syncs++, fdatasync(log->fd) < 0))
                r = -errno;
        if (r < 0) {
                /* take the batch back out; if even that fails, stop appending */
                if (ftruncate(log->fd, (off_t) log->end) < 0 || fdatasync(log->fd) < 0)
                        log->broken = true;
                log->prealloc_end = 0;          /* the truncation freed what was allocated ahead */
                goto undo;
        }

        /* on stable storage: commit */
        for (size_t i = 0; i < n_nodes; i++) {
                log->nodes[i].post_id = log->nodes[i].new_post_id;
                log->nodes[i].seq = log->nodes[i].new_seq;
        }
        log->n_nodes = n_nodes;
        log->n_index = n_index;
        log->last_seq = seq;
        log->last_off = log->end + last_rel;
        log->last_crc = last_crc;
        log->max_time = max_time;
        log->last_lamport = lamport;
        if (fnode != log->last_node)
                strcpy(log->last_node, fnode);
        log->last_fence_idx = fidx;
        log->end += log->out.len;
        wbuf_reset(&log->out);
        return 0;

undo:
        /* in-memory state is untouched: staged fields are simply dropped, and
         * with them what a copy in this batch was found to duplicate */
        for (unsigned i = 0; i < n; i++)
                if (results[i] == CHATLOG_STORED ||
                    (results[i] == CHATLOG_DUPLICATE && entries[i].seq > log->last_seq)) {
                        entries[i].seq = 0;
                        results[i] = CHATLOG_FAILED;
                }
        wbuf_reset(&log->out);
        return r;
}

/* --- reading --------------------------------------------------------------------- */

uint64_t chatlog_syncs(const struct chatlog *log)
{
        return log->syncs;
}

uint64_t chatlog_last_seq(const struct chatlog *log)
{
        return log->last_seq;
}

uint64_t chatlog_last_post_id(const struct chatlog *log, const char *node)
{
        for (size_t i = 0; i < log->n_nodes; i++)
                if (!strcmp(log->nodes[i].name, node))
                        return log->nodes[i].post_id;
        return 0;
}

void chatlog_last_fence(const struct chatlog *log, uint64_t *lamport, char node[DCHAT_NAME_MAX + 1],
                        uint32_t *fence_idx)
{
        if (lamport)
                *lamport = log->last_lamport;
        if (node)
                strcpy(node, log->last_node);
        if (fence_idx)
                *fence_idx = log->last_fence_idx;
}

/* Reads and checks the header at off. */
static int read_header(struct chatlog *log, uint64_t off, uint32_t *len, uint32_t *crc)
{
        uint8_t h[CHATLOG_HDR];
        size_t got;
        int r;

        if (off + CHATLOG_HDR > log->end)
                return -EIO;
        r = pread_full(log->fd, h, sizeof h, off, &got);
        if (r < 0)
                return r;
        if (got != sizeof h || header_check(h, len) != HEADER_OK || off + CHATLOG_HDR + *len > log->end)
                return -EIO;
        if (crc)
                *crc = get_be32(h + 8);
        return 0;
}

/*
 * A record that does not check out when read (the CRC or the seq is wrong)
 * lies in the part the checkpoint vouched for: drop the checkpoint for
 * good, so the next start reads the whole log and cuts it there.
 */
static int damaged(struct chatlog *log)
{
        log->damaged = true;
        (void) unlinkat(log->dirfd, "chat.log.idx", 0);
        return -EIO;
}

int chatlog_seek(struct chatlog *log, uint64_t seq, struct chatlog_cursor *cur)
{
        uint64_t s, off;
        size_t k;

        if (seq <= log->base_seq)
                seq = log->base_seq + 1;        /* archived: start with the first seq there is */
        if (seq > log->last_seq + 1)
                return -ENOENT;
        if (seq == log->last_seq + 1) {
                *cur = (struct chatlog_cursor) { .seq = seq, .off = log->end };
                return 0;
        }
        k = (size_t) ((seq - 1 - log->base_seq) / CHATLOG_INDEX_EVERY);
        if (k >= log->n_index)
                return -EIO;    /* cannot happen: every 256th record is indexed */
        off = log->index[k].off;
        for (s = log->base_seq + (uint64_t) k * CHATLOG_INDEX_EVERY + 1; s < seq; s++) {
                uint32_t len;
                int r = read_header(log, off, &len, NULL);
                if (r < 0)
                        return r == -EIO ? damaged(log) : r;
                off += CHATLOG_HDR + len;
        }
        *cur = (struct chatlog_cursor) { .seq = seq, .off = off };
        return 0;
}

int chatlog_next(struct chatlog *log, struct chatlog_cursor *cur, struct dchat_entry *e)
{
        uint32_t len, crc;
        size_t got;
        int r;

        if (cur->seq <= log->base_seq || cur->seq > log->last_seq)
                return -ENOENT;
        r = read_header(log, cur->off, &len, &crc);
        if (r < 0)
                return r == -EIO ? damaged(log) : r;
        r = pread_full(log->fd, log->buf, len, cur->off + CHATLOG_HDR, &got);
        if (r < 0)
                return r;
        if (got != len || crc32c(0, log->buf, len) != crc)
                return damaged(log);
        if (body_decode(log->buf, len, e) < 0 || e->seq != cur->seq)
                return damaged(log);
        cur->seq++;
        cur->off += CHATLOG_HDR + len;
        return 0;
}

uint64_t chatlog_first_seq(const struct chatlog *log)
{
        return log->base_seq + 1;
}

/*
 * The first record whose time is >= t is found through the greatest time
 * before each index slot, which never decreases along the log even when the
 * entries' own times (posters' clocks) do: a binary search finds the block
 * of 256 records where it first reaches t, and that block is read.
 */
int chatlog_find_time(struct chatlog *log, int64_t t, uint64_t *seq)
{
        _cleanup_(freep) struct dchat_entry *e = NULL;
        struct chatlog_cursor cur;
        size_t lo, hi;
        int r;

        *seq = log->last_seq + 1;
        if (log->last_seq == log->base_seq || log->max_time < t)
                return 0;
        if (log->index[0].max_before >= t) {
                *seq = log->base_seq + 1;       /* reached in the archived part already */
                return 0;
        }
        /* the last slot k with max_before < t */
        lo = 0;
        hi = log->n_index;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (log->index[mid].max_before < t)
                        lo = mid;
                else
                        hi = mid;
        }
        e = malloc(sizeof *e);
        if (!e)
                return -ENOMEM;
        r = chatlog_seek(log, log->base_seq + (uint64_t) lo * CHATLOG_INDEX_EVERY + 1, &cur);
        while (r >= 0) {
                r = chatlog_next(log, &cur, e);
                if (r >= 0 && e->time >= t) {
                        *seq = e->seq;
                        return 0;
                }
        }
        return r == -ENOENT ? 0 : r;
}

/* --- archiving ------------------------------------------------------------------- */

int chatlog_archive(const char *dir, char *name, size_t cap, uint64_t *first, uint64_t *last,
                    struct chatlog_recovery *rec)
{
        struct chatlog *log = NULL;
        struct wbuf b = {0};
        struct stat a, o;
        int fd = -1, r;
        size_t len;

        r = chatlog_open(dir, &log, rec);
        if (r < 0)
                return r;
        if (log->last_seq == log->base_seq) {
                r = -ENODATA;
                goto out;
        }
        *first = log->base_seq + 1;
        *last = log->last_seq;
        if ((size_t) snprintf(name, cap, CHATLOG_FILE ".%" PRIu64 "-%" PRIu64, *first, *last) >= cap) {
                r = -ENAMETOOLONG;
                goto out;
        }

        /* the new log: just the start record, on disk before anything is renamed */
        wbuf_put(&b, (const uint8_t[CHATLOG_HDR]) {0}, CHATLOG_HDR);
        start_put(&b, log);
        if (b.failed) {
                r = -ENOMEM;
                goto out;
        }
        len = b.len - CHATLOG_HDR;
        if (len > DCHAT_FRAME_MAX) {
                r = -E2BIG;
                goto out;
        }
        header_make(b.data, CHATLOG_START_MAGIC, b.data + CHATLOG_HDR, (uint32_t) len);
        (void) unlinkat(log->dirfd, CHATLOG_FILE ".new", 0);
        fd = openat(log->dirfd, CHATLOG_FILE ".new", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        /* the same owner and mode as the old log, so the daemon's user can open it (archived as root) */
        if (fstat(log->fd, &o) < 0 || (fchown(fd, o.st_uid, o.st_gid) < 0 && errno != EPERM) ||
            fchmod(fd, o.st_mode & 07777) < 0) {
                r = -errno;
                goto out;
        }
        r = pwrite_full(fd, b.data, b.len, 0);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                goto out;

        /* the old log keeps its inode under its new name; an earlier try may have linked it already */
        if (linkat(log->dirfd, CHATLOG_FILE, log->dirfd, name, 0) < 0) {
                r = -errno;
                if (r != -EEXIST || fstatat(log->dirfd, name, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
                    fstat(log->fd, &o) < 0 || a.st_ino != o.st_ino || a.st_dev != o.st_dev)
                        goto out;
        }
        if (fsync(log->dirfd) < 0 || renameat(log->dirfd, CHATLOG_FILE ".new", log->dirfd, CHATLOG_FILE) < 0) {
                r = -errno;
                goto out;
        }
        /* the checkpoint was the old log's */
        if (unlinkat(log->dirfd, "chat.log.idx", 0) < 0 && errno != ENOENT) {
                r = -errno;
                goto out;
        }
        r = fsync(log->dirfd) < 0 ? -errno : 0;
out:
        if (fd >= 0)
                close(fd);
        if (r < 0)
                (void) unlinkat(log->dirfd, CHATLOG_FILE ".new", 0);
        wbuf_free(&b);
        chatlog_close(log);
        return r;
}
