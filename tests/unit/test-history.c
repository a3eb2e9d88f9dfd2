/* SPDX-License-Identifier: MIT */
/*
 * test-history.c — the chat log's history features: the checkpoint
 * (chat.log.idx: codec, used when it checks out, discarded with a reason
 * when it does not, the tail after it read), the search by time over
 * entries whose times go back and forth, the archive with its start
 * record (seqs, fences and post ids go on), and the --since TIME parser.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "dchatd.h"
#include "chatidx.h"
#include "tap.h"
#include "../../cli/since.c"

static char dir[256];

/* --- helpers --------------------------------------------------------------------- */

static void sub(char *buf, size_t cap, const char *name)
{
        snprintf(buf, cap, "%s/%s", dir, name);
        if (mkdir(buf, 0755) < 0)
                diag("mkdir %s: %m", buf);
}

static char *path(const char *d, const char *file)
{
        static char p[4][PATH_MAX + 64];
        static unsigned k;
        k = (k + 1) % 4;
        snprintf(p[k], sizeof p[k], "%s/%s", d, file);
        return p[k];
}

static long long file_size(const char *p)
{
        struct stat st;
        return stat(p, &st) < 0 ? -1 : (long long) st.st_size;
}

static void flip_byte(const char *p, long long off)
{
        uint8_t b;
        int fd = open(p, O_RDWR | O_CLOEXEC);

        if (fd < 0 || pread(fd, &b, 1, off) != 1 || (b ^= 0x20, pwrite(fd, &b, 1, off)) != 1)
                diag("flip_byte %s: %m", p);
        if (fd >= 0)
                close(fd);
}

/* Entry i (1-based): node1 and node2 in turn; node2's clock is 1000 s behind. */
static void mk(struct dchat_entry *e, uint64_t i, uint64_t lamport, uint64_t post_id)
{
        *e = (struct dchat_entry) {0};
        e->lamport = lamport;
        strcpy(e->node, i % 2 ? "node1" : "node2");
        e->post_id = post_id;
        e->time = 1700000000 + (int64_t) i * 10 - (i % 2 ? 0 : 1000);
        strcpy(e->author, "lucy");
        e->text_len = (uint16_t) snprintf(e->text, sizeof e->text, "msg %" PRIu64, i);
}

/* Appends entries first..last (as mk() makes them) in batches of up to 100. */
static int add(struct chatlog *log, uint64_t first, uint64_t last)
{
        static struct dchat_entry e[100];
        enum chatlog_result res[100];

        for (uint64_t i = first; i <= last;) {
                unsigned n = 0;
                for (; n < 100 && i <= last; n++, i++)
                        mk(&e[n], i, 10 * i, (i + 1) / 2);
                int r = chatlog_append(log, e, n, res);
                if (r < 0)
                        return r;
                for (unsigned k = 0; k < n; k++)
                        if (res[k] != CHATLOG_STORED)
                                return -EINVAL;
        }
        return 0;
}

/* Reads seqs from..to and checks each is "msg SEQ". */
static bool read_range(struct chatlog *log, uint64_t from, uint64_t to)
{
        _cleanup_(freep) struct dchat_entry *e = malloc(sizeof *e);
        struct chatlog_cursor cur;
        char want[64];

        if (!e || chatlog_seek(log, from, &cur) < 0)
                return false;
        for (uint64_t s = from; s <= to; s++) {
                snprintf(want, sizeof want, "msg %" PRIu64, s);
                if (chatlog_next(log, &cur, e) < 0 || e->seq != s || strcmp(e->text, want) != 0) {
                        diag("record %" PRIu64 " does not read back", s);
                        return false;
                }
        }
        return chatlog_next(log, &cur, e) == -ENOENT;
}

/* A log of n entries in d, with (ckpt) or without a checkpoint of all of it. */
static void make_log(const char *d, uint64_t n, bool ckpt)
{
        struct chatlog *log = NULL;

        if (chatlog_open(d, &log, NULL) < 0 || add(log, 1, n) < 0 || (ckpt && chatlog_checkpoint(log) < 0))
                diag("make_log %s failed", d);
        chatlog_close(log);
}

/* Opens d, expecting the checkpoint to be discarded with a warning matching why (last 0: any last seq). */
static void expect_discarded(const char *d, const char *why, uint64_t last, const char *name)
{
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;

        is_int(chatlog_open(d, &log, &rec), 0, "%s: the log opens", name);
        ok(!rec.checkpoint_used, "%s: the checkpoint is not used", name);
        ok(strstr(rec.checkpoint_warning, why) != NULL, "%s: the warning says '%s' (%s)", name, why,
           rec.checkpoint_warning);
        is_int(rec.scanned, log ? chatlog_last_seq(log) : 0, "%s: the whole log was read", name);
        if (log) {
                if (last)
                        is_int(chatlog_last_seq(log), last, "%s: last seq %" PRIu64, name, last);
                ok(read_range(log, 1, chatlog_last_seq(log)), "%s: every record reads back", name);
        }
        chatlog_close(log);
}

/* --- tests ------------------------------------------------------------------------- */

/* The CRC (slicing by 8) against a bitwise one, at every length and alignment. */
static void test_crc(void)
{
        uint8_t buf[300];
        unsigned bad = 0;

        for (size_t i = 0; i < sizeof buf; i++)
                buf[i] = (uint8_t) (i * 131 + 7);
        is_int(crc32c(0, "123456789", 9), 0xE3069283, "crc: the CRC-32C check value");
        for (size_t off = 0; off < 8; off++)
                for (size_t n = 0; n + off <= 280; n++) {
                        uint32_t want = 0xffffffff;
                        for (size_t i = 0; i < n; i++) {
                                want ^= buf[off + i];
                                for (int k = 0; k < 8; k++)
                                        want = want & 1 ? (want >> 1) ^ 0x82F63B78 : want >> 1;
                        }
                        want = ~want;
                        bad += crc32c(0, buf + off, n) != want;
                        /* continued in two pieces */
                        bad += crc32c(crc32c(0, buf + off, n / 3), buf + off + n / 3, n - n / 3) != want;
                }
        is_int(bad, 0, "crc: same as bitwise for lengths 0..280 at 8 alignments, whole and in two pieces");
}

static void test_codec(void)
{
        struct chatlog_ix ix[2] = { { 0, INT64_MIN }, { 4000, 1700000300 } };
        struct chatlog_node nd[2] = { { .name = "node1", .post_id = 7, .seq = 300 },
                                      { .name = "node2", .post_id = 9, .seq = 299 } };
        struct chatidx x = { .base_seq = 0, .end = 9000, .mtime_ns = 123456789, .last_seq = 300,
                             .last_off = 8900, .last_crc = 0xdeadbeef, .last_lamport = 3000,
                             .last_node = "node1", .last_fence_idx = 2, .max_time = 1700003000,
                             .index = ix, .n_index = 2, .nodes = nd, .n_nodes = 2 };
        struct chatidx y;
        struct wbuf b = {0};
        const char *why = NULL;

        is_int(chatidx_encode(&b, &x), 0, "codec: encode");
        is_int(chatidx_decode(b.data, b.len, &y, &why), 0, "codec: decode");
        ok(y.end == 9000 && y.mtime_ns == 123456789 && y.last_seq == 300 && y.last_off == 8900 &&
           y.last_crc == 0xdeadbeef && y.last_lamport == 3000 && !strcmp(y.last_node, "node1") &&
           y.last_fence_idx == 2 && y.max_time == 1700003000, "codec: every field back");
        ok(y.n_index == 2 && y.index[0].max_before == INT64_MIN && y.index[1].off == 4000 &&
           y.n_nodes == 2 && !strcmp(y.nodes[1].name, "node2") && y.nodes[1].post_id == 9 && y.nodes[1].seq == 299,
           "codec: index and nodes back");
        chatidx_free(&y);

        unsigned bad = 0;
        for (size_t i = 0; i < b.len; i++) {
                b.data[i] ^= 0x01;
                bad += chatidx_decode(b.data, b.len, &y, &why) == -EBADMSG;
                b.data[i] ^= 0x01;
        }
        is_int(bad, b.len, "codec: every one of the %zu bytes flipped is refused", b.len);
        bad = 0;
        for (size_t n = 0; n < b.len; n++)
                bad += chatidx_decode(b.data, n, &y, &why) == -EBADMSG;
        is_int(bad, b.len, "codec: every truncation is refused");

        /* consistent CRC but a lie inside: refused all the same */
        struct wbuf c = {0};
        x.n_index = 1;
        chatidx_encode(&c, &x);
        is_int(chatidx_decode(c.data, c.len, &y, &why), -EBADMSG, "codec: too few index slots for 300 records");
        is_str(why, "index size does not match the records covered", "codec: ... says so");
        wbuf_free(&c);
        x.n_index = 2;
        ix[1].off = 0;
        chatidx_encode(&c, &x);
        is_int(chatidx_decode(c.data, c.len, &y, &why), -EBADMSG, "codec: offsets not increasing");
        wbuf_free(&c);
        wbuf_free(&b);
}

static void test_checkpoint(void)
{
        char d[300], d2[300];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        enum chatlog_result res;
        struct dchat_entry e;

        sub(d, sizeof d, "ckpt");
        make_log(d, 1000, true);
        ok(file_size(path(d, "chat.log.idx")) > 0, "checkpoint: chat.log.idx written");

        is_int(chatlog_open(d, &log, &rec), 0, "checkpoint: reopen");
        ok(rec.checkpoint_used && rec.checkpoint_seq == 1000 && rec.scanned == 0 && !rec.checkpoint_warning[0],
           "checkpoint: used up to seq 1000, nothing read after it");
        is_int(chatlog_last_seq(log), 1000, "checkpoint: last seq 1000");
        is_int(chatlog_last_post_id(log, "node1"), 500, "checkpoint: node1's last post id");
        is_int(chatlog_last_post_id(log, "node2"), 500, "checkpoint: node2's last post id");
        ok(read_range(log, 1, 1000), "checkpoint: every record reads back");
        ok(read_range(log, 257, 1000) && read_range(log, 768, 1000), "checkpoint: seeks through the index");
        /* a crash after more appends: the checkpoint stays at 1000 */
        is_int(add(log, 1001, 1300), 0, "checkpoint: 300 more appended");
        ok(!chatlog_checkpoint_due(log), "checkpoint: not due after 300 records");
        log = chatlog_close(log);

        is_int(chatlog_open(d, &log, &rec), 0, "tail: reopen");
        ok(rec.checkpoint_used && rec.checkpoint_seq == 1000 && rec.scanned == 300,
           "tail: checkpoint used, only the 300 records after it read");
        is_int(chatlog_last_seq(log), 1300, "tail: last seq 1300");
        ok(read_range(log, 1, 1300), "tail: every record reads back");
        /* exactly-once and fencing still know what came before the checkpoint */
        mk(&e, 1299, 12990, 650);
        chatlog_append(log, &e, 1, &res);
        ok(res == CHATLOG_DUPLICATE && e.seq == 1299, "tail: a resent post id is a duplicate of seq 1299");
        mk(&e, 1301, 12990, 651);
        chatlog_append(log, &e, 1, &res);
        is_int(res, CHATLOG_FENCED, "tail: an older fence is refused");
        log = chatlog_close(log);

        /* the log cut inside the covered part */
        truncate(path(d, "chat.log"), file_size(path(d, "chat.log")) - 2000);
        /* (a checkpoint of 1000 records, the log now shorter than the tail: covered prefix intact) */
        is_int(chatlog_open(d, &log, &rec), 0, "torn tail after the checkpoint: reopen");
        ok(rec.checkpoint_used && log && chatlog_last_seq(log) > 1000 && chatlog_last_seq(log) < 1300,
           "torn tail after the checkpoint: checkpoint used, the torn tail cut (last seq %" PRIu64 ")",
           log ? chatlog_last_seq(log) : 0);
        ok(log && read_range(log, 1, chatlog_last_seq(log)), "torn tail after the checkpoint: every record reads back");
        log = chatlog_close(log);

        sub(d2, sizeof d2, "ckpt-short");
        make_log(d2, 700, true);
        truncate(path(d2, "chat.log"), file_size(path(d2, "chat.log")) - 500);
        expect_discarded(d2, "it covers more than the log holds", 0, "log shorter than the checkpoint");
}

static void test_discard(void)
{
        char d[300], o[300];
        long long sz;
        uint8_t z[64] = {0};
        int fd;

        sub(d, sizeof d, "idx-flip");
        make_log(d, 600, true);
        flip_byte(path(d, "chat.log.idx"), 100);
        expect_discarded(d, "checksum mismatch", 600, "a flipped byte in chat.log.idx");

        sub(d, sizeof d, "idx-short");
        make_log(d, 600, true);
        truncate(path(d, "chat.log.idx"), 30);
        expect_discarded(d, "checksum mismatch", 600, "a truncated chat.log.idx");

        sub(d, sizeof d, "idx-zero");
        make_log(d, 600, true);
        fd = open(path(d, "chat.log.idx"), O_WRONLY | O_TRUNC);
        if (fd < 0 || write(fd, z, sizeof z) != sizeof z)
                diag("zeroing: %m");
        close(fd);
        expect_discarded(d, "bad magic", 600, "a chat.log.idx of zeros");

        /* a well-formed checkpoint of another log that is the same but for record 600 */
        sub(d, sizeof d, "idx-other");
        sub(o, sizeof o, "idx-other-src");
        make_log(o, 600, true);
        {
                struct chatlog *log = NULL;
                struct dchat_entry e;
                enum chatlog_result res[1];
                chatlog_open(d, &log, NULL);
                add(log, 1, 599);
                mk(&e, 600, 6001, 300);         /* another fence */
                chatlog_append(log, &e, 1, res);
                add(log, 601, 601);
                chatlog_close(log);
        }
        rename(path(o, "chat.log.idx"), path(d, "chat.log.idx"));
        expect_discarded(d, "the last record it covers", 601, "another log's checkpoint");

        /* a checkpoint that is consistent in itself but whose index points elsewhere */
        sub(d, sizeof d, "idx-slot");
        make_log(d, 600, true);
        {
                struct chatidx x;
                const char *why = NULL;
                int dfd = open(d, O_RDONLY | O_DIRECTORY);
                is_int(chatidx_load(dfd, &x, &why), 0, "wrong index slot: the checkpoint loads");
                if (x.n_index == 3) {
                        x.index[1].off += 16;
                        is_int(chatidx_save(dfd, &x), 0, "wrong index slot: saved with slot 1 moved 16 bytes");
                }
                chatidx_free(&x);
                close(dfd);
        }
        expect_discarded(d, "an index slot does not point at the record", 600, "a wrong index slot");

        /* the log changed in place after a checkpoint (same size): a flipped byte in record 300 */
        sub(d, sizeof d, "log-flip");
        make_log(d, 600, true);
        sz = file_size(path(d, "chat.log"));
        {
                /* make sure the mtime moves even on a coarse clock */
                struct timeval tv[2] = { { 1, 0 }, { 1, 0 } };
                flip_byte(path(d, "chat.log"), sz / 2);
                utimes(path(d, "chat.log"), tv);
        }
        {
                struct chatlog *log = NULL;
                struct chatlog_recovery rec;
                is_int(chatlog_open(d, &log, &rec), 0, "log changed in place: opens");
                ok(!rec.checkpoint_used && strstr(rec.checkpoint_warning, "modified after"),
                   "log changed in place: checkpoint discarded (%s)", rec.checkpoint_warning);
                ok(rec.cut_bytes == 0 && log && chatlog_last_seq(log) == 600 && rec.damage_found == 1 &&
                   rec.damaged_seqs == 1,
                   "log changed in place: the damaged record is quarantined, nothing cut, as without a checkpoint");
                chatlog_close(log);
        }

        /* damage found by a read (the checkpoint vouched for it): appends stop, the checkpoint asks for a full
         * read, which quarantines it at the next open */
        sub(d, sizeof d, "read-damage");
        make_log(d, 600, true);
        {
                struct chatlog *log = NULL;
                struct chatlog_recovery rec;
                struct chatlog_cursor cur;
                struct dchat_entry *e = malloc(sizeof *e), ne;
                enum chatlog_result res[1];
                struct chatidx x;
                const char *why = NULL;
                int r = 0, dfd;
                chatlog_open(d, &log, &rec);
                ok(rec.checkpoint_used, "read damage: the checkpoint is used at open");
                flip_byte(path(d, "chat.log"), file_size(path(d, "chat.log")) / 2);
                chatlog_seek(log, 1, &cur);
                while (r == 0)
                        r = chatlog_next(log, &cur, e);
                uint64_t bad = cur.seq;
                is_int(r, -EBADMSG, "read damage: the read fails with EBADMSG at seq %" PRIu64, bad);
                is_int(chatlog_damaged_at(log), bad, "read damage: the log knows where");
                dfd = open(d, O_RDONLY | O_DIRECTORY);
                ok(chatidx_load(dfd, &x, &why) == 0 && (x.flags & CHATIDX_RESCAN) && x.last_seq == 600,
                   "read damage: chat.log.idx now asks for a full read (and still says 600 were stored)");
                chatidx_free(&x);
                close(dfd);
                mk(&ne, 601, 7000, 301);
                is_int(chatlog_append(log, &ne, 1, res), -EUCLEAN, "read damage: appends are refused (EUCLEAN)");
                is_int(chatlog_checkpoint(log), 0, "read damage: a checkpoint is still written ...");
                dfd = open(d, O_RDONLY | O_DIRECTORY);
                ok(chatidx_load(dfd, &x, &why) == 0 && (x.flags & CHATIDX_RESCAN), "read damage: ... asking for a full read");
                chatidx_free(&x);
                close(dfd);
                chatlog_close(log);
                free(e);
                chatlog_open(d, &log, &rec);
                ok(!rec.checkpoint_used && strstr(rec.checkpoint_warning, "read found"),
                   "read damage: the next open reads the whole log (%s)", rec.checkpoint_warning);
                ok(rec.cut_bytes == 0 && log && chatlog_last_seq(log) == 600 && rec.damage_found == 1 &&
                   rec.damaged_seqs == 1, "read damage: ... quarantines seq %" PRIu64 " and keeps all 600", bad);
                if (log) {
                        struct chatlog_damage_info di;
                        chatlog_damage_get(log, 0, &di);
                        ok(di.first_seq == bad && di.last_seq == bad, "read damage: the damaged part is seq %" PRIu64, bad);
                        is_int(chatlog_damaged_at(log), 0, "read damage: no unknown damage after the open");
                        is_int(chatlog_append(log, &ne, 1, res), 0, "read damage: appends work again");
                        ok(res[0] == CHATLOG_STORED && ne.seq == 601, "read damage: ... the next seq is 601");
                }
                chatlog_close(log);
        }
}

static void test_find_time(void)
{
        char d[300];
        struct chatlog *log = NULL;
        enum { N = 2000 };
        static int64_t t[N + 1];
        struct dchat_entry e;
        unsigned bad = 0, n = 0;

        sub(d, sizeof d, "time");
        chatlog_open(d, &log, NULL);
        uint64_t s;
        is_int(chatlog_find_time(log, 0, &s), 0, "find_time: empty log");
        is_int(s, 1, "find_time: empty log: last + 1");
        add(log, 1, N);
        for (uint64_t i = 1; i <= N; i++) {
                mk(&e, i, 0, 0);
                t[i] = e.time;
        }
        ok(t[2] < t[1], "find_time: times go back and forth along the log");
        /* against the brute force: the first seq with time >= x */
        for (int64_t x = t[1] - 2000; x <= t[N] + 20; x += 7, n++) {
                uint64_t want = N + 1, got = 0;
                for (uint64_t i = 1; i <= N; i++)
                        if (t[i] >= x) {
                                want = i;
                                break;
                        }
                if (chatlog_find_time(log, x, &got) < 0 || got != want) {
                        if (bad++ < 5)
                                diag("time %" PRId64 ": got seq %" PRIu64 ", want %" PRIu64, x, got, want);
                }
        }
        is_int(bad, 0, "find_time: the first seq at or after the time, for all %u times tried", n);
        log = chatlog_close(log);
        /* the same after a reopen through the checkpoint, and after a full scan */
        chatlog_open(d, &log, NULL);
        chatlog_checkpoint(log);
        chatlog_close(log);
        for (int pass = 0; pass < 2; pass++) {
                struct chatlog_recovery rec;
                uint64_t got = 0;
                if (pass == 1)
                        unlink(path(d, "chat.log.idx"));
                chatlog_open(d, &log, &rec);
                bad = 0;
                for (uint64_t i = 1; i <= N; i += 13) {
                        uint64_t want = i;      /* or an earlier entry already as late */
                        for (uint64_t k = 1; k < i; k++)
                                if (t[k] >= t[i]) {
                                        want = k;
                                        break;
                                }
                        bad += chatlog_find_time(log, t[i], &got) < 0 || got != want;
                }
                is_int(bad, 0, "find_time: right %s", pass ? "after a full scan" : "with the checkpoint");
                log = chatlog_close(log);
        }
}

static void test_archive(void)
{
        char d[300], a[300], name[NAME_MAX + 1], warn[256];
        struct chatlog *log = NULL, *log2 = NULL;
        struct chatlog_recovery rec;
        enum chatlog_result res[2];
        struct dchat_entry e[2];
        uint64_t first, last, lamport, s;
        char node[DCHAT_NAME_MAX + 1];
        uint32_t idx;

        sub(d, sizeof d, "archive");
        chatlog_open(d, &log, NULL);
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -EBUSY, "archive: refused while open");
        log = chatlog_close(log);
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -ENODATA, "archive: refused when empty");

        make_log(d, 600, true);
        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), 0, "archive: 600 records");
        is_str(name, "chat.log.1-600", "archive: named chat.log.1-600");
        ok(first == 1 && last == 600, "archive: first 1, last 600");
        is_int(file_size(path(d, "chat.log.idx")), -1, "archive: the old checkpoint is gone");
        is_int(file_size(path(d, "chat.log.new")), -1, "archive: no chat.log.new left");

        is_int(chatlog_open(d, &log, &rec), 0, "archive: the new log opens");
        ok(!rec.cut_bytes && rec.base_seq == 600 && rec.records == 0, "archive: no records, base seq 600");
        is_int(chatlog_first_seq(log), 601, "archive: first seq 601");
        is_int(chatlog_last_seq(log), 600, "archive: last seq 600");
        chatlog_last_fence(log, &lamport, node, &idx);
        ok(lamport == 6000 && !strcmp(node, "node2") && idx == 0, "archive: the last fence goes on (6000/node2/0)");
        is_int(chatlog_last_post_id(log, "node1"), 300, "archive: node1's last post id goes on");
        struct chatlog_cursor cur;
        is_int(chatlog_seek(log, 1, &cur), 0, "archive: seek 1 ...");
        is_int(cur.seq, 601, "archive: ... starts at 601");
        is_int(chatlog_find_time(log, 0, &s), 0, "archive: find_time on the empty new log");
        is_int(s, 601, "archive: ... last + 1");

        /* in-flight resend of the last archived post, a stale fence, then new posts */
        mk(&e[0], 600, 6000, 300);
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == 600, "archive: a resend of post node2#300 is a duplicate of seq 600");
        mk(&e[0], 599, 5990, 300);
        chatlog_append(log, e, 1, res);
        ok(res[0] == CHATLOG_DUPLICATE && e[0].seq == 599, "archive: a resend of node1#300 too (seq 599)");
        mk(&e[0], 601, 5995, 301);
        chatlog_append(log, e, 1, res);
        is_int(res[0], CHATLOG_FENCED, "archive: a fence below the archived last one is refused");
        is_int(add(log, 601, 900), 0, "archive: 300 new entries");
        ok(read_range(log, 601, 900), "archive: seqs 601..900 read back");
        is_int(chatlog_find_time(log, 0, &s), 0, "archive: find_time");
        is_int(s, 601, "archive: a time before everything finds the first seq of the new log");
        chatlog_checkpoint(log);
        log = chatlog_close(log);

        is_int(chatlog_open(d, &log, &rec), 0, "archive: reopen with a checkpoint");
        ok(rec.checkpoint_used && rec.scanned == 0 && chatlog_last_seq(log) == 900, "archive: checkpoint used, last 900");
        ok(read_range(log, 601, 900), "archive: reads back through the checkpoint's index");
        log = chatlog_close(log);
        unlink(path(d, "chat.log.idx"));
        is_int(chatlog_open(d, &log, &rec), 0, "archive: reopen without");
        ok(!rec.checkpoint_used && rec.scanned == 300 && chatlog_last_seq(log) == 900, "archive: full read, last 900");
        ok(read_range(log, 601, 900), "archive: reads back");
        log = chatlog_close(log);

        is_int(chatlog_archive(d, name, sizeof name, &first, &last, &rec, warn, sizeof warn), 0, "archive: again");
        is_str(name, "chat.log.601-900", "archive: named chat.log.601-900");

        /* an archive that stopped after the link (a crash): done again, it finishes */
        sub(a, sizeof a, "archive-again");
        make_log(a, 300, false);
        link(path(a, "chat.log"), path(a, "chat.log.1-300"));
        is_int(chatlog_archive(a, name, sizeof name, &first, &last, &rec, warn, sizeof warn), 0,
               "archive: after a crash between the link and the rename, it is done again");
        ok(file_size(path(a, "chat.log")) < 1000 && file_size(path(a, "chat.log.1-300")) > 10000,
           "archive: ... chat.log is the new log, chat.log.1-300 the old one");
        /* a name taken by another file: nothing changes */
        sub(a, sizeof a, "archive-taken");
        make_log(a, 300, false);
        {
                int fd = open(path(a, "chat.log.1-300"), O_WRONLY | O_CREAT, 0600);
                close(fd);
        }
        long long before = file_size(path(a, "chat.log"));
        is_int(chatlog_archive(a, name, sizeof name, &first, &last, &rec, warn, sizeof warn), -EEXIST,
               "archive: the name taken by another file: EEXIST");
        ok(file_size(path(a, "chat.log")) == before && file_size(path(a, "chat.log.new")) == -1,
           "archive: ... the log untouched, no chat.log.new left");

        /* the archive is a plain log: open a copy */
        sub(a, sizeof a, "archive-copy");
        link(path(d, "chat.log.1-600"), path(a, "chat.log"));
        is_int(chatlog_open(a, &log2, &rec), 0, "archive: chat.log.1-600 opens as a log");
        ok(log2 && chatlog_last_seq(log2) == 600 && read_range(log2, 1, 600), "archive: with its 600 records");
        chatlog_close(log2);

        /* a damaged start record: never cut (seqs would start again at 1), the log refused */
        long long sz = file_size(path(d, "chat.log"));
        flip_byte(path(d, "chat.log"), 20);
        is_int(chatlog_open(d, &log, &rec), -EBADMSG, "archive: a damaged start record: open refused");
        ok(strstr(rec.reason, "start record"), "archive: ... saying why (%s)", rec.reason);
        is_int(file_size(path(d, "chat.log")), sz, "archive: ... and nothing cut");
}

static void test_since_parse(void)
{
        /* 2026-11-21 12:00:00 UTC; the zone is fixed for the test */
        time_t now = 1795262400;
        int64_t t;

        setenv("TZ", "UTC", 1);
        tzset();
        ok(since_parse("@1700000000", now, &t) == 0 && t == 1700000000, "since: @SECONDS");
        ok(since_parse("10m", now, &t) == 0 && t == now - 600, "since: 10m");
        ok(since_parse("2h", now, &t) == 0 && t == now - 7200, "since: 2h");
        ok(since_parse("3d", now, &t) == 0 && t == now - 3 * 86400, "since: 3d");
        ok(since_parse("1w", now, &t) == 0 && t == now - 604800, "since: 1w");
        ok(since_parse("90s", now, &t) == 0 && t == now - 90, "since: 90s");
        ok(since_parse("10 min", now, &t) == 0 && t == now - 600, "since: '10 min'");
        ok(since_parse("2 hours", now, &t) == 0 && t == now - 7200, "since: '2 hours'");
        ok(since_parse("now", now, &t) == 0 && t == now, "since: now");
        ok(since_parse("today", now, &t) == 0 && t == now - 12 * 3600, "since: today");
        ok(since_parse("yesterday", now, &t) == 0 && t == now - 36 * 3600, "since: yesterday");
        ok(since_parse("14:30", now, &t) == 0 && t == now + 9000, "since: 14:30");
        ok(since_parse("08:15:30", now, &t) == 0 && t == now - 4 * 3600 + 930, "since: 08:15:30");
        ok(since_parse("2026-11-20", now, &t) == 0 && t == now - 36 * 3600, "since: 2026-11-20");
        ok(since_parse("2026-11-21T12:00", now, &t) == 0 && t == now, "since: 2026-11-21T12:00");
        ok(since_parse("2026-11-21 12:00:05", now, &t) == 0 && t == now + 5, "since: '2026-11-21 12:00:05'");
        ok(since_parse("2026-11-21T12:00:00Z", now, &t) == 0 && t == now, "since: ...Z");
        ok(since_parse("2026-11-21T14:00:00+02:00", now, &t) == 0 && t == now, "since: +02:00");
        ok(since_parse("2026-11-21T06:30:00-0530", now, &t) == 0 && t == now, "since: -0530");
        /* what view --json prints for any offset a post may have: up to 24:59:59, with seconds */
        ok(since_parse("2026-11-22T07:00:00+19:00", now, &t) == 0 && t == now, "since: +19:00");
        ok(since_parse("2026-11-20T12:00:00-24:00", now, &t) == 0 && t == now, "since: -24:00");
        ok(since_parse("2026-11-21T17:30:15+05:30:15", now, &t) == 0 && t == now, "since: +05:30:15");
        ok(since_parse("2026-11-22T12:59:59+24:59:59", now, &t) == 0 && t == now, "since: +24:59:59");
        setenv("TZ", "Europe/Paris", 1);
        tzset();
        ok(since_parse("2026-11-21T13:00", now, &t) == 0 && t == now, "since: local time is the zone's (Paris)");
        setenv("TZ", "UTC", 1);
        tzset();

        static const char *bad[] = { "", "x", "10", "10x", "-5m", "m", "@", "@x", "@12x", "25:00", "12:60",
                                     "1:30", "2026-13-01", "2026-02-30", "2026-11-21T", "2026-11-21T12",
                                     "2026-11-21X12:00", "2026-11-21T12:00+25:00", "2026-11-21T12:00Zx",
                                     "2026-11-21T12:00+05:30:60", "2026-11-21T12:00+05:30:1", "2026-11-21T12:00+0530:15",
                                     "2026-11-21T12:00+05:30:", "2026-11-21T12:00+24:60",
                                     "1969-12-31", "tomorrow", "99999999999999999999m" };
        unsigned refused = 0;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                if (since_parse(bad[i], now, &t) == -EINVAL)
                        refused++;
                else
                        diag("'%s' was accepted (%" PRId64 ")", bad[i], t);
        }
        is_int(refused, sizeof bad / sizeof bad[0], "since: every malformed time refused");
}

int main(void)
{
        const char *tmp = getenv("TMPDIR");
        char cmd[PATH_MAX + 16];

        plan_no_plan();
        snprintf(dir, sizeof dir, "%s/test-history-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
                printf("Bail out! mkdtemp: %m\n");
                return 1;
        }
        test_crc();
        test_codec();
        test_checkpoint();
        test_discard();
        test_find_time();
        test_archive();
        test_since_parse();

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                diag("could not remove %s", dir);
        return done_testing();
}
