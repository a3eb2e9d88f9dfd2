#!/usr/bin/env bash
# 59-client-gone — a dchatctl that dies while its post waits (issue 11, item 7).  node2
# holds the critical section (post --hold), so a post on node1 waits; its dchatctl is
# then killed.  dchatd must notice the hang-up once, drop the answer and keep the post:
# its CPU time (/proc/PID/stat utime + stime) over 2 s stays near zero, and the post is
# stored once node2 lets go.  A client that half-closes (shutdown(SHUT_WR), as `nc -N`
# does) is not gone: it still gets its answer; one that half-closes and then goes away
# costs no CPU either.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_tool send-raw

HOLD=8                          # s that node2 holds the critical section for, each time
CPU_MAX_TICKS=$(( $(getconf CLK_TCK) * 2 / 5 ))     # 20 % of one core over 2 s

cluster_start 2 "post_timeout_ms = 30000;"

# cpu_ticks NODE: utime + stime of NODE's dchatd so far (proc(5): fields 14 and 15)
cpu_ticks() { sed 's/.*) //' "/proc/$(node_pid "$1")/stat" | awk '{ print $12 + $13 }'; }
# cpu_over_2s NODE: the ticks NODE's dchatd used in the next 2 s
cpu_over_2s() { local a; a=$(cpu_ticks "$1"); sleep 2; echo $(( $(cpu_ticks "$1") - a )); }
queued() { ctl node1 status --json | sed -n 's/.*"queued":\([0-9]*\).*/\1/p'; }
queued_is() { [ "$(queued)" = "$1" ]; }
in_cs() { ctl node2 status --json | grep -q '"dme_state":"held"'; }
hold() {            # node2 takes the critical section and keeps it for $HOLD s
    ctl node2 post --hold "$HOLD" "$1" > /dev/null 2>&1 &
    track_pid $!
    wait_for -t 10 in_cs
}
post_frame() {      # post_frame TEXT: a POST request (tag 7, UTC, no hold)
    local p=$T/payload
    { be32 7; be32 0; be32 0; be16 "${#1}"; printf '%s' "$1"; } > "$p"
    frame $MSG_POST "$p"
}

# --- a dchatctl killed while its post waits ------------------------------------------------
ok "node2 holds the critical section" hold "holder 1"
"$DCHATCTL" -s "$(node_sock node1)" post "orphan" > /dev/null 2>&1 &
client=$!
track_pid "$client"
ok "node1 queues the post while node2 holds" wait_for -t 10 queued_is 1
kill -KILL "$client"
wait "$client" 2>/dev/null
ticks=$(cpu_over_2s node1)
note "node1's dchatd used $ticks ticks ($(getconf CLK_TCK)/s) in the 2 s after its client died"
cmp_ok "$ticks" -lt "$CPU_MAX_TICKS" "node1 does not spin once the client is gone (under 20% of a core)"
is "$(queued)" 1 "the post of the vanished client is still queued"
ok "node1 still answers" ctl node1 status
_stored() { ctl node1 view -n 3 | grep -q 'root: orphan$'; }
ok "once node2 lets go, the orphan post is stored" wait_for -t $((HOLD + 15)) _stored
is "$(ctl node1 view | grep -c 'root: orphan$')" 1 "... exactly once"

# --- a half-close is not a hang-up: the answer still comes ----------------------------------
ok "node2 holds the critical section again" hold "holder 2"
post_frame "half-closed" > "$T/frame"
"$TESTLIB/send-raw" -h -e "$MSG_POSTED" -t $(( (HOLD + 20) * 1000 )) -o "$T/reply" "$(node_sock node1)" \
    < "$T/frame" > "$T/send.out" 2>&1 &
half=$!
track_pid "$half"
ok "node1 queues the half-closed client's post" wait_for -t 10 queued_is 1
ticks=$(cpu_over_2s node1)
note "node1's dchatd used $ticks ticks in 2 s while a half-closed client waits"
cmp_ok "$ticks" -lt "$CPU_MAX_TICKS" "node1 does not spin while a half-closed client waits"
wait "$half"
is "$(od -An -tx1 -N6 "$T/reply" | tr -d ' \n')" "00000019010c" "the half-closed client gets POSTED once it is stored"

# --- half-closed, then gone -------------------------------------------------------------------
ok "node2 holds the critical section a third time" hold "holder 3"
post_frame "half-closed then gone" > "$T/frame"
run "$TESTLIB/send-raw" -h -N -t 300 "$(node_sock node1)" < "$T/frame"
is "$OUT" held "a client posts, half-closes and goes away without its answer"
ok "node1 queued its post" wait_for -t 10 queued_is 1
ticks=$(cpu_over_2s node1)
note "node1's dchatd used $ticks ticks in 2 s after a half-closed client went away"
cmp_ok "$ticks" -lt "$CPU_MAX_TICKS" "node1 does not spin once the half-closed client is gone"
_stored3() { ctl node1 view -n 3 | grep -q 'root: half-closed then gone$'; }
ok "its post is stored once node2 lets go" wait_for -t $((HOLD + 15)) _stored3
ok "node1 still answers" ctl node1 status
done_testing
