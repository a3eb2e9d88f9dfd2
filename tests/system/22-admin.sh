#!/usr/bin/env bash
# tests/system/22-admin.sh — an admin's dchat under real systemd on three hosts (TAP):
# installed with the Debian package (make deb), the way README.md's "Installing on
# several hosts" says, in three containers (`server`, host name master; `node1`; `node2`;
# containers.sh, netns.sh as 20-three-hosts.sh uses them).  Then what an admin trips over
# (issue 15): a missing key that names its file; a reload refused with a non-zero exit of
# `systemctl reload` and `systemctl status` saying why; a peer stopped cleanly while
# another posts (its posts do not wait for it); a peer's port changed by README's
# sequence, socket activation still working on the new port; an upgrade to a newer
# package with posts in between (nothing lost, the config kept, dchatd restarted).
#
# As root, from the top of the tree:  prove -v -e '' tests/system/22-admin.sh
# Figures (package size, the longest post while a peer stopped, the upgrade) at the end.
# shellcheck disable=SC2016  # dpkg-query formats, and loops for the containers' shells
export DCHAT_TEST_TIMEOUT=${DCHAT_TEST_TIMEOUT:-900}
# shellcheck source-path=SCRIPTDIR source=../lib/lib.sh
. "$(dirname "$0")/../lib/lib.sh"
# shellcheck source=../lib/containers.sh
. "$TESTLIB/containers.sh"
# shellcheck source=../lib/netns.sh
. "$TESTLIB/netns.sh"

T_START=$(date +%s%N)
HOSTS=(server node1 node2)
declare -A HOSTNAME_OF=([server]=master [node1]=node1 [node2]=node2)
NODE2_PORT=8001

need_root
[ -e /proc/self/ns/net ] || skip_all "the kernel has no network namespaces (CONFIG_NET_NS)"
_ct_cgroot >/dev/null || skip_all "no cgroup v2 hierarchy is mounted (systemd-nspawn needs one)"
grep -qw overlay /proc/filesystems || skip_all "the kernel has no overlayfs (containers run on --volatile=overlay)"
if ! out=$("$TESTLIB/install-debs" debootstrap systemd-container iproute2 dpkg-dev 2>&1); then
    bail_out "cannot install debootstrap, systemd-container, dpkg-dev: $out"
fi
need_cmd debootstrap systemd-nspawn nsenter ip flock dpkg-deb

# --- helpers (as in 20-three-hosts.sh) ---------------------------------------------------------
on() { local h=$1; shift; ct_exec "$h" timeout -k 2 "$RUN_TIMEOUT" "$@"; }
main_pid() { on "$1" systemctl show -P MainPID dchatd.service; }
active()   { on "$1" systemctl is-active dchatd.service; }
now_ms()   { echo $(( $(date +%s%N) / 1000000 )); }
connected() {
    local s
    s=$(on "$1" dchatctl status --json 2>/dev/null) || return 1
    [[ $s == *'"server_connected":true'* ]] && [[ $s != *'"connected":false'* ]]
}
all_connected() { connected node1 && connected node2; }
write_config() {    # write_config HOST [EXTRA LINE...]
    local h=$1; shift
    {
        echo "# /etc/dchat.conf written by $TEST_NAME"
        echo "cluster = {"
        echo "  servers = ( { name = \"master\"; address = \"$(netns_addr server):8000\"; } );"
        echo "  peers   = ( { name = \"node1\";  address = \"$(netns_addr node1):8001\"; },"
        echo "              { name = \"node2\";  address = \"$(netns_addr node2):$NODE2_PORT\"; } );"
        echo "};"
        local l; for l in "$@"; do echo "$l"; done
    } | on "$h" tee /etc/dchat.conf >/dev/null
}
sockets_of() { [ "$1" = server ] && echo "dchatd.socket dchatd-server.socket" || echo "dchatd.socket dchatd-peer.socket"; }

ARTIFACTS=
teardown() {
    local h failed=0
    [ "${_T_FAILED:-0}" -gt 0 ] || [ "${_T_DONE:-1}" = 0 ] && failed=1
    if [ $failed = 1 ] && [ ${#_CT_PID[@]} -gt 0 ]; then
        ARTIFACTS=$(mktemp -d "${DCHAT_TEST_ARTIFACTS:-/var/tmp}/dchat-$TEST_NAME.XXXXXX")
        for h in "${!_CT_PID[@]}"; do
            ct_journal "$h" "$ARTIFACTS"
            diag "--- last lines of the journal of $h:" "$(tail -n 40 "$ARTIFACTS/$h.journal")"
        done
        cp "$CT_STATE"/*.log "$ARTIFACTS"/ 2>/dev/null
        diag "the journals of the hosts are in $ARTIFACTS"
    fi
    ct_down_all
    netns_down
}
_admin_exit() {
    local rc=$?
    teardown
    (exit $rc)
    _cleanup
}
declare -F _cleanup >/dev/null || bail_out "tests/lib/lib.sh has no _cleanup any more: update $0"
trap _admin_exit EXIT

# === 1. two builds of the package, the containers ===============================================
arch=$(dpkg --print-architecture)
for v in 1 2; do
    RUN_TIMEOUT=900 run nice make -s -C "$TOP" deb DEB_OUT="$T/v$v" DEB_VERSION="0.1.0+sys$v"
    is "$RC" 0 "make deb DEB_VERSION=0.1.0+sys$v" || bail_out "make deb: $ERR"
done
DEB1=$T/v1/dchat_0.1.0+sys1_$arch.deb DEB2=$T/v2/dchat_0.1.0+sys2_$arch.deb
DEB_SIZE=$(stat -c %s "$DEB1")
DEB_DEPENDS=$(dpkg-deb -f "$DEB1" Depends)

ct_rootfs || bail_out "no root file system for the containers"
netns_up "${HOSTS[@]}" 2>"$T/netns.err"
[ -s "$T/netns.err" ] && bail_out "$(cat "$T/netns.err")"
for h in "${HOSTS[@]}"; do ct_start "$h" "$(netns_path "$h")" "${HOSTNAME_OF[$h]}"; done
booted=1
for h in "${HOSTS[@]}"; do ct_wait "$h" 60 2>>"$T/boot.err" || booted=0; done
ok "server, node1, node2 boot systemd" test $booted = 1 || bail_out "$(cat "$T/boot.err")"

# === 2. installed with the package ==============================================================
for h in "${HOSTS[@]}"; do
    cp "$DEB1" "$(ct_root "$h")/tmp/"
    # the containers have no network: what the package depends on is in their root already
    run on "$h" apt-get install -y -q --no-install-recommends "/tmp/$(basename "$DEB1")"
    is "$RC" 0 "$h: apt-get install ./dchat_0.1.0+sys1_$arch.deb" || diag "$OUT" "$ERR"
done
for h in "${HOSTS[@]}"; do
    is "$(on "$h" dpkg-query -W -f '${Status} ${Version}' dchat)" "install ok installed 0.1.0+sys1" \
        "$h: dchat 0.1.0+sys1 installed"
    is "$(on "$h" stat -c '%a %U:%G' /var/lib/dchat /run/dchat | tr '\n' ' ')" "750 dchat:dchat 755 dchat:dchat " \
        "$h: postinst made the dchat user, /var/lib/dchat and /run/dchat"
    like "$(on "$h" journalctl --list-catalog 2>/dev/null | grep -c dchat)" '^[1-9][0-9]*$' \
        "$h: postinst indexed the catalog (journalctl --list-catalog)"
    is "$(on "$h" systemctl is-enabled dchatd.socket 2>&1) $(active "$h")" "disabled inactive" \
        "$h: systemd knows the units; nothing is started by the package"
done
for h in "${HOSTS[@]}"; do write_config "$h"; done

# === 3. the key missing: a start that names the file ===========================================
run on node1 dchatd -t
is "$RC" 1 "node1, no key: dchatd -t exits 1"
like "$ERR" "dchatd will not start: cannot open the cluster key /etc/dchat/cluster.key: No such file" \
    "... naming the missing file"
since=$(on node1 date '+%Y-%m-%d %H:%M:%S')
run on node1 systemctl start dchatd.socket dchatd-peer.socket dchatd.service
isnt "$RC" 0 "node1, no key: systemctl start dchatd fails"
run on node1 systemctl status --no-pager dchatd.service
like "$OUT" "/etc/dchat/cluster.key" "... and systemctl status dchatd names /etc/dchat/cluster.key"
unlike "$OUT" "243/CREDENTIALS" "... not status=243/CREDENTIALS"
unlike "$(on node1 journalctl -q --since "$since" -o cat)" "Failed to set up credentials" \
    "... no 'Failed to set up credentials' in the journal"
on node1 systemctl stop dchatd.socket dchatd-peer.socket dchatd.service
on node1 systemctl reset-failed

# the key (README): made on server, copied to the peers
run on server dchatctl keygen
is "$RC" 0 "server: dchatctl keygen" || diag "$ERR"
for h in node1 node2; do
    on server cat /etc/dchat/cluster.key | ct_exec "$h" sh -c 'umask 077 && cat > /etc/dchat/cluster.key'
done
for h in "${HOSTS[@]}"; do
    run on "$h" dchatd -t
    is "$RC" 0 "$h: dchatd -t with the key" || diag "$ERR"
    # shellcheck disable=SC2046
    run on "$h" systemctl enable --now $(sockets_of "$h")
    is "$RC" 0 "$h: systemctl enable --now $(sockets_of "$h")" || diag "$ERR"
done
run on node1 dchatctl post "first post"
is "$RC" 0 "node1 posts (starting node1's and master's dchatd)" || diag "$ERR"
run on node2 dchatctl post "second post"
is "$RC" 0 "node2 posts" || diag "$ERR"
ok "all linked" wait_for -t 20 all_connected

# === 4. a reload refused fails `systemctl reload` ================================================
write_config node1 'post_timeout_ms = 10000' 'this is no setting;'
bad_line=$(on node1 grep -n 'this is no setting' /etc/dchat.conf | cut -d: -f1)
pid=$(main_pid node1)
run on node1 systemctl reload dchatd
isnt "$RC" 0 "node1, a broken file: systemctl reload dchatd fails"
like "$(on node1 systemctl status --no-pager dchatd)" "reload refused: /etc/dchat.conf:$bad_line" \
    "... systemctl status shows 'reload refused: /etc/dchat.conf:$bad_line'"
like "$(on node1 journalctl -q -u dchatd DCHAT_EVENT=reload-refused -o cat)" "/etc/dchat.conf:$bad_line" \
    "... the journal's reload-refused event names the file:line"
is "$(main_pid node1) $(active node1)" "$pid active" "... dchatd runs on, the same process"
write_config node1 'post_timeout_ms = 8000;'
run on node1 systemctl reload dchatd
is "$RC" 0 "with the file repaired: systemctl reload dchatd succeeds" || diag "$ERR"
unlike "$(on node1 systemctl show -P StatusText dchatd)" "reload refused" "... and its status (STATUS=) no longer says refused"
like "$(on node1 journalctl -q -u dchatd DCHAT_EVENT=reloaded -o cat | tail -n 1)" "post_timeout_ms 10000 -> 8000" \
    "... the reloaded event names what changed"
write_config node1

# === 5. a peer stopped cleanly: the others' posts do not wait ===================================
# node1 posts 30 times, timing each; node2 stops (with its sockets: as a poweroff) meanwhile
on node1 sh -c 'for i in $(seq 1 30); do s=$(date +%s%N); dchatctl post "while node2 stops $i" >/dev/null 2>&1 \
    || echo fail; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); sleep 0.05; done > /tmp/lat' &
loop=$!; track_pid $loop
_lat_lines() { wc -l < "$(ct_root node1)/tmp/lat" 2>/dev/null || echo 0; }
wait_for -t 30 bash -c "[ \$(wc -l < '$(ct_root node1)/tmp/lat' 2>/dev/null || echo 0) -ge 5 ]"
at=$(_lat_lines)
run on node2 systemctl stop dchatd.socket dchatd-peer.socket dchatd.service
is "$RC" 0 "node2: systemctl stop of dchatd and its sockets, while node1 posts" || diag "$ERR"
wait "$loop"
lat=$(cat "$(ct_root node1)/tmp/lat")
is "$(grep -c fail <<< "$lat")" 0 "every post of node1 was stored"
STOP_MAX_MS=$(tail -n +"$((at + 1))" <<< "$lat" | sort -n | tail -n 1)
cmp_ok "${STOP_MAX_MS:-99999}" -lt 1500 \
    "no post of node1 waited for node2 (dead_after_ms, 3000): the longest after the stop took $STOP_MAX_MS ms"
like "$(on node1 journalctl -q -u dchatd DCHAT_EVENT=peer-left -o cat)" "node2 is stopping and left the cluster" \
    "node1 logged peer-left for node2"
# shellcheck disable=SC2046
on node2 systemctl start $(sockets_of node2)

# === 6. a peer's port changed, README's way ======================================================
# the advice this replaces: refused while dchatd runs
on node2 dchatctl status >/dev/null   # (starts node2's dchatd)
since=$(on node2 date '+%Y-%m-%d %H:%M:%S')
run on node2 systemctl restart dchatd-peer.socket
if [ "$RC" != 0 ]; then
    like "$(on node2 journalctl -q --since "$since" -o cat)" "Socket service dchatd.service already active, refusing" \
        "the old advice, systemctl restart dchatd-peer.socket with dchatd running, is refused (README says so)"
    on node2 systemctl stop dchatd.socket dchatd-peer.socket dchatd.service
    on node2 systemctl reset-failed
    # shellcheck disable=SC2046
    on node2 systemctl start $(sockets_of node2)
else
    pass "systemctl restart dchatd-peer.socket with dchatd running: accepted by this systemd"
fi
NODE2_PORT=9001
for h in "${HOSTS[@]}"; do write_config "$h"; done
on node2 mkdir -p /etc/systemd/system/dchatd-peer.socket.d
printf '[Socket]\nListenStream=\nListenStream=%s\n' "$NODE2_PORT" |
    on node2 tee /etc/systemd/system/dchatd-peer.socket.d/override.conf >/dev/null
run on node2 sh -e -c 'systemctl daemon-reload
                       systemctl stop dchatd.socket dchatd-peer.socket dchatd.service
                       systemctl start dchatd.socket dchatd-peer.socket'
is "$RC" 0 "node2: README's sequence (drop-in, stop the three, start the sockets)" || diag "$ERR"
like "$(on node2 systemctl show -P Listen dchatd-peer.socket)" ":$NODE2_PORT " "node2: dchatd-peer.socket listens on $NODE2_PORT"
for h in server node1; do
    run on "$h" systemctl restart dchatd
    is "$RC" 0 "$h: systemctl restart dchatd (the new file)" || diag "$ERR"
done
run on node1 dchatctl post "node2 moved to $NODE2_PORT"
is "$RC" 0 "node1 posts (node2 started by node1's link to its new port)" || diag "$ERR"
is "$(active node2)" active "node2's dchatd runs, socket-activated on the new port"
ok "all linked again" wait_for -t 20 all_connected
run on node2 dchatctl post "from the new port"
is "$RC" 0 "node2 posts" || diag "$ERR"
unlike "$(on node2 journalctl -q -u dchatd -o cat)" "systemd passed no 'peer' socket" "node2's dchatd never bound its port itself"
# socket activation keeps working: dchatd stopped, the socket stays, a connection starts it
on node2 systemctl stop dchatd.service
on node1 bash -c "exec 3<>/dev/tcp/$(netns_addr node2)/$NODE2_PORT" 2>/dev/null
node2_active() { [ "$(active node2)" = active ]; }
ok "after systemctl stop dchatd on node2, a connection to its new port starts it again" wait_for -t 15 node2_active

# === 7. an upgrade, with posts in between =========================================================
for h in "${HOSTS[@]}"; do cp "$DEB2" "$(ct_root "$h")/tmp/"; done
echo '# the admin was here' | on node1 tee -a /etc/dchat.conf >/dev/null
before=$(on server dchatctl view | wc -l)
on node1 sh -c 'for i in $(seq 1 20); do dchatctl post "during the upgrade $i" >/dev/null 2>&1 || echo "fail $i"; sleep 0.2; done > /tmp/up' &
loop=$!; track_pid $loop
declare -A PID_BEFORE
T_UP=$(now_ms)
for h in server node2 node1; do
    PID_BEFORE[$h]=$(main_pid "$h")
    run on "$h" apt-get install -y -q --no-install-recommends "/tmp/$(basename "$DEB2")"
    is "$RC" 0 "$h: apt-get install of 0.1.0+sys2 (an upgrade) while node1 posts" || diag "$OUT" "$ERR"
done
UPGRADE_MS=$(( $(now_ms) - T_UP ))
wait "$loop"
is "$(cat "$(ct_root node1)/tmp/up")" "" "every post during the upgrade was stored"
for h in "${HOSTS[@]}"; do
    is "$(on "$h" dpkg-query -W -f '${Version}' dchat)" 0.1.0+sys2 "$h: dchat 0.1.0+sys2"
    if [ "${PID_BEFORE[$h]}" != 0 ]; then
        new=$(main_pid "$h")
        ok "$h: the running dchatd was restarted on the new binary (MainPID ${PID_BEFORE[$h]} -> $new)" \
            test "$new" != 0 -a "$new" != "${PID_BEFORE[$h]}"
    fi
done
ok "node1: the upgrade kept the admin's /etc/dchat.conf" on node1 grep -q '^# the admin was here' /etc/dchat.conf
run on node1 dchatctl post "after the upgrade"
is "$RC" 0 "node1 posts after the upgrade" || diag "$ERR"
view=$(on server dchatctl view)
is "$(grep -c 'during the upgrade' <<< "$view")" 20 "the log has the 20 posts of the upgrade, once each"
is "$(grep 'during the upgrade' <<< "$view" | sort | uniq -d | wc -l)" 0 "... none twice"
cmp_ok "$(wc -l <<< "$view")" -eq $((before + 21)) "... and lost nothing before them"
run on server dchatctl verify
is "$RC" 0 "dchatctl verify: the server's log is whole" || diag "$OUT" "$ERR"

TOTAL_S=$(( ($(date +%s%N) - T_START) / 1000000000 ))
diag "figures: package $(basename "$DEB1") $DEB_SIZE bytes, Depends: $DEB_DEPENDS;" \
     "  the longest post of node1 after node2's clean stop: ${STOP_MAX_MS} ms (dead_after_ms: 3000);" \
     "  the upgrade of three hosts with posts in between: ${UPGRADE_MS} ms; whole test ${TOTAL_S} s"

done_testing
