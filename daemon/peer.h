/* SPDX-License-Identifier: MIT */
/*
 * peer.h — the peer role's private header: struct peer, and what the
 * role's files call in each other, grouped by file.  Read it as the map of
 * the peer role (its public API, peer_*, is in dchatd.h).
 *
 *   peer.c    life cycle (peer_new, peer_free, peer_reconf, peer_status)
 *             and the glue the others share: clock bounds, cluster
 *             definitions, a later life, backoff, our PRESENCE and who
 *   mesh.c    the links to the other peers, their failure detection, the
 *             DME machine (ra.c; cm.c, tk.c by dme_algorithm) driven by
 *             them, and who is on each of them (PRESENCE)
 *   uplink.c  the link to the server (a group's leader, once known):
 *             HELLO and HELLO_ACK, LEADER, heartbeats and silence,
 *             reconnects with backoff, why posts wait (POST_WAIT), the
 *             server's users; its frames go to postq.c (answers to appends)
 *             and fanout.c (entries, views)
 *   postq.c   the local posts: their queue, the critical section in which
 *             they go to the server, deadlines, answers to the clients
 *   fanout.c  local followers, fed by one subscription at the server, and
 *             VIEW requests relayed to the server
 *   gather.c  dchatctl trace: every peer's ring of recent events (ring.c)
 *             gathered over the peer links, page by page
 *
 * Each part keeps its state in its own member of struct peer (p->mesh,
 * p->uplink, p->postq, p->fanout), which only its file touches; the others
 * go through the functions below.  What they all share is at the top of
 * struct peer: the event loop, the configuration, the RA machine (and its
 * vector clock), the counters, the highest seq seen stored, and the ring
 * every protocol event goes to (peer_event, peer.c).
 */
#pragma once

#include <time.h>

#include "dchatd.h"

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };

/* mesh.c: our two connections with one other peer (see the top of mesh.c). */
struct link {
        struct peer *p;
        unsigned idx;                   /* index in conf->peers and in the RA machine */
        struct conn *out;               /* we dialled; we send on it */
        struct conn *in;                /* they dialled; we read from it */
        enum link_state state;
        uint64_t backoff_usec;
        sd_event_source *timer;         /* reconnect or connect timeout */
        bool announced;                 /* peer-up logged */
        uint64_t heard_unreachable;     /* last frame from it while our link to it was down ... */
        uint64_t heard_unreachable_inc; /* ... and the last incarnation it said meanwhile */
        uint64_t in_inc;                /* the incarnation in the HELLO of the link from it (in) */
        bool await_life;                /* ra_link_up(known_life) waits for the failure detector to take in_inc */
        uint64_t cluster_reported;      /* its cluster digest we logged a config-mismatch for */
        bool vc_foreign;                /* its HELLO showed another cluster definition: its vector clocks are not ours */
        bool vc_reported;               /* ... and we said so */
        struct presence presence;       /* its users, as its last PRESENCE said (known while linked) */
        uint64_t changed;               /* when the link last came up or went down (0: never) */
        char why[64];                   /* why the link went down (or could not come up) */
        char silent[96];                /* how long it was silent, when suspected or declared dead; or that it left */
};

/* mesh.c: an accepted connection, until its HELLO tells which peer it is. */
struct inbound {
        struct peer *p;
        struct conn *c;
        int idx;                        /* -1 until HELLO; -2 once replaced */
        struct inbound *prev, *next;    /* all of them, for peer_free */
};

struct mesh {
        struct fd fd;                   /* who is alive, by heartbeats */
        sd_event_source *fd_timer;
        struct link links[DCHAT_PEERS_MAX];
        int listen_fd;
        sd_event_source *listen_src;
        struct inbound *inbound;
        uint64_t recv_vt;               /* the REQUEST or REPLY being taken in: its sender's own component */
};

/* uplink.c: the link to the server. */
struct uplink {
        struct conn *conn;
        enum link_state state;          /* LINK_UP once its HELLO_ACK came */
        uint64_t backoff;
        sd_event_source *timer;         /* reconnect or connect timeout */
        bool announced;                 /* server-up logged */
        unsigned srv;                   /* the server (conf->servers[srv]) we link to, or try to */
        char leader[DCHAT_NAME_MAX + 1];        /* who leads the server group, as the last LEADER said ("": unknown) */
        uint64_t leader_term;
        bool leads;                     /* the server we link to leads: appends go there */
        bool switching;                 /* closing the link to go to the leader: no backoff, followers kept */
        uint64_t srv_failed[DCHAT_SERVERS_MAX]; /* when a link to each server last failed */
        uint64_t cluster_reported;      /* as links[].cluster_reported */
        struct fd_link alive;           /* when the server was last heard from ... */
        bool watch;                     /* ... once its link is through the handshake */
        bool silent;                    /* we dropped the link for its silence */
        uint64_t lost_at;               /* the server unreachable since (once not up) */
        unsigned tried;                 /* servers whose link failed since lost_at (a group: all tried?) */
        unsigned last_failed;           /* the last of them (srv) */
        unsigned moves;                 /* leaderless servers left in a row (uplink_heartbeat) */
        uint64_t leaderless_since;      /* linked, but no leader named since (CLOCK_MONOTONIC; 0: one is) */
        bool moving;                    /* closing a leaderless server's link for the next one: followers kept */
        char why[96];                   /* why: "silent for N ms", "connection refused" */
        uint32_t next_tag;              /* of our requests to the server (uplink_tag) */
        /* a leader that is not in our cluster.servers (added at runtime): where its LEADER said
         * it is; srv == conf->n_servers while we link to it */
        struct node_conf extra;
        bool have_extra;
        uint64_t extra_failed;          /* as srv_failed[] */
        struct member_relay *members;   /* server add/remove passed on to the server, not answered yet */
        struct presence presence;       /* the server's users, as its last PRESENCE said */
        uint64_t changed;               /* when the link last came up or went down (0: never) */
};

/* uplink.c: a MEMBER request of a local client, passed on to the server. */
struct member_relay {
        struct member_relay *next;
        struct conn *client;            /* NULL once the client is gone */
        uint32_t client_tag;
        uint32_t tag;                   /* ours, on the server link */
};

/* postq.c: a local post, from the client's request to its answer. */
/* A write to the shared notes that waits for the critical section like a post (noteq.c). */
struct note_op {
        uint8_t op;                     /* NOTE_SET | NOTE_DEL | NOTE_INCR */
        bool reading;                   /* INCR: its read is out (inside the section); else its write */
        bool duplicate;                 /* the server had it already (a resend) */
        int64_t delta;                  /* INCR */
        uint64_t expect;                /* INCR: the version read (0: no such note) */
        uint64_t version;               /* the answer's */
        int64_t time;
        char key[DCHAT_KEY_MAX + 1];
        char value[DCHAT_VALUE_MAX + 1];        /* SET: the value; INCR: the sum, once read */
        uint16_t len;
};

struct post_req {
        struct post_req *next;
        struct note_op *note;           /* a note's write (e.post_id its op id, e.lamport its fence), or NULL */
        struct conn *client;            /* NULL once the client is gone */
        uint32_t client_tag;
        uint64_t deadline;              /* CLOCK_MONOTONIC usec */
        uint32_t append_tag;            /* 0 until sent to the server */
        uint32_t hold_ms;               /* post --hold */
        bool done;                      /* answered to the client, or stored and answered soon */
        bool stored;                    /* APPENDED came: the answer waits for answer_flush */
        bool fenced;                    /* refused by the server's fence: goes again */
        bool sent;                      /* an append went out: the server may have it */
        bool grace;                     /* past its deadline, its append in flight: the answer is awaited */
        struct dchat_entry e;
};

/* postq.c: the posts, a FIFO queue, and the ones in the current critical section. */
struct postq {
        struct post_req *queue, **queue_tail;
        unsigned queued;
        struct post_req **cs;           /* batch_max slots */
        unsigned cs_n, cs_cap;
        uint32_t fence_idx;
        sd_event_source *deadline_timer;
        sd_event_source *hold_timer;    /* post --hold: leave when it fires */
        sd_event_source *answer_src;    /* defer: answer the posts stored meanwhile */
        uint32_t hold_ms;               /* the longest hold asked for in this entry */
        unsigned fenced_streak;         /* entries in a row whose appends the fence refused */
        uint64_t retry_at;              /* no request before this (CLOCK_MONOTONIC): fenced retries back off */
        sd_event_source *retry_timer;
        uint64_t post_epoch;            /* the high half of our post ids: incarnation, or a later one */
        uint64_t next_post_id;
};

/* fanout.c: a local client following the log (see the top of fanout.c). */
struct follower {
        struct follower *prev, *next;
        struct conn *client;
        uint32_t tag;                   /* its FOLLOW's tag: every ENTRY to it carries it */
        uint64_t next_seq;              /* the next entry it needs */
        uint64_t page_from;             /* next_seq when its page was asked for */
        uint32_t view_tag;              /* its catch-up page at the server, 0: none */
        bool live;                      /* fed from the subscription, not by pages */
};

/* fanout.c: a client's VIEW, relayed to the server under a tag of ours. */
struct view_relay {
        struct view_relay *next;
        struct conn *client;
        uint32_t client_tag, server_tag;
};

struct fanout {
        struct view_relay *views;
        struct follower *followers;
        unsigned n_followers;
        uint64_t live_next;             /* the next seq our subscription brings */
        uint32_t follow_tag;            /* our FOLLOW on this server link, 0: none */
        uint64_t server_last_seq;       /* the last seq we know the server has */
};

struct peer {
        sd_event *event;
        const struct dchat_conf *conf;
        struct ra ra;
        const char *names[DCHAT_PEERS_MAX];
        uint64_t incarnation;           /* this life of ours (incarnation.c) */
        uint64_t vc_reserved;           /* our own vector-clock component may count up to this (peer.c) */
        bool anchored;                  /* a HELLO_ACK told us the log's last fence: clock bounds apply */
        bool leaving;                   /* exiting to be started again as a later life */
        bool stopping;                  /* peer_free runs: no reconnects, no cascades */
        sd_event_source *heartbeat_timer;       /* to the peers and to the server */
        struct wbuf cluster;            /* our CLUSTER message's members while it is sent */
        struct dchat_entry scratch;     /* for decoding frames */
        struct dchat_counters stats;    /* dchatctl status --json */
        uint64_t seen_seq;              /* the highest seq this node saw stored (read-your-writes): postq.c, fanout.c */
        struct ring *ring;              /* the recent protocol events (peer_event), for dchatctl trace */
        struct gather *gathers;         /* gather.c: trace requests being gathered */
        uint32_t gather_tag;            /* ... the last tag given to one */
        struct presence local;          /* our users (control.c), sent to the other nodes */
        struct wbuf presence_buf;       /* our PRESENCE while it is sent */
        void (*presence_hook)(void *userdata);  /* another node's presence or state changed */
        void *presence_data;

        struct mesh mesh;
        struct uplink uplink;
        struct postq postq;
        struct fanout fanout;
        struct note_call *note_calls;   /* noteq.c: reads and unlocked increments in flight */
};

/* peer.c ------------------------------------------------------------------ */

/* Public: peer_new, peer_free, peer_reconf, peer_status, peer_client_gone. */

static inline uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static inline const char *self_name(const struct peer *p)
{
        return p->conf->peers[p->conf->self].name;
}

/* Is t, a clock or a fence another node sent, within the bounds (proto.h)? */
bool clock_ok(const struct peer *p, uint64_t t);
/*
 * who (a peer, the server) knows this node under a later incarnation than
 * ours: our counter went back.  Moves it past known and ends this life, to
 * be started again as a later one.
 */
void leave_as_later(struct peer *p, const char *who, uint64_t known);
/* Our members (CLUSTER), to a node whose HELLO or answer showed another cluster definition. */
void send_cluster(struct peer *p, struct conn *c);
/* The next reconnect delay after *b (0: none yet): reconnect_min_ms, doubling up to reconnect_max_ms. */
uint64_t backoff_next(const struct dchat_conf *conf, uint64_t *b);
/*
 * A protocol event of this peer: logged with f (its vector clock set to vc)
 * and kept in the ring (trace_events) with peer_idx, the other peer (-1:
 * none).  Returns its number.  peer_local_event: an event of this node's
 * own (a post stored, a peer found dead), counted in its vector clock first.
 */
uint64_t peer_event(struct peer *p, enum log_event ev, int peer_idx, struct event_fields *f, const struct vclock *vc,
                    const char *fmt, ...) _printf_(6, 7);
uint64_t peer_local_event(struct peer *p, enum log_event ev, int peer_idx, struct event_fields *f,
                          const char *fmt, ...) _printf_(5, 6);
/* Another node's presence or state changed: whoever watches (control.c) is told. */
void presence_changed(struct peer *p);
/* Our PRESENCE (our local users) to c. */
void send_presence(struct peer *p, struct conn *c);

/* mesh.c ------------------------------------------------------------------ */

/* Starts listening on listen_fd (the peer socket) and connecting to the other peers. */
int mesh_start(struct peer *p, int listen_fd);
/*
 * peer_free, before mesh_stop: the REPLYs we owe, then a LEAVE to every
 * peer our link to is up, so that none waits for us (best effort: a frame
 * the socket does not take at once is lost, and the others then find us
 * dead after dead_after_ms, as after a crash).
 */
void mesh_leave(struct peer *p);
/* peer_free: every link closed (p->stopping: no reconnects). */
void mesh_stop(struct peer *p);
/* suspect_after_ms and dead_after_ms may have changed. */
void mesh_reconf(struct peer *p);
/* Each heartbeat_ms: our HEARTBEAT to each peer our link to is up. */
void mesh_heartbeat(struct peer *p);
/* st's peers: each one's link and what the failure detector says of it. */
void mesh_status(struct peer *p, struct dchat_status *st);
/* Carries out what the RA machine asked for: REQUESTs and REPLYs out, events logged, postq_enter on ENTER. */
void mesh_run_actions(struct peer *p, const struct ra_actions *acts);
/* ... with why (" after 3 post(s)") added to the line of a cs-exit or a request withdrawn. */
void mesh_run_actions_why(struct peer *p, const struct ra_actions *acts, const char *why);
/* A frame to peer idx on our link to it (TRACE_EVENTS); -ENOTCONN if it is down. */
int mesh_send(struct peer *p, unsigned idx, const struct dchat_msg *m);
/* Our link to peer idx and its link to us are both up: a question to it gets an answer. */
bool mesh_linked(const struct peer *p, unsigned idx);
/* Our own link to peer idx is up: what we send it gets there. */
bool mesh_reachable(const struct peer *p, unsigned idx);
/* Our PRESENCE to every peer our link to is up. */
void mesh_presence_send(struct peer *p);
/* WHO: each other peer (its link, the failure detector, its users) into out; how many. */
unsigned mesh_who(struct peer *p, struct who_node *out, unsigned cap);

/* uplink.c ---------------------------------------------------------------- */

/* Starts connecting to the server. */
int uplink_start(struct peer *p);
/* peer_free: the link closed (p->stopping: nobody is told). */
void uplink_stop(struct peer *p);
/* Each heartbeat_ms (now): our HEARTBEAT to the server, and its silence checked; a silent one is dropped. */
void uplink_heartbeat(struct peer *p, uint64_t now);

/* The link to the server is up: its HELLO_ACK came, so requests (views, follows) may go. */
bool uplink_ready(const struct peer *p);
/* ... and the server leads the group (one server leads itself): appends may go. */
bool uplink_leads(const struct peer *p);
/* A frame to the server (only while uplink_ready). */
int uplink_send(struct peer *p, const struct dchat_msg *m);
/* Between the two, uplink_send only queues: the frames go out in one write (conn_cork). */
void uplink_cork(struct peer *p);
void uplink_uncork(struct peer *p);
/* A fresh tag (never 0) for a request to the server; its answers carry it. */
uint32_t uplink_tag(struct peer *p);
/* The server we link to (or try to), for messages. */
const char *uplink_server_name(const struct peer *p);
/* status: the server we link to, whether the link is up, the group's leader and term as LEADER said. */
void uplink_status(const struct peer *p, struct dchat_status *st);
/* Why it is not up, for messages: "silent for N ms", "connection refused", or "". */
const char *uplink_why(const struct peer *p);
/*
 * Has the server been unreachable for dead_after_ms (like a dead peer)?
 * Then why says so, for a post's error.
 */
bool uplink_given_up(struct peer *p, char *why, size_t cap);
/* What a post waits for on the server side, for its error: "the server X's answer", "the server group to elect a leader (...)". */
void uplink_waiting(const struct peer *p, char *buf, size_t cap);
/* MEMBER from a local client (server add, server remove): to the server, whose answer goes back to it. */
int uplink_member(struct peer *p, struct conn *client, const struct dchat_msg *req);
/* A control client went away: the answers to its MEMBER requests are dropped. */
void uplink_client_gone(struct peer *p, struct conn *client);
/*
 * Appends cannot go now (no link to the server, or it does not lead): why,
 * and how long a post waits at most (ms), for POST_WAIT.  false: they can.
 */
bool uplink_wait_reason(struct peer *p, char *why, size_t cap, uint32_t *wait_ms);
/* Our PRESENCE to the server, if the link is up. */
void uplink_presence_send(struct peer *p);
/* WHO: the servers (the one we link to, its users; a group's others as known) into out; how many. */
unsigned uplink_who(struct peer *p, struct who_node *out, unsigned cap);

/* postq.c ----------------------------------------------------------------- */

/* Public: peer_post, peer_posts_of. */

/* Post ids begin in this life's epoch; no post, no timer armed. */
int postq_init(struct peer *p);
/* peer_free: every post still waiting fails (those stored are answered as stored). */
void postq_stop(struct peer *p);
/* post_timeout_ms may have changed. */
void postq_reconf(struct peer *p);
/* Posts not answered yet: queued, or in the critical section. */
unsigned postq_pending(const struct peer *p);
/* A control client went away: its posts go on, their answers are dropped. */
void postq_client_gone(struct peer *p, struct conn *client);
/* The critical section is ours (RA_ENTER): up to batch_max queued posts go to the server. */
void postq_enter(struct peer *p);
/* Each heartbeat_ms: once the server is given up (uplink_given_up), the queued posts fail at once. */
void postq_heartbeat(struct peer *p);
/* Appends cannot go now (uplink_wait_reason): every client whose post waits is told why (POST_WAIT). */
void postq_tell_waiting(struct peer *p);

/*
 * HELLO_ACK: the last post id of ours the server holds.  Our posts are
 * numbered on after it; if it is of a later epoch than ours (our counter
 * went back), in a new epoch.  -EIO if none can be had.
 */
int postq_number_after(struct peer *p, uint64_t last);
/* The server link is up: what a lost link left unanswered is sent again, and a request made if posts wait. */
void postq_server_up(struct peer *p);
/* The server we link to leads (LEADER): what waited for the leader goes, deadlines are armed again. */
void postq_server_leads(struct peer *p);
/* The server link is lost: appends in flight stay in the critical section, to be sent again. */
void postq_server_lost(struct peer *p);
/* Is tag one of our appends in flight (so an ERROR with it answers a post)? */
bool postq_awaits(struct peer *p, uint32_t tag);
/*
 * An APPENDED, or an ERROR for one of our appends: the post is stored,
 * fenced (it goes again), not taken by a server that does not lead (it
 * goes again to the leader), or failed.  <0 to drop the link.
 */
int postq_answer(struct peer *p, uint8_t type, const struct dchat_msg *m);

/* A post id for a write outside the critical section (noteq.c); 0 if none can be had. */
uint64_t postq_take_id(struct peer *p);

/* noteq.c ----------------------------------------------------------------- */

/* Public: peer_note. */

/* A note write in the critical section: its read (an increment's) or its write goes to the server; -EIO: no op id. */
int noteq_cs_send(struct peer *p, struct post_req *r);
/*
 * The server's answer (NOTE_REPLY or ERROR) to a note write in the critical
 * section: done (r->done, the client told), fenced (r->fenced: it goes
 * again), or the increment's read answered and its write sent.  <0 to drop
 * the link.
 */
int noteq_cs_answer(struct peer *p, struct post_req *r, uint8_t type, const struct dchat_msg *m);
/* A note write refused by the fence or a version goes again: from its read, under a new op id. */
void noteq_cs_again(struct post_req *r);
/* The answer to a note write, to its client. */
void noteq_reply(struct conn *client, uint32_t tag, const struct note_op *n, const char *node);
/* A read (GET, LIST) or an unlocked INCR from a client: to the server now. */
int noteq_call(struct peer *p, struct conn *client, uint32_t tag, const struct dchat_msg *req);
/* Is tag one of those in flight?  Then its NOTE_REPLY or ERROR goes to noteq_frame. */
bool noteq_awaits(struct peer *p, uint32_t tag);
int noteq_frame(struct peer *p, uint8_t type, const struct dchat_msg *m);
/* The server link was lost (or dchatd stops): every one in flight fails, saying why. */
void noteq_server_lost(struct peer *p, const char *why);
void noteq_stop(struct peer *p);
void noteq_client_gone(struct peer *p, struct conn *client);

/* gather.c ---------------------------------------------------------------- */

/* Public: peer_trace. */

/* A peer asked for a page of our ring (TRACE, scope TRACE_RING): the page goes back on our link to it. */
void gather_answer(struct peer *p, unsigned idx, const struct dchat_msg *m);
/* A page of peer idx's ring, for the gathering with its tag. */
void gather_input(struct peer *p, unsigned idx, const struct dchat_msg *m);
/* The links with peer idx went down: a gathering waiting for it goes on without the rest of its events. */
void gather_peer_down(struct peer *p, unsigned idx);
void gather_client_gone(struct peer *p, struct conn *client);
void gather_client_drained(struct peer *p, struct conn *client);
/* peer_free: every gathering dropped, without a word. */
void gather_stop(struct peer *p);

/* fanout.c ---------------------------------------------------------------- */

/* Public: peer_follow, peer_client_drained, peer_view. */

/*
 * A frame from the server that is no answer to an append: an ENTRY or
 * ENTRY_DAMAGED, a VIEW_END or an ERROR (no other type).  It goes to the
 * live followers, to a follower catching up, or to the client whose view
 * it answers (none: its client went away).  <0 to drop the server link.
 */
int fanout_frame(struct peer *p, uint8_t type, struct dchat_msg *m);
/* The server link is up (HELLO_ACK: its log ends at last_seq): subscribe, move the followers on. */
void fanout_server_up(struct peer *p, uint64_t last_seq);
/*
 * The server link is lost: views end with an error saying msg, and so do
 * followers unless keep_followers (we go over to a group's new leader:
 * they follow on from there).
 */
void fanout_server_lost(struct peer *p, const char *msg, bool keep_followers);
/* A control client went away: its follow and views are forgotten. */
void fanout_client_gone(struct peer *p, struct conn *client);
/* peer_free: every view and follower forgotten, without a word. */
void fanout_stop(struct peer *p);
