#!/usr/bin/env bash
# 82-follow-refused — `dchatctl view -f` that dchatd refuses for a limit (max_clients_per_user,
# max_clients) says so once, with dchatd's reason, and waits, backing off (a try at most every
# 10 s, each one a client-refused line in the journal), until a slot frees; then it follows as
# usual.  It used to exit at random with "lost the connection to dchatd: Broken pipe" (its
# first VIEW found the connection closed before it read the refusal waiting for it).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd setpriv
getent group users >/dev/null || skip_all "needs the group users"

cluster_start 2 'control_group = "users";' 'max_clients_per_user = 2;'
S1=$(node_sock node1)
ctl node1 post "line 1" >/dev/null || fail "first post"

has_line() { grep -q -- "$2" "$T/$1" 2>/dev/null; }

# --- max_clients_per_user: two follows of user nobody, a third one waits ----------------------------
declare -A FPID
for h in h1 h2; do
    setpriv --reuid=nobody --regid=nogroup --groups=users "$DCHATCTL" -s "$S1" view -f \
        > "$T/$h.out" 2> "$T/$h.err" & FPID[$h]=$!; track_pid $!
done
ok "user nobody follows twice (max_clients_per_user = 2)" \
    wait_for -t 10 bash -c "grep -q 'line 1' '$T/h1.out' && grep -q 'line 1' '$T/h2.out'"

REFUSED="^dchatctl: dchatd refused the connection: too many dchatctl connections of yours at once \\(max_clients_per_user = 2\\); trying again every 10 s at most until it lets this in \\(Ctrl-C ends\\) \\.\\.\\.\$"
# The refusal races the first VIEW: five tries, each must wait (not exit) and say why once.
# (each start: the refusal said, then still running a moment later; a busy machine or a
# sanitizer may take a while to start dchatctl, so wait for the line rather than a time)
bad=0
for i in 1 2 3 4 5; do
    setpriv --reuid=nobody --regid=nogroup --groups=users "$DCHATCTL" -s "$S1" view -f \
        > "$T/try.out" 2> "$T/try.err" &
    try=$!; track_pid $try
    wait_for -t 10 has_line try.err "dchatd refused"
    sleep 0.3
    alive=0; kill -0 "$try" 2>/dev/null && alive=1
    if [ $alive != 1 ] || [ "$(wc -l < "$T/try.err")" != 1 ] || ! grep -q -E "$REFUSED" "$T/try.err"; then
        bad=$((bad + 1)); diag "try $i: running $alive: $(cat "$T/try.err")"
    fi
    stop_pid "$try"
done
is "$bad" 0 "5 refused view -f: each waits (no exit), saying the refusal once, with its reason"

refusals0=$(count_events node1 client-refused)
setpriv --reuid=nobody --regid=nogroup --groups=users "$DCHATCTL" -s "$S1" view -f \
    > "$T/w.out" 2> "$T/w.err" & FPID[w]=$!; track_pid $!
ok "a third view -f of user nobody says it is refused" wait_for -t 10 has_line w.err "dchatd refused"
sleep 6
alive=0; kill -0 "${FPID[w]}" 2>/dev/null && alive=1
is "$alive" 1 "... and still runs 6 s later"
is "$(wc -l < "$T/w.err")" 1 "... having said it once" || diag "$(cat "$T/w.err")"
like "$(cat "$T/w.err")" "$REFUSED" "... with dchatd's reason"
is "$(wc -c < "$T/w.out")" 0 "... showing no line meanwhile"
tries=$(( $(count_events node1 client-refused) - refusals0 ))
ok "it backs off: $tries tries in about 6 s (at 0.1, 0.3, 0.7, 1.5, 3.1 s: not every 0.1 s)" \
    test "$tries" -ge 2 -a "$tries" -le 8
unlike "$(cat "$T/w.err")" "Broken pipe|reconnected" "no 'Broken pipe', no 'reconnected'"

# a slot frees: it is let in (within its back-off: at most 10 s), shows the log and follows
stop_pid "${FPID[h1]}"
ok "once user nobody's first follow ends, the waiting one is let in" \
    wait_for -t 25 has_line w.err "dchatd lets this in now"
ok "... and shows the log" wait_for -t 10 has_line w.out "line 1"
ctl node2 post "line 2" >/dev/null || fail "post line 2"
ok "... then follows it" wait_for -t 10 has_line w.out "line 2"
is "$(wc -l < "$T/w.err")" 2 "two notices in all (refused, let in)" || diag "$(cat "$T/w.err")"
stop_pid "${FPID[w]}"
stop_pid "${FPID[h2]}"

# --- max_clients: a follow let in for STATUS only is refused as a whole, and waits too ---------------
# shellcheck disable=SC2034  # read by write_config (lib.sh)
CONF_EXTRA=('control_group = "users";' 'max_clients_per_user = 2;' 'max_clients = 2;')
write_config
run ctl node1 reload
is "$RC" 0 "reload with max_clients = 2" || diag "$ERR"
for h in h1 h2; do
    "$DCHATCTL" -s "$S1" view -f > "$T/m$h.out" 2>&1 & FPID[m$h]=$!; track_pid $!
done
ok "root follows twice (max_clients = 2)" \
    wait_for -t 10 bash -c "grep -q 'line 2' '$T/mh1.out' && grep -q 'line 2' '$T/mh2.out'"
"$DCHATCTL" -s "$S1" view -f > "$T/m.out" 2> "$T/m.err" & FPID[m]=$!; track_pid $!
ok "a third view -f is refused: max_clients" wait_for -t 10 has_line m.err \
    "dchatd refused the connection: too many dchatctl clients at once (max_clients = 2); only status is answered now; trying again"
sleep 2
alive=0; kill -0 "${FPID[m]}" 2>/dev/null && alive=1
is "$alive/$(wc -l < "$T/m.err")" "1/1" "... waits, having said it once"
stop_pid "${FPID[mh1]}"
ok "a slot frees: it is let in" wait_for -t 25 has_line m.err "dchatd lets this in now"
ok "... and shows the log" wait_for -t 10 has_line m.out "line 2"
stop_pid "${FPID[m]}"

# --- refused, then dchatd goes away: the waiting follow backs off, it does not spin -----------
"$DCHATCTL" -s "$S1" view -f > "$T/mh3.out" 2>&1 & FPID[mh3]=$!; track_pid $!
ok "root follows twice again" wait_for -t 10 has_line mh3.out "line 2"
"$DCHATCTL" -s "$S1" view -f > "$T/g.out" 2> "$T/g.err" & FPID[g]=$!; track_pid $!
ok "a follow refused (max_clients)" wait_for -t 10 has_line g.err "dchatd refused"
node_stop node1
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
c0=$(cpu "${FPID[g]}"); sleep 3; c1=$(cpu "${FPID[g]}")
cmp_ok "$((c1 - c0))" -lt 30 "node1 stopped: the waiting follow used $((c1 - c0)) ticks of CPU in 3 s (no busy loop)"
is "$(wc -l < "$T/g.err")" 1 "... and said nothing more"
stop_pid "${FPID[g]}"
stop_pid "${FPID[mh2]}"
stop_pid "${FPID[mh3]}"

done_testing
