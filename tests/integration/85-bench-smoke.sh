#!/usr/bin/env bash
# The benchmark in miniature, so that it cannot rot: tests/bench/dchat-bench with 2 peers
# x 2 posters on a real cluster (every post stored exactly once, the figures sane, the
# daemons' counters in step), then tests/bench/run-bench with tiny sizes, one server and
# a group of three (the CSV, JSON, table and plot appear, with a row per number of
# servers, a leader kill and a small log's catch-up).  Figures are printed, never
# compared with targets.
export DCHAT_TEST_TIMEOUT=${DCHAT_TEST_TIMEOUT:-480}
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
BENCH=$TOP/tests/bench/dchat-bench
[ -x "$BENCH" ] || bail_out "tests/bench/dchat-bench is missing: run make check"

cluster_start 2
EACH=40
run "$BENCH" -c 2 -n $EACH -t smoke -s "$(node_sock master)" -p "$(node_pid master)" -p "$(node_pid node1)" \
    -p "$(node_pid node2)" "$(node_sock node1)" "$(node_sock node2)"
is "$RC" 0 "dchat-bench 2 peers x 2 posters x $EACH posts exits 0"
note "figures: $OUT"
# field F of the JSON result
jf() { printf '%s\n' "$OUT" | perl -MJSON::PP -e 'my $r = decode_json(join "", <STDIN>); my $v = $r->{$ARGV[0]};
    print ref $v ? join(" ", @$v) : $v // "missing"' "$1"; }
TOTAL=$((2 * 2 * EACH))
is "$(jf posts)" $TOTAL "every post acknowledged"
is "$(jf errors)" 0 "no post failed"
is "$(jf server_posts)" $TOTAL "the server's counter: $TOTAL posts stored during the run"
ok "latency: 0 < median <= p99 <= max" perl -e 'exit !($ARGV[0] > 0 && $ARGV[0] <= $ARGV[1] && $ARGV[1] <= $ARGV[2])' \
    "$(jf lat_median_us)" "$(jf lat_p99_us)" "$(jf lat_max_us)"
ok "throughput > 0" perl -e 'exit !($ARGV[0] > 0)' "$(jf posts_per_s)"
ok "DME messages per entry <= 2(N-1) = 2" perl -e 'exit !($ARGV[0] >= 0 && $ARGV[0] <= 2)' "$(jf dme_msgs_per_entry)"
ok "posts per entry >= 1" perl -e 'exit !($ARGV[0] >= 1)' "$(jf posts_per_entry)"
ok "fdatasyncs per post in (0, 1]" perl -e 'exit !($ARGV[0] > 0 && $ARGV[0] <= 1)' "$(jf fdatasyncs_per_post)"
# CPU time comes in clock ticks (10 ms): a run this short may well show 0
like "$(jf cpu_ms_per_1000_posts)" '^[0-9]+(\.[0-9]+)?$' "CPU time per 1000 posts reported"
like "$(jf rss_peak_kib)" '^[1-9][0-9]* [1-9][0-9]* [1-9][0-9]*$' "a peak RSS for each of the 3 daemons"

# the log: each text exactly once, fences in order
ctl node1 view --json > "$T/view.json"
like "$(check_fences "$T/view.json")" "^ok $TOTAL entries$" "the log holds $TOTAL entries, fences strictly increasing"
missing=$(perl -MJSON::PP -e 'my %n; while (<STDIN>) { $n{decode_json($_)->{text}}++ }
    my @bad; for my $p (1, 2) { for my $c (1, 2) { for my $i (1 .. $ARGV[0]) {
        my $t = "smoke p$p c$c #$i"; push @bad, "$t x" . ($n{$t} // 0) if ($n{$t} // 0) != 1 } } }
    print scalar(@bad), " @bad[0 .. ($#bad < 4 ? $#bad : 4)]"' $EACH < "$T/view.json")
is "$missing" "0 " "every post of every poster stored exactly once"

# the counters as dchatctl shows them agree with the log
run ctl master status --json
is "$(printf '%s' "$OUT" | perl -MJSON::PP -e 'print decode_json(join "", <STDIN>)->{counters}{posts}')" $TOTAL \
    "status --json (server): counters.posts = $TOTAL"
sum=0
for n in node1 node2; do
    run ctl "$n" status --json
    c=$(printf '%s' "$OUT" | perl -MJSON::PP -e 'my $k = decode_json(join "", <STDIN>)->{counters};
        print "$k->{posts} $k->{cs_entries} $k->{requests_sent} $k->{replies_received}"')
    read -r posts entries rs rr <<< "$c"
    sum=$((sum + posts))
    ok "$n: cs_entries ($entries) between 1 and its posts ($posts)" test "$entries" -ge 1 -a "$entries" -le "$posts"
    ok "$n: replies received ($rr) <= requests sent ($rs)" test "$rr" -le "$rs"
done
is "$sum" $TOTAL "the peers' posts counters add up to $TOTAL"
run ctl node1 status
like "$OUT" $'\nposts: +[0-9]+ stored, [0-9]+ critical-section entries' "status (text) shows the counters"

# the whole script, tiny: one server, then three
RUN_TIMEOUT=400 run env BENCH_OUT="$T/out" BENCH_SERVERS="1 3" BENCH_POSTS=60 BENCH_SEQ_POSTS=20 BENCH_CTL_POSTS=5 \
    BENCH_POSTERS=2 BENCH_PEERS=3 BENCH_C_FOR_N=2 BENCH_KILLS=1 BENCH_BIG_LINES=2000 BENCH_CATCHUP_POSTS=400 \
    DCHAT_TEST_TIMEOUT=390 "$TOP/tests/bench/run-bench"
is "$RC" 0 "run-bench (tiny) exits 0" || diag "$ERR"
note "$OUT"
is "$(grep -c -E '"kind":"(seq|posters|ctl|peers)"' "$T/out/results.json")" 8 \
    "results.json: seq, posters, ctl, peers, for 1 server and for 3"
like "$(cat "$T/out/table.txt")" '1 server\(s\): RSS [1-9][0-9]* KiB at start \(empty log\), at most [1-9][0-9]* KiB with 85 entries' \
    "table.txt: the server's RSS at start and with the log of the 2-peer runs"
like "$(cat "$T/out/table.txt")" '3 server\(s\): RSS [1-9][0-9]* KiB at start \(empty log\), at most [1-9][0-9]* KiB with 85 entries' \
    "table.txt: ... and the group's"
like "$(cat "$T/out/table.txt")" 'sequential post latency, 3 servers against 1: [0-9]+ us / [0-9]+ us = [0-9.]+' \
    "table.txt: the sequential latency of 3 servers against 1"
like "$(cat "$T/out/table.txt")" 'leader kill -9 -> posts acknowledged again: median [0-9]+ ms, worst [0-9]+ ms over 1 kills \([0-9]+ ms\); [0-9]+ posts, 0 failed' \
    "table.txt: the failover, no post failed"
is "$(tail -n +2 "$T/out/failover.csv" | wc -l)" 1 "failover.csv: one kill"
like "$(cat "$T/out/table.txt")" '3 server\(s\) on a log of 2000 entries: RSS at rest [0-9]+ [0-9]+ [0-9]+ KiB; a follower [0-9]+ entries behind' \
    "table.txt: a log of 2000 entries on 3 servers, a follower's catch-up"
is "$(grep '"kind":"disk"' "$T/out/results.json" | grep -c '"fdatasync_median_us":[0-9]')" 2 \
    "results.json: the disk's fdatasync latency, before and after"
like "$(cat "$T/out/table.txt")" 'fdatasync of 800 bytes on this disk, before: median [0-9]+ us' "table.txt: with the disk's figures"
is "$(grep -c '^[a-z]' "$T/out/results.csv")" 12 "results.csv: a header and 11 rows"
like "$(cut -d, -f1-4 "$T/out/results.csv" | tr '\n' ' ')" \
    '^kind,servers,peers,posters seq,1,2,1 posters,1,2,2 ctl,1,2,1 peers,1,3,2 seq,3,2,1 posters,3,2,2 ctl,3,2,1 peers,3,3,2 algo,1,3,2 algo,1,3,2 algo,1,3,2 $' \
    "results.csv: the runs asked for (the algos part: one server, 3 peers, each algorithm)"
is "$(grep '^algo,' "$T/out/results.csv" | awk -F, '{ print $22 }' | tr '\n' ' ')" "ricart-agrawala central token " \
    "results.csv: the algorithm of each algo row"
like "$(cat "$T/out/table.txt")" $'dme_algorithm x N peers .*\nalgorithm +N=3\nricart-agrawala +[0-9]+ [0-9.]+/[0-9.]+ [0-9.]+\ncentral +[0-9]+ [0-9.]+/[0-9.]+ 3.00\ntoken +[0-9]+ [0-9.]+/[0-9.]+ [0-9.]+\n' \
    "table.txt: algorithm x N: posts/s, p50/p99, messages per entry (central: 3.00)"
like "$(cat "$T/out/table.txt")" "DME messages per entry within the bound of each algorithm" "table.txt: every run within its algorithm's bound"
if command -v gnuplot >/dev/null; then
    is "$(perl -e 'read STDIN, my $b, 4; print $b eq "\x89PNG" ? "PNG" : "not a PNG"' < "$T/out/bench.png")" PNG \
        "bench.png is a PNG"
else
    skip "bench.png" "no gnuplot"
fi
done_testing
