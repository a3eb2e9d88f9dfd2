# dchat — see README.md.  `make`, `make check`, `make install DESTDIR=... PREFIX=...`
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
LIBEXECDIR  ?= $(PREFIX)/lib/dchat
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CATALOGDIR  ?= $(PREFIX)/lib/systemd/catalog
DOCDIR      ?= $(PREFIX)/share/doc/dchat
# where bash-completion looks (pkg-config --variable=completionsdir bash-completion, for /usr)
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
VERSION     := 0.1.0

CC      ?= gcc
PKGS    := libsystemd libconfig libbsd-overlay libsodium
# the server group (Raft): libraft (shared, Debian's libraft2) and the libuv loop it runs on
RAFT_PKGS := raft libuv
WARN    := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wcast-qual \
           -Wsign-compare -Wformat=2 -Wno-format-truncation -Wvla -Werror
ifneq ($(findstring clang,$(CC)),)
WARN    += -Wno-unknown-warning-option -Wno-missing-field-initializers
endif
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 $(WARN) -D_GNU_SOURCE -DDCHAT_VERSION='"$(VERSION)"' \
           -DDCHAT_SBINDIR='"$(SBINDIR)"' -DDCHAT_LIBEXECDIR='"$(LIBEXECDIR)"' -Idaemon \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
RAFT_LIBS := $(shell pkg-config --libs $(RAFT_PKGS) 2>/dev/null)
# pictures of a trace (dchat-draw only: dchatctl does not link it)
CAIRO_CFLAGS := $(shell pkg-config --cflags cairo 2>/dev/null)
CAIRO_LIBS := $(shell pkg-config --libs cairo 2>/dev/null)

# Out-of-tree builds for the checks (README, "Hacking"): O=DIR/ puts every object and
# program under DIR/, SAN=LIST adds -fsanitize=LIST (make asan: build/asan/, clang,
# address,undefined; make fuzz: build/fuzz/ with libFuzzer).  O= and SAN= empty: the
# usual build in the source tree.
O       ?=
SAN     ?=
ifneq ($(SAN),)
SANFLAGS := -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
CFLAGS  += $(SANFLAGS)
LDFLAGS += $(SANFLAGS)
endif

# Debian packages: to build, and (further) to run the whole test suite.
BUILD_DEBS := gcc make pkg-config libsystemd-dev libconfig-dev libbsd-dev libsodium-dev libedit-dev \
              libraft-dev libuv1-dev libcairo2-dev
TEST_DEBS  := perl systemd iproute2 mandoc valgrind debootstrap systemd-container iptables \
              libnetfilter-queue-dev tmux gnuplot-nox clang libclang-rt-14-dev strace tcpdump file libxml2-utils \
              dpkg-dev lintian

# Everything but main: linked into dchatd and into the unit tests.
DAEMON_OBJS := daemon/proto.o daemon/conf.o daemon/log.o daemon/net.o daemon/ra.o daemon/cm.o daemon/tk.o daemon/vclock.o daemon/fd.o \
               daemon/chatlog.o daemon/chatidx.o daemon/server.o daemon/peer.o daemon/mesh.o daemon/uplink.o daemon/postq.o daemon/fanout.o daemon/control.o daemon/secure.o \
               daemon/key.o daemon/incarnation.o daemon/uvloop.o daemon/fsm.o daemon/transport.o daemon/replica.o \
               daemon/catchup.o daemon/verify.o daemon/query.o daemon/join.o daemon/members.o daemon/ring.o daemon/gather.o daemon/presence.o \
               daemon/notes.o daemon/notes-file.o daemon/noteq.o daemon/durable.o
CLI_OBJS    := cli/dchatctl.o cli/since.o cli/number.o cli/follow.o cli/chat.o daemon/proto.o daemon/key.o daemon/secure.o \
               cli/trace.o cli/tmodel.o cli/json.o cli/explain.o cli/catalog.o cli/note.o daemon/vclock.o
# dchat-draw: a trace's JSON Lines to SVG, PNG or PDF through cairo
DRAW_OBJS   := cli/draw.o cli/tmodel.o cli/json.o daemon/proto.o daemon/vclock.o
UNIT_TESTS  := $(patsubst %.c,%,$(wildcard tests/unit/test-*.c))
FUZZ_TARGETS := $(patsubst %.c,%,$(wildcard tests/fuzz/fuzz-*.c))
TEST_TOOLS  := tests/lib/notify-recv tests/lib/send-raw tests/lib/nfq-delay tests/bench/dchat-bench tests/lib/mklog \
               tests/lib/mitm-proxy tests/lib/clockshift.so tests/lib/flood tests/lib/logedit
HEADERS     := $(wildcard daemon/*.h cli/*.h tests/unit/*.h)

all: $(O)dchatd $(O)dchatctl $(O)dchat-draw

$(O)dchatd: $(O)daemon/dchatd.o $(addprefix $(O),$(DAEMON_OBJS))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(RAFT_LIBS)

# only dchatctl (chat) uses libedit
$(O)dchatctl: $(addprefix $(O),$(CLI_OBJS))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libedit 2>/dev/null)

$(O)dchat-draw: $(addprefix $(O),$(DRAW_OBJS))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CAIRO_LIBS) -lm

$(O)%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(O)cli/draw.o: cli/draw.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CAIRO_CFLAGS) -c -o $@ $<

# dchatctl explain: the journal catalog built in
$(O)cli/catalog.c: systemd/dchatd.catalog cli/mkcatalog.awk
	@mkdir -p $(@D)
	awk -f cli/mkcatalog.awk systemd/dchatd.catalog > $@.tmp && mv $@.tmp $@

$(O)cli/catalog.o: $(O)cli/catalog.c cli/explain.h
	$(CC) $(CFLAGS) -Icli -c -o $@ $<

$(O)tests/unit/test-%: $(O)tests/unit/test-%.o $(addprefix $(O),$(DAEMON_OBJS))
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(RAFT_LIBS)

unit-tests: $(addprefix $(O),$(UNIT_TESTS))

# they include the trace model (cli/) to test it, and to check the simulated runs with it
$(O)tests/unit/test-trace.o $(O)tests/unit/test-sim.o $(O)tests/fuzz/fuzz-trace.o: cli/tmodel.c cli/json.c

# tests/fuzz/fuzz-*.c: one LLVMFuzzerTestOneInput each.  With SAN=fuzzer-no-link,...
# linked to libFuzzer (make fuzz); otherwise to tests/fuzz/replay.c, which runs the
# kept inputs once as a TAP test (make check-asan).
ifneq ($(findstring fuzzer,$(SAN)),)
FUZZ_MAIN := -fsanitize=fuzzer
else
FUZZ_MAIN := $(O)tests/fuzz/replay.o
endif
$(O)tests/fuzz/fuzz-%: $(O)tests/fuzz/fuzz-%.o $(filter %.o,$(FUZZ_MAIN)) $(addprefix $(O),$(DAEMON_OBJS))
	$(CC) $(CFLAGS) $(LDFLAGS) $(filter -f%,$(FUZZ_MAIN)) -o $@ $^ $(LDLIBS) $(RAFT_LIBS)

fuzz-targets: $(addprefix $(O),$(FUZZ_TARGETS))

# The seed corpus of fuzz-frame, one good frame per message type: run again after a change
# of the codec (tests/fuzz/mkcorpus-frame.c has a sample of every type).
tests/fuzz/mkcorpus-frame: tests/fuzz/mkcorpus-frame.c daemon/proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-corpus: tests/fuzz/mkcorpus-frame
	tests/fuzz/mkcorpus-frame tests/fuzz/corpus/fuzz-frame

tests/lib/%: tests/lib/%.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# LD_PRELOAD: the wall clock stepped (79-clock-step)
tests/lib/clockshift.so: tests/lib/clockshift.c
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -fPIC -o $@ $< -ldl

# writes big chat logs through daemon/chatlog.c (history tests and benchmark)
tests/lib/mklog: tests/lib/mklog.c $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(RAFT_LIBS)

# rewrites one entry's text as a good record (a difference planted between replicas)
tests/lib/logedit: tests/lib/logedit.c $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(RAFT_LIBS)

# with -k it speaks the link handshake (secure.c) like a cluster member
tests/lib/send-raw: tests/lib/send-raw.c daemon/secure.o daemon/key.o daemon/proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# delay and loss through NFQUEUE, for tests/system/30-faults.sh
tests/lib/nfq-delay: tests/lib/nfq-delay.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS) -lnetfilter_queue

# the CPU cost of the link layer alone (crypto-bench)
tests/bench/secure-bench: tests/bench/secure-bench.c daemon/secure.o daemon/proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# the benchmark's load generator (control protocol, so proto.o)
tests/bench/dchat-bench: tests/bench/dchat-bench.o daemon/proto.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# --- set-up, running, testing ------------------------------------------------------

# Installs the Debian packages that are missing with apt-get (tests/lib/install-debs;
# needs root; a no-op when all are there).
deps:
	@tests/lib/install-debs $(BUILD_DEBS)

deps-test:
	@tests/lib/install-debs $(BUILD_DEBS) $(TEST_DEBS)

# A local cluster (server + 2 peers on 127.0.0.1) from etc/dchat-local.conf, on the
# ports PORT_BASE, PORT_BASE+1, PORT_BASE+2 (default 8000: `make run PORT_BASE=47300`
# beside another cluster); `make stop` ends it.  RA=plain: plain Ricart–Agrawala
# (reuse_permissions = false), RA=rc (the default): with Roucairol–Carvalho.  See README.md.
RA ?= rc
PORT_BASE ?=
run: deps
	@$(MAKE) --no-print-directory all
	@RA=$(RA) PORT_BASE=$(PORT_BASE) tests/lib/local-cluster start

stop:
	@tests/lib/local-cluster stop

# The whole suite: unit, integration (real daemons on loopback) and system
# tests, as TAP under prove, two at a time; then the unit and integration tests
# and the fuzz inputs kept in tests/fuzz/ again under ASan+UBSan (check-asan), and
# integration tests under valgrind (check-valgrind).  See tests/run-tests.
check: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_TESTS) $(TEST_TOOLS)
	@tests/run-tests
	@$(MAKE) --no-print-directory check-asan
	@$(MAKE) --no-print-directory check-valgrind

ASAN_MAKE := $(MAKE) --no-print-directory O=build/asan/ CC=clang SAN=address,undefined
FUZZ_MAKE := $(MAKE) --no-print-directory O=build/fuzz/ CC=clang SAN=fuzzer-no-link,address,undefined

check-asan: all $(TEST_TOOLS)
	@$(ASAN_MAKE) all unit-tests fuzz-targets
	@tests/run-tests --asan

check-valgrind: all $(TEST_TOOLS)
	@tests/run-tests --valgrind

# Fuzz every target for FUZZ_SECONDS (default 60) each, one after the other; fails
# if any input crashes one (the input is kept in build/fuzz/crashes/).  FUZZ_ARGS:
# more libFuzzer options, e.g. FUZZ_ARGS='-jobs=2 -workers=2'.
FUZZ_SECONDS ?= 60
fuzz:
	@$(FUZZ_MAKE) fuzz-targets
	@tests/fuzz/run-fuzz $(FUZZ_SECONDS) $(notdir $(FUZZ_TARGETS))

# The benchmark (not part of check): server + N peers on loopback under load; figures
# to bench-results/ (CSV, JSON, PNG).  Sizes from BENCH_* variables, see README.md.
bench: all tests/bench/dchat-bench tests/lib/mklog
	@tests/bench/run-bench
	@tests/bench/history-bench

# The history part alone: view -n/--since and start-up after a crash on a 1,000,000-line
# log, full view throughput, server RSS (BENCH_HISTORY_LINES, BENCH_HISTORY_REPEAT).
bench-history: all tests/lib/mklog
	@tests/bench/history-bench

# What link encryption costs: secure.c alone (handshake, seal + open), then post latency
# with the cluster key and with insecure_plaintext (CRYPTO_* variables, see the script).
bench-crypto: all tests/bench/dchat-bench tests/bench/secure-bench
	@tests/bench/secure-bench
	@tests/bench/crypto-bench

# --- installation -------------------------------------------------------------------

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(CATALOGDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(BASHCOMPDIR)
	install -m 0755 $(O)dchatd $(DESTDIR)$(SBINDIR)/dchatd
	install -m 0755 $(O)dchatctl $(DESTDIR)$(BINDIR)/dchatctl
	install -d $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(O)dchat-draw $(DESTDIR)$(LIBEXECDIR)/dchat-draw
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' systemd/dchatd.service > $(DESTDIR)$(UNITDIR)/dchatd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/dchatd.service
	install -m 0644 systemd/dchatd.socket systemd/dchatd-peer.socket systemd/dchatd-server.socket \
		$(DESTDIR)$(UNITDIR)/
	install -m 0644 systemd/dchat.sysusers $(DESTDIR)$(SYSUSERSDIR)/dchat.conf
	install -m 0644 systemd/dchat.tmpfiles $(DESTDIR)$(TMPFILESDIR)/dchat.conf
	install -m 0644 systemd/dchatd.catalog $(DESTDIR)$(CATALOGDIR)/dchatd.catalog
	install -m 0644 man/dchatctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/dchat.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/dchat-protocol.7 man/dchat-dme.7 $(DESTDIR)$(MANDIR)/man7/
	install -m 0644 man/dchatd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 cli/dchatctl.bash $(DESTDIR)$(BASHCOMPDIR)/dchatctl
	install -m 0644 etc/dchat.conf etc/dchat-local.conf README.md $(DESTDIR)$(DOCDIR)/
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/dchat
	@# never overwrite an admin's config
	test -e $(DESTDIR)$(SYSCONFDIR)/dchat.conf || install -m 0644 etc/dchat.conf $(DESTDIR)$(SYSCONFDIR)/dchat.conf
	@# on a live system (not a staging DESTDIR): create the user, the directories, the catalog index
	if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then \
		systemd-sysusers $(SYSUSERSDIR)/dchat.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/dchat.conf && \
		journalctl --update-catalog && \
		{ systemctl daemon-reload 2>/dev/null || true; }; \
	fi

# The Debian package dchat_VERSION_ARCH.deb (in DEB_OUT, default here), from an install
# staged in build/deb/ of a build for /usr with Debian's hardening flags (dpkg-buildflags):
# see systemd/debian/mkdeb.  DEB_VERSION grows with every commit, so a newer build
# upgrades an older one; /etc/dchat.conf is a conffile.  `apt install ./dchat_*.deb`.
DEB_VERSION ?= $(VERSION)+git$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
DEB_MAINTAINER ?= $(or $(shell git config user.name 2>/dev/null),dchat maintainers) <$(or $(shell git config user.email 2>/dev/null),dchat@localhost)>
DEB_OUT ?= .
DEB_MAKE := DEB_BUILD_MAINT_OPTIONS=hardening=+all \
	CFLAGS="$$(dpkg-buildflags --get CFLAGS) $$(dpkg-buildflags --get CPPFLAGS)" \
	LDFLAGS="$$(dpkg-buildflags --get LDFLAGS)" \
	$(MAKE) --no-print-directory O=build/deb/obj/ PREFIX=/usr UNITDIR=/lib/systemd/system
deb:
	@$(DEB_MAKE) all
	@rm -rf build/deb/debian
	@$(DEB_MAKE) -s install DESTDIR=$(CURDIR)/build/deb/debian/dchat
	@systemd/debian/mkdeb build/deb $(DEB_OUT) '$(DEB_VERSION)' '$(DEB_MAINTAINER)'

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/dchatd $(DESTDIR)$(BINDIR)/dchatctl $(DESTDIR)$(LIBEXECDIR)/dchat-draw \
		$(DESTDIR)$(UNITDIR)/dchatd.service $(DESTDIR)$(UNITDIR)/dchatd.socket \
		$(DESTDIR)$(UNITDIR)/dchatd-peer.socket $(DESTDIR)$(UNITDIR)/dchatd-server.socket \
		$(DESTDIR)$(SYSUSERSDIR)/dchat.conf $(DESTDIR)$(TMPFILESDIR)/dchat.conf \
		$(DESTDIR)$(CATALOGDIR)/dchatd.catalog $(DESTDIR)$(MANDIR)/man1/dchatctl.1 \
		$(DESTDIR)$(MANDIR)/man5/dchat.conf.5 $(DESTDIR)$(MANDIR)/man7/dchat-protocol.7 $(DESTDIR)$(MANDIR)/man7/dchat-dme.7 \
		$(DESTDIR)$(MANDIR)/man8/dchatd.8 $(DESTDIR)$(BASHCOMPDIR)/dchatctl
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null
	@# the cluster key is the admin's: /etc/dchat goes only if empty
	-rmdir $(DESTDIR)$(SYSCONFDIR)/dchat 2>/dev/null

.PHONY: all clean deps deps-test run stop check check-asan check-valgrind fuzz fuzz-corpus unit-tests fuzz-targets \
	bench bench-history bench-crypto install uninstall deb
clean:
	rm -f dchatd dchatctl dchat-draw cli/catalog.c daemon/*.o cli/*.o tests/unit/*.o tests/bench/*.o $(UNIT_TESTS) $(TEST_TOOLS) tests/bench/secure-bench \
		tests/fuzz/mkcorpus-frame
	rm -rf build/asan build/fuzz
