#!/usr/bin/env bash
# 93-sync-order — the server's write ordering, from a recorded syscall trace: what a power
# loss could break.  (A real power-loss test would drop writes under the server with
# dm-flakey; the test kernel has no device-mapper, so the order of its syscalls is checked
# instead: it is what the durability rests on.)  The server runs under strace while 4
# posters post 200 lines through 2 peers and a follower is fed; the links run in the clear
# so the frames can be read from the trace.  Checked:
#   - every APPENDED (the acknowledgement of a post) and every ENTRY (an entry shown to a
#     view or follower) is sent only after an fdatasync of chat.log that returned 0 and
#     came after the pwrite of its record;
#   - a torn tail is cut (ftruncate) only after its copy and the directory are synced, and
#     the cut is synced;
#   - the checkpoint chat.log.idx.tmp is synced before its rename over chat.log.idx, and
#     the directory is synced right after the rename;
#   - `dchatd --archive`: the new log is synced before the link and the rename, the link
#     is synced (directory) before the rename, and the directory is synced after it.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd strace perl

cluster_start 2 'insecure_plaintext = true;' 'reconnect_max_ms = 300;'
STATE=$(node_state master)
LOG=$STATE/chat.log
for i in 1 2 3; do ctl node1 post "before $i" >/dev/null || fail "post before $i"; done
BEFORE=$(ctl node1 view --json -n 1 | perl -MJSON::PP -ne 'print decode_json($_)->{seq}')
is "$BEFORE" 3 "3 posts stored before the traced run (synced by the server before it)"
node_stop master
printf 'DCL1torn' >> "$LOG"           # a torn tail for the start to cut

# LeakSanitizer cannot run under ptrace (strace): an ASan build would exit 1 at the end
NO_LSAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
SYSCALLS=pwrite64,write,fdatasync,fsync,rename,renameat,renameat2,openat,ftruncate,sendto,sendmsg,accept4,close,linkat,unlinkat
DCHAT_DAEMON_WRAPPER="env ASAN_OPTIONS=$NO_LSAN strace -f -y -yy -xx -s 4194304 -o $T/trace -e trace=$SYSCALLS" node_start master
STRACE_PID=$(node_pid master)
DPID=$(ps -o pid= --ppid "$STRACE_PID" | tr -d ' ')
track_pid $DPID
cmp_ok "${DPID:-0}" -gt 0 "dchatd runs under strace (pid ${DPID:-?})"
ok "peers reconnect" wait_connected 20

"$DCHATCTL" -s "$(node_sock node2)" view -f >"$T/follow.out" 2>"$T/follow.err" &
FOLLOW=$!
track_pid $FOLLOW
for n in node1 node2; do
    for w in 1 2; do
        ( for ((i = 1; i <= 50; i++)); do ctl "$n" post "$n-$w-$i" >/dev/null 2>>"$T/post.err" || echo x; done > "$T/fails.$n.$w" ) &
        track_pid $!
        eval "pp_$n$w=$!"
    done
done
wait "$pp_node11" "$pp_node12" "$pp_node21" "$pp_node22"
is "$(cat "$T"/fails.* | wc -l)" 0 "200 posts acknowledged" || diag "$(head -3 "$T/post.err")"
ok "the follower got them" wait_for -t 20 eval '[ "$(wc -l < "$T/follow.out")" -ge 203 ]'
kill -TERM "$DPID"
ok "dchatd stops" wait_pid_exit "$DPID" 20
ok "strace ends" wait_pid_exit "$STRACE_PID" 20
node_stop master

# --- the server's trace ---------------------------------------------------------------------------
run perl -e '
    my $state = $ARGV[0];
    sub dec { my $s = shift; $s =~ s/\\x([0-9a-f]{2})/chr(hex $1)/ge; $s }
    my (%stream, @written, @err);
    my ($synced, $acks, $entries, $syncs, $batches_multi) = ($ARGV[2], 0, 0, 0, 0);
    my ($tail_copy_synced, $dir_synced_after_copy, $cut, $cut_synced) = (0, 0, 0, 0);
    my ($tmp_synced, $renamed, $ckpts, $pending_dirsync) = (0, 0, 0, 0);
    open my $f, "<", $ARGV[1] or die;
    while (my $l = <$f>) {
        my $n = $.;
        if ($pending_dirsync && $l =~ /^\d+\s+(fsync|fdatasync)\(\d+<([^>]*)>/) {
            if ($1 eq "fsync" && dec($2) eq $state) { $pending_dirsync = 0; $ckpts++ }
            else { push @err, "line $n: the first sync after the checkpoint rename is not of the directory" }
        }
        if ($l =~ /^\d+\s+pwrite64\(\d+<([^>]*)>, "([^"]*)"(\.\.\.)?, \d+, \d+\) = (\d+)/ && dec($1) eq "$state/chat.log") {
            push @err, "line $n: pwrite truncated in the trace" if $3;
            my $d = dec($2);
            my ($pos, $k) = (0, 0);
            while ($pos + 24 <= length $d) {
                my $blen = unpack "N", substr($d, $pos + 4, 4);
                my ($hi, $lo) = unpack "NN", substr($d, $pos + 16, 8);
                push @written, $hi * 4294967296 + $lo;
                $pos += 16 + $blen; $k++;
            }
            $batches_multi++ if $k > 1;
        } elsif ($l =~ /^\d+\s+fdatasync\(\d+<([^>]*)>\) = (-?\d+)/) {
            my $p = dec($1);
            if ($p eq "$state/chat.log" && $2 == 0) {
                $cut_synced = 1 if $cut;
                for (@written) { $synced = $_ if $_ > $synced }
                @written = (); $syncs++;
            }
            $tmp_synced = 1 if $p eq "$state/chat.log.idx.tmp" && $2 == 0;
        } elsif ($l =~ /^\d+\s+fsync\(\d+<([^>]*)>\) = 0/) {
            my $p = dec($1);
            $tail_copy_synced = 1 if $p =~ m{/chat\.log\.corrupt-\d+-\d+$};
            $dir_synced_after_copy = 1 if $p eq $state && $tail_copy_synced;
        } elsif ($l =~ /^\d+\s+ftruncate\(\d+<([^>]*)>, \d+\) = 0/ && dec($1) eq "$state/chat.log") {
            push @err, "line $n: ftruncate of chat.log before its tail was saved and synced (file and directory)"
                unless $tail_copy_synced && $dir_synced_after_copy;
            $cut = 1;
        } elsif ($l =~ /^\d+\s+openat\(.*"([^"]*)".*\) = \d+/ && dec($1) eq "chat.log.idx.tmp") {
            $tmp_synced = 0;
        } elsif ($l =~ /^\d+\s+renameat2?\(\d+<[^>]*>, "([^"]*)", \d+<[^>]*>, "([^"]*)".*\) = 0/) {
            my ($from, $to) = (dec($1), dec($2));
            if ($from eq "chat.log.idx.tmp" && $to eq "chat.log.idx") {
                push @err, "line $n: chat.log.idx.tmp renamed before it was synced" unless $tmp_synced;
                $pending_dirsync = 1; $renamed++;
            }
        } elsif ($l =~ /^\d+\s+accept4\(.*\) = (\d+)/) {
            $stream{$1} = "";
        } elsif ($l =~ /^\d+\s+close\((\d+)/) {
            delete $stream{$1};
        } elsif ($l =~ /^\d+\s+sendto\((\d+)<[^\[]*\[[^\]]*\]>, "([^"]*)"(\.\.\.)?, \d+, .*\) = (\d+)/) {
            my ($fd, $sent) = ($1, $4);
            push @err, "line $n: send truncated in the trace" if $3;
            $stream{$fd} .= substr(dec($2), 0, $sent);
            while (length $stream{$fd} >= 8) {
                my $plen = unpack "N", substr($stream{$fd}, 0, 4);
                last if length $stream{$fd} < 8 + $plen;
                my $type = ord substr($stream{$fd}, 5, 1);
                if ($type == 6 || $type == 8) {         # APPENDED, ENTRY: tag, then seq
                    my ($hi, $lo) = unpack "NN", substr($stream{$fd}, 12, 8);
                    my $seq = $hi * 4294967296 + $lo;
                    $type == 6 ? $acks++ : $entries++;
                    push @err, sprintf("line %d: %s of seq %d sent before its fdatasync (synced up to %d)",
                                       $n, $type == 6 ? "APPENDED" : "ENTRY", $seq, $synced) if $seq > $synced;
                }
                substr($stream{$fd}, 0, 8 + $plen) = "";
            }
        }
    }
    push @err, "the torn tail was not cut" unless $cut;
    push @err, "the cut was not synced" unless $cut_synced;
    push @err, "a checkpoint rename without a directory sync after it" if $pending_dirsync;
    print "acks=$acks entries=$entries syncs=$syncs multi=$batches_multi checkpoints=$ckpts renames=$renamed\n";
    print "$_\n" for @err[0 .. ($#err < 9 ? $#err : 9)];
    exit(@err ? 1 : 0);
' "$STATE" "$T/trace" "$BEFORE"
is "$RC" 0 "the server's trace: acknowledgements after the sync, cut after the copy, checkpoint synced, renamed, directory synced" ||
    diag "$OUT" "$ERR"
like "$OUT" "^acks=(20[0-9]|2[1-9][0-9]) " "... all 200 acknowledgements were checked ($(printf '%s' "$OUT" | head -n 1))"
like "$OUT" "entries=[1-9][0-9]{2,} " "... and the entries sent to the follower"
like "$OUT" "multi=[1-9]" "... batches of several records among them (group commit)"
like "$OUT" "checkpoints=([1-9][0-9]*) renames=\\1\$" "... every checkpoint rename followed by a directory sync"

# --- the archive's trace --------------------------------------------------------------------------
run env STATE_DIRECTORY="$STATE" ASAN_OPTIONS="$NO_LSAN" strace -f -y -xx -o "$T/trace.archive" -e trace=fsync,fdatasync,linkat,renameat,renameat2,unlinkat \
    "$DCHATD" -c "$CONF" -n master --archive
is "$RC" 0 "dchatd --archive under strace" || diag "$ERR"
run perl -e '
    my $state = $ARGV[0];
    sub dec { my $s = shift; $s =~ s/\\x([0-9a-f]{2})/chr(hex $1)/ge; $s }
    my @steps;
    open my $f, "<", $ARGV[1] or die;
    while (my $l = <$f>) {
        if ($l =~ /^\d+\s+(fsync|fdatasync)\(\d+<([^>]*)>\) = 0/) {
            my $p = dec($2);
            push @steps, $p eq $state ? "sync-dir" : $p eq "$state/chat.log.new" ? "sync-new" : "sync-other";
        } elsif ($l =~ /^\d+\s+linkat\(\d+<[^>]*>, "([^"]*)", \d+<[^>]*>, "([^"]*)".*\) = 0/) {
            push @steps, "link " . dec($1) . ">" . dec($2);
        } elsif ($l =~ /^\d+\s+renameat2?\(\d+<[^>]*>, "([^"]*)", \d+<[^>]*>, "([^"]*)".*\) = 0/) {
            push @steps, "rename " . dec($1) . ">" . dec($2);
        }
    }
    print join(", ", @steps), "\n";
' "$STATE" "$T/trace.archive"
like "$OUT" "^sync-new, link chat.log>chat.log.1-[0-9]+, sync-dir, rename chat.log.new>chat.log, sync-dir\$" \
    "archive: new log synced, linked, directory synced, renamed, directory synced ($OUT)"

done_testing
