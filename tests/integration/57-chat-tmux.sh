#!/usr/bin/env bash
# 57-chat-tmux — `dchatctl chat` in a real terminal (a tmux of its own, driven with
# send-keys, read with capture-pane): the prompt user@node>, a typed line is posted, a
# line posted on another node appears above the prompt while a half-typed line stays
# intact, line editing and history, /view N, /status, an unknown command, /quit and
# Ctrl-D end it with exit 0, and so does SIGINT.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd tmux

cluster_start 2
for i in 1 2 3; do ctl node2 post "old line $i" >/dev/null || diag "post failed"; done

TM=(tmux -L "dchat-test-$$-${RANDOM}" -f /dev/null)
# chat_open NAME [ARGS]: dchatctl chat on node1 in a new window; its exit status goes to $T/NAME.rc
chat_open() {
    local name=$1; shift
    local cmd="${CHAT_ENV:-} '$DCHATCTL' -s '$(node_sock node1)' chat $*; echo \$? > '$T/$name.rc'; sleep 600"
    if [ -z "${TMUX_PID:-}" ]; then
        "${TM[@]}" new-session -d -s "$name" -x 120 -y 50 "$cmd" || bail_out "tmux new-session failed"
        TMUX_PID=$("${TM[@]}" display-message -p '#{pid}')
        track_pid "$TMUX_PID"           # the test's own tmux server, stopped by PID at the end
    else
        "${TM[@]}" new-session -d -s "$name" -x 120 -y 50 "$cmd"
    fi
}
screen_of() { "${TM[@]}" capture-pane -p -t "$1"; }
# the screen's last non-empty line (where the prompt is)
last_line() { screen_of "$1" | sed '/^$/d' | tail -n 1; }
# (capture-pane drops trailing blanks: compare without them)
prompt_is() { local want=$2; [ "$(last_line "$1")" = "${want% }" ]; }
screen_has() { screen_of "$1" | grep -q -F -- "$2"; }
keys() { "${TM[@]}" send-keys -t "$@"; }
P="root@node1> "

chat_open c1 -n 2
ok "the prompt is 'root@node1> '" wait_for -t 10 prompt_is c1 "$P"
ok "the last 2 lines are shown first (-n 2)" wait_for -t 10 screen_has c1 "root: old line 3"
screen_of c1 > "$T/screen0"
like "$(cat "$T/screen0")" 'old line 2' "... old line 2 as well"
unlike "$(cat "$T/screen0")" 'old line 1' "... and not the one before"

# --- a typed line is posted and comes back from the log ---------------------------------------------
keys c1 -l "hello from the prompt"
keys c1 Enter
ok "the typed line is posted" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: hello from the prompt\$"'
ok "it shows in the chat as a log line" wait_for -t 10 screen_has c1 "root: hello from the prompt"
ok "the prompt is back, empty" wait_for -t 5 prompt_is c1 "$P"
is "$(screen_of c1 | grep -c -F "${P}hello from the prompt")" 0 "the typed line was wiped: it shows once, as a log line"

# --- a line from another node appears above the prompt; the half-typed line stays ----------------
keys c1 -l "half typed"
ok "the half-typed line is on the prompt" wait_for -t 5 prompt_is c1 "${P}half typed"
ctl node2 post "a line from node2" >/dev/null
ok "node2's line appears in the chat" wait_for -t 10 screen_has c1 "root: a line from node2"
ok "... and the prompt still holds the half-typed line, intact, below it" wait_for -t 5 prompt_is c1 "${P}half typed"
screen_of c1 | sed '/^$/d' | tail -n 2 > "$T/two"
like "$(head -n 1 "$T/two")" 'root: a line from node2$' "node2's line is right above the prompt"
# typing goes on where it was: the line posted is the whole of it
keys c1 -l " and finished"
keys c1 Enter
ok "the finished line is posted whole" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: half typed and finished\$"'
# several lines while typing
keys c1 -l "typing"
for i in 1 2 3; do ctl node2 post "burst $i" >/dev/null; done
ok "a burst of 3 lines appears" wait_for -t 10 screen_has c1 "root: burst 3"
ok "the half-typed line is still intact after the burst" wait_for -t 5 prompt_is c1 "${P}typing"
keys c1 C-u                     # line editing: kill the line
ok "Ctrl-U clears the typed line" wait_for -t 5 prompt_is c1 "$P"

# --- history: Up brings back the last line ------------------------------------------------------------
keys c1 Up
ok "Up recalls the last line typed" wait_for -t 5 prompt_is c1 "${P}half typed and finished"
keys c1 C-u

# --- /view N, /status, unknown commands -----------------------------------------------------------------
keys c1 -l "/view 2"
keys c1 Enter
ok "/view 2 prints the last 2 lines" wait_for -t 10 screen_has c1 "*** end of /view"
screen_of c1 > "$T/screen1"
like "$(grep -A3 -F '*** the last 2 line(s):' "$T/screen1")" 'burst 2.*burst 3' "... burst 2 and burst 3"
ok "the prompt is back after /view" wait_for -t 5 prompt_is c1 "$P"
keys c1 -l "/status"
keys c1 Enter
ok "/status shows the node and its server" wait_for -t 10 screen_has c1 "*** node1: peer, server master connected"
keys c1 -l "/frobnicate"
keys c1 Enter
ok "an unknown command says so" wait_for -t 10 screen_has c1 "unknown command /frobnicate"
is "$(ctl node2 view | grep -c frobnicate)" 0 "... and is not posted"

# --- a half-typed line wider than the terminal (120 columns), the cursor inside it --------------------
long=$(printf 'w%.0s' $(seq 1 150))
keys c1 -l "$long"
keys c1 Left Left Left
cursor() { "${TM[@]}" display-message -p -t c1 '#{cursor_x} #{cursor_y}'; }
wrapped_ok() {
    local s; s=$(screen_of c1 | sed '/^$/d' | tail -n 2 | tr -d '\n')
    [ "$s" = "${P}${long}" ]
}
ok "the long line wraps onto two rows" wait_for -t 5 wrapped_ok
read -r cx0 cy0 < <(cursor)
ctl node2 post "while a long line is typed" >/dev/null
ok "a line arrives above the wrapped input" wait_for -t 10 screen_has c1 "root: while a long line is typed"
ok "the wrapped input is intact below it" wait_for -t 5 wrapped_ok
cursor_is() { [ "$(cursor)" = "$1" ]; }
ok "the cursor is where it was in the input (one row lower)" wait_for -t 5 cursor_is "$cx0 $((cy0 + 1))"
keys c1 -l "X"
keys c1 Enter
ok "an edit at the cursor lands there" \
    wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: ${long:0:147}Xwww\$"'

# --- the terminal shrinks to 80 columns: the same long line now takes three rows --------------------
"${TM[@]}" resize-window -t c1 -x 80 -y 50
keys c1 -l "$long"
rows3_ok() {
    local s; s=$(screen_of c1 | sed '/^$/d' | tail -n 3 | tr -d '\n')
    [ "$s" = "${P}${long}" ]
}
ok "after a resize the long line wraps onto three rows" wait_for -t 5 rows3_ok
ctl node2 post "after the resize" >/dev/null
ok "a line arrives above it" wait_for -t 10 screen_has c1 "root: after the resize"
ok "the three-row input is intact below it" wait_for -t 5 rows3_ok
keys c1 C-u
ok "Ctrl-U clears it" wait_for -t 5 prompt_is c1 "$P"

# --- the local dchatd restarts: the chat says so, reconnects, and misses nothing ---------------------------
node_stop node1
ok "the chat says it lost dchatd" wait_for -t 10 screen_has c1 "*** dchatd closed the connection; trying again"
ctl node2 post "posted while node1 was down" >/dev/null
node_start node1
wait_connected 15
ok "the chat says it is back" wait_for -t 10 screen_has c1 "*** reconnected to dchatd"
ok "the line posted meanwhile appears" wait_for -t 10 screen_has c1 "root: posted while node1 was down"
ok "the prompt is back after the reconnect" wait_for -t 5 prompt_is c1 "$P"
is "$(screen_of c1 | grep -c 'root: while a long line is typed$')" 1 "no line is shown twice after the reconnect"

# --- /quit ends it with exit 0 -------------------------------------------------------------------------------
keys c1 -l "/quit"
keys c1 Enter
ok "/quit ends the chat" wait_for -t 10 test -s "$T/c1.rc"
is "$(cat "$T/c1.rc" 2>/dev/null)" 0 "... with exit 0"

# --- Ctrl-D on an empty line, and SIGINT (Ctrl-C), end it with exit 0 -----------------------------------
chat_open c2 -n 0
ok "a second chat starts" wait_for -t 10 prompt_is c2 "$P"
is "$(screen_of c2 | sed '/^$/d')" "${P% }" "with -n 0 it shows no old lines, only the prompt"
keys c2 C-d
ok "Ctrl-D ends the chat" wait_for -t 10 test -s "$T/c2.rc"
is "$(cat "$T/c2.rc" 2>/dev/null)" 0 "... with exit 0"
chat_open c3
ok "a third chat starts" wait_for -t 10 prompt_is c3 "$P"
keys c3 -l "never sent"
keys c3 C-c
ok "Ctrl-C ends the chat" wait_for -t 10 test -s "$T/c3.rc"
is "$(cat "$T/c3.rc" 2>/dev/null)" 0 "... with exit 0"
is "$(ctl node2 view | grep -c 'never sent')" 0 "the half-typed line was not posted"

# --- the terminal goes away under it (the window's tmux killed): it ends, it does not spin ------
# (LeakSanitizer's check at exit hangs now and then in a process whose terminal has just
# gone — seen under check-asan, never without it: here, and only here, it is off; the
# other chats are checked for leaks)
CHAT_ENV="ASAN_OPTIONS='${ASAN_OPTIONS:-}:detect_leaks=0'" chat_open c4
ok "a fourth chat starts" wait_for -t 10 prompt_is c4 "$P"
sh_pid=$("${TM[@]}" display-message -p -t c4 '#{pane_pid}')
chat_pid=$(ps -o pid= --ppid "$sh_pid" | tr -d ' ')
isnt "$chat_pid" "" "dchatctl chat runs in c4 (PID ${chat_pid:-?})"
[ -n "$chat_pid" ] && track_pid "$chat_pid"
kill -KILL "$TMUX_PID"
ok "with its terminal gone, the chat ends (no process left polling a dead terminal)" \
    wait_for -t 10 eval '! kill -0 "$chat_pid" 2>/dev/null || [ "$(ps -o stat= -p "$chat_pid")" = Z ]'
done_testing
