#!/usr/bin/env bash
# 84-bash-completion — cli/dchatctl.bash, driven as bash drives it (COMP_WORDS, COMP_CWORD,
# the function `complete -p dchatctl` names): the commands, each command's options, the
# --since forms, --order and --format values, explain's event names, server's and note's
# subcommands, note's options per subcommand and its keys (from `dchatctl note list`, with the
# line's -s),
# socket paths after -s (a running dchatd's socket among them); every command and long
# option that `dchatctl help` lists is offered; `make install` puts the file where
# bash-completion looks (share/bash-completion/completions/dchatctl).
. "$(dirname "$0")/../lib/lib.sh"
need_cmd make

COMPLETION=$TOP/cli/dchatctl.bash
[ -r "$COMPLETION" ] || bail_out "no $COMPLETION"
# dchatctl as the shell finds it (explain's event names come from it)
mkdir -p "$T/bin" && ln -s "$DCHATCTL" "$T/bin/dchatctl"
export PATH="$T/bin:$PATH"

# comp WORDS...: what completing the last word offers, sorted, one line
comp() {
    bash --norc --noprofile -c '
        . "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        f=$(complete -p dchatctl | sed -E "s/.* -F ([^ ]+) .*/\1/")
        "$f" dchatctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"' _ "$COMPLETION" "$@"
}

run bash --norc --noprofile -c ". '$COMPLETION' && complete -p dchatctl"
like "$OUT" '^complete -F _dchatctl dchatctl$' "sourcing it registers a completion for dchatctl"

is "$(comp dchatctl '')" "chat explain help keygen note post pubkey reload server status trace verify view who" "the commands"
is "$(comp dchatctl v)" "verify view" "commands by prefix"
is "$(comp dchatctl -)" "--help --socket --version -h -s" "options before the command"
is "$(comp dchatctl -s /tmp/x.sock st)" "status" "a command after -s SOCKET"
is "$(comp dchatctl view --)" "--follow --help --json --local-time --since --since-seq --socket" "view's long options"
is "$(comp dchatctl view --since '')" "10m 12h 1d 1h 2h 30m 3d 7d @ now today yesterday" "view --since: its forms"
is "$(comp dchatctl view --since y)" "yesterday" "... by prefix"
is "$(comp dchatctl trace --until t)" "today" "trace --until: the same forms"
is "$(comp dchatctl view -n '')" "" "-n N: a number, nothing offered"
is "$(comp dchatctl trace --order '')" "lamport physical vector" "trace --order"
is "$(comp dchatctl trace --format s)" "shiviz svg" "trace --format"
is "$(comp dchatctl trace --algorithm '')" "central ricart-agrawala token" "trace --algorithm"
is "$(comp dchatctl server '')" "add remove" "server's subcommands"
is "$(comp dchatctl server add --)" "--help --socket --timeout" "server add --timeout"
is "$(comp dchatctl post --)" "-- --help --hold --socket" "post's options"
is "$(comp dchatctl reload -)" "--help --socket -h -s" "reload takes -s only"
is "$(comp dchatctl help re)" "reload" "help COMMAND"
is "$(comp dchatctl explain peer-d)" "peer-dead peer-down" "explain: the event names, from dchatctl"
is "$(comp dchatctl keygen --)" "--force --help --host" "keygen --force, --host"
is "$(comp dchatctl note '')" "del get incr list set" "note's subcommands"
is "$(comp dchatctl note i)" "incr" "... by prefix"
is "$(comp dchatctl note -)" "--help -h" "note before its subcommand: --help"
is "$(comp dchatctl note get --)" "--help --json --socket" "note get --json"
is "$(comp dchatctl note list --)" "--help --json --socket" "note list --json"
is "$(comp dchatctl note incr --)" "--help --socket --unlocked" "note incr --unlocked"
is "$(comp dchatctl note set --)" "--help --socket" "note set: -s only"
is "$(comp dchatctl note del -)" "--help --socket -h -s" "note del: -s only"

# note's keys come from `dchatctl note list` (here a stand-in that says what it was asked)
mkdir -p "$T/stub"
cat > "$T/stub/dchatctl" <<EOF
#!/bin/sh
echo "\$*" >> "$T/stub/args"
[ "\$*" = "-s /tmp/n.sock note list" ] || [ "\$*" = "note list" ] || exit 2
printf '%s\n' 'hits = 3' 'hello = hi there = you' 'motd = Welcome to the room'
EOF
chmod +x "$T/stub/dchatctl"
is "$(PATH="$T/stub:$PATH" comp dchatctl note get h)" "hello hits" "note get KEY: the keys there are, by prefix"
is "$(PATH="$T/stub:$PATH" comp dchatctl -s /tmp/n.sock note incr '')" "hello hits motd" "note incr KEY: all of them"
is "$(tail -n 1 "$T/stub/args")" "-s /tmp/n.sock note list" "... asked of the socket the line names"
is "$(PATH="$T/stub:$PATH" comp dchatctl note del --socket /tmp/n.sock m)" "motd" "note del --socket S KEY: the same"
is "$(PATH="$T/stub:$PATH" comp dchatctl note incr hits '')" "" "note incr KEY N: no key offered for N"
is "$(PATH="$T/stub:$PATH" comp dchatctl note list '')" "" "note list takes no key"
printf '#!/bin/sh\nexit 1\n' > "$T/stub/dchatctl"
is "$(PATH="$T/stub:$PATH" comp dchatctl note get '')" "" "no dchatd to ask: no keys, no error"

# socket paths: $DCHAT_SOCKET, a running dchatd's socket, files
cluster_start 1
S=$(node_sock node1)
got=$(DCHAT_SOCKET=$S comp dchatctl -s '')
like " $got " " $S " "-s: \$DCHAT_SOCKET is offered"
got=$(cd "$T" && comp dchatctl --socket "$T/node1/run/dchatd")
like "$got" "^$S\$" "--socket: a path completes to the socket file"

# every command and long option dchatctl's help lists is offered
missing=
cmds=$("$DCHATCTL" help | sed -n -E 's/^  ([a-z]+) .*/\1/p' | sort -u)
for c in $cmds; do
    [[ " $(comp dchatctl '') " == *" $c "* ]] || missing+=" command:$c"
    words=(dchatctl "$c")
    [ "$c" = server ] && words+=(add)
    have=" $(comp "${words[@]}" --) "
    # note's options: each subcommand's own
    [ "$c" = note ] && have=" $(for s in set get incr list del; do comp dchatctl note "$s" --; echo; done | tr '\n' ' ') "
    for o in $("$DCHATCTL" help "$c" | grep -o -E -- '--[a-z][a-z-]*' | sort -u); do
        [ "$c" = server ] && [ "$o" != --timeout ] && [ "$o" != --socket ] && continue
        [[ $have == *" $o "* ]] || missing+=" $c:$o"
    done
done
is "${missing:-none}" none "every command and long option of dchatctl help is offered ($(wc -w <<< "$cmds") commands)"

# make install puts it where bash-completion looks
run make -s -C "$TOP" install DESTDIR="$T/stage" PREFIX=/usr
is "$RC" 0 "make install DESTDIR=... PREFIX=/usr" || diag "$ERR"
ok "... installs /usr/share/bash-completion/completions/dchatctl" \
    cmp -s "$COMPLETION" "$T/stage/usr/share/bash-completion/completions/dchatctl"
if command -v pkg-config >/dev/null && pkg-config --exists bash-completion 2>/dev/null; then
    is "$(pkg-config --variable=completionsdir bash-completion)" /usr/share/bash-completion/completions \
        "... which is bash-completion's completionsdir"
fi

done_testing
