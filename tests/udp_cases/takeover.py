# A root client under connectx holds a UDP flow to an echo server; "nobody" (uid 65534), in a
# process without the library, tries to bind the client's port (SO_REUSEADDR, SO_REUSEPORT,
# specific and wildcard) and, where it can, connects to the server to overshadow the flow.
# Prints what the attacker could bind and who got the server's reply.
import os, socket, subprocess, sys

ATTACKER = r'''
import socket, sys
port = int(sys.argv[1]); dst = ("127.0.0.2", 7)
for opt, name in ((socket.SO_REUSEADDR, "reuseaddr"), (socket.SO_REUSEPORT, "reuseport")):
    for addr in ("127.0.0.1", "0.0.0.0"):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.setsockopt(socket.SOL_SOCKET, opt, 1)
        try:
            a.bind((addr, port)); a.connect(dst)
        except OSError:
            a.close(); continue
        print(f"attacker_bound={name}@{addr}", flush=True)
        sys.stdin.readline()  # the client sends now
        a.settimeout(1)
        try: print(f"attacker_got={a.recv(64).decode()}", flush=True)
        except OSError: print("attacker_got=-", flush=True)
        sys.exit(0)
print("attacker_bound=none", flush=True)
sys.stdin.readline()
'''

dst = ("127.0.0.2", 7)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(dst)
port = c.getsockname()[1]
env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("CONNECTX")}
att = subprocess.Popen(
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", ATTACKER, str(port)],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
bound = att.stdout.readline().strip()
c.send(b"client-query")
att.stdin.write("go\n"); att.stdin.flush()
c.settimeout(1)
try: got = c.recv(64).decode()
except OSError: got = "-"
rest = att.communicate(timeout=10)[0].strip().replace("\n", " ")
print(f"client port={port} {bound} {rest} client_got={got}", flush=True)
