#!/usr/bin/env bash
# 48-group-members — servers join and leave a running group (dchatd(8), REPLICATION,
# "Servers joining and leaving"):
#  * three fresh servers bootstrap one group: the same group id, and each one's Raft
#    configuration holds the three as voters;
#  * a fourth server whose file lists it does not bootstrap a group of its own: it asks,
#    finds the running one, and waits to be added, saying how;
#  * `server add` under load (a background dchat-bench) makes it a standby, then, once it
#    caught up, a voter that holds the same log; the line for cluster.servers is printed;
#  * a server started with another cluster's data directory is refused with a clear
#    message, by itself and by the others, and nothing of its files is changed;
#  * `server remove` of the leader: a new leader, posting goes on; the removed server
#    logs server-removed, serves nothing more, and stays out after a restart.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd md5sum perl
need_tool send-raw ../bench/dchat-bench
BENCH=$TOP/tests/bench/dchat-bench

N_SERVERS=3 cluster_start 2 'election_timeout_ms = 300;' 'control_group = "users";'
THREE_CONF=$CONF

same_logs() {   # every live server of "$@" holds the same log
    local n sums=
    for n in "$@"; do
        node_alive "$n" || continue
        sums+="$(ctl "$n" view --json 2>/dev/null | md5sum | cut -c1-32) "
    done
    [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
}
field() { sed -n -E "s/.*(^| )$1=([^ ]*).*/\\2/p"; }
role_in() {     # role_in SERVER NAME: NAME's role in SERVER's configuration (3 voter, 2 standby, 1 spare, 0 none)
    group_ask "$2" "$1" | field role
}
leader() {      # the server the live ones name as leader
    local n l
    for n in "$@"; do
        node_alive "$n" || continue
        l=$(group_ask master9 "$n" | field leader)
        [ -n "$l" ] && { echo "$l"; return; }
    done
}

# --- three fresh servers: one group ---------------------------------------------------------------
ids=$(for n in "${SERVERS[@]}"; do cat "$(node_state "$n")/raft/group-id"; done | sort -u)
is "$(printf '%s\n' "$ids" | wc -l)" 1 "the three servers recorded one group id"
like "$ids" '^[0-9a-f]{32}$' "... of 32 hex digits"
GROUP=$ids
confs=
for s in "${SERVERS[@]}"; do
    confs+="$s:"
    for n in master master2 master3 master4; do
        [ "$n" = "$s" ] && { confs+="$n=self "; continue; }      # a server takes no HELLO under its own name
        confs+="$n=$(role_in "$s" "$n") "
    done
    confs+=$'\n'
done
is "${confs%$'\n'}" "master:master=self master2=3 master3=3 master4=0 
master2:master=3 master2=self master3=3 master4=0 
master3:master=3 master2=3 master3=self master4=0 " "every server's configuration holds the same three voters"
for n in "${SERVERS[@]}"; do
    like "$(group_ask master9 "$n")" "^state=1 group=$GROUP " "$n answers GROUP: it holds the group's state"
done

# --- a fourth server: it asks first, and waits to be added ---------------------------------------
pick_port; PORT[master4]=$PICKED
mkdir -p "$T/master4/run" "$T/master4/state"
SERVERS=(master master2 master3 master4)
CONF=$T/four.conf write_config
SERVERS=(master master2 master3)
CONF=$T/four.conf node_start master4 || bail_out "master4 does not start"
ok "master4 finds the running group and waits to be added, saying how" \
    wait_for -t 15 grep -a -q "joining the server group $GROUP (.*): waiting to be added; run 'dchatctl server add master4 127.0.0.1:${PORT[master4]}' on a member" "$(node_log master4)"
is "$(grep -a -c 'bootstrapped the server group' "$(node_log master4)")" 0 "master4 did not bootstrap a group"
is "$(ls "$(node_state master4)/raft" | grep -c -E '^(metadata|0000)')" 0 "... nor write any Raft entry"
is "$(cat "$(node_state master4)/raft/group-id")" "$GROUP" "... and recorded the group's id"
is "$(role_in master master4)" 0 "the group does not list master4 yet"
run ctl master4 view
is "$RC" 0 "master4 answers a view meanwhile (its own chat log, empty)"

# --- server add, under load --------------------------------------------------------------------
for i in 1 2 3 4 5; do ctl node1 post "before the add $i" >/dev/null || fail "post before the add $i"; done
"$BENCH" -c 1 -n 400 -t adding "$(node_sock node1)" "$(node_sock node2)" > "$T/bench.json" 2> "$T/bench.err" &
bench=$!
track_pid $bench
sleep 0.3
RUN_TIMEOUT=90 run ctl node2 server add --timeout 60 master4 "127.0.0.1:${PORT[master4]}"
is "$RC" 0 "server add master4 (asked on a peer, under load) exits 0" || diag "$ERR"
like "$OUT" "^master4 joined the server group as a voter in [0-9.]+ s .*voters now: master, master2, master3, master4" \
    "... and says it joined as a voter"
like "$OUT" "Add this entry to cluster.servers in /etc/dchat.conf on every host" "... and what to add to every host's file"
like "$OUT" "    \\{ name = \"master4\"; address = \"127.0.0.1:${PORT[master4]}\"; \\}" "... the entry itself"
wait $bench
is "$?" 0 "every post of the background load was acknowledged" || diag "$(cat "$T/bench.err")"
for s in master master2 master3; do
    is "$(role_in "$s" master4)" 3 "$s's configuration holds master4 as a voter"
done
is "$(role_in master4 master)" 3 "master4's configuration holds master as a voter"
like "$(group_ask master master4)" "^state=1 group=$GROUP .* fsm=0 " "master4 holds the group's state, its chat log ready"
ok "master4 holds the same log as the others" wait_for -t 20 same_logs master master2 master3 master4
is "$(ctl master4 view --json | wc -l)" 805 "... all 805 entries"
for s in master master2 master3; do
    ok "$s logged server-joined for master4" wait_for -t 5 grep -a -q -E "${EV_LINE}event=server-joined .*peer=master4 " "$(node_log "$s")"
done
ok "master4 logged that it joined" grep -a -q -E "${EV_LINE}event=server-joined .*msg=\"this server, master4 joined" "$(node_log master4)"
run ctl master4 server add master4 "127.0.0.1:${PORT[master4]}"
is "$RC/$(printf '%s' "$OUT" | head -n 1)" "0/master4 is a voter of the server group already; voters: master, master2, master3, master4" \
    "server add again: it is a voter already (safe to repeat)"
run ctl master server add master5 127.0.0.1:1
is "$RC" 1 "server add of a server that does not run: exit 1"
like "$ERR" "master5 at 127.0.0.1:1 does not answer .*: start dchatd there first.*nothing was changed" "... saying so"
is "$(role_in master master5)" 0 "... and the group does not list it"
run timeout -k 2 "$RUN_TIMEOUT" setpriv --reuid=nobody --regid=nogroup --groups=users \
    "$DCHATCTL" -s "$(node_sock master)" server remove master2
is "$RC" 1 "server remove by a user of control_group who is not root: exit 1"
like "$ERR" "^dchatctl: server remove refused: only root may change the server group" "... refused, saying so"
is "$(role_in master master2)" 3 "... and master2 is still a voter"

# --- a peer whose file does not list the leader follows it where the group says it is -----------------
L=$(leader master master2 master3 master4)
note "leader: $L"
OTHERS_FILE=()
for n in master master2 master3; do [ "$n" != "$L" ] && OTHERS_FILE+=("$n"); done
node_stop node2
SAVE=("${SERVERS[@]}"); SERVERS=("${OTHERS_FILE[@]}"); CONF=$T/node2.conf write_config; SERVERS=("${SAVE[@]}")
: > "$(node_log node2)"
CONF=$T/node2.conf node_start node2 || bail_out "node2 does not start with its own file"
ok "node2, whose file lists ${OTHERS_FILE[*]} only, links to the leader $L at the address the group gave" \
    wait_for -t 15 grep -a -q "$L leads the server group (term [0-9]*), not .*: linking to it at 127.0.0.1:${PORT[$L]}, which the group gave" "$(node_log node2)"
run ctl node2 post "from a peer whose file does not list the leader"
is "$RC" 0 "... and posts through it" || diag "$ERR"
ok "node2 logs config-mismatch (its file differs)" wait_for -t 5 grep -a -q -E "${EV_LINE}event=config-mismatch " "$(node_log node2)"
node_stop node2
: > "$(node_log node2)"
CONF=$THREE_CONF node_start node2 || bail_out "node2 does not restart"
wait_connected 15 || bail_out "node2 does not link up again"

# --- a server started with another cluster's data directory --------------------------------------------
# a throwaway group of three with its own key and ports: master3's state of it is "another cluster's"
ALT=$T/alt
mkdir -p "$ALT"
"$DCHATCTL" keygen "$ALT/key" > /dev/null
{
    echo "cluster = {"
    printf '  servers = ( '
    first=1
    for n in master master2 master3; do
        pick_port
        [ $first = 1 ] || printf ', '
        printf '{ name = "%s"; address = "127.0.0.1:%s"; }' "$n" "$PICKED"
        first=0
        mkdir -p "$ALT/$n/run" "$ALT/$n/state"
    done
    echo ' );'
    pick_port
    echo "  peers = ( { name = \"node1\"; address = \"127.0.0.1:$PICKED\"; } );"
    echo "};"
    echo "key_file = \"$ALT/key\";"
    echo "election_timeout_ms = 300;"
} > "$ALT/dchat.conf"
alt_pids=()
for n in master master2 master3; do
    RUNTIME_DIRECTORY=$ALT/$n/run STATE_DIRECTORY=$ALT/$n/state DCHAT_LOG=stderr \
        ${DCHAT_DAEMON_WRAPPER:-} "$DCHATD" -c "$ALT/dchat.conf" -n "$n" </dev/null >>"$ALT/$n.log" 2>&1 &
    alt_pids+=($!)
    track_pid $!
done
ok "the other cluster's group elects a leader" wait_for -t 20 grep -a -q -E "${EV_LINE}event=leader-elected " "$ALT/master3.log"
for p in "${alt_pids[@]}"; do stop_pid "$p"; done
ALT_GROUP=$(cat "$ALT/master3/state/raft/group-id")
isnt "$ALT_GROUP" "$GROUP" "the other cluster's group has another id"

node_stop master3
mv "$(node_state master3)" "$T/master3.ours"
cp -a "$ALT/master3/state" "$(node_state master3)"
sums() { (cd "$(node_state master3)" && find . -type f ! -name 'open-*' -print0 | sort -z | xargs -0 md5sum); }
before=$(sums)
: > "$(node_log master3)"
CONF=$THREE_CONF node_start master3 || bail_out "master3 does not start"
ok "master3 refuses to take part, and says why" wait_for -t 20 grep -a -q \
    "this server takes no part in the server group: its Raft state in .*/raft belongs to group $ALT_GROUP, but .* hold group $GROUP" \
    "$(node_log master3)"
like "$(grep -a 'takes no part in the server group' "$(node_log master3)" | head -n 1)" \
    "Nothing of .* or of its chat log was changed. If this state directory came from another cluster" "... and what to do"
ok "the others say master3 holds another group's state" wait_for -t 10 grep -a -q \
    "server master3 holds Raft state of another group ($ALT_GROUP" "$(node_log master)" "$(node_log master2)" "$(node_log master4)"
like "$(group_ask master9 master3)" "^state=3 " "master3 answers GROUP: it takes no part (refused)"
run ctl node1 post "while master3 holds another cluster's state"
is "$RC" 0 "posting goes on" || diag "$ERR"
run ctl master3 view
is "$RC" 1 "master3 serves no view"
like "$ERR" "takes no part in the server group" "... and says why"
sleep 1
is "$(sums)" "$before" "nothing of master3's files (chat log, Raft log, group id) was changed"
node_stop master3
rm -rf "$(node_state master3)"
mv "$T/master3.ours" "$(node_state master3)"
: > "$(node_log master3)"
CONF=$THREE_CONF node_start master3 || bail_out "master3 does not restart with its own state"
ok "master3, with its own state again, holds the same log" wait_for -t 20 same_logs master master2 master3 master4

# --- server remove of the leader ---------------------------------------------------------------------
L=$(leader master master2 master3 master4)
note "leader: $L"
[ -n "$L" ] || bail_out "no leader"
OTHERS=()
for n in master master2 master3 master4; do [ "$n" != "$L" ] && OTHERS+=("$n"); done
run ctl node1 server remove "$L"
is "$RC" 0 "server remove $L (the leader, asked on a peer) exits 0" || diag "$ERR"
like "$OUT" "^$L was removed from the server group; voters now: " "... and says so"
like "$OUT" "Remove this entry from cluster.servers in /etc/dchat.conf on every host, and stop dchatd on $L" \
    "... and what to take off every host's file"
ok "$L logs server-removed" wait_for -t 10 grep -a -q -E "${EV_LINE}event=server-removed .*msg=\"this server was removed from the server group" "$(node_log "$L")"
new=
for i in $(seq 1 100); do new=$(leader "${OTHERS[@]}"); [ -n "$new" ] && [ "$new" != "$L" ] && break; sleep 0.1; done
isnt "$new" "$L" "a new leader: $new"
for i in 1 2 3; do
    run ctl node$(( i % 2 + 1 )) post "after the leader was removed $i"
    is "$RC" 0 "posting goes on ($i)" || diag "$ERR"
done
for s in "${OTHERS[@]}"; do
    is "$(role_in "$s" "$L")" 0 "$s's configuration no longer holds $L"
done
ok "the remaining servers hold the same log" wait_for -t 15 same_logs "${OTHERS[@]}"
ok "$L still runs (it stays idle)" node_alive "$L"
run ctl "$L" view
is "$RC" 1 "$L serves no view"
like "$ERR" "was removed from the server group" "... saying it was removed"
ok "$L left $(node_state "$L")/raft/removed behind" test -e "$(node_state "$L")/raft/removed"
node_stop "$L"
: > "$(node_log "$L")"
if [ "$L" = master4 ]; then CONF=$T/four.conf node_start "$L"; else node_start "$L"; fi || bail_out "$L does not restart"
ok "after a restart $L stays out and says so" wait_for -t 10 grep -a -q -E "${EV_LINE}event=server-removed .*raft/removed says so" "$(node_log "$L")"
run ctl node2 post "the last post"
is "$RC" 0 "posting goes on after $L restarted" || diag "$ERR"
ok "the remaining servers hold the same log at the end" wait_for -t 15 same_logs "${OTHERS[@]}"
ctl "${OTHERS[0]}" view --json > "$T/all.json"
is "$(check_fences "$T/all.json")" "ok 811 entries" "811 entries, seqs without a gap, fences increasing"

done_testing
