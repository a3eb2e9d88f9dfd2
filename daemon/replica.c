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
 * leader-lost).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <raft.h>
#include <raft/uv.h>

#include "dchatd.h"

#define SNAPSHOT_THRESHOLD      512     /* commands between snapshots (they are a few dozen bytes) */
#define SNAPSHOT_TRAILING       256     /* commands kept behind a snapshot for followers just behind */

struct submit {
        struct raft_apply req;
        struct replica *rep;
        void *cookie;
};

struct replica {
        sd_event *event;
        const struct dchat_conf *conf;
        struct chatlog *log;
        const struct replica_ops *ops;
        void *userdata;
        struct uvloop *uv;
        struct transport *tr;
        struct fsm *fsm;
        struct catchup *cu;
        struct raft_io io;
        struct raft raft;
        bool io_ready, raft_ready, started, closed;
        raft_id self;
        char dir[PATH_MAX];

        /* what was last reported */
        unsigned short state;
        raft_id leader;
        raft_term term;
        bool genesis_asked;
        enum fsm_state fsm_state;
        int apply_error;                /* as last logged */
        unsigned in_flight;             /* batches submitted, not applied */
        struct dchat_counters stats;
        struct fsm_snapshots snaps;     /* as last logged */
        struct ratelimit snapshot_rl;   /* snapshot events: a busy group takes several a second */
};

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

/* The configured server whose raft id is id, or NULL. */
static const struct node_conf *server_of(const struct replica *rep, raft_id id)
{
        for (unsigned i = 0; i < rep->conf->n_servers; i++)
                if (transport_id_of(rep->conf->servers[i].name) == id)
                        return &rep->conf->servers[i];
        return NULL;
}

/* The name in a libraft address "NAME@HOST:PORT". */
static void name_of_address(const char *a, char *buf, size_t cap)
{
        size_t n = a ? strcspn(a, "@") : 0;
        snprintf(buf, cap, "%.*s", (int) n, a ? a : "");
}

bool replica_is_leader(struct replica *rep)
{
        return rep->started && raft_state(&rep->raft) == RAFT_LEADER;
}

bool replica_leader(struct replica *rep, char name[DCHAT_NAME_MAX + 1], uint64_t *term)
{
        raft_id id = 0;
        const char *address = NULL;

        name[0] = '\0';
        if (term)
                *term = rep->started ? rep->raft.current_term : 0;
        if (!rep->started)
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

/* --- what changed ---------------------------------------------------------------------------- */

static uint64_t monotonic_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

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

/* After every turn of the libuv loop: report a new state, leader or term. */
static void watch(void *userdata)
{
        struct replica *rep = userdata;
        char leader[DCHAT_NAME_MAX + 1];
        const char *why;

        if (!rep->started)
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

        if (rep->ops->tick)
                rep->ops->tick(rep->userdata);

        catchup_tick(rep->cu, lid && lid != rep->self ? leader : NULL);
        int ae = fsm_apply_error(rep->fsm);
        if (ae != rep->apply_error) {
                if (ae)
                        log_error("cannot apply the group's entries to %s/chat.log: %s; retrying (the other servers "
                                  "go on; this one lags until it can write)", rep->conf->state_directory,
                                  ae == -EUCLEAN ? "the chat log is damaged (restart dchatd to quarantine it)"
                                                 : strerror(-ae));
                else
                        log_notice("the group's entries are applied to %s/chat.log again", rep->conf->state_directory);
                rep->apply_error = ae;
        }

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
                        uint64_t usec, n = catchup_fetched(rep->cu, &usec);
                        log_event(EV_REPLICA_CAUGHT_UP, &(struct event_fields) { .seq = chatlog_last_seq(rep->log) },
                                  "this server caught up with the group at seq %llu: %llu entries fetched in %llu ms "
                                  "(%llu entries/s)", (unsigned long long) chatlog_last_seq(rep->log),
                                  (unsigned long long) n, (unsigned long long) (usec / USEC_PER_MSEC),
                                  (unsigned long long) (usec ? n * USEC_PER_SEC / usec : 0));
                        catchup_reset(rep->cu);
                        uvloop_kick(rep->uv);   /* libraft applies what waited */
                }
                rep->fsm_state = fs;
                if (rep->ops->fsm_changed)
                        rep->ops->fsm_changed(rep->userdata, fs);
        }
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

int replica_submit(struct replica *rep, const struct dchat_entry *e, unsigned n, void *cookie)
{
        struct raft_buffer buf;
        struct submit *s;
        int r;

        if (!replica_is_leader(rep))
                return -ENOTCONN;
        r = fsm_encode_batch(e, n, &buf);
        if (r < 0)
                return r;
        s = calloc(1, sizeof *s);
        if (!s) {
                raft_free(buf.base);
                return -ENOMEM;
        }
        s->rep = rep;
        s->cookie = cookie;
        r = raft_apply(&rep->raft, &s->req, &buf, 1, submit_done);
        if (r != 0) {
                raft_free(buf.base);
                free(s);
                return r == RAFT_NOTLEADER || r == RAFT_LEADERSHIPLOST ? -ENOTCONN : -EIO;
        }
        rep->in_flight++;
        rep->stats.batches++;
        uvloop_kick(rep->uv);
        return 0;
}

/* --- life cycle ------------------------------------------------------------------------------------- */

static bool dir_is_empty(const char *dir)
{
        char p[PATH_MAX + 16];
        struct stat st;

        snprintf(p, sizeof p, "%s/metadata1", dir);
        if (stat(p, &st) == 0)
                return false;
        snprintf(p, sizeof p, "%s/metadata2", dir);
        return stat(p, &st) < 0;
}

static int bootstrap(struct replica *rep)
{
        struct raft_configuration c;
        char addr[DCHAT_NAME_MAX + 160];
        int r = 0;

        raft_configuration_init(&c);
        for (unsigned i = 0; i < rep->conf->n_servers && r == 0; i++) {
                const struct node_conf *s = &rep->conf->servers[i];
                transport_address(s->name, s->address, addr, sizeof addr);
                r = raft_configuration_add(&c, transport_id_of(s->name), addr, RAFT_VOTER);
        }
        if (r == 0)
                r = raft_bootstrap(&rep->raft, &c);
        raft_configuration_close(&c);
        return r;
}

int replica_new(sd_event *e, const struct dchat_conf *c, struct chatlog *log, const struct replica_ops *ops,
                void *userdata, struct replica **ret)
{
        struct replica *rep = calloc(1, sizeof *rep);
        const struct node_conf *me = &c->servers[c->self];
        char addr[DCHAT_NAME_MAX + 160];
        int r;

        if (!rep)
                return -ENOMEM;
        rep->event = e;
        rep->conf = c;
        rep->log = log;
        rep->ops = ops;
        rep->userdata = userdata;
        rep->self = transport_id_of(me->name);
        snprintf(rep->dir, sizeof rep->dir, "%s/raft", c->state_directory);
        if (mkdir(rep->dir, 0750) < 0 && errno != EEXIST) {
                r = -errno;
                log_error("cannot create %s: %s", rep->dir, strerror(-r));
                goto fail;
        }
        r = uvloop_new(e, &rep->uv);
        if (r >= 0)
                r = transport_new(e, uvloop_loop(rep->uv), c, &rep->tr);
        if (r >= 0)
                r = fsm_new(log, &rep->fsm);
        if (r >= 0)
                r = catchup_new(e, c, rep->fsm, &rep->cu);
        if (r < 0)
                goto fail;
        uvloop_set_hook(rep->uv, watch, rep);

        r = raft_uv_init(&rep->io, uvloop_loop(rep->uv), rep->dir, transport_raft(rep->tr));
        if (r != 0) {
                log_error("cannot use %s for the replicated log: %s", rep->dir, rep->io.errmsg);
                r = -EIO;
                goto fail;
        }
        rep->io_ready = true;
        /* segments are allocated ahead on disk: a few MiB each, not libraft's 8 */
        raft_uv_set_segment_size(&rep->io, 2 * 1024 * 1024);
        (void) raft_uv_set_snapshot_compression(&rep->io, false);       /* a snapshot is a few dozen bytes */
        transport_address(me->name, me->address, addr, sizeof addr);
        r = raft_init(&rep->raft, &rep->io, fsm_raft(rep->fsm), rep->self, addr);
        if (r != 0) {
                log_error("cannot set up Raft: %s", raft_strerror(r));
                r = -EIO;
                goto fail;
        }
        rep->raft_ready = true;
        rep->raft.data = rep;
        fsm_attach(rep->fsm, &rep->raft);
        rep->snapshot_rl = RATELIMIT_INIT(60 * USEC_PER_SEC, 1);
        raft_set_election_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC));
        raft_set_heartbeat_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC / 5));
        raft_set_pre_vote(&rep->raft, true);
        raft_set_snapshot_threshold(&rep->raft, SNAPSHOT_THRESHOLD);
        raft_set_snapshot_trailing(&rep->raft, SNAPSHOT_TRAILING);

        if (dir_is_empty(rep->dir)) {
                r = bootstrap(rep);
                if (r != 0 && r != RAFT_CANTBOOTSTRAP) {
                        log_error("cannot bootstrap the server group in %s: %s", rep->dir, raft_strerror(r));
                        r = -EIO;
                        goto fail;
                }
                log_info("bootstrapped the server group (%u servers) in %s", c->n_servers, rep->dir);
        }
        r = raft_start(&rep->raft);
        if (r != 0) {
                log_error("cannot start Raft in %s: %s (%s)%s", rep->dir, raft_strerror(r), raft_errmsg(&rep->raft),
                          r == RAFT_CORRUPT ? "; this server cannot take part with a damaged replicated log: see "
                                              "dchatd(8), REPLICATION" : "");
                r = -EIO;
                goto fail;
        }
        rep->started = true;
        /* raft_start restored the last snapshot, if there is one: its index is where applying goes on */
        fsm_snapshots(rep->fsm, &rep->snaps);
        if (rep->snaps.restored)
                log_event(EV_SNAPSHOT, &(struct event_fields) { .seq = rep->snaps.restored_seq },
                          "started from the snapshot at Raft index %llu (the chat log up to seq %llu)",
                          (unsigned long long) raft_last_applied(&rep->raft),
                          (unsigned long long) rep->snaps.restored_seq);
        rep->fsm_state = FSM_READY;
        rep->state = RAFT_UNAVAILABLE;
        uvloop_kick(rep->uv);
        *ret = rep;
        return 0;
fail:
        replica_free(rep);
        return r;
}

static void on_raft_closed(struct raft *raft)
{
        struct replica *rep = raft->data;
        rep->closed = true;
}

struct replica *replica_free(struct replica *rep)
{
        if (!rep)
                return NULL;
        if (rep->raft_ready) {
                rep->raft.data = rep;
                raft_close(&rep->raft, on_raft_closed);
                uvloop_drain(rep->uv, 5 * USEC_PER_SEC);
        } else if (rep->io_ready) {
                rep->io.close(&rep->io, NULL);
                uvloop_drain(rep->uv, 5 * USEC_PER_SEC);
        }
        if (rep->io_ready)
                raft_uv_close(&rep->io);
        rep->tr = transport_free(rep->tr);
        rep->cu = catchup_free(rep->cu);
        uvloop_drain(rep->uv, USEC_PER_SEC);
        rep->uv = uvloop_free(rep->uv);
        rep->fsm = fsm_free(rep->fsm);
        free(rep);
        return NULL;
}

void replica_reconf(struct replica *rep, const struct dchat_conf *c)
{
        rep->conf = c;
        transport_reconf(rep->tr, c);
        catchup_reconf(rep->cu, c);
        raft_set_election_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC));
        raft_set_heartbeat_timeout(&rep->raft, (unsigned) (c->election_timeout_usec / USEC_PER_MSEC / 5));
}

struct transport *replica_transport(struct replica *rep)
{
        return rep->tr;
}

struct fsm *replica_fsm(struct replica *rep)
{
        return rep->fsm;
}

void replica_status(struct replica *rep, struct replica_status *st)
{
        *st = (struct replica_status) { .term = rep->raft.current_term, .last_index = raft_last_index(&rep->raft),
                                        .applied_index = raft_last_applied(&rep->raft),
                                        .commit_index = rep->raft.commit_index, .in_flight = rep->in_flight };
        strlcpy(st->state, state_name(raft_state(&rep->raft)), sizeof st->state);
        replica_leader(rep, st->leader, NULL);
        st->fsm_state = fsm_state(rep->fsm, NULL);
        (void) server_of;
}
