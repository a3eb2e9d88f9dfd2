/* SPDX-License-Identifier: MIT */
/*
 * test-conf.c — conf_load() on every fixture in tests/conf/ (the exact error
 * message of each bad one), the example configs in etc/, and
 * conf_restart_needed(), and the list of settings that need a restart in
 * dchatd(8) and dchat.conf(5) against the key table.
 *
 * Fixtures are found under $DCHAT_SRCDIR/tests/conf, or tests/conf when
 * DCHAT_SRCDIR is not set (run from the top of the tree).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "dchatd.h"
#include "secure.h"
#include "tap.h"

static char conf_dir[PATH_MAX / 2];
static char etc_dir[PATH_MAX / 2];
static char man_dir[PATH_MAX / 2];

static const char *fixture(const char *name) {
        static char buf[4][PATH_MAX];
        static unsigned i;
        char *p = buf[i++ % ELEMENTSOF(buf)];

        snprintf(p, PATH_MAX, "%s/%s", conf_dir, name);
        return p;
}

static const char *etc_file(const char *name) {
        static char buf[PATH_MAX];

        snprintf(buf, sizeof buf, "%s/%s", etc_dir, name);
        return buf;
}

/* Bad files: the error is "<path><suffix>". ------------------------------- */

struct bad {
        const char *file;
        const char *node;       /* -n, or NULL */
        int r;
        const char *suffix;
};

#define NAME_RULE "(1..64 characters of A-Z a-z 0-9 . _ -, not starting with '-')"
#define HOST_PORT "must be HOST:PORT or [IPV6]:PORT"
#define PORT_RANGE "the port must be a number from 1 to 65535"

static const struct bad bad[] = {
        /* syntax */
        { "bad-syntax.conf", NULL, -EINVAL, ":4: syntax error" },
        /* unknown keys */
        { "bad-unknown-key.conf", NULL, -EINVAL, ":7: unknown key 'post_timeout'" },
        { "bad-unknown-cluster.conf", NULL, -EINVAL, ":5: unknown key 'clients' in cluster" },
        { "bad-unknown-entry.conf", NULL, -EINVAL, ":6: unknown key 'adress' in peer entry" },
        /* types */
        { "bad-type-int.conf", NULL, -EINVAL, ":7: post_timeout_ms must be an integer" },
        { "bad-type-float.conf", NULL, -EINVAL, ":7: connect_timeout_ms must be an integer" },
        { "bad-type-bool.conf", NULL, -EINVAL, ":7: debug must be true or false" },
        { "bad-type-bool-heartbeats.conf", NULL, -EINVAL, ":7: debug_heartbeats must be true or false" },
        { "bad-type-node.conf", NULL, -EINVAL, ":1: node must be a string (in double quotes)" },
        { "bad-type-path.conf", NULL, -EINVAL, ":7: state_directory must be a string (in double quotes)" },
        { "bad-control-group.conf", NULL, -EINVAL, ":7: control_group must be a group name (1..32 of letters, "
          "digits, '_', '.', '-', not starting with '-'), not '-wheel'" },
        { "bad-dme-algorithm.conf", NULL, -EINVAL, ":7: dme_algorithm must be \"ricart-agrawala\", \"central\" or "
          "\"token\", not 'paxos'" },
        { "bad-type-dme-algorithm.conf", NULL, -EINVAL, ":7: dme_algorithm must be a string (in double quotes)" },
        { "bad-range-queued-posts.conf", NULL, -ERANGE,
          ":7: max_queued_posts_per_user = 0 is out of range (1..100000)" },
        { "bad-range-hold.conf", NULL, -ERANGE, ":7: hold_max_ms = 30001 is out of range (0..30000)" },
        { "bad-range-trace-events.conf", NULL, -ERANGE, ":7: trace_events = 1000001 is out of range (0..1000000)" },
        { "bad-range-idle.conf", NULL, -ERANGE, ":7: client_idle_timeout_ms = 99 is out of range (100..86400000)" },
        { "bad-range-first-message.conf", NULL, -ERANGE,
          ":7: first_message_timeout_ms = 5 is out of range (10..600000)" },
        { "bad-type-cluster.conf", NULL, -EINVAL, ":2: cluster must be a group ({ ... })" },
        { "bad-type-list.conf", NULL, -EINVAL,
          ":3: cluster.servers must be a list: ( { name = \"...\"; address = \"HOST:PORT\"; }, ... )" },
        { "bad-type-entry.conf", NULL, -EINVAL,
          ":5: each entry of cluster.peers must be a group: { name = \"...\"; address = \"HOST:PORT\"; }" },
        { "bad-type-name.conf", NULL, -EINVAL, ":5: name in peer entry must be a string (in double quotes)" },
        { "bad-type-address.conf", NULL, -EINVAL, ":5: address in peer entry must be a string (in double quotes)" },
        /* ranges */
        { "bad-range-low.conf", NULL, -ERANGE, ":7: post_timeout_ms = 99 is out of range (100..3600000)" },
        { "bad-range-high.conf", NULL, -ERANGE, ":7: batch_max = 1025 is out of range (1..1024)" },
        { "bad-range-negative.conf", NULL, -ERANGE, ":7: max_clients = -1 is out of range (1..10000)" },
        { "bad-range-int64.conf", NULL, -ERANGE,
          ":7: connect_timeout_ms = 9999999999 is out of range (100..600000)" },
        { "bad-reconnect.conf", NULL, -ERANGE, ":8: reconnect_max_ms = 500 is less than reconnect_min_ms (1000)" },
        { "bad-reconnect-default.conf", NULL, -ERANGE,
          ":7: reconnect_min_ms = 10000 is greater than reconnect_max_ms (default 5000)" },
        /* structure */
        { "bad-no-cluster.conf", NULL, -EINVAL,
          ": missing 'cluster' group: cluster = { servers = ( ... ); peers = ( ... ); };" },
        { "bad-no-servers.conf", NULL, -EINVAL, ":2: missing 'servers' list in cluster" },
        { "bad-no-peers.conf", NULL, -EINVAL, ":2: missing 'peers' list in cluster" },
        { "bad-servers-empty.conf", NULL, -EINVAL, ":3: cluster.servers is empty: one server is required" },
        { "bad-servers-empty-array.conf", NULL, -EINVAL, ":3: cluster.servers is empty: one server is required" },
        { "bad-eight-servers.conf", NULL, -E2BIG, ":10: too many servers (at most 7)" },
        { "bad-server-is-peer.conf", NULL, -EINVAL, ":6: duplicate node name 'node1' (first defined at line 3)" },
        { "bad-peers-empty.conf", NULL, -EINVAL, ":4: cluster.peers is empty: at least one peer is required" },
        { "bad-too-many-peers.conf", NULL, -E2BIG, ":69: too many peers (at most 64)" },
        { "bad-no-name.conf", NULL, -EINVAL, ":5: peer entry has no name" },
        { "bad-no-address.conf", NULL, -EINVAL, ":5: peer entry 'node2' has no address" },
        /* names */
        { "bad-dup-name.conf", NULL, -EINVAL, ":6: duplicate node name 'node1' (first defined at line 4)" },
        { "bad-dup-name-server.conf", NULL, -EINVAL, ":5: duplicate node name 'master' (first defined at line 3)" },
        { "bad-name-invalid.conf", NULL, -EINVAL, ":5: invalid node name 'node 2' " NAME_RULE },
        { "bad-name-dash.conf", NULL, -EINVAL, ":3: invalid node name '-master' " NAME_RULE },
        { "bad-name-empty.conf", NULL, -EINVAL, ":5: invalid node name '' " NAME_RULE },
        { "bad-name-too-long.conf", NULL, -EINVAL,
          ":5: invalid node name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn' " NAME_RULE },
        { "bad-node-invalid.conf", NULL, -EINVAL, ":1: invalid node name 'node/1' " NAME_RULE },
        { "bad-not-member.conf", NULL, -ENOENT,
          ":1: this host 'node3' is in neither cluster.servers nor cluster.peers (use -n NAME or node = \"...\")" },
        /* addresses */
        { "bad-dup-address.conf", NULL, -EINVAL, ":5: duplicate address '10.0.0.2:8001' (same as 'node1' at line 4)" },
        { "bad-dup-address-ipv4.conf", NULL, -EINVAL,
          ":6: duplicate address '127.1:8000' (same as 'master' at line 4)" },
        { "bad-dup-address-ipv6.conf", NULL, -EINVAL,
          ":5: duplicate address '[0:0:0:0:0:0:0:1]:8001' (same as 'node1' at line 4)" },
        { "bad-address-no-port.conf", NULL, -EINVAL, ":5: bad address '10.0.0.3': " HOST_PORT },
        { "bad-address-empty-port.conf", NULL, -EINVAL, ":5: bad address '10.0.0.3:': " PORT_RANGE },
        { "bad-address-port-zero.conf", NULL, -EINVAL, ":5: bad address '10.0.0.3:0': " PORT_RANGE },
        { "bad-address-port-big.conf", NULL, -EINVAL, ":5: bad address '10.0.0.3:65536': " PORT_RANGE },
        { "bad-address-port-name.conf", NULL, -EINVAL, ":5: bad address '10.0.0.3:http': " PORT_RANGE },
        { "bad-address-no-host.conf", NULL, -EINVAL,
          ":5: bad address ':8001': no host before the port (" HOST_PORT ")" },
        { "bad-address-ipv6-brackets.conf", NULL, -EINVAL,
          ":5: bad address '::1:8001': write an IPv6 address as [IPV6]:PORT" },
        { "bad-address-bracket.conf", NULL, -EINVAL, ":5: bad address '[::1:8001': " HOST_PORT },
        { "bad-address-bracket-colon.conf", NULL, -EINVAL, ":5: bad address '[::1]8001': " HOST_PORT },
        { "bad-address-ipv6-invalid.conf", NULL, -EINVAL,
          ":5: bad address '[fe80::zz]:8001': not an IPv6 address between the brackets" },
        { "bad-address-ipv4-brackets.conf", NULL, -EINVAL,
          ":5: bad address '[10.0.0.3]:8001': not an IPv6 address between the brackets" },
        { "bad-address-too-long.conf", NULL, -EINVAL,
          ":5: bad address 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': too long (at most 127 bytes)" },
        /* paths */
        { "bad-path-relative.conf", NULL, -EINVAL,
          ":7: control_socket must be an absolute path, not 'run/dchatd.sock'" },
        { "bad-path-too-long.conf", NULL, -ENAMETOOLONG, ":7: control_socket is too long (at most 107 bytes)" },
        /* host keys */
        { "bad-key-malformed.conf", NULL, -EINVAL,
          ":7: bad key 'not a key' for node2: not a host's public key (44 characters of base64, as "
          "`dchatctl keygen --host` or `dchatctl pubkey` print it)" },
        { "bad-key-twice.conf", NULL, -EINVAL, ":8: the key of node2 is master's as well (line 3): each host has its own" },
        { "bad-key-type.conf", NULL, -EINVAL, ":4: key in peer entry must be a string (in double quotes)" },
        /* -n NAME that is not in the file */
        { "good-minimal.conf", "node3", -ENOENT,
          ": this host 'node3' is in neither cluster.servers nor cluster.peers (use -n NAME or node = \"...\")" },
};

static void test_bad(void) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                const struct bad *b = &bad[i];
                struct dchat_conf c, saved;
                char err[1024], want[2048];
                const char *path = fixture(b->file);
                int r;

                memset(&c, 0x5a, sizeof c);
                saved = c;
                snprintf(want, sizeof want, "%s%s", path, b->suffix);
                r = conf_load(path, b->node, &c, err, sizeof err);
                is_int(r, b->r, "%s%s%s: returns %d", b->file, b->node ? " -n " : "", b->node ?: "", b->r);
                is_str(err, want, "%s: message", b->file);
                ok(memcmp(&c, &saved, sizeof c) == 0, "%s: output untouched on error", b->file);
        }
}

static void test_file_errors(void) {
        struct dchat_conf c;
        char err[512], want[PATH_MAX + 64];
        int r;

        r = conf_load("/nonexistent/dchat.conf", NULL, &c, err, sizeof err);
        is_int(r, -ENOENT, "missing file: -ENOENT");
        is_str(err, "/nonexistent/dchat.conf: cannot open: No such file or directory", "missing file: message");

        r = conf_load(conf_dir, NULL, &c, err, sizeof err);
        snprintf(want, sizeof want, "%s: cannot open: Is a directory", conf_dir);
        is_int(r, -EISDIR, "directory: -EISDIR");
        is_str(err, want, "directory: message");

        /* err may be NULL or too short: nothing breaks, the text is cut */
        r = conf_load(fixture("bad-syntax.conf"), NULL, &c, NULL, 0);
        is_int(r, -EINVAL, "no error buffer");
        memset(err, 'x', sizeof err);
        r = conf_load(fixture("bad-dup-name.conf"), NULL, &c, err, 8);
        is_int(r, -EINVAL, "short error buffer: still fails");
        is_int(strlen(err), 7, "short error buffer: cut and terminated");
}

/* Every fixture in the directory is tested. --------------------------------- */

static bool in_bad_table(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (strcmp(bad[i].file, name) == 0)
                        return true;
        return false;
}

static const char *const good_files[] = {
        "good-minimal.conf", "good-full.conf", "good-int64.conf", "good-64-peers.conf", "good-three-servers.conf",
        "good-two-servers.conf", "good-host-keys.conf", "good-central.conf", "good-token.conf",
};

static void test_all_fixtures_listed(void) {
        DIR *d = opendir(conf_dir);
        struct dirent *de;
        unsigned n = 0;

        if (!ok(d, "open %s", conf_dir))
                return;
        while ((de = readdir(d))) {
                bool listed = false;

                if (de->d_name[0] == '.')
                        continue;
                n++;
                if (strncmp(de->d_name, "bad-", 4) == 0)
                        listed = in_bad_table(de->d_name);
                for (size_t i = 0; i < ELEMENTSOF(good_files); i++)
                        listed = listed || strcmp(de->d_name, good_files[i]) == 0;
                if (!listed)
                        ok(false, "fixture %s is tested", de->d_name);
        }
        closedir(d);
        ok(n >= ELEMENTSOF(good_files) + 40, "%u fixtures found", n);
}

/* Good files ------------------------------------------------------------------ */

static bool load_ok(const char *path, const char *node, struct dchat_conf *c) {
        char err[1024] = "";
        int r = conf_load(path, node, c, err, sizeof err);

        if (!ok(r == 0, "load %s%s%s", path, node ? " -n " : "", node ?: ""))
                diag("r=%d: %s", r, err);
        return r == 0;
}

static void check_inet(const struct node_conf *n, const char *ip, unsigned port, const char *what) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *) &n->sa;
        char buf[INET_ADDRSTRLEN] = "";

        is_int(n->sa.ss_family, AF_INET, "%s: AF_INET", what);
        is_int(n->salen, sizeof(struct sockaddr_in), "%s: salen", what);
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
        is_str(buf, ip, "%s: address", what);
        is_int(ntohs(sin->sin_port), port, "%s: port", what);
}

static void test_minimal(void) {
        struct dchat_conf c;

        if (!load_ok(fixture("good-minimal.conf"), NULL, &c))
                return;
        is_str(c.path, fixture("good-minimal.conf"), "minimal: path as given");
        is_str(c.node, "node1", "minimal: node from the file");
        is_int(c.role, ROLE_PEER, "minimal: role peer");
        is_int(c.self, 0, "minimal: self");
        is_int(c.n_servers, 1, "minimal: one server");
        is_int(c.n_peers, 2, "minimal: two peers");
        is_str(c.servers[0].name, "master", "minimal: server name");
        is_str(c.servers[0].address, "10.0.0.1:8000", "minimal: server address as written");
        is_int(c.servers[0].line, 4, "minimal: server line");
        check_inet(&c.servers[0], "10.0.0.1", 8000, "minimal: server");
        is_str(c.peers[0].name, "node1", "minimal: peer 0");
        is_int(c.peers[0].line, 5, "minimal: peer 0 line");
        check_inet(&c.peers[0], "10.0.0.2", 8001, "minimal: peer 0");
        is_str(c.peers[1].name, "node2", "minimal: peer 1");
        is_int(c.peers[1].line, 6, "minimal: peer 1 line");
        check_inet(&c.peers[1], "10.0.0.3", 8001, "minimal: peer 1");

        /* defaults */
        is_str(c.control_socket, "", "default control_socket");
        is_str(c.state_directory, "", "default state_directory");
        is_int(c.post_timeout_usec, 10000 * USEC_PER_MSEC, "default post_timeout_ms");
        is_int(c.connect_timeout_usec, 3000 * USEC_PER_MSEC, "default connect_timeout_ms");
        is_int(c.reconnect_min_usec, 100 * USEC_PER_MSEC, "default reconnect_min_ms");
        is_int(c.reconnect_max_usec, 5000 * USEC_PER_MSEC, "default reconnect_max_ms");
        is_int(c.batch_max, 64, "default batch_max");
        is_int(c.max_clients, 64, "default max_clients");
        is_int(c.max_clients_per_user, 8, "default max_clients_per_user");
        is_int(c.max_queued_posts_per_user, 32, "default max_queued_posts_per_user");
        is_int(c.hold_max_ms, 0, "default hold_max_ms: only root may post --hold");
        is_int(c.trace_events, 10000, "default trace_events");
        is_int(c.client_idle_usec, 300000 * USEC_PER_MSEC, "default client_idle_timeout_ms");
        is_str(c.control_group, "dchat", "default control_group");
        is_int(c.debug, false, "default debug");
        is_int(c.debug_heartbeats, false, "default debug_heartbeats: heartbeats kept out of the debug lines");
        is_int(c.max_handshakes_per_address, 4, "default max_handshakes_per_address");
        is_int(c.first_message_timeout_usec, 1000 * USEC_PER_MSEC, "default first_message_timeout_ms");
        is_int(c.dme_algorithm, DME_RICART_AGRAWALA, "default dme_algorithm: ricart-agrawala");

        /* -n overrides the file's node */
        if (load_ok(fixture("good-minimal.conf"), "node2", &c)) {
                is_str(c.node, "node2", "-n node2 wins over node = \"node1\"");
                is_int(c.role, ROLE_PEER, "-n node2: peer");
                is_int(c.self, 1, "-n node2: self");
        }
        if (load_ok(fixture("good-minimal.conf"), "master", &c)) {
                is_str(c.node, "master", "-n master");
                is_int(c.role, ROLE_SERVER, "-n master: server");
                is_int(c.self, 0, "-n master: self");
        }
        conf_log_summary(&c);
}

static void test_full(void) {
        struct dchat_conf c;
        const struct sockaddr_in6 *sin6;

        if (!load_ok(fixture("good-full.conf"), NULL, &c))
                return;
        is_str(c.node, "srv", "full: node");
        is_int(c.role, ROLE_SERVER, "full: role server");
        is_int(c.n_peers, 3, "full: three peers");
        is_str(c.peers[0].name, "p.1", "full: peer name with a dot");
        is_str(c.peers[1].name, "p_2", "full: peer name with an underscore");
        is_str(c.peers[2].name, "P-3", "full: peer name with a dash");
        is_int(c.peers[0].line, 6, "full: peer 0 line");
        is_int(c.peers[2].line, 8, "full: peer 2 line");
        is_str(c.peers[0].address, "localhost:9001", "full: host name kept as written");
        ok(c.peers[0].sa.ss_family == AF_INET || c.peers[0].sa.ss_family == AF_INET6, "full: localhost resolved");
        sin6 = (const struct sockaddr_in6 *) &c.servers[0].sa;
        is_int(c.servers[0].sa.ss_family, AF_INET6, "full: [::1] is AF_INET6");
        is_int(c.servers[0].salen, sizeof(struct sockaddr_in6), "full: [::1] salen");
        ok(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr), "full: [::1] is loopback");
        is_int(ntohs(sin6->sin6_port), 9000, "full: [::1] port");
        check_inet(&c.peers[2], "127.0.0.1", 9003, "full: peer 2");

        is_str(c.control_socket, "/tmp/dchat-test/ctl.sock", "control_socket");
        is_str(c.state_directory, "/tmp/dchat-test/state", "state_directory");
        is_int(c.post_timeout_usec, 3600000 * USEC_PER_MSEC, "post_timeout_ms at its maximum");
        is_int(c.connect_timeout_usec, 100 * USEC_PER_MSEC, "connect_timeout_ms at its minimum");
        is_int(c.reconnect_min_usec, 10 * USEC_PER_MSEC, "reconnect_min_ms at its minimum");
        is_int(c.reconnect_max_usec, 600000 * USEC_PER_MSEC, "reconnect_max_ms at its maximum");
        is_int(c.batch_max, 1024, "batch_max at its maximum");
        is_int(c.max_clients, 1, "max_clients at its minimum");
        is_int(c.max_clients_per_user, 10000, "max_clients_per_user at its maximum");
        is_int(c.max_queued_posts_per_user, 1, "max_queued_posts_per_user at its minimum");
        is_int(c.hold_max_ms, 30000, "hold_max_ms at its maximum");
        is_int(c.trace_events, 0, "trace_events = 0: no ring");
        is_int(c.client_idle_usec, 100 * USEC_PER_MSEC, "client_idle_timeout_ms at its minimum");
        is_str(c.control_group, "chat-users", "control_group");
        is_int(c.debug, true, "debug = true");
        is_int(c.debug_heartbeats, true, "debug_heartbeats = true");
        is_int(c.max_handshakes_per_address, 10000, "max_handshakes_per_address at its maximum");
        is_int(c.first_message_timeout_usec, 10 * USEC_PER_MSEC, "first_message_timeout_ms at its minimum");
        is_int(c.dme_algorithm, DME_RICART_AGRAWALA, "dme_algorithm = \"ricart-agrawala\"");

        if (load_ok(fixture("good-full.conf"), "p_2", &c)) {
                is_int(c.role, ROLE_PEER, "full -n p_2: peer");
                is_int(c.self, 1, "full -n p_2: self");
        }
}

static void test_int64(void) {
        struct dchat_conf c;

        if (!load_ok(fixture("good-int64.conf"), "node1", &c))
                return;
        is_int(c.post_timeout_usec, 20000 * USEC_PER_MSEC, "20000L is an integer");
        is_int(c.batch_max, 16, "0x10 is an integer");
        is_int(c.reconnect_min_usec, c.reconnect_max_usec, "reconnect_min_ms may equal reconnect_max_ms");
        is_str(c.control_socket, "", "control_socket = \"\" is the default");
        is_int(c.n_peers, 1, "a single peer is enough");
}

static void test_64_peers(void) {
        struct dchat_conf c;

        if (!load_ok(fixture("good-64-peers.conf"), NULL, &c))
                return;
        is_int(c.n_peers, DCHAT_PEERS_MAX, "64 peers");
        is_str(c.peers[63].name, "n64", "last peer");
        if (load_ok(fixture("good-64-peers.conf"), "n64", &c))
                is_int(c.self, 63, "-n n64: self");
}

static void test_etc(void) {
        static const struct {
                const char *file, *node;
                enum dchat_role role;
                unsigned self;
                const char *address;
        } cases[] = {
                { "dchat.conf", "master", ROLE_SERVER, 0, "10.0.0.1:8000" },
                { "dchat.conf", "node1", ROLE_PEER, 0, "10.0.0.2:8001" },
                { "dchat.conf", "node2", ROLE_PEER, 1, "10.0.0.3:8001" },
                { "dchat-local.conf", "master", ROLE_SERVER, 0, "127.0.0.1:8000" },
                { "dchat-local.conf", "node1", ROLE_PEER, 0, "127.0.0.1:8001" },
                { "dchat-local.conf", "node2", ROLE_PEER, 1, "127.0.0.1:8002" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct dchat_conf c;
                const struct node_conf *self;

                if (!load_ok(etc_file(cases[i].file), cases[i].node, &c))
                        continue;
                self = c.role == ROLE_SERVER ? &c.servers[c.self] : &c.peers[c.self];
                is_str(c.node, cases[i].node, "%s -n %s: node", cases[i].file, cases[i].node);
                is_int(c.role, cases[i].role, "%s -n %s: role", cases[i].file, cases[i].node);
                is_int(c.self, cases[i].self, "%s -n %s: self", cases[i].file, cases[i].node);
                is_str(self->address, cases[i].address, "%s -n %s: own address", cases[i].file, cases[i].node);
                is_int(c.n_peers, 2, "%s: two peers", cases[i].file);
                is_int(c.post_timeout_usec, 10000 * USEC_PER_MSEC, "%s: default post timeout", cases[i].file);
        }
}

/* With neither -n nor node = "...", the host name up to the first dot. */
static void test_hostname(void) {
        char host[HOST_NAME_MAX + 1] = "", path[] = "/tmp/test-conf-XXXXXX";
        struct dchat_conf c;
        FILE *f;
        int fd;

        if (gethostname(host, sizeof host) < 0 || !host[0]) {
                ok(true, "# SKIP no hostname");
                return;
        }
        host[sizeof(host) - 1] = '\0';
        host[strcspn(host, ".")] = '\0';
        if (!node_name_valid(host) || strcmp(host, "other") == 0) {
                ok(true, "# SKIP hostname '%s' is not a usable node name", host);
                return;
        }

        fd = mkstemp(path);
        if (!ok(fd >= 0, "temporary config"))
                return;
        f = fdopen(fd, "w");
        fprintf(f,
                "cluster = {\n"
                "  servers = ( { name = \"other\"; address = \"127.0.0.1:8000\"; } );\n"
                "  peers = ( { name = \"%s\"; address = \"127.0.0.1:8001\"; } );\n"
                "};\n", host);
        fclose(f);

        if (load_ok(path, NULL, &c)) {
                is_str(c.node, host, "the hostname is the default node");
                is_int(c.role, ROLE_PEER, "hostname: peer");
        }
        unlink(path);
}

/* host keys: parsed, and changeable by reload */
static void test_host_keys(void) {
        struct dchat_conf a, b;
        uint8_t k1[32], k2[32];
        char text[SECURE_PK_TEXT];

        if (!load_ok(fixture("good-host-keys.conf"), NULL, &a) || !load_ok(fixture("good-minimal.conf"), NULL, &b))
                return;
        secure_pk_parse("0VICKz70jcmzokONLblIej+DBJ1jELWydlNd65vKBYM=", k1);
        secure_pk_parse("t28VtTUkXNIJabttinKdo9Rj+k8Ji8dr6VTbuoprxH4=", k2);
        ok(a.servers[0].has_key && memcmp(a.servers[0].key, k1, 32) == 0, "master's key");
        ok(a.peers[0].has_key && memcmp(a.peers[0].key, k2, 32) == 0, "node1's key");
        ok(!a.peers[1].has_key, "node2 has none");
        is_int(conf_host_keys(&a), 2, "two keys listed");
        is_int(conf_host_keys(&b), 0, "none in good-minimal.conf");
        is_str(a.host_key_file, "/etc/dchat/node1.key", "host_key_file");
        is_str(b.host_key_file, "", "host_key_file: default empty (the daemon's default)");
        ok(conf_node(&a, "node1") == &a.peers[0] && conf_node(&a, "node9") == NULL, "conf_node");
        is_str(secure_pk_text(a.peers[0].key, text), "t28VtTUkXNIJabttinKdo9Rj+k8Ji8dr6VTbuoprxH4=", "the key prints as written");

        /* keys come and go by reload */
        b = a;
        b.peers[0].has_key = false;
        is_str(conf_restart_needed(&a, &b), NULL, "a key removed: no restart");
        b = a;
        b.peers[1].has_key = true;
        is_str(conf_restart_needed(&a, &b), NULL, "a key added: no restart");
        b = a;
        strcpy(b.host_key_file, "/etc/dchat/other.key");
        is_str(conf_restart_needed(&a, &b), NULL, "host_key_file: no restart (read again on reload)");
}

/* conf_restart_needed ----------------------------------------------------------- */

static void test_restart_needed(void) {
        struct dchat_conf a, b, l1, l2;

        if (!load_ok(fixture("good-minimal.conf"), NULL, &a) || !load_ok(etc_file("dchat.conf"), "node1", &b) ||
            !load_ok(etc_file("dchat-local.conf"), "node1", &l1) ||
            !load_ok(etc_file("dchat-local.conf"), "node2", &l2))
                return;

        is_str(conf_restart_needed(&a, &a), NULL, "same config: no restart");
        is_str(conf_restart_needed(&a, &b), NULL, "same cluster from another file: no restart");
        is_str(conf_restart_needed(&b, &l1), "cluster.servers changed", "another cluster");
        is_str(conf_restart_needed(&l1, &l2), "node changed", "another node");

        b = a;
        b.post_timeout_usec *= 2;
        b.connect_timeout_usec = 100 * USEC_PER_MSEC;
        b.reconnect_min_usec = 10 * USEC_PER_MSEC;
        b.reconnect_max_usec = 10 * USEC_PER_MSEC;
        b.batch_max = 1;
        b.max_clients = 1000;
        b.debug = !a.debug;
        b.debug_heartbeats = !a.debug_heartbeats;
        is_str(conf_restart_needed(&a, &b), NULL, "tunables only: no restart");

        b = a;
        b.role = ROLE_SERVER;
        is_str(conf_restart_needed(&a, &b), "role changed", "role");

        b = a;
        strcpy(b.servers[0].name, "boss");
        is_str(conf_restart_needed(&a, &b), "cluster.servers changed", "server renamed");

        b = a;
        strcpy(b.servers[0].address, "10.0.0.9:8000");
        is_str(conf_restart_needed(&a, &b), "cluster.servers changed", "server address");

        b = a;
        strcpy(b.peers[1].name, "node3");
        is_str(conf_restart_needed(&a, &b), "cluster.peers changed", "peer renamed");

        b = a;
        b.n_peers = 1;
        is_str(conf_restart_needed(&a, &b), "cluster.peers changed", "peer removed");

        b = a;
        ((struct sockaddr_in *) &b.peers[1].sa)->sin_port = htons(9999);
        is_str(conf_restart_needed(&a, &b), "cluster.peers changed", "peer resolves elsewhere");

        b = a;
        strcpy(b.control_socket, "/run/other.sock");
        is_str(conf_restart_needed(&a, &b), "control_socket changed", "control_socket");

        b = a;
        strcpy(b.state_directory, "/var/lib/other");
        is_str(conf_restart_needed(&a, &b), "state_directory changed", "state_directory");

        if (load_ok(fixture("good-central.conf"), NULL, &b)) {
                is_int(b.dme_algorithm, DME_CENTRAL, "dme_algorithm = \"central\"");
                is_str(conf_restart_needed(&a, &b), "dme_algorithm changed", "dme_algorithm: restart only");
                is_str(conf_restart_needed(&b, &a), "dme_algorithm changed", "... back too");
        }
        if (load_ok(fixture("good-token.conf"), NULL, &b)) {
                is_int(b.dme_algorithm, DME_TOKEN, "dme_algorithm = \"token\"");
                is_str(conf_restart_needed(&a, &b), "dme_algorithm changed", "token: restart only");
        }
}

/* a server group of three */
static void test_three_servers(void) {
        struct dchat_conf c;

        if (!load_ok(fixture("good-three-servers.conf"), NULL, &c))
                return;
        is_int(c.n_servers, 3, "three servers");
        is_str(c.servers[2].name, "s3", "the third is s3");
        is_int(c.election_timeout_usec, 350 * USEC_PER_MSEC, "election_timeout_ms = 350");
        is_int(c.role, ROLE_PEER, "node1 is a peer");
        if (load_ok(fixture("good-three-servers.conf"), "s2", &c))
                ok(c.role == ROLE_SERVER && c.self == 1, "s2 is the second server");
        if (load_ok(fixture("good-minimal.conf"), NULL, &c))
                is_int(c.election_timeout_usec, 300 * USEC_PER_MSEC, "election_timeout_ms defaults to 300");
        /* an even number: a group on its way from three to five (or back) has one; a new group
         * refuses to start with it (test-join) */
        if (load_ok(fixture("good-two-servers.conf"), NULL, &c))
                is_int(c.n_servers, 2, "two servers are taken (a group passing through an even number)");
}

/* the cluster digest and the differences two nodes report (review item 19) */
static void test_cluster_digest(void) {
        struct dchat_conf a, b, l1, l2;
        struct wbuf w = {0};
        struct dchat_msg m;
        char diff[768];

        if (!load_ok(fixture("good-minimal.conf"), NULL, &a) || !load_ok(etc_file("dchat.conf"), "node1", &b) ||
            !load_ok(etc_file("dchat-local.conf"), "node1", &l1) ||
            !load_ok(etc_file("dchat-local.conf"), "node2", &l2))
                return;
        ok(a.cluster_digest != 0, "digest: not 0 (0 means not sent)");
        ok(l1.cluster_digest == l2.cluster_digest, "digest: the same file read by two nodes: the same digest");
        ok(a.cluster_digest == b.cluster_digest, "digest: the same cluster written in another file: the same digest");
        ok(b.cluster_digest != l1.cluster_digest, "digest: another cluster: another digest");
        struct dchat_conf ce;
        if (load_ok(fixture("good-central.conf"), NULL, &ce))
                ok(ce.cluster_digest != a.cluster_digest && ce.cluster_digest != 0,
                   "digest: the same members under another dme_algorithm: another digest (config-mismatch)");

        /* what b says to a that differs in one port, one peer and one role */
        struct dchat_conf x = a;
        ((struct sockaddr_in *) &x.peers[1].sa)->sin_port = htons(9999);
        conf_cluster_msg(&x, &w, &m);
        conf_cluster_diff(&a, "node2", &m, diff, sizeof diff);
        is_str(diff, "node2's file has node2 as peer at 10.0.0.3:9999, this one as peer at 10.0.0.3:8001", "diff: a port");
        conf_cluster_msg(&a, &w, &m);
        conf_cluster_diff(&a, "node2", &m, diff, sizeof diff);
        is_str(diff, "", "diff: the same members: nothing");
        x = a;
        x.n_peers = 1;
        conf_cluster_msg(&x, &w, &m);
        conf_cluster_diff(&a, "node1", &m, diff, sizeof diff);
        is_str(diff, "this file has peer node2 at 10.0.0.3:8001, node1's has not", "diff: a peer the other file lacks");
        conf_cluster_msg(&a, &w, &m);
        conf_cluster_diff(&x, "node2", &m, diff, sizeof diff);
        is_str(diff, "node2's file has peer node2 at 10.0.0.3:8001, this one has not", "diff: a peer this file lacks");
        wbuf_free(&w);
}

/*
 * The settings a man page says need a restart: the .Ic names between its
 * restart-needed comment and "end restart-needed", as "name,name,..." in the
 * page's order ("?" if the page has no such list).
 */
static void man_restart_list(const char *page, char *out, size_t cap) {
        char path[PATH_MAX], line[512];
        bool in = false, found = false;
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", man_dir, page);
        out[0] = '\0';
        f = fopen(path, "re");
        if (!f) {
                snprintf(out, cap, "? (%s: %m)", path);
                return;
        }
        while (fgets(line, sizeof line, f)) {
                if (!strncmp(line, ".\\\" restart-needed", 18)) {
                        in = found = true;
                        continue;
                }
                if (!strncmp(line, ".\\\" end restart-needed", 22))
                        in = false;
                char name[64];
                if (in && sscanf(line, ".Ic %63[a-z_]", name) == 1)
                        snprintf(out + strlen(out), cap - strlen(out), "%s%s", out[0] ? "," : "", name);
        }
        fclose(f);
        if (!found)
                snprintf(out, cap, "?");
}

/* dchatd(8) and dchat.conf(5) list the settings of the key table that need a restart, and no other. */
static void test_restart_docs(void) {
        char want[512] = "", got[512];

        for (size_t i = 0; conf_key_name(i); i++)
                if (conf_key_needs_restart(i))
                        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", want[0] ? "," : "",
                                 conf_key_name(i));
        ok(strlen(want) > 0, "the key table has settings that need a restart (%s)", want);
        man_restart_list("dchatd.8", got, sizeof got);
        is_str(got, want, "dchatd(8) lists the settings that need a restart, as the key table has them");
        man_restart_list("dchat.conf.5", got, sizeof got);
        is_str(got, want, "dchat.conf(5) lists the same");
}

int main(void) {
        const char *src = getenv("DCHAT_SRCDIR");

        plan_no_plan();
        snprintf(conf_dir, sizeof conf_dir, "%s%stests/conf", src ?: "", src ? "/" : "");
        snprintf(etc_dir, sizeof etc_dir, "%s%setc", src ?: "", src ? "/" : "");
        snprintf(man_dir, sizeof man_dir, "%s%sman", src ?: "", src ? "/" : "");

        test_all_fixtures_listed();
        test_bad();
        test_file_errors();
        test_minimal();
        test_full();
        test_int64();
        test_64_peers();
        test_etc();
        test_hostname();
        test_restart_needed();
        test_host_keys();
        test_restart_docs();
        test_cluster_digest();
        test_three_servers();

        return done_testing();
}
