#!/usr/bin/env bash
# 57-chat-tmux — `dchatctl chat` in a real terminal (a tmux of its own, driven with
# send-keys, read with capture-pane):
#
#   - the prompt user@node>, a banner that names /help, the last lines first; each line as
#     TIME USER@NODE: TEXT, our own marked "(you)"; a typed line is posted and comes back as
#     a log line; a line posted on another node appears above the prompt while a half-typed
#     line stays intact; line editing and history, /view N, /status, an unknown command;
#   - what is typed is UTF-8 whatever the locale (this chat runs under LC_ALL=C, where
#     libedit used to drop every byte above 127: "Grüße" was stored as "Gre"): German,
#     CJK, emoji with skin-tone modifiers, ZWJ sequences and a flag, Hebrew and Arabic
#     (right to left) are stored byte for byte, in the view and in the server's log file;
#     one more from a chat under LC_ALL=C.UTF-8;
#   - colours: the author@node in a colour of its own (the same for every line of one
#     author), ours bold, on a terminal; none at all with NO_COLOR;
#   - a post on its way shows as "[sending] TEXT" below the log while node2 holds the
#     critical section, and leaves once stored; with the server gone, "[waiting: why]",
#     then "*** not posted: "TEXT": why" (it used to vanish, and 10 s later "post failed"
#     said nothing of which line);
#   - Ctrl-C clears the line and the chat goes on (it used to end it), with a hint on an
#     empty line; Ctrl-D and /quit leave (exit 0), and so do SIGTERM and a terminal that
#     goes away; Tab completes a command or is spaces, not nothing; a line of spaces posts
#     nothing;
#   - presence: another user's chat opening and closing on node2 is announced, /who names
#     who is where, node2 going away, declared dead and coming back is announced;
#   - times: each poster's local time, /time and --local-time: the viewer's, /seconds.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd tmux setpriv perl od
getent group users >/dev/null || skip_all "needs the group users"

# dead_after_ms 6 s: a post typed while the server is away waits long enough to be seen waiting
cluster_start 2 'control_group = "users";' 'suspect_after_ms = 2000;' 'dead_after_ms = 6000;'
for i in 1 2 3; do ctl node2 post "old line $i" >/dev/null || diag "post failed"; done

TM=(tmux -u -L "dchat-test-$$-${RANDOM}" -f /dev/null)
# chat_open NAME [ARGS]: dchatctl chat on $CHAT_NODE (node1) in a new window, with $CHAT_ENV
# and as $CHAT_AS (a command prefix); its exit status goes to $T/NAME.rc
chat_open() {
    local name=$1; shift
    local cmd="${CHAT_ENV:-} ${CHAT_AS:-} '$DCHATCTL' -s '$(node_sock "${CHAT_NODE:-node1}")' chat $*; echo \$? > '$T/$name.rc'; sleep 600"
    if [ -z "${TMUX_PID:-}" ]; then
        "${TM[@]}" new-session -d -s "$name" -x 120 -y 50 "$cmd" || bail_out "tmux new-session failed"
        TMUX_PID=$("${TM[@]}" display-message -p '#{pid}')
        track_pid "$TMUX_PID"           # the test's own tmux server, stopped by PID at the end
    else
        "${TM[@]}" new-session -d -s "$name" -x 120 -y 50 "$cmd"
        # (the server may be a new one, if the last session ended with its chat)
        local pid; pid=$("${TM[@]}" display-message -p '#{pid}')
        [ "$pid" = "$TMUX_PID" ] || { TMUX_PID=$pid; track_pid "$pid"; }
    fi
}
screen_of() { "${TM[@]}" capture-pane -p -t "$1"; }
screen_esc() { "${TM[@]}" capture-pane -e -p -t "$1"; }
# the screen's last non-empty line (where the prompt is)
last_line() { screen_of "$1" | sed '/^$/d' | tail -n 1; }
# (capture-pane drops trailing blanks: compare without them)
prompt_is() { local want=$2; [ "$(last_line "$1")" = "${want% }" ]; }
screen_has() { screen_of "$1" | grep -q -F -- "$2"; }
screen_lacks() { ! screen_of "$1" | grep -q -F -- "$2"; }
keys() { "${TM[@]}" send-keys -t "$@"; }
# the text of the last line of the log, as bytes in hex
last_text_hex() { ctl node2 view -n 1 | sed 's/^[0-9]\{2\} [A-Z][a-z]\{2\} [0-9:]\{5\}[AP]M [^:]*: //' | head -c -1 | od -An -v -tx1 | tr -d ' \n'; }
hex_of() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
P="root@node1> "
CHAT_ENV="TZ=UTC0"
chat_open c1 -n 2
CHAT_ENV=
ok "the prompt is 'root@node1> '" wait_for -t 10 prompt_is c1 "$P"
ok "a banner names /help and how to leave" wait_for -t 10 screen_has c1 "*** dchat on node1: type a line and Enter to post it; /help for commands; /quit or Ctrl-D leaves"
ok "the last 2 lines are shown first (-n 2), as USER@NODE, ours marked" wait_for -t 10 screen_has c1 "root@node2 (you): old line 3"
screen_of c1 > "$T/screen0"
like "$(cat "$T/screen0")" 'old line 2' "... old line 2 as well"
unlike "$(cat "$T/screen0")" 'old line 1' "... and not the one before"
ok "it says who else is in the chat: nobody" wait_for -t 10 screen_has c1 "*** nobody else is in the chat just now"

# --- a typed line is posted and comes back from the log ---------------------------------------------
keys c1 -l "hello from the prompt"
keys c1 Enter
ok "the typed line is posted" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: hello from the prompt\$"'
ok "it shows in the chat as a log line from root@node1, marked (you)" wait_for -t 10 screen_has c1 "root@node1 (you): hello from the prompt"
ok "the prompt is back, empty" wait_for -t 5 prompt_is c1 "$P"
is "$(screen_of c1 | grep -c -F "${P}hello from the prompt")" 0 "the typed line was wiped: it shows once, as a log line"

# --- UTF-8 input, stored byte for byte (LC_ALL=C in this chat's environment) ---------------------
is "$("${TM[@]}" show-environment -g LC_ALL 2>/dev/null)" "LC_ALL=C" "the chat runs under LC_ALL=C (the test's locale)"
U_DE="Grüße aus Köln — Straße, Bäcker, Öl"
U_CJK="日本語のテキスト、中文，한국어"
U_EMOJI="👍🏽 👋🏿 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪 🎉"
U_RTL="שלום עולם — مرحبا بالعالم"
U_MIX="Köln 日本 👩🏽‍🚀 שלום!"
i=0
for u in "$U_DE" "$U_CJK" "$U_EMOJI" "$U_RTL" "$U_MIX"; do
    i=$((i + 1))
    keys c1 -l "$u"
    keys c1 Enter
    want=$(hex_of "$u")
    is_hex() { [ "$(last_text_hex)" = "$want" ]; }
    ok "UTF-8 $i: stored byte for byte ($(printf '%s' "$u" | wc -c) bytes)" wait_for -t 10 is_hex
    is "$(grep -a -c -F -- "$u" "$(node_state master)/chat.log")" 1 "UTF-8 $i: in the server's chat.log once, those bytes"
done
ok "the German line shows in the chat as typed" wait_for -t 5 screen_has c1 "root@node1 (you): $U_DE"
ok "and the prompt is back, empty" wait_for -t 5 prompt_is c1 "$P"

# --- a line from another node appears above the prompt; the half-typed line stays ----------------
keys c1 -l "half typed"
ok "the half-typed line is on the prompt" wait_for -t 5 prompt_is c1 "${P}half typed"
ctl node2 post "a line from node2" >/dev/null
ok "node2's line appears in the chat" wait_for -t 10 screen_has c1 "root@node2 (you): a line from node2"
ok "... and the prompt still holds the half-typed line, intact, below it" wait_for -t 5 prompt_is c1 "${P}half typed"
screen_of c1 | sed '/^$/d' | tail -n 2 > "$T/two"
like "$(head -n 1 "$T/two")" 'root@node2 \(you\): a line from node2$' "node2's line is right above the prompt"
# typing goes on where it was: the line posted is the whole of it
keys c1 -l " and finished"
keys c1 Enter
ok "the finished line is posted whole" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: half typed and finished\$"'
# several lines while typing
keys c1 -l "typing"
for i in 1 2 3; do ctl node2 post "burst $i" >/dev/null; done
ok "a burst of 3 lines appears" wait_for -t 10 screen_has c1 "root@node2 (you): burst 3"
ok "the half-typed line is still intact after the burst" wait_for -t 5 prompt_is c1 "${P}typing"
keys c1 C-u                     # line editing: kill the line
ok "Ctrl-U clears the typed line" wait_for -t 5 prompt_is c1 "$P"

# --- history: Up brings back the last line ------------------------------------------------------------
keys c1 Up
ok "Up recalls the last line typed" wait_for -t 5 prompt_is c1 "${P}half typed and finished"
keys c1 C-u

# --- Ctrl-C clears the line, the chat goes on ---------------------------------------------------------
keys c1 -l "never sent"
ok "a line is typed" wait_for -t 5 prompt_is c1 "${P}never sent"
keys c1 C-c
ok "Ctrl-C clears it" wait_for -t 5 prompt_is c1 "$P"
is "$(cat "$T/c1.rc" 2>/dev/null)" "" "... and the chat goes on"
keys c1 C-c
ok "Ctrl-C on an empty line says how to leave" wait_for -t 5 screen_has c1 "*** Ctrl-C clears the line; to leave: /quit or Ctrl-D"
keys c1 -l "still here"
keys c1 Enter
ok "the chat still posts after Ctrl-C" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: still here\$"'
is "$(ctl node2 view | grep -c 'never sent')" 0 "the cleared line was not posted"

# --- Tab, and a line of spaces ---------------------------------------------------------------------------
keys c1 -l "a"
keys c1 Tab
keys c1 -l "b"
keys c1 Enter
ok "Tab is spaces to the next tab stop, not nothing" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: a       b\$"'
n0=$(ctl node2 view | wc -l)
keys c1 -l "    "
keys c1 Enter
keys c1 -l "after the spaces"
keys c1 Enter
ok "the next line is posted" wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: after the spaces\$"'
is "$(ctl node2 view | wc -l)" $((n0 + 1)) "a line of spaces posted nothing (like an empty one)"
keys c1 -l "/wh"
keys c1 Tab
ok "Tab completes a command: /wh to /who" wait_for -t 5 prompt_is c1 "${P}/who"
keys c1 C-u

# --- colours: an author's own, ours bold; and none with NO_COLOR ----------------------------------
screen_esc c1 > "$T/esc1"
# the escape sequences right before each "root@node1 (you)" and "root@node2 (you)"
sgr_before() { grep -a -o -P '(\e\[[0-9;]*m)+(?='"$1"')' "$T/esc1" | sort -u; }
c_n1=$(sgr_before 'root@node1 \(you\)')
c_n2=$(sgr_before 'root@node2 \(you\)')
like "$c_n1" $'\e\\[1m' "our lines are bold (an SGR 1 before root@node1)"
like "$c_n1" $'\e\\[(3[1-6]|9[1-6])m' "... and in a colour"
is "$(printf '%s\n' "$c_n1" | wc -l)" 1 "every line of root@node1 has the same colour"
is "$c_n2" "$c_n1" "root's lines from node2 have root's colour too (a colour per author)"
CHAT_ENV="NO_COLOR=1" chat_open c2 -n 5
ok "a chat with NO_COLOR starts" wait_for -t 10 prompt_is c2 "$P"
ok "... and shows the last lines" wait_for -t 10 screen_has c2 "root@node1 (you): after the spaces"
is "$(screen_esc c2 | grep -a -c $'\e\\[')" 0 "with NO_COLOR: no escape sequence on the screen"
keys c2 C-d
ok "Ctrl-D ends it" wait_for -t 10 test -s "$T/c2.rc"
is "$(cat "$T/c2.rc" 2>/dev/null)" 0 "... with exit 0"

# --- presence: another user's chat on node2 ---------------------------------------------------------
CHAT_NODE=node2 CHAT_AS="setpriv --reuid=nobody --regid=nogroup --groups=users" CHAT_ENV="LC_ALL=C.UTF-8" \
    chat_open c5 -n 1
ok "nobody's chat on node2 starts" wait_for -t 10 prompt_is c5 "nobody@node2> "
ok "... and says root is in the chat on node1" wait_for -t 10 screen_has c5 "*** in the chat: root@node1"
ok "c1 is told: nobody opened a chat on node2" wait_for -t 10 screen_has c1 "*** nobody opened a chat on node2"
keys c5 -l "Servus aus München 🥨"
keys c5 Enter
ok "nobody's UTF-8 line (LC_ALL=C.UTF-8) is stored as typed" \
    wait_for -t 10 eval '[ "$(last_text_hex)" = "$(hex_of "Servus aus München 🥨")" ]'
ok "it shows in c1 as nobody@node2, not marked as ours" wait_for -t 10 screen_has c1 "nobody@node2: Servus aus München"
ok "in c5 it is nobody's own: marked" wait_for -t 10 screen_has c5 "nobody@node2 (you): Servus aus München"
screen_esc c1 > "$T/esc1"
c_nb=$(sgr_before 'nobody@node2')
like "$c_nb" $'\e\\[(3[1-6]|9[1-6])m' "nobody's line in c1 has a colour"
unlike "$c_nb" $'\e\\[1m' "... not bold: not ours"
keys c1 -l "/who"
keys c1 Enter
ok "/who: node2 with nobody in the chat" wait_for -t 10 screen_has c1 "*** node2 (peer): up; in the chat: nobody"
ok "/who: node1, here, with root in the chat" wait_for -t 10 screen_has c1 "*** node1 (peer, here): up; in the chat: root"
ok "/who: the server" wait_for -t 10 screen_has c1 "*** master (server): up"
keys c5 -l "/quit"
keys c5 Enter
ok "nobody's /quit ends that chat" wait_for -t 10 test -s "$T/c5.rc"
is "$(cat "$T/c5.rc" 2>/dev/null)" 0 "... with exit 0"
ok "c1 is told: nobody left the chat on node2" wait_for -t 10 screen_has c1 "*** nobody left the chat on node2"

# --- a post on its way: sending, then stored -------------------------------------------------------
ctl node2 post --hold 5 "node2 holds the critical section" >"$T/hold.out" 2>&1 &
hold=$!
held() { ctl node2 status --json | grep -q '"dme_state":"held"'; }
ok "node2 holds the critical section" wait_for -t 10 held
keys c1 -l "held up line"
keys c1 Enter
ok "the line shows as sending, below the log" wait_for -t 5 screen_has c1 "[sending] held up line"
ok "once stored it is a log line" wait_for -t 20 screen_has c1 "root@node1 (you): held up line"
ok "... and the sending marker is gone" wait_for -t 5 screen_lacks c1 "[sending] held up line"
wait "$hold"

# --- the server goes away: waiting, then not posted, quoting the line --------------------------------
node_stop master
ok "the chat says it lost the server" wait_for -t 15 screen_has c1 "*** lost the connection to the server master"
keys c1 -l "while the server is away"
keys c1 Enter
ok "the line waits, saying why" wait_for -t 5 screen_has c1 "[waiting: the server master is unreachable"
ok "then it is not posted, quoting the line and saying why" \
    wait_for -t 20 screen_has c1 '*** not posted: "while the server is away": the server master has been unreachable for'
ok "... and the waiting marker is gone" wait_for -t 5 screen_lacks c1 "[waiting:"
node_start master
wait_connected 15
ok "the chat follows the log again" wait_for -t 15 screen_has c1 "*** the log is served again"
is "$(ctl node2 view | grep -c 'while the server is away')" 0 "the line that was not posted is not in the log"

# --- /view N, /status, unknown commands -----------------------------------------------------------------
for i in 1 2; do ctl node2 post "for view $i" >/dev/null; done
keys c1 -l "/view 2"
keys c1 Enter
ok "/view 2 prints the last 2 lines" wait_for -t 10 screen_has c1 "*** end of /view"
screen_of c1 > "$T/screen1"
like "$(grep -A3 -F '*** the last 2 line(s):' "$T/screen1" | tail -n 3)" 'for view 1.*for view 2' "... for view 1 and for view 2"
ok "the prompt is back after /view" wait_for -t 5 prompt_is c1 "$P"
keys c1 -l "/status"
keys c1 Enter
ok "/status shows the node and its server" wait_for -t 10 screen_has c1 "*** node1: peer, server master connected"
keys c1 -l "/frobnicate"
keys c1 Enter
ok "an unknown command says so" wait_for -t 10 screen_has c1 "unknown command /frobnicate"
is "$(ctl node2 view | grep -c frobnicate)" 0 "... and is not posted"

# --- times: the poster's (as view), the viewer's with /time, seconds with /seconds ---------------------
# c1 runs with TZ=UTC0; node2's poster is 5:30 east of it
when_of() { ctl node2 view --json -n 1 | sed -n 's/.*"unix_time":\([0-9]*\).*/\1/p'; }
TZ=ABC-5:30 ctl node2 post "posted at +05:30 (1)" >/dev/null
t1=$(when_of)
ok "a line from +05:30 shows the poster's local time" \
    wait_for -t 10 screen_has c1 "$(TZ=ABC-5:30 date -d "@$t1" '+%d %b %I:%M%p') root@node2 (you): posted at +05:30 (1)"
keys c1 -l "/time"
keys c1 Enter
ok "/time: the viewer's time from now on" wait_for -t 10 screen_has c1 "*** times from now on: your local time (UTC+0000)"
TZ=ABC-5:30 ctl node2 post "posted at +05:30 (2)" >/dev/null
t2=$(when_of)
ok "the next line shows the viewer's time (UTC)" \
    wait_for -t 10 screen_has c1 "$(TZ=UTC0 date -d "@$t2" '+%d %b %I:%M%p') root@node2 (you): posted at +05:30 (2)"
keys c1 -l "/seconds"
keys c1 Enter
ok "/seconds says so" wait_for -t 10 screen_has c1 "*** times from now on with seconds"
TZ=ABC-5:30 ctl node2 post "posted at +05:30 (3)" >/dev/null
t3=$(when_of)
ok "... and the next line has them" \
    wait_for -t 10 screen_has c1 "$(TZ=UTC0 date -d "@$t3" '+%d %b %I:%M:%S%p') root@node2 (you): posted at +05:30 (3)"
keys c1 -l "/time"
keys c1 Enter
keys c1 -l "/seconds"
keys c1 Enter
ok "back to the poster's time" wait_for -t 10 screen_has c1 "*** times from now on: each poster's local time"

# --- a peer goes away, is declared dead, comes back -------------------------------------------------
# (killed: silent; a clean stop says it leaves, below)
node_kill node2
ok "c1 is told node2 went away" wait_for -t 10 screen_has c1 "*** node2 went away ("
ok "... then that it was declared dead" wait_for -t 20 screen_has c1 "*** node2 was declared dead (silent for"
node_start node2
wait_connected 20
ok "... and that it is up again" wait_for -t 20 screen_has c1 "*** node2 is up"
node_stop node2
ok "node2 stopped cleanly: c1 is told it left" wait_for -t 10 screen_has c1 "*** node2 left the cluster: stopped cleanly"
node_start node2
wait_connected 20
# (the last notice about node2: up, after the one that it left)
_up_again() { screen_of c1 | grep -E '\*\*\* node2 (left the cluster|is up)' | tail -n 1 | grep -q 'is up'; }
ok "... and that it is up again" wait_for -t 20 _up_again

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
ok "a line arrives above the wrapped input" wait_for -t 10 screen_has c1 "root@node2 (you): while a long line is typed"
ok "the wrapped input is intact below it" wait_for -t 5 wrapped_ok
cursor_is() { [ "$(cursor)" = "$1" ]; }
ok "the cursor is where it was in the input (one row lower, or the screen scrolled)" \
    wait_for -t 5 eval 'cursor_is "$cx0 $((cy0 + 1))" || cursor_is "$cx0 $cy0"'
keys c1 -l "X"
keys c1 Enter
ok "an edit at the cursor lands there" \
    wait_for -t 10 eval 'ctl node2 view -n 1 | grep -q "root: ${long:0:147}Xwww\$"'

# --- a wide (CJK) half-typed line wraps by its columns, not its bytes ---------------------------------
wide=$(printf '日%.0s' $(seq 1 70))            # 140 columns, 210 bytes
keys c1 -l "$wide"
wide_ok() {
    local s; s=$(screen_of c1 | sed '/^$/d' | tail -n 2 | tr -d '\n')
    [ "$s" = "${P}${wide}" ]
}
ok "a line of 70 CJK characters wraps onto two rows" wait_for -t 5 wide_ok
ctl node2 post "while wide characters are typed" >/dev/null
ok "a line arrives above it" wait_for -t 10 screen_has c1 "root@node2 (you): while wide characters are typed"
ok "the wide input is intact below it" wait_for -t 5 wide_ok
keys c1 C-u

# --- the terminal shrinks to 80 columns: the same long line now takes three rows --------------------
"${TM[@]}" resize-window -t c1 -x 80 -y 50
keys c1 -l "$long"
rows3_ok() {
    local s; s=$(screen_of c1 | sed '/^$/d' | tail -n 3 | tr -d '\n')
    [ "$s" = "${P}${long}" ]
}
ok "after a resize the long line wraps onto three rows" wait_for -t 5 rows3_ok
ctl node2 post "after the resize" >/dev/null
ok "a line arrives above it" wait_for -t 10 screen_has c1 "root@node2 (you): after the resize"
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
ok "the line posted meanwhile appears" wait_for -t 10 screen_has c1 "root@node2 (you): posted while node1 was down"
ok "the prompt is back after the reconnect" wait_for -t 5 prompt_is c1 "$P"
is "$(screen_of c1 | grep -c 'root@node2 (you): after the resize$')" 1 "no line is shown twice after the reconnect"

# --- /quit ends it with exit 0 -------------------------------------------------------------------------------
keys c1 -l "/quit"
keys c1 Enter
ok "/quit ends the chat" wait_for -t 10 test -s "$T/c1.rc"
is "$(cat "$T/c1.rc" 2>/dev/null)" 0 "... with exit 0"

# --- -n 0; Ctrl-D on an empty line, and SIGTERM, end it with exit 0 -----------------------------------
chat_open c3 -n 0
ok "a chat with -n 0 starts" wait_for -t 10 prompt_is c3 "$P"
ok "... with its banner" wait_for -t 10 screen_has c3 "*** dchat on node1"
is "$(screen_of c3 | grep -c -E 'old line|@node[12]( \(you\))?:')" 0 "with -n 0 it shows no old lines"
keys c3 C-d
ok "Ctrl-D ends the chat" wait_for -t 10 test -s "$T/c3.rc"
is "$(cat "$T/c3.rc" 2>/dev/null)" 0 "... with exit 0"
chat_open c4
ok "another chat starts" wait_for -t 10 prompt_is c4 "$P"
keys c4 -l "never sent either"
ok "a line is typed" wait_for -t 5 prompt_is c4 "${P}never sent either"
sh_pid=$("${TM[@]}" display-message -p -t c4 '#{pane_pid}')
chat_pid=$(ps -o pid= --ppid "$sh_pid" | tr -d ' ')
isnt "$chat_pid" "" "dchatctl chat runs in c4 (PID ${chat_pid:-?})"
[ -n "$chat_pid" ] && track_pid "$chat_pid"
kill -INT "$chat_pid"
ok "SIGINT (as Ctrl-C) clears the line" wait_for -t 5 prompt_is c4 "$P"
kill -TERM "$chat_pid"
ok "SIGTERM ends the chat" wait_for -t 10 test -s "$T/c4.rc"
is "$(cat "$T/c4.rc" 2>/dev/null)" 0 "... with exit 0"
is "$(ctl node2 view | grep -c 'never sent')" 0 "the half-typed lines were not posted"

# --- the terminal goes away under it (the window's tmux killed): it ends, it does not spin ------
# (LeakSanitizer's check at exit hangs now and then in a process whose terminal has just
# gone — seen under check-asan, never without it: here, and only here, it is off; the
# other chats are checked for leaks)
CHAT_ENV="ASAN_OPTIONS='${ASAN_OPTIONS:-}:detect_leaks=0'" chat_open c6
ok "a last chat starts" wait_for -t 10 prompt_is c6 "$P"
sh_pid=$("${TM[@]}" display-message -p -t c6 '#{pane_pid}')
chat_pid=$(ps -o pid= --ppid "$sh_pid" | tr -d ' ')
isnt "$chat_pid" "" "dchatctl chat runs in c6 (PID ${chat_pid:-?})"
[ -n "$chat_pid" ] && track_pid "$chat_pid"
kill -KILL "$TMUX_PID"
ok "with its terminal gone, the chat ends (no process left polling a dead terminal)" \
    wait_for -t 10 eval '! kill -0 "$chat_pid" 2>/dev/null || [ "$(ps -o stat= -p "$chat_pid")" = Z ]'
done_testing
