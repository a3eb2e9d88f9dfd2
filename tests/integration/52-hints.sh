#!/usr/bin/env bash
# 52-hints — dchatctl's help and its errors that say what to do, one check per hint
# (issue 16, item 5):
#
#   - the default socket missing: systemctl, and -s / DCHAT_SOCKET for a dchatd started by
#     hand; in a source tree, make run (or, when a local cluster runs there, its socket);
#     elsewhere no make run (run in a mount namespace with an empty /run, so whatever this
#     machine runs does not matter);
#   - a socket from DCHAT_SOCKET or -s that is missing, even its directory: says which and
#     where it came from; a directory or a file: "not a socket"; a socket nobody listens on:
#     dchatd is not running;
#   - dchatctl help, help COMMAND, COMMAND --help for every command: the command's own usage;
#     help of an unknown command; the usage names --socket and --version; --version;
#   - -s (and --socket) after the command, for every command that talks to dchatd;
#   - post with no text, stdin a terminal: says what it needs (exit 2).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd unshare script perl

cluster_start 1
S=$(node_sock node1)

# dchatctl with nothing on /run (a private mount namespace), DCHAT_SOCKET unset, in DIR
bare() {
    local dir=$1; shift
    (cd "$dir" && env -u DCHAT_SOCKET unshare -m sh -c 'mount -t tmpfs none /run && exec "$@"' sh "$@")
}

# --- the default socket missing ---------------------------------------------------------------------
run bare "$TOP" "$DCHATCTL" status
is "$RC" 1 "default socket missing: exit 1"
like "$ERR" "^dchatctl: cannot connect to /run/dchat/dchatd.sock: no such socket" "... says which socket"
like "$ERR" "systemctl status dchatd.socket" "... names systemctl"
like "$ERR" "-s SOCKET or DCHAT_SOCKET=SOCKET" "... and -s / DCHAT_SOCKET for a dchatd started by hand"
like "$ERR" "in this source tree, make run starts a local cluster: then -s run/node1/dchatd.sock" \
    "... and, in the source tree, make run (with the socket it makes)"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "... in one line"

# a copy of dchatctl away from any source tree: no make run
mkdir -p "$T/elsewhere"
cp "$DCHATCTL" "$T/elsewhere/dchatctl"
run bare "$T/elsewhere" "$T/elsewhere/dchatctl" status
like "$ERR" "no such socket.*-s SOCKET or DCHAT_SOCKET=SOCKET" "away from a source tree: -s / DCHAT_SOCKET"
unlike "$ERR" "make run" "... and no make run"

# a source tree with a local cluster running (run/node1/dchatd.sock listening)
mkdir -p "$T/tree/daemon" "$T/tree/run/node1"
touch "$T/tree/daemon/dchatd.h"
cp "$DCHATCTL" "$T/tree/dchatctl"
perl -MIO::Socket::UNIX -e '
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 1) or die "$!";
    sleep 60;' "$T/tree/run/node1/dchatd.sock" &
track_pid $!
wait_for -t 5 test -S "$T/tree/run/node1/dchatd.sock"
run bare "$T/tree" ./dchatctl status
like "$ERR" "a local cluster \\(make run\\) runs in this source tree: -s run/node1/dchatd.sock, or export DCHAT_SOCKET=run/node1/dchatd.sock" \
    "a local cluster running in the source tree: its socket named"
run bare / "$T/tree/dchatctl" status
like "$ERR" "runs in the source tree $T/tree: -s $T/tree/run/node1/dchatd.sock" \
    "... from another directory: the tree and the socket with their whole path"

# --- a socket given that is missing, or no socket --------------------------------------------------------
run env DCHAT_SOCKET="$T/nothing.sock" "$DCHATCTL" status
is "$RC" 1 "DCHAT_SOCKET names a missing socket: exit 1"
like "$ERR" "^dchatctl: cannot connect to $T/nothing.sock \\(from DCHAT_SOCKET\\): no such socket\\. Is dchatd running, with this control socket\\?" \
    "... says where the path came from, and asks whether dchatd runs with it"
run "$DCHATCTL" -s "$T/no/such/dir/d.sock" status
like "$ERR" "\\(from -s\\): no such socket, and no directory $T/no/such/dir either" "-s in a missing directory: says so"
mkdir -p "$T/adir"
run "$DCHATCTL" -s "$T/adir" status
is "$RC" 1 "-s names a directory: exit 1"
like "$ERR" "^dchatctl: cannot connect to $T/adir: it is a directory, not a socket" "... 'a directory, not a socket'"
touch "$T/afile"
run "$DCHATCTL" -s "$T/afile" view
like "$ERR" "^dchatctl: cannot connect to $T/afile: it is a file, not a socket" "-s names a file: 'a file, not a socket'"
perl -MIO::Socket::UNIX -e 'IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 1) or die "$!"' \
    "$T/stale.sock"
run "$DCHATCTL" -s "$T/stale.sock" status
like "$ERR" "^dchatctl: cannot connect to $T/stale.sock: nobody listens on it: dchatd is not running" \
    "a socket nobody listens on: dchatd is not running"
run "$DCHATCTL" -s "$T/adir" view -f
like "$ERR" "it is a directory, not a socket" "view -f: the same hint"

# --- help ------------------------------------------------------------------------------------------------------
run "$DCHATCTL" help
is "$RC" 0 "dchatctl help: exit 0"
like "$OUT" "^usage: dchatctl \\[-s SOCKET\\] COMMAND" "... the usage, on stdout"
like "$OUT" "-s, --socket SOCKET" "the usage names --socket"
like "$OUT" "--version" "... and --version"
like "$OUT" "before or after the command" "... and that -s goes before or after the command"
for c in post view chat who status verify server reload trace explain keygen pubkey; do
    run "$DCHATCTL" help "$c"
    is "$RC" 0 "help $c: exit 0"
    like "$OUT" "^usage: dchatctl (\\[-s SOCKET\\] )?$c" "help $c: $c's own usage"
    h=$OUT
    run "$DCHATCTL" "$c" --help
    is "$RC/$OUT" "0/$h" "$c --help: the same, exit 0"
    run "$DCHATCTL" "$c" -h
    is "$RC/$OUT" "0/$h" "$c -h: the same"
done
run "$DCHATCTL" help frobnicate
is "$RC" 2 "help of an unknown command: exit 2"
like "$ERR" "no command 'frobnicate'; the commands are post, view, chat, who, status, verify, server, reload, trace, explain, keygen, pubkey" "... naming them"
run "$DCHATCTL" --version
is "$RC" 0 "--version: exit 0"
like "$OUT" "^dchatctl [0-9]+\\.[0-9]+\\.[0-9]+$" "--version prints the version"
run "$DCHATCTL" view --bogus
is "$RC" 2 "a bad option of view: exit 2"
like "$ERR" "usage: dchatctl \\[-s SOCKET\\] view" "... with view's own usage"

# --- -s after the command ------------------------------------------------------------------------------------
run env -u DCHAT_SOCKET "$DCHATCTL" post -s "$S" "posted with -s after the command"
is "$RC" 0 "post -s SOCKET TEXT" || diag "$ERR"
run env -u DCHAT_SOCKET "$DCHATCTL" view -s "$S" -n 1
like "$OUT" "root: posted with -s after the command\$" "view -s SOCKET"
run env -u DCHAT_SOCKET "$DCHATCTL" view --socket "$S" -n 1
like "$OUT" "root: posted with -s after the command\$" "view --socket SOCKET"
run env -u DCHAT_SOCKET "$DCHATCTL" status -s "$S"
like "$OUT" "^node: +node1" "status -s SOCKET"
run env -u DCHAT_SOCKET "$DCHATCTL" who --socket "$S"
like "$OUT" "^node1 +peer" "who --socket SOCKET"
run env -u DCHAT_SOCKET "$DCHATCTL" verify -s "$S"
is "$RC" 0 "verify -s SOCKET" || diag "$ERR"
run env -u DCHAT_SOCKET "$DCHATCTL" -s "$T/adir" status -s "$S"
is "$RC" 0 "-s after the command wins over -s before it"

# --- post with no text, stdin a terminal ---------------------------------------------------------------------
run script -qec "'$DCHATCTL' -s '$S' post" /dev/null
is "$RC" 2 "post with no text on a terminal: exit 2"
like "$OUT$ERR" "post needs the text to post \\(or -, to post the lines of stdin\\)" "... says what it needs"
run script -qec "'$DCHATCTL' -s '$S' chat extra" /dev/null
is "$RC" 2 "chat with an argument: exit 2"
run "$DCHATCTL" -s "$S" chat </dev/null
is "$RC" 1 "chat without a terminal: exit 1"
like "$ERR" "chat needs a terminal; use post \\(post - reads lines from stdin\\) and view -f in scripts" "... says what to use"
done_testing
