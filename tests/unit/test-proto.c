/* SPDX-License-Identifier: MIT */
/*
 * test-proto.c — the wire codec (daemon/proto.c): every message type
 * round-trips through proto_encode, proto_check_header and proto_decode;
 * the header check and the decoder refuse every malformed frame (truncated
 * at every length, trailing bytes, overlong or NUL-carrying strings, values
 * out of range); the frame size limit; the output buffer and the reader;
 * post text validation (strict UTF-8, no control characters); node names;
 * the log line's time format; vector clocks in REQUEST, REPLY and entries;
 * the trace messages (TRACE, TRACE_EVENTS and their events, TRACE_END); the
 * shared notes' NOTE and NOTE_REPLY (every check of the decoder).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dchatd.h"
#include "proto.h"
#include "tap.h"

/* --- helpers --------------------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static struct dchat_str S(const char *s)
{
        return (struct dchat_str) { s, (uint16_t) strlen(s) };
}

static bool str_eq(struct dchat_str a, const char *p, size_t n)
{
        return a.len == n && memcmp(a.p, p, n) == 0;
}

/* A name (or a note, a reason) of n characters: "nnnn...".  Eight at a time, of up to 255. */
static const char *name_of(size_t n, char c)
{
        static char buf[8][256];
        static unsigned k;
        char *p = buf[k++ % 8];

        if (n >= sizeof buf[0])
                abort();        /* a test asking for more is wrong */

        memset(p, c, n);
        p[n] = '\0';
        return p;
}

/*
 * Encodes m into b (appending), checks the header, decodes the payload into
 * out.  Returns 0, or the step that failed as a negative number.
 */
struct frame {
        struct wbuf b;
        size_t start;           /* of this frame in b */
        const uint8_t *payload;
        size_t len;
        uint8_t type;
};

static int encode_frame(struct frame *f, const struct dchat_msg *m)
{
        f->start = f->b.len;
        int r = proto_encode(&f->b, m);
        if (r < 0)
                return r;
        int n = proto_check_header(f->b.data + f->start, &f->type);
        if (n < 0)
                return n;
        if ((size_t) n != f->b.len - f->start - DCHAT_FRAME_HDR)
                return -EPROTO;
        f->payload = f->b.data + f->start + DCHAT_FRAME_HDR;
        f->len = (size_t) n;
        return 0;
}

static int roundtrip(struct frame *f, const struct dchat_msg *m, struct dchat_msg *out, struct dchat_entry *e,
                     struct dchat_status *st)
{
        int r = encode_frame(f, m);
        if (r < 0)
                return r;
        if (f->type != m->type)
                return -EPROTO;
        return proto_decode(f->type, f->payload, f->len, out, e, st);
}

/* Every shorter payload is refused, and so is one with a byte more. */
static void check_truncations(const struct frame *f, const char *what)
{
        static struct dchat_entry e;
        static struct dchat_status st;
        struct dchat_msg m;
        size_t accepted = 0, first = SIZE_MAX;

        for (size_t n = 0; n < f->len; n++) {
                /* a copy of exactly n bytes, so valgrind sees any read past the end */
                uint8_t *p = malloc(n ? n : 1);
                memcpy(p, f->payload, n);
                if (proto_decode(f->type, p, n, &m, &e, &st) != -EBADMSG) {
                        accepted++;
                        if (first == SIZE_MAX)
                                first = n;
                }
                free(p);
        }
        if (!ok(accepted == 0, "%s: each of the %zu truncated payloads (0..%zu bytes) is refused", what, f->len,
                f->len - 1))
                diag("  %zu accepted, the first at %zu bytes", accepted, first);

        uint8_t *p = malloc(f->len + 1);
        memcpy(p, f->payload, f->len);
        p[f->len] = 0;
        is_int(proto_decode(f->type, p, f->len + 1, &m, &e, &st), -EBADMSG, "%s: a trailing byte is refused", what);
        free(p);
}

/* --- round trips ----------------------------------------------------------------- */

static void fill_entry(struct dchat_entry *e)
{
        memset(e, 0, sizeof *e);
        e->seq = UINT64_C(0x0102030405060708);
        e->lamport = UINT64_MAX - 1;
        snprintf(e->node, sizeof e->node, "%s", name_of(DCHAT_NAME_MAX, 'n'));
        e->fence_idx = 0xfedcba98;
        e->post_id = UINT64_C(1) << 63;
        e->time = -1234567890123;       /* before the epoch: the sign must survive */
        e->utc_offset = -18000;
        snprintf(e->author, sizeof e->author, "%s", name_of(DCHAT_NAME_MAX, 'u'));
        /* 4096 bytes of UTF-8: ASCII, é, 日, 😀, cut on a character boundary */
        static const char *const pieces[] = { "a", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80" };
        size_t n = 0;
        for (unsigned k = 0; n < DCHAT_TEXT_MAX; k++) {
                const char *pc = pieces[k % 4];
                size_t l = strlen(pc);
                if (n + l > DCHAT_TEXT_MAX)
                        pc = "x", l = 1;
                memcpy(e->text + n, pc, l);
                n += l;
        }
        e->text_len = (uint16_t) n;
        e->text[n] = '\0';
        /* the largest vector clock: 64 components of 9 bytes each */
        e->vc.n = DCHAT_PEERS_MAX;
        for (unsigned i = 0; i < DCHAT_PEERS_MAX; i++)
                e->vc.c[i] = DCHAT_CLOCK_MAX - i;
}

static bool entry_eq(const struct dchat_entry *a, const struct dchat_entry *b)
{
        return a->seq == b->seq && a->lamport == b->lamport && strcmp(a->node, b->node) == 0 &&
               a->fence_idx == b->fence_idx && a->post_id == b->post_id && a->time == b->time &&
               a->utc_offset == b->utc_offset && strcmp(a->author, b->author) == 0 && a->text_len == b->text_len &&
               memcmp(a->text, b->text, a->text_len) == 0 && b->text[b->text_len] == '\0' && a->vc.n == b->vc.n &&
               memcmp(a->vc.c, b->vc.c, a->vc.n * sizeof a->vc.c[0]) == 0;
}

static void fill_status(struct dchat_status *st, unsigned n_peers)
{
        memset(st, 0, sizeof *st);
        snprintf(st->node, sizeof st->node, "node1");
        st->role = ROLE_PEER;
        st->lamport = 123456789012345;
        snprintf(st->dme_state, sizeof st->dme_state, "wanted");
        st->request_ts = 77;
        st->queued = 3;
        st->last_seq = 0;
        snprintf(st->server, sizeof st->server, "master");
        st->server_connected = true;
        st->uptime = 86400;
        st->n_peers = (uint16_t) n_peers;
        const char *p64 = name_of(DCHAT_NAME_MAX, 'p');
        for (unsigned i = 0; i < n_peers && i < DCHAT_PEERS_MAX; i++) {
                if (n_peers <= 8)
                        snprintf(st->peers[i].name, sizeof st->peers[i].name, "node%u", i + 1);
                else    /* the largest: 64 peers with 64-byte names */
                        snprintf(st->peers[i].name, sizeof st->peers[i].name, "%.*s%02u", DCHAT_NAME_MAX - 2,
                                 p64, i);
                st->peers[i].connected = i % 2 == 0;
        }
        st->counters = (struct dchat_counters) { 1, 2, 3, 4, 5, 6, UINT64_C(1) << 40, 8, 9, UINT64_MAX };
        st->trace_events = 9999;
        st->trace_capacity = UINT32_MAX;
        st->trace_bytes = UINT64_MAX - 1;
        snprintf(st->dme_algorithm, sizeof st->dme_algorithm, "ricart-agrawala");
}

/* A server group's part: n servers, every third unreachable (with why), the rest with figures. */
static void fill_group(struct dchat_status *st, unsigned n, bool largest)
{
        snprintf(st->raft_state, sizeof st->raft_state, "%s", largest ? name_of(15, 'r') : "follower");
        st->term = UINT64_MAX - 3;
        snprintf(st->leader, sizeof st->leader, "%s", largest ? name_of(DCHAT_NAME_MAX, 'l') : "master2");
        st->applied_index = UINT64_C(1) << 50;
        if (largest) {
                /* 127 bytes of text, the largest trouble */
                memset(st->trouble, 't', DCHAT_NOTE_MAX);
                st->trouble[DCHAT_NOTE_MAX] = '\0';
        } else
                snprintf(st->trouble, sizeof st->trouble, "%s", n ? "chat.log: No space left on device" : "");
        st->n_servers = (uint16_t) n;
        for (unsigned i = 0; i < n && i < DCHAT_SERVERS_MAX; i++) {
                struct dchat_server_status *v = &st->servers[i];
                memset(v, 0, sizeof *v);
                if (largest)
                        snprintf(v->name, sizeof v->name, "%.*s%02u", DCHAT_NAME_MAX - 2, name_of(DCHAT_NAME_MAX, 's'), i);
                else
                        snprintf(v->name, sizeof v->name, "master%u", i + 1);
                v->reachable = i % 3 != 2;
                if (v->reachable) {
                        snprintf(v->role, sizeof v->role, "%s", i == 1 ? "leader" : largest ? name_of(15, 'f') : "follower");
                        v->term = 7 + i;
                        v->last_seq = UINT64_C(1000000) - i;
                        v->applied_index = UINT64_MAX - i;
                } else if (largest) {
                        /* 127 bytes of text, multi-byte characters cut on a boundary */
                        size_t l = 0;
                        while (l + 2 <= DCHAT_NOTE_MAX)
                                memcpy(v->note + l, "\xc3\xa9", 2), l += 2;
                        v->note[l++] = 'x';
                        v->note[l] = '\0';
                } else
                        snprintf(v->note, sizeof v->note, "no answer within 1000 ms");
        }
}

static bool status_eq(const struct dchat_status *a, const struct dchat_status *b)
{
        if (strcmp(a->node, b->node) || a->role != b->role || a->lamport != b->lamport ||
            strcmp(a->dme_state, b->dme_state) || a->request_ts != b->request_ts || a->queued != b->queued ||
            a->last_seq != b->last_seq || strcmp(a->server, b->server) ||
            a->server_connected != b->server_connected || a->uptime != b->uptime || a->n_peers != b->n_peers ||
            memcmp(&a->counters, &b->counters, sizeof a->counters) || a->trace_events != b->trace_events ||
            a->trace_capacity != b->trace_capacity || a->trace_bytes != b->trace_bytes ||
            strcmp(a->dme_algorithm, b->dme_algorithm))
                return false;
        for (unsigned i = 0; i < a->n_peers; i++)
                if (strcmp(a->peers[i].name, b->peers[i].name) || a->peers[i].connected != b->peers[i].connected)
                        return false;
        if (strcmp(a->raft_state, b->raft_state) || a->term != b->term || strcmp(a->leader, b->leader) ||
            a->applied_index != b->applied_index || a->n_servers != b->n_servers || strcmp(a->trouble, b->trouble))
                return false;
        for (unsigned i = 0; i < a->n_servers; i++) {
                const struct dchat_server_status *x = &a->servers[i], *y = &b->servers[i];
                if (strcmp(x->name, y->name) || x->reachable != y->reachable || strcmp(x->role, y->role) ||
                    x->term != y->term || x->last_seq != y->last_seq || x->applied_index != y->applied_index ||
                    strcmp(x->note, y->note))
                        return false;
        }
        return true;
}

static void test_roundtrips(void)
{
        static struct dchat_entry ein, eout;
        static struct dchat_status sin, sout;
        struct dchat_msg in, out;
        struct frame f = {0};
        const char *node = name_of(DCHAT_NAME_MAX, 'h');

        /* HELLO */
        in = (struct dchat_msg) { .type = MSG_HELLO, .tag = 0xa1b2c3d4,
                                  .hello = { S(node), ROLE_PEER, UINT64_C(0xdeadbeefcafef00d), UINT64_C(0x0123456789abcdef) } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "HELLO: round trip"))
                ok(out.type == MSG_HELLO && out.tag == 0xa1b2c3d4 && str_eq(out.hello.node, node, DCHAT_NAME_MAX) &&
                   out.hello.role == ROLE_PEER && out.hello.incarnation == UINT64_C(0xdeadbeefcafef00d) &&
                   out.hello.digest == UINT64_C(0x0123456789abcdef),
                   "HELLO: every field (64-byte name, role, incarnation, cluster digest, tag)");
        ok(out.hello.node.p >= (const char *) f.payload && out.hello.node.p < (const char *) f.payload + f.len,
           "HELLO: the decoded name points into the frame");
        ok(f.b.len == DCHAT_FRAME_HDR + f.len && be32(f.b.data) == f.len && f.b.data[4] == DCHAT_PROTO_VERSION &&
           f.b.data[5] == MSG_HELLO && f.b.data[6] == 0 && f.b.data[7] == 0 && be32(f.payload) == 0xa1b2c3d4,
           "HELLO: header = length (BE), version 1, type, flags 0; the payload starts with the tag");
        is_int(f.len, 4 + 2 + DCHAT_NAME_MAX + 1 + 8 + 8, "HELLO: payload size");
        check_truncations(&f, "HELLO");
        wbuf_free(&f.b);

        /* CLUSTER: the members, read back one by one */
        {
                struct wbuf mb = {0};
                wbuf_put_u8(&mb, ROLE_SERVER);
                wbuf_put_str(&mb, "master", 6);
                wbuf_put_str(&mb, "10.0.0.1:8000", 13);
                wbuf_put_u8(&mb, ROLE_PEER);
                wbuf_put_str(&mb, node, DCHAT_NAME_MAX);
                wbuf_put_str(&mb, "[::1]:8001", 10);
                in = (struct dchat_msg) { .type = MSG_CLUSTER, .tag = 3,
                                          .cluster = { UINT64_C(0xfeedface), 2, mb.data, mb.len } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "CLUSTER: round trip")) {
                        struct rbuf r = { .p = out.cluster.p, .len = out.cluster.len };
                        struct dchat_str nm, ad;
                        uint8_t role;
                        ok(out.cluster.digest == UINT64_C(0xfeedface) && out.cluster.n == 2, "CLUSTER: digest and count");
                        ok(proto_cluster_next(&r, &role, &nm, &ad) == 1 && role == ROLE_SERVER &&
                           str_eq(nm, "master", 6) && str_eq(ad, "10.0.0.1:8000", 13) &&
                           proto_cluster_next(&r, &role, &nm, &ad) == 1 && role == ROLE_PEER &&
                           str_eq(nm, node, DCHAT_NAME_MAX) && str_eq(ad, "[::1]:8001", 10) &&
                           proto_cluster_next(&r, &role, &nm, &ad) == 0, "CLUSTER: every member, then the end");
                }
                check_truncations(&f, "CLUSTER");
                wbuf_free(&f.b);
                /* members that could forge a log line, or say less than they count, are refused */
                static const struct { uint8_t role; const char *name, *addr; const char *what; } bad[] = {
                        { ROLE_PEER, "no de", "1.2.3.4:5", "a space in a name" },
                        { ROLE_PEER, "node\n2", "1.2.3.4:5", "a newline in a name" },
                        { ROLE_PEER, "node2", "1.2.3.4:5\nx", "a newline in an address" },
                        { ROLE_PEER, "node2", "", "an empty address" },
                        { 7, "node2", "1.2.3.4:5", "an unknown role" },
                };
                for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                        struct dchat_msg m;
                        wbuf_reset(&mb);
                        wbuf_put_u32(&mb, 1);
                        wbuf_put_u64(&mb, 1);
                        wbuf_put_u16(&mb, 1);
                        wbuf_put_u8(&mb, bad[k].role);
                        wbuf_put_str(&mb, bad[k].name, strlen(bad[k].name));
                        wbuf_put_str(&mb, bad[k].addr, strlen(bad[k].addr));
                        is_int(proto_decode(MSG_CLUSTER, mb.data, mb.len, &m, NULL, NULL), -EBADMSG,
                               "CLUSTER: %s is refused", bad[k].what);
                }
                wbuf_reset(&mb);
                wbuf_put_u32(&mb, 1);
                wbuf_put_u64(&mb, 1);
                wbuf_put_u16(&mb, 2);
                wbuf_put_u8(&mb, ROLE_PEER);
                wbuf_put_str(&mb, "node2", 5);
                wbuf_put_str(&mb, "1.2.3.4:5", 9);
                struct dchat_msg m2;
                is_int(proto_decode(MSG_CLUSTER, mb.data, mb.len, &m2, NULL, NULL), -EBADMSG,
                       "CLUSTER: fewer members than it counts is refused");
                wbuf_free(&mb);
        }

        /* HELLO_ACK */
        in = (struct dchat_msg) { .type = MSG_HELLO_ACK, .tag = 1, .hello_ack = { 41, UINT64_MAX, 77 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "HELLO_ACK: round trip"))
                ok(out.tag == 1 && out.hello_ack.last_post_id == 41 && out.hello_ack.last_seq == UINT64_MAX &&
                   out.hello_ack.last_lamport == 77,
                   "HELLO_ACK: every field");
        check_truncations(&f, "HELLO_ACK");
        wbuf_free(&f.b);

        /* REQUEST */
        struct vclock vc3 = { 3, { 5, 300, 1 } };
        in = (struct dchat_msg) { .type = MSG_REQUEST, .tag = 0, .request = { UINT64_C(0x8000000000000001), &vc3 } };
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "REQUEST: round trip"))
                ok(out.request.ts == UINT64_C(0x8000000000000001) && out.request.vc == &eout.vc &&
                   out.request.vc->n == 3 && out.request.vc->c[1] == 300, "REQUEST: ts (all 64 bits) and vector clock");
        is_int(f.len, 4 + 8 + 1 + 1 + 2 + 1, "REQUEST: payload is tag + ts + clock {5,300,1} in 5 bytes");
        is_int(proto_decode(MSG_REQUEST, f.payload, f.len, &out, NULL, NULL), -EBADMSG,
               "REQUEST: no storage for its clock: refused");
        check_truncations(&f, "REQUEST");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_REQUEST, .tag = 0, .request = { 5, NULL } };
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "REQUEST: without a clock (NULL): round trip"))
                ok(out.request.vc->n == 0, "REQUEST: ... an empty clock");
        wbuf_free(&f.b);

        /* REPLY */
        in = (struct dchat_msg) { .type = MSG_REPLY, .tag = UINT32_MAX, .reply = { 1000, 999, &ein.vc } };
        fill_entry(&ein);
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "REPLY: round trip"))
                ok(out.tag == UINT32_MAX && out.reply.clock == 1000 && out.reply.req_ts == 999 &&
                   out.reply.vc->n == DCHAT_PEERS_MAX && out.reply.vc->c[63] == DCHAT_CLOCK_MAX - 63,
                   "REPLY: clock, answered ts, and the largest vector clock");
        check_truncations(&f, "REPLY");
        wbuf_free(&f.b);

        /* LOCK and GRANT (dme_algorithm = "central") */
        for (uint8_t op = 0; op < _LOCK_OP_MAX; op++) {
                in = (struct dchat_msg) { .type = MSG_LOCK, .tag = 0, .lock = { op, 41, DCHAT_CLOCK_MAX, &vc3 } };
                if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "LOCK op %u: round trip", op))
                        ok(out.lock.op == op && out.lock.ts == 41 && out.lock.clock == DCHAT_CLOCK_MAX &&
                           out.lock.vc == &eout.vc && out.lock.vc->n == 3 && out.lock.vc->c[1] == 300,
                           "LOCK op %u: op, ts, clock, vector clock", op);
                check_truncations(&f, "LOCK");
                is_int(proto_decode(MSG_LOCK, f.payload, f.len, &out, NULL, NULL), -EBADMSG,
                       "LOCK: no storage for its clock: refused");
                f.b.data[f.start + DCHAT_FRAME_HDR + 4] = _LOCK_OP_MAX;     /* after the tag */
                is_int(proto_decode(MSG_LOCK, f.payload, f.len, &out, &eout, NULL), -EBADMSG,
                       "LOCK: an op beyond %d refused", _LOCK_OP_MAX - 1);
                wbuf_free(&f.b);
        }
        in = (struct dchat_msg) { .type = MSG_GRANT, .tag = 0, .grant = { 77, 78, &ein.vc } };
        fill_entry(&ein);
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "GRANT: round trip"))
                ok(out.grant.ts == 77 && out.grant.clock == 78 && out.grant.vc->n == DCHAT_PEERS_MAX &&
                   out.grant.vc->c[63] == DCHAT_CLOCK_MAX - 63, "GRANT: ts, clock, the largest vector clock");
        check_truncations(&f, "GRANT");
        wbuf_free(&f.b);

        /* TOKEN_REQUEST, TOKEN, TOKEN_PROBE (dme_algorithm = "token") */
        in = (struct dchat_msg) { .type = MSG_TOKEN_REQUEST, .token_request = { (7 << 6) | 2, 1000005, 33, &vc3 } };
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "TOKEN_REQUEST: round trip"))
                ok(out.token_request.gen == ((7 << 6) | 2) && out.token_request.sn == 1000005 &&
                   out.token_request.ts == 33 && out.token_request.vc->n == 3, "TOKEN_REQUEST: gen, sn, ts, clock");
        check_truncations(&f, "TOKEN_REQUEST");
        wbuf_free(&f.b);
        {
                static struct dchat_msg tin, tout;
                tin = (struct dchat_msg) { .type = MSG_TOKEN, .token = { .clock = 90, .ts = 80, .gen = 64, .hop = 5,
                                                                         .n = DCHAT_PEERS_MAX, .qn = 3, .vc = &vc3 } };
                for (unsigned i = 0; i < DCHAT_PEERS_MAX; i++)
                        tin.token.ln[i] = i == 63 ? DCHAT_CLOCK_MAX : i * 1000;
                tin.token.q[0] = 63, tin.token.q[1] = 0, tin.token.q[2] = 7;
                if (is_int(roundtrip(&f, &tin, &tout, &eout, NULL), 0, "TOKEN: round trip, 64 peers"))
                        ok(tout.token.clock == 90 && tout.token.ts == 80 && tout.token.gen == 64 && tout.token.hop == 5 &&
                           tout.token.n == 64 && !memcmp(tout.token.ln, tin.token.ln, sizeof tin.token.ln) &&
                           tout.token.qn == 3 && tout.token.q[0] == 63 && tout.token.q[1] == 0 &&
                           tout.token.q[2] == 7 && tout.token.vc->n == 3, "TOKEN: every field");
                check_truncations(&f, "TOKEN");
                wbuf_free(&f.b);
                static const struct { uint8_t n, qn, q0, q1; const char *what; } badq[] = {
                        { 3, 1, 3, 0, "a queued peer beyond n" },
                        { 3, 2, 1, 1, "a peer queued twice" },
                        { 2, 3, 0, 1, "a queue longer than n" },
                };
                tin.token.gen = UINT64_MAX;
                is_int(roundtrip(&f, &tin, &tout, &eout, NULL), -EBADMSG, "TOKEN: a generation above 2^62 refused");
                wbuf_free(&f.b);
                tin.token.gen = 64;
                for (size_t i = 0; i < sizeof badq / sizeof badq[0]; i++) {
                        tin.token.n = badq[i].n;
                        tin.token.qn = badq[i].qn;
                        tin.token.q[0] = badq[i].q0;
                        tin.token.q[1] = badq[i].q1;
                        tin.token.q[2] = 0;
                        is_int(roundtrip(&f, &tin, &tout, &eout, NULL), -EBADMSG, "TOKEN: %s refused", badq[i].what);
                        wbuf_free(&f.b);
                }
        }
        in = (struct dchat_msg) { .type = MSG_TOKEN_PROBE, .probe = { 1, 9, 130, UINT64_C(1) << 63, 1, 1, 12, 13, 14, &vc3 } };
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "TOKEN_PROBE: round trip"))
                ok(out.probe.kind == 1 && out.probe.round == 9 && out.probe.gen == 130 &&
                   out.probe.down == UINT64_C(1) << 63 && out.probe.holds && out.probe.wanted && out.probe.sn == 12 &&
                   out.probe.ts == 13 && out.probe.clock == 14 && out.probe.vc->n == 3, "TOKEN_PROBE: every field");
        check_truncations(&f, "TOKEN_PROBE");
        wbuf_free(&f.b);
        in.probe.kind = 3;
        is_int(roundtrip(&f, &in, &out, &eout, NULL), -EBADMSG, "TOKEN_PROBE: kind 3 refused");
        wbuf_free(&f.b);
        in.probe.kind = 0;
        in.probe.gen = DCHAT_CLOCK_MAX + 1;
        is_int(roundtrip(&f, &in, &out, &eout, NULL), -EBADMSG, "TOKEN_PROBE: a generation above 2^62 refused");
        wbuf_free(&f.b);
        in.probe.gen = 1;
        in.probe.clock = DCHAT_CLOCK_MAX + 1;
        is_int(roundtrip(&f, &in, &out, &eout, NULL), -EBADMSG, "TOKEN_PROBE: a clock above 2^62 refused");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_TOKEN_REQUEST, .token_request = { DCHAT_CLOCK_MAX + 1, 1, 1, &vc3 } };
        is_int(roundtrip(&f, &in, &out, &eout, NULL), -EBADMSG, "TOKEN_REQUEST: a generation above 2^62 refused");
        wbuf_free(&f.b);
        in.token_request.gen = 1;
        in.token_request.sn = UINT64_MAX;
        is_int(roundtrip(&f, &in, &out, &eout, NULL), -EBADMSG, "TOKEN_REQUEST: a request number above 2^62 refused");
        wbuf_free(&f.b);

        /* APPEND and ENTRY: the largest entry */
        fill_entry(&ein);
        for (int t = 0; t < 2; t++) {
                uint8_t type = t ? MSG_ENTRY : MSG_APPEND;
                const char *tn = proto_type_name(type);
                memset(&eout, 0xff, sizeof eout);
                in = (struct dchat_msg) { .type = type, .tag = 7, .append = &ein };
                if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "%s: round trip of the largest entry", tn))
                        ok(out.append == &eout && entry_eq(&ein, &eout), "%s: every field (4096-byte text, 64-byte "
                           "node and author, negative time and utc_offset)", tn);
                is_int(f.len, 4 + 8 + 8 + 2 + 64 + 4 + 8 + 8 + 4 + 2 + 64 + 2 + 4096 + 1 + 64 * 9, "%s: payload size", tn);
                is_int(proto_decode(type, f.payload, f.len, &out, NULL, NULL), -EBADMSG,
                       "%s: no entry storage: refused", tn);
                if (t == 0)
                        check_truncations(&f, tn);
                wbuf_free(&f.b);
        }
        /* a small entry, and the entry body alone (the chat log's record) */
        struct dchat_entry small = { .seq = 1, .lamport = 2, .node = "node2", .fence_idx = 0, .post_id = 1,
                                     .time = 1760713020, .utc_offset = 7200, .author = "lucy", .text_len = 2,
                                     .text = "hi" };
        in = (struct dchat_msg) { .type = MSG_ENTRY, .tag = 8, .append = &small };
        if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "ENTRY: small entry round trip"))
                ok(entry_eq(&small, &eout), "ENTRY: small entry, every field");
        check_truncations(&f, "ENTRY (small)");
        wbuf_free(&f.b);
        {
                struct wbuf b = {0};
                struct rbuf r;
                proto_put_entry(&b, &ein);
                r = (struct rbuf) { .p = b.data, .len = b.len };
                memset(&eout, 0, sizeof eout);
                ok(proto_get_entry(&r, &eout) == 0 && r.off == r.len && !r.bad && entry_eq(&ein, &eout),
                   "proto_put_entry/proto_get_entry: the record body round-trips, all of it read");
                wbuf_free(&b);
        }

        /* APPENDED and POSTED */
        for (int t = 0; t < 2; t++) {
                uint8_t type = t ? MSG_POSTED : MSG_APPENDED;
                const char *tn = proto_type_name(type);
                in = (struct dchat_msg) { .type = type, .tag = 9, .appended = { 5000000000, 17, 3, 1 } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "%s: round trip", tn))
                        ok(out.appended.seq == 5000000000 && out.appended.lamport == 17 &&
                           out.appended.fence_idx == 3 && out.appended.duplicate == 1, "%s: every field", tn);
                check_truncations(&f, tn);
                wbuf_free(&f.b);
        }

        /* VIEW */
        in = (struct dchat_msg) { .type = MSG_VIEW, .tag = 10, .view = { 1, 50, UINT64_MAX, 1000, -1700000000, 77 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "VIEW: round trip"))
                ok(out.view.from_seq == 1 && out.view.last_n == 50 && out.view.upto_seq == UINT64_MAX &&
                   out.view.max == 1000 && out.view.since_time == -1700000000 && out.view.min_seq == 77,
                   "VIEW: every field");
        check_truncations(&f, "VIEW");
        wbuf_free(&f.b);

        /* VIEW_END */
        in = (struct dchat_msg) { .type = MSG_VIEW_END, .tag = 11, .view_end = { 51, 60, 1 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "VIEW_END: round trip"))
                ok(out.view_end.next_seq == 51 && out.view_end.last_seq == 60 && out.view_end.done == 1,
                   "VIEW_END: every field");
        check_truncations(&f, "VIEW_END");
        wbuf_free(&f.b);

        /* ERROR */
        const char *etext = "append refused: fence (3,node1) is not greater than (5,node2) \xe2\x80\x94 retry";
        in = (struct dchat_msg) { .type = MSG_ERROR, .tag = 12, .error = { ERR_FENCED, S(etext), 0x123456789ULL } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "ERROR: round trip"))
                ok(out.error.code == ERR_FENCED && str_eq(out.error.text, etext, strlen(etext)) &&
                   out.error.detail == 0x123456789ULL, "ERROR: code, text and detail");
        check_truncations(&f, "ERROR");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_ERROR, .tag = 12, .error = { ERR_INTERNAL, { NULL, 0 } } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "ERROR: empty text round trip"))
                ok(out.error.code == ERR_INTERNAL && out.error.text.len == 0, "ERROR: empty text");
        wbuf_free(&f.b);

        /* HEARTBEAT */
        in = (struct dchat_msg) { .type = MSG_HEARTBEAT, .tag = 0, .heartbeat = { 1795300000123456ULL, 99 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "HEARTBEAT: round trip"))
                ok(out.heartbeat.incarnation == 1795300000123456ULL && out.heartbeat.clock == 99,
                   "HEARTBEAT: incarnation and clock");
        check_truncations(&f, "HEARTBEAT");
        wbuf_free(&f.b);

        /* LEAVE: a peer stopping cleanly */
        in = (struct dchat_msg) { .type = MSG_LEAVE, .tag = 0, .leave = { 1795300000123457ULL, 4242 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "LEAVE: round trip"))
                ok(out.leave.incarnation == 1795300000123457ULL && out.leave.clock == 4242,
                   "LEAVE: incarnation and clock");
        is_int((int) f.b.len, DCHAT_FRAME_HDR + 4 + 16, "LEAVE: a 20-byte payload (tag, incarnation, clock)");
        check_truncations(&f, "LEAVE");
        wbuf_free(&f.b);

        /* RELOAD, RELOAD_REPLY: systemctl reload through the control socket */
        in = (struct dchat_msg) { .type = MSG_RELOAD, .tag = 5 };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "RELOAD: round trip"))
                ok(out.tag == 5, "RELOAD: its tag");
        is_int((int) f.b.len, DCHAT_FRAME_HDR + 4, "RELOAD: a tag alone");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_RELOAD_REPLY, .tag = 5,
                                  .reload_reply = { S("/etc/dchat.conf reloaded: post_timeout_ms 10000 -> 2500") } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "RELOAD_REPLY: round trip"))
                ok(out.tag == 5 && str_eq(out.reload_reply.text, "/etc/dchat.conf reloaded: post_timeout_ms 10000 -> 2500",
                                          55), "RELOAD_REPLY: tag and text");
        check_truncations(&f, "RELOAD_REPLY");
        wbuf_free(&f.b);
        in.reload_reply.text = S("two\nlines");
        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "RELOAD_REPLY: a text that would print two lines is refused");
        wbuf_free(&f.b);

        /* FOLLOW */
        in = (struct dchat_msg) { .type = MSG_FOLLOW, .tag = 14, .follow = { 0x0102030405060708ULL } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "FOLLOW: round trip"))
                ok(out.tag == 14 && out.follow.from_seq == 0x0102030405060708ULL, "FOLLOW: tag and from_seq");
        is_int((int) f.b.len, DCHAT_FRAME_HDR + 4 + 8, "FOLLOW: a 12-byte payload (tag, from_seq)");
        check_truncations(&f, "FOLLOW");
        wbuf_free(&f.b);

        /* ENTRY_DAMAGED: a quarantined record (or several) where entries would be */
        in = (struct dchat_msg) { .type = MSG_ENTRY_DAMAGED, .tag = 15,
                                  .damaged = { 10, 0x0102030405060708ULL, S("record checksum mismatch") } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "ENTRY_DAMAGED: round trip"))
                ok(out.tag == 15 && out.damaged.first_seq == 10 && out.damaged.last_seq == 0x0102030405060708ULL &&
                   str_eq(out.damaged.reason, "record checksum mismatch", 24),
                   "ENTRY_DAMAGED: tag, first and last seq, reason");
        is_int((int) f.b.len, DCHAT_FRAME_HDR + 4 + 8 + 8 + 2 + 24, "ENTRY_DAMAGED: tag, two seqs, a string");
        check_truncations(&f, "ENTRY_DAMAGED");
        wbuf_free(&f.b);
        {
                static const struct { uint64_t first, last; const char *reason; const char *what; } bad[] = {
                        { 0, 5, "x", "first seq 0" },
                        { 6, 5, "x", "first seq after the last" },
                        { 1, 1, "", "an empty reason" },
                        { 1, 1, "two\nlines", "a newline in the reason" },
                        { 1, 1, "\033[2Jcleared", "a terminal escape in the reason" },
                        { 1, 1, "\xc3\x28", "invalid UTF-8 in the reason" },
                };
                static char longest[DCHAT_REASON_MAX + 2];
                memset(longest, 'r', DCHAT_REASON_MAX + 1);
                for (size_t i = 0; i < sizeof bad / sizeof bad[0] + 1; i++) {
                        bool over = i == sizeof bad / sizeof bad[0];
                        in = (struct dchat_msg) { .type = MSG_ENTRY_DAMAGED, .tag = 1,
                                                  .damaged = { over ? 1 : bad[i].first, over ? 1 : bad[i].last,
                                                               S(over ? longest : bad[i].reason) } };
                        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "ENTRY_DAMAGED: %s is refused",
                               over ? "a reason over DCHAT_REASON_MAX bytes" : bad[i].what);
                        wbuf_free(&f.b);
                }
                longest[DCHAT_REASON_MAX] = '\0';
                in = (struct dchat_msg) { .type = MSG_ENTRY_DAMAGED, .tag = 1, .damaged = { 7, 7, S(longest) } };
                is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "ENTRY_DAMAGED: a reason of DCHAT_REASON_MAX bytes");
                wbuf_free(&f.b);
        }

        /* POST */
        const char *ptext = "Checking timestamp format \xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80";
        in = (struct dchat_msg) { .type = MSG_POST, .tag = 13, .post = { -18000, DCHAT_HOLD_MAX_MS, S(ptext) } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "POST: round trip"))
                ok(out.post.utc_offset == -18000 && out.post.hold_ms == DCHAT_HOLD_MAX_MS &&
                   str_eq(out.post.text, ptext, strlen(ptext)), "POST: negative utc_offset, hold_ms, text");
        check_truncations(&f, "POST");
        wbuf_free(&f.b);
        for (int sign = -1; sign <= 1; sign += 2) {
                in = (struct dchat_msg) { .type = MSG_POST, .post = { sign * DCHAT_UTC_OFFSET_MAX, 0, S("x") } };
                ok(roundtrip(&f, &in, &out, NULL, NULL) == 0 && out.post.utc_offset == sign * DCHAT_UTC_OFFSET_MAX,
                   "POST: utc_offset %d (the limit) is accepted", sign * DCHAT_UTC_OFFSET_MAX);
                wbuf_free(&f.b);
        }

        /* STATUS: the tag alone */
        in = (struct dchat_msg) { .type = MSG_STATUS, .tag = 14 };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "STATUS: round trip"))
                ok(out.type == MSG_STATUS && out.tag == 14 && f.len == 4, "STATUS: a 4-byte payload (the tag)");
        check_truncations(&f, "STATUS");
        wbuf_free(&f.b);

        /* STATUS_REPLY: several peers (and no group, a group of 3), then the largest (a group of 7) */
        unsigned sizes[] = { 0, 3, DCHAT_PEERS_MAX };
        for (unsigned k = 0; k < 3; k++) {
                fill_status(&sin, sizes[k]);
                fill_group(&sin, k == 0 ? 0 : k == 1 ? 3 : DCHAT_SERVERS_MAX, k == 2);
                if (k == 2) {
                        snprintf(sin.node, sizeof sin.node, "%s", name_of(DCHAT_NAME_MAX, 'n'));
                        snprintf(sin.server, sizeof sin.server, "%s", name_of(DCHAT_NAME_MAX, 's'));
                        snprintf(sin.dme_state, sizeof sin.dme_state, "%s", name_of(15, 'd'));
                }
                memset(&sout, 0xff, sizeof sout);
                in = (struct dchat_msg) { .type = MSG_STATUS_REPLY, .tag = 15, .status = &sin };
                if (is_int(roundtrip(&f, &in, &out, NULL, &sout), 0, "STATUS_REPLY: round trip, %u peers", sizes[k]))
                        ok(out.status == &sout && status_eq(&sin, &sout), "STATUS_REPLY, %u peers: every field",
                           sizes[k]);
                if (k == 1)
                        check_truncations(&f, "STATUS_REPLY (3 peers, 3 servers)");
                if (k == 2)
                        ok(f.len < DCHAT_FRAME_MAX, "STATUS_REPLY: the largest (64 peers, 7 servers) fits a frame "
                           "(%zu bytes)", f.len);
                if (k == 2)
                        is_int(proto_decode(MSG_STATUS_REPLY, f.payload, f.len, &out, NULL, NULL), -EBADMSG,
                               "STATUS_REPLY: no status storage: refused");
                wbuf_free(&f.b);
        }

        /* DIGEST and DIGEST_REPLY: none, one, the most digests */
        in = (struct dchat_msg) { .type = MSG_DIGEST, .tag = 16,
                                  .digest = { UINT64_MAX - 1, UINT64_MAX, DCHAT_DIGEST_WORK, UINT16_MAX } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "DIGEST: round trip"))
                ok(out.tag == 16 && out.digest.from_seq == UINT64_MAX - 1 && out.digest.to_seq == UINT64_MAX &&
                   out.digest.block == DCHAT_DIGEST_WORK && out.digest.max_blocks == UINT16_MAX, "DIGEST: every field");
        check_truncations(&f, "DIGEST");
        wbuf_free(&f.b);
        {
                static uint8_t dig[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES];
                for (size_t i = 0; i < sizeof dig; i++)
                        dig[i] = (uint8_t) (i * 7 + 3);
                unsigned ns[] = { 0, 1, DCHAT_DIGESTS_MAX };
                for (unsigned k = 0; k < 3; k++) {
                        in = (struct dchat_msg) { .type = MSG_DIGEST_REPLY, .tag = 17,
                                .digest_reply = { 1, UINT64_MAX, 5, 1024, (uint16_t) ns[k], dig } };
                        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "DIGEST_REPLY: round trip, %u digests", ns[k]))
                                ok(out.digest_reply.first_seq == 1 && out.digest_reply.last_seq == UINT64_MAX &&
                                   out.digest_reply.from_seq == 5 && out.digest_reply.block == 1024 &&
                                   out.digest_reply.n == ns[k] &&
                                   (ns[k] == 0 || memcmp(out.digest_reply.p, dig, ns[k] * DCHAT_DIGEST_BYTES) == 0),
                                   "DIGEST_REPLY, %u digests: every field and byte", ns[k]);
                        if (k == 1)
                                check_truncations(&f, "DIGEST_REPLY (1 digest)");
                        wbuf_free(&f.b);
                }
        }

        /* VERIFY, and VERIFY_REPLY: identical (no versions), and differing (an entry, a damaged one, none) */
        in = (struct dchat_msg) { .type = MSG_VERIFY, .tag = 18 };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "VERIFY: round trip"))
                ok(out.type == MSG_VERIFY && out.tag == 18 && f.len == 4, "VERIFY: a 4-byte payload (the tag)");
        check_truncations(&f, "VERIFY");
        wbuf_free(&f.b);
        {
                struct wbuf parts = {0};
                struct dchat_verify_server v;
                struct rbuf r;
                fill_entry(&ein);
                proto_verify_put(&parts, "master", 1, 100, VERIFY_NONE, NULL, NULL);
                proto_verify_put(&parts, name_of(DCHAT_NAME_MAX, 'm'), 3, 99, VERIFY_NONE, NULL, NULL);
                in = (struct dchat_msg) { .type = MSG_VERIFY_REPLY, .tag = 19,
                                          .verify_reply = { 0, 3, 99, 0, 2, parts.data, parts.len } };
                memset(&eout, 0, sizeof eout);
                if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "VERIFY_REPLY (identical): round trip")) {
                        r = (struct rbuf) { .p = out.verify_reply.p, .len = out.verify_reply.len };
                        v = (struct dchat_verify_server) { .entry = &eout };
                        int a = proto_verify_next(&r, &v);
                        bool first = a == 1 && str_eq(v.name, "master", 6) && v.first_seq == 1 && v.last_seq == 100 &&
                                     v.kind == VERIFY_NONE;
                        int b2 = proto_verify_next(&r, &v);
                        ok(first && b2 == 1 && v.name.len == DCHAT_NAME_MAX && v.last_seq == 99 &&
                           proto_verify_next(&r, &v) == 0 && out.verify_reply.differ == 0 && out.verify_reply.first == 3 &&
                           out.verify_reply.last == 99 && out.verify_reply.n == 2,
                           "VERIFY_REPLY (identical): every field, both servers, then the end");
                }
                check_truncations(&f, "VERIFY_REPLY (identical)");
                wbuf_free(&f.b);

                wbuf_reset(&parts);
                proto_verify_put(&parts, "master", 1, 100, VERIFY_ENTRY, &ein, NULL);
                proto_verify_put(&parts, "master2", 1, 100, VERIFY_DAMAGED, NULL, "body checksum mismatch");
                proto_verify_put(&parts, "master3", 1, 40, VERIFY_ABSENT, NULL, NULL);
                in = (struct dchat_msg) { .type = MSG_VERIFY_REPLY, .tag = 20,
                                          .verify_reply = { 1, 1, 40, 41, 3, parts.data, parts.len } };
                if (is_int(roundtrip(&f, &in, &out, &eout, NULL), 0, "VERIFY_REPLY (differ): round trip")) {
                        r = (struct rbuf) { .p = out.verify_reply.p, .len = out.verify_reply.len };
                        v = (struct dchat_verify_server) { .entry = &eout };
                        memset(&eout, 0, sizeof eout);
                        bool e1 = proto_verify_next(&r, &v) == 1 && v.kind == VERIFY_ENTRY && entry_eq(&ein, &eout);
                        bool e2 = proto_verify_next(&r, &v) == 1 && v.kind == VERIFY_DAMAGED &&
                                  str_eq(v.reason, "body checksum mismatch", 22);
                        bool e3 = proto_verify_next(&r, &v) == 1 && v.kind == VERIFY_ABSENT && v.last_seq == 40;
                        ok(e1 && e2 && e3 && proto_verify_next(&r, &v) == 0 && out.verify_reply.differ == 1 &&
                           out.verify_reply.seq == 41, "VERIFY_REPLY (differ): the entry (every field), the damaged "
                           "one's reason, the absent one, then the end");
                        ok(f.len < DCHAT_FRAME_MAX, "VERIFY_REPLY: with a 4096-byte entry it fits a frame");
                }
                check_truncations(&f, "VERIFY_REPLY (differ)");
                is_int(proto_decode(MSG_VERIFY_REPLY, f.payload, f.len, &out, NULL, NULL), -EBADMSG,
                       "VERIFY_REPLY: no entry storage: refused");
                wbuf_free(&f.b);
                wbuf_free(&parts);
        }

        /* WHO (once, watch), PRESENCE (a peer's own, the largest a WHO answer may hold, none known), POST_WAIT */
        for (uint8_t w = 0; w <= 1; w++) {
                in = (struct dchat_msg) { .type = MSG_WHO, .tag = 21 + w, .who = { w } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "WHO (watch %u): round trip", w))
                        ok(out.tag == 21u + w && out.who.watch == w && f.len == 5, "WHO (watch %u): tag and watch", w);
                check_truncations(&f, w ? "WHO (watch)" : "WHO");
                wbuf_free(&f.b);
        }
        {
                struct wbuf users = {0};
                struct dchat_str name;
                uint8_t kinds;
                struct rbuf r;
                proto_presence_put(&users, "ann", PRESENCE_CHAT);
                proto_presence_put(&users, "bob", PRESENCE_CHAT | PRESENCE_FOLLOW);
                proto_presence_put(&users, "lucy", PRESENCE_FOLLOW);
                in = (struct dchat_msg) { .type = MSG_PRESENCE, .tag = 0,
                        .presence = { S("node2"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, 0, S(""), 0, 3,
                                      users.data, users.len } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "PRESENCE (a peer's own): round trip")) {
                        r = (struct rbuf) { .p = out.presence.p, .len = out.presence.len };
                        bool u1 = proto_presence_next(&r, &name, &kinds) == 1 && str_eq(name, "ann", 3) &&
                                  kinds == PRESENCE_CHAT;
                        bool u2 = proto_presence_next(&r, &name, &kinds) == 1 && str_eq(name, "bob", 3) &&
                                  kinds == (PRESENCE_CHAT | PRESENCE_FOLLOW);
                        bool u3 = proto_presence_next(&r, &name, &kinds) == 1 && str_eq(name, "lucy", 4) &&
                                  kinds == PRESENCE_FOLLOW;
                        ok(u1 && u2 && u3 && proto_presence_next(&r, &name, &kinds) == 0 &&
                           str_eq(out.presence.node, "node2", 5) && out.presence.role == ROLE_PEER &&
                           out.presence.state == NODE_UP && out.presence.flags == PRESENCE_USERS_KNOWN &&
                           out.presence.n == 3 && out.presence.more == 0 && out.presence.note.len == 0,
                           "PRESENCE: every field, the three users in order, then the end");
                }
                check_truncations(&f, "PRESENCE (3 users)");
                wbuf_free(&f.b);

                /* the largest: 64 users of 64-byte names, a 127-byte note, a 64-byte node name */
                wbuf_reset(&users);
                char un[DCHAT_PRESENCE_MAX][DCHAT_NAME_MAX + 1];
                for (unsigned i = 0; i < DCHAT_PRESENCE_MAX; i++) {
                        snprintf(un[i], sizeof un[i], "%02u%s", i, name_of(DCHAT_NAME_MAX - 2, 'u'));
                        proto_presence_put(&users, un[i], PRESENCE_KINDS);
                }
                const char *note = name_of(DCHAT_NOTE_MAX > DCHAT_NAME_MAX ? DCHAT_NAME_MAX : DCHAT_NOTE_MAX, 'w');
                char note127[DCHAT_NOTE_MAX + 1];
                snprintf(note127, sizeof note127, "%s%s", note, name_of(DCHAT_NOTE_MAX - strlen(note), 'v'));
                in = (struct dchat_msg) { .type = MSG_PRESENCE, .tag = 23,
                        .presence = { S(name_of(DCHAT_NAME_MAX, 'n')), ROLE_SERVER, NODE_SUSPECT,
                                      PRESENCE_FLAGS, UINT32_MAX, S(note127), UINT16_MAX, DCHAT_PRESENCE_MAX,
                                      users.data, users.len } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "PRESENCE (the largest): round trip")) {
                        r = (struct rbuf) { .p = out.presence.p, .len = out.presence.len };
                        unsigned got = 0;
                        while (proto_presence_next(&r, &name, &kinds) == 1 && str_eq(name, un[got], strlen(un[got])) &&
                               kinds == PRESENCE_KINDS)
                                got++;
                        ok(got == DCHAT_PRESENCE_MAX && out.presence.since == UINT32_MAX &&
                           out.presence.more == UINT16_MAX && out.presence.flags == PRESENCE_FLAGS &&
                           out.presence.state == NODE_SUSPECT && out.presence.role == ROLE_SERVER &&
                           str_eq(out.presence.note, note127, DCHAT_NOTE_MAX) && out.presence.node.len == DCHAT_NAME_MAX,
                           "PRESENCE (the largest): 64 users, every field");
                        ok(f.len < DCHAT_FRAME_MAX / 8, "PRESENCE (the largest): %zu bytes, far below a frame", f.len);
                }
                check_truncations(&f, "PRESENCE (the largest)");
                wbuf_free(&f.b);

                /* a node whose users are not known, down, with why */
                in = (struct dchat_msg) { .type = MSG_PRESENCE, .tag = 24,
                        .presence = { S("node3"), ROLE_PEER, NODE_DEAD, PRESENCE_END, 12,
                                      S("silent for 3000 ms"), 0, 0, NULL, 0 } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "PRESENCE (none known): round trip"))
                        ok(out.presence.n == 0 && out.presence.len == 0 && out.presence.state == NODE_DEAD &&
                           out.presence.flags == PRESENCE_END && out.presence.since == 12 &&
                           str_eq(out.presence.note, "silent for 3000 ms", 18), "PRESENCE (none known): every field");
                check_truncations(&f, "PRESENCE (none known)");
                wbuf_free(&f.b);
                wbuf_free(&users);
        }
        in = (struct dchat_msg) { .type = MSG_POST_WAIT, .tag = 25,
                                  .post_wait = { 2500, S("the server master is unreachable (connection refused)") } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "POST_WAIT: round trip"))
                ok(out.tag == 25 && out.post_wait.wait_ms == 2500 &&
                   str_eq(out.post_wait.reason, "the server master is unreachable (connection refused)", 53),
                   "POST_WAIT: every field");
        check_truncations(&f, "POST_WAIT");
        wbuf_free(&f.b);

        /* two frames back to back in one buffer */
        {
                struct dchat_msg a = { .type = MSG_REQUEST, .tag = 1, .request = { 5, NULL } };
                struct dchat_msg b = { .type = MSG_REPLY, .tag = 2, .reply = { 6, 5, NULL } };
                struct wbuf w = {0};
                uint8_t t1, t2;
                int r1 = proto_encode(&w, &a), r2 = proto_encode(&w, &b);
                int n1 = proto_check_header(w.data, &t1);
                int n2 = n1 > 0 ? proto_check_header(w.data + DCHAT_FRAME_HDR + n1, &t2) : -1;
                ok(r1 == 0 && r2 == 0 && n1 == 13 && t1 == MSG_REQUEST && n2 == 21 && t2 == MSG_REPLY &&
                   w.len == (size_t) (2 * DCHAT_FRAME_HDR + n1 + n2) &&
                   proto_decode(t2, w.data + 2 * DCHAT_FRAME_HDR + n1, (size_t) n2, &out, &eout, NULL) == 0 &&
                   out.reply.clock == 6, "two frames appended to one buffer are read back in turn");
                wbuf_free(&w);
        }
}

/* --- header ------------------------------------------------------------------------- */

static void hdr(uint8_t h[DCHAT_FRAME_HDR], uint32_t len, uint8_t ver, uint8_t type, uint16_t flags)
{
        h[0] = len >> 24, h[1] = len >> 16, h[2] = len >> 8, h[3] = len;
        h[4] = ver, h[5] = type, h[6] = flags >> 8, h[7] = flags;
}

static void test_header(void)
{
        uint8_t h[DCHAT_FRAME_HDR], type;

        hdr(h, 12, 1, MSG_REQUEST, 0);
        type = 0;
        ok(proto_check_header(h, &type) == 12 && type == MSG_REQUEST, "header: a good one gives length and type");
        bool all = true;
        for (uint8_t t = 1; t < _MSG_MAX; t++) {
                hdr(h, 4, 1, t, 0);
                if (proto_check_header(h, &type) != 4 || type != t)
                        all = false;
        }
        ok(all, "header: every type 1..%d is accepted", _MSG_MAX - 1);
        hdr(h, 4, 1, MSG_STATUS, 0);
        is_int(proto_check_header(h, &type), 4, "header: length 4 (the tag alone) is accepted");
        hdr(h, DCHAT_FRAME_MAX, 1, MSG_ERROR, 0);
        is_int(proto_check_header(h, &type), DCHAT_FRAME_MAX, "header: length DCHAT_FRAME_MAX is accepted");

        hdr(h, 12, 0, MSG_REQUEST, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: version 0 refused");
        hdr(h, 12, 2, MSG_REQUEST, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: version 2 refused");
        hdr(h, 12, 255, MSG_REQUEST, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: version 255 refused");
        hdr(h, 12, 1, 0, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: type 0 refused");
        hdr(h, 12, 1, _MSG_MAX, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: type _MSG_MAX (%d) refused", _MSG_MAX);
        hdr(h, 12, 1, 255, 0);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: type 255 refused");
        hdr(h, 12, 1, MSG_REQUEST, 1);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: flags 0x0001 refused");
        hdr(h, 12, 1, MSG_REQUEST, 0x8000);
        is_int(proto_check_header(h, &type), -EBADMSG, "header: flags 0x8000 refused");
        hdr(h, DCHAT_FRAME_MAX + 1, 1, MSG_ERROR, 0);
        is_int(proto_check_header(h, &type), -EMSGSIZE, "header: length DCHAT_FRAME_MAX + 1 refused (-EMSGSIZE)");
        hdr(h, UINT32_MAX, 1, MSG_ERROR, 0);
        is_int(proto_check_header(h, &type), -EMSGSIZE, "header: length 2^32-1 refused (-EMSGSIZE)");
        hdr(h, 0x80000000, 1, MSG_ERROR, 0);
        is_int(proto_check_header(h, &type), -EMSGSIZE, "header: length 2^31 refused (not a negative int)");
        for (uint32_t n = 0; n < 4; n++) {
                hdr(h, n, 1, MSG_STATUS, 0);
                is_int(proto_check_header(h, &type), -EBADMSG, "header: length %u (< 4, no room for the tag) refused",
                       n);
        }
        hdr(h, DCHAT_FRAME_MAX + 1, 2, MSG_ERROR, 0);
        ok(proto_check_header(h, &type) < 0, "header: bad version and too long: refused");
}

/* --- malformed payloads ---------------------------------------------------------------- */

/* The wire form of an entry, from parts, after a tag. */
static void raw_entry(struct wbuf *b, const char *node, size_t nl, const char *author, size_t al, const char *text,
                      size_t tl, int32_t utc)
{
        wbuf_put_u32(b, 1);                     /* tag */
        wbuf_put_u64(b, 1);                     /* seq */
        wbuf_put_u64(b, 2);                     /* lamport */
        wbuf_put_str(b, node, nl);
        wbuf_put_u32(b, 0);                     /* fence_idx */
        wbuf_put_u64(b, 3);                     /* post_id */
        wbuf_put_u64(b, 1760713020);            /* time */
        wbuf_put_u32(b, (uint32_t) utc);
        wbuf_put_str(b, author, al);
        wbuf_put_str(b, text, tl);
        wbuf_put_u8(b, 0);                      /* an empty vector clock */
}

static int decode_entry(const struct wbuf *b)
{
        static struct dchat_entry e;
        struct dchat_msg m;

        return proto_decode(MSG_ENTRY, b->data, b->len, &m, &e, NULL);
}

/* The group part of a raw status: one server (name, role, note given), after the counters. */
static void raw_group(struct wbuf *b, uint16_t n, struct dchat_str name, struct dchat_str role, struct dchat_str note)
{
        wbuf_put_str(b, "follower", 8);
        wbuf_put_u64(b, 3);
        wbuf_put_str(b, "master", 6);
        wbuf_put_u64(b, 9);
        wbuf_put_u16(b, n);
        for (unsigned i = 0; i < n; i++) {
                wbuf_put_str(b, name.p, name.len);
                wbuf_put_u8(b, 1);
                wbuf_put_str(b, role.p, role.len);
                wbuf_put_u64(b, 3);
                wbuf_put_u64(b, 5);
                wbuf_put_u64(b, 9);
                wbuf_put_str(b, note.p, note.len);
        }
        wbuf_put_u32(b, 10);                    /* trace: events, capacity, bytes */
        wbuf_put_u32(b, 10000);
        wbuf_put_u64(b, 1 << 20);
        wbuf_put_str(b, "", 0);         /* this server's trouble: none */
        wbuf_put_str(b, "central", 7);  /* dme_algorithm */
}

static size_t raw_npeers_off;   /* where raw_status put n_peers */

/* The wire form of a status with the given names, after a tag. */
static void raw_status(struct wbuf *b, struct dchat_str node, struct dchat_str state, struct dchat_str server,
                       unsigned n_peers, struct dchat_str peer)
{
        wbuf_put_u32(b, 1);
        wbuf_put_str(b, node.p, node.len);
        wbuf_put_u8(b, ROLE_PEER);
        wbuf_put_u64(b, 5);
        wbuf_put_str(b, state.p, state.len);
        wbuf_put_u64(b, 0);
        wbuf_put_u32(b, 0);
        wbuf_put_u64(b, 0);
        wbuf_put_str(b, server.p, server.len);
        wbuf_put_u8(b, 1);
        wbuf_put_u32(b, 10);
        raw_npeers_off = b->len;
        wbuf_put_u16(b, (uint16_t) n_peers);
        for (unsigned i = 0; i < n_peers; i++) {
                wbuf_put_str(b, peer.p, peer.len);
                wbuf_put_u8(b, 1);
                wbuf_put_str(b, "alive", 5);
                wbuf_put_u32(b, 7);
        }
        for (unsigned i = 0; i < 10; i++)       /* struct dchat_counters */
                wbuf_put_u64(b, i);
}

/* raw_status with a group of servers */
static void raw_status_group(struct wbuf *b, uint16_t n, struct dchat_str name, struct dchat_str role,
                             struct dchat_str note)
{
        raw_status(b, S("node1"), S("held"), S("master"), 2, S("node2"));
        raw_group(b, n, name, role, note);
}

static int decode_status(const struct wbuf *b)
{
        static struct dchat_status st;
        struct dchat_msg m;

        return proto_decode(MSG_STATUS_REPLY, b->data, b->len, &m, NULL, &st);
}

static void test_malformed(void)
{
        struct wbuf b = {0};
        struct dchat_msg m;
        const char *n64 = name_of(DCHAT_NAME_MAX, 'a'), *n65 = name_of(DCHAT_NAME_MAX + 1, 'b');
        static char text[DCHAT_TEXT_MAX + 2];

        memset(text, 't', sizeof text);

        /* the raw builder itself makes good entries */
        raw_entry(&b, "node1", 5, "lucy", 4, "hello", 5, 0);
        is_int(decode_entry(&b), 0, "entry: the raw builder's good entry decodes");
        wbuf_reset(&b);
        raw_entry(&b, n64, 64, n64, 64, text, DCHAT_TEXT_MAX, 0);
        is_int(decode_entry(&b), 0, "entry: 64-byte names and 4096-byte text decode");
        wbuf_reset(&b);

        /* names too long */
        raw_entry(&b, n65, 65, "lucy", 4, "hello", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a 65-byte node refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1", 5, n65, 65, "hello", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a 65-byte author refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1", 5, "lucy", 4, text, DCHAT_TEXT_MAX + 1, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a 4097-byte text refused");
        wbuf_reset(&b);
        raw_entry(&b, "", 0, "lucy", 4, "hello", 5, 0);
        is_int(decode_entry(&b), 0, "entry: (an empty node is the store's business, not the codec's)");
        wbuf_reset(&b);

        /* NUL inside */
        raw_entry(&b, "no\0de", 5, "lucy", 4, "hello", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a NUL inside the node refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1", 5, "lu\0y", 4, "hello", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a NUL inside the author refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1", 5, "lucy", 4, "hel\0o", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a NUL inside the text refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1\0", 6, "lucy", 4, "hello", 5, 0);
        is_int(decode_entry(&b), -EBADMSG, "entry: a trailing NUL in the node refused");
        wbuf_reset(&b);

        /* utc_offset */
        int32_t offs[] = { DCHAT_UTC_OFFSET_MAX + 1, -DCHAT_UTC_OFFSET_MAX - 1, INT32_MAX, INT32_MIN };
        for (unsigned i = 0; i < 4; i++) {
                raw_entry(&b, "node1", 5, "lucy", 4, "hello", 5, offs[i]);
                is_int(decode_entry(&b), -EBADMSG, "entry: utc_offset %" PRId32 " refused", offs[i]);
                wbuf_reset(&b);
        }
        for (int sign = -1; sign <= 1; sign += 2) {
                raw_entry(&b, "node1", 5, "lucy", 4, "hello", 5, sign * DCHAT_UTC_OFFSET_MAX);
                is_int(decode_entry(&b), 0, "entry: utc_offset %d accepted", sign * DCHAT_UTC_OFFSET_MAX);
                wbuf_reset(&b);
        }

        /* strings longer than the payload: the length says 100, 10 bytes follow */
        wbuf_put_u32(&b, 1);
        wbuf_put_u16(&b, 100);
        wbuf_put(&b, "0123456789", 10);
        is_int(proto_decode(MSG_HELLO, b.data, b.len, &m, NULL, NULL), -EBADMSG,
               "HELLO: a name longer than the payload refused");
        wbuf_reset(&b);
        wbuf_put_u32(&b, 1);
        wbuf_put_u16(&b, ERR_INVALID);
        wbuf_put_u16(&b, 100);
        wbuf_put(&b, "0123456789", 10);
        is_int(proto_decode(MSG_ERROR, b.data, b.len, &m, NULL, NULL), -EBADMSG,
               "ERROR: a text longer than the payload refused");
        wbuf_reset(&b);
        wbuf_put_u32(&b, 1);
        wbuf_put_u32(&b, 0);
        wbuf_put_u32(&b, 0);
        wbuf_put_u16(&b, 0xffff);
        wbuf_put(&b, "hello", 5);
        is_int(proto_decode(MSG_POST, b.data, b.len, &m, NULL, NULL), -EBADMSG,
               "POST: a text length of 65535 with 5 bytes refused");
        wbuf_reset(&b);
        raw_entry(&b, "node1", 5, "lucy", 4, "hello", 5, 0);
        b.data[4 + 8 + 8 + 1] = 200;    /* node length 5 -> 200 */
        is_int(decode_entry(&b), -EBADMSG, "entry: a node length past the end refused");
        b.data[4 + 8 + 8 + 1] = 5;
        b.data[b.len - 1 - 5 - 1] = 6;  /* text length 5 -> 6 (then the clock's count byte is text) */
        b.len--;
        is_int(decode_entry(&b), -EBADMSG, "entry: a text length one past the end refused");
        b.len++;
        b.data[b.len - 1 - 5 - 1] = 4;  /* text length 5 -> 4: the "o" is read as a clock of 111 components */
        is_int(decode_entry(&b), -EBADMSG, "entry: a text length one short (trailing byte) refused");
        wbuf_reset(&b);

        /* POST limits */
        struct { int32_t utc; uint32_t hold; const char *what; } posts[] = {
                { DCHAT_UTC_OFFSET_MAX + 1, 0, "utc_offset 90000 (25 h)" },
                { -DCHAT_UTC_OFFSET_MAX - 1, 0, "utc_offset -90000" },
                { INT32_MIN, 0, "utc_offset INT32_MIN" },
                { 0, DCHAT_HOLD_MAX_MS + 1, "hold_ms 30001" },
                { 0, UINT32_MAX, "hold_ms 2^32-1" },
        };
        for (unsigned i = 0; i < sizeof posts / sizeof posts[0]; i++) {
                wbuf_put_u32(&b, 1);
                wbuf_put_u32(&b, (uint32_t) posts[i].utc);
                wbuf_put_u32(&b, posts[i].hold);
                wbuf_put_str(&b, "hi", 2);
                is_int(proto_decode(MSG_POST, b.data, b.len, &m, NULL, NULL), -EBADMSG, "POST: %s refused",
                       posts[i].what);
                wbuf_reset(&b);
        }
        wbuf_put_u32(&b, 1);
        wbuf_put_u32(&b, 0);
        wbuf_put_u32(&b, DCHAT_HOLD_MAX_MS);
        wbuf_put_str(&b, "hi", 2);
        is_int(proto_decode(MSG_POST, b.data, b.len, &m, NULL, NULL), 0, "POST: hold_ms 30000 accepted");
        wbuf_reset(&b);

        /* STATUS_REPLY */
        raw_status(&b, S("node1"), S("held"), S("master"), 2, S("node2"));
        raw_group(&b, 0, S(""), S(""), S(""));
        is_int(decode_status(&b), 0, "status: the raw builder's good status decodes");
        wbuf_reset(&b);
        raw_status(&b, S("node1"), S("held"), S("master"), 2, S("node2"));
        is_int(decode_status(&b), -EBADMSG, "status: one without the group part (an older daemon's) refused");
        wbuf_reset(&b);
        raw_status(&b, S("node1"), S("held"), S("master"), DCHAT_PEERS_MAX, S("node2"));
        raw_group(&b, 0, S(""), S(""), S(""));
        is_int(decode_status(&b), 0, "status: 64 peers accepted");
        wbuf_reset(&b);
        raw_status(&b, S("node1"), S("held"), S("master"), DCHAT_PEERS_MAX + 1, S("node2"));
        raw_group(&b, 0, S(""), S(""), S(""));
        is_int(decode_status(&b), -EBADMSG, "status: n_peers 65 (with 65 peers present) refused");
        wbuf_reset(&b);
        raw_status(&b, S("node1"), S("held"), S("master"), 0, S("x"));
        raw_group(&b, 0, S(""), S(""), S(""));
        b.data[raw_npeers_off] = 0xff, b.data[raw_npeers_off + 1] = 0xff;
        is_int(decode_status(&b), -EBADMSG, "status: n_peers 65535 refused");
        wbuf_reset(&b);

        /* the group part */
        raw_status_group(&b, DCHAT_SERVERS_MAX, S("master"), S("leader"), S("no answer within 1000 ms"));
        is_int(decode_status(&b), 0, "status: a group of 7 servers accepted");
        wbuf_reset(&b);
        raw_status_group(&b, DCHAT_SERVERS_MAX + 1, S("master"), S("leader"), S(""));
        is_int(decode_status(&b), -EBADMSG, "status: a group of 8 servers refused");
        wbuf_reset(&b);
        struct { struct dchat_str name, role, note; const char *what; } grp[] = {
                { S(""), S("leader"), S(""), "an empty server name" },
                { S("mas ter"), S("leader"), S(""), "a space in a server name" },
                { S(n65), S("leader"), S(""), "a 65-byte server name" },
                { S("master"), S("lead\x1b[31mer"), S(""), "an escape sequence in a role" },
                { S("master"), S(name_of(16, 'r')), S(""), "a 16-byte role" },
                { S("master"), S("leader"), S("refused\nevent=forged"), "a newline in a note" },
                { S("master"), S("leader"), S("\xff\xfe"), "a note that is no UTF-8" },
                { S("master"), S("leader"), S(name_of(DCHAT_NOTE_MAX + 1, 'n')), "a 128-byte note" },
        };
        for (unsigned i = 0; i < sizeof grp / sizeof grp[0]; i++) {
                raw_status_group(&b, 1, grp[i].name, grp[i].role, grp[i].note);
                is_int(decode_status(&b), -EBADMSG, "status: %s refused", grp[i].what);
                wbuf_reset(&b);
        }
        /* this server's trouble, after the group: text like a note's, at most as long */
        struct { struct dchat_str trouble; const char *what; int want; } tr[] = {
                { S("chat.log: No space left on device"), "a trouble", 0 },
                { S(name_of(DCHAT_NOTE_MAX, 't')), "a 127-byte trouble", 0 },
                { S(name_of(DCHAT_NOTE_MAX + 1, 't')), "a 128-byte trouble", -EBADMSG },
                { S("full\nevent=forged"), "a newline in a trouble", -EBADMSG },
                { S("\xff\xfe"), "a trouble that is no UTF-8", -EBADMSG },
        };
        for (unsigned i = 0; i < sizeof tr / sizeof tr[0]; i++) {
                raw_status_group(&b, 1, S("master"), S("leader"), S(""));
                b.len -= 2 + 2 + 7;     /* raw_group's empty trouble and its dme_algorithm */
                wbuf_put_str(&b, tr[i].trouble.p, tr[i].trouble.len);
                wbuf_put_str(&b, "central", 7);
                is_int(decode_status(&b), tr[i].want, "status: %s %s", tr[i].what, tr[i].want ? "refused" : "accepted");
                wbuf_reset(&b);
        }
        raw_status_group(&b, 1, S("master"), S("leader"), S(""));
        b.len -= 2 + 2 + 7;
        is_int(decode_status(&b), -EBADMSG, "status: one without this server's trouble (an older daemon's) refused");
        wbuf_reset(&b);
        raw_status_group(&b, 1, S("master"), S("leader"), S(""));
        b.len -= 2 + 7;
        is_int(decode_status(&b), -EBADMSG, "status: one without its dme_algorithm (an older daemon's) refused");
        wbuf_reset(&b);
        raw_status(&b, S("node1"), S("held"), S("master"), 2, S("node2"));
        wbuf_put_str(&b, "fol\nlower", 9);
        wbuf_put_u64(&b, 3);
        wbuf_put_str(&b, "", 0);
        wbuf_put_u64(&b, 9);
        wbuf_put_u16(&b, 0);
        is_int(decode_status(&b), -EBADMSG, "status: a newline in this node's Raft state refused");
        wbuf_reset(&b);

        /* DIGEST_REPLY: as many digest bytes as it says, at most 256 */
        {
                uint8_t z[DCHAT_DIGEST_BYTES * 2] = {0};
                struct { uint16_t n; size_t bytes; const char *what; int want; } dr[] = {
                        { 2, sizeof z, "2 digests, 32 bytes", 0 },
                        { 2, sizeof z - 1, "2 digests, 31 bytes", -EBADMSG },
                        { 1, sizeof z, "1 digest, 32 bytes", -EBADMSG },
                        { DCHAT_DIGESTS_MAX + 1, 0, "257 digests", -EBADMSG },
                };
                for (unsigned i = 0; i < sizeof dr / sizeof dr[0]; i++) {
                        wbuf_put_u32(&b, 1);
                        wbuf_put_u64(&b, 1);
                        wbuf_put_u64(&b, 10);
                        wbuf_put_u64(&b, 1);
                        wbuf_put_u32(&b, 5);
                        wbuf_put_u16(&b, dr[i].n);
                        wbuf_put(&b, z, dr[i].bytes);
                        is_int(proto_decode(MSG_DIGEST_REPLY, b.data, b.len, &m, NULL, NULL), dr[i].want,
                               "DIGEST_REPLY: %s %s", dr[i].what, dr[i].want ? "refused" : "accepted");
                        wbuf_reset(&b);
                }
        }

        /* VERIFY_REPLY: its servers' parts */
        {
                static struct dchat_entry ve;
                struct { uint8_t differ; uint16_t n; uint8_t kind; struct dchat_str name, reason; const char *what;
                         int want; } vr[] = {
                        { 1, 1, VERIFY_DAMAGED, S("master"), S("bad crc"), "a damaged version", 0 },
                        { 2, 1, VERIFY_NONE, S("master"), S(""), "differ 2", -EBADMSG },
                        { 0, 2, VERIFY_NONE, S("master"), S(""), "n 2 with one server's part", -EBADMSG },
                        { 0, 8, VERIFY_NONE, S("master"), S(""), "n 8", -EBADMSG },
                        { 1, 1, 4, S("master"), S(""), "kind 4", -EBADMSG },
                        { 1, 1, VERIFY_NONE, S(""), S(""), "an empty server name", -EBADMSG },
                        { 1, 1, VERIFY_NONE, S("a\tb"), S(""), "a tab in a server name", -EBADMSG },
                        { 1, 1, VERIFY_DAMAGED, S("master"), S(""), "a damaged version without reason", -EBADMSG },
                        { 1, 1, VERIFY_DAMAGED, S("master"), S("a\x1b]0;x\x07"), "escapes in a reason", -EBADMSG },
                        { 1, 1, VERIFY_DAMAGED, S("master"), S(name_of(DCHAT_REASON_MAX + 1, 'r')),
                          "a 129-byte reason", -EBADMSG },
                        { 1, 1, VERIFY_ENTRY, S("master"), S(""), "an entry version without its entry", -EBADMSG },
                };
                for (unsigned i = 0; i < sizeof vr / sizeof vr[0]; i++) {
                        wbuf_put_u32(&b, 1);
                        wbuf_put_u8(&b, vr[i].differ);
                        wbuf_put_u64(&b, 1);
                        wbuf_put_u64(&b, 9);
                        wbuf_put_u64(&b, 10);
                        wbuf_put_u16(&b, vr[i].n);
                        wbuf_put_str(&b, vr[i].name.p, vr[i].name.len);
                        wbuf_put_u64(&b, 1);
                        wbuf_put_u64(&b, 10);
                        wbuf_put_u8(&b, vr[i].kind);
                        if (vr[i].kind == VERIFY_DAMAGED)
                                wbuf_put_str(&b, vr[i].reason.p, vr[i].reason.len);
                        is_int(proto_decode(MSG_VERIFY_REPLY, b.data, b.len, &m, &ve, NULL), vr[i].want,
                               "VERIFY_REPLY: %s %s", vr[i].what, vr[i].want ? "refused" : "accepted");
                        wbuf_reset(&b);
                }
        }
        {
                static struct dchat_status big;
                struct wbuf w = {0};
                fill_status(&big, DCHAT_PEERS_MAX + 1);
                int r = proto_encode(&w, &(struct dchat_msg) { .type = MSG_STATUS_REPLY, .status = &big });
                uint8_t t;
                int n = r == 0 ? proto_check_header(w.data, &t) : -1;
                ok(n > 0 && decode_status(&(struct wbuf) { .data = w.data + DCHAT_FRAME_HDR, .len = (size_t) n }) ==
                                    -EBADMSG, "status: encoded with n_peers 65, the decoder refuses it");
                wbuf_free(&w);
        }
        struct { struct dchat_str node, state, server, peer; const char *what; } sts[] = {
                { { "no\0de1", 6 }, S("held"), S("master"), S("node2"), "a NUL inside the node" },
                { S("node1"), { "he\0ld", 5 }, S("master"), S("node2"), "a NUL inside the dme state" },
                { S("node1"), S("held"), { "mas\0ter", 7 }, S("node2"), "a NUL inside the server" },
                { S("node1"), S("held"), S("master"), { "node\0002", 6 }, "a NUL inside a peer's name" },
                { S(n65), S("held"), S("master"), S("node2"), "a 65-byte node" },
                { S("node1"), S(name_of(16, 'd')), S("master"), S("node2"), "a 16-byte dme state" },
                { S("node1"), S("held"), S(n65), S("node2"), "a 65-byte server" },
                { S("node1"), S("held"), S("master"), S(n65), "a 65-byte peer name" },
        };
        for (unsigned i = 0; i < sizeof sts / sizeof sts[0]; i++) {
                raw_status(&b, sts[i].node, sts[i].state, sts[i].server, 2, sts[i].peer);
                is_int(decode_status(&b), -EBADMSG, "status: %s refused", sts[i].what);
                wbuf_reset(&b);
        }

        /* WHO: watch 0 or 1 */
        wbuf_put_u32(&b, 1);
        wbuf_put_u8(&b, 2);
        is_int(proto_decode(MSG_WHO, b.data, b.len, &m, NULL, NULL), -EBADMSG, "WHO: watch 2 refused");
        wbuf_reset(&b);

        /* PRESENCE: what a node says of itself is printed as it is, each user once */
        {
                struct pu { const char *name; uint8_t kinds; };
                struct { struct dchat_str node; uint8_t role, state, flags; struct dchat_str note; uint16_t more, n;
                         struct pu u[3]; const char *what; int want; } pr[] = {
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "ann", 1 }, { "bob", 2 } }, "two users in order", 0 },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "bob", 1 }, { "ann", 2 } }, "two users out of order", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "ann", 1 }, { "ann", 2 } }, "a user twice", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "ann", 1 }, { "an", 2 } }, "a prefix after the longer name", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "an", 1 }, { "ann", 2 } }, "a prefix before the longer name", 0 },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 1,
                          { { "", 1 } }, "an empty user name", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 1,
                          { { "a\x1b[2Jb", 1 } }, "escapes in a user name", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 1,
                          { { name_of(DCHAT_NAME_MAX + 1, 'u'), 1 } }, "a 65-byte user name", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 1,
                          { { "ann", 0 } }, "a user with nothing open", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 1,
                          { { "ann", 4 } }, "a user with kind 4", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, 0, S(""), 0, 1,
                          { { "ann", 1 } }, "users while not known", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, 0, S(""), 3, 0,
                          { { NULL, 0 } }, "more users while not known", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), 0, 2,
                          { { "ann", 1 } }, "n 2 with one user", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, PRESENCE_USERS_KNOWN, S(""), DCHAT_PRESENCE_MAX + 1, 0,
                          { { NULL, 0 } }, "no users listed, 65 more", 0 },
                        { S(""), ROLE_PEER, NODE_UP, 0, S(""), 0, 0, { { NULL, 0 } }, "an empty node name", -EBADMSG },
                        { S("no de"), ROLE_PEER, NODE_UP, 0, S(""), 0, 0, { { NULL, 0 } }, "a space in the node name",
                          -EBADMSG },
                        { S(name_of(DCHAT_NAME_MAX + 1, 'n')), ROLE_PEER, NODE_UP, 0, S(""), 0, 0, { { NULL, 0 } },
                          "a 65-byte node name", -EBADMSG },
                        { S("node1"), ROLE_NONE, NODE_UP, 0, S(""), 0, 0, { { NULL, 0 } }, "role 0", -EBADMSG },
                        { S("node1"), 3, NODE_UP, 0, S(""), 0, 0, { { NULL, 0 } }, "role 3", -EBADMSG },
                        { S("node1"), ROLE_PEER, _NODE_STATE_MAX, 0, S(""), 0, 0, { { NULL, 0 } }, "state 5",
                          -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_UP, 0x08, S(""), 0, 0, { { NULL, 0 } }, "flag 0x08", -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_DOWN, 0, S("a\nb"), 0, 0, { { NULL, 0 } }, "a newline in the note",
                          -EBADMSG },
                        { S("node1"), ROLE_PEER, NODE_DOWN, 0, S(name_of(DCHAT_NAME_MAX, 'x')), 0, 0, { { NULL, 0 } },
                          "a 64-byte note", 0 },
                };
                for (unsigned i = 0; i < sizeof pr / sizeof pr[0]; i++) {
                        wbuf_put_u32(&b, 1);
                        wbuf_put_str(&b, pr[i].node.p, pr[i].node.len);
                        wbuf_put_u8(&b, pr[i].role);
                        wbuf_put_u8(&b, pr[i].state);
                        wbuf_put_u8(&b, pr[i].flags);
                        wbuf_put_u32(&b, 5);
                        wbuf_put_str(&b, pr[i].note.p, pr[i].note.len);
                        wbuf_put_u16(&b, pr[i].more);
                        wbuf_put_u16(&b, pr[i].n);
                        for (unsigned k = 0; k < 3 && pr[i].u[k].name; k++)
                                proto_presence_put(&b, pr[i].u[k].name, pr[i].u[k].kinds);
                        is_int(proto_decode(MSG_PRESENCE, b.data, b.len, &m, NULL, NULL), pr[i].want,
                               "PRESENCE: %s %s", pr[i].what, pr[i].want ? "refused" : "accepted");
                        wbuf_reset(&b);
                }
                /* a 128-byte note, and 65 users */
                wbuf_put_u32(&b, 1);
                wbuf_put_str(&b, "node1", 5);
                wbuf_put_u8(&b, ROLE_PEER);
                wbuf_put_u8(&b, NODE_DOWN);
                wbuf_put_u8(&b, 0);
                wbuf_put_u32(&b, 5);
                char n128[DCHAT_NOTE_MAX + 2];
                memset(n128, 'x', DCHAT_NOTE_MAX + 1);
                wbuf_put_str(&b, n128, DCHAT_NOTE_MAX + 1);
                wbuf_put_u16(&b, 0);
                wbuf_put_u16(&b, 0);
                is_int(proto_decode(MSG_PRESENCE, b.data, b.len, &m, NULL, NULL), -EBADMSG,
                       "PRESENCE: a 128-byte note refused");
                wbuf_reset(&b);
                wbuf_put_u32(&b, 1);
                wbuf_put_str(&b, "node1", 5);
                wbuf_put_u8(&b, ROLE_PEER);
                wbuf_put_u8(&b, NODE_UP);
                wbuf_put_u8(&b, PRESENCE_USERS_KNOWN);
                wbuf_put_u32(&b, 5);
                wbuf_put_str(&b, "", 0);
                wbuf_put_u16(&b, 0);
                wbuf_put_u16(&b, DCHAT_PRESENCE_MAX + 1);
                for (unsigned k = 0; k <= DCHAT_PRESENCE_MAX; k++) {
                        char un[8];
                        snprintf(un, sizeof un, "u%03u", k);
                        proto_presence_put(&b, un, PRESENCE_CHAT);
                }
                is_int(proto_decode(MSG_PRESENCE, b.data, b.len, &m, NULL, NULL), -EBADMSG,
                       "PRESENCE: 65 users refused");
                wbuf_reset(&b);
        }

        /* POST_WAIT: a reason, printed as it is */
        {
                struct { struct dchat_str reason; const char *what; int want; } pw[] = {
                        { S("waiting"), "a reason", 0 },
                        { S(""), "no reason", -EBADMSG },
                        { S("a\x1b]0;x\x07"), "escapes in the reason", -EBADMSG },
                        { S("\xc3"), "bad UTF-8 in the reason", -EBADMSG },
                };
                for (unsigned i = 0; i < sizeof pw / sizeof pw[0]; i++) {
                        wbuf_put_u32(&b, 1);
                        wbuf_put_u32(&b, 1000);
                        wbuf_put_str(&b, pw[i].reason.p, pw[i].reason.len);
                        is_int(proto_decode(MSG_POST_WAIT, b.data, b.len, &m, NULL, NULL), pw[i].want,
                               "POST_WAIT: %s %s", pw[i].what, pw[i].want ? "refused" : "accepted");
                        wbuf_reset(&b);
                }
                char r257[DCHAT_ERROR_MAX + 2];
                memset(r257, 'r', DCHAT_ERROR_MAX + 1);
                wbuf_put_u32(&b, 1);
                wbuf_put_u32(&b, 1000);
                wbuf_put_str(&b, r257, DCHAT_ERROR_MAX + 1);
                is_int(proto_decode(MSG_POST_WAIT, b.data, b.len, &m, NULL, NULL), -EBADMSG,
                       "POST_WAIT: a 257-byte reason refused");
                wbuf_reset(&b);
        }

        /* unknown types, and types that need storage */
        wbuf_put_u32(&b, 1);
        bool refused = true;
        for (unsigned t = 0; t < 256; t++)
                if ((t == 0 || t >= _MSG_MAX) && proto_decode((uint8_t) t, b.data, b.len, &m, NULL, NULL) != -EBADMSG)
                        refused = false;
        ok(refused, "decode: types 0 and %d..255 refused", _MSG_MAX);
        struct dchat_msg m0;
        memset(&m0, 0, sizeof m0);
        is_int(proto_decode(MSG_APPEND, b.data, b.len, &m0, NULL, NULL), -EBADMSG, "decode: APPEND without entry storage");
        wbuf_reset(&b);

        /*
         * HELLO and ERROR strings are not checked for length or NUL by the
         * decoder; the receiver copies them with dchat_str_copy(), which does.
         */
        wbuf_put_u32(&b, 1);
        wbuf_put_str(&b, "no\0de", 5);
        wbuf_put_u8(&b, ROLE_PEER);
        wbuf_put_u64(&b, 0);
        wbuf_put_u64(&b, 0);
        if (is_int(proto_decode(MSG_HELLO, b.data, b.len, &m, NULL, NULL), 0,
                   "HELLO: a NUL inside the name passes the decoder ...")) {
                char name[DCHAT_NAME_MAX + 1] = "untouched";
                is_int(dchat_str_copy(name, sizeof name, m.hello.node), -EINVAL, "... and dchat_str_copy refuses it");
                is_str(name, "untouched", "... leaving the destination untouched");
        }
        wbuf_free(&b);
}

/* --- frame size limit ------------------------------------------------------------------ */

static void test_encode_limits(void)
{
        struct wbuf b = {0};
        const size_t room = DCHAT_FRAME_MAX - 4 - 2 - 2 - 8;    /* ERROR: tag, code, text length, detail */
        char *big = malloc(UINT16_MAX);
        struct dchat_msg m, out;
        uint8_t type;

        memset(big, 'x', UINT16_MAX);

        /* a frame already in the buffer must survive a refused one */
        is_int(proto_encode(&b, &(struct dchat_msg) { .type = MSG_REQUEST, .tag = 1, .request = { 42 } }), 0,
               "limit: a small frame first");
        size_t before = b.len;

        m = (struct dchat_msg) { .type = MSG_ERROR, .error = { ERR_INVALID, { big, (uint16_t) room } } };
        is_int(proto_encode(&b, &m), 0, "limit: a frame of exactly DCHAT_FRAME_MAX payload bytes is encoded");
        int n = proto_check_header(b.data + before, &type);
        is_int(n, DCHAT_FRAME_MAX, "limit: ... its header says %d", DCHAT_FRAME_MAX);
        ok(n == DCHAT_FRAME_MAX &&
           proto_decode(type, b.data + before + DCHAT_FRAME_HDR, (size_t) n, &out, NULL, NULL) == 0 &&
           out.error.text.len == room, "limit: ... and decodes");
        b.len = before;

        m.error.text.len = (uint16_t) (room + 1);
        is_int(proto_encode(&b, &m), -EMSGSIZE, "limit: one byte more: -EMSGSIZE");
        ok(b.len == before && !b.failed, "limit: the buffer is as it was, not marked failed");
        m = (struct dchat_msg) { .type = MSG_POST, .post = { 0, 0, { big, UINT16_MAX } } };
        is_int(proto_encode(&b, &m), -EMSGSIZE, "limit: a POST with 65535 bytes of text: -EMSGSIZE");
        ok(b.len == before, "limit: the buffer is as it was");
        static struct dchat_entry ve;
        ok(proto_check_header(b.data, &type) == 13 && type == MSG_REQUEST &&
           proto_decode(type, b.data + DCHAT_FRAME_HDR, 13, &out, &ve, NULL) == 0 && out.request.ts == 42,
           "limit: the frame before is intact");
        is_int(proto_encode(&b, &(struct dchat_msg) { .type = MSG_REQUEST, .request = { 43 } }), 0,
               "limit: the buffer takes frames again");

        before = b.len;
        is_int(proto_encode(&b, &(struct dchat_msg) { .type = 0 }), -EINVAL, "encode: type 0: -EINVAL");
        is_int(proto_encode(&b, &(struct dchat_msg) { .type = _MSG_MAX }), -EINVAL, "encode: type _MSG_MAX: -EINVAL");
        is_int(b.len, before, "encode: nothing written for a bad type");
        wbuf_free(&b);
        free(big);
}

/* --- wbuf and rbuf -------------------------------------------------------------------------- */

static void test_buffers(void)
{
        struct wbuf b = {0};
        const unsigned N = 100000;
        bool good = true;

        wbuf_put_u16(&b, 0x1234);
        wbuf_put_u32(&b, 0x01020304);
        wbuf_put_u64(&b, UINT64_C(0x05060708090a0b0c));
        wbuf_put_u8(&b, 0xfe);
        static const uint8_t want[] = { 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0xfe };
        ok(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0, "wbuf: integers are big endian");
        wbuf_put_str(&b, "abc", 3);
        ok(b.len == sizeof want + 5 && b.data[15] == 0 && b.data[16] == 3 && memcmp(b.data + 17, "abc", 3) == 0,
           "wbuf: a string is a u16 length and the bytes");
        wbuf_put(&b, "zzz", 0);
        is_int(b.len, sizeof want + 5, "wbuf: putting 0 bytes adds nothing");
        wbuf_reset(&b);
        is_int(b.len, 0, "wbuf: reset empties");

        /* growth across many puts */
        size_t caps = 0, last_cap = 0;
        for (unsigned i = 0; i < N; i++) {
                wbuf_put_u32(&b, i * 2654435761u);
                wbuf_put_u8(&b, (uint8_t) i);
                if (b.cap != last_cap)
                        caps++, last_cap = b.cap;
        }
        ok(!b.failed && b.len == 5 * (size_t) N && b.cap >= b.len, "wbuf: %u x 5 bytes: len %zu, cap %zu", N, b.len,
           b.cap);
        ok(caps > 5 && caps < 40, "wbuf: the buffer grew geometrically (%zu sizes)", caps);
        struct rbuf r = { .p = b.data, .len = b.len };
        for (unsigned i = 0; i < N && good; i++)
                good = rbuf_u32(&r) == i * 2654435761u && rbuf_u8(&r) == (uint8_t) i;
        ok(good && !r.bad && r.off == r.len, "wbuf: every value read back in order");

        /* consume */
        wbuf_consume(&b, 5);
        r = (struct rbuf) { .p = b.data, .len = b.len };
        ok(b.len == 5 * (size_t) (N - 1) && rbuf_u32(&r) == 1 * 2654435761u && rbuf_u8(&r) == 1,
           "wbuf_consume(5): the rest moves to the front");
        wbuf_consume(&b, b.len - 5);
        r = (struct rbuf) { .p = b.data, .len = b.len };
        ok(b.len == 5 && rbuf_u32(&r) == (N - 1) * 2654435761u && rbuf_u8(&r) == (uint8_t) (N - 1),
           "wbuf_consume(len - 5): the last record is left");
        wbuf_consume(&b, 0);
        is_int(b.len, 5, "wbuf_consume(0): nothing");
        wbuf_consume(&b, 5);
        is_int(b.len, 0, "wbuf_consume(len): empty");
        wbuf_put_u8(&b, 9);
        wbuf_consume(&b, 1000);
        is_int(b.len, 0, "wbuf_consume(more than len): empty");
        wbuf_put_u16(&b, 0xabcd);
        ok(b.len == 2 && b.data[0] == 0xab && b.data[1] == 0xcd, "wbuf: usable after consuming all");

        /* failure sticks until reset */
        wbuf_reset(&b);
        wbuf_put_str(&b, "x", (size_t) UINT16_MAX + 1);
        ok(b.failed, "wbuf: a string over 65535 bytes fails the buffer");
        wbuf_put_u32(&b, 1);
        is_int(b.len, 0, "wbuf: puts after a failure are no-ops");
        ok(!wbuf_reserve(&b, 1), "wbuf: reserve after a failure is false");
        wbuf_reset(&b);
        wbuf_put_u32(&b, 1);
        ok(!b.failed && b.len == 4, "wbuf: reset clears the failure");
        wbuf_reset(&b);
        ok(!wbuf_reserve(&b, SIZE_MAX / 2 + 1) && b.failed, "wbuf: reserving more than SIZE_MAX/2 fails cleanly");
        wbuf_free(&b);
        ok(b.data == NULL && b.len == 0 && b.cap == 0 && !b.failed, "wbuf_free: back to zero");
        wbuf_free(&b);
        ok(true, "wbuf_free twice is harmless");

        /* rbuf */
        static const uint8_t in[] = { 0x12, 0x34, 0, 3, 'a', 'b', 'c', 0, 5, 'x' };
        r = (struct rbuf) { .p = in, .len = sizeof in };
        ok(rbuf_u16(&r) == 0x1234 && !r.bad, "rbuf: u16 big endian");
        struct dchat_str s = rbuf_str(&r);
        ok(s.len == 3 && s.p == (const char *) in + 4 && !r.bad, "rbuf: a string points into the input");
        s = rbuf_str(&r);
        ok(r.bad && s.len == 0 && s.p != NULL, "rbuf: a string past the end: bad, an empty string returned");
        r.bad = false;
        r.off = 9;
        ok(rbuf_u16(&r) == 0 && r.bad && r.off == 9, "rbuf: a u16 with one byte left: 0, bad, nothing taken");
        r.off = 0;
        ok(rbuf_u8(&r) == 0 && r.bad, "rbuf: once bad, stays bad");
        r = (struct rbuf) { .p = in, .len = 0 };
        ok(rbuf_u64(&r) == 0 && r.bad, "rbuf: a u64 from nothing: 0, bad");
        r = (struct rbuf) { .p = (const uint8_t *) "\x01\x02\x03\x04\x05\x06\x07\x08", .len = 8 };
        ok(rbuf_u64(&r) == UINT64_C(0x0102030405060708) && !r.bad, "rbuf: u64 big endian");

        /* dchat_str_copy */
        char dst[8];
        is_int(dchat_str_copy(dst, sizeof dst, S("1234567")), 0, "dchat_str_copy: 7 bytes into 8");
        is_str(dst, "1234567", "dchat_str_copy: NUL-terminated");
        is_int(dchat_str_copy(dst, sizeof dst, S("12345678")), -ENAMETOOLONG, "dchat_str_copy: 8 bytes into 8 refused");
        is_int(dchat_str_copy(dst, sizeof dst, ((struct dchat_str) { "a\0b", 3 })), -EINVAL,
               "dchat_str_copy: a NUL inside refused");
        is_int(dchat_str_copy(dst, sizeof dst, ((struct dchat_str) { "", 0 })), 0, "dchat_str_copy: empty");
        is_str(dst, "", "dchat_str_copy: empty gives \"\"");
}

/* --- text_validate ------------------------------------------------------------------------- */

static void test_text(void)
{
        static char buf[DCHAT_TEXT_MAX + 8];
        const char *why;
        struct { const char *s; size_t n; const char *what; } good[] = {
                { "Checking timestamp format", 0, "ASCII" },
                { "x", 0, "one character" },
                { " ~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./", 0, "ASCII punctuation and space" },
                { "caf\xc3\xa9", 0, "2-byte form (\xc3\xa9 U+00E9)" },
                { "\xe6\x97\xa5\xe6\x9c\xac", 0, "3-byte form (\xe6\x97\xa5\xe6\x9c\xac)" },
                { "\xf0\x9f\x98\x80", 0, "4-byte form (\xf0\x9f\x98\x80 U+1F600)" },
                { "\xc2\xa0", 0, "U+00A0 (the first after C1)" },
                { "\xed\x9f\xbf", 0, "U+D7FF (just below the surrogates)" },
                { "\xee\x80\x80", 0, "U+E000 (just above the surrogates)" },
                { "\xef\xbf\xbd", 0, "U+FFFD" },
                { "\xf4\x8f\xbf\xbf", 0, "U+10FFFF (the last code point)" },
                { "\xf0\x90\x80\x80", 0, "U+10000 (the first 4-byte one)" },
                { "\xe0\xa0\x80", 0, "U+0800 (the first 3-byte one)" },
                { "\xe2\x80\xa7", 0, "U+2027 (next to U+2028)" },
                { "\xe2\x80\xaa", 0, "U+202A (next to U+2029)" },
        };
        for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++) {
                size_t n = good[i].n ? good[i].n : strlen(good[i].s);
                why = NULL;
                is_int(text_validate(good[i].s, n, &why), 0, "text ok: %s", good[i].what);
        }

        struct { const char *s; size_t n; const char *what; } bad[] = {
                { "", 0, "empty" },
                { "line one\nline two", 0, "\\n" },
                { "a\r", 0, "\\r" },
                { "a\tb", 0, "\\t" },
                { "\x1b[31mred", 0, "ESC" },
                { "a\x7f", 0, "DEL" },
                { "a\0b", 3, "NUL" },
                { "\x01", 0, "U+0001" },
                { "\x1f", 0, "U+001F" },
                { "\xc2\x85", 0, "C1 U+0085 (C2 85)" },
                { "\xc2\x80", 0, "C1 U+0080" },
                { "\xc2\x9f", 0, "C1 U+009F" },
                { "\xe2\x80\xa8", 0, "U+2028 line separator" },
                { "\xe2\x80\xa9", 0, "U+2029 paragraph separator" },
                { "\xc0\xaf", 0, "overlong C0 AF" },
                { "\xc1\xbf", 0, "overlong C1 BF" },
                { "\xc0\x80", 0, "overlong NUL C0 80" },
                { "\xe0\x80\xaf", 0, "overlong E0 80 AF" },
                { "\xe0\x9f\xbf", 0, "overlong E0 9F BF" },
                { "\xf0\x80\x80\xaf", 0, "overlong F0 80 80 AF" },
                { "\xf0\x8f\xbf\xbf", 0, "overlong F0 8F BF BF" },
                { "\xed\xa0\x80", 0, "surrogate ED A0 80 (U+D800)" },
                { "\xed\xbf\xbf", 0, "surrogate ED BF BF (U+DFFF)" },
                { "\xed\xa0\xbd\xed\xb8\x80", 0, "a CESU-8 surrogate pair" },
                { "\xf4\x90\x80\x80", 0, "F4 90 80 80 (U+110000)" },
                { "\xf5\x80\x80\x80", 0, "F5" },
                { "\xf7\xbf\xbf\xbf", 0, "F7" },
                { "\xf8\x88\x80\x80\x80", 0, "F8 (5-byte form)" },
                { "\xfc\x84\x80\x80\x80\x80", 0, "FC (6-byte form)" },
                { "\xfe", 0, "FE" },
                { "\xff", 0, "FF" },
                { "ok\xc3", 0, "truncated 2-byte at the end" },
                { "ok\xe6\x97", 0, "truncated 3-byte at the end" },
                { "ok\xf0\x9f\x98", 0, "truncated 4-byte at the end" },
                { "ok\xf0", 0, "a lone 4-byte lead at the end" },
                { "\xc3x", 0, "2-byte lead followed by ASCII" },
                { "\xe6\x97x", 0, "3-byte lead, one continuation, then ASCII" },
                { "\x80", 0, "a lone continuation byte 80" },
                { "a\xbf" "b", 0, "a lone continuation byte BF in the middle" },
                { "\xc3\xa9\xa9", 0, "an extra continuation byte after \xc3\xa9" },
        };
        for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                size_t n = bad[i].n ? bad[i].n : strlen(bad[i].s);
                why = NULL;
                int r = text_validate(bad[i].s, n, &why);
                ok(r == -EINVAL && why && *why, "text refused: %s (%s)", bad[i].what, why ? why : "no reason");
        }
        /* a post's text: not only white space or invisible characters (post_text_validate) */
        struct { const char *s; int want; const char *what; } post[] = {
                { "   ", -EINVAL, "only spaces" },
                { " ", -EINVAL, "one space" },
                { "\xc2\xa0\xe3\x80\x80\xe2\x80\x83", -EINVAL, "a no-break, an ideographic and an em space" },
                { "\xe2\x80\x8b\xe2\x80\x8d\xef\xbb\xbf", -EINVAL, "zero-width space, joiner, BOM" },
                { "\xe2\x81\xa0 \xe1\x9a\x80", -EINVAL, "word joiner, ogham space" },
                { " a ", 0, "a letter between spaces" },
                { "\xe2\x80\x8b.", 0, "a zero-width space and a dot" },
                { "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb", 0, "a ZWJ emoji sequence" },
                { "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d", 0, "Hebrew (right to left)" },
                { "", -EINVAL, "empty" },
                { "a\tb", -EINVAL, "a tab (text_validate's)" },
        };
        for (unsigned i = 0; i < sizeof post / sizeof post[0]; i++) {
                why = NULL;
                int r = post_text_validate(post[i].s, strlen(post[i].s), &why);
                ok(r == post[i].want && (r == 0 || (why && *why)), "post text %s: %s%s%s", post[i].want ? "refused" : "ok",
                   post[i].what, why ? ": " : "", why ? why : "");
        }
        why = NULL;
        post_text_validate("  ", 2, &why);
        ok(why && strstr(why, "empty"), "post text: only spaces is refused like an empty one (%s)", why ? why : "");

        /* no NUL scan beyond n: a truncated view of a good text is judged on its n bytes */
        is_int(text_validate("ab\ncd", 2, NULL), 0, "text: only n bytes are looked at (why may be NULL)");
        is_int(text_validate("\xc3\xa9", 1, NULL), -EINVAL, "text: a character cut by n is refused");

        /* size */
        memset(buf, 'a', sizeof buf);
        is_int(text_validate(buf, DCHAT_TEXT_MAX, &why), 0, "text: 4096 bytes accepted");
        why = NULL;
        is_int(text_validate(buf, DCHAT_TEXT_MAX + 1, &why), -E2BIG, "text: 4097 bytes: -E2BIG");
        ok(why && strstr(why, "4096"), "text: -E2BIG says why (%s)", why ? why : "NULL");
        /* 4096 bytes of 4-byte characters, then one more character */
        for (size_t i = 0; i < DCHAT_TEXT_MAX; i += 4)
                memcpy(buf + i, "\xf0\x9f\x98\x80", 4);
        is_int(text_validate(buf, DCHAT_TEXT_MAX, NULL), 0, "text: 1024 emoji (4096 bytes) accepted");
        memcpy(buf + DCHAT_TEXT_MAX, "\xc3\xa9", 2);
        is_int(text_validate(buf, DCHAT_TEXT_MAX + 2, NULL), -E2BIG, "text: 4098 bytes of UTF-8: -E2BIG");
        buf[DCHAT_TEXT_MAX - 1] = '\n';
        is_int(text_validate(buf, DCHAT_TEXT_MAX, NULL), -EINVAL, "text: a bad last byte of 4096 is found");
}

/* --- node names --------------------------------------------------------------------------- */

/* s with control and non-ASCII bytes as \xNN, for test names */
static const char *printable(const char *s)
{
        static char buf[4 * (DCHAT_NAME_MAX + 8) + 1];
        size_t o = 0;

        for (; *s && o < sizeof buf - 5; s++)
                o += (size_t) snprintf(buf + o, sizeof buf - o, *s >= 0x20 && *s < 0x7f ? "%c" : "\\x%02X",
                                       (unsigned char) *s);
        buf[o] = '\0';
        return buf;
}

static void test_names(void)
{
        const char *good[] = { "node1", "a", "A", "9", "master", "node-1", "node_1", "node.example.org", "x-",
                               "_x", ".x", "..", "N0DE", name_of(DCHAT_NAME_MAX, 'z') };
        const char *bad[] = { "", "-node", "-", "no de", "node/1", "node:1", "n\xc3\xa9", "node\n", "node\t",
                              "a,b", "a@b", "a+b", "~x", name_of(DCHAT_NAME_MAX + 1, 'z'),
                              name_of(DCHAT_NAME_MAX + 7, 'y') };

        for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++)
                ok(node_name_valid(good[i]), "name ok: '%s'", good[i]);
        for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++)
                ok(!node_name_valid(bad[i]), "name refused: '%s'", printable(bad[i]));
}

/* --- time format and names ---------------------------------------------------------------- */

static void test_time(void)
{
        struct { int64_t t; int32_t off; const char *want; } cases[] = {
                { 1760713020, 0, "17 Oct 02:57PM" },            /* 2025-10-17 14:57:00 UTC */
                { 1760713020, 3600, "17 Oct 03:57PM" },
                { 1760713020, -18000, "17 Oct 09:57AM" },
                { 1760713020, 19800, "17 Oct 08:27PM" },        /* +05:30 */
                { 1760713020, 36000, "18 Oct 12:57AM" },        /* +10: past midnight, the next day */
                { 1760659200 + 300, 0, "17 Oct 12:05AM" },      /* 00:05: midnight hour */
                { 1760659200 + 43200 + 300, 0, "17 Oct 12:05PM" },      /* 12:05: noon hour */
                { 1760659200 + 43200 - 60, 0, "17 Oct 11:59AM" },
                { 1760659200 + 86400 - 60, 0, "17 Oct 11:59PM" },
                { 1760659200 + 300, -18000, "16 Oct 07:05PM" }, /* the day before */
                { 1735691400, -3600, "31 Dec 11:30PM" },        /* 2025-01-01 00:30 UTC: the year before */
                { 1709164800, 0, "29 Feb 12:00AM" },            /* 2024-02-29 */
                { 0, 0, "01 Jan 12:00AM" },
                { 1760713020, 18 * 3600, "18 Oct 08:57AM" },   /* the limit of older versions */
                { 1760713020, -18 * 3600, "16 Oct 08:57PM" },
                { 1760713020, 19 * 3600, "18 Oct 09:57AM" },   /* TZ=ABC-19 */
                { 1760713020, -24 * 3600, "16 Oct 02:57PM" },  /* TZ=ABC+24 */
                { 1760713020, 19815, "17 Oct 08:27PM" },        /* TZ=ABC-5:30:15: 20:27:15 */
                { 1760713020, DCHAT_UTC_OFFSET_MAX, "18 Oct 03:56PM" },        /* +24:59:59 */
                { 1760713020, -DCHAT_UTC_OFFSET_MAX, "16 Oct 01:57PM" },
        };
        char buf[32];

        for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
                struct dchat_entry e = { .time = cases[i].t, .utc_offset = cases[i].off };
                memset(buf, 'Z', sizeof buf);
                entry_format_time(&e, buf, sizeof buf);
                is_str(buf, cases[i].want, "time %" PRId64 " offset %+d: %s", cases[i].t, cases[i].off, cases[i].want);
        }
        struct dchat_entry e = { .time = 1760713020 };
        entry_format_time(&e, buf, 5);
        is_str(buf, "?", "time: a buffer too small gives \"?\"");
        /* a forged entry (found by tests/fuzz/fuzz-frame): time + offset overflows */
        e = (struct dchat_entry) { .time = INT64_MAX - 28, .utc_offset = 19800 };
        entry_format_time(&e, buf, sizeof buf);
        is_str(buf, "?", "time: INT64_MAX - 28 + 19800 (overflow) gives \"?\"");
        e = (struct dchat_entry) { .time = INT64_MIN, .utc_offset = -1 };
        entry_format_time(&e, buf, sizeof buf);
        is_str(buf, "?", "time: INT64_MIN - 1 (overflow) gives \"?\"");
        struct tm tm;
        e = (struct dchat_entry) { .time = 86400, .utc_offset = -3600 };
        ok(entry_local_tm(&e, &tm) && tm.tm_year == 70 && tm.tm_hour == 23, "entry_local_tm: 1970-01-01 23:00 at -01:00");

        /* ISO 8601 (view --json "time"): the local time and the offset name the instant e->time */
        struct { int64_t t; int32_t off; const char *want; } iso[] = {
                { 1760713020, 0, "2025-10-17T14:57:00+00:00" },
                { 1760713020, 19800, "2025-10-17T20:27:00+05:30" },
                { 1760713020, -18000, "2025-10-17T09:57:00-05:00" },
                { 1760713020, 19815, "2025-10-17T20:27:15+05:30:15" },         /* seconds: kept */
                { 1760713020, -19815, "2025-10-17T09:26:45-05:30:15" },
                { 1760713020, 19 * 3600, "2025-10-18T09:57:00+19:00" },
                { 1760713020, -24 * 3600, "2025-10-16T14:57:00-24:00" },
                { 1760713020, DCHAT_UTC_OFFSET_MAX, "2025-10-18T15:56:59+24:59:59" },
                { 1760713020, -DCHAT_UTC_OFFSET_MAX, "2025-10-16T13:57:01-24:59:59" },
                { 0, -1, "1969-12-31T23:59:59-00:00:01" },
        };
        for (unsigned i = 0; i < sizeof iso / sizeof iso[0]; i++) {
                char b48[48];
                e = (struct dchat_entry) { .time = iso[i].t, .utc_offset = iso[i].off };
                entry_format_iso(&e, b48, sizeof b48);
                is_str(b48, iso[i].want, "iso: time %" PRId64 " offset %+d: %s", iso[i].t, iso[i].off, iso[i].want);
        }
        e = (struct dchat_entry) { .time = 1760713020, .utc_offset = 19815 };
        entry_format_iso(&e, buf, 26);
        is_str(buf, "?", "iso: a buffer too short for the whole text gives \"?\", not another instant");
        e = (struct dchat_entry) { .time = INT64_MAX - 28, .utc_offset = 19800 };
        entry_format_iso(&e, buf, sizeof buf);
        is_str(buf, "?", "iso: an overflowing time gives \"?\"");
        ok(utc_offset_valid(DCHAT_UTC_OFFSET_MAX) && utc_offset_valid(-DCHAT_UTC_OFFSET_MAX) &&
           !utc_offset_valid(DCHAT_UTC_OFFSET_MAX + 1) && !utc_offset_valid(-DCHAT_UTC_OFFSET_MAX - 1),
           "utc_offset_valid: +-24:59:59 and not a second more");

        /* names of things */
        static const char *const types[] = { "?", "HELLO", "HELLO_ACK", "REQUEST", "REPLY", "APPEND", "APPENDED",
                                             "VIEW", "ENTRY", "VIEW_END", "ERROR", "POST", "POSTED", "STATUS",
                                             "STATUS_REPLY", "HEARTBEAT", "FOLLOW", "CLUSTER", "ENTRY_DAMAGED",
                                             "RAFT", "LEADER", "DIGEST", "DIGEST_REPLY", "VERIFY", "VERIFY_REPLY",
                                             "GROUP", "GROUP_REPLY", "MEMBER", "MEMBER_REPLY", "TRACE", "TRACE_EVENTS", "TRACE_END",
                                             "WHO", "PRESENCE", "POST_WAIT", "LOCK", "GRANT",
                                             "TOKEN_REQUEST", "TOKEN", "TOKEN_PROBE", "LEAVE", "RELOAD", "RELOAD_REPLY",
                                             "NOTE", "NOTE_REPLY" };
        bool names_ok = sizeof types / sizeof types[0] == _MSG_MAX;
        for (unsigned t = 0; t < _MSG_MAX && names_ok; t++)
                names_ok = strcmp(proto_type_name((uint8_t) t), types[t]) == 0;
        ok(names_ok, "proto_type_name: every type by name, 0 is \"?\"");
        is_str(proto_type_name(_MSG_MAX), "?", "proto_type_name(_MSG_MAX)");
        is_str(proto_type_name(255), "?", "proto_type_name(255)");
        is_str(role_name(ROLE_SERVER), "server", "role_name(SERVER)");
        is_str(role_name(ROLE_PEER), "peer", "role_name(PEER)");
        is_str(role_name(ROLE_NONE), "none", "role_name(NONE)");
        is_str(role_name(99), "none", "role_name(99)");
        is_str(node_state_name(NODE_UP), "up", "node_state_name(UP)");
        is_str(node_state_name(NODE_DOWN), "down", "node_state_name(DOWN)");
        is_str(node_state_name(NODE_SUSPECT), "suspect", "node_state_name(SUSPECT)");
        is_str(node_state_name(NODE_DEAD), "dead", "node_state_name(DEAD)");
        is_str(node_state_name(NODE_UNKNOWN), "unknown", "node_state_name(UNKNOWN)");
        is_str(node_state_name(99), "unknown", "node_state_name(99)");
}

/* GROUP, GROUP_REPLY, MEMBER, MEMBER_REPLY: the server group's membership */
static void test_group_messages(void)
{
        struct dchat_msg in, out;
        struct frame f = {0};
        uint8_t gid[DCHAT_GROUP_ID_BYTES], bid[DCHAT_GROUP_ID_BYTES];
        const char *name = name_of(DCHAT_NAME_MAX, 'g');

        for (unsigned i = 0; i < DCHAT_GROUP_ID_BYTES; i++) {
                gid[i] = (uint8_t) (0xa0 + i);
                bid[i] = (uint8_t) (0x10 + i);
        }
        in = (struct dchat_msg) { .type = MSG_GROUP, .tag = 9, .group = { gid, bid } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "GROUP: round trip"))
                ok(!memcmp(out.group.group_id, gid, sizeof gid) && !memcmp(out.group.boot_id, bid, sizeof bid),
                   "GROUP: both ids");
        is_int(f.len, 4 + 2 * DCHAT_GROUP_ID_BYTES, "GROUP: payload is tag + two ids");
        check_truncations(&f, "GROUP");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_GROUP, .tag = 9, .group = { NULL, NULL } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "GROUP without ids: round trip"))
                ok(out.group.group_id[0] == 0 && out.group.boot_id[DCHAT_GROUP_ID_BYTES - 1] == 0,
                   "GROUP: no id is sent as zeros");
        wbuf_free(&f.b);

        in = (struct dchat_msg) { .type = MSG_GROUP_REPLY, .tag = 10, .group_reply = {
                .state = GROUP_STATE, .group_id = gid, .boot_id = bid, .term = UINT64_MAX - 3,
                .leader = S(name), .leader_address = S("[::1]:8000"), .applied_index = 100000,
                .last_index = 100001, .last_seq = 99999, .fsm_state = 1, .your_role = MEMBER_STANDBY,
                .config_index = 42 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "GROUP_REPLY: round trip"))
                ok(out.group_reply.state == GROUP_STATE && !memcmp(out.group_reply.group_id, gid, sizeof gid) &&
                   !memcmp(out.group_reply.boot_id, bid, sizeof bid) && out.group_reply.term == UINT64_MAX - 3 &&
                   str_eq(out.group_reply.leader, name, DCHAT_NAME_MAX) &&
                   str_eq(out.group_reply.leader_address, "[::1]:8000", 10) &&
                   out.group_reply.applied_index == 100000 && out.group_reply.last_index == 100001 &&
                   out.group_reply.last_seq == 99999 && out.group_reply.fsm_state == 1 &&
                   out.group_reply.your_role == MEMBER_STANDBY && out.group_reply.config_index == 42,
                   "GROUP_REPLY: every field");
        check_truncations(&f, "GROUP_REPLY");
        wbuf_free(&f.b);
        static const struct { uint8_t state, role; const char *leader, *address, *what; } bad_reply[] = {
                { 4, MEMBER_NONE, "", "", "an unknown state" },
                { GROUP_EMPTY, 4, "", "", "an unknown role" },
                { GROUP_STATE, MEMBER_VOTER, "ma ster", "1.2.3.4:5", "a space in the leader's name" },
                { GROUP_STATE, MEMBER_VOTER, "master\nevent=x", "1.2.3.4:5", "a newline in the leader's name" },
                { GROUP_STATE, MEMBER_VOTER, "master", "1.2.3.4:5\n", "a newline in the leader's address" },
                { GROUP_STATE, MEMBER_VOTER, "-27.0.0-1", "1.2.3.4:5", "a leader's name starting with '-' (fuzz-frame)" },
        };
        for (size_t k = 0; k < sizeof bad_reply / sizeof bad_reply[0]; k++) {
                struct dchat_msg m = { .type = MSG_GROUP_REPLY, .tag = 1, .group_reply = {
                        .state = bad_reply[k].state, .your_role = bad_reply[k].role,
                        .leader = { bad_reply[k].leader, (uint16_t) strlen(bad_reply[k].leader) },
                        .leader_address = { bad_reply[k].address, (uint16_t) strlen(bad_reply[k].address) } } };
                is_int(roundtrip(&f, &m, &out, NULL, NULL), -EBADMSG, "GROUP_REPLY: %s is refused", bad_reply[k].what);
                wbuf_free(&f.b);
        }

        in = (struct dchat_msg) { .type = MSG_MEMBER, .tag = 11, .member = { MEMBER_ADD, S(name), S("10.0.0.4:8000"),
                                                                             600000 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "MEMBER add: round trip"))
                ok(out.member.op == MEMBER_ADD && str_eq(out.member.name, name, DCHAT_NAME_MAX) &&
                   str_eq(out.member.address, "10.0.0.4:8000", 13) && out.member.timeout_ms == 600000,
                   "MEMBER: op, name, address, timeout");
        check_truncations(&f, "MEMBER");
        wbuf_free(&f.b);
        in = (struct dchat_msg) { .type = MSG_MEMBER, .tag = 11, .member = { MEMBER_REMOVE, S("master"), S(""), 0 } };
        is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "MEMBER remove without an address: round trip");
        wbuf_free(&f.b);
        static const struct { uint8_t op; const char *name, *address, *what; } bad_member[] = {
                { 3, "master", "1.2.3.4:5", "an unknown op" },
                { MEMBER_ADD, "", "1.2.3.4:5", "an empty name" },
                { MEMBER_ADD, "mas\tter", "1.2.3.4:5", "a tab in the name" },
                { MEMBER_ADD, "master", "", "an add without an address" },
                { MEMBER_ADD, "master", "1.2.3.4 :5", "a space in the address" },
                { MEMBER_REMOVE, "-master", "", "a name starting with '-'" },
        };
        for (size_t k = 0; k < sizeof bad_member / sizeof bad_member[0]; k++) {
                struct dchat_msg m = { .type = MSG_MEMBER, .tag = 1, .member = { bad_member[k].op,
                        { bad_member[k].name, (uint16_t) strlen(bad_member[k].name) },
                        { bad_member[k].address, (uint16_t) strlen(bad_member[k].address) }, 0 } };
                is_int(roundtrip(&f, &m, &out, NULL, NULL), -EBADMSG, "MEMBER: %s is refused", bad_member[k].what);
                wbuf_free(&f.b);
        }

        in = (struct dchat_msg) { .type = MSG_MEMBER_REPLY, .tag = 12, .member_reply = { MEMBER_ADD, S(name),
                S("10.0.0.4:8000"), MEMBER_VOTER, S("joined as a voter") } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "MEMBER_REPLY: round trip"))
                ok(out.member_reply.op == MEMBER_ADD && str_eq(out.member_reply.name, name, DCHAT_NAME_MAX) &&
                   str_eq(out.member_reply.address, "10.0.0.4:8000", 13) && out.member_reply.role == MEMBER_VOTER &&
                   str_eq(out.member_reply.text, "joined as a voter", 17), "MEMBER_REPLY: every field");
        check_truncations(&f, "MEMBER_REPLY");
        wbuf_free(&f.b);
        in.member_reply.text = S("two\nlines");
        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "MEMBER_REPLY: a text that would print two lines is refused");
        wbuf_free(&f.b);
        in.member_reply.text = S("ok");
        in.member_reply.role = 9;
        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "MEMBER_REPLY: an unknown role is refused");
        wbuf_free(&f.b);
}

/* TRACE, TRACE_EVENTS (and its events) and TRACE_END: round trips and what is refused. */
static void test_trace(void)
{
        static struct dchat_entry e;
        struct dchat_msg in, out;
        struct frame f = {0};
        struct wbuf names = {0}, evs = {0}, b = {0};
        struct dchat_trace_event ev = {
                .no = 42, .time_us = UINT64_C(1767600000123456), .kind = TK_REPLY_DEFERRED, .peer = 2,
                .lamport = 9, .request_ts = 8, .fence = 0, .fence_idx = 0, .seq = 0, .send_vt = 0,
                .vc = { 3, { 4, 2, 1000000000007 } } };
        struct dchat_trace_event got;

        in = (struct dchat_msg) { .type = MSG_TRACE, .tag = 3, .trace = { TRACE_CLUSTER, 1, UINT64_MAX, 5, 7 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "TRACE: round trip"))
                ok(out.trace.scope == TRACE_CLUSTER && out.trace.since_us == 1 && out.trace.until_us == UINT64_MAX &&
                   out.trace.from_no == 5 && out.trace.upto_no == 7, "TRACE: every field");
        check_truncations(&f, "TRACE");
        f.b.data[DCHAT_FRAME_HDR + 4] = 2;
        is_int(proto_decode(MSG_TRACE, f.payload, f.len, &out, NULL, NULL), -EBADMSG, "TRACE: scope 2 refused");
        wbuf_free(&f.b);

        for (unsigned i = 1; i <= 3; i++) {
                char n[8];
                snprintf(n, sizeof n, "node%u", i);
                wbuf_put_str(&names, n, strlen(n));
        }
        proto_trace_put(&evs, &ev);
        ev.no = 43, ev.kind = TK_POST_STORED, ev.peer = DCHAT_TRACE_NONE, ev.fence = 7, ev.fence_idx = 2, ev.seq = 99;
        proto_trace_put(&evs, &ev);
        /* the newest kind: a request queued for the token (request-queued) */
        struct dchat_trace_event queued = { .no = 44, .time_us = UINT64_C(1767600000123457), .kind = TK_REQUEST_QUEUED,
                                            .peer = 1, .lamport = 11, .request_ts = 10, .vc = { 3, { 5, 3, 1 } } };
        proto_trace_put(&evs, &queued);
        in = (struct dchat_msg) { .type = MSG_TRACE_EVENTS, .tag = 9, .trace_events = { S("node2"), 3, 3, names.data,
                names.len, 40, 44, 45, 1, 3, evs.data, evs.len } };
        if (is_int(roundtrip(&f, &in, &out, &e, NULL), 0, "TRACE_EVENTS: round trip")) {
                struct rbuf r = { .p = out.trace_events.p, .len = out.trace_events.len };
                ok(out.trace_events.n == 3 && out.trace_events.n_names == 3 && out.trace_events.upto_no == 44 &&
                   out.trace_events.done == 1 && proto_trace_next(&r, 3, &got) == 1 && got.no == 42 &&
                   got.kind == TK_REPLY_DEFERRED && got.peer == 2 && got.vc.c[2] == 1000000000007 &&
                   got.time_us == UINT64_C(1767600000123456) && proto_trace_next(&r, 3, &got) == 1 &&
                   got.seq == 99 && got.fence_idx == 2 && got.peer == DCHAT_TRACE_NONE &&
                   proto_trace_next(&r, 3, &got) == 1 && got.no == 44 && got.kind == TK_REQUEST_QUEUED &&
                   got.peer == 1 && got.request_ts == 10 && got.lamport == 11 && got.vc.c[0] == 5 &&
                   proto_trace_next(&r, 3, &got) == 0, "TRACE_EVENTS: the page and its three events "
                   "(request-queued among them)");
                struct rbuf rn = { .p = out.trace_events.names, .len = out.trace_events.names_len };
                struct dchat_str nm;
                unsigned k = 0;
                while (proto_trace_name_next(&rn, &nm) == 1)
                        k++;
                is_int(k, 3, "TRACE_EVENTS: its three names");
        }
        check_truncations(&f, "TRACE_EVENTS");
        wbuf_free(&f.b);
        is_str(proto_trace_kind_name(TK_CS_ENTER), "cs-enter", "trace kinds are the journal events' names");
        is_int(proto_trace_kind_by_name("peer-restarted"), TK_PEER_RESTARTED, "... and back");
        ok(proto_trace_kind_name(0) == NULL && proto_trace_kind_name(_TK_MAX) == NULL &&
           proto_trace_kind_by_name("started") == 0, "... none for what a ring does not hold");
        /* the wire numbers stay (dchat-protocol(7) lists them): a new kind is appended */
        ok(TK_REQUEST_SENT == 1 && TK_REPLY_DEFERRED == 4 && TK_PEER_LEFT == 17 && TK_REQUEST_QUEUED == 18 &&
           _TK_MAX == 19, "trace kinds keep their numbers; request-queued is 18");
        bool journal_names = true;
        for (uint8_t k = 1; k < _TK_MAX; k++)
                if (!proto_trace_kind_name(k) || log_event_by_name(proto_trace_kind_name(k)) == _EV_MAX ||
                    proto_trace_kind_by_name(proto_trace_kind_name(k)) != k) {
                        diag("trace kind %u (%s): no journal event of that name", k, proto_trace_kind_name(k));
                        journal_names = false;
                }
        ok(journal_names, "every trace kind is named as a journal event (log.c), and back");
        is_int(proto_trace_kind_by_name("request-queued"), TK_REQUEST_QUEUED, "request-queued is a trace kind");

        /* events that do not fit their page */
        static const struct { const char *what; uint8_t kind, peer; uint16_t vc_n; uint64_t no; } bad[] = {
                { "kind 0", 0, 1, 3, 1 },
                { "an unknown kind", _TK_MAX, 1, 3, 1 },
                { "a peer beyond the page's names", TK_REQUEST_SENT, 3, 3, 1 },
                { "a vector clock of other peers (2 components, 3 names)", TK_REQUEST_SENT, 1, 2, 1 },
                { "event number 0", TK_REQUEST_SENT, 1, 3, 0 },
        };
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
                struct dchat_trace_event x = ev;
                x.kind = bad[k].kind, x.peer = bad[k].peer, x.vc.n = bad[k].vc_n, x.no = bad[k].no;
                wbuf_reset(&b);
                proto_trace_put(&b, &x);
                in.trace_events.p = b.data, in.trace_events.len = b.len, in.trace_events.n = 1;
                wbuf_reset(&f.b);
                is_int(roundtrip(&f, &in, &out, &e, NULL), -EBADMSG, "TRACE_EVENTS: an event with %s refused",
                       bad[k].what);
        }
        wbuf_free(&f.b);
        in.trace_events.p = evs.data, in.trace_events.len = evs.len, in.trace_events.n = 4;
        is_int(roundtrip(&f, &in, &out, &e, NULL), -EBADMSG, "TRACE_EVENTS: fewer events than it counts refused");
        wbuf_free(&f.b);
        in.trace_events.n = 2, in.trace_events.n_names = 0;
        is_int(roundtrip(&f, &in, &out, &e, NULL), -EBADMSG, "TRACE_EVENTS: no names refused");
        wbuf_free(&f.b);
        wbuf_reset(&names);
        wbuf_put_str(&names, "node\n1", 6);
        in.trace_events.n_names = 1, in.trace_events.names = names.data, in.trace_events.names_len = names.len;
        in.trace_events.n = 0, in.trace_events.len = 0;
        is_int(roundtrip(&f, &in, &out, &e, NULL), -EBADMSG, "TRACE_EVENTS: a name with a newline refused");
        wbuf_free(&f.b);

        /* TRACE_END */
        wbuf_reset(&b);
        proto_trace_missing_put(&b, "node3", 17, "no answer within 3000 ms");
        in = (struct dchat_msg) { .type = MSG_TRACE_END, .tag = 9, .trace_end = { 3, 1, b.data, b.len } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "TRACE_END: round trip")) {
                struct rbuf r = { .p = out.trace_end.p, .len = out.trace_end.len };
                struct dchat_str nm, why;
                uint64_t k;
                ok(out.trace_end.asked == 3 && out.trace_end.n == 1 && proto_trace_missing_next(&r, &nm, &k, &why) == 1 &&
                   k == 17 && str_eq(why, "no answer within 3000 ms", 24), "TRACE_END: who is missing, and why");
        }
        check_truncations(&f, "TRACE_END");
        wbuf_free(&f.b);
        in.trace_end.asked = 0;
        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "TRACE_END: more missing than asked refused");
        wbuf_free(&f.b);
        wbuf_reset(&b);
        proto_trace_missing_put(&b, "node3", 0, "no\x1b[2Janswer");
        in.trace_end = (typeof(in.trace_end)) { 3, 1, b.data, b.len };
        is_int(roundtrip(&f, &in, &out, NULL, NULL), -EBADMSG, "TRACE_END: a why with an escape refused");
        wbuf_free(&f.b);
        wbuf_free(&b);
        wbuf_free(&names);
        wbuf_free(&evs);
}

/* --- shared notes: NOTE, NOTE_REPLY --------------------------------------------------- */

/* A NOTE of op with key and value (the rest fixed): its decoding. */
static int note_decode(uint8_t op, uint8_t flags, struct dchat_str key, struct dchat_str value)
{
        struct dchat_msg in = { .type = MSG_NOTE, .tag = 3, .note = { .op = op, .flags = flags, .key = key,
                                .value = value, .delta = 1, .fence = 5, .op_id = 1, .time = 1 } }, out;
        struct frame f = {0};
        int r = roundtrip(&f, &in, &out, NULL, NULL);
        wbuf_free(&f.b);
        return r;
}

/* A NOTE_REPLY of flags, key, value and node: its decoding. */
static int note_reply_decode(uint8_t flags, struct dchat_str key, struct dchat_str value, struct dchat_str node)
{
        struct dchat_msg in = { .type = MSG_NOTE_REPLY, .tag = 3, .note_reply = { .flags = flags, .key = key,
                                .value = value, .version = 1, .node = node, .time = 1 } }, out;
        struct frame f = {0};
        int r = roundtrip(&f, &in, &out, NULL, NULL);
        wbuf_free(&f.b);
        return r;
}

static void test_notes(void)
{
        struct dchat_msg in, out;
        struct frame f = {0};
        static const char *const op_names[] = { "", "GET", "LIST", "SET", "DEL", "INCR" };
        const char *key64 = name_of(DCHAT_KEY_MAX, 'k'), *key65 = name_of(DCHAT_KEY_MAX + 1, 'k');
        char v1024[DCHAT_VALUE_MAX + 2];

        memset(v1024, 'v', sizeof v1024 - 1);
        v1024[DCHAT_VALUE_MAX] = '\0';

        /* NOTE: every field of a SET, a key and a value of the largest sizes */
        in = (struct dchat_msg) { .type = MSG_NOTE, .tag = 77, .note = { NOTE_SET, NOTE_IF_VERSION, S(key64),
                { v1024, DCHAT_VALUE_MAX }, INT64_MIN, UINT64_MAX, DCHAT_CLOCK_MAX, UINT32_MAX, UINT64_MAX - 1,
                -1700000000 } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "NOTE: a SET round-trips"))
                ok(out.tag == 77 && out.note.op == NOTE_SET && out.note.flags == NOTE_IF_VERSION &&
                   str_eq(out.note.key, key64, DCHAT_KEY_MAX) && str_eq(out.note.value, v1024, DCHAT_VALUE_MAX) &&
                   out.note.delta == INT64_MIN && out.note.expect == UINT64_MAX && out.note.fence == DCHAT_CLOCK_MAX &&
                   out.note.fence_idx == UINT32_MAX && out.note.op_id == UINT64_MAX - 1 &&
                   out.note.time == -1700000000, "NOTE: every field (the longest key and value)");
        check_truncations(&f, "NOTE (SET)");
        wbuf_free(&f.b);
        in.note.value = S("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
        in.note.flags = NOTE_UNLOCKED | NOTE_IF_VERSION;
        in.note.key = S("Aa0._:/-");
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "NOTE: a SET of UTF-8, both flags, a key of every kind of character"))
                ok(str_eq(out.note.value, in.note.value.p, in.note.value.len) && out.note.flags == NOTE_REQ_FLAGS &&
                   str_eq(out.note.key, "Aa0._:/-", 8), "NOTE: ... read back");
        wbuf_free(&f.b);
        for (uint8_t op = NOTE_GET; op < _NOTE_OP_MAX; op++) {
                if (op == NOTE_SET)
                        continue;
                in = (struct dchat_msg) { .type = MSG_NOTE, .tag = 5, .note = { .op = op, .flags = NOTE_UNLOCKED,
                        .key = op == NOTE_LIST ? S("") : S("counter"), .delta = -3, .op_id = 9, .time = 2 } };
                if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "NOTE: a %s round-trips", op_names[op]))
                        ok(out.note.op == op && out.note.key.len == (op == NOTE_LIST ? 0 : 7) &&
                           out.note.value.len == 0 && out.note.delta == -3 && out.note.op_id == 9,
                           "NOTE: ... its op, key, delta");
                check_truncations(&f, op_names[op]);
                wbuf_free(&f.b);
        }

        /* NOTE refused */
        is_int(note_decode(0, 0, S("k"), S("")), -EBADMSG, "NOTE: op 0 refused");
        is_int(note_decode(_NOTE_OP_MAX, 0, S("k"), S("")), -EBADMSG, "NOTE: op _NOTE_OP_MAX refused");
        is_int(note_decode(255, 0, S("k"), S("")), -EBADMSG, "NOTE: op 255 refused");
        is_int(note_decode(NOTE_GET, 0x04, S("k"), S("")), -EBADMSG, "NOTE: an unknown flag (0x04) refused");
        is_int(note_decode(NOTE_SET, 0x80, S("k"), S("v")), -EBADMSG, "NOTE: flag 0x80 refused");
        static const struct { const char *key; size_t len; const char *what; } badkeys[] = {
                { "", 0, "an empty key" },
                { ".k", 2, "a key starting with '.'" },
                { "_k", 2, "a key starting with '_'" },
                { "a b", 3, "a key with a space" },
                { "a\nb", 3, "a key with a newline" },
                { "k\0", 2, "a key with a NUL" },
                { "k\xc3\xa9", 3, "a key with a non-ASCII letter" },
                { NULL, DCHAT_KEY_MAX + 1, "a key of DCHAT_KEY_MAX + 1 bytes" },
        };
        for (uint8_t op = NOTE_GET; op < _NOTE_OP_MAX; op++) {
                if (op == NOTE_LIST)
                        continue;
                for (size_t i = 0; i < sizeof badkeys / sizeof badkeys[0]; i++) {
                        struct dchat_str k = { badkeys[i].key ? badkeys[i].key : key65, (uint16_t) badkeys[i].len };
                        is_int(note_decode(op, 0, k, op == NOTE_SET ? S("v") : S("")), -EBADMSG,
                               "NOTE: a %s of %s refused", op_names[op], badkeys[i].what);
                }
                is_int(note_decode(op, 0, S(key64), op == NOTE_SET ? S("v") : S("")), 0,
                       "NOTE: a %s of a key of DCHAT_KEY_MAX bytes taken", op_names[op]);
        }
        is_int(note_decode(NOTE_LIST, 0, S("k"), S("")), -EBADMSG, "NOTE: a LIST naming a key refused");
        for (uint8_t op = NOTE_GET; op < _NOTE_OP_MAX; op++)
                if (op != NOTE_SET)
                        is_int(note_decode(op, 0, op == NOTE_LIST ? S("") : S("k"), S("v")), -EBADMSG,
                               "NOTE: a %s with a value refused", op_names[op]);
        v1024[DCHAT_VALUE_MAX] = 'v';
        is_int(note_decode(NOTE_SET, 0, S("k"), (struct dchat_str) { v1024, DCHAT_VALUE_MAX + 1 }), -EBADMSG,
               "NOTE: a SET of DCHAT_VALUE_MAX + 1 bytes refused");
        v1024[DCHAT_VALUE_MAX] = '\0';
        static const struct { const char *v; size_t len; const char *what; } badvals[] = {
                { "", 0, "an empty value" },
                { "\xff", 1, "invalid UTF-8" },
                { "ab\xc3", 3, "a cut UTF-8 sequence" },
                { "\xc0\xaf", 2, "an overlong encoding" },
                { "\xed\xa0\x80", 3, "a surrogate" },
                { "a\nb", 3, "a newline" },
                { "a\x1b[2J", 5, "an escape" },
                { "a\0b", 3, "a NUL" },
                { "a\xc2\x85", 3, "a C1 control" },
        };
        for (size_t i = 0; i < sizeof badvals / sizeof badvals[0]; i++)
                is_int(note_decode(NOTE_SET, 0, S("k"), (struct dchat_str) { badvals[i].v, (uint16_t) badvals[i].len }),
                       -EBADMSG, "NOTE: a SET of %s refused", badvals[i].what);

        /* NOTE_REPLY */
        const char *node = name_of(DCHAT_NAME_MAX, 'n');
        in = (struct dchat_msg) { .type = MSG_NOTE_REPLY, .tag = 12, .note_reply = { NOTE_REPLY_FLAGS, S(key64),
                { v1024, DCHAT_VALUE_MAX }, UINT64_MAX, S(node), INT64_MIN } };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "NOTE_REPLY: a note found round-trips"))
                ok(out.tag == 12 && out.note_reply.flags == NOTE_REPLY_FLAGS &&
                   str_eq(out.note_reply.key, key64, DCHAT_KEY_MAX) &&
                   str_eq(out.note_reply.value, v1024, DCHAT_VALUE_MAX) && out.note_reply.version == UINT64_MAX &&
                   str_eq(out.note_reply.node, node, DCHAT_NAME_MAX) && out.note_reply.time == INT64_MIN,
                   "NOTE_REPLY: every field (the longest key, value and node)");
        check_truncations(&f, "NOTE_REPLY (found)");
        wbuf_free(&f.b);
        in.note_reply = (typeof(in.note_reply)) { NOTE_MORE, S("k"), S(""), 0, S(""), 0 };
        if (is_int(roundtrip(&f, &in, &out, NULL, NULL), 0, "NOTE_REPLY: none found, its key named, round-trips"))
                ok(out.note_reply.flags == NOTE_MORE && str_eq(out.note_reply.key, "k", 1), "NOTE_REPLY: ... read back");
        check_truncations(&f, "NOTE_REPLY (none)");
        wbuf_free(&f.b);
        is_int(note_reply_decode(0, S(""), S(""), S("")), 0, "NOTE_REPLY: none found, no key (an empty list): taken");
        is_int(note_reply_decode(NOTE_DUPLICATE, S("k"), S(""), S("")), 0, "NOTE_REPLY: a DUPLICATE of a DEL: taken");

        is_int(note_reply_decode(0x08, S(""), S(""), S("")), -EBADMSG, "NOTE_REPLY: an unknown flag (0x08) refused");
        is_int(note_reply_decode(0x80 | NOTE_FOUND, S("k"), S("v"), S("n1")), -EBADMSG, "NOTE_REPLY: flag 0x80 refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("v"), S("")), -EBADMSG, "NOTE_REPLY: FOUND with no node refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("v"), S(name_of(DCHAT_NAME_MAX + 1, 'n'))), -EBADMSG,
               "NOTE_REPLY: FOUND with a node of DCHAT_NAME_MAX + 1 bytes refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("v"), S("n 1")), -EBADMSG,
               "NOTE_REPLY: FOUND with a node with a space refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("v"), S("n\x1b")), -EBADMSG,
               "NOTE_REPLY: FOUND with a node with an escape refused");
        is_int(note_reply_decode(NOTE_FOUND, S(""), S("v"), S("n1")), -EBADMSG, "NOTE_REPLY: FOUND with no key refused");
        is_int(note_reply_decode(NOTE_FOUND, S(".k"), S("v"), S("n1")), -EBADMSG,
               "NOTE_REPLY: FOUND with a key starting with '.' refused");
        is_int(note_reply_decode(NOTE_FOUND, S(key65), S("v"), S("n1")), -EBADMSG,
               "NOTE_REPLY: FOUND with a key of DCHAT_KEY_MAX + 1 bytes refused");
        v1024[DCHAT_VALUE_MAX] = 'v';
        is_int(note_reply_decode(NOTE_FOUND, S("k"), (struct dchat_str) { v1024, DCHAT_VALUE_MAX + 1 }, S("n1")),
               -EBADMSG, "NOTE_REPLY: FOUND with a value of DCHAT_VALUE_MAX + 1 bytes refused");
        v1024[DCHAT_VALUE_MAX] = '\0';
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("a\nb"), S("n1")), -EBADMSG,
               "NOTE_REPLY: FOUND with a value with a newline refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S("\xff"), S("n1")), -EBADMSG,
               "NOTE_REPLY: FOUND with a value of invalid UTF-8 refused");
        is_int(note_reply_decode(NOTE_FOUND, S("k"), S(""), S("n1")), -EBADMSG,
               "NOTE_REPLY: FOUND with an empty value refused (no note holds one)");
        is_int(note_reply_decode(0, S("k"), S("v"), S("")), -EBADMSG, "NOTE_REPLY: none found, with a value, refused");
        is_int(note_reply_decode(0, S("k"), S(""), S("n1")), -EBADMSG, "NOTE_REPLY: none found, with a node, refused");
        is_int(note_reply_decode(0, S("a b"), S(""), S("")), -EBADMSG, "NOTE_REPLY: none found, an invalid key, refused");
}

int main(void)
{
        plan_no_plan();
        test_roundtrips();
        test_group_messages();
        test_trace();
        test_notes();
        test_header();
        test_malformed();
        test_encode_limits();
        test_buffers();
        test_text();
        test_names();
        test_time();
        return done_testing();
}
