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
        void *userdata;

        struct cconn c;
        bool view_done;                 /* the initial view is shown */
        bool first_answered;            /* its first page was answered */
        uint64_t shown;                 /* seq of the last line shown (or the view's end) */
        uint64_t view_from, view_upto;
        uint32_t tag;                   /* of the current VIEW page / FOLLOW */
        bool lost;                      /* disconnected; retrying */
        uint64_t backoff_ms;
        uint64_t retry_at_ms;           /* CLOCK_MONOTONIC */
        unsigned gaps;                  /* lines missing in the stream (never expected) */
        char error[DCHAT_ERROR_MAX + 64];       /* a fatal error, for the caller */
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

/* dchatctl.c: SIGINT, SIGTERM, SIGHUP end a follow loop; they are blocked
 * but inside ppoll(..., old).  Interrupted: one of them came. */
void follow_signals(sigset_t *old);
bool follow_interrupted(void);

/* chat.c: dchatctl chat */
int cmd_chat(int argc, char **argv, const char *socket_path);
/* trace.c: dchatctl trace */
int cmd_trace(int argc, char **argv, const char *socket_path);
/* explain.c: dchatctl explain */
int cmd_explain(int argc, char **argv, const char *socket_path);
