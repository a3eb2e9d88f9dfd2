/* SPDX-License-Identifier: MIT */
/*
 * test-secure.c — the link handshake and record layer (daemon/secure.c):
 * two state machines talk through buffers; an attacker in the middle
 * changes, drops, replays or reorders bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "secure.h"
#include "tap.h"

static uint8_t key_a[SECURE_KEY_BYTES], key_b[SECURE_KEY_BYTES];

struct end {
        struct secure *s;
        struct wbuf in;         /* bytes on their way to this end */
        struct wbuf plain;      /* what it decrypted */
        int error;
};

static int only_peers(void *ud, const char *name, uint8_t role, char *why, size_t cap)
{
        (void) ud;
        if (role != ROLE_PEER || strncmp(name, "node", 4) != 0) {
                snprintf(why, cap, "'%s' is not a peer of this cluster", name);
                return -EPERM;
        }
        return 0;
}

static void end_new(struct end *e, const uint8_t *key, bool initiator, const char *self, const char *expect)
{
        *e = (struct end) {0};
        struct secure_params p = { .key = key, .initiator = initiator, .self = self, .role = ROLE_PEER,
                                   .expect = expect, .check = only_peers };
        if (secure_new(&p, &e->s) < 0)
                abort();
}

static void end_free(struct end *e)
{
        secure_free(e->s);
        wbuf_free(&e->in);
        wbuf_free(&e->plain);
}

/* Delivers what is queued for e; its answers go to other. */
static void deliver(struct end *e, struct end *other)
{
        size_t used;
        if (e->error)
                return;
        e->error = secure_input(e->s, e->in.data, e->in.len, &used, &other->in, &e->plain);
        wbuf_consume(&e->in, used);
}

/* Runs the handshake to its end (or failure). */
static void handshake(struct end *i, struct end *r)
{
        secure_start(i->s, &r->in);
        for (int k = 0; k < 4; k++) {
                deliver(r, i);
                deliver(i, r);
        }
}

static void seal(struct end *from, struct end *to, const char *text)
{
        if (secure_seal(from->s, (const uint8_t *) text, strlen(text), &to->in) < 0)
                abort();
}

static bool got(struct end *e, const char *text)
{
        bool r = e->plain.len == strlen(text) && memcmp(e->plain.data, text, e->plain.len) == 0;
        wbuf_reset(&e->plain);
        return r;
}

static void test_good(void)
{
        struct end i, r;
        end_new(&i, key_a, true, "node1", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s), "good handshake: both ends open");
        is_str(secure_peer_name(r.s), "node1", "the responder knows the initiator's name");
        is_str(secure_peer_name(i.s), "node2", "the initiator knows the responder's name");
        seal(&i, &r, "hello");
        seal(&i, &r, "world");
        deliver(&r, &i);
        ok(r.error == 0 && got(&r, "helloworld"), "two records i->r decrypted in order");
        seal(&r, &i, "back");
        deliver(&i, &r);
        ok(i.error == 0 && got(&i, "back"), "a record r->i decrypted");

        /* byte by byte */
        seal(&i, &r, "slowly");
        struct wbuf all = r.in;
        r.in = (struct wbuf) {0};
        for (size_t k = 0; k < all.len; k++) {
                wbuf_put(&r.in, all.data + k, 1);
                deliver(&r, &i);
        }
        ok(r.error == 0 && got(&r, "slowly") && r.in.len == 0, "a record fed one byte at a time");
        wbuf_free(&all);
        end_free(&i);
        end_free(&r);
}

static void test_wrong_key(void)
{
        struct end i, r;
        end_new(&i, key_b, true, "node1", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        handshake(&i, &r);
        ok(!secure_is_open(i.s) && secure_failed(i.s), "wrong key: the initiator refuses the responder's proof");
        ok(strstr(secure_error(i.s), "wrong cluster key") != NULL, "reason: %s", secure_error(i.s));
        ok(!secure_is_open(r.s), "wrong key: the responder never opens");
        end_free(&i);
        end_free(&r);

        /* an initiator that fakes M3 (it cannot know mac_i) */
        end_new(&i, key_a, true, "node1", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        struct end evil;
        end_new(&evil, key_b, true, "node1", "node2");
        secure_start(evil.s, &r.in);
        deliver(&r, &evil);
        deliver(&evil, &r);     /* evil fails: r's proof is for key_a */
        uint8_t m3[4 + 4 + SECURE_MAC_BYTES] = { 0, 0, 0, 36, 'D', 'C', 'H', '3' };
        for (size_t k = 8; k < sizeof m3; k++)
                m3[k] = (uint8_t) (k * 7);
        wbuf_reset(&r.in);
        wbuf_put(&r.in, m3, sizeof m3);
        deliver(&r, &i);
        ok(r.error < 0 && !secure_is_open(r.s), "a forged initiator proof is refused: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);
        end_free(&evil);
}

static void test_names(void)
{
        struct end i, r;
        /* we dialed node2 but node3 answered */
        end_new(&i, key_a, true, "node1", "node2");
        end_new(&r, key_a, false, "node3", NULL);
        handshake(&i, &r);
        ok(secure_failed(i.s) && strstr(secure_error(i.s), "node3"), "name mismatch: %s", secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* not a member */
        end_new(&i, key_a, true, "mallory", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "mallory"), "not a member: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* our own name */
        end_new(&i, key_a, true, "node2", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "own name"), "own name: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* a man in the middle renames the initiator in M1: the proofs break */
        end_new(&i, key_a, true, "node1", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        secure_start(i.s, &r.in);
        r.in.data[4 + 7 + 4] = '9';            /* node1 -> node9 */
        for (int k = 0; k < 3; k++) {
                deliver(&r, &i);
                deliver(&i, &r);
        }
        ok(!secure_is_open(i.s) && !secure_is_open(r.s), "renamed in M1: no end opens (%s)", secure_error(i.s));
        end_free(&i);
        end_free(&r);
}

static void open_pair(struct end *i, struct end *r)
{
        end_new(i, key_a, true, "node1", "node2");
        end_new(r, key_a, false, "node2", NULL);
        handshake(i, r);
        if (!secure_is_open(i->s) || !secure_is_open(r->s))
                abort();
}

static void test_records(void)
{
        struct end i, r;
        struct wbuf saved = {0};

        /* replay */
        open_pair(&i, &r);
        seal(&i, &r, "REPLY 1");
        wbuf_put(&saved, r.in.data, r.in.len);
        deliver(&r, &i);
        ok(got(&r, "REPLY 1"), "first copy accepted");
        wbuf_put(&r.in, saved.data, saved.len);
        deliver(&r, &i);
        ok(r.error == -EBADMSG && r.plain.len == 0, "replayed record refused: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* reorder */
        open_pair(&i, &r);
        seal(&i, &r, "one");
        size_t first = r.in.len;
        seal(&i, &r, "two");
        wbuf_reset(&saved);
        wbuf_put(&saved, r.in.data + first, r.in.len - first);
        wbuf_put(&saved, r.in.data, first);
        wbuf_reset(&r.in);
        wbuf_put(&r.in, saved.data, saved.len);
        deliver(&r, &i);
        ok(r.error == -EBADMSG && r.plain.len == 0, "reordered records refused: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* drop one in the middle */
        open_pair(&i, &r);
        seal(&i, &r, "one");
        wbuf_reset(&r.in);
        seal(&i, &r, "two");
        deliver(&r, &i);
        ok(r.error == -EBADMSG && r.plain.len == 0, "a record missing in the middle is detected");
        end_free(&i);
        end_free(&r);

        /* every single bit flip, in header and body */
        open_pair(&i, &r);
        seal(&i, &r, "flip me");
        wbuf_reset(&saved);
        wbuf_put(&saved, r.in.data, r.in.len);
        end_free(&i);
        end_free(&r);
        unsigned caught = 0, total = 0, waiting = 0;
        for (size_t bit = 0; bit < saved.len * 8; bit++) {
                /* a fresh pair each time: the same keys cannot be had twice, so
                 * re-seal with the new pair and flip the same bit */
                open_pair(&i, &r);
                seal(&i, &r, "flip me");
                r.in.data[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                deliver(&r, &i);
                total++;
                /* a flip that makes the length larger leaves the record
                 * waiting for bytes that, when they come, fail too */
                caught += r.plain.len == 0;
                waiting += r.error == 0 && r.plain.len == 0;
                end_free(&i);
                end_free(&r);
        }
        is_int(caught, total, "none of %u single-bit flips of a record is delivered", total);
        ok(waiting <= 32, "all but the length flips (%u) fail at once", waiting);

        /* truncation: a partial record is never delivered */
        open_pair(&i, &r);
        seal(&i, &r, "truncated");
        r.in.len -= 1;
        deliver(&r, &i);
        ok(r.error == 0 && r.plain.len == 0 && r.in.len > 0, "a truncated record is held back, not delivered");
        end_free(&i);
        end_free(&r);

        /* reflection: a record sent back to its sender */
        open_pair(&i, &r);
        seal(&i, &r, "mirror");
        wbuf_put(&i.in, r.in.data, r.in.len);
        deliver(&i, &r);
        ok(i.error == -EBADMSG && i.plain.len == 0, "a record reflected to its sender is refused");
        end_free(&i);
        end_free(&r);

        /* a plaintext dchat frame after the handshake */
        open_pair(&i, &r);
        struct dchat_msg m = { .type = MSG_REPLY, .reply = { 5, 3 } };
        proto_encode(&r.in, &m);
        deliver(&r, &i);
        ok(r.error < 0 && r.plain.len == 0, "a plaintext REPLY on an open link is refused: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* oversized record length */
        open_pair(&i, &r);
        uint8_t big[4] = { 0x7f, 0xff, 0xff, 0xff };
        wbuf_put(&r.in, big, 4);
        deliver(&r, &i);
        ok(r.error == -EMSGSIZE, "an oversized record length is refused before its bytes arrive");
        end_free(&i);
        end_free(&r);
        wbuf_free(&saved);
}

static void test_garbage(void)
{
        struct end i, r;

        /* a plaintext HELLO where M1 should be */
        end_new(&r, key_a, false, "node2", NULL);
        end_new(&i, key_a, true, "node1", "node2");
        struct dchat_msg m = { .type = MSG_HELLO, .hello = { { "node1", 5 }, ROLE_PEER, 1 } };
        proto_encode(&r.in, &m);
        deliver(&r, &i);
        ok(r.error < 0 && strstr(secure_error(r.s), "not a dchat handshake"), "plaintext HELLO refused: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* random bytes */
        end_new(&r, key_a, false, "node2", NULL);
        end_new(&i, key_a, true, "node1", "node2");
        wbuf_put(&r.in, "GET / HTTP/1.0\r\n\r\n", 18);
        deliver(&r, &i);
        ok(r.error < 0 && i.in.len == 0, "an HTTP request is refused, nothing answered");
        end_free(&i);
        end_free(&r);

        /* data before the handshake started (initiator) */
        end_new(&i, key_a, true, "node1", "node2");
        end_new(&r, key_a, false, "node2", NULL);
        wbuf_put(&i.in, "\0\0\0\4DCH2", 8);
        deliver(&i, &r);
        ok(i.error < 0, "bytes before M1 was sent are refused");
        /* a failed end stays failed */
        size_t used;
        ok(secure_input(i.s, (const uint8_t *) "x", 1, &used, &r.in, &i.plain) < 0 && used == 0,
           "a failed state machine refuses everything after");
        ok(secure_seal(i.s, (const uint8_t *) "x", 1, &r.in) == -ENOTCONN, "and seals nothing");
        end_free(&i);
        end_free(&r);
}

int main(void)
{
        plan_no_plan();
        memset(key_a, 0xa5, sizeof key_a);
        memset(key_b, 0xa5, sizeof key_b);
        key_b[31] ^= 1;         /* one bit off */
        test_good();
        test_wrong_key();
        test_names();
        test_records();
        test_garbage();
        return done_testing();
}
