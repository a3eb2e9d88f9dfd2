/* SPDX-License-Identifier: MIT */
/*
 * fuzz-conf.c — libFuzzer target: the configuration loader (daemon/conf.c
 * over libconfig), on the input as a whole dchat.conf.
 *
 * The input is written to a memfd and loaded through /proc/self/fd/N, as
 * dchatd -t would load a file; a second load with the node given (-n) takes
 * the path that skips the hostname.  A loaded config must be consistent:
 * this host among the nodes, counts within their arrays, strings
 * terminated; conf_restart_needed() and the reload path run on it too.
 *
 * Names are never resolved here: getaddrinfo() is wrapped to numeric
 * addresses only, so fuzzing sends nothing to a DNS server.  Inputs that
 * use libconfig's @include are skipped (they would read files of this
 * host; an admin's config may include, a fuzzer should not).
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "dchatd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) { fprintf(stderr, "fuzz-conf: check failed: %s (line %d)\n", #x, __LINE__); abort(); } } while (0)

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
        static gai_fn real;
        struct addrinfo h = hints ? *hints : (struct addrinfo) {0};

        if (!real)
                real = (gai_fn) dlsym(RTLD_NEXT, "getaddrinfo");
        h.ai_flags |= AI_NUMERICHOST;
        return real(node, service, &h, res);
}

static void check_conf(const struct dchat_conf *c)
{
        CHECK(c->n_servers <= ELEMENTSOF(c->servers) && c->n_peers <= ELEMENTSOF(c->peers));
        CHECK(memchr(c->node, 0, sizeof c->node) && node_name_valid(c->node));
        CHECK(memchr(c->control_socket, 0, sizeof c->control_socket));
        CHECK(memchr(c->state_directory, 0, sizeof c->state_directory));
        if (c->role == ROLE_SERVER)
                CHECK(c->self < c->n_servers && strcmp(c->servers[c->self].name, c->node) == 0);
        else
                CHECK(c->role == ROLE_PEER && c->self < c->n_peers && strcmp(c->peers[c->self].name, c->node) == 0);
        CHECK(conf_restart_needed(c, c) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static struct dchat_conf c, c2;
        char path[64], err[512];

        if (memmem(data, size, "include", 7))
                return 0;
        int fd = memfd_create("dchat.conf", MFD_CLOEXEC);
        if (fd < 0)
                return 0;
        if (write(fd, data, size) != (ssize_t) size) {
                close(fd);
                return 0;
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        err[0] = '\0';
        if (conf_load(path, NULL, &c, err, sizeof err) == 0) {
                check_conf(&c);
                (void) conf_restart_needed(&c2, &c);
        } else
                CHECK(err[0] != '\0' && memchr(err, 0, sizeof err));
        err[0] = '\0';
        if (conf_load(path, "node1", &c2, err, sizeof err) == 0) {
                check_conf(&c2);
                CHECK(strcmp(c2.node, "node1") == 0);
        } else
                CHECK(err[0] != '\0');
        close(fd);
        return 0;
}
