/* SPDX-License-Identifier: MIT */
/*
 * durable.c — replace a small file durably (durable.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "durable.h"

int durable_replace(int dirfd, const char *name, const void *data, size_t len, const char **step)
{
        char tmp[256];
        const char *what = "create";
        const char *p = data;
        int r = 0;

        if ((size_t) snprintf(tmp, sizeof tmp, "%s.tmp", name) >= sizeof tmp) {
                r = -ENAMETOOLONG;
                goto out;
        }
        int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        what = "write";
        for (size_t done = 0; done < len;) {
                ssize_t k = write(fd, p + done, len - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -EIO;
                        break;
                }
                done += (size_t) k;
        }
        if (r == 0) {
                what = "sync";
                if (fdatasync(fd) < 0)
                        r = -errno;
        }
        close(fd);
        if (r == 0) {
                what = "rename";
                if (renameat(dirfd, tmp, dirfd, name) < 0)
                        r = -errno;
        }
        if (r < 0) {
                (void) unlinkat(dirfd, tmp, 0);
                goto out;
        }
        /* the rename is durable only once the directory is */
        what = "sync the directory of";
        if (fsync(dirfd) < 0)
                r = -errno;
out:
        if (step)
                *step = what;
        return r;
}
