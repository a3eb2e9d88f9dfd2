#!/usr/bin/env bash
# 54-hold — post --hold stalls every peer of the cluster, so only root may hold unless
# dchat.conf says otherwise (hold_max_ms, reloadable; issue 11, item 13), and a post that
# waits behind a hold says what it waited for (item 18):
#
#   - a member of control_group (user nobody) is refused post --hold with a clear error
#     and a client-refused event; nothing is stored; without --hold it posts; root holds;
#   - hold_max_ms = 500 by reload: the member may hold 0.5 s, not 0.6 s;
#   - while node1 holds (root, post --hold), a post queued on node1 times out naming
#     node1's own critical section held by post --hold, not the server; one on node2
#     names the reply from node1 it waits for.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd setpriv
getent group users >/dev/null || skip_all "needs the group users"

cluster_start 2 'control_group = "users";' 'post_timeout_ms = 2000;'

# nobody, member of users by a supplementary group (as in 55-access)
as_member() {
    local n=$1; shift
    timeout -k 2 "$RUN_TIMEOUT" setpriv --reuid=nobody --regid=nogroup --groups=users \
        "$DCHATCTL" -s "$(node_sock "$n")" "$@"
}
released() { ctl node1 status --json | grep -q '"dme_state":"released"'; }

# --- who may hold (hold_max_ms = 0, the default: root only) ----------------------------------
run as_member node1 post --hold 1 "a member holds"
is "$RC" 1 "a member's post --hold 1: exit 1"
like "$ERR" '^dchatctl: post refused: only root may post --hold on this dchatd \(hold_max_ms = 0 in dchat.conf\); post without --hold$' \
    "... says only root may hold, and which setting"
ok "node1 logged client-refused: post --hold, user nobody, hold_max_ms" \
    wait_for -t 5 bash -c "grep -a -q -E '^time=[^ ]* no=[0-9]* event=client-refused .*post --hold of 1000 ms refused: user nobody is not root \\(hold_max_ms = 0\\)' '$(node_log node1)'"
run ctl node1 view
unlike "$OUT" "a member holds" "the refused post was not stored"
run as_member node1 post --hold 0 "a member, hold 0"
is "$RC" 0 "a member's post --hold 0 is no hold: stored" || diag "$ERR"
run as_member node1 post "a member posts"
is "$RC" 0 "the member posts without --hold" || diag "$ERR"
run ctl node1 post --hold 0.3 "root holds"
is "$RC" 0 "root may hold" || diag "$ERR"
ok "node1 leaves the critical section after root's hold" wait_for -t 10 released

# --- hold_max_ms = 500, by reload --------------------------------------------------------------
CONF_EXTRA+=('hold_max_ms = 500;')
write_config
before=$(count_events node1 reloaded)
node_hup node1
ok "node1 reloaded" wait_event node1 reloaded $((before + 1))
run as_member node1 post --hold 0.5 "a member holds half a second"
is "$RC" 0 "hold_max_ms = 500: a member may hold 0.5 s" || diag "$ERR"
ok "node1 leaves the critical section after the member's hold" wait_for -t 10 released
run as_member node1 post --hold 0.6 "a member holds too long"
is "$RC" 1 "... not 0.6 s: exit 1"
like "$ERR" '^dchatctl: post refused: post --hold may be at most 0\.500 s for users other than root \(hold_max_ms = 500 in dchat.conf\)$' \
    "... saying the limit"
run ctl node1 view
unlike "$OUT" "too long" "the refused post was not stored"

# --- what a post behind a hold waits for ---------------------------------------------------------
run ctl node1 post --hold 10 "node1 holds for 10 s"
is "$RC" 0 "root on node1 holds for 10 s" || diag "$ERR"
ctl node1 post "behind node1's own hold" > "$T/own.out" 2> "$T/own.err" & own=$!
track_pid "$own"
ctl node2 post "behind node1's hold" > "$T/other.out" 2> "$T/other.err" & other=$!
track_pid "$other"
wait "$own"; rc_own=$?
wait "$other"; rc_other=$?
is "$rc_own/$rc_other" "1/1" "both posts time out (post_timeout_ms = 2000) while node1 holds"
like "$(cat "$T/own.err")" \
    "^dchatctl: post failed: timed out after 2000 ms waiting for this node's own critical section, held by post --hold \\([0-9]+ ms more\\)\$" \
    "the post on node1 says it waited for node1's own critical section, held by post --hold"
unlike "$(cat "$T/own.err")" "server" "... and does not blame the server"
like "$(cat "$T/other.err")" "^dchatctl: post failed: timed out after 2000 ms waiting for a reply from node1\$" \
    "the post on node2 says it waited for node1's reply"
ok "node1 lets go after its hold" wait_for -t 20 released
run ctl node2 post "after the hold"
is "$RC" 0 "posting works again after the hold" || diag "$ERR"
run ctl node1 view
unlike "$OUT" "behind node1" "the timed-out posts were not stored"
done_testing
