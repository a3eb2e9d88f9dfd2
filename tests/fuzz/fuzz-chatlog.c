/* SPDX-License-Identifier: MIT */
/*
 * fuzz-chatlog.c — libFuzzer target: the chat log's recovery (chatlog.c).
 *
 * The input becomes DIR/chat.log in a private directory (on /dev/shm when
 * there is one: fdatasync is cheap there), and the log is opened: it scans
 * the file, keeps the good records, quarantines damage that good records
 * follow, saves and cuts a bad tail.  Then every seq is read back
 * (chatlog_seek/chatlog_next, from the start and from a few places: an
 * entry or a damaged report each, in order, none missing), one entry is
 * appended after them, and the log is opened a second time (after a
 * checkpoint), which must find nothing more to cut and one record more.
 * The expected failure: an open that refuses rather than lose or renumber
 * something (a damaged start record, too many damaged parts, a good record
 * whose seq cannot follow the damage before it) — rec.reason says
 * "refusing" — by design.
 *
 * Random bytes rarely pass the record checksums, so the first byte picks
 * how the rest is read.  Bit 1 set: a checkpoint comes first, "u16 length |
 * bytes", written as DIR/chat.log.idx (chatidx.c decodes it and checks it
 * against the log; chat.log gets a fixed mtime so that a checkpoint can
 * match it).  Then bit 0 set: chunks "u8 flags | u16 length | bytes", each
 * written either as it is or wrapped in a record header with correct
 * CRC-32Cs (so the record bodies, sequence and fence checks are reached);
 * bit 0 clear: the file itself.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dchatd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "fuzz-chatlog: check failed: %s (line %d)\n", #x, __LINE__); abort(); } } while (0)
/*
 * A checkpoint vouches for the part of the log it covers, which is then not
 * read again at open: damage inside it is only found by a read (-EIO, and
 * the checkpoint is dropped).  A real log changed in place has a new mtime
 * and its checkpoint is refused; the fuzzer forges the mtime, so with a
 * checkpoint only robustness is checked, not that every record reads back.
 */
static bool strict;
#define EXPECT(x) do { if (strict) CHECK(x); else (void) (x); } while (0)

static char dir[256];

static uint32_t crc32c(const uint8_t *p, size_t n)
{
        uint32_t c = 0xFFFFFFFFu;
        while (n--) {
                c ^= *p++;
                for (int k = 0; k < 8; k++)
                        c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        }
        return ~c;
}

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static void empty_dir(void)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
}

static void cleanup(void)
{
        empty_dir();
        (void) rmdir(dir);
}

static int write_file(const char *name, const uint8_t *data, size_t size)
{
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -1;
        int r = write(fd, data, size) == (ssize_t) size ? 0 : -1;
        close(fd);
        return r;
}

static int write_log(const uint8_t *data, size_t size)
{
        char path[512];
        size_t start = 1;

        if (size > 0 && (data[0] & 2)) {
                /* the checkpoint first */
                size_t n = size >= 3 ? (size_t) data[1] << 8 | data[2] : 0;
                if (n > size - 3)
                        n = size >= 3 ? size - 3 : 0;
                if (write_file("chat.log.idx", data + 3, n) < 0)
                        return -1;
                start = 3 + n;
                if (start > size)
                        start = size;
        }
        snprintf(path, sizeof path, "%s/chat.log", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -1;
        if (size > 0 && data[0] % 2 == 1) {
                size_t off = start;
                while (size - off >= 3) {
                        uint8_t flags = data[off];
                        size_t n = (size_t) data[off + 1] << 8 | data[off + 2];
                        off += 3;
                        if (n > size - off)
                                n = size - off;
                        if (flags & 1) {
                                uint8_t h[16];
                                /* bit 1: "DCL2" (an entry with its vector clock), else "DCL1" (older logs) */
                                put_be32(h, flags & 2 ? 0x44434C32 : 0x44434C31);
                                put_be32(h + 4, (uint32_t) n);
                                put_be32(h + 8, crc32c(data + off, n));
                                put_be32(h + 12, crc32c(h, 12));
                                if (write(fd, h, sizeof h) != (ssize_t) sizeof h)
                                        break;
                        }
                        if (write(fd, data + off, n) != (ssize_t) n)
                                break;
                        off += n;
                }
        } else if (size > 0 && (data[0] & 2) && write(fd, data + start, size - start) != (ssize_t) (size - start)) {
                close(fd);
                return -1;
        } else if (size > 0 && !(data[0] & 2) && write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return -1;
        }
        /* a fixed mtime: the same input, the same run */
        const struct timespec t[2] = { { 1700000000, 0 }, { 1700000000, 0 } };
        (void) futimens(fd, t);
        close(fd);
        return 0;
}

/* Reads every seq from seq on (seqs archived away: from the first there is), damaged ones included; how many. */
static uint64_t read_from(struct chatlog *log, uint64_t seq, struct dchat_entry *e)
{
        struct chatlog_cursor cur;
        uint64_t n = 0;
        if (seq < chatlog_first_seq(log))
                seq = chatlog_first_seq(log);
        int r = chatlog_seek(log, seq, &cur);
        EXPECT(r == 0);
        if (r < 0)
                return 0;
        while ((r = chatlog_next(log, &cur, e)) >= 0) {
                CHECK(e->seq == seq + n);
                if (r == CHATLOG_DAMAGED) {
                        CHECK(cur.damaged_last >= e->seq && cur.damaged_last <= chatlog_last_seq(log) &&
                              cur.damaged_why && cur.seq == cur.damaged_last + 1);
                        n += cur.damaged_last - e->seq + 1;
                        continue;
                }
                CHECK(e->text_len <= DCHAT_TEXT_MAX && e->text[e->text_len] == '\0');
                n++;
        }
        EXPECT(r == -ENOENT);
        return n;
}

/* The open refused by design (it would otherwise lose or renumber something). */
static bool refused(int r, const struct chatlog_recovery *rec)
{
        return r == -EBADMSG && strstr(rec->reason, "refusing");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct dchat_entry e;
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;

        if (!dir[0]) {
                const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
                snprintf(dir, sizeof dir, "%s/fuzz-chatlog.XXXXXX", base);
                if (!mkdtemp(dir))
                        abort();
                atexit(cleanup);
        }
        empty_dir();
        strict = !(size > 0 && (data[0] & 2));
        if (write_log(data, size) < 0)
                return 0;

        int r = chatlog_open(dir, &log, &rec);
        /* by design: e.g. a damaged start record (archived log) is refused, never cut off */
        if (refused(r, &rec))
                return 0;
        if (r < 0)
                fprintf(stderr, "fuzz-chatlog: chatlog_open: %s (%s)\n", strerror(-r), rec.reason);
        CHECK(r == 0);
        uint64_t last = chatlog_last_seq(log);
        /* an archived log starts with a start record: seqs base+1 .. last are here */
        uint64_t base = chatlog_first_seq(log) - 1;
        CHECK(base <= last && rec.records == last - base && rec.damaged_seqs <= rec.records);
        for (size_t i = 0; i < chatlog_damage_count(log); i++) {
                struct chatlog_damage_info d;
                chatlog_damage_get(log, i, &d);
                CHECK(d.first_seq > base && d.first_seq <= d.last_seq + 1 && d.last_seq <= last && d.off < d.end);
        }
        CHECK(memchr(rec.reason, 0, sizeof rec.reason));
        EXPECT(read_from(log, 1, &e) == last - base);
        if (last > base) {
                uint64_t mid = base + (last - base) / 2 + 1;
                EXPECT(read_from(log, last, &e) == 1);
                EXPECT(read_from(log, mid, &e) == last - mid + 1);
        }
        CHECK(read_from(log, last + 1, &e) == 0);
        uint64_t found;
        (void) chatlog_find_time(log, 1700000000, &found);
        (void) chatlog_find_time(log, INT64_MIN, &found);

        /* the log takes a new entry after whatever it kept */
        uint64_t lamport;
        char node[DCHAT_NAME_MAX + 1];
        uint32_t fidx;
        chatlog_last_fence(log, &lamport, node, &fidx);
        (void) chatlog_last_post_id(log, node);
        /* a new post (the next post id of its node) with the next fence: stored, whatever the log held
         * (a log whose last fence is at the bounds takes no more, by design) */
        uint64_t pid = chatlog_last_post_id(log, "fuzz");
        struct dchat_entry ne = { .lamport = lamport + 1, .post_id = pid + 1, .time = 1700000000 };
        if (lamport < DCHAT_CLOCK_MAX && pid < UINT64_MAX) {
                strcpy(ne.node, "fuzz");
                strcpy(ne.author, "fuzz");
                strcpy(ne.text, "hello");
                ne.text_len = 5;
                enum chatlog_result res = CHATLOG_INVALID;
                r = chatlog_append(log, &ne, 1, &res);
                EXPECT(r == 0);
                EXPECT(r < 0 || res == CHATLOG_STORED);
                if (r == 0 && res == CHATLOG_STORED) {
                        EXPECT(ne.seq == last + 1);
                        last++;
                }
        }
        /* a checkpoint of it all, which the next open must take or refuse without harm */
        (void) chatlog_checkpoint(log);
        chatlog_close(log);

        /* opened again: clean, and the same records (with a forged checkpoint, the part it covered
         * is read for the first time now, and may be refused) */
        r = chatlog_open(dir, &log, &rec);
        if (!strict && refused(r, &rec))
                return 0;
        CHECK(r == 0);
        EXPECT(rec.cut_bytes == 0 && rec.records == last - base);
        EXPECT(read_from(log, 1, &e) == last - base);
        chatlog_close(log);
        return 0;
}
