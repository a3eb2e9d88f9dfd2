/* SPDX-License-Identifier: MIT */
/*
 * proto.h — the dchat wire format, shared by dchatd and dchatctl.
 *
 * Every connection (peer–peer, peer–server, dchatctl–dchatd) carries frames:
 *
 *   +--------+--------+--------+--------+---------------------+
 *   | length (u32, big endian, payload) | ver(u8) | type(u8)  |
 *   +--------+--------+--------+--------+---------------------+
 *   | flags (u16, must be 0)            | payload ...         |
 *
 * The header is checked (version, type, length <= DCHAT_FRAME_MAX) before
 * anything is dispatched; the payload is then decoded into a struct
 * dchat_msg with every length checked.  Integers are big endian; a string
 * is a u16 length followed by that many bytes (no NUL).
 *
 * dchat-protocol(7) is the long form of this comment (see man/).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DCHAT_PROTO_VERSION     1
#define DCHAT_FRAME_HDR         8
#define DCHAT_FRAME_MAX         (64 * 1024)     /* payload bytes */
#define DCHAT_TEXT_MAX          4096            /* bytes of UTF-8 in one post */
#define DCHAT_NAME_MAX          64              /* node or author name, bytes */
#define DCHAT_PEERS_MAX         64              /* peers in one cluster */
#define DCHAT_SERVERS_MAX       7               /* servers in one group */
#define DCHAT_ERROR_MAX         256             /* text of an ERROR frame */
/*
 * The poster's UTC offset in seconds, either way: what a TZ can give
 * (POSIX offsets have hours 0..24; glibc takes up to 24:59:59).  Logs of
 * older versions, which allowed 18 h, are within it.
 */
#define DCHAT_UTC_OFFSET_MAX    (24 * 3600 + 59 * 60 + 59)
#define DCHAT_HOLD_MAX_MS       30000           /* post --hold: a teaching and testing aid */
#define DCHAT_REASON_MAX        128             /* reason of an ENTRY_DAMAGED */
#define DCHAT_DIGEST_BYTES      16              /* one block's digest in a DIGEST_REPLY (BLAKE2b-128) */
#define DCHAT_DIGESTS_MAX       256             /* digests in one DIGEST_REPLY */
#define DCHAT_DIGEST_WORK       16384           /* entries one DIGEST may cover (a server's bounded work) */
#define DCHAT_NOTE_MAX          127             /* why a server of a status is unreachable, or in trouble */
#define DCHAT_GROUP_ID_BYTES    16              /* a server group's id (GROUP, GROUP_REPLY) */
#define DCHAT_PRESENCE_MAX      64              /* users of one node in a PRESENCE (the rest counted in more) */
#define DCHAT_KEY_MAX           64              /* a shared note's key, bytes (note_key_valid) */
#define DCHAT_VALUE_MAX         1024            /* a shared note's value, bytes of UTF-8 (text_validate) */
#define DCHAT_NOTES_MAX         1024            /* keys the shared notes hold at most */

/*
 * Post ids: a peer numbers its posts (incarnation << 32 | n), n = 1, 2, ...
 * within one incarnation (a counter kept on disk, incarnation.c), so a post
 * id names one post for good: a later life of the peer never reuses one,
 * and a late frame of an earlier life cannot be taken for a later post.
 */
#define DCHAT_INCARNATION_MAX   (UINT64_C(1) << 32)
#define POST_ID(inc, n)         ((uint64_t) (inc) << 32 | (uint32_t) (n))
#define POST_ID_INCARNATION(id) ((uint64_t) (id) >> 32)

/*
 * Lamport clocks and fences received from another node are bounded (DESIGN,
 * invariant 2): none may be above DCHAT_CLOCK_MAX, and none may jump more
 * than DCHAT_CLOCK_JUMP_MAX past what the receiver knows (its own clock once
 * it learnt the log's last fence, the last stored fence at the server), so
 * no single message can push a clock or the log to the end of its range.
 * A healthy cluster is nowhere near either: clocks grow by a few units per
 * critical-section entry.
 */
#define DCHAT_CLOCK_MAX         (UINT64_C(1) << 62)
#define DCHAT_CLOCK_JUMP_MAX    (UINT64_C(1) << 32)

#define DCHAT_DEFAULT_SOCKET    "/run/dchat/dchatd.sock"
#define DCHAT_SOCKET_NAME       "dchatd.sock"
#define DCHAT_DEFAULT_RUNTIME_DIR "/run/dchat"
#define DCHAT_DEFAULT_STATE_DIR "/var/lib/dchat"
#define DCHAT_DEFAULT_CONFIG    "/etc/dchat.conf"

enum dchat_msg_type {
        /* links between daemons */
        MSG_HELLO = 1,          /* first frame of every daemon link: who I am */
        MSG_HELLO_ACK,          /* server -> peer: last post id stored for you */
        MSG_REQUEST,            /* peer -> peer: RA request (ts) */
        MSG_REPLY,              /* peer -> peer: RA reply (clock, answered ts) */
        MSG_APPEND,             /* peer -> server: store this entry */
        MSG_APPENDED,           /* server -> peer: stored as seq */
        MSG_VIEW,               /* -> server or -> dchatd: a page of the log */
        MSG_ENTRY,              /* one log entry of a view */
        MSG_VIEW_END,           /* end of a page / of a view */
        MSG_ERROR,              /* the request with this tag failed */
        /* dchatctl -> dchatd */
        MSG_POST,
        MSG_POSTED,
        MSG_STATUS,
        MSG_STATUS_REPLY,
        /* peer -> peer, on an idle link: I am alive (failure detection) */
        MSG_HEARTBEAT,
        /* dchatctl -> peer, peer -> server: send me every entry from from_seq
         * on, then each new one as it is stored (ENTRY frames with this tag) */
        MSG_FOLLOW,
        /* either way on a daemon link whose HELLO showed another cluster
         * definition (digest): the sender's members, so both can say what differs */
        MSG_CLUSTER,
        /* server -> peer -> dchatctl, in a view page or a follow, where the
         * entries first_seq..last_seq would be: the server's log holds them
         * damaged (quarantined), with a short reason */
        MSG_ENTRY_DAMAGED,
        /* server -> server, on a replication link: bytes of libraft's own
         * stream between the two (transport.c) */
        MSG_RAFT,
        /* server -> peer: who leads the server group now (after HELLO_ACK,
         * and at every change); a peer sends its appends to the leader */
        MSG_LEADER,
        /* -> server, on any daemon link (a peer's, another server's): the
         * digests of blocks of its log, to compare replicas (verify) */
        MSG_DIGEST,
        MSG_DIGEST_REPLY,
        /* dchatctl -> dchatd: compare the logs of the servers of the group */
        MSG_VERIFY,
        MSG_VERIFY_REPLY,
        /* server -> server, on any link between servers (also from a server
         * that is in no group yet): what do you hold?  GROUP_REPLY says
         * whether it has Raft state, of which group, who leads, how far it
         * applied, and where the asker stands in its configuration */
        MSG_GROUP,
        MSG_GROUP_REPLY,
        /* dchatctl -> dchatd -> ... -> the group's leader: server add /
         * server remove; MEMBER_REPLY (or ERROR) comes back the same way */
        MSG_MEMBER,
        MSG_MEMBER_REPLY,
        /* dchatctl -> peer: the recent protocol events of the whole cluster
         * (TRACE_EVENTS from every peer, then TRACE_END); peer -> peer: a
         * page of your own event ring */
        MSG_TRACE,
        MSG_TRACE_EVENTS,
        MSG_TRACE_END,
        /* dchatctl -> dchatd: which nodes are up and who is on each (PRESENCE
         * frames answer, the last one flagged PRESENCE_END); watch: then a
         * PRESENCE each time a node's state or users change (dchatctl chat) */
        MSG_WHO,
        /* one node and its users: peer <-> peer and peer <-> server, the
         * sender's own local users whenever they change; dchatd -> dchatctl,
         * a node as the answering dchatd sees it (WHO) */
        MSG_PRESENCE,
        /* peer -> dchatctl, before the answer to a POST: the post waits (for
         * the server, for the group's leader), why, and how long at most */
        MSG_POST_WAIT,
        /* dme_algorithm = "central" (cm.h): peer -> server (a group's leader), a
         * request for the critical section, a section said held after a new
         * link, or a section given back (op: enum dchat_lock_op) ... */
        MSG_LOCK,
        /* ... and server -> peer: the section is yours, for request ts */
        MSG_GRANT,
        /* dme_algorithm = "token" (tk.c), peer -> peer: a request for the
         * token (Suzuki-Kasami), the token itself, and a regeneration
         * round's question, answer or end */
        MSG_TOKEN_REQUEST,
        MSG_TOKEN,
        MSG_TOKEN_PROBE,
        /* peer -> peer, on its outgoing links, as it stops cleanly (systemctl
         * stop, SIGTERM): it leaves the cluster, after the REPLYs it owed; the
         * others stop waiting for it at once instead of after dead_after_ms.
         * Its Lamport clock, so that the next fence is above its last */
        MSG_LEAVE,
        /* dchatctl -> dchatd (root or dchatd's own user: ExecReload=): reread the
         * configuration; RELOAD_REPLY says what changed, an ERROR why it was refused */
        MSG_RELOAD,
        MSG_RELOAD_REPLY,
        /* shared notes (notes.h): dchatctl -> peer, an operation (op: enum
         * dchat_note_op); peer -> server (a group's leader), a read, or a write
         * made inside the critical section (its fence) or, for the unlocked
         * demonstration, outside it ... */
        MSG_NOTE,
        /* ... and the answer: one note, or for a list one frame per note, all
         * but the last flagged NOTE_MORE (an error: ERROR) */
        MSG_NOTE_REPLY,
        _MSG_MAX,
};

enum dchat_lock_op {
        LOCK_REQUEST = 0,       /* request ts waits for the section */
        LOCK_HELD = 1,          /* the section of request ts is held here (said again to a new coordinator) */
        LOCK_RELEASE = 2,       /* the section of request ts given back, or that request withdrawn */
        _LOCK_OP_MAX,
};

/*
 * Shared notes.  dchatctl asks its peer for GET, LIST, SET, DEL or INCR; the
 * peer reads from the server (GET, LIST) and writes there (SET, DEL) inside
 * the critical section: an INCR is a GET and a SET in one section, the SET
 * only if the note's version is still the one read (NOTE_IF_VERSION).
 */
enum dchat_note_op {
        NOTE_GET = 1,
        NOTE_LIST = 2,          /* key: "" (all) */
        NOTE_SET = 3,
        NOTE_DEL = 4,
        NOTE_INCR = 5,          /* dchatctl -> peer only: delta */
        _NOTE_OP_MAX,
};
/* NOTE flags */
#define NOTE_UNLOCKED   0x01    /* INCR outside the critical section (and without NOTE_IF_VERSION); a write with no fence */
#define NOTE_IF_VERSION 0x02    /* write only if the note's version is still expect (0: it does not exist) */
#define NOTE_REQ_FLAGS  0x03
/* NOTE_REPLY flags */
#define NOTE_FOUND      0x01    /* the note exists (a DEL answered: it existed) */
#define NOTE_MORE       0x02    /* a list goes on in the next frame */
#define NOTE_DUPLICATE  0x04    /* the write was done already (a resent one): its answer again */
#define NOTE_REPLY_FLAGS 0x07

enum dchat_role {
        ROLE_NONE = 0,
        ROLE_SERVER = 1,
        ROLE_PEER = 2,
};

/* Error codes carried in MSG_ERROR; dchatctl prints the text. */
enum dchat_err {
        ERR_INTERNAL = 1,
        ERR_INVALID,            /* bad text, bad request */
        ERR_TOO_LONG,
        ERR_UNAVAILABLE,        /* server or peers unreachable */
        ERR_TIMEOUT,
        ERR_FENCED,             /* append refused: fence not greater than last */
        ERR_STORAGE,            /* write or sync failed on the server */
        ERR_NOT_PEER,           /* post sent to a server-role daemon */
        ERR_BUSY,               /* limits reached */
        ERR_DENIED,             /* not allowed to use this dchatd (control_group) */
        /* A frame of an earlier life of the sender (or of a connection it
         * replaced): refused, nothing of it stored.  HELLO: detail is the
         * incarnation the receiver knows the sender under. */
        ERR_STALE,
        ERR_CONFLICT,           /* the post id is stored already, naming another post */
        /* this server does not lead the group (or lost the lead before the
         * append was committed): nothing stored by it; try the leader */
        ERR_NOT_LEADER,
        /* a shared note changed between its read and its write (NOTE_IF_VERSION):
         * nothing written; detail: its version now */
        ERR_CHANGED,
        ERR_NOT_FOUND,          /* no such shared note */
};

/* GROUP_REPLY: the answering server's Raft state. */
enum dchat_group_state {
        GROUP_EMPTY = 0,        /* no Raft state: it has not started (or not joined) a group */
        GROUP_STATE = 1,        /* Raft state of the group group_id */
        GROUP_REMOVED = 2,      /* it was removed from the group group_id: it takes no part */
        GROUP_REFUSED = 3,      /* its Raft state is another group's than its servers': it takes no part */
};

/* A server's place in a group's configuration (GROUP_REPLY, MEMBER_REPLY). */
enum dchat_member_role {
        MEMBER_NONE = 0,        /* not in it */
        MEMBER_SPARE = 1,       /* in it, not replicated to yet */
        MEMBER_STANDBY = 2,     /* replicated to, does not vote */
        MEMBER_VOTER = 3,
};

enum dchat_member_op {
        MEMBER_ADD = 1,
        MEMBER_REMOVE = 2,
};

struct dchat_str {
        const char *p;          /* points into the frame; not NUL-terminated */
        uint16_t len;
};

/*
 * A vector clock: one component per peer, in the order of the config's
 * peers list (vclock.h has the operations and the wire form).
 */
struct vclock {
        uint16_t n;
        uint64_t c[DCHAT_PEERS_MAX];
};

/* One line of the chat log, as stored and as shown by `view --json`. */
struct dchat_entry {
        uint64_t seq;           /* 1, 2, ...; assigned by the server */
        uint64_t lamport;       /* fence: timestamp of the RA request ... */
        char node[DCHAT_NAME_MAX + 1];  /* ... and the node that made it */
        uint32_t fence_idx;     /* position of this post within that CS entry */
        uint64_t post_id;       /* per-node post number (exactly-once) */
        int64_t time;           /* seconds since the epoch, when posted */
        int32_t utc_offset;     /* poster's UTC offset in seconds */
        char author[DCHAT_NAME_MAX + 1];
        uint16_t text_len;
        char text[DCHAT_TEXT_MAX + 1];  /* NUL-terminated as well */
        /* the poster's vector clock when it entered the critical section the
         * entry was written in (n = 0: none, an entry of an older log) */
        struct vclock vc;
};

struct dchat_peer_status {
        char name[DCHAT_NAME_MAX + 1];
        bool connected;         /* both directions of the link are up */
        char state[12];         /* failure detector: alive | suspect | dead ("" on the server) */
        uint32_t since;         /* seconds in that state */
};

/* Counters since the daemon started (STATUS_REPLY; dchatctl status --json). */
struct dchat_counters {
        uint64_t cs_entries;            /* peer: critical-section entries */
        uint64_t cs_reused;             /* ... of which reused every permission (Roucairol–Carvalho) */
        uint64_t requests_sent;         /* peer: REQUEST messages sent */
        uint64_t requests_received;
        uint64_t replies_sent;          /* peer: REPLY messages sent */
        uint64_t replies_received;
        uint64_t posts;                 /* peer: posts acknowledged stored; server: posts stored */
        uint64_t appends;               /* peer: APPEND frames sent (resends too); server: received */
        uint64_t batches;               /* server: batches written (one write each) */
        uint64_t fdatasyncs;            /* server: syncs of the chat log */
};
/* proto.c (and tests/bench) walk it as an array, cs_entries to fdatasyncs */
_Static_assert(sizeof(struct dchat_counters) == 10 * sizeof(uint64_t), "dchat_counters: u64 fields only");

/* A server of the group as a status gathered it (dchatctl status). */
struct dchat_server_status {
        char name[DCHAT_NAME_MAX + 1];
        bool reachable;         /* it answered in time; the rest is its own word */
        char role[16];          /* leader | follower | candidate | unavailable */
        uint64_t term;
        uint64_t last_seq;      /* the last seq in its chat log (applied) */
        uint64_t applied_index; /* the last Raft index it applied */
        char note[DCHAT_NOTE_MAX + 1];  /* unreachable: why; else its trouble (text, checked like a post's; "" if none) */
};

struct dchat_status {
        char node[DCHAT_NAME_MAX + 1];
        uint8_t role;           /* enum dchat_role */
        uint64_t lamport;
        char dme_state[16];     /* released | wanted | held | - */
        uint64_t request_ts;    /* 0 unless wanted or held */
        uint32_t queued;        /* posts waiting for the CS */
        uint64_t last_seq;      /* server: last stored seq; peer: 0 */
        char server[DCHAT_NAME_MAX + 1];
        bool server_connected;
        uint32_t uptime;        /* seconds */
        uint16_t n_peers;
        struct dchat_peer_status peers[DCHAT_PEERS_MAX];
        struct dchat_counters counters;
        /* a server group: this node's view of it (a server's own Raft state) ... */
        char raft_state[16];    /* a server of a group: leader | follower | candidate | unavailable; else "" */
        uint64_t term;          /* the group's term as this node knows it */
        char leader[DCHAT_NAME_MAX + 1];        /* the group's leader as this node knows it ("": none) */
        uint64_t applied_index; /* a server of a group: the last Raft index applied */
        char trouble[DCHAT_NOTE_MAX + 1];       /* a server of a group: why it takes no part just now, or "" */
        /* ... and the group as gathered from its servers (control socket only; 0 otherwise) */
        uint16_t n_servers;
        struct dchat_server_status servers[DCHAT_SERVERS_MAX];
        /* a peer's event ring (trace_events): events held, room, bytes it takes */
        uint32_t trace_events;
        uint32_t trace_capacity;
        uint64_t trace_bytes;
        char dme_algorithm[16];         /* ricart-agrawala | central | token (dchat.conf(5)) */
};

/*
 * A node as a PRESENCE shows it.  Between daemons the sender speaks of
 * itself (NODE_UP, its users); to dchatctl the answering dchatd says how
 * it sees each node: itself, the peers (their links and the failure
 * detector), the servers (its link to one).
 */
enum dchat_node_state {
        NODE_UNKNOWN = 0,       /* not linked to it, so not known (a group's server a peer does not link to) */
        NODE_UP = 1,            /* linked (the answering node itself: always) */
        NODE_DOWN = 2,          /* its link is down (closed, refused, not up yet), not declared dead */
        NODE_SUSPECT = 3,       /* silent: the failure detector suspects it */
        NODE_DEAD = 4,          /* declared dead */
        _NODE_STATE_MAX,
};
#define PRESENCE_USERS_KNOWN    0x01    /* its users are known (else it has not said yet) */
#define PRESENCE_SELF           0x02    /* the node that answers the WHO */
#define PRESENCE_END            0x04    /* the last node of a WHO's answer */
#define PRESENCE_FLAGS          0x07
/* what a user has open on a node (bits; at least one) */
#define PRESENCE_CHAT           0x01    /* dchatctl chat */
#define PRESENCE_FOLLOW         0x02    /* dchatctl view -f (or another follower) */
#define PRESENCE_KINDS          0x03

/*
 * What VERIFY found (VERIFY_REPLY): the range compared on every server and,
 * if they differ, the first seq where they do, with each server's version.
 */
enum dchat_verify_kind {
        VERIFY_NONE = 0,        /* no version shown (they agree) */
        VERIFY_ENTRY = 1,       /* its entry there */
        VERIFY_DAMAGED = 2,     /* quarantined in its log */
        VERIFY_ABSENT = 3,      /* its log has no entry there */
};

/*
 * A decoded frame.  Strings point into the frame buffer, so a message is
 * valid only as long as the buffer it was decoded from.
 */
struct dchat_msg {
        uint8_t type;
        uint32_t tag;           /* request id; the response carries it back */
        union {
                /* digest: of the sender's cluster definition (conf.c); 0: not compared */
                struct { struct dchat_str node; uint8_t role; uint64_t incarnation; uint64_t digest; } hello;
                struct { uint64_t last_post_id; uint64_t last_seq; uint64_t last_lamport; } hello_ack;
                /* vc: the sender's vector clock at the send (decoded into the caller's entry storage) */
                struct { uint64_t ts; const struct vclock *vc; } request;
                struct { uint64_t clock; uint64_t req_ts; const struct vclock *vc; } reply;
                struct dchat_entry *append;     /* APPEND and ENTRY */
                struct { uint64_t seq; uint64_t lamport; uint32_t fence_idx; uint8_t duplicate; } appended;
                /* since_time (unix seconds, 0: none): start at the first entry whose time is >= it;
                 * min_seq: the reader has seen seq min_seq already: a server whose log ends
                 * before it (a group's follower just behind) waits until it holds it */
                struct { uint64_t from_seq; uint64_t last_n; uint64_t upto_seq; uint32_t max; int64_t since_time;
                         uint64_t min_seq; } view;
                struct { uint64_t next_seq; uint64_t last_seq; uint8_t done; } view_end;
                /* detail: for ERR_FENCED, the Lamport time of the last stored fence */
                struct { uint16_t code; struct dchat_str text; uint64_t detail; } error;
                struct { uint64_t incarnation; uint64_t clock; } heartbeat;
                struct { uint64_t incarnation; uint64_t clock; } leave;
                /* what the reload did, for the admin (text, checked like a post's) */
                struct { struct dchat_str text; } reload_reply;
                /* 0: from the next entry stored; UINT64_MAX: stop following */
                struct { uint64_t from_seq; } follow;
                /* first_seq <= last_seq; reason: valid text (text_validate), DCHAT_REASON_MAX bytes at most */
                struct { uint64_t first_seq; uint64_t last_seq; struct dchat_str reason; } damaged;
                struct { int32_t utc_offset; uint32_t hold_ms; struct dchat_str text; } post;
                struct dchat_status *status;    /* STATUS_REPLY */
                /* the sender's digest, n members { role u8, name str, address str }: proto_cluster_next */
                struct { uint64_t digest; uint16_t n; const uint8_t *p; size_t len; } cluster;
                struct { const uint8_t *p; size_t len; } raft;  /* the rest of the payload */
                /* leader: a server's name ("" if the group has none it knows); address: host:port */
                struct { uint64_t term; struct dchat_str leader; struct dchat_str address; } leader;
                /* the digests of blocks of block seqs from from_seq up to to_seq, at most max_blocks */
                struct { uint64_t from_seq; uint64_t to_seq; uint32_t block; uint16_t max_blocks; } digest;
                /* the log's first and last seq; n digests of DCHAT_DIGEST_BYTES, block i from from_seq + i * block */
                struct { uint64_t first_seq; uint64_t last_seq; uint64_t from_seq; uint32_t block; uint16_t n;
                         const uint8_t *p; } digest_reply;
                /* differ: 0 identical from first to last (none if last < first), 1 differ at seq;
                 * n servers { name, first_seq, last_seq, kind, entry | reason }: proto_verify_next */
                struct { uint8_t differ; uint64_t first; uint64_t last; uint64_t seq; uint16_t n;
                         const uint8_t *p; size_t len; } verify_reply;
                /* the asker's group id (zeros: none) and the id it would start a new group with
                 * (DCHAT_GROUP_ID_BYTES each; into the frame) */
                struct { const uint8_t *group_id; const uint8_t *boot_id; } group;
                /* state: enum dchat_group_state; leader "" if none known; your_role: the asker's
                 * enum dchat_member_role in its last configuration, committed at config_index
                 * (0: it has none); fsm_state: enum fsm_state of its chat log */
                struct { uint8_t state; const uint8_t *group_id; const uint8_t *boot_id; uint64_t term;
                         struct dchat_str leader; struct dchat_str leader_address; uint64_t applied_index;
                         uint64_t last_index; uint64_t last_seq; uint8_t fsm_state; uint8_t your_role;
                         uint64_t config_index; } group_reply;
                /* op: enum dchat_member_op; address "" for a remove; timeout_ms: how long an add
                 * waits for the new server to catch up before it is made a voter */
                struct { uint8_t op; struct dchat_str name; struct dchat_str address; uint32_t timeout_ms; } member;
                /* role: the server's enum dchat_member_role now; text: what was done (valid text) */
                struct { uint8_t op; struct dchat_str name; struct dchat_str address; uint8_t role;
                         struct dchat_str text; } member_reply;
                /* scope TRACE_CLUSTER (dchatctl -> peer) or TRACE_RING (peer -> peer: a page of its ring);
                 * the events timed since_us..until_us by the node's own clock (0: no bound), from
                 * event number from_no up to upto_no (0: the newest when the first page was made) */
                struct { uint8_t scope; uint64_t since_us; uint64_t until_us; uint64_t from_no; uint64_t upto_no; }
                        trace;
                /* a page of node's ring: its peers (the names of its vector clocks' components, in
                 * order) and n events (proto_trace_next); next_no: where the next page starts, done:
                 * none after it (up to upto_no); first_no: the oldest event the ring held */
                struct { struct dchat_str node; uint64_t incarnation; uint8_t n_names; const uint8_t *names;
                         size_t names_len; uint64_t first_no; uint64_t upto_no; uint64_t next_no; uint8_t done;
                         uint16_t n; const uint8_t *p; size_t len; } trace_events;
                /* the nodes that were asked and could not give all their events: n of them
                 * { name str, events u64 (how many came), why str } (proto_trace_missing_next) */
                struct { uint16_t asked; uint16_t n; const uint8_t *p; size_t len; } trace_end;
                /* watch: 0 one answer; 1 the answer, then each change, on this connection */
                struct { uint8_t watch; } who;
                /* node: a node name; role ROLE_SERVER | ROLE_PEER; state enum dchat_node_state; flags
                 * PRESENCE_*; since: seconds in that state; note: why (text, "" if none); more: users
                 * left out beyond DCHAT_PRESENCE_MAX; n users { name str, kinds u8 }, in strictly
                 * increasing byte order of the names (each once): proto_presence_next */
                struct { struct dchat_str node; uint8_t role; uint8_t state; uint8_t flags; uint32_t since;
                         struct dchat_str note; uint16_t more; uint16_t n; const uint8_t *p; size_t len; } presence;
                /* wait_ms: how long the post waits at most for it; reason: text */
                struct { uint32_t wait_ms; struct dchat_str reason; } post_wait;
                /* op: enum dchat_lock_op; clock: the sender's Lamport clock; vc: its vector clock */
                struct { uint8_t op; uint64_t ts; uint64_t clock; const struct vclock *vc; } lock;
                /* ts: the request granted; clock: the coordinator's; vc: what it merged of the peers' */
                struct { uint64_t ts; uint64_t clock; const struct vclock *vc; } grant;
                /* gen: the highest token generation the sender knows; sn: its request's number; ts: its
                 * Lamport timestamp */
                struct { uint64_t gen; uint64_t sn; uint64_t ts; const struct vclock *vc; } token_request;
                /* clock: the sender's; ts: the request it answers; the token: generation, transfer
                 * number, n (the cluster's peers) last-served request numbers, and the peers it goes to
                 * next, qn of them (each < n, each once) */
                struct { uint64_t clock; uint64_t ts; uint64_t gen; uint64_t hop; uint8_t n; uint64_t ln[DCHAT_PEERS_MAX];
                         uint8_t qn; uint8_t q[DCHAT_PEERS_MAX]; const struct vclock *vc; } token;
                /* op: enum dchat_note_op; flags NOTE_UNLOCKED | NOTE_IF_VERSION; key: note_key_valid
                 * ("" for LIST); value (SET): text_validate, DCHAT_VALUE_MAX; delta (INCR); expect
                 * (NOTE_IF_VERSION); a write to the server: fence (the critical section's Lamport
                 * time, fence_idx, and the link's node), op_id (a post id: each write once), time
                 * (unix seconds, the writer's) */
                struct { uint8_t op; uint8_t flags; struct dchat_str key; struct dchat_str value; int64_t delta;
                         uint64_t expect; uint64_t fence; uint32_t fence_idx; uint64_t op_id; int64_t time; } note;
                /* flags NOTE_FOUND | NOTE_MORE | NOTE_DUPLICATE; a note: key, value, version (the
                 * store's write count when it was written), node and time of that write */
                struct { uint8_t flags; struct dchat_str key; struct dchat_str value; uint64_t version;
                         struct dchat_str node; int64_t time; } note_reply;
                /* kind 0 ask, 1 answer, 2 end (struct tk_probe, ra.h) */
                struct { uint8_t kind; uint64_t round; uint64_t gen; uint64_t down; uint8_t holds; uint8_t wanted;
                         uint64_t sn; uint64_t ts; uint64_t clock; const struct vclock *vc; } probe;
        };
};

/* A growable output buffer; all put_* calls are no-ops after a failure. */
struct wbuf {
        uint8_t *data;
        size_t len, cap;
        bool failed;            /* allocation failed or frame too large */
};

void wbuf_free(struct wbuf *b);
void wbuf_reset(struct wbuf *b);
/* Makes room for n more bytes; false (and failed set) when out of memory. */
bool wbuf_reserve(struct wbuf *b, size_t n);
void wbuf_put(struct wbuf *b, const void *p, size_t n);
void wbuf_put_u8(struct wbuf *b, uint8_t v);
void wbuf_put_u16(struct wbuf *b, uint16_t v);
void wbuf_put_u32(struct wbuf *b, uint32_t v);
void wbuf_put_u64(struct wbuf *b, uint64_t v);
void wbuf_put_str(struct wbuf *b, const char *s, size_t n);
/* An unsigned LEB128 varint (vclock.h): 1 to 10 bytes. */
void wbuf_put_varint(struct wbuf *b, uint64_t v);
void wbuf_consume(struct wbuf *b, size_t n);

/* A bounds-checked reader over a payload. */
struct rbuf {
        const uint8_t *p;
        size_t len, off;
        bool bad;               /* read past the end or a bad string */
};

uint8_t rbuf_u8(struct rbuf *r);
uint16_t rbuf_u16(struct rbuf *r);
uint32_t rbuf_u32(struct rbuf *r);
uint64_t rbuf_u64(struct rbuf *r);
struct dchat_str rbuf_str(struct rbuf *r);
/* A varint in its shortest form; anything else (longer, over 64 bits) is bad. */
uint64_t rbuf_varint(struct rbuf *r);

/*
 * Appends a whole frame (header and payload) for msg to b.  Returns 0, or
 * -ENOMEM / -EMSGSIZE.
 */
int proto_encode(struct wbuf *b, const struct dchat_msg *msg);

/*
 * The entry body alone (also the chat log's record body): its fields, then
 * its vector clock.  proto_get_entry_v1 reads the body of the first
 * version, without the vector clock (chat logs and Raft commands written
 * before it; e->vc is then empty).
 */
void proto_put_entry(struct wbuf *b, const struct dchat_entry *e);
int proto_get_entry(struct rbuf *r, struct dchat_entry *e);
int proto_get_entry_v1(struct rbuf *r, struct dchat_entry *e);

/* A vector clock's wire form (vclock.h); get: -EBADMSG for a count over DCHAT_PEERS_MAX, a bad varint or a value over DCHAT_CLOCK_MAX. */
void proto_put_vclock(struct wbuf *b, const struct vclock *v);
int proto_get_vclock(struct rbuf *r, struct vclock *v);

/*
 * Checks a frame header.  Returns the payload length, or -EBADMSG (bad
 * version, type or flags), -EMSGSIZE (over DCHAT_FRAME_MAX).
 */
int proto_check_header(const uint8_t hdr[DCHAT_FRAME_HDR], uint8_t *type);

/*
 * Decodes a payload of the given type.  entry and status are caller storage
 * used by APPEND/ENTRY and STATUS_REPLY.  Returns 0 or -EBADMSG; a payload
 * with trailing bytes is bad.
 */
int proto_decode(uint8_t type, const uint8_t *payload, size_t len, struct dchat_msg *msg,
                 struct dchat_entry *entry, struct dchat_status *status);

const char *proto_type_name(uint8_t type);

/* The next member of a CLUSTER message (r over msg.cluster.p/len): 1, 0 at the end, -EBADMSG. */
int proto_cluster_next(struct rbuf *r, uint8_t *role, struct dchat_str *name, struct dchat_str *address);

/* One server's part of a VERIFY_REPLY (proto_verify_next). */
struct dchat_verify_server {
        struct dchat_str name;
        uint64_t first_seq, last_seq;   /* its log's bounds */
        uint8_t kind;                   /* enum dchat_verify_kind */
        struct dchat_entry *entry;      /* VERIFY_ENTRY: decoded into the caller's storage */
        struct dchat_str reason;        /* VERIFY_DAMAGED */
};
/* Appends one server's part to b (for msg.verify_reply.p/len). */
void proto_verify_put(struct wbuf *b, const char *name, uint64_t first_seq, uint64_t last_seq, uint8_t kind,
                      const struct dchat_entry *e, const char *reason);
/* The next server of a VERIFY_REPLY (r over msg.verify_reply.p/len; s->entry set by the caller): 1, 0 at the end, -EBADMSG. */
int proto_verify_next(struct rbuf *r, struct dchat_verify_server *s);

/* The events of a node's trace ring (TRACE_EVENTS). */
enum dchat_trace_scope {
        TRACE_CLUSTER = 0,      /* dchatctl -> peer: every peer's ring */
        TRACE_RING = 1,         /* peer -> peer: a page of your own ring */
};
#define DCHAT_TRACE_NONE        0xff            /* an event's peer: none */
#define DCHAT_TRACE_PAGE        (48 * 1024)     /* bytes of events in one TRACE_EVENTS */
#define DCHAT_TRACE_WHY_MAX     127             /* why a node's events are missing */

/* The kinds of events a ring holds: the journal events of the same names (DCHAT_EVENT). */
enum dchat_trace_kind {
        TK_REQUEST_SENT = 1,
        TK_REQUEST_RECEIVED,
        TK_REPLY_SENT,
        TK_REPLY_DEFERRED,
        TK_REPLY_RECEIVED,
        TK_CS_ENTER,
        TK_CS_EXIT,
        TK_POST_STORED,
        TK_POST_FAILED,
        TK_POST_RETRIED,
        TK_PEER_UP,
        TK_PEER_DOWN,
        TK_PEER_SUSPECT,
        TK_PEER_DEAD,
        TK_PEER_ALIVE,
        TK_PEER_RESTARTED,
        TK_PEER_LEFT,           /* it said it was stopping (LEAVE): no longer waited for, like a dead one */
        TK_REQUEST_QUEUED,      /* token: a request queued behind the section held here (no REPLY owed) */
        _TK_MAX,
};
/* "request-sent", ...; NULL for a kind it does not know.  by_name: 0 for a name it does not know. */
const char *proto_trace_kind_name(uint8_t kind);
uint8_t proto_trace_kind_by_name(const char *name);

/* One event of a ring. */
struct dchat_trace_event {
        uint64_t no;            /* the node's event number: the no= of its log line */
        uint64_t time_us;       /* CLOCK_REALTIME of the node */
        uint8_t kind;           /* enum dchat_trace_kind */
        uint8_t peer;           /* index into the page's names, or DCHAT_TRACE_NONE */
        uint64_t lamport;       /* the Lamport clock after the event */
        uint64_t request_ts;    /* the request concerned (0: none) */
        uint64_t fence;         /* the fence's Lamport time (0: none) ... */
        uint32_t fence_idx;     /* ... and index */
        uint64_t seq;           /* a post's seq (0: none) */
        uint64_t send_vt;       /* a receive: the sender's own component in the message (its send event) */
        struct vclock vc;       /* after the event (n = 0: none) */
};
/* Appends one event to b (for trace_events.p); names: how many the page lists. */
void proto_trace_put(struct wbuf *b, const struct dchat_trace_event *e);
/* The next event (r over trace_events.p/len): 1, 0 at the end, -EBADMSG (also for a peer or clock not of n_names). */
int proto_trace_next(struct rbuf *r, unsigned n_names, struct dchat_trace_event *e);
/* The next name of a TRACE_EVENTS (r over names/names_len): 1, 0 at the end, -EBADMSG. */
int proto_trace_name_next(struct rbuf *r, struct dchat_str *name);
/* Appends one node of a TRACE_END to b. */
void proto_trace_missing_put(struct wbuf *b, const char *name, uint64_t events, const char *why);
/* The next node of a TRACE_END (r over trace_end.p/len): 1, 0 at the end, -EBADMSG. */
int proto_trace_missing_next(struct rbuf *r, struct dchat_str *name, uint64_t *events, struct dchat_str *why);
/* Appends one user of a PRESENCE to b (for msg.presence.p/len; in strictly increasing name order). */
void proto_presence_put(struct wbuf *b, const char *name, uint8_t kinds);
/* The next user of a PRESENCE (r over msg.presence.p/len): 1, 0 at the end, -EBADMSG. */
int proto_presence_next(struct rbuf *r, struct dchat_str *name, uint8_t *kinds);
/* "up", "down", "suspect", "dead", "unknown" */
const char *node_state_name(uint8_t state);

/* Copies a wire string into a NUL-terminated array of size cap; -ENAMETOOLONG or -EINVAL (NUL inside). */
int dchat_str_copy(char *dst, size_t cap, struct dchat_str s);

/*
 * Post text: valid UTF-8 (no overlongs, no surrogates), no control
 * characters (C0, DEL, C1), not empty, at most DCHAT_TEXT_MAX bytes.
 * Returns 0, -EINVAL (with *why set) or -E2BIG.
 */
int text_validate(const char *s, size_t n, const char **why);

/*
 * A post's text: text_validate, and not only white space or invisible
 * characters (spaces, no-break and other Unicode spaces, zero-width ones),
 * which would post a line that looks empty.  (Stored entries are checked
 * with text_validate alone: older logs may hold such lines.)
 */
int post_text_validate(const char *s, size_t n, const char **why);

/* A note's key: 1..DCHAT_KEY_MAX of [A-Za-z0-9._:/-], starting with a letter or digit. */
bool note_key_valid(const char *s, size_t n);

/* Node names: 1..DCHAT_NAME_MAX of [A-Za-z0-9._-], not starting with '-'. */
bool node_name_valid(const char *s);

/* The poster's local time of e (time + utc_offset); false when out of range. */
struct tm;
bool entry_local_tm(const struct dchat_entry *e, struct tm *tm);

/* "17 Oct 02:57PM" in the poster's local time ("?" if out of range); buf >= 32 bytes. */
void entry_format_time(const struct dchat_entry *e, char *buf, size_t cap);

/*
 * ISO 8601 in the poster's local time with its offset, "2025-10-17T20:27:00+05:30";
 * the offset has seconds when it has any ("+05:30:15"), so the text and
 * e->time always name the same instant.  "?" if out of range; buf >= 48 bytes.
 */
void entry_format_iso(const struct dchat_entry *e, char *buf, size_t cap);

/* A UTC offset dchat can carry (|off| <= DCHAT_UTC_OFFSET_MAX)? */
bool utc_offset_valid(long off);

const char *role_name(uint8_t role);
