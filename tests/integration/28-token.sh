#!/usr/bin/env bash
# 28-token — dme_algorithm = "token": Suzuki-Kasami's broadcast token among the peers.
# Three peers under contention (every post stored exactly once, fences increasing, the
# same view everywhere, at most N messages an entry), a peer that posts again with the
# token in hand (no message), a request deferred behind a section held (--hold), the
# holder killed inside the critical section (the token made anew once the others found
# it dead), the holder frozen inside (SIGSTOP: a new token made while it sleeps; thawed,
# it gives up the old one, and nothing is lost or doubled), and a reload that changes
# the algorithm refused.  A request that waits for the token is logged as request-queued,
# not reply-deferred: two queued behind one holder, served one after the other, pass
# `trace --check` although the holder never answers the second.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 3 'dme_algorithm = "token";' 'hold_max_ms = 10000;' 'dead_after_ms = 1500;' \
    'suspect_after_ms = 600;' 'reconnect_max_ms = 300;'

run ctl node2 status
like "$OUT" $'\nalgorithm: token\n' "node2's status names the algorithm"

# --- the first post: the first token is made (a regeneration round of the lowest peer) -------
run ctl node3 post "the first"
is "$RC" 0 "node3's first post exits 0" || diag "$ERR"
like "$(grep -a 'token: none existed yet' "$(node_log node1)" | head -n 1)" 'the first .generation [0-9]+. made here' \
    "node1, the lowest peer, made the first token"

# --- posting again with the token in hand costs nothing ------------------------------------
before=$(ctl node3 status --json | sed -E 's/.*"requests_sent":([0-9]+).*/\1/')
for i in 1 2 3; do ctl node3 post "again $i" >/dev/null || fail "node3's post again $i"; done
st=$(ctl node3 status --json)
is "$(printf '%s' "$st" | sed -E 's/.*"requests_sent":([0-9]+).*/\1/')" "$before" "node3 posted three times more without a request"
cmp_ok "$(printf '%s' "$st" | sed -E 's/.*"cs_reused":([0-9]+).*/\1/')" -ge 3 "... counted as entries without a message"

# --- three peers, 15 posts each, all at once -------------------------------------------------
declare -A POSTER Q0 R0
N=15
for n in node1 node2 node3; do
    ( rc=0
      for ((i = 1; i <= N; i++)); do ctl "$n" post "token $n $i" || rc=1; done
      exit $rc ) 2>"$T/err-$n" & POSTER[$n]=$!; track_pid $!
done
for n in node1 node2 node3; do
    wait "${POSTER[$n]}"; rc=$?
    is "$rc" 0 "$n: its $N posts exit 0" || diag "$(cat "$T/err-$n")"
done

ctl node1 view --json > "$T/view.json"
total=$(wc -l < "$T/view.json")
is "$total" $((3 * N + 4)) "$((3 * N + 4)) entries in the log"
is "$(check_fences "$T/view.json")" "ok $total entries" "seqs without a gap, fences strictly increasing"
dups=0
for n in node1 node2 node3; do
    for ((i = 1; i <= N; i++)); do
        c=$(grep -c "\"text\":\"token $n $i\"" "$T/view.json")
        [ "$c" = 1 ] || { dups=$((dups + 1)); diag "token $n $i is in the log $c time(s)"; }
    done
done
is "$dups" 0 "every post is in the log exactly once"
v1=$(ctl node1 view)
isnt "$v1" "" "node1's view is not empty"
is "$(ctl node2 view)" "$v1" "node2 sees the same log as node1"
is "$(ctl node3 view)" "$v1" "node3 sees the same log as node1"

# --- messages: N-1 requests and one transfer at most per entry -----------------------------
entries=0 msgs=0
for n in node1 node2 node3; do
    st=$(ctl "$n" status --json)
    entries=$((entries + $(printf '%s' "$st" | sed -E 's/.*"cs_entries":([0-9]+).*/\1/')))
    msgs=$((msgs + $(printf '%s' "$st" | sed -E 's/.*"requests_sent":([0-9]+).*/\1/')))
    msgs=$((msgs + $(printf '%s' "$st" | sed -E 's/.*"replies_sent":([0-9]+).*/\1/')))
done
cmp_ok "$msgs" -le $((3 * entries)) "at most N=3 messages an entry ($msgs for $entries entries)"
like "$(events node2 reply-received | tail -n 1)" 'msg="TOKEN for request [0-9]+ received from node[13]' \
    "reply-received is the token's arrival"
run ctl node2 trace --check
is "$RC" 0 "trace --check: the token's run is in causal order" || diag "$OUT" "$ERR"
like "$OUT" '^ok: [0-9]+ critical section.s., each entered after the exit before it' "... every section after the one before"

# --- a request deferred behind a section held ----------------------------------------------
run_timed ctl node1 post --hold 2 "held by node1"
is "$RC" 0 "node1: post --hold 2 exits 0"
run_timed ctl node2 post "after node1's hold"
is "$RC" 0 "node2: post exits 0"
cmp_ok "$MS" -ge 1200 "node2's post waited for node1 to pass the token on (${MS} ms)"
req2=$(events node2 request-sent | tail -n 1 | ev_field request_ts)
q=$(events node1 request-queued | grep ' peer=node2 ' | tail -n 1)
like "$q" "msg=\"request $req2 of node2 queued behind the critical section held here: the token goes on at the exit" \
    "node1 logs request-queued for node2's request ($req2)"
is "$(printf '%s\n' "$q" | ev_field request_ts)" "$req2" "... with its request_ts"
rd=0; for n in node1 node2 node3; do rd=$((rd + $(count_events $n reply-deferred))); done
is "$rd" 0 "no peer logs reply-deferred: under the token nobody owes a REPLY"
enter2=$(events node2 cs-enter | tail -n 1 | ev_field lamport)
exit1=$(events node1 cs-exit | tail -n 1 | ev_field lamport)
cmp_ok "${enter2:-0}" -gt "${exit1:-999999}" "node2 entered after node1's exit, in Lamport time ($enter2 > $exit1)"

# --- two requests queued behind a section held: node1's token serves the first, which hands
# it to the second at its own exit: node1 never answers the second, and that is no violation --
for n in node2 node3; do
    Q0[$n]=$(events node1 request-queued | grep -c " peer=$n ")
    R0[$n]=$(events node1 request-received | grep -c " peer=$n ")
done
ps1=$(count_events node1 post-stored)
ctl node1 post --hold 3 "node1 holds for two" >/dev/null 2>"$T/eh1" & h1=$!; track_pid $h1
wait_event node1 post-stored $((ps1 + 1)) 10 || diag "node1 did not store its post"
_asked() { [ "$(events node1 request-received | grep -c " peer=$1 ")" -gt "${R0[$1]}" ]; }
ctl node2 post "node2 queued first" >/dev/null 2>"$T/eq2" & q2=$!; track_pid $q2
wait_for -t 10 _asked node2 || diag "node1 did not receive node2's request"
ctl node3 post "node3 queued second" >/dev/null 2>"$T/eq3" & q3=$!; track_pid $q3
wait_for -t 10 _asked node3 || diag "node1 did not receive node3's request"
for n in node2 node3; do
    cmp_ok "$(events node1 request-queued | grep -c " peer=$n ")" -gt "${Q0[$n]}" "node1 queued $n's request"
done
wait "$h1"; is "$?" 0 "node1's held post exits 0" || diag "$(cat "$T/eh1")"
wait "$q2"; is "$?" 0 "node2's queued post exits 0" || diag "$(cat "$T/eq2")"
wait "$q3"; is "$?" 0 "node3's queued post exits 0" || diag "$(cat "$T/eq3")"
from2=$(events node2 reply-received | tail -n 1 | sed -n -E 's/.*msg="TOKEN for request [0-9]+ received from (node[0-9]).*/\1/p')
from3=$(events node3 reply-received | tail -n 1 | sed -n -E 's/.*msg="TOKEN for request [0-9]+ received from (node[0-9]).*/\1/p')
like "$from2/$from3" '^(node1/node2|node3/node1)$' \
    "one of the two got the token from node1, the other from it ($from2 to node2, $from3 to node3)"
run ctl node1 trace --check
is "$RC" 0 "trace --check: requests queued for the token are owed no REPLY by the node that queued them" ||
    diag "$OUT" "$ERR"
like "$OUT" 'request.s. queued for the token \(no REPLY owed\)' "... the report counts them"
unlike "$OUT" 'deferral never answered' "... and finds no deferral never answered"

# --- the holder killed inside the critical section: the token is made anew -----------------
ps2=$(count_events node2 post-stored)
made13() { cat "$(node_log node1)" "$(node_log node3)" | grep -a -c 'token: none was found.*made here'; }
m0=$(made13)
ctl node2 post --hold 8 "node2 dies holding" >/dev/null 2>&1 & holder=$!; track_pid $holder
wait_event node2 post-stored $((ps2 + 1)) 10
node_kill node2
wait "$holder" 2>/dev/null
run_timed ctl node3 post "after node2 died"
is "$RC" 0 "node3's post goes through once node2 is dead" || diag "$ERR"
cmp_ok "$MS" -lt 9000 "... without waiting for node2's hold to end (${MS} ms)"
# node1 runs the round, the lowest peer; node3 too, which waits and saw node2 die: the two
# answer each other, so only the higher generation is made
is "$(( $(made13) - m0 ))" 1 "one new token made, by node1 or node3"
run ctl node1 post "node1 after node2 died"
is "$RC" 0 "node1 posts too" || diag "$ERR"
node_start node2
wait_connected 15
run ctl node2 post "node2 is back"
is "$RC" 0 "node2 posts again after its restart" || diag "$ERR"
run ctl node3 post "node3 after node2 came back"
is "$RC" 0 "node3 posts after node2 came back" || diag "$ERR"
ctl node1 view --json > "$T/view2.json"
like "$(check_fences "$T/view2.json")" '^ok [0-9]+ entries$' "fences still strictly increase"
for t in "node2 dies holding" "after node2 died" "node1 after node2 died" "node2 is back" "node3 after node2 came back"; do
    is "$(grep -c "\"text\":\"$t\"" "$T/view2.json")" 1 "'$t' is in the log once"
done

# --- the holder frozen inside (SIGSTOP): found dead, a token made anew; thawed, its old one goes --
ps1=$(count_events node1 post-stored)
dropped() { [ "$(grep -a -c 'token: one of generation [0-9]* dropped' "$(node_log node1)")" -gt "$1" ]; }
d1=$(grep -a -c 'token: one of generation [0-9]* dropped' "$(node_log node1)")
made() { cat "$(node_log node2)" "$(node_log node3)" | grep -a -c 'token: none was found.*made here'; }
m1=$(made)
ctl node1 post --hold 2 "node1 frozen holding" >/dev/null 2>"$T/ef" & fh=$!; track_pid $fh
wait_event node1 post-stored $((ps1 + 1)) 10
kill -STOP "$(node_pid node1)"
run_timed ctl node3 post "while node1 is frozen"
is "$RC" 0 "node3 posts while node1, frozen inside, holds the old token" || diag "$ERR"
# node2 runs the round, the lowest peer alive; node3 too, which waits and saw node1 die (the
# lowest may not know): the two answer each other, so only the higher generation is made
is "$(( $(made) - m1 ))" 1 "one new token made, by node2 or node3"
kill -CONT "$(node_pid node1)"
wait "$fh"; is "$?" 0 "node1's held post exits 0" || diag "$(cat "$T/ef")"
ok "everyone is linked again" wait_connected 20
ok "node1 gave up its old token (a newer generation exists)" wait_for -t 10 dropped "$d1"
for round in 1 2; do
    for n in node1 node2 node3; do
        run ctl "$n" post "after the thaw $round from $n"
        is "$RC" 0 "after the thaw, round $round: $n posts" || diag "$ERR"
    done
done
ctl node2 view --json > "$T/view3.json"
like "$(check_fences "$T/view3.json")" '^ok [0-9]+ entries$' "fences still strictly increase"
for t in "node1 frozen holding" "while node1 is frozen" "after the thaw 1 from node1" "after the thaw 2 from node3"; do
    is "$(grep -c "\"text\":\"$t\"" "$T/view3.json")" 1 "'$t' is in the log once"
done

# --- the shared notes: an increment's read and write in one section of this algorithm ---------
notes_race hits 100 node1 node2 node3
is "$NOTES_FAILED" 0 "300 note increments from three peers: none failed"
is "$(ctl node2 note get hits)" 300 "the note is exactly 300: no update lost under token"
is "$(count_events master note-refused)" 0 "no write came between an increment's read and its write"

# --- the algorithm changes only with a restart -------------------------------------------------
sed -i 's/^dme_algorithm = .*/dme_algorithm = "ricart-agrawala";/' "$CONF"
node_hup node3
wait_for -t 10 grep -a -q 'reload refused' "$(node_log node3)"
like "$(grep -a 'reload refused' "$(node_log node3)" | tail -n 1)" 'dme_algorithm changed.*needs a restart' \
    "a reload that changes dme_algorithm is refused"
sed -i 's/^dme_algorithm = .*/dme_algorithm = "token";/' "$CONF"

for n in master node1 node2 node3; do
    is "$(count_events $n 'protocol-error')" 0 "$n logged no protocol-error"
done

done_testing
