#!/usr/bin/env bash
# 26-central — dme_algorithm = "central": the server grants the critical section, one
# peer at a time, in the order the requests came.  Three peers under contention
# (every post stored exactly once, fences increasing, the same view everywhere, three
# messages per entry and none between the peers), a request queued behind a section
# held (--hold), a peer killed inside the critical section (its grant taken back once
# it is dead), a holder frozen inside (SIGSTOP: its grant taken back, and once thawed
# nothing is lost or doubled), the coordinator restarted (its queue rebuilt from the
# peers' word), and a reload that changes the algorithm refused.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 3 'dme_algorithm = "central";' 'hold_max_ms = 10000;' 'dead_after_ms = 1500;' \
    'suspect_after_ms = 600;' 'reconnect_max_ms = 300;'

# --- status says so ----------------------------------------------------------------------------
run ctl node1 status
like "$OUT" $'\nalgorithm: central\n' "node1's status names the algorithm"
run ctl master status --json
like "$OUT" '"dme_algorithm":"central"' "the server's status --json names it"
like "$OUT" '"coordinator":\{"state":"free","request_ts":0,"queued":0\}' "... and its coordinator: free, nobody waiting"

# --- three peers, 15 posts each, all at once -------------------------------------------------
declare -A POSTER
N=15
for n in node1 node2 node3; do
    ( rc=0
      for ((i = 1; i <= N; i++)); do ctl "$n" post "central $n $i" || rc=1; done
      exit $rc ) 2>"$T/err-$n" & POSTER[$n]=$!; track_pid $!
done
for n in node1 node2 node3; do
    wait "${POSTER[$n]}"; rc=$?
    is "$rc" 0 "$n: its $N posts exit 0" || diag "$(cat "$T/err-$n")"
done

ctl node1 view --json > "$T/view.json"
is "$(wc -l < "$T/view.json")" $((3 * N)) "$((3 * N)) entries in the log"
is "$(check_fences "$T/view.json")" "ok $((3 * N)) entries" "seqs 1..$((3 * N)), fences strictly increasing"
dups=0
for n in node1 node2 node3; do
    for ((i = 1; i <= N; i++)); do
        c=$(grep -c "\"text\":\"central $n $i\"" "$T/view.json")
        [ "$c" = 1 ] || { dups=$((dups + 1)); diag "central $n $i is in the log $c time(s)"; }
    done
done
is "$dups" 0 "every post is in the log exactly once"
v1=$(ctl node1 view); v2=$(ctl node2 view); v3=$(ctl node3 view)
isnt "$v1" "" "node1's view is not empty"
is "$v2" "$v1" "node2 sees the same log as node1"
is "$v3" "$v1" "node3 sees the same log as node1"

# --- the messages: each entry one REQUEST to the coordinator, one GRANT back; nothing between peers
sum_entries=0 sum_req=0
for n in node1 node2 node3; do
    st=$(ctl "$n" status --json)
    e=$(printf '%s' "$st" | sed -E 's/.*"cs_entries":([0-9]+).*/\1/')
    rs=$(printf '%s' "$st" | sed -E 's/.*"requests_sent":([0-9]+).*/\1/')
    rr=$(printf '%s' "$st" | sed -E 's/.*"requests_received":([0-9]+).*/\1/')
    gr=$(printf '%s' "$st" | sed -E 's/.*"replies_received":([0-9]+).*/\1/')
    is "$rs/$gr" "$e/$e" "$n: one REQUEST sent and one GRANT received per entry ($e entries)"
    is "$rr" 0 "$n: no REQUEST from another peer"
    is "$(count_events "$n" 'reply-sent')" 0 "$n: sent no REPLY"
    rl=$(printf '%s' "$st" | sed -E 's/.*"replies_sent":([0-9]+).*/\1/')
    cmp_ok "$rl" -ge "$e" "$n: a RELEASE per entry at least ($rl for $e; and one to each new coordinator)"
    sum_entries=$((sum_entries + e)) sum_req=$((sum_req + rs))
done
st=$(ctl master status --json)
is "$(printf '%s' "$st" | sed -E 's/.*"requests_received":([0-9]+).*/\1/')" "$sum_req" \
    "the server received every peer's requests ($sum_req)"
is "$(printf '%s' "$st" | sed -E 's/.*"replies_sent":([0-9]+).*/\1/')" "$sum_entries" \
    "... and granted each entry once ($sum_entries)"
like "$(events node2 request-sent | tail -n 1)" ' peer=master ' "request-sent names the coordinator, the server"
like "$(events master reply-sent | tail -n 1)" 'msg="GRANT for request [0-9]+ sent to node[123]' \
    "the server logs reply-sent for each GRANT"
# the GRANTs are in no peer's ring, but carry what the coordinator learnt: the sections follow each other
run ctl node2 trace --check
is "$RC" 0 "trace --check: the sections are in causal order, through the coordinator's vector clocks" || diag "$OUT" "$ERR"
like "$OUT" "^ok: $((3 * N)) critical section.s., each entered after the exit before it" "... all $((3 * N)) of them"

# --- a request queued behind a section held ----------------------------------------------------
run_timed ctl node1 post --hold 2 "held by node1"
is "$RC" 0 "node1: post --hold 2 exits 0"
run_timed ctl node2 post "after node1's hold"
is "$RC" 0 "node2: post exits 0"
cmp_ok "$MS" -ge 1200 "node2's post waited for node1 to give the section back (${MS} ms)"
q=$(events master request-queued | grep ' peer=node2 ' | tail -n 1)
like "$q" 'msg="LOCK of node2 \(request [0-9]+\) queued: node1 holds the grant' \
    "the server logs request-queued: node2's request queued behind node1"
rd=0; for n in master node1 node2 node3; do rd=$((rd + $(count_events $n reply-deferred))); done
is "$rd" 0 "... and no node logs reply-deferred: nobody owes a REPLY under central"
req2=$(events node2 request-sent | tail -n 1 | ev_field request_ts)
is "$(printf '%s\n' "$q" | ev_field request_ts)" "$req2" "... for node2's request ($req2)"
enter2=$(events node2 cs-enter | grep " request_ts=$req2 " | tail -n 1 | ev_field lamport)
exit1=$(events node1 cs-exit | tail -n 1 | ev_field lamport)
cmp_ok "${enter2:-0}" -gt "${exit1:-999999}" "node2 entered after node1's exit, in Lamport time ($enter2 > $exit1)"

# --- a peer killed inside the critical section ------------------------------------------------
ps1=$(count_events node1 post-stored)
ctl node1 post --hold 8 "node1 dies holding" >/dev/null 2>&1 & holder=$!; track_pid $holder
wait_event node1 post-stored $((ps1 + 1)) 10
node_kill node1
wait "$holder" 2>/dev/null
run_timed ctl node2 post "after node1 died"
is "$RC" 0 "node2's post goes through once node1 is dead" || diag "$ERR"
cmp_ok "$MS" -lt 9000 "... without waiting for node1's hold to end (${MS} ms)"
like "$(grep -a 'is taken back' "$(node_log master)" | tail -n 1)" 'granted to node1 .* taken back' \
    "the server took node1's grant back"
node_start node1
wait_connected 15
run ctl node1 post "node1 is back"
is "$RC" 0 "node1 posts again after its restart" || diag "$ERR"

# --- a holder frozen inside (SIGSTOP): its grant taken back; thawed, it goes on -----------------
ps3=$(count_events node3 post-stored)
rv=$(grep -a -c 'is taken back' "$(node_log master)")
ctl node3 post --hold 2 "node3 frozen holding" >/dev/null 2>"$T/ef" & fh=$!; track_pid $fh
wait_event node3 post-stored $((ps3 + 1)) 10
kill -STOP "$(node_pid node3)"
run_timed ctl node2 post "while node3 is frozen"
is "$RC" 0 "node2 posts while node3, frozen inside, holds a grant" || diag "$ERR"
is "$(grep -a -c 'is taken back' "$(node_log master)")" $((rv + 1)) "the server took node3's grant back"
kill -CONT "$(node_pid node3)"
wait "$fh"; is "$?" 0 "node3's held post exits 0" || diag "$(cat "$T/ef")"
ok "everyone is linked again" wait_connected 20
for n in node1 node2 node3; do
    run ctl "$n" post "after the thaw from $n"
    is "$RC" 0 "after the thaw: $n posts" || diag "$ERR"
done
ctl node1 view --json > "$T/view1.json"
like "$(check_fences "$T/view1.json")" '^ok [0-9]+ entries$' "fences strictly increase"
for t in "node3 frozen holding" "while node3 is frozen" "after the thaw from node3"; do
    is "$(grep -c "\"text\":\"$t\"" "$T/view1.json")" 1 "'$t' is in the log once"
done

# --- the coordinator restarted: the peers tell the new one where they stand -----------------
ps3=$(count_events node3 post-stored)
ctl node3 post --hold 4 "node3 holds across the restart" >/dev/null 2>"$T/e3" & h3=$!; track_pid $h3
wait_event node3 post-stored $((ps3 + 1)) 10
node_stop master
node_start master
run_timed ctl node2 post "after the restart"
is "$RC" 0 "node2 posts through the restarted coordinator" || diag "$ERR"
wait "$h3"; is "$?" 0 "node3's held post exits 0" || diag "$(cat "$T/e3")"
like "$(grep -a 'holds the critical section under request' "$(node_log master)" | tail -n 1)" 'node3 holds' \
    "the new coordinator learnt from node3 that it holds the section"
ctl node1 view --json > "$T/view2.json"
like "$(check_fences "$T/view2.json")" '^ok [0-9]+ entries$' "fences still strictly increase"

# --- the shared notes: an increment's read and write in one section of this algorithm ---------
notes_race hits 100 node1 node2 node3
is "$NOTES_FAILED" 0 "300 note increments from three peers: none failed"
is "$(ctl node2 note get hits)" 300 "the note is exactly 300: no update lost under central"
is "$(count_events master note-refused)" 0 "no write came between an increment's read and its write"

# --- the algorithm changes only with a restart -------------------------------------------------
sed -i 's/^dme_algorithm = .*/dme_algorithm = "ricart-agrawala";/' "$CONF"
node_hup node2
wait_for -t 10 grep -a -q 'reload refused' "$(node_log node2)"
like "$(grep -a 'reload refused' "$(node_log node2)" | tail -n 1)" 'dme_algorithm changed.*needs a restart' \
    "a reload that changes dme_algorithm is refused: it needs a restart"
run ctl node2 status
like "$OUT" $'\nalgorithm: central\n' "node2 still runs central"
sed -i 's/^dme_algorithm = .*/dme_algorithm = "central";/' "$CONF"

for n in master node1 node2 node3; do
    is "$(count_events $n 'protocol-error')" 0 "$n logged no protocol-error"
done

done_testing
