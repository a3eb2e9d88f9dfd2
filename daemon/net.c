/* SPDX-License-Identifier: MIT */
/*
 * net.c — framed, buffered, non-blocking connections on sd-event.
 *
 * A conn owns its fd and one I/O event source.  Input is read into a buffer
 * and cut into frames whose header is checked before the owner sees them;
 * output is queued and written when the socket is writable.  The owner
 * learns everything through four callbacks (struct conn_ops).  A conn may
 * be closed from inside its own callbacks: it is only freed once the
 * dispatch that is running has unwound.
 *
 * TCP connections are cluster links: unless the config says
 * insecure_plaintext, each runs the handshake of secure.c first (the side
 * that connected is the initiator) and then carries every frame in an
 * encrypted record.  The owner sees none of it: `connected` comes once the
 * handshake is done, frames arrive decrypted.  A link that fails the
 * handshake or a record is closed with a link-auth-failed event.  Every
 * link must finish its handshake and, inbound, deliver its first frame
 * (HELLO) within handshake_timeout_ms.
 *
 * Strangers.  Anyone who can reach a port can open connections to it, so
 * an inbound link is admitted by its source address (net_admit): at most
 * max_handshakes may be pending (before their first frame) and
 * max_links_in open at once; one address may hold only
 * max_handshakes_per_address of the pending ones (a member's address that
 * many per node configured there); and when the slots are full, a
 * connection from a member's address takes the slot of the oldest one
 * from an address that is no member's.  A member speaks first at once, so
 * an inbound link must bring its first handshake message (or, in
 * plaintext, its first frame) within first_message_timeout_ms.  What
 * strangers provoke is logged with a rate limit per address (and in all),
 * then summed up in one line.  Cluster links also keep TCP keepalive and
 * TCP_USER_TIMEOUT, so that the kernel ends a link to a host that
 * vanished even when nothing else notices.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <sodium.h>

#include "dchatd.h"
#include "secure.h"

#define READ_CHUNK      (16 * 1024)
#define LOW_WATER       (64 * 1024)

/*
 * Refusals and failures of inbound links: lines per interval from one
 * stranger's address, from all of them together, and from one member's
 * address (a cluster host: what fails there is rare and worth seeing, and
 * strangers do not use up its share).
 */
#define NOISY_SLOTS             16
#define NOISY_INTERVAL          (10 * USEC_PER_SEC)
#define NOISY_BURST_ADDRESS     5
#define NOISY_BURST_ALL         20
#define NOISY_BURST_MEMBER      50

enum conn_kind { CONN_LOCAL, CONN_TCP_IN, CONN_TCP_OUT };

/* An IP address without the port; an IPv4-mapped IPv6 address is the IPv4 one. */
struct ipaddr {
        uint8_t len;                    /* 4, 16; 0: unknown */
        uint8_t a[16];
};

/* One address whose links were refused or failed lately, for the rate limit. */
struct noisy {
        struct ipaddr ip;
        char name[INET6_ADDRSTRLEN];
        bool member;                    /* a node of the config is there */
        uint64_t used;                  /* last line about it, for reuse of the slot */
        struct ratelimit rl;
};

/* Link security, set by dchatd from the config (net_set_security). */
static struct {
        const struct dchat_conf *conf;  /* NULL: not set up (unit tests): plaintext */
        bool plaintext;
        bool have_key;                  /* the cluster key */
        uint8_t key[SECURE_KEY_BYTES];
        bool have_sk;                   /* this host's host key */
        uint8_t sk[SECURE_SK_BYTES];
        struct conn *links;             /* every TCP link with a handshake (lnext) */
        unsigned n_pending_in;          /* inbound TCP links before their first frame */
        unsigned n_in;                  /* inbound TCP links */
        struct conn *pending_in;        /* the former, newest first */
        sd_event *event;
        sd_event_source *noisy_timer;   /* the next summary of lines held back */
        struct ratelimit noisy_all;
        struct noisy noisy[NOISY_SLOTS];
        int (*member_hook)(void *userdata, const char *name, uint8_t role);     /* net_set_member_hook */
        void *member_hook_data;
} S;

static struct wbuf scratch;             /* a frame before it is sealed */

struct conn {
        int fd;
        sd_event_source *io;
        enum conn_kind kind;
        char addr[64];                  /* TCP: the other end's address */
        char expect[DCHAT_NAME_MAX + 1]; /* TCP_OUT: the node we dialed */
        struct secure *sec;             /* NULL: plaintext */
        struct conn *lprev, *lnext;     /* in S.links when sec */
        struct wbuf raw;                /* received bytes not yet decrypted */
        bool pending;                   /* handshake (and, inbound, first frame) not done yet */
        struct conn *prev, *next;       /* in S.pending_in while pending (inbound) */
        struct ipaddr ip;               /* TCP: the other end's address */
        unsigned share;                 /* inbound: nodes of the config at that address (0: a stranger's) */
        uint64_t created;               /* CLOCK_MONOTONIC µs */
        bool heard;                     /* inbound, secure: its first handshake message came */
        bool gave_up;                   /* inbound: ... after its initiator had hung up (stale: net_stale) */
        sd_event_source *timer;         /* first message and handshake deadline */
        const struct conn_ops *ops;
        void *userdata;
        char label[96];
        struct wbuf in, out;
        bool connecting;
        bool dead;              /* closed; freed when dispatch unwinds */
        bool was_high;          /* output was above LOW_WATER */
        int send_error;         /* a send failed: closed from conn_io, not from conn_send */
        bool linger;            /* at EOF, stay until every request is answered */
        bool rd_closed;         /* the other side shut its writing side */
        bool closing;           /* conn_shutdown: close once out is sent */
        bool paused;            /* a frame op said CONN_LATER: no input until conn_resume */
        bool resumed;           /* conn_resume: dispatch what waits in `in` first */
        sd_event_source *resume_src;    /* defer: runs conn_io after conn_resume */
        uint64_t last_io;       /* CLOCK_MONOTONIC usec of the last byte in or out */
        unsigned requests;      /* frames received ... */
        unsigned answers;       /* ... and final answers sent (linger mode) */
        unsigned busy;          /* dispatch depth */
        unsigned corked;        /* conn_cork depth: frames wait in out */
        size_t max_frame;       /* payload limit below DCHAT_FRAME_MAX; 0: none */
};

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void conn_greeted(struct conn *c)
{
        if (c->pending) {
                c->pending = false;
                if (c->kind == CONN_TCP_IN) {
                        LIST_REMOVE(S.pending_in, c);
                        S.n_pending_in--;
                }
        }
        c->timer = sd_event_source_disable_unref(c->timer);
}

static uint64_t first_message_usec(void)
{
        return S.conf->first_message_timeout_usec < S.conf->handshake_timeout_usec ?
               S.conf->first_message_timeout_usec : S.conf->handshake_timeout_usec;
}

/*
 * Had the other end of c hung up (its FIN in) before we said a word?  A
 * connection that queued in the listening socket while no dchatd served it
 * (socket activation, a restart) was given up by its initiator long ago:
 * its first handshake message is there, and its end.  It never saw our
 * answer, so its closing says nothing about keys.
 */
static bool peer_hung_up(int fd)
{
        struct tcp_info ti;
        socklen_t l = sizeof ti;

        return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 &&
               (ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_LAST_ACK || ti.tcpi_state == TCP_CLOSE);
}

/* An inbound link's first handshake message came: the rest of handshake_timeout_ms is its own. */
static void conn_heard(struct conn *c)
{
        c->heard = true;
        c->gave_up = peer_hung_up(c->fd);
        if (c->timer)
                (void) sd_event_source_set_time(c->timer, c->created + S.conf->handshake_timeout_usec);
}

static void links_remove(struct conn *c)
{
        if (!c->sec)
                return;
        if (c->lnext)
                c->lnext->lprev = c->lprev;
        if (c->lprev)
                c->lprev->lnext = c->lnext;
        else if (S.links == c)
                S.links = c->lnext;
        c->lprev = c->lnext = NULL;
}

static void conn_free(struct conn *c)
{
        conn_greeted(c);
        links_remove(c);
        if (c->kind == CONN_TCP_IN)
                S.n_in--;
        sd_event_source_disable_unref(c->resume_src);
        sd_event_source_disable_unref(c->io);
        if (c->fd >= 0) {
                /* Input left unread makes close() send a RST, and a RST makes the other
                 * end drop what it has not read yet: the last frames we sent (a LEAVE, the
                 * REPLYs owed).  Read it away first, so that a FIN follows them. */
                if (c->kind != CONN_LOCAL) {
                        char sink[4096];
                        for (int i = 0; i < 16 && recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
                                ;
                }
                close(c->fd);
        }
        c->sec = secure_free(c->sec);
        wbuf_free(&c->raw);
        wbuf_free(&c->in);
        wbuf_free(&c->out);
        free(c);
}

/* --- addresses and what strangers provoke --------------------------------------------------- */

static void ip_of(const struct sockaddr *sa, struct ipaddr *ip)
{
        static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

        *ip = (struct ipaddr) { 0 };
        if (sa->sa_family == AF_INET) {
                ip->len = 4;
                memcpy(ip->a, &((const struct sockaddr_in *) sa)->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6) {
                const uint8_t *a = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;
                if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
                        ip->len = 4;
                        memcpy(ip->a, a + 12, 4);
                } else {
                        ip->len = 16;
                        memcpy(ip->a, a, 16);
                }
        }
}

static bool ip_same(const struct ipaddr *a, const struct ipaddr *b)
{
        return a->len && a->len == b->len && memcmp(a->a, b->a, a->len) == 0;
}

static void ip_format(const struct ipaddr *ip, char *buf, size_t cap)
{
        if (!ip->len || !inet_ntop(ip->len == 4 ? AF_INET : AF_INET6, ip->a, buf, (socklen_t) cap))
                strlcpy(buf, "?", cap);
}

/* How many nodes of the config have this address (any port): 0 for a stranger's. */
static unsigned member_share(const struct ipaddr *ip)
{
        const struct dchat_conf *conf = S.conf;
        struct ipaddr m;
        unsigned n = 0;

        for (unsigned i = 0; i < conf->n_servers; i++) {
                ip_of((const struct sockaddr *) &conf->servers[i].sa, &m);
                n += ip_same(ip, &m);
        }
        for (unsigned i = 0; i < conf->n_peers; i++) {
                ip_of((const struct sockaddr *) &conf->peers[i].sa, &m);
                n += ip_same(ip, &m);
        }
        return n;
}

static void noisy_summary(struct noisy *n, unsigned held)
{
        log_event(EV_LINK_AUTH_FAILED, NULL, "%u more connections from %s refused or closed in the last %llu s; "
                  "not logged one by one (rate limit)", held, n->name,
                  (unsigned long long) (NOISY_INTERVAL / USEC_PER_SEC));
}

static int on_noisy_timer(sd_event_source *s, uint64_t usec, void *userdata);

/* The next summary is due then: (re)arm the timer. */
static void noisy_arm(void)
{
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < NOISY_SLOTS; i++) {
                uint64_t t = ratelimit_due(&S.noisy[i].rl);
                if (t < next)
                        next = t;
        }
        if (!S.event)
                return;
        if (!S.noisy_timer && next != UINT64_MAX &&
            sd_event_add_time(S.event, &S.noisy_timer, CLOCK_MONOTONIC, next, 0, on_noisy_timer, NULL) < 0)
                return;
        if (!S.noisy_timer)
                return;
        (void) sd_event_source_set_time(S.noisy_timer, next);
        (void) sd_event_source_set_enabled(S.noisy_timer, next == UINT64_MAX ? SD_EVENT_OFF : SD_EVENT_ONESHOT);
}

static int on_noisy_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) userdata;
        for (unsigned i = 0; i < NOISY_SLOTS; i++) {
                unsigned held = ratelimit_flush(&S.noisy[i].rl, usec);
                if (held)
                        noisy_summary(&S.noisy[i], held);
        }
        noisy_arm();
        return 0;
}

/* The slot of ip: its own, a free one, or the one unused longest (whose count is said first). */
static struct noisy *noisy_slot(const struct ipaddr *ip)
{
        struct noisy *n = NULL;

        for (unsigned i = 0; i < NOISY_SLOTS; i++)
                if (ip_same(&S.noisy[i].ip, ip))
                        return &S.noisy[i];
        for (unsigned i = 0; i < NOISY_SLOTS; i++)
                if (!n || S.noisy[i].used < n->used)
                        n = &S.noisy[i];
        if (n->rl.suppressed)
                noisy_summary(n, n->rl.suppressed);
        *n = (struct noisy) { .ip = *ip, .member = member_share(ip) > 0 };
        n->rl = RATELIMIT_INIT(NOISY_INTERVAL, n->member ? NOISY_BURST_MEMBER : NOISY_BURST_ADDRESS);
        ip_format(ip, n->name, sizeof n->name);
        return n;
}

/*
 * A link-auth-failed line about an inbound connection from ip, which its
 * other end can provoke as often as it likes: at most NOISY_BURST_ADDRESS
 * lines per stranger's address and NOISY_BURST_ALL for all of them
 * (limit_all), NOISY_BURST_MEMBER per member's address, per NOISY_INTERVAL;
 * the rest are counted and summed up per address when the interval ends.
 */
_printf_(4, 5)
static void log_noisy(const struct ipaddr *ip, bool limit_all, const char *peer, const char *fmt, ...)
{
        uint64_t now = now_usec();
        char msg[512];
        va_list ap;

        struct noisy *n = noisy_slot(ip);
        n->used = now;
        if (!S.noisy_all.interval_usec)
                S.noisy_all = RATELIMIT_INIT(NOISY_INTERVAL, NOISY_BURST_ALL);
        unsigned held = ratelimit_flush(&n->rl, now);   /* an interval is over: its count first */
        if (held)
                noisy_summary(n, held);
        bool mine = ratelimit_pass(&n->rl, now);
        if (mine && limit_all && !n->member && !ratelimit_pass(&S.noisy_all, now)) {
                /* the global limit: counted under its address, summed up with the rest */
                S.noisy_all.suppressed = 0;
                n->rl.suppressed++;
                mine = false;
        }
        if (mine) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof msg, fmt, ap);
                va_end(ap);
                log_event(EV_LINK_AUTH_FAILED, &(struct event_fields) { .peer = peer && peer[0] ? peer : NULL },
                          "%s", msg);
        }
        noisy_arm();
}

void conn_refuse(int fd, const char *label, const char *fmt, ...)
{
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        struct ipaddr ip = { 0 };
        char why[192];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        if (getpeername(fd, (struct sockaddr *) &sa, &salen) == 0)
                ip_of((struct sockaddr *) &sa, &ip);
        if (!S.conf) {
                log_event(EV_LINK_AUTH_FAILED, NULL, "%s: %s", label, why);
                return;
        }
        log_noisy(&ip, true, NULL, "%s: %s", label, why);
}

/* A link refused: the event names the address, and the node when known. */
_printf_(2, 3)
static void auth_failed(struct conn *c, const char *fmt, ...)
{
        char why[320];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        const char *who = c->kind == CONN_TCP_OUT ? c->expect : c->sec ? secure_peer_name(c->sec) : "";
        /* "connection from ADDR: ...", "link to node2 (ADDR): ..." */
        bool has_addr = strstr(c->label, c->addr) != NULL;
        if (c->kind == CONN_TCP_IN) {
                log_noisy(&c->ip, true, who, "%s%s%s%s: %s; closing the connection", c->label, has_addr ? "" : " (",
                          has_addr ? "" : c->addr, has_addr ? "" : ")", why);
                return;
        }
        log_event(EV_LINK_AUTH_FAILED, &(struct event_fields) { .peer = who[0] ? who : NULL },
                  "%s%s%s%s: %s; closing the connection", c->label, has_addr ? "" : " (",
                  has_addr ? "" : c->addr, has_addr ? "" : ")", why);
}

/*
 * An inbound link whose initiator had given up before we answered (queued
 * while no dchatd served the port, or closed at the same moment): dropped
 * with an info line that says so (rate-limited: a restart may find many),
 * and no link-auth-failed.
 */
static void net_stale(struct conn *c)
{
        static struct ratelimit rl = RATELIMIT_INIT(NOISY_INTERVAL, NOISY_BURST_ALL);
        uint64_t now = now_usec();

        if (!ratelimit_pass(&rl, now))
                return;
        log_info("%s: closed by its initiator before this dchatd answered (it queued while no dchatd served "
                 "the port, or gave up at that moment)%s; dropped: a stale connection, not a key problem",
                 c->label, ratelimit_suppressed(&rl));
}

static void conn_update_events(struct conn *c)
{
        /* paused: what the other side sends waits in its socket, not in our memory */
        uint32_t ev = c->rd_closed || c->closing || c->paused ? 0 : EPOLLIN;
        /* after a half-close, wake up once the last answer is out; after a high
         * output, once more when it has drained (the drained op must come even
         * if the last bytes went out from conn_send) */
        if (c->connecting || c->out.len > 0 || c->was_high || (c->rd_closed && c->answers >= c->requests))
                ev |= EPOLLOUT;
        (void) sd_event_source_set_io_events(c->io, ev);
}

void conn_close(struct conn *c, int error)
{
        if (!c || c->dead)
                return;
        c->dead = true;
        (void) sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
        c->busy++;
        if (c->ops->closed)
                c->ops->closed(c, error);
        c->busy--;
        if (c->busy == 0)
                conn_free(c);
}

const char *conn_strerror(int error)
{
        switch (error) {
        case 0:
        case -ECONNRESET:
                return "connection closed";
        case -ESHUTDOWN:
                return "shutting down";
        case -ETIMEDOUT:
                return "timed out";
        default:
                return strerror(-error);
        }
}

static int conn_flush(struct conn *c)
{
        while (c->out.len > 0) {
                ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                c->last_io = now_usec();
                wbuf_consume(&c->out, (size_t) n);
        }
        if (c->out.len == 0 && c->out.cap > 4 * LOW_WATER) {
                /* don't keep a huge buffer after a burst */
                wbuf_free(&c->out);
        }
        return 0;
}

/* A HELLO on a secure link must name the node (and role) the handshake proved. */
static bool hello_matches(struct conn *c, const uint8_t *payload, size_t len)
{
        struct dchat_msg m;
        const char *proved = secure_peer_name(c->sec);

        if (proto_decode(MSG_HELLO, payload, len, &m, NULL, NULL) < 0)
                return true;    /* malformed: the owner says so */
        if (m.hello.node.len == strlen(proved) && memcmp(m.hello.node.p, proved, m.hello.node.len) == 0 &&
            m.hello.role == secure_peer_role(c->sec))
                return true;
        char q[LOG_QUOTE_NAME];
        auth_failed(c, "HELLO names '%s' (%s), but the handshake proved '%s' (%s)",
                    log_quote(q, sizeof q, m.hello.node.p, m.hello.node.len), role_name(m.hello.role), proved,
                    role_name(secure_peer_role(c->sec)));
        return false;
}

/* debug = true: every frame sent and received is logged; HEARTBEAT and RAFT (a steady stream) with debug_heartbeats only. */
static bool debug_frame(uint8_t type)
{
        if (!S.conf || !S.conf->debug)
                return false;
        return S.conf->debug_heartbeats || (type != MSG_HEARTBEAT && type != MSG_RAFT);
}

/* Cut the input buffer into frames and hand them over. */
static int conn_dispatch(struct conn *c)
{
        size_t off = 0;
        int r = 0;

        while (!c->dead && !c->closing && !c->paused && c->in.len - off >= DCHAT_FRAME_HDR) {
                uint8_t type;
                int len = proto_check_header(c->in.data + off, &type);
                if ((len >= 0 && c->max_frame && (size_t) len > c->max_frame) ||
                    (len == -EMSGSIZE && c->max_frame)) {
                        /* a local client: tell it why before hanging up */
                        const uint8_t *h = c->in.data + off;
                        unsigned long n = (unsigned long) h[0] << 24 | (unsigned long) h[1] << 16 |
                                          (unsigned long) h[2] << 8 | h[3];
                        log_event(EV_PROTOCOL_ERROR, NULL, "%s: frame of %lu bytes, over this socket's limit of %zu; "
                                  "closing the connection", c->label, n, c->max_frame);
                        fd_send_error(c->fd, 0, ERR_TOO_LONG, "a request of %lu bytes is over the limit of %zu bytes "
                                      "of the control socket", n, c->max_frame);
                        r = -EMSGSIZE;
                        break;
                }
                if (len < 0) {
                        /* the owner logs what its handlers refuse; the header is ours */
                        log_event(EV_PROTOCOL_ERROR, NULL, "%s: %s frame header, closing the connection",
                                  c->label, len == -EMSGSIZE ? "oversized" : "malformed");
                        r = len;
                        break;
                }
                if (c->in.len - off < DCHAT_FRAME_HDR + (size_t) len)
                        break;
                if (c->sec && c->kind == CONN_TCP_IN && type == MSG_HELLO &&
                    !hello_matches(c, c->in.data + off + DCHAT_FRAME_HDR, (size_t) len)) {
                        r = -EPERM;
                        break;
                }
                if (type != MSG_FOLLOW)
                        c->requests++;  /* a FOLLOW has no final answer: it never keeps a closing client */
                if (c->pending)
                        conn_greeted(c);        /* an inbound link is greeted by its first frame */
                if (debug_frame(type)) {
                        const uint8_t *t = c->in.data + off + DCHAT_FRAME_HDR;
                        log_debug("%s: got %s tag %u (%d bytes)", c->label, proto_type_name(type),
                                  (unsigned) t[0] << 24 | (unsigned) t[1] << 16 | (unsigned) t[2] << 8 | t[3], len);
                }
                r = c->ops->frame(c, type, c->in.data + off + DCHAT_FRAME_HDR, (size_t) len);
                if (r == CONN_LATER) {
                        /* not handled: it stays first in line, and nothing more is read */
                        if (type != MSG_FOLLOW)
                                c->requests--;
                        c->paused = true;
                        r = 0;
                        break;
                }
                off += DCHAT_FRAME_HDR + (size_t) len;
                if (r < 0)
                        break;
        }
        if (!c->dead)
                wbuf_consume(&c->in, off);
        return r;
}

/* Raw bytes of a secure link: run the state machine, then the frames. */
static int conn_secure_input(struct conn *c)
{
        bool was_open = secure_is_open(c->sec);
        size_t used;

        int r = secure_input(c->sec, c->raw.data, c->raw.len, &used, &c->out, &c->in);
        wbuf_consume(&c->raw, used);
        if (r < 0) {
                auth_failed(c, "%s", secure_error(c->sec));
                return -EPERM;
        }
        /* before our answer goes out (conn_flush below): had it hung up already? */
        if (c->kind == CONN_TCP_IN && !c->heard && secure_heard(c->sec))
                conn_heard(c);
        if (c->out.len > 0) {
                r = conn_flush(c);
                if (r < 0)
                        return r;
        }
        if (!was_open && secure_is_open(c->sec) && c->kind == CONN_TCP_OUT) {
                conn_greeted(c);
                if (c->ops->connected) {
                        c->ops->connected(c);
                        if (c->dead)
                                return 0;
                }
        }
        return conn_dispatch(c);
}

static int conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;
        int r = 0;
        (void) s;
        (void) fd;

        c->busy++;
        if (c->send_error) {
                r = c->send_error;
                goto out;
        }
        /*
         * EPOLLHUP: the other side is gone for good (closed, or shut both
         * ways), unlike a half-close (EPOLLRDHUP alone), which still wants
         * its answers.  epoll reports it whatever we ask for, so once
         * nothing more is to be read from it (after EOF, or while paused)
         * it must end the connection here, or it would wake us forever.
         * What the client sent before is read and handled first; what it
         * waits for (a post) goes on without it.
         */
        if ((revents & EPOLLHUP) && !c->connecting && (c->rd_closed || c->paused || c->closing)) {
                r = -ECONNRESET;
                goto out;
        }
        if (c->resumed && !c->paused) {
                /* conn_resume: the frames that waited go first */
                c->resumed = false;
                r = conn_dispatch(c);
                if (r < 0)
                        goto out;
                if (c->rd_closed && !c->paused && c->in.len > 0) {
                        r = -ECONNRESET;        /* a truncated request after EOF: never whole */
                        goto out;
                }
        }
        if (c->connecting && (revents & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t l = sizeof err;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
                        err = errno;
                if (err) {
                        r = -err;
                        goto out;
                }
                c->connecting = false;
                if (c->sec) {
                        /* the owner hears `connected` once the handshake is done */
                        r = secure_start(c->sec, &c->out);
                        if (r < 0)
                                goto out;
                } else {
                        if (c->pending)
                                conn_greeted(c);
                        if (c->ops->connected)
                                c->ops->connected(c);
                        if (c->dead)
                                goto out;
                }
        }

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                /* Bounded reads per wakeup keep one busy link from starving the rest. */
                for (int i = 0; i < 4 && !c->dead && !c->closing && !c->paused && !c->rd_closed; i++) {
                        size_t want = READ_CHUNK;
                        struct wbuf *b = c->sec ? &c->raw : &c->in;
                        if (!wbuf_reserve(b, want)) {
                                r = -ENOMEM;
                                goto out;
                        }
                        ssize_t n = recv(c->fd, b->data + b->len, b->cap - b->len, MSG_DONTWAIT);
                        if (n < 0) {
                                if (errno == EAGAIN || errno == EINTR)
                                        break;
                                r = -errno;
                                goto out;
                        }
                        if (n == 0 && c->sec && !secure_is_open(c->sec) && !secure_failed(c->sec) &&
                            secure_heard(c->sec) && c->gave_up) {
                                /* it had hung up before our answer: a stale connection */
                                net_stale(c);
                                r = -ECONNRESET;
                                goto out;
                        }
                        if (n == 0 && c->sec && !secure_is_open(c->sec) && !secure_failed(c->sec) &&
                            secure_heard(c->sec)) {
                                /* it spoke, saw our proof of the key, and hung up */
                                auth_failed(c, "closed during the handshake (does it hold another key?)");
                                r = -EPERM;
                                goto out;
                        }
                        if (n == 0 && c->sec && !secure_is_open(c->sec) && !secure_failed(c->sec)) {
                                /* closed before a word of the handshake: a daemon stopping, a
                                 * limit of its own; nothing says anything about keys */
                                r = -ECONNRESET;
                                goto out;
                        }
                        if (n == 0 && c->sec && c->raw.len > 0) {
                                auth_failed(c, "closed in the middle of a record (truncated)");
                                r = -EPERM;
                                goto out;
                        }
                        if (n == 0) {
                                /* deliver what is complete before anything else */
                                r = conn_dispatch(c);
                                if (r < 0)
                                        goto out;
                                /* gone (EPOLLHUP): nobody to answer; a partial frame: never whole */
                                if (!c->linger || (revents & EPOLLHUP) || (c->in.len > 0 && !c->paused)) {
                                        r = -ECONNRESET;
                                        goto out;
                                }
                                /* a half-close (`nc -N`): answer, then close */
                                c->rd_closed = true;
                                break;
                        }
                        c->last_io = now_usec();
                        b->len += (size_t) n;
                        r = c->sec ? conn_secure_input(c) : conn_dispatch(c);
                        if (r < 0)
                                goto out;
                        if ((size_t) n < want)
                                break;
                }
        }

        /* EPOLLOUT, or answers queued by the frames just handled: out now,
         * not one loop turn later */
        if (!c->dead && ((revents & EPOLLOUT) || (c->out.len > 0 && !c->connecting && !c->corked))) {
                r = conn_flush(c);
                if (r < 0)
                        goto out;
        }
        if (!c->dead && c->rd_closed && !c->paused && c->in.len == 0 && c->answers >= c->requests &&
            c->out.len == 0)
                r = -ECONNRESET;        /* all answered after a half-close */
        if (!c->dead && c->closing && c->out.len == 0)
                r = -ECONNRESET;        /* conn_shutdown: said what it had to */
out:
        if (r < 0 && !c->dead)
                conn_close(c, r);
        if (!c->dead) {
                conn_update_events(c);
                if (c->was_high && c->out.len < LOW_WATER) {
                        c->was_high = false;
                        if (c->ops->drained)
                                c->ops->drained(c);
                }
        }
        c->busy--;
        if (c->dead && c->busy == 0)
                conn_free(c);
        return 0;
}

void conn_drain(struct conn *c)
{
        /* (busy: inside its own handling already, which reads on by itself) */
        if (!c || c->dead || c->connecting || c->busy)
                return;
        (void) conn_io(c->io, c->fd, EPOLLIN, c);
}

static int on_resume(sd_event_source *s, void *userdata)
{
        struct conn *c = userdata;
        return conn_io(s, c->fd, 0, c);
}

void conn_resume(struct conn *c)
{
        if (!c || c->dead || !c->paused)
                return;
        c->paused = false;
        c->resumed = true;
        /* not from here: the caller may be inside another connection's dispatch */
        if (!c->resume_src &&
            sd_event_add_defer(sd_event_source_get_event(c->io), &c->resume_src, on_resume, c) < 0) {
                conn_close(c, -ENOMEM);
                return;
        }
        (void) sd_event_source_set_enabled(c->resume_src, SD_EVENT_ONESHOT);
}

uint64_t conn_last_io(const struct conn *c)
{
        return c->last_io;
}

unsigned conn_unanswered(const struct conn *c)
{
        return c->requests > c->answers ? c->requests - c->answers : 0;
}

static int on_handshake_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct conn *c = userdata;
        (void) s;
        (void) usec;
        if (c->kind == CONN_TCP_OUT && (c->connecting || (c->sec && !secure_heard(c->sec)))) {
                /* Our connect, or our first handshake message, was never answered: the
                 * other end is down or unreachable, which the link's owner reports; it
                 * says nothing about keys. */
                conn_close(c, -ETIMEDOUT);
                return 0;
        }
        if (c->kind == CONN_TCP_IN && !c->heard)
                auth_failed(c, "no %s within %llu ms (first_message_timeout_ms)",
                            c->sec ? "handshake message" : "first frame",
                            (unsigned long long) (first_message_usec() / USEC_PER_MSEC));
        else
                auth_failed(c, "%s within %llu ms",
                            c->sec && !secure_is_open(c->sec) ? "handshake not completed" : "no first frame",
                            (unsigned long long) (S.conf->handshake_timeout_usec / USEC_PER_MSEC));
        conn_close(c, -ETIMEDOUT);
        return 0;
}

enum net_admit net_admit(const struct dchat_conf *conf, const struct net_admit_query *q)
{
        /* a member's address hosts share nodes, each of which may be reconnecting */
        unsigned cap = conf->max_handshakes_per_address * (q->share ? q->share : 1);

        if (q->from_address >= cap)
                /* a member's address at its cap: its newest connection is likelier a
                 * member's than its oldest, which had time to be done */
                return q->share ? NET_ADMIT_EVICT_SAME : NET_REFUSE_ADDRESS;
        if (q->links_in >= conf->max_links_in || q->pending >= conf->max_handshakes) {
                if (q->share && q->strangers_pending)
                        return NET_ADMIT_EVICT_STRANGER;
                return q->links_in >= conf->max_links_in ? NET_REFUSE_LINKS : NET_REFUSE_HANDSHAKES;
        }
        return NET_ADMIT;
}

/*
 * May an inbound connection from sa in?  Makes room when a member's
 * connection needs it.  false: refused (and said so).
 */
static bool admit(const struct sockaddr *sa, const char *label)
{
        struct net_admit_query q = { .links_in = S.n_in, .pending = S.n_pending_in };
        struct conn *same = NULL, *stranger = NULL;
        struct ipaddr ip;
        char addr[INET6_ADDRSTRLEN];

        ip_of(sa, &ip);
        q.share = member_share(&ip);
        for (struct conn *c = S.pending_in; c; c = c->next) {
                if (ip_same(&c->ip, &ip)) {
                        q.from_address++;
                        same = c;               /* the list is newest first: the last is the oldest */
                }
                if (!c->share) {
                        q.strangers_pending++;
                        stranger = c;
                }
        }
        enum net_admit v = net_admit(S.conf, &q);
        switch (v) {
        case NET_ADMIT:
                return true;
        case NET_ADMIT_EVICT_SAME:
        case NET_ADMIT_EVICT_STRANGER: {
                struct conn *victim = v == NET_ADMIT_EVICT_SAME ? same : stranger;
                /* limited by the member's address, whose connections cause it, and not
                 * drowned by what strangers provoke */
                log_noisy(&ip, false, NULL, "%s: dropped to make room for the %s, a member's address (%s reached)",
                          victim->label, label,
                          v == NET_ADMIT_EVICT_SAME ? "max_handshakes_per_address" :
                          q.links_in >= S.conf->max_links_in ? "max_links_in" : "max_handshakes");
                conn_close(victim, -ECONNABORTED);
                return true;
        }
        case NET_REFUSE_ADDRESS:
                ip_format(&ip, addr, sizeof addr);
                log_noisy(&ip, true, NULL, "%s: refused: %u handshakes pending from %s (max_handshakes_per_address)",
                          label, q.from_address, addr);
                return false;
        case NET_REFUSE_LINKS:
        case NET_REFUSE_HANDSHAKES:
                log_noisy(&ip, true, NULL, "%s: refused, %u links open and %u handshakes pending (%s reached)", label,
                          q.links_in, q.pending, v == NET_REFUSE_LINKS ? "max_links_in" : "max_handshakes");
                return false;
        }
        return false;
}

/*
 * A second line of defence under the heartbeats: the kernel probes an idle
 * link and ends one whose data stays unacknowledged (a host that vanished,
 * a path that dropped everything), in about twice dead_after_ms.
 */
static void tcp_tune(int fd)
{
        unsigned dead_ms = (unsigned) (S.conf->dead_after_usec / USEC_PER_MSEC);
        int one = 1, idle = (int) ((dead_ms + 999) / 1000), intvl = 1, cnt = 3;
        unsigned user_timeout = 2 * dead_ms < 1000 ? 1000 : 2 * dead_ms;

        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
        (void) setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

/*
 * Does name in role belong to the cluster (and is it not us)?  The config's
 * lists, and for servers beyond them: one we dialed by that name (taken
 * from the group's own configuration, or from a LEADER: servers added at
 * runtime are not in every host's file yet; the handshake proved the
 * name), or one the server role lets in (net_set_member_hook).
 */
static int check_member(void *userdata, const char *name, uint8_t role, char *why, size_t cap)
{
        const struct dchat_conf *conf = S.conf;
        const struct conn *c = userdata;
        const struct node_conf *list = role == ROLE_SERVER ? conf->servers : conf->peers;
        unsigned n = role == ROLE_SERVER ? conf->n_servers : conf->n_peers;

        for (unsigned i = 0; i < n; i++)
                if (strcmp(list[i].name, name) == 0)
                        return 0;
        if (role == ROLE_SERVER && c && c->kind == CONN_TCP_OUT && c->expect[0] && strcmp(c->expect, name) == 0)
                return 0;
        if (S.member_hook && S.member_hook(S.member_hook_data, name, role) == 0)
                return 0;
        snprintf(why, cap, "'%s' is not a %s of this cluster", name, role_name(role));
        return -EPERM;
}

/* The host key the config lists for name (secure_key_fn). */
static bool listed_key(void *userdata, const char *name, uint8_t pk[SECURE_PK_BYTES])
{
        const struct node_conf *n = conf_node(S.conf, name);

        (void) userdata;
        if (!n || !n->has_key)
                return false;
        memcpy(pk, n->key, SECURE_PK_BYTES);
        return true;
}

/*
 * Would the open link c be taken now, under the config and keys in force
 * (after a reload)?  The same rule as the handshake's (secure.c,
 * check_proof): a member whose key is listed must have proven exactly that
 * key; anyone else must have got in by the cluster key, and we must still
 * hold it.  Returns false with the reason in why.
 */
static bool link_still_ok(struct conn *c, char *why, size_t cap)
{
        const char *peer = secure_peer_name(c->sec);
        uint8_t want[SECURE_PK_BYTES], have[SECURE_PK_BYTES];
        char wtext[SECURE_PK_TEXT], htext[SECURE_PK_TEXT];
        bool presented = secure_peer_key(c->sec, have);

        if (check_member(c, peer, secure_peer_role(c->sec), why, cap) < 0)
                return false;
        if (presented)
                secure_pk_text(have, htext);
        if (listed_key(NULL, peer, want)) {
                if (!presented) {
                        snprintf(why, cap, "%s's host key is listed now (%s), and this link was opened without it",
                                 peer, secure_pk_text(want, wtext));
                        return false;
                }
                if (sodium_memcmp(want, have, sizeof want) != 0) {
                        snprintf(why, cap, "%s proved host key %s, but the key listed for it now is %s", peer, htext,
                                 secure_pk_text(want, wtext));
                        return false;
                }
                return true;
        }
        if (!secure_used_cluster_key(c->sec)) {
                snprintf(why, cap, "no host key is listed for %s any more (it proved %s), and it did not "
                         "prove the cluster key", peer, presented ? htext : "none");
                return false;
        }
        if (!S.have_key) {
                snprintf(why, cap, "%s got in by the cluster key, which this host no longer holds%s%s", peer,
                         presented ? "; its host key is not listed: " : "", presented ? htext : "");
                return false;
        }
        return true;
}

void net_recheck_links(void)
{
        char why[256];
        bool again = true;

        /* a close may close or open other links (closed ops): start over after each */
        while (again) {
                again = false;
                for (struct conn *c = S.links; c; c = c->lnext) {
                        if (c->dead || !secure_is_open(c->sec) || link_still_ok(c, why, sizeof why))
                                continue;
                        auth_failed(c, "after the reload: %s", why);
                        conn_close(c, -EPERM);
                        again = true;
                        break;
                }
        }
}

void net_set_member_hook(int (*hook)(void *userdata, const char *name, uint8_t role), void *userdata)
{
        S.member_hook = hook;
        S.member_hook_data = userdata;
}

void net_boot_id(const struct dchat_conf *c, uint8_t id[DCHAT_GROUP_ID_BYTES])
{
        group_boot_id(c, S.conf && !S.plaintext ? S.key : NULL, id);
}

static struct conn *conn_create(sd_event *e, int fd, bool connecting, const struct conn_ops *ops, void *userdata,
                                const char *label, enum conn_kind kind, const char *expect)
{
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;

        if (kind != CONN_LOCAL && getpeername(fd, (struct sockaddr *) &sa, &salen) < 0)
                sa.ss_family = AF_UNSPEC;
        if (S.conf)
                S.event = e;
        if (kind == CONN_TCP_IN && S.conf && !admit((struct sockaddr *) &sa, label ? label : "?"))
                return NULL;
        struct conn *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->fd = fd;
        c->ops = ops;
        c->userdata = userdata;
        c->connecting = connecting;
        c->kind = kind;
        c->last_io = now_usec();
        strlcpy(c->label, label ? label : "?", sizeof c->label);
        if (expect)
                strlcpy(c->expect, expect, sizeof c->expect);
        if (kind == CONN_TCP_IN)
                S.n_in++;
        if (sd_event_add_io(e, &c->io, fd, EPOLLIN | (connecting ? EPOLLOUT : 0), conn_io, c) < 0)
                goto fail;
        (void) sd_event_source_set_description(c->io, c->label);
        if (kind == CONN_LOCAL || !S.conf)
                return c;

        if (sa.ss_family != AF_UNSPEC)
                sockaddr_format((struct sockaddr *) &sa, salen, c->addr, sizeof c->addr);
        else
                strlcpy(c->addr, "?", sizeof c->addr);
        ip_of((struct sockaddr *) &sa, &c->ip);
        c->created = now_usec();
        tcp_tune(fd);
        if (!S.plaintext) {
                const struct dchat_conf *conf = S.conf;
                struct secure_params sp = {
                        .key = S.have_key ? S.key : NULL, .host_sk = S.have_sk ? S.sk : NULL,
                        .initiator = kind == CONN_TCP_OUT, .self = conf->node, .role = conf->role,
                        .expect = kind == CONN_TCP_OUT ? expect : NULL, .check = check_member,
                        .key_of = listed_key, .userdata = c,
                };
                if (secure_new(&sp, &c->sec) < 0)
                        goto fail;
                c->lnext = S.links;
                if (S.links)
                        S.links->lprev = c;
                S.links = c;
        }
        c->pending = true;
        if (kind == CONN_TCP_IN) {
                c->share = member_share(&c->ip);
                LIST_PREPEND(S.pending_in, c);
                S.n_pending_in++;
        }
        /* inbound, the first handshake message is due soon; then the rest of the handshake */
        if (sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC,
                              c->created + (kind == CONN_TCP_IN ? first_message_usec() : S.conf->handshake_timeout_usec),
                              0, on_handshake_timer, c) < 0)
                goto fail;
        return c;
fail:
        c->fd = -1;     /* the caller still owns fd */
        conn_free(c);
        return NULL;
}

struct conn *conn_new(sd_event *e, int fd, bool connecting, const struct conn_ops *ops, void *userdata,
                      const char *label)
{
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        enum conn_kind kind = CONN_LOCAL;

        if (getsockname(fd, (struct sockaddr *) &sa, &salen) == 0 &&
            (sa.ss_family == AF_INET || sa.ss_family == AF_INET6))
                kind = connecting ? CONN_TCP_OUT : CONN_TCP_IN;
        return conn_create(e, fd, connecting, ops, userdata, label, kind, NULL);
}

int conn_connect(sd_event *e, const struct sockaddr *sa, socklen_t salen, const struct conn_ops *ops,
                 void *userdata, const char *label, const char *node, struct conn **ret)
{
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
                int r = -errno;
                close(fd);
                return r;
        }
        struct conn *c = conn_create(e, fd, true, ops, userdata, label, CONN_TCP_OUT, node);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        sockaddr_format(sa, salen, c->addr, sizeof c->addr);
        *ret = c;
        return 0;
}

void net_set_security(const struct dchat_conf *conf, const uint8_t *key, const uint8_t *host_sk)
{
        S.conf = conf;
        S.plaintext = !key && !host_sk;
        S.have_key = key;
        S.have_sk = host_sk;
        if (key)
                memcpy(S.key, key, sizeof S.key);
        else
                sodium_memzero(S.key, sizeof S.key);
        if (host_sk)
                memcpy(S.sk, host_sk, sizeof S.sk);
        else
                sodium_memzero(S.sk, sizeof S.sk);
}

int conn_send(struct conn *c, const struct dchat_msg *msg)
{
        if (!c || c->dead)
                return -ENOTCONN;
        int r;
        if (c->sec) {
                /* nothing leaves a secure link in the clear */
                if (!secure_is_open(c->sec))
                        return -ENOTCONN;
                wbuf_reset(&scratch);
                r = proto_encode(&scratch, msg);
                if (r >= 0)
                        r = secure_seal(c->sec, scratch.data, scratch.len, &c->out);
        } else
                r = proto_encode(&c->out, msg);
        if (r < 0)
                return r;
        if (debug_frame(msg->type))
                log_debug("%s: sent %s tag %u", c->label, proto_type_name(msg->type), msg->tag);
        if (msg->type == MSG_POSTED || msg->type == MSG_ERROR || msg->type == MSG_VIEW_END ||
            msg->type == MSG_STATUS_REPLY || msg->type == MSG_VERIFY_REPLY || msg->type == MSG_DIGEST_REPLY ||
            msg->type == MSG_MEMBER_REPLY || msg->type == MSG_TRACE_END || msg->type == MSG_RELOAD_REPLY)
                c->answers++;
        if (!c->connecting && c->busy == 0 && !c->send_error && !c->corked) {
                /* Try at once: most frames go out without an extra wakeup.
                 * A failure is reported from conn_io, so that conn_send never
                 * runs the owner's callbacks under its caller's feet. */
                r = conn_flush(c);
                if (r < 0)
                        c->send_error = r;
        }
        if (c->out.len >= LOW_WATER)
                c->was_high = true;
        conn_update_events(c);
        return 0;
}

void conn_cork(struct conn *c)
{
        if (c && !c->dead)
                c->corked++;
}

void conn_uncork(struct conn *c)
{
        if (!c || c->dead || c->corked == 0 || --c->corked > 0)
                return;
        if (c->out.len > 0 && !c->connecting && c->busy == 0 && !c->send_error) {
                int r = conn_flush(c);
                if (r < 0)
                        c->send_error = r;
        }
        conn_update_events(c);
}

void conn_send_error(struct conn *c, uint32_t tag, enum dchat_err code, const char *fmt, ...)
{
        char text[DCHAT_ERROR_MAX];
        va_list ap;

        if (!c)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_ERROR, .tag = tag,
                                                  .error = { code, { text, (uint16_t) strlen(text) } } });
}

void fd_send_error(int fd, uint32_t tag, enum dchat_err code, const char *fmt, ...)
{
        char text[DCHAT_ERROR_MAX];
        struct wbuf b = {0};
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        if (proto_encode(&b, &(struct dchat_msg) { .type = MSG_ERROR, .tag = tag,
                                                   .error = { code, { text, (uint16_t) strlen(text) } } }) == 0)
                (void) !send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        wbuf_free(&b);
}

void conn_set_max_frame(struct conn *c, size_t max)
{
        c->max_frame = max;
}

int conn_accept(int listen_fd, char *label, size_t cap)
{
        struct sockaddr_storage sa;
        socklen_t salen = sizeof sa;
        char addr[80];

        int fd = accept4(listen_fd, (struct sockaddr *) &sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        log_warning("accept failed: %m");
                return -errno;
        }
        if (sa.ss_family == AF_UNIX)
                snprintf(label, cap, "local connection");
        else {
                /* small frames answer small frames: never wait for an ACK (Nagle) */
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                sockaddr_format((struct sockaddr *) &sa, salen, addr, sizeof addr);
                snprintf(label, cap, "connection from %s", addr);
        }
        return fd;
}

void conn_shutdown(struct conn *c)
{
        if (!c || c->dead)
                return;
        c->closing = true;
        if (c->busy == 0 && c->out.len == 0) {
                conn_close(c, -ECONNRESET);
                return;
        }
        conn_update_events(c);
}

void conn_set_linger(struct conn *c)
{
        c->linger = true;
}

size_t conn_pending(const struct conn *c)
{
        return c ? c->out.len : 0;
}

void *conn_userdata(const struct conn *c)
{
        return c->userdata;
}

const char *conn_label(const struct conn *c)
{
        return c->label;
}

int conn_fd(const struct conn *c)
{
        return c->fd;
}

void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *userdata)
{
        c->ops = ops;
        c->userdata = userdata;
}

void conn_set_label(struct conn *c, const char *label)
{
        strlcpy(c->label, label, sizeof c->label);
}

/* --- addresses and listeners ------------------------------------------------ */

int sockaddr_parse(const char *s, struct sockaddr_storage *sa, socklen_t *len)
{
        char host[128];
        const char *port;

        if (s[0] == '[') {
                const char *end = strchr(s, ']');
                if (!end || end[1] != ':' || (size_t) (end - s - 1) >= sizeof host)
                        return -EINVAL;
                memcpy(host, s + 1, (size_t) (end - s - 1));
                host[end - s - 1] = '\0';
                port = end + 2;
        } else {
                const char *colon = strrchr(s, ':');
                if (!colon || (size_t) (colon - s) >= sizeof host || strchr(s, ':') != colon)
                        return -EINVAL;
                memcpy(host, s, (size_t) (colon - s));
                host[colon - s] = '\0';
                port = colon + 1;
        }
        if (!host[0] || !port[0])
                return -EINVAL;
        char *end;
        long p = strtol(port, &end, 10);
        if (*end || p < 1 || p > 65535)
                return -EINVAL;

        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *ai = NULL;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
                return -EADDRNOTAVAIL;
        memcpy(sa, ai->ai_addr, ai->ai_addrlen);
        *len = ai->ai_addrlen;
        freeaddrinfo(ai);
        return 0;
}

void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap)
{
        char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
        (void) getnameinfo(sa, len, host, sizeof host, port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(buf, cap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

int listen_tcp(const struct sockaddr *sa, socklen_t len)
{
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        int one = 1;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, sa, len) < 0 || listen(fd, SOMAXCONN) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int listen_unix(const char *path, mode_t mode)
{
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof un.sun_path)
                return -ENAMETOOLONG;
        strcpy(un.sun_path, path);

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* A stale socket file from a crash would make bind fail; a live one
         * means another daemon serves it. */
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe >= 0 && connect(probe, (struct sockaddr *) &un, sizeof un) == 0) {
                        close(probe);
                        close(fd);
                        return -EADDRINUSE;
                }
                if (probe >= 0)
                        close(probe);
                (void) unlink(path);
        }
        mode_t old = umask(0777 & ~mode);
        int r = bind(fd, (struct sockaddr *) &un, sizeof un);
        umask(old);
        if (r < 0 || listen(fd, SOMAXCONN) < 0 || chmod(path, mode) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}
