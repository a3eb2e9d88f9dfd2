/* SPDX-License-Identifier: MIT */
/*
 * secure.h — the handshake and record layer of cluster links, as a pure
 * state machine: bytes in, bytes out, no I/O, no clock.  net.c runs one per
 * TCP connection; the unit tests and the fuzz target drive it directly.
 *
 * The side that connected (the initiator) and the side that accepted (the
 * responder) exchange three messages:
 *
 *   M1  I -> R  "DCH1" ver role name nonce_i epk_i [flags [spk_i]]
 *   M2  R -> I  "DCH2" ver role name nonce_r epk_r [flags [spk_r] [sig_r]] mac_r
 *   M3  I -> R  "DCH3" [sig_i] mac_i
 *
 * Version 1 (no flags, no signatures) is what a host without a host key
 * speaks: the cluster key K is the only proof, a MAC keyed from K and the
 * ephemeral X25519 secret over the transcript.  Version 2 is SIGMA
 * (Krawczyk, CRYPTO 2003; the signed-transcript form of TLS 1.3's
 * CertificateVerify + Finished): each side with a host key signs the
 * transcript (both names, roles, nonces, ephemeral keys, flags and static
 * keys) with its Ed25519 key, and MACs it, signature included, with a key
 * derived from the ephemeral DH (and K when both hold it), which binds the
 * identity to this very session.  Long-term keys only sign: forward
 * secrecy comes from the ephemeral exchange.
 *
 * Who must prove what is the config's word (secure_key_fn): a member whose
 * host key is listed must present exactly that key and sign with it — no
 * cluster-key or version 1 handshake is taken from it (no downgrade); a
 * member with no key listed gets in by the cluster key alone, when both
 * ends hold it (the migration from the cluster key).  Then every frame
 * travels in a record: u32 length, ChaCha20-Poly1305 (IETF) ciphertext and
 * tag, under a key per direction with the record counter as nonce.
 * dchat-protocol(7) gives the byte layouts.
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
#define SECURE_HS_MAX           384     /* largest handshake message body */
#define SECURE_PK_BYTES         32      /* a host's public key (Ed25519) */
#define SECURE_SK_BYTES         64      /* its secret key, as libsodium keeps it (seed, public key) */
#define SECURE_SIG_BYTES        64
/* a record holds one frame */
#define SECURE_RECORD_MAX       (DCHAT_FRAME_HDR + DCHAT_FRAME_MAX + SECURE_TAG_BYTES)

struct secure;

/*
 * Says whether the other end may join: name (valid node name) and role as
 * it claims them.  Returns 0, or <0 with a reason in why.
 */
typedef int (*secure_check_fn)(void *userdata, const char *name, uint8_t role, char *why, size_t cap);

/*
 * The host key the config lists for the member called name (names are
 * unique across roles): returns true and writes it to pk, or false when
 * none is listed.
 */
typedef bool (*secure_key_fn)(void *userdata, const char *name, uint8_t pk[SECURE_PK_BYTES]);

struct secure_params {
        const uint8_t *key;             /* the cluster key, SECURE_KEY_BYTES; NULL: none */
        const uint8_t *host_sk;         /* our host key, SECURE_SK_BYTES; NULL: none (version 1) */
        bool initiator;                 /* we connected */
        const char *self;               /* our node name */
        uint8_t role;                   /* our role */
        const char *expect;             /* initiator: the node we dialed (NULL: any) */
        secure_check_fn check;          /* NULL: anybody holding the key */
        secure_key_fn key_of;           /* NULL: no host key is listed for anyone */
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
/*
 * The host key the other end presented (valid once M1/M2 was read): false
 * when it presented none.  Once the link is open, it has also signed with it.
 */
bool secure_peer_key(const struct secure *s, uint8_t pk[SECURE_PK_BYTES]);
/* The link is open, and the cluster key was part of its proof (no listed host key was). */
bool secure_by_cluster_key(const struct secure *s);
/* The cluster key is in the link's key schedule (both ends held it; version 1 always). */
bool secure_used_cluster_key(const struct secure *s);

/* A public key as dchat.conf(5) writes it (base64, 44 characters); buf holds SECURE_PK_TEXT. */
#define SECURE_PK_TEXT          45
const char *secure_pk_text(const uint8_t pk[SECURE_PK_BYTES], char buf[SECURE_PK_TEXT]);
/* Parses that form; -EINVAL unless it is exactly one Ed25519 public key. */
int secure_pk_parse(const char *text, uint8_t pk[SECURE_PK_BYTES]);
