/* SPDX-License-Identifier: MIT */
/*
 * test-uvloop.c — libuv's loop inside sd-event (daemon/uvloop.c), as
 * libraft uses it: a libuv timer fires about when it is due, not at
 * sd-event's default accuracy (250 ms, coalesced machine-wide: libraft's
 * ticks came up to a quarter of a second late, at the same moments in
 * every dchatd of a host, so that followers of a dead leader stood for
 * election in the same instant and split the vote); the hook runs after
 * every turn.
 *
 * The bound on lateness is generous (a busy machine must not fail it):
 * 20 timers of 5 ms in a row take well under a second when each fires on
 * time, and about 20 x 125 ms when each waits for a 250 ms boundary.
 */
#include <stdio.h>
#include <time.h>
#include <uv.h>

#include "dchatd.h"
#include "tap.h"

static uint64_t now_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static sd_event *event;
static unsigned fired, hooks;

static void on_timer(uv_timer_t *t)
{
        if (++fired == 20)
                (void) sd_event_exit(event, 0);
        else
                (void) uv_timer_start(t, on_timer, 5, 0);
}

static void hook(void *data)
{
        (void) data;
        hooks++;
}

int main(void)
{
        struct uvloop *u = NULL;
        uv_timer_t timer;

        plan_no_plan();
        if (sd_event_new(&event) < 0 || uvloop_new(event, &u) < 0) {
                printf("Bail out! cannot set up the loops\n");
                return 1;
        }
        uvloop_set_hook(u, hook, NULL);

        uv_timer_init(uvloop_loop(u), &timer);
        uv_timer_start(&timer, on_timer, 5, 0);
        uvloop_kick(u);
        uint64_t t0 = now_usec();
        is_int(sd_event_loop(event), 0, "sd-event runs libuv's timers");
        uint64_t ms = (now_usec() - t0) / USEC_PER_MSEC;
        is_int(fired, 20, "20 timers of 5 ms, one after the other, fired");
        ok(ms < 1000, "... in %llu ms: each about when due (at sd-event's default accuracy: ~2500 ms)",
           (unsigned long long) ms);
        ok(hooks >= 20, "the hook ran after every turn of libuv's loop (%u)", hooks);

        uv_close((uv_handle_t *) &timer, NULL);
        uvloop_drain(u, USEC_PER_SEC);
        uvloop_free(u);
        sd_event_unref(event);
        return done_testing();
}
