/* SPDX-License-Identifier: MIT */
/*
 * server.c — the server role: keeps the chat log, takes appends from peers
 * that hold the critical section, serves views to anyone; with
 * dme_algorithm = "central", while it leads, it is the coordinator that
 * grants the critical section (cm.h).
 *
 * Appends that arrive in one turn of the event loop, from any number of
 * connections, are stored with one write and one fdatasync (group commit):
 * they are collected in a batch that a defer source flushes once the
 * loop's pending I/O is handled.  Nobody is told "stored" before the sync.
 *
 * Followers (FOLLOW: a peer's one subscription, or a dchatctl on this
 * host's control socket) are fed from the log itself: each has the next
 * seq it needs, and after every synced batch the server sends it ENTRY
 * frames from there on, until its output buffer holds FOLLOW_HIGH bytes;
 * it goes on when that drains.  So a slow follower costs disk reads, never
 * memory, and can get neither a gap nor a repeat.
 *
 * Damage.  Records the log quarantined at open go to views and followers
 * as ENTRY_DAMAGED frames where their entries would be.  A record found
 * damaged by a read while running (bit rot) fails that read, is logged
 * once (log-damaged), and from then on every append is refused with a
 * message that says why and what to do: the next start quarantines it.
 *
 * Silence.  The server sends every peer that said HELLO a HEARTBEAT each
 * heartbeat_ms, and drops a peer's connection (and its follow) once
 * nothing came on it for dead_after_ms: a peer frozen, or cut off by a
 * path that swallows everything, would otherwise keep its link, its
 * subscription and a growing output buffer for ever.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cm.h"
#include "dchatd.h"

#define VIEW_PAGE_MAX   512
#define BATCH_CAP       1024
#define SCONN_MAX       (DCHAT_PEERS_MAX * 4)
#define FOLLOW_HIGH     (256 * 1024)    /* bytes queued to one follower before waiting for it */
#define VIEW_PAGE_BYTES (256 * 1024)    /* a page ends early once this much waits to be sent */

struct sconn {
        struct server *s;
        struct conn *c;
        char node[DCHAT_NAME_MAX + 1];  /* "" until HELLO */
        bool server;                    /* another server of the group (HELLO as a server) */
        bool query;                     /* a peer's query link (HELLO with incarnation 0, query.c) */
        bool outsider;                  /* ... in neither cluster.servers nor the group's configuration: GROUP only */
        bool group_ok;                  /* ... it said this group's id (GROUP): replication may come */
        int idx;                        /* the node's index in conf->peers, once known */
        uint64_t serial;                /* accepted after every connection with a smaller one */
        uint64_t incarnation;           /* the life of the node that sent the HELLO (0: not said) */
        struct fd_link alive;           /* when it was last heard from */
        char why[64];                   /* why we dropped it, if we did */
        struct presence presence;       /* a peer's users, as its last PRESENCE said */
        uint64_t up_at;                 /* when its HELLO was answered */
        struct sconn *prev, *next;
};

struct sfollow {
        struct conn *c;
        uint32_t tag;
        uint64_t next_seq;      /* the next entry it needs */
        struct sfollow *prev, *next;
};

struct pending {
        struct sconn *from;     /* NULL once that connection is gone */
        uint32_t tag;
};

/* A view that waits for this server to apply what its reader saw already (VIEW min_seq). */
struct dview {
        struct dview *prev, *next;
        struct conn *to;
        struct dchat_msg req;
        uint64_t deadline;              /* CLOCK_MONOTONIC usec: then it is told this server is behind */
};
#define DVIEW_MAX       1024
#define DVIEW_WAIT      (2 * USEC_PER_SEC)

/* A write to the shared notes, as a peer asked it (the strings are copies). */
struct note_req {
        struct note_write w;
        char key[DCHAT_KEY_MAX + 1];
        char value[DCHAT_VALUE_MAX + 1];
        char node[DCHAT_NAME_MAX + 1];
};

/* A batch handed to the server group (replica_submit), until it is applied; or one note's write. */
struct gbatch {
        struct gbatch *prev, *next;
        struct note_req *note;          /* a note's write (n is 1), or NULL */
        unsigned n;
        struct pending pend[];
};

struct server {
        sd_event *event;
        const struct dchat_conf *conf;
        int listen_fd;
        sd_event_source *listen_src;
        sd_event_source *flush_src;
        struct chatlog *log;
        struct sconn *conns;
        unsigned n_conns;
        uint64_t accepted;              /* connections accepted so far: the serials */

        unsigned n;
        struct pending pend[BATCH_CAP];
        struct dchat_entry *entries;    /* BATCH_CAP */
        enum chatlog_result results[BATCH_CAP];
        struct dchat_entry scratch;     /* decode target and view buffer */
        struct dchat_counters stats;
        struct sfollow *follows;
        unsigned n_follows;
        sd_event_source *heartbeat_timer;
        struct dchat_entry follow_entry; /* read buffer for followers (scratch may hold an append) */
        struct ratelimit refused_rl;    /* append-refused lines */
        uint64_t incarnation[DCHAT_PEERS_MAX];  /* each peer's latest life seen in a HELLO (0: none yet) */
        uint64_t cluster_reported[DCHAT_PEERS_MAX];     /* its cluster digest we logged a config-mismatch for */
        struct wbuf cluster;            /* our CLUSTER message's members while it is sent */
        bool damage_logged;             /* log-damaged was logged */

        /* questions on the links: status and digests (query.c, verify.c) */
        struct dchat_status status;
        uint8_t digests[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES];

        /* a server group (conf->n_servers > 1) */
        struct replica *rep;
        struct members *members;        /* server add, server remove */
        struct ratelimit raft_refused_rl;       /* replication links refused for their group id */
        char leader_address[128];       /* a LEADER's address while it is sent */
        struct gbatch *gbatches;        /* submitted, not applied */
        struct dview *dviews;           /* views waiting for entries to be applied here */
        unsigned n_dviews;
        uint64_t pumped_seq;            /* followers were fed up to here */

        /* dme_algorithm = "central": the coordinator (cm.h), while this server leads (one server always) */
        struct cm_coord coord;
        bool coord_active;
        uint64_t coord_since;           /* CLOCK_MONOTONIC: when it began (settling ends dead_after_ms later) */
        uint64_t coord_gone_at[DCHAT_PEERS_MAX];        /* when each peer's link closed */
        uint64_t coord_serial[DCHAT_PEERS_MAX];         /* each peer's newest main link (its serial) */

        /* the shared notes of one server (a group's are in its state machine: replica_notes) */
        struct notes notes;
        int notes_error;                /* the file could not be read: notes refused (notes_why) */
        char notes_why[512];

        /* presence: our local users (control.c), sent to the peers linked to us */
        struct presence local;
        struct wbuf presence_buf;
        void (*presence_hook)(void *userdata);
        void *presence_data;
};

static void presence_changed(struct server *s)
{
        if (s->presence_hook)
                s->presence_hook(s->presence_data);
}

static void send_presence(struct server *s, struct conn *c)
{
        struct who_node me = { .name = s->conf->node, .role = ROLE_SERVER, .state = NODE_UP };
        struct dchat_msg m;

        presence_msg(&s->local, &me, 0, &s->presence_buf, &m);
        (void) conn_send(c, &m);
}

/* A peer's main link (not a query link, not another server's). */
static bool peer_link(const struct sconn *sc)
{
        return sc->node[0] && !sc->server && !sc->query;
}

static void follow_pump(struct server *s, struct sfollow *f);
static void follow_drop(struct server *s, struct sfollow *f);
static void dviews_run(struct server *s, uint64_t now);

/* --- the central coordinator (dme_algorithm = "central") -------------------------------------------- */

static uint64_t now_monotonic(void);

static bool central(const struct server *s)
{
        return s->conf->dme_algorithm == DME_CENTRAL;
}

static struct sconn *peer_conn(struct server *s, unsigned idx)
{
        for (struct sconn *sc = s->conns; sc; sc = sc->next)
                if (peer_link(sc) && sc->idx == (int) idx)
                        return sc;
        return NULL;
}

static const char *peer_name(const struct server *s, unsigned idx)
{
        return idx < s->conf->n_peers ? s->conf->peers[idx].name : "?";
}

/* Carries out what the coordinator decided: GRANTs out, the steps logged. */
static void coord_run(struct server *s, const struct cm_actions *acts)
{
        for (unsigned i = 0; i < acts->n; i++) {
                const struct cm_action *a = &acts->a[i];
                const char *name = peer_name(s, a->peer);
                struct event_fields f = { .peer = name, .lamport = a->clock, .request_ts = a->ts };
                struct sconn *sc;

                switch (a->kind) {
                case CM_GOT_REQUEST:
                        break;          /* request-received was logged as the LOCK came */
                case CM_QUEUED:
                        if (s->coord.holder >= 0)
                                log_event(EV_REQUEST_QUEUED, &f, "LOCK of %s (request %llu) queued: %s holds the "
                                          "grant (%u waiting)", name, (unsigned long long) a->ts,
                                          peer_name(s, (unsigned) s->coord.holder), s->coord.qn);
                        else
                                log_event(EV_REQUEST_QUEUED, &f, "LOCK of %s (request %llu) queued: the "
                                          "coordinator waits for every peer to say where it stands (%u waiting)",
                                          name, (unsigned long long) a->ts, s->coord.qn);
                        break;
                case CM_GRANT:
                        sc = peer_conn(s, a->peer);
                        if (!sc) {
                                log_info("GRANT to %s for request %llu waits: its link is down (it asks again)",
                                         name, (unsigned long long) a->ts);
                                break;
                        }
                        s->stats.replies_sent++;
                        log_event(EV_REPLY_SENT, &f, "GRANT for request %llu sent to %s%s", (unsigned long long) a->ts,
                                  name, a->revoked ? " (after a grant taken back)" : "");
                        (void) conn_send(sc->c, &(struct dchat_msg) { .type = MSG_GRANT,
                                                                      .grant = { a->ts, a->clock, &s->coord.vc } });
                        break;
                case CM_GOT_RELEASE:
                        log_info("%s gave back the critical section of request %llu, or withdrew it", name,
                                 (unsigned long long) a->ts);
                        break;
                case CM_HELD:
                        log_info("%s holds the critical section under request %llu (said to this new coordinator)",
                                 name, (unsigned long long) a->ts);
                        break;
                case CM_CONFLICT:
                        log_warning("%s says it holds the critical section under request %llu, but %s was granted "
                                    "it: the fence decides between their appends", name, (unsigned long long) a->ts,
                                    s->coord.holder >= 0 ? peer_name(s, (unsigned) s->coord.holder) : "another");
                        break;
                case CM_REVOKED:
                        log_warning("the critical section granted to %s (request %llu) is taken back: it is dead or "
                                    "restarted; whatever it still appends is refused by the fence",
                                    name, (unsigned long long) a->ts);
                        break;
                case CM_OPEN:
                        log_info("coordinator: grants go (%u request(s) waiting)", s->coord.qn);
                        break;
                }
        }
}

/* This server coordinates from now on (it started, or leads the group): its queue rebuilt from the peers' word. */
static void coord_start(struct server *s)
{
        uint64_t lamport;
        uint32_t idx;
        char node[DCHAT_NAME_MAX + 1];

        chatlog_last_fence(s->log, &lamport, node, &idx);
        cm_coord_reset(&s->coord, lamport);
        s->coord_active = true;
        s->coord_since = now_monotonic();
        log_info("coordinator of the critical section (dme_algorithm \"central\"): waiting for every peer to say "
                 "where it stands, %llu ms at most", (unsigned long long) (s->conf->dead_after_usec / USEC_PER_MSEC));
}

static void coord_stop(struct server *s)
{
        if (!s->coord_active)
                return;
        s->coord_active = false;
        log_info("no longer the coordinator of the critical section: this server does not lead");
}

/*
 * A grant that no LOCK brings (at a timer, at a HELLO) must carry a clock
 * above the log's last fence too, as on_lock's do: a peer the coordinator
 * did not hear from may have stored since (a section held across a
 * restart of this server), and an entry fenced below it is refused.
 */
static void coord_observe_log(struct server *s)
{
        uint64_t lamport;

        chatlog_last_fence(s->log, &lamport, NULL, NULL);
        cm_coord_observe(&s->coord, lamport);
}

/* Each heartbeat: a holder whose link stayed down dead_after_ms loses its grant; settling ends. */
static void coord_tick(struct server *s, uint64_t now)
{
        struct cm_actions acts;

        if (!s->coord_active)
                return;
        coord_observe_log(s);
        if (s->coord.settling && now - s->coord_since >= s->conf->dead_after_usec) {
                cm_coord_open(&s->coord, &acts);
                coord_run(s, &acts);
        }
        if (s->coord.holder >= 0 && s->coord.holder_gone &&
            now - s->coord_gone_at[s->coord.holder] >= s->conf->dead_after_usec) {
                cm_coord_dead(&s->coord, (unsigned) s->coord.holder, &acts);
                coord_run(s, &acts);
        }
}

/*
 * A main link of the peer accepted before its newest one: the peer let it
 * go (it gave up on it, or crashed) and links anew, but its HELLO, its
 * LOCKs and its end may still come, late, after the newer link's.  What it
 * says is old (a request since granted or withdrawn: taken in again, it
 * would end the section the peer holds now), and its end is not the peer's
 * going (it would drop the request the peer made on its newer link, or
 * take back the grant of a holder still linked).
 */
static bool coord_replaced(const struct server *s, const struct sconn *sc)
{
        return sc->serial < s->coord_serial[sc->idx];
}

static int on_lock(struct server *s, struct sconn *sc, const struct dchat_msg *m)
{
        struct cm_actions acts;
        uint64_t lamport;
        uint32_t fidx;
        char node[DCHAT_NAME_MAX + 1];

        /* a peer's own link only: a server's or a query link's LOCK would be taken for peer 0's */
        if (!central(s) || !peer_link(sc)) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: LOCK, but %s; closing", conn_label(sc->c),
                          sc->query ? "on a query link" : sc->server ? "on a server's link" :
                          !sc->node[0] ? "before HELLO" : "this server's dme_algorithm is not \"central\" "
                          "(every node needs the same: see config-mismatch)");
                return -EPROTO;
        }
        chatlog_last_fence(s->log, &lamport, node, &fidx);
        if (m->lock.clock > DCHAT_CLOCK_MAX || m->lock.ts > DCHAT_CLOCK_MAX ||
            m->lock.clock > lamport + DCHAT_CLOCK_JUMP_MAX) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: LOCK with clock %llu (request %llu), beyond the bounds (last fence %llu, at most %llu "
                          "ahead); closing", conn_label(sc->c), (unsigned long long) m->lock.clock,
                          (unsigned long long) m->lock.ts, (unsigned long long) lamport,
                          (unsigned long long) DCHAT_CLOCK_JUMP_MAX);
                return -ERANGE;
        }
        if (!s->coord_active) {
                /* a follower of the group: the peer goes to the leader, and says it all again there */
                log_debug("%s: LOCK ignored: this server does not lead", conn_label(sc->c));
                return 0;
        }
        if (coord_replaced(s, sc)) {
                log_debug("%s: LOCK ignored: the peer has a newer link", conn_label(sc->c));
                return 0;
        }
        cm_coord_observe(&s->coord, lamport);   /* grants carry clocks above every stored fence */
        const struct vclock *vc = m->lock.vc && m->lock.vc->n == s->conf->n_peers ? m->lock.vc : NULL;
        unsigned idx = (unsigned) sc->idx;
        if (m->lock.op == LOCK_RELEASE) {
                cm_coord_release(&s->coord, idx, m->lock.ts, m->lock.clock, vc, &acts);
        } else {
                if (m->lock.op == LOCK_REQUEST) {
                        s->stats.requests_received++;
                        log_event(EV_REQUEST_RECEIVED, &(struct event_fields) { .peer = sc->node,
                                  .lamport = s->coord.clock, .request_ts = m->lock.ts },
                                  "REQUEST(%llu) received from %s", (unsigned long long) m->lock.ts, sc->node);
                }
                cm_coord_request(&s->coord, idx, m->lock.ts, m->lock.clock, m->lock.op == LOCK_HELD, vc, &acts);
        }
        coord_run(s, &acts);
        return 0;
}

/* A peer's main link closed: its queued request goes; a grant it holds waits dead_after_ms for it. */
static void coord_link_gone(struct server *s, struct sconn *sc)
{
        struct cm_actions acts;

        if (!s->coord_active || !peer_link(sc) || sc->idx < 0 || (unsigned) sc->idx >= s->conf->n_peers ||
            coord_replaced(s, sc))
                return;
        s->coord_gone_at[sc->idx] = now_monotonic();
        cm_coord_gone(&s->coord, (unsigned) sc->idx, &acts);
        coord_run(s, &acts);
}

/* A peer came back as a new life: what its old one held is void. */
static void coord_restarted(struct server *s, unsigned idx)
{
        struct cm_actions acts;

        if (!s->coord_active)
                return;
        coord_observe_log(s);
        cm_coord_dead(&s->coord, idx, &acts);
        coord_run(s, &acts);
}

/* A read found the log damaged where nothing was known to be: logged once, not per request. */
static void note_damage(struct server *s)
{
        uint64_t seq = chatlog_damaged_at(s->log);

        if (!seq || s->damage_logged)
                return;
        s->damage_logged = true;
        log_event(EV_LOG_DAMAGED, &(struct event_fields) { .seq = seq },
                  "chat log %s/chat.log is damaged at seq %llu (found by a read): no post is stored until dchatd "
                  "is restarted, which %s (see dchatd(8))", s->conf->state_directory, (unsigned long long) seq,
                  s->rep ? "cuts the log there and gets the rest from the server group"
                         : "quarantines the damaged record and keeps everything after it");
}

/* What a client is told while the log is known damaged. */
static const char *damage_text(struct server *s, char *buf, size_t cap)
{
        snprintf(buf, cap, "the server's chat log is damaged at seq %llu: no post is stored until dchatd is "
                 "restarted on the server, which %s it (see dchatd(8))",
                 (unsigned long long) chatlog_damaged_at(s->log), s->rep ? "repairs" : "quarantines");
        return buf;
}

/* An ENTRY_DAMAGED for seqs first..last (what chatlog_next said, cut at upto). */
static int send_damaged(struct conn *to, uint32_t tag, uint64_t first, uint64_t last, uint64_t upto, const char *why)
{
        return conn_send(to, &(struct dchat_msg) {
                .type = MSG_ENTRY_DAMAGED, .tag = tag,
                .damaged = { first, last < upto ? last : upto, { why, (uint16_t) strlen(why) } } });
}

static uint64_t now_monotonic(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* The answer to entry e of a batch just stored (or not), result res: to its connection, if still there. */
static void answer_append(struct server *s, const struct dchat_entry *e, enum chatlog_result res,
                          const struct pending *p, int r)
{
        struct conn *to = p->from ? p->from->c : NULL;        /* NULL: it went away */
        uint32_t tag = p->tag;
        struct event_fields f = { .peer = e->node, .lamport = e->lamport, .fence = e->lamport, .fence_idx = e->fence_idx,
                                  .seq = e->seq };
        unsigned long long pid = (unsigned long long) e->post_id;
        char text[DCHAT_ERROR_MAX];

        switch (res) {
        case CHATLOG_STORED:
                s->stats.posts++;
                log_event(EV_POST_STORED, &f, "stored post %s#%llu as seq %llu (fence %llu/%s/%u)", e->node, pid,
                          (unsigned long long) e->seq, (unsigned long long) e->lamport, e->node, e->fence_idx);
                /* fall through */
        case CHATLOG_DUPLICATE:
                if (res == CHATLOG_DUPLICATE)
                        log_info("post %s#%llu was already stored as seq %llu; acknowledged again", e->node, pid,
                                 (unsigned long long) e->seq);
                if (to)
                        (void) conn_send(to, &(struct dchat_msg) {
                                .type = MSG_APPENDED, .tag = tag,
                                .appended = { e->seq, e->lamport, e->fence_idx, res == CHATLOG_DUPLICATE } });
                return;
        case CHATLOG_FENCED: {
                uint64_t ll;
                uint32_t li;
                char ln[DCHAT_NAME_MAX + 1];
                chatlog_last_fence(s->log, &ll, ln, &li);
                f.seq = chatlog_last_seq(s->log);       /* the entry whose fence it is not above */
                snprintf(text, sizeof text, "append refused: fence %llu/%s/%u is not greater than the last stored %llu/%s/%u",
                         (unsigned long long) e->lamport, e->node, e->fence_idx, (unsigned long long) ll, ln, li);
                /* one refused peer retries: not one line per retry (they back off too) */
                if (ratelimit_pass(&s->refused_rl, now_monotonic()))
                        log_event(EV_APPEND_REFUSED, &f, "refused append of post %s#%llu: %s%s", e->node, pid,
                                  text + strlen("append refused: "), ratelimit_suppressed(&s->refused_rl));
                if (to)
                        /* the detail lets the peer move its clock past our last fence */
                        (void) conn_send(to, &(struct dchat_msg) {
                                .type = MSG_ERROR, .tag = tag,
                                .error = { ERR_FENCED, { text, (uint16_t) strlen(text) }, ll } });
                return;
        }
        case CHATLOG_BOUNDS:
                log_event(EV_PROTOCOL_ERROR, &f, "refused post %s#%llu: its fence %llu is beyond the bounds (at most "
                          "%llu above the last stored fence, never above %llu)", e->node, pid,
                          (unsigned long long) e->lamport, (unsigned long long) DCHAT_CLOCK_JUMP_MAX,
                          (unsigned long long) DCHAT_CLOCK_MAX);
                conn_send_error(to, tag, ERR_INVALID, "the server refused the post: its fence %llu is beyond the "
                                "bounds; it was not stored", (unsigned long long) e->lamport);
                return;
        case CHATLOG_INVALID:
                log_warning("refused an invalid entry from %s", e->node);
                conn_send_error(to, tag, ERR_INVALID, "the server refused the post as invalid; it was not stored");
                return;
        case CHATLOG_STALE:
                log_info("post %s#%llu is older than the last one stored for %s and is not in the log: a late copy "
                         "from an earlier connection or life of %s; not stored", e->node, pid, e->node, e->node);
                conn_send_error(to, tag, ERR_STALE, "post %s#%llu is a late copy from an earlier connection or life "
                                "of %s; it was not stored", e->node, pid, e->node);
                return;
        case CHATLOG_CONFLICT:
                log_event(EV_PROTOCOL_ERROR, &f, "refused post %s#%llu: that post id is stored already, for "
                          "another post", e->node, pid);
                conn_send_error(to, tag, ERR_CONFLICT, "post id %s#%llu names another post in the log; this one "
                                "was not stored", e->node, pid);
                return;
        case CHATLOG_UNKNOWN:
                log_warning("post %s#%llu: cannot tell whether it is stored already (archived or damaged part, or "
                            "a read error); not stored again", e->node, pid);
                conn_send_error(to, tag, ERR_STORAGE, "the server cannot tell whether post %s#%llu was stored "
                                "before (it may be in an archived or damaged part of the log, or its log could not "
                                "be read); the post may or may not have been stored", e->node, pid);
                return;
        case CHATLOG_FAILED:
                if (r == -EUCLEAN) {
                        /* nothing of the batch was written: the log is known damaged */
                        log_event(EV_POST_FAILED, &f, "append of post %s#%llu refused: the chat log is damaged at "
                                  "seq %llu", e->node, pid, (unsigned long long) chatlog_damaged_at(s->log));
                        conn_send_error(to, tag, ERR_STORAGE, "%s", damage_text(s, text, sizeof text));
                        return;
                }
                log_event(EV_POST_FAILED, &f, "append of post %s#%llu failed: storage error: %s", e->node, pid,
                          strerror(r < 0 ? -r : EIO));
                conn_send_error(to, tag, ERR_STORAGE, "the server could not store the post: %s; it was not stored",
                                strerror(r < 0 ? -r : EIO));
                return;
        }
}

/* New entries are on disk: push them to every follower. */
static void pump_followers(struct server *s)
{
        for (struct sfollow *f = s->follows, *nx; f; f = nx) {
                nx = f->next;
                follow_pump(s, f);
        }
        s->pumped_seq = chatlog_last_seq(s->log);
}

static void cork_all(struct server *s, bool on)
{
        for (struct sconn *sc = s->conns; sc; sc = sc->next) {
                if (on)
                        conn_cork(sc->c);
                else
                        conn_uncork(sc->c);
        }
}

/* The group's leader, for a client that asked the wrong server: "NAME (HOST:PORT)" or why none. */
static const char *leader_text(struct server *s, char *buf, size_t cap)
{
        char name[DCHAT_NAME_MAX + 1];

        if (!s->rep || !replica_leader(s->rep, name, NULL))
                snprintf(buf, cap, "the group has no leader just now (an election is on)");
        else
                snprintf(buf, cap, "the leader is %s", name);
        return buf;
}

/* Posts this server cannot take for the group: each poster is told who leads (it sends them there). */
static void refuse_not_leader(struct server *s, const struct pending *pend, unsigned n, const char *what)
{
        char lead[DCHAT_NAME_MAX + 64];

        leader_text(s, lead, sizeof lead);
        for (unsigned i = 0; i < n; i++)
                conn_send_error(pend[i].from ? pend[i].from->c : NULL, pend[i].tag, ERR_NOT_LEADER,
                                "%s: %s; %s", s->conf->node, what, lead);
}

/* A group: the batch goes to Raft; the answers come once it is committed and applied (group_applied). */
static void flush_group(struct server *s, unsigned n)
{
        struct gbatch *gb;
        int r;

        if (!replica_is_leader(s->rep)) {
                refuse_not_leader(s, s->pend, n, "this server does not lead the group, nothing was stored");
                return;
        }
        if (replica_busy(s->rep)) {
                /* its state machine could not answer them (replica.c hands the lead on) */
                refuse_not_leader(s, s->pend, n, "this server is catching up with the group (it hands the lead to "
                                  "another server), nothing was stored");
                return;
        }
        gb = calloc(1, sizeof *gb + n * sizeof gb->pend[0]);        /* (note NULL: a batch of posts) */
        if (!gb) {
                for (unsigned i = 0; i < n; i++)
                        conn_send_error(s->pend[i].from ? s->pend[i].from->c : NULL, s->pend[i].tag, ERR_INTERNAL,
                                        "the server is out of memory; the post was not stored");
                return;
        }
        gb->n = n;
        memcpy(gb->pend, s->pend, n * sizeof gb->pend[0]);
        r = replica_submit(s->rep, s->entries, n, gb);
        if (r < 0) {
                refuse_not_leader(s, gb->pend, n, "the group did not take the post, nothing was stored");
                free(gb);
                return;
        }
        LIST_PREPEND(s->gbatches, gb);
        s->stats.batches++;
}

static void flush_batch(struct server *s)
{
        unsigned n = s->n;

        if (n == 0)
                return;
        s->n = 0;
        /* the answers to one connection go out in one write */
        cork_all(s, true);
        if (s->rep) {
                flush_group(s, n);
        } else {
                int r = chatlog_append(s->log, s->entries, n, s->results);
                s->stats.batches++;
                for (unsigned i = 0; i < n; i++)
                        answer_append(s, &s->entries[i], s->results[i], &s->pend[i], r);
                /* looking a copy up (chatlog_append) may have found the log damaged */
                note_damage(s);
                pump_followers(s);
        }
        cork_all(s, false);
}

/* --- the server group ------------------------------------------------------------------------- */

static void note_answer(struct server *s, const struct pending *p, const struct note_write *w,
                        const struct note_outcome *o);

static void gbatch_free(struct gbatch *gb)
{
        free(gb->note);
        free(gb);
}

static void group_applied(void *userdata, void *cookie, const struct fsm_result *res, int status)
{
        struct server *s = userdata;
        struct gbatch *gb = cookie;

        LIST_REMOVE(s->gbatches, gb);
        if (gb->note) {
                if (status != 0 || !res)
                        refuse_not_leader(s, gb->pend, 1, "this server lost the lead before the note's write was "
                                          "committed (it may or may not be written; it is sent again)");
                else if (res->deferred || !res->note)
                        refuse_not_leader(s, gb->pend, 1, "this server cannot apply the group's entries just now "
                                          "(the write is committed and will be applied once; it is sent again)");
                else
                        note_answer(s, &gb->pend[0], &gb->note->w, &res->note_out);
                gbatch_free(gb);
                return;
        }
        cork_all(s, true);
        if (status != 0 || !res) {
                /* leadership lost before the batch was committed: the new leader may have it or not; the
                 * peers send the posts again there, where their post ids make them land once */
                refuse_not_leader(s, gb->pend, gb->n, "this server lost the lead before the post was committed "
                                  "(it may or may not be stored; it is sent again)");
        } else if (res->deferred) {
                /* committed, but this server's state machine applies it later (fsm.c): the posts go
                 * again, to the leader this one hands over to, and land once by their post ids */
                refuse_not_leader(s, gb->pend, gb->n, "this server cannot apply the group's entries just now "
                                  "(the post is committed and will be stored once; it is sent again)");
        } else {
                for (unsigned i = 0; i < gb->n && i < res->n; i++)
                        answer_append(s, &res->entries[i], res->results[i], &gb->pend[i], res->error);
                note_damage(s);
        }
        pump_followers(s);
        cork_all(s, false);
        gbatch_free(gb);
}

/* Tell a peer who leads the group (after its HELLO_ACK, and at every change). */
static void send_leader(struct server *s, struct sconn *sc)
{
        char name[DCHAT_NAME_MAX + 1] = "";
        const char *address = "";
        uint64_t term = 0;

        if (!s->rep) {
                strlcpy(name, s->conf->node, sizeof name);
                address = s->conf->servers[s->conf->self].address;
        } else if (replica_leader(s->rep, name, &term)) {
                for (unsigned i = 0; i < s->conf->n_servers; i++)
                        if (!strcmp(s->conf->servers[i].name, name))
                                address = s->conf->servers[i].address;
                if (!address[0]) {
                        /* added at runtime, not in this host's file: the group's configuration has it */
                        replica_address_of(s->rep, name, s->leader_address, sizeof s->leader_address);
                        address = s->leader_address;
                }
        }
        (void) conn_send(sc->c, &(struct dchat_msg) { .type = MSG_LEADER,
                .leader = { term, { name, (uint16_t) strlen(name) }, { address, (uint16_t) strlen(address) } } });
}

static void group_leader_changed(void *userdata, bool is_leader, const char *leader, uint64_t term)
{
        struct server *s = userdata;
        (void) leader;
        (void) term;
        if (central(s) && is_leader && !s->coord_active)
                coord_start(s);         /* before the LEADERs go: the peers' word comes after them */
        else if (!is_leader)
                coord_stop(s);
        for (struct sconn *sc = s->conns; sc; sc = sc->next)
                if (sc->node[0] && !sc->server)
                        send_leader(s, sc);
        members_leader_changed(s->members, is_leader);
}

/*
 * This server was removed from the group (or takes no part): it serves
 * nothing more.  Its peers go elsewhere: to the leader the others named,
 * if it knows one (LEADER), else to the next server in their list.
 */
static void group_phase_changed(void *userdata, enum replica_phase phase)
{
        struct server *s = userdata;

        if (phase != REP_REMOVED && phase != REP_REFUSED)
                return;
        for (struct sconn *sc = s->conns, *nx; sc; sc = nx) {
                nx = sc->next;
                if (sc->server || !sc->node[0])
                        continue;
                conn_send_error(sc->c, 0, ERR_UNAVAILABLE, "the server %s %s: it serves nothing", s->conf->node,
                                phase == REP_REMOVED ? "was removed from the server group"
                                                     : "takes no part in the server group");
                conn_shutdown(sc->c);
        }
        while (s->follows) {
                conn_send_error(s->follows->c, s->follows->tag, ERR_UNAVAILABLE, "the server %s %s", s->conf->node,
                                phase == REP_REMOVED ? "was removed from the server group"
                                                     : "takes no part in the server group");
                follow_drop(s, s->follows);
        }
}

/* Serves nothing (removed from the group, or out of it): the error for whoever asks, else NULL. */
static const char *out_of_group(struct server *s)
{
        if (!s->rep)
                return NULL;
        switch (replica_phase(s->rep)) {
        case REP_REMOVED:
                return "was removed from the server group";
        case REP_REFUSED:
                return "takes no part in the server group (see its journal)";
        default:
                return NULL;
        }
}

/* Every turn of the group's loop: what a follower applied goes to its followers too. */
static void group_tick(void *userdata)
{
        struct server *s = userdata;

        if (chatlog_last_seq(s->log) != s->pumped_seq) {
                cork_all(s, true);
                pump_followers(s);
                dviews_run(s, now_monotonic());
                cork_all(s, false);
        }
}

static const struct replica_ops group_ops = {
        .applied = group_applied,
        .leader_changed = group_leader_changed,
        .tick = group_tick,
        .phase_changed = group_phase_changed,
};

static void checkpoint(struct server *s)
{
        int r = chatlog_checkpoint(s->log);
        if (r < 0)
                log_warning("cannot write the checkpoint %s/chat.log.idx: %s (the next start reads the whole log)",
                            s->conf->state_directory, strerror(-r));
        else if (s->conf->debug)
                log_debug("checkpoint %s/chat.log.idx written at seq %llu", s->conf->state_directory,
                          (unsigned long long) chatlog_last_seq(s->log));
}

static int on_flush(sd_event_source *src, void *userdata)
{
        struct server *s = userdata;
        (void) src;
        flush_batch(s);
        if (chatlog_checkpoint_due(s->log))
                checkpoint(s);
        return 0;
}

static int queue_append(struct server *s, struct sconn *sc, uint32_t tag)
{
        if (strcmp(s->scratch.node, sc->node) != 0) {
                char q[LOG_QUOTE_NAME];
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: append under another node's name ('%s'); closing", conn_label(sc->c),
                          log_quote(q, sizeof q, s->scratch.node, strlen(s->scratch.node)));
                return -EBADMSG;
        }
        /* a life numbers its posts from its own incarnation on (proto.h) */
        if (sc->incarnation && POST_ID_INCARNATION(s->scratch.post_id) < sc->incarnation) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: append of post id %llu, below the post ids of incarnation %llu; closing",
                          conn_label(sc->c), (unsigned long long) s->scratch.post_id,
                          (unsigned long long) sc->incarnation);
                return -EBADMSG;
        }
        if (s->n == BATCH_CAP)
                flush_batch(s);
        s->entries[s->n] = s->scratch;
        s->pend[s->n] = (struct pending) { sc, tag };
        s->n++;
        s->stats.appends++;
        return sd_event_source_set_enabled(s->flush_src, SD_EVENT_ONESHOT);
}

/* --- the shared notes (notes.h) --------------------------------------------------------------- */

/* The notes this server answers from, or NULL with why. */
static struct notes *notes_here(struct server *s, const char **why)
{
        struct notes *t;

        if (s->rep) {
                if (!(t = replica_notes(s->rep)))
                        *why = "its replica of the group's state is not running just now (see its journal)";
                return t;
        }
        if (s->notes_error) {
                *why = s->notes_why;
                return NULL;
        }
        return &s->notes;
}

static void send_note(struct conn *to, uint32_t tag, uint8_t flags, const struct note *n)
{
        (void) conn_send(to, &(struct dchat_msg) { .type = MSG_NOTE_REPLY, .tag = tag, .note_reply = {
                flags | NOTE_FOUND, { n->key, (uint16_t) strlen(n->key) }, { n->value, n->len }, n->version,
                { n->node, (uint16_t) strlen(n->node) }, n->time } });
}

int server_note_read(struct server *s, const struct dchat_msg *m, struct conn *to)
{
        const char *why = "", *out = out_of_group(s);
        const struct notes *t = out ? NULL : notes_here(s, &why);

        if (!t) {
                conn_send_error(to, m->tag, ERR_UNAVAILABLE, "the server %s cannot read the shared notes: %s",
                                s->conf->node, out ? out : why);
                return 0;
        }
        if (m->note.op == NOTE_GET) {
                const struct note *n = notes_find(t, m->note.key.p, m->note.key.len);
                if (!n)
                        conn_send_error(to, m->tag, ERR_NOT_FOUND, "no note named %.*s", (int) m->note.key.len,
                                        m->note.key.p);     /* a valid key: letters, digits and ._:/- */
                else
                        send_note(to, m->tag, 0, n);
                return 0;
        }
        if (t->n == 0)
                return conn_send(to, &(struct dchat_msg) { .type = MSG_NOTE_REPLY, .tag = m->tag,
                                                           .note_reply = { 0, { "", 0 }, { "", 0 }, 0, { "", 0 }, 0 } });
        conn_cork(to);
        for (unsigned i = 0; i < t->n; i++)
                send_note(to, m->tag, i + 1 < t->n ? NOTE_MORE : 0, &t->v[i]);
        conn_uncork(to);
        return 0;
}

/* What became of a write to the notes, to its peer (if still there) and to the journal. */
static void note_answer(struct server *s, const struct pending *p, const struct note_write *w,
                        const struct note_outcome *o)
{
        struct conn *to = p->from ? p->from->c : NULL;
        struct event_fields f = { .peer = w->node, .fence = w->fence, .fence_idx = w->fence_idx };
        const char *why = "";
        const struct notes *t = notes_here(s, &why);
        unsigned long long op = (unsigned long long) w->op_id;
        char key[DCHAT_KEY_MAX + 1], fence[DCHAT_NAME_MAX + 64], text[DCHAT_ERROR_MAX];
        uint64_t detail = 0;
        enum dchat_err code;

        snprintf(key, sizeof key, "%.*s", (int) w->key_len, w->key);
        if (w->flags & NOTE_UNLOCKED)
                snprintf(fence, sizeof fence, "unlocked: no fence");
        else
                snprintf(fence, sizeof fence, "fence %llu/%s/%u", (unsigned long long) w->fence, w->node, w->fence_idx);
        switch (o->res) {
        case NOTE_R_OK:
        case NOTE_R_DUPLICATE:
                if (o->res == NOTE_R_OK)
                        log_event(EV_NOTE_WRITTEN, &f, "note %s %s by %s, version %llu (write %s#%llu, %s)", key,
                                  w->op == NOTE_DEL ? "deleted" : "set", w->node, (unsigned long long) o->version,
                                  w->node, op, fence);
                else
                        log_info("note write %s#%llu was done already (version %llu); answered again", w->node, op,
                                 (unsigned long long) o->version);
                bool set = w->op == NOTE_SET;
                if (to)
                        (void) conn_send(to, &(struct dchat_msg) { .type = MSG_NOTE_REPLY, .tag = p->tag,
                                .note_reply = { (uint8_t) ((set ? NOTE_FOUND : 0) |
                                                           (o->res == NOTE_R_DUPLICATE ? NOTE_DUPLICATE : 0)),
                                                { key, (uint16_t) w->key_len },
                                                { set ? w->value : "", (uint16_t) (set ? w->len : 0) }, o->version,
                                                { set ? w->node : "", (uint16_t) (set ? strlen(w->node) : 0) },
                                                set ? w->time : 0 } });
                return;
        case NOTE_R_FENCED: {
                uint64_t lf = t ? t->fence : 0;
                snprintf(text, sizeof text, "note write refused: %s is not greater than the last locked write's "
                         "%llu/%s/%u", fence, (unsigned long long) lf, t ? t->fence_node : "?", t ? t->fence_idx : 0);
                code = ERR_FENCED;
                detail = lf;
                break;
        }
        case NOTE_R_CHANGED:
                snprintf(text, sizeof text, "note %s changed since it was read (version %llu read, %llu now); "
                         "nothing written", key, (unsigned long long) w->expect, (unsigned long long) o->version);
                code = ERR_CHANGED;
                detail = o->version;
                break;
        case NOTE_R_BOUNDS:
                log_event(EV_PROTOCOL_ERROR, &f, "refused note write %s#%llu: its %s is beyond the bounds", w->node,
                          op, fence);
                conn_send_error(to, p->tag, ERR_INVALID, "the server refused the note's write: its fence %llu is "
                                "beyond the bounds; nothing written", (unsigned long long) w->fence);
                return;
        case NOTE_R_STALE:
                log_info("note write %s#%llu is older than the last one of %s: a late copy; not written", w->node,
                         op, w->node);
                conn_send_error(to, p->tag, ERR_STALE, "note write %s#%llu is a late copy from an earlier "
                                "connection or life of %s; nothing written", w->node, op, w->node);
                return;
        case NOTE_R_ABSENT:
                conn_send_error(to, p->tag, ERR_NOT_FOUND, "no note named %s", key);
                return;
        case NOTE_R_FULL:
                conn_send_error(to, p->tag, ERR_BUSY, "the shared notes are full (at most %u notes, written by at "
                                "most %u nodes); delete a note first", DCHAT_NOTES_MAX, NOTES_WRITERS_MAX);
                return;
        case NOTE_R_INVALID:
                log_warning("refused an invalid note write from %s", w->node);
                conn_send_error(to, p->tag, ERR_INVALID, "the server refused the note's write as invalid; nothing "
                                "written");
                return;
        default:
                conn_send_error(to, p->tag, ERR_INTERNAL, "the server could not write the note (%s); nothing written",
                                note_res_name(o->res));
                return;
        }
        /* FENCED, CHANGED: the peer reads again and tries again, under a new request; one line a while */
        if (ratelimit_pass(&s->refused_rl, now_monotonic()))
                log_event(EV_NOTE_REFUSED, &f, "refused note write %s#%llu from %s: %s%s", w->node, op, w->node,
                          text, ratelimit_suppressed(&s->refused_rl));
        if (to)
                (void) conn_send(to, &(struct dchat_msg) { .type = MSG_ERROR, .tag = p->tag,
                        .error = { (uint16_t) code, { text, (uint16_t) strlen(text) }, detail } });
}

/* A group: the write goes to Raft; the answer comes once it is committed and applied (group_applied). */
static void note_submit(struct server *s, const struct pending *p, const struct note_write *w)
{
        struct gbatch *gb;
        struct note_req *nr;

        if (!replica_is_leader(s->rep)) {
                refuse_not_leader(s, p, 1, "this server does not lead the group, nothing was written");
                return;
        }
        if (replica_busy(s->rep)) {
                refuse_not_leader(s, p, 1, "this server is catching up with the group (it hands the lead to another "
                                  "server), nothing was written");
                return;
        }
        gb = calloc(1, sizeof *gb + sizeof gb->pend[0]);
        nr = calloc(1, sizeof *nr);
        if (!gb || !nr) {
                free(gb);
                free(nr);
                conn_send_error(p->from->c, p->tag, ERR_INTERNAL, "the server is out of memory; nothing written");
                return;
        }
        nr->w = *w;
        memcpy(nr->key, w->key, w->key_len);
        nr->w.key = nr->key;
        if (w->op == NOTE_SET)
                memcpy(nr->value, w->value, w->len);
        nr->w.value = nr->value;
        strlcpy(nr->node, w->node, sizeof nr->node);
        nr->w.node = nr->node;
        gb->note = nr;
        gb->n = 1;
        gb->pend[0] = *p;
        if (replica_submit_note(s->rep, &nr->w, gb) < 0) {
                refuse_not_leader(s, p, 1, "the group did not take the write, nothing was written");
                gbatch_free(gb);
                return;
        }
        LIST_PREPEND(s->gbatches, gb);
}

/* One server: the write is applied and the file replaced before the answer. */
static void note_write_here(struct server *s, const struct pending *p, const struct note_write *w)
{
        struct note_outcome o;
        char err[512];
        int r;

        if (s->notes_error) {
                conn_send_error(p->from->c, p->tag, ERR_STORAGE, "the server %s cannot write the shared notes: %s",
                                s->conf->node, s->notes_why);
                return;
        }
        if (notes_apply(&s->notes, w, &o) < 0) {
                conn_send_error(p->from->c, p->tag, ERR_INTERNAL, "the server is out of memory; nothing written");
                return;
        }
        /* a copy or an invalid write changed nothing; anything else did (a refusal is recorded too) */
        if (o.res != NOTE_R_DUPLICATE && o.res != NOTE_R_STALE && o.res != NOTE_R_INVALID &&
            (r = notes_save(&s->notes, s->conf->state_directory, err, sizeof err)) < 0) {
                /* what the file holds is what is stored: the write reached it (renamed) or not */
                struct notes back;
                char lerr[512];
                log_error("cannot write the shared notes: %s", err);
                if (notes_load(&back, s->conf->state_directory, lerr, sizeof lerr) == 0) {
                        notes_clear(&s->notes);
                        s->notes = back;
                } else {
                        log_error("cannot read the shared notes back: %s; notes refused until dchatd restarts", lerr);
                        s->notes_error = -EIO;
                        strlcpy(s->notes_why, lerr, sizeof s->notes_why);
                }
                conn_send_error(p->from->c, p->tag, ERR_STORAGE, "the server could not store the note: %s; it may "
                                "or may not have been written", strerror(-r));
                return;
        }
        note_answer(s, p, w, &o);
}

static int on_note(struct server *s, struct sconn *sc, const struct dchat_msg *m)
{
        const char *out = out_of_group(s);

        if (m->note.op == NOTE_GET || m->note.op == NOTE_LIST)
                return server_note_read(s, m, sc->c);
        if (m->note.op != NOTE_SET && m->note.op != NOTE_DEL) {
                conn_send_error(sc->c, m->tag, ERR_INVALID, "a server takes reads and writes of notes; an increment "
                                "is a peer's read and write");
                return 0;
        }
        /* a life numbers its writes from its own incarnation on, as its posts (proto.h) */
        if (sc->query || (sc->incarnation && POST_ID_INCARNATION(m->note.op_id) < sc->incarnation)) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: note write %llu %s; closing", conn_label(sc->c), (unsigned long long) m->note.op_id,
                          sc->query ? "on a query link" : "below the numbers of the node's incarnation");
                return -EBADMSG;
        }
        if (out) {
                conn_send_error(sc->c, m->tag, ERR_UNAVAILABLE, "the server %s %s: nothing written", s->conf->node, out);
                return 0;
        }
        struct note_write w = { .op = m->note.op, .flags = m->note.flags, .key = m->note.key.p,
                                .key_len = m->note.key.len, .value = m->note.value.p, .len = m->note.value.len,
                                .expect = m->note.expect, .fence = m->note.fence, .fence_idx = m->note.fence_idx,
                                .node = sc->node, .op_id = m->note.op_id, .time = m->note.time };
        struct pending p = { sc, m->tag };
        if (s->rep)
                note_submit(s, &p, &w);
        else
                note_write_here(s, &p, &w);
        return 0;
}

static void dview_drop(struct server *s, struct dview *v)
{
        LIST_REMOVE(s->dviews, v);
        s->n_dviews--;
        free(v);
}

/*
 * Read-your-writes in a group: a reader (through its peer) that saw seq
 * min_seq stored must not get a view from a follower that has not applied
 * it yet (followers apply what the leader committed a heartbeat later, or
 * after a catch-up).  The view waits here until it is applied, at most
 * DVIEW_WAIT; then the reader is told this server is behind.
 */
static int view_defer(struct server *s, const struct dchat_msg *req, struct conn *to)
{
        struct dview *v;

        if (s->n_dviews >= DVIEW_MAX || !(v = calloc(1, sizeof *v))) {
                conn_send_error(to, req->tag, ERR_BUSY, "the server %s is behind and has too many views waiting; "
                                "try again", s->conf->node);
                return 0;
        }
        v->to = to;
        v->req = *req;
        v->deadline = now_monotonic() + DVIEW_WAIT;
        LIST_PREPEND(s->dviews, v);
        s->n_dviews++;
        return 0;
}

/* Entries were applied (or time passed): the waiting views that can go on, go on. */
static void dviews_run(struct server *s, uint64_t now)
{
        uint64_t last = chatlog_last_seq(s->log);

        for (struct dview *v = s->dviews, *nx; v; v = nx) {
                nx = v->next;
                if (v->req.view.min_seq <= last) {
                        struct conn *to = v->to;
                        struct dchat_msg req = v->req;
                        dview_drop(s, v);
                        (void) server_view_page(s, &req, to);
                } else if (now >= v->deadline) {
                        conn_send_error(v->to, v->req.tag, ERR_UNAVAILABLE, "the server %s holds the log up to seq "
                                        "%llu, but seq %llu was seen stored already: it is behind; try again",
                                        s->conf->node, (unsigned long long) last,
                                        (unsigned long long) v->req.view.min_seq);
                        dview_drop(s, v);
                }
        }
}

int server_view_page(struct server *s, const struct dchat_msg *req, struct conn *to)
{
        uint64_t last = chatlog_last_seq(s->log);
        const char *out = out_of_group(s);

        if (out) {
                conn_send_error(to, req->tag, ERR_UNAVAILABLE, "the server %s %s: ask another server", s->conf->node,
                                out);
                return 0;
        }
        if (s->rep && req->view.min_seq > last)
                return view_defer(s, req, to);
        uint64_t upto = req->view.upto_seq && req->view.upto_seq < last ? req->view.upto_seq : last;
        uint64_t start = req->view.from_seq;
        uint32_t max = req->view.max && req->view.max < VIEW_PAGE_MAX ? req->view.max : VIEW_PAGE_MAX;
        struct chatlog_cursor cur;
        int r;

        if (start == 0 && req->view.since_time) {
                r = chatlog_find_time(s->log, req->view.since_time, &start);
                if (r == -EBADMSG)
                        note_damage(s);
                if (r < 0) {
                        log_error("searching the chat log by time failed: %s", strerror(-r));
                        conn_send_error(to, req->tag, ERR_STORAGE, "the server could not read its log: %s", strerror(-r));
                        return 0;
                }
        }
        if (start == 0)
                start = req->view.last_n && req->view.last_n < upto ? upto - req->view.last_n + 1 : 1;
        if (start < chatlog_first_seq(s->log))
                start = chatlog_first_seq(s->log);      /* the rest is archived */
        uint64_t next = start;
        if (start <= upto) {
                r = chatlog_seek(s->log, start, &cur);
                /* A page is cut short (VIEW_END says where to go on) once the
                 * connection holds VIEW_PAGE_BYTES: with the next request only
                 * taken below CONN_OUT_HOLD, a reader that does not keep up
                 * costs a bounded buffer.  At least one entry, so every page
                 * makes progress. */
                for (uint32_t i = 0; r >= 0 && i < max && cur.seq <= upto &&
                                     (i == 0 || conn_pending(to) < VIEW_PAGE_BYTES); i++) {
                        r = chatlog_next(s->log, &cur, &s->scratch);
                        if (r == CHATLOG_DAMAGED) {
                                r = send_damaged(to, req->tag, s->scratch.seq, cur.damaged_last, upto, cur.damaged_why);
                                next = cur.seq < upto + 1 ? cur.seq : upto + 1;
                                continue;
                        }
                        if (r < 0)
                                break;
                        r = conn_send(to, &(struct dchat_msg) { .type = MSG_ENTRY, .tag = req->tag,
                                                                .append = &s->scratch });
                        next = s->scratch.seq + 1;
                }
                if (r == -EBADMSG) {
                        char text[DCHAT_ERROR_MAX];
                        note_damage(s);
                        snprintf(text, sizeof text, "the server's chat log is damaged at seq %llu; restart dchatd on "
                                 "the server to %s it (see dchatd(8))",
                                 (unsigned long long) chatlog_damaged_at(s->log), s->rep ? "repair" : "quarantine");
                        conn_send_error(to, req->tag, ERR_STORAGE, "%s", text);
                        return 0;
                }
                if (r < 0 && r != -ENOENT) {
                        log_error("reading the chat log at seq %llu failed: %s", (unsigned long long) next,
                                  strerror(-r));
                        conn_send_error(to, req->tag, ERR_STORAGE, "the server could not read its log: %s", strerror(-r));
                        return 0;
                }
        }
        return conn_send(to, &(struct dchat_msg) { .type = MSG_VIEW_END, .tag = req->tag,
                                                   .view_end = { next, upto, next > upto } });
}

/* --- followers ------------------------------------------------------------------------------ */

static struct sfollow *follow_find(struct server *s, const struct conn *c)
{
        for (struct sfollow *f = s->follows; f; f = f->next)
                if (f->c == c)
                        return f;
        return NULL;
}

static void follow_drop(struct server *s, struct sfollow *f)
{
        LIST_REMOVE(s->follows, f);
        s->n_follows--;
        free(f);
}

/* Send what f still needs, from the log, until its buffer is full. */
static void follow_pump(struct server *s, struct sfollow *f)
{
        uint64_t last = chatlog_last_seq(s->log);
        struct chatlog_cursor cur;
        int r;

        if (f->next_seq < chatlog_first_seq(s->log))
                f->next_seq = chatlog_first_seq(s->log);        /* the rest is archived */
        if (f->next_seq > last || conn_pending(f->c) >= FOLLOW_HIGH)
                return;
        r = chatlog_seek(s->log, f->next_seq, &cur);
        while (r >= 0 && f->next_seq <= last && conn_pending(f->c) < FOLLOW_HIGH) {
                r = chatlog_next(s->log, &cur, &s->follow_entry);
                if (r == CHATLOG_DAMAGED)
                        r = send_damaged(f->c, f->tag, s->follow_entry.seq, cur.damaged_last, last, cur.damaged_why);
                else if (r >= 0)
                        r = conn_send(f->c, &(struct dchat_msg) { .type = MSG_ENTRY, .tag = f->tag,
                                                                  .append = &s->follow_entry });
                if (r == -ENOTCONN)
                        return;         /* it is going away; its closed op drops f */
                if (r < 0)
                        break;
                f->next_seq = cur.seq;
        }
        if (r < 0) {
                char text[DCHAT_ERROR_MAX];
                if (r == -EBADMSG) {
                        note_damage(s);
                        snprintf(text, sizeof text, "the server's chat log is damaged at seq %llu; restart dchatd on "
                                 "the server to %s it (see dchatd(8))",
                                 (unsigned long long) chatlog_damaged_at(s->log), s->rep ? "repair" : "quarantine");
                } else {
                        log_error("%s: cannot send seq %llu to the follower: %s", conn_label(f->c),
                                  (unsigned long long) f->next_seq, strerror(-r));
                        snprintf(text, sizeof text, "the server could not read its log for a follower: %s", strerror(-r));
                }
                conn_send_error(f->c, f->tag, r == -ENOMEM ? ERR_INTERNAL : ERR_STORAGE, "%s", text);
                follow_drop(s, f);
        }
}

int server_follow(struct server *s, const struct dchat_msg *req, struct conn *to)
{
        struct sfollow *f = follow_find(s, to);
        uint64_t last = chatlog_last_seq(s->log);
        const char *out = out_of_group(s);

        if (out && req->follow.from_seq != UINT64_MAX) {
                conn_send_error(to, req->tag, ERR_UNAVAILABLE, "the server %s %s: ask another server", s->conf->node,
                                out);
                return 0;
        }
        if (req->follow.from_seq == UINT64_MAX) {
                /* a peer whose last follower left */
                if (f) {
                        log_info("%s stopped following the log", conn_label(to));
                        follow_drop(s, f);
                }
                return 0;
        }
        if (!f) {
                f = calloc(1, sizeof *f);
                if (!f)
                        return -ENOMEM;
                f->c = to;
                LIST_PREPEND(s->follows, f);
                s->n_follows++;
        }
        /* one follow per connection: a new FOLLOW replaces the old one */
        f->tag = req->tag;
        f->next_seq = req->follow.from_seq ? req->follow.from_seq : last + 1;
        log_info("%s follows the log from seq %llu (last stored %llu)", conn_label(to),
                 (unsigned long long) f->next_seq, (unsigned long long) last);
        follow_pump(s, f);
        return 0;
}

void server_client_drained(struct server *s, struct conn *c)
{
        struct sfollow *f = follow_find(s, c);
        if (f)
                follow_pump(s, f);
}

int server_member(struct server *s, const struct dchat_msg *req, struct conn *to)
{
        if (!s->members) {
                conn_send_error(to, req->tag, ERR_INVALID, "this server is not in a server group (cluster.servers "
                                "lists one server): see dchatd(8), REPLICATION, on going from one server to three");
                return 0;
        }
        return members_request(s->members, req, to, false);
}

/* Servers beyond this host's cluster.servers may link to a group's server: on_hello sees what they may do. */
static int member_hook(void *userdata, const char *name, uint8_t role)
{
        struct server *s = userdata;
        (void) name;
        return role == ROLE_SERVER && s->rep ? 0 : -EPERM;
}

void server_client_gone(struct server *s, struct conn *c)
{
        members_client_gone(s->members, c);
        for (struct dview *v = s->dviews, *nx; v; v = nx) {
                nx = v->next;
                if (v->to == c)
                        dview_drop(s, v);
        }
        struct sfollow *f = follow_find(s, c);
        if (f)
                follow_drop(s, f);
}

/*
 * Another server of the group: its links carry replication (RAFT frames)
 * and the group's own traffic.  One that is in neither this host's file
 * nor the group's configuration (a server asking to join) may only ask
 * GROUP.
 */
static int on_server_hello(struct server *s, struct sconn *sc, const char *name, bool in_file)
{
        char label[96];

        if (!s->rep || !strcmp(name, s->conf->node)) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: HELLO from server %s, but %s; closing", conn_label(sc->c),
                          name, s->rep ? "that is this server's own name" : "this server is not in a group");
                return -EPERM;
        }
        strlcpy(sc->node, name, sizeof sc->node);
        sc->server = true;
        sc->outsider = !in_file && !replica_knows(s->rep, name);
        snprintf(label, sizeof label, "%sserver %s", sc->outsider ? "outside " : "", name);
        conn_set_label(sc->c, label);
        return 0;
}

/* GROUP from a server: what this one holds; and its group id, checked before any replication from it. */
static int on_group(struct server *s, struct sconn *sc, const struct dchat_msg *m)
{
        struct replica_answer a;
        const uint8_t *mine = replica_group_id(s->rep);

        if (group_id_is_set(m->group.group_id) && group_id_is_set(mine))
                sc->group_ok = replica_note_group(s->rep, sc->node, GROUP_STATE, m->group.group_id) == 0;
        else if (replica_phase(s->rep) == REP_ASKING)
                replica_poke(s->rep);   /* a server of a running group may be calling: ask again now */
        replica_group_reply(s->rep, sc->node, m->tag, &a);
        return conn_send(sc->c, &a.m);
}

/* The first RAFT frame of a server's link: the link becomes a replication stream (transport.c). */
static int on_raft_stream(struct server *s, struct sconn *sc, const uint8_t *payload, size_t len)
{
        char address[128] = "";
        struct conn *c = sc->c;

        if (!sc->group_ok || replica_phase(s->rep) != REP_RUNNING) {
                /* not a word of Raft from a server that did not show this group's id, nor into a
                 * server that runs no Raft: libraft on the other side tries again later */
                if (ratelimit_pass(&s->raft_refused_rl, now_monotonic()))
                        log_info("%s: replication refused: %s%s", conn_label(c),
                                 replica_phase(s->rep) != REP_RUNNING ? "this server runs no Raft now"
                                 : "it did not show this group's id", ratelimit_suppressed(&s->raft_refused_rl));
                replica_poke(s->rep);
                return -EPERM;
        }
        for (unsigned i = 0; i < s->conf->n_servers; i++)
                if (!strcmp(s->conf->servers[i].name, sc->node))
                        strlcpy(address, s->conf->servers[i].address, sizeof address);
        if (!address[0])
                replica_address_of(s->rep, sc->node, address, sizeof address);
        struct transport *tr = replica_transport(s->rep);
        if (!tr) {
                /* Raft is stopped here just now (replica-stalled): the other server connects again */
                return -ENOTCONN;
        }
        int r = transport_accept(tr, c, sc->node, address, payload, len);
        if (r < 0) {
                log_warning("%s: cannot take the replication stream: %s", conn_label(c), strerror(-r));
                return -EIO;
        }
        /* the link is the transport's now: forget it here, without closing it */
        LIST_REMOVE(s->conns, sc);
        s->n_conns--;
        free(sc);
        return 0;
}

static int on_hello(struct server *s, struct sconn *sc, const struct dchat_msg *m)
{
        char name[DCHAT_NAME_MAX + 1];
        bool known = false;
        unsigned pi = 0;

        if (m->hello.role == ROLE_SERVER && dchat_str_copy(name, sizeof name, m->hello.node) >= 0) {
                for (unsigned i = 0; i < s->conf->n_servers; i++)
                        if (!strcmp(s->conf->servers[i].name, name))
                                return on_server_hello(s, sc, name, true);
                /* a server added at runtime, or one asking to join: the group's business */
                if (s->rep && node_name_valid(name))
                        return on_server_hello(s, sc, name, false);
        }

        if (dchat_str_copy(name, sizeof name, m->hello.node) >= 0)
                for (unsigned i = 0; i < s->conf->n_peers && !known; i++)
                        if (strcmp(s->conf->peers[i].name, name) == 0) {
                                known = true;
                                pi = i;
                        }
        if (!known || m->hello.role != ROLE_PEER) {
                char q[LOG_QUOTE_NAME];
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: HELLO from '%s', which is not a peer of this cluster; closing",
                          conn_label(sc->c), log_quote(q, sizeof q, m->hello.node.p, m->hello.node.len));
                return -EPERM;
        }
        uint64_t inc = m->hello.incarnation, *latest = &s->incarnation[pi];
        if (inc && *latest && inc < *latest) {
                /* A connection of an earlier life, delivered late: nothing of it
                 * may be taken for the living one's.  Say so, in case it is no
                 * ghost but a life whose counter went back. */
                char text[DCHAT_ERROR_MAX];
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = name },
                          "%s: HELLO of incarnation %llu from %s, which is at incarnation %llu: a connection of "
                          "an earlier life; refused", conn_label(sc->c), (unsigned long long) inc, name,
                          (unsigned long long) *latest);
                snprintf(text, sizeof text, "%s knows %s under incarnation %llu, later than %llu",
                         s->conf->node, name, (unsigned long long) *latest, (unsigned long long) inc);
                (void) conn_send(sc->c, &(struct dchat_msg) { .type = MSG_ERROR, .tag = m->tag,
                        .error = { ERR_STALE, { text, (uint16_t) strlen(text) }, *latest } });
                conn_shutdown(sc->c);
                return 0;
        }
        if (out_of_group(s)) {
                char text[DCHAT_ERROR_MAX];
                snprintf(text, sizeof text, "the server %s %s: it serves nothing", s->conf->node, out_of_group(s));
                (void) conn_send(sc->c, &(struct dchat_msg) { .type = MSG_ERROR, .tag = m->tag,
                        .error = { ERR_UNAVAILABLE, { text, (uint16_t) strlen(text) }, 0 } });
                conn_shutdown(sc->c);
                return 0;
        }
        bool restarted = inc && *latest && inc > *latest;
        if (inc > *latest)
                *latest = inc;
        /* A peer has one server link at a time: its connections accepted
         * before this one are dead (of an earlier life, or of this one before
         * it reconnected).  Close them before answering, so that nothing they
         * still bring is taken in after this HELLO_ACK.  (A late HELLO on an
         * older connection closes nothing newer; a HELLO that names no
         * incarnation replaces nothing, and is replaced by nothing: it is
         * the peer's query link, for a status or a verify (query.c), which
         * lives beside its main link, or a hand-made one.) */
        for (struct sconn *o = s->conns, *nx; o && inc; o = nx) {
                nx = o->next;
                if (o != sc && !o->query && strcmp(o->node, name) == 0 && o->incarnation <= inc &&
                    o->serial < sc->serial) {
                        log_info("%s: replaced by a new connection of %s (incarnation %llu); closing", conn_label(o->c),
                                 name, (unsigned long long) inc);
                        conn_close(o->c, -ECONNRESET);
                }
        }
        if (restarted && central(s))
                coord_restarted(s, pi);
        if (inc && sc->serial > s->coord_serial[pi])
                s->coord_serial[pi] = sc->serial;       /* the older ones, now closed or late, are replaced */
        strlcpy(sc->node, name, sizeof sc->node);
        sc->idx = (int) pi;
        sc->incarnation = inc;
        char label[96];
        sc->query = inc == 0;
        snprintf(label, sizeof label, sc->query ? "query link of peer %s" : "peer %s", name);
        conn_set_label(sc->c, label);
        if (m->hello.digest && m->hello.digest != s->conf->cluster_digest) {
                /* it answers with its own members: both say what differs */
                struct dchat_msg cm;
                conf_cluster_msg(s->conf, &s->cluster, &cm);
                (void) conn_send(sc->c, &cm);
        }
        if (sc->query)
                log_debug("%s: up", conn_label(sc->c));        /* a question or two: no peer-up */
        else
                log_event(EV_PEER_UP, &(struct event_fields) { .peer = name }, "peer %s connected", name);
        uint64_t lamport;
        uint32_t idx;
        char last_node[DCHAT_NAME_MAX + 1];
        chatlog_last_fence(s->log, &lamport, last_node, &idx);
        int r = conn_send(sc->c, &(struct dchat_msg) {
                .type = MSG_HELLO_ACK, .tag = m->tag,
                .hello_ack = { chatlog_last_post_id(s->log, name), chatlog_last_seq(s->log), lamport } });
        if (r >= 0)
                send_leader(s, sc);
        if (r >= 0 && !sc->query) {
                sc->up_at = now_monotonic();
                send_presence(s, sc->c);        /* who is here, for its who */
                presence_changed(s);
        }
        return r;
}

/* STATUS on a daemon link (another server's, a peer's query link): this server's own figures. */
static int answer_status(struct server *s, struct conn *c, uint32_t tag)
{
        struct dchat_status *st = &s->status;

        *st = (struct dchat_status) { .role = ROLE_SERVER };
        strlcpy(st->node, s->conf->node, sizeof st->node);
        server_status(s, st);
        return conn_send(c, &(struct dchat_msg) { .type = MSG_STATUS_REPLY, .tag = tag, .status = st });
}

/* DIGEST: digests of blocks of the log, a bounded number of entries read (verify.c). */
static int answer_digest(struct server *s, struct conn *c, const struct dchat_msg *req)
{
        struct dchat_msg ans;
        const char *why = "";
        int r = verify_digest(s->log, req, &ans, s->digests, &s->scratch, &why);

        if (r == -EBADMSG)
                note_damage(s);
        if (r == -EINVAL) {
                conn_send_error(c, req->tag, ERR_INVALID, "%s cannot give digests of %s", s->conf->node, why);
                return 0;
        }
        if (r < 0) {
                if (r != -EBADMSG)
                        log_error("reading the chat log for digests failed: %s", strerror(-r));
                conn_send_error(c, req->tag, ERR_STORAGE, "%s cannot give digests: %s (%s)", s->conf->node, why,
                                strerror(-r));
                return 0;
        }
        return conn_send(c, &ans);
}

static int sconn_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct sconn *sc = conn_userdata(c);
        struct server *s = sc->s;
        struct dchat_msg m;

        /* a peer that does not read what we send it: its next request waits (sconn_drained) */
        if (conn_pending(c) >= CONN_OUT_HOLD)
                return CONN_LATER;
        if (proto_decode(type, payload, len, &m, &s->scratch, NULL) < 0) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: malformed %s frame; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        (void) fd_link_heard(&sc->alive, now_monotonic());
        if (!sc->node[0] && type != MSG_HELLO) {
                log_event(EV_PROTOCOL_ERROR, NULL, "%s: %s before HELLO; closing", conn_label(c),
                          proto_type_name(type));
                return -EBADMSG;
        }
        if (sc->server) {
                /* another server: replication, then the group's traffic (catch-up pages, questions) */
                if (sc->outsider && type != MSG_GROUP && type != MSG_HEARTBEAT) {
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                                  "%s: %s from a server in neither cluster.servers nor the group; closing "
                                  "(it may ask GROUP only, until it is added)", conn_label(c), proto_type_name(type));
                        return -EPERM;
                }
                switch (type) {
                case MSG_RAFT:
                        return on_raft_stream(s, sc, payload, len);
                case MSG_VIEW:
                        return server_view_page(s, &m, c);
                case MSG_STATUS:
                        return answer_status(s, c, m.tag);
                case MSG_DIGEST:
                        return answer_digest(s, c, &m);
                case MSG_GROUP:
                        return on_group(s, sc, &m);
                case MSG_MEMBER:
                        return members_request(s->members, &m, c, true);
                case MSG_HEARTBEAT:
                        return 0;
                default:
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                                  "%s: unexpected %s frame from a server; closing", conn_label(c),
                                  proto_type_name(type));
                        return -EBADMSG;
                }
        }
        switch (type) {
        case MSG_HELLO:
                if (sc->node[0])
                        return -EBADMSG;
                return on_hello(s, sc, &m);
        case MSG_APPEND:
                return queue_append(s, sc, m.tag);
        case MSG_VIEW:
                return server_view_page(s, &m, c);
        case MSG_FOLLOW:
                return server_follow(s, &m, c);
        case MSG_CLUSTER:
                conf_cluster_report(s->conf, sc->node, &m, &s->cluster_reported[sc->idx]);
                return 0;
        case MSG_PRESENCE: {
                /* a peer speaks for itself only, on its main link */
                int r;
                if (sc->query || m.presence.node.len != strlen(sc->node) ||
                    memcmp(m.presence.node.p, sc->node, m.presence.node.len) || m.presence.role != ROLE_PEER) {
                        log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                                  "%s: PRESENCE for another node; closing", conn_label(c));
                        return -EBADMSG;
                }
                r = presence_take(&sc->presence, &m);
                if (r < 0)
                        return r;
                presence_changed(s);
                return 0;
        }
        case MSG_STATUS:
                return answer_status(s, c, m.tag);
        case MSG_DIGEST:
                return answer_digest(s, c, &m);
        case MSG_HEARTBEAT:
                return 0;               /* heard from: that is all */
        case MSG_MEMBER:
                return server_member(s, &m, c);
        case MSG_LOCK:
                return on_lock(s, sc, &m);
        case MSG_NOTE:
                return on_note(s, sc, &m);
        default:
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = sc->node },
                          "%s: unexpected %s frame; closing", conn_label(c), proto_type_name(type));
                return -EBADMSG;
        }
}

static void sconn_closed(struct conn *c, int error)
{
        struct sconn *sc = conn_userdata(c);
        struct server *s = sc->s;

        for (unsigned i = 0; i < s->n; i++)
                if (s->pend[i].from == sc)
                        s->pend[i].from = NULL;
        for (struct gbatch *gb = s->gbatches; gb; gb = gb->next)
                for (unsigned i = 0; i < gb->n; i++)
                        if (gb->pend[i].from == sc)
                                gb->pend[i].from = NULL;
        bool followed = follow_find(s, c) != NULL;
        if (sc->query || (sc->server && !sc->why[0]))
                /* a question's link, or a replication link closed before its stream began */
                log_debug("%s closed: %s", conn_label(c), conn_strerror(error));
        else if (sc->node[0])
                log_event(EV_PEER_DOWN, &(struct event_fields) { .peer = sc->node }, "%s %s disconnected: %s%s",
                          sc->server ? "server" : "peer", sc->node, sc->why[0] ? sc->why : conn_strerror(error),
                          followed ? "; its follow ends" : "");
        server_client_gone(s, c);
        coord_link_gone(s, sc);
        bool was_peer = peer_link(sc) && sc->up_at;
        LIST_REMOVE(s->conns, sc);
        s->n_conns--;
        presence_clear(&sc->presence);
        free(sc);
        if (was_peer)
                presence_changed(s);
}

static void sconn_drained(struct conn *c)
{
        struct sconn *sc = conn_userdata(c);
        conn_resume(c);
        server_client_drained(sc->s, c);
}

static const struct conn_ops sconn_ops = {
        .frame = sconn_frame,
        .closed = sconn_closed,
        .drained = sconn_drained,
};

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
        struct server *s = userdata;
        char label[96];
        (void) src;
        (void) revents;

        int cfd = conn_accept(fd, label, sizeof label);
        if (cfd < 0)
                return 0;
        if (s->n_conns >= SCONN_MAX) {
                conn_refuse(cfd, label, "refused, %u connections already (the server's limit)", s->n_conns);
                close(cfd);
                return 0;
        }
        struct sconn *sc = calloc(1, sizeof *sc);
        if (!sc || !(sc->c = conn_new(s->event, cfd, false, &sconn_ops, sc, label))) {
                free(sc);
                close(cfd);
                return 0;
        }
        sc->s = s;
        sc->serial = ++s->accepted;
        fd_link_init(&sc->alive, now_monotonic());
        LIST_PREPEND(s->conns, sc);
        s->n_conns++;
        return 0;
}

/* Each heartbeat_ms: a HEARTBEAT to every peer, and the silent ones dropped. */
static int on_heartbeat(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct server *s = userdata;
        uint64_t last_lamport;
        uint32_t idx;
        char last_node[DCHAT_NAME_MAX + 1];

        chatlog_last_fence(s->log, &last_lamport, last_node, &idx);
        for (struct sconn *sc = s->conns, *nx; sc; sc = nx) {
                nx = sc->next;
                if (!sc->node[0])
                        continue;       /* net.c's handshake deadline watches those */
                if (fd_link_tick(&sc->alive, usec, s->conf->suspect_after_usec, s->conf->dead_after_usec) &&
                    sc->alive.state == FD_DEAD) {
                        snprintf(sc->why, sizeof sc->why, "silent for %llu ms",
                                 (unsigned long long) (fd_link_silent(&sc->alive, usec) / USEC_PER_MSEC));
                        conn_close(sc->c, -ETIMEDOUT);          /* frees sc */
                        continue;
                }
                (void) conn_send(sc->c, &(struct dchat_msg) { .type = MSG_HEARTBEAT,
                                                              .heartbeat = { 0, last_lamport } });
        }
        if (s->dviews)
                dviews_run(s, usec);
        coord_tick(s, usec);
        (void) sd_event_source_set_time(src, usec + s->conf->heartbeat_usec);
        return 0;
}

/*
 * A server group's chat log is the group's committed commands applied, so
 * a part of it found damaged need not be kept quarantined (views with a
 * marker where the other servers show the entry, and a post id there that
 * this server could no longer find): the log is cut where the damage
 * found by this open begins (the bytes from there on saved aside) and
 * opened again.  The group gives the rest back: the leader's snapshot says
 * where its log ends, and a log that ends before it fetches the entries
 * from another server (catchup.c); the commands after the snapshot are
 * applied again from Raft's log.  Damage known from before (a part
 * quarantined when the log was one server's, and copied into the group
 * with it) stays as it is: every server holds it.  Sound because only
 * committed commands are ever applied: the others hold all of it.
 */
static int group_cut_damage(struct server *s, struct chatlog_recovery *rec)
{
        const char *dir = s->conf->state_directory;
        char saved[PATH_MAX + 64];
        size_t i, n = chatlog_damage_count(s->log);
        struct chatlog_damage_info d;
        int r;

        for (i = 0; i < n; i++) {
                chatlog_damage_get(s->log, i, &d);
                if (d.found_now)
                        break;
        }
        if (i == n)
                return 0;
        r = chatlog_cut_damage(s->log, i, saved, sizeof saved);
        if (r < 0) {
                log_error("chat log %s/chat.log: seqs %llu to %llu are damaged (%s), and cutting them off to fetch "
                          "them again from the group failed: %s", dir, (unsigned long long) d.first_seq,
                          (unsigned long long) d.last_seq, d.why, strerror(-r));
                return r;
        }
        log_event(EV_LOG_RECOVERED, &(struct event_fields) { .seq = d.first_seq },
                  "chat log %s/chat.log: seqs %llu to %llu are damaged (%s, at byte %llu): this server's log is the "
                  "group's, so it is cut there and the rest fetched or applied again from the group (the bytes "
                  "from there on are saved to %s)", dir, (unsigned long long) d.first_seq,
                  (unsigned long long) d.last_seq, d.why, (unsigned long long) d.off, saved);
        s->log = chatlog_close(s->log);
        *rec = (struct chatlog_recovery) {0};
        r = chatlog_open(dir, &s->log, rec);
        if (r < 0)
                log_error("cannot open the chat log in %s again after cutting it: %s", dir,
                          r == -EBADMSG && rec->reason[0] ? rec->reason : strerror(-r));
        return r;
}

/* This server was removed from its group (raft/removed, replica.c): nothing gives a cut log back. */
static bool group_left(const struct dchat_conf *c)
{
        char p[PATH_MAX + 16];

        snprintf(p, sizeof p, "%s/raft/removed", c->state_directory);
        return access(p, F_OK) == 0;
}

int server_new(sd_event *e, const struct dchat_conf *c, int listen_fd, struct server **ret)
{
        struct chatlog_recovery rec = {0};
        struct server *s = calloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        s->event = e;
        s->conf = c;
        s->listen_fd = listen_fd;
        s->refused_rl = RATELIMIT_INIT(USEC_PER_SEC, 10);
        s->entries = calloc(BATCH_CAP, sizeof *s->entries);
        if (!s->entries) {
                r = -ENOMEM;
                goto fail;
        }
        uint64_t t0 = now_monotonic(), t1;
        r = chatlog_open(c->state_directory, &s->log, &rec);
        t1 = now_monotonic();
        if (r < 0) {
                log_error("cannot open the chat log in %s: %s", c->state_directory,
                          r == -EBUSY ? "another dchatd is using it" : r == -EBADMSG && rec.reason[0] ? rec.reason
                                                                    : strerror(-r));
                goto fail;
        }
        if (c->n_servers > 1 && !group_left(c)) {
                r = group_cut_damage(s, &rec);
                if (r < 0)
                        goto fail;
        }
        if (c->n_servers <= 1 && (r = notes_load(&s->notes, c->state_directory, s->notes_why,
                                                  sizeof s->notes_why)) < 0) {
                /* left as it is: nothing stored is dropped by dchatd; posts go on */
                s->notes_error = r;
                log_error("the shared notes are refused: %s; move the file aside (or restore it) and restart dchatd",
                          s->notes_why);
        }
        if (rec.stale_link[0])
                log_warning("removed %s/%s: a second name of chat.log, left by an archive or repair that was "
                            "interrupted before it was done", c->state_directory, rec.stale_link);
        if (rec.checkpoint_warning[0])
                log_warning("checkpoint %s/chat.log.idx discarded: %s; read the whole log instead",
                            c->state_directory, rec.checkpoint_warning);
        if (rec.checkpoint_used)
                log_info("chat log %s/chat.log: checkpoint used up to seq %llu, %llu records read after it",
                         c->state_directory, (unsigned long long) rec.checkpoint_seq,
                         (unsigned long long) rec.scanned);
        log_info("chat log %s/chat.log opened in %llu ms", c->state_directory,
                 (unsigned long long) ((t1 - t0) / USEC_PER_MSEC));
        for (size_t i = 0; i < chatlog_damage_count(s->log); i++) {
                struct chatlog_damage_info d;
                char copy[PATH_MAX + 64];
                chatlog_damage_get(s->log, i, &d);
                if (d.copy[0])
                        snprintf(copy, sizeof copy, "copied to %s", d.copy);
                else
                        snprintf(copy, sizeof copy, "not copied aside: %s", d.copy_error ? strerror(-d.copy_error) : "?");
                if (d.found_now)
                        log_event(EV_LOG_RECOVERED, &(struct event_fields) { .seq = d.first_seq },
                                  "chat log %s/chat.log: seqs %llu to %llu are damaged (%s, bytes %llu to %llu): "
                                  "quarantined, not cut: the bytes stay in the log (%s), views show a marker for "
                                  "them, and every record after them is kept",
                                  c->state_directory, (unsigned long long) d.first_seq, (unsigned long long) d.last_seq,
                                  d.why, (unsigned long long) d.off, (unsigned long long) d.end, copy);
                else
                        log_warning("chat log %s/chat.log: seqs %llu to %llu were quarantined as damaged (%s, bytes "
                                    "%llu to %llu)", c->state_directory, (unsigned long long) d.first_seq,
                                    (unsigned long long) d.last_seq, d.why, (unsigned long long) d.off,
                                    (unsigned long long) d.end);
        }
        if (rec.floor_seq)
                log_warning("chat log %s/chat.log: its end was found damaged although the checkpoint proves it was "
                            "stored: kept (quarantined) up to seq %llu instead of cut, so no seq is used twice",
                            c->state_directory, (unsigned long long) rec.floor_seq);
        if (rec.cut_bytes)
                log_event(EV_LOG_RECOVERED, &(struct event_fields) { .seq = chatlog_last_seq(s->log) },
                          "chat log %s/chat.log: %s; cut %llu bytes off the tail (saved to %s), kept %llu records%s",
                          c->state_directory, rec.reason, (unsigned long long) rec.cut_bytes,
                          rec.saved_to[0] ? rec.saved_to : "nowhere", (unsigned long long) rec.records,
                          rec.unsynced_tail ? " (the server group wrote them unsynced after the last checkpoint: "
                                              "it applies them again from its replicated log)" : "");
        else
                log_info("chat log %s/chat.log: %llu records, seqs %llu to %llu%s", c->state_directory,
                         (unsigned long long) rec.records, (unsigned long long) chatlog_first_seq(s->log),
                         (unsigned long long) chatlog_last_seq(s->log), rec.damaged_seqs ? " (some quarantined)" : "");
        if (!rec.checkpoint_used || rec.scanned)
                checkpoint(s);          /* the next start, even after a crash, reads only what comes after */
        s->pumped_seq = chatlog_last_seq(s->log);
        s->raft_refused_rl = RATELIMIT_INIT(10 * USEC_PER_SEC, 3);
        cm_coord_init(&s->coord, c->n_peers);
        if (central(s) && c->n_servers == 1)
                coord_start(s);         /* a group's leader starts it once elected (group_leader_changed) */
        if (c->n_servers > 1) {
                /* Raft's log is the durable record of a group's posts: the chat log is synced at
                 * snapshots, not at every apply (fsm.c, chatlog.c say why that is safe) */
                r = chatlog_set_unsynced(s->log);
                if (r < 0)
                        log_warning("cannot write the checkpoint %s/chat.log.idx: %s; the chat log is synced at "
                                    "every append instead", c->state_directory, strerror(-r));
                r = replica_new(e, c, s->log, &group_ops, s, &s->rep);
                if (r < 0)
                        goto fail;
                r = members_new(e, c, s->rep, &s->members);
                if (r < 0)
                        goto fail;
                net_set_member_hook(member_hook, s);
        }
        r = sd_event_add_defer(e, &s->flush_src, on_flush, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->flush_src, SD_EVENT_OFF);
        /* flush before anything else runs: it decides acknowledgements */
        (void) sd_event_source_set_priority(s->flush_src, SD_EVENT_PRIORITY_IMPORTANT);
        r = sd_event_add_io(e, &s->listen_src, listen_fd, EPOLLIN, on_accept, s);
        if (r < 0)
                goto fail;
        r = sd_event_add_time_relative(e, &s->heartbeat_timer, CLOCK_MONOTONIC, c->heartbeat_usec, 1000,
                                       on_heartbeat, s);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(s->heartbeat_timer, SD_EVENT_ON);
        *ret = s;
        return 0;
fail:
        server_free(s);
        return r;
}

struct server *server_free(struct server *s)
{
        if (!s)
                return NULL;
        flush_batch(s);
        /* Raft first: batches in flight are answered (lost lead) and the replication links closed */
        net_set_member_hook(NULL, NULL);
        s->rep = replica_free(s->rep);
        s->members = members_free(s->members);  /* after Raft: a change's callback may still come */
        while (s->gbatches) {
                struct gbatch *gb = s->gbatches;
                LIST_REMOVE(s->gbatches, gb);
                gbatch_free(gb);
        }
        while (s->dviews)
                dview_drop(s, s->dviews);
        if (s->log)
                checkpoint(s);
        s->presence_hook = NULL;                /* control goes first: nobody to tell */
        while (s->conns)
                conn_close(s->conns->c, -ESHUTDOWN);
        while (s->follows)                      /* control clients' follows */
                follow_drop(s, s->follows);
        sd_event_source_disable_unref(s->listen_src);
        sd_event_source_disable_unref(s->flush_src);
        sd_event_source_disable_unref(s->heartbeat_timer);
        chatlog_close(s->log);
        wbuf_free(&s->cluster);
        wbuf_free(&s->presence_buf);
        presence_clear(&s->local);
        free(s->entries);
        notes_clear(&s->notes);
        free(s);
        return NULL;
}

void server_reconf(struct server *s, const struct dchat_conf *c)
{
        s->conf = c;
        if (s->rep)
                replica_reconf(s->rep, c);
        members_reconf(s->members, c);
}

void server_status(struct server *s, struct dchat_status *st)
{
        st->last_seq = chatlog_last_seq(s->log);
        st->counters = s->stats;
        st->counters.fdatasyncs = chatlog_syncs(s->log);
        strlcpy(st->dme_state, "-", sizeof st->dme_state);
        strlcpy(st->dme_algorithm, dme_algo_name(s->conf->dme_algorithm), sizeof st->dme_algorithm);
        if (s->coord_active) {
                /* the coordinator: whether the section is granted, to which request, how many wait */
                strlcpy(st->dme_state, s->coord.settling ? "settling" : s->coord.holder >= 0 ? "granted" : "free",
                        sizeof st->dme_state);
                st->request_ts = s->coord.holder >= 0 ? s->coord.holder_ts : 0;
                st->queued = s->coord.qn;
        }
        st->n_peers = 0;
        for (unsigned i = 0; i < s->conf->n_peers && i < DCHAT_PEERS_MAX; i++) {
                struct dchat_peer_status *p = &st->peers[st->n_peers++];
                strlcpy(p->name, s->conf->peers[i].name, sizeof p->name);
                p->connected = false;
                for (struct sconn *sc = s->conns; sc; sc = sc->next)
                        p->connected |= !sc->server && !sc->query && strcmp(sc->node, p->name) == 0;
        }
        if (s->rep) {
                struct replica_status rs;
                replica_status(s->rep, &rs);
                strlcpy(st->raft_state, rs.state, sizeof st->raft_state);
                strlcpy(st->leader, rs.leader, sizeof st->leader);
                st->term = rs.term;
                st->applied_index = rs.applied_index;
                strlcpy(st->trouble, rs.trouble, sizeof st->trouble);
        }
}

void server_presence_local(struct server *s, const struct presence *mine)
{
        if (presence_copy(&s->local, mine) < 0)
                return;         /* out of memory: the peers keep the last one */
        for (struct sconn *sc = s->conns; sc; sc = sc->next)
                if (peer_link(sc) && sc->up_at)
                        send_presence(s, sc->c);
}

unsigned server_who(struct server *s, struct who_node *out, unsigned cap)
{
        uint64_t now = now_monotonic();
        char leader[DCHAT_NAME_MAX + 1] = "";
        unsigned n = 0;

        for (unsigned i = 0; i < s->conf->n_peers && n < cap; i++) {
                struct who_node *w = &out[n++];
                const struct sconn *found = NULL;

                *w = (struct who_node) { .name = s->conf->peers[i].name, .role = ROLE_PEER, .state = NODE_DOWN };
                for (const struct sconn *sc = s->conns; sc; sc = sc->next)
                        if (peer_link(sc) && sc->up_at && !strcmp(sc->node, w->name))
                                found = sc;             /* the newest: they are prepended */
                if (!found) {
                        snprintf(w->note, sizeof w->note, "not linked to this server%s",
                                 s->rep ? " (peers link to the group's leader)" : "");
                        continue;
                }
                w->state = found->alive.state == FD_SUSPECT ? NODE_SUSPECT : NODE_UP;
                w->since = (uint32_t) ((now - found->up_at) / USEC_PER_SEC);
                w->users = found->presence.known ? &found->presence : NULL;
        }
        if (s->rep)
                (void) replica_leader(s->rep, leader, NULL);
        for (unsigned i = 0; i < s->conf->n_servers && n < cap; i++) {
                if (i == s->conf->self)
                        continue;
                struct who_node *w = &out[n++];
                *w = (struct who_node) { .name = s->conf->servers[i].name, .role = ROLE_SERVER,
                                         .state = NODE_UNKNOWN };
                snprintf(w->note, sizeof w->note, "%sa server of the group (status shows how it is)",
                         !strcmp(leader, w->name) ? "the leader, " : "");
        }
        return n;
}

void server_set_presence_hook(struct server *s, void (*fn)(void *userdata), void *userdata)
{
        s->presence_hook = fn;
        s->presence_data = userdata;
}

struct chatlog *server_log(struct server *s)
{
        return s->log;
}
