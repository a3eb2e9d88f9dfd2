#!/usr/bin/env bash
# 96-local-cluster — `make run` (tests/lib/local-cluster) shares the machine (issue 16,
# item 6), in a copy of the tree of its own:
#
#   - PORT_BASE chooses the ports (make run PORT_BASE=N: N, N+1, N+2), written into
#     run/dchat.conf, and the banner says the addresses of the config in use;
#   - control_group is the group of whoever started it: no dchatd warns of a group dchat
#     that does not exist;
#   - the demo lines go into a new log only: started again (running, or after make stop),
#     it posts nothing and shows what is there;
#   - another PORT_BASE while it runs: refused, saying to stop first; a port in use (by
#     anyone): refused before anything starts, naming the port and PORT_BASE; a PORT_BASE
#     that is no port: refused;
#   - make run passes PORT_BASE on.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl ss

TREE=$T/tree
mkdir -p "$TREE/etc" "$TREE/tests/lib"
cp "$DCHATD" "$TREE/dchatd"
cp "$DCHATCTL" "$TREE/dchatctl"
cp "$TOP/etc/dchat-local.conf" "$TREE/etc/"
cp "$TOP/tests/lib/local-cluster" "$TREE/tests/lib/"
LC=$TREE/tests/lib/local-cluster

# three free ports in a row
free() { [ -z "$(ss -Htan "sport = :$1")" ]; }
for i in $(seq 50); do
    pick_port
    BASE=$PICKED
    [ "$BASE" -lt 60000 ] && free $((BASE + 1)) && free $((BASE + 2)) && break
done
track_cluster() { local f; for f in "$TREE"/run/*.pid; do [ -s "$f" ] && track_pid "$(cat "$f")"; done; return 0; }
# lc ARGS...: run local-cluster (PORT_BASE from the environment), and track what it started
lc() { run "$LC" "$@"; track_cluster; }

PORT_BASE=$BASE lc start
is "$RC" 0 "local-cluster start with PORT_BASE=$BASE: exit 0" || diag "$OUT" "$ERR"
like "$OUT" "dchat is running from $TREE/run/dchat.conf: server master \\(127.0.0.1:$BASE\\), peers node1 \\(127.0.0.1:$((BASE + 1))\\) and node2 \\(127.0.0.1:$((BASE + 2))\\)" \
    "the banner: the addresses of the config in use"
like "$OUT" 'post "Hello from node1"' "a new log: the demo lines are posted"
is "$(grep -c 'address = "127.0.0.1:' "$TREE/run/dchat.conf")" 3 "run/dchat.conf: three addresses"
is "$(grep -c -E "127\\.0\\.0\\.1:($BASE|$((BASE + 1))|$((BASE + 2)))\"" "$TREE/run/dchat.conf")" 3 "... on the ports PORT_BASE, +1, +2"
is "$(sed -n 's/^control_group = "\(.*\)";$/\1/p' "$TREE/run/dchat.conf")" "$(id -gn)" "control_group: the group of whoever started it"
is "$(cat "$TREE"/run/*.log | grep -c 'does not exist')" 0 "no dchatd warns of a group that does not exist"
V=$TREE/run/node1/dchatd.sock
is "$("$DCHATCTL" -s "$V" view | sed 's/^.\{15\}//')" $'root: Hello from node1\nroot: Hello from node2' "the log: the two demo lines"
ok "the server listens on PORT_BASE" eval "ss -Htln 'sport = :$BASE' | grep -q ."

# --- again, while it runs; then after a stop -------------------------------------------------------
PORT_BASE=$BASE lc start
is "$RC" 0 "started again while it runs: exit 0"
like "$OUT" "master is already running" "... says it runs already"
like "$OUT" "no demo lines posted this time" "... and posts no demo lines into the old log"
is "$("$DCHATCTL" -s "$V" view | wc -l)" 2 "the log still has two lines"
PORT_BASE=$((BASE + 10)) lc start
is "$RC" 1 "another PORT_BASE while it runs: exit 1"
like "$ERR" "dchat is running already, with master at 127.0.0.1:$BASE \\(run/dchat.conf\\); make stop first" \
    "... says it runs with the other ports, and to stop first"
lc stop
is "$RC" 0 "local-cluster stop: exit 0"
like "$OUT" "stopped master" "... stops them"
PORT_BASE=$BASE lc start
is "$RC" 0 "started again after a stop: exit 0"
like "$OUT" "no demo lines posted this time" "... no demo lines: the log has lines already"
is "$("$DCHATCTL" -s "$V" view | wc -l)" 2 "the log has its two lines, once"
lc stop

# --- a port in use; a bad PORT_BASE ----------------------------------------------------------------------
perl -MIO::Socket::INET -e '
    my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0], Listen => 1, ReuseAddr => 1)
        or die "$!";
    sleep 60;' $((BASE + 1)) &
track_pid $!
wait_for -t 5 eval "ss -Htln 'sport = :$((BASE + 1))' | grep -q ."
PORT_BASE=$BASE lc start
is "$RC" 1 "a port in use: exit 1"
like "$ERR" "port $((BASE + 1)) on 127.0.0.1 is in use .*make run PORT_BASE=N uses the ports N, N\\+1 and N\\+2 instead" \
    "... naming the port, and PORT_BASE"
is "$(cat "$TREE"/run/*.pid 2>/dev/null)" "" "... and nothing was started"
PORT_BASE=abc lc start
is "$RC" 2 "PORT_BASE=abc: exit 2"
like "$ERR" "PORT_BASE must be a port number from 1024 to 65533" "... says what it must be"

# --- make run passes PORT_BASE on ---------------------------------------------------------------------------
like "$(make -s -n -C "$TOP" run PORT_BASE=47300 MAKE=: 2>/dev/null)" "PORT_BASE=47300 tests/lib/local-cluster start" \
    "make run PORT_BASE=47300 gives it to local-cluster"
done_testing
