#!/usr/bin/env bash
# 69-debug-frames — debug = true logs every frame a dchatd sends as well as every one it
# receives (dchat.conf(5)), on every kind of connection, and keeps the heartbeats (HEARTBEAT,
# and a group's RAFT) out unless debug_heartbeats = true; both change by reload (issue 16,
# item 6: only received frames were logged, heartbeats included, four a second per link).
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 2 'debug = true;'
debug_lines() { grep -a -c -E "${EV_LINE}level=debug .*msg=\"[^\"]*: (sent|got) $2 tag" "$(node_log "$1")"; }
has() { [ "$(debug_lines "$1" "$2")" -gt 0 ]; }

run ctl node1 post "a post to watch"
is "$RC" 0 "post on node1" || diag "$ERR"
for want in "node1 sent APPEND" "node1 got APPENDED" "master got APPEND" "master sent APPENDED" \
            "node1 got POST" "node1 sent POSTED"; do
    set -- $want
    ok "$1 logs $2 $3" wait_for -t 5 has "$1" "$3"
done
like "$(grep -a -E 'sent APPEND tag' "$(node_log node1)" | head -n 1)" 'msg="server master: sent APPEND tag [0-9]+"' \
    "a sent frame's line names the link, the type and the tag"
like "$(grep -a -E 'got POST tag' "$(node_log node1)" | head -n 1)" 'msg="dchatctl pid [0-9]+ \(root\): got POST tag 1 \([0-9]+ bytes\)"' \
    "a received frame's line: the link, the type, the tag, its size"
# the peers' requests and replies, whichever entered the critical section asked the other
run ctl node2 post "and one from node2"
ok "the peer links: a REQUEST sent and got" wait_for -t 5 eval 'has node1 REQUEST || has node2 REQUEST'
ok "... and a REPLY" wait_for -t 5 eval 'has node1 REPLY && has node2 REPLY'
sleep 1         # four heartbeats on every link
for n in master node1 node2; do
    is "$(debug_lines $n HEARTBEAT)" 0 "$n: no HEARTBEAT line (debug_heartbeats = false)"
done

# --- debug_heartbeats = true by reload ---------------------------------------------------------------
CONF_EXTRA=('debug = true;' 'debug_heartbeats = true;')
write_config
for n in master node1 node2; do node_hup $n; done
for n in master node1 node2; do
    ok "$n: HEARTBEAT sent and got once asked for" wait_for -t 5 eval "has $n HEARTBEAT && grep -a -q 'sent HEARTBEAT' '$(node_log $n)'"
done

# --- debug = false by reload: no frame lines at all ------------------------------------------------------
CONF_EXTRA=('debug = false;' 'debug_heartbeats = true;')
write_config
for n in master node1 node2; do node_hup $n; done
ok "the reload is taken" wait_for -t 5 eval "[ \"\$(count_events node1 reloaded)\" -ge 2 ]"
sleep 0.3
c0=$(grep -a -c -E "${EV_LINE}level=debug" "$(node_log node1)")
ctl node1 post "not logged frame by frame" >/dev/null
sleep 0.5
is "$(grep -a -c -E "${EV_LINE}level=debug" "$(node_log node1)")" "$c0" "debug = false: no frame lines (debug_heartbeats alone does nothing)"
done_testing
