/* SPDX-License-Identifier: MIT */
/*
 * members.c — `dchatctl server add NAME ADDRESS` and `server remove NAME`:
 * the group's leader changes its Raft configuration; any other server
 * passes the request on to the leader over a link of its own and the
 * answer back (a peer passes it to the server it links to).
 *
 * Adding a server, on the leader, one change at a time:
 *
 *   probe     a link to NAME at ADDRESS (HELLO as a server, GROUP): it must
 *             answer, and hold no Raft state of another group;
 *   add       raft_add: in the configuration as a spare;
 *   standby   raft_assign RAFT_STANDBY: the leader replicates to it; it
 *             fetches the chat log's history from another server
 *             (catchup.c) and applies what follows;
 *   catch up  GROUP questions on the same link every POLL_USEC until its
 *             chat log is the group's (its state machine READY) and its
 *             applied index within CAUGHT_UP_SLACK of the leader's;
 *   voter     raft_assign RAFT_VOTER (libraft's own catch-up rounds do the
 *             last stretch), then the answer.
 *
 * Within the request's timeout, or the answer says how far it got and it
 * stays a standby (it replicates, it does not vote); the same command run
 * again picks up where it stands, so it is safe to repeat.  Removing:
 * raft_remove, answered once committed; a leader that removes itself steps
 * down then (libraft), and notices it is out (replica.c).
 *
 * Each step runs from the event loop, never from inside libraft's
 * callback.  Whoever asked may go away meanwhile: the change goes on, and
 * nobody is answered.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dchatd.h"

#define PROBE_USEC              (5 * USEC_PER_SEC)      /* the new server must answer within this */
#define POLL_USEC               (250 * USEC_PER_MSEC)   /* how often its progress is asked */
#define CAUGHT_UP_SLACK         64                      /* Raft entries it may lag when promoted */
#define DEFAULT_TIMEOUT_MS      300000

enum mop_phase {
        MOP_PROBE,                      /* waiting for the new server's first answer */
        MOP_STEP,                       /* the next step is due */
        MOP_CHANGE,                     /* a configuration change is under way (its callback is due) */
        MOP_CATCHUP,                    /* a standby: waiting for it to catch up */
};

/* The one change this leader makes. */
struct mop {
        struct mop *prev, *next;        /* in members.abandoned, once abandoned */
        struct members *m;
        uint8_t op;                     /* enum dchat_member_op */
        char name[DCHAT_NAME_MAX + 1];
        char address[128];
        struct conn *to;                /* who is answered (NULL: gone) */
        uint32_t tag;
        enum mop_phase phase;
        bool abandoned;                 /* answered and let go: freed when the change's callback comes */
        uint64_t started, timeout;      /* CLOCK_MONOTONIC usec */
        struct gask *link;              /* to the new server */
        bool link_up;                   /* it answered at least once */
        struct dchat_msg last;          /* its last GROUP_REPLY (no strings kept) */
        bool have_last;
        char why[256];                  /* why the link or the last change failed */
        unsigned promote_tries;
        uint64_t target_index;          /* the leader's applied index and chat log's end when it became a standby: */
        uint64_t target_seq;            /* it votes once it holds at least that */
        bool have_target;
};

/* A request passed on to the leader. */
struct fwd {
        struct fwd *prev, *next;
        struct members *m;
        struct conn *c;                 /* to the leader */
        struct conn *to;                /* who is answered (NULL: gone) */
        uint32_t tag;                   /* theirs */
        uint8_t op;
        char name[DCHAT_NAME_MAX + 1];
        char address[128];
        char leader[DCHAT_NAME_MAX + 1];
        uint32_t timeout_ms;
        bool answered;
};

struct members {
        sd_event *event;
        const struct dchat_conf *conf;
        struct replica *rep;
        struct mop *op;
        sd_event_source *step;          /* the op's next step, from the event loop */
        sd_event_source *poll;          /* the op's progress questions, and the deadline */
        sd_event_source *heartbeat;     /* the forward links' heartbeats */
        struct fwd *fwds;
        struct mop *abandoned;          /* ops let go while their change was under way */
};

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const char *op_name(uint8_t op)
{
        return op == MEMBER_ADD ? "server add" : "server remove";
}

static void answer_ok(struct conn *to, uint32_t tag, uint8_t op, const char *name, const char *address, uint8_t role,
                      const char *fmt, ...) _printf_(7, 8);
static void answer_ok(struct conn *to, uint32_t tag, uint8_t op, const char *name, const char *address, uint8_t role,
                      const char *fmt, ...)
{
        char text[DCHAT_ERROR_MAX];
        va_list ap;

        if (!to)
                return;
        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        (void) conn_send(to, &(struct dchat_msg) { .type = MSG_MEMBER_REPLY, .tag = tag, .member_reply = {
                op, { name, (uint16_t) strlen(name) }, { address, (uint16_t) strlen(address) }, role,
                { text, (uint16_t) strlen(text) } } });
}

/* --- the leader's change ------------------------------------------------------------------------ */

static void mop_free(struct members *m)
{
        struct mop *op = m->op;

        if (!op)
                return;
        op->link = gask_free(op->link);
        m->op = NULL;
        (void) sd_event_source_set_enabled(m->step, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(m->poll, SD_EVENT_OFF);
        free(op);
}

/* The op ends: with an ERROR (code), or nothing more if answered already.  A change under way keeps it until its callback. */
static void mop_fail(struct members *m, enum dchat_err code, const char *fmt, ...) _printf_(3, 4);
static void mop_fail(struct members *m, enum dchat_err code, const char *fmt, ...)
{
        struct mop *op = m->op;
        char text[DCHAT_ERROR_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(text, sizeof text, fmt, ap);
        va_end(ap);
        log_warning("%s %s: %s", op_name(op->op), op->name, text);
        conn_send_error(op->to, op->tag, code, "%s", text);
        op->to = NULL;
        if (op->phase == MOP_CHANGE) {
                /* libraft calls the change's callback later (it holds op): until then op is kept
                 * aside, and the next request may come meanwhile */
                op->abandoned = true;
                op->link = gask_free(op->link);
                m->op = NULL;
                LIST_PREPEND(m->abandoned, op);
                (void) sd_event_source_set_enabled(m->step, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(m->poll, SD_EVENT_OFF);
                return;
        }
        mop_free(m);
}

static void mop_schedule(struct members *m)
{
        m->op->phase = MOP_STEP;
        (void) sd_event_source_set_enabled(m->step, SD_EVENT_ONESHOT);
}

static void change_done(void *userdata, int status, const char *why)
{
        struct mop *op = userdata;
        struct members *m = op->m;

        if (op->abandoned) {
                LIST_REMOVE(m->abandoned, op);
                free(op);
                return;
        }
        op->phase = MOP_STEP;
        if (status == -ENOTCONN) {
                mop_fail(m, ERR_NOT_LEADER, "this server lost the lead before the change to %s was committed; it "
                         "may or may not be made: run the command again (it is safe to repeat)", op->name);
                return;
        }
        if (status < 0) {
                /* a promotion whose catch-up rounds ran out: it goes on as a standby, asked again */
                snprintf(op->why, sizeof op->why, "%s", why);
                if (op->op == MEMBER_ADD && replica_member(m->rep, op->name, NULL, 0) == MEMBER_STANDBY) {
                        op->phase = MOP_CATCHUP;
                        return;
                }
                mop_fail(m, ERR_INTERNAL, "the group could not change its configuration for %s: %s", op->name, why);
                return;
        }
        mop_schedule(m);
}

static int change(struct members *m, enum replica_change_op what)
{
        struct mop *op = m->op;
        char err[256] = "";
        int r = replica_change(m->rep, what, op->name, op->address, change_done, op, err, sizeof err);

        if (r == -ENOTCONN) {
                mop_fail(m, ERR_NOT_LEADER, "this server no longer leads the group: run the command again");
                return r;
        }
        if (r == -EBUSY) {
                /* libraft's own change (a promotion's rounds) is not over yet: the next poll tries again */
                op->phase = MOP_CATCHUP;
                return 0;
        }
        if (r < 0) {
                mop_fail(m, ERR_INTERNAL, "the group cannot change its configuration for %s: %s", op->name,
                         err[0] ? err : strerror(-r));
                return r;
        }
        op->phase = MOP_CHANGE;
        return 0;
}

/* How far the new server is, for messages. */
static void progress_text(struct members *m, char *buf, size_t cap)
{
        struct mop *op = m->op;
        uint64_t applied, last;

        replica_progress(m->rep, &applied, &last);
        if (!op->have_last) {
                snprintf(buf, cap, "it has not answered%s%s", op->why[0] ? ": " : "", op->why);
                return;
        }
        snprintf(buf, cap, "its chat log is at seq %llu of %llu%s, Raft index %llu of %llu applied",
                 (unsigned long long) op->last.group_reply.last_seq,
                 (unsigned long long) replica_last_seq(m->rep),
                 op->last.group_reply.fsm_state == FSM_CATCHUP ? " (fetching the history)"
                 : op->last.group_reply.fsm_state == FSM_DIVERGED ? " (its chat log is not the group's)" : "",
                 (unsigned long long) op->last.group_reply.applied_index, (unsigned long long) applied);
}

/* Has the new server caught up: its chat log the group's, all of it that was there when it became a standby, and
 * its applied index close to the leader's? */
static bool caught_up(struct members *m, const struct dchat_msg *reply)
{
        struct mop *op = m->op;
        uint64_t applied, last;

        if (!op->have_last || !op->have_target)
                return false;
        replica_progress(m->rep, &applied, &last);
        return reply->group_reply.fsm_state == FSM_READY && reply->group_reply.applied_index >= op->target_index &&
               reply->group_reply.last_seq >= op->target_seq &&
               reply->group_reply.applied_index + CAUGHT_UP_SLACK >= applied;
}

static void add_step(struct members *m)
{
        struct mop *op = m->op;
        enum dchat_member_role role = replica_member(m->rep, op->name, NULL, 0);
        uint64_t last;
        char voters[256];

        switch (role) {
        case MEMBER_NONE:
                (void) change(m, REPLICA_ADD);
                return;
        case MEMBER_SPARE:
                (void) change(m, REPLICA_STANDBY);
                return;
        case MEMBER_STANDBY:
                if (!op->have_target) {
                        /* the whole history, up to now: it fetches what came before the group's snapshot */
                        replica_progress(m->rep, &op->target_index, &last);
                        op->target_seq = replica_last_seq(m->rep);
                        op->have_target = true;
                }
                if (!caught_up(m, &op->last)) {
                        op->phase = MOP_CATCHUP;        /* the polls say when */
                        return;
                }
                op->promote_tries++;
                (void) change(m, REPLICA_VOTER);
                return;
        case MEMBER_VOTER:
                replica_voters(m->rep, voters, sizeof voters);
                log_info("server add %s: a voter now (after %llu ms); the group's voters: %s", op->name,
                         (unsigned long long) ((now_usec() - op->started) / USEC_PER_MSEC), voters);
                answer_ok(op->to, op->tag, MEMBER_ADD, op->name, op->address, MEMBER_VOTER,
                          "%s joined the server group as a voter in %llu.%03llu s (its chat log: %llu entries); "
                          "voters now: %s", op->name,
                          (unsigned long long) ((now_usec() - op->started) / USEC_PER_SEC),
                          (unsigned long long) ((now_usec() - op->started) / USEC_PER_MSEC % 1000),
                          (unsigned long long) (op->have_last ? op->last.group_reply.last_seq : 0), voters);
                mop_free(m);
                return;
        }
}

static void remove_step(struct members *m)
{
        struct mop *op = m->op;
        char voters[256];

        if (replica_member(m->rep, op->name, NULL, 0) != MEMBER_NONE) {
                (void) change(m, REPLICA_REMOVE);
                return;
        }
        replica_voters(m->rep, voters, sizeof voters);
        answer_ok(op->to, op->tag, MEMBER_REMOVE, op->name, op->address, MEMBER_NONE,
                  "%s was removed from the server group; voters now: %s%s", op->name, voters,
                  strcmp(op->name, m->conf->node) ? "" : " (it led the group: it steps down, and the others elect "
                                                         "a leader among them)");
        mop_free(m);
}

static int on_step(sd_event_source *s, void *userdata)
{
        struct members *m = userdata;
        (void) s;

        if (!m->op || m->op->phase != MOP_STEP)
                return 0;
        if (m->op->op == MEMBER_ADD)
                add_step(m);
        else
                remove_step(m);
        return 0;
}

static void link_answered(void *userdata, struct gask *q, const struct dchat_msg *reply, const char *why)
{
        struct members *m = userdata;
        struct mop *op = m->op;
        char a[DCHAT_GROUP_ID_BYTES * 2 + 1], b[DCHAT_GROUP_ID_BYTES * 2 + 1];

        if (!op || op->link != q)
                return;
        if (!reply) {
                /* the link is gone (or silent): a new one at the next poll */
                snprintf(op->why, sizeof op->why, "%s", why ? why : "no answer");
                op->link = gask_free(q);
                if (op->phase == MOP_PROBE)
                        mop_fail(m, ERR_UNAVAILABLE, "%s at %s does not answer (%s): start dchatd there first, with a "
                                 "cluster.servers that lists it and this group's servers; nothing was changed",
                                 op->name, op->address, op->why);
                return;
        }
        const uint8_t *mine = replica_group_id(m->rep);
        uint8_t state = reply->group_reply.state;
        if (state == GROUP_REFUSED ||
            ((state == GROUP_STATE || state == GROUP_REMOVED) && group_id_is_set(reply->group_reply.group_id) &&
             memcmp(reply->group_reply.group_id, mine, DCHAT_GROUP_ID_BYTES))) {
                mop_fail(m, ERR_INVALID, "%s holds Raft state of another group (%s; this group is %s): stop it, move "
                         "its state directory's raft/ (and a chat.log that is not this group's) aside, start it again "
                         "and run the command again%s", op->name, group_id_format(reply->group_reply.group_id, a),
                         group_id_format(mine, b), op->phase == MOP_PROBE ? "; nothing was changed" : "");
                return;
        }
        if (state == GROUP_REMOVED) {
                mop_fail(m, ERR_INVALID, "%s was removed from this group and stays out: stop it, move its state "
                         "directory's raft/ aside, start it again and run the command again%s", op->name,
                         op->phase == MOP_PROBE ? "; nothing was changed" : "");
                return;
        }
        op->last = *reply;
        op->last.group_reply.leader = op->last.group_reply.leader_address = (struct dchat_str) { "", 0 };
        op->last.group_reply.group_id = op->last.group_reply.boot_id = NULL;
        op->have_last = true;
        op->link_up = true;
        op->why[0] = '\0';
        if (op->phase == MOP_PROBE)
                mop_schedule(m);
        else if (op->phase == MOP_CATCHUP && caught_up(m, &op->last))
                mop_schedule(m);
}

static int link_open(struct members *m)
{
        struct mop *op = m->op;
        struct sockaddr_storage sa;
        socklen_t salen;
        int r = sockaddr_parse(op->address, &sa, &salen);

        if (r < 0)
                return r;
        return gask_start(m->event, m->conf, op->name, (struct sockaddr *) &sa, salen, replica_group_id(m->rep),
                          NULL, PROBE_USEC, link_answered, m, &op->link);
}

/* Every POLL_USEC while adding: the new server's progress, and the deadline. */
static int on_poll(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct members *m = userdata;
        struct mop *op = m->op;
        char text[200];

        if (!op)
                return 0;
        if (usec >= op->started + op->timeout) {
                progress_text(m, text, sizeof text);
                enum dchat_member_role role = replica_member(m->rep, op->name, NULL, 0);
                mop_fail(m, ERR_TIMEOUT, "%s did not catch up within %llu s (%s): it %s; run the same command again "
                         "to wait longer, or 'dchatctl server remove %s'", op->name,
                         (unsigned long long) (op->timeout / USEC_PER_SEC), text,
                         role == MEMBER_STANDBY ? "stays a standby (it replicates, it does not vote)"
                         : role == MEMBER_VOTER ? "is a voter" : "is in the configuration as a spare", op->name);
                return 0;
        }
        if (!op->link && link_open(m) < 0)
                snprintf(op->why, sizeof op->why, "cannot link to %s", op->address);
        else if (op->link)
                (void) gask_again(op->link);
        if (op->phase == MOP_CATCHUP && op->have_last)
                mop_schedule(m);        /* a promotion refused for a busy configuration tries again */
        (void) sd_event_source_set_time(s, usec + POLL_USEC);
        return 0;
}

static int start_add(struct members *m, const char *name, const char *address, uint32_t timeout_ms, struct conn *to,
                     uint32_t tag)
{
        struct mop *op;
        char have[128], text[DCHAT_ERROR_MAX];
        struct sockaddr_storage sa;
        socklen_t salen;
        enum dchat_member_role role = replica_member(m->rep, name, have, sizeof have);

        if (sockaddr_parse(address, &sa, &salen) < 0) {
                conn_send_error(to, tag, ERR_INVALID, "'%s' is not an address HOST:PORT (numeric, or a name that "
                                "resolves)", address);
                return 0;
        }
        for (unsigned i = 0; i < m->conf->n_peers; i++)
                if (!strcmp(m->conf->peers[i].name, name)) {
                        conn_send_error(to, tag, ERR_INVALID, "%s is a peer (cluster.peers): a server needs a name "
                                        "of its own", name);
                        return 0;
                }
        if (role != MEMBER_NONE && strcmp(have, address)) {
                conn_send_error(to, tag, ERR_INVALID, "%s is in the group already, at %s: remove it first to give it "
                                "another address", name, have);
                return 0;
        }
        if (role == MEMBER_VOTER) {
                replica_voters(m->rep, text, sizeof text);
                answer_ok(to, tag, MEMBER_ADD, name, address, MEMBER_VOTER, "%s is a voter of the server group "
                          "already; voters: %s", name, text);
                return 0;
        }
        if (role == MEMBER_NONE && replica_members(m->rep) >= DCHAT_SERVERS_MAX) {
                conn_send_error(to, tag, ERR_INVALID, "the group has %u servers already, the most it may have",
                                replica_members(m->rep));
                return 0;
        }
        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        *op = (struct mop) { .m = m, .op = MEMBER_ADD, .to = to, .tag = tag, .phase = MOP_PROBE,
                             .started = now_usec(),
                             .timeout = (timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS) * USEC_PER_MSEC };
        strlcpy(op->name, name, sizeof op->name);
        strlcpy(op->address, address, sizeof op->address);
        m->op = op;
        log_notice("server add %s %s: %s", name, address, role == MEMBER_NONE ? "asking it where it stands first"
                   : "in the group as a standby already: waiting for it to catch up");
        if (link_open(m) < 0) {
                mop_fail(m, ERR_UNAVAILABLE, "cannot link to %s at %s: nothing was changed", name, address);
                return 0;
        }
        (void) sd_event_source_set_time_relative(m->poll, POLL_USEC);
        (void) sd_event_source_set_enabled(m->poll, SD_EVENT_ON);
        return 0;
}

static int start_remove(struct members *m, const char *name, struct conn *to, uint32_t tag)
{
        char have[128], voters[256];
        enum dchat_member_role role = replica_member(m->rep, name, have, sizeof have);
        unsigned n_voters = replica_voters(m->rep, voters, sizeof voters);
        struct mop *op;

        if (role == MEMBER_NONE) {
                conn_send_error(to, tag, ERR_INVALID, "%s is not in the server group (its voters: %s)", name, voters);
                return 0;
        }
        if (role == MEMBER_VOTER && n_voters == 1) {
                conn_send_error(to, tag, ERR_INVALID, "%s is the group's only voter: the group cannot go on without "
                                "it", name);
                return 0;
        }
        op = calloc(1, sizeof *op);
        if (!op)
                return -ENOMEM;
        *op = (struct mop) { .m = m, .op = MEMBER_REMOVE, .to = to, .tag = tag, .started = now_usec() };
        strlcpy(op->name, name, sizeof op->name);
        strlcpy(op->address, have, sizeof op->address);
        m->op = op;
        log_notice("server remove %s (%s, at %s)", name, member_role_name(role), have);
        mop_schedule(m);
        return 0;
}

/* --- passing a request on to the leader ------------------------------------------------------------ */

static void fwd_free(struct members *m, struct fwd *f)
{
        LIST_REMOVE(m->fwds, f);
        free(f);
}

static int fwd_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct fwd *f = conn_userdata(c);
        struct dchat_msg msg;

        if (type == MSG_HEARTBEAT || type == MSG_LEADER || type == MSG_CLUSTER)
                return 0;
        if ((type != MSG_MEMBER_REPLY && type != MSG_ERROR) || proto_decode(type, payload, len, &msg, NULL, NULL) < 0)
                return -EBADMSG;
        if (msg.tag != 1)
                return 0;
        /* the leader's answer goes to whoever asked, under their tag */
        msg.tag = f->tag;
        if (f->to)
                (void) conn_send(f->to, &msg);
        f->answered = true;
        return -ECONNRESET;     /* done: closed */
}

static void fwd_connected(struct conn *c)
{
        struct fwd *f = conn_userdata(c);
        const char *me = f->m->conf->node;

        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_SERVER, 0, f->m->conf->cluster_digest } });
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_MEMBER, .tag = 1, .member = {
                f->op, { f->name, (uint16_t) strlen(f->name) }, { f->address, (uint16_t) strlen(f->address) },
                f->timeout_ms } });
}

static void fwd_closed(struct conn *c, int error)
{
        struct fwd *f = conn_userdata(c);

        if (!f->answered)
                conn_send_error(f->to, f->tag, ERR_UNAVAILABLE, "lost the link to the group's leader %s (%s) before "
                                "it answered: the change may or may not have been made; run the command again (it "
                                "is safe to repeat)", f->leader, conn_strerror(error));
        fwd_free(f->m, f);
}

static const struct conn_ops fwd_ops = {
        .frame = fwd_frame,
        .connected = fwd_connected,
        .closed = fwd_closed,
};

static int forward(struct members *m, const struct dchat_msg *req, struct conn *to, const char *leader)
{
        struct sockaddr_storage sa;
        socklen_t salen;
        char address[128], label[128];
        struct fwd *f;

        (void) replica_member(m->rep, leader, address, sizeof address);
        if (!address[0] || sockaddr_parse(address, &sa, &salen) < 0) {
                conn_send_error(to, req->tag, ERR_UNAVAILABLE, "the group's leader %s has no address this server "
                                "can reach: try again", leader);
                return 0;
        }
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        *f = (struct fwd) { .m = m, .to = to, .tag = req->tag, .op = req->member.op,
                            .timeout_ms = req->member.timeout_ms };
        (void) dchat_str_copy(f->name, sizeof f->name, req->member.name);
        (void) dchat_str_copy(f->address, sizeof f->address, req->member.address);
        strlcpy(f->leader, leader, sizeof f->leader);
        snprintf(label, sizeof label, "%s link to %s", op_name(f->op), leader);
        if (conn_connect(m->event, (struct sockaddr *) &sa, salen, &fwd_ops, f, label, leader, &f->c) < 0) {
                conn_send_error(to, req->tag, ERR_UNAVAILABLE, "cannot link to the group's leader %s at %s: try "
                                "again", leader, address);
                free(f);
                return 0;
        }
        LIST_PREPEND(m->fwds, f);
        log_info("%s %s: passed on to the group's leader %s", op_name(f->op), f->name, leader);
        return 0;
}

/* Forward links say they are alive, or the leader drops them while a long add runs. */
static int on_heartbeat(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct members *m = userdata;

        for (struct fwd *f = m->fwds; f; f = f->next)
                (void) conn_send(f->c, &(struct dchat_msg) { .type = MSG_HEARTBEAT });
        (void) sd_event_source_set_time(s, usec + m->conf->heartbeat_usec);
        return 0;
}

/* --- the rest ------------------------------------------------------------------------------------- */

int members_request(struct members *m, const struct dchat_msg *req, struct conn *to, bool from_server)
{
        char name[DCHAT_NAME_MAX + 1], address[128], leader[DCHAT_NAME_MAX + 1];

        if (dchat_str_copy(name, sizeof name, req->member.name) < 0 || !node_name_valid(name) ||
            dchat_str_copy(address, sizeof address, req->member.address) < 0) {
                conn_send_error(to, req->tag, ERR_INVALID, "not a valid server name: 1 to %u characters of A-Z, a-z, "
                                "0-9, '.', '_' and '-', not starting with '-'", DCHAT_NAME_MAX);
                return 0;
        }
        if (!replica_is_leader(m->rep)) {
                if (!replica_leader(m->rep, leader, NULL) || replica_phase(m->rep) != REP_RUNNING) {
                        enum replica_phase ph = replica_phase(m->rep);
                        conn_send_error(to, req->tag, ERR_UNAVAILABLE, "%s",
                                        ph == REP_RUNNING ? "the server group has no leader just now: try again"
                                        : ph == REP_ASKING ? "this server is not in the server group yet: ask a member"
                                        : "this server takes no part in the server group: ask another server");
                        return 0;
                }
                if (from_server) {
                        /* one hop only: a server that thinks it leads sends it on, never further */
                        conn_send_error(to, req->tag, ERR_NOT_LEADER, "%s does not lead the server group (%s "
                                        "does): try again", m->conf->node, leader);
                        return 0;
                }
                return forward(m, req, to, leader);
        }
        if (m->op) {
                conn_send_error(to, req->tag, ERR_BUSY, "another change of the server group is under way (%s %s): "
                                "try again once it is done", op_name(m->op->op), m->op->name);
                return 0;
        }
        if (req->member.op == MEMBER_ADD)
                return start_add(m, name, address, req->member.timeout_ms, to, req->tag);
        return start_remove(m, name, to, req->tag);
}

void members_client_gone(struct members *m, struct conn *to)
{
        if (!m)
                return;
        if (m->op && m->op->to == to)
                m->op->to = NULL;
        for (struct mop *op = m->abandoned; op; op = op->next)
                if (op->to == to)
                        op->to = NULL;
        for (struct fwd *f = m->fwds; f; f = f->next)
                if (f->to == to)
                        f->to = NULL;
}

void members_leader_changed(struct members *m, bool is_leader)
{
        struct mop *op = m ? m->op : NULL;

        if (!op || is_leader)
                return;
        /* A leader that removed itself steps down once the change is committed, before the
         * step that answers runs: what the committed configuration says is the answer. */
        enum dchat_member_role role = replica_member(m->rep, op->name, NULL, 0);
        if (replica_conf_committed(m->rep) && op->phase == MOP_STEP &&
            (op->op == MEMBER_REMOVE ? role == MEMBER_NONE : role == MEMBER_VOTER)) {
                if (op->op == MEMBER_REMOVE)
                        remove_step(m);
                else
                        add_step(m);
                return;
        }
        mop_fail(m, ERR_NOT_LEADER, "this server lost the lead while it %s %s; the group may hold it as %s now: run "
                 "the command again (it is safe to repeat)", op->op == MEMBER_ADD ? "added" : "removed",
                 op->name, op->op == MEMBER_ADD ? "a spare or standby" : "a member still");
}

int members_new(sd_event *e, const struct dchat_conf *c, struct replica *rep, struct members **ret)
{
        struct members *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->event = e;
        m->conf = c;
        m->rep = rep;
        r = sd_event_add_defer(e, &m->step, on_step, m);
        if (r >= 0)
                r = sd_event_add_time(e, &m->poll, CLOCK_MONOTONIC, UINT64_MAX, 10 * USEC_PER_MSEC, on_poll, m);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &m->heartbeat, CLOCK_MONOTONIC, c->heartbeat_usec,
                                               10 * USEC_PER_MSEC, on_heartbeat, m);
        if (r < 0) {
                members_free(m);
                return r;
        }
        (void) sd_event_source_set_enabled(m->step, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(m->poll, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(m->heartbeat, SD_EVENT_ON);
        *ret = m;
        return 0;
}

void members_reconf(struct members *m, const struct dchat_conf *c)
{
        if (m)
                m->conf = c;
}

struct members *members_free(struct members *m)
{
        if (!m)
                return NULL;
        mop_free(m);
        while (m->abandoned) {
                struct mop *op = m->abandoned;
                LIST_REMOVE(m->abandoned, op);
                free(op);
        }
        while (m->fwds) {
                struct fwd *f = m->fwds;
                f->to = NULL;
                f->answered = true;
                conn_close(f->c, -ESHUTDOWN);   /* frees f */
        }
        sd_event_source_disable_unref(m->step);
        sd_event_source_disable_unref(m->poll);
        sd_event_source_disable_unref(m->heartbeat);
        free(m);
        return NULL;
}
