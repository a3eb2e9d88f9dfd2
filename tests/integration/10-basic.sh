#!/usr/bin/env bash
# 10-basic — post and view across a local cluster; the line format; the author from
# the socket's credentials; consistent concurrent views; dchatctl's options, errors
# and exit statuses.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd setpriv perl

LINE_RE='^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) '

# control_group: nogroup, the primary group of user nobody (tests/integration/55-access.sh
# has the rest of access control)
cluster_start 2 'control_group = "nogroup";'

# --- assignment test case 3: post on node1, view on node2 ---------------------------
before=$(date +'%d %b %I:%M%p')
run ctl node1 post "Checking timestamp format"
after=$(date +'%d %b %I:%M%p')
is "$RC" 0 "post on node1 exits 0"
is "$OUT$ERR" "" "post prints nothing"
run ctl node2 view
is "$RC" 0 "view on node2 exits 0"
like "$OUT" "${LINE_RE}root: Checking timestamp format\$" "node2 shows the post as 'DD Mon HH:MMAM root: text'"
when=${OUT:0:14}
if [ "$when" = "$before" ] || [ "$when" = "$after" ]; then
    pass "the time shown is the poster's local time now ($when)"
else
    fail "the time shown is the poster's local time now" "  shown '$when', now '$before'..'$after'"
fi

# several words are joined by single spaces; -- lets a text start with '-'
run ctl node1 post hello   big    world
is "$RC" 0 "post of several words"
run ctl node1 post -- -dash-first
is "$RC" 0 "post -- -dash-first"
run ctl node2 view -n 2
is "$(printf '%s\n' "$OUT" | wc -l)" 2 "view -n 2 gives two lines"
like "${OUT%%$'\n'*}" "${LINE_RE}root: hello big world\$" "words joined by single spaces"
like "${OUT#*$'\n'}" "${LINE_RE}root: -dash-first\$" "a text after -- may start with '-'"

# DCHAT_SOCKET is used without -s
run env DCHAT_SOCKET="$(node_sock node2)" "$DCHATCTL" view -n 1
like "$OUT" "root: -dash-first\$" "DCHAT_SOCKET names the socket when -s is absent"

# -s wins over DCHAT_SOCKET
run env DCHAT_SOCKET="$T/no-such.sock" "$DCHATCTL" -s "$(node_sock node1)" view -n 1
is "$RC" 0 "-s wins over DCHAT_SOCKET"

# --- the control socket: mode 0660, root and control_group only -----------------------
is "$(stat -c %a "$(node_sock node1)")" 660 "the control socket has mode 0660"
is "$(stat -c %G "$(node_sock node1)")" nogroup "the control socket belongs to control_group (nogroup)"
run ctl_as daemon node1 view
is "$RC" 1 "user daemon (not in group nogroup) cannot use it: exit 1"
like "$ERR" "^dchatctl: permission denied on $(node_sock node1): you are not in group nogroup \\(ask an admin: usermod -aG nogroup daemon, then log in again\\)\$" \
    "... with a clear 'permission denied' and what to do"

# --- the author is the caller's login name, from the socket's credentials -----------
run ctl_as nobody node1 post "posted by nobody"
is "$RC" 0 "post as user nobody (in group nogroup) exits 0" || diag "$ERR"
run ctl node2 view -n 1
like "$OUT" "${LINE_RE}nobody: posted by nobody\$" "the author is 'nobody', not the daemon's user"
run ctl_as nobody node1 view -n 1
like "$OUT" "nobody: posted by nobody\$" "nobody can view too"

# a uid without a passwd entry is named uidN
uid=$(( 40000 + RANDOM % 20000 ))
while getent passwd "$uid" >/dev/null; do uid=$((uid + 1)); done
run timeout 20 setpriv --reuid="$uid" --regid=nogroup --clear-groups "$DCHATCTL" -s "$(node_sock node1)" post "who am I"
is "$RC" 0 "post by uid $uid, which has no passwd entry" || diag "$ERR"
run ctl node2 view -n 1
like "$OUT" "${LINE_RE}uid$uid: who am I\$" "the author is 'uid$uid'"

# --- the poster's time zone is kept and shown, whatever the viewer's ------------------
run env TZ=Asia/Kolkata "$DCHATCTL" -s "$(node_sock node2)" post "from India"
is "$RC" 0 "post with TZ=Asia/Kolkata"
run env TZ=America/New_York "$DCHATCTL" -s "$(node_sock node1)" view -n 1 --json
utc_off=$(printf '%s\n' "$OUT" | perl -MJSON::PP -ne 'print decode_json($_)->{utc_offset}')
is "$utc_off" 19800 "view --json: utc_offset is the poster's (+05:30 = 19800)"
iso=$(printf '%s\n' "$OUT" | perl -MJSON::PP -ne 'print decode_json($_)->{time}')
like "$iso" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+05:30$' "view --json: time is ISO 8601 with the poster's offset"
run env TZ=America/New_York "$DCHATCTL" -s "$(node_sock node1)" view -n 1
want=$(TZ=Asia/Kolkata date -d "${iso:0:19}+05:30" +'%d %b %I:%M%p')
is "${OUT:0:14}" "$want" "a viewer in another zone sees the poster's local time"

# --- assignment test case 1: two views at the same time are identical -----------------
for i in $(seq 1 20); do ctl node$(( i % 2 + 1 )) post "line $i" || fail "post line $i"; done
ctl node1 view > "$T/v1" & p1=$!; track_pid $p1
ctl node2 view > "$T/v2" & p2=$!; track_pid $p2
wait $p1; r1=$?; wait $p2; r2=$?
is "$r1/$r2" "0/0" "two simultaneous views (node1, node2) exit 0"
ok "the two simultaneous views are identical" cmp -s "$T/v1" "$T/v2"
is "$(wc -l < "$T/v1")" 26 "the view has every post (26 lines)"
bad=$(grep -v -E "${LINE_RE}(root|nobody|uid[0-9]+): " "$T/v1" | head -3)
is "$bad" "" "every line has the 'DD Mon HH:MMAM author: text' format"
run ctl master view
is "$RC" 0 "view on the server's own socket works"
ok "the server's view is the same as the peers'" cmp -s "$T/v1" <(printf '%s\n' "$OUT")

# view -n: the last N, in order
run ctl node1 view -n 3
is "$OUT" "$(tail -n 3 "$T/v1")" "view -n 3 is the last three lines of the full view"
run ctl node1 view -n 1000
is "$OUT" "$(cat "$T/v1")" "view -n larger than the log gives the whole log"

# --- view --json -------------------------------------------------------------------------
run ctl node2 view --json
is "$RC" 0 "view --json exits 0"
check=$(printf '%s\n' "$OUT" | perl -MJSON::PP -e '
    my ($n, @err) = (0);
    while (my $l = <STDIN>) {
        $n++;
        my $e = eval { decode_json($l) } or do { push @err, "line $n: not JSON: $l"; next };
        for my $k (qw(seq lamport node fence_idx post_id time utc_offset author text)) {
            push @err, "line $n: no key $k" unless exists $e->{$k};
        }
        push @err, "line $n: seq $e->{seq}, expected $n" unless $e->{seq} == $n;
        push @err, "line $n: node $e->{node}" unless $e->{node} =~ /^node[12]$/;
        push @err, "line $n: lamport $e->{lamport}" unless $e->{lamport} =~ /^[1-9][0-9]*$/;
        push @err, "line $n: post_id $e->{post_id}" unless $e->{post_id} =~ /^[1-9][0-9]*$/;
    }
    print join("\n", @err) || "ok:$n";')
is "$check" "ok:26" "view --json: one valid object per entry, with all keys, seq 1..26"
text=$(printf '%s\n' "$OUT" | sed -n 2p | perl -MJSON::PP -ne 'my $e = decode_json($_); print "$e->{author}|$e->{text}|$e->{node}"')
is "$text" "root|hello big world|node1" "view --json: author, text and node of entry 2"

# --- status --------------------------------------------------------------------------------
run ctl node1 status
is "$RC" 0 "status exits 0"
like "$OUT" $'node: +node1\nrole: +peer\n' "status names the node and role"
like "$OUT" $'server: +master \\(connected\\)' "status shows the server connected"
like "$OUT" $'peer: +node2 \\(connected, alive for [0-9]+s\\)' "status shows node2 connected and alive"
like "$OUT" $'dme: +released' "status shows the DME state"
run ctl node1 status --json
st=$(printf '%s\n' "$OUT" | perl -MJSON::PP -e 'my $s = decode_json(join "", <STDIN>);
    print join ",", $s->{node}, $s->{role}, $s->{dme_state}, ($s->{server_connected} ? "up" : "down"),
        map({ "$_->{name}=" . ($_->{connected} ? 1 : 0) } @{$s->{peers}}), ($s->{lamport} > 0 ? "clock" : "noclock")')
is "$st" "node1,peer,released,up,node2=1,clock" "status --json (peer): node, role, dme_state, server, peers, lamport"
run ctl master status --json
st=$(printf '%s\n' "$OUT" | perl -MJSON::PP -e 'my $s = decode_json(join "", <STDIN>);
    print join ",", $s->{node}, $s->{role}, $s->{last_seq}, map { "$_->{name}=" . ($_->{connected} ? 1 : 0) } @{$s->{peers}}')
is "$st" "master,server,26,node1=1,node2=1" "status --json (server): last_seq 26, both peers connected"
# one server: no group in the status; verify reads its log through
unlike "$(ctl node1 status)" $'\ngroup:' "status with one server shows no group"
unlike "$(ctl node1 status --json)" '"servers":' "status --json with one server has no servers"
for n in node1 master; do
    run ctl $n verify
    is "$RC/$OUT" "0/26 entries compared on 1 server: identical" "verify on $n with one server"
done

# --- usage errors: exit 2 and the usage --------------------------------------------------------
run "$DCHATCTL" -s "$(node_sock node1)" frobnicate
is "$RC" 2 "unknown command: exit 2"
like "$ERR" "unknown command 'frobnicate'" "unknown command: says so"
like "$ERR" "usage: dchatctl" "unknown command: prints the usage"
run "$DCHATCTL" --bogus-option status
is "$RC" 2 "unknown option: exit 2"
like "$ERR" "usage: dchatctl" "unknown option: prints the usage"
run "$DCHATCTL"
is "$RC" 2 "no command: exit 2"
# (no text with stdin not a terminal: the lines of stdin, here none; 53-post-stdin has the rest)
run ctl node1 post </dev/null
is "$RC/$OUT/$ERR" "0//" "post without text, stdin empty: nothing to post, exit 0"
run ctl node1 view --bogus
is "$RC" 2 "view --bogus: exit 2"
run ctl node1 view -n 0
is "$RC" 2 "view -n 0: exit 2"
run ctl node1 view -n abc
is "$RC" 2 "view -n abc: exit 2"
run ctl node1 view extra
is "$RC" 2 "view with an argument: exit 2"
run ctl node1 status --bogus
is "$RC" 2 "status --bogus: exit 2"
run ctl node1 verify --bogus
is "$RC" 2 "verify --bogus: exit 2"
run ctl node1 verify extra
is "$RC" 2 "verify with an argument: exit 2"
like "$ERR" "^dchatctl: verify takes no arguments \\('extra'\\)" "verify with an argument: says so"
run ctl node1 post --hold 99 x
is "$RC" 2 "post --hold beyond 30 s: exit 2"
# numbers are plain decimal: no hex, exponent, sign or space that strtod/strtoul would take
for h in 0x10 0X1p4 1e1 ' 5' +5 -0 .5 5. 1.2345 inf; do
    run ctl node1 post --hold "$h" "held by '$h'"
    is "$RC" 2 "post --hold '$h': exit 2"
    like "$ERR" "--hold takes seconds, a decimal number from 0 to 30" "post --hold '$h': says what it takes"
done
is "$(ctl node1 view | grep -c 'held by')" 0 "none of those was posted"
for n in ' -5' +5 ' 5' 5x 0x10 1e3 18446744073709551616; do
    run ctl node1 view -n "$n"
    is "$RC/$OUT" "2/" "view -n '$n': exit 2, nothing shown"
    run ctl node1 view --since-seq "$n"
    is "$RC/$OUT" "2/" "view --since-seq '$n': exit 2, nothing shown"
    run ctl node1 chat -n "$n"
    is "$RC" 2 "chat -n '$n': exit 2"
done
like "$ERR" "chat -n needs a decimal number" "chat -n: says what it takes"
run ctl node1 view -n 007
is "$(printf '%s\n' "$OUT" | wc -l)" 7 "view -n 007 is seven lines (decimal, not octal)"
run "$DCHATCTL" --help
is "$RC" 0 "--help exits 0"
like "$OUT" "usage: dchatctl" "--help prints the usage on stdout"

# --- errors: exit 1 and one clear line -------------------------------------------------------
run ctl master post "to the server"
is "$RC" 1 "post on the server's socket: exit 1"
like "$ERR" '^dchatctl: post failed: .*server' "post on the server's socket: a clear message about the server role"
is "$(ctl node1 view | wc -l)" 26 "nothing was stored by the refused post"
run "$DCHATCTL" -s "$T/no-such.sock" view
is "$RC" 1 "a missing socket: exit 1"
like "$ERR" "^dchatctl: cannot connect to $T/no-such.sock \\(from -s\\): no such socket" "a missing socket: says which and why"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "a missing socket: one line on stderr"

# --- nothing went wrong on the way ------------------------------------------------------------
for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused|post-failed')" 0 "$n logged no protocol-error, append-refused or post-failed"
    ok "$n is still running" node_alive $n
done

done_testing
