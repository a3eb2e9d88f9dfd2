#!/usr/bin/env bash
# 37-group-crash — a server group's chat logs are written without a sync at every apply
# (Raft's log, synced on a majority, is the durable record; the chat log is synced when a
# snapshot is taken: fsm.c, chatlog.c).  Under load without pause: the leader killed
# (kill -9) and started again; a follower killed, and then what a power loss could do
# to it: a write after its last checkpoint that never reached the disk, a hole with
# records after it.  It starts again, cuts its chat log at the hole (not quarantined:
# log-recovered says so), and as the others went on meanwhile past their snapshots, it
# catches up through a snapshot while posts go on (commands that come meanwhile wait in
# its state machine: with libraft 0.15 a refused apply took it out of the group) and
# counts for the majority again: the other follower killed, posts go on.  Every server
# ends with the same log: every post once, seqs without a gap, fences increasing.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd md5sum perl
need_tool ../bench/dchat-bench
BENCH=$TOP/tests/bench/dchat-bench

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'post_timeout_ms = 30000;'
leader() {      # the live server that said last it leads, in the highest term
    local n best= bt=0 t
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        t=$(events "$n" leader-elected | grep 'msg="this server leads' | tail -n 1 | ev_field lamport)
        [ -n "$t" ] && [ "$t" -gt "$bt" ] && { bt=$t; best=$n; }
    done
    echo "$best"
}
last_seq() { ctl "$1" status --json 2>/dev/null | perl -MJSON::PP -e 'my $s = join "", <STDIN>;
    print $s ? decode_json($s)->{last_seq} // 0 : 0'; }
same_logs() {
    local n sums=
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || return 1
        sums+="$(ctl "$n" view --json | md5sum | cut -c1-32) "
    done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}
grown() { [ "$(last_seq "$(leader)")" -ge "$1" ]; }
# the end of what F's checkpoint covers (chat.log.idx: "DCX2", flags, base_seq, end)
ckpt_end() { perl -e 'open my $f, "<", $ARGV[0] or die; sysseek $f, 16, 0; sysread $f, my $b, 8; print unpack "Q>", $b' \
    "$(node_state "$1")/chat.log.idx"; }
ckpt_flags() { perl -e 'open my $f, "<", $ARGV[0] or die; sysseek $f, 4, 0; sysread $f, my $b, 4; print unpack "N", $b' \
    "$(node_state "$1")/chat.log.idx"; }
tail_bytes() { echo $(( $(stat -c %s "$(node_state "$1")/chat.log") - $(ckpt_end "$1") )); }
# a snapshot was taken (its checkpoint covers entries) and more was written after it
enough_tail() { [ "$(ckpt_end "$1")" -gt 0 ] && [ "$(tail_bytes "$1")" -ge 3000 ]; }

L=$(leader)
is "$(( $(ckpt_flags "$L") & 2 ))" 2 "a group's checkpoint says the appends after it are not synced (CHATIDX_UNSYNCED)"

# posting without pause from both peers
"$BENCH" -n 0 -c 1 -t crash "$(node_sock node1)" "$(node_sock node2)" > "$T/bench.json" 2> "$T/bench.err" &
BP=$!
track_pid $BP
ok "posts go in (seq 300)" wait_for -t 60 grown 300

# --- the leader, kill -9, under load ------------------------------------------------------
node_kill "$L"
note "killed the leader $L"
at=$(last_seq "$(leader)")
ok "another server leads and posts go on" wait_for -t 30 grown $(( at + 200 ))
node_start "$L" || bail_out "$L does not start again"

# --- a follower, kill -9, and a write after its checkpoint lost ---------------------------------
F=
for n in "${SERVERS[@]}"; do [ "$n" != "$(leader)" ] && F=$n; done
ok "$F took a snapshot and has written past its checkpoint" wait_for -t 90 enough_tail "$F"
node_kill "$F"
end=$(ckpt_end "$F")
size=$(stat -c %s "$(node_state "$F")/chat.log")
hole=$(( end + (size - end) / 3 ))
note "killed the follower $F: chat.log $size bytes, its checkpoint covers $end; zeroing 200 bytes at $hole"
dd if=/dev/zero of="$(node_state "$F")/chat.log" bs=1 seek=$hole count=200 conv=notrunc status=none
at=$(last_seq "$(leader)")
ok "posts go on meanwhile, past the group's next snapshots" wait_for -t 60 grown $(( at + 3000 ))
node_start "$F" || bail_out "$F does not start again"
rec=$(events "$F" log-recovered | tail -n 1 | ev_field msg)
like "$rec" "cut [0-9]+ bytes off the tail .*unsynced after the last checkpoint" \
    "$F cuts its chat log at the lost write, with everything after it"
unlike "$(events "$F" log-recovered)" "quarantined" "... and quarantines nothing"

want=$(last_seq "$(leader)")
caught_up() { [ "$(last_seq "$F")" -ge "$want" ]; }
ok "$F catches up with the group while posts go on (seq $want)" wait_for -t 60 caught_up
note "$(events "$F" replica-caught-up | tail -n 1 | ev_field msg)"

# --- F counts for the majority: the other follower killed, posts go on ------------------------------
G=
for n in "${SERVERS[@]}"; do [ "$n" != "$(leader)" ] && [ "$n" != "$F" ] && G=$n; done
node_kill "$G"
at=$(last_seq "$(leader)")
ok "the other follower $G killed: the leader and $F are a majority, posts go on" wait_for -t 30 grown $(( at + 200 ))
node_start "$G" || bail_out "$G does not start again"

# --- the end: the same log everywhere, every post once ---------------------------------------------
at=$(last_seq "$(leader)")
ok "posts go on" wait_for -t 30 grown $(( at + 200 ))
kill -USR1 $BP
wait $BP
is "$?" 0 "no post failed" || diag "$(cat "$T/bench.json" "$T/bench.err")"
acked=$(perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{posts}' < "$T/bench.json")
ok "every server holds the same log" wait_for -t 60 same_logs
ctl "$(leader)" view --json > "$T/all.json"
like "$(check_fences "$T/all.json")" "^ok [0-9]+ entries$" "seqs without a gap, fences increasing"
is "$(perl -MJSON::PP -ne 'print decode_json($_)->{text}, "\n"' "$T/all.json" | sort | uniq -d | head -n 3)" "" \
    "no post stored twice"
is "$(grep -c '"text":"crash ' "$T/all.json")" "$acked" "the $acked acknowledged posts are all in the log"

done_testing
