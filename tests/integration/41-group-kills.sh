#!/usr/bin/env bash
# 41-group-kills — a three-server group and two peers with four posters each
# (tests/bench/dchat-bench -n 0: they post without a pause until told to stop, every text
# unique, every answer written down), while the servers are killed: the leader (kill -9)
# three times, each one started again once posting has gone on without it and caught up
# before the next kill; then a follower; then all three at once, started again together.
# At the end: every acknowledged post is in the log exactly once, under the seq it was
# told; nothing is stored twice; a post that failed is not in the log unless its error
# said it may or may not have been stored, and none failed at all (a post waits up to
# 20 s, a failover takes about one: the posts in flight at a kill go on to the next
# leader); seqs have no gap and fences strictly increase; every server holds the same log.  Figures: posts acknowledged and failed, and for each
# kill the time until the next post was acknowledged (printed, never compared).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl md5sum awk
need_tool ../bench/dchat-bench check-posts
BENCH=$TOP/tests/bench/dchat-bench

# post_timeout_ms, dead_after_ms: a post waits for the group (a failover, all three
# restarting) rather than fails, twenty times as long as a failover takes; reconnect_max_ms:
# peers find the servers again quickly after the restarts
N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'post_timeout_ms = 20000;' 'reconnect_max_ms = 300;' \
    'dead_after_ms = 15000;'

# the posters: -e 100: one whose post failed waits 100 ms before the next
"$BENCH" -c 4 -n 0 -e 100 -t kills -o "$T/outcomes" "$(node_sock node1)" "$(node_sock node2)" \
    > "$T/bench.json" 2> "$T/bench.err" &
BENCH_PID=$!
track_pid $BENCH_PID
now_ns() { date +%s%N; }
_acks_since() { [ "$(bench_acks_after "$1")" -ge "$2" ]; }
# more_posts N SECS: N more posts acknowledged from now on (posting goes on)
more_posts() { local t; t=$(now_ns); wait_for -t "${2:-30}" _acks_since "$t" "$1"; }
# caught_up NAME: NAME holds at least what the leader held when we asked
caught_up() {
    local l s
    l=$(group_leader) || return 1
    s=$(last_seq "$l") || return 1
    wait_for -t 30 _seq_at_least "$1" "$s"
}
_seq_at_least() { [ "$(last_seq "$1")" -ge "$2" ]; }
declare -a GAPS=()
# kill_and_measure NAME...: kill -9 them; posting must go on (200 posts acknowledged after
# the kill); how long it paused (bench_resumed_after) is appended to GAPS
kill_and_measure() {
    local t0 n
    t0=$(now_ns)
    for n in "$@"; do kill -KILL "$(node_pid "$n")"; done
    for n in "$@"; do node_kill "$n"; done          # reaped
    wait_for -t 40 _acks_since "$t0" 200 || { GAPS+=("none"); return 1; }
    GAPS+=("$(bench_resumed_after "$t0" 200)")
}

ok "posting is under way" more_posts 200 30

# --- the leader, three times ---------------------------------------------------------------
for k in 1 2 3; do
    wait_for -t 15 group_leader || bail_out "no leader before kill $k"
    L=$(group_leader)
    ok "kill $k: the leader $L killed (kill -9), posting goes on" kill_and_measure "$L"
    node_start "$L" || bail_out "$L does not restart"
    ok "kill $k: $L is back and catches up" caught_up "$L"
done

# --- a follower --------------------------------------------------------------------------
wait_for -t 15 group_leader || bail_out "no leader before the follower's kill"
L=$(group_leader)
F=
for n in "${SERVERS[@]}"; do [ "$n" != "$L" ] && F=$n; done
t0=$(now_ns)
node_kill "$F"
ok "a follower ($F) killed: posting goes on" wait_for -t 40 _acks_since "$t0" 200
F_MS=$(bench_resumed_after "$t0" 200)
node_start "$F" || bail_out "$F does not restart"
ok "$F is back and catches up" caught_up "$F"

# --- all three at once -------------------------------------------------------------------
t0=$(now_ns)
for n in "${SERVERS[@]}"; do kill -KILL "$(node_pid "$n")"; done
for n in "${SERVERS[@]}"; do node_kill "$n"; done          # reaped
for n in "${SERVERS[@]}"; do node_start "$n" --no-wait; done
for n in "${SERVERS[@]}"; do node_wait_ready "$n" || bail_out "$n does not restart"; done
ok "all three killed (kill -9) and started again: posting goes on" wait_for -t 40 _acks_since "$t0" 200
RESTART_MS=$(bench_resumed_after "$t0" 200)

# --- the end: stop posting, let what is in flight finish -----------------------------------
kill -USR1 $BENCH_PID
wait_pid_exit $BENCH_PID 60 || fail "dchat-bench did not stop within 60 s of SIGUSR1"
wait $BENCH_PID
rc=$?
like "$rc" '^[01]$' "dchat-bench ran to the end (exit $rc: 0 all acknowledged, 1 some failed)" ||
    diag "$(cat "$T/bench.err")"
ok "every server holds the same log" wait_for -t 30 servers_identical
ctl master view --json > "$T/all.json"
like "$(check_fences "$T/all.json")" '^ok [0-9]+ entries$' "seqs without a gap, fences strictly increasing" ||
    diag "$(check_fences "$T/all.json")"
run "$TESTLIB/check-posts" "$T/outcomes" "$T/all.json" kills
is "$RC" 0 "every acknowledged post stored once under its seq, nothing doubled, no failed post stored unless it said it may be" ||
    diag "$OUT"
FIG=$(head -n 1 <<<"$OUT")
FAILED=$(awk '$2 == "err"' "$T/outcomes" | wc -l)
# a failover takes about a second, a post may wait 20: the posts in flight at a kill go on
# to the next leader (exactly once: check-posts) rather than fail
is "$FAILED" 0 "no post failed: those in flight at each kill were sent on to the next leader"
if [ "$FAILED" -gt 0 ]; then
    note "errors seen by the posters (count, error):"
    note "$(awk -F '\t' '$1 ~ / err / { print $2 }' "$T/outcomes" | sed -E 's/[0-9]+ ms/N ms/g' |
        sort | uniq -c | sort -rn | head -n 5)"
fi
for n in "${NODES[@]}"; do
    is "$(count_events "$n" protocol-error)" 0 "$n logged no protocol-error"
done
note "posts: $FIG"
note "leader kill -9 -> posts acknowledged again: ${GAPS[*]} ms; follower kill -9: $F_MS ms;" \
     "all three killed and started again -> posts acknowledged again: $RESTART_MS ms"
done_testing
