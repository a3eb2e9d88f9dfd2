/* SPDX-License-Identifier: MIT */
/*
 * secure.h — the handshake and record layer of cluster links, as a pure
 * state machine: bytes in, bytes out, no I/O, no clock.  net.c runs one per
 * TCP connection; the unit tests and the fuzz target drive it directly.
 *
 * Both ends hold the 32-byte cluster key K.  The side that connected (the
 * initiator) and the side that accepted (the responder) exchange:
 *
 *   M1  I -> R  "DCH1" ver role name nonce_i epk_i
 *   M2  R -> I  "DCH2" ver role name nonce_r epk_r mac_r
 *   M3  I -> R  "DCH3" mac_i
 *
 * where the macs are keyed with keys derived from K, the ephemeral X25519
 * secret and the hash of everything said so far (both names and roles
 * included), so each side proves it holds K for this very conversation.
 * Then every frame travels in a record: u32 length, ChaCha20-Poly1305
 * (IETF) ciphertext and tag, under a key per direction with the record
 * counter as nonce.  dchat-protocol(7) gives the byte layouts.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define SECURE_KEY_BYTES        32
#define SECURE_NONCE_BYTES      32      /* handshake randomness per side */
#define SECURE_MAC_BYTES        32
#define SECURE_TAG_BYTES        16      /* AEAD tag per record */
#define SECURE_HS_MAX           256     /* largest handshake message body */
/* a record holds one frame */
#define SECURE_RECORD_MAX       (DCHAT_FRAME_HDR + DCHAT_FRAME_MAX + SECURE_TAG_BYTES)

struct secure;

/*
 * Says whether the other end may join: name (valid node name) and role as
 * it claims them.  Returns 0, or <0 with a reason in why.
 */
typedef int (*secure_check_fn)(void *userdata, const char *name, uint8_t role, char *why, size_t cap);

struct secure_params {
        const uint8_t *key;             /* SECURE_KEY_BYTES */
        bool initiator;                 /* we connected */
        const char *self;               /* our node name */
        uint8_t role;                   /* our role */
        const char *expect;             /* initiator: the node we dialed (NULL: any) */
        secure_check_fn check;          /* NULL: anybody holding the key */
        void *userdata;
};

int secure_new(const struct secure_params *p, struct secure **ret);
struct secure *secure_free(struct secure *s);

/* Initiator: appends M1 to out.  Responder: nothing to do. */
int secure_start(struct secure *s, struct wbuf *out);

/*
 * Feeds received bytes.  Whole handshake messages and records at the start
 * of data are used, *consumed says how many bytes; keep the rest and call
 * again when more arrive.  Handshake answers are appended to out, decrypted
 * frames' bytes to plain.  On failure returns a negative errno (-EBADMSG,
 * -EPERM, -EMSGSIZE, -EPROTO) and secure_error() says why; the state is
 * then failed for good and nothing from that stream may be acted on.
 */
int secure_input(struct secure *s, const uint8_t *data, size_t len, size_t *consumed,
                 struct wbuf *out, struct wbuf *plain);

/* Encrypts len bytes (1..DCHAT_FRAME_HDR+DCHAT_FRAME_MAX) as one record onto out.  Only when open. */
int secure_seal(struct secure *s, const uint8_t *data, size_t len, struct wbuf *out);

bool secure_is_open(const struct secure *s);
bool secure_failed(const struct secure *s);
/* The other end's first handshake message (M1 or M2) has been read whole (or the link failed). */
bool secure_heard(const struct secure *s);
const char *secure_error(const struct secure *s);
/* The other end's name and role (valid once M1/M2 was read). */
const char *secure_peer_name(const struct secure *s);
uint8_t secure_peer_role(const struct secure *s);
