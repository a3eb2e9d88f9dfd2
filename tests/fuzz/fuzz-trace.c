/* SPDX-License-Identifier: MIT */
/*
 * fuzz-trace.c — libFuzzer target: what `dchatctl trace --from` reads from
 * a file anyone may hand it (cli/json.c, cli/tmodel.c): the input, cut into
 * lines, each read as JSON (a journal export's entry or a trace's line);
 * then the model is finished, windowed, laid out in the three orders,
 * checked, and written in its three forms (to /dev/null).  Nothing may
 * crash, leak or read out of bounds, and what the writers write must read
 * back as the same number of events.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cli/json.c"
#include "../../cli/tmodel.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "fuzz-trace: check failed: %s (line %d)\n", #x, __LINE__); abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char err[1024], report[4096];
        struct tmodel m, back;
        const char *p = (const char *) data, *end = p + size;

        tm_init(&m);
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                (void) tm_read_json(&m, p, len, err, sizeof err);
                p += len + (nl != NULL);
        }
        tm_finish(&m);
        if (m.n) {
                (void) tm_check(&m, report, sizeof report);
                for (enum tm_order o = TM_PHYSICAL; o <= TM_VECTOR; o++)
                        tm_layout(&m, o);
                FILE *null = fopen("/dev/null", "w");
                tm_write_text(&m, null);
                tm_write_shiviz(&m, null);
                fclose(null);
                /* the JSON form reads back as the same events */
                char *buf = NULL;
                size_t blen = 0;
                FILE *f = open_memstream(&buf, &blen);
                tm_write_json(&m, f);
                fclose(f);
                tm_init(&back);
                for (char *l = buf, *e; l && *l; l = e ? e + 1 : NULL) {
                        e = strchr(l, '\n');
                        CHECK(tm_read_json(&back, l, e ? (size_t) (e - l) : strlen(l), err, sizeof err) >= 0);
                }
                tm_finish(&back);
                CHECK(back.n == m.n);
                tm_free(&back);
                free(buf);
                (void) tm_window_post(&m, 1, err, sizeof err);
                tm_window_time(&m, 1, UINT64_MAX);
        }
        tm_free(&m);
        return 0;
}
