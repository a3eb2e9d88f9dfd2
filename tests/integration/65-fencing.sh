#!/usr/bin/env bash
# 65-fencing — the server's own guards, driven by hand-made APPEND frames from a
# connection that says it is node1 (send-raw -k: a host holding the cluster key may
# claim any member's name, see the CAVEATS of dchatd(8)): an append whose fence is not greater than the last stored one
# is refused with append-refused (invariant 2); a copy of a stored post (its post id,
# fence and text) is acknowledged as a duplicate with the seq it is stored under, and not
# stored again, while its post id with another text is refused as a conflict and an
# older post id that is not in the log as stale (invariant 3); an append under another
# node's name closes the connection.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl od
need_tool send-raw
SEND=$TESTLIB/send-raw

cluster_start 2
for i in 1 2 3; do ctl node1 post "real $i" || fail "post real $i"; done
ctl node2 post "real 4" || fail "post real 4"
last() { ctl node2 view -n 1 --json | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{seq} $e->{lamport} $e->{node} $e->{fence_idx} $e->{post_id}"'; }
read -r seq4 lam4 node4 idx4 pid4 <<< "$(last)"
is "$seq4/$node4/$idx4" "4/node2/0" "the last entry is node2's, seq 4, fence index 0"
# the fields of entry N, to send it again: seq lamport fence_idx post_id unix_time author text
entry() { ctl node1 view --json | sed -n "$1p" | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{seq} $e->{lamport} $e->{fence_idx} $e->{post_id} $e->{unix_time} $e->{author} $e->{text}"'; }
read -r seq3 lam3 idx3 pid3 time3 author3 text3 <<< "$(entry 3)"
read -r seq1 lam1 idx1 pid1 time1 author1 text1 <<< "$(entry 1)"
view0=$(ctl node1 view)

# hello NODE: a HELLO frame; append TAG LAMPORT NODE IDX POST_ID TEXT: an APPEND frame
hello() { { be32 1; wstr "$1"; be8 $ROLE_PEER; be64 0; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p"; }
# (TIME, AUTHOR: optional, default now and "forger"; the poster's UTC offset is 0, as in the real posts here)
append() {
    { be32 "$1"; be64 0; be64 "$2"; wstr "$3"; be32 "$4"; be64 "$5"; be64 "${7:-$(date +%s)}"; be32 0
      wstr "${8:-forger}"; wstr "$6"; be8 0; } > "$T/p"        # be8 0: an empty vector clock
    frame $MSG_APPEND "$T/p"
}
# the answer to the APPEND: "TYPE TAG PAYLOAD-HEX" of the frame after HELLO_ACK
answer() { frames "$T/reply" | awk -v l=$MSG_LEADER '$1 != l' | sed -n 2p; }

# --- a fence not greater than the last one -------------------------------------------------------
for case in "equal:$lam4:node2:0" "older:$((lam4 - 1)):node1:0" "same lamport, smaller node:$lam4:node1:5"; do
    IFS=: read -r what lam fnode fidx <<< "$case"
    before=$(count_events master append-refused)
    { hello node1; append 7 "$lam" node1 "$fidx" $((pid3 + 1000)) "forged ($what)"; } > "$T/frame"
    # the fence node must be the sender: node1; "equal" is (lam4, node1, 0) < (lam4, node2, 0)
    "$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
    like "$(tr -c '[:print:]' . < "$T/reply")" 'append refused: fence' "fence $lam/node1/$fidx ($what than $lam4/node2/0): refused with an error"
    ok "... and append-refused is logged" wait_event master append-refused $((before + 1)) 3
    is "$(ctl node1 view)" "$view0" "... and nothing is stored"
done

# --- a copy of a stored post: acknowledged as a duplicate, stored once -----------------------------
{ hello node1; append 8 "$lam3" node1 "$idx3" "$pid3" "$text3" "$time3" "$author3"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_APPENDED -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
read -r type tag payload <<< "$(answer)"
is "$type/$tag" "$MSG_APPENDED/8" "a copy of node1's last post: the answer is APPENDED"
# APPENDED payload after the tag: seq u64, lamport u64, fence_idx u32, duplicate u8
is "${payload:40:2}" 01 "... flagged as a duplicate"
is "$(be_int "${payload:0:16}")" "$seq3" "... with the seq it was stored under ($seq3)"
is "$(ctl node1 view)" "$view0" "... and it is not stored again"
cmp_ok "$(count_events master post-stored)" -eq 4 "the server stored 4 posts in all"

{ hello node1; append 9 "$lam1" node1 "$idx1" "$pid1" "$text1" "$time1" "$author1"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_APPENDED -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
read -r type tag payload <<< "$(answer)"
is "$type/$tag" "$MSG_APPENDED/9" "a copy of node1's first post: APPENDED"
is "${payload:40:2}" 01 "... as a duplicate"
is "$(be_int "${payload:0:16}")" "$seq1" "... with the seq it was stored under ($seq1), not 0"
is "$(ctl node1 view)" "$view0" "... not stored again"

# --- the post id of a stored post with another text: not the same post -------------------------
{ hello node1; append 11 "$lam3" node1 "$idx3" "$pid3" "another text under post $pid3" "$time3" "$author3"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
like "$(tr -c '[:print:]' . < "$T/reply")" 'names another post in the log; this one was not stored' \
    "node1's last post id and fence with another text: refused, never acknowledged as stored"
is "$(ctl node1 view)" "$view0" "... and not stored"

# --- an older post id that is not in the log: a late copy, not stored ---------------------------------
{ hello node1; append 12 $((lam4 + 500)) node1 0 $((pid1 - 1)) "a late post of an earlier life"; } > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 3000 -e $MSG_ERROR -o "$T/reply" "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
like "$(tr -c '[:print:]' . < "$T/reply")" 'late copy from an earlier connection or life of node1; it was not stored' \
    "a post id below node1's first, under a greater fence: refused as stale"
is "$(ctl node1 view)" "$view0" "... and not stored"

# --- an append under another node's name -----------------------------------------------------------
before=$(count_events master protocol-error)
{ hello node1; append 10 $((lam4 + 3000)) node2 0 $((pid4 + 1000)) "node1 speaking for node2"; } > "$T/frame"
is "$("$SEND" -k "$KEY" -n node1 -t 3000 "127.0.0.1:$(node_port master)" < "$T/frame")" closed "an APPEND for node2 on node1's connection: closed"
ok "... with protocol-error" wait_event master protocol-error $((before + 1)) 3
is "$(ctl node1 view)" "$view0" "... and nothing stored"

# --- the real peers are not disturbed -----------------------------------------------------------------
run ctl node1 post "real 5"
is "$RC" 0 "node1 posts after all that" || diag "$ERR"
run ctl node2 post "real 6"
is "$RC" 0 "node2 posts after all that" || diag "$ERR"
run ctl node2 view
is "$(printf '%s\n' "$OUT" | sed 's/^.* root: //' | tr '\n' '|')" "real 1|real 2|real 3|real 4|real 5|real 6|" "the log holds the real posts only"
is "$(printf '%s\n' "$OUT" | grep -c forger)" 0 "no forged entry anywhere"

done_testing
