/* SPDX-License-Identifier: MIT */
/*
 * test-secure.c — the link handshake and record layer (daemon/secure.c):
 * two state machines talk through buffers; an attacker in the middle
 * changes, drops, replays or reorders bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

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

/* ---- version 2: host keys ---- */

struct host {
        const char *name;
        uint8_t pk[SECURE_PK_BYTES];
        uint8_t sk[SECURE_SK_BYTES];
};
static struct host hosts[5] = { { .name = "node1" }, { .name = "node2" }, { .name = "node3" }, { .name = "node4" }, { .name = NULL } };

/* ud: what one end's config lists, a bit per host of hosts[] */
static bool key_of(void *ud, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        unsigned mask = *(const unsigned *) ud;
        for (unsigned k = 0; hosts[k].name; k++)
                if ((mask & (1u << k)) && strcmp(hosts[k].name, name) == 0) {
                        memcpy(pk, hosts[k].pk, SECURE_PK_BYTES);
                        return true;
                }
        return false;
}

/* an end named self with the cluster key key (or NULL), host key sk (or NULL), listing *lists */
static void end_v2(struct end *e, const uint8_t *key, const uint8_t *sk, bool initiator, const char *self,
                   const char *expect, unsigned *lists)
{
        *e = (struct end) {0};
        struct secure_params p = { .key = key, .host_sk = sk, .initiator = initiator, .self = self,
                                   .role = ROLE_PEER, .expect = expect, .check = only_peers,
                                   .key_of = key_of, .userdata = lists };
        if (secure_new(&p, &e->s) < 0)
                abort();
}

static bool peer_key_is(const struct end *e, const struct host *h)
{
        uint8_t pk[SECURE_PK_BYTES];
        return secure_peer_key(e->s, pk) && memcmp(pk, h->pk, sizeof pk) == 0;
}

static void test_v2_good(void)
{
        struct end i, r;
        unsigned all = 0xf;
        uint8_t text_pk[SECURE_PK_BYTES];

        /* host keys only, no cluster key */
        end_v2(&i, NULL, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s), "host keys, no cluster key: both ends open (%s / %s)",
           secure_error(i.s), secure_error(r.s));
        ok(peer_key_is(&r, &hosts[0]) && peer_key_is(&i, &hosts[1]), "each end knows the key the other proved");
        ok(!secure_by_cluster_key(i.s) && !secure_by_cluster_key(r.s), "neither end got in by the cluster key");
        seal(&i, &r, "signed");
        deliver(&r, &i);
        ok(r.error == 0 && got(&r, "signed"), "a record goes through");
        seal(&r, &i, "back");
        deliver(&i, &r);
        ok(i.error == 0 && got(&i, "back"), "and one back");
        end_free(&i);
        end_free(&r);

        /* host keys and the cluster key */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s), "host keys and the cluster key: both ends open");
        end_free(&i);
        end_free(&r);

        /* ... but different cluster keys: the host keys do not paper over it */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_b, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(!secure_is_open(i.s) && !secure_is_open(r.s), "host keys, different cluster keys: refused (%s)",
           secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* the migration: node1 has a host key (listed at node2), node2 has
         * only the cluster key, and node1 does not list it yet */
        unsigned only1 = 1, none = 0;
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &none);
        end_v2(&r, key_a, NULL, false, "node2", NULL, &only1);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s), "half migrated: both ends open (%s / %s)",
           secure_error(i.s), secure_error(r.s));
        ok(secure_by_cluster_key(i.s) && !secure_by_cluster_key(r.s),
           "the initiator took node2 by the cluster key, node2 took node1 by its host key");
        end_free(&i);
        end_free(&r);

        /* a host without a host key (it speaks version 1, as an older dchatd
         * does) and one with a host key that lists nobody: version 1; the other
         * way round version 2 (this dchatd understands it), by the cluster key */
        end_new(&i, key_a, true, "node1", "node2");
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &none);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s) && !secure_peer_key(i.s, text_pk),
           "a version 1 initiator, a responder with a host key: version 1 (%s)", secure_error(r.s));
        end_free(&i);
        end_free(&r);
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &none);
        end_new(&r, key_a, false, "node2", NULL);
        handshake(&i, &r);
        ok(secure_is_open(i.s) && secure_is_open(r.s) && secure_by_cluster_key(i.s) && secure_by_cluster_key(r.s) &&
           peer_key_is(&r, &hosts[0]), "an initiator with a host key, a responder with the cluster key only: "
           "version 2, both in by the cluster key (%s)", secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* an unlisted host key, but the cluster key in common: in, by the cluster key */
        end_v2(&i, key_a, hosts[3].sk, true, "node4", "node2", &none);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &only1);
        handshake(&i, &r);
        ok(secure_is_open(r.s) && secure_by_cluster_key(r.s), "an unlisted key with the cluster key: in by the cluster key");
        end_free(&i);
        end_free(&r);
}

static void test_v2_refused(void)
{
        struct end i, r;
        unsigned all = 0xf, no4 = 0x7;
        char text[SECURE_PK_TEXT];

        /* node3 proves its own key, then claims node1's name */
        end_v2(&i, key_a, hosts[2].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(!secure_is_open(r.s) && secure_failed(r.s) && !secure_is_open(i.s),
           "node3's key under node1's name: refused (%s)", secure_error(r.s));
        ok(strstr(secure_error(r.s), secure_pk_text(hosts[2].pk, text)) != NULL, "the reason names the key presented");
        end_free(&i);
        end_free(&r);

        /* the same, toward the initiator: node3 answers as node2 */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[2].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_failed(i.s) && !secure_is_open(r.s), "node3's key answering as node2: refused (%s)", secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* node1's public key, but not its secret (signs with node3's seed) */
        uint8_t fake[SECURE_SK_BYTES];
        memcpy(fake, hosts[2].sk, 32);
        memcpy(fake + 32, hosts[0].pk, 32);
        end_v2(&i, NULL, fake, true, "node1", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "signature"), "node1's public key without its secret: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);
        memcpy(fake, hosts[2].sk, 32);
        memcpy(fake + 32, hosts[1].pk, 32);
        end_v2(&i, NULL, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, NULL, fake, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_failed(i.s) && strstr(secure_error(i.s), "signature"), "node2's public key without its secret: %s",
           secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* an unlisted key, no cluster key */
        end_v2(&i, NULL, hosts[3].sk, true, "node4", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &no4);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "unlisted") &&
           strstr(secure_error(r.s), secure_pk_text(hosts[3].pk, text)), "an unlisted key: %s", secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* no listed key, cluster key on one side only */
        end_v2(&i, key_a, hosts[3].sk, true, "node4", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &no4);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "no cluster key"), "unlisted, and no cluster key here: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);
}

/* the M1 an end would send, rewritten as version 1: no flags, no host key */
static void as_v1(struct wbuf *b)
{
        uint8_t *p = b->data + 4;
        size_t nl = p[6], hello = 7 + nl + SECURE_NONCE_BYTES + 32;
        p[4] = 1;
        b->len = 4 + hello;
        b->data[0] = b->data[1] = b->data[2] = 0;
        b->data[3] = (uint8_t) hello;
}

static void test_v2_downgrade(void)
{
        struct end i, r;
        unsigned all = 0xf, no1 = 0xe;

        /* node1 is listed at node2 but speaks version 1 (cluster key only) */
        end_new(&i, key_a, true, "node1", "node2");
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "no downgrade"), "a listed member speaking version 1: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* node1 is listed at node2, speaks version 2 with the cluster key but no host key */
        end_v2(&i, key_a, NULL, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &all);
        handshake(&i, &r);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "presented none"), "a listed member without its key: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* node2 is listed at node1, answers with the cluster key only */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, NULL, false, "node2", NULL, &no1);
        handshake(&i, &r);
        ok(secure_failed(i.s) && strstr(secure_error(i.s), "presented none"), "the dialed member without its key: %s",
           secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* a man in the middle rewrites node1's version 2 M1 as version 1;
         * node2 does not list node1 (so it may take version 1), and answers
         * in version 1: node1 refuses that */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &no1);
        secure_start(i.s, &r.in);
        as_v1(&r.in);
        deliver(&r, &i);
        ok(r.error == 0 && i.in.len > 0, "node2 answers the rewritten M1");
        deliver(&i, &r);
        ok(secure_failed(i.s) && strstr(secure_error(i.s), "no downgrade"), "node1 refuses the version 1 answer: %s",
           secure_error(i.s));
        end_free(&i);
        end_free(&r);

        /* the same man in the middle drops the cluster-key flag (no key listed for node1 at node2) */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &no1);
        secure_start(i.s, &r.in);
        size_t flags_at = 4 + 7 + 5 + SECURE_NONCE_BYTES + 32;
        r.in.data[flags_at] &= (uint8_t) ~2;
        for (int k = 0; k < 3; k++) {
                deliver(&r, &i);
                deliver(&i, &r);
        }
        ok(!secure_is_open(i.s) && !secure_is_open(r.s), "the cluster-key flag dropped: no end opens (%s / %s)",
           secure_error(i.s), secure_error(r.s));
        end_free(&i);
        end_free(&r);

        /* ... or the host key stripped from M1 while node1 is listed */
        end_v2(&i, key_a, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, key_a, hosts[1].sk, false, "node2", NULL, &all);
        secure_start(i.s, &r.in);
        r.in.data[flags_at] = 2;
        r.in.len -= SECURE_PK_BYTES;
        r.in.data[3] -= SECURE_PK_BYTES;
        deliver(&r, &i);
        ok(secure_failed(r.s) && strstr(secure_error(r.s), "no downgrade"), "host key stripped from M1: %s",
           secure_error(r.s));
        end_free(&i);
        end_free(&r);
}

static void test_v2_replay(void)
{
        struct end i, r, r2;
        unsigned all = 0xf;
        struct wbuf m1 = {0}, m3 = {0};

        /* record node1's M1 and M3 of a good handshake */
        end_v2(&i, NULL, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &all);
        secure_start(i.s, &r.in);
        wbuf_put(&m1, r.in.data, r.in.len);
        deliver(&r, &i);
        deliver(&i, &r);
        wbuf_put(&m3, r.in.data, r.in.len);
        deliver(&r, &i);
        ok(secure_is_open(i.s) && secure_is_open(r.s), "recorded a good handshake");
        end_free(&i);
        end_free(&r);

        /* and play them to node2 again */
        end_v2(&r2, NULL, hosts[1].sk, false, "node2", NULL, &all);
        struct end sink = {0};
        wbuf_put(&r2.in, m1.data, m1.len);
        deliver(&r2, &sink);
        ok(r2.error == 0 && sink.in.len > 0, "the replayed M1 is answered (it is well formed)");
        wbuf_put(&r2.in, m3.data, m3.len);
        deliver(&r2, &sink);
        ok(!secure_is_open(r2.s) && secure_failed(r2.s), "the replayed M3 does not open the link: %s",
           secure_error(r2.s));
        end_free(&r2);
        wbuf_free(&sink.in);
        wbuf_free(&m1);
        wbuf_free(&m3);

        /* every single bit flip of M2 (node2 signs it) is caught */
        unsigned opened = 0, total = 0;
        end_v2(&i, NULL, hosts[0].sk, true, "node1", "node2", &all);
        end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &all);
        secure_start(i.s, &r.in);
        deliver(&r, &i);
        size_t m2len = i.in.len;
        end_free(&i);
        end_free(&r);
        for (size_t bit = 32; bit < m2len * 8; bit += 7) {
                end_v2(&i, NULL, hosts[0].sk, true, "node1", "node2", &all);
                end_v2(&r, NULL, hosts[1].sk, false, "node2", NULL, &all);
                secure_start(i.s, &r.in);
                deliver(&r, &i);
                i.in.data[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                deliver(&i, &r);
                total++;
                opened += secure_is_open(i.s);
                end_free(&i);
                end_free(&r);
        }
        is_int(opened, 0, "none of %u bit flips of a signed M2 opens the link", total);
}

static void test_pk_text(void)
{
        char text[SECURE_PK_TEXT];
        uint8_t pk[SECURE_PK_BYTES];

        secure_pk_text(hosts[0].pk, text);
        is_int((int) strlen(text), 44, "a public key is 44 characters of base64");
        ok(secure_pk_parse(text, pk) == 0 && memcmp(pk, hosts[0].pk, sizeof pk) == 0, "and parses back");
        text[43] = '\0';
        ok(secure_pk_parse(text, pk) == -EINVAL, "one character short: refused");
        secure_pk_text(hosts[0].pk, text);
        text[5] = '*';
        ok(secure_pk_parse(text, pk) == -EINVAL, "a character outside base64: refused");
        uint8_t ident[SECURE_PK_BYTES] = { 1 };         /* the neutral element: small order */
        ok(secure_pk_parse(secure_pk_text(ident, text), pk) == -EINVAL, "a small-order point: refused");
        ok(secure_pk_parse("", pk) == -EINVAL, "empty: refused");
}

int main(void)
{
        plan_no_plan();
        memset(key_a, 0xa5, sizeof key_a);
        memset(key_b, 0xa5, sizeof key_b);
        key_b[31] ^= 1;         /* one bit off */
        for (unsigned k = 0; hosts[k].name; k++)
                crypto_sign_keypair(hosts[k].pk, hosts[k].sk);
        test_good();
        test_wrong_key();
        test_names();
        test_records();
        test_garbage();
        test_v2_good();
        test_v2_refused();
        test_v2_downgrade();
        test_v2_replay();
        test_pk_text();
        return done_testing();
}
