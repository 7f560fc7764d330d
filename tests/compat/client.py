# bind(127.0.0.1, 0) + connect, N times over three echo servers; each socket echoes a line.
import socket, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
socks, errs = [], {}
for i in range(n):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.connect((f"127.0.0.{2 + i % 3}", 7))
        s.sendall(b"ping\n")
        if s.recv(16) == b"ping\n":
            socks.append(s)
    except OSError as e:
        errs[str(e)] = errs.get(str(e), 0) + 1
        s.close()
time.sleep(hold)
print(f"result ok={len(socks)} fail={n - len(socks)}")
print("errors", " ".join(f"{c} {e}" for e, c in errs.items()) or "none")
