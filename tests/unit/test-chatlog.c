/* SPDX-License-Identifier: MIT */
/*
 * test-chatlog.c — the durable chat log: append, read back, fencing,
 * exactly-once post ids, recovery of torn and corrupt tails, quarantine of
 * damage followed by good records (in the scanned part, in the part a
 * checkpoint covers, at the end under a checkpoint), the checkpoint codec
 * with damaged parts, the repair of an archive's start record, views over
 * a large log, locking, a failed write (RLIMIT_FSIZE makes pwrite fail
 * with EFBIG, no root needed), and injected failures: read errors (EIO from
 * pread is not damage), a failed rename, link or sync in an archive, and
 * the order of syncs and renames of a checkpoint (this file defines pread,
 * renameat, linkat, fsync and fdatasync, which the code under test then
 * calls instead of libc's).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "dchatd.h"
#include "chatidx.h"
#include "tap.h"

static char dir[256];

/* --- helpers --------------------------------------------------------------------- */

/* An independent, bitwise CRC-32C, to check the file format from outside. */
static uint32_t crc32c_slow(const void *p, size_t n)
{
        const uint8_t *b = p;
        uint32_t crc = 0xffffffff;

        while (n--) {
                crc ^= *b++;
                for (int k = 0; k < 8; k++)
                        crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78 : crc >> 1;
        }
        return ~crc;
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
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
        e->utc_offset = 3600;
        snprintf(e->author, sizeof e->author, "lucy");
        e->text_len = (uint16_t) snprintf(e->text, sizeof e->text, "%s", text);
}

static void subdir(char *buf, size_t cap, const char *name)
{
        snprintf(buf, cap, "%s/%s", dir, name);
        if (mkdir(buf, 0755) < 0)
                diag("mkdir %s: %m", buf);
}

static char *logpath(const char *d)
{
        static char p[PATH_MAX + 16];
        snprintf(p, sizeof p, "%s/chat.log", d);
        return p;
}

/* d/name (four at a time can be live) */
static char *path_in(const char *d, const char *name)
{
        static char p[4][PATH_MAX + 64];
        static unsigned k;
        char *b = p[k++ % 4];
        snprintf(b, sizeof p[0], "%s/%s", d, name);
        return b;
}

static long long file_size(const char *path)
{
        struct stat st;
        return stat(path, &st) < 0 ? -1 : (long long) st.st_size;
}

static int read_file(const char *path, uint8_t **data, size_t *len)
{
        long long sz = file_size(path);
        int fd;

        if (sz < 0)
                return -1;
        *data = malloc((size_t) sz + 1);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (!*data || fd < 0 || pread(fd, *data, (size_t) sz, 0) != sz) {
                if (fd >= 0)
                        close(fd);
                free(*data);
                return -1;
        }
        close(fd);
        *len = (size_t) sz;
        return 0;
}

static void patch_file(const char *path, long long off, const void *p, size_t n)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || pwrite(fd, p, n, off) != (ssize_t) n)
                diag("patching %s failed: %m", path);
        if (fd >= 0)
                close(fd);
}

static void flip_byte(const char *path, long long off)
{
        uint8_t b;
        int fd = open(path, O_RDWR | O_CLOEXEC);

        if (fd < 0 || pread(fd, &b, 1, off) != 1) {
                diag("flip_byte %s: %m", path);
                if (fd >= 0)
                        close(fd);
                return;
        }
        b ^= 0x20;
        if (pwrite(fd, &b, 1, off) != 1)
                diag("flip_byte %s: %m", path);
        close(fd);
}

static void append_bytes(const char *path, const void *p, size_t n)
{
        patch_file(path, file_size(path), p, n);
}

/*
 * Builds a record by hand: 16-byte header then proto_put_entry() ("DCL2"),
 * or with v1 the record of the first version: "DCL1", the body without the
 * vector clock.
 */
static void make_record_version(struct wbuf *b, const struct dchat_entry *e, bool v1)
{
        struct wbuf body = {0};
        uint8_t h[16];

        proto_put_entry(&body, e);
        if (v1)
                body.len -= 1;  /* e has no clock (n = 0): its count byte goes, as the first version had none */
        h[0] = 'D', h[1] = 'C', h[2] = 'L', h[3] = v1 ? '1' : '2';
        h[4] = body.len >> 24, h[5] = body.len >> 16, h[6] = body.len >> 8, h[7] = body.len;
        uint32_t c = crc32c_slow(body.data, body.len);
        h[8] = c >> 24, h[9] = c >> 16, h[10] = c >> 8, h[11] = c;
        c = crc32c_slow(h, 12);
        h[12] = c >> 24, h[13] = c >> 16, h[14] = c >> 8, h[15] = c;
        wbuf_put(b, h, sizeof h);
        wbuf_put(b, body.data, body.len);
        wbuf_free(&body);
}

static void make_record(struct wbuf *b, const struct dchat_entry *e)
{
        make_record_version(b, e, false);
}

/* Creates a log in d with n records "msg N" (lamport N, node1, post id N). */
static int fill(const char *d, unsigned n)
{
        struct chatlog *log = NULL;
        struct dchat_entry e;
        enum chatlog_result res;
        char text[64];
        int r;

        r = chatlog_open(d, &log, NULL);
        if (r < 0)
                return r;
        for (unsigned i = 1; i <= n && r >= 0; i++) {
                snprintf(text, sizeof text, "msg %u", i);
                mk(&e, i, "node1", 0, i, text);
                r = chatlog_append(log, &e, 1, &res);
                if (r >= 0 && res != CHATLOG_STORED)
                        r = -EINVAL;
        }
        chatlog_close(log);
        return r;
}

/* File offset of record seq (via the API), -1 on error. */
static long long record_off(struct chatlog *log, uint64_t seq)
{
        struct chatlog_cursor cur;
        return chatlog_seek(log, seq, &cur) < 0 ? -1 : (long long) cur.off;
}

/* Reads the whole log, checking seqs run 1..n and texts are "msg N". */
static bool read_all_msgs(struct chatlog *log, uint64_t n)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct chatlog_cursor cur;
        char want[64];
        uint64_t s = 0;
        int r;

        if (!e || chatlog_seek(log, 1, &cur) < 0)
                return false;
        while ((r = chatlog_next(log, &cur, e)) == 0) {
                s++;
                snprintf(want, sizeof want, "msg %" PRIu64, s);
                if (e->seq != s || strcmp(e->text, want) != 0) {
                        diag("record %" PRIu64 ": seq %" PRIu64 " text '%s'", s, e->seq, e->text);
                        return false;
                }
        }
        if (r != -ENOENT || s != n) {
                diag("read %" PRIu64 " records, wanted %" PRIu64 ", ended with %d", s, n, r);
                return false;
        }
        return true;
}

static unsigned count_corrupt(const char *d)
{
        DIR *dd = opendir(d);
        struct dirent *de;
        unsigned n = 0;

        if (!dd)
                return 0;
        while ((de = readdir(dd)))
                if (strncmp(de->d_name, "chat.log.corrupt-", 17) == 0)
                        n++;
        closedir(dd);
        return n;
}

static void rm_rf(const char *d)
{
        DIR *dd = opendir(d);
        struct dirent *de;
        char p[PATH_MAX + 300];

        if (!dd)
                return;
        while ((de = readdir(dd))) {
                struct stat st;
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                snprintf(p, sizeof p, "%s/%s", d, de->d_name);
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                        rm_rf(p);
                else
                        unlink(p);
        }
        closedir(dd);
        rmdir(d);
}

/* --- tests ------------------------------------------------------------------------- */

static void test_crc_and_fence_cmp(void)
{
        is_int(crc32c_slow("123456789", 9), 0xE3069283, "reference CRC-32C check value");
        ok(fence_cmp(1, "a", 0, 2, "a", 0) < 0, "fence_cmp: lamport first");
        ok(fence_cmp(2, "a", 9, 1, "z", 0) > 0, "fence_cmp: lamport beats node and index");
        ok(fence_cmp(2, "node1", 5, 2, "node2", 0) < 0, "fence_cmp: then node name");
        ok(fence_cmp(2, "node1", 1, 2, "node1", 2) < 0, "fence_cmp: then fence index");
        is_int(fence_cmp(2, "node1", 1, 2, "node1", 1), 0, "fence_cmp: equal");
        ok(fence_cmp(0, "x", 0, 0, "", 0) > 0, "fence_cmp: anything beats the empty fence");
        ok(chatlog_close(NULL) == NULL, "chatlog_close(NULL)");
}

static void test_basic(void)
{
        char d[PATH_MAX], node[DCHAT_NAME_MAX + 1];
        struct chatlog *log = NULL, *log2 = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        struct dchat_entry e[4], got;
        enum chatlog_result res[4];
        uint64_t lamport;
        uint32_t idx;
        struct stat st;
        long long size;

        subdir(d, sizeof d, "basic");

        is_int(chatlog_open(d, &log, &rec), 0, "open a new log");
        if (!log)
                return;
        is_int(rec.records, 0, "new log: no records");
        is_int(rec.cut_bytes, 0, "new log: nothing cut");
        is_str(rec.saved_to, "", "new log: nothing saved");
        ok(stat(logpath(d), &st) == 0 && (st.st_mode & 0777) == 0640, "chat.log created 0640");
        is_int(chatlog_last_seq(log), 0, "empty: last seq 0");
        chatlog_last_fence(log, &lamport, node, &idx);
        ok(lamport == 0 && node[0] == '\0' && idx == 0, "empty: last fence is zero");
        is_int(chatlog_last_post_id(log, "node1"), 0, "empty: no post id");
        is_int(chatlog_seek(log, 0, &cur), 0, "empty: seek 0");
        is_int(cur.seq, 1, "seek 0 means 1");
        is_int(chatlog_next(log, &cur, &got), -ENOENT, "empty: next is ENOENT");
        is_int(chatlog_seek(log, 2, &cur), -ENOENT, "empty: seek 2 is ENOENT");

        is_int(chatlog_open(d, &log2, NULL), -EBUSY, "second open of the same log: EBUSY");
        ok(log2 == NULL, "... and no log returned");

        /* batch 1: three posts under one CS entry */
        mk(&e[0], 5, "node1", 0, 1, "Checking timestamp format");
        mk(&e[1], 5, "node1", 1, 2, "héllo wörld ✓");
        mk(&e[2], 5, "node1", 2, 3, "third");
        e[1].utc_offset = -5 * 3600;
        snprintf(e[1].author, sizeof e[1].author, "bob");
        is_int(chatlog_append(log, e, 3, res), 0, "append a batch of 3");
        ok(res[0] == CHATLOG_STORED && res[1] == CHATLOG_STORED && res[2] == CHATLOG_STORED, "all stored");
        ok(e[0].seq == 1 && e[1].seq == 2 && e[2].seq == 3, "seqs 1, 2, 3 assigned");
        size = file_size(logpath(d));
        /* blocks are allocated ahead (fallocate KEEP_SIZE) where the file system can:
         * the size stays the records' end, so readers and recovery see nothing of it */
        ok(size > 0 && size < 4096, "the file's size is the records' end (%lld bytes), not the allocation", size);
        {
                char probe[PATH_MAX + 8];
                snprintf(probe, sizeof probe, "%s/probe", d);
                int pfd = open(probe, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                bool can = pfd >= 0 && fallocate(pfd, FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
                if (pfd >= 0)
                        close(pfd);
                unlink(probe);
                if (!can)
                        diag("this file system cannot allocate ahead: not checked");
                else {
                        long long alloc = stat(logpath(d), &st) == 0 ? (long long) st.st_blocks * 512 : -1;
                        ok(alloc >= (1 << 20), "a megabyte is allocated ahead of the end (%lld bytes)", alloc);
                }
        }

        /* batch 2: another node, later request */
        mk(&e[3], 7, "node2", 0, 1, "from node2");
        is_int(chatlog_append(log, &e[3], 1, res), 0, "append a batch of 1");
        ok(res[0] == CHATLOG_STORED && e[3].seq == 4, "stored as seq 4");
        ok(file_size(logpath(d)) > size, "file grew");
        is_int(chatlog_last_seq(log), 4, "last seq 4");
        chatlog_last_fence(log, &lamport, node, &idx);
        ok(lamport == 7 && !strcmp(node, "node2") && idx == 0, "last fence (7, node2, 0)");
        is_int(chatlog_last_post_id(log, "node1"), 3, "node1 last post id 3");
        is_int(chatlog_last_post_id(log, "node2"), 1, "node2 last post id 1");

        /* read back: every field round-trips */
        is_int(chatlog_seek(log, 1, &cur), 0, "seek 1");
        for (unsigned i = 0; i < 4; i++) {
                memset(&got, 0x55, sizeof got);
                is_int(chatlog_next(log, &cur, &got), 0, "next %u", i + 1);
                ok(got.seq == e[i].seq && got.lamport == e[i].lamport && !strcmp(got.node, e[i].node) &&
                   got.fence_idx == e[i].fence_idx && got.post_id == e[i].post_id && got.time == e[i].time &&
                   got.utc_offset == e[i].utc_offset && !strcmp(got.author, e[i].author) &&
                   got.text_len == e[i].text_len && !strcmp(got.text, e[i].text),
                   "record %u round-trips", i + 1);
        }
        is_int(chatlog_next(log, &cur, &got), -ENOENT, "next past the end: ENOENT");
        is_int(chatlog_seek(log, 3, &cur), 0, "seek 3");
        ok(chatlog_next(log, &cur, &got) == 0 && got.seq == 3 && !strcmp(got.text, "third"), "seek 3 reads seq 3");
        is_int(chatlog_seek(log, 5, &cur), 0, "seek last+1");
        is_int(chatlog_next(log, &cur, &got), -ENOENT, "... reads nothing");
        is_int(chatlog_seek(log, 6, &cur), -ENOENT, "seek last+2: ENOENT");

        /* the on-disk format, checked from outside */
        {
                uint8_t *data = NULL;
                size_t len = 0;
                if (read_file(logpath(d), &data, &len) == 0 && len > 16) {
                        uint32_t blen = be32(data + 4);
                        ok(!memcmp(data, "DCL2", 4), "record starts with the magic DCL2 (an entry with its vector clock)");
                        ok(16 + blen <= len, "body length %u fits", blen);
                        if (16 + blen <= len) {
                                struct rbuf r = { .p = data + 16, .len = blen };
                                is_int(be32(data + 8), crc32c_slow(data + 16, blen), "body CRC-32C");
                                is_int(be32(data + 12), crc32c_slow(data, 12), "header CRC-32C");
                                ok(proto_get_entry(&r, &got) == 0 && r.off == blen && got.seq == 1 &&
                                   !strcmp(got.text, "Checking timestamp format"),
                                   "body is proto_put_entry() of entry 1");
                        }
                } else
                        ok(false, "read chat.log");
                free(data);
        }

        /* fencing */
        size = file_size(logpath(d));
        mk(&e[0], 7, "node2", 0, 2, "equal fence");
        is_int(chatlog_append(log, e, 1, res), 0, "append with an equal fence");
        ok(res[0] == CHATLOG_FENCED && e[0].seq == 0, "equal fence: FENCED");
        mk(&e[0], 6, "node3", 0, 1, "smaller lamport");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_FENCED, "smaller lamport: FENCED");
        mk(&e[0], 7, "node1", 9, 4, "same lamport, smaller node");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_FENCED, "same lamport, smaller node: FENCED");
        is_int(file_size(logpath(d)), size, "nothing written for refused batches");
        is_int(chatlog_last_seq(log), 4, "last seq still 4");
        is_int(chatlog_last_post_id(log, "node3"), 0, "a fenced post does not count as stored");

        mk(&e[0], 8, "node1", 0, 4, "a");
        mk(&e[1], 8, "node1", 0, 5, "same fence as the previous in the batch");
        mk(&e[2], 8, "node1", 1, 6, "b");
        mk(&e[3], 8, "node0", 2, 1, "smaller node within the batch");
        is_int(chatlog_append(log, e, 4, res), 0, "batch with fences refused inside it");
        ok(res[0] == CHATLOG_STORED && res[1] == CHATLOG_FENCED && res[2] == CHATLOG_STORED &&
           res[3] == CHATLOG_FENCED, "stored, fenced, stored, fenced");
        ok(e[0].seq == 5 && e[1].seq == 0 && e[2].seq == 6 && e[3].seq == 0, "seqs 5, -, 6, -");
        is_int(chatlog_last_post_id(log, "node1"), 6, "node1 last post id 6");

        /* copies: a post sent again carries its post id, fence and text unchanged */
        mk(&e[0], 8, "node1", 1, 6, "b");                       /* = seq 6 */
        mk(&e[1], 5, "node1", 1, 2, "héllo wörld ✓");           /* = seq 2 */
        e[1].utc_offset = -5 * 3600;
        snprintf(e[1].author, sizeof e[1].author, "bob");
        mk(&e[2], 9, "node1", 2, 7, "new");
        e[3] = e[2];                                            /* the same post twice in one batch */
        is_int(chatlog_append(log, e, 4, res), 0, "batch with duplicates");
        ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == 6, "a copy of the last post: DUPLICATE, seq 6");
        ok(res[1] == CHATLOG_DUPLICATE && e[1].seq == 2, "a copy of an older post: DUPLICATE with its seq, 2");
        ok(res[2] == CHATLOG_STORED && e[2].seq == 7, "new post stored as 7");
        ok(res[3] == CHATLOG_DUPLICATE && e[3].seq == 7, "a copy within the batch: seq 7");
        mk(&e[0], 10, "node1", 0, 9, "nine");
        mk(&e[1], 10, "node1", 1, 8, "eight after nine");
        chatlog_append(log, e, 2, res);
        ok(res[0] == CHATLOG_STORED && res[1] == CHATLOG_STALE && e[1].seq == 0,
           "a lower post id after a higher one, never stored: STALE, not acknowledged");
        is_int(chatlog_last_seq(log), 8, "... and not stored");
        /* a copy keeps its old (smaller) fence and is still recognised */
        mk(&e[0], 7, "node2", 0, 1, "from node2");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == 4, "a copy wins over the fence: seq 4");
        /* the same post id and fence, another post: not the same post */
        mk(&e[0], 7, "node2", 0, 1, "another text under node2#1");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_CONFLICT && e[0].seq == 0, "post id and fence of seq 4 with another text: CONFLICT");
        mk(&e[0], 8, "node1", 1, 6, "b");
        e[0].time++;
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_CONFLICT, "... or another time: CONFLICT");
        /* a late frame of an earlier life: its post id is below the later life's (incarnation << 32) */
        mk(&e[0], 11, "node3", 0, POST_ID(7, 1), "life 7");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_STORED && e[0].seq == 9, "node3, incarnation 7: stored as seq 9");
        mk(&e[0], 50, "node3", 0, POST_ID(6, 40), "life 6, late, under a greater fence");
        mk(&e[1], 51, "node3", 0, POST_ID(7, 2), "life 7 again");
        chatlog_append(log, e, 2, res);
        ok(res[0] == CHATLOG_STALE && res[1] == CHATLOG_STORED && e[1].seq == 10,
           "a post of an earlier life after the later life's: STALE (never acknowledged as another's)");
        /* fences beyond the bounds */
        mk(&e[0], 51 + DCHAT_CLOCK_JUMP_MAX + 1, "node3", 0, POST_ID(7, 3), "jump");
        mk(&e[1], UINT64_MAX, "node3", 1, POST_ID(7, 4), "the end of the range");
        mk(&e[2], 51 + DCHAT_CLOCK_JUMP_MAX, "node3", 0, POST_ID(7, 5), "a big jump, within the bound");
        chatlog_append(log, e, 3, res);
        ok(res[0] == CHATLOG_BOUNDS && res[1] == CHATLOG_BOUNDS && res[2] == CHATLOG_STORED,
           "a fence more than 2^32 above the last, or near 2^64: BOUNDS; 2^32 above: stored");
        mk(&e[0], 52 + DCHAT_CLOCK_JUMP_MAX, "node3", 0, POST_ID(7, 6), "on from there");
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_STORED && e[0].seq == 12, "and the log goes on (seq 12)");

        /* invalid entries */
        {
                struct dchat_entry bad[9];
                enum chatlog_result br[9];
                const char *what[9] = { "empty text", "newline in text", "bad UTF-8", "bad node name",
                                        "empty author", "control char in author", "utc offset too big",
                                        "post id 0", "valid" };

                for (unsigned i = 0; i < 9; i++)
                        mk(&bad[i], 60 + DCHAT_CLOCK_JUMP_MAX, "node1", i, 100 + i, "fine");
                bad[0].text_len = 0;
                bad[0].text[0] = '\0';
                mk(&bad[1], 60 + DCHAT_CLOCK_JUMP_MAX, "node1", 1, 101, "two\nlines");
                mk(&bad[2], 60 + DCHAT_CLOCK_JUMP_MAX, "node1", 2, 102, "\xc3\x28 bad");
                mk(&bad[3], 60 + DCHAT_CLOCK_JUMP_MAX, "-node", 3, 103, "fine");
                bad[4].author[0] = '\0';
                snprintf(bad[5].author, sizeof bad[5].author, "lu\033[31mcy");
                bad[6].utc_offset = DCHAT_UTC_OFFSET_MAX + 1;
                bad[7].post_id = 0;
                is_int(chatlog_append(log, bad, 9, br), 0, "batch with invalid entries");
                for (unsigned i = 0; i < 8; i++)
                        ok(br[i] == CHATLOG_INVALID && bad[i].seq == 0, "%s: INVALID", what[i]);
                ok(br[8] == CHATLOG_STORED && bad[8].seq == 13, "the valid one is stored as 13");
        }
        is_int(chatlog_last_seq(log), 13, "last seq 13");

        log = chatlog_close(log);
        ok(log == NULL, "close returns NULL");

        /* reopen rebuilds the state */
        is_int(chatlog_open(d, &log, &rec), 0, "reopen");
        if (!log)
                return;
        is_int(rec.records, 13, "13 records found");
        ok(rec.cut_bytes == 0 && rec.saved_to[0] == '\0' && rec.reason[0] == '\0', "nothing cut");
        is_int(chatlog_last_seq(log), 13, "last seq 13 after reopen");
        chatlog_last_fence(log, &lamport, node, &idx);
        ok(lamport == 60 + DCHAT_CLOCK_JUMP_MAX && !strcmp(node, "node1") && idx == 8,
           "last fence (60 + 2^32, node1, 8) after reopen");
        is_int(chatlog_last_post_id(log, "node1"), 108, "node1 post id after reopen");
        is_int(chatlog_last_post_id(log, "node2"), 1, "node2 post id after reopen");
        ok(chatlog_last_post_id(log, "node3") == POST_ID(7, 6), "node3 post id after reopen");
        is_int(chatlog_last_post_id(log, "node4"), 0, "node4 has none");
        mk(&e[0], 60 + DCHAT_CLOCK_JUMP_MAX, "node1", 8, 108, "fine");
        mk(&e[1], 7, "node2", 0, 1, "from node2");
        mk(&e[2], 61 + DCHAT_CLOCK_JUMP_MAX, "node2", 0, 2, "new after reopen");
        mk(&e[3], 29, "node4", 0, 1, "fenced after reopen");
        is_int(chatlog_append(log, e, 4, res), 0, "append after reopen");
        ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == 13, "duplicate after reopen: seq 13");
        ok(res[1] == CHATLOG_DUPLICATE && e[1].seq == 4, "duplicate of node2's post 1 after reopen: seq 4");
        ok(res[2] == CHATLOG_STORED && e[2].seq == 14, "new post stored as 14");
        ok(res[3] == CHATLOG_FENCED, "older fence refused after reopen");
        is_int(count_corrupt(d), 0, "no corrupt files in a clean log");
        chatlog_close(log);
}

/*
 * Damages a 10-record log with damage(), reopens it and checks that the
 * first `keep` records survive, the tail went aside byte for byte, and
 * appending and reading work afterwards.
 */
static void check_recovery(const char *name, void (*damage)(const char *path, struct chatlog *log),
                           uint64_t keep, const char *reason_prefix)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct dchat_entry e;
        enum chatlog_result res;
        uint8_t *before = NULL, *saved = NULL, *after = NULL;
        size_t before_len = 0, saved_len = 0, after_len = 0;
        long long cut_at;

        subdir(d, sizeof d, name);
        if (fill(d, 10) < 0) {
                ok(false, "%s: fill", name);
                return;
        }
        if (chatlog_open(d, &log, NULL) < 0)
                return;
        damage(logpath(d), log);
        cut_at = record_off(log, keep + 1);
        chatlog_close(log);
        log = NULL;
        if (read_file(logpath(d), &before, &before_len) < 0)
                return;

        is_int(chatlog_open(d, &log, &rec), 0, "%s: reopen", name);
        if (!log)
                goto out;
        is_int(rec.records, keep, "%s: %" PRIu64 " good records kept", name, keep);
        is_int(rec.cut_bytes, (long long) before_len - cut_at, "%s: cut bytes", name);
        ok(!strncmp(rec.reason, reason_prefix, strlen(reason_prefix)), "%s: reason '%s'", name, rec.reason);
        is_int(chatlog_last_seq(log), keep, "%s: last seq", name);
        is_int(file_size(logpath(d)), cut_at, "%s: file cut at offset %lld", name, cut_at);
        is_int(count_corrupt(d), 1, "%s: one corrupt file", name);
        {
                char want[64];
                snprintf(want, sizeof want, "/chat.log.corrupt-");
                ok(strstr(rec.saved_to, want) && !strncmp(rec.saved_to, d, strlen(d)), "%s: saved to %s", name,
                   rec.saved_to);
                snprintf(want, sizeof want, "-%lld", cut_at);
                ok(strlen(rec.saved_to) > strlen(want) &&
                   !strcmp(rec.saved_to + strlen(rec.saved_to) - strlen(want), want),
                   "%s: saved file name ends with the offset", name);
        }
        ok(read_file(rec.saved_to, &saved, &saved_len) == 0 && saved_len == before_len - (size_t) cut_at &&
           !memcmp(saved, before + cut_at, saved_len), "%s: the tail was saved byte for byte", name);
        ok(read_file(logpath(d), &after, &after_len) == 0 && after_len == (size_t) cut_at &&
           !memcmp(after, before, after_len), "%s: the kept part is unchanged", name);
        ok(read_all_msgs(log, keep), "%s: the kept records read back", name);
        is_int(chatlog_last_post_id(log, "node1"), keep, "%s: post id rebuilt", name);

        char text[64];
        snprintf(text, sizeof text, "msg %" PRIu64, keep + 1);
        mk(&e, 100, "node1", 0, keep + 1, text);
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == keep + 1,
           "%s: append after recovery stored as %" PRIu64, name, keep + 1);
        ok(read_all_msgs(log, keep + 1), "%s: read back after the append", name);
        chatlog_close(log);
        log = NULL;

        is_int(chatlog_open(d, &log, &rec), 0, "%s: reopen again", name);
        ok(rec.records == keep + 1 && rec.cut_bytes == 0, "%s: clean second reopen", name);
        is_int(count_corrupt(d), 1, "%s: still one corrupt file", name);
        chatlog_close(log);
out:
        free(before);
        free(saved);
        free(after);
}

static void torn_header(const char *path, struct chatlog *log)
{
        if (truncate(path, record_off(log, 10) + 7) < 0)
                diag("truncate: %m");
}

static void torn_body(const char *path, struct chatlog *log)
{
        if (truncate(path, record_off(log, 10) + 16 + 5) < 0)
                diag("truncate: %m");
}

static void torn_one_byte(const char *path, struct chatlog *log)
{
        (void) log;
        if (truncate(path, file_size(path) - 1) < 0)
                diag("truncate: %m");
}

static void crc_last(const char *path, struct chatlog *log)
{
        flip_byte(path, record_off(log, 10) + 16 + 30);
}

static void garbage_tail(const char *path, struct chatlog *log)
{
        uint8_t g[100];
        (void) log;
        for (unsigned i = 0; i < sizeof g; i++)
                g[i] = (uint8_t) (i * 37 + 11);
        append_bytes(path, g, sizeof g);
}

static void zero_tail(const char *path, struct chatlog *log)
{
        static const uint8_t z[4096];
        (void) log;
        append_bytes(path, z, sizeof z);
}

static void magic_garbage_tail(const char *path, struct chatlog *log)
{
        static const char g[] = "DCL1 and then some nonsense that is not a header";
        (void) log;
        append_bytes(path, g, sizeof g - 1);
}

static void seq_gap(const char *path, struct chatlog *log)
{
        struct dchat_entry e;
        struct wbuf b = {0};

        (void) log;
        mk(&e, 50, "node1", 0, 11, "msg 11");
        e.seq = 12;             /* should be 11 */
        make_record(&b, &e);
        append_bytes(path, b.data, b.len);
        wbuf_free(&b);
}

static void fence_back(const char *path, struct chatlog *log)
{
        struct dchat_entry e;
        struct wbuf b = {0};

        (void) log;
        mk(&e, 10, "node1", 0, 11, "msg 11");   /* the same fence as record 10 */
        e.seq = 11;
        make_record(&b, &e);
        append_bytes(path, b.data, b.len);
        wbuf_free(&b);
}

static void test_handmade_record(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct dchat_entry e;
        struct wbuf b = {0};

        subdir(d, sizeof d, "handmade");
        if (fill(d, 3) < 0)
                return;
        mk(&e, 50, "node7", 0, 1, "msg 4");
        e.seq = 4;
        make_record(&b, &e);
        append_bytes(logpath(d), b.data, b.len);
        wbuf_free(&b);
        is_int(chatlog_open(d, &log, &rec), 0, "open a log with a hand-made record");
        if (!log)
                return;
        ok(rec.records == 4 && rec.cut_bytes == 0, "the hand-made record is accepted");
        ok(read_all_msgs(log, 4), "and reads back");
        is_int(chatlog_last_post_id(log, "node7"), 1, "its node's post id is known");
        chatlog_close(log);
}

/*
 * A log written before entries carried a vector clock ("DCL1" records):
 * it opens as it is, reads (without clocks), takes new entries after its
 * old ones, keeps reading both after a checkpoint and a reopen, finds an
 * old post's copy, and quarantines damage in an old record as before.
 */
static void test_old_records(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        struct dchat_entry e;
        enum chatlog_result res;
        struct wbuf b = {0};
        char text[64];
        bool old_ok = true, new_ok = true;

        subdir(d, sizeof d, "old-records");
        for (unsigned i = 1; i <= 300; i++) {
                snprintf(text, sizeof text, "msg %u", i);
                mk(&e, i, "node1", 0, i, text);
                e.seq = i;
                make_record_version(&b, &e, true);
        }
        int fd = open(logpath(d), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        ok(fd >= 0 && write(fd, b.data, b.len) == (ssize_t) b.len && !memcmp(b.data, "DCL1", 4),
           "old: a log of 300 records of the first version (DCL1), made by hand");
        if (fd >= 0)
                close(fd);
        wbuf_free(&b);
        is_int(chatlog_open(d, &log, &rec), 0, "old: it opens");
        if (!log)
                return;
        if (!ok(rec.records == 300 && rec.cut_bytes == 0 && rec.damage_found == 0, "old: every record taken, nothing cut "
           "or quarantined"))
                diag("records %llu cut %llu damage %u: %s", (unsigned long long) rec.records, (unsigned long long) rec.cut_bytes, rec.damage_found, rec.reason);
        ok(read_all_msgs(log, 300), "old: every entry reads back");
        chatlog_seek(log, 1, &cur);
        while (chatlog_next(log, &cur, &e) == 0)
                old_ok &= e.vc.n == 0;
        ok(old_ok, "old: ... without a vector clock");
        for (unsigned i = 301; i <= 310; i++) {
                snprintf(text, sizeof text, "msg %u", i);
                mk(&e, i, "node1", 0, i, text);
                e.vc = (struct vclock) { 2, { i, 5 } };
                new_ok &= chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED;
        }
        ok(new_ok, "old: ten new entries (with vector clocks) go on after the old ones");
        mk(&e, 150, "node1", 0, 150, "msg 150");
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_DUPLICATE && e.seq == 150,
           "old: a copy of an old post is known as stored (seq 150)");
        is_int(chatlog_checkpoint(log), 0, "old: checkpoint");
        chatlog_close(log);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), 0, "old: reopened");
        if (!log)
                return;
        ok(rec.checkpoint_used && read_all_msgs(log, 310), "old: through the checkpoint, all 310 read");
        ok(chatlog_seek(log, 305, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.vc.n == 2 && e.vc.c[0] == 305,
           "old: a new entry with its clock");
        ok(chatlog_seek(log, 300, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.vc.n == 0,
           "old: the last old one without");
        long long off = record_off(log, 150);
        chatlog_close(log);
        log = NULL;
        unlink(path_in(d, "chat.log.idx"));
        flip_byte(logpath(d), off + 16 + 30);
        is_int(chatlog_open(d, &log, &rec), 0, "old: opens with an old record damaged");
        if (!log)
                return;
        ok(rec.damage_found == 1 && rec.damaged_seqs == 1 && rec.cut_bytes == 0 && chatlog_last_seq(log) == 310,
           "old: the damaged old record is quarantined, the rest kept (a good record found after it)");
        chatlog_close(log);
}

static void test_corrupt_while_open(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_cursor cur;
        struct dchat_entry e;

        subdir(d, sizeof d, "rot");
        if (fill(d, 5) < 0 || chatlog_open(d, &log, NULL) < 0)
                return;
        flip_byte(logpath(d), record_off(log, 3) + 16 + 20);
        is_int(chatlog_seek(log, 1, &cur), 0, "rot: seek 1");
        ok(chatlog_next(log, &cur, &e) == 0 && chatlog_next(log, &cur, &e) == 0, "rot: records 1, 2 read");
        is_int(chatlog_next(log, &cur, &e), -EBADMSG, "rot: a record damaged after open: EBADMSG");
        is_int(chatlog_damaged_at(log), 3, "rot: ... known as damaged at seq 3");
        flip_byte(logpath(d), record_off(log, 3) + 16 + 20);
        flip_byte(logpath(d), record_off(log, 5) + 13);
        is_int(chatlog_seek(log, 5, &cur), 0, "rot: seek 5");
        is_int(chatlog_next(log, &cur, &e), -EBADMSG, "rot: a damaged header: EBADMSG");
        is_int(chatlog_damaged_at(log), 3, "rot: ... the first damage found is kept");
        chatlog_close(log);
}

static void test_big_view(void)
{
        enum { N = 2000, BATCH = 50 };
        static const uint64_t at[] = { 1, 2, 255, 256, 257, 258, 512, 513, 1000, 1999, N };
        char d[PATH_MAX], text[64];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        struct dchat_entry *e = calloc(BATCH, sizeof *e), got;
        enum chatlog_result res[BATCH];
        bool all = true;
        int r = 0;

        subdir(d, sizeof d, "big");
        if (!e || chatlog_open(d, &log, NULL) < 0)
                goto out;
        for (unsigned b = 0; b < N / BATCH && r == 0; b++) {
                for (unsigned i = 0; i < BATCH; i++) {
                        unsigned s = b * BATCH + i + 1;
                        snprintf(text, sizeof text, "msg %u", s);
                        /* one CS entry per batch, nodes taking turns */
                        mk(&e[i], b + 1, b % 2 ? "node2" : "node1", i, (b / 2) * BATCH + i + 1, text);
                }
                r = chatlog_append(log, e, BATCH, res);
                for (unsigned i = 0; i < BATCH; i++)
                        if (res[i] != CHATLOG_STORED || e[i].seq != b * BATCH + i + 1)
                                all = false;
        }
        ok(r == 0 && all, "appended %d records in batches of %d", N, BATCH);
        is_int(chatlog_last_seq(log), N, "last seq %d", N);

        for (int pass = 0; pass < 2; pass++) {
                const char *when = pass ? "after reopen" : "live";
                for (unsigned i = 0; i < ELEMENTSOF(at); i++) {
                        char want[64];
                        snprintf(want, sizeof want, "msg %" PRIu64, at[i]);
                        ok(chatlog_seek(log, at[i], &cur) == 0 && cur.seq == at[i] &&
                           chatlog_next(log, &cur, &got) == 0 && got.seq == at[i] && !strcmp(got.text, want),
                           "%s: seek %" PRIu64 " reads it", when, at[i]);
                }
                ok(chatlog_seek(log, 1000, &cur) == 0 && chatlog_next(log, &cur, &got) == 0 &&
                   chatlog_next(log, &cur, &got) == 0 && got.seq == 1001, "%s: next after seek 1000 is 1001", when);
                is_int(chatlog_seek(log, N + 1, &cur), 0, "%s: seek last+1", when);
                is_int(chatlog_next(log, &cur, &got), -ENOENT, "%s: ... ENOENT on next", when);
                is_int(chatlog_seek(log, N + 2, &cur), -ENOENT, "%s: seek last+2 ENOENT", when);
                ok(read_all_msgs(log, N), "%s: the whole log streams in order", when);
                is_int(chatlog_last_post_id(log, "node1"), N / 2, "%s: node1 post id", when);
                is_int(chatlog_last_post_id(log, "node2"), N / 2, "%s: node2 post id", when);

                chatlog_close(log);
                log = NULL;
                if (pass == 0) {
                        is_int(chatlog_open(d, &log, &rec), 0, "big: reopen");
                        if (!log)
                                break;
                        ok(rec.records == N && rec.cut_bytes == 0, "big: %d records rescanned", N);
                }
        }
out:
        chatlog_close(log);
        free(e);
}

static void test_write_error(void)
{
        char d[PATH_MAX], big[3001];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct dchat_entry *e = calloc(5, sizeof *e);
        enum chatlog_result res[5];
        struct rlimit old, lim;
        long long size;
        int r;

        subdir(d, sizeof d, "enospc");
        if (!e || fill(d, 3) < 0 || chatlog_open(d, &log, NULL) < 0)
                goto out;
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';
        for (unsigned i = 0; i < 5; i++)
                mk(&e[i], 100, i < 3 ? "node1" : "node9", i, i < 3 ? 4 + i : i, big);
        size = file_size(logpath(d));

        /* The file may not grow past size + 5000: pwrite writes part, then fails with EFBIG. */
        signal(SIGXFSZ, SIG_IGN);
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = (rlim_t) size + 5000;
        if (setrlimit(RLIMIT_FSIZE, &lim) < 0) {
                ok(true, "# SKIP cannot set RLIMIT_FSIZE: %m");
                goto out;
        }
        r = chatlog_append(log, e, 5, res);
        setrlimit(RLIMIT_FSIZE, &old);
        is_int(r, -EFBIG, "a failing write returns its errno (EFBIG)");
        is_int(file_size(logpath(d)), size, "the partial batch was cut off again");
        is_int(chatlog_last_seq(log), 3, "last seq unchanged");
        is_int(chatlog_last_post_id(log, "node1"), 3, "post id unchanged");
        is_int(chatlog_last_post_id(log, "node9"), 0, "a new node of the failed batch is not known");
        ok(read_all_msgs(log, 3), "the log still reads");

        for (unsigned i = 0; i < 5; i++) {
                char text[64];
                snprintf(text, sizeof text, "msg %u", 4 + i);
                mk(&e[i], 100, i < 3 ? "node1" : "node9", i, i < 3 ? 4 + i : i, text);
        }
        is_int(chatlog_append(log, e, 5, res), 0, "the same batch succeeds when the write works");
        ok(res[0] == CHATLOG_STORED && res[4] == CHATLOG_STORED && e[0].seq == 4 && e[4].seq == 8,
           "stored as 4..8 (nothing doubled)");
        ok(read_all_msgs(log, 8), "all 8 read back");
        chatlog_close(log);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), 0, "reopen after the write error");
        ok(rec.records == 8 && rec.cut_bytes == 0 && count_corrupt(d) == 0, "clean: 8 records, nothing cut");
        is_int(chatlog_last_post_id(log, "node9"), 4, "node9 post id");
out:
        chatlog_close(log);
        free(e);
}

static void test_open_errors(void)
{
        char d[PATH_MAX + 16];
        struct chatlog *log = NULL;

        snprintf(d, sizeof d, "%s/does-not-exist", dir);
        is_int(chatlog_open(d, &log, NULL), -ENOENT, "open in a missing directory: ENOENT");
        ok(log == NULL, "... no log");
}

/* --- quarantine: damage followed by good records ----------------------------------------- */

/* Creates a log in d with n records "msg N" in batches of 50 (fill() is one sync per record). */
static int fill_fast(const char *d, unsigned n)
{
        struct chatlog *log = NULL;
        struct dchat_entry *e = calloc(50, sizeof *e);
        enum chatlog_result res[50];
        char text[64];
        int r;

        r = e ? chatlog_open(d, &log, NULL) : -ENOMEM;
        for (unsigned i = 1; i <= n && r >= 0; i += 50) {
                unsigned k = n - i + 1 < 50 ? n - i + 1 : 50;
                for (unsigned j = 0; j < k; j++) {
                        snprintf(text, sizeof text, "msg %u", i + j);
                        mk(&e[j], i + j, "node1", 0, i + j, text);
                }
                r = chatlog_append(log, e, k, res);
                for (unsigned j = 0; r >= 0 && j < k; j++)
                        if (res[j] != CHATLOG_STORED)
                                r = -EINVAL;
        }
        chatlog_close(log);
        free(e);
        return r;
}

/* File offsets of records 1..n (offs[seq]), read through the API before anything is damaged. */
static long long *offsets(const char *d, uint64_t n)
{
        struct chatlog *log = NULL;
        long long *offs = calloc(n + 2, sizeof *offs);

        if (!offs || chatlog_open(d, &log, NULL) < 0) {
                free(offs);
                return NULL;
        }
        for (uint64_t s = 1; s <= n + 1; s++)
                offs[s] = record_off(log, s);
        chatlog_close(log);
        return offs;
}

/*
 * Reads the whole log: every seq 1..n must come, as "msg N" or, for the
 * seqs in [dfirst, dlast], as one CHATLOG_DAMAGED report of exactly that
 * range (dfirst 0: none).
 */
static bool read_with_damage(struct chatlog *log, uint64_t n, uint64_t dfirst, uint64_t dlast)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct chatlog_cursor cur;
        uint64_t s = 1, reports = 0;
        char want[64];
        int r;

        if (!e || chatlog_seek(log, 1, &cur) < 0)
                return false;
        while ((r = chatlog_next(log, &cur, e)) >= 0) {
                if (r == CHATLOG_DAMAGED) {
                        if (e->seq != s || e->seq != dfirst || cur.damaged_last != dlast || !cur.damaged_why) {
                                diag("damaged report %" PRIu64 "..%" PRIu64 " at %" PRIu64 ", wanted %" PRIu64 "..%" PRIu64,
                                     e->seq, cur.damaged_last, s, dfirst, dlast);
                                return false;
                        }
                        reports++;
                        s = cur.damaged_last + 1;
                        continue;
                }
                snprintf(want, sizeof want, "msg %" PRIu64, s);
                if (e->seq != s || strcmp(e->text, want) != 0 || (dfirst && s >= dfirst && s <= dlast)) {
                        diag("record %" PRIu64 ": seq %" PRIu64 " text '%s'", s, e->seq, e->text);
                        return false;
                }
                s++;
        }
        if (r != -ENOENT || s != n + 1 || reports != (dfirst ? 1u : 0u)) {
                diag("read up to %" PRIu64 " of %" PRIu64 ", %" PRIu64 " damaged reports, ended with %d", s - 1, n,
                     reports, r);
                return false;
        }
        return true;
}

static bool file_has(const char *path, const uint8_t *p, size_t n)
{
        uint8_t *data = NULL;
        size_t len = 0;
        bool same = read_file(path, &data, &len) == 0 && len == n && !memcmp(data, p, n);
        free(data);
        return same;
}

/*
 * One damaged record (record 10 of 1000: its body, or its header), damaged
 * records in a row, damage that spans index slots: quarantined, nothing
 * cut, the bytes kept in place and copied aside, every other record read
 * with its seq, the damaged seqs reported as such, appends going on after
 * the last seq, and the same again after a reopen through the checkpoint.
 */
static void check_quarantine(const char *name, uint64_t n, uint64_t dfirst, uint64_t dlast, bool header, bool zero)
{
        char d[PATH_MAX], copy[PATH_MAX + 64];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_damage_info di;
        struct chatlog_cursor cur;
        struct dchat_entry e;
        enum chatlog_result res;
        uint8_t *before = NULL;
        size_t before_len = 0;
        long long *offs;

        subdir(d, sizeof d, name);
        if (fill_fast(d, (unsigned) n) < 0 || !(offs = offsets(d, n))) {
                ok(false, "%s: fill", name);
                return;
        }
        if (zero) {
                /* dlast - dfirst + 1 whole records become zeros */
                size_t len = (size_t) (offs[dlast + 1] - offs[dfirst]);
                uint8_t *z = calloc(1, len);
                patch_file(logpath(d), offs[dfirst], z, len);
                free(z);
        } else
                for (uint64_t s = dfirst; s <= dlast; s++)
                        flip_byte(logpath(d), offs[s] + (header ? 5 : 16 + 30));
        if (read_file(logpath(d), &before, &before_len) < 0)
                goto out;

        is_int(chatlog_open(d, &log, &rec), 0, "%s: opens", name);
        if (!log)
                goto out;
        ok(rec.cut_bytes == 0 && rec.saved_to[0] == '\0', "%s: nothing cut", name);
        ok(rec.damage_found == 1 && rec.damaged_seqs == dlast - dfirst + 1, "%s: one damaged part, %" PRIu64 " seq(s)",
           name, dlast - dfirst + 1);
        is_int(rec.records, n, "%s: %" PRIu64 " records, the damaged one(s) counted", name, n);
        is_int(chatlog_last_seq(log), n, "%s: the last seq is still %" PRIu64, name, n);
        ok(file_has(logpath(d), before, before_len), "%s: chat.log is untouched: the damaged bytes stay", name);
        is_int(chatlog_damage_count(log), 1, "%s: chatlog_damage_count", name);
        chatlog_damage_get(log, 0, &di);
        ok(di.first_seq == dfirst && di.last_seq == dlast && (long long) di.off == offs[dfirst] &&
           (long long) di.end == offs[dlast + 1] && di.found_now && di.why,
           "%s: the part is seqs %" PRIu64 "..%" PRIu64 ", bytes %lld..%lld (%s)", name, dfirst, dlast, offs[dfirst],
           offs[dlast + 1], di.why ? di.why : "?");
        snprintf(copy, sizeof copy, "%s/chat.log.corrupt-seq-%" PRIu64 "-%" PRIu64 "-at-%lld", d, dfirst, dlast,
                 offs[dfirst]);
        is_str(di.copy, copy, "%s: copied aside as %s", name, copy);
        ok(file_has(copy, before + offs[dfirst], (size_t) (offs[dlast + 1] - offs[dfirst])),
           "%s: the copy holds the damaged bytes, byte for byte", name);
        is_int(count_corrupt(d), 1, "%s: one chat.log.corrupt-* file", name);
        ok(read_with_damage(log, n, dfirst, dlast), "%s: every other record reads with its seq; %" PRIu64 "..%" PRIu64
           " reported damaged", name, dfirst, dlast);
        ok(chatlog_seek(log, dlast, &cur) == 0 && chatlog_next(log, &cur, &e) == CHATLOG_DAMAGED && e.seq == dlast &&
           cur.damaged_last == dlast && chatlog_next(log, &cur, &e) == 0 && e.seq == dlast + 1,
           "%s: seek %" PRIu64 ": reported damaged, then %" PRIu64 " reads", name, dlast, dlast + 1);
        ok(chatlog_seek(log, dlast + 1, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.seq == dlast + 1,
           "%s: seek %" PRIu64 " reads it", name, dlast + 1);
        {
                uint64_t s = 0;
                ok(chatlog_find_time(log, 1700000000 + (int64_t) dfirst, &s) == 0 && s == dlast + 1,
                   "%s: find_time passes over the damaged part (%" PRIu64 ")", name, s);
        }
        is_int(chatlog_damaged_at(log), 0, "%s: no unknown damage", name);
        mk(&e, n + 100, "node1", 0, n + 1, "after");
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == n + 1,
           "%s: the next append gets seq %" PRIu64, name, n + 1);
        is_int(chatlog_last_post_id(log, "node1"), n + 1, "%s: post ids go on", name);
        is_int(chatlog_checkpoint(log), 0, "%s: checkpoint written", name);
        chatlog_close(log);
        log = NULL;

        /* through the checkpoint: the same, nothing found again */
        is_int(chatlog_open(d, &log, &rec), 0, "%s: reopen through the checkpoint", name);
        if (!log)
                goto out;
        ok(rec.checkpoint_used && rec.scanned == 0 && rec.damage_found == 0 && rec.damaged_seqs == dlast - dfirst + 1,
           "%s: the checkpoint carries the damaged part", name);
        chatlog_damage_get(log, 0, &di);
        ok(di.first_seq == dfirst && di.last_seq == dlast && !di.found_now, "%s: ... known, not found now", name);
        {
                _cleanup_(freep) struct dchat_entry *x = malloc(sizeof *x);
                uint64_t got = 0, reports = 0;
                int r = chatlog_seek(log, 1, &cur);
                while (r >= 0 && x && (r = chatlog_next(log, &cur, x)) >= 0)
                        r == CHATLOG_DAMAGED ? reports++ : got++;
                ok(got == n + 1 - (dlast - dfirst + 1) && reports == 1, "%s: %" PRIu64 " records and 1 damaged report",
                   name, got);
        }
        chatlog_close(log);
        log = NULL;

        /* without the checkpoint: found again, the copy not made twice */
        unlink(path_in(d, "chat.log.idx"));
        is_int(chatlog_open(d, &log, &rec), 0, "%s: reopen without the checkpoint", name);
        ok(rec.damage_found == 1 && rec.cut_bytes == 0 && chatlog_last_seq(log) == n + 1 && count_corrupt(d) == 1,
           "%s: the same part found again, one copy", name);
        chatlog_close(log);
out:
        free(before);
        free(offs);
}

/*
 * A copy of a post (its id not above its node's last) is looked up under its
 * fence: when that lies in a quarantined part it may or may not be there, and
 * the answer must say so (UNKNOWN), never "not stored" or a duplicate of
 * another seq; copies of the records around it are found as before.
 */
static void test_copy_in_damage(void)
{
        static const struct { uint64_t damaged; } cases[] = { { 50 }, { 257 } };
        char d[PATH_MAX], name[32];

        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                uint64_t k = cases[c].damaged;
                struct chatlog *log = NULL;
                struct dchat_entry e[3];
                enum chatlog_result res[3];
                char text[3][32];
                long long *offs;

                snprintf(name, sizeof name, "copy-in-damage-%" PRIu64, k);
                subdir(d, sizeof d, name);
                if (fill_fast(d, 600) < 0 || !(offs = offsets(d, 600)))
                        return;
                flip_byte(logpath(d), offs[k] + 16 + 30);
                free(offs);
                if (chatlog_open(d, &log, NULL) < 0) {
                        ok(false, "%s: open", name);
                        continue;
                }
                for (unsigned i = 0; i < 3; i++) {
                        snprintf(text[i], sizeof text[i], "msg %" PRIu64, k - 1 + i);
                        mk(&e[i], k - 1 + i, "node1", 0, k - 1 + i, text[i]);
                }
                is_int(chatlog_append(log, e, 3, res), 0, "%s: copies of posts %" PRIu64 "..%" PRIu64 " sent again",
                       name, k - 1, k + 1);
                ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == k - 1, "%s: the one before: a duplicate of seq %" PRIu64,
                   name, k - 1);
                is_int(res[1], CHATLOG_UNKNOWN, "%s: the damaged one: cannot tell (UNKNOWN)", name);
                ok(res[2] == CHATLOG_DUPLICATE && e[2].seq == k + 1, "%s: the one after: a duplicate of seq %" PRIu64,
                   name, k + 1);
                is_int(chatlog_last_seq(log), 600, "%s: nothing stored", name);
                chatlog_close(log);
        }
}

/* Damage in the part a checkpoint covers. */
static void test_damage_in_checkpoint(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        struct dchat_entry e;
        enum chatlog_result res;
        struct stat st;
        long long *offs;

        /* the log changed in place: its mtime moves, the checkpoint is not used, the open quarantines */
        subdir(d, sizeof d, "ckpt-mtime");
        if (fill_fast(d, 1000) < 0 || !(offs = offsets(d, 1000)) || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        flip_byte(logpath(d), offs[10] + 16 + 30);
        {
                struct timeval tv[2] = { { 1, 0 }, { 1, 0 } };
                utimes(logpath(d), tv);
        }
        is_int(chatlog_open(d, &log, &rec), 0, "checkpointed part, log changed in place: opens");
        ok(log && !rec.checkpoint_used && rec.damage_found == 1 && rec.cut_bytes == 0 && chatlog_last_seq(log) == 1000,
           "... checkpoint not used, seq 10 quarantined, nothing cut");
        ok(log && read_with_damage(log, 1000, 10, 10), "... 999 records and seq 10 damaged");
        chatlog_close(log);
        log = NULL;
        free(offs);

        /* a damaged checkpoint as well: discarded, the whole log read, the damage still quarantined, not cut */
        subdir(d, sizeof d, "ckpt-corrupt");
        if (fill_fast(d, 1000) < 0 || !(offs = offsets(d, 1000)) || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        flip_byte(path_in(d, "chat.log.idx"), 40);
        flip_byte(logpath(d), offs[10] + 16 + 30);
        is_int(chatlog_open(d, &log, &rec), 0, "damaged checkpoint and damaged record 10: opens");
        ok(log && !rec.checkpoint_used && strstr(rec.checkpoint_warning, "checksum") && rec.damage_found == 1 &&
           rec.cut_bytes == 0 && chatlog_last_seq(log) == 1000,
           "... checkpoint discarded (%s), seq 10 quarantined, nothing cut", rec.checkpoint_warning);
        ok(log && read_with_damage(log, 1000, 10, 10), "... 999 records and seq 10 damaged");
        chatlog_close(log);
        log = NULL;
        free(offs);

        /* the same mtime (the checkpoint vouches for the damaged record): found by a read */
        subdir(d, sizeof d, "ckpt-same");
        if (fill_fast(d, 1000) < 0 || !(offs = offsets(d, 1000)) || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        stat(logpath(d), &st);
        flip_byte(logpath(d), offs[10] + 16 + 30);
        {
                struct timespec ts[2] = { st.st_atim, st.st_mtim };
                utimensat(AT_FDCWD, logpath(d), ts, 0);
        }
        is_int(chatlog_open(d, &log, &rec), 0, "checkpointed part, same mtime: opens");
        if (!log)
                goto out;
        ok(rec.checkpoint_used && rec.damage_found == 0, "... through the checkpoint: not seen yet");
        ok(chatlog_seek(log, 9, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.seq == 9,
           "... seq 9 reads");
        is_int(chatlog_next(log, &cur, &e), -EBADMSG, "... seq 10: EBADMSG (damage, not an I/O error)");
        is_int(chatlog_damaged_at(log), 10, "... the log knows: damaged at seq 10");
        ok(chatlog_seek(log, 11, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.seq == 11, "... seq 11 still reads");
        mk(&e, 2000, "node1", 0, 1001, "refused");
        is_int(chatlog_append(log, &e, 1, &res), -EUCLEAN, "... an append is refused (EUCLEAN)");
        chatlog_close(log);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), 0, "... reopened");
        ok(log && !rec.checkpoint_used && rec.damage_found == 1 && rec.cut_bytes == 0, "... the whole log read, seq 10 quarantined");
        ok(log && read_with_damage(log, 1000, 10, 10), "... 999 records and seq 10 damaged");
        mk(&e, 2000, "node1", 0, 1001, "after");
        ok(log && chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == 1001,
           "... the next append gets seq 1001");
out:
        chatlog_close(log);
        free(offs);
}

/* The last record damaged, nothing after it: cut as a torn tail, unless a checkpoint proves it was stored. */
static void test_damaged_end(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_damage_info di;
        struct dchat_entry e;
        enum chatlog_result res;
        long long *offs;

        subdir(d, sizeof d, "end-floor");
        if (fill_fast(d, 10) < 0 || !(offs = offsets(d, 10)) || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        long long size = file_size(logpath(d));
        flip_byte(logpath(d), offs[10] + 16 + 30);
        is_int(chatlog_open(d, &log, &rec), 0, "damaged end under a checkpoint: opens");
        if (!log)
                goto out;
        ok(rec.cut_bytes == 0 && rec.floor_seq == 10 && chatlog_last_seq(log) == 10 && file_size(logpath(d)) == size,
           "... not cut: quarantined up to seq 10, which the checkpoint proves was stored");
        chatlog_damage_get(log, 0, &di);
        ok(di.first_seq == 10 && di.last_seq == 10 && (long long) di.off == offs[10] && (long long) di.end == size,
           "... the damaged part is seq 10 (%s)", di.why);
        ok(read_with_damage(log, 10, 10, 10), "... 9 records, seq 10 damaged");
        mk(&e, 100, "node1", 0, 11, "msg 11");
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == 11,
           "... the next append gets seq 11, never 10 again");
        mk(&e, 5, "node1", 0, 12, "old fence");
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_FENCED, "... fences still increase");
        is_int(chatlog_checkpoint(log), 0, "... checkpoint written");
        chatlog_close(log);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), 0, "... reopened");
        ok(log && rec.checkpoint_used && chatlog_last_seq(log) == 11 && read_with_damage(log, 11, 10, 10),
           "... through the checkpoint: 11 seqs, 10 damaged");
        chatlog_close(log);
        log = NULL;
        unlink(path_in(d, "chat.log.idx"));
        is_int(chatlog_open(d, &log, &rec), 0, "... reopened without the checkpoint");
        ok(log && rec.damage_found == 1 && rec.cut_bytes == 0 && read_with_damage(log, 11, 10, 10),
           "... seq 10 quarantined again (a good record follows it now)");
out:
        chatlog_close(log);
        free(offs);
}

/* More damaged parts than CHATLOG_DAMAGE_MAX, and a good record whose seq cannot follow: refused, never cut. */
static void test_quarantine_refusals(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        uint8_t *before = NULL;
        size_t len = 0;
        long long *offs;

        subdir(d, sizeof d, "too-many");
        if (fill_fast(d, 300) < 0 || !(offs = offsets(d, 300)))
                return;
        for (unsigned i = 0; i <= CHATLOG_DAMAGE_MAX; i++)
                flip_byte(logpath(d), offs[2 + 4 * i] + 16 + 30);
        read_file(logpath(d), &before, &len);
        is_int(chatlog_open(d, &log, &rec), -EBADMSG, "%d damaged parts: refused", CHATLOG_DAMAGE_MAX + 1);
        ok(strstr(rec.reason, "more than") && strstr(rec.reason, "dchatd(8)"), "... saying so: %s", rec.reason);
        ok(before && file_has(logpath(d), before, len) && count_corrupt(d) == 0, "... nothing changed");
        chatlog_close(log);
        free(before);
        free(offs);

        /* the last record rewritten with seq 1000 (valid checksums) after a damaged one */
        subdir(d, sizeof d, "odd-seq");
        if (fill_fast(d, 10) < 0 || !(offs = offsets(d, 10)))
                return;
        {
                struct dchat_entry e;
                struct wbuf b = {0};
                mk(&e, 10, "node1", 0, 10, "msg 10");
                e.seq = 1000;
                make_record(&b, &e);
                if (truncate(logpath(d), offs[10]) < 0)
                        diag("truncate: %m");
                append_bytes(logpath(d), b.data, b.len);
                wbuf_free(&b);
        }
        flip_byte(logpath(d), offs[9] + 16 + 30);
        before = NULL;
        read_file(logpath(d), &before, &len);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), -EBADMSG, "a good record with a seq that cannot follow the damage: refused");
        ok(strstr(rec.reason, "seq 1000") && strstr(rec.reason, "refusing"), "... saying so: %s", rec.reason);
        ok(before && file_has(logpath(d), before, len) && count_corrupt(d) == 0, "... nothing cut or changed");
        chatlog_close(log);
        free(before);
        free(offs);
}

/* The checkpoint's codec with damaged parts; an old-format checkpoint is refused as such. */
static void test_checkpoint_codec(void)
{
        struct chatlog_ix ix[3] = { { 0, INT64_MIN }, { 5000, 10 }, { 5000, 10 } };
        struct chatlog_node nodes[1] = { { .name = "node1", .post_id = 700, .seq = 700 } };
        struct chatidx x = { .flags = CHATIDX_RESCAN, .base_seq = 0, .end = 90000, .last_seq = 700,
                             .last_off = 89000, .last_crc = 7, .last_lamport = 700, .last_node = "node1",
                             .max_time = 99, .index = ix, .n_index = 3, .nodes = nodes, .n_nodes = 1,
                             .n_damage = 2 }, y;
        struct wbuf b = {0};
        const char *why = NULL;

        x.damage[0] = (struct chatlog_damage) { 10, 10, 600, 700, DAMAGE_BODY };
        x.damage[1] = (struct chatlog_damage) { 300, 600, 5000, 40000, DAMAGE_HEADER };
        ok(chatidx_encode(&b, &x) == 0 && chatidx_decode(b.data, b.len, &y, &why) == 0,
           "checkpoint codec: round trip with 2 damaged parts");
        ok(y.flags == CHATIDX_RESCAN && y.n_damage == 2 && !memcmp(y.damage, x.damage, 2 * sizeof x.damage[0]) &&
           y.n_index == 3 && y.index[2].off == 5000, "checkpoint codec: flags, parts and index slots in a part");
        chatidx_free(&y);

        static const struct { struct chatlog_damage d[2]; size_t n; const char *what; } bad[] = {
                { { { 10, 10, 700, 600, DAMAGE_BODY } }, 1, "a part that ends before it starts" },
                { { { 10, 10, 600, 95000, DAMAGE_BODY } }, 1, "a part beyond the end covered" },
                { { { 10, 800, 600, 700, DAMAGE_BODY } }, 1, "seqs beyond the last" },
                { { { 10, 8, 600, 700, DAMAGE_BODY } }, 1, "a first seq two after the last" },
                { { { 10, 10, 600, 700, 9 } }, 1, "an unknown kind" },
                { { { 300, 600, 5000, 40000, DAMAGE_BODY }, { 10, 10, 600, 700, DAMAGE_BODY } }, 2, "parts out of order" },
                { { { 10, 20, 600, 7000, DAMAGE_BODY }, { 15, 30, 6000, 9000, DAMAGE_BODY } }, 2, "overlapping parts" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct chatidx z = x;
                memcpy(z.damage, bad[i].d, sizeof bad[i].d);
                z.n_damage = bad[i].n;
                z.n_index = 1;
                wbuf_reset(&b);
                ok(chatidx_encode(&b, &z) == 0 && chatidx_decode(b.data, b.len, &y, &why) == -EBADMSG,
                   "checkpoint codec: refused: %s (%s)", bad[i].what, why);
        }
        /* equal index slots are only allowed at the start of a damaged part */
        x.n_damage = 0;
        wbuf_reset(&b);
        ok(chatidx_encode(&b, &x) == 0 && chatidx_decode(b.data, b.len, &y, &why) == -EBADMSG,
           "checkpoint codec: equal index slots without a damaged part there: refused (%s)", why);

        /* the format before damaged parts were kept: refused by its magic, never misread */
        wbuf_reset(&b);
        x.n_damage = 0;
        x.n_index = 2;
        chatidx_encode(&b, &x);
        memcpy(b.data, "DCX1", 4);
        is_int(chatidx_decode(b.data, b.len, &y, &why), -EBADMSG, "checkpoint codec: a DCX1 checkpoint is refused");
        ok(why && strstr(why, "older dchatd"), "... as written by an older dchatd (%s)", why);
        wbuf_free(&b);
}

/* An old-format checkpoint on disk: discarded with a warning, the log read in full, a new one written. */
static void test_old_checkpoint(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        uint8_t *idx = NULL;
        size_t len = 0;

        subdir(d, sizeof d, "old-idx");
        if (fill_fast(d, 600) < 0 || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        if (read_file(path_in(d, "chat.log.idx"), &idx, &len) < 0)
                return;
        patch_file(path_in(d, "chat.log.idx"), 0, "DCX1", 4);
        is_int(chatlog_open(d, &log, &rec), 0, "an old-format checkpoint: the log opens");
        ok(!rec.checkpoint_used && strstr(rec.checkpoint_warning, "older dchatd") && rec.scanned == 600 &&
           chatlog_last_seq(log) == 600 && rec.cut_bytes == 0,
           "... discarded (%s), the whole log read", rec.checkpoint_warning);
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        is_int(chatlog_open(d, &log, &rec), 0, "... reopened");
        ok(rec.checkpoint_used && rec.scanned == 0, "... the new checkpoint is used");
        chatlog_close(log);
        free(idx);
}

/* --- the start record of a continued (archived) log -------------------------------------- */

static void test_start_record_repair(void)
{
        char d[PATH_MAX], name[NAME_MAX + 1], warn[256];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_repair rep;
        struct dchat_entry e[5];
        enum chatlog_result res[5];
        uint64_t first, last, lamport;
        char node[DCHAT_NAME_MAX + 1];
        uint32_t idx;

        for (int variant = 0; variant < 4; variant++) {
                /* 0: a byte of its body; 1: its magic (DCH1 -> DCL1, one bit); 2: no archive to rebuild from;
                 * 3: no archive and no entry */
                static const char *const names[] = { "start-body", "start-magic", "start-no-archive", "start-nothing" };
                const char *v = names[variant];
                subdir(d, sizeof d, v);
                if (fill_fast(d, 20) < 0 ||
                    chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn) < 0) {
                        ok(false, "%s: archive", v);
                        continue;
                }
                if (variant < 3) {
                        /* 3 entries in the new log */
                        chatlog_open(d, &log, NULL);
                        for (unsigned i = 0; i < 3; i++) {
                                char t[32];
                                snprintf(t, sizeof t, "msg %u", 21 + i);
                                mk(&e[i], 100, "node2", i, 1 + i, t);
                        }
                        chatlog_append(log, e, 3, res);
                        log = chatlog_close(log);
                }
                if (variant >= 2)
                        unlink(path_in(d, "chat.log.1-20"));
                if (variant == 1)
                        patch_file(logpath(d), 2, "L", 1);      /* DCH1 -> DCL1: one bit, an entry's magic */
                else
                        flip_byte(logpath(d), 16 + 10);         /* in its body */
                long long size = file_size(logpath(d));

                is_int(chatlog_open(d, &log, &rec), -EBADMSG, "%s: the log is refused", v);
                ok(rec.start_damaged && strstr(rec.reason, "dchatd --repair"), "%s: ... saying how to recover: %s", v,
                   rec.reason);
                is_int(file_size(logpath(d)), size, "%s: ... and nothing is cut", v);
                chatlog_close(log);
                log = NULL;

                int r = chatlog_repair(d, &rep);
                if (variant == 3) {
                        is_int(r, -ENOENT, "%s: repair: nothing to rebuild from: ENOENT", v);
                        ok(strstr(rep.error, "backup") != NULL, "%s: ... saying so: %s", v, rep.error);
                        is_int(file_size(logpath(d)), size, "%s: ... nothing changed", v);
                        continue;
                }
                is_int(r, 0, "%s: repaired", v);
                if (variant < 2)
                        ok(!strcmp(rep.archive, "chat.log.1-20") && rep.base_seq == 20 && rep.first_entry == 21 &&
                           !rep.warning[0], "%s: ... from chat.log.1-20: goes on after seq 20", v);
                else
                        ok(!rep.archive[0] && rep.base_seq == 20 && rep.first_entry == 21 && strstr(rep.warning, "Lost"),
                           "%s: ... from the first entry, with a warning: %s", v, rep.warning);
                ok(strstr(rep.saved_to, "/chat.log.corrupt-") && file_size(rep.saved_to) == size,
                   "%s: ... the damaged file kept as %s", v, rep.saved_to);
                is_int(chatlog_open(d, &log, &rec), 0, "%s: the repaired log opens", v);
                if (!log)
                        continue;
                ok(chatlog_first_seq(log) == 21 && chatlog_last_seq(log) == 23 && rec.cut_bytes == 0,
                   "%s: ... seqs 21 to 23", v);
                chatlog_last_fence(log, &lamport, node, &idx);
                ok(lamport == 100 && !strcmp(node, "node2") && idx == 2, "%s: ... the last fence is entry 23's", v);
                if (variant < 2)
                        is_int(chatlog_last_post_id(log, "node1"), 20, "%s: ... node1's post ids from the archive", v);
                mk(&e[0], 200, "node1", 0, 21, "msg 24");
                ok(chatlog_append(log, e, 1, res) == 0 && res[0] == CHATLOG_STORED && e[0].seq == 24,
                   "%s: ... the next append gets seq 24", v);
                log = chatlog_close(log);
                is_int(chatlog_repair(d, &rep), -EALREADY, "%s: repair again: nothing to repair", v);
        }
}

/* --- read errors are not damage (item 14) ---------------------------------------------------- */

/*
 * The code under test calls these, not libc's: this file's definitions win
 * at link time.  A test sets a failure; the real call is the raw syscall.
 */
static struct {
        int pread_errno;                /* every pread fails with it while set ... */
        unsigned pread_skip;            /* ... but for the first pread_skip */
        int rename_errno, link_errno;   /* the next renameat / linkat fails with it */
        int fsync_errno;                /* the fsync_nth-th fsync from now fails with it */
        unsigned fsync_nth;
        int fdatasync_errno;            /* the next fdatasync fails with it */
        bool record;
        char calls[32][48];             /* "fdatasync file", "renameat a>b", "fsync dir", ... */
        unsigned n_calls;
} inject;

static void record_call(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void record_call(const char *fmt, ...)
{
        va_list ap;
        if (!inject.record || inject.n_calls >= ELEMENTSOF(inject.calls))
                return;
        va_start(ap, fmt);
        vsnprintf(inject.calls[inject.n_calls++], sizeof inject.calls[0], fmt, ap);
        va_end(ap);
}

static const char *fd_kind(int fd)
{
        struct stat st;
        return fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) ? "dir" : "file";
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
        if (inject.pread_errno && inject.pread_skip)
                inject.pread_skip--;
        else if (inject.pread_errno) {
                errno = inject.pread_errno;
                return -1;
        }
        return syscall(SYS_pread64, fd, buf, n, off);
}

int renameat(int ofd, const char *old, int nfd, const char *new)
{
        record_call("renameat %s>%s", old, new);
        if (inject.rename_errno) {
                errno = inject.rename_errno;
                inject.rename_errno = 0;
                return -1;
        }
#ifdef SYS_renameat
        return (int) syscall(SYS_renameat, ofd, old, nfd, new);
#else
        return (int) syscall(SYS_renameat2, ofd, old, nfd, new, 0);
#endif
}

int linkat(int ofd, const char *old, int nfd, const char *new, int flags)
{
        if (inject.link_errno) {
                errno = inject.link_errno;
                inject.link_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_linkat, ofd, old, nfd, new, flags);
}

int fsync(int fd)
{
        record_call("fsync %s", fd_kind(fd));
        if (inject.fsync_errno && --inject.fsync_nth == 0) {
                errno = inject.fsync_errno;
                inject.fsync_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
        record_call("fdatasync %s", fd_kind(fd));
        if (inject.fdatasync_errno) {
                errno = inject.fdatasync_errno;
                inject.fdatasync_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_fdatasync, fd);
}

static void test_read_errors(void)
{
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        struct dchat_entry e;
        enum chatlog_result res;
        uint8_t *idx = NULL, *data = NULL;
        size_t idx_len = 0, len = 0;
        uint64_t s;

        subdir(d, sizeof d, "eio");
        if (fill_fast(d, 1000) < 0 || chatlog_open(d, &log, NULL) < 0)
                return;
        chatlog_checkpoint(log);
        read_file(path_in(d, "chat.log.idx"), &idx, &idx_len);

        /* while running: the read fails with the error, nothing is marked */
        chatlog_seek(log, 500, &cur);
        inject.pread_errno = EIO;
        int r = chatlog_next(log, &cur, &e);
        int r2 = chatlog_seek(log, 700, &cur);
        int r3 = chatlog_find_time(log, 1700000500, &s);
        inject.pread_errno = 0;
        is_int(r, -EIO, "EIO from pread: chatlog_next fails with EIO");
        ok(r2 == -EIO || r2 == 0, "EIO from pread: chatlog_seek fails with EIO or needs no read (%d)", r2);
        is_int(r3, -EIO, "EIO from pread: chatlog_find_time fails with EIO");
        is_int(chatlog_damaged_at(log), 0, "... not counted as damage");
        ok(idx && file_has(path_in(d, "chat.log.idx"), idx, idx_len), "... the checkpoint untouched");
        mk(&e, 5000, "node1", 0, 1001, "msg 1001");
        ok(chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == 1001,
           "... appends go on (seq 1001)");
        ok(chatlog_seek(log, 500, &cur) == 0 && chatlog_next(log, &cur, &e) == 0 && e.seq == 500,
           "... and once the error is gone, seq 500 reads");
        chatlog_checkpoint(log);
        chatlog_close(log);
        log = NULL;
        free(idx);
        idx = NULL;

        /* at open: the open fails, nothing is cut, quarantined or discarded */
        read_file(logpath(d), &data, &len);
        read_file(path_in(d, "chat.log.idx"), &idx, &idx_len);
        /* (the first pread looks for a start record) */
        inject.pread_errno = EIO;
        inject.pread_skip = 1;
        r = chatlog_open(d, &log, &rec);
        inject.pread_errno = 0;
        is_int(r, -EIO, "EIO at open, checking the checkpoint against the log: the open fails with EIO");
        ok(idx && file_has(path_in(d, "chat.log.idx"), idx, idx_len), "... the checkpoint untouched");
        unlink(path_in(d, "chat.log.idx"));
        inject.pread_errno = EIO;
        inject.pread_skip = 1;
        r = chatlog_open(d, &log, &rec);
        inject.pread_errno = 0;
        is_int(r, -EIO, "EIO at open, reading the whole log: the open fails with EIO");
        ok(data && file_has(logpath(d), data, len) && count_corrupt(d) == 0, "... the log untouched, nothing saved aside");
        is_int(chatlog_open(d, &log, &rec), 0, "... and it opens once the error is gone");
        ok(log && rec.cut_bytes == 0 && rec.damage_found == 0 && chatlog_last_seq(log) == 1001, "... all 1001 there");
        chatlog_close(log);
        free(data);
        free(idx);
}

/* chatidx_save: the file synced, renamed, then the directory synced (the rename is durable only then). */
static void test_checkpoint_sync_order(void)
{
        char d[PATH_MAX], all[512] = "";
        struct chatlog *log = NULL;

        subdir(d, sizeof d, "sync-order");
        if (fill_fast(d, 10) < 0 || chatlog_open(d, &log, NULL) < 0)
                return;
        inject.n_calls = 0;
        inject.record = true;
        is_int(chatlog_checkpoint(log), 0, "checkpoint written");
        inject.record = false;
        for (unsigned i = 0; i < inject.n_calls; i++)
                snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", inject.calls[i]);
        is_str(all, "fdatasync file, renameat chat.log.idx.tmp>chat.log.idx, fsync dir",
               "checkpoint: the file synced, renamed, then the directory synced");
        inject.fsync_errno = EIO;
        inject.fsync_nth = 1;
        is_int(chatlog_checkpoint(log), -EIO, "checkpoint: a failed directory sync is reported");
        inject.fsync_errno = 0;
        chatlog_close(log);
}

/* --- unsynced appends (a server group's replica) ---------------------------------------------- */

static unsigned count_calls(const char *what)
{
        unsigned n = 0;
        for (unsigned i = 0; i < inject.n_calls; i++)
                n += !strcmp(inject.calls[i], what);
        return n;
}

static bool copy_file(const char *from, const char *to)
{
        uint8_t *data;
        size_t len;
        bool done = false;

        if (read_file(from, &data, &len) < 0)
                return false;
        int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd >= 0) {
                done = write(fd, data, len) == (ssize_t) len;
                close(fd);
        }
        free(data);
        return done;
}

/* The flags of d's checkpoint, or UINT32_MAX if it cannot be read. */
static uint32_t checkpoint_flags(const char *d)
{
        struct chatidx x;
        const char *why;
        uint32_t flags = UINT32_MAX;
        int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd >= 0 && chatidx_load(fd, &x, &why) == 0) {
                flags = x.flags;
                chatidx_free(&x);
        }
        if (fd >= 0)
                close(fd);
        return flags;
}

/* Appends "msg first" .. "msg last" one record per call (lamport = post id = N). */
static int append_msgs(struct chatlog *log, unsigned first, unsigned last)
{
        struct dchat_entry e;
        enum chatlog_result res;
        char text[64];

        for (unsigned i = first; i <= last; i++) {
                snprintf(text, sizeof text, "msg %u", i);
                mk(&e, i, "node1", 0, i, text);
                int r = chatlog_append(log, &e, 1, &res);
                if (r < 0 || res != CHATLOG_STORED || e.seq != i)
                        return r < 0 ? r : -EINVAL;
        }
        return 0;
}

/*
 * chatlog_set_unsynced: appends without fdatasync, chatlog_sync and every
 * checkpoint make them durable, and after a crash that lost an unsynced
 * write in the middle of the tail (a hole with records after it) the open
 * cuts from the hole on — where a synced log would quarantine it — so that
 * Raft's replay can append the same entries again under the same seqs.
 */
static void test_unsynced(void)
{
        char d[PATH_MAX], s[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct dchat_entry e;
        enum chatlog_result res;
        long long *offs = NULL;
        static const uint8_t zeros[512];

        subdir(d, sizeof d, "unsynced");
        if (fill_fast(d, 10) < 0 || chatlog_open(d, &log, NULL) < 0)
                return;
        is_int(chatlog_set_unsynced(log), 0, "unsynced: turned on");
        ok(checkpoint_flags(d) == CHATIDX_UNSYNCED, "... after a checkpoint that says so (flags %#x)",
           checkpoint_flags(d));
        uint64_t syncs = chatlog_syncs(log);
        inject.n_calls = 0;
        inject.record = true;
        is_int(append_msgs(log, 11, 40), 0, "... 30 appends, one at a time");
        inject.record = false;
        ok(count_calls("fdatasync file") == 0 && chatlog_syncs(log) == syncs, "... without a single fdatasync");
        inject.n_calls = 0;
        inject.record = true;
        is_int(chatlog_sync(log), 0, "chatlog_sync");
        is_int(chatlog_sync(log), 0, "... again");
        inject.record = false;
        ok(count_calls("fdatasync file") == 1 && chatlog_syncs(log) == syncs + 1,
           "... one fdatasync for all 30, none when nothing is new");
        is_int(append_msgs(log, 41, 45), 0, "5 more");
        inject.n_calls = 0;
        inject.record = true;
        is_int(chatlog_checkpoint(log), 0, "a checkpoint");
        inject.record = false;
        ok(inject.n_calls == 4 && !strcmp(inject.calls[0], "fdatasync file") && !strcmp(inject.calls[1], "fdatasync file"),
           "... syncs the log first, then writes itself (%s, %s, ...)", inject.calls[0], inject.calls[1]);
        ok(checkpoint_flags(d) == CHATIDX_UNSYNCED, "... and says that what follows it is unsynced");
        is_int(append_msgs(log, 46, 80), 0, "35 more, unsynced");
        log = chatlog_close(log);               /* a crash: nothing synced since seq 45 */
        if (!(offs = offsets(d, 80)))
                goto out;

        /* a power loss wrote back records 46..59 and 62..80 but not 60 and 61: a hole */
        subdir(s, sizeof s, "unsynced-copy");
        ok(copy_file(path_in(d, "chat.log"), path_in(s, "chat.log")) &&
           copy_file(path_in(d, "chat.log.idx"), path_in(s, "chat.log.idx")),
           "(a copy of the log, for a comparison)");
        patch_file(logpath(d), offs[60], zeros, (size_t) (offs[62] - offs[60]));
        is_int(chatlog_open(d, &log, &rec), 0, "a hole in the unsynced tail: the log opens");
        ok(log && rec.unsynced_tail && rec.damage_found == 0 && chatlog_last_seq(log) == 59 &&
           rec.cut_bytes == (uint64_t) (file_size(logpath(s)) - offs[60]) && rec.saved_to[0],
           "... cut at the hole with all after it (saved to %s), nothing quarantined: seqs 1..59 (%s)",
           rec.saved_to, rec.reason);
        ok(log && read_all_msgs(log, 59), "... 1..59 read back");
        mk(&e, 60, "node1", 0, 60, "msg 60");
        ok(log && chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_STORED && e.seq == 60,
           "... the replay stores post 60 again as seq 60");
        mk(&e, 45, "node1", 0, 45, "msg 45");
        ok(log && chatlog_append(log, &e, 1, &res) == 0 && res == CHATLOG_DUPLICATE && e.seq == 45,
           "... and finds post 45 stored, as seq 45");
        log = chatlog_close(log);

        /* the same hole where every append was synced: damage, quarantined, nothing cut */
        if (chatlog_open(s, &log, NULL) == 0) {
                is_int(chatlog_checkpoint(log), 0, "(the copy: a checkpoint without the flag)");
                log = chatlog_close(log);
        }
        ok(checkpoint_flags(s) == 0, "a synced log's checkpoint: no flag");
        patch_file(logpath(s), offs[60], zeros, (size_t) (offs[62] - offs[60]));
        is_int(chatlog_open(s, &log, &rec), 0, "the same hole in a synced log ...");
        ok(log && !rec.unsynced_tail && rec.damage_found == 1 && rec.cut_bytes == 0 && chatlog_last_seq(log) == 80,
           "... is quarantined, as damage to stored records is (seqs 60, 61), nothing cut");
        log = chatlog_close(log);

        /* a failed sync: nothing more goes in until the log is opened again */
        if (chatlog_open(d, &log, NULL) < 0)
                goto out;
        is_int(chatlog_set_unsynced(log), 0, "unsynced again");
        is_int(append_msgs(log, 61, 62), 0, "2 appends");
        inject.fdatasync_errno = EIO;
        is_int(chatlog_sync(log), -EIO, "a failed sync is reported");
        mk(&e, 63, "node1", 0, 63, "msg 63");
        ok(chatlog_append(log, &e, 1, &res) == -EIO && res == CHATLOG_FAILED, "... and appends fail after it");
        is_int(chatlog_checkpoint(log), -EIO, "... and so does a checkpoint (it would vouch for what may be lost)");
        log = chatlog_close(log);
        is_int(chatlog_open(d, &log, &rec), 0, "reopened");
        ok(log && chatlog_last_seq(log) == 62, "... with what the page cache held (seq 62)");
out:
        chatlog_close(log);
        free(offs);
}

/* --- archive: a failure leaves the old state or the new one (item 10) ------------------------- */

static bool one_name(const char *d)
{
        struct stat st;
        return stat(logpath(d), &st) == 0 && st.st_nlink == 1;
}

static void test_archive_failures(void)
{
        char d[PATH_MAX], name[NAME_MAX + 1], warn[256];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        uint64_t first, last;
        struct stat before, after;

        subdir(d, sizeof d, "archive-fail");
        if (fill_fast(d, 50) < 0)
                return;
        stat(logpath(d), &before);

        /* the rename fails: the link made before it is taken back, no chat.log.new */
        inject.rename_errno = EIO;
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -EIO,
               "archive, rename fails (EIO): the error is returned");
        inject.rename_errno = 0;
        stat(logpath(d), &after);
        ok(after.st_ino == before.st_ino && one_name(d) && file_size(path_in(d, "chat.log.1-50")) == -1 &&
           file_size(path_in(d, "chat.log.new")) == -1,
           "... the old state: chat.log the old log with one name, no chat.log.1-50, no chat.log.new");

        /* the link fails */
        inject.link_errno = ENOSPC;
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -ENOSPC,
               "archive, link fails (ENOSPC): the error is returned");
        ok(one_name(d) && file_size(path_in(d, "chat.log.1-50")) == -1 && file_size(path_in(d, "chat.log.new")) == -1,
           "... the old state");

        /* the directory sync before the rename fails (the 2nd fsync: after the new file's) */
        inject.fsync_errno = EIO;
        inject.fsync_nth = 2;
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -EIO,
               "archive, the directory sync before the rename fails: the error is returned");
        inject.fsync_errno = 0;
        ok(one_name(d) && file_size(path_in(d, "chat.log.1-50")) == -1, "... the old state");

        /* a crash between link and rename: the next open removes the second name */
        if (link(logpath(d), path_in(d, "chat.log.1-50")) < 0)
                diag("link: %m");
        is_int(chatlog_open(d, &log, &rec), 0, "a stale archive link (a crash): the log opens");
        ok(!strcmp(rec.stale_link, "chat.log.1-50") && one_name(d) && file_size(path_in(d, "chat.log.1-50")) == -1,
           "... and the stale name is removed (%s)", rec.stale_link);
        log = chatlog_close(log);

        /* the directory sync after the rename fails: done, with a warning */
        inject.fsync_errno = EIO;
        inject.fsync_nth = 3;
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), 0,
               "archive, the directory sync after the rename fails: done (success) ...");
        inject.fsync_errno = 0;
        ok(strstr(warn, "syncing") != NULL, "... with a warning: %s", warn);
        stat(path_in(d, "chat.log.1-50"), &after);
        ok(after.st_ino == before.st_ino && one_name(d) && file_size(logpath(d)) < 200,
           "... chat.log.1-50 is the old log, chat.log the new one");
        is_int(chatlog_open(d, &log, &rec), 0, "... the new log opens");
        ok(log && chatlog_first_seq(log) == 51, "... and goes on at seq 51");
        chatlog_close(log);
}

int main(void)
{
        const char *tmp = getenv("TMPDIR");

        plan_no_plan();
        snprintf(dir, sizeof dir, "%s/test-chatlog-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
                printf("Bail out! mkdtemp: %m\n");
                return 1;
        }

        test_crc_and_fence_cmp();
        test_basic();
        check_recovery("torn-header", torn_header, 9, "torn header at offset");
        check_recovery("torn-body", torn_body, 9, "torn record 10 at offset");
        check_recovery("torn-last-byte", torn_one_byte, 9, "torn record 10");
        check_recovery("crc-last", crc_last, 9, "checksum mismatch in record 10 at offset");
        check_recovery("garbage", garbage_tail, 10, "bad magic at offset");
        check_recovery("zeros", zero_tail, 10, "bad magic at offset");
        check_recovery("magic-garbage", magic_garbage_tail, 10, "header checksum mismatch");
        check_recovery("seq-gap", seq_gap, 10, "sequence gap");
        check_recovery("fence-back", fence_back, 10, "fence not increasing in record 11");
        test_handmade_record();
        test_old_records();
        test_corrupt_while_open();
        check_quarantine("q-body", 1000, 10, 10, false, false);
        check_quarantine("q-header", 1000, 10, 10, true, false);
        check_quarantine("q-first", 20, 1, 1, false, false);
        check_quarantine("q-row", 1000, 10, 12, false, false);
        check_quarantine("q-row-headers", 1000, 10, 12, true, false);
        check_quarantine("q-zeros-across-slots", 1000, 300, 700, false, true);
        test_damage_in_checkpoint();
        test_copy_in_damage();
        test_damaged_end();
        test_quarantine_refusals();
        test_checkpoint_codec();
        test_old_checkpoint();
        test_start_record_repair();
        test_read_errors();
        test_checkpoint_sync_order();
        test_unsynced();
        test_archive_failures();
        test_big_view();
        test_write_error();
        test_open_errors();

        rm_rf(dir);
        return done_testing();
}
