/* SPDX-License-Identifier: MIT */
/*
 * dchatd.h — the daemon's private header, grouped by file: read it as the
 * map of the program.
 */
#pragma once

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <syslog.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "list.h"
#include "proto.h"
#include "fd.h"
#include "ra.h"
#include "notes.h"

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd) { if (*fd >= 0) close(*fd); }

#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC  1000000ULL

/* conf.c ------------------------------------------------------------------ */

#define DCHAT_DEFAULT_GROUP "dchat"     /* control_group: who may use the control socket */

struct node_conf {
        char name[DCHAT_NAME_MAX + 1];
        char address[128];              /* as written: "host:port" */
        struct sockaddr_storage sa;     /* resolved */
        socklen_t salen;
        int line;                       /* where it was defined */
        bool has_key;                   /* key = "...": its host key (issue 17) */
        uint8_t key[32];                /* the Ed25519 public key (SECURE_PK_BYTES) */
};

struct dchat_conf {
        char path[PATH_MAX];
        char node[DCHAT_NAME_MAX + 1];  /* this host */
        enum dchat_role role;
        unsigned self;                  /* index of this host in its list */

        struct node_conf servers[DCHAT_SERVERS_MAX];    /* 1: one server; 3, 5, 7: a group (Raft) */
        unsigned n_servers;
        struct node_conf peers[DCHAT_PEERS_MAX];
        unsigned n_peers;

        /* paths; empty = the systemd/default directories */
        char control_socket[PATH_MAX];
        char state_directory[PATH_MAX];
        char key_file[PATH_MAX];        /* key_file; empty = DCHAT_DEFAULT_KEY_FILE */
        char host_key_file[PATH_MAX];   /* host_key_file; empty = DCHAT_DEFAULT_HOST_KEY_FILE */
        bool insecure_plaintext;        /* insecure_plaintext, default false */
        enum dme_algo dme_algorithm;    /* dme_algorithm, default ricart-agrawala (every node the same) */

        /* tunables (changeable by reload) */
        uint64_t post_timeout_usec;     /* post_timeout_ms, default 10000 */
        uint64_t connect_timeout_usec;  /* connect_timeout_ms, default 3000 */
        uint64_t reconnect_min_usec;    /* reconnect_min_ms, default 100 */
        uint64_t reconnect_max_usec;    /* reconnect_max_ms, default 5000 */
        uint64_t heartbeat_usec;        /* heartbeat_ms, default 250 */
        uint64_t suspect_after_usec;    /* suspect_after_ms, default 1000 */
        uint64_t dead_after_usec;       /* dead_after_ms, default 3000 */
        uint64_t election_timeout_usec; /* election_timeout_ms, default 300 (server groups) */
        unsigned batch_max;             /* batch_max, default 64 */
        unsigned max_clients;           /* max_clients, default 64 */
        bool reuse_permissions;         /* reuse_permissions (Roucairol–Carvalho), default true */
        uint64_t handshake_timeout_usec;        /* handshake_timeout_ms, default 5000 */
        unsigned max_handshakes;        /* max_handshakes, default 32 */
        unsigned max_links_in;          /* max_links_in, default 256 */
        unsigned max_handshakes_per_address; /* max_handshakes_per_address, default 4 (a member's: x its nodes) */
        uint64_t first_message_timeout_usec; /* first_message_timeout_ms, default 1000 */
        unsigned max_clients_per_user;  /* max_clients_per_user, default 8 (not root) */
        unsigned max_queued_posts_per_user; /* max_queued_posts_per_user, default 32 (not root) */
        unsigned hold_max_ms;           /* hold_max_ms: longest post --hold (not root), default 0: root only */
        unsigned trace_events;          /* trace_events: a peer's ring of recent events, default 10000 */
        uint64_t client_idle_usec;      /* client_idle_timeout_ms, default 300000 */
        char control_group[33];         /* control_group, default "dchat" (restart) */
        bool debug;                     /* debug, default false: every frame sent and received ... */
        bool debug_heartbeats;          /* ... HEARTBEAT and RAFT frames too: debug_heartbeats, default false */

        uint64_t cluster_digest;        /* of the members (conf_cluster_encode), compared in HELLO */
};

/*
 * Loads and checks path.  node overrides the file's `node` (NULL: use the
 * file's, else the hostname).  On error returns a negative errno and puts
 * "file:line: problem" (or "file: problem") into err.
 */
int conf_load(const char *path, const char *node, struct dchat_conf *c, char *err, size_t errlen);

/*
 * The first setting read at the start only that differs ("key_file
 * changed"); NULL if none.  Which settings those are is in conf.c's key
 * table (conf_key_needs_restart).
 */
const char *conf_restart_needed(const struct dchat_conf *old, const struct dchat_conf *new);
/* The settings a reload changes, "post_timeout_ms 10000 -> 2500, debug false -> true" ("" if none). */
void conf_changes(const struct dchat_conf *old, const struct dchat_conf *new, char *buf, size_t cap);
/* Key i of the table (NULL past the end), and whether a change to it needs a restart. */
const char *conf_key_name(size_t i);
bool conf_key_needs_restart(size_t i);

/* How many members have a host key listed (key = "..."). */
unsigned conf_host_keys(const struct dchat_conf *c);
/* The member called name (server or peer), or NULL. */
const struct node_conf *conf_node(const struct dchat_conf *c, const char *name);

/* Writes a one-line summary of the effective configuration to the log. */
void conf_log_summary(const struct dchat_conf *c);

/*
 * The cluster definition as one node sees it: every member's role, name
 * and (numeric) address, in name order.  Nodes compare its digest in
 * HELLO; on a mismatch they exchange it (MSG_CLUSTER) and say what differs.
 */
void conf_cluster_msg(const struct dchat_conf *c, struct wbuf *b, struct dchat_msg *m);
/* The differences between c's members and those of a CLUSTER message from who, into buf ("" if none). */
void conf_cluster_diff(const struct dchat_conf *c, const char *who, const struct dchat_msg *m, char *buf, size_t cap);
/* A CLUSTER message from who: logs config-mismatch with what differs, once per digest (*reported). */
void conf_cluster_report(const struct dchat_conf *c, const char *who, const struct dchat_msg *m, uint64_t *reported);

/* log.c ------------------------------------------------------------------- */

enum log_event {
        EV_REQUEST_SENT,
        EV_REQUEST_RECEIVED,
        EV_REPLY_SENT,
        EV_REPLY_DEFERRED,
        EV_REPLY_RECEIVED,
        EV_CS_ENTER,
        EV_CS_EXIT,
        EV_POST_STORED,
        EV_POST_FAILED,
        EV_PEER_UP,
        EV_PEER_DOWN,
        EV_SERVER_UP,
        EV_SERVER_DOWN,
        EV_APPEND_REFUSED,
        EV_LOG_RECOVERED,
        EV_PROTOCOL_ERROR,
        EV_STARTED,
        EV_RELOADED,
        EV_STOPPING,
        EV_PEER_SUSPECT,
        EV_PEER_DEAD,
        EV_PEER_ALIVE,
        EV_PEER_RESTARTED,
        EV_POST_RETRIED,
        EV_LINK_AUTH_FAILED,
        EV_LINK_PLAINTEXT,
        EV_CLIENT_REFUSED,
        EV_CONFIG_MISMATCH,
        EV_LOG_DAMAGED,
        EV_LEADER_ELECTED,
        EV_LEADER_LOST,
        EV_SERVER_JOINED,
        EV_SERVER_REMOVED,
        EV_REPLICA_BEHIND,
        EV_REPLICA_CAUGHT_UP,
        EV_SNAPSHOT,
        EV_REPLICA_STALLED,
        EV_REPLICA_RESUMED,
        EV_REPLICA_DAMAGED,
        EV_PEER_LEFT,
        EV_RELOAD_REFUSED,
        EV_NOTE_WRITTEN,
        EV_NOTE_REFUSED,
        EV_REQUEST_QUEUED,      /* token, central: a request waits in a queue, not for a REPLY of ours */
        _EV_MAX,
};

struct event_fields {
        const char *peer;       /* DCHAT_PEER, or NULL */
        uint64_t lamport;       /* DCHAT_LAMPORT (clock after the event) */
        uint64_t request_ts;    /* DCHAT_REQUEST_TS, 0: omitted */
        uint64_t fence;         /* DCHAT_FENCE (its Lamport time) and DCHAT_FENCE_IDX, 0: omitted */
        uint32_t fence_idx;
        uint64_t seq;           /* DCHAT_SEQ, 0: omitted */
        const struct vclock *vc;        /* DCHAT_VCLOCK (after the event), NULL: omitted */
        uint64_t send_vt;       /* DCHAT_SEND_VT: a receive's sender's own component, 0: omitted */
};

/*
 * node: this host's name, used as DCHAT_NODE on every record.  Every
 * record gets the next number of this life (no= on stderr, DCHAT_EVENT_NO
 * in the journal) and stderr lines the wall-clock time to the microsecond.
 */
void log_open(const char *node);
void log_set_node(const char *node);
void log_set_debug(bool on);
/* The names of a vector clock's components (the peers, in order), for DCHAT_VCLOCK; must outlive the log. */
void log_set_vclock_names(const char *const *names, unsigned n);
void log_msg(int priority, const char *fmt, ...) _printf_(2, 3);
/* Returns the record's number (0 if it was not written: a debug line with debug off). */
uint64_t log_event(enum log_event ev, const struct event_fields *f, const char *fmt, ...) _printf_(3, 4);
/* The wall-clock time (CLOCK_REALTIME, µs) the last record was stamped with. */
uint64_t log_last_time_us(void);
const char *log_event_name(enum log_event ev);
/* The event named name (as in DCHAT_EVENT), or _EV_MAX. */
enum log_event log_event_by_name(const char *name);

/*
 * At most burst lines per interval for one kind of message that someone
 * outside can cause over and over; the next line that passes says how many
 * were left out meanwhile (ratelimit_suppressed, "" if none).
 */
struct ratelimit {
        uint64_t interval_usec;
        unsigned burst;
        uint64_t begin;                 /* this interval's start */
        unsigned passed;                /* lines in this interval */
        unsigned suppressed;            /* left out since the last one that passed */
        char note[48];
};
#define RATELIMIT_INIT(interval, b) ((struct ratelimit) { .interval_usec = (interval), .burst = (b) })
bool ratelimit_pass(struct ratelimit *rl, uint64_t now_usec);
const char *ratelimit_suppressed(struct ratelimit *rl);
/*
 * For a summary line of its own rather than a note on the next line that
 * passes: the lines left out, once the interval they fell in is over (then
 * counted afresh); 0 before.  ratelimit_due says when that is (UINT64_MAX:
 * nothing left out).
 */
unsigned ratelimit_flush(struct ratelimit *rl, uint64_t now_usec);
uint64_t ratelimit_due(const struct ratelimit *rl);

/*
 * Renders len bytes that came from outside (a name in a frame, text from a
 * client) for a log message: printable ASCII and valid UTF-8 as they are;
 * control characters, DEL, C1 controls and bytes that are no UTF-8 as \xNN;
 * a backslash as \\.  So nothing from outside can start a line of its own
 * or pass for an escape.  Cut with "..." to fit cap (NUL included); returns
 * buf.  (emit() also turns any control character into \xNN, as a last net.)
 */
#define LOG_QUOTE_NAME  (4 * DCHAT_NAME_MAX + 4)        /* room for a quoted node name */
const char *log_quote(char *buf, size_t cap, const char *s, size_t len);

#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_msg(LOG_ERR, __VA_ARGS__)

/* ring.c ------------------------------------------------------------------ */

/*
 * A peer's last protocol events, in memory (dchatctl trace).  capacity 0
 * keeps none; n_peers: the components of their vector clocks.
 */
struct ring;
int ring_new(unsigned capacity, unsigned n_peers, struct ring **ret);
struct ring *ring_free(struct ring *r);
/* trace_events reloaded: the newest events are kept. */
int ring_resize(struct ring *r, unsigned capacity);
void ring_add(struct ring *r, const struct dchat_trace_event *e);
unsigned ring_count(const struct ring *r);
unsigned ring_capacity(const struct ring *r);
/* What it takes in memory, all of it allocated (not all touched) at once. */
uint64_t ring_bytes(const struct ring *r);
/* The oldest and the newest event's numbers (0: none). */
uint64_t ring_first_no(const struct ring *r);
uint64_t ring_last_no(const struct ring *r);
/*
 * A page of TRACE_EVENTS appended to b: the events numbered from .. upto
 * (0: no end) timed since .. until (0: no bound), as many as fit in max
 * bytes.  *n events; *next: the number the next page starts at; *done:
 * none is left up to upto.
 */
void ring_page(const struct ring *r, uint64_t from, uint64_t upto, uint64_t since, uint64_t until, size_t max,
               struct wbuf *b, uint16_t *n, uint64_t *next, bool *done);

/* net.c ------------------------------------------------------------------- */

struct conn;

/*
 * A frame op's answer "not now": the frame is kept, first in line, and
 * nothing more is read from that connection (its client waits, its bytes
 * stay in the socket) until conn_resume.  Request/answer connections use it
 * to bound what one client can make us hold: one view at a time, and no
 * new request while CONN_OUT_HOLD bytes of answers wait for it to read them
 * (the drained op then resumes it).
 */
#define CONN_LATER      1
#define CONN_OUT_HOLD   (256 * 1024)

struct conn_ops {
        /* A whole, header-checked frame arrived.  Return <0 to drop the link, CONN_LATER to keep it for later. */
        int (*frame)(struct conn *c, uint8_t type, const uint8_t *payload, size_t len);
        /* An outgoing connection completed. */
        void (*connected)(struct conn *c);
        /* The connection is gone (error, EOF, bad frame, conn_close).  The
         * conn is freed right after this returns; forget the pointer. */
        void (*closed)(struct conn *c, int error);
        /* The output buffer drained below the low-water mark. */
        void (*drained)(struct conn *c);
};

struct conn *conn_new(sd_event *e, int fd, bool connecting, const struct conn_ops *ops,
                      void *userdata, const char *label);
/*
 * Non-blocking connect to sa, where node (a cluster member) listens; the
 * connected or closed op reports the end.  On a secure link, connected
 * comes once the handshake has proved that node is there with our key.
 */
int conn_connect(sd_event *e, const struct sockaddr *sa, socklen_t salen, const struct conn_ops *ops,
                 void *userdata, const char *label, const char *node, struct conn **ret);
/*
 * Cluster links from now on: the cluster key (DCHAT_KEY_BYTES) and this
 * host's host key (SECURE_SK_BYTES), each NULL when not held; both NULL:
 * plaintext.  conf (names, roles, host keys listed, handshake_timeout_ms,
 * max_handshakes, max_links_in) must outlive every connection.  Called
 * again at a reload (the keys are read again), then net_recheck_links().
 */
void net_set_security(const struct dchat_conf *conf, const uint8_t *key, const uint8_t *host_sk);
/*
 * After a reload: closes at once every open link the handshake would
 * refuse now (a member whose listed key changed or went away, one that got
 * in by the cluster key when this host no longer holds it), with
 * link-auth-failed.
 */
void net_recheck_links(void);
int conn_send(struct conn *c, const struct dchat_msg *msg);
/*
 * Between conn_cork and conn_uncork, conn_send only queues: the frames go
 * out together, in one send, at the uncork (nesting counts).
 */
void conn_cork(struct conn *c);
void conn_uncork(struct conn *c);
/* An ERROR frame answering tag; c may be NULL (the client went away). */
void conn_send_error(struct conn *c, uint32_t tag, enum dchat_err code, const char *fmt, ...) _printf_(4, 5);
/* One ERROR frame straight to fd, without waiting (best effort): why we hang up. */
void fd_send_error(int fd, uint32_t tag, enum dchat_err code, const char *fmt, ...) _printf_(4, 5);
/* Frames with a larger payload close the connection after an ERROR saying so (control socket). */
void conn_set_max_frame(struct conn *c, size_t max);
/*
 * An accepted TCP connection its owner refuses (a limit of its own): a
 * link-auth-failed line, rate-limited by address like net.c's refusals.
 * The caller closes fd.
 */
void conn_refuse(int fd, const char *label, const char *fmt, ...) _printf_(3, 4);
/* accept4() a non-blocking connection; label = "connection from ADDR".  -errno when none. */
int conn_accept(int listen_fd, char *label, size_t cap);
size_t conn_pending(const struct conn *c);
/* After CONN_LATER: dispatch the kept frames again (from the event loop, not from here). */
void conn_resume(struct conn *c);
/* CLOCK_MONOTONIC usec of the last byte received from or sent to c. */
uint64_t conn_last_io(const struct conn *c);
/* Requests received that have not had their final answer yet (see conn_set_linger). */
unsigned conn_unanswered(const struct conn *c);
/*
 * Request/answer connections (the control socket): when the client shuts
 * its writing side, keep the connection until every request it sent has
 * had its final answer (POSTED, ERROR, VIEW_END, STATUS_REPLY, VERIFY_REPLY, MEMBER_REPLY, TRACE_END) sent; a
 * FOLLOW, which has none, does not count.
 */
void conn_set_linger(struct conn *c);
void conn_close(struct conn *c, int error);
/*
 * What already arrived on c, read now (without waiting) and handed to the
 * owner as if it had woken up; c may be closed by it.  For an owner about to
 * close c for another reason (its pair closed): what the other end sent
 * before it went (a LEAVE) is handled, not thrown away with the socket.
 */
void conn_drain(struct conn *c);
/* Read nothing more; close once what is queued has been sent (an ERROR that says why). */
void conn_shutdown(struct conn *c);
/* Why a connection ended, for messages: "connection closed", "shutting down", strerror. */
const char *conn_strerror(int error);
void *conn_userdata(const struct conn *c);
const char *conn_label(const struct conn *c);
int conn_fd(const struct conn *c);
void conn_set_label(struct conn *c, const char *label);
/* Hands c over to another owner: its ops and userdata from now on. */
void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *userdata);

/*
 * Admission of an inbound cluster link (pure; net.c applies it): what is
 * pending and open now, and where the newcomer comes from.
 */
struct net_admit_query {
        unsigned links_in;              /* inbound links open (pending ones included) */
        unsigned pending;               /* inbound links before their first frame */
        unsigned from_address;          /* ... of which from the newcomer's address */
        unsigned strangers_pending;     /* ... of which from addresses of no node */
        unsigned share;                 /* nodes of the config at the newcomer's address; 0: a stranger */
};
enum net_admit {
        NET_ADMIT,
        NET_ADMIT_EVICT_SAME,           /* after closing the oldest pending one from its address */
        NET_ADMIT_EVICT_STRANGER,       /* after closing the oldest pending one from a stranger */
        NET_REFUSE_ADDRESS,             /* max_handshakes_per_address */
        NET_REFUSE_LINKS,               /* max_links_in */
        NET_REFUSE_HANDSHAKES,          /* max_handshakes */
};
enum net_admit net_admit(const struct dchat_conf *conf, const struct net_admit_query *q);

/* group_boot_id of c, keyed with the cluster key the links use (none: plaintext). */
void net_boot_id(const struct dchat_conf *c, uint8_t id[DCHAT_GROUP_ID_BYTES]);
/*
 * Who else may link to us as a member: a server-role daemon's answer for
 * a server that is not in cluster.servers (the group's configuration holds
 * it, or it asks to join: server.c sees which).  0: let it in.
 */
void net_set_member_hook(int (*hook)(void *userdata, const char *name, uint8_t role), void *userdata);

int sockaddr_parse(const char *s, struct sockaddr_storage *sa, socklen_t *len);
void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap);
int listen_tcp(const struct sockaddr *sa, socklen_t len);
int listen_unix(const char *path, mode_t mode);

/* incarnation.c ------------------------------------------------------------ */

/*
 * Hands out this start's incarnation (or a new post-id epoch): the counter
 * in DIR/incarnation plus one, at least at_least, written and synced before
 * it is returned.  On error a negative errno and a message in err.
 */
int incarnation_next(const char *dir, uint64_t at_least, uint64_t *ret, char *err, size_t errlen);
/*
 * The reservation of a peer's own vector-clock component (DIR/vclock): with
 * start, the value reserved so far (0: none) into *start and start + end
 * reserved; without, end reserved.  Written and synced before it returns.
 */
int vclock_reserve(const char *dir, uint64_t *start, uint64_t end, char *err, size_t errlen);

/* chatlog.c --------------------------------------------------------------- */

struct chatlog;

struct chatlog_recovery {
        uint64_t records;               /* records kept (in this file), damaged ones included */
        uint64_t base_seq;              /* seqs up to this one are archived (0: none) */
        uint64_t cut_bytes;             /* bytes cut off the tail */
        char saved_to[PATH_MAX];        /* where the cut bytes were kept, or "" */
        char reason[256];               /* why the tail was cut, or why the log cannot be opened */
        bool start_damaged;             /* -EBADMSG: the start record is damaged (chatlog_repair) */
        bool checkpoint_used;           /* chat.log.idx checked out and was used ... */
        uint64_t checkpoint_seq;        /* ... up to this seq */
        uint64_t scanned;               /* records read at open (those after the checkpoint) */
        char checkpoint_warning[128];   /* why chat.log.idx was there but discarded, or "" */
        unsigned damage_found;          /* damaged parts found by this open (chatlog_damage_get: found_now) */
        uint64_t damaged_seqs;          /* seqs in all the quarantined parts */
        uint64_t floor_seq;             /* a damaged end kept up to this seq, which a checkpoint vouched for (0: none) */
        char stale_link[NAME_MAX + 1];  /* a second name of chat.log left by an interrupted archive, removed */
        bool unsynced_tail;             /* the tail cut was written unsynced (chatlog_set_unsynced) after the checkpoint */
};

/* A quarantined part of the log (chatlog_damage_get). */
struct chatlog_damage_info {
        uint64_t first_seq, last_seq;   /* the seqs it stood for (first = last + 1: none) */
        uint64_t off, end;              /* its bytes in chat.log, kept there */
        const char *why;                /* "body checksum mismatch", ... */
        bool found_now;                 /* found by this open (else known from the checkpoint) */
        char copy[PATH_MAX];            /* its bytes copied aside, or "" */
        int copy_error;                 /* copying failed: -errno */
};

enum chatlog_result {
        CHATLOG_STORED,
        CHATLOG_DUPLICATE,              /* the same post is stored already; seq set */
        CHATLOG_FENCED,                 /* fence not greater than the last */
        CHATLOG_INVALID,                /* bad entry (text, names) */
        CHATLOG_BOUNDS,                 /* fence beyond the bounds (proto.h DCHAT_CLOCK_*) */
        CHATLOG_STALE,                  /* post id not above its node's last, and not stored: a late copy */
        CHATLOG_CONFLICT,               /* post id stored already, naming another post */
        CHATLOG_UNKNOWN,                /* cannot tell whether it is stored (archived or damaged part, read error) */
        CHATLOG_FAILED,                 /* the write or sync failed: not stored */
};

/*
 * Opens DIR/chat.log (creating it), locked against a second opener
 * (-EBUSY).  A checkpoint DIR/chat.log.idx is used if it checks out
 * against the log, so only the records after it are read; a bad one is
 * ignored (rec->checkpoint_warning) and the whole log read.
 *
 * Damage followed by good records is quarantined: the bytes stay, the
 * seqs they stood for read as damaged (chatlog_next), a copy goes to
 * chat.log.corrupt-seq-FIRST-LAST-at-OFFSET.  Only a bad tail with no good
 * record after it (a torn last write) is saved aside and cut (rec), and
 * never below what a checkpoint proved was stored; after a checkpoint that
 * says the appends after it were not synced (chatlog_set_unsynced), so is
 * the first bad record there with everything after it.  -EBADMSG (rec->reason)
 * if the log cannot be opened without losing anything: a damaged start
 * record (chatlog_repair), too many damaged parts, or good records whose
 * seqs cannot follow the damage before them.  Read errors are errors,
 * never damage: nothing is cut or quarantined for them.
 */
int chatlog_open(const char *dir, struct chatlog **ret, struct chatlog_recovery *rec);
struct chatlog *chatlog_close(struct chatlog *log);

/*
 * A server group's replica, whose chat log is the group's log applied and
 * can be had again from the others: cuts the log at its quarantined part i
 * (chatlog_damage_get), dropping it and everything after it, instead of
 * keeping it quarantined.  The bytes from there on are copied first to
 * DIR/chat.log.cut-from-seq-FIRST-at-OFFSET (saved: its path), and the
 * checkpoint is removed.  The log must be closed and opened again after
 * (appends fail meanwhile).
 */
int chatlog_cut_damage(struct chatlog *log, size_t i, char *saved, size_t cap);

/*
 * Writes the checkpoint DIR/chat.log.idx for the log as it is now (synced,
 * atomic rename, directory synced); once a read found damage, one that
 * makes the next open read the whole log.
 */
int chatlog_checkpoint(struct chatlog *log);
/* Enough records were appended since the last checkpoint that another one is worth it. */
bool chatlog_checkpoint_due(const struct chatlog *log);
/*
 * A server group's replica: from now on appends are written without
 * fdatasync (Raft's log, synced on a majority, is the durable record);
 * chatlog_sync makes them durable, and so does every checkpoint.  Writes a
 * checkpoint that says so first (so that the next open cuts a bad record
 * after it, a write lost in a crash, instead of quarantining it; the top
 * of chatlog.c has the whole argument).  0, or a negative errno: the
 * checkpoint could not be written, and appends stay synced.
 */
int chatlog_set_unsynced(struct chatlog *log);
/*
 * Makes every record appended so far durable (one fdatasync, none if all
 * is synced).  A failure stops appends until the log is opened again.
 */
int chatlog_sync(struct chatlog *log);

/*
 * Offline (the log must not be open anywhere): renames DIR/chat.log to
 * DIR/chat.log.FIRST-LAST (name gets that file name) and starts a new
 * chat.log whose start record carries on the seqs, the last fence and the
 * nodes' last post ids.  -ENODATA if the log has no records, -EBUSY if a
 * dchatd has it open; rec as for chatlog_open.  A failure before the new
 * log is in place undoes what was done (the old state); once it is in
 * place the archive is done, and a failure of what follows is returned as
 * success with a warning in warn (else "").
 */
int chatlog_archive(const char *dir, char *name, size_t cap, uint64_t *first, uint64_t *last,
                    struct chatlog_recovery *rec, char *warn, size_t warncap);

/* What chatlog_repair found and did. */
struct chatlog_repair {
        char archive[NAME_MAX + 1];     /* the archived log the start record was rebuilt from, or "" */
        uint64_t base_seq;              /* the new start record: seqs go on after this one */
        uint64_t first_entry;           /* seq of the first good entry in chat.log (0: none) */
        char saved_to[PATH_MAX];        /* the whole damaged log, kept under this name */
        char warning[512];              /* what may be lost (rebuilt without the archive), or "" */
        char error[256];                /* why it cannot repair (with -EBADMSG, -ENOENT) */
};

/*
 * Offline: rebuilds a damaged start record of DIR/chat.log from the
 * archived log it continues (DIR/chat.log.FIRST-LAST with LAST below the
 * first entry's seq, the greatest such), or if there is none from the
 * first good entry (rep->warning says what is lost).  The damaged file is
 * kept as chat.log.corrupt-TIME-start.  -EALREADY if the log opens as it
 * is (nothing to repair), -EBUSY if a dchatd has it open.
 */
int chatlog_repair(const char *dir, struct chatlog_repair *rep);

/*
 * Stores n entries in one write and one fdatasync: the chat log's apply
 * step, deterministic given the log.  Each entry is checked first, in this
 * order: valid; a post id not above its node's last stored one is a copy
 * (DUPLICATE with the seq of the same post, found under its own fence) or
 * not stored (STALE, CONFLICT, UNKNOWN — also when its fence falls in a
 * quarantined part: it may be there); the fence within the bounds and
 * greater than the last.  results[i] says what happened to entries[i], and
 * stored ones get their seq.  On a write or sync error nothing of the batch
 * is kept (those results become FAILED) and a negative errno is returned;
 * -EUCLEAN (nothing written, all FAILED) once a read found the log damaged.
 */
int chatlog_append(struct chatlog *log, struct dchat_entry *entries, unsigned n,
                   enum chatlog_result *results);

uint64_t chatlog_last_seq(const struct chatlog *log);
/* fdatasyncs made by chatlog_append and chatlog_sync since the log was opened */
uint64_t chatlog_syncs(const struct chatlog *log);
/* The first seq in this log: 1, or the one after the archived part. */
uint64_t chatlog_first_seq(const struct chatlog *log);
/* The first seq whose entry time is >= t (last seq + 1 if none). */
int chatlog_find_time(struct chatlog *log, int64_t t, uint64_t *seq);
uint64_t chatlog_last_post_id(const struct chatlog *log, const char *node);
void chatlog_last_fence(const struct chatlog *log, uint64_t *lamport, char node[DCHAT_NAME_MAX + 1],
                        uint32_t *fence_idx);

/*
 * Reads entry seq (first..last; an earlier seq starts at the first) into
 * e: 0, -ENOENT past the end, CHATLOG_DAMAGED when seqs e->seq ..
 * cur->damaged_last are quarantined (only e->seq is set; the cursor goes
 * on after them), -EBADMSG when a record not known to be damaged does not
 * check out (chatlog_damaged_at says where from then on: appends are
 * refused until the log is opened again, which quarantines it), or
 * another -errno when reading failed (an I/O error: nothing is marked).
 */
#define CHATLOG_DAMAGED 1
struct chatlog_cursor {
        uint64_t seq;                   /* next seq to read */
        uint64_t off;                   /* its file offset */
        uint64_t damaged_last;          /* CHATLOG_DAMAGED: the last seq of the quarantined part */
        const char *damaged_why;        /* ... and why it is */
};
int chatlog_seek(struct chatlog *log, uint64_t seq, struct chatlog_cursor *cur);
int chatlog_next(struct chatlog *log, struct chatlog_cursor *cur, struct dchat_entry *e);

/* Damage found by a read since the log was opened: the first seq found damaged, 0 if none. */
uint64_t chatlog_damaged_at(const struct chatlog *log);
/* The quarantined parts, in log order. */
size_t chatlog_damage_count(const struct chatlog *log);
void chatlog_damage_get(const struct chatlog *log, size_t i, struct chatlog_damage_info *d);

/* fence order: (lamport, node, fence_idx) */
int fence_cmp(uint64_t la, const char *na, uint32_t ia, uint64_t lb, const char *nb, uint32_t ib);

/* uvloop.c ---------------------------------------------------------------- */

struct uvloop;
struct uv_loop_s;
int uvloop_new(sd_event *e, struct uvloop **ret);
struct uvloop *uvloop_free(struct uvloop *u);
struct uv_loop_s *uvloop_loop(struct uvloop *u);
/* Run the libuv loop once more at the end of this turn (after calls into libraft). */
void uvloop_kick(struct uvloop *u);
/* fn(data) after every turn of the libuv loop. */
void uvloop_set_hook(struct uvloop *u, void (*fn)(void *), void *data);
/* Stopping: run the libuv loop until its handles are closed, at most max_usec. */
void uvloop_drain(struct uvloop *u, uint64_t max_usec);

/* fsm.c ------------------------------------------------------------------- */

#define FSM_BATCH_MAX   1024            /* posts in one replicated command */

struct fsm;
struct raft_fsm;
struct raft_buffer;

enum fsm_state {
        FSM_READY,                      /* applies commands */
        FSM_CATCHUP,                    /* fetches the entries a snapshot or the genesis says it lacks */
        FSM_DIVERGED,                   /* its log is not the group's: applies nothing */
};

/* An entry of the log as the group names it: its seq, fence and post id (seq 0: the empty log). */
struct fsm_mark {
        uint64_t seq;
        uint64_t lamport;
        char node[DCHAT_NAME_MAX + 1];
        uint32_t fence_idx;
        uint64_t post_id;
};

/* What applying a command did: a batch's results (valid until the next apply), or a genesis. */
struct fsm_result {
        unsigned n;
        struct dchat_entry *entries;    /* with their seqs */
        enum chatlog_result *results;
        int error;                      /* chatlog_append's, if the write failed */
        bool genesis;
        bool deferred;                  /* not applied yet: it waits (fsm_waiting), n is 0 */
        bool note;                      /* a write to the shared notes ... */
        struct note_outcome note_out;   /* ... and what became of it */
};

int fsm_new(struct chatlog *log, struct fsm **ret);
struct fsm *fsm_free(struct fsm *f);
struct raft_fsm *fsm_raft(struct fsm *f);
/* Commands (raft_malloc'd, padded to 8 bytes) for raft_apply. */
int fsm_encode_batch(const struct dchat_entry *e, unsigned n, struct raft_buffer *out);
int fsm_encode_genesis(const struct fsm_mark *m, struct raft_buffer *out);
int fsm_encode_note(const struct note_write *w, struct raft_buffer *out);
/* The shared notes as this replica applied them (notes.h). */
struct notes *fsm_notes(struct fsm *f);
enum fsm_state fsm_state(const struct fsm *f, const char **why);
bool fsm_genesis_done(const struct fsm *f);
int fsm_mark_last(struct fsm *f, struct fsm_mark *m);
/*
 * CATCHUP: the entries from..to->seq are wanted (true), to be given in order
 * to fsm_feed.  The first page starts with this log's own last entry, which
 * must be the group's (else DIVERGED).  fsm_feed returns how many entries it
 * stored (that first one is not stored again), or a negative errno.
 */
bool fsm_catchup(const struct fsm *f, uint64_t *from, struct fsm_mark *to);
int fsm_feed(struct fsm *f, struct dchat_entry *e, unsigned n);
uint64_t fsm_applied(const struct fsm *f);
/*
 * Commands libraft counts as applied that wait to be, in order: they came
 * while the log was catching up or after a write failed.  No snapshot is
 * taken meanwhile.  fsm_drain applies them once the state machine is
 * ready (-EAGAIN: a write failed again, the rest still waits).
 */
unsigned fsm_waiting(const struct fsm *f);
int fsm_drain(struct fsm *f);
/* The last batch could not be written here (a negative errno; 0: none): it is applied again later. */
int fsm_apply_error(const struct fsm *f);
/* The raft instance the state machine serves (its last applied index names a snapshot). */
struct raft;
void fsm_attach(struct fsm *f, struct raft *raft);
/* Snapshots taken (at a Raft index, naming the log up to a seq) and restored, since the start. */
struct fsm_snapshots {
        uint64_t taken, taken_index, taken_seq;
        uint64_t restored, restored_seq;
};
void fsm_snapshots(const struct fsm *f, struct fsm_snapshots *s);

/* transport.c ----------------------------------------------------------------- */

struct transport;
struct raft_uv_transport;
/* A server's id in libraft: a digest of its name (so ids need no table). */
unsigned long long transport_id_of(const char *name);
/* Its address in libraft's configuration: "NAME@HOST:PORT". */
void transport_address(const char *name, const char *address, char *buf, size_t cap);
int transport_new(sd_event *e, struct uvloop *uv, const struct dchat_conf *conf, struct transport **ret);
struct transport *transport_free(struct transport *tr);
struct raft_uv_transport *transport_raft(struct transport *tr);
void transport_reconf(struct transport *tr, const struct dchat_conf *conf);
/*
 * An inbound link of server name (at address) whose first frame after HELLO
 * is RAFT (payload, len): it becomes a replication stream (its conn ops are
 * the transport's from now on).
 */
int transport_accept(struct transport *tr, struct conn *c, const char *name, const char *address,
                     const uint8_t *payload, size_t len);
/*
 * This server's group id (and boot id): its outbound links say it in a
 * GROUP before any Raft byte, and check the answer with check (0: the same
 * group; <0: the link is closed).
 */
void transport_set_group(struct transport *tr, const uint8_t *group_id, const uint8_t *boot_id,
                         int (*check)(void *userdata, const char *name, uint8_t state, const uint8_t *id),
                         void *userdata);

/* catchup.c ------------------------------------------------------------------- */

struct catchup;
int catchup_new(sd_event *e, const struct dchat_conf *conf, struct fsm *fsm, struct catchup **ret);
struct catchup *catchup_free(struct catchup *cu);
void catchup_reconf(struct catchup *cu, const struct dchat_conf *conf);
/* Fetch from another server (the leader, if named and not us) when the state machine waits for entries. */
void catchup_tick(struct catchup *cu, const char *leader);
/* Entries fetched since it started, and for how long. */
uint64_t catchup_fetched(const struct catchup *cu, uint64_t *usec, uint64_t *last_seq);
/* Storing fetched entries failed here (a full disk: -errno; 0: no): it is tried again, later. */
int catchup_store_error(const struct catchup *cu);
void catchup_reset(struct catchup *cu);

/* join.c ---------------------------------------------------------------------- */

/*
 * The id a new group of c's servers gets: a digest of the servers (names
 * and addresses as written, in name order), keyed with key (the cluster
 * key, DCHAT_KEY_BYTES) or unkeyed (NULL: plaintext links).  Servers that
 * would bootstrap the very same Raft configuration get the same id.
 */
void group_boot_id(const struct dchat_conf *c, const uint8_t *key, uint8_t id[DCHAT_GROUP_ID_BYTES]);
bool group_id_is_set(const uint8_t id[DCHAT_GROUP_ID_BYTES]);
const char *group_id_format(const uint8_t id[DCHAT_GROUP_ID_BYTES], char buf[DCHAT_GROUP_ID_BYTES * 2 + 1]);
/* DIR/group-id: the group this Raft directory belongs to (-ENOENT: none recorded). */
int group_id_read(const char *dir, uint8_t id[DCHAT_GROUP_ID_BYTES]);
int group_id_write(const char *dir, const uint8_t id[DCHAT_GROUP_ID_BYTES]);

/* What one other configured server answered to GROUP. */
enum join_answer_kind {
        JOIN_ANSWER_NONE,               /* no answer (unreachable, silent, refused the link) */
        JOIN_ANSWER_EMPTY,              /* no Raft state; it would start the group boot_id */
        JOIN_ANSWER_STATE,              /* Raft state of the group group_id (or removed from it) */
        JOIN_ANSWER_REFUSED,            /* it takes part in no group (its state is another's) */
};
struct join_answer {
        char name[DCHAT_NAME_MAX + 1];
        enum join_answer_kind kind;
        uint8_t group_id[DCHAT_GROUP_ID_BYTES];
        uint8_t boot_id[DCHAT_GROUP_ID_BYTES];
        uint8_t your_role;              /* enum dchat_member_role of the asker in its configuration */
        uint64_t last_index;            /* its last Raft index (1: the first configuration alone) */
};
struct join_input {
        unsigned n_servers;             /* in cluster.servers, this one included */
        const char *self;               /* this server's name */
        bool have_state;                /* this server holds Raft state ... */
        uint8_t group_id[DCHAT_GROUP_ID_BYTES];         /* ... of this group */
        uint8_t boot_id[DCHAT_GROUP_ID_BYTES];          /* the group it would start (group_boot_id) */
        unsigned n;                     /* answers of the other servers */
        const struct join_answer *answers;
};
enum join_decision {
        JOIN_WAIT,                      /* ask again later (why) */
        JOIN_BOOTSTRAP,                 /* start a new group: group_id is its id */
        JOIN_JOIN,                      /* start Raft without bootstrapping, in the group group_id (role: ours there) */
        JOIN_START,                     /* start Raft on the state it holds */
        JOIN_REFUSE,                    /* take no part (why) */
};
struct join_result {
        enum join_decision d;
        uint8_t group_id[DCHAT_GROUP_ID_BYTES];
        uint8_t role;                   /* JOIN: enum dchat_member_role in the group's configuration */
        char why[768];
};
/*
 * Pure: what a server does at its start, from what the other servers said.
 * Without Raft state: join if any holds state (the group a majority of
 * them names, if they disagree) — but bootstrap if that group was made
 * from this server's very configuration and holds nothing but its first
 * entry (a first member come late); bootstrap if a majority of all servers
 * (itself counted) hold none and would start the same group (refused for
 * an even number of servers); else wait.  With state: start, unless a
 * majority of all servers hold another group's state (refuse).
 */
enum join_decision join_decide(const struct join_input *in, struct join_result *out);

/*
 * One GROUP question to a server over a link of its own (HELLO as a
 * server).  cb gets the GROUP_REPLY (valid during the call), or NULL and
 * why (unreachable, an ERROR, no answer within timeout_usec).  The link
 * stays open for gask_again until gask_free, which cb may call.
 */
struct gask;
typedef void (*gask_cb)(void *userdata, struct gask *q, const struct dchat_msg *reply, const char *why);
int gask_start(sd_event *e, const struct dchat_conf *conf, const char *name, const struct sockaddr *sa,
               socklen_t salen, const uint8_t group_id[DCHAT_GROUP_ID_BYTES],
               const uint8_t boot_id[DCHAT_GROUP_ID_BYTES], uint64_t timeout_usec, gask_cb cb, void *userdata,
               struct gask **ret);
int gask_again(struct gask *q);
const char *gask_name(const struct gask *q);
struct gask *gask_free(struct gask *q);

/*
 * A server asks the others at its start (join_decide): with an empty Raft
 * directory (group_id NULL) in rounds with a bounded backoff, saying why it
 * waits, until it may bootstrap, join or must refuse; with state (its
 * group_id) once, to start or refuse.  Then done (which may free it).
 */
struct join;
typedef void (*join_done_fn)(void *userdata, const struct join_result *res);
int join_start(sd_event *e, const struct dchat_conf *c, const uint8_t *group_id,
               const uint8_t boot_id[DCHAT_GROUP_ID_BYTES], join_done_fn done, void *userdata, struct join **ret);
/* Something happened that may change the answers (a server links to us): ask again now. */
void join_poke(struct join *j);
void join_reconf(struct join *j, const struct dchat_conf *c);
struct join *join_free(struct join *j);

/* replica.c ------------------------------------------------------------------- */

struct replica;

enum replica_phase {
        REP_ASKING,                     /* an empty Raft directory: the others are asked first (join.c) */
        REP_RUNNING,                    /* a member: Raft runs, or is stopped for trouble and starts again */
        REP_REMOVED,                    /* removed from the group: no Raft, serves nothing */
        REP_REFUSED,                    /* its state is another group's, or it may not start one: no Raft */
};

struct replica_ops {
        /* A batch submitted with cookie was applied (res), or will never be by this leader (status != 0). */
        void (*applied)(void *userdata, void *cookie, const struct fsm_result *res, int status);
        /* This server's role or the group's leader changed (leader NULL: none known). */
        void (*leader_changed)(void *userdata, bool is_leader, const char *leader, uint64_t term);
        /* The state machine's state changed (caught up, diverged). */
        void (*fsm_changed)(void *userdata, enum fsm_state st);
        /* After every turn of the group's loop (entries may have been applied). */
        void (*tick)(void *userdata);
        /* This server's place in the group changed (replica_phase): it runs Raft, or was removed, ... */
        void (*phase_changed)(void *userdata, enum replica_phase phase);
};

struct replica_status {
        char state[16];                 /* leader | follower | candidate | unavailable | joining | removed | refused */
        char leader[DCHAT_NAME_MAX + 1];
        uint64_t term, last_index, commit_index, applied_index;
        unsigned in_flight;
        enum fsm_state fsm_state;
        char trouble[DCHAT_NOTE_MAX + 1];       /* why this server takes no part just now ("" if it does) */
};

/*
 * Its engine (libraft, its storage and transport, the state machine) is
 * stopped and started again by itself when it cannot go on (a full disk,
 * libraft giving up), and a damaged Raft log is set aside (replica.c says
 * how and why): a replica, once made, always exists, running or waiting
 * to start again, and replica_status says why it waits.
 */
int replica_new(sd_event *e, const struct dchat_conf *c, struct chatlog *log, const struct replica_ops *ops,
                void *userdata, struct replica **ret);
struct replica *replica_free(struct replica *rep);
void replica_reconf(struct replica *rep, const struct dchat_conf *c);
bool replica_is_leader(struct replica *rep);
/* The state machine cannot apply just now (it catches up, or commands wait after a failed write). */
bool replica_busy(struct replica *rep);
bool replica_leader(struct replica *rep, char name[DCHAT_NAME_MAX + 1], uint64_t *term);
/* Replicate n entries as one command: -ENOTCONN if this server does not lead. */
int replica_submit(struct replica *rep, const struct dchat_entry *e, unsigned n, void *cookie);
/* Replicate a write to the shared notes; the applied op's result has note set. */
int replica_submit_note(struct replica *rep, const struct note_write *w, void *cookie);
/* The shared notes this server applied (NULL while its engine is stopped or its log diverged). */
struct notes *replica_notes(struct replica *rep);
void replica_status(struct replica *rep, struct replica_status *st);
/* NULL while the engine is stopped. */
struct transport *replica_transport(struct replica *rep);
struct fsm *replica_fsm(struct replica *rep);

/* Membership (see join.c, members.c). */
enum replica_phase replica_phase(const struct replica *rep);
const uint8_t *replica_group_id(const struct replica *rep);
/*
 * name's role in the configuration Raft runs with (committed or not), and
 * its "HOST:PORT" there; while the engine is stopped for trouble, in the
 * committed configuration last seen.
 */
enum dchat_member_role replica_member(struct replica *rep, const char *name, char *address, size_t cap);
const char *member_role_name(uint8_t role);
/* Is name in that configuration (any role)? */
bool replica_knows(struct replica *rep, const char *name);
/* Is that configuration committed (no change under way)? */
bool replica_conf_committed(struct replica *rep);
/* name's "HOST:PORT" in that configuration (or, removed, the leader the others named): "" if unknown. */
void replica_address_of(struct replica *rep, const char *name, char *buf, size_t cap);
/* Its voters (their names, ", "-separated, into names if not NULL) and all its servers. */
unsigned replica_voters(struct replica *rep, char *names, size_t cap);
unsigned replica_members(struct replica *rep);
/* This server's last applied and last Raft index (as last known while the engine is stopped). */
void replica_progress(struct replica *rep, uint64_t *applied, uint64_t *last);
/* The last seq of this server's chat log. */
uint64_t replica_last_seq(const struct replica *rep);
/* A GROUP_REPLY to asker (its strings in a). */
struct replica_answer {
        struct dchat_msg m;
        char leader[DCHAT_NAME_MAX + 1];
        char address[128];
};
void replica_group_reply(struct replica *rep, const char *asker, uint32_t tag, struct replica_answer *a);
/*
 * Server name said it holds Raft state of group id (GROUP, GROUP_REPLY):
 * 0 if it is this server's group (or nothing can be told), -EXDEV if
 * another's (logged once; when a majority of the servers say so, this
 * server is the odd one and stops taking part).
 */
int replica_note_group(struct replica *rep, const char *name, uint8_t state, const uint8_t *id);
/* Something may have changed for a server that waits to start (a server links to it): ask again now. */
void replica_poke(struct replica *rep);
/*
 * The leader changes the configuration (one change at a time): cb(status
 * 0, or -ENOTCONN when the lead was lost, -EIO; why) once it is committed.
 * Returns -ENOTCONN (not the leader), -EBUSY (a change is under way),
 * -EINVAL (err says why) or -ENOMEM at once.
 */
enum replica_change_op { REPLICA_ADD, REPLICA_STANDBY, REPLICA_VOTER, REPLICA_REMOVE };
typedef void (*replica_change_cb)(void *userdata, int status, const char *why);
int replica_change(struct replica *rep, enum replica_change_op op, const char *name, const char *address,
                   replica_change_cb cb, void *userdata, char *err, size_t errcap);

/* members.c --------------------------------------------------------------- */

/*
 * server add / server remove: the leader changes the group's configuration
 * (an added server is a standby until it caught up, then a voter); another
 * server passes the request on to the leader.  One change at a time.
 */
struct members;
int members_new(sd_event *e, const struct dchat_conf *c, struct replica *rep, struct members **ret);
struct members *members_free(struct members *m);
void members_reconf(struct members *m, const struct dchat_conf *c);
/*
 * MEMBER (valid per proto_decode) for the group; MEMBER_REPLY or ERROR goes
 * to `to` under the request's tag.  from_server: it came over another
 * server's link, so it is not passed on again.
 */
int members_request(struct members *m, const struct dchat_msg *req, struct conn *to, bool from_server);
void members_client_gone(struct members *m, struct conn *to);
void members_leader_changed(struct members *m, bool is_leader);
/* verify.c ---------------------------------------------------------------- */

/*
 * A server's answer to DIGEST from its log: the DIGEST_REPLY in ans, its
 * digests in out (DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES bytes).  At most
 * DCHAT_DIGEST_WORK entries are read.  -EINVAL for a question it cannot
 * answer, -EBADMSG if a record does not check out, another -errno if the
 * log cannot be read; why says what, for the ERROR.
 */
int verify_digest(struct chatlog *log, const struct dchat_msg *req, struct dchat_msg *ans, uint8_t *out,
                  struct dchat_entry *scratch, const char **why);

/* The asker's comparison of the servers' logs (no I/O: the ops carry it). */
struct verify;
struct verify_ops {
        /* Put question q to server i; its answers come back through verify_input, later (not from inside). */
        int (*ask)(void *userdata, unsigned i, const struct dchat_msg *q);
        /* The end: a VERIFY_REPLY, or an ERROR saying why there is none (its pointers valid during the call). */
        void (*done)(void *userdata, const struct dchat_msg *answer);
};
struct verify *verify_new(unsigned n, char names[][DCHAT_NAME_MAX + 1], const struct verify_ops *ops,
                          void *userdata);
struct verify *verify_free(struct verify *v);
void verify_begin(struct verify *v);
/* A frame from server i: the answers to its current question are taken, the rest ignored. */
void verify_input(struct verify *v, unsigned i, const struct dchat_msg *m);
/* Server i cannot be asked (unreachable, gone, silent): the verify ends with an ERROR that names it. */
void verify_fail(struct verify *v, unsigned i, const char *why);
bool verify_done(const struct verify *v);
/* Is the answer of server i to the current question awaited? */
bool verify_waiting_for(const struct verify *v, unsigned i);

/* query.c ------------------------------------------------------------------ */

/*
 * Questions to the servers of a group over short-lived links of their own
 * (HELLO as a server, or as a peer with incarnation 0, which replaces no
 * link of ours): the group's figures for a status, and a verify.  The
 * answers come through done, from the event loop; freeing a running one
 * cancels it (no done then).
 */
struct gstat;
/*
 * st holds this node's own status; its servers[] are filled in from every
 * server of the group (this one's from st itself), an unreachable one
 * marked so within timeout_usec, and its leader and term from what the
 * servers say.
 */
int gstat_start(sd_event *e, const struct dchat_conf *c, struct dchat_status *st, uint64_t timeout_usec,
                void (*done)(void *userdata, struct dchat_status *st), void *userdata, struct gstat **ret);
struct gstat *gstat_free(struct gstat *g);

struct vjob;
/* local: this server's own log (NULL on a peer). */
int vjob_start(sd_event *e, const struct dchat_conf *c, struct chatlog *local,
               void (*done)(void *userdata, const struct dchat_msg *answer), void *userdata, struct vjob **ret);
struct vjob *vjob_free(struct vjob *j);

/* presence.c ------------------------------------------------------------- */

/* A node's users: those with a chat or a follow open on it, sorted by name, each once. */
struct presence_user {
        char name[DCHAT_NAME_MAX + 1];
        uint8_t kinds;                  /* PRESENCE_CHAT | PRESENCE_FOLLOW */
};
struct presence {
        bool known;                     /* the node said (else nothing is known of its users) */
        unsigned n, cap;
        unsigned more;                  /* more users than a PRESENCE that came listed */
        struct presence_user *users;
};
/* Forgets the users (known = false) and frees them. */
void presence_clear(struct presence *ps);
/* Adds kinds to user name (once per name; known = true).  -ENOMEM */
/* (No bound here: a PRESENCE lists the first DCHAT_PRESENCE_MAX by name and counts the rest.) */
int presence_add(struct presence *ps, const char *name, uint8_t kinds);
/* The users of a decoded PRESENCE replace ps's.  -EBADMSG, -ENOMEM (ps unchanged then). */
int presence_take(struct presence *ps, const struct dchat_msg *m);
int presence_copy(struct presence *dst, const struct presence *src);
bool presence_equal(const struct presence *a, const struct presence *b);

/* A node as WHO shows it, from the answering node's point of view. */
struct who_node {
        const char *name;
        uint8_t role;                   /* ROLE_SERVER | ROLE_PEER */
        uint8_t state;                  /* enum dchat_node_state */
        uint32_t since;                 /* seconds in it (0: not known) */
        char note[DCHAT_NOTE_MAX + 1];  /* why it is down, who leads, ... ("" if nothing to say) */
        const struct presence *users;   /* NULL: not known */
};
/* The PRESENCE for w with users ps (NULL: unknown) and flags: the users encoded into b, which m points into. */
void presence_msg(const struct presence *ps, const struct who_node *w, uint8_t flags, struct wbuf *b,
                  struct dchat_msg *m);
/* What a watcher would see change (state, note, users; not since). */
uint64_t who_node_digest(const struct who_node *w);

/* server.c ---------------------------------------------------------------- */

struct server;
int server_new(sd_event *e, const struct dchat_conf *c, int listen_fd, struct server **ret);
struct server *server_free(struct server *s);
void server_reconf(struct server *s, const struct dchat_conf *c);
void server_status(struct server *s, struct dchat_status *st);
struct chatlog *server_log(struct server *s);
/* MEMBER from a control client (server add, server remove): for the group's leader. */
int server_member(struct server *s, const struct dchat_msg *req, struct conn *to);
/* A NOTE read (GET, LIST) answered from this server's notes. */
int server_note_read(struct server *s, const struct dchat_msg *m, struct conn *to);
/*
 * Presence: our local users (control.c) go to every peer linked to us; WHO:
 * the nodes other than this one, as this server sees them (at most cap).
 * fn(userdata) runs when any of them changes (a peer linked or gone, its
 * users).
 */
void server_presence_local(struct server *s, const struct presence *mine);
unsigned server_who(struct server *s, struct who_node *out, unsigned cap);
void server_set_presence_hook(struct server *s, void (*fn)(void *userdata), void *userdata);
/* Serves a local VIEW page (control socket of a server-role daemon). */
int server_view_page(struct server *s, const struct dchat_msg *req, struct conn *to);
/* FOLLOW from a peer link or a local control client: ENTRY frames from from_seq on, then live. */
int server_follow(struct server *s, const struct dchat_msg *req, struct conn *to);
/* That connection's output drained (its follow goes on) / it is gone (its follow ends). */
void server_client_drained(struct server *s, struct conn *c);
void server_client_gone(struct server *s, struct conn *c);

/* peer.c, postq.c, fanout.c ----------------------------------------------- */

/*
 * The peer role.  Its parts (peer.c, mesh.c, uplink.c, postq.c, fanout.c)
 * and what they call in each other are mapped in peer.h.
 */
struct peer;
struct post_req;
int peer_new(sd_event *e, const struct dchat_conf *c, int listen_fd, struct peer **ret);
struct peer *peer_free(struct peer *p);
void peer_reconf(struct peer *p, const struct dchat_conf *c);
void peer_status(struct peer *p, struct dchat_status *st);

/*
 * Presence (mesh.c, uplink.c, peer.c): our local users (control.c) go to
 * the other peers and to the server we link to; WHO: the nodes other than
 * this one, as this peer sees them (at most cap; the users point into the
 * peer, valid until the event loop runs again).  fn(userdata) runs when any
 * of them changes (a link up or down, the failure detector, their users).
 */
void peer_presence_local(struct peer *p, const struct presence *mine);
unsigned peer_who(struct peer *p, struct who_node *out, unsigned cap);
void peer_set_presence_hook(struct peer *p, void (*fn)(void *userdata), void *userdata);

/* postq.c: queue a post from a control client; the answer goes to client with tag. */
/* hold_ms: keep the critical section that long after this post is stored (post --hold). */
int peer_post(struct peer *p, struct conn *client, uint32_t tag, const char *author, int32_t utc_offset,
              uint32_t hold_ms, const char *text, size_t len);
/* A NOTE from a client (dchatctl note): reads go to the server, writes wait for the critical section. */
int peer_note(struct peer *p, struct conn *client, uint32_t tag, const char *author, const struct dchat_msg *req);
/* fanout.c: relay a VIEW page request to the server. */
int peer_view(struct peer *p, struct conn *client, const struct dchat_msg *req);
/* postq.c: posts by author not stored yet (queued or in the critical section), whoever waits for them. */
unsigned peer_posts_of(struct peer *p, const char *author);
/* gather.c: TRACE from a control client: every peer's recent events, then TRACE_END. */
int peer_trace(struct peer *p, struct conn *client, const struct dchat_msg *req);
/* A control client went away: forget its pending posts' answers, views and follow. */
void peer_client_gone(struct peer *p, struct conn *client);
/* fanout.c: FOLLOW from a control client: catch up from from_seq by pages, then live entries. */
int peer_follow(struct peer *p, struct conn *client, const struct dchat_msg *req);
/* fanout.c: a control client's output drained: a follower that fell behind goes on. */
void peer_client_drained(struct peer *p, struct conn *client);
/* MEMBER from a control client (server add, server remove): passed on to the server group. */
int peer_member(struct peer *p, struct conn *client, const struct dchat_msg *req);

/* control.c --------------------------------------------------------------- */

struct control;
struct daemon;
int control_new(sd_event *e, struct daemon *d, int listen_fd, struct control **ret);
struct control *control_free(struct control *ctl);
/* Takes the reloaded max_clients and client_idle_timeout_ms from the daemon's conf. */
void control_reconf(struct control *ctl);
unsigned control_clients(const struct control *ctl);

/* Fills st from whichever role runs (control.c). */
void daemon_status(struct daemon *d, struct dchat_status *st);

/* dchatd.c ---------------------------------------------------------------- */

struct daemon {
        sd_event *event;
        struct dchat_conf conf;
        char conf_path[PATH_MAX];
        const char *node_override;
        struct server *server;
        struct peer *peer;
        struct control *control;
        uint64_t started_usec;
        char reload_refused[DCHAT_ERROR_MAX];   /* why the last reload was refused ("" if it was not) */
        /*
         * Reread the configuration (SIGHUP, or RELOAD on the control socket;
         * dchatd.c, NULL in unit tests).  0: applied, msg says what changed.
         * <0: refused, the running configuration kept, msg says why
         * ("file:line: ..." or "X changed, which needs a restart ..."); logged
         * as reload-refused and shown in STATUS= until a reload succeeds.
         */
        int (*reload)(struct daemon *d, char *msg, size_t cap);
};

/* Recompute and send STATUS= to systemd. */
void daemon_notify_status(struct daemon *d);
