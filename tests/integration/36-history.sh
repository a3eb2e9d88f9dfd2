#!/usr/bin/env bash
# 36-history — history that scales, and export.  On a 3000-entry log written beforehand
# (tests/lib/mklog, through daemon/chatlog.c) whose times go back and forth (node2's
# clock is 10 minutes behind): `view --since-seq` and `view --since TIME` (every form,
# checked against the definition: from the first entry whose time is >= TIME); the
# checkpoint chat.log.idx used at start (the log says so), after a clean stop and after
# SIGKILL; a corrupt and a mismatched checkpoint discarded with a warning, the log still
# right; `dchatd --archive`: seqs, fences and post ids go on in the new log; and
# `view --json` is valid JSON Lines (python3 json and perl JSON::PP) for every kind of text.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl python3
need_tool mklog

N=3000
cluster_config 2
STATE=$(node_state master)
LOG=$STATE/chat.log
IDX=$STATE/chat.log.idx
T0=$(( $(date +%s) - 40000 ))
run "$TESTLIB/mklog" -t "$T0" -s 10 -k 600 -l 40 "$STATE" "$N"
is "$RC/$OUT" "0/$N" "mklog wrote $N entries"
# entry SEQ's time, as mklog makes it: node2 (even seqs) is 600 s behind
etime() { echo $(( T0 + ($1 - 1) * 10 - ($1 % 2 == 0 ? 600 : 0) )); }
# the first seq whose time is >= $1 (the definition of --since), N+1 if none
first_since() {
    local s
    for ((s = 1; s <= N; s++)); do
        [ $(( T0 + (s - 1) * 10 - (s % 2 == 0 ? 600 : 0) )) -ge "$1" ] && { echo "$s"; return; }
    done
    echo $((N + 1))
}
seqs() { perl -MJSON::PP -ne 'print decode_json($_)->{seq}, "\n"'; }

for n in "${NODES[@]}"; do node_start "$n" || bail_out "$n did not start"; done
ok "the cluster is linked" wait_connected 15
like "$(grep -a 'chat log ' "$(node_log master)")" "$N records, seqs 1 to $N" "the server read the $N records"
ok "a checkpoint was written at start" test -s "$IDX"

# --- --since-seq -------------------------------------------------------------------------------------
run ctl node1 view --since-seq 2990 --json
is "$RC" 0 "view --since-seq 2990 exits 0"
is "$(printf '%s\n' "$OUT" | seqs | tr '\n' ' ')" "2990 2991 2992 2993 2994 2995 2996 2997 2998 2999 3000 " \
    "it shows seqs 2990 to 3000"
run ctl node2 view --since-seq 1
is "$(printf '%s\n' "$OUT" | wc -l)" "$N" "view --since-seq 1: all $N lines"
run ctl node1 view --since-seq $((N + 1))
is "$RC/$OUT" "0/" "view --since-seq past the end: nothing, exit 0"
run ctl node1 view --since-seq 0
is "$RC" 2 "view --since-seq 0: usage error (exit 2)"
like "$ERR" "since-seq needs a positive" "... saying why"

# --- --since TIME ------------------------------------------------------------------------------------
# times that fall between entries, on node2's late entries, before and after everything
for s in 2 3 257 1000 1001 1500 2999; do
    t=$(etime "$s")
    want=$(first_since "$t")
    run ctl node1 view --since "@$t" --json
    got=$(printf '%s\n' "$OUT" | seqs)
    if [ "$RC" = 0 ] && [ "$(printf '%s\n' "$got" | head -n 1)" = "$want" ] && \
       [ "$(printf '%s\n' "$got" | wc -l)" = $((N - want + 1)) ] && [ "$(printf '%s\n' "$got" | tail -n 1)" = "$N" ]; then
        pass "view --since @TIME of seq $s: from seq $want (the first at or after that time) to the end"
    else
        fail "view --since @TIME of seq $s: from seq $want to the end" "  exit $RC, first $(printf '%s\n' "$got" | head -n 1), $(printf '%s\n' "$got" | wc -l) lines"
    fi
done
run ctl master view --since "@$(etime 1500)"
is "$OUT" "$(ctl node1 view --since "@$(etime 1500)")" "view --since on the server's own socket: the same"
run ctl node1 view --since "@$((T0 - 100000))"
is "$(printf '%s\n' "$OUT" | wc -l)" "$N" "view --since before everything: all $N lines"
run ctl node1 view --since "@$(( $(etime $((N - 1))) + 1 ))"   # the latest entry is node1's $((N - 1))
is "$RC/$OUT" "0/" "view --since after everything: nothing, exit 0"
t=$(etime 1201)
iso=$(date -d "@$t" '+%Y-%m-%d %H:%M:%S')
run ctl node2 view --since "$iso"
is "$OUT" "$(ctl node2 view --since "@$t")" "view --since '$iso' (local time) = --since @$t"
iso=$(TZ=UTC date -d "@$t" '+%Y-%m-%dT%H:%M:%SZ')
run ctl node2 view --since "$iso"
is "$OUT" "$(ctl node2 view --since "@$t")" "view --since $iso (UTC) = --since @$t"
before=$(date +%s)
run ctl node1 view --since 5h --json
after=$(date +%s)
first=$(printf '%s\n' "$OUT" | seqs | head -n 1)
lo=$(first_since $((before - 18000))); hi=$(first_since $((after - 18000)))
if [ "$RC" = 0 ] && [ -n "$first" ] && [ "$first" -ge "$lo" ] && [ "$first" -le "$hi" ] && [ "$first" -le "$N" ]; then
    pass "view --since 5h starts at seq $first (the first entry of the last five hours)"
else
    fail "view --since 5h starts at the first entry of the last five hours" "  exit $RC, first '$first', want $lo..$hi"
fi
run ctl node1 view --since "next tuesday"
is "$RC" 2 "view --since with a bad time: usage error (exit 2)"
like "$ERR" "--since needs a time such as" "... with the forms it takes"
run ctl node1 view -n 5 --since 1h
is "$RC" 2 "view -n with --since: usage error"

# --- the checkpoint at start, after a clean stop and after SIGKILL ------------------------------------------
run ctl node1 post "after the generated ones"
is "$RC" 0 "a post goes on after the generated entries" || diag "$ERR"
node_stop master
is "${NODE_RC[master]}" 0 "the server stops cleanly"
node_start master
like "$(grep -a 'checkpoint used' "$(node_log master)" | tail -n 1)" "checkpoint used up to seq $((N + 1)), 0 records read after it" \
    "after a clean stop the start uses the checkpoint and reads nothing"
ok "peers reconnect" wait_connected 15
for i in 1 2 3 4 5; do ctl node$(( i % 2 + 1 )) post "before the crash $i" || fail "post $i before the crash"; done
ctl node1 view > "$T/before-crash"
node_kill master
node_start master
like "$(grep -a 'checkpoint used' "$(node_log master)" | tail -n 1)" "checkpoint used up to seq $((N + 1)), 5 records read after it" \
    "after SIGKILL the start uses the checkpoint and reads only the 5 records after it"
ok "peers reconnect" wait_connected 15
ctl node2 view > "$T/after-crash"
ok "the log after the crash is the log before it" cmp -s "$T/before-crash" "$T/after-crash"
is "$(wc -l < "$T/after-crash")" $((N + 6)) "$((N + 6)) lines"

# --- a corrupt checkpoint ---------------------------------------------------------------------------------
node_stop master
printf 'garbage' | dd of="$IDX" bs=1 seek=40 conv=notrunc status=none
node_start master
like "$(grep -a 'checkpoint .* discarded' "$(node_log master)" | tail -n 1)" "chat.log.idx discarded: checksum mismatch; read the whole log" \
    "a corrupt checkpoint is discarded with a warning"
like "$(grep -a 'chat log ' "$(node_log master)" | tail -n 1)" "$((N + 6)) records" "the whole log was read"
ok "peers reconnect" wait_connected 15
is "$(ctl node1 view)" "$(cat "$T/before-crash")" "the log is right"
node_stop master
node_start master
like "$(grep -a 'checkpoint used' "$(node_log master)" | tail -n 1)" "up to seq $((N + 6)), 0 records" \
    "a fresh checkpoint was written: the next start uses it"

# --- a mismatched checkpoint: the log lost its last 10 bytes after it was written -----------------------------------
node_stop master
truncate -s -10 "$LOG"
rec0=$(count_events master log-recovered)
node_start master
like "$(grep -a 'checkpoint .* discarded' "$(node_log master)" | tail -n 1)" "it covers more than the log holds" \
    "a checkpoint covering more than the log is discarded with a warning"
is "$(count_events master log-recovered)" $((rec0 + 1)) "the torn record is cut (log-recovered)"
ok "peers reconnect" wait_connected 15
is "$(ctl node1 view)" "$(head -n $((N + 5)) "$T/before-crash")" "the log is right: all but the torn last record"
run ctl node1 post "after the torn one"
is "$RC" 0 "posting goes on" || diag "$ERR"
ctl node1 view --json > "$T/full.json"
is "$(check_fences "$T/full.json")" "ok $((N + 6)) entries" "seqs 1..$((N + 6)) without a gap, fences increasing"

# --- JSON Lines for every kind of text ---------------------------------------------------------------------
texts=('say "hi" and \"escaped\"' 'back\slash\\ and \\\\ \n not a newline' 'tab-free but /slashes/ and <html> & {json: [1]}'
       'accents: é à ü ñ ç — “quotes” ‘single’' 'CJK: 中文 日本語 한국어' 'emoji: 😀 🎉 👍🏽 (astral plane)'
       "no-break space: [$(printf '\xc2\xa0')], combining: [e$(printf '\xcc\x81')]"
       "zero-width: [$(printf '\xe2\x80\x8b')] and BOM [$(printf '\xef\xbb\xbf')]" "'single' \$HOME \`cmd\` %s %n"
       'RTL: שלום مرحبا' '   leading and trailing spaces   ')
for t in "${texts[@]}"; do ctl node2 post -- "$t" || fail "post -- '$t'"; done
printf '%s\n' "${texts[@]}" > "$T/texts"
ctl node1 view --json > "$T/all.json"
run python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    assert line.endswith("\n"), "line %d has no newline" % (n + 1)
    e = json.loads(line)
    assert {"seq","lamport","node","fence_idx","post_id","time","unix_time","utc_offset","author","text"} <= set(e), sorted(e)
    n += 1
print(n)' "$T/all.json"
is "$RC/$OUT" "0/$((N + 6 + ${#texts[@]}))" "python3 json parses every line of view --json ($((N + 6 + ${#texts[@]})) lines)"
[ "$RC" = 0 ] || diag "$ERR"
run python3 -c '
import json, sys
got = [json.loads(l)["text"] for l in open(sys.argv[1], encoding="utf-8")][-int(sys.argv[3]):]
want = open(sys.argv[2], encoding="utf-8").read().split("\n")[:-1]
for g, w in zip(got, want):
    if g != w: print("got %r want %r" % (g, w))' "$T/all.json" "$T/texts" "${#texts[@]}"
is "$RC/$OUT" "0/" "every tricky text comes back exactly (quotes, backslashes, unicode)"
run perl -MJSON::PP -e 'my $j = JSON::PP->new->utf8; my $n = 0; while (<STDIN>) { $j->decode($_); $n++ } print $n' < "$T/all.json"
is "$RC/$OUT" "0/$((N + 6 + ${#texts[@]}))" "perl JSON::PP parses every line too"

# --- archive and go on --------------------------------------------------------------------------------------
last=$(tail -n 1 "$T/all.json")
last_seq=$(printf '%s' "$last" | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n master --archive
is "$RC" 1 "dchatd --archive while the server runs: refused"
like "$ERR" "dchatd is running" "... saying so"
node_stop master
run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n node1 --archive
is "$RC" 1 "dchatd --archive on a peer: refused"
run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n master --archive
is "$RC" 0 "dchatd --archive with the server stopped" || diag "$ERR"
like "$OUT" "archived seqs 1 to $last_seq as .*/chat.log.1-$last_seq; the new chat.log goes on at seq $((last_seq + 1))" \
    "it says what it did"
ok "the old log is chat.log.1-$last_seq" test -s "$STATE/chat.log.1-$last_seq"
ok "the new chat.log is small (just the start record)" test "$(stat -c %s "$LOG")" -lt 1000
node_start master
ok "peers reconnect" wait_connected 15
like "$(grep -a 'chat log ' "$(node_log master)" | tail -n 1)" "0 records, seqs $((last_seq + 1)) to $last_seq" \
    "the server starts on the new log, seqs going on at $((last_seq + 1))"
run ctl node1 view
is "$RC/$OUT" "0/" "a view of the new log is empty"
for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "new log $i" || fail "post new log $i"; done
ctl node2 view --json > "$T/new.json"
is "$(seqs < "$T/new.json" | tr '\n' ' ')" "$((last_seq + 1)) $((last_seq + 2)) $((last_seq + 3)) " \
    "the new posts are seqs $((last_seq + 1))..$((last_seq + 3))"
run perl -MJSON::PP -e '
    my @e = map { decode_json($_) } <STDIN>;
    my %last;
    for my $i (0 .. $#e) {
        my ($a, $b) = ($i ? $e[$i - 1] : undef, $e[$i]);
        print "seq $b->{seq}: seq does not follow\n" if $a && $b->{seq} != $a->{seq} + 1;
        print "seq $b->{seq}: fence not greater\n" if $a &&
            ($b->{lamport} <=> $a->{lamport} || $b->{node} cmp $a->{node} || $b->{fence_idx} <=> $a->{fence_idx}) <= 0;
        print "seq $b->{seq}: post id $b->{post_id} of $b->{node} not new\n" if $b->{post_id} <= ($last{$b->{node}} // 0);
        $last{$b->{node}} = $b->{post_id};
    }' < <(grep -h . "$T/all.json" "$T/new.json")
is "$RC/$OUT" "0/" "seqs, fences and each node's post ids go on across the archive"
run ctl node1 view -n 2 --json
is "$(printf '%s\n' "$OUT" | seqs | tr '\n' ' ')" "$((last_seq + 2)) $((last_seq + 3)) " "view -n 2 on the new log"
run ctl node1 view --since-seq 1 --json
is "$(printf '%s\n' "$OUT" | seqs | head -n 1)" "$((last_seq + 1))" "view --since-seq 1 starts at the new log's first seq"
run ctl node1 view --since "@$T0"
is "$(printf '%s\n' "$OUT" | wc -l)" 3 "view --since a time in the archived part: the whole new log"
node_stop master
node_start master
like "$(grep -a 'checkpoint used' "$(node_log master)" | tail -n 1)" "up to seq $((last_seq + 3)), 0 records" \
    "the new log gets its own checkpoint"
is "$(grep -a -c 'discarded' "$(node_log master)")" 2 "no other checkpoint was discarded (only the two above)"

done_testing
