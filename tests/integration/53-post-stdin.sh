#!/usr/bin/env bash
# 53-post-stdin — `dchatctl post -` (and post with no text, stdin not a terminal): each
# line of stdin one post, in order, like logger(1) (issue 16, item 5); and a post that has
# to wait says so at once (item 4):
#
#   - lines in order, UTF-8 as it is, empty and blank lines skipped, CR LF taken as LF,
#     tabs as spaces to the next multiple of 8, a last line without a newline; no text and
#     a pipe does the same; `post -- -` posts "-";
#   - 300 lines through the window of posts in flight: all stored, in order, once;
#   - a line that cannot be posted (a control character, too long) stops it there: the
#     lines before it are stored, the error names the line, exit 1, nothing after it;
#   - lines read slowly (a pipe that stays open) are posted as they come;
#   - the server stopped: post says at once that it waits and why, then fails; post -
#     names the line that failed;
#   - a post of only spaces is refused like an empty one.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd perl od

cluster_start 2 'dead_after_ms = 3000;'
S=$(node_sock node1)
texts() { ctl node2 view --json | perl -MJSON::PP -ne 'BEGIN { binmode STDOUT, ":utf8" } print decode_json($_)->{text}, "\n"'; }
count() { ctl node2 view | wc -l; }

# --- lines in order ----------------------------------------------------------------------------------
n0=$(count)
printf 'first line\n\nsecond: Grüße, 日本語 🎉\n   \n\ttabbed\tline\r\nno newline at the end' > "$T/in"
run "$DCHATCTL" -s "$S" post - < "$T/in"
is "$RC/$ERR" "0/" "post - < file: exit 0, nothing on stderr"
texts | tail -n 4 > "$T/got"
printf '%s\n' "first line" "second: Grüße, 日本語 🎉" "        tabbed  line" "no newline at the end" > "$T/want"
ok "each line a post, in order; empty and blank lines skipped; tabs to the next multiple of 8; CR LF; the last line" \
    cmp "$T/want" "$T/got"
is "$(count)" $((n0 + 4)) "four posts, no more"
run "$DCHATCTL" -s "$S" post <<< "from a pipe, no dash"
is "$RC" 0 "no text, stdin not a terminal: posts its lines"
is "$(texts | tail -n 1)" "from a pipe, no dash" "... the line stored"
run "$DCHATCTL" -s "$S" post -- -
is "$RC" 0 "post -- - posts a dash"
is "$(texts | tail -n 1)" "-" "... '-' stored"

# --- many lines -------------------------------------------------------------------------------------------
n0=$(count)
seq 1 300 | sed 's/^/bulk line /' > "$T/bulk"
run "$DCHATCTL" -s "$S" post - < "$T/bulk"
is "$RC" 0 "300 lines: exit 0" || diag "$ERR"
is "$(count)" $((n0 + 300)) "300 posts stored"
texts | tail -n 300 > "$T/got"
ok "... in order, each once" cmp "$T/bulk" "$T/got"

# --- a bad line stops it ---------------------------------------------------------------------------------
n0=$(count)
printf 'good one\ngood two\nbad \001 three\nnever four\n' > "$T/in"
run "$DCHATCTL" -s "$S" post - < "$T/in"
is "$RC" 1 "a line with a control character: exit 1"
like "$ERR" "^dchatctl: line 3 of stdin: not posted: the text contains a control character" "... naming line 3 and why"
like "$ERR" "the lines of stdin after line 3 were not posted" "... and that it stopped there"
is "$(count)" $((n0 + 2)) "the two lines before it are stored"
is "$(texts | grep -c 'never four')" 0 "... nothing after it"
{ printf 'short\n'; head -c 5000 /dev/zero | tr '\0' 'x'; printf '\nafter\n'; } > "$T/in"
run "$DCHATCTL" -s "$S" post - < "$T/in"
is "$RC" 1 "a 5000-byte line: exit 1"
like "$ERR" "line 2 of stdin: not posted: the text is longer than 4096 bytes" "... naming line 2"

# --- lines that come slowly --------------------------------------------------------------------------------
mkfifo "$T/fifo"
"$DCHATCTL" -s "$S" post - < "$T/fifo" > "$T/slow.out" 2> "$T/slow.err" &
slow=$!
track_pid $slow
exec 7> "$T/fifo"
echo "slow one" >&7
ok "a line is posted as it comes, the pipe still open" wait_for -t 10 eval '[ "$(texts | tail -n 1)" = "slow one" ]'
echo "slow two" >&7
ok "... and the next" wait_for -t 10 eval '[ "$(texts | tail -n 1)" = "slow two" ]'
exec 7>&-
wait $slow
is "$?" 0 "at the end of the pipe: exit 0"

# --- only spaces -------------------------------------------------------------------------------------------
run "$DCHATCTL" -s "$S" post "   "
is "$RC" 1 "post of only spaces: exit 1"
like "$ERR" "^dchatctl: cannot post: the text is empty \\(only white space\\)" "... refused like an empty one"
run "$DCHATCTL" -s "$S" post ""
like "$ERR" "^dchatctl: cannot post: the text is empty" "post '': the text is empty"
run "$DCHATCTL" -s "$S" post $'\xc2\xa0\xe3\x80\x80'
like "$ERR" "the text is empty \\(only white space\\)" "no-break and ideographic spaces: refused too"

# --- the server stopped: the post says why it waits, then fails; post - names the line ---------------------
node_stop master
ok "node1 knows the server is gone" wait_for -t 10 eval 'ctl node1 status | grep -q "server:.*(not connected)"'
t0=$(date +%s%N)
run script -qec "'$DCHATCTL' -s '$S' post 'while the server is away'" /dev/null
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
is "$RC" 1 "post with the server gone, on a terminal: exit 1"
like "$OUT" "^dchatctl: waiting: the server master is unreachable \\([^)]*\\); for [0-9]+ s at most" \
    "... it says at once that it waits, and why"
like "$OUT" "post failed: the server master has been unreachable for [0-9]+ ms" "... then why it failed"
note "failed after $ms ms (dead_after_ms 3000, post_timeout_ms 10000)"
run "$DCHATCTL" -s "$S" post "while the server is away, from a script"
is "$RC" 1 "the same from a script (stderr not a terminal): exit 1"
like "$ERR" "^dchatctl: post failed: the server master has been unreachable for [0-9]+ ms" \
    "... with its one line of error, which says what it waited for"
is "$(printf '%s\n' "$ERR" | wc -l)" 1 "... one line on stderr"
printf 'one\ntwo\n' > "$T/in"
run "$DCHATCTL" -s "$S" post - < "$T/in"
is "$RC" 1 "post - with the server gone: exit 1"
like "$ERR" "line 1 of stdin \\(one\\): post failed: the server master has been unreachable" "... naming the line"
node_start master
wait_connected 15
run "$DCHATCTL" -s "$S" post - < "$T/in"
is "$RC" 0 "the server back: post - goes through"
done_testing
