/* SPDX-License-Identifier: MIT */
/*
 * number.h — the numbers dchatctl takes on its command line, parsed
 * strictly.  strtoul() and strtod() would also take " 5", "+5", " -5" (as
 * 2^64 - 5), "0x10" and "1e1": here a number is plain decimal digits, with
 * nothing before or after.  Pure (no I/O).
 */
#pragma once

#include <stdint.h>

/* A count such as view -n N: digits only, min <= N <= max.  0 or -EINVAL / -ERANGE. */
int number_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *v);

/* A signed amount such as note incr's N: an optional '-', then digits; INT64_MIN..INT64_MAX.  0 or -EINVAL / -ERANGE. */
int number_parse_i64(const char *s, int64_t *v);

/*
 * Seconds as a decimal number with up to three decimals (milliseconds):
 * "5", "1.5", "0.25", "30.000"; at most max_ms.  Into *ms.  0 or -EINVAL /
 * -ERANGE.
 */
int number_parse_seconds_ms(const char *s, uint32_t max_ms, uint32_t *ms);
