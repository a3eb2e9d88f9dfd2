/* SPDX-License-Identifier: MIT */
/*
 * client.h — dchatctl's non-blocking side: a connection to dchatd that a
 * poll loop reads, and the follow session (view -f, chat) built on it.
 */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto.h"

/* A connection to dchatd's control socket; frames are read as they come. */
struct cconn {
        int fd;                         /* -1: not connected */
        struct wbuf in;
        size_t used;                    /* bytes of in handed out as the last frame */
        struct dchat_entry entry;       /* decode targets */
        struct dchat_status status;
};

/* Connects (blocking; a UNIX socket answers at once).  -errno, and why in err. */
int cconn_open(struct cconn *c, const char *path, char *err, size_t errlen);
void cconn_close(struct cconn *c);
/* Sends one frame, all of it (control frames are small).  -errno. */
int cconn_send(struct cconn *c, const struct dchat_msg *m);
/* Reads what is there: bytes read, 0 at EOF, -errno (-EAGAIN: nothing yet). */
int cconn_fill(struct cconn *c);
/* The next whole frame in the buffer: 1 (m valid until the next call), 0 none yet, -EBADMSG. */
int cconn_frame(struct cconn *c, struct dchat_msg *m);

/* ---------------------------------------------------------------------------------------- */

/*
 * A follow session: an initial view (the last last_n lines, or all), then
 * FOLLOW from the line after the last one shown.  When dchatd goes away it
 * reconnects (bounded backoff, a message through notice) and follows from
 * the line after the last one shown, so nothing is missed or shown twice.
 */
struct follow {
        const char *socket_path;
        uint64_t last_n;                /* 0: the whole log first ... */
        uint64_t since_seq;             /* ... or from this seq ... */
        int64_t since_time;             /* ... or from this time (see view --since) */
        void (*show)(const struct dchat_entry *e, void *userdata);
        /* seqs first..last are damaged in the server's log (quarantined): a marker in their place */
        void (*damaged)(uint64_t first, uint64_t last, struct dchat_str reason, void *userdata);
        void (*notice)(const char *msg, void *userdata);       /* reconnecting, reconnected */
        /* any other frame (tags >= FOLLOW_TAG_USER): the caller's own requests */
        void (*other)(const struct dchat_msg *m, void *userdata);
        /* connected to dchatd again after losing it (the caller's requests on the old one are gone) */
        void (*connected)(void *userdata);
        void *userdata;

        struct cconn c;
        bool view_done;                 /* the initial view is shown */
        bool first_answered;            /* its first page was answered */
        uint64_t shown;                 /* seq of the last line shown (or the view's end) */
        uint64_t view_from, view_upto;
        uint32_t tag;                   /* of the current VIEW page / FOLLOW */
        bool lost;                      /* not following: disconnected, or ... */
        bool away;                      /* ... connected, but dchatd cannot serve the log now (server away) */
        bool dropped;                   /* the connection to dchatd was lost since the log was last served */
        bool refused;                   /* ... dchatd refused it (a limit such as max_clients_per_user) */
        uint64_t backoff_ms;
        uint64_t retry_at_ms;           /* CLOCK_MONOTONIC */
        unsigned gaps;                  /* lines missing in the stream (never expected) */
        char error[2048];                /* a fatal error, for the caller */
};

#define FOLLOW_TAG_USER 1000            /* tags below are the session's */

/* Starts: connects and asks for the first view.  <0 only on a fatal error (f->error). */
int follow_start(struct follow *f);
/* The fd to poll for input, or -1 while disconnected. */
int follow_fd(const struct follow *f);
/* Milliseconds until follow_tick wants to run (a reconnect), -1: never. */
int follow_timeout(const struct follow *f);
/* Input on follow_fd, or the timeout ran out: do what there is.  <0: fatal (f->error). */
int follow_tick(struct follow *f);
/* Sends one of the caller's requests on the session's connection (tag >= FOLLOW_TAG_USER). */
int follow_send(struct follow *f, const struct dchat_msg *m);
void follow_free(struct follow *f);

uint64_t mono_ms(void);

/* The marker line for seqs first..last damaged in the server's log (ENTRY_DAMAGED), without a newline. */
void damaged_line(char *buf, size_t cap, uint64_t first, uint64_t last, struct dchat_str reason);

/* "17 Oct 02:57PM" (seconds: "17 Oct 02:57:13PM") in the poster's local time, or (local) the viewer's. */
void format_when(const struct dchat_entry *e, bool local, bool seconds, char *buf, size_t cap);

/*
 * Why connecting to dchatd's socket path failed (errno err), with the hint
 * that fits: not a socket, nothing there (and where a dchatd may be), a
 * stale socket.  socket_origin says where the path came from: NULL the
 * default, "-s", "DCHAT_SOCKET".
 */
extern const char *socket_origin;
void socket_error(const char *path, int err, char *buf, size_t cap);

/* A node as the last PRESENCE about it said (who, chat). */
struct wnode {
        char name[DCHAT_NAME_MAX + 1];
        uint8_t role, state, flags;
        uint32_t since;
        char note[DCHAT_NOTE_MAX + 1];
        unsigned n, more;
        struct { char name[DCHAT_NAME_MAX + 1]; uint8_t kinds; } users[DCHAT_PRESENCE_MAX];
        uint8_t seen;                   /* the caller's own: what it last said of the node */
};
#define NODES_MAX (1 + DCHAT_PEERS_MAX + DCHAT_SERVERS_MAX + 1)     /* (+ a server added at runtime) */
struct wtable {
        struct wnode nodes[NODES_MAX];
        unsigned n;
};
struct wnode *wnode_find(struct wtable *t, const char *name);
/* A PRESENCE into the table; the node as it was before into *old (if old; old->name "" if it is new). */
struct wnode *wnode_take(struct wtable *t, const struct dchat_msg *m, struct wnode *old);

/* dchatctl.c: SIGINT, SIGTERM, SIGHUP end a follow loop; they are blocked
 * but inside ppoll(..., old).  follow_signal: the one that came (0: none). */
void follow_signals(sigset_t *old);
int follow_signal(void);
void follow_signal_clear(void);

/*
 * dchatctl.c: one request and its answers on a blocking connection to dchatd,
 * for the commands kept in files of their own (note.c).  Each that can fail says
 * why on stderr (one line) and returns 1.
 */
/* "dchatctl: MESSAGE" on stderr; fail returns 1, usage_error 2 (bad usage) */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void socket_option(const char *arg);            /* -s SOCKET after the command */
int connect_daemon(void);
int send_msg(const struct dchat_msg *m);
/* The next frame (its strings valid until the next call). */
int recv_msg(struct dchat_msg *m);
/* An ERROR frame: "dchatctl: WHAT failed: TEXT" (or refused, permission denied). */
int print_error(const char *what, const struct dchat_msg *m);
/* POST_WAIT: why a write waits, once per reason, and only to a terminal (last: the reason said before). */
void say_waiting(const struct dchat_msg *m, const char *prefix, char *last, size_t cap);
/* s as a JSON string (json.h's json_str is the reader's). */
void json_put_str(const char *s, size_t n);

/* note.c: dchatctl note */
int cmd_note(int argc, char **argv);
void note_usage(FILE *f);
/* chat.c: dchatctl chat (-s after the command sets *socket_path) */
int cmd_chat(int argc, char **argv, const char **socket_path);
void chat_usage(FILE *f);
/* trace.c: dchatctl trace */
int cmd_trace(int argc, char **argv, const char *socket_path);
/* explain.c: dchatctl explain */
int cmd_explain(int argc, char **argv, const char *socket_path);
