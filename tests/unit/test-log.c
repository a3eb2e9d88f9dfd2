/* SPDX-License-Identifier: MIT */
/*
 * test-log — what log.c does with text from outside (log_quote, and the stderr
 * line of a message with control characters in it), its rate limit, and the
 * admission of inbound links that uses it (net_admit).
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dchatd.h"
#include "tap.h"

#define S 1000000ULL

static const char *q(const char *s, size_t len, size_t cap)
{
        static char buf[512];
        return log_quote(buf, cap, s, len);
}

static void test_quote(void)
{
        is_str(q("node1", 5, 64), "node1", "a plain name is left alone");
        is_str(q("a\nevent=cs-enter node=x", 23, 64), "a\\x0aevent=cs-enter node=x", "a newline becomes \\x0a");
        is_str(q("\x1b[31mred", 8, 64), "\\x1b[31mred", "an escape sequence is shown, not sent");
        is_str(q("tab\there\r", 9, 64), "tab\\x09here\\x0d", "tab and CR");
        is_str(q("del\x7f", 4, 64), "del\\x7f", "DEL");
        is_str(q("back\\x0a", 8, 64), "back\\\\x0a", "a backslash doubles: a typed \\x0a is no newline");
        is_str(q("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, 64), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
               "valid UTF-8 stays");
        is_str(q("c1\xc2\x85x", 5, 64), "c1\\xc2\\x85x", "a C1 control (NEL) becomes bytes");
        is_str(q("bad\xff\xc3", 5, 64), "bad\\xff\\xc3", "bytes that are no UTF-8 (and a cut sequence)");
        is_str(q("\xc0\xaf\xed\xa0\x80", 5, 64), "\\xc0\\xaf\\xed\\xa0\\x80", "an overlong and a surrogate");
        is_str(q("a\0b", 3, 64), "a\\x00b", "a NUL inside");
        is_str(q("abcdefghij", 10, 8), "abcd...", "cut to fit, with ...");
        is_str(q("abc\n", 4, 7), "abc...", "an escape that does not fit whole is left out");
        is_str(q("abc", 3, 4), "abc", "just fits: no ...");
        is_str(q("\xe2\x82\xac\xe2\x82\xac", 6, 6), "...", "never half a UTF-8 sequence");
        is_str(q("", 0, 1), "", "empty");
        char big[300];
        memset(big, '\n', sizeof big);
        const char *r = q(big, sizeof big, LOG_QUOTE_NAME);
        ok(strlen(r) < LOG_QUOTE_NAME && strchr(r, '\n') == NULL && strcmp(r + strlen(r) - 3, "...") == 0,
           "300 newlines: cut to the buffer, no newline left");
}

/* What log_msg writes to stderr for msg: one line. */
static void test_stderr_line(void)
{
        char path[] = "/tmp/test-log.XXXXXX", line[4096];
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);

        setenv("DCHAT_LOG", "stderr", 1);
        log_open("node1");
        dup2(fd, STDERR_FILENO);
        log_msg(LOG_WARNING, "HELLO from 'evil\nevent=cs-enter node=node2 msg=\"forged\"' \x1b[2J");
        log_event(EV_PROTOCOL_ERROR, NULL, "two\nlines\r");
        dup2(saved, STDERR_FILENO);
        close(saved);
        ssize_t n = pread(fd, line, sizeof line - 1, 0);
        close(fd);
        unlink(path);
        line[n > 0 ? n : 0] = '\0';
        unsigned lines = 0;
        for (char *p = line; *p; p++)
                lines += *p == '\n';
        is_int(lines, 2, "two messages with newlines inside are two lines on stderr");
        /* (in a quoted value a backslash is doubled: \\x0a, which ev_field reads back as \x0a) */
        ok(strstr(line, "evil\\\\x0aevent=cs-enter") && strstr(line, "\\\\x1b[2J") && !strchr(line, '\x1b'),
           "the newline and the escape are shown as \\xNN");
        ok(strstr(line, "msg=\"two\\\\x0alines\\\\x0d\"") != NULL, "an event's msg too");
        if (lines != 2)
                diag("%s", line);
}

static void test_ratelimit(void)
{
        struct ratelimit rl = RATELIMIT_INIT(10 * S, 3);
        unsigned logged = 0;

        for (int i = 0; i < 100; i++)
                logged += ratelimit_pass(&rl, 1 * S + (uint64_t) i * 1000);
        is_int(logged, 3, "3 of 100 lines in one interval go out");
        is_int(rl.suppressed, 97, "97 are left out");
        is_int(ratelimit_due(&rl), 11 * S, "their summary is due when the interval ends");
        is_int(ratelimit_flush(&rl, 10 * S), 0, "not before");
        is_int(ratelimit_flush(&rl, 11 * S), 97, "then 97, once");
        is_int(ratelimit_flush(&rl, 12 * S), 0, "and not again");
        is_int(ratelimit_due(&rl), UINT64_MAX, "nothing due");

        /* left out, then the next line comes in a later interval before any summary */
        for (int i = 0; i < 5; i++)
                (void) ratelimit_pass(&rl, 20 * S);
        ok(ratelimit_pass(&rl, 35 * S), "a line in a new interval goes out");
        is_str(ratelimit_suppressed(&rl), " (2 more like it not logged)", "... and may say that 2 were left out");
        is_str(ratelimit_suppressed(&rl), "", "... once");
        ok(ratelimit_pass(&rl, 1 * S), "a clock that went back starts a new interval");
}

static void test_admit(void)
{
        struct dchat_conf c = { .max_handshakes = 32, .max_handshakes_per_address = 4, .max_links_in = 256 };
        struct net_admit_query qq;

        qq = (struct net_admit_query) { .links_in = 2, .pending = 3, .from_address = 3 };
        is_int(net_admit(&c, &qq), NET_ADMIT, "a stranger's 4th pending handshake is let in");
        qq.from_address = 4;
        is_int(net_admit(&c, &qq), NET_REFUSE_ADDRESS, "its 5th is refused (max_handshakes_per_address)");
        qq.share = 1;
        is_int(net_admit(&c, &qq), NET_ADMIT_EVICT_SAME, "a member's address at its cap: its oldest makes room");
        qq.share = 3;
        is_int(net_admit(&c, &qq), NET_ADMIT, "an address of 3 nodes may have 12");
        qq.from_address = 12;
        is_int(net_admit(&c, &qq), NET_ADMIT_EVICT_SAME, "... not 13");

        qq = (struct net_admit_query) { .links_in = 40, .pending = 32, .from_address = 0, .strangers_pending = 32 };
        is_int(net_admit(&c, &qq), NET_REFUSE_HANDSHAKES, "max_handshakes full: a stranger is refused");
        qq.share = 1;
        is_int(net_admit(&c, &qq), NET_ADMIT_EVICT_STRANGER, "a member takes the oldest stranger's slot");
        qq.strangers_pending = 0;
        is_int(net_admit(&c, &qq), NET_REFUSE_HANDSHAKES, "... but not a member's");
        qq = (struct net_admit_query) { .links_in = 256, .pending = 1, .strangers_pending = 1, .share = 1 };
        is_int(net_admit(&c, &qq), NET_ADMIT_EVICT_STRANGER, "max_links_in full: a member still gets a stranger's slot");
        qq.share = 0;
        is_int(net_admit(&c, &qq), NET_REFUSE_LINKS, "a stranger is refused (max_links_in)");
}

int main(void)
{
        plan_no_plan();
        test_quote();
        test_stderr_line();
        test_ratelimit();
        test_admit();
        return done_testing();
}
