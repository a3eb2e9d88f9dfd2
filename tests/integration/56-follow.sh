#!/usr/bin/env bash
# 56-follow — `dchatctl view -f`: the last lines, then each new line as the server stores
# it, pushed (the server sees no VIEW while followers are live); in order, with no gap and
# no repeat across a restart (SIGTERM and SIGKILL) of the local peer and of the server;
# --json gives JSON Lines; a follower that stops reading is bounded and catches up; SIGINT
# ends it with exit 0, also while it waits to reconnect.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

cluster_start 2 'debug = true;' 'reconnect_max_ms = 300;'

# follow NAME NODE ARGS...: a dchatctl view -f in the background; output in $T/NAME.out/.err
declare -A FPID
follow() {
    local name=$1 node=$2; shift 2
    "$DCHATCTL" -s "$(node_sock "$node")" view -f "$@" >"$T/$name.out" 2>>"$T/$name.err" &
    FPID[$name]=$!
    track_pid "$!"
}
lines_of() { wc -l < "$T/$1.out"; }
has_lines() { [ "$(lines_of "$1")" -ge "$2" ]; }
# the follower's output is exactly the log from line FROM on (as view prints it)
same_as_log() {
    local name=$1 from=$2
    ctl node2 view | tail -n +"$from" > "$T/want"
    cmp -s "$T/want" "$T/$name.out"
}
views_at_server() { grep -a -c 'got VIEW' "$(node_log master)"; }
post() { ctl "$1" post "$2" >/dev/null || diag "post '$2' on $1 failed"; }

for i in 1 2 3; do post node1 "line $i"; done

# --- the last lines, then live lines --------------------------------------------------------------
follow A node1 -n 2
follow B node2 --json
follow M master                 # on the server's own control socket
ok "view -f -n 2 shows the last 2 lines first" wait_for -t 10 has_lines A 2
ok "view -f --json shows the whole log first" wait_for -t 10 has_lines B 3
ok "view -f on the server shows the whole log first" wait_for -t 10 has_lines M 3
follow Q node2 --since-seq 2
ok "view -f --since-seq 2 starts at line 2" wait_for -t 10 has_lines Q 2
ok "the followers subscribed at the server" wait_for -t 10 \
    eval '[ "$(grep -a -c "follows the log from seq" "$(node_log master)")" -ge 3 ]'

v0=$(views_at_server)
late=0
for i in $(seq 4 13); do
    if [ $((i % 2)) = 0 ]; then post node2 "line $i"; else post node1 "line $i"; fi
    # the line is there soon after post returned (bounded wait, not a timing claim)
    wait_for -t 5 has_lines A $((i - 1)) || late=$((late + 1))
done
is "$late" 0 "each line reached the follower on node1 after its post returned"
ok "the follower on node2 has every line" wait_for -t 5 has_lines B 13
ok "the follower on the server has every line" wait_for -t 5 has_lines M 13
is "$(views_at_server)" "$v0" "no VIEW reached the server while 10 lines were followed: pushed, not polled"
ok "A shows lines 2..13 exactly as view does" same_as_log A 2
ok "M shows lines 1..13 exactly as view does" same_as_log M 1
ok "Q (--since-seq 2) shows lines 2..13 exactly as view does" wait_for -t 5 same_as_log Q 2
kill -INT "${FPID[Q]}"
if perl -MJSON::PP -ne 'BEGIN { $n = 0 } my $o = decode_json($_); $o->{seq} == ++$n or die "seq $o->{seq} at $n\n";
                        $o->{text} eq "line $n" or die "text\n"; END { exit($n == 13 ? 0 : 1) }' "$T/B.out" 2>"$T/json.err"; then
    pass "--json: 13 valid JSON objects, one a line, seq 1..13 in order"
else
    fail "--json: 13 valid JSON objects, one a line, seq 1..13 in order" "$(cat "$T/json.err")"
fi
is "$(cat "$T/A.err" "$T/B.err")" "" "nothing on stderr so far"

# --- a restart of the local peer: SIGTERM, then SIGKILL ------------------------------------------------
n=13
for sig in TERM KILL; do
    node_stop node1 $sig
    ok "SIG$sig on node1: A says on stderr that it reconnects" \
        wait_for -t 5 grep -q 'trying again' "$T/A.err"
    n=$((n + 1)); post node2 "line $n (node1 down after SIG$sig)"
    n=$((n + 1)); post node2 "line $n (node1 down after SIG$sig)"
    node_start node1
    wait_connected 15
    n=$((n + 1)); post node1 "line $n (node1 back)"
    ok "SIG$sig on node1: A has every line up to $n" wait_for -t 10 has_lines A $((n - 1))
    ok "SIG$sig on node1: A has no gap and no repeat" same_as_log A 2
    like "$(cat "$T/A.err")" 'reconnected to dchatd; following from line' "SIG$sig on node1: A says it is back"
    unlike "$(cat "$T/A.err")" 'missing|came again' "SIG$sig on node1: dchatd sent A no line twice and skipped none"
    : > "$T/A.err"
done
ok "B on node2 saw all of it" wait_for -t 5 has_lines B $n

# --- a restart of the server: SIGTERM, then SIGKILL ---------------------------------------------------
for sig in TERM KILL; do
    node_stop master $sig
    sleep 0.5
    node_start master
    wait_connected 15
    n=$((n + 1)); post node1 "line $n (after server SIG$sig)"
    n=$((n + 1)); post node2 "line $n (after server SIG$sig)"
    ok "server SIG$sig: A has every line up to $n" wait_for -t 10 has_lines A $((n - 1))
    ok "server SIG$sig: A has no gap and no repeat" same_as_log A 2
    ok "server SIG$sig: B has every line up to $n" wait_for -t 10 has_lines B $n
done
unlike "$(cat "$T/A.err" "$T/B.err" "$T/M.err")" 'missing|came again' "no line sent twice or skipped across the server's restarts"
perl -MJSON::PP -ne 'BEGIN { $n = 0 } my $o = decode_json($_); $o->{seq} == ++$n or die "seq $o->{seq} at $n\n";
                     END { print "$n\n" }' "$T/B.out" > "$T/json.n" 2>"$T/json.err"
is "$(cat "$T/json.n")" "$n" "--json across every restart: valid JSON, seq 1..$n, no gap, no repeat"
# the follower M was on the server: it had to reconnect too
ok "M (on the server) follows again after the server's restarts" wait_for -t 10 has_lines M $n
ok "M has no gap and no repeat" same_as_log M 1

# --- a follower that stops reading ------------------------------------------------------------------
follow S node1
ok "S shows the log" wait_for -t 10 has_lines S $n
kill -STOP "${FPID[S]}"
big=$(head -c 3000 /dev/zero | tr '\0' x)
rss0=$(awk '/VmRSS/ { print $2 }' /proc/"$(node_pid node1)"/status)
# post 3 KB lines until node1 notices (the socket buffers hold some first), at most 1000
behind() { grep -q 'fell behind by' "$(node_log node1)"; }
for ((k = 1; k <= 1000; k++)); do
    n=$((n + 1)); post node2 "line $n $big"
    [ $((k % 20)) = 0 ] && behind && break
done
ok "node1 noticed S fell behind and sends it pages instead (after $k posts)" wait_for -t 10 behind
rss1=$(awk '/VmRSS/ { print $2 }' /proc/"$(node_pid node1)"/status)
note "node1 RSS with a stopped follower: $rss0 kB before, $rss1 kB after $k posts of 3 KB"
ok "A (reading) got all $k meanwhile" wait_for -t 10 has_lines A $((n - 1))
kill -CONT "${FPID[S]}"
ok "S, reading again, catches up" wait_for -t 20 has_lines S $n
ok "S has no gap and no repeat" same_as_log S 1
unlike "$(cat "$T/S.err")" 'missing|came again' "S: dchatd sent no line twice and skipped none"
n=$((n + 1)); post node1 "line $n after the catch-up"
ok "S is live again" wait_for -t 10 has_lines S $n

# --- SIGINT ends it: exit 0 ------------------------------------------------------------------------------
for name in A S M; do
    kill -INT "${FPID[$name]}"
    if wait_pid_exit "${FPID[$name]}" 5; then
        wait "${FPID[$name]}"; rc=$?
        is "$rc" 0 "SIGINT ends view -f ($name) with exit 0"
    else
        fail "SIGINT ends view -f ($name) with exit 0" "still running after 5 s"
    fi
done
ok "node1, with no follower left, stops its subscription at the server" \
    wait_for -t 10 grep -q 'peer node1 stopped following the log' "$(node_log master)"
v0=$(grep -a -c 'server master: got ENTRY' "$(node_log node1)")
post node2 "a line nobody on node1 follows"
ok "node2's follower B still gets lines" wait_for -t 10 eval 'tail -n 1 "$T/B.out" | grep -q "nobody on node1 follows"'
is "$(grep -a -c 'server master: got ENTRY' "$(node_log node1)")" "$v0" "... and the server pushes nothing more to node1"
# ... also while it waits for dchatd to come back
node_stop node2
ok "B waits for node2" wait_for -t 5 grep -q 'trying again' "$T/B.err"
kill -INT "${FPID[B]}"
if wait_pid_exit "${FPID[B]}" 5; then
    wait "${FPID[B]}"; rc=$?
    is "$rc" 0 "SIGINT while reconnecting: exit 0"
else
    fail "SIGINT while reconnecting: exit 0" "still running after 5 s"
fi

# --- errors -----------------------------------------------------------------------------------------------
run "$DCHATCTL" -s "$T/nothing.sock" view -f
is "$RC" 1 "view -f on a socket nobody listens on: exit 1 at once"
like "$ERR" '^dchatctl: cannot connect to' "... with a clear message"
run ctl node1 view -f -n 0
is "$RC" 2 "view -f -n 0: usage error"

done_testing
