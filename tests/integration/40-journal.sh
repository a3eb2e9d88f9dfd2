#!/usr/bin/env bash
# 40-journal — the events in a private journal: the DCHAT_* fields of reply-deferred
# during contention, the catalog text under `journalctl -x`, a MESSAGE_ID (the one the
# catalog gives) on every event of a normal run, and DCHAT_LOG.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl journalctl
CATALOG=$TOP/systemd/dchatd.catalog
need_journal --catalog "$CATALOG"
export DCHAT_LOG=both

# event name -> MESSAGE_ID, from the catalog ("# name" line, then "-- id")
declare -A ID
while read -r name id; do ID[$name]=$id; done < <(awk '/^# [a-z-]+$/ { n = $2 } /^-- [0-9a-f]+$/ { if (n) print n, $2; n = "" }' "$CATALOG")
# ... and as many as daemon/log.c sends
nev=$(grep -c '^ *\[EV_[A-Z_]*\] *= { "' "$TOP/daemon/log.c")
is "${#ID[@]}" "$nev" "the catalog names all $nev events of daemon/log.c"

cluster_start 2

# contention: node1 holds the critical section, node2 waits
ctl node1 post --hold 1.5 "first" || fail "post --hold on node1"
ctl node2 post "second" || fail "post on node2"
node_hup node1
wait_event node1 reloaded 1 5 || fail "node1 did not log reloaded"
journalctl --sync

# --- reply-deferred with all its fields ---------------------------------------------------
run journalctl -q -t dchatd DCHAT_EVENT=reply-deferred -o json
is "$RC" 0 "journalctl -t dchatd DCHAT_EVENT=reply-deferred -o json"
rd=$(printf '%s\n' "$OUT" | perl -MJSON::PP -ne '
    my $e = decode_json($_);
    print join("|", map { $e->{$_} // "-" } qw(SYSLOG_IDENTIFIER DCHAT_NODE DCHAT_PEER MESSAGE_ID)),
        "|", ($e->{DCHAT_LAMPORT} // "") =~ /^\d+$/ ? "lamport" : "nolamport",
        "|", $e->{DCHAT_REQUEST_TS} // "-", "\n"' | head -n 1)
req2=$(journalctl -q -t dchatd DCHAT_EVENT=request-sent DCHAT_NODE=node2 -o json | tail -n 1 |
    perl -MJSON::PP -ne 'print decode_json($_)->{DCHAT_REQUEST_TS}')
like "$req2" '^[0-9]+$' "node2's request-sent has DCHAT_REQUEST_TS"
is "$rd" "dchatd|node1|node2|099226ba8fca42669087a7adcb15b655|lamport|$req2" \
    "reply-deferred: SYSLOG_IDENTIFIER, DCHAT_NODE=node1, DCHAT_PEER=node2, MESSAGE_ID, DCHAT_LAMPORT, DCHAT_REQUEST_TS=node2's request"
lam=$(printf '%s\n' "$OUT" | head -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{DCHAT_LAMPORT}')
cmp_ok "${lam:-0}" -gt "${req2:-0}" "reply-deferred's DCHAT_LAMPORT ($lam) is past the request's timestamp ($req2)"
seq=$(journalctl -q -t dchatd DCHAT_EVENT=post-stored DCHAT_NODE=master -o json | perl -MJSON::PP -ne 'print decode_json($_)->{DCHAT_SEQ}, " "')
is "$seq" "1 2 " "the server's post-stored events carry DCHAT_SEQ 1 and 2"

# --- the catalog: journalctl -x explains -------------------------------------------------------
run journalctl -q -x -t dchatd DCHAT_EVENT=cs-enter DCHAT_NODE=node2
like "$OUT" "is now in the critical section" "journalctl -x shows the catalog text under cs-enter"
like "$OUT" "Subject: node2 entered the critical section \\(request $req2\\)" "the catalog subject has DCHAT_NODE and DCHAT_REQUEST_TS filled in"
run journalctl -q -x -t dchatd DCHAT_EVENT=reply-deferred
like "$OUT" "Subject: node1 deferred its reply to node2 \\(request $req2\\)" "journalctl -x explains reply-deferred with its fields"

# the man page's examples work
run journalctl -q -t dchatd -o verbose DCHAT_NODE=node1
like "$OUT" "DCHAT_EVENT=cs-enter" "journalctl -t dchatd -o verbose DCHAT_NODE=node1 shows node1's events"

# --- a whole normal run: stop everything, then every event has its catalog MESSAGE_ID -------
for n in master node2 node1; do
    node_stop $n
    is "${NODE_RC[$n]}" 0 "$n stops with status 0 on SIGTERM"
done
journalctl --sync
journalctl -q -t dchatd -o json > "$T/all.json"
ids=$(for k in "${!ID[@]}"; do echo "$k=${ID[$k]}"; done)
check=$(IDS=$ids perl -MJSON::PP -e '
    my %id = map {; split /=/, $_, 2 } split /\n/, $ENV{IDS};
    my (%seen, @err, $events);
    while (my $l = <STDIN>) {
        my $e = decode_json($l);
        push @err, "an entry without DCHAT_NODE: $e->{MESSAGE}" unless $e->{DCHAT_NODE};
        my $ev = $e->{DCHAT_EVENT} or next;
        $events++;
        $seen{$ev}++;
        if (!$e->{MESSAGE_ID}) { push @err, "$ev has no MESSAGE_ID" }
        elsif (!$id{$ev}) { push @err, "$ev is not in the catalog" }
        elsif ($e->{MESSAGE_ID} ne $id{$ev}) { push @err, "$ev has MESSAGE_ID $e->{MESSAGE_ID}, the catalog $id{$ev}" }
    }
    print @err ? join("\n", (sort keys %{{ map { $_ => 1 } @err }})[0 .. 9]) : "ok $events events: " . join(" ", sort keys %seen);
' < "$T/all.json")
like "$check" '^ok ' "every event has a MESSAGE_ID, the one the catalog gives its name" || diag "$check"
for ev in started peer-up server-up request-sent request-received reply-sent reply-deferred reply-received \
          cs-enter cs-exit post-stored reloaded stopping peer-down server-down; do
    like "$check" " $ev( |\$)" "the normal run logged $ev"
done
run journalctl --list-catalog
missing=$(for id in "${ID[@]}"; do printf '%s\n' "$OUT" | grep -q "^$id " || echo "$id"; done)
is "$missing" "" "every MESSAGE_ID of the catalog is in the catalog database"

# --- DCHAT_LOG=journal: events to the journal only ---------------------------------------------
: > "$(node_log node2)"
DCHAT_LOG=journal node_start node2 --no-wait
_started_in_journal() {
    journalctl --sync
    [ "$(journalctl -q -t dchatd DCHAT_EVENT=started DCHAT_NODE=node2 -o cat | wc -l)" -ge 2 ]
}
ok "DCHAT_LOG=journal: node2's started event is in the journal" wait_for -t 5 _started_in_journal
is "$(grep -c '^time=[^ ]* no=[0-9]* event=' "$(node_log node2)")" 0 "DCHAT_LOG=journal: no events on stderr"
node_stop node2

done_testing
