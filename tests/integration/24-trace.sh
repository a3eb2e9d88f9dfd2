#!/usr/bin/env bash
# 24-trace — dchatctl trace on a real run: the assignment's contention case (node1
# holds the critical section with post --hold, node2 posts meanwhile) on 3 peers with
# plain Ricart–Agrawala, its trace gathered from the rings of all three peers by a
# third one, and checked from the JSON form: node1's deferral of node2's request, the
# deferred REPLY sent at node1's exit and received by node2, the two critical sections
# one after the other in the causal order (vector clocks), the posts stored inside them;
# --check; the ShiViz form parsed back against the regex it ships (tests/lib/shiviz-check);
# SVG, PNG and PDF in the three orders, well-formed (file, xmllint); --post; the
# events and their vector clocks in a journal export read back with --from (and in
# test-sim's trace); status shows the ring; explain without journald; and bad input:
# a window with no events, a file that is no journal export, an export of another
# cluster, a node that does not answer (drawn with what came, named), a server asked.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl journalctl file xmllint
need_journal
export DCHAT_LOG=both

cluster_start 3 'reuse_permissions = false;' 'connect_timeout_ms = 1000;'

# --- the contention case ---------------------------------------------------------------------
ctl node1 post --hold 2 "I am going first" &
holder=$!
track_pid "$holder"
wait_event node1 cs-enter 1 || fail "node1 did not enter"
ok "node2 posts while node1 holds the critical section" ctl node2 post "No, I am second"
wait_pid_exit "$holder" 20 || fail "post --hold did not end"
wait_event node2 post-stored 1

# --- gathered by node3 (which took no part), as JSON -------------------------------------------
run ctl node3 trace --format json -o "$T/t.json"
is "$RC" 0 "node3 gathers the trace of the cluster (JSON)"
is "$(head -n 1 "$T/t.json" | perl -MJSON::PP -ne 'print join(",", @{decode_json($_)->{nodes}})')" "node1,node2,node3" \
   "the first line names the three peers, in the config's order"
verdict=$(perl -MJSON::PP -e '
    my (@e, %by);
    while (<>) { my $x = decode_json($_); next unless $x->{event}; push @e, $x; $by{"$x->{node}/$x->{no}"} = $x }
    # each node saw its own events: events of all three
    my %nodes = map { $_->{node} => 1 } @e;
    print "nodes ", join(",", sort keys %nodes), "\n";
    my ($req) = grep { $_->{node} eq "node2" && $_->{event} eq "request-sent" && $_->{peer} eq "node1" } @e;
    my ($def) = grep { $_->{node} eq "node1" && $_->{event} eq "reply-deferred" && $_->{peer} eq "node2" } @e;
    print "deferral ", ($def && $req && $def->{request_ts} == $req->{request_ts} ? "of node2s request" : "missing"), "\n";
    # the request arrow: node2 request-sent -> node1 request-received
    print "request arrow ", ($req && $req->{match} && $req->{match}{node} eq "node1" ? "to node1" : "missing"), "\n";
    # the deferred reply: sent by node1 at its exit, matched to node2 receive
    my ($rep) = grep { $_->{node} eq "node1" && $_->{event} eq "reply-sent" && $_->{peer} eq "node2" && $_->{deferred} } @e;
    print "deferred reply ", ($rep && $rep->{match} && $rep->{match}{node} eq "node2" && $rep->{match}{event} eq "reply-received"
                             && $rep->{request_ts} == $def->{request_ts} ? "to node2" : "missing"), "\n";
    # the critical sections: node1 exit happened before node2 enter (vector clocks), not the other way
    my ($x1) = grep { $_->{node} eq "node1" && $_->{event} eq "cs-exit" } @e;
    my ($n2) = grep { $_->{node} eq "node2" && $_->{event} eq "cs-enter" } @e;
    my ($n1) = grep { $_->{node} eq "node1" && $_->{event} eq "cs-enter" } @e;
    sub vle { my ($a, $b) = @_; for (keys %$a) { return 0 if $a->{$_} > $b->{$_} } 1 }
    print "sections ", ($x1 && $n2 && vle($x1->{vclock}, $n2->{vclock}) && !vle($n2->{vclock}, $n1->{vclock}) ? "in order" : "overlap"), "\n";
    # the deferral before node1 exit, the reply after it (node1 own order)
    print "exit order ", ($def->{no} < $x1->{no} && $x1->{no} < $rep->{no} ? "deferral, exit, reply" : "wrong"), "\n";
    # each post stored inside its own section
    my ($p1) = grep { $_->{node} eq "node1" && $_->{event} eq "post-stored" } @e;
    my ($p2) = grep { $_->{node} eq "node2" && $_->{event} eq "post-stored" } @e;
    my ($x2) = grep { $_->{node} eq "node2" && $_->{event} eq "cs-exit" } @e;
    print "posts ", ($p1 && $p2 && $x2 && $n1->{no} < $p1->{no} && $p1->{no} < $x1->{no} && $n2->{no} < $p2->{no}
                     && $p2->{no} < $x2->{no} && $p2->{seq} == $p1->{seq} + 1 ? "inside" : "wrong"), "\n";
' "$T/t.json")
like "$verdict" "nodes node1,node2,node3" "events of all three peers"
like "$verdict" "deferral of node2s request" "node1 deferred node2's request"
like "$verdict" "request arrow to node1" "node2's REQUEST matched to node1's receive"
like "$verdict" "deferred reply to node2" "the deferred REPLY: sent by node1, received by node2, marked deferred"
like "$verdict" "sections in order" "node1's cs-exit happened before node2's cs-enter (vector clocks): no overlap"
like "$verdict" "exit order deferral, exit, reply" "node1 logs the deferral, then its exit, then the reply"
like "$verdict" "posts inside" "each post-stored logged inside its critical section (before its cs-exit), seqs in order"

# --- the lines a student reads ------------------------------------------------------------------
like "$(events node1 reply-deferred | tail -n 1 | ev_field msg)" \
    "^REPLY to node2 for request \\([0-9]+, node2\\) deferred: this node is in the critical section \\(its request \\([0-9]+, node1\\)\\)$" \
    "reply-deferred names the requests as (timestamp, node) pairs"
ps=$(events node1 post-stored | tail -n 1)
like "$ps" " fence=[0-9]+ fence_idx=0 seq=[0-9]+ " "post-stored carries its fence as fence= and fence_idx="
unlike "$ps" "request_ts=" "... not as request_ts="
ok "every line of node1's stderr starts with its time (µs) and its number, 1, 2, 3 ..." perl -ne '
    /^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d no=(\d+) (event|level)=/ or die "bad line: $_";
    $1 == $. or die "line $. has no=$1\n"' "$(node_log node1)"

run ctl node2 trace --check
is "$RC" 0 "trace --check passes"
like "$OUT" "^ok: [0-9]+ critical section" "... and says what it checked"
run ctl node2 trace --check --algorithm token
is "$RC" 0 "trace --check --algorithm token: the token's rules excuse more, so it passes too"
run ctl node2 trace --check --algorithm tokens
is "$RC" 2 "trace --algorithm tokens: exit 2"
like "$ERR" "trace --algorithm is ricart-agrawala, central or token, not 'tokens'" "... saying what it takes"

# --- ShiViz --------------------------------------------------------------------------------
run ctl node1 trace --format shiviz -o "$T/run.shiviz"
is "$RC" 0 "trace --format shiviz"
run "$TESTLIB/shiviz-check" "$T/run.shiviz"
is "$RC" 0 "the ShiViz file parses with its own regex, each host's clock counting 1, 2, 3 ($OUT)"

# --- pictures ------------------------------------------------------------------------------
export DCHAT_DRAW=${DCHAT_DRAW:-$(dirname "$DCHATCTL")/dchat-draw}
[ -x "$DCHAT_DRAW" ] || DCHAT_DRAW=$TOP/dchat-draw
for order in vector lamport physical; do
    run ctl node3 trace --order "$order" -o "$T/run-$order.svg"
    is "$RC" 0 "an SVG, $order order"
    run xmllint --noout "$T/run-$order.svg"
    is "$RC" 0 "... well-formed XML"
done
like "$(file -b "$T/run-vector.svg")" "SVG" "file(1) says SVG"
grep -q 'node2' "$T/run-vector.svg" 2>/dev/null || grep -q '<path' "$T/run-vector.svg"
ok "the SVG draws something" test "$(stat -c %s "$T/run-vector.svg")" -gt 10000
run ctl node3 trace -o "$T/run.png"
is "$RC" 0 "a PNG"
like "$(file -b "$T/run.png")" "^PNG image data, [0-9]+ x [0-9]+" "file(1) says PNG ($(file -b "$T/run.png"))"
run ctl node3 trace -o "$T/run.pdf"
like "$RC/$(file -b "$T/run.pdf")" "^0/PDF document" "a PDF"

# --- one post, and a window --------------------------------------------------------------------
seq2=$(ctl node2 view --json | tail -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
run ctl node3 trace --post "$seq2" --format json
is "$RC" 0 "--post $seq2 (node2's post)"
like "$(printf '%s\n' "$OUT" | grep -c '"event":"reply-deferred"')" "^[1-9]" "... shows the deferral it waited for"
unlike "$OUT" '"event":"peer-up"' "... and not what came long before"
run ctl node1 trace --since @1 --until @2
is "$RC" 1 "a window with no events fails"
like "$ERR" "no events in the trace window" "... and says so"

# --- status, explain ---------------------------------------------------------------------------
like "$(ctl node1 status)" "trace: +[0-9]+ of 10000 events kept, [0-9.]+ KiB" "status shows the ring and its memory"
like "$(ctl node1 status --json)" '"trace":\{"events":[0-9]+,"capacity":10000,"bytes":[0-9]+\}' "... and status --json"
line=$(events node1 reply-deferred | tail -n 1)
run "$DCHATCTL" explain "$line"
is "$RC" 0 "explain takes an event's stderr line"
like "$OUT" "node1 .*node2" "... and puts its values in the catalog's text"
unlike "$OUT" "@DCHAT_" "... no placeholder left"
run "$DCHATCTL" explain no-such-event
is "$RC" 1 "explain of an unknown event fails"

# --- a journal export, read back -------------------------------------------------------------
journalctl --sync
journalctl -q -t dchatd -o json > "$T/journal.json"
run ctl node1 trace --from "$T/journal.json" --format json
is "$RC" 0 "trace --from a journal export"
like "$(printf '%s\n' "$OUT" | grep -c '"deferred":true')" "^[1-9]" "... the deferred reply in it too (DCHAT_VCLOCK, DCHAT_SEND_VT)"
run ctl node1 trace --from "$T/journal.json" --check
is "$RC" 0 "... and it passes --check"
is "$(perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{DCHAT_FENCE}/", exists $e->{DCHAT_REQUEST_TS} ? "ts" : "-", "\n"
    if ($e->{DCHAT_EVENT} // "") eq "post-stored" && $e->{DCHAT_NODE} eq "node1"' "$T/journal.json" | sort -u | head -n 1)" \
   "$(events node1 post-stored | head -n 1 | ev_field fence)/-" "the journal's post-stored has DCHAT_FENCE, and no DCHAT_REQUEST_TS"

# --- bad input ---------------------------------------------------------------------------------
printf 'hello\nworld\n' > "$T/notjson"
run ctl node1 trace --from "$T/notjson"
is "$RC" 1 "a file that is not a journal export is refused"
like "$ERR" "notjson:1: not a journal export" "... saying where and what"
sed 's/node1/nodeX/g; s/node2/nodeY/g' "$T/t.json" > "$T/other.json"
run ctl node1 trace --from "$T/t.json" --from "$T/other.json"
is "$RC" 1 "an export of another cluster is refused"
like "$ERR" "another cluster" "... saying so"
journalctl -q -t sshd -o json > "$T/empty.json" 2>/dev/null || true
echo '{"__REALTIME_TIMESTAMP":"1","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"x"}' >> "$T/empty.json"
run ctl node1 trace --from "$T/empty.json"
like "$RC/$ERR" "^1/.*no dchatd protocol events" "a journal export without dchatd's events: said so"
run ctl master trace
like "$RC/$ERR" "^1/.*this dchatd is a server" "trace asked of the server: run it on a peer"

# a node that does not answer: drawn with what came, and named
kill -STOP "$(node_pid node3)"
run ctl node1 trace --format json -o "$T/missing.json"
kill -CONT "$(node_pid node3)"
is "$RC" 0 "node3 frozen: the trace is still made"
like "$ERR" "node3: no answer within 1000 ms" "... and names node3 and why"
like "$(grep '"missing":"node3"' "$T/missing.json")" '"why":"no answer within 1000 ms"' "... in the JSON too"
like "$(grep -c '"node":"node2"' "$T/missing.json")" "^[1-9]" "... with the others' events"
run "$DCHAT_DRAW" -o "$T/missing.svg" "$T/missing.json"
is "$RC" 0 "... and drawn"
grep -q "event(s) only" "$T/missing.svg" || grep -q "node3" "$T/missing.svg"
ok "... (an SVG that names it)" xmllint --noout "$T/missing.svg"

# --- test-sim's trace ---------------------------------------------------------------------------
if [ -x "$TOP/tests/unit/test-sim" ]; then
    run env DCHAT_SIM_SEED=7 DCHAT_SIM_JSON="$T/sim.json" "$TOP/tests/unit/test-sim"
    is "$RC" 0 "test-sim writes the trace of seed 7"
    run ctl node1 trace --from "$T/sim.json" --check
    like "$RC/$OUT" "^0/ok: " "... which trace --from reads and checks"
else
    skip "test-sim's trace" "tests/unit/test-sim is not built"
    skip "... trace --from" "tests/unit/test-sim is not built"
fi

for n in master node1 node2 node3; do
    is "$(count_events "$n" 'protocol-error|post-failed')" 0 "$n logged no protocol-error or post-failed"
done
done_testing
