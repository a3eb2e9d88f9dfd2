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

# --- idle clients are closed ---------------------------------------------------------------------
CONF_EXTRA=('client_idle_timeout_ms = 1500;')
write_config
before=$(count_events node1 reloaded)
node_hup node1
ok "node1 reloaded with client_idle_timeout_ms = 1500" wait_event node1 reloaded $((before + 1))
_all_gone() { local p; for p in "${idle[@]}"; do pid_alive "$p" && return 1; done; return 0; }
ok "the 63 idle clients are closed" wait_for -t 20 _all_gone
is "$(cat "$T"/idle.*.word | sort | uniq -c | sed 's/^ *//')" "63 closed" "... each saw its connection closed"
like "$(frames "$T/idle.1" | awk '$1 == 10 { print $3 }' | perl -ne 'chomp; my $b = pack "H*", $_;
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
