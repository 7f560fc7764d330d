# Small probes for tests/compat_fixes.rs (run inside `connectx _netns`, under the library or not).
import socket, sys, time

IP_BIND_ADDRESS_NO_PORT = 24


def name(s):
    try:
        a = s.getsockname()
        return f"{a[0]}:{a[1]}"
    except OSError as e:
        return f"errno{e.errno}"


def hold(src, dst, n):
    """n sockets bind(src, 0) + connect(dst), kept open."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        try:
            s.bind((src, 0))
            s.connect((dst, 7))
            socks.append(s)
        except OSError:
            s.close()
    print(f"held={len(socks)}", flush=True)
    time.sleep(30)


def source(src, dst, noport, early=True, kind=socket.SOCK_STREAM):
    """bind(src, 0) -> getsockname (if early) -> connect(dst) -> getsockname."""
    s = socket.socket(socket.AF_INET, kind)
    if noport:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    try:
        s.bind((src, 0))
    except OSError as e:
        print(f"bind=errno{e.errno}")
        return
    before = name(s) if early else "-"
    try:
        s.connect((dst, 7))
        rc = "ok"
    except OSError as e:
        rc = f"errno{e.errno}"
    print(f"bind=ok after_bind={before} connect={rc} after_connect={name(s)}")


def fixed(port, dst1, dst2):
    """A: P -> dst1 held; B: P -> dst1 (taken); C, while B is still open: P -> dst2."""
    out = []
    socks = []
    for tag, dst in (("a", dst1), ("b", dst1), ("c", dst2)):
        s = socket.socket()
        socks.append(s)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            out.append(f"{tag}=bind_errno{e.errno}")
            continue
        try:
            s.connect((dst, 7))
            out.append(f"{tag}=ok")
        except OSError as e:
            out.append(f"{tag}=connect_errno{e.errno}")
    print(" ".join(out))


def udp_hold(src, n):
    """n UDP sockets bound to (src, 0), kept open."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((src, 0))
            socks.append(s)
        except OSError:
            s.close()
    print(f"held={len(socks)}", flush=True)
    time.sleep(30)


def udp_send(src, dst):
    """bind(src, 0) -> sendto(dst), unconnected."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((src, 0))
    except OSError as e:
        print(f"bind=errno{e.errno}")
        return
    t = time.time()
    try:
        s.sendto(b"x", (dst, 7))
        rc = "ok"
    except OSError as e:
        rc = f"errno{e.errno}"
    print(f"bind=ok sendto={rc} ms={int((time.time() - t) * 1000)}")


cmd = sys.argv[1]
if cmd == "hold":
    hold(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif cmd == "source":
    kind = socket.SOCK_DGRAM if "udp" in sys.argv[4:] else socket.SOCK_STREAM
    source(sys.argv[2], sys.argv[3], "noport" in sys.argv[4:], "late" not in sys.argv[4:], kind)
elif cmd == "udp_hold":
    udp_hold(sys.argv[2], int(sys.argv[3]))
elif cmd == "udp_send":
    udp_send(sys.argv[2], sys.argv[3])
elif cmd == "fixed":
    fixed(int(sys.argv[2]), sys.argv[3], sys.argv[4])
