#!/usr/bin/env bash
# 50-socket-activation — dchatd started by systemd-socket-activate(1) as a socket unit
# would start it: named sockets (LISTEN_FDNAMES, in -l order), started on the first
# connection, keeping the PID; sd_notify READY=1, STATUS=, RELOADING=1, STOPPING=1 as a
# NOTIFY_SOCKET sees them; sockets that do not fit the node refused with a clear error.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd systemd-socket-activate
need_tool notify-recv

SA=$(command -v systemd-socket-activate)
cluster_config 2

# notify_start ID: a NOTIFY_SOCKET at $T/ID.notify.sock recording to $T/ID.notify
notify_start() {
    "$TESTLIB/notify-recv" "$T/$1.notify.sock" "$T/$1.notify" </dev/null >>"$T/notify-recv.log" 2>&1 &
    track_pid $!
    wait_for -t 5 test -S "$T/$1.notify.sock" || bail_out "notify-recv did not bind $T/$1.notify.sock"
    : >> "$T/$1.notify"
}

# sa_start ID NODE FDNAMES ADDR...: systemd-socket-activate listening on ADDR... (fds in
# that order, named FDNAMES, colon-separated), running dchatd -n NODE on the first
# connection, with a NOTIFY_SOCKET of its own.  SA_PID[ID] = the PID (kept by dchatd).
declare -A SA_PID
sa_start() {
    local id=$1 node=$2 names=$3 a args=() n=0 i wd=()
    shift 3
    # WatchdogSec= as systemd passes it: WATCHDOG_USEC (no WATCHDOG_PID: any PID may ping)
    [ -n "${SA_WATCHDOG_USEC:-}" ] && wd=(-E WATCHDOG_USEC="$SA_WATCHDOG_USEC")
    for a in "$@"; do args+=(-l "$a"); n=$((n + 1)); done
    mkdir -p "$T/$id/run" "$T/$id/state"
    notify_start "$id"
    "$SA" "${args[@]}" --fdname="$names" \
        -E RUNTIME_DIRECTORY="$T/$id/run" -E STATE_DIRECTORY="$T/$id/state" -E DCHAT_LOG=stderr \
        -E NOTIFY_SOCKET="$T/$id.notify.sock" "${wd[@]+"${wd[@]}"}" \
        "$DCHATD" -c "$CONF" -n "$node" </dev/null >>"$T/$id.log" 2>&1 &
    SA_PID[$id]=$!
    track_pid $!
    for ((i = 0; i < 100; i++)); do
        # (the log may not exist yet: the background job opens it)
        [ "$(cat "$T/$id.log" 2>/dev/null | grep -c '^Listening on')" -ge "$n" ] && return 0
        pid_alive "${SA_PID[$id]}" || break
        sleep 0.05
    done
    diag "systemd-socket-activate for $id did not listen:" "$(cat "$T/$id.log")"
    return 1
}
exe_of() { readlink "/proc/$1/exe" 2>/dev/null; }
# notified ID KEY: a line of ID's notifications holds KEY
notified() { grep -q -E -- "$2" "$T/$1.notify"; }
# line number of the last notification with KEY (0: none)
last_line() { grep -n -E -- "$2" "$T/$1.notify" | tail -n 1 | cut -d: -f1 | grep . || echo 0; }

# --- sockets that do not fit the node ------------------------------------------------------------
pick_port; bad_port=$PICKED; PORT[bad]=$bad_port
sa_start wrongname node1 server:control "127.0.0.1:$bad_port" "$T/wrongname/run/dchatd.sock"
run "$DCHATCTL" -s "$T/wrongname/run/dchatd.sock" status
wait_pid_exit "${SA_PID[wrongname]}" 5; stop_pid "${SA_PID[wrongname]}"
is "$STOP_RC" 1 "a 'server' socket passed to a peer: dchatd exits 1"
like "$(cat "$T/wrongname.log")" "systemd passed a 'server' socket, but node node1 has the peer role" \
    "... and says which socket does not fit which role"
ok "... and tells systemd why (STATUS=, ERRNO=)" notified wrongname 'STATUS=failed to start.*ERRNO='
nok "... and never says READY=1" notified wrongname READY=1

sa_start wrongport node1 peer:control "127.0.0.1:$bad_port" "$T/wrongport/run/dchatd.sock"
run "$DCHATCTL" -s "$T/wrongport/run/dchatd.sock" status
wait_pid_exit "${SA_PID[wrongport]}" 5; stop_pid "${SA_PID[wrongport]}"
is "$STOP_RC" 1 "a 'peer' socket on another port than the config's: dchatd exits 1"
like "$(cat "$T/wrongport.log")" "socket 'peer' from systemd listens on port $bad_port, but $CONF:[0-9]+ gives node1 the address 127.0.0.1:${PORT[node1]}" \
    "... and names both ports and the config's file:line"

sa_start unknown node2 bogus:control "127.0.0.1:$bad_port" "$T/unknown/run/dchatd.sock"
run "$DCHATCTL" -s "$T/unknown/run/dchatd.sock" status
wait_pid_exit "${SA_PID[unknown]}" 5; stop_pid "${SA_PID[unknown]}"
is "$STOP_RC" 1 "a socket named 'bogus': dchatd exits 1"
like "$(cat "$T/unknown.log")" "systemd passed a socket named 'bogus'; expected 'control' and 'peer'" "... and says what it expected"

# names go to the fds in -l order: swapped names put 'control' on the TCP socket
sa_start swapped node1 control:peer "127.0.0.1:$bad_port" "$T/swapped/run/dchatd.sock"
run "$DCHATCTL" -s "$T/swapped/run/dchatd.sock" status
wait_pid_exit "${SA_PID[swapped]}" 5; stop_pid "${SA_PID[swapped]}"
is "$STOP_RC" 1 "names in the wrong order (control:peer for TCP, UNIX): dchatd exits 1"
like "$(cat "$T/swapped.log")" "socket 'control' from systemd is not a listening UNIX stream socket" "... saying the 'control' socket is not a UNIX socket"

# --- the cluster, socket-activated ------------------------------------------------------------------
sa_start master master server:control "127.0.0.1:${PORT[master]}" "$(node_sock master)"
SA_WATCHDOG_USEC=400000 sa_start node1 node1 peer:control "127.0.0.1:${PORT[node1]}" "$(node_sock node1)"
# node2 gets only its control socket: it binds its TCP port from the config itself
sa_start node2 node2 control "$(node_sock node2)"
for n in master node1 node2; do NODE_PID[$n]=${SA_PID[$n]}; done

for n in master node1 node2; do
    is "$(exe_of "${SA_PID[$n]}")" "$SA" "$n: before any connection the listener runs, not dchatd"
    is "$(wc -l < "$T/$n.notify")" 0 "$n: no notification before activation"
done

run ctl node1 status
is "$RC" 0 "the first connection to node1's control socket starts it and gets an answer"
is "$(exe_of "${SA_PID[node1]}")" "$DCHATD" "node1: dchatd runs under the listener's PID"
# node1 connects to the server, which starts it; node2 starts on its first connection
run ctl node2 status
is "$RC" 0 "node2 (control socket passed, TCP bound by itself) answers"
ok "all three are linked" wait_connected 15
is "$(exe_of "${SA_PID[master]}")" "$DCHATD" "master was started by node1's connection, under the listener's PID"
for n in master node1 node2; do
    ok "$n: READY=1" wait_for -t 5 notified $n '^READY=1'
done
ok "node1: STATUS= describes the peer" wait_for -t 5 notified node1 'STATUS=peer node1: released, [0-9]+/1 peers, server (up|down)'
_pings() { [ "$(grep -c '^WATCHDOG=1' "$T/node1.notify")" -ge 3 ]; }
ok "node1 (WATCHDOG_USEC=400000): WATCHDOG=1, again and again" wait_for -t 5 _pings
is "$(grep -c '^WATCHDOG=1' "$T/master.notify")" 0 "master (no WATCHDOG_USEC): no WATCHDOG=1"
ok "master: STATUS= describes the server" wait_for -t 5 notified master 'STATUS=server master: [0-9]+ posts'

run ctl node1 post "socket-activated hello"
is "$RC" 0 "post on node1 works"
run ctl node2 post "and from node2"
is "$RC" 0 "post on node2 works"
run ctl node2 view
like "$OUT" $'root: socket-activated hello\n.* root: and from node2$' "view on node2 shows both"
ok "node1 STATUS= follows the clock (lamport > 0)" wait_for -t 5 notified node1 'STATUS=peer node1: released, 1/1 peers, server up, lamport [1-9]'

# --- reload and stop ----------------------------------------------------------------------------------
ready_before=$(grep -c '^READY=1' "$T/node1.notify")
kill -HUP "${SA_PID[node1]}"
_ready_again() { [ "$(grep -c '^READY=1' "$T/node1.notify")" -gt "$ready_before" ]; }
ok "SIGHUP: READY=1 again" wait_for -t 5 _ready_again
ok "SIGHUP: RELOADING=1" notified node1 '^RELOADING=1'
cmp_ok "$(last_line node1 '^RELOADING=1')" -lt "$(last_line node1 '^READY=1')" "RELOADING=1 comes before the new READY=1"
is "$(exe_of "${SA_PID[node1]}")" "$DCHATD" "node1 still runs under the same PID after the reload"
run ctl node1 post "after reload"
is "$RC" 0 "post after the reload works"

for n in node2 node1 master; do
    stop_pid "${SA_PID[$n]}"
    is "$STOP_RC" 0 "$n: SIGTERM, exit status 0"
    ok "$n: STOPPING=1" notified $n '^STOPPING=1'
done
ok "the control socket passed by the listener is left in place (it is not dchatd's)" test -S "$(node_sock node1)"
for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|post-failed')" 0 "$n logged no protocol-error or post-failed"
done

done_testing
