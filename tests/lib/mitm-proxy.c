/* SPDX-License-Identifier: MIT */
/*
 * mitm-proxy — a man in the middle for tests of the link security: relays TCP
 * connections from a local port to a target, cutting each direction into the
 * units of the dchat link layer (u32 length + body: handshake messages and
 * encrypted records alike, see dchat-protocol(7)), and tampers with one of
 * them, once.
 *
 *   mitm-proxy -l PORT -c HOST:PORT [-d up|down] [-u N] [-a ACTION] [-f FILE]
 *
 * -l PORT    listen on 127.0.0.1:PORT
 * -c H:P     connect each accepted connection to H:P (IPv4)
 * -d DIR     the direction to tamper with: up (client to target, default) or down
 * -u N       the unit to tamper with, counted from 0 in that direction (default 2:
 *            on the initiator's side M1 and M3 come first, so 2 is its first record)
 * -a ACTION  none (default: relay only), flip (one bit in the middle of the unit),
 *            replay (send it twice), swap (send unit N+1 before it), drop (leave it
 *            out), truncate (send half of it, then end the stream that way and
 *            swallow the rest; the pair closes once the target closes), inject
 *            (send the bytes of FILE just before it), hold (keep it and every unit
 *            after it in that direction until SIGUSR1, then send them all: the
 *            network holding a connection's data and delivering it late; a pair
 *            whose client went away meanwhile keeps its connection to the target
 *            open until the release, as a TCP connection whose data is still
 *            being retransmitted does), stall (from this unit on,
 *            swallow everything in that direction and keep both connections open:
 *            a path that silently drops what one side sends, a half-open link)
 *
 * The attack happens on the first connection that gets that far; every later
 * connection is relayed untouched, so the cluster can recover.  One line per
 * event on stdout: "listening", "connection K", "attacked: ACTION unit N DIR on
 * connection K", "released: B bytes on connection K", "dropped: B bytes held on
 * connection K, which the target closed".  Runs until killed.  For tests only:
 * loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PAIRS 32
#define UNIT_MAX (1u << 20)

enum action { A_NONE, A_FLIP, A_REPLAY, A_SWAP, A_DROP, A_TRUNCATE, A_INJECT, A_HOLD, A_STALL };

struct dir {
        int from, to;
        unsigned char *buf;
        size_t len, cap;
        unsigned unit;          /* units passed so far */
        unsigned char *held;    /* swap: the unit waiting for the next one */
        size_t held_len;
        int raw;                /* gave up parsing: relay bytes as they come */
        int sink;               /* truncated or stalled: swallow the rest */
        int holding;            /* hold: keep what comes until SIGUSR1 */
};

struct pair {
        int used, id;
        int orphan;             /* hold: the client went away; the target side stays until the release */
        struct dir d[2];        /* 0: up (client -> target), 1: down */
};

static struct pair pairs[MAX_PAIRS];
static enum action action = A_NONE;
static int attack_dir = 0;
static unsigned attack_unit = 2;
static int attacked = 0;
static unsigned char *inject;
static size_t inject_len;
static const char *const action_names[] = { "none", "flip", "replay", "swap", "drop", "truncate", "inject", "hold", "stall" };
static volatile sig_atomic_t release;

static void on_usr1(int sig)
{
        (void) sig;
        release = 1;
}
static const char *const dir_names[] = { "up", "down" };

static int send_all(int fd, const void *p, size_t n)
{
        const unsigned char *c = p;
        while (n > 0) {
                ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return -1;
                c += w;
                n -= (size_t) w;
        }
        return 0;
}

static void pair_close(struct pair *p)
{
        for (int i = 0; i < 2; i++) {
                free(p->d[i].buf);
                free(p->d[i].held);
        }
        close(p->d[0].from);
        close(p->d[0].to);
        memset(p, 0, sizeof *p);
}

/* Sends the whole units in d's buffer, tampering where asked; -1: close the pair. */
static int relay_units(struct pair *p, int which)
{
        struct dir *d = &p->d[which];
        size_t off = 0;

        if (d->sink || (which == 1 && p->orphan)) {
                d->len = 0;
                return 0;
        }
        if (d->holding)
                return 0;
        while (!d->raw && d->len - off >= 4) {
                unsigned char *u = d->buf + off;
                uint32_t n = (uint32_t) u[0] << 24 | (uint32_t) u[1] << 16 | (uint32_t) u[2] << 8 | u[3];
                if (n > UNIT_MAX) {
                        d->raw = 1;
                        break;
                }
                if (d->len - off - 4 < n)
                        break;
                size_t ulen = 4 + (size_t) n;
                int hit = !attacked && action != A_NONE && which == attack_dir && d->unit == attack_unit;
                int r = 0;
                if (hit) {
                        printf("attacked: %s unit %u %s on connection %d\n", action_names[action], d->unit,
                               dir_names[which], p->id);
                        fflush(stdout);
                }
                if (hit && action == A_HOLD) {
                        d->holding = 1;
                        attacked = 1;
                        break;
                }
                if (d->held) {
                        /* swap: this one first, then the one held back */
                        r = send_all(d->to, u, ulen) < 0 || send_all(d->to, d->held, d->held_len) < 0;
                        free(d->held);
                        d->held = NULL;
                        attacked = 1;
                } else if (!hit) {
                        r = send_all(d->to, u, ulen);
                } else {
                        switch (action) {
                        case A_FLIP:
                                u[4 + n / 2] ^= 0x01;
                                r = send_all(d->to, u, ulen);
                                break;
                        case A_REPLAY:
                                r = send_all(d->to, u, ulen) < 0 || send_all(d->to, u, ulen) < 0;
                                break;
                        case A_SWAP:
                                d->held = malloc(ulen);
                                if (!d->held)
                                        return -1;
                                memcpy(d->held, u, ulen);
                                d->held_len = ulen;
                                break;
                        case A_DROP:
                                break;
                        case A_TRUNCATE:
                                /* half of it, then end of stream towards the target only:
                                 * the target sees the cut before the client notices */
                                (void) send_all(d->to, u, ulen / 2);
                                (void) shutdown(d->to, SHUT_WR);
                                d->sink = 1;
                                d->len = 0;
                                attacked = 1;
                                return 0;
                        case A_INJECT:
                                r = send_all(d->to, inject, inject_len) < 0 || send_all(d->to, u, ulen) < 0;
                                break;
                        case A_STALL:
                                /* nothing more goes through this way; the connections stay */
                                d->sink = 1;
                                d->len = 0;
                                attacked = 1;
                                return 0;
                        default:
                                break;
                        }
                        if (action != A_SWAP)
                                attacked = 1;
                }
                if (r)
                        return -1;
                d->unit++;
                off += ulen;
        }
        if (d->raw) {
                if (send_all(d->to, d->buf + off, d->len - off) < 0)
                        return -1;
                off = d->len;
        }
        memmove(d->buf, d->buf + off, d->len - off);
        d->len -= off;
        return 0;
}

static int pump(struct pair *p, int which)
{
        struct dir *d = &p->d[which];
        if (d->cap - d->len < 65536) {
                size_t cap = d->cap ? d->cap * 2 : 131072;
                unsigned char *b = realloc(d->buf, cap);
                if (!b)
                        return -1;
                d->buf = b;
                d->cap = cap;
        }
        ssize_t n = recv(d->from, d->buf + d->len, d->cap - d->len, 0);
        if (n < 0 && errno == EINTR)
                return 0;
        if (n <= 0)
                return -1;
        d->len += (size_t) n;
        return relay_units(p, which);
}

static int parse_target(const char *s, struct sockaddr_in *sa)
{
        char host[64];
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t) (colon - s) >= sizeof host)
                return -1;
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = '\0';
        *sa = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(colon + 1)) };
        return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

int main(int argc, char *argv[])
{
        struct sockaddr_in target, me = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        int have_target = 0, port = 0, next_id = 0, one = 1;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v)
                        goto usage;
                i++;
                if (strcmp(a, "-l") == 0)
                        port = atoi(v);
                else if (strcmp(a, "-c") == 0) {
                        if (parse_target(v, &target) < 0)
                                goto usage;
                        have_target = 1;
                } else if (strcmp(a, "-d") == 0)
                        attack_dir = strcmp(v, "down") == 0;
                else if (strcmp(a, "-u") == 0)
                        attack_unit = (unsigned) atoi(v);
                else if (strcmp(a, "-a") == 0) {
                        int found = -1;
                        for (int k = 0; k <= A_STALL; k++)
                                if (strcmp(v, action_names[k]) == 0)
                                        found = k;
                        if (found < 0)
                                goto usage;
                        action = (enum action) found;
                } else if (strcmp(a, "-f") == 0) {
                        FILE *f = fopen(v, "rb");
                        if (!f) {
                                perror(v);
                                return 1;
                        }
                        inject = malloc(UNIT_MAX);
                        inject_len = inject ? fread(inject, 1, UNIT_MAX, f) : 0;
                        fclose(f);
                } else
                        goto usage;
        }
        if (!have_target || port <= 0 || port > 65535 || (action == A_INJECT && !inject_len))
                goto usage;
        signal(SIGPIPE, SIG_IGN);
        struct sigaction sa = { .sa_handler = on_usr1 };
        sigaction(SIGUSR1, &sa, NULL);
        me.sin_port = htons((uint16_t) port);
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &me, sizeof me) < 0 || listen(lfd, 16) < 0) {
                perror("mitm-proxy: listen");
                return 1;
        }
        printf("listening\n");
        fflush(stdout);

        for (;;) {
                struct pollfd pfd[1 + 2 * MAX_PAIRS];
                int map[1 + 2 * MAX_PAIRS], n = 0;
                pfd[n++] = (struct pollfd) { .fd = lfd, .events = POLLIN };
                if (release) {
                        release = 0;
                        for (int i = 0; i < MAX_PAIRS; i++)
                                for (int k = 0; pairs[i].used && k < 2; k++) {
                                        struct dir *d = &pairs[i].d[k];
                                        if (!d->holding)
                                                continue;
                                        size_t held = d->len;
                                        d->holding = 0;
                                        int r = relay_units(&pairs[i], k);
                                        printf("released: %zu bytes on connection %d%s\n", held, pairs[i].id,
                                               r < 0 ? " (the target is gone)" : "");
                                        fflush(stdout);
                                        if (r < 0)
                                                pair_close(&pairs[i]);
                                }
                }
                for (int i = 0; i < MAX_PAIRS; i++)
                        for (int k = 0; pairs[i].used && k < 2; k++) {
                                if (k == 0 && pairs[i].orphan)
                                        continue;
                                map[n] = i * 2 + k;
                                pfd[n++] = (struct pollfd) { .fd = pairs[i].d[k].from, .events = POLLIN };
                        }
                if (poll(pfd, (nfds_t) n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("mitm-proxy: poll");
                        return 1;
                }
                if (pfd[0].revents & POLLIN) {
                        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                        int slot = -1;
                        for (int i = 0; i < MAX_PAIRS && slot < 0; i++)
                                if (!pairs[i].used)
                                        slot = i;
                        int t = c >= 0 && slot >= 0 ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
                        if (t >= 0 && connect(t, (struct sockaddr *) &target, sizeof target) == 0) {
                                (void) setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                                (void) setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                                pairs[slot] = (struct pair) { .used = 1, .id = ++next_id };
                                pairs[slot].d[0].from = c;
                                pairs[slot].d[0].to = t;
                                pairs[slot].d[1].from = t;
                                pairs[slot].d[1].to = c;
                                printf("connection %d\n", next_id);
                                fflush(stdout);
                        } else {
                                if (t >= 0)
                                        close(t);
                                if (c >= 0)
                                        close(c);
                        }
                }
                for (int j = 1; j < n; j++) {
                        struct pair *p = &pairs[map[j] / 2];
                        if (!p->used || !(pfd[j].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        if (pump(p, map[j] % 2) == 0)
                                continue;
                        if (map[j] % 2 == 0 && p->d[0].holding && !p->orphan) {
                                /* the client is gone, its data is held: the target still waits for it */
                                p->orphan = 1;
                                continue;
                        }
                        if (p->d[0].holding) {
                                printf("dropped: %zu bytes held on connection %d, which the target closed\n",
                                       p->d[0].len, p->id);
                                fflush(stdout);
                        }
                        pair_close(p);
                }
        }
usage:
        fprintf(stderr, "usage: mitm-proxy -l PORT -c HOST:PORT [-d up|down] [-u N] "
                        "[-a none|flip|replay|swap|drop|truncate|inject|hold|stall] [-f FILE]\n");
        return 2;
}
