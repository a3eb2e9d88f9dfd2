#!/usr/bin/env bash
# 51-who — presence (issue 16): `dchatctl who` shows which nodes are up and who has a chat
# or a follow open on each, collected through the links (PRESENCE between the peers, and
# between a peer and the server):
#
#   - a quiet cluster: every node up, this one marked, nobody anywhere; --json the same;
#   - view -f by two users on node2 (root twice): on node1, node2's users are nobody and
#     root, each once, following; a chat (dchatctl chat in a terminal) makes root "in the
#     chat"; node2 and the server see the same; they go when the clients go;
#   - a follow on the server's own socket: the server's users, seen from a peer;
#   - node2 stopped: down, then dead (with why), its users no longer listed; back: up;
#   - the server stopped: down with why; back: up;
#   - a PRESENCE for another node, on a query link, or malformed: protocol-error, the
#     link closed, dchatd up, nothing of it shown.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd setpriv perl tmux
need_tool send-raw
getent group users >/dev/null || skip_all "needs the group users"

cluster_start 2 'control_group = "users";' 'suspect_after_ms = 1000;' 'dead_after_ms = 3000;'

# follow NODE [USER]: view -f on NODE as root or USER (a member of users), in the background: F = its PID
follow() {
    if [ -n "${2:-}" ]; then
        setpriv --reuid="$2" --regid=nogroup --groups=users "$DCHATCTL" -s "$(node_sock "$1")" view -f -n 1 \
            >/dev/null 2>&1 &
    else
        "$DCHATCTL" -s "$(node_sock "$1")" view -f -n 1 >/dev/null 2>&1 &
    fi
    F=$!
    track_pid $F
}
# field FROM NODE KEY: KEY of NODE in FROM's who --json ("users": "name:cf name:f ...")
field() {
    ctl "$1" who --json | perl -MJSON::PP -e '
        my $j = decode_json(join "", <STDIN>);
        for my $n (@{$j->{nodes}}) {
            next unless $n->{name} eq $ARGV[0];
            if ($ARGV[1] eq "users") {
                print join " ", map { $_->{name} . ":" . ($_->{chat} ? "c" : "") . ($_->{follow} ? "f" : "") } @{$n->{users}};
            } else {
                my $v = $n->{$ARGV[1]};
                print ref $v ? ($v ? "true" : "false") : $v;
            }
        }' "$2" "$3"
}
field_is() { [ "$(field "$1" "$2" "$3")" = "$4" ]; }

# --- a quiet cluster ----------------------------------------------------------------------------
run ctl node1 who
is "$RC" 0 "who on node1: exit 0" || diag "$ERR"
like "$OUT" $'^node1 +peer +up( [0-9]+s)?, here\n' "node1 first, up, marked as this node"
like "$OUT" $'\nnode2 +peer +up( [0-9]+s)?\n' "node2: up"
like "$OUT" $'\nmaster +server +up( [0-9]+s)?$' "master: up"
unlike "$OUT" "in the chat|following" "nobody in the chat, nobody following"
run ctl node1 who --json
is "$RC" 0 "who --json: exit 0"
is "$(printf '%s' "$OUT" | perl -MJSON::PP -e '$j = decode_json(<STDIN>); print join " ", $j->{node},
      map { "$_->{name}/$_->{role}/$_->{state}/" . ($_->{here} ? "here" : "") . "/" . ($_->{users_known} ? "known" : "") .
            "/" . scalar @{$_->{users}} } @{$j->{nodes}}')" \
   "node1 node1/peer/up/here/known/0 node2/peer/up//known/0 master/server/up//known/0" \
   "who --json: this node, then each node: role, state, here, users known, no users"
is "$(field master node1 state) $(field master node2 state) $(field master master here)" "up up true" \
   "who on the server: both peers up, itself here"

# --- follows and a chat ---------------------------------------------------------------------------
follow node2; f1=$F
follow node2; f2=$F
follow node2 nobody; f3=$F
ok "node1 sees nobody and root following on node2, each once" wait_for -t 10 field_is node1 node2 users "nobody:f root:f"
ok "node2 sees the same of itself" wait_for -t 10 field_is node2 node2 users "nobody:f root:f"
ok "the server sees the same" wait_for -t 10 field_is master node2 users "nobody:f root:f"
run ctl node1 who
like "$OUT" $'\nnode2 +peer +up( [0-9]+s)?\n  following \\(view -f\\): nobody, root\n' "who shows them under node2"
TM=(tmux -u -L "dchat-test-$$-${RANDOM}" -f /dev/null)
"${TM[@]}" new-session -d -s chat -x 100 -y 20 "'$DCHATCTL' -s '$(node_sock node2)' chat; sleep 600" ||
    bail_out "tmux new-session failed"
track_pid "$("${TM[@]}" display-message -p '#{pid}')"
ok "a chat by root on node2: root is in the chat there (and follows), once" \
    wait_for -t 10 field_is node1 node2 users "nobody:f root:cf"
run ctl node1 who
like "$OUT" $'\nnode2 +peer +up( [0-9]+s)?\n  in the chat: root\n  following \\(view -f\\): nobody, root\n' \
    "who: in the chat root, following nobody and root"
is "$(field node1 node1 users)" "" "node1 has nobody"
"${TM[@]}" send-keys -t chat -l "/quit"
"${TM[@]}" send-keys -t chat Enter
ok "the chat closed: root follows only" wait_for -t 10 field_is node1 node2 users "nobody:f root:f"
stop_pid $f1
ok "one of root's two follows ended: root is still there" wait_for -t 10 field_is node1 node2 users "nobody:f root:f"
stop_pid $f2
stop_pid $f3
ok "the follows ended: nobody on node2" wait_for -t 10 field_is node1 node2 users ""
ok "... as the server sees it too" wait_for -t 10 field_is master node2 users ""

# --- the server's own clients ----------------------------------------------------------------------
follow master; fm=$F
ok "a follow on the server's socket: node1 sees root following on master" \
    wait_for -t 10 field_is node1 master users "root:f"
stop_pid $fm
ok "... and no more once it ends" wait_for -t 10 field_is node1 master users ""

# --- node2 goes away, is declared dead, comes back ---------------------------------------------------
# (killed: silent, so declared dead by the failure detector; a clean stop says it leaves, below)
follow node2 nobody; f4=$F
ok "nobody follows on node2 again" wait_for -t 10 field_is node1 node2 users "nobody:f"
node_kill node2
ok "node2 stopped: not up on node1" wait_for -t 10 eval '[ "$(field node1 node2 state)" != up ]'
ok "... its users are no longer listed (not known)" wait_for -t 10 field_is node1 node2 users_known false
ok "node2 is declared dead on node1" wait_for -t 10 field_is node1 node2 state dead
like "$(field node1 node2 note)" '^silent for [0-9]+ ms$' "... saying why: $(field node1 node2 note)"
run ctl node1 who
like "$OUT" $'\nnode2 +peer +dead( [0-9]+s)? \\(silent for [0-9]+ ms\\)\n' "who: node2 dead, why"
ok "the server: node2 not linked" wait_for -t 10 field_is master node2 state down
stop_pid $f4
node_start node2
wait_connected 15
ok "node2 is up again on node1" wait_for -t 10 field_is node1 node2 state up
ok "... with its users known (none)" wait_for -t 10 field_is node1 node2 users_known true

# --- node2 stopped cleanly: it said it leaves -------------------------------------------------------------
node_stop node2
ok "node2 stopped cleanly: dead on node1 at once" wait_for -t 2 field_is node1 node2 state dead
is "$(field node1 node2 note)" "left the cluster: stopped cleanly" "... saying it left, not that it went silent"
run ctl node1 who
like "$OUT" $'\nnode2 +peer +dead( [0-9]+s)? \\(left the cluster: stopped cleanly\\)\n' "who: node2 dead, it left"
node_start node2
wait_connected 15
ok "node2 is up again on node1" wait_for -t 10 field_is node1 node2 state up

# --- the server goes away -------------------------------------------------------------------------------
node_stop master
ok "master stopped: down on node1" wait_for -t 10 field_is node1 master state down
like "$(field node1 master note)" 'closed|refused|reset' "... saying why: $(field node1 master note)"
run ctl node1 who
is "$RC" 0 "who works without the server"
like "$OUT" $'\nnode2 +peer +up' "... and shows node2 up"
node_start master
wait_connected 15
ok "master is up again on node1" wait_for -t 10 field_is node1 master state up

# --- what a node says of itself only, on its own link -------------------------------------------------
SEND=$TESTLIB/send-raw
ADDR=127.0.0.1:$(node_port master)
hello() { { be32 1; wstr "$1"; be8 "$ROLE_PEER"; be64 "$2"; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p"; }
# presence NODE USERS...: a PRESENCE of NODE, up, with those users (name:kinds), in the order given
presence() {
    local node=$1 u; shift
    { be32 0; wstr "$node"; be8 "$ROLE_PEER"; be8 1; be8 1; be32 0; wstr ""; be16 0; be16 $#
      for u in "$@"; do wstr "${u%%:*}"; be8 "${u##*:}"; done; } > "$T/p"
    frame $MSG_PRESENCE "$T/p"
}
pe0=$(count_events master protocol-error)
{ hello node2 0; presence node2 "mallory:1"; } > "$T/g"
is "$("$SEND" -k "$KEY" -n node2 -t 3000 "$ADDR" < "$T/g" 2>/dev/null)" closed \
   "a PRESENCE on a query link (HELLO with no incarnation): closed"
ok "... protocol-error on master" wait_for -t 5 eval '[ "$(count_events master protocol-error)" -gt "$pe0" ]'
like "$(events master protocol-error | tail -n 1)" 'PRESENCE for another node; closing' "... saying what"
is "$(field node1 node2 users)" "" "... and mallory shows nowhere"
pe0=$(count_events node1 protocol-error)
{ hello node2 0; presence node2 "zed:1" "ann:1"; } > "$T/g"
is "$("$SEND" -k "$KEY" -n node2 -t 3000 "127.0.0.1:$(node_port node1)" < "$T/g" 2>/dev/null)" closed \
   "a PRESENCE with its users out of order, to node1 as node2: closed"
ok "... protocol-error on node1: malformed" wait_for -t 5 eval '[ "$(count_events node1 protocol-error)" -gt "$pe0" ]'
like "$(events node1 protocol-error | tail -n 1)" 'malformed PRESENCE frame' "... saying so"
pe0=$(count_events node1 protocol-error)
{ hello node2 0; presence node1 "eve:1"; } > "$T/g"
is "$("$SEND" -k "$KEY" -n node2 -t 3000 "127.0.0.1:$(node_port node1)" < "$T/g" 2>/dev/null)" closed \
   "a PRESENCE naming node1, from node2: closed"
ok "... protocol-error on node1: another node" wait_for -t 5 eval '[ "$(count_events node1 protocol-error)" -gt "$pe0" ]'
like "$(events node1 protocol-error | tail -n 1)" 'PRESENCE for another node; closing' "... saying so"
wait_connected 15
ok "node2 is up again on node1 after the forged links" wait_for -t 10 field_is node1 node2 state up
is "$(field node1 node2 users)$(field node1 node1 users)" "" "nobody named by a forged PRESENCE shows"

# --- usage --------------------------------------------------------------------------------------------------
run ctl node1 who extra
is "$RC" 2 "who with an argument: exit 2"
run ctl node1 who --help
is "$RC" 0 "who --help: exit 0"
like "$OUT" '^usage: dchatctl \[-s SOCKET\] who \[--json\]' "... its own usage"

for n in master node1 node2; do ok "$n is still running" node_alive $n; done
done_testing
