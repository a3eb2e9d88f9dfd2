/* SPDX-License-Identifier: MIT */
/*
 * json.h — a small JSON reader for one line at a time: the JSON Lines of
 * `dchatctl trace --format json` and `journalctl -o json`.  Pure: no I/O.
 * A parsed line is a tree of values in one arena, freed with it; strings
 * are unescaped (\uXXXX to UTF-8, surrogate pairs joined) and may hold NUL
 * (their length is kept).  Depth and size are bounded: it reads what it is
 * given, from anyone.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json {
        enum json_type type;
        bool b;
        double num;
        bool integer;           /* a number written without fraction or exponent ... */
        bool negative;
        uint64_t u;             /* ... and its magnitude, exactly, if it fits (else integer is false) */
        const char *s;          /* JSON_STRING (NUL-terminated too), JSON_NUMBER (its text) */
        size_t len;
        size_t n;               /* ARRAY, OBJECT: members */
        const char **keys;      /* OBJECT: member i's name (NUL-terminated) */
        size_t *key_len;
        struct json **v;        /* ARRAY, OBJECT: members */
};

struct json_doc;

/*
 * Parses text[0..len) as one JSON value (whitespace around it allowed).
 * Returns 0 and the root, or -EINVAL with why (a short text and the
 * offset) in err.
 */
int json_parse(const char *text, size_t len, struct json_doc **doc, const struct json **root, char *err, size_t cap);
void json_free(struct json_doc *doc);

/* The member key of object o (NULL: none, or o no object). */
const struct json *json_get(const struct json *o, const char *key);
/* A member that is a string ("" and false if not); its text. */
bool json_str(const struct json *o, const char *key, const char **s);
/*
 * A member that is an unsigned integer: a JSON number, or a string of
 * decimal digits (journalctl -o json writes every field as a string).
 */
bool json_u64(const struct json *o, const char *key, uint64_t *v);
/* The same for a value. */
bool json_value_u64(const struct json *v, uint64_t *out);
