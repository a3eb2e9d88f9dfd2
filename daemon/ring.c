/* SPDX-License-Identifier: MIT */
/*
 * ring.c — a peer's recent protocol events, in memory, bounded: the last
 * trace_events events, oldest overwritten first.  `dchatctl trace` reads
 * them page by page (TRACE_EVENTS).  Pure: no I/O, no time; one allocation
 * of capacity records, each a fixed part and the event's vector clock, so
 * its memory is capacity x (RING_FIXED + 8 x peers) bytes and no more.
 */
#include <string.h>

#include "dchatd.h"

/* The fixed part of a record; the vector clock's n_peers u64 follow it. */
struct ring_rec {
        uint64_t no, time_us, lamport, request_ts, fence, seq, send_vt;
        uint32_t fence_idx;
        uint8_t kind, peer, has_vc, pad;
};
#define RING_FIXED sizeof(struct ring_rec)

struct ring {
        unsigned capacity, n_peers;
        size_t rec_size;
        unsigned head, count;           /* oldest record, records held */
        uint8_t *recs;
};

int ring_new(unsigned capacity, unsigned n_peers, struct ring **ret)
{
        struct ring *r = calloc(1, sizeof *r);

        if (!r)
                return -ENOMEM;
        r->n_peers = n_peers;
        r->rec_size = RING_FIXED + (size_t) n_peers * sizeof(uint64_t);
        int e = ring_resize(r, capacity);
        if (e < 0) {
                free(r);
                return e;
        }
        *ret = r;
        return 0;
}

struct ring *ring_free(struct ring *r)
{
        if (r) {
                free(r->recs);
                free(r);
        }
        return NULL;
}

static uint8_t *rec_at(const struct ring *r, unsigned i)
{
        return r->recs + (size_t) ((r->head + i) % r->capacity) * r->rec_size;
}

int ring_resize(struct ring *r, unsigned capacity)
{
        if (capacity == r->capacity)
                return 0;
        uint8_t *recs = NULL;
        if (capacity) {
                /* calloc: pages are touched only as events come, so the memory shown grows with them */
                recs = calloc(capacity, r->rec_size);
                if (!recs)
                        return -ENOMEM;
        }
        unsigned keep = r->count < capacity ? r->count : capacity;
        for (unsigned i = 0; i < keep; i++)
                memcpy(recs + (size_t) i * r->rec_size, rec_at(r, r->count - keep + i), r->rec_size);
        free(r->recs);
        r->recs = recs;
        r->capacity = capacity;
        r->head = 0;
        r->count = keep;
        return 0;
}

void ring_add(struct ring *r, const struct dchat_trace_event *e)
{
        if (!r || !r->capacity)
                return;
        uint8_t *p;
        if (r->count < r->capacity)
                p = rec_at(r, r->count++);
        else {
                p = rec_at(r, 0);
                r->head = (r->head + 1) % r->capacity;
        }
        struct ring_rec rec = {
                .no = e->no, .time_us = e->time_us, .lamport = e->lamport, .request_ts = e->request_ts,
                .fence = e->fence, .seq = e->seq, .send_vt = e->send_vt, .fence_idx = e->fence_idx,
                .kind = e->kind, .peer = e->peer, .has_vc = e->vc.n == r->n_peers && r->n_peers,
        };
        memcpy(p, &rec, sizeof rec);
        memcpy(p + RING_FIXED, e->vc.c, rec.has_vc ? r->n_peers * sizeof(uint64_t) : 0);
}

static void rec_get(const struct ring *r, unsigned i, struct dchat_trace_event *e)
{
        const uint8_t *p = rec_at(r, i);
        struct ring_rec rec;

        memcpy(&rec, p, sizeof rec);
        *e = (struct dchat_trace_event) {
                .no = rec.no, .time_us = rec.time_us, .kind = rec.kind, .peer = rec.peer, .lamport = rec.lamport,
                .request_ts = rec.request_ts, .fence = rec.fence, .fence_idx = rec.fence_idx, .seq = rec.seq,
                .send_vt = rec.send_vt,
        };
        e->vc.n = rec.has_vc ? (uint16_t) r->n_peers : 0;
        memcpy(e->vc.c, p + RING_FIXED, rec.has_vc ? r->n_peers * sizeof(uint64_t) : 0);
}

static uint64_t rec_no(const struct ring *r, unsigned i)
{
        uint64_t no;
        memcpy(&no, rec_at(r, i), sizeof no);
        return no;
}

unsigned ring_count(const struct ring *r)
{
        return r ? r->count : 0;
}

unsigned ring_capacity(const struct ring *r)
{
        return r ? r->capacity : 0;
}

uint64_t ring_bytes(const struct ring *r)
{
        return r ? sizeof *r + (uint64_t) r->capacity * r->rec_size : 0;
}

uint64_t ring_first_no(const struct ring *r)
{
        return r && r->count ? rec_no(r, 0) : 0;
}

uint64_t ring_last_no(const struct ring *r)
{
        return r && r->count ? rec_no(r, r->count - 1) : 0;
}

void ring_page(const struct ring *r, uint64_t from, uint64_t upto, uint64_t since, uint64_t until, size_t max,
               struct wbuf *b, uint16_t *n, uint64_t *next, bool *done)
{
        struct dchat_trace_event e;
        unsigned lo = 0, hi = ring_count(r);

        *n = 0;
        *next = from;
        *done = true;
        /* numbers grow through the ring: the first one at or after from */
        while (lo < hi) {
                unsigned mid = lo + (hi - lo) / 2;
                if (rec_no(r, mid) < from)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        size_t start = b->len;
        for (unsigned i = lo; i < ring_count(r); i++) {
                rec_get(r, i, &e);
                if (upto && e.no > upto)
                        break;
                *next = e.no + 1;
                if ((since && e.time_us < since) || (until && e.time_us > until))
                        continue;
                size_t before = b->len;
                proto_trace_put(b, &e);
                if (b->len - start > max || *n == UINT16_MAX) {
                        b->len = before;
                        *next = e.no;
                        *done = false;
                        return;
                }
                (*n)++;
        }
}
