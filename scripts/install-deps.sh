#!/bin/sh
# Installs what orch builds and tests with, on Debian/Ubuntu (apt-get), skipping
# what is already there. Run as root or with sudo available.
set -eu
PKGS="build-essential cmake ninja-build pkg-config git
libluajit-5.1-dev luajit libuv1-dev libsqlite3-dev sqlite3 libgit2-dev
libcurl4-openssl-dev libncurses-dev ca-certificates curl
lua-cjson lua-yaml lua-busted lua-check python3 tmux
bubblewrap man-db zsh fish"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -z "$missing" ]; then
    echo "install-deps: everything is installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
