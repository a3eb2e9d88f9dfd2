/* SPDX-License-Identifier: MIT */
/*
 * verify.c — comparing the chat logs of the servers of a group (dchatctl
 * verify): the digests a server computes over blocks of its log (DIGEST),
 * and the comparison the asking dchatd runs over them.  No event loop, no
 * network: query.c carries the questions and the answers.
 *
 * A block's digest is BLAKE2b-128 of its entries' encodings (the chat
 * log's record bodies: seq, fence, post id, time, author, text), so two
 * blocks have the same digest only if they hold the same entries under the
 * same seqs.  A quarantined seq counts as a fixed marker with its seq: two
 * servers that both hold it damaged agree there (neither can say more), one
 * that holds it damaged and one that holds an entry differ.
 *
 * The comparison: every server's bounds first (a DIGEST that asks for no
 * block), then the range every log holds, [the greatest first seq, the
 * least last seq], scanned in blocks of VERIFY_SCAN_BLOCK seqs,
 * DCHAT_DIGEST_WORK seqs per question; the first block where the servers
 * disagree is narrowed down VERIFY_NARROW sub-blocks at a time to one seq,
 * whose entry every server is then asked for (VIEW).  A server holds one
 * question at a time, and each question costs it a bounded amount of work
 * (DCHAT_DIGEST_WORK entries read), so a verify never stalls a server's
 * loop for long, whatever the size of the log; the asker keeps a few KiB
 * per server.  1,000,000 entries: one pass over each log, then two small
 * questions and one entry.
 */
#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "dchatd.h"

#define VERIFY_SCAN_BLOCK       1024
#define VERIFY_SCAN_BLOCKS      (DCHAT_DIGEST_WORK / VERIFY_SCAN_BLOCK)
#define VERIFY_NARROW           64      /* sub-blocks per narrowing question */

_Static_assert(VERIFY_SCAN_BLOCKS <= VERIFY_NARROW, "a scan answer fits where a narrowing one does");
_Static_assert(VERIFY_NARROW <= DCHAT_DIGESTS_MAX, "a narrowing answer fits in a DIGEST_REPLY");

/* --- a server's side: digests of its log ------------------------------------------------- */

static void hash_entry(crypto_generichash_state *h, struct wbuf *b, const struct dchat_entry *e)
{
        wbuf_reset(b);
        proto_put_entry(b, e);
        crypto_generichash_update(h, b->data, b->len);
}

static void hash_damaged(crypto_generichash_state *h, uint64_t seq)
{
        uint8_t m[16] = { 0xff, 'D', 'A', 'M', 'A', 'G', 'E', 'D' };
        for (unsigned i = 0; i < 8; i++)
                m[8 + i] = (uint8_t) (seq >> (56 - 8 * i));
        crypto_generichash_update(h, m, sizeof m);
}

int verify_digest(struct chatlog *log, const struct dchat_msg *req, struct dchat_msg *ans, uint8_t *out,
                  struct dchat_entry *scratch, const char **why)
{
        uint64_t first = chatlog_first_seq(log), last = chatlog_last_seq(log);
        uint64_t from = req->digest.from_seq, to = req->digest.to_seq < last ? req->digest.to_seq : last;
        uint32_t block = req->digest.block;
        unsigned max = req->digest.max_blocks < DCHAT_DIGESTS_MAX ? req->digest.max_blocks : DCHAT_DIGESTS_MAX;
        struct chatlog_cursor cur;
        struct wbuf b = {0};
        uint64_t damaged_last = 0;      /* a quarantined part reaches up to here */
        unsigned n = 0;
        int r = 0;

        *ans = (struct dchat_msg) { .type = MSG_DIGEST_REPLY, .tag = req->tag,
                                    .digest_reply = { first, last, from, block, 0, out } };
        if (max == 0 || from > to)
                return 0;               /* the bounds alone */
        if (block == 0 || block > DCHAT_DIGEST_WORK) {
                *why = "a block of 1 to 16384 entries";
                return -EINVAL;
        }
        if (from < first) {
                *why = "entries before this server's first one (archived)";
                return -EINVAL;
        }
        /* whole blocks up to DCHAT_DIGEST_WORK entries, at least one */
        uint64_t blocks = (to - from) / block + 1;
        if (blocks > max)
                blocks = max;
        if (blocks > DCHAT_DIGEST_WORK / block)
                blocks = DCHAT_DIGEST_WORK / block;
        r = chatlog_seek(log, from, &cur);
        for (uint64_t k = 0; r >= 0 && k < blocks; k++) {
                crypto_generichash_state h;
                uint64_t a = from + k * block, z = to - a < block ? to : a + block - 1;
                crypto_generichash_init(&h, NULL, 0, DCHAT_DIGEST_BYTES);
                for (uint64_t s = a; s <= z; s++) {
                        if (s <= damaged_last) {
                                hash_damaged(&h, s);
                                continue;
                        }
                        r = chatlog_next(log, &cur, scratch);
                        if (r == CHATLOG_DAMAGED) {
                                damaged_last = cur.damaged_last;
                                hash_damaged(&h, s);
                                continue;
                        }
                        if (r == 0 && scratch->seq != s)
                                r = -EBADMSG;   /* the log's reads and its seqs disagree */
                        if (r < 0)
                                break;
                        hash_entry(&h, &b, scratch);
                }
                if (r < 0 || b.failed) {
                        r = r < 0 ? r : -ENOMEM;
                        break;
                }
                crypto_generichash_final(&h, out + n * DCHAT_DIGEST_BYTES, DCHAT_DIGEST_BYTES);
                n++;
        }
        wbuf_free(&b);
        if (r < 0) {
                *why = r == -EBADMSG ? "a record of its chat log does not check out" : "its chat log cannot be read";
                return r;
        }
        ans->digest_reply.n = (uint16_t) n;
        return 0;
}

/* --- the asker's side: the comparison ------------------------------------------------------ */

enum vphase { V_BOUNDS, V_SCAN, V_NARROW, V_FETCH, V_DONE };

struct vserver {
        char name[DCHAT_NAME_MAX + 1];
        bool waiting;                   /* for the answer to the current question */
        uint64_t first, last;           /* its log's bounds */
        unsigned n;                     /* digests in its last answer */
        uint8_t dig[VERIFY_NARROW * DCHAT_DIGEST_BYTES];
        uint8_t kind;                   /* V_FETCH: enum dchat_verify_kind */
        struct dchat_entry entry;
        char reason[DCHAT_REASON_MAX + 1];
};

struct verify {
        const struct verify_ops *ops;
        void *userdata;
        unsigned n;
        struct vserver s[DCHAT_SERVERS_MAX];
        enum vphase phase;
        unsigned waiting;
        uint32_t tag;                   /* the current question's */
        uint64_t lo, hi;                /* the range compared */
        uint64_t a, b;                  /* the current question's range ... */
        uint32_t block;                 /* ... and block */
        uint64_t diff_seq;
        struct wbuf out;                /* the VERIFY_REPLY's servers */
};

struct verify *verify_new(unsigned n, char names[][DCHAT_NAME_MAX + 1], const struct verify_ops *ops,
                          void *userdata)
{
        struct verify *v;

        if (n == 0 || n > DCHAT_SERVERS_MAX)
                return NULL;
        v = calloc(1, sizeof *v);
        if (!v)
                return NULL;
        v->ops = ops;
        v->userdata = userdata;
        v->n = n;
        for (unsigned i = 0; i < n; i++)
                strlcpy(v->s[i].name, names[i], sizeof v->s[i].name);
        return v;
}

struct verify *verify_free(struct verify *v)
{
        if (v)
                wbuf_free(&v->out);
        free(v);
        return NULL;
}

bool verify_done(const struct verify *v)
{
        return v->phase == V_DONE;
}

bool verify_waiting_for(const struct verify *v, unsigned i)
{
        return i < v->n && v->s[i].waiting;
}

static void finish_error(struct verify *v, enum dchat_err code, const char *fmt, ...) _printf_(3, 4);
static void finish_error(struct verify *v, enum dchat_err code, const char *fmt, ...)
{
        char text[DCHAT_ERROR_MAX];
        va_list ap;

        if (v->phase == V_DONE)
                return;
        v->phase = V_DONE;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        v->ops->done(v->userdata, &(struct dchat_msg) { .type = MSG_ERROR,
                                                        .error = { code, { text, (uint16_t) strlen(text) }, 0 } });
}

static void finish(struct verify *v, bool differ)
{
        wbuf_reset(&v->out);
        for (unsigned i = 0; i < v->n; i++) {
                const struct vserver *s = &v->s[i];
                proto_verify_put(&v->out, s->name, s->first, s->last, differ ? s->kind : VERIFY_NONE, &s->entry,
                                 s->reason);
        }
        if (v->out.failed) {
                finish_error(v, ERR_INTERNAL, "out of memory");
                return;
        }
        v->phase = V_DONE;
        v->ops->done(v->userdata, &(struct dchat_msg) { .type = MSG_VERIFY_REPLY,
                .verify_reply = { differ, v->lo, v->hi, differ ? v->diff_seq : 0, (uint16_t) v->n, v->out.data,
                                  v->out.len } });
}

/* The same question to every server. */
static void ask_all(struct verify *v, const struct dchat_msg *q)
{
        struct dchat_msg m = *q;

        m.tag = ++v->tag ? v->tag : ++v->tag;
        v->waiting = v->n;
        for (unsigned i = 0; i < v->n; i++)
                v->s[i].waiting = true;
        for (unsigned i = 0; i < v->n && v->phase != V_DONE; i++) {
                int r = v->ops->ask(v->userdata, i, &m);
                if (r < 0)
                        finish_error(v, ERR_UNAVAILABLE, "cannot ask the server %s: %s", v->s[i].name, strerror(-r));
        }
}

static void ask_digests(struct verify *v, enum vphase phase, uint64_t a, uint64_t b, uint32_t block, unsigned max)
{
        v->phase = phase;
        v->a = a;
        v->b = b;
        v->block = block;
        ask_all(v, &(struct dchat_msg) { .type = MSG_DIGEST, .digest = { a, b, block, (uint16_t) max } });
}

static void narrow(struct verify *v, uint64_t a, uint64_t b)
{
        uint64_t len = b - a + 1;
        uint32_t block = len <= VERIFY_NARROW ? 1 : (uint32_t) ((len + VERIFY_NARROW - 1) / VERIFY_NARROW);
        ask_digests(v, V_NARROW, a, b, block, VERIFY_NARROW);
}

static void fetch(struct verify *v, uint64_t seq)
{
        v->phase = V_FETCH;
        v->diff_seq = seq;
        for (unsigned i = 0; i < v->n; i++)
                v->s[i].kind = VERIFY_ABSENT;
        ask_all(v, &(struct dchat_msg) { .type = MSG_VIEW, .view = { .from_seq = seq, .upto_seq = seq, .max = 1 } });
}

/* The first block where the servers' digests differ, or -1. */
static long first_difference(const struct verify *v, unsigned m)
{
        for (unsigned k = 0; k < m; k++)
                for (unsigned i = 1; i < v->n; i++)
                        if (memcmp(v->s[i].dig + k * DCHAT_DIGEST_BYTES, v->s[0].dig + k * DCHAT_DIGEST_BYTES,
                                   DCHAT_DIGEST_BYTES))
                                return (long) k;
        return -1;
}

/* Every server answered the current question: the next step. */
static void step(struct verify *v)
{
        unsigned m = UINT_MAX;
        long k;

        switch (v->phase) {
        case V_BOUNDS:
                v->lo = 1;
                v->hi = UINT64_MAX;
                for (unsigned i = 0; i < v->n; i++) {
                        if (v->s[i].first > v->lo)
                                v->lo = v->s[i].first;
                        if (v->s[i].last < v->hi)
                                v->hi = v->s[i].last;
                }
                if (v->hi < v->lo) {
                        finish(v, false);       /* nothing they all hold */
                        return;
                }
                ask_digests(v, V_SCAN, v->lo, v->hi, VERIFY_SCAN_BLOCK, VERIFY_SCAN_BLOCKS);
                return;
        case V_SCAN:
        case V_NARROW:
                for (unsigned i = 0; i < v->n; i++)
                        if (v->s[i].n < m)
                                m = v->s[i].n;
                k = first_difference(v, m);
                if (k >= 0) {
                        uint64_t a = v->a + (uint64_t) k * v->block;
                        uint64_t b = v->b - a < v->block ? v->b : a + v->block - 1;
                        if (v->block == 1)
                                fetch(v, a);
                        else
                                narrow(v, a, b);
                        return;
                }
                if (v->phase == V_NARROW) {
                        /* a block that differed agrees now: a log changed under us */
                        finish_error(v, ERR_INTERNAL, "the servers' logs changed between two questions (a server "
                                     "restarted?); run verify again");
                        return;
                }
                if ((uint64_t) m * v->block > v->hi - v->a) {
                        finish(v, false);
                        return;
                }
                ask_digests(v, V_SCAN, v->a + (uint64_t) m * v->block, v->hi, VERIFY_SCAN_BLOCK, VERIFY_SCAN_BLOCKS);
                return;
        case V_FETCH:
                finish(v, true);
                return;
        case V_DONE:
                return;
        }
}

void verify_begin(struct verify *v)
{
        /* the bounds of every log: a DIGEST that asks for no block */
        ask_digests(v, V_BOUNDS, 1, 0, 1, 0);
}

/* Server i answered (or will not); when all have, the next step. */
static void answered(struct verify *v, unsigned i)
{
        v->s[i].waiting = false;
        if (--v->waiting == 0)
                step(v);
}

static void digest_answer(struct verify *v, unsigned i, const struct dchat_msg *m)
{
        struct vserver *s = &v->s[i];
        const char *bad = NULL;
        uint64_t want = 0;

        s->first = m->digest_reply.first_seq;
        s->last = m->digest_reply.last_seq;
        s->n = m->digest_reply.n;
        if (v->phase != V_BOUNDS) {
                /* whole blocks of the question, from its start; at least one, all of a narrowing */
                want = (v->b - v->a) / v->block + 1;
                if (m->digest_reply.from_seq != v->a || m->digest_reply.block != v->block || s->n > want ||
                    s->n > VERIFY_NARROW)
                        bad = "an answer to another question";
                else if (s->last < v->b)
                        bad = "its log is shorter than it was (was it replaced?)";
                else if (s->n == 0 || (v->phase == V_NARROW && s->n != want))
                        bad = "fewer digests than asked for";
        }
        if (bad) {
                finish_error(v, ERR_INTERNAL, "the server %s answered seqs %llu to %llu with %s", s->name,
                             (unsigned long long) v->a, (unsigned long long) v->b, bad);
                return;
        }
        memcpy(s->dig, m->digest_reply.p, (size_t) s->n * DCHAT_DIGEST_BYTES);
        answered(v, i);
}

void verify_input(struct verify *v, unsigned i, const struct dchat_msg *m)
{
        char text[DCHAT_ERROR_MAX];

        if (i >= v->n || v->phase == V_DONE || !v->s[i].waiting || m->tag != v->tag)
                return;         /* not an answer to the current question */
        struct vserver *s = &v->s[i];
        switch (m->type) {
        case MSG_ERROR:
                /* from outside, for a terminal: quoted */
                log_quote(text, sizeof text, m->error.text.p, m->error.text.len);
                finish_error(v, m->error.code == ERR_STORAGE ? ERR_STORAGE : ERR_UNAVAILABLE, "the server %s: %s",
                             s->name, text);
                return;
        case MSG_DIGEST_REPLY:
                if (v->phase != V_FETCH)
                        digest_answer(v, i, m);
                return;
        case MSG_ENTRY:
                if (v->phase == V_FETCH && m->append->seq == v->diff_seq) {
                        s->entry = *m->append;
                        s->kind = VERIFY_ENTRY;
                }
                return;
        case MSG_ENTRY_DAMAGED:
                if (v->phase == V_FETCH && m->damaged.first_seq <= v->diff_seq && v->diff_seq <= m->damaged.last_seq) {
                        s->kind = VERIFY_DAMAGED;
                        if (dchat_str_copy(s->reason, sizeof s->reason, m->damaged.reason) < 0)
                                strlcpy(s->reason, "damaged", sizeof s->reason);
                }
                return;
        case MSG_VIEW_END:
                if (v->phase == V_FETCH)
                        answered(v, i);
                return;
        default:
                return;
        }
}

void verify_fail(struct verify *v, unsigned i, const char *why)
{
        if (i < v->n)
                finish_error(v, ERR_UNAVAILABLE, "cannot reach the server %s: %s; the logs were not compared",
                             v->s[i].name, why);
}
