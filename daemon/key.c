/* SPDX-License-Identifier: MIT */
/* key.c — the cluster key file and the host key file (see key.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "key.h"

/*
 * Reads a secret's file into text (at most cap - 1 bytes, trailing white
 * space cut), after checking that only its owner (root or us) can get at
 * it.  what names it in the messages ("cluster key", "host key").
 */
static int read_secret(const char *path, const char *what, const char *hint, char *text, size_t cap, char *err,
                       size_t errlen)
{
        struct stat st;
        ssize_t n;
        int r;

        if (sodium_init() < 0) {
                snprintf(err, errlen, "libsodium cannot be initialised");
                return -EIO;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot open the %s %s: %s%s", what, path, strerror(errno),
                         errno == ENOENT ? hint
                         : errno == EACCES && geteuid() != 0 ?
                                " (dchatd runs as a user that may not read it: under systemd, dchatd.service "
                                "passes the keys of /etc/dchat through LoadCredential=; a key file elsewhere "
                                "needs its own LoadCredential= line in `systemctl edit dchatd`)" : "");
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot stat the %s %s: %s", what, path, strerror(errno));
                goto out;
        }
        r = -EPERM;
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errlen, "the %s %s is not a regular file", what, path);
                goto out;
        }
        if (st.st_mode & 077) {
                snprintf(err, errlen, "the %s %s is accessible to group or others (mode %04o); "
                         "make it 0600 (chmod 600 %s)", what, path, (unsigned) (st.st_mode & 07777), path);
                goto out;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                snprintf(err, errlen, "the %s %s belongs to uid %u; it must belong to root or to "
                         "the user dchatd runs as (uid %u)", what, path, (unsigned) st.st_uid, (unsigned) geteuid());
                goto out;
        }
        n = read(fd, text, cap - 1);
        if (n < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot read the %s %s: %s", what, path, strerror(errno));
                goto out;
        }
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
                n--;
        text[n] = '\0';
        r = (int) n;
out:
        close(fd);
        return r;
}

int key_load(const char *path, uint8_t key[DCHAT_KEY_BYTES], char *err, size_t errlen)
{
        char text[2 * DCHAT_KEY_BYTES + 8];
        size_t bin_len;

        int n = read_secret(path, "cluster key", " (make one with `dchatctl keygen`, copy it to every host; "
                            "or give every host a host key; or set insecure_plaintext = true)",
                            text, sizeof text, err, errlen);
        if (n < 0)
                return n;
        int r = 0;
        if (n != 2 * DCHAT_KEY_BYTES ||
            sodium_hex2bin(key, DCHAT_KEY_BYTES, text, (size_t) n, NULL, &bin_len, NULL) != 0 ||
            bin_len != DCHAT_KEY_BYTES) {
                snprintf(err, errlen, "the cluster key %s is not %d hex digits (make one with `dchatctl keygen`)",
                         path, 2 * DCHAT_KEY_BYTES);
                r = -EINVAL;
        }
        sodium_memzero(text, sizeof text);
        return r;
}

int hostkey_load(const char *path, uint8_t sk[DCHAT_HOST_SK_BYTES], char *err, size_t errlen)
{
        char text[DCHAT_HOST_KEY_TEXT + 8];
        uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
        size_t bin_len;
        const char *end;

        int n = read_secret(path, "host key", " (make one with `dchatctl keygen --host`)", text, sizeof text,
                            err, errlen);
        if (n < 0)
                return n;
        int r = 0;
        if (n != DCHAT_HOST_KEY_TEXT ||
            sodium_base642bin(seed, sizeof seed, text, (size_t) n, NULL, &bin_len, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 || bin_len != sizeof seed || *end) {
                snprintf(err, errlen, "the host key %s is not %d characters of base64 (make one with "
                         "`dchatctl keygen --host`)", path, DCHAT_HOST_KEY_TEXT);
                r = -EINVAL;
        } else {
                crypto_sign_seed_keypair(pk, sk, seed);
        }
        sodium_memzero(seed, sizeof seed);
        sodium_memzero(text, sizeof text);
        return r;
}

/* Does the credential at path say DCHAT_KEY_ABSENT (dchatd.service's SetCredential= fallback)? */
static bool credential_absent(const char *path)
{
        char text[sizeof DCHAT_KEY_ABSENT + 2];
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, text, sizeof text - 1);
        close(fd);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
                n--;
        return n == (ssize_t) strlen(DCHAT_KEY_ABSENT) && memcmp(text, DCHAT_KEY_ABSENT, (size_t) n) == 0;
}

static const char *path_of(const char *credential, const char *configured, const char *def, char *buf, size_t cap)
{
        const char *cred = getenv("CREDENTIALS_DIRECTORY");

        if (cred && cred[0]) {
                snprintf(buf, cap, "%s/%s", cred, credential);
                if (access(buf, F_OK) == 0 && !credential_absent(buf))
                        return buf;
        }
        snprintf(buf, cap, "%s", configured && configured[0] ? configured : def);
        return buf;
}

const char *key_path(const char *configured, char *buf, size_t cap)
{
        return path_of(DCHAT_KEY_CREDENTIAL, configured, DCHAT_DEFAULT_KEY_FILE, buf, cap);
}

const char *hostkey_path(const char *configured, char *buf, size_t cap)
{
        return path_of(DCHAT_HOST_KEY_CREDENTIAL, configured, DCHAT_DEFAULT_HOST_KEY_FILE, buf, cap);
}

/* Writes text (a secret) to path, mode 0600, through a temporary file renamed into place. */
static int write_secret(const char *path, bool force, const char *text, char *err, size_t errlen)
{
        char tmp[PATH_MAX], dir[PATH_MAX];
        int r;

        if (!force && access(path, F_OK) == 0) {
                snprintf(err, errlen, "%s exists; not replacing it (--force replaces it, and every host then "
                         "needs the new key)", path);
                return -EEXIST;
        }
        if ((size_t) snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= sizeof tmp) {
                snprintf(err, errlen, "%s: path too long", path);
                return -ENAMETOOLONG;
        }
        int fd = mkostemp(tmp, O_CLOEXEC);      /* mode 0600 */
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot create a file next to %s: %s", path, strerror(errno));
                return r;
        }
        size_t len = strlen(text);
        errno = 0;
        if (fchmod(fd, 0600) < 0 || write(fd, text, len) != (ssize_t) len || fsync(fd) < 0) {
                r = errno ? -errno : -EIO;
                snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-r));
                goto fail;
        }
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, force ? 0 : RENAME_NOREPLACE) < 0) {
                r = -errno;
                snprintf(err, errlen, errno == EEXIST ? "%s exists; not replacing it (--force replaces it)"
                                                      : "cannot create %s: %s", path, strerror(errno));
                goto fail;
        }
        close(fd);
        strlcpy(dir, path, sizeof dir);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void) fsync(dfd);
                close(dfd);
        }
        return 0;
fail:
        close(fd);
        (void) unlink(tmp);
        return r;
}

int key_generate(const char *path, bool force, char *err, size_t errlen)
{
        uint8_t key[DCHAT_KEY_BYTES];
        char hex[2 * DCHAT_KEY_BYTES + 2];

        if (sodium_init() < 0) {
                snprintf(err, errlen, "libsodium cannot be initialised");
                return -EIO;
        }
        randombytes_buf(key, sizeof key);
        sodium_bin2hex(hex, sizeof hex - 1, key, sizeof key);
        sodium_memzero(key, sizeof key);
        strcat(hex, "\n");
        int r = write_secret(path, force, hex, err, errlen);
        sodium_memzero(hex, sizeof hex);
        return r;
}

int hostkey_generate(const char *path, bool force, uint8_t pk[DCHAT_HOST_PK_BYTES], char *err, size_t errlen)
{
        uint8_t seed[crypto_sign_SEEDBYTES], sk[crypto_sign_SECRETKEYBYTES];
        char text[DCHAT_HOST_KEY_TEXT + 2];

        if (sodium_init() < 0) {
                snprintf(err, errlen, "libsodium cannot be initialised");
                return -EIO;
        }
        randombytes_buf(seed, sizeof seed);
        crypto_sign_seed_keypair(pk, sk, seed);
        sodium_bin2base64(text, sizeof text - 1, seed, sizeof seed, sodium_base64_VARIANT_ORIGINAL);
        sodium_memzero(seed, sizeof seed);
        sodium_memzero(sk, sizeof sk);
        strcat(text, "\n");
        int r = write_secret(path, force, text, err, errlen);
        sodium_memzero(text, sizeof text);
        return r;
}
