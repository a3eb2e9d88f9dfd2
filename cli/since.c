/* SPDX-License-Identifier: MIT */
/*
 * since.c — parses the TIME of `dchatctl view --since TIME` (see since.h).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <strings.h>

#include "since.h"

/* Reads exactly n digits at *p. */
static bool digits(const char **p, int n, int *v)
{
        *v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return false;
                *v = *v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        return true;
}

/* HH:MM[:SS] at *p into tm. */
static bool clock_part(const char **p, struct tm *tm)
{
        int h, m, sec = 0;

        if (!digits(p, 2, &h) || **p != ':')
                return false;
        (*p)++;
        if (!digits(p, 2, &m))
                return false;
        if (**p == ':') {
                (*p)++;
                if (!digits(p, 2, &sec))
                        return false;
        }
        if (h > 23 || m > 59 || sec > 60)
                return false;
        tm->tm_hour = h;
        tm->tm_min = m;
        tm->tm_sec = sec;
        return true;
}

/* mktime() that refuses what it had to normalise (31 Feb, ...). */
static int local_time(struct tm *tm, int64_t *t)
{
        struct tm want = *tm;
        time_t r;

        tm->tm_isdst = -1;
        r = mktime(tm);
        if (r == (time_t) -1 || tm->tm_year != want.tm_year || tm->tm_mon != want.tm_mon ||
            tm->tm_mday != want.tm_mday)
                return -EINVAL;
        *t = (int64_t) r;
        return 0;
}

static int relative(const char *s, time_t now, int64_t *t)
{
        static const struct { const char *name; int64_t secs; } units[] = {
                { "s", 1 }, { "sec", 1 }, { "secs", 1 }, { "second", 1 }, { "seconds", 1 },
                { "m", 60 }, { "min", 60 }, { "mins", 60 }, { "minute", 60 }, { "minutes", 60 },
                { "h", 3600 }, { "hour", 3600 }, { "hours", 3600 },
                { "d", 86400 }, { "day", 86400 }, { "days", 86400 },
                { "w", 604800 }, { "week", 604800 }, { "weeks", 604800 },
        };
        int64_t n = 0;
        const char *p = s;

        if (!isdigit((unsigned char) *p))
                return -EINVAL;
        while (isdigit((unsigned char) *p)) {
                if (n > 100000000)
                        return -EINVAL;
                n = n * 10 + (*p++ - '0');
        }
        if (*p == ' ')
                p++;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
                if (!strcmp(p, units[i].name)) {
                        *t = (int64_t) now - n * units[i].secs;
                        return 0;
                }
        return -EINVAL;
}

int since_parse(const char *s, time_t now, int64_t *t)
{
        struct tm tm;
        const char *p = s;
        int y, mo, d;

        if (!s || !*s)
                return -EINVAL;
        if (*s == '@') {
                char *end;
                long long v;
                if (!isdigit((unsigned char) s[1]))
                        return -EINVAL;
                errno = 0;
                v = strtoll(s + 1, &end, 10);
                if (errno || *end)
                        return -EINVAL;
                *t = v;
                return 0;
        }
        if (!strcmp(s, "now")) {
                *t = (int64_t) now;
                return 0;
        }
        localtime_r(&now, &tm);
        if (!strcmp(s, "today") || !strcmp(s, "yesterday")) {
                tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
                if (s[0] == 'y')
                        tm.tm_mday--;
                tm.tm_isdst = -1;
                time_t r = mktime(&tm);
                if (r == (time_t) -1)
                        return -EINVAL;
                *t = (int64_t) r;
                return 0;
        }
        /* HH:MM[:SS], today */
        if (strlen(s) >= 5 && s[2] == ':') {
                if (!clock_part(&p, &tm) || *p)
                        return -EINVAL;
                return local_time(&tm, t);
        }
        /* YYYY-MM-DD... */
        if (strlen(s) >= 10 && s[4] == '-') {
                if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d))
                        return -EINVAL;
                if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31)
                        return -EINVAL;
                tm = (struct tm) { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d };
                if (!*p)
                        return local_time(&tm, t);
                if (*p != 'T' && *p != 't' && *p != ' ')
                        return -EINVAL;
                p++;
                if (!clock_part(&p, &tm))
                        return -EINVAL;
                if (!*p)
                        return local_time(&tm, t);
                /* an explicit offset: Z, +HH:MM[:SS], +HHMM, +HH; up to what a
                 * post can carry (24:59:59), as view --json prints it */
                int off = 0;
                if (*p == 'Z' || *p == 'z') {
                        p++;
                } else if (*p == '+' || *p == '-') {
                        int sign = *p++ == '-' ? -1 : 1, oh, om = 0, os = 0;
                        if (!digits(&p, 2, &oh))
                                return -EINVAL;
                        bool colon = *p == ':';
                        if (colon)
                                p++;
                        if (*p && !digits(&p, 2, &om))
                                return -EINVAL;
                        if (colon && *p == ':' && (p++, !digits(&p, 2, &os)))
                                return -EINVAL;
                        if (oh > 24 || om > 59 || os > 59)
                                return -EINVAL;
                        off = sign * (oh * 3600 + om * 60 + os);
                } else
                        return -EINVAL;
                if (*p)
                        return -EINVAL;
                struct tm want = tm;
                time_t r = timegm(&tm);
                if (r == (time_t) -1 || tm.tm_mday != want.tm_mday || tm.tm_mon != want.tm_mon)
                        return -EINVAL;
                *t = (int64_t) r - off;
                return 0;
        }
        return relative(s, now, t);
}
