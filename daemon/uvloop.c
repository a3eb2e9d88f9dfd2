/* SPDX-License-Identifier: MIT */
/*
 * uvloop.c — a libuv loop run inside dchatd's sd-event loop, for libraft
 * (its storage and its transport are libuv code).
 *
 * libuv keeps all it waits for behind one epoll descriptor
 * (uv_backend_fd) and knows when its next timer is due
 * (uv_backend_timeout): sd-event watches the one and arms a timer for the
 * other, and each time either fires runs the libuv loop once without
 * blocking (UV_RUN_NOWAIT).  Code that calls into libraft from an sd-event
 * handler may have queued libuv work (a write, a timer): uvloop_kick() runs
 * the loop once more at the end of that turn, from a defer source.
 */
#include <uv.h>

#include "dchatd.h"

#define UVLOOP_TIMER_ACCURACY   100             /* usec: libuv's timers count milliseconds */

struct uvloop {
        uv_loop_t loop;
        sd_event_source *io, *timer, *defer;
        bool running;                   /* inside uv_run: no recursion */
        void (*hook)(void *);
        void *hook_data;
};

static void rearm(struct uvloop *u)
{
        int ms = uv_backend_timeout(&u->loop);

        if (ms < 0) {
                (void) sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time_relative(u->timer, (uint64_t) ms * USEC_PER_MSEC);
        (void) sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT);
}

static void run(struct uvloop *u)
{
        if (u->running)
                return;
        u->running = true;
        (void) uv_run(&u->loop, UV_RUN_NOWAIT);
        u->running = false;
        if (u->hook)
                u->hook(u->hook_data);
        rearm(u);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        (void) s;
        (void) fd;
        (void) revents;
        run(userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        (void) s;
        (void) usec;
        run(userdata);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata)
{
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        run(userdata);
        return 0;
}

int uvloop_new(sd_event *e, struct uvloop **ret)
{
        struct uvloop *u = calloc(1, sizeof *u);
        int r;

        if (!u)
                return -ENOMEM;
        r = uv_loop_init(&u->loop);
        if (r < 0) {
                free(u);
                return r;
        }
        r = sd_event_add_io(e, &u->io, uv_backend_fd(&u->loop), EPOLLIN, on_io, u);
        /* Accuracy 0 would be sd-event's default, 250 ms, coalesced machine-wide: libraft's ticks
         * (its heartbeats, its election timers) would fire up to 250 ms late, and at the same
         * moments in every dchatd on the host, so that two followers of a dead leader stood as
         * candidates in the same instant, split the vote and tried again, for seconds. */
        if (r >= 0)
                r = sd_event_add_time(e, &u->timer, CLOCK_MONOTONIC, UINT64_MAX, UVLOOP_TIMER_ACCURACY, on_timer, u);
        if (r >= 0)
                r = sd_event_add_defer(e, &u->defer, on_defer, u);
        if (r < 0) {
                uvloop_free(u);
                return r;
        }
        (void) sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(u->defer, SD_EVENT_OFF);
        *ret = u;
        return 0;
}

uv_loop_t *uvloop_loop(struct uvloop *u)
{
        return &u->loop;
}

void uvloop_set_hook(struct uvloop *u, void (*fn)(void *), void *data)
{
        u->hook = fn;
        u->hook_data = data;
}

void uvloop_kick(struct uvloop *u)
{
        if (u)
                (void) sd_event_source_set_enabled(u->defer, SD_EVENT_ONESHOT);
}

/*
 * Runs the loop until every handle is closed (after raft_close, the
 * transport's and the storage's closes), at most about max_usec: the
 * daemon is stopping and nothing else is served meanwhile.
 */
void uvloop_drain(struct uvloop *u, uint64_t max_usec)
{
        uint64_t waited = 0;

        if (!u)
                return;
        while (uv_run(&u->loop, UV_RUN_NOWAIT) != 0 && waited < max_usec) {
                (void) usleep(1000);
                waited += 1000;
        }
}

struct uvloop *uvloop_free(struct uvloop *u)
{
        if (!u)
                return NULL;
        sd_event_source_disable_unref(u->io);
        sd_event_source_disable_unref(u->timer);
        sd_event_source_disable_unref(u->defer);
        (void) uv_loop_close(&u->loop);
        free(u);
        return NULL;
}
