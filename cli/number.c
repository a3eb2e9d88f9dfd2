/* SPDX-License-Identifier: MIT */
/*
 * number.c — strict decimal numbers for dchatctl's options (see number.h).
 */
#include <errno.h>
#include <stdbool.h>

#include "number.h"

static int is_digit(char c)
{
        return c >= '0' && c <= '9';
}

int number_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
        uint64_t n = 0;

        if (!s || !is_digit(*s))
                return -EINVAL;
        for (; is_digit(*s); s++) {
                unsigned d = (unsigned) (*s - '0');
                if (n > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                n = n * 10 + d;
        }
        if (*s)
                return -EINVAL;
        if (n < min || n > max)
                return -ERANGE;
        *v = n;
        return 0;
}

int number_parse_i64(const char *s, int64_t *v)
{
        bool neg = s && *s == '-';
        uint64_t n;
        int r;

        /* the magnitude as a count: digits only, so "--5", "-+5" and "- 5" stay refused */
        if (!s || (r = number_parse_u64(s + neg, 0, neg ? (uint64_t) INT64_MAX + 1 : INT64_MAX, &n)) < 0)
                return s ? r : -EINVAL;
        *v = !neg ? (int64_t) n : n == (uint64_t) INT64_MAX + 1 ? INT64_MIN : -(int64_t) n;
        return 0;
}

int number_parse_seconds_ms(const char *s, uint32_t max_ms, uint32_t *ms)
{
        uint64_t whole = 0, frac = 0;
        int decimals = 0;

        if (!s || !is_digit(*s))
                return -EINVAL;
        for (; is_digit(*s); s++) {
                whole = whole * 10 + (uint64_t) (*s - '0');
                if (whole > UINT32_MAX)
                        return -ERANGE;
        }
        if (*s == '.') {
                s++;
                if (!is_digit(*s))
                        return -EINVAL;         /* "5." */
                for (; is_digit(*s); s++, decimals++) {
                        if (decimals == 3)
                                return -EINVAL; /* finer than a millisecond */
                        frac = frac * 10 + (uint64_t) (*s - '0');
                }
                for (int i = decimals; i < 3; i++)
                        frac *= 10;
        }
        if (*s)
                return -EINVAL;
        uint64_t total = whole * 1000 + frac;
        if (total > max_ms)
                return -ERANGE;
        *ms = (uint32_t) total;
        return 0;
}
