#!/usr/bin/env bash
# 20-contend — assignment test case 2: node1 holds the critical section, node2 asks
# for it and must wait; Ricart–Agrawala's deferral as the events show it.  Then two
# posts started at the same moment on both peers.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 2

# --- node1 goes first and holds the critical section 2 s after storing -------------------
run_timed ctl node1 post --hold 2 "I am going first"
is "$RC" 0 "node1: post --hold 2 exits 0"
cmp_ok "$MS" -lt 1500 "node1's post returns when stored, not after the hold (${MS} ms)"

run_timed ctl node2 post "No, I am second"
is "$RC" 0 "node2: post exits 0"
# node2 started asking at most ~0.1 s after node1's post returned, so it waits ~1.9 s
cmp_ok "$MS" -ge 1500 "node2's post waited for node1 to leave the critical section (${MS} ms)"
cmp_ok "$MS" -lt 6000 "node2's post did not wait much longer than the hold (${MS} ms)"

run ctl node1 view
like "$OUT" $'^[^\n]* root: I am going first\n[^\n]* root: No, I am second$' "the view has node1's post, then node2's"

# --- the protocol, from the events ------------------------------------------------------------
deferred=$(events node1 reply-deferred | grep ' peer=node2 ')
isnt "$deferred" "" "node1 logged reply-deferred for node2"
req2=$(events node2 request-sent | grep ' peer=node1 ' | tail -n 1 | ev_field request_ts)
like "$req2" '^[0-9]+$' "node2 logged request-sent to node1"
is "$(printf '%s\n' "$deferred" | tail -n 1 | ev_field request_ts)" "$req2" "the deferred request is node2's request (request_ts $req2)"
like "$(printf '%s\n' "$deferred" | tail -n 1 | ev_field msg)" "critical section" "reply-deferred says node1 is in the critical section"

exit1=$(events node1 cs-exit | tail -n 1 | ev_field lamport)
got2=$(events node2 reply-received | grep ' peer=node1 ' | grep " request_ts=$req2 " | tail -n 1 | ev_field lamport)
enter2=$(events node2 cs-enter | grep " request_ts=$req2 " | tail -n 1 | ev_field lamport)
like "$got2" '^[0-9]+$' "node2 logged reply-received from node1 for its request"
like "$enter2" '^[0-9]+$' "node2 logged cs-enter for its request"
# Lamport: node1's reply is sent after its cs-exit, so everything node2 does after
# receiving it has a larger clock than node1's cs-exit.
cmp_ok "${got2:-0}" -gt "${exit1:-999999}" "node2's reply-received comes after node1's cs-exit (lamport $got2 > $exit1)"
cmp_ok "${enter2:-0}" -ge "${got2:-999999}" "node2's cs-enter comes with or after the reply (lamport $enter2 >= $got2)"
# and node1 sent that reply only when it left: its reply-sent follows its cs-exit
sent1=$(grep -a -n -E "^time=[^ ]* no=[0-9]* event=reply-sent node=node1 peer=node2 .* request_ts=$req2 " "$(node_log node1)" | tail -n 1 | cut -d: -f1)
exitline=$(grep -a -n -E '^time=[^ ]* no=[0-9]* event=cs-exit ' "$(node_log node1)" | tail -n 1 | cut -d: -f1)
cmp_ok "${sent1:-0}" -gt "${exitline:-999999}" "node1 sent node2's reply after its cs-exit (log line $sent1 > $exitline)"
is "$(events node1 reply-sent | grep -c " request_ts=$req2 ")" 1 "node1 replied to that request exactly once"

# the fences in the log follow the order of entry
run ctl node2 view --json
fences=$(printf '%s\n' "$OUT" | sed -E 's/.*"lamport":([0-9]+),"node":"([^"]*)".*/\1 \2/')
first=$(printf '%s\n' "$fences" | sed -n 1p); second=$(printf '%s\n' "$fences" | sed -n 2p)
is "${second#* }" node2 "entry 2 was written under node2's request"
is "${second% *}" "$enter2" "entry 2's fence is node2's clock at its cs-enter ($enter2), the entry's timestamp"
cmp_ok "${second% *}" -gt "${first% *}" "entry 2's fence lamport is greater than entry 1's"

# --- truly simultaneous posts --------------------------------------------------------------
for round in 1 2 3; do
    ctl node1 post "together $round from node1" 2>"$T/e1" & a=$!; track_pid $a
    ctl node2 post "together $round from node2" 2>"$T/e2" & b=$!; track_pid $b
    wait $a; ra=$?; wait $b; rb=$?
    is "$ra/$rb" "0/0" "round $round: both simultaneous posts exit 0" || diag "$(cat "$T/e1" "$T/e2")"
done
run ctl node1 view
for round in 1 2 3; do
    for n in node1 node2; do
        is "$(printf '%s\n' "$OUT" | grep -c ": together $round from $n\$")" 1 "round $round: $n's post is stored once"
    done
done
is "$(printf '%s\n' "$OUT" | wc -l)" 8 "8 lines in all"
run ctl node2 view
is "$OUT" "$(ctl node1 view)" "node1 and node2 see the same log"

for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused|post-failed')" 0 "$n logged no protocol-error, append-refused or post-failed"
done

done_testing
