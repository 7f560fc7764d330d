#!/bin/bash
# PID 1 in the lane's guest after switch_root (scripts/kernel-lane.sh): sets up what a system
# would have, runs each test binary of /run/cx/binaries with a time limit, writes everything to
# /run/cx/out.log and powers off. The host reads the results from /run/cx.
. /run/cx/boot.conf
. /run/cx/env.sh
export PATH=$PATH:/usr/sbin:/sbin
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
hostname cx-guest
ulimit -Hn "$CX_NOFILE_HARD" 2>/dev/null
ulimit -Sn "$CX_NOFILE_SOFT" 2>/dev/null
# Module autoloading out of the way: every socket() of a family or protocol with no module
# loaded would run modprobe (~0.2 s each under emulation). Load what the library asks the
# kernel for (SOCK_DIAG for TCP and UDP), then turn autoloading off.
modprobe -a inet_diag tcp_diag udp_diag
echo /bin/true > /proc/sys/kernel/modprobe
read -r up _ < /proc/uptime
echo "$up" > /run/cx/boot_uptime
cd "$CX_WORK"
{
    echo "lane: kernel $(uname -r) ($(uname -v))"
    # What the library finds on this kernel (its info line; none when nothing is degraded).
    CONNECTX_LOG=info LD_PRELOAD=$CX_LIB python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 9))
' 2>&1 | sed 's/^/lane: features: /'
    while read -r name bin filter; do
        echo "lane: start $name"
        read -r t0 _ < /proc/uptime
        # shellcheck disable=SC2086
        timeout -k 10 "$CX_TEST_TIMEOUT" "$bin" $filter < /dev/null 2>&1
        rc=$?
        read -r t1 _ < /proc/uptime
        echo "lane: end $name rc=$rc secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b - a}')"
    done < /run/cx/binaries
} > /run/cx/out.log 2>&1
read -r up _ < /proc/uptime
echo "$up" > /run/cx/end_uptime
echo 0 > /run/cx/done
sync
echo o > /proc/sysrq-trigger
sleep 30
