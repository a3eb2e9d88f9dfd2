/* SPDX-License-Identifier: MIT */
/*
 * fuzz-frame.c — libFuzzer target: the frame decoder and every message
 * decoder of daemon/proto.c, as dchatd meets them on a link or on the
 * control socket.
 *
 * The input is a byte stream, cut into frames the way net.c cuts them
 * (proto_check_header, then proto_decode of the payload); in addition its
 * first byte picks a message type whose decoder gets the rest directly,
 * past the header check.  Whatever decodes is checked further: strings are
 * copied and validated as the daemon does, and the message must encode
 * again and decode to the same bytes (encode ∘ decode is idempotent).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dchatd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct dchat_entry entry, entry2;
static struct dchat_status status, status2;

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "fuzz-frame: check failed: %s (line %d)\n", #x, __LINE__); abort(); } } while (0)

/* What the daemon's handlers do with the strings of a decoded message. */
static void use_strings(const struct dchat_msg *m)
{
        char name[DCHAT_NAME_MAX + 1], text[DCHAT_TEXT_MAX + 1], when[64];
        const char *why;

        switch (m->type) {
        case MSG_HELLO:
                if (dchat_str_copy(name, sizeof name, m->hello.node) == 0)
                        (void) node_name_valid(name);
                (void) role_name(m->hello.role);
                break;
        case MSG_APPEND:
        case MSG_ENTRY:
                (void) text_validate(m->append->text, m->append->text_len, &why);
                (void) node_name_valid(m->append->node);
                entry_format_time(m->append, when, sizeof when);
                break;
        case MSG_ERROR:
                (void) dchat_str_copy(text, sizeof text, m->error.text);
                break;
        case MSG_ENTRY_DAMAGED:
                /* the decoder vouches for what dchatctl prints as it is */
                CHECK(m->damaged.first_seq >= 1 && m->damaged.first_seq <= m->damaged.last_seq);
                CHECK(text_validate(m->damaged.reason.p, m->damaged.reason.len, &why) == 0);
                CHECK(dchat_str_copy(text, sizeof text, m->damaged.reason) == 0);
                break;
        case MSG_POST:
                (void) text_validate(m->post.text.p, m->post.text.len, &why);
                break;
        case MSG_NOTE:
                /* the decoder vouches for the key (but a list's) and a set's value */
                CHECK(m->note.op == NOTE_LIST || note_key_valid(m->note.key.p, m->note.key.len));
                CHECK(m->note.op != NOTE_SET || text_validate(m->note.value.p, m->note.value.len, &why) == 0);
                break;
        case MSG_NOTE_REPLY:
                CHECK(!(m->note_reply.flags & NOTE_FOUND) ||
                      (note_key_valid(m->note_reply.key.p, m->note_reply.key.len) &&
                       text_validate(m->note_reply.value.p, m->note_reply.value.len, &why) == 0));
                break;
        case MSG_STATUS_REPLY:
                (void) role_name(m->status->role);
                break;
        case MSG_GROUP_REPLY:
                /* names end up in log lines and addresses in sockaddr_parse */
                if (m->group_reply.leader.len)
                        CHECK(dchat_str_copy(name, sizeof name, m->group_reply.leader) == 0 && node_name_valid(name));
                CHECK(m->group_reply.your_role <= MEMBER_VOTER && m->group_reply.state <= GROUP_REFUSED);
                break;
        case MSG_MEMBER:
                CHECK(dchat_str_copy(name, sizeof name, m->member.name) == 0 && node_name_valid(name));
                break;
        case MSG_MEMBER_REPLY:
                /* the decoder vouches for what dchatctl prints as it is */
                CHECK(text_validate(m->member_reply.text.p, m->member_reply.text.len, &why) == 0);
                CHECK(dchat_str_copy(name, sizeof name, m->member_reply.name) == 0 && node_name_valid(name));
                break;
        default:
                break;
        }
}

/* encode(decode(x)) decodes, and encodes to the same bytes again. */
static void round_trip(const struct dchat_msg *m)
{
        struct wbuf a = {0}, b = {0};
        struct dchat_msg m2;
        uint8_t type;

        if (proto_encode(&a, m) < 0)
                goto out;
        CHECK(a.len >= DCHAT_FRAME_HDR);
        int len = proto_check_header(a.data, &type);
        CHECK(len >= 0 && (size_t) len == a.len - DCHAT_FRAME_HDR && type == m->type);
        CHECK(proto_decode(type, a.data + DCHAT_FRAME_HDR, (size_t) len, &m2, &entry2, &status2) == 0);
        CHECK(m2.tag == m->tag);
        CHECK(proto_encode(&b, &m2) == 0);
        CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
out:
        wbuf_free(&a);
        wbuf_free(&b);
}

static void one(uint8_t type, const uint8_t *payload, size_t len)
{
        struct dchat_msg m;

        (void) proto_type_name(type);
        if (proto_decode(type, payload, len, &m, &entry, &status) < 0)
                return;
        use_strings(&m);
        round_trip(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* a stream of frames, as a connection delivers them */
        size_t off = 0;
        while (size - off >= DCHAT_FRAME_HDR) {
                uint8_t type;
                int len = proto_check_header(data + off, &type);
                if (len < 0 || size - off - DCHAT_FRAME_HDR < (size_t) len)
                        break;
                CHECK(len <= DCHAT_FRAME_MAX);
                one(type, data + off + DCHAT_FRAME_HDR, (size_t) len);
                off += DCHAT_FRAME_HDR + (size_t) len;
        }

        /* every decoder, past the header check: type from the first byte */
        if (size >= 1) {
                /* a copy of exactly the payload's size, so reads past it are caught */
                uint8_t *p = malloc(size - 1 ? size - 1 : 1);
                if (!p)
                        return 0;
                memcpy(p, data + 1, size - 1);
                one((uint8_t) (data[0] % (_MSG_MAX + 1)), p, size - 1);
                free(p);
        }
        return 0;
}
