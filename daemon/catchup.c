/* SPDX-License-Identifier: MIT */
/*
 * catchup.c — a replica whose chat log ends before what the group's
 * snapshot (or genesis) says it holds fetches the entries it lacks from
 * another server, page by page, over a cluster link of its own (HELLO as
 * a server, then VIEW pages, which server.c serves from its log), and
 * stores them with chatlog_append (fsm_feed), which gives each the seq it
 * has in the group's log or says it does not.
 *
 * Raft's own log cannot carry that history: a snapshot holds no entries
 * (fsm.c), and libraft keeps every entry since its last snapshot in
 * memory.  This keeps memory bounded too: one page (CATCHUP_PAGE entries)
 * at a time, whatever the size of the log.
 *
 * The source is the leader if it is another server, else any other; a
 * source that fails or hands out a damaged part is left for the next one.
 */
#include <stdio.h>
#include <string.h>

#include "dchatd.h"

#define CATCHUP_PAGE    256             /* entries per VIEW page (and per chatlog_append) */

struct catchup {
        sd_event *event;
        const struct dchat_conf *conf;
        struct fsm *fsm;
        struct conn *c;                 /* to the source, while fetching */
        unsigned source;                /* conf->servers[source] */
        bool up;                        /* the link is up: pages may be asked for */
        uint32_t tag;
        struct dchat_entry *page;       /* CATCHUP_PAGE entries */
        unsigned n;
        struct dchat_entry scratch;     /* decode target of other frames */
        uint64_t fetched;               /* entries stored so far */
        uint64_t fetched_to;            /* the last one's seq */
        uint64_t started;               /* CLOCK_MONOTONIC usec */
        sd_event_source *retry;
        char why[160];                  /* why the last source failed */
        int store_error;                /* storing a page here failed (-errno): not the source's fault */
        uint64_t store_backoff;         /* the pause before trying again after that */
};

#define STORE_RETRY_MIN (250 * USEC_PER_MSEC)
#define STORE_RETRY_MAX (5 * USEC_PER_SEC)

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void ask_page(struct catchup *cu)
{
        uint64_t from;
        struct fsm_mark to;

        if (!cu->up || !fsm_catchup(cu->fsm, &from, &to)) {
                if (cu->c)
                        conn_close(cu->c, 0);   /* done */
                return;
        }
        cu->n = 0;
        cu->tag++;
        (void) conn_send(cu->c, &(struct dchat_msg) { .type = MSG_VIEW, .tag = cu->tag,
                                                      .view = { from, 0, to.seq, CATCHUP_PAGE, 0 } });
}

static int cu_frame(struct conn *c, uint8_t type, const uint8_t *payload, size_t len)
{
        struct catchup *cu = conn_userdata(c);
        struct dchat_msg m;
        struct dchat_entry *e = type == MSG_ENTRY && cu->n < CATCHUP_PAGE ? &cu->page[cu->n] : &cu->scratch;

        if (type == MSG_LEADER || type == MSG_HEARTBEAT || type == MSG_CLUSTER)
                return 0;
        if (proto_decode(type, payload, len, &m, e, NULL) < 0 || m.tag != cu->tag) {
                snprintf(cu->why, sizeof cu->why, "an unexpected %s frame", proto_type_name(type));
                return -EBADMSG;
        }
        switch (type) {
        case MSG_ENTRY:
                if (cu->n == CATCHUP_PAGE) {
                        snprintf(cu->why, sizeof cu->why, "a page longer than asked for");
                        return -EBADMSG;
                }
                cu->n++;
                return 0;
        case MSG_VIEW_END:
                if (cu->n) {
                        int r = fsm_feed(cu->fsm, cu->page, cu->n);
                        if (r < 0 && r != -EBADMSG) {
                                /* this server's disk (full, failing), not the source: the same source
                                 * later, and replica.c says why meanwhile (replica-stalled) */
                                cu->store_error = r;
                                snprintf(cu->why, sizeof cu->why, "storing the entries it sent failed here: %s",
                                         strerror(-r));
                                return r;
                        }
                        if (r < 0) {
                                snprintf(cu->why, sizeof cu->why, "storing the entries it sent failed: they are "
                                         "not the group's next ones");
                                return r;
                        }
                        cu->store_error = 0;
                        cu->store_backoff = 0;
                        cu->fetched += (unsigned) r;    /* (the first page's first entry was ours) */
                        if (r > 0)
                                cu->fetched_to = cu->page[cu->n - 1].seq;
                } else if (!m.view_end.done) {
                        snprintf(cu->why, sizeof cu->why, "it has not got the entries yet");
                        return -EAGAIN;
                }
                ask_page(cu);
                return 0;
        case MSG_ENTRY_DAMAGED:
                snprintf(cu->why, sizeof cu->why, "its log holds seqs %llu to %llu damaged",
                         (unsigned long long) m.damaged.first_seq, (unsigned long long) m.damaged.last_seq);
                return -EIO;
        case MSG_ERROR:
                /* another server's words, quoted: they go into this server's log lines */
                log_quote(cu->why, sizeof cu->why, m.error.text.p, m.error.text.len);
                return -EIO;
        default:
                snprintf(cu->why, sizeof cu->why, "an unexpected %s frame", proto_type_name(type));
                return -EBADMSG;
        }
}

static void cu_connected(struct conn *c)
{
        struct catchup *cu = conn_userdata(c);
        const char *me = cu->conf->node;

        (void) conn_send(c, &(struct dchat_msg) { .type = MSG_HELLO,
                .hello = { { me, (uint16_t) strlen(me) }, ROLE_SERVER, 0, cu->conf->cluster_digest } });
        cu->up = true;
        ask_page(cu);
}

static void cu_closed(struct conn *c, int error)
{
        struct catchup *cu = conn_userdata(c);
        uint64_t from;
        struct fsm_mark to;

        cu->c = NULL;
        cu->up = false;
        if (!fsm_catchup(cu->fsm, &from, &to))
                return;
        if (cu->store_error) {
                cu->store_backoff = cu->store_backoff ? cu->store_backoff * 2 : STORE_RETRY_MIN;
                if (cu->store_backoff > STORE_RETRY_MAX)
                        cu->store_backoff = STORE_RETRY_MAX;
                (void) sd_event_source_set_time_relative(cu->retry, cu->store_backoff);
                (void) sd_event_source_set_enabled(cu->retry, SD_EVENT_ONESHOT);
                return;
        }
        if (!cu->why[0])
                strlcpy(cu->why, conn_strerror(error), sizeof cu->why);
        log_warning("fetching the group's entries from %s stopped at seq %llu: %s; trying another server",
                    cu->conf->servers[cu->source].name, (unsigned long long) from - 1, cu->why);
        cu->source = (cu->source + 1) % cu->conf->n_servers;
        (void) sd_event_source_set_time_relative(cu->retry, 200 * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(cu->retry, SD_EVENT_ONESHOT);
}

static const struct conn_ops cu_ops = {
        .frame = cu_frame,
        .connected = cu_connected,
        .closed = cu_closed,
};

static void start(struct catchup *cu)
{
        const struct node_conf *sv;
        char label[128];

        if (cu->c)
                return;
        if (cu->source == cu->conf->self)
                cu->source = (cu->source + 1) % cu->conf->n_servers;
        sv = &cu->conf->servers[cu->source];
        cu->why[0] = '\0';
        snprintf(label, sizeof label, "catch-up link to %s", sv->name);
        if (conn_connect(cu->event, (const struct sockaddr *) &sv->sa, sv->salen, &cu_ops, cu, label, sv->name,
                         &cu->c) < 0) {
                cu->c = NULL;
                cu->source = (cu->source + 1) % cu->conf->n_servers;
                (void) sd_event_source_set_time_relative(cu->retry, 500 * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(cu->retry, SD_EVENT_ONESHOT);
        }
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) usec;
        catchup_tick(userdata, NULL);
        return 0;
}

int catchup_new(sd_event *e, const struct dchat_conf *conf, struct fsm *fsm, struct catchup **ret)
{
        struct catchup *cu = calloc(1, sizeof *cu);

        if (!cu)
                return -ENOMEM;
        cu->page = calloc(CATCHUP_PAGE, sizeof *cu->page);
        if (!cu->page || sd_event_add_time(e, &cu->retry, CLOCK_MONOTONIC, UINT64_MAX, 0, on_retry, cu) < 0) {
                free(cu->page);
                free(cu);
                return -ENOMEM;
        }
        (void) sd_event_source_set_enabled(cu->retry, SD_EVENT_OFF);
        cu->event = e;
        cu->conf = conf;
        cu->fsm = fsm;
        *ret = cu;
        return 0;
}

/* The replica's state may have changed: fetch if the state machine waits for entries.  leader: a hint. */
void catchup_tick(struct catchup *cu, const char *leader)
{
        uint64_t from;
        struct fsm_mark to;

        if (!cu || cu->c || !fsm_catchup(cu->fsm, &from, &to))
                return;
        if (sd_event_source_get_enabled(cu->retry, NULL) > 0)
                return;         /* a failed source: the next one shortly */
        if (!cu->started)
                cu->started = now_usec();
        if (leader)
                for (unsigned i = 0; i < cu->conf->n_servers; i++)
                        if (!strcmp(cu->conf->servers[i].name, leader) && i != cu->conf->self)
                                cu->source = i;
        if (!cu->store_error)
                log_info("fetching seqs %llu to %llu from %s", (unsigned long long) from,
                         (unsigned long long) to.seq,
                         cu->conf->servers[cu->source == cu->conf->self ? (cu->source + 1) % cu->conf->n_servers
                                                                        : cu->source].name);
        start(cu);
}

/* Entries fetched since the replica fell behind, and for how long (statistics, events). */
uint64_t catchup_fetched(const struct catchup *cu, uint64_t *usec, uint64_t *last_seq)
{
        if (last_seq)
                *last_seq = cu ? cu->fetched_to : 0;
        if (usec)
                *usec = cu && cu->started ? now_usec() - cu->started : 0;
        return cu ? cu->fetched : 0;
}

int catchup_store_error(const struct catchup *cu)
{
        return cu ? cu->store_error : 0;
}

void catchup_reset(struct catchup *cu)
{
        if (cu) {
                cu->fetched = cu->fetched_to = 0;
                cu->started = 0;
        }
}

void catchup_reconf(struct catchup *cu, const struct dchat_conf *conf)
{
        if (cu)
                cu->conf = conf;
}

struct catchup *catchup_free(struct catchup *cu)
{
        if (!cu)
                return NULL;
        if (cu->c)
                conn_close(cu->c, -ESHUTDOWN);
        sd_event_source_disable_unref(cu->retry);
        free(cu->page);
        free(cu);
        return NULL;
}
