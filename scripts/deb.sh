#!/usr/bin/env bash
# Builds target/connectx_<version>_<arch>.deb from the layout scripts/install.sh makes with
# PREFIX=/usr, with dpkg-deb, dpkg-shlibdeps (Depends from the ELF files, libgcc-s1 included)
# and strip: lintian-clean (tests/install.rs runs lintian on it). Prints the package's path.
#
# Usage: scripts/deb.sh [--no-build]
# The maintainer is the one of docs/debian/changelog's latest entry (also the package's
# changelog); set it there for a real distribution.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} != --no-build ]]; then
    scripts/install.sh --build-only
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' docs/debian/changelog | head -1)
stage=$(mktemp -d)
work=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage" "$work"' EXIT
DESTDIR=$stage PREFIX=/usr scripts/install.sh --no-build >/dev/null

triplet=$(target/release/connectx-tools _multiarch)
elfs=("$stage/usr/bin/connectx" "$stage/usr/lib/$triplet/connectx/libconnectx.so"
    "$stage/usr/lib/$triplet/connectx/connectx-tools")
# Debian policy: shipped ELF files without symbols or notes (perf users: build from source).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "${elfs[@]}"
chmod 0644 "$stage/usr/lib/$triplet/connectx/libconnectx.so"

doc=$stage/usr/share/doc/connectx
{
    cat <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: connectx

Files: *
Copyright: 2026 the connectx developers
License: Expat

License: Expat
COPY
    # The MIT text of LICENSE, as a copyright-format paragraph (blank lines as " .").
    tail -n +3 LICENSE | sed -e 's/^$/./' -e 's/^/ /'
} >"$doc/copyright"
gzip -9n <docs/debian/changelog >"$doc/changelog.gz"

# Depends from the files themselves (dpkg-shlibdeps wants a debian/control to read).
mkdir -p "$work/debian"
printf 'Source: connectx\n\nPackage: connectx\nArchitecture: any\n' >"$work/debian/control"
depends=$(cd "$work" && dpkg-shlibdeps -O "${elfs[@]/#/-e}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[[ -n $depends ]] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size=$(du -sk "$stage/usr" | cut -f1)
mkdir -p "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: connectx
Version: $version
Architecture: $arch
Maintainer: $maintainer
Depends: $depends
Installed-Size: $size
Section: net
Priority: optional
Description: stop unmodified programs from running out of ephemeral ports
 An LD_PRELOAD library (libconnectx.so) that makes outgoing TCP and UDP
 connections share local ports per 4-tuple, and the connectx command:
 run programs under it, see port headroom (connectx status, also for
 Prometheus) and what the library did (connectx stats).
CONTROL
(cd "$stage" && find usr -type f -exec md5sum {} + | sort -k2 >DEBIAN/md5sums)
out=target/connectx_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
