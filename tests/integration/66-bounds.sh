#!/usr/bin/env bash
# 66-bounds — no single message may push a clock or the log's fence to the end of its
# range (DESIGN.md invariant 2).  A host holding the cluster key and claiming node1
# (send-raw -k) sends an APPEND with the fence 2^64-1, one 2^32 + 1 above the last stored
# fence, and a REQUEST with the timestamp 2^64-1 to node2: each is refused with a clear
# error, nothing is stored, no clock wraps, and every node posts on as before (before
# the fix, one such APPEND wedged the log for good).  A burst of 300 fence-refused
# appends is logged in a few lines, not 300.  REQUESTs whose vector clock is malformed
# (65 components, cut short, a component in 11 bytes, over 2^62, or not in its
# shortest form) are refused as malformed frames, one of another cluster's size is
# not merged (said once), and node2 posts on.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool send-raw
SEND=$TESTLIB/send-raw

cluster_start 2
for i in 1 2; do ctl node1 post "node1 before $i" || fail "post node1 before $i"; done
ctl node2 post "node2 before" || fail "post node2 before"
last() { ctl node2 view -n 1 --json | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{lamport} $e->{post_id}"'; }
read -r lam0 pid0 <<< "$(last)"
view0=$(ctl node1 view)

hello() { { be32 1; wstr "$1"; be8 $ROLE_PEER; be64 0; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p"; }
# append TAG LAMPORT IDX POST_ID TEXT: an APPEND of node1's
append() {
    { be32 "$1"; be64 0; be64 "$2"; wstr node1; be32 "$3"; be64 "$4"; be64 "$(date +%s)"; be32 0
      wstr forger; wstr "$5"; be8 0; } > "$T/p"        # be8 0: an empty vector clock
    frame $MSG_APPEND "$T/p"
}
# above node1's post ids so far: a new post, not a copy
big_pid=$(( $(ctl node1 view --json | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{post_id}\n" if $e->{node} eq "node1"' | tail -n 1) + 1000 ))

# --- the fence 2^64-1 -------------------------------------------------------------------------
before=$(count_events master protocol-error)
{ hello node1; append 7 -1 0 $big_pid "the end of the range"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
like "$(tr -c '[:print:]' . < "$T/reply")" 'its fence 18446744073709551615 is beyond the bounds; it was not stored' \
    "an APPEND with the fence 2^64-1: refused, and the answer says why"
ok "... logged as a protocol error" wait_event master protocol-error $((before + 1)) 3
is "$(ctl node1 view)" "$view0" "... and nothing is stored"

# --- a fence 2^32 + 1 above the last stored one ----------------------------------------------------
{ hello node1; append 8 $(( lam0 + (1 << 32) + 1 )) 0 $((big_pid + 1)) "a jump past the bound"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
like "$(tr -c '[:print:]' . < "$T/reply")" 'beyond the bounds; it was not stored' \
    "an APPEND whose fence is 2^32 + 1 above the last stored ($lam0): refused"
is "$(ctl node1 view)" "$view0" "... and nothing is stored"

# --- every node posts on ---------------------------------------------------------------------------
for n in node1 node2 node1; do
    run ctl $n post "$n after the big fences"
    is "$RC" 0 "$n posts after the big fences" || diag "$ERR"
done
read -r lam1 pid1 <<< "$(last)"
cmp_ok "$lam1" -lt $(( 1 << 40 )) "the last stored fence is still small ($lam1)"

# --- a REQUEST with the timestamp 2^64-1, to node2, from 'node1' ---------------------------------
lamport() { ctl "$1" status --json | perl -MJSON::PP -ne 'print decode_json($_)->{lamport}'; }
before=$(count_events node2 protocol-error)
{ hello node1; { be32 0; be64 -1; be8 0; } > "$T/p"; frame $MSG_REQUEST "$T/p"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 2000 "127.0.0.1:$(node_port node2)" < "$T/frame" >/dev/null
ok "node2 refuses a REQUEST with the timestamp 2^64-1 (protocol-error)" \
    wait_event node2 protocol-error $((before + 1)) 3
like "$(events node2 protocol-error | tail -n 1)" 'REQUEST timestamp 18446744073709551615 is beyond the bounds' \
    "... and says why"
l2=$(lamport node2)
cmp_ok "$l2" -lt $(( 1 << 40 )) "node2's clock did not jump ($l2)"
ok "everyone links again" wait_connected 15
for n in node2 node1; do
    run ctl $n post "$n after the big REQUEST"
    is "$RC" 0 "$n posts after the big REQUEST" || diag "$ERR"
done
ctl node1 view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok 8 entries" "8 entries, seqs without a gap, fences increasing"
is "$(grep -c forger "$T/all.json")" 0 "nothing forged is in the log"

# --- 300 refused appends in a burst: a few lines in the log, not 300 ----------------------------------
before=$(count_events master append-refused)
{
    hello node1
    for ((i = 0; i < 300; i++)); do append $((100 + i)) 1 "$i" $((big_pid + 10 + i)) "old fence $i"; done
} > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
is "$(frames "$T/reply" | awk -v e=$MSG_ERROR '$1 == e' | wc -l)" 300 "300 appends under an old fence: 300 refusals answered"
sleep 1.2       # the rate limit's interval: the next line says how many were left out
{ hello node1; append 999 1 0 $((big_pid + 999)) "one more"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
n_lines=$(( $(count_events master append-refused) - before ))
cmp_ok "$n_lines" -le 30 "... logged in $n_lines append-refused lines, not 301"
like "$(events master append-refused | tail -n 1)" 'more like it not logged' "... the next line says how many were left out"

# --- vector clocks that are not what a peer sends: refused, or not merged ---------------------------
# (a count byte, then varints; dchat-protocol(7)): refused before anything is taken in
vc_request() {  # vc_request DESCRIPTION PAYLOAD-AFTER-TS...: a REQUEST from 'node1' with that clock, to node2
    local what=$1; shift
    { hello node1; { be32 0; be64 5; "$@"; } > "$T/p"; frame $MSG_REQUEST "$T/p"; } > "$T/frame"
    local before; before=$(count_events node2 protocol-error)
    "$SEND" -k "$KEY" -n node1 -t 2000 "127.0.0.1:$(node_port node2)" < "$T/frame" >/dev/null
    ok "a REQUEST whose vector clock $what: refused (protocol-error)" wait_event node2 protocol-error $((before + 1)) 3
    like "$(events node2 protocol-error | tail -n 1)" 'malformed REQUEST frame; closing' "... a malformed frame, and closed"
}
vc_request "has 65 components (over DCHAT_PEERS_MAX)" be8 65
vc_request "stops inside a component" eval 'be8 2; be8 1; be8 $((0x80))'
vc_request "has a component in 11 bytes" eval 'be8 1; for i in 1 2 3 4 5 6 7 8 9 10; do be8 $((0xff)); done; be8 1'
vc_request "has a component of 2^62 + 1 (over DCHAT_CLOCK_MAX)" eval 'be8 1; for i in 1 2 3 4 5 6 7 8; do be8 $((0x81)); done; be8 $((0x40))'
vc_request "has a component in a longer form than it needs" eval 'be8 1; be8 $((0x85)); be8 0'
ok "node2 still answers" ctl node2 status
# a well-formed clock of another cluster's size is taken with the REQUEST, but not merged
before=$(grep -ac 'sends vector clocks of 3 component' "$(node_log node2)")
{ hello node1; { be32 0; be64 5; be8 3; be8 1; be8 1; be8 1; } > "$T/p"; frame $MSG_REQUEST "$T/p"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 2000 "127.0.0.1:$(node_port node2)" < "$T/frame" >/dev/null
ok "a clock of 3 components in a cluster of 2 peers: not merged, and said once" \
    wait_for -t 5 bash -c "[ \$(grep -ac 'sends vector clocks of 3 component' '$(node_log node2)') -gt $before ]"
ok "everyone links again after the bad clocks" wait_connected 15
run ctl node2 post "node2 after the bad clocks"
is "$RC" 0 "node2 posts after them" || diag "$ERR"
done_testing
