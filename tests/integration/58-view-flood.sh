#!/usr/bin/env bash
# 58-view-flood — a client that pipelines requests and never reads its answers costs
# the daemons a bounded amount of memory, and the others are still served (issue 11,
# item 5).  On a log of big entries (4000-byte texts: a full page of 512 is 2 MB):
#
#   - 200 VIEW frames (9.6 kB) on a peer's control socket, never read: the peer relays
#     one view of that client at a time and the server makes pages only while the
#     link's output is below a threshold;
#   - the same on the server's own control socket (server_view_page directly);
#   - the same from a cluster member on the server's port (send-raw -k), after its HELLO;
#   - STATUS frames (a few kB of answer for 12 bytes each) on a peer's control socket.
#
# Meanwhile and after, `status`, `post` and a whole `view` work on every node, and the
# high-water mark of each daemon's RSS (/proc/PID/status VmHWM) stays under HWM_MAX_KB.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool send-raw mklog

N=1200                  # entries of 4000 bytes: 4.9 MB of log
FLOOD=200               # VIEW frames per flood (48 bytes each)
HOLD_MS=6000            # how long each flooding client stays connected without reading
HWM_MAX_KB=$((32 * 1024))
# under ASan (tests/run-tests --asan) the shadow memory and the quarantine of freed blocks
# add to the RSS; an unbounded daemon still goes far beyond this
case $DCHATD in */build/asan/*) HWM_MAX_KB=$((64 * 1024)) ;; esac

cluster_config 2
run "$TESTLIB/mklog" -l 4000 "$(node_state master)" "$N"
is "$RC/$OUT" "0/$N" "mklog wrote $N entries of 4000 bytes"
for n in "${NODES[@]}"; do node_start "$n" || bail_out "$n did not start"; done
ok "the cluster is linked" wait_connected 15

hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$(node_pid "$1")/status"; }
# the peak back to the present RSS, so that each case is measured on its own (proc(5): clear_refs)
hwm_reset() { local n; for n in master node1; do echo 5 > "/proc/$(node_pid "$n")/clear_refs"; done; }
for n in master node1; do note "$n VmHWM at start: $(hwm "$n") kB"; done

# view_frames COUNT: COUNT VIEW requests for the whole log (tag, from seq 1, last_n 0,
# upto 0, 512 a page, since 0, min_seq 0); status_frames COUNT: COUNT STATUS requests
view_frames() {
    perl -e 'print pack("N C C n N Q> Q> Q> N Q> Q>", 48, 1, $ARGV[1], 0, $_, 1, 0, 0, 512, 0, 0) for 1 .. $ARGV[0]' \
        "$1" "$MSG_VIEW"
}
status_frames() { perl -e 'print pack("N C C n N", 4, 1, $ARGV[1], 0, $_) for 1 .. $ARGV[0]' "$1" "$MSG_STATUS"; }
view_frames "$FLOOD" > "$T/views"
is "$(stat -c %s "$T/views")" $((FLOOD * 56)) "$FLOOD VIEW frames: $((FLOOD * 56)) bytes"

# the others are served while a flood is held open, and the daemons stay bounded
others_served() {   # others_served WHAT
    run ctl node2 status
    is "$RC" 0 "$1: node2 answers status meanwhile" || diag "$ERR"
    run ctl master status
    is "$RC" 0 "$1: the server answers status meanwhile" || diag "$ERR"
    run ctl node2 post "during $1"
    is "$RC" 0 "$1: node2 posts meanwhile" || diag "$ERR"
    run ctl node2 view -n 3
    like "$OUT" "root: during $1\$" "$1: node2's view shows it" || diag "$ERR"
    run ctl node1 view -n 2
    like "$OUT" "root: during $1\$" "$1: node1 (the flooded peer) still serves a view" || diag "$ERR"
}
bounded() {         # bounded WHAT
    local n kb
    for n in master node1; do
        kb=$(hwm "$n")
        note "$1: $n VmHWM $kb kB"
        cmp_ok "$kb" -lt "$HWM_MAX_KB" "$1: $n's peak RSS stays under $((HWM_MAX_KB / 1024)) MB"
        ok "$1: $n is still running" node_alive "$n"
    done
}
flood() {           # flood WHAT FRAMES TARGET [send-raw options]: held open, never read
    local what=$1 frames=$2 target=$3 pid member=
    shift 3
    [ "${1:-}" = -k ] && member=1
    hwm_reset
    "$TESTLIB/send-raw" "$@" -N -t "$HOLD_MS" "$target" < "$frames" > "$T/flood.out" 2>&1 &
    pid=$!
    track_pid "$pid"
    sleep 1             # let the daemons do what they would with it
    others_served "$what"
    wait "$pid"
    # (a member's borrowed HELLO may be refused: only the control socket's clients must stay)
    [ -n "$member" ] ||
        is "$(cat "$T/flood.out")" held "$what: the flooding client was not cut off (it was only made to wait)"
    bounded "$what"
}

flood "$FLOOD VIEWs to a peer" "$T/views" "$(node_sock node1)"
flood "$FLOOD VIEWs to the server's control socket" "$T/views" "$(node_sock master)"

# a cluster member (it holds the key) on the server's port: HELLO as node2, then views
{ be32 1; wstr node2; be8 $ROLE_PEER; be64 1; } > "$T/hello.payload"
{ frame $MSG_HELLO "$T/hello.payload"; cat "$T/views"; } > "$T/member"
flood "$FLOOD VIEWs from a member on the server's port" "$T/member" "127.0.0.1:$(node_port master)" \
    -k "$KEY" -n node2
ok "node2 links up again (its name was borrowed)" wait_connected 15

# answers that are bigger than their requests: STATUS (12 bytes in, kilobytes out)
status_frames 200000 > "$T/statuses"
flood "200000 STATUS requests to a peer" "$T/statuses" "$(node_sock node1)"

# a client that pipelines views and does read gets every answer, in order, and whole pages
# cut short where the buffer is full (VIEW_END says where to go on); half-closed, it is
# closed once all are answered
view_frames 20 > "$T/views20"
for n in node1 master; do
    run "$TESTLIB/send-raw" -h -t 20000 -o "$T/answers" "$(node_sock "$n")" < "$T/views20"
    is "$OUT" closed "20 pipelined VIEWs then a half-close on $n: closed once answered"
    frames "$T/answers" > "$T/answers.txt"
    is "$(awk '$1 == 9 { printf "%s ", $2 }' "$T/answers.txt")" "$(seq -s ' ' 1 20) " \
        "... 20 VIEW_ENDs, in the order asked"
    # each page: from seq 1 on, without a gap, and as far as its VIEW_END says
    is "$(perl -ne 'my ($type, $tag, $hex) = split; next unless $type == 8 || $type == 9;
            my $b = pack "H*", $hex;
            if ($type == 8) { my $seq = unpack "Q>", $b; $bad++ if $seq != ($next{$tag} // 1); $next{$tag} = $seq + 1; }
            else { my $n = unpack "Q>", $b; $bad++ if $n != $next{$tag} || $n < 2; }
            END { print $bad ? "bad" : "ok" }' "$T/answers.txt")" ok "... each page in order, as far as its VIEW_END says"
done

# a whole view after all that: every entry, in order
run ctl node1 view
is "$(printf '%s\n' "$OUT" | wc -l)" $((N + 4)) "a whole view from node1 afterwards has every line"
done_testing
