/* SPDX-License-Identifier: MIT */
/*
 * log.c — messages and protocol events, to journald with DCHAT_* fields
 * and/or to stderr as key=value lines.
 *
 * Under systemd stderr is the journal stream ($JOURNAL_STREAM), and events
 * go to journald natively only.  Started by hand, events go to stderr, and
 * also to journald when one is listening, so that `journalctl` works for
 * hand-started test clusters too.  DCHAT_LOG=journal|stderr|both forces it.
 *
 * Every record is numbered (no=, DCHAT_EVENT_NO) from 1 in each life, and a
 * stderr line starts with the wall-clock time to the microsecond, so that a
 * wait shows, and lines of one node can be told apart and cited:
 *
 *   time=2026-01-05T14:03:07.123456+01:00 no=42 event=reply-deferred node=node1 ...
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "dchatd.h"

static struct {
        bool to_journal, to_stderr, debug;
        char node[DCHAT_NAME_MAX + 1];
        uint64_t no;                    /* records written in this life */
        uint64_t time_us;               /* the last one's time */
        const char *const *vc_names;
        unsigned vc_n;
} L = { .to_stderr = true };

static const struct {
        const char *name;
        const char *id;         /* MESSAGE_ID; see systemd/dchatd.catalog */
        int priority;
} events[_EV_MAX] = {
        [EV_REQUEST_SENT]     = { "request-sent",     "50866dd94a9649e7bed0a45a2348ad76", LOG_INFO },
        [EV_REQUEST_RECEIVED] = { "request-received", "ee0997323978488e9e184928a088a5b9", LOG_INFO },
        [EV_REPLY_SENT]       = { "reply-sent",       "2e6e1771ee7a4c518beece82263a6218", LOG_INFO },
        [EV_REPLY_DEFERRED]   = { "reply-deferred",   "099226ba8fca42669087a7adcb15b655", LOG_INFO },
        [EV_REPLY_RECEIVED]   = { "reply-received",   "b38422020d504b4d80649ca0e09b6cc5", LOG_INFO },
        [EV_CS_ENTER]         = { "cs-enter",         "99bb01976e064d29a341f0ce1dcc6709", LOG_INFO },
        [EV_CS_EXIT]          = { "cs-exit",          "e50664395d704ef89cf70890a02cdc60", LOG_INFO },
        [EV_POST_STORED]      = { "post-stored",      "8777b924c34f47c7bf382ac2bd93f64a", LOG_INFO },
        [EV_POST_FAILED]      = { "post-failed",      "b30726a66e064788a41ddde4fbcc963a", LOG_WARNING },
        [EV_PEER_UP]          = { "peer-up",          "ee35e9706ace43809755d36971729bbb", LOG_NOTICE },
        [EV_PEER_DOWN]        = { "peer-down",        "53d4b187f2cf44558954a413f463226a", LOG_NOTICE },
        [EV_SERVER_UP]        = { "server-up",        "b91e465bb5e34aaaa14eb9585bd2356f", LOG_NOTICE },
        [EV_SERVER_DOWN]      = { "server-down",      "d17f427401dd459fa9d1e6da0f250717", LOG_NOTICE },
        [EV_APPEND_REFUSED]   = { "append-refused",   "54c68a6f2ebd402c8890b792948d5c3d", LOG_WARNING },
        [EV_LOG_RECOVERED]    = { "log-recovered",    "70aadd0031014236bcb9604d042e7a30", LOG_WARNING },
        [EV_PROTOCOL_ERROR]   = { "protocol-error",   "7053b8da07f04b819416ee2baf5e01ad", LOG_WARNING },
        [EV_STARTED]          = { "started",          "b3cf1010991d40af85285365f2a21e23", LOG_NOTICE },
        [EV_RELOADED]         = { "reloaded",         "eba9456b203a4c9db930fd5fd0c442fa", LOG_NOTICE },
        [EV_STOPPING]         = { "stopping",         "85f601b7666542f9ace1d5818d7779bb", LOG_NOTICE },
        [EV_PEER_SUSPECT]     = { "peer-suspect",     "a2e516cb9b774aa8b2021c65beceafce", LOG_NOTICE },
        [EV_PEER_DEAD]        = { "peer-dead",        "2284a4d4827e4226a1403974d8b7a325", LOG_WARNING },
        [EV_PEER_ALIVE]       = { "peer-alive",       "2fa911b06849468aa7ae0d248a98d5b6", LOG_NOTICE },
        [EV_PEER_RESTARTED]   = { "peer-restarted",   "10870f718ce94b62be91e9b603b2e399", LOG_NOTICE },
        [EV_POST_RETRIED]     = { "post-retried",     "bb3e85eb68ef40c6baeaed66ffae21fb", LOG_WARNING },
        [EV_LINK_AUTH_FAILED] = { "link-auth-failed", "1e903dcfc8d1442891a87529c7e7e313", LOG_WARNING },
        [EV_LINK_PLAINTEXT]   = { "link-plaintext",   "2fd8a359866349bd859611afce787834", LOG_WARNING },
        [EV_CLIENT_REFUSED]   = { "client-refused",   "4a825951da124d0b8604c4d95169dfcd", LOG_WARNING },
        [EV_CONFIG_MISMATCH]  = { "config-mismatch",  "b6c290604e3c430b96ff87a86072fa23", LOG_WARNING },
        [EV_LOG_DAMAGED]      = { "log-damaged",      "951bfc4af1884d0aa65bc5f0d1a0f346", LOG_ERR },
        [EV_LEADER_ELECTED]   = { "leader-elected",   "0548742f3e774717bd2a4e242e5ae4a8", LOG_NOTICE },
        [EV_LEADER_LOST]      = { "leader-lost",      "09a4b28bd6e6458f98703232556746ef", LOG_WARNING },
        [EV_SERVER_JOINED]    = { "server-joined",    "beee5772b484423e8253892b689f3a2e", LOG_NOTICE },
        [EV_SERVER_REMOVED]   = { "server-removed",   "39765f0abf9c498e979101db07fffc60", LOG_NOTICE },
        [EV_REPLICA_BEHIND]   = { "replica-behind",   "cca81136a8fd4c9cbbaa4ac1a23eceb0", LOG_WARNING },
        [EV_REPLICA_CAUGHT_UP] = { "replica-caught-up", "b48699e0c6d645b08f0e1578a2827684", LOG_NOTICE },
        [EV_SNAPSHOT]         = { "snapshot",         "8f896e41611f4b7784636e68361d552f", LOG_INFO },
        [EV_REPLICA_STALLED]  = { "replica-stalled",  "bd3e7402c3a142d79e033661545b7e92", LOG_ERR },
        [EV_REPLICA_RESUMED]  = { "replica-resumed",  "0d7ecb7bc87545e58d122d9223fdbcf3", LOG_NOTICE },
        [EV_REPLICA_DAMAGED]  = { "replica-damaged",  "4a0a6026c91949eda169170c219fddb4", LOG_ERR },
        [EV_PEER_LEFT]        = { "peer-left",        "831fb6ee178f4ff2874b9d81d4ff38ad", LOG_NOTICE },
        [EV_RELOAD_REFUSED]   = { "reload-refused",   "a39b2250af4b4c74bc05ce64f6ef2805", LOG_ERR },
        [EV_NOTE_WRITTEN]     = { "note-written",     "42e3a47c597942728ae492dfead3c9bb", LOG_INFO },
        [EV_NOTE_REFUSED]     = { "note-refused",     "0cf3f10b9f9e4315947588c6e7b457a2", LOG_WARNING },
        [EV_REQUEST_QUEUED]   = { "request-queued",   "93ac9881dc6c4d8b822bb96966ec9fbf", LOG_INFO },
};

const char *log_event_name(enum log_event ev)
{
        return ev < _EV_MAX ? events[ev].name : "?";
}

enum log_event log_event_by_name(const char *name)
{
        for (unsigned i = 0; i < _EV_MAX; i++)
                if (strcmp(events[i].name, name) == 0)
                        return (enum log_event) i;
        return _EV_MAX;
}

void log_set_vclock_names(const char *const *names, unsigned n)
{
        L.vc_names = names;
        L.vc_n = n;
}

uint64_t log_last_time_us(void)
{
        return L.time_us;
}

/* "2026-01-05T14:03:07.123456+01:00": local time, to the microsecond, with its UTC offset. */
static void format_time(uint64_t us, char *buf, size_t cap)
{
        time_t t = (time_t) (us / USEC_PER_SEC);
        struct tm tm;
        char off[8];

        if (!localtime_r(&t, &tm) || strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm) == 0 ||
            strftime(off, sizeof off, "%z", &tm) != 5) {
                snprintf(buf, cap, "@%llu.%06llu", (unsigned long long) (us / USEC_PER_SEC),
                         (unsigned long long) (us % USEC_PER_SEC));
                return;
        }
        size_t l = strlen(buf);
        snprintf(buf + l, cap - l, ".%06llu%.3s:%s", (unsigned long long) (us % USEC_PER_SEC), off, off + 3);
}

/* Is stderr the journal stream systemd gave us? */
static bool stderr_is_journal(void)
{
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_open(const char *node)
{
        const char *mode = getenv("DCHAT_LOG");

        log_set_node(node);
        if (mode && strcmp(mode, "journal") == 0) {
                L.to_journal = true;
                L.to_stderr = false;
        } else if (mode && strcmp(mode, "stderr") == 0) {
                L.to_journal = false;
                L.to_stderr = true;
        } else if (mode && strcmp(mode, "both") == 0) {
                L.to_journal = L.to_stderr = true;
        } else if (stderr_is_journal()) {
                L.to_journal = true;
                L.to_stderr = false;
        } else {
                L.to_stderr = true;
                L.to_journal = access("/run/systemd/journal/socket", W_OK) == 0;
        }
}

void log_set_node(const char *node)
{
        strlcpy(L.node, node ? node : "", sizeof L.node);
}

void log_set_debug(bool on)
{
        L.debug = on;
}

/* A value for a key=value line: quoted when it holds spaces, quotes or '='. */
static size_t put_value(char *b, size_t off, size_t cap, const char *v)
{
        if (v[0] && !strpbrk(v, " \"=\\"))
                return off < cap ? off + strlcpy(b + off, v, cap - off) : off + strlen(v);
        if (off < cap)
                b[off] = '"';
        off++;
        for (; *v; v++) {
                if ((*v == '"' || *v == '\\') && off < cap)
                        b[off++] = '\\';
                if (off < cap)
                        b[off] = *v;
                off++;
        }
        if (off < cap)
                b[off] = '"';
        return off + 1;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0: no overlongs, no surrogates. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        size_t len;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                len = 4, cp = c & 0x07;
        else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

/* The piece of log_quote's output for the bytes at p (n of them left): its length, and how many bytes it stands for. */
static size_t quote_piece(const unsigned char *p, size_t n, char piece[8], size_t *used)
{
        size_t u = utf8_len(p, n);
        /* C0, DEL, C1 controls and what is no UTF-8 are shown as bytes; a
         * backslash doubles, so that "\x0a" typed by someone is not a newline */
        bool c1 = u == 2 && p[0] == 0xc2 && p[1] < 0xa0;

        if (u == 0 || c1 || p[0] < 0x20 || p[0] == 0x7f) {
                *used = 1;
                return (size_t) snprintf(piece, 8, "\\x%02x", p[0]);
        }
        *used = u;
        if (p[0] == '\\') {
                memcpy(piece, "\\\\", 2);
                return 2;
        }
        memcpy(piece, p, u);
        return u;
}

const char *log_quote(char *buf, size_t cap, const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t off = 0, total = 0, used;
        char piece[8];

        if (cap == 0)
                return buf;
        for (size_t i = 0; i < len; i += used)
                total += quote_piece(p + i, len - i, piece, &used);
        /* all of it, or whole pieces and "..." */
        size_t room = total < cap ? cap : cap > 3 ? cap - 3 : 0;
        for (size_t i = 0; i < len; i += used) {
                size_t pl = quote_piece(p + i, len - i, piece, &used);
                if (off + pl + 1 > room) {
                        if (off + 4 <= cap) {
                                memcpy(buf + off, "...", 3);
                                off += 3;
                        }
                        break;
                }
                memcpy(buf + off, piece, pl);
                off += pl;
        }
        buf[off] = '\0';
        return buf;
}

/*
 * Control characters in a message would start a forged line on stderr and
 * are noise in the journal: each becomes \xNN.  Call sites quote what came
 * from outside (log_quote); this is the net under them.  Returns msg itself
 * when it is clean.
 */
static const char *clean_message(const char *msg, char *buf, size_t cap)
{
        const char *p;

        for (p = msg; *p && (unsigned char) *p >= 0x20 && *p != 0x7f; p++)
                ;
        if (!*p)
                return msg;
        size_t off = 0;
        for (p = msg; *p && off + 5 < cap; p++) {
                unsigned char c = (unsigned char) *p;
                if (c < 0x20 || c == 0x7f)
                        off += (size_t) snprintf(buf + off, cap - off, "\\x%02x", c);
                else
                        buf[off++] = (char) c;
        }
        buf[off] = '\0';
        return buf;
}

/* The vector clock of f as DCHAT_VCLOCK ({"node1":3,...}) or stderr's vclock= (node1:3,...). */
static bool format_vclock(const struct event_fields *f, bool json, char *buf, size_t cap)
{
        if (!f || !f->vc || !f->vc->n)
                return false;
        bool named = L.vc_names && L.vc_n == f->vc->n;
        return vclock_format(buf, cap, f->vc, named ? L.vc_names : NULL, json) < cap;
}

static uint64_t emit(int priority, enum log_event ev, const struct event_fields *f, const char *msg)
{
        char clean[4 * 1024 + 1];
        char vcbuf[DCHAT_PEERS_MAX * (DCHAT_NAME_MAX + 24) + 4];
        struct timespec ts;

        if (priority == LOG_DEBUG && !L.debug)
                return 0;
        msg = clean_message(msg, clean, sizeof clean);
        clock_gettime(CLOCK_REALTIME, &ts);
        L.time_us = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        L.no++;

        if (L.to_stderr) {
                /* One write per line, so concurrent daemons do not interleave.  Built
                 * on the stack: events come at every post, so no allocation here. */
                char line[8192], when[64];
                size_t cap = sizeof line - 1, off;
                format_time(L.time_us, when, sizeof when);
                off = (size_t) snprintf(line, cap, "time=%s no=%llu ", when, (unsigned long long) L.no);
                if (ev < _EV_MAX) {
                        off += (size_t) snprintf(line + off, cap - off, "event=%s node=%s", events[ev].name, L.node);
                        if (f && f->peer && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " peer=%s", f->peer);
                        if (f && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " lamport=%llu",
                                                         (unsigned long long) f->lamport);
                        if (f && f->request_ts && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " request_ts=%llu",
                                                         (unsigned long long) f->request_ts);
                        if (f && f->fence && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " fence=%llu fence_idx=%u",
                                                         (unsigned long long) f->fence, f->fence_idx);
                        if (f && f->seq && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " seq=%llu",
                                                         (unsigned long long) f->seq);
                        if (format_vclock(f, false, vcbuf, sizeof vcbuf) && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " vclock=%s", vcbuf);
                        if (f && f->send_vt && off < cap)
                                off += (size_t) snprintf(line + off, cap - off, " send_vt=%llu",
                                                         (unsigned long long) f->send_vt);
                        if (off < cap)
                                line[off] = ' ';
                        off++;
                } else {
                        off += (size_t) snprintf(line + off, cap - off, "level=%s node=%s ",
                                                 priority <= LOG_ERR ? "error" : priority == LOG_WARNING ? "warning" :
                                                 priority == LOG_DEBUG ? "debug" : "info", L.node);
                }
                if (off < cap)
                        off += strlcpy(line + off, "msg=", cap - off);
                off = put_value(line, off, cap, msg);
                if (off > cap)
                        off = cap;      /* cut: msg is at most 1 KiB, so only in theory */
                line[off++] = '\n';
                (void) !write(STDERR_FILENO, line, off);
        }

        if (!L.to_journal)
                return L.no;
        if (ev >= _EV_MAX) {
                sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%d", priority, "SYSLOG_IDENTIFIER=dchatd",
                                "DCHAT_NODE=%s", L.node, "DCHAT_EVENT_NO=%llu", (unsigned long long) L.no, NULL);
                return L.no;
        }

        /* Events: a fixed set of fields, some optional. */
        char b[14][DCHAT_NAME_MAX + 64];
        struct iovec iov[15];
        unsigned n = 0;
#define FIELD(...) do { \
                int _l = snprintf(b[n], sizeof b[n], __VA_ARGS__); \
                iov[n] = (struct iovec) { b[n], (size_t) _l < sizeof b[n] ? (size_t) _l : sizeof b[n] - 1 }; \
                n++; \
        } while (0)
        FIELD("PRIORITY=%d", priority);
        FIELD("SYSLOG_IDENTIFIER=dchatd");
        FIELD("MESSAGE_ID=%s", events[ev].id);
        FIELD("DCHAT_EVENT=%s", events[ev].name);
        FIELD("DCHAT_NODE=%s", L.node);
        if (f && f->peer)
                FIELD("DCHAT_PEER=%s", f->peer);
        if (f)
                FIELD("DCHAT_LAMPORT=%llu", (unsigned long long) f->lamport);
        if (f && f->request_ts)
                FIELD("DCHAT_REQUEST_TS=%llu", (unsigned long long) f->request_ts);
        if (f && f->fence) {
                FIELD("DCHAT_FENCE=%llu", (unsigned long long) f->fence);
                FIELD("DCHAT_FENCE_IDX=%u", f->fence_idx);
        }
        if (f && f->seq)
                FIELD("DCHAT_SEQ=%llu", (unsigned long long) f->seq);
        if (f && f->send_vt)
                FIELD("DCHAT_SEND_VT=%llu", (unsigned long long) f->send_vt);
        FIELD("DCHAT_EVENT_NO=%llu", (unsigned long long) L.no);
#undef FIELD
        /* MESSAGE= may be long (it quotes errors), and DCHAT_VCLOCK too: buffers of their own. */
        char *m = NULL, *v = NULL;
        if (asprintf(&m, "MESSAGE=%s", msg) < 0)
                return L.no;
        if (format_vclock(f, true, vcbuf, sizeof vcbuf) && asprintf(&v, "DCHAT_VCLOCK=%s", vcbuf) >= 0)
                iov[n++] = (struct iovec) { v, strlen(v) };
        iov[n++] = (struct iovec) { m, strlen(m) };
        sd_journal_sendv(iov, (int) n);
        free(m);
        free(v);
        return L.no;
}

void log_msg(int priority, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        emit(priority, _EV_MAX, NULL, msg);
}

uint64_t log_event(enum log_event ev, const struct event_fields *f, const char *fmt, ...)
{
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        return emit(ev < _EV_MAX ? events[ev].priority : LOG_INFO, ev, f, msg);
}

bool ratelimit_pass(struct ratelimit *rl, uint64_t now)
{
        if (rl->passed == 0 || now - rl->begin >= rl->interval_usec) {
                rl->begin = now;
                rl->passed = 0;
        }
        if (rl->passed < rl->burst) {
                rl->passed++;
                return true;
        }
        rl->suppressed++;
        return false;
}

const char *ratelimit_suppressed(struct ratelimit *rl)
{
        if (!rl->suppressed)
                return "";
        snprintf(rl->note, sizeof rl->note, " (%u more like it not logged)", rl->suppressed);
        rl->suppressed = 0;
        return rl->note;
}

unsigned ratelimit_flush(struct ratelimit *rl, uint64_t now)
{
        unsigned n = rl->suppressed;

        if (n == 0 || now - rl->begin < rl->interval_usec)
                return 0;
        rl->suppressed = 0;
        return n;
}

uint64_t ratelimit_due(const struct ratelimit *rl)
{
        return rl->suppressed ? rl->begin + rl->interval_usec : UINT64_MAX;
}
