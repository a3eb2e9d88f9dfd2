/* SPDX-License-Identifier: MIT */
/*
 * conf.c — the cluster configuration (/etc/dchat.conf): load, check, compare.
 *
 * Every key is described once, in a table (name, libconfig type, default,
 * range, where it is stored).  Loading walks the file's settings in the
 * order they are written and looks each one up, so the first problem in the
 * file is the one reported.  Nothing here logs an error: conf_load() returns
 * a negative errno and one message, "FILE:LINE: problem" (or "FILE: problem"
 * when no line applies), and the caller decides where it goes.
 */
#include <fcntl.h>
#include <libconfig.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "dchatd.h"
#include "secure.h"

#define ADDRESS_MAX (sizeof(((struct node_conf *) NULL)->address) - 1)
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

struct load {
        const char *path;
        char *err;
        size_t errlen;
        struct dchat_conf *c;
        const char *node;                       /* the file's node = "...", or NULL */
        bool have_cluster;
};

_printf_(5, 0)
static int failv(const struct load *l, const char *file, unsigned line, int r, const char *fmt, va_list ap) {
        size_t n;
        int k;

        if (!l->err || l->errlen == 0)
                return r;

        if (line > 0)
                k = snprintf(l->err, l->errlen, "%s:%u: ", file ?: l->path, line);
        else
                k = snprintf(l->err, l->errlen, "%s: ", file ?: l->path);
        n = k < 0 ? 0 : (size_t) k;
        if (n < l->errlen)
                vsnprintf(l->err + n, l->errlen - n, fmt, ap);
        return r;
}

/* An error at setting s (NULL: about the whole file); returns r. */
_printf_(4, 5)
static int fail(const struct load *l, const config_setting_t *s, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        failv(l, s ? config_setting_source_file(s) : NULL, s ? config_setting_source_line(s) : 0, r, fmt, ap);
        va_end(ap);
        return r;
}

_printf_(5, 6)
static int fail_at(const struct load *l, const char *file, unsigned line, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        failv(l, file, line, r, fmt, ap);
        va_end(ap);
        return r;
}

/* The key table ----------------------------------------------------------- */

enum store {
        STORE_NONE,             /* the setter does everything */
        STORE_PATH,             /* char[PATH_MAX]; max = longest allowed */
        STORE_USEC_FROM_MS,     /* uint64_t usec, written in ms */
        STORE_UINT,             /* unsigned */
        STORE_BOOL,             /* bool */
        STORE_GROUP,            /* char[]: a group name, max = longest; default DCHAT_DEFAULT_GROUP */
};

struct key {
        const char *name;
        int type;               /* CONFIG_TYPE_STRING, _INT (INT64 too), _BOOL, _GROUP */
        enum store store;
        size_t offset;          /* into struct dchat_conf */
        long long def, min, max;
        int (*set)(struct load *l, const struct key *k, const config_setting_t *s);
        /* read at the start only: a reload that changes it is refused (conf_restart_needed);
         * dchatd(8) and dchat.conf(5) list these, and test-conf holds them to this table */
        bool restart;
};

static int set_node(struct load *l, const struct key *k, const config_setting_t *s);
static int set_cluster(struct load *l, const struct key *k, const config_setting_t *s);
static int set_dme_algorithm(struct load *l, const struct key *k, const config_setting_t *s);

#define CONF_OFF(field) offsetof(struct dchat_conf, field)

/*
 * Every top-level key: name, type, storage, field, default, min, max, setter.
 * For STORE_PATH, max is the longest path allowed.  Keep dchat.conf(5) and
 * etc/dchat.conf in step with this table.
 */
static const struct key keys[] = {
        { "node",               CONFIG_TYPE_STRING, STORE_NONE,         0, 0, 0, 0, set_node, true },
        { "cluster",            CONFIG_TYPE_GROUP,  STORE_NONE,         0, 0, 0, 0, set_cluster, true },
        { "control_socket",     CONFIG_TYPE_STRING, STORE_PATH,         CONF_OFF(control_socket),
          0, 0, SUN_PATH_MAX, NULL, true },
        { "state_directory",    CONFIG_TYPE_STRING, STORE_PATH,         CONF_OFF(state_directory),
          0, 0, PATH_MAX - 1, NULL, true },
        { "post_timeout_ms",    CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(post_timeout_usec),
          10000, 100, 3600000, NULL, false },
        { "connect_timeout_ms", CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(connect_timeout_usec),
          3000, 100, 600000, NULL, false },
        { "reconnect_min_ms",   CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(reconnect_min_usec),
          100, 10, 60000, NULL, false },
        /* also at least reconnect_min_ms: checked once everything is read */
        { "reconnect_max_ms",   CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(reconnect_max_usec),
          5000, 10, 600000, NULL, false },
        /* failure detection: heartbeat_ms < suspect_after_ms < dead_after_ms, checked below */
        { "heartbeat_ms",       CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(heartbeat_usec),
          250, 10, 60000, NULL, false },
        { "suspect_after_ms",   CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(suspect_after_usec),
          1000, 20, 600000, NULL, false },
        { "dead_after_ms",      CONFIG_TYPE_INT,    STORE_USEC_FROM_MS, CONF_OFF(dead_after_usec),
          3000, 30, 3600000, NULL , false },
        /* a server group's leader election (libraft); heartbeats go at a fifth of it.  300: both
         * followers of a dead leader must time out (libraft's pre-vote), so failover takes about
         * 1.7 times this (make bench: 400 gave a median of 0.82 s, and 2.2 s after a split vote) */
        { "election_timeout_ms", CONFIG_TYPE_INT,   STORE_USEC_FROM_MS, CONF_OFF(election_timeout_usec),
          300, 50, 60000, NULL, false },
        { "batch_max",          CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(batch_max),
          64, 1, 1024, NULL, false },
        { "max_clients",        CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(max_clients),
          64, 1, 10000, NULL, false },
        { "reuse_permissions",  CONFIG_TYPE_BOOL,   STORE_BOOL,         CONF_OFF(reuse_permissions),
          true, 0, 1, NULL, false },
        /* the default, 0, is ricart-agrawala; every machine's state (requests, the coordinator's
         * queue) is the old algorithm's, and the whole cluster changes together: a restart */
        { "dme_algorithm",      CONFIG_TYPE_STRING, STORE_NONE,         0, 0, 0, 0, set_dme_algorithm, true },
        { "max_clients_per_user", CONFIG_TYPE_INT,  STORE_UINT,         CONF_OFF(max_clients_per_user),
          8, 1, 10000, NULL, false },
        { "max_queued_posts_per_user", CONFIG_TYPE_INT, STORE_UINT,     CONF_OFF(max_queued_posts_per_user),
          32, 1, 100000, NULL, false },
        /* post --hold stalls the whole cluster: users other than root only this long */
        { "hold_max_ms",        CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(hold_max_ms),
          0, 0, DCHAT_HOLD_MAX_MS, NULL, false },
        /* a peer's ring of recent protocol events (dchatctl trace); 0: none kept */
        { "trace_events",       CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(trace_events),
          10000, 0, 1000000, NULL, false },
        { "client_idle_timeout_ms", CONFIG_TYPE_INT, STORE_USEC_FROM_MS, CONF_OFF(client_idle_usec),
          300000, 100, 86400000, NULL, false },
        { "control_group",      CONFIG_TYPE_STRING, STORE_GROUP,        CONF_OFF(control_group),
          0, 1, 32, NULL, true },
        { "debug",              CONFIG_TYPE_BOOL,   STORE_BOOL,         CONF_OFF(debug),
          false, 0, 1, NULL, false },
        /* with debug: HEARTBEAT and RAFT frames too (several per heartbeat_ms on every link) */
        { "debug_heartbeats",   CONFIG_TYPE_BOOL,   STORE_BOOL,         CONF_OFF(debug_heartbeats),
          false, 0, 1, NULL, false },
        /* link security: see secure.c and dchat-protocol(7) */
        { "key_file",           CONFIG_TYPE_STRING, STORE_PATH,         CONF_OFF(key_file),
          0, 0, PATH_MAX - 1, NULL, true },
        /* read again by a reload (a host key added: dchatd.c, daemon_reload) */
        { "host_key_file",      CONFIG_TYPE_STRING, STORE_PATH,         CONF_OFF(host_key_file),
          0, 0, PATH_MAX - 1, NULL, false },
        { "insecure_plaintext", CONFIG_TYPE_BOOL,   STORE_BOOL,         CONF_OFF(insecure_plaintext),
          false, 0, 1, NULL, true },
        { "handshake_timeout_ms", CONFIG_TYPE_INT,  STORE_USEC_FROM_MS, CONF_OFF(handshake_timeout_usec),
          5000, 100, 600000, NULL, false },
        { "max_handshakes",     CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(max_handshakes),
          32, 1, 10000, NULL, false },
        { "max_links_in",       CONFIG_TYPE_INT,    STORE_UINT,         CONF_OFF(max_links_in),
          256, 1, 100000, NULL, false },
        /* strangers: see net.c (admission of inbound links) */
        { "max_handshakes_per_address", CONFIG_TYPE_INT, STORE_UINT,   CONF_OFF(max_handshakes_per_address),
          4, 1, 10000, NULL, false },
        { "first_message_timeout_ms", CONFIG_TYPE_INT, STORE_USEC_FROM_MS, CONF_OFF(first_message_timeout_usec),
          1000, 10, 600000, NULL, false },
};

static const struct key *key_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (strcmp(keys[i].name, name) == 0)
                        return &keys[i];
        return NULL;
}

static void *field(struct dchat_conf *c, size_t offset) {
        return (uint8_t *) c + offset;
}

static void keys_set_defaults(struct dchat_conf *c) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const struct key *k = &keys[i];

                switch (k->store) {
                case STORE_NONE:
                        break;
                case STORE_PATH:
                        *(char *) field(c, k->offset) = '\0';
                        break;
                case STORE_USEC_FROM_MS:
                        *(uint64_t *) field(c, k->offset) = (uint64_t) k->def * USEC_PER_MSEC;
                        break;
                case STORE_UINT:
                        *(unsigned *) field(c, k->offset) = (unsigned) k->def;
                        break;
                case STORE_BOOL:
                        *(bool *) field(c, k->offset) = k->def != 0;
                        break;
                case STORE_GROUP:
                        strcpy(field(c, k->offset), DCHAT_DEFAULT_GROUP);
                        break;
                }
        }
}

static const char *type_wanted(int type) {
        switch (type) {
        case CONFIG_TYPE_STRING:
                return "a string (in double quotes)";
        case CONFIG_TYPE_INT:
                return "an integer";
        case CONFIG_TYPE_BOOL:
                return "true or false";
        case CONFIG_TYPE_GROUP:
                return "a group ({ ... })";
        default:
                return "something else";
        }
}

static bool type_ok(const config_setting_t *s, int type) {
        int t = config_setting_type(s);

        if (type == CONFIG_TYPE_INT)
                return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
        return t == type;
}

static int key_apply(struct load *l, const struct key *k, const config_setting_t *s) {
        if (!type_ok(s, k->type))
                return fail(l, s, -EINVAL, "%s must be %s", k->name, type_wanted(k->type));

        switch (k->store) {
        case STORE_NONE:
                break;

        case STORE_PATH: {
                const char *v = config_setting_get_string(s);
                size_t n = strlen(v);

                /* "" means the default directory, resolved by the daemon */
                if (n > 0 && v[0] != '/')
                        return fail(l, s, -EINVAL, "%s must be an absolute path, not '%s'", k->name, v);
                if (n > (size_t) k->max)
                        return fail(l, s, -ENAMETOOLONG, "%s is too long (at most %lld bytes)", k->name, k->max);
                memcpy(field(l->c, k->offset), v, n + 1);
                break;
        }

        case STORE_USEC_FROM_MS:
        case STORE_UINT: {
                long long v = config_setting_get_int64(s);

                if (v < k->min || v > k->max)
                        return fail(l, s, -ERANGE, "%s = %lld is out of range (%lld..%lld)",
                                    k->name, v, k->min, k->max);
                if (k->store == STORE_UINT)
                        *(unsigned *) field(l->c, k->offset) = (unsigned) v;
                else
                        *(uint64_t *) field(l->c, k->offset) = (uint64_t) v * USEC_PER_MSEC;
                break;
        }

        case STORE_BOOL:
                *(bool *) field(l->c, k->offset) = config_setting_get_bool(s);
                break;

        case STORE_GROUP: {
                const char *v = config_setting_get_string(s);
                size_t n = strlen(v);

                if (n < (size_t) k->min || n > (size_t) k->max || v[0] == '-' ||
                    strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
                        return fail(l, s, -EINVAL, "%s must be a group name (1..%lld of letters, digits, "
                                    "'_', '.', '-', not starting with '-'), not '%s'", k->name, k->max, v);
                memcpy(field(l->c, k->offset), v, n + 1);
                break;
        }
        }

        return k->set ? k->set(l, k, s) : 0;
}

/* Addresses ---------------------------------------------------------------- */

/*
 * "HOST:PORT" or "[IPV6]:PORT", port 1..65535, resolved for TCP.  On error
 * returns -EINVAL and says why.
 */
static int address_resolve(const char *s, struct sockaddr_storage *sa, socklen_t *salen, const char **why) {
        struct addrinfo hints = {
                .ai_socktype = SOCK_STREAM,
                .ai_flags = AI_NUMERICSERV,
        };
        struct addrinfo *res = NULL;
        char host[ADDRESS_MAX + 1];
        const char *port, *end;
        size_t hlen;
        unsigned long p;
        int r;

        if (strlen(s) > ADDRESS_MAX) {
                *why = "too long";
                return -EINVAL;
        }

        if (s[0] == '[') {
                end = strchr(s, ']');
                if (!end || end[1] != ':') {
                        *why = "must be HOST:PORT or [IPV6]:PORT";
                        return -EINVAL;
                }
                hlen = (size_t) (end - s - 1);
                memcpy(host, s + 1, hlen);
                port = end + 2;
                hints.ai_family = AF_INET6;
                hints.ai_flags |= AI_NUMERICHOST;
        } else {
                end = strrchr(s, ':');
                if (!end) {
                        *why = "must be HOST:PORT or [IPV6]:PORT";
                        return -EINVAL;
                }
                hlen = (size_t) (end - s);
                if (memchr(s, ':', hlen)) {
                        *why = "write an IPv6 address as [IPV6]:PORT";
                        return -EINVAL;
                }
                memcpy(host, s, hlen);
                port = end + 1;
                hints.ai_family = AF_UNSPEC;
        }
        host[hlen] = '\0';

        if (hlen == 0) {
                *why = "no host before the port (must be HOST:PORT or [IPV6]:PORT)";
                return -EINVAL;
        }

        p = 0;
        if (port[0] == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port) ||
            (p = strtoul(port, NULL, 10)) < 1 || p > 65535) {
                *why = "the port must be a number from 1 to 65535";
                return -EINVAL;
        }

        r = getaddrinfo(host, port, &hints, &res);
        if (r != 0) {
                if (hints.ai_family == AF_INET6 && r != EAI_SYSTEM && r != EAI_MEMORY)
                        *why = "not an IPv6 address between the brackets";
                else
                        *why = r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r);
                return -EINVAL;
        }
        if (!res || res->ai_addrlen > sizeof(*sa)) {
                if (res)
                        freeaddrinfo(res);
                *why = "no usable address";
                return -EINVAL;
        }

        memset(sa, 0, sizeof(*sa));
        memcpy(sa, res->ai_addr, res->ai_addrlen);
        *salen = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

static bool sockaddr_same(const struct sockaddr_storage *a, socklen_t alen,
                          const struct sockaddr_storage *b, socklen_t blen) {
        if (a->ss_family != b->ss_family)
                return false;

        if (a->ss_family == AF_INET) {
                const struct sockaddr_in *x = (const struct sockaddr_in *) a;
                const struct sockaddr_in *y = (const struct sockaddr_in *) b;

                return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
        }
        if (a->ss_family == AF_INET6) {
                const struct sockaddr_in6 *x = (const struct sockaddr_in6 *) a;
                const struct sockaddr_in6 *y = (const struct sockaddr_in6 *) b;

                return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
                       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
        }
        return alen == blen && memcmp(a, b, alen) == 0;
}

/* The cluster --------------------------------------------------------------- */

static const struct node_conf *node_find(const struct dchat_conf *c, const char *name) {
        for (unsigned i = 0; i < c->n_servers; i++)
                if (strcmp(c->servers[i].name, name) == 0)
                        return &c->servers[i];
        for (unsigned i = 0; i < c->n_peers; i++)
                if (strcmp(c->peers[i].name, name) == 0)
                        return &c->peers[i];
        return NULL;
}

static const struct node_conf *node_find_address(const struct dchat_conf *c, const struct node_conf *n) {
        for (unsigned i = 0; i < c->n_servers; i++)
                if (sockaddr_same(&c->servers[i].sa, c->servers[i].salen, &n->sa, n->salen))
                        return &c->servers[i];
        for (unsigned i = 0; i < c->n_peers; i++)
                if (sockaddr_same(&c->peers[i].sa, c->peers[i].salen, &n->sa, n->salen))
                        return &c->peers[i];
        return NULL;
}

static const struct node_conf *node_find_key(const struct dchat_conf *c, const uint8_t key[SECURE_PK_BYTES]) {
        for (unsigned i = 0; i < c->n_servers; i++)
                if (c->servers[i].has_key && memcmp(c->servers[i].key, key, SECURE_PK_BYTES) == 0)
                        return &c->servers[i];
        for (unsigned i = 0; i < c->n_peers; i++)
                if (c->peers[i].has_key && memcmp(c->peers[i].key, key, SECURE_PK_BYTES) == 0)
                        return &c->peers[i];
        return NULL;
}

static const char *const entry_keys[] = { "name", "address", "key" };

/* One { name = "..."; address = "..."; [key = "...";] } of a list; what is "server" or "peer". */
static int parse_entry(struct load *l, const char *what, const config_setting_t *e, struct node_conf *n) {
        const config_setting_t *name, *addr;
        const struct node_conf *other;
        const char *v, *why = NULL;
        int r;

        for (int i = 0; i < config_setting_length(e); i++) {
                const config_setting_t *s = config_setting_get_elem(e, (unsigned) i);
                bool known = false;

                for (size_t j = 0; j < ELEMENTSOF(entry_keys); j++)
                        known = known || strcmp(config_setting_name(s), entry_keys[j]) == 0;
                if (!known)
                        return fail(l, s, -EINVAL, "unknown key '%s' in %s entry", config_setting_name(s), what);
        }

        name = config_setting_get_member(e, "name");
        if (!name)
                return fail(l, e, -EINVAL, "%s entry has no name", what);
        if (config_setting_type(name) != CONFIG_TYPE_STRING)
                return fail(l, name, -EINVAL, "name in %s entry must be %s", what, type_wanted(CONFIG_TYPE_STRING));
        v = config_setting_get_string(name);
        if (!node_name_valid(v))
                return fail(l, name, -EINVAL,
                            "invalid node name '%s' (1..%d characters of A-Z a-z 0-9 . _ -, not starting with '-')",
                            v, DCHAT_NAME_MAX);
        other = node_find(l->c, v);
        if (other)
                return fail(l, name, -EINVAL, "duplicate node name '%s' (first defined at line %d)", v, other->line);
        strcpy(n->name, v);
        n->line = config_setting_source_line(e);

        addr = config_setting_get_member(e, "address");
        if (!addr)
                return fail(l, e, -EINVAL, "%s entry '%s' has no address", what, n->name);
        if (config_setting_type(addr) != CONFIG_TYPE_STRING)
                return fail(l, addr, -EINVAL, "address in %s entry must be %s", what,
                            type_wanted(CONFIG_TYPE_STRING));
        v = config_setting_get_string(addr);
        if (strlen(v) > ADDRESS_MAX)
                return fail(l, addr, -EINVAL, "bad address '%.32s...': too long (at most %zu bytes)", v, ADDRESS_MAX);
        r = address_resolve(v, &n->sa, &n->salen, &why);
        if (r < 0)
                return fail(l, addr, r, "bad address '%s': %s", v, why);
        other = node_find_address(l->c, n);
        if (other)
                return fail(l, addr, -EINVAL, "duplicate address '%s' (same as '%s' at line %d)", v, other->name,
                            other->line);
        strcpy(n->address, v);

        /* its host key: one member's, never two's (the handshake proves a name by it) */
        const config_setting_t *key = config_setting_get_member(e, "key");
        if (!key)
                return 0;
        if (config_setting_type(key) != CONFIG_TYPE_STRING)
                return fail(l, key, -EINVAL, "key in %s entry must be %s", what, type_wanted(CONFIG_TYPE_STRING));
        v = config_setting_get_string(key);
        if (secure_pk_parse(v, n->key) < 0)
                return fail(l, key, -EINVAL, "bad key '%.60s' for %s: not a host's public key (44 characters of "
                            "base64, as `dchatctl keygen --host` or `dchatctl pubkey` print it)", v, n->name);
        other = node_find_key(l->c, n->key);
        if (other)
                return fail(l, key, -EINVAL, "the key of %s is %s's as well (line %d): each host has its own",
                            n->name, other->name, other->line);
        n->has_key = true;
        return 0;
}

/* cluster.servers (servers = true) or cluster.peers */
static int parse_list(struct load *l, const config_setting_t *cluster, bool servers) {
        const char *key = servers ? "servers" : "peers", *what = servers ? "server" : "peer";
        const config_setting_t *list = config_setting_get_member(cluster, key);
        struct node_conf *nodes = servers ? l->c->servers : l->c->peers;
        unsigned *n_nodes = servers ? &l->c->n_servers : &l->c->n_peers;
        unsigned cap = servers ? ELEMENTSOF(l->c->servers) : ELEMENTSOF(l->c->peers);
        int r, len;

        if (!list)
                return fail(l, cluster, -EINVAL, "missing '%s' list in cluster", key);
        /* an empty [] is an array, anything else must be a list of groups */
        if (!config_setting_is_list(list) && !(config_setting_is_array(list) && config_setting_length(list) == 0))
                return fail(l, list, -EINVAL,
                            "cluster.%s must be a list: ( { name = \"...\"; address = \"HOST:PORT\"; }, ... )", key);

        len = config_setting_length(list);
        if (len == 0)
                return fail(l, list, -EINVAL, servers ? "cluster.servers is empty: one server is required" :
                                                        "cluster.peers is empty: at least one peer is required");

        for (int i = 0; i < len; i++) {
                const config_setting_t *e = config_setting_get_elem(list, (unsigned) i);

                if ((unsigned) i >= cap) {
                        if (servers)
                                return fail(l, e, -E2BIG, "too many servers (at most %u)", cap);
                        return fail(l, e, -E2BIG, "too many peers (at most %u)", cap);
                }
                if (!config_setting_is_group(e))
                        return fail(l, e, -EINVAL,
                                    "each entry of cluster.%s must be a group: { name = \"...\"; address = \"HOST:PORT\"; }",
                                    key);
                r = parse_entry(l, what, e, &nodes[i]);
                if (r < 0)
                        return r;
                (*n_nodes)++;
        }
        /* A group decides by majority: with an even number one more server adds
         * no tolerance of failures.  Taken all the same: a group that grows or
         * shrinks at runtime (dchatctl server add, remove) passes through one,
         * and its hosts' files follow; a new group refuses to start with one
         * (join.c), and a running one warns (replica.c). */
        return 0;
}

static const char *const cluster_keys[] = { "servers", "peers" };

static int set_cluster(struct load *l, const struct key *k, const config_setting_t *s) {
        int r;

        (void) k;
        l->have_cluster = true;

        for (int i = 0; i < config_setting_length(s); i++) {
                const config_setting_t *m = config_setting_get_elem(s, (unsigned) i);
                bool known = false;

                for (size_t j = 0; j < ELEMENTSOF(cluster_keys); j++)
                        known = known || strcmp(config_setting_name(m), cluster_keys[j]) == 0;
                if (!known)
                        return fail(l, m, -EINVAL, "unknown key '%s' in cluster", config_setting_name(m));
        }

        /* both must be there before either is read */
        if (!config_setting_get_member(s, "servers"))
                return fail(l, s, -EINVAL, "missing 'servers' list in cluster");
        if (!config_setting_get_member(s, "peers"))
                return fail(l, s, -EINVAL, "missing 'peers' list in cluster");

        r = parse_list(l, s, true);
        if (r < 0)
                return r;
        return parse_list(l, s, false);
}

static int set_dme_algorithm(struct load *l, const struct key *k, const config_setting_t *s) {
        const char *v = config_setting_get_string(s);
        enum dme_algo a;

        (void) k;
        if (dme_algo_parse(v, &a) < 0)
                return fail(l, s, -EINVAL, "dme_algorithm must be \"ricart-agrawala\", \"central\" or \"token\", "
                            "not '%s'", v);
        l->c->dme_algorithm = a;
        return 0;
}

static int set_node(struct load *l, const struct key *k, const config_setting_t *s) {
        const char *v = config_setting_get_string(s);

        (void) k;
        if (!node_name_valid(v))
                return fail(l, s, -EINVAL,
                            "invalid node name '%s' (1..%d characters of A-Z a-z 0-9 . _ -, not starting with '-')",
                            v, DCHAT_NAME_MAX);
        l->node = v;
        return 0;
}

/* Loading -------------------------------------------------------------------- */

static void config_destroyp(config_t *cfg) {
        config_destroy(cfg);
}

/* Pairs of keys whose values must be in order (lo <= hi, or lo < hi when strict). */
static const struct order {
        const char *lo, *hi;
        size_t lo_off, hi_off;
        bool strict;
} orders[] = {
        { "reconnect_min_ms", "reconnect_max_ms", CONF_OFF(reconnect_min_usec), CONF_OFF(reconnect_max_usec), false },
        { "heartbeat_ms", "suspect_after_ms", CONF_OFF(heartbeat_usec), CONF_OFF(suspect_after_usec), true },
        { "suspect_after_ms", "dead_after_ms", CONF_OFF(suspect_after_usec), CONF_OFF(dead_after_usec), true },
};

static int check_order(struct load *l, const config_t *cfg) {
        for (size_t i = 0; i < ELEMENTSOF(orders); i++) {
                const struct order *o = &orders[i];
                unsigned long long lo = *(uint64_t *) field(l->c, o->lo_off) / USEC_PER_MSEC;
                unsigned long long hi = *(uint64_t *) field(l->c, o->hi_off) / USEC_PER_MSEC;
                const config_setting_t *smin = config_lookup(cfg, o->lo);
                const config_setting_t *smax = config_lookup(cfg, o->hi);

                if (o->strict ? lo < hi : lo <= hi)
                        continue;
                if (smax)
                        return fail(l, smax, -ERANGE, "%s = %llu is %s %s (%llu)", o->hi, hi,
                                    o->strict ? "not greater than" : "less than", o->lo, lo);
                return fail(l, smin, -ERANGE, "%s = %llu is %s %s (default %llu)", o->lo, lo,
                            o->strict ? "not less than" : "greater than", o->hi, hi);
        }
        return 0;
}

/* --- the cluster definition, compared between nodes ----------------------------- */

struct member {
        uint8_t role;
        const char *name;
        char address[80];               /* numeric, as sockaddr_format writes it */
};

static int member_cmp(const void *a, const void *b)
{
        return strcmp(((const struct member *) a)->name, ((const struct member *) b)->name);
}

/* Every member of c, in name order, with numeric addresses: what "the same file" means. */
static unsigned members(const struct dchat_conf *c, struct member *m)
{
        unsigned n = 0;

        for (unsigned i = 0; i < c->n_servers; i++, n++) {
                m[n] = (struct member) { ROLE_SERVER, c->servers[i].name, "" };
                sockaddr_format((const struct sockaddr *) &c->servers[i].sa, c->servers[i].salen, m[n].address,
                                sizeof m[n].address);
        }
        for (unsigned i = 0; i < c->n_peers; i++, n++) {
                m[n] = (struct member) { ROLE_PEER, c->peers[i].name, "" };
                sockaddr_format((const struct sockaddr *) &c->peers[i].sa, c->peers[i].salen, m[n].address,
                                sizeof m[n].address);
        }
        qsort(m, n, sizeof *m, member_cmp);
        return n;
}

#define MEMBERS_MAX (ELEMENTSOF(((struct dchat_conf *) NULL)->servers) + DCHAT_PEERS_MAX)

/* FNV-1a, 64 bits: a digest to tell two definitions apart, not a defence against anyone */
static uint64_t cluster_digest(const struct dchat_conf *c)
{
        struct member m[MEMBERS_MAX];
        unsigned n = members(c, m);
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (unsigned i = 0; i < n; i++) {
                char line[DCHAT_NAME_MAX + 96];
                int len = snprintf(line, sizeof line, "%s %s %s\n", role_name(m[i].role), m[i].name, m[i].address);
                for (int k = 0; k < len && k < (int) sizeof line; k++)
                        h = (h ^ (uint8_t) line[k]) * UINT64_C(0x100000001b3);
        }
        /* nodes that run different algorithms do not exclude each other: their HELLOs say so
         * (config-mismatch).  Ricart–Agrawala's digest is what it was before the setting existed. */
        if (c->dme_algorithm != DME_RICART_AGRAWALA)
                for (const char *a = dme_algo_name(c->dme_algorithm); *a; a++)
                        h = (h ^ (uint8_t) *a) * UINT64_C(0x100000001b3);
        return h ? h : 1;       /* 0 means "not sent" */
}

/* m becomes c's CLUSTER message; its members are written into b, which must outlive m. */
void conf_cluster_msg(const struct dchat_conf *c, struct wbuf *b, struct dchat_msg *msg)
{
        struct member m[MEMBERS_MAX];
        unsigned n = members(c, m);

        wbuf_reset(b);
        for (unsigned i = 0; i < n; i++) {
                wbuf_put_u8(b, m[i].role);
                wbuf_put_str(b, m[i].name, strlen(m[i].name));
                wbuf_put_str(b, m[i].address, strlen(m[i].address));
        }
        *msg = (struct dchat_msg) { .type = MSG_CLUSTER,
                                    .cluster = { c->cluster_digest, (uint16_t) n, b->data, b->len } };
}

void conf_cluster_report(const struct dchat_conf *c, const char *who, const struct dchat_msg *m, uint64_t *reported)
{
        char diff[768];

        if (m->cluster.digest == *reported)
                return;
        *reported = m->cluster.digest;
        conf_cluster_diff(c, who, m, diff, sizeof diff);
        log_event(EV_CONFIG_MISMATCH, &(struct event_fields) { .peer = who },
                  "%s's cluster definition differs from this node's (%s): %s; every host needs the same "
                  "cluster section (dchat.conf(5))", who, c->path,
                  diff[0] ? diff : "the same members, but another digest (another dme_algorithm, or another "
                  "version of dchatd?)");
}

_printf_(3, 4)
static void add(char *buf, size_t cap, const char *fmt, ...)
{
        size_t len = strlen(buf);
        va_list ap;

        if (len + 3 >= cap)
                return;
        if (len)
                len += (size_t) snprintf(buf + len, cap - len, "; ");
        va_start(ap, fmt);
        vsnprintf(buf + len, cap - len, fmt, ap);
        va_end(ap);
}

void conf_cluster_diff(const struct dchat_conf *c, const char *who, const struct dchat_msg *msg, char *buf, size_t cap)
{
        struct member m[MEMBERS_MAX];
        bool seen[MEMBERS_MAX] = { false };
        unsigned n = members(c, m);
        struct rbuf r = { .p = msg->cluster.p, .len = msg->cluster.len };
        struct dchat_str name, address;
        uint8_t role;

        buf[0] = '\0';
        while (proto_cluster_next(&r, &role, &name, &address) > 0) {
                unsigned i;
                for (i = 0; i < n; i++)
                        if (strlen(m[i].name) == name.len && !memcmp(m[i].name, name.p, name.len))
                                break;
                if (i == n) {
                        add(buf, cap, "%s's file has %s %.*s at %.*s, this one has not", who, role_name(role),
                            (int) name.len, name.p, (int) address.len, address.p);
                        continue;
                }
                seen[i] = true;
                if (m[i].role != role || strlen(m[i].address) != address.len ||
                    memcmp(m[i].address, address.p, address.len) != 0)
                        add(buf, cap, "%s's file has %.*s as %s at %.*s, this one as %s at %s", who, (int) name.len,
                            name.p, role_name(role), (int) address.len, address.p, role_name(m[i].role), m[i].address);
        }
        for (unsigned i = 0; i < n; i++)
                if (!seen[i])
                        add(buf, cap, "this file has %s %s at %s, %s's has not", role_name(m[i].role), m[i].name,
                            m[i].address, who);
}

int conf_load(const char *path, const char *node, struct dchat_conf *c, char *err, size_t errlen) {
        _cleanup_(config_destroyp) config_t cfg;
        _cleanup_(freep) struct dchat_conf *n = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct load l = { .path = path, .err = err, .errlen = errlen };
        const config_setting_t *root;
        char host[HOST_NAME_MAX + 1];
        const struct node_conf *self;
        struct stat st;
        FILE *f;
        int r;

        config_init(&cfg);
        if (err && errlen > 0)
                err[0] = '\0';

        n = calloc(1, sizeof(*n));
        if (!n)
                return fail(&l, NULL, -ENOMEM, "out of memory");
        l.c = n;

        if (strlen(path) >= sizeof(n->path))
                return fail(&l, NULL, -ENAMETOOLONG, "path too long");
        strcpy(n->path, path);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return fail(&l, NULL, -errno, "cannot open: %s", strerror(errno));
        if (fstat(fd, &st) < 0)
                return fail(&l, NULL, -errno, "cannot open: %s", strerror(errno));
        if (S_ISDIR(st.st_mode))
                return fail(&l, NULL, -EISDIR, "cannot open: %s", strerror(EISDIR));

        f = fdopen(fd, "re");
        if (!f)
                return fail(&l, NULL, -errno, "cannot open: %s", strerror(errno));
        fd = -EBADF;    /* owned by f now */
        r = config_read(&cfg, f);
        fclose(f);
        if (r != CONFIG_TRUE) {
                int line = config_error_line(&cfg);

                return fail_at(&l, config_error_file(&cfg), line > 0 ? (unsigned) line : 0,
                               config_error_type(&cfg) == CONFIG_ERR_FILE_IO ? -EIO : -EINVAL,
                               "%s", config_error_text(&cfg) ?: "cannot parse");
        }

        keys_set_defaults(n);

        root = config_root_setting(&cfg);
        for (int i = 0; i < config_setting_length(root); i++) {
                const config_setting_t *s = config_setting_get_elem(root, (unsigned) i);
                const struct key *k = key_find(config_setting_name(s));

                if (!k)
                        return fail(&l, s, -EINVAL, "unknown key '%s'", config_setting_name(s));
                r = key_apply(&l, k, s);
                if (r < 0)
                        return r;
        }

        if (!l.have_cluster)
                return fail(&l, NULL, -EINVAL,
                            "missing 'cluster' group: cluster = { servers = ( ... ); peers = ( ... ); };");

        r = check_order(&l, &cfg);
        if (r < 0)
                return r;

        /* who are we? -n, else node = "...", else the hostname up to the first dot */
        if (!node)
                node = l.node;
        if (!node) {
                if (gethostname(host, sizeof(host)) < 0)
                        return fail(&l, NULL, -errno, "cannot get the hostname: %s", strerror(errno));
                host[sizeof(host) - 1] = '\0';
                host[strcspn(host, ".")] = '\0';
                node = host;
        }

        self = node_find(n, node);
        if (!self)
                /* point at `node = ...` when the name came from the file */
                return fail(&l, node == l.node ? config_lookup(&cfg, "node") : NULL, -ENOENT,
                            "this host '%s' is in neither cluster.servers nor cluster.peers "
                            "(use -n NAME or node = \"...\")", node);
        strcpy(n->node, self->name);
        if (self >= n->servers && self < n->servers + n->n_servers) {
                n->role = ROLE_SERVER;
                n->self = (unsigned) (self - n->servers);
        } else {
                n->role = ROLE_PEER;
                n->self = (unsigned) (self - n->peers);
        }

        n->cluster_digest = cluster_digest(n);
        *c = *n;
        return 0;
}

/* Reload ---------------------------------------------------------------------- */

static bool nodes_equal(const struct node_conf *a, unsigned na, const struct node_conf *b, unsigned nb) {
        if (na != nb)
                return false;
        for (unsigned i = 0; i < na; i++)
                if (strcmp(a[i].name, b[i].name) != 0 || strcmp(a[i].address, b[i].address) != 0 ||
                    !sockaddr_same(&a[i].sa, a[i].salen, &b[i].sa, b[i].salen))
                        return false;
        return true;
}

/* Has key k a different value in a and b?  (For node and cluster: the node, its role, the lists.) */
static bool key_differs(const struct key *k, const struct dchat_conf *a, const struct dchat_conf *b) {
        const void *fa = (const uint8_t *) a + k->offset, *fb = (const uint8_t *) b + k->offset;

        switch (k->store) {
        case STORE_NONE:
                if (k->set == set_node)
                        return strcmp(a->node, b->node) != 0 || a->role != b->role;
                if (k->set == set_dme_algorithm)
                        return a->dme_algorithm != b->dme_algorithm;
                return !nodes_equal(a->servers, a->n_servers, b->servers, b->n_servers) ||
                       !nodes_equal(a->peers, a->n_peers, b->peers, b->n_peers);
        case STORE_PATH:
        case STORE_GROUP:
                return strcmp(fa, fb) != 0;
        case STORE_USEC_FROM_MS:
                return *(const uint64_t *) fa != *(const uint64_t *) fb;
        case STORE_UINT:
                return *(const unsigned *) fa != *(const unsigned *) fb;
        case STORE_BOOL:
                return *(const bool *) fa != *(const bool *) fb;
        }
        return false;
}

/* The value of key k in c, as the file would write it (not for node and cluster). */
static void key_format(const struct key *k, const struct dchat_conf *c, char *buf, size_t cap) {
        const void *f = (const uint8_t *) c + k->offset;

        switch (k->store) {
        case STORE_NONE:
                snprintf(buf, cap, "...");
                break;
        case STORE_PATH:
        case STORE_GROUP:
                snprintf(buf, cap, "\"%s\"", (const char *) f);
                break;
        case STORE_USEC_FROM_MS:
                snprintf(buf, cap, "%llu", (unsigned long long) (*(const uint64_t *) f / USEC_PER_MSEC));
                break;
        case STORE_UINT:
                snprintf(buf, cap, "%u", *(const unsigned *) f);
                break;
        case STORE_BOOL:
                snprintf(buf, cap, "%s", *(const bool *) f ? "true" : "false");
                break;
        }
}

const char *conf_restart_needed(const struct dchat_conf *old, const struct dchat_conf *new) {
        static char why[64];

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (!keys[i].restart || !key_differs(&keys[i], old, new))
                        continue;
                /* the lists: say which one */
                if (keys[i].set == set_cluster)
                        return !nodes_equal(old->servers, old->n_servers, new->servers, new->n_servers)
                               ? "cluster.servers changed" : "cluster.peers changed";
                if (keys[i].set == set_node && strcmp(old->node, new->node) == 0)
                        return "role changed";
                snprintf(why, sizeof why, "%s changed", keys[i].name);
                return why;
        }
        return NULL;
}

unsigned conf_host_keys(const struct dchat_conf *c) {
        unsigned n = 0;

        for (unsigned i = 0; i < c->n_servers; i++)
                n += c->servers[i].has_key;
        for (unsigned i = 0; i < c->n_peers; i++)
                n += c->peers[i].has_key;
        return n;
}

const struct node_conf *conf_node(const struct dchat_conf *c, const char *name) {
        return node_find(c, name);
}

/* Do the lists give the same members the same host keys?  (A reload takes new ones: nodes_equal ignores them.) */
static bool host_keys_equal(const struct node_conf *a, const struct node_conf *b, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (a[i].has_key != b[i].has_key || (a[i].has_key && memcmp(a[i].key, b[i].key, sizeof a[i].key)))
                        return false;
        return true;
}

void conf_changes(const struct dchat_conf *old, const struct dchat_conf *new, char *buf, size_t cap) {
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < ELEMENTSOF(keys) && off < cap; i++) {
                char a[48], b[48];
                if (keys[i].restart || !key_differs(&keys[i], old, new))
                        continue;
                key_format(&keys[i], old, a, sizeof a);
                key_format(&keys[i], new, b, sizeof b);
                off += (size_t) snprintf(buf + off, cap - off, "%s%s %s -> %s", off ? ", " : "", keys[i].name, a, b);
        }
        /* (called once conf_restart_needed found the same members in both) */
        if (off < cap && (!host_keys_equal(old->servers, new->servers, new->n_servers) ||
                          !host_keys_equal(old->peers, new->peers, new->n_peers)))
                off += (size_t) snprintf(buf + off, cap - off, "%smembers' host keys (%u listed -> %u)", off ? ", " : "",
                                         conf_host_keys(old), conf_host_keys(new));
        if (off >= cap && cap > 4)
                strcpy(buf + cap - 4, "...");
}

const char *conf_key_name(size_t i) {
        return i < ELEMENTSOF(keys) ? keys[i].name : NULL;
}

bool conf_key_needs_restart(size_t i) {
        return i < ELEMENTSOF(keys) && keys[i].restart;
}

void conf_log_summary(const struct dchat_conf *c) {
        const struct node_conf *self = c->role == ROLE_SERVER ? &c->servers[c->self] : &c->peers[c->self];

        log_info("Configuration %s: node %s, role %s, address %s; server %s at %s; %u peer%s; "
                 "post_timeout_ms=%llu connect_timeout_ms=%llu reconnect_ms=%llu..%llu "
                 "heartbeat_ms=%llu suspect_after_ms=%llu dead_after_ms=%llu batch_max=%u max_clients=%u max_clients_per_user=%u "
                 "max_queued_posts_per_user=%u hold_max_ms=%u trace_events=%u client_idle_timeout_ms=%llu control_group=%s "
                 "reuse_permissions=%s dme_algorithm=%s debug=%s debug_heartbeats=%s control_socket=%s state_directory=%s "
                 "key_file=%s host_key_file=%s host_keys=%u insecure_plaintext=%s handshake_timeout_ms=%llu max_handshakes=%u max_links_in=%u "
                 "max_handshakes_per_address=%u first_message_timeout_ms=%llu",
                 c->path, c->node, c->role == ROLE_SERVER ? "server" : "peer", self->address,
                 c->n_servers > 0 ? c->servers[0].name : "-", c->n_servers > 0 ? c->servers[0].address : "-",
                 c->n_peers, c->n_peers == 1 ? "" : "s",
                 (unsigned long long) (c->post_timeout_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->connect_timeout_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->reconnect_min_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->reconnect_max_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->heartbeat_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->suspect_after_usec / USEC_PER_MSEC),
                 (unsigned long long) (c->dead_after_usec / USEC_PER_MSEC),
                 c->batch_max, c->max_clients, c->max_clients_per_user, c->max_queued_posts_per_user,
                 c->hold_max_ms, c->trace_events, (unsigned long long) (c->client_idle_usec / USEC_PER_MSEC),
                 c->control_group, c->reuse_permissions ? "yes" : "no", dme_algo_name(c->dme_algorithm), c->debug ? "yes" : "no",
                 c->debug_heartbeats ? "yes" : "no",
                 c->control_socket[0] ? c->control_socket : "(default)",
                 c->state_directory[0] ? c->state_directory : "(default)",
                 c->key_file[0] ? c->key_file : "(default)", c->host_key_file[0] ? c->host_key_file : "(default)",
                 conf_host_keys(c), c->insecure_plaintext ? "yes" : "no",
                 (unsigned long long) (c->handshake_timeout_usec / USEC_PER_MSEC), c->max_handshakes,
                 c->max_links_in, c->max_handshakes_per_address,
                 (unsigned long long) (c->first_message_timeout_usec / USEC_PER_MSEC));
}
