/* SPDX-License-Identifier: MIT */
/*
 * test-join — a server's decision at its start (join_decide: bootstrap,
 * join, wait, start, refuse) from what the other servers answered, and
 * the group id a configuration gives (group_boot_id) and its file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dchatd.h"
#include "key.h"
#include "tap.h"

static uint8_t A[DCHAT_GROUP_ID_BYTES], B[DCHAT_GROUP_ID_BYTES], BOOT[DCHAT_GROUP_ID_BYTES];

static struct join_answer state(const char *name, const uint8_t *group, uint8_t role, uint64_t last_index)
{
        struct join_answer a = { .kind = JOIN_ANSWER_STATE, .your_role = role, .last_index = last_index };
        snprintf(a.name, sizeof a.name, "%s", name);
        memcpy(a.group_id, group, DCHAT_GROUP_ID_BYTES);
        return a;
}

static struct join_answer empty(const char *name, const uint8_t *boot)
{
        struct join_answer a = { .kind = JOIN_ANSWER_EMPTY };
        snprintf(a.name, sizeof a.name, "%s", name);
        memcpy(a.boot_id, boot, DCHAT_GROUP_ID_BYTES);
        return a;
}

static struct join_answer none(const char *name)
{
        struct join_answer a = { .kind = JOIN_ANSWER_NONE };
        snprintf(a.name, sizeof a.name, "%s", name);
        return a;
}

/* The decision of a server without state among n_servers, given the others' answers. */
static enum join_decision decide(unsigned n_servers, const struct join_answer *answers, unsigned n,
                                 struct join_result *res)
{
        struct join_input in = { .n_servers = n_servers, .self = "me", .n = n, .answers = answers };
        memcpy(in.boot_id, BOOT, sizeof BOOT);
        return join_decide(&in, res);
}

/* The decision of a server that holds state of group `mine`. */
static enum join_decision decide_with_state(unsigned n_servers, const uint8_t *mine, const struct join_answer *answers,
                                            unsigned n, struct join_result *res)
{
        struct join_input in = { .n_servers = n_servers, .self = "me", .have_state = true, .n = n, .answers = answers };
        memcpy(in.boot_id, BOOT, sizeof BOOT);
        memcpy(in.group_id, mine, DCHAT_GROUP_ID_BYTES);
        return join_decide(&in, res);
}

static void test_empty_directory(void)
{
        struct join_result r;

        /* a fresh group of three */
        struct join_answer fresh[] = { empty("s2", BOOT), empty("s3", BOOT) };
        is_int(decide(3, fresh, 2, &r), JOIN_BOOTSTRAP, "3 servers, the two others empty with the same servers: bootstrap");
        ok(!memcmp(r.group_id, BOOT, sizeof BOOT), "... the group's id is the boot id");
        struct join_answer half[] = { empty("s2", BOOT), none("s3") };
        is_int(decide(3, half, 2, &r), JOIN_BOOTSTRAP, "3 servers, one other empty, one silent: 2 of 3 is a majority: bootstrap");
        struct join_answer alone[] = { none("s2"), none("s3") };
        is_int(decide(3, alone, 2, &r), JOIN_WAIT, "3 servers, nobody answers: wait");
        ok(strstr(r.why, "1 of the 3 servers hold no Raft state") && strstr(r.why, "a new group needs 2") &&
           strstr(r.why, "no answer from s2, s3"), "... saying how many it has, how many it needs, who is silent (%s)",
           r.why);
        struct join_answer other_conf[] = { empty("s2", A), none("s3") };
        is_int(decide(3, other_conf, 2, &r), JOIN_WAIT, "an empty server whose file lists other servers does not count");
        ok(strstr(r.why, "s2 lists other servers or holds another key") != NULL, "... and is named (%s)", r.why);

        /* a group runs: never bootstrap, even with a majority of empty servers answering */
        struct join_answer running[] = { state("s1", A, MEMBER_NONE, 5000), empty("s3", BOOT), empty("s4", BOOT),
                                          empty("s5", BOOT) };
        is_int(decide(5, running, 4, &r), JOIN_JOIN, "one server holds the state of a running group: join, whatever the rest say");
        ok(!memcmp(r.group_id, A, sizeof A) && r.role == MEMBER_NONE, "... its group, in which it is no member yet");
        struct join_answer fourth[] = { state("s1", A, MEMBER_NONE, 812), state("s2", A, MEMBER_NONE, 812),
                                        state("s3", A, MEMBER_NONE, 812) };
        is_int(decide(4, fourth, 3, &r), JOIN_JOIN, "a fourth server whose file lists it: join (no second group)");
        ok(strstr(r.why, "s1, s2, s3 hold the group's Raft state") != NULL, "... saying who holds it (%s)", r.why);
        struct join_answer listed[] = { state("s1", A, MEMBER_STANDBY, 900), none("s2") };
        is_int(decide(3, listed, 2, &r), JOIN_JOIN, "the group lists it as a standby already: join");
        is_int(r.role, MEMBER_STANDBY, "... and says so");
        struct join_answer removed_only[] = { state("s1", A, MEMBER_NONE, 40), none("s2") };
        is_int(decide(3, removed_only, 2, &r), JOIN_JOIN, "a removed server's state counts as the group's too: join");

        /* a first voter come late: the group holds nothing but the very entry it would write */
        struct join_answer late[] = { state("s1", BOOT, MEMBER_VOTER, 1), none("s3") };
        is_int(decide(3, late, 2, &r), JOIN_BOOTSTRAP, "the group was made from the same servers and holds only its first entry: bootstrap");
        struct join_answer late_but_on[] = { state("s1", BOOT, MEMBER_VOTER, 2), state("s2", BOOT, MEMBER_VOTER, 1) };
        is_int(decide(3, late_but_on, 2, &r), JOIN_JOIN, "... but once the group went on past it: join (no second first entry)");
        struct join_answer late_other[] = { state("s1", A, MEMBER_VOTER, 1), none("s3") };
        is_int(decide(3, late_other, 2, &r), JOIN_JOIN, "a group made from other servers, even fresh: join");

        /* servers that disagree about the group */
        struct join_answer split[] = { state("s1", A, 0, 10), state("s2", B, 0, 10) };
        is_int(decide(3, split, 2, &r), JOIN_WAIT, "3 servers, the two others hold different groups: wait (no majority's word)");
        struct join_answer split5[] = { state("s1", A, 0, 10), state("s2", B, 0, 10), none("s3"), none("s4") };
        is_int(decide(5, split5, 4, &r), JOIN_WAIT, "5 servers, two hold different groups, none a majority: wait");
        ok(strstr(r.why, "different groups") != NULL, "... saying so (%s)", r.why);
        struct join_answer maj5[] = { state("s1", A, 0, 10), state("s2", A, 0, 10), state("s3", A, 0, 10),
                                      state("s4", B, 0, 10) };
        is_int(decide(5, maj5, 4, &r), JOIN_JOIN, "three of five hold group A, one group B: join A");
        ok(!memcmp(r.group_id, A, sizeof A), "... A");

        /* a new group needs an odd number of servers */
        struct join_answer even[] = { empty("s2", BOOT), empty("s3", BOOT), empty("s4", BOOT) };
        is_int(decide(4, even, 3, &r), JOIN_REFUSE, "4 fresh servers: no new group with an even number");
        ok(strstr(r.why, "needs an odd number") != NULL, "... saying why (%s)", r.why);

        /* refused answers count for nothing */
        struct join_answer refused[] = { { .name = "s2", .kind = JOIN_ANSWER_REFUSED }, empty("s3", BOOT) };
        is_int(decide(3, refused, 2, &r), JOIN_BOOTSTRAP, "a server that takes no part is not counted (2 of 3 still)");
        struct join_answer refused2[] = { { .name = "s2", .kind = JOIN_ANSWER_REFUSED }, none("s3") };
        is_int(decide(3, refused2, 2, &r), JOIN_WAIT, "... and alone it gives no majority");
        ok(strstr(r.why, "s2 takes no part in any group") != NULL, "... named (%s)", r.why);

        /* seven servers */
        struct join_answer seven[] = { empty("s2", BOOT), empty("s3", BOOT), empty("s4", BOOT), none("s5"), none("s6"),
                                       none("s7") };
        is_int(decide(7, seven, 6, &r), JOIN_BOOTSTRAP, "7 servers, 4 empty (itself counted): bootstrap");
        seven[2] = none("s4");
        is_int(decide(7, seven, 6, &r), JOIN_WAIT, "7 servers, 3 empty: wait");
}

static void test_with_state(void)
{
        struct join_result r;

        struct join_answer same[] = { state("s2", A, MEMBER_VOTER, 9), state("s3", A, MEMBER_VOTER, 9) };
        is_int(decide_with_state(3, A, same, 2, &r), JOIN_START, "holds state, the others the same group: start");
        struct join_answer silent[] = { none("s2"), none("s3") };
        is_int(decide_with_state(3, A, silent, 2, &r), JOIN_START, "holds state, nobody answers (a whole group restarts): start");
        struct join_answer empties[] = { empty("s2", BOOT), empty("s3", BOOT) };
        is_int(decide_with_state(3, A, empties, 2, &r), JOIN_START, "holds state, the others hold none: start (they join)");
        struct join_answer foreign[] = { state("s2", B, MEMBER_VOTER, 9), state("s3", B, MEMBER_VOTER, 9) };
        is_int(decide_with_state(3, A, foreign, 2, &r), JOIN_REFUSE, "holds group A, the two others hold group B: refuse");
        ok(strstr(r.why, "its Raft state belongs to group a0a1") && strstr(r.why, "but s2, s3 hold group b0b1"),
           "... saying which group is whose (%s)", r.why);
        struct join_answer one_foreign[] = { state("s2", B, MEMBER_VOTER, 9), none("s3") };
        is_int(decide_with_state(3, A, one_foreign, 2, &r), JOIN_START, "one other server of another group is no majority: start");
        struct join_answer mixed[] = { state("s2", B, 0, 9), state("s3", A, 0, 9), state("s4", B, 0, 9),
                                       state("s5", B, 0, 9) };
        is_int(decide_with_state(5, A, mixed, 4, &r), JOIN_REFUSE, "5 servers, 3 of them hold group B: refuse");
}

static void test_ids(void)
{
        struct dchat_conf c = { .n_servers = 3 };
        uint8_t key[DCHAT_KEY_BYTES], k2[DCHAT_KEY_BYTES], id1[DCHAT_GROUP_ID_BYTES], id2[DCHAT_GROUP_ID_BYTES];
        char hex[DCHAT_GROUP_ID_BYTES * 2 + 1];

        memset(key, 7, sizeof key);
        memset(k2, 8, sizeof k2);
        snprintf(c.servers[0].name, sizeof c.servers[0].name, "master");
        snprintf(c.servers[0].address, sizeof c.servers[0].address, "10.0.0.1:8000");
        snprintf(c.servers[1].name, sizeof c.servers[1].name, "master2");
        snprintf(c.servers[1].address, sizeof c.servers[1].address, "10.0.0.2:8000");
        snprintf(c.servers[2].name, sizeof c.servers[2].name, "master3");
        snprintf(c.servers[2].address, sizeof c.servers[2].address, "10.0.0.3:8000");
        group_boot_id(&c, key, id1);
        ok(group_id_is_set(id1), "a boot id is never all zeros (here)");
        struct node_conf t = c.servers[0];
        c.servers[0] = c.servers[2];
        c.servers[2] = t;
        group_boot_id(&c, key, id2);
        ok(!memcmp(id1, id2, sizeof id1), "the servers in another order: the same boot id");
        group_boot_id(&c, k2, id2);
        ok(memcmp(id1, id2, sizeof id1), "another cluster key: another boot id");
        group_boot_id(&c, NULL, id2);
        ok(memcmp(id1, id2, sizeof id1), "no key (plaintext links): another boot id");
        snprintf(c.servers[1].address, sizeof c.servers[1].address, "10.0.0.9:8000");
        group_boot_id(&c, key, id2);
        ok(memcmp(id1, id2, sizeof id1), "another address: another boot id");
        snprintf(c.servers[1].address, sizeof c.servers[1].address, "10.0.0.2:8000");
        c.n_servers = 2;
        group_boot_id(&c, key, id2);
        ok(memcmp(id1, id2, sizeof id1), "a server fewer: another boot id");
        /* names and addresses cannot be shifted into each other */
        struct dchat_conf x = { .n_servers = 1 }, y = { .n_servers = 1 };
        snprintf(x.servers[0].name, sizeof x.servers[0].name, "ab");
        snprintf(x.servers[0].address, sizeof x.servers[0].address, "c:1");
        snprintf(y.servers[0].name, sizeof y.servers[0].name, "a");
        snprintf(y.servers[0].address, sizeof y.servers[0].address, "bc:1");
        group_boot_id(&x, NULL, id1);
        group_boot_id(&y, NULL, id2);
        ok(memcmp(id1, id2, sizeof id1), "name \"ab\" address \"c:1\" is not name \"a\" address \"bc:1\"");

        /* the file */
        char dir[] = "/tmp/test-join.XXXXXX";
        if (!mkdtemp(dir)) {
                ok(false, "mkdtemp");
                return;
        }
        uint8_t back[DCHAT_GROUP_ID_BYTES];
        is_int(group_id_read(dir, back), -ENOENT, "no group-id file: -ENOENT");
        is_int(group_id_write(dir, id1), 0, "group-id written");
        is_int(group_id_read(dir, back), 0, "... read back");
        ok(!memcmp(back, id1, sizeof back), "... the same id");
        char path[sizeof dir + 16], text[64];
        snprintf(path, sizeof path, "%s/group-id", dir);
        FILE *f = fopen(path, "r");
        char want[sizeof hex + 1];
        snprintf(want, sizeof want, "%s\n", group_id_format(id1, hex));
        ok(f && fgets(text, sizeof text, f) && !strcmp(text, want), "the file holds the id in hex and a newline");
        if (f)
                fclose(f);
        f = fopen(path, "w");
        fputs("not hex at all, but long enough...\n", f);
        fclose(f);
        is_int(group_id_read(dir, back), -EBADMSG, "a group-id file that is not 32 hex digits: -EBADMSG");
        f = fopen(path, "w");
        fputs("0123\n", f);
        fclose(f);
        is_int(group_id_read(dir, back), -EBADMSG, "one that is too short: -EBADMSG");
        f = fopen(path, "w");
        fputs("0123456789abcdef0123456789abcdeg\n", f);
        fclose(f);
        is_int(group_id_read(dir, back), -EBADMSG, "one with a letter that is no hex digit: -EBADMSG");
        f = fopen(path, "w");
        fputs(" 123456789abcdef0123456789abcdef\n", f);
        fclose(f);
        is_int(group_id_read(dir, back), -EBADMSG, "one with a space for a digit: -EBADMSG");
        unlink(path);
        rmdir(dir);
}

int main(void)
{
        plan_no_plan();
        for (unsigned i = 0; i < DCHAT_GROUP_ID_BYTES; i++) {
                A[i] = (uint8_t) (0xa0 + i);
                B[i] = (uint8_t) (0xb0 + i);
                BOOT[i] = (uint8_t) (0xc0 + i);
        }
        test_empty_directory();
        test_with_state();
        test_ids();
        return done_testing();
}
