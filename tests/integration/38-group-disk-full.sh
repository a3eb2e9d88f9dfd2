#!/usr/bin/env bash
# 38-group-disk-full — three servers, each with its state directory on a small tmpfs of its
# own (in a private mount namespace of this test), and two peers.  A follower's disk fills up:
#   while running — a filler takes every byte freed on it while both peers post 4 KB posts:
#     every post is acknowledged (the leader and the other follower go on), the full follower
#     logs replica-stalled with the file and the error, status shows it behind with why, it
#     stays up, and its chat log is a prefix of the group's (no half batch); the filler stops
#     and the space is freed: it catches up by itself, without a post, and `verify` is clean;
#   at its start — stopped, the disk filled, started again: libraft cannot start there; dchatd
#     stays up and says why, posts go on without it; space freed: it catches up by itself;
#   with 1 MiB free — less than a segment of libraft's own log: its append fails; the same;
#   behind a snapshot, with 512 KiB free for the 2 MB of entries it must fetch: the same.
# While it cannot take part it is a member all the same: it answers GROUP with the group's
# state, and no server takes it for removed.  Removed from the group while its disk is full,
# it learns so from the others, stays out, and its Raft is never started again.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd unshare mount perl md5sum journalctl
need_tool send-raw ../bench/dchat-bench
need_journal --catalog "$TOP/systemd/dchatd.catalog"
export DCHAT_LOG=both

# a private mount namespace: the tmpfs go away with the test, whatever happens
if [ -z "${DCHAT_PRIVATE_MOUNTS:-}" ]; then
    _cleanup_tmp
    _watchdog_stop
    trap - EXIT
    DCHAT_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

SIZE_K=24576
for n in master master2 master3; do
    mkdir -p "$T/$n/state"
    mount -t tmpfs -o "size=${SIZE_K}k,mode=0755" "dchat-test-$n" "$T/$n/state" || bail_out "cannot mount a tmpfs"
done
# lib.sh's EXIT trap removes $T: the tmpfs must be gone first (lazily: dchatd may still run)
_disk_full_exit() {
    local rc=$? n
    [ -n "${FILLER:-}" ] && stop_pid "$FILLER"
    for n in master master2 master3; do umount -l "$T/$n/state" 2>/dev/null; done
    (exit $rc)
    _cleanup
}
trap _disk_full_exit EXIT

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;'
L=
for n in "${SERVERS[@]}"; do grep -q 'msg="this server leads the group' "$(node_log "$n")" && L=$n; done
F=
for n in "${SERVERS[@]}"; do [ "$n" != "$L" ] && F=$n; done
FS=$(node_state "$F")
GROUP=$(cat "$(node_state "$L")/raft/group-id")
note "leader $L; the follower whose disk fills: $F"
like "$(df -k --output=size,target "$FS" | tail -n 1)" "^ *${SIZE_K} .*/$F/state\$" "$F's state directory is on a ${SIZE_K} KiB tmpfs"

# the system's words for ENOSPC, and libraft's
NOSPACE='No space left on device|not enough space'
big() { printf "%s %04000d" "$1" 0; }          # 4 KB of text
json_field() { perl -MJSON::PP -e 'my $s = decode_json(<STDIN>); for (@{$s->{servers}}) { print $_->{$ARGV[1]} // "", "\n" if $_->{name} eq $ARGV[0] }' "$@"; }
# prefix_of A B: A's `view --json` is the start of B's (the same entries, in order)
prefix_of() {
    local a b
    a=$(ctl "$1" view --json) || return 1
    b=$(ctl "$2" view --json | head -n "$(printf '%s\n' "$a" | grep -c .)") || return 1
    [ "$a" = "$b" ]
}
# posters NAME COUNT: both peers, two posters each, COUNT posts of 4 KB each; "text|rc|ms" lines
posters() {
    local tag=$1 count=$2 n w pids=()
    for n in "${PEERS[@]}"; do
        for w in 1 2; do
            (
                for ((i = 1; i <= count; i++)); do
                    t0=$(date +%s%N)
                    ctl "$n" post "$(big "$tag-$n-$w-$i")" 2>>"$T/post.err"
                    rc=$?
                    echo "$tag-$n-$w-$i|$rc|$(( ($(date +%s%N) - t0) / 1000000 ))"
                done > "$T/$tag.$n.$w"
            ) &
            track_pid $!
            pids+=($!)
        done
    done
    wait "${pids[@]}"
    cat "$T/$tag".* > "$T/$tag.all"
}
# fill_forever FILE: takes every byte freed on FILE's file system, until $T/stop-fill exists
fill_forever() {
    while [ ! -e "$T/stop-fill" ]; do
        dd if=/dev/zero of="$1" bs=64k oflag=append conv=notrunc status=none 2>/dev/null
        sleep 0.02
    done
}

for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "small $i" || fail "post small $i"; done
# the same load on a healthy group first, for comparison (figures only)
t0=$(date +%s%N)
posters base 25
note "100 posts of 4 KB with every disk fine: $(( ($(date +%s%N) - t0) / 1000000 )) ms, the slowest $(awk -F'|' '$3 > m { m = $3 } END { print m + 0 }' "$T/base.all") ms"

# --- the follower's disk fills while it runs --------------------------------------------------------
rm -f "$T/stop-fill"
fill_forever "$FS/filler" &
FILLER=$!
track_pid $FILLER
avail_k() { df -k --output=avail "$FS" | tail -n 1 | tr -d ' '; }
disk_full() { [ "$(avail_k)" -lt 64 ]; }
wait_for -t 10 disk_full || bail_out "$FS does not fill up"
note "$F's disk is full: $(df -k --output=used,avail "$FS" | tail -n 1)"

t0=$(date +%s%N)
posters full 100
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$(grep -c . "$T/full.all")" 400 "400 posts of 4 KB sent while $F's disk is full"
is "$(awk -F'|' '$2 != 0' "$T/full.all")" "" "every one acknowledged: the leader and the other follower go on" \
    || diag "$(sort -u "$T/post.err" | head -5)"
maxms=$(awk -F'|' '$3 > m { m = $3 } END { print m + 0 }' "$T/full.all")
note "400 posts in ${ms} ms with $F's disk full; the slowest took ${maxms} ms"

ok "$F logs replica-stalled" wait_event "$F" replica-stalled 1 20
stalled=$(events "$F" replica-stalled | head -n 1 | ev_field msg)
like "$stalled" "$FS/(chat\\.log|raft)" "... naming the file it cannot write: $stalled"
like "$stalled" "No space left on device" "... and the error"
ok "$F is still running" node_alive "$F"
run ctl node1 status --json
is "$RC" 0 "status on a peer while $F's disk is full" || diag "$ERR"
like "$(json_field "$F" error <<< "$OUT")" "$NOSPACE" "status --json: $F answers, with its error"
cmp_ok "$(json_field "$F" lag <<< "$OUT")" -gt 0 "status --json: $F is behind (lag $(json_field "$F" lag <<< "$OUT"))"
run ctl node2 status
like "$OUT" "$F .*\\(.*($NOSPACE).*\\)" "status (text) shows $F with why it is behind"
ok "$F's chat log is a prefix of the leader's: no half batch, nothing else" prefix_of "$F" "$L"
run ctl "$F" view -n 1
is "$RC" 0 "$F still serves views from what it holds" || diag "$ERR"
is "$(count_events "$F" 'protocol-error')" 0 "no protocol-error on $F"

# --- space again: it catches up by itself --------------------------------------------------------
last=$(ctl "$L" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}')
touch "$T/stop-fill"
wait_pid_exit "$FILLER" 10 || stop_pid "$FILLER"      # (its dd must not outlive it)
FILLER=
rm -f "$FS/filler"
t0=$(date +%s%N)
caught_up() { [ "$(ctl "$F" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}')" = "$last" ]; }
ok "$F catches up to seq $last by itself once there is room (no post needed)" wait_for -t 30 caught_up
note "space freed -> $F holds seq $last: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
ok "$F logs replica-resumed" wait_event "$F" replica-resumed 1 15
note "$(events "$F" replica-resumed | tail -n 1 | ev_field msg)"
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
run ctl node1 status --json
is "$(json_field "$F" error <<< "$OUT")" "" "status: $F without error now"

# --- the disk is full when it starts --------------------------------------------------------------
node_stop "$F"
dd if=/dev/zero of="$FS/filler" bs=64k status=none 2>/dev/null
cmp_ok "$(avail_k)" -lt 64 "$F is stopped and its disk full"
n_stalled=$(count_events "$F" replica-stalled)
n_resumed=$(count_events "$F" replica-resumed)
node_start "$F"
ok "$F starts on the full disk, and stays up" node_alive "$F"
ok "... logs replica-stalled" wait_event "$F" replica-stalled $(( n_stalled + 1 )) 15
note "$(events "$F" replica-stalled | tail -n 1 | ev_field msg)"
like "$(events "$F" replica-stalled | tail -n 1 | ev_field msg)" "$FS/(raft|chat\\.log)" "... naming its directory"
for i in 1 2 3 4 5 6 7 8 9 10; do
    run ctl node$(( i % 2 + 1 )) post "$(big "while $F starts on a full disk $i")"
    [ "$RC" = 0 ] || break
done
is "$RC" 0 "posts go on while $F cannot take part" || diag "$ERR"
run ctl node1 status --json
isnt "$(json_field "$F" error <<< "$OUT")" "" "status: $F answers, with why it takes no part ($(json_field "$F" error <<< "$OUT"))"
is "$(json_field "$F" role <<< "$OUT")" "unavailable" "... its role: unavailable (not removed, not refused)"
like "$(group_ask master9 "$F")" "^state=1 group=$GROUP " "... it answers GROUP as a member with the group's state"
for n in "${SERVERS[@]}"; do
    is "$(count_events "$n" server-removed)" 0 "$n takes nobody for removed"
done
last=$(ctl "$L" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}')
rm -f "$FS/filler"
t0=$(date +%s%N)
ok "$F catches up to seq $last by itself once there is room" wait_for -t 30 caught_up
note "space freed -> $F holds seq $last: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
ok "$F logs replica-resumed" wait_event "$F" replica-resumed $(( n_resumed + 1 )) 15

# --- libraft's own log cannot grow: 1 MiB free, less than one of its 2 MiB segments ---------------
node_stop "$F"
dd if=/dev/zero of="$FS/filler" bs=64k status=none 2>/dev/null
rm -f "$FS/filler"
dd if=/dev/zero of="$FS/filler" bs=64k count=$(( ($(avail_k) - 1024) / 64 )) status=none 2>/dev/null
note "$F stopped; $(avail_k) KiB left on its disk"
n_stalled=$(count_events "$F" replica-stalled)
n_resumed=$(count_events "$F" replica-resumed)
node_start "$F"
for i in 1 2 3 4 5 6 7 8 9 10; do
    run ctl node$(( i % 2 + 1 )) post "$(big "while $F's Raft log cannot grow $i")"
    [ "$RC" = 0 ] || break
done
is "$RC" 0 "posts go on while $F's Raft log cannot grow" || diag "$ERR"
ok "$F logs replica-stalled" wait_event "$F" replica-stalled $(( n_stalled + 1 )) 15
stalled=$(events "$F" replica-stalled | tail -n 1 | ev_field msg)
like "$stalled" "cannot write the replicated log in $FS/raft: .*($NOSPACE)" "... saying that libraft cannot write its log, where and why: $stalled"
ok "$F is still running" node_alive "$F"
last=$(ctl "$L" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}')
rm -f "$FS/filler"
t0=$(date +%s%N)
ok "$F catches up to seq $last by itself once there is room" wait_for -t 30 caught_up
note "space freed -> $F holds seq $last: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
ok "$F logs replica-resumed" wait_event "$F" replica-resumed $(( n_resumed + 1 )) 15

# --- behind a snapshot, it must fetch more entries than its disk can take ---------------------------
node_stop "$F"
posters behind 125
is "$(awk -F'|' '$2 != 0' "$T/behind.all")" "" "500 posts of 4 KB while $F is down"
"$TOP/tests/bench/dchat-bench" -c 1 -n 600 -t snap "$(node_sock node1)" > "$T/bench.json" 2> "$T/bench.err"
is "$?" 0 "600 more, one Raft command each: the others take a snapshot beyond $F's log" || diag "$(cat "$T/bench.err")"
dd if=/dev/zero of="$FS/filler" bs=64k count=$(( ($(avail_k) - 512) / 64 )) status=none 2>/dev/null
note "$(avail_k) KiB left on $F's disk (and what its chat log holds allocated ahead): less than the 2 MB it lacks"
n_stalled=$(count_events "$F" replica-stalled)
n_resumed=$(count_events "$F" replica-resumed)
node_start "$F"
ok "$F logs replica-stalled" wait_event "$F" replica-stalled $(( n_stalled + 1 )) 20
stalled=$(events "$F" replica-stalled | tail -n 1 | ev_field msg)
note "$stalled"
like "$stalled" "$FS/(raft|chat\\.log).*($NOSPACE)" "... naming where and why"
run ctl node1 status --json
like "$(json_field "$F" error <<< "$OUT")" "$NOSPACE" "status --json: $F answers, with its error"
ok "$F is still running" node_alive "$F"
last=$(ctl "$L" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}')
rm -f "$FS/filler"
t0=$(date +%s%N)
ok "$F catches up to seq $last by itself once there is room" wait_for -t 30 caught_up
note "space freed -> $F holds seq $last: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
ok "$F logs replica-resumed" wait_event "$F" replica-resumed $(( n_resumed + 1 )) 15
cmp_ok "$(count_events "$F" 'replica-caught-up')" -ge 1 "$F fetched what it lacked (replica-caught-up)"

run ctl node2 post "after all that"
is "$RC" 0 "posting goes on" || diag "$ERR"
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
ctl "$L" view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok $(wc -l < "$T/all.json") entries" "seqs without a gap, fences increasing"
is "$(perl -MJSON::PP -ne 'print decode_json($_)->{text}, "\n"' "$T/all.json" | sort | uniq -d)" "" "no post stored twice"
for n in "${SERVERS[@]}"; do
    is "$(count_events "$n" 'protocol-error')" 0 "$n logged no protocol-error"
done

# --- removed from the group while its disk is full: out for good, Raft never started again -----------
dd if=/dev/zero of="$FS/filler" bs=64k status=none 2>/dev/null
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "$(big "before $F is removed $i")" || fail "post before removal $i"; done
n_stalled=$(count_events "$F" replica-stalled)
run ctl node1 status --json
note "$F's disk full again; its status: $(json_field "$F" role <<< "$OUT") ($(json_field "$F" error <<< "$OUT"))"
run ctl node1 server remove "$F"
is "$RC" 0 "server remove $F while its disk is full" || diag "$ERR"
ok "$F learns it was removed (from the others: it hears from no leader)" \
    wait_for -t 20 grep -a -q -E "${EV_LINE}event=server-removed .*msg=\"this server was removed from the server group" "$(node_log "$F")"
like "$(group_ask master9 "$F")" "^state=2 " "$F answers GROUP: removed"
rm -f "$FS/filler"
n_start=$(grep -a -c 'started from the snapshot' "$(node_log "$F")")
n_resumed=$(count_events "$F" replica-resumed)
sleep 6         # longer than the longest pause before the engine starts again (5 s)
is "$(grep -a -c 'started from the snapshot' "$(node_log "$F")")" "$n_start" "space freed: $F's Raft is not started again"
is "$(count_events "$F" replica-resumed)" "$n_resumed" "... no replica-resumed"
run ctl "$F" status --json
is "$(json_field "$F" role <<< "$OUT")" "removed" "status on $F: removed"
is "$(json_field "$F" error <<< "$OUT")" "" "... with no trouble shown"
ok "$F still runs (idle)" node_alive "$F"
run ctl node2 post "after $F was removed"
is "$RC" 0 "posting goes on" || diag "$ERR"

# --- the journal: the events with their MESSAGE_ID, fields and the catalog's text ---------------------
journalctl --sync
for ev in replica-stalled replica-resumed; do
    id=$(awk -v e="# $ev" '$0 == e { getline; print $2 }' "$TOP/systemd/dchatd.catalog")
    run journalctl -q -t dchatd DCHAT_EVENT=$ev DCHAT_NODE=$F -o json
    like "$OUT" "\"MESSAGE_ID\":\"$id\"" "$ev carries MESSAGE_ID $id"
    like "$OUT" '"DCHAT_SEQ":"[0-9]+"' "... and DCHAT_SEQ, where $F's chat log ends"
done
run journalctl -q -x -t dchatd DCHAT_EVENT=replica-stalled DCHAT_NODE=$F
like "$OUT" "No space left on device" "journalctl: replica-stalled with the error"
like "$OUT" "Free some space" "journalctl -x explains replica-stalled (catalog): what to do"
run journalctl -q -t dchatd DCHAT_EVENT=replica-stalled -o json
like "$OUT" '"PRIORITY":"3"' "replica-stalled at error priority"

done_testing
