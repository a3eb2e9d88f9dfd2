#!/usr/bin/env bash
# 77-disk-full — the server's state directory on a small tmpfs (256 KiB) in a private
# mount namespace of this test.  Both peers post large posts until the disk is full:
# each acknowledged post is stored, each refused one ends with one clear line naming
# the disk (no space left on device), exit 1, and is not in the log; no corrupt record
# is left (a restart of the server on the full disk recovers nothing and shows the same
# log); views work all along; once there is room again, posting works again.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd unshare mount perl

# a private mount namespace: the tmpfs goes away with the test, whatever happens
if [ -z "${DCHAT_PRIVATE_MOUNTS:-}" ]; then
    _cleanup_tmp
    _watchdog_stop
    trap - EXIT
    DCHAT_PRIVATE_MOUNTS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi

SIZE_K=256
mkdir -p "$T/master"
mount -t tmpfs -o "size=${SIZE_K}k,mode=0755" dchat-test-full "$T/master" || bail_out "cannot mount a tmpfs"
# lib.sh's EXIT trap removes $T: the tmpfs must be gone first (lazily: dchatd may still run)
_disk_full_exit() { local rc=$?; umount -l "$T/master" 2>/dev/null; (exit $rc); _cleanup; }
trap _disk_full_exit EXIT
cluster_start 2 'post_timeout_ms = 3000;'
STATE=$(node_state master)
like "$(df -k --output=size,target "$STATE" | tail -n 1)" "^ *${SIZE_K} .*/master\$" "the server's state directory is on a ${SIZE_K} KiB tmpfs"

texts() { sed -E 's/^[0-9]{2} [A-Z][a-z]{2} [0-9]{2}:[0-9]{2}(AM|PM) root: //'; }
big() { printf "%s %0$(( 3000 + RANDOM % 1000 ))d" "$1" 0; }      # 3 to 4 KB of text

for i in 1 2 3; do ctl node$(( i % 2 + 1 )) post "small $i" || fail "post small $i"; done
# another file on the same disk takes 64 KiB: removing it later makes room again
dd if=/dev/zero of="$STATE/other-file" bs=1k count=64 2>/dev/null || bail_out "cannot write $STATE/other-file"

# --- fill the disk: both peers post big posts until refused (bounded) --------------------------
for n in node1 node2; do
    (
        for ((i = 1; i <= 100; i++)); do
            ctl "$n" post "$(big "$n big $i")" 2>"$T/err.$n.$i"
            rc=$?
            echo "$n big $i|$rc" >> "$T/rc"
            [ $rc = 0 ] || break
        done
    ) &
    track_pid $!; fillers+=($!)
done
for p in "${fillers[@]}"; do wait "$p"; done
acked=$(awk -F'|' '$2 == 0 { print $1 }' "$T/rc" | sort)
refused=$(awk -F'|' '$2 != 0 { print $1 }' "$T/rc" | sort)
n_acked=$(printf '%s\n' "$acked" | grep -c .)
note "$n_acked big posts stored before the disk was full; $(df -k --output=avail "$STATE" | tail -n 1 | tr -d ' ') KiB left"
is "$(awk -F'|' '$2 != 0 { print $2 }' "$T/rc" | sort -u)" 1 "both peers' posts are refused once the disk is full, with exit 1"
errs=$(cat "$T"/err.node* | sort -u)
like "$errs" '^dchatctl: post failed: the server could not store the post: No space left on device; it was not stored$' \
    "... and one line: 'dchatctl: post failed: the server could not store the post: No space left on device; it was not stored'"

# whatever room is left (the free blocks, the slack in the log's last page), small posts
# take, until one is refused: now no post of that size goes in
dd if=/dev/zero of="$STATE/filler" bs=1k count=$SIZE_K 2>/dev/null
for ((i = 1; i <= 200; i++)); do
    ctl node2 post "fill $i" 2>"$T/err.fill" || break
    acked=$(printf '%s\n' "$acked" "fill $i" | sort)
done
refused=$(printf '%s\n' "$refused" "fill $i" | sort)
like "$(cat "$T/err.fill")" 'No space left on device' "small posts fill the last bytes ($((i - 1)) of them), then are refused too"
n_acked=$(printf '%s\n' "$acked" | grep -c .)
run_timed ctl node1 post "fill 1000"
is "$RC" 1 "a small post on the full disk: exit 1"
like "$ERR" 'No space left on device' "... naming the disk: $ERR"
cmp_ok "$MS" -lt 2000 "... at once ($MS ms), not at post_timeout_ms"
ok "the server logged post-failed with the storage error" test -n "$(events master post-failed | grep 'No space left')"

# --- views keep working, the log is intact ------------------------------------------------------
run ctl node1 view
is "$RC" 0 "view on node1 while the disk is full" || diag "$ERR"
view_full=$OUT
run ctl node2 view
is "$OUT" "$view_full" "view on node2: the same"
run ctl master view
is "$OUT" "$view_full" "view on the server: the same"
printf '%s\n' "$view_full" | texts | sed -E 's/^(node[12] big [0-9]+) 0+$/\1/' | sort > "$T/got"
is "$(uniq -d "$T/got")" "" "no post is stored twice"
is "$(comm -23 <(printf '%s\n' "$acked" "small 1" "small 2" "small 3" | sort) "$T/got")" "" "every acknowledged post is in the log"
is "$(comm -12 <(printf '%s\n' "$refused" "fill 1000" | sort) "$T/got")" "" "no refused post is in the log"
is "$(wc -l < "$T/got")" $(( n_acked + 3 )) "the log holds exactly the acknowledged posts ($(( n_acked + 3 )))"
run ctl node1 status --json
like "$OUT" '"dme_state":"released","request_ts":0,"queued":0' "node1 left the critical section and holds nothing queued"

# --- no corrupt record: a restart on the full disk recovers nothing ----------------------------------
node_kill master
node_start master
ok "the server restarts on the full disk and the peers relink" wait_connected 15
is "$(count_events master log-recovered)" 0 "no log-recovered: no torn or corrupt record was left"
is "$(find "$STATE" -name 'chat.log.corrupt-*' | wc -l)" 0 "no chat.log.corrupt-* file"
is "$(ctl node2 view)" "$view_full" "the view after the restart is the same"
run ctl node2 post "fill 1001"
is "$RC" 1 "still full after the restart: a post fails" || diag "$ERR"

# --- room again --------------------------------------------------------------------------------------
rm -f "$STATE/filler" "$STATE/other-file"
run ctl node2 post "there is room again"
is "$RC" 0 "with room again, node2 posts" || diag "$ERR"
run ctl node1 post "$(big "node1 big again")"
is "$RC" 0 "... and node1 posts a big one" || diag "$ERR"
run ctl node1 view -n 3
is "$(printf '%s\n' "$OUT" | texts | sed -E 's/ 0+$//' | tr '\n' '|')" \
   "$(printf '%s\n' "$view_full" | tail -n 1 | texts | sed -E 's/ 0+$//')|there is room again|node1 big again|" \
   "they follow the last post stored before the disk filled"
node_stop master
node_start master
ok "a clean restart" wait_connected 15
is "$(count_events master log-recovered)" 0 "... recovers nothing"
is "$(ctl node2 view | wc -l)" $(( n_acked + 5 )) "the log holds every acknowledged post"

for n in master node1 node2; do
    is "$(count_events $n 'protocol-error|append-refused')" 0 "$n logged no protocol-error or append-refused"
done

done_testing
