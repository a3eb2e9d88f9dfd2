#!/usr/bin/env bash
# 46-group-catchup — a server of a three-server group is stopped while 1200 posts go in,
# one Raft command each: the others compact their Raft logs (snapshots that hold no
# entries, only the log's end), so when it comes back Raft sends it a snapshot beyond
# the end of its chat log.  It fetches the entries it lacks from another server, page
# by page (replica-behind, then replica-caught-up with the rate), and ends holding the
# same log as the others, byte for byte.  Then again with 2 peers x 8 posters: the
# commands after the snapshot reach it while it is still fetching (its state machine
# turns them down for the moment); it must apply them once it has caught up, with
# nobody posting any more.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd md5sum
need_tool ../bench/dchat-bench
BENCH=$TOP/tests/bench/dchat-bench

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;'
same_logs() {
    local n sums=
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        sums+="$(ctl "$n" view --json | md5sum | cut -c1-32) "
    done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}
ctl node1 post "before" || fail "a post before"
F=
for n in "${SERVERS[@]}"; do grep -q 'msg="this server leads the group' "$(node_log "$n")" || F=$n; done
note "stopping the follower $F"
node_stop "$F"

"$BENCH" -c 1 -n 1200 -t catchup "$(node_sock node1)" > "$T/bench.json" 2> "$T/bench.err"
is "$?" 0 "1200 posts acknowledged while $F is down" || diag "$(cat "$T/bench.err")"

: > "$(node_log "$F")"
node_start "$F" || bail_out "$F does not restart"
ok "$F finds its chat log behind the group's snapshot (replica-behind)" wait_event "$F" replica-behind 1 15
ok "$F catches up (replica-caught-up)" wait_event "$F" replica-caught-up 1 30
note "$(events "$F" replica-caught-up | ev_field msg)"
ok "every server holds the same log" wait_for -t 15 same_logs
is "$(ctl "$F" view --json | wc -l)" 1201 "$F holds all 1201 entries"
run ctl node2 post "after"
is "$RC" 0 "posting goes on" || diag "$ERR"
ok "every server holds the same log again" wait_for -t 15 same_logs

# --- commands that arrive while it fetches: applied once it has caught up ----------------------
last_seq() { ctl "$1" status --json | perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{last_seq}'; }
node_stop "$F"
"$BENCH" -c 8 -n 500 -t catchup2 "$(node_sock node1)" "$(node_sock node2)" > "$T/bench.json" 2> "$T/bench.err"
is "$?" 0 "8000 more posts while $F is down (2 peers x 8 posters)" || diag "$(cat "$T/bench.err")"
want=$(ctl node1 view --json -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
node_start "$F" || bail_out "$F does not restart"
ok "$F catches up again" wait_event "$F" replica-caught-up 2 30
note "$(events "$F" replica-caught-up | tail -n 1 | ev_field msg)"
ok "... and then applies the commands that came after the snapshot, with nobody posting: seq $want" \
    wait_for -t 15 eval '[ "$(last_seq "$F")" = "$want" ]'
ok "every server holds the same log" wait_for -t 15 same_logs

# --- posts while it fetches: it must stay in the group ---------------------------------------------
# (libraft 0.15 takes a server out of the group when an apply fails while it handles a
# message: a heartbeat that announces a commit while this one still fetches did that)
node_stop "$F"
"$BENCH" -c 8 -n 2000 -t catchup3 "$(node_sock node1)" "$(node_sock node2)" > "$T/bench.json" 2> "$T/bench.err"
is "$?" 0 "32000 more posts while $F is down" || diag "$(cat "$T/bench.err")"
node_start "$F" || bail_out "$F does not restart"
for i in 1 2 3 4 5 6; do ctl node$(( i % 2 + 1 )) post "while $F fetches $i" > /dev/null || fail "post $i while $F fetches"; done
ok "$F catches up again" wait_event "$F" replica-caught-up 3 60
want=$(ctl node1 view --json -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
ok "... and applies everything up to seq $want" wait_for -t 30 eval '[ "$(last_seq "$F")" = "$want" ]'
leader() {      # the live server that said last it leads, in the highest term
    local n best= bt=0 t
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        t=$(events "$n" leader-elected | grep 'msg="this server leads' | tail -n 1 | ev_field lamport)
        [ -n "$t" ] && [ "$t" -gt "$bt" ] && { bt=$t; best=$n; }
    done
    echo "$best"
}
G=
for n in "${SERVERS[@]}"; do [ "$n" != "$F" ] && [ "$n" != "$(leader)" ] && G=$n; done
node_stop "$G"
run ctl node1 post "with $G down"
is "$RC" 0 "$F counts for the majority: with the other follower $G down, a post is stored" || diag "$ERR"
node_start "$G" || bail_out "$G does not restart"
ok "every server holds the same log" wait_for -t 30 same_logs

done_testing
