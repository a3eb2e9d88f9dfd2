#!/usr/bin/env bash
# 75-failover — the failure detector on loopback, 3 peers (so that one dead peer never
# blocks two live ones), default times (heartbeat 250 ms, suspect 1 s, dead 3 s):
#   1. node1 holds the critical section (post --hold) while node2 and node3 wait for
#      its reply; node1 is killed (SIGKILL).  node2 and node3 declare it dead after about
#      dead_after_ms and post; node1 restarts and rejoins (peer-restarted, peer-alive).
#      Several rounds: the time to detect the dead peer and the time until the others
#      post again are measured and reported (median and worst).
#   2. node1 killed at a random moment while many of its posts pour into the critical
#      section: every acknowledged post is in the log once, nothing is half-stored
#      (every line is whole, the server's log reopens without log-recovered), the others
#      go on.
#   3. after the rejoin its requests compete normally: deferral both ways.
#   4. status shows each peer's state and since when, as text and JSON.
# DCHAT_LONG=1: more rounds.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

ROUNDS=${FAILOVER_ROUNDS:-$([ -n "${DCHAT_LONG:-}" ] && echo 10 || echo 3)}
DEAD_MS=3000
cluster_start 3 'reconnect_max_ms = 300;' 'post_timeout_ms = 10000;'

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# count_peer_events NODE EVENT PEER: how many EVENT lines about PEER
count_peer_events() { events "$1" "$2" | grep -c " peer=$3 "; }
texts() { sed -E 's/^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) root: //'; }
# median and max of the numbers on stdin
stats() { sort -n | awk '{ a[NR] = $1 } END { if (NR) printf "median %d ms, worst %d ms (%d runs)", a[int((NR + 1) / 2)], a[NR], NR }'; }

run ctl node1 status --json
like "$OUT" '"name":"node2","connected":true,"state":"alive","since":[0-9]+' "status --json of a fresh cluster: node2 alive, since N s"
run ctl node1 status
like "$OUT" $'peer: +node2 \\(connected, alive for [0-9]+s\\)' "status: 'peer: node2 (connected, alive for Ns)'"

# === 1. SIGKILL of the peer the others wait for ===============================================
: > "$T/detect.ms"; : > "$T/again.ms"
expected=()
for ((round = 1; round <= ROUNDS; round++)); do
    ok "round $round: everyone is linked" wait_connected 15
    d1=$(count_events node1 reply-deferred)
    run ctl node1 post --hold 20 "r$round node1 holds"
    is "$RC" 0 "round $round: node1 posts and holds the critical section" || diag "$ERR"
    expected+=("r$round node1 holds")
    for n in node2 node3; do
        ( ctl "$n" post "r$round $n waits" 2>"$T/err.$n.$round"; echo "$? $(now_ms)" > "$T/rc.$n.$round" ) &
        track_pid $!
        expected+=("r$round $n waits")
    done
    ok "round $round: node1 defers both requests" wait_event node1 reply-deferred $((d1 + 2)) 5
    dead2=$(count_peer_events node2 peer-dead node1)
    dead3=$(count_peer_events node3 peer-dead node1)
    susp2=$(count_peer_events node2 peer-suspect node1)
    t0=$(now_ms)
    node_kill node1
    _dead() { [ "$(count_peer_events node2 peer-dead node1)" -gt "$dead2" ]; }
    det=
    for ((i = 0; i < 500; i++)); do _dead && { det=$(( $(now_ms) - t0 )); break; }; sleep 0.02; done
    ok "round $round: node2 declares node1 dead (after ${det:-?} ms)" test -n "$det"
    _both() { [ -s "$T/rc.node2.$round" ] && [ -s "$T/rc.node3.$round" ]; }
    ok "round $round: the waiting posts end" wait_for -t 15 _both
    read -r rc2 t2 < "$T/rc.node2.$round"
    read -r rc3 t3 < "$T/rc.node3.$round"
    is "$rc2 $rc3" "0 0" "round $round: node2's and node3's posts succeed without node1" \
        || diag "$(cat "$T/err.node2.$round" "$T/err.node3.$round")"
    a2=$(( t2 - t0 )); a3=$(( t3 - t0 ))
    again=$(( a2 > a3 ? a2 : a3 ))
    [ -n "$det" ] && echo "$det" >> "$T/detect.ms"
    echo "$again" >> "$T/again.ms"
    note "round $round: kill -> node1 declared dead by node2 ${det:-?} ms; kill -> post done: node2 $a2 ms, node3 $a3 ms"
    cmp_ok "${det:-0}" -ge $(( DEAD_MS - 300 )) "round $round: not declared dead before dead_after_ms - one heartbeat (${det:-?} ms)"
    cmp_ok "$again" -le $(( DEAD_MS + 1500 )) "round $round: both post within dead_after_ms + 1.5 s ($again ms)"
    ok "round $round: node3 declared node1 dead too" test "$(count_peer_events node3 peer-dead node1)" -gt "$dead3"
    ok "round $round: node2 suspected node1 first" test "$(count_peer_events node2 peer-suspect node1)" -gt "$susp2"
    if [ "$round" = 1 ]; then
        like "$(events node2 peer-dead | grep ' peer=node1 ' | tail -n 1 | ev_field msg)" \
            'node1 silent for [0-9]+ ms: declared dead; no longer waited for' "the peer-dead message says how long node1 was silent"
        run ctl node2 status --json
        like "$OUT" '"name":"node1","connected":false,"state":"dead","since":[0-9]+' "status --json on node2: node1 dead, not connected, since N s"
        run ctl node2 status
        like "$OUT" $'peer: +node1 \\(not connected, dead for [0-9]+s\\)' "status on node2: 'peer: node1 (not connected, dead for Ns)'"
        # with node1 still dead, the two live peers go on by themselves
        run_timed ctl node3 post "r$round node3 while node1 is dead"
        is "$RC" 0 "node3 posts again while node1 stays dead, at once ($MS ms)" || diag "$ERR"
        cmp_ok "$MS" -lt 1000 "... without waiting for node1"
        expected+=("r$round node3 while node1 is dead")
    fi

    # node1 comes back: a new incarnation, announced to both
    r2=$(count_peer_events node2 peer-restarted node1); l2=$(count_peer_events node2 peer-alive node1)
    r3=$(count_peer_events node3 peer-restarted node1)
    node_start node1
    ok "round $round: node1 restarts and links up" wait_connected 15
    _rej() { [ "$(count_peer_events node2 peer-restarted node1)" -gt "$r2" ] &&
             [ "$(count_peer_events node2 peer-alive node1)" -gt "$l2" ] &&
             [ "$(count_peer_events node3 peer-restarted node1)" -gt "$r3" ]; }
    ok "round $round: node2 logs peer-restarted and peer-alive for node1, node3 peer-restarted" wait_for -t 5 _rej
done
note "time to detect a dead peer (kill -> peer-dead): $(stats < "$T/detect.ms")"
note "time until the others post again (kill -> both waiting posts stored): $(stats < "$T/again.ms")"
diag "figures: detect dead: $(stats < "$T/detect.ms"); others post again: $(stats < "$T/again.ms")"

# === 2. SIGKILL at a random moment while node1's posts pour in ==================================
ok "everyone is linked" wait_connected 15
N=4; M=40      # node1: N posters of up to M posts each, one after the other
stored0=$(count_events master post-stored)
for ((w = 1; w <= N; w++)); do
    (
        for ((i = 1; i <= M; i++)); do
            ctl node1 post "burst w$w $i" 2>/dev/null
            rc=$?
            echo "w$w $i $rc" >> "$T/burst.rc"
            [ $rc = 0 ] || break
        done
        echo "w$w" >> "$T/burst.end"
    ) &
    track_pid $!
done
sides=()
# node2 and node3 compete meanwhile, so node1 goes in and out of the critical section
for n in node2 node3; do
    ( for ((i = 1; i <= 10; i++)); do ctl "$n" post "$n side $i" 2>>"$T/side.err" || echo "$n side $i failed" >> "$T/side.err"; done ) &
    track_pid $!; sides+=($!)
    for ((i = 1; i <= 10; i++)); do expected+=("$n side $i"); done
done
want=$(( stored0 + 20 + RANDOM % 40 ))
_some() { [ "$(count_events master post-stored)" -ge "$want" ]; }
wait_for -t 20 _some
sleep "0.0$(( RANDOM % 10 ))"
node_kill node1
for p in "${sides[@]}"; do wait "$p"; done
_all_ended() { [ "$(wc -l < "$T/burst.end" 2>/dev/null)" = "$N" ]; }
ok "node1's posters all ended (with its dchatd)" wait_for -t 10 _all_ended
acked=$(awk '$3 == 0 { print "burst " $1 " " $2 }' "$T/burst.rc" | sort)
nacked=$(printf '%s\n' "$acked" | grep -c .)
nfailed=$(awk '$3 != 0' "$T/burst.rc" | wc -l)
cmp_ok "$nfailed" -ge 1 "node1 was killed while its posters were posting ($nacked acknowledged, $nfailed failed with it)"
is "$(awk '$3 != 0 && $3 != 1' "$T/burst.rc")" "" "each post cut off by the kill ended with exit 1 (an error, not a hang)"
is "$(cat "$T/side.err" 2>/dev/null)" "" "node2's and node3's posts all succeed across node1's death"

run ctl node2 view
printf '%s\n' "$OUT" > "$T/view"
bad=$(grep -v -E '^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) root: [a-z0-9 ]+$' "$T/view" | head -3)
is "$bad" "" "every line of the log is whole"
texts < "$T/view" | sort > "$T/got"
is "$(uniq -d "$T/got")" "" "no post is stored twice"
is "$(comm -23 <(printf '%s\n' "$acked") "$T/got")" "" "every acknowledged burst post is in the log"
is "$(comm -23 <(printf '%s\n' "${expected[@]}" | sort) "$T/got")" "" "every post of the rounds and of node2, node3 is in the log"
unknown=$(grep -v -E '^burst w[0-9]+ [0-9]+$' "$T/got" | comm -23 - <(printf '%s\n' "${expected[@]}" | sort))
is "$unknown" "" "nothing else is in the log"
inlog=$(grep -c '^burst ' "$T/got")
cmp_ok "$(( inlog - nacked ))" -le "$nfailed" "the only burst posts in the log beyond the acknowledged ones are those cut off by the kill ($((inlog - nacked)) of $nfailed)"
note "burst posts in the log: $inlog ($nacked acknowledged, $((inlog - nacked)) stored but unacknowledged when node1 died)"

# the server's log is clean: a restart finds nothing to recover
node_stop master
node_start master
_srv() { ctl node2 status --json | grep -q '"server_connected":true' && ctl node3 status --json | grep -q '"server_connected":true'; }
ok "node2 and node3 link up to the restarted server (node1 still dead)" wait_for -t 15 _srv
is "$(count_events master log-recovered)" 0 "the server's log reopens without log-recovered"
run ctl node3 view
is "$OUT" "$(cat "$T/view")" "the view after the server's restart is the same"

# === 3. the rejoined peer competes normally: deferral both ways ===================================
node_start node1
ok "node1 rejoins" wait_connected 15
d1=$(count_peer_events node1 reply-deferred node2)
run ctl node1 post --hold 1 "node1 holds after rejoining"
is "$RC" 0 "node1 posts with --hold 1 after rejoining" || diag "$ERR"
run_timed ctl node2 post "node2 waits for the rejoined node1"
is "$RC" 0 "node2's post goes in after node1's hold ($MS ms)" || diag "$ERR"
ok "node1 deferred node2's request" test "$(count_peer_events node1 reply-deferred node2)" -gt "$d1"
d2=$(count_peer_events node2 reply-deferred node1)
run ctl node2 post --hold 1 "node2 holds"
is "$RC" 0 "node2 posts with --hold 1" || diag "$ERR"
run_timed ctl node1 post "node1 waits for node2"
is "$RC" 0 "the rejoined node1's post goes in after node2's hold ($MS ms)" || diag "$ERR"
cmp_ok "$MS" -ge 300 "... having waited"
ok "node2 deferred node1's request" test "$(count_peer_events node2 reply-deferred node1)" -gt "$d2"
run ctl node3 view -n 4
is "$(printf '%s\n' "$OUT" | texts | tr '\n' '|')" \
   "node1 holds after rejoining|node2 waits for the rejoined node1|node2 holds|node1 waits for node2|" "in that order"

# === 4. status: state and since ===================================================================
run ctl node2 status --json
like "$OUT" '"name":"node1","connected":true,"state":"alive","since":[0-9]+' "status --json on node2: node1 alive again"
since=$(printf '%s\n' "$OUT" | perl -MJSON::PP -e 'my $s = decode_json(join "", <STDIN>); print map { $_->{name} eq "node1" ? $_->{since} : () } @{$s->{peers}}')
sleep 1.2
run ctl node2 status --json
since2=$(printf '%s\n' "$OUT" | perl -MJSON::PP -e 'my $s = decode_json(join "", <STDIN>); print map { $_->{name} eq "node1" ? $_->{since} : () } @{$s->{peers}}')
cmp_ok "$since2" -gt "$since" "'since' counts up ($since s, then $since2 s)"
run ctl node3 status
like "$OUT" $'peer: +node1 \\(connected, alive for [0-9]+s\\)\npeer: +node2 \\(connected, alive for [0-9]+s\\)' "status on node3 lists node1 and node2 alive"

for n in master node1 node2 node3; do
    is "$(count_events $n 'protocol-error')" 0 "$n logged no protocol-error"
done
# A peer killed inside the critical section leaves a fence (its clock at entry) that the
# next peer, entering once it is declared dead, may not exceed: with Roucairol–Carvalho
# fences are clocks at entry and no message from the dead peer carried its clock.  The
# server then refuses that append and the peer retries it under a new request (fenced,
# never lost or doubled: checked above).  So a refusal is allowed, each one retried.
refused=$(count_events master append-refused)
retried=$(( $(count_events node1 post-retried) + $(count_events node2 post-retried) + $(count_events node3 post-retried) ))
cmp_ok "$retried" -ge "$refused" "every append the fence refused ($refused) was retried ($retried)"
[ "$refused" -gt 0 ] && note "appends refused by the fence after a kill inside the critical section: $refused"

done_testing
