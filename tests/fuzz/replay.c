/* SPDX-License-Identifier: MIT */
/*
 * replay.c — main() for a fuzz target outside libFuzzer: runs the target
 * once on every input kept in the repository, as a TAP test, so that
 * `make check` (under ASan and UBSan) keeps every case that once crashed.
 *
 *   build/asan/tests/fuzz/fuzz-NAME [FILE|DIR...]
 *
 * Without arguments: every file in tests/fuzz/corpus/fuzz-NAME/ and
 * tests/fuzz/regressions/fuzz-NAME/ (relative to $DCHAT_SRCDIR, default the
 * current directory); with neither, the test is skipped.  A crash ends the program: the sanitizer's report
 * names the input last announced on stdout ("# FILE").
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned n_run, n_failed;

static void run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf = NULL;
        size_t len = 0, cap = 0;

        n_run++;
        if (!f) {
                printf("not ok %u - %s: %s\n", n_run, path, strerror(errno));
                n_failed++;
                return;
        }
        for (;;) {
                if (len == cap) {
                        cap = cap ? 2 * cap : 4096;
                        uint8_t *nb = realloc(buf, cap);
                        if (!nb) {
                                fprintf(stderr, "out of memory\n");
                                exit(2);
                        }
                        buf = nb;
                }
                size_t n = fread(buf + len, 1, cap - len, f);
                if (n == 0)
                        break;
                len += n;
        }
        fclose(f);
        printf("# %s\n", path);
        fflush(stdout);
        /* libFuzzer hands over a buffer of exactly size bytes: so do we */
        uint8_t *exact = malloc(len ? len : 1);
        if (!exact) {
                fprintf(stderr, "out of memory\n");
                exit(2);
        }
        memcpy(exact, buf, len);
        free(buf);
        (void) LLVMFuzzerTestOneInput(exact, len);
        free(exact);
        printf("ok %u - %s\n", n_run, path);
}

static int cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void run_path(const char *path, bool must_exist)
{
        struct stat st;
        if (stat(path, &st) < 0) {
                if (must_exist) {
                        n_run++;
                        n_failed++;
                        printf("not ok %u - %s: %s\n", n_run, path, strerror(errno));
                }
                return;
        }
        if (!S_ISDIR(st.st_mode)) {
                run_file(path);
                return;
        }
        DIR *d = opendir(path);
        if (!d)
                return;
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char **nn = realloc(names, (n + 1) * sizeof *names);
                if (!nn)
                        break;
                names = nn;
                if (asprintf(&names[n], "%s/%s", path, de->d_name) < 0)
                        break;
                n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp);
        for (size_t i = 0; i < n; i++) {
                run_file(names[i]);
                free(names[i]);
        }
        free(names);
}

int main(int argc, char *argv[])
{
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc > 1) {
                for (int i = 1; i < argc; i++)
                        run_path(argv[i], true);
        } else {
                const char *src = getenv("DCHAT_SRCDIR");
                char *name = basename(argv[0]);
                char dir[4096];
                snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src ? src : ".", name);
                run_path(dir, false);
                snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/%s", src ? src : ".", name);
                run_path(dir, false);
        }
        if (n_run == 0)
                printf("1..0 # SKIP no inputs kept in tests/fuzz/corpus/ or regressions/ for %s\n",
                       basename(argv[0]));
        else
                printf("1..%u\n", n_run);
        return n_failed ? 1 : 0;
}
