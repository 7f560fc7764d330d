# Corner cases of the lock on a one-port range (races: tests/robust/udprace.c) (run under connectx). Each case prints
# one line; the flows are checked from our own sockets (getsockname/getpeername): two sockets on
# one 4-tuple is a duplicate.
import socket, sys, errno
case = sys.argv[1]
def udp(): return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def tuples(socks):
    out = []
    for s in socks:
        try: out.append((s.getsockname(), s.getpeername()))
        except OSError: pass
    return out
def dups(socks):
    t = tuples(socks); return len(t) - len(set(t))
def err(f):
    try: f(); return "ok"
    except OSError as e: return errno.errorcode.get(e.errno, str(e.errno))
if case == "anyaddr":
    # connect(0.0.0.0:7) is a connect to 127.0.0.1:7 (the kernel's rewrite): the one port
    # already carries that flow.
    a = udp(); a.connect(("127.0.0.1", 7))
    b = udp(); e = err(lambda: b.connect(("0.0.0.0", 7)))
    print(f"anyaddr second={e} dups={dups([a, b])}")
elif case == "device":
    # A socket bound to the loopback device owns 127.0.0.1:P -> 127.0.0.2:7; a connect without a
    # device to the same destination must not share it.
    a = udp(); a.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo"); a.connect(("127.0.0.2", 7))
    b = udp(); e = err(lambda: b.connect(("127.0.0.2", 7)))
    print(f"device second={e} dups={dups([a, b])}")
elif case == "policy":
    # Policy routing (set up by the test: fwmark 1 and UDP dport 8 to 127.0.0.2 leave from
    # 127.0.0.5): the source the check is about must be the one the kernel uses.
    def marked(m):
        s = udp(); s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, m); return s
    a = marked(1); first = err(lambda: a.connect(("127.0.0.2", 7)))
    b = marked(1); by_mark = err(lambda: b.connect(("127.0.0.2", 7)))
    c = udp(); other_src = err(lambda: c.connect(("127.0.0.2", 7)))
    d = udp(); d_first = err(lambda: d.connect(("127.0.0.2", 8)))
    e = udp(); by_port = err(lambda: e.connect(("127.0.0.2", 8)))
    srcs = ",".join(x.getsockname()[0] for x in (a, c, d))
    print(f"policy first={first} by_mark={by_mark} other_src={other_src} d_first={d_first} by_port={by_port} srcs={srcs} dups={dups([a, b, c, d, e])}")
elif case == "share":
    # Capacity on the one port: a flow to each of 8 destinations, all with their own replies.
    socks = [udp() for _ in range(8)]
    res = [err(lambda s=s, i=i: s.connect((f"127.0.0.{2 + i}", 7))) for i, s in enumerate(socks)]
    got = 0
    import os
    wait = 2 * float(os.environ.get("CONNECTX_TEST_TIME_SCALE", "1"))
    for s in socks:
        s.settimeout(wait); s.send(b"x" + str(s.getsockname()[1]).encode())
    for s in socks:
        try: got += s.recv(64) == b"x" + str(s.getsockname()[1]).encode()
        except OSError: pass
    print(f"share ok={res.count('ok')} echoed={got} dups={dups(socks)}")
