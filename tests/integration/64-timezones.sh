#!/usr/bin/env bash
# 64-timezones — any UTC offset the C library gives a TZ can be posted, and shown right
# (issue 11, item 17).  POSIX TZ offsets go to 24 hours (glibc: up to 24:59:59) and may
# have seconds; dchat used to refuse beyond 18 h at the daemon (the post failed with only
# "dchatd closed the connection") and dropped the seconds from view --json's `time`, so
# that it named another instant than `unix_time`.  For each zone: the post is stored,
# `view` shows the poster's local time, view --json has the offset in `utc_offset`, and
# its `time` (ISO 8601, with the offset's seconds when it has any) is the same instant as
# `unix_time`; `view --since` takes that `time` back; `view --local-time` shows the viewer's
# time instead, so posts made at once show one clock (issue 16).  An offset beyond what dchat can
# keep (a hand-made zone file, compiled with zic) is refused by dchatctl with a clear
# message, before anything is sent.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

cluster_start 2

# zone  expected utc_offset (s)
ZONES=("ABC-19 68400" "ABC+24 -86400" "ABC-5:30:15 19815" "ABC+3:00:07 -10807" "ABC-24:59:59 89999"
       "ABC+24:59:59 -89999" "UTC0 0" "Asia/Kolkata 19800")
for z in "${ZONES[@]}"; do
    set -- $z
    run env TZ="$1" "$DCHATCTL" -s "$(node_sock node1)" post "posted in $1"
    is "$RC/$ERR" "0/" "TZ=$1: the post is stored"
done
ok "node1 logged no protocol-error" test "$(count_events node1 protocol-error)" = 0

run ctl node2 view --json
json=$OUT
for z in "${ZONES[@]}"; do
    set -- $z
    line=$(printf '%s\n' "$json" | grep -F "\"text\":\"posted in $1\"")
    isnt "$line" "" "TZ=$1: view --json has the post"
    # utc_offset | time | unix_time, and the instant `time` names (its own offset applied)
    got=$(printf '%s\n' "$line" | perl -MJSON::PP -MTime::Local=timegm -ne '
        my $e = decode_json($_);
        my ($Y, $m, $d, $H, $M, $S, $sign, $oh, $om, $os) =
            $e->{time} =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)([+-])(\d\d):(\d\d)(?::(\d\d))?$/ or do { print "bad time $e->{time}"; exit };
        my $off = ($sign eq "-" ? -1 : 1) * ($oh * 3600 + $om * 60 + ($os // 0));
        my $instant = timegm($S, $M, $H, $d, $m - 1, $Y) - $off;
        print "$e->{utc_offset} ", ($instant == $e->{unix_time} ? "same" : "differs by " . ($instant - $e->{unix_time})), " $off";')
    is "$got" "$2 same $2" "TZ=$1: utc_offset $2, and \`time\` names the instant \`unix_time\` does, with that offset"
    if [ $(( $2 % 60 )) != 0 ]; then
        like "$(printf '%s\n' "$line" | perl -MJSON::PP -ne 'print decode_json($_)->{time}')" \
            ':[0-9]{2}[+-][0-9]{2}:[0-9]{2}:[0-9]{2}$' "TZ=$1: the offset in \`time\` has its seconds"
    fi
    # the plain view: the poster's local time, unix_time + utc_offset
    unix=$(printf '%s\n' "$line" | perl -MJSON::PP -ne 'print decode_json($_)->{unix_time}')
    want=$(TZ=UTC date -d "@$(( unix + $2 ))" '+%d %b %I:%M%p')
    ok "TZ=$1: view shows the poster's local time ($want)" grep -Fxq "$want root: posted in $1" <(ctl node2 view)
    # view --since takes view --json's time back: the view starts at (or before) this post
    iso=$(printf '%s\n' "$line" | perl -MJSON::PP -ne 'print decode_json($_)->{time}')
    run ctl node2 view --since "$iso"
    is "$RC" 0 "TZ=$1: view --since '$iso' (its \`time\`) works" || diag "$ERR"
    ok "... and shows the post" grep -Fq "root: posted in $1" <<<"$OUT"
    # view --local-time: the viewer's time instead (issue 16): the same instant, in TZ of the viewer
    want=$(TZ=Asia/Tokyo date -d "@$unix" '+%d %b %I:%M%p')
    ok "TZ=$1: view --local-time shows the viewer's time ($want in Asia/Tokyo)" \
        grep -Fxq "$want root: posted in $1" <(TZ=Asia/Tokyo ctl node2 view --local-time)
done
# posted within seconds from zones a day apart: with --local-time their times are one clock's
n_times=$(TZ=UTC0 ctl node2 view --local-time | grep 'root: posted in' | cut -c1-14 | sort -u | wc -l)
cmp_ok "$n_times" -le 2 "view --local-time: the posts from 8 zones show at most 2 distinct minutes ($n_times)"
n_poster=$(ctl node2 view | grep 'root: posted in' | cut -c1-14 | sort -u | wc -l)
cmp_ok "$n_poster" -ge 6 "... where the poster's times are all over the clock ($n_poster distinct)"

# --- beyond what dchat can keep: refused by dchatctl, clearly, and nothing sent --------------
if command -v zic >/dev/null; then
    mkdir -p "$T/zones"
    echo 'Zone Test/Far 26:00 - FAR' > "$T/zones/far.txt"
    zic -d "$T/zones" "$T/zones/far.txt"
    before=$(ctl node2 view | wc -l)
    run env TZ="$T/zones/Test/Far" "$DCHATCTL" -s "$(node_sock node1)" post "from too far"
    is "$RC" 1 "a zone file at +26:00: post exits 1"
    like "$ERR" "^dchatctl: cannot post: the time zone TZ=$T/zones/Test/Far has a UTC offset of \\+93600 s, beyond the 24:59:59 dchat can keep\$" \
        "... saying why, before anything is sent"
    is "$(ctl node2 view | wc -l)" "$before" "... and nothing is stored"
else
    skip "zic is missing" "a zone file beyond 24:59:59"
fi
for n in master node1 node2; do
    is "$(count_events "$n" protocol-error)" 0 "$n logged no protocol-error"
done
done_testing
