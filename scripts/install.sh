#!/usr/bin/env bash
# Installs connectx under PREFIX (default /usr/local), staged under DESTDIR when set:
#   PREFIX/bin/connectx
#   PREFIX/lib/<multiarch>/connectx/libconnectx.so   (Debian multiarch, e.g. x86_64-linux-gnu)
#   PREFIX/share/man/man1/connectx.1.gz, connectx-run.1.gz, ...
#   PREFIX/share/bash-completion/completions/connectx
#   PREFIX/share/zsh/vendor-completions/_connectx
#   PREFIX/share/fish/vendor_completions.d/connectx.fish
#   PREFIX/share/doc/connectx/README.md, connectx.conf (the systemd drop-in of the README)
# `connectx run` finds the library there from the installed command (../lib/<multiarch>/connectx/).
#
# Usage: [PREFIX=/usr/local] [DESTDIR=] scripts/install.sh [--no-build]
#   --no-build   use target/release as it is (scripts/deb.sh builds first, then stages twice)
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
if [[ $PREFIX != /* ]]; then
    echo "install.sh: PREFIX must be absolute (got \`$PREFIX\`)" >&2
    exit 2
fi
if [[ ${1:-} != --no-build ]]; then
    cargo build --release --locked
fi
bin=target/release/connectx
lib=target/release/libconnectx.so
for f in "$bin" "$lib"; do
    [[ -f $f ]] || { echo "install.sh: $f missing: run \`cargo build --release\`" >&2; exit 1; }
done
# The command says where it looks, so both always agree.
triplet=$("$bin" _multiarch)
root=$DESTDIR$PREFIX

install -D -m 0755 "$bin" "$root/bin/connectx"
install -D -m 0644 "$lib" "$root/lib/$triplet/connectx/libconnectx.so"

man=$root/share/man/man1
mkdir -p "$man"
"$bin" _man "$man"
gzip -9nf "$man"/connectx*.1

"$bin" _completions bash | install -D -m 0644 /dev/stdin "$root/share/bash-completion/completions/connectx"
"$bin" _completions zsh | install -D -m 0644 /dev/stdin "$root/share/zsh/vendor-completions/_connectx"
"$bin" _completions fish | install -D -m 0644 /dev/stdin "$root/share/fish/vendor_completions.d/connectx.fish"

doc=$root/share/doc/connectx
install -D -m 0644 README.md "$doc/README.md"
# The systemd drop-in with this install's library path.
sed "s|/usr/lib/x86_64-linux-gnu/connectx/|$PREFIX/lib/$triplet/connectx/|" docs/systemd/connectx.conf \
    | install -D -m 0644 /dev/stdin "$doc/connectx.conf"

echo "installed connectx under ${DESTDIR:+$DESTDIR}$PREFIX (library: $PREFIX/lib/$triplet/connectx/libconnectx.so)"
