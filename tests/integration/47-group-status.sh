#!/usr/bin/env bash
# 47-group-status — `dchatctl status` and `dchatctl verify` with a server group (three
# servers, two peers): status on a peer and on a server names the leader, the term and
# every server's role, applied seq, Raft index and lag; a frozen leader and a killed
# server are shown unreachable within the status's bounded wait; verify is clean after
# posts, from a peer and from a server, even while the peer's own link moves to a new
# leader (its query links are not taken for older links of the peer); it names a server
# it cannot reach; snapshots are logged (taken, and resumed from at a restart); a
# difference planted in one server's log (one letter of one entry, rewritten as a good
# record) is found with both versions; an entry then damaged on that server is not kept
# quarantined there: it cuts its log at start and fetches the group's entries, difference gone.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool logedit

# connect_timeout_ms, handshake_timeout_ms: the verify started while the leader is frozen waits for it
N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'suspect_after_ms = 500;' 'dead_after_ms = 1500;' \
    'connect_timeout_ms = 30000;' 'handshake_timeout_ms = 30000;'

# group SUMMARY from a status --json on stdin: "leader term | name:reachable:role:last_seq:lag ..."
group() {
    perl -MJSON::PP -e '
        my $s = decode_json(join "", <STDIN>);
        print join(" ", $s->{leader} // "-", $s->{term}, "|",
            map { join ":", $_->{name}, ($_->{reachable} ? "up" : "down"), $_->{role} // "-",
                  $_->{last_seq} // "-", $_->{lag} // "-" } @{$s->{servers}}), "\n"'
}
jfield() { perl -MJSON::PP -e 'my $s = decode_json(join "", <STDIN>); my $v = $s; $v = ref $v eq "ARRAY" ? $v->[$_] : $v->{$_} for @ARGV; print defined $v ? $v : "-"' "$@"; }
# applied N [NODE]: every server reachable, has applied seq N, and one of them leads
applied() {
    local s
    s=$(ctl "${2:-node1}" status --json | group) || return 1
    [[ $s =~ ^(master[23]?)\ [0-9]+\ \|\ (master[23]?:up:(leader|follower):$1:0\ ?){3}$ ]]
}
leader() { ctl node1 status --json | jfield leader; }
idx() { case $1 in master) echo 0;; master2) echo 1;; master3) echo 2;; esac; }   # in cluster.servers

for i in 1 2 3 4 5; do
    run ctl node$(( i % 2 + 1 )) post "before $i"
    is "$RC" 0 "post $i" || diag "$ERR"
done
ok "every server applied seq 5, one leads, lag 0 (status on node1)" wait_for -t 15 applied 5

# --- status on a peer ------------------------------------------------------------------------
run ctl node1 status --json
is "$RC" 0 "status --json on node1"
J=$OUT
L=$(jfield leader <<< "$J")
like "$L" '^master[23]?$' "the leader is named: $L"
like "$(jfield term <<< "$J")" '^[1-9][0-9]*$' "the term is given"
is "$(jfield server <<< "$J")/$(jfield server_connected <<< "$J")" "$L/1" "node1 links to the leader"
is "$(perl -MJSON::PP -e 'print join " ", map { $_->{name} } @{decode_json(join "", <STDIN>)->{servers}}' <<< "$J")" \
   "master master2 master3" "every server, in the config's order"
is "$(perl -MJSON::PP -e 'print scalar grep { $_->{role} eq "leader" } @{decode_json(join "", <STDIN>)->{servers}}' <<< "$J")" \
   1 "one server says it leads"
ok "each server's applied Raft index is given" perl -MJSON::PP -e '
    exit !(3 == grep { $_->{applied_index} =~ /^[1-9][0-9]*$/ && $_->{term} =~ /^[1-9][0-9]*$/ } @{decode_json(join "", <STDIN>)->{servers}})' <<< "$J"
run ctl node1 status
like "$OUT" $'\ngroup: +3 servers, leader '"$L"$', term [0-9]+\n' "status (text) on node1: the group's line"
like "$OUT" $'\n  '"$L"$' +leader +seq 5 +index [0-9]+ +lag 0\n' "... and the leader's"

# --- status on servers ---------------------------------------------------------------------------
F1= F2=
for n in "${SERVERS[@]}"; do [ "$n" = "$L" ] && continue; [ -z "$F1" ] && F1=$n || F2=$n; done
for n in "$L" "$F1"; do
    run ctl "$n" status --json
    is "$RC/$(group <<< "$OUT")" "0/$(ctl node1 status --json | group)" "status on $n: the same group as on node1"
done
is "$(ctl "$F1" status --json | perl -MJSON::PP -e '
    my $s = decode_json(join "", <STDIN>); print join ",", map { $_->{role} } grep { $_->{name} eq $s->{node} } @{$s->{servers}}')" \
   follower "status on the follower $F1: its own role"

# --- verify: clean ---------------------------------------------------------------------------
for n in node2 "$F1"; do
    run ctl "$n" verify
    is "$RC/$OUT" "0/5 entries compared on 3 servers: identical" "verify on $n: identical"
done
run ctl node1 verify --json
is "$RC/$(jfield identical <<< "$OUT")/$(jfield compared <<< "$OUT")/$(jfield servers <<< "$OUT")" "0/1/5/3" \
   "verify --json: identical, 5 compared, 3 servers"

# --- the leader frozen: status is bounded; a verify survives node1's link moving -----------------
lines=$(grep -a -c 'msg="the server [^ ]* leads the group' "$(node_log node1)")
kill -STOP "$(node_pid "$L")"
( ctl node1 verify > "$T/v.out" 2> "$T/v.err"; echo $? > "$T/v.rc" ) &
track_pid $!
run_timed ctl node2 status --json
is "$RC" 0 "status on node2 with the leader $L frozen (${MS} ms)"
note "status with a frozen server: ${MS} ms"
is "$(jfield servers "$(idx "$L")" reachable <<< "$OUT")" 0 "... $L is shown unreachable"
like "$(perl -MJSON::PP -e 'print map { $_->{error} // "" } @{decode_json(join "", <STDIN>)->{servers}}' <<< "$OUT")" \
     '^no answer within [0-9]+ ms$' "... with why: no answer in the status's bounded wait"
# several at once share one round of questions; each gets its answer
for i in 1 2 3 4 5 6; do ( ctl node2 status --json > "$T/s$i.out" 2>&1; echo $? > "$T/s$i.rc" ) & track_pid $!; done
all_answered() { local i; for i in 1 2 3 4 5 6; do [ -s "$T/s$i.rc" ] || return 1; done; }
ok "six statuses at once on node2 are all answered" wait_for -t 20 all_answered
is "$(cat "$T"/s[1-6].rc | sort -u | tr -d '\n')/$(for i in 1 2 3 4 5 6; do group < "$T/s$i.out"; done | sort -u | wc -l)" "0/1" \
   "... each exit 0, all with the same figures"
moved() {
    local s
    s=$(grep -a 'msg="the server [^ ]* leads the group' "$(node_log node1)" | tail -n +$((lines + 1)) | tail -n 1)
    [ -n "$s" ] && [[ $s != *"the server $L leads"* ]]
}
ok "node1's own link moved to the new leader" wait_for -t 30 moved
ok "... while its verify waits for $L" test ! -e "$T/v.rc"
kill -CONT "$(node_pid "$L")"
ok "the verify ends once $L answers" wait_for -t 40 test -s "$T/v.rc"
is "$(cat "$T/v.rc")/$(cat "$T/v.out")" "0/5 entries compared on 3 servers: identical" \
   "it is clean: node1's query links were not closed as older links of node1" || diag "$(cat "$T/v.err")"
ok "every server applied seq 5 again" wait_for -t 15 applied 5
L=$(leader)
F1= F2=
for n in "${SERVERS[@]}"; do [ "$n" = "$L" ] && continue; [ -z "$F1" ] && F1=$n || F2=$n; done

# --- a killed server -------------------------------------------------------------------------------
node_kill "$F2"
run_timed ctl node1 status --json
note "status with a killed server: ${MS} ms"
is "$RC" 0 "status on node1 with $F2 killed"
is "$(group <<< "$OUT")" "$(ctl node2 status --json | group)" "the same on node2"
like "$(group <<< "$OUT")" "^$L [0-9]+ \\| .*$F2:down:-:-:-" "$F2 is shown unreachable, $L still leads"
cmp_ok "$MS" -lt 10000 "... at once, not after a timeout of the client (${MS} ms; the wait is bounded to 1 s)"
like "$(perl -MJSON::PP -e 'print map { $_->{error} // "" } @{decode_json(join "", <STDIN>)->{servers}}' <<< "$OUT")" \
     '[Cc]onnection refused' "... why: connection refused"
run ctl node1 status
like "$OUT" $'\n  '"$F2"' +unreachable \([Cc]onnection refused\)' "status (text): $F2 unreachable, and why"
run ctl "$L" verify
is "$RC" 1 "verify with $F2 down fails" || diag "$OUT"
like "$ERR" "^dchatctl: verify failed: cannot reach the server $F2: " "... naming $F2: $ERR"

# --- snapshots ---------------------------------------------------------------------------------------
node_start "$F2" || bail_out "$F2 does not restart"
ok "$F2 is back" wait_for -t 15 applied 5
# a snapshot every 512 commands; posts one after another are one command each
for i in $(seq 1 520); do ctl node$(( i % 2 + 1 )) post "bulk $i" >/dev/null || fail "bulk post $i"; done
ok "every server applied seq 525" wait_for -t 30 applied 525
for n in "${SERVERS[@]}"; do
    ok "$n logged a snapshot taken, with its Raft index and seq" \
        wait_for -t 10 eval "events $n snapshot | grep -q -E 'seq=[0-9]+ msg=\"snapshot taken at Raft index [0-9]+ \\(the chat log up to seq [0-9]+\\)'"
done
node_stop "$F1"
node_start "$F1" || bail_out "$F1 does not restart"
# (Raft starts once the other servers said what they hold: after dchatd is ready, not before)
_restarted() { events "$F1" snapshot | tail -n 1 | ev_field msg | grep -q -E '^started from the snapshot at Raft index [0-9]+ \(the chat log up to seq [0-9]+\)$'; }
ok "$F1 restarted from its snapshot, and said so" wait_for -t 15 _restarted \
    || diag "$(events "$F1" snapshot | tail -n 1)"
ok "$F1 applied seq 525 again" wait_for -t 15 applied 525
run ctl node2 verify
is "$RC/$OUT" "0/525 entries compared on 3 servers: identical" "verify after the snapshots and a restart: identical"

# --- a difference planted in one server's log ----------------------------------------------------------
D=$F2
node_stop "$D"
run "$TESTLIB/logedit" "$(node_state "$D")" 3 "befoRe 3"
is "$RC/$OUT" "0/before 3" "logedit: entry 3 of $D rewritten ('before 3' -> 'befoRe 3')"
node_start "$D" || bail_out "$D does not restart"
ok "$D is back, at seq 525" wait_for -t 15 applied 525
run ctl node2 verify
is "$RC" 1 "verify finds the difference: exit 1"
like "$OUT" "^the servers' logs differ at seq 3 \\(2 entries before it identical on 3 servers\\):" "... at seq 3"
for n in "${SERVERS[@]}"; do
    want="before 3"; [ "$n" = "$D" ] && want="befoRe 3"
    like "$OUT" $'\n  '"$n"': *seq 3, fence [0-9]+/node[12]/0, post [0-9]+, author root: '"$want"$'(\n|$)' \
         "... $n's version: server, seq, fence, author, text ('$want')"
done
run ctl "$L" verify --json
is "$RC/$(jfield identical <<< "$OUT")/$(jfield seq <<< "$OUT")" "1/0/3" "verify --json from the leader: not identical, seq 3"
is "$(perl -MJSON::PP -e 'print join "|", map { "$_->{server}=$_->{entry}{text}" } @{decode_json(join "", <STDIN>)->{versions}}' <<< "$OUT")" \
   "$(for n in "${SERVERS[@]}"; do [ "$n" = "$D" ] && printf '%s=befoRe 3' "$n" || printf '%s=before 3' "$n"; [ "$n" != master3 ] && printf '|'; done)" \
   "... with every server's version"

# --- an entry damaged on one server only: it is not kept quarantined there ----------------------------
# (a replica's log is the group's: 39-group-damage has the details; a quarantined part in a
# verify's answer is shown by test-verify)
node_stop "$D"
run "$TESTLIB/logedit" -d "$(node_state "$D")" 2
is "$RC" 0 "logedit -d: entry 2 of $D damaged"
node_start "$D" || bail_out "$D does not restart"
ok "$D cuts its log there at start" wait_event "$D" log-recovered 1 10
like "$(events "$D" log-recovered | tail -n 1 | ev_field msg)" "seqs 2 to 2 are damaged .*cut there" "... at seq 2"
ok "$D is back, at seq 525" wait_for -t 15 applied 525
run ctl node1 verify
is "$RC/$OUT" "0/525 entries compared on 3 servers: identical" \
   "verify: identical again: $D fetched the group's entries from seq 2 on (the planted one at seq 3 with them)"

done_testing
