# bash completion for dchatctl(1)                                  -*- shell-script -*-
# SPDX-License-Identifier: MIT
#
# Installed as share/bash-completion/completions/dchatctl (make install), where
# bash-completion loads it on the first `dchatctl <Tab>`; or source it.  It needs
# nothing of bash-completion's own helpers.  Keep it in step with dchatctl's usage
# (tests/integration/84-bash-completion.sh checks it against `dchatctl help`).

# _dchatctl_socks: control sockets worth offering: $DCHAT_SOCKET, the system one, a local
# cluster's (make run) under ./run, then file names (a socket is a file)
_dchatctl_socks()
{
    local cur=$1 s
    local -a socks=()
    [[ -n ${DCHAT_SOCKET-} ]] && socks+=("$DCHAT_SOCKET")
    for s in /run/dchat/dchatd.sock run/*/dchatd.sock; do
        [[ -S $s ]] && socks+=("$s")
    done
    mapfile -t COMPREPLY < <(compgen -W "${socks[*]}" -- "$cur")
    mapfile -t -O "${#COMPREPLY[@]}" COMPREPLY < <(compgen -f -- "$cur")
}

# the keys of the shared notes, as `dchatctl note list` gives them (with the -s of the line, if
# any); bounded in time, so that a dchatd that does not answer holds up no <Tab>
_dchatctl_keys()
{
    local cur=$1 sock=$2 keys
    local -a cmd=("${COMP_WORDS[0]}")
    [[ -n $sock ]] && cmd+=(-s "$sock")
    keys=$(timeout 2 "${cmd[@]}" note list 2>/dev/null | sed -n -E 's/^([^ ]+) = .*/\1/p')
    mapfile -t COMPREPLY < <(compgen -W "$keys" -- "$cur")
}

# --since TIME: the forms dchatctl accepts (dchatctl(1), view --since); a date is typed
_dchatctl_times()
{
    mapfile -t COMPREPLY < <(compgen -W "now today yesterday 10m 30m 1h 2h 12h 1d 3d 7d @" -- "$1")
    [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == @ ]] && compopt -o nospace 2>/dev/null
}

_dchatctl()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local i cmd='' sub='' nargs=0 sock=''
    local commands="post view chat who status verify note server reload trace explain keygen pubkey help"

    COMPREPLY=()
    # the command: the first word that is neither an option nor an option's argument
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        -s | --socket)
            sock=${COMP_WORDS[i + 1]}
            ((i++))
            ;;
        -*) ;;
        *)
            if [[ -z $cmd ]]; then
                cmd=${COMP_WORDS[i]}
            elif [[ ($cmd == server || $cmd == note) && -z $sub ]]; then
                sub=${COMP_WORDS[i]}
            else
                ((nargs++))
            fi
            ;;
        esac
    done

    # an option's argument
    case $prev in
    -s | --socket)
        _dchatctl_socks "$cur"
        return 0
        ;;
    --since | --until)
        _dchatctl_times "$cur"
        return 0
        ;;
    -n | --since-seq | --post | --hold | --timeout)
        return 0        # a number: nothing to offer
        ;;
    --order)
        mapfile -t COMPREPLY < <(compgen -W "physical lamport vector" -- "$cur")
        return 0
        ;;
    --format)
        mapfile -t COMPREPLY < <(compgen -W "text json shiviz svg png pdf" -- "$cur")
        return 0
        ;;
    --algorithm)
        mapfile -t COMPREPLY < <(compgen -W "ricart-agrawala central token" -- "$cur")
        return 0
        ;;
    -o | --from)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return 0
        ;;
    esac

    local opts="-s --socket -h --help"
    case $cmd in
    "")
        if [[ $cur == -* ]]; then
            mapfile -t COMPREPLY < <(compgen -W "-s --socket -h --help --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        fi
        return 0
        ;;
    post) opts+=" --hold --" ;;
    view) opts+=" -n --since --since-seq -f --follow --json --local-time" ;;
    chat) opts+=" -n --local-time --seconds" ;;
    who | status | verify) opts+=" --json" ;;
    reload) ;;
    server)
        if [[ -z $sub ]]; then
            [[ $cur != -* ]] && mapfile -t COMPREPLY < <(compgen -W "add remove" -- "$cur")
            [[ $cur == -* ]] && mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
            return 0
        fi
        [[ $sub == add ]] && opts+=" --timeout"
        ;;
    note)
        if [[ -z $sub ]]; then
            [[ $cur != -* ]] && mapfile -t COMPREPLY < <(compgen -W "set get incr list del" -- "$cur")
            [[ $cur == -* ]] && mapfile -t COMPREPLY < <(compgen -W "-h --help" -- "$cur")
            return 0
        fi
        case $sub in
        get) opts+=" --json" ;;
        list) opts+=" --json" ;;
        incr) opts+=" --unlocked" ;;
        esac
        # KEY: the notes there are (set may name a new one; list takes none)
        if [[ $cur != -* && $nargs -eq 0 && $sub != list ]]; then
            _dchatctl_keys "$cur" "$sock"
            return 0
        fi
        ;;
    trace) opts+=" --since --until --post --order --check --algorithm --format -o --from" ;;
    explain)
        if [[ $cur != -* && $nargs -eq 0 ]]; then
            # the event names, as dchatctl lists them
            mapfile -t COMPREPLY < <(compgen -W "$("${COMP_WORDS[0]}" explain 2>/dev/null | awk 'NR > 1 { print $1 }')" -- "$cur")
            return 0
        fi
        opts="-h --help"
        ;;
    keygen | pubkey)
        [[ $cmd == keygen ]] && opts="--host --force -h --help" || opts="-h --help"
        if [[ $cur != -* ]]; then
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return 0
        fi
        ;;
    help)
        [[ $nargs -eq 0 ]] && mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
        return 0
        ;;
    *) return 0 ;;
    esac
    [[ $cur == -* ]] && mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
    return 0
}
complete -F _dchatctl dchatctl
