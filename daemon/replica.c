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
 */
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
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
        struct raft_transfer transfer;  /* waiting(): a leader that cannot apply hands the lead on */
        bool transfer_pending;
        bool was_busy;
        uint64_t drain_after;           /* CLOCK_MONOTONIC usec: no retry of a failed write before */
        unsigned in_flight;             /* batches submitted, not applied */
        struct dchat_counters stats;
        struct fsm_snapshots snaps;     /* as last logged */
        struct ratelimit snapshot_rl;   /* snapshot events: a busy group takes several a second */

        /* membership */
        enum replica_phase phase;
        bool have_state;                /* the Raft directory held state at the start */
        uint8_t group_id[DCHAT_GROUP_ID_BYTES];         /* this server's group (zeros: none yet) */
        uint8_t boot_id[DCHAT_GROUP_ID_BYTES];          /* the group its configuration would start */
        struct join *join;              /* REP_ASKING: the others are asked */
        bool raft_closing;              /* raft_close was called */
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

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
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

/* name's entry in the configuration the running Raft has (committed or not), or NULL. */
static const struct raft_server *conf_server(const struct replica *rep, const char *name)
{
        raft_id id = transport_id_of(name);

        if (!rep->started)
                return NULL;
        for (unsigned i = 0; i < rep->raft.configuration.n; i++)
                if (rep->raft.configuration.servers[i].id == id)
                        return &rep->raft.configuration.servers[i];
        return NULL;
}

enum dchat_member_role replica_member(struct replica *rep, const char *name, char *address, size_t cap)
{
        const struct raft_server *sv = conf_server(rep, name);
        const char *at;

        if (address && cap)
                address[0] = '\0';
        if (!sv)
                return MEMBER_NONE;
        if (address && cap && sv->address && (at = strchr(sv->address, '@')))
                strlcpy(address, at + 1, cap);
        return member_role(sv->role);
}

void replica_address_of(struct replica *rep, const char *name, char *buf, size_t cap)
{
        if (replica_member(rep, name, buf, cap) == MEMBER_NONE && !rep->started && !strcmp(name, rep->hint))
                strlcpy(buf, rep->hint_address, cap);
}

bool replica_conf_committed(struct replica *rep)
{
        return rep->started && rep->raft.configuration_uncommitted_index == 0;
}

bool replica_knows(struct replica *rep, const char *name)
{
        return rep && conf_server(rep, name) != NULL;
}

unsigned replica_voters(struct replica *rep, char *names, size_t cap)
{
        unsigned n = 0;

        if (names && cap)
                names[0] = '\0';
        for (unsigned i = 0; rep->started && i < rep->raft.configuration.n; i++) {
                const struct raft_server *sv = &rep->raft.configuration.servers[i];
                if (sv->role != RAFT_VOTER)
                        continue;
                n++;
                if (names && cap) {
                        char name[DCHAT_NAME_MAX + 1];
                        size_t l = strlen(names);
                        name_of_address(sv->address, name, sizeof name);
                        if (l < cap)
                                snprintf(names + l, cap - l, "%s%s", l ? ", " : "", name);
                }
        }
        return n;
}

unsigned replica_members(struct replica *rep)
{
        return rep->started ? rep->raft.configuration.n : 0;
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
        *applied = rep->started ? raft_last_applied(&rep->raft) : 0;
        *last = rep->started ? raft_last_index(&rep->raft) : 0;
}

bool replica_busy(struct replica *rep)
{
        return fsm_state(rep->fsm, NULL) != FSM_READY || fsm_waiting(rep->fsm) > 0;
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
        if (!rep->started) {
                /* removed: the leader the others named */
                strlcpy(name, rep->hint, DCHAT_NAME_MAX + 1);
                return rep->hint[0] != '\0';
        }
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

/* --- membership: the configuration, removal, other groups ------------------------------- */

static void on_raft_closed(struct raft *raft);

static void stop_raft(struct replica *rep)
{
        if (rep->raft_ready && rep->started && !rep->raft_closing) {
                rep->raft_closing = true;
                raft_close(&rep->raft, on_raft_closed);
                uvloop_kick(rep->uv);
        }
        rep->started = false;
}

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
        stop_raft(rep);
        enter_phase(rep, REP_REMOVED);
}

/* This server's Raft state is another group's than its servers': it stops Raft and takes no part. */
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
        stop_raft(rep);
        enter_phase(rep, REP_REFUSED);
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

        if (rep->raft.configuration_uncommitted_index != 0 || rep->raft.configuration_index == 0 ||
            rep->raft.configuration_index == rep->members_index)
                return;
        for (unsigned i = 0; i < cf->n && n < MEMBERS_MAX; i++, n++) {
                now[n] = (struct member) { cf->servers[i].id, cf->servers[i].role, "" };
                name_of_address(cf->servers[i].address, now[n].name, sizeof now[n].name);
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
        raft_index mine = rep->raft.configuration_uncommitted_index > rep->raft.configuration_index
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

/* Ask every other server we know of (this one's configuration and file) where this server stands. */
static void poll_round(struct replica *rep)
{
        unsigned k = 0;

        poll_free(rep);
        for (unsigned i = 0; i < rep->raft.configuration.n && k < ELEMENTSOF(rep->poll); i++) {
                const struct raft_server *sv = &rep->raft.configuration.servers[i];
                struct sockaddr_storage sa;
                socklen_t salen;
                char name[DCHAT_NAME_MAX + 1];
                const char *at = sv->address ? strchr(sv->address, '@') : NULL;
                if (sv->id == rep->self || !at || sockaddr_parse(at + 1, &sa, &salen) < 0)
                        continue;
                name_of_address(sv->address, name, sizeof name);
                if (gask_start(rep->event, rep->conf, name, (struct sockaddr *) &sa, salen, rep->group_id,
                               rep->boot_id, POLL_EVERY, poll_answered, rep, &rep->poll[k]) >= 0)
                        k++;
                else
                        rep->poll[k] = NULL;
        }
        for (unsigned i = 0; i < rep->conf->n_servers && k < ELEMENTSOF(rep->poll); i++) {
                const struct node_conf *s = &rep->conf->servers[i];
                if (i == rep->conf->self || conf_server(rep, s->name))
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

        if (rep->phase == REP_RUNNING && rep->leaderless_since && rep->was_member)
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
                state = rep->started || rep->have_state ? GROUP_STATE : GROUP_EMPTY;
        }
        *a = (struct replica_answer) {0};
        if (rep->started && replica_leader(rep, leader, &term)) {
                strlcpy(a->leader, leader, sizeof a->leader);
                (void) replica_member(rep, leader, a->address, sizeof a->address);
        } else if (rep->phase == REP_REMOVED) {
                strlcpy(a->leader, rep->hint, sizeof a->leader);
                strlcpy(a->address, rep->hint_address, sizeof a->address);
        }
        /* only a committed configuration's index: the asker concludes it was removed from it */
        uint64_t config_index = rep->started && rep->raft.configuration_uncommitted_index == 0
                                        ? rep->raft.configuration_index : 0;
        a->m = (struct dchat_msg) { .type = MSG_GROUP_REPLY, .tag = tag, .group_reply = {
                .state = state,
                .group_id = rep->group_id,
                .boot_id = rep->boot_id,
                .term = rep->started ? rep->raft.current_term : 0,
                .leader = { a->leader, (uint16_t) strlen(a->leader) },
                .leader_address = { a->address, (uint16_t) strlen(a->address) },
                .applied_index = rep->started ? raft_last_applied(&rep->raft) : 0,
                .last_index = rep->started ? raft_last_index(&rep->raft) : 0,
                .last_seq = chatlog_last_seq(rep->log),
                .fsm_state = (uint8_t) fsm_state(rep->fsm, NULL),
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
                now = now_usec();
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
        rep->leaderless_since = lid ? 0 : rep->leaderless_since ? rep->leaderless_since : now_usec();
        watch_members(rep);
        if (!rep->started)
                return;         /* removed */

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
                        uvloop_kick(rep->uv);   /* fsm_feed applied what waited: libraft may go on */
                }
                rep->fsm_state = fs;
                if (rep->ops->fsm_changed)
                        rep->ops->fsm_changed(rep->userdata, fs);
        }
        waiting(rep);
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

static int note_group(void *userdata, const char *name, uint8_t state, const uint8_t *id)
{
        return replica_note_group(userdata, name, state, id);
}

static int start_raft(struct replica *rep)
{
        int r;

        transport_set_group(rep->tr, rep->group_id, rep->boot_id, note_group, rep);
        r = raft_start(&rep->raft);
        if (r != 0) {
                log_error("cannot start Raft in %s: %s (%s)%s", rep->dir, raft_strerror(r), raft_errmsg(&rep->raft),
                          r == RAFT_CORRUPT ? "; this server cannot take part with a damaged replicated log: see "
                                              "dchatd(8), REPLICATION" : "");
                return -EIO;
        }
        rep->started = true;
        rep->phase = REP_RUNNING;
        rep->leaderless_since = now_usec();
        /* raft_start restored the last snapshot, if there is one: its index is where applying goes on */
        fsm_snapshots(rep->fsm, &rep->snaps);
        if (rep->snaps.restored)
                log_event(EV_SNAPSHOT, &(struct event_fields) { .seq = rep->snaps.restored_seq },
                          "started from the snapshot at Raft index %llu (the chat log up to seq %llu)",
                          (unsigned long long) raft_last_applied(&rep->raft),
                          (unsigned long long) rep->snaps.restored_seq);
        uvloop_kick(rep->uv);
        return 0;
}

/* The others answered (join.c): bootstrap, join or stay out. */
static void joined(void *userdata, const struct join_result *res)
{
        struct replica *rep = userdata;
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1];
        int r;

        rep->join = join_free(rep->join);
        switch (res->d) {
        case JOIN_BOOTSTRAP:
                r = bootstrap(rep);
                if (r != 0 && r != RAFT_CANTBOOTSTRAP) {
                        log_error("cannot bootstrap the server group in %s: %s; this server takes no part",
                                  rep->dir, raft_strerror(r));
                        enter_phase(rep, REP_REFUSED);
                        return;
                }
                memcpy(rep->group_id, res->group_id, sizeof rep->group_id);
                log_notice("bootstrapped the server group (%u servers, group %s) in %s: %s", rep->conf->n_servers,
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
        if (res->d != JOIN_START) {
                r = group_id_write(rep->dir, rep->group_id);
                if (r < 0)
                        log_warning("cannot record the group id in %s/group-id: %s", rep->dir, strerror(-r));
        }
        if (start_raft(rep) < 0) {
                /* a damaged Raft log (or a directory it cannot use): this server must not vote with it;
                 * dchatd ends with a failure, as it did before it asked the others */
                (void) sd_event_exit(rep->event, 1);
                enter_phase(rep, REP_REFUSED);
                return;
        }
        enter_phase(rep, REP_RUNNING);
}

int replica_new(sd_event *e, const struct dchat_conf *c, struct chatlog *log, const struct replica_ops *ops,
                void *userdata, struct replica **ret)
{
        struct replica *rep = calloc(1, sizeof *rep);
        const struct node_conf *me = &c->servers[c->self];
        char addr[DCHAT_NAME_MAX + 160], path[PATH_MAX + 16];
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
                r = transport_new(e, rep->uv, c, &rep->tr);
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

        r = sd_event_add_time_relative(e, &rep->poll_timer, CLOCK_MONOTONIC, POLL_EVERY, 100 * USEC_PER_MSEC,
                                       on_poll, rep);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(rep->poll_timer, SD_EVENT_ON);
        net_boot_id(c, rep->boot_id);
        rep->fsm_state = FSM_READY;
        rep->state = RAFT_UNAVAILABLE;
        rep->phase = REP_ASKING;
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
        rep->have_state = !dir_is_empty(rep->dir);
        if (rep->have_state) {
                /* a server that holds state asks the others once before it starts Raft: a majority
                 * that holds another group says its state came from another cluster (join.c); and
                 * its links check the group id before any Raft traffic passes (transport.c, server.c) */
                r = group_id_read(rep->dir, rep->group_id);
                if (r == -ENOENT) {
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

static void on_raft_closed(struct raft *raft)
{
        struct replica *rep = raft->data;
        rep->closed = true;
}

struct replica *replica_free(struct replica *rep)
{
        if (!rep)
                return NULL;
        rep->join = join_free(rep->join);
        poll_free(rep);
        rep->poll_timer = sd_event_source_disable_unref(rep->poll_timer);
        if (rep->raft_ready) {
                rep->raft.data = rep;
                if (!rep->raft_closing)
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
        join_reconf(rep->join, c);
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
        *st = (struct replica_status) { .in_flight = rep->in_flight };
        if (rep->started)
                *st = (struct replica_status) { .term = rep->raft.current_term,
                                                .last_index = raft_last_index(&rep->raft),
                                                .applied_index = raft_last_applied(&rep->raft),
                                                .commit_index = rep->raft.commit_index, .in_flight = rep->in_flight };
        static const char *const phases[] = { [REP_ASKING] = "joining", [REP_REMOVED] = "removed",
                                              [REP_REFUSED] = "refused" };
        strlcpy(st->state, rep->phase == REP_RUNNING && rep->started ? state_name(raft_state(&rep->raft))
                                                                      : phases[rep->phase] ? phases[rep->phase] : "unavailable",
                sizeof st->state);
        replica_leader(rep, st->leader, NULL);
        st->fsm_state = fsm_state(rep->fsm, NULL);
}
