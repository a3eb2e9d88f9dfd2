#!/usr/bin/env bash
# 30-stress — 2 peers x 4 concurrent posters x 100 posts.  Every post acknowledged and
# stored exactly once, views identical everywhere, fences strictly increasing with one
# contiguous run per entry into the critical section, each poster's posts in its order,
# and — from the journal, in the order journald received the events — never two peers
# in the critical section at once.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl journalctl
need_journal
export DCHAT_LOG=both

WORKERS=${STRESS_WORKERS:-4}
POSTS=${STRESS_POSTS:-100}
TOTAL=$(( 2 * WORKERS * POSTS ))

cluster_start 2

t0=$(date +%s)
pids=()
for n in node1 node2; do
    for ((w = 1; w <= WORKERS; w++)); do
        (
            for ((i = 1; i <= POSTS; i++)); do
                ctl "$n" post "$n-w$w-$i" 2>>"$T/fail.$n.$w" || echo "post $n-w$w-$i: exit $?" >>"$T/fail.$n.$w"
            done
        ) &
        pids+=($!); track_pid $!
    done
done
# views taken while the posts pour in: each must be a prefix of the final log
(
    for ((v = 1; v <= 40; v++)); do
        ctl node$(( v % 2 + 1 )) view > "$T/midview.$v" 2>&1 || echo "view $v: exit $?" >> "$T/midview.fail"
        sleep 0.05
    done
) &
viewer=$!; track_pid $viewer
for p in "${pids[@]}"; do wait "$p"; done
t1=$(date +%s)
wait $viewer
note "$TOTAL posts in $((t1 - t0)) s"

failures=$(cat "$T"/fail.* 2>/dev/null)
is "$failures" "" "all $TOTAL posts exited 0 with nothing on stderr"

run ctl node1 view
is "$RC" 0 "view on node1"
printf '%s\n' "$OUT" > "$T/view1"
is "$(wc -l < "$T/view1")" "$TOTAL" "the log has exactly $TOTAL lines"
for n in node1 node2; do
    for ((w = 1; w <= WORKERS; w++)); do
        for ((i = 1; i <= POSTS; i++)); do echo "$n-w$w-$i"; done
    done
done | sort > "$T/expected"
sed -E 's/^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) root: //' "$T/view1" | sort > "$T/got"
missing=$(comm -23 "$T/expected" "$T/got" | head -5)
extra=$(comm -13 "$T/expected" "$T/got" | head -5)
is "$missing" "" "no post is missing"
is "$extra" "" "nothing unexpected is in the log"
is "$(uniq -d "$T/got" | head -5)" "" "no post is stored twice"

run ctl node2 view
ok "node2's view is identical to node1's" cmp -s "$T/view1" <(printf '%s\n' "$OUT")
run ctl master view
ok "the server's view is identical to node1's" cmp -s "$T/view1" <(printf '%s\n' "$OUT")

is "$(cat "$T/midview.fail" 2>/dev/null)" "" "views taken during the posting all exit 0"
bad_views=$(for f in "$T"/midview.*; do
    [ "$f" = "$T/midview.fail" ] && continue
    n=$(wc -l < "$f")
    head -n "$n" "$T/view1" | cmp -s - "$f" || echo "$(basename "$f") ($n lines)"
done)
is "$bad_views" "" "every view taken during the posting is a prefix of the final log (no gap, no reordering)"
sizes=$(for f in "$T"/midview.[0-9]*; do wc -l < "$f"; done | sort -n | uniq | wc -l)
cmp_ok "$sizes" -gt 2 "those views saw the log at several different lengths ($sizes)"

# --- fences and order, from view --json --------------------------------------------------
run ctl node2 view --json
printf '%s\n' "$OUT" > "$T/json"
check=$(WORKERS=$WORKERS perl -MJSON::PP -e '
    my (@err, $prev, %seen_group, $group, $expect_idx, %last_post_id, %last_i);
    my ($n, $groups) = (0, 0);
    while (my $l = <STDIN>) {
        $n++;
        my $e = decode_json($l);
        push @err, "line $n: seq $e->{seq}" if $e->{seq} != $n;
        my $f = [$e->{lamport}, $e->{node}, $e->{fence_idx}];
        if ($prev) {
            my $c = $f->[0] <=> $prev->[0] || $f->[1] cmp $prev->[1] || $f->[2] <=> $prev->[2];
            push @err, "seq $n: fence @$f is not greater than @$prev" if $c <= 0;
        }
        my $g = "$e->{lamport}/$e->{node}";
        if (!defined $group || $g ne $group) {
            push @err, "seq $n: entry $g appears again after other entries" if $seen_group{$g}++;
            $group = $g; $expect_idx = 0; $groups++;
        }
        push @err, "seq $n: fence_idx $e->{fence_idx} in $g, expected $expect_idx" if $e->{fence_idx} != $expect_idx;
        $expect_idx++;
        push @err, "seq $n: post_id $e->{post_id} of $e->{node} not above $last_post_id{$e->{node}}"
            if defined $last_post_id{$e->{node}} && $e->{post_id} <= $last_post_id{$e->{node}};
        $last_post_id{$e->{node}} = $e->{post_id};
        if ($e->{text} =~ /^(node\d-w\d+)-(\d+)$/) {
            push @err, "seq $n: $e->{text} after $1-$last_i{$1}" if ($last_i{$1} // 0) != $2 - 1;
            $last_i{$1} = $2;
        }
        $prev = $f;
    }
    print @err ? join("\n", @err[0 .. ($#err < 9 ? $#err : 9)]) : "ok $n entries in $groups critical sections";
' < "$T/json")
like "$check" '^ok ' "fences strictly increase, each entry's posts are contiguous with fence_idx 0,1,..., post ids grow per node, each poster's posts are in its order" || diag "$check"
note "$check"

# --- the protocol, from the stderr events ------------------------------------------------------
proto=$(cat "$(node_log node1)" "$(node_log node2)" | perl -e '
    my (@err, %last, %sent, %recv, %replied, %got, %enter);
    while (<STDIN>) {
        next unless /^time=\S+ no=\d+ event=(\S+) node=(\S+)(?: peer=(\S+))?(?: lamport=(\d+))?(?: request_ts=(\d+))?/;
        my ($ev, $n, $peer, $lam, $ts) = ($1, $2, $3, $4, $5);
        next unless defined $lam;
        push @err, "$n: lamport went back from $last{$n} to $lam at $ev" if defined $last{$n} && $lam < $last{$n};
        $last{$n} = $lam;
        if ($ev eq "request-sent") {
            push @err, "$n: request-sent with request_ts $ts != lamport $lam" if $ts != $lam;
            $sent{"$n $ts"}++;
        }
        $recv{"$peer $ts"}++ if $ev eq "request-received";
        $replied{"$peer $ts"}++ if $ev eq "reply-sent";
        $got{"$n $ts"}++ if $ev eq "reply-received";
        $enter{"$n $ts"}++ if $ev eq "cs-enter";
    }
    for my $k (sort keys %sent) {
        push @err, "request $k sent $sent{$k} times" if $sent{$k} != 1;
        push @err, "request $k received " . ($recv{$k} // 0) . " times" if ($recv{$k} // 0) != 1;
        push @err, "request $k answered " . ($replied{$k} // 0) . " times" if ($replied{$k} // 0) != 1;
        push @err, "request $k: " . ($got{$k} // 0) . " replies received" if ($got{$k} // 0) != 1;
        push @err, "request $k: entered " . ($enter{$k} // 0) . " times" if ($enter{$k} // 0) != 1;
    }
    print @err ? join("\n", @err[0 .. ($#err < 9 ? $#err : 9)]) : "ok " . scalar(keys %sent) . " requests";
')
like "$proto" '^ok ' "each node's Lamport clock never goes back; every request is sent, received, answered and granted exactly once" || diag "$proto"
note "$proto"

# --- mutual exclusion, from the journal ---------------------------------------------------------
journalctl --sync
journalctl -q -t dchatd -o json --output-fields=DCHAT_EVENT,DCHAT_NODE,DCHAT_PEER,DCHAT_REQUEST_TS,MESSAGE_ID \
    > "$T/journal.json" 2>"$T/journal.err"
is "$?" 0 "journalctl -t dchatd -o json works"
mutex=$(perl -MJSON::PP -e '
    my (%inside, @err, %enter, $deferred, $max);
    while (my $l = <STDIN>) {
        my $e = decode_json($l);
        my ($ev, $node) = ($e->{DCHAT_EVENT} // "", $e->{DCHAT_NODE} // "");
        $deferred++ if $ev eq "reply-deferred";
        if ($ev eq "cs-enter") {
            my @others = grep { $_ ne $node } keys %inside;
            push @err, "$node entered (request $e->{DCHAT_REQUEST_TS}) while @others inside" if @others;
            push @err, "$node entered twice" if $inside{$node};
            $inside{$node} = 1; $enter{$node}++;
        } elsif ($ev eq "cs-exit") {
            push @err, "$node left without entering" unless $inside{$node};
            delete $inside{$node};
        }
    }
    if (@err) { print join("\n", @err[0 .. ($#err < 9 ? $#err : 9)]) }
    else { printf "ok node1 entered %d times, node2 %d times, %d replies deferred", $enter{node1}, $enter{node2}, $deferred }
' < "$T/journal.json")
like "$mutex" '^ok ' "never two peers in the critical section at once (journal order)" || diag "$mutex"
note "$mutex"
like "$mutex" 'node1 entered [1-9][0-9]* times, node2 [1-9][0-9]* times, [1-9][0-9]* replies deferred' \
    "both peers entered and replies were deferred (the check above was not vacuous)"
for ev in cs-enter cs-exit reply-deferred; do
    j=$(grep -c "\"DCHAT_EVENT\":\"$ev\"" "$T/journal.json")
    s=$(( $(count_events node1 $ev) + $(count_events node2 $ev) ))
    is "$j" "$s" "the journal has every $ev event that went to stderr ($s)"
done
is "$(grep '"DCHAT_EVENT":"post-stored"' "$T/journal.json" | grep -c '"DCHAT_NODE":"master"')" "$TOTAL" \
    "the server logged post-stored $TOTAL times in the journal"

for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused|post-failed')" 0 "$n logged no protocol-error, append-refused or post-failed"
done
is "$(grep -c -E '"DCHAT_EVENT":"(append-refused|protocol-error)"' "$T/journal.json")" 0 \
    "no append-refused or protocol-error in the journal"

done_testing
