/* SPDX-License-Identifier: MIT */
/*
 * mklog — appends entries to DIR/chat.log through dchatd's own store
 * (daemon/chatlog.c), fast: 1024 entries a write and a sync.  For tests and
 * benchmarks that need a big or a hand-timed log without posting it.
 *
 *   mklog [-t FIRST_TIME] [-s STEP] [-k SKEW] [-l TEXT_LEN] DIR COUNT
 *
 * Entry i (from 0) is "line SEQ" padded with letters to TEXT_LEN bytes
 * (default: no padding), by author "lucy", from node1 and node2 in turn,
 * each with its own post ids following those already stored; its time is
 * FIRST_TIME + i * STEP (default: STEP 1 and a FIRST_TIME that puts the
 * last entry at now), and node2's clock is SKEW
 * seconds behind (default 0), so that times are not monotonic along the
 * log.  Fences go on from the log's last one.  Prints the last seq.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dchatd.h"

#define BATCH 1024

int main(int argc, char **argv)
{
        static struct dchat_entry e[BATCH];
        static enum chatlog_result res[BATCH];
        long long t0 = -1, step = 1, skew = 0, len = 0;
        struct chatlog *log = NULL;
        struct chatlog_recovery rec;
        uint64_t count, lamport, post_id[2];
        int o, r;

        while ((o = getopt(argc, argv, "t:s:k:l:")) >= 0) {
                switch (o) {
                case 't': t0 = atoll(optarg); break;
                case 's': step = atoll(optarg); break;
                case 'k': skew = atoll(optarg); break;
                case 'l': len = atoll(optarg); break;
                default: goto usage;
                }
        }
        if (argc - optind != 2 || len < 0 || len > DCHAT_TEXT_MAX)
                goto usage;
        count = strtoull(argv[optind + 1], NULL, 10);
        if (t0 < 0)
                t0 = (long long) time(NULL) - (long long) (count ? count - 1 : 0) * step;
        r = chatlog_open(argv[optind], &log, &rec);
        if (r < 0) {
                fprintf(stderr, "mklog: cannot open the log in %s: %s\n", argv[optind], strerror(-r));
                return 1;
        }
        chatlog_last_fence(log, &lamport, NULL, NULL);
        post_id[0] = chatlog_last_post_id(log, "node1");
        post_id[1] = chatlog_last_post_id(log, "node2");
        for (uint64_t i = 0; i < count;) {
                unsigned n = count - i < BATCH ? (unsigned) (count - i) : BATCH;
                for (unsigned k = 0; k < n; k++, i++) {
                        struct dchat_entry *x = &e[k];
                        int who = (int) (i % 2);
                        *x = (struct dchat_entry) { .lamport = ++lamport, .post_id = ++post_id[who],
                                                    .time = t0 + (int64_t) i * step - (who ? skew : 0) };
                        strcpy(x->node, who ? "node2" : "node1");
                        strcpy(x->author, "lucy");
                        int l = snprintf(x->text, sizeof x->text, "line %llu ",
                                         (unsigned long long) (chatlog_last_seq(log) + k + 1));
                        while (l < len)
                                x->text[l] = (char) ('a' + l % 26), l++;
                        x->text[l] = '\0';
                        x->text_len = (uint16_t) l;
                }
                r = chatlog_append(log, e, n, res);
                if (r < 0 || res[0] != CHATLOG_STORED || res[n - 1] != CHATLOG_STORED) {
                        fprintf(stderr, "mklog: append failed: %s\n", r < 0 ? strerror(-r) : "refused");
                        return 1;
                }
        }
        printf("%llu\n", (unsigned long long) chatlog_last_seq(log));
        chatlog_close(log);
        return 0;
usage:
        fprintf(stderr, "usage: mklog [-t FIRST_TIME] [-s STEP] [-k SKEW] [-l TEXT_LEN] DIR COUNT\n");
        return 2;
}
