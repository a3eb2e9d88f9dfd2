#!/usr/bin/env bash
# tests/system/21-group-hosts.sh — a server group of three hosts and two peer hosts under
# real systemd, installed by README.md's guide, "Installing on several hosts" (TAP).
#
# Five containers with systemd as PID 1 (tests/lib/containers.sh), each in its own network
# namespace on a private bridge (tests/lib/netns.sh), each with a disk of its own that
# outlives a power cut: server1, server2, server3 and node1, node2.  Each has the Debian
# packages the guide names (in the root tests/lib/containers.sh builds with debootstrap:
# the containers have no network to run apt-get), gets the tree
# `make install DESTDIR=... PREFIX=/usr` stages, then exactly the guide's commands: the
# same /etc/dchat.conf with three servers on every host, the cluster key made on server1
# and copied to the others, the sockets enabled by role, users in group dchat.  Then:
#
#   - the first post starts the whole group by socket activation (no dchatd runs before);
#     `dchatctl status` names the leader and term, every server at the same seq, lag 0;
#     `dchatctl verify` exits 0; each server keeps its Raft log in /var/lib/dchat/raft;
#   - users post on both peers (two posters on each, dchatctl post in a loop); meanwhile
#     the leader's host loses power: its cable is pulled and every process in it is
#     killed at once (SIGKILL to its PID 1: nothing shuts down); the other two elect a
#     leader, posting goes on; the host is started again (cable back, same disk), its
#     dchatd is started by the new leader's link (socket activation), and it catches up;
#   - every acknowledged post is stored exactly once, no post is stored twice, a post that
#     failed without saying "may or may not" is not stored, fences increase, sequence
#     numbers have no gap; `dchatctl verify` exits 0 comparing every entry on the three
#     servers; every host's view is the same;
#   - a follower stopped with `systemctl stop dchatd` is started again by the leader's
#     link; stopped with its sockets it stays down while posts go on, and catches up when
#     its sockets are started again (README, "Operating");
#   - the journals say so: leader-lost and leader-elected on the servers that stayed up,
#     server-down and server-up (to the new leader) on the peers, the previous boot of the
#     powered-off host ends while it led (no "stopping"), its new boot learns the leader.
#
# As root, from the top of the tree:  prove -v -e '' tests/system/21-group-hosts.sh
# A red run leaves each container's journal in a directory it names
# (DCHAT_TEST_ARTIFACTS, default /var/tmp).  Figures are printed at the end.
#
# Environment: DCHAT_TEST_CACHE, DCHAT_TEST_ARTIFACTS, DCHAT_TEST_TIMEOUT (default here
# 900 s: a cold cache runs debootstrap), DCHAT_TEST_KEEP=1, GROUP_HOSTS_ACKS (posts each
# poster must see acknowledged in each phase, default 40).
export DCHAT_TEST_TIMEOUT=${DCHAT_TEST_TIMEOUT:-900}
# shellcheck source-path=SCRIPTDIR source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"
# shellcheck source=../lib/containers.sh
. "$TESTLIB/containers.sh"
# shellcheck source=../lib/netns.sh
. "$TESTLIB/netns.sh"

T_START=$(date +%s%N)
SERVERS=(server1 server2 server3)
PEERS=(node1 node2)
HOSTS=("${SERVERS[@]}" "${PEERS[@]}")
USERS=(lucy bob)                        # the posters on each peer
ACKS=${GROUP_HOSTS_ACKS:-40}            # acknowledged posts per poster per phase
MAX_POSTS=20000                         # per poster, whatever happens

need_root
[ -e /proc/self/ns/net ] || skip_all "the kernel has no network namespaces (CONFIG_NET_NS)"
_ct_cgroot >/dev/null || skip_all "no cgroup v2 hierarchy is mounted (systemd-nspawn needs one)"
grep -qw overlay /proc/filesystems || skip_all "the kernel has no overlayfs (the containers' disks are overlays)"
if ! out=$("$TESTLIB/install-debs" debootstrap systemd-container iproute2 2>&1); then
    bail_out "cannot install debootstrap and systemd-container: $out"
fi
need_cmd debootstrap systemd-nspawn nsenter unshare ip flock perl md5sum

# --- helpers ------------------------------------------------------------------------------

on() { local h=$1; shift; ct_exec "$h" timeout -k 2 "$RUN_TIMEOUT" "$@"; }
as() { local u=$1 h=$2; shift 2; ct_exec "$h" timeout -k 2 "$RUN_TIMEOUT" runuser -u "$u" -- "$@"; }
is_server() { [[ " ${SERVERS[*]} " == *" $1 "* ]]; }
role_of() { if is_server "$1"; then echo server; else echo peer; fi; }
main_pid() { on "$1" systemctl show -P MainPID dchatd.service; }
is_active() { [ "$(on "$1" systemctl is-active dchatd.service)" = active ]; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# events HOST EVENT [JOURNALCTL ARGS...]: MESSAGE of each dchatd entry with DCHAT_EVENT=EVENT
events() { local h=$1 e=$2; shift 2; on "$h" journalctl -q -t dchatd "DCHAT_EVENT=$e" -o cat --no-pager "$@"; }
count_ev() { events "$@" | grep -c .; }

# STATUS: `dchatctl status --json` of HOST (default node1) as "LEADER TERM | NAME:STATE:ROLE:SEQ:LAG ..."
# (STATE up or down), for matching
group_of() {
    local j h=${1:-node1}
    if is_server "$h"; then j=$(on "$h" dchatctl status --json 2>/dev/null) || return 1     # root there
    else j=$(as lucy "$h" dchatctl status --json 2>/dev/null) || return 1; fi
    perl -MJSON::PP -e '
        my $s = decode_json(join "", <STDIN>);
        print join(" ", $s->{leader} // "-", $s->{term} // "-", "|",
            map { join ":", $_->{name}, ($_->{reachable} ? "up" : "down"), $_->{role} // "-",
                  $_->{last_seq} // "-", $_->{lag} // "-" } @{$s->{servers} // []}), "\n"' <<<"$j"
}
leader_of() { local g; g=$(group_of "$@") || return 1; echo "${g%% *}"; }
term_of() { local g; g=$(group_of "$@") || return 1; g=${g#* }; echo "${g%% *}"; }
# wait_until SECS CMD...: like wait_for, but bounded by the clock: a status waits up to a
# second for each server it cannot reach, so a count of tries would stretch a red run
wait_until() {
    local end=$(( $(date +%s) + $1 )); shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}
# in_step [HOST]: a leader, every server up at the same seq with lag 0
in_step() {
    local g s seq=
    g=$(group_of "${1:-node1}") || return 1
    [[ $g =~ ^server[123]\ [0-9]+\ \|\ (server[123]:up:(leader|follower):[0-9]+:0\ ?){3}$ ]] || return 1
    for s in ${g#*| }; do
        IFS=: read -r _ _ _ n _ <<<"$s"
        [ -z "$seq" ] || [ "$n" = "$seq" ] || return 1
        seq=$n
    done
}
# new_leader OLD: node1 sees a leader other than OLD, and it is up and leads
new_leader() {
    local g l
    g=$(group_of node1) || return 1
    l=${g%% *}
    [ "$l" != - ] && [ "$l" != "$1" ] && [[ $g == *" $l:up:leader:"* ]]
}

# The posters: USER on HOST posts "load HOST USER I" for I = 1, 2, ... until
# /run/dchat-load-stop exists on HOST (or MAX_POSTS), one line per post in
# $T/load.HOST.USER as tests/lib/check-posts reads them: "USEC ok 0 TEXT" (dchatctl post
# does not say the seq) or "USEC err STATUS TEXT<tab>ERROR" (USEC: the host's clock in
# microseconds when the answer came; the containers share the machine's clock).
declare -A POSTER_PID=()
poster_start() {
    local h=$1 u=$2
    # shellcheck disable=SC2016 # expanded by the bash in the container
    ct_exec "$h" runuser -u "$u" -- bash -c '
        i=0
        while [ ! -e /run/dchat-load-stop ] && [ $i -lt "$3" ]; do
            i=$((i + 1)); t="load $1 $2 $i"
            if err=$(timeout -k 2 60 dchatctl post "$t" 2>&1); then
                echo "${EPOCHREALTIME/./} ok 0 $t"
            elif [ $? = 124 ]; then
                echo "${EPOCHREALTIME/./} err 124 $t	no answer in 60 s: it may or may not have been stored"
            else
                echo "${EPOCHREALTIME/./} err 1 $t	${err//$'"'\n'"'/ }"
            fi
        done' poster "$h" "$u" "$MAX_POSTS" >"$T/load.$h.$u" 2>"$T/load.$h.$u.stderr" &
    POSTER_PID[$h.$u]=$!
    track_pid $!
}
# acks_after SECS N: every poster has had at least N posts acknowledged after time SECS
acks_after() {
    local f
    for f in "$T"/load.node?.*; do
        case $f in *.stderr) continue ;; esac
        [ "$(awk -v t="$1" '$1 / 1e6 > t && $2 == "ok"' "$f" | wc -l)" -ge "$2" ] || return 1
    done
}
# longest_gap FROM TO FILE: the longest time (ms) between two answers in FILE that
# acknowledged a post, the second one between FROM and TO: how long that poster could not post
longest_gap() {
    awk -v a="$1" -v b="$2" '$2 == "ok" { t = $1 / 1e6; if (p && t > a && t <= b && t - p > g) g = t - p; p = t }
                             END { printf "%d", g * 1000 }' "$3"
}
# event_time HOST EVENT ERE: the time (seconds) of HOST's first EVENT whose message matches ERE
event_time() {
    on "$1" journalctl -q -t dchatd "DCHAT_EVENT=$2" -o json --no-pager | RE=$3 perl -MJSON::PP -ne '
        my $e = decode_json($_);
        if ($e->{MESSAGE} =~ /$ENV{RE}/) { printf "%.6f\n", $e->{__REALTIME_TIMESTAMP} / 1e6; exit }' 
}
now_s() { date +%s.%N; }
# ms_between A B: (B - A) in ms, both seconds with decimals
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

write_config() {
    {
        echo "# /etc/dchat.conf written by $TEST_NAME (README.md, Installing on several hosts)"
        echo "cluster = {"
        echo "  servers = ( { name = \"server1\"; address = \"$(netns_addr server1):8000\"; },"
        echo "              { name = \"server2\"; address = \"$(netns_addr server2):8000\"; },"
        echo "              { name = \"server3\"; address = \"$(netns_addr server3):8000\"; } );"
        echo "  peers   = ( { name = \"node1\";   address = \"$(netns_addr node1):8001\"; },"
        echo "              { name = \"node2\";   address = \"$(netns_addr node2):8001\"; } );"
        echo "};"
    } | on "$1" tee /etc/dchat.conf >/dev/null
}

# --- clean-up, and the journals of a red run ------------------------------------------
teardown() {
    local h failed=0 dir
    [ "${_T_FAILED:-0}" -gt 0 ] || [ "${_T_DONE:-1}" = 0 ] && failed=1
    if [ $failed = 1 ] && [ ${#_CT_PID[@]} -gt 0 ]; then
        dir=$(mktemp -d "${DCHAT_TEST_ARTIFACTS:-/var/tmp}/dchat-$TEST_NAME.XXXXXX")
        for h in "${!_CT_PID[@]}"; do
            ct_journal "$h" "$dir"
            diag "--- last lines of the journal of $h:" "$(tail -n 30 "$dir/$h.journal")"
        done
        cp "$CT_STATE"/*.log "$T"/load.* "$dir"/ 2>/dev/null
        diag "the journals of the hosts (HOST.journal, HOST.export), their consoles and the" \
             "posters' outcomes (load.HOST.USER) are in $dir"
    fi
    # posters still running (a run that ended early): their nsenter goes first, so that no
    # container's shutdown catches it (containers.sh, _ct_poweroff, says why)
    for k in "${!POSTER_PID[@]}"; do
        for c in $(pgrep -P "${POSTER_PID[$k]}"); do kill -KILL "$c" 2>/dev/null; done
    done
    ct_down_all
    netns_down
}
_group_hosts_exit() {
    local rc=$?
    teardown
    (exit $rc)
    _cleanup
}
declare -F _cleanup >/dev/null || bail_out "tests/lib/lib.sh has no _cleanup any more: update $0"
trap _group_hosts_exit EXIT

# === 1. build, stage, root, network, boot ==================================================

run make -C "$TOP" --no-print-directory all
is "$RC" 0 "make builds dchatd and dchatctl" || diag "$OUT" "$ERR"
STAGE=$T/stage
run make -C "$TOP" --no-print-directory install DESTDIR="$STAGE" PREFIX=/usr
is "$RC" 0 "make install DESTDIR=... PREFIX=/usr" || diag "$ERR"

t0=$(date +%s)
ct_rootfs || bail_out "no root file system for the containers (debootstrap)"
ROOTFS_S=$(( $(date +%s) - t0 ))
for lib in libraft.so.2 libuv.so.1 libsodium.so.23 libconfig.so.9 libedit.so.2; do
    [ -n "$(find "$CT_ROOTFS/usr/lib" -name "$lib" -print -quit)" ] || missing_lib="${missing_lib:-} $lib"
done
ok "the hosts' root has the packages the README lists (libraft2, libuv1, ...)" test -z "${missing_lib:-}"

netns_up "${HOSTS[@]}" 2>"$T/netns.err"
[ -s "$T/netns.err" ] && bail_out "$(cat "$T/netns.err")"
pass "five hosts on a private bridge ($NETNS_SUBNET.0/24)"

t0=$(now_ms)
for h in "${HOSTS[@]}"; do ct_start "$h" "$(netns_path "$h")" "$h" "$T/disk/$h"; done
booted=1
for h in "${HOSTS[@]}"; do ct_wait "$h" 60 2>>"$T/boot.err" || booted=0; done
BOOT_ALL_MS=$(( $(now_ms) - t0 ))
ok "five hosts boot systemd as PID 1 in parallel (${BOOT_ALL_MS} ms)" test $booted = 1
[ $booted = 1 ] || bail_out "containers did not boot: $(cat "$T/boot.err")"

# === 2. the README's guide, command for command ============================================

for h in "${HOSTS[@]}"; do
    tar -C "$STAGE" -cf - usr etc | ct_exec "$h" tar -C / --no-overwrite-dir -xf - 2>"$T/tar.err" \
        || bail_out "cannot copy the staged install to $h: $(cat "$T/tar.err")"
    run on "$h" sh -e -c 'systemd-sysusers dchat.conf
                          systemd-tmpfiles --create dchat.conf
                          journalctl --update-catalog
                          systemctl daemon-reload'
    is "$RC" 0 "$h: installed; systemd-sysusers, systemd-tmpfiles --create, journalctl --update-catalog, daemon-reload" \
        || diag "$OUT" "$ERR"
    write_config "$h"
done
sums=$(for h in "${HOSTS[@]}"; do on "$h" md5sum /etc/dchat.conf; done | sort -u | wc -l)
is "$sums" 1 "the same /etc/dchat.conf on every host, three servers listed"

run on server1 dchatctl keygen
is "$RC" 0 "server1: dchatctl keygen" || diag "$ERR"
for h in server2 server3 node1 node2; do
    on server1 cat /etc/dchat/cluster.key | ct_exec "$h" sh -c 'umask 077 && cat > /etc/dchat/cluster.key'
done
keys=$(for h in "${HOSTS[@]}"; do echo "$(on "$h" stat -c '%a %U:%G' /etc/dchat/cluster.key) $(on "$h" md5sum /etc/dchat/cluster.key)"; done | sort -u)
is "$(wc -l <<<"$keys") ${keys%% *}" "1 600" "the same key on every host, 0600 root:root"

for h in "${HOSTS[@]}"; do
    run on "$h" dchatd -t
    like "$RC $OUT" "^0 /etc/dchat.conf: OK: node $h, role $(role_of "$h")" "$h: dchatd -t finds node $h, role $(role_of "$h")" \
        || diag "$OUT" "$ERR"
done

T_SOCKETS=$(now_ms)
for h in "${HOSTS[@]}"; do
    run on "$h" systemctl enable --now dchatd.socket "dchatd-$(role_of "$h").socket"
    is "$RC" 0 "$h: systemctl enable --now dchatd.socket dchatd-$(role_of "$h").socket" || diag "$ERR"
done
for h in "${PEERS[@]}"; do
    for u in "${USERS[@]}"; do
        { on "$h" useradd "$u" && on "$h" usermod -aG dchat "$u"; } || bail_out "cannot create user $u on $h"
    done
done
running=$(for h in "${HOSTS[@]}"; do on "$h" pgrep -x dchatd; done | grep -c .)
is "$running" 0 "sockets listen on every host, no dchatd runs yet"

# === 3. the first post starts the group; status and verify =================================

run_timed as lucy node1 dchatctl post "first post, the group starts"
COLD_POST_MS=$MS
is "$RC" 0 "the first post (lucy on node1) succeeds while the group starts on demand (${MS} ms)" || diag "$ERR"
for h in "${HOSTS[@]}"; do
    ok "$h: dchatd is running" wait_for -t 15 is_active "$h"
done
ACT_TO_UP_MS=$(( $(now_ms) - T_SOCKETS ))
ok "status on node1: a leader, the three servers at the same seq, lag 0" wait_until 20 in_step node1
G=$(group_of node1)
L1=${G%% *}
TERM1=$(term_of node1)
like "$G" "^server[123] [0-9]+ \| server1:up:[a-z]+:1:0 server2:up:[a-z]+:1:0 server3:up:[a-z]+:1:0$" \
     "status --json on node1: leader $L1, term $TERM1, every server at seq 1: $G"
run as bob node2 dchatctl status
like "$OUT" $'\ngroup: +3 servers, leader '"$L1"$', term [0-9]+\n' "status (text) on node2: 'group: 3 servers, leader $L1, term ...'" \
    || diag "$OUT"
ok "status on server2: the same group" in_step server2
run as lucy node2 dchatctl verify
like "$RC $OUT" "^0 1 entries compared on 3 servers: identical" "verify on node2 exits 0: 1 entry on 3 servers" || diag "$OUT" "$ERR"

for h in "${SERVERS[@]}"; do
    is "$(on "$h" stat -c '%a %U:%G' /var/lib/dchat/raft /var/lib/dchat/chat.log | tr '\n' ' ')" "750 dchat:dchat 640 dchat:dchat " \
       "$h: the Raft log in /var/lib/dchat/raft (0750) beside chat.log (0640), dchat:dchat"
    is "$(on "$h" ps -o user= -p "$(main_pid "$h")")" dchat "$h: dchatd runs as user dchat"
done
# nobody ran dchatctl on the servers: TCP connections (a peer's, the others') started them
for h in "${SERVERS[@]}"; do
    if [ "$h" = "$L1" ]; then want="this server leads the group in term $TERM1"
    else want="$L1 leads the group in term $TERM1"; fi
    like "$(events "$h" leader-elected)" "$want" "$h: journalctl -t dchatd DCHAT_EVENT=leader-elected: '$want'"
done
for h in "${PEERS[@]}"; do
    ok "$h: its last server-up links to the leader $L1" \
        wait_for -t 10 eval "events $h server-up | tail -n 1 | grep -q 'connected to the server $L1 '"
done

# === 4. users post; the leader's host loses power and comes back =============================

for h in "${PEERS[@]}"; do
    for u in "${USERS[@]}"; do poster_start "$h" "$u"; done
done
T_LOAD=$(now_s)
ok "every poster has $ACKS posts acknowledged" wait_for -t 120 acks_after 0 "$ACKS"

# the leader now (a busy machine may have seen an election since the start)
G=$(group_of node1)
L=${G%% *}
TERM_CUT=$(term_of node1)
like "$G" "^$L [0-9]+ \| .*$L:up:leader:" "the leader before the power cut: $L, term $TERM_CUT"
seq_off=$(as lucy node1 dchatctl view --json -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
T_OFF=$(now_s)
netns_unplug "$L"                       # the cable first: no FIN, no RST leaves the host
ct_kill "$L"
pass "$L powered off: cable pulled, SIGKILL to its PID 1 (at seq ~$seq_off)"

ok "the two servers left elect a new leader (status on node1)" wait_until 30 new_leader "$L"
T_ELECTED=$(now_s)
L2=$(leader_of node1)
TERM2=$(term_of node1)
cmp_ok "${TERM2:-0}" -gt "${TERM_CUT:-0}" "the new leader $L2 has a greater term ($TERM2 > $TERM_CUT)"
like "$(group_of node1)" " $L:down:-:-:-" "status on node1 shows $L unreachable"
run as lucy node1 dchatctl verify
like "$RC $OUT$ERR" "^1 .*$L" "verify while $L is down exits 1 and names $L" || diag "$OUT" "$ERR"
ok "posting goes on: every poster has $ACKS more posts acknowledged" wait_for -t 120 acks_after "$T_OFF" "$ACKS"
T_RESUMED=$(now_s)
GAPS=
for f in "$T"/load.node?.*; do
    case $f in *.stderr) continue ;; esac
    GAPS+="${f##*/load.} $(longest_gap "$T_OFF" "$T_RESUMED" "$f") ms, "
done
GAPS=${GAPS%, }

for h in "${SERVERS[@]}"; do
    [ "$h" = "$L" ] && continue
    ok "$h: journalctl shows leader-lost or a new leader-elected for term $TERM2" \
        wait_for -t 5 eval "events $h leader-elected | grep -q 'in term $TERM2\$'"
done
like "$(events "$L2" leader-elected | tail -n 1)" "this server leads the group in term $TERM2" \
     "$L2: 'this server leads the group in term $TERM2'"
ELECT_MS=$(ms_between "$T_OFF" "$(event_time "$L2" leader-elected "^this server leads the group in term $TERM2\$")")
SEEN_MS=$(ms_between "$T_OFF" "$T_ELECTED")
note "power cut -> $L2 elected: ${ELECT_MS} ms (its journal); -> seen by status on node1: ${SEEN_MS} ms;" \
     "  the longest wait between two acknowledged posts of each poster: $GAPS"
for h in "${PEERS[@]}"; do
    ok "$h: server-up to the new leader $L2 in the journal" \
        wait_for -t 10 eval "events $h server-up | tail -n 1 | grep -q 'connected to the server $L2 '"
done

# Power comes back: the cable, then the host boots from its disk.
netns_plug "$L"
T_ON=$(now_s)
ct_start "$L" "$(netns_path "$L")" "$L" "$T/disk/$L"
ok "$L boots again from its disk" ct_wait "$L" 60
REBOOT_MS=$(ms_between "$T_ON" "$(now_s)")
ok "$L: dchatd is started again, with no dchatctl on it (the leader's link, socket activation)" \
    wait_for -t 30 is_active "$L"
# (with Raft state it asks the others first, join.c: it learns the leader a moment later)
_learned_leader() { on "$L" journalctl -q -b 0 -t dchatd -o cat --no-pager | grep -q 'leads the group in term'; }
ok "$L: its new boot's journal learns who leads" wait_for -t 30 _learned_leader
ok "posting goes on with $L back: every poster has $ACKS more acknowledged" \
    wait_for -t 120 acks_after "$(now_s)" "$ACKS"

# what five hosts cost this machine, under load: every process of each container
# (systemd, journald, dbus, logind, dchatd, the posters), RSS summed (shared pages counted
# in each process: an upper bound)
ct_rss_mib() {
    find "${_CT_CG[$1]}" -name cgroup.procs -exec cat {} + 2>/dev/null |
        while read -r pid; do awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; done |
        awk '{ s += $1 } END { printf "%d", s / 1024 }'
}
RSS=
for h in "${HOSTS[@]}"; do RSS+="$h $(ct_rss_mib "$h") MiB, "; done
RSS=${RSS%, }
DCHATD_RSS=
for h in "${HOSTS[@]}"; do
    DCHATD_RSS+="$h $(on "$h" awk '/^VmRSS:/ { print $2 }' "/proc/$(main_pid "$h")/status") KiB, "
done
DCHATD_RSS=${DCHATD_RSS%, }

# the end of the load
for h in "${PEERS[@]}"; do on "$h" touch /run/dchat-load-stop; done
stopped=1
for k in "${!POSTER_PID[@]}"; do wait_pid_exit "${POSTER_PID[$k]}" 90 || stopped=0; done
ok "the posters stop" test $stopped = 1
T_LOAD_END=$(now_s)
ok "$L caught up: status on node1 shows every server at the same seq, lag 0" wait_until 60 in_step node1
CATCHUP_MS=$(ms_between "$T_ON" "$(now_s)")
G=$(group_of node1)
like "$G" " $L:up:follower:" "$L is a follower of $(leader_of node1) again: $G"

# === 5. nothing lost, nothing doubled ==========================================================

as lucy node2 dchatctl view --json >"$T/view.json"
view_rc=$?
is "$view_rc" 0 "dchatctl view --json on node2"
outs=()
for f in "$T"/load.node?.*; do case $f in *.stderr) ;; *) outs+=("$f") ;; esac; done
cat "${outs[@]}" >"$T/outcomes"
run "$TESTLIB/check-posts" "$T/outcomes" "$T/view.json" load
CHECK=$(head -n 1 <<<"$OUT")
is "$RC" 0 "every acknowledged post is stored exactly once, none twice, none that failed: $CHECK" \
    || diag "$(tail -n +2 <<<"$OUT")" "$ERR"
FENCES=$(check_fences "$T/view.json")
like "$FENCES" "^ok [0-9]+ entries$" "seqs without a gap, fences strictly increasing: $FENCES"
ACKED=$(sed -n 's/^acked \([0-9]*\) .*/\1/p' <<<"$CHECK")
FAILED=$(sed -n 's/^acked [0-9]* failed \([0-9]*\) .*/\1/p' <<<"$CHECK")
# README and dchatd(8): the group goes on posting while a minority of the servers is down
# (a peer that drops a silent leader tries the other servers before it fails posts at once:
# uplink_given_up)
ok "no post failed while the leader's host was off ($FAILED failed: $(grep -m1 $'\t' "$T/outcomes" | cut -f2))" \
    test "${FAILED:-1}" = 0
cmp_ok "${ACKED:-0}" -ge $(( ${#PEERS[@]} * ${#USERS[@]} * ACKS * 3 )) "the posters had at least $(( ${#PEERS[@]} * ${#USERS[@]} * ACKS * 3 )) posts acknowledged"
LAST=$(tail -n 1 "$T/view.json" | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
cmp_ok "${LAST:-0}" -gt "${seq_off:-0}" "the log went on past seq $seq_off, where $L lost power"

run as lucy node1 dchatctl verify
like "$RC $OUT" "^0 $LAST entries compared on 3 servers: identical" "verify on node1 exits 0: $LAST entries compared on 3 servers" \
    || diag "$OUT" "$ERR"
views=$(for h in "${HOSTS[@]}"; do on "$h" dchatctl view --json | md5sum; done | sort -u | wc -l)
is "$views" 1 "dchatctl view is the same on all five hosts"

# === 6. a server taken down for a while, as README's "Operating" says ===========================

LNOW=$(leader_of node1)
F=
for h in "${SERVERS[@]}"; do [ "$h" != "$LNOW" ] && [ "$h" != "$L" ] && F=$h; done
pid=$(main_pid "$F")
run on "$F" systemctl stop dchatd.service
is "$RC" 0 "$F: systemctl stop dchatd, its sockets left listening" || diag "$ERR"
restarted() { local p; p=$(main_pid "$1"); [ "$p" != 0 ] && [ "$p" != "$2" ] && is_active "$1"; }
ok "$F: the leader's next connection starts it again at once (socket activation)" wait_for -t 20 restarted "$F" "$pid"
run on "$F" systemctl stop dchatd.socket dchatd-server.socket dchatd.service
is "$RC $(on "$F" systemctl is-active dchatd.service dchatd-server.socket | tr '\n' ' ')" "0 inactive inactive " \
   "$F: systemctl stop dchatd.socket dchatd-server.socket dchatd: all down"
for i in 1 2 3 4 5; do
    run as lucy node$(( i % 2 + 1 )) dchatctl post "while $F is down for maintenance $i"
    is "$RC" 0 "a post while $F is down for maintenance ($i)" || diag "$ERR"
done
is "$(on "$F" systemctl is-active dchatd.service)" inactive "$F: stays down meanwhile"
run on "$F" systemctl start dchatd.socket dchatd-server.socket
is "$RC" 0 "$F: systemctl start dchatd.socket dchatd-server.socket" || diag "$ERR"
ok "$F is back and caught up: every server at the same seq, lag 0" wait_until 30 in_step node1
run as lucy node2 dchatctl verify
like "$RC $OUT" "^0 $(( LAST + 5 )) entries compared on 3 servers: identical" "verify exits 0: $(( LAST + 5 )) entries on 3 servers" \
    || diag "$OUT" "$ERR"

# === 7. the powered-off host's journal ========================================================

prev=$(on "$L" journalctl -q -b -1 -t dchatd -o cat --no-pager)
like "$prev" "this server leads the group in term $TERM_CUT" "$L: its previous boot's journal shows it leading in term $TERM_CUT"
is "$(on "$L" journalctl -q -b -1 -t dchatd DCHAT_EVENT=stopping -o cat --no-pager | grep -c .)" 0 \
   "$L: ... and no 'stopping': it lost power, it was not stopped"
CATCHUP_EV=$(events "$L" replica-caught-up -b 0 | tail -n 1)
[ -n "$CATCHUP_EV" ] && note "$L: $CATCHUP_EV"
# a server that was down or stopping is not a key problem: a connect or a first handshake
# message nobody answered, or a link closed before a word of the handshake, is no
# link-auth-failed (net.c); every link-auth-failed fails the test
for h in "${HOSTS[@]}"; do
    is "$(count_ev "$h" protocol-error)" 0 "$h: no protocol-error in its journal"
    ev=$(events "$h" link-auth-failed)
    is "$(grep -c . <<<"$ev")" 0 "$h: no link-auth-failed, though a server was powered off and others stopped" \
        || diag "$ev"
done

# === figures ==============================================================================

LOAD_S=$(awk -v a="$T_LOAD" -v b="$T_LOAD_END" 'BEGIN { printf "%.1f", b - a }')
TOTAL_S=$(( ($(date +%s%N) - T_START) / 1000000000 ))
note "figures: boot (5 containers in parallel) ${BOOT_ALL_MS} ms; root file system ${ROOTFS_S} s;" \
     "  first post, starting 5 daemons and electing a leader: ${COLD_POST_MS} ms (enable --now -> all in step: ${ACT_TO_UP_MS} ms);" \
     "  load: ${#PEERS[@]} peers x ${#USERS[@]} posters (dchatctl post in a loop) for ${LOAD_S} s: $CHECK;" \
     "  power cut of the leader $L -> $L2 elected ${ELECT_MS} ms (status on node1 saw it at ${SEEN_MS} ms);" \
     "  the longest wait between two acknowledged posts per poster: $GAPS;" \
     "  power back -> booted ${REBOOT_MS} ms, -> caught up (all in step, load stopped before) ${CATCHUP_MS} ms;" \
     "  RSS of each container under load: $RSS; of its dchatd: $DCHATD_RSS;" \
     "  whole test ${TOTAL_S} s"

done_testing
