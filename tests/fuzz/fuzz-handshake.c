/* SPDX-License-Identifier: MIT */
/*
 * fuzz-handshake.c — libFuzzer target for the link handshake and record
 * layer (daemon/secure.c).  The first byte picks the side under attack
 * (responder, or initiator after sending M1) and how the input is cut into
 * reads; the rest is what the network delivers.  Whatever arrives, the
 * state machine must neither crash, nor read out of bounds, nor open a
 * link without the key.  Built by `make fuzz` with the daemon objects.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secure.h"

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
        size_t chunk = (size_t) (data[0] >> 1) + 1;
        data++;
        size--;
        struct secure_params p = { .key = key, .initiator = initiator, .self = "node1", .role = ROLE_PEER,
                                   .expect = initiator ? "node2" : NULL, .check = any };
        if (secure_new(&p, &s) < 0)
                return 0;
        (void) secure_start(s, &out);
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
         * open the link, whichever side we play. */
        if (secure_is_open(s))
                abort();
        secure_free(s);
        wbuf_free(&out);
        wbuf_free(&plain);
        wbuf_free(&in);
        return 0;
}
