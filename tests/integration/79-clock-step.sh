#!/usr/bin/env bash
# 79-clock-step — a peer restarted with its wall clock stepped back an hour (an NTP
# step at boot, a VM restored from a snapshot, a wrong RTC: tests/lib/clockshift.so,
# preloaded, shifts CLOCK_REALTIME, time() and gettimeofday()).  Its incarnation must
# still be later than the one the others knew (review item 2): it is a counter kept in
# its state directory, not the start time.  Before, node1 took node2's HELLOs and
# heartbeats for a ghost's, declared node2 dead while it was connected, and entered the
# critical section while node2 held it: mutual exclusion broken with no failure present.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool clockshift.so
SHIM=$TESTLIB/clockshift.so

cluster_start 2 'suspect_after_ms = 500;' 'dead_after_ms = 1500;' 'post_timeout_ms = 15000;'
ctl node1 post "before the step" || fail "a post before"
inc1=$(cat "$(node_state node2)/incarnation")

node_stop node1     # node1 restarts too, so that its log holds only what follows
node_start node1 || bail_out "node1 does not restart"
ok "everyone is linked" wait_connected 15
node_stop node2
is "$(DCHAT_CLOCK_SHIFT=-3600 LD_PRELOAD=$SHIM date +%s)" "$(( $(date +%s) - 3600 ))" \
    "the shim puts the wall clock an hour back"
DCHAT_CLOCK_SHIFT=-3600 LD_PRELOAD=$SHIM node_start node2 || bail_out "node2 does not start with its clock an hour back"
inc2=$(cat "$(node_state node2)/incarnation")
cmp_ok "$inc2" -gt "$inc1" "node2's incarnation grew ($inc1 -> $inc2) though its clock went back"
ok "node1 sees node2 restarted" wait_event node1 peer-restarted 1 10
ok "everyone is linked" wait_connected 15
sleep 2.5       # more than dead_after_ms: a peer taken for a ghost would be declared dead by now
is "$(count_events node1 peer-dead)" 0 "node1 does not declare the restarted node2 dead while it is connected"

# node2 holds the critical section for 4 s; node1's post must wait for it
t0=$(date +%s%N)
run ctl node2 post --hold 4 "node2 holds"
is "$RC" 0 "node2's post --hold 4" || diag "$ERR"
run ctl node1 post "node1 waits"
t1=$(date +%s%N)
is "$RC" 0 "node1's post" || diag "$ERR"
waited=$(( (t1 - t0) / 1000000 ))
cmp_ok "$waited" -ge 3000 "node1's post ended ${waited} ms after node2 took the critical section for 4 s: it waited"
ok "node1 entered after node2 left" wait_event node2 cs-exit 1 1
ctl node1 view --json > "$T/all.json"
like "$(check_fences "$T/all.json")" '^ok 3 ' "3 entries, fences increasing"
is "$(count_events node1 peer-dead)" 0 "... and node1 never declared node2 dead"

done_testing
