/* SPDX-License-Identifier: MIT */
/*
 * test-presence — daemon/presence.c: a node's users are kept sorted and
 * once each, whatever order they come in; past DCHAT_PRESENCE_MAX they are
 * counted; they go through a PRESENCE frame and come back the same; what a
 * watcher is told changes with the state, the note and the users, not with
 * the seconds.
 */
#include <stdio.h>
#include <string.h>

#include "dchatd.h"
#include "tap.h"

static const char *names(const struct presence *ps)
{
        static char buf[4096];
        size_t off = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < ps->n && off < sizeof buf; i++)
                off += (size_t) snprintf(buf + off, sizeof buf - off, "%s%s:%u", i ? " " : "", ps->users[i].name,
                                         ps->users[i].kinds);
        return buf;
}

/* ps through a PRESENCE frame (encode, header, decode) into out */
static int through_frame(const struct presence *ps, const struct who_node *w, struct presence *out)
{
        struct wbuf users = {0}, frame = {0};
        struct dchat_msg m, d;
        uint8_t type;
        int r;

        presence_msg(ps, w, 0, &users, &m);
        r = proto_encode(&frame, &m);
        int n = r < 0 ? r : proto_check_header(frame.data, &type);
        if (n >= 0)
                r = proto_decode(type, frame.data + DCHAT_FRAME_HDR, (size_t) n, &d, NULL, NULL);
        else
                r = n;
        if (r == 0)
                r = presence_take(out, &d);
        wbuf_free(&users);
        wbuf_free(&frame);
        return r;
}

static void test_add(void)
{
        struct presence ps = {0};

        ok(!ps.known && ps.n == 0, "a new presence: nothing known");
        presence_add(&ps, "lucy", PRESENCE_FOLLOW);
        presence_add(&ps, "ann", PRESENCE_CHAT);
        presence_add(&ps, "bob", PRESENCE_CHAT);
        presence_add(&ps, "lucy", PRESENCE_CHAT);
        presence_add(&ps, "ann", PRESENCE_CHAT);
        presence_add(&ps, "an", PRESENCE_FOLLOW);
        ok(ps.known, "known once a user is added");
        is_str(names(&ps), "an:2 ann:1 bob:1 lucy:3", "sorted by name, each once, their kinds together");
        is_int(ps.more, 0, "none left out");

        struct presence big = {0};
        for (int i = DCHAT_PRESENCE_MAX + 5; i >= 0; i--) {
                char n[16];
                snprintf(n, sizeof n, "u%03d", i);
                presence_add(&big, n, PRESENCE_CHAT);
        }
        presence_add(&big, "u000", PRESENCE_FOLLOW);    /* one there already: not twice */
        is_int(big.n, DCHAT_PRESENCE_MAX + 6, "70 users, whatever the order they came in");
        bool sorted = true;
        for (unsigned i = 1; i < big.n; i++)
                sorted &= strcmp(big.users[i - 1].name, big.users[i].name) < 0;
        ok(sorted, "... sorted");
        is_int(big.users[0].kinds, PRESENCE_CHAT | PRESENCE_FOLLOW, "one added again gets its new kinds");

        struct presence copy = {0};
        is_int(presence_copy(&copy, &ps), 0, "copy");
        ok(presence_equal(&copy, &ps), "a copy is equal");
        presence_add(&copy, "zed", PRESENCE_CHAT);
        ok(!presence_equal(&copy, &ps), "one more user: not equal");
        presence_clear(&copy);
        presence_copy(&copy, &ps);
        copy.users[0].kinds = PRESENCE_CHAT;
        ok(!presence_equal(&copy, &ps), "another kind: not equal");
        presence_clear(&copy);
        struct presence none = {0}, empty = { .known = true };
        ok(!presence_equal(&none, &empty), "nothing known is not the same as nobody");
        presence_clear(&ps);
        ok(!ps.known && ps.n == 0 && !ps.users, "clear: nothing known, nothing held");
        presence_clear(&big);
}

static void test_frame(void)
{
        struct presence ps = {0}, out = {0}, big = {0};
        struct who_node w = { .name = "node2", .role = ROLE_PEER, .state = NODE_UP };

        presence_add(&ps, "ann", PRESENCE_CHAT);
        presence_add(&ps, "lucy", PRESENCE_CHAT | PRESENCE_FOLLOW);
        presence_add(&ps, "Ölaf", PRESENCE_FOLLOW);
        is_int(through_frame(&ps, &w, &out), 0, "through a PRESENCE frame");
        ok(presence_equal(&out, &ps), "... the same users come back (%s)", names(&out));
        struct presence empty = { .known = true };
        is_int(through_frame(&empty, &w, &out), 0, "nobody: through a frame");
        ok(out.known && out.n == 0, "... known, nobody");
        for (int i = DCHAT_PRESENCE_MAX + 2; i >= 0; i--) {
                char n[16];
                snprintf(n, sizeof n, "u%03d", i);
                presence_add(&big, n, PRESENCE_FOLLOW);
        }
        is_int(through_frame(&big, &w, &out), 0, "67 users: through a frame");
        ok(out.n == DCHAT_PRESENCE_MAX && out.more == 3 && !strcmp(out.users[0].name, "u000") &&
           !strcmp(out.users[DCHAT_PRESENCE_MAX - 1].name, "u063"),
           "... the first 64 by name listed (u000 to u063), 3 more counted");

        /* nothing known: the frame says so, and has no users */
        struct wbuf b = {0};
        struct dchat_msg m;
        presence_msg(NULL, &w, PRESENCE_END, &b, &m);
        ok(!(m.presence.flags & PRESENCE_USERS_KNOWN) && (m.presence.flags & PRESENCE_END) && m.presence.n == 0,
           "no users known: no USERS_KNOWN flag, no users, the flags asked for");
        presence_msg(&ps, &w, PRESENCE_SELF, &b, &m);
        ok(m.presence.flags == (PRESENCE_SELF | PRESENCE_USERS_KNOWN) && m.presence.n == 3 &&
           m.presence.state == NODE_UP && m.presence.role == ROLE_PEER, "users known: the flag, and each user");
        wbuf_free(&b);
        presence_clear(&ps);
        presence_clear(&out);
        presence_clear(&big);
}

static void test_digest(void)
{
        struct presence ps = {0}, other = {0};
        struct who_node w = { .name = "node2", .role = ROLE_PEER, .state = NODE_UP, .since = 5, .users = &ps };

        presence_add(&ps, "ann", PRESENCE_CHAT);
        uint64_t h = who_node_digest(&w);
        w.since = 500;
        is_int(who_node_digest(&w) == h, 1, "the seconds in a state change nothing a watcher is told");
        w.state = NODE_DOWN;
        ok(who_node_digest(&w) != h, "another state: told");
        w.state = NODE_UP;
        snprintf(w.note, sizeof w.note, "connection refused");
        ok(who_node_digest(&w) != h, "another note: told");
        w.note[0] = '\0';
        presence_copy(&other, &ps);
        presence_add(&other, "bob", PRESENCE_CHAT);
        w.users = &other;
        ok(who_node_digest(&w) != h, "another user: told");
        presence_clear(&other);
        presence_add(&other, "ann", PRESENCE_FOLLOW);
        ok(who_node_digest(&w) != h, "the same user, another kind: told");
        w.users = NULL;
        ok(who_node_digest(&w) != h, "users no longer known: told");
        w.users = &ps;
        is_int(who_node_digest(&w) == h, 1, "as it was: the same");
        presence_clear(&ps);
        presence_clear(&other);
}

int main(void)
{
        plan_no_plan();
        test_add();
        test_frame();
        test_digest();
        return done_testing();
}
