#!/usr/bin/env bash
# 92-archive-faults — `dchatd --archive` under injected failures (strace -e inject): a
# failed link, directory sync or rename leaves the old state exactly (chat.log the old
# log with one name, no chat.log.FIRST-LAST, no chat.log.new) and a rerun completes; a
# crash (SIGKILL) just before the rename leaves a second name of the live log, which the
# next start of the server (or the next --archive) removes, so it cannot grow under the
# archive's name; a failure after the rename (the directory sync) is the archive done,
# exit 0 with a warning.  Also a damaged start record: refused with how to recover, and
# `dchatd --repair` rebuilds it from the archive.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd strace
need_tool mklog

cluster_config 1
STATE=$(node_state master)
LOG=$STATE/chat.log
N=50
run "$TESTLIB/mklog" "$STATE" "$N"
is "$RC/$OUT" "0/$N" "mklog wrote $N entries"
ino0=$(stat -c %i "$LOG")
size0=$(stat -c %s "$LOG")

# LeakSanitizer cannot run under ptrace (strace): without this an ASan build exits 1 at the end
NO_LSAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# archive [STRACE-INJECT...]: dchatd --archive, under strace when asked
archive() {
    if [ $# -gt 0 ]; then
        run env STATE_DIRECTORY="$STATE" ASAN_OPTIONS="$NO_LSAN" strace -f -qq -o /dev/null "$@" \
            "$DCHATD" -c "$CONF" -n master --archive
    else
        run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n master --archive
    fi
}
# the state before any archive: chat.log is the old log, with one name, and nothing else
old_state() {
    [ "$(stat -c %i/%h/%s "$LOG")" = "$ino0/1/$size0" ] && [ ! -e "$STATE/chat.log.1-$N" ] &&
        [ ! -e "$STATE/chat.log.new" ]
}
# the state after it: chat.log.1-N is the old log (one name), chat.log the new one
new_state() {
    [ "$(stat -c %i/%h/%s "$STATE/chat.log.1-$N")" = "$ino0/1/$size0" ] &&
        [ "$(stat -c %h "$LOG")" = 1 ] && [ "$(stat -c %s "$LOG")" -lt 1000 ] && [ ! -e "$STATE/chat.log.new" ]
}
state() { ls -li "$STATE"; }

archive -e inject=rename,renameat,renameat2:error=EIO
is "$RC" 1 "the rename fails (EIO): dchatd --archive exits 1"
like "$ERR" "cannot archive the chat log in .*: Input/output error; nothing was changed" "... saying so"
ok "... and the old state is left, no link of the live log" old_state || diag "$(state)"

archive -e inject=link,linkat:error=ENOSPC
is "$RC" 1 "the link fails (ENOSPC): exit 1"
ok "... the old state" old_state || diag "$(state)"

archive -e inject=fsync:error=EIO:when=2
is "$RC" 1 "the directory sync before the rename fails: exit 1"
ok "... the old state" old_state || diag "$(state)"

# a crash just before the rename: the archive name is a second name of the live log
archive -e inject=rename,renameat,renameat2:error=EIO:signal=KILL
is "$RC" 137 "killed just before the rename"
is "$(stat -c %h "$LOG")" 2 "... chat.log has a second name (chat.log.1-$N) left over"
node_start master --no-wait
ok "the server starts" node_wait_ready master
like "$(grep -a 'removed' "$(node_log master)")" "removed .*/chat.log.1-$N: a second name of chat.log" \
    "... removes the left-over name, saying so"
is "$(stat -c %h "$LOG")" 1 "... chat.log has one name again"
node_stop master
ok "the old state" old_state || diag "$(state)"

archive -e inject=rename,renameat,renameat2:error=EIO:signal=KILL
is "$RC" 137 "killed just before the rename again"
archive
is "$RC" 0 "the next --archive completes" || diag "$ERR"
like "$ERR" "removed .*chat.log.1-$N, a second name of chat.log" "... after removing the left-over name"
ok "... the new state" new_state || diag "$(state)"

# once more, failing after the rename: done, with a warning
mv "$STATE/chat.log.1-$N" "$T/archived"
rm -f "$LOG" "$STATE/chat.log.idx"
cp "$T/archived" "$LOG"
ino0=$(stat -c %i "$LOG")
archive -e inject=fsync:error=EIO:when=3
is "$RC" 0 "the directory sync after the rename fails: exit 0, the archive is done"
like "$OUT" "archived seqs 1 to $N as .*chat.log.1-$N" "... it says what it did"
like "$ERR" "warning: the archive is done, but syncing .* failed" "... with a warning"
ok "... the new state" new_state || diag "$(state)"

# --- a damaged start record -----------------------------------------------------------------------
node_start master
printf '\x55' | dd of="$LOG" bs=1 seek=30 conv=notrunc status=none
node_stop master
run env STATE_DIRECTORY="$STATE" RUNTIME_DIRECTORY="$T/master/run" DCHAT_LOG=stderr timeout 20 \
    "$DCHATD" -c "$CONF" -n master
is "$RC" 1 "the server refuses a log whose start record is damaged"
like "$ERR" "start record .* is damaged; refusing .* run 'dchatd --repair'" "... saying how to recover"
run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n master --repair
is "$RC" 0 "dchatd --repair" || diag "$ERR"
like "$OUT" "rebuilt the start record of .*chat.log from chat.log.1-$N: the log goes on after seq $N" "... from the archive"
like "$OUT" "the chat log opens: seqs $((N + 1)) to $N" "... and the log opens"
run env STATE_DIRECTORY="$STATE" "$DCHATD" -c "$CONF" -n master --repair
like "$RC/$OUT" "^0/.*nothing to repair" "--repair again: nothing to repair"
node_start master
ok "the server starts on the repaired log" node_wait_ready master
like "$(grep -a 'chat log ' "$(node_log master)" | tail -n 1)" "seqs $((N + 1)) to $N" "... going on at seq $((N + 1))"
node_stop master

done_testing
