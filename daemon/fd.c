/* SPDX-License-Identifier: MIT */
/* fd.c — heartbeat failure detector; see fd.h.  Pure: no I/O, no clock. */
#include "fd.h"

static void emit(struct fd_events *out, enum fd_event_kind kind, unsigned peer, enum fd_state old,
                 enum fd_state new, uint64_t incarnation)
{
        if (out->n < sizeof out->e / sizeof out->e[0])
                out->e[out->n++] = (struct fd_event) { kind, peer, old, new, incarnation };
}

static void enter(struct fd *fd, unsigned peer, enum fd_state s, uint64_t now, struct fd_events *out)
{
        struct fd_peer *p = &fd->p[peer];
        if (p->state == s)
                return;
        emit(out, FD_STATE, peer, p->state, s, p->incarnation);
        p->state = s;
        p->since = now;
}

void fd_init(struct fd *fd, unsigned n, unsigned self, uint64_t suspect_after, uint64_t dead_after,
             uint64_t now)
{
        *fd = (struct fd) { .n = n, .self = self };
        fd_set_times(fd, suspect_after, dead_after);
        for (unsigned i = 0; i < n; i++)
                fd->p[i] = (struct fd_peer) { FD_ALIVE, now, now, 0 };
}

void fd_set_times(struct fd *fd, uint64_t suspect_after, uint64_t dead_after)
{
        fd->suspect_after = suspect_after;
        fd->dead_after = dead_after > suspect_after ? dead_after : suspect_after;
}

void fd_heard(struct fd *fd, unsigned peer, uint64_t incarnation, uint64_t now, struct fd_events *out)
{
        out->n = 0;
        if (peer >= fd->n || peer == fd->self)
                return;
        struct fd_peer *p = &fd->p[peer];
        /* An older incarnation is a ghost of a previous life (a frame still
         * in flight): it proves nothing about the living one. */
        if (incarnation && p->incarnation && incarnation < p->incarnation)
                return;
        if (incarnation && p->incarnation && incarnation > p->incarnation) {
                p->incarnation = incarnation;
                emit(out, FD_RESTARTED, peer, p->state, FD_ALIVE, incarnation);
        } else if (incarnation)
                p->incarnation = incarnation;
        if (now > p->last_heard)
                p->last_heard = now;
        enter(fd, peer, FD_ALIVE, now, out);
}

void fd_left(struct fd *fd, unsigned peer, uint64_t now)
{
        if (peer >= fd->n || peer == fd->self || fd->p[peer].state == FD_DEAD)
                return;
        fd->p[peer].state = FD_DEAD;
        fd->p[peer].since = now;
}

/* The state silence leads to from state cur: only ever further from ALIVE. */
static enum fd_state silence_state(enum fd_state cur, uint64_t silent, uint64_t suspect_after, uint64_t dead_after)
{
        if (silent >= dead_after)
                return FD_DEAD;
        if (silent >= suspect_after && cur == FD_ALIVE)
                return FD_SUSPECT;
        return cur;
}

void fd_tick(struct fd *fd, uint64_t now, struct fd_events *out)
{
        out->n = 0;
        for (unsigned i = 0; i < fd->n; i++) {
                struct fd_peer *p = &fd->p[i];
                if (i == fd->self || now < p->last_heard)
                        continue;
                enter(fd, i, silence_state(p->state, now - p->last_heard, fd->suspect_after, fd->dead_after), now, out);
        }
}

uint64_t fd_next_deadline(const struct fd *fd)
{
        uint64_t next = UINT64_MAX;

        for (unsigned i = 0; i < fd->n; i++) {
                const struct fd_peer *p = &fd->p[i];
                uint64_t t;
                if (i == fd->self || p->state == FD_DEAD)
                        continue;
                t = p->last_heard + (p->state == FD_ALIVE ? fd->suspect_after : fd->dead_after);
                if (t < next)
                        next = t;
        }
        return next;
}

const char *fd_state_name(enum fd_state s)
{
        switch (s) {
        case FD_ALIVE:
                return "alive";
        case FD_SUSPECT:
                return "suspect";
        case FD_DEAD:
                return "dead";
        }
        return "?";
}

void fd_link_init(struct fd_link *l, uint64_t now)
{
        *l = (struct fd_link) { FD_ALIVE, now };
}

bool fd_link_heard(struct fd_link *l, uint64_t now)
{
        bool changed = l->state != FD_ALIVE;
        if (now > l->last_heard)
                l->last_heard = now;
        l->state = FD_ALIVE;
        return changed;
}

bool fd_link_tick(struct fd_link *l, uint64_t now, uint64_t suspect_after, uint64_t dead_after)
{
        enum fd_state s;

        if (dead_after < suspect_after)
                dead_after = suspect_after;
        s = silence_state(l->state, fd_link_silent(l, now), suspect_after, dead_after);
        if (s == l->state)
                return false;
        l->state = s;
        return true;
}

uint64_t fd_link_silent(const struct fd_link *l, uint64_t now)
{
        return now > l->last_heard ? now - l->last_heard : 0;
}
