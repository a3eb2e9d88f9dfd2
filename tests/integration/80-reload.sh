#!/usr/bin/env bash
# 80-reload — SIGHUP rereads the configuration: a changed tunable takes effect in the
# running daemon (same PID); a file with an error, or a change that needs a restart, is
# refused with a clear message (a reload-refused event) and the daemon goes on with the
# old configuration.  `dchatctl reload` (systemctl reload: ExecReload=) does the same
# through the control socket and says the outcome: what changed (exit 0), or why it was
# refused (exit 1, file:line), so that a refused `systemctl reload` fails.
. "$(dirname "$0")/../lib/lib.sh"
need_root

cluster_start 2 'post_timeout_ms = 10000;' 'reconnect_max_ms = 500;'
pid1=$(node_pid node1)
ctl node1 post "before any reload" || fail "first post"

# hup_and_wait NODE PATTERN: SIGHUP, then wait until NODE's log has one more line matching PATTERN
hup_and_wait() {
    local before; before=$(grep -a -c -E "$2" "$(node_log "$1")")
    node_hup "$1"
    _hw_more() { [ "$(grep -a -c -E "$2" "$(node_log "$1")")" -gt "$before" ]; }
    wait_for -t 5 _hw_more "$1" "$2"
}

# --- a changed tunable --------------------------------------------------------------------------
CONF_EXTRA=('post_timeout_ms = 1000;' 'reconnect_max_ms = 500;')
write_config
ok "SIGHUP: node1 logs reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
is "$(node_pid node1)" "$pid1" "node1 keeps its PID"
ok "node1 is still running" node_alive node1
like "$(tail -n 3 "$(node_log node1)")" 'post_timeout_ms=1000' "the new configuration is logged"

# node2 posts last, so node1 must ask it again (with reuse_permissions node1 would
# otherwise still hold node2's permission and need no message)
ctl node2 post "node2 last" >/dev/null || fail "node2's post"
# killed, not stopped: a clean stop says it leaves (88-clean-stop), and node1 would not wait
node_kill node2
run_timed ctl node1 post "with node2 down"
is "$RC" 1 "with node2 down the post fails"
cmp_ok "$MS" -lt 4000 "... after the new, shorter timeout (${MS} ms, was 10000)"
cmp_ok "$MS" -ge 900 "... not before it (${MS} ms)"
like "$ERR" 'timed out after 1000 ms' "... and says the new timeout"
node_start node2
ok "node2 is back" wait_connected 15

# --- max_clients and batch_max take effect too -----------------------------------------------------
CONF_EXTRA=('post_timeout_ms = 1000;' 'reconnect_max_ms = 500;' 'max_clients = 2;')
write_config
ok "SIGHUP with max_clients = 2: reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
for i in 1 2; do
    "$TESTLIB/send-raw" -t 3000 "$(node_sock node1)" </dev/null >/dev/null & track_pid $!
done
_two_clients() { [ "$(ss -Hx state connected src "$(node_sock node1)" 2>/dev/null | wc -l)" -ge 2 ]; }
wait_for -t 3 _two_clients
# beyond max_clients only `status` is answered (63-control-idle): anything else gets the
# reason and the connection is closed.  Ten tries: the client must show the reason each time.
reasons=$(for i in 1 2 3 4 5 6 7 8 9 10; do ctl node1 view -n 1 2>&1 >/dev/null; echo "exit $?"; done | sort | uniq -c | sed 's/^ *//')
is "$(printf '%s\n' "$reasons" | grep -c '^10 exit 1$')" 1 "with 2 clients connected, a third is turned away (exit 1, ten times out of ten)" || diag "$reasons"
is "$(printf '%s\n' "$reasons" | grep -c '^10 dchatctl: view failed: too many dchatctl clients at once (max_clients = 2)')" 1 \
    "... and says why, ten times out of ten" || diag "$reasons"
ok "... while status is still answered" ctl node1 status
_view_ok() { ctl node1 view -n 1; }
ok "once they are gone, dchatctl works again" wait_for -t 5 _view_ok

# batch_max: posts queued while node1 holds the critical section go in together, or one by one
batch_round() {   # batch_round TAG: a holder, then 3 posts queued behind it; prints their fence_idx
    local before w
    before=$(ctl node1 view | wc -l)
    ctl node1 post --hold 1 "holder $1" || echo "holder $1 failed" >&2
    for w in 1 2 3; do
        ctl node1 post "queued $1.$w" 2>>"$T/batch.err" & track_pid $!
        eval "bw$w=$!"
    done
    wait "$bw1" "$bw2" "$bw3" || echo "a queued post failed" >> "$T/batch.err"
    ctl node1 view --json | tail -n +$((before + 2)) | sed -E 's/.*"fence_idx":([0-9]+).*/\1/' | sort -u | tr '\n' ' '
}
CONF_EXTRA=('post_timeout_ms = 3000;' 'reconnect_max_ms = 500;' 'batch_max = 1;')
write_config
ok "SIGHUP with batch_max = 1: reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
is "$(batch_round one)" "0 " "batch_max = 1: each queued post has its own critical section (fence_idx always 0)"
CONF_EXTRA=('post_timeout_ms = 3000;' 'reconnect_max_ms = 500;' 'batch_max = 64;')
write_config
ok "SIGHUP with batch_max = 64: reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
is "$(batch_round many)" "0 1 2 " "batch_max = 64: the three queued posts share one critical section (fence_idx 0 1 2)"
is "$(cat "$T/batch.err" 2>/dev/null)" "" "all those posts succeeded"

# --- trace_events: the ring resized, its newest events kept -----------------------------------------
ring() { ctl node1 status --json | perl -MJSON::PP -ne 'my $t = decode_json($_)->{trace}; print "$t->{events}/$t->{capacity}"'; }
like "$(ring)" '^[0-9]+/10000$' "the ring holds 10000 events by default ($(ring))"
CONF_EXTRA=('post_timeout_ms = 3000;' 'reconnect_max_ms = 500;' 'trace_events = 5;')
write_config
ok "SIGHUP with trace_events = 5: reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
is "$(ring)" "5/5" "the ring keeps its 5 newest events"
run ctl node1 trace --format json
is "$(printf '%s\n' "$OUT" | grep -c '"node":"node1"')" 5 "... and trace shows those 5 of node1's"
CONF_EXTRA=('post_timeout_ms = 1000;' 'reconnect_max_ms = 500;')
write_config
ok "back to the first settings" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '

# --- an unchanged file: links stay up ----------------------------------------------------------------
downs=$(count_events node1 peer-down)
ok "SIGHUP with the same file: reloaded" hup_and_wait node1 '^time=[^ ]* no=[0-9]* event=reloaded '
run ctl node1 post "after a plain reload"
is "$RC" 0 "posts work after a plain reload"
is "$(count_events node1 peer-down)" "$downs" "a reload does not drop the links"

# --- a syntax error --------------------------------------------------------------------------------------
cp "$CONF" "$T/good.conf"
printf 'batch_max = ;\n' >> "$CONF"
bad_line=$(grep -n 'batch_max = ;' "$CONF" | cut -d: -f1)
reloads=$(count_events node1 reloaded)
ok "SIGHUP with a syntax error: an error is logged" hup_and_wait node1 'reload refused'
like "$(grep -a -E "$CONF:[0-9]+" "$(node_log node1)" | tail -n 1)" "$CONF:$bad_line: .*syntax error" "the error names the file and the line, and says what is wrong"
like "$(events node1 reload-refused | tail -n 1)" "msg=\"reload refused: $CONF:$bad_line: .*syntax error" "... as a reload-refused event"
is "$(count_events node1 reloaded)" "$reloads" "no reloaded event"
is "$(node_pid node1)" "$pid1" "node1 keeps running (same PID)"
run ctl node1 post "after a bad reload"
is "$RC" 0 "and keeps serving" || diag "$ERR"
ctl node2 post "node2 last" >/dev/null || fail "node2's post"
node_kill node2
run_timed ctl node1 post "old timeout kept?"
like "$ERR" 'timed out after 1000 ms' "the running configuration is kept (post_timeout_ms still 1000)"
cp "$T/good.conf" "$CONF"
node_start node2
ok "node2 is back" wait_connected 15

# --- a value out of range ---------------------------------------------------------------------------------
cp "$T/good.conf" "$CONF"
echo 'batch_max = 0;' >> "$CONF"
ok "SIGHUP with batch_max = 0: refused" hup_and_wait node1 'reload refused'
like "$(grep -a 'batch_max' "$(node_log node1)" | grep -v Configuration | tail -n 1)" "$CONF:[0-9]+: .*batch_max" "the error names file:line and the key"
is "$(node_pid node1)" "$pid1" "node1 keeps running"

# --- changes that need a restart ---------------------------------------------------------------------------
cp "$T/good.conf" "$CONF"
pick_port; sed -i "s/127.0.0.1:${PORT[node2]}/127.0.0.1:$PICKED/" "$CONF"
reloads=$(count_events node1 reloaded)
ok "SIGHUP with node2's address changed: refused" hup_and_wait node1 'reload refused'
like "$(grep -a 'reload refused' "$(node_log node1)" | tail -n 1)" 'cluster.peers changed.*needs a restart' "... saying the peers changed and that this needs a restart"
is "$(count_events node1 reloaded)" "$reloads" "no reloaded event"
run ctl node1 post "still the old peers"
is "$RC" 0 "node1 still posts with the old configuration (node2 at its old address)" || diag "$ERR"

cp "$T/good.conf" "$CONF"
pick_port; sed -i "s/127.0.0.1:${PORT[master]}/127.0.0.1:$PICKED/" "$CONF"
ok "SIGHUP on the server with its own address changed: refused" hup_and_wait master 'reload refused'
like "$(grep -a 'reload refused' "$(node_log master)" | tail -n 1)" 'cluster.servers changed.*needs a restart' "... saying the servers changed"
ok "the server keeps running" node_alive master

cp "$T/good.conf" "$CONF"
echo "control_socket = \"$T/elsewhere.sock\";" >> "$CONF"
ok "SIGHUP with control_socket changed: refused" hup_and_wait node2 'reload refused'
like "$(grep -a 'reload refused' "$(node_log node2)" | tail -n 1)" 'control_socket changed' "... naming control_socket"
ok "node2 still answers on its old socket" ctl node2 status

# --- dchatctl reload: the outcome, and an exit status systemctl reload passes on ---------------------------------------
cp "$T/good.conf" "$CONF"
sed -i 's/post_timeout_ms = 1000;/post_timeout_ms = 2000;/' "$CONF"
run ctl node1 reload
is "$RC" 0 "dchatctl reload of a good file: exit 0" || diag "$ERR"
is "$OUT" "configuration $CONF reloaded: post_timeout_ms 1000 -> 2000" "... says what changed"
like "$(events node1 reloaded | tail -n 1)" "msg=\"configuration $CONF reloaded: post_timeout_ms 1000 -> 2000\"" "... and so does the reloaded event"
run ctl node1 reload
is "$RC $OUT" "0 configuration $CONF reloaded: no setting changed" "the same file again: exit 0, nothing changed"
printf 'batch_max = ;\n' >> "$CONF"
bad_line=$(grep -n 'batch_max = ;' "$CONF" | cut -d: -f1)
refused=$(count_events node1 reload-refused)
run ctl node1 reload
is "$RC" 1 "dchatctl reload of a broken file: exit 1"
like "$ERR" "^dchatctl: reload refused: $CONF:$bad_line: .*syntax error.*; the running configuration is kept\$" "... with file:line on stderr"
is "$(count_events node1 reload-refused)" $((refused + 1)) "... and one reload-refused event"
cp "$T/good.conf" "$CONF"
pick_port; sed -i "s/127.0.0.1:${PORT[node2]}/127.0.0.1:$PICKED/" "$CONF"
run ctl node1 reload
is "$RC" 1 "dchatctl reload of a change that needs a restart: exit 1"
like "$ERR" "^dchatctl: reload refused: cluster.peers changed, which needs a restart \\(systemctl restart dchatd\\)" "... saying which setting"
cp "$T/good.conf" "$CONF"
run ctl node1 reload
like "$RC $OUT" "^0 configuration $CONF reloaded: post_timeout_ms 2000 -> 1000\$" "the good file again: reloaded"
is "$(node_pid node1)" "$pid1" "node1 kept its PID through all of it"

# --- the server reloads a tunable too; a burst of SIGHUPs is harmless -------------------------------------------------
cp "$T/good.conf" "$CONF"
ok "SIGHUP on the server: reloaded" hup_and_wait master '^time=[^ ]* no=[0-9]* event=reloaded '
for i in $(seq 20); do kill -HUP "$(node_pid node1)"; done
ok "after 20 SIGHUPs in a row node1 still answers" wait_for -t 5 ctl node1 status
run ctl node1 post "after the burst"
is "$RC" 0 "and posts" || diag "$ERR"
is "$(node_pid node1)" "$pid1" "node1 has the same PID as at the start"

run ctl node2 view
texts=$(printf '%s\n' "$OUT" | sed 's/^.* root: //' | tr '\n' '|')
is "$(printf '%s\n' "$texts" | sed -E -e 's/(holder|queued) [a-z0-9.]+\|//g' -e 's/node2 last\|//g')" "before any reload|after a plain reload|after a bad reload|still the old peers|after the burst|" "the log has every acknowledged post"
for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused')" 0 "$n logged no protocol-error or append-refused"
done

done_testing
