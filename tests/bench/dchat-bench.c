/* SPDX-License-Identifier: MIT */
/*
 * dchat-bench — drives concurrent posters against running dchatd peers and
 * measures them.  One process, many control-socket connections: every
 * poster is one connection with one post outstanding at a time (post,
 * wait for POSTED, post the next), so C posters per peer keep C posts in
 * flight there.  It speaks the control protocol of daemon/proto.h with
 * daemon/proto.c, like dchatctl.
 *
 *   dchat-bench [-c POSTERS] [-n POSTS] [-a ACTIVE] [-t TAG] [-o FILE] [-e MS] [-i MS] [-g MS]
 *               [-s SERVER_SOCKET] [-p PID]... PEER_SOCKET...
 *
 * -c posters per peer socket (default 1), -n posts per poster (default
 * 1000; 0: post until SIGUSR1, SIGINT or SIGTERM, then let the posts in
 * flight finish), -o write every post's outcome to FILE, one line each as
 * it comes (for the fault tests: what was acknowledged, under which seq,
 * and what failed with which error):
 *
 *   REALTIME_NS ok SEQ TEXT
 *   REALTIME_NS err CODE TEXT<tab>ERROR
 *
 * (CLOCK_REALTIME of the answer, so that a script can compare it with
 * `date +%s%N`; tabs and newlines in ERROR become spaces), -e a poster
 * whose post failed waits MS milliseconds before its next one (so that a
 * peer that refuses at once is not flooded; default 0), -i every poster
 * waits MS milliseconds after each answer before its next post (a steady
 * load instead of the most it can take; default 0), -g report every pause
 * of at least MS milliseconds between two acknowledgements (of any poster)
 * as "gaps": [[from, to], ...] in CLOCK_REALTIME nanoseconds (run-bench
 * finds the one that holds a server's kill: a failover), -a only the
 * first ACTIVE peer sockets get posters (the others
 * are only asked for their counters; default all), -t a word put in
 * every text (default "bench"), -s the server's control socket (for its
 * counters), -p a daemon's PID (repeatable; CPU time and RSS are read
 * from /proc/PID).  Before and after the run every
 * daemon is asked for STATUS, whose counters give the DME messages per
 * critical-section entry, posts per entry and fdatasyncs per post.
 *
 * dchat-bench -F DIR instead times 200 appends of 800 bytes, each followed
 * by fdatasync, to a scratch file in DIR: the floor of every post's
 * latency on that disk, reported with the figures.
 *
 * Prints one JSON object on stdout (see tests/bench/run-bench for the
 * fields).  Each text is "TAG pP cC #I": unique, so a test can check that
 * every post is stored exactly once.  Exit status 0 when every post was
 * acknowledged, 1 when some failed (the JSON says how many), 2 on usage
 * or set-up errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define SOCKETS_MAX     DCHAT_PEERS_MAX
#define PIDS_MAX        (DCHAT_PEERS_MAX + 1)
#define POSTERS_MAX     256

struct poster {
        int fd;
        unsigned peer;          /* index of its socket */
        unsigned idx;           /* within that peer */
        unsigned sent, done;
        uint64_t t_sent;        /* ns, of the post in flight */
        uint64_t resume_at;     /* -e, -i: ns, when its next post goes (0: not paused) */
        char text[160];         /* of the post in flight */
        struct wbuf in;
};

static struct poster posters[SOCKETS_MAX * POSTERS_MAX];
static unsigned n_posters;
static uint32_t *lat_ns;        /* one per acknowledged post */
static size_t n_lat;
static unsigned long errors;
static unsigned long waits;             /* POST_WAIT frames: a post said it waits (for the server, a leader) */
static char first_error[256];
static const char *tag = "bench";
static unsigned posts_each = 1000;
static volatile sig_atomic_t stop;      /* -n 0: a signal ends the run */
static FILE *outcomes;                  /* -o */
static uint64_t pause_ns;               /* -e */
static uint64_t interval_ns;            /* -i */
static uint64_t gap_ns;                 /* -g */
static uint64_t last_ack_rt;            /* CLOCK_REALTIME of the last acknowledgement */
static struct { uint64_t from, to; } *gaps;
static size_t n_gaps;

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
        va_list ap;
        fputs("dchat-bench: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        exit(2);
}

static uint64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static uint64_t realtime_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void on_stop(int sig)
{
        (void) sig;
        stop = 1;
}

/* -g: an acknowledgement now; a pause of -g MS or more before it is a gap */
static void note_ack(void)
{
        uint64_t now = realtime_ns();

        if (gap_ns && last_ack_rt && now - last_ack_rt >= gap_ns) {
                void *g = realloc(gaps, (n_gaps + 1) * sizeof *gaps);
                if (!g)
                        die("out of memory");
                gaps = g;
                gaps[n_gaps].from = last_ack_rt;
                gaps[n_gaps].to = now;
                n_gaps++;
        }
        last_ack_rt = now;
}

/* -o: one line for the answer m to p's post in flight */
static void outcome(const struct poster *p, const struct dchat_msg *m)
{
        if (!outcomes)
                return;
        if (m->type == MSG_POSTED) {
                fprintf(outcomes, "%llu ok %llu %s\n", (unsigned long long) realtime_ns(),
                        (unsigned long long) m->appended.seq, p->text);
                return;
        }
        fprintf(outcomes, "%llu err %u %s\t", (unsigned long long) realtime_ns(), m->error.code, p->text);
        for (uint16_t i = 0; i < m->error.text.len; i++) {
                char c = m->error.text.p[i];
                fputc(c == '\t' || c == '\n' || c == '\r' ? ' ' : c, outcomes);
        }
        fputc('\n', outcomes);
}

static int connect_unix(const char *path)
{
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof un.sun_path)
                die("socket path too long: %s", path);
        strcpy(un.sun_path, path);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &un, sizeof un) < 0)
                die("cannot connect to %s: %s", path, strerror(errno));
        return fd;
}

static void send_all(int fd, const struct dchat_msg *m)
{
        static struct wbuf b;
        wbuf_reset(&b);
        if (proto_encode(&b, m) < 0)
                die("cannot encode a frame");
        for (size_t off = 0; off < b.len;) {
                ssize_t n = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        die("send: %s", strerror(errno));
                off += (size_t) n;
        }
}

/* One whole frame from b into m (strings point into b until it is consumed); 0: need more. */
static size_t frame_in(struct wbuf *b, struct dchat_msg *m, struct dchat_status *st)
{
        uint8_t type;
        if (b->len < DCHAT_FRAME_HDR)
                return 0;
        int len = proto_check_header(b->data, &type);
        if (len < 0)
                die("malformed frame from dchatd");
        if (b->len < DCHAT_FRAME_HDR + (size_t) len)
                return 0;
        if (proto_decode(type, b->data + DCHAT_FRAME_HDR, (size_t) len, m, NULL, st) < 0)
                die("malformed %s frame from dchatd", proto_type_name(type));
        return DCHAT_FRAME_HDR + (size_t) len;
}

static int read_some(int fd, struct wbuf *b)
{
        if (!wbuf_reserve(b, 4096))
                die("out of memory");
        ssize_t n = recv(fd, b->data + b->len, b->cap - b->len, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0)
                return -1;
        b->len += (size_t) n;
        return 1;
}

static void get_status(const char *path, struct dchat_status *st)
{
        struct wbuf b = {0};
        struct dchat_msg m;
        size_t used;
        int fd = connect_unix(path);

        send_all(fd, &(struct dchat_msg) { .type = MSG_STATUS, .tag = 1 });
        for (;;) {
                struct pollfd p = { fd, POLLIN, 0 };
                if (poll(&p, 1, 10000) <= 0)
                        die("%s: no answer to STATUS", path);
                if (read_some(fd, &b) < 0)
                        die("%s: closed before answering STATUS", path);
                if ((used = frame_in(&b, &m, st)))
                        break;
        }
        if (m.type != MSG_STATUS_REPLY)
                die("%s: unexpected %s answer to STATUS", path, proto_type_name(m.type));
        wbuf_free(&b);
        close(fd);
}

static void post_next(struct poster *p)
{
        int n = snprintf(p->text, sizeof p->text, "%s p%u c%u #%u", tag, p->peer + 1, p->idx + 1, p->sent + 1);
        p->t_sent = now_ns();
        p->resume_at = 0;
        send_all(p->fd, &(struct dchat_msg) { .type = MSG_POST, .tag = p->sent + 1,
                                              .post = { 0, 0, { p->text, (uint16_t) n } } });
        p->sent++;
}

/* utime + stime of pid, in ms; -1 when it cannot be read */
static long long cpu_ms(int pid)
{
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *s = strrchr(buf, ')');
        unsigned long long ut, st;
        /* after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
        if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return -1;
        return (long long) ((ut + st) * 1000 / (unsigned long long) sysconf(_SC_CLK_TCK));
}

/* a "VmHWM:" or "VmRSS:" figure of pid, in KiB */
static long long status_kib(int pid, const char *key)
{
        char path[64], line[256];
        long long v = -1;
        snprintf(path, sizeof path, "/proc/%d/status", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, strlen(key)) == 0)
                        v = atoll(line + strlen(key));
        fclose(f);
        return v;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static double us_at(double q)
{
        if (!n_lat)
                return 0;
        size_t i = (size_t) (q * (double) (n_lat - 1) + 0.5);
        return lat_ns[i] / 1000.0;
}

static int disk_probe(const char *dir)
{
        char path[4096], buf[800];
        enum { N = 200 };
        static uint32_t t[N];

        snprintf(path, sizeof path, "%s/dchat-bench-fsync.XXXXXX", dir);
        int fd = mkstemp(path);
        if (fd < 0)
                die("cannot create a file in %s: %s", dir, strerror(errno));
        (void) unlink(path);
        memset(buf, 'x', sizeof buf);
        for (unsigned i = 0; i < N; i++) {
                if (write(fd, buf, sizeof buf) != (ssize_t) sizeof buf)
                        die("write: %s", strerror(errno));
                uint64_t t0 = now_ns();
                if (fdatasync(fd) < 0)
                        die("fdatasync: %s", strerror(errno));
                t[i] = (uint32_t) (now_ns() - t0);
        }
        close(fd);
        lat_ns = t;
        n_lat = N;
        qsort(lat_ns, n_lat, sizeof *lat_ns, cmp_u32);
        printf("{\"fdatasync_median_us\":%.0f,\"fdatasync_p99_us\":%.0f,\"fdatasync_max_us\":%.0f}\n", us_at(0.5),
               us_at(0.99), lat_ns[N - 1] / 1000.0);
        return 0;
}

static void add_counters(struct dchat_counters *sum, const struct dchat_counters *a, const struct dchat_counters *b)
{
        const uint64_t *pa = &a->cs_entries, *pb = &b->cs_entries;
        uint64_t *ps = &sum->cs_entries;
        for (; pa <= &a->fdatasyncs; pa++, pb++, ps++)
                *ps += *pb - *pa;
}

static double ratio(double a, double b)
{
        return b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
        static struct dchat_status before[SOCKETS_MAX + 1], after[SOCKETS_MAX + 1];
        const char *server = NULL;
        unsigned per_peer = 1, n_active = 0;
        int pids[PIDS_MAX], n_pids = 0, o;

        while ((o = getopt(argc, argv, "c:n:a:t:o:e:i:g:s:p:F:h")) >= 0) {
                switch (o) {
                case 'c':
                        per_peer = (unsigned) atoi(optarg);
                        break;
                case 'n':
                        posts_each = (unsigned) atoi(optarg);
                        break;
                case 'a':
                        n_active = (unsigned) atoi(optarg);
                        break;
                case 't':
                        tag = optarg;
                        break;
                case 'o':
                        outcomes = fopen(optarg, "we");
                        if (!outcomes)
                                die("cannot open %s: %s", optarg, strerror(errno));
                        break;
                case 'e':
                        pause_ns = (uint64_t) atoi(optarg) * 1000000u;
                        break;
                case 'i':
                        interval_ns = (uint64_t) atoi(optarg) * 1000000u;
                        break;
                case 'g':
                        gap_ns = (uint64_t) atoi(optarg) * 1000000u;
                        break;
                case 's':
                        server = optarg;
                        break;
                case 'F':
                        return disk_probe(optarg);
                case 'p':
                        if (n_pids == PIDS_MAX)
                                die("too many -p");
                        pids[n_pids++] = atoi(optarg);
                        break;
                default:
                        fprintf(o == 'h' ? stdout : stderr,
                                "usage: dchat-bench [-c POSTERS] [-n POSTS] [-a ACTIVE] [-t TAG] [-o FILE] [-e MS] [-i MS] [-g MS] "
                                "[-s SERVER_SOCKET] [-p PID]... PEER_SOCKET...\n"
                                "       dchat-bench -F DIR\n");
                        return o == 'h' ? 0 : 2;
                }
        }
        unsigned n_socks = (unsigned) (argc - optind);
        if (n_socks == 0 || n_socks > SOCKETS_MAX || per_peer == 0 || per_peer > POSTERS_MAX || strlen(tag) > 64)
                die("bad arguments (see -h)");
        char **socks = argv + optind;
        if (n_active == 0 || n_active > n_socks)
                n_active = n_socks;

        for (unsigned i = 0; i < n_socks; i++)
                get_status(socks[i], &before[i]);
        if (server)
                get_status(server, &before[n_socks]);
        long long cpu0[PIDS_MAX];
        for (int i = 0; i < n_pids; i++)
                cpu0[i] = cpu_ms(pids[i]);

        /* -n 0: latencies in a ring of the last million (the figures are of those) */
        size_t lat_cap = posts_each ? (size_t) n_active * per_peer * posts_each : 1000000;
        lat_ns = calloc(lat_cap, sizeof *lat_ns);
        struct pollfd *pfd = calloc((size_t) n_active * per_peer, sizeof *pfd);
        if (!lat_ns || !pfd)
                die("out of memory");
        if (posts_each == 0) {
                struct sigaction sa = { .sa_handler = on_stop };
                sigaction(SIGUSR1, &sa, NULL);
                sigaction(SIGINT, &sa, NULL);
                sigaction(SIGTERM, &sa, NULL);
        }
        unsigned long acked = 0;
        for (unsigned s = 0; s < n_active; s++)
                for (unsigned c = 0; c < per_peer; c++) {
                        struct poster *p = &posters[n_posters++];
                        *p = (struct poster) { .fd = connect_unix(socks[s]), .peer = s, .idx = c };
                }

        uint64_t t0 = now_ns();
        unsigned active = n_posters;
        for (unsigned i = 0; i < n_posters; i++)
                post_next(&posters[i]);
        while (active) {
                /* posters waiting for an answer are polled; paused ones (-e) set the timeout */
                uint64_t now = now_ns(), wake = UINT64_MAX;
                unsigned k = 0;
                for (unsigned i = 0; i < n_posters; i++) {
                        struct poster *p = &posters[i];
                        if (p->fd < 0)
                                continue;
                        if (p->resume_at) {
                                if (p->resume_at < wake)
                                        wake = p->resume_at;
                                continue;
                        }
                        pfd[k++] = (struct pollfd) { p->fd, POLLIN, 0 };
                }
                int timeout = wake == UINT64_MAX ? 60000 : wake <= now ? 0 : (int) ((wake - now) / 1000000 + 1);
                int pr = poll(pfd, k, timeout);
                if (pr < 0 && errno != EINTR)
                        die("poll: %s", strerror(errno));
                if (pr == 0 && wake == UINT64_MAX)
                        die("no answer for 60 s (%u posters still busy)", active);
                now = now_ns();
                k = 0;
                for (unsigned i = 0; i < n_posters; i++) {
                        struct poster *p = &posters[i];
                        if (p->fd < 0)
                                continue;
                        bool resumed = false, answered = false, failed = false;
                        if (p->resume_at) {
                                if (p->resume_at > now && !stop)
                                        continue;
                                resumed = true;         /* no post in flight: its next one */
                                p->resume_at = 0;
                        } else {
                                if (pr <= 0 || !(pfd[k++].revents & (POLLIN | POLLHUP | POLLERR)))
                                        continue;
                                if (read_some(p->fd, &p->in) < 0)
                                        die("dchatd closed a poster's connection (peer %u, poster %u)", p->peer + 1,
                                            p->idx + 1);
                        }
                        struct dchat_msg m;
                        size_t used;
                        while (!resumed && (used = frame_in(&p->in, &m, NULL))) {
                                if (m.type == MSG_POST_WAIT && p->done < p->sent && m.tag == p->sent) {
                                        /* the post waits (no server, no leader): its answer comes later */
                                        waits++;
                                        wbuf_consume(&p->in, used);
                                        continue;
                                }
                                if (p->done >= p->sent || m.tag != p->sent)
                                        die("an answer (%s, tag %u) to no post in flight (peer %u, poster %u)",
                                            proto_type_name(m.type), m.tag, p->peer + 1, p->idx + 1);
                                if (m.type == MSG_POSTED) {
                                        uint64_t l = now_ns() - p->t_sent;
                                        lat_ns[n_lat++ % lat_cap] = l > UINT32_MAX ? UINT32_MAX : (uint32_t) l;
                                        acked++;
                                        note_ack();
                                } else if (m.type == MSG_ERROR) {
                                        if (!errors++)
                                                snprintf(first_error, sizeof first_error, "%.*s",
                                                         (int) m.error.text.len, m.error.text.p);
                                        failed = true;
                                } else {
                                        die("unexpected %s frame", proto_type_name(m.type));
                                }
                                outcome(p, &m);
                                wbuf_consume(&p->in, used);
                                p->done++;
                                answered = true;
                        }
                        if (!resumed && !answered)
                                continue;
                        if (posts_each ? p->done >= posts_each : stop) {
                                close(p->fd);
                                p->fd = -1;
                                active--;
                        } else if (answered && ((failed && pause_ns) || interval_ns)) {
                                p->resume_at = now + (failed && pause_ns > interval_ns ? pause_ns : interval_ns);
                        } else {
                                post_next(p);
                        }
                }
                if (outcomes)
                        fflush(outcomes);
        }
        double secs = (double) (now_ns() - t0) / 1e9;

        for (unsigned i = 0; i < n_socks; i++)
                get_status(socks[i], &after[i]);
        if (server)
                get_status(server, &after[n_socks]);
        long long cpu = 0;
        for (int i = 0; i < n_pids; i++) {
                long long c = cpu_ms(pids[i]);
                if (c >= 0 && cpu0[i] >= 0)
                        cpu += c - cpu0[i];
        }

        struct dchat_counters peers = {0}, srv = {0};
        for (unsigned i = 0; i < n_socks; i++)
                add_counters(&peers, &before[i].counters, &after[i].counters);
        if (server)
                add_counters(&srv, &before[n_socks].counters, &after[n_socks].counters);
        if (n_lat > lat_cap)
                n_lat = lat_cap;
        qsort(lat_ns, n_lat, sizeof *lat_ns, cmp_u32);
        if (outcomes && fclose(outcomes) != 0)
                die("cannot write the outcomes: %s", strerror(errno));

        uint64_t msgs = peers.requests_sent + peers.replies_sent;
        /* central: a peer's REQUESTs and RELEASEs to the coordinator, and the GRANTs it got (in Ricart-Agrawala
         * every REPLY received is another peer's REPLY sent, counted already) */
        if (n_socks && !strcmp(after[0].dme_algorithm, "central"))
                msgs += peers.replies_received;
        printf("{\"sockets\":%u,\"active\":%u,\"posters\":%u,\"posts\":%lu,\"errors\":%lu,\"waits\":%lu,\"seconds\":%.3f,\"posts_per_s\":%.0f,"
               "\"lat_median_us\":%.0f,\"lat_p99_us\":%.0f,\"lat_max_us\":%.0f,"
               "\"cs_entries\":%llu,\"cs_reused\":%llu,\"dme_msgs\":%llu,\"dme_msgs_per_entry\":%.2f,"
               "\"posts_per_entry\":%.2f",
               n_socks, n_active, per_peer, acked, errors, waits, secs, ratio((double) acked, secs), us_at(0.5), us_at(0.99),
               n_lat ? lat_ns[n_lat - 1] / 1000.0 : 0.0, (unsigned long long) peers.cs_entries,
               (unsigned long long) peers.cs_reused, (unsigned long long) msgs,
               ratio((double) msgs, (double) peers.cs_entries), ratio((double) acked, (double) peers.cs_entries));
        if (server)
                printf(",\"server_posts\":%llu,\"server_batches\":%llu,\"fdatasyncs\":%llu,\"fdatasyncs_per_post\":%.3f",
                       (unsigned long long) srv.posts, (unsigned long long) srv.batches,
                       (unsigned long long) srv.fdatasyncs, ratio((double) srv.fdatasyncs, (double) srv.posts));
        if (n_pids) {
                printf(",\"cpu_ms\":%lld,\"cpu_ms_per_1000_posts\":%.1f,\"rss_kib\":[", cpu,
                       ratio((double) cpu * 1000, (double) acked));
                for (int i = 0; i < n_pids; i++)
                        printf("%s%lld", i ? "," : "", status_kib(pids[i], "VmRSS:"));
                printf("],\"rss_peak_kib\":[");
                for (int i = 0; i < n_pids; i++)
                        printf("%s%lld", i ? "," : "", status_kib(pids[i], "VmHWM:"));
                printf("]");
        }
        if (gap_ns) {
                printf(",\"gaps\":[");
                for (size_t g = 0; g < n_gaps; g++)
                        printf("%s[%llu,%llu]", g ? "," : "", (unsigned long long) gaps[g].from,
                               (unsigned long long) gaps[g].to);
                printf("]");
        }
        if (errors) {
                printf(",\"first_error\":\"");
                for (const char *c = first_error; *c; c++)
                        printf(*c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
                printf("\"");
        }
        printf("}\n");
        return errors ? 1 : 0;
}
