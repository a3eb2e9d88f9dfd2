/* SPDX-License-Identifier: MIT */
/*
 * notify-recv — a NOTIFY_SOCKET for tests: what a service manager sees of
 * sd_notify(3).
 *
 *   notify-recv SOCKET FILE
 *
 * Binds a datagram UNIX socket at SOCKET and appends every message it
 * receives to FILE, one line per datagram (newlines inside a message become
 * spaces, so "READY=1\nSTATUS=x" is the line "READY=1 STATUS=x").  Each line
 * is written with one write(2) to a file opened with O_APPEND, so a reader
 * polling FILE never sees half a line.  On SIGTERM or SIGINT it removes
 * SOCKET and exits 0.  A test waits for SOCKET to exist before it starts
 * the service.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MSG_MAX (64 * 1024)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void) sig;
        stop = 1;
}

int main(int argc, char *argv[])
{
        static char buf[MSG_MAX + 2];
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        struct sigaction sa = { .sa_handler = on_signal };     /* no SA_RESTART: recv returns EINTR */
        int fd, out;

        if (argc != 3) {
                fprintf(stderr, "usage: notify-recv SOCKET FILE\n");
                return 2;
        }
        if (strlen(argv[1]) >= sizeof un.sun_path) {
                fprintf(stderr, "notify-recv: socket path too long: %s\n", argv[1]);
                return 1;
        }
        strcpy(un.sun_path, argv[1]);
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
                perror("notify-recv: sigaction");
                return 1;
        }
        out = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out < 0) {
                fprintf(stderr, "notify-recv: %s: %s\n", argv[2], strerror(errno));
                return 1;
        }
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                perror("notify-recv: socket");
                return 1;
        }
        (void) unlink(argv[1]);
        if (bind(fd, (struct sockaddr *) &un, sizeof un) < 0) {
                fprintf(stderr, "notify-recv: bind %s: %s\n", argv[1], strerror(errno));
                return 1;
        }
        /* the service may run as another user */
        (void) chmod(argv[1], 0666);

        while (!stop) {
                ssize_t n = recv(fd, buf, MSG_MAX, MSG_TRUNC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        perror("notify-recv: recv");
                        break;
                }
                size_t len = (size_t) n > MSG_MAX ? MSG_MAX : (size_t) n;
                /* drop trailing newlines, then turn the others into spaces */
                while (len > 0 && buf[len - 1] == '\n')
                        len--;
                for (size_t i = 0; i < len; i++)
                        if (buf[i] == '\n' || buf[i] == '\0')
                                buf[i] = ' ';
                buf[len++] = '\n';
                if (write(out, buf, len) != (ssize_t) len) {
                        perror("notify-recv: write");
                        break;
                }
        }
        (void) unlink(argv[1]);
        return stop ? 0 : 1;
}
