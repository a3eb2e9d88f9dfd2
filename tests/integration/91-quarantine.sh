#!/usr/bin/env bash
# 91-quarantine — damage in the middle of the server's chat log is quarantined, never cut.
# 1000 posts acknowledged; the server stopped; one byte flipped in the middle record (seq
# 500); restarted: every other acknowledged post is in `view`, seq 500 shows as a marker
# line (and "damaged":true in --json), the next post gets seq 1001, a `view -f` running
# across the restart goes on with the new posts, one started after it shows the marker
# and goes on too.  Then damage while running (bit rot at seq 200): a view that reads it
# fails with a clear error, log-damaged is logged once, posts are refused with a message
# saying what to do; a restart quarantines it and posting resumes.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl od dd

cluster_start 2 'reconnect_max_ms = 300;'
LOG=$(node_state master)/chat.log
N=1000

# record_off SEQ: the byte offset of record SEQ in chat.log (a log without a start record)
record_off() {
    perl -e 'open my $f, "<:raw", $ARGV[0] or die "$ARGV[0]: $!";
             my ($off, $n) = (0, 0);
             while (read($f, my $h, 16) == 16) {
                 if (++$n == $ARGV[1]) { print $off; exit 0 }
                 $off += 16 + unpack("N", substr($h, 4, 4));
                 seek($f, $off, 0) or die;
             }
             exit 1' "$LOG" "$1"
}
# flip OFFSET: one byte of chat.log xor 0x55, in place
flip() {
    local b
    b=$(od -An -tu1 -j"$1" -N1 "$LOG" | tr -d ' ')
    printf "\\x$(printf %02x $(( b ^ 0x55 )))" | dd of="$LOG" bs=1 seek="$1" conv=notrunc status=none
}
texts() { sed 's/^.* root: //'; }
json_seq_text() { perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{seq} ", ($e->{damaged} ? "DAMAGED" : $e->{text}), "\n"'; }
declare -A FPID
follow() {
    local name=$1 node=$2; shift 2
    "$DCHATCTL" -s "$(node_sock "$node")" view -f "$@" >"$T/$name.out" 2>>"$T/$name.err" &
    FPID[$name]=$!
    track_pid "$!"
}
has_line() { grep -q -x -F -- "$2" "$T/$1.out"; }

# --- 1000 acknowledged posts ------------------------------------------------------------------
for n in node1 node2; do
    for w in 1 2; do
        (
            for ((i = 1; i <= N / 4; i++)); do
                if ctl "$n" post "p-$n-$w-$i" 2>>"$T/post.err"; then echo "p-$n-$w-$i"; fi
            done > "$T/acked.$n.$w"
        ) &
        track_pid $!
        eval "pp_$n$w=$!"
    done
done
wait "$pp_node11" "$pp_node12" "$pp_node21" "$pp_node22"
cat "$T"/acked.* | sort > "$T/acked"
is "$(wc -l < "$T/acked")" "$N" "$N posts acknowledged" || diag "$(head -5 "$T/post.err")"
run ctl node1 view --json
damaged_text=$(printf '%s\n' "$OUT" | json_seq_text | sed -n 's/^500 //p')
like "$damaged_text" '^p-node' "seq 500 is $damaged_text"

follow F node2 -n 3               # running across the restart
ok "view -f shows the last 3 lines" wait_for -t 10 eval '[ "$(wc -l < "$T/F.out")" -ge 3 ]'

# --- the server stopped, a byte of record 500 flipped, restarted ----------------------------------
node_stop master
size0=$(stat -c %s "$LOG")
off=$(record_off 500)
cmp_ok "$off" -gt 0 "record 500 is at byte $off"
flip $((off + 16 + 30))
node_start master
ok "log-recovered is logged" wait_event master log-recovered 1 10
like "$(events master log-recovered | ev_field msg)" "seqs 500 to 500 are damaged .*quarantined, not cut" \
    "log-recovered: seq 500 quarantined, not cut"
is "$(count_events master log-damaged)" 0 "no log-damaged: the damage was found at start"
is "$(stat -c %s "$LOG")" "$size0" "chat.log keeps its size: nothing cut"
ok "peers reconnect" wait_connected 15

run ctl node1 view
is "$RC" 0 "view exits 0" || diag "$ERR"
is "$(printf '%s\n' "$OUT" | wc -l)" "$N" "view has $N lines: $((N - 1)) posts and one marker"
is "$(printf '%s\n' "$OUT" | sed -n 500p)" \
    "-- seq 500: damaged record (record checksum mismatch), quarantined by the server (see dchatd(8)) --" \
    "line 500 is the marker"
printf '%s\n' "$OUT" | texts | grep '^p-node' | sort > "$T/seen"
is "$(comm -23 "$T/acked" "$T/seen" | tr '\n' ' ')" "$damaged_text " "every acknowledged post but the damaged one is in the view"
is "$(uniq -d "$T/seen" | head -3)" "" "none twice"
run ctl node2 view --json
is "$(printf '%s\n' "$OUT" | sed -n 500p)" '{"seq":500,"last_seq":500,"damaged":true,"reason":"record checksum mismatch"}' \
    "view --json: seq 500 is damaged"

run ctl node2 post "after the damage"
is "$RC" 0 "posting works" || diag "$ERR"
run ctl node1 view --json -n 1
is "$(printf '%s\n' "$OUT" | json_seq_text)" "$((N + 1)) after the damage" "the next post is seq $((N + 1)): no seq used twice"
ok "the view -f running across the restart shows the new post" wait_for -t 10 has_line F "$(ctl node1 view -n 1)"
# dchatctl's own notices of a gap ("lines A to B are missing") or a repeat ("line N came
# again"); "lost the connection ...; trying again" is expected: the server went away
unlike "$(cat "$T/F.err")" 'missing|came again' "... with no gap and no repeat"
is "$(cat "$T/F.out")" "$(ctl node1 view --since-seq $((N - 2)))" "... it shows seqs $((N - 2)) to $((N + 1)), each once"

follow G node1 --since-seq 495   # catches up over the damaged record, by pages through the peer
ok "a view -f from seq 495 shows the marker" wait_for -t 10 has_line G \
    "-- seq 500: damaged record (record checksum mismatch), quarantined by the server (see dchatd(8)) --"
ok "... and goes on to the last post" wait_for -t 10 has_line G "$(ctl node1 view -n 1)"
run ctl node1 post "followed"
ok "... and to a new one" wait_for -t 10 has_line G "$(ctl node1 view -n 1)"
ok "... and so does the other" wait_for -t 10 has_line F "$(ctl node1 view -n 1)"
is "$(wc -l < "$T/G.out")" "$((N + 2 - 495 + 1))" "G has seqs 495..$((N + 2)), the marker among them"
follow M master --since-seq 498 --json   # on the server's own socket
ok "view -f --json on the server shows seq 500 as damaged" wait_for -t 10 \
    grep -q '"seq":500,"last_seq":500,"damaged":true' "$T/M.out"

# --- damage while running: found by a read ---------------------------------------------------------
off=$(record_off 200)
flip $((off + 16 + 30))
run ctl node1 view
is "$RC" 1 "a view that reads the damaged record fails"
like "$ERR" "view failed: the server's chat log is damaged at seq 200; restart dchatd on the server" \
    "... saying where and what to do"
ok "log-damaged is logged" wait_event master log-damaged 1 5
like "$(events master log-damaged | ev_field msg)" "damaged at seq 200" "... naming seq 200"
run ctl node2 view --since-seq 150
is "$RC" 1 "a second view fails the same way"
run ctl node1 view -n 5
is "$RC" 0 "a view of other entries works" || diag "$ERR"
run ctl node1 post "while damaged"
is "$RC" 1 "a post is refused"
like "$ERR" "post failed: the server's chat log is damaged at seq 200: no post is stored until dchatd is restarted on the server" \
    "... with a clear message"
run ctl node2 post "while damaged 2"
is "$RC" 1 "another post is refused too"
is "$(count_events master log-damaged)" 1 "log-damaged was logged once, not per request"

node_stop master
node_start master
ok "the restart quarantines seq 200" wait_event master log-recovered 2 10
like "$(events master log-recovered | tail -n 1 | ev_field msg)" "seqs 200 to 200 are damaged" "... log-recovered says so"
is "$(count_events master log-recovered)" 2 "... and only that: seq 500 was known already"
like "$(grep -a 'checkpoint' "$(node_log master)" | tail -n 3)" "a read found the log damaged" \
    "... the checkpoint asked for the whole log to be read"
ok "peers reconnect" wait_connected 15
run ctl node1 post "after the restart"
is "$RC" 0 "posting resumes" || diag "$ERR"
run ctl node2 view --json
is "$(printf '%s\n' "$OUT" | json_seq_text | tail -n 1)" "$((N + 3)) after the restart" "it is seq $((N + 3))"
is "$(printf '%s\n' "$OUT" | grep -c '"damaged":true')" 2 "two damaged records shown: 200 and 500"
is "$(printf '%s\n' "$OUT" | json_seq_text | grep -c 'while damaged')" 0 "the refused posts were not stored"
ok "the running view -f shows the post after the restart" wait_for -t 10 has_line F "$(ctl node1 view -n 1)"
unlike "$(cat "$T/F.err")" 'missing|came again' "... across both restarts with no gap and no repeat"
is "$(cat "$T/F.out")" "$(ctl node1 view --since-seq $((N - 2)))" "... it shows seqs $((N - 2)) to $((N + 3)), each once"
is "$(count_events master append-refused)" 0 "no append-refused"

done_testing
