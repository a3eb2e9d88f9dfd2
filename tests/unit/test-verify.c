/* SPDX-License-Identifier: MIT */
/*
 * test-verify.c — comparing replicas (daemon/verify.c) on real chat logs
 * in a temporary directory: the digests a server gives (bounds, blocks,
 * the work bound, questions it refuses), and the comparison run against
 * three logs answered in turn, as query.c would deliver them: identical
 * logs, one entry changed (first, last, at block edges, in the middle),
 * a shorter log, quarantined entries on one side or on all, a server that
 * answers ERROR, one that cannot be reached, and how many questions a
 * large log costs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dchatd.h"
#include "tap.h"

static char dir[256];

/* --- logs ------------------------------------------------------------------------ */

/*
 * DIR/NAME with n entries like mklog's ("line SEQ"), entry `changed` (0:
 * none) with its text's first letter changed; returns the open log.
 */
static struct chatlog *make_log(const char *name, uint64_t n, uint64_t changed)
{
        static struct dchat_entry e[512];
        static enum chatlog_result res[512];
        char d[PATH_MAX];
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        uint64_t lamport = 0, pid[2] = { 0, 0 };

        snprintf(d, sizeof d, "%s/%s", dir, name);
        if (mkdir(d, 0755) < 0 || chatlog_open(d, &log, &rec) < 0) {
                diag("cannot make the log %s: %m", d);
                return NULL;
        }
        for (uint64_t i = 0; i < n;) {
                unsigned k = 0;
                for (; k < 512 && i < n; k++, i++) {
                        int who = (int) (i % 2);
                        e[k] = (struct dchat_entry) { .lamport = ++lamport, .post_id = ++pid[who], .time = 1700000000 + (int64_t) i };
                        strcpy(e[k].node, who ? "node2" : "node1");
                        strcpy(e[k].author, "lucy");
                        e[k].text_len = (uint16_t) snprintf(e[k].text, sizeof e[k].text, "line %llu", (unsigned long long) (i + 1));
                        if (i + 1 == changed)
                                e[k].text[0] = 'L';
                }
                if (chatlog_append(log, e, k, res) < 0 || res[0] != CHATLOG_STORED) {
                        diag("append to %s failed", d);
                        return NULL;
                }
        }
        return log;
}

/* Flips a byte in the body of entry seq of an open log, and opens it again: that seq is quarantined. */
static struct chatlog *damage(struct chatlog *log, const char *name, uint64_t seq)
{
        struct chatlog_cursor cur;
        struct chatlog_recovery rec;
        char p[PATH_MAX];
        uint8_t b;

        snprintf(p, sizeof p, "%s/%s/chat.log", dir, name);
        if (chatlog_seek(log, seq, &cur) < 0)
                return NULL;
        chatlog_close(log);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        if (fd < 0 || pread(fd, &b, 1, (off_t) cur.off + 20) != 1 || (b ^= 0x40, pwrite(fd, &b, 1, (off_t) cur.off + 20)) != 1)
                diag("cannot damage %s: %m", p);
        if (fd >= 0)
                close(fd);
        snprintf(p, sizeof p, "%s/%s/chat.log.idx", dir, name);
        (void) unlink(p);
        snprintf(p, sizeof p, "%s/%s", dir, name);
        log = NULL;
        if (chatlog_open(p, &log, &rec) < 0 || rec.damage_found < 1)
                diag("reopening %s quarantined nothing", p);
        return log;
}

/* --- a comparison against logs, the questions answered in turn ----------------------------- */

#define QMAX 64

struct run {
        struct chatlog *logs[DCHAT_SERVERS_MAX];
        unsigned n;
        struct { unsigned i; struct dchat_msg q; } queue[QMAX];
        unsigned head, tail;
        unsigned questions;             /* questions put to each server (counted on server 0) */
        int error_from;                 /* this server answers ERROR (-1: none) */
        /* the end */
        bool done;
        struct dchat_msg answer;
        uint8_t bytes[65536];
        struct dchat_entry entries[DCHAT_SERVERS_MAX];
        uint8_t kinds[DCHAT_SERVERS_MAX];
        uint64_t firsts[DCHAT_SERVERS_MAX], lasts[DCHAT_SERVERS_MAX];
        char reasons[DCHAT_SERVERS_MAX][DCHAT_REASON_MAX + 1];
        char text[DCHAT_ERROR_MAX];
};

static int run_ask(void *userdata, unsigned i, const struct dchat_msg *q)
{
        struct run *r = userdata;
        if (r->tail - r->head >= QMAX)
                return -ENOBUFS;
        r->queue[r->tail % QMAX].i = i;
        r->queue[r->tail % QMAX].q = *q;
        r->tail++;
        if (i == 0)
                r->questions++;
        return 0;
}

static void run_done(void *userdata, const struct dchat_msg *a)
{
        struct run *r = userdata;

        r->done = true;
        r->answer = *a;
        if (a->type == MSG_ERROR) {
                snprintf(r->text, sizeof r->text, "%.*s", (int) a->error.text.len, a->error.text.p);
                return;
        }
        /* its parts, decoded here while they are valid */
        struct rbuf rb = { .p = a->verify_reply.p, .len = a->verify_reply.len };
        for (unsigned i = 0; i < a->verify_reply.n; i++) {
                struct dchat_verify_server v = { .entry = &r->entries[i] };
                if (proto_verify_next(&rb, &v) != 1) {
                        diag("VERIFY_REPLY part %u does not decode", i);
                        return;
                }
                r->kinds[i] = v.kind;
                r->firsts[i] = v.first_seq;
                r->lasts[i] = v.last_seq;
                snprintf(r->reasons[i], sizeof r->reasons[i], "%.*s", (int) v.reason.len, v.reason.p);
        }
        /* and it must be a frame dchatctl can read */
        struct wbuf w = {0};
        static struct dchat_entry e;
        struct dchat_msg m;
        uint8_t t;
        int n = proto_encode(&w, a) == 0 ? proto_check_header(w.data, &t) : -1;
        if (n < 0 || proto_decode(t, w.data + DCHAT_FRAME_HDR, (size_t) n, &m, &e, NULL) < 0)
                diag("the VERIFY_REPLY does not encode and decode");
        wbuf_free(&w);
}

static const struct verify_ops run_ops = { .ask = run_ask, .done = run_done };

/* What server i answers to q: what server.c (DIGEST, VIEW) or query.c would give. */
static void answer(struct run *r, struct verify *v, unsigned i, const struct dchat_msg *q)
{
        static uint8_t out[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES];
        static struct dchat_entry e;
        struct chatlog *log = r->logs[i];
        struct dchat_msg a;
        const char *why = "";

        if ((int) i == r->error_from) {
                static const char t[] = "cannot give digests: its chat log cannot be read";
                verify_input(v, i, &(struct dchat_msg) { .type = MSG_ERROR, .tag = q->tag,
                                                         .error = { ERR_STORAGE, { t, sizeof t - 1 }, 0 } });
                return;
        }
        if (q->type == MSG_DIGEST) {
                if (verify_digest(log, q, &a, out, &e, &why) < 0) {
                        verify_input(v, i, &(struct dchat_msg) { .type = MSG_ERROR, .tag = q->tag,
                                                                 .error = { ERR_INVALID, { why, (uint16_t) strlen(why) }, 0 } });
                        return;
                }
                verify_input(v, i, &a);
                return;
        }
        /* VIEW of one seq */
        struct chatlog_cursor cur;
        uint64_t s = q->view.from_seq;
        if (s <= chatlog_last_seq(log) && chatlog_seek(log, s, &cur) == 0) {
                int rr = chatlog_next(log, &cur, &e);
                if (rr == CHATLOG_DAMAGED)
                        verify_input(v, i, &(struct dchat_msg) { .type = MSG_ENTRY_DAMAGED, .tag = q->tag,
                                .damaged = { e.seq, cur.damaged_last, { cur.damaged_why, (uint16_t) strlen(cur.damaged_why) } } });
                else if (rr == 0)
                        verify_input(v, i, &(struct dchat_msg) { .type = MSG_ENTRY, .tag = q->tag, .append = &e });
        }
        verify_input(v, i, &(struct dchat_msg) { .type = MSG_VIEW_END, .tag = q->tag, .view_end = { s + 1, s, 1 } });
}

/* Runs a comparison of the logs to its end (or until fail_at questions, then server fail_who fails). */
static void run_verify(struct run *r, unsigned fail_after, unsigned fail_who)
{
        char names[DCHAT_SERVERS_MAX][DCHAT_NAME_MAX + 1];

        r->head = r->tail = r->questions = 0;
        r->done = false;
        for (unsigned i = 0; i < r->n; i++)
                snprintf(names[i], sizeof names[i], "master%u", i + 1);
        struct verify *v = verify_new(r->n, names, &run_ops, r);
        verify_begin(v);
        unsigned steps = 0;
        while (!r->done && r->head != r->tail && steps++ < 100000) {
                if (fail_after && r->questions >= fail_after) {
                        verify_fail(v, fail_who, "connection refused");
                        break;
                }
                unsigned i = r->queue[r->head % QMAX].i;
                struct dchat_msg q = r->queue[r->head % QMAX].q;
                r->head++;
                answer(r, v, i, &q);
        }
        ok(r->done && verify_done(v), "the comparison ended (%u questions to each server)", r->questions);
        verify_free(v);
}

static void expect_identical(struct run *r, uint64_t first, uint64_t last, const char *what)
{
        ok(r->done && r->answer.type == MSG_VERIFY_REPLY && !r->answer.verify_reply.differ &&
           r->answer.verify_reply.first == first && r->answer.verify_reply.last == last &&
           r->answer.verify_reply.n == r->n, "%s: identical, seqs %llu to %llu", what, (unsigned long long) first,
           (unsigned long long) last);
}

static void expect_differ(struct run *r, uint64_t seq, const char *what)
{
        if (!ok(r->done && r->answer.type == MSG_VERIFY_REPLY && r->answer.verify_reply.differ &&
                r->answer.verify_reply.seq == seq, "%s: they differ at seq %llu", what, (unsigned long long) seq))
                diag("  got type %s differ %u seq %llu (%s)", proto_type_name(r->answer.type),
                     r->answer.verify_reply.differ, (unsigned long long) r->answer.verify_reply.seq, r->text);
}

/* --- tests ------------------------------------------------------------------------------- */

static void test_digest(struct chatlog *a)
{
        static uint8_t out[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES], out2[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES];
        static struct dchat_entry e;
        struct dchat_msg q, ans;
        const char *why = "";

        q = (struct dchat_msg) { .type = MSG_DIGEST, .tag = 7, .digest = { 1, 0, 1, 0 } };
        ok(verify_digest(a, &q, &ans, out, &e, &why) == 0 && ans.type == MSG_DIGEST_REPLY && ans.tag == 7 &&
           ans.digest_reply.n == 0 && ans.digest_reply.first_seq == 1 && ans.digest_reply.last_seq == 5000,
           "digest: no block asked for: the log's bounds (1, 5000), no digest");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 1024, 256 } }.digest;
        int rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == 5, "digest: blocks of 1024 over 5000 entries: 5 (the last one short)");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 256, 256 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == 20, "digest: blocks of 256: 20");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 64, 256 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == 79, "digest: blocks of 64, 256 asked for: 79 (all of them)");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 16, 1000 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == DCHAT_DIGESTS_MAX, "digest: blocks of 16, 1000 asked for: 256 at most");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 4096, 256 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == 2, "digest: blocks of 4096: 2");
        q.digest = (struct dchat_msg) { .digest = { 1, 5000, 16384, 256 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        ok(rr == 0 && ans.digest_reply.n == 1, "digest: a block of 16384 (the work bound): 1, short");
        q.digest = (struct dchat_msg) { .digest = { 4001, 9999, 1024, 256 } }.digest;
        ok(verify_digest(a, &q, &ans, out, &e, &why) == 0 && ans.digest_reply.n == 1 && ans.digest_reply.from_seq == 4001,
           "digest: a range past the end is cut at the end (one block, 4001..5000)");
        q.digest = (struct dchat_msg) { .digest = { 10, 12, 1, 256 } }.digest;
        ok(verify_digest(a, &q, &ans, out, &e, &why) == 0 && ans.digest_reply.n == 3, "digest: blocks of one entry");
        q.digest = (struct dchat_msg) { .digest = { 10, 12, 3, 1 } }.digest;
        ok(verify_digest(a, &q, &ans, out2, &e, &why) == 0 && ans.digest_reply.n == 1 &&
           memcmp(out, out2, DCHAT_DIGEST_BYTES) && memcmp(out + 16, out2, DCHAT_DIGEST_BYTES),
           "digest: a block of three differs from each of its entries'");
        q.digest = (struct dchat_msg) { .digest = { 1, 10, 0, 4 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        is_int(rr, -EINVAL, "digest: a block of 0 refused (%s)", why);
        q.digest = (struct dchat_msg) { .digest = { 1, 100000, DCHAT_DIGEST_WORK + 1, 4 } }.digest;
        is_int(verify_digest(a, &q, &ans, out, &e, &why), -EINVAL, "digest: a block of 16385 refused");
        q.digest = (struct dchat_msg) { .digest = { 0, 10, 1, 4 } }.digest;
        rr = verify_digest(a, &q, &ans, out, &e, &why);
        is_int(rr, -EINVAL, "digest: from seq 0 refused (%s)", why);
}

int main(void)
{
        struct run *r = calloc(1, sizeof *r);
        char cmd[PATH_MAX + 16];

        plan_no_plan();
        snprintf(dir, sizeof dir, "%s/test-verify.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir)) {
                diag("mkdtemp: %m");
                return 1;
        }
        const uint64_t N = 5000;
        struct chatlog *a = make_log("a", N, 0), *b = make_log("b", N, 0), *c = make_log("c", N, 0);
        if (!a || !b || !c)
                return 1;
        test_digest(a);

        r->error_from = -1;
        r->logs[0] = a, r->logs[1] = b, r->logs[2] = c, r->n = 3;
        run_verify(r, 0, 0);
        expect_identical(r, 1, N, "three identical logs of 5000 entries");
        ok(r->questions == 1 + (N + DCHAT_DIGEST_WORK - 1) / DCHAT_DIGEST_WORK,
           "... asked each server its bounds, then one question per 16384 entries (%u)", r->questions);

        /* one entry changed in the third log: at the start, block edges, the middle, the end */
        uint64_t at[] = { 1, 1024, 1025, 2500, N };
        for (unsigned k = 0; k < sizeof at / sizeof at[0]; k++) {
                char name[16];
                snprintf(name, sizeof name, "c%llu", (unsigned long long) at[k]);
                struct chatlog *x = make_log(name, N, at[k]);
                r->logs[2] = x;
                run_verify(r, 0, 0);
                expect_differ(r, at[k], name);
                char want[32], want0[32];
                snprintf(want, sizeof want, "Line %llu", (unsigned long long) at[k]);
                snprintf(want0, sizeof want0, "line %llu", (unsigned long long) at[k]);
                ok(r->kinds[0] == VERIFY_ENTRY && r->kinds[1] == VERIFY_ENTRY && r->kinds[2] == VERIFY_ENTRY &&
                   !strcmp(r->entries[2].text, want) && !strcmp(r->entries[0].text, want0) &&
                   r->entries[2].seq == at[k] && r->entries[0].post_id == r->entries[2].post_id,
                   "%s: both versions given: '%s' against '%s'", name, r->entries[0].text, r->entries[2].text);
                if (k == 3)
                        ok(r->questions <= 6, "%s: found with %u questions to each server (bounds, scan, narrow x2, "
                           "fetch)", name, r->questions);
                chatlog_close(x);
        }

        /* a shorter log: the range all hold is compared */
        struct chatlog *s = make_log("short", 3000, 0);
        r->logs[2] = s;
        run_verify(r, 0, 0);
        expect_identical(r, 1, 3000, "a log of 3000 against two of 5000");
        ok(r->lasts[0] == N && r->lasts[2] == 3000, "... each server's last seq is given (5000, 3000)");
        chatlog_close(s);
        struct chatlog *empty = make_log("empty", 0, 0);
        r->logs[2] = empty;
        run_verify(r, 0, 0);
        expect_identical(r, 1, 0, "an empty log: nothing all hold, nothing compared");
        chatlog_close(empty);

        /* quarantined entries: one side only is a difference; the same seq on all is not */
        r->logs[2] = c;
        c = damage(c, "c", 3333);
        r->logs[2] = c;
        run_verify(r, 0, 0);
        expect_differ(r, 3333, "seq 3333 quarantined on one server");
        ok(r->kinds[2] == VERIFY_DAMAGED && r->kinds[0] == VERIFY_ENTRY && r->reasons[2][0],
           "... given as damaged there (%s), as an entry elsewhere", r->reasons[2]);
        a = damage(a, "a", 3333);
        b = damage(b, "b", 3333);
        r->logs[0] = a, r->logs[1] = b;
        run_verify(r, 0, 0);
        expect_identical(r, 1, N, "seq 3333 quarantined on every server");
        b = damage(b, "b", 10);
        r->logs[1] = b;
        run_verify(r, 0, 0);
        expect_differ(r, 10, "then seq 10 quarantined on one of them");

        /* failures name the server */
        r->error_from = 1;
        run_verify(r, 0, 0);
        ok(r->answer.type == MSG_ERROR && strstr(r->text, "master2") && strstr(r->text, "cannot be read"),
           "a server that answers ERROR: the verify fails naming it (%s)", r->text);
        r->error_from = -1;
        run_verify(r, 2, 2);
        ok(r->answer.type == MSG_ERROR && r->answer.error.code == ERR_UNAVAILABLE && strstr(r->text, "master3") &&
           strstr(r->text, "connection refused"), "a server gone in the middle: the verify fails naming it (%s)", r->text);

        /* a larger log: still a pass over it and a few questions */
        struct chatlog *l1 = make_log("big1", 100000, 0), *l2 = make_log("big2", 100000, 77777);
        r->logs[0] = l1, r->logs[1] = l2, r->n = 2;
        run_verify(r, 0, 0);
        expect_differ(r, 77777, "two logs of 100000 entries, one entry changed");
        ok(r->questions <= 2 + 77777 / DCHAT_DIGEST_WORK + 3, "... %u questions to each server", r->questions);

        chatlog_close(l1);
        chatlog_close(l2);
        chatlog_close(a);
        chatlog_close(b);
        chatlog_close(c);
        free(r);
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cannot remove %s", dir);
        return done_testing();
}
