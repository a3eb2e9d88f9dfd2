/* SPDX-License-Identifier: MIT */
/*
 * mkcorpus-frame — writes the seed corpus of fuzz-frame into DIR
 * (`make fuzz-corpus` writes tests/fuzz/corpus/fuzz-frame/): for every
 * message type a good frame, as NAME (header and payload, as a connection
 * delivers it) and as direct-NAME (the type byte, then the payload: the
 * target's direct path to each decoder), and stream-all, every frame in
 * type order.  A new message type gets its sample here, so the corpus keeps
 * in step with the codec; the program fails if a type has none, or if a
 * sample does not decode.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define S(s) ((struct dchat_str) { (s), (uint16_t) (sizeof(s) - 1) })

static struct dchat_entry entry = {
        .seq = 42, .lamport = 17, .node = "node1", .fence_idx = 0, .post_id = (UINT64_C(3) << 32) | 7,
        .time = 1795338157, .utc_offset = 3600, .author = "alice", .text_len = 5, .text = "hello",
        .vc = { 3, { 12, 300, 1000005 } },
};
/* a vector clock of three peers: components of 1, 2 and 3 bytes */
static const struct vclock vc3 = { 3, { 5, 200, 70000 } };

static struct dchat_status status = {
        .node = "node1", .role = ROLE_PEER, .lamport = 9, .dme_state = "wanted", .request_ts = 8, .queued = 2,
        .dme_algorithm = "central",
        .server = "master2", .server_connected = true, .uptime = 310, .n_peers = 2,
        .peers = { { "node2", true, "alive", 300 }, { "node3", false, "suspect", 2 } },
        .counters = { 5, 4, 1, 1, 1, 1, 5, 5, 0, 0 },
        .term = 4, .leader = "master2", .n_servers = 3,
        .servers = {
                { "master", true, "follower", 4, 1205, 1211, "" },
                { "master2", true, "leader", 4, 1205, 1211, "" },
                { "master3", true, "unavailable", 4, 1100, 0, "chat.log: No space left on device" },
        },
        .trouble = "",
};

static const uint8_t digests[3 * DCHAT_DIGEST_BYTES] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0xff };
static const uint8_t cluster[] = { ROLE_SERVER, 0, 6, 'm', 'a', 's', 't', 'e', 'r', 0, 13, '1', '0', '.', '0', '.',
                                   '0', '.', '1', ':', '8', '0', '0', '0' };
static const uint8_t raft[] = { 1, 0, 0, 0, 0, 0, 0, 0, 42 };
static const uint8_t group_id[DCHAT_GROUP_ID_BYTES] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 8, 9, 10, 11, 12, 13, 14, 15 };
static const uint8_t boot_id[DCHAT_GROUP_ID_BYTES] = { 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 8, 9, 10, 11, 12, 13, 14, 15 };

static int sample(uint8_t type, struct dchat_msg *m, struct wbuf *parts)
{
        *m = (struct dchat_msg) { .type = type, .tag = 7 };
        switch (type) {
        case MSG_HELLO:
                m->hello = (typeof(m->hello)) { S("node1"), ROLE_PEER, 3, 0x1234 };
                return 0;
        case MSG_HELLO_ACK:
                m->hello_ack = (typeof(m->hello_ack)) { 12, 42, 17 };
                return 0;
        case MSG_REQUEST:
                m->request = (typeof(m->request)) { 18, &vc3 };
                return 0;
        case MSG_REPLY:
                m->reply = (typeof(m->reply)) { 19, 18, &vc3 };
                return 0;
        case MSG_APPEND:
        case MSG_ENTRY:
                m->append = &entry;
                return 0;
        case MSG_APPENDED:
        case MSG_POSTED:
                m->appended = (typeof(m->appended)) { 42, 17, 0, 0 };
                return 0;
        case MSG_VIEW:
                m->view = (typeof(m->view)) { 0, 20, 0, 512, 1795338000, 41 };
                return 0;
        case MSG_VIEW_END:
                m->view_end = (typeof(m->view_end)) { 43, 42, 1 };
                return 0;
        case MSG_ERROR:
                m->error = (typeof(m->error)) { ERR_FENCED, S("append refused"), 17 };
                return 0;
        case MSG_POST:
                m->post = (typeof(m->post)) { 3600, 0, S("hello") };
                return 0;
        case MSG_STATUS:
        case MSG_VERIFY:
                return 0;
        case MSG_STATUS_REPLY:
                m->status = &status;
                return 0;
        case MSG_HEARTBEAT:
                m->heartbeat = (typeof(m->heartbeat)) { 3, 19 };
                return 0;
        case MSG_LEAVE:
                m->leave = (typeof(m->leave)) { 3, 21 };
                return 0;
        case MSG_RELOAD:
                return 0;
        case MSG_RELOAD_REPLY:
                m->reload_reply = (typeof(m->reload_reply)) { S("/etc/dchat.conf reloaded") };
                return 0;
        case MSG_NOTE:
                m->note = (typeof(m->note)) { NOTE_SET, NOTE_IF_VERSION, S("hits"), S("41"), 0, 7, 19, 0,
                                              (UINT64_C(3) << 32) | 8, 1795338157 };
                return 0;
        case MSG_NOTE_REPLY:
                m->note_reply = (typeof(m->note_reply)) { NOTE_FOUND | NOTE_MORE, S("motd"), S("hello, lab"), 8,
                                                          S("node1"), 1795338157 };
                return 0;
        case MSG_FOLLOW:
                m->follow.from_seq = 40;
                return 0;
        case MSG_CLUSTER:
                m->cluster = (typeof(m->cluster)) { 0x1234, 1, cluster, sizeof cluster };
                return 0;
        case MSG_ENTRY_DAMAGED:
                m->damaged = (typeof(m->damaged)) { 3, 5, S("record checksum mismatch") };
                return 0;
        case MSG_RAFT:
                m->raft = (typeof(m->raft)) { raft, sizeof raft };
                return 0;
        case MSG_LEADER:
                m->leader = (typeof(m->leader)) { 4, S("master2"), S("10.0.0.2:8000") };
                return 0;
        case MSG_DIGEST:
                m->digest = (typeof(m->digest)) { 1, 1205, 1024, 16 };
                return 0;
        case MSG_DIGEST_REPLY:
                m->digest_reply = (typeof(m->digest_reply)) { 1, 1205, 1, 1024, 2, digests };
                return 0;
        case MSG_VERIFY_REPLY:
                wbuf_reset(parts);
                proto_verify_put(parts, "master", 1, 1205, VERIFY_ENTRY, &entry, NULL);
                proto_verify_put(parts, "master2", 1, 1205, VERIFY_DAMAGED, NULL, "record checksum mismatch");
                proto_verify_put(parts, "master3", 1, 40, VERIFY_ABSENT, NULL, NULL);
                m->verify_reply = (typeof(m->verify_reply)) { 1, 1, 41, 42, 3, parts->data, parts->len };
                return 0;
        case MSG_GROUP:
                m->group = (typeof(m->group)) { group_id, boot_id };
                return 0;
        case MSG_GROUP_REPLY:
                m->group_reply = (typeof(m->group_reply)) { GROUP_STATE, group_id, boot_id, 4, S("master2"),
                                                            S("10.0.0.2:8000"), 1211, 1212, 1205, 0, MEMBER_VOTER, 3 };
                return 0;
        case MSG_MEMBER:
                m->member = (typeof(m->member)) { MEMBER_ADD, S("master4"), S("10.0.0.4:8000"), 300000 };
                return 0;
        case MSG_MEMBER_REPLY:
                m->member_reply = (typeof(m->member_reply)) { MEMBER_ADD, S("master4"), S("10.0.0.4:8000"),
                                                              MEMBER_VOTER, S("master4 joined the server group as a voter") };
                return 0;
        case MSG_TRACE:
                m->trace = (typeof(m->trace)) { TRACE_RING, 1795338000000000, 0, 40, 0 };
                return 0;
        case MSG_TRACE_EVENTS: {
                static struct wbuf names;
                struct dchat_trace_event ev = { .no = 41, .time_us = 1795338157000001, .kind = TK_REPLY_DEFERRED,
                                                .peer = 1, .lamport = 7, .request_ts = 5, .vc = vc3 };
                wbuf_reset(&names);
                wbuf_put_str(&names, "node1", 5);
                wbuf_put_str(&names, "node2", 5);
                wbuf_put_str(&names, "node3", 5);
                wbuf_reset(parts);
                proto_trace_put(parts, &ev);
                ev = (struct dchat_trace_event) { .no = 43, .time_us = 1795338157000042, .kind = TK_POST_STORED,
                                                  .peer = DCHAT_TRACE_NONE, .lamport = 7, .fence = 6, .fence_idx = 1,
                                                  .seq = 1205, .vc = vc3 };
                proto_trace_put(parts, &ev);
                m->trace_events = (typeof(m->trace_events)) { S("node1"), 3, 3, names.data, names.len, 1, 43, 44, 1, 2,
                                                              parts->data, parts->len };
                return 0;
        }
        case MSG_TRACE_END:
                wbuf_reset(parts);
                proto_trace_missing_put(parts, "node3", 12, "no answer within 3000 ms");
                m->trace_end = (typeof(m->trace_end)) { 3, 1, parts->data, parts->len };
                return 0;
        case MSG_WHO:
                m->who.watch = 1;
                return 0;
        case MSG_PRESENCE:
                wbuf_reset(parts);
                proto_presence_put(parts, "ann", PRESENCE_CHAT);
                proto_presence_put(parts, "lucy", PRESENCE_CHAT | PRESENCE_FOLLOW);
                m->presence = (typeof(m->presence)) { S("node2"), ROLE_PEER, NODE_UP,
                                                      PRESENCE_USERS_KNOWN | PRESENCE_END, 42, S(""), 0, 2,
                                                      parts->data, parts->len };
                return 0;
        case MSG_POST_WAIT:
                m->post_wait = (typeof(m->post_wait)) { 2500, S("the server master is unreachable (connection refused)") };
                return 0;
        case MSG_LOCK:
                m->lock = (typeof(m->lock)) { LOCK_HELD, 18, 19, &vc3 };
                return 0;
        case MSG_GRANT:
                m->grant = (typeof(m->grant)) { 18, 20, &vc3 };
                return 0;
        case MSG_TOKEN_REQUEST:
                m->token_request = (typeof(m->token_request)) { 65, 1000003, 18, &vc3 };
                return 0;
        case MSG_TOKEN:
                m->token.clock = 21;
                m->token.ts = 18;
                m->token.gen = 65;
                m->token.hop = 4;
                m->token.n = 3;
                m->token.ln[0] = 1000002, m->token.ln[1] = 7, m->token.ln[2] = 2000001;
                m->token.qn = 2;
                m->token.q[0] = 2, m->token.q[1] = 0;
                m->token.vc = &vc3;
                return 0;
        case MSG_TOKEN_PROBE:
                m->probe = (typeof(m->probe)) { 1, 2, 129, 2, 0, 1, 1000003, 18, 19, &vc3 };
                return 0;
        default:
                return -ENOENT;
        }
}

static int write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
        char path[4096];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "wb");
        if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
                fprintf(stderr, "mkcorpus-frame: cannot write %s\n", path);
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        static struct dchat_entry e;
        static struct dchat_status st;
        struct wbuf all = {0}, one = {0}, parts = {0};
        struct dchat_msg m, d;
        char name[64];
        uint8_t t;

        if (argc != 2) {
                fprintf(stderr, "usage: mkcorpus-frame DIR\n");
                return 2;
        }
        for (unsigned type = 1; type < _MSG_MAX; type++) {
                wbuf_reset(&one);
                int n;
                if (sample((uint8_t) type, &m, &parts) < 0 || proto_encode(&one, &m) < 0 ||
                    (n = proto_check_header(one.data, &t)) < 0 ||
                    proto_decode(t, one.data + DCHAT_FRAME_HDR, (size_t) n, &d, &e, &st) < 0) {
                        fprintf(stderr, "mkcorpus-frame: no good sample of %s (type %u)\n", proto_type_name((uint8_t) type),
                                type);
                        return 1;
                }
                wbuf_put(&all, one.data, one.len);
                if (write_file(argv[1], proto_type_name((uint8_t) type), one.data, one.len) < 0)
                        return 1;
                /* direct-: the type byte in place of the header */
                one.data[DCHAT_FRAME_HDR - 1] = (uint8_t) type;
                snprintf(name, sizeof name, "direct-%s", proto_type_name((uint8_t) type));
                if (write_file(argv[1], name, one.data + DCHAT_FRAME_HDR - 1, one.len - DCHAT_FRAME_HDR + 1) < 0)
                        return 1;
        }
        if (all.failed || write_file(argv[1], "stream-all", all.data, all.len) < 0)
                return 1;
        wbuf_free(&all);
        wbuf_free(&one);
        wbuf_free(&parts);
        return 0;
}
