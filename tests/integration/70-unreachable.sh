#!/usr/bin/env bash
# 70-unreachable — with post_timeout_ms = 1500: a post fails in time, naming what it
# waited for, when a peer or the server is down; it works again once they are back,
# and the log loses nothing.  The failure detector is set slow here (a peer is dead
# only after 60 s), so a post runs into its own timeout first; 75-failover tests
# what happens once a dead peer is detected.
. "$(dirname "$0")/../lib/lib.sh"
need_root

SLOW_FD=('suspect_after_ms = 30000;' 'dead_after_ms = 60000;')
cluster_start 2 'post_timeout_ms = 1500;' 'reconnect_max_ms = 500;' "${SLOW_FD[@]}"

ctl node1 post "one" || fail "post one"
ctl node2 post "two" || fail "post two"

# --- a peer is down ----------------------------------------------------------------------
# killed: it says nothing (a peer stopped cleanly says it leaves, and is not waited for:
# below, and 88-clean-stop)
node_kill node2
run_timed ctl node1 post "while node2 is down"
is "$RC" 1 "post on node1 with node2 down: exit 1"
cmp_ok "$MS" -ge 1400 "... not before post_timeout_ms (${MS} ms)"
cmp_ok "$MS" -le 4000 "... and not much later (${MS} ms)"
like "$ERR" '^dchatctl: post failed: .*node2' "... and the message names node2"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "... in one line"
ok "node1 logged post-failed" wait_event node1 post-failed 1 3
ok "node1 logged peer-down for node2" test -n "$(events node1 peer-down | grep ' peer=node2 ')"
run ctl node1 view
is "$(printf '%s\n' "$OUT" | grep -c 'while node2 is down')" 0 "the failed post is not in the log"
run ctl node1 status --json
like "$OUT" '"dme_state":"released"' "node1 withdrew its request (released)"

# a second post in a row fails the same way (the request was withdrawn cleanly)
run_timed ctl node1 post "still down"
is "$RC" 1 "a second post with node2 down fails too"
cmp_ok "$MS" -le 4000 "... in time (${MS} ms)"

# a post still waiting when its dchatd is stopped ends with an error at once
ctl node1 post "pending at shutdown" 2>"$T/err.shutdown" & p=$!
track_pid $p
_queued() { ctl node1 status --json | grep -q '"queued":1'; }
ok "the post waits on node1" wait_for -t 2 _queued
t0=$(date +%s%N)
node_stop node1
wait $p
rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "${NODE_RC[node1]}" 0 "node1 stops with status 0 while a post waits"
is "$rc" 1 "the waiting post fails"
cmp_ok "$ms" -lt 1000 "... at once (${ms} ms), not at its timeout"
like "$(cat "$T/err.shutdown")" '^dchatctl: post failed: .*shutting down' "... saying dchatd is shutting down"
node_start node1

node_start node2
ok "node2 is back and linked" wait_connected 15
run_timed ctl node1 post "node2 is back"
is "$RC" 0 "post on node1 works again once node2 is back" || diag "$ERR"
cmp_ok "$MS" -lt 1500 "... without waiting for a timeout (${MS} ms)"
run ctl node2 post "hello from the returned node2"
is "$RC" 0 "post on the restarted node2 works" || diag "$ERR"

# --- a peer stopped cleanly: it leaves, and nobody waits for it ----------------------------------
node_stop node2
is "${NODE_RC[node2]}" 0 "node2 stops on SIGTERM with status 0"
run_timed ctl node1 post "after node2 left"
is "$RC" 0 "post on node1 right after node2 stopped cleanly: stored, node2 is not waited for" || diag "$ERR"
cmp_ok "$MS" -lt 1500 "... without waiting for post_timeout_ms (${MS} ms)"
ok "node1 logged peer-left for node2" test -n "$(events node1 peer-left | grep ' peer=node2 ')"
node_start node2
ok "node2 is back and linked" wait_connected 15

# --- a peer is killed (no clean close) -------------------------------------------------------
node_kill node2
run_timed ctl node1 post "node2 was killed"
is "$RC" 1 "post with node2 killed: exit 1"
cmp_ok "$MS" -le 4000 "... in time (${MS} ms)"
like "$ERR" 'node2' "... naming node2"
node_start node2
ok "node2 is back after SIGKILL" wait_connected 15
run ctl node1 post "after the kill"
is "$RC" 0 "post works after node2 restarted from SIGKILL" || diag "$ERR"

# --- the server is down ------------------------------------------------------------------------
node_stop master
is "${NODE_RC[master]}" 0 "master stops on SIGTERM with status 0"
run_timed ctl node1 post "while the server is down"
is "$RC" 1 "post with the server down: exit 1"
cmp_ok "$MS" -le 4000 "... in time (${MS} ms)"
like "$ERR" '^dchatctl: post failed: .*server' "... and the message is about the server"
run ctl node2 view
is "$RC" 1 "view with the server down: exit 1"
like "$ERR" 'server' "... with a message about the server"

node_start master
ok "the server is back and everyone is linked" wait_connected 15
run_timed ctl node2 post "server is back"
is "$RC" 0 "post works again once the server is back" || diag "$ERR"
run ctl node1 view
texts=$(printf '%s\n' "$OUT" | sed 's/^.* root: //' | tr '\n' '|')
is "$texts" "one|two|node2 is back|hello from the returned node2|after node2 left|after the kill|server is back|" \
    "the log has every acknowledged post, once, in order, and none of the failed ones"
is "$(ctl node2 view)" "$OUT" "node2 sees the same log"

# --- a peer restarted while the server is down -------------------------------------------------
# It has forgotten its post ids and its clock: it must learn them from the server before
# its post goes in, or the server takes the post for a duplicate and it is lost.
CONF_EXTRA=('post_timeout_ms = 8000;' 'reconnect_max_ms = 500;' "${SLOW_FD[@]}")
write_config
node_hup node1
node_stop master
node_stop node2
node_start node2
ctl node2 post "posted by a restarted node2 while the server was down" 2>"$T/err.restart" & p=$!
track_pid $p
sleep 0.3
node_start master
wait $p
is "$?" 0 "a post on the restarted node2, made while the server was down, succeeds once it is back" || diag "$(cat "$T/err.restart")"
ok "everyone is linked again (node1 may still be backing off)" wait_connected 15
run ctl node1 view
is "$(printf '%s\n' "$OUT" | grep -c ': posted by a restarted node2 while the server was down$')" 1 "... and it is in the log, once"
run ctl node2 post "and the next one"
is "$RC" 0 "the restarted node2 posts again"
run ctl node1 view -n 2
like "$OUT" $'restarted node2 while the server was down\n.*root: and the next one$' "... after it, in order"

# --- a peer dies inside the critical section while another waits for it ------------------------
# The waiter's request is deferred by node1; node1 is killed and comes back with no memory
# of it: the request is asked again on the new link, answered, and the post goes in.
ok "everyone is linked" wait_connected 15
run ctl node1 post --hold 5 "node1 holds, then dies"
is "$RC" 0 "node1 posts and holds the critical section"
deferred=$(count_events node1 reply-deferred)
ctl node2 post "node2 waits for node1" 2>"$T/err.waiter" & p=$!
track_pid $p
ok "node1 defers node2's request" wait_event node1 reply-deferred $((deferred + 1)) 3
node_kill node1
sleep 0.3
node_start node1
wait $p
is "$?" 0 "node2's post goes in once node1 is back" || diag "$(cat "$T/err.waiter")"
run ctl node1 view -n 2
like "$OUT" $'node1 holds, then dies\n.*root: node2 waits for node1$' "... after node1's post"

for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused')" 0 "$n logged no protocol-error or append-refused"
done

done_testing
