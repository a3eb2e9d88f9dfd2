#!/usr/bin/env bash
# 90-recovery — the server's chat log after damage: a torn tail is cut off at start and
# kept aside (chat.log.corrupt-*), with the event log-recovered, the good records kept
# and posting going on after them; a corrupt record in the middle is quarantined, not cut
# (91-quarantine goes further).  And a server killed (SIGKILL) while posts pour in: every
# acknowledged post is there, once.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl od

# dead_after_ms: a peer fails the posts waiting for a server that has been unreachable that
# long (at once, and every new one too); the killed server must be back before that for its
# posts to wait and go in, and under valgrind on a loaded machine a restart takes 4-5 s
cluster_start 2 'reconnect_max_ms = 300;' 'dead_after_ms = 10000;'
LOG=$(node_state master)/chat.log
texts() { printf '%s\n' "$1" | sed 's/^.* root: //'; }
size() { stat -c %s "$1"; }
corrupt_files() { ls "$(node_state master)"/chat.log.corrupt-* 2>/dev/null; }

for i in 1 2 3 4 5; do ctl node$(( i % 2 + 1 )) post "line $i" || fail "post line $i"; done
view0=$(ctl node1 view)
is "$(texts "$view0" | tr '\n' ' ')" "line 1 line 2 line 3 line 4 line 5 " "five lines posted"

# --- a clean restart changes nothing ---------------------------------------------------------------
node_stop master
is "${NODE_RC[master]}" 0 "the server stops with status 0"
node_start master
ok "peers reconnect" wait_connected 15
is "$(ctl node2 view)" "$view0" "after a clean restart the log is the same"
is "$(count_events master log-recovered)" 0 "no log-recovered after a clean stop"
is "$(corrupt_files)" "" "no chat.log.corrupt-* after a clean stop"

# --- a torn tail: the last 7 bytes are gone -------------------------------------------------------------
node_stop master
size0=$(size "$LOG")
truncate -s -7 "$LOG"
node_start master
ok "log-recovered is logged" wait_event master log-recovered 1 5
like "$(events master log-recovered | tail -n 1 | ev_field msg)" 'cut [0-9]+ bytes.*saved to .*chat\.log\.corrupt-.*kept 4 records' \
    "log-recovered says what was cut, where it was saved, and what was kept"
ok "peers reconnect" wait_connected 15
run ctl node1 view
is "$OUT" "$(printf '%s\n' "$view0" | head -n 4)" "the first 4 lines are intact, the torn 5th is gone"
is "$(corrupt_files | wc -l)" 1 "one chat.log.corrupt-* file was written"
c1=$(corrupt_files | head -n 1)
is "$(( $(size "$LOG") + $(size "$c1") ))" "$((size0 - 7))" "log + saved tail = the file before recovery, byte for byte in size"
cmp_ok "$(size "$c1")" -gt 0 "the saved tail is not empty"
like "$(basename "$c1")" "^chat\.log\.corrupt-[0-9]+-$(size "$LOG")\$" "it is named chat.log.corrupt-TIME-OFFSET, OFFSET where the log was cut"
run ctl node2 post "line 5 again"
is "$RC" 0 "posting works after the recovery" || diag "$ERR"
run ctl node1 view --json
last=$(printf '%s\n' "$OUT" | tail -n 1 | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{seq} $e->{text}"')
is "$last" "5 line 5 again" "the new post is line 5 (seq 5)"
is "$(printf '%s\n' "$OUT" | wc -l)" 5 "five lines in all"

# --- a flipped byte inside the 2nd record -----------------------------------------------------------------
view1=$(ctl node1 view)
node_stop master
size1=$(size "$LOG")
# record: magic(4) body-length(4) crc(4) hdr-crc(4) body; the 2nd starts after the 1st
len1=$(od -An -tu1 -j4 -N4 "$LOG" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
end1=$((16 + len1))
cmp_ok "$end1" -lt "$size1" "the first record ends at byte $end1, inside the file"
off=$((end1 + 16 + 20))
b=$(od -An -tu1 -j"$off" -N1 "$LOG" | tr -d ' ')
printf "\\x$(printf %02x $(( b ^ 0x55 )))" | dd of="$LOG" bs=1 seek="$off" conv=notrunc status=none
isnt "$(od -An -tu1 -j"$off" -N1 "$LOG" | tr -d ' ')" "$b" "one byte of the 2nd record's body flipped (offset $off)"
node_start master
ok "log-recovered is logged again" wait_event master log-recovered 2 5
like "$(events master log-recovered | tail -n 1 | ev_field msg)" 'seqs 2 to 2 are damaged.*quarantined, not cut.*copied to .*chat\.log\.corrupt-seq-2-2-at-'"$end1" \
    "... saying that seq 2 is quarantined, not cut, and where the copy is"
ok "peers reconnect" wait_connected 15
run ctl node2 view
want=$(printf '%s\n' "$view1" | sed '2s/.*/-- seq 2: damaged record (record checksum mismatch), quarantined by the server (see dchatd(8)) --/')
is "$OUT" "$want" "the view shows every other line, and a marker line for seq 2"
is "$(size "$LOG")" "$size1" "chat.log is not cut: the damaged bytes stay"
is "$(corrupt_files | wc -l)" 2 "a second chat.log.corrupt-* file was written"
c2=$(corrupt_files | grep -v -x -F "$c1")
like "$(basename "$c2")" "^chat\.log\.corrupt-seq-2-2-at-$end1\$" "it is named after the damaged seq and its offset"
run ctl node1 post "after the flip"
is "$RC" 0 "posting works" || diag "$ERR"
run ctl node2 view --json
is "$(printf '%s\n' "$OUT" | sed -n 2p)" '{"seq":2,"last_seq":2,"damaged":true,"reason":"record checksum mismatch"}' \
    "view --json shows seq 2 as damaged"
is "$(printf '%s\n' "$OUT" | tail -n 1 | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{seq} $e->{text}"')" \
    "6 after the flip" "the new post is seq 6: no seq is used twice"

# --- SIGKILL the server while posts pour in -----------------------------------------------------------
for n in node1 node2; do
    for w in 1 2; do
        (
            for ((i = 1; i <= 40; i++)); do
                if err=$(ctl "$n" post "crash-$n-$w-$i" 2>&1); then echo "ok crash-$n-$w-$i"
                else echo "fail crash-$n-$w-$i $err"; fi
            done > "$T/crash.$n.$w"
        ) &
        track_pid $!
        eval "cp_$n$w=$!"
    done
done
_some_acked() { [ "$(cat "$T"/crash.* 2>/dev/null | grep -c '^ok ')" -ge 10 ]; }
wait_for -t 10 _some_acked
node_kill master
before_kill=$(cat "$T"/crash.* | grep -c '^ok ')
cmp_ok "$before_kill" -lt 150 "the server was killed while posts were still coming ($before_kill acknowledged before)"
sleep 0.5
node_start master
wait "$cp_node11" "$cp_node12" "$cp_node21" "$cp_node22"
cat "$T"/crash.* > "$T/crash"
acked=$(grep -c '^ok ' "$T/crash")
note "$acked of 160 posts acknowledged around the crash"
ok "peers reconnect after the crash" wait_connected 15
run ctl node1 view
printf '%s\n' "$OUT" | sed -n 's/^.* root: \(crash-.*\)$/\1/p' | sort > "$T/stored"
missing=$(grep '^ok ' "$T/crash" | cut -d' ' -f2 | sort | comm -23 - "$T/stored" | head -5)
is "$missing" "" "every acknowledged post is in the log after the crash"
is "$(uniq -d "$T/stored" | head -5)" "" "no post is in the log twice"
wrongly=$(grep '^fail .*not stored' "$T/crash" | cut -d' ' -f2 | sort | comm -12 - "$T/stored" | head -5)
is "$wrongly" "" "no post said to be 'not stored' is in the log"
cmp_ok "$acked" -gt 100 "most posts were acknowledged (the server came back within dead_after_ms)"
is "$(grep '^fail ' "$T/crash" | grep -v -c 'post failed: ')" 0 "every failure is a clear 'post failed:' line"
run ctl node2 view
is "$OUT" "$(ctl node1 view)" "node1 and node2 see the same log"
is "$(count_events master append-refused)" 0 "no append-refused"

done_testing
