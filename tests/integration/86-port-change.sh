#!/usr/bin/env bash
# 86-port-change — a peer's port changed the way README's "Changing a port" says, with the
# peer socket-activated as systemd does it (systemd-socket-activate: named sockets, dchatd
# started by the first connection): the new file on every host; the changed host's
# listener and dchatd stopped together and started again on the new port; every other
# dchatd restarted once.  Three rounds, each must end with every link up, posts stored
# from both peers, the old port closed, the new one served by the socket-activated
# dchatd.  And the failure the old advice led to (dchatd started by its control socket
# alone, binding the port itself) is no longer silent: dchatd says what to do.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd systemd-socket-activate ss

SA=$(command -v systemd-socket-activate)
cluster_config 2 'reconnect_max_ms = 300;'

# sa_start NODE NAMES ADDR...: systemd-socket-activate for NODE (as dchatd.socket and
# dchatd-peer.socket would pass them), dchatd started on the first connection under its PID
sa_start() {
    local node=$1 names=$2 a args=() n=0 i before
    shift 2
    for a in "$@"; do args+=(-l "$a"); n=$((n + 1)); done
    mkdir -p "$T/$node/run" "$T/$node/state"
    touch "$(node_log "$node")"
    before=$(grep -c '^Listening on' "$(node_log "$node")")
    "$SA" "${args[@]}" --fdname="$names" \
        -E RUNTIME_DIRECTORY="$T/$node/run" -E STATE_DIRECTORY="$T/$node/state" -E DCHAT_LOG=stderr \
        "$DCHATD" -c "$CONF" -n "$node" </dev/null >>"$(node_log "$node")" 2>&1 &
    NODE_PID[$node]=$!
    track_pid $!
    for ((i = 0; i < 100; i++)); do
        [ "$(grep -c '^Listening on' "$(node_log "$node")")" -ge $((before + n)) ] && return 0
        pid_alive "${NODE_PID[$node]}" || break
        sleep 0.05
    done
    diag "systemd-socket-activate for $node did not listen:" "$(tail -n 5 "$(node_log "$node")")"
    return 1
}
# listening PORT: something listens on 127.0.0.1:PORT; its PID in LISTENER
listening() {
    LISTENER=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2)
    [ -n "$LISTENER" ]
}
bound_itself() { grep -a -c "systemd passed no 'peer' socket" "$(node_log node1)"; }

node_start master
node_start node2
sa_start node1 peer:control "127.0.0.1:${PORT[node1]}" "$(node_sock node1)" || bail_out "no listener for node1"
run ctl node1 post "on the first port"
is "$RC" 0 "node1, socket-activated on port ${PORT[node1]}, posts" || diag "$ERR"
ok "every link is up" wait_connected 15

# --- the old advice's failure, now said: started by the control socket alone -------------------
# (what a refused `systemctl restart dchatd-peer.socket` left: dchatd-peer.socket stopped,
# dchatd.socket running)
stop_pid "${NODE_PID[node1]}"
sa_start node1 control "$(node_sock node1)" || bail_out "no listener for node1's control socket"
run ctl node1 status
is "$RC" 0 "node1 started by its control socket alone answers"
is "$(bound_itself)" 1 "... and warns that it binds the peer port itself"
like "$(grep -a "systemd passed no 'peer' socket" "$(node_log node1)")" \
    "listens on 127.0.0.1:${PORT[node1]} itself, and once it stops nothing will; to hand the port back to systemd: systemctl stop dchatd.socket dchatd-peer.socket dchatd.service, then systemctl start dchatd.socket dchatd-peer.socket" \
    "... saying what happens and what to do"
stop_pid "${NODE_PID[node1]}"
sa_start node1 peer:control "127.0.0.1:${PORT[node1]}" "$(node_sock node1)" || bail_out "no listener for node1"
ctl node1 status >/dev/null || fail "node1 does not start again"
warned=$(bound_itself)

# --- the port change, three times -----------------------------------------------------------------
for round in 1 2 3; do
    old=${PORT[node1]}
    pick_port; PORT[node1]=$PICKED
    # 1. the new file on every host (the daemons keep what they read)
    write_config
    run "$DCHATD" -t -c "$CONF" -n node1
    is "$RC" 0 "round $round: dchatd -t takes the new file (node1 at port ${PORT[node1]})" || diag "$ERR"
    # 3. the changed host: its listeners and dchatd stopped together, started on the new port
    stop_pid "${NODE_PID[node1]}"
    sa_start node1 peer:control "127.0.0.1:${PORT[node1]}" "$(node_sock node1)" || bail_out "no listener"
    # 4. every other host's dchatd restarted once
    for n in node2 master; do
        node_stop "$n"
        node_start "$n" || fail "round $round: $n does not start again"
    done
    # 5. everything up again
    run ctl node1 post "round $round: node1 on port ${PORT[node1]}"
    is "$RC" 0 "round $round: node1 posts" || diag "$ERR"
    run ctl node2 post "round $round: node2"
    is "$RC" 0 "round $round: node2 posts" || diag "$ERR"
    ok "round $round: every link is up" wait_connected 15
    ok "round $round: the new port is served by node1's socket-activated dchatd" \
        bash -c "$(declare -f listening); listening ${PORT[node1]} && [ \"\$LISTENER\" = ${NODE_PID[node1]} ]"
    nok "round $round: nothing listens on the old port $old" listening "$old"
done
is "$(bound_itself)" "$warned" "following the sequence, node1 never bound its port itself"
run ctl node2 view
is "$(grep -c 'round [123]' <<< "$OUT")" 6 "all six posts of the rounds are in the log"
# (while the hosts' files differ they log config-mismatch for each other: README says so)
mm=$(for n in node1 node2 master; do count_events "$n" config-mismatch; done | awk "{ s += \$1 } END { print s }")
run ctl node1 post "after the rounds"
run ctl node2 post "after the rounds, node2"
is "$(for n in node1 node2 master; do count_events "$n" config-mismatch; done | awk "{ s += \$1 } END { print s }")" "$mm" \
    "once every host has the new file and has restarted: no more config-mismatch"

done_testing
