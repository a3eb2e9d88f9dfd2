/* SPDX-License-Identifier: MIT */
/* key.c — the cluster key file (see key.h). */
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

int key_load(const char *path, uint8_t key[DCHAT_KEY_BYTES], char *err, size_t errlen)
{
        char text[2 * DCHAT_KEY_BYTES + 8];
        struct stat st;
        size_t bin_len;
        ssize_t n;
        int r;

        if (sodium_init() < 0) {
                snprintf(err, errlen, "libsodium cannot be initialised");
                return -EIO;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot open the cluster key %s: %s%s", path, strerror(errno),
                         errno == ENOENT ? " (make one with `dchatctl keygen`, copy it to every host; "
                                           "or set insecure_plaintext = true)" : "");
                return r;
        }
        if (fstat(fd, &st) < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot stat the cluster key %s: %s", path, strerror(errno));
                goto out;
        }
        r = -EPERM;
        if (!S_ISREG(st.st_mode)) {
                snprintf(err, errlen, "the cluster key %s is not a regular file", path);
                goto out;
        }
        if (st.st_mode & 077) {
                snprintf(err, errlen, "the cluster key %s is accessible to group or others (mode %04o); "
                         "make it 0600 (chmod 600 %s)", path, (unsigned) (st.st_mode & 07777), path);
                goto out;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                snprintf(err, errlen, "the cluster key %s belongs to uid %u; it must belong to root or to "
                         "the user dchatd runs as (uid %u)", path, (unsigned) st.st_uid, (unsigned) geteuid());
                goto out;
        }
        n = read(fd, text, sizeof text - 1);
        if (n < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot read the cluster key %s: %s", path, strerror(errno));
                goto out;
        }
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' '))
                n--;
        text[n] = '\0';
        r = -EINVAL;
        if (n != 2 * DCHAT_KEY_BYTES ||
            sodium_hex2bin(key, DCHAT_KEY_BYTES, text, (size_t) n, NULL, &bin_len, NULL) != 0 ||
            bin_len != DCHAT_KEY_BYTES) {
                snprintf(err, errlen, "the cluster key %s is not %d hex digits (make one with `dchatctl keygen`)",
                         path, 2 * DCHAT_KEY_BYTES);
                goto out;
        }
        r = 0;
out:
        sodium_memzero(text, sizeof text);
        close(fd);
        return r;
}

const char *key_path(const char *configured, char *buf, size_t cap)
{
        const char *cred = getenv("CREDENTIALS_DIRECTORY");

        if (cred && cred[0]) {
                snprintf(buf, cap, "%s/%s", cred, DCHAT_KEY_CREDENTIAL);
                if (access(buf, F_OK) == 0)
                        return buf;
        }
        snprintf(buf, cap, "%s", configured && configured[0] ? configured : DCHAT_DEFAULT_KEY_FILE);
        return buf;
}

int key_generate(const char *path, bool force, char *err, size_t errlen)
{
        uint8_t key[DCHAT_KEY_BYTES];
        char hex[2 * DCHAT_KEY_BYTES + 2], tmp[PATH_MAX], dir[PATH_MAX];
        int r;

        if (sodium_init() < 0) {
                snprintf(err, errlen, "libsodium cannot be initialised");
                return -EIO;
        }
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
        randombytes_buf(key, sizeof key);
        sodium_bin2hex(hex, sizeof hex - 1, key, sizeof key);
        sodium_memzero(key, sizeof key);
        strcat(hex, "\n");
        size_t len = strlen(hex);
        if (fchmod(fd, 0600) < 0 || write(fd, hex, len) != (ssize_t) len || fsync(fd) < 0) {
                r = errno ? -errno : -EIO;
                snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-r));
                goto fail;
        }
        sodium_memzero(hex, sizeof hex);
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
        sodium_memzero(hex, sizeof hex);
        close(fd);
        (void) unlink(tmp);
        return r;
}
