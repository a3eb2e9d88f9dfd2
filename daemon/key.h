/* SPDX-License-Identifier: MIT */
/*
 * key.h — the cluster key file: read it (checking who may read it), write
 * a new one (dchatctl keygen).  Shared by dchatd and dchatctl.
 *
 * The file holds the 32-byte key as 64 hex digits and a newline.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCHAT_KEY_BYTES         32
#define DCHAT_DEFAULT_KEY_FILE  "/etc/dchat/cluster.key"
#define DCHAT_KEY_CREDENTIAL    "cluster.key"   /* name under $CREDENTIALS_DIRECTORY */

/*
 * Reads path into key.  Refused (clear message in err, naming the file):
 * not a regular file, readable or writable by group or others, owned by
 * someone else than root or the effective user, not 64 hex digits.
 */
int key_load(const char *path, uint8_t key[DCHAT_KEY_BYTES], char *err, size_t errlen);

/*
 * Which file to read: $CREDENTIALS_DIRECTORY/cluster.key when that variable
 * is set and the file exists (systemd LoadCredential=), else configured
 * (empty: DCHAT_DEFAULT_KEY_FILE).  Writes the path into buf.
 */
const char *key_path(const char *configured, char *buf, size_t cap);

/*
 * Writes a new random key to path, mode 0600, through a temporary file in
 * the same directory renamed into place (never a half-written key).  An
 * existing file is kept (-EEXIST) unless force.
 */
int key_generate(const char *path, bool force, char *err, size_t errlen);
