# shellcheck shell=bash disable=SC2034  # CT_* variables are for the caller
# tests/lib/containers.sh — Debian containers with systemd as PID 1, for the system tests
# (sourced).  Needs root, debootstrap and systemd-container (systemd-nspawn).
#
#   ct_rootfs                 build, or reuse, the cached minimal Debian root (sets CT_ROOTFS)
#   ct_start NAME NETNS HOST [DISK]
#                             boot container NAME in the background, in the network
#                             namespace at path NETNS, with host name HOST; with DISK (a
#                             directory of the host), its writes go to DISK and outlive
#                             it: a later ct_start with the same DISK boots the same host
#                             again, with what it had written (installed packages, config,
#                             enabled units, /var/lib)
#   ct_wait NAME [SECS]       until NAME's systemd reports running/degraded; CT_BOOT_MS[NAME]
#                             = time from ct_start to then
#   ct_exec NAME CMD...       CMD inside NAME (all its namespaces and its root), as root
#   ct_root NAME              a host path of NAME's root file system (/proc/PID/root)
#   ct_journal NAME DIR       NAME's journal into DIR/NAME.journal (short-precise) and
#                             DIR/NAME.export (journalctl -o export)
#   ct_down NAME / ct_down_all  clean poweroff (bounded), then the cgroup goes (and with
#                             ct_down_all, the disks' mounts)
#   ct_kill NAME              pull NAME's plug: SIGKILL to its PID 1, so that every process
#                             in it dies at once and nothing shuts down or syncs; then the
#                             cgroup goes.  (The host's page cache keeps what was written
#                             but not synced: a crash of every process, not a power cut.)
#
# The root: `debootstrap --variant=minbase` of the host's Debian suite with CT_PACKAGES,
# built once into $CT_CACHE/rootfs-SUITE-KEY (KEY: a hash of the suite, the packages and
# the recipe below, so a change rebuilds it) under a lock, and shared read-only: each
# container runs on an overlay whose writes go to a tmpfs that vanishes at poweroff
# (--volatile=overlay), or, given a DISK, to DISK/upper: an overlay mounted on DISK/root
# once, in a mount namespace of its own (held by a sleeping process until ct_down_all),
# where nspawn runs.  Every boot of that host uses the same mount: two overlays on one
# upper directory at once (a new boot's while processes of the killed one still hold
# theirs) would show files missing.  The mirror is the one apt is configured with.
#
# Hosts whose PID 1 is not systemd (no machined, no D-Bus) are fine: nspawn runs with
# --register=no --keep-unit in a cgroup (v2) this library creates, one per container,
# and is entered with nsenter(1).  Only the nspawn processes started here are signalled.
#
# After ct_rootfs, CT_ROOTFS_BUILT_S is set (seconds) when the root was built just now.
#
# Environment: CT_STATE (default: a directory under $T or /tmp) keeps PID files and
# console logs; DCHAT_TEST_CACHE (default /var/cache/dchat-test) the root;
# DCHAT_TEST_MIRROR the Debian mirror (default: apt's, else http://deb.debian.org/debian).

CT_CACHE=${DCHAT_TEST_CACHE:-/var/cache/dchat-test}
CT_PACKAGES=(systemd systemd-sysv dbus iproute2 procps libconfig9 libbsd0 libsodium23 libedit2 libraft2 libuv1)
# Units that only cost boot time in a network-less test container.
CT_MASK=(systemd-networkd-wait-online.service getty@tty1.service console-getty.service
         apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer
         systemd-timesyncd.service)
CT_PACKAGES+=(libedit2)  # dchatctl's line editing (dchatctl chat)
CT_RECIPE=1             # bump when the customisation in _ct_customise changes
CT_ROOTFS=
CT_ROOTFS_BUILT_S=
CT_STATE=${CT_STATE:-}
# the longest a disk's holder lives, in case ct_down_all never runs (the test was SIGKILLed)
CT_HOLD_SECS=${CT_HOLD_SECS:-3600}
declare -A CT_BOOT_MS=() _CT_T0=() _CT_PID=() _CT_CG=() _CT_DISK=()

_ct_err() { echo "containers.sh: $*" >&2; }

_ct_alive() {   # exists and is not a zombie
    local s
    s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

_ct_state() {
    if [ -z "$CT_STATE" ]; then
        CT_STATE=${T:-/tmp}/containers
    fi
    mkdir -p "$CT_STATE"
}

_ct_suite() { (. /etc/os-release && echo "${VERSION_CODENAME:-}"); }

# The Debian archive apt uses for the main suite (deb822 or one-line sources alike).
_ct_mirror() {
    local m=${DCHAT_TEST_MIRROR:-}
    # shellcheck disable=SC2016 # apt's own $(FIELD) syntax, not the shell's
    [ -n "$m" ] || m=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(LABEL)' 'Created-By: Packages' 2>/dev/null \
                       | awk -v s="$1" '$2 == s && $3 == "Debian" { print $1; exit }')
    echo "${m:-http://deb.debian.org/debian/}"
}

_ct_customise() {
    local r=$1 u
    rm -f "$r/etc/hostname"         # systemd keeps nspawn's --hostname
    : > "$r/etc/machine-id"         # empty: a fresh id per boot, no first-boot setup
    rm -f "$r/etc/resolv.conf"      # nothing to resolve on a private segment
    for u in "${CT_MASK[@]}"; do ln -sf /dev/null "$r/etc/systemd/system/$u"; done
}

ct_rootfs() {
    local suite key mirror tmp lock rc=0 t0
    suite=$(_ct_suite)
    [ -n "$suite" ] || { _ct_err "cannot tell the Debian suite from /etc/os-release"; return 1; }
    key=$(printf '%s\n' "$suite" "${CT_PACKAGES[*]}" "${CT_MASK[*]}" "$CT_RECIPE" | md5sum | cut -c1-10)
    CT_ROOTFS=$CT_CACHE/rootfs-$suite-$key
    [ -e "$CT_ROOTFS/.complete" ] && return 0
    _ct_state
    mkdir -p "$CT_CACHE" || return 1
    lock=$CT_CACHE/.lock
    exec {_ct_lockfd}>"$lock" || return 1
    # another test may be building the same root: wait for it (debootstrap takes ~1 min)
    flock -w 1200 "$_ct_lockfd" || { _ct_err "timed out waiting for $lock"; exec {_ct_lockfd}>&-; return 1; }
    if [ ! -e "$CT_ROOTFS/.complete" ]; then
        mirror=$(_ct_mirror "$suite")
        if [ -z "$mirror" ]; then
            _ct_err "no Debian mirror for $suite in apt's configuration"; rc=1
        else
            t0=$(date +%s)
            tmp=$(mktemp -d "$CT_CACHE/build.XXXXXX") && chmod 0755 "$tmp"
            # A private mount namespace: whatever debootstrap mounts in the target goes
            # away with it, even when debootstrap fails half way.
            local pk; pk=$(IFS=,; echo "${CT_PACKAGES[*]}")
            if unshare -m --propagation private \
                    debootstrap --variant=minbase --include="$pk" "$suite" "$tmp" "$mirror" \
                    >"$CT_STATE/debootstrap.log" 2>&1; then
                _ct_customise "$tmp"
                rm -rf "$CT_ROOTFS"
                mv "$tmp" "$CT_ROOTFS" && touch "$CT_ROOTFS/.complete" || rc=1
                CT_ROOTFS_BUILT_S=$(( $(date +%s) - t0 ))
                # roots of older recipes are of no use any more
                local old
                for old in "$CT_CACHE"/rootfs-*; do
                    [ "$old" = "$CT_ROOTFS" ] || rm -rf "$old"
                done
            else
                _ct_err "debootstrap failed; the end of its log ($CT_STATE/debootstrap.log):"
                tail -n 20 "$CT_STATE/debootstrap.log" >&2
                rm -rf "$tmp"; rc=1
            fi
        fi
    fi
    flock -u "$_ct_lockfd"; exec {_ct_lockfd}>&-
    return $rc
}

# cgroup v2: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one
_ct_cgroot() {
    if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then echo /sys/fs/cgroup
    elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then echo /sys/fs/cgroup/unified
    else return 1; fi
}

# the host PID of NAME's PID 1
_ct_leader() {
    local cg=${_CT_CG[$1]:-}
    [ -n "$cg" ] || return 1
    head -n1 "$cg/payload/init.scope/cgroup.procs" 2>/dev/null | grep . \
        || head -n1 "$cg/payload/cgroup.procs" 2>/dev/null | grep .
}

# _ct_disk DISK: DISK/root mounted (an overlay of the root, writes to DISK/upper) in the
# mount namespace of a holder process, started unless DISK has one; its PID in _CT_DISK
_ct_disk() {
    local disk=$1 pid i
    [ -n "${_CT_DISK[$disk]:-}" ] && _ct_alive "${_CT_DISK[$disk]}" && return 0
    mkdir -p "$disk/upper" "$disk/work" "$disk/root" || return 1
    # unshare and sh exec: $! is the holder, whose namespace nobody else needs to keep
    # shellcheck disable=SC2016 # expanded by that sh
    unshare -m --propagation private sh -c '
        mount -t overlay dchat-ct -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root" || exit 1
        echo mounted; exec sleep "$3"' sh "$CT_ROOTFS" "$disk" "$CT_HOLD_SECS" </dev/null >"$disk/holder.out" 2>&1 &
    pid=$!
    for ((i = 0; i < 200; i++)); do
        grep -q '^mounted$' "$disk/holder.out" 2>/dev/null && break
        _ct_alive "$pid" || break
        sleep 0.05
    done
    if ! grep -q '^mounted$' "$disk/holder.out" 2>/dev/null; then
        _ct_err "cannot mount the overlay for $disk: $(cat "$disk/holder.out")"
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        return 1
    fi
    _CT_DISK[$disk]=$pid
}

ct_start() {
    local name=$1 netns=$2 host=$3 disk=${4:-} root cg
    [ -n "$CT_ROOTFS" ] || { _ct_err "ct_rootfs first"; return 1; }
    _ct_state
    root=$(_ct_cgroot) || { _ct_err "no cgroup v2 hierarchy"; return 1; }
    if [ -n "$disk" ]; then _ct_disk "$disk" || return 1; fi
    # nspawn splits the cgroup it runs in into payload/ and supervisor/; nobody delegates
    # one to us on a host without systemd, so make our own (unique per test run)
    cg=$root/dchat-test-$$-$name
    mkdir "$cg" || return 1
    _CT_CG[$name]=$cg
    _CT_T0[$name]=$(date +%s%N)
    (
        echo "$BASHPID" > "$cg/cgroup.procs" || exit 1
        export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
        set -- --quiet --boot --register=no --keep-unit --network-namespace-path="$netns" \
               --machine="$name" --hostname="$host" --console=passive
        if [ -z "$disk" ]; then
            exec systemd-nspawn "$@" --volatile=overlay --directory="$CT_ROOTFS"
        fi
        # nsenter execs (no fork for a mount namespace): $! stays nspawn's PID
        exec nsenter --mount="/proc/${_CT_DISK[$disk]}/ns/mnt" systemd-nspawn "$@" --directory="$disk/root"
    ) </dev/null >>"$CT_STATE/$name.console.log" 2>&1 &
    _CT_PID[$name]=$!
}

ct_wait() {
    local name=$1 secs=${2:-60} st='' end left
    end=$(( $(date +%s) + secs ))
    while left=$(( end - $(date +%s) )); [ "$left" -gt 0 ]; do
        if ! _ct_alive "${_CT_PID[$name]}"; then
            _ct_err "systemd-nspawn for $name exited; its console:"; cat "$CT_STATE/$name.console.log" >&2
            return 1
        fi
        if _ct_leader "$name" >/dev/null; then
            # --wait: until the boot is over (running, or degraded if a unit failed)
            st=$(ct_exec "$name" timeout "$left" systemctl is-system-running --wait 2>/dev/null)
            case "$st" in
                running|degraded)
                    CT_BOOT_MS[$name]=$(( ($(date +%s%N) - ${_CT_T0[$name]}) / 1000000 ))
                    return 0 ;;
            esac
        fi
        sleep 0.1
    done
    _ct_err "$name did not finish booting in ${secs}s (state '${st:-none}'); its console:"
    cat "$CT_STATE/$name.console.log" >&2
    [ -n "$st" ] && ct_exec "$name" systemctl list-jobs --no-pager >&2
    return 1
}

ct_exec() {
    local name=$1 lp; shift
    lp=$(_ct_leader "$name") || { _ct_err "container $name is not running"; return 125; }
    # every namespace of its PID 1, its root and working directory; a clean environment
    nsenter -t "$lp" -a -r -w env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

ct_root() { local lp; lp=$(_ct_leader "$1") || return 1; echo "/proc/$lp/root"; }

ct_journal() {
    local name=$1 dir=$2
    ct_exec "$name" journalctl --no-pager -o short-precise > "$dir/$name.journal" 2>&1
    ct_exec "$name" journalctl -o export > "$dir/$name.export" 2>/dev/null
}

# _ct_poweroff NAME: what `machinectl poweroff` does, SIGRTMIN+4 to the container's systemd.
# Not `systemctl poweroff` through ct_exec: systemd-shutdown SIGSTOPs every process of the
# container before it signals them, nsenter's child among them; nsenter, seeing its child
# stopped, stops itself, so nobody reaps that child and the container's PID namespace
# never ends (the kernel waits for it in zap_pid_ns_processes) while nsenter waits forever.
_ct_poweroff() { local lp; lp=$(_ct_leader "$1") && kill -s SIGRTMIN+4 "$lp" 2>/dev/null; }

ct_down() {
    local name=$1 pid=${_CT_PID[$1]:-} cg=${_CT_CG[$1]:-} i
    if [ -n "$pid" ] && _ct_alive "$pid"; then
        # The container's systemd powers off, then nspawn exits; SIGTERM to nspawn asks
        # the same of a container that does not answer; SIGKILL as the last resort.
        _ct_poweroff "$name" || kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < 150; i++)); do _ct_alive "$pid" || break; sleep 0.1; done
        if _ct_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null
            for ((i = 0; i < 50; i++)); do _ct_alive "$pid" || break; sleep 0.1; done
        fi
        if _ct_alive "$pid"; then
            _ct_err "systemd-nspawn $pid ($name) did not stop: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
            for ((i = 0; i < 50; i++)); do _ct_alive "$pid" || break; sleep 0.1; done
        fi
    fi
    [ -n "$pid" ] && wait "$pid" 2>/dev/null
    # bottom-up: a cgroup goes only once it is empty and has no children
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$cg" ] && _ct_err "could not remove cgroup $cg"
    fi
    unset "_CT_PID[$name]" "_CT_CG[$name]"
    return 0
}

ct_kill() {
    local name=$1 pid=${_CT_PID[$1]:-} lp i
    lp=$(_ct_leader "$name") && kill -KILL "$lp" 2>/dev/null
    # PID 1 gone, the kernel kills the rest of its PID namespace, and nspawn exits
    for ((i = 0; i < 100; i++)); do { [ -n "$pid" ] && _ct_alive "$pid"; } || break; sleep 0.1; done
    ct_down "$name"
}

ct_down_all() {
    local n pids=()
    # power them all off at once, then wait for each
    for n in "${!_CT_PID[@]}"; do
        _ct_alive "${_CT_PID[$n]}" && _ct_poweroff "$n"
    done
    for n in "${!_CT_PID[@]}"; do pids+=("$n"); done
    for n in "${pids[@]}"; do ct_down "$n"; done
    # then the disks' holders: their overlays go with their namespaces
    for n in "${!_CT_DISK[@]}"; do
        kill "${_CT_DISK[$n]}" 2>/dev/null
        wait "${_CT_DISK[$n]}" 2>/dev/null
        unset "_CT_DISK[$n]"
    done
    # On a host without systemd, nspawn leaves bookkeeping in /run/systemd/nspawn; drop
    # it once no nspawn at all runs (looking at other processes, never signalling them)
    if [ ! -d /run/systemd/system ] && [ -d /run/systemd/nspawn ] && ! pgrep -x systemd-nspawn >/dev/null; then
        rm -rf /run/systemd/nspawn
    fi
    return 0
}
