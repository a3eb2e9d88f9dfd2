/* SPDX-License-Identifier: MIT */
/*
 * secure.c — handshake and record layer of cluster links (see secure.h and
 * dchat-protocol(7)).  Pure: no I/O, no clock; randomness from libsodium.
 *
 * Why this shape:
 * - The cluster key K is a pre-shared secret, so proof of possession is a
 *   MAC keyed from K over the transcript (both names, roles, nonces and
 *   ephemeral keys): nothing about K leaks, and a proof made for one
 *   conversation is worthless in any other (fresh nonces on both sides).
 * - An ephemeral X25519 exchange goes into the key schedule as well, so a
 *   recording of the traffic cannot be decrypted even if K leaks later
 *   (forward secrecy), and each connection has its own record keys.
 * - The responder proves first (M2), the initiator last (M3); each side
 *   checks the other's proof before it accepts or sends any frame.
 * - Version 2 (host keys) is SIGMA: the cluster key shows only that a host
 *   is a member, so each host also signs the transcript with its own
 *   Ed25519 key, whose public half the config lists under its name.  The
 *   signature covers both static keys and both ephemeral keys (no
 *   unknown-key-share, no replay), carries a label per role (no
 *   reflection), and sits under the DH-keyed MAC (the identity is bound
 *   to this session).  The version and flags are in the transcript, and
 *   a listed member is held to its key whatever it offers (no downgrade).
 * - Records: ChaCha20-Poly1305 (IETF) with one key per direction and the
 *   record counter as nonce, the length header as associated data.  A
 *   replayed, reordered, dropped-in-the-middle, altered or reflected record
 *   fails to authenticate; a truncated stream ends mid-record (net.c
 *   reports that) or at a record boundary (an ordinary close).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "secure.h"

#define HS_V1           1       /* cluster key only */
#define HS_V2           2       /* SIGMA: host keys (and the cluster key when both hold it) */
#define LEN_BYTES       4
#define KDF_CONTEXT     "dchat-v1"
#define TRANSCRIPT_LABEL "dchat handshake v1"
#define PRK_LABEL       "dchat prk v1"
#define PRK_LABEL_V2    "dchat prk v2"
#define SIG_R_LABEL     "dchat v2 responder signs"
#define SIG_I_LABEL     "dchat v2 initiator signs"

/* version 2 flags: what the sender holds */
#define F_HOSTKEY       0x01    /* a host key: its public key follows, and it signs */
#define F_CLUSTER       0x02    /* the cluster key */
#define F_KNOWN         (F_HOSTKEY | F_CLUSTER)

enum {
        KDF_MAC_R = 1,          /* responder's proof */
        KDF_MAC_I,              /* initiator's proof */
        KDF_I2R,                /* records initiator -> responder */
        KDF_R2I,                /* records responder -> initiator */
};

enum state {
        S_START,                /* initiator: M1 not sent yet */
        S_WAIT_M1,              /* responder */
        S_WAIT_M2,              /* initiator */
        S_WAIT_M3,              /* responder */
        S_OPEN,
        S_FAILED,
};

struct secure {
        enum state state;
        bool initiator;
        uint8_t version;                /* initiator: the one it speaks; responder: the one M1 spoke */
        bool have_key;                  /* the cluster key */
        uint8_t key[SECURE_KEY_BYTES];
        bool have_sk;                   /* a host key */
        uint8_t sk[SECURE_SK_BYTES];
        char self[DCHAT_NAME_MAX + 1];
        uint8_t role;
        char expect[DCHAT_NAME_MAX + 1];
        secure_check_fn check;
        secure_key_fn key_of;
        void *userdata;

        char peer[DCHAT_NAME_MAX + 1];
        uint8_t peer_role;
        uint8_t peer_flags;             /* version 2 */
        uint8_t peer_pk[SECURE_PK_BYTES];       /* valid when peer_flags & F_HOSTKEY */
        bool peer_listed;               /* the config lists its key (then it was proven) */
        bool use_key;                   /* the cluster key is in the key schedule */

        uint8_t esk[crypto_scalarmult_SCALARBYTES];
        uint8_t epk[crypto_scalarmult_BYTES];
        uint8_t nonce[SECURE_NONCE_BYTES];
        crypto_generichash_state th;    /* transcript so far */
        uint8_t t2[crypto_generichash_BYTES];   /* transcript through M2 (without its signature and mac) */
        uint8_t k_mac_i[32];            /* responder keeps it to check M3 */
        uint8_t mac_r[SECURE_MAC_BYTES];        /* responder: the proof it sent */

        uint8_t k_tx[crypto_aead_chacha20poly1305_ietf_KEYBYTES];
        uint8_t k_rx[crypto_aead_chacha20poly1305_ietf_KEYBYTES];
        uint64_t n_tx, n_rx;

        char error[224];
};

static int fail(struct secure *s, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct secure *s, int r, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->error, sizeof s->error, fmt, ap);
        va_end(ap);
        s->state = S_FAILED;
        sodium_memzero(s->k_tx, sizeof s->k_tx);
        sodium_memzero(s->k_rx, sizeof s->k_rx);
        sodium_memzero(s->esk, sizeof s->esk);
        sodium_memzero(s->sk, sizeof s->sk);
        return r;
}

static bool listed(struct secure *s, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        return s->key_of && s->key_of(s->userdata, name, pk);
}

int secure_new(const struct secure_params *p, struct secure **ret)
{
        uint8_t pk[SECURE_PK_BYTES];

        if (sodium_init() < 0)
                return -EIO;
        if ((!p->key && !p->host_sk) || !p->self || strlen(p->self) > DCHAT_NAME_MAX ||
            (p->expect && strlen(p->expect) > DCHAT_NAME_MAX))
                return -EINVAL;
        struct secure *s = sodium_malloc(sizeof *s);
        if (!s)
                return -ENOMEM;
        memset(s, 0, sizeof *s);
        s->initiator = p->initiator;
        s->state = p->initiator ? S_START : S_WAIT_M1;
        if (p->key) {
                s->have_key = true;
                memcpy(s->key, p->key, SECURE_KEY_BYTES);
        }
        if (p->host_sk) {
                s->have_sk = true;
                memcpy(s->sk, p->host_sk, SECURE_SK_BYTES);
        }
        strcpy(s->self, p->self);
        s->role = p->role;
        if (p->expect)
                strcpy(s->expect, p->expect);
        s->check = p->check;
        s->key_of = p->key_of;
        s->userdata = p->userdata;
        /* Version 1 stays what a cluster-key-only host speaks (older dchatd
         * understand nothing else); version 2 as soon as we hold a host key
         * or must see the dialed node's. */
        s->version = HS_V1;
        if (s->have_sk || !s->have_key || (s->expect[0] && listed(s, s->expect, pk)))
                s->version = HS_V2;

        randombytes_buf(s->nonce, sizeof s->nonce);
        randombytes_buf(s->esk, sizeof s->esk);
        crypto_scalarmult_base(s->epk, s->esk);
        crypto_generichash_init(&s->th, NULL, 0, crypto_generichash_BYTES);
        crypto_generichash_update(&s->th, (const uint8_t *) TRANSCRIPT_LABEL, sizeof TRANSCRIPT_LABEL - 1);
        *ret = s;
        return 0;
}

struct secure *secure_free(struct secure *s)
{
        if (s)
                sodium_free(s);         /* zeroes it */
        return NULL;
}

bool secure_is_open(const struct secure *s)
{
        return s->state == S_OPEN;
}

bool secure_heard(const struct secure *s)
{
        return s->state != S_START && s->state != S_WAIT_M1 && s->state != S_WAIT_M2;
}

bool secure_failed(const struct secure *s)
{
        return s->state == S_FAILED;
}

const char *secure_error(const struct secure *s)
{
        return s->error[0] ? s->error : "no error";
}

const char *secure_peer_name(const struct secure *s)
{
        return s->peer;
}

uint8_t secure_peer_role(const struct secure *s)
{
        return s->peer_role;
}

bool secure_peer_key(const struct secure *s, uint8_t pk[SECURE_PK_BYTES])
{
        if (!(s->peer_flags & F_HOSTKEY))
                return false;
        memcpy(pk, s->peer_pk, SECURE_PK_BYTES);
        return true;
}

bool secure_by_cluster_key(const struct secure *s)
{
        return s->state == S_OPEN && !s->peer_listed;
}

bool secure_used_cluster_key(const struct secure *s)
{
        return s->use_key;
}

const char *secure_pk_text(const uint8_t pk[SECURE_PK_BYTES], char buf[SECURE_PK_TEXT])
{
        sodium_bin2base64(buf, SECURE_PK_TEXT, pk, SECURE_PK_BYTES, sodium_base64_VARIANT_ORIGINAL);
        return buf;
}

int secure_pk_parse(const char *text, uint8_t pk[SECURE_PK_BYTES])
{
        size_t bin_len;
        const char *end;

        if (sodium_init() < 0)
                return -EIO;
        if (strlen(text) != SECURE_PK_TEXT - 1 ||
            sodium_base642bin(pk, SECURE_PK_BYTES, text, SECURE_PK_TEXT - 1, NULL, &bin_len, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            bin_len != SECURE_PK_BYTES || *end != '\0' || !crypto_core_ed25519_is_valid_point(pk))
                return -EINVAL;
        return 0;
}

static void put_len(uint8_t *p, uint32_t v)
{
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

static uint32_t get_len(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint8_t own_flags(const struct secure *s)
{
        return (s->have_sk ? F_HOSTKEY : 0) | (s->have_key ? F_CLUSTER : 0);
}

/* M1 / M2 minus signature and mac: magic ver role namelen name nonce epk, and for version 2 flags [spk] */
static void put_hello(struct secure *s, struct wbuf *b, const char *magic)
{
        size_t n = strlen(s->self);
        wbuf_put(b, magic, 4);
        wbuf_put_u8(b, s->version);
        wbuf_put_u8(b, s->role);
        wbuf_put_u8(b, (uint8_t) n);
        wbuf_put(b, s->self, n);
        wbuf_put(b, s->nonce, sizeof s->nonce);
        wbuf_put(b, s->epk, sizeof s->epk);
        if (s->version == HS_V2) {
                wbuf_put_u8(b, own_flags(s));
                if (s->have_sk)
                        wbuf_put(b, s->sk + 32, SECURE_PK_BYTES);      /* libsodium: seed, then public key */
        }
}

/* Appends one handshake message (length + body) to out and to the transcript. */
static int send_hs(struct secure *s, struct wbuf *out, const struct wbuf *body, size_t hashed)
{
        uint8_t len[LEN_BYTES];
        put_len(len, (uint32_t) body->len);
        crypto_generichash_update(&s->th, len, sizeof len);
        crypto_generichash_update(&s->th, body->data, hashed);
        wbuf_put(out, len, sizeof len);
        wbuf_put(out, body->data, body->len);
        return out->failed ? -ENOMEM : 0;
}

int secure_start(struct secure *s, struct wbuf *out)
{
        struct wbuf b = {0};
        int r;

        if (!s->initiator || s->state != S_START)
                return 0;
        put_hello(s, &b, "DCH1");
        if (b.failed)
                return -ENOMEM;
        r = send_hs(s, out, &b, b.len);
        wbuf_free(&b);
        if (r < 0)
                return r;
        s->state = S_WAIT_M2;
        return 0;
}

/*
 * Parses the common part of M1/M2 (version 2: flags and the host key too);
 * returns the bytes read or <0.  The version must be want, or (want 0) 1 or 2.
 */
static int get_hello(struct secure *s, const uint8_t *p, size_t n, const char *magic, uint8_t want,
                     uint8_t nonce[SECURE_NONCE_BYTES], uint8_t epk[crypto_scalarmult_BYTES])
{
        if (n < 7 || memcmp(p, magic, 4) != 0)
                return fail(s, -EPROTO, "not a dchat handshake (garbage, or a peer without encryption)");
        if (p[4] != HS_V1 && p[4] != HS_V2)
                return fail(s, -EPROTO, "handshake version %u not supported", p[4]);
        if (want && p[4] != want)
                return fail(s, -EPERM, "answered with a version %u handshake to our version %u: refused "
                            "(no downgrade)", p[4], want);
        uint8_t ver = p[4], role = p[5];
        size_t nl = p[6];
        size_t off = 7 + nl + SECURE_NONCE_BYTES + crypto_scalarmult_BYTES;
        if (n < off + (ver == HS_V2))
                return fail(s, -EBADMSG, "short handshake message");
        if (nl == 0 || nl > DCHAT_NAME_MAX || memchr(p + 7, '\0', nl))
                return fail(s, -EBADMSG, "bad node name in the handshake");
        memcpy(s->peer, p + 7, nl);
        s->peer[nl] = '\0';
        if (!node_name_valid(s->peer)) {
                s->peer[0] = '\0';
                return fail(s, -EBADMSG, "bad node name in the handshake");
        }
        if (role != ROLE_SERVER && role != ROLE_PEER)
                return fail(s, -EBADMSG, "bad role %u in the handshake", role);
        s->peer_role = role;
        memcpy(nonce, p + 7 + nl, SECURE_NONCE_BYTES);
        memcpy(epk, p + 7 + nl + SECURE_NONCE_BYTES, crypto_scalarmult_BYTES);
        if (!s->initiator)
                s->version = ver;
        if (ver == HS_V1)
                return (int) off;
        uint8_t flags = p[off++];
        if (flags & ~F_KNOWN)
                return fail(s, -EBADMSG, "unknown flags 0x%02x in the handshake", flags);
        if (flags & F_HOSTKEY) {
                if (n < off + SECURE_PK_BYTES)
                        return fail(s, -EBADMSG, "short handshake message");
                memcpy(s->peer_pk, p + off, SECURE_PK_BYTES);
                off += SECURE_PK_BYTES;
        }
        s->peer_flags = flags;
        return (int) off;
}

/*
 * From the transcript hash t2 (M1 and M2 without its signature and mac)
 * and the DH result: prk = BLAKE2b(key K, PRK_LABEL || dh || t2) (version
 * 2: keyed with K only when both ends hold it, PRK_LABEL_V2); the proof and
 * record keys are crypto_kdf subkeys of prk.
 */
static int derive(struct secure *s, const uint8_t peer_epk[crypto_scalarmult_BYTES], uint8_t k_mac_r[32])
{
        uint8_t dh[crypto_scalarmult_BYTES], prk[crypto_kdf_KEYBYTES];
        crypto_generichash_state h;
        crypto_generichash_state th = s->th;
        const char *label = s->version == HS_V1 ? PRK_LABEL : PRK_LABEL_V2;

        crypto_generichash_final(&th, s->t2, sizeof s->t2);
        if (crypto_scalarmult(dh, s->esk, peer_epk) != 0)
                return fail(s, -EBADMSG, "bad ephemeral key in the handshake");
        sodium_memzero(s->esk, sizeof s->esk);
        crypto_generichash_init(&h, s->use_key ? s->key : NULL, s->use_key ? sizeof s->key : 0, sizeof prk);
        crypto_generichash_update(&h, (const uint8_t *) label, strlen(label));
        crypto_generichash_update(&h, dh, sizeof dh);
        crypto_generichash_update(&h, s->t2, sizeof s->t2);
        crypto_generichash_final(&h, prk, sizeof prk);
        sodium_memzero(dh, sizeof dh);

        crypto_kdf_derive_from_key(k_mac_r, 32, KDF_MAC_R, KDF_CONTEXT, prk);
        crypto_kdf_derive_from_key(s->k_mac_i, 32, KDF_MAC_I, KDF_CONTEXT, prk);
        crypto_kdf_derive_from_key(s->initiator ? s->k_tx : s->k_rx, sizeof s->k_tx, KDF_I2R, KDF_CONTEXT, prk);
        crypto_kdf_derive_from_key(s->initiator ? s->k_rx : s->k_tx, sizeof s->k_rx, KDF_R2I, KDF_CONTEXT, prk);
        sodium_memzero(prk, sizeof prk);
        return 0;
}

/*
 * mac_r = BLAKE2b(key k_mac_r, t2 [|| sig_r]);
 * mac_i = BLAKE2b(key k_mac_i, t2 || mac_r [|| sig_i]).
 */
static void mac_r_of(const struct secure *s, const uint8_t k[32], const uint8_t *sig, uint8_t mac[SECURE_MAC_BYTES])
{
        crypto_generichash_state h;
        crypto_generichash_init(&h, k, 32, SECURE_MAC_BYTES);
        crypto_generichash_update(&h, s->t2, sizeof s->t2);
        if (sig)
                crypto_generichash_update(&h, sig, SECURE_SIG_BYTES);
        crypto_generichash_final(&h, mac, SECURE_MAC_BYTES);
}

static void mac_i_of(const struct secure *s, const uint8_t mac_r[SECURE_MAC_BYTES], const uint8_t *sig,
                     uint8_t mac[SECURE_MAC_BYTES])
{
        crypto_generichash_state h;
        crypto_generichash_init(&h, s->k_mac_i, sizeof s->k_mac_i, SECURE_MAC_BYTES);
        crypto_generichash_update(&h, s->t2, sizeof s->t2);
        crypto_generichash_update(&h, mac_r, SECURE_MAC_BYTES);
        if (sig)
                crypto_generichash_update(&h, sig, SECURE_SIG_BYTES);
        crypto_generichash_final(&h, mac, SECURE_MAC_BYTES);
}

/*
 * What a signature covers: a label naming the signer's role (so that
 * neither signature can stand for the other), t2, and for the initiator
 * the responder's mac as well.
 */
static size_t sig_msg(const struct secure *s, bool by_initiator, const uint8_t *mac_r, uint8_t *m)
{
        const char *label = by_initiator ? SIG_I_LABEL : SIG_R_LABEL;
        size_t n = strlen(label);
        memcpy(m, label, n);
        memcpy(m + n, s->t2, sizeof s->t2);
        n += sizeof s->t2;
        if (by_initiator) {
                memcpy(m + n, mac_r, SECURE_MAC_BYTES);
                n += SECURE_MAC_BYTES;
        }
        return n;
}

#define SIG_MSG_MAX     (sizeof SIG_I_LABEL + crypto_generichash_BYTES + SECURE_MAC_BYTES)

static void sign(const struct secure *s, const uint8_t *mac_r, uint8_t sig[SECURE_SIG_BYTES])
{
        uint8_t m[SIG_MSG_MAX];
        size_t n = sig_msg(s, s->initiator, mac_r, m);
        crypto_sign_detached(sig, NULL, m, n, s->sk);
}

static bool sig_ok(const struct secure *s, const uint8_t *mac_r, const uint8_t sig[SECURE_SIG_BYTES])
{
        uint8_t m[SIG_MSG_MAX];
        size_t n = sig_msg(s, !s->initiator, mac_r, m);
        return crypto_sign_verify_detached(sig, m, n, s->peer_pk) == 0;
}

static int check_peer(struct secure *s)
{
        char why[128] = "";

        if (strcmp(s->peer, s->self) == 0)
                return fail(s, -EPERM, "the other end claims our own name '%s'", s->self);
        if (s->initiator && s->expect[0] && strcmp(s->peer, s->expect) != 0)
                return fail(s, -EPERM, "answered as '%s', but this address is %s's", s->peer, s->expect);
        if (s->check && s->check(s->userdata, s->peer, s->peer_role, why, sizeof why) < 0)
                return fail(s, -EPERM, "%s", why[0] ? why : "not a member of this cluster");
        return 0;
}

/*
 * Who the other end must prove to be, from what it claims (name, role,
 * version, flags, key) and the config: a member whose host key is listed
 * must present exactly that key (and, later, sign with it): no version 1,
 * no cluster key instead.  Anyone else gets in only by the cluster key,
 * which then both ends must hold.  Decides use_key as well.
 */
static int check_proof(struct secure *s)
{
        uint8_t want[SECURE_PK_BYTES];
        char have[SECURE_PK_TEXT], wtext[SECURE_PK_TEXT];
        bool has_pk = s->peer_flags & F_HOSTKEY;

        if (has_pk)
                secure_pk_text(s->peer_pk, have);
        s->peer_listed = listed(s, s->peer, want);
        if (s->version == HS_V1) {
                if (s->peer_listed)
                        return fail(s, -EPERM, "%s's host key is listed, but it offered a version 1 handshake "
                                    "(cluster key only): refused (no downgrade)", s->peer);
                if (!s->have_key)
                        return fail(s, -EPERM, "%s offered a version 1 handshake (cluster key only), and this "
                                    "host has no cluster key", s->peer);
                s->use_key = true;
                return 0;
        }
        s->use_key = s->have_key && (s->peer_flags & F_CLUSTER);
        if (s->peer_listed) {
                if (!has_pk)
                        return fail(s, -EPERM, "%s's host key is listed, but it presented none: refused "
                                    "(no downgrade to the cluster key)", s->peer);
                if (sodium_memcmp(want, s->peer_pk, SECURE_PK_BYTES) != 0)
                        return fail(s, -EPERM, "%s presented host key %s, not the one listed for it (%s)",
                                    s->peer, have, secure_pk_text(want, wtext));
                return 0;
        }
        if (!s->use_key)
                return fail(s, -EPERM, "%s%s%s: no host key is listed for it, and %s", s->peer,
                            has_pk ? " presented unlisted host key " : "", has_pk ? have : "",
                            !s->have_key ? "this host has no cluster key"
                                         : "it does not hold the cluster key");
        return 0;
}

static int proof_failed(struct secure *s)
{
        if (s->use_key && !s->peer_listed)
                return fail(s, -EPERM, "wrong cluster key: %s's handshake proof does not verify", s->peer);
        return fail(s, -EPERM, "%s's handshake proof does not verify%s", s->peer,
                    s->use_key ? " (wrong cluster key?)" : "");
}

/* Responder: M1 in, M2 out. */
static int on_m1(struct secure *s, const uint8_t *p, size_t n, const uint8_t len[LEN_BYTES], struct wbuf *out)
{
        uint8_t peer_nonce[SECURE_NONCE_BYTES], peer_epk[crypto_scalarmult_BYTES], k_mac_r[32];
        uint8_t sig[SECURE_SIG_BYTES];
        uint8_t *mac = s->mac_r;
        int r = get_hello(s, p, n, "DCH1", 0, peer_nonce, peer_epk);
        if (r < 0)
                return r;
        if ((size_t) r != n)
                return fail(s, -EBADMSG, "bad handshake message length");
        r = check_peer(s);
        if (r < 0)
                return r;
        r = check_proof(s);
        if (r < 0)
                return r;
        crypto_generichash_update(&s->th, len, LEN_BYTES);
        crypto_generichash_update(&s->th, p, n);

        struct wbuf b = {0};
        put_hello(s, &b, "DCH2");
        bool signs = s->version == HS_V2 && s->have_sk;
        uint8_t blen[LEN_BYTES];
        put_len(blen, (uint32_t) (b.len + (signs ? SECURE_SIG_BYTES : 0) + SECURE_MAC_BYTES));
        crypto_generichash_update(&s->th, blen, sizeof blen);
        crypto_generichash_update(&s->th, b.data, b.len);
        r = derive(s, peer_epk, k_mac_r);
        if (r < 0) {
                wbuf_free(&b);
                return r;
        }
        if (signs)
                sign(s, NULL, sig);
        mac_r_of(s, k_mac_r, signs ? sig : NULL, mac);
        sodium_memzero(k_mac_r, sizeof k_mac_r);
        wbuf_put(out, blen, sizeof blen);
        wbuf_put(out, b.data, b.len);
        if (signs)
                wbuf_put(out, sig, sizeof sig);
        wbuf_put(out, mac, SECURE_MAC_BYTES);
        wbuf_free(&b);
        if (out->failed)
                return fail(s, -ENOMEM, "out of memory");
        s->state = S_WAIT_M3;
        return 0;
}

/* Initiator: M2 in, M3 out; open. */
static int on_m2(struct secure *s, const uint8_t *p, size_t n, const uint8_t len[LEN_BYTES], struct wbuf *out)
{
        uint8_t peer_nonce[SECURE_NONCE_BYTES], peer_epk[crypto_scalarmult_BYTES], k_mac_r[32], mac[SECURE_MAC_BYTES];
        int r = get_hello(s, p, n, "DCH2", s->version, peer_nonce, peer_epk);
        if (r < 0)
                return r;
        size_t hello = (size_t) r;
        const uint8_t *peer_sig = s->peer_flags & F_HOSTKEY ? p + hello : NULL;
        if (hello + (peer_sig ? SECURE_SIG_BYTES : 0) + SECURE_MAC_BYTES != n)
                return fail(s, -EBADMSG, "bad handshake message length");
        r = check_peer(s);
        if (r < 0)
                return r;
        r = check_proof(s);
        if (r < 0)
                return r;
        crypto_generichash_update(&s->th, len, LEN_BYTES);
        crypto_generichash_update(&s->th, p, hello);
        r = derive(s, peer_epk, k_mac_r);
        if (r < 0)
                return r;
        mac_r_of(s, k_mac_r, peer_sig, mac);
        sodium_memzero(k_mac_r, sizeof k_mac_r);
        if (sodium_memcmp(mac, p + n - SECURE_MAC_BYTES, SECURE_MAC_BYTES) != 0)
                return proof_failed(s);
        if (peer_sig && !sig_ok(s, NULL, peer_sig)) {
                char text[SECURE_PK_TEXT];
                return fail(s, -EPERM, "%s's signature does not verify with host key %s", s->peer,
                            secure_pk_text(s->peer_pk, text));
        }
        bool signs = s->version == HS_V2 && s->have_sk;
        uint8_t mi[SECURE_MAC_BYTES], sig[SECURE_SIG_BYTES], blen[LEN_BYTES];
        if (signs)
                sign(s, p + n - SECURE_MAC_BYTES, sig);
        mac_i_of(s, p + n - SECURE_MAC_BYTES, signs ? sig : NULL, mi);
        sodium_memzero(s->k_mac_i, sizeof s->k_mac_i);
        sodium_memzero(s->sk, sizeof s->sk);
        put_len(blen, 4 + (signs ? SECURE_SIG_BYTES : 0) + SECURE_MAC_BYTES);
        wbuf_put(out, blen, sizeof blen);
        wbuf_put(out, "DCH3", 4);
        if (signs)
                wbuf_put(out, sig, sizeof sig);
        wbuf_put(out, mi, sizeof mi);
        if (out->failed)
                return fail(s, -ENOMEM, "out of memory");
        s->state = S_OPEN;
        return 0;
}

/* Responder: M3 in; open. */
static int on_m3(struct secure *s, const uint8_t *p, size_t n)
{
        uint8_t mi[SECURE_MAC_BYTES];
        bool signed_ = s->version == HS_V2 && (s->peer_flags & F_HOSTKEY);
        const uint8_t *sig = signed_ ? p + 4 : NULL;

        if (n != 4 + (signed_ ? SECURE_SIG_BYTES : 0) + SECURE_MAC_BYTES || memcmp(p, "DCH3", 4) != 0)
                return fail(s, -EPROTO, "bad handshake message (expected the initiator's proof)");
        mac_i_of(s, s->mac_r, sig, mi);
        sodium_memzero(s->k_mac_i, sizeof s->k_mac_i);
        sodium_memzero(s->sk, sizeof s->sk);
        if (sodium_memcmp(mi, p + n - SECURE_MAC_BYTES, SECURE_MAC_BYTES) != 0)
                return proof_failed(s);
        if (sig && !sig_ok(s, s->mac_r, sig)) {
                char text[SECURE_PK_TEXT];
                return fail(s, -EPERM, "%s's signature does not verify with host key %s", s->peer,
                            secure_pk_text(s->peer_pk, text));
        }
        s->state = S_OPEN;
        return 0;
}

static int open_record(struct secure *s, const uint8_t *rec, size_t clen, struct wbuf *plain)
{
        uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
        unsigned long long mlen;

        if (s->n_rx == UINT64_MAX)
                return fail(s, -EBADMSG, "record counter exhausted");
        for (int i = 0; i < 8; i++)
                nonce[4 + i] = (uint8_t) (s->n_rx >> (56 - 8 * i));
        if (!wbuf_reserve(plain, clen))
                return fail(s, -ENOMEM, "out of memory");
        if (crypto_aead_chacha20poly1305_ietf_decrypt(plain->data + plain->len, &mlen, NULL, rec + LEN_BYTES, clen,
                                                      rec, LEN_BYTES, nonce, s->k_rx) != 0)
                return fail(s, -EBADMSG, "record %llu does not authenticate (altered, replayed, reordered or forged)",
                            (unsigned long long) s->n_rx);
        plain->len += (size_t) mlen;
        s->n_rx++;
        return 0;
}

int secure_input(struct secure *s, const uint8_t *data, size_t len, size_t *consumed, struct wbuf *out,
                 struct wbuf *plain)
{
        size_t off = 0;
        int r = 0;

        *consumed = 0;
        while (s->state != S_FAILED && len - off >= LEN_BYTES) {
                const uint8_t *p = data + off;
                uint32_t n = get_len(p);
                if (s->state == S_START)
                        return fail(s, -EPROTO, "data before the handshake was started");
                if (s->state == S_OPEN) {
                        if (n <= SECURE_TAG_BYTES || n > SECURE_RECORD_MAX)
                                return fail(s, -EMSGSIZE, "record length %u out of range", n);
                } else if (n < 4 || n > SECURE_HS_MAX) {
                        return fail(s, -EPROTO, "not a dchat handshake (garbage, or a peer without encryption)");
                }
                if (len - off - LEN_BYTES < n)
                        break;
                switch (s->state) {
                case S_WAIT_M1:
                        r = on_m1(s, p + LEN_BYTES, n, p, out);
                        break;
                case S_WAIT_M2:
                        r = on_m2(s, p + LEN_BYTES, n, p, out);
                        break;
                case S_WAIT_M3:
                        r = on_m3(s, p + LEN_BYTES, n);
                        break;
                case S_OPEN:
                        r = open_record(s, p, n, plain);
                        break;
                default:
                        r = -EPROTO;
                }
                if (r < 0)
                        return r;
                off += LEN_BYTES + n;
                *consumed = off;
        }
        return s->state == S_FAILED ? -EPROTO : 0;
}

int secure_seal(struct secure *s, const uint8_t *data, size_t len, struct wbuf *out)
{
        uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES] = {0};
        unsigned long long clen;

        if (s->state != S_OPEN)
                return -ENOTCONN;
        if (len == 0 || len > SECURE_RECORD_MAX - SECURE_TAG_BYTES)
                return -EMSGSIZE;
        if (s->n_tx == UINT64_MAX)
                return -EOVERFLOW;
        if (!wbuf_reserve(out, LEN_BYTES + len + SECURE_TAG_BYTES))
                return -ENOMEM;
        for (int i = 0; i < 8; i++)
                nonce[4 + i] = (uint8_t) (s->n_tx >> (56 - 8 * i));
        uint8_t *p = out->data + out->len;
        put_len(p, (uint32_t) (len + SECURE_TAG_BYTES));
        crypto_aead_chacha20poly1305_ietf_encrypt(p + LEN_BYTES, &clen, data, len, p, LEN_BYTES, NULL, nonce, s->k_tx);
        out->len += LEN_BYTES + (size_t) clen;
        s->n_tx++;
        return 0;
}
