# dchat — see README.md.  `make`, `make check`, `make install DESTDIR=... PREFIX=...`
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CATALOGDIR  ?= $(PREFIX)/lib/systemd/catalog
DOCDIR      ?= $(PREFIX)/share/doc/dchat
VERSION     := 0.1.0

CC      ?= gcc
PKGS    := libsystemd libconfig libbsd-overlay
WARN    := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wcast-qual \
           -Wsign-compare -Wformat=2 -Wno-format-truncation -Wvla -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -DDCHAT_VERSION='"$(VERSION)"' \
           -DDCHAT_SBINDIR='"$(SBINDIR)"' -Idaemon $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# Everything but main: linked into dchatd and into the unit tests.
DAEMON_OBJS := daemon/proto.o daemon/conf.o daemon/log.o daemon/net.o daemon/ra.o \
               daemon/chatlog.o daemon/server.o daemon/peer.o daemon/control.o
CLI_OBJS    := cli/dchatctl.o daemon/proto.o
UNIT_TESTS  := tests/unit/test-ra tests/unit/test-proto tests/unit/test-conf tests/unit/test-chatlog
HEADERS     := $(wildcard daemon/*.h tests/unit/*.h)

all: dchatd dchatctl

dchatd: daemon/dchatd.o $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

dchatctl: $(CLI_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

%.o: %.c $(HEADERS)
	$(CC) $(CFLAGS) -c -o $@ $<

tests/unit/test-%: tests/unit/test-%.o $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: all clean
clean:
	rm -f dchatd dchatctl daemon/*.o cli/*.o tests/unit/*.o $(UNIT_TESTS)
