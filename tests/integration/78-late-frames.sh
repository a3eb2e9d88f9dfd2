#!/usr/bin/env bash
# 78-late-frames — a frame of a dead incarnation that reaches the server after the new
# incarnation's HELLO (review item 1).  node1 reaches the server through mitm-proxy,
# which holds what node1 sends on its first connection once the HELLO is through (the
# network holding data of a connection and delivering it late, as TCP does after a cut
# heals).  node1 posts "old life": the APPEND is held.  node1 is killed (kill -9) and
# started again: a new incarnation, on a new connection.  Then the proxy releases the
# old connection's data, and node1 posts "new life".  "new life" must be acknowledged
# only if it is stored, and stored exactly once; "old life" may or may not be stored
# (its client got an error), but never in place of "new life".  Before, the new
# incarnation numbered its posts on from the server's last post id, the late APPEND
# took that number with "old life", and "new life" was acknowledged as a duplicate of
# it: acknowledged, and lost.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool mitm-proxy
MITM=$TESTLIB/mitm-proxy

cluster_start 2 'post_timeout_ms = 6000;'
ctl node1 post "before" || fail "a post before"
REAL_CONF=$CONF
pick_port
PROXY_PORT=$PICKED
sed "s|127.0.0.1:$(node_port master)\"|127.0.0.1:$PROXY_PORT\"|" "$REAL_CONF" > "$T/proxy.conf"
# units up: M1, M3 (the handshake), the HELLO record, then what node1 sends next
"$MITM" -l "$PROXY_PORT" -c "127.0.0.1:$(node_port master)" -a hold -d up -u 3 > "$T/mitm.out" 2>&1 &
MITM_PID=$!
track_pid $MITM_PID
wait_for -t 5 grep -q listening "$T/mitm.out" || bail_out "mitm-proxy does not listen"

node_stop node1
CONF=$T/proxy.conf node_start node1 || bail_out "node1 does not start behind the proxy"
ok "node1 reaches the server through the proxy" wait_event node1 server-up 1 10
ok "... and everyone is linked" wait_connected 15

# the old life posts; its APPEND is held by the network
( ctl node1 post "old life" > "$T/old.out" 2>&1; echo $? > "$T/old.rc" ) &
OLD=$!
track_pid $OLD
ok "the old life's APPEND is held" wait_for -t 10 grep -q '^attacked: hold unit 3 up on connection 1' "$T/mitm.out"
ok "... after node1 entered the critical section" wait_event node1 cs-enter 1 5
node_kill node1
wait "$OLD"
isnt "$(cat "$T/old.rc")" 0 "the old life's post ended with an error (its dchatd died)"

# a new life, on a new connection (relayed untouched)
CONF=$T/proxy.conf node_start node1 || bail_out "node1 does not restart"
ok "the new life is linked to the server" wait_event node1 server-up 1 10
ok "... on a second connection" wait_for -t 5 grep -q '^connection 2' "$T/mitm.out"
# now the old connection's data arrives
kill -USR1 "$MITM_PID"
# (the server may have closed that connection already, when the new life's HELLO came)
ok "the proxy released the old life's data, or the server closed its connection first" \
    wait_for -t 5 grep -q '^released\|^dropped' "$T/mitm.out"
note "proxy: $(grep '^released\|^dropped' "$T/mitm.out")"
sleep 0.5       # for the server to take it in, if it still listens to that connection

run ctl node1 post "new life"
is "$RC" 0 "the new life's post is acknowledged" || diag "$ERR"
ok "everyone is linked" wait_connected 15
run ctl node2 post "after"
is "$RC" 0 "node2 posts after" || diag "$ERR"

ctl node2 view > "$T/view"
texts() { sed -E 's/^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) [^:]+: //' "$T/view"; }
is "$(texts | grep -c '^new life$')" 1 "'new life', acknowledged, is in the log exactly once"
cmp_ok "$(texts | grep -c '^old life$')" -le 1 "'old life' is in the log at most once (its outcome was unknown)"
ctl node2 view --json > "$T/all.json"
like "$(check_fences "$T/all.json")" '^ok ' "seqs without a gap, fences increasing"
note "server: $(grep -c 'replaced by a new connection of node1' "$(node_log master)") connection(s) of node1 replaced;" \
     "$(grep -c 'late copy' "$(node_log master)") late copies refused; 'old life' stored: $(texts | grep -c '^old life$')"

done_testing
