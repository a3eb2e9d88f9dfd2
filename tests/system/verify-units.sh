#!/usr/bin/env bash
# verify-units.sh — static checks of the files in systemd/ (TAP).
#
#   systemd-analyze verify      on the four units, @SBINDIR@ pointing at ./dchatd
#   systemd-analyze security    overall exposure of dchatd.service <= 2.0
#   the journald catalog        parses, and has every MESSAGE_ID of the contract
#   sysusers.d / tmpfiles.d     create user dchat and its directories in a scratch root
#
# Run from the top of the source tree, as root, after `make` (needs ./dchatd).
# Touches nothing outside its temporary directory, except that systemd-analyze creates
# /run/systemd/systemd-units-load; the script removes it again if it was not there.
set -u

TOP=$(pwd)
SRC=$TOP/systemd
UNITS="dchatd.service dchatd.socket dchatd-peer.socket dchatd-server.socket"
MAX_EXPOSURE=2.0
# The MESSAGE_IDs as the daemon sends them (daemon/log.c's table): event name and id,
# so the catalog is checked against the code, not against a copy.
IDS=$(sed -n 's/^ *\[EV_[A-Z_]*\] *= { "\([a-z-]*\)", *"\([0-9a-f]\{32\}\)".*/\1 \2/p' "$TOP/daemon/log.c")
NIDS=$(printf '%s\n' "$IDS" | grep -c .)

N=0
ok()   { N=$((N + 1)); echo "ok $N - $*"; }
notok() { N=$((N + 1)); echo "not ok $N - $*"; FAILED=1; }
skip() { N=$((N + 1)); echo "ok $N # skip $*"; }
diag() { sed 's/^/# /'; }
FAILED=0

echo "1..7"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dchat-verify-units.XXXXXX") || { echo "Bail out! mktemp"; exit 1; }
UNITS_LOAD=/run/systemd/systemd-units-load
had_units_load=0; [ -e "$UNITS_LOAD" ] && had_units_load=1
cleanup() {
    rm -rf "$TMP"
    # systemd-analyze marks unit loading there; drop it on a host not booted with systemd.
    if [ $had_units_load = 0 ] && [ ! -d /run/systemd/system ]; then rm -f "$UNITS_LOAD"; fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

# --- the units, with @SBINDIR@ as `make install` would substitute it ---------------------
mkdir -p "$TMP/units"
for u in $UNITS; do
    sed -e "s|@SBINDIR@|$TOP|g" -e "s|@BINDIR@|$TOP|g" "$SRC/$u" > "$TMP/units/$u"
done

if ! command -v systemd-analyze >/dev/null; then
    for u in $UNITS; do skip "systemd-analyze verify $u: systemd-analyze not installed"; done
    skip "systemd-analyze security: systemd-analyze not installed"
else
    for u in $UNITS; do
        out=$TMP/verify-$u.out
        # verify exits 0 on mere warnings (an unknown key, say): any output is a failure.
        # --man=no: the man pages are not installed while testing.
        if [ ! -x "$TOP/dchatd" ]; then
            notok "systemd-analyze verify $u"; echo "$TOP/dchatd is missing: run make first" | diag
        elif (cd "$TMP/units" && systemd-analyze verify --man=no "./$u") > "$out" 2>&1 \
             && [ ! -s "$out" ] && ! grep -q '@[A-Z_]*@' "$TMP/units/$u"; then
            ok "systemd-analyze verify $u"
        else
            notok "systemd-analyze verify $u"; diag < "$out"
            grep '@[A-Z_]*@' "$TMP/units/$u" | sed 's/^/unsubstituted: /' | diag
        fi
    done

    # --offline=yes (systemd >= 250) needs no running systemd; else ask the running one.
    out=$TMP/security.out
    if systemd-analyze --help 2>/dev/null | grep -q -- '--offline'; then
        (cd "$TMP/units" && systemd-analyze security --no-pager --offline=yes ./dchatd.service) > "$out" 2>&1
    else
        (cd "$TMP/units" && systemd-analyze security --no-pager ./dchatd.service) > "$out" 2>&1
    fi
    exposure=$(sed -n 's/.*Overall exposure level for dchatd\.service: *\([0-9.]*\).*/\1/p' "$out")
    if [ -n "$exposure" ] && awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
        ok "systemd-analyze security dchatd.service: exposure $exposure <= $MAX_EXPOSURE"
        echo "exposure $exposure" | diag
        grep '✗' "$out" | sed 's/  */ /g' | diag
    else
        notok "systemd-analyze security dchatd.service: exposure '${exposure:-?}' <= $MAX_EXPOSURE"
        diag < "$out"
    fi
fi

# --- the journald message catalog ------------------------------------------------------
if ! command -v journalctl >/dev/null; then
    skip "catalog: journalctl not installed"
else
    root=$TMP/catroot
    mkdir -p "$root/usr/lib/systemd/catalog"
    cp "$SRC/dchatd.catalog" "$root/usr/lib/systemd/catalog/dchatd.catalog"
    errs=$TMP/catalog.err
    : > "$errs"
    # --root: reads $root/usr/lib/systemd/catalog, writes $root/var/lib/systemd/catalog.
    if ! journalctl --root="$root" --update-catalog > "$TMP/update.out" 2>&1 || [ -s "$TMP/update.out" ]; then
        { echo "journalctl --update-catalog:"; cat "$TMP/update.out"; } >> "$errs"
    fi
    journalctl --root="$root" --dump-catalog > "$TMP/dump" 2>> "$errs" || echo "dump-catalog failed" >> "$errs"
    # Every entry: known id, Subject:, Defined-By: dchat, Support:, and a body.
    awk -v ids="$IDS" '
        BEGIN { n = split(ids, a, /[ \n]+/); for (i = 1; i <= n; i++) if (length(a[i]) == 32 && a[i] ~ /^[0-9a-f]+$/) want[a[i]] = a[i-1] }
        function check() {
            if (id == "") return
            if (!(id in want)) print "unexpected MESSAGE_ID " id
            if (!subj) print id ": no Subject:"
            if (!defby) print id ": no Defined-By: dchat"
            if (!supp) print id ": no Support:"
            if (body < 2) print id ": no explanation text"
            seen[id]++
        }
        /^-- / { check(); id = $2; subj = defby = supp = body = 0; inhdr = 1; next }
        inhdr && /^$/ { inhdr = 0; next }
        inhdr && /^Subject: ./ { subj = 1 }
        inhdr && /^Defined-By: dchat$/ { defby = 1 }
        inhdr && /^Support: ./ { supp = 1 }
        !inhdr && /./ { body++ }
        END { check(); for (i in want) if (!(i in seen)) print "missing " want[i] " " i }
    ' "$TMP/dump" >> "$errs"
    # Duplicates would silently override each other.
    grep -o '^-- [0-9a-f]*' "$SRC/dchatd.catalog" | sort | uniq -d | sed 's/^/duplicate /' >> "$errs"
    count=$(grep -c '^-- ' "$TMP/dump")
    if [ ! -s "$errs" ] && [ "$count" = "$NIDS" ] && [ "$NIDS" -ge 19 ]; then
        ok "catalog parses: $count entries, each with Subject, Defined-By, Support and text"
    else
        notok "catalog parses: $count entries (want $NIDS, one per event in daemon/log.c)"; diag < "$errs"
    fi
fi

# --- sysusers.d and tmpfiles.d in a scratch root ------------------------------------------
if ! command -v systemd-sysusers >/dev/null || ! command -v systemd-tmpfiles >/dev/null; then
    skip "sysusers.d and tmpfiles.d: systemd-sysusers or systemd-tmpfiles not installed"
else
    root=$TMP/fsroot
    mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
    cp "$SRC/dchat.sysusers" "$root/usr/lib/sysusers.d/dchat.conf"
    cp "$SRC/dchat.tmpfiles" "$root/usr/lib/tmpfiles.d/dchat.conf"
    out=$TMP/fs.out
    {
        systemd-sysusers --root="$root" dchat.conf &&
        systemd-tmpfiles --root="$root" --create dchat.conf
    } > "$out" 2>&1
    uid=$(awk -F: '$1 == "dchat" { print $3 }' "$root/etc/passwd" 2>/dev/null)
    gid=$(awk -F: '$1 == "dchat" { print $3 }' "$root/etc/group" 2>/dev/null)
    home=$(awk -F: '$1 == "dchat" { print $6 }' "$root/etc/passwd" 2>/dev/null)
    shell=$(awk -F: '$1 == "dchat" { print $7 }' "$root/etc/passwd" 2>/dev/null)
    run=$(stat -c '%a %u %g' "$root/run/dchat" 2>/dev/null)
    lib=$(stat -c '%a %u %g' "$root/var/lib/dchat" 2>/dev/null)
    if [ -n "$uid" ] && [ "$uid" -lt 1000 ] && [ -n "$gid" ] && [ "$home" = /var/lib/dchat ] &&
       case "$shell" in */nologin|/bin/false) true ;; *) false ;; esac &&
       [ "$run" = "755 $uid $gid" ] && [ "$lib" = "750 $uid $gid" ]; then
        ok "sysusers.d makes system user dchat; tmpfiles.d makes /run/dchat 0755, /var/lib/dchat 0750"
    else
        notok "sysusers.d and tmpfiles.d"
        { cat "$out"; echo "uid=$uid gid=$gid home=$home shell=$shell run=[$run] lib=[$lib]"; } | diag
    fi
fi

[ "$N" = 7 ] || { echo "# planned 7 tests, ran $N"; FAILED=1; }
exit $FAILED
