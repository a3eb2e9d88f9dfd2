/* SPDX-License-Identifier: MIT */
/*
 * presence.c — who is in the room: a node's users (those with a chat or a
 * follow open on it), kept sorted by name so that each appears once, and
 * carried in PRESENCE frames.  No I/O: control.c builds the local set from
 * its clients, the roles keep the sets the other nodes send (mesh.c,
 * uplink.c, server.c), and control.c answers WHO with all of them.
 */
#include <stdio.h>
#include <string.h>

#include "dchatd.h"

void presence_clear(struct presence *ps)
{
        free(ps->users);
        *ps = (struct presence) {0};
}

int presence_add(struct presence *ps, const char *name, uint8_t kinds)
{
        unsigned lo = 0, hi = ps->n;

        ps->known = true;
        /* binary search: where name is, or goes */
        while (lo < hi) {
                unsigned mid = (lo + hi) / 2;
                int c = strcmp(ps->users[mid].name, name);
                if (c == 0) {
                        ps->users[mid].kinds |= kinds;
                        return 0;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (ps->n == ps->cap) {
                unsigned cap = ps->cap ? 2 * ps->cap : 8;
                struct presence_user *u = realloc(ps->users, cap * sizeof *u);
                if (!u)
                        return -ENOMEM;
                ps->users = u;
                ps->cap = cap;
        }
        memmove(ps->users + lo + 1, ps->users + lo, (ps->n - lo) * sizeof *ps->users);
        strlcpy(ps->users[lo].name, name, sizeof ps->users[lo].name);
        ps->users[lo].kinds = kinds;
        ps->n++;
        return 0;
}

int presence_take(struct presence *ps, const struct dchat_msg *m)
{
        struct presence n = { .known = true, .more = m->presence.more };
        struct rbuf r = { .p = m->presence.p, .len = m->presence.len };
        struct dchat_str name;
        uint8_t kinds;
        int k;

        while ((k = proto_presence_next(&r, &name, &kinds)) > 0) {
                char buf[DCHAT_NAME_MAX + 1];
                if (dchat_str_copy(buf, sizeof buf, name) < 0) {
                        presence_clear(&n);
                        return -EBADMSG;
                }
                int e = presence_add(&n, buf, kinds);
                if (e < 0) {
                        presence_clear(&n);
                        return e;
                }
        }
        if (k < 0) {
                presence_clear(&n);
                return -EBADMSG;
        }
        presence_clear(ps);
        *ps = n;
        return 0;
}

int presence_copy(struct presence *dst, const struct presence *src)
{
        struct presence n = { .known = src->known, .more = src->more };

        if (src->n) {
                n.users = malloc(src->n * sizeof *n.users);
                if (!n.users)
                        return -ENOMEM;
                memcpy(n.users, src->users, src->n * sizeof *n.users);
                n.n = n.cap = src->n;
        }
        presence_clear(dst);
        *dst = n;
        return 0;
}

bool presence_equal(const struct presence *a, const struct presence *b)
{
        if (a->known != b->known || a->n != b->n || a->more != b->more)
                return false;
        for (unsigned i = 0; i < a->n; i++)
                if (a->users[i].kinds != b->users[i].kinds || strcmp(a->users[i].name, b->users[i].name))
                        return false;
        return true;
}

void presence_msg(const struct presence *ps, const struct who_node *w, uint8_t flags, struct wbuf *b,
                  struct dchat_msg *m)
{
        const struct presence *u = ps && ps->known ? ps : NULL;
        /* a bounded frame: the first users by name, the rest counted */
        unsigned n = u ? (u->n < DCHAT_PRESENCE_MAX ? u->n : DCHAT_PRESENCE_MAX) : 0;
        unsigned more = u ? u->more + (u->n - n) : 0;

        wbuf_reset(b);
        for (unsigned i = 0; i < n; i++)
                proto_presence_put(b, u->users[i].name, u->users[i].kinds);
        *m = (struct dchat_msg) { .type = MSG_PRESENCE };
        m->presence.node = (struct dchat_str) { w->name, (uint16_t) strlen(w->name) };
        m->presence.role = w->role;
        m->presence.state = w->state;
        m->presence.flags = (uint8_t) (flags | (u ? PRESENCE_USERS_KNOWN : 0));
        m->presence.since = w->since;
        m->presence.note = (struct dchat_str) { w->note, (uint16_t) strlen(w->note) };
        m->presence.more = (uint16_t) (more > UINT16_MAX ? UINT16_MAX : more);
        m->presence.n = (uint16_t) n;
        m->presence.p = b->data;
        m->presence.len = b->len;
}

uint64_t who_node_digest(const struct who_node *w)
{
        uint64_t h = UINT64_C(14695981039346656037);
#define MIX(byte) (h = (h ^ (uint8_t) (byte)) * UINT64_C(1099511628211))
        MIX(w->state);
        MIX(w->users && w->users->known);
        for (const char *s = w->note; *s; s++)
                MIX(*s);
        MIX(0);
        for (unsigned i = 0; w->users && w->users->known && i < w->users->n; i++) {
                for (const char *s = w->users->users[i].name; *s; s++)
                        MIX(*s);
                MIX(0);
                MIX(w->users->users[i].kinds);
        }
        if (w->users)
                for (unsigned v = w->users->more, k = 0; k < 4; k++, v >>= 8)
                        MIX(v);
#undef MIX
        return h;
}
