#!/usr/bin/env bash
# 83-catalog-fields — the catalog's texts name only fields their events carry: a run that
# makes as many events as a test can cheaply (contention, reloads good and bad, a refused
# client, a malformed frame, a peer frozen then thawed, a clean stop and restart, a post
# while the server is down; then contention under the token and under the central
# coordinator, whose queues log request-queued) into a private journal; then, for each
# event in it, every DCHAT_* field its catalog entry names (@FIELD@ or FIELD) is on every
# record of that event.  The few fields an event carries only sometimes are listed below (OPTIONAL), and
# their texts say when.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl journalctl setpriv
need_tool send-raw
CATALOG=$TOP/systemd/dchatd.catalog
need_journal --catalog "$CATALOG"
export DCHAT_LOG=both

# event:FIELD pairs that a record carries only when it applies (the text says when)
# post-failed: a post may fail before its critical-section request; protocol-error: a local
# client of the control socket is no node
# note-written: an unlocked write (note incr --unlocked) has no fence
OPTIONAL="post-failed:DCHAT_REQUEST_TS protocol-error:DCHAT_PEER note-written:DCHAT_FENCE note-written:DCHAT_FENCE_IDX"

FD_CONF=('heartbeat_ms = 100;' 'suspect_after_ms = 400;' 'dead_after_ms = 800;')
cluster_start 2 'post_timeout_ms = 3000;' "${FD_CONF[@]}"

# contention: request, reply (sent, deferred, received), critical section, post stored
ctl node1 post --hold 1 "first" & hp=$!; track_pid $hp
wait_event node1 cs-enter 1 10 || fail "node1 did not enter the critical section"
ctl node2 post "second" >/dev/null || fail "post on node2"
wait "$hp" || fail "post --hold on node1"

# the shared notes: a locked write and an unlocked one
ctl node1 note set topic "catalog fields" || fail "note set"
ctl node2 note incr --unlocked counter >/dev/null || fail "note incr --unlocked"

# reloads: one that works, one refused (a syntax error)
node_hup node1
wait_event node1 reloaded 1 5 || fail "no reloaded"
cp "$CONF" "$T/good.conf"
echo 'this is not a setting' >> "$CONF"
ctl node1 reload >/dev/null 2>&1
cp "$T/good.conf" "$CONF"
wait_event node1 reload-refused 1 5 || fail "no reload-refused"

# a client refused by dchatd itself (the socket's mode lets it in), a malformed frame
chmod 0666 "$(node_sock node1)"
setpriv --reuid=nobody --regid=nogroup --clear-groups "$DCHATCTL" -s "$(node_sock node1)" status >/dev/null 2>&1
printf '\377\377\377\377\377\377\377\377' | "$TESTLIB/send-raw" -t 2000 "$(node_sock node1)" >/dev/null 2>&1
wait_event node1 client-refused 1 5 || fail "no client-refused"
wait_event node1 protocol-error 1 5 || fail "no protocol-error"

# a peer frozen past dead_after_ms, then thawed: suspect, dead, alive (or restarted)
kill -STOP "$(node_pid node2)"
wait_event node1 peer-dead 1 10 || { kill -CONT "$(node_pid node2)"; fail "no peer-dead"; }
kill -CONT "$(node_pid node2)"
ctl node1 post "after the thaw" >/dev/null || diag "post after the thaw failed"

# a clean stop and a start: stopping, peer-left, peer-down, started, peer-up, peer-restarted
node_stop node2
node_start node2 || fail "node2 does not start again"
ctl node2 post "node2 is back" >/dev/null || diag "post on node2 failed"

# the server away: server-down, post-failed, then server-up
node_stop master
run ctl node1 post "while the server is down"
node_start master || fail "master does not start again"
wait_event node1 server-up 2 10 || diag "node1 did not log server-up again"
ctl node1 post "the server is back" >/dev/null || diag "post after the server's return failed"

for n in node1 node2 master; do node_stop $n; done

# the queues of the other algorithms (request-queued): a token holder's, the coordinator's
for algo in token central; do
    sed -i '/^dme_algorithm = /d' "$CONF"
    echo "dme_algorithm = \"$algo\";" >> "$CONF"
    for n in master node1 node2; do node_start $n || fail "$algo: $n does not start"; done
    wait_connected 15 || fail "$algo: the cluster does not link up"
    c1=$(count_events node1 cs-enter)
    ctl node1 post --hold 1 "$algo first" >/dev/null & hp=$!; track_pid $hp
    wait_event node1 cs-enter $((c1 + 1)) 10 || fail "$algo: node1 did not enter the critical section"
    ctl node2 post "$algo second" >/dev/null || fail "$algo: post on node2"
    wait "$hp" || fail "$algo: post --hold on node1"
    for n in node1 node2 master; do node_stop $n; done
done
journalctl --sync
journalctl -q -t dchatd -o json > "$T/all.json"

check=$(CATALOG=$CATALOG OPTIONAL=$OPTIONAL perl -MJSON::PP -e '
    # the catalog: event name -> fields its text names
    open my $c, "<", $ENV{CATALOG} or die;
    my (%named, $ev, $in);
    while (<$c>) {
        if (/^# ([a-z-]+)$/) { $ev = $1; $in = 0; next }
        if (/^-- [0-9a-f]{32}$/) { $in = 1; next }
        next unless $in && $ev;
        $named{$ev}{$1} = 1 while /(DCHAT_[A-Z_]+)/g;
    }
    my %opt = map { $_ => 1 } split /\s+/, $ENV{OPTIONAL};
    my (%seen, %has, @err);
    while (my $l = <STDIN>) {
        my $e = decode_json($l);
        my $name = $e->{DCHAT_EVENT} or next;
        $seen{$name}++;
        for my $f (keys %{ $named{$name} || {} }) {
            if (defined $e->{$f}) { $has{"$name:$f"}++ }
            elsif (!$opt{"$name:$f"}) { push @err, "$name without $f: $e->{MESSAGE}" }
        }
    }
    # an optional field must be on some record of the event, when it happened at all
    for my $p (keys %opt) {
        my ($name, $f) = split /:/, $p;
        push @err, "$p is listed as optional but the catalog text of $name does not name $f"
            unless $named{$name}{$f};
    }
    my %first; @err = grep { my ($k) = /^(\S+ without \S+)/; $k ? !$first{$k}++ : 1 } @err;
    print @err ? join("\n", @err) : "ok " . scalar(keys %seen) . " events: " . join(" ", sort keys %seen);
    print "\nnot made here: ", join(" ", grep { !$seen{$_} } sort keys %named), "\n";
' < "$T/all.json")
like "$check" '^ok ' "every DCHAT_* field a catalog text names is on every record of that event" || diag "$check"
diag "$(printf '%s\n' "$check" | tail -n 2)"
n=$(printf '%s\n' "$check" | sed -n -E 's/^ok ([0-9]+) events.*/\1/p')
cmp_ok "${n:-0}" -ge 20 "the run made at least 20 kinds of event (${n:-0})"
like "$(printf '%s\n' "$check" | head -n 1)" ' request-queued( |$)' "... request-queued among them (token and central)"
q=$(journalctl -q -t dchatd DCHAT_EVENT=request-queued -o json | perl -MJSON::PP -ne '
    my $e = decode_json($_); print "$e->{DCHAT_NODE}\n"' | sort -u | tr '\n' ' ')
is "$q" "master node1 " "request-queued logged by a token holder (node1) and the coordinator (master)"

done_testing
