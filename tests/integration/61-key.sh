#!/usr/bin/env bash
# 61-key — the cluster key: `dchatctl keygen` (mode 0600, never half-written, never
# replaced without --force), the checks dchatd makes before it starts (a missing key,
# one others may read, one owned by another user, one that is not 64 hex digits: each a
# clear error naming the file, and no start), $CREDENTIALS_DIRECTORY first, the explicit
# insecure_plaintext opt-in with its warning, and a reload that would change either;
# link-plaintext and link-auth-failed in a private journal with their catalog text.
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd stat journalctl
need_journal --catalog "$TOP/systemd/dchatd.catalog"
export DCHAT_LOG=both

# --- keygen ----------------------------------------------------------------------------------------
run "$DCHATCTL" keygen "$T/k1"
is "$RC" 0 "keygen FILE: exit 0" || diag "$ERR"
like "$OUT" "wrote a new cluster key to $T/k1" "... says where"
is "$(stat -c '%a %U' "$T/k1")" "600 root" "... mode 0600, owned by the caller"
like "$(cat "$T/k1")" '^[0-9a-f]{64}$' "... 64 hex digits"
k1=$(cat "$T/k1")
run "$DCHATCTL" keygen "$T/k1"
is "$RC" 1 "keygen on an existing file: exit 1"
like "$ERR" "^dchatctl: keygen: $T/k1 exists; not replacing it" "... says why, in one line"
is "$(cat "$T/k1")" "$k1" "... and the key is unchanged"
run "$DCHATCTL" keygen --force "$T/k1"
is "$RC" 0 "keygen --force replaces it"
isnt "$(cat "$T/k1")" "$k1" "... with a new key"
is "$(ls -A "$T" | grep -c '^k1\.')" 0 "no temporary file left behind"
run "$DCHATCTL" keygen "$T/no/such/dir/k"
is "$RC" 1 "keygen into a missing directory: exit 1"
like "$ERR" "cannot create a file next to $T/no/such/dir/k" "... says so"
run "$DCHATCTL" keygen a b
is "$RC" 2 "keygen with two files: usage error (exit 2)"

# --- dchatd refuses a bad key ------------------------------------------------------------------------
cluster_config 1
start_fails() {   # start_fails NAME REGEX: node1 exits 1 at once, with REGEX on stderr
    run env DCHAT_LOG=stderr RUNTIME_DIRECTORY="$T/node1/run" STATE_DIRECTORY="$T/node1/state" \
        "$DCHATD" -c "$CONF" -n node1
    is "$RC" 1 "$1: dchatd exits 1"
    like "$ERR" "$2" "$1: the error names the file and says why"
    is "$(ls -A "$T/node1/run")" "" "$1: no control socket left behind"
}
rm -f "$KEY"
start_fails "no key file" "cannot open the cluster key $KEY: No such file or directory \\(make one with .dchatctl keygen."
"$DCHATCTL" keygen "$KEY" >/dev/null
chmod 0640 "$KEY"
start_fails "a key readable by the group" "the cluster key $KEY is accessible to group or others \\(mode 0640\\); make it 0600"
chmod 0604 "$KEY"
start_fails "a key readable by others" "the cluster key $KEY is accessible to group or others \\(mode 0604\\)"
chmod 0600 "$KEY"
chown nobody "$KEY"
start_fails "a key owned by another user" "the cluster key $KEY belongs to uid $(id -u nobody); it must belong to root or to the user dchatd runs as"
chown root "$KEY"
cp -p "$KEY" "$T/good.key"
printf 'not a key\n' > "$KEY"
start_fails "a key that is not hex" "the cluster key $KEY is not 64 hex digits"
head -c 31 /dev/zero | od -An -tx1 | tr -d ' \n' > "$KEY"
start_fails "a key one byte short" "the cluster key $KEY is not 64 hex digits"
rm -f "$KEY"; mkdir "$KEY"
start_fails "a directory" "the cluster key $KEY is not a regular file"
rmdir "$KEY"
cp -p "$T/good.key" "$KEY"

# dchatd -t says whether the links could start, and fails when dchatd would not start
run "$DCHATD" -t -c "$CONF" -n node1
is "$RC" 0 "dchatd -t: the config is valid (exit 0)"
like "$OUT" $'\nlinks: encrypted, cluster key '"$KEY"': OK$' "dchatd -t: the key is readable"
chmod 0644 "$KEY"
run "$DCHATD" -t -c "$CONF" -n node1
like "$RC|$OUT|$ERR" "^1\\|$CONF: OK: node node1, role peer[^|]*\\|dchatd will not start: the cluster key $KEY is accessible to group or others" \
    "dchatd -t: a key readable by all: exit 1, the file itself is OK, and why dchatd would not start"
chmod 0600 "$KEY"
mv "$KEY" "$T/moved.key"
run "$DCHATD" -t -c "$CONF" -n node1
like "$RC|$ERR" "^1\\|dchatd will not start: cannot open the cluster key $KEY: No such file or directory \\(make one with .dchatctl keygen." \
    "dchatd -t without the key file: exit 1, naming it (so 'dchatd -t && systemctl enable --now' starts nothing that stops)"
mv "$T/moved.key" "$KEY"

# $CREDENTIALS_DIRECTORY/cluster.key goes first (systemd's LoadCredential=)
mkdir -p "$T/creds"; cp -p "$KEY" "$T/creds/cluster.key"; chmod 0400 "$T/creds/cluster.key"
rm -f "$KEY"
run env DCHAT_LOG=stderr RUNTIME_DIRECTORY="$T/node1/run" STATE_DIRECTORY="$T/node1/state" \
    CREDENTIALS_DIRECTORY="$T/creds" timeout 2 "$DCHATD" -c "$CONF" -n node1
like "$ERR" "cluster links are encrypted and authenticated with the key in $T/creds/cluster.key" \
    "with \$CREDENTIALS_DIRECTORY/cluster.key (mode 0400) dchatd uses it, though key_file is missing"
# dchatd.service's fallback when LoadCredential= finds no file (SetCredential=cluster.key:absent):
# dchatd starts, and names the missing key_file instead of systemd's "status=243/CREDENTIALS"
printf 'absent' > "$T/creds/cluster.key"
start_fails_creds() {
    run env DCHAT_LOG=stderr RUNTIME_DIRECTORY="$T/node1/run" STATE_DIRECTORY="$T/node1/state" \
        CREDENTIALS_DIRECTORY="$T/creds" timeout 2 "$DCHATD" -c "$CONF" -n node1
}
start_fails_creds
is "$RC" 1 "the credential says 'absent' and key_file is missing: dchatd exits 1"
like "$ERR" "cannot open the cluster key $KEY: No such file or directory \\(make one with .dchatctl keygen." \
    "... naming key_file, the file to make"
run env CREDENTIALS_DIRECTORY="$T/creds" "$DCHATD" -t -c "$CONF" -n node1
like "$RC|$ERR" "^1\\|dchatd will not start: cannot open the cluster key $KEY" "... and so does dchatd -t"
cp -p "$T/good.key" "$KEY"
start_fails_creds
like "$ERR" "cluster links are encrypted and authenticated with the key in $KEY" \
    "the credential says 'absent', key_file is there: dchatd reads key_file"

# --- insecure_plaintext: only when asked, and loudly ---------------------------------------------------
cluster_start 2 'insecure_plaintext = true;'
for n in master node1 node2; do
    is "$(count_events "$n" link-plaintext)" 1 "$n: link-plaintext warning at start"
done
like "$(events node1 link-plaintext | ev_field msg)" "neither encrypted nor authenticated" "... saying what it means"
run ctl node1 post "in the clear"
is "$RC" 0 "a plaintext cluster posts" || diag "$ERR"
# a stranger's plaintext HELLO is a frame here, not a failed handshake
need_tool send-raw
{ be32 1; wstr node2; be8 $ROLE_PEER; be64 0; be64 0; } > "$T/p"; frame $MSG_HELLO "$T/p" > "$T/g"
is "$("$TESTLIB/send-raw" -t 300 "127.0.0.1:$(node_port master)" < "$T/g")" open \
   "plaintext: a HELLO without any key is taken (this is what insecure_plaintext gives away)"
: > "$T/g"
before=$(count_events master link-auth-failed)
is "$("$TESTLIB/send-raw" -t 8000 "127.0.0.1:$(node_port master)" < "$T/g")" closed \
   "plaintext: a connection that never sends a frame is still closed (first_message_timeout_ms)"
ok "... with link-auth-failed" wait_event master link-auth-failed $((before + 1)) 3
like "$(events master link-auth-failed | tail -n 1 | ev_field msg)" "no first frame within 1000 ms \\(first_message_timeout_ms\\)" \
    "... saying why"
# a reload may not switch encryption on or off
sed -i '/insecure_plaintext/d' "$CONF"
node_hup node1
ok "a reload dropping insecure_plaintext is refused" wait_for -t 5 grep -q "reload refused: insecure_plaintext changed, which needs a restart" "$(node_log node1)"
run ctl node1 post "still in the clear"
is "$RC" 0 "... and node1 goes on as it was" || diag "$ERR"

# --- the journal: MESSAGE_ID and the catalog's explanation ---------------------------------------------
journalctl --sync
run journalctl -q -x -t dchatd DCHAT_EVENT=link-plaintext DCHAT_NODE=node1
like "$OUT" "runs its cluster links without encryption" "journalctl -x explains link-plaintext (catalog)"
like "$OUT" "dchatctl keygen" "... and says how to get out of it"
run journalctl -q -x -t dchatd DCHAT_EVENT=link-auth-failed DCHAT_NODE=master
like "$OUT" "refused a cluster link" "journalctl -x explains link-auth-failed (catalog)"
like "$OUT" "no first frame within 1000 ms" "... with the message naming the reason"
id=$(awk '/^# link-auth-failed$/ { getline; print $2 }' "$TOP/systemd/dchatd.catalog")
run journalctl -q -t dchatd DCHAT_EVENT=link-auth-failed -o json
like "$OUT" "\"MESSAGE_ID\":\"$id\"" "link-auth-failed carries MESSAGE_ID $id"
like "$OUT" '"PRIORITY":"4"' "... at warning priority"

done_testing
