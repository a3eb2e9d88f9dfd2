/* SPDX-License-Identifier: MIT */
/*
 * durable.h — replace a small file so that a crash or a power loss leaves
 * either the old content or the new one, whole: the data goes to NAME.tmp,
 * is synced, renamed over NAME, and the directory is synced.  Used for the
 * incarnation counters (incarnation.c), the chat log's checkpoint
 * (chatidx.c) and the shared notes (notes-file.c).
 */
#pragma once

#include <stddef.h>

/*
 * Writes len bytes of data as name in the directory dirfd.  Returns 0, or a
 * negative errno with *step (if step) naming what failed: "create", "write",
 * "sync", "rename" (the temp file is removed then) or "sync the directory
 * of" (renamed: the next start reads the new content, but it may not survive
 * a power loss).  A temp file left by a crash is overwritten.
 */
int durable_replace(int dirfd, const char *name, const void *data, size_t len, const char **step);
