/* SPDX-License-Identifier: MIT */
/*
 * clockshift.so — LD_PRELOAD shim for tests: the wall clock (CLOCK_REALTIME and
 * its coarse variant, time(), gettimeofday()) runs DCHAT_CLOCK_SHIFT seconds off
 * (negative: behind), as after an NTP step at boot, a VM restored from a
 * snapshot or a wrong RTC.  Monotonic clocks are left alone.  For tests only.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long shift(void)
{
        const char *s = getenv("DCHAT_CLOCK_SHIFT");
        return s ? strtol(s, NULL, 10) : 0;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
        static int (*real)(clockid_t, struct timespec *);
        if (!real)
                real = (int (*)(clockid_t, struct timespec *)) dlsym(RTLD_NEXT, "clock_gettime");
        int r = real(id, ts);
        if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
                ts->tv_sec += shift();
        return r;
}

time_t time(time_t *t)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (t)
                *t = ts.tv_sec;
        return ts.tv_sec;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
        struct timespec ts;
        (void) tz;
        int r = clock_gettime(CLOCK_REALTIME, &ts);
        if (r == 0) {
                tv->tv_sec = ts.tv_sec;
                tv->tv_usec = ts.tv_nsec / 1000;
        }
        return r;
}
