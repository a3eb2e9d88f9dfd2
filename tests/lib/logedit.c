/* SPDX-License-Identifier: MIT */
/*
 * logedit — rewrites the text of one entry of DIR/chat.log in place, as a
 * good record: its body re-encoded and both of its checksums computed again
 * (daemon/chatlog.c's format), so the log opens without damage and only
 * that entry differs.  For tests that plant a difference between replicas
 * (dchatctl verify).  The log must not be open in a dchatd.
 *
 *   logedit DIR SEQ TEXT
 *   logedit -d DIR SEQ
 *
 * TEXT must encode to as many bytes as the text it replaces (the record
 * keeps its size: change a letter).  Prints the old text.  With -d the
 * record is damaged instead: a byte of its body flipped, checksums left
 * as they were, so the next open quarantines that seq.  Either way the
 * checkpoint chat.log.idx is removed, so the next open reads the whole log.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dchatd.h"
#include "chatidx.h"

#define HDR 16

static void put_be32(uint8_t *p, uint32_t v)
{
        p[0] = (uint8_t) (v >> 24), p[1] = (uint8_t) (v >> 16), p[2] = (uint8_t) (v >> 8), p[3] = (uint8_t) v;
}

static uint32_t get_be32(const uint8_t *p)
{
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

int main(int argc, char **argv)
{
        static struct dchat_entry e;
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        struct chatlog_cursor cur;
        char path[PATH_MAX];
        uint8_t hdr[HDR];
        struct wbuf body = {0};
        int r, fd;

        bool damage = argc == 4 && !strcmp(argv[1], "-d");
        if (damage)
                argv++;
        else if (argc != 4) {
                fprintf(stderr, "usage: logedit DIR SEQ TEXT | logedit -d DIR SEQ\n");
                return 2;
        }
        uint64_t seq = strtoull(argv[2], NULL, 10);
        const char *text = damage ? NULL : argv[3];
        r = chatlog_open(argv[1], &log, &rec);
        if (r < 0) {
                fprintf(stderr, "logedit: cannot open the log in %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        r = chatlog_seek(log, seq, &cur);
        uint64_t off = cur.off;
        if (r == 0)
                r = chatlog_next(log, &cur, &e);
        chatlog_close(log);     /* its lock too: the file is ours from here */
        if (r != 0 || e.seq != seq) {
                fprintf(stderr, "logedit: no good entry %llu in %s/chat.log\n", (unsigned long long) seq, argv[1]);
                return 1;
        }
        if (damage) {
                strlcpy(e.text, "?", sizeof e.text);
                e.text_len = 1;
        } else if (strlen(text) != e.text_len) {
                fprintf(stderr, "logedit: the new text has %zu bytes, the old one %u: they must be as long\n",
                        strlen(text), e.text_len);
                return 1;
        }
        if (!damage) {
                printf("%s\n", e.text);
                memcpy(e.text, text, e.text_len);
        }
        proto_put_entry(&body, &e);

        snprintf(path, sizeof path, "%s/chat.log", argv[1]);
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 || pread(fd, hdr, HDR, (off_t) off) != HDR || (!damage && get_be32(hdr + 4) != body.len)) {
                fprintf(stderr, "logedit: the record of seq %llu at offset %llu is not where it should be\n",
                        (unsigned long long) seq, (unsigned long long) off);
                return 1;
        }
        if (damage) {
                /* the seq's high byte (the body starts with it): checksums as they were */
                uint8_t b;
                if (pread(fd, &b, 1, (off_t) (off + HDR)) != 1 || (b ^= 0x80, pwrite(fd, &b, 1, (off_t) (off + HDR))) != 1 ||
                    fsync(fd) < 0) {
                        fprintf(stderr, "logedit: cannot write %s: %s\n", path, strerror(errno));
                        return 1;
                }
        } else {
                put_be32(hdr + 8, crc32c(0, body.data, body.len));
                put_be32(hdr + 12, crc32c(0, hdr, 12));
        }
        if (!damage && (pwrite(fd, hdr, HDR, (off_t) off) != HDR ||
                        pwrite(fd, body.data, body.len, (off_t) (off + HDR)) != (ssize_t) body.len || fsync(fd) < 0)) {
                fprintf(stderr, "logedit: cannot write %s: %s\n", path, strerror(errno));
                return 1;
        }
        close(fd);
        wbuf_free(&body);
        snprintf(path, sizeof path, "%s/chat.log.idx", argv[1]);
        if (unlink(path) < 0 && errno != ENOENT) {
                fprintf(stderr, "logedit: cannot remove %s: %s\n", path, strerror(errno));
                return 1;
        }
        return 0;
}
