#!/usr/bin/env bash
# 55-access — who may use the control socket, and the per-user limits that keep one
# local user from starving the others (dchat.conf(5): control_group, max_clients_per_user,
# max_queued_posts_per_user; dchatd(8): the control socket's frame limit).
#
#   - control_group = "users" (gid 100 on every Debian): members get in by their primary
#     or a supplementary group, root always; anyone else gets "permission denied" with
#     what to do — from the socket file's mode, and from dchatd itself when the mode
#     would let them in (SO_PEERCRED, SO_PEERGROUPS), with a client-refused event;
#   - a user at max_clients_per_user connections is refused one more, with a clear error
#     and an event, while another user and root go on;
#   - a user with max_queued_posts_per_user posts waiting (node2 stopped, so node1 cannot
#     enter the critical section) is refused one more post; another user and root are not;
#     the waiting posts are all stored once node2 goes on;
#   - a request over the control socket's frame limit gets an ERROR and the connection is
#     closed (protocol-error); the others go on;
#   - a control_group that does not exist: a warning at start, root only.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd setpriv perl
need_tool send-raw
getent group users >/dev/null || skip_all "needs the group users"
id -u daemon >/dev/null 2>&1 || skip_all "needs the user daemon"

# node2 may stop answering for as long as the test wants: no failure detection meanwhile,
# and every entry of node1 into the critical section asks node2 (no reused permissions)
FD_CONF=('heartbeat_ms = 1000;' 'suspect_after_ms = 600000;' 'dead_after_ms = 1200000;' 'reuse_permissions = false;')
cluster_start 2 'control_group = "users";' 'max_clients_per_user = 3;' 'max_queued_posts_per_user = 2;' "${FD_CONF[@]}"
S1=$(node_sock node1)

# nobody: member by a supplementary group; daemon: member by its primary group (as_daemon_member)
# or no member at all (ctl_as daemon: its own group, none else)
as_member() {
    local n=$1; shift
    timeout -k 2 "$RUN_TIMEOUT" setpriv --reuid=nobody --regid=nogroup --groups=users \
        "$DCHATCTL" -s "$(node_sock "$n")" "$@"
}
as_daemon_member() {
    local n=$1; shift
    timeout -k 2 "$RUN_TIMEOUT" setpriv --reuid=daemon --regid=users --clear-groups \
        "$DCHATCTL" -s "$(node_sock "$n")" "$@"
}
HINT="you are not in group users \\(ask an admin: usermod -aG users daemon, then log in again\\)"

# --- who gets in ---------------------------------------------------------------------
is "$(stat -c '%a %G' "$S1")" "660 users" "the control socket: mode 0660, group users (control_group)"
run ctl_as daemon node1 status
is "$RC" 1 "user daemon, not in group users: status exits 1"
like "$ERR" "^dchatctl: permission denied on $S1: $HINT\$" "... 'permission denied' with what to do (socket mode)"

chmod 0666 "$S1"
run ctl_as daemon node1 post "sneaked in"
is "$RC" 1 "socket made 0666: dchatd itself refuses user daemon's post: exit 1"
like "$ERR" "^dchatctl: permission denied on $S1: $HINT\$" "... with the same hint, from dchatd"
ok "node1 logged client-refused for uid 1: not in control_group" \
    wait_for -t 5 bash -c "grep -a -E '^time=[^ ]* no=[0-9]* event=client-refused .*\\(uid 1\\): not in control_group' '$(node_log node1)'"
run ctl_as daemon node1 view
is "$RC" 1 "... and refuses its view"
chmod 0660 "$S1"

run as_member node1 post "from a member"
is "$RC" 0 "user nobody, in group users as a supplementary group: post exits 0" || diag "$ERR"
run as_daemon_member node1 post "from the primary group"
is "$RC" 0 "user daemon with primary group users: post exits 0" || diag "$ERR"
run ctl node1 view -n 2
like "$OUT" "nobody: from a member"$'\n'".* daemon: from the primary group\$" "both posts stored, by their authors"
unlike "$OUT" "sneaked in" "the refused post was not stored"
run ctl node2 status
is "$RC" 0 "root is always let in"

# --- max_clients_per_user = 3 -----------------------------------------------------------
be32 7 > "$T/status.payload"
frame "$MSG_STATUS" "$T/status.payload" > "$T/status.frame"
held=()
for i in 1 2 3; do
    : > "$T/held.$i"; chmod 0666 "$T/held.$i"     # written by user nobody
    setpriv --reuid=nobody --regid=nogroup --groups=users "$TESTLIB/send-raw" -t 60000 -o "$T/held.$i" "$S1" \
        < "$T/status.frame" >/dev/null &
    held+=($!)
    track_pid $!
done
# each has its STATUS_REPLY: dchatd serves all three, and keeps them
all_answered() { local i; for i in 1 2 3; do [ -s "$T/held.$i" ] || return 1; done; }
ok "user nobody holds 3 connections, each answered" wait_for -t 10 all_answered
run as_member node1 status
is "$RC" 1 "a 4th connection of user nobody is refused: exit 1"
like "$ERR" "too many dchatctl connections of yours at once \\(max_clients_per_user = 3\\); try again" \
    "... saying which limit"
ok "node1 logged client-refused: max_clients_per_user" \
    wait_for -t 5 bash -c "grep -a -q -E '^time=[^ ]* no=[0-9]* event=client-refused .*user nobody .*max_clients_per_user reached' '$(node_log node1)'"
run as_daemon_member node1 post "another user meanwhile"
is "$RC" 0 "another user posts meanwhile" || diag "$ERR"
run ctl node1 post "root meanwhile"
is "$RC" 0 "root posts meanwhile" || diag "$ERR"
for p in "${held[@]}"; do stop_pid "$p"; done
ok "once they are closed, user nobody gets in again" wait_for -t 10 as_member node1 status

# --- max_queued_posts_per_user = 2 -------------------------------------------------------
n2=$(node_pid node2)
kill -STOP "$n2"        # node1 waits for node2's reply: posts queue up
queued() { ctl node1 status --json | perl -MJSON::PP -ne 'print decode_json($_)->{queued}'; }
queued_is() { [ "$(queued)" = "$1" ]; }
waiting=()
for i in 1 2; do
    as_member node1 post "queued $i" > "$T/q$i.out" 2>&1 &
    waiting+=($!)
    track_pid $!
    ok "node1 has $i post(s) queued" wait_for -t 10 queued_is "$i"
done
run as_member node1 post "one too many"
is "$RC" 1 "user nobody's 3rd waiting post is refused: exit 1"
like "$ERR" "user nobody has 2 posts waiting to be stored \\(max_queued_posts_per_user\\); try again once they are" \
    "... saying which limit"
ok "node1 logged client-refused: max_queued_posts_per_user" \
    wait_for -t 5 bash -c "grep -a -q -E '^time=[^ ]* no=[0-9]* event=client-refused .*max_queued_posts_per_user' '$(node_log node1)'"
as_daemon_member node1 post "other user queued" > "$T/q3.out" 2>&1 &
waiting+=($!); track_pid $!
ctl node1 post "root queued" > "$T/q4.out" 2>&1 &
waiting+=($!); track_pid $!
ok "another user's and root's posts are queued, not refused" wait_for -t 10 queued_is 4
kill -CONT "$n2"
rcs=
for p in "${waiting[@]}"; do wait "$p"; rcs+="$? "; done
is "$rcs" "0 0 0 0 " "once node2 goes on, the 4 waiting posts are stored (exit 0)" || diag "$(cat "$T"/q?.out)"
run ctl node2 view -n 4
is "$(printf '%s\n' "$OUT" | sed -E 's/^.* [a-z]+: //' | sort | tr '\n' '|')" \
    "other user queued|queued 1|queued 2|root queued|" "the view has them, and not the refused one"

# --- the control socket's frame limit -----------------------------------------------------
big() {     # big LEN: a POST header announcing LEN bytes, and LEN bytes
    perl -e 'print pack("N C C n", $ARGV[0], 1, 11, 0), "\0" x $ARGV[0]' "$1"
}
big 20000 > "$T/big.frame"
run "$TESTLIB/send-raw" -t 5000 -e 10 -o "$T/big.out" "$S1" < "$T/big.frame"
msg=$(frames "$T/big.out" | awk '$1 == 10 { print $3 }' | perl -ne 'chomp; my $b = pack "H*", $_; my $n = unpack "n", substr($b, 2, 2); print substr($b, 4, $n)')
is "$msg" "a request of 20000 bytes is over the limit of 16640 bytes of the control socket" \
    "a 20000-byte request: an ERROR saying the limit"
ok "node1 logged protocol-error: over this socket's limit" \
    wait_for -t 5 bash -c "grep -a -q -E '^time=[^ ]* no=[0-9]* event=protocol-error .*frame of 20000 bytes, over this socket.s limit of 16640' '$(node_log node1)'"
big 1048576 | head -c 65536 > "$T/huge.frame"
run "$TESTLIB/send-raw" -t 5000 -e 10 -o "$T/huge.out" "$S1" < "$T/huge.frame"
like "$(frames "$T/huge.out" | awk '{ print $1 }' | head -n 1)" "^10\$" "a header announcing 1 MiB: an ERROR too"
run as_member node1 post "after the big ones"
is "$RC" 0 "the others go on posting" || diag "$ERR"
ok "node1 is still running" node_alive node1

# --- a control_group that does not exist: root only ------------------------------------
node_stop node1
CONF_EXTRA=('control_group = "dchat-no-such-group";' "${FD_CONF[@]}")
write_config
node_start node1 || bail_out "node1 did not restart"
ok "a warning at start: the group does not exist, root only" \
    grep -a -q "group dchat-no-such-group (control_group) does not exist: only root may use dchatctl" "$(node_log node1)"
is "$(stat -c '%a %g' "$S1")" "660 0" "the socket stays 0660, group root"
run as_member node1 status
is "$RC" 1 "a member of users is refused now"
like "$ERR" "^dchatctl: permission denied on $S1: only root may use it" "... 'only root may use it'"
chmod 0666 "$S1"
run as_member node1 status
like "$ERR" "^dchatctl: permission denied on $S1: only root may use this dchatd: its group dchat-no-such-group does not exist" \
    "... and dchatd says so itself when the mode would let it in"
run ctl node1 post "root still can"
is "$RC" 0 "root still can post"

done_testing
