/* SPDX-License-Identifier: MIT */
/*
 * trace.c — `dchatctl trace`: the recent run of the whole cluster, from
 * the peers' rings (gathered by the local dchatd, TRACE) or from journal
 * exports (--from), cut to a window, laid out in one of three orders, and
 * written as text, JSON Lines, ShiViz's input, or a picture; --check runs
 * the causal-order checks.  The model is cli/tmodel.c.
 *
 * Pictures are drawn by dchat-draw (cli/draw.c), a program of its own that
 * reads the JSON Lines on its stdin: it links cairo, which with its fonts
 * and X libraries is far more than dchatctl, a client every host of the
 * cluster has, should need; hosts without it still gather, export and
 * check.  dchatctl runs it from $DCHAT_DRAW, from next to itself (a build
 * tree), or from DCHAT_LIBEXECDIR.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "number.h"
#include "since.h"
#include "tmodel.h"

#define TRACE_WAIT_MS   120000          /* the whole gathering (dchatd gives up on a silent node sooner) */

static int trace_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int trace_fail(const char *fmt, ...)
{
        va_list ap;

        fputs("dchatctl: trace: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: dchatctl [-s SOCKET] trace [--since TIME] [--until TIME] [--post SEQ] [--order physical|lamport|vector]\n"
                   "                      [--check [--algorithm ricart-agrawala|central|token]]\n"
                   "                      [--format text|json|shiviz|svg|png|pdf] [-o FILE] [--from FILE]...\n");
}

/* --- gathering from the peers ---------------------------------------------------------------- */

/* One page of a node's ring into the model. */
static int take_page(struct tmodel *m, const struct dchat_msg *msg)
{
        const char *names[DCHAT_PEERS_MAX];
        char buf[DCHAT_PEERS_MAX][DCHAT_NAME_MAX + 1], node[DCHAT_NAME_MAX + 1], err[1024];
        struct rbuf r = { .p = msg->trace_events.names, .len = msg->trace_events.names_len };
        struct dchat_str s;
        unsigned n = 0;

        while (proto_trace_name_next(&r, &s) > 0 && n < DCHAT_PEERS_MAX) {
                dchat_str_copy(buf[n], sizeof buf[n], s);
                names[n] = buf[n];
                n++;
        }
        dchat_str_copy(node, sizeof node, msg->trace_events.node);
        if (tm_set_lanes(m, names, n, err, sizeof err) < 0)
                return trace_fail("%s: %s (config-mismatch in its journal?)", node, err);
        int lane = tm_lane(m, node);
        if (lane < 0)
                return trace_fail("%s sent events, but is not one of the peers it names", node);
        m->lanes[lane].incarnation = msg->trace_events.incarnation;
        r = (struct rbuf) { .p = msg->trace_events.p, .len = msg->trace_events.len };
        static struct dchat_trace_event e;
        while (proto_trace_next(&r, n, &e) > 0) {
                struct tm_event t = { .lane = (unsigned) lane, .no = e.no, .time_us = e.time_us, .kind = e.kind,
                                      .peer = e.peer == DCHAT_TRACE_NONE ? -1 : e.peer, .lamport = e.lamport,
                                      .request_ts = e.request_ts, .fence = e.fence, .fence_idx = e.fence_idx,
                                      .seq = e.seq, .send_vt = e.send_vt };
                if (tm_add(m, &t, e.vc.n == n ? e.vc.c : NULL) < 0)
                        return trace_fail("out of memory");
        }
        return 0;
}

static int gather(struct tmodel *m, const char *socket_path, uint64_t since, uint64_t until)
{
        static struct cconn c;
        char err[PATH_MAX + 128];
        struct dchat_msg msg;
        int r, ret = 1;

        if (cconn_open(&c, socket_path, err, sizeof err) < 0)
                return trace_fail("%s (is dchatd running?)", err);
        /* the algorithm first (--check's rules for overlaps differ under the token: tm_check) */
        if (cconn_send(&c, &(struct dchat_msg) { .type = MSG_STATUS, .tag = 2 }) < 0 ||
            cconn_send(&c, &(struct dchat_msg) { .type = MSG_TRACE, .tag = 1,
                                                 .trace = { TRACE_CLUSTER, since, until, 0, 0 } }) < 0) {
                trace_fail("cannot send the request: %s", strerror(errno));
                goto out;
        }
        uint64_t deadline = mono_ms() + TRACE_WAIT_MS;
        for (;;) {
                while ((r = cconn_frame(&c, &msg)) > 0) {
                        if (msg.type == MSG_ERROR) {
                                trace_fail("%.*s", (int) msg.error.text.len, msg.error.text.p);
                                goto out;
                        }
                        if (msg.type == MSG_TRACE_EVENTS) {
                                if (take_page(m, &msg))
                                        goto out;
                                continue;
                        }
                        if (msg.type == MSG_STATUS_REPLY) {
                                m->token = !strcmp(msg.status->dme_algorithm, "token");
                                continue;
                        }
                        if (msg.type != MSG_TRACE_END) {
                                trace_fail("unexpected answer %s from dchatd", proto_type_name(msg.type));
                                goto out;
                        }
                        /* the nodes that gave nothing, or not all: said here, and drawn with what came */
                        struct rbuf rb = { .p = msg.trace_end.p, .len = msg.trace_end.len };
                        struct dchat_str name, why;
                        uint64_t got;
                        while (proto_trace_missing_next(&rb, &name, &got, &why) > 0) {
                                char nb[DCHAT_NAME_MAX + 1], wb[DCHAT_TRACE_WHY_MAX + 1];
                                dchat_str_copy(nb, sizeof nb, name);
                                dchat_str_copy(wb, sizeof wb, why);
                                int lane = tm_lane(m, nb);
                                if (lane >= 0)
                                        tm_set_missing(m, (unsigned) lane, got, wb);
                                fprintf(stderr, "dchatctl: trace: %s: %s (%" PRIu64 " of its events gathered)\n", nb,
                                        wb, got);
                        }
                        if (m->n_lanes == 0) {
                                trace_fail("no peer gave its events");
                                goto out;
                        }
                        ret = 0;
                        goto out;
                }
                if (r < 0) {
                        trace_fail("dchatd sent a malformed frame");
                        goto out;
                }
                uint64_t now = mono_ms();
                if (now >= deadline) {
                        trace_fail("no end of the trace from dchatd within %d s", TRACE_WAIT_MS / 1000);
                        goto out;
                }
                struct pollfd p = { .fd = c.fd, .events = POLLIN };
                if (poll(&p, 1, (int) (deadline - now)) < 0 && errno != EINTR) {
                        trace_fail("poll: %s", strerror(errno));
                        goto out;
                }
                r = cconn_fill(&c);
                if (r == 0) {
                        trace_fail("dchatd closed the connection");
                        goto out;
                }
                if (r < 0 && r != -EAGAIN) {
                        trace_fail("lost the connection to dchatd: %s", strerror(-r));
                        goto out;
                }
        }
out:
        cconn_close(&c);
        wbuf_free(&c.in);
        return ret;
}

/* --- journal exports and traces written before ----------------------------------------------- */

static int read_file(struct tmodel *m, const char *path)
{
        FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
        char *line = NULL, err[1024];
        size_t cap = 0, lineno = 0, events = 0, json = 0;
        ssize_t len;
        int ret = 0;

        if (!f)
                return trace_fail("cannot read %s: %s", path, strerror(errno));
        while ((len = getline(&line, &cap, f)) >= 0) {
                lineno++;
                while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        len--;
                if (!len)
                        continue;
                int r = tm_read_json(m, line, (size_t) len, err, sizeof err);
                if (r == -EINVAL && !json) {
                        ret = trace_fail("%s:%zu: not a journal export (journalctl -o json) nor a trace of dchatctl trace "
                                   "--format json: %s", path, lineno, err);
                        goto out;
                }
                if (r < 0) {
                        ret = trace_fail("%s:%zu: %s", path, lineno, err);
                        goto out;
                }
                json++;
                events += r > 0;
        }
        if (ferror(f))
                ret = trace_fail("cannot read %s: %s", path, strerror(errno));
        else if (!events)
                ret = trace_fail("%s: no dchatd protocol events in it (export a peer's with journalctl -o json -t dchatd, "
                           "or write a trace with dchatctl trace --format json)", path);
out:
        free(line);
        if (f != stdin)
                fclose(f);
        return ret;
}

/* --- pictures: dchat-draw --------------------------------------------------------------------- */

static int find_draw(char *path, size_t cap)
{
        const char *env = getenv("DCHAT_DRAW");
        char self[PATH_MAX];
        ssize_t n;

        if (env && *env) {
                snprintf(path, cap, "%s", env);
                return access(path, X_OK) == 0 ? 0 : -errno;
        }
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        snprintf(path, cap, "%s/dchat-draw", self);
                        if (access(path, X_OK) == 0)
                                return 0;
                }
        }
        snprintf(path, cap, "%s/dchat-draw", DCHAT_LIBEXECDIR);
        return access(path, X_OK) == 0 ? 0 : -ENOENT;
}

static int draw(const struct tmodel *m, const char *format, const char *out)
{
        char path[PATH_MAX + 16];
        int fds[2];

        if (find_draw(path, sizeof path) < 0)
                return trace_fail("pictures are drawn by dchat-draw, which is not installed here (%s; $DCHAT_DRAW names "
                            "another); --format json, shiviz and text work without it", path);
        if (pipe2(fds, O_CLOEXEC) < 0)
                return trace_fail("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
                return trace_fail("fork: %s", strerror(errno));
        if (pid == 0) {
                dup2(fds[0], STDIN_FILENO);
                execl(path, "dchat-draw", "--format", format, "--order", tm_order_name(m->order), "-o", out,
                      (char *) NULL);
                fprintf(stderr, "dchatctl: trace: cannot run %s: %s\n", path, strerror(errno));
                _exit(127);
        }
        close(fds[0]);
        FILE *f = fdopen(fds[1], "w");
        void (*old)(int) = signal(SIGPIPE, SIG_IGN);
        if (f) {
                tm_write_json(m, f);
                fclose(f);
        } else
                close(fds[1]);
        signal(SIGPIPE, old);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return 1;       /* dchat-draw said why */
        return 0;
}

/* --- the command ------------------------------------------------------------------------------- */

static const char *format_of(const char *out)
{
        const char *dot = out ? strrchr(out, '.') : NULL;

        if (!dot)
                return NULL;
        if (!strcmp(dot, ".svg") || !strcmp(dot, ".png") || !strcmp(dot, ".pdf") || !strcmp(dot, ".json"))
                return dot + 1;
        if (!strcmp(dot, ".jsonl"))
                return "json";
        if (!strcmp(dot, ".shiviz") || !strcmp(dot, ".log"))
                return "shiviz";
        if (!strcmp(dot, ".txt"))
                return "text";
        return NULL;
}

static int parse_time(const char *opt, const char *s, uint64_t *us)
{
        int64_t t;

        if (since_parse(s, time(NULL), &t) < 0 || t < 1) {
                fprintf(stderr, "dchatctl: trace %s needs a time such as 30s, 10m, 14:30, '2026-11-21 14:30' or "
                        "@SECONDS, not '%s'\n", opt, s);
                return -EINVAL;
        }
        *us = (uint64_t) t * 1000000;
        return 0;
}

int cmd_trace(int argc, char **argv, const char *socket_path)
{
        static const struct option opts[] = {
                { "since", required_argument, NULL, 'S' }, { "until", required_argument, NULL, 'U' },
                { "post", required_argument, NULL, 'P' }, { "order", required_argument, NULL, 'O' },
                { "check", no_argument, NULL, 'c' }, { "format", required_argument, NULL, 'F' },
                { "output", required_argument, NULL, 'o' }, { "from", required_argument, NULL, 'f' },
                { "socket", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
                { "algorithm", required_argument, NULL, 'A' }, {}
        };
        const char *out = NULL, *format = NULL, *from[64], *algo = NULL;
        unsigned n_from = 0;
        uint64_t since = 0, until = 0, post = 0;
        enum tm_order order = TM_VECTOR;
        bool check = false;
        struct tmodel m;
        int o, ret = 1;

        while ((o = getopt_long(argc, argv, "+o:hs:", opts, NULL)) >= 0) {
                switch (o) {
                case 's':       /* -s after the command, as before it */
                        socket_path = optarg;
                        socket_origin = "-s";
                        break;
                case 'S':
                        if (parse_time("--since", optarg, &since) < 0)
                                return 2;
                        break;
                case 'U':
                        if (parse_time("--until", optarg, &until) < 0)
                                return 2;
                        break;
                case 'P':
                        if (number_parse_u64(optarg, 1, UINT64_MAX, &post) < 0) {
                                fprintf(stderr, "dchatctl: trace --post needs a positive sequence number, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'O':
                        if (tm_order_parse(optarg, &order) < 0) {
                                fprintf(stderr, "dchatctl: trace --order is physical, lamport or vector, not '%s'\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'c':
                        check = true;
                        break;
                case 'A':
                        if (strcmp(optarg, "ricart-agrawala") && strcmp(optarg, "central") && strcmp(optarg, "token")) {
                                fprintf(stderr, "dchatctl: trace --algorithm is ricart-agrawala, central or token, "
                                        "not '%s'\n", optarg);
                                return 2;
                        }
                        algo = optarg;
                        break;
                case 'F':
                        format = optarg;
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 'f':
                        if (n_from == sizeof from / sizeof from[0]) {
                                fprintf(stderr, "dchatctl: trace takes at most %zu --from files\n",
                                        sizeof from / sizeof from[0]);
                                return 2;
                        }
                        from[n_from++] = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatctl: trace takes no arguments ('%s'); journal exports go with --from\n",
                        argv[optind]);
                usage(stderr);
                return 2;
        }
        if (!format)
                format = format_of(out);
        if (!format)
                format = out ? NULL : "text";
        if (!format || (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "shiviz") &&
                        strcmp(format, "svg") && strcmp(format, "png") && strcmp(format, "pdf"))) {
                fprintf(stderr, "dchatctl: trace: which format? --format text, json, shiviz, svg, png or pdf (or -o "
                        "FILE ending in one of them)\n");
                return 2;
        }
        bool picture = !strcmp(format, "svg") || !strcmp(format, "png") || !strcmp(format, "pdf");
        if (picture && (!out || !strcmp(out, "-"))) {
                fprintf(stderr, "dchatctl: trace: a picture goes to a file: -o FILE.%s\n", format);
                return 2;
        }
        if (since && until && until < since) {
                fprintf(stderr, "dchatctl: trace: --until is before --since\n");
                return 2;
        }

        tm_init(&m);
        if (n_from) {
                for (unsigned i = 0; i < n_from; i++)
                        if (read_file(&m, from[i]))
                                goto out;
        } else if (gather(&m, socket_path, since, until))
                goto out;
        if (algo)       /* files say no algorithm; the live cluster's dchatd does */
                m.token = !strcmp(algo, "token");
        tm_finish(&m);
        tm_window_time(&m, since, until);
        char err[512];
        if (post && tm_window_post(&m, post, err, sizeof err) < 0) {
                trace_fail("%s", err);
                goto out;
        }
        if (m.n == 0) {
                trace_fail("no events in the trace%s%s%s (the rings hold the last trace_events events of each peer; "
                     "journal exports reach further back: --from)", since || until ? " window" : "",
                     n_from ? " from the files given" : "", post ? " around that post" : "");
                goto out;
        }
        tm_layout(&m, order);

        ret = 0;
        if (picture)
                ret = draw(&m, format, out);
        else if (out || !check) {
                FILE *f = out && strcmp(out, "-") ? fopen(out, "w") : stdout;
                if (!f) {
                        ret = trace_fail("cannot write %s: %s", out, strerror(errno));
                        goto out;
                }
                if (!strcmp(format, "json"))
                        tm_write_json(&m, f);
                else if (!strcmp(format, "shiviz"))
                        tm_write_shiviz(&m, f);
                else
                        tm_write_text(&m, f);
                if (fflush(f) != 0 || ferror(f))
                        ret = trace_fail("cannot write %s: %s", out ? out : "the trace", strerror(errno));
                if (f != stdout)
                        fclose(f);
        }
        if (check) {
                static char report[4096];
                int c = tm_check(&m, report, sizeof report);
                printf("%s\n", report);
                if (c)
                        ret = 1;
        }
out:
        tm_free(&m);
        return ret;
}
