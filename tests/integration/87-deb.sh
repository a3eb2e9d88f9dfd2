#!/usr/bin/env bash
# 87-deb — `make deb`: dchat_VERSION_ARCH.deb from the staged install.  Its control file
# (Depends: a package for every shared library dchatd and dchatctl link, and systemd),
# /etc/dchat.conf a conffile, the maintainer scripts (sysusers, tmpfiles, the catalog,
# daemon-reload, a restart on upgrade), its files; lintian has nothing to say.  Installed
# into a scratch root (dpkg --root, scripts chrootless: DPKG_ROOT): the user and group,
# the directories, the catalog's database; the binaries run.  An upgrade to a newer
# build keeps the admin's /etc/dchat.conf and the chat log; remove keeps the conffile,
# purge removes it and keeps the chat log.
# (a first build of build/deb/, all of it with Debian's flags, takes minutes on a busy machine)
export DCHAT_TEST_TIMEOUT=${DCHAT_TEST_TIMEOUT:-900}
. "$(dirname "$0")/../lib/lib.sh"
need_root
need_cmd dpkg-deb dpkg-shlibdeps objdump make

# make_deb VERSION: builds it into $T/VERSION/; DEB = its path
make_deb() {
    # (a first build of build/deb/ takes minutes on a busy machine, not run's 30 s)
    RUN_TIMEOUT=900 run nice make -s -C "$TOP" deb DEB_OUT="$T/$1" DEB_VERSION="$1"
    DEB=$(printf '%s\n' "$OUT" | tail -n 1)
    if [ "$RC" != 0 ] || [ ! -f "$DEB" ]; then diag "make deb failed: $ERR"; return 1; fi
}
ok "make deb builds the package" make_deb 0.1.0+test1 || bail_out "no package"
arch=$(dpkg --print-architecture)
is "$(basename "$DEB")" "dchat_0.1.0+test1_$arch.deb" "named dchat_VERSION_ARCH.deb"
diag "$(basename "$DEB"): $(stat -c %s "$DEB") bytes"

# --- the control file ------------------------------------------------------------------------
run dpkg-deb -I "$DEB"
is "$RC" 0 "dpkg-deb -I reads it"
info=$OUT
like "$info" $'\n Package: dchat\n' "Package: dchat"
like "$info" $'\n Version: 0.1.0\\+test1\n' "Version: as asked"
like "$info" $'\n Architecture: '"$arch"$'\n' "Architecture: $arch"
depends=$(dpkg-deb -f "$DEB" Depends)
diag "Depends: $depends"
diag "Recommends: $(dpkg-deb -f "$DEB" Recommends); Suggests: $(dpkg-deb -f "$DEB" Suggests)"
# every library the programs link (objdump NEEDED) belongs to a package in Depends
missing=
for b in "$TOP/build/deb/obj/dchatd" "$TOP/build/deb/obj/dchatctl"; do
    for lib in $(objdump -p "$b" | awk '$1 == "NEEDED" { print $2 }'); do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')
        pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | head -n 1 | cut -d: -f1)
        [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1)
        [[ ", $depends" == *", $pkg "* || ", $depends," == *", $pkg,"* ]] || missing+=" $lib($pkg)"
    done
done
is "${missing:-none}" none "Depends has the package of every library dchatd and dchatctl link"
like "$depends" '(^|, )systemd(,|$)' "... and systemd (units, sysusers, tmpfiles)"
run dpkg-deb -e "$DEB" "$T/control"
is "$(cat "$T/control/conffiles")" /etc/dchat.conf "conffiles: /etc/dchat.conf"
post=$(cat "$T/control/postinst")
for w in 'systemd-sysusers .*dchat.conf' 'systemd-tmpfiles .*--create dchat.conf' 'journalctl .*--update-catalog' \
         'systemctl --system daemon-reload' 'deb-systemd-invoke try-restart dchatd.service'; do
    like "$post" "$w" "postinst: $w"
done
like "$(cat "$T/control/prerm")" 'deb-systemd-invoke stop dchatd.service dchatd.socket' "prerm: stops dchatd on removal"

# --- its files -----------------------------------------------------------------------------------
files=$(dpkg-deb -c "$DEB" | awk '{ print $NF }' | sed 's|^\./|/|')
for f in /usr/sbin/dchatd /usr/bin/dchatctl /usr/lib/dchat/dchat-draw /etc/dchat.conf \
         /lib/systemd/system/dchatd.service /lib/systemd/system/dchatd.socket \
         /lib/systemd/system/dchatd-peer.socket /lib/systemd/system/dchatd-server.socket \
         /usr/lib/sysusers.d/dchat.conf /usr/lib/tmpfiles.d/dchat.conf /usr/lib/systemd/catalog/dchatd.catalog \
         /usr/share/man/man8/dchatd.8.gz /usr/share/man/man1/dchatctl.1.gz /usr/share/man/man5/dchat.conf.5.gz \
         /usr/share/bash-completion/completions/dchatctl /usr/share/doc/dchat/copyright; do
    grep -q -x -F "$f" <<< "$files" || missing_f+=" $f"
done
is "${missing_f:-none}" none "it holds the programs, units, sysusers/tmpfiles, catalog, man pages, completion"

if command -v lintian >/dev/null; then
    run nice lintian --pedantic --info "$DEB"
    tags=$(printf '%s\n' "$OUT" | grep -E '^[EWIPX]: ' || true)
    is "${tags:-none}" none "lintian --pedantic --info: no tag"
else
    skip "lintian not installed (make deps-test)" 1
fi

# --- into a scratch root ---------------------------------------------------------------------------
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/log"
: > "$R/var/lib/dpkg/status"
# dpkg --root: the scripts run outside a chroot with DPKG_ROOT (this root has no shell);
# the dependencies are the host's, not the root's
dpkg_r() { dpkg --root="$R" --force-script-chrootless --force-depends "$@"; }
run dpkg_r -i "$DEB"
is "$RC" 0 "dpkg --root ROOT -i installs it" || diag "$ERR"
like "$(grep '^dchat:' "$R/etc/passwd")" '^dchat:x:[0-9]+:[0-9]+:dchat chat daemon:/var/lib/dchat:' \
    "postinst: the dchat user (sysusers)"
ok "postinst: the dchat group" grep -q '^dchat:' "$R/etc/group"
uid=$(awk -F: '$1 == "dchat" { print $3 }' "$R/etc/passwd")
is "$(stat -c '%a %u' "$R/var/lib/dchat")" "750 $uid" "postinst: /var/lib/dchat, 0750, dchat's (tmpfiles)"
ok "postinst: the journal catalog's database" test -s "$R/var/lib/systemd/catalog/database"
run "$R/usr/bin/dchatctl" --version
is "$RC/$OUT" "0/dchatctl 0.1.0" "the installed dchatctl runs"
run "$R/usr/sbin/dchatd" --version
is "$RC" 0 "the installed dchatd runs"
is "$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Status} ${Version}' dchat)" \
    "install ok installed 0.1.0+test1" "dpkg: installed, 0.1.0+test1"

# --- an upgrade: the admin's config and the chat log kept ---------------------------------------
echo '# the admin was here' >> "$R/etc/dchat.conf"
printf 'a chat log\n' > "$R/var/lib/dchat/chat.log"
ok "a newer build" make_deb 0.1.0+test2
run dpkg_r -i "$DEB"
is "$RC" 0 "dpkg -i of the newer build upgrades" || diag "$ERR"
is "$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f '${Version}' dchat)" 0.1.0+test2 "... to 0.1.0+test2"
ok "the upgrade keeps the admin's /etc/dchat.conf" grep -q '^# the admin was here' "$R/etc/dchat.conf"
is "$(cat "$R/var/lib/dchat/chat.log")" "a chat log" "... and the chat log"

# --- remove, purge ------------------------------------------------------------------------------
run dpkg_r -r dchat
is "$RC" 0 "dpkg -r removes it" || diag "$ERR"
ok "... the programs are gone" test ! -e "$R/usr/sbin/dchatd"
ok "... the admin's config stays (a conffile)" grep -q '^# the admin was here' "$R/etc/dchat.conf"
run dpkg_r -P dchat
is "$RC" 0 "dpkg -P purges it" || diag "$ERR"
ok "... /etc/dchat.conf is gone" test ! -e "$R/etc/dchat.conf"
is "$(cat "$R/var/lib/dchat/chat.log" 2>/dev/null)" "a chat log" "... the chat log stays"
like "$ERR" "kept .*/var/lib/dchat \\(the chat log\\)" "... and purge says so"

done_testing
