#!/usr/bin/env bash
# 73-silent-server — the link between a peer and the server is watched like a peer link
# (issue 11, items 11 and 15).  A frozen server (SIGSTOP): within dead_after_ms the peers'
# status shows it not connected and server-down says "silent for N ms"; a view fails at
# once with that reason, and so does one already waiting; a post fails fast saying why; a
# `view -f` is told and reconnects, and after SIGCONT it goes on with no gap and sees new
# posts; a post in flight when the server froze is stored once.  A frozen peer: the server
# drops it ("silent for N ms") and its follow.  A half-open link (tests/lib/mitm-proxy
# stalls one direction, both connections stay open): each side finds the other silent,
# and the link comes back.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool mitm-proxy

# default failure detector (heartbeat 250 ms, suspect 1 s, dead 3 s); a post may wait long
# enough to live through the freeze, so that failing fast is the daemon's doing
cluster_start 2 'post_timeout_ms = 30000;' 'reconnect_max_ms = 500;'
DEAD_MS=3000

declare -A FPID
follow() {
    local name=$1 node=$2; shift 2
    "$DCHATCTL" -s "$(node_sock "$node")" view -f "$@" >"$T/$name.out" 2>>"$T/$name.err" &
    FPID[$name]=$!
    track_pid "$!"
}
lines_of() { wc -l < "$T/$1.out"; }
has_lines() { [ "$(lines_of "$1")" -ge "$2" ]; }
same_as_log() { ctl node2 view > "$T/want"; cmp -s "$T/want" "$T/$1.out"; }
server_down_on() { ctl "$1" status --json | grep -q '"server_connected":false'; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
n=0
post() { n=$((n + 1)); ctl "$1" post "line $n" >/dev/null || diag "post 'line $n' on $1 failed"; }

post node1; post node2
follow F node1
ok "view -f on node1 shows the log" wait_for -t 10 has_lines F 2

# --- the server frozen ----------------------------------------------------------------------------
sd1=$(count_events node1 server-down) sd2=$(count_events node2 server-down)
# a post on node2 in flight when the server stops: its APPEND waits in the server's socket
ctl node2 post "in flight when the server froze" > "$T/inflight.out" 2>&1 &
kill -STOP "$(node_pid master)"
t_stop=$(date +%s%N)
inflight=$!; track_pid $inflight
# a view on node2 asked just after the freeze: it must not hang
ctl node2 view > "$T/early.out" 2> "$T/early.err" & early=$!; track_pid $early

if wait_for -t 15 server_down_on node1; then
    pass "node1's status shows the frozen server not connected after $(ms_since "$t_stop") ms (dead_after_ms = $DEAD_MS)"
else
    fail "node1's status shows the frozen server not connected within 15 s" "$(ctl node1 status)"
fi
ok "node2's status too" wait_for -t 15 server_down_on node2
ok "node1 logs server-down" wait_event node1 server-down $((sd1 + 1)) 5
like "$(events node1 server-down | tail -n 1 | ev_field msg)" '^lost the server master: silent for [0-9]+ ms$' \
    "... saying 'silent for N ms'"
silent=$(events node1 server-down | tail -n 1 | ev_field msg | sed -E 's/.*silent for ([0-9]+) ms/\1/')
cmp_ok "$silent" -ge "$DEAD_MS" "... at least dead_after_ms ($silent ms)"
ok "node2 logs server-down" wait_event node2 server-down $((sd2 + 1)) 5

t0=$(date +%s%N)
run timeout 20 "$DCHATCTL" -s "$(node_sock node1)" view
ms=$(ms_since "$t0")
is "$RC" 1 "view on node1 fails (not 124: it does not hang)"
like "$ERR" 'the server master is unreachable \(silent for [0-9]+ ms\); try again later' "... saying why: $ERR"
cmp_ok "$ms" -lt 2000 "... at once ($ms ms)"
wait "$early"; rc=$?
is "$rc" 1 "the view asked just after the freeze failed too (it was waiting for the server)"
like "$(cat "$T/early.err")" 'lost the connection to the server master: silent for [0-9]+ ms' "... saying why"

t0=$(date +%s%N)
run timeout 40 "$DCHATCTL" -s "$(node_sock node1)" post "while the server is frozen"
ms=$(ms_since "$t0")
is "$RC" 1 "a post on node1 fails"
like "$ERR" 'the server master has been unreachable for [0-9]+ ms \(silent for [0-9]+ ms\); the post was not stored' \
    "... saying why: $ERR"
cmp_ok "$ms" -lt 5000 "... fast, not after post_timeout_ms (30000): $ms ms"

ok "view -f on node1 is told, and tries again" wait_for -t 10 grep -q 'silent for [0-9]* ms; trying again' "$T/F.err"
note "view -f said: $(head -n 1 "$T/F.err")"

# --- the server resumes ------------------------------------------------------------------------------
kill -CONT "$(node_pid master)"
t0=$(date +%s%N)
ok "everyone is linked again after SIGCONT" wait_connected 20
note "linked again $(ms_since "$t0") ms after SIGCONT"
wait "$inflight"; rc=$?
is "$rc" 0 "the post in flight when the server froze succeeded" || diag "$(cat "$T/inflight.out")"
run ctl node1 view
is "$(printf '%s\n' "$OUT" | grep -c 'in flight when the server froze$')" 1 "... and is in the log once"
unlike "$OUT" 'while the server is frozen' "the post that failed is not in the log"
post node2
ok "view -f on node1 follows again (its connection to dchatd stayed)" wait_for -t 10 grep -q 'the log is served again; following from line' "$T/F.err"
ok "... and shows the new line" wait_for -t 10 eval "tail -n 1 '$T/F.out' | grep -q 'line $n\$'"
ok "... with no gap and no repeat" same_as_log F
unlike "$(cat "$T/F.err")" 'missing|came again' "... as it says itself"

# --- a frozen peer: the server drops it, and its follow --------------------------------------------
ok "everyone is linked" wait_connected 15
follow G node2
ok "view -f on node2" wait_for -t 10 has_lines G 1
ok "node2 follows at the server" wait_for -t 10 grep -q 'peer node2 follows the log' "$(node_log master)"
pd=$(count_events master peer-down)
kill -STOP "$(node_pid node2)"
t_stop=$(date +%s%N)
ok "the server drops the frozen node2" wait_event master peer-down $((pd + 1)) 15
note "dropped $(ms_since "$t_stop") ms after SIGSTOP"
like "$(events master peer-down | tail -n 1 | ev_field msg)" '^peer node2 disconnected: silent for [0-9]+ ms; its follow ends$' \
    "... because it was silent, and its follow ends"
kill -CONT "$(node_pid node2)"
ok "node2 is back" wait_connected 20
post node1
ok "view -f on node2 goes on" wait_for -t 10 eval "tail -n 1 '$T/G.out' | grep -q 'line $n\$'"
ok "... with no gap and no repeat" same_as_log G

# --- a half-open link: a path that swallows one direction -------------------------------------------
pick_port; PROXY_PORT=$PICKED
sed "s|127.0.0.1:$(node_port master)\"|127.0.0.1:$PROXY_PORT\"|" "$CONF" > "$T/proxy.conf"
MITM_PID=
# stall DIR: node1 reaches the server through a relay that stops passing DIR after a few units
stall() {
    [ -n "$MITM_PID" ] && stop_pid "$MITM_PID"
    : > "$T/mitm.out"
    "$TESTLIB/mitm-proxy" -l "$PROXY_PORT" -c "127.0.0.1:$(node_port master)" -a stall -d "$1" -u 6 \
        > "$T/mitm.out" 2>&1 &
    MITM_PID=$!; track_pid $MITM_PID
    wait_for -t 5 grep -q listening "$T/mitm.out"
}
stall down
node_stop node1
CONF=$T/proxy.conf node_start node1
sd1=$(count_events node1 server-down)
ok "down: the relay stalls what the server sends to node1" wait_for -t 15 grep -q '^attacked: stall' "$T/mitm.out"
ok "node1 finds the server silent" wait_event node1 server-down $((sd1 + 1)) 15
like "$(events node1 server-down | tail -n 1 | ev_field msg)" 'silent for [0-9]+ ms' "... and says so"
ok "... and links again (through the relay, which now passes all)" wait_connected 20
post node1
run ctl node1 view -n 1
like "$OUT" "line $n\$" "node1 posts and views again"

stall up
pd=$(count_events master peer-down)
sd1=$(count_events node1 server-down)
ok "up: the relay stalls what node1 sends to the server" wait_for -t 15 grep -q '^attacked: stall' "$T/mitm.out"
ok "the server finds node1 silent" wait_for -t 15 \
    eval "events master peer-down | tail -n +$((pd + 1)) | grep -q 'peer node1 disconnected: silent for'"
ok "node1 notices the link gone" wait_event node1 server-down $((sd1 + 1)) 15
ok "... and links again" wait_connected 20
post node1
run ctl node1 view -n 1
like "$OUT" "line $n\$" "node1 posts and views again"
stop_pid "$MITM_PID"; MITM_PID=

run ctl node2 view --json
printf '%s\n' "$OUT" > "$T/log.json"
like "$(check_fences "$T/log.json")" "^ok [0-9]+ entries" "the log's seqs have no gap and its fences increase"
done_testing
