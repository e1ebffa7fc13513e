#!/bin/sh
# Installs the browser desktop's Debian packages into the image tree "$ROOTFS".
#
# Runs on the HOST as root (a `run` step of recipe.toml). The tree is the builder's private work
# copy (`cp -a`, not hard links into the base image's blob), so dpkg may edit files in place.
#
# Safety of the mounts apt's maintainer scripts need (/proc, /dev): everything happens inside
# `unshare --mount --pid --fork --kill-child`, a private mount namespace and pid namespace.
# When this script ends -- success, failure, or the builder's deadline killing the process group
# -- the namespaces die and so do their mounts and any daemon a postinst might have left behind.
# Nothing can stay mounted inside a tree that is then imported. The trap below unmounts as well.
set -eu
: "${ROOTFS:?ROOTFS is not set}"

# dbus-x11 satisfies GTK's "default-dbus-session-bus | dbus-session-bus" dependency; without it
# apt picks dbus-user-session, which pulls in systemd and 13 more packages nobody here runs.
PACKAGES="xvfb x11vnc chromium fonts-liberation fonts-dejavu-core xdg-utils dbus-x11"

if [ "${HANGAR_BROWSER_IN_NS:-}" != 1 ]; then
    [ -x "$ROOTFS/usr/bin/apt-get" ] || { echo "no apt-get in $ROOTFS" >&2; exit 1; }
    export HANGAR_BROWSER_IN_NS=1
    exec unshare --mount --pid --fork --kill-child --propagation private -- /bin/sh "$0"
fi

# ---- inside the private namespaces from here on ----
log() { echo "install-packages: $*"; }

# The image's apt source: debootstrap wrote the mirror it used into /etc/apt/sources.list as
# "deb MIRROR bookworm main". Add bookworm-updates and bookworm-security beside it: Chromium and
# Xorg get their fixes there, and this browser is where people type provider passwords.
sources="$ROOTFS/etc/apt/sources.list"
mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' "$sources")
[ -n "$mirror" ] || { echo "no 'deb MIRROR bookworm' line in $sources" >&2; exit 1; }
security="${HANGAR_DEBIAN_SECURITY_MIRROR:-${mirror%/}-security}"
log "mirror $mirror, security $security"
cat > "$ROOTFS/etc/apt/sources.list.d/bookworm-updates-security.list" <<SRC
# Written by images/browser/install-packages.sh.
deb $mirror bookworm-updates main
deb $security bookworm-security main
SRC

resolv="$ROOTFS/etc/resolv.conf"
resolv_saved=""
policy="$ROOTFS/usr/sbin/policy-rc.d"
excludes="$ROOTFS/etc/dpkg/dpkg.cfg.d/hangar-build-excludes"
mounted=""

cleanup() {
    status=$?
    set +e
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m"; done
    rm -f "$policy" "$excludes"
    if [ -n "$resolv_saved" ]; then mv -f "$resolv_saved" "$resolv"; else rm -f "$resolv"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# DNS for apt inside the chroot: the host's resolver configuration, for the build only.
if [ -e "$resolv" ] || [ -L "$resolv" ]; then
    resolv_saved="$ROOTFS/etc/.resolv.conf.hangar-build"
    mv -f "$resolv" "$resolv_saved"
fi
cp -L /etc/resolv.conf "$resolv"

# No service may start during the build.
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 0755 "$policy"

# The packages of this step come without manuals and documentation (copyright files stay):
# about 60 MB less. For this build only; the default image's own files are untouched.
cat > "$excludes" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
CFG

# A fresh proc of this pid namespace, and the host's /dev (null, urandom, ...), reverse order
# in $mounted so that cleanup unmounts the last one first.
mount -t proc proc "$ROOTFS/proc"; mounted="$ROOTFS/proc $mounted"
mount --bind /dev "$ROOTFS/dev";   mounted="$ROOTFS/dev $mounted"

in_image() {
    chroot "$ROOTFS" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

in_image apt-get -q update
# shellcheck disable=SC2086
in_image apt-get -q -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    install $PACKAGES
# What went in, for people (and the report): one "package version" per line.
mkdir -p "$ROOTFS/etc/hangar"
# shellcheck disable=SC2086
in_image dpkg-query -W -f '${Package} ${Version}\n' $PACKAGES chromium-common \
    > "$ROOTFS/etc/hangar/browser-packages.txt"
cat "$ROOTFS/etc/hangar/browser-packages.txt"

# Keep the image small: no package lists, no downloaded .debs, no logs of this build.
in_image apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
rm -f "$ROOTFS"/var/log/apt/*.log "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/var/log/alternatives.log
log "done"
