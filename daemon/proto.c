/* SPDX-License-Identifier: MIT */
/* proto.c — the wire codec shared by dchatd and dchatctl: no I/O, no state. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto.h"

/* --- output buffer --------------------------------------------------------- */

void wbuf_free(struct wbuf *b)
{
        free(b->data);
        *b = (struct wbuf) {0};
}

void wbuf_reset(struct wbuf *b)
{
        b->len = 0;
        b->failed = false;
}

bool wbuf_reserve(struct wbuf *b, size_t n)
{
        if (b->failed)
                return false;
        if (n > SIZE_MAX / 2 - b->len) {
                b->failed = true;
                return false;
        }
        if (b->len + n <= b->cap)
                return true;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
                cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p) {
                b->failed = true;
                return false;
        }
        b->data = p;
        b->cap = cap;
        return true;
}

void wbuf_put(struct wbuf *b, const void *p, size_t n)
{
        if (n == 0 || !wbuf_reserve(b, n))
                return;
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

void wbuf_put_u8(struct wbuf *b, uint8_t v)
{
        wbuf_put(b, &v, 1);
}

void wbuf_put_u16(struct wbuf *b, uint16_t v)
{
        uint8_t x[2] = { v >> 8, v };
        wbuf_put(b, x, sizeof x);
}

void wbuf_put_u32(struct wbuf *b, uint32_t v)
{
        uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
        wbuf_put(b, x, sizeof x);
}

void wbuf_put_u64(struct wbuf *b, uint64_t v)
{
        wbuf_put_u32(b, v >> 32);
        wbuf_put_u32(b, (uint32_t) v);
}

void wbuf_put_str(struct wbuf *b, const char *s, size_t n)
{
        if (n > UINT16_MAX) {
                b->failed = true;
                return;
        }
        wbuf_put_u16(b, n);
        wbuf_put(b, s, n);
}

void wbuf_put_varint(struct wbuf *b, uint64_t v)
{
        uint8_t x[10];
        size_t n = 0;

        do {
                x[n] = v & 0x7f;
                v >>= 7;
                if (v)
                        x[n] |= 0x80;
                n++;
        } while (v);
        wbuf_put(b, x, n);
}

/* Drops the first n bytes (sent ones). */
void wbuf_consume(struct wbuf *b, size_t n)
{
        if (n >= b->len) {
                b->len = 0;
                return;
        }
        memmove(b->data, b->data + n, b->len - n);
        b->len -= n;
}

/* --- input reader ------------------------------------------------------------ */

static const uint8_t *rbuf_take(struct rbuf *r, size_t n)
{
        if (r->bad || n > r->len - r->off) {
                r->bad = true;
                return NULL;
        }
        const uint8_t *p = r->p + r->off;
        r->off += n;
        return p;
}

uint8_t rbuf_u8(struct rbuf *r)
{
        const uint8_t *p = rbuf_take(r, 1);
        return p ? p[0] : 0;
}

uint16_t rbuf_u16(struct rbuf *r)
{
        const uint8_t *p = rbuf_take(r, 2);
        return p ? (uint16_t) (p[0] << 8 | p[1]) : 0;
}

uint32_t rbuf_u32(struct rbuf *r)
{
        const uint8_t *p = rbuf_take(r, 4);
        return p ? (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3] : 0;
}

uint64_t rbuf_u64(struct rbuf *r)
{
        uint64_t hi = rbuf_u32(r);
        return hi << 32 | rbuf_u32(r);
}

struct dchat_str rbuf_str(struct rbuf *r)
{
        uint16_t n = rbuf_u16(r);
        const uint8_t *p = rbuf_take(r, n);
        return p ? (struct dchat_str) { (const char *) p, n } : (struct dchat_str) { "", 0 };
}

uint64_t rbuf_varint(struct rbuf *r)
{
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64; shift += 7) {
                const uint8_t *p = rbuf_take(r, 1);
                if (!p)
                        return 0;
                uint64_t bits = *p & 0x7f;
                /* the tenth byte holds bit 63 alone; a last byte of 0 (beyond the first) is a longer form */
                if ((shift == 63 && *p > 1) || (shift && *p == 0))
                        break;
                v |= bits << shift;
                if (!(*p & 0x80))
                        return v;
        }
        r->bad = true;
        return 0;
}

int dchat_str_copy(char *dst, size_t cap, struct dchat_str s)
{
        if (s.len >= cap)
                return -ENAMETOOLONG;
        if (memchr(s.p, '\0', s.len))
                return -EINVAL;
        memcpy(dst, s.p, s.len);
        dst[s.len] = '\0';
        return 0;
}

/* --- validation --------------------------------------------------------------- */

bool note_key_valid(const char *s, size_t n)
{
        if (n == 0 || n > DCHAT_KEY_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
                if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-' && c != ':' && c != '/')))
                        return false;
        }
        return true;
}

bool node_name_valid(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > DCHAT_NAME_MAX || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
        }
        return true;
}

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF.  Control characters are refused so that no post can break the
 * one-line-per-post format or carry terminal escapes.
 */
int text_validate(const char *s, size_t n, const char **why)
{
        const uint8_t *p = (const uint8_t *) s;
        const char *dummy;

        if (!why)
                why = &dummy;
        if (n == 0) {
                *why = "the text is empty";
                return -EINVAL;
        }
        if (n > DCHAT_TEXT_MAX) {
                *why = "the text is longer than 4096 bytes";
                return -E2BIG;
        }
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                unsigned len;
                uint8_t c = p[i];

                if (c < 0x80) {
                        cp = c;
                        len = 1;
                } else if (c >= 0xc2 && c <= 0xdf) {
                        cp = c & 0x1f;
                        len = 2;
                } else if (c >= 0xe0 && c <= 0xef) {
                        cp = c & 0x0f;
                        len = 3;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        cp = c & 0x07;
                        len = 4;
                } else {
                        *why = "the text is not valid UTF-8";
                        return -EINVAL;
                }
                if (len > n - i) {
                        *why = "the text is not valid UTF-8";
                        return -EINVAL;
                }
                for (unsigned k = 1; k < len; k++) {
                        if ((p[i + k] & 0xc0) != 0x80) {
                                *why = "the text is not valid UTF-8";
                                return -EINVAL;
                        }
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                    (cp >= 0xd800 && cp <= 0xdfff)) {
                        *why = "the text is not valid UTF-8";
                        return -EINVAL;
                }
                if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0) || cp == 0x2028 || cp == 0x2029) {
                        *why = "the text contains a control character (newlines are not allowed)";
                        return -EINVAL;
                }
                i += len;
        }
        return 0;
}

/* A character that shows nothing on its own: a space of any width, or a zero-width one. */
static bool invisible(uint32_t cp)
{
        return cp == 0x20 || cp == 0xa0 || cp == 0x1680 || cp == 0x180e || (cp >= 0x2000 && cp <= 0x200d) ||
               cp == 0x202f || cp == 0x205f || cp == 0x2060 || cp == 0x3000 || cp == 0xfeff;
}

int post_text_validate(const char *s, size_t n, const char **why)
{
        const uint8_t *p = (const uint8_t *) s;
        const char *dummy;
        int r = text_validate(s, n, why);

        if (r < 0)
                return r;
        if (!why)
                why = &dummy;
        /* valid UTF-8 from here on */
        for (size_t i = 0; i < n;) {
                uint32_t cp = p[i];
                unsigned len = cp < 0x80 ? 1 : cp < 0xe0 ? 2 : cp < 0xf0 ? 3 : 4;
                if (len > 1) {
                        cp &= 0x7f >> len;
                        for (unsigned k = 1; k < len; k++)
                                cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if (!invisible(cp))
                        return 0;
                i += len;
        }
        *why = "the text is empty (only white space)";
        return -EINVAL;
}

bool entry_local_tm(const struct dchat_entry *e, struct tm *tm)
{
        int64_t t;

        /* a forged entry's time may be anything: no overflow */
        if (__builtin_add_overflow(e->time, (int64_t) e->utc_offset, &t) || (int64_t) (time_t) t != t)
                return false;
        time_t tt = (time_t) t;
        return gmtime_r(&tt, tm) != NULL;
}

void entry_format_time(const struct dchat_entry *e, char *buf, size_t cap)
{
        struct tm tm;

        if (!entry_local_tm(e, &tm) || strftime(buf, cap, "%d %b %I:%M%p", &tm) == 0)
                snprintf(buf, cap, "?");
}

void entry_format_iso(const struct dchat_entry *e, char *buf, size_t cap)
{
        char iso[64];
        struct tm tm;
        long off = labs((long) e->utc_offset);
        size_t l;

        if (!entry_local_tm(e, &tm) || (l = strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &tm)) == 0) {
                snprintf(buf, cap, "?");
                return;
        }
        l += (size_t) snprintf(iso + l, sizeof iso - l, "%c%02ld:%02ld", e->utc_offset < 0 ? '-' : '+', off / 3600,
                               off % 3600 / 60);
        if (off % 60 && l < sizeof iso)
                snprintf(iso + l, sizeof iso - l, ":%02ld", off % 60);
        /* cut short, it would name another instant: rather nothing */
        snprintf(buf, cap, "%s", strlen(iso) < cap ? iso : "?");
}

bool utc_offset_valid(long off)
{
        return off >= -DCHAT_UTC_OFFSET_MAX && off <= DCHAT_UTC_OFFSET_MAX;
}

const char *role_name(uint8_t role)
{
        switch (role) {
        case ROLE_SERVER:
                return "server";
        case ROLE_PEER:
                return "peer";
        default:
                return "none";
        }
}

/* --- messages ----------------------------------------------------------------- */

static const char *const type_names[_MSG_MAX] = {
        [MSG_HELLO] = "HELLO",
        [MSG_HELLO_ACK] = "HELLO_ACK",
        [MSG_REQUEST] = "REQUEST",
        [MSG_REPLY] = "REPLY",
        [MSG_APPEND] = "APPEND",
        [MSG_APPENDED] = "APPENDED",
        [MSG_VIEW] = "VIEW",
        [MSG_ENTRY] = "ENTRY",
        [MSG_VIEW_END] = "VIEW_END",
        [MSG_ERROR] = "ERROR",
        [MSG_POST] = "POST",
        [MSG_POSTED] = "POSTED",
        [MSG_STATUS] = "STATUS",
        [MSG_STATUS_REPLY] = "STATUS_REPLY",
        [MSG_HEARTBEAT] = "HEARTBEAT",
        [MSG_FOLLOW] = "FOLLOW",
        [MSG_CLUSTER] = "CLUSTER",
        [MSG_ENTRY_DAMAGED] = "ENTRY_DAMAGED",
        [MSG_RAFT] = "RAFT",
        [MSG_LEADER] = "LEADER",
        [MSG_DIGEST] = "DIGEST",
        [MSG_DIGEST_REPLY] = "DIGEST_REPLY",
        [MSG_VERIFY] = "VERIFY",
        [MSG_VERIFY_REPLY] = "VERIFY_REPLY",
        [MSG_GROUP] = "GROUP",
        [MSG_GROUP_REPLY] = "GROUP_REPLY",
        [MSG_MEMBER] = "MEMBER",
        [MSG_MEMBER_REPLY] = "MEMBER_REPLY",
        [MSG_TRACE] = "TRACE",
        [MSG_TRACE_EVENTS] = "TRACE_EVENTS",
        [MSG_TRACE_END] = "TRACE_END",
        [MSG_WHO] = "WHO",
        [MSG_PRESENCE] = "PRESENCE",
        [MSG_POST_WAIT] = "POST_WAIT",
        [MSG_LOCK] = "LOCK",
        [MSG_GRANT] = "GRANT",
        [MSG_TOKEN_REQUEST] = "TOKEN_REQUEST",
        [MSG_TOKEN] = "TOKEN",
        [MSG_TOKEN_PROBE] = "TOKEN_PROBE",
        [MSG_LEAVE] = "LEAVE",
        [MSG_RELOAD] = "RELOAD",
        [MSG_RELOAD_REPLY] = "RELOAD_REPLY",
        [MSG_NOTE] = "NOTE",
        [MSG_NOTE_REPLY] = "NOTE_REPLY",
};

const char *proto_type_name(uint8_t type)
{
        return type > 0 && type < _MSG_MAX ? type_names[type] : "?";
}

void proto_put_vclock(struct wbuf *b, const struct vclock *v)
{
        unsigned n = v && v->n < DCHAT_PEERS_MAX ? v->n : v ? DCHAT_PEERS_MAX : 0;

        wbuf_put_u8(b, (uint8_t) n);
        for (unsigned i = 0; i < n; i++)
                wbuf_put_varint(b, v->c[i]);
}

int proto_get_vclock(struct rbuf *r, struct vclock *v)
{
        unsigned n = rbuf_u8(r);

        if (r->bad || n > DCHAT_PEERS_MAX) {
                r->bad = true;
                return -EBADMSG;
        }
        v->n = (uint16_t) n;
        for (unsigned i = 0; i < n; i++) {
                v->c[i] = rbuf_varint(r);
                if (r->bad || v->c[i] > DCHAT_CLOCK_MAX) {
                        r->bad = true;
                        return -EBADMSG;
                }
        }
        return 0;
}

void proto_put_entry(struct wbuf *b, const struct dchat_entry *e)
{
        wbuf_put_u64(b, e->seq);
        wbuf_put_u64(b, e->lamport);
        wbuf_put_str(b, e->node, strlen(e->node));
        wbuf_put_u32(b, e->fence_idx);
        wbuf_put_u64(b, e->post_id);
        wbuf_put_u64(b, (uint64_t) e->time);
        wbuf_put_u32(b, (uint32_t) e->utc_offset);
        wbuf_put_str(b, e->author, strlen(e->author));
        wbuf_put_str(b, e->text, e->text_len);
        proto_put_vclock(b, &e->vc);
}

int proto_get_entry_v1(struct rbuf *r, struct dchat_entry *e)
{
        struct dchat_str node, author, text;

        e->seq = rbuf_u64(r);
        e->lamport = rbuf_u64(r);
        node = rbuf_str(r);
        e->fence_idx = rbuf_u32(r);
        e->post_id = rbuf_u64(r);
        e->time = (int64_t) rbuf_u64(r);
        e->utc_offset = (int32_t) rbuf_u32(r);
        author = rbuf_str(r);
        text = rbuf_str(r);
        if (r->bad)
                return -EBADMSG;
        if (dchat_str_copy(e->node, sizeof e->node, node) < 0 ||
            dchat_str_copy(e->author, sizeof e->author, author) < 0 ||
            dchat_str_copy(e->text, sizeof e->text, text) < 0)
                return -EBADMSG;
        e->text_len = text.len;
        e->vc.n = 0;
        if (!utc_offset_valid(e->utc_offset))
                return -EBADMSG;
        return 0;
}

int proto_get_entry(struct rbuf *r, struct dchat_entry *e)
{
        if (proto_get_entry_v1(r, e) < 0 || proto_get_vclock(r, &e->vc) < 0)
                return -EBADMSG;
        return 0;
}

static bool name_chars_valid(const char *p, size_t n);

static void put_status(struct wbuf *b, const struct dchat_status *st)
{
        wbuf_put_str(b, st->node, strlen(st->node));
        wbuf_put_u8(b, st->role);
        wbuf_put_u64(b, st->lamport);
        wbuf_put_str(b, st->dme_state, strlen(st->dme_state));
        wbuf_put_u64(b, st->request_ts);
        wbuf_put_u32(b, st->queued);
        wbuf_put_u64(b, st->last_seq);
        wbuf_put_str(b, st->server, strlen(st->server));
        wbuf_put_u8(b, st->server_connected);
        wbuf_put_u32(b, st->uptime);
        wbuf_put_u16(b, st->n_peers);
        for (unsigned i = 0; i < st->n_peers && i < DCHAT_PEERS_MAX; i++) {
                wbuf_put_str(b, st->peers[i].name, strlen(st->peers[i].name));
                wbuf_put_u8(b, st->peers[i].connected);
                wbuf_put_str(b, st->peers[i].state, strlen(st->peers[i].state));
                wbuf_put_u32(b, st->peers[i].since);
        }
        const struct dchat_counters *k = &st->counters;
        for (const uint64_t *v = &k->cs_entries; v <= &k->fdatasyncs; v++)
                wbuf_put_u64(b, *v);
        wbuf_put_str(b, st->raft_state, strlen(st->raft_state));
        wbuf_put_u64(b, st->term);
        wbuf_put_str(b, st->leader, strlen(st->leader));
        wbuf_put_u64(b, st->applied_index);
        wbuf_put_u16(b, st->n_servers);
        for (unsigned i = 0; i < st->n_servers && i < DCHAT_SERVERS_MAX; i++) {
                const struct dchat_server_status *s = &st->servers[i];
                wbuf_put_str(b, s->name, strlen(s->name));
                wbuf_put_u8(b, s->reachable);
                wbuf_put_str(b, s->role, strlen(s->role));
                wbuf_put_u64(b, s->term);
                wbuf_put_u64(b, s->last_seq);
                wbuf_put_u64(b, s->applied_index);
                wbuf_put_str(b, s->note, strlen(s->note));
        }
        wbuf_put_u32(b, st->trace_events);
        wbuf_put_u32(b, st->trace_capacity);
        wbuf_put_u64(b, st->trace_bytes);
        wbuf_put_str(b, st->trouble, strlen(st->trouble));
        wbuf_put_str(b, st->dme_algorithm, strlen(st->dme_algorithm));
}

/*
 * A name-like string of a status (a state, a server's name): copied, and
 * only a node name's characters, since dchatctl prints it as it is.
 */
static int get_word(struct rbuf *r, char *dst, size_t cap)
{
        struct dchat_str s = rbuf_str(r);
        if (!name_chars_valid(s.p, s.len))
                return -EBADMSG;
        return dchat_str_copy(dst, cap, s) < 0 ? -EBADMSG : 0;
}

static int get_status(struct rbuf *r, struct dchat_status *st)
{
        int bad = 0;

        *st = (struct dchat_status) {0};
        bad |= dchat_str_copy(st->node, sizeof st->node, rbuf_str(r));
        st->role = rbuf_u8(r);
        st->lamport = rbuf_u64(r);
        bad |= dchat_str_copy(st->dme_state, sizeof st->dme_state, rbuf_str(r));
        st->request_ts = rbuf_u64(r);
        st->queued = rbuf_u32(r);
        st->last_seq = rbuf_u64(r);
        bad |= dchat_str_copy(st->server, sizeof st->server, rbuf_str(r));
        st->server_connected = rbuf_u8(r);
        st->uptime = rbuf_u32(r);
        st->n_peers = rbuf_u16(r);
        if (st->n_peers > DCHAT_PEERS_MAX)
                return -EBADMSG;
        for (unsigned i = 0; i < st->n_peers; i++) {
                bad |= dchat_str_copy(st->peers[i].name, sizeof st->peers[i].name, rbuf_str(r));
                st->peers[i].connected = rbuf_u8(r);
                bad |= dchat_str_copy(st->peers[i].state, sizeof st->peers[i].state, rbuf_str(r));
                st->peers[i].since = rbuf_u32(r);
        }
        struct dchat_counters *k = &st->counters;
        for (uint64_t *v = &k->cs_entries; v <= &k->fdatasyncs; v++)
                *v = rbuf_u64(r);
        bad |= get_word(r, st->raft_state, sizeof st->raft_state);
        st->term = rbuf_u64(r);
        bad |= get_word(r, st->leader, sizeof st->leader);
        st->applied_index = rbuf_u64(r);
        st->n_servers = rbuf_u16(r);
        if (st->n_servers > DCHAT_SERVERS_MAX)
                return -EBADMSG;
        for (unsigned i = 0; i < st->n_servers; i++) {
                struct dchat_server_status *s = &st->servers[i];
                bad |= get_word(r, s->name, sizeof s->name);
                s->reachable = rbuf_u8(r);
                bad |= get_word(r, s->role, sizeof s->role);
                s->term = rbuf_u64(r);
                s->last_seq = rbuf_u64(r);
                s->applied_index = rbuf_u64(r);
                struct dchat_str note = rbuf_str(r);
                /* printed as it is: text without control characters, or nothing */
                if (note.len && text_validate(note.p, note.len, NULL) < 0)
                        bad = -EBADMSG;
                bad |= dchat_str_copy(s->note, sizeof s->note, note);
                if (!s->name[0])
                        bad = -EBADMSG;
        }
        st->trace_events = rbuf_u32(r);
        st->trace_capacity = rbuf_u32(r);
        st->trace_bytes = rbuf_u64(r);
        struct dchat_str trouble = rbuf_str(r);
        if (trouble.len && text_validate(trouble.p, trouble.len, NULL) < 0)
                bad = -EBADMSG;
        bad |= dchat_str_copy(st->trouble, sizeof st->trouble, trouble);
        bad |= get_word(r, st->dme_algorithm, sizeof st->dme_algorithm);
        return bad || r->bad ? -EBADMSG : 0;
}

/* A group id: DCHAT_GROUP_ID_BYTES, zeros for NULL (none). */
static void put_id(struct wbuf *b, const uint8_t *id)
{
        static const uint8_t none[DCHAT_GROUP_ID_BYTES];
        wbuf_put(b, id ? id : none, DCHAT_GROUP_ID_BYTES);
}

static const uint8_t *get_id(struct rbuf *r)
{
        return rbuf_take(r, DCHAT_GROUP_ID_BYTES);
}

int proto_encode(struct wbuf *b, const struct dchat_msg *m)
{
        size_t start = b->len;

        if (m->type == 0 || m->type >= _MSG_MAX)
                return -EINVAL;
        /* header; the length is patched in below */
        wbuf_put_u32(b, 0);
        wbuf_put_u8(b, DCHAT_PROTO_VERSION);
        wbuf_put_u8(b, m->type);
        wbuf_put_u16(b, 0);
        wbuf_put_u32(b, m->tag);

        switch (m->type) {
        case MSG_HELLO:
                wbuf_put_str(b, m->hello.node.p, m->hello.node.len);
                wbuf_put_u8(b, m->hello.role);
                wbuf_put_u64(b, m->hello.incarnation);
                wbuf_put_u64(b, m->hello.digest);
                break;
        case MSG_HELLO_ACK:
                wbuf_put_u64(b, m->hello_ack.last_post_id);
                wbuf_put_u64(b, m->hello_ack.last_seq);
                wbuf_put_u64(b, m->hello_ack.last_lamport);
                break;
        case MSG_REQUEST:
                wbuf_put_u64(b, m->request.ts);
                proto_put_vclock(b, m->request.vc);
                break;
        case MSG_REPLY:
                wbuf_put_u64(b, m->reply.clock);
                wbuf_put_u64(b, m->reply.req_ts);
                proto_put_vclock(b, m->reply.vc);
                break;
        case MSG_APPEND:
        case MSG_ENTRY:
                proto_put_entry(b, m->append);
                break;
        case MSG_APPENDED:
                wbuf_put_u64(b, m->appended.seq);
                wbuf_put_u64(b, m->appended.lamport);
                wbuf_put_u32(b, m->appended.fence_idx);
                wbuf_put_u8(b, m->appended.duplicate);
                break;
        case MSG_VIEW:
                wbuf_put_u64(b, m->view.from_seq);
                wbuf_put_u64(b, m->view.last_n);
                wbuf_put_u64(b, m->view.upto_seq);
                wbuf_put_u32(b, m->view.max);
                wbuf_put_u64(b, (uint64_t) m->view.since_time);
                wbuf_put_u64(b, m->view.min_seq);
                break;
        case MSG_VIEW_END:
                wbuf_put_u64(b, m->view_end.next_seq);
                wbuf_put_u64(b, m->view_end.last_seq);
                wbuf_put_u8(b, m->view_end.done);
                break;
        case MSG_ERROR:
                wbuf_put_u16(b, m->error.code);
                wbuf_put_str(b, m->error.text.p, m->error.text.len);
                wbuf_put_u64(b, m->error.detail);
                break;
        case MSG_POST:
                wbuf_put_u32(b, (uint32_t) m->post.utc_offset);
                wbuf_put_u32(b, m->post.hold_ms);
                wbuf_put_str(b, m->post.text.p, m->post.text.len);
                break;
        case MSG_POSTED:
                wbuf_put_u64(b, m->appended.seq);
                wbuf_put_u64(b, m->appended.lamport);
                wbuf_put_u32(b, m->appended.fence_idx);
                wbuf_put_u8(b, m->appended.duplicate);
                break;
        case MSG_STATUS:
                break;
        case MSG_STATUS_REPLY:
                put_status(b, m->status);
                break;
        case MSG_HEARTBEAT:
                wbuf_put_u64(b, m->heartbeat.incarnation);
                wbuf_put_u64(b, m->heartbeat.clock);
                break;
        case MSG_FOLLOW:
                wbuf_put_u64(b, m->follow.from_seq);
                break;
        case MSG_CLUSTER:
                wbuf_put_u64(b, m->cluster.digest);
                wbuf_put_u16(b, m->cluster.n);
                wbuf_put(b, m->cluster.p, m->cluster.len);
                break;
        case MSG_ENTRY_DAMAGED:
                wbuf_put_u64(b, m->damaged.first_seq);
                wbuf_put_u64(b, m->damaged.last_seq);
                wbuf_put_str(b, m->damaged.reason.p, m->damaged.reason.len);
                break;
        case MSG_RAFT:
                wbuf_put(b, m->raft.p, m->raft.len);
                break;
        case MSG_LEADER:
                wbuf_put_u64(b, m->leader.term);
                wbuf_put_str(b, m->leader.leader.p, m->leader.leader.len);
                wbuf_put_str(b, m->leader.address.p, m->leader.address.len);
                break;
        case MSG_DIGEST:
                wbuf_put_u64(b, m->digest.from_seq);
                wbuf_put_u64(b, m->digest.to_seq);
                wbuf_put_u32(b, m->digest.block);
                wbuf_put_u16(b, m->digest.max_blocks);
                break;
        case MSG_DIGEST_REPLY:
                wbuf_put_u64(b, m->digest_reply.first_seq);
                wbuf_put_u64(b, m->digest_reply.last_seq);
                wbuf_put_u64(b, m->digest_reply.from_seq);
                wbuf_put_u32(b, m->digest_reply.block);
                wbuf_put_u16(b, m->digest_reply.n);
                wbuf_put(b, m->digest_reply.p, (size_t) m->digest_reply.n * DCHAT_DIGEST_BYTES);
                break;
        case MSG_VERIFY:
                break;
        case MSG_VERIFY_REPLY:
                wbuf_put_u8(b, m->verify_reply.differ);
                wbuf_put_u64(b, m->verify_reply.first);
                wbuf_put_u64(b, m->verify_reply.last);
                wbuf_put_u64(b, m->verify_reply.seq);
                wbuf_put_u16(b, m->verify_reply.n);
                wbuf_put(b, m->verify_reply.p, m->verify_reply.len);
                break;
        case MSG_GROUP:
                put_id(b, m->group.group_id);
                put_id(b, m->group.boot_id);
                break;
        case MSG_GROUP_REPLY:
                wbuf_put_u8(b, m->group_reply.state);
                put_id(b, m->group_reply.group_id);
                put_id(b, m->group_reply.boot_id);
                wbuf_put_u64(b, m->group_reply.term);
                wbuf_put_str(b, m->group_reply.leader.p, m->group_reply.leader.len);
                wbuf_put_str(b, m->group_reply.leader_address.p, m->group_reply.leader_address.len);
                wbuf_put_u64(b, m->group_reply.applied_index);
                wbuf_put_u64(b, m->group_reply.last_index);
                wbuf_put_u64(b, m->group_reply.last_seq);
                wbuf_put_u8(b, m->group_reply.fsm_state);
                wbuf_put_u8(b, m->group_reply.your_role);
                wbuf_put_u64(b, m->group_reply.config_index);
                break;
        case MSG_MEMBER:
                wbuf_put_u8(b, m->member.op);
                wbuf_put_str(b, m->member.name.p, m->member.name.len);
                wbuf_put_str(b, m->member.address.p, m->member.address.len);
                wbuf_put_u32(b, m->member.timeout_ms);
                break;
        case MSG_MEMBER_REPLY:
                wbuf_put_u8(b, m->member_reply.op);
                wbuf_put_str(b, m->member_reply.name.p, m->member_reply.name.len);
                wbuf_put_str(b, m->member_reply.address.p, m->member_reply.address.len);
                wbuf_put_u8(b, m->member_reply.role);
                wbuf_put_str(b, m->member_reply.text.p, m->member_reply.text.len);
                break;
        case MSG_TRACE:
                wbuf_put_u8(b, m->trace.scope);
                wbuf_put_u64(b, m->trace.since_us);
                wbuf_put_u64(b, m->trace.until_us);
                wbuf_put_u64(b, m->trace.from_no);
                wbuf_put_u64(b, m->trace.upto_no);
                break;
        case MSG_TRACE_EVENTS:
                wbuf_put_str(b, m->trace_events.node.p, m->trace_events.node.len);
                wbuf_put_u64(b, m->trace_events.incarnation);
                wbuf_put_u8(b, m->trace_events.n_names);
                wbuf_put(b, m->trace_events.names, m->trace_events.names_len);
                wbuf_put_u64(b, m->trace_events.first_no);
                wbuf_put_u64(b, m->trace_events.upto_no);
                wbuf_put_u64(b, m->trace_events.next_no);
                wbuf_put_u8(b, m->trace_events.done);
                wbuf_put_u16(b, m->trace_events.n);
                wbuf_put(b, m->trace_events.p, m->trace_events.len);
                break;
        case MSG_TRACE_END:
                wbuf_put_u16(b, m->trace_end.asked);
                wbuf_put_u16(b, m->trace_end.n);
                wbuf_put(b, m->trace_end.p, m->trace_end.len);
                break;
        case MSG_WHO:
                wbuf_put_u8(b, m->who.watch);
                break;
        case MSG_PRESENCE:
                wbuf_put_str(b, m->presence.node.p, m->presence.node.len);
                wbuf_put_u8(b, m->presence.role);
                wbuf_put_u8(b, m->presence.state);
                wbuf_put_u8(b, m->presence.flags);
                wbuf_put_u32(b, m->presence.since);
                wbuf_put_str(b, m->presence.note.p, m->presence.note.len);
                wbuf_put_u16(b, m->presence.more);
                wbuf_put_u16(b, m->presence.n);
                wbuf_put(b, m->presence.p, m->presence.len);
                break;
        case MSG_POST_WAIT:
                wbuf_put_u32(b, m->post_wait.wait_ms);
                wbuf_put_str(b, m->post_wait.reason.p, m->post_wait.reason.len);
                break;
        case MSG_LOCK:
                wbuf_put_u8(b, m->lock.op);
                wbuf_put_u64(b, m->lock.ts);
                wbuf_put_u64(b, m->lock.clock);
                proto_put_vclock(b, m->lock.vc);
                break;
        case MSG_GRANT:
                wbuf_put_u64(b, m->grant.ts);
                wbuf_put_u64(b, m->grant.clock);
                proto_put_vclock(b, m->grant.vc);
                break;
        case MSG_TOKEN_REQUEST:
                wbuf_put_u64(b, m->token_request.gen);
                wbuf_put_u64(b, m->token_request.sn);
                wbuf_put_u64(b, m->token_request.ts);
                proto_put_vclock(b, m->token_request.vc);
                break;
        case MSG_TOKEN: {
                unsigned n = m->token.n < DCHAT_PEERS_MAX ? m->token.n : DCHAT_PEERS_MAX;
                unsigned qn = m->token.qn < DCHAT_PEERS_MAX ? m->token.qn : DCHAT_PEERS_MAX;
                wbuf_put_u64(b, m->token.clock);
                wbuf_put_u64(b, m->token.ts);
                wbuf_put_u64(b, m->token.gen);
                wbuf_put_u64(b, m->token.hop);
                wbuf_put_u8(b, (uint8_t) n);
                for (unsigned i = 0; i < n; i++)
                        wbuf_put_varint(b, m->token.ln[i]);
                wbuf_put_u8(b, (uint8_t) qn);
                wbuf_put(b, m->token.q, qn);
                proto_put_vclock(b, m->token.vc);
                break;
        }
        case MSG_TOKEN_PROBE:
                wbuf_put_u8(b, m->probe.kind);
                wbuf_put_u64(b, m->probe.round);
                wbuf_put_u64(b, m->probe.gen);
                wbuf_put_u64(b, m->probe.down);
                wbuf_put_u8(b, m->probe.holds);
                wbuf_put_u8(b, m->probe.wanted);
                wbuf_put_u64(b, m->probe.sn);
                wbuf_put_u64(b, m->probe.ts);
                wbuf_put_u64(b, m->probe.clock);
                proto_put_vclock(b, m->probe.vc);
                break;
        case MSG_LEAVE:
                wbuf_put_u64(b, m->leave.incarnation);
                wbuf_put_u64(b, m->leave.clock);
                break;
        case MSG_RELOAD:
                break;
        case MSG_RELOAD_REPLY:
                wbuf_put_str(b, m->reload_reply.text.p, m->reload_reply.text.len);
                break;
        case MSG_NOTE:
                wbuf_put_u8(b, m->note.op);
                wbuf_put_u8(b, m->note.flags);
                wbuf_put_str(b, m->note.key.p, m->note.key.len);
                wbuf_put_str(b, m->note.value.p, m->note.value.len);
                wbuf_put_u64(b, (uint64_t) m->note.delta);
                wbuf_put_u64(b, m->note.expect);
                wbuf_put_u64(b, m->note.fence);
                wbuf_put_u32(b, m->note.fence_idx);
                wbuf_put_u64(b, m->note.op_id);
                wbuf_put_u64(b, (uint64_t) m->note.time);
                break;
        case MSG_NOTE_REPLY:
                wbuf_put_u8(b, m->note_reply.flags);
                wbuf_put_str(b, m->note_reply.key.p, m->note_reply.key.len);
                wbuf_put_str(b, m->note_reply.value.p, m->note_reply.value.len);
                wbuf_put_u64(b, m->note_reply.version);
                wbuf_put_str(b, m->note_reply.node.p, m->note_reply.node.len);
                wbuf_put_u64(b, (uint64_t) m->note_reply.time);
                break;
        }

        if (b->failed) {
                b->len = start;
                b->failed = false;
                return -ENOMEM;
        }
        size_t payload = b->len - start - DCHAT_FRAME_HDR;
        if (payload > DCHAT_FRAME_MAX) {
                b->len = start;
                return -EMSGSIZE;
        }
        uint8_t *h = b->data + start;
        h[0] = payload >> 24;
        h[1] = payload >> 16;
        h[2] = payload >> 8;
        h[3] = payload;
        return 0;
}

int proto_check_header(const uint8_t hdr[DCHAT_FRAME_HDR], uint8_t *type)
{
        uint32_t len = (uint32_t) hdr[0] << 24 | (uint32_t) hdr[1] << 16 | (uint32_t) hdr[2] << 8 | hdr[3];

        if (hdr[4] != DCHAT_PROTO_VERSION || hdr[5] == 0 || hdr[5] >= _MSG_MAX || hdr[6] || hdr[7])
                return -EBADMSG;
        if (len > DCHAT_FRAME_MAX)
                return -EMSGSIZE;
        if (len < 4)            /* every payload starts with the tag */
                return -EBADMSG;
        *type = hdr[5];
        return (int) len;
}

/* A node name's characters ([A-Za-z0-9._-]), or none. */
static bool name_chars_valid(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                char ch = p[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == '-'))
                        return false;
        }
        return true;
}

/* Printable ASCII without spaces or quotes: what an address written as host:port needs. */
static bool address_chars_valid(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i] <= ' ' || p[i] > '~' || p[i] == '"')
                        return false;
        return true;
}

/* A node name in a frame (it ends up in log lines): node_name_valid, or empty if allowed. */
static bool name_ok(struct dchat_str s, bool may_be_empty)
{
        if (s.len == 0)
                return may_be_empty;
        return s.len <= DCHAT_NAME_MAX && s.p[0] != '-' && name_chars_valid(s.p, s.len);
}

/* A host:port in a frame: printable, at most 255 bytes, or empty if allowed. */
static bool address_ok(struct dchat_str s, bool may_be_empty)
{
        return (s.len > 0 || may_be_empty) && s.len <= 255 && address_chars_valid(s.p, s.len);
}

int proto_decode(uint8_t type, const uint8_t *payload, size_t len, struct dchat_msg *m,
                 struct dchat_entry *entry, struct dchat_status *status)
{
        struct rbuf r = { .p = payload, .len = len };

        *m = (struct dchat_msg) { .type = type };
        m->tag = rbuf_u32(&r);
        switch (type) {
        case MSG_HELLO:
                m->hello.node = rbuf_str(&r);
                m->hello.role = rbuf_u8(&r);
                m->hello.incarnation = rbuf_u64(&r);
                m->hello.digest = rbuf_u64(&r);
                break;
        case MSG_HELLO_ACK:
                m->hello_ack.last_post_id = rbuf_u64(&r);
                m->hello_ack.last_seq = rbuf_u64(&r);
                m->hello_ack.last_lamport = rbuf_u64(&r);
                break;
        case MSG_REQUEST:
                m->request.ts = rbuf_u64(&r);
                if (!entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->request.vc = &entry->vc;
                break;
        case MSG_REPLY:
                m->reply.clock = rbuf_u64(&r);
                m->reply.req_ts = rbuf_u64(&r);
                if (!entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->reply.vc = &entry->vc;
                break;
        case MSG_APPEND:
        case MSG_ENTRY:
                if (!entry || proto_get_entry(&r, entry) < 0)
                        return -EBADMSG;
                m->append = entry;
                break;
        case MSG_APPENDED:
        case MSG_POSTED:
                m->appended.seq = rbuf_u64(&r);
                m->appended.lamport = rbuf_u64(&r);
                m->appended.fence_idx = rbuf_u32(&r);
                m->appended.duplicate = rbuf_u8(&r);
                break;
        case MSG_VIEW:
                m->view.from_seq = rbuf_u64(&r);
                m->view.last_n = rbuf_u64(&r);
                m->view.upto_seq = rbuf_u64(&r);
                m->view.max = rbuf_u32(&r);
                m->view.since_time = (int64_t) rbuf_u64(&r);
                m->view.min_seq = rbuf_u64(&r);
                break;
        case MSG_VIEW_END:
                m->view_end.next_seq = rbuf_u64(&r);
                m->view_end.last_seq = rbuf_u64(&r);
                m->view_end.done = rbuf_u8(&r);
                break;
        case MSG_ERROR:
                m->error.code = rbuf_u16(&r);
                m->error.text = rbuf_str(&r);
                m->error.detail = rbuf_u64(&r);
                break;
        case MSG_POST:
                m->post.utc_offset = (int32_t) rbuf_u32(&r);
                m->post.hold_ms = rbuf_u32(&r);
                m->post.text = rbuf_str(&r);
                if (!utc_offset_valid(m->post.utc_offset) || m->post.hold_ms > DCHAT_HOLD_MAX_MS)
                        return -EBADMSG;
                break;
        case MSG_STATUS:
                break;
        case MSG_STATUS_REPLY:
                if (!status || get_status(&r, status) < 0)
                        return -EBADMSG;
                m->status = status;
                break;
        case MSG_HEARTBEAT:
                m->heartbeat.incarnation = rbuf_u64(&r);
                m->heartbeat.clock = rbuf_u64(&r);
                break;
        case MSG_FOLLOW:
                m->follow.from_seq = rbuf_u64(&r);
                break;
        case MSG_CLUSTER: {
                m->cluster.digest = rbuf_u64(&r);
                m->cluster.n = rbuf_u16(&r);
                if (r.bad)
                        break;
                m->cluster.p = r.p + r.off;
                m->cluster.len = r.len - r.off;
                /* every member well-formed, and nothing after them */
                struct rbuf c = { .p = m->cluster.p, .len = m->cluster.len };
                uint8_t role;
                struct dchat_str name, address;
                for (unsigned i = 0; i < m->cluster.n; i++)
                        if (proto_cluster_next(&c, &role, &name, &address) <= 0)
                                return -EBADMSG;
                if (c.off != c.len)
                        return -EBADMSG;
                r.off = r.len;
                break;
        }
        case MSG_ENTRY_DAMAGED:
                m->damaged.first_seq = rbuf_u64(&r);
                m->damaged.last_seq = rbuf_u64(&r);
                m->damaged.reason = rbuf_str(&r);
                /* it is printed as it is: no forged lines, no terminal escapes */
                if (r.bad || m->damaged.first_seq == 0 || m->damaged.first_seq > m->damaged.last_seq ||
                    m->damaged.reason.len > DCHAT_REASON_MAX ||
                    text_validate(m->damaged.reason.p, m->damaged.reason.len, NULL) < 0)
                        return -EBADMSG;
                break;
        case MSG_RAFT:
                m->raft.p = r.p + r.off;
                m->raft.len = r.len - r.off;
                if (r.bad || m->raft.len == 0)
                        return -EBADMSG;
                r.off = r.len;
                break;
        case MSG_LEADER:
                m->leader.term = rbuf_u64(&r);
                m->leader.leader = rbuf_str(&r);
                m->leader.address = rbuf_str(&r);
                /* names and addresses end up in log lines: the characters of names, printable addresses */
                if (r.bad || m->leader.leader.len > DCHAT_NAME_MAX || m->leader.address.len > 255 ||
                    !name_chars_valid(m->leader.leader.p, m->leader.leader.len) ||
                    !address_chars_valid(m->leader.address.p, m->leader.address.len))
                        return -EBADMSG;
                break;
        case MSG_DIGEST:
                m->digest.from_seq = rbuf_u64(&r);
                m->digest.to_seq = rbuf_u64(&r);
                m->digest.block = rbuf_u32(&r);
                m->digest.max_blocks = rbuf_u16(&r);
                break;
        case MSG_DIGEST_REPLY:
                m->digest_reply.first_seq = rbuf_u64(&r);
                m->digest_reply.last_seq = rbuf_u64(&r);
                m->digest_reply.from_seq = rbuf_u64(&r);
                m->digest_reply.block = rbuf_u32(&r);
                m->digest_reply.n = rbuf_u16(&r);
                if (r.bad || m->digest_reply.n > DCHAT_DIGESTS_MAX ||
                    r.len - r.off != (size_t) m->digest_reply.n * DCHAT_DIGEST_BYTES)
                        return -EBADMSG;
                m->digest_reply.p = r.p + r.off;
                r.off = r.len;
                break;
        case MSG_VERIFY:
                break;
        case MSG_VERIFY_REPLY: {
                m->verify_reply.differ = rbuf_u8(&r);
                m->verify_reply.first = rbuf_u64(&r);
                m->verify_reply.last = rbuf_u64(&r);
                m->verify_reply.seq = rbuf_u64(&r);
                m->verify_reply.n = rbuf_u16(&r);
                if (r.bad || m->verify_reply.differ > 1 || m->verify_reply.n > DCHAT_SERVERS_MAX || !entry)
                        return -EBADMSG;
                m->verify_reply.p = r.p + r.off;
                m->verify_reply.len = r.len - r.off;
                /* every server's part well-formed (its entry decoded into the caller's storage), nothing after */
                struct rbuf v = { .p = m->verify_reply.p, .len = m->verify_reply.len };
                struct dchat_verify_server vs = { .entry = entry };
                for (unsigned i = 0; i < m->verify_reply.n; i++)
                        if (proto_verify_next(&v, &vs) <= 0)
                                return -EBADMSG;
                if (v.off != v.len)
                        return -EBADMSG;
                r.off = r.len;
                break;
        }
        case MSG_GROUP:
                m->group.group_id = get_id(&r);
                m->group.boot_id = get_id(&r);
                break;
        case MSG_GROUP_REPLY:
                m->group_reply.state = rbuf_u8(&r);
                m->group_reply.group_id = get_id(&r);
                m->group_reply.boot_id = get_id(&r);
                m->group_reply.term = rbuf_u64(&r);
                m->group_reply.leader = rbuf_str(&r);
                m->group_reply.leader_address = rbuf_str(&r);
                m->group_reply.applied_index = rbuf_u64(&r);
                m->group_reply.last_index = rbuf_u64(&r);
                m->group_reply.last_seq = rbuf_u64(&r);
                m->group_reply.fsm_state = rbuf_u8(&r);
                m->group_reply.your_role = rbuf_u8(&r);
                m->group_reply.config_index = rbuf_u64(&r);
                if (r.bad || m->group_reply.state > GROUP_REFUSED || m->group_reply.your_role > MEMBER_VOTER ||
                    !name_ok(m->group_reply.leader, true) || !address_ok(m->group_reply.leader_address, true))
                        return -EBADMSG;
                break;
        case MSG_MEMBER:
                m->member.op = rbuf_u8(&r);
                m->member.name = rbuf_str(&r);
                m->member.address = rbuf_str(&r);
                m->member.timeout_ms = rbuf_u32(&r);
                if (r.bad || (m->member.op != MEMBER_ADD && m->member.op != MEMBER_REMOVE) ||
                    !name_ok(m->member.name, false) ||
                    !address_ok(m->member.address, m->member.op == MEMBER_REMOVE))
                        return -EBADMSG;
                break;
        case MSG_MEMBER_REPLY:
                m->member_reply.op = rbuf_u8(&r);
                m->member_reply.name = rbuf_str(&r);
                m->member_reply.address = rbuf_str(&r);
                m->member_reply.role = rbuf_u8(&r);
                m->member_reply.text = rbuf_str(&r);
                /* it is printed as it is */
                if (r.bad || (m->member_reply.op != MEMBER_ADD && m->member_reply.op != MEMBER_REMOVE) ||
                    !name_ok(m->member_reply.name, false) || !address_ok(m->member_reply.address, true) ||
                    m->member_reply.role > MEMBER_VOTER || m->member_reply.text.len > DCHAT_ERROR_MAX ||
                    text_validate(m->member_reply.text.p, m->member_reply.text.len, NULL) < 0)
                        return -EBADMSG;
                break;
        case MSG_TRACE:
                m->trace.scope = rbuf_u8(&r);
                m->trace.since_us = rbuf_u64(&r);
                m->trace.until_us = rbuf_u64(&r);
                m->trace.from_no = rbuf_u64(&r);
                m->trace.upto_no = rbuf_u64(&r);
                if (m->trace.scope != TRACE_CLUSTER && m->trace.scope != TRACE_RING)
                        return -EBADMSG;
                break;
        case MSG_TRACE_EVENTS: {
                m->trace_events.node = rbuf_str(&r);
                m->trace_events.incarnation = rbuf_u64(&r);
                m->trace_events.n_names = rbuf_u8(&r);
                if (r.bad || m->trace_events.node.len == 0 || m->trace_events.node.len > DCHAT_NAME_MAX ||
                    !name_chars_valid(m->trace_events.node.p, m->trace_events.node.len) ||
                    m->trace_events.n_names == 0 || m->trace_events.n_names > DCHAT_PEERS_MAX)
                        return -EBADMSG;
                /* the names: every one a node name */
                m->trace_events.names = r.p + r.off;
                struct dchat_str name;
                size_t at = r.off;
                for (unsigned i = 0; i < m->trace_events.n_names; i++) {
                        name = rbuf_str(&r);
                        if (r.bad || name.len == 0 || name.len > DCHAT_NAME_MAX || !name_chars_valid(name.p, name.len))
                                return -EBADMSG;
                }
                m->trace_events.names_len = r.off - at;
                m->trace_events.first_no = rbuf_u64(&r);
                m->trace_events.upto_no = rbuf_u64(&r);
                m->trace_events.next_no = rbuf_u64(&r);
                m->trace_events.done = rbuf_u8(&r);
                m->trace_events.n = rbuf_u16(&r);
                if (r.bad || m->trace_events.done > 1)
                        return -EBADMSG;
                m->trace_events.p = r.p + r.off;
                m->trace_events.len = r.len - r.off;
                /* every event well-formed, and nothing after them */
                struct rbuf t = { .p = m->trace_events.p, .len = m->trace_events.len };
                struct dchat_trace_event e;
                for (unsigned i = 0; i < m->trace_events.n; i++)
                        if (proto_trace_next(&t, m->trace_events.n_names, &e) <= 0)
                                return -EBADMSG;
                if (t.off != t.len)
                        return -EBADMSG;
                r.off = r.len;
                break;
        }
        case MSG_TRACE_END: {
                m->trace_end.asked = rbuf_u16(&r);
                m->trace_end.n = rbuf_u16(&r);
                if (r.bad || m->trace_end.n > m->trace_end.asked || m->trace_end.asked > DCHAT_PEERS_MAX)
                        return -EBADMSG;
                m->trace_end.p = r.p + r.off;
                m->trace_end.len = r.len - r.off;
                struct rbuf t = { .p = m->trace_end.p, .len = m->trace_end.len };
                struct dchat_str name, why;
                uint64_t events;
                for (unsigned i = 0; i < m->trace_end.n; i++)
                        if (proto_trace_missing_next(&t, &name, &events, &why) <= 0)
                                return -EBADMSG;
                if (t.off != t.len)
                        return -EBADMSG;
                r.off = r.len;
                break;
        }
        case MSG_WHO:
                m->who.watch = rbuf_u8(&r);
                if (m->who.watch > 1)
                        return -EBADMSG;
                break;
        case MSG_PRESENCE: {
                m->presence.node = rbuf_str(&r);
                m->presence.role = rbuf_u8(&r);
                m->presence.state = rbuf_u8(&r);
                m->presence.flags = rbuf_u8(&r);
                m->presence.since = rbuf_u32(&r);
                m->presence.note = rbuf_str(&r);
                m->presence.more = rbuf_u16(&r);
                m->presence.n = rbuf_u16(&r);
                /* names, states and notes are printed as they are: a node name's characters, text */
                if (r.bad || m->presence.node.len == 0 || m->presence.node.len > DCHAT_NAME_MAX ||
                    !name_chars_valid(m->presence.node.p, m->presence.node.len) ||
                    (m->presence.role != ROLE_SERVER && m->presence.role != ROLE_PEER) ||
                    m->presence.state >= _NODE_STATE_MAX || (m->presence.flags & ~PRESENCE_FLAGS) ||
                    m->presence.note.len > DCHAT_NOTE_MAX ||
                    (m->presence.note.len && text_validate(m->presence.note.p, m->presence.note.len, NULL) < 0) ||
                    m->presence.n > DCHAT_PRESENCE_MAX ||
                    ((m->presence.n || m->presence.more) && !(m->presence.flags & PRESENCE_USERS_KNOWN)))
                        return -EBADMSG;
                m->presence.p = r.p + r.off;
                m->presence.len = r.len - r.off;
                /* every user well-formed, each once (in order), and nothing after them */
                struct rbuf u = { .p = m->presence.p, .len = m->presence.len };
                struct dchat_str name, prev = { "", 0 };
                uint8_t kinds;
                for (unsigned i = 0; i < m->presence.n; i++) {
                        if (proto_presence_next(&u, &name, &kinds) <= 0)
                                return -EBADMSG;
                        if (i > 0) {
                                int c = memcmp(prev.p, name.p, prev.len < name.len ? prev.len : name.len);
                                if (c > 0 || (c == 0 && prev.len >= name.len))
                                        return -EBADMSG;
                        }
                        prev = name;
                }
                if (u.off != u.len)
                        return -EBADMSG;
                r.off = r.len;
                break;
        }
        case MSG_POST_WAIT:
                m->post_wait.wait_ms = rbuf_u32(&r);
                m->post_wait.reason = rbuf_str(&r);
                /* printed as it is */
                if (r.bad || m->post_wait.reason.len == 0 || m->post_wait.reason.len > DCHAT_ERROR_MAX ||
                    text_validate(m->post_wait.reason.p, m->post_wait.reason.len, NULL) < 0)
                        return -EBADMSG;
                break;
        case MSG_LOCK:
                m->lock.op = rbuf_u8(&r);
                m->lock.ts = rbuf_u64(&r);
                m->lock.clock = rbuf_u64(&r);
                if (m->lock.op >= _LOCK_OP_MAX || !entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->lock.vc = &entry->vc;
                break;
        case MSG_GRANT:
                m->grant.ts = rbuf_u64(&r);
                m->grant.clock = rbuf_u64(&r);
                if (!entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->grant.vc = &entry->vc;
                break;
        case MSG_TOKEN_REQUEST:
                m->token_request.gen = rbuf_u64(&r);
                m->token_request.sn = rbuf_u64(&r);
                m->token_request.ts = rbuf_u64(&r);
                /* generations and request numbers grow like clocks: bounded like them (proto.h) */
                if (m->token_request.gen > DCHAT_CLOCK_MAX || m->token_request.sn > DCHAT_CLOCK_MAX || !entry ||
                    proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->token_request.vc = &entry->vc;
                break;
        case MSG_TOKEN: {
                uint64_t seen = 0;
                m->token.clock = rbuf_u64(&r);
                m->token.ts = rbuf_u64(&r);
                m->token.gen = rbuf_u64(&r);
                m->token.hop = rbuf_u64(&r);
                m->token.n = rbuf_u8(&r);
                if (m->token.n > DCHAT_PEERS_MAX || m->token.gen > DCHAT_CLOCK_MAX || m->token.hop > DCHAT_CLOCK_MAX)
                        return -EBADMSG;
                for (unsigned i = 0; i < m->token.n; i++)
                        if ((m->token.ln[i] = rbuf_varint(&r)) > DCHAT_CLOCK_MAX)
                                return -EBADMSG;
                m->token.qn = rbuf_u8(&r);
                if (m->token.qn > m->token.n)
                        return -EBADMSG;
                for (unsigned i = 0; i < m->token.qn; i++) {
                        uint8_t j = rbuf_u8(&r);
                        /* a peer of the token, each once: the queue cannot grow past the peers */
                        if (j >= m->token.n || (seen & (UINT64_C(1) << j)))
                                return -EBADMSG;
                        seen |= UINT64_C(1) << j;
                        m->token.q[i] = j;
                }
                if (r.bad || !entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->token.vc = &entry->vc;
                break;
        }
        case MSG_TOKEN_PROBE:
                m->probe.kind = rbuf_u8(&r);
                m->probe.round = rbuf_u64(&r);
                m->probe.gen = rbuf_u64(&r);
                m->probe.down = rbuf_u64(&r);
                m->probe.holds = rbuf_u8(&r);
                m->probe.wanted = rbuf_u8(&r);
                m->probe.sn = rbuf_u64(&r);
                m->probe.ts = rbuf_u64(&r);
                m->probe.clock = rbuf_u64(&r);
                if (m->probe.kind > 2 || m->probe.holds > 1 || m->probe.wanted > 1 || m->probe.round > DCHAT_CLOCK_MAX ||
                    m->probe.gen > DCHAT_CLOCK_MAX || m->probe.sn > DCHAT_CLOCK_MAX || m->probe.ts > DCHAT_CLOCK_MAX ||
                    m->probe.clock > DCHAT_CLOCK_MAX ||
                    !entry || proto_get_vclock(&r, &entry->vc) < 0)
                        return -EBADMSG;
                m->probe.vc = &entry->vc;
                break;
        case MSG_LEAVE:
                m->leave.incarnation = rbuf_u64(&r);
                m->leave.clock = rbuf_u64(&r);
                break;
        case MSG_RELOAD:
                break;
        case MSG_RELOAD_REPLY:
                m->reload_reply.text = rbuf_str(&r);
                if (r.bad || text_validate(m->reload_reply.text.p, m->reload_reply.text.len, NULL) < 0)
                        return -EBADMSG;
                break;
        case MSG_NOTE:
                m->note.op = rbuf_u8(&r);
                m->note.flags = rbuf_u8(&r);
                m->note.key = rbuf_str(&r);
                m->note.value = rbuf_str(&r);
                m->note.delta = (int64_t) rbuf_u64(&r);
                m->note.expect = rbuf_u64(&r);
                m->note.fence = rbuf_u64(&r);
                m->note.fence_idx = rbuf_u32(&r);
                m->note.op_id = rbuf_u64(&r);
                m->note.time = (int64_t) rbuf_u64(&r);
                if (r.bad || m->note.op == 0 || m->note.op >= _NOTE_OP_MAX || (m->note.flags & ~NOTE_REQ_FLAGS))
                        return -EBADMSG;
                /* a list names no key; everything else one valid key */
                if (m->note.op == NOTE_LIST ? m->note.key.len != 0 : !note_key_valid(m->note.key.p, m->note.key.len))
                        return -EBADMSG;
                if (m->note.op == NOTE_SET ? m->note.value.len > DCHAT_VALUE_MAX ||
                                             text_validate(m->note.value.p, m->note.value.len, NULL) < 0
                                           : m->note.value.len != 0)
                        return -EBADMSG;
                break;
        case MSG_NOTE_REPLY:
                m->note_reply.flags = rbuf_u8(&r);
                m->note_reply.key = rbuf_str(&r);
                m->note_reply.value = rbuf_str(&r);
                m->note_reply.version = rbuf_u64(&r);
                m->note_reply.node = rbuf_str(&r);
                m->note_reply.time = (int64_t) rbuf_u64(&r);
                if (r.bad || (m->note_reply.flags & ~NOTE_REPLY_FLAGS))
                        return -EBADMSG;
                /* a note found: its key, value and writer valid; none: nothing of them */
                if (m->note_reply.flags & NOTE_FOUND ?
                    !note_key_valid(m->note_reply.key.p, m->note_reply.key.len) ||
                    m->note_reply.value.len > DCHAT_VALUE_MAX ||
                    text_validate(m->note_reply.value.p, m->note_reply.value.len, NULL) < 0 ||
                    m->note_reply.node.len == 0 || m->note_reply.node.len > DCHAT_NAME_MAX ||
                    !name_chars_valid(m->note_reply.node.p, m->note_reply.node.len) :
                    (m->note_reply.key.len && !note_key_valid(m->note_reply.key.p, m->note_reply.key.len)) ||
                    m->note_reply.value.len || m->note_reply.node.len)
                        return -EBADMSG;
                break;
        default:
                return -EBADMSG;
        }
        if (r.bad || r.off != r.len)
                return -EBADMSG;
        return 0;
}

int proto_cluster_next(struct rbuf *r, uint8_t *role, struct dchat_str *name, struct dchat_str *address)
{
        if (r->off == r->len)
                return 0;
        *role = rbuf_u8(r);
        *name = rbuf_str(r);
        *address = rbuf_str(r);
        if (r->bad || (*role != ROLE_SERVER && *role != ROLE_PEER) || name->len == 0 ||
            name->len > DCHAT_NAME_MAX || address->len == 0 || address->len > 255)
                return -EBADMSG;
        /* they end up in log lines: a node name's characters, an address's printable ones */
        if (!name_chars_valid(name->p, name->len) || !address_chars_valid(address->p, address->len))
                return -EBADMSG;
        return 1;
}

void proto_verify_put(struct wbuf *b, const char *name, uint64_t first_seq, uint64_t last_seq, uint8_t kind,
                      const struct dchat_entry *e, const char *reason)
{
        wbuf_put_str(b, name, strlen(name));
        wbuf_put_u64(b, first_seq);
        wbuf_put_u64(b, last_seq);
        wbuf_put_u8(b, kind);
        if (kind == VERIFY_ENTRY)
                proto_put_entry(b, e);
        else if (kind == VERIFY_DAMAGED)
                wbuf_put_str(b, reason, strlen(reason));
}

int proto_verify_next(struct rbuf *r, struct dchat_verify_server *s)
{
        if (r->off == r->len)
                return 0;
        s->name = rbuf_str(r);
        s->first_seq = rbuf_u64(r);
        s->last_seq = rbuf_u64(r);
        s->kind = rbuf_u8(r);
        s->reason = (struct dchat_str) { "", 0 };
        if (r->bad || s->name.len == 0 || s->name.len > DCHAT_NAME_MAX || !name_chars_valid(s->name.p, s->name.len))
                return -EBADMSG;
        switch (s->kind) {
        case VERIFY_NONE:
        case VERIFY_ABSENT:
                return 1;
        case VERIFY_ENTRY:
                return s->entry && proto_get_entry(r, s->entry) == 0 ? 1 : -EBADMSG;
        case VERIFY_DAMAGED:
                /* printed as it is, like ENTRY_DAMAGED's */
                s->reason = rbuf_str(r);
                if (r->bad || s->reason.len == 0 || s->reason.len > DCHAT_REASON_MAX ||
                    text_validate(s->reason.p, s->reason.len, NULL) < 0)
                        return -EBADMSG;
                return 1;
        default:
                return -EBADMSG;
        }
}

/* --- trace events -------------------------------------------------------------- */

static const char *const trace_kinds[_TK_MAX] = {
        [TK_REQUEST_SENT] = "request-sent",
        [TK_REQUEST_RECEIVED] = "request-received",
        [TK_REPLY_SENT] = "reply-sent",
        [TK_REPLY_DEFERRED] = "reply-deferred",
        [TK_REPLY_RECEIVED] = "reply-received",
        [TK_CS_ENTER] = "cs-enter",
        [TK_CS_EXIT] = "cs-exit",
        [TK_POST_STORED] = "post-stored",
        [TK_POST_FAILED] = "post-failed",
        [TK_POST_RETRIED] = "post-retried",
        [TK_PEER_UP] = "peer-up",
        [TK_PEER_DOWN] = "peer-down",
        [TK_PEER_SUSPECT] = "peer-suspect",
        [TK_PEER_DEAD] = "peer-dead",
        [TK_PEER_ALIVE] = "peer-alive",
        [TK_PEER_RESTARTED] = "peer-restarted",
        [TK_PEER_LEFT] = "peer-left",
        [TK_REQUEST_QUEUED] = "request-queued",
};

const char *proto_trace_kind_name(uint8_t kind)
{
        return kind > 0 && kind < _TK_MAX ? trace_kinds[kind] : NULL;
}

uint8_t proto_trace_kind_by_name(const char *name)
{
        for (uint8_t k = 1; k < _TK_MAX; k++)
                if (strcmp(trace_kinds[k], name) == 0)
                        return k;
        return 0;
}

void proto_trace_put(struct wbuf *b, const struct dchat_trace_event *e)
{
        wbuf_put_varint(b, e->no);
        wbuf_put_u64(b, e->time_us);
        wbuf_put_u8(b, e->kind);
        wbuf_put_u8(b, e->peer);
        wbuf_put_varint(b, e->lamport);
        wbuf_put_varint(b, e->request_ts);
        wbuf_put_varint(b, e->fence);
        wbuf_put_varint(b, e->fence_idx);
        wbuf_put_varint(b, e->seq);
        wbuf_put_varint(b, e->send_vt);
        proto_put_vclock(b, &e->vc);
}

int proto_trace_next(struct rbuf *r, unsigned n_names, struct dchat_trace_event *e)
{
        if (r->off == r->len)
                return 0;
        e->no = rbuf_varint(r);
        e->time_us = rbuf_u64(r);
        e->kind = rbuf_u8(r);
        e->peer = rbuf_u8(r);
        e->lamport = rbuf_varint(r);
        e->request_ts = rbuf_varint(r);
        e->fence = rbuf_varint(r);
        uint64_t idx = rbuf_varint(r);
        e->seq = rbuf_varint(r);
        e->send_vt = rbuf_varint(r);
        if (proto_get_vclock(r, &e->vc) < 0 || r->bad)
                return -EBADMSG;
        /* an event names its peer and carries its clocks as the page lists the peers */
        if (e->no == 0 || e->kind == 0 || e->kind >= _TK_MAX || idx > UINT32_MAX ||
            (e->peer != DCHAT_TRACE_NONE && e->peer >= n_names) || (e->vc.n && e->vc.n != n_names) ||
            e->lamport > DCHAT_CLOCK_MAX || e->request_ts > DCHAT_CLOCK_MAX || e->fence > DCHAT_CLOCK_MAX ||
            e->send_vt > DCHAT_CLOCK_MAX)
                return -EBADMSG;
        e->fence_idx = (uint32_t) idx;
        return 1;
}

int proto_trace_name_next(struct rbuf *r, struct dchat_str *name)
{
        if (r->off == r->len)
                return 0;
        *name = rbuf_str(r);
        if (r->bad || name->len == 0 || name->len > DCHAT_NAME_MAX || !name_chars_valid(name->p, name->len))
                return -EBADMSG;
        return 1;
}

void proto_trace_missing_put(struct wbuf *b, const char *name, uint64_t events, const char *why)
{
        wbuf_put_str(b, name, strlen(name));
        wbuf_put_u64(b, events);
        wbuf_put_str(b, why, strlen(why));
}

int proto_trace_missing_next(struct rbuf *r, struct dchat_str *name, uint64_t *events, struct dchat_str *why)
{
        if (r->off == r->len)
                return 0;
        *name = rbuf_str(r);
        *events = rbuf_u64(r);
        *why = rbuf_str(r);
        /* printed as they are: a name's characters, a text without control characters */
        if (r->bad || name->len == 0 || name->len > DCHAT_NAME_MAX || !name_chars_valid(name->p, name->len) ||
            why->len == 0 || why->len > DCHAT_TRACE_WHY_MAX || text_validate(why->p, why->len, NULL) < 0)
                return -EBADMSG;
        return 1;
}

void proto_presence_put(struct wbuf *b, const char *name, uint8_t kinds)
{
        wbuf_put_str(b, name, strlen(name));
        wbuf_put_u8(b, kinds);
}

int proto_presence_next(struct rbuf *r, struct dchat_str *name, uint8_t *kinds)
{
        if (r->off == r->len)
                return 0;
        *name = rbuf_str(r);
        *kinds = rbuf_u8(r);
        /* a login name as dchatd takes it (control.c): text, printed as it is */
        if (r->bad || name->len == 0 || name->len > DCHAT_NAME_MAX || text_validate(name->p, name->len, NULL) < 0 ||
            *kinds == 0 || (*kinds & ~PRESENCE_KINDS))
                return -EBADMSG;
        return 1;
}

const char *node_state_name(uint8_t state)
{
        switch (state) {
        case NODE_UP:
                return "up";
        case NODE_DOWN:
                return "down";
        case NODE_SUSPECT:
                return "suspect";
        case NODE_DEAD:
                return "dead";
        default:
                return "unknown";
        }
}
