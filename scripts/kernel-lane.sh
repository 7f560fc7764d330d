#!/usr/bin/env bash
# The kernel lane: runs the host-built test binaries under another Linux kernel, a Debian kernel
# package booted in qemu.
#
#   scripts/kernel-lane.sh KERNEL [TARGET...]   KERNEL: 6.1 (bookworm), 6.12 (bookworm-security)
#                                              or a package name; TARGETs: test targets
#                                              (default: scripts/kernel-lane/tests)
#   scripts/kernel-lane.sh --setup KERNEL       only fetch and unpack the kernel, build the initramfs
#
# The kernel's -unsigned image package is fetched with `apt-get download` (nothing is installed:
# /boot and /lib/modules are untouched), unpacked with dpkg-deb into the cache and kept there.
# The guest's root is this machine's / (read-only 9p, throwaway tmpfs overlays on /etc /root
# /home /opt /srv /tmp /usr /var), the checkout is mounted read-write at its own path, so the
# test binaries, the library and cargo are the host's; nothing is compiled for the guest but the
# tests' own C helpers. Loopback only. SOCK_DIAG modules are loaded at boot and module
# autoloading is then turned off (scripts/kernel-lane/guest.sh). Test time limits are scaled
# (CONNECTX_TEST_TIME_SCALE) for software emulation.
#
# Prints each test binary's result and the kernel's totals; exits 0 only if every test passed.
# A kernel that cannot be fetched or does not boot is a failure with a message saying so.
#
# Environment: CX_VM_CPUS (2), CX_VM_MEM (4G), CX_VM_ACCEL (auto|kvm|tcg; auto = kvm only where
# /dev/kvm is usable and the CPU shows vmx/svm: a paravirtual /dev/kvm without them hangs a stock
# kernel), CX_VM_TIMEOUT (seconds for the whole run, 2700), CX_TEST_TIMEOUT (seconds per test
# binary, 1200), CX_TIME_SCALE (4), CX_KERNEL_CACHE (${XDG_CACHE_HOME:-$HOME/.cache}/connectx-kernels),
# CX_VM_KEEP=1 (keep the run directory: console log, full output).
#
# Needs: qemu-system-x86, busybox-static, kmod, dpkg-deb, apt-get, python3 (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd -P)
lane=$here/scripts/kernel-lane

me=kernel-lane
say() { echo "[$me] $*" >&2; }
die() {
    say "error: $*"
    exit 2
}

setup_only=0
if [[ ${1:-} == --setup ]]; then
    setup_only=1
    shift
fi
(($# >= 1)) || {
    sed -n '2,/^# Needs/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
want=$1
shift

cpus=${CX_VM_CPUS:-2}
mem=${CX_VM_MEM:-4G}
accel=${CX_VM_ACCEL:-auto}
vm_timeout=${CX_VM_TIMEOUT:-2700}
test_timeout=${CX_TEST_TIMEOUT:-1200}
scale=${CX_TIME_SCALE:-4}
cache=${CX_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connectx-kernels}
PATH=$PATH:/usr/sbin:/sbin

for tool in qemu-system-x86_64 dpkg-deb depmod modprobe apt-get python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install qemu-system-x86 kmod python3)"
done
busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
    die "$busybox is dynamically linked: install busybox-static (the initramfs needs a static one)"
fi

# --- which package ---
# A fresh machine may have no package lists yet: fetch them once (as root) if the kernel is unknown.
apt_updated=0
known() { apt-cache show "$1" >/dev/null 2>&1; }
refresh() {
    if ((!apt_updated)) && [[ $(id -u) == 0 ]]; then
        apt_updated=1
        say "apt-get update (the package lists do not name the kernel)"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
        return 0
    fi
    return 1
}
known linux-image-amd64 || refresh || true
case $want in
6.1)
    img=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\./ {print $2; exit}')
    [[ -n $img ]] || die "cannot tell which 6.1 kernel linux-image-amd64 means (is bookworm in the apt sources? apt-get update?)"
    pkg=$img-unsigned
    ;;
6.12)
    newest_612() {
        apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' 2>/dev/null |
            awk '{print $1}' | sort -V | tail -1
    }
    pkg=$(newest_612)
    [[ -n $pkg ]] || ! refresh || pkg=$(newest_612)
    [[ -n $pkg ]] || die "no linux-image-6.12.*+deb12-amd64-unsigned package known to apt (is bookworm-security in the apt sources? apt-get update?)"
    ;;
linux-image-*) pkg=$want ;;
*) die "KERNEL must be 6.1, 6.12 or a linux-image-... package name, not '$want'" ;;
esac

# --- the kernel, unpacked into the cache ---
kdir=$cache/$pkg
if ! compgen -G "$kdir/boot/vmlinuz-*" >/dev/null; then
    say "fetching $pkg"
    mkdir -p "$cache/debs"
    (cd "$cache/debs" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed: the kernel package is missing"
    deb=$(ls -t "$cache/debs/${pkg}_"*.deb 2>/dev/null | head -1)
    [[ -n $deb ]] || die "apt-get download $pkg left no .deb in $cache/debs"
    rm -rf "$kdir.part"
    dpkg-deb -x "$deb" "$kdir.part" || die "cannot unpack $deb"
    mv "$kdir.part" "$kdir"
    rm -f "$deb" # the unpacked tree is the cache
fi
kimg=$(ls "$kdir"/boot/vmlinuz-* | head -1)
kver=${kimg##*/vmlinuz-}
[[ -f $kdir/lib/modules/$kver/modules.dep ]] || depmod -b "$kdir" "$kver"

# --- the initramfs: static busybox, the modules for virtio/9p/overlay, scripts/kernel-lane/init ---
initrd=$kdir/lane-initrd.gz
mods=$(modprobe -d "$kdir" -S "$kver" --show-depends -a virtio_pci 9pnet_virtio 9p overlay |
    awk '$1 == "insmod" && !seen[$2]++ {print $2}')
stamp=$({ cat "$lane/init"; printf '%s\n' "$mods"; } | sha256sum | cut -c1-16)
if [[ ! -f $initrd || $(cat "$initrd.stamp" 2>/dev/null) != "$stamp" ]]; then
    say "building the initramfs for $kver"
    t=$(mktemp -d)
    mkdir -p "$t/bin" "$t/mods"
    cp "$busybox" "$t/bin/busybox"
    install -m 755 "$lane/init" "$t/init"
    : >"$t/modules.list"
    for m in $mods; do # busybox insmod takes plain .ko files
        b=${m##*/}
        case $b in
        *.ko.xz) "$busybox" xz -dc "$m" >"$t/mods/${b%.xz}" ;;
        *.ko.zst) zstd -qdc "$m" >"$t/mods/${b%.zst}" ;;
        *.ko.gz) gzip -dc "$m" >"$t/mods/${b%.gz}" ;;
        *) cp "$m" "$t/mods/$b" ;;
        esac
        echo "${b%.ko*}.ko" >>"$t/modules.list"
    done
    (cd "$t" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.part"
    mv "$initrd.part" "$initrd"
    echo "$stamp" >"$initrd.stamp"
    rm -rf "$t"
fi
if ((setup_only)); then
    say "ready: $pkg ($kver), initramfs $initrd"
    exit 0
fi

# --- the test binaries, built on the host ---
if (($# == 0)); then
    set -- $(grep -v -E '^\s*(#|$)' "$lane/tests" | awk '{print $1}')
fi
targets=("$@")
[[ $here != *,* && $here != *[[:space:]]* ]] || die "the checkout path may not contain commas or spaces (qemu -fsdev)"
run=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX")
cleanup() {
    [[ -n ${qpid:-} ]] && kill "$qpid" 2>/dev/null
    if [[ ${CX_VM_KEEP:-0} == 1 ]]; then say "run directory kept: $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT

cargo build --quiet
test_args=()
for t in "${targets[@]}"; do test_args+=(--test "$t"); done
cargo test --quiet --no-run --message-format=json "${test_args[@]}" >"$run/build.json" ||
    die "building the test binaries failed"
# target name -> executable, in the order asked; each with its arguments from the list file.
python3 - "$run/build.json" "$lane/tests" "${targets[@]}" >"$run/binaries" <<'PY' || die "cannot find the test binaries"
import json, sys
exe = {}
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        exe[m["target"]["name"]] = m["executable"]
args = {}
for line in open(sys.argv[2]):
    w = line.split()
    if w and not w[0].startswith("#"):
        args[w[0]] = " ".join(w[1:])
for t in sys.argv[3:]:
    if t not in exe:
        sys.exit(f"no test binary for target {t}")
    print(t, exe[t], args.get(t, ""))
PY

lib=$here/target/debug/libconnectx.so
[[ -f $lib ]] || die "$lib was not built"
{
    printf 'CX_KVER=%q\nCX_KDIR=%q\nCX_WORK=%q\nCX_LIB=%q\n' "$kver" "$kdir" "$here" "$lib"
    printf 'CX_NOFILE_SOFT=%q\nCX_NOFILE_HARD=%q\n' "$(ulimit -Sn)" "$(ulimit -Hn)"
    printf 'CX_TEST_TIMEOUT=%q\n' "$test_timeout"
} >"$run/boot.conf"
# The caller's environment (PATH, HOME, cargo's variables), less this shell's own.
{
    export -p | grep -v -E '^declare -x (PWD|OLDPWD|SHLVL|_|LD_PRELOAD|CONNECTX[A-Z_]*)(=|$)'
    printf 'export CONNECTX_TEST_TIME_SCALE=%q\n' "$scale"
} >"$run/env.sh"
cp "$lane/guest.sh" "$run/guest.sh"

if [[ $accel == auto ]]; then
    if [[ -r /dev/kvm && -w /dev/kvm ]] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
        accel=kvm
    else
        accel=tcg
    fi
fi
case $accel in
kvm) accel_opts=(-accel kvm -cpu host) ;;
tcg) accel_opts=(-accel tcg,thread=multi -cpu max) ;;
*) die "CX_VM_ACCEL must be auto, kvm or tcg" ;;
esac
fs() { # id path tag ro|rw
    local ro=
    [[ $4 == ro ]] && ro=,readonly=on
    echo "-fsdev local,id=$1,path=$2,security_model=none,multidevs=remap$ro -device virtio-9p-pci,fsdev=$1,mount_tag=$3"
}
say "booting $pkg ($kver; $accel, $cpus vCPUs, $mem) for: ${targets[*]}"
t0=$(date +%s)
set +e
# shellcheck disable=SC2046
timeout "$vm_timeout" qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
    -machine pc "${accel_opts[@]}" -smp "$cpus" -m "$mem" \
    -kernel "$kimg" -initrd "$initrd" -append "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init" \
    -serial "file:$run/console.log" \
    $(fs r / cxroot ro) $(fs w "$here" cxwork rw) $(fs x "$run" cxrun rw) \
    >"$run/qemu.log" 2>&1
qrc=$?
set -e
t1=$(date +%s)
wall=$((t1 - t0))

if [[ ! -f $run/boot_uptime ]]; then
    say "FAIL: $kver did not boot (qemu exit $qrc$( ((qrc == 124)) && echo ", killed after ${vm_timeout}s")); console and qemu log:"
    tail -n 40 "$run/console.log" >&2 || true
    cat "$run/qemu.log" >&2 || true
    exit 1
fi
# The full output, then one line per test binary and the totals.
cat "$run/out.log"
python3 - "$run/out.log" "$kver" "$(cat "$run/boot_uptime")" "$wall" "$([[ -f $run/done ]] && echo 1 || echo 0)" <<'PY'
import re, sys
out, kver, boot, wall, done = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
tot = {"passed": 0, "failed": 0, "ignored": 0}
bad, cur, counts = [], None, None
for line in open(out, errors="replace"):
    if m := re.match(r"lane: start (\S+)", line):
        cur, counts = m.group(1), None
    elif m := re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line):
        counts = [int(x) for x in m.groups()]
    elif m := re.match(r"lane: end (\S+) rc=(\d+) secs=(\d+)", line):
        rc, secs = int(m.group(2)), m.group(3)
        if counts is None:
            how = "timed out" if rc in (124, 137) else f"exit {rc}, no test result"
            print(f"[kernel-lane] {kver}: {cur}: FAILED ({how}) in {secs} s")
            bad.append(cur)
            tot["failed"] += 1
        else:
            p, f, i = counts
            tot["passed"] += p; tot["failed"] += f; tot["ignored"] += i
            if f or rc:
                bad.append(cur)
            print(f"[kernel-lane] {kver}: {cur}: {p} passed, {f} failed, {i} ignored in {secs} s")
        cur = None
if cur is not None or not done:
    print(f"[kernel-lane] {kver}: FAILED: the guest stopped before the end (in {cur or 'setup'}; time limit?)")
    bad.append(cur or "setup")
print(f"[kernel-lane] {kver}: {'PASS' if not bad else 'FAIL'}: {tot['passed']} passed, {tot['failed']} failed, "
      f"{tot['ignored']} ignored; boot {boot:.0f} s (guest clock), wall {wall} s"
      + (f"; failing: {' '.join(bad)}" if bad else ""))
sys.exit(1 if bad else 0)
PY
