/* SPDX-License-Identifier: MIT */
/*
 * fuzz-handshake.c — libFuzzer target for the link handshake and record
 * layer (daemon/secure.c).  The first byte picks the side under attack
 * (bit 0: responder, or initiator after sending M1; bit 1: either end of a
 * link whose handshake went through, so that the rest lands in the record
 * layer), the handshake (bit 2: version 2, host keys, listed for node1 and
 * node2; bit 3: with the cluster key as well) and how the input is cut
 * into reads (bits 4-7); the rest is what the network delivers.
 * Whatever arrives, the state machine must neither crash, nor read out of
 * bounds, nor open a link without the keys, nor deliver a forged record.  Built by `make fuzz` with the daemon objects.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "secure.h"

/* fixed host keys for node1 and node2 (seeds 1.. and 2..) */
static uint8_t pks[2][SECURE_PK_BYTES], sks[2][SECURE_SK_BYTES];

static bool key_of(void *ud, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        (void) ud;
        if (strcmp(name, "node1") != 0 && strcmp(name, "node2") != 0)
                return false;
        memcpy(pk, pks[name[4] - '1'], SECURE_PK_BYTES);
        return true;
}

static int any(void *ud, const char *name, uint8_t role, char *why, size_t cap)
{
        (void) ud;
        (void) role;
        (void) why;
        (void) cap;
        return strcmp(name, "blocked") == 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const uint8_t key[SECURE_KEY_BYTES] = { 1, 2, 3 };
        struct secure *s;
        struct wbuf out = {0}, plain = {0}, in = {0};

        if (size < 1)
                return 0;
        bool initiator = data[0] & 1;
        bool opened = data[0] & 2;      /* attack an established link */
        bool v2 = data[0] & 4, both = data[0] & 8;
        size_t chunk = (size_t) (data[0] >> 4) + 1;
        data++;
        size--;
        static bool made;
        if (!made) {
                uint8_t seed[crypto_sign_SEEDBYTES];
                made = true;
                if (sodium_init() < 0)
                        abort();
                for (int k = 0; k < 2; k++) {
                        memset(seed, k + 1, sizeof seed);
                        crypto_sign_seed_keypair(pks[k], sks[k], seed);
                }
        }
        const uint8_t *ck = !v2 || both ? key : NULL;
        struct secure_params p = { .key = ck, .host_sk = v2 ? sks[!initiator] : NULL, .initiator = initiator,
                                   .self = initiator ? "node1" : "node2", .role = ROLE_PEER,
                                   .expect = initiator ? "node2" : NULL, .check = any,
                                   .key_of = v2 ? key_of : NULL };
        if (secure_new(&p, &s) < 0)
                return 0;
        (void) secure_start(s, &out);
        if (opened) {
                /* a real other end runs the handshake with s first */
                struct secure *o;
                struct secure_params q = { .key = ck, .host_sk = v2 ? sks[initiator] : NULL, .initiator = !initiator,
                                           .self = initiator ? "node2" : "node1", .role = ROLE_PEER,
                                           .expect = initiator ? NULL : "node2", .check = any,
                                           .key_of = v2 ? key_of : NULL };
                struct wbuf to_s = {0};
                size_t used;
                if (secure_new(&q, &o) < 0)
                        abort();
                (void) secure_start(o, &to_s);
                for (int k = 0; k < 3 && !(secure_is_open(s) && secure_is_open(o)); k++) {
                        if (secure_input(o, out.data, out.len, &used, &to_s, &plain) < 0)
                                abort();
                        wbuf_consume(&out, used);
                        if (secure_input(s, to_s.data, to_s.len, &used, &out, &plain) < 0)
                                abort();
                        wbuf_consume(&to_s, used);
                }
                if (!secure_is_open(s) || !secure_is_open(o))
                        abort();
                secure_free(o);
                wbuf_free(&to_s);
        }
        for (size_t off = 0; off < size; off += chunk) {
                size_t n = size - off < chunk ? size - off : chunk, used;
                wbuf_put(&in, data + off, n);
                int r = secure_input(s, in.data, in.len, &used, &out, &plain);
                if (used > in.len)
                        abort();
                wbuf_consume(&in, used);
                if (r < 0)
                        break;
        }
        /* The proofs are keyed over fresh randomness of ours: no input can
         * open the link, whichever side we play; and no record the input
         * makes up can authenticate under keys it never saw. */
        if ((!opened && secure_is_open(s)) || plain.len > 0)
                abort();
        secure_free(s);
        wbuf_free(&out);
        wbuf_free(&plain);
        wbuf_free(&in);
        return 0;
}
