/* SPDX-License-Identifier: MIT */
/*
 * notes-file.c — one server's shared notes on disk: STATE_DIRECTORY/notes.
 *
 *   "DCNF" (u32)  length L of the body (u32)  BLAKE2b-128 of the body
 *   body: notes_put (notes.c)
 *
 * Every write replaces the whole file: a temp file written and synced,
 * renamed over the old one, the directory synced; only then is the write
 * acknowledged.  A crash leaves the old file or the new one, never half
 * of either.  A file that does not check out is left as it is and the
 * notes refused until an admin moves it aside (nothing stored is dropped
 * by dchatd).  (A group keeps its notes in Raft instead: fsm.c.)
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "durable.h"
#include "notes.h"

#define FILE_MAGIC      UINT32_C(0x44434E46)    /* "DCNF" */
#define FILE_HDR        (8 + 16)
#define FILE_NAME       "notes"
#define FILE_MAX        (4u << 20)              /* DCHAT_NOTES_MAX full notes fit well within */

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

int notes_load(struct notes *t, const char *dir, char *err, size_t cap)
{
        char path[4096];
        uint8_t *buf = NULL, sum[16];
        struct stat st;
        ssize_t got = 0;
        int fd, r = 0;

        notes_init(t);
        snprintf(path, sizeof path, "%s/%s", dir, FILE_NAME);
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;       /* no notes written yet */
                r = -errno;
                snprintf(err, cap, "cannot open %s: %s", path, strerror(errno));
                return r;
        }
        if (fstat(fd, &st) < 0) {
                /* an I/O error, not damage: the file is not to be moved aside for it */
                r = -errno;
                snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode) || st.st_size < FILE_HDR || st.st_size > FILE_MAX) {
                snprintf(err, cap, "%s is damaged: %s", path, !S_ISREG(st.st_mode) ? "not a regular file" :
                         st.st_size < FILE_HDR ? "shorter than its header" : "larger than any notes can be");
                close(fd);
                return -EBADMSG;
        }
        if (!(buf = malloc((size_t) st.st_size))) {
                close(fd);
                snprintf(err, cap, "cannot read %s: out of memory", path);
                return -ENOMEM;
        }
        while (got < st.st_size) {
                ssize_t k = read(fd, buf + got, (size_t) (st.st_size - got));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        r = k < 0 ? -errno : -EIO;
                        snprintf(err, cap, "cannot read %s: %s", path, strerror(-r));
                        goto out;
                }
                got += k;
        }
        uint32_t len = get_be32(buf + 4);
        if (get_be32(buf) != FILE_MAGIC || len != (uint64_t) st.st_size - FILE_HDR) {
                snprintf(err, cap, "%s is damaged: %s", path, get_be32(buf) != FILE_MAGIC ? "not a dchat notes file"
                         : "its length is not what its header says");
                r = -EBADMSG;
                goto out;
        }
        crypto_generichash(sum, sizeof sum, buf + FILE_HDR, len, NULL, 0);
        if (sodium_memcmp(sum, buf + 8, sizeof sum) != 0) {
                snprintf(err, cap, "%s is damaged: its checksum does not match", path);
                r = -EBADMSG;
                goto out;
        }
        struct rbuf rb = { .p = buf + FILE_HDR, .len = len };
        r = notes_get(&rb, t);
        if (r == 0 && rb.off != rb.len)
                r = -EBADMSG;
        if (r < 0) {
                notes_clear(t);
                snprintf(err, cap, r == -ENOMEM ? "cannot read %s: out of memory" :
                         "%s is damaged: its notes do not decode", path);
        }
out:
        free(buf);
        close(fd);
        return r;
}

int notes_save(const struct notes *t, const char *dir, char *err, size_t cap)
{
        char path[4096];
        struct wbuf b = {0};
        int dfd = -1, r = 0;
        const char *step;

        snprintf(path, sizeof path, "%s/%s", dir, FILE_NAME);
        wbuf_put(&b, (const uint8_t[FILE_HDR]) {0}, FILE_HDR);
        notes_put(&b, t);
        if (b.failed) {
                snprintf(err, cap, "cannot write %s: out of memory", path);
                wbuf_free(&b);
                return -ENOMEM;
        }
        put_be32(b.data, FILE_MAGIC);
        put_be32(b.data + 4, (uint32_t) (b.len - FILE_HDR));
        crypto_generichash(b.data + 8, 16, b.data + FILE_HDR, b.len - FILE_HDR, NULL, 0);

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                r = -errno;
                snprintf(err, cap, "cannot open the directory %s: %s", dir, strerror(-r));
                goto out;
        }
        r = durable_replace(dfd, FILE_NAME, b.data, b.len, &step);
        if (r < 0) {
                /* "sync the directory of": renamed, so the next start reads it, but it may not
                 * survive a power loss; every other step failed on the temp file */
                bool dir_step = strcmp(step, "sync the directory of") == 0;
                snprintf(err, cap, "cannot %s %s%s%s: %s", step, path, dir_step ? "" : ".tmp",
                         strcmp(step, "rename") == 0 ? " into place" : "", strerror(-r));
        }
out:
        if (dfd >= 0)
                close(dfd);
        wbuf_free(&b);
        return r;
}
