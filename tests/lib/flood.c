/* SPDX-License-Identifier: MIT */
/*
 * flood — a stranger without the cluster key that holds connections open:
 * opens N TCP connections to a port, says nothing on them, and keeps them
 * (dchat issue 11, item 6).
 *
 *   flood -n N [-s SRC] [-k K] [-r] [-d MS] [-t MS] HOST:PORT
 *
 * -n N    connections to hold (at most 1024)
 * -s SRC  the first source address (IPv4, default 127.0.0.2): connection i is
 *         bound to SRC + (i mod K), so on loopback (all of 127/8 is local) the
 *         strangers have addresses of their own, apart from the members'
 * -k K    how many source addresses (default 1)
 * -r      reopen a connection as soon as the other side closes it (a persistent
 *         attacker), after -d MS (default 0)
 * -t MS   run that long (default: until SIGTERM or SIGINT)
 *
 * Prints "open N" once the first N connections are up, and at the end
 * "opened O closed C" (C: closed by the other side).  For tests only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024

static volatile sig_atomic_t stop;
static struct sockaddr_in target;
static uint32_t src_first;              /* host order */
static unsigned n_src = 1;

static void on_signal(int sig)
{
        (void) sig;
        stop = 1;
}

static uint64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* A blocking connect from source address number i (loopback answers at once). */
static int open_one(unsigned i)
{
        struct sockaddr_in src = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(src_first + i % n_src) };
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -1;
        if (bind(fd, (struct sockaddr *) &src, sizeof src) < 0 ||
            connect(fd, (struct sockaddr *) &target, sizeof target) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

int main(int argc, char *argv[])
{
        static struct pollfd pfd[MAX_CONNS];
        static uint64_t reopen_at[MAX_CONNS];
        unsigned n = 0, delay = 0;
        long run_ms = -1;
        int reopen = 0;
        const char *dest = NULL;
        struct in_addr a;

        inet_pton(AF_INET, "127.0.0.2", &a);
        src_first = ntohl(a.s_addr);
        /* (no getopt: libbsd's overlay would need linking) */
        for (int i = 1; i < argc; i++) {
                const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(o, "-r") == 0) {
                        reopen = 1;
                        continue;
                }
                if (o[0] != '-') {
                        if (dest)
                                goto usage;
                        dest = o;
                        continue;
                }
                if (!v)
                        goto usage;
                i++;
                if (strcmp(o, "-n") == 0)
                        n = (unsigned) atoi(v);
                else if (strcmp(o, "-s") == 0) {
                        if (inet_pton(AF_INET, v, &a) != 1)
                                goto usage;
                        src_first = ntohl(a.s_addr);
                } else if (strcmp(o, "-k") == 0)
                        n_src = (unsigned) atoi(v);
                else if (strcmp(o, "-d") == 0)
                        delay = (unsigned) atoi(v);
                else if (strcmp(o, "-t") == 0)
                        run_ms = atol(v);
                else
                        goto usage;
        }
        if (!dest || n < 1 || n > MAX_CONNS || n_src < 1)
                goto usage;
        {
                char host[64];
                const char *t = dest, *colon = strrchr(t, ':');
                if (!colon || (size_t) (colon - t) >= sizeof host)
                        goto usage;
                memcpy(host, t, (size_t) (colon - t));
                host[colon - t] = '\0';
                target = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(colon + 1)) };
                if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
                        goto usage;
        }
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        signal(SIGPIPE, SIG_IGN);

        unsigned long opened = 0, closed = 0;
        for (unsigned i = 0; i < n; i++) {
                pfd[i] = (struct pollfd) { .fd = open_one(i), .events = POLLIN };
                if (pfd[i].fd < 0) {
                        fprintf(stderr, "flood: connection %u from source %u: %s\n", i, i % n_src, strerror(errno));
                        return 1;
                }
                opened++;
        }
        printf("open %u\n", n);
        fflush(stdout);

        uint64_t end = run_ms >= 0 ? now_ms() + (uint64_t) run_ms : UINT64_MAX;
        while (!stop && now_ms() < end) {
                uint64_t now = now_ms(), next = end;
                for (unsigned i = 0; i < n; i++) {
                        if (pfd[i].fd >= 0 || !reopen)
                                continue;
                        if (reopen_at[i] <= now) {
                                pfd[i].fd = open_one(i);
                                if (pfd[i].fd >= 0)
                                        opened++;
                                else
                                        reopen_at[i] = now + 10;        /* e.g. out of ports: later */
                        }
                        if (pfd[i].fd < 0 && reopen_at[i] < next)
                                next = reopen_at[i];
                }
                int timeout = next == UINT64_MAX ? 1000 : next > now ? (int) (next - now) : 0;
                if (timeout > 1000)
                        timeout = 1000;
                if (poll(pfd, n, timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("flood: poll");
                        return 1;
                }
                for (unsigned i = 0; i < n; i++) {
                        char buf[4096];
                        if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t r = recv(pfd[i].fd, buf, sizeof buf, MSG_DONTWAIT);
                        if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
                                continue;       /* whatever it says, we say nothing */
                        close(pfd[i].fd);
                        pfd[i].fd = -1;         /* poll ignores it */
                        closed++;
                        reopen_at[i] = now_ms() + delay;
                }
        }
        printf("opened %lu closed %lu\n", opened, closed);
        return 0;
usage:
        fprintf(stderr, "usage: flood -n N [-s SRC] [-k K] [-r] [-d MS] [-t MS] HOST:PORT\n");
        return 2;
}
