/* SPDX-License-Identifier: MIT */
/* test-fd — the failure detector, and how RA treats dead and rejoining peers. */
#include <string.h>

#include "fd.h"
#include "ra.h"
#include "tap.h"

#define MS 1000ULL

static const struct fd_event *find(const struct fd_events *ev, enum fd_event_kind k, unsigned peer)
{
        for (unsigned i = 0; i < ev->n; i++)
                if (ev->e[i].kind == k && ev->e[i].peer == peer)
                        return &ev->e[i];
        return NULL;
}

static void test_states(void)
{
        struct fd fd;
        struct fd_events ev;
        const struct fd_event *e;

        fd_init(&fd, 3, 0, 1000 * MS, 3000 * MS, 0);
        is_int(fd_next_deadline(&fd), 1000 * MS, "first deadline: suspect_after from start");
        fd_tick(&fd, 999 * MS, &ev);
        is_int(ev.n, 0, "nothing before suspect_after");
        fd_heard(&fd, 1, 7, 500 * MS, &ev);
        is_int(ev.n, 0, "hearing an alive peer changes nothing");
        fd_tick(&fd, 1000 * MS, &ev);
        e = find(&ev, FD_STATE, 2);
        ok(ev.n == 1 && e && e->old == FD_ALIVE && e->new == FD_SUSPECT, "silent peer 2 suspect at 1 s");
        fd_tick(&fd, 1500 * MS, &ev);
        e = find(&ev, FD_STATE, 1);
        ok(ev.n == 1 && e && e->new == FD_SUSPECT, "peer 1 (heard at 0.5 s) suspect at 1.5 s");
        fd_heard(&fd, 1, 7, 1600 * MS, &ev);
        e = find(&ev, FD_STATE, 1);
        ok(ev.n == 1 && e && e->old == FD_SUSPECT && e->new == FD_ALIVE, "a suspect heard from is alive again");
        fd_tick(&fd, 3000 * MS, &ev);
        e = find(&ev, FD_STATE, 2);
        ok(e && e->old == FD_SUSPECT && e->new == FD_DEAD, "peer 2 dead at 3 s");
        is_int(fd.p[2].since, 3000 * MS, "since = when it died");
        fd_tick(&fd, 9000 * MS, &ev);
        ok(find(&ev, FD_STATE, 1) && !find(&ev, FD_STATE, 2), "dead stays dead without a new event");
        is_int(fd_next_deadline(&fd), UINT64_MAX, "all dead: no deadline");
        fd_heard(&fd, 2, 0, 9500 * MS, &ev);
        e = find(&ev, FD_STATE, 2);
        ok(ev.n == 1 && e && e->old == FD_DEAD && e->new == FD_ALIVE, "a dead peer heard from is alive");
        fd_heard(&fd, 0, 1, 9500 * MS, &ev);
        is_int(ev.n, 0, "self is ignored");
        fd_heard(&fd, 5, 1, 9500 * MS, &ev);
        is_int(ev.n, 0, "an out-of-range peer is ignored");
        ok(strcmp(fd_state_name(FD_SUSPECT), "suspect") == 0 && strcmp(fd_state_name(FD_DEAD), "dead") == 0,
           "state names");
}

static void test_incarnations(void)
{
        struct fd fd;
        struct fd_events ev;
        const struct fd_event *e;

        fd_init(&fd, 2, 0, 1000 * MS, 3000 * MS, 0);
        fd_heard(&fd, 1, 100, 10 * MS, &ev);
        is_int(ev.n, 0, "first incarnation learnt silently");
        fd_heard(&fd, 1, 100, 20 * MS, &ev);
        is_int(ev.n, 0, "same incarnation: nothing");
        fd_heard(&fd, 1, 200, 30 * MS, &ev);
        e = find(&ev, FD_RESTARTED, 1);
        ok(e && e->incarnation == 200, "a larger incarnation: restarted");
        fd_heard(&fd, 1, 100, 2900 * MS, &ev);
        is_int(ev.n, 0, "an older incarnation (a ghost frame) is ignored ...");
        fd_tick(&fd, 3030 * MS, &ev);
        ok(find(&ev, FD_STATE, 1) && fd.p[1].state == FD_DEAD, "... and does not keep the peer alive");
        fd_heard(&fd, 1, 300, 4000 * MS, &ev);
        ok(find(&ev, FD_RESTARTED, 1) && find(&ev, FD_STATE, 1), "dead, then back restarted: both events");
        fd_set_times(&fd, 2000 * MS, 1000 * MS);
        ok(fd.dead_after >= fd.suspect_after, "dead_after is never below suspect_after");
}

static const char *const names[] = { "a", "b", "c" };

static bool has(const struct ra_actions *a, enum ra_action_kind k, unsigned peer)
{
        for (unsigned i = 0; i < a->n; i++)
                if (a->a[i].kind == k && a->a[i].peer == peer)
                        return true;
        return false;
}

static void test_ra_down_up(void)
{
        struct ra ra;
        struct ra_actions a;

        /* a waits for b and c; c dies: a still waits for b only */
        ra_init(&ra, 3, 0, names);
        ra_request(&ra, &a);
        ra_on_reply(&ra, 1, 5, ra.req_ts, NULL, &a);
        ok(ra.state == RA_WANTED, "one reply of two: still wanted");
        ra_peer_down(&ra, 2, &a);
        ok(ra.state == RA_HELD && has(&a, RA_ENTER, 0), "the last awaited peer dies: enter");
        ra_release(&ra, &a);

        /* a request with c dead does not ask c */
        ra_request(&ra, &a);
        ok(has(&a, RA_SEND_REQUEST, 1) && !has(&a, RA_SEND_REQUEST, 2), "a new request skips the dead peer");
        /* c comes back while we wait: it is asked and awaited too */
        ra_peer_up(&ra, 2, false, &a);
        ok(has(&a, RA_SEND_REQUEST, 2) && (ra.awaiting & 4), "a rejoining peer is asked and awaited");
        ra_on_reply(&ra, 1, 9, ra.req_ts, NULL, &a);
        ok(ra.state == RA_WANTED, "b's reply alone does not let us in");
        ra_on_reply(&ra, 2, 9, ra.req_ts, NULL, &a);
        ok(ra.state == RA_HELD, "c's reply does");

        /* held: b's request is deferred; b dies: its request is dropped */
        ra_on_request(&ra, 1, 3, NULL, &a);
        ok(has(&a, RA_DEFER, 1), "b deferred while held");
        ra_peer_down(&ra, 1, &a);
        ra_release(&ra, &a);
        ok(!has(&a, RA_SEND_REPLY, 1), "the dead peer's request was dropped: no reply on exit");

        /* restarted while we wait, after it had replied: it must answer again */
        ra_init(&ra, 2, 0, names);
        ra_request(&ra, &a);
        ra_peer_up(&ra, 1, true, &a);
        ok(has(&a, RA_SEND_REQUEST, 1), "restarted peer: our request is sent again");
        ra_init(&ra, 2, 0, names);
        ra_request(&ra, &a);
        ra_on_reply(&ra, 1, 3, ra.req_ts, NULL, &a);
        ra_release(&ra, &a);
        ra_request(&ra, &a);
        uint64_t ts = ra.req_ts;
        ra_on_reply(&ra, 1, 9, ts, NULL, &a);
        ok(ra.state == RA_HELD, "entered");
        ra_release(&ra, &a);
        ra_peer_up(&ra, 1, false, &a);
        is_int(a.n, 0, "an up that was never down: nothing");

        /* ra_observe: a restarted peer learns the log's last time */
        ra_init(&ra, 2, 0, names);
        ra_observe(&ra, 41);
        ra_request(&ra, &a);
        ok(ra.req_ts > 41, "after ra_observe(41) the next request is above it (%llu)", (unsigned long long) ra.req_ts);
        ra_observe(&ra, 3);
        ok(ra.clock >= 42, "ra_observe never moves the clock back");
}

/* One link on its own (a peer's server link, the server's link to a peer). */
static void test_link(void)
{
        struct fd_link l;

        fd_link_init(&l, 100 * MS);
        ok(!fd_link_tick(&l, 1099 * MS, 1000 * MS, 3000 * MS) && l.state == FD_ALIVE, "alive until suspect_after");
        ok(fd_link_tick(&l, 1100 * MS, 1000 * MS, 3000 * MS) && l.state == FD_SUSPECT, "suspect after 1 s of silence");
        ok(!fd_link_tick(&l, 2000 * MS, 1000 * MS, 3000 * MS) && l.state == FD_SUSPECT, "still suspect");
        ok(fd_link_heard(&l, 2050 * MS) && l.state == FD_ALIVE, "a frame: alive again");
        ok(!fd_link_heard(&l, 2060 * MS), "another frame changes nothing");
        ok(!fd_link_tick(&l, 3000 * MS, 1000 * MS, 3000 * MS), "heartbeats keep it alive");
        ok(fd_link_tick(&l, 5060 * MS, 1000 * MS, 3000 * MS) && l.state == FD_DEAD,
           "dead after 3 s of silence, straight from alive when no tick came between (a frozen process)");
        is_int(fd_link_silent(&l, 5060 * MS), 3000 * MS, "silent for 3000 ms");
        ok(!fd_link_tick(&l, 9000 * MS, 1000 * MS, 3000 * MS) && l.state == FD_DEAD, "dead stays dead");
        is_int(fd_link_silent(&l, 1000 * MS), 0, "a clock before the last frame: not silent");
        fd_link_init(&l, 0);
        ok(!fd_link_tick(&l, 500 * MS, 1000 * MS, 200 * MS) && fd_link_tick(&l, 1000 * MS, 1000 * MS, 200 * MS) &&
           l.state == FD_DEAD,
           "dead_after below suspect_after counts as suspect_after");
}

/* A peer that said it leaves (LEAVE) is dead at once, and comes back like any dead peer. */
static void test_left(void)
{
        struct fd fd;
        struct fd_events ev;
        const struct fd_event *e;

        fd_init(&fd, 3, 0, 1000 * MS, 3000 * MS, 0);
        fd_heard(&fd, 1, 5, 100 * MS, &ev);
        fd_heard(&fd, 2, 9, 100 * MS, &ev);
        fd_left(&fd, 1, 200 * MS);
        ok(fd.p[1].state == FD_DEAD && fd.p[1].since == 200 * MS, "a peer that leaves is dead at once");
        is_int(fd_next_deadline(&fd), 1100 * MS, "... and has no deadline (the other peer's is next)");
        fd_tick(&fd, 5000 * MS, &ev);
        ok(!find(&ev, FD_STATE, 1) && find(&ev, FD_STATE, 2), "... and silence makes no event of it");
        fd_left(&fd, 0, 5000 * MS);
        fd_left(&fd, 7, 5000 * MS);
        ok(fd.p[0].state == FD_ALIVE, "self and out-of-range peers are ignored");
        fd_heard(&fd, 1, 6, 6000 * MS, &ev);
        e = find(&ev, FD_RESTARTED, 1);
        ok(e && e->incarnation == 6 && find(&ev, FD_STATE, 1) && fd.p[1].state == FD_ALIVE,
           "its later life heard: restarted and alive again");
}

int main(void)
{
        plan_no_plan();
        test_states();
        test_left();
        test_incarnations();
        test_ra_down_up();
        test_link();
        return done_testing();
}
