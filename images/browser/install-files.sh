#!/bin/sh
# Installs the browser session's scripts and URL-opening configuration into "$ROOTFS".
# Runs on the HOST as root, cwd the recipe directory (a `run` step of recipe.toml).
set -eu
: "${ROOTFS:?ROOTFS is not set}"

install -o 0 -g 0 -m 0755 hangar-browser-session "$ROOTFS/usr/local/bin/hangar-browser-session"
install -o 0 -g 0 -m 0755 hangar-browser "$ROOTFS/usr/local/bin/hangar-browser"
install -o 0 -g 0 -m 0755 xdg-open "$ROOTFS/usr/local/bin/xdg-open"
install -o 0 -g 0 -m 0644 -D hangar-browser.desktop \
    "$ROOTFS/usr/share/applications/hangar-browser.desktop"
install -o 0 -g 0 -m 0644 -D mimeapps.list "$ROOTFS/etc/xdg/mimeapps.list"

# x-www-browser / gnome-www-browser: the last resort of every xdg-open (Chromium's own entry
# has priority 40, without our flags).
for name in x-www-browser gnome-www-browser; do
    chroot "$ROOTFS" /usr/bin/update-alternatives --quiet \
        --install "/usr/bin/$name" "$name" /usr/local/bin/hangar-browser 200
done
# No logs of the build in the image.
rm -f "$ROOTFS/var/log/alternatives.log"
