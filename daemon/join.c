/* SPDX-License-Identifier: MIT */
/*
 * join.c — where a server stands towards its group, asked of the other
 * servers: GROUP questions over links of their own, and what a server with
 * an empty Raft directory does at its start.
 *
 * A server whose $STATE_DIRECTORY/raft is empty must not simply bootstrap
 * the group its configuration lists: added to a group that runs already,
 * it would start a second one whose first entry conflicts with the first
 * one's (the same index and term, another content), and nothing would tell
 * the two apart.  So it first asks every other server of its file (GROUP):
 *
 *   bootstrap  when a majority of the configured servers, itself counted,
 *              say they hold no Raft state and would start the very same
 *              group (the same boot id: servers, addresses and key), and
 *              none says it holds state;
 *   join       when one holds state: it starts Raft without bootstrapping,
 *              takes that group's id, and waits for the leader to add it
 *              (dchatctl server add) or, if the group lists it already, to
 *              send it the log;
 *   wait       otherwise (too few answers), asking again with a bounded
 *              backoff and saying why.
 *
 * A server that holds Raft state asks too, once, before it starts Raft: if
 * a majority of the servers hold another group's state, its own came from
 * another cluster, and it refuses to start, having touched nothing; if
 * they do not answer (a whole group restarting), it starts.
 *
 * join_decide() is that rule as a pure function (tests/unit/test-join.c).
 *
 * The group id.  At bootstrap a server records its group's id in
 * raft/group-id: a digest of the initial configuration (names and
 * addresses as written, in name order), keyed with the cluster key when
 * the links are encrypted; a joining server records the id its group's
 * servers answer.  Servers exchange it on every replication link
 * (transport.c, server.c) and take no Raft traffic from a server of
 * another group, so a data directory copied from another cluster can
 * neither disturb this group nor be overwritten by it (replica.c).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>

#include "dchatd.h"
#include "key.h"

#define JOIN_ANSWER_USEC        (2 * USEC_PER_SEC)      /* a server that says nothing within this: no answer */
#define JOIN_BACKOFF_MIN        (200 * USEC_PER_MSEC)
#define JOIN_BACKOFF_MAX        (5 * USEC_PER_SEC)

/* --- the group's id --------------------------------------------------------------------- */

static int cmp_servers(const void *a, const void *b)
{
        return strcmp(((const struct node_conf *) a)->name, ((const struct node_conf *) b)->name);
}

void group_boot_id(const struct dchat_conf *c, const uint8_t *key, uint8_t id[DCHAT_GROUP_ID_BYTES])
{
        static const char context[] = "dchat group id 1";
        struct node_conf sorted[DCHAT_SERVERS_MAX];
        crypto_generichash_state h;
        unsigned n = c->n_servers < DCHAT_SERVERS_MAX ? c->n_servers : DCHAT_SERVERS_MAX;

        memcpy(sorted, c->servers, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, cmp_servers);
        crypto_generichash_init(&h, key, key ? DCHAT_KEY_BYTES : 0, DCHAT_GROUP_ID_BYTES);
        crypto_generichash_update(&h, (const uint8_t *) context, sizeof context);
        for (unsigned i = 0; i < n; i++) {
                /* NUL-separated: no two lists read alike */
                crypto_generichash_update(&h, (const uint8_t *) sorted[i].name, strlen(sorted[i].name) + 1);
                crypto_generichash_update(&h, (const uint8_t *) sorted[i].address, strlen(sorted[i].address) + 1);
        }
        crypto_generichash_final(&h, id, DCHAT_GROUP_ID_BYTES);
}

bool group_id_is_set(const uint8_t id[DCHAT_GROUP_ID_BYTES])
{
        for (unsigned i = 0; i < DCHAT_GROUP_ID_BYTES; i++)
                if (id[i])
                        return true;
        return false;
}

const char *group_id_format(const uint8_t id[DCHAT_GROUP_ID_BYTES], char buf[DCHAT_GROUP_ID_BYTES * 2 + 1])
{
        for (unsigned i = 0; i < DCHAT_GROUP_ID_BYTES; i++)
                snprintf(buf + 2 * i, 3, "%02x", id[i]);
        return buf;
}

static int hex_digit(char c)
{
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "group-id": 32 hex digits (lower case, as written) and a newline; nothing else */
int group_id_read(const char *dir, uint8_t id[DCHAT_GROUP_ID_BYTES])
{
        char path[PATH_MAX + 16], text[DCHAT_GROUP_ID_BYTES * 2 + 2];
        int fd, r;

        snprintf(path, sizeof path, "%s/group-id", dir);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, text, sizeof text);
        r = n < 0 ? -errno : 0;
        close(fd);
        if (r < 0)
                return r;
        if (n != DCHAT_GROUP_ID_BYTES * 2 + 1 || text[DCHAT_GROUP_ID_BYTES * 2] != '\n')
                return -EBADMSG;
        for (unsigned i = 0; i < DCHAT_GROUP_ID_BYTES * 2; i++) {
                int d = hex_digit(text[i]);
                if (d < 0)
                        return -EBADMSG;
                id[i / 2] = (uint8_t) (i % 2 ? id[i / 2] << 4 | d : d);
        }
        return 0;
}

/* Written whole or not at all: a temporary file, synced, renamed, the directory synced. */
int group_id_write(const char *dir, const uint8_t id[DCHAT_GROUP_ID_BYTES])
{
        char path[PATH_MAX + 16], tmp[PATH_MAX + 16], text[DCHAT_GROUP_ID_BYTES * 2 + 2];
        int fd, dfd, r = 0;

        snprintf(path, sizeof path, "%s/group-id", dir);
        snprintf(tmp, sizeof tmp, "%s/group-id.tmp", dir);
        group_id_format(id, text);
        text[DCHAT_GROUP_ID_BYTES * 2] = '\n';
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (fd < 0)
                return -errno;
        if (write(fd, text, sizeof text - 1) != (ssize_t) sizeof text - 1 || fsync(fd) < 0)
                r = errno ? -errno : -EIO;
        close(fd);
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
                (void) fsync(dfd);
                close(dfd);
        }
        return 0;
}

/* --- the decision ------------------------------------------------------------------------- */

static unsigned majority(unsigned n)
{
        return n / 2 + 1;
}

/* Appends ", name" (or "name" first) to a list in buf. */
static void list_add(char *buf, size_t cap, const char *name)
{
        size_t l = strlen(buf);
        if (l < cap)
                snprintf(buf + l, cap - l, "%s%s", l ? ", " : "", name);
}

enum join_decision join_decide(const struct join_input *in, struct join_result *out)
{
        char state_names[256] = "", other_names[256] = "", empty_names[256] = "", silent[256] = "",
             refused[256] = "", idbuf[2][DCHAT_GROUP_ID_BYTES * 2 + 1];
        unsigned n_state = 0, n_empty = 0, n_foreign = 0, best = 0;
        const uint8_t *group = NULL;
        bool conflict = false;

        *out = (struct join_result) { .d = JOIN_WAIT };
        /* the group id held by the most servers that hold state (it and how many) */
        for (unsigned i = 0; i < in->n; i++) {
                const struct join_answer *a = &in->answers[i];
                if (a->kind != JOIN_ANSWER_STATE)
                        continue;
                unsigned k = 0;
                for (unsigned j = 0; j < in->n; j++)
                        k += in->answers[j].kind == JOIN_ANSWER_STATE &&
                             !memcmp(in->answers[j].group_id, a->group_id, DCHAT_GROUP_ID_BYTES);
                if (k > best) {
                        best = k;
                        group = a->group_id;
                }
        }
        for (unsigned i = 0; i < in->n; i++) {
                const struct join_answer *a = &in->answers[i];
                switch (a->kind) {
                case JOIN_ANSWER_STATE:
                        n_state++;
                        list_add(state_names, sizeof state_names, a->name);
                        if (memcmp(a->group_id, group, DCHAT_GROUP_ID_BYTES))
                                conflict = true;
                        if (in->have_state && memcmp(a->group_id, in->group_id, DCHAT_GROUP_ID_BYTES))
                                n_foreign++;
                        break;
                case JOIN_ANSWER_EMPTY:
                        if (!memcmp(a->boot_id, in->boot_id, DCHAT_GROUP_ID_BYTES)) {
                                n_empty++;
                                list_add(empty_names, sizeof empty_names, a->name);
                        } else
                                list_add(other_names, sizeof other_names, a->name);
                        break;
                case JOIN_ANSWER_REFUSED:
                        list_add(refused, sizeof refused, a->name);
                        break;
                default:
                        list_add(silent, sizeof silent, a->name);
                }
        }

        if (in->have_state) {
                /* This server holds Raft state: it starts unless a majority of the servers
                 * hold another group's (its state then came from another cluster). */
                if (n_foreign >= majority(in->n_servers) && group &&
                    memcmp(group, in->group_id, DCHAT_GROUP_ID_BYTES)) {
                        memcpy(out->group_id, group, DCHAT_GROUP_ID_BYTES);
                        snprintf(out->why, sizeof out->why, "its Raft state belongs to group %s, but %s hold%s "
                                 "group %s", group_id_format(in->group_id, idbuf[0]), state_names,
                                 n_state == 1 ? "s" : "", group_id_format(group, idbuf[1]));
                        return out->d = JOIN_REFUSE;
                }
                memcpy(out->group_id, in->group_id, DCHAT_GROUP_ID_BYTES);
                return out->d = JOIN_START;
        }

        if (n_state > 0) {
                /* A group runs: join it, never start another.  Servers that disagree about
                 * which group it is: only a majority's word is taken. */
                if (conflict && best < majority(in->n_servers)) {
                        snprintf(out->why, sizeof out->why, "%s hold Raft state of different groups, none of them "
                                 "held by a majority of the %u servers", state_names, in->n_servers);
                        return out->d = JOIN_WAIT;
                }
                memcpy(out->group_id, group, DCHAT_GROUP_ID_BYTES);
                bool fresh = true;
                for (unsigned i = 0; i < in->n; i++)
                        if (in->answers[i].kind == JOIN_ANSWER_STATE &&
                            !memcmp(in->answers[i].group_id, group, DCHAT_GROUP_ID_BYTES)) {
                                if (in->answers[i].your_role > out->role)
                                        out->role = in->answers[i].your_role;
                                fresh &= in->answers[i].last_index <= 1;
                        }
                /* A group made from this very configuration that holds nothing but its first
                 * entry has not started: this server is one of its first voters, come late, and
                 * bootstraps the same first entry (libraft lets only servers that hold a
                 * configuration vote: the others cannot elect a leader without it). */
                if (fresh && !memcmp(group, in->boot_id, DCHAT_GROUP_ID_BYTES)) {
                        snprintf(out->why, sizeof out->why, "%s hold%s the first entry of a group made from the same "
                                 "servers (group %s), and nothing more yet", state_names, n_state == 1 ? "s" : "",
                                 group_id_format(group, idbuf[0]));
                        return out->d = JOIN_BOOTSTRAP;
                }
                snprintf(out->why, sizeof out->why, "%s hold%s the group's Raft state (group %s)", state_names,
                         n_state == 1 ? "s" : "", group_id_format(group, idbuf[0]));
                return out->d = JOIN_JOIN;
        }

        if (n_empty + 1 >= majority(in->n_servers)) {
                if (in->n_servers % 2 == 0) {
                        snprintf(out->why, sizeof out->why, "cluster.servers lists %u servers, and a new group "
                                 "needs an odd number (1, 3, 5 or 7) so that a majority can always be told apart",
                                 in->n_servers);
                        return out->d = JOIN_REFUSE;
                }
                memcpy(out->group_id, in->boot_id, DCHAT_GROUP_ID_BYTES);
                snprintf(out->why, sizeof out->why, "%u of the %u servers (%s%s%s) hold no Raft state and list the "
                         "same servers", n_empty + 1, in->n_servers, in->self, empty_names[0] ? ", " : "",
                         empty_names);
                return out->d = JOIN_BOOTSTRAP;
        }

        size_t l = (size_t) snprintf(out->why, sizeof out->why, "%u of the %u servers hold no Raft state (this one%s%s), "
                                     "and a new group needs %u", n_empty + 1, in->n_servers,
                                     empty_names[0] ? ", " : "", empty_names, majority(in->n_servers));
        if (silent[0] && l < sizeof out->why)
                l += (size_t) snprintf(out->why + l, sizeof out->why - l, "; no answer from %s", silent);
        if (other_names[0] && l < sizeof out->why)
                l += (size_t) snprintf(out->why + l, sizeof out->why - l, "; %s list%s other servers or hold%s "
                                       "another key", other_names, strchr(other_names, ',') ? "" : "s",
                                       strchr(other_names, ',') ? "" : "s");
        if (refused[0] && l < sizeof out->why)
                snprintf(out->why + l, sizeof out->why - l, "; %s take%s no part in any group", refused,
                         strchr(refused, ',') ? "" : "s");
        return out->d = JOIN_WAIT;
}

/* --- GROUP questions ------------------------------------------------------------------------ */

struct gask {
        sd_event *event;
        const struct dchat_conf *conf;
        struct conn *c;
        char name[DCHAT_NAME_MAX + 1];
        bool up;                        /* HELLO sent: questions may go */
        bool waiting;                   /* a question is out */
        bool freed;                     /* gask_free ran while a callback was running */
        bool closing;                   /* the link is being closed (an error): no more callbacks after this one */
        unsigned busy;                  /* callbacks running */
        uint32_t tag;
        uint8_t group_id[DCHAT_GROUP_ID_BYTES], boot_id[DCHAT_GROUP_ID_BYTES];
        uint64_t timeout;
        sd_event_source *timer;
        gask_cb cb;
        void *userdata;
};

static void gask_deliver(struct gask *q, const struct dchat_msg *m, const char *why)
{
        gask_cb cb = q->cb;

        q->waiting = false;
        (void) sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
        if (!cb)
                return;
        if (!m && why && (!q->c || q->closing))
                q->cb = NULL;           /* the link is gone: that was its last word */
        q->busy++;
        cb(q->userdata, q, m, why);
        q->busy--;
}

/* After a callback: was q freed meanwhile?  Then it is gone now. */
static bool gask_gone(struct gask *q)
{
        if (!q->freed || q->busy)
                return q->freed;
        sd_event_source_disable_unref(q->timer);
        free(q);
        return true;
}

static void gask_send(struct gask *q)
{
        q->tag++;
        q->waiting = true;
        (void) sd_event_source_set_time_relative(q->timer, q->timeout);
        (void) sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
        if (q->up)
                (void) conn_send(q->c, &(struct dchat_msg) { .type = MSG_GROUP, .tag = q->tag,
                                                             .group = { q->group_id, q->boot_id } });
}

static int gask_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct gask *q = conn_userdata(c);
        struct dchat_msg m;
        char why[DCHAT_ERROR_MAX + 1];

        if (type == MSG_HEARTBEAT || type == MSG_LEADER || type == MSG_CLUSTER)
                return 0;
        if ((type != MSG_GROUP_REPLY && type != MSG_ERROR) || proto_decode(type, payload, len, &m, NULL, NULL) < 0) {
                snprintf(why, sizeof why, "it sent an unexpected %s frame", proto_type_name(type));
                q->closing = true;
                gask_deliver(q, NULL, why);
                return gask_gone(q) ? -ECANCELED : -EBADMSG;
        }
        if (m.tag != q->tag || !q->waiting)
                return 0;               /* an answer to a question given up */
        if (type == MSG_ERROR) {
                log_quote(why, sizeof why, m.error.text.p, m.error.text.len);  /* (into log lines) */
                q->closing = true;
                gask_deliver(q, NULL, why);
                return gask_gone(q) ? -ECANCELED : -EIO;
        }
        gask_deliver(q, &m, NULL);
        return gask_gone(q) ? -ECANCELED : 0;
}

static void gask_connected(struct conn *c)
{
        struct gask *q = conn_userdata(c);
        const char *me = q->conf->node;

        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_SERVER, 0, q->conf->cluster_digest } });
        q->up = true;
        if (q->waiting)
                (void) conn_send(c, &(struct dchat_msg) { .type = MSG_GROUP, .tag = q->tag,
                                                          .group = { q->group_id, q->boot_id } });
}

static void gask_closed(struct conn *c, int error)
{
        struct gask *q = conn_userdata(c);

        q->c = NULL;
        q->up = false;
        if (q->freed)
                return;
        if (q->cb) {
                char why[96];
                snprintf(why, sizeof why, "%s", conn_strerror(error));
                gask_deliver(q, NULL, why);
        }
        (void) gask_gone(q);
}

static const struct conn_ops gask_ops = {
        .frame = gask_frame,
        .connected = gask_connected,
        .closed = gask_closed,
};

static int gask_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct gask *q = userdata;
        char why[96];
        (void) s;
        (void) usec;

        if (!q->waiting)
                return 0;
        snprintf(why, sizeof why, "no answer within %llu ms", (unsigned long long) (q->timeout / USEC_PER_MSEC));
        gask_deliver(q, NULL, why);
        (void) gask_gone(q);
        return 0;
}

int gask_start(sd_event *e, const struct dchat_conf *conf, const char *name, const struct sockaddr *sa,
               socklen_t salen, const uint8_t group_id[DCHAT_GROUP_ID_BYTES],
               const uint8_t boot_id[DCHAT_GROUP_ID_BYTES], uint64_t timeout_usec, gask_cb cb, void *userdata,
               struct gask **ret)
{
        struct gask *q = calloc(1, sizeof *q);
        char label[128];
        int r;

        if (!q)
                return -ENOMEM;
        q->event = e;
        q->conf = conf;
        q->cb = cb;
        q->userdata = userdata;
        q->timeout = timeout_usec;
        strlcpy(q->name, name, sizeof q->name);
        if (group_id)
                memcpy(q->group_id, group_id, DCHAT_GROUP_ID_BYTES);
        if (boot_id)
                memcpy(q->boot_id, boot_id, DCHAT_GROUP_ID_BYTES);
        r = sd_event_add_time(e, &q->timer, CLOCK_MONOTONIC, UINT64_MAX, 10 * USEC_PER_MSEC, gask_on_timer, q);
        if (r < 0) {
                free(q);
                return r;
        }
        (void) sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
        snprintf(label, sizeof label, "group query to %s", name);
        r = conn_connect(e, sa, salen, &gask_ops, q, label, name, &q->c);
        if (r < 0) {
                sd_event_source_disable_unref(q->timer);
                free(q);
                return r;
        }
        gask_send(q);
        *ret = q;
        return 0;
}

int gask_again(struct gask *q)
{
        if (!q || !q->c || q->freed)
                return -ENOTCONN;
        if (!q->waiting)
                gask_send(q);
        return 0;
}

const char *gask_name(const struct gask *q)
{
        return q->name;
}

struct gask *gask_free(struct gask *q)
{
        if (!q || q->freed)
                return NULL;
        q->freed = true;
        q->cb = NULL;
        if (q->c)
                conn_close(q->c, -ECANCELED);   /* its closed op sees freed */
        (void) gask_gone(q);
        return NULL;
}

/* --- at the start of a server with an empty Raft directory ---------------------------------- */

struct join {
        sd_event *event;
        const struct dchat_conf *conf;
        struct join_input in;
        struct join_answer answers[DCHAT_SERVERS_MAX];
        struct gask *q[DCHAT_SERVERS_MAX];      /* by index in conf->servers */
        unsigned asked, pending;
        sd_event_source *timer;                 /* the next round */
        uint64_t backoff;
        char said[512];                         /* the last reason logged for waiting */
        join_done_fn done;
        void *userdata;
};

static void join_round(struct join *j);

static unsigned join_index(const struct join *j, const struct gask *q)
{
        for (unsigned i = 0; i < j->conf->n_servers && i < DCHAT_SERVERS_MAX; i++)
                if (j->q[i] == q)
                        return i;
        return UINT_MAX;
}

static void join_settle(struct join *j)
{
        struct join_answer list[DCHAT_SERVERS_MAX];
        struct join_result res;

        /* the answers in the order of the configuration, this server left out */
        j->in.n = 0;
        for (unsigned i = 0; i < j->conf->n_servers && i < DCHAT_SERVERS_MAX; i++)
                if (i != j->conf->self)
                        list[j->in.n++] = j->answers[i];
        j->in.answers = list;
        join_decide(&j->in, &res);
        if (res.d == JOIN_WAIT) {
                if (strcmp(res.why, j->said)) {
                        log_notice("not starting the server group yet: %s; asking again", res.why);
                        strlcpy(j->said, res.why, sizeof j->said);
                }
                (void) sd_event_source_set_time_relative(j->timer, j->backoff);
                (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
                j->backoff = j->backoff * 2 > JOIN_BACKOFF_MAX ? JOIN_BACKOFF_MAX : j->backoff * 2;
                return;
        }
        j->done(j->userdata, &res);     /* may free j */
}

static void join_answered(void *userdata, struct gask *q, const struct dchat_msg *m, const char *why)
{
        struct join *j = userdata;
        unsigned i = join_index(j, q);
        (void) why;

        if (i == UINT_MAX)
                return;
        struct join_answer *a = &j->answers[i];
        *a = (struct join_answer) { .kind = JOIN_ANSWER_NONE };
        strlcpy(a->name, j->conf->servers[i].name, sizeof a->name);
        if (m) {
                switch (m->group_reply.state) {
                case GROUP_EMPTY:
                        a->kind = JOIN_ANSWER_EMPTY;
                        break;
                case GROUP_STATE:
                case GROUP_REMOVED:
                        a->kind = JOIN_ANSWER_STATE;
                        break;
                default:
                        a->kind = JOIN_ANSWER_REFUSED;
                }
                memcpy(a->group_id, m->group_reply.group_id, DCHAT_GROUP_ID_BYTES);
                memcpy(a->boot_id, m->group_reply.boot_id, DCHAT_GROUP_ID_BYTES);
                a->your_role = m->group_reply.your_role;
                a->last_index = m->group_reply.last_index;
                if (a->kind == JOIN_ANSWER_STATE && !group_id_is_set(a->group_id))
                        a->kind = JOIN_ANSWER_REFUSED;  /* state without an id: it says nothing we can use */
        }
        j->q[i] = gask_free(q);
        if (--j->pending == 0)
                join_settle(j);
}

static void join_round(struct join *j)
{
        j->pending = 0;
        for (unsigned i = 0; i < j->conf->n_servers && i < DCHAT_SERVERS_MAX; i++) {
                const struct node_conf *s = &j->conf->servers[i];
                if (i == j->conf->self)
                        continue;
                j->answers[i] = (struct join_answer) { .kind = JOIN_ANSWER_NONE };
                strlcpy(j->answers[i].name, s->name, sizeof j->answers[i].name);
                j->q[i] = gask_free(j->q[i]);
                if (gask_start(j->event, j->conf, s->name, (const struct sockaddr *) &s->sa, s->salen,
                               j->in.have_state ? j->in.group_id : NULL, j->in.boot_id, JOIN_ANSWER_USEC,
                               join_answered, j, &j->q[i]) < 0) {
                        j->q[i] = NULL;
                        continue;
                }
                j->pending++;
        }
        if (j->pending == 0)
                join_settle(j);
}

static int join_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) usec;
        join_round(userdata);
        return 0;
}

int join_start(sd_event *e, const struct dchat_conf *c, const uint8_t *group_id,
               const uint8_t boot_id[DCHAT_GROUP_ID_BYTES], join_done_fn done, void *userdata, struct join **ret)
{
        struct join *j = calloc(1, sizeof *j);
        int r;

        if (!j)
                return -ENOMEM;
        j->event = e;
        j->conf = c;
        j->done = done;
        j->userdata = userdata;
        j->backoff = JOIN_BACKOFF_MIN;
        j->in = (struct join_input) { .n_servers = c->n_servers, .self = c->node, .have_state = group_id != NULL };
        memcpy(j->in.boot_id, boot_id, DCHAT_GROUP_ID_BYTES);
        if (group_id)
                memcpy(j->in.group_id, group_id, DCHAT_GROUP_ID_BYTES);
        r = sd_event_add_time(e, &j->timer, CLOCK_MONOTONIC, UINT64_MAX, 10 * USEC_PER_MSEC, join_on_timer, j);
        if (r < 0) {
                free(j);
                return r;
        }
        /* the first round from the event loop: the server's socket listens by then */
        (void) sd_event_source_set_time_relative(j->timer, 0);
        (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
        *ret = j;
        return 0;
}

void join_poke(struct join *j)
{
        if (j && j->pending == 0 && sd_event_source_get_enabled(j->timer, NULL) > 0) {
                j->backoff = JOIN_BACKOFF_MIN;
                (void) sd_event_source_set_time_relative(j->timer, 0);
        }
}

void join_reconf(struct join *j, const struct dchat_conf *c)
{
        if (j)
                j->conf = c;
}

struct join *join_free(struct join *j)
{
        if (!j)
                return NULL;
        for (unsigned i = 0; i < DCHAT_SERVERS_MAX; i++)
                j->q[i] = gask_free(j->q[i]);
        sd_event_source_disable_unref(j->timer);
        free(j);
        return NULL;
}
