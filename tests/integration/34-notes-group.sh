#!/usr/bin/env bash
# 34-notes-group — the shared notes in a three-server group: the notes are Raft commands,
# applied on every server (each server's own socket lists the same notes, version for
# version); three peers increment one note at once and it ends exact, also while the leader
# is killed (kill -9) in the middle (every acknowledged increment counted once, nothing else
# but those whose error said "may or may not"); more writes than a snapshot's cadence, then
# all three servers stopped and started again: the notes come back from the snapshot and the
# commands after it.
. "$(dirname "$0")/../lib/lib.sh"
need_root

case "$DCHATD ${DCHAT_DAEMON_WRAPPER:-}" in *valgrind*) NOTES_N=${NOTES_N:-40} ;; */asan/*) NOTES_N=${NOTES_N:-120} ;; *) NOTES_N=${NOTES_N:-300} ;; esac

N_SERVERS=3 cluster_start 3 'election_timeout_ms = 300;' 'post_timeout_ms = 20000;' 'reconnect_max_ms = 300;' \
    'dead_after_ms = 15000;'

# same_everywhere: every live server's own replica lists the same notes (a follower applies a
# heartbeat later: waited for)
_lists() {
    local n first= l
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        l=$(ctl "$n" note list --json) || return 1
        [ -z "$first" ] && first=$l
        [ "$l" = "$first" ] || return 1
    done
}
same_everywhere() { wait_for -t 20 _lists; }

run ctl node1 note set motd "hello, group"
is "$RC" 0 "note set through the group"
ok "every server's replica holds it" same_everywhere
is "$(ctl master3 note get motd)" "hello, group" "a follower's own socket answers it"

# incr_loop NODE KEY N: N increments; "acked unknown failed" to $T/n.NODE
incr_loop() {
    local i okc=0 unk=0 bad=0 e
    for ((i = 0; i < $3; i++)); do
        if e=$(ctl "$1" note incr "$2" 2>&1 >/dev/null); then okc=$((okc + 1))
        elif [[ $e == *"may or may not"* ]]; then unk=$((unk + 1))
        else bad=$((bad + 1)); echo "$e" >> "$T/err.$1"; fi
    done
    echo "$okc $unk $bad" > "$T/n.$1"
}
# race KEY: the three peers at once; ACKED, UNKNOWN, FAILED summed
race() {
    local pids=() n a u b
    for n in node1 node2 node3; do incr_loop "$n" "$1" "$NOTES_N" & pids+=($!); done
    track_pid "${pids[@]}"
    [ -n "${2:-}" ] && "$2"
    wait "${pids[@]}"
    ACKED=0 UNKNOWN=0 FAILED=0
    for n in node1 node2 node3; do
        read -r a u b < "$T/n.$n"
        ACKED=$((ACKED + a)) UNKNOWN=$((UNKNOWN + u)) FAILED=$((FAILED + b))
    done
}

race hits
is "$ACKED/$FAILED" "$((3 * NOTES_N))/0" "3 x $NOTES_N increments through the group, all acknowledged" \
    || diag "$(cat "$T"/err.* 2>/dev/null | sort | uniq -c | head)"
is "$(ctl node2 note get hits)" $((3 * NOTES_N)) "hits is exactly $((3 * NOTES_N))"
ok "every server's replica holds the same notes" same_everywhere

# --- the leader killed in the middle --------------------------------------------------------
kill_leader() {
    local l
    wait_for -t 20 sh -c "[ \"\$(grep -a -c 'event=note-written.*note crash set' '$(node_log "$(group_leader)")')\" -ge 30 ]" || true
    l=$(group_leader) || return
    KILLED=$l
    AT=$(ctl "$l" note get crash 2>/dev/null)
    node_kill "$l"
    sleep 1
    node_start "$l"
}
race crash kill_leader
cmp_ok "${AT:-0}" -lt $((3 * NOTES_N)) "the leader was killed in the middle of the increments"
note "the leader ($KILLED) killed at crash = ${AT:-?} of $((3 * NOTES_N)): $ACKED acknowledged, $UNKNOWN unknown, $FAILED failed"
is "$FAILED" 0 "no increment failed outright (they wait for the next leader)" \
    || diag "$(cat "$T"/err.* 2>/dev/null | sort | uniq -c | head)"
got=$(ctl node1 note get crash)
cmp_ok "$got" -ge "$ACKED" "every acknowledged increment is there ($got >= $ACKED)"
cmp_ok "$got" -le $((ACKED + UNKNOWN)) "... and no more than those that may have been ($got <= $ACKED + $UNKNOWN)"
ok "$KILLED is back with the same notes as the others" same_everywhere

# --- more than a snapshot's worth of commands, then every server restarted ---------------------
cmp_ok "$(count_events "$(group_leader)" snapshot)" -ge 1 "the leader took a snapshot (the writes outnumber its cadence)"
before=$(ctl master note list --json)
for n in "${SERVERS[@]}"; do node_stop "$n"; done
for n in "${SERVERS[@]}"; do node_start "$n" --no-wait; done
for n in "${SERVERS[@]}"; do node_wait_ready "$n"; done
ok "the group is back" wait_connected 30
wait_for -t 20 sh -c "[ \"\$('$DCHATCTL' -s '$(node_sock node1)' note list --json 2>/dev/null)\" = '$before' ]"
is "$(ctl node1 note list --json)" "$before" "after all three restarted: the same notes (snapshot + the commands after it)"
ok "on every server" same_everywhere
run ctl node3 note incr hits
is "$RC/$OUT" "0/$((3 * NOTES_N + 1))" "and the group goes on from there"

done_testing
