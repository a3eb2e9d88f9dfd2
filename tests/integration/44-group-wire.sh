#!/usr/bin/env bash
# 44-group-wire — nothing of the chat or of Raft in the clear on the wire: a three-server
# group and two peers on the loopback of a network namespace of the test's own (so that
# the capture holds this test's traffic and nothing else), tcpdump recording every TCP
# packet from before the first daemon starts, while posts with distinctive texts go in and
# are replicated.  tests/lib/wire-check puts each TCP stream back together and checks:
#   - no post's text, no Raft command or snapshot (fsm.c's "DCM1" and "DCS1" headers) and
#     no dchat frame appears in the clear, in any stream or anywhere in the capture;
#   - every byte of every stream, those between the servers (replication, catch-up) as
#     much as the peers', is in a handshake message or an encrypted record
#     (dchat-protocol(7)).
# Then the same with insecure_plaintext = true: now the checks must fail (the texts, the
# commands and the RAFT frames are found), which shows that they can.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd unshare ip tcpdump perl md5sum
need_tool ../bench/dchat-bench wire-check
BENCH=$TOP/tests/bench/dchat-bench

# Into a network namespace of our own, once: its loopback carries only our daemons.
if [ -z "${DCHAT_WIRE_NETNS:-}" ]; then
    _cleanup_tmp
    _watchdog_stop
    exec unshare --net env DCHAT_WIRE_NETNS=1 "$0" "${_T_ARGS[@]+"${_T_ARGS[@]}"}"
fi
ip link set lo up || bail_out "cannot bring up lo in the test's network namespace"

SECRET="zebra-$RANDOM$RANDOM-whispers"     # in every text: found only if it travels in the clear

# capture NAME: tcpdump on lo into $T/NAME.pcap, in the background, until capture_stop
capture() {
    tcpdump -Z root -i lo -n -s 0 -U -B 16384 -w "$T/$1.pcap" tcp > "$T/$1.tcpdump" 2>&1 &
    CAP_PID=$!
    track_pid $CAP_PID
    wait_for -t 10 grep -q 'listening on' "$T/$1.tcpdump" || bail_out "tcpdump does not start: $(cat "$T/$1.tcpdump")"
}
capture_stop() {
    kill -INT $CAP_PID
    wait_pid_exit $CAP_PID 10
    wait $CAP_PID 2>/dev/null
    grep -q '^0 packets dropped by kernel' "$T/$1.tcpdump" || diag "tcpdump: $(cat "$T/$1.tcpdump")"
}
# traffic: posts through both peers, replicated to every server
traffic() {
    local n
    ctl node1 post "the $SECRET speaks first" || return 1
    "$BENCH" -c 2 -n 100 -t "$SECRET" "$(node_sock node1)" "$(node_sock node2)" > "$T/bench.json" || return 1
    ctl node2 post "the $SECRET speaks last" || return 1
    wait_for -t 20 servers_identical || return 1
    [ "$(ctl master view --json | grep -c -F "$SECRET")" = 402 ]
}
stop_all() { local n; for n in "${NODES[@]}"; do node_alive "$n" && node_stop "$n"; done; }

# --- encrypted (every test cluster has its key) --------------------------------------------------
capture enc
N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;'
ok "402 posts with distinctive texts go in and every server holds them" traffic
# a server down and back: the replication links start again, and it catches up over a link
# of its own (catchup.c), on the record too
wait_for -t 15 group_leader || bail_out "no leader"
F=
for n in "${SERVERS[@]}"; do [ "$n" != "$(group_leader)" ] && F=$n; done
node_stop "$F"
# one poster per peer: one Raft command per post, 1400 commands, beyond a snapshot
ok "1400 posts while $F is down" "$BENCH" -c 1 -n 700 -t "$SECRET-again" "$(node_sock node1)" "$(node_sock node2)"
node_start "$F" || bail_out "$F does not restart"
ok "$F catches up (behind the group's snapshot: it fetches the entries from another server)" \
    wait_event "$F" replica-caught-up 1 30
ok "every server holds the same log" wait_for -t 20 servers_identical
stop_all
capture_stop enc

run "$TESTLIB/wire-check" find "$T/enc.pcap" "$SECRET" 'DCM1\x00\x00\x00' 'DCS1\x01\x00\x00\x00'
is "$RC" 0 "no text and no Raft command in the clear" || diag "$OUT"
run "$TESTLIB/wire-check" records "$T/enc.pcap"
is "$RC" 0 "every byte on the wire is in a handshake message or an encrypted record" || diag "$OUT"
note "$(tail -n 2 <<<"$OUT")"
like "$(tail -n 2 <<<"$OUT" | head -n 1)" '^[0-9]+ connections, [1-9][0-9]* of them between servers' \
    "the capture holds links between the servers"
run "$TESTLIB/wire-check" frames "$T/enc.pcap"
like "$OUT" '^0 streams of frames in the clear$' "no dchat frame in the clear"

# --- the same in the clear: the checks find it ---------------------------------------------------
for n in "${NODES[@]}"; do rm -rf "${T:?}/$n"; : > "$(node_log "$n")"; done
capture clear
N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'insecure_plaintext = true;'
ok "insecure_plaintext = true: the same posts go in" traffic
stop_all
capture_stop clear
run "$TESTLIB/wire-check" find "$T/clear.pcap" "$SECRET" 'DCM1\x00\x00\x00'
is "$RC" 1 "in the clear, the check finds the texts and the Raft commands" || diag "$OUT"
note "$OUT"
run "$TESTLIB/wire-check" records "$T/clear.pcap"
is "$RC" 1 "in the clear, the check finds bytes outside encrypted records"
run "$TESTLIB/wire-check" frames "$T/clear.pcap"
like "$OUT" 'RAFT [1-9]' "in the clear, RAFT frames are seen: $OUT"
done_testing
