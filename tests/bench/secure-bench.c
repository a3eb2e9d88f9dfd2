/* SPDX-License-Identifier: MIT */
/*
 * secure-bench — the CPU cost of the link layer alone (daemon/secure.c), without
 * sockets: how long a whole handshake takes (both sides: two X25519 key pairs and
 * shared secrets, the key schedule, three messages; version 1 with the cluster key,
 * version 2 with host keys: two Ed25519 signatures made and checked), how much of it
 * each end spends, and how long sealing and opening
 * one record takes for frames of the sizes a post produces.  Prints a table; asserts
 * nothing.  `secure-bench [HANDSHAKES [RECORDS]]` (defaults 2000 and 200000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "secure.h"

static uint8_t pk1[SECURE_PK_BYTES], sk1[SECURE_SK_BYTES], pk2[SECURE_PK_BYTES], sk2[SECURE_SK_BYTES];

static bool key_of(void *ud, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        (void) ud;
        memcpy(pk, strcmp(name, "node1") == 0 ? pk1 : pk2, SECURE_PK_BYTES);
        return true;
}

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double t_init, t_resp;          /* time spent by each end of the handshakes */

static void pump(struct secure *s, struct wbuf *in, struct wbuf *out, struct wbuf *plain)
{
        size_t used;
        if (secure_input(s, in->data, in->len, &used, out, plain) < 0) {
                fprintf(stderr, "secure-bench: %s\n", secure_error(s));
                exit(1);
        }
        wbuf_consume(in, used);
}

/* hostkeys: version 2, each end with a host key the other lists (and key, if not NULL) */
static void pair(const uint8_t *key, bool hostkeys, struct secure **i, struct secure **r)
{
        struct wbuf a = {0}, b = {0}, plain = {0};
        struct secure_params pi = { .key = key, .initiator = true, .self = "node1", .role = ROLE_PEER, .expect = "node2" };
        struct secure_params pr = { .key = key, .initiator = false, .self = "node2", .role = ROLE_PEER };
        if (hostkeys) {
                pi.host_sk = sk1;
                pr.host_sk = sk2;
                pi.key_of = pr.key_of = key_of;
        }
        double t0 = now();
        if (secure_new(&pi, i) < 0)
                exit(1);
        secure_start(*i, &a);           /* a: to the responder, b: to the initiator */
        double t1 = now();
        if (secure_new(&pr, r) < 0)
                exit(1);
        pump(*r, &a, &b, &plain);
        double t2 = now();
        pump(*i, &b, &a, &plain);
        double t3 = now();
        pump(*r, &a, &b, &plain);
        double t4 = now();
        t_init += (t1 - t0) + (t3 - t2);
        t_resp += (t2 - t1) + (t4 - t3);
        if (!secure_is_open(*i) || !secure_is_open(*r))
                exit(1);
        wbuf_free(&a);
        wbuf_free(&b);
        wbuf_free(&plain);
}

int main(int argc, char *argv[])
{
        unsigned hs = argc > 1 ? (unsigned) atoi(argv[1]) : 2000;
        unsigned recs = argc > 2 ? (unsigned) atoi(argv[2]) : 200000;
        uint8_t key[SECURE_KEY_BYTES] = { 7 };
        struct secure *i, *r;

        if (sodium_init() < 0)
                return 1;
        crypto_sign_keypair(pk1, sk1);
        crypto_sign_keypair(pk2, sk2);
        static const struct { const char *what; bool key, hostkeys; } kinds[] = {
                { "version 1, cluster key", true, false },
                { "version 2, host keys", false, true },
                { "version 2, host keys + cluster key", true, true },
        };
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
                t_init = t_resp = 0;
                double t0 = now();
                for (unsigned n = 0; n < hs; n++) {
                        pair(kinds[k].key ? key : NULL, kinds[k].hostkeys, &i, &r);
                        secure_free(i);
                        secure_free(r);
                }
                double t1 = now();
                printf("handshake, %s (both ends, in memory) %8.1f us   (%u handshakes)\n", kinds[k].what,
                       (t1 - t0) / hs * 1e6, hs);
                printf("  of which the initiator           %8.1f us\n", t_init / hs * 1e6);
                printf("  of which the responder           %8.1f us\n", t_resp / hs * 1e6);
        }

        /* REQUEST/REPLY ~ 28 bytes, HEARTBEAT 28, APPEND ~ 100 + text, a 4 KiB post */
        static const size_t sizes[] = { 28, 128, 1024, 4200 };
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                uint8_t frame[4200];
                struct wbuf wire = {0}, plain = {0}, none = {0};
                memset(frame, 'x', sizeof frame);
                pair(key, false, &i, &r);
                double s0 = now();
                for (unsigned k = 0; k < recs; k++) {
                        secure_seal(i, frame, sizes[z], &wire);
                        pump(r, &wire, &none, &plain);
                        wbuf_reset(&plain);
                }
                double s1 = now();
                printf("seal + open one %4zu-byte frame     %8.3f us   (%u records)\n", sizes[z],
                       (s1 - s0) / recs * 1e6, recs);
                secure_free(i);
                secure_free(r);
                wbuf_free(&wire);
                wbuf_free(&plain);
        }
        return 0;
}
