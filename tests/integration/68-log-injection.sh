#!/usr/bin/env bash
# 68-log-injection — names from the network reach the logs escaped (issue 11, item 12).
# In plaintext mode (insecure_plaintext) anyone may send a HELLO; its name, with a
# newline that would start a forged `event=` line, a terminal escape sequence and bytes
# that are no UTF-8, is logged on one line with those shown as \xNN: in the stderr
# key=value lines and in the journal's MESSAGE (no raw control character in either).
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl journalctl
need_tool send-raw
need_journal
export DCHAT_LOG=both

cluster_start 2 'insecure_plaintext = true;'
SEND=$TESTLIB/send-raw
hello() { { be32 1; wstr "$1"; be8 "${2:-$ROLE_PEER}"; be64 1; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p"; }

evil=$'evil\nevent=cs-enter node=node2 msg="forged"'
esc=$'\e[2J\e[31mred'
bad=$'bad\xff\xfe\xc0\xaf'
for who in master node1; do
    addr=127.0.0.1:$(node_port "$who")
    for name in "$evil" "$esc" "$bad"; do
        hello "$name" > "$T/g"
        is "$("$SEND" -t 3000 "$addr" < "$T/g")" closed "$who: a HELLO from '$(printf '%q' "$name")' is refused"
    done
done
ok "the server logged the three" wait_event master protocol-error 3 5
ok "node1 logged the three" wait_event node1 protocol-error 3 5

for who in master node1; do
    log=$(node_log "$who")
    is "$(grep -a -c '^time=[^ ]* no=[0-9]* event=cs-enter node=node2 ' "$log")" 0 "$who: no forged line (event=cs-enter node=node2) in its stderr log"
    is "$(grep -a -c $'\e' "$log")" 0 "$who: no escape character in its stderr log"
    is "$(LC_ALL=C grep -a -c -P '[\x80-\xff]' "$log")" 0 "$who: no byte that is no UTF-8 (nor any non-ASCII) in its stderr log"
    msgs=$(events "$who" protocol-error | ev_field msg)
    like "$msgs" "'evil\\\\x0aevent=cs-enter node=node2 msg=\"forged\"'" "$who: the newline is shown as \\x0a, on the event's own line"
    like "$msgs" "'\\\\x1b\\[2J\\\\x1b\\[31mred'" "$who: the escape sequence is shown as \\x1b"
    like "$msgs" "'bad\\\\xff\\\\xfe\\\\xc0\\\\xaf'" "$who: the bytes that are no UTF-8 are shown as \\xNN"
done

# the journal: MESSAGE is a string (journalctl -o json gives an array of bytes for a
# field with control characters or no UTF-8) without any control character
journalctl --sync
run journalctl -q -t dchatd DCHAT_EVENT=protocol-error -o json
is "$RC" 0 "journalctl DCHAT_EVENT=protocol-error"
res=$(printf '%s\n' "$OUT" | perl -MJSON::PP -ne '
    my $e = decode_json($_); my $m = $e->{MESSAGE};
    if (ref $m) { print "bytes|$e->{DCHAT_NODE}\n"; next }
    print(($m =~ /[\x00-\x1f\x7f]/ ? "control" : "clean"), "|$e->{DCHAT_NODE}|", ($m =~ /evil\\x0aevent=cs-enter/ ? "evil" : ""), "\n");' |
    sort | uniq -c | sed 's/^ *//' | tr '\n' ' ')
is "$res" "2 clean|master| 1 clean|master|evil 2 clean|node1| 1 clean|node1|evil " \
    "journal: 3 protocol-error MESSAGEs per node, all clean text, the newline shown as \\x0a"

# and the cluster carries on
run ctl node1 post "after the injection attempts"
is "$RC" 0 "posting works" || diag "$ERR"
done_testing
