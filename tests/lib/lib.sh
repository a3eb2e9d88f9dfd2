# shellcheck shell=bash
# tests/lib/lib.sh — sourced by every shell test of dchat.
#
#   #!/usr/bin/env bash
#   . "$(dirname "$0")/../lib/lib.sh"
#   need_root
#   cluster_start 2 'post_timeout_ms = 1500;'
#   run ctl node1 post hello;  is "$RC" 0 "post exits 0"
#   done_testing
#
# TAP:       plan N, ok NAME CMD..., nok NAME CMD..., pass/fail NAME, is GOT WANT NAME,
#            isnt, like GOT ERE NAME, unlike, skip NAME WHY, todo_ok NAME WHY CMD... (a known
#            bug: TAP's "# TODO", whose failure does not fail the test and whose success
#            prove reports as unexpected), diag/note MSG..., skip_all WHY,
#            bail_out WHY, done_testing.  (`done` is a bash keyword, hence done_testing.)
#            The exit status is the number of failed tests (at most 254), or 255
#            when the script ended early or ran a different number of tests than planned.
# Running:   run CMD... sets RC, OUT (stdout) and ERR (stderr), bounded by $RUN_TIMEOUT
#            seconds; wait_for [-t SECS] CMD... polls CMD every 0.1 s (default 10 s).
# Cluster:   cluster_start [N_PEERS [CONFIG_LINE...]] — a server "master" (or, with
#            N_SERVERS=3, 5 or 7 set before, a server group master, master2, ...) and peers
#            node1..nodeN on 127.0.0.1 at free ports, each a real ./dchatd with its own
#            $T/NAME/run (RUNTIME_DIRECTORY) and $T/NAME/state (STATE_DIRECTORY),
#            stderr to $T/NAME.log; returns once every node answers and every peer is
#            linked to the server and to the other peers.
#            cluster_config ... only writes $CONF (for tests that start dchatd themselves).
#            Every cluster gets a fresh key in $KEY (key_file in $CONF): links are encrypted.
#            ctl NODE ARGS... (dchatctl -s NODE's socket), ctl_as USER NODE ARGS...,
#            node_pid, node_sock, node_log, node_state, node_port, node_start NAME,
#            node_stop NAME (SIGTERM, bounded wait; NODE_RC[NAME] = exit status),
#            node_kill NAME (SIGKILL), node_alive, node_hup, wait_connected,
#            events NODE EVENT (its event= lines; EVENT may be an ERE like "a|b"), count_events, wait_event,
#            $EV_LINE (a regex for the start of a stderr line: time=... no=N),
#            ev_field KEY (the value of KEY= in an event line on stdin).
# Groups:    group_leader (the live server that leads now, by its log), last_seq NODE,
#            servers_identical (every live server holds the same log: `dchatctl verify`
#            where dchatctl has it, else their `view --json` compared), bench_acks_after NS,
#            bench_resumed_after NS, group_ask AS NODE (a GROUP question to server NODE as
#            server AS: its answer's fields).
# Processes: everything a test starts in the background is registered with
#            track_pid PID; the EXIT trap stops exactly those (SIGTERM, then SIGKILL
#            after a bounded wait) and removes $T.  Never pkill/killall.
#            Do not start nodes inside $(...): the PID would be lost with the subshell.
# Journal:   need_journal [--catalog FILE] re-execs the test under
#            tests/lib/journald-isolated (call it before anything is started).
#
# Environment: DCHAT_TEST_KEEP=1 keeps $T and prints where; DCHAT_TEST_VERBOSE=1 shows
#            the nodes' logs on failure in full instead of their tails;
#            DCHAT_TEST_TIMEOUT=SECS (default 240) stops a test that runs longer;
#            DCHAT_DAEMON_WRAPPER="valgrind -q ..." runs every dchatd under a wrapper.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTLIB=$TOP/tests/lib
DCHATD=${DCHATD:-$TOP/dchatd}
DCHATCTL=${DCHATCTL:-$TOP/dchatctl}
TEST_NAME=$(basename "$0" .sh)
RUN_TIMEOUT=${RUN_TIMEOUT:-30}          # seconds any single `run`/`ctl` may take
NODE_START_TIMEOUT=${NODE_START_TIMEOUT:-10}
STOP_TIMEOUT=${STOP_TIMEOUT:-5}
export LC_ALL=C

# --- TAP ---------------------------------------------------------------------------

_T_N=0 _T_FAILED=0 _T_PLAN= _T_DONE=0

plan() { _T_PLAN=$1; echo "1..$1"; }
diag() { local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /' >&2; done; }
note() { local l; for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done; }
pass() { _T_N=$((_T_N + 1)); echo "ok $_T_N - $1"; }
fail() {
    _T_N=$((_T_N + 1)); _T_FAILED=$((_T_FAILED + 1))
    echo "not ok $_T_N - $1"
    diag "  Failed test '$1'" "  at ${BASH_SOURCE[2]:-$0} line ${BASH_LINENO[1]:-?}"
    shift
    [ $# -gt 0 ] && diag "$@"
    return 1
}
# ok NAME CMD... — passes when CMD exits 0.  CMD's output is kept off the TAP stream
# and shown as a diagnostic when it fails.
ok() {
    local _ok_name=$1 _ok_rc; shift
    "$@" >"$T/.ok.out" 2>&1
    _ok_rc=$?
    if [ $_ok_rc = 0 ]; then pass "$_ok_name"
    else fail "$_ok_name" "  command failed (status $_ok_rc): $*" "$(head -c 2000 "$T/.ok.out")"; fi
}
# nok NAME CMD... — passes when CMD exits non-zero
nok() {
    local _ok_name=$1; shift
    if "$@" >"$T/.ok.out" 2>&1; then
        fail "$_ok_name" "  command succeeded, expected a failure: $*" "$(head -c 2000 "$T/.ok.out")"
    else pass "$_ok_name"; fi
}
is() {
    if [ "$1" == "$2" ]; then pass "$3"; else fail "$3" "         got: '$1'" "    expected: '$2'"; fi
}
isnt() {
    if [ "$1" != "$2" ]; then pass "$3"; else fail "$3" "         got: '$1'" "    expected anything else"; fi
}
# like GOT ERE NAME — bash [[ =~ ]]; ^ and $ anchor the whole string
like() {
    if [[ $1 =~ $2 ]]; then pass "$3"; else fail "$3" "                  '$1'" "    doesn't match '$2'"; fi
}
unlike() {
    if [[ $1 =~ $2 ]]; then fail "$3" "                  '$1'" "          matches '$2'"; else pass "$3"; fi
}
# cmp_ok A OP B NAME — integer comparison, OP one of -lt -le -eq -ne -ge -gt
cmp_ok() {
    if [ "$1" "$2" "$3" ] 2>/dev/null; then pass "$4"; else fail "$4" "    '$1' $2 '$3' is false"; fi
}
skip() { _T_N=$((_T_N + 1)); echo "ok $_T_N # skip $1${2:+: $2}"; }
todo_ok() {
    local _ok_name=$1 _ok_why=$2; shift 2
    _T_N=$((_T_N + 1))
    if "$@" >"$T/.ok.out" 2>&1; then echo "ok $_T_N - $_ok_name # TODO $_ok_why"
    else echo "not ok $_T_N - $_ok_name # TODO $_ok_why"; fi
}
skip_all() { echo "1..0 # SKIP $*"; _T_DONE=1; exit 0; }
bail_out() { echo "Bail out! $*"; _T_DONE=1; exit 255; }
done_testing() {
    [ -n "$_T_PLAN" ] || echo "1..$_T_N"
    _T_DONE=1
    if [ -n "$_T_PLAN" ] && [ "$_T_PLAN" != "$_T_N" ]; then
        diag "planned $_T_PLAN tests but ran $_T_N"
        exit 255
    fi
    [ $_T_FAILED -gt 254 ] && exit 254
    exit $_T_FAILED
}

need_root() { [ "$(id -u)" = 0 ] || skip_all "needs root"; }
need_cmd() { local c; for c in "$@"; do command -v "$c" >/dev/null || skip_all "needs $c"; done; }
need_tool() {   # a helper built from tests/lib/*.c by make check
    local t; for t in "$@"; do [ -x "$TESTLIB/$t" ] || bail_out "tests/lib/$t is missing: run make check (or make tests/lib/$t)"; done
}

# need_journal [--catalog FILE]...: run this test under its own journald
need_journal() {
    [ -n "${DCHAT_JOURNALD_ISOLATED:-}" ] && return 0
    need_root
    need_cmd unshare journalctl
    _cleanup_tmp
    _watchdog_stop
    exec "$TESTLIB/journald-isolated" "$@" -- "$0" "${_T_ARGS[@]+"${_T_ARGS[@]}"}"
}

# --- processes ---------------------------------------------------------------------

_PIDS=()
track_pid() { _PIDS+=("$@"); }

# pid_alive PID: it exists and is not a zombie
pid_alive() {
    local s
    s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$s" ] && [ "$s" != Z ]
}

# wait_pid_exit PID [SECS]: until PID is gone or a zombie; 1 on timeout
wait_pid_exit() {
    local pid=$1 i n=$(( ${2:-$STOP_TIMEOUT} * 20 ))
    for ((i = 0; i < n; i++)); do pid_alive "$pid" || return 0; sleep 0.05; done
    ! pid_alive "$pid"
}

# stop_pid PID [SIG]: SIG (default TERM), bounded wait, then KILL; reaps it if it is our
# child.  Its exit status (if ours) is left in STOP_RC.
stop_pid() {
    local pid=$1 sig=${2:-TERM} slow=
    STOP_RC=
    # bash reports a child killed by a signal ("Killed") on its stderr: not here
    {
        if pid_alive "$pid"; then
            kill -"$sig" "$pid"
            if ! wait_pid_exit "$pid" "$STOP_TIMEOUT"; then
                slow=$(cat /proc/"$pid"/comm)
                kill -KILL "$pid"
                wait_pid_exit "$pid" 2
            fi
        fi
        wait "$pid"
        STOP_RC=$?
    } 2>/dev/null
    [ -n "$slow" ] && diag "pid $pid ($slow) ignored SIG$sig for ${STOP_TIMEOUT}s: SIGKILL"
    return 0
}

# wait_for [-t SECS] CMD...: poll CMD every 0.1 s until it succeeds; 1 on timeout.
# (Locals are prefixed: CMD may be a function that reads its caller's variables.)
wait_for() {
    local _wf_t=10 _wf_i _wf_n
    if [ "$1" = -t ]; then _wf_t=$2; shift 2; fi
    _wf_n=$(( ${_wf_t%.*} * 10 + 1 ))
    for ((_wf_i = 0; _wf_i < _wf_n; _wf_i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# run CMD...: RC, OUT, ERR; bounded by RUN_TIMEOUT (RC 124 when it ran out).  CMD may be
# a function of this library (ctl, ctl_as: bounded themselves).
run() {
    local o="$T/.run.out" e="$T/.run.err"
    if declare -F "$1" >/dev/null; then
        "$@" >"$o" 2>"$e"
    else
        timeout -k 2 "$RUN_TIMEOUT" "$@" >"$o" 2>"$e"
    fi
    RC=$?
    OUT=$(cat "$o"); ERR=$(cat "$e")
    if [ $RC = 124 ]; then ERR="$ERR(timed out after ${RUN_TIMEOUT}s: $*)"; fi
    return 0
}

# elapsed_ms CMD...: like run, and MS = how long it took
run_timed() {
    local t0 t1
    t0=$(date +%s%N)
    run "$@"
    t1=$(date +%s%N)
    MS=$(( (t1 - t0) / 1000000 ))
}

# --- the test's own directory ------------------------------------------------------

_T_ARGS=("$@")
T=$(mktemp -d "${TMPDIR:-/tmp}/dchat-$TEST_NAME.XXXXXX") || bail_out "mktemp failed"
chmod 0755 "$T"         # so that a test may let another user reach a socket inside

_cleanup_tmp() { [ -n "${T:-}" ] && rm -rf "$T"; T=; }

# A watchdog: a test that runs longer than DCHAT_TEST_TIMEOUT seconds (default 240) is
# stopped with SIGTERM, which runs the cleanup like any other exit.
_WATCHDOG=
_watchdog_start() {
    local me=$$ t=${DCHAT_TEST_TIMEOUT:-240}
    (
        trap 'kill "$sp" 2>/dev/null; exit 0' TERM
        sleep "$t" & sp=$!
        wait "$sp"
        echo "# $TEST_NAME: timed out after ${t}s (DCHAT_TEST_TIMEOUT), stopping it" >&2
        kill -TERM "$me"
        # bash runs the trap only once its foreground command ends: end that too (the
        # test's own children, by PID; the cleanup then stops whatever is left)
        for c in $(ps -o pid= --ppid "$me"); do
            [ "$c" = "$BASHPID" ] || kill -TERM "$c" 2>/dev/null
        done
    ) </dev/null >/dev/null &
    _WATCHDOG=$!
}
_watchdog_stop() {
    [ -n "$_WATCHDOG" ] || return 0
    kill -TERM "$_WATCHDOG" 2>/dev/null
    wait "$_WATCHDOG" 2>/dev/null
    _WATCHDOG=
}

_dump_logs() {
    local f
    for f in "$T"/*.log; do
        [ -s "$f" ] || continue
        if [ -n "${DCHAT_TEST_VERBOSE:-}" ]; then
            diag "--- $(basename "$f"):" "$(cat "$f")"
        else
            diag "--- last lines of $(basename "$f"):" "$(tail -n 12 "$f")"
        fi
    done
}

_cleanup() {
    local rc=$? i
    trap - EXIT HUP INT TERM
    _watchdog_stop
    if [ $_T_DONE = 0 ] && [ -n "${T:-}" ]; then
        diag "the test exited early (status $rc) after $_T_N tests"
        rc=255
    fi
    [ $_T_FAILED -gt 0 ] && [ -n "${T:-}" ] && _dump_logs
    for ((i = ${#_PIDS[@]} - 1; i >= 0; i--)); do
        pid_alive "${_PIDS[i]}" && stop_pid "${_PIDS[i]}"
    done
    if [ -n "${DCHAT_TEST_KEEP:-}" ] && [ -n "${T:-}" ]; then
        diag "kept $T"
    else
        _cleanup_tmp
    fi
    exit $rc
}
trap _cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
_watchdog_start

# --- ports and the configuration ---------------------------------------------------

declare -A NODE_PID NODE_RC PORT
declare -A HOSTKEY=()   # NODE -> its host key's public key, written as key = "..." in $CONF (hostkey_make)
NODES=()            # master node1 node2 ...
PEERS=()            # node1 node2 ...
CONF=$T/dchat.conf
KEY=$T/cluster.key  # the cluster key (dchatctl keygen), named by key_file in $CONF
CONF_EXTRA=()

# pick_port: PICKED = a TCP port from 20000..60000, outside the kernel's ephemeral
# range when that leaves room (so no outgoing connection can be holding it), with no
# socket on it now, not taken yet by this test, and not picked by another test that
# still runs (tests run two at a time: a port free when picked was taken by the other
# before dchatd bound it, seen once in CI).  Under tests/run-tests the picks are written,
# under flock, to DCHAT_PORT_REGISTRY (its temporary directory, removed at its end) with
# the picking test's PID; a finished test's picks are void.  Anything else may still take
# the port: cluster_start then tries again with new ports.
pick_port() {
    local lo hi p i q used avoid=1 taken=" " line pid fd= reg=${DCHAT_PORT_REGISTRY:-}
    read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { lo=32768; hi=60999; }
    [ $(( lo - 20000 )) -lt 2000 ] && [ $(( 60000 - hi )) -lt 2000 ] && avoid=0
    if [ -n "$reg" ] && [ -d "$(dirname "$reg")" ]; then
        exec {fd}>>"$reg.lock"
        flock -w 10 "$fd" || true
    else
        reg=
    fi
    # the running tests' picks (the finished ones' are dropped from the file)
    if [ -n "$reg" ] && [ -s "$reg" ]; then
        : > "$reg.new"
        while read -r line pid; do
            [ "$pid" != "$$" ] && ! kill -0 "$pid" 2>/dev/null && continue
            taken+="$line "
            echo "$line $pid" >> "$reg.new"
        done < "$reg"
        mv -f "$reg.new" "$reg"
    fi
    PICKED=
    for ((i = 0; i < 500; i++)); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40001 ))
        if [ $avoid = 1 ] && [ "$p" -ge "$lo" ] && [ "$p" -le "$hi" ]; then continue; fi
        used=0
        for q in "${PORT[@]}"; do [ "$q" = "$p" ] && used=1; done
        [ $used = 1 ] && continue
        [[ $taken == *" $p "* ]] && continue
        [ -n "$(ss -Htan "sport = :$p" 2>/dev/null)" ] && continue
        PICKED=$p
        [ -n "$reg" ] && echo "$p $$" >> "$reg"
        break
    done
    [ -n "$fd" ] && exec {fd}>&-
    [ -n "$PICKED" ] || bail_out "no free TCP port found"
}

# write_config: $CONF from SERVERS/PEERS/PORT, key_file = $KEY and CONF_EXTRA (top-level lines)
write_config() {
    local n first=1
    {
        echo "# generated by $TEST_NAME"
        echo "cluster = {"
        printf '  servers = ( '
        for n in "${SERVERS[@]}"; do
            [ $first = 1 ] || printf ',\n              '
            printf '{ name = "%s"; address = "127.0.0.1:%s";%s }' "$n" "${PORT[$n]}" \
                "${HOSTKEY[$n]:+ key = \"${HOSTKEY[$n]}\";}"
            first=0
        done
        echo " );"
        first=1
        printf '  peers   = ( '
        for n in "${PEERS[@]}"; do
            [ $first = 1 ] || printf ',\n              '
            printf '{ name = "%s"; address = "127.0.0.1:%s";%s }' "$n" "${PORT[$n]}" \
                "${HOSTKEY[$n]:+ key = \"${HOSTKEY[$n]}\";}"
            first=0
        done
        echo " );"
        echo "};"
        echo "key_file = \"$KEY\";"
        for n in "${CONF_EXTRA[@]+"${CONF_EXTRA[@]}"}"; do echo "$n"; done
    } > "$CONF"
}

# cluster_config [N_PEERS [CONFIG_LINE...]]: choose names and ports, write $CONF
cluster_config() {
    local np=${1:-2} i n
    [ $# -gt 0 ] && shift
    CONF_EXTRA=("$@")
    SERVERS=(master)
    for ((i = 2; i <= ${N_SERVERS:-1}; i++)); do SERVERS+=("master$i"); done
    NODES=("${SERVERS[@]}") PEERS=()
    for ((i = 1; i <= np; i++)); do NODES+=("node$i"); PEERS+=("node$i"); done
    PORT=()
    for n in "${NODES[@]}"; do pick_port; PORT[$n]=$PICKED; done
    for n in "${NODES[@]}"; do mkdir -p "$T/$n/run" "$T/$n/state"; done
    # every test cluster has its own key: its links are encrypted like a real one's
    # (NO_CLUSTER_KEY=1: none, for a cluster on host keys alone)
    [ -n "${NO_CLUSTER_KEY:-}" ] || [ -e "$KEY" ] || "$DCHATCTL" keygen "$KEY" >/dev/null \
        || bail_out "dchatctl keygen $KEY failed"
    write_config
}

node_sock()  { echo "$T/$1/run/dchatd.sock"; }
node_log()   { echo "$T/$1.log"; }
node_state() { echo "$T/$1/state"; }
node_port()  { echo "${PORT[$1]}"; }
node_pid()   { echo "${NODE_PID[$1]:-}"; }
node_alive() { [ -n "${NODE_PID[$1]:-}" ] && pid_alive "${NODE_PID[$1]}"; }

# ctl NODE ARGS...: dchatctl on NODE's control socket (bounded in time)
ctl() {
    local n=$1; shift
    timeout -k 2 "$RUN_TIMEOUT" "$DCHATCTL" -s "$(node_sock "$n")" "$@"
}

# ctl_as USER NODE ARGS...: the same as another user (no supplementary groups)
ctl_as() {
    local u=$1 n=$2; shift 2
    timeout -k 2 "$RUN_TIMEOUT" setpriv --reuid="$u" --regid="$(id -gn "$u")" --clear-groups \
        "$DCHATCTL" -s "$(node_sock "$n")" "$@"
}

# hostkey_make NODE [FILE]: a new host key for NODE (default $T/NODE/creds/host.key, which
# node_start hands it as $CREDENTIALS_DIRECTORY/host.key); HOSTKEY[NODE] = its public key.
# write_config lists it.
hostkey_make() {
    local f=${2:-$T/$1/creds/host.key}
    mkdir -p "$(dirname "$f")"
    HOSTKEY[$1]=$("$DCHATCTL" keygen --host --force "$f" 2>/dev/null) || bail_out "dchatctl keygen --host $f failed"
}

# node_start NAME [--no-wait]: start dchatd for NAME; wait until it answers `status`.
# $T/NAME/creds/ is its $CREDENTIALS_DIRECTORY (hostkey_make puts host.key there; there
# is no cluster.key: key_file is read).
node_start() {
    local n=$1 i
    node_alive "$n" && { diag "node_start $n: already running"; return 1; }
    CREDENTIALS_DIRECTORY=$T/$n/creds \
    RUNTIME_DIRECTORY=$T/$n/run STATE_DIRECTORY=$T/$n/state DCHAT_LOG=${DCHAT_LOG:-stderr} \
        ${DCHAT_DAEMON_WRAPPER:-} "$DCHATD" -c "$CONF" -n "$n" </dev/null >>"$(node_log "$n")" 2>&1 &
    NODE_PID[$n]=$!
    track_pid "$!"
    [ "${2:-}" = --no-wait ] && return 0
    node_wait_ready "$n"
}

# node_wait_ready NAME: wait (bounded) until the started dchatd NAME answers on its socket
node_wait_ready() {
    local n=$1 i
    for ((i = 0; i < NODE_START_TIMEOUT * 20; i++)); do
        node_alive "$n" || { diag "dchatd $n exited during start"; return 1; }
        timeout 2 "$DCHATCTL" -s "$(node_sock "$n")" status >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    diag "dchatd $n did not answer within ${NODE_START_TIMEOUT}s"
    return 1
}

# node_stop NAME [SIG]: signal it (TERM), wait (bounded); NODE_RC[NAME] = exit status
node_stop() {
    local n=$1 pid=${NODE_PID[$1]:-}
    [ -n "$pid" ] || { diag "node_stop $n: not started"; return 1; }
    stop_pid "$pid" "${2:-TERM}"
    NODE_RC[$n]=$STOP_RC
    NODE_PID[$n]=
    return 0
}
node_kill() { node_stop "$1" KILL; }
node_hup()  { kill -HUP "${NODE_PID[$1]}"; }

# peer_connected NODE: NODE's status shows the server and every other peer linked
peer_connected() {
    local s
    s=$(timeout 2 "$DCHATCTL" -s "$(node_sock "$1")" status --json 2>/dev/null) || return 1
    [[ $s == *'"server_connected":true'* ]] && [[ $s != *'"connected":false'* ]]
}
# group_ready: a server group (N_SERVERS > 1) has elected a leader that every server knows,
# and every peer links to it
group_ready() {
    local n
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        grep -a -q -E "${EV_LINE}event=leader-elected " "$(node_log "$n")" || return 1
    done
    for n in "${PEERS[@]}"; do
        node_alive "$n" || continue
        grep -a -q -E 'msg="the server [^ ]+ leads the group' "$(node_log "$n")" || return 1
    done
}
# server_connected: the server sees every peer
server_connected() {
    local s
    s=$(timeout 2 "$DCHATCTL" -s "$(node_sock master)" status --json 2>/dev/null) || return 1
    [[ $s != *'"connected":false'* ]]
}
# wait_connected [SECS]: every running node linked to every other running node
wait_connected() {
    local t=${1:-15} n
    for n in "${PEERS[@]}"; do
        node_alive "$n" || continue
        wait_for -t "$t" peer_connected "$n" || { diag "$n is not linked to everyone"; return 1; }
    done
    if [ "${#SERVERS[@]}" -gt 1 ]; then
        wait_for -t "$t" group_ready || { diag "the server group has no leader every peer links to"; return 1; }
    elif node_alive master; then
        wait_for -t "$t" server_connected || { diag "master does not see every peer"; return 1; }
    fi
}

# cluster_start [N_PEERS [CONFIG_LINE...]]: config + all nodes up and linked.
# A port taken by someone else between pick and bind: new ports, new try.
cluster_start() {
    local attempt n ok
    for attempt in 1 2 3 4 5; do
        cluster_config "$@"
        ok=1
        for n in "${NODES[@]}"; do
            : > "$(node_log "$n")"
            node_start "$n" --no-wait
        done
        for n in "${NODES[@]}"; do
            local i
            for ((i = 0; i < NODE_START_TIMEOUT * 20; i++)); do
                node_alive "$n" || break
                timeout 2 "$DCHATCTL" -s "$(node_sock "$n")" status >/dev/null 2>&1 && break
                sleep 0.05
            done
            if ! node_alive "$n"; then ok=0; break; fi
        done
        if [ $ok = 1 ]; then
            wait_connected 15 && return 0
            bail_out "cluster did not link up"
        fi
        # somebody took a port: stop what runs, retry with new ports
        if grep -q 'Address already in use' "$T"/*.log 2>/dev/null; then
            diag "a port was taken (attempt $attempt); retrying with new ports"
            for n in "${NODES[@]}"; do node_alive "$n" && node_stop "$n"; done
            continue
        fi
        for n in "${NODES[@]}"; do diag "--- $n.log:" "$(cat "$(node_log "$n")")"; done
        bail_out "dchatd $n died during cluster start"
    done
    bail_out "no free ports after 5 attempts"
}

# --- server groups ------------------------------------------------------------------------

# group_leader: the live server that leads the group now: its last leader event
# (leader-elected/leader-lost: a server logs one at every change, with the term as
# lamport=) says it leads, in the latest term any live server's last event names (a
# restarted server's log still ends with what its previous life said until it hears of
# the leader); nothing and status 1 when none does
group_leader() {
    local n l t max=0 best= bt=0
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        l=$(grep -a -E "${EV_LINE}event=leader-(elected|lost) " "$(node_log "$n")" | tail -n 1)
        t=$(ev_field lamport <<<"$l")
        [ -n "$t" ] || continue
        [ "$t" -gt "$max" ] && max=$t
        if [[ $l == *'msg="this server leads the group'* ]] && [ "$t" -ge "$bt" ]; then best=$n bt=$t; fi
    done
    [ -n "$best" ] && [ "$bt" = "$max" ] && echo "$best"
}
# last_seq NODE: the seq of the last entry NODE's log holds (0 for none)
last_seq() {
    local s
    s=$(ctl "$1" view --json -n 1) || return 1
    s=${s#*\"seq\":}
    echo "${s%%[!0-9]*}" | sed 's/^$/0/'
}
# servers_identical: every live server of the group holds the same log, up to the same
# last seq (call it with all of them up: verify asks every server of the group).  With a dchatctl
# that has `verify` (it lists it in its usage), verify, asked of the first live server,
# must say so (exit 0: it compares the servers' logs by digests); without it, their whole
# `view --json` are compared.
_DCHATCTL_VERIFY=
servers_identical() {
    local n sums= first=
    if [ -z "$_DCHATCTL_VERIFY" ]; then
        if "$DCHATCTL" -h 2>&1 | grep -q ' verify'; then _DCHATCTL_VERIFY=yes; else _DCHATCTL_VERIFY=no; fi
    fi
    for n in "${SERVERS[@]}"; do
        node_alive "$n" || continue
        [ -n "$first" ] || first=$n
        [ "$_DCHATCTL_VERIFY" = yes ] && continue
        sums+="$(ctl "$n" view --json | md5sum | cut -c1-32) " || return 1
    done
    [ -n "$first" ] || return 1
    if [ "$_DCHATCTL_VERIFY" = yes ]; then
        # verify compares the seqs all of them hold: a follower still applying the last
        # entries is behind, not different, and verify says identical; here they must
        # all hold the same last seq as well
        local seqs=
        for n in "${SERVERS[@]}"; do
            node_alive "$n" || continue
            seqs+="$(last_seq "$n") " || return 1
        done
        [ "$(printf '%s\n' $seqs | sort -u | wc -l)" = 1 ] || return 1
        ctl "$first" verify >/dev/null
    else
        [ "$(printf '%s\n' $sums | sort -u | wc -l)" = 1 ]
    fi
}
# notes_race KEY N [--unlocked] NODE...: every NODE increments the shared note KEY N times
# (a dchatctl each), all at once; NOTES_FAILED = increments that failed (their errors in
# $T/notes-err.NODE), NOTES_MS = how long it took
notes_race() {
    local key=$1 n=$2 opt= pids=() node t0
    shift 2
    [ "${1:-}" = --unlocked ] && { opt=--unlocked; shift; }
    t0=$(date +%s%N)
    for node in "$@"; do _notes_loop "$node" "$key" "$n" $opt & pids+=($!); done
    track_pid "${pids[@]}"
    wait "${pids[@]}"
    NOTES_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
    NOTES_FAILED=$(cat "$T"/notes-rc.* | awk '{ s += $1 } END { print s + 0 }')
    rm -f "$T"/notes-rc.*
}
_notes_loop() {
    local i fails=0
    for ((i = 0; i < $3; i++)); do
        ctl "$1" note incr ${4:+"$4"} "$2" >/dev/null 2>>"$T/notes-err.$1" || fails=$((fails + 1))
    done
    echo "$fails" > "$T/notes-rc.$1"
}

# bench_acks_after NS [FILE]: how many posts tests/bench/dchat-bench -o FILE (default
# $T/outcomes) saw acknowledged after the wall-clock time NS (date +%s%N)
bench_acks_after() {
    awk -v t="$1" '$2 == "ok" && $1 > t { n++ } END { print n + 0 }' "${2:-$T/outcomes}"
}
# bench_resumed_after NS [N [FILE]]: how long (ms) after the wall-clock time NS posting was
# back: of the first N (default 200) acknowledgements after NS, the one that ends the longest
# pause (NS counts as an acknowledgement: the answers already on their way when a server
# was killed arrive just after it, then the pause, then the new leader's).  Nothing when
# fewer than N came.
bench_resumed_after() {
    awk -v t="$1" -v n="${2:-200}" '$2 == "ok" && $1 > t {
            k++; if ($1 - prev > gap) { gap = $1 - prev; end = $1 } prev = $1
            if (k == n) { printf "%d\n", (end - t) / 1000000; exit } }
        BEGIN { prev = t; gap = -1 }' "${3:-$T/outcomes}"
}

# --- events on stderr (time=... no=N event=NAME node=... key=value ... msg="...") --------

# the start of a line on stderr, before its event= or level= (a regex, basic or extended)
EV_LINE='^time=[^ ]* no=[0-9]* '
events()       { grep -a -E "${EV_LINE}event=($2) " "$(node_log "$1")"; }
count_events() { grep -a -c -E "${EV_LINE}event=($2) " "$(node_log "$1")"; }
# wait_event NODE EVENT [COUNT [SECS]]: until NODE logged EVENT at least COUNT times
_we_enough() { [ "$(count_events "$_we_node" "$_we_event")" -ge "$_we_count" ]; }
wait_event() {
    local _we_node=$1 _we_event=$2 _we_count=${3:-1}
    wait_for -t "${4:-10}" _we_enough
}
# ev_field KEY: the value of KEY= on each event line of stdin
ev_field() {
    if [ "$1" = msg ]; then
        sed -n -E 's/^[^"]* msg=//p' | sed -E -e 's/^"(.*)"$/\1/' -e 's/\\(["\\])/\1/g'
    else
        sed -E 's/ msg=.*$//' | sed -n -E "s/^(.* )?$1=([^ ]*).*\$/\\2/p"
    fi
}

# --- wire frames (see daemon/proto.h), as bytes on stdout ----------------------------------

be8()  { printf "\\x$(printf %02x $(( $1 & 255 )))"; }
be16() { be8 $(( $1 >> 8 )); be8 "$1"; }
be32() { be16 $(( ($1 >> 16) & 65535 )); be16 $(( $1 & 65535 )); }
be64() { be32 $(( ($1 >> 32) & 0xffffffff )); be32 $(( $1 & 0xffffffff )); }
wstr() { be16 "${#1}"; printf '%s' "$1"; }      # ASCII strings only (length in bytes)
# frame TYPE PAYLOAD_FILE [VERSION [FLAGS]]: header + payload (the payload starts with the tag)
frame() {
    local size; size=$(stat -c %s "$2")
    be32 "$size"; be8 "${3:-1}"; be8 "$1"; be16 "${4:-0}"; cat "$2"
}
MSG_HELLO=1 MSG_HELLO_ACK=2 MSG_REQUEST=3 MSG_REPLY=4 MSG_APPEND=5 MSG_APPENDED=6 MSG_VIEW=7
MSG_ENTRY=8 MSG_VIEW_END=9 MSG_ERROR=10 MSG_POST=11 MSG_POSTED=12 MSG_STATUS=13
MSG_STATUS_REPLY=14 MSG_HEARTBEAT=15 MSG_FOLLOW=16 MSG_CLUSTER=17 MSG_ENTRY_DAMAGED=18 MSG_RAFT=19
MSG_LEADER=20 MSG_DIGEST=21 MSG_DIGEST_REPLY=22 MSG_VERIFY=23 MSG_VERIFY_REPLY=24
MSG_GROUP=25 MSG_GROUP_REPLY=26 MSG_MEMBER=27 MSG_MEMBER_REPLY=28 MSG_TRACE=29
MSG_TRACE_EVENTS=30 MSG_TRACE_END=31
MSG_WHO=32 MSG_PRESENCE=33 MSG_POST_WAIT=34 MSG_LOCK=35 MSG_GRANT=36 MSG_TOKEN_REQUEST=37 MSG_TOKEN=38
MSG_TOKEN_PROBE=39 MSG_LEAVE=40 MSG_RELOAD=41 MSG_RELOAD_REPLY=42
ROLE_SERVER=1 ROLE_PEER=2
# frames FILE: the frames in FILE (bytes received), one per line: "TYPE TAG PAYLOAD-HEX"
# (the payload after the tag); a trailing partial frame is shown as "partial"
frames() {
    perl -e 'local $/; my $d = <STDIN>; my $o = 0;
        while (length($d) - $o >= 8) {
            my ($len, $ver, $type) = unpack "N C C", substr($d, $o, 6);
            if (length($d) - $o - 8 < $len) { print "partial\n"; exit }
            my $p = substr($d, $o + 8, $len);
            printf "%d %d %s\n", $type, unpack("N", $p), unpack("H*", substr($p, 4));
            $o += 8 + $len;
        }
        print "partial\n" if $o < length $d;' < "$1"
}
# group_ask AS NODE: a GROUP question to server NODE, asked as server AS (send-raw -S with $KEY);
# prints its GROUP_REPLY as "state=N group=HEX boot=HEX term=N leader=NAME address=A applied=N
# last=N seq=N fsm=N role=N config=N" (daemon/proto.h: enum dchat_group_state, dchat_member_role),
# or nothing if it did not answer
group_ask() {
    { be32 1; wstr "$1"; be8 $ROLE_SERVER; be64 0; be64 0; } > "$T/.ga.hello"
    { be32 7; head -c 32 /dev/zero; } > "$T/.ga.group"
    { frame $MSG_HELLO "$T/.ga.hello"; frame $MSG_GROUP "$T/.ga.group"; } > "$T/.ga.in"
    : > "$T/.ga.out"
    "$TESTLIB/send-raw" -k "$KEY" -n "$1" -S -t 3000 -e $MSG_GROUP_REPLY -o "$T/.ga.out" \
        "127.0.0.1:$(node_port "$2")" < "$T/.ga.in" > /dev/null 2>&1
    frames "$T/.ga.out" | awk -v t=$MSG_GROUP_REPLY '$1 == t { print $3 }' | perl -ne '
        chomp; my $b = pack "H*", $_; my $o = 0;
        sub u8 { my $v = unpack "C", substr($b, $o, 1); $o += 1; $v }
        sub u64 { my ($h, $l) = unpack "NN", substr($b, $o, 8); $o += 8; $h * 4294967296 + $l }
        sub id { my $v = unpack "H*", substr($b, $o, 16); $o += 16; $v }
        sub str { my $n = unpack "n", substr($b, $o, 2); $o += 2; my $v = substr($b, $o, $n); $o += $n; $v }
        my @f = (u8(), id(), id(), u64(), str(), str(), u64(), u64(), u64(), u8(), u8(), u64());
        printf "state=%d group=%s boot=%s term=%d leader=%s address=%s applied=%d last=%d seq=%d fsm=%d role=%d config=%d\n", @f;'
}

# be_int HEX: the unsigned big-endian integer written in HEX (up to 64 bits)
be_int() { perl -e 'print hex(substr($ARGV[0], 0, 8)) * 4294967296 + hex(substr($ARGV[0], 8, 8))' "$(printf '%016s' "$1" | tr ' ' 0)"; }

# check_fences FILE: FILE holds `dchatctl view --json`.  Prints "ok N entries" when the
# seqs are 1..N without a gap and the fences (lamport, node, fence_idx) strictly
# increase (DESIGN.md invariant 2), else the first few violations.
check_fences() {
    perl -MJSON::PP -e '
        my ($n, $prev, @err) = (0);
        while (my $l = <STDIN>) {
            $n++;
            my $e = decode_json($l);
            push @err, "line $n: seq $e->{seq}" if $e->{seq} != $n;
            my $f = [$e->{lamport}, $e->{node}, $e->{fence_idx}];
            if ($prev) {
                my $c = $f->[0] <=> $prev->[0] || $f->[1] cmp $prev->[1] || $f->[2] <=> $prev->[2];
                push @err, "seq $n: fence @$f is not greater than @$prev" if $c <= 0;
            }
            $prev = $f;
        }
        print @err ? join("\n", @err[0 .. ($#err < 9 ? $#err : 9)]) : "ok $n entries";
    ' < "$1"
}
