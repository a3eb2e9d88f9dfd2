#!/usr/bin/env bash
# 67-flood — strangers without the cluster key hold connections open to a peer's and the
# server's port (tests/lib/flood: idle connections, reopened as soon as they are closed).
# A restarting member must still link, and posts succeed; every stranger's address gets
# only max_handshakes_per_address of the max_handshakes slots; an idle connection is
# closed after first_message_timeout_ms, long before handshake_timeout_ms; when strangers
# from many addresses fill every slot, a member's connection takes the oldest stranger's
# slot; and the log holds a bounded number of refusal lines, then "N more" summaries.
# On loopback every member is at 127.0.0.1; the strangers bind their connections to
# 127.0.0.2 and up (all of 127/8 is local), so "stranger" and "member" are told apart
# by address, as they are between hosts.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_tool flood send-raw
FLOOD=$TESTLIB/flood

# the defaults of max_handshakes (32), max_handshakes_per_address (4), handshake_timeout_ms
# (5000); a quicker failure detector so that a peer locked out shows as dead in time
cluster_start 2 'first_message_timeout_ms = 500;' 'suspect_after_ms = 700;' 'dead_after_ms = 1500;' \
    'reconnect_max_ms = 500;'
FLOOD_PIDS=()
# flood_start NAME NODE ARGS...: strangers at NODE's port, output in $T/flood.NAME
flood_start() {
    local name=$1 node=$2; shift 2
    "$FLOOD" "$@" "127.0.0.1:$(node_port "$node")" > "$T/flood.$name" 2>&1 &
    FLOOD_PIDS+=($!); track_pid $!
    wait_for -t 10 grep -q '^open' "$T/flood.$name" || diag "flood $name did not open:" "$(cat "$T/flood.$name")"
}
flood_stop() {
    local p
    for p in "${FLOOD_PIDS[@]}"; do stop_pid "$p"; done
    FLOOD_PIDS=()
}
laf() { count_events "$1" link-auth-failed; }
# posts_work WHAT: a post on each peer succeeds
posts_work() {
    local n
    for n in node1 node2; do
        run ctl "$n" post "on $n: $1"
        is "$RC" 0 "$1: a post on $n works" || diag "$ERR"
    done
}
ok "the cluster is linked" wait_connected 15
posts_work "before any flood"

# --- 40 idle connections from one stranger, at node1's port and at the server's ----------------
l1=$(wc -l < "$(node_log node1)") lm=$(wc -l < "$(node_log master)")
t_flood=$(date +%s%N)
flood_start one node1 -n 40 -s 127.0.0.2 -r -d 20
flood_start one-m master -n 40 -s 127.0.0.2 -r -d 20
sleep 2         # (let the flood settle: the slots are held, refusals and timeouts go on)
node_stop node2
t0=$(date +%s%N)
node_start node2
if wait_connected 30; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    pass "node2 restarted while 40 stranger connections hold node1's and the server's port: linked again in $ms ms"
else
    fail "node2 restarted while 40 stranger connections hold node1's and the server's port: linked again"
fi
posts_work "40 idle connections from 127.0.0.2"
# the flood goes on for 12 s in all: more than one interval of the rate limit (10 s)
_flood_long() { [ $(( ($(date +%s%N) - t_flood) / 1000000000 )) -ge 12 ]; }
wait_for -t 20 _flood_long
flood_stop
secs=$(( ($(date +%s%N) - t_flood) / 1000000000 ))
note "flood one: $(cat "$T/flood.one") (node1's port), $(cat "$T/flood.one-m") (the server's), for $secs s"
new1=$(tail -n +$((l1 + 1)) "$(node_log node1)" | grep -a -c '^time=[^ ]* no=[0-9]* event=link-auth-failed ')
newm=$(tail -n +$((lm + 1)) "$(node_log master)" | grep -a -c '^time=[^ ]* no=[0-9]* event=link-auth-failed ')
note "link-auth-failed lines during the flood: node1 $new1, master $newm"
# at most 20 lines per 10 s, plus one summary per address and interval: a bound, whatever the rate
bound=$(( (secs / 10 + 2) * 25 ))
cmp_ok "$new1" -le "$bound" "node1 logged at most $bound refusals in $secs s ($new1)"
cmp_ok "$newm" -le "$bound" "the server logged at most $bound refusals in $secs s ($newm)"
ok "node1 summed up the rest: 'N more ... from 127.0.0.2'" wait_for -t 15 \
    grep -a -q -E '^time=[^ ]* no=[0-9]* event=link-auth-failed .*[0-9]+ more connections from 127\.0\.0\.2 ' "$(node_log node1)"
held=$(grep -a -E '^time=[^ ]* no=[0-9]* event=link-auth-failed .* more connections from 127\.0\.0\.2 ' "$(node_log node1)" | ev_field msg |
       sed -E 's/^([0-9]+) more .*/\1/' | paste -sd+ | bc)
note "node1: $held lines held back and summed up"
events node1 link-auth-failed | tail -n +1 | grep -a -m 1 'max_handshakes_per_address' | ev_field msg > "$T/m"
like "$(cat "$T/m")" '127\.0\.0\.2:[0-9]+: refused: 4 handshakes pending from 127\.0\.0\.2 \(max_handshakes_per_address\)' \
    "a refusal names the address and max_handshakes_per_address"

# --- an idle connection is closed after first_message_timeout_ms -----------------------------------
b1=$(laf node1)
t0=$(date +%s%N)
is "$("$TESTLIB/send-raw" -b 127.0.0.3 -t 4000 "127.0.0.1:$(node_port node1)" < /dev/null)" closed \
    "an idle connection is closed"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
cmp_ok "$ms" -lt 4000 "... before handshake_timeout_ms (5000): in $ms ms (first_message_timeout_ms = 500)"
ok "... and logged" wait_event node1 link-auth-failed $((b1 + 1)) 5
like "$(events node1 link-auth-failed | tail -n 1 | ev_field msg)" \
    '127\.0\.0\.3:[0-9]+: no handshake message within 500 ms \(first_message_timeout_ms\)' "... saying why"

# --- strangers from 64 addresses fill every slot: a member takes the oldest stranger's ---------------
flood_start many node1 -n 64 -s 127.0.1.1 -k 64 -r -d 20
flood_start many-m master -n 64 -s 127.0.1.1 -k 64 -r -d 20
sleep 1
node_stop node2
t0=$(date +%s%N)
node_start node2
if wait_connected 30; then
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    pass "node2 restarted while strangers from 64 addresses fill max_handshakes: linked again in $ms ms"
else
    fail "node2 restarted while strangers from 64 addresses fill max_handshakes: linked again"
fi
posts_work "64 stranger addresses"
ok "node1 made room for a member's connection" \
    grep -a -q -E '^time=[^ ]* no=[0-9]* event=link-auth-failed .*127\.0\.1\.[0-9]+:[0-9]+: dropped to make room for the connection from 127\.0\.0\.1:[0-9]+, a member.s address \(max_handshakes reached\)' \
    "$(node_log node1)"
flood_stop
note "flood many: $(cat "$T/flood.many") (node1's port), $(cat "$T/flood.many-m") (the server's)"

ok "the cluster is linked after the floods" wait_connected 15
posts_work "after the floods"
run ctl node1 view
is "$(printf '%s\n' "$OUT" | grep -c 'root: on node')" 8 "every acknowledged post is in the log once"
done_testing
