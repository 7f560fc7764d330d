#!/usr/bin/env bash
# Builds target/connectx_<version>_<arch>.deb from the layout scripts/install.sh makes with
# PREFIX=/usr, with dpkg-deb alone (no extra packaging tool). Prints the package's path.
#
# Usage: scripts/deb.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} != --no-build ]]; then
    cargo build --release --locked
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage PREFIX=/usr scripts/install.sh --no-build >/dev/null

doc=$stage/usr/share/doc/connectx
cat >"$doc/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: connectx
License: MIT
COPY
# The newest glibc symbol version either file needs.
glibc=$(objdump -T target/release/connectx target/release/libconnectx.so \
    | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
size=$(du -sk "$stage/usr" | cut -f1)
mkdir -p "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: connectx
Version: $version
Architecture: $arch
Maintainer: connectx developers <connectx@localhost>
Depends: libc6 (>= $glibc)
Installed-Size: $size
Section: net
Priority: optional
Description: stop unmodified programs from running out of ephemeral ports
 An LD_PRELOAD library (libconnectx.so) that makes outgoing TCP and UDP
 connections share local ports per 4-tuple, and the connectx command:
 run programs under it, see port headroom (connectx status) and what the
 library did (connectx stats).
CONTROL
(cd "$stage" && find usr -type f -exec md5sum {} + >DEBIAN/md5sums)
out=target/connectx_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
