#!/usr/bin/env bash
# Installs connectx under PREFIX (default /usr/local), staged under DESTDIR when set:
#   PREFIX/bin/connectx                               (built without the lab tools)
#   PREFIX/lib/<multiarch>/connectx/libconnectx.so   (Debian multiarch, e.g. x86_64-linux-gnu)
#   PREFIX/lib/<multiarch>/connectx/connectx-tools   (the demo's servers and clients, off PATH)
#   PREFIX/share/man/man1/connectx.1.gz, connectx-run.1.gz, ..., man7/libconnectx.7.gz
#   PREFIX/share/bash-completion/completions/connectx
#   PREFIX/share/zsh/vendor-completions/_connectx
#   PREFIX/share/fish/vendor_completions.d/connectx.fish
#   PREFIX/share/doc/connectx/README.md, connectx.conf (the systemd drop-in of the README),
#     examples/connectx-textfile.{service,timer} (Prometheus textfile collector)
# `connectx run` finds the library there from the installed command (../lib/<multiarch>/connectx/).
#
# Usage: [PREFIX=/usr/local] [DESTDIR=] scripts/install.sh [--no-build | --build-only]
#   --no-build   use target/release as it is (scripts/deb.sh builds first, then stages)
#   --build-only build the three files and stop
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
if [[ $PREFIX != /* ]]; then
    echo "install.sh: PREFIX must be absolute (got \`$PREFIX\`)" >&2
    exit 2
fi
if [[ ${1:-} != --no-build ]]; then
    cargo build --release --locked -p connectx
    cargo build --release --locked -p connectx-cli --bin connectx-tools
    # Last: the shipped command, without the lab tools (cli/Cargo.toml, feature `tools`).
    cargo build --release --locked -p connectx-cli --no-default-features --bin connectx
fi
[[ ${1:-} == --build-only ]] && exit 0
bin=target/release/connectx
tools=target/release/connectx-tools
lib=target/release/libconnectx.so
for f in "$bin" "$tools" "$lib"; do
    [[ -f $f ]] || { echo "install.sh: $f missing: run \`cargo build --release\`" >&2; exit 1; }
done
# The command says where it looks, so both always agree.
triplet=$("$tools" _multiarch)
root=$DESTDIR$PREFIX

install -D -m 0755 "$bin" "$root/bin/connectx"
install -D -m 0644 "$lib" "$root/lib/$triplet/connectx/libconnectx.so"
install -D -m 0755 "$tools" "$root/lib/$triplet/connectx/connectx-tools"

pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$tools" _man "$pages"
for p in "$pages"/*; do
    section=${p##*.}
    gzip -9n <"$p" | install -D -m 0644 /dev/stdin "$root/share/man/man$section/$(basename "$p").gz"
done

"$tools" _completions bash | install -D -m 0644 /dev/stdin "$root/share/bash-completion/completions/connectx"
"$tools" _completions zsh | install -D -m 0644 /dev/stdin "$root/share/zsh/vendor-completions/_connectx"
"$tools" _completions fish | install -D -m 0644 /dev/stdin "$root/share/fish/vendor_completions.d/connectx.fish"

doc=$root/share/doc/connectx
install -D -m 0644 README.md "$doc/README.md"
# The systemd files with this install's paths.
for f in connectx.conf connectx-textfile.service connectx-textfile.timer; do
    case $f in connectx.conf) to=$doc/$f ;; *) to=$doc/examples/$f ;; esac
    sed -e "s|/usr/lib/x86_64-linux-gnu/connectx/|$PREFIX/lib/$triplet/connectx/|" \
        -e "s|/usr/bin/connectx|$PREFIX/bin/connectx|" "docs/systemd/$f" \
        | install -D -m 0644 /dev/stdin "$to"
done

echo "installed connectx under ${DESTDIR:+$DESTDIR}$PREFIX (library: $PREFIX/lib/$triplet/connectx/libconnectx.so)"
