/* SPDX-License-Identifier: MIT */
/*
 * test-vclock — vector clocks (daemon/vclock.c): tick, merge, the causal
 * order (before, after, equal, concurrent) with clocks of unequal length,
 * saturation at DCHAT_CLOCK_MAX; their wire form (proto.c): varints at
 * every length boundary, and every malformed input refused (a count over
 * DCHAT_PEERS_MAX, truncation, an over-long or overflowing varint, a value
 * over DCHAT_CLOCK_MAX); the formats for messages.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vclock.h"
#include "tap.h"

#define ELEMENTS(x) (sizeof(x) / sizeof((x)[0]))

static struct vclock mk(unsigned n, const uint64_t *c)
{
        struct vclock v;

        vclock_init(&v, n);
        for (unsigned i = 0; i < n; i++)
                v.c[i] = c[i];
        return v;
}

static void test_order(void)
{
        struct vclock a = mk(3, (uint64_t[]) { 1, 0, 0 }), b = mk(3, (uint64_t[]) { 1, 2, 0 });
        struct vclock c = mk(3, (uint64_t[]) { 0, 0, 1 });

        is_int(vclock_compare(&a, &b), VCLOCK_BEFORE, "{1,0,0} -> {1,2,0}");
        is_int(vclock_compare(&b, &a), VCLOCK_AFTER, "{1,2,0} after {1,0,0}");
        is_int(vclock_compare(&a, &a), VCLOCK_EQUAL, "a clock equals itself");
        is_int(vclock_compare(&b, &c), VCLOCK_CONCURRENT, "{1,2,0} || {0,0,1}");
        ok(vclock_before(&a, &b) && !vclock_before(&b, &a) && !vclock_before(&a, &a), "vclock_before is strict");
        struct vclock s = mk(2, (uint64_t[]) { 1, 0 });
        is_int(vclock_compare(&s, &b), VCLOCK_BEFORE, "a shorter clock: its missing components count as 0");
        is_int(vclock_compare(&c, &s), VCLOCK_CONCURRENT, "... either way");
        is_str(vclock_order_name(VCLOCK_CONCURRENT), "concurrent", "order names");

        /* the receive rule */
        struct vclock m = c;
        vclock_merge(&m, &b);
        ok(m.c[0] == 1 && m.c[1] == 2 && m.c[2] == 1 && m.n == 3, "merge: the greater of each component");
        vclock_tick(&m, 2);
        ok(vclock_before(&b, &m) && vclock_before(&c, &m), "merge then tick: after both");
        struct vclock big = mk(5, (uint64_t[]) { 9, 9, 9, 9, 9 });
        vclock_merge(&m, &big);
        ok(m.n == 3 && m.c[2] == 9, "merge: components beyond the receiver's are ignored");

        struct vclock t = mk(2, (uint64_t[]) { DCHAT_CLOCK_MAX - 1, 0 });
        is_int(vclock_tick(&t, 0), DCHAT_CLOCK_MAX, "tick up to DCHAT_CLOCK_MAX");
        is_int(vclock_tick(&t, 0), DCHAT_CLOCK_MAX, "... and no further (never past what receivers take)");
        is_int(vclock_tick(&t, 7), 0, "tick of a component it has not: nothing");
        struct vclock z;
        vclock_init(&z, 100);
        is_int(z.n, DCHAT_PEERS_MAX, "init: at most DCHAT_PEERS_MAX components");
}

static bool round_trip(const struct vclock *v, size_t *len)
{
        struct wbuf b = {0};
        struct vclock got;

        proto_put_vclock(&b, v);
        struct rbuf r = { .p = b.data, .len = b.len };
        bool good = proto_get_vclock(&r, &got) == 0 && r.off == r.len && got.n == v->n &&
                    memcmp(got.c, v->c, v->n * sizeof v->c[0]) == 0;
        *len = b.len;
        wbuf_free(&b);
        return good;
}

static int decode(const uint8_t *p, size_t n, struct vclock *v)
{
        struct rbuf r = { .p = p, .len = n };
        int e = proto_get_vclock(&r, v);
        return e < 0 ? e : r.off == r.len ? 0 : -1;
}

static void test_wire(void)
{
        static const struct { uint64_t v; size_t bytes; } sizes[] = {
                { 0, 1 }, { 1, 1 }, { 127, 1 }, { 128, 2 }, { 16383, 2 }, { 16384, 3 },
                { UINT64_C(1) << 35, 6 }, { DCHAT_CLOCK_MAX, 9 },
        };
        size_t len;

        for (size_t i = 0; i < ELEMENTS(sizes); i++) {
                struct vclock v = mk(1, &sizes[i].v);
                ok(round_trip(&v, &len) && len == 1 + sizes[i].bytes, "varint %" PRIu64 ": %zu byte(s), round trip",
                   sizes[i].v, sizes[i].bytes);
        }
        struct vclock e;
        vclock_init(&e, 0);
        ok(round_trip(&e, &len) && len == 1, "an empty clock is one byte (an entry of an older log)");
        struct vclock full;
        vclock_init(&full, DCHAT_PEERS_MAX);
        for (unsigned i = 0; i < DCHAT_PEERS_MAX; i++)
                full.c[i] = (uint64_t) i * 1000003;
        ok(round_trip(&full, &len), "64 components round-trip (%zu bytes)", len);
        uint64_t three[] = { 5, 300, 1000000000001 };
        struct vclock t = mk(3, three);
        ok(round_trip(&t, &len) && len == 1 + 1 + 2 + 6, "{5,300,10^12+1}: %zu bytes, not 1 + 3 x 8", len);

        struct vclock v;
        is_int(decode((const uint8_t[]) { 65 }, 1, &v), -EBADMSG, "refused: 65 components (DCHAT_PEERS_MAX 64)");
        is_int(decode((const uint8_t[]) { 255 }, 1, &v), -EBADMSG, "refused: 255 components");
        is_int(decode((const uint8_t[]) { 2, 1 }, 2, &v), -EBADMSG, "refused: fewer components than it says");
        is_int(decode((const uint8_t[]) { 1, 0x80 }, 2, &v), -EBADMSG, "refused: a varint cut short");
        is_int(decode((const uint8_t[]) { 0 }, 0, &v), -EBADMSG, "refused: nothing at all");
        is_int(decode((const uint8_t[]) { 1, 0x80, 0x00 }, 3, &v), -EBADMSG, "refused: 0 in two bytes (not the shortest form)");
        is_int(decode((const uint8_t[]) { 1, 0xff, 0x80, 0x00 }, 4, &v), -EBADMSG, "refused: a trailing zero byte");
        is_int(decode((const uint8_t[]) { 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 }, 11, &v),
               -EBADMSG, "refused: 2^64 - 1, over DCHAT_CLOCK_MAX");
        is_int(decode((const uint8_t[]) { 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 }, 11, &v),
               -EBADMSG, "refused: over 64 bits");
        is_int(decode((const uint8_t[]) { 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01 }, 12,
                      &v), -EBADMSG, "refused: eleven bytes");
        uint8_t over[10];
        struct wbuf b = {0};
        wbuf_put_varint(&b, DCHAT_CLOCK_MAX + 1);
        over[0] = 1;
        memcpy(over + 1, b.data, b.len);
        is_int(decode(over, 1 + b.len, &v), -EBADMSG, "refused: DCHAT_CLOCK_MAX + 1");
        wbuf_free(&b);
        is_int(decode((const uint8_t[]) { 2, 0x81, 0x01, 0x05 }, 4, &v), 0, "a good one: {129, 5}");
        ok(v.n == 2 && v.c[0] == 129 && v.c[1] == 5, "... decoded");
}

static void test_format(void)
{
        static const char *const names[] = { "node1", "node2", "node3" };
        struct vclock v = mk(3, (uint64_t[]) { 3, 0, 12 });
        char buf[64];

        vclock_format(buf, sizeof buf, &v, names, false);
        is_str(buf, "node1:3,node2:0,node3:12", "for a stderr line");
        vclock_format(buf, sizeof buf, &v, names, true);
        is_str(buf, "{\"node1\":3,\"node2\":0,\"node3\":12}", "JSON (DCHAT_VCLOCK, ShiViz)");
        vclock_format(buf, sizeof buf, &v, NULL, true);
        is_str(buf, "[3,0,12]", "JSON without names");
        size_t need = vclock_format(buf, 8, &v, names, false);
        ok(need == strlen("node1:3,node2:0,node3:12") && strlen(buf) == 7, "cut to fit; the length needed returned");
}

int main(void)
{
        plan_no_plan();
        test_order();
        test_wire();
        test_format();
        return done_testing();
}
