#!/usr/bin/env bash
# 29-notes — the shared notes (dchatctl note) with one server and four peers: set, get,
# list, del and their errors; the race the critical section prevents: four nodes each
# increment one note NOTES_N times at once and it ends at exactly 4 x NOTES_N, every
# write in the journal under a fence above the one before; the same with --unlocked
# loses updates (the demonstration); the notes survive a restart and a kill -9 of the
# server in the middle of increments (every acknowledged increment counted once); a
# damaged notes file is refused with a clear error, left as it was, and posts go on.
# Figures: the time of each race and the updates --unlocked lost (printed).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd cmp

# the increments per node (1000; fewer under the sanitizers' slower programs)
case "$DCHATD ${DCHAT_DAEMON_WRAPPER:-}" in *valgrind*) NOTES_N=${NOTES_N:-40} ;; */asan/*) NOTES_N=${NOTES_N:-250} ;; *) NOTES_N=${NOTES_N:-1000} ;; esac

# dead_after_ms: the server killed below must be back before the peers give it up
cluster_start 4 'reconnect_max_ms = 300;' 'dead_after_ms = 10000;'

# --- set, get, list, del ---------------------------------------------------------------------
run ctl node1 note set motd "Welcome to the lab, café open"
is "$RC/$OUT" "0/" "note set exits 0, prints nothing"
run ctl node2 note get motd
is "$RC/$OUT" "0/Welcome to the lab, café open" "note get on another peer prints the value"
run ctl node3 note get --json motd
like "$OUT" '^\{"key":"motd","value":"Welcome to the lab, café open","version":1,"node":"node1",' \
    "note get --json: key, value, version 1, written by node1"
run ctl master note get motd
is "$RC/$OUT" "0/Welcome to the lab, café open" "note get on the server's own socket"
run ctl master note set motd other
is "$RC" 1 "note set on the server's socket fails (a write needs the critical section)"
like "$ERR" "write notes from a peer" "... saying where to write from"
ctl node2 note set a.b_c-d:e/F9 x || fail "set a key of every allowed kind of character"
run ctl node4 note list
is "$OUT" $'a.b_c-d:e/F9 = x\nmotd = Welcome to the lab, café open' "note list: every note, in key order"
run ctl node1 note get nothere
is "$RC" 1 "note get of a missing key exits 1"
like "$ERR" "no note named nothere" "... saying there is no such note"
run ctl node1 note incr motd
is "$RC" 1 "note incr of a value that is not a number exits 1"
like "$ERR" "not a whole number" "... saying why"
is "$(ctl node1 note get motd)" "Welcome to the lab, café open" "... and the note is unchanged"
run ctl node1 note incr big 9223372036854775807
is "$RC/$OUT" "0/9223372036854775807" "incr of a missing note starts from 0"
run ctl node1 note incr big
is "$RC" 1 "an increment past 2^63 - 1 fails"
like "$ERR" "beyond a 64-bit integer" "... saying why"
run ctl node3 note del big
is "$RC" 0 "note del exits 0"
run ctl node3 note del big
is "$RC" 1 "note del of a missing key exits 1"
like "$ERR" "no note named big" "... saying so"
# the control socket checks what a client sends, whatever dchatctl checked
run python3 - "$(node_sock node1)" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
key = b"bad key"      # a space: not a key
p = struct.pack('>IBB', 9, 3, 0) + struct.pack('>H', len(key)) + key + struct.pack('>H', 1) + b"v" + bytes(44)
s.sendall(struct.pack('>IBBH', len(p), 1, 43, 0) + p)
print("closed" if s.recv(100) == b"" else "answered")
EOF
is "$OUT" closed "a NOTE frame with an invalid key is refused (the connection closed)"
ok "dchatd node1 is still up" node_alive node1

# --- the race: four nodes increment at once, inside the critical section ---------------------
written_before=$(count_events master note-written)
PEERS4=(node1 node2 node3 node4)
notes_race hits "$NOTES_N" "${PEERS4[@]}"
is "$NOTES_FAILED" 0 "4 x $NOTES_N locked increments: none failed" || diag "$(cat "$T"/notes-err.* | sort | uniq -c | head)"
is "$(ctl node2 note get hits)" $((4 * NOTES_N)) "hits is exactly $((4 * NOTES_N)): no update lost"
note "locked: 4 x $NOTES_N increments in $NOTES_MS ms ($(( 4 * NOTES_N * 1000 / (NOTES_MS + 1) )) /s)"
is $(( $(count_events master note-written) - written_before )) $((4 * NOTES_N)) \
    "the server logged note-written once per increment"
# every locked write under a fence above the one before (fence lamport, node, idx as the log orders them)
fences=$(events master note-written | grep -v 'unlocked: no fence' | sed -E 's/.* fence ([0-9]+)\/([^/]+)\/([0-9]+)\).*/\1 \2 \3/')
unordered=$(printf '%s\n' "$fences" | awk 'NR > 1 && ($1 < l || ($1 == l && $2 <= n)) { bad++ } { l = $1; n = $2 } END { print bad + 0 }')
is "$unordered" 0 "every locked write's fence is above the one before ($(printf '%s\n' "$fences" | wc -l) writes)"
# inside the critical section: each node's increments are cs-enter ... cs-exit pairs
is "$(count_events master note-refused)" 0 "no write was refused: exclusion held, nothing came between a read and its write"
cmp_ok "$(count_events node1 cs-enter)" -ge "$NOTES_N" "node1 entered the critical section for each of its increments"

# --- the same without the lock: updates are lost ----------------------------------------------
# (lost updates are likely, not certain, in one round: up to three rounds, each on a note of its own)
for round in 1 2 3; do
    notes_race "uhits$round" "$NOTES_N" --unlocked "${PEERS4[@]}"
    got=$(ctl node2 note get "uhits$round")
    [ "$got" -lt $((4 * NOTES_N)) ] && break
done
is "$NOTES_FAILED" 0 "4 x $NOTES_N unlocked increments: none failed"
cmp_ok "$got" -lt $((4 * NOTES_N)) "--unlocked loses updates: uhits$round is $got, not $((4 * NOTES_N))"
note "unlocked: 4 x $NOTES_N increments in $NOTES_MS ms; $((4 * NOTES_N - got)) updates lost"
like "$(grep -a 'note incr --unlocked' "$(node_log node3)" | head -n 1)" "a demonstration" \
    "the peer logs an unlocked increment as the demonstration it is"

# --- a restart, and a kill -9 in the middle of increments -------------------------------------
before=$(ctl node1 note list)
node_stop master
node_start master
ok "peers reconnect after the server's restart" wait_connected 15
is "$(ctl node1 note list)" "$before" "the notes are the same after a restart"

# two nodes increment 'crash' while the server is killed; each counts acknowledged increments
crash_loop() {
    local i okc=0 unk=0 e
    for ((i = 0; i < 300; i++)); do
        if e=$(ctl "$1" note incr crash 2>&1 >/dev/null); then okc=$((okc + 1))
        elif [[ $e == *"may or may not"* ]]; then unk=$((unk + 1)); fi
        [ -e "$T/stop" ] && break
    done
    echo "$okc $unk" > "$T/crash.$1"
}
pids=()
for n in node1 node2; do crash_loop "$n" & pids+=($!); done
track_pid "${pids[@]}"
wait_for -t 30 sh -c "[ \"\$(grep -a -c 'event=note-written.*note crash set ' '$(node_log master)')\" -ge 50 ]" \
    || diag "the increments did not start"
node_kill master
node_start master
wait_for -t 30 sh -c "[ \"\$(grep -a -c 'event=note-written.*note crash set ' '$(node_log master)')\" -ge 120 ]" \
    || diag "the increments did not go on"
touch "$T/stop"
wait "${pids[@]}"
read -r ok1 unk1 < "$T/crash.node1"; read -r ok2 unk2 < "$T/crash.node2"
acked=$((ok1 + ok2)) unknown=$((unk1 + unk2))
got=$(ctl node1 note get crash)
cmp_ok "$got" -ge "$acked" "after a kill -9: every acknowledged increment is there ($got >= $acked)"
cmp_ok "$got" -le $((acked + unknown)) "... and nothing else but those whose answer said 'may or may not' ($got <= $acked + $unknown)"
is "$(ctl node1 note get hits)" $((4 * NOTES_N)) "the earlier notes survived the kill"

# --- a damaged notes file ---------------------------------------------------------------------
NOTES=$(node_state master)/notes
node_stop master
cp "$NOTES" "$T/notes.orig"
perl -e 'open my $f, "+<", $ARGV[0] or die; seek $f, 40, 0; read $f, my $b, 1; seek $f, 40, 0; print $f chr(ord($b) ^ 1)' "$NOTES"
cp "$NOTES" "$T/notes.damaged"
node_start master
ok "peers reconnect" wait_connected 15
run ctl node1 note get hits
is "$RC" 1 "a damaged notes file: note get fails"
like "$ERR" "notes is damaged: its checksum does not match" "... saying the file is damaged"
run ctl node2 note incr hits
is "$RC" 1 "... note incr fails too"
like "$(grep -a 'shared notes are refused' "$(node_log master)")" "move the file aside" \
    "the server's log says what to do"
ok "the damaged file is left as it was" cmp -s "$NOTES" "$T/notes.damaged"
run ctl node1 post "posts go on without the notes"
is "$RC" 0 "posting goes on"
node_stop master
cp "$T/notes.orig" "$NOTES"
node_start master
ok "peers reconnect" wait_connected 15
is "$(ctl node3 note get hits)" $((4 * NOTES_N)) "the file put back: the notes are there again"

# --- a save that fails: what the file holds is what is stored -----------------------------------
# The temp file cannot be made (a directory, not empty, has its name): the write is refused with
# "may or may not", the server reads the file back (the old value), and writes go on once the
# way is clear.
before=$(ctl node1 note get hits)
mkdir -p "$NOTES.tmp/in-the-way"
run ctl node2 note incr hits
is "$RC" 1 "a save that fails: note incr fails" || diag "$OUT"
like "$ERR" "could not store the note: .*may or may not have been written" "... saying it may or may not be written"
like "$(grep -a 'cannot write the shared notes' "$(node_log master)" | tail -n 1)" \
    "cannot create $NOTES\\.tmp: Is a directory" "the server's log names the file and the step"
is "$(ctl node3 note get hits)" "$before" "the value is what the file holds: the old one"
ok "the directory in the way is left as it was" test -d "$NOTES.tmp/in-the-way"
run ctl node1 post "posts go on while the notes cannot be saved"
is "$RC" 0 "posting goes on"
rm -r "$NOTES.tmp"
run ctl node2 note incr hits
is "$RC/$OUT" "0/$((before + 1))" "the way clear: the increment is stored"
# The file itself cannot be replaced, nor read back (a directory has its name): notes refused,
# with the reason, until dchatd restarts with the file back.
cp "$NOTES" "$T/notes.good"
rm "$NOTES" && mkdir -p "$NOTES/in-the-way"
run ctl node2 note set k v
is "$RC" 1 "a save whose rename and read-back fail: note set fails"
like "$(grep -a 'cannot read the shared notes back' "$(node_log master)" | tail -n 1)" "notes refused until dchatd restarts" \
    "the server's log says the notes are refused until a restart"
run ctl node1 note get hits
is "$RC" 1 "... and reads are refused too"
run ctl node1 post "posts go on without the notes, again"
is "$RC" 0 "posting goes on"
node_stop master
rm -r "$NOTES" && cp "$T/notes.good" "$NOTES"
node_start master
ok "peers reconnect" wait_connected 15
is "$(ctl node3 note get hits)" $((before + 1)) "the file put back: every acknowledged increment is there"
is "$(ctl node3 note get k 2>/dev/null)" "" "... and the refused write is not"

done_testing
