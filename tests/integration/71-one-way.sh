#!/usr/bin/env bash
# 71-one-way — a peer that can be heard but not reached.  node1 runs with a config in
# which node2's port is wrong (as a firewall that blocks one direction, or node2's
# max_links_in, would make it): node2 links to node1 and its heartbeats arrive, but
# node1 can never send node2 a REQUEST.  A peer counts as alive only while the
# protocol can make progress with it, so node1 declares node2 dead ("unreachable"),
# stops waiting for it, and both peers post (the server's fence keeps the log in
# order).  Before, node1 saw node2 alive and unreachable forever, and every post of
# node1's timed out.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

cluster_start 2 'post_timeout_ms = 8000;' 'suspect_after_ms = 500;' 'dead_after_ms = 1500;'
ctl node1 post "both ways" || fail "a post while both directions work"

pick_port
sed "s|127.0.0.1:$(node_port node2)\"|127.0.0.1:$PICKED\"|" "$CONF" > "$T/oneway.conf"
grep -q "$PICKED" "$T/oneway.conf" || bail_out "cannot write the one-way config"
node_stop node1
REAL_CONF=$CONF
CONF=$T/oneway.conf node_start node1 || bail_out "node1 does not start with the one-way config"
CONF=$REAL_CONF

ok "node2 links to node1 (node2's heartbeats reach node1)" \
    wait_for -t 10 grep -q 'link from node2\|link to node2 up' "$(node_log node1)"
ok "node1 declares node2 dead: heard, but unreachable" wait_event node1 peer-dead 1 10
like "$(events node1 peer-dead | tail -n 1)" 'node2 unreachable \(it is heard, but the link to it is down\)' \
    "... and says why"

for i in 1 2 3; do
    run ctl node1 post "node1 one-way $i"
    is "$RC" 0 "node1 posts while it cannot reach node2 ($i)" || diag "$ERR"
    run ctl node2 post "node2 one-way $i"
    is "$RC" 0 "node2 posts too ($i)" || diag "$ERR"
done
ctl node2 view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok 7 entries" "7 entries, seqs without a gap, fences increasing"

# the path comes back: node1 with the right config links to node2 again, and waits for it
node_stop node1
node_start node1 || bail_out "node1 does not restart"
ok "everyone is linked again" wait_connected 15
run ctl node1 post "both ways again"
is "$RC" 0 "node1 posts once both directions work again" || diag "$ERR"
like "$(events node1 'request-sent|cs-enter' | tail -n 2 | tr '\n' ' ')" 'node2' \
    "... asking node2 for its permission again"

done_testing
