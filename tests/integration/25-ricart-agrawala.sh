#!/usr/bin/env bash
# 25-ricart-agrawala — the default dme_algorithm, as 26-central and 28-token run theirs, so
# that the three compare: three peers under contention (every post stored exactly once,
# fences increasing, the same view everywhere, at most 2(N-1) messages an entry, the run
# in causal order), a request deferred behind a section held (--hold), a peer killed
# inside the critical section, one frozen inside (SIGSTOP), and a reload that changes the
# algorithm refused.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 3 'hold_max_ms = 10000;' 'dead_after_ms = 1500;' 'suspect_after_ms = 600;' 'reconnect_max_ms = 300;'

run ctl node1 status
like "$OUT" $'\nalgorithm: ricart-agrawala\n' "the default algorithm, by name in status"

# --- three peers, 15 posts each, all at once -------------------------------------------------
declare -A POSTER
N=15
for n in node1 node2 node3; do
    ( rc=0
      for ((i = 1; i <= N; i++)); do ctl "$n" post "ra $n $i" || rc=1; done
      exit $rc ) 2>"$T/err-$n" & POSTER[$n]=$!; track_pid $!
done
for n in node1 node2 node3; do
    wait "${POSTER[$n]}"; rc=$?
    is "$rc" 0 "$n: its $N posts exit 0" || diag "$(cat "$T/err-$n")"
done
ctl node1 view --json > "$T/view.json"
is "$(check_fences "$T/view.json")" "ok $((3 * N)) entries" "$((3 * N)) entries, fences strictly increasing"
dups=0
for n in node1 node2 node3; do
    for ((i = 1; i <= N; i++)); do
        c=$(grep -c "\"text\":\"ra $n $i\"" "$T/view.json")
        [ "$c" = 1 ] || { dups=$((dups + 1)); diag "ra $n $i is in the log $c time(s)"; }
    done
done
is "$dups" 0 "every post is in the log exactly once"
v1=$(ctl node1 view)
is "$(ctl node2 view)" "$v1" "node2 sees the same log as node1"
is "$(ctl node3 view)" "$v1" "node3 sees the same log as node1"
entries=0 msgs=0
for n in node1 node2 node3; do
    st=$(ctl "$n" status --json)
    entries=$((entries + $(printf '%s' "$st" | sed -E 's/.*"cs_entries":([0-9]+).*/\1/')))
    msgs=$((msgs + $(printf '%s' "$st" | sed -E 's/.*"requests_sent":([0-9]+).*/\1/')))
    msgs=$((msgs + $(printf '%s' "$st" | sed -E 's/.*"replies_sent":([0-9]+).*/\1/')))
done
cmp_ok "$msgs" -le $((4 * entries)) "at most 2(N-1) = 4 messages an entry ($msgs for $entries entries)"
run ctl node2 trace --check
is "$RC" 0 "trace --check: the run is in causal order" || diag "$OUT" "$ERR"

# --- a request deferred behind a section held ----------------------------------------------
run_timed ctl node1 post --hold 2 "held by node1"
is "$RC" 0 "node1: post --hold 2 exits 0"
run_timed ctl node2 post "after node1's hold"
is "$RC" 0 "node2: post exits 0"
cmp_ok "$MS" -ge 1200 "node2's post waited for node1's reply (${MS} ms)"
like "$(events node1 reply-deferred | grep ' peer=node2 ' | tail -n 1)" 'is in the critical section' \
    "node1 logs reply-deferred for node2: it is in the critical section"

# --- a peer killed inside the critical section ------------------------------------------------
ps2=$(count_events node2 post-stored)
ctl node2 post --hold 8 "node2 dies holding" >/dev/null 2>&1 & holder=$!; track_pid $holder
wait_event node2 post-stored $((ps2 + 1)) 10
node_kill node2
wait "$holder" 2>/dev/null
run_timed ctl node3 post "after node2 died"
is "$RC" 0 "node3's post goes through once node2 is dead" || diag "$ERR"
cmp_ok "$MS" -lt 9000 "... without waiting for node2's hold to end (${MS} ms)"
node_start node2
wait_connected 15
run ctl node2 post "node2 is back"
is "$RC" 0 "node2 posts again after its restart" || diag "$ERR"

# --- a peer frozen inside (SIGSTOP): found dead; thawed, it goes on --------------------------
ps1=$(count_events node1 post-stored)
ctl node1 post --hold 2 "node1 frozen holding" >/dev/null 2>"$T/ef" & fh=$!; track_pid $fh
wait_event node1 post-stored $((ps1 + 1)) 10
kill -STOP "$(node_pid node1)"
run_timed ctl node3 post "while node1 is frozen"
is "$RC" 0 "node3 posts while node1, frozen inside, is found dead" || diag "$ERR"
kill -CONT "$(node_pid node1)"
wait "$fh"; is "$?" 0 "node1's held post exits 0" || diag "$(cat "$T/ef")"
ok "everyone is linked again" wait_connected 20
for n in node1 node2 node3; do
    run ctl "$n" post "after the thaw from $n"
    is "$RC" 0 "after the thaw: $n posts" || diag "$ERR"
done
ctl node3 view --json > "$T/view2.json"
like "$(check_fences "$T/view2.json")" '^ok [0-9]+ entries$' "fences still strictly increase"
for t in "node2 dies holding" "after node2 died" "node2 is back" "node1 frozen holding" "while node1 is frozen" \
         "after the thaw from node1"; do
    is "$(grep -c "\"text\":\"$t\"" "$T/view2.json")" 1 "'$t' is in the log once"
done

# --- the algorithm changes only with a restart -------------------------------------------------
echo 'dme_algorithm = "central";' >> "$CONF"
node_hup node1
wait_for -t 10 grep -a -q 'reload refused' "$(node_log node1)"
like "$(grep -a 'reload refused' "$(node_log node1)" | tail -n 1)" 'dme_algorithm changed.*needs a restart' \
    "a reload that changes dme_algorithm is refused"
sed -i '/^dme_algorithm = /d' "$CONF"

for n in master node1 node2 node3; do
    is "$(count_events $n 'protocol-error')" 0 "$n logged no protocol-error"
done

done_testing
