/* SPDX-License-Identifier: MIT */
/*
 * tap.h — a tiny header-only TAP (Test Anything Protocol) producer for the
 * unit tests.  One test program = one .c file that includes this header.
 *
 *      int main(void) {
 *              plan_no_plan();
 *              ok(x > 0, "x is positive (%d)", x);
 *              is_int(f(2), 4, "f(2)");
 *              is_str(name, "node1", "the name");
 *              diag("some detail: %s", why);
 *              return done_testing();
 *      }
 *
 * Prints "ok N - name" or "not ok N - name", diagnostics as "# ..." (on
 * stdout, so they stay in order), and the plan "1..N" at the end.
 * ok(), is_int() and is_str() return whether the test passed; the name is a
 * printf format (write "%s", s for a name held in a variable).
 * done_testing() returns the exit code: 0 if every test passed (and as many
 * ran as plan(n) said), 1 otherwise.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static struct {
        unsigned run, failed;
        long planned;           /* -1: no plan */
} tap_state = { 0, 0, -1 };

__attribute__((unused))
static void plan_no_plan(void) {
        tap_state.planned = -1;
        setvbuf(stdout, NULL, _IOLBF, 0);
}

__attribute__((unused))
static void plan(unsigned n) {
        tap_state.planned = n;
        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("1..%u\n", n);
}

__attribute__((unused, format(printf, 1, 2)))
static void diag(const char *fmt, ...) {
        va_list ap;

        fputs("# ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
}

__attribute__((unused, format(printf, 4, 0)))
static bool tap_vok(bool pass, const char *file, int line, const char *fmt, va_list ap) {
        tap_state.run++;
        if (!pass)
                tap_state.failed++;

        printf("%sok %u - ", pass ? "" : "not ", tap_state.run);
        vprintf(fmt, ap);
        fputc('\n', stdout);
        if (!pass)
                printf("#   Failed test at %s line %d.\n", file, line);
        return pass;
}

__attribute__((unused, format(printf, 4, 5)))
static bool tap_ok(bool pass, const char *file, int line, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        tap_vok(pass, file, line, fmt, ap);
        va_end(ap);
        return pass;
}

__attribute__((unused, format(printf, 5, 6)))
static bool tap_is_int(long long got, long long want, const char *file, int line, const char *fmt, ...) {
        bool pass = got == want;
        va_list ap;

        va_start(ap, fmt);
        tap_vok(pass, file, line, fmt, ap);
        va_end(ap);
        if (!pass) {
                printf("#          got: %lld\n", got);
                printf("#     expected: %lld\n", want);
        }
        return pass;
}

__attribute__((unused, format(printf, 5, 6)))
static bool tap_is_str(const char *got, const char *want, const char *file, int line, const char *fmt, ...) {
        bool pass = (!got && !want) || (got && want && strcmp(got, want) == 0);
        va_list ap;

        va_start(ap, fmt);
        tap_vok(pass, file, line, fmt, ap);
        va_end(ap);
        if (!pass) {
                if (got)
                        printf("#          got: '%s'\n", got);
                else
                        printf("#          got: NULL\n");
                if (want)
                        printf("#     expected: '%s'\n", want);
                else
                        printf("#     expected: NULL\n");
        }
        return pass;
}

__attribute__((unused))
static int done_testing(void) {
        if (tap_state.planned < 0)
                printf("1..%u\n", tap_state.run);
        else if ((long) tap_state.run != tap_state.planned) {
                printf("# Planned %ld tests but ran %u.\n", tap_state.planned, tap_state.run);
                return 1;
        }
        if (tap_state.failed > 0)
                printf("# Failed %u of %u tests.\n", tap_state.failed, tap_state.run);
        fflush(stdout);
        return tap_state.failed > 0 ? 1 : 0;
}

#define ok(cond, ...)           tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_int(got, want, ...)  tap_is_int((long long) (got), (long long) (want), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, ...)  tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)
