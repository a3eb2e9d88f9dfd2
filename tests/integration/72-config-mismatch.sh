#!/usr/bin/env bash
# 72-config-mismatch — hosts whose config files differ say so, on both sides, with what
# differs.  Every HELLO carries a digest of the sender's cluster definition (members,
# roles, numeric addresses); on a mismatch the two nodes exchange their members
# (MSG_CLUSTER) and each logs one config-mismatch event naming the differences.
#   a. node1's file gives node2 a wrong port: node1, node2 and the server each say
#      which address differs;
#   b. node1's file has an extra peer node3 (which then shows as dead forever there):
#      the others say that node1's file has peer node3 and theirs has not.
# Before, both cases failed silently (a peer unable to post, a peer dead forever).
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 2 'post_timeout_ms = 8000;' 'suspect_after_ms = 500;' 'dead_after_ms = 1500;'
REAL_CONF=$CONF
p2=$(node_port node2)
is "$(count_events node1 config-mismatch)$(count_events node2 config-mismatch)$(count_events master config-mismatch)" \
    000 "the same file everywhere: no config-mismatch anywhere"

# --- a. a wrong port for node2 in node1's file ---------------------------------------------------
pick_port
bad=$PICKED
sed "s|127.0.0.1:$p2\"|127.0.0.1:$bad\"|" "$REAL_CONF" > "$T/badport.conf"
node_stop node1
CONF=$T/badport.conf node_start node1 || bail_out "node1 does not start with its own file"
ok "node1 reports the mismatch" wait_event node1 config-mismatch 1 10
ok "node2 reports it too" wait_event node2 config-mismatch 1 10
ok "so does the server" wait_event master config-mismatch 1 10
ok "node1: node2's file gives node2 port $p2, this one $bad" wait_for -t 10 grep -q \
    "node2's file has node2 as peer at 127.0.0.1:$p2, this one as peer at 127.0.0.1:$bad" "$(node_log node1)"
ok "node1: and so does the server's" wait_for -t 10 grep -q \
    "master's file has node2 as peer at 127.0.0.1:$p2, this one as peer at 127.0.0.1:$bad" "$(node_log node1)"
like "$(events node2 config-mismatch)" \
    "node1's file has node2 as peer at 127.0.0.1:$bad, this one as peer at 127.0.0.1:$p2" \
    "node2: node1's file gives node2 port $bad, this one $p2"
like "$(events master config-mismatch)" "node1's file has node2 as peer at 127.0.0.1:$bad" \
    "the server: the same, from node1's HELLO"
like "$(events node1 config-mismatch)" 'every host needs the same cluster section' "... with the remedy"
sleep 3         # reconnections meanwhile (node2 is declared dead and linked again) ...
cmp_ok "$(count_events node2 config-mismatch)" -le 1 "... and it is said once, not at every reconnection"

# --- b. an extra peer in node1's file --------------------------------------------------------------
pick_port
p3=$PICKED
perl -pe "s|(\\{ name = \"node2\"; address = \"127.0.0.1:$p2\"; \\})|\$1,\n              { name = \"node3\"; address = \"127.0.0.1:$p3\"; }|" \
    "$REAL_CONF" > "$T/extra.conf"
grep -q node3 "$T/extra.conf" || bail_out "cannot write the config with node3"
node_stop node1
: > "$(node_log node2)"; : > "$(node_log master)"
CONF=$T/extra.conf node_start node1 || bail_out "node1 does not start with node3 in its file"
ok "node2 reports the extra peer" wait_event node2 config-mismatch 1 10
like "$(events node2 config-mismatch)" "node1's file has peer node3 at 127.0.0.1:$p3, this one has not" \
    "node2: node1's file has peer node3, this one has not"
ok "node1 reports it" wait_for -t 10 grep -q "this file has peer node3 at 127.0.0.1:$p3, node2's has not" \
    "$(node_log node1)"
ok "the server reports it" wait_event master config-mismatch 1 10
like "$(events master config-mismatch)" "node1's file has peer node3 at 127.0.0.1:$p3, this one has not" \
    "the server: node1's file has peer node3"

# --- the same file again: silence ------------------------------------------------------------------
node_stop node1
: > "$(node_log node1)"; : > "$(node_log node2)"; : > "$(node_log master)"
node_start node1 || bail_out "node1 does not restart"
ok "everyone is linked" wait_connected 15
run ctl node1 post "the same file again"
is "$RC" 0 "node1 posts" || diag "$ERR"
is "$(count_events node1 config-mismatch)$(count_events node2 config-mismatch)$(count_events master config-mismatch)" \
    000 "the same file again: no config-mismatch"

done_testing
