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
 * then the body, proto_put_entry() of the entry.  Records written before
 * entries carried a vector clock have the magic "DCL1" and a body without
 * it (proto_get_entry_v1); they are read as they are, and new records
 * ("DCL2") go on after them in the same file.  Seqs run 1, 2, 3, ...
 * without gaps and the fences (lamport, node, fence_idx) strictly increase.
 * A log that goes on from an archived one (chatlog_archive) starts with a
 * start record ("DCH1") instead, and its seqs with the one after it.
 *
 * Opening the log reads it from the end of what the checkpoint
 * DIR/chat.log.idx (chatidx.c) covers, if that checks out against the log,
 * else from the start.  A record that does not check out is either the
 * torn end of the last write — nothing good follows it — or damage to
 * what was stored.  The scan tells them apart by looking for a good record
 * after it (on record boundaries: past the bad one by its length when its
 * header is intact, else at every offset that holds one).  A torn tail is
 * copied aside to chat.log.corrupt-TIME-OFFSET (and synced), and only then
 * cut; never below what a checkpoint proved was stored.  Damage followed
 * by good records is quarantined: its bytes stay where they are (and are
 * copied aside for whoever investigates), the seqs they stood for read as
 * damaged, and everything after them is kept, so nothing acknowledged is
 * dropped and seqs never go backwards.  A read error is neither: it fails
 * the open, or the read, and changes nothing.
 *
 * An append is one write and one fdatasync for the whole batch; the
 * in-memory state moves on only after the sync succeeded.
 *
 * Unsynced appends (a server group, chatlog_set_unsynced).  There the
 * durable record of every post is Raft's log, synced on a majority before
 * the post is committed; the chat log is the state machine that applying
 * the committed commands builds, and syncing it at every apply would put
 * a second (a follower: a third) disk flush on every post's path.  So its
 * appends are written without fdatasync, and chatlog_sync() makes them
 * durable when the group takes a snapshot (fsm.c), before libraft keeps
 * the snapshot and drops the commands it covers.  What a crash leaves:
 *
 *   - a kill of the process: nothing lost (the writes are in the page
 *     cache, which the next open reads);
 *   - a power loss or a kernel crash: the log up to the last sync is on
 *     disk; what was written after it may be lost in any part (pages are
 *     written back in no particular order: a hole may be followed by
 *     records that made it).
 *
 * Every checkpoint of such a log is written after a sync and says so
 * (CHATIDX_UNSYNCED), the first one when the mode is turned on, before
 * any unsynced append; the snapshot's sync writes one too.  So at open,
 * everything up to the checkpoint's end is known to have been synced,
 * and a bad record after it is a write lost in a crash: it is cut with
 * everything after it (saved aside first, like a torn tail), never
 * quarantined, because a quarantined hole would keep the records after it
 * and the replica would hold less than the group under the same seqs.
 * The log is then a prefix of what it was, at least up to the last
 * snapshot's entry (synced before the snapshot was kept), and libraft
 * replays every command after that snapshot: apply is idempotent (the
 * posts still there are found stored, with their seqs; the rest are
 * stored again under the same seqs, by the same decisions), so the
 * replica ends with exactly the group's log.  A log cut below the
 * snapshot's entry (only damage to synced data can do that) fetches the
 * missing entries from another server (fsm.c, CATCHUP).  Without a
 * checkpoint (deleted, unreadable) the open cannot tell an unsynced tail
 * from damage and quarantines as usual: that replica then differs from
 * the others where the hole was, which verification shows.  A failed
 * sync stops all appends until dchatd is restarted (the kernel may have
 * dropped the pages it could not write): the restart reads the log as it
 * is and Raft replays what follows the last snapshot.
 *
 * Nothing of the
 * log is kept in memory but a sparse index (every 256th record: its offset
 * and the greatest entry time before it, for the search by time), the last
 * post id of every node and the list of quarantined parts (at most
 * CHATLOG_DAMAGE_MAX).
 *
 * Pure file I/O: no logging, no event loop; errors are negative errnos and
 * recovery is reported through struct chatlog_recovery.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
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
#define CHATLOG_IDX_FILE        "chat.log.idx"
#define CHATLOG_MAGIC           UINT32_C(0x44434C32)    /* "DCL2": an entry with its vector clock */
#define CHATLOG_MAGIC_V1        UINT32_C(0x44434C31)    /* "DCL1": without (older logs, still read) */
#define CHATLOG_START_MAGIC     UINT32_C(0x44434831)    /* "DCH1": the start record */
#define CHATLOG_HDR             16
#define CHATLOG_CHECKPOINT_EVERY 65536                  /* records between checkpoints */
/* base_seq, lamport, node, fence_idx, max_time, n_nodes */
#define CHATLOG_START_MIN       (8 + 8 + 2 + 4 + 8 + 4)
/* seq, lamport, node, fence_idx, post_id, time, utc_offset, author, text */
#define CHATLOG_BODY_MIN        (8 + 8 + 2 + 4 + 8 + 8 + 4 + 2 + 2)
#define CHATLOG_RECORD_MIN      (CHATLOG_HDR + CHATLOG_BODY_MIN)
#define CHATLOG_BUF             (2 * (CHATLOG_HDR + DCHAT_FRAME_MAX))
#define CHATLOG_PREALLOC        (UINT64_C(1) << 20)     /* blocks allocated ahead of the end */

struct chatlog {
        int fd;
        int dirfd;
        char dir[PATH_MAX];             /* for the names of copies */
        bool broken;                    /* a failed append could not be undone, or a sync failed */
        bool unsynced_mode;             /* appends are not synced (a server group): chatlog_sync does */
        bool unsynced;                  /* records were appended since the last sync */
        uint64_t syncs;                 /* fdatasyncs by appends and chatlog_sync, for statistics */
        uint64_t prealloc_end;          /* blocks are allocated up to here (beyond the file's size) */
        bool no_prealloc;               /* the file system cannot */
        uint64_t live_damage_seq;       /* a read found a bad record at this seq (0: none): no appends */
        bool rescan_marked;             /* ... and the checkpoint says so (CHATIDX_RESCAN) */

        uint64_t base_seq;              /* seqs up to this one are archived; the start record says so */
        uint64_t data_start;            /* offset of the first entry record (after the start record) */
        uint64_t end;                   /* committed end of the file */
        uint64_t last_seq;
        uint64_t last_off;              /* offset of record last_seq (its damaged part's, if it is damaged) ... */
        uint32_t last_crc;              /* ... and its body CRC (0 then) */
        uint64_t last_lamport;
        char last_node[DCHAT_NAME_MAX + 1];
        uint32_t last_fence_idx;
        int64_t max_time;               /* greatest entry time (INT64_MIN: none) */
        uint64_t checkpoint_seq;        /* last seq the checkpoint on disk covers */

        struct chatlog_ix *index;       /* index[k]: record base_seq + k * 256 + 1 (a damaged one: its part's start) */
        size_t n_index, cap_index;

        struct chatlog_node *nodes;     /* [0, n_nodes) committed */
        size_t n_nodes, cap_nodes;

        struct chatlog_damage damage[CHATLOG_DAMAGE_MAX];       /* quarantined parts, by offset */
        size_t n_damage;
        bool damage_new[CHATLOG_DAMAGE_MAX];                    /* found by this open's scan */
        int damage_copy_error[CHATLOG_DAMAGE_MAX];              /* copying it aside failed: -errno */

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

        if (magic != CHATLOG_MAGIC && magic != CHATLOG_MAGIC_V1 && magic != CHATLOG_START_MAGIC)
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

/*
 * Decodes a body whose CRC was checked; the whole body must be one entry:
 * its fields, and a vector clock after them unless it is a "DCL1" record's
 * (nothing follows the text then).
 */
static int body_decode(const uint8_t *body, uint32_t len, struct dchat_entry *e)
{
        struct rbuf r = { .p = body, .len = len };

        if (proto_get_entry_v1(&r, e) < 0)
                return -EBADMSG;
        if (r.off != r.len && proto_get_vclock(&r, &e->vc) < 0)
                return -EBADMSG;
        return r.off == r.len ? 0 : -EBADMSG;
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

/* (room for none: a NULL array is fine) */
#define GROW(array, cap, need)                                                  \
        ({                                                                      \
                size_t _need = (need);                                          \
                void *_q = grow((array), &(cap), _need, sizeof *(array));       \
                if (_q)                                                         \
                        (array) = _q;                                           \
                _q || _need == 0 ? 0 : -ENOMEM;                                 \
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

/*
 * Copies [off, end) of the log into dirfd/name, synced (the file and the
 * directory).  excl: the name must be new; else a file of that name and
 * size is taken as an earlier copy of the same bytes.
 */
static int copy_aside(struct chatlog *log, const char *name, uint64_t off, uint64_t end, bool excl)
{
        struct stat st;
        int fd, r;

        if (!excl && fstatat(log->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (uint64_t) st.st_size == end - off)
                return 0;
        fd = openat(log->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (excl ? O_EXCL : O_TRUNC), 0640);
        if (fd < 0)
                return -errno;
        for (uint64_t pos = off; pos < end;) {
                size_t want = end - pos < CHATLOG_BUF ? (size_t) (end - pos) : CHATLOG_BUF, got;

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
        if (fsync(fd) < 0 || fsync(log->dirfd) < 0) {
                r = -errno;
                goto fail;
        }
        close(fd);
        return 0;

fail:
        close(fd);
        (void) unlinkat(log->dirfd, name, 0);
        return r;
}

/* Copies the tail [off, size) aside under a new name, before it is cut. */
static int save_tail(struct chatlog *log, uint64_t off, uint64_t size, struct chatlog_recovery *rec)
{
        char name[NAME_MAX + 1];
        int r = -EEXIST;

        for (unsigned attempt = 0; attempt < 100 && r == -EEXIST; attempt++) {
                if (attempt == 0)
                        snprintf(name, sizeof name, CHATLOG_FILE ".corrupt-%lld-%" PRIu64, (long long) time(NULL), off);
                else
                        snprintf(name, sizeof name, CHATLOG_FILE ".corrupt-%lld-%" PRIu64 ".%u",
                                 (long long) time(NULL), off, attempt);
                r = copy_aside(log, name, off, size, true);
        }
        if (r < 0)
                return r;
        snprintf(rec->saved_to, sizeof rec->saved_to, "%s/%s", log->dir, name);
        return 0;
}

/* The name of the copy of a quarantined part: which seqs it stood for, and where it is. */
static void damage_copy_name(const struct chatlog_damage *d, char *buf, size_t cap)
{
        if (d->first_seq > d->last_seq)
                snprintf(buf, cap, CHATLOG_FILE ".corrupt-noseq-at-%" PRIu64, d->off);
        else
                snprintf(buf, cap, CHATLOG_FILE ".corrupt-seq-%" PRIu64 "-%" PRIu64 "-at-%" PRIu64, d->first_seq,
                         d->last_seq, d->off);
}

static const char *damage_why(uint8_t kind)
{
        switch (kind) {
        case DAMAGE_HEADER:
                return "damaged record header";
        case DAMAGE_BODY:
                return "record checksum mismatch";
        case DAMAGE_ENTRY:
                return "record out of place or undecodable";
        case DAMAGE_TAIL:
                return "damaged end of the log";
        default:
                return "damaged record";
        }
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

#define START_DAMAGED_REASON                                                                            \
        "the start record (written by dchatd --archive) is damaged; refusing to open the log, whose "  \
        "sequence numbers would start again: stop dchatd and run 'dchatd --repair' (see dchatd(8))"

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
        snprintf(rec->reason, sizeof rec->reason, START_DAMAGED_REASON);
        rec->start_damaged = true;
        return -EBADMSG;
}

enum record_state {
        RECORD_GOOD,                    /* whole, checked, and the one due there */
        RECORD_BAD,                     /* its header is intact (len set); the rest is not right */
        RECORD_BAD_HEADER,              /* no intact header there */
        RECORD_TORN,                    /* the file ends inside it */
};

/*
 * Checks the record at off against the log's state: in sequence it must
 * be seq last_seq + 1, after damage any seq above last_seq, and its fence
 * greater than the last.  Returns a record_state (with kind and why when
 * it is not good), or a read error.
 */
static int record_at(struct chatlog *log, struct scan *s, uint64_t off, uint64_t size, bool after_damage,
                     struct dchat_entry *e, uint32_t *len, uint32_t *crc, uint8_t *kind, char *why, size_t cap)
{
        uint64_t n = log->last_seq + 1;
        const uint8_t *p, *body;
        uint8_t h[CHATLOG_HDR];
        int r;

        *kind = DAMAGE_HEADER;
        r = scan_get(s, off, CHATLOG_HDR, &p);
        if (r == -ENODATA) {
                snprintf(why, cap, "torn header at offset %" PRIu64, off);
                return RECORD_TORN;
        }
        if (r < 0)
                return r;
        memcpy(h, p, CHATLOG_HDR);      /* the window may move for the body */
        switch (header_check(h, len)) {
        case HEADER_OK:
                break;
        case HEADER_BAD_MAGIC:
        case HEADER_START:              /* only at offset 0, read by start_read */
                snprintf(why, cap, "bad magic at offset %" PRIu64, off);
                return RECORD_BAD_HEADER;
        case HEADER_BAD_CRC:
                snprintf(why, cap, "header checksum mismatch at offset %" PRIu64, off);
                return RECORD_BAD_HEADER;
        case HEADER_BAD_LENGTH:
                snprintf(why, cap, "bad record length %" PRIu32 " at offset %" PRIu64, get_be32(h + 4), off);
                return RECORD_BAD_HEADER;
        }
        r = off + CHATLOG_HDR + *len > size ? -ENODATA : scan_get(s, off + CHATLOG_HDR, *len, &body);
        if (r == -ENODATA) {
                snprintf(why, cap, "torn record %" PRIu64 " at offset %" PRIu64 " (body cut short)", n, off);
                return RECORD_TORN;
        }
        if (r < 0)
                return r;
        *crc = get_be32(h + 8);
        *kind = DAMAGE_BODY;
        if (crc32c(0, body, *len) != *crc) {
                snprintf(why, cap, "checksum mismatch in record %" PRIu64 " at offset %" PRIu64, n, off);
                return RECORD_BAD;
        }
        *kind = DAMAGE_ENTRY;
        if (body_decode(body, *len, e) < 0) {
                snprintf(why, cap, "undecodable record %" PRIu64 " at offset %" PRIu64, n, off);
                return RECORD_BAD;
        }
        if (after_damage ? e->seq <= log->last_seq : e->seq != n) {
                snprintf(why, cap, "sequence gap at offset %" PRIu64 ": seq %" PRIu64 ", expected %" PRIu64, off,
                         e->seq, n);
                return RECORD_BAD;
        }
        if (fence_cmp(e->lamport, e->node, e->fence_idx, log->last_lamport, log->last_node, log->last_fence_idx) <= 0) {
                snprintf(why, cap, "fence not increasing in record %" PRIu64 " at offset %" PRIu64, n, off);
                return RECORD_BAD;
        }
        return RECORD_GOOD;
}

/* Takes in the good record e at off: the index, the nodes' post ids, the last seq and fence. */
static int take_record(struct chatlog *log, uint64_t off, uint32_t crc, const struct dchat_entry *e,
                       struct chatlog_recovery *rec)
{
        uint64_t n = e->seq;
        struct chatlog_node *nd;
        int r;

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
        log->last_crc = crc;
        log->last_lamport = e->lamport;
        strcpy(log->last_node, e->node);
        log->last_fence_idx = e->fence_idx;
        if (e->time > log->max_time)
                log->max_time = e->time;
        rec->scanned++;
        return 0;
}

/*
 * Quarantines [off, end), which stood for seqs first..last (none if first
 * = last + 1): their index slots point at its start, and the log goes on
 * after them.  -EBADMSG (rec->reason) beyond CHATLOG_DAMAGE_MAX parts.
 */
static int add_damage(struct chatlog *log, uint64_t first, uint64_t last, uint64_t off, uint64_t end, uint8_t kind,
                      struct chatlog_recovery *rec)
{
        int r;

        if (log->n_damage == CHATLOG_DAMAGE_MAX) {
                snprintf(rec->reason, sizeof rec->reason,
                         "more than %d damaged parts in the log (the next at offset %" PRIu64 "): the disk is failing; "
                         "refusing to open it: save the state directory and restore the log (see dchatd(8))",
                         CHATLOG_DAMAGE_MAX, off);
                return -EBADMSG;
        }
        while (first <= last && log->base_seq + (uint64_t) log->n_index * CHATLOG_INDEX_EVERY + 1 <= last) {
                r = GROW(log->index, log->cap_index, log->n_index + 1);
                if (r < 0)
                        return r;
                log->index[log->n_index++] = (struct chatlog_ix) { off, log->max_time };
        }
        log->damage[log->n_damage] = (struct chatlog_damage) { first, last, off, end, kind };
        log->damage_new[log->n_damage] = true;
        log->damage_copy_error[log->n_damage] = 0;
        log->n_damage++;
        if (first <= last)
                log->last_seq = last;
        rec->damage_found++;
        return 0;
}

/*
 * Looks for the first good record at or after from that can follow the
 * damage starting at bad_start (record_at after damage): a bad record with
 * an intact header is skipped by its length, anything else byte by byte.
 * A good record whose seq is further on than the bytes since bad_start
 * could have held records (at least CHATLOG_RECORD_MIN each) does not
 * follow this damage; the first such is reported in *odd_seq, *odd_off
 * and the search goes on past it.  1 and *at if found, 0 if not.
 */
static int resync(struct chatlog *log, struct scan *s, uint64_t bad_start, uint64_t from, uint64_t size,
                  struct dchat_entry *e, uint64_t *at, uint64_t *odd_seq, uint64_t *odd_off)
{
        /* the magics of entry records, "DCL1" and "DCL2", without their version: record_at checks it */
        static const uint8_t magic[3] = { 'D', 'C', 'L' };
        uint64_t pos = from;
        char why[160];

        while (pos + CHATLOG_HDR <= size) {
                size_t want = size - pos < CHATLOG_BUF / 2 ? (size_t) (size - pos) : CHATLOG_BUF / 2;
                const uint8_t *p, *m;
                uint32_t len = 0, crc = 0;
                uint8_t kind;
                int r;

                r = scan_get(s, pos, want, &p);
                if (r == -ENODATA)
                        return 0;               /* (the file shrank meanwhile) */
                if (r < 0)
                        return r;
                m = memmem(p, want, magic, sizeof magic);
                if (!m) {
                        pos += want - (sizeof magic - 1);       /* a magic may straddle the window's end */
                        continue;
                }
                pos += (uint64_t) (m - p);
                r = record_at(log, s, pos, size, true, e, &len, &crc, &kind, why, sizeof why);
                if (r < 0)
                        return r;
                if (r == RECORD_GOOD) {
                        if (e->seq - log->last_seq - 1 <= (pos - bad_start) / CHATLOG_RECORD_MIN) {
                                *at = pos;
                                return 1;
                        }
                        if (!*odd_seq) {
                                *odd_seq = e->seq;
                                *odd_off = pos;
                        }
                }
                pos += r == RECORD_GOOD || r == RECORD_BAD ? CHATLOG_HDR + (uint64_t) len : 1;
        }
        return 0;
}

/*
 * Reads every record from offset from on, moving the in-memory state on.
 * Damage followed by a good record is quarantined (add_damage) and the
 * scan goes on there.  Sets *bad_off to the start of a bad tail with
 * nothing good after it (or to the file size) and rec->reason.  Fails on
 * read errors and allocation failures — those are not corruption and must
 * never cut anything — and with -EBADMSG (rec->reason) when the log cannot
 * be kept without losing something: good records whose seqs cannot follow
 * the damage before them (at the start of a log without a start record:
 * the start record itself is damaged), or too many damaged parts.
 * Records from unsynced_from on were written without a sync (a checkpoint
 * with CHATIDX_UNSYNCED says so; UINT64_MAX: none): damage there is a
 * write a crash lost, the start of the tail to cut, whatever follows it.
 */
static int scan(struct chatlog *log, uint64_t from, uint64_t size, uint64_t unsynced_from, uint64_t *bad_off,
                struct chatlog_recovery *rec)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct scan s = { .fd = log->fd, .buf = log->buf };
        uint64_t off = from;
        int r;

        if (!e)
                return -ENOMEM;

        while (off < size) {
                uint64_t at = 0, odd_seq = 0, odd_off = 0;
                uint32_t len = 0, crc = 0;
                uint8_t kind;

                r = record_at(log, &s, off, size, false, e, &len, &crc, &kind, rec->reason, sizeof rec->reason);
                if (r < 0)
                        return r;
                if (r == RECORD_GOOD) {
                        r = take_record(log, off, crc, e, rec);
                        if (r < 0)
                                return r;
                        off += CHATLOG_HDR + len;
                        continue;
                }
                if (r == RECORD_TORN)
                        break;          /* nothing can follow what runs past the end of the file */
                if (off >= unsynced_from) {
                        rec->unsynced_tail = true;
                        break;          /* an unsynced write lost in a crash: the rest is cut (replayed) */
                }

                /* damage at off: quarantined if a good record follows it, else the tail */
                r = resync(log, &s, off, r == RECORD_BAD ? off + CHATLOG_HDR + len : off + 1, size, e, &at,
                           &odd_seq, &odd_off);
                if (r < 0)
                        return r;
                if (r == 0 && odd_seq) {
                        if (off == 0 && log->base_seq == 0 && log->last_seq == 0) {
                                /* a log does not start at seq odd_seq unless a start record said so */
                                snprintf(rec->reason, sizeof rec->reason, START_DAMAGED_REASON);
                                rec->start_damaged = true;
                        } else
                                snprintf(rec->reason, sizeof rec->reason,
                                         "damage at offset %" PRIu64 " after seq %" PRIu64 " is followed by a good record "
                                         "with seq %" PRIu64 " (offset %" PRIu64 ") that cannot follow it; refusing to "
                                         "cut or renumber it: save the state directory and see dchatd(8)",
                                         off, log->last_seq, odd_seq, odd_off);
                        return -EBADMSG;
                }
                if (r == 0)
                        break;
                r = add_damage(log, log->last_seq + 1, e->seq - 1, off, at, kind, rec);
                if (r < 0)
                        return r;
                off = at;
        }
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

static const struct chatlog_damage *damage_of_seq(const struct chatlog_damage *d, size_t n, uint64_t seq)
{
        for (size_t i = 0; i < n; i++)
                if (d[i].first_seq <= seq && seq <= d[i].last_seq)
                        return &d[i];
        return NULL;
}

/*
 * Checks a loaded checkpoint against the log itself: it must cover a prefix
 * of the file that starts where this log's records start, every index slot
 * must point at a good record header with the seq it stands for (or at the
 * start of the damaged part that seq is in), each damaged part must end
 * where the record after it starts, and the last record it covers must be
 * there whole, with its CRC, seq and fence, ending exactly where the
 * checkpoint ends (or lie in a damaged part that ends there).  -EBADMSG
 * with *why otherwise, another -errno if the log cannot be read.
 */
static int checkpoint_verify(struct chatlog *log, const struct chatidx *x, const struct stat *st, const char **why)
{
        uint64_t size = (uint64_t) st->st_size;
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        const struct chatlog_damage *d;
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
                if (x->end != log->data_start || x->n_index || x->n_damage || x->n_nodes != log->n_nodes) {
                        *why = "it does not match the empty log";
                        return -EBADMSG;
                }
                return 0;
        }
        if (x->index[0].off != log->data_start || x->index[0].max_before != log->max_time) {
                *why = "its index does not start where the log's records do";
                return -EBADMSG;
        }
        for (size_t i = 0; i < x->n_damage; i++) {
                d = &x->damage[i];
                if (d->off < log->data_start) {
                        *why = "a damaged part it lists lies before the log's records";
                        return -EBADMSG;
                }
                if (d->end == x->end)
                        continue;
                r = peek_record(log, d->end, x->end, &seq, &len, &crc);
                if (r < 0 && r != -EBADMSG)
                        return r;
                if (r < 0 || seq != d->last_seq + 1) {
                        *why = "a damaged part it lists is not followed by the record due after it";
                        return -EBADMSG;
                }
        }
        /* about 64 slots spread over the index, the first and the last among them: a few ms even
         * from disk for millions of records; a wrong slot elsewhere is caught when read (found_damage) */
        size_t step = x->n_index / 64 + 1;
        for (size_t i = 0;; i += step) {
                size_t k = i < x->n_index - 1 ? i : x->n_index - 1;
                uint64_t want = x->base_seq + k * CHATLOG_INDEX_EVERY + 1;
                d = damage_of_seq(x->damage, x->n_damage, want);
                if (d) {
                        r = 0;
                        seq = x->index[k].off == d->off ? want : 0;
                } else
                        r = peek_record(log, x->index[k].off, x->end, &seq, &len, &crc);
                if (r < 0 && r != -EBADMSG)
                        return r;
                if (r < 0 || seq != want) {
                        *why = "an index slot does not point at the record it stands for";
                        return -EBADMSG;
                }
                if (k == x->n_index - 1)
                        break;
        }
        d = damage_of_seq(x->damage, x->n_damage, x->last_seq);
        if (d) {
                if (d->end != x->end || x->last_off != d->off) {
                        *why = "the damaged end it lists is not where it ends";
                        return -EBADMSG;
                }
                return 0;
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
 * why), or a negative errno on allocation errors and errors reading the
 * log (not damage: the open fails, nothing is changed).  A checkpoint that
 * is not taken but is this log's all the same (its own checksum right, the
 * same first seq, no more than the file holds) goes to *floor: what it
 * says was stored was stored, whatever the scan now finds damaged.  Either
 * way, if it says appends after it were not synced (CHATIDX_UNSYNCED),
 * *unsynced_from is its end.
 */
static int checkpoint_take(struct chatlog *log, const struct stat *st, struct chatlog_recovery *rec,
                           struct chatidx *floor, bool *have_floor, uint64_t *unsynced_from)
{
        struct chatidx x;
        const char *why = "unknown";
        int r;

        r = chatidx_load(log->dirfd, &x, &why);
        if (r == -ENOENT)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                /* an unreadable checkpoint only costs a full read (and is replaced afterwards) */
                snprintf(rec->checkpoint_warning, sizeof rec->checkpoint_warning, "%s",
                         r == -EBADMSG ? why : strerror(-r));
                return 0;
        }
        if (x.flags & CHATIDX_RESCAN) {
                why = "a read found the log damaged after it was written: the whole log is read to quarantine it";
                r = -EBADMSG;
        } else
                r = checkpoint_verify(log, &x, st, &why);
        if (r < 0) {
                if (r != -EBADMSG) {
                        chatidx_free(&x);
                        return r;
                }
                snprintf(rec->checkpoint_warning, sizeof rec->checkpoint_warning, "%s", why);
                if (x.base_seq == log->base_seq && x.end <= (uint64_t) st->st_size && x.end >= log->data_start) {
                        if (x.flags & CHATIDX_UNSYNCED)
                                *unsynced_from = x.end;
                        *floor = x;
                        *have_floor = true;
                } else
                        chatidx_free(&x);
                return 0;
        }
        free(log->index);
        log->index = x.index;
        log->n_index = log->cap_index = x.n_index;
        free(log->nodes);
        log->nodes = x.nodes;
        log->n_nodes = log->cap_nodes = x.n_nodes;
        memcpy(log->damage, x.damage, sizeof x.damage);
        log->n_damage = x.n_damage;
        log->end = x.end;
        log->last_seq = x.last_seq;
        log->last_off = x.last_off;
        log->last_crc = x.last_crc;
        log->last_lamport = x.last_lamport;
        strcpy(log->last_node, x.last_node);
        log->last_fence_idx = x.last_fence_idx;
        log->max_time = x.max_time;
        log->checkpoint_seq = x.last_seq;
        if (x.flags & CHATIDX_UNSYNCED)
                *unsynced_from = x.end;
        rec->checkpoint_used = true;
        rec->checkpoint_seq = x.last_seq;
        return 1;
}

/*
 * The scan ended in damage at *bad_off, below the end of what the
 * checkpoint f proved was stored (it is written only after the records it
 * covers were synced): that is no torn write but damage to stored
 * records.  It is quarantined up to f's end, with the seqs, the last
 * fence and post ids that f says were there, so nothing goes backwards;
 * only what lies beyond f's end can be a torn tail.
 */
static int floor_apply(struct chatlog *log, const struct chatidx *f, uint64_t *bad_off, struct chatlog_recovery *rec)
{
        uint64_t at = *bad_off;
        int r;

        if (at >= f->end || f->last_seq <= log->last_seq ||
            fence_cmp(f->last_lamport, f->last_node, f->last_fence_idx, log->last_lamport, log->last_node,
                      log->last_fence_idx) <= 0)
                return 0;
        r = add_damage(log, log->last_seq + 1, f->last_seq, at, f->end, DAMAGE_TAIL, rec);
        if (r < 0)
                return r;
        r = GROW(log->nodes, log->cap_nodes, log->n_nodes + f->n_nodes);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f->n_nodes; i++) {
                struct chatlog_node *nd = node_find(log, log->n_nodes, f->nodes[i].name);
                if (!nd) {
                        nd = &log->nodes[log->n_nodes++];
                        *nd = (struct chatlog_node) {0};
                        strcpy(nd->name, f->nodes[i].name);
                }
                if (f->nodes[i].post_id > nd->post_id) {
                        nd->post_id = f->nodes[i].post_id;
                        nd->seq = f->nodes[i].seq;
                }
        }
        log->last_off = at;
        log->last_crc = 0;
        log->last_lamport = f->last_lamport;
        strcpy(log->last_node, f->last_node);
        log->last_fence_idx = f->last_fence_idx;
        if (f->max_time > log->max_time)
                log->max_time = f->max_time;
        rec->floor_seq = f->last_seq;
        *bad_off = f->end;
        return 0;
}

/*
 * chat.log with a second name in its directory: a hard link made by an
 * archive or a repair that was interrupted before its rename.  Left alone
 * it would grow with the live log under an archive's name; removing it
 * is going back to the state before that archive.
 */
static int unlink_stale_links(struct chatlog *log, const struct stat *st, struct chatlog_recovery *rec)
{
        struct dirent *de;
        bool removed = false;
        int fd, r = 0;
        DIR *d;

        if (st->st_nlink <= 1)
                return 0;
        fd = openat(log->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        while ((de = readdir(d))) {
                struct stat a;
                if (strncmp(de->d_name, CHATLOG_FILE ".", strlen(CHATLOG_FILE ".")) != 0 ||
                    fstatat(log->dirfd, de->d_name, &a, AT_SYMLINK_NOFOLLOW) < 0 || a.st_ino != st->st_ino ||
                    a.st_dev != st->st_dev)
                        continue;
                if (unlinkat(log->dirfd, de->d_name, 0) < 0) {
                        r = -errno;
                        break;
                }
                strlcpy(rec->stale_link, de->d_name, sizeof rec->stale_link);
                removed = true;
        }
        closedir(d);
        if (removed && fsync(log->dirfd) < 0 && r == 0)
                r = -errno;
        return r;
}

static int log_new(const char *dir, struct chatlog **ret)
{
        struct chatlog *log = calloc(1, sizeof *log);

        if (!log)
                return -ENOMEM;
        log->fd = -1;
        log->max_time = INT64_MIN;
        strlcpy(log->dir, dir, sizeof log->dir);
        log->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (log->dirfd < 0) {
                int r = -errno;
                free(log);
                return r;
        }
        log->buf = malloc(CHATLOG_BUF);
        if (!log->buf) {
                chatlog_close(log);
                return -ENOMEM;
        }
        *ret = log;
        return 0;
}

int chatlog_open(const char *dir, struct chatlog **ret, struct chatlog_recovery *rec)
{
        struct chatlog_recovery dummy;
        struct chatlog *log = NULL;
        struct chatidx floor = {0};
        bool created = false, have_floor = false;
        uint64_t bad_off = 0, from, unsynced_from = UINT64_MAX;
        struct stat st;
        int r;

        if (!rec)
                rec = &dummy;
        *rec = (struct chatlog_recovery) {0};

        r = log_new(dir, &log);
        if (r < 0)
                return r;
        log->fd = openat(log->dirfd, CHATLOG_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (log->fd < 0 && errno == ENOENT) {
                log->fd = openat(log->dirfd, CHATLOG_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
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
        if (created && fsync(log->dirfd) < 0) {
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
        r = unlink_stale_links(log, &st, rec);
        if (r < 0)
                goto fail;
        /* the new file of an archive or a repair that did not get to its rename (they hold the
         * lock we hold now while it exists): only a copy, never the log */
        (void) unlinkat(log->dirfd, CHATLOG_FILE ".new", 0);
        (void) unlinkat(log->dirfd, CHATLOG_FILE ".repair", 0);

        r = start_read(log, (uint64_t) st.st_size, rec);
        if (r < 0)
                goto fail;
        r = checkpoint_take(log, &st, rec, &floor, &have_floor, &unsynced_from);
        if (r < 0)
                goto fail;
        from = r > 0 ? log->end : log->data_start;
        r = scan(log, from, (uint64_t) st.st_size, unsynced_from, &bad_off, rec);
        if (r >= 0 && have_floor)
                r = floor_apply(log, &floor, &bad_off, rec);
        if (r < 0)
                goto fail;
        /* parts the discarded checkpoint knew already are not news */
        for (size_t i = 0; have_floor && i < log->n_damage; i++)
                for (size_t k = 0; k < floor.n_damage; k++)
                        if (!memcmp(&log->damage[i], &floor.damage[k], offsetof(struct chatlog_damage, kind)) &&
                            log->damage_new[i]) {
                                log->damage_new[i] = false;
                                rec->damage_found--;
                        }

        /* quarantined parts stay in the log; a copy is for whoever investigates (best effort) */
        for (size_t i = 0; i < log->n_damage; i++) {
                char name[NAME_MAX + 1];
                if (!log->damage_new[i])
                        continue;
                damage_copy_name(&log->damage[i], name, sizeof name);
                log->damage_copy_error[i] = copy_aside(log, name, log->damage[i].off, log->damage[i].end, false);
        }
        if (bad_off < (uint64_t) st.st_size) {
                /* keep the bad tail aside before destroying anything */
                r = save_tail(log, bad_off, (uint64_t) st.st_size, rec);
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
        for (size_t i = 0; i < log->n_damage; i++)
                if (log->damage[i].first_seq <= log->damage[i].last_seq)
                        rec->damaged_seqs += log->damage[i].last_seq - log->damage[i].first_seq + 1;
        rec->records = log->last_seq - log->base_seq;
        rec->base_seq = log->base_seq;
        chatidx_free(&floor);
        *ret = log;
        return 0;

fail:
        chatidx_free(&floor);
        chatlog_close(log);
        return r;
}

int chatlog_cut_damage(struct chatlog *log, size_t i, char *saved, size_t cap)
{
        const struct chatlog_damage *d;
        char name[NAME_MAX + 1];
        int r;

        if (i >= log->n_damage)
                return -EINVAL;
        d = &log->damage[i];
        /* the first seq it stood for names the copy: that is where the group's log goes on */
        snprintf(name, sizeof name, CHATLOG_FILE ".cut-from-seq-%" PRIu64 "-at-%" PRIu64, d->first_seq, d->off);
        r = copy_aside(log, name, d->off, log->end, false);
        if (r < 0)
                return r;
        snprintf(saved, cap, "%s/%s", log->dir, name);
        /* the checkpoint describes what is cut off: without it the next open reads the whole log */
        if (ftruncate(log->fd, (off_t) d->off) < 0 || fdatasync(log->fd) < 0 ||
            (unlinkat(log->dirfd, CHATLOG_IDX_FILE, 0) < 0 && errno != ENOENT) || fsync(log->dirfd) < 0)
                return -errno;
        log->broken = true;             /* no append to what this object believes the log is */
        return 0;
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
                .flags = (log->live_damage_seq ? CHATIDX_RESCAN : 0) | (log->unsynced_mode ? CHATIDX_UNSYNCED : 0),
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
                .n_damage = log->n_damage,
        };
        struct stat st;
        int r;

        if (log->broken)
                return -EIO;
        /* it vouches for what it covers: that must be on disk first */
        r = chatlog_sync(log);
        if (r < 0)
                return r;
        if (fstat(log->fd, &st) < 0)
                return -errno;
        x.mtime_ns = mtime_ns(&st);
        strcpy(x.last_node, log->last_node);
        memcpy(x.damage, log->damage, sizeof x.damage);
        r = chatidx_save(log->dirfd, &x);
        if (r >= 0) {
                log->checkpoint_seq = log->last_seq;
                log->rescan_marked = x.flags & CHATIDX_RESCAN;
        }
        return r;
}

bool chatlog_checkpoint_due(const struct chatlog *log)
{
        return log->last_seq - log->checkpoint_seq >= CHATLOG_CHECKPOINT_EVERY;
}

int chatlog_set_unsynced(struct chatlog *log)
{
        int r;

        if (log->unsynced_mode)
                return 0;
        /* the checkpoint that says so comes first: no unsynced append without it on disk */
        log->unsynced_mode = true;
        r = chatlog_checkpoint(log);
        if (r < 0)
                log->unsynced_mode = false;
        return r;
}

int chatlog_sync(struct chatlog *log)
{
        if (log->broken)
                return -EIO;
        if (!log->unsynced)
                return 0;
        log->syncs++;
        if (fdatasync(log->fd) < 0) {
                int r = -errno;
                /* the kernel may have dropped the pages it could not write, and a later sync
                 * succeed without them: nothing since the last good sync is known to be on disk
                 * any more, so nothing more goes in (and no checkpoint vouches for it) until a
                 * restart reads the log as it is and Raft replays what follows its snapshot */
                log->broken = true;
                return r;
        }
        log->unsynced = false;
        return 0;
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
        if (!utc_offset_valid(e->utc_offset))
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

/*
 * The first entry that can be read at or after index slot k: quarantined
 * parts are passed over (*skipped says so).  -ENOENT if there is none.
 */
static int slot_entry(struct chatlog *log, size_t k, struct dchat_entry *e, bool *skipped)
{
        struct chatlog_cursor cur = { .seq = log->base_seq + (uint64_t) k * CHATLOG_INDEX_EVERY + 1,
                                      .off = log->index[k].off };
        int r;

        *skipped = false;
        while ((r = chatlog_next(log, &cur, e)) == CHATLOG_DAMAGED)
                *skipped = true;
        return r;
}

/*
 * The stored entry with fence (lamport, node, idx) into *e: 0, -ENOENT if
 * there is none, -EXDEV if it could be in the archived part, -EUCLEAN if
 * it could be in a quarantined part (its fence lies between those of the
 * readable entries around one), or a read error.  Fences strictly increase
 * through the log, so a binary search over the first readable entry of
 * each index slot finds where to read.
 */
static int find_fence(struct chatlog *log, uint64_t lamport, const char *node, uint32_t idx, struct dchat_entry *e)
{
        struct chatlog_cursor cur;
        size_t lo = 0, hi = log->n_index;
        bool skipped, damage = false;
        int r;

        if (log->n_index == 0)
                return log->base_seq ? -EXDEV : -ENOENT;
        r = slot_entry(log, 0, e, &skipped);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == -ENOENT || fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx) > 0)
                return skipped ? -EUCLEAN : log->base_seq ? -EXDEV : -ENOENT;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                r = slot_entry(log, mid, e, &skipped);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == 0 && fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx) <= 0)
                        lo = mid;
                else
                        hi = mid;
        }
        /* from slot lo on, until past the fence (at the latest at slot lo + 1's first readable entry) */
        cur = (struct chatlog_cursor) { .seq = log->base_seq + (uint64_t) lo * CHATLOG_INDEX_EVERY + 1,
                                        .off = log->index[lo].off };
        for (;;) {
                r = chatlog_next(log, &cur, e);
                if (r == CHATLOG_DAMAGED) {
                        damage = true;
                        continue;
                }
                if (r == -ENOENT)
                        break;
                if (r < 0)
                        return r;
                int c = fence_cmp(e->lamport, e->node, e->fence_idx, lamport, node, idx);
                if (c == 0)
                        return 0;
                if (c > 0)
                        break;
                damage = false;         /* the fence comes after this entry: only damage after it counts */
        }
        return damage ? -EUCLEAN : -ENOENT;
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
                        return CHATLOG_UNKNOWN;         /* unreadable, or it could be in a quarantined part */
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
        if (log->live_damage_seq)
                return -EUCLEAN;        /* stored records are damaged: nothing more until it is quarantined */
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

        if (log->live_damage_seq) {
                /* a copy's lookup (dedupe) just found the log damaged: store nothing */
                r = -EUCLEAN;
                goto undo;
        }
        if (stored == 0)
                return 0;

        prealloc(log, log->end + log->out.len);
        r = pwrite_full(log->fd, log->out.data, log->out.len, log->end);
        if (r >= 0 && !log->unsynced_mode && (log->syncs++, fdatasync(log->fd) < 0))
                r = -errno;
        if (r < 0) {
                /* take the batch back out; if even that fails, stop appending */
                if (ftruncate(log->fd, (off_t) log->end) < 0 || fdatasync(log->fd) < 0)
                        log->broken = true;
                log->prealloc_end = 0;          /* the truncation freed what was allocated ahead */
                goto undo;
        }

        /* on stable storage (unsynced: written, chatlog_sync to come): commit */
        log->unsynced |= log->unsynced_mode;
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


/* Reads and checks the header at off: -EBADMSG if it does not check out, another -errno if it cannot be read. */
static int read_header(struct chatlog *log, uint64_t off, uint32_t *len, uint32_t *crc)
{
        uint8_t h[CHATLOG_HDR];
        size_t got;
        int r;

        if (off + CHATLOG_HDR > log->end)
                return -EBADMSG;
        r = pread_full(log->fd, h, sizeof h, off, &got);
        if (r < 0)
                return r;
        /* short: the file shrank under us, which is damage too */
        if (got != sizeof h || header_check(h, len) != HEADER_OK || off + CHATLOG_HDR + *len > log->end)
                return -EBADMSG;
        if (crc)
                *crc = get_be32(h + 8);
        return 0;
}

/*
 * A record that does not check out when read, where no damage is known:
 * it was damaged after the log was opened, or lies in the part a
 * checkpoint vouched for.  Appends stop (chatlog_append: -EUCLEAN) and the
 * checkpoint is marked CHATIDX_RESCAN, so that the next open reads the
 * whole log and quarantines the damage, still knowing what was stored (a
 * damaged end is then kept, not cut as if torn).  If it cannot be marked
 * it is removed: the next open reads the whole log all the same.
 */
static int found_damage(struct chatlog *log, uint64_t seq)
{
        if (!log->live_damage_seq || seq < log->live_damage_seq)
                log->live_damage_seq = seq;
        if (!log->rescan_marked && chatlog_checkpoint(log) < 0 &&
            (unlinkat(log->dirfd, CHATLOG_IDX_FILE, 0) == 0 || errno == ENOENT) && fsync(log->dirfd) == 0)
                log->rescan_marked = true;
        return -EBADMSG;
}

/* The quarantined part that starts at off, if any. */
static const struct chatlog_damage *damage_at(const struct chatlog *log, uint64_t off)
{
        for (size_t i = 0; i < log->n_damage && log->damage[i].off <= off; i++)
                if (log->damage[i].off == off)
                        return &log->damage[i];
        return NULL;
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
        for (s = log->base_seq + (uint64_t) k * CHATLOG_INDEX_EVERY + 1; s < seq;) {
                const struct chatlog_damage *d = damage_at(log, off);
                uint32_t len;
                int r;

                if (d) {
                        if (seq <= d->last_seq)
                                break;          /* seq is in it: chatlog_next says so */
                        s = d->last_seq + 1;
                        off = d->end;
                        continue;
                }
                r = read_header(log, off, &len, NULL);
                if (r < 0)
                        return r == -EBADMSG ? found_damage(log, s) : r;
                off += CHATLOG_HDR + len;
                s++;
        }
        *cur = (struct chatlog_cursor) { .seq = seq, .off = off };
        return 0;
}

int chatlog_next(struct chatlog *log, struct chatlog_cursor *cur, struct dchat_entry *e)
{
        const struct chatlog_damage *d;
        uint32_t len, crc;
        size_t got;
        int r;

        if (cur->seq <= log->base_seq || cur->seq > log->last_seq)
                return -ENOENT;
        while ((d = damage_at(log, cur->off))) {
                if (cur->seq <= d->last_seq) {
                        e->seq = cur->seq;
                        cur->damaged_last = d->last_seq;
                        cur->damaged_why = damage_why(d->kind);
                        cur->seq = d->last_seq + 1;
                        cur->off = d->end;
                        return CHATLOG_DAMAGED;
                }
                cur->off = d->end;      /* bytes that stood for no seq */
        }
        r = read_header(log, cur->off, &len, &crc);
        if (r < 0)
                return r == -EBADMSG ? found_damage(log, cur->seq) : r;
        r = pread_full(log->fd, log->buf, len, cur->off + CHATLOG_HDR, &got);
        if (r < 0)
                return r;
        if (got != len || crc32c(0, log->buf, len) != crc)
                return found_damage(log, cur->seq);
        if (body_decode(log->buf, len, e) < 0 || e->seq != cur->seq)
                return found_damage(log, cur->seq);
        cur->seq++;
        cur->off += CHATLOG_HDR + len;
        return 0;
}

uint64_t chatlog_first_seq(const struct chatlog *log)
{
        return log->base_seq + 1;
}

uint64_t chatlog_damaged_at(const struct chatlog *log)
{
        return log->live_damage_seq;
}

size_t chatlog_damage_count(const struct chatlog *log)
{
        return log->n_damage;
}

void chatlog_damage_get(const struct chatlog *log, size_t i, struct chatlog_damage_info *di)
{
        const struct chatlog_damage *d = &log->damage[i];
        char name[NAME_MAX + 1];
        struct stat st;

        *di = (struct chatlog_damage_info) { .first_seq = d->first_seq, .last_seq = d->last_seq, .off = d->off,
                                             .end = d->end, .why = damage_why(d->kind),
                                             .found_now = log->damage_new[i],
                                             .copy_error = log->damage_copy_error[i] };
        damage_copy_name(d, name, sizeof name);
        if (fstatat(log->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                snprintf(di->copy, sizeof di->copy, "%s/%s", log->dir, name);
}

/*
 * The first record whose time is >= t is found through the greatest time
 * before each index slot, which never decreases along the log even when the
 * entries' own times (posters' clocks) do: a binary search finds the block
 * of 256 records where it first reaches t, and that block is read
 * (quarantined records in it are passed over: their times are unknown).
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
                if (r == 0 && e->time >= t) {
                        *seq = e->seq;
                        return 0;
                }
        }
        return r == -ENOENT ? 0 : r;
}

/* --- archiving and repair ----------------------------------------------------------- */

/* Writes path (new: O_EXCL) with the old log's owner and mode, then data, synced.  The fd stays open in *fdp. */
static int write_new(struct chatlog *log, const char *name, const struct stat *like, const void *data, size_t n,
                     int *fdp)
{
        int fd = openat(log->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);

        *fdp = fd;
        if (fd < 0)
                return -errno;
        /* the same owner and mode as the old log, so the daemon's user can open it (made as root) */
        if ((fchown(fd, like->st_uid, like->st_gid) < 0 && errno != EPERM) || fchmod(fd, like->st_mode & 07777) < 0)
                return -errno;
        return pwrite_full(fd, data, n, 0);
}

/* A start record for log's state (its last seq becomes the base): header and body in b. */
static int start_record(struct wbuf *b, const struct chatlog *log)
{
        size_t len;

        wbuf_put(b, (const uint8_t[CHATLOG_HDR]) {0}, CHATLOG_HDR);
        start_put(b, log);
        if (b->failed)
                return -ENOMEM;
        len = b->len - CHATLOG_HDR;
        if (len > DCHAT_FRAME_MAX)
                return -E2BIG;
        header_make(b->data, CHATLOG_START_MAGIC, b->data + CHATLOG_HDR, (uint32_t) len);
        return 0;
}

/*
 * The archive: the new log (its start record) is written and synced under
 * chat.log.new; the old log gets its archive name as a second (hard) link;
 * the directory is synced; chat.log.new is renamed over chat.log — the
 * point of no return, atomic.  Before it, any failure is undone (the link
 * removed: it must not stay a second name of the live log, which would
 * grow under the archive's name), and a crash leaves at worst that link,
 * which the next open (server or archive) removes.  After it, the archive
 * is done: removing the old checkpoint and syncing the directory are
 * completed if they can be, else reported as a warning.
 */
int chatlog_archive(const char *dir, char *name, size_t cap, uint64_t *first, uint64_t *last,
                    struct chatlog_recovery *rec, char *warn, size_t warncap)
{
        struct chatlog *log = NULL;
        struct wbuf b = {0};
        struct stat a, o;
        bool linked = false;
        int fd = -1, r;

        if (warncap)
                warn[0] = '\0';
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
        if (fstat(log->fd, &o) < 0) {
                r = -errno;
                goto out;
        }

        /* the new log: just the start record, on disk before anything is renamed */
        r = start_record(&b, log);
        if (r < 0)
                goto out;
        (void) unlinkat(log->dirfd, CHATLOG_FILE ".new", 0);
        r = write_new(log, CHATLOG_FILE ".new", &o, b.data, b.len, &fd);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                goto out;

        /* the old log keeps its inode under its new name */
        if (linkat(log->dirfd, CHATLOG_FILE, log->dirfd, name, 0) < 0) {
                r = -errno;
                goto out;       /* EEXIST: an archive of that name that is not this log; leave it be */
        }
        linked = true;
        if (fsync(log->dirfd) < 0 || renameat(log->dirfd, CHATLOG_FILE ".new", log->dirfd, CHATLOG_FILE) < 0) {
                r = -errno;
                goto out;
        }
        linked = false;
        r = 0;

        /* done; the rest only tidies up */
        if (unlinkat(log->dirfd, CHATLOG_IDX_FILE, 0) < 0 && errno != ENOENT)
                snprintf(warn, warncap, "the old checkpoint %s/%s could not be removed (%s); harmless: the server "
                         "discards it", dir, CHATLOG_IDX_FILE, strerror(errno));
        if (fsync(log->dirfd) < 0)
                snprintf(warn, warncap, "syncing %s failed (%s): until it is synced a crash may bring back the old "
                         "chat.log; the next start or --archive then goes on from there cleanly", dir, strerror(errno));
out:
        if (fd >= 0)
                close(fd);
        if (r < 0) {
                /* back to the state before: one name for the live log, no chat.log.new */
                if (linked && fstatat(log->dirfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == o.st_ino &&
                    a.st_dev == o.st_dev)
                        (void) unlinkat(log->dirfd, name, 0);
                (void) unlinkat(log->dirfd, CHATLOG_FILE ".new", 0);
                (void) fsync(log->dirfd);
        }
        wbuf_free(&b);
        chatlog_close(log);
        return r;
}

/*
 * An archived log's final state, read only: its last seq, fence, greatest
 * time and the nodes' post ids, for a start record that continues it.
 */
static int archive_state(const char *dir, const char *name, struct chatlog **ret, char *why, size_t cap)
{
        struct chatlog_recovery rec = {0};
        struct chatlog *log = NULL;
        uint64_t bad_off = 0;
        struct stat st;
        int r;

        r = log_new(dir, &log);
        if (r < 0)
                return r;
        log->fd = openat(log->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (log->fd < 0 || fstat(log->fd, &st) < 0) {
                r = -errno;
                goto fail;
        }
        r = start_read(log, (uint64_t) st.st_size, &rec);
        if (r >= 0)
                r = scan(log, log->data_start, (uint64_t) st.st_size, UINT64_MAX, &bad_off, &rec);
        if (r < 0)
                goto fail;
        if (bad_off < (uint64_t) st.st_size)
                snprintf(why, cap, "%s ends in damage (%s)", name, rec.reason);
        *ret = log;
        return 0;
fail:
        snprintf(why, cap, "cannot read %s: %s", name, r == -EBADMSG && rec.reason[0] ? rec.reason : strerror(-r));
        chatlog_close(log);
        return r;
}

/* Parses "chat.log.FIRST-LAST" exactly. */
static bool archive_name(const char *s, uint64_t *first, uint64_t *last)
{
        unsigned long long f, l;
        int n = -1;

        if (strncmp(s, CHATLOG_FILE ".", strlen(CHATLOG_FILE ".")) != 0 || !strchr("123456789", s[9]) ||
            sscanf(s + 9, "%llu-%llu%n", &f, &l, &n) != 2 || n < 0 || s[9 + n] != '\0' || f == 0 || l < f)
                return false;
        *first = f;
        *last = l;
        return true;
}

int chatlog_repair(const char *dir, struct chatlog_repair *rep)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct chatlog_recovery rec;
        struct chatlog *log = NULL, *from = NULL;
        struct wbuf b = {0};
        struct stat o, a;
        uint64_t x, at = 0, odd_seq = 0, odd_off = 0, best_last = 0;
        uint8_t h[CHATLOG_HDR];
        uint32_t len;
        size_t got;
        bool linked = false, have_entry;
        int fd = -1, r;

        *rep = (struct chatlog_repair) {0};
        if (!e)
                return -ENOMEM;
        r = chatlog_open(dir, &log, &rec);
        if (r == 0) {
                chatlog_close(log);
                return -EALREADY;
        }
        if (r != -EBADMSG || !rec.start_damaged) {
                snprintf(rep->error, sizeof rep->error, "%s", r == -EBADMSG && rec.reason[0] ? rec.reason : strerror(-r));
                return r;
        }

        r = log_new(dir, &log);
        if (r < 0)
                return r;
        log->fd = openat(log->dirfd, CHATLOG_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (log->fd < 0 || fstat(log->fd, &o) < 0) {
                r = -errno;
                goto out;
        }
        if (flock(log->fd, LOCK_EX | LOCK_NB) < 0) {
                r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                goto out;
        }

        /* the entries start after the old start record if its header is intact, else the rest is kept
         * as it is (whatever does not check out there is quarantined at the next open) */
        r = pread_full(log->fd, h, sizeof h, 0, &got);
        if (r < 0)
                goto out;
        x = got == sizeof h && header_check(h, &len) == HEADER_START && CHATLOG_HDR + (uint64_t) len <= (uint64_t) o.st_size
                    ? CHATLOG_HDR + (uint64_t) len
                    : ((uint64_t) o.st_size < CHATLOG_HDR ? (uint64_t) o.st_size : CHATLOG_HDR);

        /* the first good entry, whatever its seq */
        struct scan s = { .fd = log->fd, .buf = log->buf };
        r = resync(log, &s, x, x, (uint64_t) o.st_size, e, &at, &odd_seq, &odd_off);
        if (r < 0)
                goto out;
        if (r == 0 && odd_seq) {
                /* (a seq far beyond the bytes before it: what a start record is for) */
                uint32_t l2, c2;
                uint8_t kind;
                char why[160];
                at = odd_off;
                r = record_at(log, &s, at, (uint64_t) o.st_size, true, e, &l2, &c2, &kind, why, sizeof why);
                if (r < 0)
                        goto out;
                r = r == RECORD_GOOD;
        }
        have_entry = r > 0;
        if (have_entry)
                rep->first_entry = e->seq;

        /* the archive it continues: the greatest LAST below the first entry that fits its fence */
        {
                struct dirent *de;
                int dfd = openat(log->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
                if (!d) {
                        r = -errno;
                        if (dfd >= 0)
                                close(dfd);
                        goto out;
                }
                while ((de = readdir(d))) {
                        uint64_t f, l;
                        struct chatlog *c = NULL;
                        char why[300] = "";
                        if (!archive_name(de->d_name, &f, &l) || l <= best_last || (have_entry && l >= e->seq))
                                continue;
                        if (archive_state(dir, de->d_name, &c, why, sizeof why) < 0)
                                continue;
                        if (c->last_seq > l || (c->base_seq && c->base_seq + 1 != f) ||
                            (have_entry && fence_cmp(c->last_lamport, c->last_node, c->last_fence_idx, e->lamport,
                                                     e->node, e->fence_idx) >= 0)) {
                                chatlog_close(c);       /* not the log this one continues */
                                continue;
                        }
                        c->last_seq = l;        /* the name says where it ended, even if its end is damaged */
                        chatlog_close(from);
                        from = c;
                        best_last = l;
                        strlcpy(rep->archive, de->d_name, sizeof rep->archive);
                        if (why[0])
                                snprintf(rep->warning, sizeof rep->warning, "%s", why);
                }
                closedir(d);
        }
        if (!from && !have_entry) {
                snprintf(rep->error, sizeof rep->error,
                         "no archived log chat.log.FIRST-LAST and no good entry in chat.log to rebuild the start record "
                         "from: restore chat.log from a backup");
                r = -ENOENT;
                goto out;
        }
        if (!from) {
                /* only the first entry: seqs go on before it, the fence just below its own */
                r = log_new(dir, &from);
                if (r < 0)
                        goto out;
                from->last_seq = e->seq - 1;
                strcpy(from->last_node, e->node);
                if (e->lamport > 0)
                        from->last_lamport = e->lamport - 1;
                else if (e->fence_idx > 0)
                        from->last_fence_idx = e->fence_idx - 1;
                else
                        from->last_seq = 0;     /* no fence below it: cannot be */
                if (from->last_seq == 0) {
                        snprintf(rep->error, sizeof rep->error,
                                 "the first good entry (seq %" PRIu64 ") cannot follow a start record", e->seq);
                        r = -EBADMSG;
                        goto out;
                }
                snprintf(rep->warning, sizeof rep->warning,
                         "no archived log chat.log.FIRST-%" PRIu64 " was found: the start record was rebuilt from the "
                         "first good entry (seq %" PRIu64 "). Lost: the archived part's last fence (appends now only "
                         "need a fence above that entry's) and the nodes' last post ids before it, so a post that was "
                         "in flight when the log was archived could be stored twice",
                         e->seq - 1, e->seq);
        }
        rep->base_seq = from->last_seq;

        /* the repaired log: the new start record, then the old file from x on, as it is */
        r = start_record(&b, from);
        if (r < 0)
                goto out;
        (void) unlinkat(log->dirfd, CHATLOG_FILE ".repair", 0);
        r = write_new(log, CHATLOG_FILE ".repair", &o, b.data, b.len, &fd);
        for (uint64_t pos = x; r >= 0 && pos < (uint64_t) o.st_size;) {
                size_t want = (uint64_t) o.st_size - pos < CHATLOG_BUF ? (size_t) ((uint64_t) o.st_size - pos) : CHATLOG_BUF;
                r = pread_full(log->fd, log->buf, want, pos, &got);
                if (r >= 0 && got == 0)
                        break;
                if (r >= 0)
                        r = pwrite_full(fd, log->buf, got, b.len + (pos - x));
                pos += got;
        }
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r < 0)
                goto out;

        /* the damaged file stays whole under another name */
        for (unsigned attempt = 0; attempt < 100; attempt++) {
                char name[NAME_MAX + 1];
                snprintf(name, sizeof name, CHATLOG_FILE ".corrupt-%lld-start%s%.0u", (long long) time(NULL),
                         attempt ? "." : "", attempt);
                if (linkat(log->dirfd, CHATLOG_FILE, log->dirfd, name, 0) == 0) {
                        snprintf(rep->saved_to, sizeof rep->saved_to, "%s/%s", dir, name);
                        linked = true;
                        break;
                }
                if (errno != EEXIST) {
                        r = -errno;
                        goto out;
                }
        }
        if (!linked) {
                r = -EEXIST;
                goto out;
        }
        if (fsync(log->dirfd) < 0 || renameat(log->dirfd, CHATLOG_FILE ".repair", log->dirfd, CHATLOG_FILE) < 0) {
                r = -errno;
                goto out;
        }
        linked = false;
        r = 0;
        (void) unlinkat(log->dirfd, CHATLOG_IDX_FILE, 0);
        (void) fsync(log->dirfd);
out:
        if (fd >= 0)
                close(fd);
        if (r < 0 && log) {
                const char *saved = strrchr(rep->saved_to, '/');
                if (linked && saved && fstatat(log->dirfd, saved + 1, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
                    a.st_ino == o.st_ino && a.st_dev == o.st_dev)
                        (void) unlinkat(log->dirfd, saved + 1, 0);
                rep->saved_to[0] = '\0';
                (void) unlinkat(log->dirfd, CHATLOG_FILE ".repair", 0);
                if (!rep->error[0])
                        snprintf(rep->error, sizeof rep->error, "%s", strerror(-r));
        }
        wbuf_free(&b);
        chatlog_close(from);
        chatlog_close(log);
        return r;
}
