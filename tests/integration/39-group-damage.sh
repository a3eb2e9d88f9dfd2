#!/usr/bin/env bash
# 39-group-damage — a follower of a three-server group whose files were damaged:
#   its chat log, while it was down (a record in the middle): its start cuts the log there
#     (the bytes saved aside) instead of quarantining, and the group gives the rest back;
#   its chat log, while it runs (bit rot under the checkpoint): a view that reads it fails
#     cleanly, the server stops applying and says to restart dchatd; one restart repairs it;
#   its Raft log, damaged so that libraft refuses it: dchatd stays up, sets the directory
#     aside and rejoins without a vote until it holds the group's log again;
#   its Raft log, a damaged segment that libraft 0.15 would silently drop: the same — and
#     with the leader frozen meanwhile, the other follower cannot get elected with its vote;
#     its new raft/ holds the group id, and restarted while it rejoins it is the group's
#     member still (no bootstrap, no waiting to be added, still no vote);
#   a swap of raft/ for the empty one cut short (raft.new left, raft/ gone): put in place
#     at the start, and it rejoins; a raft.new left beside a whole raft/ is dropped;
#   its raft/ moved aside while the group lists it as a voter (as dchatd(8) says for a chat
#     log that is not the group's): it may have lost what it acknowledged, so it rejoins
#     without a vote as well.
# Every time: the group goes on, and the logs end identical (dchatctl verify).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl od dd journalctl
need_tool logedit send-raw ../bench/dchat-bench
need_journal --catalog "$TOP/systemd/dchatd.catalog"
export DCHAT_LOG=both

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;'
L=
for n in "${SERVERS[@]}"; do grep -q 'msg="this server leads the group' "$(node_log "$n")" && L=$n; done
F= G=
for n in "${SERVERS[@]}"; do
    [ "$n" = "$L" ] && continue
    if [ -z "$F" ]; then F=$n; else G=$n; fi
done
FS=$(node_state "$F")
note "leader $L; the damaged follower $F; the other follower $G"

# 600 posts, one Raft command each: the servers take snapshots (every 512 commands)
"$TOP/tests/bench/dchat-bench" -c 1 -n 600 -t before "$(node_sock node1)" > "$T/bench.json" 2> "$T/bench.err"
is "$?" 0 "600 posts acknowledged" || diag "$(cat "$T/bench.err")"
ok "every server holds the same log" wait_for -t 15 servers_identical

# record_off SEQ: the byte offset of record SEQ in F's chat.log (a log without a start record)
record_off() {
    perl -e 'open my $f, "<:raw", $ARGV[0] or die "$ARGV[0]: $!";
             my ($off, $n) = (0, 0);
             while (read($f, my $h, 16) == 16) {
                 if (++$n == $ARGV[1]) { print $off; exit 0 }
                 $off += 16 + unpack("N", substr($h, 4, 4));
                 seek($f, $off, 0) or die;
             }
             exit 1' "$FS/chat.log" "$1"
}
# flip FILE OFFSET: one byte xor 0x55, in place
flip() {
    local b
    b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    printf "\\x$(printf %02x $(( b ^ 0x55 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
last_of() { ctl "$1" status --json | perl -MJSON::PP -e 'print decode_json(<STDIN>)->{last_seq}'; }
same_end() { [ "$(last_of "$F")" = "$(last_of "$L")" ]; }
leader_elected() { [ "$(count_events "$1" leader-elected)" -gt "$2" ]; }
log_count() { grep -a -c -E "$2" "$(node_log "$1")"; }
log_more() { [ "$(log_count "$1" "$2")" -gt "$3" ]; }
GROUP=$(cat "$(node_state "$L")/raft/group-id")

# --- the chat log damaged while the follower was down ------------------------------------------------
node_stop "$F"
run "$TESTLIB/logedit" -d "$FS" 300
is "$RC" 0 "$F stopped, record 300 of its chat log damaged" || diag "$ERR"
node_start "$F" || bail_out "$F does not restart"
ok "$F logs log-recovered" wait_event "$F" log-recovered 1 10
rec=$(events "$F" log-recovered | tail -n 1 | ev_field msg)
like "$rec" "seqs 300 to 300 are damaged .*cut there and the rest fetched or applied again from the group" \
    "... it cuts its log at seq 300, to have the rest from the group: $rec"
like "$rec" "saved to $FS/chat.log.cut-from-seq-300-at-[0-9]+" "... the bytes from there on saved aside"
ok "... they are" test -s "$(ls "$FS"/chat.log.cut-from-seq-300-at-* 2>/dev/null | head -n 1)"
is "$(count_events "$F" 'replica-damaged')" 0 "no replica-damaged: its Raft log is whole (it votes as ever)"
ok "$F catches up" wait_for -t 20 same_end
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "after the cut $i" || fail "post after the cut $i"; done
ok "every server holds the same log again (verify)" wait_for -t 15 servers_identical
run ctl "$F" view --json --since-seq 300
is "$(head -n 1 <<< "$OUT")" "$(ctl "$L" view --json --since-seq 300 | head -n 1)" "$F serves seq 300 again, the group's entry"

# --- the chat log damaged under the running follower (bit rot) ---------------------------------------
off=$(record_off 200)
flip "$FS/chat.log" $(( off + 40 ))
run ctl "$F" view
is "$RC" 1 "a view on $F that reads the damaged record fails" || diag "$OUT"
like "$ERR" "damaged at seq 200; restart dchatd on the server to repair it" "... saying the log is damaged, and what to do: $ERR"
unlike "$OUT" "^$" "... after the entries before it (no bad data: checksums)"
ok "$F logs log-damaged" wait_event "$F" log-damaged 1 10
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "while $F's log is damaged $i" || fail "post while $F's log is damaged $i"; done
ok "$F stops applying and logs replica-stalled" wait_event "$F" replica-stalled 1 10
like "$(events "$F" replica-stalled | tail -n 1 | ev_field msg)" "$FS/chat.log: it is damaged .*restart dchatd" \
    "... saying what to do: restart dchatd"
run ctl node1 status --json
like "$OUT" "\"name\":\"$F\",[^}]*\"error\":\"chat.log: damaged \\(restart dchatd\\)\"" "status: $F answers, damaged, restart dchatd"
n_rec=$(count_events "$F" log-recovered)
node_stop "$F"
node_start "$F" || bail_out "$F does not restart"
ok "restarted, $F cuts its log at the damage" wait_event "$F" log-recovered $(( n_rec + 1 )) 10
like "$(events "$F" log-recovered | tail -n 1 | ev_field msg)" "seqs 200 to 200 are damaged" "... at seq 200"
ok "$F catches up" wait_for -t 20 same_end
ok "every server holds the same log again (verify)" wait_for -t 15 servers_identical

# --- its Raft log damaged so that libraft refuses it (a segment that is not its last) --------------
n_res=$(count_events "$F" replica-resumed)
node_stop "$F"
segs=$(ls "$FS"/raft/0000*-0000* | sort)
cmp_ok "$(printf '%s\n' "$segs" | grep -c .)" -ge 2 "$F stopped; its Raft log has $(printf '%s\n' "$segs" | grep -c .) segments"
flip "$(printf '%s\n' "$segs" | head -n 1)" 60
note "a byte flipped in its first Raft segment $(basename "$(printf '%s\n' "$segs" | head -n 1)")"
node_start "$F" || bail_out "$F does not start (it exits on a damaged Raft log)"
ok "$F stays up and logs replica-damaged" wait_event "$F" replica-damaged 1 10
dmg=$(events "$F" replica-damaged | tail -n 1 | ev_field msg)
like "$dmg" "Raft log in $FS/raft is damaged \\(libraft refuses it: .*checksum" "... saying what: $dmg"
like "$dmg" "must not vote until it has them back. Moved aside to $FS/raft.damaged-" "... why it does not vote, where the files went"
ok "$F rejoins and votes again (replica-resumed)" wait_event "$F" replica-resumed $(( n_res + 1 )) 20
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "after $F's Raft log was refused $i" || fail "post after refused $i"; done
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
rm -rf "$FS"/raft.damaged-*

# --- its Raft log: a damaged segment that libraft would drop without a word -------------------------
node_stop "$F"
seg=$(ls "$FS"/raft/0000*-0000* | sort | tail -n 1)
flip "$seg" $(( $(stat -c %s "$seg") / 2 ))
note "$F stopped; a byte flipped in the middle of its last Raft segment $(basename "$seg")"
n_el=$(count_events "$G" leader-elected)
n_lead=$(grep -a -c 'msg="this server leads the group' "$(node_log "$F")")
kill -STOP "$(node_pid "$L")"
node_start "$F" || bail_out "$F does not start"
ok "$F logs replica-damaged" wait_event "$F" replica-damaged 2 10
dmg=$(events "$F" replica-damaged | tail -n 1 | ev_field msg)
like "$dmg" "Raft log in $FS/raft is damaged \\(libraft set a damaged segment aside as corrupt-" "... saying what: $dmg"
like "$dmg" "must not vote until it has them back. Moved aside to $FS/raft.damaged-" "... why it does not vote, where the files went"
ok "... moved aside" test -d "$(ls -d "$FS"/raft.damaged-* | head -n 1)"
ok "... and it rejoins without a vote (raft/rejoin)" test -e "$FS/raft/rejoin"
# the leader is frozen: G needs F's vote to be elected, and must not get it (several election timeouts)
sleep 3
is "$(count_events "$G" leader-elected)" "$n_el" "with the leader frozen, $G is not elected: $F gives no vote"
is "$(grep -a -c 'msg="this server leads the group' "$(node_log "$F")")" "$n_lead" "... nor $F itself"
run ctl "$G" status --json
like "$OUT" '"leader":null' "$G's status: the group has no leader"
is "$(cat "$FS/raft/group-id" 2>/dev/null)" "$GROUP" "$F's new raft/ holds the group's id"
# restarted while it rejoins: a member of the group with its state, not a new server
NEW='bootstrapped the server group|starting the server group|joining the server group'
REJOIN='rejoining the group without a vote'
n_new=$(log_count "$F" "$NEW")
n_rj=$(log_count "$F" "$REJOIN")
node_stop "$F"
node_start "$F" || bail_out "$F does not restart"
ok "restarted while it rejoins, $F starts Raft again without a vote" wait_for -t 15 log_more "$F" "$REJOIN" "$n_rj"
is "$(log_count "$F" "$NEW")" "$n_new" "... neither bootstrapping nor joining as a new server"
ok "... raft/rejoin stays" test -e "$FS/raft/rejoin"
like "$(group_ask master9 "$F")" "^state=1 group=$GROUP " "... it answers GROUP as a member of the group"
sleep 2
is "$(count_events "$G" leader-elected)" "$n_el" "the leader still frozen, $G is still not elected"
kill -CONT "$(node_pid "$L")"
ok "the leader back, $F catches up and votes again (replica-resumed)" wait_event "$F" replica-resumed $(( n_res + 2 )) 20
like "$(events "$F" replica-resumed | tail -n 1 | ev_field msg)" "votes again" "... saying so"
ok "... raft/rejoin is gone" test ! -e "$FS/raft/rejoin"
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "after $F rejoined $i" || fail "post after $F rejoined $i"; done
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
# now it votes: the leader killed, $F and $G elect one of them
n_elF=$(count_events "$F" leader-elected)
node_kill "$L"
ok "the leader killed: $F and $G elect a leader" wait_for -t 10 leader_elected "$F" "$n_elF"
run ctl node1 post "after the leader's kill"
is "$RC" 0 "posting goes on" || diag "$ERR"
node_start "$L" || bail_out "$L does not restart"

# --- a swap of raft/ cut short, both ways --------------------------------------------------------------
n_res=$(count_events "$F" replica-resumed)
n_dmg=$(count_events "$F" replica-damaged)
n_rj=$(log_count "$F" "$REJOIN")
node_stop "$F"
mv "$FS/raft" "$FS/raft.damaged-cut-short"
mkdir "$FS/raft.new"
echo "a test: the swap was cut short" > "$FS/raft.new/rejoin"
cp "$FS/raft.damaged-cut-short/group-id" "$FS/raft.new/group-id"
node_start "$F" || bail_out "$F does not start"
ok "raft/ gone and raft.new ready: $F puts it in place and rejoins without a vote" \
    wait_for -t 15 log_more "$F" "$REJOIN" "$n_rj"
ok "... raft.new is gone" test ! -e "$FS/raft.new"
ok "... it votes again once it holds the group's log (replica-resumed)" wait_event "$F" replica-resumed $(( n_res + 1 )) 20
rm -rf "$FS/raft.damaged-cut-short"
node_stop "$F"
mkdir "$FS/raft.new"
echo "a test: cut short before the swap" > "$FS/raft.new/rejoin"
n_rj=$(log_count "$F" "$REJOIN")
node_start "$F" || bail_out "$F does not start"
ok "a raft.new left beside a whole raft/ is dropped at the start" wait_for -t 15 test ! -e "$FS/raft.new"
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
is "$(log_count "$F" "$REJOIN")" "$n_rj" "... and $F takes part as ever (no rejoin)"
is "$(count_events "$F" replica-damaged)" "$n_dmg" "... no replica-damaged"

# --- its raft/ moved aside while the group lists it as a voter ------------------------------------------
n_res=$(count_events "$F" replica-resumed)
n_dmg=$(count_events "$F" replica-damaged)
n_rj=$(log_count "$F" "$REJOIN")
n_boot=$(log_count "$F" 'bootstrapped the server group|starting the server group')
node_stop "$F"
mv "$FS/raft" "$FS/raft.moved"
node_start "$F" || bail_out "$F does not start"
ok "$F, a voter whose raft/ is empty, logs replica-damaged" wait_event "$F" replica-damaged $(( n_dmg + 1 )) 15
dmg=$(events "$F" replica-damaged | tail -n 1 | ev_field msg)
like "$dmg" "Raft directory $FS/raft is empty, but the group lists it as a voter: .* rejoins without a vote" \
    "... it may have lost what it acknowledged: $dmg"
ok "... and starts Raft without a vote" wait_for -t 15 log_more "$F" "$REJOIN" "$n_rj"
BOOT='bootstrapped the server group|starting the server group'
is "$(log_count "$F" "$BOOT")" "$n_boot" "... it does not bootstrap"
ok "... it votes again once it holds the group's log (replica-resumed)" wait_event "$F" replica-resumed $(( n_res + 1 )) 20
ok "... raft/rejoin is gone" test ! -e "$FS/raft/rejoin"
is "$(cat "$FS/raft/group-id" 2>/dev/null)" "$GROUP" "... its raft/ holds the group's id"
rm -rf "$FS/raft.moved"

for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "at the end $i" || fail "post at the end $i"; done
ok "every server holds the same log (verify)" wait_for -t 15 servers_identical
ctl "$L" view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok $(wc -l < "$T/all.json") entries" "seqs without a gap, fences increasing"
is "$(perl -MJSON::PP -ne 'print decode_json($_)->{text}, "\n"' "$T/all.json" | sort | uniq -d)" "" "no post stored twice"
for n in "${SERVERS[@]}"; do
    is "$(count_events "$n" 'protocol-error')" 0 "$n logged no protocol-error"
done

# --- the journal: the events with their MESSAGE_ID, fields and the catalog's text ---------------------
journalctl --sync
for ev in replica-damaged replica-resumed; do
    id=$(awk -v e="# $ev" '$0 == e { getline; print $2 }' "$TOP/systemd/dchatd.catalog")
    run journalctl -q -t dchatd DCHAT_EVENT=$ev DCHAT_NODE=$F -o json
    like "$OUT" "\"MESSAGE_ID\":\"$id\"" "$ev carries MESSAGE_ID $id"
    like "$OUT" '"DCHAT_SEQ":"[0-9]+"' "... and DCHAT_SEQ, where $F's chat log ends"
done
run journalctl -q -x -t dchatd DCHAT_EVENT=replica-damaged DCHAT_NODE=$F
like "$OUT" "must not vote" "journalctl -x explains replica-damaged (catalog)"
like "$OUT" "raft.damaged-" "... and where the damaged files went"
run journalctl -q -t dchatd DCHAT_EVENT=replica-damaged -o json
like "$OUT" '"PRIORITY":"3"' "replica-damaged at error priority"

done_testing
