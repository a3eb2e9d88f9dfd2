#!/usr/bin/env bash
# 63-control-idle — the control socket cannot be locked by idle clients (issue 11,
# item 16).  With max_clients (64) connections open on node1 — a follower and 63
# clients that connect and say nothing:
#
#   - `dchatctl status` is still answered (a slot beyond max_clients, for STATUS only),
#     while anything else gets a clear "too many clients" error and a client-refused event;
#   - client_idle_timeout_ms lowered by reload to 1.5 s: the 63 idle clients are closed,
#     told why, and the others can post again;
#   - the follower (`view -f`), idle as long as nobody posts, is not closed and prints
#     the next post; a client waiting for its post (behind node2's post --hold) longer
#     than the timeout is not closed either; a new idle client is closed after ~1.5 s.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_tool send-raw

cluster_start 2 'client_idle_timeout_ms = 600000;'
S1=$(node_sock node1)

# a follower, then 63 clients that say nothing: 64 = max_clients
"$DCHATCTL" -s "$S1" view -f > "$T/follower.out" 2> "$T/follower.err" &
follower=$!
track_pid "$follower"
ok "the follower follows" wait_for -t 10 grep -a -q 'follows the log' "$(node_log node1)"
idle=()
for i in $(seq 63); do
    "$TESTLIB/send-raw" -t 120000 -o "$T/idle.$i" "$S1" < /dev/null > "$T/idle.$i.word" 2>&1 &
    idle+=($!)
    track_pid $!
done
# Nothing may connect before node1 has taken all 64: a `view` that held a slot while the
# last of the 63 came in would push that one into a STATUS-only slot, which is closed after
# 2 s idle, and node1 would never be full again.  Count what dchatd has accepted (ss lists
# the connections accepted, not those still in the listen backlog).
_accepted() { [ "$(ss -Hxp src "$S1" | grep -c "pid=$(node_pid node1),")" -ge 64 ]; }
ok "node1 accepted the follower and the 63 idle clients" wait_for -t 60 _accepted
_full() { ! ctl node1 view -n 1; }
ok "node1 has max_clients (64) connections open" wait_for -t 20 _full

# --- status is still answered -------------------------------------------------------------------
run ctl node1 status
is "$RC" 0 "with 64 clients connected, status still works" || diag "$ERR"
like "$OUT" $'^node: +node1\n' "... and shows node1"
run ctl node1 status --json
like "$OUT" '"node":"node1"' "status --json works too"
run ctl node1 view -n 1
is "$RC" 1 "view is refused: exit 1"
like "$ERR" '^dchatctl: view failed: too many dchatctl clients at once \(max_clients = 64\); only status is answered now; try again$' \
    "... saying why and that status is answered"
ok "node1 logged client-refused: only STATUS beyond max_clients" \
    wait_for -t 5 grep -a -q -E '^time=[^ ]* no=[0-9]* event=client-refused .*VIEW refused: max_clients reached' "$(node_log node1)"

# --- a client let in for STATUS alone gets a slot of its own once one is free ------------------
# (it asks STATUS while node1 is full, an idle client leaves, then it asks a VIEW: served)
status_frame() { perl -e 'print pack("N C C n N", 4, 1, $ARGV[0], 0, 1)' "$MSG_STATUS"; }
view_frame() { perl -e 'print pack("N C C n N Q> Q> Q> N Q> Q>", 48, 1, $ARGV[0], 0, 2, 1, 0, 0, 16, 0, 0)' "$MSG_VIEW"; }
mkfifo "$T/late.in"
"$TESTLIB/send-raw" -t 20000 -e "$MSG_VIEW_END" -o "$T/late.out" "$S1" < "$T/late.in" > "$T/late.word" 2>&1 &
late=$!
track_pid $late
exec 7>"$T/late.in"
status_frame >&7
_conns() { [ "$(ss -Hxp src "$S1" | grep -c "pid=$(node_pid node1),")" "$1" "$2" ]; }
ok "a 65th client is let in, for STATUS alone" wait_for -t 20 _conns -ge 65
kill "${idle[0]}"
# (a STATUS now and then: a STATUS-only client idle for 2 s is closed)
_freed() { status_frame >&7; _conns -le 64; }
ok "an idle client leaves: a slot is free" wait_for -t 20 _freed
view_frame >&7
exec 7>&-
wait_pid_exit "$late" 30 || fail "send-raw did not end"
is "$(frames "$T/late.out" | awk -v v="$MSG_VIEW_END" -v e="$MSG_ERROR" '$1 == v || $1 == e { print $1 }' | tr '\n' ' ')" \
   "$MSG_VIEW_END " "its VIEW is answered (VIEW_END, no ERROR), not refused: the free slot became its own"

# --- idle clients are closed ---------------------------------------------------------------------
CONF_EXTRA=('client_idle_timeout_ms = 1500;')
write_config
before=$(count_events node1 reloaded)
node_hup node1
ok "node1 reloaded with client_idle_timeout_ms = 1500" wait_event node1 reloaded $((before + 1))
_all_gone() { local p; for p in "${idle[@]}"; do pid_alive "$p" && return 1; done; return 0; }
ok "the 62 idle clients left are closed" wait_for -t 20 _all_gone
is "$(cat "$T"/idle.*.word | sort | uniq -c | sed 's/^ *//')" "62 closed" "... each saw its connection closed (one was killed)"
like "$(frames "$T/idle.2" | awk '$1 == 10 { print $3 }' | perl -ne 'chomp; my $b = pack "H*", $_;
    my $n = unpack "n", substr($b, 2, 2); print substr($b, 4, $n)')" \
    '^dchatd closed this connection after 1500 ms idle \(client_idle_timeout_ms\)$' "... and was told why"
ok "node1 logged why it closed them" grep -a -q 'closed after [0-9]* ms without a request' "$(node_log node1)"

# --- the follower is not idle ---------------------------------------------------------------------
sleep 2         # the follower has now been quiet for longer than the timeout
ok "the follower is still running" pid_alive "$follower"
run ctl node1 post "after the idle ones"
is "$RC" 0 "node1 takes posts again" || diag "$ERR"
_shown() { grep -q 'root: after the idle ones$' "$T/follower.out"; }
ok "the follower prints it: its connection was kept" wait_for -t 10 _shown
is "$(cat "$T/follower.err")" "" "the follower had to reconnect never"

# --- a client waiting for its post is not idle --------------------------------------------------
ctl node2 post --hold 4 "node2 holds for 4 s" || fail "post --hold on node2"
run_timed ctl node1 post "waited longer than the idle timeout"
is "$RC" 0 "a post that waits ~4 s (idle timeout 1.5 s) is stored and answered" || diag "$ERR"
cmp_ok "$MS" -ge 1500 "... it did wait longer than the timeout (${MS} ms)"

# --- a new idle client --------------------------------------------------------------------------
run_timed "$TESTLIB/send-raw" -t 30000 "$S1" < /dev/null
is "$OUT" closed "a new client that says nothing is closed"
cmp_ok "$MS" -ge 1000 "... not before its time (${MS} ms)"
cmp_ok "$MS" -lt 20000 "... but after about 1.5 s (${MS} ms)"
ok "node1 still answers" ctl node1 status
done_testing
