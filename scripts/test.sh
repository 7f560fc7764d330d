#!/usr/bin/env bash
# The README's test command: installs what a fresh machine lacks (as root, with apt-get), then
# runs every test (`cargo test`: unit tests, integration tests in network namespaces, the
# differential suite, process-life, fault, security, fuzz and soak smoke tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# tool -> Debian package providing it
declare -A need=(
    [curl]=curl
    [dig]=bind9-dnsutils
    [nc]=netcat-openbsd
    [dnsmasq]=dnsmasq-base
    [ip]=iproute2
    [python3]=python3
    [cc]=gcc
    [strace]=strace
    [setcap]=libcap2-bin
    [objdump]=binutils
    [readelf]=binutils
    [dpkg-deb]=dpkg
    [gzip]=gzip
    # the .deb is checked as Debian's archive checks it (tests/install.rs)
    [lintian]=lintian
    # the compatibility suite (tests/compat.rs)
    [haproxy]=haproxy
    [nginx]=nginx
    [squid]=squid
    [ssh]=openssh-client
    [sshd]=openssh-server
    [wget]=wget
    [socat]=socat
    [kdig]=knot-dnsutils
    [unbound]=unbound
    [node]=nodejs
    [javac]=openjdk-17-jdk-headless
    [perl]=perl
    [ss]=iproute2
    # the supervisor's Go program (tests/supervise.rs)
    [go]=golang
    [v2ray]=v2ray
)
missing=()
for tool in "${!need[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool && ! -x /sbin/$tool ]]; then
        missing+=("${need[$tool]}")
    fi
done
# C headers and the static libc (tests/robust, `cc -static` in tests/cli.rs): gcc alone only
# recommends them.
if [[ ! -e /usr/include/stdio.h ]]; then
    missing+=(libc6-dev)
fi
# nc must be the OpenBSD one (-s/-N as the tests use them).
if command -v nc >/dev/null 2>&1 && ! nc -h 2>&1 | grep -q OpenBSD; then
    missing+=(netcat-openbsd)
fi
if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "scripts/test.sh: missing ${missing[*]}: run as root to install them with apt-get, or install them yourself" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cargo build --workspace
cargo test --workspace "$@"
