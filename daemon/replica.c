/* SPDX-License-Identifier: MIT */
/*
 * replica.c — this server's place in a replicated server group: libraft
 * (Debian's libraft-dev, canonical's C Raft) with its libuv storage in
 * $STATE_DIRECTORY/raft, its transport over dchat's encrypted links
 * (transport.c), its loop inside sd-event (uvloop.c), and the chat log as
 * its state machine (fsm.c).
 *
 * The server role hands a batch of appends to replica_submit(); once the
 * batch is committed (on disk on a majority of the servers) and applied to
 * this leader's chat log, the applied op reports each post's fate, and
 * only then are the posters told.  A batch whose leadership is lost before
 * that is reported with an error: its posts may or may not be stored, and
 * the peers send them again to the new leader, where their post ids make
 * them land once (chatlog.c).
 *
 * libraft has no callback for a change of state or leader: they are read
 * after every turn of the libuv loop and reported (leader-elected,
 * leader-lost), and so are changes of the group's configuration
 * (server-joined, server-removed).
 *
 * Membership.  A server with an empty Raft directory starts Raft only once
 * the others said what they hold (join.c): it bootstraps a new group, or
 * joins the one that runs and waits to be added (members.c does the adding
 * on the leader).  Every server records its group's id in raft/group-id and
 * takes no Raft traffic from a server of another group (transport.c,
 * server.c); a server whose own state turns out to be another group's (a
 * majority of the servers say so) stops Raft and takes no part.  A server
 * removed from the group notices it (its committed configuration, or the
 * others' answers when it hears from no leader), stops Raft, leaves
 * raft/removed behind so that it stays out after a restart, and serves
 * nothing more (server.c).
 *
 * Its phase says where it stands (REP_ASKING, REP_RUNNING, REP_REMOVED,
 * REP_REFUSED); the engine below runs only in REP_RUNNING, and a server
 * whose engine is stopped for trouble is still REP_RUNNING: it is a member
 * that cannot take part just now, not one that was removed or refused.
 * There is one way to close libraft (engine_stop), never called from
 * inside libraft or a link's callback: removal and refusal ask for it
 * through the same timer as a restart, which then starts nothing.
 *
 * Trouble.  libraft 0.15 cannot go on by itself after some failures, and
 * says so badly or not at all:
 *
 *   - an apply that fails while it handles a message (a heartbeat that
 *     moves the commit index) makes it give up for good: RAFT_UNAVAILABLE,
 *     a server that neither answers nor applies until it is restarted;
 *   - a write of its own log that fails (a full disk) leaves the entries
 *     in its memory as if stored: it never writes them again, and the
 *     follower stores nothing more while it looks alive;
 *   - it cannot even start while its directory cannot be written.
 *
 * So the part that runs libraft — its storage, transport, state machine
 * and catch-up, here called the engine — is stopped as soon as one of
 * these shows (an apply that failed to write, fsm_apply_error; a failed
 * append seen through a wrapper of raft_io's append; libraft unavailable;
 * a start that failed), and started again after a pause that grows from
 * 250 ms to 5 s while the trouble lasts (replica-stalled, then
 * replica-resumed).  Stopping is what a crash would be, without the
 * crash: what libraft acknowledged is in its files, and a start loads
 * them and applies again every command after the last snapshot, which
 * changes nothing already in the chat log (fsm.c).  Meanwhile the server
 * serves what its chat log holds and the other servers go on; a leader
 * that cannot apply its own commands steps down that way.  A batch of
 * the chat log is written whole or not at all (chatlog_append), so a
 * failed apply leaves no half of one.
 *
 * A damaged Raft log (libraft refuses it, RAFT_CORRUPT, or drops a damaged
 * segment: it renames it corrupt-* and starts without its entries, which
 * it acknowledged once) is not used.  A server that lost entries it
 * acknowledged must not vote until it has them back: with its vote, a
 * candidate that lacks a committed entry could win and the entry be lost.
 * The directory is moved aside (raft.damaged-TIME, kept for whoever
 * investigates) and the engine starts on an empty one without taking part
 * in elections (the file raft/rejoin says so across restarts): it does not
 * bootstrap, grants no vote and gets none (send_wrap), so it cannot lead.
 * It still acknowledges what it stores: an acknowledgement only says "I
 * hold this", which is true.  Once it holds the group's log up to a commit
 * index that the leader announced after it came back — which covers every
 * entry committed with its old acknowledgements — it votes again
 * (replica-resumed).  Its chat log is kept: the group's log, replayed,
 * finds it stored (fsm.c).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <dirent.h>
#include <raft.h>
#include <raft/uv.h>

#include "dchatd.h"

/*
 * Commands between snapshots (a snapshot is a few dozen bytes).  Taking one
 * holds libraft's appends back 30-80 ms (it writes and syncs its files and
 * drops old segments): with 2 peers x 8 posters that is some 15% of the
 * throughput (make bench: 8,000-8,300 posts/s; 2048 gave 9,400-9,600 and
 * about 1 MiB more RSS per 1024 commands kept in memory).
 */
#define SNAPSHOT_THRESHOLD      512
#define SNAPSHOT_TRAILING       256     /* commands kept behind a snapshot for followers just behind */
#define RESTART_MIN             (250 * USEC_PER_MSEC)   /* pause before the engine starts again ... */
#define RESTART_MAX             (5 * USEC_PER_SEC)      /* ... doubled while the trouble lasts, up to this */
#define REJOIN_FILE             "rejoin"                /* in raft/: no vote until the group's log is held */
#define MEMBERS_MAX             16      /* servers in a configuration we keep track of */
#define POLL_EVERY              (2 * USEC_PER_SEC)      /* asking who leads, when nobody is heard of */

struct submit {
        struct raft_apply req;
        struct replica *rep;
        void *cookie;
};

struct member {
        raft_id id;
        int role;                       /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
        char name[DCHAT_NAME_MAX + 1];
        char address[128];              /* "HOST:PORT" */
};

/* An append of libraft's, in flight through append_wrap. */
struct wrapped_append {
        struct raft_io_append inner;    /* what the storage sees (inner.data: this) */
        struct raft_io_append *outer;   /* libraft's own request (NULL: given up) */
        raft_io_append_cb cb;
        struct replica *rep;
};

struct replica {
        sd_event *event;
        const struct dchat_conf *conf;
        struct chatlog *log;
        const struct replica_ops *ops;
        void *userdata;
        struct uvloop *uv;
        raft_id self;
        char dir[PATH_MAX];

        /* the engine, stopped and started again on trouble (see the top) */
        struct transport *tr;
        struct fsm *fsm;
        struct catchup *cu;
        struct raft_io io;
        struct raft raft;
        bool io_ready, raft_ready, started, closed, stopping;
        bool caught_up_since_start;     /* its state machine waited for a catch-up since the start */
        int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
        int (*io_append)(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                         unsigned n, raft_io_append_cb cb);
        int (*io_send)(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                       raft_io_send_cb cb);
        raft_io_recv_cb recv_cb;
        char storage_error[RAFT_ERRMSG_BUF_SIZE + 64];  /* a write of libraft's log failed: what it said */

        /* trouble: why the engine was stopped, and when it starts again */
        sd_event_source *restart_timer;
        uint64_t backoff;               /* the next pause */
        char trouble[DCHAT_NOTE_MAX + 1];       /* for status ("" when this server takes part) */
        char cause[512];                /* the cause last logged (replica-stalled), "" if none */
        uint64_t trouble_since;         /* CLOCK_MONOTONIC usec; 0: no trouble */
        bool freeing;                   /* replica_free: nobody to tell */
        bool wedged;                    /* libraft did not close: nothing more is done with it */

        /* rejoining without a vote after the Raft log was found damaged (see the top) */
        bool no_vote;
        uint64_t no_vote_since;         /* when this engine started */
        raft_index rejoin_target;       /* a leader's commit index announced since (0: none yet) */
        raft_index heard_commit;        /* the last commit index a leader announced to this engine */

        /* what was last reported */
        unsigned short state;
        raft_id leader;
        raft_term term;
        bool genesis_asked;
        enum fsm_state fsm_state;
        struct raft_transfer transfer;  /* waiting(): a leader that cannot apply hands the lead on */
        bool transfer_pending;
        bool was_busy;
        uint64_t drain_after;           /* CLOCK_MONOTONIC usec: no retry of a failed write before */
        unsigned in_flight;             /* batches submitted, not applied */
        struct dchat_counters stats;
        struct fsm_snapshots snaps;     /* as last logged */
        struct ratelimit snapshot_rl;   /* snapshot events: a busy group takes several a second */
        raft_index known_applied, known_last;   /* as the engine last had them (while it is stopped) */

        /* membership */
        enum replica_phase phase;
        bool have_state;                /* the Raft directory held state at the start */
        bool bootstrap;                 /* REP_RUNNING: the engine bootstraps the group when it starts */
        bool must_rejoin;               /* ... or rejoins without a vote (its Raft log is gone: joined) */
        uint8_t group_id[DCHAT_GROUP_ID_BYTES];         /* this server's group (zeros: none yet) */
        uint8_t boot_id[DCHAT_GROUP_ID_BYTES];          /* the group its configuration would start */
        struct join *join;              /* REP_ASKING: the others are asked */
        struct member members[MEMBERS_MAX];     /* the committed configuration, as last seen */
        unsigned n_members;
        raft_index members_index;
        bool members_seen;
        bool was_member;                /* a committed configuration held this server */
        struct { char name[DCHAT_NAME_MAX + 1]; uint8_t id[DCHAT_GROUP_ID_BYTES]; } foreign[DCHAT_SERVERS_MAX * 2];
        unsigned n_foreign;             /* servers whose links said they hold another group's state */
        uint64_t leaderless_since;      /* CLOCK_MONOTONIC usec; 0: a leader is known */
        sd_event_source *poll_timer;    /* asking the others while no leader is heard of */
        struct gask *poll[DCHAT_SERVERS_MAX + MEMBERS_MAX];
        char hint[DCHAT_NAME_MAX + 1];  /* REP_REMOVED: the leader the others named, and its address */
        char hint_address[128];
};

#define REPLICA_OF_IO(p) ((struct replica *) (void *) ((char *) (p) - offsetof(struct replica, io)))

static void engine_stop(struct replica *rep);
static int engine_start(struct replica *rep);
static void trouble(struct replica *rep, const char *brief, const char *fmt, ...) _printf_(3, 4);

static uint64_t monotonic_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const char *state_name(unsigned short s)
{
        switch (s) {
        case RAFT_FOLLOWER:
                return "follower";
        case RAFT_CANDIDATE:
                return "candidate";
        case RAFT_LEADER:
                return "leader";
        default:
                return "unavailable";
        }
}

/* The name in a libraft address "NAME@HOST:PORT". */
static void name_of_address(const char *a, char *buf, size_t cap)
{
        size_t n = a ? strcspn(a, "@") : 0;
        snprintf(buf, cap, "%.*s", (int) n, a ? a : "");
}

/* libraft runs here and may be used: the engine started, and this server is (still) a member. */
static bool running(const struct replica *rep)
{
        return rep->started && !rep->stopping && rep->phase == REP_RUNNING;
}

static enum dchat_member_role member_role(int raft_role)
{
        switch (raft_role) {
        case RAFT_VOTER:
                return MEMBER_VOTER;
        case RAFT_STANDBY:
                return MEMBER_STANDBY;
        case RAFT_SPARE:
                return MEMBER_SPARE;
        default:
                return MEMBER_NONE;
        }
}

const char *member_role_name(uint8_t role)
{
        switch (role) {
        case MEMBER_VOTER:
                return "voter";
        case MEMBER_STANDBY:
                return "standby";
        case MEMBER_SPARE:
                return "spare";
        default:
                return "not a member";
        }
}

/*
 * name's place in the configuration the running Raft has (committed or
 * not), and its "HOST:PORT" there; while the engine is stopped (trouble),
 * in the committed configuration last seen: the server is still a member.
 * -1 if it is in neither (or this server takes no part).
 */
static int conf_role(const struct replica *rep, const char *name, char *address, size_t cap)
{
        raft_id id = transport_id_of(name);
        const char *at;

        if (address && cap)
                address[0] = '\0';
        if (running(rep)) {
                for (unsigned i = 0; i < rep->raft.configuration.n; i++) {
                        const struct raft_server *sv = &rep->raft.configuration.servers[i];
                        if (sv->id != id)
                                continue;
                        if (address && cap && sv->address && (at = strchr(sv->address, '@')))
                                strlcpy(address, at + 1, cap);
                        return sv->role;
                }
                return -1;
        }
        if (rep->phase != REP_RUNNING)
                return -1;
        for (unsigned k = 0; k < rep->n_members; k++)
                if (rep->members[k].id == id) {
                        if (address && cap)
                                strlcpy(address, rep->members[k].address, cap);
                        return rep->members[k].role;
                }
        return -1;
}

enum dchat_member_role replica_member(struct replica *rep, const char *name, char *address, size_t cap)
{
        int role = conf_role(rep, name, address, cap);
        return role < 0 ? MEMBER_NONE : member_role(role);
}

void replica_address_of(struct replica *rep, const char *name, char *buf, size_t cap)
{
        if (replica_member(rep, name, buf, cap) == MEMBER_NONE && rep->phase == REP_REMOVED &&
            !strcmp(name, rep->hint))
                strlcpy(buf, rep->hint_address, cap);
}

bool replica_conf_committed(struct replica *rep)
{
        return running(rep) && rep->raft.configuration_uncommitted_index == 0;
}

bool replica_knows(struct replica *rep, const char *name)
{
        return rep && conf_role(rep, name, NULL, 0) >= 0;
}

unsigned replica_voters(struct replica *rep, char *names, size_t cap)
{
        bool live = running(rep);
        unsigned n = 0, total = live ? rep->raft.configuration.n : rep->phase == REP_RUNNING ? rep->n_members : 0;

        if (names && cap)
                names[0] = '\0';
        for (unsigned i = 0; i < total; i++) {
                char name[DCHAT_NAME_MAX + 1];
                if (live) {
                        const struct raft_server *sv = &rep->raft.configuration.servers[i];
                        if (sv->role != RAFT_VOTER)
                                continue;
                        name_of_address(sv->address, name, sizeof name);
                } else {
                        if (rep->members[i].role != RAFT_VOTER)
                                continue;
                        strlcpy(name, rep->members[i].name, sizeof name);
                }
                n++;
                if (names && cap) {
                        size_t l = strlen(names);
                        if (l < cap)
                                snprintf(names + l, cap - l, "%s%s", l ? ", " : "", name);
                }
        }
        return n;
}

unsigned replica_members(struct replica *rep)
{
        return running(rep) ? rep->raft.configuration.n : rep->phase == REP_RUNNING ? rep->n_members : 0;
}

enum replica_phase replica_phase(const struct replica *rep)
{
        return rep->phase;
}

const uint8_t *replica_group_id(const struct replica *rep)
{
        return rep->group_id;
}

uint64_t replica_last_seq(const struct replica *rep)
{
        return chatlog_last_seq(rep->log);
}

void replica_progress(struct replica *rep, uint64_t *applied, uint64_t *last)
{
        *applied = running(rep) ? raft_last_applied(&rep->raft) : rep->known_applied;
        *last = running(rep) ? raft_last_index(&rep->raft) : rep->known_last;
}

bool replica_busy(struct replica *rep)
{
        if (!running(rep))
                return false;   /* (it leads nothing either) */
        return fsm_state(rep->fsm, NULL) != FSM_READY || fsm_waiting(rep->fsm) > 0;
}

bool replica_is_leader(struct replica *rep)
{
        return running(rep) && raft_state(&rep->raft) == RAFT_LEADER;
}

bool replica_leader(struct replica *rep, char name[DCHAT_NAME_MAX + 1], uint64_t *term)
{
        raft_id id = 0;
        const char *address = NULL;

        name[0] = '\0';
        if (term)
                *term = running(rep) ? rep->raft.current_term : rep->term;
        if (rep->phase == REP_REMOVED) {
                /* removed: the leader the others named */
                strlcpy(name, rep->hint, DCHAT_NAME_MAX + 1);
                return rep->hint[0] != '\0';
        }
        if (!running(rep))
                return false;
        raft_leader(&rep->raft, &id, &address);
        if (!id)
                return false;
        name_of_address(address, name, DCHAT_NAME_MAX + 1);
        return true;
}

/* --- genesis ------------------------------------------------------------------------------ */

static void genesis_done(struct raft_apply *req, int status, void *result)
{
        struct submit *s = (struct submit *) req;
        (void) result;
        if (status != 0)
                s->rep->genesis_asked = false;  /* a later leader asks again */
        free(s);
}

/*
 * A leader of a group that has no genesis yet proposes its own chat log's
 * end as the group's start: the replicas that hold the same go on, empty
 * ones fetch it, others refuse (fsm.c).
 */
static void genesis_propose(struct replica *rep)
{
        struct fsm_mark m;
        struct raft_buffer buf;
        struct submit *s;

        if (rep->genesis_asked || fsm_genesis_done(rep->fsm) || fsm_state(rep->fsm, NULL) != FSM_READY)
                return;
        if (fsm_mark_last(rep->fsm, &m) < 0 || fsm_encode_genesis(&m, &buf) < 0)
                return;
        s = calloc(1, sizeof *s);
        if (!s) {
                raft_free(buf.base);
                return;
        }
        s->rep = rep;
        if (raft_apply(&rep->raft, &s->req, &buf, 1, genesis_done) != 0) {
                raft_free(buf.base);
                free(s);
                return;
        }
        rep->genesis_asked = true;
        log_info("proposed this server's chat log (ending at seq %llu) as the group's start",
                 (unsigned long long) m.seq);
}

/* --- raft_io, wrapped ------------------------------------------------------------------------ */

static void storage_failed(struct replica *rep, int status, const char *what)
{
        if (rep->stopping || rep->storage_error[0])
                return;
        snprintf(rep->storage_error, sizeof rep->storage_error, "%s (%s)",
                 rep->io.errmsg[0] ? rep->io.errmsg : raft_strerror(status), what);
}

static void append_done(struct raft_io_append *inner, int status)
{
        struct wrapped_append *w = inner->data;
        struct raft_io_append *outer = w->outer;
        raft_io_append_cb cb = w->cb;
        struct replica *rep = w->rep;

        free(w);
        if (!outer)
                return;
        if (status != 0)
                storage_failed(rep, status, "writing its log");
        cb(outer, status);
}

/*
 * libraft's appends pass here so that a failed write of its log is seen:
 * libraft 0.15 then answers the leader with a rejection and keeps the
 * entries in memory as if stored, never to write them again (see the
 * top); the engine is started again instead, which reloads what is on
 * disk.  The storage sees a request of ours and calls us back; libraft's
 * own request is given back to its callback as the storage would.
 */
static int append_wrap(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                       unsigned n, raft_io_append_cb cb)
{
        struct replica *rep = REPLICA_OF_IO(io);
        struct wrapped_append *w = malloc(sizeof *w);
        int r;

        if (!w)
                return RAFT_NOMEM;
        *w = (struct wrapped_append) { .inner = { .data = w }, .outer = req, .cb = cb, .rep = rep };
        req->cb = cb;
        r = rep->io_append(io, &w->inner, entries, n, append_done);
        if (r != 0) {
                /* the storage may still call back for it (libraft 0.15 queues it before it fails):
                 * then there is nobody to tell, and w is freed there */
                w->outer = NULL;
                storage_failed(rep, r, "queueing a write of its log");
        }
        return r;
}

/*
 * Messages libraft sends: while this server rejoins without a vote it
 * grants none, and its own requests for votes (it may time out into an
 * election like any follower whose leader fell silent) claim the first
 * term and an empty log: every server turns them down, and none learns a
 * higher term from them.  With pre-vote, which engine_start turns on, such
 * a candidate does not move its own term either, so it disturbs no leader.
 */
static int send_wrap(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m, raft_io_send_cb cb)
{
        struct replica *rep = REPLICA_OF_IO(io);
        struct raft_message copy;

        if (!rep->no_vote)
                return rep->io_send(io, req, m, cb);
        copy = *m;
        if (copy.type == RAFT_IO_REQUEST_VOTE_RESULT)
                copy.request_vote_result.vote_granted = false;
        else if (copy.type == RAFT_IO_REQUEST_VOTE) {
                copy.request_vote.term = 1;
                copy.request_vote.last_log_index = 0;
                copy.request_vote.last_log_term = 0;
                copy.request_vote.disrupt_leader = false;
        }
        return rep->io_send(io, req, &copy, cb); /* the storage encodes the message before it returns */
}

/* Messages libraft receives: what the leader says it committed is noted (watch, watch_rejoin). */
static void recv_wrap(struct raft_io *io, struct raft_message *m)
{
        struct replica *rep = REPLICA_OF_IO(io);

        if (m->type == RAFT_IO_APPEND_ENTRIES)
                rep->heard_commit = m->append_entries.leader_commit;
        /* a rejoining server's target: a commit index announced at least two election timeouts
         * after it came back (acknowledgements it sent before, still on their way then, have
         * arrived by then, and what they committed is below it) */
        if (rep->no_vote && !rep->rejoin_target && m->type == RAFT_IO_APPEND_ENTRIES &&
            m->append_entries.leader_commit &&
            monotonic_usec() - rep->no_vote_since >= 2 * rep->conf->election_timeout_usec)
                rep->rejoin_target = m->append_entries.leader_commit;
        rep->recv_cb(io, m);
}

static int start_wrap(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
        struct replica *rep = REPLICA_OF_IO(io);

        rep->recv_cb = recv;
        return rep->io_start(io, msecs, tick, recv_wrap);
}

/* --- trouble ------------------------------------------------------------------------------------ */

static int on_restart(sd_event_source *s, uint64_t usec, void *userdata);

/* Stop the engine at the end of this turn (not from inside libraft), start it again after the pause. */
static void restart_soon(struct replica *rep)
{
        if (sd_event_source_get_enabled(rep->restart_timer, NULL) > 0)
                return;
        (void) sd_event_source_set_time_relative(rep->restart_timer, 0);
        (void) sd_event_source_set_enabled(rep->restart_timer, SD_EVENT_ONESHOT);
}

/*
 * This server cannot take part just now: brief for status, cause for the
 * journal, once per cause (replica-stalled), with what it does about it.
 */
static void stalled(struct replica *rep, const char *brief, const char *cause, const char *what)
{
        char then[64];

        if (!rep->trouble_since) {
                rep->trouble_since = monotonic_usec();
                rep->backoff = RESTART_MIN;
        }
        snprintf(rep->trouble, sizeof rep->trouble, "%s", brief);
        if (!strcmp(cause, rep->cause))
                return;
        strlcpy(rep->cause, cause, sizeof rep->cause);
        snprintf(then, sizeof then, "in %llu ms", (unsigned long long) (rep->backoff / USEC_PER_MSEC));
        log_event(EV_REPLICA_STALLED, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                  "%s: %s (its chat log ends at seq %llu; the other servers go on); trying again %s, then less and "
                  "less often", cause, what, (unsigned long long) chatlog_last_seq(rep->log), then);
}

/* ... and the engine is stopped, and started again after a pause. */
static void trouble(struct replica *rep, const char *brief, const char *fmt, ...)
{
        char cause[sizeof rep->cause];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(cause, sizeof cause, fmt, ap);
        va_end(ap);
        stalled(rep, brief, cause, "this server takes no part in the group until that works again");
        restart_soon(rep);
}

/* The engine runs and applies again: the trouble is over. */
static void resumed(struct replica *rep, const char *how)
{
        uint64_t ms = (monotonic_usec() - rep->trouble_since) / USEC_PER_MSEC;

        log_event(EV_REPLICA_RESUMED, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                  "this server takes part in the group again%s, after %llu ms (%s); its chat log ends at seq %llu",
                  how, (unsigned long long) ms, rep->cause, (unsigned long long) chatlog_last_seq(rep->log));
        rep->trouble_since = 0;
        rep->trouble[0] = '\0';
        rep->cause[0] = '\0';
}

/*
 * This server is no longer a member (removed, refused): its engine is
 * stopped at the end of this turn by the restart timer, which then starts
 * nothing (on_restart); running() is false from now on.
 */
static void stop_soon(struct replica *rep)
{
        rep->trouble_since = 0;
        rep->trouble[0] = '\0';
        rep->cause[0] = '\0';
        (void) sd_event_source_set_time_relative(rep->restart_timer, 0);
        (void) sd_event_source_set_enabled(rep->restart_timer, SD_EVENT_ONESHOT);
}

static int on_restart(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct replica *rep = userdata;
        (void) usec;

        if (rep->wedged)
                return 0;
        if (rep->started || rep->raft_ready || rep->io_ready) {
                /* first stop, at once: no vote, no acknowledgement, no lead meanwhile */
                engine_stop(rep);
                if (rep->phase != REP_RUNNING)
                        return 0;       /* removed or refused: never started again */
                (void) sd_event_source_set_time_relative(s, rep->backoff);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        if (rep->phase != REP_RUNNING)
                return 0;
        if (engine_start(rep) < 0) {
                engine_stop(rep);
                rep->backoff = rep->backoff * 2 < RESTART_MAX ? rep->backoff * 2 : RESTART_MAX;
                (void) sd_event_source_set_time_relative(s, rep->backoff);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        rep->backoff = rep->backoff * 2 < RESTART_MAX ? rep->backoff * 2 : RESTART_MAX;
        return 0;
}

/* --- membership: the configuration, removal, other groups ------------------------------- */

static void enter_phase(struct replica *rep, enum replica_phase ph)
{
        rep->phase = ph;
        if (rep->ops->phase_changed)
                rep->ops->phase_changed(rep->userdata, ph);
}

/*
 * This server is no longer in the group's configuration: it stops Raft,
 * leaves raft/removed behind (so a restart keeps it out: a removed server
 * must not come back by itself with a configuration that still lists it),
 * and serves nothing more.  Its files stay as they are.
 */
static void removed(struct replica *rep, const char *how)
{
        char path[PATH_MAX + 16], text[512];
        int fd;

        if (rep->phase == REP_REMOVED)
                return;
        log_event(EV_SERVER_REMOVED, &(struct event_fields) { .peer = rep->conf->node },
                  "this server was removed from the server group (%s): it takes no part and serves nothing "
                  "from now on, and stays out after a restart (%s/removed); its chat log and Raft files are "
                  "kept. Take it off cluster.servers on every host and stop dchatd here; to add it again, "
                  "move %s aside and run 'dchatctl server add %s ADDRESS' on a member", how, rep->dir, rep->dir,
                  rep->conf->node);
        snprintf(path, sizeof path, "%s/removed", rep->dir);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd >= 0) {
                int l = snprintf(text, sizeof text, "removed from the server group: %s\n", how);
                if (write(fd, text, (size_t) l) != l || fsync(fd) < 0)
                        log_warning("cannot write %s: %m (a restart would run Raft again)", path);
                close(fd);
        } else
                log_warning("cannot write %s: %m (a restart would run Raft again)", path);
        rep->join = join_free(rep->join);
        enter_phase(rep, REP_REMOVED);
        stop_soon(rep);
}

/* This server's Raft state is another group's than its servers': it stops Raft and takes no part (changing no file). */
static void refuse(struct replica *rep, const char *why)
{
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1];

        if (rep->phase == REP_REFUSED)
                return;
        log_error("this server takes no part in the server group: %s. Nothing of %s or of its chat log was "
                  "changed. If this state directory came from another cluster (or a group that was made anew), "
                  "stop dchatd, move %s (and chat.log, if it is not this group's) aside, start it again, and "
                  "run 'dchatctl server add %s ADDRESS' on a member if the group does not list it (this "
                  "server's group id: %s)", why, rep->dir, rep->dir, rep->conf->node,
                  group_id_format(rep->group_id, a));
        rep->join = join_free(rep->join);
        enter_phase(rep, REP_REFUSED);
        stop_soon(rep);
}

static unsigned majority(unsigned n)
{
        return n / 2 + 1;
}

int replica_note_group(struct replica *rep, const char *name, uint8_t state, const uint8_t *id)
{
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1], b[DCHAT_GROUP_ID_BYTES * 2 + 1], names[256] = "";
        unsigned i, same = 0;

        if (!id || !group_id_is_set(id) || !group_id_is_set(rep->group_id) || state == GROUP_REFUSED)
                return 0;
        if (!memcmp(id, rep->group_id, DCHAT_GROUP_ID_BYTES)) {
                for (i = 0; i < rep->n_foreign; i++)
                        if (!strcmp(rep->foreign[i].name, name))
                                rep->foreign[i] = rep->foreign[--rep->n_foreign];       /* its state changed */
                return 0;
        }
        for (i = 0; i < rep->n_foreign; i++)
                if (!strcmp(rep->foreign[i].name, name))
                        break;
        if (i == rep->n_foreign || memcmp(rep->foreign[i].id, id, DCHAT_GROUP_ID_BYTES)) {
                log_warning("server %s holds Raft state of another group (%s; this server's is %s): no replication "
                            "with it. If it came from another cluster, it refuses to take part by itself once "
                            "it hears from a majority", name, group_id_format(id, a),
                            group_id_format(rep->group_id, b));
                if (i == rep->n_foreign) {
                        if (rep->n_foreign == ELEMENTSOF(rep->foreign))
                                return -EXDEV;
                        rep->n_foreign++;
                }
                strlcpy(rep->foreign[i].name, name, sizeof rep->foreign[i].name);
                memcpy(rep->foreign[i].id, id, DCHAT_GROUP_ID_BYTES);
        }
        /* a majority of the configured servers hold one other group: this server is the odd one */
        for (unsigned k = 0; k < rep->n_foreign; k++)
                if (!memcmp(rep->foreign[k].id, id, DCHAT_GROUP_ID_BYTES)) {
                        same++;
                        size_t l = strlen(names);
                        if (l < sizeof names)
                                snprintf(names + l, sizeof names - l, "%s%s", l ? ", " : "", rep->foreign[k].name);
                }
        if (same >= majority(rep->conf->n_servers)) {
                char why[512];
                snprintf(why, sizeof why, "its Raft state in %s belongs to group %s, but %s hold%s group %s",
                         rep->dir, group_id_format(rep->group_id, a), names, same == 1 ? "s" : "",
                         group_id_format(id, b));
                refuse(rep, why);
        }
        return -EXDEV;
}

/* The committed configuration changed: server-joined, server-removed; this server's own removal. */
static void watch_members(struct replica *rep)
{
        const struct raft_configuration *cf = &rep->raft.configuration;
        struct member now[MEMBERS_MAX];
        unsigned n = 0;
        bool self_in = false;

        /* a committed configuration never goes back: one older than the last seen is an engine
         * started again (trouble) that has not read its whole log yet, and tells nothing new */
        if (rep->raft.configuration_uncommitted_index != 0 || rep->raft.configuration_index == 0 ||
            rep->raft.configuration_index <= rep->members_index)
                return;
        for (unsigned i = 0; i < cf->n && n < MEMBERS_MAX; i++, n++) {
                const char *at = cf->servers[i].address ? strchr(cf->servers[i].address, '@') : NULL;
                now[n] = (struct member) { cf->servers[i].id, cf->servers[i].role, "", "" };
                name_of_address(cf->servers[i].address, now[n].name, sizeof now[n].name);
                if (at)
                        strlcpy(now[n].address, at + 1, sizeof now[n].address);
                self_in |= cf->servers[i].id == rep->self;
        }
        if (rep->members_seen) {
                for (unsigned i = 0; i < n; i++) {
                        int was = -1;
                        for (unsigned k = 0; k < rep->n_members; k++)
                                if (rep->members[k].id == now[i].id)
                                        was = rep->members[k].role;
                        if (now[i].role == RAFT_VOTER && was != RAFT_VOTER)
                                log_event(EV_SERVER_JOINED, &(struct event_fields) { .peer = now[i].name },
                                          "%s%s joined the server group as a voter (configuration at Raft "
                                          "index %llu, %u voters)", now[i].id == rep->self ? "this server, " : "",
                                          now[i].name, (unsigned long long) rep->raft.configuration_index,
                                          replica_voters(rep, NULL, 0));
                        else if (was == -1)
                                log_info("%s added to the server group as a %s (it votes once it caught up)",
                                         now[i].name, now[i].role == RAFT_STANDBY ? "standby" : "spare");
                }
                for (unsigned k = 0; k < rep->n_members; k++) {
                        bool still = false;
                        for (unsigned i = 0; i < n; i++)
                                still |= rep->members[k].id == now[i].id;
                        if (!still && rep->members[k].id != rep->self)
                                log_event(EV_SERVER_REMOVED, &(struct event_fields) { .peer = rep->members[k].name },
                                          "%s was removed from the server group (configuration at Raft index "
                                          "%llu, %u voters)", rep->members[k].name,
                                          (unsigned long long) rep->raft.configuration_index,
                                          replica_voters(rep, NULL, 0));
                }
        }
        memcpy(rep->members, now, n * sizeof *now);
        rep->n_members = n;
        rep->members_index = rep->raft.configuration_index;
        rep->members_seen = true;
        if (self_in)
                rep->was_member = true;
        else if (rep->was_member) {
                char how[128];
                snprintf(how, sizeof how, "the configuration committed at Raft index %llu does not list it",
                         (unsigned long long) rep->raft.configuration_index);
                removed(rep, how);
        }
}

/* --- asking the others when no leader is heard of ------------------------------------------------ */

static void poll_free(struct replica *rep)
{
        for (unsigned i = 0; i < ELEMENTSOF(rep->poll); i++)
                rep->poll[i] = gask_free(rep->poll[i]);
}

static void poll_answered(void *userdata, struct gask *q, const struct dchat_msg *m, const char *why)
{
        struct replica *rep = userdata;
        char name[DCHAT_NAME_MAX + 1];
        (void) why;

        strlcpy(name, gask_name(q), sizeof name);
        for (unsigned i = 0; i < ELEMENTSOF(rep->poll); i++)
                if (rep->poll[i] == q)
                        rep->poll[i] = gask_free(q);
        if (!m || rep->phase != REP_RUNNING)
                return;
        const struct dchat_msg *g = m;
        if (g->group_reply.state == GROUP_STATE && replica_note_group(rep, name, g->group_reply.state,
                                                                        g->group_reply.group_id) < 0)
                return;
        raft_index mine = !running(rep) ? rep->members_index
                          : rep->raft.configuration_uncommitted_index > rep->raft.configuration_index
                                  ? rep->raft.configuration_uncommitted_index : rep->raft.configuration_index;
        if (g->group_reply.state == GROUP_STATE && g->group_reply.config_index > mine && rep->was_member &&
            g->group_reply.your_role == MEMBER_NONE) {
                char how[256];
                (void) dchat_str_copy(rep->hint, sizeof rep->hint, g->group_reply.leader);
                (void) dchat_str_copy(rep->hint_address, sizeof rep->hint_address, g->group_reply.leader_address);
                snprintf(how, sizeof how, "%s's configuration, committed at Raft index %llu, does not list it; "
                         "this server's is at %llu", name, (unsigned long long) g->group_reply.config_index,
                         (unsigned long long) mine);
                removed(rep, how);
        }
}

/*
 * Ask every other server we know of (this one's configuration and file)
 * where this server stands: the configuration Raft runs with, or while the
 * engine is stopped (trouble) the committed one last seen.
 */
static void poll_round(struct replica *rep)
{
        bool live = running(rep);
        unsigned k = 0, total = live ? rep->raft.configuration.n : rep->n_members;

        poll_free(rep);
        for (unsigned i = 0; i < total && k < ELEMENTSOF(rep->poll); i++) {
                struct sockaddr_storage sa;
                socklen_t salen;
                char name[DCHAT_NAME_MAX + 1];
                const char *address;
                raft_id id;
                if (live) {
                        const struct raft_server *sv = &rep->raft.configuration.servers[i];
                        const char *at = sv->address ? strchr(sv->address, '@') : NULL;
                        id = sv->id;
                        address = at ? at + 1 : NULL;
                        name_of_address(sv->address, name, sizeof name);
                } else {
                        id = rep->members[i].id;
                        address = rep->members[i].address[0] ? rep->members[i].address : NULL;
                        strlcpy(name, rep->members[i].name, sizeof name);
                }
                if (id == rep->self || !address || sockaddr_parse(address, &sa, &salen) < 0)
                        continue;
                if (gask_start(rep->event, rep->conf, name, (struct sockaddr *) &sa, salen, rep->group_id,
                               rep->boot_id, POLL_EVERY, poll_answered, rep, &rep->poll[k]) >= 0)
                        k++;
                else
                        rep->poll[k] = NULL;
        }
        for (unsigned i = 0; i < rep->conf->n_servers && k < ELEMENTSOF(rep->poll); i++) {
                const struct node_conf *s = &rep->conf->servers[i];
                if (i == rep->conf->self || replica_knows(rep, s->name))
                        continue;
                if (gask_start(rep->event, rep->conf, s->name, (const struct sockaddr *) &s->sa, s->salen,
                               rep->group_id, rep->boot_id, POLL_EVERY, poll_answered, rep, &rep->poll[k]) >= 0)
                        k++;
                else
                        rep->poll[k] = NULL;
        }
}

static int on_poll(sd_event_source *src, uint64_t usec, void *userdata)
{
        struct replica *rep = userdata;

        /* (a server whose engine is stopped hears from no leader either: it may have been removed) */
        if (rep->phase == REP_RUNNING && (rep->leaderless_since || !running(rep)) && rep->was_member)
                poll_round(rep);
        (void) sd_event_source_set_time(src, usec + POLL_EVERY);
        return 0;
}

/* --- answering GROUP -------------------------------------------------------------------------------- */

void replica_group_reply(struct replica *rep, const char *asker, uint32_t tag, struct replica_answer *a)
{
        char leader[DCHAT_NAME_MAX + 1] = "";
        uint64_t term = 0;
        uint8_t state;

        switch (rep->phase) {
        case REP_REMOVED:
                state = GROUP_REMOVED;
                break;
        case REP_REFUSED:
                state = GROUP_REFUSED;
                break;
        default:
                /* a member (its engine running or stopped for trouble) holds state */
                state = rep->phase == REP_RUNNING || rep->have_state ? GROUP_STATE : GROUP_EMPTY;
        }
        *a = (struct replica_answer) {0};
        if (running(rep) && replica_leader(rep, leader, &term)) {
                strlcpy(a->leader, leader, sizeof a->leader);
                (void) replica_member(rep, leader, a->address, sizeof a->address);
        } else if (rep->phase == REP_REMOVED) {
                strlcpy(a->leader, rep->hint, sizeof a->leader);
                strlcpy(a->address, rep->hint_address, sizeof a->address);
        }
        /* only a committed configuration's index: the asker concludes it was removed from it */
        uint64_t config_index = !running(rep) ? (rep->phase == REP_RUNNING ? rep->members_index : 0)
                                : rep->raft.configuration_uncommitted_index == 0 ? rep->raft.configuration_index : 0;
        uint64_t applied, last;
        replica_progress(rep, &applied, &last);
        a->m = (struct dchat_msg) { .type = MSG_GROUP_REPLY, .tag = tag, .group_reply = {
                .state = state,
                .group_id = rep->group_id,
                .boot_id = rep->boot_id,
                .term = running(rep) ? rep->raft.current_term : rep->term,
                .leader = { a->leader, (uint16_t) strlen(a->leader) },
                .leader_address = { a->address, (uint16_t) strlen(a->address) },
                .applied_index = applied,
                .last_index = last,
                .last_seq = chatlog_last_seq(rep->log),
                .fsm_state = (uint8_t) (rep->fsm ? fsm_state(rep->fsm, NULL) : rep->fsm_state),
                .your_role = (uint8_t) replica_member(rep, asker, NULL, 0),
                .config_index = config_index } };
}

void replica_poke(struct replica *rep)
{
        if (rep)
                join_poke(rep->join);
}

/* --- changing the configuration (the leader) ------------------------------------------------------ */

struct change {
        struct raft_change req;
        replica_change_cb cb;
        void *userdata;
};

static void change_done(struct raft_change *req, int status)
{
        struct change *ch = (struct change *) req;
        replica_change_cb cb = ch->cb;
        void *ud = ch->userdata;

        free(ch);
        if (cb)
                cb(ud, status == 0 ? 0 : status == RAFT_NOTLEADER || status == RAFT_LEADERSHIPLOST ? -ENOTCONN : -EIO,
                   status == 0 ? "" : raft_strerror(status));
}

int replica_change(struct replica *rep, enum replica_change_op op, const char *name, const char *address,
                   replica_change_cb cb, void *userdata, char *err, size_t errcap)
{
        struct change *ch;
        char addr[DCHAT_NAME_MAX + 160];
        raft_id id = transport_id_of(name);
        int r;

        if (!replica_is_leader(rep))
                return -ENOTCONN;
        ch = calloc(1, sizeof *ch);
        if (!ch)
                return -ENOMEM;
        ch->cb = cb;
        ch->userdata = userdata;
        switch (op) {
        case REPLICA_ADD:
                transport_address(name, address, addr, sizeof addr);
                r = raft_add(&rep->raft, &ch->req, id, addr, change_done);
                break;
        case REPLICA_STANDBY:
                r = raft_assign(&rep->raft, &ch->req, id, RAFT_STANDBY, change_done);
                break;
        case REPLICA_VOTER:
                r = raft_assign(&rep->raft, &ch->req, id, RAFT_VOTER, change_done);
                break;
        case REPLICA_REMOVE:
                r = raft_remove(&rep->raft, &ch->req, id, change_done);
                break;
        default:
                r = RAFT_INVALID;
        }
        if (r != 0) {
                snprintf(err, errcap, "%s", raft_errmsg(&rep->raft)[0] ? raft_errmsg(&rep->raft) : raft_strerror(r));
                free(ch);
                return r == RAFT_NOTLEADER ? -ENOTCONN : r == RAFT_CANTCHANGE ? -EBUSY : -EINVAL;
        }
        uvloop_kick(rep->uv);
        return 0;
}

/* --- what changed ---------------------------------------------------------------------------- */

/* Snapshots taken or installed since the last turn: a snapshot event (rate-limited for those taken). */
static void watch_snapshots(struct replica *rep)
{
        struct fsm_snapshots now;

        fsm_snapshots(rep->fsm, &now);
        if (now.restored != rep->snaps.restored)
                log_event(EV_SNAPSHOT, &(struct event_fields) { .seq = now.restored_seq },
                          "installed the leader's snapshot of the group's log (up to seq %llu)%s",
                          (unsigned long long) now.restored_seq,
                          now.restored_seq > chatlog_last_seq(rep->log) ? ": fetching the entries this server lacks"
                                                                        : "");
        if (now.taken != rep->snaps.taken && ratelimit_pass(&rep->snapshot_rl, monotonic_usec()))
                log_event(EV_SNAPSHOT, &(struct event_fields) { .seq = now.taken_seq },
                          "snapshot taken at Raft index %llu (the chat log up to seq %llu); libraft keeps the %u "
                          "entries before it and drops older ones%s", (unsigned long long) now.taken_index,
                          (unsigned long long) now.taken_seq, SNAPSHOT_TRAILING,
                          ratelimit_suppressed(&rep->snapshot_rl));
        rep->snaps = now;
}

static void transfer_done(struct raft_transfer *req)
{
        struct replica *rep = req->data;
        rep->transfer_pending = false;
}

/*
 * Commands that wait in the state machine (fsm.c: the log catches up, or a
 * write failed): applied once it is ready, tried again at most once a
 * heartbeat after a failed write.  A leader whose state machine cannot
 * apply its own batches cannot answer posts: it hands the lead to another
 * server (raft_transfer), and meanwhile refuses them (server.c).
 */
static void waiting(struct replica *rep)
{
        uint64_t now;

        if (raft_state(&rep->raft) == RAFT_LEADER && replica_busy(rep) && !rep->transfer_pending) {
                rep->transfer.data = rep;
                if (raft_transfer(&rep->raft, &rep->transfer, 0, transfer_done) == 0) {
                        rep->transfer_pending = true;
                        log_info("this server leads the group but cannot apply to its chat log just now (%s): "
                                 "handing the lead to another server", fsm_state(rep->fsm, NULL) == FSM_CATCHUP ?
                                 "it is catching up" : "a write failed");
                }
        }
        if (fsm_waiting(rep->fsm) && fsm_state(rep->fsm, NULL) == FSM_READY) {
                now = monotonic_usec();
                if (!fsm_apply_error(rep->fsm) || now >= rep->drain_after) {
                        rep->drain_after = now + rep->conf->election_timeout_usec / 5;
                        (void) fsm_drain(rep->fsm);     /* a failure is logged from fsm_apply_error */
                }
        }
        /* a leader that refused posts while busy: its peers wait for word that it takes them again */
        bool busy = replica_busy(rep);
        if (rep->was_busy && !busy && raft_state(&rep->raft) == RAFT_LEADER && rep->ops->leader_changed) {
                char name[DCHAT_NAME_MAX + 1];
                uint64_t term;
                replica_leader(rep, name, &term);
                rep->ops->leader_changed(rep->userdata, true, name, term);
        }
        rep->was_busy = busy;
}

/* --- what changed ---------------------------------------------------------------------------- */

/* After every turn of the libuv loop: report a new state, leader or term. */
/*
 * What stops the engine (see the top), looked at after every turn: 1 if
 * it is to be started again.  A state machine that waits for a catch-up
 * refuses commands (RAFT_BUSY), which may make libraft give up as well;
 * the catch-up goes on regardless (its link is its own), and the engine
 * is started again once it is done, to apply what waited.
 */
static int watch_trouble(struct replica *rep)
{
        char path[PATH_MAX + 16];
        int ae = fsm_apply_error(rep->fsm);
        int ce = catchup_store_error(rep->cu);

        snprintf(path, sizeof path, "%s/chat.log", rep->conf->state_directory);
        if (ae) {
                char brief[DCHAT_NOTE_MAX + 1];
                snprintf(brief, sizeof brief, "chat.log: %s",
                         ae == -EUCLEAN ? "damaged (restart dchatd)" : strerror(-ae));
                if (ae == -EUCLEAN)
                        trouble(rep, brief, "cannot apply the group's entries to %s: it is damaged (a read found it); "
                                "restart dchatd: its start cuts the log at the damage and fetches the rest from the group",
                                path);
                else
                        trouble(rep, brief, "cannot apply the group's entries to %s: %s", path, strerror(-ae));
                return 1;
        }
        if (ce) {
                /* the catch-up tries again by itself, later (catchup.c); the engine has nothing to do */
                char brief[DCHAT_NOTE_MAX + 1], cause[sizeof rep->cause];
                snprintf(brief, sizeof brief, "chat.log: %s (fetching)", strerror(-ce));
                snprintf(cause, sizeof cause, "cannot store the entries fetched from the group in %s: %s", path,
                         strerror(-ce));
                stalled(rep, brief, cause, "this server stays behind until that works again");
                return 0;
        }
        if (rep->storage_error[0]) {
                char brief[DCHAT_NOTE_MAX + 1];
                snprintf(brief, sizeof brief, "Raft log: %s", rep->storage_error);
                trouble(rep, brief, "cannot write the replicated log in %s: %s", rep->dir, rep->storage_error);
                return 1;
        }
        enum fsm_state fs = fsm_state(rep->fsm, NULL);
        if (fs == FSM_CATCHUP)
                rep->caught_up_since_start = true;
        if (raft_state(&rep->raft) != RAFT_UNAVAILABLE || fs != FSM_READY)
                return 0;       /* (a log that is not the group's applies nothing, whatever is started) */
        if (rep->caught_up_since_start) {
                /* it refused commands while it fetched (RAFT_BUSY), which libraft took badly: no fault */
                log_info("starting Raft again on this server after its catch-up, to apply what waited");
                restart_soon(rep);
                return 1;
        }
        const char *why = raft_errmsg(&rep->raft);
        trouble(rep, "Raft stopped here (restarting it)", "libraft stopped taking part in the group on this "
                "server%s%s", why && why[0] ? ": " : "", why ? why : "");
        return 1;
}

/* Rejoining without a vote: votes again once it holds the log up to the commit index announced. */
static void watch_rejoin(struct replica *rep)
{
        char p[PATH_MAX + 16];

        if (!rep->no_vote || !rep->rejoin_target || rep->raft.commit_index < rep->rejoin_target ||
            rep->raft.last_stored < rep->rejoin_target || raft_state(&rep->raft) != RAFT_FOLLOWER)
                return;
        snprintf(p, sizeof p, "%s/" REJOIN_FILE, rep->dir);
        if (unlink(p) < 0 && errno != ENOENT) {
                log_warning("cannot remove %s: %s; this server stays without a vote", p, strerror(errno));
                rep->rejoin_target = 0;         /* asked again at the next announcement */
                return;
        }
        rep->no_vote = false;
        if (rep->trouble_since) {
                char how[96];
                snprintf(how, sizeof how, " and votes again (it holds the group's log up to Raft index %llu)",
                         (unsigned long long) rep->rejoin_target);
                resumed(rep, how);
        }
}

/* After every turn of the libuv loop: report a new state, leader or term, and trouble. */
static void watch(void *userdata)
{
        struct replica *rep = userdata;
        char leader[DCHAT_NAME_MAX + 1];
        const char *why;

        if (!running(rep))
                return;
        unsigned short st = raft_state(&rep->raft);
        raft_id lid = 0;
        const char *laddr = NULL;
        raft_leader(&rep->raft, &lid, &laddr);
        name_of_address(laddr, leader, sizeof leader);

        if (st != rep->state || lid != rep->leader) {
                struct event_fields f = { .peer = leader[0] ? leader : NULL, .lamport = rep->raft.current_term };
                if (st == RAFT_LEADER && rep->state != RAFT_LEADER)
                        log_event(EV_LEADER_ELECTED, &f, "this server leads the group in term %llu",
                                  (unsigned long long) rep->raft.current_term);
                else if (rep->state == RAFT_LEADER && st != RAFT_LEADER)
                        log_event(EV_LEADER_LOST, &f, "this server no longer leads the group (now %s, term %llu)",
                                  state_name(st), (unsigned long long) rep->raft.current_term);
                else if (lid && lid != rep->leader)
                        log_event(EV_LEADER_ELECTED, &f, "%s leads the group in term %llu", leader,
                                  (unsigned long long) rep->raft.current_term);
                else if (!lid && rep->leader)
                        log_event(EV_LEADER_LOST, &f, "the group has no leader it knows of (this server: %s, term %llu)",
                                  state_name(st), (unsigned long long) rep->raft.current_term);
                rep->state = st;
                rep->leader = lid;
                rep->term = rep->raft.current_term;
                if (rep->ops->leader_changed)
                        rep->ops->leader_changed(rep->userdata, st == RAFT_LEADER, lid ? leader : NULL,
                                                 rep->raft.current_term);
        }
        if (st == RAFT_LEADER)
                genesis_propose(rep);
        watch_snapshots(rep);
        rep->leaderless_since = lid ? 0 : rep->leaderless_since ? rep->leaderless_since : monotonic_usec();
        watch_members(rep);
        if (!running(rep))
                return;         /* removed */

        if (rep->ops->tick)
                rep->ops->tick(rep->userdata);

        catchup_tick(rep->cu, lid && lid != rep->self ? leader : NULL);

        enum fsm_state fs = fsm_state(rep->fsm, &why);
        if (fs != rep->fsm_state) {
                if (fs == FSM_DIVERGED)
                        log_error("this server's chat log is not the group's: %s. It applies nothing more; "
                                  "see dchatd(8), REPLICATION, to recover", why);
                else if (fs == FSM_CATCHUP)
                        log_event(EV_REPLICA_BEHIND, NULL, "this server's chat log ends at seq %llu, before the "
                                  "group's snapshot: fetching the entries it lacks from another server",
                                  (unsigned long long) chatlog_last_seq(rep->log));
                else if (rep->fsm_state == FSM_CATCHUP) {
                        uint64_t usec, to, n = catchup_fetched(rep->cu, &usec, &to);
                        /* (what waited meanwhile is applied at once: the chat log may end past 'to') */
                        log_event(EV_REPLICA_CAUGHT_UP, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                                  "this server caught up with the group at seq %llu: %llu entries fetched in %llu ms "
                                  "(%llu entries/s), up to seq %llu", (unsigned long long) chatlog_last_seq(rep->log),
                                  (unsigned long long) n, (unsigned long long) (usec / USEC_PER_MSEC),
                                  (unsigned long long) (usec ? n * USEC_PER_SEC / usec : 0), (unsigned long long) to);
                        catchup_reset(rep->cu);
                        uvloop_kick(rep->uv);   /* fsm_feed applied what waited: libraft may go on */
                        if (rep->trouble_since && !catchup_store_error(rep->cu))
                                rep->cause[0] = '\0';   /* a new cause, if any, is logged afresh */
                }
                rep->fsm_state = fs;
                if (rep->ops->fsm_changed)
                        rep->ops->fsm_changed(rep->userdata, fs);
        }

        if (watch_trouble(rep))
                return;
        waiting(rep);
        watch_rejoin(rep);
        /* started again after trouble: over once it applied what a leader (or itself) said is committed */
        if (rep->trouble_since && !rep->no_vote && !replica_busy(rep) && !catchup_store_error(rep->cu) &&
            (st == RAFT_LEADER ? rep->raft.commit_index : rep->heard_commit) > 0 &&
            rep->raft.last_applied >= (st == RAFT_LEADER ? rep->raft.commit_index : rep->heard_commit))
                resumed(rep, "");
}

/* --- submitting ---------------------------------------------------------------------------------- */

static void submit_done(struct raft_apply *req, int status, void *result)
{
        struct submit *s = (struct submit *) req;
        struct replica *rep = s->rep;

        rep->in_flight--;
        if (rep->ops->applied)
                rep->ops->applied(rep->userdata, s->cookie, status == 0 ? result : NULL, status);
        free(s);
}

/* Hands a command (raft_malloc'd; ours until it is taken) to Raft: -ENOTCONN if this server does not lead. */
static int submit(struct replica *rep, struct raft_buffer *buf, void *cookie)
{
        struct submit *s;
        int r;

        s = calloc(1, sizeof *s);
        if (!s) {
                raft_free(buf->base);
                return -ENOMEM;
        }
        s->rep = rep;
        s->cookie = cookie;
        r = raft_apply(&rep->raft, &s->req, buf, 1, submit_done);
        if (r != 0) {
                raft_free(buf->base);
                free(s);
                return r == RAFT_NOTLEADER || r == RAFT_LEADERSHIPLOST ? -ENOTCONN : -EIO;
        }
        rep->in_flight++;
        rep->stats.batches++;
        uvloop_kick(rep->uv);
        return 0;
}

int replica_submit(struct replica *rep, const struct dchat_entry *e, unsigned n, void *cookie)
{
        struct raft_buffer buf;
        int r;

        if (!replica_is_leader(rep))
                return -ENOTCONN;
        r = fsm_encode_batch(e, n, &buf);
        return r < 0 ? r : submit(rep, &buf, cookie);
}

int replica_submit_note(struct replica *rep, const struct note_write *w, void *cookie)
{
        struct raft_buffer buf;
        int r;

        if (!replica_is_leader(rep))
                return -ENOTCONN;
        r = fsm_encode_note(w, &buf);
        return r < 0 ? r : submit(rep, &buf, cookie);
}

/* --- the engine ------------------------------------------------------------------------------------- */

static bool file_exists(const char *dir, const char *name)
{
        char p[PATH_MAX + 64];
        struct stat st;

        snprintf(p, sizeof p, "%s/%s", dir, name);
        return stat(p, &st) == 0;
}

static bool dir_is_empty(const char *dir)
{
        return !file_exists(dir, "metadata1") && !file_exists(dir, "metadata2");
}

/* A segment libraft found damaged and set aside (it names them corrupt-*): its entries are gone. */
static bool find_corrupt(const char *dir, char *name, size_t cap)
{
        struct dirent *de;
        DIR *d = opendir(dir);
        bool found = false;

        if (!d)
                return false;
        while (!found && (de = readdir(d)))
                if (!strncmp(de->d_name, "corrupt-", 8)) {
                        strlcpy(name, de->d_name, cap);
                        found = true;
                }
        closedir(d);
        return found;
}

/* raft/rejoin in dir, saying why: no vote until the group's log is held (see the top). */
static int write_rejoin(const char *dir, const char *why)
{
        char p[PATH_MAX + 16];
        int fd, r = 0;

        snprintf(p, sizeof p, "%s/" REJOIN_FILE, dir);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        if (dprintf(fd, "%s\n", why) < 0 || fsync(fd) < 0)
                r = errno ? -errno : -EIO;
        close(fd);
        return r;
}

static void sync_dir(const char *dir)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                (void) fsync(fd);
                close(fd);
        }
}

/* raft.new: the empty Raft directory made ready to take a damaged one's place (set_aside). */
static void fresh_path(const struct replica *rep, char *buf, size_t cap)
{
        snprintf(buf, cap, "%s.new", rep->dir);
}

static void remove_fresh(const char *fresh)
{
        static const char *const files[] = { REJOIN_FILE, "group-id", "group-id.tmp" };
        char p[PATH_MAX + 32];

        for (unsigned i = 0; i < ELEMENTSOF(files); i++) {
                snprintf(p, sizeof p, "%s/%s", fresh, files[i]);
                (void) unlink(p);
        }
        (void) rmdir(fresh);
}

/*
 * A swap of set_aside cut short (a crash, a rename that failed): raft/
 * gone and raft.new ready takes its place; raft.new half made next to the
 * damaged raft/ is dropped (the damage is found again).  Without this an
 * empty raft/ would be made in its place, and the server would vote with
 * a log that lost entries.  0, or -errno if raft.new cannot take its place.
 */
static int finish_set_aside(struct replica *rep)
{
        char fresh[PATH_MAX + 8];
        struct stat st;

        fresh_path(rep, fresh, sizeof fresh);
        if (stat(fresh, &st) < 0)
                return 0;
        if (stat(rep->dir, &st) == 0) {
                remove_fresh(fresh);
                return 0;
        }
        if (rename(fresh, rep->dir) < 0)
                return -errno;
        sync_dir(rep->conf->state_directory);
        return 0;
}

/*
 * The Raft log in dir is damaged (why): moved aside to dir.damaged-TIME,
 * and an empty one put in its place with the file that says "rejoin
 * without a vote" and the group id (the rejoining server says it on its
 * links, and at its next start it asks the others as a member of that
 * group, not as a new server).  The new directory is made whole first
 * (raft.new) and then swapped in, so that no crash leaves an empty raft/
 * without raft/rejoin (finish_set_aside).
 */
static int set_aside(struct replica *rep, const char *why)
{
        char aside[PATH_MAX + 64], fresh[PATH_MAX + 8], what[2 * PATH_MAX + 96] = "";
        time_t now = time(NULL);
        struct tm tm;
        int r = 0;

        gmtime_r(&now, &tm);
        snprintf(aside, sizeof aside, "%s.damaged-%04d%02d%02dT%02d%02d%02dZ", rep->dir, tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        fresh_path(rep, fresh, sizeof fresh);
        remove_fresh(fresh);
        if (mkdir(fresh, 0750) < 0) {
                r = -errno;
                snprintf(what, sizeof what, "cannot create %s", fresh);
        } else if ((r = write_rejoin(fresh, why)) < 0)
                snprintf(what, sizeof what, "cannot write %s/" REJOIN_FILE, fresh);
        else if (group_id_is_set(rep->group_id) && (r = group_id_write(fresh, rep->group_id)) < 0)
                snprintf(what, sizeof what, "cannot write %s/group-id", fresh);
        else if (rename(rep->dir, aside) < 0) {
                r = -errno;
                snprintf(what, sizeof what, "cannot rename %s to %s", rep->dir, aside);
        } else if (rename(fresh, rep->dir) < 0) {
                r = -errno;
                snprintf(what, sizeof what, "cannot rename %s to %s", fresh, rep->dir);
        }
        if (r < 0) {
                trouble(rep, "its Raft log is damaged, cannot set it aside",
                        "this server's Raft log in %s is damaged (%s) and cannot be set aside (%s: %s): it takes no "
                        "part in the group until it can; see dchatd(8), REPLICATION", rep->dir, why, what,
                        strerror(-r));
                return r;
        }
        sync_dir(rep->conf->state_directory);
        log_event(EV_REPLICA_DAMAGED, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                  "this server's Raft log in %s is damaged (%s): it may have lost entries it acknowledged, so "
                  "it must not vote until it has them back. Moved aside to %s; it joins the group again from an "
                  "empty Raft log, without a vote until it holds the group's log (its chat log stays)",
                  rep->dir, why, aside);
        if (!rep->trouble_since) {
                rep->trouble_since = monotonic_usec();
                rep->backoff = RESTART_MIN;
        }
        snprintf(rep->trouble, sizeof rep->trouble, "its Raft log was damaged: rejoining without a vote");
        snprintf(rep->cause, sizeof rep->cause, "its Raft log was damaged: %s", why);
        return 0;
}

static int cmp_by_name(const void *a, const void *b)
{
        return strcmp(((const struct node_conf *) a)->name, ((const struct node_conf *) b)->name);
}

/* In name order: every server that bootstraps the same servers writes the very same first entry. */
static int bootstrap(struct replica *rep)
{
        struct raft_configuration c;
        struct node_conf sorted[DCHAT_SERVERS_MAX];
        char addr[DCHAT_NAME_MAX + 160];
        int r = 0;

        memcpy(sorted, rep->conf->servers, rep->conf->n_servers * sizeof *sorted);
        qsort(sorted, rep->conf->n_servers, sizeof *sorted, cmp_by_name);
        raft_configuration_init(&c);
        for (unsigned i = 0; i < rep->conf->n_servers && r == 0; i++) {
                const struct node_conf *s = &sorted[i];
                transport_address(s->name, s->address, addr, sizeof addr);
                r = raft_configuration_add(&c, transport_id_of(s->name), addr, RAFT_VOTER);
        }
        if (r == 0)
                r = raft_bootstrap(&rep->raft, &c);
        raft_configuration_close(&c);
        return r;
}

/* raft/group-id says this server's group (written when it bootstrapped or joined, or set aside its log). */
static int record_group_id(struct replica *rep)
{
        uint8_t id[DCHAT_GROUP_ID_BYTES];

        if (group_id_read(rep->dir, id) == 0 && !memcmp(id, rep->group_id, sizeof id))
                return 0;
        return group_id_write(rep->dir, rep->group_id);
}

static int note_group(void *userdata, const char *name, uint8_t state, const uint8_t *id)
{
        return replica_note_group(userdata, name, state, id);
}

/*
 * How long a leader waits for a follower's answer to a snapshot before it
 * sends it again.  libraft's default is 30 s, for snapshots that take that
 * long to ship; ours are a few dozen bytes, and an answer lost with a
 * link (a follower that came back while its link was being made) would
 * keep that follower behind for half a minute.
 */
static unsigned snapshot_timeout_ms(const struct dchat_conf *c)
{
        uint64_t ms = 5 * c->election_timeout_usec / USEC_PER_MSEC;
        return ms < 1000 ? 1000 : (unsigned) ms;
}

static void on_raft_closed(struct raft *raft)
{
        struct replica *rep = raft->data;
        rep->closed = true;
}

/*
 * libraft and what it runs on, closed; what an apply or catch-up had in
 * flight is dropped.  The only way libraft is closed (trouble, removal,
 * refusal, the end): called from the restart timer or replica_free, never
 * from inside libraft.
 */
static void engine_stop(struct replica *rep)
{
        uint64_t t0 = monotonic_usec();
        bool was = rep->raft_ready || rep->io_ready;

        if (rep->started) {
                /* what GROUP_REPLY and status say of this server while it is stopped */
                rep->known_applied = raft_last_applied(&rep->raft);
                rep->known_last = raft_last_index(&rep->raft);
                rep->term = rep->raft.current_term;
        }
        rep->stopping = true;
        if (rep->raft_ready) {
                rep->closed = false;
                rep->raft.data = rep;
                raft_close(&rep->raft, on_raft_closed);
                uvloop_drain(rep->uv, 5 * USEC_PER_SEC);
                if (!rep->closed) {
                        /* its close never finished (a write stuck in libuv's threads?): what libraft
                         * holds can be neither freed nor used again; nobody tells the peers anything */
                        rep->wedged = true;
                        rep->started = false;
                        snprintf(rep->trouble, sizeof rep->trouble, "Raft hangs here: restart dchatd");
                        log_error("libraft did not stop within 5 s on this server: it takes no part in the group "
                                  "until dchatd is restarted");
                        return;
                }
        } else if (rep->io_ready) {
                rep->io.close(&rep->io, NULL);
                uvloop_drain(rep->uv, 5 * USEC_PER_SEC);
        }
        if (rep->io_ready)
                raft_uv_close(&rep->io);
        rep->tr = transport_free(rep->tr);
        rep->cu = catchup_free(rep->cu);
        uvloop_drain(rep->uv, USEC_PER_SEC);
        rep->fsm = fsm_free(rep->fsm);
        rep->io_ready = rep->raft_ready = rep->started = false;
        rep->storage_error[0] = '\0';
        rep->genesis_asked = false;
        rep->caught_up_since_start = false;
        bool had = rep->state == RAFT_LEADER || rep->leader;
        rep->leader = 0;
        rep->state = RAFT_UNAVAILABLE;
        rep->stopping = false;
        uint64_t ms = (monotonic_usec() - t0) / USEC_PER_MSEC;
        if (was && !rep->freeing && (ms >= 100 || rep->conf->debug))
                log_info("Raft stopped on this server in %llu ms", (unsigned long long) ms);
        /* its peers are told it knows no leader now (not when the whole server stops) */
        if (had && !rep->freeing && rep->ops->leader_changed)
                rep->ops->leader_changed(rep->userdata, false, NULL, rep->term);
}

/*
 * Starts libraft on rep->dir (REP_RUNNING only): bootstraps the group if
 * join.c said so, else starts on what the directory holds.  A damaged Raft
 * log is set aside and the start goes on from an empty one (see the top).
 * On failure the trouble is recorded (and engine_stop cleans up).
 */
static int engine_start(struct replica *rep)
{
        const struct node_conf *me = &rep->conf->servers[rep->conf->self];
        char addr[DCHAT_NAME_MAX + 160], corrupt[NAME_MAX + 1], brief[DCHAT_NOTE_MAX + 1];
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1];
        int r;

        r = finish_set_aside(rep);
        if (r < 0) {
                snprintf(brief, sizeof brief, "cannot put raft.new in place: %s", strerror(-r));
                trouble(rep, brief, "cannot rename %s.new (an empty Raft log made ready to replace a damaged one) to "
                        "%s: %s", rep->dir, rep->dir, strerror(-r));
                return r;
        }
        if (mkdir(rep->dir, 0750) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(brief, sizeof brief, "cannot create raft/: %s", strerror(-r));
                trouble(rep, brief, "cannot create %s: %s", rep->dir, strerror(-r));
                return r;
        }
        if (find_corrupt(rep->dir, corrupt, sizeof corrupt)) {
                char why[NAME_MAX + 96];
                snprintf(why, sizeof why, "libraft set a damaged segment aside as %s and went on without it", corrupt);
                r = set_aside(rep, why);
                if (r < 0)
                        return r;
        }
        if (rep->must_rejoin && !file_exists(rep->dir, REJOIN_FILE)) {
                r = write_rejoin(rep->dir, "its Raft directory was empty, and the group lists it as a voter");
                if (r < 0) {
                        snprintf(brief, sizeof brief, "cannot write raft/" REJOIN_FILE ": %s", strerror(-r));
                        trouble(rep, brief, "cannot write %s/" REJOIN_FILE ": %s", rep->dir, strerror(-r));
                        return r;
                }
        }
        rep->must_rejoin = false;
        if (rep->bootstrap && dir_is_empty(rep->dir) && file_exists(rep->dir, REJOIN_FILE)) {
                /* a new group: nothing this server acknowledged can have been lost in it */
                char p[PATH_MAX + 16];
                snprintf(p, sizeof p, "%s/" REJOIN_FILE, rep->dir);
                (void) unlink(p);
        }
        r = record_group_id(rep);
        if (r < 0) {
                snprintf(brief, sizeof brief, "cannot write raft/group-id: %s", strerror(-r));
                trouble(rep, brief, "cannot record the group id in %s/group-id: %s", rep->dir, strerror(-r));
                return r;
        }
        rep->no_vote = file_exists(rep->dir, REJOIN_FILE);
        rep->rejoin_target = 0;
        rep->heard_commit = 0;
        rep->no_vote_since = monotonic_usec();
        if (rep->no_vote && !rep->trouble_since) {
                /* (a start while it rejoined: the damage was logged by the one before) */
                rep->trouble_since = rep->no_vote_since;
                rep->backoff = RESTART_MIN;
                snprintf(rep->trouble, sizeof rep->trouble, "its Raft log was damaged: rejoining without a vote");
                snprintf(rep->cause, sizeof rep->cause, "its Raft log was damaged (%s/%s)", rep->dir, REJOIN_FILE);
        }

        r = transport_new(rep->event, rep->uv, rep->conf, &rep->tr);
        if (r >= 0)
                r = fsm_new(rep->log, &rep->fsm);
        if (r >= 0)
                r = catchup_new(rep->event, rep->conf, rep->fsm, &rep->cu);
        if (r < 0) {
                trouble(rep, "out of resources", "cannot set up Raft: %s", strerror(-r));
                return r;
        }
        transport_set_group(rep->tr, rep->group_id, rep->boot_id, note_group, rep);
        r = raft_uv_init(&rep->io, uvloop_loop(rep->uv), rep->dir, transport_raft(rep->tr));
        if (r != 0) {
                snprintf(brief, sizeof brief, "cannot use raft/: %s", rep->io.errmsg);
                trouble(rep, brief, "cannot use %s for the replicated log: %s", rep->dir, rep->io.errmsg);
                return -EIO;
        }
        rep->io_ready = true;
        rep->io_start = rep->io.start;
        rep->io_append = rep->io.append;
        rep->io_send = rep->io.send;
        rep->io.start = start_wrap;
        rep->io.append = append_wrap;
        rep->io.send = send_wrap;
        /* segments are allocated ahead on disk: a few MiB each, not libraft's 8 */
        raft_uv_set_segment_size(&rep->io, 2 * 1024 * 1024);
        (void) raft_uv_set_snapshot_compression(&rep->io, false);       /* a snapshot is a few dozen bytes */
        transport_address(me->name, me->address, addr, sizeof addr);
        r = raft_init(&rep->raft, &rep->io, fsm_raft(rep->fsm), rep->self, addr);
        if (r != 0) {
                const char *why = rep->io.errmsg[0] ? rep->io.errmsg : raft_strerror(r);
                snprintf(brief, sizeof brief, "cannot set up Raft: %s", why);
                trouble(rep, brief, "cannot set up Raft in %s: %s", rep->dir, why);
                return -EIO;
        }
        rep->raft_ready = true;
        rep->raft.data = rep;
        fsm_attach(rep->fsm, &rep->raft);
        raft_set_election_timeout(&rep->raft, (unsigned) (rep->conf->election_timeout_usec / USEC_PER_MSEC));
        raft_set_heartbeat_timeout(&rep->raft, (unsigned) (rep->conf->election_timeout_usec / USEC_PER_MSEC / 5));
        raft_set_install_snapshot_timeout(&rep->raft, snapshot_timeout_ms(rep->conf));
        raft_set_pre_vote(&rep->raft, true);
        raft_set_snapshot_threshold(&rep->raft, SNAPSHOT_THRESHOLD);
        raft_set_snapshot_trailing(&rep->raft, SNAPSHOT_TRAILING);

        /* only when the others said so (join.c); a server rejoining after damage never starts a
         * group of its own, nor does one that joins: the others hold it */
        if (rep->bootstrap && dir_is_empty(rep->dir) && !rep->no_vote) {
                r = bootstrap(rep);
                if (r != 0 && r != RAFT_CANTBOOTSTRAP) {
                        trouble(rep, "cannot bootstrap the group", "cannot bootstrap the server group in %s: %s",
                                rep->dir, raft_errmsg(&rep->raft)[0] ? raft_errmsg(&rep->raft) : raft_strerror(r));
                        return -EIO;
                }
                log_notice("bootstrapped the server group (%u servers, group %s) in %s", rep->conf->n_servers,
                           group_id_format(rep->group_id, a), rep->dir);
        }
        r = raft_start(&rep->raft);
        if (r == RAFT_CORRUPT) {
                char why[RAFT_ERRMSG_BUF_SIZE + 64];
                snprintf(why, sizeof why, "libraft refuses it: %s", raft_errmsg(&rep->raft));
                engine_stop(rep);
                r = set_aside(rep, why);
                return r < 0 ? r : engine_start(rep);
        }
        if (r != 0) {
                snprintf(brief, sizeof brief, "cannot start Raft: %s", raft_errmsg(&rep->raft));
                trouble(rep, brief, "cannot start Raft in %s: %s (%s)", rep->dir, raft_strerror(r),
                        raft_errmsg(&rep->raft));
                return -EIO;
        }
        rep->started = true;
        rep->bootstrap = false;
        if (find_corrupt(rep->dir, corrupt, sizeof corrupt)) {
                /* libraft dropped a damaged segment as it loaded: it holds less than it acknowledged */
                char why[NAME_MAX + 96];
                snprintf(why, sizeof why, "libraft set a damaged segment aside as %s and went on without it", corrupt);
                engine_stop(rep);
                r = set_aside(rep, why);
                return r < 0 ? r : engine_start(rep);
        }
        rep->leaderless_since = monotonic_usec();
        /* raft_start restored the last snapshot, if there is one: its index is where applying goes on */
        fsm_snapshots(rep->fsm, &rep->snaps);
        if (rep->snaps.restored)
                log_event(EV_SNAPSHOT, &(struct event_fields) { .seq = rep->snaps.restored_seq },
                          "started from the snapshot at Raft index %llu (the chat log up to seq %llu)",
                          (unsigned long long) raft_last_applied(&rep->raft),
                          (unsigned long long) rep->snaps.restored_seq);
        if (rep->no_vote)
                log_notice("rejoining the group without a vote: this server takes part in elections again once it "
                           "holds the group's log (%s is there until then)", REJOIN_FILE);
        rep->fsm_state = FSM_READY;
        rep->state = RAFT_UNAVAILABLE;
        uvloop_kick(rep->uv);
        return 0;
}

/* --- life cycle ------------------------------------------------------------------------------------- */

/* The engine could not start (trouble): the server runs on all the same, and tries again (on_restart). */
static void start_or_wait(struct replica *rep)
{
        if (engine_start(rep) < 0) {
                engine_stop(rep);
                (void) sd_event_source_set_time_relative(rep->restart_timer, rep->backoff);
                (void) sd_event_source_set_enabled(rep->restart_timer, SD_EVENT_ONESHOT);
        }
}

/* The others answered (join.c): bootstrap, join or stay out. */
static void joined(void *userdata, const struct join_result *res)
{
        struct replica *rep = userdata;
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1];

        rep->join = join_free(rep->join);
        switch (res->d) {
        case JOIN_BOOTSTRAP:
                memcpy(rep->group_id, res->group_id, sizeof rep->group_id);
                rep->bootstrap = true;
                log_notice("starting the server group (%u servers, group %s) in %s: %s", rep->conf->n_servers,
                           group_id_format(rep->group_id, a), rep->dir, res->why);
                break;
        case JOIN_JOIN:
                memcpy(rep->group_id, res->group_id, sizeof rep->group_id);
                if (res->role == MEMBER_NONE)
                        log_notice("joining the server group %s (%s): waiting to be added; run 'dchatctl server "
                                   "add %s %s' on a member (as root)", group_id_format(rep->group_id, a), res->why,
                                   rep->conf->node, rep->conf->servers[rep->conf->self].address);
                else
                        log_notice("joining the server group %s (%s), which lists this server as a %s: waiting for "
                                   "its leader to send the log", group_id_format(rep->group_id, a), res->why,
                                   member_role_name(res->role));
                if (res->role == MEMBER_VOTER) {
                        /* The group counts on this server's vote, and its Raft directory is empty (a disk
                         * replaced, raft/ moved aside): entries it acknowledged once may be lost, and
                         * with its vote a candidate that lacks a committed entry could win.  It rejoins
                         * without a vote, like a server whose Raft log was damaged. */
                        rep->must_rejoin = true;
                        log_event(EV_REPLICA_DAMAGED, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                                  "this server's Raft directory %s is empty, but the group lists it as a voter: "
                                  "it may have lost entries it acknowledged, so it rejoins without a vote until it "
                                  "holds the group's log", rep->dir);
                }
                break;
        case JOIN_REFUSE:
                if (rep->have_state) {
                        static const char prefix[] = "its Raft state";
                        char why[sizeof res->why + PATH_MAX];
                        if (!strncmp(res->why, prefix, sizeof prefix - 1))
                                snprintf(why, sizeof why, "%s in %s%s", prefix, rep->dir, res->why + sizeof prefix - 1);
                        else
                                snprintf(why, sizeof why, "%s", res->why);
                        refuse(rep, why);
                } else {
                        log_error("not starting the server group: %s; this server takes no part", res->why);
                        enter_phase(rep, REP_REFUSED);
                }
                return;
        case JOIN_START:
                break;
        default:
                return;
        }
        enter_phase(rep, REP_RUNNING);
        start_or_wait(rep);
}

int replica_new(sd_event *e, const struct dchat_conf *c, struct chatlog *log, const struct replica_ops *ops,
                void *userdata, struct replica **ret)
{
        struct replica *rep = calloc(1, sizeof *rep);
        char path[PATH_MAX + 16];
        int r;

        if (!rep)
                return -ENOMEM;
        rep->event = e;
        rep->conf = c;
        rep->log = log;
        rep->ops = ops;
        rep->userdata = userdata;
        rep->self = transport_id_of(c->servers[c->self].name);
        rep->snapshot_rl = RATELIMIT_INIT(60 * USEC_PER_SEC, 1);
        rep->state = RAFT_UNAVAILABLE;
        rep->fsm_state = FSM_READY;
        rep->phase = REP_ASKING;
        snprintf(rep->dir, sizeof rep->dir, "%s/raft", c->state_directory);
        r = uvloop_new(e, &rep->uv);
        if (r >= 0)
                r = sd_event_add_time(e, &rep->restart_timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_restart, rep);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &rep->poll_timer, CLOCK_MONOTONIC, POLL_EVERY,
                                               100 * USEC_PER_MSEC, on_poll, rep);
        if (r < 0) {
                replica_free(rep);
                return r;
        }
        (void) sd_event_source_set_enabled(rep->restart_timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(rep->poll_timer, SD_EVENT_ON);
        uvloop_set_hook(rep->uv, watch, rep);
        net_boot_id(c, rep->boot_id);
        if (c->n_servers % 2 == 0)
                log_warning("cluster.servers lists %u servers: an even number tolerates no more failures than one "
                            "server fewer (a majority of %u is %u); add or remove one (dchatctl server add, server "
                            "remove) and update cluster.servers on every host", c->n_servers, c->n_servers,
                            c->n_servers / 2 + 1);

        snprintf(path, sizeof path, "%s/removed", rep->dir);
        if (access(path, F_OK) == 0) {
                log_event(EV_SERVER_REMOVED, &(struct event_fields) { .peer = c->node },
                          "this server was removed from the server group (%s says so): it takes no part and "
                          "serves nothing. Take it off cluster.servers on every host; to add it again, stop "
                          "dchatd, move %s aside, start it and run 'dchatctl server add %s ADDRESS' on a member",
                          path, rep->dir, c->node);
                rep->phase = REP_REMOVED;
                *ret = rep;
                return 0;
        }
        r = finish_set_aside(rep);
        if (r < 0) {
                log_error("cannot rename %s.new (an empty Raft log made ready to replace a damaged one) to %s: %s; "
                          "this server takes no part until it can", rep->dir, rep->dir, strerror(-r));
                rep->phase = REP_REFUSED;
                *ret = rep;
                return 0;
        }
        /* a Raft log set aside as damaged (raft/rejoin) is this group's member's all the same */
        bool rejoin = file_exists(rep->dir, REJOIN_FILE);
        rep->have_state = !dir_is_empty(rep->dir) || rejoin;
        if (rep->have_state) {
                /* a server that holds state asks the others once before it starts Raft: a majority
                 * that holds another group says its state came from another cluster (join.c); and
                 * its links check the group id before any Raft traffic passes (transport.c, server.c) */
                r = group_id_read(rep->dir, rep->group_id);
                if (r == -ENOENT && rejoin && dir_is_empty(rep->dir)) {
                        /* nothing says which group: asked like an empty server's (it still rejoins
                         * without a vote, raft/rejoin stays) */
                        rep->have_state = false;
                } else if (r == -ENOENT) {
                        /* a group made before ids were recorded: the id it was bootstrapped with */
                        memcpy(rep->group_id, rep->boot_id, sizeof rep->group_id);
                        r = group_id_write(rep->dir, rep->group_id);
                        if (r < 0)
                                log_warning("cannot record the group id in %s/group-id: %s", rep->dir, strerror(-r));
                        else
                                log_notice("recorded this group's id in %s/group-id (made from cluster.servers)",
                                           rep->dir);
                } else if (r < 0) {
                        log_error("cannot read %s/group-id: %s; this server takes no part until it can "
                                  "(it says which group its Raft state belongs to)", rep->dir, strerror(-r));
                        rep->phase = REP_REFUSED;
                        *ret = rep;
                        return 0;
                }
        }
        if (rep->have_state) {
                r = join_start(e, c, rep->group_id, rep->boot_id, joined, rep, &rep->join);
                if (r < 0)
                        goto fail;
        } else {
                log_info("no Raft state in %s: asking the other servers whether a group runs before "
                         "starting one", rep->dir);
                r = join_start(e, c, NULL, rep->boot_id, joined, rep, &rep->join);
                if (r < 0)
                        goto fail;
        }
        *ret = rep;
        return 0;
fail:
        replica_free(rep);
        return r;
}

struct replica *replica_free(struct replica *rep)
{
        if (!rep)
                return NULL;
        rep->freeing = true;
        rep->join = join_free(rep->join);
        poll_free(rep);
        rep->poll_timer = sd_event_source_disable_unref(rep->poll_timer);
        rep->restart_timer = sd_event_source_disable_unref(rep->restart_timer);
        if (rep->uv && !rep->wedged)
                engine_stop(rep);
        if (rep->wedged)
                return NULL;    /* libraft may still use it: left as it is, the process ends anyway */
        rep->uv = uvloop_free(rep->uv);
        free(rep);
        return NULL;
}

void replica_reconf(struct replica *rep, const struct dchat_conf *c)
{
        rep->conf = c;
        join_reconf(rep->join, c);
        if (!rep->raft_ready)
                return;         /* engine_start takes the new one */
        transport_reconf(rep->tr, c);
        catchup_reconf(rep->cu, c);
        raft_set_election_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC));
        raft_set_heartbeat_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC / 5));
        raft_set_install_snapshot_timeout(&rep->raft, snapshot_timeout_ms(c));
}

struct transport *replica_transport(struct replica *rep)
{
        return running(rep) ? rep->tr : NULL;
}

struct fsm *replica_fsm(struct replica *rep)
{
        return rep->fsm;
}

struct notes *replica_notes(struct replica *rep)
{
        /* while the engine runs and its state machine holds the group's state */
        if (!running(rep) || !rep->fsm || fsm_state(rep->fsm, NULL) == FSM_DIVERGED)
                return NULL;
        return fsm_notes(rep->fsm);
}

void replica_status(struct replica *rep, struct replica_status *st)
{
        static const char *const phases[] = { [REP_ASKING] = "joining", [REP_RUNNING] = "unavailable",
                                              [REP_REMOVED] = "removed", [REP_REFUSED] = "refused" };

        *st = (struct replica_status) { .term = rep->term, .in_flight = rep->in_flight, .fsm_state = rep->fsm_state };
        strlcpy(st->state, phases[rep->phase], sizeof st->state);
        strlcpy(st->trouble, rep->trouble, sizeof st->trouble);
        replica_leader(rep, st->leader, NULL);
        if (!running(rep))
                return;
        st->term = rep->raft.current_term;
        st->last_index = raft_last_index(&rep->raft);
        st->applied_index = raft_last_applied(&rep->raft);
        st->commit_index = rep->raft.commit_index;
        strlcpy(st->state, state_name(raft_state(&rep->raft)), sizeof st->state);
        st->fsm_state = fsm_state(rep->fsm, NULL);
}
