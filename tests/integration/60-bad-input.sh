#!/usr/bin/env bash
# 60-bad-input — texts dchatctl must refuse and texts it must keep intact; the same
# checks in dchatd for raw POST frames; garbage on the server port, a peer port and the
# control sockets: the daemon stays up (same PID), logs protocol-error, keeps serving,
# and the chat log is unharmed.  On the TCP ports each garbage goes twice: in the clear
# from a stranger (refused by the link handshake: link-auth-failed), and inside an
# authenticated link as a cluster member (send-raw -k: the frame checks, protocol-error).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl
need_tool send-raw
SEND=$TESTLIB/send-raw

cluster_start 2

ctl node1 post "before the storm" || fail "first post"
lines() { ctl node2 view | wc -l; }

# --- texts dchatctl refuses (exit 1, one clear line, nothing stored) -----------------------------
refuse() {     # refuse NAME WHY-REGEX TEXT
    local before; before=$(lines)
    run ctl node1 post "$3"
    is "$RC" 1 "$1: exit 1"
    like "$ERR" "^dchatctl: cannot post: $2" "$1: says why"
    is "$(printf '%s\n' "$ERR" | wc -l)" 1 "$1: one line on stderr"
    is "$(lines)" "$before" "$1: nothing stored"
}
refuse "a newline"             "the text contains a control character" $'a\nb'
refuse "a carriage return"     "the text contains a control character" $'a\rb'
refuse "an escape"             "the text contains a control character" $'a\e[31mred'
refuse "a tab"                 "the text contains a control character" $'a\tb'
refuse "DEL"                   "the text contains a control character" $'a\x7fb'
refuse "a C1 control (U+0085)" "the text contains a control character" $'a\xc2\x85b'
refuse "U+2028 line separator" "the text contains a control character" $'a\xe2\x80\xa8b'
refuse "invalid UTF-8 (0xff)"  "the text is not valid UTF-8" $'\xff'
refuse "a truncated sequence"  "the text is not valid UTF-8" $'ab\xe6\x97'
refuse "an overlong '/'"       "the text is not valid UTF-8" $'\xc0\xaf'
refuse "a surrogate"           "the text is not valid UTF-8" $'\xed\xa0\x80'
refuse "above U+10FFFF"        "the text is not valid UTF-8" $'\xf4\x90\x80\x80'
refuse "4097 bytes"            "the text is longer than 4096 bytes" "$(head -c 4097 /dev/zero | tr '\0' x)"
refuse "4095 bytes + a 2-byte character" "the text is longer than 4096 bytes" "$(head -c 4095 /dev/zero | tr '\0' x)é"

# --- texts that must be kept exactly ------------------------------------------------------------
json_text() { perl -MJSON::PP -ne 'BEGIN { binmode STDOUT, ":encoding(UTF-8)" } my $e = decode_json($_); print $e->{text}'; }
keep() {       # keep NAME TEXT
    run ctl node1 post "$2"
    is "$RC" 0 "$1: stored" || diag "$ERR"
    run ctl node2 view -n 1
    is "${OUT#*root: }" "$2" "$1: view shows it intact"
    is "$(ctl node2 view -n 1 --json | json_text)" "$2" "$1: view --json has it intact"
}
keep "exactly 4096 bytes of ASCII" "$(head -c 4096 /dev/zero | tr '\0' y)"
keep "multi-byte UTF-8" "héllo 日本 ✓ 🙂"
keep "4096 bytes of 3-byte characters and ASCII" "$(for i in $(seq 1365); do printf '日'; done)z"
keep "quotes, backslashes, percent signs" "say \"hi\" \\ 100% %s %n \$HOME \`id\`"
keep "leading and trailing spaces" "  spaced  "
run ctl node1 view -n 1 --json
like "$OUT" '"text":"  spaced  "' "view --json escapes nothing it need not"

# --- raw POST frames on the control socket: dchatd checks the text itself ----------------------
post_frame() {  # post_frame TEXT [UTC_OFFSET [HOLD_MS]] > frame
    local p=$T/payload
    { be32 7; be32 "${2:-0}"; be32 "${3:-0}"; be16 "$(printf '%s' "$1" | wc -c)"; printf '%s' "$1"; } > "$p"
    frame $MSG_POST "$p"
}
raw_post() {    # raw_post NAME WHY-REGEX TEXT: dchatd answers ERROR, keeps the connection, stores nothing
    local before; before=$(lines)
    post_frame "$3" > "$T/frame"
    run "$SEND" -t 3000 -e 10 -o "$T/reply" "$(node_sock node1)" < "$T/frame"
    like "$(tr -c '[:print:]' . < "$T/reply")" "$2" "raw POST with $1: dchatd answers with an error"
    is "$(lines)" "$before" "raw POST with $1: nothing stored"
}
raw_post "a newline"   "control character" $'forged\n01 Jan 12:00AM admin: hi'
raw_post "an escape"   "control character" $'a\e]0;title\a'
raw_post "invalid UTF-8" "not valid UTF-8" $'\xff\xfe'
raw_post "4097 bytes"  "longer than 4096 bytes" "$(head -c 4097 /dev/zero | tr '\0' x)"
raw_post "no text"     "empty" ""
# a well-formed POST gets POSTED back: the frame builder is right
post_frame "raw but fine" > "$T/frame"
run "$SEND" -t 5000 -e 12 -o "$T/reply" "$(node_sock node1)" < "$T/frame"
is "$(ctl node2 view -n 1 | sed 's/.*root: //')" "raw but fine" "a well-formed raw POST is stored (the frames here are right)"
is "$(od -An -tx1 -N6 "$T/reply" | tr -d ' \n')" "00000019010c" "... and answered with POSTED"
# A client may half-close (shutdown(SHUT_WR)) once it has sent its request, as
# `nc -N` or a script's `exec 3>&-` do: the answer must still come.
post_frame "half-closed" > "$T/frame"
run "$SEND" -t 5000 -h -e 12 -o "$T/reply" "$(node_sock node1)" < "$T/frame"
_last_is_half_closed() { [ "$(ctl node2 view -n 1 | sed 's/.*root: //')" = half-closed ]; }
ok "a POST followed by a half-close is stored" wait_for -t 5 _last_is_half_closed
is "$(od -An -tx1 -N6 "$T/reply" | tr -d ' \n')" "00000019010c" "... and answered with POSTED before dchatd closes"
post_frame $'bad\ntext' > "$T/frame"
got=0
for i in 1 2 3 4 5 6 7 8 9 10; do
    "$SEND" -t 3000 -h -e 10 -o "$T/reply" "$(node_sock node1)" < "$T/frame" >/dev/null
    grep -a -q "control character" "$T/reply" && got=$((got + 1))
done
is "$got" 10 "a refused POST followed by a half-close gets its ERROR (ten times out of ten)"

# --- garbage on the sockets ----------------------------------------------------------------------
declare -A PID0
for n in master node1 node2; do PID0[$n]=$(node_pid $n); done
view0=$(ctl node2 view)
pe_total=0

# garbage NAME NODE TARGET EXPECT(closed|open) LOG(1|0|EVENT): send the bytes in $T/g
# (not through a pipe: a function on the right of a pipe runs in a subshell, and its
# TAP counter would be lost).  LOG 1 means protocol-error; send-raw gets ${AS[@]}.
AS=()
garbage() {
    local name=$1 node=$2 target=$3 expect=$4 ev=$5 before out
    [ "$ev" = 1 ] && ev=protocol-error
    [ "$ev" = 0 ] || before=$(count_events "$node" "$ev")
    out=$("$SEND" "${AS[@]+"${AS[@]}"}" -t "$([ "$expect" = open ] && echo 300 || echo 2000)" "$target" < "$T/g")
    is "$out" "$expect" "$name: the connection is $expect"
    if [ "$ev" != 0 ]; then
        ok "$name: $node logs $ev" wait_event "$node" "$ev" $((before + 1)) 3
    fi
    is "$(node_pid "$node")" "${PID0[$node]}" "$name: $node keeps running (pid ${PID0[$node]})"
    ok "$name: $node still answers" ctl "$node" status
}

# tcp_garbage WHO: every case on the server's and a peer's port; WHO is "stranger"
# (no key: AS empty, the handshake refuses it) or "member" (AS = -k KEY -n node2)
tcp_garbage() {
    local who=$1 target addr ev
    [ "$who" = stranger ] && ev=link-auth-failed || ev=1
    for target in master node1; do
        addr=127.0.0.1:$(node_port $target)
        printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' > "$T/g"; garbage "$who, $target port: an HTTP request" $target "$addr" closed $ev
        { printf '\x00\x00\x00\x10'; head -c 4092 /dev/urandom; } > "$T/g"; garbage "$who, $target port: random bytes" $target "$addr" closed $ev
        { be32 4; be8 2; be8 $MSG_HELLO; be16 0; be32 1; } > "$T/g"; garbage "$who, $target port: version 2" $target "$addr" closed $ev
        { be32 $((0x7fffffff)); be8 1; be8 $MSG_HELLO; be16 0; be32 1; } > "$T/g"; garbage "$who, $target port: length 0x7fffffff" $target "$addr" closed $ev
        { be32 $((64 * 1024 + 1)); be8 1; be8 $MSG_HELLO; be16 0; head -c 100 /dev/zero; } > "$T/g"; garbage "$who, $target port: length 64 KiB + 1" $target "$addr" closed $ev
        { be32 4; be8 1; be8 200; be16 0; be32 1; } > "$T/g"; garbage "$who, $target port: unknown type 200" $target "$addr" closed $ev
        { be32 4; be8 1; be8 $MSG_HELLO; be16 1; be32 1; } > "$T/g"; garbage "$who, $target port: flags not 0" $target "$addr" closed $ev
        { be32 0; be8 1; be8 $MSG_STATUS; be16 0; } > "$T/g"; garbage "$who, $target port: a frame without its tag" $target "$addr" closed $ev
        { be32 100; be8 1; be8 $MSG_HELLO; be16 0; be32 1; printf 'nod'; } > "$T/g"; garbage "$who, $target port: a truncated frame, then close" $target "$addr" open 0
        # a member's HELLO must name the node its handshake proved (node2): link-auth-failed
        { be32 1; wstr mallory; be8 $ROLE_PEER; be64 0; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p" > "$T/g"
            garbage "$who, $target port: HELLO from an unknown node" $target "$addr" closed link-auth-failed
        { be32 1; be16 200; printf 'node1'; } > "$T/p"; frame $MSG_HELLO "$T/p" > "$T/g"
            garbage "$who, $target port: HELLO whose string runs past the frame" $target "$addr" closed $ev
        { be32 1; be64 5; be8 0; } > "$T/p"; frame $MSG_REQUEST "$T/p" > "$T/g"
            garbage "$who, $target port: REQUEST before HELLO" $target "$addr" closed $ev
    done
}
AS=(); tcp_garbage stranger
AS=(-k "$KEY" -n node2); tcp_garbage member
AS=()

for target in master node1; do
    sock=$(node_sock $target)
    { printf '\x00\x00\x00\x10'; head -c 4092 /dev/urandom; } > "$T/g"; garbage "$target control socket: random bytes" $target "$sock" closed 1
    { be32 $((0x7fffffff)); be8 1; be8 $MSG_STATUS; be16 0; be32 1; } > "$T/g"; garbage "$target control socket: length 0x7fffffff" $target "$sock" closed 1
    { be32 4; be8 9; be8 $MSG_STATUS; be16 0; be32 1; } > "$T/g"; garbage "$target control socket: version 9" $target "$sock" closed 1
    { be32 1; be64 5; be8 0; } > "$T/p"; frame $MSG_REQUEST "$T/p" > "$T/g"
        garbage "$target control socket: a peer's REQUEST" $target "$sock" closed 1
    { be32 9; be32 0; be32 0; be16 1; printf 'ab'; } > "$T/p"; frame $MSG_POST "$T/p" > "$T/g"
        garbage "$target control socket: POST with trailing bytes" $target "$sock" closed 1
    { be32 100; be8 1; be8 $MSG_VIEW; be16 0; be32 1; } > "$T/g"; garbage "$target control socket: a truncated frame, then close" $target "$sock" open 0
done
{ be32 9; be32 $((0x7fffffff)); be32 0; be16 1; printf 'a'; } > "$T/p"; frame $MSG_POST "$T/p" > "$T/g"
    garbage "node1 control socket: POST with a UTC offset of 68 years" node1 "$(node_sock node1)" closed 1
{ be32 9; be32 0; be32 $((0xffffffff)); be16 1; printf 'a'; } > "$T/p"; frame $MSG_POST "$T/p" > "$T/g"
    garbage "node1 control socket: POST holding for 49 days" node1 "$(node_sock node1)" closed 1

# one bad frame closes one connection: one protocol-error event for it, not two
before=$(count_events master protocol-error)
{ be32 1; be64 5; be8 0; } > "$T/p"; frame $MSG_REQUEST "$T/p" > "$T/frame"
"$SEND" -k "$KEY" -n node1 -t 2000 "127.0.0.1:$(node_port master)" < "$T/frame" >/dev/null
wait_event master protocol-error $((before + 1)) 3
sleep 0.2
is "$(( $(count_events master protocol-error) - before ))" 1 "REQUEST before HELLO: exactly one protocol-error event for the one connection closed"

# odd but well-formed VIEW requests: an answer, no hang, no crash
for target in master node1; do
    for req in "0 18446744073709551615 0 0 0" "9223372036854775807 0 0 4294967295 0" "0 0 1 1 0" "5 0 2 0 0" \
               "0 0 0 0 9223372036854775807" "0 0 0 0 18446744073709551615" "0 0 0 1 1"; do
        set -- $req
        { be32 3; be64 "$1"; be64 "$2"; be64 "$3"; be32 "$4"; be64 "$5"; be64 0; } > "$T/p"; frame $MSG_VIEW "$T/p" > "$T/frame"
        out=$("$SEND" -t 3000 -e 9 -o "$T/reply" "$(node_sock $target)" < "$T/frame")
        # the last frame of the answer is VIEW_END (type 9)
        like "$(od -An -tx1 "$T/reply" | tr -d ' \n')" '0109000000000003' "$target: VIEW from=$1 last_n=$2 upto=$3 max=$4 since_time=$5 ends with VIEW_END"
        is "$(node_pid $target)" "${PID0[$target]}" "$target: still running after that VIEW"
    done
done

# --- and everything still works ------------------------------------------------------------------
run ctl node2 post "after the storm"
is "$RC" 0 "a post on node2 works after all that" || diag "$ERR"
run ctl node1 post "node1 too"
is "$RC" 0 "a post on node1 works after all that" || diag "$ERR"
run ctl node1 view
is "$(printf '%s\n' "$OUT" | head -n "$(printf '%s\n' "$view0" | wc -l)")" "$view0" "the earlier lines of the log are intact"
like "$OUT" $'root: after the storm\n[^\n]*root: node1 too$' "the new posts follow them"
ok "the cluster is fully linked again" wait_connected 10
for n in master node1 node2; do
    is "$(node_pid $n)" "${PID0[$n]}" "$n: same PID as before the garbage"
    is "$(count_events $n append-refused)" 0 "$n: no append-refused"
done

done_testing
