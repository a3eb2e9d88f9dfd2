/* SPDX-License-Identifier: MIT */
/*
 * send-raw — throw bytes at a socket and see whether the other side hangs up.
 *
 *   send-raw [-t MS] [-o FILE] [-h] [-e TYPE] TARGET < BYTES
 *
 * TARGET is 127.0.0.1:PORT, [::1]:PORT or the absolute path of a UNIX stream
 * socket.  send-raw connects, sends all of standard input, then waits up to
 * MS milliseconds (default 1000) for the other side to close, reading and
 * keeping whatever it sends.  It prints one word on standard output:
 *
 *   closed   the other side closed the connection (EOF), or reset it
 *   open     it was still open when the time ran out, or when the frame -e waits
 *            for arrived (send-raw then closes it)
 *
 * -o FILE  write every byte received to FILE
 * -h       half-close (shutdown SHUT_WR) after sending: the other side sees EOF
 * -e TYPE  stop waiting as soon as a whole dchat frame (daemon/proto.h: u32 length,
 *          u8 version, u8 type, ...) of this type has arrived, e.g. 9 (VIEW_END),
 *          10 (ERROR), 12 (POSTED); the frames before it are kept too
 *
 * Exit status: 0 once connected (whatever happened next), 1 if it could not
 * connect or read its input, 2 on bad usage.  For tests only: loopback and
 * local sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
        fprintf(stderr, "usage: send-raw [-t MS] [-o FILE] [-h] [-e TYPE] HOST:PORT|/path/to/socket < bytes\n");
}

static int connect_target(const char *target)
{
        struct sockaddr_storage ss;
        socklen_t len;
        int fd;

        memset(&ss, 0, sizeof ss);
        if (target[0] == '/') {
                struct sockaddr_un *un = (struct sockaddr_un *) &ss;
                if (strlen(target) >= sizeof un->sun_path) {
                        fprintf(stderr, "send-raw: path too long: %s\n", target);
                        return -1;
                }
                un->sun_family = AF_UNIX;
                strcpy(un->sun_path, target);
                len = sizeof *un;
        } else {
                char host[128];
                const char *colon = strrchr(target, ':');
                if (!colon || (size_t) (colon - target) >= sizeof host) {
                        fprintf(stderr, "send-raw: bad target %s\n", target);
                        return -1;
                }
                memcpy(host, target, (size_t) (colon - target));
                host[colon - target] = '\0';
                long port = strtol(colon + 1, NULL, 10);
                if (port < 1 || port > 65535) {
                        fprintf(stderr, "send-raw: bad port in %s\n", target);
                        return -1;
                }
                if (host[0] == '[' && host[strlen(host) - 1] == ']') {
                        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;
                        host[strlen(host) - 1] = '\0';
                        in6->sin6_family = AF_INET6;
                        in6->sin6_port = htons((uint16_t) port);
                        if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1) {
                                fprintf(stderr, "send-raw: bad address %s\n", target);
                                return -1;
                        }
                        len = sizeof *in6;
                } else {
                        struct sockaddr_in *in = (struct sockaddr_in *) &ss;
                        in->sin_family = AF_INET;
                        in->sin_port = htons((uint16_t) port);
                        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
                                fprintf(stderr, "send-raw: bad address %s\n", target);
                                return -1;
                        }
                        len = sizeof *in;
                }
        }
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                perror("send-raw: socket");
                return -1;
        }
        if (connect(fd, (struct sockaddr *) &ss, len) < 0) {
                fprintf(stderr, "send-raw: connect %s: %s\n", target, strerror(errno));
                close(fd);
                return -1;
        }
        return fd;
}

static long long now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What came in, to look for the frame -e waits for. */
static unsigned char *got;
static size_t got_len, got_cap;

static int keep(const char *p, size_t n)
{
        if (got_len + n > got_cap) {
                size_t cap = got_cap ? got_cap : 65536;
                while (cap < got_len + n)
                        cap *= 2;
                unsigned char *q = realloc(got, cap);
                if (!q)
                        return -1;
                got = q;
                got_cap = cap;
        }
        memcpy(got + got_len, p, n);
        got_len += n;
        return 0;
}

/* Has a whole frame of this type arrived? */
static int have_frame(int type)
{
        size_t off = 0;
        while (got_len - off >= 8) {
                size_t len = (size_t) got[off] << 24 | (size_t) got[off + 1] << 16 | (size_t) got[off + 2] << 8 |
                             got[off + 3];
                if (got_len - off - 8 < len)
                        return 0;
                if (got[off + 5] == type)
                        return 1;
                off += 8 + len;
        }
        return 0;
}

/* Reads what the other side sent; 1 when it closed, 0 when nothing more now. */
static int drain(int fd, int out)
{
        char buf[16384];
        for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n == 0)
                        return 1;
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return 1;       /* ECONNRESET and friends: it hung up */
                }
                if (out >= 0 && write(out, buf, (size_t) n) != n) {
                        perror("send-raw: write");
                        return 1;
                }
                if (keep(buf, (size_t) n) < 0) {
                        perror("send-raw: memory");
                        return 1;
                }
        }
}

int main(int argc, char *argv[])
{
        static char buf[1 << 20];
        long timeout_ms = 1000;
        const char *outfile = NULL;
        int half_close = 0, out = -1, fd, o, closed = 0, want_type = -1;

        /* by hand: the Makefile's tool rule does not link libbsd, whose overlay renames getopt */
        for (o = 1; o < argc && argv[o][0] == '-' && argv[o][1]; o++) {
                if (strcmp(argv[o], "-h") == 0)
                        half_close = 1;
                else if (strcmp(argv[o], "-t") == 0 && o + 1 < argc)
                        timeout_ms = strtol(argv[++o], NULL, 10);
                else if (strcmp(argv[o], "-o") == 0 && o + 1 < argc)
                        outfile = argv[++o];
                else if (strcmp(argv[o], "-e") == 0 && o + 1 < argc)
                        want_type = (int) strtol(argv[++o], NULL, 10);
                else {
                        usage();
                        return 2;
                }
        }
        if (o != argc - 1 || timeout_ms < 0) {
                usage();
                return 2;
        }
        if (outfile) {
                out = open(outfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (out < 0) {
                        fprintf(stderr, "send-raw: %s: %s\n", outfile, strerror(errno));
                        return 1;
                }
        }
        fd = connect_target(argv[o]);
        if (fd < 0)
                return 1;

        /* send all of stdin; the other side may hang up half way, which is an answer too */
        for (;;) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        perror("send-raw: read");
                        return 1;
                }
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n && !closed;) {
                        ssize_t w = send(fd, buf + off, (size_t) (n - off), MSG_NOSIGNAL);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0) {
                                closed = 1;
                                break;
                        }
                        off += w;
                }
                if (closed)
                        break;
        }
        if (!closed && half_close)
                (void) shutdown(fd, SHUT_WR);

        long long end = now_ms() + timeout_ms;
        while (!closed && !(want_type >= 0 && have_frame(want_type))) {
                long long left = end - now_ms();
                if (left <= 0)
                        break;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int r = poll(&p, 1, (int) left);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0) {
                        perror("send-raw: poll");
                        break;
                }
                if (r > 0)
                        closed = drain(fd, out);
        }
        if (closed)
                (void) drain(fd, out);  /* whatever came with the close */
        puts(closed ? "closed" : "open");
        close(fd);
        if (out >= 0)
                close(out);
        return 0;
}
