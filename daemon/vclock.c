/* SPDX-License-Identifier: MIT */
/* vclock.c — vector clocks (vclock.h): pure, like ra.c. */
#include <stdio.h>
#include <string.h>

#include "vclock.h"

void vclock_init(struct vclock *v, unsigned n)
{
        v->n = (uint16_t) (n < DCHAT_PEERS_MAX ? n : DCHAT_PEERS_MAX);
        memset(v->c, 0, sizeof v->c);
}

uint64_t vclock_tick(struct vclock *v, unsigned self)
{
        if (self >= v->n)
                return 0;
        /* the bound every receiver checks (proto.h): never past it, never wrapping */
        if (v->c[self] < DCHAT_CLOCK_MAX)
                v->c[self]++;
        return v->c[self];
}

void vclock_merge(struct vclock *v, const struct vclock *w)
{
        unsigned n = v->n < w->n ? v->n : w->n;

        for (unsigned i = 0; i < n; i++)
                if (w->c[i] > v->c[i])
                        v->c[i] = w->c[i];
}

enum vclock_order vclock_compare(const struct vclock *a, const struct vclock *b)
{
        unsigned n = a->n > b->n ? a->n : b->n;
        bool less = false, greater = false;

        for (unsigned i = 0; i < n; i++) {
                uint64_t x = i < a->n ? a->c[i] : 0, y = i < b->n ? b->c[i] : 0;
                if (x < y)
                        less = true;
                else if (x > y)
                        greater = true;
        }
        if (less && greater)
                return VCLOCK_CONCURRENT;
        if (less)
                return VCLOCK_BEFORE;
        if (greater)
                return VCLOCK_AFTER;
        return VCLOCK_EQUAL;
}

bool vclock_before(const struct vclock *a, const struct vclock *b)
{
        return vclock_compare(a, b) == VCLOCK_BEFORE;
}

const char *vclock_order_name(enum vclock_order o)
{
        switch (o) {
        case VCLOCK_EQUAL:
                return "equal";
        case VCLOCK_BEFORE:
                return "before";
        case VCLOCK_AFTER:
                return "after";
        case VCLOCK_CONCURRENT:
                return "concurrent";
        }
        return "?";
}

size_t vclock_format(char *buf, size_t cap, const struct vclock *v, const char *const *names, bool json)
{
        size_t off = 0;

#define PUT(...) do { \
                int _w = snprintf(off < cap ? buf + off : NULL, off < cap ? cap - off : 0, __VA_ARGS__); \
                off += _w > 0 ? (size_t) _w : 0; \
        } while (0)
        if (cap)
                buf[0] = '\0';
        if (json)
                PUT("%c", names ? '{' : '[');
        for (unsigned i = 0; i < v->n; i++) {
                const char *sep = i ? "," : "";
                if (names && json)
                        PUT("%s\"%s\":%llu", sep, names[i], (unsigned long long) v->c[i]);
                else if (names)
                        PUT("%s%s:%llu", sep, names[i], (unsigned long long) v->c[i]);
                else
                        PUT("%s%llu", sep, (unsigned long long) v->c[i]);
        }
        if (json)
                PUT("%c", names ? '}' : ']');
#undef PUT
        return off;
}
