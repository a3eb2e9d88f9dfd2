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
#   - post with no text, stdin a terminal: says what it needs (exit 2);
#   - note (issue 14): a bad key, a missing argument, a value too long or not text, a bad N,
#     an option of another subcommand: exit 2 with what was wrong, and nothing asked of dchatd.
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
for c in post view chat who status verify note server reload trace explain keygen pubkey; do
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
like "$ERR" "no command 'frobnicate'; the commands are post, view, chat, who, status, verify, note, server, reload, trace, explain, keygen, pubkey" "... naming them"
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
# --- note: usage errors, found before dchatd is asked ----------------------------------------------------------
# (each would reach the dchatd of -s if dchatctl let it through: exit 1, not 2)
KEYRULE="1 to 64 of A-Z a-z 0-9 \\. _ - : /, starting with a letter or a digit"
note_usage() {  # note_usage EXPECTED-MESSAGE NAME ARGS...
    local msg=$1 name=$2; shift 2
    run "$DCHATCTL" -s "$S" note "$@"
    is "$RC" 2 "note $name: exit 2" || diag "$ERR"
    like "$ERR" "^dchatctl: $msg" "... $(printf '%s' "$msg" | sed 's/\\//g; s/\^//g')"
}
note_usage "note takes set, get, incr, list or del" "(nothing)"
note_usage "note has no subcommand 'add'; it takes set, get, incr, list or del" "add" add k v
note_usage "note set takes a key and a value \\(note set KEY VALUE\\.\\.\\.\\)" "set KEY (no value)" set motd
note_usage "note get takes one key \\(note get KEY\\)" "get (no key)" get
note_usage "note get takes one key \\(note get KEY\\) \\('b'\\)" "get a b" get a b
note_usage "note del takes one key" "del (no key)" del
note_usage "note list takes no arguments \\('x'\\)" "list x" list x
note_usage "note incr takes a key and at most a number" "incr k 1 2" incr k 1 2
note_usage "'my key' is not a note key: $KEYRULE" "set 'my key' v" set "my key" v
note_usage "'-k' is not a note key" "get -- -k" get -- -k
note_usage "'_k' is not a note key" "incr _k (not a letter or digit first)" incr _k
note_usage "'k=v' is not a note key" "del k=v" del k=v
note_usage "'k\\\\x1b\\[1m' is not a note key" "get with an escape sequence: shown as \\x1b" get $'k\e[1m'
long=$(printf 'k%.0s' $(seq 65))
note_usage "'$long' is not a note key" "a key of 65 bytes" get "$long"
v1025=$(printf 'v%.0s' $(seq 1025))
note_usage "cannot set motd: the value is 1025 bytes, more than the 1024 a note holds" "a value of 1025 bytes" \
    set motd "$v1025"
note_usage "cannot set motd: the value is 1025 bytes" "... also when its words are joined" \
    set motd "${v1025:0:512}" "${v1025:0:512}"
note_usage "cannot set motd: the text contains a control character" "a value with a tab" set motd $'a\tb'
note_usage "cannot set motd: the text is not valid UTF-8" "a value that is not UTF-8" set motd $'\xff'
note_usage "cannot set motd: the value is empty \\(note del motd removes a note\\)" "an empty value" set motd ''
for n in x 1.5 +1 0x10 ' 1' 9223372036854775808 -9223372036854775809; do
    note_usage "note incr takes N, a whole decimal number from -9223372036854775808 to 9223372036854775807 \\(such as 5 or -5\\), not '" \
        "incr hits '$n'" incr hits "$n"
done
note_usage "note get takes no --unlocked \\(note incr does\\)" "get --unlocked" get --unlocked k
note_usage "note set takes no --json \\(note get and note list do\\)" "set --json" set --json k v
note_usage "note incr takes no --json" "incr --json" incr k --json
run "$DCHATCTL" -s "$S" note list --bogus
is "$RC" 2 "note list --bogus: exit 2"
like "$ERR" "^note list: unrecognized option '--bogus'" "... getopt names the subcommand"
like "$ERR" "dchatctl \\[-s SOCKET\\] note list \\[--json\\]" "... then note's usage"
run "$DCHATCTL" note incr --help
is "$RC" 0 "note incr --help: exit 0"
like "$OUT" "--unlocked +incr without the critical section: a demonstration mode" "... --unlocked, a demonstration mode"
like "$OUT" "loses updates when nodes increment at once" "... that loses updates"
# a value of 1024 bytes and N of -2^63 pass the checks (dchatd answers, whatever it says: not 2)
run "$DCHATCTL" -s "$S" note set motd "${v1025:1}"
isnt "$RC" 2 "note set: a value of 1024 bytes is no usage error" || diag "$ERR"
run "$DCHATCTL" -s "$S" note incr hits -9223372036854775808
isnt "$RC" 2 "note incr KEY -2^63: N may be negative, and is no option" || diag "$ERR"
run "$DCHATCTL" -s "$S" note set 'a.b_c-d:e/F9' words -- --json as they are
isnt "$RC" 2 "note set: every character a key may have; the value's words as they are, -- and --json too" || diag "$ERR"
done_testing
