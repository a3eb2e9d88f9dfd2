#!/usr/bin/env bash
# 42-group-behind — a follower of a three-server group is killed (kill -9) while 10,000
# posts go in (tests/bench/dchat-bench, 2 peers x 4 posters), so the others compact their
# Raft logs many times over; it is started again while posting goes on (2 x 4 posters
# more, until told to stop).  It finds its chat log behind the group's snapshot
# (replica-behind), fetches what it lacks from another server page by page, and goes on
# applying the group's commands (replica-caught-up, whose rate is printed).  At the end
# every server holds the same log, entry for entry; every acknowledged post is in it
# once, under its seq; seqs have no gap and fences strictly increase.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl md5sum awk
need_tool ../bench/dchat-bench check-posts
BENCH=$TOP/tests/bench/dchat-bench
POSTS=10000

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'post_timeout_ms = 20000;' 'dead_after_ms = 15000;'
ok "a first post" ctl node1 post "before"
wait_for -t 15 group_leader || bail_out "no leader"
L=$(group_leader)
F=
for n in "${SERVERS[@]}"; do [ "$n" != "$L" ] && F=$n; done
note "the leader is $L; killing the follower $F"
node_kill "$F"

run_timed "$BENCH" -c 4 -n $(( POSTS / 8 )) -t behind -o "$T/outcomes" "$(node_sock node1)" "$(node_sock node2)"
is "$RC" 0 "$POSTS posts acknowledged while $F is down ($MS ms)" || diag "$ERR" "$OUT"
S=$(last_seq "$L")
is "$S" $(( POSTS + 1 )) "the leader holds $(( POSTS + 1 )) entries"

# posting goes on while F comes back: it catches up with a moving group
"$BENCH" -c 4 -n 0 -t during -o "$T/outcomes2" "$(node_sock node1)" "$(node_sock node2)" \
    > "$T/bench2.json" 2> "$T/bench2.err" &
BENCH_PID=$!
track_pid $BENCH_PID
_acks() { [ "$(bench_acks_after 0 "$T/outcomes2")" -ge "$1" ]; }
ok "posting goes on" wait_for -t 30 _acks 50
node_start "$F" || bail_out "$F does not restart"
ok "$F finds its chat log behind the group's snapshot (replica-behind)" wait_event "$F" replica-behind 1 30
ok "$F catches up (replica-caught-up)" wait_event "$F" replica-caught-up 1 60
CAUGHT=$(events "$F" replica-caught-up | ev_field msg | tail -n 1)
note "$F: $CAUGHT"
like "$CAUGHT" "caught up with the group at seq [0-9]+: [0-9]+ entries fetched in [0-9]+ ms \\([0-9]+ entries/s\\)" \
    "the event says how many entries were fetched, how fast"
BEHIND=$(events "$F" replica-behind | ev_field msg | tail -n 1)
from=$(sed -nE 's/.*chat log ends at seq ([0-9]+).*/\1/p' <<< "$BEHIND")
upto=$(sed -nE 's/.*caught up with the group at seq [0-9]+: [0-9]+ entries fetched .*, up to seq ([0-9]+)$/\1/p' <<< "$CAUGHT")
nfetched=$(sed -nE 's/.*caught up with the group at seq [0-9]+: ([0-9]+) entries fetched.*/\1/p' <<< "$CAUGHT")
is "$nfetched" "$(( ${upto:-0} - ${from:-0} ))" \
    "the count is the entries it lacked, after seq $from up to $upto (its own last entry, checked, is not counted)"
# and it applies what the group commits from then on: it follows the leader's log
_follows() { [ "$(last_seq "$F")" -ge "$1" ]; }
s=$(last_seq "$L")
ok "$F applies the group's new entries after catching up (seq $s)" wait_for -t 30 _follows "$s"
kill -USR1 $BENCH_PID
wait_pid_exit $BENCH_PID 60 || fail "dchat-bench did not stop within 60 s of SIGUSR1"
wait $BENCH_PID
is "$?" 0 "every post made while $F caught up was acknowledged" || diag "$(cat "$T/bench2.err" "$T/bench2.json")"

ok "every server holds the same log" wait_for -t 30 servers_identical
ctl "$F" view --json > "$T/f.json"
like "$(check_fences "$T/f.json")" '^ok [0-9]+ entries$' "$F: seqs without a gap, fences strictly increasing" ||
    diag "$(check_fences "$T/f.json")"
ctl "$L" view --json > "$T/l.json"
ok "$F's log is the leader's, byte for byte" cmp "$T/f.json" "$T/l.json"
cat "$T/outcomes" "$T/outcomes2" > "$T/all-outcomes"
run "$TESTLIB/check-posts" "$T/all-outcomes" "$T/f.json"
is "$RC" 0 "every acknowledged post is in $F's log once, under its seq" || diag "$OUT"
for n in "${NODES[@]}"; do
    is "$(count_events "$n" protocol-error)" 0 "$n logged no protocol-error"
done
note "posts: $(head -n 1 <<<"$OUT")"
rate=$(sed -n -E 's/.*\(([0-9]+) entries\/s\).*/\1/p' <<<"$CAUGHT")
note "catch-up: $rate entries/s"
done_testing
