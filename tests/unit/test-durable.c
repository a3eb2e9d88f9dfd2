/* SPDX-License-Identifier: MIT */
/*
 * test-durable.c — durable_replace (daemon/durable.c), which the incarnation
 * counters, the chat log's checkpoint and the shared notes are written with:
 * a replacement leaves the old content or the new one, whole, and says which
 * step failed.  Failures are injected by defining the syscalls' wrappers here
 * (the daemon's objects call these, as test-chatlog does): the sync, the
 * rename, the directory sync; a temp name taken by a directory fails the
 * create.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "durable.h"
#include "tap.h"

static struct {
        int fdatasync_errno, rename_errno, fsync_errno;
} inject;

int fdatasync(int fd)
{
        if (inject.fdatasync_errno) {
                errno = inject.fdatasync_errno;
                inject.fdatasync_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_fdatasync, fd);
}

int renameat(int ofd, const char *old, int nfd, const char *new)
{
        if (inject.rename_errno) {
                errno = inject.rename_errno;
                inject.rename_errno = 0;
                return -1;
        }
#ifdef SYS_renameat
        return (int) syscall(SYS_renameat, ofd, old, nfd, new);
#else
        return (int) syscall(SYS_renameat2, ofd, old, nfd, new, 0);
#endif
}

int fsync(int fd)
{
        if (inject.fsync_errno) {
                errno = inject.fsync_errno;
                inject.fsync_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_fsync, fd);
}

static char dir[64];

static const char *path_of(const char *name)
{
        static char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, name);
        return p;
}

/* The content of name, or "" when it does not exist. */
static const char *content(const char *name)
{
        static char buf[256];
        FILE *f = fopen(path_of(name), "r");
        size_t n = 0;

        if (f) {
                n = fread(buf, 1, sizeof buf - 1, f);
                fclose(f);
        }
        buf[n] = 0;
        return buf;
}

static bool exists(const char *name)
{
        struct stat st;
        return lstat(path_of(name), &st) == 0;
}

int main(void)
{
        const char *step = NULL;
        int r;

        plan_no_plan();
        strcpy(dir, "/tmp/test-durable.XXXXXX");
        if (!mkdtemp(dir))
                return 1;
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        r = durable_replace(dfd, "f", "one\n", 4, &step);
        ok(r == 0 && strcmp(content("f"), "one\n") == 0 && !exists("f.tmp"), "a new file: written, no temp left");
        r = durable_replace(dfd, "f", "two\n", 4, &step);
        ok(r == 0 && strcmp(content("f"), "two\n") == 0, "replaced");

        /* a temp file left by a crash is overwritten */
        FILE *f = fopen(path_of("f.tmp"), "w");
        fputs("a long stale temp file from a crash", f);
        fclose(f);
        r = durable_replace(dfd, "f", "three\n", 6, &step);
        ok(r == 0 && strcmp(content("f"), "three\n") == 0 && !exists("f.tmp"), "a stale temp file: overwritten");

        /* each failure: the old content stays, whole, and the step is named */
        inject.fdatasync_errno = EIO;
        r = durable_replace(dfd, "f", "four\n", 5, &step);
        ok(r == -EIO && strcmp(step, "sync") == 0, "a failed sync: %d, %s", r, step);
        ok(strcmp(content("f"), "three\n") == 0 && !exists("f.tmp"), "... the old content stays, no temp left");

        inject.rename_errno = EXDEV;
        r = durable_replace(dfd, "f", "four\n", 5, &step);
        ok(r == -EXDEV && strcmp(step, "rename") == 0, "a failed rename: %d, %s", r, step);
        ok(strcmp(content("f"), "three\n") == 0 && !exists("f.tmp"), "... the old content stays, no temp left");

        mkdir(path_of("f.tmp"), 0700);
        mkdir(path_of("f.tmp/x"), 0700);
        r = durable_replace(dfd, "f", "four\n", 5, &step);
        ok(r == -EISDIR && strcmp(step, "create") == 0, "a temp name taken by a directory: %d, %s", r, step);
        ok(strcmp(content("f"), "three\n") == 0 && exists("f.tmp/x"), "... the old content stays, the directory too");
        rmdir(path_of("f.tmp/x"));
        rmdir(path_of("f.tmp"));

        /* after the rename: the new content is in place, but the caller hears it may not last */
        inject.fsync_errno = EIO;
        r = durable_replace(dfd, "f", "five\n", 5, &step);
        ok(r == -EIO && strcmp(step, "sync the directory of") == 0, "a failed directory sync: %d, %s", r, step);
        ok(strcmp(content("f"), "five\n") == 0 && !exists("f.tmp"), "... renamed: the new content is in place");

        char longname[300];
        memset(longname, 'n', sizeof longname - 1);
        longname[sizeof longname - 1] = 0;
        r = durable_replace(dfd, longname, "x", 1, &step);
        ok(r == -ENAMETOOLONG, "a name too long for its temp name: %d", r);

        r = durable_replace(dfd, "empty", "", 0, NULL);
        ok(r == 0 && exists("empty") && strcmp(content("empty"), "") == 0, "an empty file, step not asked for");

        unlink(path_of("f"));
        unlink(path_of("empty"));
        close(dfd);
        ok(rmdir(dir) == 0, "nothing left behind");
        return done_testing();
}
