# Cases an attack review of the lock found (range 40000-40003, run under connectx). Each prints
# one line; duplicates are counted from the kernel's /proc/net/udp{,6} while every socket is
# held (no churn at that moment).
import collections, ctypes, errno, os, socket, sys, threading, time
import multiprocessing as mp

def norm(a):
    h, p = a.split(':')
    if len(h) == 32 and h.startswith('0000000000000000FFFF0000'):
        h = h[24:]
    return h + ':' + p

def dups():
    c = collections.Counter()
    for f in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = open(f).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for l in lines:
            p = l.split()
            if p[3] == "01":
                c[(norm(p[1]), norm(p[2]))] += 1
    return sum(v - 1 for v in c.values() if v > 1)

D, D2, D3 = ("127.0.0.2", 53), ("127.0.0.3", 53), ("127.0.0.4", 53)
def S(): return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def err(f):
    try: f(); return "ok"
    except OSError as e: return errno.errorcode.get(e.errno, str(e.errno))
def fill(spec):
    keep = []
    for d, n in spec:
        for _ in range(n):
            s = S()
            if err(lambda: s.connect(d)) == "ok": keep.append(s)
    return keep

case = sys.argv[1]
if case == "flood":
    # The other user (run without the library, as uid 65534): datagrams at every port.
    s = S(); s.bind(("127.0.0.9", 9999)); end = time.time() + float(sys.argv[2])
    while time.time() < end:
        for p in range(40000, 40004):
            try: s.sendto(b"EVIL", ("127.0.0.1", p))
            except OSError: pass
elif case == "noport_reuseport":
    # The program sets SO_REUSEPORT and IP_BIND_ADDRESS_NO_PORT itself, binds (ip, 0), sends,
    # connects: the kernel's autobind must never see its SO_REUSEPORT.
    keep = fill([(D2, 3), (D, 4)])
    x = S(); x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); x.setsockopt(socket.IPPROTO_IP, 24, 1)
    x.bind(("127.0.0.1", 0))
    a = err(lambda: x.sendto(b"q", D2)); b = err(lambda: x.connect(D))
    print(f"noport_reuseport sendto={a} connect={b} dups={dups()}")
elif case == "fork_disconnect":
    # A socket shared with a forked child: the parent disconnects it, the child reconnects it.
    libc = ctypes.CDLL(None, use_errno=True)
    keep = fill([(D2, 3), (D, 4)])
    x = S(); x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); x.connect(D3)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.read(r, 1)
        res = err(lambda: x.connect(D))
        os.write(w, f"{res} {dups()}".encode()); os._exit(0)
    libc.connect(x.fileno(), (ctypes.c_ubyte * 16)(), 16)
    os.write(w, b"g"); os.waitpid(pid, 0)
    res, d = os.read(r, 64).decode().split()
    print(f"fork_disconnect child={res} dups={d}")
elif case == "fixed_outside":
    # A fixed port outside the range that nobody else uses, while the range is full: the
    # kernel's own connect, never EAGAIN.
    keep = fill([(D2, 4), (D, 5)])
    out = []
    for opt in (socket.SO_REUSEADDR, socket.SO_REUSEPORT):
        f = S(); f.setsockopt(socket.SOL_SOCKET, opt, 1); f.bind(("127.0.0.1", 50000 + opt))
        out.append(err(lambda: f.connect(D))); keep.append(f)
    print(f"fixed_outside reuseaddr={out[0]} reuseport={out[1]} dups={dups()}")
elif case == "fixed_reuseport_server":
    # The program's own unconnected SO_REUSEPORT socket on a port of the range: the lock must not
    # share that port (the program's socket would lose its datagrams to the lock's flow).
    f = S(); f.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); f.bind(("127.0.0.1", 40003))
    keep = fill([(D, 4)])
    on_f = sum(1 for s in keep if s.getsockname()[1] == 40003)
    res = err(lambda: f.connect(D))
    print(f"fixed_reuseport_server clients={len(keep)} on_its_port={on_f} connect={res} dups={dups()}")
elif case == "inject":
    # Another user sprays datagrams at every port of the range while the lock runs: a connected
    # socket must never return a datagram from anyone but its peer.
    srv = S(); srv.bind(D)
    keep = fill([(D2, 4)])
    foreign = fails = 0
    for i in range(int(sys.argv[2])):
        c = S()
        if err(lambda: c.connect(D)) != "ok":
            fails += 1; continue
        c.send(b"q"); _, a = srv.recvfrom(100); srv.sendto(b"GOOD", a); c.settimeout(2)
        while True:
            data, frm = c.recvfrom(100)
            if frm != D: foreign += 1; continue
            break
        c.close()
    print(f"inject fails={fails} foreign={foreign}")
elif case == "race":
    # 8 processes x 2 threads connect fresh sockets at once while every port carries a flow
    # elsewhere (the lock runs every time), rounds held open and counted.
    nproc, rounds = 8, int(sys.argv[2])
    keep = fill([(("127.0.0.9", 9), 4)])
    b0, b1, b2 = mp.Barrier(nproc), mp.Barrier(nproc + 1), mp.Barrier(nproc + 1)
    def worker(k):
        for _ in range(rounds):
            socks = []
            def th(j):
                s = S(); err(lambda: s.connect(D if (j + k) % 2 else D2)); socks.append(s)
            b0.wait(); ts = [threading.Thread(target=th, args=(j,)) for j in range(2)]
            [t.start() for t in ts]; [t.join() for t in ts]
            b1.wait(); b2.wait(); [s.close() for s in socks]
        os._exit(0)
    ps = [mp.Process(target=worker, args=(k,)) for k in range(nproc)]
    [p.start() for p in ps]
    bad = 0
    for _ in range(rounds):
        b1.wait(); bad += dups() > 0; b2.wait()
    [p.join() for p in ps]
    print(f"race rounds={rounds} with_dups={bad}")
