/* SPDX-License-Identifier: MIT */
/* json.c — a small JSON reader (json.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_DEPTH_MAX  32
#define JSON_TEXT_MAX   (16 * 1024 * 1024)

struct block {
        struct block *next;
        size_t used, cap;
        max_align_t data[];
};

struct json_doc {
        struct block *blocks;
};

struct parser {
        const char *p, *end, *start;
        struct json_doc *doc;
        const char *why;
        unsigned depth;
};

static void *alloc(struct parser *ps, size_t n)
{
        struct block *b = ps->doc->blocks;

        n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
        if (!b || b->cap - b->used < n) {
                size_t cap = n > 16384 ? n : 16384;
                b = malloc(sizeof *b + cap);
                if (!b)
                        return NULL;
                b->used = 0;
                b->cap = cap;
                b->next = ps->doc->blocks;
                ps->doc->blocks = b;
        }
        void *r = (char *) b->data + b->used;
        b->used += n;
        return r;
}

static void skip_ws(struct parser *ps)
{
        while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
                ps->p++;
}

static struct json *jfail(struct parser *ps, const char *why)
{
        if (!ps->why)
                ps->why = why;
        return NULL;
}

static int hex4(const char *p)
{
        int v = 0;
        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= c - '0';
                else if (c >= 'a' && c <= 'f')
                        v |= c - 'a' + 10;
                else if (c >= 'A' && c <= 'F')
                        v |= c - 'A' + 10;
                else
                        return -1;
        }
        return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
        if (cp < 0x80) {
                o[0] = (char) cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char) (0xc0 | cp >> 6);
                o[1] = (char) (0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char) (0xe0 | cp >> 12);
                o[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                o[2] = (char) (0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char) (0xf0 | cp >> 18);
        o[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char) (0x80 | (cp & 0x3f));
        return 4;
}

/* A string at ps->p (its opening quote): unescaped into the arena. */
static bool parse_string(struct parser *ps, const char **out, size_t *len)
{
        const char *q = ++ps->p;
        size_t n = 0;

        /* the unescaped text is never longer than the escaped one */
        while (q < ps->end && *q != '"') {
                if (*q == '\\')
                        q++;
                q++;
        }
        if (q >= ps->end)
                return jfail(ps, "a string without its end"), false;
        char *o = alloc(ps, (size_t) (q - ps->p) + 1);
        if (!o)
                return jfail(ps, "out of memory"), false;
        while (ps->p < ps->end && *ps->p != '"') {
                unsigned char c = (unsigned char) *ps->p;
                if (c < 0x20)
                        return jfail(ps, "a control character in a string"), false;
                if (c != '\\') {
                        o[n++] = (char) c;
                        ps->p++;
                        continue;
                }
                if (ps->end - ps->p < 2)
                        return jfail(ps, "a string without its end"), false;
                char e = ps->p[1];
                ps->p += 2;
                switch (e) {
                case '"': o[n++] = '"'; break;
                case '\\': o[n++] = '\\'; break;
                case '/': o[n++] = '/'; break;
                case 'b': o[n++] = '\b'; break;
                case 'f': o[n++] = '\f'; break;
                case 'n': o[n++] = '\n'; break;
                case 'r': o[n++] = '\r'; break;
                case 't': o[n++] = '\t'; break;
                case 'u': {
                        int cp = ps->end - ps->p >= 4 ? hex4(ps->p) : -1;
                        if (cp < 0)
                                return jfail(ps, "a bad \\u escape"), false;
                        ps->p += 4;
                        if (cp >= 0xd800 && cp < 0xdc00) {
                                int lo = ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u' ? hex4(ps->p + 2) : -1;
                                if (lo < 0xdc00 || lo > 0xdfff)
                                        return jfail(ps, "a lone surrogate in a \\u escape"), false;
                                ps->p += 6;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        } else if (cp >= 0xdc00 && cp <= 0xdfff)
                                return jfail(ps, "a lone surrogate in a \\u escape"), false;
                        n += put_utf8(o + n, (unsigned) cp);
                        break;
                }
                default:
                        return jfail(ps, "a bad escape in a string"), false;
                }
        }
        ps->p++;        /* the closing quote */
        o[n] = '\0';
        *out = o;
        *len = n;
        return true;
}

static struct json *parse_value(struct parser *ps);

/* Members of an array or object, gathered in a growing list, then copied into the arena. */
struct list {
        struct json **v;
        const char **k;
        size_t *kl;
        size_t n, cap;
};

static bool list_add(struct list *l, struct json *v, const char *k, size_t kl)
{
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 8;
                struct json **v2 = realloc(l->v, cap * sizeof *v2);
                if (v2)
                        l->v = v2;
                const char **k2 = realloc(l->k, cap * sizeof *k2);
                if (k2)
                        l->k = k2;
                size_t *kl2 = realloc(l->kl, cap * sizeof *kl2);
                if (kl2)
                        l->kl = kl2;
                if (!v2 || !k2 || !kl2)
                        return false;
                l->cap = cap;
        }
        l->v[l->n] = v;
        l->k[l->n] = k;
        l->kl[l->n] = kl;
        l->n++;
        return true;
}

static struct json *finish_list(struct parser *ps, struct json *j, struct list *l, bool object)
{
        j->n = l->n;
        j->v = alloc(ps, (l->n ? l->n : 1) * sizeof *j->v);
        if (object) {
                j->keys = alloc(ps, (l->n ? l->n : 1) * sizeof *j->keys);
                j->key_len = alloc(ps, (l->n ? l->n : 1) * sizeof *j->key_len);
        }
        if (!j->v || (object && (!j->keys || !j->key_len))) {
                j = jfail(ps, "out of memory");
                goto out;
        }
        if (l->n) {     /* an empty one has no list to copy (memcpy from NULL is undefined, even of 0 bytes) */
                memcpy(j->v, l->v, l->n * sizeof *j->v);
                if (object) {
                        memcpy(j->keys, l->k, l->n * sizeof *j->keys);
                        memcpy(j->key_len, l->kl, l->n * sizeof *j->key_len);
                }
        }
out:
        free(l->v);
        free(l->k);
        free(l->kl);
        return j;
}

static struct json *parse_container(struct parser *ps, struct json *j, bool object)
{
        struct list l = {0};
        char close = object ? '}' : ']';

        if (++ps->depth > JSON_DEPTH_MAX)
                return jfail(ps, "nested too deep");
        j->type = object ? JSON_OBJECT : JSON_ARRAY;
        ps->p++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                ps->depth--;
                return finish_list(ps, j, &l, object);
        }
        for (;;) {
                const char *k = NULL;
                size_t kl = 0;
                skip_ws(ps);
                if (object) {
                        if (ps->p >= ps->end || *ps->p != '"' || !parse_string(ps, &k, &kl))
                                goto bad;
                        skip_ws(ps);
                        if (ps->p >= ps->end || *ps->p != ':') {
                                jfail(ps, "no ':' after a member's name");
                                goto bad;
                        }
                        ps->p++;
                }
                struct json *v = parse_value(ps);
                if (!v)
                        goto bad;
                if (!list_add(&l, v, k, kl)) {
                        jfail(ps, "out of memory");
                        goto bad;
                }
                skip_ws(ps);
                if (ps->p < ps->end && *ps->p == ',') {
                        ps->p++;
                        continue;
                }
                if (ps->p < ps->end && *ps->p == close) {
                        ps->p++;
                        break;
                }
                jfail(ps, object ? "no ',' or '}' after a member" : "no ',' or ']' after an element");
                goto bad;
        }
        ps->depth--;
        return finish_list(ps, j, &l, object);
bad:
        free(l.v);
        free(l.k);
        free(l.kl);
        return jfail(ps, "a bad object or array");
}

static struct json *parse_number(struct parser *ps, struct json *j)
{
        const char *s = ps->p;
        bool frac = false;

        j->type = JSON_NUMBER;
        if (ps->p < ps->end && *ps->p == '-') {
                j->negative = true;
                ps->p++;
        }
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                return jfail(ps, "a bad number");
        if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')
                return jfail(ps, "a number with a leading 0");
        uint64_t u = 0;
        bool fits = true;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
                unsigned d = (unsigned) (*ps->p++ - '0');
                if (u > (UINT64_MAX - d) / 10)
                        fits = false;
                u = u * 10 + d;
        }
        if (ps->p < ps->end && *ps->p == '.') {
                frac = true;
                ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return jfail(ps, "a bad number");
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
                frac = true;
                ps->p++;
                if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
                        ps->p++;
                if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
                        return jfail(ps, "a bad number");
                while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
                        ps->p++;
        }
        size_t n = (size_t) (ps->p - s);
        char *t = alloc(ps, n + 1);
        if (!t)
                return jfail(ps, "out of memory");
        memcpy(t, s, n);
        t[n] = '\0';
        j->s = t;
        j->len = n;
        j->num = strtod(t, NULL);
        j->integer = !frac && fits;
        j->u = j->integer ? u : 0;
        return j;
}

static bool word(struct parser *ps, const char *w)
{
        size_t n = strlen(w);
        if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
                return false;
        ps->p += n;
        return true;
}

static struct json *parse_value(struct parser *ps)
{
        struct json *j;

        skip_ws(ps);
        if (ps->p >= ps->end)
                return jfail(ps, "a value is missing");
        j = alloc(ps, sizeof *j);
        if (!j)
                return jfail(ps, "out of memory");
        memset(j, 0, sizeof *j);
        switch (*ps->p) {
        case '{':
                return parse_container(ps, j, true);
        case '[':
                return parse_container(ps, j, false);
        case '"':
                j->type = JSON_STRING;
                return parse_string(ps, &j->s, &j->len) ? j : NULL;
        case 't':
        case 'f':
                j->type = JSON_BOOL;
                j->b = *ps->p == 't';
                return word(ps, j->b ? "true" : "false") ? j : jfail(ps, "not JSON");
        case 'n':
                j->type = JSON_NULL;
                return word(ps, "null") ? j : jfail(ps, "not JSON");
        default:
                return parse_number(ps, j);
        }
}

int json_parse(const char *text, size_t len, struct json_doc **doc, const struct json **root, char *err, size_t cap)
{
        struct parser ps = { .p = text, .end = text + len, .start = text };

        *doc = NULL;
        if (len > JSON_TEXT_MAX) {
                snprintf(err, cap, "a line of %zu bytes, over %d", len, JSON_TEXT_MAX);
                return -EINVAL;
        }
        ps.doc = calloc(1, sizeof *ps.doc);
        if (!ps.doc) {
                snprintf(err, cap, "out of memory");
                return -ENOMEM;
        }
        const struct json *j = parse_value(&ps);
        if (j) {
                skip_ws(&ps);
                if (ps.p != ps.end)
                        j = jfail(&ps, "something after the value");
        }
        if (!j) {
                snprintf(err, cap, "%s (at byte %zu)", ps.why ? ps.why : "not JSON", (size_t) (ps.p - ps.start));
                json_free(ps.doc);
                return -EINVAL;
        }
        *doc = ps.doc;
        *root = j;
        return 0;
}

void json_free(struct json_doc *doc)
{
        if (!doc)
                return;
        while (doc->blocks) {
                struct block *b = doc->blocks;
                doc->blocks = b->next;
                free(b);
        }
        free(doc);
}

const struct json *json_get(const struct json *o, const char *key)
{
        if (!o || o->type != JSON_OBJECT)
                return NULL;
        size_t kl = strlen(key);
        for (size_t i = 0; i < o->n; i++)
                if (o->key_len[i] == kl && memcmp(o->keys[i], key, kl) == 0)
                        return o->v[i];
        return NULL;
}

bool json_str(const struct json *o, const char *key, const char **s)
{
        const struct json *v = json_get(o, key);
        if (!v || v->type != JSON_STRING) {
                *s = "";
                return false;
        }
        *s = v->s;
        return true;
}

bool json_value_u64(const struct json *v, uint64_t *out)
{
        if (!v)
                return false;
        if (v->type == JSON_NUMBER) {
                if (!v->integer || v->negative)
                        return false;
                *out = v->u;
                return true;
        }
        if (v->type != JSON_STRING || v->len == 0 || v->len > 20)
                return false;
        uint64_t u = 0;
        for (size_t i = 0; i < v->len; i++) {
                unsigned d = (unsigned) (v->s[i] - '0');
                if (d > 9 || u > (UINT64_MAX - d) / 10)
                        return false;
                u = u * 10 + d;
        }
        *out = u;
        return true;
}

bool json_u64(const struct json *o, const char *key, uint64_t *v)
{
        return json_value_u64(json_get(o, key), v);
}
