/* SPDX-License-Identifier: MIT */
/*
 * dchatd.c — main: options, configuration, sockets (from systemd or bound
 * by hand), the sd-event loop, signals, readiness and reload.
 */
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <sodium.h>

#include "dchatd.h"
#include "key.h"
#include "secure.h"

static void usage(FILE *f)
{
        fprintf(f, "usage: dchatd [-t] [-c file] [-n name]\n"
                   "       dchatd [-c file] [-n name] --archive | --repair\n"
                   "       dchatd --version\n"
                   "  -c FILE   configuration (default %s)\n"
                   "  -n NAME   this host's node name (default: the config's node, else the hostname)\n"
                   "  -t        check the configuration and exit\n"
                   "  --archive (server, dchatd stopped) move the chat log aside and start a new one\n"
                   "            that goes on with the same sequence numbers\n"
                   "  --repair  (server, dchatd stopped) rebuild a damaged start record of the chat log\n", DCHAT_DEFAULT_CONFIG);
}

/* $RUNTIME_DIRECTORY and $STATE_DIRECTORY may hold several paths: take the first. */
static void dir_from_env(const char *var, const char *def, char *buf, size_t cap)
{
        const char *v = getenv(var);
        if (!v || !*v) {
                strlcpy(buf, def, cap);
                return;
        }
        size_t n = strcspn(v, ":");
        snprintf(buf, cap, "%.*s", (int) n, v);
}

/* Fill in the paths the config left to the environment. */
static void conf_resolve_paths(struct dchat_conf *c)
{
        if (!c->state_directory[0])
                dir_from_env("STATE_DIRECTORY", DCHAT_DEFAULT_STATE_DIR, c->state_directory,
                             sizeof c->state_directory);
        if (!c->control_socket[0]) {
                char dir[PATH_MAX];
                dir_from_env("RUNTIME_DIRECTORY", DCHAT_DEFAULT_RUNTIME_DIR, dir, sizeof dir);
                snprintf(c->control_socket, sizeof c->control_socket, "%s/%s", dir, DCHAT_SOCKET_NAME);
        }
}

/* err gets "file:line: problem" on failure. */
static int load_conf(struct daemon *d, struct dchat_conf *c, char *err, size_t errlen)
{
        int r = conf_load(d->conf_path, d->node_override, c, err, errlen);
        if (r < 0)
                return r;
        conf_resolve_paths(c);
        return 0;
}

/* The config of a server, for --archive and --repair; 0 or the exit status. */
static int offline_conf(struct daemon *d, const char *what)
{
        char err[512];

        if (load_conf(d, &d->conf, err, sizeof err) < 0) {
                fprintf(stderr, "dchatd: %s\n", err);
                return 1;
        }
        if (d->conf.role != ROLE_SERVER) {
                fprintf(stderr, "dchatd: %s: %s is a peer; the chat log is on the server\n", what, d->conf.node);
                return 1;
        }
        return 0;
}

/* dchatd --archive: offline, on the server; what it did on stdout, errors on stderr. */
static int run_archive(struct daemon *d)
{
        struct chatlog_recovery rec;
        char name[NAME_MAX + 1], warn[512];
        uint64_t first = 0, last = 0;
        int r;

        if (offline_conf(d, "--archive"))
                return 1;
        r = chatlog_archive(d->conf.state_directory, name, sizeof name, &first, &last, &rec, warn, sizeof warn);
        if (rec.stale_link[0])
                fprintf(stderr, "dchatd: removed %s/%s, a second name of chat.log left by an interrupted archive\n",
                        d->conf.state_directory, rec.stale_link);
        if (rec.cut_bytes)
                fprintf(stderr, "dchatd: the chat log's tail was cut first: %s; %llu bytes saved to %s\n",
                        rec.reason, (unsigned long long) rec.cut_bytes, rec.saved_to[0] ? rec.saved_to : "nowhere");
        if (rec.damaged_seqs)
                fprintf(stderr, "dchatd: the chat log has %llu damaged record(s), quarantined; they stay in the archive "
                        "(see dchatd(8))\n", (unsigned long long) rec.damaged_seqs);
        if (r < 0) {
                fprintf(stderr, "dchatd: cannot archive the chat log in %s: %s; nothing was changed\n",
                        d->conf.state_directory,
                        r == -EBUSY     ? "dchatd is running (stop it first)"
                        : r == -ENODATA ? "it has no entries"
                        : r == -EBADMSG && rec.reason[0] ? rec.reason
                                        : strerror(-r));
                return 1;
        }
        printf("archived seqs %llu to %llu as %s/%s; the new chat.log goes on at seq %llu\n",
               (unsigned long long) first, (unsigned long long) last, d->conf.state_directory, name,
               (unsigned long long) last + 1);
        if (warn[0])
                fprintf(stderr, "dchatd: warning: the archive is done, but %s\n", warn);
        return 0;
}

/* dchatd --repair: offline, on the server: a damaged start record rebuilt. */
static int run_repair(struct daemon *d)
{
        struct chatlog_repair rep;
        struct chatlog_recovery rec;
        struct chatlog *log = NULL;
        int r;

        if (offline_conf(d, "--repair"))
                return 1;
        r = chatlog_repair(d->conf.state_directory, &rep);
        if (r == -EALREADY) {
                printf("the chat log in %s opens as it is: nothing to repair\n", d->conf.state_directory);
                return 0;
        }
        if (r < 0) {
                fprintf(stderr, "dchatd: cannot repair the chat log in %s: %s; nothing was changed\n",
                        d->conf.state_directory,
                        r == -EBUSY ? "dchatd is running (stop it first)" : rep.error[0] ? rep.error : strerror(-r));
                return 1;
        }
        printf("rebuilt the start record of %s/chat.log from %s: the log goes on after seq %llu%s; "
               "the damaged file is kept as %s\n",
               d->conf.state_directory, rep.archive[0] ? rep.archive : "its first good entry",
               (unsigned long long) rep.base_seq,
               rep.first_entry ? "" : " (it has no entries yet)", rep.saved_to);
        if (rep.warning[0])
                fprintf(stderr, "dchatd: warning: %s\n", rep.warning);
        /* it must open now, as the server will */
        r = chatlog_open(d->conf.state_directory, &log, &rec);
        if (r < 0) {
                fprintf(stderr, "dchatd: the repaired chat log still does not open: %s\n",
                        r == -EBADMSG && rec.reason[0] ? rec.reason : strerror(-r));
                return 1;
        }
        printf("the chat log opens: seqs %llu to %llu%s\n", (unsigned long long) chatlog_first_seq(log),
               (unsigned long long) chatlog_last_seq(log), rec.damaged_seqs ? ", some quarantined as damaged" : "");
        chatlog_close(log);
        return 0;
}

static uint16_t sockaddr_port(const struct sockaddr_storage *sa)
{
        if (sa->ss_family == AF_INET)
                return ntohs(((const struct sockaddr_in *) sa)->sin_port);
        if (sa->ss_family == AF_INET6)
                return ntohs(((const struct sockaddr_in6 *) sa)->sin6_port);
        return 0;
}

struct sockets {
        int control, tcp;
        bool control_bound;     /* we made the socket file, so we remove it */
};

/*
 * Sockets from systemd, by name.  Any we did not get are bound from the
 * config, so a unit may pass only some of them.
 */
static int take_sockets(const struct dchat_conf *c, struct sockets *s)
{
        char **names = NULL;
        const char *want_tcp = c->role == ROLE_SERVER ? "server" : "peer";
        const struct node_conf *me = c->role == ROLE_SERVER ? &c->servers[c->self] : &c->peers[c->self];
        int n, r = 0;

        s->control = s->tcp = -1;
        n = sd_listen_fds_with_names(true, &names);
        if (n < 0) {
                log_error("cannot take the sockets passed by systemd: %s", strerror(-n));
                return n;
        }
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names && names[i] ? names[i] : "unknown";

                if (strcmp(name, "control") == 0) {
                        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
                                log_error("socket 'control' from systemd is not a listening UNIX stream socket");
                                r = -EINVAL;
                        } else
                                s->control = fd;
                } else if ((c->role == ROLE_SERVER && strcmp(name, "server") == 0) ||
                           (c->role == ROLE_PEER && strcmp(name, "peer") == 0)) {
                        struct sockaddr_storage sa;
                        socklen_t l = sizeof sa;
                        if (sd_is_socket_inet(fd, 0, SOCK_STREAM, 1, 0) <= 0 ||
                            getsockname(fd, (struct sockaddr *) &sa, &l) < 0) {
                                log_error("socket '%s' from systemd is not a listening TCP socket", name);
                                r = -EINVAL;
                        } else if (sockaddr_port(&sa) != sockaddr_port(&me->sa)) {
                                log_error("socket '%s' from systemd listens on port %u, but %s:%d gives %s the address %s; "
                                          "make them agree (systemctl edit dchatd-%s.socket)",
                                          name, sockaddr_port(&sa), c->path, me->line, me->name, me->address, name);
                                r = -EINVAL;
                        } else
                                s->tcp = fd;
                } else if (strcmp(name, "peer") == 0 || strcmp(name, "server") == 0) {
                        /* e.g. dchatd-peer.socket enabled on the server */
                        log_error("systemd passed a '%s' socket, but node %s has the %s role in %s; "
                                  "enable dchatd-%s.socket instead", name, c->node, role_name(c->role), c->path,
                                  want_tcp);
                        r = -EINVAL;
                } else {
                        log_error("systemd passed a socket named '%s'; expected 'control' and '%s'", name, want_tcp);
                        r = -EINVAL;
                }
        }
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        if (r < 0)
                return r;

        if (s->tcp < 0) {
                s->tcp = listen_tcp((const struct sockaddr *) &me->sa, me->salen);
                if (s->tcp < 0) {
                        log_error("cannot listen on %s (%s, %s:%d): %s", me->address, me->name, c->path, me->line,
                                  strerror(-s->tcp));
                        return s->tcp;
                }
                /* started by systemd (the control socket) while dchatd-ROLE.socket was not running, e.g.
                 * after a refused `systemctl restart dchatd-peer.socket`: it works, but once this dchatd
                 * stops nothing listens on the port, so the others' links stop starting it: say so */
                if (n > 0)
                        log_warning("systemd passed no '%s' socket (dchatd-%s.socket is not running): dchatd "
                                    "listens on %s itself, and once it stops nothing will; to hand the port back "
                                    "to systemd: systemctl stop dchatd.socket dchatd-%s.socket dchatd.service, "
                                    "then systemctl start dchatd.socket dchatd-%s.socket", want_tcp, want_tcp,
                                    me->address, want_tcp, want_tcp);
        }
        if (s->control < 0) {
                s->control = listen_unix(c->control_socket, 0660);
                if (s->control < 0) {
                        log_error("cannot listen on %s: %s", c->control_socket,
                                  s->control == -EADDRINUSE ? "another dchatd serves it" : strerror(-s->control));
                        return s->control;
                }
                s->control_bound = true;
                /* members of control_group may post; without the group, root only (control.c warns) */
                struct group *g = getgrnam(c->control_group);
                if (g && chown(c->control_socket, (uid_t) -1, g->gr_gid) < 0)
                        log_warning("cannot give %s to group %s: %m", c->control_socket, c->control_group);
        }
        return 0;
}

void daemon_notify_status(struct daemon *d)
{
        static char last[256 + DCHAT_ERROR_MAX];
        char line[256 + DCHAT_ERROR_MAX];
        struct dchat_status st;
        unsigned up = 0;

        daemon_status(d, &st);
        for (unsigned i = 0; i < st.n_peers; i++)
                up += st.peers[i].connected;
        if (d->peer)
                snprintf(line, sizeof line, "peer %s: %s, %u/%u peers, server %s, lamport %llu", st.node,
                         st.dme_state, up, st.n_peers, st.server_connected ? "up" : "down",
                         (unsigned long long) st.lamport);
        else
                snprintf(line, sizeof line, "server %s: %llu posts, %u/%u peers connected", st.node,
                         (unsigned long long) st.last_seq, up, st.n_peers);
        /* until a reload succeeds: `systemctl status` says why the last one was refused */
        if (d->reload_refused[0]) {
                size_t n = strlen(line);
                snprintf(line + n, sizeof line - n, "; reload refused: %s", d->reload_refused);
        }
        if (strcmp(line, last) != 0) {
                strlcpy(last, line, sizeof last);
                (void) sd_notifyf(false, "STATUS=%s", line);
        }
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        daemon_notify_status(userdata);
        (void) sd_event_source_set_time(s, usec + USEC_PER_SEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

/* The keys a config asks for, as read from their files. */
struct link_keys {
        bool have_key, have_sk;
        uint8_t key[DCHAT_KEY_BYTES];
        uint8_t sk[DCHAT_HOST_SK_BYTES];
        char key_path[PATH_MAX], sk_path[PATH_MAX];
};

/*
 * Reads the keys of c: the host key ($CREDENTIALS_DIRECTORY/host.key, else
 * host_key_file; none is fine unless the config lists one for this host,
 * and then it must be that one) and the cluster key (the same way; none is
 * fine when there is a host key).  Any other problem (a key others may read,
 * a malformed one) is an error in err.
 */
static int read_link_keys(const struct dchat_conf *c, struct link_keys *k, char *err, size_t cap)
{
        const struct node_conf *self = conf_node(c, c->node);
        char text[SECURE_PK_TEXT], listed[SECURE_PK_TEXT];
        int r;

        *k = (struct link_keys) { 0 };
        hostkey_path(c->host_key_file, k->sk_path, sizeof k->sk_path);
        r = hostkey_load(k->sk_path, k->sk, err, cap);
        if (r < 0 && (r != -ENOENT || (self && self->has_key))) {
                if (r == -ENOENT)
                        snprintf(err + strlen(err), cap - strlen(err), "; the config lists one for %s (%s)",
                                 c->node, secure_pk_text(self->key, text));
                return r;
        }
        k->have_sk = r == 0;
        if (k->have_sk && self && self->has_key && sodium_memcmp(self->key, k->sk + 32, SECURE_PK_BYTES) != 0) {
                snprintf(err, cap, "the host key in %s (public key %s) is not the one the config lists for %s (%s)",
                         k->sk_path, secure_pk_text(k->sk + 32, text), c->node, secure_pk_text(self->key, listed));
                return -EPERM;
        }
        key_path(c->key_file, k->key_path, sizeof k->key_path);
        r = key_load(k->key_path, k->key, err, cap);
        if (r < 0 && (r != -ENOENT || !k->have_sk))
                return r;
        k->have_key = r == 0;
        return 0;
}

static void link_keys_clear(struct link_keys *k)
{
        sodium_memzero(k, sizeof *k);
}

/* What the links run with, in the log. */
static void log_link_keys(const struct link_keys *k, unsigned listed)
{
        char text[SECURE_PK_TEXT];

        if (k->have_sk)
                log_info("cluster links are encrypted; this host proves itself with the host key in %s (public key "
                         "%s)%s%s; %u member%s' host key%s listed", k->sk_path, secure_pk_text(k->sk + 32, text),
                         k->have_key ? ", and the cluster key in " : ", no cluster key",
                         k->have_key ? k->key_path : "", listed, listed == 1 ? "'s" : "s", listed == 1 ? "" : "s");
        else
                log_info("cluster links are encrypted and authenticated with the key in %s", k->key_path);
}

static void apply_tunables(struct daemon *d)
{
        log_set_debug(d->conf.debug);
        if (d->server)
                server_reconf(d->server, &d->conf);
        if (d->peer)
                peer_reconf(d->peer, &d->conf);
        if (d->control)
                control_reconf(d->control);
}

static int daemon_reload(struct daemon *d, char *msg, size_t cap)
{
        _cleanup_(freep) struct dchat_conf *c = calloc(1, sizeof *c);
        char err[PATH_MAX + 512], changes[512];
        struct link_keys k = { 0 };
        bool keys = false;      /* refused for a key file */
        int r;

        if (!c) {
                snprintf(msg, cap, "out of memory");
                return -ENOMEM;
        }
        (void) sd_notify(false, "RELOADING=1");
        r = load_conf(d, c, err, sizeof err);
        if (r < 0)
                snprintf(msg, cap, "%s", err);
        else {
                const char *why = conf_restart_needed(&d->conf, c);
                if (why) {
                        snprintf(msg, cap, "%s, which needs a restart (systemctl restart dchatd)", why);
                        r = -EBUSY;
                } else if (!c->insecure_plaintext) {
                        /* the key files are read again: a host key added, the cluster key dropped (issue 17) */
                        r = read_link_keys(c, &k, err, sizeof err);
                        keys = r < 0;
                        if (keys)
                                snprintf(msg, cap, "%s", err);
                }
        }
        if (r < 0) {
                log_event(EV_RELOAD_REFUSED, NULL, "reload refused: %s; keeping the running configuration%s", msg,
                          keys ? " and keys" : "");
                strlcpy(d->reload_refused, msg, sizeof d->reload_refused);
        } else {
                conf_changes(&d->conf, c, changes, sizeof changes);
                d->conf = *c;
                if (!d->conf.insecure_plaintext) {
                        net_set_security(&d->conf, k.have_key ? k.key : NULL, k.have_sk ? k.sk : NULL);
                        log_link_keys(&k, conf_host_keys(&d->conf));
                }
                apply_tunables(d);
                snprintf(msg, cap, "configuration %s reloaded: %s", d->conf_path,
                         changes[0] ? changes : "no setting changed");
                log_event(EV_RELOADED, NULL, "%s", msg);
                conf_log_summary(&d->conf);
                net_recheck_links();
                d->reload_refused[0] = '\0';
        }
        link_keys_clear(&k);
        (void) sd_notify(false, "READY=1");
        daemon_notify_status(d);
        return r;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        char msg[DCHAT_ERROR_MAX];
        (void) s;
        (void) si;

        (void) daemon_reload(userdata, msg, sizeof msg);
        return 0;
}

/* The keys for the links, or plaintext if the config says so (loudly). */
static int setup_links(struct daemon *d)
{
        const char *addr = d->conf.role == ROLE_SERVER ? d->conf.servers[d->conf.self].address
                                                       : d->conf.peers[d->conf.self].address;
        struct link_keys k;
        char err[PATH_MAX + 256];

        if (d->conf.insecure_plaintext) {
                net_set_security(&d->conf, NULL, NULL);
                log_event(EV_LINK_PLAINTEXT, NULL,
                          "insecure_plaintext = true: links to the other hosts are neither encrypted nor "
                          "authenticated; anyone who reaches %s can read the chat and forge its traffic", addr);
                return 0;
        }
        int r = read_link_keys(&d->conf, &k, err, sizeof err);
        if (r < 0) {
                log_error("%s", err);
                (void) sd_notifyf(false, "STATUS=%s\nERRNO=%d", err, -r);
                link_keys_clear(&k);
                return r;
        }
        net_set_security(&d->conf, k.have_key ? k.key : NULL, k.have_sk ? k.sk : NULL);
        log_link_keys(&k, conf_host_keys(&d->conf));
        link_keys_clear(&k);
        return 0;
}

/*
 * dchatd -t: could the links start?  The key is checked as the daemon would
 * check it: a key dchatd would refuse fails -t too (exit 1), so that
 * `dchatd -t && systemctl enable --now ...` never starts a daemon that stops.
 */
static int links_check(const struct dchat_conf *c)
{
        struct link_keys k;
        char err[PATH_MAX + 256], text[SECURE_PK_TEXT];

        if (c->insecure_plaintext) {
                printf("links: in the clear (insecure_plaintext = true)\n");
                return 0;
        }
        /* how far a move to host keys has come: with all listed the cluster key lets no one in */
        printf("host keys listed: %u of %u members\n", conf_host_keys(c), c->n_servers + c->n_peers);
        if (read_link_keys(c, &k, err, sizeof err) < 0) {
                fprintf(stderr, "dchatd will not start: %s\n", err);
                link_keys_clear(&k);
                return 1;
        }
        if (k.have_sk)
                printf("links: encrypted, host key %s: OK (public key %s)%s%s%s\n", k.sk_path,
                       secure_pk_text(k.sk + 32, text), k.have_key ? "; cluster key " : "; no cluster key",
                       k.have_key ? k.key_path : "", k.have_key ? ": OK" : "");
        else
                printf("links: encrypted, cluster key %s: OK\n", k.key_path);
        link_keys_clear(&k);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct daemon *d = userdata;
        (void) s;
        log_event(EV_STOPPING, NULL, "stopping on %s", strsignal((int) si->ssi_signo));
        (void) sd_notify(false, "STOPPING=1");
        return sd_event_exit(d->event, 0);
}

int main(int argc, char *argv[])
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "node", required_argument, NULL, 'n' },
                { "test", no_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "archive", no_argument, NULL, 'A' },
                { "repair", no_argument, NULL, 'R' },
                {}
        };
        static struct daemon D;
        struct daemon *d = &D;
        bool test = false, archive = false, repair = false;
        int o, r;
        struct sockets socks = { -1, -1, false };

        strlcpy(d->conf_path, DCHAT_DEFAULT_CONFIG, sizeof d->conf_path);
        d->reload = daemon_reload;
        while ((o = getopt_long(argc, argv, "c:n:th", opts, NULL)) >= 0) {
                switch (o) {
                case 'c':
                        strlcpy(d->conf_path, optarg, sizeof d->conf_path);
                        break;
                case 'n':
                        d->node_override = optarg;
                        break;
                case 't':
                        test = true;
                        break;
                case 'A':
                        archive = true;
                        break;
                case 'R':
                        repair = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("dchatd %s\n", DCHAT_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "dchatd: unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }

        if (archive && repair) {
                fprintf(stderr, "dchatd: --archive and --repair go one at a time\n");
                return 2;
        }
        if (archive)
                return run_archive(d);
        if (repair)
                return run_repair(d);
        if (test) {
                char err[512];
                r = load_conf(d, &d->conf, err, sizeof err);
                if (r < 0) {
                        fprintf(stderr, "%s\n", err);
                        return 1;
                }
                printf("%s: OK: node %s, role %s, %u server, %u peers\n", d->conf_path, d->conf.node,
                       role_name(d->conf.role), d->conf.n_servers, d->conf.n_peers);
                /* where dchatctl finds it (dchatctl -s), with this environment */
                printf("control socket: %s\n", d->conf.control_socket);
                return links_check(&d->conf);
        }

        log_open(d->node_override);
        char err[512];
        if (load_conf(d, &d->conf, err, sizeof err) < 0) {
                log_error("%s", err);
                /* in `systemctl status` even when the journal cannot tie our
                 * last words to the unit (we exit at once) */
                (void) sd_notifyf(false, "STATUS=%s\nERRNO=%d", err, EINVAL);
                return 1;
        }
        log_set_node(d->conf.node);
        log_set_debug(d->conf.debug);
        if (setup_links(d) < 0)
                return 1;

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&d->event);
        if (r < 0) {
                log_error("cannot create the event loop: %s", strerror(-r));
                return 1;
        }
        (void) sd_event_now(d->event, CLOCK_MONOTONIC, &d->started_usec);
        if (sd_event_add_signal(d->event, NULL, SIGTERM, on_exit_signal, d) < 0 ||
            sd_event_add_signal(d->event, NULL, SIGINT, on_exit_signal, d) < 0 ||
            sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d) < 0) {
                log_error("cannot watch signals");
                return 1;
        }
        /* WATCHDOG=1 at half of WatchdogSec=, from the loop itself: a hung loop is caught */
        (void) sd_event_set_watchdog(d->event, true);

        if (take_sockets(&d->conf, &socks) < 0)
                goto fail;

        /* the server keeps its log there, a peer its incarnation counter */
        if (mkdir(d->conf.state_directory, 0750) < 0 && errno != EEXIST) {
                log_error("cannot create %s: %m", d->conf.state_directory);
                goto fail;
        }
        if (d->conf.role == ROLE_SERVER)
                r = server_new(d->event, &d->conf, socks.tcp, &d->server);
        else
                r = peer_new(d->event, &d->conf, socks.tcp, &d->peer);
        if (r < 0) {
                if (r != -EBUSY && r != -EACCES && r != -ENOENT)
                        log_error("cannot start the %s role: %s", role_name(d->conf.role), strerror(-r));
                goto fail;
        }
        r = control_new(d->event, d, socks.control, &d->control);
        if (r < 0) {
                log_error("cannot serve the control socket: %s", strerror(-r));
                goto fail;
        }
        (void) sd_event_add_time_relative(d->event, NULL, CLOCK_MONOTONIC, USEC_PER_SEC, USEC_PER_SEC / 10,
                                          on_status_timer, d);

        log_event(EV_STARTED, NULL, "dchatd %s started: node %s, role %s, listening on %s, control socket %s",
                  DCHAT_VERSION, d->conf.node, role_name(d->conf.role),
                  d->conf.role == ROLE_SERVER ? d->conf.servers[d->conf.self].address
                                              : d->conf.peers[d->conf.self].address,
                  d->conf.control_socket);
        conf_log_summary(&d->conf);
        /* our own sockets serve now; other hosts are reached in the background */
        (void) sd_notify(false, "READY=1");
        daemon_notify_status(d);

        /* >0: the exit status a role asked for (sd_event_exit), e.g. to be started again */
        r = sd_event_loop(d->event);
        if (r < 0)
                log_error("event loop failed: %s", strerror(-r));

        d->peer = peer_free(d->peer);
        d->server = server_free(d->server);
        d->control = control_free(d->control);
        /* the control socket file is ours only when we bound it */
        if (socks.control_bound)
                (void) unlink(d->conf.control_socket);
        sd_event_unref(d->event);
        return r != 0 ? 1 : 0;
fail:
        d->peer = peer_free(d->peer);
        d->server = server_free(d->server);
        if (socks.control_bound)
                (void) unlink(d->conf.control_socket);
        (void) sd_notifyf(false, "STATUS=failed to start, see the journal\nERRNO=%d", r < 0 ? -r : EINVAL);
        return 1;
}
