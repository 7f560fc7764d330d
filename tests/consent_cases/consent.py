"""Scenarios of issue 17 (consent), driven by tests/consent.rs. Each subcommand prints one line
of key=value fields. Bounded loops, loopback only."""
import errno, os, socket, sys, time

SO_REUSEPORT = socket.SO_REUSEPORT


def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def server(port, count, seconds):
    """A UDP server not under connectx: SO_REUSEPORT, bound on a port inside the range."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    got = 0
    end = time.time() + seconds
    last = time.time()
    print("ready", file=sys.stderr, flush=True)
    # Until every datagram came, or 1.5 s without one once some came (the rest were lost).
    while got < count and time.time() < end and not (got and time.time() - last > 1.5):
        try:
            s.recv(64)
            got += 1
            last = time.time()
        except socket.timeout:
            pass
    # Datagrams the kernel dropped at this socket (receive buffer full: a slow machine, as
    # under emulation), not taken by another socket: /proc/net/udp's last column.
    drops = "?"
    ino = str(os.fstat(s.fileno()).st_ino)
    for line in open("/proc/net/udp").read().splitlines()[1:]:
        w = line.split()
        if len(w) > 12 and w[9] == ino:
            drops = w[-1]
    print(f"received={got} drops={drops}", flush=True)


def hold(dst, n, seconds):
    """n sockets connected to dst:7 (they fill the range), held."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((dst, 7))
            socks.append(s)
        except OSError as e:
            print(f"hold_error={err(e)}", flush=True)
            break
    print(f"held={len(socks)}", flush=True)
    time.sleep(seconds)


def churn(dst, seconds):
    """socket, connect, close, over and over, to many ports of dst."""
    ok = eagain = other = 0
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        i += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((dst, 1000 + i % 20000))
            ok += 1
        except OSError as e:
            if e.errno == errno.EAGAIN:
                eagain += 1
            else:
                other += 1
        s.close()
    print(f"churn_ok={ok} churn_eagain={eagain} churn_other={other}", flush=True)


def send(port, count):
    """count datagrams to 127.0.0.1:port from a port outside the range, paced."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 5000))
    for i in range(count):
        s.sendto(b"x", ("127.0.0.1", port))
        if i % 50 == 49:
            time.sleep(0.001)
    print(f"sent={count}", flush=True)


def echo(addrs, seconds):
    """UDP echo servers (not under connectx) on "ip:port" or "[ip6]:port" addresses."""
    import select
    socks = []
    for a in addrs:
        host, port = a.rsplit(":", 1)
        fam = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((host.strip("[]"), int(port)))
        socks.append(s)
    print("ready", file=sys.stderr, flush=True)
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select(socks, [], [], 0.2)
        for s in r:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)


def ask(s, msg):
    """Sends msg on a connected socket; the echo it gets back (or a timeout mark)."""
    s.settimeout(2)
    s.send(msg)
    try:
        return s.recv(2048)
    except socket.timeout:
        return b"(timeout)"


def fixed(family):
    """Why 5: s1 binds (ip, P) and connects to A; s2 binds (ip, P) and connects to A (taken);
    s3 binds (ip, P) to reach B."""
    fam = socket.AF_INET6 if family == "6" else socket.AF_INET
    ip = "::1" if family == "6" else "127.0.0.1"
    a, b = (ip, 7), (ip, 8)
    P = 45000
    out = []
    s1 = socket.socket(fam, socket.SOCK_DGRAM)
    s1.bind((ip, P))
    s1.connect(a)
    out.append("s1=" + ("echo" if ask(s1, b"s1") == b"s1" else "noecho"))
    s2 = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s2.bind((ip, P))
        out.append("s2_bind=ok")
        try:
            s2.connect(a)
            out.append("s2_connect=ok")
        except OSError as e:
            out.append(f"s2_connect={err(e)}")
    except OSError as e:
        out.append(f"s2_bind={err(e)}")
    s3 = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s3.bind((ip, P))
        out.append("s3_bind=ok")
        s3.connect(b)
        out.append(f"s3_port={s3.getsockname()[1]}")
        out.append("s3=" + ("echo" if ask(s3, b"s3") == b"s3" else "noecho"))
        out.append("s1_again=" + ("echo" if ask(s1, b"s1b") == b"s1b" else "noecho"))
    except OSError as e:
        out.append(f"s3_error={err(e)}")
    print(" ".join(out), flush=True)


def workers():
    """Why 4: a server's first worker sets SO_REUSEPORT and binds 127.0.0.1:0, three more bind
    that port with SO_REUSEPORT."""
    socks, bound = [], 0
    port = 0
    for i in range(4):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
        try:
            s.bind(("127.0.0.1", port))
            port = s.getsockname()[1]
            bound += 1
        except OSError as e:
            print(f"worker{i}_error={err(e)}", end=" ")
        socks.append(s)
    opt = socks[0].getsockopt(socket.SOL_SOCKET, SO_REUSEPORT)
    # Each datagram to the group reaches exactly one worker.
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 5001))
    for i in range(200):
        c.sendto(b"w", ("127.0.0.1", port))
    time.sleep(0.2)
    got = 0
    for s in socks:
        s.setblocking(False)
        while True:
            try:
                s.recv(16)
                got += 1
            except BlockingIOError:
                break
    print(f"bound={bound} reuseport={opt} received={got}", flush=True)


def program_b(port):
    """Why 3, program B: binds A's source port with its own SO_REUSEPORT, connects to S (A's
    destination), then to S2."""
    out = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, SO_REUSEPORT, 1)
    try:
        s.bind(("127.0.0.1", port))
        out.append("b_bind=ok")
    except OSError as e:
        print(f"b_bind={err(e)}", flush=True)
        return
    try:
        s.connect(("127.0.0.2", 7))
        out.append("b_to_s=ok")
        out.append("b_to_s_echo=" + ("own" if ask(s, b"B1") == b"B1" else "other"))
    except OSError as e:
        out.append(f"b_to_s={err(e)}")
    try:
        s.connect(("127.0.0.3", 7))
        out.append("b_to_s2=ok")
        out.append(f"b_port={s.getsockname()[1]}")
        out.append("b_to_s2_echo=" + ("own" if ask(s, b"B2") == b"B2" else "other"))
    except OSError as e:
        out.append(f"b_to_s2={err(e)}")
    print(" ".join(out), flush=True)


def program_a():
    """Why 3, program A: connects to S, lets program B (another process) try A's port, then
    checks that A still gets its own answers and nothing else."""
    import subprocess
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.connect(("127.0.0.2", 7))
    port = a.getsockname()[1]
    before = ask(a, b"A0")
    b = subprocess.run([sys.executable, __file__, "b", str(port)], capture_output=True, text=True,
                       timeout=30)
    mine = 0
    for i in range(20):
        if ask(a, b"A%d" % i) == b"A%d" % i:
            mine += 1
    a.setblocking(False)
    stray = 0
    while True:
        try:
            a.recv(64)
            stray += 1
        except BlockingIOError:
            break
    print(f"a_port={port} a_before={'own' if before == b'A0' else 'other'} a_own={mine} "
          f"a_stray={stray} {b.stdout.strip()} {b.stderr.strip()}", flush=True)


def fill_and_share(first, more):
    """`first` sockets to 127.0.0.2:7 (the kernel's ports), then `more` to 127.0.0.3:7 (the lock
    must share): the count that connected and their ports."""
    held, ports, errors = [], [], []
    for i in range(first):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.2", 7))
        held.append(s)
    ok = 0
    for i in range(more):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(("127.0.0.3", 7))
            ok += 1
            ports.append(s.getsockname()[1])
            held.append(s)
        except OSError as e:
            errors.append(err(e))
    return held, ok, ports, errors


def netns_switch():
    """Why 6: a program fills its namespace's range (the lock reads that namespace's ports),
    moves to a new namespace, sets another range and reserved ports there, and fills it."""
    import ctypes, subprocess
    held, ok1, _, _ = fill_and_share(10, 1)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) != 0:
        print("unshare=failed", flush=True)
        return
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write("41000 41009")
    with open("/proc/sys/net/ipv4/ip_local_reserved_ports", "w") as f:
        f.write("41000-41004")
    held2, ok2, ports, errors = fill_and_share(5, 6)
    inside = all(41005 <= p <= 41009 for p in ports)
    print(f"first_ns_shared={ok1} second_ns_shared={ok2} ports_allowed={'yes' if inside else 'no'} "
          f"ports={','.join(map(str, ports))} errors={','.join(errors) or '-'}", flush=True)


def inherit():
    """Why 7: a flow whose port connectx shares reaches another program across exec; that
    program reconnects it onto a 4-tuple another socket owns."""
    import subprocess
    held, ok, ports, errors = fill_and_share(10, 1)
    if ok != 1:
        print(f"setup=failed errors={','.join(errors)}", flush=True)
        return
    q = ports[0]  # g: (Q, 127.0.0.3:7), through the lock
    f = next(s for s in held[:10] if s.getsockname()[1] == q)  # f: (Q, 127.0.0.2:7)
    r = subprocess.run([sys.executable, __file__, "child", str(f.fileno())], pass_fds=[f.fileno()],
                       capture_output=True, text=True, timeout=30)
    print(f"shared_port={q} {r.stdout.strip()} {r.stderr.strip()}", flush=True)


def child(fd):
    s = socket.socket(fileno=fd)
    try:
        s.connect(("127.0.0.3", 7))
        print(f"child_reconnect=ok child_port={s.getsockname()[1]}", flush=True)
    except OSError as e:
        print(f"child_reconnect={err(e)}", flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "server":
        server(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "hold":
        hold(args[0], int(args[1]), float(args[2]))
    elif cmd == "churn":
        churn(args[0], float(args[1]))
    elif cmd == "workers":
        workers()
    elif cmd == "a":
        program_a()
    elif cmd == "b":
        program_b(int(args[0]))
    elif cmd == "netns":
        netns_switch()
    elif cmd == "inherit":
        inherit()
    elif cmd == "child":
        child(int(args[0]))
    elif cmd == "echo":
        echo(args[:-1], float(args[-1]))
    elif cmd == "fixed":
        fixed(args[0])
    elif cmd == "send":
        send(int(args[0]), int(args[1]))
    else:
        sys.exit(f"unknown scenario {cmd}")


main()
