/* SPDX-License-Identifier: MIT */
/*
 * notes.h — the shared notes: a small key-value store kept beside the chat
 * log by the server (one server: a file replaced atomically, notes-file.c;
 * a group: the replicated state machine, fsm.c, and its snapshots).
 *
 * Pure: no I/O, no clock.  A write is decided from the store alone, so
 * every replica that applies the same writes in the same order holds the
 * same notes, and applying a write again changes nothing (each node's
 * writes carry increasing op ids, and the store keeps each node's last one
 * with its outcome: a copy gets that outcome again).
 *
 * A write made inside the critical section carries its fence, which must
 * be above the last such write's (the server's guard against a peer that
 * wrongly believes it holds the section, as for posts); an increment's
 * write also names the version it read (NOTE_IF_VERSION), so a write that
 * came between its read and its write refuses it (CHANGED) instead of
 * being lost.  An unlocked write (the demonstration of lost updates) has
 * no fence, and the peer sends it without a version: neither check.
 *
 * Limits: DCHAT_NOTES_MAX notes; the store remembers the last write of at
 * most NOTES_WRITERS_MAX nodes, for good (a node's op ids must be known to
 * refuse a late copy), so a cluster that renamed its peers that often
 * must start its notes afresh.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

struct note {
        char key[DCHAT_KEY_MAX + 1];
        char *value;                    /* NUL-terminated, len bytes */
        uint16_t len;
        uint64_t version;               /* the store's write count when it was written */
        char node[DCHAT_NAME_MAX + 1];  /* who wrote it */
        int64_t time;                   /* when (the writer's clock, unix seconds) */
};

/* A node's last write: a copy of it gets the same answer. */
struct note_writer {
        char node[DCHAT_NAME_MAX + 1];
        uint64_t op_id;
        uint8_t res;                    /* enum note_res */
        uint64_t version;
};

#define NOTES_WRITERS_MAX       256     /* nodes the store remembers a last write of */
#define NOTES_VERSION_MAX       DCHAT_CLOCK_MAX /* writes the store counts (never reached: 2^62) */

struct notes {
        struct note *v;                 /* sorted by key */
        unsigned n, cap;
        uint64_t version;               /* writes applied so far (the last one's version) */
        uint64_t fence;                 /* the last locked write's fence: Lamport time ... */
        char fence_node[DCHAT_NAME_MAX + 1];    /* ... node and index */
        uint32_t fence_idx;
        struct note_writer *w;
        unsigned n_w, cap_w;
};

enum note_res {
        NOTE_R_OK = 0,
        NOTE_R_DUPLICATE,       /* a copy of the node's last write, which was done: done */
        NOTE_R_STALE,           /* an op id below the node's last: a late copy; nothing done */
        NOTE_R_FENCED,          /* fence not above the last locked write's */
        NOTE_R_CHANGED,         /* NOTE_IF_VERSION, and the note's version is another */
        NOTE_R_ABSENT,          /* DEL of a note that does not exist */
        NOTE_R_FULL,            /* DCHAT_NOTES_MAX notes (or NOTES_WRITERS_MAX writers, or NOTES_VERSION_MAX writes) already */
        NOTE_R_INVALID,         /* a bad key, value or op */
        NOTE_R_BOUNDS,          /* fence beyond the bounds (proto.h) */
        NOTE_R_NOMEM,           /* out of memory: nothing changed (not recorded: may be tried again) */
        _NOTE_R_MAX,
};

struct note_write {
        uint8_t op;             /* NOTE_SET | NOTE_DEL */
        uint8_t flags;          /* NOTE_UNLOCKED | NOTE_IF_VERSION */
        const char *key;
        size_t key_len;
        const char *value;      /* SET */
        size_t len;
        uint64_t expect;        /* NOTE_IF_VERSION: the version read (0: no such note) */
        uint64_t fence;         /* locked: the critical section's Lamport time ... */
        uint32_t fence_idx;
        const char *node;       /* ... and the writer's node (the link's) */
        uint64_t op_id;
        int64_t time;
};

struct note_outcome {
        enum note_res res;      /* of the write (DUPLICATE: the original's was OK) */
        uint64_t version;       /* OK: the note's new version; CHANGED: its version now (0: none) */
};

void notes_init(struct notes *t);
void notes_clear(struct notes *t);
/* Applies w (see the top); out says what became of it.  Returns 0, or -ENOMEM (nothing changed). */
int notes_apply(struct notes *t, const struct note_write *w, struct note_outcome *out);
/* The note named key (n bytes), or NULL. */
const struct note *notes_find(const struct notes *t, const char *key, size_t n);
/* "stored", "refused: ...": a short word for logs. */
const char *note_res_name(enum note_res r);

/* The whole store's serial form (a snapshot's, the file's body). */
void notes_put(struct wbuf *b, const struct notes *t);
/* Reads what notes_put wrote into an empty t: 0, -EBADMSG (t cleared), -ENOMEM. */
int notes_get(struct rbuf *r, struct notes *t);

/*
 * One server's notes on disk: DIR/notes, replaced atomically (temp file,
 * fdatasync, rename, fsync of the directory) with a checksum.  load: no
 * file is an empty store (0); a damaged one is -EBADMSG with err saying so.
 */
int notes_load(struct notes *t, const char *dir, char *err, size_t cap);
int notes_save(const struct notes *t, const char *dir, char *err, size_t cap);
