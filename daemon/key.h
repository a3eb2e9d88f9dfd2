/* SPDX-License-Identifier: MIT */
/*
 * key.h — the cluster key file and the host key file: read them (checking
 * who may read them), write new ones (dchatctl keygen [--host]).  Shared by
 * dchatd and dchatctl.
 *
 * The cluster key file holds the 32-byte key as 64 hex digits and a
 * newline; the host key file the 32-byte Ed25519 seed as 44 characters of
 * base64 and a newline (the public key is derived from it).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCHAT_KEY_BYTES         32
#define DCHAT_DEFAULT_KEY_FILE  "/etc/dchat/cluster.key"
#define DCHAT_KEY_CREDENTIAL    "cluster.key"   /* name under $CREDENTIALS_DIRECTORY */
#define DCHAT_DEFAULT_HOST_KEY_FILE "/etc/dchat/host.key"
#define DCHAT_HOST_KEY_CREDENTIAL "host.key"
#define DCHAT_HOST_KEY_TEXT     44              /* base64 of the 32-byte seed */
#define DCHAT_HOST_SK_BYTES     64              /* libsodium's secret key: seed, public key */
#define DCHAT_HOST_PK_BYTES     32

/*
 * What dchatd.service's SetCredential= gives as cluster.key when its
 * LoadCredential= found no key file: without that fallback systemd fails
 * the start before dchatd runs (status=243/CREDENTIALS) and nobody says
 * which file is missing; with it dchatd starts, reads key_file itself and
 * names it.
 */
#define DCHAT_KEY_ABSENT        "absent"


/*
 * Reads path into key.  Refused (clear message in err, naming the file):
 * not a regular file, readable or writable by group or others, owned by
 * someone else than root or the effective user, not 64 hex digits.
 */
int key_load(const char *path, uint8_t key[DCHAT_KEY_BYTES], char *err, size_t errlen);

/*
 * Which file to read: $CREDENTIALS_DIRECTORY/cluster.key when that variable
 * is set and the file exists (systemd LoadCredential=) and does not say
 * DCHAT_KEY_ABSENT, else configured (empty: DCHAT_DEFAULT_KEY_FILE).
 * Writes the path into buf.
 */
const char *key_path(const char *configured, char *buf, size_t cap);

/*
 * Writes a new random key to path, mode 0600, through a temporary file in
 * the same directory renamed into place (never a half-written key).  An
 * existing file is kept (-EEXIST) unless force.
 */
int key_generate(const char *path, bool force, char *err, size_t errlen);

/*
 * Reads the host key at path into sk (libsodium's form: seed, public key;
 * the public key is sk + 32).  Refused like key_load(), and unless it is
 * 44 characters of base64.
 */
int hostkey_load(const char *path, uint8_t sk[DCHAT_HOST_SK_BYTES], char *err, size_t errlen);

/* As key_path(), for host.key and DCHAT_DEFAULT_HOST_KEY_FILE. */
const char *hostkey_path(const char *configured, char *buf, size_t cap);

/* As key_generate(), a new host key; its public key into pk. */
int hostkey_generate(const char *path, bool force, uint8_t pk[DCHAT_HOST_PK_BYTES], char *err, size_t errlen);
