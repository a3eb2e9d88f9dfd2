# shellcheck shell=bash
# tests/lib/netns.sh — a few "hosts" as network namespaces on one private L2 segment,
# for the system tests (sourced).  Needs root, iproute2 and util-linux.
#
#   netns_up HOST...          a network namespace per HOST, each with eth0 =
#                             $NETNS_SUBNET.N/24 (N = 1, 2, ... in the order given) plugged
#                             into bridge br0 of one more namespace (the "switch")
#   netns_path HOST           a path naming HOST's namespace (/proc/PID/ns/net), e.g. for
#                             systemd-nspawn --network-namespace-path
#   netns_addr HOST           HOST's address
#   netns_exec HOST CMD...    CMD in HOST's network namespace
#   netns_unplug HOST         pull HOST's cable: its port on the switch goes down
#   netns_plug HOST           plug it back in
#   netns_cut A B             drop everything between A and B only (iptables, in both
#                             namespaces); each still reaches every other host
#   netns_uncut A B           undo netns_cut
#   netns_shape HOST DELAY_MS LOSS_PCT [SEED]
#                             delay and loss on every packet into and out of HOST's
#                             eth0: iptables NFQUEUE to tests/lib/nfq-delay in HOST's
#                             namespace (the kernel may lack netem); its figures go to
#                             $NETNS_SHAPE_LOG.HOST when it stops
#   netns_unshape HOST        remove the rules, stop nfq-delay
#   netns_down                end it all (idempotent; safe after a partial netns_up)
#
# Each namespace is held by a process of ours (`unshare --net sleep`), not named with
# `ip netns add`: nothing is written to /run/netns or /etc/netns, so several test runs
# at once cannot step on each other, and a namespace goes away with its holder and its
# last user.  Nothing is added to the root namespace either: each veth pair is created
# directly between the switch and a host namespace, no namespace has a default route or
# a link to the outside, so the /24 (chosen among 10.231.0.0/24 .. 10.231.255.0/24, one
# the root namespace does not use) is reachable only between these hosts.  netns_up sets
# NETNS_SUBNET (the first three octets) unless the caller did.  Only the holders started
# here are signalled.

NETNS_HOSTS=()
NETNS_SUBNET=${NETNS_SUBNET:-}
# the longest a holder lives, in case netns_down never runs (the test was SIGKILLed)
NETNS_HOLD_SECS=${NETNS_HOLD_SECS:-3600}
declare -A _NETNS_PID=()
declare -A _NETNS_SHAPER=()
NETNS_NFQ_DELAY=${NETNS_NFQ_DELAY:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nfq-delay}
NETNS_SHAPE_LOG=${NETNS_SHAPE_LOG:-${TMPDIR:-/tmp}/netns-shape}

_netns_die() { echo "netns.sh: $*" >&2; return 1; }

# _netns_pick_subnet: a 10.231.X prefix that no interface of the root namespace uses
_netns_pick_subnet() {
    local used x i
    used=$(ip -4 -o addr show 2>/dev/null | awk '{print $4}')
    for ((i = 0; i < 64; i++)); do
        x=$(( RANDOM % 256 ))
        grep -q "^10\.231\.$x\." <<<"$used" || { NETNS_SUBNET=10.231.$x; return 0; }
    done
    _netns_die "no free 10.231.X.0/24 in the root namespace"
}

netns_path() { echo "/proc/${_NETNS_PID[$1]:?no namespace for $1}/ns/net"; }

netns_addr() {
    local i
    for i in "${!NETNS_HOSTS[@]}"; do
        [ "${NETNS_HOSTS[$i]}" = "$1" ] && { echo "$NETNS_SUBNET.$((i + 1))"; return 0; }
    done
    _netns_die "unknown host $1"
}

netns_exec() { local h=$1; shift; nsenter --net="$(netns_path "$h")" "$@"; }

# _netns_new NAME: a namespace held by a sleeping process; waits until it is in it
_netns_new() {
    local pid i
    unshare --net sleep "$NETNS_HOLD_SECS" </dev/null >/dev/null 2>&1 &
    pid=$!
    _NETNS_PID[$1]=$pid
    for ((i = 0; i < 100; i++)); do
        [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
        sleep 0.01
    done
    kill -0 "$pid" 2>/dev/null || { _netns_die "the holder of namespace $1 died"; return 1; }
    netns_exec "$1" ip link set lo up
}

netns_up() {
    NETNS_HOSTS=("$@")
    [ -n "$NETNS_SUBNET" ] || _netns_pick_subnet || return 1
    if ip -4 -o addr show | grep -q " $NETNS_SUBNET\."; then
        _netns_die "$NETNS_SUBNET.0/24 is in use in the root namespace"; return 1
    fi
    local h i
    _netns_new _switch || return 1
    netns_exec _switch ip link add br0 type bridge || return 1
    netns_exec _switch ip link set br0 up || return 1
    for i in "${!NETNS_HOSTS[@]}"; do
        h=${NETNS_HOSTS[$i]}
        _netns_new "$h" || return 1
        # created in the switch, the peer end moved at once into the host's namespace
        netns_exec _switch ip link add "p-$h" type veth peer name eth0 netns "${_NETNS_PID[$h]}" || return 1
        netns_exec _switch ip link set "p-$h" master br0 up || return 1
        netns_exec "$h" ip addr add "$NETNS_SUBNET.$((i + 1))/24" dev eth0 || return 1
        netns_exec "$h" ip link set eth0 up || return 1
    done
    # The bridge forwards at once (no STP); wait until the first host reaches each other
    # one: bash's /dev/tcp to a closed port, "connection refused" proves the path works.
    local first=${NETNS_HOSTS[0]} a ok
    for h in "${NETNS_HOSTS[@]:1}"; do
        a=$(netns_addr "$h"); ok=0
        for ((i = 0; i < 50; i++)); do
            if netns_exec "$first" timeout 1 bash -c "exec 3<>/dev/tcp/$a/9" 2>&1 | grep -q 'refused'; then
                ok=1; break
            fi
            sleep 0.1
        done
        [ $ok = 1 ] || { _netns_die "$first cannot reach $h ($a)"; return 1; }
    done
}

netns_unplug() { netns_exec _switch ip link set "p-$1" down; }
netns_plug()   { netns_exec _switch ip link set "p-$1" up; }

_netns_cut_rules() {    # _netns_cut_rules -A|-D A B
    local op=$1 a=$2 b=$3 aa ab
    aa=$(netns_addr "$a") && ab=$(netns_addr "$b") || return 1
    netns_exec "$a" iptables -w "$op" INPUT  -s "$ab" -j DROP &&
    netns_exec "$a" iptables -w "$op" OUTPUT -d "$ab" -j DROP &&
    netns_exec "$b" iptables -w "$op" INPUT  -s "$aa" -j DROP &&
    netns_exec "$b" iptables -w "$op" OUTPUT -d "$aa" -j DROP
}
netns_cut()   { _netns_cut_rules -A "$1" "$2"; }
netns_uncut() { _netns_cut_rules -D "$1" "$2"; }

_NETNS_NFQ_RULES=("OUTPUT -o eth0" "INPUT -i eth0")
netns_shape() {
    local h=$1 d=$2 l=$3 seed=${4:-} pid i r
    [ -x "$NETNS_NFQ_DELAY" ] || { _netns_die "$NETNS_NFQ_DELAY is missing (make tests/lib/nfq-delay)"; return 1; }
    [ -z "${_NETNS_SHAPER[$h]:-}" ] || netns_unshape "$h"
    : > "$NETNS_SHAPE_LOG.$h.out"
    # nsenter itself, not netns_exec: a function in the background would be a subshell,
    # and $! its PID; nsenter execs nfq-delay, so $! is nfq-delay's
    nsenter --net="$(netns_path "$h")" "$NETNS_NFQ_DELAY" -q 0 -d "$d" -l "$l" ${seed:+-s "$seed"} </dev/null \
        >"$NETNS_SHAPE_LOG.$h.out" 2>"$NETNS_SHAPE_LOG.$h" &
    pid=$!
    _NETNS_SHAPER[$h]=$pid
    for ((i = 0; i < 100; i++)); do
        grep -q '^ready$' "$NETNS_SHAPE_LOG.$h.out" && break
        kill -0 "$pid" 2>/dev/null || { _netns_die "nfq-delay in $h died: $(cat "$NETNS_SHAPE_LOG.$h")"; return 1; }
        sleep 0.02
    done
    grep -q '^ready$' "$NETNS_SHAPE_LOG.$h.out" || { _netns_die "nfq-delay in $h did not start"; return 1; }
    # --queue-bypass: should nfq-delay be gone, packets pass instead of being dropped
    for r in "${_NETNS_NFQ_RULES[@]}"; do
        # shellcheck disable=SC2086
        netns_exec "$h" iptables -w -A $r -j NFQUEUE --queue-num 0 --queue-bypass || return 1
    done
}
netns_unshape() {
    local h=$1 pid=${_NETNS_SHAPER[$1]:-} r
    [ -n "$pid" ] || return 0
    for r in "${_NETNS_NFQ_RULES[@]}"; do
        # shellcheck disable=SC2086
        netns_exec "$h" iptables -w -D $r -j NFQUEUE --queue-num 0 --queue-bypass 2>/dev/null
    done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    unset "_NETNS_SHAPER[$h]"
    return 0
}

netns_down() {
    local n
    for n in "${!_NETNS_SHAPER[@]}"; do kill -TERM "${_NETNS_SHAPER[$n]}" 2>/dev/null; done
    for n in "${!_NETNS_SHAPER[@]}"; do wait "${_NETNS_SHAPER[$n]}" 2>/dev/null; done
    _NETNS_SHAPER=()
    # our own children (sleep): SIGTERM ends them at once; wait reaps them
    for n in "${!_NETNS_PID[@]}"; do kill -TERM "${_NETNS_PID[$n]}" 2>/dev/null; done
    for n in "${!_NETNS_PID[@]}"; do wait "${_NETNS_PID[$n]}" 2>/dev/null; done
    _NETNS_PID=()
    return 0
}
