/* SPDX-License-Identifier: MIT */
/*
 * since.h — `dchatctl view --since TIME`: TIME as text to seconds since the
 * epoch.  Pure (no I/O); the local time zone is the process's.
 */
#pragma once

#include <stdint.h>
#include <time.h>

/*
 * Accepted (see dchatctl(1)):
 *   @SECONDS                      seconds since the epoch
 *   N{s,m,h,d,w}                  that long before now (10m, 2h, 3d; also "10 min", "2 hours")
 *   now, today, yesterday         today and yesterday are at 00:00 local time
 *   HH:MM[:SS]                    today, local time
 *   YYYY-MM-DD                    00:00 local time
 *   YYYY-MM-DD{T| }HH:MM[:SS]     local time, or with Z or ±HH:MM[:SS] / ±HHMM the given offset
 *                                 (up to 24:59:59, as view --json prints it)
 * Returns 0 and *t, or -EINVAL.
 */
int since_parse(const char *s, time_t now, int64_t *t);
