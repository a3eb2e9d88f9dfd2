/* SPDX-License-Identifier: MIT */
/*
 * query.c — questions to the servers of a group, asked by any dchatd (peer
 * or server) for its dchatctl: the group's figures for `status` (gstat),
 * and the comparison of the servers' logs for `verify` (vjob, over
 * verify.c).
 *
 * Each question goes over a short-lived link of its own to each server (a
 * query link), opened for it and closed after it, with bounded waits: a
 * server that cannot be reached, or does not answer, is reported as such
 * within the wait, never waited for longer.  A query link is a cluster link
 * like any other (encrypted and authenticated, net.c); its HELLO says who
 * asks: a server as a server, a peer as a peer with incarnation 0, which
 * speaks for no life of it, so the server takes it for no link of the
 * peer's own and replaces none of them (server.c).  It sends HEARTBEATs
 * while it waits, so the server does not drop it as silent.
 *
 * The answer (done) always comes from the event loop, never from inside a
 * callback of a link, so its owner may free everything there.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dchatd.h"

#define VJOB_ANSWER_USEC        (15 * USEC_PER_SEC)     /* one question's bounded work, on a busy server */

/* --- query links ------------------------------------------------------------------------ */

struct qlink;
struct qlink_ops {
        void (*up)(void *userdata, unsigned idx);
        void (*frame)(void *userdata, unsigned idx, const struct dchat_msg *m);
        /* the link is gone (it is freed right after): why, for people */
        void (*gone)(void *userdata, unsigned idx, const char *why);
};

struct qlink {
        const struct dchat_conf *conf;
        struct conn *c;
        unsigned idx;                   /* conf->servers[idx] */
        bool up;
        sd_event_source *heartbeat;
        const struct qlink_ops *ops;
        void *userdata;
        struct dchat_entry entry;       /* decoding storage */
        struct dchat_status status;
};

static void qlink_release(struct qlink *q)
{
        sd_event_source_disable_unref(q->heartbeat);
        free(q);
}

static void qlink_connected(struct conn *c)
{
        struct qlink *q = conn_userdata(c);
        const char *me = q->conf->node;

        /* a peer's second link to a server must replace nothing: incarnation 0 */
        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, (uint8_t) q->conf->role, 0, q->conf->cluster_digest } });
        q->up = true;
        (void) sd_event_source_set_enabled(q->heartbeat, SD_EVENT_ON);
        q->ops->up(q->userdata, q->idx);
}

static int qlink_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct qlink *q = conn_userdata(c);
        struct dchat_msg m;

        if (proto_decode(type, payload, len, &m, &q->entry, &q->status) < 0) {
                log_event(EV_PROTOCOL_ERROR, &(struct event_fields) { .peer = q->conf->servers[q->idx].name },
                          "%s: malformed %s frame; closing", conn_label(c), proto_type_name(type));
                return -EBADMSG;
        }
        /* the link's own traffic (HELLO_ACK, LEADER, HEARTBEAT, CLUSTER) carries no answer */
        if (m.tag == 0 || type == MSG_HELLO_ACK || type == MSG_LEADER || type == MSG_CLUSTER)
                return 0;
        q->ops->frame(q->userdata, q->idx, &m);        /* (the owner does not free q from here) */
        return 0;
}

static void qlink_closed(struct conn *c, int error)
{
        struct qlink *q = conn_userdata(c);
        char why[96];

        q->c = NULL;
        if (q->ops) {
                snprintf(why, sizeof why, "%s", conn_strerror(error));
                q->ops->gone(q->userdata, q->idx, why);
        }
        qlink_release(q);
}

static const struct conn_ops qlink_conn_ops = {
        .frame = qlink_frame,
        .connected = qlink_connected,
        .closed = qlink_closed,
};

static int qlink_heartbeat(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct qlink *q = userdata;

        (void) conn_send(q->c, &(struct dchat_msg) { .type = MSG_HEARTBEAT });
        (void) sd_event_source_set_time(s, usec + q->conf->heartbeat_usec);
        return 0;
}

static int qlink_open(sd_event *e, const struct dchat_conf *conf, unsigned idx, const struct qlink_ops *ops,
                      void *userdata, struct qlink **ret)
{
        const struct node_conf *sv = &conf->servers[idx];
        struct qlink *q = calloc(1, sizeof *q);
        char label[DCHAT_NAME_MAX + 32];
        int r;

        if (!q)
                return -ENOMEM;
        q->conf = conf;
        q->idx = idx;
        q->ops = ops;
        q->userdata = userdata;
        r = sd_event_add_time_relative(e, &q->heartbeat, CLOCK_MONOTONIC, conf->heartbeat_usec, 10 * USEC_PER_MSEC,
                                       qlink_heartbeat, q);
        if (r < 0) {
                free(q);
                return r;
        }
        (void) sd_event_source_set_enabled(q->heartbeat, SD_EVENT_OFF);
        snprintf(label, sizeof label, "query link to %s", sv->name);
        r = conn_connect(e, (const struct sockaddr *) &sv->sa, sv->salen, &qlink_conn_ops, q, label, sv->name, &q->c);
        if (r < 0) {
                qlink_release(q);
                return r;
        }
        *ret = q;
        return 0;
}

/* Closes q without a word to its owner. */
static void qlink_free(struct qlink *q)
{
        if (!q)
                return;
        q->ops = NULL;
        conn_close(q->c, -ESHUTDOWN);   /* qlink_closed frees q */
}

static int qlink_send(struct qlink *q, const struct dchat_msg *m)
{
        return q->up ? conn_send(q->c, m) : -ENOTCONN;
}

static uint64_t now_usec(sd_event *e)
{
        uint64_t t;
        if (sd_event_now(e, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

/* --- status: the group's figures --------------------------------------------------------------- */

struct gstat {
        const struct dchat_conf *conf;
        struct dchat_status *st;
        struct qlink *q[DCHAT_SERVERS_MAX];
        bool answered[DCHAT_SERVERS_MAX];
        unsigned waiting;
        uint64_t timeout_usec;
        sd_event_source *timer, *finish;
        void (*done)(void *userdata, struct dchat_status *st);
        void *userdata;
};

static void gstat_answered(struct gstat *g, unsigned i, bool reachable, const char *note)
{
        struct dchat_server_status *s = &g->st->servers[i];

        if (g->answered[i])
                return;
        g->answered[i] = true;
        s->reachable = reachable;
        if (note)
                log_quote(s->note, sizeof s->note, note, strlen(note));
        if (--g->waiting == 0)
                (void) sd_event_source_set_enabled(g->finish, SD_EVENT_ONESHOT);
}

static void gstat_up(void *userdata, unsigned i)
{
        struct gstat *g = userdata;
        if (qlink_send(g->q[i], &(struct dchat_msg) { .type = MSG_STATUS, .tag = 1 }) < 0)
                gstat_answered(g, i, false, "cannot ask it");
}

static void gstat_frame(void *userdata, unsigned i, const struct dchat_msg *m)
{
        struct gstat *g = userdata;
        struct dchat_server_status *s = &g->st->servers[i];
        char text[DCHAT_ERROR_MAX];

        if (m->type == MSG_ERROR) {
                char q[DCHAT_ERROR_MAX];
                snprintf(text, sizeof text, "it answered: %s", log_quote(q, sizeof q, m->error.text.p,
                                                                         m->error.text.len));
                gstat_answered(g, i, false, text);
                return;
        }
        if (m->type != MSG_STATUS_REPLY)
                return;
        /* its own word on itself (a server outside any group has no Raft state) */
        strlcpy(s->role, m->status->raft_state[0] ? m->status->raft_state : "unavailable", sizeof s->role);
        s->term = m->status->term;
        s->last_seq = m->status->last_seq;
        s->applied_index = m->status->applied_index;
        gstat_answered(g, i, true, m->status->trouble[0] ? m->status->trouble : NULL);
}

static void gstat_gone(void *userdata, unsigned i, const char *why)
{
        struct gstat *g = userdata;
        g->q[i] = NULL;
        gstat_answered(g, i, false, why);
}

static const struct qlink_ops gstat_ops = {
        .up = gstat_up,
        .frame = gstat_frame,
        .gone = gstat_gone,
};

static int gstat_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct gstat *g = userdata;
        char note[64];
        (void) s;
        (void) usec;

        snprintf(note, sizeof note, "no answer within %llu ms", (unsigned long long) (g->timeout_usec / USEC_PER_MSEC));
        for (unsigned i = 0; i < g->st->n_servers; i++)
                if (!g->answered[i])
                        gstat_answered(g, i, false, note);
        return 0;
}

static int gstat_on_finish(sd_event_source *s, void *userdata)
{
        struct gstat *g = userdata;
        struct dchat_status *st = g->st;
        int best = -1;
        (void) s;

        /* the group's leader: the server that says it leads, in the latest term any says so */
        for (unsigned i = 0; i < st->n_servers; i++) {
                const struct dchat_server_status *v = &st->servers[i];
                if (v->reachable && v->term > st->term)
                        st->term = v->term;
                if (v->reachable && !strcmp(v->role, "leader") && (best < 0 || v->term > st->servers[best].term))
                        best = (int) i;
        }
        if (best >= 0)
                strlcpy(st->leader, st->servers[best].name, sizeof st->leader);
        g->done(g->userdata, st);        /* may free g */
        return 0;
}

int gstat_start(sd_event *e, const struct dchat_conf *c, struct dchat_status *st, uint64_t timeout_usec,
                void (*done)(void *userdata, struct dchat_status *st), void *userdata, struct gstat **ret)
{
        struct gstat *g = calloc(1, sizeof *g);
        int r;

        if (!g)
                return -ENOMEM;
        g->conf = c;
        g->st = st;
        g->timeout_usec = timeout_usec;
        g->done = done;
        g->userdata = userdata;
        r = sd_event_add_defer(e, &g->finish, gstat_on_finish, g);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->finish, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(e, &g->timer, CLOCK_MONOTONIC, now_usec(e) + timeout_usec, 10 * USEC_PER_MSEC,
                                      gstat_on_timer, g);
        if (r < 0) {
                gstat_free(g);
                return r;
        }
        st->n_servers = (uint16_t) c->n_servers;
        g->waiting = c->n_servers;
        for (unsigned i = 0; i < c->n_servers; i++) {
                struct dchat_server_status *s = &st->servers[i];
                *s = (struct dchat_server_status) {0};
                strlcpy(s->name, c->servers[i].name, sizeof s->name);
                if (c->role == ROLE_SERVER && i == c->self) {
                        /* this server: its own figures, at hand */
                        strlcpy(s->role, st->raft_state[0] ? st->raft_state : "unavailable", sizeof s->role);
                        s->term = st->term;
                        s->last_seq = st->last_seq;
                        s->applied_index = st->applied_index;
                        gstat_answered(g, i, true, st->trouble[0] ? st->trouble : NULL);
                        continue;
                }
                r = qlink_open(e, c, i, &gstat_ops, g, &g->q[i]);
                if (r < 0)
                        gstat_answered(g, i, false, strerror(-r));
        }
        *ret = g;
        return 0;
}

struct gstat *gstat_free(struct gstat *g)
{
        if (!g)
                return NULL;
        for (unsigned i = 0; i < DCHAT_SERVERS_MAX; i++)
                qlink_free(g->q[i]);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->finish);
        free(g);
        return NULL;
}

/* --- verify ------------------------------------------------------------------------------------ */

struct vjob {
        sd_event *event;
        const struct dchat_conf *conf;
        struct verify *v;
        struct qlink *q[DCHAT_SERVERS_MAX];
        unsigned n_up;                  /* links through their handshake (and this server's own log) */
        bool begun;
        /* this server's own log, asked like the others, answered from the loop */
        struct chatlog *local;
        unsigned self;
        struct dchat_msg local_q;
        sd_event_source *local_src;
        uint8_t digests[DCHAT_DIGESTS_MAX * DCHAT_DIGEST_BYTES];
        struct dchat_entry entry;
        sd_event_source *timer;
        /* the end, kept for the loop: the answer and the bytes it points to */
        struct dchat_msg answer;
        struct wbuf answer_bytes;
        sd_event_source *finish;
        void (*done)(void *userdata, const struct dchat_msg *answer);
        void *userdata;
};

static void vjob_arm(struct vjob *j, uint64_t usec)
{
        (void) sd_event_source_set_time(j->timer, now_usec(j->event) + usec);
        (void) sd_event_source_set_enabled(j->timer, SD_EVENT_ONESHOT);
}

static int vjob_ask(void *userdata, unsigned i, const struct dchat_msg *q)
{
        struct vjob *j = userdata;

        vjob_arm(j, VJOB_ANSWER_USEC);
        if (j->local && i == j->self) {
                j->local_q = *q;        /* DIGEST and VIEW point to nothing */
                return sd_event_source_set_enabled(j->local_src, SD_EVENT_ONESHOT);
        }
        return qlink_send(j->q[i], q);
}

/* The verify ended: keep its answer for the loop (its pointers are the verify's). */
static void vjob_done(void *userdata, const struct dchat_msg *answer)
{
        struct vjob *j = userdata;

        j->answer = *answer;
        wbuf_reset(&j->answer_bytes);
        if (answer->type == MSG_ERROR) {
                wbuf_put(&j->answer_bytes, answer->error.text.p, answer->error.text.len);
        } else {
                wbuf_put(&j->answer_bytes, answer->verify_reply.p, answer->verify_reply.len);
        }
        if (j->answer_bytes.failed) {
                static const char oom[] = "out of memory";
                j->answer = (struct dchat_msg) { .type = MSG_ERROR, .error = { ERR_INTERNAL, { oom, sizeof oom - 1 } } };
        } else if (answer->type == MSG_ERROR)
                j->answer.error.text.p = (const char *) j->answer_bytes.data;
        else
                j->answer.verify_reply.p = j->answer_bytes.data;
        (void) sd_event_source_set_enabled(j->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(j->finish, SD_EVENT_ONESHOT);
}

static const struct verify_ops vjob_verify_ops = {
        .ask = vjob_ask,
        .done = vjob_done,
};

static void vjob_maybe_begin(struct vjob *j)
{
        if (!j->begun && j->n_up == j->conf->n_servers) {
                j->begun = true;
                verify_begin(j->v);
        }
}

static void vjob_up(void *userdata, unsigned i)
{
        struct vjob *j = userdata;
        (void) i;
        j->n_up++;
        vjob_maybe_begin(j);
}

static void vjob_frame(void *userdata, unsigned i, const struct dchat_msg *m)
{
        struct vjob *j = userdata;
        verify_input(j->v, i, m);
}

static void vjob_gone(void *userdata, unsigned i, const char *why)
{
        struct vjob *j = userdata;
        j->q[i] = NULL;
        verify_fail(j->v, i, why);
}

static const struct qlink_ops vjob_qlink_ops = {
        .up = vjob_up,
        .frame = vjob_frame,
        .gone = vjob_gone,
};

/* This server's own answer to the question it was put, as a link would bring it. */
static int vjob_on_local(sd_event_source *s, void *userdata)
{
        struct vjob *j = userdata;
        const struct dchat_msg *q = &j->local_q;
        struct dchat_msg a;
        const char *why = "";
        struct chatlog_cursor cur;
        int r = 0;
        (void) s;

        if (q->type == MSG_DIGEST) {
                r = verify_digest(j->local, q, &a, j->digests, &j->entry, &why);
                if (r >= 0)
                        verify_input(j->v, j->self, &a);
        } else if (q->type == MSG_VIEW) {
                uint64_t seq = q->view.from_seq;
                r = seq <= chatlog_last_seq(j->local) && seq >= chatlog_first_seq(j->local) ? 0 : -ENOENT;
                if (r == 0)
                        r = chatlog_seek(j->local, seq, &cur);
                if (r == 0)
                        r = chatlog_next(j->local, &cur, &j->entry);
                if (r == CHATLOG_DAMAGED) {
                        const char *reason = cur.damaged_why ? cur.damaged_why : "damaged";
                        verify_input(j->v, j->self, &(struct dchat_msg) { .type = MSG_ENTRY_DAMAGED, .tag = q->tag,
                                .damaged = { j->entry.seq, cur.damaged_last,
                                             { reason, (uint16_t) strnlen(reason, DCHAT_REASON_MAX) } } });
                        r = 0;
                } else if (r == 0) {
                        verify_input(j->v, j->self, &(struct dchat_msg) { .type = MSG_ENTRY, .tag = q->tag,
                                                                          .append = &j->entry });
                }
                if (r == 0 || r == -ENOENT) {
                        r = 0;
                        verify_input(j->v, j->self, &(struct dchat_msg) { .type = MSG_VIEW_END, .tag = q->tag,
                                                                          .view_end = { seq + 1, seq, 1 } });
                }
                why = "its chat log cannot be read";
        }
        if (r < 0) {
                char text[DCHAT_ERROR_MAX];
                snprintf(text, sizeof text, "cannot answer: %s (%s)", why, strerror(-r));
                verify_input(j->v, j->self, &(struct dchat_msg) { .type = MSG_ERROR, .tag = q->tag,
                        .error = { ERR_STORAGE, { text, (uint16_t) strlen(text) }, 0 } });
        }
        return 0;
}

static int vjob_on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct vjob *j = userdata;
        char why[96];
        (void) s;
        (void) usec;

        if (!j->begun) {
                snprintf(why, sizeof why, "not connected within %llu ms",
                         (unsigned long long) (j->conf->connect_timeout_usec / USEC_PER_MSEC));
                for (unsigned i = 0; i < j->conf->n_servers; i++)
                        if (!(j->local && i == j->self) && !(j->q[i] && j->q[i]->up)) {
                                verify_fail(j->v, i, why);
                                return 0;
                        }
                return 0;
        }
        snprintf(why, sizeof why, "no answer within %llu s", (unsigned long long) (VJOB_ANSWER_USEC / USEC_PER_SEC));
        for (unsigned i = 0; i < j->conf->n_servers; i++)
                if (verify_waiting_for(j->v, i)) {
                        verify_fail(j->v, i, why);
                        return 0;
                }
        return 0;
}

static int vjob_on_finish(sd_event_source *s, void *userdata)
{
        struct vjob *j = userdata;
        (void) s;
        j->done(j->userdata, &j->answer);      /* may free j */
        return 0;
}

int vjob_start(sd_event *e, const struct dchat_conf *c, struct chatlog *local,
               void (*done)(void *userdata, const struct dchat_msg *answer), void *userdata, struct vjob **ret)
{
        char names[DCHAT_SERVERS_MAX][DCHAT_NAME_MAX + 1];
        struct vjob *j = calloc(1, sizeof *j);
        int r;

        if (!j)
                return -ENOMEM;
        j->event = e;
        j->conf = c;
        j->local = c->role == ROLE_SERVER ? local : NULL;
        j->self = c->self;
        j->done = done;
        j->userdata = userdata;
        for (unsigned i = 0; i < c->n_servers; i++)
                strlcpy(names[i], c->servers[i].name, sizeof names[i]);
        j->v = verify_new(c->n_servers, names, &vjob_verify_ops, j);
        r = j->v ? 0 : -ENOMEM;
        if (r >= 0)
                r = sd_event_add_defer(e, &j->local_src, vjob_on_local, j);
        if (r >= 0)
                r = sd_event_source_set_enabled(j->local_src, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(e, &j->finish, vjob_on_finish, j);
        if (r >= 0)
                r = sd_event_source_set_enabled(j->finish, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(e, &j->timer, CLOCK_MONOTONIC, 0, 10 * USEC_PER_MSEC, vjob_on_timer, j);
        if (r < 0) {
                vjob_free(j);
                return r;
        }
        vjob_arm(j, c->connect_timeout_usec);
        for (unsigned i = 0; i < c->n_servers; i++) {
                if (j->local && i == j->self) {
                        j->n_up++;
                        continue;
                }
                r = qlink_open(e, c, i, &vjob_qlink_ops, j, &j->q[i]);
                if (r < 0) {
                        verify_fail(j->v, i, strerror(-r));     /* done comes from the loop */
                        break;
                }
        }
        vjob_maybe_begin(j);            /* one server: nothing to wait for */
        *ret = j;
        return 0;
}

struct vjob *vjob_free(struct vjob *j)
{
        if (!j)
                return NULL;
        for (unsigned i = 0; i < DCHAT_SERVERS_MAX; i++)
                qlink_free(j->q[i]);
        sd_event_source_disable_unref(j->local_src);
        sd_event_source_disable_unref(j->timer);
        sd_event_source_disable_unref(j->finish);
        j->v = verify_free(j->v);
        wbuf_free(&j->answer_bytes);
        free(j);
        return NULL;
}
