#!/usr/bin/env bash
# 49-group-migrate — one server becomes a group of three, as dchatd(8) (REPLICATION,
# "going from one server to three") says: stop it, copy its chat.log into the new
# servers' state directories, list the three servers in every host's file, start them
# and the peers.  The group goes on with the same log: the same entries under the same
# seqs on every server, the next post gets the next seq, the fences go on increasing.
# A server started with another cluster's chat.log takes no part (it says why) while
# the other two go on.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd md5sum perl

cluster_start 2
for i in $(seq 1 30); do ctl node$(( i % 2 + 1 )) post "single server $i" || fail "post $i"; done
before=$(ctl master view --json)
is "$(printf '%s\n' "$before" | wc -l)" 30 "30 posts on the single server"
for n in "${NODES[@]}"; do node_stop "$n"; done

# --- the same cluster with three servers ------------------------------------------------
OLD_STATE=$(node_state master)
N_SERVERS=3 cluster_config 2 'election_timeout_ms = 300;'
is "$(node_state master)" "$OLD_STATE" "master keeps its state directory"
for n in master2 master3; do cp "$OLD_STATE/chat.log" "$OLD_STATE/chat.log.idx" "$(node_state "$n")/"; done
for n in "${NODES[@]}"; do : > "$(node_log "$n")"; node_start "$n" --no-wait; done
for n in "${NODES[@]}"; do node_wait_ready "$n" || bail_out "$n does not start"; done
ok "the group elects a leader that every peer links to" wait_connected 20
for n in "${SERVERS[@]}"; do
    is "$(ctl "$n" view --json)" "$before" "$n holds the old log, entry for entry"
done
run ctl node1 post "the first post of the group"
is "$RC" 0 "a post into the group" || diag "$ERR"
last=$(ctl node1 view --json -n 1)
like "$last" '"seq":31,' "... stored as seq 31"
same_logs() {
    local n sums=
    for n in "${SERVERS[@]}"; do sums+="$(ctl "$n" view --json | md5sum | cut -c1-32) "; done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}
ok "every server holds it" wait_for -t 10 same_logs
ctl master view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok 31 entries" "31 entries, seqs without a gap, fences increasing across the move"

# --- a server with another cluster's chat.log ----------------------------------------------------
node_stop master3
rm -rf "$(node_state master3)"/*
# another log: the same seqs and fences, other texts (mklog-like, by dchatd itself: a throwaway cluster)
"$TESTLIB/mklog" "$(node_state master3)" 31 > /dev/null 2>&1 ||
    bail_out "tests/lib/mklog cannot write another log"
: > "$(node_log master3)"
node_start master3 || bail_out "master3 does not start"
ok "master3 says its chat log is not the group's" \
    wait_for -t 20 grep -a -q "chat log is not the group's" "$(node_log master3)"
run ctl node2 post "the group goes on without master3"
is "$RC" 0 "the two others go on" || diag "$ERR"
isnt "$(ctl master3 view --json | md5sum)" "$(ctl master view --json | md5sum)" "master3 holds its own log, untouched"

done_testing
