#!/usr/bin/env bash
# 35-large-log — invariant 5 on a big log: a chat log of 6000 entries (about 12 MB,
# texts up to 4096 bytes) written beforehand in dchatd's record format (daemon/chatlog.c:
# "DCL1", body length, CRC-32C of the body, CRC-32C of the header, then the entry) is
# opened by the server; full views through a peer and on the server, and `view -n` at
# page boundaries, are complete and identical; posting goes on after the last entry.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

N=${LARGE_LOG_ENTRIES:-6000}

cluster_config 2
# The texts: entry i is "big-i-" followed by a filler whose length cycles 0..4000 bytes,
# so that records straddle every buffer boundary a reader might have.
perl -e '
    my ($n, $out, $texts) = @ARGV;
    my @t;
    for my $i (0 .. 255) {      # CRC-32C (Castagnoli), reflected
        my $c = $i;
        for (1 .. 8) { $c = $c & 1 ? ($c >> 1) ^ 0x82F63B78 : $c >> 1 }
        $t[$i] = $c;
    }
    sub crc { my $c = 0xffffffff; $c = $t[($c ^ $_) & 0xff] ^ ($c >> 8) for unpack "C*", $_[0]; $c ^ 0xffffffff }
    sub str { pack("n", length $_[0]) . $_[0] }
    open my $f, ">:raw", $out or die; open my $x, ">", $texts or die;
    my $time = 1795300000;
    for my $i (1 .. $n) {
        my $text = "big-$i-" . substr("abcdefghijklmnopqrstuvwxyz0123456789" x 120, 0, ($i * 97) % 4001);
        my $node = $i % 2 ? "node1" : "node2";
        my $body = pack("Q>Q>", $i, 2 * $i) . str($node) . pack("N", 0) . pack("Q>", int(($i + 1) / 2))
                 . pack("Q>N", $time + $i, 0) . str("root") . str($text);
        my $h = pack("NNN", 0x44434C31, length $body, crc($body));
        print $f $h, pack("N", crc($h)), $body;
        print $x "$text\n";
    }' "$N" "$(node_state master)/chat.log" "$T/texts"
note "chat.log: $(stat -c %s "$(node_state master)/chat.log") bytes, $N entries"

for n in "${NODES[@]}"; do node_start "$n" || bail_out "$n did not start"; done
ok "the cluster is linked" wait_connected 15
is "$(count_events master log-recovered)" 0 "the server takes the log as it is (no log-recovered)"
run ctl master status --json
like "$OUT" "\"last_seq\":$N," "the server's last seq is $N"

t0=$(date +%s%N)
ctl node1 view > "$T/view.node1"; rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$rc" 0 "a full view through node1 exits 0 (${ms} ms)"
sed 's/^.* root: //' "$T/view.node1" > "$T/got.node1"
ok "it has all $N entries, in order, each text intact" cmp -s "$T/texts" "$T/got.node1"
is "$(wc -l < "$T/view.node1")" "$N" "$N lines"
ctl master view > "$T/view.master"
ok "the server's own view is identical" cmp -s "$T/view.node1" "$T/view.master"

# concurrent full views while posts go on: each a prefix of the final log
ctl node2 view > "$T/view.c1" & v1=$!; track_pid $v1
ctl node1 view > "$T/view.c2" & v2=$!; track_pid $v2
for i in 1 2 3 4 5; do ctl node$(( i % 2 + 1 )) post "during the views $i" || fail "post during the views $i"; done
wait $v1; r1=$?; wait $v2; r2=$?
is "$r1/$r2" "0/0" "two full views while posting exit 0"
for f in view.c1 view.c2; do
    n=$(wc -l < "$T/$f")
    cmp_ok "$n" -ge "$N" "$f has at least the $N old entries ($n)"
done
ctl node1 view > "$T/view.final"
is "$(tail -n 5 "$T/view.final" | sed 's/^.* root: //' | tr '\n' '|')" \
    "during the views 1|during the views 2|during the views 3|during the views 4|during the views 5|" \
    "the new posts follow entry $N"
for f in view.c1 view.c2; do
    ok "$f is a prefix of the final log" cmp -s "$T/$f" <(head -n "$(wc -l < "$T/$f")" "$T/view.final")
done

# view -n around page boundaries (dchatctl pages by 256, the server by up to 512)
total=$((N + 5))
for k in 1 255 256 257 511 512 513 1000 $((total - 1)) $total $((total + 1)); do
    run ctl node2 view -n "$k"
    want=$(( k < total ? k : total ))
    if [ "$RC" = 0 ] && [ "$OUT" = "$(tail -n "$want" "$T/view.final")" ]; then
        pass "view -n $k: the last $want lines"
    else
        fail "view -n $k: the last $want lines" "  exit $RC, $(printf '%s\n' "$OUT" | wc -l) lines"
    fi
done

run ctl node1 view --json
is "$(printf '%s\n' "$OUT" | tail -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')" "$total" "view --json ends at seq $total"

done_testing
