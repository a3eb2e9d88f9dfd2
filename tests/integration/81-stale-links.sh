#!/usr/bin/env bash
# 81-stale-links — connections that queued in a listening socket while no dchatd served it
# (socket activation: systemd holds the port, dchatd starts later; a restart) are no
# key problem.  Their initiators sent the first handshake message, waited
# handshake_timeout_ms for an answer and gave up long before dchatd accepted them: dchatd
# finds the message and the end together.  They must not be logged as link-auth-failed
# ("does it hold another key?"), which the catalog ties to a wrong key or tampering; a
# peer that really holds another key still is.
#
# node2's port is held by systemd-socket-activate(1), which starts dchatd on the first
# connection, but through `sleep 3`: meanwhile node1's links to node2 (handshake_timeout_ms
# 300, reconnecting every 100-200 ms) queue up and are given up one after the other.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd systemd-socket-activate
need_tool send-raw

cluster_config 2 'handshake_timeout_ms = 300;' 'reconnect_min_ms = 100;' 'reconnect_max_ms = 200;'
for n in master node1; do : > "$(node_log "$n")"; node_start "$n" || bail_out "$n does not start"; done

# node2: its port held from now on, its dchatd started 3 s after the first connection
mkdir -p "$T/node2/run" "$T/node2/state"
systemd-socket-activate -l "127.0.0.1:$(node_port node2)" --fdname=peer \
    -E RUNTIME_DIRECTORY="$T/node2/run" -E STATE_DIRECTORY="$T/node2/state" -E DCHAT_LOG=stderr \
    sh -c 'sleep 3; exec "$0" "$@"' "$DCHATD" -c "$CONF" -n node2 </dev/null >>"$(node_log node2)" 2>&1 &
NODE_PID[node2]=$!
track_pid $!
ok "node2's dchatd starts once node1 connects, 3 s later" wait_for -t 20 test -S "$T/node2/run/dchatd.sock"
ok "the cluster links up" wait_connected 20

# what node1 gave up on while node2's dchatd was not there
stale=$(grep -a -c 'closed by its initiator before this dchatd answered' "$(node_log node2)")
cmp_ok "$stale" -ge 1 "node2 found connections node1 had given up ($stale)" \
    || diag "$(tail -n 20 "$(node_log node2)")"
is "$(count_events node2 link-auth-failed)" 0 "... and logged no link-auth-failed for them" \
    || diag "$(events node2 link-auth-failed | head -n 5)"
like "$(grep -a 'closed by its initiator' "$(node_log node2)" | head -n 1)" \
     "level=info .*msg=\"connection from 127\\.0\\.0\\.1:[0-9]+: closed by its initiator before this dchatd answered .*a stale connection, not a key problem\"" \
     "an info line says what they were"
run ctl node1 post "after the stale links"
is "$RC" 0 "node1 posts through node2's fresh links" || diag "$ERR"

# a peer that holds another key, on node2's port: still link-auth-failed
"$DCHATCTL" keygen "$T/other.key" >/dev/null
before=$(count_events node2 link-auth-failed)
{ be32 1; wstr node1; be8 $ROLE_PEER; be64 0; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p" > "$T/hello"
"$TESTLIB/send-raw" -k "$T/other.key" -n node1 -t 2000 "127.0.0.1:$(node_port node2)" < "$T/hello" >/dev/null 2>&1
ok "a peer with another key is still reported: link-auth-failed" wait_event node2 link-auth-failed $((before + 1)) 5
like "$(events node2 link-auth-failed | tail -n 1 | ev_field msg)" "key" "... saying it is about the key"

done_testing
