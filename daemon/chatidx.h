/* SPDX-License-Identifier: MIT */
/*
 * chatidx.h — what chatlog.c and chatidx.c share: the in-memory state of a
 * chat log that a checkpoint (DIR/chat.log.idx) saves, and the checkpoint's
 * codec.  Private to those two files.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define CHATLOG_INDEX_EVERY     256

/* The sparse index: one slot per 256 records. */
struct chatlog_ix {
        uint64_t off;                   /* file offset of record base + k * 256 + 1 */
        int64_t max_before;             /* greatest entry time of the records before it (INT64_MIN: none) */
};

/*
 * A quarantined part of chat.log: bytes [off, end) that do not check out,
 * with good records before and after them (or, for DAMAGE_TAIL, the end of
 * what a checkpoint proved was stored).  They stay in the file untouched;
 * the seqs first_seq..last_seq they stood for are reported as damaged to
 * readers (first_seq = last_seq + 1: bytes that stood for no seq).
 */
#define CHATLOG_DAMAGE_MAX      64
enum chatlog_damage_kind {
        DAMAGE_HEADER = 1,              /* a record header that does not check out */
        DAMAGE_BODY,                    /* a body whose checksum does not match */
        DAMAGE_ENTRY,                   /* a body that checks out but is not the entry due there */
        DAMAGE_TAIL,                    /* the end of the log, stored and synced, then damaged */
};
struct chatlog_damage {
        uint64_t first_seq, last_seq;
        uint64_t off, end;
        uint8_t kind;                   /* enum chatlog_damage_kind */
};

struct chatlog_node {
        char name[DCHAT_NAME_MAX + 1];
        uint64_t post_id;               /* last stored post id (committed) */
        uint64_t seq;                   /* ... and where it was stored */
        uint64_t new_post_id;           /* staged by the running append */
        uint64_t new_seq;
};

/*
 * What a checkpoint says about the first `end` bytes of chat.log.  The
 * arrays are owned by whoever filled the struct (chatidx_decode: malloc).
 */
#define CHATIDX_RESCAN          UINT32_C(1)     /* flags: read the whole log at start anyway */
#define CHATIDX_UNSYNCED        UINT32_C(2)     /* flags: appends after `end` may have been written unsynced */

struct chatidx {
        /*
         * CHATIDX_RESCAN: a read found damage the log does not know of yet;
         * the next start reads the whole log (to quarantine it) and takes
         * this state only as a floor: what it says was stored was stored.
         * CHATIDX_UNSYNCED: the log belongs to a server group, whose
         * appends are not synced one by one (chatlog_set_unsynced): a bad
         * record after `end` is an unsynced write lost in a crash, cut
         * with all that follows it, not quarantined.
         */
        uint32_t flags;
        uint64_t base_seq;              /* seqs up to this one are archived (0: none) */
        uint64_t end;                   /* bytes of chat.log covered */
        int64_t mtime_ns;               /* chat.log's mtime when the checkpoint was written */
        uint64_t last_seq;
        uint64_t last_off;              /* offset of record last_seq (if last_seq > base_seq) */
        uint32_t last_crc;              /* its body CRC, as in its header */
        uint64_t last_lamport;
        char last_node[DCHAT_NAME_MAX + 1];
        uint32_t last_fence_idx;
        int64_t max_time;               /* greatest entry time so far (INT64_MIN: none) */
        struct chatlog_ix *index;
        size_t n_index;
        struct chatlog_node *nodes;
        size_t n_nodes;
        struct chatlog_damage damage[CHATLOG_DAMAGE_MAX];       /* by offset */
        size_t n_damage;
};

/* CRC-32C (Castagnoli); crc32c(0, p, n) is the CRC of p, pass a result to continue it. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

/* The whole checkpoint file, CRC included.  0 or -ENOMEM. */
int chatidx_encode(struct wbuf *b, const struct chatidx *x);
/*
 * Parses a checkpoint file's bytes, checking its CRC and that it is
 * consistent in itself (sizes, increasing offsets).  -EBADMSG with *why set
 * on anything wrong, -ENOMEM.  Free with chatidx_free().
 */
int chatidx_decode(const uint8_t *p, size_t len, struct chatidx *x, const char **why);
void chatidx_free(struct chatidx *x);

/* Reads DIR/chat.log.idx (dirfd): -ENOENT if there is none; else as chatidx_decode. */
int chatidx_load(int dirfd, struct chatidx *x, const char **why);
/* Writes it to chat.log.idx.tmp, syncs, renames over chat.log.idx, syncs the directory. */
int chatidx_save(int dirfd, const struct chatidx *x);
