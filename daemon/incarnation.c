/* SPDX-License-Identifier: MIT */
/*
 * incarnation.c — a peer's incarnation number, kept in DIR/incarnation.
 *
 * Every start of a peer is a new incarnation: it tells the peer's lives
 * apart (a frame of an earlier life that arrives late must not be taken for
 * the living one's) and it is the high half of the peer's post ids, so that
 * a post id never names two posts, whatever restarts and late frames do.
 * Both need the numbers to grow from one start to the next, and neither may
 * depend on the wall clock doing so (an NTP step at boot, a VM restored from
 * a snapshot, a wrong RTC): the number is a counter, written (and synced,
 * file and directory) before it is used.
 *
 * The file holds one decimal number, the last incarnation handed out.  With
 * no file (the first start, or a state directory that was lost) the counter
 * starts at the wall clock's seconds, which is far above any counter a lost
 * file can have held unless the clock is wrong at the same moment; a peer
 * that still meets a later life of itself is told so by the others and
 * moves past it (incarnation_at_least).  Numbers stay below 2^32: the low
 * half of a post id counts the posts of one incarnation.
 *
 * DIR/vclock is a counter of the same kind for the peer's own component of
 * its vector clocks (ra.h): the value a life may count up to, reserved
 * (written and synced) before the life goes past it, so that the next life
 * starts above anything this one reached and clocks keep growing across
 * restarts without a write per event.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "durable.h"
#include "dchatd.h"

#define INCARNATION_FILE        "incarnation"
#define VCLOCK_FILE             "vclock"

/* Reads the number in file name (below max): 0 if there is no file. */
static int counter_read(int dirfd, const char *name, uint64_t max, uint64_t *last)
{
        char buf[32];
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
                if (errno != ENOENT)
                        return -errno;
                *last = 0;
                return 0;
        }
        ssize_t n = read(fd, buf, sizeof buf - 1);
        int e = errno;
        close(fd);
        if (n < 0)
                return -e;
        buf[n] = '\0';
        char *end;
        errno = 0;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || end == buf || (*end && *end != '\n') || v == 0 || v >= max)
                return -EBADMSG;
        *last = v;
        return 0;
}

/* Writes v into file name, durably (durable.h). */
static int counter_write(int dirfd, const char *name, uint64_t v)
{
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v);
        return durable_replace(dirfd, name, buf, (size_t) len, NULL);
}

int incarnation_next(const char *dir, uint64_t at_least, uint64_t *ret, char *err, size_t errlen)
{
        uint64_t last = 0, next;
        int r;

        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot open the state directory %s: %s", dir, strerror(-r));
                return r;
        }
        r = counter_read(dirfd, INCARNATION_FILE, DCHAT_INCARNATION_MAX, &last);
        if (r < 0) {
                snprintf(err, errlen, "cannot read %s/%s: %s%s", dir, INCARNATION_FILE,
                         r == -EBADMSG ? "not a number from 1 to 2^32-1" : strerror(-r),
                         r == -EBADMSG ? " (remove it: the next start counts on from the clock)" : "");
                goto out;
        }
        if (last == 0) {
                /* no counter yet: start far above any a lost file can have held */
                time_t now = time(NULL);
                next = now > 1 && (uint64_t) now < DCHAT_INCARNATION_MAX ? (uint64_t) now : 1;
        } else
                next = last + 1;
        if (next < at_least)
                next = at_least;
        if (next >= DCHAT_INCARNATION_MAX) {
                r = -ERANGE;
                snprintf(err, errlen, "%s/%s: the incarnation counter is exhausted (%" PRIu64 ")", dir,
                         INCARNATION_FILE, last);
                goto out;
        }
        r = counter_write(dirfd, INCARNATION_FILE, next);
        if (r < 0) {
                snprintf(err, errlen, "cannot write %s/%s: %s", dir, INCARNATION_FILE, strerror(-r));
                goto out;
        }
        *ret = next;
out:
        close(dirfd);
        return r;
}

int vclock_reserve(const char *dir, uint64_t *start, uint64_t end, char *err, size_t errlen)
{
        uint64_t last = 0;
        int r;

        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot open the state directory %s: %s", dir, strerror(-r));
                return r;
        }
        if (start) {
                r = counter_read(dirfd, VCLOCK_FILE, DCHAT_CLOCK_MAX, &last);
                if (r < 0) {
                        snprintf(err, errlen, "cannot read %s/%s: %s", dir, VCLOCK_FILE,
                                 r == -EBADMSG ? "not a number from 1 to 2^62" : strerror(-r));
                        goto out;
                }
                *start = last;
                end += last;
        }
        r = end <= DCHAT_CLOCK_MAX ? counter_write(dirfd, VCLOCK_FILE, end) : -ERANGE;
        if (r < 0)
                snprintf(err, errlen, "cannot write %s/%s: %s", dir, VCLOCK_FILE, strerror(-r));
out:
        close(dirfd);
        return r;
}
