/* SPDX-License-Identifier: MIT */
/*
 * send-raw — throw bytes at a socket and see whether the other side hangs up.
 *
 *   send-raw [-t MS] [-o FILE] [-h] [-N] [-e TYPE] [-b SRC] [-w FILE] [-k KEYFILE] [-H HOSTKEYFILE] [-n NAME] TARGET < BYTES
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
 * -N       never read: send (for at most MS milliseconds: the other side may stop
 *          reading), then keep the connection open for MS milliseconds without
 *          reading a byte (a client that floods requests and never takes its
 *          answers), then close it; prints "held", or "closed" if a send failed
 * -e TYPE  stop waiting as soon as a whole dchat frame (daemon/proto.h: u32 length,
 *          u8 version, u8 type, ...) of this type has arrived, e.g. 9 (VIEW_END),
 *          10 (ERROR), 12 (POSTED); the frames before it are kept too
 * -b SRC   bind the connection to source address SRC first (IPv4): on loopback,
 *          127.0.0.2 and up are addresses no cluster member uses (a stranger's)
 * -k KEYFILE -n NAME
 *          be a cluster member: run the link handshake (daemon/secure.c) as node
 *          NAME with the key in KEYFILE first, then send standard input cut into
 *          frames, one encrypted record each (a tail that is no whole frame goes
 *          as one more record); what comes back is decrypted before -o and -e
 *          see it.  A failed handshake prints its reason on stderr and "closed".
 * -S       with -k: in the server role (the handshake says so), for the
 *          questions servers ask each other (GROUP)
 * -H HOSTKEYFILE -n NAME
 *          the same with a host key (dchatctl keygen --host): the version 2
 *          handshake, signed with it (and with -k, the cluster key as well);
 *          whatever host key the other end presents is taken
 * -w FILE  write every byte sent (with -k/-H: the handshake messages and the
 *          encrypted records as they went on the wire) to FILE, to be played
 *          again later without the keys
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

#include "key.h"
#include "secure.h"

static struct secure *sec;              /* -k: the link's state */
static uint8_t role = ROLE_PEER;        /* -S: ROLE_SERVER */
static struct wbuf raw;                 /* -k: received bytes not yet decrypted */

static void usage(void)
{
        fprintf(stderr, "usage: send-raw [-t MS] [-o FILE] [-h] [-N] [-e TYPE] [-b SRC] [-w FILE] [-k KEYFILE] [-H HOSTKEYFILE] [-n NAME [-S]] "
                        "HOST:PORT|/path/to/socket < bytes\n");
}

static const char *source;              /* -b */
static int wire = -1;                   /* -w: a copy of every byte sent */

/* send(2), and a copy to the -w file */
static ssize_t send_copy(int fd, const void *p, size_t n)
{
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0 && wire >= 0 && write(wire, p, (size_t) w) != w)
                perror("send-raw: -w");
        return w;
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
        if (source) {
                struct sockaddr_in src = { .sin_family = AF_INET };
                if (ss.ss_family != AF_INET || inet_pton(AF_INET, source, &src.sin_addr) != 1 ||
                    bind(fd, (struct sockaddr *) &src, sizeof src) < 0) {
                        fprintf(stderr, "send-raw: cannot bind to %s: %s\n", source, strerror(errno));
                        close(fd);
                        return -1;
                }
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
                const char *p = buf;
                struct wbuf plain = {0}, answer = {0};
                if (sec) {
                        size_t used;
                        wbuf_put(&raw, buf, (size_t) n);
                        if (secure_input(sec, raw.data, raw.len, &used, &answer, &plain) < 0) {
                                fprintf(stderr, "send-raw: %s\n", secure_error(sec));
                                wbuf_free(&plain);
                                return 1;
                        }
                        wbuf_consume(&raw, used);
                        if (answer.len > 0)
                                (void) send_copy(fd, answer.data, answer.len);
                        wbuf_free(&answer);
                        p = (const char *) plain.data;
                        n = (ssize_t) plain.len;
                }
                int bad = n > 0 && out >= 0 && write(out, p, (size_t) n) != n;
                if (bad)
                        perror("send-raw: write");
                if (!bad && n > 0 && keep(p, (size_t) n) < 0) {
                        perror("send-raw: memory");
                        bad = 1;
                }
                wbuf_free(&plain);
                if (bad)
                        return 1;
        }
}

/* -H: whatever host key the other end presents is the one "listed" */
static bool any_key(void *ud, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        (void) ud;
        (void) name;
        return sec && secure_peer_key(sec, pk);
}

/* -k, -H: the handshake as initiator NAME; 0 once the link is open. */
static int handshake(int fd, const char *keyfile, const char *hostkeyfile, const char *name, long timeout_ms)
{
        uint8_t key[DCHAT_KEY_BYTES], sk[DCHAT_HOST_SK_BYTES];
        char err[512];
        struct wbuf out = {0}, plain = {0};

        if (keyfile && key_load(keyfile, key, err, sizeof err) < 0) {
                fprintf(stderr, "send-raw: %s\n", err);
                return -1;
        }
        if (hostkeyfile && hostkey_load(hostkeyfile, sk, err, sizeof err) < 0) {
                fprintf(stderr, "send-raw: %s\n", err);
                return -1;
        }
        struct secure_params p = { .key = keyfile ? key : NULL, .host_sk = hostkeyfile ? sk : NULL,
                                   .initiator = true, .self = name, .role = role,
                                   .key_of = hostkeyfile ? any_key : NULL };
        if (secure_new(&p, &sec) < 0 || secure_start(sec, &out) < 0)
                return -1;
        long long end = now_ms() + timeout_ms;
        while (!secure_is_open(sec)) {
                if (out.len > 0) {
                        if (send_copy(fd, out.data, out.len) != (ssize_t) out.len)
                                return -1;
                        wbuf_reset(&out);
                }
                struct pollfd pf = { .fd = fd, .events = POLLIN };
                long long left = end - now_ms();
                if (left <= 0 || poll(&pf, 1, (int) left) <= 0) {
                        fprintf(stderr, "send-raw: handshake timed out\n");
                        return -1;
                }
                char buf[4096];
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0) {
                        fprintf(stderr, "send-raw: closed during the handshake\n");
                        return -1;
                }
                size_t used;
                wbuf_put(&raw, buf, (size_t) n);
                if (secure_input(sec, raw.data, raw.len, &used, &out, &plain) < 0) {
                        fprintf(stderr, "send-raw: %s\n", secure_error(sec));
                        return -1;
                }
                wbuf_consume(&raw, used);
        }
        if (out.len > 0 && send_copy(fd, out.data, out.len) != (ssize_t) out.len)
                return -1;
        wbuf_free(&out);
        wbuf_free(&plain);
        return 0;
}

/* -k: seals whole frames one per record; a tail that is not one goes as one record. */
static void seal_frames(const uint8_t *p, size_t n, struct wbuf *out)
{
        size_t off = 0;
        while (off < n) {
                size_t len = n - off;
                if (len >= 8) {
                        size_t fl = 8 + ((size_t) p[off] << 24 | (size_t) p[off + 1] << 16 |
                                         (size_t) p[off + 2] << 8 | p[off + 3]);
                        if (fl <= len)
                                len = fl;
                }
                if (len > DCHAT_FRAME_HDR + DCHAT_FRAME_MAX)
                        len = DCHAT_FRAME_HDR + DCHAT_FRAME_MAX;
                (void) secure_seal(sec, p + off, len, out);
                off += len;
        }
}

int main(int argc, char *argv[])
{
        static char buf[1 << 20];
        long timeout_ms = 1000;
        const char *outfile = NULL;
        int half_close = 0, never_read = 0, stalled = 0, out = -1, fd, o, closed = 0, want_type = -1;
        const char *keyfile = NULL, *hostkeyfile = NULL, *name = NULL;

        /* by hand: the Makefile's tool rule does not link libbsd, whose overlay renames getopt */
        for (o = 1; o < argc && argv[o][0] == '-' && argv[o][1]; o++) {
                if (strcmp(argv[o], "-h") == 0)
                        half_close = 1;
                else if (strcmp(argv[o], "-N") == 0)
                        never_read = 1;
                else if (strcmp(argv[o], "-t") == 0 && o + 1 < argc)
                        timeout_ms = strtol(argv[++o], NULL, 10);
                else if (strcmp(argv[o], "-o") == 0 && o + 1 < argc)
                        outfile = argv[++o];
                else if (strcmp(argv[o], "-e") == 0 && o + 1 < argc)
                        want_type = (int) strtol(argv[++o], NULL, 10);
                else if (strcmp(argv[o], "-b") == 0 && o + 1 < argc)
                        source = argv[++o];
                else if (strcmp(argv[o], "-k") == 0 && o + 1 < argc)
                        keyfile = argv[++o];
                else if (strcmp(argv[o], "-w") == 0 && o + 1 < argc) {
                        wire = open(argv[++o], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                        if (wire < 0) {
                                fprintf(stderr, "send-raw: %s: %s\n", argv[o], strerror(errno));
                                return 1;
                        }
                } else if (strcmp(argv[o], "-H") == 0 && o + 1 < argc)
                        hostkeyfile = argv[++o];
                else if (strcmp(argv[o], "-n") == 0 && o + 1 < argc)
                        name = argv[++o];
                else if (strcmp(argv[o], "-S") == 0)
                        role = ROLE_SERVER;
                else {
                        usage();
                        return 2;
                }
        }
        if (o != argc - 1 || timeout_ms < 0 || (!keyfile && !hostkeyfile) != !name) {
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
        if (name && handshake(fd, keyfile, hostkeyfile, name, timeout_ms) < 0) {
                puts("closed");
                return 0;
        }
        if (never_read) {
                /* a send that waits that long: the other side has stopped reading us */
                struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        }

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
                const char *data = buf;
                struct wbuf sealed = {0};
                if (sec) {
                        /* stdin may be read in pieces: -k input is read whole first */
                        static struct wbuf all;
                        wbuf_put(&all, buf, (size_t) n);
                        ssize_t more;
                        while ((more = read(STDIN_FILENO, buf, sizeof buf)) > 0)
                                wbuf_put(&all, buf, (size_t) more);
                        seal_frames(all.data, all.len, &sealed);
                        data = (const char *) sealed.data;
                        n = (ssize_t) sealed.len;
                }
                for (ssize_t off = 0; off < n && !closed;) {
                        ssize_t w = send_copy(fd, data + off, (size_t) (n - off));
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w < 0 && never_read && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                                stalled = 1;
                                break;
                        }
                        if (w < 0) {
                                closed = 1;
                                break;
                        }
                        off += w;
                }
                wbuf_free(&sealed);
                if (closed || stalled || sec)
                        break;
        }
        if (!closed && !stalled && half_close)
                (void) shutdown(fd, SHUT_WR);
        if (never_read) {
                /* whatever the other side sends stays in its buffers and ours */
                struct timespec ts = { timeout_ms / 1000, (timeout_ms % 1000) * 1000000 };
                while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                        ;
                puts(closed ? "closed" : "held");
                close(fd);
                return 0;
        }

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
