#!/usr/bin/env bash
# 27-central-group — dme_algorithm = "central" with a server group of three: the leader
# is the coordinator.  Three peers post under contention; the leader is killed (kill -9)
# in the middle: the new leader becomes the coordinator, rebuilds its queue from what the
# peers tell it, and the posts go on; every post is stored exactly once, the fences
# increase, every peer sees the same log and every server holds it.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl md5sum

N_SERVERS=3 cluster_start 3 'dme_algorithm = "central";' 'election_timeout_ms = 300;'

coordinators() {        # the live servers whose last word is that they coordinate
    local n l
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        l=$(grep -a -E 'msg="(coordinator of the critical section|no longer the coordinator)' "$(node_log "$n")" |
            tail -n 1)
        [[ $l == *'msg="coordinator of the critical section'* ]] && echo "$n"
    done
}
same_logs() {
    local n sums=
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        sums+="$(ctl "$n" view --json | md5sum | cut -c1-32) "
    done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}

L1=$(group_leader)
like "$L1" '^master' "the group has a leader ($L1)"
is "$(coordinators)" "$L1" "the leader, and only it, coordinates"

# --- three posters; the leader killed while they post ----------------------------------------
declare -A POSTER
N=12
for n in node1 node2 node3; do
    ( rc=0
      for ((i = 1; i <= N; i++)); do ctl "$n" post "group $n $i" || rc=1; done
      exit $rc ) 2>"$T/err-$n" & POSTER[$n]=$!; track_pid $!
done
wait_for -t 20 sh -c "[ \$(grep -a -c -E '${EV_LINE}event=reply-sent ' '$(node_log "$L1")') -ge 8 ]"
node_kill "$L1"
for n in node1 node2 node3; do
    wait "${POSTER[$n]}"; rc=$?
    is "$rc" 0 "$n: its $N posts exit 0 across the leader's death" || diag "$(cat "$T/err-$n")"
done
wait_for -t 10 group_leader >/dev/null
L2=$(group_leader)
isnt "$L2" "$L1" "another server leads ($L2)"
is "$(coordinators)" "$L2" "the new leader coordinates"
like "$(grep -a 'coordinator: grants go' "$(node_log "$L2")" | tail -n 1)" 'grants go' "its queue was rebuilt, then grants went"

ctl node1 view --json > "$T/view.json"
is "$(check_fences "$T/view.json")" "ok $((3 * N)) entries" "$((3 * N)) entries, seqs without a gap, fences strictly increasing"
dups=0
for n in node1 node2 node3; do
    for ((i = 1; i <= N; i++)); do
        c=$(grep -c "\"text\":\"group $n $i\"" "$T/view.json")
        [ "$c" = 1 ] || { dups=$((dups + 1)); diag "group $n $i is in the log $c time(s)"; }
    done
done
is "$dups" 0 "every post is in the log exactly once"
is "$(ctl node2 view)" "$(ctl node1 view)" "node2 sees the same log as node1"
is "$(ctl node3 view)" "$(ctl node1 view)" "node3 sees the same log as node1"
ok "the live servers hold the same log" wait_for -t 10 same_logs

for n in "${SERVERS[@]}" node1 node2 node3; do
    is "$(count_events "$n" 'protocol-error')" 0 "$n logged no protocol-error"
done

# --- a LOCK on another server's link: refused, not taken for the first peer's ------------------
need_tool send-raw
L=$(group_leader)
other=; for n in "${SERVERS[@]}"; do [ "$n" != "$L" ] && node_alive "$n" && { other=$n; break; }; done
{ be32 1; wstr "$other"; be8 $ROLE_SERVER; be64 0; be64 0; } > "$T/lk.hello"
{ be32 2; be8 0; be64 999; be64 999; be8 0; } > "$T/lk.lock"
{ frame $MSG_HELLO "$T/lk.hello"; frame $MSG_LOCK "$T/lk.lock"; } > "$T/lk.in"
pe=$(count_events "$L" protocol-error)
is "$("$TESTLIB/send-raw" -k "$KEY" -n "$other" -S -t 3000 "127.0.0.1:$(node_port "$L")" < "$T/lk.in" 2>/dev/null)" \
    closed "a LOCK on a server's link ($other to $L): the coordinator closes it"
wait_event "$L" protocol-error $((pe + 1)) 5
like "$(events "$L" protocol-error | tail -n 1)" "unexpected LOCK frame from a server" "... saying why" ||
    diag "$(tail -n 5 "$(node_log "$L")")"
run ctl node1 post "after a LOCK on a server's link"
is "$RC" 0 "... and node1 (the first peer) still posts" || diag "$ERR"

done_testing
