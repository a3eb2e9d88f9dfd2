#!/usr/bin/env bash
# 33-who-group — presence and fast failures with a server group (three servers, two
# peers; issue 16):
#
#   - `who` on a peer: both peers and their users (from the peer links, not the servers),
#     the server it links to (the leader) up, the others not linked from there, saying so;
#     `who` on the leader: both peers, with their users;
#   - the leader killed: the peer links to the new leader, `who` shows it up, and the
#     other peer's users all along;
#   - every server stopped: a post says at once that it waits, and why (no server of the
#     group reachable), and fails once none has been reachable for dead_after_ms, not
#     after post_timeout_ms; a post made after that fails at once, saying so.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'dead_after_ms = 3000;' 'post_timeout_ms = 20000;'

field() {
    ctl "$1" who --json | perl -MJSON::PP -e '
        my $j = decode_json(join "", <STDIN>);
        for my $n (@{$j->{nodes}}) {
            next unless $n->{name} eq $ARGV[0];
            if ($ARGV[1] eq "users") {
                print join " ", map { $_->{name} . ":" . ($_->{chat} ? "c" : "") . ($_->{follow} ? "f" : "") } @{$n->{users}};
            } else {
                print $n->{$ARGV[1]};
            }
        }' "$2" "$3"
}
field_is() { [ "$(field "$1" "$2" "$3")" = "$4" ]; }
# the server node1 links to: the only one it shows up
linked() { ctl node1 who --json | perl -MJSON::PP -e '$j = decode_json(join "", <STDIN>);
    print join " ", map { $_->{name} } grep { $_->{role} eq "server" && $_->{state} eq "up" } @{$j->{nodes}}'; }

ctl node1 post "hello group" >/dev/null || diag "post failed"
L=$(group_leader)
note "leader: $L"
"$DCHATCTL" -s "$(node_sock node2)" view -f -n 1 >/dev/null 2>&1 &
track_pid $!
ok "node1 sees root following on node2" wait_for -t 10 field_is node1 node2 users "root:f"
ok "node1 links to the leader, $L, and shows it up" wait_for -t 10 eval '[ "$(linked)" = "$L" ]'
like "$(field node1 "$L" note)" "the group's leader" "... as the group's leader"
for s in "${SERVERS[@]}"; do
    [ "$s" = "$L" ] && continue
    is "$(field node1 "$s" state)" unknown "$s: unknown from node1"
    like "$(field node1 "$s" note)" "not linked from here \\(this peer links to $L\\)" "... saying why"
done
ok "the leader sees node2's users too" wait_for -t 10 field_is "$L" node2 users "root:f"
is "$(field "$L" node1 state)" up "the leader: node1 linked"

# --- the leader killed ---------------------------------------------------------------------------
node_kill "$L"
new_leader() { local l; l=$(group_leader) && [ -n "$l" ] && [ "$l" != "$L" ]; }
ok "another server leads" wait_for -t 15 new_leader
L2=$(group_leader)
ok "node1 links to the new leader, $L2, and shows it up" wait_for -t 15 eval '[ "$(linked)" = "$L2" ]'
is "$(field node1 node2 users)" "root:f" "node2's users shown all along (the peers' own links)"
ok "posting goes on" ctl node1 post "after the leader died"

# --- no server at all ---------------------------------------------------------------------------------
for s in "${SERVERS[@]}"; do node_alive "$s" && node_stop "$s"; done
ok "node1 shows no server up" wait_for -t 10 eval '[ -z "$(linked)" ]'
t0=$(date +%s%N)
# (on a terminal: script(1); dchatctl says it waits only to someone at one)
run script -qec "'$DCHATCTL' -s '$(node_sock node1)' post 'with no server'" /dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$RC" 1 "a post with every server down fails"
like "$OUT" "dchatctl: waiting: no server of the group is reachable \\(the last tried, master[0-9]*: " \
    "... saying first, on the terminal, that it waits, and why"
like "$OUT" "post failed: no server of the group has been reachable for [0-9]+ ms" "... then why it failed"
cmp_ok "$ms" -lt 20000 "... before post_timeout_ms (20 s): $ms ms"
note "a post with no server reachable failed after $ms ms"
t0=$(date +%s%N)
run ctl node1 post "with no server, later"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$RC" 1 "once none has been reachable for dead_after_ms, a post fails"
unlike "$ERR" "waiting" "... at once, without waiting ($ms ms)"
like "$ERR" "no server of the group has been reachable for [0-9]+ ms" "... saying why"
done_testing
