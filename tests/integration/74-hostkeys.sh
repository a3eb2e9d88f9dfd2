#!/usr/bin/env bash
# 74-hostkeys — per-host keys (issue 17): `dchatctl keygen --host` and `pubkey`; the
# checks dchatd makes on its host key (others may read it, it is not the one the config
# lists for this host); a running cluster moved from the cluster key to host keys by
# reloads only (host keys, then the public keys in the config, then the cluster key
# dropped), with posts going on throughout and no restart; afterwards the old cluster key
# and version 1 are refused; then one host's key rotated under load (its new public key
# everywhere, reload, the host restarts with it): nothing acknowledged is lost; last, a
# server group (Raft links) on host keys alone.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd stat

# --- keygen --host, pubkey ----------------------------------------------------------------------
run "$DCHATCTL" keygen --host "$T/h1"
is "$RC" 0 "keygen --host FILE: exit 0" || diag "$ERR"
like "$OUT" '^[A-Za-z0-9+/]{43}=$' "... prints the public key (44 characters of base64)"
like "$ERR" "wrote a new host key to $T/h1 \\(mode 0600\\)" "... and says where on stderr"
is "$(stat -c '%a %U' "$T/h1")" "600 root" "... mode 0600, owned by the caller"
pub=$OUT
run "$DCHATCTL" pubkey "$T/h1"
is "$RC $OUT" "0 $pub" "pubkey FILE prints the same public key"
run "$DCHATCTL" keygen --host "$T/h1"
is "$RC" 1 "keygen --host on an existing file: exit 1"
like "$ERR" "$T/h1 exists; not replacing it" "... says why"
run "$DCHATCTL" pubkey "$T/h1"
is "$OUT" "$pub" "... and the key is unchanged"
chmod 0640 "$T/h1"
run "$DCHATCTL" pubkey "$T/h1"
is "$RC" 1 "pubkey on a key the group may read: exit 1"
like "$ERR" "the host key $T/h1 is accessible to group or others \\(mode 0640\\)" "... says why"
run "$DCHATCTL" pubkey "$T/none"
like "$RC $ERR" "^1 .*cannot open the host key $T/none: No such file or directory \\(make one with .dchatctl keygen --host.\\)" \
    "pubkey on a missing file: exit 1, and how to make one"
run "$DCHATCTL" pubkey a b
is "$RC" 2 "pubkey with two files: usage error (exit 2)"

# --- dchatd's checks on its host key -------------------------------------------------------------------
cluster_config 2
start_fails() {   # start_fails NAME REGEX: node1 exits 1 at once, with REGEX on stderr
    run env DCHAT_LOG=stderr RUNTIME_DIRECTORY="$T/node1/run" STATE_DIRECTORY="$T/node1/state" \
        CREDENTIALS_DIRECTORY="$T/node1/creds" "$DCHATD" -c "$CONF" -n node1
    is "$RC" 1 "$1: dchatd exits 1"
    like "$ERR" "$2" "$1: the error says why"
}
hostkey_make node1
chmod 0644 "$T/node1/creds/host.key"
start_fails "a host key others may read" "the host key $T/node1/creds/host.key is accessible to group or others"
chmod 0600 "$T/node1/creds/host.key"
listed=${HOSTKEY[node1]}
lre=${listed//+/\\+}
hostkey_make node1 "$T/other.key"
HOSTKEY[node1]=$listed
write_config
cp -p "$T/other.key" "$T/node1/creds/host.key"
start_fails "a host key that is not the one listed" \
    "the host key in $T/node1/creds/host.key \\(public key [^ ]+\\) is not the one the config lists for node1 \\($lre\\)"
rm -f "$T/node1/creds/host.key"
start_fails "a key listed for this host, but no host key" \
    "cannot open the host key [^ ]+: No such file or directory.*; the config lists one for node1 \\($lre\\)"
run env CREDENTIALS_DIRECTORY="$T/node1/creds" "$DCHATD" -t -c "$CONF" -n node1
is "$RC" 1 "dchatd -t fails too (it would not start)"
like "$ERR" '^dchatd will not start: cannot open the host key' "... and says why"
like "$OUT" $'\nhost keys listed: 1 of 3 members' "dchatd -t counts the members whose key is listed"
rm -f "$T/node1/creds/host.key"
unset 'HOSTKEY[node1]'
# (the unit's LoadCredential= hands dchatd a directory whatever it holds)

# --- the migration: cluster key -> host keys, by reloads, posting throughout -----------------------------
cluster_start 2 'reconnect_min_ms = 50;' 'reconnect_max_ms = 300;' 'post_timeout_ms = 20000;'
declare -A PID0
for n in "${NODES[@]}"; do PID0[$n]=$(node_pid "$n"); done
# load TAG NODE...: posts on the NODEs in turn until $T/stop; a line per post in
# $T/load.out: ok|fail TAG-N
load() {
    local tag=$1 i=0 n; shift
    local nodes=("$@")
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1)); n=${nodes[$(( i % ${#nodes[@]} ))]}
        if ctl "$n" post "load $tag-$i on $n" >/dev/null 2>>"$T/load.err"; then echo "ok $tag-$i"; else echo "fail $tag-$i"; fi
        sleep 0.05
    done >> "$T/load.out"
}
load m node1 node2 & LOAD_PID=$!; track_pid $LOAD_PID
loaded() { [ "$(grep -c '^ok' "$T/load.out" 2>/dev/null)" -ge "$1" ]; }
ok "posts are going" wait_for -t 20 loaded 5
reloaded() { local c; c=$(count_events "$1" reloaded); node_hup "$1"; wait_event "$1" reloaded $((c + 1)) 10; }
step() {   # step WHAT: reload every node, then the cluster links up again and posts go on
    local n c
    for n in "${NODES[@]}"; do ok "$1: $n reloaded" reloaded "$n"; done
    ok "$1: the cluster is linked" wait_connected 20
    c=$(grep -c '^ok' "$T/load.out")
    ok "$1: posts go on" wait_for -t 20 loaded $((c + 4))
}
# 1: every host gets its host key (nobody lists one yet: each is taken by the cluster key)
for n in "${NODES[@]}"; do hostkey_make "$n"; done
HOSTKEYS=$(declare -p HOSTKEY)
unset HOSTKEY; declare -A HOSTKEY=()
step "host keys made"
for n in "${NODES[@]}"; do
    like "$(grep -a 'proves itself with the host key' "$(node_log "$n")" | tail -n 1)" \
        "host key in $T/$n/creds/host.key .*and the cluster key in $KEY; 0 members' host keys listed" \
        "$n: took its host key at the reload"
done
# 2: their public keys in the config
eval "$HOSTKEYS"
write_config
step "public keys listed"
like "$(grep -a 'proves itself with the host key' "$(node_log master)" | tail -n 1)" "3 members' host keys listed" \
    "master lists the three keys"
# 3: the cluster key dropped
mv "$KEY" "$T/cluster.key.old"
step "cluster key dropped"
for n in "${NODES[@]}"; do
    like "$(grep -a 'proves itself with the host key' "$(node_log "$n")" | tail -n 1)" "no cluster key" \
        "$n: runs without the cluster key"
    is "$(node_pid "$n")" "${PID0[$n]}" "$n: never restarted"
done
touch "$T/stop"; wait_pid_exit "$LOAD_PID" 30; rm -f "$T/stop"
is "$(grep -c '^fail m-' "$T/load.out")" 0 "no post failed during the migration ($(grep -c '^ok' "$T/load.out") went through)" \
    || diag "$(cat "$T/load.err")"

# the old ways in are closed: the old cluster key (version 1), as node2
need_tool send-raw
SEND=$TESTLIB/send-raw
hello() { { be32 1; wstr "$1"; be8 "${2:-$ROLE_PEER}"; be64 1; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p"; }
hello node2 > "$T/g"
bm=$(count_events master link-auth-failed)
is "$("$SEND" -k "$T/cluster.key.old" -n node2 -t 3000 "127.0.0.1:$(node_port master)" < "$T/g" 2>/dev/null)" closed \
    "the old cluster key as node2 (version 1): closed"
ok "... with link-auth-failed" wait_event master link-auth-failed $((bm + 1)) 5
like "$(events master link-auth-failed | tail -n 1 | ev_field msg)" \
    "127\\.0\\.0\\.1:[0-9]+\\)?: node2's host key is listed, but it offered a version 1 handshake \\(cluster key only\\): refused \\(no downgrade\\)" \
    "... saying why"

# --- a key rotated under load ------------------------------------------------------------------------------
cp -p "$T/node1/creds/host.key" "$T/node1.old.key"
old=${HOSTKEY[node1]}
hostkey_make node1 "$T/node1.new.key"
new=${HOSTKEY[node1]}
write_config
c=$(grep -c '^ok' "$T/load.out")
load r node2 & LOAD_PID=$!; track_pid $LOAD_PID
ok "posts are going" wait_for -t 20 loaded $((c + 3))
b=$(count_events master link-auth-failed)
for n in master node2; do ok "rotation: $n reloaded" reloaded "$n"; done
ok "master closes its link with node1's old key at once" wait_event master link-auth-failed $((b + 1)) 5
like "$(events master link-auth-failed | sed -n "$((b + 1))p" | ev_field msg)" \
    "after the reload: node1 proved host key ${old//+/\\+}, but the key listed for it now is ${new//+/\\+}" \
    "... naming the key it proved and the one listed"
# node1's own reload is refused meanwhile: the key it holds is not the one listed now
pid1=$(node_pid node1)
node_hup node1
ok "node1's reload is refused: its key is not the listed one" wait_for -t 10 grep -q \
    "reload refused: the host key in $T/node1/creds/host.key (public key [^ ]*) is not the one the config lists for node1 .*; keeping the running configuration and keys" \
    "$(node_log node1)"
is "$(node_pid node1)" "$pid1" "... and node1 runs on"
node_stop node1
mv "$T/node1.new.key" "$T/node1/creds/host.key"
node_start node1
ok "node1, restarted with its new key, links up" wait_connected 20
c=$(grep -c '^ok' "$T/load.out")
ok "posts go on" wait_for -t 20 loaded $((c + 4))
touch "$T/stop"; wait_pid_exit "$LOAD_PID" 30; rm -f "$T/stop"
run ctl node1 post "node1 with its new key"
is "$RC" 0 "a post on node1 with its new key" || diag "$ERR"
# its old key is refused now
hello node1 > "$T/g"
b=$(count_events master link-auth-failed)
is "$("$SEND" -H "$T/node1.old.key" -n node1 -t 3000 "127.0.0.1:$(node_port master)" < "$T/g" 2>/dev/null)" closed \
    "a handshake with node1's old key: closed"
ok "... with link-auth-failed" wait_event master link-auth-failed $((b + 1)) 5
like "$(events master link-auth-failed | tail -n 1 | ev_field msg)" \
    "127\\.0\\.0\\.1:[0-9]+\\)?: node1 presented host key ${old//+/\\+}, not the one listed for it" \
    "... naming the address and the key"

# --- nothing acknowledged was lost ---------------------------------------------------------------------------
ctl node2 view > "$T/view"
missing=0
while read -r w i; do
    [ "$w" = ok ] || continue
    [ "$(grep -c -- "load $i on " "$T/view")" = 1 ] || { missing=$((missing + 1)); diag "missing: $i"; }
done < "$T/load.out"
is "$missing" 0 "every acknowledged post ($(grep -c '^ok' "$T/load.out")) is in the log once"
is "$(grep -c '^fail r-' "$T/load.out")" 0 "no post on node2 failed during the rotation"
ctl node2 view --json > "$T/log.json"
like "$(check_fences "$T/log.json")" "^ok [0-9]+ entries" "the log's seqs have no gap and its fences increase"

# --- a server group on host keys alone: the Raft links use the same handshake -----------------------------
for n in "${NODES[@]}"; do node_alive "$n" && node_stop "$n"; done
rm -rf "$T"/master* "$T"/node*
HOSTKEY=()
for n in master master2 master3 node1 node2; do hostkey_make "$n"; done
N_SERVERS=3 NO_CLUSTER_KEY=1 cluster_start 2 'reconnect_max_ms = 300;'
ok "a group of three servers and two peers, host keys only, no cluster key: linked" wait_connected 20
is "$(grep -a -c 'proves itself with the host key.*no cluster key; 5 members. host keys listed' "$T"/master*.log "$T"/node*.log | \
      awk -F: '{ s += $2 } END { print s }')" 5 "... every node runs on its host key alone"
run ctl node1 post "a group on host keys"
is "$RC" 0 "a post in the group" || diag "$ERR"
run ctl node2 view
like "$OUT" "a group on host keys" "... and it is in the log"

done_testing
