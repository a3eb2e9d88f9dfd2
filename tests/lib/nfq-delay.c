/* SPDX-License-Identifier: MIT */
/*
 * nfq-delay — delay and loss for the system tests, on kernels without sch_netem.
 *
 *   nfq-delay [-q QUEUE] [-d DELAY_MS] [-l LOSS_PERCENT] [-s SEED]
 *
 * Takes the packets that an iptables rule sends to NFQUEUE number QUEUE
 * (default 0), drops LOSS_PERCENT of them at random and lets the others go
 * after DELAY_MS, in the order they came (a FIFO: no reordering, like a
 * link).  It must run in the network namespace of the rule: netlink queues
 * are per namespace.  Once the queue is bound it prints "ready" on standard
 * output, so a test can wait for it before adding the rule, e.g.
 *
 *   iptables -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0 --queue-bypass
 *
 * (--queue-bypass: with no nfq-delay listening, packets pass untouched).
 * SIGTERM or SIGINT: the packets still held are let go, a last line of
 * figures goes to standard error ("nfq-delay: N packets, D dropped, ..."),
 * and it exits 0.  -s makes the losses repeatable.
 */
#include <arpa/inet.h>          /* before the netfilter headers, which need it */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>

#define HELD_MAX 65536          /* packets held at once; more pass at once */

struct held {
        uint32_t id;
        uint64_t due;           /* CLOCK_MONOTONIC ns */
};

static struct held held[HELD_MAX];
static unsigned head, tail;     /* held[head..tail) modulo HELD_MAX */
static uint64_t delay_ns;
static double loss_pct;
static unsigned long n_in, n_dropped, n_overflow;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
        struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
        (void) msg;
        (void) data;

        if (!ph)
                return 0;
        uint32_t id = ntohl(ph->packet_id);
        n_in++;
        if (loss_pct > 0 && drand48() * 100.0 < loss_pct) {
                n_dropped++;
                return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
        }
        if (delay_ns == 0)
                return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
        if (tail - head >= HELD_MAX) {
                n_overflow++;
                return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
        }
        held[tail % HELD_MAX] = (struct held) { id, now_ns() + delay_ns };
        tail++;
        return 0;
}

static void on_signal(int sig)
{
        (void) sig;
        stop = 1;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: nfq-delay [-q QUEUE] [-d DELAY_MS] [-l LOSS_PERCENT] [-s SEED]\n");
}

static int number(const char *s, double lo, double hi, double *out)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || end == s || *end || v < lo || v > hi)
                return -1;
        *out = v;
        return 0;
}

int main(int argc, char **argv)
{
        double queue = 0, delay_ms = 0, seed = (double) (getpid() ^ time(NULL));
        int c;

        while ((c = getopt(argc, argv, "q:d:l:s:h")) != -1) {
                switch (c) {
                case 'q':
                        if (number(optarg, 0, 65535, &queue) < 0)
                                goto bad;
                        break;
                case 'd':
                        if (number(optarg, 0, 60000, &delay_ms) < 0)
                                goto bad;
                        break;
                case 'l':
                        if (number(optarg, 0, 100, &loss_pct) < 0)
                                goto bad;
                        break;
                case 's':
                        if (number(optarg, 0, 4294967295.0, &seed) < 0)
                                goto bad;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc)
                goto bad;
        delay_ns = (uint64_t) (delay_ms * 1e6);
        srand48((long) seed);

        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        struct nfq_handle *h = nfq_open();
        if (!h) {
                fprintf(stderr, "nfq-delay: nfq_open: %s\n", strerror(errno));
                return 1;
        }
        struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t) queue, on_packet, NULL);
        if (!qh) {
                fprintf(stderr, "nfq-delay: cannot bind queue %u: %s\n", (unsigned) queue, strerror(errno));
                nfq_close(h);
                return 1;
        }
        if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
                fprintf(stderr, "nfq-delay: nfq_set_mode: %s\n", strerror(errno));
                return 1;
        }
        (void) nfq_set_queue_maxlen(qh, 8192);
        int fd = nfq_fd(h);
        static char buf[65536] __attribute__((aligned));

        printf("ready\n");
        fflush(stdout);
        while (!stop) {
                uint64_t t = now_ns();
                while (head != tail && held[head % HELD_MAX].due <= t) {
                        nfq_set_verdict(qh, held[head % HELD_MAX].id, NF_ACCEPT, 0, NULL);
                        head++;
                }
                int timeout = -1;
                if (head != tail)
                        timeout = (int) ((held[head % HELD_MAX].due - t + 999999) / 1000000);
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r = poll(&p, 1, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "nfq-delay: poll: %s\n", strerror(errno));
                        break;
                }
                if (r == 0)
                        continue;
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n > 0)
                        nfq_handle_packet(h, buf, (int) n);
                else if (n < 0 && errno == ENOBUFS)
                        n_overflow++;   /* the kernel's queue overflowed: those went unseen */
        }
        while (head != tail) {
                nfq_set_verdict(qh, held[head % HELD_MAX].id, NF_ACCEPT, 0, NULL);
                head++;
        }
        fprintf(stderr, "nfq-delay: %lu packets, %lu dropped, %lu not delayed (overflow); delay %.1f ms, loss %.1f%%\n",
                n_in, n_dropped, n_overflow, delay_ms, loss_pct);
        nfq_destroy_queue(qh);
        nfq_close(h);
        return 0;
bad:
        usage(stderr);
        return 2;
}
