/* SPDX-License-Identifier: MIT */
/*
 * test-number.c — dchatctl's strict numbers (cli/number.c): plain decimal
 * digits only.  What strtoul() and strtod() would also have taken — spaces,
 * signs, hex, exponents, "-5" read as 2^64 - 5 — is refused.
 */
#include <errno.h>
#include <stdint.h>

#include "tap.h"
#include "../../cli/number.c"

static void test_u64(void)
{
        uint64_t v = 42;

        ok(number_parse_u64("5", 1, UINT64_MAX, &v) == 0 && v == 5, "u64: 5");
        ok(number_parse_u64("0", 0, 10, &v) == 0 && v == 0, "u64: 0 where 0 is allowed");
        ok(number_parse_u64("007", 1, 10, &v) == 0 && v == 7, "u64: leading zeros are still decimal (007 = 7, not octal)");
        ok(number_parse_u64("18446744073709551615", 0, UINT64_MAX, &v) == 0 && v == UINT64_MAX, "u64: 2^64 - 1");
        v = 42;
        is_int(number_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE, "u64: 2^64 overflows");
        is_int(number_parse_u64("0", 1, 10, &v), -ERANGE, "u64: below the minimum");
        is_int(number_parse_u64("11", 1, 10, &v), -ERANGE, "u64: above the maximum");
        static const char *const bad[] = { "", " 5", "5 ", "+5", "-5", " -5", "0x10", "0X10", "1e3", "5.0",
                                           "5abc", "abc", "\t5", "٥" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                is_int(number_parse_u64(bad[i], 0, UINT64_MAX, &v), -EINVAL, "u64: '%s' is refused", bad[i]);
        is_int((int) v, 42, "u64: a refused number leaves the result alone");
        is_int(number_parse_u64(NULL, 0, 1, &v), -EINVAL, "u64: NULL");
}

static void test_i64(void)
{
        int64_t v = 42;

        ok(number_parse_i64("5", &v) == 0 && v == 5, "i64: 5");
        ok(number_parse_i64("-5", &v) == 0 && v == -5, "i64: -5");
        ok(number_parse_i64("0", &v) == 0 && v == 0, "i64: 0");
        ok(number_parse_i64("-0", &v) == 0 && v == 0, "i64: -0 is 0");
        ok(number_parse_i64("9223372036854775807", &v) == 0 && v == INT64_MAX, "i64: 2^63 - 1");
        ok(number_parse_i64("-9223372036854775808", &v) == 0 && v == INT64_MIN, "i64: -2^63");
        v = 42;
        is_int(number_parse_i64("9223372036854775808", &v), -ERANGE, "i64: 2^63 overflows");
        is_int(number_parse_i64("-9223372036854775809", &v), -ERANGE, "i64: -2^63 - 1 overflows");
        is_int(number_parse_i64("99999999999999999999999", &v), -ERANGE, "i64: beyond 2^64 overflows");
        static const char *const bad[] = { "", "-", "--5", "+5", "-+5", "- 5", " 5", "5 ", " -5", "0x10", "-0x10",
                                           "1e3", "5.0", "-5.5", "5abc", "abc", "\t5", "١" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                is_int(number_parse_i64(bad[i], &v), -EINVAL, "i64: '%s' is refused", bad[i]);
        is_int((int) v, 42, "i64: a refused number leaves the result alone");
        is_int(number_parse_i64(NULL, &v), -EINVAL, "i64: NULL");
}

static void test_seconds(void)
{
        uint32_t ms = 7;

        ok(number_parse_seconds_ms("5", 30000, &ms) == 0 && ms == 5000, "seconds: 5 = 5000 ms");
        ok(number_parse_seconds_ms("0", 30000, &ms) == 0 && ms == 0, "seconds: 0");
        ok(number_parse_seconds_ms("1.5", 30000, &ms) == 0 && ms == 1500, "seconds: 1.5 = 1500 ms");
        ok(number_parse_seconds_ms("0.25", 30000, &ms) == 0 && ms == 250, "seconds: 0.25 = 250 ms");
        ok(number_parse_seconds_ms("0.001", 30000, &ms) == 0 && ms == 1, "seconds: 0.001 = 1 ms");
        ok(number_parse_seconds_ms("30", 30000, &ms) == 0 && ms == 30000, "seconds: 30 = the maximum");
        ok(number_parse_seconds_ms("30.000", 30000, &ms) == 0 && ms == 30000, "seconds: 30.000");
        ok(number_parse_seconds_ms("010", 30000, &ms) == 0 && ms == 10000, "seconds: 010 is ten, not eight");
        ms = 7;
        is_int(number_parse_seconds_ms("30.001", 30000, &ms), -ERANGE, "seconds: 30.001 is over 30 s");
        is_int(number_parse_seconds_ms("99", 30000, &ms), -ERANGE, "seconds: 99 is over 30 s");
        is_int(number_parse_seconds_ms("99999999999999999999", 30000, &ms), -ERANGE, "seconds: a huge number");
        static const char *const bad[] = { "", "0x10", "0X1p4", "1e1", "inf", "nan", "+5", "-0", " 5", "5 ",
                                           ".5", "5.", "1.2345", "1,5", "1.5s", "5s" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                is_int(number_parse_seconds_ms(bad[i], 30000, &ms), -EINVAL, "seconds: '%s' is refused", bad[i]);
        is_int((int) ms, 7, "seconds: a refused number leaves the result alone");
}

int main(void)
{
        plan_no_plan();
        test_u64();
        test_i64();
        test_seconds();
        return done_testing();
}
