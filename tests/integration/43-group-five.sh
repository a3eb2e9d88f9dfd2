#!/usr/bin/env bash
# 43-group-five — membership with five servers: five fresh servers bootstrap one group;
# a follower is removed (four voters), a new server is added in its place (five again) while
# posts go on; the leader is killed: the other four elect one and posting goes on; every
# live server holds the same log.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd md5sum perl
need_tool send-raw

N_SERVERS=5 cluster_start 2 'election_timeout_ms = 300;'
FIVE_CONF=$CONF

same_logs() {
    local n sums=
    for n in "$@"; do
        node_alive "$n" || continue
        sums+="$(ctl "$n" view --json 2>/dev/null | md5sum | cut -c1-32) "
    done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}
field() { sed -n -E "s/.*(^| )$1=([^ ]*).*/\\2/p"; }
role_in() { group_ask "$2" "$1" | field role; }
leader() {
    local n l
    for n in "$@"; do
        node_alive "$n" || continue
        l=$(group_ask master9 "$n" | field leader)
        [ -n "$l" ] && { echo "$l"; return; }
    done
}
voters_of() {   # voters_of SERVER NAME...: how many of NAME... SERVER's configuration holds as voters
    local s=$1 n k=0; shift
    for n in "$@"; do [ "$n" != "$s" ] && [ "$(role_in "$s" "$n")" = 3 ] && k=$((k + 1)); done
    echo $k
}

ids=$(for n in "${SERVERS[@]}"; do cat "$(node_state "$n")/raft/group-id"; done | sort -u)
is "$(printf '%s\n' "$ids" | wc -l)" 1 "the five servers recorded one group id"
for s in "${SERVERS[@]}"; do
    is "$(voters_of "$s" "${SERVERS[@]}")" 4 "$s's configuration holds the four others as voters"
done
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "five $i" >/dev/null || fail "post $i"; done

# --- remove a follower ----------------------------------------------------------------------------
L=$(leader "${SERVERS[@]}")
F=
for n in master5 master4 master3; do [ "$n" != "$L" ] && { F=$n; break; }; done
run ctl "$L" server remove "$F"
is "$RC" 0 "server remove $F (a follower) exits 0" || diag "$ERR"
like "$OUT" "voters now: " "... naming the four voters left"
ok "$F logs server-removed" wait_for -t 10 grep -a -q -E "${EV_LINE}event=server-removed .*msg=\"this server was removed" "$(node_log "$F")"
REST=()
for n in "${SERVERS[@]}"; do [ "$n" != "$F" ] && REST+=("$n"); done
for s in "${REST[@]}"; do
    is "$(role_in "$s" "$F")" 0 "$s no longer lists $F"
done
run ctl node1 post "with four voters"
is "$RC" 0 "posting goes on with four voters" || diag "$ERR"

# --- add a new server in its place, while posting ---------------------------------------------------
pick_port; PORT[master6]=$PICKED
mkdir -p "$T/master6/run" "$T/master6/state"
SAVE=("${SERVERS[@]}"); SERVERS=("${REST[@]}" master6); CONF=$T/six.conf write_config; SERVERS=("${SAVE[@]}")
CONF=$T/six.conf node_start master6 || bail_out "master6 does not start"
ok "master6 waits to be added" wait_for -t 15 grep -a -q "waiting to be added" "$(node_log master6)"
( for i in $(seq 1 40); do ctl node2 post "during the add $i" >/dev/null || echo "post $i failed"; done ) > "$T/posts.err" 2>&1 &
poster=$!
track_pid $poster
RUN_TIMEOUT=90 run ctl node1 server add --timeout 60 master6 "127.0.0.1:${PORT[master6]}"
is "$RC" 0 "server add master6 (asked on a peer) exits 0" || diag "$ERR"
wait $poster
is "$(cat "$T/posts.err")" "" "every post during the add was acknowledged"
ALL=("${REST[@]}" master6)
for s in "${REST[@]}"; do
    is "$(role_in "$s" master6)" 3 "$s lists master6 as a voter"
done
ok "the five voters hold the same log" wait_for -t 20 same_logs "${ALL[@]}"

# --- the leader dies ---------------------------------------------------------------------------------
L=$(leader "${ALL[@]}")
note "leader: $L"
node_kill "$L"
for i in 1 2 3; do
    run ctl node$(( i % 2 + 1 )) post "after the leader died $i"
    is "$RC" 0 "posting goes on with four of the five voters ($i)" || diag "$ERR"
done
ok "the four live voters hold the same log" wait_for -t 20 same_logs "${ALL[@]}"
live=
for n in "${ALL[@]}"; do node_alive "$n" && live=$n; done
ctl "$live" view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok 47 entries" "47 entries, seqs without a gap, fences increasing"

done_testing
