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
 *
 * Opening the log scans it whole.  At the first record that does not check
 * out, the rest of the file is copied aside to chat.log.corrupt-TIME-OFFSET
 * (and synced), and only then is the file cut there.  An append is one
 * write and one fdatasync for the whole batch; the in-memory state moves on
 * only after the sync succeeded.  Nothing of the log is kept in memory but
 * a sparse seq → offset index and the last post id of every node.
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

#define CHATLOG_FILE            "chat.log"
#define CHATLOG_MAGIC           UINT32_C(0x44434C31)    /* "DCL1" */
#define CHATLOG_HDR             16
#define CHATLOG_INDEX_EVERY     256
/* seq, lamport, node, fence_idx, post_id, time, utc_offset, author, text */
#define CHATLOG_BODY_MIN        (8 + 8 + 2 + 4 + 8 + 8 + 4 + 2 + 2)
#define CHATLOG_BUF             (2 * (CHATLOG_HDR + DCHAT_FRAME_MAX))

struct chatlog_node {
        char name[DCHAT_NAME_MAX + 1];
        uint64_t post_id;               /* last stored post id (committed) */
        uint64_t seq;                   /* ... and where it was stored */
        uint64_t new_post_id;           /* staged by the running append */
        uint64_t new_seq;
};

struct chatlog {
        int fd;
        bool broken;                    /* a failed append could not be undone */
        uint64_t syncs;                 /* fdatasyncs by appends, for statistics */

        uint64_t end;                   /* committed end of the file */
        uint64_t last_seq;
        uint64_t last_lamport;
        char last_node[DCHAT_NAME_MAX + 1];
        uint32_t last_fence_idx;

        uint64_t *index;                /* index[k]: offset of seq k * 256 + 1 */
        size_t n_index, cap_index;

        struct chatlog_node *nodes;     /* [0, n_nodes) committed */
        size_t n_nodes, cap_nodes;

        struct wbuf out;                /* the batch being appended */
        uint8_t *buf;                   /* reads: CHATLOG_BUF bytes */
};

/* --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) ------------------- */

static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
        if (crc32c_table[1])
                return;
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (unsigned k = 0; k < 8; k++)
                        c = c & 1 ? (c >> 1) ^ UINT32_C(0x82F63B78) : c >> 1;
                crc32c_table[i] = c;
        }
}

/* crc32c(0, p, n) is the CRC of p; pass a previous result to continue it. */
static uint32_t crc32c(uint32_t crc, const void *p, size_t n)
{
        const uint8_t *b = p;

        crc32c_init();
        crc = ~crc;
        while (n--)
                crc = crc32c_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
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

static void header_make(uint8_t h[CHATLOG_HDR], const uint8_t *body, uint32_t len)
{
        put_be32(h, CHATLOG_MAGIC);
        put_be32(h + 4, len);
        put_be32(h + 8, crc32c(0, body, len));
        put_be32(h + 12, crc32c(0, h, 12));
}

enum header_state {
        HEADER_OK,
        HEADER_BAD_MAGIC,
        HEADER_BAD_CRC,
        HEADER_BAD_LENGTH,
};

static enum header_state header_check(const uint8_t h[CHATLOG_HDR], uint32_t *len)
{
        if (get_be32(h) != CHATLOG_MAGIC)
                return HEADER_BAD_MAGIC;
        if (get_be32(h + 12) != crc32c(0, h, 12))
                return HEADER_BAD_CRC;
        *len = get_be32(h + 4);
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

/*
 * Reads every record, rebuilding the in-memory state.  Sets *bad_off to the
 * offset of the first bad record (or the file size) and fills rec->reason.
 * Fails only on read errors or allocation failures: those are not
 * corruption and must never cut anything.
 */
static int scan(struct chatlog *log, uint64_t size, uint64_t *bad_off, struct chatlog_recovery *rec)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct scan s = { .fd = log->fd, .buf = log->buf };
        uint64_t off = 0;
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
                if ((n - 1) % CHATLOG_INDEX_EVERY == 0) {
                        r = GROW(log->index, log->cap_index, log->n_index + 1);
                        if (r < 0)
                                return r;
                        log->index[log->n_index++] = off;
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
                log->last_lamport = e->lamport;
                strcpy(log->last_node, e->node);
                log->last_fence_idx = e->fence_idx;
                off += CHATLOG_HDR + len;
        }
done:
        *bad_off = off;
        return 0;
}

int chatlog_open(const char *dir, struct chatlog **ret, struct chatlog_recovery *rec)
{
        struct chatlog_recovery dummy;
        struct chatlog *log = NULL;
        int dirfd = -1, r;
        bool created = false;
        uint64_t bad_off = 0;
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

        r = scan(log, (uint64_t) st.st_size, &bad_off, rec);
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
        rec->records = log->last_seq;
        close(dirfd);
        *ret = log;
        return 0;

fail:
        if (dirfd >= 0)
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
        free(log->index);
        free(log->nodes);
        wbuf_free(&log->out);
        free(log->buf);
        free(log);
        return NULL;
}

/* --- appending ------------------------------------------------------------------ */

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

int chatlog_append(struct chatlog *log, struct dchat_entry *entries, unsigned n,
                   enum chatlog_result *results)
{
        uint64_t seq = log->last_seq, lamport = log->last_lamport;
        const char *fnode = log->last_node;
        uint32_t fidx = log->last_fence_idx;
        size_t n_nodes = log->n_nodes, n_index = log->n_index;
        unsigned stored = 0;
        int r;

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
        for (unsigned i = 0; i < n; i++)
                results[i] = CHATLOG_INVALID;

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
                        e->seq = e->post_id == nd->new_post_id ? nd->new_seq : 0;
                        results[i] = CHATLOG_DUPLICATE;
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
                header_make(log->out.data + start, log->out.data + start + CHATLOG_HDR, (uint32_t) len);

                seq++;
                if ((seq - 1) % CHATLOG_INDEX_EVERY == 0)
                        log->index[n_index++] = log->end + start;
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

        r = pwrite_full(log->fd, log->out.data, log->out.len, log->end);
        if (r >= 0 && (log->syncs++, fdatasync(log->fd) < 0))
                r = -errno;
        if (r < 0) {
                /* take the batch back out; if even that fails, stop appending */
                if (ftruncate(log->fd, (off_t) log->end) < 0 || fdatasync(log->fd) < 0)
                        log->broken = true;
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
        log->last_lamport = lamport;
        if (fnode != log->last_node)
                strcpy(log->last_node, fnode);
        log->last_fence_idx = fidx;
        log->end += log->out.len;
        wbuf_reset(&log->out);
        return 0;

undo:
        /* in-memory state is untouched: staged fields are simply dropped */
        for (unsigned i = 0; i < n; i++)
                if (results[i] == CHATLOG_STORED)
                        entries[i].seq = 0;
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

int chatlog_seek(struct chatlog *log, uint64_t seq, struct chatlog_cursor *cur)
{
        uint64_t s, off;
        size_t k;

        if (seq == 0)
                seq = 1;
        if (seq > log->last_seq + 1)
                return -ENOENT;
        if (seq == log->last_seq + 1) {
                *cur = (struct chatlog_cursor) { .seq = seq, .off = log->end };
                return 0;
        }
        k = (size_t) ((seq - 1) / CHATLOG_INDEX_EVERY);
        if (k >= log->n_index)
                return -EIO;    /* cannot happen: every 256th record is indexed */
        off = log->index[k];
        for (s = (uint64_t) k * CHATLOG_INDEX_EVERY + 1; s < seq; s++) {
                uint32_t len;
                int r = read_header(log, off, &len, NULL);
                if (r < 0)
                        return r;
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

        if (cur->seq == 0 || cur->seq > log->last_seq)
                return -ENOENT;
        r = read_header(log, cur->off, &len, &crc);
        if (r < 0)
                return r;
        r = pread_full(log->fd, log->buf, len, cur->off + CHATLOG_HDR, &got);
        if (r < 0)
                return r;
        if (got != len || crc32c(0, log->buf, len) != crc)
                return -EIO;
        if (body_decode(log->buf, len, e) < 0 || e->seq != cur->seq)
                return -EIO;
        cur->seq++;
        cur->off += CHATLOG_HDR + len;
        return 0;
}
